#!/usr/bin/env bash
# test_kafka_lag_cli.sh: the Kafka lag that --stats and --stats-json report, against the real
# broker (test_kafka_lag.c checks sea_consumer_lag against librdkafka's mock; this is the same
# number through the command, with the broker's own watermarks). kcat writes the topics, as an
# independent client. The lag is the high watermark minus the position, the offset after the last
# message the consumer took from librdkafka: with batch=B and -c N that is N to N+B messages in,
# never less than N (the pipeline takes whole batches). Every command is bounded by a timeout.
# usage: test_kafka_lag_cli.sh BUILD_DIR BOOTSTRAP_FILE
set -uo pipefail
BUILD=$(cd "$1" && pwd)
B=$(cat "$2")
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
run() { timeout 120 "$@"; }
t1="lag-a-$$-$RANDOM"
t2="lag-b-$$-$RANDOM"
seq 1 1000 | run kcat -b "$B" -P -t "$t1"
expect_status "kcat writes $t1" 0 $?
seq 1 400 | run kcat -b "$B" -P -t "$t2"
expect_status "kcat writes $t2" 0 $?

# lag_of FILE STREAM: the lag of STREAM's shard 0 in FILE's last --stats-json line (the final one).
lag_of() {
  python3 - "$1" "$2" <<'PY'
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert last.get("final") is True, "the last line is not the final one"
lag = [e["lag"] for e in last["lag"] if e["stream"] == sys.argv[2] and e["shard"] == 0]
print(lag[0] if len(lag) == 1 else "missing: %r" % last["lag"])
PY
}
# expect_between NAME LO HI GOT
expect_between() {
  if [[ "$4" =~ ^[0-9]+$ ]] && [ "$4" -ge "$2" ] && [ "$4" -le "$3" ]; then ok; else
    bad "$1: lag $4, expected $2..$3"
  fi
}

# --- read to the end of two topics: both partitions report a lag of 0 ---
run "$SS" consume -o beginning -e --stats-json=0.2 -f '%s\n' "kafka://$B/$t1,$t2" >"$T/out" 2>"$T/err"
expect_status "consume -e --stats-json" 0 $?
expect_lines "consume -e: every message" 1400 "$T/out"
expect_between "$t1 at the end" 0 0 "$(lag_of "$T/err" "$t1")"
expect_between "$t2 at the end" 0 0 "$(lag_of "$T/err" "$t2")"

# --- part of a topic: 1000 - 300 minus at most one batch more taken ---
run "$SS" consume -o beginning -c 300 -X batch=100 --stats-json=0.2 -f '%s\n' "kafka://$B/$t1" \
  >"$T/out" 2>"$T/err"
expect_status "consume -c 300 --stats-json" 0 $?
expect_lines "consume -c 300" 300 "$T/out"
expect_between "$t1 after 300" 600 700 "$(lag_of "$T/err" "$t1")"

# --- a group resumes from its commit: the lag counts from the committed position ---
g="lag-g-$$"
run "$SS" consume -G "$g" --mode resumable -o beginning -c 300 -X batch=100 -f '%s\n' \
  "kafka://$B/$t1" >"$T/out" 2>"$T/err"
expect_status "group: first 300" 0 $?
run "$SS" consume -G "$g" --mode resumable -c 1 -X batch=1 --stats-json=0.2 -f '%s\n' \
  "kafka://$B/$t1" >"$T/out" 2>"$T/err"
expect_status "group: one more" 0 $?
expect_line "group: resumes after the commit" 1 301 "$T/out"
expect_between "$t1 after the group's 301" 698 699 "$(lag_of "$T/err" "$t1")"

# --- the human form names the partition and its lag ---
run "$SS" consume -o beginning -e --stats=0.2 -f '%s\n' "kafka://$B/$t2" >/dev/null 2>"$T/err"
expect_status "consume -e --stats" 0 $?
expect_grep "--stats: the final line's lag" "stats \(final\): .* lag $t2:0 0$" "$T/err"
finish
