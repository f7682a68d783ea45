-- module_spec.lua: the Lua module over the mem:// backend: runtime, producer, consumer, views.
local sea = require "seastreamer"

-- Fill mem://NAME/KEY with the payloads, waiting for every receipt.
local function fill(rt, uri, payloads, opts)
  local s = assert(rt:connect(uri))
  local p = assert(s:producer())
  for _, x in ipairs(payloads) do assert(p:send(x, opts)) end
  assert(p:flush())
  p:close()
  return s
end

describe("seastreamer module", function()
  local rt
  before_each(function() rt = sea.runtime() end)
  after_each(function() rt:close() end)

  it("loads and reports its version", function()
    assert.is_string(sea.version)
    assert.matches("^%d+%.%d+%.%d+", sea.version)
  end)

  it("returns nil, message, code for a connect that fails at run time", function()
    local s, msg, code = rt:connect("nosuch://x/k")
    assert.is_nil(s)
    assert.matches("nosuch", msg)
    assert.equals("ESCHEME", code)
    s, msg, code = rt:connect("mem://x/bad key!")
    assert.is_nil(s)
    assert.matches("bad key", msg)
    assert.equals("EURI", code)
  end)

  it("raises on wrong arguments", function()
    assert.has_error(function() rt:connect({}) end)
    assert.has_error(function() rt:connect("mem://x/k", "notatable") end)
    assert.has_error(function() rt:connect("mem://x/k", { mode = {} }) end)
    local s = assert(rt:connect("mem://args/k"))
    local p = assert(s:producer())
    assert.has_error(function() p:send({}) end)
    assert.has_error(function() p:send("x", "bad key!") end)
    -- the options table: each mistake names the argument and the field
    local function send_err(prod, opts)
      local ok, e = pcall(function() prod:send("x", opts) end) -- (not a tail call: LuaJIT names none)
      assert.is_false(ok)
      return e
    end
    assert.matches("bad argument #2 to 'send' %(option 'headers': must map strings to strings%)",
      send_err(p, { headers = { a = 1 } }))
    assert.matches("bad argument #2 to 'send' %(option 'key': expected a string, got table%)",
      send_err(p, { key = {} }))
    assert.matches("bad argument #2 to 'send' %(option 'timestamp': expected a number, got string%)",
      send_err(p, { timestamp = "now" }))
    assert.matches("bad argument #2 to 'send' %(unknown option 'bogus' %(expected stream_key, key, headers or timestamp%)%)",
      send_err(p, { bogus = 1 }))
    -- a key or headers that the backend would drop are refused, as produce's -K and -H are
    local path = os.tmpname()
    local fs = assert(rt:connect("file://" .. path .. ".ss/k"))
    local fp = assert(fs:producer())
    assert.matches("option 'headers': file does not carry headers", send_err(fp, { headers = { a = "b" } }))
    assert.matches("option 'key': file does not carry message keys", send_err(fp, { key = "k" }))
    assert(fp:send("x", { headers = {} })) -- no headers: nothing to drop
    assert(fp:flush())
    fs:close()
    os.remove(path)
    os.remove(path .. ".ss")
    -- a callback that is not a function is named
    local ok, err = pcall(function() return p:flush(42) end)
    assert.is_false(ok)
    assert.matches("bad argument #%d to '[%w?]+' %(function expected, got number%)", err)
    s:close()
    assert.has_error(function() p:send("x") end, nil)
    assert.has_error(function() s:producer() end)
  end)

  it("sends with receipts and consumes lazily materialised, read-only views", function()
    local s = assert(rt:connect("mem://m1/orders"))
    local p = assert(s:producer())
    local receipts = {}
    for i = 1, 3 do
      assert(p:send("payload " .. i, { key = "k" .. i, headers = { h = "v" .. i } }, function(err, meta, code)
        assert.is_nil(err)
        assert.equals("OK", code)
        receipts[#receipts + 1] = meta
      end))
    end
    assert.is_true(p:flush())
    assert.equals(3, #receipts)
    assert.equals("orders", receipts[1].stream_key)
    assert.equals(0, receipts[1].seq)
    assert.equals(2, receipts[3].seq)
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    local got, kept = {}, nil
    local m = c:next()
    local first = m
    while m do
      got[#got + 1] = m.payload
      assert.equals("orders", m.stream_key)
      assert.equals(#got - 1, m.seq)
      assert.equals("k" .. #got, m.key)
      assert.equals("v" .. #got, m.headers.h)
      assert.equals(0, m.shard)
      assert.is_true(m.timestamp > 0)
      assert.has_error(function() m.payload = "changed" end)
      if #got == 2 then kept = m:copy() end
      m = c:next()
    end
    assert.same({ "payload 1", "payload 2", "payload 3" }, got)
    -- A view ends with the call that gave it; a copy lives on.
    assert.has_error(function() return first.payload end)
    assert.equals("payload 2", kept.payload)
    assert.equals(1, kept.seq)
    assert.equals("k2", kept.key)
    assert.equals("v2", kept.headers.h)
    assert.same("payload 2", kept:totable().payload)
    c:close()
    s:close()
  end)

  -- A copy's bytes lie in Lua's heap, where the collector (and the runner's --max-memory) count
  -- them: a copy that shared its batch's memory outside the heap let a ring of 100 copies of
  -- 20 KB messages keep about 1 GB alive. It outlives its consumer and sends as a message.
  it("keeps a copy's bytes in Lua's heap", function()
    local s = assert(rt:connect("mem://cp/k"))
    local p = assert(s:producer())
    assert(p:send(("x"):rep(100000), { key = "kk", headers = { h = "v" } }))
    assert(p:flush())
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    local m = c:next()
    collectgarbage()
    local before = collectgarbage("count")
    local k = m:copy()
    local grew = collectgarbage("count") - before
    assert.is_true(grew >= 97, "a copy of 100,000 bytes grew the heap by " .. grew .. " KB")
    c:close()
    s:close()
    collectgarbage()
    assert.equals(100000, #k.payload)
    assert.equals("kk", k.key)
    assert.equals("v", k.headers.h)
    local s2 = assert(rt:connect("mem://cp2/k"))
    local p2 = assert(s2:producer())
    assert(p2:send(k))
    assert(p2:flush())
    local c2 = assert(s2:consumer({ start = "beginning", stop_at_end = true }))
    local m2 = c2:next()
    assert.equals(("x"):rep(100000), m2.payload)
    assert.equals("kk", m2.key)
    assert.equals("v", m2.headers.h)
    s2:close()
  end)

  it("yields inside a coroutine until messages arrive", function()
    local s = assert(rt:connect("mem://co/k"))
    local c = assert(s:consumer({ start = "beginning" }))
    local got = {}
    local co = coroutine.wrap(function()
      for m in c:messages() do
        got[#got + 1] = m.payload
        if #got == 2 then break end
      end
    end)
    co() -- waits: nothing was sent yet
    assert.same({}, got)
    local p = assert(s:producer())
    assert(p:send("a"))
    assert(p:send("b"))
    rt:run()
    assert.same({ "a", "b" }, got)
    s:close()
  end)

  it("flushes inside a coroutine by yielding, and through a callback", function()
    local s = assert(rt:connect("mem://fl/k"))
    local p = assert(s:producer())
    local done = {}
    coroutine.wrap(function()
      assert(p:send("x"))
      done.co = p:flush()
    end)()
    assert.is_nil(done.co)
    assert(p:send("y"))
    assert(p:flush(function(ok) done.cb = ok end))
    rt:run()
    assert.is_true(done.co)
    assert.is_true(done.cb)
    s:close()
  end)

  it("refuses a call that would wait inside a loop callback, and the loop runs on", function()
    local s = assert(rt:connect("mem://cbw/k"))
    local p = assert(s:producer())
    local got
    assert(p:send("b", function() got = { pcall(p.flush, p) } end))
    rt:run() -- does not raise
    assert.is_false(got[1])
    assert.matches("this call would wait inside a loop callback: pass a callback or call it from a coroutine",
      got[2], 1, true)
    assert(p:send("c")) -- the runtime is sound after it
    assert(p:flush())
    s:close()
  end)

  it("acks and commits in a group, and a new member resumes after the commit", function()
    local keep = fill(rt, "mem://grp/k", { "0", "1", "2", "3", "4" })
    local s = assert(rt:connect("mem://grp/k"))
    local c = assert(s:consumer({ group = "g", mode = "resumable", reset = "earliest" }))
    for _ = 1, 3 do
      local m = assert(c:next())
      assert(c:ack(m))
    end
    assert.is_true(c:commit())
    c:close()
    c = assert(s:consumer({ group = "g", mode = "resumable", reset = "earliest" }))
    local m = assert(c:next())
    assert.equals("3", m.payload)
    c:close()
    s:close()
    keep:close()
  end)

  it("acks a position where the backend has positions, and says which backend has not", function()
    local s = assert(rt:connect("mem://ap/k"))
    local c = assert(s:consumer({ group = "g", mode = "resumable" }))
    local ok, msg, code = c:ack_pos("k", 0, 3)
    assert.is_nil(ok)
    assert.equals("ack_pos: not supported by mem", msg)
    assert.equals("ENOTSUP", code)
    assert.has_error(function() c:ack_pos("k", -1, 3) end)
    assert.has_error(function() c:ack_pos("k", 0, 1.5) end)
    c:close()
    s:close()
  end)

  it("runs on luv's loop when asked, so either loop runner drives both", function()
    local uv = require "luv"
    local shared = assert(sea.runtime({ luv = true }))
    local fired = false
    local t = uv.new_timer()
    t:start(10, 0, function() fired = true; t:close() end)
    shared:run() -- returns once nothing is active: after luv's timer fired
    assert.is_true(fired)
    local s = assert(shared:connect("mem://luvshare/k"))
    local p = assert(s:producer())
    assert(p:send("x"))
    local flushed
    assert(p:flush(function(ok) flushed = ok end))
    uv.run() -- seastreamer's flush completes under luv's runner
    assert.is_true(flushed)
    -- Waiting by running the loop is refused (a luv callback may be running it); a coroutine
    -- waits.
    assert.has_error(function() p:flush() end, "a runtime on luv's loop does not wait by "
      .. "running the loop (luv may be running it): pass a callback or call from a coroutine")
    local co_done
    coroutine.wrap(function() co_done = p:flush() end)()
    uv.run()
    assert.is_true(co_done)
    s:close()
    shared:close()
    -- A runtime of its own does not run luv's handles.
    local own = sea.runtime()
    fired = false
    t = uv.new_timer()
    t:start(10, 0, function() fired = true; t:close() end)
    own:run()
    assert.is_false(fired)
    uv.run()
    assert.is_true(fired)
    own:close()
    assert.has_error(function() sea.runtime("luv") end)
  end)

  it("rewinds to the beginning and to a sequence number", function()
    local keep = fill(rt, "mem://rw/k", { "a", "b", "c", "d" })
    local s = assert(rt:connect("mem://rw/k"))
    local c = assert(s:consumer({ start = "beginning" }))
    assert.equals("a", c:next().payload)
    assert.equals("b", c:next().payload)
    assert.is_true(c:rewind("beginning"))
    assert.equals("a", c:next().payload)
    assert.is_true(c:rewind(2))
    assert.equals("c", c:next().payload)
    assert.has_error(function() c:rewind("sideways") end)
    c:close()
    s:close()
    keep:close()
  end)

  it("keeps what it read ahead when a rewind or seek is refused", function()
    local payloads = {}
    for i = 1, 1000 do payloads[i] = "p" .. i end
    local keep = fill(rt, "mem://rwa/k", payloads)
    local s = assert(rt:connect("mem://rwa/k"))
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    for i = 1, 4 do assert.equals("p" .. i, c:next().payload) end
    -- the backend has read all 1000 and ended, though only 4 were taken
    local ok, msg = c:rewind(2)
    assert.is_nil(ok)
    assert.matches("what it read before still comes", msg)
    assert.is_nil((c:seek(0)))
    for i = 5, 1000 do assert.equals("p" .. i, c:next().payload) end
    assert.is_nil(c:next()) -- the end, and no error
    assert.is_nil(c:error())
    c:close()
    s:close()
    keep:close()
  end)

  it("refuses to rewind or seek a consumer that ended, saying so", function()
    local keep = fill(rt, "mem://rwe/k", { "a", "b" })
    local s = assert(rt:connect("mem://rwe/k"))
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    assert.equals("a", c:next().payload)
    assert.equals("b", c:next().payload)
    assert.is_nil(c:next()) -- the end
    local ok, msg = c:rewind("beginning")
    assert.is_nil(ok)
    assert.matches("rewind: the consumer has ended %(stop_at_end: its backend read to the end%); "
      .. "what it read before still comes; open a new", msg)
    ok, msg = c:seek(0)
    assert.is_nil(ok)
    assert.matches("seek: the consumer has ended", msg)
    c:close()
    s:close()
    keep:close()
  end)

  it("seeks to a time", function()
    local s = assert(rt:connect("mem://seek/k"))
    local p = assert(s:producer())
    local base = 1700000000000000
    for i = 0, 3 do assert(p:send("t" .. i, { timestamp = base + i * 1000000 })) end
    assert(p:flush())
    local c = assert(s:consumer({ start = "beginning" }))
    assert.equals("t0", c:next().payload)
    assert.is_true(c:seek(base + 1500000))
    local m = c:next()
    assert.equals("t2", m.payload)
    assert.equals(base + 2000000, m.timestamp)
    s:close()
  end)

  it("reports a full producer as EAGAIN and calls on_drain", function()
    local s = assert(rt:connect("mem://bp/k"))
    local p = assert(s:producer({ capacity = 1 }))
    local drained = false
    p:on_drain(function() drained = true end)
    assert(p:send("one"))
    local ok, msg, code = p:send("two")
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.equals("EAGAIN", code)
    rt:run()
    assert.is_true(drained)
    assert(p:send("two"))
    assert(p:flush())
    s:close()
  end)

  it("reports a failed receipt to its callback", function()
    local s = assert(rt:connect("mem://fail/k"))
    local p = assert(s:producer({ fail_after = 1 }))
    local codes = {}
    for i = 1, 3 do
      assert(p:send("m" .. i, nil, function(err, meta, code) codes[i] = code end))
    end
    p:flush()
    assert.equals("OK", codes[1])
    assert.equals("EIO", codes[2])
    s:close()
  end)

  it("surfaces an error raised in a callback where the loop runs", function()
    local s = assert(rt:connect("mem://cberr/k"))
    local p = assert(s:producer())
    assert(p:send("x", nil, function() error("boom in receipt") end))
    assert.has_error(function() rt:run() end)
    s:close()
  end)

  it("builds msg.headers once per view: the same table twice, each message its own, totable's apart", function()
    local s = assert(rt:connect("mem://hdr/k"))
    local p = assert(s:producer())
    assert(p:send("a", { headers = { h = "1", x = "a" } }))
    assert(p:send("b"))
    assert(p:send("c", { headers = { h = "3" } }))
    assert(p:flush())
    local c = assert(s:consumer({ start = "beginning", stop_at_end = true }))
    local got = {}
    for m in c:messages() do
      local h = m.headers
      assert.equals(h, m.headers)
      -- totable's headers are a table of their own: changing one leaves the other
      local t = m:totable().headers
      assert.are_not.equal(h, t)
      assert.same(h, t)
      t.extra = "x"
      assert.is_nil(m.headers.extra)
      got[#got + 1] = h
    end
    assert.same({ { h = "1", x = "a" }, {}, { h = "3" } }, got)
    s:close()
  end)

  -- Lua 5.4's <close>: LuaJIT cannot parse it, so the code is a string loaded on 5.4 only.
  local it54 = (_VERSION == "Lua 5.4" and not jit) and it or pending
  it54("closes runtimes, streamers, producers and consumers when a <close> scope is left", function()
    local scope = assert(load([[
      local sea, fail, kept = ...
      local rt <close> = sea.runtime()
      local s <close> = assert(rt:connect("mem://tbc/k"))
      local p <close> = assert(s:producer())
      local c <close> = assert(s:consumer({ start = "beginning" }))
      assert(p:send("x"))
      assert(p:flush())
      assert.equals("x", c:next().payload)
      kept.rt, kept.s, kept.p, kept.c = rt, s, p, c
      p:close() -- closed before the scope ends: leaving it closes p again, which is fine
      if fail then error("leaving by an error") end
    ]], "=tbc", "t", setmetatable({ assert = assert }, { __index = _G })))
    for _, fail in ipairs({ false, true }) do
      local kept = {}
      local ok, err = pcall(scope, sea, fail, kept)
      if fail then
        assert.is_false(ok)
        assert.matches("leaving by an error", err)
      else
        assert.is_true(ok, err)
      end
      local function closed(what, f)
        local ok2, e = pcall(f)
        assert.is_false(ok2)
        assert.matches(what .. " is closed", e)
      end
      closed("runtime", function() kept.rt:connect("mem://tbc/k") end)
      closed("streamer", function() kept.s:producer() end)
      closed("producer", function() kept.p:send("y") end)
      closed("consumer", function() kept.c:next() end)
      kept.rt:close() -- closing again is fine
      kept.c:close()
    end
    -- The runtime's scope left first: it closes its streamer, whose own __close then does nothing.
    local outer = assert(load([[
      local sea = ...
      local rt = sea.runtime()
      local s <close> = assert(rt:connect("mem://tbc2/k"))
      local rt2 <close> = rt
      return s
    ]], "=tbc2", "t"))
    local s = outer(sea)
    assert.has_error(function() s:producer() end)
  end)

  it("closes explicitly, and leaves the rest to __gc", function()
    for i = 1, 20 do
      local r = sea.runtime()
      local s = assert(r:connect("mem://gc" .. i .. "/k"))
      local p = assert(s:producer())
      assert(p:send("x"))
      local c = assert(s:consumer())
      if i % 2 == 0 then r:close() end
    end
    collectgarbage()
    collectgarbage()
  end)
end)
