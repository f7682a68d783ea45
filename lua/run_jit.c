/* run_jit.c: LuaJIT only: the per-message driver and the batch wrapper in Lua, compiled by
 * LuaJIT, with FFI views of the messages. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "run_internal.h"

#ifdef SEA_LUAJIT
/* The driver's sends, which LuaJIT calls through the FFI from the code it compiled: the common
 * results and out:send go out with no Lua API call and no exit from the trace. No Lua API here,
 * and nothing under sea_pipeline_send calls Lua while a processor call is under way (the pipeline
 * defers its stop until the call returns). Both take serial: the run the driver or wrapper was
 * made for (an out object kept from an earlier run names its outputs); out: the output's index;
 * p, len: a payload, or p NULL: a message of the call as it came; viaout: out:send, which a
 * stopping run refuses. 0, or an error code, and then nothing was sent: the caller takes its slow
 * path (sendres, or out:send in C), which says why. */

/* The run under way, if it is the one of serial, a processor call is under way, and out is one
 * of its outputs; else NULL. */
static inline run_t *jit_run(uint32_t serial, int32_t out) {
  run_t *r = sea_run_active;
  if (r == NULL || r->serial != serial || r->finished || r->pl == NULL || r->call_msgs == NULL ||
      out < 0 || (size_t)out >= r->nout)
    return NULL;
  return r;
}

/* Send p (or message m as it came) to output out of r, as jit_send and jit_send_batch do. */
static inline int jit_out(run_t *r, int32_t out, const sea_message_t *m, const char *p, size_t len,
                          int32_t viaout) {
  if (viaout && sea_pipeline_status(r->pl) != 0)
    return SEA_ESTATE;
  return p ? sea_run_send_bytes(r, &r->out[out], p, len, NULL)
           : sea_run_send_message(r, &r->out[out], m, NULL);
}

/* The driver's: i is its call under way, whose message gives a payload its default stream key
 * and is the one sent when p is NULL. */
static int jit_send(uint32_t serial, int32_t out, int32_t i, const char *p, size_t len,
                    int32_t viaout) {
  run_t *r = jit_run(serial, out);
  if (r == NULL || i < 1 || (size_t)i > r->call_count)
    return SEA_EINVAL;
  const sea_message_t *m = &r->call_msgs[i - 1];
  r->cur_msg = m;
  return jit_out(r, out, m, p, len, viaout);
}

/* The batch wrapper's out:send: k is the number of the call's message to send (p NULL), or 0
 * with a payload p, which keeps the call's default stream key. */
static int jit_send_batch(uint32_t serial, int32_t out, int32_t k, const char *p, size_t len,
                          int32_t viaout) {
  run_t *r = jit_run(serial, out);
  if (r == NULL || k < 0 || (size_t)k > r->call_count || (k == 0) != (p != NULL))
    return SEA_EINVAL;
  return jit_out(r, out, k > 0 ? &r->call_msgs[k - 1] : NULL, p, len, viaout);
}

/* The batch wrapper's: room for the message numbers of a result of n items (r->jidx), or NULL
 * (no run of this serial under way, or out of memory). */
static int32_t *jit_batch_index(uint32_t serial, int32_t n) {
  run_t *r = jit_run(serial, 0);
  if (r == NULL || n < 0)
    return NULL;
  int32_t *p = sea_run_room(r->jidx, &r->jidx_cap, (size_t)n, sizeof *p);
  if (p == NULL)
    return NULL;
  r->jidx = p;
  r->jidx_n = (size_t)n;
  return p;
}

/* sendres(i, result): the driver's slow path for what call i returned: a result other than a
 * string or the call's own message (checked first: a wrong one sends nothing), or one whose fast
 * send failed. Returns true if it went out; otherwise message i fails (drive.failed_at), and the
 * driver returns. */
static int driver_send_result(lua_State *L) {
  run_t *r = sea_run_active;
  lua_Integer i = luaL_checkinteger(L, 1);
  if (r == NULL || r->call_msgs == NULL || i < 1 || (size_t)i > r->call_count)
    return luaL_error(L, "seastreamer.run driver: no call %d under way", (int)i);
  const sea_message_t *m = &r->call_msgs[i - 1];
  r->cur_msg = m;
  const char *bad = sea_run_send_result(r, 2); /* checks it whole before anything goes */
  if (bad != NULL) {
    r->drive.failed_at = (size_t)i;
    snprintf(r->drive.failure, sizeof r->drive.failure, "%s %s", sea_run_where_fn(r, r->fn_ref),
             bad);
  }
  lua_pushboolean(L, bad == NULL);
  return 1;
}

