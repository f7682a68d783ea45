/* kafka_list.c: `seastreamer list kafka://BROKERS[/TOPICS]`. librdkafka's blocking calls on a
 * worker thread (host->queue_work), with an rd_kafka_t of the listing's own (the streamer's
 * properties): metadata for every topic (asking for one topic by name could create it on a
 * broker that creates topics on first use), each partition's watermarks, then the groups
 * (rd_kafka_list_groups: state and members) and each group's committed offsets (the Admin API's
 * ListConsumerGroupOffsets, one group per request as librdkafka 2.0 allows). Internal topics
 * (names starting with "__") are listed only when asked for by name. */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "../list_rows.h"
#include "kafka_list.h"

#define KL_TIMEOUT_DEFAULT 10000

typedef struct kl_part {
  const char *topic; /* in the metadata */
  int32_t part;
  int32_t leader;
  int64_t low, high;
} kl_part_t;

typedef struct kl_data {
  rd_kafka_conf_t *conf;
  char *brokers;
  int timeout_ms;
  rd_kafka_t *rk;
  const struct rd_kafka_metadata *md;
  kl_part_t *parts;
  size_t nparts;
} kl_data_t;

static void kl_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  ljob_t *j = rd_kafka_opaque(rk);
  (void)level;
  /* Our own error says what failed; librdkafka's attempts are detail. */
  if (j)
    j->host->log(SEA_LOG_DEBUG, "kafka", "list: %s: %s", fac, buf);
}

static int kl_wanted(const ljob_t *j, const char *topic) {
  if (j->args.key_count == 0)
    return strncmp(topic, "__", 2) != 0;
  return lrows_wanted(&j->args, topic, strlen(topic));
}

static const kl_part_t *kl_part(const kl_data_t *d, const char *topic, int32_t part) {
  for (size_t i = 0; i < d->nparts; i++)
    if (d->parts[i].part == part && strcmp(d->parts[i].topic, topic) == 0)
      return &d->parts[i];
  return NULL;
}

static int kl_err_status(rd_kafka_resp_err_t e) {
  return e == RD_KAFKA_RESP_ERR__TRANSPORT || e == RD_KAFKA_RESP_ERR__TIMED_OUT ||
                 e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || e == RD_KAFKA_RESP_ERR__RESOLVE
             ? SEA_ECONNECT
             : SEA_EBACKEND;
}

static int kl_topic_rows(ljob_t *j, const struct rd_kafka_metadata_topic **order, int count);

static int kl_topics(ljob_t *j) {
  kl_data_t *d = j->data;
  rd_kafka_resp_err_t e = rd_kafka_metadata(d->rk, 1, NULL, &d->md, d->timeout_ms);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ljob_fail(j, kl_err_status(e), "kafka: cannot get metadata from %s within %d ms: %s",
              d->brokers, d->timeout_ms, rd_kafka_err2str(e));
    return -1;
  }
  size_t n = 0;
  for (int t = 0; t < d->md->topic_cnt; t++)
    n += (size_t)d->md->topics[t].partition_cnt;
  d->parts = calloc(n ? n : 1, sizeof *d->parts);
  if (d->parts == NULL) {
    ljob_fail(j, SEA_ENOMEM, "kafka: out of memory");
    return -1;
  }
  /* topics in name order */
  const struct rd_kafka_metadata_topic **order =
      calloc((size_t)d->md->topic_cnt + 1, sizeof *order);
  if (order == NULL) {
    ljob_fail(j, SEA_ENOMEM, "kafka: out of memory");
    return -1;
  }
  for (int t = 0; t < d->md->topic_cnt; t++) {
    int k = t;
    for (; k > 0 && strcmp(order[k - 1]->topic, d->md->topics[t].topic) > 0; k--)
      order[k] = order[k - 1];
    order[k] = &d->md->topics[t];
  }
  int rc = kl_topic_rows(j, order, d->md->topic_cnt);
  free(order);
  return rc;
}

