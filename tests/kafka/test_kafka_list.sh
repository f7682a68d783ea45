#!/usr/bin/env bash
# test_kafka_list.sh: `seastreamer list kafka://...` against a real broker: a topic of three
# partitions with its watermarks and leaders, a group that committed part of it (its lag per
# partition and in all, its committed offsets as the group coordinator reports them to another
# client), a live member, the topic filter, and an unreachable broker.
# usage: test_kafka_list.sh BUILD_DIR BOOTSTRAP_FILE CLUSTER_TOOL
set -uo pipefail
BUILD=$(cd "$1" && pwd)
B=$(cat "$2")
TOOL=$3
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 120"
t="list-$$-$RANDOM"
G="g-$$-$RANDOM"
N=30
C=10

check() { # NAME FILE PYTHON: the JSON document in FILE, loaded as d, passes the assertions
  local name=$1 file=$2 code=$3
  if python3 - "$file" "$t" "$G" <<EOF; then ok; else bad "$name"; sed 's/^/    /' "$file" | head -40 >&2; fi
import json, sys
d = json.load(open(sys.argv[1]))
t, G = sys.argv[2], sys.argv[3]
$code
EOF
}

$TO "$TOOL" create "$B" "$t" 3
expect_status "create $t with 3 partitions" 0 $?
# 15, 10 and 5 messages to partitions 0, 1 and 2.
for p in 0 1 2; do
  seq 1 $((15 - 5 * p)) | $TO "$SS" produce -X partition=$p "kafka://$B/$t" 2>"$T/err"
  expect_status "produce to partition $p" 0 $?
done
$TO "$SS" consume -G "$G" -o beginning -c $C "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status "consume -G -c $C" 0 $?
expect_lines "consumed $C" $C "$T/out"
$TO "$TOOL" committed "$B" "$G" "$t" >"$T/committed"
expect_status "committed offsets (another client)" 0 $?

$TO "$SS" list -J "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status "list -J topic" 0 $?
check "the topic: 3 partitions, watermarks, leaders" "$T/out" "
assert d['backend'] == 'kafka', d
assert [(x['stream'], x['shards'], x['messages']) for x in d['streams']] == [(t, 3, $N)], d['streams']
p = d['shards']
assert [x['shard'] for x in p] == [0, 1, 2], p
assert [(x['low'], x['high']) for x in p] == [(0, 15), (0, 10), (0, 5)], p
assert all(x['leader'] >= 0 and x['messages'] == x['high'] - x['low'] for x in p), p
"
# The group: its committed offsets are the coordinator's (as the tool reads them), its lag per
# partition is high - committed, and in all N - C.
check "the group: committed, lag per partition and N - C in all" "$T/out" "
high = {x['shard']: x['high'] for x in d['shards']}
committed = dict(tuple(map(int, l.split())) for l in open('$T/committed'))
g = [x for x in d['groups'] if x['group'] == G]
summary = [x for x in g if 'stream' not in x]
parts = [x for x in g if 'stream' in x]
assert len(summary) == 1 and summary[0]['lag'] == $N - $C, summary
assert summary[0]['state'] in ('Empty', 'Stable'), summary
# every partition of the topic, committed or not (the tool says 0 where nothing is committed,
# list leaves committed out and counts the whole partition as lag)
assert sorted(x['shard'] for x in parts) == [0, 1, 2], parts
assert sum(x.get('committed', 0) for x in parts) == $C, parts
for x in parts:
    assert x['stream'] == t, x
    assert x.get('committed', 0) == committed[x['shard']], (x, committed)
    assert x['lag'] == high[x['shard']] - x.get('committed', 0), (x, high)
assert sum(x['lag'] for x in parts) == $N - $C, parts
"

# Without a topic: this topic is there, internal topics are not.
$TO "$SS" -L -J "kafka://$B" >"$T/all" 2>"$T/err"
expect_status "-L -J (every topic)" 0 $?
check "every topic: ours, not __consumer_offsets" "$T/all" "
names = [x['stream'] for x in d['streams']]
assert t in names and not any(n.startswith('__') for n in names), names
"

# A topic that does not exist: an error that names it (status 2), and it is not created.
$TO "$SS" list "kafka://$B/nothere-$$" >"$T/out" 2>"$T/err"
expect_status "a missing topic: exit 2" 2 $?
expect_grep "a missing topic: named" "^seastreamer list: kafka: no stream 'nothere-$$' in kafka://$B/nothere-$$$" "$T/err"
$TO "$SS" list -J "kafka://$B" >"$T/all" 2>"$T/err"
check "a missing topic: not created by asking" "$T/all" "
assert 'nothere-$$' not in [x['stream'] for x in d['streams']], d['streams']
"

# The table.
$TO "$SS" list "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status "list table" 0 $?
expect_grep "table: the topic" "^  $t +$N +3$" "$T/out"
expect_grep "table: the group's total" "^  - +- +$G +(Empty|Stable) +- +- +- +$((N - C)) +0$" "$T/out"

# A live member: a consumer of the group that keeps reading shows as a member.
$TO "$SS" consume -G "$G" -X client.id=lister-test "kafka://$B/$t" >/dev/null 2>"$T/member_err" &
MEMBER=$!
found=
for _ in $(seq 1 150); do
  "$SS" list -J "kafka://$B/$t" >"$T/out" 2>/dev/null
  if python3 - "$T/out" "$G" <<'EOF' 2>/dev/null; then found=1; break; fi
import json, sys
d = json.load(open(sys.argv[1]))
m = [x for x in d['members'] if x['group'] == sys.argv[2]]
g = [x for x in d['groups'] if x['group'] == sys.argv[2] and 'stream' not in x]
assert len(m) == 1 and m[0]['client_id'] == 'lister-test' and m[0]['member'] and m[0]['host'], m
assert g[0]['state'] == 'Stable' and g[0]['consumers'] == 1, g
EOF
  sleep 0.2
done
kill "$MEMBER" 2>/dev/null
wait "$MEMBER" 2>/dev/null
[ -n "$found" ] && ok || bad "a live member of $G never showed (client_id lister-test, state Stable)"

# An unreachable broker: a bounded wait, exit 3, the brokers named.
closed=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
$TO "$SS" list -X timeout=1000 "kafka://127.0.0.1:$closed" >"$T/out" 2>"$T/err"
expect_status "unreachable: exit 3" 3 $?
expect_grep "unreachable: named" "^seastreamer list: kafka: cannot get metadata from 127.0.0.1:$closed within 1000 ms: " "$T/err"
# A property librdkafka does not know: a usage error before anything is asked.
$TO "$SS" list -X no.such.property=1 "kafka://$B" >"$T/out" 2>"$T/err"
expect_status "unknown property: exit 2" 2 $?
expect_grep "unknown property: named" "no.such.property" "$T/err"

finish
