#!/usr/bin/env bash
# test_redis_list.sh: `seastreamer list redis://...` against a real redis-server: a sharded key's
# key:N streams under their key, a plain key, lengths and ids as XINFO gives them, a group with
# pending entries and its lag, a key in the URI, and the errors (refused, a server that never
# answers, a password the server does not take, two nodes in the URI of a plain server).
# usage: test_redis_list.sh BUILD_DIR PORT_FILE
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
PORT=$(cat "$2")
unset SEASTREAMER_LOG
R="redis://127.0.0.1:$PORT"
K="list_$$"
P="plain_$$"
TO="timeout 60"
rcli() { redis-cli -p "$PORT" "$@"; }

check() { # NAME FILE PYTHON: the JSON document in FILE, loaded as d, passes the assertions
  local name=$1 file=$2 code=$3
  if python3 - "$file" "$K" "$P" <<EOF; then ok; else bad "$name"; sed 's/^/    /' "$file" | head -40 >&2; fi
import json, sys
d = json.load(open(sys.argv[1]))
K, P = sys.argv[2], sys.argv[3]
$code
EOF
}

seq 1 30 | $TO "$SS" produce -X shards=3 "$R/$K" 2>"$T/err"
expect_status "produce 30 to 3 shards" 0 $?
seq 1 5 | $TO "$SS" produce "$R/$P" 2>"$T/err"
expect_status "produce 5 to a plain key" 0 $?
for n in 0 1 2; do
  [ "$(rcli XLEN "$K:$n")" -gt 0 ] && ok || bad "$K:$n is empty: the shards are not spread"
done

# A group the command reads with: 4 messages consumed and committed, the rest it read ahead is
# pending (read, not acknowledged) or not yet delivered (lag).
$TO "$SS" consume -G g -c 4 "$R/$K" >"$T/out" 2>"$T/err"
expect_status "consume -G g -c 4" 0 $?
# A second group by hand, on shard 1 only: 3 read, 1 of them acknowledged.
rcli XGROUP CREATE "$K:1" g2 0 >/dev/null
rcli XREADGROUP GROUP g2 alice COUNT 3 STREAMS "$K:1" '>' >/dev/null
first=$(rcli XRANGE "$K:1" - + COUNT 1 | head -1)
rcli XACK "$K:1" g2 "$first" >/dev/null
len1=$(rcli XLEN "$K:1")

$TO "$SS" list -J "$R" >"$T/out" 2>"$T/err"
expect_status "list -J" 0 $?
check "list -J: the sharded key, its shards and the plain key" "$T/out" "
assert d['backend'] == 'redis', d
s = {x['stream']: x for x in d['streams']}
assert s[K]['shards'] == 3 and s[K]['messages'] == 30, s[K]
assert s[P]['shards'] == 1 and s[P]['messages'] == 5, s[P]
sh = {(x['stream'], x['shard']): x for x in d['shards']}
assert sorted(k for k in sh if k[0] == K) == [(K, 0), (K, 1), (K, 2)], sh
assert sum(sh[(K, n)]['messages'] for n in range(3)) == 30, sh
for n in range(3):
    assert sh[(K, n)]['name'] == '%s:%d' % (K, n), sh[(K, n)]
