/* tests/kafka/cluster_tool.c: what the cluster tests (test_cluster.sh) need from the cluster
 * beside the command: topics of a given partition count, and a group's positions and members,
 * read without joining the group.
 *
 *   cluster_tool create BOOTSTRAP TOPIC PARTITIONS
 *       creates TOPIC (the cluster's default replication factor) and waits until each partition
 *       has a leader;
 *   cluster_tool committed BOOTSTRAP GROUP TOPIC
 *       one line per partition of TOPIC: "PARTITION OFFSET", the group's committed offset (0 where
 *       nothing is committed);
 *   cluster_tool members BOOTSTRAP GROUP
 *       the group's state and its coordinator's node id on the first line ("state STATE
 *       coordinator ID"), then one line per member:
 *       "CLIENT_ID P1,P2,..." with the partitions of its assignment ("-" for none), read from the
 *       member's assignment as the group coordinator holds it (DescribeGroups).
 *
 * Exit status 0 and the lines on stdout; 1 and a message on stderr on any failure. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static rd_kafka_t *client(const char *bootstrap, const char *group) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "group.id", group, err, sizeof err) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "cluster_tool: %s\n", err);
    exit(1);
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == NULL) {
    fprintf(stderr, "cluster_tool: %s\n", err);
    exit(1);
  }
  return rk;
}

static int committed(const char *bootstrap, const char *group, const char *topic) {
  rd_kafka_t *rk = client(bootstrap, group);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1 || md->topics[0].err) {
    fprintf(stderr, "cluster_tool: metadata of %s: %s\n", topic,
            rd_kafka_err2str(e                    ? e
                             : md->topic_cnt == 1 ? md->topics[0].err
                                                  : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    return 1;
  }
  rd_kafka_topic_partition_list_t *parts =
      rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
  for (int i = 0; i < md->topics[0].partition_cnt; i++)
    rd_kafka_topic_partition_list_add(parts, topic, md->topics[0].partitions[i].id);
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  e = rd_kafka_committed(rk, parts, 10000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "cluster_tool: committed: %s\n", rd_kafka_err2str(e));
    return 1;
  }
  for (int i = 0; i < parts->cnt; i++) {
    if (parts->elems[i].err) {
      fprintf(stderr, "cluster_tool: partition %d: %s\n", (int)parts->elems[i].partition,
              rd_kafka_err2str(parts->elems[i].err));
      return 1;
    }
    printf("%d %lld\n", (int)parts->elems[i].partition,
           parts->elems[i].offset > 0 ? (long long)parts->elems[i].offset : 0LL);
  }
  rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_destroy(rk);
  return 0;
}

/* Big-endian reads over a bounded buffer; *ok drops to 0 past its end. */
static uint32_t rd_be(const unsigned char **p, const unsigned char *end, int n, int *ok) {
  uint32_t v = 0;
  if (end - *p < n) {
    *ok = 0;
    return 0;
  }
  for (int i = 0; i < n; i++)
    v = v << 8 | (*p)[i];
  *p += n;
  return v;
}

/* ConsumerProtocol Assignment: int16 version, [string topic, [int32 partition]], bytes user data.
 * Prints the partitions, comma-separated (every topic's: the tests use one topic a group). */
static void print_assignment(const void *buf, int size) {
  const unsigned char *p = buf, *end = p + (size > 0 ? size : 0);
  int ok = 1, any = 0;
  if (size <= 0) {
    printf("-");
    return;
  }
  rd_be(&p, end, 2, &ok);
  uint32_t nt = rd_be(&p, end, 4, &ok);
  for (uint32_t t = 0; ok && t < nt; t++) {
    uint32_t len = rd_be(&p, end, 2, &ok);
    if (!ok || (uint32_t)(end - p) < len)
      break;
    p += len;
    uint32_t np = rd_be(&p, end, 4, &ok);
    for (uint32_t i = 0; ok && i < np; i++) {
      uint32_t part = rd_be(&p, end, 4, &ok);
      if (ok)
        printf("%s%u", any++ ? "," : "", part);
    }
  }
  if (!any)
    printf("-");
}

