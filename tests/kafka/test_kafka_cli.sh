#!/usr/bin/env bash
# test_kafka_cli.sh: the seastreamer command against a real Kafka broker, with kcat as an
# independent second client both ways, and the command's bad-input errors and exit statuses.
# usage: test_kafka_cli.sh BUILD_DIR BOOTSTRAP_FILE KAFKA_CLUSTER_TOOL
set -uo pipefail
BUILD=$(cd "$1" && pwd)
B=$(cat "$2")
TOOL=$3
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# Every command has a bound, so a hang is a failure rather than a stuck suite.
run() { timeout 120 "$@"; }
topic() { echo "cli-$1-$$-$RANDOM"; }

# --- kcat produces (keys, headers), seastreamer consumes ---
t=$(topic kcat2ss)
printf 'k1:one\nk2:two\nk3:three\n' | run kcat -b "$B" -P -t "$t" -K: -H trace=abc
expect_status kcat-produce 0 $?
run "$SS" consume -o beginning -e -f '%k %s %o %p %h\n' "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status ss-consume 0 $?
printf 'k1 one 0 0 trace=abc\nk2 two 1 0 trace=abc\nk3 three 2 0 trace=abc\n' >"$T/want"
expect_same kcat-to-ss "$T/want" "$T/out"
# The default line form carries the topic as the stream key.
run "$SS" consume -o beginning -c 1 "kafka://$B/$t" >"$T/out" 2>&1
expect_grep ss-line "^\[[0-9T:.-]+ \| $t \| 0\] one$" "$T/out"

# --- seastreamer produces (key), kcat consumes ---
t=$(topic ss2kcat)
seq 1 1000 | run "$SS" produce -k mykey "kafka://$B/$t" 2>"$T/err"
expect_status ss-produce 0 $?
run kcat -b "$B" -C -t "$t" -o beginning -e -q -f '%k %s\n' >"$T/out"
seq 1 1000 | sed 's/^/mykey /' >"$T/want"
expect_same ss-to-kcat "$T/want" "$T/out"
# A stdio header block picks the topic per line.
t2=$(topic perline)
printf '[%s] to-second\nto-first\n' "$t2" | run "$SS" produce "kafka://$B/$t" 2>"$T/err"
expect_status ss-produce-keyed 0 $?
run kcat -b "$B" -C -t "$t2" -o beginning -e -q -f '%s\n' >"$T/out"
expect_grep per-line-topic '^to-second$' "$T/out"

# --- librdkafka's debug logs on: every message still goes out and the command ends (it used to
# wait forever once a log had gone through the main queue) ---
t4=$(topic debuglogs)
seq 1 20000 | SEASTREAMER_LOG=debug run "$SS" produce -X debug=broker,msg "kafka://$B/$t4" 2>"$T/err"
expect_status produce-with-debug-logs 0 $?
expect_grep produce-with-debug-logs 'debug: kafka: ' "$T/err"
run kcat -b "$B" -C -t "$t4" -o beginning -e -q -f '%s\n' | wc -l >"$T/out"
echo 20000 >"$T/want"
expect_same produce-with-debug-logs-count "$T/want" "$T/out"

# --- a relay from Kafka to Kafka, and to stdio ---
t3=$(topic relay)
run "$SS" relay -o beginning -e "kafka://$B/$t" "kafka://$B/$t3" 2>"$T/err"
expect_status relay 0 $?
run kcat -b "$B" -C -t "$t3" -o beginning -e -q -f '%s\n' | wc -l >"$T/out"
echo 1001 >"$T/want"
expect_same relay-count "$T/want" "$T/out"

# --- a consumer group through the command: the second run resumes after the first ---
t=$(topic group)
seq 1 10 | run kcat -b "$B" -P -t "$t"
run "$SS" consume -G "grp-$t" --mode resumable -X auto_commit=at-most-once -c 4 -f '%s\n' "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status group-first 0 $?
seq 1 4 >"$T/want"
expect_same group-first "$T/want" "$T/out"

