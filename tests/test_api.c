/* test_api.c: the socket API and the relay against the in-memory backend, run twice: with the
 * backends loaded as .so plugins and linked in statically (argv[1] = dynamic | static). */
#include <seastreamer/seastreamer.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "test.h"
#include "test_opts.h"

SEA_PLUGIN_ENTRY_DECL(mem);
SEA_PLUGIN_ENTRY_DECL(stdio);

static int linked_statically;

static sea_runtime_t *new_runtime(void) {
  sea_runtime_t *rt = NULL;
  if (linked_statically) {
    /* No plugin dir: only what is linked in. */
    setenv("SEASTREAMER_PLUGIN_DIR", "/nonexistent", 1);
    sea_runtime_new(&rt);
    CHECK_EQ_INT(sea_runtime_register_plugin(rt, sea_plugin_entry_mem, "(static mem)"), 0);
    CHECK_EQ_INT(sea_runtime_register_plugin(rt, sea_plugin_entry_stdio, "(static stdio)"), 0);
  } else {
    sea_runtime_new(&rt);
  }
  return rt;
}

#define opts(...) TEST_OPTS(__VA_ARGS__)

/* ---- producer: receipts, flush ---- */

typedef struct counts {
  int receipts, errors, drains, done, done_status, batches, ended, end_status;
  uint64_t last_seq;
  int64_t seq_ok;
  size_t max_inflight_seen;
  char payloads[64][16];
  int npayloads;
} counts_t;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  counts_t *c = sea_producer_get_data(p);
  if (status == 0) {
    if (meta->seq != (uint64_t)c->receipts)
      c->seq_ok = 0;
    c->receipts++;
    c->last_seq = meta->seq;
  } else {
    c->errors++;
  }
}

static void on_drain(sea_producer_t *p) {
  counts_t *c = sea_producer_get_data(p);
  c->drains++;
}

static void on_done(void *data, int status) {
  counts_t *c = data;
  c->done++;
  c->done_status = status;
}

/* Records the order in which done callbacks come: each one's data is its letter. */
static char done_order[8];
static void on_done_order(void *data, int status) {
  size_t n = strlen(done_order);
  if (n + 1 < sizeof done_order)
    done_order[n] = *(const char *)data;
}

static void run_until(sea_runtime_t *rt, int *flag) {
  for (int i = 0; i < 100000 && !*flag; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

static void test_producer(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://p1/k", NULL, &s), 0);
  sea_producer_t *p;
  /* NULL where a handle or an out-pointer goes: refused, not a crash */
  CHECK_EQ_INT(sea_runtime_new(NULL), SEA_EINVAL);
  CHECK_EQ_INT(sea_producer_open(s, NULL, NULL), SEA_EINVAL);
  CHECK_EQ_INT(sea_producer_open(NULL, NULL, &p), SEA_EINVAL);
  sea_consumer_t *nk;
  CHECK_EQ_INT(sea_consumer_open(s, NULL, NULL), SEA_EINVAL);
  CHECK_EQ_INT(sea_consumer_open(NULL, NULL, &nk), SEA_EINVAL);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  CHECK_STR(sea_producer_anchored(p), "k");
  /* flushes and an end that the same receipt satisfies complete in the order asked (they came
   * last asked, first told) */
  {
    sea_streamer_t *so;
    sea_producer_t *po;
    CHECK_EQ_INT(sea_connect(rt, "mem://order/k", NULL, &so), 0);
    CHECK_EQ_INT(sea_producer_open(so, NULL, &po), 0);
    CHECK_EQ_INT(sea_producer_send_bytes(po, NULL, "x", 1, NULL), 0);
    memset(done_order, 0, sizeof done_order);
    static const char a = 'A', b = 'B', e = 'E';
    CHECK_EQ_INT(sea_producer_flush(po, on_done_order, (void *)&a), 0);
    CHECK_EQ_INT(sea_producer_flush(po, on_done_order, (void *)&b), 0);
    CHECK_EQ_INT(sea_producer_end(po, on_done_order, (void *)&e), 0);
    for (int i = 0; i < 1000 && strlen(done_order) < 3; i++)
      sea_runtime_run(rt, SEA_RUN_ONCE);
    CHECK_STR(done_order, "ABE");
    CHECK_EQ_INT(sea_producer_end(po, NULL, NULL), SEA_ESTATE); /* once is enough */
    CHECK_CONTAINS(sea_producer_errmsg(po), "end: the producer has ended already");
    sea_producer_close(po);
    sea_streamer_close(so);
  }
  CHECK_EQ_INT(sea_producer_anchor(p, NULL), SEA_EINVAL);
  CHECK_CONTAINS(sea_producer_errmsg(p), "anchor: no stream key given");
  CHECK_STR(sea_producer_anchored(p), "k");
  counts_t c = {.seq_ok = 1};
  sea_producer_set_data(p, &c);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  for (int i = 0; i < 10; i++)
    CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), 0);
  CHECK_EQ_INT(sea_producer_inflight(p), 10);
  CHECK_EQ_INT(c.receipts, 0); /* receipts are asynchronous */
  CHECK_EQ_INT(sea_producer_flush(p, on_done, &c), 0);
  run_until(rt, &c.done);
  CHECK_EQ_INT(c.done_status, 0);
  CHECK_EQ_INT(c.receipts, 10);
  CHECK(c.seq_ok);
  CHECK_EQ_INT(sea_producer_inflight(p), 0);

  /* Bad sends are refused with a message, nothing taken. */
  CHECK_EQ_INT(sea_producer_send_bytes(p, "bad key", "x", 1, NULL), SEA_EKEY);
  CHECK_CONTAINS(sea_producer_errmsg(p), "invalid stream key 'bad key'");
  char big[300];
  memset(big, 'k', sizeof big);
  big[299] = '\0';
  CHECK_EQ_INT(sea_producer_send_bytes(p, big, "x", 1, NULL), SEA_EKEY);
  CHECK_CONTAINS(sea_producer_errmsg(p), "send: stream key of 299 bytes (the limit is 249)");
  sea_producer_close(p);

  sea_options_t *o = opts("max_payload=4", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "12345", 5, NULL), SEA_ETOOBIG);
  CHECK_CONTAINS(
      sea_producer_errmsg(p),
      "payload of 5 bytes exceeds max_payload (4 bytes; the producer option max_payload raises it");
  CHECK_EQ_INT(sea_producer_inflight(p), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "1234", 4, NULL), 0);
  sea_producer_close(p); /* outstanding receipt canceled, no leak */

  /* A streamer without an anchor needs a key. */
  sea_streamer_t *s2;
  CHECK_EQ_INT(sea_connect(rt, "mem://p1", NULL, &s2), 0);
  CHECK_EQ_INT(sea_producer_open(s2, NULL, &p), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), SEA_EKEY);
  CHECK_CONTAINS(sea_producer_errmsg(p), "not anchored");
  CHECK_EQ_INT(sea_producer_send_bytes(p, "other", "x", 1, NULL), 0);
  sea_streamer_close(s2); /* closes the producer too */

  o = opts("max_inflight=zero", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "max_inflight=zero");
  sea_options_free(o);
  o = opts("nosuch=1", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "unknown option 'nosuch' (common keys: mode, group,");
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "; mem keys: capacity, fail_after, hold_receipts)");
  CHECK(strstr(sea_runtime_errmsg(rt), "did you mean") == NULL);
  sea_options_free(o);
  /* A typo suggests the nearest key: the backend's, or a common one (a swap is one edit). */
  o = opts("capacty=1", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "unknown option 'capacty': did you mean 'capacity'?");
  sea_options_free(o);
  o = opts("strat=1", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "unknown option 'strat': did you mean 'start'?");
  sea_options_free(o);
  /* Too far to be a typo of anything: two edits in a two-letter key. */
  o = opts("zz=1", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), SEA_EOPTION);
  CHECK(strstr(sea_runtime_errmsg(rt), "did you mean") == NULL);
  sea_options_free(o);

  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- backpressure: the host's bound and the plugin's own ---- */

