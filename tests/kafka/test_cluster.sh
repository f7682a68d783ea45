#!/usr/bin/env bash
# tests/kafka/test_cluster.sh BUILD CLUSTER_DIR TOOL CASE: failover on a three-broker cluster
# (cluster.sh; replication factor 3, min.insync.replicas=2), issue 15. CASE:
#   produce  kill -9 the leader of partition 0 in the middle of `seastreamer produce` of N
#            numbered messages (idempotent and acks=all, the kafka plugin's defaults) into a
#            topic of 3 partitions: the produce ends by itself with status 0, a read of the
#            topic has every number once (0 lost, 0 duplicated) and each partition in order;
#            then the killed node is restarted.
#   consume  kill -9 the leader of the partition that `consume -G g -e` (load-balanced group)
#            reads, in the middle of N messages; then the same under `run` (identity Lua, kafka
#            to kafka, --mode resumable with a group), killing the leader of the output's
#            partition. Each command runs on to its end by itself; the node is restarted and the
#            command run again with -e: 0 lost, duplicates only among what the group had not
#            committed when the broker died, and nothing more after the rerun.
#   group    three `run` instances in one load-balanced group over a topic of 6 partitions,
#            fed live by a paced producer: each gets partitions (the group's assignment as its
#            coordinator holds it), kill -9 one, its partitions move to the two others, 0 lost,
#            duplicates only among what the group had not committed at the kill (printed beside
#            one commit interval's worth of the victim's work).
#   coordinator  the same three instances, and the broker that coordinates their group (and
#            leads some of the partitions) is killed, then started again: the group goes on with
#            its three members, 0 lost, duplicates only among what was not committed at the kill.
#   exactly_once  `relay --exactly-once` (a resumable input) while the broker coordinating its
#            group is killed, and `run --exactly-once` (a load-balanced input) while the broker
#            coordinating its group and its transactions is killed: each goes through the kill
#            (status 0), a read_committed reader sees every number exactly once, and a rerun
#            finds nothing left (see eos_through).
# Every command runs under a bound; nothing asserts a time. Each case prints its figures.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
CDIR=$2
TOOL=$3
CASE=$4
kdir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BACKEND=kafka
BACKEND_ARG=$CDIR/bootstrap
# shellcheck source=../crash/lib.sh
source "$kdir/../crash/lib.sh"
cluster() { bash "$kdir/cluster.sh" "$@"; }

N=${CLUSTER_N:-100000}
echo 'return function(msg) return msg end' >"$T/identity.lua"

# The nodes are all up before a case starts (a failed case may have left one down).
for i in 1 2 3; do
  if ! kill -0 "$(sed -n "${i}p" "$CDIR/pids")" 2>/dev/null; then
    echo "node $i is down: restarting it"
    cluster restart "$CDIR" "$i" || { bad "node $i could not be restarted"; finish; exit; }
  fi
done

create() { # TOPIC PARTITIONS
  "$TOOL" create "$KB" "$1" "$2" 2>"$T/create.err" || { bad "create $1: $(cat "$T/create.err")"; return 1; }
}

# count TOPIC P: the messages in TOPIC's P partitions (the sum of their end offsets), as one
# look to decide when to act; never part of a check.
count() {
  local args=() p
  for ((p = 0; p < $2; p++)); do args+=(-t "$1:$p:-1"); done
  timeout 10 kcat -b "$KB" -Q "${args[@]}" 2>/dev/null | awk '{ s += $NF } END { print s + 0 }'
}

# paced N: the numbers 1..N in chunks of 1000, 20 ms apart (N / 50,000 s at least), so that
# what reads or writes them is in the middle of them for a few seconds.
paced() {
  local i
  for ((i = 1; i <= $1; i += 1000)); do
    seq "$i" $((i + 999 < $1 ? i + 999 : $1))
    sleep 0.02
  done
}

# wait_for SECONDS COMMAND...: runs COMMAND every 0.1 s until it succeeds; 1 after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}
at_least() { [[ $("${@:2}") -ge $1 ]] 2>/dev/null; } # N COMMAND...: COMMAND prints N or more

