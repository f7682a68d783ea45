/* test_kafka_failover.c: what the pipeline does when the group's coordinator refuses a commit or
 * a transaction's offsets, by fault injection into librdkafka's mock cluster (in this process).
 * The same paths run against real brokers in tests/kafka/test_cluster.sh (label `cluster`), where
 * a broker is killed; the mock is what makes each refusal come exactly where it is wanted:
 *   - the last commit of a relay refused (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
 *     REQUEST_TIMED_OUT): tried again with a backoff, the relay ends with status 0 and the group
 *     committed exactly the -c count;
 *   - exactly once, a transaction's offsets refused with an abortable error (ILLEGAL_GENERATION,
 *     as a rebalance fences the generation): the window is aborted, the input goes back to its
 *     committed positions (its messages are processed again) and the relay goes on to its end,
 *     status 0, every message in the output;
 *   - the same error in more windows in a row than the pipeline tries: it stops, saying so;
 *   - a fatal error (TRANSACTIONAL_ID_AUTHORIZATION_FAILED): it stops at once, saying so. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <seastreamer/seastreamer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "test_opts.h"

#define N 3000

static rd_kafka_mock_cluster_t *mc;
static const char *boot;
static sea_runtime_t *rt;
static int receipts, flushed;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  (void)p, (void)token, (void)meta;
  if (status == 0)
    receipts++;
}
static void on_flushed(void *data, int status) {
  (void)data;
  flushed = status == 0 ? 1 : -1;
}

static void run_until(int *flag) {
  for (int i = 0; i < 200000 && *flag == 0; i++) /* bounded: each turn waits at most for I/O */
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

static sea_streamer_t *streamer(const char *topic) {
  char uri[512];
  snprintf(uri, sizeof uri, "kafka://%s/%s", boot, topic);
  sea_streamer_t *s = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  return s;
}

/* The numbers 1..N into topic (2 partitions, alternating). */
static void seed(const char *topic) {
  CHECK_EQ_INT(rd_kafka_mock_topic_create(mc, topic, 2, 1), 0);
  sea_streamer_t *s = streamer(topic);
  sea_options_t *o = TEST_OPTS("linger.ms=5");
  sea_producer_t *p = NULL;
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  receipts = 0;
  for (int i = 1; i <= N; i++) {
    char b[16];
    int len = snprintf(b, sizeof b, "%d", i);
    sea_message_t m = {0};
    m.payload.data = (const uint8_t *)b;
    m.payload.len = (size_t)len;
    m.key = (const uint8_t *)(i % 2 ? "a" : "b");
    m.key_len = 1;
    CHECK_EQ_INT(sea_producer_send(p, &m, NULL), 0);
  }
  flushed = 0;
  CHECK_EQ_INT(sea_producer_flush(p, on_flushed, NULL), 0);
  run_until(&flushed);
  CHECK_EQ_INT(flushed, 1);
  CHECK_EQ_INT(receipts, N);
  sea_producer_close(p);
  sea_streamer_close(s);
}

static int relay_done, relay_status;
static char relay_msg[1024];

static void on_relay_done(sea_relay_t *r, int status) {
  relay_done = 1;
  relay_status = status;
  snprintf(relay_msg, sizeof relay_msg, "%s", status ? sea_relay_errmsg(r) : "");
}

/* Relays in to out in group g (reset=earliest, -e when max_count is 0); returns the status, the
 * pipeline's aborts in *aborts. */
static int relay(const char *in, const char *out, const char *g, const sea_relay_config_t *cfg,
                 uint64_t *aborts, uint64_t *processed) {
  char group[128];
  snprintf(group, sizeof group, "group=%s", g);
  sea_streamer_t *si = streamer(in), *so = streamer(out);
  sea_options_t *o = TEST_OPTS("mode=resumable", group, "reset=earliest",
                               cfg->max_count ? NULL : "stop_at_end=true");
  sea_consumer_t *c = NULL;
  CHECK_EQ_INT(sea_consumer_open(si, o, &c), 0);
  sea_options_free(o);
  sea_producer_t *p = NULL;
  CHECK_EQ_INT(sea_producer_open(so, NULL, &p), 0);
  sea_relay_t *r = NULL;
  relay_done = 0;
  relay_msg[0] = '\0';
  CHECK_EQ_INT(sea_relay_start(c, p, cfg, on_relay_done, &r), 0);
  run_until(&relay_done);
  CHECK_EQ_INT(relay_done, 1);
  sea_pipeline_stats_t st;
  memset(&st, 0, sizeof st);
  sea_pipeline_stats(sea_relay_pipeline(r), &st);
  *aborts = st.aborts;
  *processed = st.processed;
  sea_relay_free(r);
  sea_streamer_close(si);
  sea_streamer_close(so);
  sea_runtime_run(rt, SEA_RUN_NOWAIT);
  return relay_done ? relay_status : -1000;
}

static rd_kafka_t *client(const char *group, int read_committed) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", boot, err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);
  rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof err);
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
  rd_kafka_conf_set(conf, "isolation.level", read_committed ? "read_committed" : "read_uncommitted",
                    err, sizeof err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  CHECK(rk != NULL);
  return rk;
}

/* The sum of group g's committed offsets of topic's 2 partitions. */
static long committed(const char *g, const char *topic) {
  rd_kafka_t *rk = client(g, 0);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
  rd_kafka_topic_partition_list_add(l, topic, 0);
  rd_kafka_topic_partition_list_add(l, topic, 1);
  long sum = -1;
  if (rd_kafka_committed(rk, l, 10000) == 0) {
    sum = 0;
    for (int i = 0; i < l->cnt; i++)
      sum += l->elems[i].offset > 0 ? l->elems[i].offset : 0;
  }
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_destroy(rk);
  return sum;
}

