#!/usr/bin/env bash
# test_kafka_reconnect.sh: a consumer in a group and a producer ride out a broker that is killed
# (kill -9) and started again on the same ports, and say so at info level (-v): one warning
# when every broker is lost, one "reconnected" once messages flow again. Nothing is lost: the
# consumer prints every message written before and after, the producer's lines all arrive (kcat
# reads them). A broker of its own (restarting the shared one would break the tests beside it).
# Every wait is bounded.
# usage: test_kafka_reconnect.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/../lib.sh"
unset SEASTREAMER_LOG
D="$T/broker"
broker() { bash "$here/broker.sh" "$@"; }
broker start "$D" >/dev/null || { echo "FAIL: the broker did not start" >&2; exit 1; }
trap 'kill $cpid $ppid 2>/dev/null; broker stop "$D" >/dev/null 2>&1; rm -rf "$T"' EXIT
B=$(cat "$D/bootstrap")
run() { timeout 120 "$@"; }
# wait_for FILE PATTERN TENTHS: until a line of FILE matches, at most TENTHS tenths of a second.
wait_for() {
  local i
  for ((i = 0; i < $3; i++)); do
    grep -Eq -- "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# wait_lines FILE N TENTHS
wait_lines() {
  local i
  for ((i = 0; i < $3; i++)); do
    [ "$(wc -l <"$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

t=recon-$$
seq 1 1000 | run "$SS" produce "kafka://$B/$t" 2>"$T/p1.err"
expect_status "produce before" 0 $?

# The consumer: a group, printing as it goes; the producer: a fifo kept open across the restart.
timeout 300 "$SS" consume -v -G "g-$t" -o beginning -f '%s\n' "kafka://$B/$t" >"$T/c.out" 2>"$T/c.err" &
cpid=$!
mkfifo "$T/pin"
timeout 300 "$SS" produce -v "kafka://$B/$t" <"$T/pin" >"$T/p.out" 2>"$T/p.err" &
ppid=$!
exec 3>"$T/pin"
seq 1001 1500 >&3
wait_lines "$T/c.out" 1500 600 || bad "the consumer printed $(wc -l <"$T/c.out") of 1500 before the restart"
expect_grep "consumer: connected (info)" "info: kafka: connected to $B" "$T/c.err"

# 3>&-: the new broker must not hold the producer's fifo open (its input would never end).
broker restart "$D" >/dev/null 3>&- || { bad "the broker did not start again"; finish; }
wait_for "$T/c.err" "lost every broker of $B" 600 || true
expect_grep "consumer: the outage, once" "warn: kafka: lost every broker of $B .*; reconnecting" "$T/c.err"
seq 1501 2000 >&3
exec 3>&-
wait $ppid
expect_status "the producer rides out the restart" 0 $?
expect_grep "producer: the outage" "warn: kafka: lost every broker of $B" "$T/p.err"
expect_grep "producer: back" "info: kafka: reconnected to $B" "$T/p.err"
wait_lines "$T/c.out" 2000 1200 || true
wait_for "$T/c.err" "reconnected to $B" 100 || true
expect_grep "consumer: back" "info: kafka: reconnected to $B" "$T/c.err"
# Ctrl-C to the command itself: timeout(1) would pass a signal it gets on twice, and the second
# one kills.
kill -INT "$(pgrep -P $cpid | head -1)"
wait $cpid
expect_status "the consumer stops on Ctrl-C" 0 $?
# The outage is one warning per handle, not one per librdkafka event.
expect_status "consumer: one outage warning" 1 "$(grep -c 'lost every broker' "$T/c.err")"
# Every message, whatever came twice: 0 lost.
sort -n -u "$T/c.out" >"$T/c.uniq"
seq 1 2000 >"$T/want"
expect_same "the consumer printed every message" "$T/want" "$T/c.uniq"
run kcat -b "$B" -C -t "$t" -o beginning -e -q -f '%s\n' | sort -n >"$T/k.out"
expect_same "kcat reads every message, once (idempotent producer)" "$T/want" "$T/k.out"
finish
