#!/usr/bin/env bash
# Install what znp needs to build, run and test on Debian 12 (bookworm).
#
# Usage: scripts/setup.sh [--test] [--no-apt] [--help]
#
#   (no flag)  Debian packages for building and running znp, and the Swagger UI
#              files (swagger-ui-dist from npm) in third_party/swagger-ui/.
#   --test     also the packages the test suites use (valgrind, promtool, h2o,
#              h2load, ...) and the npm packages of tests/integration (gRPC client).
#   --no-apt   never call apt-get; fail when a package is missing.
#
# Safe to run again: apt-get runs only when a package is missing, and the npm
# steps are skipped when their result is already in place. Runs as root, or
# through sudo when started as another user.
set -euo pipefail

SWAGGER_UI_VERSION=5.35.0
# Integrity of swagger-ui-dist-5.35.0.tgz as published on the npm registry.
SWAGGER_UI_INTEGRITY="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="
# The files /docs serves, plus the licence files that must travel with them.
SWAGGER_UI_FILES=(
    index.html index.css swagger-ui.css swagger-ui-bundle.js swagger-ui-standalone-preset.js
    swagger-initializer.js favicon-16x16.png favicon-32x32.png oauth2-redirect.html oauth2-redirect.js
    LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt swagger-ui-standalone-preset.js.LICENSE.txt
)

BUILD_PACKAGES=(
    build-essential cmake pkg-config ca-certificates
    libh2o-evloop-dev libh2o-dev libgrpc-dev protobuf-c-compiler libprotobuf-c-dev protobuf-compiler
    libpq-dev libjansson-dev libssl-dev libcyaml-dev libyaml-dev libcmocka-dev libargon2-dev
    libcurl4-openssl-dev zlib1g-dev python3 python3-jinja2 python3-yaml
)
# postgresql pulls in postgresql-client-15 (psql, pg_dump).
RUNTIME_PACKAGES=(postgresql curl openssl)
# python3-aiosmtpd: the SMTP capture server of the mail tests.
# v2ray: `v2ray -test` checks the client configurations of the golden files.
# v2ray, trojan and shadowsocks-libev are the real servers and clients of
# scripts/e2e-proxy.sh, and python3-yaml reads its Clash files.
TEST_PACKAGES=(nghttp2-client h2o prometheus valgrind util-linux procps python3-aiosmtpd)
TEST_PACKAGES+=(v2ray trojan shadowsocks-libev python3-yaml)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WANT_TEST=0
USE_APT=1

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
    --test) WANT_TEST=1 ;;
    --no-apt) USE_APT=0 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
done

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "'$*' needs root: run this script as root or install sudo"
    fi
}

check_platform() {
    if [ ! -r /etc/os-release ]; then
        log "warning: /etc/os-release is missing; znp is built and tested on Debian 12"
        return
    fi
    # shellcheck disable=SC1091
    . /etc/os-release
    if [ "${ID:-}" != debian ] || [ "${VERSION_ID:-}" != 12 ]; then
        log "warning: this is ${PRETTY_NAME:-an unknown system}; znp is built and tested on Debian 12"
    fi
}

is_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

install_packages() {
    local wanted=("${BUILD_PACKAGES[@]}" "${RUNTIME_PACKAGES[@]}")
    [ "$WANT_TEST" -eq 1 ] && wanted+=("${TEST_PACKAGES[@]}")

    # Node.js may come from another source (NodeSource ships npm inside its
    # nodejs package, and Debian's npm package conflicts with it), so Debian's
    # nodejs and npm are only installed when no node is on PATH at all.
    if ! command -v node >/dev/null 2>&1; then
        wanted+=(nodejs npm)
    elif ! command -v npm >/dev/null 2>&1; then
        die "node is installed ($(command -v node)) but npm is not: install the npm that belongs to that Node.js"
    fi

    local missing=()
    local pkg
    for pkg in "${wanted[@]}"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        log "all ${#wanted[@]} Debian packages are installed"
        return
    fi
    if [ "$USE_APT" -eq 0 ]; then
        die "missing Debian packages (--no-apt given): ${missing[*]}"
    fi

    log "installing ${#missing[@]} Debian package(s): ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# The tarball's SRI integrity string ("sha512-<base64>").
integrity_of() {
    printf 'sha512-%s' "$(openssl dgst -sha512 -binary "$1" | base64 -w0)"
}

install_swagger_ui() {
    local dest="$ROOT/third_party/swagger-ui"
    local stamp="$dest/.version"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$SWAGGER_UI_VERSION" ]; then
        log "Swagger UI $SWAGGER_UI_VERSION is already in third_party/swagger-ui"
        return
    fi

    local tmp
    tmp=$(mktemp -d /tmp/znp-setup.XXXXXX)
    # `npm pack` only downloads the tarball: no dependency is installed and no
    # package script runs (swagger-ui-dist depends on an analytics package
    # whose install script reports to a third party).
    log "fetching swagger-ui-dist@$SWAGGER_UI_VERSION with npm pack"
    if ! (cd "$tmp" && npm pack --silent --ignore-scripts --no-fund --no-audit \
        "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null); then
        rm -rf "$tmp"
        die "npm pack swagger-ui-dist@$SWAGGER_UI_VERSION failed (is the npm registry reachable?)"
    fi
    local tarball="$tmp/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz"
    local got
    got=$(integrity_of "$tarball")
    if [ "$got" != "$SWAGGER_UI_INTEGRITY" ]; then
        rm -rf "$tmp"
        die "swagger-ui-dist tarball integrity mismatch: expected $SWAGGER_UI_INTEGRITY, got $got"
    fi

    local members=()
    local f
    for f in "${SWAGGER_UI_FILES[@]}"; do
        members+=("package/$f")
    done
    tar -xzf "$tarball" -C "$tmp" "${members[@]}"
    # Point the page at znp's own document instead of the upstream demo URL.
    sed -i 's#url: "https://petstore.swagger.io/v2/swagger.json"#url: "/openapi.json"#' \
        "$tmp/package/swagger-initializer.js"
    grep -q 'url: "/openapi.json"' "$tmp/package/swagger-initializer.js" ||
        die "could not point swagger-initializer.js at /openapi.json (did its layout change?)"

    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    mv "$tmp/package" "$dest"
    # The files are fetched, never committed.
    printf '*\n' >"$dest/.gitignore"
    printf '%s\n' "$SWAGGER_UI_VERSION" >"$stamp"
    rm -rf "$tmp"
    log "Swagger UI $SWAGGER_UI_VERSION installed in third_party/swagger-ui ($(du -sh "$dest" | cut -f1))"
}

install_test_node_modules() {
    local dir="$ROOT/tests/integration"
    if [ ! -f "$dir/package.json" ]; then
        log "tests/integration/package.json is missing; skipping the npm test packages"
        return
    fi
    local lock="$dir/package-lock.json"
    local stamp="$dir/node_modules/.znp-installed"
    local want
    want=$(cat "$dir/package.json" "$lock" 2>/dev/null | openssl dgst -sha256 -r | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "npm test packages in tests/integration are up to date"
        return
    fi
    log "installing npm test packages in tests/integration"
    if [ -f "$lock" ]; then
        (cd "$dir" && npm ci --ignore-scripts --no-fund --no-audit --loglevel=error)
    else
        (cd "$dir" && npm install --ignore-scripts --no-fund --no-audit --loglevel=error)
    fi
    printf '%s\n' "$want" >"$stamp"
}

export npm_config_update_notifier=false
check_platform
install_packages
install_swagger_ui
if [ "$WANT_TEST" -eq 1 ]; then
    install_test_node_modules
fi
log "done"
