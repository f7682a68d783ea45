#!/usr/bin/env bash
# test_kcat_cli.sh: kcat's habits in consume and produce on the backends that need no server
# (stdio, file): -K, -D, -u, -Z, -p, -o stored, -f %K %R, -q, -v; -H and the refusals of what a
# backend cannot carry; an unknown option's suggestion; the same option letters in every command.
# Kafka's side (keys, headers, partitions, NULL payloads): tests/kafka/test_kafka_cli.sh.
# usage: test_kcat_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 60"

# --- -K: produce's stdin reader cuts key DELIM payload, consume prints key DELIM payload ---
# (consume reads stdin here: -X key_delimiter= is produce -K's reader option, the same code)
printf 'k1:v1\nnokey\nk3:a:b\n' | $TO "$SS" consume -e -X key_delimiter=: -K '\t' stdio:// \
  >"$T/out" 2>"$T/err"
expect_status "-K both ways" 0 $?
printf 'k1\tv1\n\tnokey\nk3\ta:b\n' >"$T/want"
expect_same "-K both ways" "$T/want" "$T/out"
# -Z: a key that is not set prints as NULL.
printf 'k1:v1\nnokey\n' | $TO "$SS" consume -e -Z -X key_delimiter=: -K = stdio:// >"$T/out" 2>&1
printf 'k1=v1\nNULL=nokey\n' >"$T/want"
expect_same "-K -Z" "$T/want" "$T/out"
# -J wins over -K (the key is in the JSON).
printf 'k1:v1\n' | $TO "$SS" consume -e -J -X key_delimiter=: -K = stdio:// >"$T/out" 2>&1
expect_grep "-J wins over -K" '"payload":"v1","key":"k1"}$' "$T/out"
# A multi-byte key delimiter, given with escapes.
printf 'k1\t\tv1\n' | $TO "$SS" consume -e -X 'key_delimiter=\t\t' -f '%k|%s\n' stdio:// >"$T/out" 2>&1
printf 'k1|v1\n' >"$T/want"
expect_same "-K two bytes" "$T/want" "$T/out"
# produce -K: the key reaches the output (stdio prints it in JSON), -k keys the lines without one.
printf 'k1:v1\nnokey\n' | $TO "$SS" produce -K : -k dflt stdio:// >"$T/out" 2>&1
expect_status "produce -K to stdio" 0 $?
printf 'k1:v1\nnokey\n' | $TO "$SS" relay -I key_delimiter=: -O format=json stdio:// stdio:// \
  >"$T/out" 2>&1
expect_grep "relay key_delimiter" '"payload":"v1","key":"k1"' "$T/out"
expect_grep "relay key_delimiter, no key" '"payload":"nokey"}$' "$T/out"

# --- -D: another message delimiter, both ways ---
printf 'a;b;c' | $TO "$SS" consume -e -X 'delimiter=;' -D '|' -f '%s\n' stdio:// >"$T/out" 2>&1
printf 'a\nb\nc\n' >"$T/want"
expect_same "-D in" "$T/want" "$T/out"
printf 'a\nb\n' | $TO "$SS" consume -e -D '\x00' -f '%s;' stdio:// >"$T/out" 2>&1
printf 'a;b;' >"$T/want"
expect_same "-f wins over -D" "$T/want" "$T/out"
printf 'a\nb\n' | $TO "$SS" consume -e -D '|' -K , -X key_delimiter=x stdio:// >"$T/out" 2>&1
printf ',a|,b|' >"$T/want"
expect_same "-D out" "$T/want" "$T/out"
printf 'one;two;three' | $TO "$SS" produce -D ';' "file://$T/d.ss/k" 2>"$T/err"
expect_status "produce -D" 0 $?
$TO "$SS" consume -e -o beginning -D '\t' -f '%o %s\n' "file://$T/d.ss/k" >"$T/out" 2>&1
printf '1 one\n2 two\n3 three\n' >"$T/want"
expect_same "produce -D: three messages" "$T/want" "$T/out"
# A payload holding the delimiter would be cut in two: refused, and says why.
printf 'a|b\n' | $TO "$SS" consume -e -D '|' stdio:// >"$T/out" 2>"$T/err"
expect_status "-D in a payload" 2 $?
expect_grep "-D in a payload" "holds the message delimiter \(delimiter='\|'\)" "$T/err"

# --- -u: the same bytes, each message written in its own send ---
printf 'x\ny\n' | $TO "$SS" consume -e -u -f '%s\n' stdio:// >"$T/out" 2>&1
expect_status "-u" 0 $?
printf 'x\ny\n' >"$T/want"
expect_same "-u" "$T/want" "$T/out"
# While stdin is still open, a message is on stdout (bounded wait, no timing assertion).
mkfifo "$T/fifo"
$TO "$SS" consume -u -f '%s\n' stdio:// <"$T/fifo" >"$T/live" 2>&1 &
pid=$!
exec 7>"$T/fifo"
echo first >&7
for _ in $(seq 1 200); do [ -s "$T/live" ] && break; sleep 0.05; done
expect_grep "-u: printed while stdin is open" '^first$' "$T/live"
exec 7>&-
wait $pid

