#!/usr/bin/env bash
# Measure the node-backend API with many users on one protocol binding.
#
# Usage: scripts/bench/node-user-list.sh [--bin PATH] [--users N] [--requests N] [--clients N] [--reports N]
#
#   --bin PATH      znp binary (default: build/znp, as built by scripts/quickstart.sh)
#   --users N       active users with a subscription on the binding (default 10000)
#   --requests N    h2load -n for the If-None-Match (304) pulls (default 100000)
#   --clients N     h2load -c (default 32; -m 10 streams per connection)
#   --reports N     traffic reports of 100 records each to send (default 2000)
#
# It starts its own `znp serve` (embedded PostgreSQL, 2 event-loop threads, 4
# workers, access log off) on free ports of 127.0.0.1 and stops it on exit.
# Users, subscriptions and the binding are inserted with SQL, and the plan and
# the node token go through the admin API. It reports the first `user` pull,
# which also creates each user's identity, and the median of 3 cold pulls
# (cache dropped through NOTIFY znp_eligibility). It also reports the body
# size, the server's RSS, req/s of 304 pulls with the ETag, and traffic
# reports ingested per second.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ZNP=$ROOT/build/znp
USERS=10000
REQUESTS=100000
CLIENTS=32
REPORTS=2000

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --bin) ZNP=$2; shift ;;
    --users) USERS=$2; shift ;;
    --requests) REQUESTS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --reports) REPORTS=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

for tool in h2load curl; do
    command -v "$tool" >/dev/null || { echo "node-user-list.sh: $tool is missing: run scripts/setup.sh --test" >&2; exit 1; }
done
[ -x "$ZNP" ] || { echo "node-user-list.sh: $ZNP is not built: run scripts/quickstart.sh or pass --bin" >&2; exit 1; }

WORK=$(mktemp -d /tmp/znp-bench.XXXXXX)
chmod 755 "$WORK" # the embedded PostgreSQL account must reach $WORK/data/pg
ZNP_PID=""

