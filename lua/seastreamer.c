/* seastreamer.c: the Lua module `require "seastreamer"`: runtime, streamer, producer, consumer and
 * message views over libseastreamer, for Lua 5.4 and LuaJIT from one source. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NOLOAD, RTLD_DEFAULT */
#endif
#include <dlfcn.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seastreamer_lua.h"

#define RT_MT "seastreamer.runtime"
#define STREAMER_MT "seastreamer.streamer"
#define PRODUCER_MT "seastreamer.producer"
#define CONSUMER_MT "seastreamer.consumer"

/* Waiting outside a coroutine runs the loop until done; on luv's loop that could be from inside
 * a luv callback, while uv.run() runs the loop, and libuv's loop must not be run re-entrantly. */
#define LUV_NO_WAIT                                                                                \
  "a runtime on luv's loop does not wait by running the loop (luv may be running it): pass a "     \
  "callback or call from a coroutine"

/* A consumer pauses its backend once this many batches wait to be read from Lua. */
#define CONSUMER_QUEUE_MAX 4

typedef struct lrt lrt_t;
typedef struct lstreamer lstreamer_t;
typedef struct lproducer lproducer_t;
typedef struct lconsumer lconsumer_t;

/* The runtime. Callbacks run on cbL, a thread of its own anchored in the registry, so that they
 * never run on a coroutine that may be suspended or dead. */
struct lrt {
  sea_runtime_t *rt;
  lua_State *cbL;
  int cbL_ref;
  int running; /* inside sea_runtime_run */
  int err_ref; /* the first error raised by a callback, LUA_NOREF if none */
  int luv_ref; /* runtime{luv = true}: the luv module whose loop this runtime runs on */
  lstreamer_t *streamers;
};

struct lstreamer {
  sea_streamer_t *s;
  lrt_t *rt;
  int rt_ref; /* keeps the runtime's userdata alive while this is open */
  lstreamer_t *next;
  lproducer_t *producers;
  lconsumer_t *consumers;
};

struct lproducer {
  sea_producer_t *p;
  lstreamer_t *st;
  int st_ref;
  int in_gc;
  lproducer_t *next;
  int drain_ref; /* function or LUA_NOREF */
};

/* Batches handed to the consumer and not yet read by Lua. */
typedef struct qbatch {
  const sea_batch_t *batch;
  struct qbatch *next;
} qbatch_t;

struct lconsumer {
  sea_consumer_t *c;
  lstreamer_t *st;
  int st_ref;
  lconsumer_t *next;
  qbatch_t *head, *tail;
  size_t queued;
  size_t pos;     /* next message of head */
  qbatch_t *cur;  /* the batch holding the message last returned (kept until the next call) */
  int view_ref;   /* the view last returned, invalidated on the next call */
  int waiter_ref; /* a coroutine waiting in next() */
  int paused;
  int ended; /* 0, or SEA_EOF or an error */
};

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

static const char *code_name(int err) {
  const char *n = sea_err_name(err);
  return strncmp(n, "SEA_", 4) == 0 ? n + 4 : n;
}

int sea_lua_fail(lua_State *L, int err, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg && msg[0] ? msg : sea_strerror(err));
  lua_pushstring(L, code_name(err));
  return 3;
}

static const char *option_value(lua_State *L, const char *k, const char **bad);

sea_options_t *sea_lua_options(lua_State *L, int i) {
  if (lua_isnoneornil(L, i))
    return NULL;
  luaL_checktype(L, i, LUA_TTABLE);
  sea_options_t *o = sea_options_new();
  if (o == NULL)
    luaL_error(L, "out of memory");
  lua_pushnil(L);
  while (lua_next(L, i) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      sea_options_free(o);
      luaL_argerror(L, i, "option names must be strings");
    }
    const char *k = lua_tostring(L, -2);
    const char *v, *bad = NULL;
    if (lua_type(L, -1) == LUA_TBOOLEAN)
      v = lua_toboolean(L, -1) ? "true" : "false";
    else
      v = option_value(L, k, &bad);
    if (v == NULL) {
      sea_options_free(o);
      luaL_argerror(L, i, bad);
      return NULL;
    }
    if (sea_options_set(o, k, v) != 0) {
      sea_options_free(o);
      luaL_argerror(L, i, lua_pushfstring(L, "bad option name '%s'", k));
    }
    lua_pop(L, 1);
  }
  return o;
}

