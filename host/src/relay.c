/* relay.c: the pipeline's C-only path: consume → produce → acknowledge → commit, with
 * backpressure from the output to the input. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* One consumed batch in flight: kept alive until every message in it has its receipt, because
 * acknowledging a message needs the message. */
typedef struct pending {
  const sea_batch_t *batch;
  size_t next;      /* next message to send */
  size_t remaining; /* messages sent but not yet receipted, plus those not yet sent */
  struct pending *link;
  bool queued;  /* still in the relay's queue (send_pending may be walking it) */
  size_t idx[]; /* idx[i] = i: the send token of message i is &idx[i] */
} pending_t;

struct sea_relay {
  sea_consumer_t *in;
  sea_producer_t *out;
  sea_relay_config_t cfg;
  sea_relay_done_cb on_done;
  pending_t *head, *tail; /* batches not fully sent, oldest first */
  uint64_t sent, receipted;
  bool ack; /* the input keeps positions: ack each relayed message */
  bool acked_since_commit;
  bool paused;
  bool input_ended;
  bool stopping; /* no more sends: flushing, then done */
  bool done;
  bool committing;
  int status;
  uv_timer_t commit_timer;
  bool timer_open;
  const char *broadcast; /* the key stdio gives a line without one */
  char errmsg[SEA__ERRMSG_MAX];
};

static void relay_set_error(sea_relay_t *r, int status, const char *fmt, ...) SEA__PRINTF(3, 4);
static void relay_set_error(sea_relay_t *r, int status, const char *fmt, ...) {
  if (r->status != 0)
    return; /* keep the first failure: it is the cause */
  r->status = status;
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(r->errmsg, sizeof r->errmsg, fmt, ap);
  va_end(ap);
}

static void pending_free(pending_t *pb) {
  sea_batch_release(pb->batch);
  sea__free(pb);
}

static void finish(sea_relay_t *r) {
  if (r->done)
    return;
  r->done = true;
  if (r->timer_open)
    uv_timer_stop(&r->commit_timer);
  if (r->on_done)
    r->on_done(r, r->status);
}

static void after_final_commit(void *data, int status) {
  sea_relay_t *r = data;
  r->committing = false;
  if (status != 0 && status != SEA_ECANCELED)
    relay_set_error(r, status, "commit: %s", sea_consumer_errmsg(r->in));
  finish(r);
}

static void after_flush(void *data, int status) {
  sea_relay_t *r = data;
  if (status != 0 && status != SEA_ECANCELED)
    relay_set_error(r, status, "%s", sea_producer_errmsg(r->out));
  /* Everything relayed is now confirmed: commit the input positions one last time. */
  if (r->ack && r->acked_since_commit && !r->committing) {
    r->acked_since_commit = false;
    r->committing = true;
    if (sea_consumer_commit(r->in, after_final_commit, r) == 0)
      return;
    r->committing = false;
  }
  finish(r);
}

/* Stop consuming and wait for the output to confirm what was sent. */
static void stop(sea_relay_t *r) {
  if (r->stopping)
    return;
  r->stopping = true;
  if (!r->input_ended)
    sea_consumer_pause(r->in);
  if (sea_producer_flush(r->out, after_flush, r) != 0) {
    relay_set_error(r, sea_producer_error(r->out) ? sea_producer_error(r->out) : SEA_EIO, "%s",
                    sea_producer_errmsg(r->out));
    finish(r);
  }
}

static void send_pending(sea_relay_t *r);

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  sea_relay_t *r = sea_producer_get_data(p);
  size_t *slot = token;
  size_t i = *slot;
  pending_t *pb = (pending_t *)((char *)(slot - i) - offsetof(pending_t, idx));
  const sea_message_t *m = &pb->batch->msgs[i];
  r->receipted++;
  if (status != 0) {
    if (status != SEA_ECANCELED)
      relay_set_error(r, status, "output rejected the message %s | %llu: %s", m->meta.stream_key,
                      (unsigned long long)m->meta.seq,
                      sea_producer_errmsg(p)[0] ? sea_producer_errmsg(p) : sea_strerror(status));
    stop(r);
  } else if (r->ack && sea_consumer_ack(r->in, m) == 0) {
    r->acked_since_commit = true;
  }
  if (--pb->remaining == 0 && !pb->queued)
    pending_free(pb);
}

static void on_drain(sea_producer_t *p) {
  sea_relay_t *r = sea_producer_get_data(p);
  send_pending(r);
}

/* Send what the queued batches still hold, until the output pushes back. */
static void send_pending(sea_relay_t *r) {
  while (r->head && !r->stopping) {
    pending_t *pb = r->head;
    const sea_batch_t *b = pb->batch;
    while (pb->next < b->count) {
      if (r->stopping)
        return; /* a receipt that came back inside the send failed */
      if (r->cfg.max_count && r->sent >= r->cfg.max_count) {
        stop(r);
        return;
      }
      const sea_message_t *m = &b->msgs[pb->next];
      sea_message_t out = *m;
      if (sea_producer_anchored(r->out) != NULL &&
          (!r->cfg.keep_stream_key || out.meta.stream_key == r->broadcast))
        out.meta.stream_key = NULL;
      if (r->cfg.message_key) {
        out.key = (const uint8_t *)r->cfg.message_key;
        out.key_len = strlen(r->cfg.message_key);
      }
      int rc = sea__producer_send_flags(r->out, &out, r->cfg.keep_meta ? SEA_SEND_KEEP_META : 0,
                                        &pb->idx[pb->next]);
      if (rc == SEA_EAGAIN) {
        if (!r->paused && !r->input_ended) {
          r->paused = true;
          sea_consumer_pause(r->in);
        }
        return; /* on_drain resumes here */
      }
      if (rc != 0) {
        relay_set_error(r, rc, "message %s | %llu could not be sent: %s", m->meta.stream_key,
                        (unsigned long long)m->meta.seq, sea_producer_errmsg(r->out));
        stop(r);
        return;
      }
      pb->next++;
      r->sent++;
    }
    r->head = pb->link;
    if (r->head == NULL)
      r->tail = NULL;
    pb->queued = false;
    if (pb->remaining == 0)
      pending_free(pb);
  }
  if (r->stopping)
    return;
  if (r->cfg.max_count && r->sent >= r->cfg.max_count) {
    stop(r);
    return;
  }
  if (r->head == NULL) {
    if (r->input_ended) {
      stop(r);
    } else if (r->paused) {
      r->paused = false;
      sea_consumer_resume(r->in);
    }
  }
}

