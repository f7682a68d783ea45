#!/usr/bin/env bash
# test_options_cli.sh: backend options as the host checks them against each plugin's declared
# table (plugin ABI 1.4), through the command as users give them (-X key=value): an unknown key
# lists every valid key of its backend; a bad value is one line naming the key, the value and what
# is allowed (range, type, words); a number past 2^64 - 1 is refused (redis once took it); the
# getters' defaults and the spellings that worked before still work; `seastreamer plugins
# --options` lists the same tables. The host refuses before the backend connects, so redis and
# kafka need no server here.
# usage: test_options_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 60"
# Nothing listens on port 1: a connect that got that far would fail another way.
REDIS=redis://127.0.0.1:1/k
KAFKA=kafka://127.0.0.1:1/t
COMMON='mode, group, timeout, reset, start, stop_at_end, batch, max_inflight, max_inflight_bytes, max_payload'

refused() { # NAME PATTERN COMMAND...: exit status 2 and one line matching PATTERN on stderr
  local name=$1 pattern=$2
  shift 2
  $TO "$SS" "$@" </dev/null >"$T/out" 2>"$T/err"
  expect_status "$name" 2 $?
  expect_grep "$name" "$pattern" "$T/err"
  expect_lines "$name: one line" 1 "$T/err"
}

# --- an unknown key lists every valid key of its backend, after the common ones ---
refused "stdio: unknown key" "^seastreamer consume: stdio: unknown option 'nosuch' \(common keys: $COMMON; stdio keys: max_line, malformed, format, template, delimiter, key_delimiter, empty, null, unbuffered\)$" \
  consume -X nosuch=1 stdio://
refused "file: unknown key" "file: unknown option 'nosuch' \(common keys: $COMMON; file keys: create, beacon_interval, size_limit, flush_interval, eos, poll_interval, on_damage, max_frame\)$" \
  consume -X nosuch=1 "file://$T/a.ss/k"
refused "mem: unknown key" "mem: unknown option 'nosuch' \(common keys: $COMMON; mem keys: capacity, fail_after, hold_receipts\)$" \
  consume -X nosuch=1 mem://x
refused "redis: unknown key" "redis: unknown option 'nosuch' \(common keys: $COMMON; redis keys: db, field, shards, sharding, maxlen, minid_age_ms, block_ms, ack, create, consumer, claim_idle_ms, reconnect_ms, pipeline, wait_replicas, wait_timeout_ms\)$" \
  consume -X nosuch=1 "$REDIS"
# kafka passes every other key to librdkafka, which knows its own; one it does not know gets the
# same line, the table's keys and what the pattern stands for.
refused "kafka: unknown key" "kafka: unknown option 'no.such.property' \(common keys: $COMMON; kafka keys: partition, auto_commit \(and librdkafka's properties: kcat -X list\)\)$" \
  consume -X no.such.property=1 "$KAFKA"
# A typo of a table key is named; the producer side is checked as well.
refused "redis: typo" "redis: unknown option 'blok_ms': did you mean 'block_ms'\?" \
  produce -X blok_ms=5 "$REDIS"
refused "file: typo, producer" "file: unknown option 'size_limt': did you mean 'size_limit'\?" \
  produce -X size_limt=5 "file://$T/a.ss/k"

# --- values out of range: the key, the value, the bound ---
refused "redis: below the minimum" "redis: option block_ms=0: below the minimum 1 ms$" \
  consume -X block_ms=0 "$REDIS"
refused "redis: above the maximum" "redis: option shards=65537: above the maximum 65536$" \
  consume -X shards=65537 "$REDIS"
refused "file: below the minimum" "file: option beacon_interval=12: below the minimum 128$" \
  produce -X beacon_interval=12 "file://$T/a.ss/k"
refused "stdio: below the minimum" "stdio: option max_line=0: below the minimum 1$" \
  consume -X max_line=0 stdio://
refused "mem: below the minimum" "mem: option capacity=0: below the minimum 1$" \
  produce -X capacity=0 mem://x/k
refused "kafka: above the maximum" "kafka: option partition=2147483648: above the maximum 2147483647$" \
  produce -X partition=2147483648 "$KAFKA"

# --- a number past 2^64 - 1: redis' own parser once wrapped it silently ---
refused "redis: u64 overflow" "redis: option maxlen=18446744073709551616: above the maximum 18446744073709551615$" \
  produce -X maxlen=18446744073709551616 "$REDIS"
refused "redis: u64 overflow, bounded key" "redis: option db=99999999999999999999999: above the maximum 1000000$" \
  consume -X db=99999999999999999999999 "$REDIS"
refused "file: u64 overflow" "file: option max_frame=18446744073709551616: above the maximum 18446744073709551615$" \
  consume -X max_frame=18446744073709551616 "file://$T/a.ss/k"

# --- not a number, not a boolean, not one of the words, too long ---
refused "redis: not a number" "redis: option pipeline=lots: expected a whole number, at least 1$" \
  produce -X pipeline=lots "$REDIS"
refused "redis: negative" "redis: option claim_idle_ms=-1: expected a number of milliseconds$" \
  consume -X claim_idle_ms=-1 "$REDIS"
refused "redis: bad bool" "redis: option create=maybe: expected true or false$" \
  consume -X create=maybe "$REDIS"
