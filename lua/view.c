/* view.c: the read-only message views (seastreamer_lua.h says how they expire), msg:copy(),
 * msg.headers, msg:totable(), and their metatables. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "module.h"

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

#ifdef SEA_LUA_LIGHT_VIEWS
#define LIGHT_TAG ((uintptr_t)1 << 63)
/* The light views that can be valid: those of the last call, numbered lo .. lo + n - 1 (view lo
 * + k shows msgs[k]), while *epoch is still lo. The caller moves *epoch past lo + n - 1 when
 * the call returns, so a number is never handed out twice. */
static struct {
  const uint64_t *epoch; /* NULL: none is */
  uint64_t lo;
  size_t n;
  const sea_message_t *msgs;
  const int32_t *at; /* NULL, or the one live view's number + 1 - lo (0: none) */
} light_cur;
/* What sea_lua_to_view returns for a light view: filled anew at each call. */
static sea_lua_view_t light_view;
/* Registry keys: the light views' metatable, and {lo, {[k + 1] = headers}} of the light views
 * of the last call whose msg.headers was read (a weak table keyed by light userdata would never
 * lose an entry). */
static const char light_mt_key;
static const char light_headers_key;

/* The view that light userdata p stands for (expired unless it is one of the current call's),
 * or NULL if p is not a light view. */
static sea_lua_view_t *light_to_view(const void *p) {
  uintptr_t u = (uintptr_t)p;
  if (!(u & LIGHT_TAG))
    return NULL;
  uint64_t gen = (uint64_t)(u & ~LIGHT_TAG);
  bool live = light_cur.epoch != NULL && *light_cur.epoch == light_cur.lo &&
              gen - light_cur.lo < light_cur.n &&
              (light_cur.at == NULL || gen - light_cur.lo + 1 == (uint64_t)(int64_t)*light_cur.at);
  light_view = (sea_lua_view_t){
      .msg = live ? &light_cur.msgs[gen - light_cur.lo] : NULL, .gen = gen, .pos_ref = LUA_NOREF};
  return &light_view;
}

static bool push_light_mt(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&light_mt_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  return lua_istable(L, -1);
}

void sea_lua_push_light_mt(lua_State *L) {
  push_light_mt(L);
}

bool sea_lua_light_begin(lua_State *L, const uint64_t *epoch, size_t n) {
#ifdef SEA_LUAJIT
  if (*epoch >= ((uint64_t)1 << 43) - n) /* past the 16 of LuaJIT's segments the views may use */
    return false;
#else
  (void)epoch;
  (void)n;
#endif
  lua_pushlightuserdata(L, NULL);
  bool ours;
  if (!lua_getmetatable(L, -1)) { /* none: the views' one goes in */
    ours = push_light_mt(L);
    if (ours)
      lua_setmetatable(L, -2);
    else
      lua_pop(L, 1);
    lua_pop(L, 1);
    return ours;
  }
  ours = push_light_mt(L) && lua_rawequal(L, -1, -2);
  lua_pop(L, 3);
  return ours;
}

static void light_set(const sea_message_t *msgs, size_t n, const uint64_t *epoch,
                      const int32_t *at) {
  light_cur.epoch = epoch;
  light_cur.lo = *epoch;
  light_cur.n = n;
  light_cur.msgs = msgs;
  light_cur.at = at;
}

void *sea_lua_push_light(lua_State *L, const sea_message_t *m, const uint64_t *epoch) {
  void *v = (void *)(LIGHT_TAG | (uintptr_t)*epoch);
  light_set(m, 1, epoch, NULL);
  lua_pushlightuserdata(L, v);
  return v;
}

void sea_lua_fill_light(lua_State *L, int t, const sea_message_t *msgs, size_t n,
                        const uint64_t *epoch, const int32_t *at) {
  t = t < 0 ? lua_gettop(L) + t + 1 : t;
  light_set(msgs, n, epoch, at);
  for (size_t k = 0; k < n; k++) {
    lua_pushlightuserdata(L, (void *)(LIGHT_TAG | (uintptr_t)(*epoch + k)));
    lua_rawseti(L, t, (lua_Integer)k + 1);
  }
}

void sea_lua_light_end(void) {
  light_cur.epoch = NULL;
  light_cur.msgs = NULL;
  light_cur.n = 0;
  light_cur.at = NULL;
}

/* msg.headers of a light view: built once per view, like a full view's. */
static void push_light_headers(lua_State *L, uint64_t gen, const sea_message_t *m);
#endif

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
#ifdef SEA_LUA_LIGHT_VIEWS
  if (lua_type(L, i) == LUA_TLIGHTUSERDATA)
    return light_to_view(lua_touserdata(L, i));
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

/* msg:copy(): a view that never expires, whose message and bytes (payload, key, headers) lie in
 * the userdata itself, after the view: Lua's collector, and the runner's --max-memory, count
 * them. (A copy used to share its batch's block, outside Lua's heap: unseen by the collector, a
 * ring of 100 copies of 20 KB messages kept about 1 GB of blocks alive.) Sending one copies its
 * bytes (payload.block is NULL), so the userdata may go as soon as the send returns. */
