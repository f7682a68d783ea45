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
 * at the first message not processed just as well, without next_proc.
 *
 * The pipeline's rooms (files) are listed in pipeline_internal.h. */
#include <string.h>

#include "pipeline_internal.h"

#define COMMIT_EVERY_MS_DEFAULT 1000
#define JOIN_WAIT_MS_DEFAULT 1000
#define JOIN_MAX_BUFFERED_DEFAULT 100000

static const char *uri_of(sea_streamer_t *s) {
  const sea_uri_t *u = sea_streamer_uri(s);
  return u && u->raw ? u->raw : "?";
}

/* ---------------------------------------------------------------------------------------------
 * Stopping: no more input; the outputs confirm what was sent; what is done is committed.
 * ------------------------------------------------------------------------------------------- */

void sea__pl_maybe_finish(sea_pipeline_t *pl) {
  if (pl->done || !pl->stopping || pl->flushing > 0)
    return;
  if (!pl->finishing) {
    pl->finishing = true;
    for (size_t i = 0; i < pl->nin; i++)
      sea__pl_advance_acks(pl->in[i]);
  }
  if (pl->txo) {
    /* Exactly once: the last window is committed (aborted after a failure) as a whole. */
    if (!sea__pl_eos_finish(pl) || pl->done)
      return;
  } else {
    /* The last commit of each input: an input whose timer commit is still out commits again
     * once it is back (after_commit comes here), or what it acknowledged since would stay
     * uncommitted. */
    sea__pl_commit_all(pl);
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
  sea__pl_maybe_finish(pl);
}

void sea__pl_begin_stop(sea_pipeline_t *pl) {
  if (pl->stopping)
    return;
  if (pl->in_call || pl->processing) {
    pl->stop_requested = true; /* once the processor's call returns */
    return;
  }
  pl->stopping = true;
  if (pl->jtimer)
    uv_timer_stop(pl->jtimer);
  if (pl->jidle)
    uv_idle_stop(pl->jidle);
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
  sea__pl_maybe_finish(pl);
}

void sea_pipeline_stop(sea_pipeline_t *pl) {
  if (pl == NULL || pl->stopping)
    return;
  pl->stop_requested = true;
  pl->stop_asked = true;
  if (!pl->in_call && !pl->processing && !sea__pl_eos_stop_after_window(pl))
    sea__pl_begin_stop(pl);
}

void sea_pipeline_fail(sea_pipeline_t *pl, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_error_v(pl, status, fmt, ap);
  va_end(ap);
  sea_pipeline_stop(pl);
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
  sea_consumer_on_revoke(c, sea__pl_on_revoke);
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
  sea_producer_set_callbacks(p, sea__pl_on_receipt, sea__pl_on_drain);
  if (index)
    *index = pl->nout;
  pl->out[pl->nout++] = o;
  return 0;
}

/* Joined: the loop is about to poll for I/O, and has run the callbacks of that poll (see
 * jpolled_ns). */
static void on_join_prepare(uv_prepare_t *h) {
  sea_pipeline_t *pl = h->data;
  if (pl != NULL)
    pl->jpoll_ns = uv_hrtime();
}

static void on_join_check(uv_check_t *h) {
  sea_pipeline_t *pl = h->data;
  if (pl != NULL)
    pl->jpolled_ns = pl->jpoll_ns;
}

/* Joined: the join, expecting every input (each stream key its URI names, or the input as a
 * whole) from now on, and its wake-up timer. */
static int join_setup(sea_pipeline_t *pl) {
  uint64_t wait = pl->cfg.join_wait_ms ? pl->cfg.join_wait_ms : JOIN_WAIT_MS_DEFAULT;
  pl->join_max = pl->cfg.join_max_buffered ? pl->cfg.join_max_buffered : JOIN_MAX_BUFFERED_DEFAULT;
  pl->join = sea__join_new(pl->nin, wait);
  pl->jtimer = sea__calloc(1, sizeof *pl->jtimer);
  pl->jprep = sea__calloc(1, sizeof *pl->jprep);
  pl->jcheck = sea__calloc(1, sizeof *pl->jcheck);
  pl->jidle = sea__calloc(1, sizeof *pl->jidle);
  uint64_t now = uv_hrtime();
  int rc = pl->join && pl->jtimer && pl->jprep && pl->jcheck && pl->jidle ? 0 : SEA_ENOMEM;
  for (size_t i = 0; i < pl->nin && rc == 0; i++) {
    const sea_consumer_t *c = pl->in[i]->c;
    rc = sea__join_expect(pl->join, (uint32_t)i, c->args.keys, c->args.key_count, now);
  }
  if (rc != 0) {
    sea__free(pl->jtimer);
    sea__free(pl->jprep);
    sea__free(pl->jcheck);
    sea__free(pl->jidle);
    pl->jtimer = NULL;
    pl->jprep = NULL;
    pl->jcheck = NULL;
    pl->jidle = NULL;
    set_error(pl, rc, "join: out of memory");
    return rc;
  }
  uv_timer_init(pl->rt->loop, pl->jtimer);
  pl->jtimer->data = pl;
  uv_idle_init(pl->rt->loop, pl->jidle);
  pl->jidle->data = pl;
  uv_prepare_init(pl->rt->loop, pl->jprep);
  pl->jprep->data = pl;
  uv_check_init(pl->rt->loop, pl->jcheck);
  pl->jcheck->data = pl;
  pl->jpoll_ns = pl->jpolled_ns = now;
  uv_prepare_start(pl->jprep, on_join_prepare);
  uv_check_start(pl->jcheck, on_join_check);
  uv_unref((uv_handle_t *)pl->jprep); /* a clock: they keep nothing alive */
  uv_unref((uv_handle_t *)pl->jcheck);
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
    sea__pl_begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.join && pl->cfg.exactly_once) {
    set_error(pl, SEA_EINVAL, "join with exactly-once is not supported");
    sea__pl_begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.hold && pl->cfg.exactly_once) {
    set_error(pl, SEA_EINVAL, "hold with exactly-once is not supported");
    sea__pl_begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.exactly_once && sea__pl_eos_setup(pl) != 0) {
    sea__pl_begin_stop(pl);
    return pl->status;
  }
  if (pl->cfg.join && join_setup(pl) != 0) {
    sea__pl_begin_stop(pl);
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
    uv_timer_start(pl->timer, sea__pl_on_commit_timer, every, every);
    uv_unref((uv_handle_t *)pl->timer); /* the inputs and outputs keep the loop alive */
    uv_idle_init(pl->rt->loop, pl->resume);
    pl->resume->data = pl;
    pl->commit_every_ms = every;
    pl->commit_due_ns = uv_hrtime() + every * 1000000u;
  }
  if (pl->txo)
    return 0; /* the inputs start once its transaction is open (eos_ready) */
  return sea__pl_start_inputs(pl);
}

