#!/usr/bin/env bash
# tests/crash/eos.sh BUILD: exactly once, Kafka to Kafka (issue 16), against a broker of its own
# (4 partitions per topic; restarted by one case), with a read_committed reader as the judge:
#   - kill -9 of `relay --exactly-once`, of `run --exactly-once` with an identity script, with
#     a fan-out script (each message to the default output and to a named one) and with a script
#     whose every 1000th message goes to the dead-letter output, in the middle of 400,000
#     messages; the restart with -e; every expected output exactly once, 0 lost, 0 dup;
#   - the broker killed and restarted under a running `run --exactly-once`;
#   - a processor error under --on-error stop: nothing of the failed window is visible (a rerun
#     of the fixed script then gives every output exactly once: a visible output of the failed
#     window would be a duplicate);
#   - two instances in one load-balanced group, one killed and restarted (its transactional id
#     fences its dead predecessor; the other one's rebalance aborts its open window);
#   - refusals: an input or output that cannot take part, named.
# Every wait is bounded; nothing here asserts a time.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BROKER_DIR=$(mktemp -d)/broker
broker() { bash "$here/../kafka/broker.sh" "$@"; }
# A transaction left open by a killed process is aborted by the broker once it times out: the
# tests restart with the same transactional id, which aborts it at once, and give the timeout a
# small bound for the case where a member is gone for good.
KAFKA_PARTITIONS=4 KAFKA_EXTRA_PROPS="transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
transaction.remove.expired.transaction.cleanup.interval.ms=1000" \
  broker start "$BROKER_DIR" >/dev/null || { echo "FAIL: the broker did not start" >&2; exit 1; }
BACKEND=kafka
BACKEND_ARG=$BROKER_DIR/bootstrap
# shellcheck source=lib.sh
source "$here/lib.sh"
trap 'cleanup; broker stop "$BROKER_DIR"; rm -rf "$(dirname "$BROKER_DIR")"' EXIT

N=${EOS_N:-100000}
# EOS_CASES picks cases (for a developer; the test runs them all).
CASES=" ${EOS_CASES:-refusals kill broker error members} "
want() { [[ $CASES == *" $1 "* ]]; }
g() { echo "g-$1-$RUN_ID"; } # a group of its own
K=$((N * 3 / 10))
GX=(-X session.timeout.ms=6000)
TXO=(-O transaction.timeout.ms=10000 --commit-interval 100)
# The kill cases close a window every 10 ms and have 400,000 messages: what a reader sees then
# moves in small steps, and the kill (once it sees 30%) finds a window open, whatever the
# machine's speed (with 100,000 a relay was done before the first look).
KN=${EOS_KILL_N:-400000}
KTXO=(-O transaction.timeout.ms=10000 --commit-interval 10)

cat >"$T/identity.lua" <<'LUA'
return function(msg) return msg.payload end
LUA
cat >"$T/fanout.lua" <<'LUA'
return function(msg, out)
  out:send("b", msg.payload)
  return msg.payload
end
LUA
# About 20 us a message: two members share the work for a few seconds, so a kill finds both busy.
cat >"$T/slow.lua" <<'LUA'
local clock = os.clock
return function(msg)
  local t = clock() + 0.00002
  while clock() < t do end
  return msg.payload
end
LUA
# Every 1000th message fails: with --on-error dead-letter=URI it goes there, in the transaction.
cat >"$T/dead.lua" <<'LUA'
return function(msg)
  if tonumber(msg.payload) % 1000 == 0 then error("dead " .. msg.payload) end
  return msg.payload
end
LUA
cat >"$T/fail.lua" <<'LUA'
return function(msg)
  if msg.payload == os.getenv("EOS_FAIL_AT") then error("no " .. msg.payload) end
  return msg.payload
end
LUA

# count TOPIC: TOPIC's 4 partitions' end offsets as `kcat -Q` reports them (with transactions,
# the last stable offsets: what is committed, markers included). Only used to decide when to
# kill: with 100 ms windows it moves a window at a time, and the kill lands with one open.
count() {
  local args=() p
  for p in 0 1 2 3; do args+=(-t "$1:$p:-1"); done
  kcat -b "$KB" -Q "${args[@]}" 2>/dev/null | awk '{ s += $NF } END { print s + 0 }'
}

