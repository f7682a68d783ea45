-- window.lua: a tumbling-window count per stream key, emitted on a timer as "KEY COUNT", and
-- once more for the last (partial) window when the input ends.
-- seastreamer run examples/window.lua --input stdio:// --output stdio:///counts  (WINDOW_MS: env)
local counts, keys = {}, {}

local function emit(out)
  table.sort(keys)
  for _, k in ipairs(keys) do out:send(nil, k .. " " .. counts[k]) end
  counts, keys = {}, {}
end

return {
  -- a message is done (committed) only once the tick that counted it has sent its window
  hold = true,
  tick_ms = tonumber(os.getenv("WINDOW_MS") or "1000"),
  process = function(msg)
    local k = msg.stream_key
    if not counts[k] then
      counts[k] = 0
      keys[#keys + 1] = k
    end
    counts[k] = counts[k] + 1
    -- nothing per message: the window's counts go out on the tick
  end,
  tick = emit,
  stop = emit,
}
