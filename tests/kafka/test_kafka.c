/* test_kafka.c: the Kafka backend through the public API against a real broker (argv[1] is the
 * file holding its bootstrap address, written by tests/kafka/broker.sh). */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <seastreamer/seastreamer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "test.h"
#include "test_opts.h"

static char broker[256];
static char broker_dir[4096]; /* the fixture's directory: its log files are in data/ */
static unsigned topic_counter;

/* A topic name no earlier run used (the two builds share nothing, but reruns may). */
static void topic_name(char *buf, size_t n, const char *what) {
  snprintf(buf, n, "t-%s-%ld-%llx-%u", what, (long)getpid(),
           (unsigned long long)(sea_now_us() / 1000), topic_counter++);
}

/* Create a topic with the admin API (librdkafka, synchronous: the test is not the loop). */
static void create_topic(const char *name, int partitions) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", broker, err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, err, sizeof err);
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
  CHECK(ev != NULL);
  if (ev) {
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t cnt = 0;
    const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
    CHECK_EQ_INT(cnt, 1);
    if (cnt == 1)
      CHECK_EQ_INT(rd_kafka_topic_result_error(tr[0]), 0);
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

#define opts3(...) TEST_OPTS(__VA_ARGS__)

/* ---- running the loop until something happened, with a guard against hanging ---- */

static int guard_fired;
static void on_guard(uv_timer_t *t) {
  (void)t;
  guard_fired = 1;
}
static void on_closed(uv_handle_t *h) {
  (void)h;
}

/* Runs until *flag >= want. The guard (60 s) only keeps a broken build from hanging the suite:
 * reaching it is a failure, and no test depends on how fast anything is. */
static int run_until(sea_runtime_t *rt, const int *flag, int want) {
  uv_loop_t *loop = sea_runtime_uv_loop(rt);
  uv_timer_t guard;
  guard_fired = 0;
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, on_guard, 60000, 0);
  while (*flag < want && !guard_fired)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, on_closed);
  sea_runtime_run(rt, SEA_RUN_NOWAIT);
  if (*flag < want)
    fprintf(stderr, "run_until: gave up waiting (%d of %d)\n", *flag, want);
  return *flag >= want;
}

/* Let the loop run for a while (between rounds of sends; never a check on how long anything
 * takes). */
static int slept;
static void on_slept(uv_timer_t *t) {
  (void)t;
  slept = 1;
}
static void run_for_ms(sea_runtime_t *rt, uint64_t ms) {
  uv_timer_t t;
  slept = 0;
  uv_timer_init(sea_runtime_uv_loop(rt), &t);
  uv_timer_start(&t, on_slept, ms, 0);
  while (!slept)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  uv_close((uv_handle_t *)&t, on_closed);
  sea_runtime_run(rt, SEA_RUN_NOWAIT);
}

static void finish(sea_runtime_t *rt, sea_streamer_t *s) {
  sea_streamer_close(s);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

static sea_streamer_t *connect_to(sea_runtime_t *rt, const char *topic, const sea_options_t *o) {
  char uri[512];
  snprintf(uri, sizeof uri, "kafka://%s/%s", broker, topic);
  sea_streamer_t *s = NULL;
  int rc = sea_connect(rt, uri, o, &s);
  if (rc)
    fprintf(stderr, "connect %s: %s\n", uri, sea_runtime_errmsg(rt));
  CHECK_EQ_INT(rc, 0);
  return s;
}

/* ---- producer side ---- */

typedef struct prod {
  int receipts, errors, drains, flushed, flush_status;
  int64_t next_seq; /* -1 once the order broke */
  uint64_t last_shard;
  const char *last_key;
  int64_t last_ts;
} prod_t;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  (void)token;
  prod_t *r = sea_producer_get_data(p);
  if (status) {
    r->errors++;
    return;
  }
  if (r->next_seq >= 0 && meta->seq != (uint64_t)r->next_seq)
    r->next_seq = -1;
  else if (r->next_seq >= 0)
    r->next_seq++;
  r->receipts++;
  r->last_shard = meta->shard_id;
  r->last_key = meta->stream_key;
  r->last_ts = meta->timestamp_us;
}

static void on_drain(sea_producer_t *p) {
  prod_t *r = sea_producer_get_data(p);
  r->drains++;
}

static void on_flushed(void *data, int status) {
  prod_t *r = data;
  r->flushed++;
  r->flush_status = status;
}

static sea_producer_t *open_producer(sea_streamer_t *s, prod_t *r, const sea_options_t *o) {
  sea_producer_t *p = NULL;
  memset(r, 0, sizeof *r);
  int rc = sea_producer_open(s, o, &p);
  CHECK_EQ_INT(rc, 0);
  if (rc)
    return NULL;
  sea_producer_set_data(p, r);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  return p;
}

/* Send n messages "<prefix>-i" with key "k<i>" and a header h=v<i>; flush; wait. */
static void produce_n(sea_runtime_t *rt, sea_producer_t *p, prod_t *r, const char *prefix, int n,
                      int64_t ts_base_us) {
  for (int i = 0; i < n; i++) {
    char payload[64], key[16], hv[16];
    snprintf(payload, sizeof payload, "%s-%d", prefix, i);
    snprintf(key, sizeof key, "k%d", i);
    snprintf(hv, sizeof hv, "v%d", i);
    sea_kv_t h = {
        .name = "h", .name_len = 1, .value = (const uint8_t *)hv, .value_len = strlen(hv)};
    sea_message_t m;
    memset(&m, 0, sizeof m);
    m.payload.data = (const uint8_t *)payload;
    m.payload.len = strlen(payload);
    m.key = (const uint8_t *)key;
    m.key_len = strlen(key);
    m.headers = &h;
    m.header_count = 1;
    if (ts_base_us)
      m.meta.timestamp_us = ts_base_us + (int64_t)i * 1000000;
    int rc = sea_producer_send(p, &m, NULL);
    CHECK_EQ_INT(rc, 0);
  }
  int before = r->flushed;
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, r), 0);
  CHECK(run_until(rt, &r->flushed, before + 1));
  CHECK_EQ_INT(r->flush_status, 0);
}

/* ---- consumer side ---- */

#define MAXMSG 600
typedef struct cons {
  int count, ended, end_status, batches;
  size_t bytes; /* payload bytes of every message */
  char payload[MAXMSG][48];
  char key[MAXMSG][16];
  char header[MAXMSG][24];
  uint64_t seq[MAXMSG], shard[MAXMSG];
  int64_t ts[MAXMSG];
  const char *stream_key;
  int ack_seq;   /* ack the message with this seq (-1: none) */
  int ack_all;   /* ack every message */
  int acked;     /* acks that returned 0 */
  int committed; /* commits done */
  int commit_status;
} cons_t;

