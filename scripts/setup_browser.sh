#!/usr/bin/env bash
# The real-browser test's extra: Debian's chromium (Playwright drives it; it never downloads a browser).
# Called by `make test` only (not on the `make demo` path). Prints why when it cannot install.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium with apt-get (for the real-browser test; once)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
        || echo "[setup] chromium could not be installed: the browser test will skip"
else
    echo "[setup] chromium is missing and this user cannot apt-get it: the browser test will skip"
fi
