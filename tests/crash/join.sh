#!/usr/bin/env bash
# tests/crash/join.sh: kill -9 in the middle of `seastreamer run --join` over two .ss files in a
# group, restart with -e, count (issue 11).
#
#   join.sh BUILD_DIR
#
# Two files hold 1..N between them, the odd numbers in one and the even in the other, each
# message at its number in milliseconds, so that the join interleaves them message by message.
# `run --join` with an identity script reads both in group g (resumable) into a third file; it is
# killed -9 once its output holds N/5 or more, restarted with -e, then run once more with -e.
# The checks:
#   - nothing lost: the union of the output holds every number 1..N and nothing else, none of
#     them more than twice (one kill, one re-delivery);
#   - the join's order: what the first run wrote is 1, 2, 3, ... without a gap, and what the
#     restart wrote is strictly increasing (it resumes each file from its own committed position);
#   - no number the group had committed at the kill (read from each file's PATH.GROUP.pos) is
#     written again;
#   - the restart committed everything: a third run writes nothing.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
BACKEND=file
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${CRASH_N:-100000}
K=$((N / 5))
echo 'return function(msg) return msg end' >"$T/identity.lua"

# gen FROM: stdio lines "[timestamp | k] n" for n = FROM, FROM+2, ... up to N, at n ms.
gen() {
  awk -v from="$1" -v n="$N" 'BEGIN {
    for (v = from; v <= n; v += 2)
      printf "[2026-01-01T%02d:%02d:%02d.%03d | k] %d\n", int(v / 3600000), int(v / 60000) % 60,
        int(v / 1000) % 60, v % 1000, v
  }'
}
a="file://$T/join-a.ss/k" b="file://$T/join-b.ss/k" out="file://$T/join-out.ss/k"
gen 1 | bounded "$SS" produce "$a" || bad "producing the odd numbers"
gen 2 | bounded "$SS" produce "$b" || bad "producing the even numbers"
FILE_IN_N=$(((N + 1) / 2)) # for stream_count: the output's size over one input's
FILE_IN_SIZE=$(stat -c %s "$T/join-a.ss")

echo "--- run --join: $N messages in two files, kill -9 at $K or more written"

# increasing NAME FILE [CONSECUTIVE]: the numbers of FILE (whole lines) strictly increase (and,
# with CONSECUTIVE, are 1, 2, 3, ...).
increasing() {
  local r
  r=$(whole_lines "$2" | awk -v c="${3:-}" '
    { if (NR > 1 && $0 + 0 <= prev) { print NR ": " prev " then " $0; exit }
      if (c != "" && $0 + 0 != NR) { print NR ": " $0 " at line " NR; exit }
      prev = $0 + 0 }')
  if [[ -z $r ]]; then ok; else bad "$1: out of order at line $r"; fi
}

# 1. Start, and kill -9 in the middle. On a loaded machine one of kill_midway's slices can last
# long enough for the run to finish before the kill: such a round proves nothing, so it starts
# over with a new output and group, at most 3 times (the check below fails if every round did).
for attempt in 1 2 3; do
  g="g-join-$RUN_ID-$attempt"
  run=("$SS" run --join "$T/identity.lua" --input "$a" --input "$b" --output "$out"
    -I mode=resumable -I "group=$g")
  rm -f -- "$T/join-out.ss"
  RUN_CMD=("${run[@]}" -I start=beginning)
  run_and_kill "run --join" "$T/join.1" "$T/join.err1" "$K" stream_count join-out || { finish; exit; }
  read_stream "$out" "$T/before" || { finish; exit; }
  written=$(whole_lines "$T/before" | wc -l)
  ((written < N)) && break
  echo "    round $attempt: all $N were written before the kill (looked at $KILLED_AT); again"
done
# The numbers group g committed in each file at the kill.
file_committed "$T/join-a.ss" "$g" "$T/committed.join-a"
file_committed "$T/join-b.ss" "$g" "$T/committed.join-b"
cat "$T/committed.join-a" "$T/committed.join-b" >"$T/committed"
if [[ $written -lt $N ]]; then ok; else bad "all $N were written before the kill"; fi
increasing "the first run's output" "$T/before" consecutive

# 2. Restart with -e: it finishes, says nothing (but the cut of a torn frame), and writes the
# rest in order.
restart "$out" "$T/after" "${run[@]}" -e || { finish; exit; }
total=$(wc -l <"$T/after")
tail -n +$((written + 1)) "$T/after" >"$T/restart"
increasing "the restart's output" "$T/restart"
expect_all "the union of the outputs" "$N" "$T/after"
if [[ $MAXC -le 2 ]]; then ok; else bad "a number was written $MAXC times after one kill"; fi
# A message the group had committed is never delivered again.
stray=$(only_in "$T/committed" <"$T/dups" | wc -l)
if [[ $stray -eq 0 ]]; then ok; else
  bad "$stray numbers committed before the kill were written again, e.g." \
    "$(only_in "$T/committed" <"$T/dups" | head -5 | tr '\n' ' ')"
fi

# 3. Once more with -e: the restart committed what it did, nothing comes again.
third_run "$out" "$total" "${run[@]}" -e

echo "    run --join: written before the kill $written (looked at $KILLED_AT); committed at the" \
  "kill $(wc -l <"$T/committed.join-a") odd, $(wc -l <"$T/committed.join-b") even; restart wrote" \
  "$((total - written)); lost $LOST; duplicates $DUPS; a third run wrote $AGAIN"
finish
