/* test_redis.c: the redis backend against a real redis-server (started by redis_env.sh as a ctest
 * fixture): producer, realtime and group consumers, bad input, and a server restart mid-run.
 * Usage: test_redis basic|bad|restart PORT [ENV_DIR]. Admin steps (XLEN, SET, ACL) use hiredis'
 * blocking API directly, outside the loop. */
#define _POSIX_C_SOURCE 200809L
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <netinet/in.h>
#include <seastreamer/seastreamer.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "test.h"
#include "test_opts.h"

static int port;
static const char *env_dir;
static char uri_base[64];
static unsigned run_id; /* keys differ per run, so a rerun on a kept server starts clean */

static void uri(char *buf, size_t n, const char *keys) {
  snprintf(buf, n, "%s/%s", uri_base, keys);
}

static void key(char *buf, size_t n, const char *name) {
  snprintf(buf, n, "t%u-%s", run_id, name);
}

static redisReply *admin(const char *fmt, ...) {
  redisContext *c = redisConnect("127.0.0.1", port);
  if (c == NULL || c->err) {
    fprintf(stderr, "admin: cannot connect to 127.0.0.1:%d\n", port);
    if (c)
      redisFree(c);
    return NULL;
  }
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(c, fmt, ap);
  va_end(ap);
  redisFree(c);
  return r;
}

static long long admin_int(const char *fmt, const char *arg) {
  redisReply *r = admin(fmt, arg);
  long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  if (r)
    freeReplyObject(r);
  return v;
}

#define opts(...) TEST_OPTS(__VA_ARGS__)

/* ---- shared callbacks ---- */

typedef struct app {
  int receipts, errors, drains, done, done_status, ended, end_status;
  int ordered; /* receipts' seqs increase */
  uint64_t last_seq;
  int meta_ok;
  int msgs;
  uint8_t *seen; /* by payload number */
  int nseen, distinct, dups;
  sea_consumer_t *ack_into; /* manual ack of each message */
  int ack_upto;             /* ack only the first ack_upto messages */
  int acked;
  int pause_at, paused; /* pause the consumer once msgs reaches pause_at */
  int after_pause;      /* messages delivered while paused (must stay 0) */
  int shard_count[8];
} app_t;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *m) {
  (void)token;
  app_t *a = sea_producer_get_data(p);
  if (status) {
    a->errors++;
    return;
  }
  a->receipts++;
  /* seq = (ms << 16) | id-seq and timestamp = ms */
  if ((uint64_t)(m->timestamp_us / 1000) != (m->seq >> 16))
    a->meta_ok = 0;
  if (m->seq <= a->last_seq && m->shard_id == 0)
    a->ordered = 0;
  if (m->shard_id == 0)
    a->last_seq = m->seq;
  if (m->shard_id < 8)
    a->shard_count[m->shard_id]++;
}

static void on_drain(sea_producer_t *p) {
  app_t *a = sea_producer_get_data(p);
  a->drains++;
}

static void on_done(void *data, int status) {
  app_t *a = data;
  a->done++;
  a->done_status = status;
}

static int payload_num(const sea_message_t *m) {
  char buf[32];
  size_t n = m->payload.len < sizeof buf - 1 ? m->payload.len : sizeof buf - 1;
  memcpy(buf, m->payload.data, n);
  buf[n] = '\0';
  const char *d = strchr(buf, '-');
  return d ? atoi(d + 1) : -1;
}

static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  app_t *a = sea_consumer_get_data(c);
  for (size_t i = 0; i < b->count; i++) {
    const sea_message_t *m = &b->msgs[i];
    a->msgs++;
    if ((uint64_t)(m->meta.timestamp_us / 1000) != (m->meta.seq >> 16))
      a->meta_ok = 0;
    int n = payload_num(m);
    if (n >= 0 && n < a->nseen) {
      if (a->seen[n])
        a->dups++;
      else
        a->distinct++;
      a->seen[n] = 1;
    }
    if (a->paused)
      a->after_pause++;
    if (a->ack_into && a->acked < a->ack_upto) {
      CHECK_EQ_INT(sea_consumer_ack(c, m), 0);
      a->acked++;
    }
  }
}

static void on_batch_pause(sea_consumer_t *c, const sea_batch_t *b) {
  app_t *a = sea_consumer_get_data(c);
  on_batch(c, b);
  if (a->pause_at && a->msgs >= a->pause_at && !a->paused) {
    CHECK_EQ_INT(sea_consumer_pause(c), 0);
    a->paused = 1;
  }
}

static void on_end(sea_consumer_t *c, int status) {
  app_t *a = sea_consumer_get_data(c);
  a->ended = 1;
  a->end_status = status;
}

static int run_until(sea_runtime_t *rt, const int *flag, int goal) {
  /* bounded by turns, not by time: a stuck test fails instead of hanging (ctest has a timeout) */
  for (long i = 0; i < 20000000 && *flag < goal; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  return *flag >= goal;
}

static void app_init(app_t *a, int n) {
  memset(a, 0, sizeof *a);
  a->ordered = a->meta_ok = 1;
  a->nseen = n;
  a->seen = calloc((size_t)n + 1, 1);
}

static void app_free(app_t *a) {
  free(a->seen);
}

/* Send n messages "PREFIX-i" for i in [from, from+n), waiting on drains; then flush. */
static void produce(sea_runtime_t *rt, sea_producer_t *p, app_t *a, int from, int n) {
  char buf[64];
  for (int i = from; i < from + n;) {
    int len = snprintf(buf, sizeof buf, "m-%d", i);
    int rc = sea_producer_send_bytes(p, NULL, buf, (size_t)len, NULL);
    if (rc == SEA_EAGAIN) {
      int d = a->drains;
      run_until(rt, &a->drains, d + 1);
      continue;
    }
    if (rc != 0) {
      CHECK_EQ_INT(rc, 0);
      return;
    }
    i++;
  }
  int d = a->done;
  CHECK_EQ_INT(sea_producer_flush(p, on_done, a), 0);
  CHECK(run_until(rt, &a->done, d + 1));
}

/* Connect to u and produce "m-0".."m-(n-1)" there; the producer stays open (its data is pa). */
static sea_producer_t *open_and_fill(sea_runtime_t *rt, const char *u, sea_streamer_t **s,
                                     app_t *pa, int n) {
  sea_producer_t *p = NULL;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, s), 0);
  CHECK_EQ_INT(sea_producer_open(*s, NULL, &p), 0);
  app_init(pa, 0);
  sea_producer_set_data(p, pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, pa, 0, n);
  return p;
}

/* Commit and wait for the answer; its status. */
static int commit_wait(sea_runtime_t *rt, sea_consumer_t *c) {
  app_t op = {0};
  int rc = sea_consumer_commit(c, on_done, &op);
  if (rc)
    return rc;
  if (!run_until(rt, &op.done, 1))
    return SEA_ETIMEDOUT;
  return op.done_status;
}