/* Report an error raised by Lua code run from a loop callback: keep the first, stop the loop. */
static void callback_error(lrt_t *rt, lua_State *L) {
  if (rt->err_ref == LUA_NOREF) {
    lua_pushvalue(L, -1);
    lua_xmove(L, rt->cbL, 1);
    rt->err_ref = luaL_ref(rt->cbL, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
  sea_runtime_stop(rt->rt);
}

/* Call the function under nargs arguments on cbL, protected. */
static void call_cb(lrt_t *rt, int nargs) {
  if (lua_pcall(rt->cbL, nargs, 0, 0) != 0)
    callback_error(rt, rt->cbL);
}

/* Resume the coroutine `ref` (unreferenced here) with the nargs values on top of cbL. */
static void resume_ref(lrt_t *rt, int ref, int nargs) {
  lua_State *L = rt->cbL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_State *co = lua_tothread(L, -1);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  lua_xmove(L, co, nargs);
  int nres = 0;
  int rc = sea_lua_resume(co, L, nargs, &nres);
  if (rc == 0 || rc == LUA_YIELD) {
    lua_pop(co, nres);
    return;
  }
  callback_error(rt, co);
}

/* ---------------------------------------------------------------------------------------------
 * Message views
 * ------------------------------------------------------------------------------------------- */

/* Both view metatables hold this key (a light userdata): one raw lookup tells a view. */
static const char view_tag;
/* The registry's weak-keyed table of msg.headers per view. */
static const char headers_key;

static void *new_udata(lua_State *L, size_t size) {
#if LUA_VERSION_NUM >= 504
  return lua_newuserdatauv(L, size, 0);
#else
  return lua_newuserdata(L, size);
#endif
}

static sea_lua_view_t *push_view_mt(lua_State *L, const sea_message_t *m, const uint64_t *epoch,
                                    const char *mt) {
  luaL_getmetatable(L, mt);
  int at = lua_gettop(L);
  sea_lua_view_t *v = sea_lua_push_view_mt(L, m, epoch, at);
  lua_remove(L, at);
  return v;
}

sea_lua_view_t *sea_lua_push_view_mt(lua_State *L, const sea_message_t *m, const uint64_t *epoch,
                                     int mt) {
  sea_lua_view_t *v = new_udata(L, sizeof *v);
  v->msg = m;
  v->owned = NULL;
  v->epoch = epoch;
  v->gen = epoch ? *epoch : 0;
  v->pos = 0;
  v->pos_ref = LUA_NOREF;
  lua_pushvalue(L, mt);
  lua_setmetatable(L, -2);
  return v;
}

sea_lua_view_t *sea_lua_push_view(lua_State *L, const sea_message_t *m, const uint64_t *epoch) {
  return push_view_mt(L, m, epoch, SEA_LUA_VIEW_MT);
}

void sea_lua_fill_views(lua_State *L, int t, const sea_message_t *msgs, size_t n,
                        const uint64_t *epoch) {
  t = t < 0 ? lua_gettop(L) + t + 1 : t;
  luaL_getmetatable(L, SEA_LUA_VIEW_MT);
  int mt = lua_gettop(L);
  for (size_t k = 0; k < n; k++) {
    sea_lua_push_view_mt(L, &msgs[k], epoch, mt);
    lua_rawseti(L, t, (int)k + 1);
  }
  lua_pop(L, 1);
}

const char sea_lua_jview_key = 0;
#define SEA_LUA_TCDATA 10 /* what LuaJIT's lua_type says for a cdata */

sea_lua_view_t *sea_lua_to_view(lua_State *L, int i) {
#if LUA_VERSION_NUM < 503
  if (lua_type(L, i) == SEA_LUA_TCDATA) {
    i = i < 0 ? lua_gettop(L) + i + 1 : i;
    lua_pushlightuserdata(L, (void *)&sea_lua_jview_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_isfunction(L, -1)) {
      lua_pushvalue(L, i);
      lua_call(L, 1, 1);
      lua_replace(L, i);
    } else {
      lua_pop(L, 1);
    }
  }
#endif
  void *p = lua_touserdata(L, i);
  if (p == NULL || lua_type(L, i) != LUA_TUSERDATA || !lua_getmetatable(L, i))
    return NULL;
  lua_pushlightuserdata(L, (void *)&view_tag);
  lua_rawget(L, -2);
  int is = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return is ? p : NULL;
}

sea_lua_view_t *sea_lua_check_view(lua_State *L, int i) {
  sea_lua_view_t *v = sea_lua_to_view(L, i);
  if (v == NULL)
    luaL_argerror(L, i, lua_pushfstring(L, "expected a message, got %s", luaL_typename(L, i)));
  else if (sea_lua_view_msg(L, v) == NULL)
    luaL_argerror(L, i, "message used after the call that received it returned (keep msg:copy())");
  return v;
}

/* A count, a size or a time: exact as a Lua number (below 2^53) for as long as it matters. */
static void push_u64(lua_State *L, uint64_t x) {
#if LUA_VERSION_NUM >= 503
  lua_pushinteger(L, (lua_Integer)x);
#else
  lua_pushnumber(L, (lua_Number)x);
#endif
}

/* ---------------------------------------------------------------------------------------------
 * Sequence numbers: any u64, exact on every Lua (docs/lua.md). Lua 5.4: an integer, or a decimal
 * string from 2^63 on (a Lua integer is signed). LuaJIT: a uint64_t cdata, always. Taken as an
 * integer, a number that is exact (whole, below 2^53), a uint64_t or non-negative int64_t cdata,
 * or a decimal string; anything else raises an error naming the argument.
 * ------------------------------------------------------------------------------------------- */

#define SEQ_EXACT_LIMIT 9007199254740992.0 /* 2^53: every whole double below it is exact */
#if LUA_VERSION_NUM < 503
#define U64_KEY "seastreamer.u64"
#endif

static void push_decimal(lua_State *L, uint64_t x) {
  char buf[24];
  snprintf(buf, sizeof buf, "%" PRIu64, x);
  lua_pushstring(L, buf);
}

/* Parse a decimal u64 (digits only, no sign or space). 0 if it is not one. */
static int parse_decimal(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0 || len > 20)
    return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned d = (unsigned)(s[i] - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return 0;
    v = v * 10 + d;
  }
  *out = v;
  return 1;
}

#if LUA_VERSION_NUM < 503
/* LuaJIT's ffi, looked up once per state and kept in the registry: {u64 = ctype, i64 = ctype,
 * istype = ffi.istype}. Pushes it and returns 1, or returns 0 (nothing pushed) on a Lua 5.1
 * without ffi, where a sequence number from 2^53 on is a decimal string. */
static int u64_ffi(lua_State *L) {
  static const char helper[] =
      "local ok, ffi = pcall(require, 'ffi')\n"
      "if not ok then return false end\n"
      "return {u64 = ffi.typeof('uint64_t'), i64 = ffi.typeof('int64_t'), istype = ffi.istype}\n";
  lua_getfield(L, LUA_REGISTRYINDEX, U64_KEY);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, helper, sizeof helper - 1, "=seastreamer.u64") != 0)
      lua_error(L);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, U64_KEY);
  }
  if (lua_istable(L, -1))
    return 1;
  lua_pop(L, 1);
  return 0;
}

/* The cdata at i as a 64-bit integer: 1 unsigned (uint64_t), -1 signed (int64_t), 0 neither. */
static int cdata_int64(lua_State *L, int i, uint64_t *out) {
  int kind = 0;
  i = i < 0 ? lua_gettop(L) + i + 1 : i;
  if (!u64_ffi(L))
    return 0;
  static const char *const types[] = {"u64", "i64"};
  for (int k = 0; k < 2 && kind == 0; k++) {
    lua_getfield(L, -1, "istype");
    lua_getfield(L, -2, types[k]);
    lua_pushvalue(L, i);
    lua_call(L, 2, 1);
    if (lua_toboolean(L, -1))
      kind = k == 0 ? 1 : -1;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (kind != 0)
    memcpy(out, lua_topointer(L, i), sizeof *out); /* a boxed integer: its 8 bytes */
  return kind;
}
#endif

/* The option value on top of the stack (not a boolean) as a string, replacing it there; or NULL
 * with *bad saying why. A number converts in place (the key is left alone); a number for `start`
 * is a sequence number (or -N) and must be exact; a 64-bit integer cdata is written in full. */
static const char *option_value(lua_State *L, const char *k, const char **bad) {
  int t = lua_type(L, -1);
  if (t == LUA_TNUMBER && strcmp(k, "start") == 0) {
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, -1))
      return lua_tostring(L, -1);
#endif
    lua_Number n = lua_tonumber(L, -1);
    if (!(n > -SEQ_EXACT_LIMIT && n < SEQ_EXACT_LIMIT) || (lua_Number)(int64_t)n != n) {
      *bad = lua_pushfstring(L,
                             "option 'start': %s is not a whole number below 2^53, where a Lua "
                             "number is exact: give a sequence number as an integer (Lua 5.4), "
                             "a uint64_t (LuaJIT) or a decimal string",
                             lua_tostring(L, -1));
      return NULL;
    }
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRId64, (int64_t)n);
    lua_pushstring(L, buf);
    lua_replace(L, -2);
    return lua_tostring(L, -1);
  }
  if (t == LUA_TSTRING || t == LUA_TNUMBER)
    return lua_tostring(L, -1);
#if LUA_VERSION_NUM < 503
  if (t == SEA_LUA_TCDATA) {
    uint64_t v;
    int kind = cdata_int64(L, -1, &v);
    if (kind != 0) {
      char buf[24];
      if (kind > 0)
        snprintf(buf, sizeof buf, "%" PRIu64, v);
      else
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)v);
      lua_pushstring(L, buf);
      lua_replace(L, -2);
      return lua_tostring(L, -1);
    }
    *bad = lua_pushfstring(L, "option '%s' is a cdata that is not a uint64_t or int64_t", k);
    return NULL;
  }
#endif
  *bad = lua_pushfstring(L, "option '%s' must be a string, number or boolean", k);
  return NULL;
}

