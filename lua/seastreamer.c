/* seastreamer.c: the Lua module `require "seastreamer"` over libseastreamer, for Lua 5.4 and LuaJIT
 * from one source: the module table, runtimes, streamers, callbacks and waiting. Its other rooms
 * (module.h): convert.c (options, sequence numbers), view.c (message views), producer.c,
 * consumer.c. */
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

#include "module.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

const char *sea_lua_code_name(int err) {
  const char *n = sea_err_name(err);
  return strncmp(n, "SEA_", 4) == 0 ? n + 4 : n;
}

int sea_lua_fail(lua_State *L, int err, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg && msg[0] ? msg : sea_strerror(err));
  lua_pushstring(L, sea_lua_code_name(err));
  return 3;
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
void sea_lua_call_cb(lrt_t *rt, int nargs) {
  if (lua_pcall(rt->cbL, nargs, 0, 0) != 0)
    callback_error(rt, rt->cbL);
}

/* Resume the coroutine `ref` (unreferenced here) with the nargs values on top of cbL. */
void sea_lua_resume_ref(lrt_t *rt, int ref, int nargs) {
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
 * Waiting for an asynchronous operation: a callback if given, else a yield inside a coroutine,
 * else run the loop until it is done (never inside a callback: that would re-enter the loop).
 * ------------------------------------------------------------------------------------------- */

void sea_lua_waitop_done(void *data, int status) {
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
    sea_lua_call_cb(rt, n);
  } else if (w->co_ref != LUA_NOREF) {
    sea_lua_resume_ref(rt, w->co_ref, n);
  } else {
    lua_pop(L, n);
  }
  if (!w->blocking)
    free(w);
}

waitop_t *sea_lua_waitop_new(lua_State *L, lrt_t *rt, int fn_idx) {
  if (!lua_isnoneornil(L, fn_idx)) /* before the allocation, which a raised error would leak */
    luaL_checktype(L, fn_idx, LUA_TFUNCTION);
  waitop_t *w = calloc(1, sizeof *w);
  if (w == NULL)
    luaL_error(L, "out of memory");
  w->rt = rt;
  w->fn_ref = w->co_ref = LUA_NOREF;
  if (!lua_isnoneornil(L, fn_idx)) {
    lua_pushvalue(L, fn_idx);
    w->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (!sea_lua_isyieldable(L) || L == rt->cbL) {
    /* (cbL runs the loop's callbacks, called from C: 5.1's test takes it for a coroutine) */
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
int sea_lua_waitop_refused(lua_State *L, waitop_t *w, int rc) {
  if (w->fn_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, w->fn_ref);
  free(w);
  return sea_lua_fail(L, rc, lua_tostring(L, -1));
}

int sea_lua_waitop_finish(lua_State *L, waitop_t *w, int rc) {
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

lstreamer_t *sea_lua_check_streamer(lua_State *L, int i) {
  lstreamer_t *st = luaL_checkudata(L, i, STREAMER_MT);
  if (st->s == NULL)
    luaL_argerror(L, i, "streamer is closed");
  return st;
}

static void streamer_close(lstreamer_t *st) {
  if (st->s == NULL)
    return;
  while (st->producers)
    sea_lua_producer_close(st->producers);
  while (st->consumers)
    sea_lua_consumer_close(st->consumers);
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
  lua_pushstring(L, sea_streamer_uri(sea_lua_check_streamer(L, 1)->s)->raw);
  return 1;
}

static int st_backend(lua_State *L) {
  lua_pushstring(L, sea_streamer_backend(sea_lua_check_streamer(L, 1)->s));
  return 1;
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
  sea_lua_push_seq(L, sea_lua_check_seq(L, 1, "seq"));
  return 1;
}

/* seastreamer.seqstring(x): the sequence number x in decimal, exact on every Lua. */
static int l_seqstring(lua_State *L) {
  sea_lua_push_decimal(L, sea_lua_check_seq(L, 1, "seq"));
  return 1;
}

static int l_now(lua_State *L) {
  sea_lua_push_u64(L, (uint64_t)sea_now_us());
  return 1;
}

/* close is the class's close method, also its __close: Lua 5.4's `local x <close> = ...` closes x
 * as x:close() does when the scope is left, by an error too (LuaJIT has no <close> and never
 * reads the field). */
void sea_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
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
  static const luaL_Reg st_m[] = {{"producer", sea_lua_st_producer},
                                  {"consumer", sea_lua_st_consumer},
                                  {"uri", st_uri},
                                  {"backend", st_backend},
                                  {"close", st_close},
                                  {NULL, NULL}};
  sea_lua_new_class(L, RT_MT, rt_m, rt_gc, rt_close);
  sea_lua_new_class(L, STREAMER_MT, st_m, st_close, st_close);
  sea_lua_producer_class(L);
  sea_lua_consumer_class(L);
  sea_lua_view_classes(L);

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
