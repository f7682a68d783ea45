#!/usr/bin/env bash
# test_metrics_cli.sh: --metrics HOST:PORT on relay, consume, produce and run: while the command
# runs, GET /metrics answers Prometheus' text format whose counters are the messages sent so far
# (the same numbers --stats-json prints at the end), by input and output, with the lag of a file
# read to its end; another path is 404; a bad address or a port in use is a usage error naming
# the option and the value, before anything is read or written.
# usage: test_metrics_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 60"
command -v curl >/dev/null || die "curl is needed (scripts/deps.sh installs it)"

# A port nobody listens on now (the kernel's pick; free again once the probe closes it).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# scrape PORT [PATH]: the body into $T/body, the status line and headers into $T/head.
scrape() {
  curl -s --max-time 5 -D "$T/head" -o "$T/body" "http://127.0.0.1:$1${2:-/metrics}"
}

# value NAME{LABELS}: the sample's value in $T/body (the whole series name, labels included).
value() {
  awk -v k="$1" '$1 == k { print $2 }' "$T/body"
}

# wait_value NAME PORT WANT: scrape until the sample has the value (at most 400 tries, 50 ms
# apart), or say what it was.
wait_value() {
  local got=""
  for _ in $(seq 1 400); do
    if scrape "$2" && got=$(value "$1") && [ "$got" = "$3" ]; then
      return 0
    fi
    sleep 0.05
  done
  echo "$1 is '$got', expected $3" >&2
  return 1
}

# wait_exit PID: wait for the command to end (at most 30 s); its status in $rc.
wait_exit() {
  for _ in $(seq 1 600); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$1" 2>/dev/null; then
    kill -9 "$1"
    bad "pid $1 did not end"
  fi
  wait "$1"
  rc=$?
}

# check_format NAME: $T/body is the text format 0.0.4: every line a HELP, a TYPE or a sample; a
# family's HELP and TYPE come once, before its samples; counters end in _total.
check_format() {
  if python3 - "$T/body" <<'EOF' 2>"$T/pyerr"; then ok; else
import re, sys
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
label = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
sample = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (-?[0-9.e+]+)$" % (name, label, label))
helps, types, seen = set(), {}, []
text = open(sys.argv[1]).read()
assert text.endswith("\n"), "no newline at the end"
for line in text.splitlines():
    if line.startswith("# HELP "):
        n = line.split(" ")[2]
        assert n not in helps, "HELP twice: " + n
        helps.add(n)
    elif line.startswith("# TYPE "):
        parts = line.split(" ")
        assert len(parts) == 4 and parts[3] in ("counter", "gauge"), line
        assert parts[2] in helps and parts[2] not in types, line
        types[parts[2]] = parts[3]
    else:
        m = sample.match(line)
        assert m, "not a sample: %r" % line
        assert m.group(1) in types, "no TYPE before " + line
        float(m.group(3))
        seen.append(m.group(1))
for n, t in types.items():
    assert t != "counter" or n.endswith("_total"), "counter without _total: " + n
assert "process_start_time_seconds" in seen
EOF
    bad "$1: $(tail -1 "$T/pyerr")"
  fi
}

F="$T/feed.ss"

# relay stdin (a fifo the test writes) to a .ss file: scraped while it runs.
P=$(free_port)
mkfifo "$T/in"
$TO "$SS" relay --metrics "127.0.0.1:$P" --stats-json=60 stdio:// "file://$F/k" <"$T/in" \
  >"$T/out" 2>"$T/err" &
pid=$!
exec 7>"$T/in"
seq 1 100 >&7 # 192 bytes
wait_value seastreamer_messages_in_total "$P" 100 && ok || bad "relay: 100 messages in"
wait_value seastreamer_output_confirmed_total'{output="0",uri="file://'"$F"'/k"}' "$P" 100 &&
  ok || bad "relay: 100 confirmed by the output"
scrape "$P"
expect_grep "relay: 200" '^HTTP/1\.[01] 200' "$T/head"
expect_grep "relay: content type" '^Content-Type: text/plain; version=0\.0\.4' "$T/head"
check_format "relay: the format"
for fam in process_start_time_seconds seastreamer_messages_in_total seastreamer_bytes_in_total \
  seastreamer_messages_out_total seastreamer_bytes_out_total seastreamer_inflight \
  seastreamer_errors_total seastreamer_input_messages_total seastreamer_output_messages_total \
  seastreamer_lag_messages; do
  expect_grep "relay: HELP $fam" "^# HELP $fam " "$T/body"
