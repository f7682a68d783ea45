/* kafka_consumer.c: consumer room of the kafka backend: opening, assignment (explicit, or the
 * group's rebalances), polling and delivering batches, end of stream, seek and rewind, close.
 * Acks, commits and lag are the commit room's (kafka_commit.c), which this room calls when the
 * commit queue has results; the rd_kafka_t and its pipe are the handle's (kafka_handle.c). */
#include "kafka_internal.h"

/* =============================================================================================
 * Consumer
 * =========================================================================================== */

/* "topic[0], topic[1]@42" (@offset where one is set) for the logs, cut to fit buf. */
const char *kafka_parts_text(const rd_kafka_topic_partition_list_t *parts, int offsets, char *buf,
                             size_t size) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; parts && i < parts->cnt && o + 1 < size; i++) {
    const rd_kafka_topic_partition_t *p = &parts->elems[i];
    /* With offsets, a partition that has none (nothing new to commit) says so: bare, it read as
     * sharing the next one's offset ("t[0], t[1]@19456"). */
    int n = offsets && p->offset >= 0
                ? snprintf(buf + o, size - o, "%s%s[%" PRId32 "]@%" PRId64, i ? ", " : "", p->topic,
                           p->partition, p->offset)
                : snprintf(buf + o, size - o, "%s%s[%" PRId32 "]%s", i ? ", " : "", p->topic,
                           p->partition, offsets ? " (no offset)" : "");
    if (n < 0 || (size_t)n >= size - o) {
      if (size > 4)
        memcpy(buf + size - 4, "...", 4);
      break;
    }
    o += (size_t)n;
  }
  return buf[0] ? buf : "none";
}

static void consumer_fail(kconsumer_t *kc, int status, const char *fmt, ...) {
  if (kc->ended)
    return;
  kc->ended = 1;
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  LOGD("%s", msg);
  sea_host->consumer_end(kc->c, status, "%s", msg);
}

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kconsumer_t *kc = opaque;
  if (kc->h.closed || !pthread_equal(kc->h.loop, pthread_self()))
    return;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, why, sizeof why);
    consumer_fail(kc, SEA_EBACKEND, "kafka: fatal consumer error: %s: %s", rd_kafka_err2name(e),
                  why);
  } else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !kc->h.connected) {
    consumer_fail(kc, SEA_ECONNECT, "kafka: cannot connect to %s: %s", kc->h.brokers, reason);
  } else if (!kafka_handle_lost(&kc->h, err, reason)) {
    LOGW("%s", reason);
  }
}

static void set_assigned(kconsumer_t *kc, const rd_kafka_topic_partition_list_t *parts) {
  if (kc->assigned)
    rd_kafka_topic_partition_list_destroy(kc->assigned);
  kc->assigned = parts ? rd_kafka_topic_partition_list_copy(parts) : NULL;
  sea_host->free(kc->at_eof);
  kc->at_eof = NULL;
  if (kc->assigned && kc->assigned->cnt)
    kc->at_eof = sea_host->calloc((size_t)kc->assigned->cnt, sizeof *kc->at_eof);
}

/* The offset a fresh assignment starts at, from the start option or the mode. */
static int64_t start_offset(const kconsumer_t *kc) {
  if (kc->start_from_end > 0)
    return RD_KAFKA_OFFSET_TAIL(kc->start_from_end);
  if (kc->has_start && !kc->start_is_time) {
    if (kc->start_pos.kind == SEA_POS_BEGINNING)
      return RD_KAFKA_OFFSET_BEGINNING;
    if (kc->start_pos.kind == SEA_POS_END)
      return RD_KAFKA_OFFSET_END;
    return (int64_t)kc->start_pos.seq;
  }
  if (kc->mode == SEA_MODE_REALTIME)
    return kc->reset_earliest ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
  return RD_KAFKA_OFFSET_STORED;
}

/* Forgets the positions of partitions this consumer no longer owns: a transaction's offsets
 * must not move the group in partitions another member now reads. */
