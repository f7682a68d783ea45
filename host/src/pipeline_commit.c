/* pipeline_commit.c: acknowledgement and commits. A message is acknowledged, in the order its
 * input delivered it, once it is processed and nothing holds it any more; the inputs commit what
 * they acknowledged on the commit timer, and once more at the stop. */
#include <string.h>

#include "pipeline_internal.h"

/* The last commit, refused while the group's coordinator moves (SEA_EBUSY), is tried again after
 * 100 ms, 200 ms, ... (at most 2 s apart), this many times: about 25 s of waiting, past a Kafka
 * coordinator's failover (the broker's session timeout, 9 s by default, and the new one's load). */
#define LAST_COMMIT_TRIES 16
#define LAST_COMMIT_BACKOFF_MAX_MS 2000

/* ---------------------------------------------------------------------------------------------
 * Acknowledgement and commits
 * ------------------------------------------------------------------------------------------- */

void sea__pl_pbatch_free(pbatch_t *pb) {
  sea_batch_release(pb->batch);
  sea__free(pb);
}

/* Acknowledge, in delivery order, every message that is processed and no longer held. */
void sea__pl_advance_acks(pl_input_t *in) {
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
      if (in->ack && (pl->txo ? sea__pl_eos_mark(in, m) : sea_consumer_ack(in->c, m)) == 0)
        in->dirty = true;
      pb->next_ack++;
      pl->st.done++;
    }
    if (pb->next_ack < pb->batch->count)
      return;
    in->head = pb->in_next;
    if (in->head == NULL)
      in->tail = NULL;
    sea__pl_pbatch_free(pb);
  }
}

/* Nothing holds slot s any more (its pending reached 0): acknowledge what that allows, or, for a
 * hold's token, let the hold's messages go. */
void sea__pl_slot_done(sea_pipeline_t *pl, slot_t *s) {
  pbatch_t *pb = slot_batch(s);
  if (pb->hold == NULL) {
    sea__pl_advance_acks(pb->in);
    return;
  }
  hold_t *h = pb->hold;
  for (hold_t **p = &pl->holds; *p; p = &(*p)->next)
    if (*p == h) {
      *p = h->next;
      break;
    }
  /* A held slot keeps its batch: the acknowledgement one lets go may free batches of slots
   * already let go, never one still held. */
  for (size_t i = 0; i < h->n; i++)
    if (--h->held[i]->pending == 0)
      sea__pl_advance_acks(slot_batch(h->held[i])->in);
  sea__free(h->held);
  sea__free(h->token);
  sea__free(h);
}

/* Hold message slot s until the next release (cfg.hold). 0 or SEA_ENOMEM. */
int sea__pl_hold(sea_pipeline_t *pl, slot_t *s) {
  hold_t *h = pl->hold;
  if (h == NULL) {
    h = sea__calloc(1, sizeof *h);
    pbatch_t *t = sea__calloc(1, sizeof *t + sizeof(slot_t));
    if (h == NULL || t == NULL) {
      sea__free(h);
      sea__free(t);
      return SEA_ENOMEM;
    }
    t->hold = h;
    t->slots[0] = (slot_t){.i = 0, .pending = 1}; /* until the release */
    h->token = t;
    h->next = pl->holds;
    pl->holds = pl->hold = h;
  }
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 256;
    slot_t **a = sea__realloc(h->held, cap * sizeof *a);
    if (a == NULL)
      return SEA_ENOMEM;
    h->held = a;
    h->cap = cap;
  }
  h->held[h->n++] = s;
  s->pending++;
  return 0;
}

int sea_pipeline_release(sea_pipeline_t *pl) {
  if (pl == NULL || pl->in_call)
    return SEA_EINVAL;
  hold_t *h = pl->hold;
  pl->hold = NULL;
  if (h != NULL && --h->token->slots[0].pending == 0)
    sea__pl_slot_done(pl, h->token->slots);
  return 0;
}

/* The pipeline is freed: its holds go, their messages unacknowledged. */
void sea__pl_holds_free(sea_pipeline_t *pl) {
  while (pl->holds) {
    hold_t *h = pl->holds;
    pl->holds = h->next;
    sea__free(h->held);
    sea__free(h->token);
    sea__free(h);
  }
  pl->hold = NULL;
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
  if (pl->last_commit_tries >= LAST_COMMIT_TRIES || pl->timer == NULL) {
    in->dirty = false; /* given up: left dirty, the finish would commit it again, and again */
    return false;
  }
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
    uv_timer_start(pl->timer, sea__pl_on_commit_timer, ms, 0);
  }
  return true;
}

/* An input's operation (a commit, its positions into a transaction, a rewind) came back: its
 * pipeline, or NULL when the pipeline was freed while the operation was out (sea_pipeline_free
 * left the input to this callback, which frees it here). */
sea_pipeline_t *sea__pl_input_op_back(pl_input_t *in) {
  sea_pipeline_t *pl = in->pl;
  in->committing = false;
  if (pl == NULL)
    sea__free(in);
  return pl;
}

static void after_commit(void *data, int status) {
  pl_input_t *in = data;
  sea_pipeline_t *pl = sea__pl_input_op_back(in);
  if (pl == NULL)
    return;
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
  sea__pl_maybe_finish(pl);
}

void sea__pl_commit_all(sea_pipeline_t *pl) {
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

void sea__pl_on_commit_timer(uv_timer_t *t) {
  sea_pipeline_t *pl = t->data;
  if (pl == NULL)
    return;
  if (pl->finishing) {
    if (pl->commit_backoff) { /* the last commit, once more */
      pl->commit_backoff = false;
      pl->commits_out--;
      uv_unref((uv_handle_t *)t);
      sea__pl_maybe_finish(pl);
    }
    return;
  }
  pl->commit_due_ns = uv_hrtime() + pl->commit_every_ms * 1000000u;
  if (pl->txo)
    sea__pl_eos_close(pl);
  else
    sea__pl_commit_all(pl);
}