/* XPENDING KEY GROUP: the number of entries pending in the group (-1 on error). */
static long long pending_count(const char *k, const char *group) {
  redisReply *r = admin("XPENDING %s %s", k, group);
  long long n = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                        r->element[0]->type == REDIS_REPLY_INTEGER
                    ? r->element[0]->integer
                    : -1;
  if (r)
    freeReplyObject(r);
  return n;
}

/* XINFO CONSUMERS KEY GROUP: the number of members (-1 on error). */
static long long member_count(const char *k, const char *group) {
  redisReply *r = admin("XINFO CONSUMERS %s %s", k, group);
  long long n = r && r->type == REDIS_REPLY_ARRAY ? (long long)r->elements : -1;
  if (r)
    freeReplyObject(r);
  return n;
}

static sea_consumer_t *consumer(sea_streamer_t *s, app_t *a, sea_options_t *o) {
  sea_consumer_t *c = NULL;
  CHECK_EQ_INT(sea_consumer_open(s, o, &c), 0);
  sea_options_free(o);
  if (c == NULL)
    return NULL;
  sea_consumer_set_data(c, a);
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  return c;
}

/* ---- basic: producer, realtime, sharding, trimming, groups ---- */

static void test_produce_consume(sea_runtime_t *rt) {
  char k[64], u[160];
  key(k, sizeof k, "pc");
  uri(u, sizeof u, k);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  sea_producer_t *p;
  sea_options_t *o = opts("pipeline=64", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  app_t pa;
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 5000);
  CHECK_EQ_INT(pa.receipts, 5000);
  CHECK_EQ_INT(pa.errors, 0);
  CHECK(pa.ordered);
  CHECK(pa.meta_ok);
  CHECK(pa.drains > 0); /* pipeline=64 made it wait */
  CHECK_EQ_INT(admin_int("XLEN %s", k), 5000);
  /* the layout: field msg */
  redisReply *r = admin("XRANGE %s - + COUNT 1", k);
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
  if (r && r->elements == 1) {
    redisReply *f = r->element[0]->element[1];
    CHECK_STR(f->element[0]->str, "msg");
    CHECK_STR(f->element[1]->str, "m-0");
  }
  freeReplyObject(r);

  /* realtime from the beginning, to the end */
  app_t ca;
  app_init(&ca, 5000);
  sea_consumer_t *c =
      consumer(s, &ca, opts("start=beginning", "stop_at_end=true", "batch=300", NULL));
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.end_status, SEA_EOF);
  CHECK_EQ_INT(ca.distinct, 5000);
  CHECK_EQ_INT(ca.dups, 0);
  CHECK(ca.meta_ok);
  sea_consumer_close(c);
  app_free(&ca);

  /* pause: no delivery until resume, then the rest */
  app_init(&ca, 5000);
  sea_options_t *po = opts("start=beginning", "stop_at_end=true", "batch=100", NULL);
  CHECK_EQ_INT(sea_consumer_open(s, po, &c), 0);
  sea_options_free(po);
  sea_consumer_set_data(c, &ca);
  ca.pause_at = 1000;
  CHECK_EQ_INT(sea_consumer_start(c, on_batch_pause, on_end), 0);
  CHECK(run_until(rt, &ca.paused, 1));
  /* paused inside the batch callback; now resume and pause again from outside, when the next
   * read is already on the wire: its answer must wait for the resume */
  ca.paused = 0;
  ca.pause_at = 0;
  CHECK_EQ_INT(sea_consumer_resume(c), 0);
  CHECK(run_until(rt, &ca.msgs, 1200));
  CHECK_EQ_INT(sea_consumer_pause(c), 0);
  ca.paused = 1;
  int before = ca.msgs;
  for (int i = 0; i < 200; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  usleep(20000);
  for (int i = 0; i < 200; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(ca.after_pause, 0);
  CHECK_EQ_INT(ca.msgs, before);
  ca.paused = 0;
  ca.pause_at = 0;
  CHECK_EQ_INT(sea_consumer_resume(c), 0);
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.distinct, 5000);
  CHECK_EQ_INT(ca.dups, 0);
  sea_consumer_close(c);
  app_free(&ca);

  /* start=-10: the last ten */
  app_init(&ca, 5000);
  c = consumer(s, &ca, opts("start=-10", "stop_at_end=true", NULL, NULL));
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.msgs, 10);
  CHECK(ca.seen[4999] && ca.seen[4990] && !ca.seen[4989]);
  sea_consumer_close(c);
  app_free(&ca);

  /* realtime from the end: rewind(END) completes once the end is known; then only new ones */
  app_init(&ca, 6000);
  c = consumer(s, &ca, opts("block_ms=50", NULL, NULL, NULL));
  app_t op = {0};
  CHECK_EQ_INT(sea_consumer_rewind(c, (sea_pos_t){.kind = SEA_POS_END}, on_done, &op), 0);
  CHECK(run_until(rt, &op.done, 1));
  CHECK_EQ_INT(op.done_status, 0);
  produce(rt, p, &pa, 5000, 100);
  CHECK(run_until(rt, &ca.distinct, 100));
  CHECK_EQ_INT(ca.msgs, 100);
  CHECK(ca.seen[5000] && ca.seen[5099] && !ca.seen[4999]);
  /* seek to a time: everything since then (the stream was written within the last minutes) */
  memset(ca.seen, 0, 6001);
  ca.distinct = ca.msgs = 0;
  op.done = 0;
  CHECK_EQ_INT(sea_consumer_seek(c, sea_now_us() - 600LL * 1000000, on_done, &op), 0);
  CHECK(run_until(rt, &op.done, 1));
  CHECK(run_until(rt, &ca.distinct, 5100));
  sea_consumer_close(c);
  app_free(&ca);
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);
}