# read_all TOPIC FILE: "partition offset payload" of every message, by kcat (the judge is not
# the reader under test).
read_all() {
  timeout 60 kcat -b "$KB" -C -e -q -t "$1" -f '%p %o %s\n' >"$2" 2>"$T/kcat.err"
  local st=$?
  [[ $st -eq 0 ]] || bad "reading $1 with kcat: exit status $st: $(head -c 300 "$T/kcat.err")"
  return $st
}

# in_order FILE: each partition's payloads increase (FILE from read_all).
in_order() {
  awk '{ if (($1 in last) && $3 + 0 <= last[$1]) { bad++; if (bad < 4) print "partition " $1 ": " last[$1] " then " $3 }
         last[$1] = $3 + 0 } END { exit bad > 0 }' "$1"
}

# committed_set GROUP TOPIC MAP: writes $T/uncommitted, the payloads at or past GROUP's committed
# offset in each partition (MAP: read_all of TOPIC), and sets COMMITTED (their sum).
committed_set() {
  "$TOOL" committed "$KB" "$1" "$2" >"$T/committed" 2>"$T/committed.err" ||
    { bad "the committed offsets of $1: $(cat "$T/committed.err")"; return 1; }
  COMMITTED=$(awk '{ s += $2 } END { print s + 0 }' "$T/committed")
  awk 'NR == FNR { c[$1] = $2; next } $2 >= c[$1] { print $3 }' "$T/committed" "$3" >"$T/uncommitted"
}

# pace_to PID K COUNT_CMD...: lets PID run in short slices (SIGCONT, 10 ms until its output
# starts, 3 ms after, SIGSTOP) until COUNT_CMD prints K or more, and leaves it stopped. At K/2 it
# stays stopped 1.5 s once, past the 1 s commit interval, so that a commit is due when it runs
# again (for 20 ms, time for the commit; as tests/crash/lib.sh's kill_midway): the broker then
# dies with something committed and something not. (A consumer with a full queue writes tens of
# thousands of lines in 100 ms: longer slices let it finish before the kill.) 1 if PID ended,
# 2 if K was not reached in 90 s.
pace_to() {
  local pid=$1 k=$2 n deadline=$((SECONDS + 90)) paused=0 this
  shift 2
  kill -STOP "$pid" 2>/dev/null || return 1
  while :; do
    n=$("$@")
    [[ $n =~ ^[0-9]+$ ]] || n=0
    ((n >= k)) && return 0
    ((SECONDS > deadline)) && return 2
    this=0.01
    ((n > 0)) && this=0.003
    if ((n >= k / 2 && !paused)); then
      paused=1
      sleep 1.5
      this=0.02
    fi
    kill -CONT "$pid" 2>/dev/null || return 1
    sleep "$this"
    kill -STOP "$pid" 2>/dev/null || return 1
  done
}

# said FILE PREFIX: what a command wrote to stderr, without librdkafka's lines about a dead
# broker's connections, at most 4 lines.
said() {
  grep -v -e 'Connect to ipv4' -e 'Disconnected' -e 'GETPID' "$1" | head -4 | sed "s/^/      $2| /"
}

# ---------------------------------------------------------------------------------------------
case_produce() {
  local t0=$SECONDS topic="produce-$RUN_ID"
  echo "--- produce: $N messages into $topic (3 partitions), kill -9 the leader of partition 0 at 30%"
  create "$topic" 3 || return
  paced "$N" | timeout -s KILL 180 "$SS" produce "kafka://$KB/$topic" 2>"$T/produce.err" &
  local ppid=$!
  if ! wait_for 90 at_least $((N * 3 / 10)) count "$topic" 3; then
    bad "produce: 30% of $N never arrived: $(head -c 400 "$T/produce.err")"
    wait "$ppid"
    return
  fi
  local victim at tk=$SECONDS
  victim=$(cluster leader "$CDIR" "$topic" 0)
  at=$(count "$topic" 3)
  cluster kill "$CDIR" "$victim"
  echo "    killed node $victim (leader of partition 0) at $at of $N stored"
  wait "$ppid"
  local st=$? took=$((SECONDS - tk))
  if [[ $st -eq 0 ]]; then ok; else bad "produce: exit status $st: $(head -c 600 "$T/produce.err")"; fi
  cluster restart "$CDIR" "$victim" || bad "node $victim could not be restarted"
  read_all "$topic" "$T/all" || return
  awk '{ print $3 }' "$T/all" >"$T/payloads"
  expect_all "produce" "$N" "$T/payloads"
  if [[ $DUPS -eq 0 ]]; then ok; else bad "produce: $DUPS duplicated, e.g. $(head -5 "$T/dups" | tr '\n' ' ')"; fi
  if in_order "$T/all" >"$T/order"; then ok; else bad "produce: a partition out of order: $(head -3 "$T/order" | tr '\n' ' ')"; fi
  echo "    produce: $N messages, lost $LOST, duplicated $DUPS; finished $took s after the kill" \
    "(status $st; said: $(grep -c . "$T/produce.err") lines); node $victim back in sync; $((SECONDS - t0)) s in all"
  said "$T/produce.err" ""
}

