#!/usr/bin/env bash
# test_obs_cli.sh: what the command shows of itself: -J faithful for any bytes (payload_b64), a
# reader that closes the pipe (`| head -1`) ends it quietly with status 0 after committing what
# was printed, and the logs (SEASTREAMER_LOG: levels, the line format, what info and debug say).
# usage: test_obs_cli.sh BUILD_DIR
set -uo pipefail
BUILD=$(cd "$1" && pwd)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
unset SEASTREAMER_LOG
TO="timeout 60"

# --- logs: an unknown level is a usage error, whatever the command ---
for args in "consume -e stdio://" "produce stdio:///k" "plugins" "version"; do
  SEASTREAMER_LOG=verbose $TO "$SS" $args </dev/null >"$T/out" 2>"$T/err"
  expect_status "SEASTREAMER_LOG=verbose $args" 2 $?
  expect_grep "SEASTREAMER_LOG=verbose $args" \
    '^seastreamer: SEASTREAMER_LOG=verbose: unknown log level \(valid: error, warn, info, debug\)$' \
    "$T/err"
  if [ -s "$T/out" ]; then bad "SEASTREAMER_LOG=verbose $args: printed on stdout"; else ok; fi
done
SEASTREAMER_LOG=INFO $TO "$SS" version >/dev/null 2>"$T/err"
expect_status "SEASTREAMER_LOG=INFO (levels are lower case)" 2 $?
for lvl in error warn info debug ""; do
  SEASTREAMER_LOG=$lvl $TO "$SS" version >/dev/null 2>"$T/err"
  expect_status "SEASTREAMER_LOG='$lvl'" 0 $?
done

# Every log line: time (UTC, milliseconds), the command, the level, who logged it, the message.
LOGLINE="^${TS}Z seastreamer: (error|warn|info|debug): [a-z0-9_-]+: .+$"
all_log_lines() { # NAME FILE: every line of FILE is a log line
  if [ -s "$2" ] && ! grep -Evq -- "$LOGLINE" "$2"; then ok; else
    bad "$1: not every line is a log line:"
    grep -Ev -- "$LOGLINE" "$2" | head -5 | sed 's/^/    /' >&2
  fi
}

# A stdio run: quiet by default, info says what it opened and how stdin ended, debug says more.
printf 'a\nb\n' | $TO "$SS" consume stdio:///k >"$T/out" 2>"$T/err"
expect_status "stdio run, default level" 0 $?
if [ -s "$T/err" ]; then bad "stdio run, default level: logged something"; else ok; fi
printf 'a\nb\n' | SEASTREAMER_LOG=info $TO "$SS" consume stdio:///k >"$T/out" 2>"$T/err"
expect_status "stdio run, info" 0 $?
expect_lines "stdio run, info: the output is unchanged" 2 "$T/out"
all_log_lines "stdio run, info" "$T/err"
expect_grep "stdio run, info: stdin" ' info: stdio: reading stdin \(a pipe or socket\)$' "$T/err"
expect_grep "stdio run, info: stdout" ' info: stdio: writing stdout \(a file\)$' "$T/err"
expect_grep "stdio run, info: the end" ' info: stdio: stdin: end of stdin after 2 line\(s\)$' "$T/err"
if grep -q ' debug: ' "$T/err"; then bad "stdio run, info: a debug line"; else ok; fi
printf 'a\n' | SEASTREAMER_LOG=debug $TO "$SS" consume stdio:///k >"$T/out" 2>"$T/err"
expect_status "stdio run, debug" 0 $?
all_log_lines "stdio run, debug" "$T/err"
expect_grep "stdio run, debug: the consumer" \
  ' debug: stdio: consumer open on stdio:///k: mode realtime$' "$T/err"
expect_grep "stdio run, debug: the producer" ' debug: stdio: producer open on stdio://$' "$T/err"
expect_grep "stdio run, debug: the streamer" \
  ' debug: stdio: streamer for stdio:///k \(plugin stdio [0-9.]+\)$' "$T/err"
printf 'a\n' | SEASTREAMER_LOG=error $TO "$SS" consume stdio:///k >"$T/out" 2>"$T/err"
if [ -s "$T/err" ]; then bad "stdio run, error level: logged something"; else ok; fi