# committed TOPIC FILE: what a read_committed reader sees, from the beginning.
committed() {
  bounded "$SS" consume -o beginning -e -X isolation.level=read_committed -f '%s\n' \
    "$(uri "$1")" >"$2" 2>"$T/read.err"
  local st=$?
  [[ $st -eq 0 ]] || bad "reading $1 (read_committed): exit status $st: $(head -c 400 "$T/read.err")"
}

# exactly_once NAME N FILE...: the FILEs together hold every number 1..N once and nothing else.
exactly_once() {
  local name=$1 n=$2
  shift 2
  tally "$n" "$@"
  if [[ $LOST -eq 0 && $DUPS -eq 0 && $BAD -eq 0 ]]; then ok; else
    bad "$name: lost $LOST, duplicates $DUPS, other lines $BAD$BAD_SAMPLE" \
      "$( ((LOST)) && echo "; lost: $(lost_sample)")$( ((DUPS)) && echo "; duplicated: $(head -5 "$T/dups" | tr '\n' ' ')")"
  fi
}

# kill_case NAME CMD...: CMD reads topic NAME-in (1..KN) and writes NAME-out; killed at 30% or
# more written, restarted with -e; NAME-out must hold 1..KN exactly once.
kill_case() {
  local name=$1
  shift
  local t0=$SECONDS
  produce_seq "$KN" "$(uri "$name-in")" || return
  # timeout itself in the background, not the function bounded: $! must be timeout's pid, so
  # that its child is the command (through a function, $! is a subshell, its child is timeout,
  # and the stops and the kill of kill_midway went to timeout, leaving the command running)
  timeout -s KILL 120 "$@" >"$T/$name.log" 2>&1 &
  local tpid=$! pid
  pid=$(child_of "$tpid") || { bad "$name: the command did not start: $(head -c 400 "$T/$name.log")"; return; }
  kill_midway "$pid" "$((KN * 3 / 10))" count "$name-out"
  local st=$?
  wait "$tpid" 2>/dev/null
  if [[ $st -ne 0 ]]; then
    bad "$name: not killed in the middle (kill_midway $st): $(head -c 400 "$T/$name.log")"
    return
  fi
  local at_kill
  committed "$name-out" "$T/$name.before"
  at_kill=$(wc -l <"$T/$name.before")
  bounded "$@" -e >"$T/$name.log2" 2>&1
  st=$?
  # librdkafka's warnings (a fenced predecessor's transaction being aborted) and the reports of
  # dead-lettered messages are not errors
  if [[ $st -eq 0 ]] && ! grep -v ': warn: ' "$T/$name.log2" | grep -qv 'dead-lettered message'; then ok; else
    bad "$name: the restart with -e: exit status $st: $(head -c 600 "$T/$name.log2")"
  fi
  committed "$name-out" "$T/$name.after"
  local union=("$T/$name.after")
  if [[ -n ${KC_ALSO:-} ]]; then # another output of the case: the two together hold 1..KN
    committed "$KC_ALSO" "$T/$name.also"
    union+=("$T/$name.also")
  fi
  exactly_once "$name: after the kill and the restart" "$KN" "${union[@]}"
  echo "    $name: written at the kill $KILLED_AT (read_committed then: $at_kill);" \
    "after the restart $(wc -l <"$T/$name.after") of $KN; $((SECONDS - t0)) s"
}

