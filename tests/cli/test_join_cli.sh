#!/usr/bin/env bash
# test_join_cli.sh: `seastreamer run --join` end to end over .ss files, on every Lua built:
# interleaved files give one history in time order, the keys of one file too, a batch processor,
# an input that never delivers (the join goes on after --join-wait), a small --join-max, a late
# message (processed, reported once), and the usage errors.
# usage: test_join_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# Every command is bounded: a join that never releases is a failure, not a stuck suite.
bounded() { timeout -s KILL 60 "$@"; }

LUAS=()
[[ -x $BUILD/lua/seastreamer-run-lua5.4 ]] && LUAS+=(5.4)
[[ -x $BUILD/lua/seastreamer-run-luajit ]] && LUAS+=(luajit)
if [[ ${#LUAS[@]} -eq 0 ]]; then
  echo "no Lua runner built: skipped"
  exit 77
fi

# gen KEY FROM STEP N: stdio lines "[timestamp | KEY] n" for n = FROM, FROM+STEP, ... (N of
# them), each at n milliseconds after 2026-01-01T00:00:00.
gen() {
  awk -v key="$1" -v from="$2" -v step="$3" -v n="$4" 'BEGIN {
    for (i = 0; i < n; i++) {
      v = from + i * step
      printf "[2026-01-01T00:%02d:%02d.%03d | %s] %d\n", int(v / 60000), int(v / 1000) % 60, v % 1000, key, v
    } }'
}
# payloads FILE: the payloads of stdio output lines.
payloads() { sed 's/^\[[^]]*\] //' "$1"; }

echo 'return function(msg) return msg end' >"$T/id.lua"
cat >"$T/batch.lua" <<'EOF'
return { batch = function(b)
  local out = {}
  for i = 1, #b do out[i] = b[i] end
  return out
end }
EOF

gen k 1 3 300 | "$SS" produce "file://$T/a.ss/k"
gen k 2 3 300 | "$SS" produce "file://$T/b.ss/k"
gen k 3 3 300 | "$SS" produce "file://$T/c.ss/k"
# One file, two keys, each key's messages together: x holds the odd numbers, y the even ones.
{ gen x 1 2 100; gen y 2 2 100; } | "$SS" produce "file://$T/xy.ss"
: | "$SS" produce "file://$T/empty.ss/k" # a stream that has nothing, and never ends (no -e)
seq 1 900 >"$T/1-900"
seq 1 200 >"$T/1-200"
seq 1 2000 >"$T/1-2000"
three=(--input "file://$T/a.ss/k" --input "file://$T/b.ss/k" --input "file://$T/c.ss/k")

# Without --join, the three files come one after the other: not in time order (the check below
# can tell).
bounded "$SS" run -e "$T/id.lua" "${three[@]}" -I start=beginning -I batch=50 \
  --output stdio:///out >"$T/plain.out" 2>"$T/err"
expect_status "unjoined" 0 $?
payloads "$T/plain.out" >"$T/plain"
if cmp -s "$T/1-900" "$T/plain"; then bad "unjoined: in time order without --join"; else ok; fi
sort -n "$T/plain" >"$T/plain.sorted"
expect_same "unjoined: complete" "$T/1-900" "$T/plain.sorted"

for lua in "${LUAS[@]}"; do
  # Three interleaved files, batches of 50: one history, complete, in time order.
  bounded "$SS" run --lua "$lua" --join -e "$T/id.lua" "${three[@]}" -I start=beginning \
    -I batch=50 --output stdio:///out >"$T/join.out" 2>"$T/err"
  expect_status "$lua: join of three files" 0 $?
  payloads "$T/join.out" >"$T/join"
  expect_same "$lua: join of three files" "$T/1-900" "$T/join"
  expect_lines "$lua: join says nothing" 0 "$T/err"

  # The keys of one file: x's messages all come before y's in the file; joined, time order.
  bounded "$SS" run --lua "$lua" --join -e "$T/id.lua" --input "file://$T/xy.ss/x,y" \
    -I start=beginning --output stdio:///out >"$T/keys.out" 2>"$T/err"
  expect_status "$lua: join of two keys" 0 $?
  payloads "$T/keys.out" >"$T/keys"
  expect_same "$lua: join of two keys" "$T/1-200" "$T/keys"

  # A batch processor: runs of consecutive messages of one batch.
  bounded "$SS" run --lua "$lua" --join -e "$T/batch.lua" "${three[@]}" -I start=beginning \
    -I batch=7 --output stdio:///out >"$T/batch.out" 2>"$T/err"
  expect_status "$lua: join, batch processor" 0 $?
  payloads "$T/batch.out" >"$T/batchp"
  expect_same "$lua: join, batch processor" "$T/1-900" "$T/batchp"

  # An input that never delivers anything (a stream with nothing in it, and no -e): after
  # --join-wait the join goes on without it; -c ends the run.
  bounded "$SS" run --lua "$lua" --join --join-wait 200 -c 900 "$T/id.lua" "${three[@]}" \
    --input "file://$T/empty.ss/k" -I start=beginning --output stdio:///out \
    >"$T/stall.out" 2>"$T/err"
  expect_status "$lua: a silent input" 0 $?
  payloads "$T/stall.out" >"$T/stall"
  expect_same "$lua: a silent input" "$T/1-900" "$T/stall"
done

# A small buffer: at 10 buffered the file input pauses, the silent input holds the join back
# until --join-wait, nothing is dropped.
awk '{ printf "[2026-01-01T00:00:00.000 | k] %d\n", $1 }' "$T/1-2000" |
  "$SS" produce "file://$T/big.ss/k"
bounded "$SS" run --join --join-wait 100 --join-max 10 -c 2000 "$T/id.lua" \
  --input "file://$T/big.ss/k" --input "file://$T/empty.ss/k" -I start=beginning -I batch=3 \
  --output stdio:///out >"$T/max.out" 2>"$T/err"
expect_status "join-max 10" 0 $?
payloads "$T/max.out" >"$T/max"
expect_same "join-max 10" "$T/1-2000" "$T/max"

# A small buffer and an input of two keys: ab.ss holds a and b in runs of 30 (a: 0, 3, 6, ...,
# b: 1, 4, 7, ...), cd.ss key d (2, 5, 8, ...). At --join-max 50 the input whose keys are both
# buffered pauses, but one that still has a silent key reads on, up to twice the bound, since only
# reading on can fill it (paused, it held the join until --join-wait ran out, each time: with a
# long wait, a hang, and then out of order). Exact, with no wait.
awk 'BEGIN { for (r = 0; r < 20; r++) for (k = 0; k < 2; k++) for (i = 0; i < 30; i++) {
  v = 3 * (r * 30 + i) + k
  printf "[2026-01-01T00:%02d:%02d.%03d | %s] %d\n", int(v / 60000), int(v / 1000) % 60, v % 1000, k ? "b" : "a", v } }' |
  "$SS" produce "file://$T/ab.ss"
