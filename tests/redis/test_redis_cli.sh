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
check "group pending after auto ack" 0 "$(redis-cli -p "$port" xpending "$k" cligroup | head -1)"
# relay redis -> redis through a group with manual acks and a tiny output bound (the input pauses)
"$ss" relay -e -o beginning -G relaygroup -I ack=manual -O max_inflight=7 "$base/$k" "$base/$k-copy"
check "relay copies every message" 1000 "$(redis-cli -p "$port" xlen "$k-copy")"
out=$("$ss" consume -e -o beginning -f '%s\n' "$base/$k-copy")
check "relay keeps order" "$(seq 1 1000 | sed 's/^/line-/')" "$out"
check "relay acked everything" 0 "$(redis-cli -p "$port" xpending "$k" relaygroup | head -1)"
# sharded produce and consume
seq 1 90 | "$ss" produce -X shards=3 "$base/$k-sh"
check "shard 2 holds a third" 30 "$(redis-cli -p "$port" xlen "$k-sh:2")"
check "sharded consume" 90 "$("$ss" consume -e -o beginning -X shards=3 "$base/$k-sh" | wc -l)"

# bad input: exit status and a message naming what was wrong
set +e
err=$("$ss" consume -e -o beginning "redis://127.0.0.1:$port/$k" -X nosuch=1 2>&1 >/dev/null); rc=$?
check "unknown option exit" 2 "$rc"
[[ "$err" == *"unknown option 'nosuch=1'"* ]] || { echo "FAIL message: $err"; fail=1; }
redis-cli -p "$port" set "$k-str" x >/dev/null
err=$(echo hi | "$ss" produce "$base/$k-str" 2>&1); rc=$?
check "wrongtype exit" 1 "$rc"
[[ "$err" == *"WRONGTYPE"* && "$err" == *"$k-str"* ]] || { echo "FAIL message: $err"; fail=1; }
set -e
exit $fail
