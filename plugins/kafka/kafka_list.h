/* kafka_list.h: the kafka backend's listing (kafka_list.c), called from kafka.c's descriptor. */
#ifndef SEA_KAFKA_LIST_H
#define SEA_KAFKA_LIST_H

#include <librdkafka/rdkafka.h>
#include <seastreamer/plugin.h>

struct ljob;

/* List the cluster's topics and groups on a worker thread (sea_plugin_t.list), with a client of
 * conf (the streamer's properties; taken, even on failure); jobs is the streamer's list of
 * listings still running. */
int sea_kafka_list(const sea_host_t *host, struct ljob **jobs, const char *brokers,
                   rd_kafka_conf_t *conf, const sea_list_args_t *a, sea_op_t *op);
/* From disconnect: the listings still running complete nothing. */
void sea_kafka_list_abandon(struct ljob **jobs);

#endif
