# lib.sh: what the command-line test scripts share: a temp dir, the binary, and checks that count
# passes and failures. Source it after setting BUILD; end the script with `finish`.
source "$(dirname "${BASH_SOURCE[0]}")/count.sh"
SS="$BUILD/seastreamer"
export SEASTREAMER_PLUGIN_DIR="$BUILD/plugins"
unset SEASTREAMER_PLUGIN_PATH
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
TS='[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}'

expect_status() { # NAME WANT GOT
  if [ "$3" -eq "$2" ]; then ok; else bad "$1: exit status $3, expected $2"; fi
}
expect_grep() { # NAME PATTERN FILE: some line matches the extended regex
  if grep -Eq -- "$2" "$3"; then ok; else
    bad "$1: no line matching /$2/ in:"
    sed 's/^/    /' "$3" | head -20 >&2
  fi
}
expect_lines() { # NAME N FILE
  local n
  n=$(wc -l <"$3")
  if [ "$n" -eq "$2" ]; then ok; else bad "$1: $n lines, expected $2"; fi
}
expect_line() { # NAME N TEXT FILE: line N is exactly TEXT
  local got
  got=$(sed -n "$2p" "$4")
  if [ "$got" == "$3" ]; then ok; else bad "$1: line $2 is '$got', expected '$3'"; fi
}
expect_same() { # NAME WANT_FILE GOT_FILE
  if cmp -s "$2" "$3"; then ok; else
    bad "$1: output differs:"
    diff "$2" "$3" | head -20 >&2
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
