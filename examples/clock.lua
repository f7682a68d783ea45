-- clock.lua: a source: no input, one "tick N" message per tick, then stop.
-- seastreamer run examples/clock.lua --output stdio:///clock   (CLOCK_COUNT, CLOCK_MS: env)
local count = tonumber(os.getenv("CLOCK_COUNT") or "10")
local n = 0
return {
  tick_ms = tonumber(os.getenv("CLOCK_MS") or "100"),
  tick = function(out, now_us)
    out:send(nil, string.format("tick %d", n))
    n = n + 1
    if n >= count then out:stop() end
  end,
  process = function(msg) return msg end, -- with an input, pass it through as well
}
