/* tests/crash/kafka_committed.c: prints the offset group GROUP has committed on TOPIC, summed over
 * the topic's partitions (-1 on a partition counts as 0: nothing committed there), so the crash
 * test can tell which messages a restart may legitimately deliver again. It only reads the
 * group's offsets (rd_kafka_committed); it never joins the group.
 *
 * usage: crash_kafka_committed BOOTSTRAP GROUP TOPIC
 * exit status 0 and the number on stdout, 1 and a message on stderr on any failure. */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  char err[512];
  rd_kafka_conf_t *conf;
  rd_kafka_t *rk;
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt;
  rd_kafka_topic_partition_list_t *parts;
  rd_kafka_resp_err_t e;
  long long sum = 0;
  if (argc != 4) {
    fprintf(stderr, "usage: %s BOOTSTRAP GROUP TOPIC\n", argv[0]);
    return 1;
  }
  conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "group.id", argv[2], err, sizeof err) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "kafka_committed: %s\n", err);
    return 1;
  }
  rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == NULL) {
    fprintf(stderr, "kafka_committed: %s\n", err);
    return 1;
  }
  rkt = rd_kafka_topic_new(rk, argv[3], NULL);
  e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
    fprintf(stderr, "kafka_committed: metadata of %s: %s\n", argv[3],
            rd_kafka_err2str(e                    ? e
                             : md->topic_cnt == 1 ? md->topics[0].err
                                                  : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    return 1;
  }
  parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
  for (int i = 0; i < md->topics[0].partition_cnt; i++)
    rd_kafka_topic_partition_list_add(parts, argv[3], md->topics[0].partitions[i].id);
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  e = rd_kafka_committed(rk, parts, 10000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "kafka_committed: %s\n", rd_kafka_err2str(e));
    return 1;
  }
  for (int i = 0; i < parts->cnt; i++) {
    if (parts->elems[i].err) {
      fprintf(stderr, "kafka_committed: partition %d: %s\n", (int)parts->elems[i].partition,
              rd_kafka_err2str(parts->elems[i].err));
      return 1;
    }
    if (parts->elems[i].offset > 0)
      sum += parts->elems[i].offset;
  }
  printf("%lld\n", sum);
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_destroy(rk);
  return 0;
}