cleanup() {
    if [ -n "$ZNP_PID" ] && kill -0 "$ZNP_PID" 2>/dev/null; then
        kill -TERM "$ZNP_PID"
        wait "$ZNP_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=scripts/lib/ports.sh
. "$ROOT/scripts/lib/ports.sh"

# psql_run SQL: run SQL on the embedded cluster as its owner and print the rows
psql_run() {
    local data=$WORK/data/pg/data
    local port socket bin owner
    port=$(sed -n 4p "$data/postmaster.pid")
    socket=$(sed -n 5p "$data/postmaster.pid" | awk '{ print $1 }')
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    owner=$(stat -c %U "$data")
    local argv=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$socket" -p "$port" -d znp -c "$1")
    if [ "$(id -u)" -eq 0 ] && [ "$owner" != root ]; then
        (cd / && runuser -u "$owner" -- "${argv[@]}")
    else
        (cd / && "${argv[@]}")
    fi
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$ZNP_PID/status"; }

# --- server -------------------------------------------------------------------
read -r PORT GRPC_PORT <<<"$(free_ports 2)"
MASTER_KEY=$(head -c 32 /dev/urandom | base64)
cat >"$WORK/znp.yaml" <<EOF
server:
  listen: "127.0.0.1:$PORT"
  grpc_listen: "127.0.0.1:$GRPC_PORT"
  threads: 2
  workers: 4
database:
  data_dir: "$WORK/data"
security:
  master_key: "$MASTER_KEY"
log:
  file: "$WORK/znp.log"
  level: warn
  access_log: false
EOF
ADMIN_EMAIL=bench-admin@example.com
ADMIN_PASSWORD=bench-pass-$RANDOM$RANDOM
echo "$ADMIN_PASSWORD" | "$ZNP" admin create --email "$ADMIN_EMAIL" --password-stdin --config "$WORK/znp.yaml" \
    >"$WORK/admin.log" 2>&1 || { echo "node-user-list.sh: admin create failed:" >&2; cat "$WORK/admin.log" >&2; exit 1; }
: >"$WORK/znp.stderr"
"$ZNP" serve --config "$WORK/znp.yaml" 2>"$WORK/znp.stderr" &
ZNP_PID=$!
deadline=$((SECONDS + 90))
until grep -q 'znp: listening' "$WORK/znp.stderr"; do
    if ! kill -0 "$ZNP_PID" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
        echo "node-user-list.sh: znp did not start:" >&2
        cat "$WORK/znp.stderr" >&2
        exit 1
    fi
    sleep 0.1
done
BASE=http://127.0.0.1:$PORT
echo "node-user-list.sh: server RSS after start: $(rss_kib) KiB"

# --- data ---------------------------------------------------------------------
ACCESS=$(curl -fsS -H 'Content-Type: application/json' \
    -d "{\"email\":\"$ADMIN_EMAIL\",\"password\":\"$ADMIN_PASSWORD\"}" "$BASE/api/v1/auth/login" |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
NODE_ID=$(psql_run "INSERT INTO nodes (name, control_endpoint) VALUES ('bench-node', 'http://127.0.0.1:9') RETURNING id" | head -1)
BINDING_ID=$(psql_run "INSERT INTO protocol_bindings (node_id, protocol, role, kernel_id, access_port)
    VALUES ($NODE_ID, 'vmess', 'listener', 'bench', 443) RETURNING id" | head -1)
PLAN_ID=$(curl -fsS -H "Authorization: Bearer $ACCESS" -H 'Content-Type: application/json' \
    -d "{\"name\":\"Bench\",\"traffic_limit_bytes\":1000000000000000,\"devices_limit\":3,\"binding_ids\":[$BINDING_ID],\"status\":1,\"visible\":true}" \
    "$BASE/api/v1/admin/plans" | /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["plan"]["id"])')
TOKEN=$(curl -fsS -X POST -H "Authorization: Bearer $ACCESS" "$BASE/api/v1/admin/nodes/$NODE_ID/backend-token" |
    /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
psql_run "INSERT INTO users (email, password_hash)
              SELECT 'bench' || i || '@example.com', 'x' FROM generate_series(1, $USERS) AS i;
          INSERT INTO subscriptions (user_id, name, plan_id, plan_name, token, traffic_total_bytes, devices_limit)
              SELECT u.id, 'Bench', $PLAN_ID, 'Bench',
                     translate(encode(substring(sha256(u.id::text::bytea) FROM 1 FOR 16), 'base64'), '+/=', '-_'),
                     1000000000000000, 3
                FROM users u WHERE u.email LIKE 'bench%@example.com' AND u.email <> '$ADMIN_EMAIL';" >/dev/null
ELIGIBLE=$(psql_run "SELECT count(*) FROM binding_eligible_users WHERE binding_id = $BINDING_ID")
echo "node-user-list.sh: $ELIGIBLE eligible users on binding $BINDING_ID"

USER_URL="$BASE/api/v1/server/UniProxy/user?token=$TOKEN&node_id=$BINDING_ID&node_type=vmess"
PUSH_URL="$BASE/api/v1/server/UniProxy/push?token=$TOKEN&node_id=$BINDING_ID&node_type=vmess"

# --- cold pulls ---------------------------------------------------------------
# pull: print "<seconds> <bytes>" of one GET of the user list, saving its headers
pull() { curl -fsS -o "$WORK/users.json" -D "$WORK/users.headers" -w '%{time_total} %{size_download}\n' "$USER_URL"; }

read -r first_time size < <(pull)
printf 'first pull (creates %s identities)  %8.3f s  %s bytes\n' "$ELIGIBLE" "$first_time" "$size"
cold=()
for i in 1 2 3; do
    psql_run "SELECT pg_notify('znp_eligibility', 'bench')" >/dev/null
    sleep 0.5 # the watcher delivers the notification; the next pull then misses the cache
    read -r t size < <(pull)
    cold+=("$t")
    printf 'cold pull %d                          %8.3f s  %s bytes\n' "$i" "$t" "$size"
done
cold_median=$(printf '%s\n' "${cold[@]}" | sort -n | sed -n 2p)
ETAG=$(sed -nE 's/^etag: (.*)\r$/\1/Ip' "$WORK/users.headers")
[ -n "$ETAG" ] || { echo "node-user-list.sh: the user list response has no ETag header" >&2; exit 1; }
RSS_AFTER_PULLS=$(rss_kib)

# --- 304 pulls ----------------------------------------------------------------
status=$(curl -sS -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$USER_URL")
[ "$status" = 304 ] || { echo "node-user-list.sh: the If-None-Match request returned $status, expected 304" >&2; exit 1; }
h2load -n 2000 -c "$CLIENTS" -m 10 -H "if-none-match: $ETAG" "$USER_URL" >/dev/null 2>&1
out=$(h2load -n "$REQUESTS" -c "$CLIENTS" -m 10 -H "if-none-match: $ETAG" "$USER_URL" 2>&1)
rps_304=$(sed -nE 's/^finished in .*, ([0-9.]+) req\/s,.*/\1/p' <<<"$out")
codes_304=$(sed -nE 's/^status codes: (.*)$/\1/p' <<<"$out")
failed_304=$(sed -nE 's/^requests: .* ([0-9]+) failed,.*/\1/p' <<<"$out")

# --- traffic reports ----------------------------------------------------------
# 100 records per report, no report id: every report is counted (at-least-once delivery)
FIRST_USER=$(psql_run "SELECT min(user_id) FROM binding_eligible_users WHERE binding_id = $BINDING_ID")
/usr/bin/python3 -c "import json, sys; print(json.dumps({str($FIRST_USER + i): [1000 + i, 2000 + i] for i in range(100)}))" \
    >"$WORK/report.json"
before=$(psql_run "SELECT coalesce(sum(traffic_used_bytes), 0) FROM subscriptions WHERE plan_id = $PLAN_ID")
out=$(h2load -n "$REPORTS" -c 8 -m 1 -d "$WORK/report.json" -H 'content-type: application/json' "$PUSH_URL" 2>&1)
rps_push=$(sed -nE 's/^finished in .*, ([0-9.]+) req\/s,.*/\1/p' <<<"$out")
codes_push=$(sed -nE 's/^status codes: (.*)$/\1/p' <<<"$out")
after=$(psql_run "SELECT coalesce(sum(traffic_used_bytes), 0) FROM subscriptions WHERE plan_id = $PLAN_ID")
expected=$(/usr/bin/python3 -c "print($REPORTS * sum(3000 + 2 * i for i in range(100)))")

echo
echo "users on the binding:        $ELIGIBLE"
printf 'first user pull:             %.3f s (includes creating every identity)\n' "$first_time"
printf 'cold user pull (median of 3): %.3f s\n' "$cold_median"
echo "user list body:              $size bytes"
echo "server RSS after the pulls:  $RSS_AFTER_PULLS KiB"
echo "304 pulls:                   $rps_304 req/s (h2load -n $REQUESTS -c $CLIENTS -m 10; $codes_304; ${failed_304:-?} failed)"
echo "traffic reports:             $rps_push reports/s of 100 records (h2load -n $REPORTS -c 8 -m 1; $codes_push)"
echo "bytes counted:               $((after - before)) of $expected expected"
