/* run.c: seastreamer.run{...}: a Lua processor on the host's pipeline (sea_pipeline_*), which
 * consumes, batches, produces, acknowledges and commits (docs/delivery.md). What is Lua's stays
 * here: the message views, the processor's results, out:send/out:stop, the hooks and the limits.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "run_limits.h"
#include "seastreamer_lua.h"

#define MAX_INPUTS 16
#define MAX_OUTPUTS 16

typedef struct output {
  const char *name; /* NULL for the default output */
  const char *uri;
  sea_streamer_t *s;
  size_t index; /* in the pipeline */
} output_t;

typedef struct input {
  const char *uri;
  sea_streamer_t *s;
} input_t;

typedef struct run {
  lua_State *L;
  sea_runtime_t *rt;
  sea_pipeline_t *pl;
  sea_metrics_t *metrics; /* metrics = "HOST:PORT" (--metrics) */
  const char *script;     /* for messages: the processor's chunk name */
  input_t in[MAX_INPUTS];
  size_t nin;
  output_t out[MAX_OUTPUTS]; /* out[0] is the default output */
  size_t nout;
  output_t *dead; /* the dead-letter output, or NULL */
  int fn_ref, batch_ref, start_ref, tick_ref, stop_ref, out_ref;
  int input_end_ref; /* called once every input has ended, if the processor lingers */
  bool linger;       /* the processor, not the end of the inputs, ends the run (out:stop()) */
  sea_on_error_t policy;
  uint64_t tick_ms;
  sea_lua_limits_t lim; /* per call */
  size_t max_kbytes;    /* Lua heap; 0 = none */
  bool in_call;
  bool tripped;       /* the call hit a limit: it fails, whatever it does after catching that */
  unsigned raised;    /* how many times the hook raised the limit's error in this call */
  char trip_msg[512]; /* the limit's error, with where the call was when it hit it */
  const sea_message_t *cur_msg; /* the message being processed (its key is the default) */
  /* The per-message processor without limits runs in a loop in Lua over the batch (the driver),
   * which LuaJIT compiles: driver(n) calls fn(views[i], out) for i = 1..n, sets state[1] = i
   * before each call, keeps what call i returned in results[i], and ends early once state[2] is
   * set (out:stop()). The results go out in order after the loop, or before an out:send to the
   * default output. */
  bool driven;
  bool jit; /* LuaJIT: the driver's views are FFI structs (see jit_src) */
  int driver_ref, results_ref, state_ref;
  int jbatch_ref;                 /* LuaJIT: the batch processor's wrapper (jit_src) */
  const sea_message_t *call_msgs; /* the messages of the processor call under way */
  size_t call_count;
  bool flushing;      /* sending the driver's results (checked in their calls) */
  struct {            /* the per-message loop's call under way: its messages are call_msgs */
    size_t flushed;   /* results already sent: those of calls 1..flushed */
    size_t at;        /* Lua 5.4: the call under way, 1-based (LuaJIT: state[1]) */
    size_t failed_at; /* a flush during the call met a refusal at this call (0: none) */
    char failure[1024];
  } drive;
  struct { /* a failure at a message after others of the same batch call were handled: the
              pipeline hands it again, alone first, and it is rejected then */
    const sea_batch_t *batch;
    size_t index;
    uint64_t seq;
    char why[1024];
  } pending;
  bool finished;
  bool stop_requested; /* out:stop() was called: stop once the current call returns */
  int status;          /* failures before the pipeline exists */
  char errmsg[1024];
  uv_timer_t tick_timer;
  bool tick_timer_on;
  uv_signal_t sigs[2];
  int nsigs;
} run_t;

static run_t *active_run; /* the count hook finds its budget here (one run per process) */
/* The views of one processor call are made for it and expire together when the call is over
 * (run_epoch moves on): a view kept past its call raises an error instead of showing a later
 * message. Never freed, so that a view kept even past its run can still tell. */
static uint64_t run_epoch = 1;

/* A failure of the run: the pipeline's (it stops) or, before there is one, the run's own. */
static void run_error(run_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_error(run_t *r, int status, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r->pl) {
    sea_pipeline_fail(r->pl, status, "%s", msg);
  } else if (r->status == 0) {
    r->status = status;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
  }
}

/* out:stop() takes effect once the Lua call that made it returned. */
static void after_lua_call(run_t *r) {
  if (r->stop_requested && r->pl)
    sea_pipeline_stop(r->pl);
}

/* ---------------------------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------------------------- */

/* The stream key for a payload the processor returned: the output's anchor, else the input
 * message's own key. */
static const char *default_key(run_t *r, output_t *o) {
  if (sea_producer_anchored(sea_pipeline_output(r->pl, o->index)) || r->cur_msg == NULL)
    return NULL;
  return r->cur_msg->meta.stream_key;
}
/* Send input message vm as it is (its bytes, key, headers and time) to o. */
static int send_message(run_t *r, output_t *o, const sea_message_t *vm, const char *stream_key) {
  sea_message_t m;
  memset(&m, 0, sizeof m);
  m.meta.timestamp_us = vm->meta.timestamp_us; /* forwarded: keeps its time, as relay */
  m.payload = vm->payload;
  m.key = vm->key;
  m.key_len = vm->key_len;
  m.headers = vm->headers;
  m.header_count = vm->header_count;
  m.meta.stream_key = stream_key ? stream_key : default_key(r, o);
  return sea_pipeline_send(r->pl, o->index, &m, 0);
}

/* Send the value at index i (a string or a message view) to o. Returns 0 or raises/returns err. */
static int send_value(run_t *r, output_t *o, int i, const char *stream_key) {
  lua_State *L = r->L;
  sea_message_t m;
  memset(&m, 0, sizeof m);
  if (lua_type(L, i) == LUA_TSTRING) {
    size_t len;
    m.payload.data = (const uint8_t *)lua_tolstring(L, i, &len);
    m.payload.len = len;
  } else {
    sea_lua_view_t *v = sea_lua_to_view(L, i);
    /* Flushing the driver's results: each was checked in its own call; the whole run's views
     * are still there. */
    const sea_message_t *vm = v == NULL ? NULL
                              : r->flushing && v->epoch == &run_epoch && v->gen == run_epoch
                                  ? v->msg
                                  : sea_lua_view_msg(L, v);
    if (vm == NULL)
      return SEA_EINVAL;
    return send_message(r, o, vm, stream_key);
  }
  m.meta.stream_key = stream_key ? stream_key : default_key(r, o);
  return sea_pipeline_send(r->pl, o->index, &m, 0);
}

static bool drive_flush(run_t *r, size_t upto);

