/* compat.h: the few Lua C API differences between 5.1/LuaJIT and 5.4 that the module touches. */
#ifndef SEA_LUA_COMPAT_H
#define SEA_LUA_COMPAT_H

#include <lauxlib.h>
#include <lua.h>

/* LuaJIT: the build says so (SEA_LUAJIT); built by LuaRocks against LuaJIT's headers it does
 * not: look. */
#if !defined(SEA_LUAJIT) && LUA_VERSION_NUM == 501 && defined(__has_include)
#if __has_include(<luajit.h>)
#define SEA_LUAJIT 1
#endif
#endif
#ifdef SEA_LUAJIT
#include <luajit.h>
#endif

#if LUA_VERSION_NUM >= 502
#define sea_lua_rawlen(L, i) lua_rawlen(L, i)
#define sea_lua_setfuncs(L, l) luaL_setfuncs(L, l, 0)
#define sea_lua_newlib(L, l) luaL_newlib(L, l)
#define sea_lua_isyieldable(L) lua_isyieldable(L)
static inline int sea_lua_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
#if LUA_VERSION_NUM >= 504
  return lua_resume(co, from, nargs, nres);
#else
  int rc = lua_resume(co, from, nargs);
  *nres = lua_gettop(co);
  return rc;
#endif
}
#else /* Lua 5.1 and LuaJIT */
#define sea_lua_rawlen(L, i) lua_objlen(L, i)
static inline void sea_lua_setfuncs(lua_State *L, const luaL_Reg *l) {
  for (; l->name != NULL; l++) {
    lua_pushcfunction(L, l->func);
    lua_setfield(L, -2, l->name);
  }
}
#define sea_lua_newlib(L, l) (lua_newtable(L), sea_lua_setfuncs(L, l))
/* 5.1 has no lua_isyieldable: a coroutine is any thread other than the main one, which
 * lua_pushthread reports by returning 1. */
static inline int sea_lua_isyieldable(lua_State *L) {
  int main = lua_pushthread(L);
  lua_pop(L, 1);
  return !main;
}
static inline int sea_lua_resume(lua_State *co, lua_State *from, int nargs, int *nres) {
  (void)from;
  int rc = lua_resume(co, nargs);
  *nres = lua_gettop(co);
  return rc;
}
#endif

#endif
