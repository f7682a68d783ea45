/* producer.c: the producer object: sends with receipts (a callback, or none), flush, end,
 * on_drain. */
#include <stdlib.h>
#include <string.h>

#include "module.h"

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
  sea_lua_push_seq(L, m->seq);
  lua_setfield(L, -2, "seq");
  sea_lua_push_u64(L, m->shard_id);
  lua_setfield(L, -2, "shard");
  sea_lua_push_u64(L, (uint64_t)m->timestamp_us);
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
  lua_pushstring(L, status == 0 ? "OK" : sea_lua_code_name(status));
  sea_lua_call_cb(rt, 3);
}

static void on_drain(sea_producer_t *sp) {
  lproducer_t *p = sea_producer_get_data(sp);
  if (p->drain_ref == LUA_NOREF || p->in_gc)
    return;
  lrt_t *rt = p->st->rt;
  lua_rawgeti(rt->cbL, LUA_REGISTRYINDEX, p->drain_ref);
  sea_lua_call_cb(rt, 0);
}

int sea_lua_st_producer(lua_State *L) {
  lstreamer_t *st = sea_lua_check_streamer(L, 1);
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

void sea_lua_producer_close(lproducer_t *p) {
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

/* Errors in the options table (argument 3) name the argument and the field. */
static int opt_error(lua_State *L, const char *field, const char *what) {
  return luaL_argerror(L, 3, lua_pushfstring(L, "option '%s': %s", field, what));
}

/* The value of options field `field` (on top of the stack) must be of type t. */
static void opt_check(lua_State *L, const char *field, int t) {
  if (lua_type(L, -1) != t)
    opt_error(
        L, field,
        lua_pushfstring(L, "expected a %s, got %s", lua_typename(L, t), luaL_typename(L, -1)));
}

/* Build headers from the table name -> string on top of the stack into kv (at most n). */
static size_t read_headers(lua_State *L, sea_kv_t *kv, size_t n) {
  size_t c = 0;
  int i = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, i) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      opt_error(L, "headers", "must map strings to strings");
    if (c == n)
      opt_error(L, "headers", "too many (at most 64)");
    kv[c].name = lua_tolstring(L, -2, &kv[c].name_len);
    kv[c].value = (const uint8_t *)lua_tolstring(L, -1, &kv[c].value_len);
    c++;
    lua_pop(L, 1); /* the strings stay alive: the table holds them */
  }
  return c;
}

/* The options table's fields are these; any other is a mistake (a typo), said so. */
static void check_option_names(lua_State *L) {
  static const char *const known[] = {"stream_key", "key", "headers", "timestamp", NULL};
  const char *bad = sea_lua_unknown_field(L, 3, known);
  if (bad)
    luaL_argerror(L, 3,
                  lua_pushfstring(L,
                                  "unknown option '%s' (expected stream_key, key, headers or "
                                  "timestamp)",
                                  bad));
}

/* p:send(payload [, opts] [, fn]): opts is a stream key string or a table {stream_key=, key=,
 * headers=, timestamp= (µs)}; fn(err, meta, code) gets the receipt. A message view may be sent as
 * the payload: its bytes are referenced, not copied. A key or headers asked of a backend that
 * does not carry them are refused (never dropped without a word, as produce's -K and -H). */
static int pr_send(lua_State *L) {
  lproducer_t *p = check_producer(L, 1);
  sea_message_t m;
  memset(&m, 0, sizeof m);
  sea_kv_t kv[64];
  int t = lua_type(L, 2);
  if (sea_lua_viewish(t) || t == SEA_LUA_TCDATA) { /* a cdata: the LuaJIT runner's view */
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
    check_option_names(L);
    uint64_t caps = sea_streamer_caps(p->st->s);
    const char *backend = sea_streamer_backend(p->st->s);
    lua_getfield(L, 3, "stream_key");
    if (!lua_isnil(L, -1)) {
      size_t kl;
      opt_check(L, "stream_key", LUA_TSTRING);
      const char *k = lua_tolstring(L, -1, &kl);
      int err;
      if ((m.meta.stream_key = sea_stream_key(k, kl, &err)) == NULL)
        return luaL_argerror(L, 3, lua_pushfstring(L, "invalid stream key '%s'", k));
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "timestamp");
    if (!lua_isnil(L, -1)) {
      opt_check(L, "timestamp", LUA_TNUMBER);
      m.meta.timestamp_us = (int64_t)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    lua_getfield(L, 3, "key");
    if (!lua_isnil(L, -1)) {
      opt_check(L, "key", LUA_TSTRING);
      if (!(caps & SEA_CAP_KEY))
        return opt_error(L, "key", lua_pushfstring(L, "%s does not carry message keys", backend));
      m.key = (const uint8_t *)lua_tolstring(L, -1, &m.key_len);
    }
    lua_pop(L, 1); /* the key string lives in the opts table */
    lua_getfield(L, 3, "headers");
    if (!lua_isnil(L, -1)) {
      opt_check(L, "headers", LUA_TTABLE);
      m.header_count = read_headers(L, kv, 64);
      m.headers = m.header_count ? kv : NULL;
      if (m.header_count && !(caps & SEA_CAP_HEADERS))
        return opt_error(L, "headers", lua_pushfstring(L, "%s does not carry headers", backend));
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
  waitop_t *w = sea_lua_waitop_new(L, p->st->rt, 2);
  int rc = sea_producer_flush(p->p, sea_lua_waitop_done, w);
  return sea_lua_waitop_finish(L, w, rc);
}

static int pr_end(lua_State *L) {
  lproducer_t *p = check_producer(L, 1);
  waitop_t *w = sea_lua_waitop_new(L, p->st->rt, 2);
  int rc = sea_producer_end(p->p, sea_lua_waitop_done, w);
  return sea_lua_waitop_finish(L, w, rc);
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
  sea_lua_producer_close(luaL_checkudata(L, 1, PRODUCER_MT));
  return 0;
}

static int pr_gc(lua_State *L) {
  lproducer_t *p = luaL_checkudata(L, 1, PRODUCER_MT);
  p->in_gc = 1;
  sea_lua_producer_close(p);
  return 0;
}

/* The producer's class (from luaopen_seastreamer). */
void sea_lua_producer_class(lua_State *L) {
  static const luaL_Reg pr_m[] = {
      {"send", pr_send},         {"flush", pr_flush},       {"finish", pr_end},  {"end", pr_end},
      {"on_drain", pr_on_drain}, {"inflight", pr_inflight}, {"close", pr_close}, {NULL, NULL}};
  sea_lua_new_class(L, PRODUCER_MT, pr_m, pr_gc, pr_close);
}
