-- luarocks_test.lua: what `luarocks test` runs (rockspec test.type = "command"): the busted specs
-- in tests/spec on the Lua LuaRocks runs this with (5.4, or LuaJIT for 5.1), against the build
-- `luarocks make` left in build.luarocks, or a build made here if there is none.
-- Arguments are passed on to busted. Debian's busted is used (from PATH), told which Lua to run
-- (--lua), with LUA_PATH/LUA_CPATH removed (`luarocks path` sets them unversioned, which breaks
-- busted's own launcher) and the module given by --cpath, never ./?.so.
local v = assert(_VERSION:match("%d+%.%d+"), _VERSION)
local interp, runner
if v == "5.4" then
  interp, runner = "lua5.4", "5.4"
elseif v == "5.1" then
  interp, runner = "luajit", "luajit"
else
  io.stderr:write("luarocks_test: Lua ", v, " is not supported (5.4, or 5.1 for LuaJIT)\n")
  os.exit(1)
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function sh(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end
local pwd = io.popen("pwd"):read("*l")
local function exists(f)
  local h = io.open(f)
  if h then h:close() end
  return h ~= nil
end
-- build.luarocks is the build of the last `luarocks make`, which may have been for the other Lua
-- (its CMakeCache names the interpreter LuaRocks gave): this Lua then uses build.luarocks-<v>.
-- Either is brought up to date first, so the specs never run a module older than the sources.
local function configured_for(dir)
  local h = io.open(dir .. "/CMakeCache.txt")
  if not h then return nil end
  local lua
  for line in h:lines() do lua = lua or line:match("^SEA_LUAROCKS_LUA:FILEPATH=(.+)$") end
  h:close()
  if not lua or lua == "" then return nil end
  local p = io.popen(q(lua) .. [[ -e 'io.write((_VERSION:gsub("^Lua ", "")))' 2>/dev/null]])
  local ver = p and p:read("*a")
  if p then p:close() end
  return ver
end
local build = os.getenv("SEA_ROCK_BUILD") or (pwd .. "/build.luarocks")
if not os.getenv("SEA_ROCK_BUILD") and configured_for(build) ~= v then
  build = pwd .. "/build.luarocks-" .. v
end
local module = build .. "/lua/" .. v .. "/seastreamer.so"
if not exists(build .. "/CMakeCache.txt") then
  print("luarocks_test: configuring " .. build)
  if not sh("cmake -S . -B " .. q(build) .. " -DSEA_BUILD_TESTS=OFF -DSEA_LUA=" .. v .. " >/dev/null") then
    os.exit(1)
  end
end
if not (sh("cmake --build " .. q(build) .. " >/dev/null") and exists(module)) then
  io.stderr:write("luarocks_test: no " .. module .. " after building " .. build .. "\n")
  os.exit(1)
end

local args = {}
for i = 1, #arg do args[#args + 1] = q(arg[i]) end
local cmd = table.concat({
  "env -u LUA_PATH -u LUA_CPATH -u LUA_INIT",
  "SEASTREAMER_PLUGIN_DIR=" .. q(build .. "/plugins"),
  "SEA_BUILD_DIR=" .. q(build),
  "SEA_EXAMPLES_DIR=" .. q(pwd .. "/examples"),
  "SEA_LUA=" .. runner,
  "busted --lua=" .. interp,
  "--cpath=" .. q(build .. "/lua/" .. v .. "/?.so"),
  "--output=plainTerminal",
  table.concat(args, " "),
  q(pwd .. "/tests/spec"),
}, " ")
print(cmd)
os.exit(sh(cmd) and 0 or 1)
