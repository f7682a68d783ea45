#!/usr/bin/env bash
# test_file_list.sh: `seastreamer list` (and -L) over .ss files: a file the command wrote (counts,
# seq ranges, shards, a key of the URI), the Rust- and TypeScript-written sample files against
# the figures of ss-format.md section 14, tables and -J, and the errors every backend shares
# (unknown scheme, a backend without list, usage, missing and damaged files).
# usage: test_file_list.sh BUILD_DIR DATA_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 60"

# check FILE PYTHON: the JSON document in FILE, loaded as d, passes the assertions.
check() {
  local name=$1 file=$2 code=$3
  if python3 - "$file" <<EOF; then ok; else bad "$name"; sed 's/^/    /' "$file" | head -30 >&2; fi
import json, sys
d = json.load(open(sys.argv[1]))
$code
EOF
}

# --- a file written by the command: two keys, one of them on two shards ---
F="$T/feed.ss"
seq 1 5 | $TO "$SS" produce "file://$F/orders" 2>"$T/err"
expect_status "produce orders" 0 $?
seq 1 3 | $TO "$SS" produce "file://$F/refunds" 2>"$T/err"
expect_status "produce refunds" 0 $?
# shard 7 of orders, with seq and time of its own: the stdio line form carries them, and the file
# keeps them (--keep-meta)
printf '[2026-01-02T03:04:05.006 | orders | 100 | 7] a\n[2026-01-02T03:04:06.007 | orders | 101 | 7] b\n' |
  $TO "$SS" relay --keep-meta stdio:///orders "file://$F/orders" 2>"$T/err"
expect_status "relay --keep-meta to shard 7" 0 $?

$TO "$SS" list -J "file://$F" >"$T/out" 2>"$T/err"
expect_status "list -J file" 0 $?
check "list -J: streams, shards, counts and seq ranges" "$T/out" '
assert d["backend"] == "file", d
s = {x["stream"]: x for x in d["streams"]}
assert sorted(s) == ["orders", "refunds"], s
assert s["refunds"]["messages"] == 3 and s["refunds"]["shards"] == 1, s
sh = {(x["stream"], x["shard"]): x for x in d["shards"]}
assert sh[("orders", 0)]["messages"] == 5, sh
assert (sh[("orders", 0)]["first_seq"], sh[("orders", 0)]["last_seq"]) == (1, 5), sh
assert (sh[("refunds", 0)]["first_seq"], sh[("refunds", 0)]["last_seq"]) == (1, 3), sh
o7 = sh[("orders", 7)]
assert (o7["messages"], o7["first_seq"], o7["last_seq"]) == (2, 100, 101), o7
assert (o7["first_time"], o7["last_time"]) == ("2026-01-02T03:04:05.006", "2026-01-02T03:04:06.007"), o7
assert s["orders"]["messages"] == 7 and s["orders"]["shards"] == 2, s
assert s["orders"]["first_time"] == "2026-01-02T03:04:05.006", s
for x in d["shards"]:
    assert x["bytes"] > 0 and x["first_time"] <= x["last_time"], x
assert d["groups"] == [] and d["members"] == [], d
'

# A file with no message yet (a header only): nothing, and no error.
printf '' | $TO "$SS" produce "file://$T/empty.ss/k" 2>"$T/err"
expect_status "produce nothing" 0 $?
$TO "$SS" list -J "file://$T/empty.ss" >"$T/out" 2>"$T/err"
expect_status "list an empty file" 0 $?
check "an empty file: nothing listed" "$T/out" '
assert d["streams"] == [] and d["shards"] == [], d
'
$TO "$SS" list "file://$T/empty.ss" >"$T/out" 2>"$T/err"
expect_line "an empty file: the table says so" 1 "nothing to list" "$T/out"

# A key in the URI lists only that key; -L is the same command.
$TO "$SS" -L -J "file://$F/refunds" >"$T/out" 2>"$T/err"
expect_status "-L -J file/refunds" 0 $?
check "-L URI/KEY: only that key" "$T/out" '
assert [x["stream"] for x in d["streams"]] == ["refunds"], d
assert [(x["stream"], x["shard"], x["messages"]) for x in d["shards"]] == [("refunds", 0, 3)], d
'

# A key that is not in the file: the others are listed, the missing one is an error (status 2).
$TO "$SS" list -J "file://$F/refunds,nothere" >"$T/out" 2>"$T/err"
expect_status "a missing key: exit 2" 2 $?
expect_line "a missing key: named" 1 "seastreamer list: file: no stream 'nothere' in file://$F/refunds,nothere" "$T/err"
check "a missing key: the others listed" "$T/out" '
assert [x["stream"] for x in d["streams"]] == ["refunds"], d
'

# The table: a heading per kind, the columns known.
$TO "$SS" list "file://$F/refunds" >"$T/out" 2>"$T/err"
expect_status "list table" 0 $?
expect_line "table: streams heading" 1 "streams:" "$T/out"
expect_grep "table: columns" "^  STREAM +MESSAGES +SHARDS +BYTES +FIRST TIME +LAST TIME$" "$T/out"
expect_grep "table: the shard row" "^  refunds +0 +3 +[0-9]+ +1 +3 +$TS +$TS$" "$T/out"