/* Push a sequence number (see above). */
static void push_seq(lua_State *L, uint64_t x) {
#if LUA_VERSION_NUM >= 503
  if (x <= (uint64_t)LUA_MAXINTEGER)
    lua_pushinteger(L, (lua_Integer)x);
  else
    push_decimal(L, x);
#else
  if (u64_ffi(L)) {
    lua_getfield(L, -1, "u64");
    lua_remove(L, -2);
    lua_call(L, 0, 1); /* a new uint64_t, 0 */
    memcpy((void *)(uintptr_t)lua_topointer(L, -1), &x, sizeof x);
  } else if ((double)x < SEQ_EXACT_LIMIT) {
    lua_pushnumber(L, (lua_Number)x);
  } else {
    push_decimal(L, x);
  }
#endif
}

/* The u64 at index i (a sequence number, or a shard), taken as push_seq's comment says; `what`
 * names the argument in the error. */
static uint64_t check_seq(lua_State *L, int i, const char *what) {
  uint64_t v = 0;
  int t = lua_type(L, i);
  if (t == LUA_TNUMBER) {
#if LUA_VERSION_NUM >= 503
    if (lua_isinteger(L, i)) {
      lua_Integer n = lua_tointeger(L, i);
      if (n < 0)
        luaL_argerror(L, i,
                      lua_pushfstring(L,
                                      "%s %I is negative (from 2^63 on, give it as a decimal "
                                      "string)",
                                      what, n));
      return (uint64_t)n;
    }
#endif
    lua_Number n = lua_tonumber(L, i);
    const char *why = NULL;
    if (!(n >= 0))
      why = "is not a whole number from 0";
    else if (n >= SEQ_EXACT_LIMIT)
      why = "is 2^53 or more, where a Lua number is not exact: give it as an integer (Lua 5.4), "
            "a uint64_t (LuaJIT) or a decimal string";
    else if ((lua_Number)(uint64_t)n != n)
      why = "is not a whole number";
    if (why)
      luaL_argerror(L, i, lua_pushfstring(L, "%s %s %s", what, lua_tostring(L, i), why));
    return (uint64_t)n;
  }
  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, i, &len);
    if (!parse_decimal(s, len, &v))
      luaL_argerror(L, i,
                    lua_pushfstring(L,
                                    "%s '%s' is not a decimal number from 0 to "
                                    "18446744073709551615 (digits only)",
                                    what, s));
    return v;
  }
#if LUA_VERSION_NUM < 503
  if (t == SEA_LUA_TCDATA) {
    int kind = cdata_int64(L, i, &v);
    if (kind == 0)
      luaL_argerror(L, i,
                    lua_pushfstring(L, "%s is a cdata that is not a uint64_t or int64_t", what));
    if (kind < 0 && (int64_t)v < 0)
      luaL_argerror(L, i, lua_pushfstring(L, "%s is a negative int64_t", what));
    return v;
  }
#endif
  luaL_argerror(L, i,
                lua_pushfstring(L,
                                "%s: expected a sequence number (an integer, a decimal string or "
                                "a uint64_t), got %s",
                                what, luaL_typename(L, i)));
  return 0;
}

static int view_copy(lua_State *L) {
  sea_lua_view_t *v = sea_lua_check_view(L, 1);
  sea_message_t *m = sea_message_dup(v->msg);
  if (m == NULL)
    return luaL_error(L, "out of memory copying a message");
  sea_lua_view_t *c = push_view_mt(L, m, NULL, SEA_LUA_COPY_MT);
  c->owned = m;
  return 1;
}

static int view_totable(lua_State *L);

static void push_headers(lua_State *L, const sea_message_t *m) {
  lua_createtable(L, 0, (int)m->header_count);
  for (size_t i = 0; i < m->header_count; i++) {
    const sea_kv_t *h = &m->headers[i];
    lua_pushlstring(L, h->name, h->name_len);
    if (h->value)
      lua_pushlstring(L, (const char *)h->value, h->value_len);
    else
      lua_pushboolean(L, 0); /* a null value: present, but no bytes */
    lua_rawset(L, -3);
  }
}

/* Fields become Lua values only when read: a processor that looks at the payload alone never
 * pays for the rest. */
static int view_index(lua_State *L) {
  /* Only ever called as the views' own __index (their metatables are hidden by __metatable). */
  sea_lua_view_t *v = lua_touserdata(L, 1);
  if (v == NULL)
    return luaL_argerror(L, 1, "expected a message");
  size_t len;
  const char *k = luaL_checklstring(L, 2, &len);
  if (strcmp(k, "copy") == 0) {
    lua_pushcfunction(L, view_copy);
    return 1;
  }
  if (strcmp(k, "totable") == 0) {
    lua_pushcfunction(L, view_totable);
    return 1;
  }
  const sea_message_t *m = sea_lua_view_msg(L, v);
  if (m == NULL)
    return luaL_error(L,
                      "message used after the call that received it returned (field '%s'; keep "
                      "msg:copy() to use it later)",
                      k);
  switch (k[0]) {
  case 'p':
    if (strcmp(k, "payload") == 0) {
      lua_pushlstring(L, (const char *)m->payload.data, m->payload.len);
      return 1;
    }
    break;
  case 'k':
    if (strcmp(k, "key") == 0) {
      if (m->key)
        lua_pushlstring(L, (const char *)m->key, m->key_len);
      else
        lua_pushnil(L);
      return 1;
    }
    break;
  case 's':
    if (strcmp(k, "stream_key") == 0) {
      lua_pushstring(L, m->meta.stream_key ? m->meta.stream_key : "");
      return 1;
    }
    if (strcmp(k, "shard") == 0) {
      push_u64(L, m->meta.shard_id);
      return 1;
    }
    if (strcmp(k, "seq") == 0) {
      push_seq(L, m->meta.seq);
      return 1;
    }
    if (strcmp(k, "size") == 0) {
      push_u64(L, m->payload.len);
      return 1;
    }
    break;
  case 't':
    if (strcmp(k, "timestamp") == 0) {
      push_u64(L, (uint64_t)m->meta.timestamp_us);
      return 1;
    }
    break;
  case 'h':
    if (strcmp(k, "headers") == 0) { /* one table per message: msg.headers == msg.headers */
      lua_pushlightuserdata(L, (void *)&headers_key);
      lua_rawget(L, LUA_REGISTRYINDEX);
      lua_pushvalue(L, 1);
      lua_rawget(L, -2);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        push_headers(L, m);
        lua_pushvalue(L, 1);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
      }
      return 1;
    }
    break;
  }
  lua_pushnil(L);
  return 1;
}

static int view_totable(lua_State *L) {
  sea_lua_check_view(L, 1);
  static const char *const fields[] = {"payload", "key",       "stream_key", "shard",
                                       "seq",     "timestamp", "headers"};
  lua_createtable(L, 0, 7);
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    lua_pushcfunction(L, view_index);
    lua_pushvalue(L, 1);
    lua_pushstring(L, fields[i]);
    lua_call(L, 2, 1);
    lua_setfield(L, -2, fields[i]);
  }
  return 1;
}

static int view_newindex(lua_State *L) {
  return luaL_error(L, "a message is read-only (field '%s')", luaL_optstring(L, 2, "?"));
}

static int view_tostring(lua_State *L) {
  sea_lua_view_t *v = sea_lua_to_view(L, 1);
  const sea_message_t *m = v ? sea_lua_view_msg(L, v) : NULL;
  if (m == NULL)
    lua_pushstring(L, "seastreamer.message (expired)");
  else {
    char seq[24];
    snprintf(seq, sizeof seq, "%" PRIu64, m->meta.seq);
    lua_pushfstring(L, "seastreamer.message (%s | %s, %d bytes)", m->meta.stream_key, seq,
                    (int)m->payload.len);
  }
  return 1;
}