assert sh[(P, 0)]['name'] == P and sh[(P, 0)]['messages'] == 5, sh[(P, 0)]
"
# Each shard's length, first and last id as Redis says them.
for n in 0 1 2; do
  want="$(rcli XLEN "$K:$n") $(rcli XRANGE "$K:$n" - + COUNT 1 | head -1) $(rcli XREVRANGE "$K:$n" + - COUNT 1 | head -1)"
  got=$(python3 -c "
import json, sys
d = json.load(open('$T/out'))
x = [x for x in d['shards'] if x['name'] == '$K:$n'][0]
print(x['messages'], x['first_id'], x['last_id'])")
  [ "$got" = "$want" ] && ok || bad "shard $n: '$got', redis says '$want'"
done
check "group g: 4 acknowledged, the rest pending or lag" "$T/out" "
g = [x for x in d['groups'] if x['group'] == 'g' and x['stream'] == K]
assert sorted(x['shard'] for x in g) == [0, 1, 2], g
# lag = entries not delivered to the group, pending = delivered and not acknowledged:
# of 30, the 4 the command committed are neither
assert sum(x['lag'] + x['pending'] for x in g) == 30 - 4, g
for x in g:
    assert x['consumers'] == 1 and x['last_delivered_id'], x
m = [x for x in d['members'] if x['group'] == 'g' and x['stream'] == K]
assert sum(x['pending'] for x in m) == sum(x['pending'] for x in g), (m, g)
"
check "group g2 on shard 1: pending 2, lag $len1 - 3, member alice" "$T/out" "
g2 = [x for x in d['groups'] if x['group'] == 'g2' and x['stream'] == K]
assert [(x['stream'], x['shard'], x['pending'], x['lag'], x['consumers']) for x in g2] == [(K, 1, 2, $len1 - 3, 1)], g2
m = [x for x in d['members'] if x['group'] == 'g2' and x['stream'] == K]
assert [(x['shard'], x['member'], x['pending']) for x in m] == [(1, 'alice', 2)], m
assert m[0]['idle_ms'] >= 0, m
"

# A key in the URI: only that key (its shards); -L is the same command.
$TO "$SS" -L -J "$R/$P" >"$T/out" 2>"$T/err"
expect_status "-L -J URI/plain" 0 $?
check "-L URI/KEY: only that key" "$T/out" "
assert [x['stream'] for x in d['streams']] == [P], d
assert d['groups'] == [], d
"
$TO "$SS" list -J "$R/$K" >"$T/out" 2>"$T/err"
expect_status "list -J URI/sharded" 0 $?
check "list URI/KEY of a sharded key: its shards" "$T/out" "
assert [x['stream'] for x in d['streams']] == [K], d
assert [x['name'] for x in d['shards']] == ['%s:%d' % (K, n) for n in range(3)], d
"

# A key the server does not have: an error that names it (status 2).
$TO "$SS" list "$R/nothere_$$" >"$T/out" 2>"$T/err"
expect_status "a missing key: exit 2" 2 $?
expect_grep "a missing key: named" "^seastreamer list: redis: no stream 'nothere_$$' in $R/nothere_$$$" "$T/err"

# The table.
$TO "$SS" list "$R/$K" >"$T/out" 2>"$T/err"
expect_status "list table" 0 $?
expect_grep "table: the sharded key" "^  $K +30 +3 " "$T/out"
expect_grep "table: group g2" "^  $K +1 +$K:1 +g2 +$((len1 - 3)) +2 +1 " "$T/out"

# --- errors, each bounded ---
closed=$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
$TO "$SS" list "redis://127.0.0.1:$closed" >"$T/out" 2>"$T/err"
expect_status "refused: exit 3" 3 $?
expect_grep "refused: named" "^seastreamer list: redis: cannot connect to 127.0.0.1:$closed: " "$T/err"

# A server that accepts and never answers: the timeout ends it.
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
conns = []
end = time.time() + 60
while time.time() < end:
    s.settimeout(1)
    try: conns.append(s.accept()[0])
    except OSError: pass' >"$T/mute_port" &
MUTE=$!
for _ in $(seq 1 100); do [ -s "$T/mute_port" ] && break; sleep 0.05; done
$TO "$SS" list -X timeout=300 "redis://127.0.0.1:$(cat "$T/mute_port")" >"$T/out" 2>"$T/err"
expect_status "mute server: exit 3" 3 $?
expect_grep "mute server: timeout" "no answer within the timeout" "$T/err"
kill "$MUTE" 2>/dev/null
wait "$MUTE" 2>/dev/null

$TO "$SS" list "redis://:nosuchpassword@127.0.0.1:$PORT" >"$T/out" 2>"$T/err"
expect_status "password the server does not take: exit 3" 3 $?
expect_grep "password: named" "^seastreamer list: redis: 127.0.0.1:$PORT: AUTH: " "$T/err"

# Several nodes in the URI are a cluster's: a plain server among them is refused, named.
$TO "$SS" list "redis://127.0.0.1:$PORT,127.0.0.1:$PORT/$K" >"$T/out" 2>"$T/err"
expect_status "two nodes, a plain server: exit 2" 2 $?
expect_grep "two nodes, a plain server: named" "^seastreamer list: redis: the URI names 2 nodes, but 127.0.0.1:$PORT is not a Redis Cluster node" "$T/err"
# ... and none answering: the last one's error, said to be the last of them
$TO "$SS" list "redis://127.0.0.1:$closed,127.0.0.1:$closed/$K" >"$T/out" 2>"$T/err"
expect_status "two nodes, none answering: exit 3" 3 $?
expect_grep "two nodes, none answering: named" "^seastreamer list: redis: cannot connect to 127.0.0.1:$closed: .* \\(the last of the URI's 2 nodes\\)$" "$T/err"

rcli DEL "$K:0" "$K:1" "$K:2" "$P" >/dev/null
finish
