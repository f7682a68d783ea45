/* run.c: seastreamer.run{...}: a Lua processor on the host's pipeline (sea_pipeline_*), which
 * consumes, batches, produces, acknowledges and commits (docs/delivery.md). What is Lua's stays
 * here: the message views, the processor's results, out:send/out:stop, the hooks and the limits.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
  const char *script; /* for messages: the processor's chunk name */
  input_t in[MAX_INPUTS];
  size_t nin;
  output_t out[MAX_OUTPUTS]; /* out[0] is the default output */
  size_t nout;
  output_t *dead; /* the dead-letter output, or NULL */
  int fn_ref, batch_ref, start_ref, tick_ref, stop_ref, out_ref, view_ref, bview_ref;
  int input_end_ref; /* called once every input has ended, if the processor lingers */
  bool linger;       /* the processor, not the end of the inputs, ends the run (out:stop()) */
  sea_on_error_t policy;
  uint64_t tick_ms;
  sea_lua_limits_t lim; /* per call */
  size_t max_kbytes;    /* Lua heap; 0 = none */
  bool in_call;
  bool tripped;       /* the call hit a limit: it fails, whatever it does after catching that */
  unsigned raised;    /* how many times the hook raised the limit's error in this call */
  char trip_msg[512]; /* the limit's error, with where the call was when it hit it */
  const sea_message_t *cur_msg; /* the message being processed (its key is the default) */
  sea_lua_view_t *view;         /* the reusable view handed to the per-message processor */
  sea_lua_view_t **bviews;      /* batch mode: reusable views, anchored in the table bviews_ref */
  size_t nbviews;
  int bviews_ref;
  int view_mt_ref; /* the views' metatable, to recognise a view without a lookup by name */
  bool finished;
  bool stop_requested; /* out:stop() was called: stop once the current call returns */
  int status;          /* failures before the pipeline exists */
  char errmsg[1024];
  uv_timer_t tick_timer;
  bool tick_timer_on;
  uv_signal_t sigs[2];
  int nsigs;
} run_t;

static run_t *active_run; /* the count hook finds its budget here (one run per process) */

/* A failure of the run: the pipeline's (it stops) or, before there is one, the run's own. */
static void run_error(run_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_error(run_t *r, int status, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (r->pl) {
    sea_pipeline_fail(r->pl, status, "%s", msg);
  } else if (r->status == 0) {
    r->status = status;
    snprintf(r->errmsg, sizeof r->errmsg, "%s", msg);
  }
}

/* out:stop() takes effect once the Lua call that made it returned. */
static void after_lua_call(run_t *r) {
  if (r->stop_requested && r->pl)
    sea_pipeline_stop(r->pl);
}

/* ---------------------------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------------------------- */

/* The stream key for a payload the processor returned: the output's anchor, else the input
 * message's own key. */
static const char *default_key(run_t *r, output_t *o) {
  if (sea_producer_anchored(sea_pipeline_output(r->pl, o->index)) || r->cur_msg == NULL)
    return NULL;
  return r->cur_msg->meta.stream_key;
}
/* Send the value at index i (a string or a message view) to o. Returns 0 or raises/returns err. */
static int send_value(run_t *r, output_t *o, int i, const char *stream_key) {
  lua_State *L = r->L;
  sea_message_t m;
  memset(&m, 0, sizeof m);
  if (lua_type(L, i) == LUA_TSTRING) {
    size_t len;
    m.payload.data = (const uint8_t *)lua_tolstring(L, i, &len);
    m.payload.len = len;
  } else {
    /* The view the call received is the common case: known without a metatable lookup. */
    sea_lua_view_t *v = lua_touserdata(L, i);
    if (v != NULL && v != r->view) {
      bool is_view = false;
      if (lua_getmetatable(L, i)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->view_mt_ref);
        is_view = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
      }
      if (!is_view)
        v = NULL;
    }
    if (v == NULL || v->msg == NULL)
      return SEA_EINVAL;
    m.meta.timestamp_us = v->msg->meta.timestamp_us; /* forwarded: keeps its time, as relay */
    m.payload = v->msg->payload;
    m.key = v->msg->key;
    m.key_len = v->msg->key_len;
    m.headers = v->msg->headers;
    m.header_count = v->msg->header_count;
  }
  m.meta.stream_key = stream_key ? stream_key : default_key(r, o);
  return sea_pipeline_send(r->pl, o->index, &m, 0);
}

