#!/usr/bin/env bash
# prefix.sh: `make install` (cmake --install, as the Makefile runs it) into a temporary PREFIX,
# into a DESTDIR staging tree, and a prefix moved after installing; each checked from the outside
# in a clean environment (check.sh: no SEASTREAMER_* variable, no LD_LIBRARY_PATH). Then the man
# page and the bash completion, and the README's C example built with pkg-config against the
# prefix and run, both when it works and when sea_connect fails.
# usage: prefix.sh BUILD_DIR SOURCE_DIR     (environment: CMAKE, CC)
set -uo pipefail
BUILD=$(cd "$1" && pwd) || exit 2
SRC=$(cd "$2" && pwd) || exit 2
CMAKE=${CMAKE:-cmake}
CC=${CC:-cc}
T=$(mktemp -d "${TMPDIR:-/tmp}/seastreamer-prefix.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM
source "$(dirname "${BASH_SOURCE[0]}")/../count.sh"
clean() { timeout -k 5 60 env -i PATH=/usr/bin:/bin HOME="$T" "$@"; }

# Where this build put the module of each Lua, relative to the prefix (GNUInstallDirs' libdir).
libdir=$(sed -n 's/^CMAKE_INSTALL_LIBDIR:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
libdir=${libdir:-lib}
# check ROOT NAME: the command, the demo and the module of each Lua, from ROOT.
check() {
  local root=$1 name=$2 luas=()
  [ -f "$root/$libdir/lua/5.4/seastreamer.so" ] && luas+=("5.4:lua5.4:LUA_CPATH_5_4=$root/$libdir/lua/5.4")
  [ -f "$root/$libdir/lua/5.1/seastreamer.so" ] && luas+=("luajit:luajit:LUA_CPATH=$root/$libdir/lua/5.1")
  ((${#luas[@]})) || bad "$name: no Lua module installed"
  if bash "$SRC/tests/install/check.sh" "$name" "$root" "$root/bin/seastreamer" "$SRC/examples" "${luas[@]}"; then
    ok
  else bad "$name: check.sh"; fi
}

# --- make install PREFIX=... ---
"$CMAKE" --install "$BUILD" --prefix "$T/p" >"$T/install.log" 2>&1 ||
  { show "$T/install.log"; die "cmake --install --prefix $T/p"; }
check "$T/p" "PREFIX=$T/p"

# --- DESTDIR staging of another prefix: runs from the staging tree as it is ---
DESTDIR="$T/stage" "$CMAKE" --install "$BUILD" --prefix /opt/seastreamer >"$T/stage.log" 2>&1 ||
  { show "$T/stage.log"; die "DESTDIR=$T/stage cmake --install --prefix /opt/seastreamer"; }
check "$T/stage/opt/seastreamer" "DESTDIR staging"

# --- a prefix moved after installing ---
cp -a "$T/p" "$T/moved"
check "$T/moved" "moved prefix"

# --- the man page and the bash completion ---
man="$T/p/share/man/man1/seastreamer.1"
if [ -f "$man" ]; then ok; else bad "no man page at $man"; fi
# Made from --help: the overview's synopsis and every command's usage line are in it.
for c in relay consume produce plugins clock decode verify repair run; do
  if grep -q "^\.SS $c\$" "$man" 2>/dev/null; then ok; else bad "man page: no section for $c"; fi
done
usage=$(clean "$T/p/bin/seastreamer" relay --help | head -n 1 | sed 's/-/\\-/g')
if grep -qF -- "$usage" "$man" 2>/dev/null; then ok; else bad "man page: not relay --help's text ($usage)"; fi
if command -v man >/dev/null && ! MANWIDTH=100 man -l "$man" >"$T/man.txt" 2>"$T/man.err"; then
  show "$T/man.err"
  bad "man -l $man"
else ok; fi
comp="$T/p/share/bash-completion/completions/seastreamer"
if [ -f "$comp" ]; then ok; else bad "no bash completion at $comp"; fi
# complete WORD...: what the completion offers for the last word.
complete_words() {
  clean bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _seastreamer
                 printf "%s\n" "${COMPREPLY[@]}"' _ "$comp" "$@"
}
got=$(complete_words "$T/p/bin/seastreamer" re | sort | tr '\n' ' ')
if [ "$got" = "relay repair " ]; then ok; else bad "completion of 're': '$got'"; fi
got=$(complete_words "$T/p/bin/seastreamer" "" | sort | uniq -d | tr '\n' ' ')
if [ -z "$got" ]; then ok; else bad "completion offers these commands twice: '$got'"; fi
got=$(complete_words "$T/p/bin/seastreamer" relay --mo | tr '\n' ' ')
if [ "$got" = "--mode " ]; then ok; else bad "completion of 'relay --mo': '$got'"; fi
got=$(complete_words "$T/p/bin/seastreamer" run --lua "" | sort | tr '\n' ' ')
if [ "$got" = "5.4 luajit " ]; then ok; else bad "completion of 'run --lua': '$got'"; fi

# --- the README's C example, built as its reader would, against the prefix ---
awk '/^## The C library/ { on = 1 } on && /^```c$/ { code = 1; next } code && /^```$/ { exit }
     code { print }' "$SRC/README.md" >"$T/example.c"
grep -q 'int main' "$T/example.c" || die "README.md: no complete C example under '## The C library'"
export PKG_CONFIG_PATH="$T/p/$libdir/pkgconfig"
# shellcheck disable=SC2046 # a list of flags
if "$CC" -std=c11 -Wall -Wextra -Werror -o "$T/example" "$T/example.c" \
  $(pkg-config --cflags --libs seastreamer) -Wl,-rpath,"$T/p/$libdir" 2>"$T/cc.log"; then ok; else
  show "$T/cc.log"
  die "README's C example does not build with pkg-config against $T/p"
fi
clean "$T/example" >"$T/out" 2>"$T/err"
st=$?
if [ $st -eq 0 ] && grep -q '| orders | 0\] hello$' "$T/out"; then ok; else
  bad "README example: exit $st"
  show "$T/out"
  show "$T/err"
fi
# Its failure paths: a connect that fails (the example used to go on and crash), a bad URI,
# and a stdout that cannot be written.
for uri in nosuch:///orders 'stdio:///two words'; do
  clean "$T/example" "$uri" >"$T/out" 2>"$T/err"
  st=$?
  if [ $st -eq 1 ] && grep -q '^connect: ' "$T/err"; then ok; else
    bad "README example with $uri: exit $st (expected 1 and 'connect: ...')"
    show "$T/err"
  fi
done
# a URI without a key: the producer's message, not just the code's name
clean "$T/example" stdio:// >"$T/out" 2>"$T/err"
st=$?
if [ $st -eq 1 ] && grep -q '^send: .*no stream key given' "$T/err"; then ok; else
  bad "README example with stdio://: exit $st (expected 1 and 'send: ... no stream key given')"
  show "$T/err"
fi
if [ -w /dev/full ]; then
  clean "$T/example" stdio:///orders >/dev/full 2>"$T/err"
  st=$?
  if [ $st -eq 1 ]; then ok; else
    bad "README example writing to /dev/full: exit $st (expected 1)"
    show "$T/err"
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