/* out:send(name, payload [, stream_key]): to the output called name (nil: the default one). */
static int out_send(lua_State *L) {
  run_t *r = active_run;
  if (r == NULL || r->finished || r->pl == NULL)
    return luaL_error(L, "out:send() after the run ended");
  int base = 3;
  output_t *o = &r->out[0];
  if (!lua_isnil(L, 2)) {
    const char *name = luaL_checkstring(L, 2);
    o = NULL;
    for (size_t i = 1; i < r->nout; i++)
      if (r->out[i].name && strcmp(r->out[i].name, name) == 0)
        o = &r->out[i];
    if (o == NULL)
      return luaL_argerror(
          L, 2, lua_pushfstring(L, "no output named '%s' (add --output %s=URI)", name, name));
  }
  if (lua_type(L, base) != LUA_TSTRING && sea_lua_to_view(L, base) == NULL)
    return luaL_argerror(L, base, "expected a payload string or a message");
  const char *key = NULL;
  if (!lua_isnoneornil(L, base + 1)) {
    size_t kl;
    const char *k = luaL_checklstring(L, base + 1, &kl);
    int err;
    if ((key = sea_stream_key(k, kl, &err)) == NULL)
      return luaL_argerror(L, base + 1, lua_pushfstring(L, "invalid stream key '%s'", k));
  }
  if (sea_pipeline_status(r->pl) != 0)
    return luaL_error(L, "the run is stopping: %s", sea_pipeline_errmsg(r->pl));
  if (r->jit && r->driven && r->call_msgs) { /* in the driver: this call's message, after
                                                the earlier results */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
    lua_rawgeti(L, -1, 1);
    size_t at = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (o == &r->out[0] && !drive_flush(r, at - 1))
      return luaL_error(L, "%s", r->drive.failure); /* the driver stops; see lua_process */
    r->cur_msg = &r->call_msgs[at - 1];
  }
  int rc = send_value(r, o, base, key);
  if (rc != 0) {
    sea_producer_t *p = sea_pipeline_output(r->pl, o->index);
    return luaL_error(L, "send to %s failed: %s", o->uri,
                      sea_producer_errmsg(p)[0] ? sea_producer_errmsg(p) : sea_strerror(rc));
  }
  return 0;
}

/* out:stats(): the pipeline's counters as --stats reports them, and each input's lag. */
static int out_stats(lua_State *L) {
  run_t *r = active_run;
  if (r == NULL || r->pl == NULL)
    return luaL_error(L, "out:stats() after the run ended");
  sea_pipeline_stats_t st;
  memset(&st, 0, sizeof st);
  sea_pipeline_stats(r->pl, &st);
  struct {
    const char *name;
    uint64_t v;
  } f[] = {{"messages_in", st.processed},
           {"messages_out", st.sent},
           {"bytes_in", st.bytes_in},
           {"bytes_out", st.bytes_out},
           {"confirmed", st.receipted},
           {"inflight", st.sent > st.receipted ? st.sent - st.receipted : 0},
           {"skipped", st.skipped},
           {"commits", st.commits},
           {"late", st.late}};
  lua_createtable(L, 0, 10);
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushnumber(L, (lua_Number)f[i].v);
    lua_setfield(L, -2, f[i].name);
  }
  lua_newtable(L); /* lag: {input, stream, shard, lag, lag_bytes}; an unknown count is nil */
  int n = 0;
  sea_lag_t lag[64];
  for (size_t i = 0; sea_pipeline_input(r->pl, i) != NULL; i++) {
    int k = sea_consumer_lag(sea_pipeline_input(r->pl, i), lag, 64);
    for (int e = 0; e < k && e < 64; e++) {
      lua_createtable(L, 0, 5);
      lua_pushinteger(L, (lua_Integer)i + 1);
      lua_setfield(L, -2, "input");
      lua_pushstring(L, lag[e].stream_key);
      lua_setfield(L, -2, "stream");
      lua_pushnumber(L, (lua_Number)lag[e].shard);
      lua_setfield(L, -2, "shard");
      if (lag[e].lag >= 0) {
        lua_pushnumber(L, (lua_Number)lag[e].lag);
        lua_setfield(L, -2, "lag");
      }
      if (lag[e].lag_bytes >= 0) {
        lua_pushnumber(L, (lua_Number)lag[e].lag_bytes);
        lua_setfield(L, -2, "lag_bytes");
      }
      lua_rawseti(L, -2, ++n);
    }
  }
  lua_setfield(L, -2, "lag");
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Calling Lua, within limits
 * ------------------------------------------------------------------------------------------- */

/* A call that hit a limit has failed for good: the hook raises the limit's error again at every
 * check until the call returns (a processor that catches it with pcall gets it again within 1000
 * instructions), and limited_call reports it whatever the call returned. */
static void count_hook(lua_State *L, lua_Debug *ar) {
  run_t *r = active_run;
  if (r == NULL || !r->in_call)
    return;
  if (r->tripped) {
    r->raised++;
    lua_pushstring(L, r->trip_msg);
    lua_error(L);
  }
  uint64_t limit = 0;
  const char *what = sea_lua_limits_check(&r->lim, &limit);
  if (what == NULL)
    return;
  /* Say where the processor was when it was stopped. */
  lua_getinfo(L, "Sl", ar);
  snprintf(r->trip_msg, sizeof r->trip_msg, "%s:%d: %s limit exceeded (%llu%s per call)",
           ar->short_src, ar->currentline, what, (unsigned long long)limit,
           what[0] == 't' ? " ms" : "");
  r->tripped = true;
  r->raised = 1;
  lua_pushstring(L, r->trip_msg);
  lua_error(L);
}

/* Call the function under nargs arguments with nres results, protected and within limits. On
 * failure the error message is on the stack; returns the pcall status. */
static int limited_call(run_t *r, int nargs, int nres) {
  lua_State *L = r->L;
  sea_lua_limits_arm(&r->lim);
  r->tripped = false;
  r->in_call = true;
  int rc = lua_pcall(L, nargs, nres, 0);
  r->in_call = false;
  if (r->tripped) {
    /* A limit was hit: the call fails with it, even if the processor caught it and went on. */
    bool caught = rc == 0 || r->raised > 1 || lua_tostring(L, -1) == NULL ||
                  strcmp(lua_tostring(L, -1), r->trip_msg) != 0;
    lua_pop(L, rc == 0 ? nres : 1);
    lua_pushfstring(L, "%s%s", r->trip_msg,
                    caught ? " (the processor caught the error and went on: a limit hit fails "
                             "the call all the same)"
                           : "");
    return LUA_ERRRUN;
  }
  if (rc == 0 && r->max_kbytes && (size_t)lua_gc(L, LUA_GCCOUNT, 0) > r->max_kbytes) {
    lua_gc(L, LUA_GCCOLLECT, 0);
    if ((size_t)lua_gc(L, LUA_GCCOUNT, 0) > r->max_kbytes) {
      lua_pop(L, nres);
      lua_pushfstring(L, "%s: memory limit exceeded (%d KiB)", r->script, (int)r->max_kbytes);
      return LUA_ERRMEM;
    }
  }
  if (rc == LUA_ERRMEM) {
    lua_pop(L, 1);
    lua_pushfstring(L, "%s: not enough memory (memory limit reached)", r->script);
  }
  return rc;
}

