#!/usr/bin/env bash
# tests/crash/window.sh: kill -9 in the middle of `seastreamer run` with a processor whose output
# comes from its tick (a window), restart with -e, count.
#
#   window.sh BUILD_DIR
#
# The processor (hold = true) keeps each payload in a buffer and sends the buffer from its tick
# (every 250 ms) and its stop hook: its messages are done only once a tick has sent them. It
# follows a .ss file that 1..N are being written to, in group g (resumable), committing every
# 50 ms, into a second file;
# it is killed -9 once its output holds N/5 or more (kill_midway stops it for 1.5 s half way, so
# that its commit timer is due and commits while the buffer holds messages no tick sent yet),
# restarted with -e, then run once more with -e. The checks:
#   - nothing lost: the union of the output holds every number 1..N and nothing else; without
#     hold the commit between two ticks loses the buffer's messages with the kill;
#   - what the group had committed at the kill was all sent before it;
#   - the restart committed everything: a third run writes nothing.
# WINDOW_HOLD=false runs the same processor without hold (to see the test fail).
set -uo pipefail
BUILD=$(cd "$1" && pwd)
BACKEND=file
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${CRASH_N:-100000}
K=$((N / 5))
cat >"$T/window.lua" <<EOF
local buf, n = {}, 0
local function flush(out)
  for i = 1, n do out:send(nil, buf[i]) end
  buf, n = {}, 0
end
return {
  hold = ${WINDOW_HOLD:-true},
  tick_ms = 250,
  process = function(msg)
    n = n + 1
    buf[n] = msg.payload
  end,
  tick = flush,
  stop = flush,
}
EOF
in=$(uri win-in) out=$(uri win-out)
# stream_count's measure: the size of a file of 1..N
produce_seq "$N" "$(uri win-ref)" || { finish; exit; }
FILE_IN_N=$N
FILE_IN_SIZE=$(stat -c %s "$T/win-ref.ss")
# The input is written while the run follows it, at about 25,000 messages a second, so that
# every tick has some to send and every commit finds some that no tick sent yet.
awk -v n="$N" 'BEGIN { for (i = 1; i <= n; i++) { print i; if (i % 500 == 0) { fflush(); system("sleep 0.02") } } }' |
  timeout -s KILL 120 "$SS" produce "$in" 2>"$T/produce.err" &
ppid=$!
for ((i = 0; i < 500; i++)); do [[ -s "$T/win-in.ss" ]] && break; sleep 0.01; done

echo "--- run with hold = ${WINDOW_HOLD:-true}: $N messages sent from a tick, kill -9 at $K or more written"
g="g-win-$RUN_ID"
run=("$SS" run "$T/window.lua" --input "$in" --output "$out" -I mode=resumable -I "group=$g"
  --commit-interval 50)
RUN_CMD=("${run[@]}" -I start=beginning)
# The output grows at the ticks only, and kill_midway kills right after it sees it grow, which
# would be right after a tick: the count it sees reaches K only some 20 looks (about 0.3 s) after
# the output did, so that the kill lands anywhere between two ticks.
late_count() {
  local n looks
  n=$(stream_count win-out)
  ((n >= K)) || { echo "$n"; return; }
  looks=$(($(cat "$T/looks" 2>/dev/null || echo 0) + 1))
  echo "$looks" >"$T/looks"
  if ((looks >= 20)); then echo "$n"; else echo $((K - 1)); fi
}
run_and_kill "run with hold" "$T/win.1" "$T/win.err1" "$K" late_count || { finish; exit; }
wait "$ppid" || bad "producing the input: $(head -c 400 "$T/produce.err")"
read_stream "$out" "$T/before" || { finish; exit; }
written=$(whole_lines "$T/before" | wc -l)
if [[ $written -lt $N ]]; then ok; else bad "all $N were written before the kill"; fi

# What group g had committed at the kill: the numbers before its committed byte offset. Every
# one of them was sent (and confirmed) before the kill.
file_committed "$T/win-in.ss" "$g" "$T/committed"
unsent=$(not_in <(whole_lines "$T/before") <"$T/committed" | wc -l)
if [[ $unsent -eq 0 ]]; then ok; else
  bad "$unsent numbers were committed before the kill but not sent, e.g." \
    "$(not_in <(whole_lines "$T/before") <"$T/committed" | head -5 | tr '\n' ' ')"
fi

# Restart with -e: it finishes and the union holds everything.
restart "$out" "$T/after" "${run[@]}" -e || { finish; exit; }
total=$(wc -l <"$T/after")
expect_all "the union of the outputs" "$N" "$T/after"

# Once more with -e: the restart committed what it did, nothing comes again.
third_run "$out" "$total" "${run[@]}" -e

echo "    run with hold = ${WINDOW_HOLD:-true}: written before the kill $written (looked at $KILLED_AT); committed at the" \
  "kill $(wc -l <"$T/committed"); restart wrote $((total - written)); lost $LOST;" \
  "duplicates $DUPS; a third run wrote $AGAIN"
finish
