#!/usr/bin/env bash
# tests/redis/test_redis_kill_cli.sh: `consume -G -e` through a storm of dropped connections
# (CLIENT KILL every 10 ms while it reads 50,000 entries and commits every millisecond). It must
# end as `-e` says, once caught up: every entry printed (duplicates allowed), nothing left
# pending, exit status 0. Before 2026-12-04 it could stop in the middle with status 0 (a reset
# stopped libuv's poll while replies were still to be read, and the loop ran out of work), or end
# with status 3 (a commit while reconnecting, or one whose XACK was lost, failed the run).
# A server of its own (own_server.sh), so the kills disturb no other test.
# Usage: test_redis_kill_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
source "$(dirname "${BASH_SOURCE[0]}")/own_server.sh"
port=$PORT
uri="redis://127.0.0.1:$port/killk"
N=50000

seq 1 $N | timeout 60 "$SS" produce "$uri" 2>"$T/perr"
expect_status "produce" 0 $?
# The kills begin once the consumer has printed a line: a first connection that fails is
# refused at once, by design, and is not what this test is about.
"$SS" consume -v -G kg -o beginning -e --commit-interval 1 -f '%s\n' "$uri" \
  >"$T/out" 2>"$T/err" &
pid=$!
CHILDREN+=($pid)
for _ in $(seq 1 600); do [ -s "$T/out" ] && break; sleep 0.05; done
(for _ in $(seq 1 150); do
  redis-cli -p "$port" client kill type normal >/dev/null 2>&1
  sleep 0.01
done) &
kpid=$!
CHILDREN+=($kpid)
# bounded: the consumer reads 50,000 entries in well under a second when nothing disturbs it
for _ in $(seq 1 1200); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
if kill -0 $pid 2>/dev/null; then
  bad "consume -e did not end within 60 s"
  kill -9 $pid
fi
wait $pid
expect_status "consume -G -e through the kills (stderr: $(grep -v ' info: ' "$T/err" | tail -1))" 0 $?
kill $kpid 2>/dev/null
wait $kpid 2>/dev/null
CHILDREN=() # both waited for: their pids may be another process's now
sort -un "$T/out" >"$T/uniq"
seq 1 $N >"$T/want"
expect_same "every entry printed at least once" "$T/want" "$T/uniq"
pending=$(redis-cli -p "$port" xpending killk kg | head -1)
[ "$pending" = 0 ] && ok || bad "entries left pending: $pending"
echo "kills: $(grep -c 'reconnected to' "$T/err") reconnects, $(wc -l <"$T/out") lines for $N entries"
finish
