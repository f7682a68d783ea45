-- seastreamer-scm-1.rockspec: the Lua module, built by `luarocks make` offline against an
-- installed libseastreamer (`make install`) and libuv, for Lua 5.4 and for 5.1/LuaJIT.
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
pipeline with at-least-once commits.]],
  license = "MIT OR Apache-2.0",
}
-- Only Lua itself: nothing for LuaRocks to download.
dependencies = { "lua >= 5.1" }
external_dependencies = {
  SEASTREAMER = { header = "seastreamer/seastreamer.h", library = "seastreamer" },
  UV = { header = "uv.h", library = "uv" },
}
build = {
  type = "builtin",
  modules = {
    seastreamer = {
      sources = { "lua/seastreamer.c", "lua/run.c" },
      incdirs = { "lua", "$(SEASTREAMER_INCDIR)", "$(UV_INCDIR)" },
      libdirs = { "$(SEASTREAMER_LIBDIR)", "$(UV_LIBDIR)" },
      libraries = { "seastreamer", "uv" },
      defines = { "_GNU_SOURCE" },
    },
  },
}
