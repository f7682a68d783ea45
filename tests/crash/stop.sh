#!/usr/bin/env bash
# tests/crash/stop.sh: stopping on purpose loses nothing (issue 10).
#
#   stop.sh BUILD_DIR BACKEND [BACKEND_ARG] [CASE...]
#
# BACKEND redis|kafka|file (the backends that keep positions); BACKEND_ARG the redis port file or
# the kafka bootstrap file. Each case stops a command part way through 1..1000 (-c N, out:stop(),
# a processor error), then runs it again with -e; the union of the outputs must hold every number.
# The contract: a message is done when its consumer is done with it (written out and accepted by
# stdout for consume; its output's receipt arrived for relay and run), and only done messages may
# be acknowledged or committed; `-c N` and `out:stop()` commit exactly the first N done, so the
# second run gets exactly the others. A processor error may cost duplicates (of messages before
# it), never a message.
# Cases (default: all): c500 resumable-c300 batch100-c250 relay-c500 run-c500 run-stop run-error
# CRASH_LUA=luajit runs the run cases on LuaJIT (--lua luajit).
set -uo pipefail
BUILD=$(cd "$1" && pwd)
BACKEND=$2
BACKEND_ARG=${3:-}
shift 2
[[ $# -gt 0 ]] && shift
CASES=("$@")
[[ ${#CASES[@]} -eq 0 ]] && CASES=(c500 resumable-c300 batch100-c250 relay-c500 run-c500 run-stop run-error)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=1000
echo 'return function(msg) return msg end' >"$T/identity.lua"
lua_opts=()
[[ -n ${CRASH_LUA:-} ]] && lua_opts=(--lua "$CRASH_LUA")

# status NAME WANT GOT ERRFILE: an exit status, with the command's stderr when it is wrong.
status() {
  if [[ $3 -eq $2 ]]; then ok; else bad "$1: exit status $3, expected $2: $(head -c 600 "$4")"; fi
}

# expect_no_dups NAME: the last tally found every number at most once.
expect_no_dups() {
  if [[ $DUPS -eq 0 ]]; then ok; else
    bad "$1: $DUPS duplicates (e.g. $(head -5 "$T/dups" | tr '\n' ' ')); the first run's commit" \
      "should have covered exactly what it wrote"
  fi
}

# consume_case NAME FIRST_COUNT OPTION...: consume OPTIONs -o beginning -c FIRST_COUNT, then
# consume OPTIONs -e; the first gets exactly 1..FIRST_COUNT, the second exactly the rest.
consume_case() {
  local name=$1 c=$2 t0=$SECONDS
  shift 2
  local id="stop-$BACKEND-$name-$RUN_ID"
  local in
  in=$(uri "$id-in")
  local opts=("$@" "${group_extra[@]}")
  # the group options name a group of this case's own
  opts=("${opts[@]/GROUP/g-$id}")
  produce_seq "$N" "$in" || return
  bounded "$SS" consume "${opts[@]}" -o beginning -c "$c" -f '%s\n' "$in" >"$T/$id.1" 2>"$T/$id.err1"
  status "$name: first run" 0 $? "$T/$id.err1"
  expect_seq "$name: first run" 1 "$c" "$T/$id.1"
  bounded "$SS" consume "${opts[@]}" -e -f '%s\n' "$in" >"$T/$id.2" 2>"$T/$id.err2"
  status "$name: second run (-e)" 0 $? "$T/$id.err2"
  expect_all "$name: both runs" "$N" "$T/$id.1" "$T/$id.2"
  expect_no_dups "$name: both runs"
  echo "    $name: first run $(wc -l <"$T/$id.1"), second run $(wc -l <"$T/$id.2");" \
    "lost $LOST; duplicates $DUPS; $((SECONDS - t0)) s"
}

case_c500() { consume_case c500 500 -G GROUP; }
case_resumable-c300() { consume_case resumable-c300 300 --mode resumable -G GROUP; }
case_batch100-c250() { consume_case batch100-c250 250 -G GROUP -X batch=100; }

# relay -G g -o beginning -c 500 into a second stream, then relay -G g -e: the second stream holds
# exactly 1..500 after the first, and exactly 1..1000 after the second.
case_relay-c500() {
  local id="stop-$BACKEND-relay-$RUN_ID" t0=$SECONDS
  local in out ix=() o
  in=$(uri "$id-in")
  out=$(uri "$id-out")
  for o in "${group_extra[@]}"; do [[ $o == -X ]] && ix+=(-I) || ix+=("$o"); done
  produce_seq "$N" "$in" || return
  bounded "$SS" relay -G "g-$id" "${ix[@]}" -o beginning -c 500 "$in" "$out" 2>"$T/$id.err1"
  status "relay-c500: first run" 0 $? "$T/$id.err1"
  read_stream "$out" "$T/$id.1" || return
  expect_seq "relay-c500: first run's output" 1 500 "$T/$id.1"
  bounded "$SS" relay -G "g-$id" "${ix[@]}" -e "$in" "$out" 2>"$T/$id.err2"
  status "relay-c500: second run (-e)" 0 $? "$T/$id.err2"
  read_stream "$out" "$T/$id.all" || return
  expect_all "relay-c500: the output" "$N" "$T/$id.all"
  expect_no_dups "relay-c500: the output"
  echo "    relay-c500: output after the first run $(wc -l <"$T/$id.1"), after both $TOTAL;" \
    "lost $LOST; duplicates $DUPS; $((SECONDS - t0)) s"
}

# run with a processor that calls out:stop() at its 400th message (which it still forwards), then
# the identity with -e: the output holds exactly 1..400, then exactly 1..1000.
case_run-stop() {
  local id="stop-$BACKEND-runstop-$RUN_ID" t0=$SECONDS
  local in out ix=() o
  in=$(uri "$id-in")
  out=$(uri "$id-out")
  for o in "${group_extra[@]}"; do [[ $o == -X ]] && ix+=(-I) || ix+=("$o"); done
  cat >"$T/stop400.lua" <<'LUA'
local n = 0
return {
  process = function(msg, out)
    n = n + 1
    if n == 400 then out:stop() end
    return msg
  end,
}
LUA
  produce_seq "$N" "$in" || return
  # no -e: only out:stop() ends this run (the bound ends it if that does not work)
  bounded "$SS" run "${lua_opts[@]}" "$T/stop400.lua" --input "$in" --output "$out" -I "group=g-$id" "${ix[@]}" \
    -I start=beginning 2>"$T/$id.err1"
  status "run-stop: the run stopped by out:stop()" 0 $? "$T/$id.err1"
  read_stream "$out" "$T/$id.1" || return
  expect_seq "run-stop: output after out:stop() at the 400th" 1 400 "$T/$id.1"
  bounded "$SS" run "${lua_opts[@]}" "$T/identity.lua" --input "$in" --output "$out" -I "group=g-$id" "${ix[@]}" -e \
    2>"$T/$id.err2"
  status "run-stop: the rerun (-e)" 0 $? "$T/$id.err2"
  read_stream "$out" "$T/$id.all" || return
  expect_all "run-stop: the output" "$N" "$T/$id.all"
  expect_no_dups "run-stop: the output"
  echo "    run-stop: output after out:stop() $(wc -l <"$T/$id.1"), after the rerun $TOTAL;" \
    "lost $LOST; duplicates $DUPS; $((SECONDS - t0)) s"
}

# run -c 500 with the identity, then run -e: the output holds exactly 1..500, then exactly 1..1000.
case_run-c500() {
  local id="stop-$BACKEND-runc-$RUN_ID" t0=$SECONDS
  local in out ix=() o
  in=$(uri "$id-in")
  out=$(uri "$id-out")
  for o in "${group_extra[@]}"; do [[ $o == -X ]] && ix+=(-I) || ix+=("$o"); done
  produce_seq "$N" "$in" || return
  bounded "$SS" run "${lua_opts[@]}" "$T/identity.lua" --input "$in" --output "$out" -I "group=g-$id" "${ix[@]}" \
    -I start=beginning -c 500 2>"$T/$id.err1"
  status "run-c500: first run" 0 $? "$T/$id.err1"
  read_stream "$out" "$T/$id.1" || return
  expect_seq "run-c500: first run's output" 1 500 "$T/$id.1"
  bounded "$SS" run "${lua_opts[@]}" "$T/identity.lua" --input "$in" --output "$out" -I "group=g-$id" "${ix[@]}" -e \
    2>"$T/$id.err2"
  status "run-c500: the rerun (-e)" 0 $? "$T/$id.err2"
  read_stream "$out" "$T/$id.all" || return
  expect_all "run-c500: the output" "$N" "$T/$id.all"
  expect_no_dups "run-c500: the output"
  echo "    run-c500: output after the first run $(wc -l <"$T/$id.1"), after both $TOTAL;" \
    "lost $LOST; duplicates $DUPS; $((SECONDS - t0)) s"
}

# run with a processor that fails on message 600, --on-error stop: the run exits non-zero having
# written nothing from 600 on; a rerun with the identity gets every message from 600 on. Only
# messages before 600 may come twice.
case_run-error() {
  local id="stop-$BACKEND-runerr-$RUN_ID" t0=$SECONDS
  local in out ix=() o
  in=$(uri "$id-in")
  out=$(uri "$id-out")
  for o in "${group_extra[@]}"; do [[ $o == -X ]] && ix+=(-I) || ix+=("$o"); done
  cat >"$T/fail600.lua" <<'LUA'
return function(msg)
  if msg.payload == "600" then error("failing on purpose at 600") end
  return msg
end
LUA
  produce_seq "$N" "$in" || return
  bounded "$SS" run "${lua_opts[@]}" "$T/fail600.lua" --input "$in" --output "$out" -I "group=g-$id" "${ix[@]}" \
    -I start=beginning --on-error stop -e 2>"$T/$id.err1"
  local st=$?
  if [[ $st -ne 0 && $st -ne 137 ]]; then ok; else
    bad "run-error: the failing run: exit status $st, expected non-zero (and not the bound's kill)"
  fi
  expect_grep "run-error: the error is reported" 'failing on purpose at 600' "$T/$id.err1"
  read_stream "$out" "$T/$id.1" || return
  # nothing from the failing message on was processed
  local late
  late=$(awk '$0 + 0 >= 600' "$T/$id.1" | wc -l)
  if [[ $late -eq 0 ]]; then ok; else bad "run-error: $late messages from 600 on were written by the failing run"; fi
  bounded "$SS" run "${lua_opts[@]}" "$T/identity.lua" --input "$in" --output "$out" -I "group=g-$id" "${ix[@]}" -e \
    2>"$T/$id.err2"
  status "run-error: the rerun without the failure (-e)" 0 $? "$T/$id.err2"
  read_stream "$out" "$T/$id.all" || return
  expect_all "run-error: the output" "$N" "$T/$id.all"
  if [[ $DUPS -eq 0 ]] || [[ $(awk '$0 + 0 >= 600' "$T/dups" | wc -l) -eq 0 ]]; then ok; else
    bad "run-error: numbers from 600 on came twice: $(awk '$0 + 0 >= 600' "$T/dups" | head -5 | tr '\n' ' ')"
  fi
  if [[ $MAXC -le 2 ]]; then ok; else bad "run-error: a number was written $MAXC times"; fi
  echo "    run-error: output of the failing run $(wc -l <"$T/$id.1") (status $st), after the rerun $TOTAL;" \
    "lost $LOST; duplicates $DUPS (allowed: before 600); $((SECONDS - t0)) s"
}

for c in "${CASES[@]}"; do
  echo "--- $BACKEND $c"
  "case_$c"
done
finish
