#!/usr/bin/env bash
# On a lent GPU machine, in one call: the GPU benchmark (`python -m benchmarks.gpu`) and the CUDA
# tests (tests/convlora/test_cuda.py), with the image's python3 (CUDA torch) and the wheels that
# `benchmarks/device_wheels.sh` put in .devsite/wheels (carry .devsite). The compiled training
# steps (the figure no lease has measured yet) go first, then the eager steps and the encoder, then
# the tests, each part under its own time limit; every part updates the card's results file in
# $RESULTS_DIR (default benchmarks/results), which is copied to $OUT (default device-out/) with
# nvidia-smi's report and each part's log. The limits (240 + 150 + 120 s by default) keep the call
# under 9 minutes, so a 15-minute lease leaves room to start the machine and to run it again.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
results=${RESULTS_DIR:-benchmarks/results}
mkdir -p "$out"
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .devsite/wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/convlora/src:$PWD" PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
timeout "${COMPILED_SECONDS:-240}" python3 -m benchmarks.gpu --results-dir "$results" \
    --only compiled-steps "$@" 2>&1 | tee "$out/bench-compiled.log"
timeout "${EAGER_SECONDS:-150}" python3 -m benchmarks.gpu --results-dir "$results" \
    --only eager-steps encoder "$@" 2>&1 | tee "$out/bench-eager.log"
# rasterio, which pyproject's warning filters name, is not on the image: no filters here.
timeout "${TESTS_SECONDS:-120}" python3 -m pytest tests/convlora/test_cuda.py -p no:cacheprovider \
    -o filterwarnings= 2>&1 | tee "$out/cuda-tests.log"
cp "$results"/gpu-* "$out/"
