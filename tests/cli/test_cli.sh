#!/usr/bin/env bash
# test_cli.sh: the seastreamer command end to end over Unix pipes: relay, consume, produce,
# plugins, clock, and every bad input with its message and exit status.
# usage: test_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

# --- help and usage ---
"$SS" --help >"$T/out" 2>&1
expect_status help 0 $?
expect_grep help 'exit status' "$T/out"
for cmd in relay consume produce plugins clock; do
  for h in --help -h; do
    "$SS" $cmd $h >"$T/out" 2>&1
    expect_status "$cmd $h" 0 $?
    expect_grep "$cmd $h" "usage: seastreamer $cmd" "$T/out"
  done
done
"$SS" frobnicate >/dev/null 2>"$T/err"
expect_status unknown-command 2 $?
expect_grep unknown-command "unknown command 'frobnicate'" "$T/err"
# decode, verify and repair are the file plugin's commands (plugin ABI 1.3): listed after the
# host's own, and gone with the plugin, with an error that says where commands come from.
"$SS" --help >"$T/out" 2>&1
expect_grep "help: the file plugin's commands" "^  decode FILE +print a \.ss file" "$T/out"
expect_grep "help: the file plugin's commands" "^  repair FILE +cut the torn tail" "$T/out"
mkdir -p "$T/no-plugins"
SEASTREAMER_PLUGIN_DIR="$T/no-plugins" "$SS" --help >"$T/out" 2>&1
expect_status "help without plugins" 0 $?
if grep -q '^  decode' "$T/out"; then bad "help without plugins lists decode"; else ok; fi
SEASTREAMER_PLUGIN_DIR="$T/no-plugins" "$SS" decode x.ss >/dev/null 2>"$T/err"
expect_status "decode without the file plugin" 2 $?
expect_grep "decode without the file plugin" "unknown command 'decode': .*seastreamer plugins" "$T/err"
"$SS" consume >/dev/null 2>"$T/err"
expect_status missing-uri 2 $?
"$SS" consume -Q stdio:// >/dev/null 2>"$T/err"
expect_status unknown-flag 2 $?
expect_grep unknown-flag 'unknown option -Q' "$T/err"
"$SS" consume -c abc stdio:// >/dev/null 2>"$T/err"
expect_status bad-count 2 $?
"$SS" consume -X novalue stdio:// >/dev/null 2>"$T/err"
expect_status bad-X 2 $?
expect_grep bad-X "bad option 'novalue'" "$T/err"

# --- bad URIs and plugins ---
# a network backend's port is a number (librdkafka took "host:x" for port 0, and waited)
for u in "redis://127.0.0.1:x/k|the port 'x' of node '127.0.0.1:x' is not a number" \
  "redis://127.0.0.1:/k|node '127.0.0.1:' has ':' and no port after it"; do
  timeout 30 "$SS" consume -e "${u%%|*}" </dev/null >/dev/null 2>"$T/err"
  expect_status "port ${u%%|*}" 2 $?
  expect_grep "port ${u%%|*}" "${u#*|}" "$T/err"
done
echo hi | "$SS" produce "file://$T/two.ss/a,b" >/dev/null 2>"$T/err"
expect_status two-output-keys 2 $?
expect_grep two-output-keys "names 2 stream keys; it writes to one" "$T/err"
"$SS" consume stdio:// extra </dev/null >/dev/null 2>"$T/err"
expect_status extra-argument 2 $?
expect_grep extra-argument "unexpected argument 'extra' after the URI" "$T/err"
"$SS" consume orders </dev/null >/dev/null 2>"$T/err"
expect_status malformed-uri 2 $?
expect_grep malformed-uri "expected scheme://.*'orders'" "$T/err"
"$SS" consume nosuch:///x </dev/null >/dev/null 2>"$T/err"
expect_status unknown-scheme 3 $?
expect_grep unknown-scheme "unknown scheme 'nosuch'" "$T/err"
mkdir "$T/empty"
SEASTREAMER_PLUGIN_DIR="$T/empty" "$SS" consume stdio:///x </dev/null >/dev/null 2>"$T/err"
expect_status missing-plugin 3 $?
expect_grep missing-plugin "unknown scheme 'stdio'.*known: none" "$T/err"
"$SS" consume 'stdio:///bad!key' </dev/null >/dev/null 2>"$T/err"
expect_status invalid-key 2 $?
expect_grep invalid-key "invalid stream key 'bad!key'" "$T/err"
long=$(printf 'k%.0s' $(seq 250))
"$SS" consume "stdio:///$long" </dev/null >/dev/null 2>"$T/err"
expect_status long-key 2 $?
expect_grep long-key 'stream key of 250 bytes \(the limit is 249\)' "$T/err"
"$SS" consume "stdio:///${long:1}" </dev/null >/dev/null 2>"$T/err"
expect_status key-249 0 $?
"$SS" consume -X nosuch=1 stdio:///x </dev/null >/dev/null 2>"$T/err"
expect_status unknown-backend-option 2 $?
expect_grep unknown-backend-option "unknown option 'nosuch'" "$T/err"
"$SS" consume --mode resumable -G g stdio:///x </dev/null >/dev/null 2>"$T/err"
expect_status unsupported-mode 3 $?
expect_grep unsupported-mode 'mode=resumable: not supported by stdio' "$T/err"
"$SS" consume --mode load-balanced stdio:///x </dev/null >/dev/null 2>"$T/err"
expect_status mode-needs-group 2 $?
expect_grep mode-needs-group 'needs a group' "$T/err"
"$SS" consume -o beginning stdio:///x </dev/null >/dev/null 2>"$T/err"
expect_status start-unsupported 3 $?
expect_grep start-unsupported 'stdio cannot rewind' "$T/err"
"$SS" consume -o sideways stdio:///x </dev/null >/dev/null 2>"$T/err"
expect_status bad-start 2 $?
expect_grep bad-start 'option start=sideways' "$T/err"