/* Copies only: plain views own nothing (and have no finalizer, which would cost every message). */
static int view_gc(lua_State *L) {
  sea_lua_view_t *v = sea_lua_to_view(L, 1);
  if (v && v->owned) {
    sea_message_free(v->owned);
    v->owned = NULL;
    v->msg = NULL;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Waiting for an asynchronous operation: a callback if given, else a yield inside a coroutine,
 * else run the loop until it is done (never inside a callback: that would re-enter the loop).
 * ------------------------------------------------------------------------------------------- */

typedef struct waitop {
  lrt_t *rt;
  int fn_ref; /* a callback, or LUA_NOREF */
  int co_ref; /* a waiting coroutine, or LUA_NOREF */
  int done;
  int status;
  char msg[256];
  int blocking; /* a blocking waiter owns the struct and frees it */
} waitop_t;

static void waitop_done(void *data, int status) {
  waitop_t *w = data;
  w->done = 1;
  w->status = status;
  lrt_t *rt = w->rt;
  lua_State *L = rt->cbL;
  int n = 1;
  if (status == 0)
    lua_pushboolean(L, 1);
  else
    n = sea_lua_fail(L, status, w->msg[0] ? w->msg : NULL);
  if (w->fn_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->fn_ref);
    lua_insert(L, -n - 1);
    luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
    call_cb(rt, n);
  } else if (w->co_ref != LUA_NOREF) {
    resume_ref(rt, w->co_ref, n);
  } else {
    lua_pop(L, n);
  }
  if (!w->blocking)
    free(w);
}

static waitop_t *waitop_new(lua_State *L, lrt_t *rt, int fn_idx) {
  waitop_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    luaL_error(L, "out of memory");
  w->rt = rt;
  w->fn_ref = w->co_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, fn_idx)) {
    luaL_checktype(L, fn_idx, LUA_TFUNCTION);
    lua_pushvalue(L, fn_idx);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (!sea_lua_isyieldable(L)) {
    if (rt->running) {
      free(w);
      luaL_error(L, "this call would wait inside a loop callback: pass a callback or call it "
                    "from a coroutine");
    }
    if (rt->luv_ref != LUA_NOREF) {
      free(w);
      luaL_error(L, "%s", LUV_NO_WAIT);
    }
    w->blocking = 1;
  }
  return w;
}

/* After the operation was started with w as its data: return what the caller gets. */
/* An operation refused before it started, with the message on top of the stack. */
static int waitop_refused(lua_State *L, waitop_t *w, int rc) {
  if (w->fn_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
  free(w);
  return sea_lua_fail(L, rc, lua_tostring(L, -1));
}

static int waitop_finish(lua_State *L, waitop_t *w, int rc) {
  if (rc != 0) {
    if (w->fn_ref != LUA_NOREF)
      luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
    free(w);
    return sea_lua_fail(L, rc, NULL);
  }
  if (w->fn_ref != LUA_NOREF) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!w->blocking) {
    lua_pushthread(L);
    w->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return lua_yield(L, 0); /* resumed with true or nil, msg, code */
  }
  lrt_t *rt = w->rt;
  rt->running = 1;
  int more = 1;
  while (more && !w->done && rt->err_ref == LUA_NOREF)
    more = sea_runtime_run(rt->rt, SEA_RUN_ONCE);
  rt->running = 0;
  if (!w->done && rt->err_ref == LUA_NOREF) {
    w->blocking = 0; /* never completes: leave it to the operation */
    return sea_lua_fail(L, SEA_ESTATE, "nothing left to wait for");
  }
  if (!w->done) {
    /* A callback failed while we waited; w is abandoned to the operation, which frees it. */
    w->blocking = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->err_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->err_ref);
    rt->err_ref = LUA_NOREF;
    return lua_error(L);
  }
  int status = w->status;
  free(w);
  if (status != 0)
    return sea_lua_fail(L, status, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Runtime
 * ------------------------------------------------------------------------------------------- */

static lrt_t *check_rt(lua_State *L, int i) {
  lrt_t *rt = luaL_checkudata(L, i, RT_MT);
  if (rt->rt == NULL)
    luaL_argerror(L, i, "runtime is closed");
  return rt;
}

/* luv's loop: require "luv", then its C function luv_loop(L), found in the module's shared
 * object (Lua opened it with RTLD_LOCAL, so it is looked up through a handle to that file).
 * Leaves the module on the stack. */
static void *luv_loop_of(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "luv");
  if (lua_pcall(L, 1, 1, 0) != 0)
    luaL_error(L, "runtime{luv = true}: %s", lua_tostring(L, -1));
  int base = lua_gettop(L); /* the module */
  typedef void *(*luv_loop_fn)(lua_State *);
  luv_loop_fn fn = NULL;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  if (lua_isfunction(L, -1)) {
    lua_pushstring(L, "luv");
    lua_getfield(L, -3, "cpath");
    if (lua_pcall(L, 2, 1, 0) == 0 && lua_isstring(L, -1)) {
      void *h = dlopen(lua_tostring(L, -1), RTLD_NOW | RTLD_NOLOAD);
      if (h) {
        fn = (luv_loop_fn)(uintptr_t)dlsym(h, "luv_loop");
        dlclose(h); /* Lua's own handle keeps it loaded */
      }
    }
  }
  lua_settop(L, base);
  if (fn == NULL) /* linked into the program (luvit and the like) */
    fn = (luv_loop_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "luv_loop");
  if (fn == NULL)
    luaL_error(L, "runtime{luv = true}: the luv module has no luv_loop (luv 1.30 or later is "
                  "needed)");
  void *loop = fn(L);
  if (loop == NULL)
    luaL_error(L, "runtime{luv = true}: luv has no loop");
  return loop;
}

/* Pushes a new runtime: on luv's loop when luv is set, else on a loop of its own. */
static int runtime_new(lua_State *L, int luv) {
  void *loop = luv ? luv_loop_of(L) : NULL; /* luv's module is now on the stack */
  lrt_t *rt = lua_newuserdata(L, sizeof *rt);
  memset(rt, 0, sizeof *rt);
  rt->cbL_ref = rt->err_ref = rt->luv_ref = LUA_NOREF;
  luaL_getmetatable(L, RT_MT);
  lua_setmetatable(L, -2);
  if (luv) {
    lua_pushvalue(L, -2);
    rt->luv_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_remove(L, -2);
  }
  int rc = loop ? sea_runtime_new_with_loop(loop, &rt->rt) : sea_runtime_new(&rt->rt);
  if (rc != 0)
    return sea_lua_fail(L, rc, "cannot create the runtime");
  rt->cbL = lua_newthread(L);
  rt->cbL_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* seastreamer.runtime([{luv = true}]) */
static int l_runtime(lua_State *L) {
  int luv = 0;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "luv");
    luv = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return runtime_new(L, luv);
}

static void streamer_close(lstreamer_t *st);

