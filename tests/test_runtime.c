/* test_runtime.c: the services the host table lends to plugins (fd watches, timers, cross-thread
 * wakeups, work on a thread), default ports, and the stdio backend's in-process sharing. */
#include <pthread.h>
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

static int rec_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                       const sea_options_t *o, void **impl) {
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
static int rec_popen(void *s, sea_producer_t *p, const sea_open_args_t *a, void **impl) {
  return 0;
}
static int rec_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  return 0;
}
static void rec_pclose(void *impl) {
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
    .connect = rec_connect,
    .disconnect = rec_disconnect,
    .producer_open = rec_popen,
    .producer_send = rec_send,
    .producer_close = rec_pclose,
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
    H->timer_stop(t);
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
  H->timer_start(rt, 1, 1, on_timer, NULL);
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
  H->timer_stop(t);
  if (++chain_steps < CHAIN_CAP && chain_at_read == 0)
    H->timer_start(data, 0, 0, on_chain, data);
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
  H->timer_start(rt, 0, 0, on_chain, rt);
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

int main(int argc, char **argv) {
  test_loop_services();
  test_zero_timer_chain();
  test_stdio_sharing(0);
  test_stdio_sharing(1);
  return test_report();
}
