#!/usr/bin/env bash
# test_join_stall.sh: `seastreamer run --join` keeps its time order across a stall longer than
# --join-wait. The join follows two .ss files, a (odd numbers) and b (even numbers), each message
# at its number in ms. Before each stall a holds one message more than b, which the join holds,
# waiting for b (silent) for the wait. The process is stopped (SIGSTOP) within that wait, both
# files get their next messages (interleaved in time), the stop lasts longer than the wait, and
# SIGCONT. The wait fell due during the stop with both files' data waiting unread: a join that
# judged b silent by the time alone (its timer runs before the loop polls; one file may be read
# before the other) would release one file's messages before the other's. The check: the output
# is 1, 2, 3, ... in order, and no message is reported late. Nothing asserts a time; a round whose
# stop came only after the wait had fallen due (the held message was out) proves nothing and is
# not counted (at least one round must count); every wait is bounded.
# usage: test_join_stall.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

bounded() { timeout -s KILL 60 "$@"; }
if [[ ! -x $BUILD/lua/seastreamer-run-lua5.4 && ! -x $BUILD/lua/seastreamer-run-luajit ]]; then
  echo "no Lua runner built: skipped"
  exit 77
fi

M=${STALL_M:-200}         # messages a file a round
ROUNDS=${STALL_ROUNDS:-3} # stalls
WAIT_MS=1500              # --join-wait; each stall is 2.5 s
# gen FROM: stdio lines "[timestamp | k] n" for n = FROM, FROM+2, ... (M of them), at n ms.
gen() {
  awk -v from="$1" -v m="$M" 'BEGIN {
    for (i = 0; i < m; i++) {
      v = from + 2 * i
      printf "[2026-01-01T%02d:%02d:%02d.%03d | k] %d\n", int(v / 3600000), int(v / 60000) % 60,
        int(v / 1000) % 60, v % 1000, v
    } }'
}
# round R: the messages of round R (0, 1, ...) appended: to b the even numbers of R*2M+1 ..
# (R+1)*2M, to a the odd ones from R*2M+3 and (R+1)*2M+1, the one the join holds until the next
# round (round 0 gives a 1 as well).
round() {
  local base=$(($1 * 2 * M))
  { (($1 == 0)) && gen 1 | head -1; gen $((base + 3)); } | bounded "$SS" produce "file://$T/a.ss/k" ||
    bad "round $1: producing to a"
  gen $((base + 2)) | bounded "$SS" produce "file://$T/b.ss/k" || bad "round $1: producing to b"
}
# wait_lines N: until the output holds N lines or more (bounded: 600 looks of 0.05 s); false if not.
wait_lines() {
  local i
  for ((i = 0; i < 600; i++)); do
    (($(wc -l <"$T/out") >= $1)) && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
payloads() { sed 's/^\[[^]]*\] //' "$1"; }

echo 'return function(msg) return msg end' >"$T/id.lua"
round 0
: >"$T/out"
# The command itself in the background (not under timeout: its pid is the one stopped and ended);
# the trap ends it on every exit path.
"$SS" run --join --join-wait "$WAIT_MS" "$T/id.lua" --input "file://$T/a.ss/k" \
  --input "file://$T/b.ss/k" -I start=beginning --output stdio:///out >"$T/out" 2>"$T/err" &
pid=$!
trap 'kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$T"' EXIT

# The output holds 1..2M*R once round R-1 is in; the next number is held for the wait.
if wait_lines $((2 * M)); then ok; else bad "the first round was not written: $(head -c 400 "$T/err")"; fi
# ordered: how many lines of the output must be in order (all of them, unless a stop came after
# the wait had fallen due: from that round on, b was silent for the wait as the rule says, and
# the order is not promised).
counted=0 ordered=0
for ((r = 1; r <= ROUNDS && failed == 0; r++)); do
  kill -STOP "$pid"
  held=$(($(wc -l <"$T/out") == 2 * M * r)) # else the wait fell due before the stop
  round "$r"
  sleep 2.5 # longer than --join-wait: the wait falls due during the stop
  kill -CONT "$pid"
  if ((held)); then counted=$((counted + 1)); else
    echo "round $r: the stop came after the wait had fallen due: not counted, the rounds end here"
    ordered=$((2 * M * r))
    ROUNDS=$r
  fi
  if wait_lines $((2 * M * (r + 1))); then ok; else
    bad "round $r: the output has $(wc -l <"$T/out") lines, expected $((2 * M * (r + 1))): $(head -c 400 "$T/err")"
  fi
done
if ((counted > 0 || failed > 0)); then ok; else bad "no stop came within the wait"; fi
# The last held message goes once b has been silent for the wait.
wait_lines $((2 * M * (ROUNDS + 1) + 1)) || bad "the last message was not written"

kill -TERM "$pid"
for ((i = 0; i < 200; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
if kill -0 "$pid" 2>/dev/null; then bad "run --join did not end on SIGTERM within 10 s"; fi
kill -KILL "$pid" 2>/dev/null
wait "$pid" 2>/dev/null

n=$((2 * M * (ROUNDS + 1) + 1))
((ordered)) || ordered=$n
payloads "$T/out" >"$T/got"
r=$(head -n "$ordered" "$T/got" | awk '$0 + 0 != NR { print "line " NR " is " $0; exit }')
if [[ -z $r ]]; then ok; else
  bad "the output is not in order after stalls longer than the join's wait: $r"
fi
if cmp -s <(seq 1 "$n") <(sort -n "$T/got"); then ok; else
  bad "the output is not 1..$n: $(wc -l <"$T/got") lines"
fi
if ((ordered < n)); then ok; elif grep -q "late" "$T/err"; then
  bad "a message was reported late: $(grep -m1 late "$T/err")"
else ok; fi
finish
