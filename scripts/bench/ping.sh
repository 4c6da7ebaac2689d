#!/usr/bin/env bash
# Compare znp's GET /api/v1/ping with Debian's h2o serving the same bytes as a static file.
#
# Usage: scripts/bench/ping.sh [--bin PATH] [--runs N] [--requests N] [--clients N] [--streams N]
#
#   --bin PATH      znp binary (default: build/znp, as built by scripts/quickstart.sh)
#   --runs N        measured runs per server, alternating (default 3); the median is reported
#   --requests N    h2load -n (default 200000)
#   --clients N     h2load -c (default 64)
#   --streams N     h2load -m, concurrent streams per connection (default 10)
#
# Both servers run on 127.0.0.1 with 2 event-loop threads and no access log,
# on free ports picked at run time, and are stopped when the script exits.
# The load is h2c (HTTP/2 prior knowledge) from h2load on the same machine,
# so client and servers share the cores.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ZNP=$ROOT/build/znp
RUNS=3
REQUESTS=200000
CLIENTS=64
STREAMS=10

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --bin) ZNP=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

for tool in h2load h2o curl; do
    command -v "$tool" >/dev/null || { echo "ping.sh: $tool is missing: run scripts/setup.sh --test" >&2; exit 1; }
done
[ -x "$ZNP" ] || { echo "ping.sh: $ZNP is not built: run scripts/quickstart.sh or pass --bin" >&2; exit 1; }

WORK=$(mktemp -d /tmp/znp-bench.XXXXXX)
chmod 755 "$WORK" # the embedded PostgreSQL account must reach $WORK/data/pg
ZNP_PID="" H2O_PID=""

cleanup() {
    if [ -n "$ZNP_PID" ] && kill -0 "$ZNP_PID" 2>/dev/null; then
        kill -TERM "$ZNP_PID"
        wait "$ZNP_PID" || true
    fi
    if [ -n "$H2O_PID" ] && kill -0 "$H2O_PID" 2>/dev/null; then
        kill -TERM "$H2O_PID"
        wait "$H2O_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/ports.sh
. "$ROOT/scripts/lib/ports.sh"

# wait_for_http URL SECONDS
wait_for_http() {
    local deadline=$((SECONDS + $2))
    until curl -fsS -o /dev/null "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# --- znp ----------------------------------------------------------------------
read -r ZNP_PORT GRPC_PORT <<<"$(free_ports 2)"
cat >"$WORK/znp.yaml" <<EOF
server:
  listen: "127.0.0.1:$ZNP_PORT"
  grpc_listen: "127.0.0.1:$GRPC_PORT"
  threads: 2
database:
  data_dir: "$WORK/data"
log:
  file: "$WORK/znp.log"
  level: warn
  access_log: false
EOF
"$ZNP" serve --config "$WORK/znp.yaml" 2>"$WORK/znp.stderr" &
ZNP_PID=$!
deadline=$((SECONDS + 90))
until grep -q 'znp: listening' "$WORK/znp.stderr"; do
    if ! kill -0 "$ZNP_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "ping.sh: znp did not start:" >&2
        cat "$WORK/znp.stderr" >&2
        exit 1
    fi
    sleep 0.1
done
ZNP_URL="http://127.0.0.1:$ZNP_PORT/api/v1/ping"

# --- h2o with the same bytes --------------------------------------------------
mkdir -p "$WORK/www"
curl -fsS "$ZNP_URL" -o "$WORK/www/ping.json"
H2O_PORT=$(free_ports 1)
{
    [ "$(id -u)" -eq 0 ] && echo "user: root" # else h2o drops to nobody and cannot write its pid file
    cat <<EOF
num-threads: 2
pid-file: $WORK/h2o.pid
error-log: $WORK/h2o-error.log
listen:
  host: 127.0.0.1
  port: $H2O_PORT
hosts:
  default:
    paths:
      /api/v1/ping:
        file.file: $WORK/www/ping.json
EOF
} >"$WORK/h2o.conf"
h2o -c "$WORK/h2o.conf" >"$WORK/h2o.stdout" 2>&1 &
H2O_PID=$!
H2O_URL="http://127.0.0.1:$H2O_PORT/api/v1/ping"
wait_for_http "$H2O_URL" 20 || { echo "ping.sh: h2o did not start:" >&2; cat "$WORK/h2o-error.log" >&2; exit 1; }
cmp -s "$WORK/www/ping.json" <(curl -fsS "$H2O_URL") || { echo "ping.sh: h2o serves other bytes" >&2; exit 1; }

# --- load ---------------------------------------------------------------------
# h2load URL N: print "<req/s> <failed>" of one run
run_h2load() {
    local out
    out=$(h2load -n "$2" -c "$CLIENTS" -m "$STREAMS" "$1" 2>&1)
    local rps failed
    rps=$(sed -nE 's/^finished in .*, ([0-9.]+) req\/s,.*/\1/p' <<<"$out")
    failed=$(sed -nE 's/^requests: .* ([0-9]+) failed,.*/\1/p' <<<"$out")
    if [ -z "$rps" ]; then
        echo "ping.sh: could not read h2load output:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$rps ${failed:-?}"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "ping.sh: warming up"
run_h2load "$ZNP_URL" 20000 >/dev/null
run_h2load "$H2O_URL" 20000 >/dev/null

znp_runs=() h2o_runs=()
for i in $(seq 1 "$RUNS"); do
    read -r rps failed < <(run_h2load "$ZNP_URL" "$REQUESTS")
    znp_runs+=("$rps")
    printf 'run %d  znp  %10.0f req/s  (%s failed)\n' "$i" "$rps" "$failed"
    read -r rps failed < <(run_h2load "$H2O_URL" "$REQUESTS")
    h2o_runs+=("$rps")
    printf 'run %d  h2o  %10.0f req/s  (%s failed)\n' "$i" "$rps" "$failed"
done

znp_median=$(printf '%s\n' "${znp_runs[@]}" | median)
h2o_median=$(printf '%s\n' "${h2o_runs[@]}" | median)
echo
echo "command: h2load -n $REQUESTS -c $CLIENTS -m $STREAMS <url>  (h2c, $RUNS runs each, median)"
echo "response: $(wc -c <"$WORK/www/ping.json") bytes: $(cat "$WORK/www/ping.json")"
printf 'znp /api/v1/ping        %10.0f req/s\n' "$znp_median"
printf 'h2o static file         %10.0f req/s\n' "$h2o_median"
awk -v a="$znp_median" -v b="$h2o_median" 'BEGIN { printf "ratio znp/h2o            %10.2f\n", a / b }'