static const char *error_text(lua_State *L) {
  const char *e = lua_tostring(L, -1);
  return e ? e : "(error object is not a string)";
}

/* A hook (start, tick, stop, input_end) failed: that is fatal whatever the policy. */
static void hook_call(run_t *r, int ref, const char *name, int extra) {
  lua_State *L = r->L;
  if (ref == LUA_NOREF)
    return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
  int n = 1;
  if (extra) {
    lua_pushnumber(L, (lua_Number)sea_now_us());
    n++;
  }
  r->cur_msg = NULL;
  if (limited_call(r, n, 0) != 0) {
    run_error(r, SEA_EINVAL, "%s hook failed: %s", name, error_text(L));
    lua_pop(L, 1);
  } else {
    after_lua_call(r);
  }
}

/* NULL if the table at idx is a list and nothing else, else its first other key, described (a
 * table with other keys, a decoded JSON object that was not encoded again, {a = 1}, would
 * otherwise send nothing without a word). */
static const char *not_list(lua_State *L, int idx) {
  size_t n = sea_lua_rawlen(L, idx), entries = 0;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (++entries > n || lua_type(L, -1) != LUA_TNUMBER) {
      const char *key = lua_type(L, -1) == LUA_TSTRING
                            ? lua_pushfstring(L, "the key '%s'", lua_tostring(L, -1))
                            : lua_pushfstring(L, "a key of type %s", luaL_typename(L, -1));
      lua_remove(L, -2);
      return key;
    }
  }
  return NULL;
}

/* What is wrong with a processor's result (at index idx), or NULL: nil, a string, a message still
 * valid, or a list of strings and such messages. */
static const char *result_complaint(run_t *r, int idx) {
  lua_State *L = r->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TSTRING)
    return NULL;
  if (t == LUA_TUSERDATA) {
    sea_lua_view_t *v = sea_lua_to_view(L, idx);
    if (v == NULL || sea_lua_view_msg(L, v) == NULL)
      return "returned a userdata that is not a message (or a message no longer valid)";
    return NULL;
  }
  if (t != LUA_TTABLE)
    return lua_pushfstring(L, "returned a %s (expected nil, a string, a message or a list of them)",
                           lua_typename(L, t));
  const char *key = not_list(L, idx);
  if (key != NULL)
    return lua_pushfstring(L,
                           "returned a table that is not a list (it has %s): return nil, a "
                           "string, a message or a list of them",
                           key);
  for (size_t i = 1, n = sea_lua_rawlen(L, idx); i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    int et = lua_type(L, -1);
    sea_lua_view_t *v = et == LUA_TUSERDATA ? sea_lua_to_view(L, -1) : NULL;
    lua_pop(L, 1);
    if (et != LUA_TSTRING && (v == NULL || sea_lua_view_msg(L, v) == NULL))
      return lua_pushfstring(L,
                             "returned a list whose item %d is a %s (expected a string or a "
                             "message still valid)",
                             (int)i, lua_typename(L, et));
  }
  return NULL;
}

/* Send what a processor call returned (at index idx of the stack). Returns NULL or a complaint. */
static const char *send_result(run_t *r, int idx) {
  lua_State *L = r->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL)
    return NULL;
  if (t == LUA_TSTRING || t == LUA_TUSERDATA) {
    int rc = send_value(r, &r->out[0], idx, NULL);
    if (rc == SEA_EINVAL && t == LUA_TUSERDATA)
      return result_complaint(r, idx);
    return rc != 0 ? sea_strerror(rc) : NULL;
  }
  if (t != LUA_TTABLE)
    return result_complaint(r, idx);
  if (not_list(L, idx) != NULL)
    return result_complaint(r, idx);
  for (size_t i = 1, n = sea_lua_rawlen(L, idx); i <= n; i++) {
    lua_rawgeti(L, idx, (int)i);
    int et = lua_type(L, -1);
    int rc = et == LUA_TSTRING || et == LUA_TUSERDATA
                 ? send_value(r, &r->out[0], lua_gettop(L), NULL)
                 : SEA_EINVAL;
    lua_pop(L, 1);
    if (rc == SEA_EINVAL && et != LUA_TSTRING)
      return result_complaint(r, idx); /* names the item */
    if (rc != 0)
      return sea_strerror(rc);
  }
  return NULL;
}

static const char *where_fn(run_t *r, int ref);

#ifdef SEA_LUAJIT
/* check(result): the driver's look at a result other than a string or the call's own message, so
 * that a wrong one fails its own message (raises the complaint, as the processor's error). */
static int driver_check(lua_State *L) {
  run_t *r = active_run;
  const char *bad = r ? result_complaint(r, 1) : NULL;
  if (bad == NULL)
    return 0;
  lua_pushfstring(L, "%s %s", where_fn(r, r->fn_ref), bad);
  return lua_error(L);
}
#endif

#ifndef SEA_LUAJIT
/* Lua 5.4: the loop over the batch is C, one lua_call per message inside one protected call
 * (lua_pcall's setup per message was the larger cost), each message with a view of its own that
 * expires when its call returns (run_epoch moves on). Results go out as each call returns, so an
 * out:send needs no flush. A failure leaves drive.at at the failing call, or drive.failed_at at a
 * result that is wrong or refused (the loop then ends). */
static int c_loop(lua_State *L) {
  run_t *r = active_run;
  int base = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
  luaL_getmetatable(L, SEA_LUA_VIEW_MT);
  for (size_t i = 1; i <= r->call_count; i++) {
    const sea_message_t *m = &r->call_msgs[i - 1];
    r->drive.at = i;
    r->cur_msg = m;
    lua_pushvalue(L, base + 1);
    sea_lua_view_t *v = sea_lua_push_view_mt(L, m, &run_epoch, base + 3);
    lua_pushvalue(L, base + 2);
    lua_call(L, 2, 1);
    const char *bad = NULL;
    if (lua_touserdata(L, -1) == v) { /* its own message, as it came */
      int rc = send_message(r, &r->out[0], m, NULL);
      bad = rc != 0 ? sea_strerror(rc) : NULL;
    } else if (!lua_isnil(L, -1)) {
      bad = send_result(r, lua_gettop(L));
    }
    run_epoch++; /* the call's view expires */
    if (bad != NULL) {
      r->drive.failed_at = i;
      snprintf(r->drive.failure, sizeof r->drive.failure, "%s %s", where_fn(r, r->fn_ref), bad);
      break;
    }
    lua_settop(L, base + 3);
    if (r->stop_requested)
      break;
  }
  lua_settop(L, base);
  return 0;
}
#endif

