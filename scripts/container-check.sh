#!/usr/bin/env bash
# Build the Dockerfile and run the image without a Docker engine, using buildah and podman.
#
# Usage: scripts/container-check.sh [--base-dir DIR] [--rebuild-base] [--run-only] [--jobs N]
#                                   [--mirror URL] [--security-mirror URL] [--extra-ca FILE]
#                                   [--keep] [--clean]
#
#   --base-dir DIR          cache for the base images and the container storage
#                           (default /var/tmp/znp-container-check); a rerun reuses it
#   --rebuild-base          make the two Debian base images again with debootstrap
#   --run-only              skip the build and run the image localhost/znp:check built before
#   --jobs N                parallel compile jobs in the build stage (default 2)
#   --mirror URL            Debian mirror (default http://deb.debian.org/debian)
#   --security-mirror URL   Debian security mirror (default http://deb.debian.org/debian-security)
#   --extra-ca FILE         CA certificates (PEM) for npm in the build stage, passed as the
#                           build secret extra_ca. The default is this host's bundle,
#                           /etc/ssl/certs/ca-certificates.crt, so a TLS-inspecting proxy
#                           that the host trusts works. An empty string passes none.
#   --keep                  keep the work directory (clone, config, data, logs) for inspection
#   --clean                 remove the container storage and the cached base images, then exit
#
# A manual check, not part of CI. On a 2-core Debian 12 machine near a fast
# mirror, a run from scratch took 2.5 minutes and a rerun with cached base
# images 70 s. Most of that time goes to apt-get and the compile.
# Needs root, Debian 12, and access to the Debian mirrors and the npm registry
# (the build stage fetches Swagger UI with npm). Missing tools are installed
# with apt-get.
#
# 1. Makes debian:bookworm and debian:bookworm-slim with debootstrap (variant
#    minbase) and imports them under their Docker Hub names, so `FROM` resolves
#    without a registry. The slim one also drops docs, man pages and translations.
# 2. Builds a fresh clone of this repository's HEAD (uncommitted changes are not
#    in it) with `buildah bud --pull-never --no-cache --isolation chroot` and
#    tags it localhost/znp:check, replacing the image of the previous run.
# 3. Runs the image with podman and runc on the host network, with a mounted
#    data directory and a mounted configuration that listens on free 127.0.0.1
#    ports. Then it checks /api/v1/ping over HTTP/1.1 and h2c, /metrics, /docs/,
#    the gRPC health check, every process running as the image's user znp, and
#    the embedded PostgreSQL cluster under the data directory. SIGTERM must end
#    the container with exit code 0 after a clean cluster shutdown.
# 4. Runs the image once more with its own configuration and an anonymous
#    volume, in a network namespace of its own, and checks /api/v1/ping there
#    and the exit code after SIGTERM.
#
# Everything lives in its own container storage under --base-dir, so the
# machine's default podman and buildah storage is not touched. The script stops
# and removes only the containers it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_DIR=/var/tmp/znp-container-check
REBUILD_BASE=0
RUN_ONLY=0
JOBS=2
MIRROR=http://deb.debian.org/debian
SECURITY_MIRROR=http://deb.debian.org/debian-security
EXTRA_CA=/etc/ssl/certs/ca-certificates.crt
KEEP=0
CLEAN=0
IMAGE=localhost/znp:check
SUITE=bookworm

usage() { sed -n '2,47p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
    --base-dir) BASE_DIR=$2; shift ;;
    --rebuild-base) REBUILD_BASE=1 ;;
    --run-only) RUN_ONLY=1 ;;
    --jobs) JOBS=$2; shift ;;
    --mirror) MIRROR=$2; shift ;;
    --security-mirror) SECURITY_MIRROR=$2; shift ;;
    --extra-ca) EXTRA_CA=$2; shift ;;
    --keep) KEEP=1 ;;
    --clean) CLEAN=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
    shift
done

