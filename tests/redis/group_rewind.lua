-- tests/redis/group_rewind.lua URI GROUP HOW ARG OUT: a load-balanced member of GROUP (the module's
-- consumer) moves the group and reads, writing each payload on a line of OUT and acknowledging it.
-- HOW:
--   beginning  rewind("beginning"), then read to the end (stop_at_end)
--   seq        rewind(ARG) (a seq as a decimal string), then read to the end
--   seek       seek(ARG) (µs since the epoch), then read to the end
--   again      rewind("beginning"), read ARG messages, commit, rewind("beginning") again while
--              running, read ARG more
-- Exits non-zero (an error naming what failed) on any failure; commits before it ends.
local sea = require "seastreamer"
local uri, group, how, arg, out = ...
local rt = sea.runtime()
local s = assert(rt:connect(uri))
local c = assert(s:consumer({ mode = "load-balanced", group = group,
                              stop_at_end = how ~= "again" }))
local f = assert(io.open(out, "w"))
local function read(limit)
  local n = 0
  while limit == nil or n < limit do
    local msg, err = c:next()
    if msg == nil then
      assert(err == nil, err)
      break
    end
    f:write(msg.payload, "\n")
    c:ack(msg)
    n = n + 1
    if n % 5000 == 0 then assert(c:commit()) end
  end
  assert(c:commit())
end
if how == "beginning" then
  assert(c:rewind("beginning"))
  read()
elseif how == "seq" then
  assert(c:rewind(arg))
  read()
elseif how == "seek" then
  assert(c:seek(tonumber(arg)))
  read()
elseif how == "again" then
  assert(c:rewind("beginning"))
  read(tonumber(arg))
  assert(c:rewind("beginning"))
  read(tonumber(arg))
else
  error("group_rewind.lua: unknown HOW " .. tostring(how))
end
f:close()
local e = c:error()
c:close()
s:close()
assert(e == nil, e)