#ifdef SEA_LUAJIT
/* LuaJIT: the driver hands the processor FFI structs {message pointer, gen, i} instead of
 * userdata. LuaJIT compiles making them and reading their fields, and when a view does not
 * escape the call (the processor reads fields, or returns it: the driver stores true) it does not
 * even allocate it. They expire as userdata views do: valid while gen is the current run's and i
 * the current call. Whatever else takes a message (out:send, a list returned, the module's
 * functions) gets the userdata view of the same message (tomsg, through mat below), which keeps
 * msg:copy(), msg.headers and msg:totable() in one place. Made once per Lua state (a ctype's
 * metatable cannot change): registry[jit_lib_key] = {make = function(fn, results, state, check,
 * send, stop) -> driver, out}; the converter for sea_lua_to_view goes to
 * registry[sea_lua_jview_key]. */
static const char jit_lib_key = 0;
static const char jit_src[] =
    "local mat, O, SZ = ...\n"
    "local ffi = require 'ffi'\n"
    "local type, tostring, tonumber, error = type, tostring, tonumber, error\n"
    "local cast, fstring, istype = ffi.cast, ffi.string, ffi.istype\n"
    "pcall(ffi.cdef, 'typedef struct seastreamer_jview { const char *m; double gen; "
    "int32_t i; } seastreamer_jview;')\n"
    "local VT = ffi.typeof('seastreamer_jview')\n"
    "local u64p, i64p = ffi.typeof('const uint64_t *'), ffi.typeof('const int64_t *')\n"
    "local szp, cpp = ffi.typeof('const size_t *'), ffi.typeof('const char *const *')\n"
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
    "local fields = {\n"
    "  payload = function(m) return fstring(cast(cpp, m + O.pdata)[0], "
    "tonumber(cast(szp, m + O.plen)[0])) end,\n"
    "  size = function(m) return tonumber(cast(szp, m + O.plen)[0]) end,\n"
    "  key = function(m) local k = cast(cpp, m + O.key)[0]\n"
    "    if k == nil then return nil end\n"
    "    return fstring(k, tonumber(cast(szp, m + O.keylen)[0])) end,\n"
    "  stream_key = function(m) local k = cast(cpp, m + O.skey)[0]\n"
    "    if k == nil then return '' end\n"
    "    return fstring(k) end,\n"
    "  shard = function(m) return tonumber(cast(u64p, m + O.shard)[0]) end,\n"
    "  seq = function(m) return cast(u64p, m + O.seq)[0] end,\n"
    "  timestamp = function(m) return tonumber(cast(i64p, m + O.ts)[0]) end,\n"
    "  headers = function(m, v) return tomsg(v).headers end,\n"
    "}\n"
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
    "local function make(fn, send, stop, results, state, check)\n"
    "  local out = { stop = stop }\n"
    "  function out.send(self, name, p, key) return send(self, name, convert(p), key) end\n"
    "  return function(n, gen, base)\n"
    "    ctx.gen, ctx.state = gen, state\n"
    "    local msgs = cast('const char *', base)\n"
    "    for i = 1, n do\n"
    "      state[1] = i\n"
    "      local v = VT(msgs + (i - 1) * SZ, gen, i)\n"
    "      local r = fn(v, out)\n"
    "      if r == v then r = true\n"
    "      elseif r ~= nil and type(r) ~= 'string' then\n"
    "        if type(r) == 'table' then\n"
    "          for k = 1, #r do r[k] = convert(r[k]) end\n"
    "        else r = convert(r) end\n"
    "        check(r)\n"
    "      end\n"
    "      results[i] = r\n"
    "      if state[2] then return end\n"
    "    end\n"
    "  end, out\n"
    "end\n"
    "local function makebatch(fn, send, stop)\n"
    "  local out = { stop = stop }\n"
    "  function out.send(self, name, p, key) return send(self, name, convert(p), key) end\n"
    "  return function(n, gen, base)\n"
    "    ctx.gen = gen\n"
    "    local msgs = cast('const char *', base)\n"
    "    local b = {}\n"
    "    for i = 1, n do b[i] = VT(msgs + (i - 1) * SZ, gen, -i) end\n"
    "    local res = fn(b, out)\n"
    "    if istype(VT, res) then return convert(res) end\n"
    "    if type(res) ~= 'table' then return res end\n"
    "    local idx\n"
    "    for k = 1, #res do\n"
    "      local x = res[k]\n"
    "      if istype(VT, x) and x.gen == gen and x.i < 0 then\n"
    "        idx = idx or {}\n"
    "        idx[k] = -x.i\n"
    "      end\n"
    "    end\n"
    "    return res, idx\n"
    "  end, out\n"
    "end\n"
    "return { make = make, makebatch = makebatch, convert = convert }\n";

/* mat(i): the userdata view of message i of the driver's current run, valid during call i; or,
 * i < 0, of message -i of the current batch call, valid during the call (0, or no such message:
 * an expired view). */
static int jit_mat(lua_State *L) {
  run_t *r = active_run;
  lua_Integer i = luaL_checkinteger(L, 1);
  size_t k = (size_t)(i < 0 ? -i : i);
  if (r == NULL || r->call_msgs == NULL || k < 1 || k > r->call_count) {
    sea_lua_push_view(L, NULL, NULL);
    return 1;
  }
  sea_lua_view_t *v = sea_lua_push_view(L, &r->call_msgs[k - 1], &run_epoch);
  if (i > 0) {
    v->pos = i;
    v->pos_ref = r->state_ref;
  }
  return 1;
}

/* Send what the LuaJIT batch wrapper returned: res at index res, and at idx nil or {[k] = n}:
 * item k of res is message n of the call. Returns NULL or a complaint. */
static const char *send_jbatch(run_t *r, int res, int idx) {
  lua_State *L = r->L;
  if (lua_isnil(L, idx))
    return send_result(r, res);
  if (not_list(L, res) != NULL)
    return result_complaint(r, res);
  for (size_t k = 1, n = sea_lua_rawlen(L, res); k <= n; k++) {
    lua_rawgeti(L, idx, (int)k);
    lua_Integer m = lua_tointeger(L, -1);
    lua_pop(L, 1);
    int rc;
    if (m >= 1 && (size_t)m <= r->call_count) {
      rc = send_message(r, &r->out[0], &r->call_msgs[m - 1], NULL);
    } else {
      lua_rawgeti(L, res, (int)k);
      int et = lua_type(L, -1);
      rc = et == LUA_TSTRING || et == LUA_TUSERDATA || et == 10 /* cdata */
               ? send_value(r, &r->out[0], lua_gettop(L), NULL)
               : SEA_EINVAL;
      lua_pop(L, 1);
      if (rc == SEA_EINVAL && et != LUA_TSTRING)
        return result_complaint(r, res); /* names the item */
    }
    if (rc != 0)
      return sea_strerror(rc);
  }
  return NULL;
}

static void jit_lib(lua_State *L);
static int out_stop(lua_State *L);

/* A reference to the LuaJIT wrapper made by the library's function maker (make: the per-message
 * driver; makebatch: the batch processor's) around the function at fn_ref. The wrapper hands the
 * processor an out object of its own (its upvalue), whose send takes FFI views. */