# ---- refusals (no transaction is begun) ----
if want refusals; then
  "$SS" relay --exactly-once --mode resumable -I group=g "$(uri r-in)" stdio:///x >"$T/r1" 2>&1 </dev/null
  expect_status "refused: a stdio output" 2 $?
  expect_grep "refused: a stdio output is named" "output stdio:///x cannot take part" "$T/r1"
  "$SS" relay --exactly-once -e "$(uri r-in)" "$(uri r-out)" >"$T/r2" 2>&1 </dev/null
  expect_status "refused: an input without a group" 2 $?
  expect_grep "refused: an input without a group is named" "input kafka://[^ ]*/r-in keeps no position" "$T/r2"
  printf '1\n' | "$SS" relay --exactly-once stdio:///x "$(uri r-out)" >"$T/r3" 2>&1
  expect_status "refused: a stdio input" 2 $?
  expect_grep "refused: a stdio input is named" "input stdio:///x cannot take part" "$T/r3"
  "$SS" run "$T/identity.lua" --exactly-once --input "$(uri r-in)" -I mode=resumable -I group=g \
    --output "file://$T/x.ss/k" >"$T/r4" 2>&1 </dev/null
  expect_status "refused: a file output (run)" 2 $?
  expect_grep "refused: a file output is named (run)" "output file://[^ ]* cannot take part" "$T/r4"
  "$SS" consume --exactly-once "$(uri r-in)" >"$T/r5" 2>&1 </dev/null
  expect_status "refused: consume --exactly-once" 2 $?
  "$SS" relay --transactional-id x -G g "$(uri r-in)" "$(uri r-out)" >"$T/r6" 2>&1 </dev/null
  expect_status "refused: --transactional-id without --exactly-once" 2 $?
fi

# ---- kill -9 in the middle, restart ----
if want kill; then
  kill_case relay "$SS" relay --exactly-once --mode resumable -I group="$(g relay)" "${GX[@]}" \
    "${KTXO[@]}" "$(uri relay-in)" "$(uri relay-out)"
  kill_case run "$SS" run "$T/identity.lua" --exactly-once --input "$(uri run-in)" \
    -I mode=resumable -I group="$(g run)" --output "$(uri run-out)" "${KTXO[@]}"
  kill_case fanout "$SS" run "$T/fanout.lua" --exactly-once --input "$(uri fanout-in)" \
    -I mode=resumable -I group="$(g fanout)" --output "$(uri fanout-out)" \
    --output "b=$(uri fanout-b)" "${KTXO[@]}"
  KC_ALSO=dead-letters kill_case dead "$SS" run "$T/dead.lua" --exactly-once \
    --input "$(uri dead-in)" -I mode=resumable -I group="$(g dead)" --output "$(uri dead-out)" \
    --on-error "dead-letter=$(uri dead-letters)" "${KTXO[@]}"
  committed dead-letters "$T/dead.letters"
  if [[ $(wc -l <"$T/dead.letters") -eq $((KN / 1000)) ]] && ! grep -qv '000$' "$T/dead.letters"; then ok; else
    bad "dead: the dead-letter output holds $(wc -l <"$T/dead.letters") messages, expected the $((KN / 1000)) multiples of 1000"
  fi
  committed fanout-b "$T/fanout.b"
  exactly_once "fanout: the named output after the kill and the restart" "$KN" "$T/fanout.b"
fi

# ---- the broker killed and restarted under a running processor ----
if want broker; then
  t0=$SECONDS
  produce_seq "$N" "$(uri brk-in)"
  brk=("$SS" run "$T/identity.lua" --exactly-once --input "$(uri brk-in)" -I mode=resumable
    -I group="$(g brk)" --output "$(uri brk-out)" "${TXO[@]}" -e)
  bounded "${brk[@]}" >"$T/brk.log" 2>&1 &
  tpid=$!
  for ((i = 0; i < 900; i++)); do (($(count brk-out) >= K)) && break; sleep 0.1; done
  broker restart "$BROKER_DIR" >/dev/null || die "the broker did not start again"
  wait "$tpid"
  st=$?
  echo "    broker restart: the run under it ended with status $st$( ((st)) && echo ": $(head -c 300 "$T/brk.log")")"
  # Whatever it did (it may ride the restart out or fail), a run with -e finishes the work.
  bounded "${brk[@]}" >"$T/brk.log2" 2>&1
  st=$?
  if [[ $st -eq 0 ]]; then ok; else bad "broker restart: the rerun: exit status $st: $(head -c 600 "$T/brk.log2")"; fi
  committed brk-out "$T/brk.after"
  exactly_once "broker restart: the output" "$N" "$T/brk.after"
  echo "    broker restart: $((SECONDS - t0)) s"
fi

