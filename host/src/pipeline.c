/* pipeline.c: the one place that decides when an input message is done (docs/delivery.md):
 * consume → process → produce → acknowledge → commit, with backpressure from the outputs to the
 * inputs, error policies, dead-letters, a bounded count and an orderly stop.
 *
 * Bookkeeping. Every consumed batch is kept (retained) in a `pbatch` until each of its messages
 * is acknowledged. A message has a slot whose `pending` counts what still holds it: the processor
 * call that handles it, and each of its sends until their receipts. Messages are acknowledged in
 * the order their input delivered them: the input's acknowledgement cursor stops at the first
 * message that is not processed or still held, so a position is never committed past a message
 * that is not done, whatever order receipts come back in.
 *
 * Joined (cfg.join): batches do not go to the work FIFO; their messages go to the join
 * (join.c), which hands them out in timestamp order across inputs, keys and shards, so an
 * input's messages may be processed out of its delivery order. Each slot then holds one more
 * count until it is processed, and the acknowledgement cursor runs over the whole batch: it stops
 * at the first message not processed just as well, without next_proc. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "join.h"

#define COMMIT_EVERY_MS_DEFAULT 1000
#define JOIN_WAIT_MS_DEFAULT 1000
#define JOIN_MAX_BUFFERED_DEFAULT 100000
/* The last commit, refused while the group's coordinator moves (SEA_EBUSY), is tried again after
 * 100 ms, 200 ms, ... (at most 2 s apart), this many times: about 25 s of waiting, past a Kafka
 * coordinator's failover (the broker's session timeout, 9 s by default, and the new one's load). */
#define LAST_COMMIT_TRIES 16
#define LAST_COMMIT_BACKOFF_MAX_MS 2000
/* Exactly once: windows aborted in a row (each for an abortable error, then replayed) before
 * the pipeline gives up. A successful commit starts the count again. */
#define EOS_RETRIES_MAX 10

typedef struct pbatch pbatch_t;
typedef struct pl_input pl_input_t;

/* A message's slot; a send's token. Its batch is found from its index (8 bytes a message). */
typedef struct slot {
  uint32_t i;       /* index in the batch */
  uint32_t pending; /* the processor call and the sends still waiting for receipts */
} slot_t;

struct pbatch {
  const sea_batch_t *batch;
  pl_input_t *in;
  size_t next_proc;     /* next message to hand to the processor */
  size_t next_ack;      /* next message to acknowledge */
  bool dead;            /* exactly once: a rebalance revoked its input: never acknowledged */
  pbatch_t *in_next;    /* the input's FIFO: acknowledgement order */
  pbatch_t *work_next;  /* the pipeline's FIFO of batches with messages still to process */
  sea__jnode_t *jnodes; /* joined: one node a message, after the slots */
  slot_t slots[];
};

static inline pbatch_t *slot_batch(slot_t *s) {
  return (pbatch_t *)((char *)(s - s->i) - offsetof(pbatch_t, slots));
}

struct pl_input {
  sea_pipeline_t *pl;
  size_t index;
  sea_consumer_t *c;
  const char *uri;
  pbatch_t *head, *tail;
  bool ack; /* the input keeps positions: acknowledge and commit */
  bool started, ended, paused;
  bool dirty; /* acknowledged since the last commit */
  bool committing;
  uint64_t msgs, bytes; /* handed to the processor (metrics: stats.processed, bytes_in by input) */
  /* Exactly once: the last done position of each stream and shard since the window's start,
   * acknowledged only as the window closes (right before send_offsets), so nothing done in a
   * window that is then aborted is ever acknowledged to the backend. */
  struct eos_mark {
    const char *key;
    uint64_t shard;
    uint64_t pos;
  } * marks;
  size_t nmarks, capmarks;
};

/* A send that met a full output: kept (the message's block retained) until the output drains. */
typedef struct overflow {
  sea_message_t m;
  unsigned flags;
  slot_t *slot;
  struct overflow *next;
} overflow_t;

typedef struct pl_output {
  sea_pipeline_t *pl;
  sea_producer_t *p;
  const char *uri;
  overflow_t *of_head, *of_tail;
  bool stopped;      /* flushed or ended at stop */
  bool stopping;     /* its flush or end is under way */
  int txn_ops;       /* exactly once: its transaction operation out (the callback frees it late) */
  uint64_t inflight; /* sends without a receipt yet */
  uint64_t sent, bytes, receipted; /* metrics: stats.sent, bytes_out, receipted by output */
} pl_output_t;

/* Exactly once: the state of the transaction of the current commit window. */
enum {
  TXN_OFF = 0,    /* not exactly once, or not begun */
  TXN_OPEN,       /* sends go into it; the processor runs */
  TXN_DRAINING,   /* window closing: no processor call; the overflow goes in, receipts come */
  TXN_COMMITTING, /* offsets and commit (or abort) out: sends wait in the overflow */
  TXN_ENDED       /* the last one committed or aborted: the pipeline is finishing */
};

struct sea_pipeline {
  sea_runtime_t *rt;
  sea_pipeline_config_t cfg;
  pl_input_t **in;
  size_t nin, capin;
  pl_output_t **out;
  size_t nout, capout;
  pbatch_t *work_head, *work_tail;
  slot_t *cur; /* sends made now belong to this message (NULL: to none) */
  bool in_call;
  size_t blocked; /* outputs holding an overflow */
  bool started, stopping, stop_requested, flushed, finishing, done;
  bool stop_asked;            /* sea_pipeline_stop was called (a signal, out:stop(), the user) */
  unsigned processing;        /* nesting guard of process_work */
  int flushing;               /* outputs still flushing or ending */
  int commits_out;            /* commits in flight (a last commit waiting to be tried again too) */
  unsigned last_commit_tries; /* the last commit: refusals in a row while the coordinator moved */
  bool commit_backoff;        /* the last commit waits on the timer to be tried again */
  int status;
  uv_timer_t *timer; /* the commit timer, freed in its close callback */
  uint64_t commit_every_ms;
  uint64_t commit_due_ns; /* when the commit timer is due (uv_hrtime), 0 = no timer */
  uv_idle_t *resume;      /* process_work goes on once the loop ran a due commit */
  uint32_t ncalls;        /* processor calls, for the commit-due check every 64 */
  bool yielded;
  pl_output_t *txo;   /* exactly once: the transactional producer every output's sends go through */
  int txn;            /* TXN_* */
  int offsets_out;    /* send_offsets in flight */
  bool txn_aborting;  /* the transaction operation out is an abort */
  bool txn_rebalance; /* that abort is for a rebalance: the pipeline goes on */
  bool txn_replay;    /* that abort is for an abortable error: the inputs go back, it goes on */
  unsigned eos_retries;    /* windows aborted for abortable errors in a row (EOS_RETRIES_MAX) */
  int rewinds_out;         /* inputs going back to their committed positions */
  uint64_t counted;        /* messages processed toward -c (cfg.max_count), less what came again */
  uint64_t window_counted; /* counted when the open transaction began */
  uint64_t window_sends;   /* sends into the open transaction */
  char txn_id[256];
  sea__join_t *join;  /* joined: the messages waiting for their turn */
  uv_timer_t *jtimer; /* joined: the wait rule's wake-up, freed in its close callback */
  size_t join_max;    /* joined: at this many buffered, the inputs that hold some pause */
  sea_pipeline_stats_t st;
  sea__stats_t *stats; /* sea_pipeline_report_stats: its lines (stats.c) */
  char errmsg[SEA__ERRMSG_MAX];
  char why[SEA__ERRMSG_MAX]; /* the processor's reason for its last rejection */
  size_t reject_n;           /* sea_pipeline_reject_first: how many it rejects (0: all) */
};

