/* pipeline_eos.c: exactly once. Each commit window is one transaction that carries every output's
 * sends and the inputs' positions; the checks and the transactional producer at the start; the
 * aborts and replays after an abortable error or a rebalance. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline_internal.h"

/* Exactly once: windows aborted in a row (each for an abortable error, then replayed) before
 * the pipeline gives up. A successful commit starts the count again. */
#define EOS_RETRIES_MAX 10

/* ---------------------------------------------------------------------------------------------
 * Exactly once: each commit window is one transaction of one producer, which carries the sends
 * of every output and the inputs' positions (send_offsets). A window closes on the commit timer:
 * the processor is not called, what waits in the overflow goes in, every send gets its receipt,
 * the window's last done positions are acknowledged and sent into the transaction, and it is
 * committed; then the next one begins. A clean stop commits the last window, a failure aborts it.
 * ------------------------------------------------------------------------------------------- */

/* Exactly once: remember m as its stream's and shard's last done message of the window. */
int sea__pl_eos_mark(pl_input_t *in, const sea_message_t *m) {
  for (size_t i = 0; i < in->nmarks; i++) {
    if (in->marks[i].key == m->meta.stream_key && in->marks[i].shard == m->meta.shard_id) {
      in->marks[i].pos = m->backend_pos;
      return 0;
    }
  }
  if (in->nmarks == in->capmarks) {
    size_t cap = in->capmarks ? in->capmarks * 2 : 8;
    struct eos_mark *v = sea__realloc(in->marks, cap * sizeof *v);
    if (v == NULL) {
      set_error(in->pl, SEA_ENOMEM, "exactly-once: out of memory tracking positions of %s",
                in->uri);
      sea__pl_begin_stop(in->pl);
      return SEA_ENOMEM;
    }
    in->marks = v;
    in->capmarks = cap;
  }
  in->marks[in->nmarks++] = (struct eos_mark){m->meta.stream_key, m->meta.shard_id, m->backend_pos};
  return 0;
}

static bool same_nodes(const sea_uri_t *a, const sea_uri_t *b) {
  if (a->node_count != b->node_count)
    return false;
  for (size_t i = 0; i < a->node_count; i++)
    if (strcmp(a->nodes[i], b->nodes[i]) != 0)
      return false;
  return true;
}

static void eos_begin(sea_pipeline_t *pl);
static void eos_abort(sea_pipeline_t *pl);

static void eos_rewind(sea_pipeline_t *pl);
static int eos_end_start(sea_pipeline_t *pl, bool abort_);

/* May the window whose transaction met a failure (not fatal: the producer goes on) be aborted
 * and processed again, from the inputs' committed positions? Nothing of an aborted window is
 * visible to read_committed readers and nothing of it is committed, so that costs neither a
 * duplicate nor a message. Not at the stop (nothing would process the window again: a rerun
 * does), nor after EOS_RETRIES_MAX windows in a row; then it says why (false). False without a
 * word if the producer failed (fatal: fenced by a newer instance with the same transactional.id,
 * ...) or was canceled: the caller reports that. */
static bool eos_may_retry(sea_pipeline_t *pl, int status, const char *what) {
  const char *em = sea_producer_errmsg(pl->txo->p);
  if (status == SEA_ECANCELED || pl->status != 0 || sea_producer_error(pl->txo->p) != 0)
    return false;
  if (pl->stopping) {
    set_error(pl, status,
              "exactly-once: %s transaction %s: %s; the last window is aborted: its messages "
              "are not committed, and a rerun processes them again (exactly once)",
              what, pl->txn_id, em);
    return false;
  }
  if (pl->eos_retries >= EOS_RETRIES_MAX) {
    set_error(pl, status,
              "exactly-once: %s transaction %s: %s; gave up after %d windows in a row were "
              "aborted (a rerun resumes from the committed positions, exactly once)",
              what, pl->txn_id, em, EOS_RETRIES_MAX);
    return false;
  }
  pl->eos_retries++;
  sea__log(SEA_LOG_WARN, NULL, "exactly-once: %s transaction %s: %s: %s (%u of %d in a row)", what,
           pl->txn_id, em,
           strcmp(what, "commit of") == 0
               ? "committing it again, or, if it was aborted, processing the window again from "
                 "the committed positions"
               : "the window is aborted and its messages come again from the committed positions",
           pl->eos_retries, EOS_RETRIES_MAX);
  return true;
}

