#!/usr/bin/env bash
# tests/kafka/cluster.sh: a three-broker Apache Kafka cluster (KRaft) on loopback, for the failover
# tests (issue 15). Each node is broker and controller; the three controllers are a static
# three-voter quorum. The jars and their classpath come from broker.sh (Maven, cached).
#
#   cluster.sh start DIR             format fresh storage under DIR/node1..3, start the three nodes on
#                                    free loopback ports, wait until every node answers and sees
#                                    all three brokers registered (which needs a quorum leader);
#                                    writes DIR/bootstrap (the three host:port, comma-separated)
#                                    and DIR/pids (one pid a line, node 1 first). Prints the
#                                    bootstrap.
#   cluster.sh stop DIR              stop every node of DIR and remove DIR.
#   cluster.sh kill DIR N            kill -9 node N (1..3); returns once it is gone.
#   cluster.sh restart DIR N         start node N again on its ports and storage (kill -9 first if it
#                                    still runs); waits until it answers, is registered again and
#                                    is back in the in-sync replicas of every partition it holds.
#   cluster.sh leader DIR TOPIC P    print the node (1..3) leading partition P of TOPIC.
#   cluster.sh port DIR N            print node N's host:port.
#
# Topics: replication factor 3 and min.insync.replicas=2 by default (auto-created ones too, with
# KAFKA_PARTITIONS partitions, default 1); the internal topics too. A killed broker is fenced
# after broker.session.timeout.ms (3 s here; Kafka's default is 9 s), and only then are its
# partitions led by another node: that is how long a failover takes. Consumer groups may use a
# session timeout down to 2 s (group.min.session.timeout.ms).
#
# Environment: KAFKA_HEAP (per node, default -Xmx384m), KAFKA_START_TIMEOUT (seconds, default
# 120, every wait), KAFKA_PARTITIONS, KAFKA_EXTRA_PROPS (lines added to every node's properties).
set -euo pipefail

# classpath, free_port (and die, redefined below)
# shellcheck source=broker.sh
source "$(dirname "${BASH_SOURCE[0]}")/broker.sh"
die() { echo "cluster.sh: $*" >&2; exit 1; }

NODES=(1 2 3)
LIMIT=${KAFKA_START_TIMEOUT:-120}