static void begin_stop(sea_pipeline_t *pl);
static void process_work(sea_pipeline_t *pl);
static void maybe_finish(sea_pipeline_t *pl);
static void eos_close(sea_pipeline_t *pl);
static void eos_progress(sea_pipeline_t *pl);
static void on_drain(sea_producer_t *p);
static void on_commit_timer(uv_timer_t *t);
static bool eos_stop_after_window(sea_pipeline_t *pl);

/* Exactly once: no processor call while a window closes (its sends would miss the commit). */
static inline bool txn_holds(const sea_pipeline_t *pl) {
  return pl->txn == TXN_DRAINING || pl->txn == TXN_COMMITTING;
}

static void set_error_v(sea_pipeline_t *pl, int status, const char *fmt, va_list ap) {
  if (pl->status != 0)
    return; /* the first failure is the cause */
  /* A failure is never the end of a stream: SEA_EOF here would read as a clean exit. */
  pl->status = status < 0 && status != SEA_EOF ? status : SEA_EIO;
  sea__vfmt(pl->errmsg, sizeof pl->errmsg, fmt, ap);
}

static void set_error(sea_pipeline_t *pl, int status, const char *fmt, ...) SEA__PRINTF(3, 4);
static void set_error(sea_pipeline_t *pl, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_error_v(pl, status, fmt, ap);
  va_end(ap);
}

static const char *uri_of(sea_streamer_t *s) {
  const sea_uri_t *u = sea_streamer_uri(s);
  return u && u->raw ? u->raw : "?";
}

/* ---------------------------------------------------------------------------------------------
 * Acknowledgement and commits
 * ------------------------------------------------------------------------------------------- */

static void pbatch_free(pbatch_t *pb) {
  sea_batch_release(pb->batch);
  sea__free(pb);
}

/* Exactly once: remember m as its stream's and shard's last done message of the window. */
static int eos_mark(pl_input_t *in, const sea_message_t *m) {
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
      begin_stop(in->pl);
      return SEA_ENOMEM;
    }
    in->marks = v;
    in->capmarks = cap;
  }
  in->marks[in->nmarks++] = (struct eos_mark){m->meta.stream_key, m->meta.shard_id, m->backend_pos};
  return 0;
}

/* Acknowledge, in delivery order, every message that is processed and no longer held. */
static void advance_acks(pl_input_t *in) {
  sea_pipeline_t *pl = in->pl;
  while (in->head) {
    pbatch_t *pb = in->head;
    if (pb->dead) {
      /* Resumed elsewhere: nothing of it is acknowledged; freed once no send holds it. */
      while (pb->next_ack < pb->batch->count && pb->slots[pb->next_ack].pending == 0)
        pb->next_ack++;
    }
    while (pb->next_ack < pb->next_proc && pb->slots[pb->next_ack].pending == 0) {
      const sea_message_t *m = &pb->batch->msgs[pb->next_ack];
      if (in->ack && (pl->txo ? eos_mark(in, m) : sea_consumer_ack(in->c, m)) == 0)
        in->dirty = true;
      pb->next_ack++;
      pl->st.done++;
    }
    if (pb->next_ack < pb->batch->count)
      return;
    in->head = pb->in_next;
    if (in->head == NULL)
      in->tail = NULL;
    pbatch_free(pb);
  }
}

/* A commit refused while the group's coordinator moves (SEA_EBUSY): nothing is lost, the same
 * positions are committed again. A timer commit leaves it to the next tick; the last commit
 * (the pipeline is finishing, nothing will tick) is tried again with a bounded backoff, and
 * only then reported as failed. False: give up. */
static bool commit_again(sea_pipeline_t *pl, pl_input_t *in) {
  in->dirty = true;
  if (!pl->finishing) {
    sea__log(SEA_LOG_WARN, NULL, "commit on %s not done (%s): the next commit tries again", in->uri,
             sea_consumer_errmsg(in->c));
    return true;
  }
  if (pl->last_commit_tries >= LAST_COMMIT_TRIES || pl->timer == NULL)
    return false;
  uint64_t ms = 100u << (pl->last_commit_tries < 5 ? pl->last_commit_tries : 5);
  if (ms > LAST_COMMIT_BACKOFF_MAX_MS)
    ms = LAST_COMMIT_BACKOFF_MAX_MS;
  pl->last_commit_tries++;
  sea__log(SEA_LOG_WARN, NULL,
           "last commit on %s not done (%s): trying again in %llu ms (%u of %d)", in->uri,
           sea_consumer_errmsg(in->c), (unsigned long long)ms, pl->last_commit_tries,
           LAST_COMMIT_TRIES);
  if (!pl->commit_backoff) {
    pl->commit_backoff = true;
    pl->commits_out++; /* the pipeline is not done while a commit waits to be tried again */
    uv_ref((uv_handle_t *)pl->timer);
    uv_timer_start(pl->timer, on_commit_timer, ms, 0);
  }
  return true;
}

static void after_commit(void *data, int status) {
  pl_input_t *in = data;
  sea_pipeline_t *pl = in->pl;
  in->committing = false;
  if (pl == NULL) { /* the pipeline was freed while the commit was out */
    sea__free(in);
    return;
  }
  pl->commits_out--;
  if (status == 0) {
    pl->st.commits++;
    if (pl->finishing)
      pl->last_commit_tries = 0; /* each input's last commit has its own tries */
  } else if (status == SEA_EBUSY && commit_again(pl, in)) {
    /* tried again: by the next tick, or by the backoff timer */
  } else if (status == SEA_EBUSY) {
    set_error(pl, status,
              "commit on %s: %s; gave up after %d tries: what was done since the last commit is "
              "delivered again after a restart (duplicates, nothing lost)",
              in->uri, sea_consumer_errmsg(in->c), LAST_COMMIT_TRIES + 1);
  } else if (status != SEA_ECANCELED) {
    set_error(pl, status, "commit on %s: %s", in->uri, sea_consumer_errmsg(in->c));
  }
  maybe_finish(pl);
}

static void commit_all(sea_pipeline_t *pl) {
  if (pl->commit_backoff)
    return; /* the backoff timer commits */
  for (size_t i = 0; i < pl->nin; i++) {
    pl_input_t *in = pl->in[i];
    if (!in->dirty || in->committing)
      continue;
    in->dirty = false;
    in->committing = true;
    pl->commits_out++;
    int rc = sea_consumer_commit(in->c, after_commit, in);
    if (rc != 0) {
      in->committing = false;
      pl->commits_out--;
      set_error(pl, rc, "commit on %s: %s", in->uri, sea_consumer_errmsg(in->c));
    }
  }
}