/* out:send(name, payload [, stream_key]): to the output called name (nil: the default one). */
static int out_send(lua_State *L) {
  run_t *r = active_run;
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
  if (lua_type(L, base) != LUA_TSTRING && sea_lua_testudata(L, base, SEA_LUA_VIEW_MT) == NULL)
    return luaL_argerror(L, base, "expected a payload string or a message");
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
  int rc = send_value(r, o, base, key);
  if (rc != 0) {
    sea_producer_t *p = sea_pipeline_output(r->pl, o->index);
    return luaL_error(L, "send to %s failed: %s", o->uri,
                      sea_producer_errmsg(p)[0] ? sea_producer_errmsg(p) : sea_strerror(rc));
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Calling Lua, within limits
 * ------------------------------------------------------------------------------------------- */

/* A call that hit a limit has failed for good: the hook raises the limit's error again at every
 * check until the call returns (a processor that catches it with pcall gets it again within 1000
 * instructions), and limited_call reports it whatever the call returned. */
static void count_hook(lua_State *L, lua_Debug *ar) {
  run_t *r = active_run;
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

/* Call the function under nargs arguments with nres results, protected and within limits. On
 * failure the error message is on the stack; returns the pcall status. */
static int limited_call(run_t *r, int nargs, int nres) {
  lua_State *L = r->L;
  sea_lua_limits_arm(&r->lim);
  r->tripped = false;
  r->in_call = true;
  int rc = lua_pcall(L, nargs, nres, 0);
  r->in_call = false;
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
    lua_pop(L, 1);
    lua_pushfstring(L, "%s: not enough memory (memory limit reached)", r->script);
  }
  return rc;
}

static const char *error_text(lua_State *L) {
  const char *e = lua_tostring(L, -1);
  return e ? e : "(error object is not a string)";
}

/* A hook (start, tick, stop, input_end) failed: that is fatal whatever the policy. */
static void hook_call(run_t *r, int ref, const char *name, int extra) {
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
  if (limited_call(r, n, 0) != 0) {
    run_error(r, SEA_EINVAL, "%s hook failed: %s", name, error_text(L));
    lua_pop(L, 1);
  } else {
    after_lua_call(r);
  }
}

/* Send what a processor call returned (at index idx of the stack). Returns NULL or a complaint. */
static const char *send_result(run_t *r, int idx) {
  lua_State *L = r->L;
  int t = lua_type(L, idx);
  if (t == LUA_TNIL)
    return NULL;
  if (t == LUA_TSTRING || t == LUA_TUSERDATA) {
    int rc = send_value(r, &r->out[0], idx, NULL);
    if (rc == SEA_EINVAL)
      return "returned a userdata that is not a message (or a message no longer valid)";
    if (rc != 0)
      return sea_strerror(rc);
    return NULL;
  }
  if (t == LUA_TTABLE) {
    size_t n = sea_lua_rawlen(L, idx), entries = 0;
    /* A list and nothing else: a table with other keys (a decoded JSON object that was not
     * encoded again, {a = 1}) would otherwise send nothing without a word. */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      lua_pop(L, 1);
      if (++entries > n || lua_type(L, -1) != LUA_TNUMBER) {
        const char *bad = lua_type(L, -1) == LUA_TSTRING
                              ? lua_pushfstring(L, "the key '%s'", lua_tostring(L, -1))
                              : lua_pushfstring(L, "a key of type %s", luaL_typename(L, -1));
        return lua_pushfstring(L,
                               "returned a table that is not a list (it has %s): return nil, a "
                               "string, a message or a list of them",
                               bad);
      }
    }
    for (size_t i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, (int)i);
      int et = lua_type(L, -1);
      int rc = (et == LUA_TSTRING || et == LUA_TUSERDATA)
                   ? send_value(r, &r->out[0], lua_gettop(L), NULL)
                   : SEA_EINVAL;
      lua_pop(L, 1);
      if (rc == SEA_EINVAL)
        return lua_pushfstring(L,
                               "returned a list whose item %d is a %s (expected a string or a "
                               "message still valid)",
                               (int)i, lua_typename(L, et));
      if (rc != 0)
        return sea_strerror(rc);
    }
    return NULL;
  }
  return lua_pushfstring(L, "returned a %s (expected nil, a string, a message or a list of them)",
                         lua_typename(L, t));
}

