#!/usr/bin/env bash
# scripts/deps.sh: installs the Debian 12 packages needed to build and test SeaStreamer.
#
# Idempotent and fast when everything is present: it only checks dpkg's status, and runs
# `apt-get update` (once) and `apt-get install` only for the packages that are missing.
# Uses sudo only when not running as root.
#
# Usage: scripts/deps.sh [EXTRA_PACKAGE...]   (extra packages, e.g. clang-format, are checked too)
# Environment: SKIP_DEPS=1 skips the whole check (e.g. on a machine without dpkg).
set -euo pipefail

if [[ "${SKIP_DEPS:-}" == 1 ]]; then
  echo "deps: skipped (SKIP_DEPS=1)"
  exit 0
fi

packages=(
  build-essential cmake ninja-build pkg-config
  libuv1-dev librdkafka-dev libhiredis-dev libmicrohttpd-dev
  liblua5.4-dev lua5.4 libluajit-5.1-dev luajit
  lua-busted luarocks lua-cjson lua-luv
  redis-server kcat
  openjdk-17-jre-headless maven
  clang libclang-rt-14-dev
  python3 curl
  "$@"
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps: dpkg-query not found; this script supports Debian only (set SKIP_DEPS=1 to skip)" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "deps: all present"
  exit 0
fi

sudo=()
if [[ "$(id -u)" != 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "deps: missing ${missing[*]}; not root and sudo is not available" >&2
    exit 1
  fi
  sudo=(sudo)
fi

# No prompts (CI has no stdin); wait for a concurrent apt/dpkg (e.g. unattended-upgrades)
# instead of failing on its lock.
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

log=$(mktemp "${TMPDIR:-/tmp}/seastreamer-deps.XXXXXX")
trap 'rm -f "$log"' EXIT

run() {
  if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >>"$log" 2>&1; then
    cat "$log" >&2
    echo "deps: failed: $*" >&2
    exit 1
  fi
}

run apt-get "${apt_opts[@]}" update
run apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"

echo "deps: installed ${missing[*]}"