static void on_commit_timer(uv_timer_t *t) {
  sea_pipeline_t *pl = t->data;
  if (pl == NULL)
    return;
  if (pl->finishing) {
    if (pl->commit_backoff) { /* the last commit, once more */
      pl->commit_backoff = false;
      pl->commits_out--;
      uv_unref((uv_handle_t *)t);
      maybe_finish(pl);
    }
    return;
  }
  pl->commit_due_ns = uv_hrtime() + pl->commit_every_ms * 1000000u;
  if (pl->txo)
    eos_close(pl);
  else
    commit_all(pl);
}

/* ---------------------------------------------------------------------------------------------
 * Outputs
 * ------------------------------------------------------------------------------------------- */

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  pl_output_t *o = sea_producer_get_data(p);
  sea_pipeline_t *pl = o->pl;
  slot_t *s = token;
  if (o->inflight > 0)
    o->inflight--;
  if (status == 0) {
    pl->st.receipted++;
    o->receipted++;
  } else if (status != SEA_ECANCELED) {
    const char *em = sea_producer_errmsg(p);
    if (s != NULL) {
      pbatch_t *pb = slot_batch(s);
      const sea_message_t *m = &pb->batch->msgs[s->i];
      set_error(pl, status, "output %s rejected the message for %s | %llu of %s: %s", o->uri,
                m->meta.stream_key, (unsigned long long)m->meta.seq, pb->in->uri,
                em && em[0] ? em : sea_strerror(status));
    } else {
      set_error(pl, status, "output %s rejected a message: %s", o->uri,
                em && em[0] ? em : sea_strerror(status));
    }
    begin_stop(pl);
  }
  /* A send that failed keeps its message's hold for good: neither it nor anything its input
   * delivered after it is acknowledged. */
  if (s != NULL && status == 0 && --s->pending == 0)
    advance_acks(slot_batch(s)->in);
  if (o == pl->txo && pl->txn == TXN_DRAINING)
    eos_progress(pl);
}

/* Send now; the slot's hold is taken first, since a backend may give the receipt inside. */
static inline int send_now(pl_output_t *o, const sea_message_t *m, unsigned flags, slot_t *slot) {
  if (slot)
    slot->pending++;
  int rc = sea__producer_send_flags(o->p, m, flags ? SEA_SEND_KEEP_META : 0, slot);
  if (rc == 0) {
    o->pl->st.sent++;
    o->pl->st.bytes_out += m->payload.len;
    o->sent++;
    o->bytes += m->payload.len;
    o->inflight++;
    o->pl->window_sends++;
  } else if (slot)
    slot->pending--;
  return rc;
}

static void overflow_free(overflow_t *ov) {
  sea_block_unref(ov->m.payload.block);
  sea__free(ov);
}

/* Keep a copy of m that outlives the caller: share its block, or copy what has none. */
static overflow_t *overflow_new(const sea_message_t *m) {
  overflow_t *ov;
  if (m->payload.block != NULL) {
    ov = sea__calloc(1, sizeof *ov);
    if (ov == NULL)
      return NULL;
    ov->m = *m;
    sea_block_ref(m->payload.block);
    return ov;
  }
  /* No block: payload, key and headers (names and values) go into one new block. */
  size_t need = m->payload.len + m->key_len + m->header_count * sizeof(sea_kv_t);
  for (size_t i = 0; i < m->header_count; i++)
    need += m->headers[i].name_len + m->headers[i].value_len;
  sea_block_t *b = sea_block_new(need ? need : 1);
  ov = sea__calloc(1, sizeof *ov);
  if (b == NULL || ov == NULL) {
    sea_block_unref(b);
    sea__free(ov);
    return NULL;
  }
  uint8_t *base = sea_block_data(b), *w = base;
  ov->m = *m;
  sea_kv_t *kv = (sea_kv_t *)w; /* the block's memory is aligned for any type */
  w += m->header_count * sizeof(sea_kv_t);
  for (size_t i = 0; i < m->header_count; i++) {
    kv[i] = m->headers[i];
    memcpy(w, m->headers[i].name, m->headers[i].name_len);
    kv[i].name = (const char *)w;
    w += m->headers[i].name_len;
    if (m->headers[i].value != NULL) {
      memcpy(w, m->headers[i].value, m->headers[i].value_len);
      kv[i].value = w;
      w += m->headers[i].value_len;
    }
  }
  ov->m.headers = m->header_count ? kv : NULL;
  if (m->key != NULL) {
    memcpy(w, m->key, m->key_len);
    ov->m.key = w;
    w += m->key_len;
  }
  if (m->payload.len)
    memcpy(w, m->payload.data, m->payload.len);
  ov->m.payload.data = w;
  ov->m.payload.block = b;
  return ov;
}

static void on_drain(sea_producer_t *p) {
  pl_output_t *o = sea_producer_get_data(p);
  sea_pipeline_t *pl = o->pl;
  if (o->of_head == NULL)
    return; /* drained already (exactly once drains its producer itself when a transaction
               begins; the producer's own drain may follow) */
  if (pl->txn == TXN_COMMITTING || pl->txn == TXN_ENDED)
    return; /* no transaction takes sends now: the next one gets them */
  if (pl->stopping && !(o == pl->txo && pl->status == 0))
    return; /* what is still in the overflow stays unsent, and its messages unacknowledged (with
               exactly once, a clean stop sends it into the last transaction) */
  while (o->of_head) {
    overflow_t *ov = o->of_head;
    int rc = send_now(o, &ov->m, ov->flags, ov->slot);
    if (rc == SEA_EAGAIN)
      return;
    if (ov->slot)
      ov->slot->pending--; /* the hold taken when it was queued */
    if (rc != 0) {
      /* Not sent: its message must never count as done. */
      if (ov->slot)
        ov->slot->pending++;
      set_error(pl, rc, "output %s: %s", o->uri, sea_producer_errmsg(p));
      begin_stop(pl);
    }
    o->of_head = ov->next;
    overflow_free(ov);
  }
  o->of_tail = NULL;
  pl->blocked--;
  if (pl->txn == TXN_DRAINING)
    eos_progress(pl);
  else if (pl->blocked == 0 && !pl->stopping)
    process_work(pl);
  else if (pl->stopping)
    maybe_finish(pl);
}