# --- kcat's habits: -K, -H, -Z, -p, -o stored, -v (tests/cli/test_kcat_cli.sh: the rest) ---
t=$(topic kcat)
run "$TOOL" create "$B" "$t" 2 >"$T/err" 2>&1 || { bad "create a two-partition topic"; show "$T/err"; }
printf 'k1\tv1\nnokey\nk3\tv3\n\n' |
  run "$SS" produce -K '\t' -k dflt -H trace=abc -H x=y -Z -p 1 "kafka://$B/$t" 2>"$T/err"
expect_status "produce -K -H -Z -p" 0 $?
# kcat, the independent reader: keys from -K (and -k for the line without one), both headers on
# every message, the empty line a NULL payload (-1), everything in partition 1.
run kcat -b "$B" -C -t "$t" -o beginning -e -q -Z -f '%p|%k|%s|%S|%h\n' >"$T/out"
printf '1|k1|v1|2|trace=abc,x=y\n1|dflt|nokey|5|trace=abc,x=y\n1|k3|v3|2|trace=abc,x=y\n1|dflt|NULL|-1|trace=abc,x=y\n' >"$T/want"
expect_same "produce -K -H -Z -p, read by kcat" "$T/want" "$T/out"
# -K round trip: consume prints key DELIM payload; -H's headers show in -J.
run "$SS" consume -o beginning -e -K '=' "kafka://$B/$t" >"$T/out" 2>"$T/err"
printf 'k1=v1\ndflt=nokey\nk3=v3\ndflt=\n' >"$T/want"
expect_same "-K round trip" "$T/want" "$T/out"
run "$SS" consume -o beginning -e -c 1 -J "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_grep "-H in -J" '"key":"k1","headers":\{"trace":"abc","x":"y"\}\}$' "$T/out"
# -p: only that partition; kcat's messages go to partition 0.
printf 'p0\n' | run kcat -b "$B" -P -t "$t" -p 0
run "$SS" consume -o beginning -e -p 0 -f '%p %s\n' "kafka://$B/$t" >"$T/out" 2>"$T/err"
printf '0 p0\n' >"$T/want"
expect_same "consume -p 0" "$T/want" "$T/out"
run "$SS" consume -o beginning -e -p 1 -f '%p\n' "kafka://$B/$t" | sort -u >"$T/out"
printf '1\n' >"$T/want"
expect_same "consume -p 1" "$T/want" "$T/out"
echo x | run "$SS" produce -p 7 -X timeout=5000 "kafka://$B/$t" >"$T/out" 2>&1
st=$?
[ "$st" -ne 0 ] && ok || bad "produce -p 7 (no such partition): exit status 0"
expect_grep "produce -p 7" 'partition 7' "$T/out"
# consume -p of a partition that does not exist: said at once (it waited forever, even with -e)
run "$SS" consume -e -o beginning -p 7 "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status "consume -p 7 (no such partition)" 2 $?
expect_grep "consume -p 7" "partition 7 of topic '$t' does not exist \\(it has [0-9]+, 0 to [0-9]+\\)" "$T/err"
# A group setting the broker refuses every time fails the consumer, naming the group (it was
# tried again every 2 s for ever, even with -e, and the warning said "topic '?'")
run "$SS" consume -G "bad-$t" -e -X session.timeout.ms=5000 "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status "consume -G with a session timeout the broker refuses" 1 $?
expect_grep "consume -G, refused session timeout" "group 'bad-$t' on .*: JoinGroup failed: Broker: Invalid session timeout" "$T/err"
# An idle member stays in its group: it is polled though no message comes. (It went past
# max.poll.interval.ms, left the group and rejoined: a rebalance each time.) The broker's
# smallest session timeout is 6 s, and max.poll.interval.ms may not be less.
timeout -s INT 10 "$SS" consume -v -G "idle-$t" -o end -X max.poll.interval.ms=6000 \
  -X session.timeout.ms=6000 "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_grep "an idle member joins" "group 'idle-$t' assigned" "$T/err"
if grep -Eqi 'maxpoll|revoked' "$T/err"; then
  bad "an idle member left its group:"
  grep -Ei 'maxpoll|revoked' "$T/err" | head -3 >&2