static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  cons_t *k = sea_consumer_get_data(c);
  k->batches++;
  for (size_t i = 0; i < b->count; i++) {
    const sea_message_t *m = &b->msgs[i];
    k->bytes += m->payload.len;
    if (k->count < MAXMSG) {
      int n = k->count;
      snprintf(k->payload[n], sizeof k->payload[n], "%.*s", (int)m->payload.len,
               (const char *)m->payload.data);
      snprintf(k->key[n], sizeof k->key[n], "%.*s", (int)m->key_len,
               m->key ? (const char *)m->key : "");
      k->header[n][0] = '\0';
      if (m->header_count == 1)
        snprintf(k->header[n], sizeof k->header[n], "%.*s=%.*s", (int)m->headers[0].name_len,
                 m->headers[0].name, (int)m->headers[0].value_len,
                 (const char *)m->headers[0].value);
      k->seq[n] = m->meta.seq;
      k->shard[n] = m->meta.shard_id;
      k->ts[n] = m->meta.timestamp_us;
      k->stream_key = m->meta.stream_key;
    }
    k->count++;
    if (k->ack_all || (k->ack_seq >= 0 && m->meta.seq == (uint64_t)k->ack_seq))
      if (sea_consumer_ack(c, m) == 0)
        k->acked++;
  }
}

static void on_end(sea_consumer_t *c, int status) {
  cons_t *k = sea_consumer_get_data(c);
  k->ended++;
  k->end_status = status;
}

static void on_committed(void *data, int status) {
  cons_t *k = data;
  k->committed++;
  k->commit_status = status;
}

static sea_consumer_t *open_consumer(sea_streamer_t *s, cons_t *k, const sea_options_t *o,
                                     int start) {
  memset(k, 0, sizeof *k);
  k->ack_seq = -1;
  sea_consumer_t *c = NULL;
  int rc = sea_consumer_open(s, o, &c);
  CHECK_EQ_INT(rc, 0);
  if (rc)
    return NULL;
  sea_consumer_set_data(c, k);
  if (start)
    CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  return c;
}

/* ---- the tests ---- */

/* Send with key and headers; receipts carry topic, partition, offsets in order, a timestamp;
 * a realtime consumer from the beginning gets everything, keys and headers, then SEA_EOF. */
static void test_produce_consume(void) {
  char topic[128];
  topic_name(topic, sizeof topic, "basic");
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, NULL);
  produce_n(rt, p, &r, "m", 100, 0);
  CHECK_EQ_INT(r.receipts, 100);
  CHECK_EQ_INT(r.errors, 0);
  CHECK_EQ_INT(r.next_seq, 100); /* offsets 0..99 in order */
  CHECK_EQ_INT(r.last_shard, 0);
  CHECK_STR(r.last_key, topic);
  CHECK(r.last_ts > 1700000000000000LL);
  sea_producer_close(p);

  cons_t k;
  sea_options_t *o = opts3("start=beginning", "stop_at_end=true", NULL);
  sea_consumer_t *c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EOF);
  CHECK_EQ_INT(k.count, 100);
  CHECK_STR(k.payload[0], "m-0");
  CHECK_STR(k.payload[99], "m-99");
  CHECK_STR(k.key[7], "k7");
  CHECK_STR(k.header[7], "h=v7");
  CHECK_EQ_INT(k.seq[42], 42);
  CHECK_STR(k.stream_key, topic);
  sea_consumer_close(c);

  /* Realtime without start= begins at the end: nothing old, then SEA_EOF. */
  o = opts3("stop_at_end=true", NULL, NULL);
  c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EOF);
  CHECK_EQ_INT(k.count, 0);
  sea_consumer_close(c);

  /* start=-3: the last three. */
  o = opts3("start=-3", "stop_at_end=true", NULL);
  c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 3);
  CHECK_STR(k.payload[0], "m-97");
  sea_consumer_close(c);
  finish(rt, s);
}

/* The partition option, assign/unassign of explicit partitions. */
static void test_partitions(void) {
  char topic[128];
  topic_name(topic, sizeof topic, "parts");
  create_topic(topic, 3);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  for (int part = 0; part < 3; part++) {
    char opt[32];
    snprintf(opt, sizeof opt, "partition=%d", part);
    sea_options_t *o = opts3(opt, NULL, NULL);
    prod_t r;
    sea_producer_t *p = open_producer(s, &r, o);
    sea_options_free(o);
    char prefix[8];
    snprintf(prefix, sizeof prefix, "p%d", part);
    produce_n(rt, p, &r, prefix, 4, 0);
    CHECK_EQ_INT(r.receipts, 4);
    CHECK_EQ_INT(r.last_shard, part);
    sea_producer_close(p);
  }
  /* Only partition 1. */
  cons_t k;
  sea_options_t *o = opts3("start=beginning", "stop_at_end=true", NULL);
  sea_consumer_t *c = open_consumer(s, &k, o, 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_consumer_assign(c, topic, 1), 0);
  CHECK_EQ_INT(sea_consumer_assign(c, topic, 2), 0);
  CHECK_EQ_INT(sea_consumer_unassign(c, topic, 2), 0);
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EOF);
  CHECK_EQ_INT(k.count, 4);
  int all_p1 = 1;
  for (int i = 0; i < k.count && i < MAXMSG; i++)
    all_p1 &= k.shard[i] == 1 && strncmp(k.payload[i], "p1-", 3) == 0;
  CHECK(all_p1);
  sea_consumer_close(c);

  /* Everything: 12 over the three partitions. */
  o = opts3("start=beginning", "stop_at_end=true", NULL);
  c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 12);
  sea_consumer_close(c);
  finish(rt, s);
}

/* Resumable: a group resumes after its last commit (of one acked message); auto_commit commits
 * everything delivered. */
/* Commit what c acked and wait for the result, which must be success. */
static void commit_wait(sea_runtime_t *rt, sea_consumer_t *c, cons_t *k) {
  int before = k->committed;
  CHECK_EQ_INT(sea_consumer_commit(c, on_committed, k), 0);
  CHECK(run_until(rt, &k->committed, before + 1));
  CHECK_EQ_INT(k->commit_status, 0);
}

/* A new consumer with options o (a group, stop_at_end) reads count messages, the first being
 * first: where the group's last commit left it. */