/* LuaJIT: the driver hands the processor light views (seastreamer_lua.h), which C numbers for
 * each batch; or, where light userdata carry another metatable, FFI structs {message pointer,
 * gen, i}. A light view's fields are read here, compiled, when it is the call's own (ctx.cur), and
 * making one allocates nothing. An FFI struct is not allocated either while it does not escape
 * the call (the processor reads fields, or returns it: the driver sends it by its number), but it
 * is as soon as the processor calls a C function that LuaJIT does not compile (cjson's decode):
 * LuaJIT leaves its compiled code there and needs the processor's msg as an object. The light
 * views cost C about 100 instructions a message to make (pushed into a table), and save about 300
 * where the struct would have been allocated (cachegrind, bench/lua's json_route 13,028-13,256
 * against 12,804-13,020; identity 2,271 against 2,380). FFI structs expire as userdata views do:
 * valid while gen is the current run's and i the current call. Whatever else takes a message
 * (out:send, a list returned, the module's functions) gets the userdata view of the same message
 * (tomsg, through mat below), which keeps msg:copy(), msg.headers and msg:totable() in one place.
 * Made once per Lua state (a ctype's metatable cannot change): registry[jit_lib_key] = {make =
 * function(fn, send, stop, state, sendown, sendres, jsend, outs, serial, jat) -> driver, out,
 * makebatch = the same with jidx for jat -> wrapper, out}; the converter for sea_lua_to_view goes
 * to registry[sea_lua_jview_key]. The wrapper tells C which items of its result are messages of the
 * call through jidx, an FFI call for an array that it fills: a Lua table of their numbers, which C
 * then read item by item, cost LuaJIT identity_batch about 115 instructions a message more
 * (cachegrind, 2,964 against 2,849). */
