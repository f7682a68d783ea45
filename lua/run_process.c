/* run_process.c: the pipeline's processor: a batch handed to Lua, per message (the driver loop:
 * C on Lua 5.4, run_jit.c on LuaJIT) or per batch, and a failure placed at its message. */
#include <stdio.h>

#include "run_internal.h"

#ifndef SEA_LUAJIT
/* Lua 5.4: the loop over the batch is C, one lua_call per message inside one protected call
 * (lua_pcall's setup per message was the larger cost), each message with a view of its own that
 * expires when its call returns (sea_run_epoch moves on). Results go out as each call returns, so
 * an out:send needs no flush. (64-bit: the views are light userdata, seastreamer_lua.h.) A failure
 * leaves drive.at at the failing call, or drive.failed_at at a result that is wrong or refused (the
 * loop then ends). */
static int c_loop(lua_State *L) {
  run_t *r = sea_run_active;
  int base = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
  luaL_getmetatable(L, SEA_LUA_VIEW_MT);
#ifdef SEA_LUA_LIGHT_VIEWS
  /* Light views where light userdata carry the views' metatable: no allocation per message. A
   * call that sets another (a library's debug.setmetatable) gets full views from the next message
   * on: under that metatable a light view would read what it says. */
  bool light = sea_lua_light_begin(L, &sea_run_epoch, 1);
  lua_pushlightuserdata(L, NULL); /* base + 4: a light userdata, to look at its metatable */
  const void *mt = lua_getmetatable(L, -1) ? lua_topointer(L, -1) : NULL;
#endif
  int top = lua_gettop(L);
  for (size_t i = 1; i <= r->call_count; i++) {
    const sea_message_t *m = &r->call_msgs[i - 1];
    r->drive.at = i;
    r->cur_msg = m;
#ifdef SEA_LUA_LIGHT_VIEWS
    if (light && i > 1) /* (what it pushes goes with the call's settop below) */
      light = lua_getmetatable(L, base + 4) && lua_topointer(L, -1) == mt;
#endif
    lua_pushvalue(L, base + 1);
    void *v;
#ifdef SEA_LUA_LIGHT_VIEWS
    if (light)
      v = sea_lua_push_light(L, m, &sea_run_epoch);
    else
#endif
      v = sea_lua_push_view_mt(L, m, &sea_run_epoch, base + 3);
    lua_pushvalue(L, base + 2);
    lua_call(L, 2, 1);
    const char *bad = NULL;
    int rc = 0;
    int type;
    if (lua_touserdata(L, -1) == v) { /* its own message, as it came */
      rc = sea_run_send_message(r, &r->out[0], m, NULL);
    } else if ((type = lua_type(L, -1)) == LUA_TSTRING) { /* sent here, with one look */
      size_t len;
      const char *p = lua_tolstring(L, -1, &len);
      rc = sea_run_send_bytes(r, &r->out[0], p, len, NULL);
    } else if (type != LUA_TNIL) {
      bad = sea_run_send_result(r, lua_gettop(L));
    }
    if (rc != 0)
      bad = sea_run_send_failure(r, &r->out[0], rc);
    sea_run_epoch++; /* the call's view expires */
    if (bad != NULL) {
      r->drive.failed_at = i;
      snprintf(r->drive.failure, sizeof r->drive.failure, "%s %s", sea_run_where_fn(r, r->fn_ref),
               bad);
      break;
    }
    lua_settop(L, top);
    if (r->stop_requested)
      break;
  }
#ifdef SEA_LUA_LIGHT_VIEWS
  sea_lua_light_end();
#endif
  lua_settop(L, base);
  return 0;
}
#endif

