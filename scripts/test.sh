#!/usr/bin/env bash
# shellcheck disable=SC2317  # stage functions are called indirectly through run_stage
# Build znp and run its test suites, then print a summary with timings.
#
# Usage: scripts/test.sh [STAGE ...] [--no-setup] [--jobs N] [-- MODULE ...]
#
# Stages (default: --release --unit --integration --e2e --sanitize):
#   --release      Release build without tests (-O3, as scripts/quickstart.sh builds)
#   --unit         Debug build with -Werror, then the cmocka unit tests (ctest)
#   --integration  the Python integration suite against the Debug binary
#   --e2e          scripts/e2e-proxy.sh against the Debug binary: real v2ray,
#                  trojan and shadowsocks-libev behind the kernel adapter
#   --sanitize     ASan+UBSan build; unit tests and the integration suite on it
#   --valgrind     the integration suite with the server under valgrind memcheck
#   --all          all of the above
# Options:
#   --no-setup     skip scripts/setup.sh --test (packages and npm test tools)
#   --jobs N       parallel build jobs (default: number of cores)
#   -- MODULE ...  run only these integration modules, e.g. -- test_http
#
# The banned-call check always runs. Build folders: build-release/, build-debug/
# and build-asan/ (prefix changed with ZNP_BUILD_PREFIX, default "<repo>/build-").
# The last line reads "summary: N passed, N failed" (tests over all stages);
# the exit status is 1 when any stage failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${ZNP_BUILD_PREFIX:-$ROOT/build-}
RELEASE_DIR=${PREFIX}release
DEBUG_DIR=${PREFIX}debug
ASAN_DIR=${PREFIX}asan
PYTHON=/usr/bin/python3
JOBS=$(nproc 2>/dev/null || echo 2)
RESULTS_DIR=$(mktemp -d /tmp/znp-test.XXXXXX)
trap 'rm -rf "$RESULTS_DIR"' EXIT

want_release=0 want_unit=0 want_integration=0 want_e2e=0 want_sanitize=0 want_valgrind=0 do_setup=1
modules=()

usage() { sed -n '3,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --release) want_release=1 ;;
    --unit) want_unit=1 ;;
    --integration) want_integration=1 ;;
    --e2e) want_e2e=1 ;;
    --sanitize) want_sanitize=1 ;;
    --valgrind) want_valgrind=1 ;;
    --all) want_release=1 want_unit=1 want_integration=1 want_e2e=1 want_sanitize=1 want_valgrind=1 ;;
    --no-setup) do_setup=0 ;;
    --jobs)
        [ $# -ge 2 ] || { usage >&2; exit 2; }
        JOBS=$2
        shift
        ;;
    --) shift; modules=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; printf 'test.sh: unknown option %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
done
if [ $((want_release + want_unit + want_integration + want_e2e + want_sanitize + want_valgrind)) -eq 0 ]; then
    want_release=1 want_unit=1 want_integration=1 want_e2e=1 want_sanitize=1
fi

# ---------------------------------------------------------------------------
# stage bookkeeping

STAGE_NAMES=() STAGE_RESULTS=() STAGE_SECONDS=() STAGE_COUNTS=()
TOTAL_PASSED=0 TOTAL_FAILED=0 ANY_FAILED=0
declare -A STAGE_OK=()

now() { printf '%s' "$EPOCHREALTIME"; }

# run_stage NAME FUNCTION: run FUNCTION, record ok/FAILED and its duration.
# FUNCTION may write "P F" (passed, failed test counts) to $RESULTS_DIR/counts.
run_stage() {
    local name=$1 fn=$2 began rc counts=""
    printf '\n==== %s ====\n' "$name"
    rm -f "$RESULTS_DIR/counts"
    began=$(now)
    "$fn"
    rc=$?
    local seconds
    seconds=$(awk -v a="$began" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
    if [ -f "$RESULTS_DIR/counts" ]; then
        local passed failed
        read -r passed failed <"$RESULTS_DIR/counts"
        TOTAL_PASSED=$((TOTAL_PASSED + passed))
        TOTAL_FAILED=$((TOTAL_FAILED + failed))
        counts="$passed passed, $failed failed"
    fi
    STAGE_NAMES+=("$name")
    STAGE_SECONDS+=("$seconds")
    STAGE_COUNTS+=("$counts")
    if [ "$rc" -eq 0 ]; then
        STAGE_RESULTS+=(ok)
        STAGE_OK[$name]=1
    else
        STAGE_RESULTS+=(FAILED)
        ANY_FAILED=1
    fi
}

skip_stage() {
    STAGE_NAMES+=("$1") STAGE_RESULTS+=(skipped) STAGE_SECONDS+=(0) STAGE_COUNTS+=("$2")
    ANY_FAILED=1
}

# ---------------------------------------------------------------------------
# stages

stage_setup() { "$ROOT/scripts/setup.sh" --test; }

stage_banned_calls() {
    "$ROOT/scripts/check-banned-calls" --self-test && "$ROOT/scripts/check-banned-calls"
}

# build DIR SANITIZE(ON|OFF) [BUILD_TYPE [TESTS(ON|OFF)]]
build() {
    mkdir -p "$1"
    cmake -S "$ROOT" -B "$1" -DCMAKE_BUILD_TYPE="${3:-Debug}" -DZNP_SANITIZE="$2" -DZNP_BUILD_TESTS="${4:-ON}" \
        -DPython3_EXECUTABLE="$PYTHON" >"$1/configure.log" 2>&1 ||
        { cat "$1/configure.log"; return 1; }
    cmake --build "$1" -j "$JOBS"
}

# The same configuration as scripts/quickstart.sh: Release, no unit tests.
stage_build_release() { build "$RELEASE_DIR" OFF Release OFF; }
stage_build_debug() { build "$DEBUG_DIR" OFF; }
stage_build_asan() { build "$ASAN_DIR" ON; }

# ctest DIR: run the unit tests and record the counts from ctest's closing line.
unit_tests() {
    local log="$RESULTS_DIR/ctest.log" rc
    ctest --test-dir "$1" --output-on-failure --no-tests=error 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    local line
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n1)
    if [ -n "$line" ]; then
        local failed total
        failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
        total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
        echo "$((total - failed)) $failed" >"$RESULTS_DIR/counts"
    fi
    return "$rc"
}

