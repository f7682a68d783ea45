/* pipeline_process.c: processing. Batches come in from the inputs (or go through the join, in
 * timestamp order), the processor is called on them, the work pauses for backpressure, a due
 * commit or a stop, and the inputs are paused and resumed with the outputs. */
#include <string.h>

#include "pipeline_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Processing
 * ------------------------------------------------------------------------------------------- */

/* Hand [first, first+count) of pb to the processor. Returns how many it handled (the rest are
 * handed again), or 0 if the pipeline must stop without counting them as processed. */
static size_t call_processor(sea_pipeline_t *pl, pbatch_t *pb, size_t first, size_t count) {
  slot_t *hold = &pb->slots[first]; /* a batch call's sends hold its first message: in-order
                                       acknowledgement then holds the rest too */
  if (pl->cfg.hold && sea__pl_hold(pl, hold) != 0) {
    set_error(pl, SEA_ENOMEM, "out of memory holding a message of %s", pb->in->uri);
    return 0;
  }
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
  } else if (rc < 0 && pl->status == 0 && !sea__pl_output_failed(pl)) {
    if (pl->reject_n > 0 && pl->reject_n < count)
      handled = pl->reject_n; /* the rest are handed again */
    pl->in_call = true;       /* dead-letters belong to the messages */
    if (!sea__pl_apply_policy(pl, pb, first, handled, rc))
      handled = 0;
    pl->in_call = false;
  } else if (rc < 0) {
    handled = 0; /* an output failed, or the processor failed the pipeline: no policy applies */
  }
  pl->cur = NULL;
  hold->pending--;
  return handled;
}

static void on_resume(uv_idle_t *h) {
  sea_pipeline_t *pl = h->data;
  uv_idle_stop(h);
  if (pl != NULL && !pl->done)
    sea__pl_process_work(pl);
}

static void on_join_timer(uv_timer_t *t) {
  sea_pipeline_t *pl = t->data;
  if (pl != NULL && !pl->done)
    sea__pl_process_work(pl);
}

/* Joined: a wait fell due before the loop polled again and read what it found: a later turn
 * decides (libuv runs due timers before it polls, and a read callback may run before another
 * input's, so the time now alone would judge lanes silent whose data waits unread). */
static void on_join_idle(uv_idle_t *h) {
  sea_pipeline_t *pl = h->data;
  uv_idle_stop(h);
  if (pl != NULL && !pl->done)
    sea__pl_process_work(pl);
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
    uint64_t now = pl->jpolled_ns;                 /* the wait rule's clock: see jpolled_ns */
    if (sea__join_buffered(j) / 2 >= pl->join_max) /* (twice it, without overflow) */
      now = UINT64_MAX; /* the buffer's hard bound: release without waiting (join_holds) */
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
      sea__pl_begin_stop(pl); /* they stay held: never acknowledged */
      break;
    }
    for (size_t k = first + count; k-- > first + handled;)
      sea__join_putback(j, &pb->jnodes[k]); /* handed again, first of all */
    for (size_t k = first; k < first + handled; k++) {
      sea__join_released(j, &pb->jnodes[k]);
      pb->slots[k].pending--; /* processed */
    }
    bool pause = count_call(pl, pb, first, handled);
    sea__pl_advance_acks(pb->in); /* may free pb */
    if (pause)
      break;
  }
  /* Nothing may go yet: the wait rule wakes the join up (new input or an end may come first). */
  if (wake != 0 && !pl->stopping && !pl->stop_requested) {
    uint64_t now = uv_hrtime();
    if (wake > now)
      uv_timer_start(pl->jtimer, on_join_timer, (wake - now + 999999u) / 1000000u, 0);
    else /* due, but the loop has not polled since: after it has */
      uv_idle_start(pl->jidle, on_join_idle);
  }
}

/* Joined: the buffer is full and this input holds part of it. The inputs that hold nothing are
 * what the join waits for: they go on; so does, up to twice the bound, an input that holds
 * messages but also has a silent lane (another key or shard of one input), which only reading
 * on can fill: paused, it would hold the join until the wait ran out, each time. At twice the
 * bound every input that holds messages pauses and the join releases without waiting
 * (join_work): the order may then break, and what comes older is counted late. */
static inline bool join_holds(const sea_pipeline_t *pl, const pl_input_t *in) {
  size_t n = sea__join_buffered(pl->join);
  uint32_t i = (uint32_t)in->index;
  if (n < pl->join_max || sea__join_input_buffered(pl->join, i) == 0)
    return false;
  return n / 2 >= pl->join_max || !sea__join_input_silent(pl->join, i);
}

void sea__pl_process_work(sea_pipeline_t *pl) {
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
        sea__pl_begin_stop(pl);
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
    sea__pl_advance_acks(pb->in); /* may free pb, once it is finished */
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
    if (!sea__pl_eos_stop_after_window(pl))
      sea__pl_begin_stop(pl);
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
      if (!sea__pl_eos_stop_after_window(pl))
        sea__pl_begin_stop(pl);
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
      sea__pl_begin_stop(pl);
      return;
    }
    pl->st.late += (uint64_t)rc;
  }
  sea__pl_process_work(pl);
}

void sea__pl_on_batch(sea_consumer_t *c, const sea_batch_t *batch) {
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
    sea__pl_begin_stop(pl);
    return;
  }
  sea_batch_retain(batch);
  pb->batch = batch;
  pb->in = in;
  pb->dead = false;
  pb->next_proc = pb->next_ack = 0;
  pb->in_next = pb->work_next = NULL;
  pb->jnodes = NULL;
  pb->hold = NULL;
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
  sea__pl_process_work(pl);
}

void sea__pl_on_end(sea_consumer_t *c, int status) {
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
    sea__pl_process_work(pl);
  else
    sea__pl_maybe_finish(pl);
}
