/* run.c: seastreamer.run{...}, the processor pipeline: C consumes, batches, calls the Lua
 * processor, produces, acknowledges and commits (at-least-once), with an error policy and limits.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "seastreamer_lua.h"

/* Built by LuaRocks against LuaJIT's headers, the build system does not say so: look. */
#if !defined(SEA_LUAJIT) && LUA_VERSION_NUM == 501 && defined(__has_include)
#if __has_include(<luajit.h>)
#define SEA_LUAJIT 1
#endif
#endif
#ifdef SEA_LUAJIT
#include <luajit.h>
#endif

#define MAX_INPUTS 16
#define MAX_OUTPUTS 16
#define COMMIT_EVERY_MS 1000

typedef struct run run_t;
typedef struct pbatch pbatch_t;

/* One message of a consumed batch: how many of its outputs still wait for their receipt. */
typedef struct slot {
  pbatch_t *pb;
  uint32_t i;
  uint32_t pending;
} slot_t;

/* A consumed batch, kept until every message in it is processed and acknowledged. */
struct pbatch {
  const sea_batch_t *batch;
  struct input *in;
  size_t next_proc;    /* next message to hand to Lua */
  size_t next_ack;     /* next message to acknowledge */
  pbatch_t *in_next;   /* the input's FIFO (acknowledgement order) */
  pbatch_t *work_next; /* the run's FIFO of batches with messages still to process */
  slot_t slots[];
};

typedef struct input {
  run_t *r;
  const char *uri;
  sea_streamer_t *s;
  sea_consumer_t *c;
  pbatch_t *head, *tail;
  bool ack; /* the input keeps positions */
  bool ended;
  bool paused;
  bool dirty; /* acked since the last commit */
  bool committing;
} input_t;

/* A send that met a full output, kept (copied) until the output drains. */
typedef struct overflow {
  sea_bytes_t payload;
  const char *stream_key;
  slot_t *slot;
  struct overflow *next;
} overflow_t;

typedef struct output {
  run_t *r;
  const char *name; /* NULL for the default output */
  const char *uri;
  sea_streamer_t *s;
  sea_producer_t *p;
  overflow_t *of_head, *of_tail;
  bool ended;
} output_t;

struct run {
  lua_State *L;
  sea_runtime_t *rt;
  const char *script; /* for messages: the processor's chunk name */
  input_t in[MAX_INPUTS];
  size_t nin;
  output_t out[MAX_OUTPUTS]; /* out[0] is the default output */
  size_t nout;
  output_t *dead; /* the dead-letter output, or NULL */
  int fn_ref, batch_ref, start_ref, tick_ref, stop_ref, out_ref, view_ref, bview_ref;
  int input_end_ref; /* called once every input has ended, if the processor lingers */
  bool linger;       /* the processor, not the end of the inputs, ends the run (out:stop()) */
  bool input_end_called;
  enum { POLICY_STOP, POLICY_SKIP, POLICY_DEAD } policy;
  uint64_t tick_ms;
  uint64_t max_instructions; /* per call; 0 = none */
  uint64_t max_ms;           /* per call; 0 = none */
  size_t max_kbytes;         /* Lua heap; 0 = none */
  uint64_t budget;
  uint64_t deadline_ns;
  bool in_call;
  slot_t *cur; /* outputs sent now belong to this message */
  const sea_message_t *cur_msg;
  pbatch_t *work_head, *work_tail;
  sea_lua_view_t *view;    /* the reusable view handed to the per-message processor */
  sea_lua_view_t **bviews; /* batch mode: reusable views, anchored in the table bviews_ref */
  size_t nbviews;
  int bviews_ref;
  int view_mt_ref; /* the views' metatable, to recognise a view without a lookup by name */
  size_t blocked;  /* outputs with an overflow */
  bool stopping, finished, flushed;
  bool stop_requested; /* out:stop() was called: stop once the current call returns */
  int flushing;        /* outputs still flushing/ending */
  int status;
  char errmsg[1024];
  uint64_t processed, produced, skipped;
  uv_timer_t commit_timer, tick_timer;
  bool commit_timer_on, tick_timer_on;
  uv_signal_t sigs[2];
  int nsigs;
};

