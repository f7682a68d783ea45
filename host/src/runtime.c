/* runtime.c: the runtime (one libuv loop) and the host table that lends the loop to plugins. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

/* ---- logging ---- */

static int log_level = -1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int level_from_env(void) {
  const char *v = getenv("SEASTREAMER_LOG");
  if (v == NULL || v[0] == '\0')
    return SEA_LOG_WARN;
  for (int i = SEA_LOG_ERROR; i <= SEA_LOG_DEBUG; i++)
    if (strcmp(v, level_names[i]) == 0)
      return i;
  /* The command refuses this at startup (status 2); a program using the library is told once. */
  fprintf(stderr,
          "seastreamer: SEASTREAMER_LOG=%s: unknown level (valid: error, warn, info, debug); "
          "logging at warn\n",
          v);
  return SEA_LOG_WARN;
}

/* One line: "2026-01-02T03:04:05.678Z seastreamer: info: file: message", the time in UTC with
 * milliseconds (as the stdio format writes it), then the level and who logged it (a plugin's
 * name, or "host"). One fprintf per line, so lines from plugin threads do not interleave. */
static void vlog(int level, const char *who, const char *fmt, va_list ap) {
  if (log_level < 0)
    log_level = level_from_env();
  if (level > log_level || level < 0 || level > SEA_LOG_DEBUG)
    return;
  char line[1024];
  sea__vfmt(line, sizeof line, fmt, ap);
  char ts[32];
  size_t n = sea_format_timestamp(sea_now_us(), ts);
  ts[n] = '\0';
  fprintf(stderr, "%sZ seastreamer: %s: %s: %s\n", ts, level_names[level],
          who && who[0] ? who : "host", line);
}

void sea__log(int level, const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, who, fmt, ap);
  va_end(ap);
}

/* ---- runtime ---- */

static int init(sea_runtime_t *rt) {
  /* A closed fd 0, 1 or 2 would be reused by the loop's own descriptors, and the stdio backend
   * would then read or write the wrong thing: park /dev/null there instead. */
  for (int fd = 0; fd <= 2; fd++)
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      int nfd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
      if (nfd >= 0 && nfd != fd) {
        dup2(nfd, fd);
        close(nfd);
      }
    }
  /* A closed pipe must be an EPIPE error we can report, not a silent death by signal. */
  signal(SIGPIPE, SIG_IGN);
  /* Read the log level here, on the loop thread, so plugin threads only ever read it. */
  if (log_level < 0)
    log_level = level_from_env();
  return 0;
}

int sea_runtime_new(sea_runtime_t **out) {
  if (out == NULL)
    return SEA_EINVAL;
  sea_runtime_t *rt = sea__calloc(1, sizeof *rt);
  if (rt == NULL)
    return SEA_ENOMEM;
  if (uv_loop_init(&rt->own_loop) != 0) {
    sea__free(rt);
    return SEA_EIO;
  }
  rt->loop = &rt->own_loop;
  rt->owns_loop = true;
  init(rt);
  *out = rt;
  return 0;
}

int sea_runtime_new_with_loop(void *uv_loop, sea_runtime_t **out) {
  if (uv_loop == NULL || out == NULL)
    return SEA_EINVAL;
  sea_runtime_t *rt = sea__calloc(1, sizeof *rt);
  if (rt == NULL)
    return SEA_ENOMEM;
  rt->loop = uv_loop;
  init(rt);
  *out = rt;
  return 0;
}

void *sea_runtime_uv_loop(sea_runtime_t *rt) {
  return rt->loop;
}

int sea_runtime_run(sea_runtime_t *rt, sea_run_mode_t mode) {
  uv_run_mode m = mode == SEA_RUN_ONCE     ? UV_RUN_ONCE
                  : mode == SEA_RUN_NOWAIT ? UV_RUN_NOWAIT
                                           : UV_RUN_DEFAULT;
  return uv_run(rt->loop, m);
}

void sea_runtime_stop(sea_runtime_t *rt) {
  uv_stop(rt->loop);
}

const char *sea_runtime_errmsg(const sea_runtime_t *rt) {
  return rt ? rt->errmsg : "";
}