int sea__pl_start_inputs(sea_pipeline_t *pl) {
  for (size_t i = 0; i < pl->nin && !pl->stopping; i++) {
    pl_input_t *in = pl->in[i];
    int rc = sea_consumer_start(in->c, sea__pl_on_batch, sea__pl_on_end);
    if (rc != 0) {
      set_error(pl, rc, "input %s: %s", in->uri, sea_consumer_errmsg(in->c));
      sea__pl_begin_stop(pl);
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

static void free_handle(uv_handle_t *h) {
  sea__free(h);
}

/* Close one of the pipeline's own handles (NULL: never made), which is freed once closed; its
 * callback sees data NULL if it runs meanwhile. */
static void close_handle(uv_handle_t *h) {
  if (h == NULL)
    return;
  h->data = NULL;
  uv_close(h, free_handle);
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
      sea__pl_overflow_free(ov);
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
      sea__pl_pbatch_free(pb);
    }
    in->pl = NULL;
    sea__free(in->marks);
    in->marks = NULL;
    if (!in->committing)
      sea__free(in); /* else the canceled commit's callback frees it */
  }
  close_handle((uv_handle_t *)pl->timer);
  close_handle((uv_handle_t *)pl->resume);
  close_handle((uv_handle_t *)pl->jtimer);
  close_handle((uv_handle_t *)pl->jprep);
  close_handle((uv_handle_t *)pl->jcheck);
  close_handle((uv_handle_t *)pl->jidle);
  sea__stats_free(pl->stats);
  sea__pl_holds_free(pl);
  sea__join_free(pl->join);
  sea__free(pl->in);
  sea__free(pl->out);
  sea__free(pl);
}