static int rt_close(lua_State *L) {
  lrt_t *rt = luaL_checkudata(L, 1, RT_MT);
  if (rt->rt == NULL)
    return 0;
  if (rt->running)
    return luaL_error(L, "cannot close the runtime from inside its loop");
  while (rt->streamers)
    streamer_close(rt->streamers);
  /* Let the handles closed above finish closing before the loop goes away. */
  sea_runtime_run(rt->rt, SEA_RUN_NOWAIT);
  sea_runtime_free(rt->rt);
  rt->rt = NULL;
  if (rt->err_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->err_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, rt->cbL_ref);
  if (rt->luv_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, rt->luv_ref);
  rt->err_ref = rt->cbL_ref = rt->luv_ref = LUA_NOREF;
  rt->cbL = NULL;
  return 0;
}

static int rt_run(lua_State *L) {
  lrt_t *rt = check_rt(L, 1);
  static const char *const modes[] = {"default", "once", "nowait", NULL};
  static const sea_run_mode_t vals[] = {SEA_RUN_DEFAULT, SEA_RUN_ONCE, SEA_RUN_NOWAIT};
  int mode = luaL_checkoption(L, 2, "default", modes);
  if (rt->running)
    return luaL_error(L, "runtime:run() called from inside the loop");
  rt->running = 1;
  int rc = sea_runtime_run(rt->rt, vals[mode]);
  rt->running = 0;
  if (rt->err_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->err_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->err_ref);
    rt->err_ref = LUA_NOREF;
    return lua_error(L); /* a callback's error surfaces where the loop was run */
  }
  lua_pushboolean(L, rc != 0); /* true: there is still work (once/nowait) */
  return 1;
}

static int rt_stop(lua_State *L) {
  sea_runtime_stop(check_rt(L, 1)->rt);
  return 0;
}

static int rt_connect(lua_State *L) {
  lrt_t *rt = check_rt(L, 1);
  const char *uri = luaL_checkstring(L, 2);
  sea_options_t *o = sea_lua_options(L, 3);
  lstreamer_t *st = lua_newuserdata(L, sizeof *st);
  memset(st, 0, sizeof *st);
  st->rt_ref = LUA_NOREF;
  luaL_getmetatable(L, STREAMER_MT);
  lua_setmetatable(L, -2);
  int rc = sea_connect(rt->rt, uri, o, &st->s);
  sea_options_free(o);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_runtime_errmsg(rt->rt));
  st->rt = rt;
  lua_pushvalue(L, 1);
  st->rt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  st->next = rt->streamers;
  rt->streamers = st;
  return 1;
}

/* seastreamer.connect(uri, opts): a runtime of its own, for the simplest scripts. */
static int l_connect(lua_State *L) {
  lua_settop(L, 2);
  if (runtime_new(L, 0) != 1)
    return 3;
  lua_insert(L, 1); /* rt, uri, opts */
  return rt_connect(L);
}

static int rt_gc(lua_State *L) {
  lrt_t *rt = luaL_checkudata(L, 1, RT_MT);
  if (rt->rt != NULL && !rt->running)
    rt_close(L);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Streamer
 * ------------------------------------------------------------------------------------------- */

static lstreamer_t *check_streamer(lua_State *L, int i) {
  lstreamer_t *st = luaL_checkudata(L, i, STREAMER_MT);
  if (st->s == NULL)
    luaL_argerror(L, i, "streamer is closed");
  return st;
}

static void producer_close(lproducer_t *p);
static void consumer_close(lconsumer_t *c);

static void streamer_close(lstreamer_t *st) {
  if (st->s == NULL)
    return;
  while (st->producers)
    producer_close(st->producers);
  while (st->consumers)
    consumer_close(st->consumers);
  sea_streamer_close(st->s);
  st->s = NULL;
  lrt_t *rt = st->rt;
  for (lstreamer_t **pp = &rt->streamers; *pp; pp = &(*pp)->next)
    if (*pp == st) {
      *pp = st->next;
      break;
    }
  luaL_unref(rt->cbL, LUA_REGISTRYINDEX, st->rt_ref);
  st->rt_ref = LUA_NOREF;
}

static int st_close(lua_State *L) {
  lstreamer_t *st = luaL_checkudata(L, 1, STREAMER_MT);
  streamer_close(st);
  return 0;
}

static int st_uri(lua_State *L) {
  lua_pushstring(L, sea_streamer_uri(check_streamer(L, 1)->s)->raw);
  return 1;
}

static int st_backend(lua_State *L) {
  lua_pushstring(L, sea_streamer_backend(check_streamer(L, 1)->s));
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Producer
 * ------------------------------------------------------------------------------------------- */

static lproducer_t *check_producer(lua_State *L, int i) {
  lproducer_t *p = luaL_checkudata(L, i, PRODUCER_MT);
  if (p->p == NULL)
    luaL_argerror(L, i, "producer is closed");
  return p;
}

static void push_meta(lua_State *L, const sea_meta_t *m) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, m->stream_key ? m->stream_key : "");
  lua_setfield(L, -2, "stream_key");
  push_seq(L, m->seq);
  lua_setfield(L, -2, "seq");
  push_u64(L, m->shard_id);
  lua_setfield(L, -2, "shard");
  push_u64(L, (uint64_t)m->timestamp_us);
  lua_setfield(L, -2, "timestamp");
}

/* The token of a send with a callback is the callback's registry reference + 1 (0 = none). */
static void on_receipt(sea_producer_t *sp, void *token, int status, const sea_meta_t *meta) {
  lproducer_t *p = sea_producer_get_data(sp);
  if (token == NULL)
    return;
  int ref = (int)((intptr_t)token - 1);
  lrt_t *rt = p->st->rt;
  lua_State *L = rt->cbL;
  if (p->in_gc) {
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  if (status == 0) {
    lua_pushnil(L);
    if (meta)
      push_meta(L, meta);
    else
      lua_pushnil(L);
  } else {
    const char *em = sea_producer_errmsg(sp);
    lua_pushstring(L, em && em[0] ? em : sea_strerror(status));
    lua_pushnil(L);
  }
  lua_pushstring(L, status == 0 ? "OK" : code_name(status));
  call_cb(rt, 3);
}

static void on_drain(sea_producer_t *sp) {
  lproducer_t *p = sea_producer_get_data(sp);
  if (p->drain_ref == LUA_NOREF || p->in_gc)
    return;
  lrt_t *rt = p->st->rt;
  lua_rawgeti(rt->cbL, LUA_REGISTRYINDEX, p->drain_ref);
  call_cb(rt, 0);
}

static int st_producer(lua_State *L) {
  lstreamer_t *st = check_streamer(L, 1);
  sea_options_t *o = sea_lua_options(L, 2);
  lproducer_t *p = lua_newuserdata(L, sizeof *p);
  memset(p, 0, sizeof *p);
  p->st_ref = p->drain_ref = LUA_NOREF;
  luaL_getmetatable(L, PRODUCER_MT);
  lua_setmetatable(L, -2);
  int rc = sea_producer_open(st->s, o, &p->p);
  sea_options_free(o);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_runtime_errmsg(st->rt->rt));
  p->st = st;
  lua_pushvalue(L, 1);
  p->st_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  p->next = st->producers;
  st->producers = p;
  sea_producer_set_data(p->p, p);
  sea_producer_set_callbacks(p->p, on_receipt, on_drain);
  return 1;
}