static void pos_forget(kposlist_t *l, const rd_kafka_topic_partition_list_t *parts) {
  size_t w = 0;
  for (size_t i = 0; i < l->n; i++) {
    int gone = 0;
    for (int j = 0; j < parts->cnt && !gone; j++)
      gone = parts->elems[j].partition == l->v[i].partition &&
             strcmp(parts->elems[j].topic, l->v[i].key) == 0;
    if (!gone)
      l->v[w++] = l->v[i];
  }
  l->n = w;
  l->last = 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  kconsumer_t *kc = opaque;
  int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  if (kc->h.closed) {
    /* Closing on a pool thread: just give the partitions back. */
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (coop)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
      else
        rd_kafka_assign(rk, NULL);
    }
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (!kc->start_applied && kc->start_is_time) {
      /* start=s@MS: each partition's first offset at or after the time, looked up before the
       * partitions are assigned (one ListOffsets round trip, on the loop thread, once), so that
       * nothing before it is delivered; a partition with none starts at its end. A failed
       * lookup fails the consumer: starting anywhere else would deliver what was not asked. */
      for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = kc->start_ts_us / 1000;
      int tmo = kc->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)kc->h.timeout_ms;
      rd_kafka_resp_err_t le = rd_kafka_offsets_for_times(rk, parts, tmo);
      if (le) {
        consumer_fail(kc, kafka_err_to_sea(le), "kafka: start=s@MS: offsets for times: %s",
                      rd_kafka_err2str(le));
        return;
      }
      for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset < 0)
          parts->elems[i].offset = RD_KAFKA_OFFSET_END;
    } else if (!kc->start_applied && (kc->has_start || kc->start_from_end)) {
      for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = start_offset(kc);
    }
    kc->start_applied = 1;
    rd_kafka_error_t *e = NULL;
    if (coop) {
      e = rd_kafka_incremental_assign(rk, parts);
      rd_kafka_topic_partition_list_t *now = NULL;
      if (rd_kafka_assignment(rk, &now) == 0) {
        set_assigned(kc, now);
        rd_kafka_topic_partition_list_destroy(now);
      }
    } else {
      rd_kafka_assign(rk, parts);
      set_assigned(kc, parts);
    }
    if (e) {
      consumer_fail(kc, SEA_EBACKEND, "kafka: rebalance: assign failed: %s",
                    rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
    char list[512];
    LOGI("group '%s' assigned %d partition(s)%s: %s", kc->group ? kc->group : "?", parts->cnt,
         coop ? " (incremental)" : "", kafka_parts_text(parts, 0, list, sizeof list));
  } else {
    /* Revoked: commit what was acked before the partitions go to another member, so it is
     * not delivered twice. Asynchronous: the commit is queued before the unassign. A consumer
     * whose offsets go into transactions commits only through them: a commit here would move
     * the group past output that an abort then discards. */
    if (kc->mode != SEA_MODE_REALTIME && !kc->in_txn && !rd_kafka_assignment_lost(rk))
      rd_kafka_commit(rk, NULL, 1);
    pos_forget(&kc->delivered, parts);
    pos_forget(&kc->acked, parts);
    kc->revokes++;
    rd_kafka_topic_partition_list_t *now = NULL;
    if (coop) {
      /* Incremental: the partitions not revoked stay, and so does what is known of them. */
      rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
      if (rd_kafka_assignment(rk, &now) != 0)
        now = NULL;
    } else {
      rd_kafka_assign(rk, NULL);
    }
    set_assigned(kc, now);
    int kept = now != NULL && now->cnt > 0;
    if (now)
      rd_kafka_topic_partition_list_destroy(now);
    char list[512];
    LOGI("group '%s' revoked %d partition(s)%s: %s", kc->group ? kc->group : "?", parts->cnt,
         rd_kafka_assignment_lost(rk) ? " (lost)" : "",
         kafka_parts_text(parts, 0, list, sizeof list));
    if (sea_host->consumer_revoked)
      sea_host->consumer_revoked(kc->c, coop && kept);
  }
}

/* The bytes one message needs in a block: [sea_kv_t headers][header bytes][key][payload],
 * rounded up so the next message's header array stays aligned. */
static size_t message_size(rd_kafka_message_t *rm, size_t *nh_out) {
  rd_kafka_headers_t *hdrs = NULL;
  size_t nh = 0, bytes = 0;
  if (rd_kafka_message_headers(rm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    nh = rd_kafka_header_cnt(hdrs);
    for (size_t i = 0; i < nh; i++) {
      const char *name;
      const void *val;
      size_t vlen;
      if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) == 0)
        bytes += strlen(name) + 1 + (val ? vlen : 0);
    }
  }
  *nh_out = nh;
  size_t size = nh * sizeof(sea_kv_t) + bytes + rm->key_len + rm->len;
  return (size + 7) & ~(size_t)7;
}

/* The interned stream key of a topic handle (one lookup per run of the same topic). */
static const char *topic_key(kconsumer_t *kc, rd_kafka_topic_t *rkt) {
  const char *name = rd_kafka_topic_name(rkt);
  /* The name is checked too: a handle's address may be reused by another topic. */
  if (rkt != kc->last_rkt || kc->last_key == NULL || strcmp(name, kc->last_key) != 0) {
    kc->last_rkt = rkt;
    kc->last_key = sea_host->stream_key(name, strlen(name));
  }
  return kc->last_key;
}

/* Copy one message to w (message_size bytes) and fill m; b is the block w lies in. */
static void fill_message(kconsumer_t *kc, rd_kafka_message_t *rm, size_t nh, uint8_t *w,
                         sea_block_t *b, sea_message_t *m) {
  rd_kafka_headers_t *hdrs = NULL;
  if (nh)
    rd_kafka_message_headers(rm, &hdrs);
  sea_kv_t *kv = (sea_kv_t *)(void *)w;
  w += nh * sizeof(sea_kv_t);
  for (size_t i = 0; i < nh; i++) {
    const char *name;
    const void *val;
    size_t vlen;
    if (hdrs == NULL || rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) != 0) {
      memset(&kv[i], 0, sizeof kv[i]);
      continue;
    }
    size_t nl = strlen(name);
    memcpy(w, name, nl + 1);
    kv[i].name = (const char *)w;
    kv[i].name_len = nl;
    w += nl + 1;
    kv[i].value = NULL;
    kv[i].value_len = 0;
    if (val) {
      memcpy(w, val, vlen);
      kv[i].value = w;
      kv[i].value_len = vlen;
      w += vlen;
    }
  }
  memset(m, 0, sizeof *m);
  if (rm->key) {
    memcpy(w, rm->key, rm->key_len);
    m->key = w;
    m->key_len = rm->key_len;
    w += rm->key_len;
  }
  if (rm->len)
    memcpy(w, rm->payload, rm->len);
  m->payload.data = w;
  m->payload.len = rm->len;
  m->payload.block = b;
  m->headers = nh ? kv : NULL;
  m->header_count = nh;
  m->meta.stream_key = topic_key(kc, rm->rkt);
  m->meta.shard_id = (uint64_t)rm->partition;
  m->meta.seq = (uint64_t)rm->offset;
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(rm, &tt);
  m->meta.timestamp_us = ts >= 0 ? ts * 1000 : 0;
  m->backend_pos = (uint64_t)rm->offset;
}

