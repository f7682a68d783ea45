#!/usr/bin/env bash
# run.sh: install seastreamer into a temporary prefix, build echo_plugin.c against it, run it.
#
# usage: run.sh BUILD_DIR SOURCE_DIR
#
# Proves the plugin ABI is public: the plugin is compiled with the installed headers only (found
# through the installed seastreamer.pc, never an -I into SOURCE_DIR), then the installed
# seastreamer lists and uses it. Environment: CMAKE (default cmake), CC (default cc), and
# ASAN_OPTIONS/UBSAN_OPTIONS pass through to the installed binary (which may be a sanitizer
# build; the plugin itself is plain).
set -uo pipefail

if (($# != 2)); then
  echo "usage: $0 BUILD_DIR SOURCE_DIR" >&2
  exit 2
fi
BUILD=$(cd "$1" && pwd) || exit 2
SRC=$(cd "$2" && pwd) || exit 2
CMAKE=${CMAKE:-cmake}
CC=${CC:-cc}

# ctest may run tests in parallel: everything this test writes lives in its own directory.
T=$(mktemp -d "${TMPDIR:-/tmp}/seastreamer-oot.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
trap 'exit 130' INT TERM # an interrupted run cleans up too
source "$(dirname "${BASH_SOURCE[0]}")/../count.sh"
# expect_grep NAME PATTERN FILE
expect_grep() {
  if grep -Eq -- "$2" "$3"; then ok; else
    bad "$1: no line matching /$2/ in:"
    show "$3"
  fi
}
# expect_status NAME WANT GOT [FILE to show on failure]
expect_status() {
  if [ "$3" -eq "$2" ]; then ok; else
    bad "$1: exit status $3, expected $2"
    [ -n "${4:-}" ] && show "$4"
  fi
}

# --- install ---
# First a dry run under DESTDIR: an install rule with an absolute destination ignores --prefix,
# and must not write into the real system (this may run as root).
probe=/seastreamer-oot-prefix
if ! DESTDIR="$T/probe" "$CMAKE" --install "$BUILD" --prefix "$probe" >"$T/probe.log" 2>&1; then
  show "$T/probe.log"
  die "cmake --install $BUILD failed"
fi
escaped=$(cd "$T/probe" && find . -mindepth 1 -maxdepth 1 ! -name "${probe#/}")
sysroot=
if [ -z "$escaped" ]; then
  ok
  root="$T/prefix"
  "$CMAKE" --install "$BUILD" --prefix "$root" >"$T/install.log" 2>&1 ||
    { show "$T/install.log"; die "cmake --install --prefix $root failed"; }
else
  bad "cmake --install --prefix $probe puts files outside the prefix (an absolute install" \
    "DESTINATION); they went to:"
  (cd "$T/probe" && find . -type f ! -path "./${probe#/}/*" | sed 's/^\.//') | sed 's/^/    /' >&2
  # Go on with a staged install (the configured prefix under DESTDIR, and pkg-config's sysroot
  # to match), so the plugin ABI is still checked.
  echo "note: continuing with DESTDIR=$T/stage and the configured prefix" >&2
  root="$T/stage"
  sysroot="$root"
  DESTDIR="$root" "$CMAKE" --install "$BUILD" >"$T/install.log" 2>&1 ||
    { show "$T/install.log"; die "DESTDIR=$root cmake --install failed"; }
fi

# GNUInstallDirs' libdir may be lib, lib64 or lib/<multiarch>: find the .pc rather than guess.
pc=$(find "$root" -name seastreamer.pc -path '*/pkgconfig/*' | head -n 1)
[ -n "$pc" ] || die "no seastreamer.pc installed under $root"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
if [ -n "$sysroot" ]; then
  export PKG_CONFIG_SYSROOT_DIR="$sysroot"
else
  unset PKG_CONFIG_SYSROOT_DIR
fi
# A variable of the .pc as a path in this tree (pkgconf applies the sysroot, pkg-config does not).
pcvar() {
  local v
  v=$(pkg-config --variable="$1" seastreamer) || return 1
  if [ -n "$sysroot" ] && [ "${v#"$sysroot"}" = "$v" ]; then
    v="$sysroot$v"
  fi
  printf '%s\n' "$v"
}
cflags=$(pkg-config --cflags seastreamer) || die "pkg-config --cflags seastreamer failed"
includedir=$(pcvar includedir)
libdir=$(pcvar libdir)
plugindir=$(pcvar plugindir)
if [ -f "$includedir/seastreamer/plugin.h" ] && [ "${includedir#"$T"/}" != "$includedir" ]; then
  ok
else
  die "seastreamer.pc says includedir=$includedir, which is not where the headers were installed" \
    "(under $root): the .pc was configured for another prefix"
fi
[ -f "$plugindir/stdio.so" ] || die "no stdio.so in the .pc's plugindir ($plugindir)"
# As the library names it: the real path (the .pc's is relative to itself, with ..).
plugindir=$(cd "$plugindir" && pwd -P)
ok
case " $cflags " in
*"$SRC"*) die "pkg-config --cflags points into the source tree: $cflags" ;;
esac

# --- build the plugin as its author would ---
mkdir -p "$T/oot" "$T/empty"
# shellcheck disable=SC2086 # cflags is a list of flags
if "$CC" -std=c11 -Wall -Wextra -Werror -fPIC -shared $cflags -o "$T/oot/echo.so" \
  "$SRC/tests/oot/echo_plugin.c" 2>"$T/cc.log"; then ok; else
  show "$T/cc.log"
  die "echo_plugin.c does not build against the installed headers"
fi

# --- run the installed seastreamer ---
bin=$(find "$root" -type f -name seastreamer -path '*/bin/*' | head -n 1)
[ -n "$bin" ] && [ -x "$bin" ] || die "no seastreamer command installed under $root"
# The installed binary finds its library (RPATH $ORIGIN/..) and the library its plugins (from
# its own location): no LD_LIBRARY_PATH, no SEASTREAMER_PLUGIN_DIR.
unset SEASTREAMER_LOG LD_LIBRARY_PATH SEASTREAMER_PLUGIN_DIR SEASTREAMER_PLUGIN_PATH

# echo alone: the plugin dir is empty, so the listing is the out-of-tree plugin only.
SEASTREAMER_PLUGIN_DIR="$T/empty" SEASTREAMER_PLUGIN_PATH="$T/oot" "$bin" plugins \
  >"$T/out" 2>&1
expect_status "plugins (echo only)" 0 $? "$T/out"
expect_grep "plugins (echo only)" "^loaded +echo 1\.0\.0 +schemes: echo +\($T/oot/echo\.so\)" "$T/out"

# With the installed plugins: they load from plugindir (found by the library itself), echo from
# the path, nothing is refused.
export SEASTREAMER_PLUGIN_PATH="$T/oot"
"$bin" plugins >"$T/out" 2>&1
expect_status "plugins (installed + echo)" 0 $? "$T/out"
expect_grep "plugins (installed + echo)" "^loaded +stdio .*\($plugindir/stdio\.so\)" "$T/out"
expect_grep "plugins (installed + echo)" "^loaded +echo .*\($T/oot/echo\.so\)" "$T/out"

# The producer: two lines from stdin, each receipted with seq 0 and 1 of key k.
printf 'a\nb\n' | SEASTREAMER_LOG=info "$bin" relay stdio:// echo:///k >"$T/out" 2>"$T/err"
expect_status "relay stdio:// echo:///k" 0 $? "$T/err"
expect_grep "relay (receipt 0)" "echo: k seq 0: 1 bytes" "$T/err"
expect_grep "relay (receipt 1)" "echo: k seq 1: 1 bytes" "$T/err"
if grep -q 'seq 2' "$T/err"; then bad "relay: more than two sends"; else ok; fi

# The consumer: nothing to read, a clean end at once, no output.
"$bin" consume echo:///k </dev/null >"$T/out" 2>"$T/err"
expect_status "consume echo:///k" 0 $? "$T/err"
if [ -s "$T/out" ]; then bad "consume echo:///k printed something"; else ok; fi

# The plugin's own rules reach the user: an option its (empty) table does not declare.
"$bin" relay -O colour=blue stdio:// echo:///k </dev/null >"$T/out" 2>"$T/err"
expect_status "unknown option" 2 $? "$T/err"
expect_grep "unknown option" "echo: unknown option 'colour' \(common keys: .*; echo keys: none\)" "$T/err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
