-- bench/lua_own.lua MODE N: the work of an example processor's own Lua code, without
-- seastreamer, for bench/lua to compare with what `seastreamer run` costs over the relay.
--
-- N distinct payloads of 100 bytes, as bench/lua writes them, are made into Lua strings one by
-- one the way the runner hands them out (LuaJIT: ffi.string of C memory, as its driver's
-- msg.payload; Lua 5.4: a new string from one large string), and then, by MODE:
--   make   nothing more (the cost of msg.payload alone)
--   upper  s:upper()                                   (examples/uppercase.lua)
--   json   cjson.safe's decode, as the example uses it; orders kept, the others get `kind`
--          and are encoded again                       (examples/json_route.lua)
-- Each result is kept in a ring of 1024 slots, as the runner's LuaJIT driver keeps its last
-- string results. It prints the loop's CPU time per message (os.clock, set-up excluded); for
-- instructions, run it with N and with 0 under valgrind: the difference over N is the cost per
-- message.
local mode, n = arg[1], tonumber(arg[2])
assert(mode == "make" or mode == "upper" or mode == "json", "usage: lua_own.lua make|upper|json N")
assert(n and n >= 0, "usage: lua_own.lua make|upper|json N")
local K = tonumber(arg[3]) or 200000 -- distinct payloads: the same set-up for every N
local pad = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"
  .. "abcdefghijklmnopqrstuvwxyz0123456789"
-- payload i: its first bytes (short), then the padding, as bench/lua writes it
local function head(i)
  if mode == "json" then
    return string.format('{"type":"%s","id":%d,"pad":"', i % 2 == 1 and "order" or "quote", i)
  end
  return "m" .. i .. "-"
end
local make
if jit then
  -- Straight into C memory: K long strings alive at once would all share LuaJIT's string hash
  -- (it samples a few positions, and these payloads differ only in their first bytes), which
  -- makes the set-up, and every string made after it, slow for reasons of its own.
  local ffi = require "ffi"
  local buf = ffi.new("char[?]", K * 100)
  for i = 1, K do
    local h, p = head(i), buf + (i - 1) * 100
    ffi.copy(p, h, #h)
    ffi.copy(p + #h, pad, 100 - #h)
    if mode == "json" then ffi.copy(p + 98, '"}', 2) end
  end
  local fstring = ffi.string
  make = function(k) return fstring(buf + (k - 1) * 100, 100) end
else
  local parts = {}
  for i = 1, K do
    local p = (head(i) .. pad):sub(1, 100)
    if mode == "json" then p = p:sub(1, 98) .. '"}' end
    parts[i] = p
  end
  local all = table.concat(parts)
  local sub = string.sub
  make = function(k) return sub(all, (k - 1) * 100 + 1, k * 100) end
end
local cjson = mode == "json" and require "cjson"
local decode = mode == "json" and require("cjson.safe").decode
collectgarbage()
local ring = {}
local c0 = os.clock()
for i = 1, n do
  local s = make((i - 1) % K + 1)
  local r = s
  if mode == "upper" then
    r = s:upper()
  elseif mode == "json" then
    local obj = decode(s)
    if type(obj) ~= "table" then error("not a JSON object: " .. s:sub(1, 40)) end
    if obj.type == "order" then
      r = nil
    else
      obj.kind = obj.type or "none"
      obj.type = nil
      r = cjson.encode(obj)
    end
  end
  ring[i % 1024 + 1] = r
end
if n > 0 then
  print(string.format("%.1f ns per message (CPU)", (os.clock() - c0) * 1e9 / n))
end