static int kl_topic_rows(ljob_t *j, const struct rd_kafka_metadata_topic **order, int count) {
  kl_data_t *d = j->data;
  rd_kafka_resp_err_t e;
  for (int t = 0; t < count; t++) {
    const struct rd_kafka_metadata_topic *mt = order[t];
    if (mt->err != RD_KAFKA_RESP_ERR_NO_ERROR || !kl_wanted(j, mt->topic))
      continue;
    size_t first = d->nparts;
    int64_t total = 0;
    for (int p = 0; p < mt->partition_cnt; p++) {
      kl_part_t *kp = &d->parts[d->nparts++];
      kp->topic = mt->topic;
      kp->part = mt->partitions[p].id;
      kp->leader = mt->partitions[p].leader;
      e = rd_kafka_query_watermark_offsets(d->rk, mt->topic, kp->part, &kp->low, &kp->high,
                                           d->timeout_ms);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && kl_err_status(e) == SEA_ECONNECT) {
        ljob_fail(j, SEA_ECONNECT, "kafka: %s: watermarks of %s [%" PRId32 "]: %s", d->brokers,
                  mt->topic, kp->part, rd_kafka_err2str(e));
        return -1;
      }
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* This partition only (no leader now, say): its numbers are unknown, the rest stands. */
        j->host->log(SEA_LOG_WARN, "kafka", "list: watermarks of %s [%" PRId32 "]: %s", mt->topic,
                     kp->part, rd_kafka_err2str(e));
        kp->low = kp->high = -1;
      }
      total = total < 0 || kp->high < 0 ? -1 : total + kp->high - kp->low;
    }
    /* partitions in id order */
    for (size_t a = first + 1; a < d->nparts; a++)
      for (size_t b = a; b > first && d->parts[b - 1].part > d->parts[b].part; b--) {
        kl_part_t tmp = d->parts[b];
        d->parts[b] = d->parts[b - 1];
        d->parts[b - 1] = tmp;
      }
    sea_list_row_t *r = lrows_add(&j->rows, SEA_LIST_STREAM);
    if (r == NULL)
      return -1;
    r->stream = lrows_str(&j->rows, mt->topic);
    r->shards = mt->partition_cnt;
    r->messages = total;
    for (size_t i = first; i < d->nparts; i++) {
      const kl_part_t *kp = &d->parts[i];
      if ((r = lrows_add(&j->rows, SEA_LIST_SHARD)) == NULL)
        return -1;
      r->stream = lrows_str(&j->rows, kp->topic);
      r->shard = kp->part;
      r->leader = kp->leader;
      r->low = kp->low;
      r->high = kp->high;
      r->messages = kp->high < 0 ? -1 : kp->high - kp->low;
      if (kp->high > kp->low && kp->low >= 0) {
        r->first_seq = kp->low;
        r->last_seq = kp->high - 1;
      }
    }
  }
  return 0;
}

/* The group's committed offsets (every partition it committed on). NULL and the job failed. */
static rd_kafka_topic_partition_list_t *kl_committed(ljob_t *j, const char *group) {
  kl_data_t *d = j->data;
  char err[256];
  rd_kafka_topic_partition_list_t *out = NULL;
  rd_kafka_queue_t *q = rd_kafka_queue_new(d->rk);
  rd_kafka_AdminOptions_t *o =
      rd_kafka_AdminOptions_new(d->rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
  rd_kafka_ListConsumerGroupOffsets_t *req = rd_kafka_ListConsumerGroupOffsets_new(group, NULL);
  if (q == NULL || o == NULL || req == NULL) {
    ljob_fail(j, SEA_ENOMEM, "kafka: out of memory");
    goto out;
  }
  if (rd_kafka_AdminOptions_set_request_timeout(o, d->timeout_ms, err, sizeof err)) {
    ljob_fail(j, SEA_EOPTION, "kafka: timeout %d ms: %s", d->timeout_ms, err);
    goto out;
  }
  rd_kafka_ListConsumerGroupOffsets(d->rk, &req, 1, o, q);
  /* The request times out by itself; the poll waits a little longer for its answer. */
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, d->timeout_ms + 2000);
  if (ev == NULL) {
    ljob_fail(j, SEA_ECONNECT, "kafka: %s: no answer for the offsets of group %s within %d ms",
              d->brokers, group, d->timeout_ms);
    goto out;
  }
  if (rd_kafka_event_error(ev)) {
    rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
    ljob_fail(j, kl_err_status(e), "kafka: %s: offsets of group %s: %s", d->brokers, group,
              rd_kafka_event_error_string(ev));
  } else {
    size_t n = 0;
    const rd_kafka_group_result_t **gr = rd_kafka_ListConsumerGroupOffsets_result_groups(
        rd_kafka_event_ListConsumerGroupOffsets_result(ev), &n);
    const rd_kafka_error_t *ge = n == 1 ? rd_kafka_group_result_error(gr[0]) : NULL;
    if (n != 1)
      ljob_fail(j, SEA_EBACKEND, "kafka: %s: offsets of group %s: %zu results", d->brokers, group,
                n);
    else if (ge)
      ljob_fail(j, SEA_EBACKEND, "kafka: %s: offsets of group %s: %s", d->brokers, group,
                rd_kafka_error_string(ge));
    else if (rd_kafka_group_result_partitions(gr[0]))
      out = rd_kafka_topic_partition_list_copy(rd_kafka_group_result_partitions(gr[0]));
    else
      out = rd_kafka_topic_partition_list_new(0);
  }
  rd_kafka_event_destroy(ev);
out:
  if (req)
    rd_kafka_ListConsumerGroupOffsets_destroy(req);
  if (o)
    rd_kafka_AdminOptions_destroy(o);
  if (q)
    rd_kafka_queue_destroy(q);
  return out;
}

