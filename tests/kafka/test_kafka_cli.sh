#!/usr/bin/env bash
# test_kafka_cli.sh: the seastreamer command against a real Kafka broker, with kcat as an
# independent second client both ways, and the command's bad-input errors and exit statuses.
# usage: test_kafka_cli.sh BUILD_DIR BOOTSTRAP_FILE
set -uo pipefail
BUILD=$(cd "$1" && pwd)
B=$(cat "$2")
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
