/* test_kafka_lag.c: sea_consumer_lag for kafka against librdkafka's mock cluster (in this process,
 * no broker): an entry per assigned partition, never more than what the partition holds, its
 * reserved room 0, and 0 for every partition once the consumer read to the end (stop_at_end). */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <seastreamer/seastreamer.h>
#include <stdio.h>
#include <string.h>

#include "test.h"
#include "test_opts.h"

#define N 200

static int receipts, flushed, delivered, ended, batches, bad_lag, entries_seen;
static sea_lag_t at_end[8];
static int at_end_n = -1;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  (void)p, (void)token, (void)meta;
  if (status == 0)
    receipts++;
}
static void on_flushed(void *data, int status) {
  (void)data;
  flushed = status == 0 ? 1 : -1;
}

static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  delivered += (int)b->count;
  batches++;
  sea_lag_t lag[8];
  memset(lag, 0xa5, sizeof lag); /* what a caller's stack may hold: the host clears it */
  int n = sea_consumer_lag(c, lag, 8);
  if (n > 0)
    entries_seen = n;
  for (int i = 0; i < n && i < 8; i++)
    if (lag[i].lag < -1 || lag[i].lag > N || lag[i].stream_key == NULL ||
        strcmp(lag[i].stream_key, "lagt") != 0 || lag[i].shard > 1 || lag[i].reserved[0] != 0 ||
        lag[i].reserved[1] != 0) /* types.h: the room reads 0 */
      bad_lag++;
}

static void on_end(sea_consumer_t *c, int status) {
  ended = status == SEA_EOF ? 1 : -1;
  at_end_n = sea_consumer_lag(c, at_end, 8);
}

static void run_until(sea_runtime_t *rt, int *flag) {
  for (int i = 0; i < 20000 && *flag == 0; i++) /* bounded: each turn waits at most for I/O */
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

int main(void) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  CHECK(mrk != NULL);
  if (mrk == NULL)
    return test_report();
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(mrk, 1);
  CHECK(mc != NULL);
  const char *boot = rd_kafka_mock_cluster_bootstraps(mc);
  CHECK_EQ_INT(rd_kafka_mock_topic_create(mc, "lagt", 2, 1), 0);

  sea_runtime_t *rt;
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  char uri[512];
  snprintf(uri, sizeof uri, "kafka://%s/lagt", boot);
  sea_streamer_t *s = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  for (int part = 0; part < 2; part++) { /* N/2 messages in each partition */
    char popt[32];
    snprintf(popt, sizeof popt, "partition=%d", part);
    sea_options_t *o = TEST_OPTS(popt, "linger.ms=1", NULL);
    sea_producer_t *p = NULL;
    CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
    sea_options_free(o);
    sea_producer_set_callbacks(p, on_receipt, NULL);
    for (int i = 0; i < N / 2; i++)
      CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "m", 1, NULL), 0);
    flushed = 0;
    CHECK_EQ_INT(sea_producer_flush(p, on_flushed, NULL), 0);
    run_until(rt, &flushed);
    CHECK_EQ_INT(flushed, 1);
    sea_producer_close(p);
  }
  CHECK_EQ_INT(receipts, N);

  sea_options_t *o = TEST_OPTS("start=beginning", "stop_at_end=true", "batch=16");
  sea_consumer_t *c = NULL;
  CHECK_EQ_INT(sea_consumer_open(s, o, &c), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_consumer_start(c, on_batch, on_end), 0);
  run_until(rt, &ended);
  CHECK_EQ_INT(ended, 1);
  CHECK_EQ_INT(delivered, N);
  CHECK(batches > 0);
  CHECK_EQ_INT(bad_lag, 0);
  CHECK_EQ_INT(entries_seen, 2);
  /* At the end: both partitions, 0 behind. */
  CHECK_EQ_INT(at_end_n, 2);
  for (int i = 0; i < at_end_n && i < 8; i++) {
    CHECK_STR(at_end[i].stream_key, "lagt");
    CHECK_EQ_INT((int)at_end[i].shard, i);
    CHECK_EQ_INT((int)at_end[i].lag, 0);
    CHECK_EQ_INT((int)at_end[i].lag_bytes, -1);
  }
  sea_consumer_close(c);
  sea_streamer_close(s);
  sea_runtime_run(rt, SEA_RUN_NOWAIT);
  sea_runtime_free(rt);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(mrk);
  return test_report();
}
