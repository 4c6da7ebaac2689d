#!/usr/bin/env bash
# Run the end-to-end test with real proxy software on 127.0.0.1. znp pushes
# users to the kernel adapter (tests/e2e/kernel_adapter.py), which runs
# Debian's v2ray and shadowsocks-libev, and the real clients v2ray, trojan and
# ss-local connect through them.
#
# Usage: scripts/e2e-proxy.sh [--adapter-only] [--jobs N]
#   --adapter-only  run only the parser and adapter tests (no znp needed)
#   --jobs N        parallel build jobs (default: number of cores)
# Environment:
#   ZNP_BIN         znp binary to test; without it the script builds
#                   ${ZNP_BUILD_PREFIX:-<repo>/build-}debug (as scripts/test.sh --unit does)
#   ZNP_TEST_KEEP=1 keep the temporary folders (configs, logs, reports)
#
# Needs the Debian packages v2ray, trojan, shadowsocks-libev, curl, openssl
# and python3-yaml; the script stops with the install line when one is missing.
# Runs in about 35 s (measured on a 2-core VM); the limit is 300 s. The exit status is that of the tests.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=/usr/bin/python3
JOBS=$(nproc 2>/dev/null || echo 2)
modules=(tests.e2e.test_parsers tests.e2e.test_adapter tests.e2e.test_proxy)

while [ $# -gt 0 ]; do
    case "$1" in
    --adapter-only) modules=(tests.e2e.test_parsers tests.e2e.test_adapter) ;;
    --jobs)
        [ $# -ge 2 ] || { echo "e2e-proxy: --jobs needs a number" >&2; exit 2; }
        JOBS=$2
        shift
        ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "e2e-proxy: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

missing=()
for package in v2ray trojan shadowsocks-libev curl openssl python3-yaml; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
for program in /usr/bin/v2ray /usr/bin/v2ctl /usr/bin/trojan /usr/bin/ss-server /usr/bin/ss-local \
    /usr/bin/ss-manager; do
    [ -x "$program" ] || missing+=("$program")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "e2e-proxy: missing ${missing[*]}; install with:" >&2
    echo "  apt-get install -y --no-install-recommends v2ray trojan shadowsocks-libev curl openssl python3-yaml" >&2
    exit 1
fi

if [[ " ${modules[*]} " == *" tests.e2e.test_proxy "* ]]; then
    if [ -z "${ZNP_BIN:-}" ]; then
        build_dir=${ZNP_BUILD_PREFIX:-$ROOT/build-}debug
        cmake -S "$ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Debug -DPython3_EXECUTABLE="$PYTHON" >/dev/null
        cmake --build "$build_dir" --target znp -j "$JOBS"
        ZNP_BIN=$build_dir/znp
    fi
    if [ ! -x "$ZNP_BIN" ]; then
        echo "e2e-proxy: ZNP_BIN=$ZNP_BIN is not an executable" >&2
        exit 1
    fi
    export ZNP_BIN
fi

cd "$ROOT"
export PYTHONDONTWRITEBYTECODE=1
echo "e2e-proxy: running ${modules[*]}${ZNP_BIN:+ against $ZNP_BIN}"
timeout --signal=TERM --kill-after=20 300 "$PYTHON" -m unittest -v "${modules[@]}"
