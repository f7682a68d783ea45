#!/usr/bin/env bash
# ss-decode.sh: prints the path of the Rust SeaStreamer's `ss-decode` (crate sea-streamer-file,
# feature "executables"), building it with cargo from crates.io into a cache the first time:
# ${SEASTREAMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/seastreamer}/ss-decode-VERSION. Test tooling
# only: the product never needs Rust. Exits 77 (ctest's "skipped") with the reason on stderr
# when there is no cargo or the build fails, e.g. offline.
set -euo pipefail
version=0.5.2
cache=${SEASTREAMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/seastreamer}
root="$cache/ss-decode-$version"
bin="$root/bin/ss-decode"
if [[ -x "$bin" ]]; then
  echo "$bin"
  exit 0
fi
cargo=$(command -v cargo || true)
[[ -n "$cargo" ]] || cargo=$HOME/.cargo/bin/cargo
if [[ ! -x "$cargo" ]]; then
  echo "ss-decode.sh: cargo not found: cannot build ss-decode (install Rust, or set SS_DECODE)" >&2
  exit 77
fi
mkdir -p "$cache"
# One build at a time (the plain and the sanitizer builds' tests may both ask).
exec 9>"$cache/ss-decode.lock"
flock 9
if [[ ! -x "$bin" ]]; then
  echo "ss-decode.sh: building sea-streamer-file $version with cargo (once, about a minute)" >&2
  # Not --locked: the crate's own lock file pins a `time` that today's rustc rejects.
  if ! "$cargo" install --quiet --root "$root.tmp" sea-streamer-file --version "$version" \
    --features executables >"$cache/ss-decode.log" 2>&1; then
    tail -n 20 "$cache/ss-decode.log" >&2
    echo "ss-decode.sh: cargo install sea-streamer-file $version failed (log: $cache/ss-decode.log)" >&2
    rm -rf "$root.tmp"
    exit 77
  fi
  rm -rf "$root"
  mv "$root.tmp" "$root"
fi
echo "$bin"
