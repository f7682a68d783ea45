#!/usr/bin/env bash
# test_file_cli.sh: `seastreamer decode|verify|repair` on the reference samples, the spec's worked
# example, damaged and torn copies; and the file:// backend through produce/consume/relay.
# usage: test_file_cli.sh BUILD_DIR DATA_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
DATA=$(cd "$2" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- the reference samples are the spec's (section 14), unchanged ---
while read -r sum name; do
  got=$(sha256sum "$DATA/$name" | cut -d' ' -f1)
  if [ "$got" == "$sum" ]; then ok; else bad "$name: sha256 $got, expected $sum"; fi
done <<'SUMS'
ef3d45be9e85df73efaaa795e85b751f324d5e569382098ac2f7094d5e7d7df6 sample-1.ss
c859d9ce99da8cdb1245d44b87729767403d8d4e68ed5c9bb2670a4685ec34b7 consumer.ss
324641d1cb934c4841576aefaf4a70d1798a95c512cf49b6494fec676bd1246b quicksort.ss
SUMS

# --- decode: the reference samples (spec section 14) ---
# a reader that goes away (| head) is a quiet success, as for consume (it was status 1)
seq 1 50000 | "$SS" produce "file://$T/many.ss/k"
"$SS" decode "$T/many.ss" 2>"$T/err" | head -1 >/dev/null
expect_status "decode | head" 0 "${PIPESTATUS[0]}"
[ -s "$T/err" ] && bad "decode | head wrote to stderr: $(head -1 "$T/err")" || ok
"$SS" decode "$DATA/consumer.ss" >"$T/c.log"
expect_status decode-consumer 0 $?
expect_lines decode-consumer 106 "$T/c.log"
expect_line decode-consumer 1 '# {"file_name":"consumer-1691686154741","created_at":"2023-08-10T16:49:14.742","beacon_interval":1024}' "$T/c.log"
expect_line decode-consumer 23 '# [{"header":{"stream_key":"hello","shard_id":1,"sequence":20,"timestamp":"2023-08-10T16:49:14.773"},"running_checksum":2887}]' "$T/c.log"
for n in 46 68 91; do expect_grep "decode-consumer-beacon-$n" '^# \[\{"header"' <(sed -n "${n}p" "$T/c.log"); done
expect_line decode-consumer 106 '[2023-08-10T16:49:14.921 | SEA_STREAMER_INTERNAL | 0 | 0] EOS' "$T/c.log"
"$SS" decode "$DATA/sample-1.ss" >"$T/s.log"
expect_lines decode-sample 29 "$T/s.log"
expect_line decode-sample 29 '[2023-09-15T08:39:38.569 | SEA_STREAMER_INTERNAL | 0 | 0] EOS' "$T/s.log"
"$SS" decode "$DATA/quicksort.ss" >"$T/q.log"
expect_lines decode-quicksort 43 "$T/q.log"
expect_line decode-quicksort 2 '[2023-08-11T06:28:50.44 | quicksort | 1 | 0] F707224 0 140702053824496 " quicksort::main"' "$T/q.log"
n=$(grep -c '<BINARY BLOB>' "$T/q.log")
expect_status decode-quicksort-binary 20 "$n"
"$SS" decode --format ndjson "$DATA/quicksort.ss" >"$T/q.nd"
n=$(grep -c '"payload":\[' "$T/q.nd")
expect_status decode-ndjson-bytes 20 "$n"
"$SS" decode --format ndjson "$DATA/sample-1.ss" >"$T/s.nd"
expect_line decode-ndjson-sorted 2 '{"header":{"stream_key":"file","shard_id":0,"sequence":1,"timestamp":"2023-09-15T08:39:37.912"},"payload":{"crate_name":"vec_map","id":1,"modified":{"nanos_since_epoch":661434645,"secs_since_epoch":1693814866},"path":"testcases/vec_map.rs"}}' "$T/s.nd"
"$SS" decode --header-only "$DATA/consumer.ss" >"$T/h.log"
expect_line decode-header-only 2 '[2023-08-10T16:49:14.745 | hello | 0 | 1]' "$T/h.log"

# --- decode: the worked example of spec 12.1, built byte by byte ---
{
  printf 'Ss\001\007demo.ss\000\000\001\213\317\345\150\000\000\000\004\000'
  head -c 104 /dev/zero
  printf '\r'
  printf '\005hello\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\001\000\000\001\213\317\345\150\001\000\000\000\002hi\327\073\r'
  printf '\005hello\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\002\000\000\001\213\317\345\150\372\000\000\000\005world\264\366\r'
} >"$T/demo.ss"
expect_status demo-size 209 "$(stat -c %s "$T/demo.ss")"
"$SS" decode "$T/demo.ss" >"$T/demo.log"
cat >"$T/demo.want" <<'EOF'
# {"file_name":"demo.ss","created_at":"2023-11-14T22:13:20.0","beacon_interval":1024}
[2023-11-14T22:13:20.001 | hello | 1 | 0] hi
[2023-11-14T22:13:20.25 | hello | 2 | 0] world
EOF
if cmp -s "$T/demo.log" "$T/demo.want"; then ok; else bad "decode demo.ss: $(cat "$T/demo.log")"; fi
"$SS" decode --format ndjson "$T/demo.ss" >"$T/demo.nd"
cat >"$T/demo.ndwant" <<'EOF'
/* {"file_name":"demo.ss","created_at":"2023-11-14T22:13:20.0","beacon_interval":1024} */
{"header":{"stream_key":"hello","shard_id":0,"sequence":1,"timestamp":"2023-11-14T22:13:20.001"},"payload":"hi"}
{"header":{"stream_key":"hello","shard_id":0,"sequence":2,"timestamp":"2023-11-14T22:13:20.25"},"payload":"world"}
EOF
if cmp -s "$T/demo.nd" "$T/demo.ndwant"; then ok; else bad "decode ndjson demo.ss: $(cat "$T/demo.nd")"; fi

# --- verify and repair ---
for f in consumer sample-1 quicksort; do
  "$SS" verify "$DATA/$f.ss" >"$T/v" 2>&1
  expect_status "verify-$f" 0 $?
  expect_grep "verify-$f" 'sound$' "$T/v"
done
# A flipped payload byte of hello-1 (the frame at 172, payload at 172 + 34).
cp "$DATA/consumer.ss" "$T/bad.ss" && chmod u+w "$T/bad.ss"
printf 'X' | dd of="$T/bad.ss" bs=1 seek=206 conv=notrunc status=none
"$SS" verify "$T/bad.ss" >"$T/v" 2>&1
expect_status verify-damaged 1 $?
expect_grep verify-damaged 'offset 172: checksum mismatch' "$T/v"
expect_grep verify-damaged 'NOT sound' "$T/v"
"$SS" decode "$T/bad.ss" >"$T/d" 2>"$T/e"
expect_status decode-damaged 1 $?
expect_lines decode-damaged 2 "$T/d"
expect_grep decode-damaged 'offset 172: checksum mismatch' "$T/e"
"$SS" repair "$T/bad.ss" >"$T/v" 2>&1
expect_status repair-damaged 1 $?
expect_grep repair-damaged 'problem\(s\) inside the file remain' "$T/v"
# A torn tail: the last 10 bytes missing.
head -c 4820 "$DATA/consumer.ss" >"$T/torn.ss"
"$SS" decode "$T/torn.ss" >"$T/d" 2>&1
expect_status decode-torn 0 $?
expect_lines decode-torn 105 "$T/d"
"$SS" verify "$T/torn.ss" >"$T/v" 2>&1
expect_status verify-torn 1 $?
expect_grep verify-torn 'offset 4774: torn tail' "$T/v"
"$SS" repair "$T/torn.ss" >"$T/v" 2>&1
expect_status repair-torn 0 $?
expect_grep repair-torn 'cut 46 bytes of a torn tail at offset 4774' "$T/v"
expect_status repair-size 4774 "$(stat -c %s "$T/torn.ss")"
"$SS" verify "$T/torn.ss" >/dev/null 2>&1
expect_status verify-repaired 0 $?
"$SS" repair "$T/torn.ss" >"$T/v" 2>&1
expect_status repair-again 0 $?
expect_grep repair-again 'nothing to repair' "$T/v"
# Not a .ss file, missing file, bad usage.
printf 'hello' >"$T/short.ss"
"$SS" verify "$T/short.ss" >/dev/null 2>"$T/e"
expect_status verify-short 2 $?
expect_grep verify-short 'shorter than the 128-byte header' "$T/e"
head -c 300 /dev/zero >"$T/zero.ss"
"$SS" decode "$T/zero.ss" >/dev/null 2>"$T/e"
expect_status decode-not-ss 2 $?
expect_grep decode-not-ss 'offset 0: bad magic' "$T/e"
"$SS" verify "$T/nope.ss" >/dev/null 2>"$T/e"
expect_status verify-missing 2 $?
expect_grep verify-missing 'cannot open' "$T/e"
# A path whose directory does not exist: nothing to reach, for a producer as for a consumer
# (exit 3, "cannot connect"), naming the file.
echo hi | "$SS" produce "file://$T/nodir/x.ss/k" 2>"$T/e"
expect_status produce-missing-dir 3 $?
expect_grep produce-missing-dir "output file://$T/nodir/x.ss/k: file: cannot open $T/nodir/x.ss: No such file or directory" "$T/e"
"$SS" consume -e "file://$T/nodir/x.ss/k" 2>"$T/e"
expect_status consume-missing-dir 3 $?
expect_grep consume-missing-dir "cannot open $T/nodir/x.ss: No such file or directory" "$T/e"
"$SS" decode --format xml "$DATA/consumer.ss" >/dev/null 2>"$T/e"
expect_status decode-bad-format 2 $?
for cmd in decode verify repair; do
  "$SS" $cmd --help >"$T/out" 2>&1
  expect_status "$cmd --help" 0 $?
  expect_grep "$cmd --help" "usage: seastreamer $cmd" "$T/out"
done

# --- the backend through the command ---
printf 'one\ntwo\nthree\n' | "$SS" produce "file://$T/feed.ss/orders" 2>"$T/e"
expect_status produce 0 $?
printf 'four\n' | "$SS" produce "file://$T/feed.ss/orders" 2>"$T/e"
expect_status produce-append 0 $?
"$SS" consume -o beginning -e "file://$T/feed.ss/orders" >"$T/o" 2>"$T/e"
expect_status consume 0 $?
expect_lines consume 4 "$T/o"
expect_grep consume '\| orders \| 4\] four$' "$T/o"
"$SS" verify "$T/feed.ss" >/dev/null 2>&1
expect_status verify-produced 0 $?
"$SS" consume -o 3 -e "file://$T/feed.ss" >"$T/o" 2>"$T/e"
expect_lines consume-from-seq 2 "$T/o"
# Relay a stdio stream into a file with a small beacon interval, then read it back whole.
seq 1 2000 | sed 's/^/[k1] line /' | "$SS" relay -O beacon_interval=1024 stdio:// "file://$T/r.ss" 2>"$T/e"
expect_status relay-in 0 $?
"$SS" verify "$T/r.ss" >"$T/v" 2>&1
expect_status verify-relayed 0 $?
"$SS" consume -o beginning -e "file://$T/r.ss" >"$T/o" 2>"$T/e"
expect_lines relay-back 2000 "$T/o"
expect_grep relay-back '\| k1 \| 2000\] line 2000$' "$T/o"
"$SS" consume -e -X colour=red "file://$T/r.ss" >/dev/null 2>"$T/e"
expect_status bad-option 2 $?
expect_grep bad-option "unknown option 'colour'" "$T/e"
"$SS" consume -o beginning -e "file://$T/bad.ss" >/dev/null 2>"$T/e"
expect_status consume-damaged 2 $?
expect_grep consume-damaged 'offset 172: checksum mismatch' "$T/e"

# -c N on a followed file that holds exactly N messages: the count ends the command (it must not
# wait for an N+1th message that never comes).
seq 1 20 | "$SS" produce -X eos=false "file://$T/c.ss/k" 2>"$T/e"
timeout 20 "$SS" consume -o beginning -c 20 -f '%s\n' "file://$T/c.ss/k" >"$T/o" 2>"$T/e"
expect_status count-exact 0 $?
expect_lines count-exact 20 "$T/o"

finish
