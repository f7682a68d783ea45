/* run.c: seastreamer.run{...}: a Lua processor on the host's pipeline (sea_pipeline_*), which
 * consumes, batches, produces, acknowledges and commits (docs/delivery.md). What is Lua's stays
 * in lua/: the message views, the processor's results, out:send/out:stop, the hooks and the
 * limits. This room holds the setup and the pipeline's callbacks; the others (run_internal.h):
 * run_out.c (out and the results), run_call.c (calls within limits), run_process.c (the
 * processor), run_jit.c (LuaJIT's driver). */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "run_internal.h"

run_t *sea_run_active; /* the count hook finds its budget here (one run per process) */
/* The views of one processor call are made for it and expire together when the call is over
 * (sea_run_epoch moves on): a view kept past its call raises an error instead of showing a later
 * message. Never freed, so that a view kept even past its run can still tell. */
uint64_t sea_run_epoch = 1;

/* A failure of the run: the pipeline's (it stops) or, before there is one, the run's own. */
void sea_run_error(run_t *r, int status, const char *fmt, ...) {
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
void sea_run_after_lua_call(run_t *r) {
  if (r->stop_requested && r->pl)
    sea_pipeline_stop(r->pl);
}

/* "key | seq", and " | shard" when it is not 0, as the stdio line format (a seq alone is
 * ambiguous across shards). */
static const char *msg_where(const sea_message_t *m, char *buf, size_t n) {
  char shard[32] = "";
  if (m->meta.shard_id)
    snprintf(shard, sizeof shard, " | %llu", (unsigned long long)m->meta.shard_id);
  snprintf(buf, n, "%s | %llu%s", m->meta.stream_key, (unsigned long long)m->meta.seq, shard);
  return buf;
}

static void on_skipped(sea_pipeline_t *pl, size_t input, const sea_message_t *m, const char *why,
                       void *data) {
  run_t *r = data;
  char where[320];
  fprintf(stderr, "seastreamer run: %s message %s of %s: %s\n",
          r->policy == SEA_ON_ERROR_SKIP ? "skipped" : "dead-lettered",
          msg_where(m, where, sizeof where), r->in[input].uri, why);
}

void sea_run_fail_at(run_t *r, size_t input, const sea_message_t *m, const char *why) {
  char where[320];
  sea_run_error(r, SEA_ENOMEM,
                "%s\n  at message %s of %s (not committed, nor anything after it: a memory error "
                "stops the run whatever --on-error says)",
                why, msg_where(m, where, sizeof where), r->in[input].uri);
}

/* hold = true: after a tick or the stop hook, the messages held so far are done once what it
 * sent is confirmed. Not after a hook that failed: they stay unacknowledged. */
static void release(run_t *r) {
  if (r->hold && r->pl && sea_pipeline_status(r->pl) == 0)
    sea_pipeline_release(r->pl);
}

static void on_stopping(sea_pipeline_t *pl, void *data) {
  run_t *r = data;
  if (r->tick_timer_on)
    uv_timer_stop(&r->tick_timer);
  for (int i = 0; i < r->nsigs; i++)
    uv_signal_stop(&r->sigs[i]);
  sea_run_hook_call(r, r->stop_ref, "stop", 0);
  release(r);
}

static void on_inputs_ended(sea_pipeline_t *pl, void *data) {
  run_t *r = data;
  sea_run_hook_call(r, r->input_end_ref, "input_end", 0);
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
  if (!r->finished) {
    sea_run_hook_call(r, r->tick_ref, "tick", 1);
    release(r);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  run_t *r = h->data;
  sea_pipeline_stop(r->pl);
}

/* ---------------------------------------------------------------------------------------------
 * Setup: seastreamer.run{ processor, inputs = {...}, outputs = {URI, name = URI},
 *   on_error = "stop"|"skip"|"dead-letter", dead_letter = URI, input_options = {...},
 *   output_options = {...}, tick_ms, max_instructions, max_ms, max_memory_kb, max_count,
 *   commit_interval_ms, name, signals, exactly_once, transactional_id, join, join_wait_ms,
 * join_max, stats_interval_ms, stats_json, metrics }
 * ------------------------------------------------------------------------------------------- */

static uint64_t opt_u64(lua_State *L, const char *field) {
  lua_getfield(L, 1, field);
  lua_Number n = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  if (n < 0)
    luaL_error(L, "seastreamer.run: %s must not be negative", field);
  if (n > 9007199254740992.0) /* 2^53: beyond it a double skips whole numbers */
    luaL_error(L, "seastreamer.run: %s must be at most 2^53", field);
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
  sea_metrics_close(r->metrics); /* before the pipeline it reads */
  r->metrics = NULL;
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
  sea_run_epoch++; /* views kept past the run: expired (their pos_ref is unreferenced below) */
#ifdef SEA_LUA_LIGHT_VIEWS
  sea_lua_light_end();
#endif
  int refs[] = {r->fn_ref,        r->batch_ref,  r->start_ref,  r->tick_ref,
                r->stop_ref,      r->out_ref,    r->driver_ref, r->state_ref,
                r->input_end_ref, r->jbatch_ref, r->jviews_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
    luaL_unref(L, LUA_REGISTRYINDEX, refs[i]);
  free(r->items);
  r->items = NULL;
  r->items_cap = 0;
  free(r->jidx);
  r->jidx = NULL;
  r->jidx_cap = r->jidx_n = 0;
  sea_run_active = NULL;
}

static int open_output(run_t *r, output_t *o, const sea_options_t *oo) {
  sea_producer_t *p = NULL;
  int rc = sea_connect(r->rt, o->uri, oo, &o->s);
  if (rc == 0)
    rc = sea_producer_open(o->s, NULL, &p);
  if (rc != 0) {
    sea_run_error(r, rc, "output %s: %s", o->uri, sea_runtime_errmsg(r->rt));
    return rc;
  }
  rc = sea_pipeline_add_output(r->pl, p, &o->index);
  if (rc != 0) {
    sea_producer_close(p);
    sea_run_error(r, rc, "output %s: %s", o->uri, sea_strerror(rc));
  }
  return rc;
}

/* The fields of run's table; any other is a mistake (a typo such as on_eror would otherwise leave
 * the default in force without a word). */
static void check_run_fields(lua_State *L) {
  static const char *const known[] = {
      "processor",          "inputs",        "outputs",        "on_error",
      "dead_letter",        "input_options", "output_options", "tick_ms",
      "max_instructions",   "max_ms",        "max_memory_kb",  "max_count",
      "commit_interval_ms", "name",          "signals",        "exactly_once",
      "transactional_id",   "join",          "join_wait_ms",   "join_max",
      "stats_interval_ms",  "stats_json",    "metrics",        NULL};
  const char *bad = sea_lua_unknown_field(L, 1, known);
  if (bad)
    luaL_error(L, "seastreamer.run: unknown field '%s' (docs/lua.md lists them)", bad);
}

int sea_lua_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  check_run_fields(L);
  luaL_getmetatable(L, SEA_LUA_VIEW_MT);
  if (lua_isnil(L, -1)) { /* the runner embeds the module without requiring it */
    lua_pushcfunction(L, luaopen_seastreamer);
    lua_call(L, 0, 0);
  }
  lua_pop(L, 1);
  if (sea_run_active)
    return luaL_error(L, "seastreamer.run: a run is already active in this process");
  run_t *r = lua_newuserdata(L, sizeof *r); /* freed with the Lua stack: nothing to leak on error */
  memset(r, 0, sizeof *r);
  int ud = lua_gettop(L);
  static uint32_t runs;
  r->serial = ++runs;
  r->L = L;
  r->fn_ref = r->batch_ref = r->start_ref = r->tick_ref = r->stop_ref = LUA_NOREF;
  r->out_ref = r->input_end_ref = LUA_NOREF;
  r->driver_ref = r->state_ref = r->jbatch_ref = r->jviews_ref = LUA_NOREF;
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
    lua_getfield(L, t, "hold");
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
      return luaL_error(L, "%s: the processor's 'hold' is a %s, expected true or false", r->script,
                        luaL_typename(L, -1));
    r->hold = lua_toboolean(L, -1);
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
  uint64_t stats_ms = opt_u64(L, "stats_interval_ms"); /* --stats: lines on stderr */
  lua_getfield(L, 1, "stats_json");
  int stats_json = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (stats_json && stats_ms == 0)
    stats_ms = 5000;
  lua_getfield(L, 1, "metrics"); /* --metrics: an HTTP endpoint for Prometheus */
  const char *metrics_addr = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the config table */
  if (join && exactly_once)
    return luaL_error(L, "seastreamer.run: join with exactly_once is not supported");
  if (r->hold && exactly_once)
    return luaL_error(L, "%s: 'hold' with exactly_once is not supported", r->script);

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

  /* The out object and, for a per-message processor without limits, the driver. */
  lua_newtable(L);
  lua_pushcfunction(L, sea_run_out_send);
  lua_setfield(L, -2, "send");
  lua_pushcfunction(L, sea_run_out_stop);
  lua_setfield(L, -2, "stop");
  lua_pushcfunction(L, sea_run_out_stats);
  lua_setfield(L, -2, "stats");
  r->out_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* Limits are per call: with one, every message gets a call of its own. (The runner's
   * --max-memory is its allocator's, which fails the allocation in whatever call makes it.) */
  r->driven = r->fn_ref != LUA_NOREF && r->lim.max_instructions == 0 && r->lim.max_ms == 0 &&
              r->max_kbytes == 0;
#ifdef SEA_LUAJIT
  if (r->driven) { /* the driver loop in Lua (jit_src); Lua 5.4 loops in C (c_loop) */
    lua_newtable(L);
    r->state_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r->jit = true;
    r->driver_ref = sea_run_jit_wrap(r, "make", r->fn_ref);
    lua_newtable(L);
    r->jviews_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (r->batch_ref != LUA_NOREF) /* the batch processor, through its wrapper */
    r->jbatch_ref = sea_run_jit_wrap(r, "makebatch", r->batch_ref);
#endif

#ifdef SEA_LUAJIT
  /* Compiled code never calls hooks: a limit needs the interpreter. */
  if (r->lim.max_instructions || r->lim.max_ms)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#endif
  if (r->lim.max_instructions || r->lim.max_ms)
    lua_sethook(L, sea_run_count_hook, LUA_MASKCOUNT, 1000);

  lua_getfield(L, 1, "input_options");
  sea_options_t *io = sea_lua_options(L, lua_gettop(L));
  lua_getfield(L, 1, "output_options");
  sea_options_t *oo = sea_lua_options(L, lua_gettop(L));
  lua_pop(L, 2);
  sea_run_active = r;
  int rc = sea_runtime_new(&r->rt);
  if (rc != 0) {
    sea_options_free(io);
    sea_options_free(oo);
    sea_run_active = NULL;
    return sea_lua_fail(L, rc, "cannot create the runtime");
  }
  sea_pipeline_config_t pc = {
      .struct_size = sizeof pc,
      .on_error = r->policy,
      .dead_letter = r->dead ? (size_t)(r->dead - r->out) : 0,
      .per_batch = r->batch_ref != LUA_NOREF || r->driven,
      .max_count = max_count,
      .commit_interval_ms = commit_ms,
      .linger = r->linger,
      .end_outputs = 1,
      .process = sea_run_process,
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
      .hold = r->hold,
  };
  /* The endpoint listens before anything connects: a bad address or a port in use fails the run
   * before anything is consumed. */
  if (metrics_addr && (rc = sea_metrics_serve(r->rt, metrics_addr, &r->metrics)) != 0)
    sea_run_error(r, rc, "--metrics %s: %s", metrics_addr, sea_runtime_errmsg(r->rt));
  else if ((rc = sea_pipeline_new(r->rt, &pc, &r->pl)) != 0)
    sea_run_error(r, rc, "cannot create the pipeline: %s", sea_runtime_errmsg(r->rt));
  else if (stats_ms)
    sea_pipeline_report_stats(r->pl, stats_ms, stats_json ? SEA_STATS_JSON : 0);
  sea_metrics_set_pipeline(r->metrics, r->pl);
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
      sea_run_error(r, rc, "input %s: %s", in->uri, sea_runtime_errmsg(r->rt));
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
    sea_run_hook_call(r, r->start_ref, "start", 0);
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
  uint64_t processed = st.processed, produced = st.sent, skipped = st.skipped, late = st.late;
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
  sea_lua_push_u64(L, processed); /* an integer on 5.4 */
  lua_setfield(L, -2, "processed");
  sea_lua_push_u64(L, produced);
  lua_setfield(L, -2, "produced");
  sea_lua_push_u64(L, skipped);
  lua_setfield(L, -2, "skipped");
  sea_lua_push_u64(L, late);
  lua_setfield(L, -2, "late");
  return 1;
}
