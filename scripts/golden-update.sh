#!/usr/bin/env bash
# Rewrite the golden files under tests/golden/ from the built-in formats.
#
# Usage: scripts/golden-update.sh [BUILD_DIR]   (default: build-debug)
#
# Builds test_formats in BUILD_DIR (configured if needed), runs it with
# ZNP_GOLDEN_UPDATE=1 so it writes tests/golden/<format>/<entry>.<ext> and
# tests/golden/dataset.json, then runs the parser checks of
# tests/integration/test_download_golden.py. Review the diff before
# committing: the unit test fails whenever the output drifts from these files.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build-debug}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DPython3_EXECUTABLE=/usr/bin/python3 >/dev/null
fi
cmake --build "$BUILD" --target test_formats -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
rm -rf "$ROOT/tests/golden"
ZNP_SOURCE_DIR=$ROOT ZNP_GOLDEN_UPDATE=1 "$BUILD/test_formats" >/dev/null
ZNP_SOURCE_DIR=$ROOT "$BUILD/test_formats" >/dev/null
cd "$ROOT"
/usr/bin/python3 -m unittest -q tests.integration.test_download_golden
echo "golden files written to tests/golden/; review them with git diff"