static void report_handle(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h))
    sea__log(SEA_LOG_WARN, NULL, "runtime freed with a live %s handle",
             uv_handle_type_name(h->type));
}

int sea_runtime_free(sea_runtime_t *rt) {
  if (rt == NULL)
    return 0;
  /* Finish deferred calls first: a streamer closed from a callback is still closing there. */
  while (rt->defer_head)
    uv_run(rt->loop, UV_RUN_NOWAIT);
  if (rt->streamer_count > 0)
    return sea__rt_err(rt, SEA_EBUSY, "runtime still has %zu open streamer(s)", rt->streamer_count);
  /* Then let pending close callbacks return every handle's memory. */
  if (rt->defer_init)
    uv_close((uv_handle_t *)&rt->defer_idle, NULL);
  if (rt->turn_init)
    uv_close((uv_handle_t *)&rt->turn_timer, NULL);
  uv_run(rt->loop, UV_RUN_NOWAIT);
  if (rt->owns_loop) {
    if (uv_loop_close(rt->loop) == UV_EBUSY) {
      uv_walk(rt->loop, report_handle, NULL);
      uv_run(rt->loop, UV_RUN_DEFAULT);
      uv_loop_close(rt->loop);
    }
  }
  sea__plugins_free(rt);
  sea__free(rt);
  return 0;
}

/* ---- loop hooks for plugins ---- */

struct sea_watch {
  union {
    uv_poll_t poll;
    uv_idle_t idle; /* for fds epoll refuses (regular files, /dev/null): always ready */
    uv_handle_t handle;
  } h;
  bool is_idle;
  int events;
  sea_watch_cb cb;
  void *data;
};

static void close_free(uv_handle_t *h) {
  sea__free(h->data);
}

static void on_poll(uv_poll_t *p, int status, int ev) {
  sea_watch_t *w = p->data;
  int events =
      ((ev & UV_READABLE) ? SEA_WATCH_READABLE : 0) | ((ev & UV_WRITABLE) ? SEA_WATCH_WRITABLE : 0);
  w->cb(w, status < 0 ? SEA_EIO : 0, events, w->data);
}

static void on_idle(uv_idle_t *i) {
  sea_watch_t *w = i->data;
  w->cb(w, 0, w->events, w->data);
}

static int uv_events(int events) {
  return ((events & SEA_WATCH_READABLE) ? UV_READABLE : 0) |
         ((events & SEA_WATCH_WRITABLE) ? UV_WRITABLE : 0);
}

static int watch_apply(sea_watch_t *w) {
  if (w->is_idle)
    return w->events ? uv_idle_start(&w->h.idle, on_idle) : uv_idle_stop(&w->h.idle);
  return w->events ? uv_poll_start(&w->h.poll, uv_events(w->events), on_poll)
                   : uv_poll_stop(&w->h.poll);
}

static sea_watch_t *watch_start(sea_runtime_t *rt, int fd, int events, sea_watch_cb cb,
                                void *data) {
  sea_watch_t *w = sea__calloc(1, sizeof *w);
  if (w == NULL)
    return NULL;
  w->cb = cb;
  w->data = data;
  w->events = events;
  int rc = uv_poll_init(rt->loop, &w->h.poll, fd);
  if (rc == UV_EPERM) {
    w->is_idle = true;
    rc = uv_idle_init(rt->loop, &w->h.idle);
  }
  if (rc != 0) {
    sea__free(w);
    return NULL;
  }
  w->h.handle.data = w;
  if (watch_apply(w) != 0) {
    uv_close(&w->h.handle, close_free);
    return NULL;
  }
  return w;
}

static int watch_update(sea_watch_t *w, int events) {
  w->events = events;
  return watch_apply(w) == 0 ? 0 : SEA_EIO;
}

static void watch_stop(sea_watch_t *w) {
  if (w != NULL)
    uv_close(&w->h.handle, close_free);
}

