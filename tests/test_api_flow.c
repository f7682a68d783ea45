/* test_api_flow.c: what the host does for every backend (plugin ABI 1.4): it completes a flush or
 * an end from the receipts of the sends made before it, and holds deliveries while a consumer is
 * paused. A backend made for the test, ctl://, does only what the test tells it: a receipt for
 * send i with a status, a producer failure, a batch delivered now; and it records the hints the
 * host gives it (push, pause, resume). So the order of events is the test's, exactly. */
/* A user program that also plays a plugin in-process (the ctl:// backend): both headers. */
#define SEA_HOST_INTERNAL
#include <seastreamer/plugin.h>
#include <seastreamer/seastreamer.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

/* ---- the ctl:// backend ---- */

#define CTL_MAX 64

static const sea_host_t *ctl_host;

typedef struct ctl {
  sea_producer_t *p;
  sea_consumer_t *c;
  void *tokens[CTL_MAX]; /* the host's token of send i */
  int sends;
  int pushes, ends; /* producer_push calls, and those with end = 1 */
  int pauses, resumes;
} ctl_t;

static ctl_t ctl; /* one producer and one consumer at a time */

static int ctl_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                       const sea_options_t *o, void **impl) {
  (void)rt, (void)s, (void)uri, (void)o;
  *impl = &ctl;
  return 0;
}
static void ctl_disconnect(void *impl) {
  (void)impl;
}
static int ctl_producer_open(void *s, sea_producer_t *p, const sea_open_args_t *a, void **impl) {
  (void)s, (void)a;
  ctl.p = p;
  ctl.sends = 0;
  *impl = &ctl;
  return 0;
}
static int ctl_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  (void)impl, (void)m, (void)flags;
  if (ctl.sends == CTL_MAX)
    return SEA_EAGAIN;
  ctl.tokens[ctl.sends++] = token;
  return 0;
}
static void ctl_push(void *impl, int end) {
  (void)impl;
  ctl.pushes++;
  ctl.ends += end;
}
static void ctl_producer_close(void *impl) {
  (void)impl;
  ctl.p = NULL;
}
static int ctl_consumer_open(void *s, sea_consumer_t *c, const sea_open_args_t *a, void **impl) {
  (void)s, (void)a;
  ctl.c = c;
  *impl = &ctl;
  return 0;
}
static int ctl_consumer_start(void *impl) {
  (void)impl;
  return 0;
}
static int ctl_pause(void *impl) {
  (void)impl;
  ctl.pauses++;
  return 0;
}
static int ctl_resume(void *impl) {
  (void)impl;
  ctl.resumes++;
  return 0;
}
static void ctl_consumer_close(void *impl) {
  (void)impl;
  ctl.c = NULL;
}

static const char *const ctl_schemes[] = {"ctl", NULL};
static const sea_plugin_t ctl_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = "ctl",
    .schemes = ctl_schemes,
    .version = "1",
    .caps = SEA_CAP_REALTIME,
    .connect = ctl_connect,
    .disconnect = ctl_disconnect,
    .producer_open = ctl_producer_open,
    .producer_send = ctl_send,
    .producer_close = ctl_producer_close,
    .consumer_open = ctl_consumer_open,
    .consumer_start = ctl_consumer_start,
    .consumer_pause = ctl_pause,
    .consumer_resume = ctl_resume,
    .consumer_close = ctl_consumer_close,
    .producer_push = ctl_push,
};

static const sea_plugin_t *ctl_entry(const sea_host_t *host) {
  ctl_host = host;
  return &ctl_plugin;
}

/* The backend's receipt for send i. */
static void ctl_receipt(int i, int status) {
  sea_meta_t meta = {.stream_key = ctl_host->stream_key("k", 1), .seq = (uint64_t)i};
  ctl_host->receipt(ctl.p, ctl.tokens[i], status, status == 0 ? &meta : NULL);
}

/* The backend delivers one batch of the messages first .. first + n - 1 (payloads "0", "1", ...).
 */