static void test_backpressure(const char *opt, int expect_inflight_max) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  sea_producer_t *p;
  CHECK_EQ_INT(sea_connect(rt, "mem://bp/k", NULL, &s), 0);
  sea_options_t *o = opts(opt, NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  counts_t c = {.seq_ok = 1};
  sea_producer_set_data(p, &c);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  int sent = 0, refused = 0;
  for (int round = 0; round < 1000 && sent < 100; round++) {
    int rc;
    while (sent < 100 && (rc = sea_producer_send_bytes(p, NULL, "m", 1, NULL)) == 0) {
      sent++;
      if (sea_producer_inflight(p) > c.max_inflight_seen)
        c.max_inflight_seen = sea_producer_inflight(p);
    }
    if (sent < 100) {
      CHECK_EQ_INT(rc, SEA_EAGAIN);
      refused++;
      int drains = c.drains;
      for (int i = 0; i < 1000 && c.drains == drains; i++)
        sea_runtime_run(rt, SEA_RUN_ONCE);
      CHECK(c.drains > drains); /* woken, not left waiting */
    }
  }
  CHECK_EQ_INT(sent, 100);
  CHECK(refused > 0);
  CHECK((int)c.max_inflight_seen <= expect_inflight_max);
  CHECK_EQ_INT(sea_producer_flush(p, on_done, &c), 0);
  run_until(rt, &c.done);
  CHECK_EQ_INT(c.receipts, 100);
  CHECK(c.seq_ok);
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- consumer ---- */

static void on_batch(sea_consumer_t *k, const sea_batch_t *b) {
  counts_t *c = sea_consumer_get_data(k);
  c->batches++;
  for (size_t i = 0; i < b->count && c->npayloads < 64; i++) {
    const sea_message_t *m = &b->msgs[i];
    snprintf(c->payloads[c->npayloads++], 16, "%.*s", (int)m->payload.len, m->payload.data);
  }
}

static void on_end(sea_consumer_t *k, int status) {
  counts_t *c = sea_consumer_get_data(k);
  c->ended++;
  c->end_status = status;
}

static void produce_n(sea_runtime_t *rt, sea_streamer_t *s, int n, const char *prefix) {
  sea_producer_t *p;
  sea_producer_open(s, NULL, &p);
  counts_t c = {0};
  sea_producer_set_data(p, &c);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  char buf[32];
  for (int i = 0; i < n; i++) {
    int len = snprintf(buf, sizeof buf, "%s%d", prefix, i);
    sea_producer_send_bytes(p, NULL, buf, (size_t)len, NULL);
  }
  sea_producer_flush(p, on_done, &c);
  run_until(rt, &c.done);
  sea_producer_close(p);
}

/* Open a consumer at `start`, read to the end, and leave it open for more checks. */
static sea_consumer_t *consume_from(sea_runtime_t *rt, sea_streamer_t *s, const char *start,
                                    counts_t *c) {
  sea_consumer_t *k = NULL;
  sea_options_t *o = opts(start, "stop_at_end=true", NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &k), 0);
  sea_options_free(o);
  memset(c, 0, sizeof *c);
  sea_consumer_set_data(k, c);
  CHECK_EQ_INT(sea_consumer_start(k, on_batch, on_end), 0);
  run_until(rt, &c->ended);
  return k;
}

