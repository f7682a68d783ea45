-- join_spec.lua: seastreamer.run{ join = true }, the module's way to the pipeline's time-order join
-- (the code path of `seastreamer run --join`), over mem:// in this process.
local sea = require "seastreamer"

-- Send one message per timestamp (µs; the payload is the timestamp) and keep the stream open: a
-- mem broker lives while a streamer names it.
local function fill_ts(rt, uri, stamps)
  local s = assert(rt:connect(uri))
  local p = assert(s:producer())
  for _, ts in ipairs(stamps) do assert(p:send(tostring(ts), { timestamp = ts })) end
  assert(p:flush())
  p:close()
  return s
end

local function range(from, step, n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = from + i * step end
  return t
end

local function read_all(rt, uri)
  local s = assert(rt:connect(uri))
  local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
  local out = {}
  for m in c:messages() do out[#out + 1] = tonumber(m.payload) end
  s:close()
  return out
end

describe("seastreamer.run{ join = true }", function()
  local rt, keep
  before_each(function()
    rt = sea.runtime()
    keep = {}
  end)
  after_each(function()
    for _, s in ipairs(keep) do s:close() end
    rt:close()
  end)

  local ends = { start = "beginning", stop_at_end = true, batch = 3 }

  it("hands the processor two inputs in timestamp order", function()
    keep[1] = fill_ts(rt, "mem://js1/a", range(1, 2, 20))
    keep[2] = fill_ts(rt, "mem://js1/b", range(2, 2, 20))
    keep[3] = assert(rt:connect("mem://js1/out"))
    local seen = {}
    local res = assert(sea.run {
      processor = function(msg)
        seen[#seen + 1] = tonumber(msg.payload)
        return msg
      end,
      inputs = { "mem://js1/a", "mem://js1/b" }, outputs = { "mem://js1/out" },
      input_options = ends, join = true,
    })
    assert.equals(40, res.processed)
    assert.equals(0, res.late)
    assert.same(range(1, 1, 40), seen)
    assert.same(range(1, 1, 40), read_all(rt, "mem://js1/out"))
  end)

  it("keeps delivery order without join (so the case above can fail)", function()
    keep[1] = fill_ts(rt, "mem://js2/a", range(1, 2, 20))
    keep[2] = fill_ts(rt, "mem://js2/b", range(2, 2, 20))
    keep[3] = assert(rt:connect("mem://js2/out"))
    local seen = {}
    assert(sea.run {
      processor = function(msg) seen[#seen + 1] = tonumber(msg.payload) end,
      inputs = { "mem://js2/a", "mem://js2/b" }, outputs = { "mem://js2/out" },
      input_options = ends,
    })
    assert.equals(40, #seen)
    assert.are_not.same(range(1, 1, 40), seen)
  end)

  it("orders the keys of one input, ties by stream key, with a batch processor", function()
    keep[1] = fill_ts(rt, "mem://js3/y", { 5, 6 })
    keep[2] = fill_ts(rt, "mem://js3/x", { 5, 5, 7 })
    keep[3] = assert(rt:connect("mem://js3/out"))
    local seen = {}
    assert(sea.run {
      processor = { batch = function(b)
        for i = 1, #b do seen[#seen + 1] = b[i].stream_key .. b[i].payload end
      end },
      inputs = { "mem://js3/x,y" }, outputs = { "mem://js3/out" },
      input_options = ends, join = true,
    })
    assert.same({ "x5", "x5", "y5", "y6", "x7" }, seen)
  end)

  it("goes on without an input that never speaks after join_wait_ms", function()
    keep[1] = fill_ts(rt, "mem://js4/a", range(1, 1, 10))
    keep[2] = assert(rt:connect("mem://js4/silent"))
    keep[3] = assert(rt:connect("mem://js4/out"))
    local seen = {}
    local res = assert(sea.run {
      processor = function(msg) seen[#seen + 1] = tonumber(msg.payload) end,
      inputs = { "mem://js4/a", "mem://js4/silent" }, outputs = { "mem://js4/out" },
      input_options = { start = "beginning" }, join = true, join_wait_ms = 50, join_max = 4,
      max_count = 10,
    })
    assert.equals(10, res.processed)
    assert.same(range(1, 1, 10), seen)
  end)

  it("counts a late message in the result", function()
    keep[1] = fill_ts(rt, "mem://js5/a", { 10, 20, 30 })
    keep[2] = assert(rt:connect("mem://js5/b"))
    keep[3] = assert(rt:connect("mem://js5/out"))
    local first, seen = nil, {}
    local res = assert(sea.run {
      processor = function(msg, out)
        seen[#seen + 1] = tonumber(msg.payload)
        if not first then first = msg:copy() end
        -- After the last one, the first again (timestamp 10) into input b: late.
        if msg.payload == "30" then out:send("back", first) end
      end,
      inputs = { "mem://js5/a", "mem://js5/b" },
      outputs = { "mem://js5/out", back = "mem://js5/b" },
      input_options = { start = "beginning" }, join = true, join_wait_ms = 20, max_count = 4,
    })
    assert.equals(4, res.processed)
    assert.equals(1, res.late)
    assert.same({ 10, 20, 30, 10 }, seen)
  end)

  it("refuses join with exactly_once", function()
    local ok, err = pcall(sea.run, {
      processor = function() end, inputs = { "mem://js6/a" }, outputs = { "mem://js6/out" },
      join = true, exactly_once = true,
    })
    assert.is_false(ok)
    assert.matches("join with exactly_once is not supported", err, 1, true)
  end)
end)
