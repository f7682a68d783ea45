-- run_spec.lua: seastreamer.run, the processor pipeline, over mem:// in this process: outputs,
-- at-least-once commits, error policies, limits, batch mode and hooks.
local sea = require "seastreamer"

local function fill(rt, uri, n)
  local s = assert(rt:connect(uri))
  local p = assert(s:producer())
  for i = 0, n - 1 do assert(p:send("m" .. i)) end
  assert(p:flush())
  p:close()
  return s
end

local function read_all(rt, uri, opts)
  local s = assert(rt:connect(uri))
  local c = assert(s:consumer(opts or { start = "beginning", stop_at_end = true }))
  local out = {}
  for m in c:messages() do out[#out + 1] = m.payload end
  s:close()
  return out
end

-- The first seq a new member of group g would read next on uri (nil if it is caught up).
local function committed(rt, uri, g)
  local s = assert(rt:connect(uri))
  local c = assert(s:consumer({ group = g, mode = "resumable", reset = "earliest", stop_at_end = true }))
  local m = c:next()
  local seq = m and m.seq
  s:close()
  return seq
end

local group_in = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true }

describe("seastreamer.run", function()
  local rt, keep
  before_each(function() rt = sea.runtime() end)
  after_each(function()
    if keep then keep:close() end
    keep = nil
    rt:close()
  end)

  it("runs a function processor: nil drops, a string or a list sends", function()
    keep = fill(rt, "mem://r1/in", 6)
    local hold = assert(rt:connect("mem://r1/out"))
    local res = assert(sea.run {
      processor = function(msg)
        local n = tonumber(msg.payload:sub(2))
        if n % 3 == 0 then return nil end
        if n % 3 == 1 then return msg.payload:upper() end
        return { msg.payload .. "a", msg.payload .. "b" }
      end,
      inputs = { "mem://r1/in" }, outputs = { "mem://r1/out" }, input_options = group_in,
    })
    assert.equals(6, res.processed)
    assert.same({ "M1", "m2a", "m2b", "M4", "m5a", "m5b" }, read_all(rt, "mem://r1/out"))
    assert.is_nil(committed(rt, "mem://r1/in", "g")) -- everything committed
    hold:close()
  end)

  it("forwards the message itself without copying, and routes with out:send", function()
    keep = fill(rt, "mem://r2/in", 4)
    local hold = assert(rt:connect("mem://r2/odd"))
    assert(sea.run {
      processor = function(msg, out)
        if tonumber(msg.payload:sub(2)) % 2 == 1 then
          out:send("odd", msg)
          return nil
        end
        return msg
      end,
      inputs = { "mem://r2/in" }, outputs = { "mem://r2/even", odd = "mem://r2/odd" },
      input_options = group_in,
    })
    assert.same({ "m0", "m2" }, read_all(rt, "mem://r2/even"))
    assert.same({ "m1", "m3" }, read_all(rt, "mem://r2/odd"))
    hold:close()
  end)

  it("stops on a processor error: names the script line and commits nothing from there", function()
    keep = fill(rt, "mem://r3/in", 10)
    local ok, msg, code = sea.run {
      processor = function(msg)
        if msg.payload == "m5" then error("cannot handle " .. msg.payload) end
        return msg
      end,
      inputs = { "mem://r3/in" }, outputs = { "mem://r3/out" }, input_options = group_in,
    }
    assert.is_nil(ok)
    assert.equals("EINVAL", code)
    assert.matches("run_spec.lua:%d+: cannot handle m5", msg)
    assert.matches("at message in | 5 of mem://r3/in", msg)
    assert.equals(5, committed(rt, "mem://r3/in", "g"))
    assert.same({ "m0", "m1", "m2", "m3", "m4" }, read_all(rt, "mem://r3/out"))
  end)

  it("skips failed messages with on_error = skip", function()
    keep = fill(rt, "mem://r4/in", 5)
    local res = assert(sea.run {
      processor = function(msg)
        if msg.payload == "m2" then error("bad") end
        return msg
      end,
      on_error = "skip",
      inputs = { "mem://r4/in" }, outputs = { "mem://r4/out" }, input_options = group_in,
    })
    assert.equals(1, res.skipped)
    assert.same({ "m0", "m1", "m3", "m4" }, read_all(rt, "mem://r4/out"))
    assert.is_nil(committed(rt, "mem://r4/in", "g"))
  end)

  it("sends failed messages to the dead-letter output", function()
    keep = fill(rt, "mem://r5/in", 5)
    local hold = assert(rt:connect("mem://r5/dead"))
    assert(sea.run {
      processor = function(msg)
        if msg.payload == "m1" or msg.payload == "m3" then return 42 end
        return msg
      end,
      on_error = "dead-letter", dead_letter = "mem://r5/dead",
      inputs = { "mem://r5/in" }, outputs = { "mem://r5/out" }, input_options = group_in,
    })
    assert.same({ "m1", "m3" }, read_all(rt, "mem://r5/dead"))
    assert.same({ "m0", "m2", "m4" }, read_all(rt, "mem://r5/out"))
    hold:close()
  end)

  it("names the processor's line when it returns a wrong type", function()
    keep = fill(rt, "mem://r6/in", 2)
    local ok, msg = sea.run {
      name = "typed.lua",
      processor = function() return true end,
      inputs = { "mem://r6/in" }, outputs = { "mem://r6/out" }, input_options = group_in,
    }
    assert.is_nil(ok)
    assert.matches("run_spec.lua:%d+: processor returned a boolean", msg)
    ok, msg = sea.run {
      processor = function() return { "fine", {} } end,
      inputs = { "mem://r6/in" }, outputs = { "mem://r6/out" }, input_options = group_in,
    }
    assert.is_nil(ok)
    assert.matches("item 2 is a table", msg)
  end)

  it("rejects what is not a processor, naming the script", function()
    for _, bad in ipairs({ 42, {}, { process = 1 }, { process = print, batch = print } }) do
      assert.has_error(function()
        sea.run { name = "bad.lua", processor = bad, inputs = { "mem://x/in" }, outputs = { "mem://x/o" } }
      end)
    end
    local ok, err = pcall(sea.run, { name = "bad.lua", inputs = { "mem://x/in" }, outputs = { "mem://x/o" } })
    assert.is_false(ok)
    assert.matches("bad.lua: returned nothing, expected a processor", err)
    assert.has_error(function() sea.run { processor = print, inputs = {}, outputs = { "mem://x/o" } } end)
    assert.has_error(function() sea.run { processor = print, inputs = { "mem://x/i" }, outputs = {} } end)
    assert.has_error(function()
      sea.run { processor = print, on_error = "ignore", inputs = { "mem://x/i" }, outputs = { "mem://x/o" } }
    end)
    -- a misspelt field is named, not left to its default
    ok, err = pcall(sea.run, { processor = print, on_eror = "skip", inputs = { "mem://x/i" }, outputs = { "mem://x/o" } })
    assert.is_false(ok)
    assert.matches("seastreamer%.run: unknown field 'on_eror'", err)
    for field, v in pairs({ max_ms = -1, max_instructions = 2 ^ 60, tick_ms = 1e300 }) do
      ok, err = pcall(sea.run, { processor = print, [field] = v, inputs = { "mem://x/i" }, outputs = { "mem://x/o" } })
      assert.is_false(ok)
      assert.matches("seastreamer%.run: " .. field .. " must " .. (v < 0 and "not be negative" or "be at most 2%^53"), err)
    end
  end)

  it("stops a processor that never returns, by instruction count and by time", function()
    keep = fill(rt, "mem://r7/in", 3)
    local ok, msg = sea.run {
      processor = function() while true do end end, max_instructions = 100000,
      inputs = { "mem://r7/in" }, outputs = { "mem://r7/out" }, input_options = group_in,
    }
    assert.is_nil(ok)
    assert.matches("run_spec.lua:%d+: instruction limit exceeded", msg)
    ok, msg = sea.run {
      processor = function() while true do end end, max_ms = 50,
      inputs = { "mem://r7/in" }, outputs = { "mem://r7/out" }, input_options = group_in,
    }
    assert.is_nil(ok)
    assert.matches("time limit exceeded", msg)
    assert.equals(0, committed(rt, "mem://r7/in", "g"))
  end)

  it("fails a call that hit a limit even if the processor caught it and returned", function()
    keep = fill(rt, "mem://r7c/in", 3)
    for _, limit in ipairs({ { max_instructions = 100000, want = "instruction limit exceeded" },
      { max_ms = 50, want = "time limit exceeded" } }) do
      local calls = 0
      local ok, msg = sea.run {
        processor = function(m)
          calls = calls + 1
          local caught = pcall(function() while true do end end)
          return caught and "never" or m
        end,
        max_instructions = limit.max_instructions, max_ms = limit.max_ms,
        inputs = { "mem://r7c/in" }, outputs = { "mem://r7c/out" }, input_options = group_in,
      }
      assert.is_nil(ok)
      assert.matches("run_spec.lua:%d+: " .. limit.want, msg)
      assert.matches("the processor caught the error and went on", msg)
      assert.equals(1, calls)
    end
    assert.equals(0, committed(rt, "mem://r7c/in", "g"))
    assert.same({}, read_all(rt, "mem://r7c/out"))
  end)

  it("builds msg.headers once per message, for messages and for batches", function()
    local hold = assert(rt:connect("mem://rhd/in"))
    local p = assert(hold:producer())
    assert(p:send("a", { headers = { h = "1" } }))
    assert(p:send("b"))
    assert(p:send("c", { headers = { h = "3", x = "c" } }))
    assert(p:flush())
    local seen = {}
    assert(sea.run {
      processor = function(m)
        assert(m.headers == m.headers, "msg.headers gave two tables")
        seen[#seen + 1] = m.headers
      end,
      inputs = { "mem://rhd/in" }, outputs = { "mem://rhd/out" }, input_options = group_in,
    })
    assert.same({ { h = "1" }, {}, { h = "3", x = "c" } }, seen)
    local bseen = {}
    assert(sea.run {
      processor = {
        batch = function(batch)
          local first = batch[1].headers
          for i = 1, #batch do
            assert(batch[i].headers == batch[i].headers, "batch[i].headers gave two tables")
            bseen[#bseen + 1] = batch[i].headers
          end
          -- read again after the others' (Lua 5.4: light views share one cache per call)
          assert(batch[1].headers == first, "batch[1].headers changed after batch[2].headers")
        end,
      },
      inputs = { "mem://rhd/in" }, outputs = { "mem://rhd/out" },
      input_options = { group = "b", mode = "resumable", reset = "earliest", stop_at_end = true, batch = 2 },
    })
    assert.same({ { h = "1" }, {}, { h = "3", x = "c" } }, bseen)
    hold:close()
  end)

  it("stops a processor that outgrows its memory limit", function()
    keep = fill(rt, "mem://r8/in", 3)
    local hoard = {}
    local ok, msg = sea.run {
      processor = function(m)
        for i = 1, 200000 do hoard[#hoard + 1] = m.payload .. i end
        return m
      end,
      max_memory_kb = 4096,
      inputs = { "mem://r8/in" }, outputs = { "mem://r8/out" }, input_options = group_in,
    }
    hoard = nil
    collectgarbage()
    assert.is_nil(ok)
    assert.matches("memory limit exceeded", msg)
    assert.equals(0, committed(rt, "mem://r8/in", "g"))
  end)

  it("commits nothing past an output that rejects a message", function()
    keep = fill(rt, "mem://r9/in", 10)
    local ok, msg = sea.run {
      processor = function(m) return m end,
      inputs = { "mem://r9/in" }, outputs = { "mem://r9/out" }, input_options = group_in,
      output_options = { fail_after = 3 },
    }
    assert.is_nil(ok)
    assert.matches("rejected", msg)
    local at = committed(rt, "mem://r9/in", "g")
    assert.is_true(at ~= nil and at <= 3)
  end)

  it("calls a batch processor with fewer calls than messages", function()
    keep = fill(rt, "mem://rb/in", 50)
    local calls, seen = 0, 0
    local res = assert(sea.run {
      processor = {
        batch = function(batch)
          calls = calls + 1
          local out = {}
          for i = 1, #batch do
            seen = seen + 1
            out[#out + 1] = batch[i].payload
          end
          return out
        end,
      },
      inputs = { "mem://rb/in" }, outputs = { "mem://rb/out" },
      input_options = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true, batch = 16 },
    })
    assert.equals(50, seen)
    assert.equals(50, res.processed)
    assert.is_true(calls < 50)
    assert.equals(50, #read_all(rt, "mem://rb/out"))
    assert.is_nil(committed(rt, "mem://rb/in", "g"))
  end)

  it("calls start and stop hooks, which may send", function()
    keep = fill(rt, "mem://rh/in", 3)
    local count = 0
    assert(sea.run {
      processor = {
        start = function(out) out:send(nil, "start") end,
        process = function() count = count + 1 end,
        stop = function(out) out:send(nil, "count " .. count) end,
      },
      inputs = { "mem://rh/in" }, outputs = { "mem://rh/out" }, input_options = group_in,
    })
    assert.same({ "start", "count 3" }, read_all(rt, "mem://rh/out"))
  end)

  it("sends a kept out object's out:send through the run under way, by its output names",
    function()
      keep = fill(rt, "mem://rk1/in", 1)
      local kept
      assert(sea.run {
        processor = function(m, out) kept = out end,
        inputs = { "mem://rk1/in" }, outputs = { "mem://rk1/out", a = "mem://rk1/a" },
        input_options = group_in,
      })
      keep:close()
      keep = fill(rt, "mem://rk2/in", 1)
      -- the first run's out names output a, which this run does not have (its c has a's place)
      local ok, err = sea.run {
        processor = function(m) kept:send("a", m) end,
        inputs = { "mem://rk2/in" }, outputs = { "mem://rk2/out", c = "mem://rk2/c" },
        input_options = group_in,
      }
      assert.is_nil(ok)
      assert.matches("no output named 'a'", err)
      assert.same({}, read_all(rt, "mem://rk2/c"))
    end)

  it("refuses out:send once the run is over", function()
    keep = fill(rt, "mem://ro/in", 1)
    local kept
    assert(sea.run {
      processor = function(m, out) kept = out end,
      inputs = { "mem://ro/in" }, outputs = { "mem://ro/out" }, input_options = group_in,
    })
    assert.has_error(function() kept:send(nil, "late") end, nil)
    local ok, err = pcall(kept.send, kept, nil, "late")
    assert.is_false(ok)
    assert.matches("after the run ended", err)
  end)

  -- hold = true: a message is done only once a tick or the stop hook sent what it went into.
  for _, form in ipairs { "process", "limited", "batch" } do
    local function processor(buf, stop)
      local p = { hold = true, stop = stop }
      if form == "batch" then
        p.batch = function(b) for i = 1, #b do buf[#buf + 1] = b[i].payload end end
      else
        p.process = function(m) buf[#buf + 1] = m.payload end
      end
      return p
    end
    it("holds every message until the stop hook sent what it went into (" .. form .. ")", function()
      local name = "hd" .. form
      keep = fill(rt, "mem://" .. name .. "/in", 5)
      local buf = {}
      local res = assert(sea.run {
        processor = processor(buf, function(out) out:send(nil, table.concat(buf, ",")) end),
        inputs = { "mem://" .. name .. "/in" }, outputs = { "mem://" .. name .. "/out" },
        input_options = group_in, max_instructions = form == "limited" and 10000000 or nil,
      })
      assert.equals(5, res.processed)
      assert.same({ "m0,m1,m2,m3,m4" }, read_all(rt, "mem://" .. name .. "/out"))
      assert.is_nil(committed(rt, "mem://" .. name .. "/in", "g")) -- all of them, once sent
    end)

    it("commits nothing held when the stop hook fails before sending (" .. form .. ")", function()
      local name = "hf" .. form
      keep = fill(rt, "mem://" .. name .. "/in", 5)
      local ok, err = sea.run {
        processor = processor({}, function() error("no flush") end),
        inputs = { "mem://" .. name .. "/in" }, outputs = { "mem://" .. name .. "/out" },
        input_options = group_in, max_instructions = form == "limited" and 10000000 or nil,
      }
      assert.is_nil(ok)
      assert.matches("stop hook failed: .*no flush", err)
      assert.equals(0, committed(rt, "mem://" .. name .. "/in", "g")) -- they come again
    end)
  end

  it("commits what it processed without hold, whatever the stop hook does", function()
    -- the contrast: a message is done when its call returns
    keep = fill(rt, "mem://hn/in", 3)
    local ok = sea.run {
      processor = { process = function() end, stop = function() error("no flush") end },
      inputs = { "mem://hn/in" }, outputs = { "mem://hn/out" }, input_options = group_in,
    }
    assert.is_nil(ok)
    assert.is_nil(committed(rt, "mem://hn/in", "g"))
  end)

  it("refuses a hold that is not a boolean, and hold with exactly_once", function()
    local ok, err = pcall(sea.run, {
      processor = { hold = 1, process = function() end },
      inputs = { "mem://hb/in" }, outputs = { "mem://hb/out" },
    })
    assert.is_false(ok)
    assert.matches("the processor's 'hold' is a number, expected true or false", err)
    ok, err = pcall(sea.run, {
      processor = { hold = true, process = function() end },
      inputs = { "mem://hb/in" }, outputs = { "mem://hb/out" }, exactly_once = true,
    })
    assert.is_false(ok)
    assert.matches("'hold' with exactly_once is not supported", err)
  end)

  it("merges several inputs", function()
    keep = fill(rt, "mem://rm/a", 3)
    local k2 = fill(rt, "mem://rm/b", 2)
    local res = assert(sea.run {
      processor = function(m) return m.stream_key .. m.payload end,
      inputs = { "mem://rm/a", "mem://rm/b" }, outputs = { "mem://rm/out" }, input_options = group_in,
    })
    assert.equals(5, res.processed)
    local got = read_all(rt, "mem://rm/out")
    table.sort(got)
    assert.same({ "am0", "am1", "am2", "bm0", "bm1" }, got)
    k2:close()
  end)

  -- The three ways a processor is called: a per-message function run over each batch by the
  -- driver loop, the same with a limit (one call per message), and a batch function.
  local forms = {
    driven = function(f) return { processor = f } end,
    limited = function(f) return { processor = f, max_instructions = 10000000 } end,
    batch = function(f)
      return {
        processor = {
          batch = function(b, out)
            local res = {}
            for i = 1, #b do
              local r = f(b[i], out)
              if r ~= nil then res[#res + 1] = r end
            end
            return res
          end,
        },
      }
    end,
  }
  local function run_form(form, f, name, n, extra)
    keep = fill(rt, "mem://" .. name .. "/in", n)
    local cfg = forms[form](f)
    cfg.inputs = { "mem://" .. name .. "/in" }
    cfg.outputs = { "mem://" .. name .. "/out" }
    cfg.input_options = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true,
      batch = "2" }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    return sea.run(cfg)
  end

  -- Each input batch holds 2 messages: a batch call gets two, the other forms one message a call.
  for _, form in ipairs { "driven", "limited", "batch" } do
    local batch = form == "batch"
    it("expires a message kept past its call (" .. form .. ")", function()
      local kept, copy, seen
      local ok, err = run_form(form, function(m)
        if kept then seen = kept.payload end -- raises: the call that received it returned
        kept, copy = m, m:copy()
        return m
      end, "v" .. form, 4)
      assert.is_nil(ok)
      assert.matches("message used after the call that received it returned %(field 'payload'", err)
      assert.matches("run_spec.lua:%d+:", err)
      -- within its call a batch's messages stay valid
      assert.equals(batch and "m0" or nil, seen)
      assert.equals(batch and "m1" or "m0", copy.payload) -- a copy stays valid
      assert.equals("seastreamer.message (expired)", tostring(kept))
      assert.has_error(function() return kept.seq end)
      -- the messages before the failing call are done; it and those after it are not
      assert.equals(batch and 2 or 1, committed(rt, "mem://v" .. form .. "/in", "g"))
    end)

    -- Every way a message is taken, with a message kept from the call before (in the same input
    -- batch for every other call): each says it expired, and the call's own message reads right
    -- after a C function that LuaJIT does not compile (where it leaves its compiled code). (The
    -- batch form calls f for each message of one call, where the others stay valid.)
    if not batch then it("expires a kept message wherever it is taken (" .. form .. ")", function()
      local side = assert(rt:connect("mem://kw" .. form .. "/side"))
      local p = assert(side:producer())
      local kept, types, fails, reads = nil, {}, {}, {}
      local function expired(what, f)
        local ok, err = pcall(f)
        if ok or not tostring(err):match("message used after the call that received it returned") then
          fails[#fails + 1] = what .. ": " .. tostring(err)
        end
      end
      local res = assert(run_form(form, function(m, out)
        types[type(m)] = true
        if kept then
          expired("field", function() return kept.payload end)
          expired("headers", function() return kept.headers end)
          expired("copy", function() return kept:copy() end)
          expired("totable", function() return kept:totable() end)
          expired("out:send", function() out:send(nil, kept, "k") end)
          expired("p:send", function() assert(p:send(kept)) end)
          if tostring(kept) ~= "seastreamer.message (expired)" then fails[#fails + 1] = tostring(kept) end
        end
        local before = m.payload
        collectgarbage("count")
        reads[#reads + 1] = before == m.payload and m.payload or "changed"
        kept = m
        return m
      end, "kw" .. form, 6))
      side:close()
      assert.equals(6, res.processed)
      assert.same({}, fails)
      assert.same({ "m0", "m1", "m2", "m3", "m4", "m5" }, reads)
      assert.same({ "m0", "m1", "m2", "m3", "m4", "m5" }, read_all(rt, "mem://kw" .. form .. "/out"))
      -- light userdata on both Luas (64-bit), where no library set their metatable
      assert.same({ userdata = true }, types)
    end) end

    it("refuses a kept message returned from a later call (" .. form .. ")", function()
      local kept
      local res = assert(run_form(form, function(m)
        local r = kept or m
        kept = kept or m
        return r
      end, "w" .. form, 3, { on_error = "skip" }))
      -- the first call's messages went out; every later call returned m0 again and was skipped
      assert.same(batch and { "m0", "m0" } or { "m0" }, read_all(rt, "mem://w" .. form .. "/out"))
      assert.equals(batch and 1 or 2, res.skipped) -- batch: the second call (m2) as a whole
    end)

    it("sends nothing of a list with a wrong item (" .. form .. ")", function()
      -- each message goes as itself and as a string; m1's list ends with a number instead
      local function items(m) return m, m.payload == "m1" and 42 or m.payload .. "b" end
      local f = function(m) return { items(m) } end
      keep = fill(rt, "mem://li" .. form .. "/in", 4)
      local cfg = forms[form](f)
      if batch then
        cfg.processor = {
          batch = function(b)
            local res = {}
            for i = 1, #b do
              local a, z = items(b[i])
              res[#res + 1] = a
              res[#res + 1] = z
            end
            return res
          end,
        }
      end
      cfg.inputs = { "mem://li" .. form .. "/in" }
      cfg.outputs = { "mem://li" .. form .. "/out" }
      cfg.input_options = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true,
        batch = "2" }
      cfg.on_error = "skip"
      local res = assert(sea.run(cfg))
      -- batch: the call of m0 and m1 fails as a whole; else m1 alone
      assert.equals(batch and 2 or 1, res.skipped)
      assert.same(batch and { "m2", "m2b", "m3", "m3b" } or { "m0", "m0b", "m2", "m2b", "m3", "m3b" },
        read_all(rt, "mem://li" .. form .. "/out"))
      assert.is_nil(committed(rt, "mem://li" .. form .. "/in", "g"))
    end)

    it("reports an error object that is not a string, with where it was raised (" .. form .. ")",
      function()
        local line
        local ok, err = run_form(form, function(m)
          if m.payload == "m2" then
            line = debug.getinfo(1, "l").currentline + 1
            error({ code = 7 })
          end
          return m
        end, "eo" .. form, 4)
        assert.is_nil(ok)
        assert.matches("run_spec.lua:" .. line .. ": %(error object is a table value%)", err)
        assert.matches("at message in | 2 of mem://eo" .. form, err)
        -- with __tostring, that is the message, as the stand-alone interpreter prints it
        ok, err = run_form(form, function(m)
          if m.payload == "m1" then
            error(setmetatable({}, { __tostring = function() return "custom error" end }))
          end
          return m
        end, "ep" .. form, 2)
        assert.is_nil(ok)
        assert.matches("^custom error", err)
        -- error() with no value
        ok, err = run_form(form, function() error() end, "en" .. form, 1)
        assert.is_nil(ok)
        assert.matches("run_spec.lua:%d+: %(error object is a nil value%)", err)
        -- a number has its position on every Lua (5.4's error() gives it none)
        ok, err = run_form(form, function() error(7) end, "e7" .. form, 1)
        assert.is_nil(ok)
        assert.matches("run_spec.lua:%d+: 7", err)
        -- a __tostring that raises is reported, not an "error in error handling"
        ok, err = run_form(form, function()
          error(setmetatable({}, { __tostring = function() error("inner") end }))
        end, "et" .. form, 1)
        assert.is_nil(ok)
        assert.matches("run_spec.lua:%d+: %(error object is a table value, whose __tostring failed%)", err)
      end)
  end

  -- On Lua 5.4 the runner hands out light userdata views, per message and per batch: the rest of
  -- the state must not notice (cjson.null is a light userdata too), and each message must stay a
  -- value of its own (a table key, an equality) that expires like a full view.
  local has_cjson, cjson = pcall(require, "cjson")
  for _, form in ipairs { "driven", "limited", "batch" } do
    it("keeps other light userdata and message identity as they were (" .. form .. ")", function()
      if not has_cjson then pending("lua-cjson is not installed for this Lua") return end
      local keys, n, notes = {}, 0, {}
      local res = assert(run_form(form, function(m)
        assert((type(m) == "userdata" or type(m) == "cdata") and m == m, "not a message equal to itself")
        assert(not keys[m], "two calls got equal messages")
        keys[m] = true
        n = n + 1
        notes.enc = cjson.encode({ cjson.null, m.payload })
        notes.str = tostring(cjson.null)
        notes.idx = select(2, pcall(function() return cjson.null.x end))
        notes.msg = type(m) == "cdata" and "seastreamer.message" or getmetatable(m) -- LuaJIT: "ffi"
        notes.null = cjson.null == cjson.null and not rawequal(cjson.null, m)
        return m
      end, "lk" .. form, 4))
      assert.equals(4, res.processed)
      assert.equals(4, n)
      assert.same({ "m0", "m1", "m2", "m3" }, read_all(rt, "mem://lk" .. form .. "/out"))
      assert.equals('[null,"m3"]', notes.enc)
      assert.matches("^userdata: ", notes.str)
      assert.matches("index", tostring(notes.idx)) -- an error, as with no metatable
      assert.equals("seastreamer.message", notes.msg)
      assert.is_true(notes.null)
      for k in pairs(keys) do -- every key a message of its own, expired now
        assert.equals("seastreamer.message (expired)", tostring(k))
        local ok, err = pcall(function() return k.payload end)
        assert.is_false(ok)
        assert.matches("message used after the call that received it returned", err)
      end
    end)
  end

  -- The last message of a call is the easy one to miss: a hook that runs after its call (here
  -- `stop`) must find it expired too (LuaJIT's driver once left it readable until its next call).
  for _, form in ipairs { "driven", "limited", "batch" } do
    it("expires the last message of a call before the hooks run (" .. form .. ")", function()
      local kept, ok, err
      local cfg = forms[form](function(m) kept = m; return m end)
      local p = cfg.processor
      if type(p) == "function" then p = { process = p } end
      p.stop = function() ok, err = pcall(function() return kept.payload end) end
      cfg.processor = p
      keep = fill(rt, "mem://ls" .. form .. "/in", 4)
      cfg.inputs = { "mem://ls" .. form .. "/in" }
      cfg.outputs = { "mem://ls" .. form .. "/out" }
      cfg.input_options = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true,
        batch = "2" }
      local res = assert(sea.run(cfg))
      assert.equals(4, res.processed)
      assert.is_false(ok)
      assert.matches("message used after the call that received it returned %(field 'payload'", err)
    end)
  end

  -- A message is taken as such by the module's producer too, whatever the form's views are
  -- (full or light userdata on 5.4, FFI structs on LuaJIT).
  for _, form in ipairs { "driven", "limited", "batch" } do
    it("lets the module's p:send take the call's message (" .. form .. ")", function()
      local side = assert(rt:connect("mem://ps" .. form .. "/side"))
      local p = assert(side:producer())
      local res = assert(run_form(form, function(m)
        assert(p:send(m))
        return nil
      end, "ps" .. form, 3))
      assert.equals(3, res.processed)
      assert(p:flush())
      p:close()
      side:close()
      assert.same({ "m0", "m1", "m2" }, read_all(rt, "mem://ps" .. form .. "/side"))
    end)
  end

  -- Values that only look like messages: another light userdata returned (5.4 views are light
  -- too), another cdata given to p:send (LuaJIT views are cdata). Each fails its own message.
  for _, form in ipairs { "driven", "limited" } do
    it("refuses a light userdata or a cdata that is not a message (" .. form .. ")", function()
      if not has_cjson then pending("lua-cjson is not installed for this Lua") return end
      local side = assert(rt:connect("mem://nm" .. form .. "/side"))
      local p = assert(side:producer())
      local sent, why = {}, nil
      local res = assert(run_form(form, function(m)
        if m.payload == "m0" then return cjson.null end
        if m.payload == "m1" and jit then
          local ok, err = pcall(p.send, p, require("ffi").new("int", 1))
          why = not ok and err or "sent"
        end
        sent[#sent + 1] = m.payload
        return m
      end, "nm" .. form, 3, { on_error = "skip" }))
      side:close()
      assert.equals(1, res.skipped) -- m0, which returned cjson.null
      assert.same({ "m1", "m2" }, read_all(rt, "mem://nm" .. form .. "/out"))
      assert.same({ "m1", "m2" }, sent)
      if jit then assert.matches("expected a message, got cdata", why) end
    end)
  end

  for _, form in ipairs { "driven", "limited" } do
    it("uses full views when a library set the light userdata metatable (" .. form .. ")", function()
      if not has_cjson then pending("lua-cjson is not installed for this Lua") return end
      local before = debug.getmetatable(cjson.null)
      debug.setmetatable(cjson.null, { __index = function(_, k) return "lib:" .. k end })
      local kept, during
      local ok, err = pcall(run_form, form, function(m)
        during = cjson.null.x
        if kept then return kept end -- refused: it expired
        kept = m
        return m:copy()
      end, "lf" .. form, 3, { on_error = "skip" })
      local after = cjson.null.y
      debug.setmetatable(cjson.null, before)
      assert.is_true(ok, err)
      assert.equals(2, err.skipped)
      assert.equals("lib:x", during) -- the library's metatable stayed in place
      assert.equals("lib:y", after)
      assert.same({ "m0" }, read_all(rt, "mem://lf" .. form .. "/out"))
      assert.equals("seastreamer.message (expired)", tostring(kept))
    end)
  end

  -- The same when the library sets it in the middle of a batch (here in the call of m0, whose
  -- batch holds m1 too): the next calls get full views (FFI structs on LuaJIT) at once; a light
  -- view would read what the library's metatable says.
  for _, form in ipairs { "driven", "limited" } do
    it("uses full views from the call after a library set the light userdata metatable (" .. form .. ")", function()
      if not has_cjson then pending("lua-cjson is not installed for this Lua") return end
      local before = debug.getmetatable(cjson.null)
      local read = {}
      local ok, err = pcall(run_form, form, function(m)
        if m.payload == "m0" then
          debug.setmetatable(cjson.null, { __index = function(_, k) return "lib:" .. k end })
        else
          read[#read + 1] = m.payload .. " " .. sea.seqstring(m.seq)
        end
        return m
      end, "lm" .. form, 4)
      debug.setmetatable(cjson.null, before)
      assert.is_true(ok, err)
      assert.same({ "m1 1", "m2 2", "m3 3" }, read)
      assert.same({ "m0", "m1", "m2", "m3" }, read_all(rt, "mem://lm" .. form .. "/out"))
    end)
  end

  for _, form in ipairs { "driven", "limited" } do
    it("refuses out:send of a message kept past its call (" .. form .. ")", function()
      local kept
      local ok, err = run_form(form, function(m, out)
        if kept then out:send(nil, kept) end -- fails: the call that received kept returned
        kept = m
        return m
      end, "ks" .. form, 3)
      assert.is_nil(ok)
      assert.matches("run_spec.lua:%d+: bad argument #2 to 'send' %(message used after the call "
        .. "that received it returned", err)
      -- the first call's message went out; the second call failed, and nothing of it went out
      assert.same({ "m0" }, read_all(rt, "mem://ks" .. form .. "/out"))
      assert.equals(1, committed(rt, "mem://ks" .. form .. "/in", "g"))
    end)

    it("keeps the order of returns and out:send per message (" .. form .. ")", function()
      local res = assert(run_form(form, function(m, out)
        out:send(nil, m.payload .. "a")
        return m.payload .. "b"
      end, "o" .. form, 5))
      assert.equals(5, res.processed)
      assert.same({ "m0a", "m0b", "m1a", "m1b", "m2a", "m2b", "m3a", "m3b", "m4a", "m4b" },
        read_all(rt, "mem://o" .. form .. "/out"))
    end)

    -- A result or an out:send that the output refuses at once (here: longer than its
    -- max_payload) fails its own message, under the error policy, and nothing else.
    it("fails only the message whose result or out:send the output refuses (" .. form .. ")",
      function()
        local res = assert(run_form(form, function(m, out)
          if m.payload == "m1" then return "far too long for this output" end
          if m.payload == "m3" then out:send(nil, "also far too long for it") end
          return m
        end, "rf" .. form, 5, { on_error = "skip", output_options = { max_payload = "8" } }))
        assert.equals(2, res.skipped)
        assert.same({ "m0", "m2", "m4" }, read_all(rt, "mem://rf" .. form .. "/out"))
        assert.is_nil(committed(rt, "mem://rf" .. form .. "/in", "g"))
        local ok, err = run_form(form, function(m)
          if m.payload == "m2" then return "far too long for this output" end
          return m.payload
        end, "rs" .. form, 5, { output_options = { max_payload = "8" } })
        assert.is_nil(ok)
        assert.matches("run_spec.lua:%d+: processor", err)
        assert.matches("at message in | 2 of mem://rs" .. form .. "/in", err)
        assert.same({ "m0", "m1" }, read_all(rt, "mem://rs" .. form .. "/out"))
        assert.equals(2, committed(rt, "mem://rs" .. form .. "/in", "g"))
      end)
  end

  it("refuses out:send of a batch's message kept past its call", function()
    keep = fill(rt, "mem://kb/in", 4)
    local kept
    local ok, err = sea.run {
      processor = {
        batch = function(b, out)
          if kept then out:send(nil, kept) end -- fails: the call that received kept returned
          kept = b[1]
          return b
        end,
      },
      inputs = { "mem://kb/in" }, outputs = { "mem://kb/out" },
      input_options = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true,
        batch = "2" },
    }
    assert.is_nil(ok)
    assert.matches("run_spec.lua:%d+: bad argument #2 to 'send' %(message used after the call "
      .. "that received it returned", err)
    assert.same({ "m0", "m1" }, read_all(rt, "mem://kb/out"))
    assert.equals(2, committed(rt, "mem://kb/in", "g"))
  end)

  for _, form in ipairs { "driven", "limited", "batch" } do
    -- A message forwarded to an output that names no stream key keeps its own key, also when
    -- the call's other messages have another (a batch from a file of two stream keys).
    it("forwards each message with its own stream key (" .. form .. ")", function()
      local path = os.tmpname()
      os.remove(path)
      path = path .. ".ss"
      fill(rt, "file://" .. path .. "/a", 2):close()
      fill(rt, "file://" .. path .. "/b", 2):close()
      local hold = assert(rt:connect("mem://mko" .. form)) -- the output's broker outlives the run
      local cfg = forms[form](function(m, out)
        if m.payload == "m1" then
          out:send(nil, m)
          return nil
        end
        return m
      end)
      cfg.inputs = { "file://" .. path }
      cfg.outputs = { "mem://mko" .. form }
      cfg.input_options = { start = "beginning", stop_at_end = true }
      local ok, err = sea.run(cfg)
      os.remove(path)
      assert(ok, err)
      -- (a batch call's out:send goes before its results: m1 first)
      local a, b = read_all(rt, "mem://mko" .. form .. "/a"), read_all(rt, "mem://mko" .. form .. "/b")
      table.sort(a)
      table.sort(b)
      assert.same({ "m0", "m1" }, a)
      assert.same({ "m0", "m1" }, b)
      hold:close()
    end)
  end

  it("fails only the failing message of a batch, once, whatever the policy", function()
    local calls = {}
    local res = assert(run_form("driven", function(m)
      calls[#calls + 1] = m.payload
      if m.payload == "m1" or m.payload == "m2" then error("bad " .. m.payload) end
      return m
    end, "f1", 6, { on_error = "skip" }))
    assert.equals(2, res.skipped)
    assert.same({ "m0", "m3", "m4", "m5" }, read_all(rt, "mem://f1/out"))
    assert.same({ "m0", "m1", "m2", "m3", "m4", "m5" }, calls) -- each called once
    assert.is_nil(committed(rt, "mem://f1/in", "g"))
    local ok, err = run_form("driven", function(m)
      if m.payload == "m3" then return { a = 1 } end
      return m
    end, "f2", 6)
    assert.is_nil(ok)
    assert.matches("run_spec.lua:%d+: processor returned a table that is not a list", err)
    assert.matches("at message in | 3 of mem://f2/in", err)
    assert.equals(3, committed(rt, "mem://f2/in", "g"))
    assert.same({ "m0", "m1", "m2" }, read_all(rt, "mem://f2/out"))
  end)

  it("gives the per-message processor every field, and takes its message back in a list", function()
    local seen = {}
    local res = assert(run_form("driven", function(m, out)
      seen[#seen + 1] = {
        payload = m.payload, size = m.size, key = m.key, stream_key = m.stream_key,
        shard = m.shard, seq = tonumber(tostring(m.seq):match("%d+")), ts = m.timestamp,
        str = tostring(m), headers = m.headers == m.headers, t = m:totable().payload,
      }
      assert(not pcall(function() m.payload = "x" end))
      if m.payload == "m1" then return { m, "extra" } end
      if m.payload == "m2" then return m:copy() end
      return m
    end, "x1", 3))
    assert.equals(3, res.processed)
    assert.same({ "m0", "m1", "extra", "m2" }, read_all(rt, "mem://x1/out"))
    for i, f in ipairs(seen) do
      assert.equals("m" .. (i - 1), f.payload)
      assert.equals(2, f.size)
      assert.is_nil(f.key)
      assert.equals("in", f.stream_key)
      assert.equals(0, f.shard)
      assert.equals(i - 1, f.seq)
      assert.is_true(f.ts > 0)
      assert.matches("^seastreamer.message %(in | " .. (i - 1) .. ", 2 bytes%)$", f.str)
      assert.is_true(f.headers)
      assert.equals("m" .. (i - 1), f.t)
    end
    local ok, err = run_form("driven", function(m) return m.seq end, "x2", 1)
    assert.is_nil(ok)
    assert.matches("processor returned a (%a+)", err)
  end)

  it("sends what a batch processor returns, its messages in any order among strings", function()
    keep = fill(rt, "mem://x3/in", 4)
    local res = assert(sea.run {
      processor = { batch = function(b, out)
        out:send(nil, b[1])
        if #b == 1 then return b[1] end
        return { b[2], b[1].payload .. "!", b[1] }
      end },
      inputs = { "mem://x3/in" }, outputs = { "mem://x3/out" },
      input_options = { group = "g", mode = "resumable", reset = "earliest", stop_at_end = true,
        batch = "3" },
    })
    assert.equals(4, res.processed)
    assert.same({ "m0", "m1", "m0!", "m0", "m3", "m3" }, read_all(rt, "mem://x3/out"))
  end)

  it("stops after the message whose call said out:stop()", function()
    local res = assert(run_form("driven", function(m, out)
      if m.payload == "m2" then out:stop() end
      return m
    end, "s1", 8, { }))
    assert.equals(3, res.processed)
    assert.same({ "m0", "m1", "m2" }, read_all(rt, "mem://s1/out"))
    assert.equals(3, committed(rt, "mem://s1/in", "g"))
  end)
end)