static run_t *active_run; /* the count hook finds its budget here (one run per process) */

static void run_error(run_t *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_error(run_t *r, int status, const char *fmt, ...) {
  if (r->status != 0)
    return; /* the first failure is the cause */
  r->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
}

static void begin_stop(run_t *r);
static void process_work(run_t *r);

/* ---------------------------------------------------------------------------------------------
 * Acknowledgement: in order per input, a message only once all its outputs are receipted.
 * ------------------------------------------------------------------------------------------- */

static void advance_acks(input_t *in) {
  while (in->head) {
    pbatch_t *pb = in->head;
    while (pb->next_ack < pb->next_proc && pb->slots[pb->next_ack].pending == 0) {
      if (in->ack && sea_consumer_ack(in->c, &pb->batch->msgs[pb->next_ack]) == 0)
        in->dirty = true;
      pb->next_ack++;
    }
    if (pb->next_ack < pb->batch->count)
      return;
    in->head = pb->in_next;
    if (!in->head)
      in->tail = NULL;
    sea_batch_release(pb->batch);
    free(pb);
  }
}

static void on_commit_done(void *data, int status) {
  input_t *in = data;
  in->committing = false;
  if (status != 0 && status != SEA_ECANCELED)
    run_error(in->r, status, "commit on %s: %s", in->uri, sea_consumer_errmsg(in->c));
}

static void commit_all(run_t *r) {
  for (size_t i = 0; i < r->nin; i++) {
    input_t *in = &r->in[i];
    if (!in->dirty || in->committing || !in->c)
      continue;
    in->dirty = false;
    in->committing = true;
    if (sea_consumer_commit(in->c, on_commit_done, in) != 0)
      in->committing = false;
  }
}

static void on_commit_timer(uv_timer_t *t) {
  commit_all(t->data);
}

/* ---------------------------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------------------------- */

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  output_t *o = sea_producer_get_data(p);
  run_t *r = o->r;
  if (status != 0 && status != SEA_ECANCELED) {
    const char *em = sea_producer_errmsg(p);
    run_error(r, status, "output %s rejected a message: %s", o->uri,
              em && em[0] ? em : sea_strerror(status));
    begin_stop(r);
  }
  slot_t *s = token;
  /* A failed output keeps its message's hold for good: it and those after are never acked. */
  if (s == NULL || status != 0)
    return;
  if (--s->pending == 0)
    advance_acks(s->pb->in);
}

static int send_now(output_t *o, const sea_message_t *m, slot_t *slot) {
  int rc = sea_producer_send(o->p, m, slot);
  if (rc == 0) {
    o->r->produced++;
    if (slot)
      slot->pending++;
  }
  return rc;
}

static void on_drain(sea_producer_t *p) {
  output_t *o = sea_producer_get_data(p);
  run_t *r = o->r;
  while (o->of_head) {
    overflow_t *ov = o->of_head;
    sea_message_t m;
    memset(&m, 0, sizeof m);
    m.payload = ov->payload;
    m.meta.stream_key = ov->stream_key;
    int rc = send_now(o, &m, ov->slot);
    if (rc == SEA_EAGAIN)
      return;
    if (ov->slot)
      ov->slot->pending--; /* the hold taken when it was queued */
    if (rc != 0) {
      run_error(r, rc, "output %s: %s", o->uri, sea_producer_errmsg(p));
      begin_stop(r);
    }
    o->of_head = ov->next;
    sea_bytes_release(&ov->payload);
    free(ov);
  }
  o->of_tail = NULL;
  r->blocked--;
  if (r->blocked == 0 && !r->stopping)
    process_work(r);
}

