-- seastreamer-scm-1.rockspec: the whole of SeaStreamer as one rock, built offline with CMake
-- (build.type = "cmake") for the Lua LuaRocks runs for: `luarocks --lua-version=5.4 make` or
-- `luarocks --lua-version=5.1 make` (the 5.1 module and runner are built against LuaJIT).
--
-- What lands where in the tree: the module in lib/lua/<v>/seastreamer.so, the `seastreamer`
-- command in bin/; libseastreamer, the plugins, the runner, the headers, the man page and the
-- bash completion stay in the rock's own directory (lib/luarocks/rocks-<v>/seastreamer/<ver>/),
-- where the module and the command find them relative to themselves (RPATH $ORIGIN, then the
-- library finds its plugins and runners from its own location). Nothing goes to share/lua.
rockspec_format = "3.0"
package = "seastreamer"
version = "scm-1"
source = {
  url = "git+https://github.com/SeaQL/sea-streamer-c", -- `luarocks make` builds the checkout at hand
}
description = {
  summary = "Stream processors in Lua over Kafka, Redis Streams, stdio and .ss files",
  detailed = [[
The Lua binding of libseastreamer: runtime, connect, producer with receipts, consumer iterators
that yield inside coroutines, read-only lazy message views, and seastreamer.run, the processor
pipeline with at-least-once commits. The rock also installs libseastreamer, every backend plugin,
the processor runner for this Lua and the `seastreamer` command.]],
  license = "MIT OR Apache-2.0",
}
-- Only Lua itself: nothing for LuaRocks to download. The C libraries (libuv, librdkafka, hiredis,
-- libmicrohttpd, the Lua/LuaJIT headers) come from the system (Debian: scripts/deps.sh) through pkg-config.
dependencies = { "lua >= 5.1" }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    CMAKE_INSTALL_BINDIR = "bin",
    CMAKE_INSTALL_LIBDIR = "host/lib",
    CMAKE_INSTALL_LIBEXECDIR = "host/libexec",
    CMAKE_INSTALL_INCLUDEDIR = "host/include",
    SEA_BUILD_TESTS = "OFF",
    SEA_LUAROCKS_PREFIX = "$(PREFIX)",
    SEA_LUAROCKS_LUA = "$(LUA)",
    SEA_LUA_MODULE_DIR = "$(LIBDIR)",
  },
}
-- The busted specs (tests/spec) on this Lua (5.1: LuaJIT), against the build `luarocks make`
-- left in build.luarocks (or a fresh one); Debian's busted, found on PATH.
test = {
  type = "command",
  script = "tests/lua/luarocks_test.lua",
}
