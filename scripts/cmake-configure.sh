#!/usr/bin/env bash
# scripts/cmake-configure.sh: configures a CMake build directory only when needed.
#
# Usage: scripts/cmake-configure.sh BUILD_DIR [CMAKE_ARG...]
#
# Runs `cmake -S <repo> -B BUILD_DIR -G <generator> CMAKE_ARG...` when BUILD_DIR has no
# CMakeCache.txt, when its generated build system is missing (an earlier configure failed),
# or when a -DNAME=VALUE / -DNAME:TYPE=VALUE argument differs from the cached value.
# Otherwise it does nothing: `cmake --build` re-runs CMake by itself when CMakeLists change.
#
# Generator: $CMAKE_GENERATOR if set, else Ninja if `ninja` is installed, else Unix Makefiles.
# A build directory configured with a different generator has its cache reset.
set -euo pipefail

if (($# < 1)); then
  echo "usage: $0 BUILD_DIR [CMAKE_ARG...]" >&2
  exit 2
fi
dir=$1
shift

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ -n "${CMAKE_GENERATOR:-}" ]]; then
  generator=$CMAKE_GENERATOR
elif command -v ninja >/dev/null 2>&1; then
  generator=Ninja
else
  generator="Unix Makefiles"
fi

cache="$dir/CMakeCache.txt"
reason=""

if [[ -f "$cache" ]]; then
  cached_generator=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$cache")
  if [[ "$cached_generator" != "$generator" ]]; then
    echo "configure: $dir was generated for '$cached_generator', switching to '$generator'"
    rm -rf "$cache" "$dir/CMakeFiles"
  fi
fi

if [[ ! -f "$cache" ]]; then
  reason="new build directory"
else
  case $generator in
    Ninja*) buildfile="$dir/build.ninja" ;;
    *) buildfile="$dir/Makefile" ;;
  esac
  if [[ ! -f "$buildfile" ]]; then
    reason="no generated build system (previous configure failed?)"
  fi
fi

if [[ -z "$reason" ]]; then
  for arg in "$@"; do
    [[ "$arg" == -D* ]] || continue
    def=${arg#-D}
    name=${def%%=*}
    value=${def#*=}
    name=${name%%:*} # drop an optional :TYPE
    line=$(grep -m1 -E "^${name}:[A-Z]+=" "$cache" || true)
    if [[ -z "$line" || "${line#*=}" != "$value" ]]; then
      reason="$name changed to '$value'"
      break
    fi
  done
fi

if [[ -n "$reason" ]]; then
  echo "configure: $dir ($reason)"
  set -x
  cmake -S "$root" -B "$dir" -G "$generator" "$@"
fi
