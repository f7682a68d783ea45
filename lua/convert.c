/* convert.c: Lua values to and from C: option tables (sea_lua_options), counts, and sequence
 * numbers exact on every Lua (sea_lua_push_seq, sea_lua_check_seq). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "module.h"

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

/* The first key of the table at t that is not a string of known (NULL-ended): its name, or its
 * type's when it is not a string; NULL when every key is known. */
const char *sea_lua_unknown_field(lua_State *L, int t, const char *const *known) {
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      const char *tn = luaL_typename(L, -1);
      lua_pop(L, 1);
      return tn;
    }
    const char *k = lua_tostring(L, -1);
    size_t i = 0;
    while (known[i] && strcmp(k, known[i]) != 0)
      i++;
    if (known[i] == NULL)
      return k; /* (left on the stack: the name stays alive; the caller raises) */
  }
  return NULL;
}

/* A count, a size or a time: exact as a Lua number (below 2^53) for as long as it matters. */
void sea_lua_push_u64(lua_State *L, uint64_t x) {
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

void sea_lua_push_decimal(lua_State *L, uint64_t x) {
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
void sea_lua_push_seq(lua_State *L, uint64_t x) {
#if LUA_VERSION_NUM >= 503
  if (x <= (uint64_t)LUA_MAXINTEGER)
    lua_pushinteger(L, (lua_Integer)x);
  else
    sea_lua_push_decimal(L, x);
#else
  if (u64_ffi(L)) {
    lua_getfield(L, -1, "u64");
    lua_remove(L, -2);
    lua_call(L, 0, 1); /* a new uint64_t, 0 */
    memcpy((void *)(uintptr_t)lua_topointer(L, -1), &x, sizeof x);
  } else if ((double)x < SEQ_EXACT_LIMIT) {
    lua_pushnumber(L, (lua_Number)x);
  } else {
    sea_lua_push_decimal(L, x);
  }
#endif
}

/* The u64 at index i (a sequence number, or a shard), taken as sea_lua_push_seq's comment says;
 * `what` names the argument in the error. */
uint64_t sea_lua_check_seq(lua_State *L, int i, const char *what) {
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
    if (n < 0)
      why = "is negative";
    else if (!(n >= 0))
      why = "is not a number (NaN)";
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