static int members(const char *bootstrap, const char *group) {
  rd_kafka_t *rk = client(bootstrap, group);
  const struct rd_kafka_group_list *gl = NULL;
  rd_kafka_resp_err_t e = rd_kafka_list_groups(rk, group, &gl, 10000);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    fprintf(stderr, "cluster_tool: describe %s: %s\n", group, rd_kafka_err2str(e));
    return 1;
  }
  if (gl->group_cnt != 1 || gl->groups[0].err) {
    fprintf(stderr, "cluster_tool: describe %s: %s\n", group,
            gl->group_cnt == 1 ? rd_kafka_err2str(gl->groups[0].err) : "no such group");
    return 1;
  }
  const struct rd_kafka_group_info *g = &gl->groups[0];
  printf("state %s coordinator %d\n", g->state, (int)g->broker.id);
  for (int i = 0; i < g->member_cnt; i++) {
    printf("%s ", g->members[i].client_id);
    print_assignment(g->members[i].member_assignment, g->members[i].member_assignment_size);
    printf("\n");
  }
  rd_kafka_group_list_destroy(gl);
  rd_kafka_destroy(rk);
  return 0;
}

static int create(const char *bootstrap, const char *topic, int nparts) {
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err) !=
      RD_KAFKA_CONF_OK) {
    fprintf(stderr, "cluster_tool: %s\n", err);
    return 1;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == NULL) {
    fprintf(stderr, "cluster_tool: %s\n", err);
    return 1;
  }
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, nparts, -1, err, sizeof err);
  if (nt == NULL) {
    fprintf(stderr, "cluster_tool: %s\n", err);
    return 1;
  }
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(opt, 10000, err, sizeof err);
  rd_kafka_AdminOptions_set_request_timeout(opt, 15000, err, sizeof err);
  rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
  int rc = 1;
  if (ev == NULL) {
    fprintf(stderr, "cluster_tool: create %s: no answer within 20 s\n", topic);
  } else if (rd_kafka_event_error(ev)) {
    fprintf(stderr, "cluster_tool: create %s: %s\n", topic, rd_kafka_event_error_string(ev));
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t **r =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    if (n == 1 && rd_kafka_topic_result_error(r[0]) == RD_KAFKA_RESP_ERR_NO_ERROR)
      rc = 0;
    else
      fprintf(stderr, "cluster_tool: create %s: %s\n", topic,
              n == 1 ? rd_kafka_topic_result_error_string(r[0]) : "no result");
  }
  if (ev)
    rd_kafka_event_destroy(ev);
  rd_kafka_AdminOptions_destroy(opt);
  rd_kafka_NewTopic_destroy(nt);
  /* Every partition led (the metadata may lag the creation), bounded. */
  for (int tries = 0; rc == 0 && tries < 200; tries++) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int led = 0;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1 && md->topics[0].err == 0 && md->topics[0].partition_cnt == nparts) {
        led = 1;
        for (int i = 0; i < nparts; i++)
          led &= md->topics[0].partitions[i].leader >= 0 && md->topics[0].partitions[i].err == 0;
      }
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    if (led)
      break;
    if (tries == 199) {
      fprintf(stderr, "cluster_tool: create %s: partitions without a leader after 10 s\n", topic);
      rc = 1;
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  return rc;
}

int main(int argc, char **argv) {
  if (argc == 5 && strcmp(argv[1], "committed") == 0)
    return committed(argv[2], argv[3], argv[4]);
  if (argc == 5 && strcmp(argv[1], "create") == 0)
    return create(argv[2], argv[3], atoi(argv[4]));
  if (argc == 4 && strcmp(argv[1], "members") == 0)
    return members(argv[2], argv[3]);
  fprintf(stderr,
          "usage: %s create BOOTSTRAP TOPIC PARTITIONS | committed BOOTSTRAP GROUP TOPIC |"
          " members BOOTSTRAP GROUP\n",
          argv[0]);
  return 1;
}