/* Deliver kc->pend[0..n) as one batch whose messages share one block (one allocation per
 * batch, not per message; each message holds its own reference). Destroys the messages. */
static int deliver_pending(kconsumer_t *kc, size_t n) {
  if (n == 0)
    return 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    kc->pend_nh[2 * i + 1] = message_size(kc->pend[i], &kc->pend_nh[2 * i]);
    total += kc->pend_nh[2 * i + 1];
  }
  sea_batch_t *batch = sea_host->batch_new(n);
  sea_block_t *b = sea_host->block_new(total ? total : 1);
  if (batch == NULL || b == NULL) {
    if (batch)
      sea_host->batch_release(batch);
    sea_host->block_unref(b);
    for (size_t i = 0; i < n; i++)
      rd_kafka_message_destroy(kc->pend[i]);
    return SEA_ENOMEM;
  }
  uint8_t *w = sea_host->block_data(b);
  for (size_t i = 0; i < n; i++) {
    size_t nh = kc->pend_nh[2 * i], sz = kc->pend_nh[2 * i + 1];
    if (i > 0)
      sea_host->block_ref(b);
    sea_message_t *m = &batch->msgs[batch->count++];
    fill_message(kc, kc->pend[i], nh, w, b, m);
    if (kc->mode != SEA_MODE_REALTIME && m->meta.stream_key)
      kafka_pos_note(&kc->delivered, m->meta.stream_key, (int32_t)m->meta.shard_id,
                     (int64_t)m->backend_pos + 1);
    w += sz;
    rd_kafka_message_destroy(kc->pend[i]);
  }
  sea_host->deliver(kc->c, batch); /* may re-enter: pause, commit, seek, close (deferred) */
  return 0;
}

int kafka_assigned_index(const kconsumer_t *kc, const char *topic, int32_t part) {
  for (int i = 0; kc->assigned && i < kc->assigned->cnt; i++)
    if (kc->assigned->elems[i].partition == part &&
        strcmp(kc->assigned->elems[i].topic, topic) == 0)
      return i;
  return -1;
}

static int all_at_eof(const kconsumer_t *kc) {
  if (kc->assigned == NULL || kc->assigned->cnt == 0 || kc->at_eof == NULL)
    return 0;
  for (int i = 0; i < kc->assigned->cnt; i++)
    if (!kc->at_eof[i])
      return 0;
  return 1;
}

/* Marks (topic, partition) as at its end or not; the last index found is tried first. */
static void mark_eof(kconsumer_t *kc, rd_kafka_message_t *rm, int at_end) {
  if (kc->at_eof == NULL || kc->assigned == NULL)
    return;
  int i = kc->last_eof_idx;
  if (i < 0 || i >= kc->assigned->cnt || kc->assigned->elems[i].partition != rm->partition ||
      strcmp(kc->assigned->elems[i].topic, rd_kafka_topic_name(rm->rkt)) != 0)
    i = kafka_assigned_index(kc, rd_kafka_topic_name(rm->rkt), rm->partition);
  if (i >= 0) {
    kc->at_eof[i] = at_end;
    kc->last_eof_idx = i;
  }
}

/* Drops the messages of kc->pend[0..n) whose partitions are no longer assigned; returns how
 * many are left. */
static size_t pend_drop_unassigned(kconsumer_t *kc, size_t n) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    rd_kafka_message_t *rm = kc->pend[i];
    if (kafka_assigned_index(kc, rd_kafka_topic_name(rm->rkt), rm->partition) >= 0)
      kc->pend[w++] = rm;
    else
      rd_kafka_message_destroy(rm);
  }
  if (w < n)
    LOGD("rebalance: %zu polled message(s) of revoked partitions dropped", n - w);
  return w;
}

/* Rewound after it ended (stop_at_end): a partition is at its end again once it delivered the
 * message it had ended after (librdkafka need not report the end of a partition twice). */
static void end_reached(kconsumer_t *kc, rd_kafka_message_t *rm) {
  kpos_t *e = kafka_pos_find(&kc->ends, rd_kafka_topic_name(rm->rkt), rm->partition);
  if (e == NULL || rm->offset + 1 < e->next)
    return;
  mark_eof(kc, rm, 1);
  *e = kc->ends.v[--kc->ends.n];
  kc->ends.last = 0;
}