static void test_shards_and_trim(sea_runtime_t *rt) {
  char k[64], u[160], name[80];
  key(k, sizeof k, "sh");
  uri(u, sizeof u, k);
  sea_streamer_t *s;
  sea_options_t *o = opts("shards=3", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), 0);
  sea_options_free(o);
  sea_producer_t *p;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_t pa;
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 300);
  CHECK_EQ_INT(pa.receipts, 300);
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof name, "%s:%d", k, i);
    CHECK_EQ_INT(admin_int("XLEN %s", name), 100); /* round-robin */
    CHECK_EQ_INT(pa.shard_count[i], 100);
  }
  CHECK_EQ_INT(admin_int("EXISTS %s", k), 0);
  sea_producer_close(p);
  app_t ca;
  app_init(&ca, 300);
  sea_consumer_t *c = consumer(s, &ca, opts("start=beginning", "stop_at_end=true", NULL, NULL));
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.distinct, 300);
  sea_consumer_close(c);
  app_free(&ca);
  app_free(&pa);
  sea_streamer_close(s);

  /* sharding=hash: a message key always goes to the same shard */
  key(k, sizeof k, "hash");
  uri(u, sizeof u, k);
  o = opts("shards=4", "sharding=hash", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  for (int i = 0; i < 40; i++) {
    sea_message_t m;
    memset(&m, 0, sizeof m);
    m.payload.data = (const uint8_t *)"m-0";
    m.payload.len = 3;
    m.key = (const uint8_t *)(i % 2 ? "alpha" : "beta");
    m.key_len = i % 2 ? 5 : 4;
    CHECK_EQ_INT(sea_producer_send(p, &m, NULL), 0);
  }
  CHECK_EQ_INT(sea_producer_flush(p, on_done, &pa), 0);
  CHECK(run_until(rt, &pa.done, 1));
  CHECK_EQ_INT(pa.receipts, 40);
  int used = 0;
  for (int i = 0; i < 4; i++) {
    CHECK(pa.shard_count[i] == 0 || pa.shard_count[i] == 20 || pa.shard_count[i] == 40);
    used += pa.shard_count[i] > 0;
  }
  CHECK(used >= 1 && used <= 2);
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);

  /* MINID ~ trimming: 500 entries from 1970 go once a message is added with minid_age_ms */
  key(k, sizeof k, "minid");
  uri(u, sizeof u, k);
  for (int i = 1; i <= 500; i++) {
    redisReply *x = admin("XADD %s 1-%d msg old", k, i);
    freeReplyObject(x);
  }
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  o = opts("minid_age_ms=3600000", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 1);
  CHECK_EQ_INT(pa.receipts, 1);
  CHECK(admin_int("XLEN %s", k) <= 101); /* whole nodes of 100 entries are dropped */
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);

  /* MAXLEN ~ trimming keeps the stream near its bound */
  key(k, sizeof k, "trim");
  uri(u, sizeof u, k);
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  o = opts("maxlen=100", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 2000);
  CHECK_EQ_INT(pa.receipts, 2000);
  long long len = admin_int("XLEN %s", k);
  CHECK(len >= 100 && len < 1000);
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);
}

/* Entries written the way the Rust SeaStreamer writes them (a sharder of 2: k:0 and k:1, field
 * msg) read back with their shard, their seq packed from the id, and an entry without the field
 * skipped. */
typedef struct interop {
  int n, ended;
  uint64_t seq[8], shard[8];
  char payload[8][8];
} interop_t;

static void interop_batch(sea_consumer_t *c, const sea_batch_t *b) {
  interop_t *t = sea_consumer_get_data(c);
  for (size_t i = 0; i < b->count && t->n < 8; i++, t->n++) {
    t->seq[t->n] = b->msgs[i].meta.seq;
    t->shard[t->n] = b->msgs[i].meta.shard_id;
    snprintf(t->payload[t->n], sizeof t->payload[0], "%.*s", (int)b->msgs[i].payload.len,
             (const char *)b->msgs[i].payload.data);
  }
}

static void interop_end(sea_consumer_t *c, int status) {
  (void)status;
  interop_t *t = sea_consumer_get_data(c);
  t->ended = 1;
}

/* Reads u from the beginning to the end into t (streamer option so_opt, or none). */
static void interop_read(sea_runtime_t *rt, const char *u, const char *so_opt, interop_t *t) {
  sea_streamer_t *s;
  sea_options_t *o = so_opt ? opts(so_opt, NULL, NULL, NULL) : NULL;
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), 0);
  sea_options_free(o);
  memset(t, 0, sizeof *t);
  sea_consumer_t *c;
  o = opts("start=beginning", "stop_at_end=true", NULL, NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &c), 0);
  sea_options_free(o);
  sea_consumer_set_data(c, t);
  CHECK_EQ_INT(sea_consumer_start(c, interop_batch, interop_end), 0);
  CHECK(run_until(rt, &t->ended, 1));
  sea_consumer_close(c);
  sea_streamer_close(s);
}

static void test_interop(sea_runtime_t *rt) {
  char k[64], u[160];
  key(k, sizeof k, "rust");
  uri(u, sizeof u, k);
  uint64_t want[2];
  const char *ids[2];
  redisReply *r0 = admin("XADD %s:0 * msg alpha", k);
  redisReply *rx = admin("XADD %s:0 * other skipped", k);
  redisReply *r1 = admin("XADD %s:1 * msg beta", k);
  ids[0] = r0->str;
  ids[1] = r1->str;
  for (int i = 0; i < 2; i++) {
    unsigned long long ms = 0, sq = 0;
    sscanf(ids[i], "%llu-%llu", &ms, &sq);
    want[i] = (ms << 16) | sq;
  }
  /* With shards=2, then without shards=: the consumer finds the shards itself (SCAN for
   * KEY:N), as the Rust SeaStreamer's does; a key KEY:meta is not a shard, and neither is the
   * plain KEY when shards exist. */
  for (int round = 0; round < 2; round++) {
    redisReply *rm = NULL, *rp = NULL;
    if (round == 1) {
      rm = admin("SET %s:meta x", k);
      rp = admin("XADD %s * msg plain", k);
    }
    interop_t t;
    interop_read(rt, u, round == 0 ? "shards=2" : NULL, &t);
    CHECK_EQ_INT(t.n, 2);
    for (int i = 0; i < t.n && i < 2; i++) {
      int j = t.shard[i] == 0 ? 0 : 1;
      CHECK_EQ_INT(t.seq[i], want[j]);
      CHECK_STR(t.payload[i], j == 0 ? "alpha" : "beta");
    }
    if (rm)
      freeReplyObject(rm);
    if (rp)
      freeReplyObject(rp);
  }

  /* A Rust producer with a sharder of one shard writes KEY:0 only: found too. */
  char k1[64], u1[160];
  key(k1, sizeof k1, "rust1");
  uri(u1, sizeof u1, k1);
  redisReply *r2 = admin("XADD %s:0 * msg gamma", k1);
  interop_t t;
  interop_read(rt, u1, NULL, &t);
  CHECK_EQ_INT(t.n, 1);
  CHECK_STR(t.payload[0], "gamma");
  CHECK_EQ_INT(t.shard[0], 0);
  freeReplyObject(r2);
  freeReplyObject(r0);
  freeReplyObject(rx);
  freeReplyObject(r1);
}

/* Fairness: a quiet key's entries come in the first batch, not after a busy key's backlog. */
typedef struct fair {
  int batches, ended, quiet_first, busy_first;
  const char *quiet;
} fair_t;

static void fair_batch(sea_consumer_t *c, const sea_batch_t *b) {
  fair_t *f = sea_consumer_get_data(c);
  if (f->batches++ == 0)
    for (size_t i = 0; i < b->count; i++) {
      if (strcmp(b->msgs[i].meta.stream_key, f->quiet) == 0)
        f->quiet_first++;
      else
        f->busy_first++;
    }
}

static void fair_end(sea_consumer_t *c, int status) {
  (void)status;
  fair_t *f = sea_consumer_get_data(c);
  f->ended = 1;
}