int sea_pipeline_send(sea_pipeline_t *pl, size_t output, const sea_message_t *m, unsigned flags) {
  if (pl == NULL || m == NULL || output >= pl->nout)
    return SEA_EINVAL;
  if (pl->done || pl->finishing)
    return SEA_ESTATE;
  pl_output_t *o = pl->out[output];
  sea_message_t routed;
  if (pl->txo) {
    /* Exactly once: every output's sends go into the one transaction, to that output's key. */
    if (m->meta.stream_key == NULL && o->p->anchor != pl->txo->p->anchor) {
      if (o->p->anchor == NULL)
        return SEA_EKEY; /* as that output would: it names no stream key, nor does m */
      routed = *m;
      routed.meta.stream_key = o->p->anchor;
      m = &routed;
    }
    o = pl->txo;
  }
  if (o->stopped)
    return SEA_ESTATE;
  slot_t *slot = pl->in_call ? pl->cur : NULL;
  if (o->of_head == NULL && pl->txn != TXN_COMMITTING) {
    int rc = send_now(o, m, flags, slot);
    if (rc != SEA_EAGAIN)
      return rc;
  }
  overflow_t *ov = overflow_new(m);
  if (ov == NULL)
    return SEA_ENOMEM;
  ov->flags = flags;
  ov->slot = slot;
  if (slot)
    slot->pending++; /* held until it is really sent */
  if (o->of_tail) {
    o->of_tail->next = ov;
  } else {
    o->of_head = ov;
    pl->blocked++;
  }
  o->of_tail = ov;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Processing
 * ------------------------------------------------------------------------------------------- */

static int reject_v(sea_pipeline_t *pl, size_t n, const char *fmt, va_list ap) {
  sea__vfmt(pl->why, sizeof pl->why, fmt, ap);
  pl->reject_n = n;
  return SEA_EINVAL;
}

int sea_pipeline_reject(sea_pipeline_t *pl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = reject_v(pl, 0, fmt, ap);
  va_end(ap);
  return rc;
}

int sea_pipeline_reject_first(sea_pipeline_t *pl, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = reject_v(pl, n, fmt, ap);
  va_end(ap);
  return rc;
}

/* Apply the error policy to count messages from first. Returns true to go on. */
static bool apply_policy(sea_pipeline_t *pl, pbatch_t *pb, size_t first, size_t count, int rc) {
  const sea_message_t *m = &pb->batch->msgs[first];
  const char *why = pl->why[0] ? pl->why : sea_strerror(rc);
  switch (pl->cfg.on_error) {
  case SEA_ON_ERROR_STOP:
    set_error(pl, rc, "%s\n  at message %s | %llu of %s (not committed, nor anything after it)",
              why, m->meta.stream_key, (unsigned long long)m->meta.seq, pb->in->uri);
    return false;
  case SEA_ON_ERROR_SKIP:
    for (size_t k = first; k < first + count; k++)
      if (pl->cfg.on_skipped)
        pl->cfg.on_skipped(pl, pb->in->index, &pb->batch->msgs[k], why, pl->cfg.data);
    pl->st.skipped += count;
    return true;
  case SEA_ON_ERROR_DEAD_LETTER: {
    pl_output_t *dead = pl->out[pl->cfg.dead_letter];
    for (size_t k = first; k < first + count; k++) {
      sea_message_t dm = pb->batch->msgs[k];
      if (sea_producer_anchored(dead->p) != NULL)
        dm.meta.stream_key = NULL;
      pl->cur = &pb->slots[k];
      int src = sea_pipeline_send(pl, pl->cfg.dead_letter, &dm, 0);
      if (src != 0) {
        set_error(pl, src,
                  "%s\n  at message %s | %llu of %s, which the dead-letter output %s refused: %s",
                  why, dm.meta.stream_key ? dm.meta.stream_key : m->meta.stream_key,
                  (unsigned long long)pb->batch->msgs[k].meta.seq, pb->in->uri, dead->uri,
                  sea_producer_errmsg(dead->p)[0] ? sea_producer_errmsg(dead->p)
                                                  : sea_strerror(src));
        return false;
      }
      if (pl->cfg.on_skipped)
        pl->cfg.on_skipped(pl, pb->in->index, &pb->batch->msgs[k], why, pl->cfg.data);
    }
    pl->st.skipped += count;
    return true;
  }
  }
  return false;
}

/* An output failed (its producer has an error): that stops the pipeline whatever the policy,
 * with the output's error as the cause. */
static bool output_failed(sea_pipeline_t *pl) {
  for (size_t i = 0; i < pl->nout; i++) {
    sea_producer_t *p = pl->out[i]->p;
    if (sea_producer_error(p) != 0) {
      set_error(pl, sea_producer_error(p), "output %s: %s", pl->out[i]->uri,
                sea_producer_errmsg(p));
      return true;
    }
  }
  return false;
}

/* Hand [first, first+count) of pb to the processor. Returns how many it handled (the rest are
 * handed again), or 0 if the pipeline must stop without counting them as processed. */
static size_t call_processor(sea_pipeline_t *pl, pbatch_t *pb, size_t first, size_t count) {
  slot_t *hold = &pb->slots[first]; /* a batch call's sends hold its first message: in-order
                                       acknowledgement then holds the rest too */
  hold->pending++;
  pl->cur = hold;
  pl->in_call = true;
  pl->why[0] = '\0';
  pl->reject_n = 0;
  int rc = pl->cfg.process(pl, pb->in->index, pb->batch, first, count, pl->cfg.data);
  pl->in_call = false;
  size_t handled = count;
  if (rc > 0 && (size_t)rc < count) {
    handled = (size_t)rc;
  } else if (rc < 0 && !output_failed(pl)) {
    if (pl->reject_n > 0 && pl->reject_n < count)
      handled = pl->reject_n; /* the rest are handed again */
    pl->in_call = true;       /* dead-letters belong to the messages */
    if (!apply_policy(pl, pb, first, handled, rc))
      handled = 0;
    pl->in_call = false;
  } else if (rc < 0) {
    handled = 0; /* an output failed: no policy skips what it could not take */
  }
  pl->cur = NULL;
  hold->pending--;
  return handled;
}

static void on_resume(uv_idle_t *h) {
  sea_pipeline_t *pl = h->data;
  uv_idle_stop(h);
  if (pl != NULL && !pl->done)
    process_work(pl);
}

static void on_join_timer(uv_timer_t *t) {
  sea_pipeline_t *pl = t->data;
  if (pl != NULL && !pl->done)
    process_work(pl);
}

/* A processor call handled n messages of pb from first: count them (and their payload bytes). True
 * when the processing loop must pause here: a stop (-c reached now, as the next message may never
 * come, or asked for), or a commit that fell due (a backlog is processed in one go; a due commit
 * runs between two calls, the loop running its timers before this goes on, so commits keep their
 * interval). */
static bool count_call(sea_pipeline_t *pl, pbatch_t *pb, size_t first, size_t n) {
  uint64_t bytes = 0;
  for (size_t k = first; k < first + n; k++)
    bytes += pb->batch->msgs[k].payload.len;
  pl->st.processed += n;
  pl->counted += n;
  pl->st.bytes_in += bytes;
  pb->in->msgs += n;
  pb->in->bytes += bytes;
  if (pl->cfg.max_count && pl->counted >= pl->cfg.max_count)
    pl->stop_requested = true;
  if (pl->stop_requested)
    return true;
  if (pl->commit_due_ns && (pl->cfg.per_batch || (++pl->ncalls & 63) == 0) &&
      uv_hrtime() >= pl->commit_due_ns) {
    pl->yielded = true;
    return true;
  }
  return false;
}

/* Joined: hand the processor what the join releases, one message a call, or with per_batch the
 * longest run of consecutive messages of one batch that the join releases in a row. */
static void join_work(sea_pipeline_t *pl) {
  sea__join_t *j = pl->join;
  uint64_t wake = 0;
  while (!pl->stopping && pl->blocked == 0) {
    uint64_t left = pl->cfg.max_count ? pl->cfg.max_count - pl->counted : UINT64_MAX;
    if (left == 0) {
      pl->stop_requested = true;
      break;
    }
    uint64_t now = uv_hrtime();
    sea__jnode_t *n = sea__join_peek(j, now, &wake);
    if (n == NULL)
      break;
    sea__join_pop(j);
    pbatch_t *pb = n->owner;
    size_t first = n->i, count = 1;
    while (pl->cfg.per_batch && count < left) {
      uint64_t unused;
      sea__jnode_t *x = sea__join_peek(j, now, &unused);
      if (x == NULL || x->owner != pb || x->i != first + count)
        break;
      sea__join_pop(j);
      count++;
    }
    size_t handled = call_processor(pl, pb, first, count);
    if (handled == 0) {
      begin_stop(pl); /* they stay held: never acknowledged */
      break;
    }
    for (size_t k = first + count; k-- > first + handled;)
      sea__join_putback(j, &pb->jnodes[k]); /* handed again, first of all */
    for (size_t k = first; k < first + handled; k++) {
      sea__join_released(j, &pb->jnodes[k]);
      pb->slots[k].pending--; /* processed */
    }
    bool pause = count_call(pl, pb, first, handled);
    advance_acks(pb->in); /* may free pb */
    if (pause)
      break;
  }
  /* Nothing may go yet: the wait rule wakes the join up (new input or an end may come first). */
  if (wake != 0 && !pl->stopping && !pl->stop_requested) {
    uint64_t now = uv_hrtime();
    uint64_t ms = wake > now ? (wake - now + 999999u) / 1000000u : 0;
    uv_timer_start(pl->jtimer, on_join_timer, ms, 0);
  }
}

/* Joined: the buffer is full and this input holds part of it (the inputs that hold nothing are
 * what the join waits for: they go on). */
static inline bool join_holds(const sea_pipeline_t *pl, const pl_input_t *in) {
  return sea__join_buffered(pl->join) >= pl->join_max &&
         sea__join_input_buffered(pl->join, (uint32_t)in->index) > 0;
}

static void process_work(sea_pipeline_t *pl) {
  if (pl->processing)
    return; /* a callback of the processor's own sends: the running loop goes on */
  pl->processing++;
  if (pl->join && !txn_holds(pl))
    join_work(pl);
  /* (stop_requested: exactly once, a stop waits for the open window's commit; nothing more is
   * processed meanwhile) */
  while (pl->work_head && !pl->stopping && !pl->stop_requested && pl->blocked == 0 &&
         !txn_holds(pl)) {
    pbatch_t *pb = pl->work_head;
    size_t count = pb->batch->count;
    while (pb->next_proc < count && !pl->stopping && pl->blocked == 0 && !txn_holds(pl)) {
      uint64_t left = pl->cfg.max_count ? pl->cfg.max_count - pl->counted : UINT64_MAX;
      if (left == 0) {
        pl->stop_requested = true;
        break;
      }
      size_t first = pb->next_proc;
      size_t n = pl->cfg.per_batch ? count - first : 1;
      if (n > left)
        n = (size_t)left;
      if ((n = call_processor(pl, pb, first, n)) == 0) {
        begin_stop(pl);
        break;
      }
      pb->next_proc = first + n;
      if (count_call(pl, pb, first, n))
        break;
    }
    if (pl->stopping && pl->status != 0)
      break;
    bool finished = pb->next_proc == count;
    pbatch_t *next = pb->work_next;
    advance_acks(pb->in); /* may free pb, once it is finished */
    if (!finished)
      break; /* blocked, stopping or yielding: a drain, the stop or the resume goes on here */
    pl->work_head = next;
    if (pl->work_head == NULL)
      pl->work_tail = NULL;
    if (pl->stop_requested || pl->yielded)
      break;
  }
  pl->processing--;
  if (pl->stop_requested || pl->stopping) {
    pl->yielded = false;
    if (!eos_stop_after_window(pl))
      begin_stop(pl);
    return;
  }
  if (pl->yielded) {
    pl->yielded = false;
    uv_idle_start(pl->resume, on_resume);
    return;
  }
  if (txn_holds(pl))
    return; /* a window closes: its transaction's end goes on with the work (inputs keep
               delivering meanwhile: a pause per window would cost more than the queue) */
  if (pl->blocked) {
    for (size_t i = 0; i < pl->nin; i++) {
      pl_input_t *in = pl->in[i];
      if (!in->paused && !in->ended) {
        in->paused = true;
        sea_consumer_pause(in->c);
      }
    }
    return;
  }
  bool all_ended = true;
  for (size_t i = 0; i < pl->nin; i++) {
    pl_input_t *in = pl->in[i];
    if (pl->join && join_holds(pl, in)) {
      if (!in->paused && !in->ended) {
        in->paused = true;
        sea_consumer_pause(in->c);
      }
    } else if (in->paused && !in->ended) {
      in->paused = false;
      sea_consumer_resume(in->c);
    }
    all_ended = all_ended && in->ended;
  }
  if (pl->nin > 0 && all_ended && pl->work_head == NULL &&
      (pl->join == NULL || sea__join_buffered(pl->join) == 0)) {
    if (!pl->cfg.linger) {
      if (!eos_stop_after_window(pl))
        begin_stop(pl);
    } else if (pl->cfg.on_inputs_ended) {
      sea_pipeline_event_cb cb = pl->cfg.on_inputs_ended;
      pl->cfg.on_inputs_ended = NULL; /* once */
      cb(pl, pl->cfg.data);
    }
  }
}

/* Joined: every message of pb goes to its lane, held as not processed until it is. */
static void join_batch(sea_pipeline_t *pl, pbatch_t *pb, size_t jat) {
  size_t count = pb->batch->count;
  uint64_t now = uv_hrtime();
  pb->jnodes = (sea__jnode_t *)((char *)pb + jat);
  pb->next_proc = count; /* the cursor looks at the slots only */
  for (size_t i = 0; i < count; i++) {
    sea__jnode_t *n = &pb->jnodes[i];
    pb->slots[i].pending = 1;
    n->m = &pb->batch->msgs[i];
    n->owner = pb;
    n->arrival_ns = now;
    n->input = (uint32_t)pb->in->index;
    n->i = (uint32_t)i;
    int rc = sea__join_push(pl->join, n);
    if (rc < 0) {
      set_error(pl, rc, "join: out of memory for the lanes of %s", pb->in->uri);
      begin_stop(pl);
      return;
    }
    pl->st.late += (uint64_t)rc;
  }
  process_work(pl);
}

static void on_batch(sea_consumer_t *c, const sea_batch_t *batch) {
  pl_input_t *in = sea_consumer_get_data(c);
  sea_pipeline_t *pl = in->pl;
  if (pl->stopping || batch->count == 0)
    return; /* not processed, so never acknowledged: delivered again after a restart */
  size_t size = sizeof(pbatch_t) + batch->count * sizeof(slot_t), jat = 0;
  if (pl->join) {
    jat = (size + _Alignof(sea__jnode_t) - 1) & ~(_Alignof(sea__jnode_t) - 1);
    size = jat + batch->count * sizeof(sea__jnode_t);
  }
  pbatch_t *pb = sea__malloc(size);
  if (pb == NULL) {
    set_error(pl, SEA_ENOMEM, "out of memory queueing a batch of %zu messages from %s",
              batch->count, in->uri);
    begin_stop(pl);
    return;
  }
  sea_batch_retain(batch);
  pb->batch = batch;
  pb->in = in;
  pb->dead = false;
  pb->next_proc = pb->next_ack = 0;
  pb->in_next = pb->work_next = NULL;
  pb->jnodes = NULL;
  for (size_t i = 0; i < batch->count; i++)
    pb->slots[i] = (slot_t){.i = (uint32_t)i, .pending = 0};
  if (in->tail)
    in->tail->in_next = pb;
  else
    in->head = pb;
  in->tail = pb;
  if (pl->join) {
    join_batch(pl, pb, jat);
    return;
  }
  if (pl->work_tail)
    pl->work_tail->work_next = pb;
  else
    pl->work_head = pb;
  pl->work_tail = pb;
  process_work(pl);
}

static void on_end(sea_consumer_t *c, int status) {
  pl_input_t *in = sea_consumer_get_data(c);
  sea_pipeline_t *pl = in->pl;
  in->ended = true;
  if (pl->join)
    sea__join_end_input(pl->join, (uint32_t)in->index);
  if (status != 0 && status != SEA_EOF) {
    /* What the input delivered before it failed is still processed and committed. */
    set_error(pl, status, "input %s: %s", in->uri, sea_consumer_errmsg(c));
  }
  if (!pl->stopping)
    process_work(pl);
  else
    maybe_finish(pl);
}

/* ---------------------------------------------------------------------------------------------
 * Stopping: no more input; the outputs confirm what was sent; what is done is committed.
 * ------------------------------------------------------------------------------------------- */

static bool eos_finish(sea_pipeline_t *pl);

static void maybe_finish(sea_pipeline_t *pl) {
  if (pl->done || !pl->stopping || pl->flushing > 0)
    return;
  if (!pl->finishing) {
    pl->finishing = true;
    for (size_t i = 0; i < pl->nin; i++)
      advance_acks(pl->in[i]);
  }
  if (pl->txo) {
    /* Exactly once: the last window is committed (aborted after a failure) as a whole. */
    if (!eos_finish(pl) || pl->done)
      return;
  } else {
    /* The last commit of each input: an input whose timer commit is still out commits again
     * once it is back (after_commit comes here), or what it acknowledged since would stay
     * uncommitted. */
    commit_all(pl);
  }
  if (pl->done || pl->commits_out > 0)
    return; /* a commit that completed at once finished the pipeline; or one is out */
  pl->done = true;
  if (pl->timer)
    uv_timer_stop(pl->timer);
  sea__stats_final(pl->stats); /* --stats: the last line, with everything done and committed */
  if (pl->cfg.on_done)
    pl->cfg.on_done(pl, pl->status);
}

static void after_output_stop(void *data, int status) {
  pl_output_t *o = data;
  sea_pipeline_t *pl = o->pl;
  o->stopping = false;
  if (pl == NULL) { /* the pipeline was freed while the flush was out */
    if (o->txn_ops == 0)
      sea__free(o);
    return;
  }
  if (status != 0 && status != SEA_ECANCELED)
    set_error(pl, status, "output %s: %s", o->uri, sea_producer_errmsg(o->p));
  pl->flushing--;
  maybe_finish(pl);
}

static void begin_stop(sea_pipeline_t *pl) {
  if (pl->stopping)
    return;
  if (pl->in_call || pl->processing) {
    pl->stop_requested = true; /* once the processor's call returns */
    return;
  }
  pl->stopping = true;
  if (pl->jtimer)
    uv_timer_stop(pl->jtimer);
  for (size_t i = 0; i < pl->nin; i++) {
    pl_input_t *in = pl->in[i];
    if (in->started && !in->ended && !in->paused) {
      in->paused = true;
      sea_consumer_pause(in->c);
    }
  }
  if (pl->status == 0 && pl->cfg.on_stopping)
    pl->cfg.on_stopping(pl, pl->cfg.data);
  pl->flushing = 1;
  for (size_t i = 0; i < pl->nout + (pl->txo != NULL); i++) {
    pl_output_t *o = i < pl->nout ? pl->out[i] : pl->txo;
    /* A send still in an overflow is not confirmed: its message stays unacknowledged. */
    o->stopped = true;
    o->stopping = true;
    pl->flushing++;
    /* The transactional producer's flush waits for its receipts; its transaction is ours. */
    int rc = pl->cfg.end_outputs && o != pl->txo ? sea_producer_end(o->p, after_output_stop, o)
                                                 : sea_producer_flush(o->p, after_output_stop, o);
    if (rc != 0) {
      o->stopping = false;
      set_error(pl, sea_producer_error(o->p) ? sea_producer_error(o->p) : rc, "output %s: %s",
                o->uri, sea_producer_errmsg(o->p));
      pl->flushing--;
    }
  }
  pl->flushing--;
  maybe_finish(pl);
}

void sea_pipeline_stop(sea_pipeline_t *pl) {
  if (pl == NULL || pl->stopping)
    return;
  pl->stop_requested = true;
  pl->stop_asked = true;
  if (!pl->in_call && !pl->processing && !eos_stop_after_window(pl))
    begin_stop(pl);
}

void sea_pipeline_fail(sea_pipeline_t *pl, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_error_v(pl, status, fmt, ap);
  va_end(ap);
  sea_pipeline_stop(pl);
}

/* ---------------------------------------------------------------------------------------------
 * Exactly once: each commit window is one transaction of one producer, which carries the sends
 * of every output and the inputs' positions (send_offsets). A window closes on the commit timer:
 * the processor is not called, what waits in the overflow goes in, every send gets its receipt,
 * the window's last done positions are acknowledged and sent into the transaction, and it is
 * committed; then the next one begins. A clean stop commits the last window, a failure aborts it.
 * ------------------------------------------------------------------------------------------- */

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
    begin_stop(pl);
    maybe_finish(pl);
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
    begin_stop(pl);
    maybe_finish(pl);
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
    begin_stop(pl);
    maybe_finish(pl);
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
  sea_pipeline_t *pl = in->pl;
  in->committing = false;
  if (pl == NULL) {
    sea__free(in);
    return;
  }
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
static void eos_progress(sea_pipeline_t *pl) {
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
    process_work(pl);
    return;
  }
  eos_commit(pl);
}