static const char jit_lib_key = 0;
static const char jit_src[] =
    "local mat, O, SZ, LMT = ...\n"
    "local ffi = require 'ffi'\n"
    "local type, tostring, tonumber, error, getmetatable = type, tostring, tonumber, error, "
    "getmetatable\n"
    "local VIEWMT = '" SEA_LUA_VIEW_MT "'\n"
    "local band = require('bit').band\n"
    "local cast, fstring, istype = ffi.cast, ffi.string, ffi.istype\n"
    /* The fields read of a sea_message_t, at the offsets C gave (O, SZ), padded in between:
     * one field access each, where pointer arithmetic and casts were several (each a new cdata
     * when the code runs in the interpreter). */
    "local F = { { O.pdata, 'const char *pdata' }, { O.plen, 'size_t plen' },\n"
    "  { O.key, 'const char *key' }, { O.keylen, 'size_t keylen' },\n"
    "  { O.skey, 'const char *skey' }, { O.shard, 'uint64_t shard' },\n"
    "  { O.seq, 'uint64_t seq' }, { O.ts, 'int64_t ts' } }\n"
    "table.sort(F, function(a, b) return a[1] < b[1] end)\n"
    "local decl, at = {}, 0\n"
    "for k, f in ipairs(F) do\n"
    "  if f[1] > at then decl[#decl + 1] = 'char _p' .. k .. '[' .. (f[1] - at) .. '];' end\n"
    "  decl[#decl + 1] = f[2] .. ';'\n"
    "  at = f[1] + ffi.sizeof(f[2]:match('^(.-)%s*%w+$'))\n"
    "end\n"
    "if SZ > at then decl[#decl + 1] = 'char _pe[' .. (SZ - at) .. '];' end\n"
    "pcall(ffi.cdef, 'typedef struct seastreamer_jmsg { ' .. table.concat(decl, ' ') .. "
    "' } seastreamer_jmsg;')\n"
    "pcall(ffi.cdef, 'typedef struct seastreamer_jview { const seastreamer_jmsg *m; "
    "double gen; int32_t i; } seastreamer_jview;')\n"
    "local MT, MP = ffi.typeof('seastreamer_jmsg'), ffi.typeof('const seastreamer_jmsg *')\n"
    "assert(ffi.sizeof(MT) == SZ, 'seastreamer.run driver: message layout')\n"
    "for _, f in ipairs(F) do\n"
    "  assert(ffi.offsetof(MT, f[2]:match('(%w+)$')) == f[1], 'seastreamer.run driver: message "
    "layout')\n"
    "end\n"
    "local VT = ffi.typeof('seastreamer_jview')\n"
    "local ctx = { gen = -1, state = { 0 } }\n"
    "local function valid(v)\n"
    "  return v.gen == ctx.gen and (v.i < 0 or v.i == ctx.state[1])\n"
    "end\n"
    "local function msgp(v, k)\n"
    "  if not valid(v) then error(\"message used after the call that received it returned \"\n"
    "    .. \"(field '\" .. tostring(k) .. \"'; keep msg:copy() to use it later)\", 3) end\n"
    "  return v.m\n"
    "end\n"
    "local function tomsg(v)\n"
    "  if not valid(v) then return mat(0) end\n"
    "  if ctx.mgen ~= ctx.gen then ctx.mgen, ctx.mats = ctx.gen, {} end\n"
    "  local u = ctx.mats[v.i]\n"
    "  if u == nil then u = mat(v.i); ctx.mats[v.i] = u end\n"
    "  return u\n"
    "end\n"
    "local lfields = {\n"
    "  payload = function(m) return fstring(m.pdata, m.plen) end,\n"
    "  size = function(m) return tonumber(m.plen) end,\n"
    "  key = function(m) local k = m.key\n"
    "    if k == nil then return nil end\n"
    "    return fstring(k, m.keylen) end,\n"
    "  stream_key = function(m) local k = m.skey\n"
    "    if k == nil then return '' end\n"
    "    return fstring(k) end,\n"
    "  shard = function(m) return tonumber(m.shard) end,\n"
    "  seq = function(m) return m.seq end,\n"
    "  timestamp = function(m) return tonumber(m.ts) end,\n"
    "}\n"
    "local fields = { headers = function(m, v) return tomsg(v).headers end }\n"
    "for k, f in pairs(lfields) do fields[k] = f end\n"
    "local methods = {\n"
    "  copy = function(v) return tomsg(v):copy() end,\n"
    "  totable = function(v) return tomsg(v):totable() end,\n"
    "}\n"
    "ffi.metatype(VT, {\n"
    "  __index = function(v, k)\n"
    "    local f = fields[k]\n"
    "    if f then return f(msgp(v, k), v) end\n"
    "    return methods[k]\n"
    "  end,\n"
    "  __newindex = function(v, k)\n"
    "    error(\"a message is read-only (field '\" .. tostring(k) .. \"')\", 2)\n"
    "  end,\n"
    "  __tostring = function(v)\n"
    "    if not valid(v) then return 'seastreamer.message (expired)' end\n"
    "    return tostring(tomsg(v))\n"
    "  end,\n"
    "})\n"
    "local function convert(x) if istype(VT, x) then return tomsg(x) end return x end\n"
    /* The driver's light views: the call's own (ctx.cur) reads its fields here, compiled; the
     * rest (headers, copy, totable, an expired view, another light userdata) goes to C. */
    "if LMT then\n"
    "  local cindex = LMT.__index\n"
    "  LMT.__index = function(v, k)\n"
    "    if v == ctx.cur then\n"
    "      local f = lfields[k]\n"
    "      if f then return f(ctx.msgs + (ctx.state[1] - 1)) end\n"
    "    end\n"
    "    return cindex(v, k)\n"
    "  end\n"
    "  require('jit').flush()\n"
    "end\n"
    "local JSEND = 'int (*)(uint32_t, int32_t, int32_t, const char *, size_t, int32_t)'\n"
    "local JIDX = 'int32_t *(*)(uint32_t, int32_t)'\n"
    /* out:send's fast path, the driver's and the batch wrapper's: a string (sent as from s), or
     * a message of the call (its number k, else false), with no stream key, to an output known
     * by name, through the FFI (jsend). True if it went; else the caller's C functions send it
     * or say why. */
    "local function fastsend(jsend, serial, outs, name, p, key, s, k)\n"
    "  if key ~= nil then return false end\n"
    "  local o\n"
    "  if name == nil then o = 0 else o = outs[name] end\n"
    "  if o == nil then return false end\n"
    "  if type(p) == 'string' then return jsend(serial, o, s, p, #p, 1) == 0 end\n"
    "  return k and jsend(serial, o, k, nil, 0, 1) == 0\n"
    "end\n"
    "local function make(fn, send, stop, state, sendown, sendres, jsend, outs, serial, jat)\n"
    "  local out = { stop = stop }\n"
    "  local jsend, jat = cast(JSEND, jsend), cast('int32_t *', jat)\n"
    "  local function csend(o, i, p, len, viaout) return jsend(serial, o, i, p, len, viaout) end\n"
    "  local keep = {}\n"
    /* The call's own message goes by its number: no userdata view is made for it. */
    "  function out.send(self, name, p, key)\n"
    "    local own\n"
    "    if p ~= nil and p == ctx.cur then own = state[1]\n"
    "    elseif istype(VT, p) and p.i > 0 and valid(p) then own = p.i end\n"
    "    if fastsend(jsend, serial, outs, name, p, key, state[1], own) then return end\n"
    "    if own then return sendown(self, name, own, key) end\n"
    "    return send(self, name, convert(p), key)\n"
    "  end\n"
    /* Each result goes out as its call returns, in order with the call's out:send. This is a
     * function of its own so that LuaJIT compiles it on its own too: a processor that ends in a
     * tail call of a C function (return cjson.encode(t)) returns to the driver in the
     * interpreter, and an FFI call there would cost several times what it does compiled. */
    "  local function result(i, r, v)\n"
    /* The last 1024 string results stay referenced (keep). LuaJIT shrinks its string table
     * after a collection that leaves it mostly empty and grows it again as new strings come; a
     * small processor making a string a message had it resized some 800 times in 200,000
     * messages (uppercase in bench/lua: about 470 instructions a message), and only for some
     * numbers of other live strings. The driver used to keep a whole batch of results, until it
     * sent them after its loop; a ring of 1024 measured the same for uppercase (4,947-5,121
     * instructions a message with 0 to 3,000 other live strings, 5,504 with none kept) and
     * cheaper for json_route than a batch's (13,040 against 13,349).
     *
     * A string is told first: comparing it with v would need v's address, so that a view that
     * does not escape its call could no longer go unallocated (LuaJIT sinks it otherwise). */
    "    if type(r) == 'string' then\n"
    "      keep[band(i, 1023)] = r\n"
    "      if csend(0, i, r, #r, 0) ~= 0 and not sendres(i, r) then return false end\n"
    "    elseif r == v then\n"
    "      if csend(0, i, nil, 0, 0) ~= 0 and not sendres(i, convert(v)) then return false end\n"
    "    elseif r ~= nil then\n"
    "      if type(r) == 'table' then\n"
    "        for k = 1, #r do r[k] = convert(r[k]) end\n"
    "      else r = convert(r) end\n"
    "      if not sendres(i, r) then return false end\n"
    "    end\n"
    "    return not state[2]\n"
    "  end\n"
    /* views: the call's light views (C made them and tells which is live by jat), or nil:
     * FFI structs made here. */
    "  return function(n, gen, base, views)\n"
    "    ctx.gen, ctx.state = gen, state\n"
    "    local msgs = cast(MP, base)\n"
    /* A call that sets another metatable for light userdata (a library's debug.setmetatable)
     * has FFI structs made for the next messages: under it a light view would read what it
     * says. (Compiled, getmetatable is a constant: LuaJIT flushes its traces at the change.) */
    "    if views then\n"
    "      ctx.msgs = msgs\n"
    "      for i = 1, n do\n"
    "        state[1] = i\n"
    "        jat[0] = i\n"
    "        local v = views[i]\n"
    "        if getmetatable(v) == VIEWMT then ctx.cur = v\n"
    "        else ctx.cur = nil; v = VT(msgs + (i - 1), gen, i) end\n"
    "        if not result(i, fn(v, out), v) then return end\n"
    "      end\n"
    "      return\n"
    "    end\n"
    "    for i = 1, n do\n"
    "      state[1] = i\n"
    "      local v = VT(msgs + (i - 1), gen, i)\n"
    "      if not result(i, fn(v, out), v) then return end\n"
    "    end\n"
    "  end, out\n"
    "end\n"
    "local function makebatch(fn, send, stop, state, sendown, sendres, jsend, outs, serial, jidx)\n"
    "  local out = { stop = stop }\n"
    "  local jsend, jidx = cast(JSEND, jsend), cast(JIDX, jidx)\n"
    /* A string keeps the call's default stream key (0); message k of the call goes by k. */
    "  function out.send(self, name, p, key)\n"
    "    local k = istype(VT, p) and p.i < 0 and valid(p) and -p.i\n"
    "    if fastsend(jsend, serial, outs, name, p, key, 0, k) then return end\n"
    "    return send(self, name, convert(p), key)\n"
    "  end\n"
    "  return function(n, gen, base)\n"
    "    ctx.gen = gen\n"
    "    local msgs = cast(MP, base)\n"
    "    local b = {}\n"
    "    for i = 1, n do b[i] = VT(msgs + (i - 1), gen, -i) end\n"
    "    local res = fn(b, out)\n"
    "    if istype(VT, res) then return convert(res) end\n"
    "    if type(res) ~= 'table' then return res end\n"
    "    local m = #res\n"
    "    local ix = jidx(serial, m)\n"
    "    if ix == nil then error('seastreamer.run: out of memory', 0) end\n"
    "    local any = false\n"
    "    for k = 1, m do\n"
    "      local x = res[k]\n"
    "      if istype(VT, x) and x.gen == gen and x.i < 0 then\n"
    "        ix[k - 1] = -x.i\n"
    "        any = true\n"
    "      else\n"
    "        ix[k - 1] = 0\n"
    "      end\n"
    "    end\n"
    "    return res, any\n"
    "  end, out\n"
    "end\n"
    "return { make = make, makebatch = makebatch, convert = convert, ctx = ctx }\n";