/* Where the processor function is defined, for messages about what it returned. */
static const char *where_fn(run_t *r, int ref) {
  lua_State *L = r->L;
  lua_Debug ar;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_getinfo(L, ">S", &ar);
  return lua_pushfstring(L, "%s:%d: processor", ar.short_src, ar.linedefined);
}

/* Point the first n reusable batch views at batch->msgs[first...], growing the set if needed. */
static bool fill_bviews(run_t *r, const sea_batch_t *batch, size_t first, size_t n) {
  lua_State *L = r->L;
  if (n > r->nbviews) {
    sea_lua_view_t **nv = realloc(r->bviews, n * sizeof *nv);
    if (nv == NULL)
      return false;
    r->bviews = nv;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->bviews_ref);
    for (size_t k = r->nbviews; k < n; k++) {
      r->bviews[k] = sea_lua_push_view(L, NULL);
      lua_rawseti(L, -2, (int)k + 1);
    }
    lua_pop(L, 1);
    r->nbviews = n;
  }
  for (size_t k = 0; k < n; k++)
    sea_lua_view_point(L, r->bviews[k], &batch->msgs[first + k]);
  return true;
}

/* The pipeline's processor: count messages from first (one, unless the script has a batch
 * function). Errors become the pipeline's rejections, and its error policy applies. */