static void test_fair(sea_runtime_t *rt) {
  char busy[64], quiet[64], u[200];
  key(busy, sizeof busy, "busy");
  key(quiet, sizeof quiet, "quiet");
  for (int i = 0; i < 3000; i++)
    freeReplyObject(admin("XADD %s * msg m-%d", busy, i));
  for (int i = 0; i < 10; i++)
    freeReplyObject(admin("XADD %s * msg m-%d", quiet, i));
  snprintf(u, sizeof u, "%s/%s,%s", uri_base, busy, quiet);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  fair_t f = {.quiet = sea_stream_key(quiet, strlen(quiet), NULL)};
  sea_consumer_t *c;
  sea_options_t *o = opts("start=beginning", "stop_at_end=true", "batch=100", NULL);
  CHECK_EQ_INT(sea_consumer_open(s, o, &c), 0);
  sea_options_free(o);
  sea_consumer_set_data(c, &f);
  CHECK_EQ_INT(sea_consumer_start(c, fair_batch, fair_end), 0);
  CHECK(run_until(rt, &f.ended, 1));
  CHECK_EQ_INT(f.quiet_first, 10);
  CHECK_EQ_INT(f.busy_first, 100);
  sea_consumer_close(c);
  sea_streamer_close(s);
}

static void test_groups(sea_runtime_t *rt) {
  char k[64], u[160];
  key(k, sizeof k, "grp");
  uri(u, sizeof u, k);
  sea_streamer_t *s;
  app_t pa;
  sea_producer_t *p = open_and_fill(rt, u, &s, &pa, 1000);

  /* resumable, with the default acknowledgement (ack=manual: nothing is XACKed before
   * sea_consumer_ack and commit): ack 400 of 1000 and commit, then a new consumer in the group
   * gets the 600 others again (its own pending entries) and then new ones */
  app_t ca;
  app_init(&ca, 2000);
  sea_consumer_t *c = consumer(s, &ca, opts("mode=resumable", "group=g1", "reset=earliest", NULL));
  ca.ack_into = c;
  ca.ack_upto = 400;
  CHECK(run_until(rt, &ca.distinct, 1000));
  app_t op = {0};
  CHECK_EQ_INT(sea_consumer_commit(c, on_done, &op), 0);
  CHECK(run_until(rt, &op.done, 1));
  CHECK_EQ_INT(op.done_status, 0);
  sea_consumer_close(c);
  redisReply *r = admin("XPENDING %s g1", k);
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->element[0]->integer == 600);
  freeReplyObject(r);
  app_free(&ca);

  app_init(&ca, 2000);
  c = consumer(s, &ca, opts("mode=resumable", "group=g1", "stop_at_end=true", "ack=manual"));
  ca.ack_into = c;
  ca.ack_upto = 100; /* of the 600: the other 500 stay pending */
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.end_status, SEA_EOF);
  CHECK_EQ_INT(ca.distinct, 600);
  CHECK_EQ_INT(ca.msgs, 600);
  CHECK(ca.seen[400] && ca.seen[999] && !ca.seen[399]);
  CHECK_EQ_INT(commit_wait(rt, c), 0); /* after the end too */
  sea_consumer_close(c);
  app_free(&ca);
  CHECK_EQ_INT(pending_count(k, "g1"), 500);
  /* and once more: the 500, acked and committed, and nothing is pending */
  app_init(&ca, 2000);
  c = consumer(s, &ca, opts("mode=resumable", "group=g1", "stop_at_end=true", NULL));
  ca.ack_into = c;
  ca.ack_upto = 1000;
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.end_status, SEA_EOF);
  CHECK_EQ_INT(ca.msgs, 500);
  CHECK(ca.seen[500] && ca.seen[999] && !ca.seen[499]);
  CHECK_EQ_INT(commit_wait(rt, c), 0);
  sea_consumer_close(c);
  app_free(&ca);
  CHECK_EQ_INT(pending_count(k, "g1"), 0);

  /* rewind moves the group (XGROUP SETID): everything again */
  app_init(&ca, 2000);
  c = consumer(s, &ca, opts("mode=resumable", "group=g1", "block_ms=50", NULL));
  op.done = 0;
  CHECK_EQ_INT(sea_consumer_rewind(c, (sea_pos_t){.kind = SEA_POS_BEGINNING}, on_done, &op), 0);
  CHECK(run_until(rt, &op.done, 1));
  CHECK_EQ_INT(op.done_status, 0);
  CHECK(run_until(rt, &ca.distinct, 1000));
  CHECK_EQ_INT(ca.distinct, 1000);
  sea_consumer_close(c);
  app_free(&ca);

  /* load-balanced: two consumers share 1000 new messages, each message to one of them */
  app_t a1, a2;
  app_init(&a1, 2000);
  app_init(&a2, 2000);
  sea_consumer_t *c1 =
      consumer(s, &a1, opts("group=lb", "reset=latest", "block_ms=20", "batch=10"));
  sea_consumer_t *c2 =
      consumer(s, &a2, opts("group=lb", "reset=latest", "block_ms=20", "batch=10"));
  /* the group exists once XINFO GROUPS lists it (created at latest) */
  for (int i = 0; i < 2000000; i++) {
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
    redisReply *g = admin("XINFO CONSUMERS %s lb", k);
    int ok = g && g->type == REDIS_REPLY_ARRAY && g->elements == 2;
    if (g)
      freeReplyObject(g);
    if (ok)
      break;
    usleep(1000);
  }
  produce(rt, p, &pa, 1000, 1000);
  for (long i = 0; i < 20000000 && a1.distinct + a2.distinct < 1000; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK_EQ_INT(a1.distinct + a2.distinct, 1000);
  CHECK(a1.distinct > 0 && a2.distinct > 0);
  int overlap = 0;
  for (int i = 0; i < 2000; i++)
    overlap += a1.seen[i] && a2.seen[i];
  CHECK_EQ_INT(overlap, 0);
  sea_consumer_close(c1);
  sea_consumer_close(c2);
  app_free(&a1);
  app_free(&a2);

  /* a member reads without acking and is closed (this process goes on, but no consumer of it
   * has that name any more): a member that follows claims its entries (XPENDING, XCLAIM) at
   * start, not after claim_idle_ms, in pages of its batch size, and then reads on */
  app_init(&a1, 3000);
  c1 = consumer(s, &a1, opts("group=cl", "reset=earliest", "batch=500", NULL));
  CHECK(run_until(rt, &a1.distinct, 2000));
  sea_consumer_close(c1);
  app_free(&a1);
  CHECK_EQ_INT(pending_count(k, "cl"), 2000);
  app_init(&a2, 3000);
  c2 = consumer(s, &a2, opts("group=cl", "stop_at_end=true", "batch=300", NULL));
  a2.ack_into = c2;
  a2.ack_upto = 3000;
  CHECK(run_until(rt, &a2.ended, 1));
  CHECK_EQ_INT(a2.end_status, SEA_EOF);
  CHECK_EQ_INT(a2.distinct, 2000);
  CHECK_EQ_INT(a2.dups, 0);
  CHECK_EQ_INT(commit_wait(rt, c2), 0);
  CHECK_EQ_INT(pending_count(k, "cl"), 0);
  /* commit again and again with nothing acked: each is answered at once, successfully */
  for (int i = 0; i < 50; i++)
    CHECK_EQ_INT(commit_wait(rt, c2), 0);
  sea_consumer_close(c2);
  app_free(&a2);
  /* the closed member, its entries claimed, was removed from the group (XGROUP DELCONSUMER
   * with none pending): only c2 is left */
  CHECK_EQ_INT(member_count(k, "cl"), 1);

  /* ack=at-most-once (what ack=auto was): each batch is XACKed as it is read */
  app_init(&a1, 3000);
  c1 =
      consumer(s, &a1, opts("group=amo", "reset=earliest", "ack=at-most-once", "stop_at_end=true"));
  CHECK(run_until(rt, &a1.ended, 1));
  CHECK_EQ_INT(a1.end_status, SEA_EOF);
  CHECK_EQ_INT(a1.distinct, 2000);
  CHECK_EQ_INT(commit_wait(rt, c1), 0); /* the automatic XACKs are answered */
  sea_consumer_close(c1);
  app_free(&a1);
  CHECK_EQ_INT(pending_count(k, "amo"), 0);

  /* ack=auto is refused, and says what it became */
  sea_options_t *bad = opts("group=auto", "ack=auto", NULL, NULL);
  sea_consumer_t *cb = NULL;
  CHECK_EQ_INT(sea_consumer_open(s, bad, &cb), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "option 'ack=auto' was renamed");
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "ack=at-most-once");
  sea_options_free(bad);
  bad = opts("ack=auto", NULL, NULL, NULL);
  sea_streamer_t *sb = NULL;
  CHECK_EQ_INT(sea_connect(rt, u, bad, &sb), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "option 'ack=auto' was renamed");
  sea_options_free(bad);
  bad = opts("ack=immediate", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, bad, &sb), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "'ack=immediate'");
  sea_options_free(bad);

  /* NOACK: nothing pending */
  app_init(&a1, 3000);
  c1 = consumer(s, &a1, opts("group=na", "reset=earliest", "ack=none", "stop_at_end=true"));
  CHECK(run_until(rt, &a1.ended, 1));
  CHECK_EQ_INT(a1.distinct, 2000);
  sea_consumer_close(c1);
  app_free(&a1);
  r = admin("XPENDING %s na", k);
  CHECK(r && r->type == REDIS_REPLY_ARRAY && r->element[0]->integer == 0);
  freeReplyObject(r);

  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);
}