static void producer_close(lproducer_t *p) {
  if (p->p == NULL)
    return;
  sea_producer_close(p->p); /* cancels receipts: their callbacks run now */
  p->p = NULL;
  lstreamer_t *st = p->st;
  for (lproducer_t **pp = &st->producers; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  lua_State *L = st->rt->cbL;
  if (p->drain_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, p->drain_ref);
  p->drain_ref = LUA_NOREF;
  luaL_unref(L, LUA_REGISTRYINDEX, p->st_ref);
  p->st_ref = LUA_NOREF;
}

/* Build headers from a table name -> string at index i into kv (at most n). */
static size_t read_headers(lua_State *L, int i, sea_kv_t *kv, size_t n) {
  size_t c = 0;
  lua_pushnil(L);
  while (lua_next(L, i) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_argerror(L, i, "headers must map strings to strings");
    if (c == n)
      luaL_argerror(L, i, "too many headers (at most 64)");
    kv[c].name = lua_tolstring(L, -2, &kv[c].name_len);
    kv[c].value = (const uint8_t *)lua_tolstring(L, -1, &kv[c].value_len);
    c++;
    lua_pop(L, 1); /* the strings stay alive: the table at i holds them */
  }
  return c;
}

/* p:send(payload [, opts] [, fn]): opts is a stream key string or a table {stream_key=, key=,
 * headers=, timestamp= (µs)}; fn(err, meta, code) gets the receipt. A message view may be sent as
 * the payload: its bytes are referenced, not copied. */
static int pr_send(lua_State *L) {
  lproducer_t *p = check_producer(L, 1);
  sea_message_t m;
  memset(&m, 0, sizeof m);
  sea_kv_t kv[64];
  if (lua_type(L, 2) == LUA_TUSERDATA) {
    sea_lua_view_t *v = sea_lua_check_view(L, 2);
    m.payload = v->msg->payload;
    m.key = v->msg->key;
    m.key_len = v->msg->key_len;
    m.headers = v->msg->headers;
    m.header_count = v->msg->header_count;
  } else {
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    m.payload.data = (const uint8_t *)s;
    m.payload.len = len;
  }
  int fn = 3;
  if (lua_type(L, 3) == LUA_TSTRING) {
    size_t kl;
    const char *k = lua_tolstring(L, 3, &kl);
    int err;
    if ((m.meta.stream_key = sea_stream_key(k, kl, &err)) == NULL)
      return luaL_argerror(L, 3, lua_pushfstring(L, "invalid stream key '%s'", k));
    fn = 4;
  } else if (lua_type(L, 3) == LUA_TTABLE) {
    fn = 4;
    lua_getfield(L, 3, "stream_key");
    if (!lua_isnil(L, -1)) {
      size_t kl;
      const char *k = luaL_checklstring(L, -1, &kl);
      int err;
      if ((m.meta.stream_key = sea_stream_key(k, kl, &err)) == NULL)
        return luaL_argerror(L, 3, lua_pushfstring(L, "invalid stream key '%s'", k));
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "timestamp");
    if (!lua_isnil(L, -1))
      m.meta.timestamp_us = (int64_t)luaL_checknumber(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 3, "key");
    if (!lua_isnil(L, -1)) {
      m.key = (const uint8_t *)luaL_checklstring(L, -1, &m.key_len);
    }
    lua_pop(L, 1); /* the key string lives in the opts table */
    lua_getfield(L, 3, "headers");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      m.header_count = read_headers(L, lua_gettop(L), kv, 64);
      m.headers = m.header_count ? kv : NULL;
    }
    lua_pop(L, 1);
  } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TFUNCTION) {
    return luaL_argerror(L, 3, "expected a stream key, an options table or a callback");
  } else if (lua_isnil(L, 3)) {
    fn = 4;
  }
  void *token = NULL;
  if (!lua_isnoneornil(L, fn)) {
    luaL_checktype(L, fn, LUA_TFUNCTION);
    lua_pushvalue(L, fn);
    token = (void *)((intptr_t)luaL_ref(L, LUA_REGISTRYINDEX) + 1);
  }
  int rc = sea_producer_send(p->p, &m, token);
  if (rc != 0) {
    if (token)
      luaL_unref(L, LUA_REGISTRYINDEX, (int)((intptr_t)token - 1));
    return sea_lua_fail(L, rc, rc == SEA_EAGAIN ? NULL : sea_producer_errmsg(p->p));
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int pr_flush(lua_State *L) {
  lproducer_t *p = check_producer(L, 1);
  waitop_t *w = waitop_new(L, p->st->rt, 2);
  int rc = sea_producer_flush(p->p, waitop_done, w);
  return waitop_finish(L, w, rc);
}

static int pr_end(lua_State *L) {
  lproducer_t *p = check_producer(L, 1);
  waitop_t *w = waitop_new(L, p->st->rt, 2);
  int rc = sea_producer_end(p->p, waitop_done, w);
  return waitop_finish(L, w, rc);
}

static int pr_on_drain(lua_State *L) {
  lproducer_t *p = check_producer(L, 1);
  if (p->drain_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, p->drain_ref);
  p->drain_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    p->drain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

static int pr_inflight(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sea_producer_inflight(check_producer(L, 1)->p));
  return 1;
}

static int pr_close(lua_State *L) {
  producer_close(luaL_checkudata(L, 1, PRODUCER_MT));
  return 0;
}

static int pr_gc(lua_State *L) {
  lproducer_t *p = luaL_checkudata(L, 1, PRODUCER_MT);
  p->in_gc = 1;
  producer_close(p);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Consumer: batches queue up in C; next() hands out one view at a time.
 * ------------------------------------------------------------------------------------------- */

static lconsumer_t *check_consumer(lua_State *L, int i) {
  lconsumer_t *c = luaL_checkudata(L, i, CONSUMER_MT);
  if (c->c == NULL)
    luaL_argerror(L, i, "consumer is closed");
  return c;
}

/* Invalidate the view last handed out and release the batch it pointed into, if done with. */
static void consumer_advance(lconsumer_t *c, lua_State *L) {
  if (c->view_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->view_ref);
    sea_lua_view_t *v = lua_touserdata(L, -1);
    if (v)
      v->msg = NULL; /* expired: a view is never pointed at another message */
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, c->view_ref);
    c->view_ref = LUA_NOREF;
  }
  if (c->cur) {
    sea_batch_release(c->cur->batch);
    free(c->cur);
    c->cur = NULL;
  }
}

/* Push the next queued message as a view (remembered, to invalidate it later). 0 if none. */
static int consumer_pop(lconsumer_t *c, lua_State *L) {
  while (c->head && c->pos >= c->head->batch->count) {
    qbatch_t *q = c->head;
    c->head = q->next;
    if (!c->head)
      c->tail = NULL;
    c->queued--;
    c->pos = 0;
    sea_batch_release(q->batch);
    free(q);
  }
  if (!c->head)
    return 0;
  qbatch_t *q = c->head;
  sea_lua_push_view(L, &q->batch->msgs[c->pos++], NULL);
  lua_pushvalue(L, -1);
  c->view_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (c->pos >= q->batch->count) {
    /* Keep the batch alive for this last view until the next call. */
    c->head = q->next;
    if (!c->head)
      c->tail = NULL;
    c->queued--;
    c->pos = 0;
    q->next = NULL;
    c->cur = q;
  }
  if (c->paused && c->queued < CONSUMER_QUEUE_MAX / 2) {
    c->paused = 0;
    sea_consumer_resume(c->c);
  }
  return 1;
}

