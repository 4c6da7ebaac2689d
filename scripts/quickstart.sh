#!/usr/bin/env bash
# Install the dependencies, build znp (Release) and start it with demo content.
#
# Usage: scripts/quickstart.sh [znp serve options ...]
#
# Runs scripts/setup.sh, builds into build/, writes build/quickstart.yaml and
# then replaces itself with
#   build/znp serve --config build/quickstart.yaml --data-dir ./data --demo
# HTTP listens on 127.0.0.1:8080, gRPC on 127.0.0.1:8090, and the embedded
# PostgreSQL keeps its files in ./data/pg. On the first start znp prints the
# demo admin's email and password on stdout. Extra options go to `znp serve`
# (e.g. --listen 127.0.0.1:9080). Stop it with Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build
DATA=$ROOT/data

case "${1:-}" in
-h | --help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

"$ROOT/scripts/setup.sh"

echo "quickstart: building znp (Release) in build/" >&2
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DZNP_BUILD_TESTS=OFF \
    -DPython3_EXECUTABLE=/usr/bin/python3 >"$BUILD/configure.log" 2>&1 ||
    { cat "$BUILD/configure.log" >&2; exit 1; }
cmake --build "$BUILD" -j "$(nproc 2>/dev/null || echo 2)"

# When znp runs as root the embedded PostgreSQL runs as the postgres account,
# which must be able to pass through the repository's folders to reach
# ./data/pg (znp itself makes ./data passable).
if [ "$(id -u)" -eq 0 ] && id postgres >/dev/null 2>&1 &&
    ! runuser -u postgres -- test -x "$ROOT"; then
    echo "quickstart: error: the postgres account cannot enter $ROOT;" \
        "make it and its parent folders searchable (chmod o+x) or clone the repository elsewhere" >&2
    exit 1
fi

cat >"$BUILD/quickstart.yaml" <<EOF
# Written by scripts/quickstart.sh on every run; see docs/configuration.md.
server:
  listen: "127.0.0.1:8080"
  grpc_listen: "127.0.0.1:8090"
  docs_dir: "$ROOT/third_party/swagger-ui"
database:
  data_dir: "$DATA"
EOF

cd "$ROOT"
echo "quickstart: starting znp; API at http://127.0.0.1:8080, docs at http://127.0.0.1:8080/docs/" >&2
exec "$BUILD/znp" serve --config "$BUILD/quickstart.yaml" --data-dir "$DATA" --demo "$@"
