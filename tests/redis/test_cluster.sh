#!/usr/bin/env bash
# tests/redis/test_cluster.sh BUILD CLUSTER_DIR CASE SLOT_TOOL: the redis backend against a Redis Cluster of
# three masters and three replicas (cluster.sh), issue 15. CASE:
#   spread    the slots the backend computes (slot_tool) are the servers' (CLUSTER KEYSLOT) for
#             keys with and without hash tags; `produce -O shards=6` of N numbered messages through one node's URI: the six shard
#             streams lie on all three masters, each on the master of its slot; a realtime read
#             and a load-balanced group (-G, -e) each get every number exactly once, and nothing
#             stays pending; `-o -3` starts each shard 3 from its end; a member that stops after 500 leaves read entries pending on every
#             shard, and the next member claims them and prints exactly the rest;
#             wait_replicas=1 works and wait_replicas=2 (one replica each) fails, saying so; db=1
#             is refused. The URI may name several nodes: a first one that is down is passed
#             over.
#   reshard   the slot of one shard stream is moved by hand to another master (CLUSTER SETSLOT
#             IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE) while a `produce` writes into all six
#             shards (a part of the input before each step) and a `consume -G` group reads them:
#             the producer follows ASK and MOVED, ends by itself with every receipt, and every
#             number is stored and read (0 lost).
#   failover  kill -9 of the master of one shard while a paced `produce` (wait_replicas=1: a
#             receipt only once the replica has the entry) writes and a
#             `consume -G` (no -e: it runs on) reads; its replica takes over after
#             cluster-node-timeout. The produce ends by itself with every receipt, the consumer is
#             still running, reads on, and after it stops a `consume -G -e` prints what it had not
#             acknowledged: every number is there (0 lost), duplicates printed as figures. The
#             killed node is started again once its replica took over (it comes back as a
#             replica, which the producer's WAIT waits for).
#   lastcommit a `consume -G` that has read every entry and committed none is stopped (SIGTERM)
#             just after kill -9 of one shard's master: its last commit waits, tried again, until
#             the replica has taken over, and then nothing is pending on any shard.
#   handover  a graceful CLUSTER FAILOVER on the replica of one shard's master between the two
#             halves of a `produce`'s input while a `consume -G` reads: the replica takes the slot
#             over, the producer follows MOVED, ends by itself with every receipt, the consumer
#             runs on, and every number is stored and read (0 lost); the old master is a replica
#             after it.
#   list      `seastreamer list -J` through one node (a master, a replica, a URI whose first node
#             is down) shows the 6 shards of a key that lie on the three masters, with XLEN's
#             lengths, and a group that committed K of N with lag + pending = N - K; URI/KEY only
#             that key; while a shard's slot is moved by hand (its key MIGRATEd, the slot still
#             MIGRATING) the listing follows ASK and shows it as before; db=1 is refused. Then a group's rewind and seek (the Lua module's
#             rewind("beginning"), rewind(seq), seek(ts), and a rewind while running; XGROUP SETID
#             on each shard's master): each re-reads exactly the entries from that point on
#             (XRANGE's count over the 6 shards), none lost, none twice.
# Every command runs under a bound; nothing asserts a time. Each case prints its figures.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
CDIR=$(cd "$2" && pwd)
CASE=$3
SLOT_TOOL=$4
rdir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BACKEND=redis
BACKEND_ARG=$CDIR/seed
# shellcheck source=../crash/lib.sh
source "$rdir/../crash/lib.sh"

N=${CLUSTER_N:-40000}
PORTS=($(cat "$CDIR/ports"))
K="c$RUN_ID"

rc() { redis-cli -p "$@"; }
# master_of KEY: the port of the master serving KEY's slot now (as the seed sees the map)
master_of() {
  local slot p
  for p in "${PORTS[@]}"; do slot=$(rc "$p" cluster keyslot "$1" 2>/dev/null) && break; done
  [[ $slot =~ ^[0-9]+$ ]] || return 1
  for p in "${PORTS[@]}"; do
    if rc "$p" cluster nodes 2>/dev/null | awk -v s="$slot" '$3 ~ /myself/ && $3 ~ /master/ {
          for (i = 9; i <= NF; i++) { split($i, r, "-"); if (r[2] == "") r[2] = r[1]
            if (s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) f = 1 } } END { exit !f }'; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