/* A commit or an abort failed, not fatally: commit again if the backend left the transaction
 * open (a retriable failure: a timeout), or replay the window if it aborted it; an abort that
 * failed is tried again. True if it goes on. */
static bool eos_end_again(sea_pipeline_t *pl, int status, bool aborted) {
  if (!eos_may_retry(pl, status, aborted ? "abort of" : "commit of"))
    return false;
  int rc = eos_end_start(pl, aborted);
  if (rc == 0)
    return true;
  if (aborted || rc != SEA_ESTATE)
    return false;
  /* No transaction is open: the backend aborted it (librdkafka: "requires abort"). */
  pl->st.aborts++;
  pl->window_sends = 0;
  pl->counted = pl->window_counted;
  eos_rewind(pl);
  return true;
}

/* The end of a commit or an abort. */
static void after_txn_end(void *data, int status) {
  pl_output_t *o = data;
  sea_pipeline_t *pl = o->pl;
  o->txn_ops--;
  if (pl == NULL) { /* the pipeline was freed while it was out */
    if (!o->stopping && o->txn_ops == 0)
      sea__free(o);
    return;
  }
  pl->commits_out--;
  bool aborted = pl->txn_aborting;
  pl->txn_aborting = false;
  if (status != 0) {
    if (eos_end_again(pl, status, aborted))
      return;
    pl->txn_rebalance = false;
    pl->txn_replay = false;
    if (status != SEA_ECANCELED)
      set_error(pl, status, "exactly-once: %s of transaction %s: %s", aborted ? "abort" : "commit",
                pl->txn_id, sea_producer_errmsg(o->p));
    pl->txn = TXN_ENDED;
    sea__pl_begin_stop(pl);
    sea__pl_maybe_finish(pl);
    return;
  }
  bool rebalance = aborted && pl->txn_rebalance;
  bool replay = aborted && pl->txn_replay;
  pl->txn_rebalance = false;
  pl->txn_replay = false;
  if (aborted) {
    pl->st.aborts++;
  } else {
    pl->st.commits++;
    pl->eos_retries = 0;
  }
  pl->window_sends = 0;
  if (rebalance || replay) {
    pl->counted = pl->window_counted; /* its messages come again: -c counts them once */
    if (pl->cfg.max_count && pl->counted < pl->cfg.max_count && !pl->stop_asked)
      pl->stop_requested = false; /* -c was reached in the aborted window: not yet */
  }
  if ((aborted && !rebalance && !replay) || pl->status != 0 ||
      (pl->stopping && o->of_head == NULL)) {
    pl->txn = TXN_ENDED;
    sea__pl_begin_stop(pl);
    sea__pl_maybe_finish(pl);
    return;
  }
  if (replay) {
    eos_rewind(pl); /* eos_begin once the inputs are back */
    return;
  }
  eos_begin(pl); /* also when stopping with sends that waited: they go into one more */
}

/* Commit (abort) the open transaction; after_txn_end goes on from there. */
static int eos_end_start(sea_pipeline_t *pl, bool abort_) {
  pl_output_t *o = pl->txo;
  pl->txn = TXN_COMMITTING;
  pl->txn_aborting = abort_;
  o->txn_ops++;
  pl->commits_out++;
  int rc = abort_ ? sea_producer_txn_abort(o->p, after_txn_end, o)
                  : sea_producer_txn_commit(o->p, after_txn_end, o);
  if (rc != 0) {
    o->txn_ops--;
    pl->commits_out--;
    pl->txn_aborting = false;
  }
  return rc;
}