static void consumer_drain(khandle_t *h) {
  kconsumer_t *kc = (kconsumer_t *)h;
  kafka_commits_serve(kc);
  if (h->closed || !kc->started || kc->ended || !kc->ready)
    return;
  size_t cap = kc->batch ? kc->batch : KAFKA_DEFAULT_BATCH;
  if (kc->pend_cap < cap) {
    rd_kafka_message_t **p = sea_host->realloc(kc->pend, cap * sizeof *p);
    if (p)
      kc->pend = p;
    size_t *q = p ? sea_host->realloc(kc->pend_nh, 2 * cap * sizeof *q) : NULL;
    if (q)
      kc->pend_nh = q;
    if (p == NULL || q == NULL) {
      consumer_fail(kc, SEA_ENOMEM, "kafka: out of memory");
      return;
    }
    kc->pend_cap = cap;
  }
  int rounds = 0;
  int64_t t0 = kafka_mono_us();
  while (!h->closed && !kc->paused && !kc->ended) {
    size_t n = 0;
    int more = 0, empty_polls = 0, failed = 0;
    rd_kafka_resp_err_t fail_err = 0;
    char detail[400];
    unsigned revokes = kc->revokes;
    while (1) {
      /* Serves rebalances, errors and logs too, all here on the loop thread. */
      rd_kafka_message_t *rm = rd_kafka_consumer_poll(h->rk, 0);
      if (h->closed) {
        if (rm)
          rd_kafka_message_destroy(rm);
        break;
      }
      if (kc->revokes != revokes) {
        /* A rebalance took partitions away while this batch was being gathered: what came
         * from them is now another member's to deliver. */
        revokes = kc->revokes;
        n = pend_drop_unassigned(kc, n);
      }
      if (rm == NULL) {
        /* With a zero timeout the poll returns NULL after serving one op that is not a message
         * (a log line, a rebalance) even when messages follow; the io event only fires when
         * the queue goes from empty to non-empty, so keep going until it is really empty. */
        if (rd_kafka_queue_length(kc->cq) > 0 && ++empty_polls < 1000)
          continue;
        break;
      }
      if (rm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        mark_eof(kc, rm, 1);
        rd_kafka_message_destroy(rm);
        if (kc->stop_at_end && all_at_eof(kc))
          break;
        continue;
      }
      if (rm->err) {
        rd_kafka_resp_err_t e = rm->err;
        if (rm->rkt)
          snprintf(detail, sizeof detail, "topic '%s' on %s: %s", rd_kafka_topic_name(rm->rkt),
                   h->brokers, rd_kafka_message_errstr(rm));
        else /* the group's, not a topic's (JoinGroup, SyncGroup) */
          snprintf(detail, sizeof detail, "group '%s' on %s: %s", kc->group ? kc->group : "?",
                   h->brokers, rd_kafka_message_errstr(rm));
        rd_kafka_message_destroy(rm);
        /* What the broker will refuse every time: trying again would go on for ever (kcat
         * fails on them too). The group errors come when a group setting is out of the
         * broker's bounds (session.timeout.ms), or the group is not the client's. */
        if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
            e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
            e == RD_KAFKA_RESP_ERR_INVALID_SESSION_TIMEOUT ||
            e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED ||
            e == RD_KAFKA_RESP_ERR_INVALID_GROUP_ID ||
            e == RD_KAFKA_RESP_ERR_INCONSISTENT_GROUP_PROTOCOL) {
          failed = 1; /* after delivering what came before it */
          fail_err = e;
          break;
        }
        LOGW("consume from %s", detail);
        continue;
      }
      kafka_handle_back(h);
      mark_eof(kc, rm, 0);
      if (kc->ends.n)
        end_reached(kc, rm);
      kc->pend[n++] = rm;
      if (n == cap) {
        more = 1;
        break;
      }
    }
    if (h->closed) {
      for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(kc->pend[i]);
      return;
    }
    if (deliver_pending(kc, n)) {
      consumer_fail(kc, SEA_ENOMEM, "kafka: out of memory");
      return;
    }
    if (h->closed)
      return;
    if (failed) {
      consumer_fail(kc, kafka_err_to_sea(fail_err), "kafka: %s", detail);
      return;
    }
    if (kc->stop_at_end && !kc->ended && all_at_eof(kc)) {
      kc->ended = 1;
      sea_host->consumer_end(kc->c, SEA_EOF, NULL);
      return;
    }
    if (!more)
      return;
    if (++rounds >= 64 || kafka_mono_us() - t0 >= KAFKA_DRAIN_SLICE_US) { /* fair to the loop */
      kafka_schedule_again(h);
      return;
    }
  }
}

/* Realtime and resumable: assign every partition of the topics (or the explicit choices). */
/* A logical start offset made absolute with the partition's watermarks, when they are known. */
static int64_t resolve_offset(const meta_job_t *j, const char *topic, int32_t part, int64_t off) {
  if (j->lo == NULL || off >= 0)
    return off;
  rd_kafka_topic_partition_t *lo = rd_kafka_topic_partition_list_find(j->lo, topic, part);
  rd_kafka_topic_partition_t *hi = rd_kafka_topic_partition_list_find(j->hi, topic, part);
  if (lo == NULL || hi == NULL)
    return off;
  if (off == RD_KAFKA_OFFSET_BEGINNING)
    return lo->offset;
  if (off == RD_KAFKA_OFFSET_END)
    return hi->offset;
  if (off <= RD_KAFKA_OFFSET_TAIL(0)) {
    int64_t n = RD_KAFKA_OFFSET_TAIL(0) - off;
    return hi->offset - n > lo->offset ? hi->offset - n : lo->offset;
  }
  return off;
}