/* A timer: a uv_timer_t for timeouts, and for timeout 0 (the next-turn defer) a place in the
 * runtime's turn queue. One libuv timer per runtime (turn_timer) drains the queue, so the kicks
 * keep the place among the loop's timers that their own 0 ms timers had (before the timers that
 * fell due later, such as a join's wait: its order depends on it), and a kick costs an append
 * instead of a trip through the timer heap.
 *
 * libuv before 1.45 (Debian 12 has 1.44) runs a timer started with timeout 0 from inside a timer
 * callback again in the same pass over the timers, so a backend that re-arms one to "come back
 * next turn" kept the loop from ever polling its file descriptors: receipts and wakeups waited,
 * and so did the pipeline's commit timer (measured with the kafka consumer: a commit every 5 s
 * instead of every 1 s). So what is queued from inside a plugin's timer callback, or from the
 * drain itself, waits for the next drain, and that drain's timer is started from the idle
 * handle (after the timer pass), so the loop polls before it runs. */
struct sea_timer {
  uv_timer_t t;
  sea_runtime_t *rt;
  sea_timer_cb cb;
  void *data;
  uint64_t repeat;
  unsigned gen; /* counts starts, stops and the close: a callback that did one of them wins */
  bool queued;  /* in the turn queue (a 0 ms start waiting for its turn) */
  bool closing;
  uint64_t turn; /* the drain it runs in (rt->turn when it was queued) */
  sea_timer_t *prev, *next;
};

static _Thread_local unsigned timer_depth; /* plugin timer callbacks on the stack (loop thread) */

static void idle_arm(sea_runtime_t *rt);
static void on_turn_timer(uv_timer_t *h);

/* Make sure a drain comes: at once when the loop is not in a plugin's timer callback, else
 * through the idle handle (run_deferred starts turn_timer). */
static void turn_arm(sea_runtime_t *rt) {
  if (rt->turn_armed)
    return;
  rt->turn_armed = true;
  if (!rt->turn_init) {
    uv_timer_init(rt->loop, &rt->turn_timer);
    rt->turn_timer.data = rt;
    rt->turn_init = true;
  }
  if (timer_depth > 0) {
    rt->turn_via_idle = true;
    idle_arm(rt);
  } else {
    uv_timer_start(&rt->turn_timer, on_turn_timer, 0, 0);
  }
}

static void turn_unlink(sea_timer_t *t) {
  sea_runtime_t *rt = t->rt;
  if (!t->queued)
    return;
  t->queued = false;
  if (t->prev)
    t->prev->next = t->next;
  else
    rt->turn_head = t->next;
  if (t->next)
    t->next->prev = t->prev;
  else
    rt->turn_tail = t->prev;
  t->prev = t->next = NULL;
}

static void on_timer(uv_timer_t *h) {
  sea_timer_t *t = h->data;
  timer_depth++;
  t->cb(t, t->data);
  timer_depth--;
}

static sea_timer_t *timer_init(sea_runtime_t *rt, sea_timer_cb cb, void *data) {
  sea_timer_t *t = sea__calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  uv_timer_init(rt->loop, &t->t);
  t->t.data = t;
  t->rt = rt;
  t->cb = cb;
  t->data = data;
  return t;
}

static int timer_start(sea_timer_t *t, uint64_t timeout, uint64_t repeat) {
  if (t == NULL)
    return SEA_EINVAL;
  if (timeout == 0 && t->queued) { /* the hot path (a kick per send): already waiting, runs once */
    t->repeat = repeat;
    return 0;
  }
  if (t->closing || t->cb == NULL)
    return SEA_EINVAL;
  t->gen++;
  t->repeat = repeat;
  if (timeout > 0) {
    turn_unlink(t);
    uv_timer_start(&t->t, on_timer, timeout, repeat);
    return 0;
  }
  uv_timer_stop(&t->t);
  sea_runtime_t *rt = t->rt;
  t->queued = true;
  t->turn = rt->turn;
  t->prev = rt->turn_tail;
  t->next = NULL;
  if (rt->turn_tail)
    rt->turn_tail->next = t;
  else
    rt->turn_head = t;
  rt->turn_tail = t;
  turn_arm(rt);
  return 0;
}

static void timer_stop(sea_timer_t *t) {
  if (t == NULL || t->closing)
    return;
  t->gen++;
  turn_unlink(t);
  uv_timer_stop(&t->t);
}

