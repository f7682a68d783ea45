/* run_internal.h: what the rooms of seastreamer.run share (run.c: setup and the pipeline's
 * callbacks; run_out.c; run_call.c; run_process.c; run_jit.c). */
#ifndef SEA_LUA_RUN_INTERNAL_H
#define SEA_LUA_RUN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "run_limits.h"
#include "seastreamer_lua.h"

#define MAX_INPUTS 16
#define MAX_OUTPUTS 16

typedef struct output {
  const char *name; /* NULL for the default output */
  const char *uri;
  sea_streamer_t *s;
  size_t index; /* in the pipeline */
} output_t;

typedef struct input {
  const char *uri;
  sea_streamer_t *s;
} input_t;

typedef struct run {
  lua_State *L;
  sea_runtime_t *rt;
  sea_pipeline_t *pl;
  sea_metrics_t *metrics; /* metrics = "HOST:PORT" (--metrics) */
  const char *script;     /* for messages: the processor's chunk name */
  input_t in[MAX_INPUTS];
  size_t nin;
  output_t out[MAX_OUTPUTS]; /* out[0] is the default output */
  size_t nout;
  output_t *dead; /* the dead-letter output, or NULL */
  int fn_ref, batch_ref, start_ref, tick_ref, stop_ref, out_ref;
  int input_end_ref; /* called once every input has ended, if the processor lingers */
  bool linger;       /* the processor, not the end of the inputs, ends the run (out:stop()) */
  bool hold;         /* messages stay unacknowledged until the next tick or the stop hook */
  sea_on_error_t policy;
  uint64_t tick_ms;
  sea_lua_limits_t lim; /* per call */
  size_t max_kbytes;    /* Lua heap; 0 = none */
  bool in_call;
  bool tripped; /* the call hit a limit: it fails, whatever it does after catching that */
  /* The processor call failed for want of memory (oom_why says so): the run stops at its
   * message whatever the policy, which is left undone with those after it. A state that ran out
   * is not to be trusted to go on: LuaJIT's, after an allocation failed in compiled code, may
   * crash at the next call, and the C side's own Lua calls need the little memory left. */
  bool oom;
  char oom_why[256];
  char send_why[768];           /* sea_run_send_failure's */
  unsigned raised;              /* how many times the hook raised the limit's error in this call */
  char trip_msg[512];           /* the limit's error, with where the call was when it hit it */
  const sea_message_t *cur_msg; /* the message being processed (its key is the default) */
  /* The per-message processor without limits runs in a loop over the batch (the driver): in C
   * on Lua 5.4 (c_loop), in Lua on LuaJIT, which compiles it: driver(n) calls fn(views[i], out)
   * for i = 1..n, sets state[1] = i before each call, sends what call i returned as it returns
   * (through the FFI for a string or the call's own message), and ends early once state[2] is
   * set (out:stop()) or a result was refused (drive.failed_at). */
  bool driven;
  bool jit;        /* LuaJIT: the driver's views are light or FFI structs (see jit_src) */
  uint32_t serial; /* this run among the process's runs (the driver's FFI sends check it) */
  int driver_ref, state_ref;
  int jbatch_ref; /* LuaJIT: the batch processor's wrapper (jit_src) */
  int jviews_ref; /* LuaJIT: the table of a driver call's light views */
  int32_t jat; /* LuaJIT: the driver's call under way, 1-based (0: none), which it sets through the
                * FFI: the one of its light views that is live */
  const sea_message_t *call_msgs; /* the messages of the processor call under way */
  size_t call_count;
  struct sea_run_item *items; /* a returned list, resolved before any of it is sent (malloc) */
  size_t items_cap;
  int32_t *jidx; /* LuaJIT: item k of a batch's result is message jidx[k-1] of the call (0: not
                  * one); the wrapper fills it through the FFI (malloc, jidx_cap entries) */
  size_t jidx_cap, jidx_n;
  struct {            /* the per-message loop's call under way: its messages are call_msgs */
    size_t at;        /* Lua 5.4: the call under way, 1-based (LuaJIT: state[1]) */
    size_t failed_at; /* the result of this call was wrong or refused (0: none) */
    char failure[1024];
  } drive;
  struct { /* a failure at a message after others of the same batch call were handled: the
              pipeline hands it again, alone first, and it is rejected then */
    const sea_batch_t *batch;
    size_t index;
    uint64_t seq;
    char why[1024];
  } pending;
  bool finished;
  bool stop_requested; /* out:stop() was called: stop once the current call returns */
  int status;          /* failures before the pipeline exists */
  char errmsg[1024];
  uv_timer_t tick_timer;
  bool tick_timer_on;
  uv_signal_t sigs[2];
  int nsigs;
} run_t;

