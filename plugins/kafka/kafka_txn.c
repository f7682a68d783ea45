/* kafka_txn.c: transactions room of the kafka backend. Implicit transactions (transactional.id
 * set, no txn_begin: every flush commits the open transaction) and explicit ones (txn_begin,
 * txn_commit, txn_abort, txn_send_offsets with a consumer's positions). The producer room
 * (kafka_producer.c) calls kafka_txn_start/kafka_txn_commit_start/kafka_txn_end_maybe as its
 * receipts arrive; the blocking librdkafka calls run on the pool. */
#include "kafka_internal.h"

/* ---- transactions: init and commit block on the coordinator, so they run on the pool ---- */

enum { JOB_INIT, JOB_COMMIT_IMPLICIT, JOB_COMMIT, JOB_ABORT, JOB_OFFSETS };

typedef struct txn_job {
  kproducer_t *kp;
  int kind;   /* JOB_* */
  int commit; /* a commit (implicit or explicit) */
  int status;
  int aborted;   /* 1: the failed commit was aborted; -1: fatal, the producer cannot go on */
  int retriable; /* the failed call may be tried again */
  sea_op_t *op;  /* JOB_COMMIT, JOB_ABORT, JOB_OFFSETS */
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_consumer_group_metadata_t *cgmd;
  char msg[512];
} txn_job_t;

static void txn_work(void *data) {
  txn_job_t *j = data;
  rd_kafka_t *rk = j->kp->h.rk;
  int tmo = j->kp->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)j->kp->h.timeout_ms;
  rd_kafka_error_t *e;
  switch (j->kind) {
  case JOB_INIT:
    e = rd_kafka_init_transactions(rk, tmo);
    break;
  case JOB_ABORT:
    e = rd_kafka_abort_transaction(rk, tmo);
    break;
  case JOB_OFFSETS:
    e = rd_kafka_send_offsets_to_transaction(rk, j->offsets, j->cgmd, tmo);
    break;
  default:
    e = rd_kafka_commit_transaction(rk, tmo);
    break;
  }
  if (e == NULL)
    return;
  j->retriable = rd_kafka_error_is_retriable(e);
  snprintf(j->msg, sizeof j->msg, "%s", rd_kafka_error_string(e));
  j->status = rd_kafka_error_is_fatal(e) ? SEA_EBACKEND : kafka_err_to_sea(rd_kafka_error_code(e));
  if (j->status == 0)
    j->status = SEA_EBACKEND;
  if (j->commit && rd_kafka_error_txn_requires_abort(e)) {
    rd_kafka_error_t *a = rd_kafka_abort_transaction(rk, tmo);
    j->aborted = a == NULL;
    if (a)
      rd_kafka_error_destroy(a);
  }
  if (rd_kafka_error_is_fatal(e))
    j->aborted = -1; /* the producer cannot go on */
  rd_kafka_error_destroy(e);
}

