-- cli_spec.lua: `seastreamer run` end to end over stdio, every bad input with its message and exit
-- status, and the examples. SEA_BUILD_DIR names the build; SEA_LUA picks the runner (5.4|luajit).
local build = assert(os.getenv("SEA_BUILD_DIR"), "SEA_BUILD_DIR is not set")
local lua = os.getenv("SEA_LUA") or "5.4"
local examples = assert(os.getenv("SEA_EXAMPLES_DIR"), "SEA_EXAMPLES_DIR is not set")
local ss = build .. "/seastreamer"
local tmp = os.tmpname()
os.remove(tmp)
assert(os.execute("mkdir -p " .. tmp))

local function write(name, text)
  local f = assert(io.open(tmp .. "/" .. name, "w"))
  f:write(text)
  f:close()
  return tmp .. "/" .. name
end

local function slurp(path)
  local f = assert(io.open(path))
  local s = f:read("*a")
  f:close()
  return s
end

-- Run `seastreamer run --lua LUA ARGS < input`; returns the exit status, stdout, stderr. With
-- secs, the run is killed after that long (status 124) if it has not ended.
local function run(args, input, env, secs)
  local inp = write("stdin", input or "")
  -- SEA_CHILD_ENV: how the ASan build undoes, for the runner, what it does to this interpreter.
  local cmd = string.format("%s %s %s %s run --lua %s %s < %s > %s/out 2> %s/err; echo $? > %s/rc",
    os.getenv("SEA_CHILD_ENV") or "", env or "", secs and ("timeout -k 5 " .. secs) or "", ss, lua,
    args, inp, tmp, tmp, tmp)
  os.execute(cmd)
  return tonumber(slurp(tmp .. "/rc")), slurp(tmp .. "/out"), slurp(tmp .. "/err")
end

