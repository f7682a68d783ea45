#!/usr/bin/env bash
# test_kafka_stats.sh: librdkafka's own statistics (-X statistics.interval.ms) reach stderr as
# {"librdkafka": {...}} lines beside --stats-json's, each line one JSON object. Against
# librdkafka's mock cluster (test.mock.num.brokers: in the process, no broker needed).
# usage: test_kafka_stats.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG

mkfifo "$T/in"
timeout 60 "$SS" produce -X test.mock.num.brokers=1 -X statistics.interval.ms=50 \
  --stats-json=0.05 kafka://localhost:9092/st <"$T/in" >"$T/out" 2>"$T/err" &
PID=$!
exec 3>"$T/in"
echo one >&3
# Keep stdin open (bounded) until librdkafka has written a statistics line.
for _ in $(seq 1 600); do
  grep -q '^{"librdkafka":' "$T/err" && break
  sleep 0.05
done
echo two >&3
exec 3>&-
wait "$PID"
expect_status "produce -X statistics.interval.ms=50 --stats-json" 0 $?
expect_grep "a librdkafka statistics line" '^\{"librdkafka":\{ *"name": "rdkafka#producer-1"' "$T/err"
if python3 - "$T/err" <<'EOF' 2>"$T/pyerr"; then ok; else bad "stderr: $(tail -1 "$T/pyerr")"; fi
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
ours = [o for o in objs if "librdkafka" not in o]
assert any("librdkafka" in o for o in objs)
assert ours and ours[-1]["final"] is True, ours[-1:]
assert ours[-1]["messages_in"] == 2 and ours[-1]["messages_out"] == 2 and ours[-1]["inflight"] == 0
EOF
finish
