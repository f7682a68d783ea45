# Makefile: a thin wrapper over CMake/CTest for SeaStreamer for C and Lua.
#
#   make [build]   install missing Debian packages, configure (if needed) and build into $(BUILD)
#   make test      -Werror build + ctest, then an ASan/UBSan Debug build in $(ASAN_BUILD) + ctest
#   make demo      build, then run $(DEMO_CMD)
#   make bench     build, then run bench/stdio
#   make install   cmake --install $(BUILD)  (PREFIX=/usr/local, DESTDIR=... are honoured)
#   make format    clang-format -i the C sources (format-check: report only)
#   make clean     remove $(BUILD) and $(ASAN_BUILD)
#   make deps      scripts/deps.sh (SKIP_DEPS=1 skips it)
#
# Variables: BUILD, ASAN_BUILD, BUILD_TYPE, WERROR, JOBS, CTEST_JOBS, CTEST_TIMEOUT, CMAKE_ARGS,
# PREFIX, DEMO_CMD. Example: make test CMAKE_ARGS=-DCMAKE_C_COMPILER=clang

BUILD ?= build
ASAN_BUILD ?= build-asan
BUILD_TYPE ?= RelWithDebInfo
# Warnings are errors in CI (CI=true) and in `make test`; plain local builds only warn.
WERROR ?= $(if $(CI),ON,OFF)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_JOBS ?= 2
# Default per-test timeout in seconds (a test's own TIMEOUT property takes precedence).
CTEST_TIMEOUT ?= 300
CMAKE_ARGS ?=
PREFIX ?=
CLANG_FORMAT ?= clang-format

CMAKE ?= cmake
CTEST ?= ctest
CONFIGURE := bash scripts/cmake-configure.sh
DEPS := bash scripts/deps.sh
CTEST_FLAGS = --output-on-failure --no-tests=error -j $(CTEST_JOBS) --timeout $(CTEST_TIMEOUT)
SANITIZER_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# Plugins in the build tree are found through this (tests set it themselves).
PLUGIN_DIR = $(abspath $(BUILD))/plugins
DEMO_CMD ?= SEASTREAMER_PLUGIN_DIR=$(PLUGIN_DIR) sh -c '$(BUILD)/seastreamer clock -i 100 -n 20 | $(BUILD)/seastreamer run examples/uppercase.lua --input stdio:///clock --output stdio:///clock-upper'

# Every recipe line fails on the first failing command, including inside pipelines.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# The targets below run steps in order; never let `make -j` interleave them.
.NOTPARALLEL:
.DEFAULT_GOAL := build
.PHONY: all deps build configure test test-release test-asan demo bench install clean format \
        format-check

all: build

deps:
	@$(DEPS)

configure: deps
	@$(CONFIGURE) $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSEA_WERROR=$(WERROR) $(CMAKE_ARGS)

build: configure
	$(CMAKE) --build $(BUILD) -j $(JOBS)

test: deps test-release test-asan

# Same build directory as `make build`, but always with -Werror.
test-release: deps
	@$(CONFIGURE) $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DSEA_WERROR=ON $(CMAKE_ARGS)
	$(CMAKE) --build $(BUILD) -j $(JOBS)
	$(CTEST) --test-dir $(BUILD) $(CTEST_FLAGS)

# Warnings are errors here too: the code is clean under the sanitizers' instrumentation.
test-asan: deps
	@$(CONFIGURE) $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSEA_SANITIZE=ON -DSEA_WERROR=ON \
	    $(CMAKE_ARGS)
	$(CMAKE) --build $(ASAN_BUILD) -j $(JOBS)
	$(SANITIZER_ENV) $(CTEST) --test-dir $(ASAN_BUILD) $(CTEST_FLAGS)

demo: build
	$(DEMO_CMD)

bench: build
	BUILD=$(BUILD) bash bench/stdio

install: build
	$(CMAKE) --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf -- $(BUILD) $(ASAN_BUILD)

FORMAT_DIRS := host plugins lua tests
FORMAT_FILES = $(shell find $(FORMAT_DIRS) -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null)

format:
	@command -v $(CLANG_FORMAT) >/dev/null || $(DEPS) clang-format
	@files="$(FORMAT_FILES)"; [ -z "$$files" ] || $(CLANG_FORMAT) -i $$files

format-check:
	@command -v $(CLANG_FORMAT) >/dev/null || $(DEPS) clang-format
	@files="$(FORMAT_FILES)"; [ -z "$$files" ] || $(CLANG_FORMAT) --dry-run -Werror $$files