static int view_copy(lua_State *L) {
  sea_lua_view_t *v = sea_lua_check_view(L, 1);
  const sea_message_t *m = v->msg;
  sea_lua_view_t *c =
      new_udata(L, sizeof(sea_lua_view_t) + sizeof(sea_message_t) + sea_message_extent(m));
  sea_message_t *d = (sea_message_t *)(c + 1); /* aligned for any type, as the rest after it */
  sea_message_copy_to(m, d, d + 1);
  *c = (sea_lua_view_t){.msg = d, .pos_ref = LUA_NOREF};
  luaL_getmetatable(L, SEA_LUA_COPY_MT);
  lua_setmetatable(L, -2);
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
#ifdef SEA_LUA_LIGHT_VIEWS
  bool light = lua_type(L, 1) == LUA_TLIGHTUSERDATA;
  if (light && (v = light_to_view(v)) == NULL) /* another light userdata, such as cjson.null */
    return luaL_error(L, "attempt to index a light userdata value (not a message)");
#endif
  if (v == NULL)
    return luaL_argerror(L, 1, "expected a message");
  size_t len;
  const char *k = luaL_checklstring(L, 2, &len);
  /* The methods work on an expired view too (they say so); k[0] first spares the fields a
   * strcmp each. */
  if (k[0] == 'c' && strcmp(k, "copy") == 0) {
    lua_pushcfunction(L, view_copy);
    return 1;
  }
  if (k[0] == 't' && strcmp(k, "totable") == 0) {
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
      sea_lua_push_u64(L, m->meta.shard_id);
      return 1;
    }
    if (strcmp(k, "seq") == 0) {
      sea_lua_push_seq(L, m->meta.seq);
      return 1;
    }
    if (strcmp(k, "size") == 0) {
      sea_lua_push_u64(L, m->payload.len);
      return 1;
    }
    break;
  case 't':
    if (strcmp(k, "timestamp") == 0) {
      sea_lua_push_u64(L, (uint64_t)m->meta.timestamp_us);
      return 1;
    }
    break;
  case 'h':
    if (strcmp(k, "headers") == 0) { /* one table per message: msg.headers == msg.headers */
#ifdef SEA_LUA_LIGHT_VIEWS
      if (light) {
        push_light_headers(L, v->gen, m);
        return 1;
      }
#endif
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

/* msg:totable(): the fields as a new table, its headers a new table too (not msg.headers, which
 * is cached with the view: a script's changes to either would show in the other). */
static int view_totable(lua_State *L) {
  sea_lua_view_t *v = sea_lua_check_view(L, 1);
  static const char *const fields[] = {"payload", "key", "stream_key", "shard", "seq", "timestamp"};
  lua_createtable(L, 0, 7);
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    lua_pushcfunction(L, view_index);
    lua_pushvalue(L, 1);
    lua_pushstring(L, fields[i]);
    lua_call(L, 2, 1);
    lua_setfield(L, -2, fields[i]);
  }
  push_headers(L, sea_lua_view_msg(L, v));
  lua_setfield(L, -2, "headers");
  return 1;
}

#ifdef SEA_LUA_LIGHT_VIEWS
static void push_light_headers(lua_State *L, uint64_t gen, const sea_message_t *m) {
  lua_pushlightuserdata(L, (void *)&light_headers_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  lua_rawgeti(L, -1, 1);
  bool same_call = lua_tointeger(L, -1) == (lua_Integer)light_cur.lo;
  lua_pop(L, 1);
  if (same_call) {
    lua_rawgeti(L, -1, 2);
  } else { /* a new call: the last one's tables go */
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawseti(L, -3, 2);
    lua_pushinteger(L, (lua_Integer)light_cur.lo);
    lua_rawseti(L, -3, 1);
  }
  lua_Integer k = (lua_Integer)(gen - light_cur.lo) + 1; /* gen is live: one of this call's */
  lua_rawgeti(L, -1, (int)k);
  if (!lua_isnil(L, -1))
    return;
  lua_pop(L, 1);
  push_headers(L, m);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (int)k);
}
#endif

static int view_newindex(lua_State *L) {
#ifdef SEA_LUA_LIGHT_VIEWS
  if (lua_type(L, 1) == LUA_TLIGHTUSERDATA && light_to_view(lua_touserdata(L, 1)) == NULL)
    return luaL_error(L, "attempt to index a light userdata value (not a message)");
#endif
  return luaL_error(L, "a message is read-only (field '%s')", luaL_optstring(L, 2, "?"));
}

static int view_tostring(lua_State *L) {
  sea_lua_view_t *v = sea_lua_to_view(L, 1);
  if (v == NULL && lua_type(L, 1) == LUA_TLIGHTUSERDATA) { /* not a message: as with no metatable */
    lua_pushfstring(L, "userdata: %p", lua_touserdata(L, 1));
    return 1;
  }
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

/* The views' metatables and the registry's table of headers (from luaopen_seastreamer). */
void sea_lua_view_classes(lua_State *L) {
  static const luaL_Reg view_mm[] = {{"__index", view_index},
                                     {"__newindex", view_newindex},
                                     {"__tostring", view_tostring},
                                     {NULL, NULL}};
  for (int copy = 0; copy < 2; copy++) {
    luaL_newmetatable(L, copy ? SEA_LUA_COPY_MT : SEA_LUA_VIEW_MT);
    sea_lua_setfuncs(L, view_mm);
    lua_pushliteral(L, SEA_LUA_VIEW_MT);
    lua_setfield(L, -2, "__metatable");
    lua_pushlightuserdata(L, (void *)&view_tag);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
#ifdef SEA_LUA_LIGHT_VIEWS
  if (!push_light_mt(L)) { /* the light views' metatable (installed by sea_lua_light_begin) */
    lua_createtable(L, 0, 4);
    sea_lua_setfuncs(L, view_mm);
    lua_pushliteral(L, SEA_LUA_VIEW_MT);
    lua_setfield(L, -2, "__metatable");
    lua_pushlightuserdata(L, (void *)&light_mt_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&light_headers_key);
    lua_createtable(L, 2, 0);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pop(L, 1);
#endif
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
}
