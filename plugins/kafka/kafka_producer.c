/* kafka_producer.c: producer room of the kafka backend: sends, delivery reports (receipts),
 * flushes and the producer's errors. A transactional producer's commits and the ops waiting for
 * them are the transactions room's (kafka_txn.c); the rd_kafka_t and its pipe are the handle's
 * (kafka_handle.c). */
#include "kafka_internal.h"

/* =============================================================================================
 * Producer
 * =========================================================================================== */

void kafka_producer_fail_purge(kproducer_t *kp, int status, const char *msg) {
  if (kp->failed)
    return;
  kp->failed = 1;
  kp->fail_status = status;
  snprintf(kp->fail_msg, sizeof kp->fail_msg, "%s", msg);
  sea_host->producer_fail(kp->p, status, "%s", msg);
  /* Outstanding sends get their (failed) receipts now rather than at message.timeout.ms. */
  rd_kafka_purge(kp->h.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  kproducer_t *kp = opaque;
  if (kp->h.closed)
    return;
  kp->receipted++;
  sea_meta_t meta = {0};
  int status = kafka_err_to_sea(m->err);
  if (status == 0) {
    kafka_handle_back(&kp->h);
    /* Our sends name topics by the handles we cache (and hold), so the key is found there. */
    for (size_t i = 0; i < kp->ntopics && meta.stream_key == NULL; i++)
      if (kp->topics[i].rkt == m->rkt)
        meta.stream_key = kp->topics[i].key;
    if (meta.stream_key == NULL) {
      const char *name = rd_kafka_topic_name(m->rkt);
      meta.stream_key = sea_host->stream_key(name, strlen(name));
    }
    meta.shard_id = (uint64_t)m->partition;
    meta.seq = (uint64_t)m->offset;
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    meta.timestamp_us = ts >= 0 ? ts * 1000 : sea_host->now_us();
  } else if (!kp->failed && status != SEA_ECANCELED) {
    /* A send the broker refused fails the producer: later sends would meet the same fate, and
     * the message says what and where. */
    char msg[512];
    snprintf(msg, sizeof msg, "kafka: delivery to topic '%s' (partition %" PRId32 ") failed: %s",
             rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err));
    LOGE("%s", msg + 7); /* the log adds "kafka: " */
    kp->failed = 1;
    kp->fail_status = status;
    snprintf(kp->fail_msg, sizeof kp->fail_msg, "%s", msg);
    sea_host->producer_fail(kp->p, status, "%s", msg);
  }
  sea_host->receipt(kp->p, m->_private, status, status == 0 ? &meta : NULL);
}

static void producer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kproducer_t *kp = opaque;
  /* Not on the loop thread: served by a blocking call (a transaction commit) on the pool. */
  if (kp->h.closed || !pthread_equal(kp->h.loop, pthread_self()))
    return;
  char msg[600];
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, why, sizeof why);
    snprintf(msg, sizeof msg, "kafka: fatal producer error: %s: %s", rd_kafka_err2name(e), why);
    kafka_producer_fail_purge(kp, SEA_EBACKEND, msg);
  } else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !kp->h.connected) {
    snprintf(msg, sizeof msg, "kafka: cannot connect to %s: %s", kp->h.brokers, reason);
    kafka_producer_fail_purge(kp, SEA_ECONNECT, msg);
  } else if (!kafka_handle_lost(&kp->h, err, reason)) {
    LOGW("%s", reason);
  }
}

static void producer_complete_ops(kproducer_t *kp) {
  if (kp->txn_state == TXN_ENDING)
    kafka_txn_end_maybe(kp);
  if (kp->txn && !kp->txn_explicit && !kp->failed) {
    /* Flushes whose sends are all delivered are completed by committing the transaction. */
    if (kp->txn_state == TXN_OPEN && kp->nops > 0 && kp->receipted >= kp->ops[0].target)
      kafka_txn_commit_start(kp);
    return;
  }
  /* Flushes made before txn_begin still wait for the implicit commit in flight. */
  if (kp->txn && kp->txn_state == TXN_COMMITTING && !kp->failed)
    return;
  /* Flushes made while transactions are set up complete once a transaction is open: then
   * init_transactions is done, and with it whatever a predecessor with the same
   * transactional.id left (its commit finished or its open transaction aborted). */
  if (kp->txn && kp->txn_state == TXN_INIT && !kp->failed)
    return;
  size_t w = 0;
  for (size_t i = 0; i < kp->nops; i++) {
    if (kp->receipted >= kp->ops[i].target)
      sea_host->op_done(kp->ops[i].op, kp->fail_status, kp->fail_status ? "flush: %s" : NULL,
                        kp->fail_msg);
    else
      kp->ops[w++] = kp->ops[i];
  }
  kp->nops = w;
}