/* Exactly once: a stop that is no failure (-c reached, every input at its end, a stop asked
 * for) first closes the open window as the timer does, not stopping yet, so that an abortable
 * failure of its transaction is still replayed (at the stop nothing would process it again);
 * once it is committed, the work goes on and comes back here with an empty window, and the stop
 * begins. Likewise while a window closes. True: the stop waits. */
static bool eos_stop_after_window(sea_pipeline_t *pl) {
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
  eos_close(pl);
  return true;
}

static void eos_close(sea_pipeline_t *pl) {
  if (pl->txn != TXN_OPEN || pl->stopping)
    return;
  pl->txn = TXN_DRAINING;
  eos_progress(pl);
}

static void eos_begin(sea_pipeline_t *pl) {
  pl_output_t *o = pl->txo;
  int rc = sea_producer_txn_begin(o->p);
  if (rc != 0) {
    set_error(pl, rc, "exactly-once: cannot begin a transaction on %s: %s", o->uri,
              sea_producer_errmsg(o->p));
    pl->txn = TXN_ENDED;
    begin_stop(pl);
    maybe_finish(pl);
    return;
  }
  pl->txn = pl->stopping ? TXN_DRAINING : TXN_OPEN;
  pl->window_counted = pl->counted;
  if (o->of_head)
    on_drain(o->p); /* the sends that waited for it: then processing, or the window's end */
  else if (pl->stopping)
    maybe_finish(pl);
  else
    process_work(pl);
}

