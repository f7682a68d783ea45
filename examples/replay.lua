-- replay.lua: replays a stream (e.g. a .ss file) at its original pace: each message goes out
-- when as much time has passed since the first one as separated their timestamps.
-- seastreamer run examples/replay.lua -I start=beginning -e --input file://feed.ss/orders --output stdio:///orders
-- REPLAY_SPEED=2 replays twice as fast. Messages wait in memory (copies) until they are due, so
-- the input is committed as it is read, not as it is replayed.
local sea = require "seastreamer"

local speed = tonumber(os.getenv("REPLAY_SPEED") or "1")
local queue, head, tail = {}, 1, 0
local t0_msg, t0_wall
local ended = false

local function release(out, now)
  while head <= tail do
    local m = queue[head]
    if t0_msg == nil then t0_msg, t0_wall = m.timestamp, now end
    if (m.timestamp - t0_msg) / speed > now - t0_wall then break end
    out:send(nil, m)
    queue[head] = nil
    head = head + 1
  end
  if ended and head > tail then out:stop() end
end

return {
  linger = true, -- the end of the input does not end the run: release() does, once all is out
  tick_ms = 5,
  process = function(msg, out)
    tail = tail + 1
    queue[tail] = msg:copy()
    release(out, sea.now())
  end,
  tick = release,
  input_end = function(out)
    ended = true
    release(out, sea.now())
  end,
}