# ---------------------------------------------------------------------------------------------
# One command through a leader's kill: CMD consume|run.
through_kill() {
  local cmd=$1 t0=$SECONDS name="$1-$RUN_ID"
  local in="$name-in" out="$name-out" g="g-$name" victim_topic
  echo "--- $cmd: $N messages, kill -9 a partition leader at 30% of the output"
  create "$in" 1 || return
  produce_seq "$N" "kafka://$KB/$in" || return
  local first again_cmd
  case $cmd in
  consume)
    victim_topic=$in
    first=("$SS" consume -G "$g" -X session.timeout.ms=6000 -o beginning -e -f '%s\n' "kafka://$KB/$in")
    again_cmd=("$SS" consume -G "$g" -X session.timeout.ms=6000 -e -f '%s\n' "kafka://$KB/$in")
    ;;
  run)
    create "$out" 1 || return
    victim_topic=$out
    first=("$SS" run "$T/identity.lua" --input "kafka://$KB/$in" --output "kafka://$KB/$out"
      -I mode=resumable -I "group=$g" -I session.timeout.ms=6000 -I start=beginning -e)
    # (without start=: it would override the committed positions)
    again_cmd=("${first[@]:0:${#first[@]}-3}" -e)
    ;;
  esac
  timeout -s KILL 180 "${first[@]}" >"$T/$name.1" 2>"$T/$name.err1" &
  local tpid=$! pid
  if pid=$(child_of "$tpid"); then STARTED+=("$pid"); else
    wait "$tpid"
    bad "$cmd: did not start: $(head -c 400 "$T/$name.err1")"
    return
  fi
  local r
  if [[ $cmd == consume ]]; then
    pace_to "$pid" $((N * 3 / 10)) eval 'wc -l <"$T/$name.1"'
  else
    pace_to "$pid" $((N * 3 / 10)) count "$out" 1
  fi
  r=$?
  if [[ $r -ne 0 ]]; then
    kill -KILL "$pid" 2>/dev/null
    wait "$tpid"
    bad "$cmd: $([[ $r -eq 1 ]] && echo 'ended' || echo 'did not get') to 30% before the kill: $(head -c 400 "$T/$name.err1")"
    return
  fi
  # Stopped: what the group committed is what it stays at until the command runs again.
  read_all "$in" "$T/in.map" || return
  committed_set "$g" "$in" "$T/in.map" || return
  local at_kill=$COMMITTED victim in_leader written
  victim=$(cluster leader "$CDIR" "$victim_topic" 0)
  in_leader=$(cluster leader "$CDIR" "$in" 0)
  if [[ $cmd == consume ]]; then written=$(wc -l <"$T/$name.1"); else written=$(count "$out" 1); fi
  # The command runs again and the node dies while it is busy with it.
  kill -CONT "$pid"
  sleep 0.00$((1 + RANDOM % 3))
  cluster kill "$CDIR" "$victim"
  local tk=$SECONDS
  wait "$tpid"
  local st=$? took=$((SECONDS - tk))
  STARTED=()
  if [[ $st -eq 0 ]]; then ok; else bad "$cmd: through the kill: exit status $st: $(head -c 600 "$T/$name.err1")"; fi
  cluster restart "$CDIR" "$victim" || bad "node $victim could not be restarted"
  local n1=0
  [[ $cmd == run ]] && n1=$(count "$out" 1)
  # Again with -e, the node back: nothing may be left.
  bounded "${again_cmd[@]}" >"$T/$name.2" 2>"$T/$name.err2"
  local st2=$?
  if [[ $st2 -eq 0 ]]; then ok; else bad "$cmd: the run again with -e: exit status $st2: $(head -c 600 "$T/$name.err2")"; fi
  local outputs=("$T/$name.1" "$T/$name.2") again
  again=$(whole_lines "$T/$name.2" | wc -l)
  if [[ $cmd == run ]]; then
    read_all "$out" "$T/out.all" || return
    awk '{ print $3 }' "$T/out.all" >"$T/out.payloads"
    outputs=("$T/out.payloads")
    again=$(($(wc -l <"$T/out.payloads") - n1))
  fi
  # Nothing comes again, unless the group refused the command's last commits while it moved (the
  # killed node was also the group's coordinator): then it said so, and what comes again lies
  # past the commit before the kill (checked below).
  local refused=""
  grep -q 'commit not done, the group moved' "$T/$name.err1" && refused=" (its last commits were refused while the group moved, and it said so)"
  if [[ $again -eq 0 || -n $refused ]]; then ok; else
    bad "$cmd: the run again with -e got $again messages (not all was committed, and nothing said so)"
  fi
  expect_all "$cmd" "$N" "${outputs[@]}"
  local lost=$LOST dups=$DUPS stray
  not_in "$T/uncommitted" <"$T/dups" >"$T/stray"
  stray=$(wc -l <"$T/stray")
  if [[ $stray -eq 0 ]]; then ok; else
    bad "$cmd: $stray duplicated numbers had been committed before the kill (offset $at_kill), e.g. $(head -5 "$T/stray" | tr '\n' ' ')"
  fi
  if [[ $written -lt $N ]]; then ok; else
    bad "$cmd: all $N were written before the broker's kill: it did not land in the middle"
  fi
  if [[ $MAXC -le 2 ]]; then ok; else bad "$cmd: a number came $MAXC times"; fi
  local uncommitted_written
  uncommitted_written=$((written > at_kill ? written - at_kill : 0))
  echo "    $cmd: $N messages; killed node $victim (leader of $victim_topic/0; $in/0 led by $in_leader)" \
    "with $written written and $at_kill committed (uncommitted and written: $uncommitted_written);" \
    "through the kill: status $st, $took s after it; rerun with -e: status $st2, $again more$refused; lost $lost;" \
    "duplicated $dups;" \
    "$((SECONDS - t0)) s in all"
  said "$T/$name.err1" ""
}