static void timer_close(sea_timer_t *t) {
  if (t == NULL || t->closing)
    return;
  timer_stop(t);
  t->closing = true;
  uv_close((uv_handle_t *)&t->t, close_free);
}

/* ABI 1.0's timer_start. */
static sea_timer_t *timer_new(sea_runtime_t *rt, uint64_t timeout, uint64_t repeat, sea_timer_cb cb,
                              void *data) {
  sea_timer_t *t = timer_init(rt, cb, data);
  if (t != NULL)
    timer_start(t, timeout, repeat);
  return t;
}

/* Run the timers queued before this drain began; what their callbacks queue waits for the next
 * one, after the loop has polled. A repeating timer then goes on every repeat ms, unless its
 * callback started, stopped or closed it. */
static void on_turn_timer(uv_timer_t *h) {
  sea_runtime_t *rt = h->data;
  uint64_t turn = rt->turn++;
  rt->turn_armed = false;
  timer_depth++; /* what the callbacks queue is armed through the idle handle */
  while (rt->turn_head && rt->turn_head->turn <= turn) {
    sea_timer_t *t = rt->turn_head;
    turn_unlink(t);
    unsigned gen = t->gen;
    t->cb(t, t->data);
    /* t is still allocated here: a close frees it in a close callback, on a later turn. */
    if (t->gen == gen && t->repeat > 0)
      uv_timer_start(&t->t, on_timer, t->repeat, t->repeat);
  }
  timer_depth--;
}

struct sea_wakeup {
  uv_async_t a;
  sea_wakeup_cb cb;
  void *data;
};

static void on_async(uv_async_t *a) {
  sea_wakeup_t *w = a->data;
  w->cb(w, w->data);
}

static sea_wakeup_t *wakeup_new(sea_runtime_t *rt, sea_wakeup_cb cb, void *data) {
  sea_wakeup_t *w = sea__calloc(1, sizeof *w);
  if (w == NULL)
    return NULL;
  if (uv_async_init(rt->loop, &w->a, on_async) != 0) {
    sea__free(w);
    return NULL;
  }
  w->a.data = w;
  w->cb = cb;
  w->data = data;
  return w;
}

static void wakeup_send(sea_wakeup_t *w) {
  uv_async_send(&w->a);
}

static void wakeup_close(sea_wakeup_t *w) {
  if (w != NULL)
    uv_close((uv_handle_t *)&w->a, close_free);
}

typedef struct work {
  uv_work_t req;
  sea_work_cb work;
  sea_after_work_cb after;
  void *data;
} work_t;

static void on_work(uv_work_t *req) {
  work_t *w = req->data;
  w->work(w->data);
}

static void on_after_work(uv_work_t *req, int status) {
  work_t *w = req->data;
  if (w->after)
    w->after(w->data, status == UV_ECANCELED ? SEA_ECANCELED : status < 0 ? SEA_EIO : 0);
  sea__free(w);
}

static int queue_work(sea_runtime_t *rt, sea_work_cb work, sea_after_work_cb after, void *data) {
  work_t *w = sea__calloc(1, sizeof *w);
  if (w == NULL)
    return SEA_ENOMEM;
  w->req.data = w;
  w->work = work;
  w->after = after;
  w->data = data;
  if (uv_queue_work(rt->loop, &w->req, on_work, on_after_work) != 0) {
    sea__free(w);
    return SEA_EIO;
  }
  return 0;
}

struct sea_fswatch {
  uv_fs_event_t ev;
  sea_fswatch_cb cb;
  void *data;
};

static void on_fs_event(uv_fs_event_t *ev, const char *name, int events, int status) {
  sea_fswatch_t *w = ev->data;
  w->cb(w, status < 0 ? SEA_EIO : 0, w->data);
}