/* ---- claims: what a member read and did not process is not lost ---- */

/* Produce n messages m-0 .. m-(n-1) to a fresh key k. */
static void fill(sea_runtime_t *rt, const char *k, int n) {
  char u[160];
  uri(u, sizeof u, k);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  sea_producer_t *p;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_t pa;
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, n);
  CHECK_EQ_INT(pa.receipts, n);
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);
}

/* The child of test_claims: a load-balanced member of GROUP on KEY that reads one batch of 300,
 * acks nothing, says so on fd and waits to be killed. */
static int hold_member(const char *k, const char *group, int fd) {
  alarm(120); /* never outlives a test that went wrong */
  sea_runtime_t *rt;
  if (sea_runtime_new(&rt) != 0)
    return 1;
  char u[160], g[80];
  uri(u, sizeof u, k);
  snprintf(g, sizeof g, "group=%s", group);
  sea_streamer_t *s;
  if (sea_connect(rt, u, NULL, &s) != 0)
    return 1;
  app_t a;
  app_init(&a, 1000);
  sea_options_t *o = opts(g, "reset=earliest", "batch=300", NULL);
  sea_consumer_t *c;
  if (sea_consumer_open(s, o, &c) != 0)
    return 1;
  sea_options_free(o);
  sea_consumer_set_data(c, &a);
  a.pause_at = 1; /* paused inside the batch callback: no further read is sent */
  if (sea_consumer_start(c, on_batch_pause, on_end) != 0 || !run_until(rt, &a.paused, 1))
    return 1;
  char line[32];
  int n = snprintf(line, sizeof line, "%d\n", a.msgs);
  if (write(fd, line, (size_t)n) != n)
    return 1;
  for (;;)
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

/* A commit still waiting for its XACK reply when the end of the stream is read completes, and
 * completes well: the reply comes on the same connection right after the empty read. Each batch
 * is acked and its commit asked for on the next loop turn, once the plugin has sent its next
 * XREADGROUP; so the last commit's XACK follows the read that finds the end. (Failing it with
 * the end's status made a pipeline record the end as its error and exit 0 whatever came after.) */
typedef struct endcommit {
  app_t a;
  sea_consumer_t *c;
  uv_timer_t t;
  int asked, answered, failed, last_status;
} endcommit_t;

static void ec_done(void *data, int status) {
  endcommit_t *e = data;
  e->answered++;
  if (status != 0) {
    e->failed++;
    e->last_status = status;
  }
}

static void ec_commit(uv_timer_t *t) {
  endcommit_t *e = t->data;
  e->asked++;
  CHECK_EQ_INT(sea_consumer_commit(e->c, ec_done, e), 0);
}

static void ec_batch(sea_consumer_t *c, const sea_batch_t *b) {
  endcommit_t *e = sea_consumer_get_data(c);
  on_batch(c, b);
  uv_timer_start(&e->t, ec_commit, 0, 0);
}

static void ec_end(sea_consumer_t *c, int status) {
  endcommit_t *e = sea_consumer_get_data(c);
  e->a.ended = 1;
  e->a.end_status = status;
}

static void test_commit_at_end(sea_runtime_t *rt) {
  char k[64], u[160];
  key(k, sizeof k, "endcommit");
  uri(u, sizeof u, k);
  sea_streamer_t *s;
  app_t pa;
  sea_producer_t *p = open_and_fill(rt, u, &s, &pa, 1000);

  endcommit_t *e = calloc(1, sizeof *e);
  app_init(&e->a, 1000);
  uv_timer_init(sea_runtime_uv_loop(rt), &e->t);
  e->t.data = e;
  sea_options_t *o =
      opts("mode=resumable", "group=g", "reset=earliest", "stop_at_end=true", "batch=100");
  CHECK_EQ_INT(sea_consumer_open(s, o, &e->c), 0);
  sea_options_free(o);
  sea_consumer_set_data(e->c, e);
  e->a.ack_into = e->c;
  e->a.ack_upto = 1000;
  CHECK_EQ_INT(sea_consumer_start(e->c, ec_batch, ec_end), 0);
  CHECK(run_until(rt, &e->a.ended, 1));
  CHECK_EQ_INT(e->a.end_status, SEA_EOF);
  CHECK_EQ_INT(e->a.distinct, 1000);
  CHECK(e->asked >= 1);
  CHECK(run_until(rt, &e->answered, e->asked));
  CHECK_EQ_INT(e->failed, 0);
  if (e->failed)
    fprintf(stderr, "  a commit failed: %s (%s)\n", sea_strerror(e->last_status),
            sea_consumer_errmsg(e->c));
  CHECK_EQ_INT(pending_count(k, "g"), 0);
  sea_consumer_close(e->c);
  uv_close((uv_handle_t *)&e->t, NULL);
  sea_runtime_run(rt, SEA_RUN_NOWAIT);
  app_free(&e->a);
  free(e);
  app_free(&pa);
  sea_producer_close(p);
  sea_streamer_close(s);
}

static void test_claims(sea_runtime_t *rt, const char *self) {
  char k[64], u[160];

  /* Read a batch of 1000 in a group, ack only its first half, commit, close. A second member
   * (load-balanced, stop_at_end) gets exactly the other half, and nothing is pending once it
   * acked them. */
  key(k, sizeof k, "half");
  uri(u, sizeof u, k);
  fill(rt, k, 1000);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  app_t a;
  app_init(&a, 1000);
  sea_consumer_t *c = consumer(s, &a, opts("group=h", "reset=earliest", "batch=1000", NULL));
  a.ack_into = c;
  a.ack_upto = 500;
  CHECK(run_until(rt, &a.msgs, 1000));
  CHECK_EQ_INT(a.msgs, 1000); /* one batch */
  CHECK_EQ_INT(commit_wait(rt, c), 0);
  CHECK_EQ_INT(commit_wait(rt, c), 0); /* again, nothing new acked */
  sea_consumer_close(c);
  app_free(&a);
  CHECK_EQ_INT(pending_count(k, "h"), 500);
  app_init(&a, 1000);
  c = consumer(s, &a, opts("group=h", "stop_at_end=true", NULL, NULL));
  a.ack_into = c;
  a.ack_upto = 1000;
  CHECK(run_until(rt, &a.ended, 1));
  CHECK_EQ_INT(a.end_status, SEA_EOF);
  CHECK_EQ_INT(a.msgs, 500);
  CHECK_EQ_INT(a.distinct, 500);
  int exact = 1;
  for (int i = 0; i < 1000; i++)
    exact &= a.seen[i] == (i >= 500);
  CHECK(exact);
  CHECK_EQ_INT(commit_wait(rt, c), 0);
  sea_consumer_close(c);
  app_free(&a);
  CHECK_EQ_INT(pending_count(k, "h"), 0);
  sea_streamer_close(s);

  /* A live member of this host keeps its entries: a member that starts with stop_at_end while
   * it holds 1000 unacked ones takes none of them; once it is closed, the next one takes all. */
  key(k, sizeof k, "live");
  uri(u, sizeof u, k);
  fill(rt, k, 1000);
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  app_t la;
  app_init(&la, 1000);
  sea_consumer_t *lc = consumer(s, &la, opts("group=l", "reset=earliest", NULL, NULL));
  CHECK(run_until(rt, &la.msgs, 1000));
  app_init(&a, 1000);
  c = consumer(s, &a, opts("group=l", "stop_at_end=true", NULL, NULL));
  CHECK(run_until(rt, &a.ended, 1));
  CHECK_EQ_INT(a.end_status, SEA_EOF);
  CHECK_EQ_INT(a.msgs, 0);
  sea_consumer_close(c);
  app_free(&a);
  CHECK_EQ_INT(pending_count(k, "l"), 1000);
  sea_consumer_close(lc);
  app_free(&la);
  app_init(&a, 1000);
  c = consumer(s, &a, opts("group=l", "stop_at_end=true", NULL, NULL));
  CHECK(run_until(rt, &a.ended, 1));
  CHECK_EQ_INT(a.end_status, SEA_EOF);
  CHECK_EQ_INT(a.distinct, 1000);
  sea_consumer_close(c);
  app_free(&a);
  sea_streamer_close(s);

  /* A member killed with SIGKILL while it holds pending entries (a child process that read a
   * batch of 300 and acked nothing): a new member with stop_at_end claims and delivers them
   * (in pages of its batch, 128) and everything after them before its end, and the dead member
   * is removed from the group once nothing is pending with it. */
  key(k, sizeof k, "kill");
  uri(u, sizeof u, k);
  fill(rt, k, 1000);
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    char port_s[16], fd_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(fd_s, sizeof fd_s, "%d", fds[1]);
    execl(self, self, "hold", port_s, k, "dead", fd_s, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char line[32] = {0};
  struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
  CHECK(poll(&pfd, 1, 60000) == 1); /* bounded: a child that never reads fails the test */
  CHECK(read(fds[0], line, sizeof line - 1) > 0);
  CHECK_EQ_INT(atoi(line), 300);
  close(fds[0]);
  kill(child, SIGKILL);
  int wst = 0;
  CHECK_EQ_INT(waitpid(child, &wst, 0), child);
  CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
  CHECK_EQ_INT(pending_count(k, "dead"), 300);
  CHECK_EQ_INT(member_count(k, "dead"), 1);
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  app_init(&a, 1000);
  c = consumer(s, &a, opts("group=dead", "stop_at_end=true", "batch=128", NULL));
  a.ack_into = c;
  a.ack_upto = 1000;
  CHECK(run_until(rt, &a.ended, 1));
  CHECK_EQ_INT(a.end_status, SEA_EOF);
  CHECK_EQ_INT(a.distinct, 1000);
  CHECK_EQ_INT(a.dups, 0);
  CHECK(a.seen[0] && a.seen[299] && a.seen[300] && a.seen[999]);
  CHECK_EQ_INT(commit_wait(rt, c), 0);
  CHECK_EQ_INT(member_count(k, "dead"), 1); /* the new member only */
  sea_consumer_close(c);
  app_free(&a);
  CHECK_EQ_INT(pending_count(k, "dead"), 0);
  sea_streamer_close(s);
}

/* ---- bad input ---- */

static void expect_connect_error(sea_runtime_t *rt, const char *u, sea_options_t *o,
                                 const char *needle) {
  sea_streamer_t *s;
  int rc = sea_connect(rt, u, NULL, &s);
  CHECK_EQ_INT(rc, 0);
  if (rc) {
    sea_options_free(o);
    return;
  }
  /* producer: the send is taken, then its receipt fails and the producer names the cause */
  sea_producer_t *p;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_t pa;
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), 0);
  CHECK(run_until(rt, &pa.errors, 1));
  CHECK_CONTAINS(sea_producer_errmsg(p), needle);
  sea_producer_close(p);
  app_free(&pa);
  /* consumer: ends with the same cause */
  app_t ca;
  app_init(&ca, 1);
  sea_consumer_t *c = consumer(s, &ca, o);
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK(ca.end_status < 0 && ca.end_status != SEA_EOF);
  if (c)
    CHECK_CONTAINS(sea_consumer_errmsg(c), needle);
  sea_consumer_close(c);
  app_free(&ca);
  sea_streamer_close(s);
}