/* At the stop: true once the last transaction is committed or aborted. */
static bool eos_finish(sea_pipeline_t *pl) {
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
    on_drain(pl->txo->p); /* what the processor sent last goes into the last transaction */
  else
    eos_progress(pl);
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
static void on_revoke(sea_consumer_t *c, int incremental) {
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
    begin_stop(pl);
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
      overflow_free(ov);
    } else {
      otail = ov;
      ol = &ov->next;
    }
  }
  o->of_tail = otail;
  if (had && o->of_head == NULL)
    pl->blocked--;
  advance_acks(in);
}

static void eos_rewound(sea_pipeline_t *pl) {
  if (pl->status != 0 || pl->stopping || pl->done) {
    pl->txn = TXN_ENDED;
    begin_stop(pl);
    maybe_finish(pl);
    return;
  }
  eos_begin(pl);
}

static void after_rewind(void *data, int status) {
  pl_input_t *in = data;
  sea_pipeline_t *pl = in->pl;
  in->committing = false;
  if (pl == NULL) {
    sea__free(in);
    return;
  }
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

static int start_inputs(sea_pipeline_t *pl);

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
    begin_stop(pl);
    maybe_finish(pl);
    return;
  }
  if (pl->stopping || pl->done)
    return;
  pl->txn = TXN_OPEN;
  if (o->of_head)
    on_drain(o->p);
  start_inputs(pl);
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