static sea_fswatch_t *fswatch_start(sea_runtime_t *rt, const char *path, sea_fswatch_cb cb,
                                    void *data) {
  sea_fswatch_t *w = sea__calloc(1, sizeof *w);
  if (w == NULL)
    return NULL;
  w->cb = cb;
  w->data = data;
  uv_fs_event_init(rt->loop, &w->ev);
  w->ev.data = w;
  if (uv_fs_event_start(&w->ev, on_fs_event, path, 0) != 0) {
    uv_close((uv_handle_t *)&w->ev, close_free);
    return NULL;
  }
  return w;
}

static void fswatch_stop(sea_fswatch_t *w) {
  if (w != NULL)
    uv_close((uv_handle_t *)&w->ev, close_free);
}

static uint64_t now_ms(sea_runtime_t *rt) {
  return uv_now(rt->loop);
}

static const char *host_stream_key(const char *key, size_t len) {
  return sea_stream_key(key, len, NULL);
}

static void host_batch_release(const sea_batch_t *b) {
  sea_batch_release(b);
}

static void set_errorv(sea_runtime_t *rt, const char *fmt, va_list ap) {
  sea__vfmt(rt->errmsg, sizeof rt->errmsg, fmt, ap);
}

static void set_error(sea_runtime_t *rt, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_errorv(rt, fmt, ap);
  va_end(ap);
}

/* Errors bound to the handle: what the plugin says about the call on it that is running now
 * (streamer*.c read it with sea__said). */
static void streamer_errorv(sea_streamer_t *s, const char *fmt, va_list ap) {
  sea__vfmt(s->said, sizeof s->said, fmt, ap);
}
static void producer_errorv(sea_producer_t *p, const char *fmt, va_list ap) {
  sea__vfmt(p->said, sizeof p->said, fmt, ap);
}
static void consumer_errorv(sea_consumer_t *c, const char *fmt, va_list ap) {
  sea__vfmt(c->said, sizeof c->said, fmt, ap);
}

#define SEA__VARIADIC(name, type)                                                                  \
  static void name(type h, const char *fmt, ...) SEA__PRINTF(2, 3);                                \
  static void name(type h, const char *fmt, ...) {                                                 \
    va_list ap;                                                                                    \
    va_start(ap, fmt);                                                                             \
    name##v(h, fmt, ap);                                                                           \
    va_end(ap);                                                                                    \
  }
SEA__VARIADIC(streamer_error, sea_streamer_t *)
SEA__VARIADIC(producer_error, sea_producer_t *)
SEA__VARIADIC(consumer_error, sea_consumer_t *)
#undef SEA__VARIADIC

/* The va_list twins of the members streamer.c implements: the message is formatted here and
 * handed on whole (these are the error paths; a format costs nothing there). */
static void consumer_endv(sea_consumer_t *c, int status, const char *fmt, va_list ap) {
  char msg[SEA__ERRMSG_MAX];
  sea__vfmt(msg, sizeof msg, fmt, ap);
  sea__consumer_end(c, status, "%s", msg);
}

static void producer_failv(sea_producer_t *p, int status, const char *fmt, va_list ap) {
  char msg[SEA__ERRMSG_MAX];
  sea__vfmt(msg, sizeof msg, fmt, ap);
  sea__producer_fail(p, status, "%s", msg);
}

static void op_donev(sea_op_t *op, int status, const char *fmt, va_list ap) {
  if (fmt == NULL || status >= 0) {
    sea__op_done(op, status, NULL); /* NULL: the host words the error from the status */
    return;
  }
  char msg[SEA__ERRMSG_MAX];
  sea__vfmt(msg, sizeof msg, fmt, ap);
  sea__op_done(op, status, "%s", msg);
}