# --- -f %K %R (kcat: key length or -1; payload length as 4 bytes big-endian) ---
printf 'k:abc\nnokey\n\n' | $TO "$SS" consume -e -X key_delimiter=: -f '%K %R|' stdio:// \
  | od -An -tx1 | tr -s ' \n' ' ' >"$T/out"
printf '%s' ' 31 20 00 00 00 03 7c 2d 31 20 00 00 00 05 7c 2d 31 20 00 00 00 00 7c ' >"$T/want"
expect_same "%K %R" "$T/want" "$T/out"

# An empty payload first, then the rest (a zero-length write into a buffer not made yet used to
# be taken for "out of memory").
printf '\nx\n' | $TO "$SS" consume -e -f '%s|' stdio:// >"$T/out" 2>&1
printf '|x|' >"$T/want"
expect_same "empty payload first" "$T/want" "$T/out"

# --- -o stored: a group's committed position (file keeps it in FILE.GROUP.pos) ---
seq 1 5 | $TO "$SS" produce "file://$T/g.ss/k" 2>"$T/err"
$TO "$SS" consume -G g --mode resumable -c 2 -f '%s\n' "file://$T/g.ss/k" >"$T/out" 2>&1
printf '1\n2\n' >"$T/want"
expect_same "-o stored: first part" "$T/want" "$T/out"
$TO "$SS" consume -G g --mode resumable -o stored -e -f '%s\n' "file://$T/g.ss/k" >"$T/out" 2>&1
printf '3\n4\n5\n' >"$T/want"
expect_same "-o stored: the rest" "$T/want" "$T/out"
$TO "$SS" consume -o stored -e "file://$T/g.ss/k" >"$T/out" 2>&1
expect_status "-o stored without a group" 2 $?
expect_grep "-o stored without a group" 'start=stored: the stored position is a group' "$T/out"

# --- -p: one shard (a line's header block gives file its shard) ---
printf '[2026-01-01T00:00:00 | k | 7 | 1] in-one\n[2026-01-01T00:00:00 | k | 8 | 0] in-zero\n' |
  $TO "$SS" produce "file://$T/p.ss/k" 2>"$T/err"
$TO "$SS" consume -e -o beginning -p 1 -f '%p %s\n' "file://$T/p.ss/k" >"$T/out" 2>&1
printf '1 in-one\n' >"$T/want"
expect_same "-p 1" "$T/want" "$T/out"
echo x | $TO "$SS" consume -e -p 0 stdio:///k >"$T/out" 2>&1
expect_status "-p on stdio" 2 $?
expect_grep "-p on stdio" "^seastreamer consume: -p 0: stdio cannot read one shard of 'k'" "$T/out"
$TO "$SS" consume -G g -p 0 -e "file://$T/p.ss/k" >"$T/out" 2>&1
expect_status "-p with -G" 2 $?
expect_grep "-p with -G" 'a load-balanced group \(-G\) is given its shards' "$T/out"
echo x | $TO "$SS" produce -p 1 "file://$T/p.ss/k" >"$T/out" 2>&1
expect_status "produce -p on file" 2 $?
expect_grep "produce -p on file" 'only kafka sends to a chosen partition' "$T/out"

# --- what a backend cannot carry is refused, not dropped ---
echo x | $TO "$SS" produce -H a=b "file://$T/h.ss/k" >"$T/out" 2>&1
expect_status "-H on file" 2 $?
expect_grep "-H on file" 'file does not carry -H: headers' "$T/out"
echo x | $TO "$SS" produce -K : "file://$T/h.ss/k" >"$T/out" 2>&1
expect_status "-K on file" 2 $?
expect_grep "-K on file" 'file does not carry -K: message keys' "$T/out"
echo x | $TO "$SS" produce -Z "file://$T/h.ss/k" >"$T/out" 2>&1
expect_status "-Z on file" 2 $?
expect_grep "-Z on file" 'file does not carry -Z: NULL payloads' "$T/out"

# --- bad values: clear errors, status 2 ---
check_usage() { # NAME PATTERN ARGS...: status 2 and the message
  local name=$1 pat=$2
  shift 2
  echo x | $TO "$SS" "$@" >"$T/out" 2>&1
  expect_status "$name" 2 $?
  expect_grep "$name" "$pat" "$T/out"
}
check_usage "empty -K" "-K '': the key delimiter is empty" consume -K '' stdio://
check_usage "empty -D" "-D '': the delimiter is empty" produce -D '' stdio://
check_usage "-D of two bytes" 'option delimiter=ab: expected one byte' consume -D ab stdio://
check_usage "-K bad escape" 'option key_delimiter=\\q: expected 1 to' consume -K '\q' stdio://
check_usage "-p not a number" '-p x: expected a partition \(shard\) number' consume -p x stdio://
check_usage "-p negative" '-p -1: expected a partition' produce -p -1 stdio://
check_usage "-H without =" "-H trace: expected name=value" produce -H trace stdio://
check_usage "-H without name" "-H =v: expected name=value" produce -H =v stdio://
check_usage "-q -v" '-q and -v contradict each other' consume -q -v stdio://
check_usage "relay -K" '-K, -D, -H, -p, -Z and -u are for consume and produce' relay -K : stdio:// stdio://
check_usage "consume -H" '-H adds headers to produced messages' consume -H a=b stdio://
check_usage "produce -u" "-u makes consume's output unbuffered" produce -u stdio://