static void expect_resume(sea_streamer_t *s, sea_runtime_t *rt, const sea_options_t *o, int count,
                          const char *first) {
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, o, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EOF);
  CHECK_EQ_INT(k.count, count);
  if (first)
    CHECK_STR(k.payload[0], first);
  sea_consumer_close(c);
}

static void test_resumable_commit(void) {
  char topic[128], group[160], g2[170];
  topic_name(topic, sizeof topic, "resume");
  snprintf(group, sizeof group, "g-%s", topic);
  snprintf(g2, sizeof g2, "g2-%s", topic);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, NULL);
  produce_n(rt, p, &r, "r", 10, 0);
  sea_producer_close(p);

  char gopt[200];
  snprintf(gopt, sizeof gopt, "group=%s", group);
  sea_options_t *o = opts3("mode=resumable", gopt, "stop_at_end=true");
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, o, 0);
  k.ack_seq = 4;
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 10);
  CHECK_EQ_INT(k.acked, 1);
  commit_wait(rt, c, &k);
  sea_consumer_close(c);

  /* The same group again: after seq 4. */
  expect_resume(s, rt, o, 5, "r-5");
  sea_options_free(o);

  /* Acked but not committed when the consumer closes: the close commits it. */
  char g3[180];
  snprintf(g3, sizeof g3, "group=g3-%s", topic);
  o = opts3("mode=resumable", g3, "stop_at_end=true");
  c = open_consumer(s, &k, o, 0);
  k.ack_seq = 6;
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.acked, 1);
  sea_consumer_close(c);
  expect_resume(s, rt, o, 3, "r-7");
  sea_options_free(o);

  /* A position without its message: ack_pos(topic, 0, 7), then commit; the group resumes at
   * 8. A partition the consumer does not read is refused, saying which. */
  char g4[180];
  snprintf(g4, sizeof g4, "group=g4-%s", topic);
  o = opts3("mode=resumable", g4, "stop_at_end=true");
  c = open_consumer(s, &k, o, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 10);
  CHECK_EQ_INT(sea_consumer_ack_pos(c, topic, 0, 7), 0);
  CHECK_EQ_INT(sea_consumer_ack_pos(c, topic, 5, 1), SEA_ESTATE);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "partition 5 (seq 1) is not assigned to this consumer");
  commit_wait(rt, c, &k);
  sea_consumer_close(c);
  expect_resume(s, rt, o, 2, "r-8");
  sea_options_free(o);

  /* auto_commit=at-most-once: a commit covers everything delivered. */
  snprintf(gopt, sizeof gopt, "group=%s", g2);
  o = opts3(gopt, "stop_at_end=true", "auto_commit=at-most-once");
  sea_options_set(o, "mode", "resumable");
  c = open_consumer(s, &k, o, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 10);
  commit_wait(rt, c, &k);
  sea_consumer_close(c);
  expect_resume(s, rt, o, 0, NULL);
  sea_options_free(o);
  finish(rt, s);
}

/* seek(timestamp) and rewind(beginning | offset), and start=s@MS. */
static void test_seek_rewind(void) {
  char topic[128];
  topic_name(topic, sizeof topic, "seek");
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, NULL);
  int64_t t0 = 1767225600000000LL; /* 2026-01-01T00:00:00Z; one message per second after it */
  produce_n(rt, p, &r, "s", 5, t0);
  CHECK_EQ_INT(r.receipts, 5);
  CHECK_EQ_INT(r.last_ts, t0 + 4000000);
  sea_producer_close(p);

  sea_options_t *o = opts3("start=beginning", NULL, NULL);
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.count, 5));
  CHECK_EQ_INT(k.ts[3], t0 + 3000000);
  CHECK_EQ_INT(sea_consumer_seek(c, t0 + 2000000, (sea_done_cb)on_committed, &k), 0);
  CHECK(run_until(rt, &k.committed, 1));
  CHECK_EQ_INT(k.commit_status, 0);
  CHECK(run_until(rt, &k.count, 8));
  CHECK_STR(k.payload[5], "s-2");
  CHECK_STR(k.payload[7], "s-4");
  sea_pos_t beg = {.kind = SEA_POS_BEGINNING};
  CHECK_EQ_INT(sea_consumer_rewind(c, beg, (sea_done_cb)on_committed, &k), 0);
  CHECK(run_until(rt, &k.count, 13));
  CHECK_STR(k.payload[8], "s-0");
  sea_pos_t at = {.kind = SEA_POS_AT, .seq = 3};
  CHECK_EQ_INT(sea_consumer_rewind(c, at, (sea_done_cb)on_committed, &k), 0);
  CHECK(run_until(rt, &k.count, 15));
  CHECK_STR(k.payload[13], "s-3");
  CHECK_EQ_INT(k.committed, 3);
  sea_consumer_close(c);

  /* start=s@MS, realtime, and in a load-balanced group at its first assignment (which read from
   * the beginning before 2026-12-04). */
  char st[64], gopt[200];
  snprintf(st, sizeof st, "start=s@%lld", (long long)((t0 + 3000000) / 1000));
  snprintf(gopt, sizeof gopt, "group=seek-%s", topic);
  for (int grouped = 0; grouped < 2; grouped++) {
    o = opts3(st, "stop_at_end=true", grouped ? gopt : NULL);
    c = open_consumer(s, &k, o, 1);
    sea_options_free(o);
    CHECK(run_until(rt, &k.ended, 1));
    CHECK_EQ_INT(k.count, 2);
    CHECK_STR(k.payload[0], "s-3");
    CHECK_STR(k.payload[1], "s-4");
    sea_consumer_close(c);
  }
  finish(rt, s);
}

/* Load-balanced: two members of one group share a two-partition topic; every message reaches
 * exactly one of them. */
