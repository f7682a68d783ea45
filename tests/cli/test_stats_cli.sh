#!/usr/bin/env bash
# test_stats_cli.sh: --stats and --stats-json on consume, produce, relay and run over .ss files and
# stdio: the last line's counts are the real counts, a file read to its end (-e) has lag 0, every
# JSON line parses and carries the keys, and bad values are usage errors.
# usage: test_stats_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 60"

# check_json NAME FILE KEY=VALUE...: every line of FILE is a JSON object with the stats keys, the
# last one (and only it) has "final": true, and its fields equal the values given (lag.N.FIELD
# reads entry N of "lag"; "lag=[]" an empty list).
check_json() {
  local name=$1 file=$2
  shift 2
  if python3 - "$file" "$@" <<'EOF' 2>"$T/pyerr"; then ok; else
import json, sys
path, wants = sys.argv[1], sys.argv[2:]
lines = open(path).read().splitlines()
assert lines, "no line"
objs = [json.loads(l) for l in lines]
need = ["time", "messages_in", "messages_out", "bytes_in", "bytes_out", "inflight", "lag", "final"]
for o in objs:
    for k in need:
        assert k in o, "no %r in %r" % (k, o)
    assert isinstance(o["lag"], list)
    for e in o["lag"]:
        assert set(["stream", "shard", "lag"]) <= set(e), e
assert objs[-1]["final"] is True, "the last line is not final"
assert not any(o["final"] for o in objs[:-1]), "a final line before the last"
last = objs[-1]
for w in wants:
    k, v = w.split("=", 1)
    got = last
    for part in k.split("."):
        got = got[int(part)] if isinstance(got, list) else got[part]
    assert json.dumps(got) == v, "%s is %s, expected %s" % (k, json.dumps(got), v)
EOF
    bad "$name: $(cat "$T/pyerr" | tail -1)"
    head -3 "$file" | sed 's/^/    /' >&2
  fi
}

seq 1 1000 >"$T/lines" # 2893 bytes of payload
F="$T/feed.ss"

# produce: stdin to a .ss file.
$TO "$SS" produce --stats-json=0.02 "file://$F/k1" <"$T/lines" >"$T/out" 2>"$T/err"
expect_status "produce --stats-json" 0 $?
check_json "produce --stats-json" "$T/err" messages_in=1000 messages_out=1000 bytes_in=2893 \
  bytes_out=2893 inflight=0 confirmed=1000 'lag=[]'

# consume the file to its end: lag 0 (bytes and messages) at the end.
$TO "$SS" consume --stats-json=0.01 -o beginning -e "file://$F" >"$T/out" 2>"$T/err"
expect_status "consume -e --stats-json" 0 $?
expect_lines "consume -e --stats-json: stdout unchanged" 1000 "$T/out"
check_json "consume -e --stats-json" "$T/err" messages_in=1000 messages_out=1000 bytes_in=2893 \
  bytes_out=2893 inflight=0 lag.0.stream='"*"' lag.0.lag=0 lag.0.lag_bytes=0

# A key of the file: the entry is the key's.
$TO "$SS" consume --stats-json -o beginning -e "file://$F/k1" >"$T/out" 2>"$T/err"
expect_status "consume -e of a key --stats-json (default interval)" 0 $?
check_json "consume -e of a key" "$T/err" messages_in=1000 lag.0.stream='"k1"' lag.0.shard=0 \
  lag.0.lag=0

# The human line.
$TO "$SS" consume --stats -o beginning -e "file://$F" >"$T/out" 2>"$T/err"
expect_status "consume -e --stats" 0 $?
expect_grep "consume -e --stats: the last line" \
  "^${TS}Z seastreamer: stats \(final\): in 1000 msgs 2893 B \([0-9.]+ msgs/s, [0-9.]+ B/s\); out 1000 msgs 2893 B \([0-9.]+ msgs/s, [0-9.]+ B/s\); inflight 0; lag \*:0 0 \(0 B\)$" \
  "$T/err"
expect_lines "consume -e --stats: one line (a run shorter than 5 s)" 1 "$T/err"

# -c: exactly those counted.
$TO "$SS" relay --stats-json=0.01 -c 10 -o beginning "file://$F" "file://$T/copy.ss/k2" \
  >"$T/out" 2>"$T/err"
expect_status "relay -c 10 --stats-json" 0 $?
check_json "relay -c 10 --stats-json" "$T/err" messages_in=10 messages_out=10 confirmed=10 \
  bytes_in=11 bytes_out=11 inflight=0

# stdio to stdio: no lag to know.
$TO "$SS" relay --stats "stdio://" "stdio:///o" <"$T/lines" >"$T/out" 2>"$T/err"
expect_status "relay stdio --stats" 0 $?
expect_lines "relay stdio --stats: stdout" 1000 "$T/out"
expect_grep "relay stdio --stats" \
  "^${TS}Z seastreamer: stats \(final\): in 1000 msgs 2893 B .*; out 1000 msgs 2893 B .*; inflight 0$" \
  "$T/err"
$TO "$SS" consume --stats-json=0.5 "stdio://" <"$T/lines" >"$T/out" 2>"$T/err"
expect_status "consume stdio --stats-json" 0 $?
check_json "consume stdio --stats-json" "$T/err" messages_in=1000 messages_out=1000 'lag=[]'

# Bad values.
for v in "--stats=0" "--stats=x" "--stats-json=-1" "--stats="; do
  $TO "$SS" consume "$v" stdio:// </dev/null >"$T/out" 2>"$T/err"
  expect_status "consume $v" 2 $?
  expect_grep "consume $v: says why" "expected a positive number of seconds" "$T/err"
done
"$SS" relay --help | grep -q -- '--stats-json\[=SECONDS\]' && ok || bad "relay --help: no --stats-json"

# run: the runner passes them to seastreamer.run (every Lua built).
for lua in lua5.4 luajit; do
  [ -x "$BUILD/lua/seastreamer-run-$lua" ] || continue
  flavour=${lua#lua}
  [ "$lua" = luajit ] || flavour=5.4
  printf 'return function(msg) return msg end\n' >"$T/id.lua"
  $TO "$SS" run --lua "$flavour" "$T/id.lua" --input "file://$F" --output "file://$T/run-$lua.ss/k3" \
    -I start=beginning -e --stats-json=0.01 >"$T/out" 2>"$T/err"
  expect_status "run ($lua) --stats-json" 0 $?
  check_json "run ($lua) --stats-json" "$T/err" messages_in=1000 messages_out=1000 confirmed=1000 \
    bytes_in=2893 bytes_out=2893 inflight=0 lag.0.lag=0 lag.0.lag_bytes=0
  $TO "$SS" run --lua "$flavour" "$T/id.lua" --input stdio:// --output stdio:///o --stats \
    <"$T/lines" >"$T/out" 2>"$T/err"
  expect_status "run ($lua) --stats over stdio" 0 $?
  expect_lines "run ($lua) --stats over stdio: stdout" 1000 "$T/out"
  expect_grep "run ($lua) --stats over stdio" \
    "^${TS}Z seastreamer: stats \(final\): in 1000 msgs 2893 B .*; out 1000 msgs 2893 B .*; inflight 0$" \
    "$T/err"
  $TO "$SS" run --lua "$flavour" "$T/id.lua" --input stdio:// --output stdio:///o --stats=0 \
    </dev/null >"$T/out" 2>"$T/err"
  expect_status "run ($lua) --stats=0" 2 $?
done

finish