# ---------------------------------------------------------------------------------------------
# members_ok WANT: the group has WANT members whose assignments split the 6 partitions.
members_ok() {
  "$TOOL" members "$KB" "$G" >"$T/members" 2>/dev/null || return 1
  grep -q '^state Stable' "$T/members" || return 1
  [[ $(($(wc -l <"$T/members") - 1)) -eq $1 ]] || return 1
  local parts
  parts=$(sed 1d "$T/members" | awk '{ print $2 }' | tr ',' '\n' | grep -v -- - | sort -n | tr '\n' ' ')
  [[ $parts == "0 1 2 3 4 5 " ]] || return 1
  ! sed 1d "$T/members" | awk '$2 == "-" { found = 1 } END { exit !found }'
}

# case_group KIND: KIND member kills one of the three instances (run2); KIND coordinator kills
# the broker that coordinates the group (and leads some partitions), then starts it again.
case_group() {
  local kind=$1 t0=$SECONDS name="group-$1-$RUN_ID"
  local in="$name-in" out="$name-out"
  G="g-$name"
  echo "--- group ($kind): three run instances over 6 partitions, $N messages fed live," \
    "kill -9 $([[ $kind == member ]] && echo one of them || echo "the group's coordinator") at 30%"
  create "$in" 6 || return
  create "$out" 6 || return
  local i tp c pids=() tpids=()
  for i in 1 2 3; do
    timeout -s KILL 240 "$SS" run "$T/identity.lua" --input "kafka://$KB/$in" --output "kafka://$KB/$out" \
      -I "group=$G" -I reset=earliest -I session.timeout.ms=3000 -I heartbeat.interval.ms=500 \
      -I client.id="run$i" >/dev/null 2>"$T/run$i.err" &
    tp=$!
    tpids+=("$tp")
    if c=$(child_of "$tp"); then pids+=("$c"); STARTED+=("$c"); else
      bad "group: run $i did not start: $(head -c 400 "$T/run$i.err")"
      return
    fi
  done
  if wait_for 60 members_ok 3; then ok; else
    bad "group: the three instances did not each get partitions within 60 s: $(tr '\n' ';' <"$T/members")"
    return
  fi
  local coordinator
  coordinator=$(awk 'NR == 1 { print $4 }' "$T/members")
  echo "    assignment: $(sed 1d "$T/members" | sort | tr '\n' ';') coordinator: node $coordinator"
  paced "$N" | bounded "$SS" produce "kafka://$KB/$in" 2>"$T/produce.err" &
  local ppid=$!
  if ! wait_for 90 at_least $((N * 3 / 10)) count "$out" 6; then
    bad "group: 30% of $N never came out"
    wait "$ppid"
    return
  fi
  # What the group has committed just before the kill: committed offsets only move forward, so
  # whatever comes again after the kill lies past them.
  "$TOOL" committed "$KB" "$G" "$in" >"$T/committed.kill" 2>"$T/committed.err" ||
    bad "group: the committed offsets before the kill: $(cat "$T/committed.err")"
  local vparts="" written tk members=3 survivors=(0 1 2) what
  written=$(count "$out" 6)
  tk=$SECONDS
  if [[ $kind == member ]]; then
    # The victim: run2, and what it had; kill -9 while it works.
    vparts=$(awk '$1 == "run2" { print $2 }' "$T/members")
    kill -KILL "${pids[1]}"
    members=2
    survivors=(0 2)
    what="run2 (partitions $vparts)"
  else
    cluster kill "$CDIR" "$coordinator"
    what="node $coordinator (the group's coordinator)"
  fi
  [[ $kind == member ]] && { wait "${tpids[1]}"; } 2>/dev/null
  if wait_for 60 members_ok "$members"; then ok; else
    bad "group: the $members members did not share the 6 partitions within 60 s after the kill: $(tr '\n' ';' <"$T/members")"
  fi
  local moved=$((SECONDS - tk))
  echo "    after the kill of $what: $(sed 1d "$T/members" | sort | tr '\n' ';') ($moved s)"
  wait "$ppid"
  local st=$?
  if [[ $st -eq 0 ]]; then ok; else bad "group: the producer: exit status $st: $(head -c 400 "$T/produce.err")"; fi
  # Everything committed, then the survivors stop (SIGTERM: flush, commit, exit 0).
  committed_sum() { "$TOOL" committed "$KB" "$G" "$in" 2>/dev/null | awk '{ s += $2 } END { print s + 0 }'; }
  if wait_for 90 at_least "$N" committed_sum; then ok; else
    bad "group: the group committed $(committed_sum) of $N within 90 s"
  fi
  local done_after=$((SECONDS - tk))
  if [[ $kind == coordinator ]]; then
    cluster restart "$CDIR" "$coordinator" || bad "node $coordinator could not be restarted"
  fi
  local s
  for i in "${survivors[@]}"; do
    kill -TERM "${pids[i]}"
    wait "${tpids[i]}"
    s=$?
    if [[ $s -eq 0 ]]; then ok; else bad "group: run$((i + 1)) ended with status $s: $(grep -v ': warn: ' "$T/run$((i + 1)).err" | tail -c 600)"; fi
  done
  STARTED=()
  read_all "$in" "$T/in.map" || return
  read_all "$out" "$T/out.all" || return
  awk 'NR == FNR { c[$1] = $2; next } $2 >= c[$1] { print $3 }' "$T/committed.kill" "$T/in.map" >"$T/uncommitted"
  awk '{ print $3 }' "$T/out.all" >"$T/out.payloads"
  expect_all "group" "$N" "$T/out.payloads"
  local lost=$LOST dups=$DUPS stray window=""
  not_in "$T/uncommitted" <"$T/dups" >"$T/stray"
  stray=$(wc -l <"$T/stray")
  if [[ $stray -eq 0 ]]; then ok; else
    bad "group: $stray duplicated numbers had been committed at the kill, e.g. $(head -5 "$T/stray" | tr '\n' ' ')"
  fi
  if [[ $MAXC -le 2 ]]; then ok; else bad "group: a number came $MAXC times"; fi
  if [[ $kind == member ]]; then
    # The victim's share of the duplicates: its partitions' messages past their committed offsets.
    awk -v parts=",$vparts," 'NR == FNR { c[$1] = $2; next } index(parts, "," $1 ",") && $2 >= c[$1] { print $3 }' \
      "$T/committed.kill" "$T/in.map" >"$T/victim.uncommitted"
    # One commit interval (1 s) of the victim's work: its share (a third) of the rate the input
    # was fed at (paced(): 50,000 a second at most).
    window="; $(only_in "$T/victim.uncommitted" <"$T/dups" | wc -l) of them from run2's partitions (one commit interval of run2 at the feed's rate: about $((50000 / 3)))"
  fi
  echo "    group ($kind): $N messages; killed $what with $written written in all; lost $lost;" \
    "duplicated $dups$window; the group had $members members again within $moved s, all committed $done_after s" \
    "after the kill; $((SECONDS - t0)) s in all"
  for i in 1 2 3; do said "$T/run$i.err" "run$i "; done
}

