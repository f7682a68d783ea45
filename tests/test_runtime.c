/* test_runtime.c: the services the host table lends to plugins (fd watches, timers, cross-thread
 * wakeups, work on a thread), default ports, and the stdio backend's in-process sharing. */
#include <pthread.h>
#include <stdarg.h>
/* A user program that also plays a plugin in-process (rec_entry): both headers. */
#define SEA_HOST_INTERNAL
#include <seastreamer/plugin.h>
#include <seastreamer/seastreamer.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

const sea_plugin_t *sea_plugin_entry_stdio(const sea_host_t *host);

/* A plugin that only records what it is given, so the test can use the host table. */
static const sea_host_t *H;
static char connected_nodes[4][64];
static size_t connected_count;

static int rec_fail; /* the next call fails, saying why with the handle's error member */
static sea_runtime_t *rec_rt;

static int rec_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                       const sea_options_t *o, void **impl) {
  rec_rt = rt;
  if (rec_fail) {
    H->set_error(rt, "the runtime's message"); /* the handle's wins */
    H->streamer_error(s, "rec: no node answers at %s", uri->nodes[0]);
    return SEA_ECONNECT;
  }
  size_t n = strlen(uri->raw);
  if (n > 3 && strcmp(uri->raw + n - 3, ".ss") == 0)
    CHECK_EQ_INT(H->uri_path_only(uri), 0); /* a path, not keys */
  connected_count = uri->node_count;
  for (size_t i = 0; i < uri->node_count && i < 4; i++)
    snprintf(connected_nodes[i], sizeof connected_nodes[i], "%s", uri->nodes[i]);
  *impl = NULL;
  return 0;
}
static void rec_disconnect(void *impl) {
}
static sea_producer_t *rec_p;  /* the last producer opened */
static sea_consumer_t *rec_c;  /* the last consumer opened */
static sea_op_t *rec_flush_op; /* the last flush asked */
static int rec_popen(void *s, sea_producer_t *p, const sea_open_args_t *a, void **impl) {
  if (rec_fail) {
    H->producer_error(p, "rec: no room for producer %d", 2);
    return SEA_EBACKEND;
  }
  rec_p = p;
  *impl = p;
  return 0;
}
static int rec_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  if (rec_fail) {
    H->set_error(rec_rt, "the runtime's message"); /* the handle's wins */
    H->producer_error(impl, "rec: queue %d is full", 3);
    return SEA_EBACKEND;
  }
  return 0;
}
static int rec_flush(void *impl, sea_op_t *op) {
  rec_flush_op = op;
  return 0;
}
static void rec_pclose(void *impl) {
}
static int rec_copen(void *s, sea_consumer_t *c, const sea_open_args_t *a, void **impl) {
  rec_c = c;
  *impl = c;
  return 0;
}
static int rec_cstart(void *impl) {
  return 0;
}
static int rec_cpause(void *impl) {
  if (rec_fail) {
    H->consumer_error(impl, "rec: cannot pause %s", "now");
    return SEA_EBACKEND;
  }
  return 0;
}
static void rec_cclose(void *impl) {
}

static const char *const rec_schemes[] = {"rec", NULL};
static const sea_plugin_t rec_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = "rec",
    .schemes = rec_schemes,
    .version = "1",
    .default_port = 6379,
    .caps = SEA_CAP_REALTIME,
    .connect = rec_connect,
    .disconnect = rec_disconnect,
    .producer_open = rec_popen,
    .producer_send = rec_send,
    .producer_flush = rec_flush,
    .producer_close = rec_pclose,
    .consumer_open = rec_copen,
    .consumer_start = rec_cstart,
    .consumer_pause = rec_cpause,
    .consumer_close = rec_cclose,
};

static const sea_plugin_t *rec_entry(const sea_host_t *host) {
  H = host;
  return &rec_plugin;
}

/* ---- loop services ---- */

static int watch_hits, timer_hits, wakeups, work_ran, after_ran;
static pthread_t worker_thread;
static sea_wakeup_t *wk;

static void on_watch(sea_watch_t *w, int status, int events, void *data) {
  int *fds = data;
  char buf[16];
  if (events & SEA_WATCH_READABLE)
    watch_hits += read(fds[0], buf, sizeof buf) > 0;
  H->watch_stop(w); /* stopping from inside its own callback is allowed */
}

static void on_timer(sea_timer_t *t, void *data) {
  if (++timer_hits == 3)
    H->timer_close(t);
}