static void test_bad(sea_runtime_t *rt) {
  char k[64], u[200];
  /* wrong password (an ACL user), then the right one */
  redisReply *r = admin("ACL SETUSER t%u-alice on >secret ~* &* +@all", run_id);
  freeReplyObject(r);
  key(k, sizeof k, "auth");
  snprintf(u, sizeof u, "redis://t%u-alice:wrong@127.0.0.1:%d/%s", run_id, port, k);
  expect_connect_error(rt, u, NULL, "authentication failed at 127.0.0.1:");
  snprintf(u, sizeof u, "redis://t%u-alice:secret@127.0.0.1:%d/%s", run_id, port, k);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  sea_producer_t *p;
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_t pa;
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 10);
  CHECK_EQ_INT(pa.receipts, 10);
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);

  /* db selection */
  key(k, sizeof k, "db");
  uri(u, sizeof u, k);
  sea_options_t *o = opts("db=3", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 3);
  CHECK_EQ_INT(pa.receipts, 3);
  CHECK_EQ_INT(admin_int("EXISTS %s", k), 0); /* not in db 0 */
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);

  /* unknown host: resolved off the loop, then a clear error */
  expect_connect_error(rt, "redis://no-such-host.invalid:6390/k", NULL,
                       "cannot resolve host 'no-such-host.invalid'");
  /* nothing listening */
  {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    close(fd); /* a port that was free a moment ago */
    snprintf(u, sizeof u, "redis://127.0.0.1:%d/k", ntohs(sa.sin_port));
    expect_connect_error(rt, u, NULL, "cannot connect to 127.0.0.1:");
  }
  /* a server that is not Redis: it answers like an HTTP server */
  {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    listen(fd, 8);
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    pid_t child = fork();
    if (child == 0) {
      for (;;) {
        int cfd = accept(fd, NULL, NULL);
        if (cfd < 0)
          _exit(0);
        const char *resp = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        ssize_t w = write(cfd, resp, strlen(resp));
        (void)w;
        close(cfd);
      }
    }
    close(fd);
    snprintf(u, sizeof u, "redis://127.0.0.1:%d/k", ntohs(sa.sin_port));
    expect_connect_error(rt, u, NULL, "is not a Redis server");
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
  }

  /* a port that accepts connections and never answers: the timeout ends it, naming the address */
  {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&sa, sizeof sa);
    listen(fd, 8); /* the kernel completes the handshake; nobody reads */
    socklen_t sl = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    snprintf(u, sizeof u, "redis://127.0.0.1:%d/k", ntohs(sa.sin_port));
    CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
    app_t ta;
    app_init(&ta, 1);
    sea_consumer_t *tc = consumer(s, &ta, opts("timeout=200", NULL, NULL, NULL));
    CHECK(run_until(rt, &ta.ended, 1));
    CHECK_EQ_INT(ta.end_status, SEA_ECONNECT); /* could not connect, as kafka and `list` say */
    CHECK_CONTAINS(sea_consumer_errmsg(tc), "no answer from 127.0.0.1:");
    sea_consumer_close(tc);
    app_free(&ta);
    /* the producer too (timeout= reaches producers since the host passes it on) */
    sea_producer_t *tp;
    sea_options_t *to = opts("timeout=200", NULL, NULL, NULL);
    CHECK_EQ_INT(sea_producer_open(s, to, &tp), 0);
    sea_options_free(to);
    app_init(&ta, 0);
    sea_producer_set_data(tp, &ta);
    sea_producer_set_callbacks(tp, on_receipt, on_drain);
    CHECK_EQ_INT(sea_producer_send_bytes(tp, NULL, "m-1", 3, NULL), 0);
    CHECK(run_until(rt, &ta.errors, 1));
    CHECK_CONTAINS(sea_producer_errmsg(tp), "no answer from 127.0.0.1:");
    sea_producer_close(tp);
    app_free(&ta);
    sea_streamer_close(s);
    close(fd);
  }

  /* create=false and no such group: the error names the group's stream */
  key(k, sizeof k, "nogroup");
  uri(u, sizeof u, k);
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  {
    app_t ga;
    app_init(&ga, 1);
    sea_consumer_t *gc = consumer(s, &ga, opts("group=nope", "create=false", NULL, NULL));
    CHECK(run_until(rt, &ga.ended, 1));
    CHECK_EQ_INT(ga.end_status, SEA_EBACKEND);
    CHECK_CONTAINS(sea_consumer_errmsg(gc), "NOGROUP");
    CHECK_CONTAINS(sea_consumer_errmsg(gc), k);
    sea_consumer_close(gc);
    app_free(&ga);
  }
  sea_streamer_close(s);

  /* a key that holds a string: messages before the failure are kept, the error names the key */
  char sk[64], ok[64];
  key(sk, sizeof sk, "str");
  key(ok, sizeof ok, "ok");
  r = admin("SET %s hello", sk);
  freeReplyObject(r);
  snprintf(u, sizeof u, "%s/%s,%s", uri_base, ok, sk);
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  for (int i = 0; i < 5; i++)
    CHECK_EQ_INT(sea_producer_send_bytes(p, ok, "m-1", 3, NULL), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, sk, "m-2", 3, NULL), 0);
  CHECK(run_until(rt, &pa.errors, 1));
  CHECK(run_until(rt, &pa.receipts, 5));
  CHECK_EQ_INT(pa.receipts, 5);
  CHECK_EQ_INT(admin_int("XLEN %s", ok), 5);
  CHECK_CONTAINS(sea_producer_errmsg(p), "WRONGTYPE");
  CHECK_CONTAINS(sea_producer_errmsg(p), sk);
  sea_producer_close(p);
  app_free(&pa);
  app_t ca;
  app_init(&ca, 1);
  sea_consumer_t *c = consumer(s, &ca, opts("start=beginning", NULL, NULL, NULL));
  CHECK(run_until(rt, &ca.ended, 1));
  CHECK_EQ_INT(ca.end_status, SEA_EBACKEND);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "WRONGTYPE");
  CHECK_CONTAINS(sea_consumer_errmsg(c), sk);
  sea_consumer_close(c);
  app_free(&ca);
  sea_streamer_close(s);

  /* a payload over the server's proto-max-bulk-len (the fixture sets 1mb) */
  key(k, sizeof k, "big");
  uri(u, sizeof u, k);
  o = opts("max_payload=4000000", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  char *big = calloc(1, 2000000);
  memcpy(big, "m-9", 3);
  /* before the connection is up (the limit is not known yet) and after */
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "m-1", 3, NULL), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, big, 2000000, NULL), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "m-2", 3, NULL), 0);
  CHECK(run_until(rt, &pa.receipts, 2));
  CHECK_EQ_INT(pa.errors, 1);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, big, 2000000, NULL), SEA_ETOOBIG);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "m-3", 3, NULL), 0);
  CHECK(run_until(rt, &pa.receipts, 3));
  CHECK_EQ_INT(admin_int("XLEN %s", k), 3);
  free(big);
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);

  /* bad options and URIs are refused at once */
  o = opts("shards=zero", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "shards=zero");
  sea_options_free(o);
  o = opts("wait_replicas=some", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "wait_replicas=some");
  sea_options_free(o);
  o = opts("wait_timeout_ms=0", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "wait_timeout_ms=0");
  sea_options_free(o);
  o = opts("colour=blue", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, u, o, &s), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "unknown option 'colour' (common keys: mode, group");
  sea_options_free(o);
  /* several nodes are the nodes of one Redis Cluster: a plain server named twice is refused
   * once it answers, and so is a URI of more than 64 nodes */
  snprintf(u, sizeof u, "redis://127.0.0.1:%d,127.0.0.1:%d/k", port, port);
  expect_connect_error(rt, u, NULL, "is not a Redis Cluster node");
  {
    char many[1200];
    size_t off = (size_t)snprintf(many, sizeof many, "redis://a:1");
    for (int i = 0; i < 64; i++)
      off += (size_t)snprintf(many + off, sizeof many - off, ",a:%d", i + 2);
    snprintf(many + off, sizeof many - off, "/k");
    CHECK_EQ_INT(sea_connect(rt, many, NULL, &s), SEA_EURI);
    CHECK_CONTAINS(sea_runtime_errmsg(rt), "names 65 nodes");
  }
  /* a bad node among several is named */
  CHECK_EQ_INT(sea_connect(rt, "redis://127.0.0.1:7000,127.0.0.1:0/k", NULL, &s), SEA_EURI);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "node '127.0.0.1:0'");
}

