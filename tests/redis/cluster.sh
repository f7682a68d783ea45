#!/usr/bin/env bash
# tests/redis/cluster.sh: starts and stops a private Redis Cluster for the tests: six redis-servers
# on loopback (three masters, three replicas), each on a free port below 55536 whose cluster bus
# port (port + 10000) is free too, data in DIR/NODE. cluster-node-timeout is 1500 ms, so a killed
# master's replica takes over within a few seconds.
#
#   cluster.sh start DIR [redis.conf lines...]
#                           starts them, creates the cluster, waits for cluster_state:ok on all
#                           and every replica in sync with its master;
#                           writes DIR/ports (six ports, masters first) and DIR/seed (one port)
#   cluster.sh stop DIR     SHUTDOWN NOSAVE each, kill -9 the ones that linger (by their pid file)
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop DIR}
dir=${2:?usage: cluster.sh start|stop DIR}
dir=$(mkdir -p "$dir" && cd "$dir" && pwd)
shift 2

# A port p with p and p + 10000 both free; never 6379 and its bus port.
free_port_pair() {
  python3 - "$@" <<'PY'
import socket, sys, random
taken = set(int(a) for a in sys.argv[1:])
for _ in range(2000):
    p = random.randint(20000, 55535)
    if p in taken or p + 10000 in taken or p in (6379, 16379):
        continue
    socks = []
    try:
        for q in (p, p + 10000):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", q))
            socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks:
            s.close()
    if len(socks) == 2:
        print(p)
        sys.exit(0)
sys.exit("cluster.sh: no free port pair found")
PY
}

stop_one() {
  local ndir=$1 port pid=""
  [[ -f "$ndir/port" ]] || return 0
  port=$(cat "$ndir/port")
  [[ -f "$ndir/redis.pid" ]] && pid=$(cat "$ndir/redis.pid")
  # NOW: a master does not wait (shutdown-timeout, 10 s) for its replicas, which stop too
  redis-cli -p "$port" shutdown nosave now >/dev/null 2>&1 ||
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  if [[ -n "$pid" ]]; then
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    # only if that pid is still a redis-server, never a process that reused the number
    if kill -0 "$pid" 2>/dev/null && grep -q redis-server "/proc/$pid/comm" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$ndir/redis.pid"
}

stop() {
  local ndir
  for ndir in "$dir"/node*; do
    [[ -d "$ndir" ]] && stop_one "$ndir" &
  done
  wait
  return 0
}

wait_ok() {
  local port
  for _ in $(seq 1 300); do
    local ok=1
    for port in $(cat "$dir/ports"); do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q 'cluster_state:ok' || { ok=0; break; }
      # a replica that has not synced with its master yet could not take over from it
      if redis-cli -p "$port" info replication 2>/dev/null | grep -q '^role:slave'; then
        redis-cli -p "$port" info replication | grep -q '^master_link_status:up' || { ok=0; break; }
      fi
    done
    ((ok)) && return 0
    sleep 0.1
  done
  echo "cluster.sh: the cluster did not reach cluster_state:ok within 30 s" >&2
  for port in $(cat "$dir/ports"); do redis-cli -p "$port" cluster info 2>&1 | head -3 >&2; done
  return 1
}

start() {
  stop
  rm -rf "$dir"/node* "$dir/ports" "$dir/seed"
  local ports=() i p
  for i in 1 2 3 4 5 6; do
    p=$(free_port_pair "${ports[@]}")
    ports+=("$p")
    local ndir="$dir/node$i"
    mkdir -p "$ndir"
    {
      echo "port $p"
      echo "bind 127.0.0.1"
      echo "dir $ndir"
      echo "pidfile $ndir/redis.pid"
      echo "logfile $ndir/redis.log"
      echo "daemonize yes"
      echo "save \"\""
      echo "appendonly yes"
      echo "appendfsync everysec"
      echo "cluster-enabled yes"
      echo "cluster-config-file $ndir/nodes.conf"
      echo "cluster-node-timeout 1500"
      echo "repl-diskless-sync-delay 0" # a replica syncs at once, not after 5 s
      for line in "$@"; do echo "$line"; done
    } >"$ndir/redis.conf"
    echo "$p" >"$ndir/port"
    redis-server "$ndir/redis.conf"
  done
  for p in "${ports[@]}"; do
    local up=0
    for _ in $(seq 1 200); do
      redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && { up=1; break; }
      sleep 0.05
    done
    ((up)) || { echo "cluster.sh: redis-server on port $p did not start" >&2; exit 1; }
  done
  local addrs=()
  for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
  # --cluster create makes the first three the masters and gives each a replica among the others
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
    { echo "cluster.sh: redis-cli --cluster create failed:" >&2; cat "$dir/create.log" >&2; exit 1; }
  echo "${ports[*]}" >"$dir/ports"
  echo "${ports[0]}" >"$dir/seed"
  wait_ok
}

case "$cmd" in
start) start "$@" ;;
stop) stop ;;
wait) wait_ok ;;
*) echo "cluster.sh: unknown command $cmd" >&2; exit 2 ;;
esac