const sea_host_t sea__host = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_host_t),
    .log = sea__log,
    .alloc = sea__malloc,
    .calloc = sea__calloc,
    .realloc = sea__realloc,
    .free = sea__free,
    .watch_start = watch_start,
    .watch_update = watch_update,
    .watch_stop = watch_stop,
    .timer_new = timer_new,
    .timer_close = timer_close,
    .wakeup_new = wakeup_new,
    .wakeup_send = wakeup_send,
    .wakeup_close = wakeup_close,
    .queue_work = queue_work,
    .now_ms = now_ms,
    .block_new = sea_block_new,
    .block_ref = sea_block_ref,
    .block_unref = sea_block_unref,
    .block_data = sea_block_data,
    .batch_new = sea__batch_new,
    .batch_release = host_batch_release,
    .stream_key = host_stream_key,
    .format_timestamp = sea_format_timestamp,
    .parse_timestamp = sea_parse_timestamp,
    .now_us = sea_now_us,
    .option_get = sea_options_get,
    .option_count = sea_options_count,
    .option_at = sea_options_at,
    .deliver = sea__deliver,
    .consumer_end = sea__consumer_end,
    .receipt = sea__receipt,
    .producer_ready = sea__producer_ready,
    .producer_fail = sea__producer_fail,
    .op_done = sea__op_done,
    .set_error = set_error,
    .uri_path_only = sea__uri_path_only,
    .fswatch_start = fswatch_start,
    .fswatch_stop = fswatch_stop,
    .consumer_revoked = sea__consumer_revoked,
    .option_unknown = sea__option_unknown,
    .option_u64 = sea__option_u64,
    .option_bool = sea__option_bool,
    .option_enum = sea__option_enum,
    .option_str = sea__option_str,
    /* ABI 1.4 (loop) */
    .timer_init = timer_init,
    .timer_start = timer_start,
    .timer_stop = timer_stop,
    .logv = vlog,
    .consumer_endv = consumer_endv,
    .producer_failv = producer_failv,
    .op_donev = op_donev,
    .set_errorv = set_errorv,
    .streamer_error = streamer_error,
    .streamer_errorv = streamer_errorv,
    .producer_error = producer_error,
    .producer_errorv = producer_errorv,
    .consumer_error = consumer_error,
    .consumer_errorv = consumer_errorv,
};

/* ---- deferred calls ----
 * Callbacks into user code that a plugin triggers (op completions, drain, end) run from here, on
 * the next loop turn, so user code can close or re-enter a handle without pulling the plugin's
 * state from under the plugin function that is still on the stack. */

static void run_deferred(uv_idle_t *h) {
  sea_runtime_t *rt = h->data;
  /* The next drain of plugins' 0 ms timers, asked for during the timer pass: after the poll. */
  if (rt->turn_via_idle) {
    rt->turn_via_idle = false;
    uv_timer_start(&rt->turn_timer, on_turn_timer, 0, 0);
  }
  /* Run only what is queued now; what these calls queue runs on the next turn. Each call stays
   * in the queue until its turn, so a close can still cancel calls about the closed object. */
  sea__deferred_t *last = rt->defer_tail;
  while (rt->defer_head) {
    sea__deferred_t *d = rt->defer_head;
    rt->defer_head = d->next;
    if (rt->defer_head == NULL)
      rt->defer_tail = NULL;
    if (d->fn)
      d->fn(d->arg, d->arg2);
    bool was_last = d == last;
    sea__free(d);
    if (was_last)
      break;
  }
  if (rt->defer_head == NULL)
    uv_idle_stop(&rt->defer_idle);
}

/* Make sure run_deferred comes: an active idle handle also makes the loop poll without waiting. */
static void idle_arm(sea_runtime_t *rt) {
  if (!rt->defer_init) {
    uv_idle_init(rt->loop, &rt->defer_idle);
    rt->defer_idle.data = rt;
    rt->defer_init = true;
  }
  uv_idle_start(&rt->defer_idle, run_deferred);
}

int sea__defer(sea_runtime_t *rt, void (*fn)(void *, void *), void *arg, void *arg2) {
  sea__deferred_t *d = sea__calloc(1, sizeof *d);
  if (d == NULL)
    return SEA_ENOMEM;
  d->fn = fn;
  d->arg = arg;
  d->arg2 = arg2;
  if (rt->defer_tail)
    rt->defer_tail->next = d;
  else
    rt->defer_head = d;
  rt->defer_tail = d;
  idle_arm(rt);
  return 0;
}

/* Neutralise queued calls about an object that is going away. */
void sea__defer_cancel(sea_runtime_t *rt, void *arg) {
  for (sea__deferred_t *d = rt->defer_head; d; d = d->next)
    if (d->arg == arg)
      d->fn = NULL;
}
