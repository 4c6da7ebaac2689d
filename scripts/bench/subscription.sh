#!/usr/bin/env bash
# Load the public subscription download with many subscriptions, cold and warm cache and 304.
#
# Usage: scripts/bench/subscription.sh [--bin PATH] [--subscriptions N] [--entries N] [--requests N]
#                                      [--ping-requests N] [--rounds N] [--clients N] [--streams N]
#                                      [--agent UA]
#
#   --bin PATH          znp binary (default: build/znp, as built by scripts/quickstart.sh)
#   --subscriptions N   subscriptions, one user each (default 10000)
#   --entries N         protocol entries every subscription's plan grants (default 50)
#   --requests N        h2load -n of the warm, gzip, 304 and static phases (default 100000)
#   --ping-requests N   h2load -n of the ping phase (default 2 x --requests). Ping is about
#                       twice as fast as a gzip download, so both phases last about as long and
#                       the start-up of the h2load processes takes the same share of each
#   --rounds N          gzip and ping phase pairs (default 3). The ratios are the medians of
#                       the pairs, because the rate of one phase varied by 20% between runs
#   --clients N         parallel h2load processes of one connection each (default 8)
#   --streams N         h2load -m, concurrent streams per connection (default 16)
#   --agent UA          User-Agent of every request (default a mihomo one: Clash.Meta YAML)
#
# Starts `znp serve` on 127.0.0.1 (embedded PostgreSQL, 2 event-loop threads,
# access log off) on free ports, inserts the data with SQL, then runs h2load
# over h2c with the subscription URLs in random order. h2load gives every
# connection the whole URL list from its start, so the list is split into one
# part per connection (one h2load process each). So each token is fetched by
# one connection only, as a real client does. Otherwise the per-token limit
# of the download (30 a minute) would reject requests with 429. The phases:
#   prime  one request per subscription, so each user's credential exists
#          (created on the first download), then the cache is emptied;
#   cold   one request per subscription: every file is rendered;
#   warm   --requests requests: every file comes from the cache;
#   gzip   the same with accept-encoding: gzip, as Go's net/http client
#          (Clash/Mihomo, sing-box) sends it: the cached gzip form. It
#          starts after a pause that refills the per-token buckets;
#   reval  the same with If-None-Match: * (a match for any current file);
#   ping   GET /api/v1/ping, the figure of this run to compare with;
#   gzip and ping again for each further round, each gzip phase after a pause
#          that refills the buckets. The gzip / ping lines are the medians
#          of the rounds' ratios, each of a gzip phase and the ping phase
#          right after it, so a slow change of the machine's speed affects
#          both sides of a ratio alike;
#   static the same bytes as one subscription file, served by Debian's h2o
#          (2 threads) from its file handler: the rate this machine reaches
#          for a body of that size. Skipped when h2o is not installed.
# For each phase it prints req/s (requests over the wall-clock time of the
# phase, which includes starting the h2load processes, and "timed": the sum
# of the rates each h2load process measured itself), the phase's duration,
# p99 latency (from h2load's per-request log), failed requests, znp's RSS, and the CPU time per request of znp and of the
# h2load processes (user plus system, from /proc). Both share the cores, so
# either one's CPU limits the rate. For the cold phase it also prints znp's
# CPU time per request in ms, which bounds the render CPU of one file. Everything it started is
# stopped when it exits; ZNP_BENCH_KEEP=1 keeps its work directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ZNP=$ROOT/build/znp
SUBS=10000
ENTRIES=50
REQUESTS=100000
PING_REQUESTS=
ROUNDS=3
CLIENTS=8
STREAMS=16
AGENT="ClashMeta/1.19.28; mihomo/1.19.28"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --bin) ZNP=$2; shift ;;
    --subscriptions) SUBS=$2; shift ;;
    --entries) ENTRIES=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --ping-requests) PING_REQUESTS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --streams) STREAMS=$2; shift ;;
    --agent) AGENT=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

PING_REQUESTS=${PING_REQUESTS:-$((REQUESTS * 2))}

for tool in h2load curl psql; do
    command -v "$tool" >/dev/null || { echo "subscription.sh: $tool is missing: run scripts/setup.sh --test" >&2; exit 1; }
done
[ -x "$ZNP" ] || { echo "subscription.sh: $ZNP is not built: run scripts/quickstart.sh or pass --bin" >&2; exit 1; }

WORK=$(mktemp -d /tmp/znp-bench-sub.XXXXXX)
chmod 755 "$WORK" # the embedded PostgreSQL account must reach $WORK/data/pg
ZNP_PID=""
H2O_PID=""