static int eos_setup(sea_pipeline_t *pl) {
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
  sea_producer_set_callbacks(p, on_receipt, on_drain);
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

/* ---------------------------------------------------------------------------------------------
 * Setup
 * ------------------------------------------------------------------------------------------- */

int sea_pipeline_new(sea_runtime_t *rt, const sea_pipeline_config_t *cfg, sea_pipeline_t **out) {
  if (rt == NULL || cfg == NULL || cfg->process == NULL || out == NULL)
    return SEA_EINVAL;
  sea_pipeline_t *pl = sea__calloc(1, sizeof *pl);
  if (pl == NULL)
    return SEA_ENOMEM;
  size_t n = cfg->struct_size && cfg->struct_size < sizeof *cfg ? cfg->struct_size : sizeof *cfg;
  memcpy(&pl->cfg, cfg, n);
  pl->cfg.struct_size = sizeof pl->cfg;
  if (pl->cfg.on_error > SEA_ON_ERROR_DEAD_LETTER) {
    sea__free(pl);
    return sea__rt_err(rt, SEA_EINVAL, "pipeline: on_error %d is not a policy", (int)cfg->on_error);
  }
  pl->rt = rt;
  *out = pl;
  return 0;
}

static int grow(void ***arr, size_t n, size_t *cap) {
  if (n < *cap)
    return 0;
  size_t nc = *cap ? *cap * 2 : 4;
  void **a = sea__realloc(*arr, nc * sizeof *a);
  if (a == NULL)
    return SEA_ENOMEM;
  *arr = a;
  *cap = nc;
  return 0;
}

int sea_pipeline_add_input(sea_pipeline_t *pl, sea_consumer_t *c, size_t *index) {
  if (pl == NULL || c == NULL)
    return SEA_EINVAL;
  if (pl->started)
    return sea__rt_err(pl->rt, SEA_ESTATE, "pipeline: inputs are added before it starts");
  if (grow((void ***)&pl->in, pl->nin, &pl->capin) != 0)
    return SEA_ENOMEM;
  pl_input_t *in = sea__calloc(1, sizeof *in);
  if (in == NULL)
    return SEA_ENOMEM;
  in->pl = pl;
  in->c = c;
  in->index = pl->nin;
  in->uri = uri_of(c->s);
  const sea_plugin_t *d = &c->s->plugin->desc;
  in->ack = sea_consumer_mode(c) != SEA_MODE_REALTIME && d->consumer_ack != NULL &&
            d->consumer_commit != NULL;
  sea_consumer_set_data(c, in);
  sea_consumer_on_revoke(c, on_revoke);
  pl->in[pl->nin++] = in;
  if (index)
    *index = in->index;
  return 0;
}

int sea_pipeline_add_output(sea_pipeline_t *pl, sea_producer_t *p, size_t *index) {
  if (pl == NULL || p == NULL)
    return SEA_EINVAL;
  if (grow((void ***)&pl->out, pl->nout, &pl->capout) != 0)
    return SEA_ENOMEM;
  pl_output_t *o = sea__calloc(1, sizeof *o);
  if (o == NULL)
    return SEA_ENOMEM;
  o->pl = pl;
  o->p = p;
  o->uri = uri_of(p->s);
  sea_producer_set_data(p, o);
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  if (index)
    *index = pl->nout;
  pl->out[pl->nout++] = o;
  return 0;
}

/* Joined: the join, expecting every input (each stream key its URI names, or the input as a
 * whole) from now on, and its wake-up timer. */
static int join_setup(sea_pipeline_t *pl) {
  uint64_t wait = pl->cfg.join_wait_ms ? pl->cfg.join_wait_ms : JOIN_WAIT_MS_DEFAULT;
  pl->join_max = pl->cfg.join_max_buffered ? pl->cfg.join_max_buffered : JOIN_MAX_BUFFERED_DEFAULT;
  pl->join = sea__join_new(pl->nin, wait);
  pl->jtimer = sea__calloc(1, sizeof *pl->jtimer);
  uint64_t now = uv_hrtime();
  int rc = pl->join && pl->jtimer ? 0 : SEA_ENOMEM;
  for (size_t i = 0; i < pl->nin && rc == 0; i++) {
    const sea_consumer_t *c = pl->in[i]->c;
    rc = sea__join_expect(pl->join, (uint32_t)i, c->args.keys, c->args.key_count, now);
  }
  if (rc != 0) {
    sea__free(pl->jtimer);
    pl->jtimer = NULL;
    set_error(pl, rc, "join: out of memory");
    return rc;
  }
  uv_timer_init(pl->rt->loop, pl->jtimer);
  pl->jtimer->data = pl;
  return 0;
}

int sea_pipeline_start(sea_pipeline_t *pl) {
  if (pl == NULL)
    return SEA_EINVAL;
  if (pl->started)
    return SEA_ESTATE;
  pl->started = true;
  if (pl->stopping)
    return pl->status; /* stopped before it started: no input is started */
  if (pl->cfg.on_error == SEA_ON_ERROR_DEAD_LETTER && pl->cfg.dead_letter >= pl->nout) {
    set_error(pl, SEA_EINVAL, "pipeline: the dead-letter output %zu does not exist",
              pl->cfg.dead_letter);
    begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.join && pl->cfg.exactly_once) {
    set_error(pl, SEA_EINVAL, "join with exactly-once is not supported");
    begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.exactly_once && eos_setup(pl) != 0) {
    begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.join && join_setup(pl) != 0) {
    begin_stop(pl);
    return pl->status;
  }
  bool any_ack = false;
  for (size_t i = 0; i < pl->nin; i++)
    any_ack = any_ack || pl->in[i]->ack;
  if (any_ack) {
    pl->timer = sea__calloc(1, sizeof *pl->timer);
    pl->resume = sea__calloc(1, sizeof *pl->resume);
    if (pl->timer == NULL || pl->resume == NULL) {
      sea__free(pl->timer);
      sea__free(pl->resume);
      pl->timer = NULL;
      pl->resume = NULL;
      return SEA_ENOMEM;
    }
    uint64_t every =
        pl->cfg.commit_interval_ms ? pl->cfg.commit_interval_ms : COMMIT_EVERY_MS_DEFAULT;
    uv_timer_init(pl->rt->loop, pl->timer);
    pl->timer->data = pl;
    uv_timer_start(pl->timer, on_commit_timer, every, every);
    uv_unref((uv_handle_t *)pl->timer); /* the inputs and outputs keep the loop alive */
    uv_idle_init(pl->rt->loop, pl->resume);
    pl->resume->data = pl;
    pl->commit_every_ms = every;
    pl->commit_due_ns = uv_hrtime() + every * 1000000u;
  }
  if (pl->txo)
    return 0; /* the inputs start once its transaction is open (eos_ready) */
  return start_inputs(pl);
}

static int start_inputs(sea_pipeline_t *pl) {
  for (size_t i = 0; i < pl->nin && !pl->stopping; i++) {
    pl_input_t *in = pl->in[i];
    int rc = sea_consumer_start(in->c, on_batch, on_end);
    if (rc != 0) {
      set_error(pl, rc, "input %s: %s", in->uri, sea_consumer_errmsg(in->c));
      begin_stop(pl);
      return rc;
    }
    in->started = true;
  }
  return 0;
}

int sea_pipeline_full(const sea_pipeline_t *pl) {
  return pl && pl->blocked > 0;
}

void *sea_pipeline_get_data(const sea_pipeline_t *pl) {
  return pl ? pl->cfg.data : NULL;
}
const char *sea_pipeline_errmsg(const sea_pipeline_t *pl) {
  return pl ? pl->errmsg : "";
}
int sea_pipeline_status(const sea_pipeline_t *pl) {
  return pl ? pl->status : SEA_EINVAL;
}
void sea_pipeline_stats(const sea_pipeline_t *pl, sea_pipeline_stats_t *out) {
  if (pl && out) {
    *out = pl->st;
    out->join_buffered = pl->join ? sea__join_buffered(pl->join) : 0;
  }
}
sea__stats_t **sea__pipeline_stats_ref(sea_pipeline_t *pl) {
  return &pl->stats;
}
sea_runtime_t *sea__pipeline_runtime(sea_pipeline_t *pl) {
  return pl->rt;
}
int sea__pipeline_flow(const sea_pipeline_t *pl, int output, size_t index, sea__flow_t *out) {
  memset(out, 0, sizeof *out);
  if (output) {
    /* Exactly once: past the outputs, the transactional producer every send goes through. */
    const pl_output_t *o = index < pl->nout               ? pl->out[index]
                           : index == pl->nout && pl->txo ? pl->txo
                                                          : NULL;
    if (o == NULL)
      return SEA_EINVAL;
    *out = (sea__flow_t){o->uri, o->sent, o->bytes, o->receipted, o->inflight, o == pl->txo};
    return 0;
  }
  if (index >= pl->nin)
    return SEA_EINVAL;
  const pl_input_t *in = pl->in[index];
  *out = (sea__flow_t){in->uri, in->msgs, in->bytes, 0, 0, 0};
  return 0;
}
sea_producer_t *sea_pipeline_output(const sea_pipeline_t *pl, size_t index) {
  return pl && index < pl->nout ? pl->out[index]->p : NULL;
}
sea_consumer_t *sea_pipeline_input(const sea_pipeline_t *pl, size_t index) {
  return pl && index < pl->nin ? pl->in[index]->c : NULL;
}

static void free_timer(uv_handle_t *h) {
  sea__free(h);
}

void sea_pipeline_free(sea_pipeline_t *pl) {
  if (pl == NULL)
    return;
  pl->done = true; /* no callback of ours runs from here on */
  /* The outputs first: closing one cancels its receipts, which still point into our batches. */
  for (size_t i = 0; i < pl->nout + (pl->txo != NULL); i++) {
    pl_output_t *o = i < pl->nout ? pl->out[i] : pl->txo;
    sea_producer_close(o->p); /* a transaction still open is aborted */
    while (o->of_head) {
      overflow_t *ov = o->of_head;
      o->of_head = ov->next;
      overflow_free(ov);
    }
    /* A flush or transaction operation still out is canceled, and its callback comes later: it
     * frees the output. */
    o->pl = NULL;
    if (!o->stopping && o->txn_ops == 0)
      sea__free(o);
  }
  for (size_t i = 0; i < pl->nin; i++) {
    pl_input_t *in = pl->in[i];
    sea_consumer_close(in->c);
    while (in->head) {
      pbatch_t *pb = in->head;
      in->head = pb->in_next;
      pbatch_free(pb);
    }
    in->pl = NULL;
    sea__free(in->marks);
    in->marks = NULL;
    if (!in->committing)
      sea__free(in); /* else the canceled commit's callback frees it */
  }
  if (pl->timer) {
    pl->timer->data = NULL;
    uv_close((uv_handle_t *)pl->timer, free_timer);
  }
  if (pl->resume) {
    pl->resume->data = NULL;
    uv_close((uv_handle_t *)pl->resume, free_timer);
  }
  if (pl->jtimer) {
    pl->jtimer->data = NULL;
    uv_close((uv_handle_t *)pl->jtimer, free_timer);
  }
  sea__stats_free(pl->stats);
  sea__join_free(pl->join);
  sea__free(pl->in);
  sea__free(pl->out);
  sea__free(pl);
}
