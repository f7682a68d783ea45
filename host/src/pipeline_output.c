/* pipeline_output.c: the outputs. Sends (sea_pipeline_send) with the hold they take on their
 * message, receipts, and the overflow a send goes to when its output is full, until it drains. */
#include <string.h>

#include "pipeline_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Outputs
 * ------------------------------------------------------------------------------------------- */

void sea__pl_on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
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
    if (s != NULL && slot_batch(s)->batch != NULL) {
      pbatch_t *pb = slot_batch(s);
      const sea_message_t *m = &pb->batch->msgs[s->i];
      char where[320];
      set_error(pl, status, "output %s rejected the message for %s of %s: %s", o->uri,
                sea__msg_where(m, where, sizeof where), pb->in->uri,
                em && em[0] ? em : sea_strerror(status));
    } else {
      set_error(pl, status, "output %s rejected a message: %s", o->uri,
                em && em[0] ? em : sea_strerror(status));
    }
    sea__pl_begin_stop(pl);
  }
  /* A send that failed keeps its message's hold for good: neither it nor anything its input
   * delivered after it is acknowledged. */
  if (s != NULL && status == 0 && --s->pending == 0)
    sea__pl_slot_done(pl, s);
  if (o == pl->txo && pl->txn == TXN_DRAINING)
    sea__pl_eos_progress(pl);
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

void sea__pl_overflow_free(overflow_t *ov) {
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
  size_t need = sea_message_extent(m);
  sea_block_t *b = sea_block_new(need ? need : 1);
  ov = sea__calloc(1, sizeof *ov);
  if (b == NULL || ov == NULL) {
    sea_block_unref(b);
    sea__free(ov);
    return NULL;
  }
  sea_message_copy_to(m, &ov->m, sea_block_data(b)); /* block memory is aligned for any type */
  ov->m.payload.block = b;
  return ov;
}

void sea__pl_on_drain(sea_producer_t *p) {
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
      sea__pl_begin_stop(pl);
    }
    o->of_head = ov->next;
    sea__pl_overflow_free(ov);
  }
  o->of_tail = NULL;
  pl->blocked--;
  if (pl->txn == TXN_DRAINING)
    sea__pl_eos_progress(pl);
  else if (pl->blocked == 0 && !pl->stopping)
    sea__pl_process_work(pl);
  else if (pl->stopping)
    sea__pl_maybe_finish(pl);
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
  slot_t *slot = pl->in_call ? pl->cur : pl->hold ? pl->hold->token->slots : NULL;
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