static void eos_end(sea_pipeline_t *pl, bool abort_) {
  int rc = eos_end_start(pl, abort_);
  if (rc != 0) {
    pl->txn_rebalance = false;
    pl->txn_replay = false;
    set_error(pl, rc, "exactly-once: %s of transaction %s: %s", abort_ ? "abort" : "commit",
              pl->txn_id, sea_producer_errmsg(pl->txo->p));
    pl->txn = TXN_ENDED; /* closing the producer aborts it */
    sea__pl_begin_stop(pl);
    sea__pl_maybe_finish(pl);
  }
}

static void eos_commit(sea_pipeline_t *pl) {
  eos_end(pl, false);
}

static void eos_abort(sea_pipeline_t *pl) {
  eos_end(pl, true);
}

static void after_offsets(void *data, int status) {
  pl_input_t *in = data;
  sea_pipeline_t *pl = sea__pl_input_op_back(in);
  if (pl == NULL)
    return;
  pl->offsets_out--;
  if (status != 0 && status != SEA_ECANCELED && !pl->txn_replay) {
    /* An abortable error (the group's coordinator moved in a failover, a rebalance fenced the
     * group's generation, a timeout): the window is aborted and replayed. */
    char what[SEA__ERRMSG_MAX];
    snprintf(what, sizeof what, "the positions of %s into", in->uri);
    if (eos_may_retry(pl, status, what))
      pl->txn_replay = true;
    else
      set_error(pl, status, "exactly-once: the positions of %s into transaction %s: %s", in->uri,
                pl->txn_id, sea_producer_errmsg(pl->txo->p));
  }
  if (pl->offsets_out > 0)
    return;
  if (pl->status != 0 || pl->txn_replay)
    eos_abort(pl);
  else
    eos_commit(pl);
}

/* Close the window once nothing of it is on its way: acknowledge, send offsets, commit. */
void sea__pl_eos_progress(sea_pipeline_t *pl) {
  pl_output_t *o = pl->txo;
  if (pl->txn != TXN_DRAINING || o->of_head != NULL || o->inflight > 0)
    return;
  if (pl->status != 0) {
    eos_abort(pl);
    return;
  }
  pl->txn = TXN_COMMITTING;
  bool any = false;
  for (size_t i = 0; i < pl->nin && pl->status == 0; i++) {
    pl_input_t *in = pl->in[i];
    if (!in->dirty)
      continue;
    in->dirty = false;
    for (size_t k = 0; k < in->nmarks; k++) {
      sea_message_t m;
      memset(&m, 0, sizeof m);
      m.meta.stream_key = in->marks[k].key;
      m.meta.shard_id = in->marks[k].shard;
      m.backend_pos = in->marks[k].pos;
      m.meta.seq = in->marks[k].pos;
      int rc = sea_consumer_ack(in->c, &m);
      if (rc != 0) {
        set_error(pl, rc, "exactly-once: input %s: %s", in->uri, sea_consumer_errmsg(in->c));
        break;
      }
    }
    in->nmarks = 0;
    if (pl->status != 0)
      break;
    in->committing = true;
    pl->offsets_out++;
    int rc = sea_producer_txn_send_offsets(o->p, in->c, after_offsets, in);
    if (rc != 0) {
      in->committing = false;
      pl->offsets_out--;
      set_error(pl, rc, "exactly-once: the positions of %s into transaction %s: %s", in->uri,
                pl->txn_id, sea_producer_errmsg(o->p));
      break;
    }
    any = true;
  }
  if (pl->offsets_out > 0)
    return; /* after_offsets commits (or aborts) once the last is in */
  if (pl->status != 0) {
    eos_abort(pl);
    return;
  }
  if (!any && pl->window_sends == 0 && !pl->stopping) {
    pl->txn = TXN_OPEN; /* nothing happened in this window: it goes on */
    sea__pl_process_work(pl);
    return;
  }
  eos_commit(pl);
}

