/* kafka_commit.c: acks, commits and lag room of the kafka backend (consumers). Acks store the
 * next offsets, commits send them to the group (results come back on the consumer's commit
 * queue, served from the consumer room's drain), rewinding to the group's committed positions,
 * and lag. The positions lists (kposlist_t) are also read by the transactions room. */
#include "kafka_internal.h"

int kafka_pos_note(kposlist_t *l, const char *key, int32_t part, int64_t next) {
  if (l->last < l->n && l->v[l->last].key == key && l->v[l->last].partition == part) {
    if (next > l->v[l->last].next)
      l->v[l->last].next = next;
    return 0;
  }
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i].key == key && l->v[i].partition == part) {
      if (next > l->v[i].next)
        l->v[i].next = next;
      l->last = i;
      return 0;
    }
  }
  if (SEA_GROW(l->v, l->cap, l->n + 1, 8) != 0)
    return SEA_ENOMEM;
  l->v[l->n].key = key;
  l->v[l->n].partition = part;
  l->v[l->n].next = next;
  l->v[l->n].base = next - 1;
  l->last = l->n++;
  return 0;
}

kpos_t *kafka_pos_find(kposlist_t *l, const char *topic, int32_t part) {
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].partition == part && strcmp(l->v[i].key, topic) == 0)
      return &l->v[i];
  return NULL;
}

/* A commit refused because the group's coordinator is moving (it died, or moved, or its
 * connection dropped with the commit in flight, or it timed out): this member still owns its
 * partitions, and the same commit may succeed once a coordinator answers again. */
static int commit_coordinator_moving(rd_kafka_resp_err_t e) {
  switch (e) {
  case RD_KAFKA_RESP_ERR__WAIT_COORD:
  case RD_KAFKA_RESP_ERR__TRANSPORT:
  case RD_KAFKA_RESP_ERR__TIMED_OUT:
  case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
  case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
  case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
  case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    return 1;
  default:
    return 0;
  }
}

/* A commit refused because the group changed under it (a rebalance, a member the coordinator
 * dropped): its partitions are, or will be, another member's; trying again cannot help. */
static int commit_overtaken(rd_kafka_resp_err_t e) {
  switch (e) {
  case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST: /* the session timed out during the failover */
  case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
  case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
  case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
  case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    return 1;
  default:
    return 0;
  }
}

void kafka_commits_serve(kconsumer_t *kc) {
  rd_kafka_event_t *ev;
  while (!kc->h.closed && (ev = rd_kafka_queue_poll(kc->commitq, 0)) != NULL) {
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
      kcommit_t *k = rd_kafka_event_opaque(ev);
      rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
      for (size_t i = 0; k && i < kc->ncommits; i++) {
        if (kc->commits[i] != k)
          continue;
        kc->commits[i] = kc->commits[--kc->ncommits];
        /* Nothing to commit is not a failure. */
        if (e == 0) {
          char list[512];
          LOGI("group '%s' committed %s", kc->group ? kc->group : "?",
               kafka_parts_text(rd_kafka_event_topic_partition_list(ev), 1, list, sizeof list));
        }
        if (e == 0 || e == RD_KAFKA_RESP_ERR__NO_OFFSET)
          sea_host->op_done(k->op, 0, NULL);
        else if (commit_coordinator_moving(e) && !kc->h.closed)
          /* Not done, nothing lost: the caller may commit again (the pipeline does, with a
           * bounded backoff, at its last commit; a later timer commit covers the others). */
          sea_host->op_done(k->op, SEA_EBUSY,
                            "commit: %s (the group's coordinator is moving: commit again later)",
                            rd_kafka_err2str(e));
        else if (commit_overtaken(e)) {
          /* The group moved under the commit: this member was dropped from the generation (a
           * broker failover outlasting the session, a rebalance). (Seen on a three-broker
           * cluster whose group coordinator was killed: "Broker: Unknown member", "Local:
           * Group partition assignment lost"; tests/kafka/test_cluster.sh.)
           * Nothing is lost: these positions stay uncommitted, and whoever holds the
           * partitions after the rebalance delivers again from the last commit. Not a failure
           * of the stream (a pipeline goes on; it used to end with status 1 at its stop). */
          LOGW("commit not done, the group moved under it (%s): whoever holds the partitions "
               "next delivers again from the last commit (duplicates, nothing lost)",
               rd_kafka_err2str(e));
          sea_host->op_done(k->op, SEA_ECANCELED, "commit: %s (the group moved under it)",
                            rd_kafka_err2str(e));
        } else
          sea_host->op_done(k->op, kafka_err_to_sea(e), "commit: %s", rd_kafka_err2str(e));
        sea_host->free(k);
        break;
      }
    }
    rd_kafka_event_destroy(ev);
  }
}

/* ---- back to the group's committed positions (the host's exactly once, after an abort) ---- */

typedef struct committed_job {
  kconsumer_t *kc;
  sea_op_t *op;
  rd_kafka_topic_partition_list_t *parts;
  unsigned revokes; /* kc->revokes when it began */
  rd_kafka_resp_err_t err;
} committed_job_t;