/* ---- restart: redis-server stops and starts in the middle of 100,000 messages ---- */

static char restart_cmd[600];
static int restart_rc = -1;

/* The restart runs on a thread of its own, so the loop keeps sending and reading through it. */
static void *restart_thread(void *arg) {
  (void)arg;
  restart_rc = system(restart_cmd);
  return NULL;
}

static void test_restart(sea_runtime_t *rt) {
  enum { N = 100000 };
  char k[64], u[160];
  pthread_t th;
  key(k, sizeof k, "rs");
  uri(u, sizeof u, k);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, u, NULL, &s), 0);
  sea_producer_t *p;
  sea_options_t *o = opts("pipeline=2000", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  app_t pa;
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  app_t rt_a, lb_a;
  app_init(&rt_a, N);
  app_init(&lb_a, N);
  sea_consumer_t *c1 = consumer(s, &rt_a, opts("start=beginning", "block_ms=100", NULL, NULL));
  sea_consumer_t *c2 =
      consumer(s, &lb_a, opts("group=rg", "reset=earliest", "block_ms=100", "batch=500"));
  char buf[32];
  int restarted = 0;
  for (int i = 0; i < N;) {
    if (!restarted && pa.receipts >= N / 3) {
      /* a clean SHUTDOWN (the AOF keeps what the server confirmed), then start again */
      snprintf(restart_cmd, sizeof restart_cmd, "bash '%s/redis_env.sh' restart '%s'",
               SEA_REDIS_ENV_DIR, env_dir);
      CHECK_EQ_INT(pthread_create(&th, NULL, restart_thread, NULL), 0);
      restarted = 1;
    }
    int len = snprintf(buf, sizeof buf, "m-%d", i);
    int rc = sea_producer_send_bytes(p, NULL, buf, (size_t)len, NULL);
    if (rc == SEA_EAGAIN) {
      int d = pa.drains;
      run_until(rt, &pa.drains, d + 1);
      continue;
    }
    CHECK_EQ_INT(rc, 0);
    if (rc)
      break;
    i++;
  }
  CHECK_EQ_INT(sea_producer_flush(p, on_done, &pa), 0);
  CHECK(run_until(rt, &pa.done, 1));
  CHECK_EQ_INT(pa.done_status, 0);
  CHECK_EQ_INT(pa.errors, 0);
  CHECK(restarted);
  if (restarted) {
    pthread_join(th, NULL);
    CHECK_EQ_INT(restart_rc, 0);
  }
  CHECK_EQ_INT(pa.receipts, N); /* one receipt per send; a resent one may be stored twice */
  CHECK(run_until(rt, &rt_a.distinct, N));
  CHECK(run_until(rt, &lb_a.distinct, N));
  CHECK_EQ_INT(rt_a.distinct, N);
  CHECK_EQ_INT(lb_a.distinct, N);
  CHECK_EQ_INT(rt_a.ended, 0);
  CHECK_EQ_INT(lb_a.ended, 0);
  if (pa.errors)
    fprintf(stderr, "producer: %s\n", sea_producer_errmsg(p));
  if (rt_a.ended)
    fprintf(stderr, "realtime consumer: %s\n", sea_consumer_errmsg(c1));
  if (lb_a.ended)
    fprintf(stderr, "group consumer: %s\n", sea_consumer_errmsg(c2));
  printf("restart: %d receipts, realtime saw %d (%d again), group saw %d (%d again)\n", pa.receipts,
         rt_a.msgs, rt_a.dups, lb_a.msgs, lb_a.dups);
  sea_consumer_close(c1);
  sea_consumer_close(c2);
  sea_producer_close(p);
  app_free(&pa);
  app_free(&rt_a);
  app_free(&lb_a);

  /* the server goes away for good: after reconnect_ms the producer fails, saying so, and the
   * message it could not deliver gets an error receipt */
  sea_options_t *o2 = opts("reconnect_ms=300", NULL, NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o2, &p), 0);
  sea_options_free(o2);
  app_init(&pa, 0);
  sea_producer_set_data(p, &pa);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  produce(rt, p, &pa, 0, 1);
  CHECK_EQ_INT(pa.receipts, 1);
  snprintf(restart_cmd, sizeof restart_cmd, "bash '%s/redis_env.sh' stop '%s'", SEA_REDIS_ENV_DIR,
           env_dir);
  CHECK_EQ_INT(system(restart_cmd), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "m-1", 3, NULL), 0);
  CHECK(run_until(rt, &pa.errors, 1));
  CHECK_CONTAINS(sea_producer_errmsg(p), "gave up reconnecting after 300 ms");
  sea_producer_close(p);
  app_free(&pa);
  sea_streamer_close(s);
}

