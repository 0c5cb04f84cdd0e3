#!/usr/bin/env bash
# GPU benchmark: R0 (the signature in a loop, data in memory) and P (`beamscore score`,
# Parquet -> Parquet, also with --jit-compile) for MobileNetV2 and ResNet50 (weights=None,
# 224x224x3) at batch 256 on the GPU; prints one table (see benchmarks/bench.py).
#
# Run it from the repository root on a machine with an NVIDIA GPU and access to PyPI:
#   bash benchmarks/gpu.sh
# It creates $VENV (default .venv-gpu) with Python 3.11 and installs beamscore[gpu]
# (tensorflow[and-cuda] 2.21, which brings its own CUDA 12 / cuDNN wheels; never next to
# beamscore[cpu]'s tensorflow-cpu: use a fresh $VENV), then runs `beamscore doctor`.
#
# Knobs (environment): IMAGES (default 4096), BATCH (256), REPEAT (3), MODELS
# ("mobilenet resnet50"), VENV, PYTHON, SKIP_INSTALL=1 (use $VENV as it is),
# ALLOW_CPU=1 (run without a GPU: a dry run of the script, e.g.
#   SKIP_INSTALL=1 VENV=.venv ALLOW_CPU=1 IMAGES=32 BATCH=8 REPEAT=1 bash benchmarks/gpu.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv-gpu}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
IMAGES=${IMAGES:-4096}
BATCH=${BATCH:-256}
REPEAT=${REPEAT:-3}
MODELS=${MODELS:-mobilenet resnet50}

if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[gpu]'
fi

# Versions, CUDA build, driver, the GPUs TensorFlow sees, and a verdict; stops on a broken
# install (e.g. tensorflow-cpu next to tensorflow) and, unless ALLOW_CPU=1, when no GPU is used.
if [[ "${ALLOW_CPU:-0}" == 1 ]]; then
    "$VENV/bin/python" -m beamscore doctor
else
    "$VENV/bin/python" -m beamscore doctor --require-gpu \
        || { echo "gpu.sh: TensorFlow uses no GPU (see the verdict; ALLOW_CPU=1 for a dry run on CPU)" >&2; exit 1; }
fi

# shellcheck disable=SC2086
exec "$VENV/bin/python" -m benchmarks.bench \
    --models $MODELS --paths R0 P --jit \
    --images "$IMAGES" --image-batch-size "$BATCH" --repeat "$REPEAT" \
    --rows 8192 --baseline-rows 8192 --work build/bench-gpu "$@"
