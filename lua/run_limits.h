/* run_limits.h: the per-call budget that --max-instructions and --max-ms give a Lua call, shared by
 * the runner's processor calls (run.c) and the loading of the script (runner.c). Both check it
 * from a count hook that runs every 1000 VM instructions. */
#ifndef SEA_LUA_RUN_LIMITS_H
#define SEA_LUA_RUN_LIMITS_H

#include <stdint.h>
#include <uv.h>

typedef struct sea_lua_limits {
  uint64_t max_instructions; /* 0 = none */
  uint64_t max_ms;           /* 0 = none */
  uint64_t budget;           /* instructions left in this call */
  uint64_t deadline_ns;      /* uv_hrtime() past which this call is over its time */
} sea_lua_limits_t;

/* A call begins: its whole budget again. */
static inline void sea_lua_limits_arm(sea_lua_limits_t *l) {
  l->budget = l->max_instructions;
  if (l->max_ms) { /* (a limit past the clock's range is no limit: it saturates) */
    uint64_t now = uv_hrtime();
    l->deadline_ns =
        l->max_ms > (UINT64_MAX - now) / 1000000u ? UINT64_MAX : now + l->max_ms * 1000000u;
  }
}

/* From the count hook (every 1000 instructions): NULL while within the limits, else "instruction"
 * or "time", with *limit the limit that was hit. */
static inline const char *sea_lua_limits_check(sea_lua_limits_t *l, uint64_t *limit) {
  if (l->max_instructions) {
    if (l->budget <= 1000) {
      *limit = l->max_instructions;
      return "instruction";
    }
    l->budget -= 1000;
  }
  if (l->max_ms && uv_hrtime() > l->deadline_ns) {
    *limit = l->max_ms;
    return "time";
  }
  return NULL;
}

#endif