static int lua_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *batch, size_t first,
                       size_t count, void *data) {
  run_t *r = data;
  lua_State *L = r->L;
  int base = lua_gettop(L);
  int rc;
  const char *bad = NULL;
  r->cur_msg = &batch->msgs[first];
  if (r->batch_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->batch_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->bview_ref);
    sea_lua_batch_t *bv = lua_touserdata(L, -1);
    bv->batch = batch;
    bv->first = first;
    bv->count = count;
    if (!fill_bviews(r, batch, first, count)) {
      lua_settop(L, base);
      r->cur_msg = NULL;
      sea_pipeline_fail(pl, SEA_ENOMEM, "out of memory for a batch of %zu views", count);
      return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
    rc = limited_call(r, 2, 1);
    bv->batch = NULL;
    if (rc != 0)
      bad = error_text(L);
    else if ((bad = send_result(r, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", where_fn(r, r->batch_ref), bad);
    for (size_t k = 0; k < count; k++) /* what it returned has been sent */
      sea_lua_view_point(L, r->bviews[k], NULL);
  } else {
    sea_lua_view_t *v = r->view;
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->view_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
    sea_lua_view_point(L, v, r->cur_msg);
    rc = limited_call(r, 2, 1);
    if (rc != 0)
      bad = error_text(L);
    else if ((bad = send_result(r, lua_gettop(L))) != NULL)
      bad = lua_pushfstring(L, "%s %s", where_fn(r, r->fn_ref), bad);
    sea_lua_view_point(L, v, NULL);
  }
  r->cur_msg = NULL;
  int ret = bad ? sea_pipeline_reject(pl, "%s", bad) : 0;
  lua_settop(L, base);
  after_lua_call(r);
  return ret;
}

static void on_skipped(sea_pipeline_t *pl, size_t input, const sea_message_t *m, const char *why,
                       void *data) {
  run_t *r = data;
  fprintf(stderr, "seastreamer run: %s message %s | %llu of %s: %s\n",
          r->policy == SEA_ON_ERROR_SKIP ? "skipped" : "dead-lettered", m->meta.stream_key,
          (unsigned long long)m->meta.seq, r->in[input].uri, why);
}

static void on_stopping(sea_pipeline_t *pl, void *data) {
  run_t *r = data;
  if (r->tick_timer_on)
    uv_timer_stop(&r->tick_timer);
  for (int i = 0; i < r->nsigs; i++)
    uv_signal_stop(&r->sigs[i]);
  hook_call(r, r->stop_ref, "stop", 0);
}

static void on_inputs_ended(sea_pipeline_t *pl, void *data) {
  run_t *r = data;
  hook_call(r, r->input_end_ref, "input_end", 0);
}

static void on_done(sea_pipeline_t *pl, int status) {
  run_t *r = sea_pipeline_get_data(pl);
  r->finished = true;
  if (r->tick_timer_on)
    uv_timer_stop(&r->tick_timer);
  sea_runtime_stop(r->rt);
}

static void on_tick(uv_timer_t *t) {
  run_t *r = t->data;
  if (!r->finished)
    hook_call(r, r->tick_ref, "tick", 1);
}

static void on_signal(uv_signal_t *h, int signum) {
  run_t *r = h->data;
  sea_pipeline_stop(r->pl);
}

/* out:stop(): end the run as if every input had ended (a source or a script that is done). */
static int out_stop(lua_State *L) {
  if (active_run)
    active_run->stop_requested = true;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Setup: seastreamer.run{ processor, inputs = {...}, outputs = {URI, name = URI},
 *   on_error = "stop"|"skip"|"dead-letter", dead_letter = URI, input_options = {...},
 *   output_options = {...}, tick_ms, max_instructions, max_ms, max_memory_kb, name, signals,
 *   exactly_once, transactional_id }
 * ------------------------------------------------------------------------------------------- */

static uint64_t opt_u64(lua_State *L, const char *field) {
  lua_getfield(L, 1, field);
  lua_Number n = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  if (n < 0)
    luaL_error(L, "seastreamer.run: %s must not be negative", field);
  return (uint64_t)n;
}

static int fn_field(lua_State *L, int t, const char *name, const char *script) {
  lua_getfield(L, t, name);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (lua_type(L, -1) != LUA_TFUNCTION)
    luaL_error(L, "%s: the processor's '%s' is a %s, expected a function", script, name,
               luaL_typename(L, -1));
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

static void cleanup(run_t *r) {
  lua_State *L = r->L;
  /* The pipeline closes the producers (canceling what is unconfirmed) and the consumers. */
  sea_pipeline_free(r->pl);
  r->pl = NULL;
  for (size_t i = 0; i < r->nin; i++)
    if (r->in[i].s)
      sea_streamer_close(r->in[i].s);
  for (size_t i = 0; i < r->nout; i++)
    if (r->out[i].s)
      sea_streamer_close(r->out[i].s);
  if (r->tick_timer_on)
    uv_close((uv_handle_t *)&r->tick_timer, NULL);
  for (int i = 0; i < r->nsigs; i++)
    uv_close((uv_handle_t *)&r->sigs[i], NULL);
  sea_runtime_run(r->rt, SEA_RUN_NOWAIT);
  sea_runtime_free(r->rt);
  int refs[] = {r->fn_ref,        r->batch_ref,  r->start_ref,  r->tick_ref,
                r->stop_ref,      r->out_ref,    r->view_ref,   r->bview_ref,
                r->input_end_ref, r->bviews_ref, r->view_mt_ref};
  free(r->bviews);
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
    luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
  active_run = NULL;
}

static int open_output(run_t *r, output_t *o, const sea_options_t *oo) {
  sea_producer_t *p = NULL;
  int rc = sea_connect(r->rt, o->uri, oo, &o->s);
  if (rc == 0)
    rc = sea_producer_open(o->s, NULL, &p);
  if (rc != 0) {
    run_error(r, rc, "output %s: %s", o->uri, sea_runtime_errmsg(r->rt));
    return rc;
  }
  rc = sea_pipeline_add_output(r->pl, p, &o->index);
  if (rc != 0) {
    sea_producer_close(p);
    run_error(r, rc, "output %s: %s", o->uri, sea_strerror(rc));
  }
  return rc;
}

int sea_lua_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_getmetatable(L, SEA_LUA_VIEW_MT);
  if (lua_isnil(L, -1)) { /* the runner embeds the module without requiring it */
    lua_pushcfunction(L, luaopen_seastreamer);
    lua_call(L, 0, 0);
  }
  lua_pop(L, 1);
  if (active_run)
    return luaL_error(L, "seastreamer.run: a run is already active in this process");
  run_t *r = lua_newuserdata(L, sizeof *r); /* freed with the Lua stack: nothing to leak on error */
  memset(r, 0, sizeof *r);
  int ud = lua_gettop(L);
  r->L = L;
  r->fn_ref = r->batch_ref = r->start_ref = r->tick_ref = r->stop_ref = LUA_NOREF;
  r->out_ref = r->view_ref = r->bview_ref = r->input_end_ref = r->bviews_ref = LUA_NOREF;
  r->view_mt_ref = LUA_NOREF;
  lua_getfield(L, 1, "name");
  r->script = lua_isnil(L, -1) ? "processor" : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the config table */

  /* The processor: a function, or a table with process or batch and optional hooks. */
  lua_getfield(L, 1, "processor");
  int pt = lua_type(L, -1);
  if (pt == LUA_TFUNCTION) {
    r->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else if (pt == LUA_TTABLE) {
    int t = lua_gettop(L);
    r->fn_ref = fn_field(L, t, "process", r->script);
    r->batch_ref = fn_field(L, t, "batch", r->script);
    r->start_ref = fn_field(L, t, "start", r->script);
    r->tick_ref = fn_field(L, t, "tick", r->script);
    r->stop_ref = fn_field(L, t, "stop", r->script);
    r->input_end_ref = fn_field(L, t, "input_end", r->script);
    lua_getfield(L, t, "linger");
    r->linger = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, t, "tick_ms");
    if (!lua_isnil(L, -1)) {
      if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) <= 0)
        return luaL_error(L, "%s: tick_ms must be a positive number of milliseconds", r->script);
      r->tick_ms = (uint64_t)lua_tonumber(L, -1);
    }
    lua_pop(L, 2);
    if (r->fn_ref == LUA_NOREF && r->batch_ref == LUA_NOREF && r->tick_ref == LUA_NOREF)
      return luaL_error(L,
                        "%s: the processor table has neither 'process' nor 'batch' (a function "
                        "of a message or of a batch) nor 'tick' (a source)",
                        r->script);
    if (r->fn_ref != LUA_NOREF && r->batch_ref != LUA_NOREF)
      return luaL_error(L, "%s: the processor table has both 'process' and 'batch'; keep one",
                        r->script);
  } else {
    return luaL_error(L,
                      "%s: returned %s, expected a processor (a function, or a table with "
                      "'process' or 'batch')",
                      r->script,
                      pt == LUA_TNIL ? "nothing" : lua_pushfstring(L, "a %s", lua_typename(L, pt)));
  }
  uint64_t tick_opt = opt_u64(L, "tick_ms"); /* the caller's (--tick-ms) wins over the script's */
  if (tick_opt)
    r->tick_ms = tick_opt;
  if (r->tick_ref != LUA_NOREF && r->tick_ms == 0)
    r->tick_ms = 1000;
  r->lim.max_instructions = opt_u64(L, "max_instructions");
  r->lim.max_ms = opt_u64(L, "max_ms");
  r->max_kbytes = (size_t)opt_u64(L, "max_memory_kb");
  uint64_t max_count = opt_u64(L, "max_count");
  uint64_t commit_ms = opt_u64(L, "commit_interval_ms");
  lua_getfield(L, 1, "exactly_once");
  int exactly_once = lua_toboolean(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 1, "transactional_id");
  const char *txn_id = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the config table */
  if (txn_id && !exactly_once)
    return luaL_error(L, "seastreamer.run: transactional_id is for exactly_once = true");
  lua_getfield(L, 1, "join");
  int join = lua_toboolean(L, -1);
  lua_pop(L, 1);
  uint64_t join_wait_ms = opt_u64(L, "join_wait_ms"), join_max = opt_u64(L, "join_max");
  if (join && exactly_once)
    return luaL_error(L, "seastreamer.run: join with exactly_once is not supported");

  lua_getfield(L, 1, "on_error");
  const char *pol = lua_isnil(L, -1) ? "stop" : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  if (strcmp(pol, "stop") == 0)
    r->policy = SEA_ON_ERROR_STOP;
  else if (strcmp(pol, "skip") == 0)
    r->policy = SEA_ON_ERROR_SKIP;
  else if (strcmp(pol, "dead-letter") == 0)
    r->policy = SEA_ON_ERROR_DEAD_LETTER;
  else
    return luaL_error(L, "seastreamer.run: on_error '%s' is not stop, skip or dead-letter", pol);

  /* Check both option tables now (a bad one raises); they are built once nothing else can. */
  lua_getfield(L, 1, "input_options");
  sea_options_free(sea_lua_options(L, lua_gettop(L)));
  lua_getfield(L, 1, "output_options");
  sea_options_free(sea_lua_options(L, lua_gettop(L)));
  lua_pop(L, 2);

  /* Inputs and outputs, all validated before anything connects. */
  lua_getfield(L, 1, "inputs");
  int it = lua_gettop(L);
  if (lua_type(L, it) != LUA_TTABLE)
    return luaL_error(L, "seastreamer.run: inputs must be a list of URIs");
  if (r->linger && r->tick_ref == LUA_NOREF)
    return luaL_error(L, "%s: a lingering processor needs a tick hook (to call out:stop())",
                      r->script);
  if (sea_lua_rawlen(L, it) == 0 && r->tick_ref == LUA_NOREF)
    return luaL_error(L, "seastreamer.run: no inputs: only a processor with a tick hook (a source) "
                         "runs without one");
  r->nin = sea_lua_rawlen(L, it);
  if (r->nin > 0 && r->fn_ref == LUA_NOREF && r->batch_ref == LUA_NOREF)
    return luaL_error(L,
                      "%s: the processor table has neither 'process' nor 'batch' (a function of "
                      "a message or of a batch), so it cannot take inputs; a source with only "
                      "'tick' runs without --input",
                      r->script);
  if (r->nin > MAX_INPUTS)
    return luaL_error(L, "seastreamer.run: at most %d inputs", MAX_INPUTS);
  for (size_t i = 0; i < r->nin; i++) {
    lua_rawgeti(L, it, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "seastreamer.run: input %d is not a URI string", (int)i + 1);
    r->in[i].uri = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "outputs");
  int ot = lua_gettop(L);
  if (lua_type(L, ot) != LUA_TTABLE)
    return luaL_error(L, "seastreamer.run: outputs must be a table {URI, name = URI, ...}");
  lua_rawgeti(L, ot, 1);
  if (lua_type(L, -1) != LUA_TSTRING)
    return luaL_error(L, "seastreamer.run: outputs[1], the default output, must be a URI string");
  r->out[0].uri = lua_tostring(L, -1);
  r->nout = 1;
  lua_pop(L, 1);
  lua_pushnil(L);
  while (lua_next(L, ot) != 0) {
    if (lua_type(L, -2) == LUA_TSTRING) {
      if (r->nout == MAX_OUTPUTS - 1)
        return luaL_error(L, "seastreamer.run: at most %d outputs", MAX_OUTPUTS - 1);
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "seastreamer.run: output '%s' is not a URI string",
                          lua_tostring(L, -2));
      r->out[r->nout].name = lua_tostring(L, -2);
      r->out[r->nout].uri = lua_tostring(L, -1);
      r->nout++;
    } else if (!(lua_type(L, -2) == LUA_TNUMBER && lua_tonumber(L, -2) == 1)) {
      return luaL_error(L, "seastreamer.run: outputs takes one default URI and name = URI pairs");
    }
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "dead_letter");
  if (!lua_isnil(L, -1)) {
    r->out[r->nout].name = "dead-letter";
    r->out[r->nout].uri = luaL_checkstring(L, -1);
    r->dead = &r->out[r->nout++];
  }
  lua_pop(L, 1);
  if (r->policy == SEA_ON_ERROR_DEAD_LETTER && r->dead == NULL)
    return luaL_error(L, "seastreamer.run: on_error = 'dead-letter' needs dead_letter = URI");
  lua_getfield(L, 1, "signals");
  bool signals = lua_toboolean(L, -1);
  lua_pop(L, 1);

  /* The reusable views and the out object. */
  r->view = sea_lua_push_view(L, NULL);
  lua_getmetatable(L, -1);
  r->view_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->view_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sea_lua_batch_t *bv = lua_newuserdata(L, sizeof *bv);
  memset(bv, 0, sizeof *bv);
  lua_newtable(L);
  bv->cache_ref = r->bviews_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  luaL_getmetatable(L, SEA_LUA_BATCH_MT);
  lua_setmetatable(L, -2);
  r->bview_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);
  lua_pushcfunction(L, out_send);
  lua_setfield(L, -2, "send");
  lua_pushcfunction(L, out_stop);
  lua_setfield(L, -2, "stop");
  r->out_ref = luaL_ref(L, LUA_REGISTRYINDEX);

#ifdef SEA_LUAJIT
  /* Compiled code never calls hooks: a limit needs the interpreter. */
  if (r->lim.max_instructions || r->lim.max_ms)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#endif
  if (r->lim.max_instructions || r->lim.max_ms)
    lua_sethook(L, count_hook, LUA_MASKCOUNT, 1000);

  lua_getfield(L, 1, "input_options");
  sea_options_t *io = sea_lua_options(L, lua_gettop(L));
  lua_getfield(L, 1, "output_options");
  sea_options_t *oo = sea_lua_options(L, lua_gettop(L));
  lua_pop(L, 2);
  active_run = r;
  int rc = sea_runtime_new(&r->rt);
  if (rc != 0) {
    sea_options_free(io);
    sea_options_free(oo);
    active_run = NULL;
    return sea_lua_fail(L, rc, "cannot create the runtime");
  }
  sea_pipeline_config_t pc = {
      .struct_size = sizeof pc,
      .on_error = r->policy,
      .dead_letter = r->dead ? (size_t)(r->dead - r->out) : 0,
      .per_batch = r->batch_ref != LUA_NOREF,
      .max_count = max_count,
      .commit_interval_ms = commit_ms,
      .linger = r->linger,
      .end_outputs = 1,
      .process = lua_process,
      .data = r,
      .on_stopping = on_stopping,
      .on_inputs_ended = on_inputs_ended,
      .on_skipped = on_skipped,
      .on_done = on_done,
      .exactly_once = exactly_once,
      .transactional_id = txn_id,
      .join = join,
      .join_wait_ms = join_wait_ms,
      .join_max_buffered = (size_t)join_max,
  };
  if ((rc = sea_pipeline_new(r->rt, &pc, &r->pl)) != 0)
    run_error(r, rc, "cannot create the pipeline: %s", sea_runtime_errmsg(r->rt));
  for (size_t i = 0; i < r->nout && rc == 0; i++)
    rc = open_output(r, &r->out[i], oo);
  for (size_t i = 0; i < r->nin && rc == 0; i++) {
    input_t *in = &r->in[i];
    sea_consumer_t *c = NULL;
    rc = sea_connect(r->rt, in->uri, io, &in->s);
    if (rc == 0)
      rc = sea_consumer_open(in->s, NULL, &c);
    if (rc == 0 && (rc = sea_pipeline_add_input(r->pl, c, NULL)) != 0)
      sea_consumer_close(c);
    if (rc != 0) {
      run_error(r, rc, "input %s: %s", in->uri, sea_runtime_errmsg(r->rt));
      break;
    }
  }
  sea_options_free(io);
  sea_options_free(oo);
  uv_loop_t *loop = sea_runtime_uv_loop(r->rt);
  if (rc == 0) {
    if (signals) {
      int nums[2] = {SIGINT, SIGTERM};
      for (int i = 0; i < 2; i++) {
        uv_signal_init(loop, &r->sigs[i]);
        r->sigs[i].data = r;
        uv_signal_start_oneshot(&r->sigs[i], on_signal, nums[i]);
        uv_unref((uv_handle_t *)&r->sigs[i]);
        r->nsigs++;
      }
    }
    hook_call(r, r->start_ref, "start", 0);
  }
  bool going = rc == 0 && sea_pipeline_status(r->pl) == 0 && !r->stop_requested;
  if (going && r->tick_ms) {
    uv_timer_init(loop, &r->tick_timer);
    r->tick_timer.data = r;
    r->tick_timer_on = true;
    uv_timer_start(&r->tick_timer, on_tick, r->tick_ms, r->tick_ms);
  }
  if (going)
    sea_pipeline_start(r->pl); /* a failure stops the pipeline, which says why */
  if (r->pl && !r->finished)
    sea_runtime_run(r->rt, SEA_RUN_DEFAULT);
  sea_pipeline_stats_t st = {0};
  if (r->pl) {
    sea_pipeline_stats(r->pl, &st);
    if (r->status == 0 && sea_pipeline_status(r->pl) != 0) {
      r->status = sea_pipeline_status(r->pl);
      snprintf(r->errmsg, sizeof r->errmsg, "%s", sea_pipeline_errmsg(r->pl));
    }
  }
  int status = r->status;
  lua_pushstring(L, r->errmsg);
  lua_Number processed = (lua_Number)st.processed, produced = (lua_Number)st.sent,
             skipped = (lua_Number)st.skipped, late = (lua_Number)st.late;
  cleanup(r);
  lua_sethook(L, NULL, 0, 0);
#ifdef SEA_LUAJIT
  if (r->lim.max_instructions || r->lim.max_ms)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
#endif
  lua_remove(L, ud);
  if (status != 0)
    return sea_lua_fail(L, status, lua_tostring(L, -1));
  lua_createtable(L, 0, 3);
  lua_pushnumber(L, processed);
  lua_setfield(L, -2, "processed");
  lua_pushnumber(L, produced);
  lua_setfield(L, -2, "produced");
  lua_pushnumber(L, skipped);
  lua_setfield(L, -2, "skipped");
  lua_pushnumber(L, late);
  lua_setfield(L, -2, "late");
  return 1;
}
