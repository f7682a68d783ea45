-- json_route.lua: JSON objects in; those whose "type" is "order" go to the named output
-- `orders`, the others (with their "type" copied to "kind") to the default one; a line that is
-- not a JSON object is an error, which the --on-error policy handles.
-- seastreamer run examples/json_route.lua --input stdio:// --output stdio:///other \
--     --output orders=stdio:///orders --on-error skip
local cjson = require "cjson"
-- cjson.safe's decode returns nil (and why) for bad input instead of raising: no pcall, which
-- LuaJIT does not compile around a C function.
local decode = require("cjson.safe").decode

return function(msg, out)
  local obj = decode(msg.payload)
  if type(obj) ~= "table" then
    error("not a JSON object: " .. msg.payload:sub(1, 40))
  end
  if obj.type == "order" then
    out:send("orders", msg) -- routed unchanged: the bytes are not copied
    return nil
  end
  obj.kind = obj.type or "none"
  obj.type = nil
  return cjson.encode(obj)
end