extern run_t *sea_run_active;
extern uint64_t sea_run_epoch;
/* run.c */
/* A failure of the run: the pipeline's (it stops) or, before there is one, the run's own. */
void sea_run_error(run_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The run fails at message m of input `input` (why: the cause): it stops, and m and the messages
 * after it stay undone whatever the policy. */
void sea_run_fail_at(run_t *r, size_t input, const sea_message_t *m, const char *why);
void sea_run_after_lua_call(run_t *r);
/* run_out.c */
int sea_run_send_message(run_t *r, output_t *o, const sea_message_t *vm, const char *stream_key);
int sea_run_send_bytes(run_t *r, output_t *o, const char *p, size_t len, const char *stream_key);
int sea_run_out_send(lua_State *L);
int sea_run_out_send_own(lua_State *L);
int sea_run_out_stats(lua_State *L);
const char *sea_run_not_list(lua_State *L, int idx);
const char *sea_run_result_complaint(run_t *r, int idx);
/* An item of a list a processor returned, resolved: a message to forward (m), or bytes. */
typedef struct sea_run_item {
  const sea_message_t *m;
  const char *p;
  size_t len;
} sea_run_item_t;
const char *sea_run_item(lua_State *L, int idx, size_t i, sea_run_item_t *it);
sea_run_item_t *sea_run_items(run_t *r, size_t n);
void *sea_run_room(void *buf, size_t *cap, size_t n, size_t elem);
const char *sea_run_send_items(run_t *r, const sea_run_item_t *it, size_t n);
/* Why a result could not go to output o (rc): the output's own message, which names what was
 * wrong (a delimiter in a stdio payload, a size over max_payload), else the code's; in
 * r->send_why. */
const char *sea_run_send_failure(run_t *r, output_t *o, int rc);
const char *sea_run_send_result(run_t *r, int idx);
int sea_run_out_stop(lua_State *L);
/* run_call.c */
void sea_run_count_hook(lua_State *L, lua_Debug *ar);
int sea_run_limited_call(run_t *r, int nargs, int nres);
const char *sea_run_error_text(lua_State *L);
void sea_run_hook_call(run_t *r, int ref, const char *name, int extra);
/* run_process.c */
const char *sea_run_where_fn(run_t *r, int ref);
int sea_run_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *batch, size_t first,
                    size_t count, void *data);
#ifdef SEA_LUAJIT
/* run_jit.c */
const char *sea_run_send_jbatch(run_t *r, int res, int idx);
int sea_run_jit_wrap(run_t *r, const char *maker, int fn_ref);
/* The driver's or the batch wrapper's call returned: its views expire (run_jit.c). */
void sea_run_jit_expire(run_t *r);
/* Push the light views of a driver call of count messages from msgs and return true (light
 * userdata carry the views' metatable: no view is allocated, not even when the processor calls a
 * C function that LuaJIT does not compile, as an FFI struct then is); or push nil and return
 * false: the driver makes FFI structs. After the call, sea_run_jit_views_end. */
bool sea_run_jit_views(run_t *r, const sea_message_t *msgs, size_t count);
/* The light views of the driver's call of count messages expire; the epoch moves past them. */
void sea_run_jit_views_end(run_t *r, size_t count);
#endif

#endif
