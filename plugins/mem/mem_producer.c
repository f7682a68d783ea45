/* mem_producer.c: producers. A send stores a copy in its log and wakes the log's consumers; the
 * receipts and producer_ready come on the next turn (with hold_receipts, on the turn after a
 * push). The host completes flush and end from the receipts. */
#include <stdint.h>
#include <string.h>

#include "mem_internal.h"

static void producer_tick(sea_timer_t *t, void *data);

/* ------------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------------- */

static void producer_arm(mem_producer_t *mp) {
  if (mp->closed)
    return;
  if (mp->timer == NULL)
    mp->timer = sea_host->timer_init(mp->rt, producer_tick, mp);
  if (sea_host->timer_start(mp->timer, 0, 0) != 0) /* a pending one stays: it runs once */
    sea_host->log(SEA_LOG_ERROR, "mem", "cannot start a timer: receipts stall");
}

static int producer_has_room(const mem_producer_t *mp) {
  return mp->capacity == 0 || mp->taken - mp->receipted < mp->capacity;
}

static void producer_free(mem_producer_t *mp) {
  sea_host->free(mp->pending);
  sea_host->free(mp);
}

int mem_producer_open(void *streamer_impl, sea_producer_t *p, const sea_open_args_t *args,
                      void **impl) {
  const sea_options_t *o = args->backend_options;
  mem_producer_t *mp;

  mp = sea_host->calloc(1, sizeof *mp);
  if (mp == NULL) {
    sea_host->set_error(args->rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  mp->broker = ((mem_streamer_t *)streamer_impl)->broker;
  mp->p = p;
  mp->rt = args->rt;
  mp->anchor = args->anchor;
  mp->max_payload = args->max_payload;
  mp->capacity = sea_host->option_u64(o, "capacity"); /* 0 (not given): no limit */
  mp->has_fail_after = sea_host->option_get(o, "fail_after") != NULL;
  mp->fail_after = sea_host->option_u64(o, "fail_after");
  mp->hold_receipts = sea_host->option_bool(o, "hold_receipts");
  *impl = mp;
  return 0;
}

int mem_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  mem_producer_t *mp = impl;
  mem_broker_t *b = mp->broker;
  mem_receipt_t *rec;
  const char *key;
  size_t L = 0;
  int stored = 0;

  if (!producer_has_room(mp)) {
    mp->blocked = 1;
    return SEA_EAGAIN;
  }
  if (mp->max_payload > 0 && m->payload.len > mp->max_payload)
    return SEA_ETOOBIG;
  key = mem_key(m->meta.stream_key != NULL ? m->meta.stream_key : mp->anchor);
  if (key == NULL)
    return SEA_EKEY;
  /* Room for the receipt first, so that nothing is stored that could not be receipted. */
  if (SEA_GROW(mp->pending, mp->pending_cap, mp->pending_count + 1, MEM_GROW_FIRST) != 0)
    return SEA_ENOMEM;
  rec = &mp->pending[mp->pending_count];
  memset(rec, 0, sizeof *rec);
  rec->token = token;

  if (mp->has_fail_after && mp->taken == mp->fail_after) {
    rec->status = SEA_EIO; /* fault injection: this one send fails, and is not stored */
  } else {
    mem_log_t *log;
    sea_message_t *slot;
    if (mp->has_last_log && b->logs[mp->last_log].key == key &&
        b->logs[mp->last_log].shard == m->meta.shard_id)
      L = mp->last_log;
    else if (mem_broker_log(b, key, m->meta.shard_id, &L) != 0)
      return SEA_ENOMEM;
    mp->last_log = L;
    mp->has_last_log = 1;
    log = &b->logs[L];
    if (SEA_GROW(log->msgs, log->cap, log->count + 1, MEM_GROW_FIRST) != 0)
      return SEA_ENOMEM;
    slot = &log->msgs[log->count];
    memset(slot, 0, sizeof *slot);
    if (mem_message_copy(m, slot) == NULL)
      return SEA_ENOMEM;
    slot->meta.stream_key = key;
    slot->meta.shard_id = m->meta.shard_id;
    slot->meta.seq = log->count;
    slot->meta.timestamp_us = m->meta.timestamp_us != 0 ? m->meta.timestamp_us : sea_host->now_us();
    slot->backend_pos = slot->meta.seq;
    log->count++;
    rec->meta = slot->meta;
    stored = 1;
  }
  mp->pending_count++;
  mp->taken++;
  if (!mp->hold_receipts)
    producer_arm(mp);
  if (stored) {
    mem_consumer_t *mc;
    for (mc = b->consumers; mc != NULL; mc = mc->next)
      if (mc->in[L])
        mem_consumer_wake(mc);
  }
  return 0;
}

/* Give the receipts collected since the last turn, then producer_ready if a send was refused. Any
 * callback may close the producer. */
static void producer_tick(sea_timer_t *t, void *data) {
  mem_producer_t *mp = data;
  mem_receipt_t *recs = mp->pending;
  size_t n = mp->pending_count, i;

  /* Take the list: sends made from inside the callbacks start a new one, for the next turn. */
  mp->pending = NULL;
  mp->pending_count = 0;
  mp->pending_cap = 0;
  mp->busy++;

  for (i = 0; i < n && !mp->closed; i++) {
    mp->receipted++;
    sea_host->receipt(mp->p, recs[i].token, recs[i].status,
                      recs[i].status == 0 ? &recs[i].meta : NULL);
  }
  sea_host->free(recs);

  if (!mp->closed && mp->blocked && producer_has_room(mp)) {
    mp->blocked = 0;
    sea_host->producer_ready(mp->p);
  }
  if (--mp->busy == 0 && mp->closed)
    producer_free(mp);
}

/* A flush or end waits for the receipts: give what is held (hold_receipts) on the next turn. */
void mem_producer_push(void *impl, int end) {
  (void)end;
  if (((mem_producer_t *)impl)->pending_count > 0)
    producer_arm(impl);
}

/* Outstanding receipts are dropped: the host cancels them (and the flushes waiting for them). */
void mem_producer_close(void *impl) {
  mem_producer_t *mp = impl;
  sea_host->timer_close(mp->timer);
  mp->timer = NULL;
  mp->closed = 1;
  if (mp->busy == 0)
    producer_free(mp);
}
