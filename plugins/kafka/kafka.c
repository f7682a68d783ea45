/* kafka.c: the Kafka backend: librdkafka behind the SeaStreamer plugin ABI, driven by io events.
 * This room holds the descriptor, the entry point and the streamer (connect, disconnect, list);
 * the rest lives in the rooms kafka_internal.h lists, which talk through that header. */
#include "kafka_internal.h"
#include "kafka_list.h"

/* ---- the streamer ---- */

static int kafka_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                         const sea_options_t *opts, void **impl) {
  (void)s;
  if (uri->node_count == 0) {
    sea_host->set_error(rt, "kafka: URI '%s' names no broker (kafka://host:port/topic)", uri->raw);
    return SEA_EURI;
  }
  size_t len = 1;
  for (size_t i = 0; i < uri->node_count; i++)
    len += strlen(uri->nodes[i]) + 1;
  kstreamer_t *ks = sea_host->calloc(1, sizeof *ks);
  char *b = sea_host->alloc(len);
  if (ks == NULL || b == NULL) {
    sea_host->free(ks);
    sea_host->free(b);
    return SEA_ENOMEM;
  }
  b[0] = '\0';
  for (size_t i = 0; i < uri->node_count; i++) {
    if (i)
      strcat(b, ",");
    strcat(b, uri->nodes[i]);
  }
  ks->rt = rt;
  ks->brokers = b;
  /* Check the streamer's options now, so a typo fails the connect and not a later open. */
  rd_kafka_conf_t *conf;
  int rc = kafka_make_conf(rt, b, opts, &conf);
  if (rc) {
    sea_host->free(b);
    sea_host->free(ks);
    return rc;
  }
  ks->conf = conf;
  *impl = ks;
  return 0;
}

static void kafka_disconnect(void *impl) {
  kstreamer_t *ks = impl;
  sea_kafka_list_abandon(&ks->lists);
  rd_kafka_conf_destroy(ks->conf);
  sea_host->free(ks->brokers);
  sea_host->free(ks);
}

/* `seastreamer list`: kafka_list.c, with a client of its own. */
static int kafka_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  kstreamer_t *ks = impl;
  rd_kafka_conf_t *conf = rd_kafka_conf_dup(ks->conf);
  if (conf == NULL)
    return SEA_ENOMEM;
  return sea_kafka_list(sea_host, &ks->lists, ks->brokers, conf, args, op);
}

/* ---- the descriptor ---- */

static const char *const kafka_schemes[] = {"kafka", NULL};

static const sea_plugin_t kafka_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = KAFKA_NAME,
    .schemes = kafka_schemes,
    .version = "0.1.0",
    .description = "Apache Kafka (and Redpanda) through librdkafka",
    .caps = SEA_CAP_REALTIME | SEA_CAP_RESUMABLE | SEA_CAP_LOAD_BALANCED | SEA_CAP_SEEK |
            SEA_CAP_REWIND | SEA_CAP_COMMIT | SEA_CAP_KEY | SEA_CAP_HEADERS | SEA_CAP_SHARDS |
            SEA_CAP_TRANSACTIONS | SEA_CAP_BINARY,
    .default_port = 9092,
    .connect = kafka_connect,
    .disconnect = kafka_disconnect,
    .producer_open = kafka_producer_open,
    .producer_send = kafka_producer_send,
    .producer_flush = kafka_producer_flush,
    .producer_close = kafka_producer_close,
    .consumer_open = kafka_consumer_open,
    .consumer_start = kafka_consumer_start,
    .consumer_pause = kafka_consumer_pause,
    .consumer_resume = kafka_consumer_resume,
    .consumer_seek = kafka_consumer_seek,
    .consumer_rewind = kafka_consumer_rewind,
    .consumer_assign = kafka_consumer_assign,
    .consumer_unassign = kafka_consumer_unassign,
    .consumer_ack = kafka_consumer_ack,
    .consumer_ack_pos = kafka_consumer_ack_pos,
    .consumer_commit = kafka_consumer_commit,
    .consumer_close = kafka_consumer_close,
    .consumer_lag = kafka_consumer_lag,
    .producer_txn_begin = kafka_txn_begin,
    .producer_txn_commit = kafka_txn_commit,
    .producer_txn_abort = kafka_txn_abort,
    .producer_txn_send_offsets = kafka_txn_send_offsets,
    .list = kafka_list,
    .options = kafka_option_table,
};

SEA_PLUGIN_INIT(kafka, kafka_plugin)