# A plugin dir holding a file that is not ELF: refused with its reason, the rest still works.
mkdir "$T/plugins"
cp "$BUILD"/plugins/*.so "$T/plugins/"
echo 'not a plugin' >"$T/plugins/junk.so"
echo 'ignored: not a .so' >"$T/plugins/README"
SEASTREAMER_PLUGIN_DIR="$T/plugins" "$SS" plugins >"$T/out" 2>&1
expect_status plugins-with-junk 1 $?
expect_grep plugins-with-junk "refused +$T/plugins/junk.so: not an ELF shared object" "$T/out"
expect_grep plugins-with-junk 'loaded +stdio .*schemes: stdio' "$T/out"
if grep -q README "$T/out"; then bad "plugins: listed a non-.so file"; else ok; fi
echo hi | SEASTREAMER_PLUGIN_DIR="$T/plugins" "$SS" relay stdio:// stdio:// >"$T/out" 2>"$T/err"
expect_status relay-beside-junk 0 $?
expect_grep relay-beside-junk "^\[$TS \| broadcast \| 0\] hi$" "$T/out"
"$SS" plugins >"$T/out" 2>&1
expect_status plugins 0 $?

# --- the stdio line format through relay ---
printf 'hello\n[orders] world\n[2026-11-26T10:00:00.123 | orders | 7] timed\n[orders | 9 | 2] sharded\n[orders]   trimmed  \r\n' |
  "$SS" relay stdio:// stdio:// >"$T/out" 2>"$T/err"
expect_status relay-lines 0 $?
expect_lines relay-lines 5 "$T/out"
expect_grep relay-broadcast "^\[$TS \| broadcast \| 0\] hello$" "$T/out"
expect_grep relay-key "^\[$TS \| orders \| 0\] world$" "$T/out"
expect_grep relay-timestamp-kept '^\[2026-11-26T10:00:00.123 \| orders \| 1\] timed$' "$T/out"
expect_grep relay-counted "^\[$TS \| orders \| 2\] sharded$" "$T/out"
expect_grep relay-trimmed "^\[$TS \| orders \| 3\] trimmed$" "$T/out"

printf 'a\n[x] b\n' | "$SS" relay stdio:// stdio:///out >"$T/out" 2>"$T/err"
expect_status relay-anchored 0 $?
expect_grep relay-anchored "^\[$TS \| out \| 0\] a$" "$T/out"
expect_grep relay-anchored "^\[$TS \| out \| 1\] b$" "$T/out"

printf 'no newline at the end' | "$SS" relay stdio:// stdio:// >"$T/out" 2>"$T/err"
expect_status last-line-without-newline 0 $?
expect_grep last-line-without-newline '\] no newline at the end$' "$T/out"

# --- consume: filters by key, keeps the input's own header, formats ---
printf '[a] 1\n[b] 2\n[a | 7] 3\nall\n' | "$SS" consume stdio:///a >"$T/out" 2>"$T/err"
expect_status consume-key 0 $?
expect_lines consume-key 3 "$T/out"
expect_grep consume-key "^\[$TS \| a \| 0\] 1$" "$T/out"
expect_grep consume-keeps-seq "^\[$TS \| a \| 7\] 3$" "$T/out"
expect_grep consume-broadcast "^\[$TS \| broadcast \| 0\] all$" "$T/out"
if grep -q '\] 2$' "$T/out"; then bad "consume-key: delivered another key's message"; else ok; fi

printf '[a] 1\n[a] 2\n[a] 3\n' | "$SS" consume -c 2 stdio:///a >"$T/out" 2>"$T/err"
expect_status consume-count 0 $?
expect_lines consume-count 2 "$T/out"

printf '[a | 5] x"y\n' | "$SS" consume -J stdio:// >"$T/out" 2>"$T/err"
expect_status consume-json 0 $?
if python3 -c 'import json,sys; m=json.loads(open(sys.argv[1]).read()); assert m["stream_key"]=="a" and m["seq"]==5 and m["payload"]=="x\"y", m' "$T/out" 2>"$T/err"; then ok; else
  bad "consume-json: $(cat "$T/out" "$T/err")"
fi

printf '[a | 5] pay\n' | "$SS" consume -f '%t:%o:%s:%S\n' stdio:// >"$T/out" 2>"$T/err"
expect_status consume-format 0 $?
expect_grep consume-format '^a:5:pay:3$' "$T/out"

# --- produce ---
printf 'one\n[k2] two\n' | "$SS" produce stdio:///k1 >"$T/out" 2>"$T/err"
expect_status produce 0 $?
expect_grep produce "^\[$TS \| k1 \| 0\] one$" "$T/out"
expect_grep produce-header-key "^\[$TS \| k2 \| 0\] two$" "$T/out"
printf 'one\n' | "$SS" produce -k user-42 -X format=json stdio:///k1 >"$T/out" 2>"$T/err"
expect_status produce-key 0 $?
expect_grep produce-key '"key": ?"user-42"' "$T/out"

# --- malformed header: everything before it is delivered, then a clear error ---
printf 'ok1\n[bad key!] x\nok2\n' | "$SS" relay stdio:// stdio:// >"$T/out" 2>"$T/err"
expect_status malformed-header 2 $?
expect_grep malformed-header '\] ok1$' "$T/out"
expect_lines malformed-header 1 "$T/out"
expect_grep malformed-header 'line 2: malformed header block' "$T/err"
printf 'ok1\n[bad key!] x\nok2\n' | "$SS" relay -I malformed=pass stdio:// stdio:// >"$T/out" 2>"$T/err"
expect_status malformed-pass 0 $?
expect_lines malformed-pass 3 "$T/out"
expect_grep malformed-pass '\] \[bad key!\] x$' "$T/out"

# --- oversize payload: the earlier messages go out, then the error names the limit ---
printf 'short\n%s\nafter\n' "$(printf 'x%.0s' $(seq 50))" |
  "$SS" relay -O max_payload=20 stdio:// stdio:// >"$T/out" 2>"$T/err"
expect_status oversize 2 $?
expect_grep oversize '\] short$' "$T/out"
expect_lines oversize 1 "$T/out"
expect_grep oversize 'payload of 50 bytes exceeds max_payload \(20 bytes; the producer option max_payload raises it, -O max_payload=BYTES on the command line\)' "$T/err"

# --- closed stdout (EPIPE): the reader asked to stop; a quiet end, status 0, no crash ---
# (tests/cli/test_obs_cli.sh checks what a group commits then)
"$SS" clock -i 0 2>"$T/err" | head -n 3 >"$T/out"
st=${PIPESTATUS[0]}
expect_status epipe-clock 0 "$st"
if [ -s "$T/err" ]; then bad "epipe-clock: stderr: $(head -3 "$T/err")"; else ok; fi
expect_lines epipe-clock 3 "$T/out"
seq 1 300000 | "$SS" relay stdio:// stdio:// 2>"$T/err" | head -n 1 >/dev/null
st=${PIPESTATUS[1]}
expect_status epipe-relay 0 "$st"
if [ -s "$T/err" ]; then bad "epipe-relay: stderr: $(head -3 "$T/err")"; else ok; fi

# --- nothing lost, nothing doubled: 200,000 lines through two relays ---
seq 1 200000 >"$T/in"
"$SS" relay stdio:// stdio:///n <"$T/in" 2>"$T/err" | "$SS" relay stdio:// stdio:///m >"$T/out" 2>>"$T/err"
expect_status relay-chain 0 $?
sed 's/^\[[^]]*\] //' "$T/out" >"$T/payloads"
if cmp -s "$T/in" "$T/payloads"; then ok; else bad "relay-chain: payloads differ from the input"; fi
expect_grep relay-chain "^\[$TS \| m \| 199999\] 200000$" "$T/out"

# --- a regular file as stdin (epoll cannot watch it) ---
"$SS" relay stdio:// stdio:// <"$T/in" >"$T/out" 2>"$T/err"
expect_status stdin-regular-file 0 $?
expect_lines stdin-regular-file 200000 "$T/out"

# --- clock and a graceful stop on SIGINT ---
"$SS" clock -i 0 -n 5 >"$T/out" 2>"$T/err"
expect_status clock 0 $?
expect_lines clock 5 "$T/out"
expect_grep clock "^\[$TS \| clock \| 4\] tick 4$" "$T/out"
"$SS" clock -i 10 stdio:///t >"$T/out" 2>"$T/err" &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid
st=$?
# SIGINT ends the clock cleanly: exit 0, and what was written is whole lines.
expect_status clock-sigint 0 "$st"
if [ -s "$T/out" ] && [ "$(tail -c 1 "$T/out" | od -An -c | tr -d ' ')" = '\n' ]; then ok; else bad "clock-sigint: output not whole lines"; fi
# SIGINT while the input is still open: what was read goes out, then a clean exit 0.
mkfifo "$T/fifo"
"$SS" relay stdio:// stdio:// <"$T/fifo" >"$T/out" 2>"$T/err" &
pid=$!
exec 3>"$T/fifo"
printf 'early\n' >&3
sleep 0.3
kill -INT $pid
wait $pid
expect_status relay-sigint 0 $?
exec 3>&-
expect_grep relay-sigint '\] early$' "$T/out"

finish