# --- -q and -v: the log level, over SEASTREAMER_LOG ---
echo x | SEASTREAMER_LOG=info $TO "$SS" consume -e -q stdio:// >/dev/null 2>"$T/err"
expect_status "-q" 0 $?
if [ -s "$T/err" ]; then bad "-q: stderr is not empty:"; show "$T/err"; else ok; fi
echo x | $TO "$SS" consume -e -v stdio:// >/dev/null 2>"$T/err"
expect_grep "-v" ' info: stdio: reading stdin' "$T/err"
if grep -q ' debug: ' "$T/err"; then bad "-v: shows debug lines"; else ok; fi
echo x | $TO "$SS" consume -e -vv stdio:// >/dev/null 2>"$T/err"
expect_grep "-vv" ' debug: stdio: consumer open on stdio://' "$T/err"

# --- an unknown option: names it, suggests the nearest, lists the common and backend keys ---
echo x | $TO "$SS" consume -X strat=beginning stdio:// >"$T/out" 2>&1
expect_status "strat" 2 $?
expect_grep "strat" "stdio: unknown option 'strat': did you mean 'start'\? \(common keys: mode, group, timeout, reset, start, stop_at_end, batch, max_inflight, max_inflight_bytes, max_payload; stdio keys: max_line, malformed, format, template, delimiter, key_delimiter, empty, null, unbuffered\)" "$T/out"
expect_lines "strat: one line" 1 "$T/out"
$TO "$SS" consume -e -X on_damag=skip "file://$T/g.ss/k" >"$T/out" 2>&1
expect_grep "file: a backend key" "file: unknown option 'on_damag': did you mean 'on_damage'\?" "$T/out"
$TO "$SS" consume -e -X tiemout=5 "file://$T/g.ss/k" >"$T/out" 2>&1
expect_grep "file: a common key" "unknown option 'tiemout': did you mean 'timeout'\?" "$T/out"
$TO "$SS" consume -e -X zzzzzz=1 "file://$T/g.ss/k" >"$T/out" 2>&1
expect_grep "nothing near" "file: unknown option 'zzzzzz' \(common keys: " "$T/out"
# The Lua module goes through the same path (run's -I reaches the consumer's options).
if [ -x "$BUILD/lua/seastreamer-run-lua5.4" ]; then
  echo 'return function(m) end' >"$T/p.lua"
  echo x | $TO "$SS" run --lua 5.4 --input stdio:// --output stdio:// -I strat=beginning "$T/p.lua" >"$T/out" 2>&1
  expect_status "run: strat" 2 $?
  expect_grep "run: strat" "unknown option 'strat': did you mean 'start'\?" "$T/out"
fi

# --- the same option letters everywhere: --opt=value, -h and --help in every command ---
for cmd in relay consume produce plugins clock decode verify repair run; do
  for h in -h --help; do
    $TO "$SS" $cmd $h >"$T/out" 2>&1
    expect_status "$cmd $h" 0 $?
    expect_grep "$cmd $h" "^usage: seastreamer $cmd" "$T/out"
  done
done
$TO "$SS" clock -i 0 -c 2 "file://$T/c.ss/k" 2>"$T/err"
expect_status "clock -c" 0 $?
$TO "$SS" decode --format=ndjson "$T/c.ss" >"$T/out" 2>&1
expect_status "decode --format=ndjson" 0 $?
expect_grep "decode --format=ndjson" '"payload":"tick 1"' "$T/out"
$TO "$SS" decode -J "$T/c.ss" >"$T/out2" 2>&1
expect_same "decode -J is --format ndjson" "$T/out" "$T/out2"
$TO "$SS" verify --bogus "$T/c.ss" >"$T/out" 2>&1
expect_status "verify --bogus" 2 $?
expect_grep "verify --bogus" "unknown option '--bogus'" "$T/out"
$TO "$SS" consume -e -o beginning --mode=realtime -c 1 -f '%s\n' "file://$T/c.ss/k" >"$T/out" 2>&1
expect_line "consume --mode=realtime" 1 "tick 0" "$T/out"
# Each letter means one thing: -c is a count, -o a start, -G a group, -e stop at the end, -q/-v
# the log level in consume, produce, relay and run (run's own table in lua/runner.c).
if [ -x "$BUILD/lua/seastreamer-run-lua5.4" ]; then
  $TO "$SS" run --lua 5.4 -q -c 1 -o beginning -e --input "file://$T/c.ss/k" --output stdio:// \
    "$T/p.lua" >"$T/out" 2>&1
  expect_status "run -q -c -o -e" 0 $?
fi
finish
