#!/usr/bin/env bash
# tests/redis/test_redis_log_cli.sh: what `consume -v` (SEASTREAMER_LOG=info) says of a redis
# server that drops its connection (CLIENT KILL): connected, then reconnecting and reconnected,
# and the consumer goes on. A server of its own (own_server.sh), so the kill disturbs no other
# test; the server stays up, so no other test's server can take its port meanwhile (a restart
# could race with a fixture picking a free port).
# Usage: test_redis_log_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
source "$(dirname "${BASH_SOURCE[0]}")/own_server.sh"
port=$PORT
uri="redis://127.0.0.1:$port/logk"
wait_for() { # PATTERN FILE: bounded wait for a line
  for _ in $(seq 1 300); do grep -Eq -- "$1" "$2" && return 0; sleep 0.05; done
  return 1
}

echo before | timeout 60 "$SS" produce "$uri" 2>"$T/perr"
# Not under timeout(1): it passes a SIGINT on twice, and the second kills. The EXIT trap bounds
# it instead.
"$SS" consume -v -o beginning -u -f '%s\n' "$uri" >"$T/out" 2>"$T/err" &
pid=$!
CHILDREN+=($pid)
wait_for '^before$' "$T/out" && ok || bad "consume: 'before' not printed"
expect_grep "-v: connected" " info: redis: connected to 127.0.0.1:$port \(127.0.0.1\)$" "$T/err"
redis-cli -p "$port" client kill type normal >"$T/kill" 2>&1
expect_grep "CLIENT KILL dropped the consumer" '^[1-9]' "$T/kill"
wait_for ' info: redis: reconnected to ' "$T/err" && ok || { bad "no reconnected line"; show "$T/err"; }
expect_grep "-v: reconnecting" ' info: redis: .*; reconnecting$' "$T/err"
expect_grep "-v: reconnected" " info: redis: reconnected to 127.0.0.1:$port \(127.0.0.1\)$" "$T/err"
# The consumer goes on after reconnecting.
echo after | timeout 60 "$SS" produce "$uri" 2>"$T/perr"
wait_for '^after$' "$T/out" && ok || { bad "consume: 'after' not printed after reconnecting"; show "$T/err"; }
kill -INT $pid
wait $pid
expect_status "consume stopped by SIGINT" 0 $?
CHILDREN=() # waited for: its pid may be another process's now
finish