static int consumer_assign_all(kconsumer_t *kc, const meta_job_t *j) {
  const struct rd_kafka_metadata *md = j->md;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  if (kc->explicit_) {
    for (int i = 0; i < kc->explicit_->cnt; i++) {
      const char *topic = kc->explicit_->elems[i].topic;
      int32_t part = kc->explicit_->elems[i].partition;
      /* A partition that does not exist would be waited for without a word (kcat fails too). */
      const struct rd_kafka_metadata_topic *mt = kafka_md_topic(md, topic);
      int found = 0;
      for (int p = 0; mt && p < mt->partition_cnt && !found; p++)
        found = mt->partitions[p].id == part;
      if (!found) {
        rd_kafka_topic_partition_list_destroy(l);
        consumer_fail(
            kc, SEA_EKEY, "kafka: partition %d of topic '%s' does not exist (it has %d, 0 to %d)",
            (int)part, topic, mt ? mt->partition_cnt : 0, mt ? mt->partition_cnt - 1 : -1);
        return -1;
      }
      rd_kafka_topic_partition_list_add(l, topic, part)->offset = start_offset(kc);
    }
  } else {
    for (size_t t = 0; t < kc->ntopics; t++) {
      const struct rd_kafka_metadata_topic *mt = kafka_md_topic(md, kc->topics[t]);
      for (int p = 0; mt && p < mt->partition_cnt; p++)
        rd_kafka_topic_partition_list_add(l, kc->topics[t], mt->partitions[p].id)->offset =
            start_offset(kc);
    }
  }
  for (int i = 0; i < l->cnt; i++)
    l->elems[i].offset =
        resolve_offset(j, l->elems[i].topic, l->elems[i].partition, l->elems[i].offset);
  rd_kafka_resp_err_t e = rd_kafka_assign(kc->h.rk, l);
  if (e == 0)
    set_assigned(kc, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    consumer_fail(kc, kafka_err_to_sea(e), "kafka: assign: %s", rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

typedef struct seek_job {
  kconsumer_t *kc;
  sea_op_t *op; /* NULL: the start=s@MS of a fresh assignment */
  rd_kafka_topic_partition_list_t *parts;
  rd_kafka_resp_err_t err;
} seek_job_t;

static void seek_work(void *data) {
  seek_job_t *j = data;
  int tmo = j->kc->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)j->kc->h.timeout_ms;
  j->err = rd_kafka_offsets_for_times(j->kc->h.rk, j->parts, tmo);
}

static void seek_apply(kconsumer_t *kc, seek_job_t *j) {
  if (j->err) {
    if (j->op)
      sea_host->op_done(j->op, kafka_err_to_sea(j->err), "seek: offsets for times: %s",
                        rd_kafka_err2str(j->err));
    else
      consumer_fail(kc, kafka_err_to_sea(j->err), "kafka: start=s@MS: offsets for times: %s",
                    rd_kafka_err2str(j->err));
    return;
  }
  /* A partition without a message at or after the time starts at its end. */
  for (int i = 0; i < j->parts->cnt; i++)
    if (j->parts->elems[i].offset < 0)
      j->parts->elems[i].offset = RD_KAFKA_OFFSET_END;
  if (j->op == NULL) {
    rd_kafka_resp_err_t e = rd_kafka_assign(kc->h.rk, j->parts);
    if (e)
      consumer_fail(kc, kafka_err_to_sea(e), "kafka: assign: %s", rd_kafka_err2str(e));
    else
      set_assigned(kc, j->parts);
    return;
  }
  rd_kafka_error_t *e = rd_kafka_seek_partitions(kc->h.rk, j->parts, 0);
  if (e) {
    sea_host->op_done(j->op, SEA_EBACKEND, "seek: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  } else {
    if (kc->at_eof && kc->assigned)
      memset(kc->at_eof, 0, (size_t)kc->assigned->cnt * sizeof *kc->at_eof);
    sea_host->op_done(j->op, 0, NULL);
  }
}

static void seek_after(void *data, int status) {
  seek_job_t *j = data;
  kconsumer_t *kc = j->kc;
  kc->h.pending_work--;
  kc->seeks--;
  if (status && j->err == 0)
    j->err = RD_KAFKA_RESP_ERR__DESTROY;
  if (!kc->h.closed) {
    seek_apply(kc, j);
    if (!kc->h.closed)
      kafka_schedule_again(&kc->h);
  }
  rd_kafka_topic_partition_list_destroy(j->parts);
  sea_host->free(j);
  kafka_handle_release(&kc->h);
}

static int seek_start(kconsumer_t *kc, const rd_kafka_topic_partition_list_t *parts, int64_t ts_us,
                      sea_op_t *op) {
  seek_job_t *j = sea_host->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kc = kc;
  j->op = op;
  j->parts = rd_kafka_topic_partition_list_copy(parts);
  for (int i = 0; i < j->parts->cnt; i++)
    j->parts->elems[i].offset = ts_us / 1000;
  kc->h.pending_work++;
  kc->seeks++;
  if (sea_host->queue_work(kc->h.rt, seek_work, seek_after, j) != 0) {
    kc->h.pending_work--;
    kc->seeks--;
    rd_kafka_topic_partition_list_destroy(j->parts);
    sea_host->free(j);
    return SEA_EIO;
  }
  return 0;
}

#define KEEPALIVE_MS 1000

static void on_keepalive(sea_timer_t *t, void *data) {
  (void)t;
  kconsumer_t *kc = data;
  if (!kc->h.closed && !kc->paused)
    kc->h.drain(&kc->h);
}

static void consumer_meta_done(khandle_t *h, meta_job_t *j) {
  kconsumer_t *kc = (kconsumer_t *)h;
  if (j->err) {
    consumer_fail(kc, SEA_ECONNECT, "kafka: cannot connect to %s within %" PRIu64 " ms: %s",
                  h->brokers, h->timeout_ms, rd_kafka_err2str(j->err));
    return;
  }
  for (size_t i = 0; i < kc->ntopics; i++) {
    const struct rd_kafka_metadata_topic *t = kafka_md_topic(j->md, kc->topics[i]);
    if (t == NULL || t->err) {
      consumer_fail(kc, SEA_EKEY, "kafka: topic '%s' does not exist on %s%s%s", kc->topics[i],
                    h->brokers, t && t->err ? ": " : "",
                    t && t->err ? rd_kafka_err2str(t->err) : "");
      return;
    }
  }
  if (kc->ntopics == 0) {
    consumer_fail(kc, SEA_EKEY,
                  "kafka: the URI names no topic to consume (kafka://host:port/topic[,topic])");
    return;
  }
  if (kc->mode == SEA_MODE_LOAD_BALANCED) {
    /* librdkafka takes a member that has not polled for max.poll.interval.ms (5 min) for a
     * stuck one and leaves the group, which rebalances it. Polls come from the queue's io
     * event, which an idle consumer never gets: poll it every second while it is not paused
     * (a paused one is waiting for its outputs, and polling would take messages it cannot
     * hand on). */
    kc->keepalive = sea_host->timer_init(h->rt, on_keepalive, kc);
    if (kc->keepalive)
      sea_host->timer_start(kc->keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)kc->ntopics);
    for (size_t i = 0; i < kc->ntopics; i++)
      rd_kafka_topic_partition_list_add(l, kc->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(h->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
      consumer_fail(kc, kafka_err_to_sea(e), "kafka: subscribe: %s", rd_kafka_err2str(e));
      return;
    }
  } else if (kc->start_is_time) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t t = 0; t < kc->ntopics; t++) {
      const struct rd_kafka_metadata_topic *mt = kafka_md_topic(j->md, kc->topics[t]);
      for (int p = 0; mt && p < mt->partition_cnt; p++)
        rd_kafka_topic_partition_list_add(l, kc->topics[t], mt->partitions[p].id);
    }
    int rc = seek_start(kc, l, kc->start_ts_us, NULL);
    rd_kafka_topic_partition_list_destroy(l);
    if (rc)
      consumer_fail(kc, rc, "kafka: start=s@MS: %s", "cannot queue the lookup");
  } else if (consumer_assign_all(kc, j)) {
    return;
  }
  kc->ready = 1;
  kafka_schedule_again(h);
}

int kafka_consumer_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *a, void **impl) {
  kstreamer_t *ks = simpl;
  const sea_uri_t *uri = a->uri;
  kconsumer_t *kc = sea_host->calloc(1, sizeof *kc);
  if (kc == NULL)
    return SEA_ENOMEM;
  kc->c = c;
  kc->mode = a->mode;
  kc->group = a->group;
  kc->reset_earliest = a->reset_earliest;
  kc->has_start = a->has_start;
  kc->start_is_time = a->start_is_time;
  kc->start_pos = a->start_pos;
  kc->start_ts_us = a->start_ts_us;
  kc->start_from_end = a->start_from_end;
  kc->stop_at_end = a->stop_at_end;
  kc->batch = a->batch_size;
  int rc = 0;
  /* auto_commit: at-most-once or false (the host refused it to producers, partition to us). */
  const char *v = sea_host->option_get(a->backend_options, "auto_commit");
  int amo = v != NULL && strcmp(v, "at-most-once") == 0;
  int b = v != NULL && !amo ? sea_host->option_bool(a->backend_options, "auto_commit") : 0;
  if (b == 1) {
    /* librdkafka's auto commit stores every delivered offset, processed or not: a crash loses
     * what was in flight. At most once exists only by name (docs/delivery.md). */
    sea_host->set_error(
        a->rt,
        "kafka: option auto_commit=%s commits what was delivered, processed or not (at "
        "most once): say auto_commit=at-most-once to ask for that, or leave it out "
        "(ack, then commit: at least once)",
        v);
    rc = SEA_EOPTION;
  } else if (b < 0) {
    sea_host->set_error(a->rt, "kafka: option auto_commit=%s: expected at-most-once or false", v);
    rc = SEA_EOPTION;
  } else if (amo && a->mode == SEA_MODE_REALTIME) {
    sea_host->set_error(a->rt,
                        "kafka: option auto_commit=at-most-once: a realtime consumer has no "
                        "position to commit (use mode=resumable or load-balanced with a group)");
    rc = SEA_EOPTION;
  }
  kc->auto_commit = amo;
  /* The subscription: the consumer's keys, else the URI's. */
  size_t nk = a->key_count ? a->key_count : uri->key_count;
  if (rc == 0 && nk) {
    kc->topics = sea_host->calloc(nk, sizeof *kc->topics);
    for (size_t i = 0; kc->topics && i < nk; i++) {
      kc->topics[i] = kafka_dup_str(a->key_count ? a->keys[i] : uri->keys[i]);
      if (kc->topics[i])
        kc->ntopics++;
    }
    if (kc->topics == NULL || kc->ntopics != nk)
      rc = SEA_ENOMEM;
  }
  rd_kafka_conf_t *conf = NULL;
  if (rc == 0)
    rc = kafka_make_conf(a->rt, ks->brokers, a->backend_options, &conf);
  char gid[96];
  const char *group = a->group;
  if (rc == 0 && group == NULL) {
    /* librdkafka wants a group id even for assign(); realtime never commits to it. */
    snprintf(gid, sizeof gid, "seastreamer-realtime-%ld-%" PRIx64, (long)getpid(),
             (uint64_t)sea_host->now_us());
    group = gid;
  }
  if (rc == 0)
    rc = kafka_conf_set(a->rt, conf, "group.id", group);
  if (rc == 0)
    rc = kafka_conf_set(a->rt, conf, "enable.partition.eof", "true");
  if (rc == 0)
    rc =
        kafka_conf_set(a->rt, conf, "auto.offset.reset", a->reset_earliest ? "earliest" : "latest");
  if (rc == 0)
    rc = kafka_conf_set(a->rt, conf, "enable.auto.commit", kc->auto_commit ? "true" : "false");
  /* Without auto-commit only acked messages are stored, so a commit covers what was processed. */
  if (rc == 0)
    rc =
        kafka_conf_set(a->rt, conf, "enable.auto.offset.store", kc->auto_commit ? "true" : "false");
  /* When its queue holds queued.min.messages (default 100000) librdkafka 2.0 stops fetching
   * and looks again only after a backoff of up to a second, so a reader that keeps up still
   * stalls every 100000 messages. Memory stays bounded by queued.max.messages.kbytes. */
  if (rc == 0 && !sea_host->option_get(a->backend_options, "queued.min.messages"))
    rc = kafka_conf_set(a->rt, conf, "queued.min.messages", "1000000");
  if (rc) {
    if (conf)
      rd_kafka_conf_destroy(conf);
    for (size_t i = 0; i < kc->ntopics; i++)
      sea_host->free(kc->topics[i]);
    sea_host->free(kc->topics);
    sea_host->free(kc);
    return rc;
  }
  rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  kc->h.is_consumer = 1;
  kc->h.drain = consumer_drain;
  if ((rc = kafka_handle_init(&kc->h, a, ks->brokers, conf, RD_KAFKA_CONSUMER))) {
    kafka_close_fds(&kc->h);
    for (size_t i = 0; i < kc->ntopics; i++)
      sea_host->free(kc->topics[i]);
    sea_host->free(kc->topics);
    sea_host->free(kc->h.brokers);
    sea_host->free(kc);
    return rc;
  }
  rd_kafka_poll_set_consumer(kc->h.rk);
  kc->cq = rd_kafka_queue_get_consumer(kc->h.rk);
  rd_kafka_queue_io_event_enable(kc->cq, kc->h.pipefd[1], "1", 1);
  kc->commitq = rd_kafka_queue_new(kc->h.rk);
  rd_kafka_queue_io_event_enable(kc->commitq, kc->h.pipefd[1], "c", 1);
  *impl = kc;
  return 0;
}