/* Exactly once: a stop that is no failure (-c reached, every input at its end, a stop asked
 * for) first closes the open window as the timer does, not stopping yet, so that an abortable
 * failure of its transaction is still replayed (at the stop nothing would process it again);
 * once it is committed, the work goes on and comes back here with an empty window, and the stop
 * begins. Likewise while a window closes. True: the stop waits. */
bool sea__pl_eos_stop_after_window(sea_pipeline_t *pl) {
  if (pl->txo == NULL || pl->stopping || pl->status != 0)
    return false;
  if (txn_holds(pl))
    return true; /* after_txn_end goes on with the work, which comes back here */
  if (pl->txn != TXN_OPEN)
    return false;
  bool any = pl->window_sends > 0;
  for (size_t i = 0; i < pl->nin && !any; i++)
    any = pl->in[i]->dirty;
  if (!any)
    return false;
  sea__pl_eos_close(pl);
  return true;
}

void sea__pl_eos_close(sea_pipeline_t *pl) {
  if (pl->txn != TXN_OPEN || pl->stopping)
    return;
  pl->txn = TXN_DRAINING;
  sea__pl_eos_progress(pl);
}

static void eos_begin(sea_pipeline_t *pl) {
  pl_output_t *o = pl->txo;
  int rc = sea_producer_txn_begin(o->p);
  if (rc != 0) {
    set_error(pl, rc, "exactly-once: cannot begin a transaction on %s: %s", o->uri,
              sea_producer_errmsg(o->p));
    pl->txn = TXN_ENDED;
    sea__pl_begin_stop(pl);
    sea__pl_maybe_finish(pl);
    return;
  }
  pl->txn = pl->stopping ? TXN_DRAINING : TXN_OPEN;
  pl->window_counted = pl->counted;
  if (o->of_head)
    sea__pl_on_drain(o->p); /* the sends that waited for it: then processing, or the window's end */
  else if (pl->stopping)
    sea__pl_maybe_finish(pl);
  else
    sea__pl_process_work(pl);
}

/* At the stop: true once the last transaction is committed or aborted. */
bool sea__pl_eos_finish(sea_pipeline_t *pl) {
  switch (pl->txn) {
  case TXN_OFF:
  case TXN_ENDED:
    return true;
  case TXN_COMMITTING:
    return false; /* after_txn_end comes back here */
  default:
    break;
  }
  if (pl->status != 0) {
    if (pl->offsets_out == 0)
      eos_abort(pl);
    return pl->txn == TXN_ENDED;
  }
  pl->txn = TXN_DRAINING;
  if (pl->txo->of_head)
    sea__pl_on_drain(pl->txo->p); /* what the processor sent last goes into the last transaction */
  else
    sea__pl_eos_progress(pl);
  return pl->txn == TXN_ENDED;
}

static void eos_drop_input(sea_pipeline_t *pl, pl_input_t *in);

/* A rebalance took partitions from an input. At least once, nothing to do: acks of revoked
 * partitions are refused and their messages go to the new owner (duplicates, not losses).
 * Exactly once (eager protocol): the input resumes from the group's committed positions, so
 * nothing it delivered so far may be processed further or acknowledged, and the open
 * transaction, which holds outputs of those messages, is aborted; the pipeline goes on with the
 * new assignment in a new transaction. A cooperative rebalance that keeps partitions would need
 * their positions moved back: the pipeline stops instead (aborting), and a restart resumes. */
void sea__pl_on_revoke(sea_consumer_t *c, int incremental) {
  pl_input_t *in = sea_consumer_get_data(c);
  sea_pipeline_t *pl = in->pl;
  if (pl == NULL || pl->txo == NULL || pl->done || pl->txn == TXN_ENDED)
    return;
  if (incremental) {
    set_error(pl, SEA_ESTATE,
              "exactly-once: input %s: a cooperative rebalance took some partitions and kept "
              "others; exactly once needs an eager assignor (partition.assignment.strategy=range "
              "or roundrobin)",
              in->uri);
    sea__pl_begin_stop(pl);
    return;
  }
  eos_drop_input(pl, in);
  if (pl->txn == TXN_OPEN || pl->txn == TXN_DRAINING) {
    if (pl->offsets_out > 0)
      return; /* cannot happen outside TXN_COMMITTING; kept for safety */
    pl->txn_rebalance = true;
    eos_abort(pl);
  }
  /* TXN_COMMITTING: the window going out holds outputs and positions of the same messages, all
   * done before the revoke: it may commit (the broker fences it if the group moved on). */
}