static void producer_drain(khandle_t *h) {
  kproducer_t *kp = (kproducer_t *)h;
  /* rd_kafka_poll serves delivery reports, errors and logs here, on the loop thread. A bounded
   * number per turn keeps the loop fair to other handles. */
  int served = 0, n;
  while ((n = rd_kafka_poll(h->rk, 0)) > 0 && !h->closed) {
    served += n;
    if (served > 100000) {
      kafka_schedule_again(h);
      break;
    }
  }
  if (h->closed)
    return;
  producer_complete_ops(kp);
  if (kp->want_ready && served > 0) {
    kp->want_ready = 0;
    sea_host->producer_ready(kp->p);
  }
  /* Still waiting for room: nothing to do until delivery reports come back. They will (a full
   * queue holds messages, and each gets its report), and the first one into the empty queue
   * writes to the pipe. Draining again at once would spin the loop meanwhile. */
}

static void producer_meta_done(khandle_t *h, meta_job_t *j) {
  kproducer_t *kp = (kproducer_t *)h;
  char msg[700];
  if (j->err) {
    snprintf(msg, sizeof msg, "kafka: cannot connect to %s within %" PRIu64 " ms: %s", h->brokers,
             h->timeout_ms, rd_kafka_err2str(j->err));
    LOGE("%s", msg + 7); /* the log adds "kafka: " */
    kafka_producer_fail_purge(
        kp, kafka_err_to_sea(j->err) == SEA_ETIMEDOUT ? SEA_ECONNECT : kafka_err_to_sea(j->err),
        msg);
    return;
  }
  /* A missing topic fails now only when the user turned auto-creation off; otherwise
   * librdkafka's own metadata request lets the broker create it (or the delivery fails). */
  if (j->topic_count == 1 && kp->no_autocreate) {
    const struct rd_kafka_metadata_topic *t = kafka_md_topic(j->md, j->topics[0]);
    if (t == NULL || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      snprintf(msg, sizeof msg,
               "kafka: topic '%s' does not exist on %s (and allow.auto.create.topics=false)",
               j->topics[0], h->brokers);
      LOGE("%s", msg + 7); /* the log adds "kafka: " */
      kafka_producer_fail_purge(kp, SEA_EKEY, msg);
    }
  }
}