/* Send m to o. A full output keeps a copy and blocks processing until it drains. */
static int output_send(run_t *r, output_t *o, const sea_message_t *m) {
  if (o->of_head == NULL) {
    int rc = send_now(o, m, r->cur);
    if (rc != SEA_EAGAIN)
      return rc;
  }
  overflow_t *ov = calloc(1, sizeof *ov);
  if (ov == NULL || sea_bytes_copy(m->payload.data, m->payload.len, &ov->payload) != 0) {
    free(ov);
    return SEA_ENOMEM;
  }
  ov->stream_key = m->meta.stream_key;
  ov->slot = r->cur;
  if (ov->slot)
    ov->slot->pending++; /* held until it is really sent */
  if (o->of_tail)
    o->of_tail->next = ov;
  else {
    o->of_head = ov;
    r->blocked++;
  }
  o->of_tail = ov;
  return 0;
}

/* The stream key for a payload the processor returned: the output's anchor, else the input
 * message's own key. */
static const char *default_key(run_t *r, output_t *o) {
  if (sea_producer_anchored(o->p) || r->cur_msg == NULL)
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
  return output_send(r, o, &m);
}

/* out:send(name, payload [, stream_key]): to the output called name (nil: the default one). */
static int out_send(lua_State *L) {
  run_t *r = active_run;
  if (r == NULL || r->finished)
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
  if (r->stopping && r->status != 0)
    return luaL_error(L, "the run is stopping: %s", r->errmsg);
  int rc = send_value(r, o, base, key);
  if (rc != 0)
    return luaL_error(L, "send to %s failed: %s", o->uri,
                      sea_producer_errmsg(o->p)[0] ? sea_producer_errmsg(o->p) : sea_strerror(rc));
  return 0;
}

/* out:stop(): end the run as if every input had ended (a source or a script that is done). */
static int out_stop(lua_State *L) {
  if (active_run)
    active_run->stop_requested = true;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Calling Lua, within limits
 * ------------------------------------------------------------------------------------------- */

static void count_hook(lua_State *L, lua_Debug *ar) {
  run_t *r = active_run;
  if (r == NULL || !r->in_call)
    return;
  const char *what = NULL;
  if (r->max_instructions) {
    if (r->budget <= 1000)
      what = "instruction limit exceeded (%d per call)";
    else
      r->budget -= 1000;
  }
  if (what == NULL && r->max_ms && uv_hrtime() > r->deadline_ns)
    what = "time limit exceeded (%d ms per call)";
  if (what == NULL)
    return;
  r->in_call = false;
  /* Say where the processor was when it was stopped. */
  lua_getinfo(L, "Sl", ar);
  lua_pushfstring(L, "%s:%d: ", ar->short_src, ar->currentline);
  lua_pushfstring(
      L, what, (int)(r->max_instructions && r->budget <= 1000 ? r->max_instructions : r->max_ms));
  lua_concat(L, 2);
  lua_error(L);
}

/* Call the function under nargs arguments with nres results, protected and within limits. On
 * failure the error message is on the stack; returns the pcall status. */
static int limited_call(run_t *r, int nargs, int nres) {
  lua_State *L = r->L;
  r->budget = r->max_instructions;
  if (r->max_ms)
    r->deadline_ns = uv_hrtime() + r->max_ms * 1000000u;
  r->in_call = true;
  int rc = lua_pcall(L, nargs, nres, 0);
  r->in_call = false;
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

/* A hook (start, tick, stop) failed: that is fatal whatever the policy. */
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
  r->cur = NULL;
  r->cur_msg = NULL;
  if (limited_call(r, n, 0) != 0) {
    run_error(r, SEA_EINVAL, "%s hook failed: %s", name, error_text(L));
    lua_pop(L, 1);
    begin_stop(r);
  } else if (r->stop_requested && strcmp(name, "stop") != 0) {
    begin_stop(r);
  }
}

/* What to do with a message the processor failed on. Returns true to go on. */
static bool apply_policy(run_t *r, pbatch_t *pb, size_t first, size_t n, const char *why) {
  const sea_message_t *m = &pb->batch->msgs[first];
  switch (r->policy) {
  case POLICY_STOP:
    run_error(r, SEA_EINVAL,
              "%s\n  at message %s | %llu of %s (not committed, nor anything after it)", why,
              m->meta.stream_key, (unsigned long long)m->meta.seq, pb->in->uri);
    return false;
  case POLICY_SKIP:
    fprintf(stderr, "seastreamer run: skipped message %s | %llu of %s: %s\n", m->meta.stream_key,
            (unsigned long long)m->meta.seq, pb->in->uri, why);
    r->skipped += n;
    return true;
  case POLICY_DEAD:
    for (size_t k = first; k < first + n; k++) {
      sea_message_t dm = pb->batch->msgs[k];
      dm.meta.stream_key = sea_producer_anchored(r->dead->p) ? NULL : dm.meta.stream_key;
      r->cur = &pb->slots[k];
      int rc = output_send(r, r->dead, &dm);
      if (rc != 0) {
        run_error(r, rc, "dead-letter output %s: %s", r->dead->uri, sea_strerror(rc));
        return false;
      }
    }
    r->skipped += n;
    return true;
  }
  return false;
}

/* Send what a processor call returned (at index top of the stack). Returns NULL or a complaint. */
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
    size_t n = sea_lua_rawlen(L, idx);
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
    r->bviews[k]->msg = &batch->msgs[first + k];
  return true;
}

