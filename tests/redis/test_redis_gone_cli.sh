#!/usr/bin/env bash
# tests/redis/test_redis_gone_cli.sh: a group member (`consume -G`) whose server goes away for
# good while it holds an entry it has not committed. It must end, saying why: once reconnect_ms
# is over (exit status 3, "gave up reconnecting"), and when stopped (SIGTERM) during the outage.
# Before 2026-12-04 its commits still answered "reconnecting" after the consumer had given up:
# the pipeline tried its last commit for 25 s and then spun at full CPU, never exiting.
# A server of its own (own_server.sh), stopped in the middle.
# Usage: test_redis_gone_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
source "$(dirname "${BASH_SOURCE[0]}")/own_server.sh"
uri="redis://127.0.0.1:$PORT/gonek"

# gone NAME [SIGTERM]: one entry, read by a member; the server stops (for good), and the member
# is left alone, or stopped by SIGTERM 0.5 s after. It must end within 20 s with status 3,
# naming the cause.
gone() {
  local name=$1 term=${2:-} pid
  echo "$name" | timeout 60 "$SS" produce "$uri" 2>"$T/perr"
  expect_status "$name: produce" 0 $?
  "$SS" consume -v -G "g$name" -o beginning -X reconnect_ms=2000 -f '%s\n' "$uri" \
    >"$T/out" 2>"$T/err" &
  pid=$!
  CHILDREN+=($pid)
  for _ in $(seq 1 200); do grep -q "^$name\$" "$T/out" 2>/dev/null && break; sleep 0.05; done
  expect_grep "$name: the entry was printed" "^$name\$" "$T/out"
  bash "$(dirname "${BASH_SOURCE[0]}")/redis_env.sh" stop "$T/redis" >/dev/null 2>&1
  if [ -n "$term" ]; then
    sleep 0.5
    kill -TERM $pid
  fi
  for _ in $(seq 1 400); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
  if kill -0 $pid 2>/dev/null; then
    bad "$name: consume -G did not end within 20 s of its server going away"
    kill -9 $pid
  fi
  wait $pid
  expect_status "$name: consume -G whose server went away" 3 $?
  CHILDREN=()
  expect_grep "$name: says why" \
    "^seastreamer consume: input $uri: redis: .*\(gave up reconnecting after 2000 ms\)$" "$T/err"
  # Left alone, it stops once it gave up: its last commit is not tried again (stopped during the
  # outage, the last commit is tried again until it gives up, as while reconnecting it must be).
  if [ -z "$term" ] && grep -q "last commit .* trying again" "$T/err"; then
    bad "$name: the last commit was tried again after the consumer gave up: $(grep -c 'trying again' "$T/err") times"
  else
    ok
  fi
  bash "$(dirname "${BASH_SOURCE[0]}")/redis_env.sh" restart "$T/redis" >/dev/null ||
    die "redis-server did not start again" # on its port (appendonly: the entries stay)
}
gone left
gone stopped SIGTERM
finish
