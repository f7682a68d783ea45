/* seastreamer_lua.h: what the Lua module (seastreamer.c) shares with the processor runner (run.c).
 */
#ifndef SEA_LUA_H
#define SEA_LUA_H

#include <seastreamer/seastreamer.h>

#include "compat.h"

#define SEA_LUA_VIEW_MT "seastreamer.message"
#define SEA_LUA_BATCH_MT "seastreamer.batch"

/* A read-only view of one C message. msg is NULL once the call that received it has returned
 * (unless the view owns a copy, made by msg:copy()). Point a view at another message only with
 * sea_lua_view_point, which drops what was cached for the message before. */
typedef struct sea_lua_view {
  const sea_message_t *msg;
  sea_message_t *owned; /* a sea_message_dup this view frees, or NULL */
  int headers_ref;      /* msg.headers, built on the first read, or LUA_NOREF */
} sea_lua_view_t;

/* A read-only view of a batch, valid during the call (batch mode of the runner). */
typedef struct sea_lua_batch {
  const sea_batch_t *batch;
  size_t first, count; /* the slice [first, first+count) of batch->msgs the call sees */
  int cache_ref;       /* a table of views reused call after call (runner), or LUA_NOREF */
} sea_lua_batch_t;

/* Push a new view of m (not owned). */
sea_lua_view_t *sea_lua_push_view(lua_State *L, const sea_message_t *m);
/* Point v at m (NULL: the call that received it returned), dropping what v cached for the
 * message it showed before. */
void sea_lua_view_point(lua_State *L, sea_lua_view_t *v, const sea_message_t *m);
/* The view at index i, or raise a clear argument error. */
sea_lua_view_t *sea_lua_check_view(lua_State *L, int i);
/* Push nil, "message", "CODE" and return 3. */
int sea_lua_fail(lua_State *L, int err, const char *msg);
/* Parse a table of string options at index i into a new sea_options_t (NULL when i is nil). */
sea_options_t *sea_lua_options(lua_State *L, int i);
/* The module's open function (also preloaded by the runner). */
SEA_EXTERN int luaopen_seastreamer(lua_State *L);
/* seastreamer.run{...}: the processor pipeline (run.c), registered in the module table. */
int sea_lua_run(lua_State *L);

#endif
