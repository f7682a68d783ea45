#!/usr/bin/env bash
# check.sh: checks one installation of SeaStreamer from the outside, as its user would, in a
# clean environment (env -i PATH=/usr/bin:/bin, no SEASTREAMER_* variable, no LD_LIBRARY_PATH):
# the command lists the plugins installed with it (and says where it looked), runs the demo
# processor (examples/uppercase.lua) with each runner given, and a Lua script that `require`s the
# installed module round-trips messages through file:// and through stdio://.
#
# usage: check.sh NAME ROOT SEASTREAMER EXAMPLES_DIR [RUNNER:INTERPRETER:CPATH_VAR=DIR ...]
#   ROOT: where everything must come from; SEASTREAMER: the installed command;
#   RUNNER: 5.4 or luajit (seastreamer run --lua); INTERPRETER: lua5.4 or luajit;
#   CPATH_VAR=DIR: how that interpreter finds the module (e.g. LUA_CPATH_5_4=T/lib/lua/5.4).
# Prints "NAME: N passed, M failed"; exit status 1 if anything failed.
set -uo pipefail
if (($# < 4)); then
  echo "usage: $0 NAME ROOT SEASTREAMER EXAMPLES_DIR [RUNNER:INTERPRETER:VAR=DIR ...]" >&2
  exit 2
fi
NAME=$1 ROOT=$2 SS=$3 EXAMPLES=$4
shift 4
T=$(mktemp -d "${TMPDIR:-/tmp}/seastreamer-check.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); }
bad() {
  failed=$((failed + 1))
  echo "FAIL: $NAME: $*" >&2
}
show() { sed 's/^/    /' "$1" >&2; }
# A clean environment, and each command bounded (nothing here takes more than a few seconds).
clean() { timeout -k 5 60 env -i PATH=/usr/bin:/bin HOME="$T" "$@"; }

[ -x "$SS" ] || { bad "no command at $SS"; echo "$NAME: $passed passed, $failed failed"; exit 1; }

# --- seastreamer plugins: every backend, from this installation, and where it looked ---
clean "$SS" plugins >"$T/plugins" 2>&1
st=$?
if [ $st -eq 0 ]; then ok; else bad "seastreamer plugins: exit $st"; show "$T/plugins"; fi
for p in stdio file mem; do
  if grep -Eq "^loaded +$p .*\($ROOT/.*/$p\.so\)" "$T/plugins"; then ok; else
    bad "seastreamer plugins: $p not loaded from under $ROOT"
    show "$T/plugins"
  fi
done
if grep -q "^searched $ROOT/.*/plugins (installed with " "$T/plugins"; then ok; else
  bad "seastreamer plugins: does not say it searched under $ROOT"
  show "$T/plugins"
fi
if grep -v "^searched " "$T/plugins" | grep -v "$ROOT/" | grep -q .; then
  bad "seastreamer plugins: something not from $ROOT"
  show "$T/plugins"
else ok; fi

# --- a relay through a backend found the same way ---
printf 'x\ny\n' | clean "$SS" relay stdio:// "file://$T/relay.ss/k" >"$T/out" 2>&1
st=$?
if [ $st -eq 0 ] && [ -s "$T/relay.ss" ]; then ok; else
  bad "relay stdio:// file://: exit $st"
  show "$T/out"
fi

for spec in "$@"; do
  runner=${spec%%:*} rest=${spec#*:}
  interp=${rest%%:*} cpath=${rest#*:}
  var=${cpath%%=*} dir=${cpath#*=}

  # --- the demo processor through `seastreamer run` with this runner ---
  printf 'hello\nworld\n' | clean "$SS" run --lua "$runner" "$EXAMPLES/uppercase.lua" \
    --input stdio:// --output stdio:///up >"$T/out" 2>"$T/err"
  st=$?
  if [ $st -eq 0 ] && grep -q '| up | 0\] HELLO$' "$T/out" && grep -q '| up | 1\] WORLD$' "$T/out"; then
    ok
  else
    bad "run --lua $runner examples/uppercase.lua: exit $st"
    show "$T/out"
    show "$T/err"
  fi

  # --- the module: from this installation, over file:// and stdio:// ---
  cat >"$T/produce.lua" <<'LUA'
local sea = require "seastreamer"
local root, uri, n = arg[1], arg[2], tonumber(arg[3])
local where = package.searchpath("seastreamer", package.cpath)
assert(where and where:sub(1, #root + 1) == root .. "/", "module not from " .. root .. ": " .. tostring(where))
local rt = sea.runtime()
local s = assert(rt:connect(uri))
local p = assert(s:producer())
for i = 1, n do assert(p:send("m" .. i)) end
assert(p:flush())
p:close()
s:close()
rt:close()
LUA
  cat >"$T/consume.lua" <<'LUA'
local sea = require "seastreamer"
local uri, n = arg[1], tonumber(arg[2])
local rt = sea.runtime()
local s = assert(rt:connect(uri))
-- A file is read from its beginning to its end; stdin is read to its end.
local c = assert(s:consumer(uri:find("^file:") and { start = "beginning", stop_at_end = true } or {}))
local got = {}
for m in c:messages() do got[#got + 1] = m.payload end
assert(#got == n, "got " .. #got .. " messages, expected " .. n)
for i = 1, n do assert(got[i] == "m" .. i, "message " .. i .. " is " .. tostring(got[i])) end
s:close()
rt:close()
io.stderr:write("consumed ", #got, "\n")
LUA
  rm -f "$T/msgs.ss"
  if clean "$var=$dir/?.so" "$interp" "$T/produce.lua" "$ROOT" "file://$T/msgs.ss/k" 5 >"$T/out" 2>&1 &&
    clean "$var=$dir/?.so" "$interp" "$T/consume.lua" "file://$T/msgs.ss/k" 5 >>"$T/out" 2>&1; then
    ok
  else
    bad "$interp: module round trip through file://"
    show "$T/out"
  fi
  if clean "$var=$dir/?.so" "$interp" "$T/produce.lua" "$ROOT" "stdio:///k" 7 2>"$T/err" |
    clean "$var=$dir/?.so" "$interp" "$T/consume.lua" "stdio:///k" 7 >"$T/out" 2>&1; then
    ok
  else
    bad "$interp: module round trip through stdio://"
    show "$T/err"
    show "$T/out"
  fi
done

echo "$NAME: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