else ok; fi
# -o stored after a group committed a part; -v says what connected, was assigned, committed.
run "$SS" consume -G "g-$t" -c 2 -v -f '%s\n' "kafka://$B/$t" >"$T/out" 2>"$T/err"
expect_status "group part" 0 $?
expect_grep "-v: connected" " info: kafka: connected to $B\$" "$T/err"
expect_grep "-v: assigned" " info: kafka: group 'g-$t' assigned 2 partition\(s\): $t\[0\], $t\[1\]\$" "$T/err"
expect_grep "-v: committed" " info: kafka: group 'g-$t' committed .*$t\[[01]\]@[0-9]+" "$T/err"

run "$SS" consume -G "g-$t" -o stored -e -f '%s\n' "kafka://$B/$t" >"$T/out2" 2>"$T/err"
expect_status "-o stored" 0 $?
cat "$T/out" "$T/out2" | sort >"$T/got"
printf '\nnokey\np0\nv1\nv3\n' | sort >"$T/want"
expect_same "-o stored: the rest, once" "$T/want" "$T/got"
# A partition with nothing to commit says so, not bare (it read as sharing the next one's offset).
run "$TOOL" create "$B" "$t-one" 2 >"$T/err" 2>&1 || { bad "create $t-one"; show "$T/err"; }
seq 1 3 | run "$SS" produce -p 0 "kafka://$B/$t-one" 2>"$T/err"
run "$SS" consume -G "g1-$t" -c 2 -v -f '%s\n' "kafka://$B/$t-one" >"$T/one" 2>"$T/err"
expect_grep "-v: committed, one partition empty" \
  " info: kafka: group 'g1-$t' committed $t-one\[0\]@2, $t-one\[1\] \(no offset\)\$" "$T/err"
# -q: librdkafka's warnings (an unreachable broker) are not printed, the error is.
run "$SS" consume -q -X timeout=1500 -e "kafka://127.0.0.1:1/x" >"$T/out" 2>&1
if grep -q ' warn: ' "$T/out"; then bad "-q: a warning printed"; show "$T/out"; else ok; fi
expect_grep "-q: the error stays" 'cannot connect to 127.0.0.1:1' "$T/out"
# An unknown option suggests the common key it is likely a typo of.
run "$SS" consume -X strat=beginning -e "kafka://$B/$t" >"$T/out" 2>&1
expect_status "strat" 2 $?
expect_grep "strat" "kafka: unknown option 'strat': did you mean 'start'\? \(common keys: mode, group, .*; kafka keys: partition, auto_commit" "$T/out"

# --- bad input ---
run "$SS" consume -G "grp-$t" -X auto_commit=true -e "kafka://$B/$t" >"$T/out" 2>&1
expect_status auto-commit-true 2 $?
expect_grep auto-commit-true 'say auto_commit=at-most-once' "$T/out"
run "$SS" consume -X no.such.property=1 -e "kafka://$B/x" >"$T/out" 2>&1
expect_status bad-property 2 $?
expect_grep bad-property 'no.such.property' "$T/out"

run "$SS" consume -X timeout=1500 -e "kafka://127.0.0.1:1/x" >"$T/out" 2>&1
st=$?
[ "$st" -ne 0 ] && ok || bad "unreachable: exit status 0"
expect_grep unreachable 'cannot connect to 127.0.0.1:1' "$T/out"

echo x | run "$SS" produce -X timeout=1500 "kafka://127.0.0.1:1/x" >"$T/out" 2>&1
st=$?
[ "$st" -ne 0 ] && ok || bad "unreachable produce: exit status 0"
expect_grep unreachable-produce 'cannot connect to 127.0.0.1:1' "$T/out"

t=$(topic missing)
run "$SS" consume -e "kafka://$B/$t" >"$T/out" 2>&1
st=$?
[ "$st" -ne 0 ] && ok || bad "missing topic: exit status 0"
expect_grep missing-topic "topic '$t' does not exist" "$T/out"

t=$(topic big)
head -c 3000 /dev/zero | tr '\0' x | { echo small; cat; echo; } |
  run "$SS" produce -X message.max.bytes=2000 "kafka://$B/$t" >"$T/out" 2>&1
st=$?
[ "$st" -ne 0 ] && ok || bad "too big: exit status 0"
expect_grep too-big 'over message.max.bytes \(2000\)' "$T/out"
run kcat -b "$B" -C -t "$t" -o beginning -e -q -f '%s\n' >"$T/out"
echo small >"$T/want"
expect_same too-big-kept "$T/want" "$T/out"

finish