static void on_wakeup(sea_wakeup_t *w, void *data) {
  wakeups++;
}

static void *thread_main(void *arg) {
  H->wakeup_send(wk); /* from another thread */
  return NULL;
}

static void work(void *data) {
  work_ran = (int)(pthread_self() != *(pthread_t *)data);
}
static void after_work(void *data, int status) {
  after_ran = status == 0 ? 1 : -1;
}

static void test_loop_services(void) {
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, rec_entry, "(test rec)"), 0);
  CHECK(H != NULL);
  CHECK_EQ_INT(H->abi_major, SEA_PLUGIN_ABI_MAJOR);
  CHECK(H->struct_size >= SEA_HOST_V1_0_SIZE);

  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  sea_watch_t *w = H->watch_start(rt, fds[0], SEA_WATCH_READABLE, on_watch, fds);
  CHECK(w != NULL);
  CHECK_EQ_INT(write(fds[1], "x", 1), 1);
  H->timer_new(rt, 1, 1, on_timer, NULL);
  wk = H->wakeup_new(rt, on_wakeup, NULL);
  pthread_create(&worker_thread, NULL, thread_main, NULL);
  pthread_t self = pthread_self();
  CHECK_EQ_INT(H->queue_work(rt, work, after_work, &self), 0);
  for (int i = 0; i < 10000 && (timer_hits < 3 || !wakeups || !after_ran || !watch_hits); i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  pthread_join(worker_thread, NULL);
  CHECK_EQ_INT(watch_hits, 1);
  CHECK_EQ_INT(timer_hits, 3);
  CHECK_EQ_INT(wakeups, 1);
  CHECK_EQ_INT(work_ran, 1); /* it ran on another thread */
  CHECK_EQ_INT(after_ran, 1);
  H->wakeup_close(wk);
  close(fds[0]);
  close(fds[1]);

  /* A regular file cannot be watched by epoll: it is reported ready on every turn. */
  FILE *f = tmpfile();
  fputs("data", f);
  fflush(f);
  watch_hits = 0;
  int ffds[2] = {fileno(f), -1};
  lseek(ffds[0], 0, SEEK_SET);
  w = H->watch_start(rt, ffds[0], SEA_WATCH_READABLE, on_watch, ffds);
  CHECK(w != NULL);
  for (int i = 0; i < 100 && !watch_hits; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(watch_hits, 1);
  fclose(f);

  /* Default ports: added where a node has none, kept where it has one. */
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "rec://a,b:1,user:pw@c,[::1],[::1]:7/k", NULL, &s), 0);
  CHECK_EQ_INT(connected_count, 5);
  CHECK_STR(connected_nodes[0], "a:6379");
  CHECK_STR(connected_nodes[1], "b:1");
  CHECK_STR(connected_nodes[2], "user:pw@c:6379");
  CHECK_STR(connected_nodes[3], "[::1]:6379");
  sea_streamer_close(s);

  /* A backend whose node is a path takes the whole URI back as one node, without keys. */
  CHECK_EQ_INT(sea_connect(rt, "rec:///tmp/a,b/x.ss", NULL, &s), 0);
  CHECK_EQ_INT(connected_count, 1);
  CHECK_STR(connected_nodes[0], "/tmp/a,b/x.ss");
  CHECK_EQ_INT(sea_streamer_uri(s)->key_count, 0);
  sea_streamer_close(s);

  /* A runtime with open streamers refuses to go. */
  CHECK_EQ_INT(sea_connect(rt, "rec://a/k", NULL, &s), 0);
  CHECK_EQ_INT(sea_runtime_free(rt), SEA_EBUSY);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "1 open streamer");
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- stdio: broadcast, key filters and a load-balanced group in one process ---- */

typedef struct got {
  int n, ended;
  char lines[32][32];
} got_t;

static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  got_t *g = sea_consumer_get_data(c);
  for (size_t i = 0; i < b->count && g->n < 32; i++)
    snprintf(g->lines[g->n++], 32, "%s:%.*s", b->msgs[i].meta.stream_key,
             (int)b->msgs[i].payload.len, b->msgs[i].payload.data);
}

static void on_end(sea_consumer_t *c, int status) {
  got_t *g = sea_consumer_get_data(c);
  g->ended = status == SEA_EOF ? 1 : status;
}