static int jit_wrap(run_t *r, const char *maker, int fn_ref) {
  lua_State *L = r->L;
  jit_lib(L);
  lua_getfield(L, -1, maker);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  lua_pushcfunction(L, out_send);
  lua_pushcfunction(L, out_stop);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->results_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
  lua_pushcfunction(L, driver_check);
  lua_call(L, 6, 2);
  lua_pushcfunction(L, out_stats);
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
  lua_call(L, 3, 1);
  lua_pushlightuserdata(L, (void *)&sea_lua_jview_key);
  lua_getfield(L, -2, "convert");
  lua_rawset(L, LUA_REGISTRYINDEX);
  lua_pushlightuserdata(L, (void *)&jit_lib_key);
  lua_pushvalue(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}
#endif

/* Where the processor function is defined, for messages about what it returned. */
static const char *where_fn(run_t *r, int ref) {
  lua_State *L = r->L;
  lua_Debug ar;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getinfo(L, ">S", &ar);
  return lua_pushfstring(L, "%s:%d: processor", ar.short_src, ar.linedefined);
}

/* A failure at message `index` of the batch (handled alone: what the processor handed before it
 * in the same call is done). Returns what the pipeline's processor returns: the messages before
 * it as handled, or, if it is the first one, its rejection (alone: the rest come again). */
static int fail_at(run_t *r, const sea_batch_t *batch, size_t first, size_t index,
                   const char *why) {
  if (index > first) {
    r->pending.batch = batch;
    r->pending.index = index;
    r->pending.seq = batch->msgs[index].meta.seq;
    snprintf(r->pending.why, sizeof r->pending.why, "%s", why);
    return (int)(index - first);
  }
  return sea_pipeline_reject_first(r->pl, 1, "%s", why);
}

/* Send the results of driver calls flushed+1 .. upto, in order. On a refusal, false, with
 * drive.failed_at and drive.failure set (the results after it are not sent). */
static bool drive_flush(run_t *r, size_t upto) {
  lua_State *L = r->L;
  if (r->drive.flushed >= upto)
    return true;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->results_ref);
  int t = lua_gettop(L);
  bool ok = true;
  r->flushing = true;
  /* results[i] was set by call i of this run of the driver (nil included): nothing to clear. */
  for (size_t i = r->drive.flushed + 1; i <= upto; i++) {
    lua_rawgeti(L, t, (int)i);
    const sea_message_t *m = &r->call_msgs[i - 1];
    const char *bad = NULL;
    r->cur_msg = m;
    if (lua_type(L, -1) == LUA_TBOOLEAN) { /* the call's own message, as it came */
      int rc = send_message(r, &r->out[0], m, NULL);
      bad = rc != 0 ? sea_strerror(rc) : NULL;
    } else if (!lua_isnil(L, -1)) {
      bad = send_result(r, lua_gettop(L));
    }
    lua_settop(L, t);
    if (bad != NULL) { /* that message fails; those after it are handed again */
      r->drive.failed_at = i;
      snprintf(r->drive.failure, sizeof r->drive.failure, "%s %s", where_fn(r, r->fn_ref), bad);
      ok = false;
      break;
    }
  }
  r->drive.flushed = upto;
  r->flushing = false;
  lua_pop(L, 1);
  return ok;
}

/* The per-message processor, driven over count messages from first by the Lua loop. */
static int drive(run_t *r, const sea_batch_t *batch, size_t first, size_t count) {
  lua_State *L = r->L;
  r->call_msgs = &batch->msgs[first];
  r->call_count = count;
  r->drive.flushed = 0;
  r->drive.failed_at = 0;
  r->drive.at = 0;
  size_t at;
  int rc;
#ifdef SEA_LUAJIT
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
  lua_pushinteger(L, 0);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->driver_ref);
  lua_pushinteger(L, (lua_Integer)count);
  lua_pushnumber(L, (lua_Number)run_epoch);
  lua_pushlightuserdata(L, (void *)&batch->msgs[first]);
  rc = limited_call(r, 3, 0);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
  lua_rawgeti(L, -1, 1);
  at = (size_t)lua_tointeger(L, -1); /* the last call made (1-based) */
  lua_pushnil(L);
  lua_rawseti(L, -3, 2);
  lua_pop(L, 2);
#else
  lua_pushcfunction(L, c_loop);
  rc = limited_call(r, 0, 0);
  at = r->drive.at;
  r->drive.flushed = rc == 0 ? at : at - (at > 0); /* the loop sent every result at once */
#endif
  if (at == 0)
    at = 1; /* the loop failed before its first call (out of memory): blame the first */
  /* Calls 1..done finished: their results go out now. */
  size_t done = rc == 0 ? at : at - 1;
  int ret = 0;
  if (r->drive.failed_at == 0 && !drive_flush(r, done))
    done = r->drive.failed_at - 1;
  if (r->drive.failed_at) { /* a result was refused: that message fails, the rest come again */
    ret = fail_at(r, batch, first, first + r->drive.failed_at - 1, r->drive.failure);
  } else if (rc != 0) {
    ret = fail_at(r, batch, first, first + at - 1, error_text(L));
  } else if (done < count) {
    ret = (int)done; /* out:stop(): the rest stay unprocessed */
  }
  if (rc != 0)
    lua_pop(L, 1);
  r->call_msgs = NULL;
  return ret;
}

/* The pipeline's processor: count messages from first (one, unless the script has a batch
 * function or runs driven). Errors become the pipeline's rejections, and its error policy
 * applies. */