# --- the sample files (written by the Rust crate and the TypeScript reader's tests) against
# ss-format.md section 14: count, seq range and time range of each stream; EOS not counted ---
check_sample() {
  local f=$1 want=$2
  $TO "$SS" list -J "file://$DATA/$f" >"$T/out" 2>"$T/err"
  expect_status "list $f" 0 $?
  check "list $f: streams as ss-format.md 14 says" "$T/out" "
got = sorted((x['stream'], x['shard'], x['messages'], x['first_seq'], x['last_seq'], x['first_time'], x['last_time']) for x in d['shards'])
want = sorted($want)
assert got == want, (got, want)
"
}
check_sample sample-1.ss "[('file', 0, 1, 1, 1, '2023-09-15T08:39:37.912', '2023-09-15T08:39:37.912'),
 ('breakpoint', 0, 4, 1, 4, '2023-09-15T08:39:37.917', '2023-09-15T08:39:38.493'),
 ('event', 0, 22, 1, 22, '2023-09-15T08:39:38.489', '2023-09-15T08:39:38.564')]"
check_sample consumer.ss "[('hello', 1, 100, 0, 99, '2023-08-10T16:49:14.745', '2023-08-10T16:49:14.908')]"
check_sample quicksort.ss "[('quicksort', 0, 42, 1, 42, '2023-08-11T06:28:50.440', '2023-08-11T06:28:50.659')]"

# A reader that goes away (`| head -1`): a quiet success, as consume does.
python3 -c "
for i in range(3000): print('[k%d] x' % i)" | $TO "$SS" produce "file://$T/many.ss/k0" 2>"$T/err"
expect_status "produce 3000 keys" 0 $?
$TO "$SS" list "file://$T/many.ss" 2>"$T/err" | head -1 >"$T/out"
expect_status "list | head -1: status 0" 0 "${PIPESTATUS[0]}"
[ -s "$T/err" ] && bad "list | head -1: said something: $(head -c 300 "$T/err")" || ok
expect_line "list | head -1: the first line" 1 "streams:" "$T/out"
$TO "$SS" list "file://$T/many.ss" >/dev/full 2>"$T/err"
expect_status "list >/dev/full: status 1" 1 $?
expect_grep "list >/dev/full: said why" "^seastreamer list: stdout: No space left on device$" "$T/err"

# --- errors ---
$TO "$SS" list "file://$T/missing.ss" >"$T/out" 2>"$T/err"
expect_status "missing file: exit 3 (no backend to list)" 3 $?
expect_grep "missing file: named" "^seastreamer list: file: cannot open $T/missing.ss: No such file or directory$" "$T/err"
[ -s "$T/out" ] && bad "missing file: something on stdout" || ok

head -c 100 "$F" >"$T/short.ss"
$TO "$SS" list "file://$T/short.ss" >"$T/out" 2>"$T/err"
expect_status "short file: exit 2" 2 $?
expect_grep "short file: named" "^seastreamer list: file: $T/short.ss: " "$T/err"

# A damaged frame (the first frame's key): the listing fails and says where, no partial table.
cp "$F" "$T/bad.ss"
printf 'Z' | dd of="$T/bad.ss" bs=1 seek=128 conv=notrunc 2>/dev/null
$TO "$SS" list "file://$T/bad.ss" >"$T/out" 2>"$T/err"
expect_status "damaged file: exit 2" 2 $?
expect_grep "damaged file: where" "^seastreamer list: file: $T/bad.ss: damaged at byte 128: " "$T/err"
[ -s "$T/out" ] && bad "damaged file: something on stdout" || ok

# A torn tail (the last frame cut short, as a writer mid-write leaves it): what is whole is
# listed, with a warning about the rest.
size=$(stat -c %s "$F")
head -c $((size - 3)) "$F" >"$T/torn.ss"
$TO "$SS" list -J "file://$T/torn.ss" >"$T/out" 2>"$T/err"
expect_status "torn tail: exit 0" 0 $?
check "torn tail: one message fewer" "$T/out" '
assert sum(x["messages"] for x in d["streams"]) == 9, d
'
expect_grep "torn tail: warned" "file: $T/torn.ss: the last [0-9]+ bytes are an incomplete frame" "$T/err"

$TO "$SS" list "nosuch://x/y" >"$T/out" 2>"$T/err"
expect_status "unknown scheme: exit 3" 3 $?
expect_grep "unknown scheme: named" "^seastreamer list: unknown scheme 'nosuch'" "$T/err"

$TO "$SS" list "stdio:///orders" >"$T/out" 2>"$T/err"
expect_status "stdio: exit 3" 3 $?
expect_line "stdio: not supported" 1 "seastreamer list: list is not supported by the stdio backend" "$T/err"

$TO "$SS" list >"$T/out" 2>"$T/err"
expect_status "no URI: exit 2" 2 $?
$TO "$SS" list "file://$F" extra >"$T/out" 2>"$T/err"
expect_status "two URIs: exit 2" 2 $?
expect_grep "two URIs: named" "got 'extra'" "$T/err"
$TO "$SS" list --bogus "file://$F" >"$T/out" 2>"$T/err"
expect_status "unknown option: exit 2" 2 $?
expect_grep "unknown option: named" "unknown option '--bogus'" "$T/err"
$TO "$SS" list -X timeout=soon "file://$F" >"$T/out" 2>"$T/err"
expect_status "bad timeout: exit 2" 2 $?
expect_grep "bad timeout: named" "timeout=soon" "$T/err"
$TO "$SS" list --help >"$T/out" 2>"$T/err"
expect_status "--help" 0 $?
expect_grep "--help: usage" "^usage: seastreamer list" "$T/out"
$TO "$SS" --help >"$T/out" 2>"$T/err"
expect_grep "main usage names list" "^  list URI " "$T/out"

finish