/* mat(i): the userdata view of message i of the driver's current run, valid during call i; or,
 * i < 0, of message -i of the current batch call, valid during the call (0, or no such message:
 * an expired view). */
static int jit_mat(lua_State *L) {
  run_t *r = sea_run_active;
  lua_Integer i = luaL_checkinteger(L, 1);
  size_t k = (size_t)(i < 0 ? -i : i);
  if (r == NULL || r->call_msgs == NULL || k < 1 || k > r->call_count) {
    sea_lua_push_view(L, NULL, NULL);
    return 1;
  }
  sea_lua_view_t *v = sea_lua_push_view(L, &r->call_msgs[k - 1], &sea_run_epoch);
  if (i > 0) {
    v->pos = i;
    v->pos_ref = r->state_ref;
  }
  return 1;
}

/* Send what the LuaJIT batch wrapper returned: res at index res, and at idx whether r->jidx holds
 * message numbers (item k of res is message jidx[k-1] of the call, 0: not one). The list is
 * resolved whole before any of it goes, as sea_run_send_result does. Returns NULL or a
 * complaint. */
const char *sea_run_send_jbatch(run_t *r, int res, int idx) {
  lua_State *L = r->L;
  if (!lua_toboolean(L, idx))
    return sea_run_send_result(r, res);
  if (sea_run_not_list(L, res) != NULL)
    return sea_run_result_complaint(r, res);
  size_t n = sea_lua_rawlen(L, res);
  sea_run_item_t *it = sea_run_items(r, n);
  if (it == NULL)
    return sea_strerror(SEA_ENOMEM);
  for (size_t k = 1; k <= n; k++) {
    int32_t m = k <= r->jidx_n ? r->jidx[k - 1] : 0;
    if (m >= 1 && (size_t)m <= r->call_count) {
      it[k - 1] = (sea_run_item_t){.m = &r->call_msgs[m - 1]};
    } else {
      const char *bad = sea_run_item(L, res, k, &it[k - 1]); /* a string, a copy */
      if (bad != NULL)
        return bad;
    }
  }
  return sea_run_send_items(r, it, n);
}

