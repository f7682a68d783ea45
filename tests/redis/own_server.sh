# shellcheck shell=bash
# tests/redis/own_server.sh, sourced (after ../lib.sh) by a test that needs a redis-server of its
# own, so that what it does to the server (CLIENT KILL) disturbs no other test: starts one with
# redis_env.sh in $T/redis and sets PORT. At exit it kills the processes whose pids the test put
# in CHILDREN (kill -9; a test empties it once it has waited for them), stops the server and
# removes $T.
CHILDREN=()
own_env_sh="$(dirname "${BASH_SOURCE[0]}")/redis_env.sh"
own_cleanup() {
  local p
  for p in "${CHILDREN[@]}"; do kill -9 "$p" 2>/dev/null; done
  bash "$own_env_sh" stop "$T/redis" >/dev/null 2>&1
  rm -rf "$T"
}
trap own_cleanup EXIT
bash "$own_env_sh" start "$T/redis" >/dev/null || die "redis-server did not start"
PORT=$(cat "$T/redis/port")