node_id() { rc "$1" cluster myid; }
masters() { # the ports of the nodes that are masters serving slots now
  for p in "${PORTS[@]}"; do
    rc "$p" cluster nodes 2>/dev/null | awk '$3 ~ /myself/ && $3 ~ /master/ && NF >= 9 { f = 1 } END { exit !f }' &&
      echo "$p"
  done
}
# xlen_sum: how many entries the six shards hold (a look to decide when to act; never a check)
xlen_sum() {
  local s=0 i n p live=
  for p in "${PORTS[@]}"; do rc "$p" ping >/dev/null 2>&1 && { live=$p; break; }; done
  for i in 0 1 2 3 4 5; do
    n=$(redis-cli -c -p "$live" xlen "$K:$i" 2>/dev/null)
    [[ $n =~ ^[0-9]+$ ]] && s=$((s + n))
  done
  echo "$s"
}
# paced N: the numbers 1..N, in chunks of 200 with a pause between, so commands run for seconds
paced() { python3 -c '
import sys, time
n = int(sys.argv[1])
for i in range(1, n + 1):
    sys.stdout.write("%d\n" % i)
    if i % 200 == 0:
        sys.stdout.flush(); time.sleep(0.03)
sys.stdout.flush()' "$1"; }
wait_ok_all() { # the live nodes all say cluster_state:ok, bounded
  local i p ok
  for ((i = 0; i < 300; i++)); do
    ok=1
    for p in "$@"; do rc "$p" cluster info 2>/dev/null | grep -q cluster_state:ok || ok=0; done
    ((ok)) && return 0
    sleep 0.1
  done
  return 1
}

# Every node is up before a case starts (a failed case may have left one down).
for i in 1 2 3 4 5 6; do
  nd="$CDIR/node$i"
  if ! rc "$(cat "$nd/port")" ping >/dev/null 2>&1; then
    echo "node $i is down: starting it again"
    redis-server "$nd/redis.conf"
  fi
done
wait_ok_all "${PORTS[@]}" || { bad "the cluster is not ok before the case"; finish; exit; }

# producer_and_group_after WHAT PPID CPID URI NOTE: after a failover or handover, the producer
# (PPID) ends by itself with status 0; the group consumer (CPID, still running) reads up to every
# number, stops cleanly (SIGTERM to the command: it commits what it printed), and a `consume -G -e`
# prints the rest: every number stored (0 lost) and printed (0 lost), duplicates as figures.
producer_and_group_after() {
  local what=$1 ppid=$2 cpid=$3 u=$4 note=$5
  wait "$ppid"
  local pst=$?
  expect_status "paced produce through the $what" 0 $pst
  [[ $pst -ne 0 ]] && tail -5 "$T/produce.err"
  group_after "$what" "$cpid" "$u" "$note"
}
# group_after WHAT CPID URI NOTE: the group consumer's part of the above, once the producer is done.
group_after() {
  local what=$1 cpid=$2 u=$3 note=$4 i
  for ((i = 0; i < 600; i++)); do
    (($(whole_lines "$T/g1.txt" | sort -u | wc -l) >= N)) && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$cpid" 2>/dev/null; then ok; else bad "the consumer ended by itself: $(tail -c 400 "$T/g1.err")"; fi
  kill -TERM "$(child_of "$cpid")" 2>/dev/null
  wait "$cpid"
  expect_status "the consumer's clean stop" 0 $?
  bounded "$SS" consume -G g -e -f '%s\n' "$u" >"$T/g2.txt" 2>"$T/g2.err"
  expect_status "consume -G -e after the $what" 0 $?
  read_stream "$u" "$T/rt.txt"
  tally "$N" "$T/rt.txt"
  echo "figures: stored: $TOTAL entries, $LOST lost, $DUPS duplicated${note:+ $note}"
  if ((LOST == 0 && BAD == 0)); then ok; else bad "stored after the $what: $LOST of $N lost: $(lost_sample)"; fi
  expect_all "group across the $what" "$N" "$T/g1.txt" "$T/g2.txt"
  echo "figures: group: $TOTAL lines printed, $DUPS duplicated; the rerun printed $(whole_lines "$T/g2.txt" | wc -l)"
}

case_spread() {
  # CRC16/XMODEM and hash tags, against the specification's test vector and the servers
  "$SLOT_TOOL" >/dev/null
  expect_status "CRC16 of 123456789 is 31C3" 0 $?
  local keys=(foo bar "$K:0" "$K:5" "{user1000}.following" "{user1000}.followers" "foo{}{bar}"
    "foo{{bar}}zap" "foo{bar}{zap}" "{}" "{" "}{" "a{b" "x{y}" "k:12345" "")
  local mine theirs
  mine=$("$SLOT_TOOL" "${keys[@]}" | tr '\n' ' ')
  theirs=$(for k in "${keys[@]}"; do rc "${PORTS[0]}" cluster keyslot "$k"; done | tr '\n' ' ')
  if [[ $mine == "$theirs" ]]; then ok; else bad "slots: ours [$mine], the server's [$theirs]"; fi
  local u
  u="redis://127.0.0.1:${PORTS[0]}/$K"
  seq 1 "$N" | bounded "$SS" produce -O shards=6 "$u" 2>"$T/produce.err"
  expect_status "produce to the cluster" 0 $?
  # each shard stream on the master of its slot, and all three masters hold some
  local m i used=()
  for i in 0 1 2 3 4 5; do
    m=$(master_of "$K:$i")
    if [[ $(rc "$m" exists "$K:$i") == 1 ]]; then ok; else bad "$K:$i is not on $m, its slot's master"; fi
    used+=("$m")
  done
  local nused
  nused=$(printf '%s\n' "${used[@]}" | sort -u | wc -l)
  echo "figures: the 6 shards lie on $nused masters: $(printf '%s\n' "${used[@]}" | sort | uniq -c | tr -s ' \n' ' ')"
  if ((nused == 3)); then ok; else bad "the 6 shards lie on $nused masters, expected 3"; fi
  # a URI whose first node is down: the next one is used
  local dead
  dead=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  read_stream "redis://127.0.0.1:$dead,127.0.0.1:${PORTS[1]}/$K" "$T/rt.txt"
  tally "$N" "$T/rt.txt"
  echo "figures: realtime read: $TOTAL lines, $LOST lost, $DUPS duplicated"
  if ((LOST == 0 && DUPS == 0 && BAD == 0 && TOTAL == N)); then ok; else bad "realtime read: $TOTAL lines, $LOST lost, $DUPS dups, $BAD bad"; fi
  bounded "$SS" consume -G g -o beginning -e -f '%s\n' "$u" >"$T/g.txt" 2>"$T/g.err"
  expect_status "consume -G -e on the cluster" 0 $?
  tally "$N" "$T/g.txt"
  echo "figures: group read: $TOTAL lines, $LOST lost, $DUPS duplicated"
  if ((LOST == 0 && DUPS == 0 && BAD == 0 && TOTAL == N)); then ok; else bad "group read: $TOTAL lines, $LOST lost, $DUPS dups, $BAD bad: $(head -c 300 "$T/g.err")"; fi
  # a start position per shard, each on its master: the last 3 of each of the 6 shards are the
  # last 18 numbers (round-robin)
  bounded "$SS" consume -e -o -3 -X shards=6 -f '%s\n' "$u" >"$T/last.txt" 2>"$T/last.err"
  if [[ $(sort -n "$T/last.txt" | tr '\n' ' ') == "$(seq $((N - 17)) "$N" | tr '\n' ' ')" ]]; then ok; else
    bad "-o -3 over 6 shards: $(sort -n "$T/last.txt" | tr '\n' ' ') $(head -c 200 "$T/last.err")"
  fi
  # claims across the masters: a member prints 500 and stops with more read and pending on
  # every shard; the next member claims those (their member is gone) and prints exactly the rest
  bounded "$SS" consume -G h -o beginning -c 500 -X batch=1000 -f '%s\n' "$u" >"$T/h1.txt" 2>"$T/h1.err"
  expect_status "consume -G -c 500 on the cluster" 0 $?
  bounded "$SS" consume -G h -e -f '%s\n' "$u" >"$T/h2.txt" 2>"$T/h2.err"
  expect_status "consume -G -e after it" 0 $?
  tally "$N" "$T/h1.txt" "$T/h2.txt"
  echo "figures: claims: the first member printed $(wc -l <"$T/h1.txt"), the next $(wc -l <"$T/h2.txt"); $LOST lost, $DUPS duplicated"
  if ((LOST == 0 && DUPS == 0 && BAD == 0 && $(wc -l <"$T/h1.txt") == 500)); then ok; else
    bad "claims: $LOST lost, $DUPS dups, $BAD bad: $(head -c 300 "$T/h2.err")"
  fi
  # wait_replicas: a receipt only once WAIT says the master's replica has the entry; asking for
  # two replicas of masters that have one fails, and says so
  seq 1 1000 | bounded "$SS" produce -O shards=6 -O wait_replicas=1 "$u-w" 2>"$T/w1.err"
  expect_status "produce -O wait_replicas=1" 0 $?
  read_stream "$u-w" "$T/w1.txt"
  expect_lines "read back after wait_replicas=1" 1000 "$T/w1.txt"
  seq 1 10 | bounded "$SS" produce -O wait_replicas=2 -O wait_timeout_ms=100 -O reconnect_ms=500 "$u-w2" 2>"$T/w2.err"
  if [[ $? -ne 0 ]] && grep -q "1 of wait_replicas=2 replicas had the entries within wait_timeout_ms=100 ms, still after reconnect_ms=500 ms" "$T/w2.err"; then
    ok
  else
    bad "wait_replicas=2 with one replica: $(head -c 300 "$T/w2.err")"
  fi
  # bad input: a cluster has one database, and the error says so
  bounded "$SS" consume -e -X db=1 "$u" >/dev/null 2>"$T/db.err"
  if [[ $? -ne 0 ]] && grep -q "cannot select db=1 at 127.0.0.1:.*cluster" "$T/db.err"; then ok; else
    bad "db=1 on a cluster: $(head -c 300 "$T/db.err")"
  fi
  local pend=0
  for i in 0 1 2 3 4 5; do pend=$((pend + $(redis-cli -c -p "${PORTS[0]}" xpending "$K:$i" g | head -1))); done
  if ((pend == 0)); then ok; else bad "$pend entries left pending after consume -G -e"; fi
}

case_reshard() {
  local u="redis://127.0.0.1:${PORTS[0]}/$K" victim="$K:3"
  # The producer reads a fifo that this script writes in four parts, one per step of the move,
  # each stored before the next step: so it writes into the slot before, while it is MIGRATING
  # (the key still at the source), after MIGRATE (ASK) and after SETSLOT NODE (MOVED).
  mkfifo "$T/in"
  SEASTREAMER_LOG=debug bounded "$SS" produce -O shards=6 "$u" <"$T/in" 2>"$T/produce.err" &
  local ppid=$!
  STARTED+=("$ppid")
  exec 3>"$T/in"
  SEASTREAMER_LOG=debug timeout -s KILL "$LIMIT" "$SS" consume -G g -o beginning -f '%s\n' \
    -X block_ms=200 -X shards=6 "$u" >"$T/g1.txt" 2>"$T/g1.err" 3>&- &
  local cpid=$!
  STARTED+=("$cpid")
  local q=$((N / 4)) i
  part() { # FROM TO: write them and wait (bounded) until the cluster holds TO entries
    seq "$1" "$2" >&3
    for ((i = 0; i < 400; i++)); do (($(xlen_sum) >= $2)) && return 0; sleep 0.05; done
    bad "the cluster did not store $2 entries within 20 s"
  }
  part 1 "$q"
  local slot src dst sid did
  slot=$(rc "${PORTS[0]}" cluster keyslot "$victim")
  src=$(master_of "$victim")
  dst=$(masters | grep -vx "$src" | head -1)
  sid=$(node_id "$src")
  did=$(node_id "$dst")
  echo "moving slot $slot ($victim) from $src to $dst"
  rc "$dst" cluster setslot "$slot" importing "$sid" >/dev/null
  rc "$src" cluster setslot "$slot" migrating "$did" >/dev/null
  part $((q + 1)) $((2 * q))
  local keys
  keys=$(rc "$src" cluster getkeysinslot "$slot" 100)
  [[ -n $keys ]] && rc "$src" migrate 127.0.0.1 "$dst" "" 0 5000 keys $keys >/dev/null
  part $((2 * q + 1)) $((3 * q))
  for p in "${PORTS[@]}"; do rc "$p" cluster setslot "$slot" node "$did" >/dev/null 2>&1; done
  part $((3 * q + 1)) "$N"
  exec 3>&-
  wait "$ppid"
  expect_status "produce through the slot's move" 0 $?
  if [[ $(master_of "$victim") == "$dst" && $(rc "$dst" exists "$victim") == 1 ]]; then ok; else
    bad "$victim did not move to $dst"
  fi
  # the group member reads on: until it printed every number, then a clean stop and the rest
  group_after move "$cpid" "$u" ""
  # the producer was told ASK (the key moved, the slot not yet) and then MOVED, and followed both
  local nask nmoved
  nask=$(grep -c "XADD at .*: ASK $slot " "$T/produce.err")
  nmoved=$(grep -c "XADD at .*: MOVED $slot " "$T/produce.err")
  echo "figures: the producer followed $nask ASK and $nmoved MOVED redirections; the consumer" \
    "followed $(grep -c "read: ASK $slot " "$T/g1.err") ASK and went down and up on" \
    "$(grep -c "answered" "$T/g1.err") other redirections ($(grep -o "answered [A-Z]*" "$T/g1.err" | sort | uniq -c | tr -s ' \n' ' '))"
  if ((nask > 0)); then ok; else bad "the producer met no ASK"; fi
  if ((nmoved > 0)); then ok; else bad "the producer met no MOVED"; fi
}

# kill_master KEY: kill -9 of the master serving KEY's slot now; sets VPORT (its port) and VDIR
# (its directory: `redis-server "$VDIR/redis.conf"` starts it again).
kill_master() {
  local i
  VPORT=$(master_of "$1")
  for i in 1 2 3 4 5 6; do [[ $(cat "$CDIR/node$i/port") == "$VPORT" ]] && VDIR="$CDIR/node$i"; done
  kill -9 "$(cat "$VDIR/redis.pid")"
}
# taken_over KEY: a bounded wait until another master than VPORT serves KEY's slot and the live
# nodes say ok; sets NEWM (that master's port). False if it did not come.
taken_over() {
  local live=() p i
  NEWM=""
  for p in "${PORTS[@]}"; do [[ $p != "$VPORT" ]] && live+=("$p"); done
  for ((i = 0; i < 300; i++)); do
    NEWM=$(master_of "$1")
    [[ -n $NEWM && $NEWM != "$VPORT" ]] && break
    sleep 0.1
  done
  [[ -n $NEWM && $NEWM != "$VPORT" ]] && wait_ok_all "${live[@]}"
}

case_failover() {
  local u="redis://127.0.0.1:${PORTS[1]}/$K" victim="$K:0"
  if [[ $(master_of "$victim") == "${PORTS[1]}" ]]; then u="redis://127.0.0.1:${PORTS[2]}/$K"; fi
  paced "$N" | SEASTREAMER_LOG=info bounded "$SS" produce -O shards=6 -O wait_replicas=1 "$u" 2>"$T/produce.err" &
  local ppid=$!
  STARTED+=("$ppid")
  SEASTREAMER_LOG=info timeout -s KILL "$LIMIT" "$SS" consume -G g -o beginning -f '%s\n' \
    -X block_ms=200 -X shards=6 "$u" >"$T/g1.txt" 2>"$T/g1.err" &
  local cpid=$!
  STARTED+=("$cpid")
  local i
  for ((i = 0; i < 300; i++)); do (($(xlen_sum) >= N / 3)) && break; sleep 0.05; done
  local at="$(xlen_sum) of $N written, $(whole_lines "$T/g1.txt" | wc -l) read"
  kill_master "$victim"
  echo "kill -9 of $VPORT (master of $victim) at $at"
  local t0=$SECONDS
  if taken_over "$victim"; then ok; else bad "no replica took over within 30 s"; fi
  echo "figures: $NEWM took over from $VPORT after about $((SECONDS - t0)) to $((SECONDS - t0 + 1)) s"
  # the killed node comes back, as a replica of the new master: until it has synced, the new
  # master has no replica and the producer's WAIT (wait_replicas=1) holds its receipts back
  redis-server "$VDIR/redis.conf"
  producer_and_group_after failover "$ppid" "$cpid" "$u" \
    "(XADDs not answered, or not confirmed by WAIT, at the kill are written again)"
  # both commands met the failure (a kill that found nothing on the wire would prove little)
  expect_grep "the producer lost the killed master" "connection to 127.0.0.1:$VPORT lost" "$T/produce.err"
  expect_grep "the consumer lost the killed master" "connection to 127.0.0.1:$VPORT lost" "$T/g1.err"
  wait_ok_all "${PORTS[@]}" || bad "the killed node did not rejoin"
}

# A group member stopped while a master is down: its last commit cannot reach that master's
# shard, waits (tried again with a backoff) until the replica has taken over, and then leaves
# nothing pending. Nothing is committed before the stop (--commit-interval 600).
case_lastcommit() {
  local u="redis://127.0.0.1:${PORTS[1]}/$K" victim="$K:0" i
  if [[ $(master_of "$victim") == "${PORTS[1]}" ]]; then u="redis://127.0.0.1:${PORTS[2]}/$K"; fi
  seq 1 "$N" | bounded "$SS" produce -O shards=6 "$u" 2>"$T/produce.err"
  expect_status "produce to the cluster" 0 $?
  SEASTREAMER_LOG=info timeout -s KILL "$LIMIT" "$SS" consume -G g -o beginning -f '%s\n' \
    --commit-interval 600 -X block_ms=200 -X shards=6 "$u" >"$T/g1.txt" 2>"$T/g1.err" &
  local cpid=$!
  STARTED+=("$cpid")
  for ((i = 0; i < 600; i++)); do (($(whole_lines "$T/g1.txt" | wc -l) >= N)) && break; sleep 0.05; done
  kill_master "$victim"
  echo "kill -9 of $VPORT (master of $victim) after $(whole_lines "$T/g1.txt" | wc -l) of $N read"
  # the stop comes once the consumer knows the master is gone (an XACK it wrote to the dead
  # connection would be lost on the wire: not done, delivered again, which is another case)
  for ((i = 0; i < 200; i++)); do
    grep -q "connection to 127.0.0.1:$VPORT lost" "$T/g1.err" && break
    sleep 0.05
  done
  expect_grep "the consumer lost the killed master" "connection to 127.0.0.1:$VPORT lost" "$T/g1.err"
  kill -TERM "$(child_of "$cpid")" 2>/dev/null
  if taken_over "$victim"; then ok; else bad "no replica took over within 30 s"; fi
  redis-server "$VDIR/redis.conf"
  wait "$cpid"
  expect_status "the consumer's stop during the failover" 0 $?
  expect_grep "its last commit waited for the cluster" \
    "last commit on .* not done .*not reachable on every master" "$T/g1.err"
  expect_all "the group member" "$N" "$T/g1.txt"
  wait_ok_all "${PORTS[@]}" || bad "the killed node did not rejoin"
  bounded "$SS" list -J "$u" >"$T/l.json" 2>"$T/l.err"
  check "group g after the stop: nothing pending on the 6 shards" "$T/l.json" "
g = sorted((x['shard'], x['pending']) for x in d['groups'] if x['group'] == 'g')
assert g == [(i, 0) for i in range(6)], g
"
}

case_handover() {
  local u="redis://127.0.0.1:${PORTS[1]}/$K" victim="$K:3"
  local vport rport vid p i
  vport=$(master_of "$victim")
  if [[ $vport == "${PORTS[1]}" ]]; then u="redis://127.0.0.1:${PORTS[2]}/$K"; fi
  vid=$(node_id "$vport")
  for p in "${PORTS[@]}"; do
    rc "$p" cluster nodes 2>/dev/null | awk -v m="$vid" '$3 ~ /myself/ && $3 ~ /slave/ && $4 == m { f = 1 } END { exit !f }' &&
      rport=$p
  done
  [[ -n ${rport:-} ]] || { bad "no replica of $vport (master of $victim) found"; return; }
  # The input comes through a fifo in two halves: the second only once the slot has moved, so
  # the producer, whose map still names the old master, must meet MOVED (no timing involved).
  rm -f "$T/hin"
  mkfifo "$T/hin"
  SEASTREAMER_LOG=debug bounded "$SS" produce -O shards=6 "$u" <"$T/hin" 2>"$T/produce.err" &
  local ppid=$!
  STARTED+=("$ppid")
  exec 3>"$T/hin"
  seq 1 $((N / 2)) >&3
  SEASTREAMER_LOG=info timeout -s KILL "$LIMIT" "$SS" consume -G g -o beginning -f '%s\n' \
    -X block_ms=200 -X shards=6 "$u" >"$T/g1.txt" 2>"$T/g1.err" 3>&- &
  local cpid=$!
  STARTED+=("$cpid")
  for ((i = 0; i < 600; i++)); do (($(xlen_sum) >= N / 2)) && break; sleep 0.05; done
  echo "CLUSTER FAILOVER on $rport (replica of $vport, master of $victim) at $(xlen_sum) of $N written"
  rc "$rport" cluster failover >/dev/null 3>&-
  local nm=""
  for ((i = 0; i < 300; i++)); do
    nm=$(master_of "$victim")
    [[ $nm == "$rport" ]] && break
    sleep 0.1
  done
  if [[ $nm == "$rport" ]] && wait_ok_all "${PORTS[@]}"; then ok; else bad "$rport did not take over $victim's slot within 30 s"; fi
  seq $((N / 2 + 1)) "$N" >&3
  exec 3>&-
  producer_and_group_after handover "$ppid" "$cpid" "$u" ""
  # the producer was told MOVED for the slot's entries of the second half, and followed it
  local slot nmoved
  slot=$(rc "$rport" cluster keyslot "$victim")
  nmoved=$(grep -c "XADD at .*: MOVED $slot " "$T/produce.err")
  echo "figures: the producer followed $nmoved MOVED redirections"
  if ((nmoved > 0)); then ok; else bad "the producer met no MOVED for slot $slot"; fi
  # the old master serves as a replica now
  if [[ $(rc "$vport" role 2>/dev/null | head -1) == slave ]]; then ok; else bad "$vport is not a replica after the handover"; fi
}

# check NAME FILE PYTHON: the JSON document of `list -J` in FILE, loaded as d, passes the asserts
check() {
  local name=$1 file=$2 code=$3
  if python3 - "$file" "$K" <<EOF; then ok; else bad "$name"; sed 's/^/    /' "$file" | head -40 >&2; fi
import json, sys
d = json.load(open(sys.argv[1]))
K = sys.argv[2]
$code
EOF
}
# count_from ID: how many entries the six shards hold from ID on (XRANGE ID +, each on its master)
count_from() {
  local i n s=0
  for i in 0 1 2 3 4 5; do
    n=$(redis-cli -c -p "${PORTS[0]}" --raw xrange "$K:$i" "$1" + | grep -cE '^[0-9]+-[0-9]+$')
    s=$((s + n))
  done
  echo "$s"
}

case_list() {
  local u="redis://127.0.0.1:${PORTS[0]}" i lens="" n p st
  seq 1 "$N" | bounded "$SS" produce -O shards=6 "$u/$K" 2>"$T/produce.err"
  expect_status "produce to the cluster" 0 $?
  seq 1 5 | bounded "$SS" produce "$u/$K-plain" 2>"$T/produce.err"
  expect_status "produce to a plain key" 0 $?
  # a member that stops after kc: kc acknowledged, what it read ahead pending, the rest lag
  local kc=1000
  bounded "$SS" consume -G g -c "$kc" "$u/$K" >/dev/null 2>"$T/g.err"
  expect_status "consume -G g -c $kc" 0 $?
  for i in 0 1 2 3 4 5; do lens+="$(redis-cli -c -p "${PORTS[0]}" xlen "$K:$i") "; done
  # through any one node: a master, a replica, a URI whose first node is down
  local dead replica=""
  dead=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  for p in "${PORTS[@]}"; do
    [[ $(rc "$p" role 2>/dev/null | head -1) == slave ]] && { replica=$p; break; }
  done
  local seeds=("${PORTS[0]}" "$replica" "$dead,127.0.0.1:${PORTS[2]}")
  for n in "${seeds[@]}"; do
    bounded "$SS" list -J "redis://127.0.0.1:$n/" >"$T/l.json" 2>"$T/l.err"
    expect_status "list -J redis://127.0.0.1:$n/" 0 $?
    check "list -J through $n: the 6 shards of every master, XLEN's lengths ($lens), group g's lag + pending = $N - $kc" "$T/l.json" "
lens = [int(x) for x in '$lens'.split()]
s = {x['stream']: x for x in d['streams']}
assert s[K]['shards'] == 6 and s[K]['messages'] == $N, s.get(K)
assert s[K + '-plain']['messages'] == 5, s.get(K + '-plain')
sh = sorted((x['shard'], x['name'], x['messages']) for x in d['shards'] if x['stream'] == K)
assert sh == [(i, '%s:%d' % (K, i), lens[i]) for i in range(6)], sh
assert sum(lens) == $N, lens
g = {x['shard']: x for x in d['groups'] if x['stream'] == K and x['group'] == 'g'}
assert sorted(g) == list(range(6)), g
for i, x in g.items():
    assert 0 <= x['lag'] and 0 <= x['pending'] and x['lag'] + x['pending'] <= lens[i], x
assert sum(x['lag'] + x['pending'] for x in g.values()) == $N - $kc, g
m = [x for x in d['members'] if x['stream'] == K and x['group'] == 'g']
assert sum(x['pending'] for x in m) == sum(x['pending'] for x in g.values()), (m, g)
"
  done
  bounded "$SS" list -J "$u/$K" >"$T/l.json" 2>"$T/l.err"
  expect_status "list -J URI/KEY" 0 $?
  check "list URI/KEY: only that key's 6 shards" "$T/l.json" "
assert [x['stream'] for x in d['streams']] == [K], d['streams']
assert [x['name'] for x in d['shards']] == ['%s:%d' % (K, i) for i in range(6)], d['shards']
assert all(x['stream'] == K for x in d['groups']), d['groups']
"
  # A slot being moved (MIGRATING at its master, IMPORTING at another, its key already MIGRATEd):
  # the map still names the old master, which answers ASK; the listing follows it (ASKING).
  local victim="$K:3" slot src dst did
  slot=$(rc "${PORTS[0]}" cluster keyslot "$victim")
  src=$(master_of "$victim")
  dst=$(masters | grep -vx "$src" | head -1)
  did=$(node_id "$dst")
  rc "$dst" cluster setslot "$slot" importing "$(node_id "$src")" >/dev/null
  rc "$src" cluster setslot "$slot" migrating "$did" >/dev/null
  rc "$src" migrate 127.0.0.1 "$dst" "" 0 5000 keys "$victim" >/dev/null
  # (the old master answers ASK for it now, the new one has it)
  if [[ $(rc "$src" exists "$victim") == "ASK $slot "* && $(printf 'ASKING\nEXISTS %s\n' "$victim" | rc "$dst" | tail -1) == 1 ]]; then
    ok
  else
    bad "MIGRATE of $victim from $src to $dst"
  fi
  bounded "$SS" list -J "$u/$K" >"$T/l.json" 2>"$T/l.err"
  st=$?
  expect_status "list -J while $victim's slot moves (ASK): $(head -c 300 "$T/l.err")" 0 "$st"
  check "list while $victim's slot moves: its length and group g as before" "$T/l.json" "
lens = [int(x) for x in '$lens'.split()]
sh = sorted((x['shard'], x['messages']) for x in d['shards'])
assert sh == [(i, lens[i]) for i in range(6)], sh
g = [x for x in d['groups'] if x['group'] == 'g' and x['shard'] == 3]
assert len(g) == 1 and g[0]['lag'] + g[0]['pending'] <= lens[3], g
"
  for p in "${PORTS[@]}"; do rc "$p" cluster setslot "$slot" node "$did" >/dev/null 2>&1; done
  wait_ok_all "${PORTS[@]}" || bad "the cluster is not ok after the slot's move"
  bounded "$SS" list -J "$u/$K" >"$T/l.json" 2>"$T/l.err"
  check "list after $victim's slot moved: the 6 shards" "$T/l.json" "
lens = [int(x) for x in '$lens'.split()]
assert sorted((x['shard'], x['messages']) for x in d['shards']) == [(i, lens[i]) for i in range(6)], d
"
  # bad input: a cluster has one database
  bounded "$SS" list -X db=1 "$u/" >/dev/null 2>"$T/l.err"
  expect_status "list db=1 on a cluster fails" 1 $(($? != 0))
  expect_grep "list db=1 on a cluster: named" "redis: 127.0.0.1:${PORTS[0]}: SELECT: .*cluster" "$T/l.err"

  # Group seek and rewind across the masters (the module's consumer: XGROUP SETID on each shard,
  # each on its master): a group that read everything re-reads exactly from the point asked for.
  local mod="$BUILD/lua/5.4/seastreamer.so"
  if ! command -v lua5.4 >/dev/null || [[ ! -f $mod ]]; then
    echo "skipped: group rewind (no lua5.4 or no $mod)"
    return
  fi
  lrw() { # HOW ARG OUT
    bounded lua5.4 -e "package.cpath='$BUILD/lua/5.4/?.so;'..package.cpath" "$rdir/group_rewind.lua" \
      "$u/$K" r "$@" 2>"$T/lua.err"
  }
  bounded "$SS" consume -G r -o beginning -e -f '%s\n' "$u/$K" >"$T/r0.txt" 2>"$T/r0.err"
  expect_all "group r reads everything" "$N" "$T/r0.txt"
  lrw beginning 0 "$T/r1.txt"
  st=$?
  expect_status "rewind(\"beginning\") of group r: $(head -c 300 "$T/lua.err")" 0 "$st"
  tally "$N" "$T/r1.txt"
  echo "figures: rewind(\"beginning\"): $TOTAL read again, $LOST lost, $DUPS duplicated"
  if ((LOST == 0 && DUPS == 0 && BAD == 0 && TOTAL == N)); then ok; else bad "rewind(beginning): $TOTAL lines, $LOST lost, $DUPS dups"; fi
  # a point in the middle of shard 2: every shard re-reads its entries from that id on
  local id sq want
  id=$(redis-cli -c -p "${PORTS[0]}" --raw xrange "$K:2" - + count $((N / 12)) | grep -E '^[0-9]+-[0-9]+$' | tail -1)
  sq=$(python3 -c "ms, n = '$id'.split('-'); print((int(ms) << 16) | int(n))")
  want=$(count_from "$id")
  lrw seq "$sq" "$T/r2.txt"
  st=$?
  expect_status "rewind(seq of $id): $(head -c 300 "$T/lua.err")" 0 "$st"
  n=$(sort -u "$T/r2.txt" | wc -l)
  echo "figures: rewind($id): $(wc -l <"$T/r2.txt") read again ($n distinct), XRANGE from it on: $want"
  if [[ $(wc -l <"$T/r2.txt") -eq $want && $n -eq $want ]]; then ok; else bad "rewind($id): $(wc -l <"$T/r2.txt") lines, $n distinct, expected $want"; fi
  if ((want > 0 && want < N)); then ok; else bad "rewind($id): $want is not a point inside the key"; fi
  # seek to that id's millisecond
  local ms=${id%-*}
  want=$(count_from "$ms")
  lrw seek $((ms * 1000)) "$T/r3.txt"
  st=$?
  expect_status "seek($ms ms): $(head -c 300 "$T/lua.err")" 0 "$st"
  n=$(sort -u "$T/r3.txt" | wc -l)
  echo "figures: seek($ms ms): $(wc -l <"$T/r3.txt") read again ($n distinct), XRANGE from it on: $want"
  if [[ $(wc -l <"$T/r3.txt") -eq $want && $n -eq $want ]]; then ok; else bad "seek($ms): $(wc -l <"$T/r3.txt") lines, $n distinct, expected $want"; fi
  # rewind while running: N read and committed, rewind("beginning"), N again
  lrw again "$N" "$T/r4.txt"
  st=$?
  expect_status "read, rewind(\"beginning\") while running, read: $(head -c 300 "$T/lua.err")" 0 "$st"
  tally "$N" "$T/r4.txt"
  echo "figures: read, rewind, read: $TOTAL lines, $LOST lost, every number $MAXC times at most"
  if ((LOST == 0 && BAD == 0 && TOTAL == 2 * N && MAXC == 2 && DUPS == N)); then ok; else
    bad "read, rewind, read: $TOTAL lines, $LOST lost, $DUPS dups, at most $MAXC copies"
  fi
  # and nothing left pending or behind on any shard
  bounded "$SS" list -J "$u/$K" >"$T/l.json" 2>"$T/l.err"
  check "group r after its rewinds: lag 0 and nothing pending on the 6 shards" "$T/l.json" "
g = sorted((x['shard'], x['lag'], x['pending']) for x in d['groups'] if x['group'] == 'r')
assert g == [(i, 0, 0) for i in range(6)], g
"
}

case $CASE in
list) case_list ;;
spread) case_spread ;;
reshard) case_reshard ;;
failover) case_failover ;;
lastcommit) case_lastcommit ;;
handover) case_handover ;;
*) echo "test_cluster.sh: unknown case $CASE" >&2; exit 2 ;;
esac
finish