/* Process what the work queue holds until it is empty, an output is full, or the run stops. */
static void process_work(run_t *r) {
  lua_State *L = r->L;
  int base = lua_gettop(L); /* below: sea_lua_run's own frame (config, run state) */
  while (r->work_head && !r->stopping && r->blocked == 0) {
    pbatch_t *pb = r->work_head, *next;
    size_t count = pb->batch->count;
    if (r->batch_ref != LUA_NOREF) {
      size_t first = pb->next_proc;
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->batch_ref);
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->bview_ref);
      sea_lua_batch_t *bv = lua_touserdata(L, -1);
      bv->batch = pb->batch;
      bv->first = first;
      bv->count = count - first;
      if (!fill_bviews(r, pb->batch, first, count - first)) {
        lua_settop(L, base);
        run_error(r, SEA_ENOMEM, "out of memory for a batch of %zu views", count - first);
        begin_stop(r);
        return;
      }
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
      r->cur = &pb->slots[first]; /* outputs hold the first message: none is acked before them */
      r->cur_msg = &pb->batch->msgs[first];
      r->cur->pending++;
      int rc = limited_call(r, 2, 1);
      bv->batch = NULL;
      const char *bad = NULL;
      if (rc != 0)
        bad = error_text(L);
      else if ((bad = send_result(r, lua_gettop(L))) != NULL)
        bad = lua_pushfstring(L, "%s %s", where_fn(r, r->batch_ref), bad);
      pb->next_proc = count;
      r->processed += count - first;
      bool go = bad == NULL || apply_policy(r, pb, first, count - first, bad);
      for (size_t k = 0; k < count - first; k++) /* what it returned has been sent */
        r->bviews[k]->msg = NULL;
      lua_settop(L, base);
      r->cur->pending--;
      r->cur = NULL;
      if (!go) {
        pb->next_proc = first; /* nothing of the batch is acknowledged */
        begin_stop(r);
        return;
      }
      next = pb->work_next;
      advance_acks(pb->in); /* may free pb */
      if (r->stop_requested) {
        r->work_head = next;
        begin_stop(r);
        return;
      }
    } else {
      sea_lua_view_t *v;
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->view_ref);
      v = lua_touserdata(L, -1);
      lua_pop(L, 1);
      while (pb->next_proc < count && !r->stopping && r->blocked == 0) {
        size_t i = pb->next_proc;
        const sea_message_t *m = &pb->batch->msgs[i];
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->fn_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->view_ref);
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->out_ref);
        v->msg = m;
        r->cur = &pb->slots[i];
        r->cur_msg = m;
        r->cur->pending++; /* held while the call may still send */
        int rc = limited_call(r, 2, 1);
        const char *bad = NULL;
        if (rc != 0)
          bad = error_text(L);
        else if ((bad = send_result(r, lua_gettop(L))) != NULL)
          bad = lua_pushfstring(L, "%s %s", where_fn(r, r->fn_ref), bad);
        v->msg = NULL;
        bool go = bad == NULL || apply_policy(r, pb, i, 1, bad);
        lua_settop(L, base);
        r->cur->pending--;
        r->cur = NULL;
        r->cur_msg = NULL;
        if (!go) {
          begin_stop(r);
          return;
        }
        pb->next_proc = i + 1;
        r->processed++;
        if (r->stop_requested) {
          if (pb->next_proc == count)
            r->work_head = pb->work_next;
          advance_acks(pb->in);
          begin_stop(r);
          return;
        }
      }
      bool unfinished = pb->next_proc < count;
      next = pb->work_next;
      advance_acks(pb->in); /* may free pb, if it is finished */
      if (unfinished)
        break; /* blocked: an output drain resumes here */
    }
    r->work_head = next;
    if (!r->work_head)
      r->work_tail = NULL;
  }
  if (r->stopping)
    return;
  if (r->blocked) {
    for (size_t i = 0; i < r->nin; i++)
      if (!r->in[i].paused && !r->in[i].ended) {
        r->in[i].paused = true;
        sea_consumer_pause(r->in[i].c);
      }
    return;
  }
  bool all_ended = true;
  for (size_t i = 0; i < r->nin; i++) {
    input_t *in = &r->in[i];
    if (in->paused && !in->ended) {
      in->paused = false;
      sea_consumer_resume(in->c);
    }
    all_ended = all_ended && in->ended;
  }
  if (r->nin > 0 && all_ended && r->work_head == NULL) {
    if (!r->linger) {
      begin_stop(r);
    } else if (!r->input_end_called) {
      r->input_end_called = true;
      hook_call(r, r->input_end_ref, "input_end", 0);
    }
  }
}