static void txn_begin(kproducer_t *kp) {
  if (kp->txn_explicit && !kp->begin_pending) {
    kp->txn_state = TXN_IDLE; /* the next one begins with txn_begin */
    return;
  }
  kp->begin_pending = 0;
  kp->txn_base = kp->sent;
  rd_kafka_error_t *e = rd_kafka_begin_transaction(kp->h.rk);
  if (e) {
    char msg[600];
    snprintf(msg, sizeof msg, "kafka: begin transaction: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    kp->txn_state = TXN_FAILED;
    kafka_producer_fail_purge(kp, SEA_EBACKEND, msg);
    return;
  }
  kp->txn_state = TXN_OPEN;
  kafka_schedule_again(&kp->h); /* flushes that came while no transaction was open */
  if (kp->want_ready) {
    kp->want_ready = 0;
    sea_host->producer_ready(kp->p);
  }
}

static void txn_explicit_after(kproducer_t *kp, txn_job_t *j);

static void txn_after(void *data, int status) {
  txn_job_t *j = data;
  kproducer_t *kp = j->kp;
  kp->h.pending_work--;
  if (status && j->status == 0) {
    j->status = SEA_ECANCELED;
    snprintf(j->msg, sizeof j->msg, "canceled");
  }
  if (j->offsets)
    rd_kafka_topic_partition_list_destroy(j->offsets);
  if (j->cgmd)
    rd_kafka_consumer_group_metadata_destroy(j->cgmd);
  if (j->kind >= JOB_COMMIT) {
    if (!kp->h.closed)
      txn_explicit_after(kp, j);
  } else if (!kp->h.closed) {
    char msg[700];
    if (!j->commit) {
      if (j->status) {
        snprintf(msg, sizeof msg, "kafka: init transactions on %s: %s", kp->h.brokers, j->msg);
        kp->txn_state = TXN_FAILED;
        kafka_producer_fail_purge(kp, j->status, msg);
      } else {
        txn_begin(kp);
      }
    } else {
      /* The ops that waited for this commit; later flushes wait for the next one. */
      size_t n = (size_t)kp->txn_ready_ops;
      kop_t *done = NULL;
      if (n) {
        done = sea_host->alloc(n * sizeof *done);
        if (done)
          memcpy(done, kp->ops, n * sizeof *done);
        memmove(kp->ops, kp->ops + n, (kp->nops - n) * sizeof *kp->ops);
        kp->nops -= n;
      }
      kp->txn_ready_ops = 0;
      if (j->status && j->aborted < 0) {
        snprintf(msg, sizeof msg, "kafka: commit transaction: %s", j->msg);
        kp->txn_state = TXN_FAILED;
        kafka_producer_fail_purge(kp, j->status, msg);
      } else if (!kp->failed) {
        txn_begin(kp);
      }
      for (size_t i = 0; done && i < n; i++) {
        if (j->status)
          sea_host->op_done(done[i].op, j->status, "commit transaction%s: %s",
                            j->aborted > 0 ? " (aborted)" : "", j->msg);
        else
          sea_host->op_done(done[i].op, 0, NULL);
      }
      sea_host->free(done);
      if (!kp->h.closed)
        kafka_schedule_again(&kp->h);
    }
  }
  sea_host->free(j);
  kafka_handle_release(&kp->h);
}

static int txn_queue(kproducer_t *kp, txn_job_t *j) {
  kp->h.pending_work++;
  if (sea_host->queue_work(kp->h.rt, txn_work, txn_after, j) != 0) {
    kp->h.pending_work--;
    return SEA_EIO;
  }
  return 0;
}

int kafka_txn_start(kproducer_t *kp, int commit) {
  txn_job_t *j = sea_host->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kp = kp;
  j->commit = commit;
  j->kind = commit ? JOB_COMMIT_IMPLICIT : JOB_INIT;
  kp->h.pending_work++;
  if (sea_host->queue_work(kp->h.rt, txn_work, txn_after, j) != 0) {
    kp->h.pending_work--;
    sea_host->free(j);
    return SEA_EIO;
  }
  return 0;
}

void kafka_txn_commit_start(kproducer_t *kp) {
  /* Every flush whose sends were all delivered rides on this commit. */
  int n = 0;
  while ((size_t)n < kp->nops && kp->receipted >= kp->ops[n].target)
    n++;
  kp->txn_ready_ops = n;
  kp->txn_state = TXN_COMMITTING;
  if (kafka_txn_start(kp, 1) != 0) {
    kp->txn_state = TXN_FAILED;
    kafka_producer_fail_purge(kp, SEA_EIO, "kafka: cannot queue the transaction commit");
  }
}

/* =============================================================================================
 * Explicit transactions (txn_begin/commit/abort/send_offsets). The blocking librdkafka calls
 * run on the pool; a commit or abort first waits for the receipts of its sends, so the flush
 * librdkafka does inside them finds no delivery report to serve off the loop thread.
 * =========================================================================================== */

static int txn_refuse(kproducer_t *kp, const char *what) {
  if (!kp->txn) {
    sea_host->producer_error(kp->p, "this producer is not transactional (set the option "
                                    "transactional.id=ID)");
    return SEA_ESTATE;
  }
  if (kp->failed) {
    sea_host->producer_error(kp->p, "%s", kp->fail_msg);
    return kp->fail_status ? kp->fail_status : SEA_ESTATE;
  }
  if (kp->txn_state == TXN_FAILED) {
    sea_host->producer_error(kp->p, "transactions failed on this producer");
    return SEA_ESTATE;
  }
  (void)what;
  return 0;
}

int kafka_txn_begin(void *impl) {
  kproducer_t *kp = impl;
  int rc = txn_refuse(kp, "txn_begin");
  if (rc)
    return rc;
  switch (kp->txn_state) {
  case TXN_INIT:
  case TXN_COMMITTING: /* begins once transactions are set up / the implicit commit is done */
    if (kp->txn_explicit && kp->begin_pending) {
      sea_host->producer_error(kp->p, "a transaction is already begun");
      return SEA_ESTATE;
    }
    kp->txn_explicit = 1;
    kp->begin_pending = 1;
    return 0;
  case TXN_OPEN:
    if (kp->txn_explicit) {
      sea_host->producer_error(kp->p, "a transaction is already open");
      return SEA_ESTATE;
    }
    /* The implicit transaction opened after setup becomes this one, if nothing is in it. */
    if (kp->sent > kp->txn_base) {
      sea_host->producer_error(kp->p,
                               "%" PRIu64
                               " message(s) were sent before txn_begin and are in an implicit "
                               "transaction: flush (which commits them) before txn_begin",
                               kp->sent - kp->txn_base);
      return SEA_ESTATE;
    }
    kp->txn_explicit = 1;
    return 0;
  case TXN_ENDING:
    sea_host->producer_error(kp->p,
                             "the last transaction is still ending (begin from its callback)");
    return SEA_ESTATE;
  default: /* TXN_IDLE */
    kp->begin_pending = 1;
    txn_begin(kp);
    if (kp->txn_state == TXN_OPEN)
      return 0;
    sea_host->producer_error(kp->p, "%s", kp->fail_msg);
    return SEA_EBACKEND;
  }
}

/* A commit or abort in TXN_ENDING starts once every send has its receipt and no send_offsets
 * runs; a failure of the producer meanwhile fails it. */
void kafka_txn_end_maybe(kproducer_t *kp) {
  if (kp->end_started || kp->end_op == NULL)
    return;
  const char *what = kp->end_abort ? "txn_abort" : "txn_commit";
  if (kp->failed) {
    sea_op_t *op = kp->end_op;
    kp->end_op = NULL;
    kp->txn_state = TXN_FAILED;
    sea_host->op_done(op, kp->fail_status ? kp->fail_status : SEA_EBACKEND, "%s: %s", what,
                      kp->fail_msg);
    return;
  }
  if (kp->receipted < kp->sent || kp->offset_jobs > 0)
    return;
  txn_job_t *j = sea_host->calloc(1, sizeof *j);
  if (j) {
    j->kp = kp;
    j->kind = kp->end_abort ? JOB_ABORT : JOB_COMMIT;
    j->commit = !kp->end_abort;
    j->op = kp->end_op;
  }
  if (j == NULL || txn_queue(kp, j) != 0) {
    sea_host->free(j);
    sea_op_t *op = kp->end_op;
    kp->end_op = NULL;
    kp->txn_state = TXN_OPEN; /* nothing happened: it may be tried again */
    sea_host->op_done(op, SEA_ENOMEM, "%s: cannot queue the call", what);
    return;
  }
  kp->end_started = 1;
}

static void txn_explicit_after(kproducer_t *kp, txn_job_t *j) {
  char msg[700];
  if (j->kind == JOB_OFFSETS) {
    kp->offset_jobs--;
    /* Fatal: the producer fails first, so that the op's callback can tell (sea_producer_error)
     * a producer that cannot go on from a transaction to abort and try again. */
    if (j->aborted < 0) {
      snprintf(msg, sizeof msg, "kafka: send offsets to the transaction: %s", j->msg);
      kp->txn_state = TXN_FAILED;
      kafka_producer_fail_purge(kp, j->status, msg);
    }
    if (j->status)
      sea_host->op_done(j->op, j->status, "txn_send_offsets: %s%s", j->msg,
                        j->aborted < 0 ? " (fatal)" : " (abort the transaction)");
    else
      sea_host->op_done(j->op, 0, NULL);
    kafka_schedule_again(&kp->h); /* an end may have waited for this */
    return;
  }
  const char *what = j->kind == JOB_ABORT ? "txn_abort" : "txn_commit";
  kp->end_op = NULL;
  kp->end_started = 0;
  if (j->status == 0) {
    kp->txn_state = TXN_IDLE;
    sea_host->op_done(j->op, 0, NULL);
  } else if (j->aborted < 0) {
    snprintf(msg, sizeof msg, "kafka: %s: %s", what, j->msg);
    kp->txn_state = TXN_FAILED;
    kafka_producer_fail_purge(kp, j->status, msg); /* first: the op's callback sees it failed */
    sea_host->op_done(j->op, j->status, "%s: %s (fatal)", what, j->msg);
  } else {
    /* A commit that needed an abort was aborted (txn_work); a retriable failure leaves the
     * transaction open to try again. */
    kp->txn_state = j->aborted > 0 || !j->retriable ? TXN_IDLE : TXN_OPEN;
    sea_host->op_done(j->op, j->status, "%s%s: %s", what, j->aborted > 0 ? " (aborted)" : "",
                      j->msg);
  }
  if (kp->want_ready) {
    kp->want_ready = 0;
    sea_host->producer_ready(kp->p); /* a sender waiting gets its answer (a transaction or none) */
  }
}

static int txn_end(kproducer_t *kp, sea_op_t *op, int abort_) {
  const char *what = abort_ ? "txn_abort" : "txn_commit";
  int rc = txn_refuse(kp, what);
  if (rc)
    return rc;
  if (kp->txn_state != TXN_OPEN || !kp->txn_explicit) {
    sea_host->producer_error(kp->p, "no transaction is open (call sea_producer_txn_begin first)");
    return SEA_ESTATE;
  }
  kp->txn_state = TXN_ENDING;
  kp->end_op = op;
  kp->end_abort = abort_;
  kp->end_started = 0;
  kafka_schedule_again(&kp->h); /* the drain starts it once the receipts are in */
  return 0;
}

int kafka_txn_commit(void *impl, sea_op_t *op) {
  return txn_end(impl, op, 0);
}

int kafka_txn_abort(void *impl, sea_op_t *op) {
  return txn_end(impl, op, 1);
}

int kafka_txn_send_offsets(void *impl, void *cimpl, sea_op_t *op) {
  kproducer_t *kp = impl;
  kconsumer_t *kc = cimpl;
  int rc = txn_refuse(kp, "txn_send_offsets");
  if (rc)
    return rc;
  if (kp->txn_state != TXN_OPEN || !kp->txn_explicit) {
    sea_host->producer_error(kp->p, "no transaction is open (call sea_producer_txn_begin first)");
    return SEA_ESTATE;
  }
  if (kc->mode == SEA_MODE_REALTIME) {
    sea_host->producer_error(kp->p,
                             "a realtime consumer has no group to commit for (use mode=resumable "
                             "or load-balanced with a group)");
    return SEA_ESTATE;
  }
  /* What the consumer acked, or, if it acked nothing, everything it delivered. */
  const kposlist_t *pl = kc->acked.n ? &kc->acked : &kc->delivered;
  if (pl->n == 0) {
    sea_host->op_done(op, 0, NULL); /* nothing consumed yet: nothing to commit */
    return 0;
  }
  txn_job_t *j = sea_host->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kp = kp;
  j->kind = JOB_OFFSETS;
  j->op = op;
  j->offsets = rd_kafka_topic_partition_list_new((int)pl->n);
  for (size_t i = 0; i < pl->n; i++)
    rd_kafka_topic_partition_list_add(j->offsets, pl->v[i].key, pl->v[i].partition)->offset =
        pl->v[i].next;
  j->cgmd = rd_kafka_consumer_group_metadata(kc->h.rk);
  if (j->cgmd == NULL || txn_queue(kp, j) != 0) {
    rd_kafka_topic_partition_list_destroy(j->offsets);
    if (j->cgmd)
      rd_kafka_consumer_group_metadata_destroy(j->cgmd);
    sea_host->free(j);
    sea_host->producer_error(kp->p, "cannot get the consumer's group metadata");
    return SEA_EBACKEND;
  }
  kp->offset_jobs++;
  kc->in_txn = 1;
  return 0;
}
