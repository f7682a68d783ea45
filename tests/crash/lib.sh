# tests/crash/lib.sh: what crash.sh and stop.sh share: one backend's URIs and reads, the count of
# an output against 1..N (lost, duplicates, anything else), and a kill -9 that lands in the middle.
# Source it with BUILD set and BACKEND one of redis, kafka, file, and BACKEND_ARG the redis port
# file or the kafka bootstrap file (nothing for file). Sources tests/lib.sh (ok, bad, finish, $T).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh"

# Every command has a bound, so a hang is a failure, never a stuck suite. SIGKILL: a command that
# ignores the polite signal is still ended.
LIMIT=${CRASH_LIMIT:-60}
bounded() { timeout -s KILL "$LIMIT" "$@"; }

# A name of its own for every stream, topic, file and group, so reruns never meet old data.
RUN_ID="$$-$(date +%s)-$RANDOM"

case $BACKEND in
redis)
  PORT=$(cat "$BACKEND_ARG")
  R="redis://127.0.0.1:$PORT"
  uri() { echo "$R/$1"; }
  ;;
kafka)
  KB=$(cat "$BACKEND_ARG")
  uri() { echo "kafka://$KB/$1"; }
  ;;
file)
  uri() { echo "file://$T/$1.ss/k"; }
  ;;
*)
  echo "crash/lib.sh: unknown backend '$BACKEND'" >&2
  exit 2
  ;;
esac

# Group options: a kafka group member that was killed stays in the group until its session times
# out, and a restarted member waits for that; the broker's smallest session timeout keeps the wait
# at about 6 s instead of librdkafka's 45.
group_extra=()
[[ $BACKEND == kafka ]] && group_extra=(-X session.timeout.ms=6000)

# produce_seq N URI: the numbers 1..N, one message each, and every one confirmed.
produce_seq() {
  seq 1 "$1" | bounded "$SS" produce "$2" 2>"$T/produce.err"
  local st=$?
  if [[ $st -ne 0 ]]; then
    bad "produce $1 messages to $2: exit status $st: $(head -c 400 "$T/produce.err")"
    return 1
  fi
}

# read_stream URI FILE: every payload of the stream, from the beginning, read by a realtime
# consumer (which keeps no position and disturbs no group).
read_stream() {
  bounded "$SS" consume -o beginning -e -f '%s\n' "$1" >"$2" 2>"$T/read.err"
  local st=$?
  if [[ $st -ne 0 ]]; then
    bad "reading back $1: exit status $st: $(head -c 400 "$T/read.err")"
    return 1
  fi
}

# stream_count NAME: how many messages the stream NAME holds now (a cheap look, used only to
# decide when to kill: never part of a check).
stream_count() {
  case $BACKEND in
  redis) redis-cli -p "$PORT" xlen "$1" 2>/dev/null || echo 0 ;;
  kafka)
    local line
    line=$(kcat -b "$KB" -Q -t "$1:0:-1" 2>/dev/null) || { echo 0; return; }
    echo "${line##* }"
    ;;
  file)
    # The output holds the same payloads under the same key as the input, so its size over the
    # size of one message of the input is its count (a whole-frame count: the writer writes whole
    # frames; the header makes it a slight overestimate at the start).
    local f="$T/$1.ss" sz=0
    [[ -f $f ]] && sz=$(stat -c %s "$f")
    echo $((sz * FILE_IN_N / FILE_IN_SIZE))
    ;;
  esac
}

# whole_lines FILE: FILE without an unterminated last line (a kill -9 can cut the last write of a
# line in two; a line is written out only with its newline).
whole_lines() {
  if [[ -s $1 && $(tail -c 1 "$1" | wc -l) -eq 0 ]]; then sed '$d' "$1"; else cat "$1"; fi
}

