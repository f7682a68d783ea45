#!/usr/bin/env bash
# test_kafka_commits.sh: a Kafka to Kafka relay under a backlog commits as it goes, so a crash
# repeats about one commit interval of output, and loses nothing.
# usage: test_kafka_commits.sh BUILD_DIR BOOTSTRAP_FILE COMMIT_WATCH
#
# N messages (KAFKA_COMMITS_N, default 1,000,000) wait in a topic; a relay in a resumable group
# copies them into another topic, with an output window deep enough never to fill
# (max_inflight and librdkafka's queue.buffering.max.messages at 2,000,000), so the input never
# pauses, and commits every 100 ms. commit_watch kills it (-9) once it has seen the group's
# committed offset move to a new value twice while the output still held fewer than N. A restart
# with -e relays the rest.
# The one thing assumed of the machine is that relaying N messages takes longer than two commit
# intervals (200 ms): slower than 5,000,000 messages a second, about 6 times what one broker on
# this machine does (1,000,000 took 1.3-1.9 s). With the default interval (1 s) that margin was
# gone: a relay that drained the backlog in under 2 s failed the test 1 run in 4. The checks are:
#   - the committed offset moved twice while the relay still had a backlog (it used to move only
#     once the input paused: here, at the end of the backlog);
#   - nothing lost: every number 1..N is in the output, none three times, nothing else;
#   - the duplicates are exactly what the output held past the committed offset at the kill;
#   - they are at most what the relay wrote between the first observed commit and the kill
#     (one commit interval): the second commit covered everything the output held at the first.
set -uo pipefail
BUILD=$(cd "$1" && pwd)
B=$(cat "$2")
WATCH=$3
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
N=${KAFKA_COMMITS_N:-1000000}
run() { timeout 120 "$@"; }

id="commits-$$-$RANDOM"
in="$id-in" out="$id-out" g="$id-g"
seq 1 "$N" | run "$SS" produce "kafka://$B/$in" 2>"$T/err"
expect_status produce-backlog 0 $?

relay=(relay --mode resumable --commit-interval 100 -G "$g" -O max_inflight=2000000
  -O queue.buffering.max.messages=2000000)
uris=("kafka://$B/$in" "kafka://$B/$out")
# Started without `timeout`, so that $! is the relay itself; commit_watch bounds the wait (60 s)
# and kills it in every case, and so does the trap if this script ends first.
"$SS" "${relay[@]}" -o beginning "${uris[@]}" 2>"$T/relay.err" &
pid=$!
trap 'kill -9 "$pid" 2>/dev/null; rm -rf "$T"' EXIT
"$WATCH" kill "$B" "$g" "$in" "$out" "$N" "$pid" 2 >"$T/watch"
wrc=$?
kill -9 "$pid" 2>/dev/null # commit_watch kills it, unless it could not run at all
{ wait "$pid"; } 2>/dev/null
if [ "$wrc" -eq 0 ]; then ok; else
  case $wrc in
  1) why="the output reached $N first" ;;
  2) why="the relay ended by itself" ;;
  *) why="commit_watch status $wrc" ;;
  esac
  bad "commits-under-backlog: fewer than 2 commits seen while the relay had a backlog ($why)"
  sed 's/^/    /' "$T/watch" "$T/relay.err" | head -20 >&2
fi

# What the output holds and what the group committed, once both stopped moving (produce requests
# and a commit sent before the kill may still land).
prev=""
for _ in $(seq 1 50); do
  cur=$("$WATCH" query "$B" "$g" "$in" "$out") || cur="?"
  [ "$cur" == "$prev" ] && break
  prev=$cur
  sleep 0.2
done
read -r out_kill committed_kill <<<"$cur"
o1=$(awk '$1 == "commit" { print $3; exit }' "$T/watch")

run "$SS" "${relay[@]}" -e "${uris[@]}" 2>"$T/relay2.err"
expect_status relay-restart 0 $?

run kcat -b "$B" -C -t "$out" -o beginning -e -q -f '%s\n' >"$T/all"
total=$(wc -l <"$T/all")
sort -n "$T/all" | uniq -c >"$T/counts"
read -r distinct lost foreign thrice < <(awk -v n="$N" '
  { if ($2 >= 1 && $2 <= n && $2 == int($2)) d++; else f++; if ($1 > 2) t++ }
  END { printf "%d %d %d %d\n", d, n - d, f + 0, t + 0 }' "$T/counts")
dups=$((total - N))
echo "backlog $N; at the kill: output $out_kill, committed $committed_kill;" \
  "output at the first commit seen ${o1:-?}; duplicates $dups, lost $lost"

if [ "$lost" -eq 0 ] && [ "$foreign" -eq 0 ] && [ "$thrice" -eq 0 ]; then ok; else
  bad "nothing-lost: $lost of 1..$N missing, $foreign foreign lines, $thrice three times or more"
fi
if [ "$dups" -eq $((out_kill - committed_kill)) ]; then ok; else
  bad "duplicates: $dups, but the output held $((out_kill - committed_kill)) past the commit"
fi
if [ -n "$o1" ] && [ "$dups" -le $((out_kill - o1)) ]; then ok; else
  bad "duplicates: $dups, more than the $((out_kill - ${o1:-0})) written in the last commit interval"
fi
finish
