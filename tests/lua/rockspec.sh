#!/usr/bin/env bash
# rockspec.sh: SeaStreamer installed the LuaRocks way, offline, as a new user would, into
# temporary trees, then checked from the outside in a clean environment (tests/install/check.sh):
#   Lua 5.4: `luarocks --lua-version=5.4 make` in a copy of the source, then `luarocks test`
#            there (the busted specs), and `luarocks --lua-version=5.1 test` (LuaJIT) too;
#   LuaJIT:  `luarocks --lua-version=5.1 pack` of the versioned rockspec (its source pointed at a
#            local tarball of this source: the network is not used) and `luarocks install` of the
#            source rock it made.
# Each tree must hold the module, libseastreamer, every plugin, the runner, the command in bin/,
# the man page and the bash completion, and nothing in share/lua.
# usage: rockspec.sh SOURCE_DIR
set -uo pipefail
SRC=$(cd "$1" && pwd) || exit 2
T=$(mktemp -d "${TMPDIR:-/tmp}/seastreamer-rock.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
source "$(dirname "${BASH_SOURCE[0]}")/../count.sh"
# luarocks builds in the folder it runs in: give it a copy of the source, never the source tree.
copy_source() {
  mkdir -p "$1"
  tar -C "$SRC" --exclude='./build*' --exclude=./.git --exclude='*.rock' -cf - . | tar -C "$1" -xf -
}
# No network: the LuaRocks server is not reachable, and nothing may need it.
LR=(timeout -k 10 400 env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 luarocks)

# expect_tree NAME TREE V: what the rock put in TREE for Lua V.
expect_tree() {
  local name=$1 tree=$2 v=$3
  local rock
  rock=$(find "$tree/lib/luarocks/rocks-$v/seastreamer" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  [ -n "$rock" ] || { bad "$name: no rock directory in $tree"; return; }
  local f
  for f in "$tree/lib/lua/$v/seastreamer.so" "$tree/bin/seastreamer" \
    "$rock/host/lib/libseastreamer.so.0" "$rock/share/man/man1/seastreamer.1" \
    "$rock/share/bash-completion/completions/seastreamer"; do
    if [ -e "$f" ]; then ok; else bad "$name: $f is missing"; fi
  done
  local runner=lua5.4
  [ "$v" = 5.1 ] && runner=luajit
  if [ -x "$rock/host/libexec/seastreamer/seastreamer-run-$runner" ]; then ok; else
    bad "$name: no runner seastreamer-run-$runner in the rock"
  fi
  local p
  for p in stdio file mem; do
    if [ -f "$rock/host/lib/seastreamer/plugins/$p.so" ]; then ok; else bad "$name: no plugin $p.so"; fi
  done
  if [ -d "$tree/share/lua" ] && [ -n "$(find "$tree/share/lua" -type f)" ]; then
    bad "$name: files in share/lua:"
    find "$tree/share/lua" -type f | sed 's/^/    /' >&2
  else ok; fi
  if find "$tree/lib/lua" -type f ! -name seastreamer.so | grep -q .; then
    bad "$name: more than the module in lib/lua:"
    find "$tree/lib/lua" -type f | sed 's/^/    /' >&2
  else ok; fi
}

# --- Lua 5.4: luarocks make in a checkout, luarocks test ---
copy_source "$T/src54"
# As the README says: no rockspec named (luarocks finds rockspec/seastreamer-scm-1.rockspec).
(cd "$T/src54" && "${LR[@]}" --lua-version=5.4 --tree "$T/tree54" make) \
  >"$T/make54.log" 2>&1 || { show "$T/make54.log"; die "luarocks --lua-version=5.4 make"; }
ok
expect_tree "5.4 make" "$T/tree54" 5.4
(cd "$T/src54" && "${LR[@]}" --lua-version=5.4 --tree "$T/tree54" test) >"$T/test54.log" 2>&1
st=$?
if [ $st -eq 0 ] && grep -Eq '^[0-9]+ successes / 0 failures / 0 errors' "$T/test54.log"; then ok; else
  show "$T/test54.log"
  bad "luarocks --lua-version=5.4 test: exit $st"
fi
# luarocks test for LuaJIT too, in the same checkout (it builds that Lua's flavour beside).
(cd "$T/src54" && "${LR[@]}" --lua-version=5.1 --tree "$T/tree54" test) >"$T/test51.log" 2>&1
st=$?
if [ $st -eq 0 ] && grep -q 'busted --lua=luajit' "$T/test51.log" &&
  grep -Eq '^[0-9]+ successes / 0 failures / 0 errors' "$T/test51.log"; then ok; else
  show "$T/test51.log"
  bad "luarocks --lua-version=5.1 test: exit $st"
fi
bash "$SRC/tests/install/check.sh" "rock 5.4" "$T/tree54" "$T/tree54/bin/seastreamer" "$SRC/examples" \
  "5.4:lua5.4:LUA_CPATH_5_4=$T/tree54/lib/lua/5.4" && ok || bad "rock 5.4: check.sh"

# --- LuaJIT: pack the versioned rockspec into a source rock, install that ---
ver=$(sed -n 's/^version = "\(.*\)-[0-9]*"$/\1/p' "$SRC"/rockspec/seastreamer-[0-9]*.rockspec | head -n 1)
[ -n "$ver" ] || die "no versioned rockspec beside the scm one"
copy_source "$T/dist/seastreamer-$ver"
tar -C "$T/dist" -czf "$T/seastreamer-$ver.tar.gz" "seastreamer-$ver"
mkdir -p "$T/pack"
sed -e "s|^  url = .*|  url = \"file://$T/seastreamer-$ver.tar.gz\",|" -e '/^  tag = /d' \
  "$SRC/rockspec/seastreamer-$ver-1.rockspec" >"$T/pack/seastreamer-$ver-1.rockspec"
(cd "$T/pack" && "${LR[@]}" --lua-version=5.1 pack "seastreamer-$ver-1.rockspec") >"$T/pack.log" 2>&1 ||
  { show "$T/pack.log"; die "luarocks pack seastreamer-$ver-1.rockspec"; }
rock="$T/pack/seastreamer-$ver-1.src.rock"
[ -f "$rock" ] || die "luarocks pack made no $rock"
ok
rm -f "$T/seastreamer-$ver.tar.gz" # the source rock must carry its source
(cd "$T/pack" && "${LR[@]}" --lua-version=5.1 --tree "$T/tree51" install "$rock") >"$T/install51.log" 2>&1 ||
  { show "$T/install51.log"; die "luarocks --lua-version=5.1 install $rock"; }
ok
expect_tree "5.1 source rock" "$T/tree51" 5.1
bash "$SRC/tests/install/check.sh" "rock LuaJIT" "$T/tree51" "$T/tree51/bin/seastreamer" "$SRC/examples" \
  "luajit:luajit:LUA_CPATH=$T/tree51/lib/lua/5.1" && ok || bad "rock LuaJIT: check.sh"

# The source tree was only read.
if find "$SRC/lua" "$SRC/rockspec" "$SRC/host" -name '*.so' -o -name '*.o' | grep -q . ||
  [ -e "$SRC/build.luarocks" ]; then
  bad "build output in the source tree"
else ok; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