static void on_batch(sea_consumer_t *c, const sea_batch_t *batch) {
  input_t *in = sea_consumer_get_data(c);
  run_t *r = in->r;
  if (r->stopping || batch->count == 0)
    return;
  pbatch_t *pb = calloc(1, sizeof *pb + batch->count * sizeof(slot_t));
  if (pb == NULL) {
    run_error(r, SEA_ENOMEM, "out of memory queueing a batch of %zu messages", batch->count);
    begin_stop(r);
    return;
  }
  sea_batch_retain(batch);
  pb->batch = batch;
  pb->in = in;
  for (size_t i = 0; i < batch->count; i++) {
    pb->slots[i].pb = pb;
    pb->slots[i].i = (uint32_t)i;
  }
  if (in->tail)
    in->tail->in_next = pb;
  else
    in->head = pb;
  in->tail = pb;
  if (r->work_tail)
    r->work_tail->work_next = pb;
  else
    r->work_head = pb;
  r->work_tail = pb;
  process_work(r);
}

static void on_end(sea_consumer_t *c, int status) {
  input_t *in = sea_consumer_get_data(c);
  run_t *r = in->r;
  in->ended = true;
  if (status != 0 && status != SEA_EOF) {
    run_error(r, status, "input %s: %s", in->uri, sea_consumer_errmsg(c));
    begin_stop(r);
    return;
  }
  process_work(r);
}

static void on_tick(uv_timer_t *t) {
  run_t *r = t->data;
  if (!r->stopping)
    hook_call(r, r->tick_ref, "tick", 1);
}

static void on_signal(uv_signal_t *h, int signum) {
  run_t *r = h->data;
  begin_stop(r);
}

/* ---------------------------------------------------------------------------------------------
 * Stopping: no more input; the stop hook may send last outputs; outputs confirm; commit.
 * ------------------------------------------------------------------------------------------- */