# A file run: info says what was created and opened, the group and where it starts, the commits.
F="$T/log.ss"
seq 1 5 | SEASTREAMER_LOG=info $TO "$SS" produce "file://$F/k" 2>"$T/err"
expect_status "file produce, info" 0 $?
all_log_lines "file produce, info" "$T/err"
expect_grep "file produce, info: created" " info: file: $F: created \(writing; lock held\)\$" "$T/err"
seq 6 7 | SEASTREAMER_LOG=info $TO "$SS" produce "file://$F/k" 2>"$T/err"
expect_grep "file produce again, info: appending" \
  " info: file: $F: opened for writing \(lock held\), appending at offset [0-9]+\$" "$T/err"
SEASTREAMER_LOG=info $TO "$SS" consume -G g --mode resumable -o beginning -e "file://$F/k" \
  >"$T/out" 2>"$T/err"
expect_status "file consume, info" 0 $?
expect_lines "file consume, info: the output" 7 "$T/out"
all_log_lines "file consume, info" "$T/err"
expect_grep "file consume, info: the group" \
  " info: file: $F: opened for reading, group g \(resumable\), starting at offset 128\$" "$T/err"
expect_grep "file consume, info: the commit" " info: file: committed offset [0-9]+ to $F\.g\.pos\$" \
  "$T/err"
seq 8 8 | $TO "$SS" produce "file://$F/k" 2>/dev/null
SEASTREAMER_LOG=debug $TO "$SS" consume -G g --mode resumable -e "file://$F/k" >"$T/out" 2>"$T/err"
expect_status "file consume again, debug" 0 $?
expect_lines "file consume again, debug: only the new message" 1 "$T/out"
all_log_lines "file consume again, debug" "$T/err"
expect_grep "file consume again, debug: resumes" \
  " info: file: $F: opened for reading, group g \(resumable\), resuming at its committed offset" \
  "$T/err"
expect_grep "file consume again, debug: the consumer" \
  " debug: file: consumer open on file://$F/k: mode resumable, group g\$" "$T/err"

# --- a reader that closes the pipe: status 0, nothing on stderr ---
seq 1 200000 | $TO "$SS" consume stdio:///k 2>"$T/err" | head -1 >"$T/out"
st=("${PIPESTATUS[@]}")
expect_status "stdio consume | head -1" 0 "${st[1]}"
expect_lines "stdio consume | head -1: the line" 1 "$T/out"
if [ -s "$T/err" ]; then bad "stdio consume | head -1: stderr: $(head -3 "$T/err")"; else ok; fi
$TO "$SS" clock -i 1 2>"$T/err" | head -1 >"$T/out"
st=("${PIPESTATUS[@]}")
expect_status "clock | head -1" 0 "${st[0]}"
if [ -s "$T/err" ]; then bad "clock | head -1: stderr: $(head -3 "$T/err")"; else ok; fi

# A group over a .ss file: quiet success, and the next consume of the group skips nothing that
# was not printed. Small messages: many fit in the pipe (written is printed, so they may be
# committed); what comes next is the rest, in order, to the end.
G="$T/group.ss"
seq 1 100000 | $TO "$SS" produce "file://$G/k" 2>/dev/null
$TO "$SS" consume -G g --mode resumable -o beginning -e -f '%s\n' "file://$G/k" 2>"$T/err" |
  head -1 >"$T/out"
st=("${PIPESTATUS[@]}")
expect_status "group consume | head -1" 0 "${st[0]}"
expect_line "group consume | head -1: the first message" 1 1 "$T/out"
if [ -s "$T/err" ]; then bad "group consume | head -1: stderr: $(head -3 "$T/err")"; else ok; fi
$TO "$SS" consume -G g --mode resumable -e -f '%s\n' "file://$G/k" >"$T/rest" 2>"$T/err"
expect_status "group consume, the rest" 0 $?
first=$(head -1 "$T/rest")
last=$(tail -1 "$T/rest")
if [ -s "$T/rest" ]; then
  seq "$first" 100000 >"$T/want"
  expect_same "group consume, the rest: in order from $first to the end" "$T/want" "$T/rest"
else
  ok # everything went into the pipe before the reader left: all of it was printed
fi

# Big messages (300 kB, more than a pipe holds): the reader gets the first whole, the second
# cannot have been written whole. With a batch of 1 the commit is exactly the first message;
# with the default batch, nothing of the unfinished batch is committed (duplicates, no loss).
B="$T/big.ss"
python3 -c '
import sys
for i in range(1, 21):
    sys.stdout.write("%d:" % i + "x" * 300000 + "\n")' | $TO "$SS" produce "file://$B/k" 2>/dev/null
