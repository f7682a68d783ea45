#!/usr/bin/env bash
# tests/crash/crash.sh: kill -9 in the middle of 100,000 messages, restart, count (issue 10).
#
#   crash.sh BUILD_DIR BACKEND MODE [BACKEND_ARG] [COMMAND...]
#
# BACKEND redis|kafka|file; MODE resumable (--mode resumable -G g) or group (-G g, load-balanced);
# BACKEND_ARG the redis port file or the kafka bootstrap file; COMMANDs any of consume relay run
# (default: all three). For each command: produce 1..N into a new stream, start the command on it
# with a new group from the beginning (consume into a file on disk; relay and run, with an
# identity Lua script, into a second stream of the same backend), kill -9 it once its output holds
# N/5 or more, restart the same command with -e (exit when caught up), then run it once more with
# -e. The checks, from the union of everything written out:
#   - nothing lost: every number 1..N is there, and nothing else is;
#   - the duplicates are bounded by what the backend still counted as not done at the kill, read
#     from the backend itself right after it: a redis group's pending entries, the file group's
#     committed position (PATH.GROUP.pos), the kafka group's committed offset. Only those may
#     come again (a message a backend was told was done must never be delivered again), and each
#     at most once more (one kill, one re-delivery);
#   - the kill landed in the middle: fewer than N written before it;
#   - after the restart the backend holds nothing as not done (no redis entry pending, the file
#     and kafka groups committed at the end), and a run after it finds nothing.
# The figures (written before the kill, the uncommitted window, the duplicates) are printed.
#
# CRASH_LUA=luajit runs `run` on LuaJIT (--lua luajit) with a processor that returns the
# message itself for payloads of odd length and its payload, a new string of the same bytes,
# for the others: both of the LuaJIT driver's ways of sending a result (through the FFI).
set -uo pipefail
BUILD=$(cd "$1" && pwd)
BACKEND=$2
MODE=$3
BACKEND_ARG=${4:-}
shift 3
[[ $# -gt 0 ]] && shift
COMMANDS=("$@")
[[ ${#COMMANDS[@]} -eq 0 ]] && COMMANDS=(consume relay run)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${CRASH_N:-100000}
K=$((N / 5))
echo 'return function(msg) return msg end' >"$T/identity.lua"
lua_opts=()
if [[ -n ${CRASH_LUA:-} ]]; then
  lua_opts=(--lua "$CRASH_LUA")
  cat >"$T/identity.lua" <<'LUA'
return function(msg)
  if msg.size % 2 == 0 then return msg.payload end
  return msg
end
LUA
fi

# uncommitted NAME GROUP: writes to $T/uncommitted the numbers the backend may deliver again to
# GROUP on NAME-in, as it stands after the kill; sets COMMITTED_DESC for the report.
uncommitted() {
  local in=$1-in g=$2
  : >"$T/uncommitted"
  case $BACKEND in
  redis)
    # XPENDING's extended form: id, consumer, idle ms, deliveries, one per line (raw output).
    redis-cli -p "$PORT" xpending "$in" "$g" - + $((N * 2)) | awk 'NR % 4 == 1' >"$T/pending.ids"
    redis-cli -p "$PORT" xrange "$in" - + | awk 'NR % 3 == 1 { id = $0 } NR % 3 == 0 { print id, $0 }' \
      >"$T/entries"
    awk 'NR == FNR { p[$1] = 1; next } ($1 in p) { print $2 }' "$T/pending.ids" "$T/entries" \
      >"$T/uncommitted"
    COMMITTED_DESC="$(wc -l <"$T/uncommitted") pending in group $g"
    ;;
  kafka)
    local c
    if ! c=$("$CRASH_KAFKA_COMMITTED" "$KB" "$g" "$in" 2>"$T/committed.err"); then
      bad "reading the committed offset of $g: $(cat "$T/committed.err")"
      c=0
    fi
    [[ $c -lt $N ]] && seq $((c + 1)) "$N" >"$T/uncommitted"
    COMMITTED_DESC="committed offset $c"
    ;;
  file)
    local c=0
    # The messages before the committed offset: those of the file cut there.
    file_committed "$T/$in.ss" "$g" "$T/cut.out" && c=$(wc -l <"$T/cut.out")
    [[ $c -lt $N ]] && seq $((c + 1)) "$N" >"$T/uncommitted"
    COMMITTED_DESC="committed offset $FILE_POS (the first $c messages)"
    ;;
  esac
}

crash_case() {
  local cmd=$1 attempt=${2:-1} t0=$SECONDS
  local name="crash-$BACKEND-$MODE-$cmd-$RUN_ID-$attempt"
  local in out g="g-$name" label="$BACKEND $MODE $cmd"
  in=$(uri "$name-in")
  out=$(uri "$name-out")
  echo "--- $label: $N messages, kill -9 at $K or more written"
  produce_seq "$N" "$in" || return
  if [[ $BACKEND == file ]]; then
    FILE_IN_N=$N
    FILE_IN_SIZE=$(stat -c %s "$T/$name-in.ss")
  fi

  local gx=() ix=() iopts=()
  case $MODE in
  resumable) gx=(--mode resumable -G "$g"); iopts=(-I mode=resumable -I "group=$g") ;;
  group) gx=(-G "$g"); iopts=(-I "group=$g") ;;
  esac
  local o
  for o in "${group_extra[@]}"; do [[ $o == -X ]] && ix+=(-I) || ix+=("$o"); done
  local first restart
  case $cmd in
  consume)
    first=("$SS" consume "${gx[@]}" "${group_extra[@]}" -o beginning -f '%s\n' "$in")
    restart=("$SS" consume "${gx[@]}" "${group_extra[@]}" -e -f '%s\n' "$in")
    ;;
  relay)
    first=("$SS" relay "${gx[@]}" "${ix[@]}" -o beginning "$in" "$out")
    restart=("$SS" relay "${gx[@]}" "${ix[@]}" -e "$in" "$out")
    ;;
  run)
    first=("$SS" run "${lua_opts[@]}" "$T/identity.lua" --input "$in" --output "$out" "${iopts[@]}"
      "${ix[@]}" -I start=beginning)
    restart=("$SS" run "${lua_opts[@]}" "$T/identity.lua" --input "$in" --output "$out"
      "${iopts[@]}" "${ix[@]}" -e)
    ;;
  esac

  # 1. Start, and kill -9 in the middle.
  RUN_CMD=("${first[@]}")
  if [[ $cmd == consume ]]; then
    run_and_kill "$label" "$T/$name.1" "$T/$name.err1" "$K" eval 'wc -l <"$T/$name.1"' || return
  else
    run_and_kill "$label" "$T/$name.1" "$T/$name.err1" "$K" stream_count "$name-out" || return
  fi

  # 2. What was written before the kill, and what the backend still counts as not done.
  local before="$T/$name.1"
  if [[ $cmd != consume ]]; then
    before="$T/$name.before"
    read_stream "$out" "$before" || return
  fi
  local written
  written=$(whole_lines "$before" | wc -l)
  # On a loaded machine one of kill_midway's slices can last long enough for the command to write
  # everything before the kill (consume from a file reads 500,000 messages in a few tens of ms):
  # such a round proves nothing, so it starts over with new streams and a new group, at most 3
  # times (the check below fails if every round did).
  if [[ $written -ge $N && $attempt -lt 3 ]]; then
    echo "    $label: all $N were written before the kill (looked at $KILLED_AT): again, with new streams"
    crash_case "$cmd" $((attempt + 1))
    return
  fi
  uncommitted "$name" "$g"
  local window
  window=$(whole_lines "$before" | only_in "$T/uncommitted" | wc -l)

  # 3. Restart with -e: it must finish, with status 0 and nothing said (an error printed on a
  #    clean exit once hid a failed final commit).
  bounded "${restart[@]}" >"$T/$name.2" 2>"$T/$name.err2"
  local st=$? restart_st
  restart_st=$st
  if [[ $st -eq 0 ]]; then ok; else
    bad "$label: the restart with -e: exit status $st: $(head -c 600 "$T/$name.err2")"
  fi
  expect_quiet "$label: the restart with -e" "$st" "$T/$name.err2"

  # 4. Count the union of everything written out.
  local outputs=("$T/$name.1" "$T/$name.2")
  if [[ $cmd != consume ]]; then
    read_stream "$out" "$T/$name.after" || return
    outputs=("$T/$name.after")
  fi
  expect_all "$label: the union of the outputs" "$N" "${outputs[@]}"
  local total=$TOTAL lost=$LOST dups=$DUPS
  if [[ $written -lt $N ]]; then ok; else
    bad "$label: all $N were written before the kill: it did not land in the middle"
  fi
  if [[ $MAXC -le 2 ]]; then ok; else
    bad "$label: a number was written $MAXC times after one kill (at most twice allowed)"
  fi
  local stray
  not_in "$T/uncommitted" <"$T/dups" >"$T/stray"
  stray=$(wc -l <"$T/stray")
  if [[ $stray -eq 0 ]]; then ok; else
    bad "$label: $stray duplicated numbers had been committed before the kill" \
      "($COMMITTED_DESC), e.g. $(head -5 "$T/stray" | tr '\n' ' ')"
  fi

  # 5. The restart committed everything it did: the backend has nothing left as not done.
  local at_kill=$COMMITTED_DESC
  uncommitted "$name" "$g"
  if [[ ! -s $T/uncommitted ]]; then ok; else
    bad "$label: after the restart with -e, $(wc -l <"$T/uncommitted") messages are not committed" \
      "($COMMITTED_DESC; numbers $(sort -n "$T/uncommitted" | head -1) to $(sort -n "$T/uncommitted" | tail -1))"
  fi

  # 6. Once more with -e: everything was done and committed, so nothing comes again. (Not after
  # a restart that failed: that is reported already, and this would only wait for the bound again.)
  local again=- restarted
  restarted=$(whole_lines "$T/$name.2" | wc -l)
  [[ $cmd != consume ]] && restarted=$((total - written))
  if [[ $restart_st -eq 0 ]]; then
    bounded "${restart[@]}" >"$T/$name.3" 2>"$T/$name.err3"
    st=$?
    if [[ $st -eq 0 ]]; then ok; else
      bad "$label: the run after the restart: exit status $st: $(head -c 600 "$T/$name.err3")"
    fi
    if [[ $cmd == consume ]]; then
      again=$(whole_lines "$T/$name.3" | wc -l)
    else
      read_stream "$out" "$T/$name.again" || return
      again=$(($(wc -l <"$T/$name.again") - total))
    fi
    if [[ $again -eq 0 ]]; then ok; else
      bad "$label: the run after the restart got $again messages again (the restart did not commit all it did)"
    fi
  fi

  echo "    $label: written before the kill $written (looked at $KILLED_AT); at the kill: $at_kill;" \
    "uncommitted window at the kill $window; restart wrote $restarted;" \
    "lost $lost; duplicates $dups; a third run got $again; $((SECONDS - t0)) s"
}

for c in "${COMMANDS[@]}"; do crash_case "$c"; done
finish