static int push_end(lconsumer_t *c, lua_State *L) {
  if (c->ended == SEA_EOF) {
    lua_pushnil(L);
    return 1;
  }
  return sea_lua_fail(L, c->ended, sea_consumer_errmsg(c->c));
}

static void on_batch(sea_consumer_t *sc, const sea_batch_t *batch) {
  lconsumer_t *c = sea_consumer_get_data(sc);
  if (batch->count == 0)
    return;
  qbatch_t *q = malloc(sizeof *q);
  if (q == NULL) {
    c->ended = SEA_ENOMEM;
    return;
  }
  sea_batch_retain(batch);
  q->batch = batch;
  q->next = NULL;
  if (c->tail)
    c->tail->next = q;
  else
    c->head = q;
  c->tail = q;
  c->queued++;
  if (c->queued >= CONSUMER_QUEUE_MAX && !c->paused) {
    c->paused = 1;
    sea_consumer_pause(sc);
  }
  if (c->waiter_ref != LUA_NOREF) {
    lrt_t *rt = c->st->rt;
    int ref = c->waiter_ref;
    c->waiter_ref = LUA_NOREF;
    consumer_pop(c, rt->cbL);
    resume_ref(rt, ref, 1);
  }
}

static void on_end(sea_consumer_t *sc, int status) {
  lconsumer_t *c = sea_consumer_get_data(sc);
  c->ended = status ? status : SEA_EOF;
  if (c->waiter_ref != LUA_NOREF) {
    lrt_t *rt = c->st->rt;
    int ref = c->waiter_ref;
    c->waiter_ref = LUA_NOREF;
    int n = push_end(c, rt->cbL);
    resume_ref(rt, ref, n);
  }
}

static int st_consumer(lua_State *L) {
  lstreamer_t *st = check_streamer(L, 1);
  sea_options_t *o = sea_lua_options(L, 2);
  lconsumer_t *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->st_ref = c->view_ref = c->waiter_ref = LUA_NOREF;
  luaL_getmetatable(L, CONSUMER_MT);
  lua_setmetatable(L, -2);
  int rc = sea_consumer_open(st->s, o, &c->c);
  sea_options_free(o);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_runtime_errmsg(st->rt->rt));
  c->st = st;
  lua_pushvalue(L, 1);
  c->st_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->next = st->consumers;
  st->consumers = c;
  sea_consumer_set_data(c->c, c);
  rc = sea_consumer_start(c->c, on_batch, on_end);
  if (rc != 0) {
    const char *em = sea_consumer_errmsg(c->c);
    lua_pushstring(L, em && em[0] ? em : sea_strerror(rc));
    consumer_close(c);
    return sea_lua_fail(L, rc, lua_tostring(L, -1));
  }
  return 1;
}

/* c:next(): the next message (a view valid until the next call), nil at the end, or nil, msg,
 * code on failure. Inside a coroutine it yields until a message arrives; outside one it runs the
 * loop. */
static int co_next(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  lrt_t *rt = c->st->rt;
  consumer_advance(c, L);
  if (consumer_pop(c, L))
    return 1;
  if (c->ended)
    return push_end(c, L);
  if (c->waiter_ref != LUA_NOREF)
    return luaL_error(L, "another coroutine is already waiting on this consumer");
  if (sea_lua_isyieldable(L)) {
    lua_pushthread(L);
    c->waiter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return lua_yield(L, 0); /* on_batch / on_end resume us with the result */
  }
  if (rt->running)
    return luaL_error(L, "consumer:next() would wait inside a loop callback; call it from a "
                         "coroutine");
  if (rt->luv_ref != LUA_NOREF)
    return luaL_error(L, "%s", LUV_NO_WAIT);
  rt->running = 1;
  int more = 1;
  while (more && c->c && !c->head && !c->ended && rt->err_ref == LUA_NOREF)
    more = sea_runtime_run(rt->rt, SEA_RUN_ONCE);
  rt->running = 0;
  if (rt->err_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->err_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->err_ref);
    rt->err_ref = LUA_NOREF;
    return lua_error(L);
  }
  if (c->c == NULL)
    return sea_lua_fail(L, SEA_ECLOSED, "consumer closed while waiting");
  if (consumer_pop(c, L))
    return 1;
  if (!c->ended)
    return sea_lua_fail(L, SEA_ESTATE,
                        "nothing left to wait for: the consumer's backend has no "
                        "work pending");
  return push_end(c, L);
}

/* for msg in c:messages() do ... end */
static int co_iter(lua_State *L) {
  lua_settop(L, 1);
  int n = co_next(L);
  if (n == 3) /* an error ends the loop by raising it: a for loop cannot see a second value */
    return luaL_error(L, "%s (%s)", lua_tostring(L, -2), lua_tostring(L, -1));
  return n;
}

static int co_messages(lua_State *L) {
  check_consumer(L, 1);
  lua_pushcfunction(L, co_iter);
  lua_pushvalue(L, 1);
  return 2;
}

static int co_ack(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  sea_lua_view_t *v = sea_lua_check_view(L, 2);
  int rc = sea_consumer_ack(c->c, v->msg);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_consumer_errmsg(c->c));
  lua_pushboolean(L, 1);
  return 1;
}

/* ack_pos(stream_key, shard, seq): a position processed without its message (kafka). */
static int co_ack_pos(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  const char *key = luaL_checkstring(L, 2);
  uint64_t shard = check_seq(L, 3, "shard"), seq = check_seq(L, 4, "seq");
  int rc = sea_consumer_ack_pos(c->c, key, shard, seq);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_consumer_errmsg(c->c));
  lua_pushboolean(L, 1);
  return 1;
}

static int co_commit(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  waitop_t *w = waitop_new(L, c->st->rt, 2);
  int rc = sea_consumer_commit(c->c, waitop_done, w);
  return waitop_finish(L, w, rc);
}

/* Drop what is queued: after a seek or rewind, messages come from the new position. */
static void consumer_drop_queue(lconsumer_t *c, lua_State *L) {
  consumer_advance(c, L);
  while (c->head) {
    qbatch_t *q = c->head;
    c->head = q->next;
    sea_batch_release(q->batch);
    free(q);
  }
  c->tail = NULL;
  c->queued = 0;
  c->pos = 0;
  if (c->ended == SEA_EOF)
    c->ended = 0; /* a consumer caught up may be moved back */
  if (c->paused) {
    c->paused = 0;
    sea_consumer_resume(c->c);
  }
}

/* c:seek(timestamp_us [, fn]) */
static int co_seek(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  int64_t ts = (int64_t)luaL_checknumber(L, 2);
  consumer_drop_queue(c, L);
  waitop_t *w = waitop_new(L, c->st->rt, 3);
  int rc = sea_consumer_seek(c->c, ts, waitop_done, w);
  if (rc != 0) /* refused at once: the consumer says why */
    lua_pushstring(L, sea_consumer_errmsg(c->c));
  return rc != 0 ? waitop_refused(L, w, rc) : waitop_finish(L, w, rc);
}

