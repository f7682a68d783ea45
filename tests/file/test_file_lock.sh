#!/usr/bin/env bash
# test_file_lock.sh: one writer at a time per .ss file, through the command. Two `produce` started
# together on one file (new, then existing): exactly one is refused, with a message that names the
# file and the other writer's pid, and every line of the other is in the file. Readers (consume,
# decode, verify, a follower) work while a writer holds the lock; a second writer and `repair` are
# refused meanwhile; after kill -9 of the holder a new writer opens, cuts the torn tail and
# continues the sequence numbers. Every wait is bounded (a count of short sleeps).
# usage: test_file_lock.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

N=100000
seq 1 $N | sed 's/^/a-/' >"$T/a.txt"
seq 1 $N | sed 's/^/b-/' >"$T/b.txt"
can_see_pids=0
[ -r /proc/locks ] && can_see_pids=1

alive() { kill -0 "$1" 2>/dev/null; }
# wait_gone PID TENTHS: wait until PID has exited, at most TENTHS tenths of a second.
wait_gone() {
  local i
  for ((i = 0; i < $2; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  return 1
}
# count URI: the messages in a file, read to its end.
count() { "$SS" consume -o beginning -e "$1" 2>/dev/null | wc -l; }

# race NAME FILE: start two producers of FILE together, each with N lines on stdin. Each reads a
# fifo; both fifos are held open until one producer has exited, so the other cannot have
# finished (and let go of the file) before the loser opened it: a missing lock shows as neither
# exiting. Then the winner's input ends and it must exit 0 with all its lines written.
race() {
  local name=$1 file=$2 pa pb ca cb winner loser wfile lfile i before
  before=$(count "file://$file/k")
  "$SS" consume -o beginning -e -f '%s\n' "file://$file/k" >"$T/before" 2>/dev/null
  rm -f "$T/ga" "$T/gb"
  mkfifo "$T/ga" "$T/gb"
  "$SS" produce "file://$file/k" <"$T/ga" >"$T/oa" 2>"$T/ea" &
  pa=$!
  "$SS" produce "file://$file/k" <"$T/gb" >"$T/ob" 2>"$T/eb" &
  pb=$!
  exec 3>"$T/ga" 4>"$T/gb"
  cat "$T/a.txt" >&3 2>/dev/null &
  ca=$!
  cat "$T/b.txt" >&4 2>/dev/null &
  cb=$!
  for ((i = 0; i < 300; i++)); do
    alive $pa && alive $pb || break
    sleep 0.1
  done
  # Name the winner while both fifos are still held open: once they close, the winner can read
  # its last line and exit before it is looked at, and would be taken for the loser.
  winner=
  if alive $pa && alive $pb; then
    :
  elif alive $pa; then
    winner=$pa loser=$pb wfile=a lfile=b
  else
    winner=$pb loser=$pa wfile=b lfile=a
  fi
  exec 3>&- 4>&-
  if [ -z "$winner" ]; then
    bad "$name: both writers still running after 30 s (neither was refused)"
    kill $pa $pb $ca $cb 2>/dev/null
    wait $pa $pb $ca $cb 2>/dev/null
    return
  fi
  wait $loser
  expect_status "$name: the refused writer" 1 $?
  expect_grep "$name: refusal names the file" "cannot write $file: another writer holds it" "$T/e$lfile"
  if [ $can_see_pids -eq 1 ]; then
    expect_grep "$name: refusal names the holder" "holds it \(pid $winner, seastreamer\)" "$T/e$lfile"
  fi
  if wait_gone $winner 600; then
    wait $winner
    expect_status "$name: the writer" 0 $?
  else
    bad "$name: the writer did not finish within 60 s"
    kill -9 $winner 2>/dev/null
  fi
  kill $ca $cb 2>/dev/null
  wait $ca $cb 2>/dev/null
  "$SS" verify "$file" >"$T/v" 2>&1
  expect_status "$name: verify" 0 $?
  expect_grep "$name: verify" 'sound$' "$T/v"
  # What was there, then every line of the winner in order, and nothing else.
  "$SS" consume -o beginning -e -f '%s\n' "file://$file/k" >"$T/got" 2>"$T/e"
  expect_lines "$name: count" $((before + N)) "$T/got"
  head -n "$before" "$T/got" >"$T/got-head"
  expect_same "$name: what was there" "$T/before" "$T/got-head"
  tail -n $N "$T/got" >"$T/got-tail"
  expect_same "$name: the winner's lines" "$T/$wfile.txt" "$T/got-tail"
}

# --- two writers at once: on a new file (the creation race), then on the existing file ---
race new "$T/race.ss"
expect_status "one header" 1 "$("$SS" decode "$T/race.ss" | grep -c '^# {')"
expect_status "new: count" $N "$(count "file://$T/race.ss")"
race existing "$T/race.ss"
expect_status "existing: count" $((2 * N)) "$(count "file://$T/race.ss")"
"$SS" consume -o beginning -e "file://$T/race.ss/k" 2>/dev/null | tail -n 1 >"$T/last"
expect_grep "existing: seq continues" "\| k \| $((2 * N))\] [ab]-$N$" "$T/last"

# --- readers while a writer holds the lock; the lock survives nothing: kill -9 frees it ---
F="$T/held.ss"
mkfifo "$T/gh"
"$SS" produce "file://$F/k" <"$T/gh" 2>"$T/eh" &
holder=$!
exec 5>"$T/gh"
seq 1 1000 | sed 's/^/h-/' >&5
for ((i = 0; i < 300; i++)); do
  [ "$(count "file://$F/k")" -ge 1000 ] && break
  sleep 0.1
done
expect_status "reader during a write" 1000 "$(count "file://$F/k")"
"$SS" decode "$F" >"$T/d" 2>&1
expect_status "decode during a write" 0 $?
expect_lines "decode during a write" 1001 "$T/d"
"$SS" verify "$F" >"$T/v" 2>&1
expect_status "verify during a write" 0 $?
# A follower from the beginning sees what the holder appends next (it stops at 1200, inside the
# appended part).
"$SS" consume -o beginning -c 1200 "file://$F/k" >"$T/follow" 2>"$T/ef" &
follower=$!
seq 1001 1500 | sed 's/^/h-/' >&5
if wait_gone $follower 300; then
  wait $follower
  expect_status "follower during a write" 0 $?
else
  bad "follower: not done within 30 s"
  kill $follower 2>/dev/null
fi
expect_lines "follower during a write" 1200 "$T/follow"
expect_grep "follower during a write" '\| k \| 1200\] h-1200$' "$T/follow"
# A second writer, and repair, are refused while the holder lives; neither changes the file.
size=$(stat -c %s "$F")
printf 'intruder\n' | "$SS" produce "file://$F/k" >/dev/null 2>"$T/e"
expect_status "second writer" 1 $?
expect_grep "second writer" "cannot write $F: another writer holds it" "$T/e"
[ $can_see_pids -eq 1 ] && expect_grep "second writer names the holder" "\(pid $holder, seastreamer\)" "$T/e"
"$SS" repair "$F" >/dev/null 2>"$T/e"
expect_status "repair while held" 2 $?
expect_grep "repair while held" "another writer holds it" "$T/e"
expect_status "file untouched" "$size" "$(stat -c %s "$F")"

# One more line (its frame is torn below, as a crash in the middle of a write leaves it), then
# kill -9 the holder: the kernel drops its lock.
printf 'torn\n' >&5
for ((i = 0; i < 300; i++)); do
  [ "$(count "file://$F/k")" -ge 1501 ] && break
  sleep 0.1
done
kill -9 $holder
wait $holder 2>/dev/null
exec 5>&-
truncate -s -3 "$F"
"$SS" verify "$F" >"$T/v" 2>&1
expect_status "torn after kill -9" 1 $?
expect_grep "torn after kill -9" 'torn tail' "$T/v"
seq 1 100 | sed 's/^/after-/' | "$SS" produce "file://$F/k" >/dev/null 2>"$T/e"
expect_status "writer after kill -9" 0 $?
expect_grep "writer after kill -9 cuts the torn tail" 'cutting [0-9]+ bytes after the last whole frame' "$T/e"
"$SS" verify "$F" >"$T/v" 2>&1
expect_status "verify after kill -9" 0 $?
"$SS" consume -o beginning -e "file://$F/k" >"$T/o" 2>/dev/null
expect_lines "all after kill -9" 1600 "$T/o"
expect_grep "seq continues after kill -9" '\| k \| 1600\] after-100$' "$T/o"
expect_grep "the holder's lines stay" '\| k \| 1500\] h-1500$' "$T/o"
# And repair takes the lock now that nobody holds it.
"$SS" repair "$F" >"$T/v" 2>&1
expect_status "repair when free" 0 $?

finish
