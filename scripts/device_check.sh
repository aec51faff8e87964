#!/usr/bin/env bash
# The prepared GPU check: about 5-8 minutes on one GPU; writes data/bench/device-check.json (GPU, driver, CUDA, torch;
# paper-profile search and training steps with AMP off/bf16/fp16 and their peak memory; evaluation on the GPU; a few
# latency-table entries on CUDA with the calibration probe; TensorRT fp32/fp16 engines against PyTorch CUDA).
#
# It runs with the GPU machine's own Python and PyTorch (the kit's code from this checkout, on PYTHONPATH). The two
# pure-Python packages that machine lacks travel as wheels in .whl/ (ignored by git), fetched here beforehand:
#     python3 -m pip download --no-deps -d .whl cityscapesscripts==2.3.0 graphviz==0.21
# and TensorRT, if wanted, as its wheels too (tensorrt from PyPI; larger than the 64 MiB a device call carries here:
# without it the TensorRT section says "skipped" and why).
#     bash scripts/device_check.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/fasterseg-site .whl/*.whl
    export PYTHONPATH="/tmp/fasterseg-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-data/bench}/device-check.json
"$PY" scripts/device_check.py --out "$out" "$@"