/* The partitions to report for a group: every partition of each listed topic it committed on
 * (a partition without a commit has offset RD_KAFKA_OFFSET_INVALID), and as they are the
 * commits on topics not listed by metadata. NULL when out of memory. */
static rd_kafka_topic_partition_list_t *kl_group_parts(const ljob_t *j,
                                                       const rd_kafka_topic_partition_list_t *c) {
  const kl_data_t *d = j->data;
  rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new(c->cnt + 4);
  for (int i = 0; out && i < c->cnt; i++) {
    const char *topic = c->elems[i].topic;
    if (!kl_wanted(j, topic) || (i > 0 && strcmp(c->elems[i - 1].topic, topic) == 0))
      continue; /* c is sorted: each topic once */
    int listed = 0;
    for (size_t k = 0; k < d->nparts; k++) {
      if (strcmp(d->parts[k].topic, topic) != 0)
        continue;
      listed = 1;
      rd_kafka_topic_partition_t *tp =
          rd_kafka_topic_partition_list_add(out, topic, d->parts[k].part);
      const rd_kafka_topic_partition_t *done =
          rd_kafka_topic_partition_list_find(c, topic, d->parts[k].part);
      tp->offset = done ? done->offset : RD_KAFKA_OFFSET_INVALID;
    }
    for (int k = i; !listed && k < c->cnt && strcmp(c->elems[k].topic, topic) == 0; k++)
      rd_kafka_topic_partition_list_add(out, topic, c->elems[k].partition)->offset =
          c->elems[k].offset;
  }
  return out;
}

/* A partition's lag for the group: high - committed, or everything the partition holds (high -
 * low) when the group committed nothing there; -1 if the watermarks are not known. */
static int64_t kl_lag(const kl_part_t *kp, int64_t committed) {
  if (kp == NULL || kp->high < 0)
    return -1;
  if (committed < 0)
    return kp->high - kp->low;
  return kp->high > committed ? kp->high - committed : 0;
}

static int kl_group(ljob_t *j, const struct rd_kafka_group_info *g) {
  kl_data_t *d = j->data;
  rd_kafka_topic_partition_list_t *c = kl_committed(j, g->group), *parts = NULL;
  if (c == NULL)
    return -1;
  rd_kafka_topic_partition_list_sort(c, NULL, NULL); /* by topic, then partition */
  if ((parts = kl_group_parts(j, c)) == NULL)
    goto oom;
  /* A group with nothing on the topics named is left out. */
  if (parts->cnt == 0 && j->args.key_count > 0)
    goto out;
  int64_t total = 0;
  for (int i = 0; i < parts->cnt && total >= 0; i++) {
    const rd_kafka_topic_partition_t *tp = &parts->elems[i];
    int64_t lag = kl_lag(kl_part(d, tp->topic, tp->partition), tp->offset);
    total = lag < 0 ? -1 : total + lag;
  }
  sea_list_row_t *r = lrows_add(&j->rows, SEA_LIST_GROUP);
  if (r == NULL)
    goto oom;
  r->group = lrows_str(&j->rows, g->group);
  r->state = lrows_str(&j->rows, g->state);
  r->consumers = g->member_cnt;
  r->lag = parts->cnt > 0 ? total : -1; /* no commit anywhere: where it starts is not known */
  for (int i = 0; i < parts->cnt; i++) {
    const rd_kafka_topic_partition_t *tp = &parts->elems[i];
    const kl_part_t *kp = kl_part(d, tp->topic, tp->partition);
    if ((r = lrows_add(&j->rows, SEA_LIST_GROUP)) == NULL)
      goto oom;
    r->group = lrows_str(&j->rows, g->group);
    r->stream = lrows_str(&j->rows, tp->topic);
    r->shard = tp->partition;
    r->committed = tp->offset >= 0 ? tp->offset : -1;
    r->lag = kl_lag(kp, tp->offset);
    if (kp) {
      r->low = kp->low;
      r->high = kp->high;
    }
  }
  for (int m = 0; m < g->member_cnt; m++) {
    const struct rd_kafka_group_member_info *mi = &g->members[m];
    if ((r = lrows_add(&j->rows, SEA_LIST_MEMBER)) == NULL)
      goto oom;
    r->group = lrows_str(&j->rows, g->group);
    r->member = lrows_str(&j->rows, mi->member_id);
    r->client_id = lrows_str(&j->rows, mi->client_id);
    r->host = lrows_str(&j->rows, mi->client_host);
  }
out:
  if (parts)
    rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_topic_partition_list_destroy(c);
  return 0;
oom:
  if (parts)
    rd_kafka_topic_partition_list_destroy(parts);
  rd_kafka_topic_partition_list_destroy(c);
  ljob_fail(j, SEA_ENOMEM, "kafka: out of memory");
  return -1;
}

