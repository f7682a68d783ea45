/* seastreamer_lua.h: what the Lua module (seastreamer.c) shares with the processor runner (run.c).
 */
#ifndef SEA_LUA_H
#define SEA_LUA_H

#include <stdbool.h>
#include <stdint.h>

#include <seastreamer/seastreamer.h>

#include "compat.h"

#define SEA_LUA_VIEW_MT "seastreamer.message"
#define SEA_LUA_COPY_MT "seastreamer.message.copy" /* msg:copy(): its message and bytes inside */

/* A read-only view of one C message, valid only during the call that received it. A view is never
 * pointed at another message: a new one is made for each, so a view kept past its call can only
 * raise the error, never show a later message. It expires when msg is set to NULL (the module's
 * consumer, at the next c:next()) or, for views of one call of the runner, all at once when the
 * counter *epoch moves past gen; views the runner's driver loop hands out one call each (pos > 0)
 * are also valid only while their call is the current one: while state[1] == pos, state being the
 * table registry[pos_ref]. msg:copy() makes a view whose message and bytes lie in its own
 * userdata (it never expires).
 * msg.headers is built on first read and cached with the view (a weak table), so plain views have
 * no finalizer: making one costs an allocation and nothing when it is collected. */
typedef struct sea_lua_view {
  const sea_message_t *msg;
  const uint64_t *epoch; /* NULL: valid while msg is set */
  uint64_t gen;
  lua_Integer pos; /* 0, or its call's number in the driver's loop */
  int pos_ref;     /* with pos: the driver's state table */
} sea_lua_view_t;

/* Light views (64-bit: Lua 5.4, and LuaJIT's per-message driver): the runner's calls
 * (run_process.c), per message or per batch, get light userdata whose value is a tag bit | a
 * number instead of new full userdata (or FFI structs), so a message costs no allocation and no
 * collector work. A call's views are numbered from the epoch at the call (one per message of a
 * batch), and the runner moves the epoch past them when the call returns, so a number is never
 * handed out twice. Only the last call's views can be valid: they show their messages while
 * *epoch is still what it was at the call (and, given at, only the one of message *at - 1: the
 * LuaJIT driver's call under way), and raise the expiry error after, as a full view does. Light
 * userdata share one metatable per state: sea_lua_light_begin installs the views' one when there
 * is none and tells whether it is in place (a library of the script may have set its own: full
 * views then); every other light userdata (cjson.null) behaves under it as under none, but for
 * what getmetatable() gives. LuaJIT keeps a table of the upper 25 bits of every light userdata
 * value it has seen, 255 at most for a process: the views' numbers use 16 of them (epochs below
 * 2^43), and sea_lua_light_begin says no past that. */
#if (LUA_VERSION_NUM >= 504 || defined(SEA_LUAJIT)) && UINTPTR_MAX > 0xffffffffu
#define SEA_LUA_LIGHT_VIEWS 1
/* Install the light views' metatable if light userdata have none; true if it is the one and the
 * numbers of n views from *epoch on can be light (LuaJIT). */
bool sea_lua_light_begin(lua_State *L, const uint64_t *epoch, size_t n);
/* Push the light views' metatable (a table, made by luaopen_seastreamer). */
void sea_lua_push_light_mt(lua_State *L);
/* Push a light view of m (sea_lua_light_begin said yes), valid while *epoch stays what it is now;
 * returns its value, as lua_touserdata gives it back. The light view pushed before expires. */
void *sea_lua_push_light(lua_State *L, const sea_message_t *m, const uint64_t *epoch);
/* The same for a batch: light views of msgs[0 .. n - 1] as items 1 .. n of the table at t, valid
 * while *epoch stays what it is now, numbered *epoch .. *epoch + n - 1: the caller moves *epoch
 * past them after the call. at NULL: all of them; else only item *at (the others are expired).
 * The light views pushed before expire. */
void sea_lua_fill_light(lua_State *L, int t, const sea_message_t *msgs, size_t n,
                        const uint64_t *epoch, const int32_t *at);
/* No light view is valid any more (its call or the run ended). The metatable stays, so that a
 * kept view still raises the expiry error. */
void sea_lua_light_end(void);
#endif

/* Whether a value of Lua type t may be a message view (full, or light). */
static inline bool sea_lua_viewish(int t) {
  return t == LUA_TUSERDATA || t == LUA_TLIGHTUSERDATA;
}

/* The message v shows, or NULL once it expired. */
static inline const sea_message_t *sea_lua_view_msg(lua_State *L, const sea_lua_view_t *v) {
  if (v->epoch != NULL && *v->epoch != v->gen)
    return NULL;
  if (v->pos != 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, v->pos_ref);
    lua_rawgeti(L, -1, 1);
    lua_Integer cur = lua_tointeger(L, -1);
    lua_pop(L, 2);
    if (cur != v->pos)
      return NULL;
  }
  return v->msg;
}

/* Push a new view of m, valid while *epoch stays what it is now (epoch NULL: until
 * its msg is set to NULL). */
sea_lua_view_t *sea_lua_push_view(lua_State *L, const sea_message_t *m, const uint64_t *epoch);
/* The same with the views' metatable already at index mt (SEA_LUA_VIEW_MT), for a loop. */
sea_lua_view_t *sea_lua_push_view_mt(lua_State *L, const sea_message_t *m, const uint64_t *epoch,
                                     int mt);
/* Set t[1..n] (the table at index t) to new views of msgs[0..n), valid while *epoch stays. */
void sea_lua_fill_views(lua_State *L, int t, const sea_message_t *msgs, size_t n,
                        const uint64_t *epoch);
/* registry[&sea_lua_memory_limit_key]: what limits the state's allocator (the runner's
 * "memory limit reached: --max-memory N MB"), said with the memory error of a processor call. */
extern const char sea_lua_memory_limit_key;
/* LuaJIT: registry[&sea_lua_jview_key] is the runner's converter of its FFI views (run.c) to
 * userdata views, which sea_lua_to_view applies to a cdata argument. */
extern const char sea_lua_jview_key;
/* The view at index i (a view or a copy, valid or expired; a cdata view of the LuaJIT runner is
 * replaced there by its userdata view), or NULL if i is not one. */
sea_lua_view_t *sea_lua_to_view(lua_State *L, int i);
/* The view at index i, or raise a clear argument error (not a message, or expired). */
sea_lua_view_t *sea_lua_check_view(lua_State *L, int i);
/* Push nil, "message", "CODE" and return 3. */
int sea_lua_fail(lua_State *L, int err, const char *msg);
/* Parse a table of string options at index i into a new sea_options_t (NULL when i is nil). */
sea_options_t *sea_lua_options(lua_State *L, int i);
/* convert.c: the first key of the table at t that is not one of known (NULL-ended), or NULL. */
const char *sea_lua_unknown_field(lua_State *L, int t, const char *const *known);
/* A count, a size or a shard (convert.c): an integer on 5.4, a number on LuaJIT. */
void sea_lua_push_u64(lua_State *L, uint64_t x);
/* The module's open function (also preloaded by the runner). */
SEA_EXTERN int luaopen_seastreamer(lua_State *L);
/* seastreamer.run{...}: the processor pipeline (run.c), registered in the module table. */
int sea_lua_run(lua_State *L);
/* The message handler of the runner's protected calls (run_call.c): an error object that is not
 * a string becomes one, with where it was raised. */
int sea_lua_error_handler(lua_State *L);

#endif