int kafka_consumer_start(void *impl) {
  kconsumer_t *kc = impl;
  kc->started = 1;
  int rc = kafka_handle_watch(&kc->h);
  if (rc == 0)
    rc = kafka_meta_start(&kc->h, (const char *const *)kc->topics, kc->ntopics, 0,
                          kc->mode == SEA_MODE_REALTIME && !kc->start_is_time, consumer_meta_done);
  return rc;
}

/* Pausing only stops our polling: librdkafka stops fetching by itself once its queue holds
 * queued.max.messages.kbytes. rd_kafka_pause_partitions would drop what it prefetched and fetch
 * it again on resume, which a relay (that pauses whenever its output is full) pays for each
 * time. */
int kafka_consumer_pause(void *impl) {
  kconsumer_t *kc = impl;
  kc->paused = 1;
  return 0;
}

int kafka_consumer_resume(void *impl) {
  kconsumer_t *kc = impl;
  kc->paused = 0;
  kafka_schedule_again(&kc->h);
  return 0;
}

int kafka_consumer_seek(void *impl, int64_t ts_us, sea_op_t *op) {
  kconsumer_t *kc = impl;
  if (!kc->ready || kc->assigned == NULL || kc->assigned->cnt == 0) {
    sea_host->op_done(op, SEA_ESTATE,
                      "seek: no partition is assigned yet (wait for the first batch)");
    return 0;
  }
  return seek_start(kc, kc->assigned, ts_us, op);
}