/* c:rewind("beginning" | "end" | seq [, fn]): seq as check_seq takes it */
static int co_rewind(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  sea_pos_t pos = {SEA_POS_AT, 0};
  const char *s = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (s && strcmp(s, "beginning") == 0)
    pos.kind = SEA_POS_BEGINNING;
  else if (s && strcmp(s, "end") == 0)
    pos.kind = SEA_POS_END;
  else if (s && (s[0] < '0' || s[0] > '9'))
    return luaL_argerror(
        L, 2,
        lua_pushfstring(L, "position '%s': expected \"beginning\", \"end\" or a sequence number",
                        s));
  else
    pos.seq = check_seq(L, 2, "seq");
  consumer_drop_queue(c, L);
  waitop_t *w = waitop_new(L, c->st->rt, 3);
  int rc = sea_consumer_rewind(c->c, pos, waitop_done, w);
  if (rc != 0)
    lua_pushstring(L, sea_consumer_errmsg(c->c));
  return rc != 0 ? waitop_refused(L, w, rc) : waitop_finish(L, w, rc);
}

static int co_pause(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  if (!c->paused) {
    c->paused = 1;
    sea_consumer_pause(c->c);
  }
  return 0;
}

static int co_resume(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  if (c->paused) {
    c->paused = 0;
    sea_consumer_resume(c->c);
  }
  return 0;
}

/* c:lag(): what the backend knows now of how far behind the consumer is, per stream and shard
 * (sea_consumer_lag): a list of {stream, shard, lag, lag_bytes}, an unknown count nil; nil and
 * the error for a backend that cannot tell (stdio, mem). */
static int co_lag(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  sea_lag_t lag[64];
  int n = sea_consumer_lag(c->c, lag, 64);
  if (n < 0)
    return sea_lua_fail(L, n, n == SEA_ENOTSUP ? "lag: not known by this backend" : NULL);
  lua_createtable(L, n < 64 ? n : 64, 0);
  for (int i = 0; i < n && i < 64; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, lag[i].stream_key);
    lua_setfield(L, -2, "stream");
    lua_pushnumber(L, (lua_Number)lag[i].shard);
    lua_setfield(L, -2, "shard");
    if (lag[i].lag >= 0) {
      lua_pushnumber(L, (lua_Number)lag[i].lag);
      lua_setfield(L, -2, "lag");
    }
    if (lag[i].lag_bytes >= 0) {
      lua_pushnumber(L, (lua_Number)lag[i].lag_bytes);
      lua_setfield(L, -2, "lag_bytes");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static void consumer_close(lconsumer_t *c) {
  if (c->c == NULL)
    return;
  lstreamer_t *st = c->st;
  lua_State *L = st->rt->cbL;
  consumer_drop_queue(c, L);
  sea_consumer_close(c->c);
  c->c = NULL;
  for (lconsumer_t **pp = &st->consumers; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  if (c->waiter_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, c->waiter_ref); /* the coroutine stays suspended */
  c->waiter_ref = LUA_NOREF;
  luaL_unref(L, LUA_REGISTRYINDEX, c->st_ref);
  c->st_ref = LUA_NOREF;
}

static int co_close(lua_State *L) {
  consumer_close(luaL_checkudata(L, 1, CONSUMER_MT));
  return 0;
}

static int co_error(lua_State *L) {
  lconsumer_t *c = luaL_checkudata(L, 1, CONSUMER_MT);
  if (c->ended == 0 || c->ended == SEA_EOF)
    return 0;
  lua_pushstring(L, sea_consumer_errmsg(c->c));
  lua_pushstring(L, code_name(c->ended));
  return 2;
}

/* ---------------------------------------------------------------------------------------------
 * The module
 * ------------------------------------------------------------------------------------------- */

static int l_strerror(lua_State *L) {
  lua_pushstring(L, sea_strerror((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* seastreamer.seq(x): x as a sequence number of this Lua (an integer, a uint64_t...). */
static int l_seq(lua_State *L) {
  push_seq(L, check_seq(L, 1, "seq"));
  return 1;
}

/* seastreamer.seqstring(x): the sequence number x in decimal, exact on every Lua. */
static int l_seqstring(lua_State *L) {
  push_decimal(L, check_seq(L, 1, "seq"));
  return 1;
}

static int l_now(lua_State *L) {
  push_u64(L, (uint64_t)sea_now_us());
  return 1;
}

/* close is the class's close method, also its __close: Lua 5.4's `local x <close> = ...` closes x
 * as x:close() does when the scope is left, by an error too (LuaJIT has no <close> and never
 * reads the field). */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                      lua_CFunction close) {
  luaL_newmetatable(L, name);
  if (methods) {
    lua_newtable(L);
    sea_lua_setfuncs(L, methods);
    lua_setfield(L, -2, "__index");
  }
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  if (close) {
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
  }
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

int luaopen_seastreamer(lua_State *L) {
  static const luaL_Reg rt_m[] = {{"connect", rt_connect},
                                  {"run", rt_run},
                                  {"stop", rt_stop},
                                  {"close", rt_close},
                                  {NULL, NULL}};
  static const luaL_Reg st_m[] = {{"producer", st_producer}, {"consumer", st_consumer},
                                  {"uri", st_uri},           {"backend", st_backend},
                                  {"close", st_close},       {NULL, NULL}};
  static const luaL_Reg pr_m[] = {
      {"send", pr_send},         {"flush", pr_flush},       {"finish", pr_end},  {"end", pr_end},
      {"on_drain", pr_on_drain}, {"inflight", pr_inflight}, {"close", pr_close}, {NULL, NULL}};
  static const luaL_Reg co_m[] = {{"next", co_next},     {"messages", co_messages},
                                  {"ack", co_ack},       {"ack_pos", co_ack_pos},
                                  {"commit", co_commit}, {"seek", co_seek},
                                  {"rewind", co_rewind}, {"pause", co_pause},
                                  {"resume", co_resume}, {"error", co_error},
                                  {"close", co_close},   {"lag", co_lag},
                                  {NULL, NULL}};
  new_class(L, RT_MT, rt_m, rt_gc, rt_close);
  new_class(L, STREAMER_MT, st_m, st_close, st_close);
  new_class(L, PRODUCER_MT, pr_m, pr_gc, pr_close);
  new_class(L, CONSUMER_MT, co_m, co_close, co_close);

  static const luaL_Reg view_mm[] = {{"__index", view_index},
                                     {"__newindex", view_newindex},
                                     {"__tostring", view_tostring},
                                     {NULL, NULL}};
  for (int copy = 0; copy < 2; copy++) {
    luaL_newmetatable(L, copy ? SEA_LUA_COPY_MT : SEA_LUA_VIEW_MT);
    sea_lua_setfuncs(L, view_mm);
    if (copy) {
      lua_pushcfunction(L, view_gc);
      lua_setfield(L, -2, "__gc");
    }
    lua_pushliteral(L, SEA_LUA_VIEW_MT);
    lua_setfield(L, -2, "__metatable");
    lua_pushlightuserdata(L, (void *)&view_tag);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  lua_pushlightuserdata(L, (void *)&headers_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushlightuserdata(L, (void *)&headers_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"runtime", l_runtime},
                                 {"connect", l_connect},
                                 {"run", sea_lua_run},
                                 {"strerror", l_strerror},
                                 {"now", l_now},
                                 {"seq", l_seq},
                                 {"seqstring", l_seqstring},
                                 {NULL, NULL}};
  sea_lua_newlib(L, fns);
  lua_pushstring(L, sea_version_string());
  lua_setfield(L, -2, "version");
  return 1;
}
