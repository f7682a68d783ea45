# count.sh: the pass/fail counting the test scripts share (sourced; lib.sh builds on it). It sets
# no environment: the install tests source it alone, to run as users do.
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() {
  failed=$((failed + 1))
  echo "FAIL: $*" >&2
}
# A step the rest depends on failed: report and stop.
die() {
  bad "$*"
  echo "$passed passed, $failed failed"
  exit 1
}
# The end of a log, indented, on stderr.
show() { tail -n 40 "$1" | sed 's/^/    /' >&2; }