static void on_batch(sea_consumer_t *c, const sea_batch_t *batch) {
  sea_relay_t *r = sea_consumer_get_data(c);
  if (r->stopping)
    return;
  pending_t *pb = sea__malloc(sizeof *pb + batch->count * sizeof(size_t));
  if (pb == NULL) {
    relay_set_error(r, SEA_ENOMEM, "out of memory queueing a batch of %zu messages", batch->count);
    stop(r);
    return;
  }
  sea_batch_retain(batch);
  pb->batch = batch;
  pb->next = 0;
  pb->remaining = batch->count;
  pb->link = NULL;
  pb->queued = true;
  for (size_t i = 0; i < batch->count; i++)
    pb->idx[i] = i;
  if (r->tail)
    r->tail->link = pb;
  else
    r->head = pb;
  r->tail = pb;
  send_pending(r);
}

static void on_end(sea_consumer_t *c, int status) {
  sea_relay_t *r = sea_consumer_get_data(c);
  r->input_ended = true;
  if (status != SEA_EOF && status != 0)
    relay_set_error(r, status, "%s", sea_consumer_errmsg(c));
  /* What was consumed before the end still goes out; then stop. */
  if (r->head == NULL)
    stop(r);
}

static void after_commit(void *data, int status) {
  sea_relay_t *r = data;
  r->committing = false;
  if (status != 0 && status != SEA_ECANCELED)
    relay_set_error(r, status, "commit: %s", sea_consumer_errmsg(r->in));
}

static void on_commit_timer(uv_timer_t *t) {
  sea_relay_t *r = t->data;
  if (!r->acked_since_commit || r->committing || r->stopping)
    return;
  r->acked_since_commit = false;
  r->committing = true;
  if (sea_consumer_commit(r->in, after_commit, r) != 0)
    r->committing = false;
}

int sea_relay_start(sea_consumer_t *in, sea_producer_t *out, const sea_relay_config_t *cfg,
                    sea_relay_done_cb on_done, sea_relay_t **out_relay) {
  if (in == NULL || out == NULL || out_relay == NULL)
    return SEA_EINVAL;
  sea_relay_t *r = sea__calloc(1, sizeof *r);
  if (r == NULL)
    return SEA_ENOMEM;
  if (cfg)
    r->cfg = *cfg;
  r->in = in;
  r->out = out;
  r->on_done = on_done;
  r->broadcast = sea_stream_key("broadcast", 9, NULL);
  r->ack = sea_consumer_mode(in) != SEA_MODE_REALTIME && in->s->plugin->desc.consumer_ack != NULL &&
           in->s->plugin->desc.consumer_commit != NULL;
  sea_consumer_set_data(in, r);
  sea_producer_set_data(out, r);
  sea_producer_set_callbacks(out, on_receipt, on_drain);
  if (r->ack) {
    uint64_t every = r->cfg.commit_interval_ms ? r->cfg.commit_interval_ms : 1000;
    uv_timer_init(in->s->rt->loop, &r->commit_timer);
    r->commit_timer.data = r;
    r->timer_open = true;
    uv_timer_start(&r->commit_timer, on_commit_timer, every, every);
  }
  int rc = sea_consumer_start(in, on_batch, on_end);
  if (rc != 0) {
    if (r->timer_open)
      uv_close((uv_handle_t *)&r->commit_timer, NULL);
    snprintf(r->errmsg, sizeof r->errmsg, "%s", sea_consumer_errmsg(in));
    sea__free(r);
    return rc;
  }
  *out_relay = r;
  return 0;
}

void sea_relay_stop(sea_relay_t *r) {
  if (r != NULL)
    stop(r);
}

uint64_t sea_relay_count(const sea_relay_t *r) {
  return r->sent;
}
const char *sea_relay_errmsg(const sea_relay_t *r) {
  return r->errmsg;
}

static void free_after_close(uv_handle_t *h) {
  sea__free(h->data);
}

void sea_relay_free(sea_relay_t *r) {
  if (r == NULL)
    return;
  while (r->head) {
    pending_t *pb = r->head;
    r->head = pb->link;
    pb->queued = false;
    /* Forget the unsent messages. Sent ones still hold the batch until their receipts, which
     * is why the producer must be closed (cancelling them) before the relay is freed. */
    pb->remaining -= pb->batch->count - pb->next;
    pb->next = pb->batch->count;
    if (pb->remaining == 0)
      pending_free(pb);
  }
  if (r->timer_open) {
    r->commit_timer.data = r;
    uv_close((uv_handle_t *)&r->commit_timer, free_after_close);
  } else {
    sea__free(r);
  }
}