static void test_consumer(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://c1/k", NULL, &s), 0);
  produce_n(rt, s, 5, "m");
  counts_t c;
  sea_consumer_t *k = consume_from(rt, s, "start=beginning", &c);
  CHECK_EQ_INT(c.end_status, SEA_EOF);
  CHECK_EQ_INT(c.npayloads, 5);
  CHECK_STR(c.payloads[0], "m0");
  CHECK_STR(c.payloads[4], "m4");
  /* Realtime consumers have no position to commit: a clear error. */
  CHECK_EQ_INT(sea_consumer_commit(k, NULL, NULL), SEA_ESTATE);
  CHECK_CONTAINS(sea_consumer_errmsg(k), "realtime consumer has no position");
  CHECK_EQ_INT(sea_consumer_ack_pos(k, "k", 0, 1), SEA_ESTATE);
  CHECK_CONTAINS(sea_consumer_errmsg(k), "ack_pos: a realtime consumer has no position");
  sea_consumer_close(k);

  /* ack_pos: a backend without it says so by name; a bad stream key is named. */
  sea_options_t *go = opts("mode=resumable", "group=g", NULL);
  CHECK_EQ_INT(sea_consumer_open(s, go, &k), 0);
  sea_options_free(go);
  CHECK_EQ_INT(sea_consumer_ack_pos(k, "k", 0, 1), SEA_ENOTSUP);
  CHECK_STR(sea_consumer_errmsg(k), "ack_pos: not supported by mem");
  CHECK_EQ_INT(sea_consumer_ack_pos(k, "no spaces", 0, 1), SEA_EKEY);
  CHECK_CONTAINS(sea_consumer_errmsg(k), "ack_pos: invalid stream key 'no spaces'");
  CHECK_EQ_INT(sea_consumer_ack_pos(k, NULL, 0, 1), SEA_EINVAL);
  sea_consumer_close(k);

  /* start=2 rewinds to a sequence number, start=-2 to two before the end. */
  k = consume_from(rt, s, "start=2", &c);
  CHECK_EQ_INT(c.npayloads, 3);
  CHECK_STR(c.payloads[0], "m2");
  sea_consumer_close(k);

  k = consume_from(rt, s, "start=-2", &c);
  CHECK_EQ_INT(c.npayloads, 2);
  CHECK_STR(c.payloads[0], "m3");
  sea_consumer_close(k);

  CHECK_EQ_INT(sea_consumer_open(s, NULL, &k), 0);
  memset(&c, 0, sizeof c);
  sea_consumer_set_data(k, &c);
  sea_consumer_start(k, on_batch, on_end);
  sea_pos_t pos = {SEA_POS_BEGINNING, 0};
  CHECK_EQ_INT(sea_consumer_rewind(k, pos, on_done, &c), 0);
  run_until(rt, &c.done);
  CHECK_EQ_INT(c.done_status, 0);
  c.done = 0;
  CHECK_EQ_INT(sea_consumer_seek(k, sea_now_us() + 3600000000LL, on_done, &c), 0);
  run_until(rt, &c.done);
  CHECK_EQ_INT(c.done_status, 0);
  /* An operation outstanding at close is canceled, its callback still called once. */
  c.done = 0;
  CHECK_EQ_INT(sea_consumer_rewind(k, pos, on_done, &c), 0);
  sea_consumer_close(k);
  run_until(rt, &c.done);
  CHECK_EQ_INT(c.done, 1);

  /* Bad consumer options. */
  sea_options_t *o = opts("mode=sideways", NULL, NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &k), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "mode=sideways");
  sea_options_free(o);
  o = opts("mode=resumable", NULL, NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &k), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "needs a group");
  sea_options_free(o);
  o = opts("reset=middle", NULL, NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &k), SEA_EOPTION);
  sea_options_free(o);

  /* A backend without seek says so by name. */
  sea_streamer_t *st;
  CHECK_EQ_INT(sea_connect(rt, "stdio:///k", NULL, &st), 0);
  CHECK_EQ_INT(sea_consumer_open(st, NULL, &k), 0);
  CHECK_EQ_INT(sea_consumer_seek(k, 0, NULL, NULL), SEA_ENOTSUP);
  CHECK_STR(sea_consumer_errmsg(k), "seek: not supported by stdio");
  CHECK_EQ_INT(sea_consumer_assign(k, "k", 0), SEA_ENOTSUP);
  /* Backends without transactions say so by name, for every transaction operation. */
  sea_producer_t *sp, *mp;
  CHECK_EQ_INT(sea_producer_open(st, NULL, &sp), 0);
  CHECK_EQ_INT(sea_producer_txn_begin(sp), SEA_ENOTSUP);
  CHECK_STR(sea_producer_errmsg(sp), "txn_begin: not supported by stdio");
  CHECK_EQ_INT(sea_producer_txn_commit(sp, NULL, NULL), SEA_ENOTSUP);
  CHECK_STR(sea_producer_errmsg(sp), "txn_commit: not supported by stdio");
  CHECK_EQ_INT(sea_producer_txn_abort(sp, NULL, NULL), SEA_ENOTSUP);
  CHECK_STR(sea_producer_errmsg(sp), "txn_abort: not supported by stdio");
  CHECK_EQ_INT(sea_producer_txn_send_offsets(sp, k, NULL, NULL), SEA_ENOTSUP);
  CHECK_STR(sea_producer_errmsg(sp), "txn_send_offsets: not supported by stdio");
  CHECK_EQ_INT(sea_producer_open(s, NULL, &mp), 0);
  CHECK_EQ_INT(sea_producer_txn_begin(mp), SEA_ENOTSUP);
  CHECK_STR(sea_producer_errmsg(mp), "txn_begin: not supported by mem");
  CHECK_EQ_INT(sea_producer_txn_send_offsets(mp, k, NULL, NULL), SEA_ENOTSUP);
  CHECK_STR(sea_producer_errmsg(mp), "txn_send_offsets: not supported by mem");
  sea_producer_close(mp);
  sea_streamer_close(st);

  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- relay: backpressure, at-least-once commits, failures ---- */

typedef struct relay_done {
  int done, status;
} relay_done_t;
static relay_done_t rd;

static void on_relay_done(sea_relay_t *r, int status) {
  rd.done = 1;
  rd.status = status;
}

static int relay_run(sea_runtime_t *rt, const char *in_uri, sea_options_t *in_o,
                     const char *out_uri, sea_options_t *out_o, uint64_t max, char *errmsg) {
  sea_streamer_t *si, *so;
  sea_consumer_t *in;
  sea_producer_t *out;
  sea_relay_t *r;
  CHECK_EQ_INT(sea_connect(rt, in_uri, in_o, &si), 0);
  CHECK_EQ_INT(sea_connect(rt, out_uri, out_o, &so), 0);
  CHECK_EQ_INT(sea_consumer_open(si, NULL, &in), 0);
  CHECK_EQ_INT(sea_producer_open(so, NULL, &out), 0);
  sea_relay_config_t cfg = {.max_count = max, .commit_interval_ms = 1};
  memset(&rd, 0, sizeof rd);
  CHECK_EQ_INT(sea_relay_start(in, out, &cfg, on_relay_done, &r), 0);
  run_until(rt, &rd.done);
  if (errmsg)
    snprintf(errmsg, 512, "%s", sea_relay_errmsg(r));
  sea_relay_free(r); /* closes both handles */
  sea_streamer_close(si);
  sea_streamer_close(so);
  return rd.status;
}

static int count_all(sea_runtime_t *rt, const char *uri, counts_t *c) {
  sea_streamer_t *s;
  sea_consumer_t *k;
  sea_connect(rt, uri, NULL, &s);
  sea_options_t *o = opts("start=beginning", "stop_at_end=true", NULL);
  sea_consumer_open(s, o, &k);
  sea_options_free(o);
  memset(c, 0, sizeof *c);
  sea_consumer_set_data(k, c);
  sea_consumer_start(k, on_batch, on_end);
  run_until(rt, &c->ended);
  sea_streamer_close(s);
  return c->npayloads;
}