for batch in 1 default; do
  rm -f "$B.g.pos"
  X=()
  [ "$batch" = 1 ] && X=(-X batch=1)
  $TO "$SS" consume -G g --mode resumable "${X[@]}" -o beginning -e -f '%s\n' "file://$B/k" \
    2>"$T/err" | head -1 | cut -d: -f1 >"$T/out"
  st=("${PIPESTATUS[@]}")
  expect_status "big, batch $batch: consume | head -1" 0 "${st[0]}"
  expect_line "big, batch $batch: consume | head -1: the first message" 1 1 "$T/out"
  if [ -s "$T/err" ]; then bad "big, batch $batch: stderr: $(head -3 "$T/err")"; else ok; fi
  $TO "$SS" consume -G g --mode resumable -e -f '%s\n' "file://$B/k" 2>"$T/err" |
    cut -d: -f1 >"$T/rest"
  if [ "$batch" = 1 ]; then
    seq 2 20 >"$T/want" # the printed one is committed, the one that met the closed pipe is not
  else
    seq "$(head -1 "$T/rest")" 20 >"$T/want"
    if [ "$(head -1 "$T/rest")" -le 2 ]; then ok; else bad "big: the next consume skipped 2"; fi
  fi
  expect_same "big, batch $batch: the next consume of the group" "$T/want" "$T/rest"
done

# --- -J: valid UTF-8 is text, anything else is payload_b64; decoded, every line comes back ---
J="$T/bytes.ss"
python3 - "$T/lines" <<'EOF'
import sys
lines = []
lines.append(bytes(b for b in range(256) if b != 10))           # every byte but the newline
lines += [b"x" + bytes([b]) + b"y" for b in range(256) if b != 10]  # each byte alone
lines += [b"x\xc0\xaf", b"x\xc0\x80", b"x\xe0\x80\xaf", b"x\xf0\x80\x80\xaf",  # overlong
          b"x\xed\xa0\x80", b"x\xed\xbf\xbf",                   # surrogates
          b"x\xe2\x82", b"x\xf0\x9f\x98", b"x\xc3",             # truncated
          b"x\xf4\x90\x80\x80", b"x\xff\xfe", b"caf\xe9"]       # past U+10FFFF, FF FE, Latin-1
lines += ["café €uro 😀 \U0010FFFF \"q\" \\ \t".encode(), b"x\x01\x1f\x7f"]  # text
open(sys.argv[1], "wb").write(b"".join(l + b"\n" for l in lines))
EOF
# (No line starts with '[', which would be a header block: byte 0x5b is never first.)
$TO "$SS" produce "file://$J/k" <"$T/lines" 2>"$T/err"
expect_status "-J: produce the bytes" 0 $?
$TO "$SS" consume -J -o beginning -e "file://$J/k" >"$T/json" 2>"$T/err"
expect_status "-J: consume" 0 $?
python3 - "$T/lines" "$T/json" >"$T/check" 2>&1 <<'EOF'
import base64, json, sys
want = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
got = open(sys.argv[2], "rb").read().split(b"\n")[:-1]
bad = 0
if len(got) != len(want):
    print("lines: %d, expected %d" % (len(got), len(want))); bad += 1
texts = b64s = 0
for i, (w, g) in enumerate(zip(want, got)):
    o = json.loads(g.decode("utf-8"))  # strict: the line is valid UTF-8 and valid JSON
    try:
        w.decode("utf-8"); valid = True
    except UnicodeDecodeError:
        valid = False
    if valid != ("payload" in o) or ("payload" in o) == ("payload_b64" in o):
        print("line %d: %r has fields %s" % (i + 1, w, sorted(o))); bad += 1; continue
    p = o["payload"].encode("utf-8") if valid else base64.b64decode(o["payload_b64"], validate=True)
    texts += valid; b64s += not valid
    if p != w:
        print("line %d: %r came back as %r" % (i + 1, w, p)); bad += 1
print("%d lines: %d text, %d base64, %d wrong" % (len(got), texts, b64s, bad))
sys.exit(1 if bad else 0)
EOF
if [ $? -eq 0 ]; then ok; else bad "-J: the bytes did not all come back:"; sed 's/^/    /' "$T/check" | head -20 >&2; fi
expect_grep "-J: text and base64 both used" '^270 lines: 129 text, 141 base64, 0 wrong$' "$T/check"

finish
