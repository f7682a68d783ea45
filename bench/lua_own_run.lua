-- bench/lua_own_run.lua: bench/lua_own.lua inside `seastreamer run`, so that the scripts' own
-- work is measured on the very Lua the runner's processors get (the same library, allocator and
-- memory limit), not on the stand-alone interpreter, whose figures differ from it (LuaJIT's
-- /usr/bin/luajit is linked statically and allocates without the runner's count). A source with
-- no input: its start hook runs the loop and stops the run. bench/lua passes lua_own.lua's
-- arguments, "MODE N [K]", in BENCH_OWN_ARGS.
local args = {}
for w in (os.getenv("BENCH_OWN_ARGS") or ""):gmatch("%S+") do
  args[#args + 1] = w
end
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
return {
  start = function(out)
    arg = args -- lua_own.lua reads its arguments as a stand-alone script does
    dofile(dir .. "lua_own.lua")
    out:stop()
  end,
  tick = function() end,
}
