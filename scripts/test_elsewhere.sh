#!/usr/bin/env bash
# The test suite as another machine runs it, twice:
#   1. with PyTorch's kernels for older CPUs (ATEN_CPU_CAPABILITY=default: other vector code, other float rounding);
#   2. with two busy processes beside it (a loaded machine: every timing changes).
# Both must pass: tests and notebooks compare nothing that depends on the CPU's vector unit or on its load.
#     bash scripts/test_elsewhere.sh            # both passes (about twice `make test`)
#     bash scripts/test_elsewhere.sh default    # the first pass only
#     bash scripts/test_elsewhere.sh busy       # the second pass only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
bash scripts/setup_browser.sh
PY=.venv/bin/python
which=${1:-both}

suite() {
    # PYTHONPATH: this checkout's package, whichever checkout the virtual environment was installed from
    FASTERSEG_PROFILE=tiny OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$PWD" "$PY" -m pytest -q -n 2 \
        --dist loadfile tests notebooks --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
        -p no:cacheprovider
}

status=0
if [ "$which" = both ] || [ "$which" = default ]; then
    echo "== 1/2: ATEN_CPU_CAPABILITY=default (PyTorch's kernels for CPUs without AVX2/AVX-512)"
    ATEN_CPU_CAPABILITY=default suite || status=1
fi
if [ "$which" = both ] || [ "$which" = busy ]; then
    echo "== 2/2: two busy processes beside the suite"
    busy=()
    for _ in 1 2; do
        "$PY" -c "while True: pass" &
        busy+=($!)
    done
    trap 'kill "${busy[@]}" 2>/dev/null || true' EXIT
    suite || status=1
    kill "${busy[@]}" 2>/dev/null || true
fi
if [ "$status" = 0 ]; then echo "test_elsewhere: both passes green"; else echo "test_elsewhere: FAILED (see above)"; fi
exit "$status"