cleanup() {
    if [ -n "$ZNP_PID" ] && kill -0 "$ZNP_PID" 2>/dev/null; then
        kill -TERM "$ZNP_PID"
        wait "$ZNP_PID" || true
    fi
    if [ -n "$H2O_PID" ] && kill -0 "$H2O_PID" 2>/dev/null; then
        kill -TERM "$H2O_PID"
        wait "$H2O_PID" || true
    fi
    if [ "${ZNP_BENCH_KEEP:-0}" = 1 ]; then echo "subscription.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# shellcheck source=scripts/lib/ports.sh
. "$ROOT/scripts/lib/ports.sh"

read -r ZNP_PORT GRPC_PORT <<<"$(free_ports 2)"
MASTER_KEY=$(head -c 32 /dev/urandom | base64)
cat >"$WORK/znp.yaml" <<EOF
server:
  listen: "127.0.0.1:$ZNP_PORT"
  grpc_listen: "127.0.0.1:$GRPC_PORT"
  threads: 2
database:
  data_dir: "$WORK/data"
security:
  master_key: "$MASTER_KEY"
download:
  cache_entries: $((SUBS * 2))
  cache_ttl_s: 3600
rate_limits:
  enabled: false
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
        echo "subscription.sh: znp did not start:" >&2
        cat "$WORK/znp.stderr" >&2
        exit 1
    fi
    sleep 0.1
done
BASE="http://127.0.0.1:$ZNP_PORT"

# --- data ---------------------------------------------------------------------
PGDATA=$WORK/data/pg/data
PG_PORT=$(sed -n 4p "$PGDATA/postmaster.pid")
PG_SOCKET=$(sed -n 5p "$PGDATA/postmaster.pid")
PG_OWNER=$(stat -c %U "$PGDATA")
run_psql() {
    local cmd=(psql -X -q -v ON_ERROR_STOP=1 -At -h "$PG_SOCKET" -p "$PG_PORT" -d znp)
    if [ "$(id -u)" -eq 0 ] && [ "$PG_OWNER" != root ]; then
        (cd / && runuser -u "$PG_OWNER" -- "${cmd[@]}" "$@")
    else
        "${cmd[@]}" "$@"
    fi
}

echo "subscription.sh: inserting $SUBS subscriptions with $ENTRIES entries each"
run_psql <<EOF
BEGIN;
INSERT INTO nodes (name, control_endpoint, status, access_address)
SELECT 'bench-node-' || n, 'http://127.0.0.1:9', 1, 'n' || n || '.example.com' FROM generate_series(1, 5) n;
WITH kinds(k, protocol, bprofile, eprofile) AS (VALUES
    (0, 'vmess', '{"network": "ws", "path": "/ws", "security": "tls"}', '{"sni": "vm.example.com", "host": "cdn.example.com"}'),
    (1, 'vless', '{"security": "reality", "flow": "xtls-rprx-vision"}',
        '{"public_key": "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0", "short_id": "0123abcd", "sni": "www.example.com", "fingerprint": "chrome"}'),
    (2, 'trojan', '{"sni": "tj.example.com", "alpn": ["h2", "http/1.1"]}', '{}'),
    (3, 'shadowsocks', '{"method": "aes-256-gcm"}', '{}'),
    (4, 'hysteria2', '{"obfs": "salamander", "obfs_password": "obfs", "sni": "hy.example.com"}', '{}'),
    (5, 'tuic', '{"congestion_control": "bbr", "alpn": "h3", "sni": "tuic.example.com"}', '{}'))
INSERT INTO protocol_bindings (node_id, name, protocol, role, kernel_id, profile)
SELECT (SELECT min(id) FROM nodes) + i % 5, 'bench-' || i, k.protocol, 'listener', 'bench-' || i, k.bprofile::jsonb
  FROM generate_series(0, $ENTRIES - 1) i JOIN kinds k ON k.k = i % 6;
INSERT INTO protocol_entries (binding_id, name, protocol, entry_address, entry_port, profile, sort_order)
SELECT b.id, '节点 ' || b.id || ' ' || b.protocol || ' 🇭🇰', b.protocol, 'e' || b.id || '.example.com', 443 + b.id % 1000,
       CASE b.protocol WHEN 'vmess' THEN '{"sni": "vm.example.com", "host": "cdn.example.com"}'::jsonb
                       WHEN 'vless' THEN '{"public_key": "jNXHt1yRo0vDuchQlIP6Z0ZvjT3KtzVI-T4E7RoLJS0", "short_id": "0123abcd", "sni": "www.example.com"}'::jsonb
                       ELSE '{}'::jsonb END, b.id
  FROM protocol_bindings b WHERE b.kernel_id LIKE 'bench-%';
INSERT INTO plans (name, slug, status, visible) VALUES ('Bench', 'bench', 2, true);
INSERT INTO plan_bindings (plan_id, binding_id)
SELECT (SELECT id FROM plans WHERE slug = 'bench'), id FROM protocol_bindings WHERE kernel_id LIKE 'bench-%';
INSERT INTO users (email, password_hash)
SELECT 'bench' || i || '@example.com', 'x' FROM generate_series(1, $SUBS) i;
INSERT INTO subscriptions (user_id, name, plan_id, plan_name, token)
SELECT u.id, 'Bench', (SELECT id FROM plans WHERE slug = 'bench'), 'Bench',
       substr(translate(encode(decode(md5(random()::text || u.id), 'hex'), 'base64'), '+/', '-_'), 1, 22)
  FROM users u WHERE u.email LIKE 'bench%@example.com';
COMMIT;
ANALYZE;
EOF
run_psql -c "SELECT '$BASE/api/v1/subscriptions/' || token FROM subscriptions ORDER BY random()" >"$WORK/urls"
[ "$(wc -l <"$WORK/urls")" -eq "$SUBS" ] || { echo "subscription.sh: expected $SUBS URLs" >&2; exit 1; }
FIRST_URL=$(head -n 1 "$WORK/urls")
entries_served=$(curl -fsS -A "$AGENT" "$FIRST_URL" | grep -c '^    server:' || true)
echo "subscription.sh: one file: $(curl -fsS -A "$AGENT" "$FIRST_URL" | wc -c) bytes, $entries_served entries," \
    "$(curl -fsS -A "$AGENT" -H 'accept-encoding: gzip' "$FIRST_URL" | wc -c) bytes with gzip"

# --- h2o with the bytes of one file ---------------------------------------------
STATIC_URL=""
if command -v h2o >/dev/null; then
    mkdir -p "$WORK/www"
    curl -fsS -A "$AGENT" "$FIRST_URL" -o "$WORK/www/file"
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
      /file:
        file.file: $WORK/www/file
EOF
    } >"$WORK/h2o.conf"
    h2o -c "$WORK/h2o.conf" >"$WORK/h2o.stdout" 2>&1 &
    H2O_PID=$!
    STATIC_URL="http://127.0.0.1:$H2O_PORT/file"
    deadline=$((SECONDS + 20))
    until curl -fsS -o /dev/null "$STATIC_URL" 2>/dev/null; do
        if ! kill -0 "$H2O_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            echo "subscription.sh: h2o did not start:" >&2
            cat "$WORK/h2o-error.log" >&2
            exit 1
        fi
        sleep 0.1
    done
