/* run_call.c: calling Lua within the limits (--max-instructions, --max-ms, --max-memory): the
 * count hook, the protected call, and the hooks (start, tick, stop, input_end). */
#include <stdio.h>
#include <string.h>

#include "run_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Calling Lua, within limits
 * ------------------------------------------------------------------------------------------- */

/* A call that hit a limit has failed for good: the hook raises the limit's error again at every
 * check until the call returns (a processor that catches it with pcall gets it again within 1000
 * instructions), and sea_run_limited_call reports it whatever the call returned. */
void sea_run_count_hook(lua_State *L, lua_Debug *ar) {
  run_t *r = sea_run_active;
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

/* LuaJIT: an error raised in a function the processor called as its last act (`return
 * string.rep(...)`, `return cjson.encode(t)`: a tail call, whose caller's frame is gone) is
 * placed by LuaJIT at the call in the driver's loop (run_jit.c) and named after the driver's
 * local ('fn'). Put it back at the processor's definition, saying so. The message is at 1. */
static int driver_tail(lua_State *L) {
  static const char chunk[] = "seastreamer.run driver:";
  const char *e = lua_tostring(L, 1);
  run_t *r = sea_run_active;
  if (r == NULL || strncmp(e, chunk, sizeof chunk - 1) != 0)
    return 1;
  const char *rest = e + sizeof chunk - 1;
  while (*rest >= '0' && *rest <= '9')
    rest++;
  if (rest[0] != ':' || rest[1] != ' ')
    return 1;
  rest += 2;
  int ref = r->batch_ref != LUA_NOREF ? r->batch_ref : r->fn_ref;
  if (ref == LUA_NOREF)
    return 1;
  const char *named = strstr(rest, " to 'fn'");
  const char *where = sea_run_where_fn(r, ref);
  if (named != NULL) { /* bad argument #2 to 'fn' (...): which function is not known */
    lua_pushlstring(L, rest, (size_t)(named - rest));
    lua_pushfstring(L, "%s, in the function it tail-called (return f(...)): %s%s", where,
                    lua_tostring(L, -1), named + 8);
  } else {
    lua_pushfstring(L, "%s, in the function it tail-called (return f(...)): %s", where, rest);
  }
  return 1;
}

/* The message handler of the runner's protected calls: an error that is not a string becomes
 * one, so that every failure can be reported with where it happened. Its __tostring if it has
 * one (called protected); else its type, or a number's digits, after the position of the Lua
 * code that raised it (error({...}), error() and 5.4's error(7) add none). A string stays as it
 * is. */
int sea_lua_error_handler(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING)
    return driver_tail(L);
  const char *why = "";
  if (lua_type(L, 1) != LUA_TNUMBER && luaL_getmetafield(L, 1, "__tostring")) {
    lua_pushvalue(L, 1); /* protected: a __tostring that raises is reported, not a new error */
    if (lua_pcall(L, 1, 1, 0) == 0 && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    lua_pop(L, 1);
    why = ", whose __tostring failed";
  }
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
      break;
    }
  }
  if (lua_type(L, -1) != LUA_TSTRING)
    lua_pushliteral(L, "");
  if (lua_type(L, 1) == LUA_TNUMBER) /* error(7): 5.4 gives no position to a number (5.1 does) */
    lua_pushfstring(L, "%s%s", lua_tostring(L, -1), lua_tostring(L, 1));
  else
    lua_pushfstring(L, "%s(error object is a %s value%s)", lua_tostring(L, -1), luaL_typename(L, 1),
                    why);
  return 1;
}

const char sea_lua_memory_limit_key = 0;

/* Call the function under nargs arguments with nres results, protected and within limits. On
 * failure the error message is on the stack; returns the pcall status. */
int sea_run_limited_call(run_t *r, int nargs, int nres) {
  lua_State *L = r->L;
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, sea_lua_error_handler);
  lua_insert(L, fn);
  sea_lua_limits_arm(&r->lim);
  r->tripped = false;
  r->in_call = true;
  int rc = lua_pcall(L, nargs, nres, fn);
  r->in_call = false;
  lua_remove(L, fn);
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
    r->oom = true;
    lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)&sea_lua_memory_limit_key); /* the runner's --max-memory */
    lua_rawget(L, LUA_REGISTRYINDEX);
    const char *limit = lua_tostring(L, -1);
    snprintf(r->oom_why, sizeof r->oom_why, "%s: not enough memory (%s)", r->script,
             limit ? limit : "an allocation failed");
    lua_pop(L, 1);
    lua_pushstring(L, r->oom_why);
  }
  return rc;
}

const char *sea_run_error_text(lua_State *L) {
  const char *e = lua_tostring(L, -1);
  return e ? e : "(error object is not a string)"; /* the handler failed: out of memory */
}

/* A hook (start, tick, stop, input_end) failed: that is fatal whatever the policy. */
void sea_run_hook_call(run_t *r, int ref, const char *name, int extra) {
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
  if (sea_run_limited_call(r, n, 0) != 0) {
    sea_run_error(r, SEA_EINVAL, "%s hook failed: %s", name, sea_run_error_text(L));
    lua_pop(L, 1);
  } else {
    sea_run_after_lua_call(r);
  }
}