static int both_have(const cons_t *a, const cons_t *b) {
  return a->count > 0 && b->count > 0;
}
static void test_load_balanced(void) {
  char topic[128], gopt[200];
  topic_name(topic, sizeof topic, "lb");
  create_topic(topic, 2);
  snprintf(gopt, sizeof gopt, "group=lb-%s", topic);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  sea_options_t *o = opts3(gopt, "reset=earliest", NULL);
  static cons_t a, b;
  sea_consumer_t *ca = open_consumer(s, &a, o, 1);
  sea_consumer_t *cb = open_consumer(s, &b, o, 1);
  a.ack_all = b.ack_all = 1;
  sea_options_free(o);
  prod_t r0, r1;
  sea_options_t *p0o = opts3("partition=0", NULL, NULL), *p1o = opts3("partition=1", NULL, NULL);
  sea_producer_t *p0 = open_producer(s, &r0, p0o), *p1 = open_producer(s, &r1, p1o);
  sea_options_free(p0o);
  sea_options_free(p1o);
  /* Send a round to each partition until both members have received something: the second
   * member's join makes the group rebalance, which takes a few heartbeats. The deadline only
   * keeps a broken build from looping forever. */
  int sent = 0;
  int64_t deadline = sea_now_us() + 90 * 1000000LL;
  for (int round = 0; !both_have(&a, &b) && sea_now_us() < deadline; round++) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "a%d", round);
    produce_n(rt, p0, &r0, prefix, 1, 0);
    snprintf(prefix, sizeof prefix, "b%d", round);
    produce_n(rt, p1, &r1, prefix, 1, 0);
    sent += 2;
    run_for_ms(rt, 100);
  }
  CHECK(both_have(&a, &b));
  /* Wait for every message sent, then check nothing came twice. */
  int total = a.count + b.count;
  for (int i = 0; i < 600 && total < sent; i++) {
    run_for_ms(rt, 100);
    total = a.count + b.count;
  }
  CHECK_EQ_INT(total, sent);
  int dup = 0;
  for (int i = 0; i < a.count && i < MAXMSG; i++)
    for (int j = 0; j < b.count && j < MAXMSG; j++)
      dup += strcmp(a.payload[i], b.payload[j]) == 0;
  CHECK_EQ_INT(dup, 0);
  sea_producer_close(p0);
  sea_producer_close(p1);
  sea_consumer_close(ca);
  sea_consumer_close(cb);
  finish(rt, s);
}

/* A full librdkafka queue is backpressure: SEA_EAGAIN, then the drain callback, nothing lost. */
static void test_backpressure(void) {
  char topic[128];
  topic_name(topic, sizeof topic, "bp");
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  sea_options_t *o = opts3("queue.buffering.max.messages=10", "linger.ms=20", NULL);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, o);
  sea_options_free(o);
  int sent = 0, eagain = 0;
  while (sent < 300) {
    char payload[32];
    snprintf(payload, sizeof payload, "bp-%d", sent);
    int rc = sea_producer_send_bytes(p, NULL, payload, strlen(payload), NULL);
    if (rc == SEA_EAGAIN) {
      eagain++;
      int d = r.drains;
      if (!run_until(rt, &r.drains, d + 1))
        break;
      continue;
    }
    CHECK_EQ_INT(rc, 0);
    if (rc)
      break;
    sent++;
  }
  CHECK(eagain > 0);
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, &r), 0);
  CHECK(run_until(rt, &r.flushed, 1));
  CHECK_EQ_INT(r.receipts, 300);
  CHECK_EQ_INT(r.next_seq, 300);
  sea_producer_close(p);
  finish(rt, s);
}

/* Transactions: with transactional.id every flush commits; a read_committed consumer sees the
 * committed messages and not those of a transaction abandoned by closing without a flush. */
static void test_transactions(void) {
  char topic[128], tid[160];
  topic_name(topic, sizeof topic, "txn");
  snprintf(tid, sizeof tid, "transactional.id=tx-%s", topic);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  sea_options_t *o = opts3(tid, "enable.idempotence=true", NULL);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, o);
  /* The first send may meet SEA_EAGAIN while the transaction is set up: wait for the drain. */
  int rc;
  while ((rc = sea_producer_send_bytes(p, NULL, "first", 5, NULL)) == SEA_EAGAIN) {
    int d = r.drains;
    if (!run_until(rt, &r.drains, d + 1))
      break;
  }
  CHECK_EQ_INT(rc, 0);
  produce_n(rt, p, &r, "c", 9, 0); /* its flush commits the transaction */
  CHECK_EQ_INT(r.receipts, 10);
  CHECK_EQ_INT(r.flush_status, 0);
  /* A second transaction, never committed. */
  while ((rc = sea_producer_send_bytes(p, NULL, "uncommitted", 11, NULL)) == SEA_EAGAIN) {
    int d = r.drains;
    if (!run_until(rt, &r.drains, d + 1))
      break;
  }
  CHECK_EQ_INT(rc, 0);
  CHECK(run_until(rt, &r.receipts, 11));
  sea_producer_close(p);
  sea_options_free(o);

  o = opts3("start=beginning", "stop_at_end=true", "isolation.level=read_committed");
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EOF);
  CHECK_EQ_INT(k.count, 10);
  CHECK_STR(k.payload[0], "first");
  CHECK_STR(k.payload[9], "c-8");
  sea_consumer_close(c);
  /* read_uncommitted sees all eleven. */
  o = opts3("start=beginning", "stop_at_end=true", "isolation.level=read_uncommitted");
  c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 11);
  sea_consumer_close(c);
  finish(rt, s);
}

/* ---- explicit transactions ---- */

typedef struct done {
  int n, status;
} done_t;

static void on_done(void *data, int status) {
  done_t *d = data;
  d->n++;
  d->status = status;
}

/* Wait for one operation started with on_done; returns its status. */
static int wait_done(sea_runtime_t *rt, done_t *d) {
  int before = d->n;
  CHECK(run_until(rt, &d->n, before + 1));
  return d->status;
}

/* Send "<prefix>-i" for i < n, waiting for the drain when the producer is not ready yet. */
static void send_n(sea_runtime_t *rt, sea_producer_t *p, prod_t *r, const char *prefix, int n) {
  for (int i = 0; i < n; i++) {
    char payload[64];
    snprintf(payload, sizeof payload, "%s-%d", prefix, i);
    int rc;
    while ((rc = sea_producer_send_bytes(p, NULL, payload, strlen(payload), NULL)) == SEA_EAGAIN) {
      int d = r->drains;
      if (!run_until(rt, &r->drains, d + 1))
        break;
    }
    CHECK_EQ_INT(rc, 0);
  }
}

static void read_topic(sea_streamer_t *s, sea_runtime_t *rt, cons_t *k, const char *isolation) {
  sea_options_t *o = opts3("start=beginning", "stop_at_end=true", isolation);
  sea_consumer_t *c = open_consumer(s, k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k->ended, 1));
  CHECK_EQ_INT(k->end_status, SEA_EOF);
  sea_consumer_close(c);
}

/* txn_begin/commit/abort: a read_committed reader sees the committed transactions only; sends
 * outside a transaction and commits without one are refused with a message. */