# tally N FILE...: counts the payloads of the FILEs (whole lines) against 1..N. Sets LOST, DUPS
# (sum over numbers of copies beyond the first), MAXC (most copies of one number), BAD (lines that
# are not a number in 1..N, with up to 5 of them in BAD_SAMPLE), DISTINCT, TOTAL; writes each
# duplicated number once to $T/dups and each missing one to $T/lost.
tally() {
  local n=$1 f
  shift
  local r
  r=$(for f in "$@"; do whole_lines "$f"; done | awk -v n="$n" -v dups="$T/dups" -v lost="$T/lost" '
    { total++
      if ($0 !~ /^[0-9]+$/ || $0 + 0 < 1 || $0 + 0 > n) { bad++; if (bad <= 5) sample = sample " [" $0 "]"; next }
      c[$0 + 0]++ }
    END {
      printf "" > dups; printf "" > lost
      for (i = 1; i <= n; i++) {
        if (!(i in c)) { nlost++; print i > lost; continue }
        distinct++
        if (c[i] > 1) { ndup += c[i] - 1; print i > dups }
        if (c[i] > maxc) maxc = c[i]
      }
      printf "%d %d %d %d %d %d %s\n", nlost, ndup, maxc, bad, distinct, total, sample
    }')
  read -r LOST DUPS MAXC BAD DISTINCT TOTAL BAD_SAMPLE <<<"$r"
}

# lost_sample: the first few missing numbers and how many, for a failure message.
lost_sample() { echo "$(head -5 "$T/lost" | tr '\n' ' ')... ($(wc -l <"$T/lost") missing)"; }

# expect_all NAME N FILE...: the union of the FILEs holds every number 1..N and nothing else.
# Leaves the counts of tally set.
expect_all() {
  local name=$1 n=$2
  shift 2
  tally "$n" "$@"
  if [[ $LOST -eq 0 ]]; then ok; else bad "$name: $LOST of $n lost: $(lost_sample)"; fi
  if [[ $BAD -eq 0 ]]; then ok; else bad "$name: $BAD lines that are not a number in 1..$n:$BAD_SAMPLE"; fi
}

# expect_seq NAME FROM TO FILE: FILE (whole lines) is exactly FROM..TO, in order.
expect_seq() {
  if cmp -s <(seq "$2" "$3") <(whole_lines "$4"); then ok; else
    bad "$1: expected exactly $2..$3 in order; got $(whole_lines "$4" | wc -l) lines:" \
      "$(whole_lines "$4" | head -3 | tr '\n' ' ')... $(whole_lines "$4" | tail -2 | tr '\n' ' ')"
  fi
}

# expect_quiet NAME STATUS ERRFILE: a restart that exited 0 said nothing, except the one thing
# it may say: the file backend's writer cutting the torn frame the kill left at the end of its
# output (what it must do; the lost bytes were never confirmed).
expect_quiet() {
  local rest
  rest=$(grep -Ev 'warn: file: .*: cutting [0-9]+ bytes after the last whole frame at [0-9]+$' "$3")
  if [[ $2 -eq 0 && -n $rest ]]; then
    bad "$1 exited 0 but said: $(head -c 600 <<<"$rest")"
  else ok; fi
}

# only_in FILE / not_in FILE: the lines of stdin that are (are not) lines of FILE.
only_in() { awk 'NR == FNR { s[$0] = 1; next } ($0 in s)' "$1" -; }
not_in() { awk 'NR == FNR { s[$0] = 1; next } !($0 in s)' "$1" -; }

# restart URI FILE CMD...: the restart after the kill: CMD (bounded) exits 0 and says nothing
# (but the cut of a torn frame); then the stream at URI is read into FILE. 1 if it could not be.
restart() {
  local uri=$1 file=$2 st
  shift 2
  bounded "$@" >"$T/restart.out" 2>"$T/restart.err"
  st=$?
  expect_status "the restart with -e" 0 "$st"
  expect_quiet "the restart with -e" "$st" "$T/restart.err"
  read_stream "$uri" "$file"
}

# third_run URI TOTAL CMD...: once more, after a restart that committed what it did: CMD
# (bounded) exits 0 and the stream at URI, which held TOTAL messages, gets none again. Sets
# AGAIN (how many it got).
third_run() {
  local uri=$1 total=$2
  shift 2
  bounded "$@" >"$T/third.out" 2>"$T/third.err"
  expect_status "the run after the restart" 0 $?
  AGAIN=-
  read_stream "$uri" "$T/third.stream" || return 1
  AGAIN=$(($(wc -l <"$T/third.stream") - total))
  if [[ $AGAIN -eq 0 ]]; then ok; else bad "the run after the restart wrote $AGAIN messages again"; fi
}

# file_committed FILE GROUP OUT: the payloads group GROUP had committed in the .ss file FILE (the
# messages before the byte offset in FILE.GROUP.pos, key k), into OUT (empty when none); that
# offset in FILE_POS (0 when none).
file_committed() {
  local pos=0 posf="$1.$2.pos"
  FILE_POS=0
  : >"$3"
  [[ -f $posf ]] && pos=$(tr -d '\n' <"$posf")
  if [[ ! $pos =~ ^[0-9]+$ ]]; then
    bad "$posf holds '$pos', not a byte offset: the test needs updating to its new form"
    return 1
  fi
  FILE_POS=$pos
  if ((pos > 0)); then
    head -c "$pos" "$1" >"$T/cut.ss"
    bounded "$SS" consume -o beginning -e -f '%s\n' "file://$T/cut.ss/k" >"$3" 2>/dev/null
  fi
}

# Everything started in the background is killed at exit, whatever happened (a failed check must
# not leave a follower running), and reaped: every job of this shell with all its descendants
# (read from /proc before any is killed, so a command whose `timeout` dies first is still found;
# SIGKILL also ends a process that kill_midway left stopped). Only jobs still running are
# touched, never a remembered pid that may since belong to someone else. A signal to the script
# ends it through the same path.
tree() { # PID: PID and its descendants
  local c
  echo "$1"
  for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do tree "$c"; done
}
alive() { # PID...: true if one of them runs (a zombie, dead but not yet reaped, does not)
  local p st
  for p in "$@"; do
    st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    [[ ${st%% *} != Z ]] && return 0
  done
  return 1
}
kill_jobs() {
  local p i pids=()
  for p in $(jobs -p); do pids+=($(tree "$p")); done
  ((${#pids[@]})) || return 0
  kill -KILL "${pids[@]}" 2>/dev/null
  for ((i = 0; i < 100; i++)); do # bounded: 5 s
    alive "${pids[@]}" || break
    sleep 0.05
  done
  alive "${pids[@]}" && echo "crash/lib.sh: still running after SIGKILL: ${pids[*]}" >&2
  for p in $(jobs -p); do alive "$p" || wait "$p" 2>/dev/null; done
}
cleanup() {
  kill_jobs
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# child_of PID: the one child of PID (the command `timeout` started), waited for a bounded time.
child_of() {
  local i c
  for ((i = 0; i < 500; i++)); do
    c=$(cat "/proc/$1/task/$1/children" 2>/dev/null)
    c=${c%% *}
    if [[ -n $c ]]; then echo "$c"; return 0; fi
    kill -0 "$1" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

# kill_midway PID K COUNT_CMD...: lets PID run in short slices (SIGCONT, a few ms, SIGSTOP) and
# after each slice, while it is stopped, runs COUNT_CMD (10 ms slices until the output starts,
# 2 ms after). Once the output reached K/2 it stays stopped for 1.5 s once, longer than the
# documented 1 s commit interval, so that its commit timer is due when it runs again (for 20 ms,
# which leaves time for the commit to be written) and the kill finds about K/2 committed to
# resume from (nothing is asserted about when it commits: the figures are printed). Once
# COUNT_CMD prints K or more, after that pause, PID runs once more for 1 to 3 ms and gets SIGKILL
# while it runs, with its work in flight (unread replies, unconfirmed sends, a half-written
# batch), as a real crash finds it; a kill of the stopped process would find the servers caught up
# with everything it had sent. So the kill lands soon after the output reached K whatever the
# machine's speed. Returns 1 if PID ended by itself, 2 if K was not reached within 90 s.
KILLED_AT=0
# run_and_kill LABEL OUT ERR K COUNT_CMD...: starts "${RUN_CMD[@]}" in the background (bounded to
# 120 s, past kill_midway's 90), its stdout in OUT and its stderr in ERR, and kills it -9 in the
# middle (kill_midway K COUNT_CMD...). 0 once it was killed so; otherwise says why (bad) and 1.
run_and_kill() {
  local label=$1 out=$2 err=$3 k=$4 tpid pid r
  shift 4
  # timeout itself in the background (not a function, which would put a subshell between).
  timeout -s KILL 120 "${RUN_CMD[@]}" >"$out" 2>"$err" &
  tpid=$!
  if ! pid=$(child_of "$tpid"); then
    wait "$tpid"
    bad "$label: the command did not start: $(head -c 400 "$err")"
    return 1
  fi
  kill_midway "$pid" "$k" "$@"
  r=$?
  { wait "$tpid"; } 2>/dev/null # (timeout dies of the same signal; no "Killed" line from bash)
  if [[ $r -ne 0 ]]; then
    bad "$label: the first run $([[ $r -eq 1 ]] && echo 'ended by itself' || echo "did not write $k within 90 s")" \
      "before the kill: $(head -c 600 "$err")"
    return 1
  fi
}
kill_midway() {
  local pid=$1 k=$2 n deadline=$((SECONDS + 90)) paused=0 slice=0.01 this
  shift 2
  kill -STOP "$pid" 2>/dev/null || return 1
  while :; do
    n=$("$@")
    [[ $n =~ ^[0-9]+$ ]] || n=0
    this=$slice
    if ((n >= k / 2 && !paused)); then
      paused=1
      sleep 1.5
      this=0.02 # time for the commit (a worker thread's fsync for a file)
    elif ((n >= k)); then
      KILLED_AT=$n
      kill -CONT "$pid"
      sleep "0.00$((1 + RANDOM % 3))"
      kill -KILL "$pid"
      return 0
    fi
    ((n > 0)) && slice=0.002
    if ! kill -CONT "$pid" 2>/dev/null; then return 1; fi
    if ((SECONDS > deadline)); then kill -KILL "$pid"; return 2; fi
    sleep "$this"
    kill -STOP "$pid" 2>/dev/null || return 1
  done
}