static const char *const digits[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static void ctl_deliver(int first, int n) {
  sea_batch_t *b = ctl_host->batch_new((size_t)n);
  CHECK(b != NULL);
  for (int i = 0; i < n; i++) {
    sea_message_t *m = &b->msgs[b->count++];
    memset(m, 0, sizeof *m);
    m->meta.stream_key = ctl_host->stream_key("k", 1);
    m->meta.seq = (uint64_t)(first + i);
    m->payload.data = (const uint8_t *)digits[first + i];
    m->payload.len = 1;
  }
  ctl_host->deliver(ctl.c, b);
}

/* ---- the test's side ---- */

static void turns(sea_runtime_t *rt, int n) {
  for (int i = 0; i < n; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
}

static sea_runtime_t *new_runtime(sea_streamer_t **s) {
  sea_runtime_t *rt = NULL;
  setenv("SEASTREAMER_PLUGIN_DIR", "/nonexistent", 1); /* only ctl:// */
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  CHECK_EQ_INT(sea_runtime_register_plugin(rt, ctl_entry, "(test ctl)"), 0);
  CHECK_EQ_INT(sea_connect(rt, "ctl://x/k", NULL, s), 0);
  return rt;
}

typedef struct flow {
  int receipts, failed;   /* receipts given to the user: ok, failed */
  int done[8], status[8]; /* per flush: done count, status */
  int receipts_at[8];     /* receipts the user had when flush i completed */
} flow_t;

static flow_t fl;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  (void)p, (void)token, (void)meta;
  if (status == 0)
    fl.receipts++;
  else
    fl.failed++;
}

static void on_flush(void *data, int status) {
  int i = (int)(intptr_t)data;
  fl.done[i]++;
  fl.status[i] = status;
  fl.receipts_at[i] = fl.receipts + fl.failed;
}

static void send(sea_producer_t *p) {
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), 0);
}

static void flush(sea_producer_t *p, int i) {
  CHECK_EQ_INT(sea_producer_flush(p, on_flush, (void *)(intptr_t)i), 0);
}

/* A flush is done once every send made before it has its receipt, whatever order they come in,
 * and not before; a send made after it is not waited for. */
static void test_flush_waits_for_earlier_receipts(void) {
  sea_streamer_t *s;
  sea_runtime_t *rt = new_runtime(&s);
  sea_producer_t *p;
  memset(&fl, 0, sizeof fl);
  memset(&ctl, 0, sizeof ctl);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  sea_producer_set_callbacks(p, on_receipt, NULL);

  /* Nothing outstanding: done, on a later turn (never inside the call). */
  flush(p, 0);
  CHECK_EQ_INT(fl.done[0], 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[0], 1);
  CHECK_EQ_INT(fl.status[0], 0);

  send(p);                     /* send 0 */
  send(p);                     /* send 1 */
  send(p);                     /* send 2 */
  flush(p, 1);                 /* waits for 0, 1, 2 */
  CHECK_EQ_INT(ctl.pushes, 2); /* the backend is told to write out, each time */
  CHECK_EQ_INT(ctl.ends, 0);
  send(p);     /* send 3 */
  flush(p, 2); /* waits for 0 .. 3 */
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[1] + fl.done[2], 0);
  ctl_receipt(2, 0); /* out of order: 2, then 0 */
  ctl_receipt(0, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[1] + fl.done[2], 0); /* 1 is still outstanding */
  ctl_receipt(3, 0);                        /* the send after flush 1 */
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[1] + fl.done[2], 0);
  ctl_receipt(1, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[1], 1);
  CHECK_EQ_INT(fl.status[1], 0);
  CHECK_EQ_INT(fl.receipts_at[1], 4);
  CHECK_EQ_INT(fl.done[2], 1);
  CHECK_EQ_INT(fl.status[2], 0);

  /* The later flush completes without waiting for what came after the earlier one. */
  send(p); /* send 4 */
  flush(p, 3);
  send(p); /* send 5 */
  flush(p, 4);
  ctl_receipt(4, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[3], 1);
  CHECK_EQ_INT(fl.receipts_at[3], 5);
  CHECK_EQ_INT(fl.done[4], 0);
  ctl_receipt(5, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[4], 1);
  CHECK_EQ_INT(fl.status[4], 0);

  /* A receipt that failed fails the flushes made after that send, and only those. */
  send(p); /* send 6 */
  flush(p, 5);
  send(p); /* send 7 */
  flush(p, 6);
  ctl_receipt(7, SEA_EIO);
  ctl_receipt(6, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[5], 1);
  CHECK_EQ_INT(fl.status[5], 0);
  CHECK_EQ_INT(fl.done[6], 1);
  CHECK_EQ_INT(fl.status[6], SEA_EIO);
  CHECK_CONTAINS(sea_producer_errmsg(p), "flush: a message sent before it failed");

  /* End: a flush after which the backend writes its end marker (push with end = 1), and no send. */
  send(p); /* send 8 */
  CHECK_EQ_INT(sea_producer_end(p, on_flush, (void *)(intptr_t)7), 0);
  CHECK_EQ_INT(ctl.ends, 1);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), SEA_ESTATE);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[7], 0);
  ctl_receipt(8, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[7], 1);
  CHECK_EQ_INT(fl.status[7], 0);
  sea_producer_close(p);
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* The producer fails: a waiting flush fails at once with its error (its receipts may never
 * come), and so does a flush made after. Closing cancels the rest. */