static void test_txn_explicit(void) {
  char topic[128], tid[160];
  topic_name(topic, sizeof topic, "txnx");
  snprintf(tid, sizeof tid, "transactional.id=txx-%s", topic);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *s = connect_to(rt, topic, NULL);
  sea_options_t *o = opts3(tid, NULL, NULL);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, o);
  sea_options_free(o);
  done_t d = {0, 0};
  /* Begun while transactions are still being set up: the sends wait for it. */
  CHECK_EQ_INT(sea_producer_txn_begin(p), 0);
  CHECK_EQ_INT(sea_producer_txn_begin(p), SEA_ESTATE);
  CHECK_CONTAINS(sea_producer_errmsg(p), "txn_begin: a transaction is already");
  send_n(rt, p, &r, "c", 5);
  CHECK_EQ_INT(sea_producer_txn_commit(p, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  CHECK_EQ_INT(r.receipts, 5);
  /* No transaction open now. */
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "stray", 5, NULL), SEA_ESTATE);
  CHECK_CONTAINS(sea_producer_errmsg(p), "no transaction is open");
  CHECK_EQ_INT(sea_producer_txn_commit(p, on_done, &d), SEA_ESTATE);
  CHECK_CONTAINS(sea_producer_errmsg(p), "txn_commit: no transaction is open");
  CHECK_EQ_INT(sea_producer_txn_abort(p, on_done, &d), SEA_ESTATE);
  CHECK_CONTAINS(sea_producer_errmsg(p), "txn_abort: no transaction is open");
  /* Aborted. */
  CHECK_EQ_INT(sea_producer_txn_begin(p), 0);
  send_n(rt, p, &r, "a", 3);
  CHECK_EQ_INT(sea_producer_txn_abort(p, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  /* A flush in an explicit transaction does not commit it: an abort still discards. */
  CHECK_EQ_INT(sea_producer_txn_begin(p), 0);
  send_n(rt, p, &r, "f", 2);
  int before = r.flushed;
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, &r), 0);
  CHECK(run_until(rt, &r.flushed, before + 1));
  CHECK_EQ_INT(r.flush_status, 0);
  CHECK_EQ_INT(sea_producer_txn_abort(p, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  /* Committed again. */
  CHECK_EQ_INT(sea_producer_txn_begin(p), 0);
  send_n(rt, p, &r, "d", 2);
  CHECK_EQ_INT(sea_producer_txn_commit(p, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  CHECK_EQ_INT(r.errors, 0);
  CHECK_EQ_INT(r.receipts, 12);
  sea_producer_close(p);

  /* Not transactional: refused with what to do. */
  p = open_producer(s, &r, NULL);
  CHECK_EQ_INT(sea_producer_txn_begin(p), SEA_ESTATE);
  CHECK_CONTAINS(sea_producer_errmsg(p), "transactional.id");
  sea_producer_close(p);

  cons_t k;
  read_topic(s, rt, &k, "isolation.level=read_committed");
  CHECK_EQ_INT(k.count, 7);
  CHECK_STR(k.payload[0], "c-0");
  CHECK_STR(k.payload[4], "c-4");
  CHECK_STR(k.payload[5], "d-0");
  CHECK_STR(k.payload[6], "d-1");
  read_topic(s, rt, &k, "isolation.level=read_uncommitted");
  CHECK_EQ_INT(k.count, 12);
  finish(rt, s);
}

/* Consume from A in a group, produce to B, send the consumer's offsets, commit: the group moves
 * on in A and B has the messages; aborted, the group's offset stays. */
static void test_txn_consume_transform_produce(void) {
  char ta[128], tb[128], group[160], tid[200];
  topic_name(ta, sizeof ta, "ctpa");
  topic_name(tb, sizeof tb, "ctpb");
  snprintf(group, sizeof group, "group=g-%s", ta);
  snprintf(tid, sizeof tid, "transactional.id=ctp-%s", ta);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *sa = connect_to(rt, ta, NULL);
  sea_streamer_t *sb = connect_to(rt, tb, NULL);
  prod_t ra, rb;
  sea_producer_t *pa = open_producer(sa, &ra, NULL);
  produce_n(rt, pa, &ra, "x", 4, 0);
  sea_options_t *to = opts3(tid, NULL, NULL);
  sea_producer_t *pb = open_producer(sb, &rb, to);
  sea_options_free(to);
  sea_options_t *go = opts3("mode=resumable", group, "stop_at_end=true");
  sea_options_set(go, "reset", "earliest");
  done_t d = {0, 0};

  /* Round 1: everything delivered goes in, and the transaction is aborted. */
  cons_t k;
  sea_consumer_t *c = open_consumer(sa, &k, go, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 4);
  CHECK_EQ_INT(sea_producer_txn_begin(pb), 0);
  send_n(rt, pb, &rb, "X", 4);
  CHECK_EQ_INT(sea_producer_txn_send_offsets(pb, c, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  CHECK_EQ_INT(sea_producer_txn_abort(pb, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  sea_consumer_close(c);

  /* Round 2: unmoved, so x-0 again; only what was acked (up to x-1) goes in; committed. */
  c = open_consumer(sa, &k, go, 0);
  k.ack_seq = 1;
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 4);
  CHECK_STR(k.payload[0], "x-0");
  CHECK_EQ_INT(k.acked, 1);
  CHECK_EQ_INT(sea_producer_txn_begin(pb), 0);
  send_n(rt, pb, &rb, "Y", 2);
  CHECK_EQ_INT(sea_producer_txn_send_offsets(pb, c, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  CHECK_EQ_INT(sea_producer_txn_commit(pb, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  sea_consumer_close(c);

  /* Round 3: resumes after x-1; everything delivered goes in; committed. */
  produce_n(rt, pa, &ra, "z", 2, 0);
  c = open_consumer(sa, &k, go, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 4);
  CHECK_STR(k.payload[0], "x-2");
  CHECK_STR(k.payload[3], "z-1");
  CHECK_EQ_INT(sea_producer_txn_begin(pb), 0);
  send_n(rt, pb, &rb, "Z", 4);
  CHECK_EQ_INT(sea_producer_txn_send_offsets(pb, c, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  CHECK_EQ_INT(sea_producer_txn_commit(pb, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  sea_consumer_close(c);

  /* The group is at the end of A. */
  c = open_consumer(sa, &k, go, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EOF);
  CHECK_EQ_INT(k.count, 0);

  /* Refusals: a realtime consumer has no group; a consumer of another backend. */
  sea_options_t *ro = opts3("stop_at_end=true", NULL, NULL);
  cons_t kr;
  sea_consumer_t *cr = open_consumer(sa, &kr, ro, 0);
  sea_options_free(ro);
  CHECK_EQ_INT(sea_producer_txn_begin(pb), 0);
  CHECK_EQ_INT(sea_producer_txn_send_offsets(pb, cr, on_done, &d), SEA_ESTATE);
  CHECK_CONTAINS(sea_producer_errmsg(pb), "txn_send_offsets: a realtime consumer has no group");
  sea_consumer_close(cr);
  sea_streamer_t *sm = NULL;
  CHECK_EQ_INT(sea_connect(rt, "mem://ctp/a", NULL, &sm), 0);
  sea_consumer_t *cm = NULL;
  CHECK_EQ_INT(sea_consumer_open(sm, NULL, &cm), 0);
  CHECK_EQ_INT(sea_producer_txn_send_offsets(pb, cm, on_done, &d), SEA_EINVAL);
  CHECK_CONTAINS(sea_producer_errmsg(pb),
                 "the consumer is of backend mem and the producer of kafka");
  CHECK_EQ_INT(sea_producer_txn_abort(pb, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  sea_consumer_close(cm);
  sea_streamer_close(sm);
  sea_consumer_close(c);
  sea_options_free(go);
  sea_producer_close(pa);
  sea_producer_close(pb);

  /* B holds the committed Y and Z messages only. */
  read_topic(sb, rt, &k, "isolation.level=read_committed");
  CHECK_EQ_INT(k.count, 6);
  CHECK_STR(k.payload[0], "Y-0");
  CHECK_STR(k.payload[2], "Z-0");
  sea_streamer_close(sa);
  finish(rt, sb);
}

/* The offsets the group has committed for partitions 0 and 1 of a topic (-1: none). */
static void group_committed(const char *group, const char *topic, int64_t out[2]) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", broker, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
  rd_kafka_topic_partition_list_add(l, topic, 0);
  rd_kafka_topic_partition_list_add(l, topic, 1);
  CHECK_EQ_INT(rd_kafka_committed(rk, l, 30000), 0);
  for (int i = 0; i < 2; i++)
    out[l->elems[i].partition] = l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy(rk);
}

/* A consumer that lost a partition in a rebalance sends, in a transaction, the offsets of the
 * partition it kept and not of the one another member now reads: otherwise the group would
 * move past messages the new owner has not processed. */
static void test_txn_offsets_after_rebalance(void) {
  char ta[128], tb[128], gname[160], group[200], tid[200];
  topic_name(ta, sizeof ta, "rba");
  topic_name(tb, sizeof tb, "rbb");
  create_topic(ta, 2);
  snprintf(gname, sizeof gname, "g-%s", ta);
  snprintf(group, sizeof group, "group=%s", gname);
  snprintf(tid, sizeof tid, "transactional.id=rb-%s", ta);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  sea_streamer_t *sa = connect_to(rt, ta, NULL);
  sea_streamer_t *sb = connect_to(rt, tb, NULL);
  prod_t r0, r1, rb;
  sea_options_t *p0o = opts3("partition=0", NULL, NULL), *p1o = opts3("partition=1", NULL, NULL);
  sea_producer_t *p0 = open_producer(sa, &r0, p0o), *p1 = open_producer(sa, &r1, p1o);
  sea_options_free(p0o);
  sea_options_free(p1o);
  produce_n(rt, p0, &r0, "p0", 2, 0);
  produce_n(rt, p1, &r1, "p1", 2, 0);
  sea_options_t *to = opts3(tid, NULL, NULL);
  sea_producer_t *pb = open_producer(sb, &rb, to);
  sea_options_free(to);
  /* Cooperative: the member that stays keeps one partition without a pause; nothing is acked,
   * so no commit but the transaction's moves the group. */
  sea_options_t *go =
      opts3(group, "reset=earliest", "partition.assignment.strategy=cooperative-sticky");
  static cons_t a, b;
  sea_consumer_t *ca = open_consumer(sa, &a, go, 1);
  CHECK(run_until(rt, &a.count, 4)); /* a owns both partitions and has read all four */
  sea_consumer_t *cb = open_consumer(sa, &b, go, 1);
  sea_options_free(go);
  /* b joins; the group gives it one partition, which it reads from the start (nothing is
   * committed). */
  CHECK(run_until(rt, &b.count, 2));
  CHECK_EQ_INT(b.count, 2);
  CHECK_EQ_INT(b.shard[0], b.shard[1]);
  int lost = (int)b.shard[0], kept = 1 - lost;
  /* An ack of a message of the lost partition is refused, saying why. */
  sea_message_t gone;
  memset(&gone, 0, sizeof gone);
  gone.meta.stream_key = ta;
  gone.meta.shard_id = (uint64_t)lost;
  gone.meta.seq = 1;
  gone.backend_pos = 1;
  CHECK_EQ_INT(sea_consumer_ack(ca, &gone), SEA_ESTATE);
  CHECK_CONTAINS(sea_consumer_errmsg(ca), "is not assigned to this consumer (a rebalance");
  CHECK_EQ_INT(sea_producer_txn_begin(pb), 0);
  send_n(rt, pb, &rb, "T", 2);
  done_t d = {0, 0};
  CHECK_EQ_INT(sea_producer_txn_send_offsets(pb, ca, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  CHECK_EQ_INT(sea_producer_txn_commit(pb, on_done, &d), 0);
  CHECK_EQ_INT(wait_done(rt, &d), 0);
  int64_t off[2] = {-2, -2};
  group_committed(gname, ta, off);
  CHECK_EQ_INT(off[kept], 2);  /* a's own partition: both messages processed */
  CHECK_EQ_INT(off[lost], -1); /* b's partition: not a's to commit */
  sea_consumer_close(cb);
  sea_consumer_close(ca);
  sea_producer_close(p0);
  sea_producer_close(p1);
  sea_producer_close(pb);
  sea_streamer_close(sa);
  finish(rt, sb);
}

/* Bytes the broker wrote for partition 0 of a topic (its log segments), or -1. */
static long long log_bytes(const char *topic) {
  char path[8192];
  snprintf(path, sizeof path, "%s/data/%s-0/00000000000000000000.log", broker_dir, topic);
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return -1;
  fseek(f, 0, SEEK_END);
  long long n = ftell(f);
  fclose(f);
  return n;
}

/* Every compression codec: 200 messages of 1000 compressible bytes arrive whole, and the broker
 * stores them compressed (a tenth of the bytes at most) except with none. */
static void test_compression(void) {
  static const char *const codecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};
  enum { N = 200, SIZE = 1000 };
  for (size_t ci = 0; ci < sizeof codecs / sizeof codecs[0]; ci++) {
    char topic[128], opt[64];
    topic_name(topic, sizeof topic, codecs[ci]);
    snprintf(opt, sizeof opt, "compression.codec=%s", codecs[ci]);
    sea_runtime_t *rt;
    sea_runtime_new(&rt);
    sea_streamer_t *s = connect_to(rt, topic, NULL);
    sea_options_t *o = opts3(opt, NULL, NULL);
    prod_t r;
    sea_producer_t *p = open_producer(s, &r, o);
    sea_options_free(o);
    for (int i = 0; i < N; i++) {
      char payload[SIZE];
      int n = snprintf(payload, sizeof payload, "%s-%d-", codecs[ci], i);
      for (int j = n; j < SIZE; j++)
        payload[j] = "abcdefgh"[(j - n) % 8];
      CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, payload, SIZE, NULL), 0);
    }
    CHECK_EQ_INT(sea_producer_flush(p, on_flushed, &r), 0);
    CHECK(run_until(rt, &r.flushed, 1));
    CHECK_EQ_INT(r.flush_status, 0);
    CHECK_EQ_INT(r.receipts, N);
    sea_producer_close(p);
    cons_t k;
    read_topic(s, rt, &k, NULL);
    CHECK_EQ_INT(k.count, N);
    CHECK_EQ_INT(k.bytes, (size_t)N * SIZE);
    char want[64];
    snprintf(want, sizeof want, "%s-%d-abc", codecs[ci], N - 1);
    CHECK(strncmp(k.payload[N - 1], want, strlen(want)) == 0);
    long long stored = log_bytes(topic);
    if (strcmp(codecs[ci], "none") == 0)
      CHECK(stored >= (long long)N * SIZE);
    else
      CHECK(stored > 0 && stored <= (long long)N * SIZE / 10);
    if (stored < 0)
      fprintf(stderr, "compression: no log file for %s under %s/data\n", topic, broker_dir);
    finish(rt, s);
  }
}

/* Faults, with librdkafka's mock cluster (3 brokers, in this process) in place of the broker:
 * produce requests fail (leader moved, timeouts, dropped connections) and are retried; with
 * acks=all and idempotence nothing is lost and nothing is duplicated. */
static void test_mock_faults(void) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  CHECK(mrk != NULL);
  if (mrk == NULL)
    return;
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mrk, 3);
  CHECK(mc != NULL);
  const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
  CHECK_EQ_INT(rd_kafka_mock_topic_create(mc, "faults", 1, 3), 0);
  /* The next produce requests fail, one after the other. */
  rd_kafka_mock_push_request_errors(
      mc, 0 /* Produce */, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
      RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
      RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, RD_KAFKA_RESP_ERR__TRANSPORT,
      RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);

  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  char uri[512];
  snprintf(uri, sizeof uri, "kafka://%s/faults", boot);
  sea_streamer_t *s = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  sea_options_t *o = opts3("acks=all", "enable.idempotence=true", "linger.ms=1");
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, o);
  sea_options_free(o);
  /* Several flushes, so several produce requests meet the errors. */
  for (int round = 0; round < 10; round++) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "f%d", round);
    produce_n(rt, p, &r, prefix, 50, 0);
  }
  CHECK_EQ_INT(r.receipts, 500);
  CHECK_EQ_INT(r.errors, 0);
  CHECK_EQ_INT(r.next_seq, 500); /* offsets 0..499: nothing written twice */
  sea_producer_close(p);

  o = opts3("start=beginning", "stop_at_end=true", NULL);
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 500);
  int in_order = 1;
  for (int i = 0; i < k.count && i < MAXMSG; i++) {
    char want[48];
    snprintf(want, sizeof want, "f%d-%d", i / 50, i % 50);
    in_order &= strcmp(k.payload[i], want) == 0;
  }
  CHECK(in_order);
  sea_consumer_close(c);
  finish(rt, s);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(mrk);
}

/* A commit refused because the group moved under it (its coordinator died or moved, or dropped
 * the member: seen on a three-broker cluster whose group coordinator was killed, where every
 * member of a run then ended with status 1; tests/kafka/test_cluster.sh, case coordinator) is
 * SEA_ECANCELED, which a pipeline does not take for a failure of the stream. Nothing is lost:
 * the positions stay stored and the next commit commits them. With the mock cluster. */
static void test_mock_commit_overtaken(void) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  CHECK(mrk != NULL);
  if (mrk == NULL)
    return;
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mrk, 3);
  CHECK(mc != NULL);
  const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
  CHECK_EQ_INT(rd_kafka_mock_topic_create(mc, "overtaken", 1, 3), 0);
  sea_runtime_t *rt;
  sea_runtime_new(&rt);
  char uri[512];
  snprintf(uri, sizeof uri, "kafka://%s/overtaken", boot);
  sea_streamer_t *s = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, NULL);
  produce_n(rt, p, &r, "o", 10, 0);
  sea_producer_close(p);

  sea_options_t *o = opts3("mode=resumable", "group=g-overtaken", "stop_at_end=true");
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, o, 0);
  k.ack_seq = 4;
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.acked, 1);
  static const rd_kafka_resp_err_t moved[] = {
      RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID, RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION,
      RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS}; /* (NOT_COORDINATOR: librdkafka retries) */
  for (size_t i = 0; i < sizeof moved / sizeof moved[0]; i++) {
    rd_kafka_mock_push_request_errors(mc, 8 /* OffsetCommit */, 1, moved[i]);
    int before = k.committed;
    CHECK_EQ_INT(sea_consumer_commit(c, on_committed, &k), 0);
    CHECK(run_until(rt, &k.committed, before + 1));
    CHECK_EQ_INT(k.commit_status, SEA_ECANCELED);
    CHECK_CONTAINS(sea_consumer_errmsg(c), "the group moved under it");
  }
  /* The stored position was kept: the next commit commits it. */
  commit_wait(rt, c, &k);
  /* Any other refusal is still a failure. */
  CHECK_EQ_INT(sea_consumer_ack_pos(c, "overtaken", 0, 6), 0);
  rd_kafka_mock_push_request_errors(mc, 8, 1, RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
  int before = k.committed;
  CHECK_EQ_INT(sea_consumer_commit(c, on_committed, &k), 0);
  CHECK(run_until(rt, &k.committed, before + 1));
  CHECK_EQ_INT(k.commit_status, SEA_EBACKEND);
  sea_consumer_close(c); /* commits what was acked: the group resumes after seq 6 */
  expect_resume(s, rt, o, 3, "o-7");
  sea_options_free(o);
  finish(rt, s);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(mrk);
}

/* Bad input: each gets a clear error naming what was wrong, and nothing hangs. */
static void test_bad_input(void) {
  char topic[128], uri[512];
  topic_name(topic, sizeof topic, "bad");
  sea_runtime_t *rt;
  sea_runtime_new(&rt);

  /* An unknown librdkafka property fails the connect. */
  sea_options_t *o = opts3("no.such.property=1", NULL, NULL);
  snprintf(uri, sizeof uri, "kafka://%s/%s", broker, topic);
  sea_streamer_t *bad = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, o, &bad), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "no.such.property");
  sea_options_free(o);
  /* And an invalid value. */
  o = opts3("compression.codec=rot13", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, o, &bad), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "compression.codec");
  sea_options_free(o);

  /* Unreachable brokers: the consumer ends with a connect error, the producer fails. */
  sea_streamer_t *s = NULL;
  o = opts3("timeout=1500", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, "kafka://127.0.0.1:1/nowhere", o, &s), 0);
  cons_t k;
  sea_consumer_t *c = open_consumer(s, &k, NULL, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_ECONNECT);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "cannot connect to 127.0.0.1:1");
  sea_consumer_close(c);
  prod_t r;
  sea_producer_t *p = open_producer(s, &r, NULL);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), 0);
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, &r), 0);
  CHECK(run_until(rt, &r.flushed, 1));
  CHECK(r.flush_status != 0);
  CHECK_EQ_INT(r.errors, 1);
  CHECK_CONTAINS(sea_producer_errmsg(p), "cannot connect to 127.0.0.1:1");
  sea_producer_close(p);
  sea_streamer_close(s);
  sea_options_free(o);

  /* An unknown topic, auto-creation off: the consumer and the producer say which. */
  s = connect_to(rt, topic, NULL);
  c = open_consumer(s, &k, NULL, 1);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.end_status, SEA_EKEY);
  CHECK_CONTAINS(sea_consumer_errmsg(c), topic);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "does not exist");
  sea_consumer_close(c);
  o = opts3("allow.auto.create.topics=false", NULL, NULL);
  p = open_producer(s, &r, o);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "x", 1, NULL), 0);
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, &r), 0);
  CHECK(run_until(rt, &r.flushed, 1));
  CHECK(r.flush_status != 0);
  CHECK_CONTAINS(sea_producer_errmsg(p), topic);
  CHECK_CONTAINS(sea_producer_errmsg(p), "does not exist");
  sea_producer_close(p);

  /* A message over message.max.bytes is refused; what was sent before is delivered. */
  o = opts3("message.max.bytes=2000", NULL, NULL);
  p = open_producer(s, &r, o);
  sea_options_free(o);
  char big[4000];
  memset(big, 'x', sizeof big);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "before", 6, NULL), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, big, sizeof big, NULL), SEA_ETOOBIG);
  CHECK_CONTAINS(sea_producer_errmsg(p), "over message.max.bytes (2000)");
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, &r), 0);
  CHECK(run_until(rt, &r.flushed, 1));
  CHECK_EQ_INT(r.flush_status, 0);
  CHECK_EQ_INT(r.receipts, 1);
  sea_producer_close(p);
  o = opts3("start=beginning", "stop_at_end=true", NULL);
  c = open_consumer(s, &k, o, 1);
  sea_options_free(o);
  CHECK(run_until(rt, &k.ended, 1));
  CHECK_EQ_INT(k.count, 1);
  CHECK_STR(k.payload[0], "before");

  /* Commit from a realtime consumer. */
  CHECK_EQ_INT(sea_consumer_commit(c, on_committed, &k), SEA_ESTATE);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "realtime");
  sea_consumer_close(c);
  /* auto_commit in realtime mode; auto_commit=true (at most once, not by name); a bad partition
   * option. */
  o = opts3("auto_commit=at-most-once", NULL, NULL);
  sea_consumer_t *c2 = NULL;
  CHECK_EQ_INT(sea_consumer_open(s, o, &c2), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "a realtime consumer has no position");
  sea_options_free(o);
  o = opts3("auto_commit=true", "mode=resumable", "group=g-true");
  CHECK_EQ_INT(sea_consumer_open(s, o, &c2), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "say auto_commit=at-most-once");
  sea_options_free(o);
  o = opts3("partition=x", NULL, NULL);
  sea_producer_t *p2 = NULL;
  CHECK_EQ_INT(sea_producer_open(s, o, &p2), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "partition=x");
  sea_options_free(o);
  finish(rt, s);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_kafka BOOTSTRAP_FILE [TEST...]\n");
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (f == NULL || fgets(broker, sizeof broker, f) == NULL) {
    fprintf(stderr, "test_kafka: cannot read the broker address from %s\n", argv[1]);
    return 1;
  }
  fclose(f);
  broker[strcspn(broker, "\r\n")] = '\0';
  snprintf(broker_dir, sizeof broker_dir, "%s", argv[1]);
  char *slash = strrchr(broker_dir, '/');
  if (slash)
    *slash = '\0';
  else
    snprintf(broker_dir, sizeof broker_dir, ".");
  static const struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {{"produce_consume", test_produce_consume},
               {"partitions", test_partitions},
               {"resumable_commit", test_resumable_commit},
               {"seek_rewind", test_seek_rewind},
               {"load_balanced", test_load_balanced},
               {"backpressure", test_backpressure},
               {"compression", test_compression},
               {"transactions", test_transactions},
               {"txn_explicit", test_txn_explicit},
               {"txn_ctp", test_txn_consume_transform_produce},
               {"txn_offsets_after_rebalance", test_txn_offsets_after_rebalance},
               {"mock_faults", test_mock_faults},
               {"mock_commit_overtaken", test_mock_commit_overtaken},
               {"bad_input", test_bad_input}};
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    int run = argc == 2;
    for (int j = 2; j < argc; j++)
      run |= strcmp(argv[j], tests[i].name) == 0;
    if (!run)
      continue;
    int before = test_failed;
    tests[i].fn();
    printf("%s: %s\n", tests[i].name, test_failed == before ? "ok" : "FAILED");
    fflush(stdout);
  }
  return test_report();
}