gen d 2 3 600 | "$SS" produce "file://$T/cd.ss/d"
seq 0 1799 >"$T/0-1799"
bounded "$SS" run --join --join-wait 100000 --join-max 50 -e "$T/id.lua" \
  --input "file://$T/ab.ss/a,b" --input "file://$T/cd.ss/d" -I start=beginning -I batch=7 \
  --output stdio:///out >"$T/ab.out" 2>"$T/err"
expect_status "join-max 50, two keys of one input" 0 $?
payloads "$T/ab.out" >"$T/ab"
expect_same "join-max 50, two keys of one input" "$T/0-1799" "$T/ab"
expect_lines "join-max 50, two keys of one input: none late" 0 "$T/err"
# Past twice the bound (runs of 30 against --join-max 10) the join releases without waiting: no
# stall even with a long --join-wait; what comes older is late, and said so; nothing is lost.
bounded "$SS" run --join --join-wait 100000 --join-max 10 -e "$T/id.lua" \
  --input "file://$T/ab.ss/a,b" --input "file://$T/cd.ss/d" -I start=beginning -I batch=7 \
  --output stdio:///out >"$T/ab10.out" 2>"$T/err"
expect_status "join-max 10, two keys of one input" 0 $?
payloads "$T/ab10.out" | sort -n >"$T/ab10"
expect_same "join-max 10, two keys of one input: complete" "$T/0-1799" "$T/ab10"
expect_grep "join-max 10, two keys of one input: late said" '^seastreamer run: --join: [0-9]+ message\(s\) arrived older' "$T/err"

# A late message: once the 200 of xy.ss are out, the silent stream gets one from before all of
# them. It is processed (the run stops after 201) and reported once.
: | "$SS" produce "file://$T/later.ss/k"
bounded "$SS" run --join --join-wait 100 -c 201 "$T/id.lua" --input "file://$T/xy.ss/x,y" \
  --input "file://$T/later.ss/k" -I start=beginning --output stdio:///out \
  >"$T/late.out" 2>"$T/late.err" &
pid=$!
for ((i = 0; i < 300; i++)); do
  [[ $(wc -l <"$T/late.out") -ge 200 ]] && break
  sleep 0.1
done
echo '[2026-01-01T00:00:00.000 | k] late' | "$SS" produce "file://$T/later.ss/k"
wait "$pid"
expect_status "late" 0 $?
expect_lines "late" 201 "$T/late.out"
expect_line "late" 201 "[2026-01-01T00:00:00.000 | out | 200] late" "$T/late.out"
expect_grep "late: reported" '^seastreamer run: --join: 1 message\(s\) arrived older' "$T/late.err"
expect_lines "late: reported once" 1 "$T/late.err"

# Usage.
"$SS" run --help >"$T/out" 2>&1
expect_grep "help" '--join-wait MS' "$T/out"
"$SS" run --join --exactly-once "$T/id.lua" --input "file://$T/a.ss/k" --output stdio:///o \
  >/dev/null 2>"$T/err"
expect_status "join with exactly-once" 2 $?
expect_grep "join with exactly-once" '--join with --exactly-once is not supported' "$T/err"
"$SS" run --join --join-wait 0 "$T/id.lua" --input "file://$T/a.ss/k" --output stdio:///o \
  >/dev/null 2>"$T/err"
expect_status "join-wait 0" 2 $?
expect_grep "join-wait 0" '--join-wait needs a positive number' "$T/err"
"$SS" run --join-max 5 "$T/id.lua" --input "file://$T/a.ss/k" --output stdio:///o \
  >/dev/null 2>"$T/err"
expect_status "join-max without join" 2 $?
expect_grep "join-max without join" 'go with --join' "$T/err"

finish