static void jit_lib(lua_State *L);

/* The driver's or the batch wrapper's call returned (or raised): every view it handed out
 * expires now. Until the next call ctx.gen would still be that call's, and the last message's
 * view (the driver's state[1] stays at it), or every view of a batch, would read on in a hook
 * or after the run, from a batch the pipeline may have released. */
void sea_run_jit_expire(run_t *r) {
  lua_State *L = r->L;
  jit_lib(L);
  lua_getfield(L, -1, "ctx");
  lua_pushnumber(L, -1);
  lua_setfield(L, -2, "gen");
  lua_pushnil(L);
  lua_setfield(L, -2, "cur");
  lua_pop(L, 2);
}

bool sea_run_jit_views(run_t *r, const sea_message_t *msgs, size_t count) {
#ifdef SEA_LUA_LIGHT_VIEWS
  if (sea_lua_light_begin(r->L, &sea_run_epoch, count)) {
    lua_rawgeti(r->L, LUA_REGISTRYINDEX, r->jviews_ref);
    r->jat = 0;
    sea_lua_fill_light(r->L, -1, msgs, count, &sea_run_epoch, &r->jat);
    return true;
  }
#else
  (void)msgs;
  (void)count;
#endif
  lua_pushnil(r->L);
  return false;
}

void sea_run_jit_views_end(run_t *r, size_t count) {
#ifdef SEA_LUA_LIGHT_VIEWS
  sea_lua_light_end();
#endif
  r->jat = 0;
  sea_run_epoch += count;
}

