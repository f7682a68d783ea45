#!/usr/bin/env bash
# tests/redis/test_redis_cli.sh: `seastreamer produce` and `consume` against the fixture's redis-server.
# Usage: test_redis_cli.sh BUILD_DIR PORT_FILE
set -euo pipefail
build=$1
port=$(cat "$2")
ss="$build/seastreamer"
k="cli$$"
base="redis://127.0.0.1:$port"
fail=0
check() { # check NAME EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then echo "ok   $1"; else echo "FAIL $1: expected [$2], got [$3]"; fail=1; fi
}

seq 1 1000 | sed 's/^/line-/' | "$ss" produce "$base/$k"
check "xlen after produce" 1000 "$(redis-cli -p "$port" xlen "$k")"
out=$("$ss" consume -e -o beginning -f '%s\n' "$base/$k")
check "consume from beginning" "$(seq 1 1000 | sed 's/^/line-/')" "$out"
out=$("$ss" consume -e -o -3 -f '%t %s\n' "$base/$k")
check "consume the last three" "$(printf '%s line-998\n%s line-999\n%s line-1000' "$k" "$k" "$k")" "$out"
# the seq printed is (ms << 16) | id-seq of the entry id
id=$(redis-cli -p "$port" xrange "$k" - + count 1 | head -1)
ms=${id%-*}; sq=${id#*-}
out=$("$ss" consume -e -o beginning -c 1 -f '%o\n' "$base/$k")
check "seq layout" "$(( (ms << 16) | sq ))" "$out"
out=$("$ss" consume -e -G cligroup -o beginning -f '%s\n' "$base/$k" | wc -l)
check "group consume" 1000 "$out"
check "group pending after consume acked what it wrote" 0 "$(redis-cli -p "$port" xpending "$k" cligroup | head -1)"
# relay redis -> redis through a group with manual acks and a tiny output bound (the input pauses)
"$ss" relay -e -o beginning -G relaygroup -I ack=manual -O max_inflight=7 "$base/$k" "$base/$k-copy"
check "relay copies every message" 1000 "$(redis-cli -p "$port" xlen "$k-copy")"
out=$("$ss" consume -e -o beginning -f '%s\n' "$base/$k-copy")
check "relay keeps order" "$(seq 1 1000 | sed 's/^/line-/')" "$out"
check "relay acked everything" 0 "$(redis-cli -p "$port" xpending "$k" relaygroup | head -1)"
# clock to redis ends after its count (it waited forever on the open connection)
rc=0
timeout 30 "$ss" clock -i 0 -c 5 "$base/$k-clock" || rc=$?
check "clock -c 5 exits 0" 0 "$rc"
check "clock -c 5 wrote 5" 5 "$(redis-cli -p "$port" xlen "$k-clock")"
# sharded produce and consume
seq 1 90 | "$ss" produce -X shards=3 "$base/$k-sh"
check "shard 2 holds a third" 30 "$(redis-cli -p "$port" xlen "$k-sh:2")"
check "sharded consume" 90 "$("$ss" consume -e -o beginning -X shards=3 "$base/$k-sh" | wc -l)"

# Nothing is lost when a consumer stops before the end of what it read (issue 10). The default
# ack mode XACKs only what the command acknowledged (what it wrote out); a member started after it
# claims what it left pending (its process is gone), before -e reports the end.
pending() { redis-cli -p "$port" xpending "$1" "$2" | head -1; }
seq 1000 | "$ss" produce "$base/$k-stop"
out=$(timeout 60 "$ss" consume "$base/$k-stop" -G g -o beginning -c 500 -f '%s\n')
check "-G -c 500 prints 500" "$(seq 1 500)" "$out"
out=$(timeout 60 "$ss" consume "$base/$k-stop" -G g -e -f '%s\n')
check "-G -e after -c 500 prints the other 500" "$(seq 501 1000)" "$out"
check "-G: nothing pending at the end" 0 "$(pending "$k-stop" g)"
out=$(timeout 60 "$ss" consume "$base/$k-stop" --mode resumable -G r -o beginning -c 300 -f '%s\n')
check "resumable -c 300 prints 300" "$(seq 1 300)" "$out"
out=$(timeout 60 "$ss" consume "$base/$k-stop" --mode resumable -G r -e -f '%s\n')
check "resumable -e after -c 300 prints the other 700" "$(seq 301 1000)" "$out"
check "resumable: nothing pending at the end" 0 "$(pending "$k-stop" r)"
out=$(timeout 60 "$ss" consume "$base/$k-stop" -G b -o beginning -X batch=100 -c 250 -f '%s\n')
check "-X batch=100 -c 250 prints 250" "$(seq 1 250)" "$out"
out=$(timeout 60 "$ss" consume "$base/$k-stop" -G b -e -f '%s\n')
check "-e after -X batch=100 -c 250 prints the other 750" "$(seq 251 1000)" "$out"
check "batch: nothing pending at the end" 0 "$(pending "$k-stop" b)"
# at-most-once only by name: what was read and not written is gone
out=$(timeout 60 "$ss" consume "$base/$k-stop" -G amo -o beginning -X ack=at-most-once -c 500 | wc -l)
check "ack=at-most-once -c 500 prints 500" 500 "$out"
out=$(timeout 60 "$ss" consume "$base/$k-stop" -G amo -e | wc -l)
check "ack=at-most-once: the rest of the batch was acknowledged unwritten" 0 "$out"

# kill -9 of a load-balanced member while it holds entries it has not written out: its stdout
# is a FIFO that is read a line, then not until it is killed, so it stops with a batch read.
# A member started after it with -e prints, with what the first one wrote, every message.
tmp=$(mktemp -d)
cpid=
trap '[[ -n $cpid ]] && kill -9 "$cpid" 2>/dev/null; rm -rf "$tmp"' EXIT
pad=$(printf '%01000d' 0)
seq 1000 | sed "s/\$/ $pad/" | "$ss" produce "$base/$k-kill"
mkfifo "$tmp/fifo"
# (no `timeout` in between: the process killed must be the consumer itself; the trap bounds it)
"$ss" consume "$base/$k-kill" -G kg -o beginning -X batch=300 -f '%s\n' >"$tmp/fifo" &
cpid=$!
exec 3<"$tmp/fifo"
IFS= read -r -t 30 first <&3 || true
for _ in $(seq 1 300); do # until it has read a batch (bounded: 30 s)
  [[ "$(pending "$k-kill" kg)" -gt 0 ]] 2>/dev/null && break
  sleep 0.1
done
check "killed member holds pending entries" yes "$([[ "$(pending "$k-kill" kg)" -gt 0 ]] && echo yes || echo no)"
kill -9 "$cpid" 2>/dev/null || true
wait "$cpid" 2>/dev/null || true
cpid=
{ printf '%s\n' "$first"; timeout 30 cat <&3; } >"$tmp/first"
exec 3<&-
timeout 60 "$ss" consume "$base/$k-kill" -G kg -e -f '%s\n' >"$tmp/second"
echo "     (kill -9: the first member wrote $(wc -l <"$tmp/first"), the next $(wc -l <"$tmp/second"))"
check "after kill -9, nothing lost" "$(seq 1 1000)" "$(cat "$tmp/first" "$tmp/second" | cut -d' ' -f1 | grep -v '^$' | sort -n | uniq)"
check "after kill -9, nothing pending" 0 "$(pending "$k-kill" kg)"

# ack=auto is refused: it was renamed, and the message says to what
set +e
err=$("$ss" consume -e -G g "$base/$k" -X ack=auto 2>&1 >/dev/null); rc=$?
set -e
check "ack=auto exit" 2 "$rc"
[[ "$err" == *"option 'ack=auto' was renamed"* && "$err" == *"ack=at-most-once"* ]] ||
  { echo "FAIL ack=auto message: $err"; fail=1; }

# SEASTREAMER_LOG=info says what connected, the group and its member, and the commits
err=$(SEASTREAMER_LOG=info "$ss" consume -e -G loggroup -o beginning -c 3 "$base/$k" 2>&1 >/dev/null)
[[ "$err" == *" info: redis: connected to 127.0.0.1:$port (127.0.0.1)"* ]] ||
  { echo "FAIL info log: connected: $err"; fail=1; }
[[ "$err" == *" info: redis: group 'loggroup' at 127.0.0.1:$port: member '"*"' (load-balanced) reads $k"* ]] ||
  { echo "FAIL info log: group: $err"; fail=1; }
[[ "$err" == *" info: redis: commit: acknowledging 3 entries of group 'loggroup' (XACK)"* ]] ||
  { echo "FAIL info log: commit: $err"; fail=1; }
# -v is SEASTREAMER_LOG=info, -q errors only
err=$("$ss" consume -v -e -o beginning -c 1 "$base/$k" 2>&1 >/dev/null)
[[ "$err" == *" info: redis: connected to 127.0.0.1:$port (127.0.0.1)"* ]] ||
  { echo "FAIL -v: connected: $err"; fail=1; }
err=$(SEASTREAMER_LOG=info "$ss" consume -q -e -o beginning -c 1 "$base/$k" 2>&1 >/dev/null)
check "-q: nothing on stderr" "" "$err"

# bad input: exit status and a message naming what was wrong
set +e
err=$("$ss" consume -e -o beginning "redis://127.0.0.1:$port/$k" -X nosuch=1 2>&1 >/dev/null); rc=$?
check "unknown option exit" 2 "$rc"
[[ "$err" == *"redis: unknown option 'nosuch' (common keys: mode, group, "*"; redis keys: db, field, shards, "* ]] ||
  { echo "FAIL message: $err"; fail=1; }
# a typo: the nearest key, common or redis's own
err=$("$ss" consume -e -X shard=3 "$base/$k" 2>&1 >/dev/null); rc=$?
check "typo exit" 2 "$rc"
[[ "$err" == *"unknown option 'shard': did you mean 'shards'?"* ]] || { echo "FAIL typo: $err"; fail=1; }
err=$("$ss" consume -e -X strat=beginning "$base/$k" 2>&1 >/dev/null)
[[ "$err" == *"unknown option 'strat': did you mean 'start'?"* ]] || { echo "FAIL typo: $err"; fail=1; }
# -p: redis reads every shard of a key; one shard is refused clearly
err=$("$ss" consume -e -p 1 "$base/$k" 2>&1 >/dev/null); rc=$?
check "-p exit" 2 "$rc"
[[ "$err" == *"-p 1: redis cannot read one shard of '$k'"* ]] || { echo "FAIL -p: $err"; fail=1; }
redis-cli -p "$port" set "$k-str" x >/dev/null
err=$(echo hi | "$ss" produce "$base/$k-str" 2>&1); rc=$?
check "wrongtype exit" 1 "$rc"
[[ "$err" == *"WRONGTYPE"* && "$err" == *"$k-str"* ]] || { echo "FAIL message: $err"; fail=1; }
set -e
exit $fail
