#!/usr/bin/env bash
# On a lent GPU machine, in one call: the GPU benchmark's parts (`python -m benchmarks.gpu --only
# PART`, each in its own process under its own time limit) and then the CUDA tests
# (tests/convlora/test_cuda.py), with the image's python3 (CUDA torch) and the wheels that
# `benchmarks/device_wheels.sh` put in .devsite/wheels (carry .devsite). By default the parts no
# lease has measured: the compiled training steps (the goal's figure), then the same with CUDA
# graphs; LEASE_PARTS="eager-steps encoder" measures the others. Every part updates the card's
# results file in $RESULTS_DIR (default benchmarks/results), which is copied to $OUT (default
# device-out/) with nvidia-smi's report and each part's log. The limits (PART_SECONDS 200 a part,
# TESTS_SECONDS 120) keep the default call under 9 minutes, so a 15-minute lease has room to
# start the machine and to run it again.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-device-out}
results=${RESULTS_DIR:-benchmarks/results}
mkdir -p "$out"
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .devsite/wheels/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/convlora/src:$PWD" PYTHONUNBUFFERED=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
for part in ${LEASE_PARTS:-compiled-steps cudagraph-steps}; do
    timeout "${PART_SECONDS:-200}" python3 -m benchmarks.gpu --results-dir "$results" \
        --only "$part" "$@" 2>&1 | tee "$out/bench-$part.log"
done
# rasterio, which pyproject's warning filters name, is not on the image: no filters here.
timeout "${TESTS_SECONDS:-120}" python3 -m pytest tests/convlora/test_cuda.py -p no:cacheprovider \
    -o filterwarnings= 2>&1 | tee "$out/cuda-tests.log"
cp "$results"/gpu-* "$out/"
