-- bench/lua_batch/json_route_batch.lua: examples/json_route.lua written as a batch processor
-- (orders to the output `orders` with out:send, the others re-encoded and returned as a list),
-- for bench/lua to compare the two forms (BENCH_SCRIPTS="json_route json_route_batch").
local cjson = require "cjson"
local decode = require("cjson.safe").decode

return {
  batch = function(batch, out)
    local res, n = {}, 0
    for i = 1, #batch do
      local msg = batch[i]
      local obj = decode(msg.payload)
      if type(obj) ~= "table" then
        error("not a JSON object: " .. msg.payload:sub(1, 40))
      end
      if obj.type == "order" then
        out:send("orders", msg)
      else
        obj.kind = obj.type or "none"
        obj.type = nil
        n = n + 1
        res[n] = cjson.encode(obj)
      end
    end
    return res
  end,
}