fi

# --- load ---------------------------------------------------------------------
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$ZNP_PID/stat"; }
# CPU ticks of this shell's children that have ended and been waited for (the h2load processes)
children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$ZNP_PID/status"; }

# per_request_us TICKS REQUESTS: CPU microseconds per request
per_request_us() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }

# phase NAME N URLFILE [h2load options...]: send N requests over the URLs of URLFILE from $CLIENTS
# parallel one-connection h2load processes. Prints one result line and sets ${NAME}_rps.
phase() {
    local name=$1 n=$2 urls=$3 i start end rps timed failed p99 codes total ok per pids=() z0 z1 c0 c1
    shift 3
    rm -f "$WORK"/part.* "$WORK"/h2load.*
    split -n "r/$CLIENTS" -d "$urls" "$WORK/part."
    per=$((n / CLIENTS))
    z0=$(cpu_ticks)
    c0=$(children_ticks)
    start=$(date +%s.%N)
    i=0
    for part in "$WORK"/part.*; do
        h2load -n "$per" -c 1 -m "$STREAMS" -H "user-agent: $AGENT" --log-file="$WORK/h2load.log.$i" "$@" \
            -i "$part" >"$WORK/h2load.out.$i" 2>&1 &
        pids+=($!)
        i=$((i + 1))
    done
    wait "${pids[@]}" || true
    end=$(date +%s.%N)
    z1=$(cpu_ticks)
    c1=$(children_ticks)
    total=$(cat "$WORK"/h2load.log.* | wc -l)
    ok=$(cat "$WORK"/h2load.log.* | awk -F'\t' '$2 == 200 || $2 == 304' | wc -l)
    failed=$((total < n ? n - total : 0))
    codes=$(cat "$WORK"/h2load.log.* | awk -F'\t' '{ c[$2]++ } END { for (k in c) printf "%s:%d ", k, c[k] }')
    rps=$(awk -v t="$total" -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", t / (b - a) }')
    # the sum of the rates each h2load measured from its own first connection: no process start-up in it
    timed=$(cat "$WORK"/h2load.out.* | awk '/^finished in/ { gsub(",", "", $4); s += $4 } END { printf "%.0f", s }')
    p99=$(cat "$WORK"/h2load.log.* | awk -F'\t' '{ print $3 }' | sort -n |
        awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", v[i] / 1000 }')
    printf '%-6s %8d req  %8d req/s  in %.2f s  p99 %8s ms  %d not 200/304, %d missing  RSS %4d MiB  CPU/req znp %s h2load %s us  (%s)  timed %d req/s\n' \
        "$name" "$total" "$rps" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" "$p99" "$((total - ok))" "$failed" $(($(rss_kib) / 1024)) \
        "$(per_request_us $((z1 - z0)) "$total")" "$(per_request_us $((c1 - c0)) "$total")" "${codes% }" "$timed"
    eval "${name}_rps=$rps"
    eval "${name}_timed=$timed"
}

echo "subscription.sh: $CLIENTS x h2load -c 1 -m $STREAMS over h2c, User-Agent: $AGENT"
for _ in $(seq 1 "$CLIENTS"); do echo "$BASE/api/v1/ping"; done >"$WORK/ping-urls"
phase prime "$SUBS" "$WORK/urls" >/dev/null
run_psql -c "NOTIFY znp_subscriptions, 'all'" # empties the download cache
sleep 1
ticks_before=$(cpu_ticks)
phase cold "$SUBS" "$WORK/urls"
ticks_after=$(cpu_ticks)
phase warm "$REQUESTS" "$WORK/urls"
# warm, gzip and reval fetch each token REQUESTS / SUBS times; the bucket refills 30 a minute
sleep $((REQUESTS * 2 / SUBS + 1))
phase gzip "$REQUESTS" "$WORK/urls" -H 'accept-encoding: gzip'
phase reval "$REQUESTS" "$WORK/urls" -H 'if-none-match: *'
phase ping "$PING_REQUESTS" "$WORK/ping-urls"
# shellcheck disable=SC2154 # set by phase through eval
ratios="$gzip_rps $ping_rps $gzip_timed $ping_timed"
for _ in $(seq 2 "$ROUNDS"); do
    sleep $((REQUESTS * 2 / SUBS + 1))
    phase gzip "$REQUESTS" "$WORK/urls" -H 'accept-encoding: gzip'
    phase ping "$PING_REQUESTS" "$WORK/ping-urls"
    ratios="$ratios $gzip_rps $ping_rps $gzip_timed $ping_timed"
done
if [ -n "$STATIC_URL" ]; then
    for _ in $(seq 1 "$CLIENTS"); do echo "$STATIC_URL"; done >"$WORK/static-urls"
    phase static "$REQUESTS" "$WORK/static-urls"
fi

hz=$(getconf CLK_TCK)
awk -v t="$((ticks_after - ticks_before))" -v hz="$hz" -v n="$SUBS" -v e="$ENTRIES" \
    'BEGIN { printf "cold   znp CPU %.3f ms per request (%d-entry file, render plus request handling)\n", t * 1000 / hz / n, e }'
# shellcheck disable=SC2154 # set by phase through eval
awk -v w="$warm_rps" -v p="$ping_rps" 'BEGIN { printf "warm / ping  %.2f\n", w / p }'
# median RATIOS...: the median of the ratios, printed with two decimals
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%.2f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# shellcheck disable=SC2086 # one word per number
set -- $ratios
walls=() timeds=()
while [ $# -ge 4 ]; do
    walls+=("$(awk -v g="$1" -v p="$2" 'BEGIN { printf "%.4f", g / p }')")
    timeds+=("$(awk -v g="$3" -v p="$4" 'BEGIN { printf "%.4f", g / p }')")
    shift 4
done
echo "gzip / ping by round  $(printf '%.2f ' "${walls[@]}")"
echo "gzip / ping  $(median "${walls[@]}")"
echo "gzip / ping (timed by h2load) by round  $(printf '%.2f ' "${timeds[@]}")"
echo "gzip / ping (timed by h2load)  $(median "${timeds[@]}")"
# shellcheck disable=SC2154 # set by phase through eval
[ -z "$STATIC_URL" ] || awk -v w="$warm_rps" -v s="$static_rps" 'BEGIN { printf "warm / static  %.2f\n", w / s }'