static void test_relay(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://r/src", NULL, &s), 0);
  produce_n(rt, s, 40, "v");

  /* A small output bound forces pauses; every message arrives once, in order. */
  sea_options_t *in_o = opts("start=beginning", "stop_at_end=true", "batch=7");
  sea_options_t *out_o = opts("max_inflight=3", NULL, NULL);
  CHECK_EQ_INT(relay_run(rt, "mem://r/src", in_o, "mem://r/dst", out_o, 0, NULL), 0);
  sea_options_free(in_o);
  sea_options_free(out_o);
  counts_t c;
  CHECK_EQ_INT(count_all(rt, "mem://r/dst", &c), 40);
  CHECK_STR(c.payloads[0], "v0");
  CHECK_STR(c.payloads[39], "v39");

  /* Resumable: relay 15 in a group, then a restarted relay continues after the commit. */
  in_o = opts("mode=resumable", "group=g1", "stop_at_end=true");
  CHECK_EQ_INT(relay_run(rt, "mem://r/src", in_o, "mem://r/half", NULL, 15, NULL), 0);
  CHECK_EQ_INT(count_all(rt, "mem://r/half", &c), 15);
  CHECK_EQ_INT(relay_run(rt, "mem://r/src", in_o, "mem://r/half", NULL, 0, NULL), 0);
  sea_options_free(in_o);
  CHECK_EQ_INT(count_all(rt, "mem://r/half", &c), 40);
  CHECK_STR(c.payloads[15], "v15");

  /* An output failure stops the relay with the cause; what went before is delivered. */
  char err[512];
  in_o = opts("start=beginning", "stop_at_end=true", NULL);
  out_o = opts("fail_after=5", NULL, NULL);
  int st = relay_run(rt, "mem://r/src", in_o, "mem://r/failing", out_o, 0, err);
  CHECK_EQ_INT(st, SEA_EIO);
  CHECK_CONTAINS(err, "rejected the message for src | ");
  sea_options_free(in_o);
  sea_options_free(out_o);
  /* Pipelined sends after the failed one may land; the ones before it all did, once. */
  CHECK(count_all(rt, "mem://r/failing", &c) >= 5);
  CHECK_STR(c.payloads[0], "v0");
  CHECK_STR(c.payloads[4], "v4");
  CHECK(strcmp(c.payloads[5], "v5") != 0);

  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- the pipeline: the delivery contract through the C API ---- */

typedef struct pl_case {
  int reject_at;   /* reject the message whose payload is v<reject_at> (-1: none) */
  int stop_at;     /* call sea_pipeline_stop while processing v<stop_at> (-1: none) */
  int to_slow;     /* send v<to_slow> to output 1 (-1: none) */
  int one;         /* reject v<reject_at> alone (sea_pipeline_reject_first), as a per-message
                      processor running over a batch does */
  int quiet;       /* send nothing (a window: what it sends goes later, outside the calls) */
  int calls;       /* processor calls */
  size_t max_call; /* most messages in one call */
  int skipped, done, status;
} pl_case_t;

static int payload_num(const sea_message_t *m) {
  int n = 0; /* "vN"; payloads are not NUL-terminated */
  for (size_t i = 1; i < m->payload.len; i++)
    n = n * 10 + (m->payload.data[i] - '0');
  return n;
}

static int pl_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *b, size_t first,
                      size_t count, void *data) {
  pl_case_t *pc = data;
  pc->calls++;
  if (count > pc->max_call)
    pc->max_call = count;
  if (pc->quiet)
    return sea_pipeline_release(pl) == SEA_EINVAL ? 0 : SEA_EIO; /* not from inside a call */
  for (size_t i = first; i < first + count; i++) {
    int n = payload_num(&b->msgs[i]);
    if (n == pc->reject_at && pc->one && i > first)
      return (int)(i - first); /* those before it are handled; it comes again, first */
    if (n == pc->reject_at && pc->one)
      return sea_pipeline_reject_first(pl, 1, "test rejects v%d", n);
    if (n == pc->reject_at)
      return sea_pipeline_reject(pl, "test rejects v%d", n);
    if (n == pc->stop_at)
      sea_pipeline_stop(pl);
    sea_message_t out = b->msgs[i];
    out.meta.stream_key = NULL;
    int rc = sea_pipeline_send(pl, n == pc->to_slow ? 1 : 0, &out, 0);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static void pl_skipped(sea_pipeline_t *pl, size_t input, const sea_message_t *m, const char *why,
                       void *data) {
  pl_case_t *pc = data;
  pc->skipped++;
  CHECK_CONTAINS(why, "test rejects v");
}

static void pl_done(sea_pipeline_t *pl, int status) {
  pl_case_t *pc = sea_pipeline_get_data(pl);
  pc->done = 1;
  pc->status = status;
}

/* A pipeline from in_uri (a resumable group g, unless an extra option names another) to out_uri
 * and out2_uri, set up but not run. */
static sea_pipeline_t *pl_open3(sea_runtime_t *rt, sea_streamer_t **ss, const char *in_uri,
                                const char *x1, const char *x2, const char *x3, const char *out_uri,
                                const char *out2_uri, const char *out2_opt,
                                sea_pipeline_config_t *cfg) {
  sea_options_t *io = opts("mode=resumable", "group=g", "reset=earliest", x1, x2, x3);
  sea_options_t *o2 = opts(out2_opt, NULL, NULL);
  sea_consumer_t *c;
  sea_producer_t *p0, *p1;
  sea_pipeline_t *pl;
  CHECK_EQ_INT(sea_connect(rt, in_uri, io, &ss[0]), 0);
  CHECK_EQ_INT(sea_connect(rt, out_uri, NULL, &ss[1]), 0);
  CHECK_EQ_INT(sea_connect(rt, out2_uri, o2, &ss[2]), 0);
  sea_options_free(io);
  sea_options_free(o2);
  CHECK_EQ_INT(sea_consumer_open(ss[0], NULL, &c), 0);
  CHECK_EQ_INT(sea_producer_open(ss[1], NULL, &p0), 0);
  CHECK_EQ_INT(sea_producer_open(ss[2], NULL, &p1), 0);
  CHECK_EQ_INT(sea_pipeline_new(rt, cfg, &pl), 0);
  CHECK_EQ_INT(sea_pipeline_add_input(pl, c, NULL), 0);
  CHECK_EQ_INT(sea_pipeline_add_output(pl, p0, NULL), 0);
  CHECK_EQ_INT(sea_pipeline_add_output(pl, p1, NULL), 0);
  return pl;
}

static sea_pipeline_t *pl_open(sea_runtime_t *rt, sea_streamer_t **ss, const char *in_uri,
                               const char *in_extra, const char *out_uri, const char *out2_uri,
                               const char *out2_opt, sea_pipeline_config_t *cfg) {
  return pl_open3(rt, ss, in_uri, in_extra, NULL, NULL, out_uri, out2_uri, out2_opt, cfg);
}

static void pl_close(sea_runtime_t *rt, sea_pipeline_t *pl, sea_streamer_t **ss) {
  sea_pipeline_free(pl);
  for (int i = 0; i < 3; i++)
    sea_streamer_close(ss[i]);
}

/* The configuration the pipelines here start from: pl_process and pl_done over pc. */
static sea_pipeline_config_t pl_config(pl_case_t *pc) {
  sea_pipeline_config_t cfg = {
      .struct_size = sizeof cfg, .process = pl_process, .on_done = pl_done, .data = pc};
  return cfg;
}

/* Run one pipeline to its end; returns its status, errmsg in err. */
static int pl_run(sea_runtime_t *rt, const char *name, pl_case_t *pc, sea_pipeline_config_t *cfg,
                  const char *in_extra, const char *in_extra2, char *err) {
  char in_uri[64], out_uri[64], dead_uri[64];
  snprintf(in_uri, sizeof in_uri, "mem://pl/src");
  snprintf(out_uri, sizeof out_uri, "mem://pl/%s-out", name);
  snprintf(dead_uri, sizeof dead_uri, "mem://pl/%s-dead", name);
  sea_streamer_t *ss[3];
  cfg->process = pl_process;
  cfg->on_skipped = pl_skipped;
  cfg->on_done = pl_done;
  cfg->data = pc;
  cfg->commit_interval_ms = 1;
  sea_pipeline_t *pl = pl_open3(rt, ss, in_uri, in_extra, in_extra2, "stop_at_end=true", out_uri,
                                dead_uri, NULL, cfg);
  CHECK_EQ_INT(sea_pipeline_start(pl), 0);
  run_until(rt, &pc->done);
  CHECK(pc->done);
  snprintf(err, 512, "%s", sea_pipeline_errmsg(pl));
  pl_close(rt, pl, ss);
  return pc->status;
}

/* Where group g of mem://pl/src resumes: the first payload a new member gets ("" if none). */
static void pl_resume(sea_runtime_t *rt, const char *group, char *first, int *left) {
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://pl/src", NULL, &s), 0);
  sea_options_t *o = opts("mode=resumable", group, "stop_at_end=true", "reset=earliest");
  sea_consumer_t *k;
  CHECK_EQ_INT(sea_consumer_open(s, o, &k), 0);
  sea_options_free(o);
  counts_t c;
  memset(&c, 0, sizeof c);
  sea_consumer_set_data(k, &c);
  CHECK_EQ_INT(sea_consumer_start(k, on_batch, on_end), 0);
  run_until(rt, &c.ended);
  snprintf(first, 16, "%s", c.npayloads ? c.payloads[0] : "");
  *left = c.npayloads;
  sea_streamer_close(s);
}

/* Run the loop a turn at a time until the counter at offset `field` of pl's stats reaches want
 * (at most 100,000 turns); the stats then are in *st. */
static void pl_turn_until(sea_runtime_t *rt, sea_pipeline_t *pl, size_t field, uint64_t want,
                          sea_pipeline_stats_t *st) {
  for (int i = 0; i < 100000; i++) {
    sea_pipeline_stats(pl, st);
    uint64_t v;
    memcpy(&v, (const char *)st + field, sizeof v);
    if (v >= want)
      return;
    sea_runtime_run(rt, SEA_RUN_ONCE);
  }
}

static void test_pipeline(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://pl/src", NULL, &s), 0);
  produce_n(rt, s, 20, "v");
  char err[512], first[16];
  int left;

  /* Receipts out of order: v0 goes to an output whose receipt waits for the stop, v1..v19 to
   * one that confirms at once. Nothing may be acknowledged while v0 is unconfirmed; a crash
   * then (the pipeline freed with v0 still out) must not lose v0. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = 0};
    sea_pipeline_config_t cfg = pl_config(&pc);
    cfg.commit_interval_ms = 1;
    sea_streamer_t *ss[3];
    sea_pipeline_t *pl = pl_open(rt, ss, "mem://pl/src", "start=beginning", "mem://pl/ooo-out",
                                 "mem://pl/ooo-slow", "hold_receipts=true", &cfg);
    CHECK_EQ_INT(sea_pipeline_start(pl), 0);
    sea_pipeline_stats_t st;
    pl_turn_until(rt, pl, offsetof(sea_pipeline_stats_t, receipted), 19, &st);
    CHECK_EQ_INT((int)st.receipted, 19);
    for (int i = 0; i < 20; i++) /* commit timer ticks */
      sea_runtime_run(rt, SEA_RUN_ONCE);
    sea_pipeline_stats(pl, &st);
    CHECK_EQ_INT((int)st.processed, 20);
    CHECK_EQ_INT((int)st.done, 0);
    CHECK_EQ_INT((int)st.commits, 0);
    pl_close(rt, pl, ss); /* a crash, as far as the group knows */
    pl_resume(rt, "group=g", first, &left);
    CHECK_STR(first, "v0");
    CHECK_EQ_INT(left, 20);
  }
  /* The same with an orderly stop: the slow output confirms, everything is committed. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = 0};
    sea_pipeline_config_t cfg = pl_config(&pc);
    cfg.commit_interval_ms = 1;
    sea_streamer_t *ss[3];
    sea_pipeline_t *pl = pl_open(rt, ss, "mem://pl/src", "stop_at_end=true", "mem://pl/ooo-out",
                                 "mem://pl/ooo-slow", "hold_receipts=true", &cfg);
    CHECK_EQ_INT(sea_pipeline_start(pl), 0);
    run_until(rt, &pc.done);
    CHECK_EQ_INT(pc.status, 0);
    sea_pipeline_stats_t st;
    sea_pipeline_stats(pl, &st);
    CHECK_EQ_INT((int)st.done, 20);
    pl_close(rt, pl, ss);
    pl_resume(rt, "group=g", first, &left);
    CHECK_EQ_INT(left, 0);
  }

  /* cfg.hold: messages are done only once released and once what was sent outside the calls
   * before the release is confirmed. The processor sends nothing; output 1 (the "window's
   * aggregate") holds its receipts until it is flushed at the stop. */
  for (int orderly = 0; orderly < 2; orderly++) {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = -1, .quiet = 1};
    sea_pipeline_config_t cfg = pl_config(&pc);
    cfg.commit_interval_ms = 1;
    cfg.hold = 1;
    sea_streamer_t *ss[3];
    const char *g = orderly ? "group=gh2" : "group=gh1";
    sea_pipeline_t *pl = pl_open(rt, ss, "mem://pl/src", g, "mem://pl/hold-out",
                                 "mem://pl/hold-agg", "hold_receipts=true", &cfg);
    CHECK_EQ_INT(sea_pipeline_start(pl), 0);
    sea_pipeline_stats_t st;
    pl_turn_until(rt, pl, offsetof(sea_pipeline_stats_t, processed), 20, &st);
    CHECK_EQ_INT((int)st.processed, 20);
    CHECK_EQ_INT(pc.status, 0);
    for (int i = 0; i < 20; i++) /* commit timer ticks: nothing is done, nothing released */
      sea_runtime_run(rt, SEA_RUN_ONCE);
    sea_pipeline_stats(pl, &st);
    CHECK_EQ_INT((int)st.done, 0);
    /* The aggregate, sent outside the calls, then the release: still not done, its receipt is
     * held. */
    sea_message_t agg = {.payload = {.data = (const uint8_t *)"v0..v19", .len = 7}};
    CHECK_EQ_INT(sea_pipeline_send(pl, 1, &agg, 0), 0);
    CHECK_EQ_INT(sea_pipeline_release(pl), 0);
    for (int i = 0; i < 20; i++)
      sea_runtime_run(rt, SEA_RUN_ONCE);
    sea_pipeline_stats(pl, &st);
    CHECK_EQ_INT((int)st.done, 0);
    if (orderly) { /* the stop flushes output 1: its receipt lets the twenty go */
      sea_pipeline_stop(pl);
      run_until(rt, &pc.done);
      CHECK_EQ_INT(pc.status, 0);
      sea_pipeline_stats(pl, &st);
      CHECK_EQ_INT((int)st.done, 20);
    }
    pl_close(rt, pl, ss); /* or a crash, as far as the group knows */
    pl_resume(rt, g, first, &left);
    CHECK_EQ_INT(left, orderly ? 0 : 20);
    if (!orderly)
      CHECK_STR(first, "v0");
  }
  /* ... and not with exactly once. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = pl_config(&pc);
    cfg.hold = 1;
    cfg.exactly_once = 1;
    sea_streamer_t *ss[3];
    sea_pipeline_t *pl = pl_open(rt, ss, "mem://pl/src", "start=beginning", "mem://pl/holde-out",
                                 "mem://pl/holde-b", NULL, &cfg);
    CHECK_EQ_INT(sea_pipeline_start(pl), SEA_EINVAL);
    CHECK_CONTAINS(sea_pipeline_errmsg(pl), "hold with exactly-once is not supported");
    run_until(rt, &pc.done);
    pl_close(rt, pl, ss);
  }

  /* A processor failure under the stop policy: exactly the messages before it are committed. */
  {
    pl_case_t pc = {.reject_at = 7, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = {.struct_size = sizeof cfg};
    int st = pl_run(rt, "stop", &pc, &cfg, "group=g2", NULL, err);
    CHECK_EQ_INT(st, SEA_EINVAL);
    CHECK_CONTAINS(err, "test rejects v7");
    CHECK_CONTAINS(err, "at message src | 7 of mem://pl/src (not committed");
    pl_resume(rt, "group=g2", first, &left);
    CHECK_STR(first, "v7");
  }
  /* A count: exactly the first five. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = {.struct_size = sizeof cfg, .max_count = 5};
    CHECK_EQ_INT(pl_run(rt, "count", &pc, &cfg, "group=g3", NULL, err), 0);
    CHECK_EQ_INT(pc.calls, 5);
    pl_resume(rt, "group=g3", first, &left);
    CHECK_STR(first, "v5");
  }
  /* sea_pipeline_stop from inside the processor: the message it handles counts as processed. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = 10, .to_slow = -1};
    sea_pipeline_config_t cfg = {.struct_size = sizeof cfg};
    CHECK_EQ_INT(pl_run(rt, "inner-stop", &pc, &cfg, "group=g4", NULL, err), 0);
    pl_resume(rt, "group=g4", first, &left);
    CHECK_STR(first, "v11");
  }
  /* Skip: the rejected message is done, nothing sent for it. */
  {
    pl_case_t pc = {.reject_at = 7, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = {.struct_size = sizeof cfg, .on_error = SEA_ON_ERROR_SKIP};
    CHECK_EQ_INT(pl_run(rt, "skip", &pc, &cfg, "group=g5", NULL, err), 0);
    CHECK_EQ_INT(pc.skipped, 1);
    pl_resume(rt, "group=g5", first, &left);
    CHECK_EQ_INT(left, 0);
    counts_t c;
    CHECK_EQ_INT(count_all(rt, "mem://pl/skip-out", &c), 19);
  }
  /* Dead-letter: the rejected message goes to output 1, as it was. */
  {
    pl_case_t pc = {.reject_at = 7, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = {
        .struct_size = sizeof cfg, .on_error = SEA_ON_ERROR_DEAD_LETTER, .dead_letter = 1};
    CHECK_EQ_INT(pl_run(rt, "dl", &pc, &cfg, "group=g6", NULL, err), 0);
    counts_t c;
    CHECK_EQ_INT(count_all(rt, "mem://pl/dl-dead", &c), 1);
    CHECK_STR(c.payloads[0], "v7");
    CHECK_EQ_INT(count_all(rt, "mem://pl/dl-out", &c), 19);
    pl_resume(rt, "group=g6", first, &left);
    CHECK_EQ_INT(left, 0);
  }
  /* Batch calls that reject one message alone: it is skipped, the rest of its batch goes on. */
  {
    pl_case_t pc = {.reject_at = 5, .stop_at = -1, .to_slow = -1, .one = 1};
    sea_pipeline_config_t cfg = {
        .struct_size = sizeof cfg, .per_batch = 1, .on_error = SEA_ON_ERROR_SKIP};
    CHECK_EQ_INT(pl_run(rt, "one", &pc, &cfg, "group=g8", "batch=4", err), 0);
    CHECK_EQ_INT(pc.skipped, 1);
    CHECK_EQ_INT(pc.calls, 7); /* v0-3, v4, v5 (rejected), v6-7, v8-11, v12-15, v16-19 */
    counts_t c;
    CHECK_EQ_INT(count_all(rt, "mem://pl/one-out", &c), 19);
    CHECK_STR(c.payloads[5], "v6");
    pl_resume(rt, "group=g8", first, &left);
    CHECK_EQ_INT(left, 0);
  }
  /* The same under the stop policy: v4 was handled before it, and is committed. */
  {
    pl_case_t pc = {.reject_at = 5, .stop_at = -1, .to_slow = -1, .one = 1};
    sea_pipeline_config_t cfg = {.struct_size = sizeof cfg, .per_batch = 1};
    CHECK_EQ_INT(pl_run(rt, "one-stop", &pc, &cfg, "group=g9", "batch=4", err), SEA_EINVAL);
    CHECK_CONTAINS(err, "at message src | 5 of mem://pl/src");
    pl_resume(rt, "group=g9", first, &left);
    CHECK_STR(first, "v5");
  }
  /* Batch calls with a count: the last call is cut to what is left. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = {.struct_size = sizeof cfg, .per_batch = 1, .max_count = 6};
    CHECK_EQ_INT(pl_run(rt, "batch", &pc, &cfg, "group=g7", "batch=4", err), 0);
    CHECK_EQ_INT(pc.calls, 2);
    CHECK_EQ_INT((int)pc.max_call, 4);
    pl_resume(rt, "group=g7", first, &left);
    CHECK_STR(first, "v6");
  }
  /* An input that cannot start (it has already ended): the pipeline stops with the reason and
   * frees cleanly. */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = {
        .struct_size = sizeof cfg, .process = pl_process, .on_done = pl_done, .data = &pc};
    sea_streamer_t *si, *so;
    CHECK_EQ_INT(sea_connect(rt, "mem://pl/empty", NULL, &si), 0);
    CHECK_EQ_INT(sea_connect(rt, "mem://pl/x", NULL, &so), 0);
    counts_t c;
    sea_consumer_t *k = consume_from(rt, si, "start=beginning", &c);
    CHECK_EQ_INT(c.ended, 1);
    sea_producer_t *p;
    CHECK_EQ_INT(sea_producer_open(so, NULL, &p), 0);
    sea_pipeline_t *pl;
    CHECK_EQ_INT(sea_pipeline_new(rt, &cfg, &pl), 0);
    CHECK_EQ_INT(sea_pipeline_add_input(pl, k, NULL), 0);
    CHECK_EQ_INT(sea_pipeline_add_output(pl, p, NULL), 0);
    CHECK_EQ_INT(sea_pipeline_start(pl), SEA_ESTATE);
    CHECK_CONTAINS(sea_pipeline_errmsg(pl), "input mem://pl/empty");
    run_until(rt, &pc.done);
    CHECK(pc.done);
    CHECK_EQ_INT(pc.status, SEA_ESTATE);
    sea_pipeline_free(pl);
    sea_streamer_close(si);
    sea_streamer_close(so);
  }
  /* Exactly once needs transactions: a backend without them is refused at start, by name,
   * nothing is processed and the done callback still comes (the Kafka side runs in
   * tests/crash/eos.sh). */
  {
    pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = -1};
    sea_pipeline_config_t cfg = pl_config(&pc);
    cfg.exactly_once = 1;
    sea_streamer_t *ss[3];
    sea_pipeline_t *pl = pl_open(rt, ss, "mem://pl/src", "start=beginning", "mem://pl/eos-out",
                                 "mem://pl/eos-b", NULL, &cfg);
    CHECK_EQ_INT(sea_pipeline_start(pl), SEA_EINVAL);
    CHECK_CONTAINS(sea_pipeline_errmsg(pl), "exactly-once: output mem://pl/eos-out cannot take "
                                            "part: the mem backend has no transactions");
    run_until(rt, &pc.done);
    CHECK(pc.done);
    CHECK_EQ_INT(pc.status, SEA_EINVAL);
    sea_pipeline_stats_t st;
    sea_pipeline_stats(pl, &st);
    CHECK_EQ_INT((int)st.processed, 0);
    pl_close(rt, pl, ss);
  }
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- closing handles from inside their own callbacks ---- */

static void close_in_batch(sea_consumer_t *k, const sea_batch_t *b) {
  counts_t *c = sea_consumer_get_data(k);
  c->batches++;
  sea_consumer_close(k);
}

static void close_in_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *m) {
  counts_t *c = sea_producer_get_data(p);
  if (status == 0)
    c->receipts++;
  else if (status == SEA_ECANCELED)
    c->errors++;
  sea_producer_close(p);
}

static void test_close_in_callback(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://cb/k", NULL, &s), 0);
  produce_n(rt, s, 10, "x");
  sea_consumer_t *k;
  sea_options_t *o = opts("start=beginning", "batch=2", NULL);
  sea_consumer_open(s, o, &k);
  sea_options_free(o);
  counts_t c = {0};
  sea_consumer_set_data(k, &c);
  sea_consumer_start(k, close_in_batch, on_end);
  for (int i = 0; i < 50; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(c.batches, 1);

  sea_producer_t *p;
  sea_producer_open(s, NULL, &p);
  memset(&c, 0, sizeof c);
  sea_producer_set_data(p, &c);
  sea_producer_set_callbacks(p, close_in_receipt, NULL);
  for (int i = 0; i < 5; i++)
    sea_producer_send_bytes(p, NULL, "y", 1, NULL);
  for (int i = 0; i < 50; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(c.receipts, 1); /* closed on the first: the rest are not reported as success, */
  CHECK_EQ_INT(c.errors, 4);   /* but canceled: every send has its one receipt */
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* A streamer closed from another streamer's callback while one of its producers' closes is
 * still deferred (that producer closed itself in its receipt callback): the streamer's close
 * must wait for the producer's, not free what the producer's close still needs. */
static sea_streamer_t *victim;

static void close_victim_in_batch(sea_consumer_t *k, const sea_batch_t *b) {
  counts_t *c = sea_consumer_get_data(k);
  c->batches++;
  if (victim) {
    sea_streamer_close(victim);
    victim = NULL;
  }
}

static void test_close_streamer_while_handle_closes(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *other;
  CHECK_EQ_INT(sea_connect(rt, "mem://v2/k", NULL, &other), 0);
  produce_n(rt, other, 3, "o");
  CHECK_EQ_INT(sea_connect(rt, "mem://v1/k", NULL, &victim), 0);
  sea_producer_t *p;
  sea_producer_open(victim, NULL, &p);
  counts_t pc = {0}, kc = {0};
  sea_producer_set_data(p, &pc);
  sea_producer_set_callbacks(p, close_in_receipt, NULL);
  sea_consumer_t *k;
  sea_options_t *o = opts("start=beginning", NULL, NULL);
  sea_consumer_open(other, o, &k);
  sea_options_free(o);
  sea_consumer_set_data(k, &kc);
  /* Both fire on the same loop turn: the receipt (closing p), then the batch (closing victim). */
  sea_producer_send_bytes(p, NULL, "y", 1, NULL);
  sea_consumer_start(k, close_victim_in_batch, on_end);
  for (int i = 0; i < 50; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(pc.receipts, 1);
  CHECK(kc.batches >= 1);
  CHECK(victim == NULL);
  sea_streamer_close(other);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- sea_streamer_list on the mem backend ---- */

typedef struct listed {
  int done, status, rows;
  sea_list_row_t stream, shard, group, group_k;
  char group_name[16];
} listed_t;

static void on_list_row(void *data, const sea_list_row_t *r) {
  listed_t *l = data;
  l->rows++;
  if (r->kind == SEA_LIST_STREAM)
    l->stream = *r;
  else if (r->kind == SEA_LIST_SHARD)
    l->shard = *r;
  else if (r->kind == SEA_LIST_GROUP && r->stream == NULL) {
    l->group = *r;
    snprintf(l->group_name, sizeof l->group_name, "%s", r->group ? r->group : "");
  } else if (r->kind == SEA_LIST_GROUP)
    l->group_k = *r;
}

static void on_list_done(void *data, int status) {
  listed_t *l = data;
  l->done = 1;
  l->status = status;
}

/* Acknowledge the first two messages only. */
static void on_batch_ack2(sea_consumer_t *k, const sea_batch_t *b) {
  counts_t *c = sea_consumer_get_data(k);
  for (size_t i = 0; i < b->count; i++)
    if (c->npayloads++ < 2)
      CHECK_EQ_INT(sea_consumer_ack(k, &b->msgs[i]), 0);
}

static void test_list(void) {
  sea_runtime_t *rt = new_runtime();
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://lst/k", NULL, &s), 0);
  produce_n(rt, s, 5, "m");
  /* A group that read all five and committed the first two. */
  sea_consumer_t *k = NULL;
  sea_options_t *o = opts("mode=resumable", "group=g", "reset=earliest", "stop_at_end=true", NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &k), 0);
  sea_options_free(o);
  counts_t c = {0};
  sea_consumer_set_data(k, &c);
  CHECK_EQ_INT(sea_consumer_start(k, on_batch_ack2, on_end), 0);
  run_until(rt, &c.ended);
  CHECK_EQ_INT(sea_consumer_commit(k, on_done, &c), 0);
  run_until(rt, &c.done);
  CHECK_EQ_INT(c.done_status, 0);

  listed_t l = {0};
  CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, on_list_row, on_list_done, &l), 0);
  CHECK_EQ_INT(l.rows, 0); /* rows come on a later turn, never inside the call */
  run_until(rt, &l.done);
  CHECK_EQ_INT(l.status, 0);
  CHECK_EQ_INT(l.rows, 4);
  CHECK(l.stream.stream && strcmp(l.stream.stream, "k") == 0);
  CHECK(l.stream.messages == 5 && l.stream.shards == 1);
  CHECK(l.shard.shard == 0 && l.shard.first_seq == 0 && l.shard.last_seq == 4);
  CHECK(l.shard.first_ts_us > 0 && l.shard.last_ts_us >= l.shard.first_ts_us);
  CHECK_STR(l.group_name, "g");
  CHECK_EQ_INT(l.group.consumers, 1);
  CHECK_EQ_INT(l.group.lag, 3);
  CHECK(l.group_k.shard == 0 && l.group_k.committed == 2 && l.group_k.lag == 3);
  CHECK_EQ_INT(l.group_k.pending, -1); /* not known: the unknowns are -1 */
  sea_consumer_close(k);

  /* Only the keys asked for: a key with nothing leaves the group out too. */
  const char *const other[] = {"other"};
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sea_streamer_list(s, other, 1, on_list_row, on_list_done, &l), 0);
  run_until(rt, &l.done);
  CHECK_EQ_INT(l.status, 0);
  CHECK_EQ_INT(l.rows, 0);

  /* Closed before its turn: canceled, no row, nothing left behind (ASan's leak check). */
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, on_list_row, on_list_done, &l), 0);
  sea_streamer_close(s);
  run_until(rt, &l.done);
  CHECK_EQ_INT(l.status, SEA_ECANCELED);
  CHECK_EQ_INT(l.rows, 0);

  /* A backend without a listing says so by name. */
  CHECK_EQ_INT(sea_connect(rt, "stdio:///k", NULL, &s), 0);
  CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, on_list_row, on_list_done, &l), SEA_ENOTSUP);
  CHECK_STR(sea_streamer_errmsg(s), "list is not supported by the stdio backend");
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* ---- metrics: sea_metrics_serve over a pipeline, scraped through the runtime's loop ---- */