/* Exactly once: nothing the input delivered so far is processed further or acknowledged (its
 * partitions went back to the group, or it goes back to its committed positions). Its batches
 * leave the work queue, never processed: their new owner (or this member again) gets them. */
static void eos_drop_input(sea_pipeline_t *pl, pl_input_t *in) {
  pbatch_t **link = &pl->work_head, *last = NULL;
  while (*link) {
    pbatch_t *pb = *link;
    if (pb->in == in) {
      *link = pb->work_next;
      pb->work_next = NULL;
    } else {
      last = pb;
      link = &pb->work_next;
    }
  }
  pl->work_tail = last;
  for (pbatch_t *pb = in->head; pb; pb = pb->in_next) {
    pb->dead = true;
    pb->next_proc = pb->batch->count;
  }
  in->nmarks = 0;
  in->dirty = false;
  /* Sends of its messages still waiting in the overflow never go out. */
  pl_output_t *o = pl->txo;
  overflow_t **ol = &o->of_head, *otail = NULL;
  bool had = o->of_head != NULL;
  while (*ol) {
    overflow_t *ov = *ol;
    if (ov->slot && slot_batch(ov->slot)->in == in) {
      *ol = ov->next;
      ov->slot->pending--;
      sea__pl_overflow_free(ov);
    } else {
      otail = ov;
      ol = &ov->next;
    }
  }
  o->of_tail = otail;
  if (had && o->of_head == NULL)
    pl->blocked--;
  sea__pl_advance_acks(in);
}

static void eos_rewound(sea_pipeline_t *pl) {
  if (pl->status != 0 || pl->stopping || pl->done) {
    pl->txn = TXN_ENDED;
    sea__pl_begin_stop(pl);
    sea__pl_maybe_finish(pl);
    return;
  }
  eos_begin(pl);
}

static void after_rewind(void *data, int status) {
  pl_input_t *in = data;
  sea_pipeline_t *pl = sea__pl_input_op_back(in);
  if (pl == NULL)
    return;
  pl->rewinds_out--;
  if (status != 0 && status != SEA_ECANCELED)
    set_error(pl, status,
              "exactly-once: input %s: back to the committed positions after an aborted "
              "window: %s",
              in->uri, sea_consumer_errmsg(in->c));
  /* Everything delivered until now was read before the rewind: it comes again. */
  eos_drop_input(pl, in);
  if (pl->rewinds_out == 0)
    eos_rewound(pl);
}

/* Exactly once, after a window's transaction was aborted for an abortable error: each input goes
 * back to its group's committed positions (what the aborted window processed, and what was read
 * after it, comes again), then the next transaction begins. An input that had reached its end
 * (-e) goes on to it again. */
static void eos_rewind(sea_pipeline_t *pl) {
  pl->txn = TXN_COMMITTING; /* no processing until the inputs are back */
  for (size_t i = 0; i < pl->nin; i++) {
    pl_input_t *in = pl->in[i];
    if (!in->ack || in->committing)
      continue;
    if (in->ended && sea_consumer_error(in->c) != 0)
      continue; /* failed: the pipeline stops anyway */
    eos_drop_input(pl, in);
    in->committing = true;
    pl->rewinds_out++;
    int rc = sea__consumer_rewind_committed(in->c, after_rewind, in);
    if (rc != 0) {
      in->committing = false;
      pl->rewinds_out--;
      set_error(pl, rc, "exactly-once: input %s: back to the committed positions: %s", in->uri,
                sea_consumer_errmsg(in->c));
      break;
    }
    in->ended = false; /* taken back: it ends again once it is back at its end */
  }
  if (pl->rewinds_out == 0)
    eos_rewound(pl);
}