/* Where the processor function is defined, for messages about what it returned. */
const char *sea_run_where_fn(run_t *r, int ref) {
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

/* The per-message processor, driven over count messages from first by the Lua loop. */
static int drive(run_t *r, const sea_batch_t *batch, size_t first, size_t count) {
  lua_State *L = r->L;
  r->call_msgs = &batch->msgs[first];
  r->call_count = count;
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
  lua_pushnumber(L, (lua_Number)sea_run_epoch);
  lua_pushlightuserdata(L, (void *)&batch->msgs[first]);
  bool light = sea_run_jit_views(r, &batch->msgs[first], count);
  rc = sea_run_limited_call(r, 4, 0);
  sea_run_jit_expire(r);
  if (light)
    sea_run_jit_views_end(r, count);
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->state_ref);
  lua_rawgeti(L, -1, 1);
  at = (size_t)lua_tointeger(L, -1); /* the last call made (1-based) */
  lua_pushnil(L);
  lua_rawseti(L, -3, 2);
  lua_pop(L, 2);
#else
  lua_pushcfunction(L, c_loop);
  rc = sea_run_limited_call(r, 0, 0);
  at = r->drive.at;
#endif
  if (at == 0)
    at = 1; /* the loop failed before its first call (out of memory): blame the first */
  /* Both loops send each result as its call returns: calls 1..done are handled. */
  size_t done = rc == 0 ? at : at - 1;
  int ret = 0;
  if (r->drive.failed_at) { /* a result was refused: that message fails, the rest come again */
    ret = fail_at(r, batch, first, first + r->drive.failed_at - 1, r->drive.failure);
  } else if (rc != 0) {
    ret = fail_at(r, batch, first, first + at - 1, sea_run_error_text(L));
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
int sea_run_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *batch, size_t first,
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
  r->oom = false;
  if (r->driven) {
    ret = drive(r, batch, first, count);
#ifdef SEA_LUAJIT
  } else if (r->batch_ref != LUA_NOREF && r->jbatch_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->jbatch_ref);
    lua_pushinteger(L, (lua_Integer)count);
    lua_pushnumber(L, (lua_Number)sea_run_epoch);
    lua_pushlightuserdata(L, (void *)&batch->msgs[first]);
    r->call_msgs = &batch->msgs[first];
    r->call_count = count;
    rc = sea_run_limited_call(r, 3, 2);
    sea_run_jit_expire(r); /* its results were checked and converted inside the call */
    if (rc != 0)
      bad = sea_run_error_text(L);
    else if ((bad = sea_run_send_jbatch(r, lua_gettop(L) - 1, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", sea_run_where_fn(r, r->batch_ref), bad);
    r->call_msgs = NULL;
#endif
  } else if (r->batch_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->batch_ref);
    lua_createtable(L, (int)count, 0); /* a new table and new views for each call */
#ifdef SEA_LUA_LIGHT_VIEWS
    bool light = sea_lua_light_begin(L, &sea_run_epoch, count); /* as in c_loop */
    if (light)
      sea_lua_fill_light(L, -1, &batch->msgs[first], count, &sea_run_epoch, NULL);
    else
#endif
      sea_lua_fill_views(L, -1, &batch->msgs[first], count, &sea_run_epoch);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
    rc = sea_run_limited_call(r, 2, 1);
    if (rc != 0)
      bad = sea_run_error_text(L);
    else if ((bad = sea_run_send_result(r, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", sea_run_where_fn(r, r->batch_ref), bad);
#ifdef SEA_LUA_LIGHT_VIEWS
    if (light) { /* the call's views were numbered from the epoch on: past them all */
      sea_lua_light_end();
      sea_run_epoch += count;
    }
#endif
  } else {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
#ifdef SEA_LUA_LIGHT_VIEWS
    if (sea_lua_light_begin(L, &sea_run_epoch, 1)) /* as in c_loop */
      sea_lua_push_light(L, r->cur_msg, &sea_run_epoch);
    else
#endif
      sea_lua_push_view(L, r->cur_msg, &sea_run_epoch);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
    rc = sea_run_limited_call(r, 2, 1);
    if (rc != 0)
      bad = sea_run_error_text(L);
    else if ((bad = sea_run_send_result(r, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", sea_run_where_fn(r, r->fn_ref), bad);
  }
  sea_run_epoch++; /* every view of the call expires */
  r->cur_msg = NULL;
  if (r->oom) {
    /* Out of memory: the run stops at the failing message whatever the policy (run_internal.h);
     * it and those after it stay undone. A driven call that failed after others left it in
     * r->pending (the messages before it are done); otherwise it is the call's first. */
    const sea_message_t *m =
        r->pending.batch == batch ? &batch->msgs[r->pending.index] : &batch->msgs[first];
    sea_run_fail_at(r, input, m, r->oom_why);
    r->pending.batch = NULL;
  }
  if (bad)
    ret = sea_pipeline_reject(pl, "%s", bad); /* after a failure above: nothing of it is done */
  lua_settop(L, base);
  sea_run_after_lua_call(r);
  return ret;
}