java_cmd() {
  JAVA=(java ${KAFKA_HEAP:--Xmx384m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1
        -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$(classpath)")
}

# Six distinct free ports (a broker and a controller port a node), each checked free now.
pick_ports() {
  python3 - <<'PY'
import socket
socks, ports = [], []
while len(ports) < 6:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    if p not in ports:
        ports.append(p)
    socks.append(s)  # kept open until all six are picked, so none comes twice
print(" ".join(map(str, ports)))
PY
}

node_port() { sed -n "${2}p" "$1/ports" | cut -d' ' -f1; }

# kcat's metadata, as JSON, from BOOTSTRAP (one broker or several); empty on failure.
metadata() { timeout 10 kcat -b "$1" -L -J -m 3 "${@:2}" 2>/dev/null || true; }

# brokers_seen BOOTSTRAP: how many brokers the metadata lists (0 if none answers).
brokers_seen() {
  metadata "$1" | python3 -c '
import json, sys
try: print(len(json.load(sys.stdin)["brokers"]))
except Exception: print(0)'
}

start_once() {
  local dir=$1
  command -v java >/dev/null || die "java not found (scripts/deps.sh installs openjdk-17-jre-headless)"
  command -v kcat >/dev/null || die "kcat not found (scripts/deps.sh installs kcat)"
  rm -rf "$dir"; mkdir -p "$dir"
  java_cmd
  local ports; read -r -a ports <<<"$(pick_ports)"
  local voters="" i
  : >"$dir/ports"
  for i in "${NODES[@]}"; do
    echo "${ports[2 * i - 2]} ${ports[2 * i - 1]}" >>"$dir/ports"
    voters+="${voters:+,}$i@127.0.0.1:${ports[2 * i - 1]}"
  done
  # A cluster id is 16 random bytes, base64url without padding, not starting with '-' (which the
  # tool would take for an option; Kafka's own random ids avoid it too).
  local id
  id=$(python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break')
  local pids=()
  for i in "${NODES[@]}"; do
    local nd="$dir/node$i" port cport
    read -r port cport < <(sed -n "${i}p" "$dir/ports")
    mkdir -p "$nd/data"
    # log.retention.ms=-1 and no flush by count: as broker.sh (tests write old timestamps).
    cat >"$nd/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.quorum.voters=$voters
log.dirs=$nd/data
num.partitions=${KAFKA_PARTITIONS:-1}
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=2000
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
auto.create.topics.enable=true
log.flush.interval.messages=9223372036854775807
log.retention.ms=-1
${KAFKA_EXTRA_PROPS:-}
PROPS
    # The three formats run side by side (a JVM each).
    "${JAVA[@]}" kafka.tools.StorageTool format -t "$id" -c "$nd/server.properties" \
      >"$nd/format.log" 2>&1 &
    pids+=($!)
  done
  local p
  for i in "${NODES[@]}"; do
    p=${pids[i - 1]}
    if ! timeout "$LIMIT" tail --pid="$p" -f /dev/null || ! wait "$p"; then
      cat "$dir/node$i/format.log" >&2
      die "formatting node $i's storage failed"
    fi
  done
  local boot=""
  for i in "${NODES[@]}"; do boot+="${boot:+,}127.0.0.1:$(node_port "$dir" "$i")"; done
  echo "$boot" >"$dir/bootstrap"
  for i in "${NODES[@]}"; do launch "$dir" "$i"; done
  # Every node answers and lists all three brokers: each registered with the active controller,
  # so the quorum has a leader.
  local deadline=$((SECONDS + LIMIT))
  for i in "${NODES[@]}"; do
    until [[ $(brokers_seen "127.0.0.1:$(node_port "$dir" "$i")") == 3 ]]; do
      alive "$dir" || return 1
      if ((SECONDS > deadline)); then
        echo "cluster.sh: node $i did not see three brokers within ${LIMIT}s" >&2
        return 1
      fi
      sleep 0.5
    done
  done
  cat "$dir/bootstrap"
}

# Starts node N of DIR (configured and formatted) in its own process group; no wait.
launch() {
  local dir=$1 i=$2
  [[ -n ${JAVA[*]:-} ]] || java_cmd
  setsid "${JAVA[@]}" kafka.Kafka "$dir/node$i/server.properties" >>"$dir/node$i/broker.log" 2>&1 </dev/null &
  echo $! >"$dir/node$i/pid"
  local j
  for j in "${NODES[@]}"; do cat "$dir/node$j/pid" 2>/dev/null || echo 0; done >"$dir/pids"
}

# Every node that was started still runs (else say which one died, with its log's end).
alive() {
  local dir=$1 i
  for i in "${NODES[@]}"; do
    if ! kill -0 "$(cat "$dir/node$i/pid")" 2>/dev/null; then
      echo "cluster.sh: node $i exited while starting" >&2
      return 1
    fi
  done
}

start() {
  local dir=$1 attempt
  for attempt in 1 2 3; do
    if start_once "$dir"; then return 0; fi
    if ((attempt == 3)) || ! grep -qs 'Address already in use' "$dir"/node*/broker.log; then break; fi
    echo "cluster.sh: a port was taken meanwhile; trying other ports" >&2
    stop_nodes "$dir"
  done
  local i
  for i in "${NODES[@]}"; do
    echo "--- node $i" >&2
    tail -n 20 "$dir/node$i/broker.log" >&2 2>/dev/null || true
  done
  stop "$dir" || true
  die "the cluster did not start (logs above)"
}

kill_node() {
  local dir=$1 i=$2 pid
  pid=$(cat "$dir/node$i/pid" 2>/dev/null) || die "no node $i was started in $dir"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  local j
  for ((j = 0; j < 100; j++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  die "node $i (pid $pid) is still there after kill -9"
}

stop_nodes() {
  local dir=$1 i pid pids=()
  for i in "${NODES[@]}"; do
    pid=$(cat "$dir/node$i/pid" 2>/dev/null) || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  # A controlled shutdown needs the quorum: nodes stopping together wait for each other (8 s
  # here), so the polite stop gets 2 s, then kill -9 (the storage is removed anyway).
  local j
  for ((j = 0; j < 10; j++)); do
    local left=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
    ((left)) || return 0
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
}

stop() {
  stop_nodes "$1"
  rm -rf "$1"
}

# in_sync DIR N: node N is listed, and is in the ISR of every partition that it replicates.
in_sync() {
  local dir=$1 i=$2
  metadata "$(cat "$dir/bootstrap")" | python3 -c '
import json, sys
n = int(sys.argv[1])
try:
    md = json.load(sys.stdin)
except Exception:
    sys.exit(1)
if n not in [b["id"] for b in md["brokers"]]:
    sys.exit(1)
for t in md["topics"]:
    for p in t["partitions"]:
        if n in [r["id"] for r in p.get("replicas", [])] and n not in [r["id"] for r in p.get("isrs", [])]:
            sys.exit(1)' "$i"
}

restart() {
  local dir=$1 i=$2
  [[ -f "$dir/node$i/server.properties" ]] || die "no node $i was started in $dir"
  kill_node "$dir" "$i"
  launch "$dir" "$i"
  local deadline=$((SECONDS + LIMIT)) port
  port=$(node_port "$dir" "$i")
  until [[ $(brokers_seen "127.0.0.1:$port") == 3 ]] && in_sync "$dir" "$i"; do
    if ! kill -0 "$(cat "$dir/node$i/pid")" 2>/dev/null; then
      tail -n 20 "$dir/node$i/broker.log" >&2
      die "node $i exited while starting again"
    fi
    if ((SECONDS > deadline)); then
      tail -n 20 "$dir/node$i/broker.log" >&2
      die "node $i was not back in sync within ${LIMIT}s"
    fi
    sleep 0.5
  done
}

leader() {
  local dir=$1 topic=$2 part=$3
  metadata "$(cat "$dir/bootstrap")" -t "$topic" | python3 -c '
import json, sys
try:
    md = json.load(sys.stdin)
    for t in md["topics"]:
        for p in t["partitions"]:
            if t["topic"] == sys.argv[1] and p["partition"] == int(sys.argv[2]) and p["leader"] > 0:
                print(p["leader"]); sys.exit(0)
except Exception:
    pass
sys.exit(1)' "$topic" "$part" || die "no leader known for $topic partition $part"
}

node_arg() { [[ $1 =~ ^[123]$ ]] || die "node: 1, 2 or 3, not '$1'"; }

case "${1:-}" in
  start) [[ $# == 2 ]] || die "usage: cluster.sh start DIR"; start "$2" ;;
  stop) [[ $# == 2 ]] || die "usage: cluster.sh stop DIR"; stop "$2" ;;
  kill) [[ $# == 3 ]] || die "usage: cluster.sh kill DIR N"; node_arg "$3"; kill_node "$2" "$3" ;;
  restart) [[ $# == 3 ]] || die "usage: cluster.sh restart DIR N"; node_arg "$3"; restart "$2" "$3" ;;
  leader) [[ $# == 4 ]] || die "usage: cluster.sh leader DIR TOPIC PARTITION"; leader "$2" "$3" "$4" ;;
  port) [[ $# == 3 ]] || die "usage: cluster.sh port DIR N"; node_arg "$3"; echo "127.0.0.1:$(node_port "$2" "$3")" ;;
  *) die "usage: cluster.sh start DIR | stop DIR | kill DIR N | restart DIR N | leader DIR TOPIC P | port DIR N" ;;
esac