refused "stdio: bad bool" "stdio: option unbuffered=perhaps: expected true or false$" \
  consume -X unbuffered=perhaps stdio://
refused "file: bad bool" "file: option eos=nope: expected true or false$" \
  produce -X eos=nope "file://$T/a.ss/k"
refused "mem: bad bool" "mem: option hold_receipts=2: expected true or false$" \
  produce -X hold_receipts=2 mem://x/k
refused "file: bad word" "file: option create=sometimes: expected auto, new or existing$" \
  produce -X create=sometimes "file://$T/a.ss/k"
refused "stdio: bad word" "stdio: option format=xml: expected line, json or payload$" \
  consume -X format=xml stdio://
refused "redis: empty text" "redis: option field=: expected 1 to 63 bytes$" \
  consume -X field= "$REDIS"

# --- an option of the other side (kafka's table says which) ---
refused "kafka: producer key on a consumer" "kafka: option partition is for producers, not consumers" \
  consume -X partition=0 "$KAFKA"
refused "kafka: consumer key on a producer" "kafka: option auto_commit is for consumers, not producers" \
  produce -X auto_commit=false "$KAFKA"

# A text option the plugin reads as a boolean itself (option_bool on a SEA_OPT_STR key: -1).
refused "kafka: auto_commit neither a word nor a boolean" \
  "kafka: option auto_commit=maybe: expected at-most-once or false$" \
  consume -G g --mode resumable -X auto_commit=maybe "$KAFKA"
refused "kafka: auto_commit=yes is at most once by another name" \
  "kafka: option auto_commit=yes commits what was delivered, processed or not" \
  consume -G g --mode resumable -X auto_commit=yes "$KAFKA"

# --- the spellings that worked before still do, and so do the other boolean words ---
printf 'a\nb\n' | $TO "$SS" consume -e -X unbuffered=true -X format=payload -X max_line=16 \
  -f '%s\n' stdio:// >"$T/out" 2>"$T/err"
expect_status "stdio: good values" 0 $?
printf 'a\nb\n' >"$T/want"
expect_same "stdio: good values" "$T/want" "$T/out"
printf 'a\n' | $TO "$SS" consume -e -X unbuffered=yes -X null= stdio:// >"$T/out" 2>"$T/err"
expect_status "stdio: unbuffered=yes, null empty" 0 $?
printf 'x\ny\n' | $TO "$SS" produce -X eos=0 -X beacon_interval=128 -X create=new \
  "file://$T/b.ss/k" 2>"$T/err"
expect_status "file: good values" 0 $?
$TO "$SS" consume -e -o beginning -X on_damage=skip -X max_frame=64 -X poll_interval=5 \
  -f '%s\n' "file://$T/b.ss/k" >"$T/out" 2>"$T/err"
printf 'x\ny\n' >"$T/want"
expect_same "file: good values read back" "$T/want" "$T/out"
# The getters hand the plugin the value given, else the table's default: a file's header says
# which beacon interval it was created with.
$TO "$SS" decode "$T/b.ss" >"$T/out" 2>&1
expect_grep "file: beacon_interval given" '"beacon_interval":128[,}]' "$T/out"
printf 'x\n' | $TO "$SS" produce "file://$T/c.ss/k" 2>"$T/err"
$TO "$SS" decode "$T/c.ss" >"$T/out" 2>&1
expect_grep "file: beacon_interval default" '"beacon_interval":1048576[,}]' "$T/out"

# --- `seastreamer plugins --options` lists the same tables: every key the refusal names is there
# with its value, what it does, its range and default ---
$TO "$SS" plugins --options >"$T/plugins" 2>"$T/err"
expect_status "plugins --options" 0 $?
for uri in stdio:// "file://$T/a.ss/k" mem://x "$REDIS"; do
  b=${uri%%:*}
  $TO "$SS" consume -X nosuch=1 "$uri" </dev/null >/dev/null 2>"$T/err"
  keys=$(sed -n "s/.*; $b keys: \(.*\))\$/\1/p" "$T/err" | tr -d ,)
  [ -n "$keys" ] && ok || bad "plugins --options: no $b keys in the refusal"
  # The plugin's own lines: from its "loaded" line to the next unindented line.
  sed -n "/^loaded   $b /,/^[^ ]/{/^  /p}" "$T/plugins" >"$T/own"
  for k in $keys; do expect_grep "plugins --options: $b $k" "^  $k=" "$T/own"; done
  expect_lines "plugins --options: $b has no other key" "$(wc -w <<<"$keys")" "$T/own"
done
expect_grep "plugins --options: a range and a default" \
  '^  block_ms=MS  consumer: BLOCK of XREAD/XREADGROUP \(at least 1; default 500\)$' "$T/plugins"
expect_grep "plugins --options: words" '^  create=auto\|new\|existing  .*\(default auto\)$' "$T/plugins"
expect_grep "plugins --options: a side" '^  partition=N  .*\(0 to 2147483647; producers only\)$' "$T/plugins"
expect_grep "plugins --options: kafka's pass-through" \
  "^  OTHER=VALUE  librdkafka's properties: kcat -X list \(passed through\)$" "$T/plugins"
$TO "$SS" plugins --bogus >/dev/null 2>"$T/err"
expect_status "plugins --bogus" 2 $?

finish