done
expect_grep "relay: a counter" '^# TYPE seastreamer_messages_out_total counter$' "$T/body"
expect_grep "relay: a gauge" '^# TYPE seastreamer_inflight gauge$' "$T/body"
[ "$(value seastreamer_bytes_in_total)" = 192 ] && ok || bad "relay: bytes in $(value seastreamer_bytes_in_total)"
[ "$(value seastreamer_messages_out_total)" = 100 ] && ok || bad "relay: messages out"
[ "$(value 'seastreamer_input_messages_total{input="0",uri="stdio://"}')" = 100 ] && ok ||
  bad "relay: input 0's messages"
[ "$(value 'seastreamer_errors_total{kind="failed"}')" = 0 ] && ok || bad "relay: failed is not 0"
[ "$(value 'seastreamer_errors_total{kind="rejected"}')" = 0 ] && ok || bad "relay: rejected is not 0"
start=$(value process_start_time_seconds)
now=$(date +%s)
python3 -c "import sys; s=float('$start'); sys.exit(0 if $now - 3600 < s <= $now + 1 else 1)" &&
  ok || bad "relay: process_start_time_seconds $start is not the last hour's (now $now)"
scrape "$P" /other
expect_grep "relay: another path is 404" '^HTTP/1\.[01] 404' "$T/head"
scrape "$P" /metrics/x
expect_grep "relay: /metrics/x is 404" '^HTTP/1\.[01] 404' "$T/head"
code=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$P/metrics")
[ "$code" = 405 ] && ok || bad "relay: POST is $code, expected 405"
# A port in use: the one the relay listens on. Nothing is read or written (stdin stays unread,
# the file is never made).
printf 'x\n' >"$T/one"
$TO "$SS" produce --metrics "127.0.0.1:$P" "file://$T/never.ss/k" <"$T/one" >"$T/out2" 2>"$T/err2"
expect_status "produce: a port in use" 2 $?
expect_grep "produce: a port in use: says so" \
  "^seastreamer produce: --metrics 127\.0\.0\.1:$P: .*[Aa]ddress already in use" "$T/err2"
[ ! -e "$T/never.ss" ] && ok || bad "produce: a port in use: the output was made"
# More messages, then the end of stdin: the counters follow, and the run ends cleanly.
seq 101 150 >&7 # 150 more bytes
wait_value seastreamer_messages_in_total "$P" 150 && ok || bad "relay: 150 messages in"
exec 7>&-
wait_exit $pid
expect_status "relay --metrics: ends with its input" 0 $rc
python3 - "$T/err" <<'EOF' && ok || bad "relay: --stats-json's last line is not 150 in and out"
import json, sys
last = json.loads(open(sys.argv[1]).read().splitlines()[-1])
assert last["messages_in"] == 150 and last["messages_out"] == 150 and last["bytes_in"] == 342, last
EOF
$TO "$SS" consume -o beginning -e "file://$F" >"$T/out" 2>"$T/err"
expect_lines "relay: the file has every message" 150 "$T/out"
if scrape "$P"; then bad "relay: still answers after it ended"; else ok; fi

# consume a .ss file to its end and go on following it: the lag of the file is 0.
# Not under timeout (which would pass Ctrl-C on twice: to the command and to its group);
# wait_exit bounds it.
P=$(free_port)
"$SS" consume --metrics "127.0.0.1:$P" -o beginning "file://$F" >"$T/out" 2>"$T/err" &
pid=$!
wait_value seastreamer_messages_in_total "$P" 150 && ok || bad "consume: 150 messages in"
wait_value 'seastreamer_lag_messages{input="0",stream="*",shard="0"}' "$P" 0 && ok ||
  bad "consume: lag 0 at the end of the file"
wait_value 'seastreamer_lag_bytes{input="0",stream="*",shard="0"}' "$P" 0 && ok ||
  bad "consume: lag_bytes 0 at the end of the file"
[ "$(value 'seastreamer_output_messages_total{output="0",uri="stdio://"}')" = 150 ] && ok ||
  bad "consume: 150 printed"
[ "$(value "seastreamer_input_bytes_total{input=\"0\",uri=\"file://$F\"}")" = 342 ] && ok ||
  bad "consume: input bytes"
check_format "consume: the format"
kill -INT $pid
wait_exit $pid
expect_status "consume --metrics: Ctrl-C" 0 $rc
expect_lines "consume: printed every message" 150 "$T/out"

# Bad addresses: a usage error that names the option and the value, before anything is read.
for a in nonsense 127.0.0.1:99999 127.0.0.1: 127.0.0.1:x :: '[::1' no.such.host.invalid:9100 \
  192.0.2.1:9100; do
  $TO "$SS" consume --metrics "$a" stdio:// <"$T/one" >"$T/out" 2>"$T/err"
  expect_status "consume --metrics '$a'" 2 $?
  grep -qF -- "--metrics $a: " "$T/err" && ok || bad "consume --metrics '$a': $(cat "$T/err")"
  expect_lines "consume --metrics '$a': nothing printed" 0 "$T/out"
done
$TO "$SS" consume --metrics </dev/null >"$T/out" 2>"$T/err"
expect_status "consume --metrics without a value" 2 $?
"$SS" relay --help | grep -q -- '--metrics HOST:PORT' && ok || bad "relay --help: no --metrics"
"$SS" consume --help | grep -q -- '--metrics HOST:PORT' && ok || bad "consume --help: no --metrics"
"$SS" produce --help | grep -q -- '--metrics HOST:PORT' && ok || bad "produce --help: no --metrics"

# run: the runner serves it too (every Lua built).
for lua in lua5.4 luajit; do
  [ -x "$BUILD/lua/seastreamer-run-$lua" ] || continue
  flavour=${lua#lua}
  [ "$lua" = luajit ] || flavour=5.4
  "$SS" run --lua "$flavour" --help | grep -q -- '--metrics HOST:PORT' && ok ||
    bad "run ($lua) --help: no --metrics"
  printf 'return function(msg) if msg.payload == "bad" then error("no") end return msg end\n' \
    >"$T/id.lua"
  P=$(free_port)
  rm -f "$T/in"
  mkfifo "$T/in"
  $TO "$SS" run --lua "$flavour" "$T/id.lua" --input stdio:// --output stdio:///o \
    --output "two=file://$T/two-$lua.ss/k" --on-error skip --metrics "127.0.0.1:$P" \
    <"$T/in" >"$T/out" 2>"$T/err" &
  pid=$!
  exec 7>"$T/in"
  { seq 1 20; echo bad; seq 21 30; } >&7
  wait_value seastreamer_messages_in_total "$P" 31 && ok || bad "run ($lua): 31 messages in"
  wait_value seastreamer_messages_confirmed_total "$P" 30 && ok || bad "run ($lua): 30 confirmed"
  [ "$(value 'seastreamer_errors_total{kind="rejected"}')" = 1 ] && ok ||
    bad "run ($lua): rejected is $(value 'seastreamer_errors_total{kind="rejected"}'), expected 1"
  [ "$(value 'seastreamer_output_messages_total{output="0",uri="stdio:///o"}')" = 30 ] && ok ||
    bad "run ($lua): output 0"
  [ "$(value "seastreamer_output_messages_total{output=\"1\",uri=\"file://$T/two-$lua.ss/k\"}")" = 0 ] &&
    ok || bad "run ($lua): output 1"
  check_format "run ($lua): the format"
  exec 7>&-
  wait_exit $pid
  expect_status "run ($lua) --metrics" 0 $rc
  expect_lines "run ($lua): stdout" 30 "$T/out"
  $TO "$SS" run --lua "$flavour" "$T/id.lua" --input stdio:// --output stdio:///o \
    --metrics 127.0.0.1:99999 <"$T/one" >"$T/out" 2>"$T/err"
  expect_status "run ($lua) --metrics 127.0.0.1:99999" 2 $?
  expect_grep "run ($lua): a bad port: names it" \
    "^seastreamer run: --metrics 127\.0\.0\.1:99999: the port '99999' is not a number" "$T/err"
  expect_lines "run ($lua): a bad port: nothing printed" 0 "$T/out"
done

finish
