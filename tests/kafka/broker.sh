#!/usr/bin/env bash
# tests/kafka/broker.sh: start and stop a single-node Apache Kafka broker (KRaft) for the tests.
#
#   broker.sh start DIR   resolve the jars (Maven, cached in ~/.m2), format fresh storage in DIR,
#                         start the broker on free loopback ports, wait until it answers; writes
#                         DIR/bootstrap (host:port) and DIR/pid. Prints the bootstrap address.
#   broker.sh stop DIR    stop the broker started in DIR and remove DIR.
#   broker.sh restart DIR kill -9 the broker started in DIR and start it again on the same ports
#                         and storage (what a crashed broker's restart looks like to clients).
#   broker.sh classpath   print the broker's classpath (resolving it if needed).
#
# Environment: KAFKA_HEAP (default -Xmx512m), KAFKA_START_TIMEOUT (seconds, default 120),
# KAFKA_PARTITIONS (of auto-created topics, default 1), KAFKA_EXTRA_PROPS (lines added to the
# broker's properties).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom="$here/pom.xml"

die() { echo "broker.sh: $*" >&2; exit 1; }

# The classpath is cached next to the Maven repository, keyed by the pom's checksum, so a run
# with everything cached does not start Maven at all.
classpath() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/seastreamer"
  local sum; sum=$(sha256sum "$pom" | cut -c1-16)
  local file="$cache/kafka-classpath-$sum.txt"
  if [[ -s "$file" ]]; then
    local ok=1 jar
    IFS=: read -r -a jars <"$file"
    for jar in "${jars[@]}"; do [[ -f "$jar" ]] || { ok=0; break; }; done
    if ((ok)); then cat "$file"; return; fi
  fi
  command -v mvn >/dev/null || die "mvn not found (scripts/deps.sh installs maven)"
  mkdir -p "$cache"
  local tmp="$file.$$"
  if ! mvn -q -B -f "$pom" dependency:build-classpath -Dmdep.outputFile="$tmp" >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2; rm -f "$tmp" "$tmp.log"
    die "Maven could not resolve the Kafka broker's jars (see above)"
  fi
  rm -f "$tmp.log"
  mv "$tmp" "$file"
  cat "$file"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Free ports are picked before the broker binds them, so another process may take one first:
# then the broker exits with "Address already in use" and we try again with new ports.
start() {
  local attempt
  for attempt in 1 2 3; do
    if start_once "$1"; then return 0; fi
    if ((attempt == 3)) || ! grep -q 'Address already in use' "$1/broker.log" 2>/dev/null; then
      break
    fi
    echo "broker.sh: a port was taken meanwhile; trying other ports" >&2
    stop "$1"
  done
  tail -n 30 "$1/broker.log" >&2 2>/dev/null || true
  stop "$1" || true
  die "the broker did not start (log above)"
}

start_once() {
  local dir=$1
  command -v java >/dev/null || die "java not found (scripts/deps.sh installs default-jre-headless)"
  command -v kcat >/dev/null || die "kcat not found (scripts/deps.sh installs kcat)"
  rm -rf "$dir"; mkdir -p "$dir/data"
  local cp; cp=$(classpath)
  local port cport
  port=$(free_port); cport=$(free_port)
  while [[ "$cport" == "$port" ]]; do cport=$(free_port); done
  # log.retention.ms=-1: tests write messages with timestamps from the past (seek by time);
  # with the default 7-day retention the broker's check, every 5 minutes, deleted them under a
  # running test.
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$cport
log.dirs=$dir/data
num.partitions=${KAFKA_PARTITIONS:-1}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.flush.interval.messages=9223372036854775807
log.retention.ms=-1
${KAFKA_EXTRA_PROPS:-}
PROPS
  local java=(java ${KAFKA_HEAP:--Xmx512m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1
              -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$cp")
  local id; id=$("${java[@]}" kafka.tools.StorageTool random-uuid 2>"$dir/format.log")
  "${java[@]}" kafka.tools.StorageTool format --standalone -t "$id" \
      -c "$dir/server.properties" >>"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "formatting storage failed"; }
  echo "127.0.0.1:$port" >"$dir/bootstrap"
  launch "$dir"
}

# Run the broker of DIR (configured and formatted) and wait until it answers.
launch() {
  local dir=$1
  local cp; cp=$(classpath)
  local port; port=$(sed 's/.*://' "$dir/bootstrap")
  local java=(java ${KAFKA_HEAP:--Xmx512m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1
              -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$cp")
  # setsid: the broker gets its own process group, so stop can end it and nothing else.
  setsid "${java[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/broker.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/pid"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  until kcat -b "127.0.0.1:$port" -L -m 2 -q >/dev/null 2>&1 \
        && kcat -b "127.0.0.1:$port" -L -m 2 2>/dev/null | grep -q ' 1 brokers:'; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "broker.sh: the broker exited while starting" >&2
      return 1
    fi
    if ((SECONDS > deadline)); then
      echo "broker.sh: the broker did not answer within ${KAFKA_START_TIMEOUT:-120}s" >&2
      return 1
    fi
    sleep 0.5
  done
  echo "127.0.0.1:$port"
}

stop() {
  local dir=$1
  if [[ -f "$dir/pid" ]]; then
    local pid; pid=$(cat "$dir/pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      local i
      for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
    fi
  fi
  rm -rf "$dir"
}

restart() {
  local dir=$1
  [[ -f "$dir/pid" && -f "$dir/bootstrap" ]] || die "no broker was started in $dir"
  local pid; pid=$(cat "$dir/pid")
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  launch "$dir" || { tail -n 30 "$dir/broker.log" >&2; die "the broker did not start again"; }
}

# Sourced (tests/kafka/cluster.sh reuses classpath, free_port and die): define, do nothing.
[[ "${BASH_SOURCE[0]}" != "$0" ]] && return 0

case "${1:-}" in
  start) [[ $# == 2 ]] || die "usage: broker.sh start DIR"; start "$2" ;;
  stop) [[ $# == 2 ]] || die "usage: broker.sh stop DIR"; stop "$2" ;;
  restart) [[ $# == 2 ]] || die "usage: broker.sh restart DIR"; restart "$2" ;;
  classpath) classpath ;;
  *) die "usage: broker.sh start DIR | stop DIR | restart DIR | classpath" ;;
esac