static void test_flush_fails_with_the_producer(void) {
  sea_streamer_t *s;
  sea_runtime_t *rt = new_runtime(&s);
  sea_producer_t *p;
  memset(&fl, 0, sizeof fl);
  memset(&ctl, 0, sizeof ctl);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  send(p);
  send(p);
  flush(p, 0);
  ctl_receipt(0, 0);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[0], 0);
  ctl_host->producer_fail(p, SEA_ECONNECT, "ctl: the server went away");
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[0], 1);
  CHECK_EQ_INT(fl.status[0], SEA_ECONNECT);
  CHECK_CONTAINS(sea_producer_errmsg(p), "flush: ctl: the server went away");
  flush(p, 1);
  turns(rt, 3);
  CHECK_EQ_INT(fl.done[1], 1);
  CHECK_EQ_INT(fl.status[1], SEA_ECONNECT);
  /* A flush still waiting when the producer closes is canceled; the send's receipt too. */
  sea_producer_close(p);
  turns(rt, 3);
  CHECK_EQ_INT(fl.failed, 1);
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- pause: the host holds deliveries ---- */

typedef struct got {
  char seen[32];
  int n, batches, ended, end_status;
  int pause_at; /* pause from the callback once this payload is seen (-1: never) */
} got_t;

static got_t g;

static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  g.batches++;
  for (size_t i = 0; i < b->count; i++) {
    g.seen[g.n++] = ((const char *)b->msgs[i].payload.data)[0];
    if (g.pause_at >= 0 && g.seen[g.n - 1] == '0' + g.pause_at)
      CHECK_EQ_INT(sea_consumer_pause(c), 0);
  }
}

static void on_end(sea_consumer_t *c, int status) {
  (void)c;
  g.ended++;
  g.end_status = status;
}