int main(int argc, char **argv) {
  if (argc == 6 && strcmp(argv[1], "hold") == 0) {
    /* test_redis hold PORT KEY GROUP FD: the member test_claims kills */
    port = atoi(argv[2]);
    snprintf(uri_base, sizeof uri_base, "redis://127.0.0.1:%d", port);
    return hold_member(argv[3], argv[4], atoi(argv[5]));
  }
  if (argc < 3) {
    fprintf(stderr, "usage: test_redis basic|bad|restart PORT_FILE [ENV_DIR]\n");
    return 2;
  }
  FILE *f = fopen(argv[2], "r");
  if (f == NULL || fscanf(f, "%d", &port) != 1) {
    fprintf(stderr, "test_redis: cannot read the port from %s\n", argv[2]);
    return 1;
  }
  fclose(f);
  env_dir = argc > 3 ? argv[3] : NULL;
  run_id = (unsigned)getpid();
  snprintf(uri_base, sizeof uri_base, "redis://127.0.0.1:%d", port);
  signal(SIGPIPE, SIG_IGN);
  sea_runtime_t *rt;
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  if (strcmp(argv[1], "basic") == 0) {
    test_produce_consume(rt);
    test_shards_and_trim(rt);
    test_interop(rt);
    test_fair(rt);
    test_groups(rt);
    test_commit_at_end(rt);
    test_claims(rt, "/proc/self/exe");
  } else if (strcmp(argv[1], "bad") == 0) {
    test_bad(rt);
  } else if (strcmp(argv[1], "restart") == 0 && env_dir) {
    test_restart(rt);
  } else {
    fprintf(stderr, "test_redis: unknown test %s\n", argv[1]);
    return 2;
  }
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
  return test_report();
}
