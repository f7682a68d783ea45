#!/usr/bin/env bash
# run.sh: builds the libFuzzer targets with clang and runs each for a short, bounded time.
# usage: run.sh SOURCE_DIR WORK_DIR SECONDS
set -euo pipefail
SRC=$1
WORK=$2
SECS=${3:-10}
CLANG=${CLANG:-clang}
if ! command -v "$CLANG" >/dev/null; then
  echo "fuzz: $CLANG not found (scripts/deps.sh installs clang)" >&2
  exit 1
fi
mkdir -p "$WORK"
FLAGS=(-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I"$SRC/host/include" -I"$SRC/plugins/stdio")
"$CLANG" "${FLAGS[@]}" "$SRC/tests/fuzz/fuzz_stdio_parse.c" "$SRC/plugins/stdio/stdio_parse.c" "$SRC/host/src/time.c" \
  -o "$WORK/fuzz_stdio_parse"
"$CLANG" "${FLAGS[@]}" "$SRC/tests/fuzz/fuzz_uri.c" "$SRC/host/src/uri.c" "$SRC/host/src/key.c" \
  "$SRC/host/src/memory.c" -lpthread -o "$WORK/fuzz_uri"

# Seeds: the documented forms, so the fuzzer starts from inputs that reach deep.
mkdir -p "$WORK/corpus_stdio" "$WORK/corpus_uri"
i=0
for line in 'hello' '[orders] hi' '[orders | 7] hi' '[orders | 7 | 2] hi' \
  '[2026-11-26T10:00:00.123 | orders | 7] hi' '[2026-11-26T10:00:00] hi' '[ ]' '[bad key!] x'; do
  printf '%s\n' "$line" >"$WORK/corpus_stdio/seed$i"
  i=$((i + 1))
done
for uri in 'stdio:///orders' 'kafka://a:9092,b:9092/orders,payments' 'file://./data/feed.ss/orders' \
  'redis://user:pw@localhost:6379/orders' 'x://a,,b/c' 'orders'; do
  printf '%s' "$uri" >"$WORK/corpus_uri/seed$i"
  i=$((i + 1))
done
export ASAN_OPTIONS=detect_leaks=1
"$WORK/fuzz_stdio_parse" -max_total_time="$SECS" -max_len=4096 "$WORK/corpus_stdio" 2>"$WORK/stdio.log" ||
  { tail -40 "$WORK/stdio.log"; exit 1; }
tail -1 "$WORK/stdio.log"
"$WORK/fuzz_uri" -max_total_time="$SECS" -max_len=1024 "$WORK/corpus_uri" 2>"$WORK/uri.log" ||
  { tail -40 "$WORK/uri.log"; exit 1; }
tail -1 "$WORK/uri.log"
echo "fuzz: no crash in ${SECS}s per target"