static void eos_ready(void *data, int status) {
  pl_output_t *o = data;
  sea_pipeline_t *pl = o->pl;
  o->txn_ops--;
  if (pl == NULL) {
    if (!o->stopping && o->txn_ops == 0)
      sea__free(o);
    return;
  }
  if (status != 0) {
    if (status != SEA_ECANCELED)
      set_error(pl, status,
                "exactly-once: the transactional producer (transactional.id=%s) on %s: %s",
                pl->txn_id, o->uri, sea_producer_errmsg(o->p));
    sea__pl_begin_stop(pl);
    sea__pl_maybe_finish(pl);
    return;
  }
  if (pl->stopping || pl->done)
    return;
  pl->txn = TXN_OPEN;
  if (o->of_head)
    sea__pl_on_drain(o->p);
  sea__pl_start_inputs(pl);
}

static int eos_refuse(sea_pipeline_t *pl, const char *fmt, ...) SEA__PRINTF(2, 3);
static int eos_refuse(sea_pipeline_t *pl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_error_v(pl, SEA_EINVAL, fmt, ap);
  va_end(ap);
  return SEA_EINVAL;
}

/* The default transactional.id: the inputs' groups and stream keys, so that a restart of the
 * same processor fences its dead predecessor and aborts what it left open; with a load-balanced
 * input, this host's name too (members on other hosts must not fence each other). */
static void eos_default_id(sea_pipeline_t *pl) {
  char buf[2048];
  size_t len = 0;
  bool lb = false;
#define EOS_PUT(...)                                                                               \
  do {                                                                                             \
    int n_ = snprintf(buf + len, sizeof buf - len, __VA_ARGS__);                                   \
    if (n_ > 0)                                                                                    \
      len = len + (size_t)n_ < sizeof buf ? len + (size_t)n_ : sizeof buf - 1;                     \
  } while (0)
  EOS_PUT("seastreamer");
  for (size_t i = 0; i < pl->nin; i++) {
    const sea_consumer_t *c = pl->in[i]->c;
    EOS_PUT(":%s/", c->args.group ? c->args.group : "-");
    if (c->args.key_count == 0)
      EOS_PUT("*");
    for (size_t k = 0; k < c->args.key_count; k++)
      EOS_PUT("%s%s", k ? "," : "", c->args.keys[k]);
    lb = lb || c->args.mode == SEA_MODE_LOAD_BALANCED;
  }
  if (lb) {
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
      strcpy(host, "localhost");
    EOS_PUT("@%s", host);
  }
#undef EOS_PUT
  if (len < 200) {
    memcpy(pl->txn_id, buf, len + 1);
    return;
  }
  uint64_t h = 1469598103934665603ull; /* FNV-1a of the whole, after a readable prefix */
  for (size_t i = 0; i < len; i++)
    h = (h ^ (uint8_t)buf[i]) * 1099511628211ull;
  snprintf(pl->txn_id, sizeof pl->txn_id, "%.180s~%016llx", buf, (unsigned long long)h);
}