static void committed_work(void *data) {
  committed_job_t *j = data;
  int tmo = j->kc->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)j->kc->h.timeout_ms;
  /* Asks the group's coordinator (OffsetFetch): blocks until it answers, a new one included;
   * three times the timeout at most while it is moving (a failover may outlast one). */
  for (int t = 0; t < 3; t++) {
    j->err = rd_kafka_committed(j->kc->h.rk, j->parts, tmo);
    for (int i = 0; j->err == 0 && i < j->parts->cnt; i++)
      j->err = j->parts->elems[i].err;
    if (!commit_coordinator_moving(j->err))
      break;
  }
}

/* Seeks every partition that delivered something past its committed offset back to it (a
 * partition never committed: back to the first message this assignment delivered). What was
 * acked is forgotten: it went into the aborted transaction. Messages fetched before the seek
 * are never delivered (librdkafka's seek drops them). */
static void committed_apply(kconsumer_t *kc, committed_job_t *j) {
  if (j->err) {
    sea_host->op_done(j->op, kafka_err_to_sea(j->err), "rewind to the committed positions: %s",
                      rd_kafka_err2str(j->err));
    return;
  }
  kc->acked.n = 0;
  kc->acked.last = 0;
  if (kc->revokes != j->revokes) {
    /* A rebalance came meanwhile: the new assignment starts from the committed positions. */
    sea_host->op_done(j->op, 0, NULL);
    return;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(j->parts->cnt);
  for (int i = 0; i < j->parts->cnt; i++) {
    const rd_kafka_topic_partition_t *tp = &j->parts->elems[i];
    kpos_t *d = kafka_pos_find(&kc->delivered, tp->topic, tp->partition);
    if (d == NULL)
      continue; /* nothing delivered: where it is now is where it was */
    int64_t to = tp->offset >= 0 ? tp->offset : d->base;
    if (to >= d->next)
      continue;
    int idx = kafka_assigned_index(kc, tp->topic, tp->partition);
    if (idx >= 0 && kc->at_eof && kc->at_eof[idx]) {
      /* At its end: with stop_at_end it is there again once it delivered d->next - 1. */
      if (kc->stop_at_end) {
        const char *key = sea_host->stream_key(tp->topic, strlen(tp->topic));
        if (key && kafka_pos_note(&kc->ends, key, tp->partition, d->next) != 0) {
          rd_kafka_topic_partition_list_destroy(l);
          sea_host->op_done(j->op, SEA_ENOMEM, "rewind to the committed positions: out of memory");
          return;
        }
      }
      kc->at_eof[idx] = 0;
    }
    rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset = to;
    d->next = d->base = to;
  }
  rd_kafka_error_t *e = l->cnt ? rd_kafka_seek_partitions(kc->h.rk, l, 0) : NULL;
  LOGD("rewound %d partition(s) to the committed positions", l->cnt);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    sea_host->op_done(j->op, SEA_EBACKEND, "rewind to the committed positions: %s",
                      rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return;
  }
  if (kc->ended && kc->stop_at_end) {
    kc->ended = 0; /* the host took its end back: it ends again at the drain, once at the end */
  }
  sea_host->op_done(j->op, 0, NULL);
}

static void committed_after(void *data, int status) {
  committed_job_t *j = data;
  kconsumer_t *kc = j->kc;
  kc->h.pending_work--;
  if (status && j->err == 0)
    j->err = RD_KAFKA_RESP_ERR__DESTROY;
  if (!kc->h.closed) {
    committed_apply(kc, j);
    if (!kc->h.closed)
      kafka_schedule_again(&kc->h);
  }
  rd_kafka_topic_partition_list_destroy(j->parts);
  sea_host->free(j);
  kafka_handle_release(&kc->h);
}

int kafka_rewind_committed(kconsumer_t *kc, sea_op_t *op) {
  if (kc->mode == SEA_MODE_REALTIME) {
    sea_host->op_done(op, SEA_ESTATE, "rewind: a realtime consumer has no committed position");
    return 0;
  }
  if (kc->assigned == NULL || kc->assigned->cnt == 0) {
    kc->acked.n = 0;
    sea_host->op_done(op, 0, NULL); /* nothing assigned: nothing delivered to take back */
    return 0;
  }
  committed_job_t *j = sea_host->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kc = kc;
  j->op = op;
  j->revokes = kc->revokes;
  j->parts = rd_kafka_topic_partition_list_copy(kc->assigned);
  kc->h.pending_work++;
  if (sea_host->queue_work(kc->h.rt, committed_work, committed_after, j) != 0) {
    kc->h.pending_work--;
    rd_kafka_topic_partition_list_destroy(j->parts);
    sea_host->free(j);
    return SEA_EIO;
  }
  return 0;
}

/* Stores offset next (the one after the processed message) for (topic, partition): what the
 * next commit commits. */
static int ack_store(kconsumer_t *kc, const char *topic, uint64_t shard, uint64_t seq) {
  if (kc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  if (shard > INT32_MAX || seq >= INT64_MAX) {
    sea_host->consumer_error(
        kc->c, "%s partition %" PRIu64 " seq %" PRIu64 ": not a Kafka position", topic, shard, seq);
    return SEA_EINVAL;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  /* The committed offset is the next one to read. */
  rd_kafka_topic_partition_list_add(l, topic, (int32_t)shard)->offset = (int64_t)seq + 1;
  rd_kafka_resp_err_t e = rd_kafka_offsets_store(kc->h.rk, l);
  if (e == 0 && l->elems[0].err)
    e = l->elems[0].err;
  rd_kafka_topic_partition_list_destroy(l);
  if (e == RD_KAFKA_RESP_ERR__STATE && kafka_assigned_index(kc, topic, (int32_t)shard) < 0) {
    /* In a group this is normal: a rebalance gave the partition to another member. */
    sea_host->consumer_error(
        kc->c, "%s partition %" PRIu64 " (seq %" PRIu64 ") is not assigned to this consumer%s",
        topic, shard, seq,
        kc->mode == SEA_MODE_LOAD_BALANCED
            ? " (a rebalance gave it to another member, which delivers it again)"
            : "");
    return SEA_ESTATE;
  }
  if (e) {
    LOGE("ack of %s/%" PRIu64 " seq %" PRIu64 ": %s", topic, shard, seq, rd_kafka_err2str(e));
    sea_host->consumer_error(kc->c, "%s partition %" PRIu64 " seq %" PRIu64 ": %s", topic, shard,
                             seq, rd_kafka_err2str(e));
    return kafka_err_to_sea(e);
  }
  const char *key = sea_host->stream_key(topic, strlen(topic));
  if (key)
    return kafka_pos_note(&kc->acked, key, (int32_t)shard, (int64_t)seq + 1);
  return 0;
}

int kafka_consumer_ack(void *impl, const sea_message_t *m) {
  kconsumer_t *kc = impl;
  if (m == NULL || m->meta.stream_key == NULL)
    return SEA_EINVAL;
  return ack_store(kc, m->meta.stream_key, m->meta.shard_id, m->backend_pos);
}

int kafka_consumer_ack_pos(void *impl, const char *key, uint64_t shard, uint64_t seq) {
  return ack_store(impl, key, shard, seq);
}

int kafka_consumer_commit(void *impl, sea_op_t *op) {
  kconsumer_t *kc = impl;
  if (kc->mode == SEA_MODE_REALTIME) {
    sea_host->op_done(
        op, SEA_ESTATE,
        "commit: a realtime consumer has no position to commit (use mode=resumable or "
        "load-balanced with a group)");
    return 0;
  }
  kcommit_t *k = sea_host->calloc(1, sizeof *k);
  if (k == NULL)
    return SEA_ENOMEM;
  if (SEA_GROW(kc->commits, kc->capcommits, kc->ncommits + 1, 4) != 0) {
    sea_host->free(k);
    return SEA_ENOMEM;
  }
  k->kc = kc;
  k->op = op;
  /* The result comes back as an event on commitq, whose io event wakes the loop. */
  rd_kafka_resp_err_t e = rd_kafka_commit_queue(kc->h.rk, NULL, kc->commitq, NULL, k);
  if (e == RD_KAFKA_RESP_ERR__NO_OFFSET) {
    sea_host->free(k);
    sea_host->op_done(op, 0, NULL);
    return 0;
  }
  if (e) {
    sea_host->free(k);
    sea_host->op_done(op, kafka_err_to_sea(e), "commit: %s", rd_kafka_err2str(e));
    return 0;
  }
  kc->commits[kc->ncommits++] = k;
  return 0;
}

/* The lag of each assigned partition: the high watermark librdkafka last learned (fetch
 * responses carry it; statistics.interval.ms refreshes it too) minus the position (the offset
 * after the last message polled). Both are cached, so nothing blocks; -1 until both are known. */
int kafka_consumer_lag(void *impl, sea_lag_t *out, size_t cap) {
  kconsumer_t *kc = impl;
  if (kc->assigned == NULL || kc->assigned->cnt == 0)
    return 0;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(kc->assigned);
  if (l == NULL)
    return SEA_ENOMEM;
  rd_kafka_position(kc->h.rk, l);
  int n = l->cnt;
  for (int i = 0; i < n && (size_t)i < cap; i++) {
    const rd_kafka_topic_partition_t *tp = &l->elems[i];
    int64_t lo = -1, hi = -1;
    out[i].stream_key = sea_host->stream_key(tp->topic, strlen(tp->topic));
    out[i].shard = (uint64_t)tp->partition;
    out[i].lag_bytes = -1;
    out[i].lag = -1;
    if (rd_kafka_get_watermark_offsets(kc->h.rk, tp->topic, tp->partition, &lo, &hi) == 0 &&
        hi >= 0 && tp->err == 0 && tp->offset >= 0)
      out[i].lag = hi > tp->offset ? hi - tp->offset : 0;
  }
  rd_kafka_topic_partition_list_destroy(l);
  return n;
}