int kafka_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  kconsumer_t *kc = impl;
  if (pos.kind == SEA_POS_COMMITTED_)
    return kafka_rewind_committed(kc, op);
  if (!kc->ready || kc->assigned == NULL || kc->assigned->cnt == 0) {
    sea_host->op_done(op, SEA_ESTATE,
                      "rewind: no partition is assigned yet (wait for the first batch)");
    return 0;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(kc->assigned);
  for (int i = 0; i < l->cnt; i++)
    l->elems[i].offset = pos.kind == SEA_POS_BEGINNING ? RD_KAFKA_OFFSET_BEGINNING
                         : pos.kind == SEA_POS_END     ? RD_KAFKA_OFFSET_END
                                                       : (int64_t)pos.seq;
  rd_kafka_error_t *e = rd_kafka_seek_partitions(kc->h.rk, l, 0);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    sea_host->op_done(op, SEA_EBACKEND, "rewind: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return 0;
  }
  if (kc->at_eof)
    memset(kc->at_eof, 0, (size_t)kc->assigned->cnt * sizeof *kc->at_eof);
  sea_host->op_done(op, 0, NULL);
  return 0;
}

static int explicit_change(kconsumer_t *kc, const char *key, uint64_t shard, int add) {
  if (kc->mode == SEA_MODE_LOAD_BALANCED) {
    LOGE("%s: a load-balanced consumer's partitions are assigned by its group",
         add ? "assign" : "unassign");
    return SEA_ESTATE;
  }
  if (shard > INT32_MAX)
    return SEA_EINVAL;
  if (kc->explicit_ == NULL)
    kc->explicit_ = rd_kafka_topic_partition_list_new(4);
  int32_t part = (int32_t)shard;
  rd_kafka_topic_partition_t *have = rd_kafka_topic_partition_list_find(kc->explicit_, key, part);
  if (add && have == NULL)
    rd_kafka_topic_partition_list_add(kc->explicit_, key, part);
  else if (!add && have != NULL)
    rd_kafka_topic_partition_list_del(kc->explicit_, key, part);
  else if (!add) {
    LOGE("unassign: partition %s/%" PRId32 " is not assigned", key, part);
    return SEA_EINVAL;
  }
  if (kc->ready) { /* already consuming: apply now (the start point for new partitions) */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(kc->explicit_->cnt);
    for (int i = 0; i < kc->explicit_->cnt; i++) {
      const rd_kafka_topic_partition_t *e = &kc->explicit_->elems[i];
      int idx = kafka_assigned_index(kc, e->topic, e->partition);
      int64_t off = start_offset(kc);
      if (idx >= 0) { /* keep its position */
        rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pos, e->topic, e->partition);
        if (rd_kafka_position(kc->h.rk, pos) == 0 && pos->elems[0].offset >= 0)
          off = pos->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(pos);
      }
      rd_kafka_topic_partition_list_add(l, e->topic, e->partition)->offset = off;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(kc->h.rk, l);
    if (err == 0)
      set_assigned(kc, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
      LOGE("%s: %s", add ? "assign" : "unassign", rd_kafka_err2str(err));
      return kafka_err_to_sea(err);
    }
  }
  return 0;
}