# ---- a processor error: the failed window is not visible ----
if want error; then
  produce_seq "$N" "$(uri err-in)"
  errc=("$SS" run "$T/fail.lua" --exactly-once --input "$(uri err-in)" -I mode=resumable
    -I group="$(g err)" --output "$(uri err-out)" "${TXO[@]}" -e)
  EOS_FAIL_AT=$((N * 6 / 10)) bounded "${errc[@]}" >"$T/err.log" 2>&1
  expect_status "processor error: the run stops with the processor's status" 2 $?
  expect_grep "processor error: the error names the script and the message" "fail.lua:2: no $((N * 6 / 10))" "$T/err.log"
  committed err-out "$T/err.before"
  tally "$N" "$T/err.before"
  if [[ $DUPS -eq 0 && $BAD -eq 0 ]] && ! grep -qx "$((N * 6 / 10))" "$T/err.before"; then ok; else
    bad "processor error: the visible output has duplicates ($DUPS) or the failed message"
  fi
  seen=$TOTAL
  EOS_FAIL_AT=none bounded "${errc[@]}" >"$T/err.log2" 2>&1
  expect_status "processor error: the rerun of the fixed script" 0 $?
  committed err-out "$T/err.after"
  exactly_once "processor error: the output after the rerun (a visible output of the failed window would be a duplicate)" "$N" "$T/err.after"
  echo "    processor error: visible after the failure $seen of $N"
fi

# ---- two members of one group, one killed and restarted ----
if want members; then
  t0=$SECONDS
  produce_seq "$N" "$(uri lb-in)"
  lb_member() { # ID: a member with a transactional id of its own, in the background (MPID: timeout's)
    timeout -s KILL 150 "$SS" run "$T/slow.lua" --exactly-once --input "$(uri lb-in)" \
      -I mode=load-balanced -I group="$(g lb)" -I reset=earliest -I session.timeout.ms=6000 \
      --transactional-id "eos-test-$RUN_ID-$1" --output "$(uri lb-out)" "${TXO[@]}" \
      >>"$T/lb$1.log" 2>&1 &
    MPID=$!
  }
  signal_member() { # SIG ID: the member's seastreamer process (not the timeout around it)
    local p
    for p in $(pgrep -f "transactional-id eos-test-$RUN_ID-$2"); do
      [[ $(cat "/proc/$p/comm" 2>/dev/null) == seastreamer* ]] && kill "-$1" "$p"
    done
  }
  lb_member 2
  m2=$MPID
  lb_member 1
  m1=$MPID
  for ((i = 0; i < 1800; i++)); do
    [[ -n ${EOS_DEBUG:-} && $((i % 20)) -eq 0 ]] && echo "    $((SECONDS - t0)) s: $(count lb-out)"
    (($(count lb-out) >= K)) && break
    sleep 0.05
  done
  signal_member KILL 1
  wait "$m1" 2>/dev/null
  echo "    two members: member 1 killed at $(count lb-out) written"
  lb_member 1 # the same transactional id: fences the dead one and aborts what it left open
  m1=$MPID
  # Done once a read_committed reader sees N (bounded); then both stop cleanly (SIGTERM commits).
  for ((i = 0; i < 90; i++)); do
    committed lb-out "$T/lb.now"
    [[ -n ${EOS_DEBUG:-} ]] && echo "    $i: $(wc -l <"$T/lb.now")"
    (($(wc -l <"$T/lb.now") >= N)) && break
    sleep 1
  done
  echo "    two members: the output complete after $((SECONDS - t0)) s"
  signal_member TERM 1
  signal_member TERM 2
  wait "$m1"
  st1=$?
  wait "$m2"
  st2=$?
  if [[ $st1 -eq 0 && $st2 -eq 0 ]]; then ok; else
    bad "two members: stopped with SIGTERM, they exited with $st1 and $st2"
  fi
  committed lb-out "$T/lb.after"
  exactly_once "two members, one killed and restarted: the output" "$N" "$T/lb.after"
  ((failed)) && for f in "$T"/lb[12].log; do echo "    $f:" >&2; show "$f"; done
  if grep -q "exactly-once" "$T/lb2.log"; then bad "two members: member 2 said: $(head -c 400 "$T/lb2.log")"; else ok; fi
  echo "    two members: $((SECONDS - t0)) s"
fi

finish
