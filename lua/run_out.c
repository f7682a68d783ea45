/* run_out.c: what goes out of a run: the out object (out:send, out:stats, out:stop), and the
 * processor's results, checked and sent to the default output. */
#include <stdlib.h>
#include <string.h>

#include "run_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------------------------- */

/* The stream key for a message sent to o without one: the output's anchor (NULL), else that of
 * the input message m (for a payload the processor made, the message of the call). */
static const char *default_key(run_t *r, output_t *o, const sea_message_t *m) {
  if (sea_producer_anchored(sea_pipeline_output(r->pl, o->index)) || m == NULL)
    return NULL;
  return m->meta.stream_key;
}
/* Send input message vm as it is (its bytes, key, headers and time) to o: with stream_key, else
 * its own (a batch may hold several). */
int sea_run_send_message(run_t *r, output_t *o, const sea_message_t *vm, const char *stream_key) {
  sea_message_t m;
  memset(&m, 0, sizeof m);
  m.meta.timestamp_us = vm->meta.timestamp_us; /* forwarded: keeps its time, as relay */
  m.payload = vm->payload;
  m.key = vm->key;
  m.key_len = vm->key_len;
  m.headers = vm->headers;
  m.header_count = vm->header_count;
  m.meta.stream_key = stream_key ? stream_key : default_key(r, o, vm);
  return sea_pipeline_send(r->pl, o->index, &m, 0);
}

/* Send len bytes at p (a payload the processor made) to o. */
int sea_run_send_bytes(run_t *r, output_t *o, const char *p, size_t len, const char *stream_key) {
  sea_message_t m;
  memset(&m, 0, sizeof m);
  m.payload.data = (const uint8_t *)p;
  m.payload.len = len;
  m.meta.stream_key = stream_key ? stream_key : default_key(r, o, r->cur_msg);
  return sea_pipeline_send(r->pl, o->index, &m, 0);
}

/* Resolve the value at index i, of type t, into it: a string (its bytes stay the value's), or a
 * message still valid. False for anything else. */
static inline bool resolve(lua_State *L, int i, int t, sea_run_item_t *it) {
  it->m = NULL;
  if (t == LUA_TSTRING) {
    it->p = lua_tolstring(L, i, &it->len);
    return true;
  }
  sea_lua_view_t *v = sea_lua_viewish(t) ? sea_lua_to_view(L, i) : NULL;
  it->m = v ? sea_lua_view_msg(L, v) : NULL;
  return it->m != NULL;
}

/* Why a send to output o failed with rc: the output's own message, which names what was wrong,
 * else the code's. */
static const char *output_why(run_t *r, output_t *o, int rc) {
  sea_producer_t *p = r->pl ? sea_pipeline_output(r->pl, o->index) : NULL;
  return p && sea_producer_errmsg(p)[0] ? sea_producer_errmsg(p) : sea_strerror(rc);
}

/* out:send(name, payload [, stream_key]): to the output called name (nil: the default one). own:
 * 0, or (LuaJIT's driver) the payload is the number of the call under way, whose message goes. */
static int out_send(lua_State *L, lua_Integer own) {
  run_t *r = sea_run_active;
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
  const sea_message_t *msg = NULL; /* a message to forward; else the payload is a string */
  if (own != 0) {
    if (r->call_msgs == NULL || own < 1 || (size_t)own > r->call_count)
      return luaL_argerror(L, base, "expected a payload string or a message");
    msg = &r->call_msgs[own - 1];
  } else if (lua_type(L, base) != LUA_TSTRING) {
    sea_lua_view_t *v = sea_lua_to_view(L, base);
    if (v == NULL)
      return luaL_argerror(L, base, "expected a payload string or a message");
    if ((msg = sea_lua_view_msg(L, v)) == NULL)
      return luaL_argerror(L, base,
                           "message used after the call that received it returned (keep "
                           "msg:copy() to use it later)");
  }
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
  if (r->jit && r->driven && r->call_msgs) { /* in the driver: this call's message */
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
    lua_rawgeti(L, -1, 1);
    size_t at = (size_t)lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (at >= 1 && at <= r->call_count)
      r->cur_msg = &r->call_msgs[at - 1];
  }
  int rc;
  if (msg != NULL) {
    rc = sea_run_send_message(r, o, msg, key);
  } else {
    size_t len;
    const char *p = lua_tolstring(L, base, &len);
    rc = sea_run_send_bytes(r, o, p, len, key);
  }
  if (rc != 0)
    return luaL_error(L, "send to %s failed: %s", o->uri, output_why(r, o, rc));
  return 0;
}

int sea_run_out_send(lua_State *L) {
  return out_send(L, 0);
}

/* LuaJIT's driver: out:send(name, i [, stream_key]) for the FFI view of its call i, which it
 * checked is the call under way: its message goes as it is, with no userdata view made for it. */
int sea_run_out_send_own(lua_State *L) {
  return out_send(L, luaL_checkinteger(L, 3));
}