static int kl_groups(ljob_t *j) {
  kl_data_t *d = j->data;
  const struct rd_kafka_group_list *gl = NULL;
  rd_kafka_resp_err_t e = rd_kafka_list_groups(d->rk, NULL, &gl, d->timeout_ms);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    ljob_fail(j, kl_err_status(e), "kafka: %s: cannot list the groups: %s", d->brokers,
              rd_kafka_err2str(e));
    return -1;
  }
  /* in name order */
  const struct rd_kafka_group_info **order = calloc((size_t)gl->group_cnt + 1, sizeof *order);
  int rc = order ? 0 : -1;
  for (int i = 0; order && i < gl->group_cnt; i++) {
    int k = i;
    for (; k > 0 && strcmp(order[k - 1]->group, gl->groups[i].group) > 0; k--)
      order[k] = order[k - 1];
    order[k] = &gl->groups[i];
  }
  for (int i = 0; rc == 0 && order && i < gl->group_cnt; i++)
    if (order[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR)
      rc = kl_group(j, order[i]);
  if (order == NULL)
    ljob_fail(j, SEA_ENOMEM, "kafka: out of memory");
  free(order);
  rd_kafka_group_list_destroy(gl);
  return rc;
}

static void kl_work(void *arg) {
  ljob_t *j = arg;
  kl_data_t *d = j->data;
  char err[512];
  rd_kafka_conf_set_opaque(d->conf, j);
  rd_kafka_conf_set_log_cb(d->conf, kl_log);
  d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, d->conf, err, sizeof err);
  if (d->rk == NULL) {
    ljob_fail(j, SEA_EOPTION, "kafka: cannot create a client: %s", err);
    return; /* the conf is still ours */
  }
  d->conf = NULL; /* rd_kafka_new took it */
  if (kl_topics(j) == 0)
    kl_groups(j);
  /* Here, not on the loop: destroying waits for librdkafka's threads. The rows hold copies. */
  free(d->parts);
  d->parts = NULL;
  if (d->md)
    rd_kafka_metadata_destroy(d->md);
  d->md = NULL;
  rd_kafka_destroy(d->rk);
  d->rk = NULL;
}

static void kl_after(void *arg, int status) {
  ljob_t *j = arg;
  kl_data_t *d = j->data;
  (void)status;
  if (d->conf)
    rd_kafka_conf_destroy(d->conf);
  free(d->brokers);
  free(d);
  ljob_finish(j);
}

int sea_kafka_list(const sea_host_t *host, struct ljob **jobs, const char *brokers,
                   rd_kafka_conf_t *conf, const sea_list_args_t *a, sea_op_t *op) {
  kl_data_t *d = calloc(1, sizeof *d);
  if (d == NULL || (d->brokers = malloc(strlen(brokers) + 1)) == NULL) {
    free(d);
    rd_kafka_conf_destroy(conf);
    return SEA_ENOMEM;
  }
  memcpy(d->brokers, brokers, strlen(brokers) + 1);
  d->conf = conf;
  d->timeout_ms =
      a->timeout_ms && a->timeout_ms < INT32_MAX / 2 ? (int)a->timeout_ms : KL_TIMEOUT_DEFAULT;
  ljob_t *j = ljob_new(host, a, op, jobs);
  if (j == NULL) {
    free(d->brokers);
    free(d);
    rd_kafka_conf_destroy(conf);
    return SEA_ENOMEM;
  }
  j->data = d;
  int rc = host->queue_work(a->rt, kl_work, kl_after, j);
  if (rc != 0) {
    ljob_detach(j);
    j->op = NULL;
    kl_after(j, rc);
    return rc;
  }
  return 0;
}

void sea_kafka_list_abandon(struct ljob **jobs) {
  ljob_abandon_all(jobs);
}
