#!/usr/bin/env bash
# Here, before a GPU lease: the wheels the GPU machine's image lacks, into .devsite/wheels (ignored
# by git; `benchmarks/device_lease.sh` installs them there). The image holds CUDA torch, torchvision,
# numpy, safetensors, lazy-loader, psutil and pytest (Python 3.12), and reaches no package index.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^segment-anything==\([^ ]*\).*/\1/p' requirements.lock)
rm -rf .devsite/wheels && mkdir -p .devsite/wheels
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .devsite/wheels \
    "segment-anything==${version}"
ls .devsite/wheels