/* Reads topic to its end: how many of 1..N came (seen[i] counts). (read_uncommitted: the mock
 * cluster writes no transaction markers, which a read_committed reader waits for.) */
static int read_out(const char *topic, int *seen) {
  rd_kafka_t *rk = client("reader", 0);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2);
  rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_topic_partition_list_add(l, topic, 1)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  int eofs = 0, total = 0, idle = 0;
  while (eofs < 2 && idle < 300) { /* bounded: at most 300 polls of 100 ms that bring nothing */
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (m == NULL) {
      idle++;
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eofs++;
    } else if (m->err == 0) {
      char b[16] = {0};
      memcpy(b, m->payload, m->len < 15 ? m->len : 15);
      int v = atoi(b);
      if (v >= 1 && v <= N)
        seen[v]++;
      total++;
    }
    rd_kafka_message_destroy(m);
  }
  CHECK_EQ_INT(eofs, 2);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return total;
}

static int lost_in(const int *seen) {
  int lost = 0;
  for (int i = 1; i <= N; i++)
    lost += seen[i] == 0;
  return lost;
}

static void push(rd_kafka_resp_err_t e, int16_t api, size_t n) {
  rd_kafka_resp_err_t errs[32];
  for (size_t i = 0; i < n && i < 32; i++)
    errs[i] = e;
  rd_kafka_mock_push_request_errors_array(mc, api, n, errs);
}

int main(void) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  CHECK(mrk != NULL);
  if (mrk == NULL)
    return test_report();
  mc = rd_kafka_mock_cluster_new(mrk, 1);
  CHECK(mc != NULL);
  boot = rd_kafka_mock_cluster_bootstraps(mc);
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  seed("fin");
  uint64_t aborts = 0, processed = 0;
  static int seen[N + 1];

  /* The last commit refused while the coordinator moves: tried again, committed. One commit
   * only (the interval is longer than the run). */
  {
    rd_kafka_mock_topic_create(mc, "fout1", 2, 1);
    push(RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, 8 /* OffsetCommit */, 2);
    push(RD_KAFKA_RESP_ERR_NOT_COORDINATOR, 8, 2);
    push(RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 8, 2);
    sea_relay_config_t cfg = {.max_count = 1000, .commit_interval_ms = 600000};
    int st = relay("fin", "fout1", "g-last", &cfg, &aborts, &processed);
    CHECK_EQ_INT(st, 0);
    if (st)
      fprintf(stderr, "  relay: %s\n", relay_msg);
    CHECK_EQ_INT(committed("g-last", "fin"), 1000);
    rd_kafka_mock_clear_request_errors(mc, 8);
  }

  /* Exactly once: two windows' offsets refused with an abortable error. */
  {
    rd_kafka_mock_topic_create(mc, "fout2", 2, 1);
    push(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, 28 /* TxnOffsetCommit */, 2);
    sea_relay_config_t cfg = {
        .exactly_once = 1, .commit_interval_ms = 50, .transactional_id = "tx-failover"};
    int st = relay("fin", "fout2", "g-eos", &cfg, &aborts, &processed);
    CHECK_EQ_INT(st, 0);
    if (st)
      fprintf(stderr, "  relay: %s\n", relay_msg);
    CHECK_EQ_INT((int)aborts, 2);
    /* The aborted windows' messages came again: processed twice. */
    CHECK(processed > N);
    fprintf(stderr, "  exactly once, 2 offsets refused: %llu window(s) aborted, %llu processed\n",
            (unsigned long long)aborts, (unsigned long long)processed);
    memset(seen, 0, sizeof seen);
    int total = read_out("fout2", seen);
    CHECK_EQ_INT(lost_in(seen), 0);
    /* (The mock neither writes transaction markers nor keeps a transaction's offsets: that
     * nothing of an aborted window is visible, nor committed, is checked against real brokers,
     * in test_cluster.sh.) */
    fprintf(stderr, "  output: %d messages (aborted ones too) for %d numbers, 0 lost\n", total, N);
    rd_kafka_mock_clear_request_errors(mc, 28);
  }
  /* Abortable in every window: gives up after the bound, saying so. */
  {
    rd_kafka_mock_topic_create(mc, "fout3", 2, 1);
    push(RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION, 28, 32);
    sea_relay_config_t cfg = {
        .exactly_once = 1, .commit_interval_ms = 50, .transactional_id = "tx-failover3"};
    int st = relay("fin", "fout3", "g-eos3", &cfg, &aborts, &processed);
    CHECK(st != 0);
    CHECK_CONTAINS(relay_msg, "windows in a row were aborted");
    CHECK(aborts >= 10);
    rd_kafka_mock_clear_request_errors(mc, 28);
  }
  /* A fatal error: stops at once. */
  {
    rd_kafka_mock_topic_create(mc, "fout4", 2, 1);
    push(RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED, 28, 1);
    sea_relay_config_t cfg = {
        .exactly_once = 1, .commit_interval_ms = 50, .transactional_id = "tx-failover4"};
    int st = relay("fin", "fout4", "g-eos4", &cfg, &aborts, &processed);
    CHECK(st != 0);
    CHECK_CONTAINS(relay_msg, "fatal");
    CHECK(aborts <= 1);
    rd_kafka_mock_clear_request_errors(mc, 28);
  }

  sea_runtime_free(rt);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(mrk);
  return test_report();
}
