#!/usr/bin/env bash
# interop.sh: the Rust SeaStreamer's own `ss-decode` (crate sea-streamer-file, feature
# "executables") against `seastreamer decode`, on the reference samples and on files this
# backend writes (many streams, small beacon intervals, long and binary payloads, JSON with
# numbers of every shape, an appended session). ss-decode is SS_DECODE if set, else the one
# ss-decode.sh builds with cargo from crates.io (cached); skipped (status 77) when neither works.
# usage: interop.sh BUILD_DIR DATA_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
SS="$BUILD/seastreamer"
if [ -n "${SS_DECODE:-}" ]; then
  RUST=$SS_DECODE
else
  RUST=$(bash "$(dirname "${BASH_SOURCE[0]}")/ss-decode.sh")
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "interop: no ss-decode (set SS_DECODE); skipped"
    exit 77
  fi
fi
if [ ! -x "$RUST" ]; then
  echo "interop: $RUST is not an executable"
  exit 1
fi
echo "interop: $RUST against $SS"
export SEASTREAMER_PLUGIN_DIR="$BUILD/plugins"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
failed=0
same() { # FILE: every format of both decoders agree
  for fmt in log ndjson; do
    for h in "" --header-only; do
      "$RUST" --file "$1" --format $fmt $h >"$T/r.out" 2>"$T/r.err"
      "$SS" decode --format $fmt $h "$1" >"$T/c.out" 2>"$T/c.err"
      if ! cmp -s "$T/r.out" "$T/c.out"; then
        echo "FAIL: $1 --format $fmt $h differs:" >&2
        diff "$T/r.out" "$T/c.out" | head -6 >&2
        failed=$((failed + 1))
      fi
    done
  done
}
for f in "$DATA"/*.ss; do same "$f"; done
# Many streams (round-robin markers), beacons every 4096 and 1024 bytes, payloads from empty to
# 5000 bytes, JSON values of every shape, binary.
awk 'BEGIN {
  srand(3)
  for (i = 0; i < 4000; i++) {
    k = "s" (i % 12); r = i % 6
    if (r == 0) p = sprintf("{\"z\": %d, \"a\": [1.5, 2e21, -0.001, 1e-7, 100.0, %d.%de%d], \"m\": {\"y\": null, \"b\": true}}", i, i, i * 7, (i % 700) - 350)
    else if (r == 1) p = sprintf("plain \"%d\" \\\\ text", i)
    else if (r == 2) { p = ""; n = int(rand() * 5000); for (j = 0; j < n; j++) p = p "x" }
    else if (r == 3) p = sprintf("%d", i * 1000003)
    else if (r == 4) p = sprintf("[%d, %de%d, -0, 18446744073709551616%d]", -i, i, i % 40, i)
    else p = sprintf("\001\002 not utf-8 \377 %d", i)
    print "[" k "] " p
  }
}' >"$T/in.txt"
for I in 4096 1024; do
  "$SS" relay -O beacon_interval=$I stdio:// "file://$T/w$I.ss" <"$T/in.txt" || failed=$((failed + 1))
  printf 'appended-1\nappended-2\n' | "$SS" produce "file://$T/w$I.ss/s3" || failed=$((failed + 1))
  same "$T/w$I.ss"
done
echo "interop: $failed difference(s)"
[ "$failed" -eq 0 ]