static sea_consumer_t *open_consumer(sea_streamer_t *s, const char *group, got_t *g) {
  sea_options_t *o = sea_options_new();
  if (group)
    sea_options_set(o, "group", group);
  sea_consumer_t *c = NULL;
  CHECK_EQ_INT(sea_consumer_open(s, o, &c), 0);
  sea_options_free(o);
  sea_consumer_set_data(c, g);
  sea_consumer_start(c, on_batch, on_end);
  return c;
}

static void test_stdio_sharing(int linked_statically) {
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  int saved = dup(0);
  dup2(fds[0], 0);
  close(fds[0]);
  const char *input = "[a] 1\n[b] 2\n[a] 3\n[a] 4\nall\n[a] 5\n";
  CHECK_EQ_INT(write(fds[1], input, strlen(input)), (int)strlen(input));
  close(fds[1]);

  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  if (linked_statically)
    CHECK_EQ_INT(sea_runtime_register_plugin(rt, sea_plugin_entry_stdio, "(static stdio)"), 0);
  sea_streamer_t *sa, *sall;
  CHECK_EQ_INT(sea_connect(rt, "stdio:///a", NULL, &sa), 0);
  CHECK_EQ_INT(sea_connect(rt, "stdio://", NULL, &sall), 0);
  got_t g1 = {0}, g2 = {0}, rt_a = {0}, everything = {0};
  open_consumer(sa, "workers", &g1);
  open_consumer(sa, "workers", &g2);
  open_consumer(sa, NULL, &rt_a);
  open_consumer(sall, NULL, &everything);
  for (int i = 0; i < 10000 && !(g1.ended && g2.ended && rt_a.ended && everything.ended); i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK_EQ_INT(everything.n, 6);
  CHECK_EQ_INT(rt_a.n, 5); /* four of "a" and the broadcast line */
  CHECK_STR(rt_a.lines[3], "broadcast:all");
  /* The group shares a's four messages round robin; the broadcast line reaches both. */
  CHECK_EQ_INT(g1.n + g2.n, 6);
  CHECK_EQ_INT(g1.n, 3);
  CHECK_EQ_INT(g2.n, 3);
  CHECK_STR(g1.lines[0], "a:1");
  CHECK_STR(g2.lines[0], "a:3");
  CHECK_EQ_INT(g1.ended, 1);
  sea_streamer_close(sa);
  sea_streamer_close(sall);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
  dup2(saved, 0);
  close(saved);
}

/* A timer that re-arms itself with timeout 0 from its own callback ("come back next turn") must
 * let the loop poll in between: a byte waiting on a watched pipe is read within a few turns, not
 * after the whole chain (libuv 1.44 alone runs such a timer again in the same pass). */
#define CHAIN_CAP 100000
static int chain_steps, chain_at_read;

static void on_chain(sea_timer_t *t, void *data) {
  H->timer_close(t);
  if (++chain_steps < CHAIN_CAP && chain_at_read == 0)
    H->timer_new(data, 0, 0, on_chain, data);
}

static void on_chain_watch(sea_watch_t *w, int status, int events, void *data) {
  int *fds = data;
  char buf[4];
  if (read(fds[0], buf, sizeof buf) > 0 && chain_at_read == 0)
    chain_at_read = chain_steps;
  H->watch_stop(w);
}

static void test_zero_timer_chain(void) {
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, rec_entry, "(test rec)"), 0);
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  CHECK_EQ_INT(write(fds[1], "x", 1), 1);
  H->timer_new(rt, 0, 0, on_chain, rt);
  H->watch_start(rt, fds[0], SEA_WATCH_READABLE, on_chain_watch, fds);
  for (int i = 0; i < 1000 && chain_at_read == 0; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK(chain_at_read > 0);
  CHECK(chain_at_read < 10); /* turns of the loop, not time: the read waits for at most a few */
  for (int i = 0; i < 100; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT); /* the last timer closes */
  close(fds[0]);
  close(fds[1]);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- timers: init, start, stop, close (ABI 1.4) ---- */

typedef struct tick {
  sea_timer_t *t;
  int hits;
  int stop_at;    /* stop the timer in the callback at this hit (0: never) */
  int close_at;   /* close it in the callback at this hit */
  int restart_at; /* start it again with timeout 0 at this hit */
} tick_t;

static void on_tick(sea_timer_t *t, void *data) {
  tick_t *k = data;
  CHECK(t == k->t);
  k->hits++;
  if (k->hits == k->stop_at)
    H->timer_stop(t);
  if (k->hits == k->close_at) {
    H->timer_close(t);
    k->t = NULL;
  }
  if (k->hits == k->restart_at)
    CHECK_EQ_INT(H->timer_start(t, 0, 0), 0);
}

/* Run the loop until *hits reaches want, at most max turns that do not wait (a bounded wait:
 * short sleeps between them). */
static void run_until(sea_runtime_t *rt, const int *hits, int want, int max) {
  for (int i = 0; i < max && *hits < want; i++) {
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    if (*hits < want)
      usleep(1000);
  }
}

/* Turns of the loop that wait for nothing. */
static void spin(sea_runtime_t *rt, int turns) {
  for (int i = 0; i < turns; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
}

static void test_timer_lifecycle(void) {
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, rec_entry, "(test rec)"), 0);
  CHECK(H->abi_minor >= 4);

  /* A timer that is made and closed without ever running: no callback, no leak. */
  tick_t never = {0};
  never.t = H->timer_init(rt, on_tick, &never);
  CHECK(never.t != NULL);
  spin(rt, 3);
  H->timer_close(never.t);
  H->timer_close(NULL); /* ignored */
  spin(rt, 3);
  CHECK_EQ_INT(never.hits, 0);

  /* A one-shot timer fires once and stays made: it may be started again after it fired. */
  tick_t once = {0};
  once.t = H->timer_init(rt, on_tick, &once);
  CHECK_EQ_INT(H->timer_start(once.t, 1, 0), 0);
  run_until(rt, &once.hits, 1, 2000);
  CHECK_EQ_INT(once.hits, 1);
  spin(rt, 5);
  CHECK_EQ_INT(once.hits, 1); /* once */
  CHECK_EQ_INT(H->timer_start(once.t, 1, 0), 0);
  run_until(rt, &once.hits, 2, 2000);
  CHECK_EQ_INT(once.hits, 2);

  /* Restart while running: a start replaces the pending timeout (an hour) with the new one. */
  CHECK_EQ_INT(H->timer_start(once.t, 3600 * 1000, 0), 0);
  spin(rt, 3);
  CHECK_EQ_INT(H->timer_start(once.t, 1, 0), 0);
  run_until(rt, &once.hits, 3, 2000);
  CHECK_EQ_INT(once.hits, 3);

  /* Stop, then start again: a stopped timer does not fire, and a stopped one starts again. */
  CHECK_EQ_INT(H->timer_start(once.t, 1, 0), 0);
  H->timer_stop(once.t);
  for (int i = 0; i < 20; i++) {
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    usleep(500); /* past its timeout */
  }
  CHECK_EQ_INT(once.hits, 3);
  H->timer_stop(once.t); /* stopping a stopped timer changes nothing */
  CHECK_EQ_INT(H->timer_start(once.t, 1, 0), 0);
  run_until(rt, &once.hits, 4, 2000);
  CHECK_EQ_INT(once.hits, 4);
  H->timer_close(once.t);

  /* A repeating timer stopped from its own callback, then started again. */
  tick_t rep = {.stop_at = 3};
  rep.t = H->timer_init(rt, on_tick, &rep);
  CHECK_EQ_INT(H->timer_start(rep.t, 1, 1), 0);
  run_until(rt, &rep.hits, 3, 5000);
  CHECK_EQ_INT(rep.hits, 3);
  for (int i = 0; i < 10; i++) {
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    usleep(500);
  }
  CHECK_EQ_INT(rep.hits, 3);
  rep.close_at = 5; /* and closed from its own callback */
  CHECK_EQ_INT(H->timer_start(rep.t, 1, 1), 0);
  run_until(rt, &rep.hits, 5, 5000);
  CHECK_EQ_INT(rep.hits, 5);
  CHECK(rep.t == NULL);
  for (int i = 0; i < 10; i++) {
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    usleep(500);
  }
  CHECK_EQ_INT(rep.hits, 5); /* no callback after the close (ASan: nor a use of it) */

  /* The next-turn defer (timeout 0): once per start, however often it is started before its
   * turn; not in the call that started it; a stop or a close cancels it. */
  tick_t d = {0};
  d.t = H->timer_init(rt, on_tick, &d);
  CHECK_EQ_INT(H->timer_start(d.t, 0, 0), 0);
  CHECK_EQ_INT(H->timer_start(d.t, 0, 0), 0);
  CHECK_EQ_INT(d.hits, 0);
  spin(rt, 1);
  CHECK_EQ_INT(d.hits, 1);
  spin(rt, 5);
  CHECK_EQ_INT(d.hits, 1); /* not twice */
  CHECK_EQ_INT(H->timer_start(d.t, 0, 0), 0);
  H->timer_stop(d.t);
  spin(rt, 5);
  CHECK_EQ_INT(d.hits, 1);
  /* A timeout, then 0: the defer replaces the timeout (it runs once, now, not again later). */
  CHECK_EQ_INT(H->timer_start(d.t, 1, 0), 0);
  CHECK_EQ_INT(H->timer_start(d.t, 0, 0), 0);
  spin(rt, 1);
  CHECK_EQ_INT(d.hits, 2);
  for (int i = 0; i < 10; i++) {
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    usleep(500);
  }
  CHECK_EQ_INT(d.hits, 2);
  /* 0, then every ms: the first run on the next turn, then it repeats until stopped. */
  d.stop_at = 4;
  CHECK_EQ_INT(H->timer_start(d.t, 0, 1), 0);
  spin(rt, 1);
  CHECK_EQ_INT(d.hits, 3);
  run_until(rt, &d.hits, 4, 5000);
  CHECK_EQ_INT(d.hits, 4);
  /* One started from its own callback runs on the next turn, not again in this one. */
  d.restart_at = 5;
  CHECK_EQ_INT(H->timer_start(d.t, 0, 0), 0);
  spin(rt, 1);
  CHECK_EQ_INT(d.hits, 5);
  spin(rt, 1);
  CHECK_EQ_INT(d.hits, 6);
  spin(rt, 3);
  CHECK_EQ_INT(d.hits, 6);
  /* Closed while its turn is pending: no callback. */
  CHECK_EQ_INT(H->timer_start(d.t, 0, 0), 0);
  H->timer_close(d.t);
  spin(rt, 5);
  CHECK_EQ_INT(d.hits, 6);

  /* ABI 1.0's shorthand still works: timer_new runs at once, timer_close stops and frees. */
  tick_t old = {.close_at = 2};
  old.t = H->timer_new(rt, 1, 1, on_tick, &old);
  CHECK(old.t != NULL);
  run_until(rt, &old.hits, 2, 5000);
  CHECK_EQ_INT(old.hits, 2);
  spin(rt, 3);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* A next-turn timer that starts itself again from its callback runs once per turn of the loop:
 * the loop polls between, so a byte waiting on a watched pipe is read on the first turn. */
static int step_hits, step_at_read;

static void on_step(sea_timer_t *t, void *data) {
  if (++step_hits < CHAIN_CAP && step_at_read == 0)
    H->timer_start(t, 0, 0);
}

static void on_step_watch(sea_watch_t *w, int status, int events, void *data) {
  int *fds = data;
  char buf[4];
  if (read(fds[0], buf, sizeof buf) > 0 && step_at_read == 0)
    step_at_read = step_hits;
  H->watch_stop(w);
}

static void test_defer_does_not_starve(void) {
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, rec_entry, "(test rec)"), 0);
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  sea_timer_t *t = H->timer_init(rt, on_step, NULL);
  CHECK_EQ_INT(H->timer_start(t, 0, 0), 0);
  spin(rt, 1);
  CHECK_EQ_INT(step_hits, 1);
  spin(rt, 1);
  CHECK_EQ_INT(step_hits, 2); /* one run per turn, however often it asks for the next */
  CHECK_EQ_INT(write(fds[1], "x", 1), 1);
  H->watch_start(rt, fds[0], SEA_WATCH_READABLE, on_step_watch, fds);
  for (int i = 0; i < 1000 && step_at_read == 0; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK(step_at_read > 0);
  CHECK(step_at_read <= 4); /* turns of the loop, not time */
  spin(rt, 3);
  H->timer_close(t);
  spin(rt, 3);
  close(fds[0]);
  close(fds[1]);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- the va_list twins of the printf-style members ---- */

static void set_error_f(sea_runtime_t *rt, const char *fmt, ...) SEA_PLUGIN_PRINTF(2, 3);
static void set_error_f(sea_runtime_t *rt, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  H->set_errorv(rt, fmt, ap);
  va_end(ap);
}
static void fail_f(sea_producer_t *p, int status, const char *fmt, ...) SEA_PLUGIN_PRINTF(3, 4);
static void fail_f(sea_producer_t *p, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  H->producer_failv(p, status, fmt, ap);
  va_end(ap);
}
static void done_f(sea_op_t *op, int status, const char *fmt, ...) SEA_PLUGIN_PRINTF(3, 4);
static void done_f(sea_op_t *op, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  H->op_donev(op, status, fmt, ap);
  va_end(ap);
}
static void end_f(sea_consumer_t *c, int status, const char *fmt, ...) SEA_PLUGIN_PRINTF(3, 4);
static void end_f(sea_consumer_t *c, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  H->consumer_endv(c, status, fmt, ap);
  va_end(ap);
}
static void log_f(const char *fmt, ...) SEA_PLUGIN_PRINTF(1, 2);
static void log_f(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  H->logv(SEA_LOG_DEBUG, "rec", fmt, ap);
  va_end(ap);
}

static int flushed = 1;
static void on_flushed(void *data, int status) {
  flushed = status;
}
static int ended;
static void on_ended(sea_consumer_t *c, int status) {
  ended = status;
}
static void on_nothing(sea_consumer_t *c, const sea_batch_t *b) {
}

static void test_va_list_twins(void) {
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, rec_entry, "(test rec)"), 0);
  set_error_f(rt, "rec: bad %s %d", "value", 42);
  CHECK_STR(sea_runtime_errmsg(rt), "rec: bad value 42");
  log_f("a debug line %d", 1); /* not printed at the default level; must not crash */

  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "rec://a/k", NULL, &s), 0);
  sea_producer_t *p;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  CHECK(rec_p == p);
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, NULL), 0);
  CHECK(rec_flush_op != NULL);
  done_f(rec_flush_op, SEA_EIO, "flush of %d bytes failed", 7);
  for (int i = 0; i < 10 && flushed == 1; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(flushed, SEA_EIO);
  CHECK_STR(sea_producer_errmsg(p), "flush of 7 bytes failed");
  fail_f(p, SEA_EBACKEND, "rec: server %s went away", "x:1");
  CHECK_STR(sea_producer_errmsg(p), "rec: server x:1 went away");

  sea_consumer_t *c;
  CHECK_EQ_INT(sea_consumer_open(s, NULL, &c), 0);
  CHECK(rec_c == c);
  CHECK_EQ_INT(sea_consumer_start(c, on_nothing, on_ended), 0);
  end_f(c, SEA_EIO, "rec: read %d failed", 3);
  for (int i = 0; i < 10 && ended == 0; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(ended, SEA_EIO);
  CHECK_STR(sea_consumer_errmsg(c), "rec: read 3 failed");
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- errors bound to the handle (streamer_error, producer_error, consumer_error) ---- */

static void test_handle_errors(void) {
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, rec_entry, "(test rec)"), 0);
  sea_streamer_t *s = NULL;
  rec_fail = 1;
  CHECK_EQ_INT(sea_connect(rt, "rec://a/k", NULL, &s), SEA_ECONNECT);
  CHECK_STR(sea_runtime_errmsg(rt), "rec: no node answers at a:6379");
  rec_fail = 0;
  CHECK_EQ_INT(sea_connect(rt, "rec://a/k", NULL, &s), 0);

  sea_producer_t *p = NULL;
  rec_fail = 1;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), SEA_EBACKEND);
  CHECK_STR(sea_runtime_errmsg(rt), "rec: no room for producer 2");
  rec_fail = 0;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  rec_fail = 1;
  sea_message_t m = {.payload = {.data = (const uint8_t *)"x", .len = 1}};
  CHECK_EQ_INT(sea_producer_send(p, &m, NULL), SEA_EBACKEND);
  CHECK_STR(sea_producer_errmsg(p), "send to 'k': rec: queue 3 is full");
  rec_fail = 0;
  CHECK_EQ_INT(sea_producer_send(p, &m, NULL), 0);

  sea_consumer_t *c = NULL;
  CHECK_EQ_INT(sea_consumer_open(s, NULL, &c), 0);
  rec_fail = 1;
  CHECK_EQ_INT(sea_consumer_pause(c), SEA_EBACKEND);
  CHECK_STR(sea_consumer_errmsg(c), "pause: rec: cannot pause now");
  rec_fail = 0;
  CHECK_EQ_INT(sea_consumer_pause(c), 0);
  sea_streamer_close(s);
  for (int i = 0; i < 10; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

int main(int argc, char **argv) {
  test_loop_services();
  test_zero_timer_chain();
  test_timer_lifecycle();
  test_defer_does_not_starve();
  test_va_list_twins();
  test_handle_errors();
  test_stdio_sharing(0);
  test_stdio_sharing(1);
  return test_report();
}