# ---------------------------------------------------------------------------------------------
# java_partition ID: the partition of __consumer_offsets (a group id) or __transaction_state (a
# transactional id) whose leader coordinates ID: Kafka's abs(ID.hashCode()) % 3 (the cluster has 3
# such partitions each).
java_partition() {
  python3 -c '
import sys
h = 0
for ch in sys.argv[1]:
    h = (31 * h + ord(ch)) & 0xffffffff
h = h - (1 << 32) if h >= (1 << 31) else h
print((0 if h == -(1 << 31) else abs(h)) % 3)' "$1"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# eos_through KIND: `KIND --exactly-once` over N numbers (4 partitions, 100 ms windows, -e) while
# one broker is killed (kill -9) at 20% of the output; KIND relay: a resumable input (assigned
# partitions, in a group), the victim the broker coordinating the group, where each window's
# offsets go (TxnOffsetCommit); KIND run (the identity script): a load-balanced input (-I
# group=G), the victim the broker coordinating both the group and the transactions (a
# transactional id is picked so). Either way the victim also leads some of the partitions. The
# command must run on to its end by itself (status 0: an abortable failure aborts the window and
# processes it again from the committed positions); then a read_committed reader sees every number
# exactly once, and a rerun with -e finds nothing left. The same command over the same numbers
# without a kill runs first, for what the kill costs in time.
eos_through() {
  local kind=$1 t0=$SECONDS name="eos-$1-$RUN_ID"
  local in="$name-in" out="$name-out" base="$name-base" g="g-$name"
  echo "--- exactly_once ($kind): $kind --exactly-once over $N messages, kill -9 a coordinator at 20%"
  create "$in" 4 || return
  create "$out" 4 || return
  create "$base" 4 || return
  produce_seq "$N" "kafka://$KB/$in" || return
  local CMD
  cmd_for() { # GROUP OUT TXID
    local mode=(-I mode=resumable)
    [[ $kind == run ]] && mode=()
    if [[ $kind == relay ]]; then
      CMD=("$SS" relay --exactly-once "${mode[@]}" -I "group=$1" -I session.timeout.ms=6000
        -I reset=earliest --commit-interval 100 --transactional-id "$3" -e "kafka://$KB/$in"
        "kafka://$KB/$2")
    else
      CMD=("$SS" run "$T/identity.lua" --exactly-once --input "kafka://$KB/$in"
        --output "kafka://$KB/$2" "${mode[@]}" -I "group=$1" -I session.timeout.ms=6000
        -I reset=earliest --commit-interval 100 --transactional-id "$3" -e)
    fi
  }
  # Without a kill (its own group and output).
  cmd_for "$g-base" "$base" "tx-$name-base"
  local tb
  tb=$(now)
  bounded "${CMD[@]}" >/dev/null 2>"$T/eos.base.err"
  local stb=$? base_took
  base_took=$(since "$tb")
  if [[ $stb -eq 0 ]]; then ok; else bad "exactly_once ($kind): the run without a kill: status $stb: $(head -c 400 "$T/eos.base.err")"; fi
  # The victim: the group's coordinator (and, for run, the transactions' too: a transactional id
  # whose coordinator is the same broker; both internal topics exist after the run above).
  local gp victim txid="tx-$name" roles
  gp=$(java_partition "$g")
  victim=$(cluster leader "$CDIR" __consumer_offsets "$gp")
  roles="the group's coordinator"
  if [[ $kind == run ]]; then
    local i tp
    for ((i = 0; i < 60; i++)); do
      tp=$(java_partition "tx-$name-$i")
      if [[ $(cluster leader "$CDIR" __transaction_state "$tp") == "$victim" ]]; then
        txid="tx-$name-$i"
        roles="the coordinator of the group and of the transactions"
        break
      fi
    done
  fi
  cmd_for "$g" "$out" "$txid"
  local leads=() p
  for p in 0 1 2 3; do
    [[ $(cluster leader "$CDIR" "$in" "$p") == "$victim" ]] && leads+=("$in/$p")
    [[ $(cluster leader "$CDIR" "$out" "$p") == "$victim" ]] && leads+=("$out/$p")
  done
  tb=$(now)
  timeout -s KILL 180 "${CMD[@]}" >/dev/null 2>"$T/eos.err1" &
  local tpid=$!
  if ! wait_for 90 at_least $((N / 5)) count "$out" 4; then
    bad "exactly_once ($kind): 20% of $N never came out: $(head -c 400 "$T/eos.err1")"
    kill -KILL "$(child_of "$tpid")" 2>/dev/null
    wait "$tpid"
    return
  fi
  local written
  written=$(count "$out" 4)
  cluster kill "$CDIR" "$victim"
  local tk
  tk=$(now)
  wait "$tpid"
  local st=$? took after
  took=$(since "$tb")
  after=$(since "$tk")
  if [[ $st -eq 0 ]]; then ok; else
    bad "exactly_once ($kind): it did not go through the kill: status $st: $(grep -v -e 'Connect to ipv4' -e 'Disconnected' -e ': warn: ' "$T/eos.err1" | head -c 600)"
  fi
  # The windows the pipeline aborted and replayed (or committed again), each said once.
  local replays
  replays=$(grep -c -e 'the window is aborted and its messages come again' -e 'committing it again' "$T/eos.err1")
  cluster restart "$CDIR" "$victim" || bad "node $victim could not be restarted"
  timeout 60 kcat -b "$KB" -C -e -q -t "$out" -X isolation.level=read_committed -f '%s\n' >"$T/eos.out" 2>"$T/kcat.err" ||
    bad "exactly_once ($kind): reading $out: $(head -c 300 "$T/kcat.err")"
  expect_all "exactly_once ($kind)" "$N" "$T/eos.out"
  if [[ $DUPS -eq 0 ]]; then ok; else bad "exactly_once ($kind): $DUPS duplicated, e.g. $(head -5 "$T/dups" | tr '\n' ' ')"; fi
  local lost=$LOST dups=$DUPS
  # Everything was committed: a rerun finds nothing left.
  bounded "${CMD[@]}" >/dev/null 2>"$T/eos.err2"
  local st2=$?
  if [[ $st2 -eq 0 ]]; then ok; else bad "exactly_once ($kind): the rerun with -e: status $st2: $(head -c 600 "$T/eos.err2")"; fi
  timeout 60 kcat -b "$KB" -C -e -q -t "$out" -X isolation.level=read_committed -f '%s\n' >"$T/eos.out2" 2>"$T/kcat.err" ||
    bad "exactly_once ($kind): reading $out again: $(head -c 300 "$T/kcat.err")"
  local more=$(($(wc -l <"$T/eos.out2") - $(wc -l <"$T/eos.out")))
  if [[ $more -eq 0 ]]; then ok; else bad "exactly_once ($kind): the rerun wrote $more more: not everything was committed"; fi
  echo "    exactly_once ($kind): $N messages; killed node $victim ($roles; leader of ${leads[*]:-no partition of in/out})" \
    "with $written written; the run went on: status $st, $took s in all ($after s after the kill) against" \
    "$base_took s without a kill; $replays window(s) aborted and processed again; read_committed:" \
    "lost $lost, duplicated $dups; the rerun added $more; $((SECONDS - t0)) s in all"
  grep -e 'exactly-once' "$T/eos.err1" | head -3 | cut -c1-400 | sed 's/^/      | /'
}

case $CASE in
produce) case_produce ;;
consume) through_kill consume; through_kill run ;;
group) case_group member ;;
coordinator) case_group coordinator ;;
exactly_once) eos_through relay; eos_through run ;;
*) echo "test_cluster.sh: unknown case '$CASE'" >&2; exit 2 ;;
esac
finish