static int lua_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *batch, size_t first,
                       size_t count, void *data) {
  run_t *r = data;
  lua_State *L = r->L;
  int base = lua_gettop(L);
  int rc, ret = 0;
  const char *bad = NULL;
  /* A message that failed after others of its call were handled: rejected when handed again
   * (a join may hand other inputs' messages first). */
  if (r->pending.batch == batch && r->pending.index == first &&
      r->pending.seq == batch->msgs[first].meta.seq) {
    r->pending.batch = NULL;
    return sea_pipeline_reject_first(pl, 1, "%s", r->pending.why);
  }
  r->cur_msg = &batch->msgs[first];
  if (r->driven) {
    ret = drive(r, batch, first, count);
#ifdef SEA_LUAJIT
  } else if (r->batch_ref != LUA_NOREF && r->jbatch_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->jbatch_ref);
    lua_pushinteger(L, (lua_Integer)count);
    lua_pushnumber(L, (lua_Number)run_epoch);
    lua_pushlightuserdata(L, (void *)&batch->msgs[first]);
    r->call_msgs = &batch->msgs[first];
    r->call_count = count;
    rc = limited_call(r, 3, 2);
    if (rc != 0)
      bad = error_text(L);
    else if ((bad = send_jbatch(r, lua_gettop(L) - 1, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", where_fn(r, r->batch_ref), bad);
    r->call_msgs = NULL;
#endif
  } else if (r->batch_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->batch_ref);
    lua_createtable(L, (int)count, 0); /* a new table and new views for each call */
    sea_lua_fill_views(L, -1, &batch->msgs[first], count, &run_epoch);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
    rc = limited_call(r, 2, 1);
    if (rc != 0)
      bad = error_text(L);
    else if ((bad = send_result(r, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", where_fn(r, r->batch_ref), bad);
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
    sea_lua_push_view(L, r->cur_msg, &run_epoch);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
    rc = limited_call(r, 2, 1);
    if (rc != 0)
      bad = error_text(L);
    else if ((bad = send_result(r, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", where_fn(r, r->fn_ref), bad);
  }
  run_epoch++; /* every view of the call expires */
  r->cur_msg = NULL;
  if (bad)
    ret = sea_pipeline_reject(pl, "%s", bad);
  lua_settop(L, base);
  after_lua_call(r);
  return ret;
}

static void on_skipped(sea_pipeline_t *pl, size_t input, const sea_message_t *m, const char *why,
                       void *data) {
  run_t *r = data;
  fprintf(stderr, "seastreamer run: %s message %s | %llu of %s: %s\n",
          r->policy == SEA_ON_ERROR_SKIP ? "skipped" : "dead-lettered", m->meta.stream_key,
          (unsigned long long)m->meta.seq, r->in[input].uri, why);
}

static void on_stopping(sea_pipeline_t *pl, void *data) {
  run_t *r = data;
  if (r->tick_timer_on)
    uv_timer_stop(&r->tick_timer);
  for (int i = 0; i < r->nsigs; i++)
    uv_signal_stop(&r->sigs[i]);
  hook_call(r, r->stop_ref, "stop", 0);
}

static void on_inputs_ended(sea_pipeline_t *pl, void *data) {
  run_t *r = data;
  hook_call(r, r->input_end_ref, "input_end", 0);
}

static void on_done(sea_pipeline_t *pl, int status) {
  run_t *r = sea_pipeline_get_data(pl);
  r->finished = true;
  if (r->tick_timer_on)
    uv_timer_stop(&r->tick_timer);
  sea_runtime_stop(r->rt);
}

static void on_tick(uv_timer_t *t) {
  run_t *r = t->data;
  if (!r->finished)
    hook_call(r, r->tick_ref, "tick", 1);
}

static void on_signal(uv_signal_t *h, int signum) {
  run_t *r = h->data;
  sea_pipeline_stop(r->pl);
}

/* out:stop(): end the run as if every input had ended (a source or a script that is done). */
static int out_stop(lua_State *L) {
  run_t *r = active_run;
  if (r == NULL)
    return 0;
  r->stop_requested = true;
  if (r->jit && r->driven && r->call_msgs) { /* the driver ends after this message */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
    lua_pushboolean(L, 1);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 1);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Setup: seastreamer.run{ processor, inputs = {...}, outputs = {URI, name = URI},
 *   on_error = "stop"|"skip"|"dead-letter", dead_letter = URI, input_options = {...},
 *   output_options = {...}, tick_ms, max_instructions, max_ms, max_memory_kb, name, signals,
 *   exactly_once, transactional_id }
 * ------------------------------------------------------------------------------------------- */

static uint64_t opt_u64(lua_State *L, const char *field) {
  lua_getfield(L, 1, field);
  lua_Number n = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  if (n < 0)
    luaL_error(L, "seastreamer.run: %s must not be negative", field);
  return (uint64_t)n;
}

static int fn_field(lua_State *L, int t, const char *name, const char *script) {
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (lua_type(L, -1) != LUA_TFUNCTION)
    luaL_error(L, "%s: the processor's '%s' is a %s, expected a function", script, name,
               luaL_typename(L, -1));
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void cleanup(run_t *r) {
  lua_State *L = r->L;
  sea_metrics_close(r->metrics); /* before the pipeline it reads */
  r->metrics = NULL;
  /* The pipeline closes the producers (canceling what is unconfirmed) and the consumers. */
  sea_pipeline_free(r->pl);
  r->pl = NULL;
  for (size_t i = 0; i < r->nin; i++)
    if (r->in[i].s)
      sea_streamer_close(r->in[i].s);
  for (size_t i = 0; i < r->nout; i++)
    if (r->out[i].s)
      sea_streamer_close(r->out[i].s);
  if (r->tick_timer_on)
    uv_close((uv_handle_t *)&r->tick_timer, NULL);
  for (int i = 0; i < r->nsigs; i++)
    uv_close((uv_handle_t *)&r->sigs[i], NULL);
  sea_runtime_run(r->rt, SEA_RUN_NOWAIT);
  sea_runtime_free(r->rt);
  run_epoch++; /* views kept past the run: expired (their pos_ref is unreferenced below) */
  int refs[] = {r->fn_ref,    r->batch_ref,     r->start_ref,  r->tick_ref,
                r->stop_ref,  r->out_ref,       r->driver_ref, r->results_ref,
                r->state_ref, r->input_end_ref, r->jbatch_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
    luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
  active_run = NULL;
}

static int open_output(run_t *r, output_t *o, const sea_options_t *oo) {
  sea_producer_t *p = NULL;
  int rc = sea_connect(r->rt, o->uri, oo, &o->s);
  if (rc == 0)
    rc = sea_producer_open(o->s, NULL, &p);
  if (rc != 0) {
    run_error(r, rc, "output %s: %s", o->uri, sea_runtime_errmsg(r->rt));
    return rc;
  }
  rc = sea_pipeline_add_output(r->pl, p, &o->index);
  if (rc != 0) {
    sea_producer_close(p);
    run_error(r, rc, "output %s: %s", o->uri, sea_strerror(rc));
  }
  return rc;
}

int sea_lua_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_getmetatable(L, SEA_LUA_VIEW_MT);
  if (lua_isnil(L, -1)) { /* the runner embeds the module without requiring it */
    lua_pushcfunction(L, luaopen_seastreamer);
    lua_call(L, 0, 0);
  }
  lua_pop(L, 1);
  if (active_run)
    return luaL_error(L, "seastreamer.run: a run is already active in this process");
  run_t *r = lua_newuserdata(L, sizeof *r); /* freed with the Lua stack: nothing to leak on error */
  memset(r, 0, sizeof *r);
  int ud = lua_gettop(L);
  r->L = L;
  r->fn_ref = r->batch_ref = r->start_ref = r->tick_ref = r->stop_ref = LUA_NOREF;
  r->out_ref = r->input_end_ref = LUA_NOREF;
  r->driver_ref = r->results_ref = r->state_ref = r->jbatch_ref = LUA_NOREF;
  lua_getfield(L, 1, "name");
  r->script = lua_isnil(L, -1) ? "processor" : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the config table */

  /* The processor: a function, or a table with process or batch and optional hooks. */
  lua_getfield(L, 1, "processor");
  int pt = lua_type(L, -1);
  if (pt == LUA_TFUNCTION) {
    r->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (pt == LUA_TTABLE) {
    int t = lua_gettop(L);
    r->fn_ref = fn_field(L, t, "process", r->script);
    r->batch_ref = fn_field(L, t, "batch", r->script);
    r->start_ref = fn_field(L, t, "start", r->script);
    r->tick_ref = fn_field(L, t, "tick", r->script);
    r->stop_ref = fn_field(L, t, "stop", r->script);
    r->input_end_ref = fn_field(L, t, "input_end", r->script);
    lua_getfield(L, t, "linger");
    r->linger = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "tick_ms");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) <= 0)
        return luaL_error(L, "%s: tick_ms must be a positive number of milliseconds", r->script);
      r->tick_ms = (uint64_t)lua_tonumber(L, -1);
    }
    lua_pop(L, 2);
    if (r->fn_ref == LUA_NOREF && r->batch_ref == LUA_NOREF && r->tick_ref == LUA_NOREF)
      return luaL_error(L,
                        "%s: the processor table has neither 'process' nor 'batch' (a function "
                        "of a message or of a batch) nor 'tick' (a source)",
                        r->script);
    if (r->fn_ref != LUA_NOREF && r->batch_ref != LUA_NOREF)
      return luaL_error(L, "%s: the processor table has both 'process' and 'batch'; keep one",
                        r->script);
  } else {
    return luaL_error(L,
                      "%s: returned %s, expected a processor (a function, or a table with "
                      "'process' or 'batch')",
                      r->script,
                      pt == LUA_TNIL ? "nothing" : lua_pushfstring(L, "a %s", lua_typename(L, pt)));
  }
  uint64_t tick_opt = opt_u64(L, "tick_ms"); /* the caller's (--tick-ms) wins over the script's */
  if (tick_opt)
    r->tick_ms = tick_opt;
  if (r->tick_ref != LUA_NOREF && r->tick_ms == 0)
    r->tick_ms = 1000;
  r->lim.max_instructions = opt_u64(L, "max_instructions");
  r->lim.max_ms = opt_u64(L, "max_ms");
  r->max_kbytes = (size_t)opt_u64(L, "max_memory_kb");
  uint64_t max_count = opt_u64(L, "max_count");
  uint64_t commit_ms = opt_u64(L, "commit_interval_ms");
  lua_getfield(L, 1, "exactly_once");
  int exactly_once = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "transactional_id");
  const char *txn_id = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the config table */
  if (txn_id && !exactly_once)
    return luaL_error(L, "seastreamer.run: transactional_id is for exactly_once = true");
  lua_getfield(L, 1, "join");
  int join = lua_toboolean(L, -1);
  lua_pop(L, 1);
  uint64_t join_wait_ms = opt_u64(L, "join_wait_ms"), join_max = opt_u64(L, "join_max");
  uint64_t stats_ms = opt_u64(L, "stats_interval_ms"); /* --stats: lines on stderr */
  lua_getfield(L, 1, "stats_json");
  int stats_json = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (stats_json && stats_ms == 0)
    stats_ms = 5000;
  lua_getfield(L, 1, "metrics"); /* --metrics: an HTTP endpoint for Prometheus */
  const char *metrics_addr = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the config table */
  if (join && exactly_once)
    return luaL_error(L, "seastreamer.run: join with exactly_once is not supported");

  lua_getfield(L, 1, "on_error");
  const char *pol = lua_isnil(L, -1) ? "stop" : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  if (strcmp(pol, "stop") == 0)
    r->policy = SEA_ON_ERROR_STOP;
  else if (strcmp(pol, "skip") == 0)
    r->policy = SEA_ON_ERROR_SKIP;
  else if (strcmp(pol, "dead-letter") == 0)
    r->policy = SEA_ON_ERROR_DEAD_LETTER;
  else
    return luaL_error(L, "seastreamer.run: on_error '%s' is not stop, skip or dead-letter", pol);

  /* Check both option tables now (a bad one raises); they are built once nothing else can. */
  lua_getfield(L, 1, "input_options");
  sea_options_free(sea_lua_options(L, lua_gettop(L)));
  lua_getfield(L, 1, "output_options");
  sea_options_free(sea_lua_options(L, lua_gettop(L)));
  lua_pop(L, 2);

  /* Inputs and outputs, all validated before anything connects. */
  lua_getfield(L, 1, "inputs");
  int it = lua_gettop(L);
  if (lua_type(L, it) != LUA_TTABLE)
    return luaL_error(L, "seastreamer.run: inputs must be a list of URIs");
  if (r->linger && r->tick_ref == LUA_NOREF)
    return luaL_error(L, "%s: a lingering processor needs a tick hook (to call out:stop())",
                      r->script);
  if (sea_lua_rawlen(L, it) == 0 && r->tick_ref == LUA_NOREF)
    return luaL_error(L, "seastreamer.run: no inputs: only a processor with a tick hook (a source) "
                         "runs without one");
  r->nin = sea_lua_rawlen(L, it);
  if (r->nin > 0 && r->fn_ref == LUA_NOREF && r->batch_ref == LUA_NOREF)
    return luaL_error(L,
                      "%s: the processor table has neither 'process' nor 'batch' (a function of "
                      "a message or of a batch), so it cannot take inputs; a source with only "
                      "'tick' runs without --input",
                      r->script);
  if (r->nin > MAX_INPUTS)
    return luaL_error(L, "seastreamer.run: at most %d inputs", MAX_INPUTS);
  for (size_t i = 0; i < r->nin; i++) {
    lua_rawgeti(L, it, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "seastreamer.run: input %d is not a URI string", (int)i + 1);
    r->in[i].uri = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "outputs");
  int ot = lua_gettop(L);
  if (lua_type(L, ot) != LUA_TTABLE)
    return luaL_error(L, "seastreamer.run: outputs must be a table {URI, name = URI, ...}");
  lua_rawgeti(L, ot, 1);
  if (lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "seastreamer.run: outputs[1], the default output, must be a URI string");
  r->out[0].uri = lua_tostring(L, -1);
  r->nout = 1;
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, ot) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (r->nout == MAX_OUTPUTS - 1)
        return luaL_error(L, "seastreamer.run: at most %d outputs", MAX_OUTPUTS - 1);
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "seastreamer.run: output '%s' is not a URI string",
                          lua_tostring(L, -2));
      r->out[r->nout].name = lua_tostring(L, -2);
      r->out[r->nout].uri = lua_tostring(L, -1);
      r->nout++;
    } else if (!(lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) == 1)) {
      return luaL_error(L, "seastreamer.run: outputs takes one default URI and name = URI pairs");
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "dead_letter");
  if (!lua_isnil(L, -1)) {
    r->out[r->nout].name = "dead-letter";
    r->out[r->nout].uri = luaL_checkstring(L, -1);
    r->dead = &r->out[r->nout++];
  }
  lua_pop(L, 1);
  if (r->policy == SEA_ON_ERROR_DEAD_LETTER && r->dead == NULL)
    return luaL_error(L, "seastreamer.run: on_error = 'dead-letter' needs dead_letter = URI");
  lua_getfield(L, 1, "signals");
  bool signals = lua_toboolean(L, -1);
  lua_pop(L, 1);

  /* The out object and, for a per-message processor without limits, the driver. */
  lua_newtable(L);
  lua_pushcfunction(L, out_send);
  lua_setfield(L, -2, "send");
  lua_pushcfunction(L, out_stop);
  lua_setfield(L, -2, "stop");
  lua_pushcfunction(L, out_stats);
  lua_setfield(L, -2, "stats");
  r->out_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Limits are per call: with one, every message gets a call of its own. (The runner's
   * --max-memory is its allocator's, which fails the allocation in whatever call makes it.) */
  r->driven = r->fn_ref != LUA_NOREF && r->lim.max_instructions == 0 && r->lim.max_ms == 0 &&
              r->max_kbytes == 0;
#ifdef SEA_LUAJIT
  if (r->driven) { /* the driver loop in Lua (jit_src); Lua 5.4 loops in C (c_loop) */
    lua_newtable(L);
    r->results_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    r->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r->jit = true;
    r->driver_ref = jit_wrap(r, "make", r->fn_ref);
  }
  if (r->batch_ref != LUA_NOREF) /* the batch processor, through its wrapper */
    r->jbatch_ref = jit_wrap(r, "makebatch", r->batch_ref);
#endif

#ifdef SEA_LUAJIT
  /* Compiled code never calls hooks: a limit needs the interpreter. */
  if (r->lim.max_instructions || r->lim.max_ms)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#endif
  if (r->lim.max_instructions || r->lim.max_ms)
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);

  lua_getfield(L, 1, "input_options");
  sea_options_t *io = sea_lua_options(L, lua_gettop(L));
  lua_getfield(L, 1, "output_options");
  sea_options_t *oo = sea_lua_options(L, lua_gettop(L));
  lua_pop(L, 2);
  active_run = r;
  int rc = sea_runtime_new(&r->rt);
  if (rc != 0) {
    sea_options_free(io);
    sea_options_free(oo);
    active_run = NULL;
    return sea_lua_fail(L, rc, "cannot create the runtime");
  }
  sea_pipeline_config_t pc = {
      .struct_size = sizeof pc,
      .on_error = r->policy,
      .dead_letter = r->dead ? (size_t)(r->dead - r->out) : 0,
      .per_batch = r->batch_ref != LUA_NOREF || r->driven,
      .max_count = max_count,
      .commit_interval_ms = commit_ms,
      .linger = r->linger,
      .end_outputs = 1,
      .process = lua_process,
      .data = r,
      .on_stopping = on_stopping,
      .on_inputs_ended = on_inputs_ended,
      .on_skipped = on_skipped,
      .on_done = on_done,
      .exactly_once = exactly_once,
      .transactional_id = txn_id,
      .join = join,
      .join_wait_ms = join_wait_ms,
      .join_max_buffered = (size_t)join_max,
  };
  /* The endpoint listens before anything connects: a bad address or a port in use fails the run
   * before anything is consumed. */
  if (metrics_addr && (rc = sea_metrics_serve(r->rt, metrics_addr, &r->metrics)) != 0)
    run_error(r, rc, "--metrics %s: %s", metrics_addr, sea_runtime_errmsg(r->rt));
  else if ((rc = sea_pipeline_new(r->rt, &pc, &r->pl)) != 0)
    run_error(r, rc, "cannot create the pipeline: %s", sea_runtime_errmsg(r->rt));
  else if (stats_ms)
    sea_pipeline_report_stats(r->pl, stats_ms, stats_json ? SEA_STATS_JSON : 0);
  sea_metrics_set_pipeline(r->metrics, r->pl);
  for (size_t i = 0; i < r->nout && rc == 0; i++)
    rc = open_output(r, &r->out[i], oo);
  for (size_t i = 0; i < r->nin && rc == 0; i++) {
    input_t *in = &r->in[i];
    sea_consumer_t *c = NULL;
    rc = sea_connect(r->rt, in->uri, io, &in->s);
    if (rc == 0)
      rc = sea_consumer_open(in->s, NULL, &c);
    if (rc == 0 && (rc = sea_pipeline_add_input(r->pl, c, NULL)) != 0)
      sea_consumer_close(c);
    if (rc != 0) {
      run_error(r, rc, "input %s: %s", in->uri, sea_runtime_errmsg(r->rt));
      break;
    }
  }
  sea_options_free(io);
  sea_options_free(oo);
  uv_loop_t *loop = sea_runtime_uv_loop(r->rt);
  if (rc == 0) {
    if (signals) {
      int nums[2] = {SIGINT, SIGTERM};
      for (int i = 0; i < 2; i++) {
        uv_signal_init(loop, &r->sigs[i]);
        r->sigs[i].data = r;
        uv_signal_start_oneshot(&r->sigs[i], on_signal, nums[i]);
        uv_unref((uv_handle_t *)&r->sigs[i]);
        r->nsigs++;
      }
    }
    hook_call(r, r->start_ref, "start", 0);
  }
  bool going = rc == 0 && sea_pipeline_status(r->pl) == 0 && !r->stop_requested;
  if (going && r->tick_ms) {
    uv_timer_init(loop, &r->tick_timer);
    r->tick_timer.data = r;
    r->tick_timer_on = true;
    uv_timer_start(&r->tick_timer, on_tick, r->tick_ms, r->tick_ms);
  }
  if (going)
    sea_pipeline_start(r->pl); /* a failure stops the pipeline, which says why */
  if (r->pl && !r->finished)
    sea_runtime_run(r->rt, SEA_RUN_DEFAULT);
  sea_pipeline_stats_t st = {0};
  if (r->pl) {
    sea_pipeline_stats(r->pl, &st);
    if (r->status == 0 && sea_pipeline_status(r->pl) != 0) {
      r->status = sea_pipeline_status(r->pl);
      snprintf(r->errmsg, sizeof r->errmsg, "%s", sea_pipeline_errmsg(r->pl));
    }
  }
  int status = r->status;
  lua_pushstring(L, r->errmsg);
  lua_Number processed = (lua_Number)st.processed, produced = (lua_Number)st.sent,
             skipped = (lua_Number)st.skipped, late = (lua_Number)st.late;
  cleanup(r);
  lua_sethook(L, NULL, 0, 0);
#ifdef SEA_LUAJIT
  if (r->lim.max_instructions || r->lim.max_ms)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
#endif
  lua_remove(L, ud);
  if (status != 0)
    return sea_lua_fail(L, status, lua_tostring(L, -1));
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, processed);
  lua_setfield(L, -2, "processed");
  lua_pushnumber(L, produced);
  lua_setfield(L, -2, "produced");
  lua_pushnumber(L, skipped);
  lua_setfield(L, -2, "skipped");
  lua_pushnumber(L, late);
  lua_setfield(L, -2, "late");
  return 1;
}