/* out:stats(): the pipeline's counters as --stats reports them, and each input's lag. */
int sea_run_out_stats(lua_State *L) {
  run_t *r = sea_run_active;
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
    sea_lua_push_u64(L, f[i].v);
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
      sea_lua_push_u64(L, lag[e].shard);
      lua_setfield(L, -2, "shard");
      if (lag[e].lag >= 0) {
        sea_lua_push_u64(L, (uint64_t)lag[e].lag);
        lua_setfield(L, -2, "lag");
      }
      if (lag[e].lag_bytes >= 0) {
        sea_lua_push_u64(L, (uint64_t)lag[e].lag_bytes);
        lua_setfield(L, -2, "lag_bytes");
      }
      lua_rawseti(L, -2, ++n);
    }
  }
  lua_setfield(L, -2, "lag");
  return 1;
}

/* NULL if the table at idx is a list and nothing else, else its first other key, described (a
 * table with other keys, a decoded JSON object that was not encoded again, {a = 1}, would
 * otherwise send nothing without a word). */
const char *sea_run_not_list(lua_State *L, int idx) {
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
const char *sea_run_result_complaint(run_t *r, int idx) {
  lua_State *L = r->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TSTRING)
    return NULL;
  if (sea_lua_viewish(t)) {
    sea_lua_view_t *v = sea_lua_to_view(L, idx);
    if (v == NULL || sea_lua_view_msg(L, v) == NULL)
      return "returned a userdata that is not a message (or a message no longer valid)";
    return NULL;
  }
  if (t != LUA_TTABLE)
    return lua_pushfstring(L, "returned a %s (expected nil, a string, a message or a list of them)",
                           lua_typename(L, t));
  const char *key = sea_run_not_list(L, idx);
  if (key != NULL)
    return lua_pushfstring(L,
                           "returned a table that is not a list (it has %s): return nil, a "
                           "string, a message or a list of them",
                           key);
  sea_run_item_t it;
  for (size_t i = 1, n = sea_lua_rawlen(L, idx); i <= n; i++) {
    const char *bad = sea_run_item(L, idx, i, &it);
    if (bad != NULL)
      return bad;
  }
  return NULL;
}

/* Resolve item i of the list at idx into it: a string (its bytes stay the list's), or a message
 * still valid. NULL, or what is wrong with the item. */
const char *sea_run_item(lua_State *L, int idx, size_t i, sea_run_item_t *it) {
  lua_rawgeti(L, idx, (int)i);
  int et = lua_type(L, -1);
  bool ok = resolve(L, -1, et, it);
  lua_pop(L, 1);
  if (ok)
    return NULL;
  return lua_pushfstring(L,
                         "returned a list whose item %d is a %s (expected a string or a message "
                         "still valid)",
                         (int)i, lua_typename(L, et));
}

/* buf, or buf moved, with room for n elements of elem bytes (at least 256; kept for the run,
 * freed in cleanup) and *cap updated; NULL when out of memory (buf stays as it was). */
void *sea_run_room(void *buf, size_t *cap, size_t n, size_t elem) {
  if (n <= *cap && buf != NULL)
    return buf;
  size_t c = n < 256 ? 256 : n;
  void *p = realloc(buf, c * elem);
  if (p != NULL)
    *cap = c;
  return p;
}

/* Room for n resolved items, or NULL when out of memory. */
sea_run_item_t *sea_run_items(run_t *r, size_t n) {
  sea_run_item_t *p = sea_run_room(r->items, &r->items_cap, n, sizeof *p);
  if (p != NULL)
    r->items = p;
  return p;
}

const char *sea_run_send_failure(run_t *r, output_t *o, int rc) {
  snprintf(r->send_why, sizeof r->send_why, "result not sent to %s: %s", o->uri,
           output_why(r, o, rc));
  return r->send_why;
}

/* Send n resolved items to the default output, in order. NULL, or why one was refused (those
 * before it went). */
const char *sea_run_send_items(run_t *r, const sea_run_item_t *it, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = it[i].m ? sea_run_send_message(r, &r->out[0], it[i].m, NULL)
                     : sea_run_send_bytes(r, &r->out[0], it[i].p, it[i].len, NULL);
    if (rc != 0)
      return sea_run_send_failure(r, &r->out[0], rc);
  }
  return NULL;
}

/* Send what a processor call returned (at index idx of the stack). Returns NULL or a complaint. */
const char *sea_run_send_result(run_t *r, int idx) {
  lua_State *L = r->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL)
    return NULL;
  if (t == LUA_TSTRING || sea_lua_viewish(t)) {
    sea_run_item_t it;
    if (!resolve(L, idx, t, &it))
      return sea_run_result_complaint(r, idx);
    return sea_run_send_items(r, &it, 1);
  }
  if (t != LUA_TTABLE || sea_run_not_list(L, idx) != NULL)
    return sea_run_result_complaint(r, idx);
  /* A list is resolved whole before any of it goes: one with a wrong item fails its message with
   * nothing sent, as a wrong single result does. */
  size_t n = sea_lua_rawlen(L, idx);
  sea_run_item_t *it = sea_run_items(r, n);
  if (it == NULL)
    return sea_strerror(SEA_ENOMEM);
  for (size_t i = 0; i < n; i++) {
    const char *bad = sea_run_item(L, idx, i + 1, &it[i]);
    if (bad != NULL)
      return bad;
  }
  return sea_run_send_items(r, it, n);
}

/* out:stop(): end the run as if every input had ended (a source or a script that is done). */
int sea_run_out_stop(lua_State *L) {
  run_t *r = sea_run_active;
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