local function payloads(out)
  local t = {}
  for line in out:gmatch("[^\n]+") do t[#t + 1] = line:gsub("^%b[] ", "") end
  return t
end

describe("seastreamer run (" .. lua .. ")", function()
  teardown(function() os.execute("rm -rf " .. tmp) end)

  it("runs the uppercase example over stdio", function()
    local rc, out = run(examples .. "/uppercase.lua --input stdio:// --output stdio:///up", "hello\n[k] world\n")
    assert.equals(0, rc)
    assert.same({ "HELLO", "WORLD" }, payloads(out))
    assert.matches("%[%d%d%d%d%-%d%d%-%d%dT[%d:.]+ | up | 0%] HELLO", out)
  end)

  it("runs the JSON router: routes by a field, skips what is not JSON", function()
    local rc, out, err = run(examples .. "/json_route.lua --input stdio:// --output stdio:///other " ..
      "--output orders=stdio:///orders --on-error skip",
      '{"type":"order","id":1}\n{"type":"ping"}\nnot json\n{"type":"order","id":2}\n')
    assert.equals(0, rc)
    local orders, other = {}, {}
    for key, p in out:gmatch("| (%w+) | %d+%] ([^\n]+)") do
      if key == "orders" then orders[#orders + 1] = p else other[#other + 1] = p end
    end
    assert.same({ '{"type":"order","id":1}', '{"type":"order","id":2}' }, orders)
    assert.same({ '{"kind":"ping"}' }, other)
    assert.matches("json_route.lua:%d+: not a JSON object: not json", err)
  end)

  it("counts per key in tumbling windows (the last one at the end of the input)", function()
    local lines = {}
    for i = 1, 30 do lines[#lines + 1] = string.format("[%s] x%d", ({ "a", "b", "c" })[i % 3 + 1], i) end
    local rc, out = run(examples .. "/window.lua --input stdio:// --output stdio:///counts",
      table.concat(lines, "\n") .. "\n", "WINDOW_MS=60000")
    assert.equals(0, rc)
    assert.same({ "a 10", "b 10", "c 10" }, payloads(out))
  end)

  it("runs the clock source until it stops itself", function()
    local rc, out = run(examples .. "/clock.lua --output stdio:///clock", "", "CLOCK_COUNT=4 CLOCK_MS=10")
    assert.equals(0, rc)
    assert.same({ "tick 0", "tick 1", "tick 2", "tick 3" }, payloads(out))
  end)

  it("replays a .ss file at its original pace (never faster)", function()
    local ss_file = tmp .. "/feed.ss"
    local src = write("feed.txt", "[2026-01-01T00:00:00.000 | k] a\n[2026-01-01T00:00:00.040 | k] b\n" ..
      "[2026-01-01T00:00:00.100 | k] c\n")
    assert.is_truthy(os.execute(string.format("%s %s relay --keep-meta stdio:// file://%s/k < %s",
      os.getenv("SEA_CHILD_ENV") or "", ss, ss_file, src)))
    local rc, out, err = run(examples .. "/replay.lua -I start=beginning -e --input file://" .. ss_file ..
      "/k --output stdio:///replayed")
    assert.equals(0, rc, err)
    assert.same({ "a", "b", "c" }, payloads(out))
    -- The output's own timestamps (ms): a message never leaves before its original gap has passed.
    local ms = {}
    for h, m, sec, frac in out:gmatch("T(%d%d):(%d%d):(%d%d)%.(%d%d%d)") do
      ms[#ms + 1] = ((tonumber(h) * 60 + tonumber(m)) * 60 + tonumber(sec)) * 1000 + tonumber(frac)
    end
    assert.equals(3, #ms)
    assert.is_true(ms[2] - ms[1] >= 40 - 1)
    assert.is_true(ms[3] - ms[1] >= 100 - 1)
  end)

  it("commits a file input only up to a failure, and a rerun resumes there", function()
    local ss_file = tmp .. "/commit.ss"
    local src = write("commit.txt", "a\nb\nc\nd\n")
    assert.is_truthy(os.execute(string.format("%s %s produce file://%s/k < %s",
      os.getenv("SEA_CHILD_ENV") or "", ss, ss_file, src)))
    local f = write("fail_c.lua", "return function(m)\n  assert(m.payload ~= 'c', 'refused c')\n  return m\nend\n")
    local args = " -I group=g -I reset=earliest -e --input file://" .. ss_file .. "/k --output stdio:///o"
    local rc, out, err = run(f .. args)
    assert.equals(2, rc)
    assert.matches("fail_c%.lua:2: refused c", err)
    assert.same({ "a", "b" }, payloads(out))
    rc, out, err = run(examples .. "/uppercase.lua" .. args)
    assert.equals(0, rc, err)
    assert.same({ "C", "D" }, payloads(out)) -- c was not committed, so it comes again
  end)

  it("-c N and out:stop() commit exactly what was processed; a rerun gets the rest", function()
    local ss_file = tmp .. "/count.ss"
    local src = write("count.txt", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n")
    assert.is_truthy(os.execute(string.format("%s %s produce file://%s/k < %s",
      os.getenv("SEA_CHILD_ENV") or "", ss, ss_file, src)))
    local function args(group)
      return " -I group=" .. group .. " -I reset=earliest -e --commit-interval 50 --input file://" ..
        ss_file .. "/k --output stdio:///o"
    end
    local rc, out, err = run(examples .. "/uppercase.lua -c 3" .. args("c"))
    assert.equals(0, rc, err)
    assert.same({ "1", "2", "3" }, payloads(out))
    rc, out, err = run(examples .. "/uppercase.lua" .. args("c"))
    assert.equals(0, rc, err)
    assert.same({ "4", "5", "6", "7", "8", "9", "10" }, payloads(out))
    -- out:stop() in the call for "4": 1 to 4 are processed and committed, nothing after.
    local f = write("stop4.lua", "return function(m, out)\n  if m.payload == '4' then out:stop() end\n" ..
      "  return m\nend\n")
    rc, out, err = run(f .. args("s"))
    assert.equals(0, rc, err)
    assert.same({ "1", "2", "3", "4" }, payloads(out))
    rc, out, err = run(examples .. "/uppercase.lua" .. args("s"))
    assert.equals(0, rc, err)
    assert.same({ "5", "6", "7", "8", "9", "10" }, payloads(out))
    local bad_rc = run(examples .. "/uppercase.lua -c none" .. args("s"))
    assert.equals(2, bad_rc)
  end)

  it("runs a source made only of tick (no process, no input)", function()
    local f = write("src_tick.lua", "local n = 0\nreturn { tick_ms = 5, tick = function(out)\n" ..
      "  n = n + 1\n  out:send(nil, 't' .. n)\n  if n == 3 then out:stop() end\nend }\n")
    local rc, out, err = run(f .. " --output stdio:///src")
    assert.equals(0, rc, err)
    assert.same({ "t1", "t2", "t3" }, payloads(out))
  end)

  it("gives a processor seqs above 2^53 exactly (msg.seq)", function()
    local f = write("seq.lua", "local sea = require 'seastreamer'\nreturn function(m)\n" ..
      "  return sea.seqstring(m.seq) .. ' ' .. (jit and tostring(m.seq) or math.type(m.seq) or type(m.seq))\nend\n")
    local rc, out, err = run(f .. " --input stdio:// --output stdio:///o",
      "[k | 1152921504606846977] a\n[k | 1152921504606846978] b\n[k | 18446744073709551615] c\n", nil, 60)
    assert.equals(0, rc, err)
    if lua == "luajit" then
      assert.same({ "1152921504606846977 1152921504606846977ULL", "1152921504606846978 1152921504606846978ULL",
        "18446744073709551615 18446744073709551615ULL" }, payloads(out))
    else
      assert.same({ "1152921504606846977 integer", "1152921504606846978 integer",
        "18446744073709551615 string" }, payloads(out))
    end
  end)

  it("batch mode sends everything", function()
    local rc, out = run(examples .. "/identity_batch.lua --input stdio:// --output stdio:///o",
      "1\n2\n3\n4\n5\n")
    assert.equals(0, rc)
    assert.same({ "1", "2", "3", "4", "5" }, payloads(out))
  end)

  it("parses its options as every command does (--opt=value, -h, -o START, -X)", function()
    local rc, out, err = run("--input=stdio:// --output=stdio:///up " .. examples .. "/uppercase.lua",
      "a\n")
    assert.equals(0, rc, err)
    assert.same({ "A" }, payloads(out))
    rc, out = run("-h")
    assert.equals(0, rc)
    assert.matches("usage: seastreamer run", out)
    for _, hook in ipairs({ "process", "batch", "start", "tick", "tick_ms", "stop", "linger", "input_end", "hold" }) do
      assert.matches(hook .. " = ", out, 1, true) -- every key of the processor table is named
    end
    -- -o is where the inputs start, as in consume (it used to be a second --output)
    local ss_file = tmp .. "/opts.ss"
    os.execute(string.format("printf 'x\ny\nz\n' | %s %s produce file://%s/k", os.getenv("SEA_CHILD_ENV") or "", ss, ss_file))
    rc, out, err = run(examples .. "/uppercase.lua -o 2 -e -X batch=1 --input file://" .. ss_file ..
      "/k --output stdio:///o")
    assert.equals(0, rc, err)
    assert.same({ "Y", "Z" }, payloads(out))
  end)

  describe("bad input", function()
    local function expect(rc_want, pattern, rc, out, err)
      assert.equals(rc_want, rc)
      assert.matches(pattern, err)
    end

    it("a missing script", function()
      -- said once, not "cannot load cannot open"
      expect(2, "seastreamer run: cannot open [^\n]*nosuch%.lua: No such file", run(tmp .. "/nosuch.lua --input stdio:// --output stdio://"))
    end)
    it("a script that does not compile", function()
      local f = write("syntax.lua", "return function(m)\n  return m.payload ..\nend\n")
      expect(2, "cannot load .*syntax%.lua:3:", run(f .. " --input stdio:// --output stdio://"))
    end)
    it("a script that fails while loading", function()
      local f = write("boom.lua", "local x = nil\nreturn x.field\n")
      expect(2, "boom%.lua failed while loading: .*boom%.lua:2:", run(f .. " --input stdio:// --output stdio://"))
      f = write("boom_t.lua", "local cfg = {}\nerror({ reason = 'no config' })\n")
      expect(2, "boom_t%.lua failed while loading: .*boom_t%.lua:2: %(error object is a table value%)",
        run(f .. " --input stdio:// --output stdio://"))
    end)
    it("a script that returns no processor", function()
      local f = write("none.lua", "local x = 1\n")
      expect(2, "none%.lua: returned nothing, expected a processor", run(f .. " --input stdio:// --output stdio://"))
      f = write("num.lua", "return 42\n")
      expect(2, "num%.lua: returned a number", run(f .. " --input stdio:// --output stdio://"))
      f = write("tbl.lua", "return { tick = print }\n")
      expect(2, "tbl%.lua: the processor table has neither 'process' nor 'batch'", run(f .. " --input stdio:// --output stdio://"))
    end)
    it("a processor that errors: stop prints the position; what came before is out", function()
      -- a message, and an error object that is not a string (its type, where it was raised)
      for name, raise in pairs { err = { "'no b'", "no b" }, err_t = { "{ 1 }", "%(error object is a table value%)" } } do
        local f = write(name .. ".lua", "return function(m)\n  if m.payload == 'b' then error(" .. raise[1] ..
          ") end\n  return m\nend\n")
        local rc, out, err = run(f .. " --input stdio:// --output stdio:///o", "a\nb\nc\n")
        expect(2, name .. "%.lua:2: " .. raise[2], rc, out, err)
        assert.matches("at message broadcast | 1 of stdio://", err)
        assert.same({ "a" }, payloads(out))
      end
      -- a shard other than 0 is named too, as in the line format: a seq alone is ambiguous
      local f = write("err_s.lua", "return function(m)\n  error('no')\nend\n")
      local rc, out, err = run(f .. " --input stdio:// --output stdio:///o", "[k | 5 | 2] x\n")
      expect(2, "err_s%.lua:2: no", rc, out, err)
      assert.matches("at message k | 5 | 2 of stdio://", err)
      -- and so does skip
      rc, out, err = run(f .. " --input stdio:// --output stdio:///o --on-error skip", "[k | 5 | 2] x\n")
      assert.equals(0, rc, err)
      assert.matches("skipped message k | 5 | 2 of stdio://", err)
    end)
    it("a processor that returns a wrong type", function()
      local f = write("wrong.lua", "\nreturn function(m)\n  return 12\nend\n")
      expect(2, "wrong%.lua:2: processor returned a number", run(f .. " --input stdio:// --output stdio://", "x\n"))
    end)
    it("a processor that never returns", function()
      local f = write("loop.lua", "return function(m)\n  while true do end\nend\n")
      expect(2, "loop%.lua:2: instruction limit exceeded",
        run(f .. " --max-instructions 100000 --input stdio:// --output stdio://", "x\n", nil, 60))
      expect(2, "loop%.lua:2: time limit exceeded",
        run(f .. " --max-ms 20 --input stdio:// --output stdio://", "x\n", nil, 60))
    end)
    it("a processor that catches a limit's error and returns still fails with the limit", function()
      local f = write("catch_call.lua", "return function(m)\n  pcall(function() while true do end end)\n" ..
        "  return m\nend\n")
      local rc, out, err = run(f .. " --max-instructions 100000 --input stdio:// --output stdio://", "x\ny\n",
        nil, 60)
      expect(2, "catch_call%.lua:2: instruction limit exceeded %(100000 per call%) %(the processor caught the " ..
        "error and went on", rc, out, err)
      assert.equals("", out)
      rc, out, err = run(f .. " --max-ms 50 --input stdio:// --output stdio://", "x\n", nil, 60)
      expect(2, "catch_call%.lua:2: time limit exceeded %(50 ms per call%)", rc, out, err)
      assert.equals("", out)
    end)
    it("a script whose top-level code never ends is stopped by the limits while loading", function()
      local f = write("spin.lua", "local n = 0\nwhile true do n = n + 1 end\n")
      local t0 = os.time()
      local rc, _, err = run(f .. " --max-ms 500 --max-instructions 100000 --input stdio:// --output stdio://",
        "x\n", nil, 60)
      expect(2, "spin%.lua failed while loading: .*spin%.lua:2: instruction limit exceeded while loading " ..
        "%(%-%-max%-instructions 100000%)", rc, nil, err)
      rc, _, err = run(f .. " --max-ms 300 --input stdio:// --output stdio://", "x\n", nil, 60)
      expect(2, "spin%.lua failed while loading: .*spin%.lua:2: time limit exceeded while loading " ..
        "%(%-%-max%-ms 300%)", rc, nil, err)
      assert.is_true(os.time() - t0 < 30) -- stopped by the limits, not by timeout (60 s each)
    end)
    it("a limit hit while loading fails the load even if the script catches it", function()
      local f = write("catch_ret.lua", "pcall(function() while true do end end)\nreturn function(m) return m end\n")
      local rc, out, err = run(f .. " --max-instructions 100000 --input stdio:// --output stdio://", "x\n", nil, 60)
      expect(2, "catch_ret%.lua failed while loading: .*catch_ret%.lua:1: instruction limit exceeded", rc, out, err)
      assert.equals("", out)
      f = write("catch_on.lua", "while true do pcall(function() while true do end end) end\n")
      rc, out, err = run(f .. " --max-ms 200 --input stdio:// --output stdio://", "x\n", nil, 60)
      expect(2, "catch_on%.lua failed while loading: .*catch_on%.lua:1: time limit exceeded while loading " ..
        "%(%-%-max%-ms 200%) %(and went on after it%)", rc, out, err)
    end)
    it("a script whose top-level code runs out of memory", function()
      local f = write("oom_top.lua", "local t = {}\nfor i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end\n" ..
        "return function(m) return m end\n")
      expect(2, "oom_top%.lua failed while loading: .*memory limit exceeded while loading %(%-%-max%-memory 16 MB%)",
        run(f .. " --max-memory 16 --input stdio:// --output stdio://", "x\n", nil, 60))
    end)
    -- An error in a function the processor tail-calls (`return f(...)`) names the script, not
    -- the runner's loop: LuaJIT has no frame of the processor left there.
    it("an error in a tail call of the processor", function()
      local f = write("tail.lua", "local cjson = require 'cjson'\nreturn function(m)\n" ..
        "  return cjson.encode(function() end)\nend\n")
      local rc, out, err = run(f .. " --input stdio:// --output stdio:///o", "x\n")
      if lua == "luajit" then
        expect(2, "tail%.lua:2: processor, in the function it tail%-called %(return f%(%.%.%.%)%): Cannot serialise " ..
          "function", rc, out, err)
      else
        expect(2, "tail%.lua:3: Cannot serialise function", rc, out, err)
      end
      assert.is_nil(err:match("driver"))
    end)
    -- A result the output refuses names the output and its own reason, not the input.
    it("a result the output refuses", function()
      local f = write("nl.lua", "return function(m) return 'a\\nb' end\n")
      expect(2, "nl%.lua:1: processor result not sent to stdio:///o: send to 'o': stdio: a printed field " ..
        "holds the message delimiter %(a newline%)", run(f .. " --input stdio:// --output stdio:///o", "x\n"))
      f = write("big.lua", "return function(m) return ('x'):rep(2000) end\n")
      expect(2, "big%.lua:1: processor result not sent to stdio:///o: send to 'o': payload of 2000 bytes " ..
        "exceeds max_payload %(1000 bytes; the producer option max_payload raises it",
        run(f .. " --input stdio:// --output stdio:///o -O max_payload=1000", "x\n"))
    end)
    it("a processor that runs out of memory", function()
      local f = write("oom.lua", "local t = {}\nreturn function(m)\n  for i = 1, 1e7 do t[i] = m.payload .. i end\nend\n")
      expect(1, "oom%.lua: not enough memory %(memory limit reached: %-%-max%-memory 16 MB%)\n  at message " ..
        "broadcast | 0 of stdio:// %(not committed, nor anything after it: a memory error stops the run",
        run(f .. " --max-memory 16 --input stdio:// --output stdio://", "x\n"))
    end)
    -- The run stops at the message that ran out, whatever --on-error says: going on after it
    -- crashed LuaJIT (an allocation failed in compiled code), and skipping it would commit it. It
    -- and those after it stay undone: a rerun of the group gets exactly them.
    it("a processor that runs out of memory under --on-error skip", function()
      local file = tmp .. "/oom.ss"
      os.remove(file)
      assert(os.execute("seq 1 100 | " .. ss .. " produce file://" .. file .. "/k 2>/dev/null"))
      local f = write("oom_grow.lua", "local hold = {}\nreturn function(m)\n" ..
        "  for i = 1, 2000 do hold[#hold + 1] = ('y'):rep(200) .. #hold end\n  return m.payload\nend\n")
      local group = " --input file://" .. file .. " -I group=g -I mode=resumable -e --output stdio:///o"
      local rc, out, err = run(f .. group .. " -I start=beginning --max-memory 20 --on-error skip")
      assert.equals(1, rc, err)
      local first = payloads(out)
      assert.is_true(#first > 0 and #first < 100, "first run printed " .. #first)
      assert.matches("oom_grow%.lua: not enough memory %(memory limit reached: %-%-max%-memory 20 MB%)\n  " ..
        "at message k | " .. (#first + 1) .. " of file://", err) -- the file numbers from 1
      assert.is_nil(err:match("skipped"))
      rc, out, err = run(examples .. "/identity.lua" .. group)
      assert.equals(0, rc, err)
      local all = first
      for _, p in ipairs(payloads(out)) do all[#all + 1] = p end
      local want = {}
      for i = 1, 100 do want[i] = tostring(i) end
      assert.same(want, all) -- every number once, in order
    end)
    it("bad options", function()
      expect(2, "expected a script", run("--input stdio:// --output stdio://"))
      expect(2, "%-%-transactional%-id goes with %-%-exactly%-once",
        run(examples .. "/identity.lua --transactional-id X --input stdio:// --output stdio://"))
      expect(2, "expected a default %-%-output", run(examples .. "/uppercase.lua --input stdio://"))
      expect(2, "on%-error 'later'", run(examples .. "/uppercase.lua --on-error later --input stdio:// --output stdio://"))
      expect(2, "unknown option '%-%-frob'", run(examples .. "/uppercase.lua --frob --input stdio:// --output stdio://"))
      expect(2, "needs a value", run(examples .. "/uppercase.lua --input"))
      expect(2, "second default output", run(examples .. "/uppercase.lua --input stdio:// --output stdio:// --output stdio:///b"))
      expect(2, "no inputs", run(examples .. "/uppercase.lua --output stdio://"))
      expect(2, "max%-memory needs a positive", run(examples .. "/uppercase.lua --max-memory lots --input stdio:// --output stdio://"))
      -- numbers past what the limits can hold are refused, not wrapped into a tiny or no limit
      expect(2, "max%-memory needs a positive number of MB %(at most 17592186044415%), not '17592186044416'",
        run(examples .. "/uppercase.lua --max-memory 17592186044416 --input stdio:// --output stdio://"))
      for _, v in ipairs({ "9223372036854775807", "99999999999999999999" }) do
        expect(2, "max%-ms needs a positive number %(at most 2%^53%), not '" .. v .. "'",
          run(examples .. "/uppercase.lua --max-ms " .. v .. " --input stdio:// --output stdio://"))
      end
      -- the largest is a limit that does not trip
      local rc, out = run(examples .. "/uppercase.lua --max-ms 9007199254740992 --max-memory 17592186044415 "
        .. "--input stdio:// --output stdio:///up", "hi\n")
      assert.equals(0, rc)
      assert.matches("%] HI\n$", out)
      expect(2, "%-%-lua '9%.9': expected 5%.4 or luajit", run("--lua 9.9 x.lua"))
      expect(2, "%-%-output x=: no URI after '='", run(examples .. "/uppercase.lua --input stdio:// --output stdio:// --output x="))
      -- a bad SEASTREAMER_LUA is named as such, not as an --lua that was not given
      os.execute(string.format("SEASTREAMER_LUA=5.1 %s %s run x.lua > %s/out 2> %s/err; echo $? > %s/rc",
        os.getenv("SEA_CHILD_ENV") or "", ss, tmp, tmp, tmp))
      assert.equals(2, tonumber(slurp(tmp .. "/rc")))
      assert.matches("SEASTREAMER_LUA='5%.1': expected 5%.4 or luajit", slurp(tmp .. "/err"))
    end)
    it("an unknown scheme", function()
      expect(3, "unknown scheme 'nosuch'", run(examples .. "/uppercase.lua --input nosuch://x --output stdio://"))
    end)
    it("a table that is not a list is an error, not silence", function()
      local f = write("obj.lua", "return function(m)\n  return { a = 1 }\nend\n")
      expect(2, "obj%.lua:1: processor returned a table that is not a list %(it has the key 'a'%)",
        run(f .. " --input stdio:// --output stdio://", "x\n"))
    end)
    it("a tick-only source takes no input", function()
      local f = write("tick_only.lua", "return { tick = function(out) out:stop() end }\n")
      expect(2, "tick_only%.lua: .*cannot take inputs; a source with only 'tick' runs without %-%-input",
        run(f .. " --input stdio:// --output stdio://"))
    end)
    it("a send to an output that does not exist", function()
      local f = write("named.lua", "return function(m, out)\n  out:send('nowhere', m)\nend\n")
      expect(2, "named%.lua:2: .*no output named 'nowhere'", run(f .. " --input stdio:// --output stdio://", "x\n"))
    end)
  end)
end)