log() { printf 'container-check: %s\n' "$*" >&2; }
die() { printf 'container-check: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: debootstrap, buildah and podman need it here"
case "$JOBS" in '' | *[!0-9]* | 0) die "--jobs needs a positive integer, got '$JOBS'" ;; esac
BASE_DIR=$(realpath -m "$BASE_DIR")

# One storage for buildah and podman, apart from the machine's default one.
# runc, not crun: Debian 12's crun 1.8 rejects hosts whose cgroup controllers
# are split between cgroup v1 and v2 ("cgroups in hybrid mode not supported").
STORAGE=(--root "$BASE_DIR/storage" --runroot /run/znp-container-check --storage-driver overlay)
BUILDAH=(buildah "${STORAGE[@]}")
PODMAN=(podman "${STORAGE[@]}" --runtime runc --cgroup-manager cgroupfs --events-backend file)
bah() { "${BUILDAH[@]}" "$@"; }
pod() { "${PODMAN[@]}" "$@"; }

if [ "$CLEAN" -eq 1 ]; then
    # Every container and image in this storage comes from this script.
    if [ -d "$BASE_DIR/storage" ]; then
        pod rm --all --force --volumes >/dev/null
        bah rm --all >/dev/null
        pod rmi --all --force >/dev/null
    fi
    rm -rf "$BASE_DIR" /run/znp-container-check
    log "removed $BASE_DIR"
    exit 0
fi