int sea__pl_eos_setup(sea_pipeline_t *pl) {
  if (pl->nin == 0 || pl->nout == 0)
    return eos_refuse(pl, "exactly-once needs at least one input and one output (Kafka)");
  sea_streamer_t *s0 = pl->out[0]->p->s;
  for (size_t i = 0; i < pl->nout; i++) {
    const sea_streamer_t *s = pl->out[i]->p->s;
    const sea_plugin_t *d = &s->plugin->desc;
    if (!(d->caps & SEA_CAP_TRANSACTIONS) || d->producer_txn_begin == NULL ||
        d->producer_txn_send_offsets == NULL)
      return eos_refuse(pl,
                        "exactly-once: output %s cannot take part: the %s backend has no "
                        "transactions (every input and output must be Kafka)",
                        pl->out[i]->uri, d->name);
    if (s->plugin != s0->plugin || !same_nodes(s->uri, s0->uri))
      return eos_refuse(pl,
                        "exactly-once: output %s is not on the cluster of output %s (one "
                        "transaction carries every output)",
                        pl->out[i]->uri, pl->out[0]->uri);
  }
  for (size_t i = 0; i < pl->nin; i++) {
    pl_input_t *in = pl->in[i];
    const sea_streamer_t *s = in->c->s;
    if (s->plugin != s0->plugin)
      return eos_refuse(pl,
                        "exactly-once: input %s cannot take part: the %s backend cannot put its "
                        "positions into a %s transaction (every input and output must be %s)",
                        in->uri, s->plugin->desc.name, s0->plugin->desc.name,
                        s0->plugin->desc.name);
    if (!same_nodes(s->uri, s0->uri))
      return eos_refuse(pl,
                        "exactly-once: input %s is not on the cluster of output %s (its positions "
                        "are committed by that cluster's transaction)",
                        in->uri, pl->out[0]->uri);
    if (sea_consumer_mode(in->c) == SEA_MODE_LOAD_BALANCED && pl->nin > 1)
      return eos_refuse(pl,
                        "exactly-once: input %s is load-balanced: it must be the only input (a "
                        "rebalance aborts the open transaction, which would take the other "
                        "inputs' work with it)",
                        in->uri);
    if (!in->ack)
      return eos_refuse(pl,
                        "exactly-once: input %s keeps no position (mode realtime): give it a "
                        "group (--mode resumable with group=G, or -G GROUP)",
                        in->uri);
  }
  if (pl->cfg.transactional_id && pl->cfg.transactional_id[0]) {
    if (strlen(pl->cfg.transactional_id) >= sizeof pl->txn_id)
      return eos_refuse(pl, "exactly-once: the transactional id is longer than %zu bytes",
                        sizeof pl->txn_id - 1);
    strcpy(pl->txn_id, pl->cfg.transactional_id);
  } else {
    eos_default_id(pl);
  }
  sea_options_t *opts = sea_options_new();
  if (opts == NULL || sea_options_set(opts, "transactional.id", pl->txn_id) != 0) {
    sea_options_free(opts);
    set_error(pl, SEA_ENOMEM, "exactly-once: out of memory");
    return SEA_ENOMEM;
  }
  sea_producer_t *p = NULL;
  int rc = sea_producer_open(s0, opts, &p);
  sea_options_free(opts);
  if (rc != 0) {
    set_error(pl, rc, "exactly-once: cannot open the transactional producer on %s: %s",
              pl->out[0]->uri, sea_runtime_errmsg(pl->rt));
    return rc;
  }
  pl_output_t *o = sea__calloc(1, sizeof *o);
  if (o == NULL) {
    sea_producer_close(p);
    set_error(pl, SEA_ENOMEM, "exactly-once: out of memory");
    return SEA_ENOMEM;
  }
  o->pl = pl;
  o->p = p;
  o->uri = pl->out[0]->uri;
  sea_producer_set_data(p, o);
  sea_producer_set_callbacks(p, sea__pl_on_receipt, sea__pl_on_drain);
  pl->txo = o;
  if ((rc = sea_producer_txn_begin(p)) != 0) {
    set_error(pl, rc, "exactly-once: cannot begin a transaction (transactional.id=%s) on %s: %s",
              pl->txn_id, o->uri, sea_producer_errmsg(p));
    return rc;
  }
  /* The inputs start once the transaction is open (eos_ready): by then a predecessor with this
   * transactional.id has been fenced and what it left is committed or aborted, so the inputs'
   * committed positions are final when they are read. */
  o->txn_ops++;
  if ((rc = sea_producer_flush(p, eos_ready, o)) != 0) {
    o->txn_ops--;
    set_error(pl, rc, "exactly-once: %s: %s", o->uri, sea_producer_errmsg(p));
    return rc;
  }
  return 0;
}