int kafka_consumer_assign(void *impl, const char *key, uint64_t shard) {
  return explicit_change(impl, key, shard, 1);
}

int kafka_consumer_unassign(void *impl, const char *key, uint64_t shard) {
  return explicit_change(impl, key, shard, 0);
}

void kafka_consumer_close(void *impl) {
  kconsumer_t *kc = impl;
  /* A consumer whose offsets went into a transaction leaves committing to the transaction: a
   * commit here would move the group past what an aborted transaction produced. */
  kc->h.commit_on_close = kc->mode != SEA_MODE_REALTIME && kc->ready && !kc->in_txn;
  sea_host->timer_close(kc->keepalive);
  kc->keepalive = NULL;
  sea_host->free(kc->delivered.v);
  sea_host->free(kc->acked.v);
  sea_host->free(kc->ends.v);
  memset(&kc->delivered, 0, sizeof kc->delivered);
  memset(&kc->ends, 0, sizeof kc->ends);
  memset(&kc->acked, 0, sizeof kc->acked);
  for (size_t i = 0; i < kc->ncommits; i++)
    sea_host->free(kc->commits[i]); /* the host cancels their ops */
  sea_host->free(kc->commits);
  kc->commits = NULL;
  kc->ncommits = 0;
  for (size_t i = 0; i < kc->ntopics; i++)
    sea_host->free(kc->topics[i]);
  sea_host->free(kc->topics);
  kc->topics = NULL;
  kc->ntopics = 0;
  if (kc->assigned)
    rd_kafka_topic_partition_list_destroy(kc->assigned);
  if (kc->explicit_)
    rd_kafka_topic_partition_list_destroy(kc->explicit_);
  kc->assigned = kc->explicit_ = NULL;
  sea_host->free(kc->at_eof);
  kc->at_eof = NULL;
  sea_host->free(kc->pend);
  sea_host->free(kc->pend_nh);
  kc->pend = NULL;
  kc->pend_nh = NULL;
  if (kc->cq)
    rd_kafka_queue_destroy(kc->cq);
  if (kc->commitq)
    rd_kafka_queue_destroy(kc->commitq);
  kc->cq = kc->commitq = NULL;
  kafka_handle_close(&kc->h);
}