static void finish(run_t *r) {
  if (r->finished)
    return;
  r->finished = true;
  for (size_t i = 0; i < r->nin; i++)
    advance_acks(&r->in[i]);
  commit_all(r);
  sea_runtime_stop(r->rt);
}

static void after_output_end(void *data, int status) {
  output_t *o = data;
  run_t *r = o->r;
  if (status != 0 && status != SEA_ECANCELED)
    run_error(r, status, "output %s: %s", o->uri, sea_producer_errmsg(o->p));
  if (--r->flushing == 0)
    finish(r);
}

static void begin_stop(run_t *r) {
  if (r->stopping)
    return;
  r->stopping = true;
  for (size_t i = 0; i < r->nin; i++)
    if (r->in[i].c && !r->in[i].ended && !r->in[i].paused) {
      r->in[i].paused = true;
      sea_consumer_pause(r->in[i].c);
    }
  if (r->tick_timer_on)
    uv_timer_stop(&r->tick_timer);
  for (int i = 0; i < r->nsigs; i++)
    uv_signal_stop(&r->sigs[i]);
  if (r->status == 0)
    hook_call(r, r->stop_ref, "stop", 0);
  r->flushing = 1;
  for (size_t i = 0; i < r->nout; i++) {
    output_t *o = &r->out[i];
    if (o->p == NULL)
      continue;
    /* Overflowed sends are not confirmed: what they belong to is not acknowledged. */
    r->flushing++;
    if (sea_producer_end(o->p, after_output_end, o) != 0) {
      run_error(r, sea_producer_error(o->p) ? sea_producer_error(o->p) : SEA_EIO, "output %s: %s",
                o->uri, sea_producer_errmsg(o->p));
      r->flushing--;
    }
  }
  if (--r->flushing == 0)
    finish(r);
}

