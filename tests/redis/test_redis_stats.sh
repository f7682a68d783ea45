#!/usr/bin/env bash
# test_redis_stats.sh: --stats-json over redis streams: a group's lag (XINFO GROUPS) while its
# relay is held back by a reader that does not read, and 0 once a run with -e caught up.
# usage: test_redis_stats.sh BUILD_DIR PORT_FILE
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
PORT=$(cat "$2")
unset SEASTREAMER_LOG
R="redis://127.0.0.1:$PORT"
K="stats_$$"
TO="timeout 60"
N=150000

python3 -c "
import sys
for i in range($N): sys.stdout.write('x' * 100 + '\n')" >"$T/lines"
$TO "$SS" produce "$R/$K" <"$T/lines"
expect_status "produce $N" 0 $?
[ "$(redis-cli -p "$PORT" XLEN "$K")" = "$N" ] && ok || bad "XLEN is not $N"

# A relay whose output nobody reads: it stops taking input at its in-flight bound, and the
# group's lag (entries not delivered to the group) shows in the stats lines. Wait (bounded) for a
# line whose lag is known, then end it.
mkfifo "$T/fifo"
sleep 120 <"$T/fifo" & # holds the fifo open for reading, and never reads
HOLD=$!
$TO "$SS" relay -G g1 -O max_inflight=100 --stats-json=0.05 "$R/$K" stdio:///o \
  >"$T/fifo" 2>"$T/err" &
RELAY=$!
found=
for _ in $(seq 1 600); do
  if python3 - "$T/err" "$N" <<'EOF' 2>/dev/null; then found=1; break; fi
import json, sys
n = int(sys.argv[2])
for line in open(sys.argv[1]).read().splitlines():
    o = json.loads(line)
    for e in o["lag"]:
        if e["lag"] is not None and 0 < e["lag"] < n and o["messages_in"] < n:
            sys.exit(0)
sys.exit(1)
EOF
  sleep 0.05
done
kill "$RELAY" "$HOLD" 2>/dev/null # the relay stops; the reader going away ends its flush
wait "$RELAY" "$HOLD" 2>/dev/null
if [ -n "$found" ]; then ok; else
  bad "relay -G g1 held back: no stats line with a known lag between 0 and $N"
  tail -3 "$T/err" | sed 's/^/    /' >&2
fi
# What the group says agrees with the last line's lag: XINFO GROUPS's own figure.
xlag=$(redis-cli -p "$PORT" XINFO GROUPS "$K" | awk 'p {print; exit} /^lag$/ {p=1}')
[ -n "$xlag" ] && [ "$xlag" -gt 0 ] && ok || bad "XINFO GROUPS lag '$xlag', expected > 0"

# The rest with -e: every entry delivered, lag 0 at the end.
$TO "$SS" consume -G g1 -e --stats-json=0.05 "$R/$K" >"$T/out" 2>"$T/err"
expect_status "consume -G g1 -e --stats-json" 0 $?
if python3 - "$T/err" "$K" <<'EOF'; then ok; else bad "consume -e: the last line's lag is not 0"; tail -2 "$T/err" >&2; fi
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
last = objs[-1]
assert last["final"] is True
assert [(e["stream"], e["shard"], e["lag"]) for e in last["lag"]] == [(sys.argv[2], 0, 0)], last["lag"]
EOF

# A realtime reader from the beginning, -e: lag 0 once caught up; before that unknown (null).
$TO "$SS" consume -o beginning -e --stats-json "$R/$K" >"$T/out" 2>"$T/err"
expect_status "consume realtime -e --stats-json" 0 $?
expect_lines "consume realtime -e: every entry" "$N" "$T/out"
expect_grep "consume realtime -e: lag 0 at the end" \
  "\"messages_in\":$N,.*\"lag\":\[\{\"input\":0,\"stream\":\"$K\",\"shard\":0,\"lag\":0,\"lag_bytes\":null\}\],\"final\":true\}$" \
  "$T/err"

redis-cli -p "$PORT" DEL "$K" >/dev/null
finish
