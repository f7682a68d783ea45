-- stats_spec.lua: out:stats() inside seastreamer.run: the pipeline's counters (the numbers
-- --stats prints) and each input's lag, from a per-message, a limited and a batch processor; and
-- c:lag() of the module's consumer.
local sea = require "seastreamer"

local function fill(rt, uri, payloads)
  local s = assert(rt:connect(uri))
  local p = assert(s:producer())
  for _, v in ipairs(payloads) do assert(p:send(v)) end
  assert(p:flush())
  p:close()
  return s
end

local KEYS = { "messages_in", "messages_out", "bytes_in", "bytes_out", "confirmed", "inflight",
  "skipped", "commits", "late", "lag" }

describe("out:stats()", function()
  local rt, keep
  local payloads = { "a", "bb", "ccc", "dddd", "eeeee", "ffffff" } -- 21 bytes
  before_each(function() rt = sea.runtime() end)
  after_each(function()
    if keep then keep:close() end
    keep = nil
    rt:close()
  end)

  -- kind: "message" (driven), "limited" (a call per message), "batch"
  for _, kind in ipairs({ "message", "limited", "batch" }) do
    it("counts what went in and out (" .. kind .. " processor)", function()
      local base = "mem://st_" .. kind
      keep = fill(rt, base .. "/in", payloads)
      local hold = assert(rt:connect(base .. "/out"))
      local seen, last = {}, nil
      local proc = {
        stop = function(out) last = out:stats() end,
      }
      if kind == "batch" then
        proc.batch = function(b, out)
          seen[#seen + 1] = out:stats()
          local r = {}
          for i = 1, #b do r[i] = b[i].payload .. "!" end
          return r
        end
      else
        proc.process = function(msg, out)
          seen[#seen + 1] = out:stats()
          return msg.payload .. "!"
        end
      end
      local res = assert(sea.run {
        processor = proc,
        inputs = { base .. "/in" }, outputs = { base .. "/out" },
        input_options = { start = "beginning", stop_at_end = true },
        max_instructions = kind == "limited" and 1000000 or nil,
      })
      assert.equals(6, res.processed)
      assert.is_true(#seen >= 1)
      for i, s in ipairs(seen) do
        for _, k in ipairs(KEYS) do assert.is_not_nil(s[k], k) end
        assert.is_true(s.messages_in <= 6)
        if i > 1 then assert.is_true(s.messages_in >= seen[i - 1].messages_in) end
        assert.same({}, s.lag) -- mem cannot tell
      end
      assert.equals(0, seen[1].messages_in)
      -- At the stop every message was handed over and sent (one payload and "!" each).
      assert.equals(6, last.messages_in)
      assert.equals(21, last.bytes_in)
      assert.equals(6, last.messages_out)
      assert.equals(27, last.bytes_out)
      assert.equals(last.messages_out - last.confirmed, last.inflight)
      if math.type then -- 5.4: counts are integers (printed 6, not 6.0)
        for _, k in ipairs(KEYS) do
          if k ~= "lag" then assert.equals("integer", math.type(last[k]), k) end
        end
        for _, k in ipairs({ "processed", "produced", "skipped", "late" }) do
          assert.equals("integer", math.type(res[k]), k)
        end
      end
      hold:close()
    end)
  end

  it("reports a file input's lag: 0 bytes behind at the end", function()
    local path = os.tmpname()
    os.remove(path)
    path = path .. ".ss"
    local s = fill(rt, "file://" .. path .. "/k", payloads)
    s:close()
    local hold = assert(rt:connect("mem://st_file/out"))
    local last
    assert(sea.run {
      processor = { process = function(msg) return msg end, stop = function(out) last = out:stats() end },
      inputs = { "file://" .. path .. "/k" }, outputs = { "mem://st_file/out" },
      input_options = { start = "beginning", stop_at_end = true },
    })
    assert.equals(6, last.messages_in)
    assert.equals(1, #last.lag)
    assert.same({ input = 1, stream = "k", shard = 0, lag = 0, lag_bytes = 0 }, last.lag[1])
    if math.type then
      for _, k in ipairs({ "shard", "lag", "lag_bytes" }) do assert.equals("integer", math.type(last.lag[1][k]), k) end
    end
    hold:close()
    os.remove(path)
  end)

  it("c:lag() of the module's consumer: a file's bytes behind, then 0 at the end", function()
    local path = os.tmpname()
    os.remove(path)
    path = path .. ".ss"
    fill(rt, "file://" .. path .. "/k", payloads):close()
    local s = assert(rt:connect("file://" .. path .. "/k"))
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    local before = assert(c:lag())
    assert.equals(1, #before)
    assert.equals("k", before[1].stream)
    assert.equals(0, before[1].shard)
    assert.is_nil(before[1].lag) -- not known before the end
    assert.is_true(before[1].lag_bytes > 0)
    local n = 0
    for _ in c:messages() do n = n + 1 end
    assert.equals(6, n)
    assert.same({ { stream = "k", shard = 0, lag = 0, lag_bytes = 0 } }, c:lag())
    s:close()
    os.remove(path)
    local m = assert(rt:connect("mem://st_lag/k"))
    local mc = assert(m:consumer())
    local none, msg, code = mc:lag()
    assert.is_nil(none)
    assert.equals("ENOTSUP", code)
    assert.is_string(msg)
    m:close()
  end)

  it("is refused after the run", function()
    local saved
    keep = fill(rt, "mem://st_after/in", { "x" })
    local hold = assert(rt:connect("mem://st_after/out"))
    assert(sea.run {
      processor = function(msg, out) saved = out return msg end,
      inputs = { "mem://st_after/in" }, outputs = { "mem://st_after/out" },
      input_options = { start = "beginning", stop_at_end = true },
    })
    assert.has_error(function() saved:stats() end)
    hold:close()
  end)
end)