static void test_pause_holds_deliveries(void) {
  sea_streamer_t *s;
  sea_runtime_t *rt = new_runtime(&s);
  sea_consumer_t *c;
  memset(&g, 0, sizeof g);
  memset(&ctl, 0, sizeof ctl);
  g.pause_at = -1;
  CHECK_EQ_INT(sea_consumer_open(s, NULL, &c), 0);
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  ctl_deliver(0, 2);
  CHECK_STR(g.seen, "01");

  /* Paused: the backend is told (a hint), and what it still delivers is held, in order. */
  CHECK_EQ_INT(sea_consumer_pause(c), 0);
  CHECK_EQ_INT(ctl.pauses, 1);
  CHECK_EQ_INT(sea_consumer_pause(c), 0); /* again: nothing new to tell */
  CHECK_EQ_INT(ctl.pauses, 1);
  ctl_deliver(2, 2);
  ctl_deliver(4, 1);
  turns(rt, 3);
  CHECK_STR(g.seen, "01");
  /* Resume: the backend is told, and the held batches come on a later turn, never inside resume;
   * what it delivers meanwhile comes after them. */
  CHECK_EQ_INT(sea_consumer_resume(c), 0);
  CHECK_EQ_INT(ctl.resumes, 1);
  CHECK_STR(g.seen, "01");
  ctl_deliver(5, 1);
  CHECK_STR(g.seen, "01");
  turns(rt, 3);
  CHECK_STR(g.seen, "012345");
  ctl_deliver(6, 1);
  CHECK_STR(g.seen, "0123456");

  /* Paused from inside the callback: the batch being handed on is the user's, the next waits;
   * paused again while the held ones are handed on, the rest keep waiting. */
  g.pause_at = 7;
  ctl_deliver(7, 1);
  ctl_deliver(8, 1);
  ctl_deliver(9, 1);
  CHECK_STR(g.seen, "01234567");
  g.pause_at = 8;
  CHECK_EQ_INT(sea_consumer_resume(c), 0);
  turns(rt, 3);
  CHECK_STR(g.seen, "012345678");
  g.pause_at = -1;
  /* The backend ends while batches are held: the end comes after them. */
  ctl_host->consumer_end(c, SEA_EOF, "ctl: end");
  turns(rt, 3);
  CHECK_EQ_INT(g.ended, 0);
  CHECK_EQ_INT(sea_consumer_resume(c), 0);
  turns(rt, 3);
  CHECK_STR(g.seen, "0123456789");
  CHECK_EQ_INT(g.ended, 1);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(ctl.pauses, 3);
  CHECK_EQ_INT(ctl.resumes, 3);
  sea_consumer_close(c);

  /* Closing with batches held releases them (ASan finds a leak otherwise). */
  memset(&g, 0, sizeof g);
  g.pause_at = -1;
  CHECK_EQ_INT(sea_consumer_open(s, NULL, &c), 0);
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  CHECK_EQ_INT(sea_consumer_pause(c), 0);
  ctl_deliver(0, 3);
  sea_consumer_close(c);
  turns(rt, 3);
  CHECK_EQ_INT(g.n, 0);
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- stdio: pause is a hint that still bounds what is read ---- */

typedef struct member {
  int n;
  char last[16];
} member_t;

static void on_member_batch(sea_consumer_t *c, const sea_batch_t *b) {
  member_t *m = sea_consumer_get_data(c);
  for (size_t i = 0; i < b->count; i++) {
    size_t len = b->msgs[i].payload.len < 15 ? b->msgs[i].payload.len : 15;
    memcpy(m->last, b->msgs[i].payload.data, len);
    m->last[len] = '\0';
    m->n++;
  }
}

/* Two members of a load-balanced group on stdin, one reading key a, the other key b. While the
 * a member is paused, lines of a still go to it (nobody else wants them) and the host holds
 * them; so stdin is not read further until it resumes (else they would pile up without bound).
 * Lines are written in separate chunks, and each chunk is waited for by what the b member gets,
 * so no step depends on timing: a stopped reader leaves the next chunk in the pipe. */
static void test_stdio_paused_member_stops_reading(void) {
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  int saved = dup(0);
  CHECK_EQ_INT(dup2(fds[0], 0), 0);
  close(fds[0]);
  sea_runtime_t *rt = NULL;
  setenv("SEASTREAMER_PLUGIN_DIR", STDIO_PLUGIN_DIR, 1);
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  sea_streamer_t *sa, *sb;
  sea_consumer_t *ca, *cb;
  member_t ma = {0}, mb = {0};
  sea_options_t *o = sea_options_new();
  sea_options_set(o, "group", "g");
  CHECK_EQ_INT(sea_connect(rt, "stdio:///a", NULL, &sa), 0);
  CHECK_EQ_INT(sea_connect(rt, "stdio:///b", NULL, &sb), 0);
  CHECK_EQ_INT(sea_consumer_open(sa, o, &ca), 0);
  CHECK_EQ_INT(sea_consumer_open(sb, o, &cb), 0);
  sea_options_free(o);
  sea_consumer_set_data(ca, &ma);
  sea_consumer_set_data(cb, &mb);
  CHECK_EQ_INT(sea_consumer_start(ca, on_member_batch, NULL), 0);
  CHECK_EQ_INT(sea_consumer_start(cb, on_member_batch, NULL), 0);
  static const char chunk1[] = "[2026-11-26T10:00:00.000 | a | 0] a0\n"
                               "[2026-11-26T10:00:00.000 | b | 0] b0\n";
  static const char chunk2[] = "[2026-11-26T10:00:00.001 | a | 1] a1\n"
                               "[2026-11-26T10:00:00.001 | b | 1] b1\n";
  static const char chunk3[] = "[2026-11-26T10:00:00.002 | b | 2] b2\n";
  CHECK_EQ_INT(write(fds[1], chunk1, sizeof chunk1 - 1), (long)(sizeof chunk1 - 1));
  for (int i = 0; i < 10000 && mb.n < 1; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(ma.n, 1);
  CHECK_EQ_INT(mb.n, 1);
  CHECK_EQ_INT(sea_consumer_pause(ca), 0);
  CHECK_EQ_INT(write(fds[1], chunk2, sizeof chunk2 - 1), (long)(sizeof chunk2 - 1));
  for (int i = 0; i < 10000 && mb.n < 2; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(mb.n, 2);
  CHECK_EQ_INT(ma.n, 1); /* a1 is held by the host */
  CHECK_EQ_INT(write(fds[1], chunk3, sizeof chunk3 - 1), (long)(sizeof chunk3 - 1));
  turns(rt, 50);
  CHECK_EQ_INT(mb.n, 2); /* not read: the paused member was given a line */
  CHECK_EQ_INT(sea_consumer_resume(ca), 0);
  for (int i = 0; i < 10000 && (mb.n < 3 || ma.n < 2); i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(ma.n, 2);
  CHECK_STR(ma.last, "a1");
  CHECK_EQ_INT(mb.n, 3);
  CHECK_STR(mb.last, "b2");
  close(fds[1]);
  sea_streamer_close(sa);
  sea_streamer_close(sb);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
  dup2(saved, 0);
  close(saved);
}

int main(void) {
  test_flush_waits_for_earlier_receipts();
  test_flush_fails_with_the_producer();
  test_pause_holds_deliveries();
  test_stdio_paused_member_stops_reading();
  return test_report();
}