stage_unit() { unit_tests "$DEBUG_DIR"; }

# integration ZNP_BIN [VAR=VALUE ...]: the Python suite with extra environment.
integration() {
    local bin=$1 json="$RESULTS_DIR/integration.json" rc
    shift
    rm -f "$json"
    env "$@" ZNP_BIN="$bin" "$PYTHON" "$ROOT/tests/integration/run.py" -v --json "$json" "${modules[@]}"
    rc=$?
    if [ -f "$json" ]; then
        "$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["passed"], d["failed"])' \
            "$json" >"$RESULTS_DIR/counts"
    fi
    return "$rc"
}

stage_integration() { integration "$DEBUG_DIR/znp"; }

# Sanitizer runtime options: stop at the first report; LeakSanitizer ignores
# only the third-party leaks listed in tests/lsan.supp.
SANITIZER_ENV=(
    "ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
    "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1"
    "LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0"
)

stage_unit_asan() { (export "${SANITIZER_ENV[@]}" && unit_tests "$ASAN_DIR"); }
stage_integration_asan() { integration "$ASAN_DIR/znp" "${SANITIZER_ENV[@]}" ZNP_TEST_TIMEOUT_SCALE=2; }

# The end-to-end test prints unittest's closing lines; count from "Ran N tests" and "failures=/errors=".
stage_e2e() {
    local log="$RESULTS_DIR/e2e.log" rc ran failed
    ZNP_BIN="$DEBUG_DIR/znp" "$ROOT/scripts/e2e-proxy.sh" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    ran=$(sed -nE 's/^Ran ([0-9]+) tests? in .*/\1/p' "$log" | tail -n1)
    failed=$(grep -E '^FAILED \(' "$log" | tail -n1 | grep -oE '(failures|errors)=[0-9]+' | cut -d= -f2 |
        awk '{ n += $1 } END { print n + 0 }')
    [ -n "$ran" ] && echo "$((ran - failed)) $failed" >"$RESULTS_DIR/counts"
    return "$rc"
}

stage_valgrind() {
    command -v valgrind >/dev/null || { echo "valgrind is not installed: run scripts/setup.sh --test"; return 1; }
    integration "$DEBUG_DIR/znp" ZNP_TEST_VALGRIND=1
}

# ---------------------------------------------------------------------------
# main

cd "$ROOT" || exit 1
[ "$do_setup" -eq 1 ] && run_stage setup stage_setup
run_stage banned-calls stage_banned_calls
[ "$want_release" -eq 1 ] && run_stage "build release" stage_build_release

if [ $((want_unit + want_integration + want_e2e + want_valgrind)) -gt 0 ]; then
    run_stage "build debug" stage_build_debug
    if [ -n "${STAGE_OK[build debug]:-}" ]; then
        [ "$want_unit" -eq 1 ] && run_stage unit stage_unit
        [ "$want_integration" -eq 1 ] && run_stage integration stage_integration
        [ "$want_e2e" -eq 1 ] && run_stage e2e stage_e2e
        [ "$want_valgrind" -eq 1 ] && run_stage valgrind stage_valgrind
    else
        skip_stage "tests on debug" "(build failed)"
    fi
fi

if [ "$want_sanitize" -eq 1 ]; then
    run_stage "build asan" stage_build_asan
    if [ -n "${STAGE_OK[build asan]:-}" ]; then
        run_stage "unit asan" stage_unit_asan
        run_stage "integration asan" stage_integration_asan
    else
        skip_stage "tests on asan" "(build failed)"
    fi
fi

printf '\n==== summary ====\n'
total=0
for i in "${!STAGE_NAMES[@]}"; do
    printf '%-18s %-8s %5ss  %s\n' "${STAGE_NAMES[$i]}" "${STAGE_RESULTS[$i]}" "${STAGE_SECONDS[$i]}" "${STAGE_COUNTS[$i]}"
    total=$((total + STAGE_SECONDS[i]))
done
printf '%-18s %-8s %5ss\n' total "$([ "$ANY_FAILED" -eq 0 ] && echo ok || echo FAILED)" "$total"
echo "summary: $TOTAL_PASSED passed, $TOTAL_FAILED failed"
exit "$ANY_FAILED"
