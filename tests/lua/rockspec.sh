#!/usr/bin/env bash
# rockspec.sh: builds and installs rockspec/seastreamer-scm-1.rockspec with `luarocks make`,
# offline, into a temporary tree, for Lua 5.4 and for 5.1/LuaJIT, against libseastreamer installed
# from this build into a temporary prefix; then loads each module and moves a message with it.
# usage: rockspec.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$BUILD" --prefix "$T/prefix" >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "cmake --install"; }
LIBDIR=$(dirname "$(find "$T/prefix" -name 'libseastreamer.so' | head -1)")
[ -n "$LIBDIR" ] || fail "libseastreamer.so not installed"

# The installed command finds its installed runners, wherever the prefix went.
for lua in 5.4 luajit; do
  out=$(echo hi | SEASTREAMER_PLUGIN_DIR="$BUILD/plugins" "$T/prefix/bin/seastreamer" run --lua $lua \
        "$SRC/examples/uppercase.lua" --input stdio:// --output stdio:///o) || fail "installed run --lua $lua"
  [[ "$out" == *"| o | 0] HI" ]] || fail "installed run --lua $lua printed: $out"
done

# luarocks make builds in the folder it runs in: give it a copy, never the source tree.
mkdir -p "$T/src"
cp -r "$SRC/lua" "$SRC/rockspec" "$T/src/"
rm -f "$T/src/lua/CMakeLists.txt"

check() { # LUA_VERSION INTERPRETER INCDIR
  local v=$1 interp=$2 inc=$3 tree="$T/tree-$1"
  (cd "$T/src" && luarocks --lua-version="$v" --tree "$tree" make --deps-mode=none \
      rockspec/seastreamer-scm-1.rockspec \
      LUA_INCDIR="$inc" SEASTREAMER_DIR="$T/prefix" SEASTREAMER_LIBDIR="$LIBDIR" \
      >"$T/make-$v.log" 2>&1) || { cat "$T/make-$v.log"; fail "luarocks make for Lua $v"; }
  local so
  so=$(find "$tree/lib/lua/$v" -name 'seastreamer.so' | head -1)
  [ -n "$so" ] || fail "Lua $v: no seastreamer.so installed in the tree"
  if find "$SRC/lua" "$SRC/rockspec" -name "*.so" -o -name "*.o" | grep -q .; then fail "Lua $v: build output in the source tree"; fi
  rm -f "$T/src/seastreamer.so" "$T/src"/lua/*.o
  local var=LUA_CPATH_${v/./_}
  [ "$v" = 5.1 ] && var=LUA_CPATH
  env LD_LIBRARY_PATH="$LIBDIR" SEASTREAMER_PLUGIN_DIR="$BUILD/plugins" \
      "$var=$tree/lib/lua/$v/?.so;;" "$interp" -e '
    local sea = require "seastreamer"
    assert(package.searchpath("seastreamer", package.cpath):find("tree", 1, true), "not the tree module")
    local rt = sea.runtime()
    local s = assert(rt:connect("mem://rock/k"))
    local p = assert(s:producer())
    assert(p:send("from the rock"))
    assert(p:flush())
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    local m = assert(c:next())
    assert(m.payload == "from the rock", m.payload)
    rt:close()
    print("ok " .. _VERSION .. (jit and (" " .. jit.version) or ""))
  ' || fail "Lua $v: the installed module does not work"
}

check 5.4 lua5.4 /usr/include/lua5.4
check 5.1 luajit /usr/include/luajit-2.1
echo "rockspec: built, installed and loaded on Lua 5.4 and LuaJIT"