# --- tools --------------------------------------------------------------------
install_tools() {
    local wanted=(buildah podman runc debootstrap debian-archive-keyring curl git python3)
    local missing=() pkg
    for pkg in "${wanted[@]}"; do
        [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}
install_tools

WORK=$(mktemp -d /tmp/znp-container-check.XXXXXX)
CONTAINER=
STARTED=$SECONDS

cleanup() {
    local status=$?
    if [ -n "$CONTAINER" ]; then
        pod rm --force --volumes --time 5 "$CONTAINER" >/dev/null 2>&1 || true
    fi
    if [ "$KEEP" -eq 1 ] || [ "$status" -ne 0 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# --- 1. base images -----------------------------------------------------------

# make_rootfs DIR SLIM: a minbase Debian tree with the apt sources of the
# official images (main, updates, security) and no caches.
make_rootfs() {
    local dir=$1 slim=$2
    debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap $SUITE from $MIRROR failed"; }

    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # Like the official images: no translations, and apt-get keeps neither the
    # downloaded .deb files nor its binary package caches in the image.
    printf 'Acquire::Languages "none";\n' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
    printf '%s\n' 'APT::Keep-Downloaded-Packages "false";' 'Dir::Cache::pkgcache "";' \
        'Dir::Cache::srcpkgcache "";' >"$dir/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/*
    rm -f "$dir/var/log/bootstrap.log"
    # The build host's name and resolver; the container runtime supplies its own.
    : >"$dir/etc/hostname"
    : >"$dir/etc/resolv.conf"

    if [ "$slim" -eq 1 ]; then
        cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
        find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
        rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/groff/* "$dir"/usr/share/info/* \
            "$dir"/usr/share/lintian/* "$dir"/usr/share/locale/*
    fi
}

# ensure_base TAG SLIM: debian:TAG in the storage, from a cached tarball.
ensure_base() {
    local tag=$1 slim=$2
    local tarball="$BASE_DIR/debian-$tag.tar"
    local name="docker.io/library/debian:$tag"
    local fresh=0

    if [ "$REBUILD_BASE" -eq 1 ] || [ ! -f "$tarball" ]; then
        local dir="$BASE_DIR/rootfs-$tag"
        log "debootstrap $SUITE (minbase) for debian:$tag"
        rm -rf "$dir"
        make_rootfs "$dir" "$slim"
        tar --numeric-owner -C "$dir" -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$dir"
        fresh=1
    fi
    if [ "$fresh" -eq 1 ] || ! pod image exists "$name"; then
        log "importing $tarball as $name"
        pod import --quiet --change 'CMD ["bash"]' "$tarball" "$name" >/dev/null
    fi
}

mkdir -p "$BASE_DIR"
if [ "$RUN_ONLY" -eq 0 ]; then
    ensure_base "$SUITE" 0
    ensure_base "$SUITE-slim" 1
fi

# --- 2. build -----------------------------------------------------------------
if [ "$RUN_ONLY" -eq 0 ]; then
    git clone -q "$ROOT" "$WORK/src"
    log "building $IMAGE from $(git -C "$WORK/src" rev-parse --short HEAD) (log: $WORK/build.log)"
    build_opts=(--pull-never --no-cache --force-rm --isolation chroot --network host --build-arg "BUILD_JOBS=$JOBS")
    if [ -n "$EXTRA_CA" ]; then
        [ -r "$EXTRA_CA" ] || die "--extra-ca $EXTRA_CA is not a readable file"
        build_opts+=(--secret "id=extra_ca,src=$EXTRA_CA")
    fi
    build_started=$SECONDS
    if ! bah bud "${build_opts[@]}" -t "$IMAGE" "$WORK/src" >"$WORK/build.log" 2>&1; then
        tail -40 "$WORK/build.log" >&2
        die "buildah bud failed; the full output is in $WORK/build.log"
    fi
    log "built in $((SECONDS - build_started)) s"
    # The previous run's image, now untagged.
    pod image prune --force >/dev/null
else
    pod image exists "$IMAGE" || die "$IMAGE is not in $BASE_DIR/storage; run without --run-only first"
fi
bah images "$IMAGE" >&2
size=$(pod image inspect --format '{{.Size}}' "$IMAGE")
log "image size: $(((size + 500000) / 1000000)) MB ($size bytes, uncompressed)"

# --- 3. run with a mounted configuration --------------------------------------

# shellcheck source=scripts/lib/ports.sh
. "$ROOT/scripts/lib/ports.sh"

fail() {
    if [ -n "$CONTAINER" ]; then
        pod logs "$CONTAINER" >"$WORK/serve.log" 2>&1 || true
        log "last lines of the container's output:"
        tail -30 "$WORK/serve.log" >&2
    fi
    die "$*"
}

# wait_listening: until znp in $CONTAINER prints its "listening" line. The
# first start runs initdb and the migrations.
wait_listening() {
    local deadline=$((SECONDS + 180))
    until pod logs "$CONTAINER" 2>&1 | grep -q 'znp: listening'; do
        [ "$(pod inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] ||
            fail "the container exited before listening"
        [ "$SECONDS" -lt "$deadline" ] || fail "znp did not listen within 180 s"
        sleep 0.5
    done
    pod logs "$CONTAINER" 2>&1 | grep 'znp: listening' >&2
}

# stop_with_sigterm: SIGTERM to $CONTAINER, which must exit 0 within 60 s.
# tini (PID 1) forwards the signal to znp, which stops the cluster and exits.
stop_with_sigterm() {
    local status
    pod kill --signal TERM "$CONTAINER" >/dev/null
    if ! status=$(timeout 60 "${PODMAN[@]}" wait "$CONTAINER"); then
        fail "the container did not stop within 60 s of SIGTERM"
    fi
    pod logs "$CONTAINER" >"$WORK/serve.log" 2>&1
    [ "$status" = 0 ] || fail "znp exited with status $status after SIGTERM"
    grep -q 'znp stopped' "$WORK/serve.log" || fail "no 'znp stopped' line in the output"
    log "SIGTERM: exit status 0"
}

# Without CAP_SYS_RESOURCE (missing on the development machines) the runtime
# cannot raise a limit, and podman's defaults of 1048576 open files and
# processes are above the current ones. podman 4.3.1 also sets its own
# RLIMIT_NPROC to 32768 (seen with strace), so a higher value fails as well.
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then
    nproc=32768
fi
RUN_OPTS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" --log-driver k8s-file)

# The image's user, so the mounted data directory can be handed to it.
ZNP_UID=$(pod run --rm "${RUN_OPTS[@]}" --network none --entrypoint id "$IMAGE" -u)
ZNP_GID=$(pod run --rm "${RUN_OPTS[@]}" --network none --entrypoint id "$IMAGE" -g)
[ "$ZNP_UID" -ne 0 ] || fail "the image runs as root; expected USER znp"

read -r HTTP_PORT GRPC_PORT <<<"$(free_ports 2)"
mkdir -p "$WORK/etc" "$WORK/data"
chown "$ZNP_UID:$ZNP_GID" "$WORK/data"
cat >"$WORK/etc/znp.yaml" <<EOF
server:
  listen: "127.0.0.1:$HTTP_PORT"
  grpc_listen: "127.0.0.1:$GRPC_PORT"
  threads: 1
  workers: 2
  docs_dir: "/usr/local/share/znp/swagger-ui"
database:
  data_dir: "/var/lib/znp"
EOF
chmod 0644 "$WORK/etc/znp.yaml"

CONTAINER=$(pod run --detach --network host "${RUN_OPTS[@]}" \
    -v "$WORK/etc/znp.yaml:/etc/znp/znp.yaml:ro" -v "$WORK/data:/var/lib/znp" \
    "$IMAGE")
log "container ${CONTAINER:0:12} started; http=127.0.0.1:$HTTP_PORT grpc=127.0.0.1:$GRPC_PORT"
wait_listening

BASE_URL="http://127.0.0.1:$HTTP_PORT"

# check_get LABEL HTTP_VERSION URL: 200, and prints the body file.
check_get() {
    local label=$1 version=$2 url=$3 out
    local body="$WORK/body.$label"
    local flag=--http1.1
    [ "$version" = 2 ] && flag=--http2-prior-knowledge
    out=$(curl -sS --max-time 10 "$flag" -o "$body" -w '%{http_code} %{http_version} %{content_type}' "$url") ||
        fail "$label: curl $url failed"
    log "$label: $out"
    case "$out" in
    "200 $version "*) ;;
    *) fail "$label: expected status 200 over HTTP/$version from $url, got: $out" ;;
    esac
    printf '%s\n' "$body"
}

body=$(check_get ping-http1 1.1 "$BASE_URL/api/v1/ping")
python3 -m json.tool "$body" >/dev/null || fail "ping-http1: the body is not JSON: $(head -c 200 "$body")"
log "ping body: $(cat "$body")"
body=$(check_get ping-h2c 2 "$BASE_URL/api/v1/ping")
python3 -m json.tool "$body" >/dev/null || fail "ping-h2c: the body is not JSON: $(head -c 200 "$body")"
body=$(check_get metrics 1.1 "$BASE_URL/metrics")
grep -q '^# TYPE ' "$body" || fail "metrics: no '# TYPE' line in /metrics"
log "metrics: $(grep -c '^# TYPE ' "$body") metric families"
body=$(check_get docs 1.1 "$BASE_URL/docs/")
grep -qi 'swagger' "$body" || fail "docs: /docs/ does not serve Swagger UI"

# grpc.health.v1.Health/Check with an empty request: one uncompressed
# zero-length message. SERVING is the reply 08 01 after the 5-byte prefix.
printf '\0\0\0\0\0' >"$WORK/health.req"
curl -sS --max-time 10 --http2-prior-knowledge -X POST \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary @"$WORK/health.req" -D "$WORK/health.headers" -o "$WORK/health.resp" \
    "http://127.0.0.1:$GRPC_PORT/grpc.health.v1.Health/Check" || fail "grpc health: curl failed"
grep -qi '^grpc-status: 0' "$WORK/health.headers" || fail "grpc health: no grpc-status 0: $(cat "$WORK/health.headers")"
[ "$(od -An -tx1 "$WORK/health.resp" | tr -d ' \n')" = 00000000020801 ] ||
    fail "grpc health: expected SERVING, got bytes $(od -An -tx1 "$WORK/health.resp")"
log "grpc health: SERVING"

# Processes: all of them as znp, one of them the cluster's postmaster.
pod top "$CONTAINER" user pid ppid hpid args >"$WORK/top.txt" || fail "podman top failed"
cat "$WORK/top.txt" >&2
awk 'NR > 1 && $1 != "znp" { bad = 1 } END { exit bad }' "$WORK/top.txt" ||
    fail "a process in the container runs as another user than znp"
grep -q '/usr/local/bin/znp serve' "$WORK/top.txt" || fail "znp serve is not running"
grep -q 'postgres -D /var/lib/znp/pg/data' "$WORK/top.txt" ||
    fail "no postgres with -D /var/lib/znp/pg/data in the container"
[ -f "$WORK/data/pg/data/PG_VERSION" ] || fail "no cluster in the mounted data directory"
[ -f "$WORK/data/pg/data/postmaster.pid" ] || fail "the cluster in the mounted data directory is not running"
[ "$(stat -c %u "$WORK/data/pg/data")" = "$ZNP_UID" ] || fail "the cluster directory is not owned by znp"
log "processes run as znp (uid $ZNP_UID); cluster $(cat "$WORK/data/pg/data/PG_VERSION") in the mounted data directory"

# --- SIGTERM ------------------------------------------------------------------
stop_with_sigterm

# When PID 1 exits, the kernel ends every process left in the container's PID
# namespace, so ask the cluster itself whether it was shut down, not killed.
[ ! -e "$WORK/data/pg/data/postmaster.pid" ] || fail "postmaster.pid is left behind: the cluster was not shut down"
# shellcheck disable=SC2016 # the inner shell expands the PostgreSQL version
state=$(pod run --rm "${RUN_OPTS[@]}" --network none --entrypoint /bin/sh -v "$WORK/data:/var/lib/znp" "$IMAGE" \
    -c 'exec "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_controldata" /var/lib/znp/pg/data' |
    sed -n 's/^Database cluster state: *//p')
[ "$state" = "shut down" ] || fail "cluster state after SIGTERM is '$state', expected 'shut down'"
# The host PIDs that podman top listed: none may be left.
left=
while read -r _ _ _ hpid _; do
    if [ -d "/proc/$hpid" ]; then
        left="$left $hpid:$(tr '\0' ' ' <"/proc/$hpid/cmdline")"
    fi
done < <(tail -n +2 "$WORK/top.txt")
[ -z "$left" ] || fail "processes of the container are still running:$left"
log "cluster state after SIGTERM: $state; none of the container's processes is left"

pod rm "$CONTAINER" >/dev/null
CONTAINER=

# --- 4. the image's own configuration -----------------------------------------
# As in `docker run -v znp-data:/var/lib/znp znp`: the built-in /etc/znp/znp.yaml
# (0.0.0.0:8080 and 0.0.0.0:8090) and a new volume at /var/lib/znp, in a
# network namespace of its own (--network none), so nothing listens on the
# host. curl reaches it through that namespace's loopback with nsenter.
CONTAINER=$(pod run --detach --network none "${RUN_OPTS[@]}" "$IMAGE")
log "container ${CONTAINER:0:12} started with the image's configuration and an anonymous volume"
wait_listening
pid=$(pod inspect --format '{{.State.Pid}}' "$CONTAINER")
out=$(nsenter --target "$pid" --net curl -sS --max-time 10 -o "$WORK/body.default" \
    -w '%{http_code} %{content_type}' http://127.0.0.1:8080/api/v1/ping) ||
    fail "default configuration: curl http://127.0.0.1:8080/api/v1/ping in the container's namespace failed"
case "$out" in
"200 application/json"*) ;;
*) fail "default configuration: expected 200 JSON from /api/v1/ping, got: $out" ;;
esac
log "default configuration: ping $out"
stop_with_sigterm
# --rm was not given, so the anonymous volume goes with the container.
pod rm --volumes "$CONTAINER" >/dev/null
CONTAINER=

log "all checks passed in $((SECONDS - STARTED)) s"