int kafka_producer_open(void *simpl, sea_producer_t *p, const sea_open_args_t *a, void **impl) {
  kstreamer_t *ks = simpl;
  kproducer_t *kp = sea_host->calloc(1, sizeof *kp);
  if (kp == NULL)
    return SEA_ENOMEM;
  kp->p = p;
  kp->partition = RD_KAFKA_PARTITION_UA;
  if (sea_host->option_get(a->backend_options,
                           "partition")) /* the host checked it is 0..INT32_MAX */
    kp->partition = (int32_t)sea_host->option_u64(a->backend_options, "partition");
  const char *ac = sea_host->option_get(a->backend_options, "allow.auto.create.topics");
  kp->no_autocreate = ac && strcmp(ac, "false") == 0;
  kp->txn = sea_host->option_get(a->backend_options, "transactional.id") != NULL;
  rd_kafka_conf_t *conf;
  int rc = kafka_make_conf(a->rt, ks->brokers, a->backend_options, &conf);
  if (rc) {
    sea_host->free(kp);
    return rc;
  }
  /* Unreachable brokers: undelivered messages fail after the timeout instead of 5 minutes,
   * unless the user set message.timeout.ms. */
  if (a->timeout_ms && !sea_host->option_get(a->backend_options, "message.timeout.ms") &&
      !sea_host->option_get(a->backend_options, "delivery.timeout.ms")) {
    char t[32];
    snprintf(t, sizeof t, "%" PRIu64, a->timeout_ms);
    if ((rc = kafka_conf_set(a->rt, conf, "message.timeout.ms", t))) {
      rd_kafka_conf_destroy(conf);
      sea_host->free(kp);
      return rc;
    }
  }
  /* Idempotence by default, as Kafka's own clients since 3.0: a retried request can then neither
   * reorder a partition's messages nor store one twice (without it, a first send to a topic
   * still being created was seen to land after the other 99 of its batch). Left alone when the
   * user set it or a property it constrains. */
  static const char *const idem_props[] = {"enable.idempotence", "acks", "request.required.acks",
                                           "max.in.flight",
                                           "max.in.flight.requests.per.connection"};
  int idem_user = 0;
  for (size_t i = 0; i < sizeof idem_props / sizeof idem_props[0]; i++)
    idem_user |= sea_host->option_get(a->backend_options, idem_props[i]) != NULL;
  if (!idem_user && (rc = kafka_conf_set(a->rt, conf, "enable.idempotence", "true"))) {
    rd_kafka_conf_destroy(conf);
    sea_host->free(kp);
    return rc;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  rd_kafka_conf_set_error_cb(conf, producer_error_cb);
  kp->h.drain = producer_drain;
  if ((rc = kafka_handle_init(&kp->h, a, ks->brokers, conf, RD_KAFKA_PRODUCER))) {
    kafka_close_fds(&kp->h);
    sea_host->free(kp->h.brokers);
    sea_host->free(kp);
    return rc;
  }
  rd_kafka_queue_t *mq = rd_kafka_queue_get_main(kp->h.rk);
  rd_kafka_queue_io_event_enable(mq, kp->h.pipefd[1], "1", 1);
  rd_kafka_queue_destroy(mq);
  const char *topics[1];
  size_t nt = 0;
  if (a->anchor) {
    snprintf(kp->anchor, sizeof kp->anchor, "%s", a->anchor);
    topics[nt++] = kp->anchor;
  }
  if ((rc = kafka_handle_watch(&kp->h)) ||
      (rc = kafka_meta_start(&kp->h, topics, nt, kp->no_autocreate ? 2 : 1, 0,
                             producer_meta_done)) ||
      (kp->txn && (rc = kafka_txn_start(kp, 0)))) {
    kafka_handle_close(&kp->h);
    return rc;
  }
  *impl = kp;
  return 0;
}

static rd_kafka_topic_t *producer_topic(kproducer_t *kp, const char *key) {
  for (size_t i = 0; i < kp->ntopics; i++)
    if (kp->topics[i].key == key)
      return kp->topics[i].rkt;
  if (SEA_GROW(kp->topics, kp->captopics, kp->ntopics + 1, 8) != 0)
    return NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(kp->h.rk, key, NULL);
  if (rkt == NULL)
    return NULL;
  kp->topics[kp->ntopics].key = key;
  kp->topics[kp->ntopics++].rkt = rkt;
  return rkt;
}

int kafka_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  kproducer_t *kp = impl;
  if (kp->failed)
    return SEA_ESTATE;
  if (kp->txn && kp->txn_state != TXN_OPEN) {
    if (kp->txn_state == TXN_IDLE || kp->txn_state == TXN_ENDING) {
      sea_host->producer_error(
          kp->p, "no transaction is open (%s; call sea_producer_txn_begin first)",
          kp->txn_state == TXN_IDLE ? "the last one ended" : "the open one is ending");
      return SEA_ESTATE;
    }
    /* No transaction is open (initializing or committing): wait for producer_ready. */
    kp->want_ready = 1;
    return SEA_EAGAIN;
  }
  rd_kafka_topic_t *rkt = producer_topic(kp, m->meta.stream_key);
  if (rkt == NULL)
    return SEA_ENOMEM;
  int32_t part = kp->partition;
  if ((flags & SEA_SEND_KEEP_META) && part == RD_KAFKA_PARTITION_UA &&
      m->meta.shard_id <= INT32_MAX)
    part = (int32_t)m->meta.shard_id;
  rd_kafka_headers_t *hdrs = NULL;
  if (m->header_count) {
    hdrs = rd_kafka_headers_new(m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
      const sea_kv_t *kv = &m->headers[i];
      rd_kafka_header_add(hdrs, kv->name, (ssize_t)kv->name_len, kv->value,
                          kv->value ? (ssize_t)kv->value_len : 0);
    }
  }
  int64_t ts_ms = m->meta.timestamp_us > 0 ? m->meta.timestamp_us / 1000 : 0;
  rd_kafka_resp_err_t e = rd_kafka_producev(
      kp->h.rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(part),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE((void *)m->payload.data, m->payload.len),
      RD_KAFKA_V_KEY((const void *)m->key, m->key ? m->key_len : 0), RD_KAFKA_V_TIMESTAMP(ts_ms),
      RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(token), RD_KAFKA_V_END);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    kp->sent++;
    return 0;
  }
  if (hdrs)
    rd_kafka_headers_destroy(hdrs);
  if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
    /* Backpressure: the host waits for producer_ready, which the next delivery reports bring. */
    kp->want_ready = 1;
    kafka_schedule_again(&kp->h);
    return SEA_EAGAIN;
  }
  if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
    char v[32] = "?";
    size_t vn = sizeof v;
    rd_kafka_conf_get(rd_kafka_conf(kp->h.rk), "message.max.bytes", v, &vn);
    sea_host->producer_error(kp->p, "a message of %zu bytes is over message.max.bytes (%s)",
                             m->payload.len + (m->key ? m->key_len : 0), v);
    return SEA_ETOOBIG;
  }
  sea_host->producer_error(kp->p, "partition %" PRId32 ": %s", part, rd_kafka_err2str(e));
  return kafka_err_to_sea(e);
}

static int producer_add_op(kproducer_t *kp, sea_op_t *op) {
  if (SEA_GROW(kp->ops, kp->capops, kp->nops + 1, 4) != 0)
    return SEA_ENOMEM;
  kp->ops[kp->nops].op = op;
  kp->ops[kp->nops++].target = kp->sent;
  /* Completes from the drain once the receipts are in (maybe at once, on the next turn). */
  kafka_schedule_again(&kp->h);
  return 0;
}

int kafka_producer_flush(void *impl, sea_op_t *op) {
  return producer_add_op(impl, op);
}

void kafka_producer_close(void *impl) {
  kproducer_t *kp = impl;
  kp->h.txn_open =
      kp->txn && (kp->txn_state == TXN_OPEN || (kp->txn_state == TXN_ENDING && !kp->end_started));
  for (size_t i = 0; i < kp->ntopics; i++)
    rd_kafka_topic_destroy(kp->topics[i].rkt);
  sea_host->free(kp->topics);
  sea_host->free(kp->ops);
  kp->topics = NULL;
  kp->ops = NULL;
  kp->ntopics = kp->nops = 0;
  kafka_handle_close(&kp->h);
}