/* A reference to the LuaJIT wrapper made by the library's function maker (make: the per-message
 * driver; makebatch: the batch processor's) around the function at fn_ref. The wrapper hands the
 * processor an out object of its own (its upvalue), whose send takes FFI views. */
int sea_run_jit_wrap(run_t *r, const char *maker, int fn_ref) {
  lua_State *L = r->L;
  jit_lib(L);
  lua_getfield(L, -1, maker);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lua_pushcfunction(L, sea_run_out_send);
  lua_pushcfunction(L, sea_run_out_stop);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
  lua_pushcfunction(L, sea_run_out_send_own);
  lua_pushcfunction(L, driver_send_result);
  int (*jsend)(uint32_t, int32_t, int32_t, const char *, size_t, int32_t) =
      strcmp(maker, "make") == 0 ? jit_send : jit_send_batch;
  void *jp;
  memcpy(&jp, &jsend, sizeof jp); /* a function pointer, for ffi.cast */
  lua_pushlightuserdata(L, jp);
  lua_createtable(L, 0, (int)r->nout); /* outs: the named outputs' indexes */
  for (size_t i = 1; i < r->nout; i++)
    if (r->out[i].name) {
      lua_pushinteger(L, (lua_Integer)i);
      lua_setfield(L, -2, r->out[i].name);
    }
  lua_pushnumber(L, (lua_Number)r->serial);
  if (jsend == jit_send) { /* the driver's: where it says which call is under way */
    lua_pushlightuserdata(L, &r->jat);
  } else {
    int32_t *(*jidx)(uint32_t, int32_t) = jit_batch_index;
    memcpy(&jp, &jidx, sizeof jp);
    lua_pushlightuserdata(L, jp);
  }
  lua_call(L, 10, 2);
  lua_pushcfunction(L, sea_run_out_stats);
  lua_setfield(L, -2, "stats");
  lua_pop(L, 1);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  return ref;
}

/* Push the LuaJIT driver library of this state (made on first use). */
static void jit_lib(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&jit_lib_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, jit_src, sizeof jit_src - 1, "=seastreamer.run driver") != 0)
    lua_error(L);
  lua_pushcfunction(L, jit_mat);
  lua_createtable(L, 0, 8);
  static const struct {
    const char *name;
    size_t off;
  } offs[] = {
      {"pdata", offsetof(sea_message_t, payload.data)},
      {"plen", offsetof(sea_message_t, payload.len)},
      {"key", offsetof(sea_message_t, key)},
      {"keylen", offsetof(sea_message_t, key_len)},
      {"skey", offsetof(sea_message_t, meta.stream_key)},
      {"shard", offsetof(sea_message_t, meta.shard_id)},
      {"seq", offsetof(sea_message_t, meta.seq)},
      {"ts", offsetof(sea_message_t, meta.timestamp_us)},
  };
  for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
    lua_pushinteger(L, (lua_Integer)offs[k].off);
    lua_setfield(L, -2, offs[k].name);
  }
  lua_pushinteger(L, (lua_Integer)sizeof(sea_message_t));
#ifdef SEA_LUA_LIGHT_VIEWS
  sea_lua_push_light_mt(L);
#else
  lua_pushnil(L);
#endif
  lua_call(L, 4, 1);
  lua_pushlightuserdata(L, (void *)&sea_lua_jview_key);
  lua_getfield(L, -2, "convert");
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, (void *)&jit_lib_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}
#endif