/* ---------------------------------------------------------------------------------------------
 * Setup: seastreamer.run{ processor, inputs = {...}, outputs = {URI, name = URI},
 *   on_error = "stop"|"skip"|"dead-letter", dead_letter = URI, input_options = {...},
 *   output_options = {...}, tick_ms, max_instructions, max_ms, max_memory_kb, name, signals }
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
  for (size_t i = 0; i < r->nout; i++) {
    output_t *o = &r->out[i];
    if (o->p)
      sea_producer_close(o->p); /* cancels what is still unconfirmed */
    while (o->of_head) {
      overflow_t *ov = o->of_head;
      o->of_head = ov->next;
      sea_bytes_release(&ov->payload);
      free(ov);
    }
  }
  for (size_t i = 0; i < r->nin; i++) {
    input_t *in = &r->in[i];
    while (in->head) {
      pbatch_t *pb = in->head;
      in->head = pb->in_next;
      sea_batch_release(pb->batch);
      free(pb);
    }
    if (in->c)
      sea_consumer_close(in->c);
    if (in->s)
      sea_streamer_close(in->s);
  }
  for (size_t i = 0; i < r->nout; i++)
    if (r->out[i].s)
      sea_streamer_close(r->out[i].s);
  if (r->commit_timer_on)
    uv_close((uv_handle_t *)&r->commit_timer, NULL);
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
  int rc = sea_connect(r->rt, o->uri, oo, &o->s);
  if (rc == 0)
    rc = sea_producer_open(o->s, NULL, &o->p);
  if (rc != 0) {
    run_error(r, rc, "output %s: %s", o->uri, sea_runtime_errmsg(r->rt));
    return rc;
  }
  o->r = r;
  sea_producer_set_data(o->p, o);
  sea_producer_set_callbacks(o->p, on_receipt, on_drain);
  return 0;
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
    if (r->fn_ref == LUA_NOREF && r->batch_ref == LUA_NOREF)
      return luaL_error(L,
                        "%s: the processor table has neither 'process' nor 'batch' (a function "
                        "of a message or of a batch)",
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
  r->max_instructions = opt_u64(L, "max_instructions");
  r->max_ms = opt_u64(L, "max_ms");
  r->max_kbytes = (size_t)opt_u64(L, "max_memory_kb");

  lua_getfield(L, 1, "on_error");
  const char *pol = lua_isnil(L, -1) ? "stop" : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  if (strcmp(pol, "stop") == 0)
    r->policy = POLICY_STOP;
  else if (strcmp(pol, "skip") == 0)
    r->policy = POLICY_SKIP;
  else if (strcmp(pol, "dead-letter") == 0)
    r->policy = POLICY_DEAD;
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
  if (r->nin > MAX_INPUTS)
    return luaL_error(L, "seastreamer.run: at most %d inputs", MAX_INPUTS);
  for (size_t i = 0; i < r->nin; i++) {
    lua_rawgeti(L, it, (int)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      return luaL_error(L, "seastreamer.run: input %d is not a URI string", (int)i + 1);
    r->in[i].uri = lua_tostring(L, -1);
    r->in[i].r = r;
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
  if (r->policy == POLICY_DEAD && r->dead == NULL)
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
  if (r->max_instructions || r->max_ms)
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#endif
  if (r->max_instructions || r->max_ms)
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
  for (size_t i = 0; i < r->nout && rc == 0; i++)
    rc = open_output(r, &r->out[i], oo);
  for (size_t i = 0; i < r->nin && rc == 0; i++) {
    input_t *in = &r->in[i];
    rc = sea_connect(r->rt, in->uri, io, &in->s);
    if (rc == 0)
      rc = sea_consumer_open(in->s, NULL, &in->c);
    if (rc != 0) {
      run_error(r, rc, "input %s: %s", in->uri, sea_runtime_errmsg(r->rt));
      break;
    }
    in->ack = sea_consumer_mode(in->c) != SEA_MODE_REALTIME;
    sea_consumer_set_data(in->c, in);
  }
  sea_options_free(io);
  sea_options_free(oo);
  uv_loop_t *loop = sea_runtime_uv_loop(r->rt);
  if (rc == 0) {
    uv_timer_init(loop, &r->commit_timer);
    r->commit_timer.data = r;
    r->commit_timer_on = true;
    uv_timer_start(&r->commit_timer, on_commit_timer, COMMIT_EVERY_MS, COMMIT_EVERY_MS);
    uv_unref((uv_handle_t *)&r->commit_timer);
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
  if (rc == 0 && !r->stopping && r->tick_ms) {
    uv_timer_init(loop, &r->tick_timer);
    r->tick_timer.data = r;
    r->tick_timer_on = true;
    uv_timer_start(&r->tick_timer, on_tick, r->tick_ms, r->tick_ms);
  }
  for (size_t i = 0; i < r->nin && rc == 0 && !r->stopping; i++) {
    input_t *in = &r->in[i];
    if ((rc = sea_consumer_start(in->c, on_batch, on_end)) != 0)
      run_error(r, rc, "input %s: %s", in->uri, sea_consumer_errmsg(in->c));
  }
  if (rc != 0)
    begin_stop(r);
  if (!r->finished)
    sea_runtime_run(r->rt, SEA_RUN_DEFAULT);
  /* A commit may still be on its way: let it land. */
  for (int spins = 0; spins < 1000; spins++) {
    bool busy = false;
    for (size_t i = 0; i < r->nin; i++)
      busy = busy || r->in[i].committing;
    if (!busy)
      break;
    sea_runtime_run(r->rt, SEA_RUN_ONCE);
  }
  int status = r->status;
  lua_pushstring(L, r->errmsg);
  lua_Number processed = (lua_Number)r->processed, produced = (lua_Number)r->produced,
             skipped = (lua_Number)r->skipped;
  cleanup(r);
  lua_sethook(L, NULL, 0, 0);
#ifdef SEA_LUAJIT
  if (r->max_instructions || r->max_ms)
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
  return 1;
}
