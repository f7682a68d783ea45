-- seq_spec.lua: sequence numbers are exact on every Lua (docs/lua.md): msg.seq, receipts, rewind,
-- ack_pos and the start option with seqs above 2^53 (a .ss file written with the seqs chosen, and
-- Redis entries of one millisecond, when redis-server is installed), and every bad seq refused
-- with an error naming the argument. SEA_BUILD_DIR names the build (for `seastreamer relay`).
local sea = require "seastreamer"
local build = assert(os.getenv("SEA_BUILD_DIR"), "SEA_BUILD_DIR is not set")
local ss = build .. "/seastreamer"
local jit_ffi = jit and require "ffi"
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp))

local function sh(cmd)
  local ok, _, code = os.execute(cmd)
  return ok == true or ok == 0, code
end

local function write(name, text)
  local f = assert(io.open(tmp .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return tmp .. "/" .. name
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- 2^60 + 1, + 2, + 3: one number apart, 256 apart as doubles (all three read as 2^60).
local S1, S2, S3 = "1152921504606846977", "1152921504606846978", "1152921504606846979"

-- The native type of a seq on this Lua.
local function is_native(x)
  if jit_ffi then return jit_ffi.istype("uint64_t", x) end
  return math.type(x) == "integer"
end

describe("sequence numbers (" .. (jit and "LuaJIT" or _VERSION) .. ")", function()
  local rt
  before_each(function() rt = sea.runtime() end)
  after_each(function() rt:close() end)
  teardown(function() os.execute("rm -rf " .. tmp) end)

  it("are native 64-bit integers, exact to 2^64 - 1", function()
    assert.is_true(is_native(sea.seq(0)))
    assert.is_true(is_native(sea.seq(S1)))
    assert.equals(S1, sea.seqstring(sea.seq(S1)))
    assert.equals("18446744073709551615", sea.seqstring("18446744073709551615"))
    assert.equals("42", sea.seqstring(42))
    assert.equals("3", sea.seqstring(3.0))
    assert.is_false(sea.seq(S1) == sea.seq(S2))
    if jit_ffi then
      assert.is_true(sea.seq(S1) + 1 == sea.seq(S2))
      assert.equals(S2, sea.seqstring(jit_ffi.new("uint64_t", sea.seq(S2))))
      assert.equals("7", sea.seqstring(jit_ffi.new("int64_t", 7)))
      assert.equals("18446744073709551615", sea.seqstring(sea.seq("18446744073709551615")))
    else
      assert.equals(sea.seq(S2), sea.seq(S1) + 1)
      assert.equals(math.maxinteger, sea.seq("9223372036854775807"))
      -- a Lua 5.4 integer is signed: from 2^63 on, a seq is its decimal string
      assert.equals("9223372036854775808", sea.seq("9223372036854775808"))
    end
  end)

  it("refuses what is not exact or not a seq, naming the argument", function()
    local bad = {
      { -1, "seq %-1 is negative" },
      { -0.5, "seq %-0%.5 is negative" },
      { 0 / 0, "seq %-?nan is not a number %(NaN%)" },
      { 1.5, "seq 1%.5 is not a whole number" },
      { 2 ^ 60, "seq 1%.15%d*e%+18 is 2%^53 or more, where a Lua number is not exact" },
      { "12x", "seq '12x' is not a decimal number" },
      { "", "seq '' is not a decimal number" },
      { "-1", "seq '%-1' is not a decimal number" },
      { " 1", "seq ' 1' is not a decimal number" },
      { "18446744073709551616", "seq '18446744073709551616' is not a decimal number from 0 to 18446744073709551615" },
      { {}, "seq: expected a sequence number %(an integer, a decimal string or a uint64_t%), got table" },
    }
    if jit_ffi then
      bad[#bad + 1] = { jit_ffi.new("int64_t", -3), "seq is a negative int64_t" }
      bad[#bad + 1] = { jit_ffi.new("char[2]"), "seq is a cdata that is not a uint64_t or int64_t" }
    end
    for _, b in ipairs(bad) do
      local ok, err = pcall(sea.seq, b[1])
      assert.is_false(ok)
      assert.matches(b[2], err)
      ok, err = pcall(sea.seqstring, b[1])
      assert.is_false(ok)
      assert.matches(b[2], err)
    end
    local s = assert(rt:connect("mem://seqbad/k"))
    local c = assert(s:consumer({ group = "g", mode = "resumable" }))
    assert.has_error(function() c:rewind(2 ^ 60) end)
    assert.has_error(function() c:rewind("12x") end)
    local ok, err = pcall(c.rewind, c, "sideways")
    assert.is_false(ok)
    assert.matches("position 'sideways': expected \"beginning\", \"end\" or a sequence number", err)
    ok, err = pcall(c.ack_pos, c, "k", 0, 2 ^ 60)
    assert.is_false(ok)
    assert.matches("#4 .*seq 1%.15%d*e%+18 is 2%^53 or more", err) -- #4: called as a function
    ok, err = pcall(c.ack_pos, c, "k", -1, 3)
    assert.is_false(ok)
    assert.matches("shard %-1 is", err)
    -- exact seqs pass the argument checks (and mem says it has no positions to ack)
    local r, msg, code = c:ack_pos("k", 0, S1)
    assert.is_nil(r)
    assert.equals("ENOTSUP", code, msg)
    assert.equals("ENOTSUP", select(3, c:ack_pos("k", sea.seq(0), sea.seq(S2))))
    ok, err = pcall(s.consumer, s, { start = 2 ^ 60 })
    assert.is_false(ok)
    assert.matches("option 'start': 1%.15%d*e%+18 is not a whole number below 2%^53", err)
    ok, err = pcall(s.consumer, s, { start = 0.5 })
    assert.is_false(ok)
    assert.matches("option 'start': 0%.5 is not a whole number", err)
    if jit_ffi then
      ok, err = pcall(s.consumer, s, { start = jit_ffi.new("char[2]") })
      assert.is_false(ok)
      assert.matches("option 'start' is a cdata that is not a uint64_t or int64_t", err)
    end
    s:close()
  end)

  it("comes out of messages and receipts native, and goes back in", function()
    local s = assert(rt:connect("mem://seqmem/k"))
    local p = assert(s:producer())
    local meta
    assert(p:send("a", nil, function(_, m) meta = m end))
    assert(p:send("b"))
    assert(p:flush())
    assert.is_true(is_native(meta.seq))
    assert.equals("0", sea.seqstring(meta.seq))
    local c = assert(s:consumer({ start = "beginning" }))
    local m = assert(c:next())
    assert.is_true(is_native(m.seq))
    assert.is_true(is_native(m:totable().seq))
    assert.equals("seastreamer.message (k | 0, 1 bytes)", tostring(m))
    local first = m.seq
    assert.equals("b", c:next().payload)
    assert.is_true(c:rewind(first))
    assert.equals("a", c:next().payload)
    assert.is_true(c:rewind("1"))
    assert.equals("b", c:next().payload)
    assert.is_true(c:rewind(0))
    assert.equals("a", c:next().payload)
    c:close()
    c = assert(s:consumer({ start = sea.seq(1) }))
    assert.equals("b", c:next().payload)
    s:close()
  end)

  it("round-trips seqs above 2^53 through a file: msg.seq, rewind and start", function()
    local file = tmp .. "/big.ss"
    local src = write("big.txt", "[k | " .. S1 .. "] a\n[k | " .. S2 .. "] b\n[k | " .. S3 .. "] c\n")
    assert.is_true(sh(string.format("%s %s relay --keep-meta stdio:// file://%s/k < %s",
      os.getenv("SEA_CHILD_ENV") or "", ss, file, src)))
    local uri = "file://" .. file .. "/k"
    local s = assert(rt:connect(uri))
    -- no stop_at_end: a consumer that ended there does not come back after a rewind; every
    -- next() below reads a message that is in the file
    local c = assert(s:consumer({ start = "beginning" }))
    local seqs = {}
    for _, want in ipairs({ "a", "b", "c" }) do
      local m = assert(c:next())
      assert.equals(want, m.payload)
      assert.is_true(is_native(m.seq))
      seqs[#seqs + 1] = m.seq
    end
    assert.same({ S1, S2, S3 }, { sea.seqstring(seqs[1]), sea.seqstring(seqs[2]), sea.seqstring(seqs[3]) })
    assert.is_false(seqs[1] == seqs[2])
    assert.is_true(c:rewind(seqs[2]))
    assert.equals("b", assert(c:next()).payload)
    assert.is_true(c:rewind(S3))
    assert.equals("c", assert(c:next()).payload)
    c:close()
    for _, start in ipairs({ seqs[2], S2 }) do
      c = assert(s:consumer({ start = start, stop_at_end = true }))
      local m = assert(c:next())
      assert.equals("b", m.payload)
      assert.equals(S2, sea.seqstring(m.seq))
      c:close()
    end
    s:close()
  end)

  describe("on Redis (entries of one millisecond)", function()
    local dir = tmp .. "/redis"
    local env = here .. "/../redis/redis_env.sh"
    local port
    setup(function()
      if not sh("command -v redis-server > /dev/null && command -v redis-cli > /dev/null") then return end
      -- redis_env.sh waits at most 10 s for the server to answer
      if sh(string.format("bash %s start %s > %s/redis_env.log 2>&1", env, dir, tmp)) then
        port = tonumber(slurp(dir .. "/port"))
      end
    end)
    teardown(function()
      if port then sh(string.format("bash %s stop %s > /dev/null 2>&1", env, dir)) end
    end)

    it("reads, rewinds to and starts at each of them", function()
      if not port then
        pending("no redis-server: " .. (slurp(tmp .. "/redis_env.log") or "not installed"))
        return
      end
      -- ms << 16 | n: 111411200000000001..3, one apart, 16 apart as doubles
      local ms, want = "1700000000000", { "111411200000000001", "111411200000000002", "111411200000000003" }
      for i, p in ipairs({ "a", "b", "c" }) do
        assert.is_true(sh(string.format("redis-cli -p %d XADD k %s-%d msg %s > /dev/null", port, ms, i, p)))
      end
      local uri = string.format("redis://127.0.0.1:%d/k", port)
      local s, msg, code = rt:connect(uri)
      if not s and code == "ESCHEME" then
        pending("no redis plugin in this build: " .. msg)
        return
      end
      assert(s, msg)
      local c = assert(s:consumer({ start = "beginning" })) -- no stop_at_end: see the file case
      local seqs = {}
      for i, p in ipairs({ "a", "b", "c" }) do
        local m = assert(c:next())
        assert.equals(p, m.payload)
        assert.equals(want[i], sea.seqstring(m.seq))
        seqs[i] = m.seq
      end
      assert.is_false(seqs[1] == seqs[2])
      assert.is_false(seqs[2] == seqs[3])
      assert.is_true(c:rewind(seqs[2]))
      assert.equals("b", assert(c:next()).payload)
      assert.is_true(c:rewind(want[3]))
      assert.equals("c", assert(c:next()).payload)
      c:close()
      for _, start in ipairs({ seqs[2], want[2] }) do
        c = assert(s:consumer({ start = start, stop_at_end = true }))
        local m = assert(c:next())
        assert.equals("b", m.payload)
        assert.equals(want[2], sea.seqstring(m.seq))
        c:close()
      end
      s:close()
    end)
  end)
end)
