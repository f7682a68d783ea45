#!/usr/bin/env bash
# tests/redis/redis_env.sh: starts and stops a private redis-server for the tests, on a free
# loopback port (never 6379) with its data in a directory of its own.
#
#   redis_env.sh start DIR [redis.conf lines...]   starts it; the port is written to DIR/port
#   redis_env.sh stop DIR                          SHUTDOWN (saves the AOF), kill if it must
#   redis_env.sh restart DIR                       stop, then start again on the same port
set -euo pipefail
cmd=${1:?usage: redis_env.sh start|stop|restart DIR [conf...]}
dir=${2:?usage: redis_env.sh start|stop|restart DIR [conf...]}
shift 2

free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Start the server of DIR/redis.conf and wait until it answers.
launch() {
  local port
  port=$(cat "$dir/port")
  redis-server "$dir/redis.conf"
  for _ in $(seq 1 200); do
    if redis-cli -p "$port" ping 2>/dev/null | grep -q -e PONG -e NOAUTH; then
      return 0
    fi
    sleep 0.05
  done
  echo "redis_env: redis-server on port $port did not start; log:" >&2
  cat "$dir/redis.log" >&2 || true
  exit 1
}

start() {
  stop
  rm -rf "$dir"
  mkdir -p "$dir"
  local port
  port=$(free_port)
  while [[ "$port" == 6379 ]]; do port=$(free_port); done
  {
    echo "port $port"
    echo "bind 127.0.0.1"
    echo "dir $dir"
    echo "pidfile $dir/redis.pid"
    echo "logfile $dir/redis.log"
    echo "daemonize yes"
    echo "save \"\""
    echo "appendonly yes"
    echo "appendfsync everysec"
    for line in "$@"; do echo "$line"; done
  } >"$dir/redis.conf"
  echo "$port" >"$dir/port"
  launch
}

stop() {
  [[ -f "$dir/port" ]] || return 0
  local port pid=""
  port=$(cat "$dir/port")
  [[ -f "$dir/redis.pid" ]] && pid=$(cat "$dir/redis.pid")
  local pass
  pass=$(sed -n 's/^requirepass //p' "$dir/redis.conf" 2>/dev/null | head -1)
  REDISCLI_AUTH="$pass" redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
  if [[ -n "$pid" ]]; then
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || { rm -f "$dir/redis.pid"; return 0; }
      sleep 0.05
    done
    # only if that pid is still our redis-server, never a process that reused the number
    if grep -q redis-server "/proc/$pid/comm" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$dir/redis.pid"
  fi
}

case "$cmd" in
start) start "$@" ;;
stop) stop ;;
restart) stop; launch ;;
*) echo "redis_env: unknown command $cmd" >&2; exit 2 ;;
esac
