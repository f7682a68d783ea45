#!/usr/bin/env bash
# fuzz.sh: builds the .ss reader's libFuzzer target with clang and runs it for a short, bounded
# time, starting from the reference samples and cut and written copies of them.
# usage: fuzz.sh SOURCE_DIR WORK_DIR SECONDS
set -euo pipefail
SRC=$1
WORK=$2
SECS=${3:-10}
CLANG=${CLANG:-clang}
if ! command -v "$CLANG" >/dev/null; then
  echo "fuzz: $CLANG not found (scripts/deps.sh installs clang)" >&2
  exit 1
fi
mkdir -p "$WORK/corpus_ss"
"$CLANG" -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=undefined -I"$SRC/plugins/file" \
  "$SRC/tests/file/fuzz_ss_reader.c" "$SRC/plugins/file/ss_codec.c" -o "$WORK/fuzz_ss_reader"
for f in "$SRC"/tests/file/data/*.ss; do
  b=$(basename "$f" .ss)
  cp "$f" "$WORK/corpus_ss/$b"
  head -c 1500 "$f" >"$WORK/corpus_ss/$b-cut"
done
export ASAN_OPTIONS=detect_leaks=1
"$WORK/fuzz_ss_reader" -max_total_time="$SECS" -max_len=16384 -rss_limit_mb=1024 \
  "$WORK/corpus_ss" 2>"$WORK/ss.log" || { tail -40 "$WORK/ss.log"; exit 1; }
tail -1 "$WORK/ss.log"
echo "fuzz: .ss reader: no crash in ${SECS}s"