static void on_keep(uv_timer_t *t) {
}

/* GET path from 127.0.0.1:port as HTTP/1.0, the loop running meanwhile (it answers); the whole
 * response (head and body) into resp. Bounded: at most 5000 turns of 1 ms. The endpoint does not
 * keep the loop alive (nor would a loop with nothing else to do poll it): a timer does here, as
 * a running pipeline does in the commands. */
static void http_get(sea_runtime_t *rt, int port, const char *path, char *resp, size_t len) {
  uv_timer_t keep;
  uv_timer_init(sea_runtime_uv_loop(rt), &keep);
  uv_timer_start(&keep, on_keep, 1, 1);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  CHECK(fd >= 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  CHECK(rc == 0 || errno == EINPROGRESS);
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: test\r\n\r\n", path);
  size_t sent = 0, got = 0;
  resp[0] = '\0';
  for (int i = 0; i < 5000; i++) {
    if (sent < (size_t)n) {
      ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
      if (w > 0)
        sent += (size_t)w;
    }
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    ssize_t r = recv(fd, resp + got, len - 1 - got, 0);
    if (r == 0)
      break; /* HTTP/1.0: the server closes after the response */
    if (r > 0) {
      got += (size_t)r;
      resp[got] = '\0';
      if (got == len - 1)
        break;
      continue;
    }
    usleep(1000);
  }
  close(fd);
  uv_close((uv_handle_t *)&keep, NULL);
  sea_runtime_run(rt, SEA_RUN_NOWAIT);
}

static void test_metrics(void) {
  sea_runtime_t *rt = new_runtime();
  sea_metrics_t *m = NULL;
  /* Addresses that do not parse: SEA_EINVAL and why, nothing listens. */
  static const char *const bad[][2] = {{"nonsense", "expected HOST:PORT"},
                                       {"127.0.0.1:65536", "not a number from 0 to 65535"},
                                       {"127.0.0.1:", "not a number"},
                                       {"1::2:9100", "brackets"},
                                       {"[::1", "[IPV6]:PORT"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ_INT(sea_metrics_serve(rt, bad[i][0], &m), SEA_EINVAL);
    CHECK(m == NULL);
    CHECK_CONTAINS(sea_runtime_errmsg(rt), bad[i][1]);
  }
  CHECK_EQ_INT(sea_metrics_serve(rt, "127.0.0.1:0", &m), 0);
  int port = sea_metrics_port(m);
  CHECK(port > 0);
  /* Its port again: in use. */
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  sea_metrics_t *m2 = NULL;
  CHECK_EQ_INT(sea_metrics_serve(rt, addr, &m2), SEA_EINVAL);
  CHECK(m2 == NULL);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "in use");
  /* Without a pipeline: the process's start time only. */
  char buf[65536];
  sea_metrics_text(m, buf, sizeof buf);
  CHECK_CONTAINS(buf, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds ");
  CHECK(strstr(buf, "seastreamer_") == NULL);

  /* A pipeline run to its end, v3 to the second output: the totals are sea_pipeline_stats'. */
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, "mem://user:secret@mt/src", NULL, &s), 0);
  produce_n(rt, s, 20, "v");
  pl_case_t pc = {.reject_at = -1, .stop_at = -1, .to_slow = 3};
  sea_pipeline_config_t cfg = {
      .struct_size = sizeof cfg, .process = pl_process, .on_done = pl_done, .data = &pc};
  sea_streamer_t *ss[3];
  /* The input's URI carries a password: the label leaves it out. */
  sea_pipeline_t *pl = pl_open(rt, ss, "mem://user:secret@mt/src", "stop_at_end=true",
                               "mem://mt/out", "mem://mt/other", NULL, &cfg);
  sea_metrics_set_pipeline(m, pl);
  CHECK_EQ_INT(sea_pipeline_start(pl), 0);
  run_until(rt, &pc.done);
  CHECK_EQ_INT(pc.status, 0);
  sea_pipeline_stats_t st;
  sea_pipeline_stats(pl, &st);
  CHECK_EQ_INT((int)st.processed, 20);
  size_t need = sea_metrics_text(m, buf, 16);
  CHECK(need > 16 && need < sizeof buf);
  CHECK_EQ_INT((int)strlen(buf), 15);
  CHECK_EQ_INT((int)sea_metrics_text(m, buf, sizeof buf), (int)need);
  CHECK_CONTAINS(buf, "\nseastreamer_messages_in_total 20\n");
  CHECK_CONTAINS(buf, "\nseastreamer_messages_out_total 20\n");
  CHECK_CONTAINS(buf, "\nseastreamer_messages_confirmed_total 20\n");
  CHECK_CONTAINS(buf, "\nseastreamer_inflight 0\n");
  CHECK_CONTAINS(buf, "\nseastreamer_input_messages_total{input=\"0\",uri=\"mem://mt/src\"} 20\n");
  CHECK_CONTAINS(buf,
                 "\nseastreamer_output_messages_total{output=\"0\",uri=\"mem://mt/out\"} 19\n");
  CHECK_CONTAINS(buf,
                 "\nseastreamer_output_confirmed_total{output=\"1\",uri=\"mem://mt/other\"} 1\n");
  CHECK_CONTAINS(buf, "\nseastreamer_errors_total{kind=\"failed\"} 0\n");
  CHECK(strstr(buf, "secret") == NULL);
  /* Over HTTP, answered by the loop. */
  static char resp[65536];
  http_get(rt, port, "/metrics", resp, sizeof resp);
  CHECK_CONTAINS(resp, " 200 OK\r\n");
  CHECK_CONTAINS(resp, "Content-Type: text/plain; version=0.0.4");
  CHECK_CONTAINS(resp, "\r\n\r\n# HELP process_start_time_seconds ");
  CHECK_CONTAINS(resp, "\nseastreamer_messages_in_total 20\n");
  http_get(rt, port, "/nope", resp, sizeof resp);
  CHECK_CONTAINS(resp, " 404 Not Found\r\n");
  sea_metrics_set_pipeline(m, NULL);
  pl_close(rt, pl, ss);
  sea_streamer_close(s);
  sea_metrics_close(m);
  sea_metrics_close(NULL);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

int main(int argc, char **argv) {
  linked_statically = argc > 1 && strcmp(argv[1], "static") == 0;
  test_producer();
  test_backpressure("max_inflight=4", 4);
  test_backpressure("capacity=3", 3);
  test_consumer();
  test_relay();
  test_pipeline();
  test_close_in_callback();
  test_close_streamer_while_handle_closes();
  test_metrics();
  test_list();
  return test_report();
}
