/* mem_consumer.c: consumers. Opening (subscription, group, reader), each turn's operations and
 * batch, pause and resume, seek and rewind, assign and unassign, acks and commits, closing.
 */
#include <stdint.h>
#include <string.h>

#include "mem_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Consumer
 * ---------------------------------------------------------------------------------------------- */

static void consumer_free(mem_consumer_t *mc) {
  mem_reader_free(&mc->own);
  sea_host->free(mc->keys);
  sea_host->free(mc->in);
  sea_host->free(mc->inbox);
  sea_host->free(mc->ops);
  sea_host->free(mc);
}

int mem_consumer_open(void *streamer_impl, sea_consumer_t *c, const sea_open_args_t *args,
                      void **impl) {
  mem_broker_t *b = ((mem_streamer_t *)streamer_impl)->broker;
  mem_consumer_t *mc;
  size_t i;

  mc = sea_host->calloc(1, sizeof *mc);
  if (mc == NULL)
    goto nomem;
  mc->broker = b;
  mc->c = c;
  mc->rt = args->rt;
  mc->mode = args->mode;
  mc->batch_size = args->batch_size > 0 ? args->batch_size : MEM_BATCH_DEFAULT;
  mc->stop_at_end = args->stop_at_end;

  if (args->key_count > 0) {
    mc->keys = mem_array(NULL, args->key_count, sizeof *mc->keys);
    if (mc->keys == NULL)
      goto nomem;
    for (i = 0; i < args->key_count; i++) {
      mc->keys[i] = mem_key(args->keys[i]);
      if (mc->keys[i] == NULL) {
        sea_host->set_error(args->rt, "mem: invalid stream key '%s'",
                            args->keys[i] ? args->keys[i] : "(null)");
        consumer_free(mc);
        return SEA_EKEY;
      }
    }
    mc->key_count = args->key_count;
  }

  mc->in = sea_host->calloc(b->log_cap, sizeof *mc->in);
  mc->own.next = sea_host->calloc(b->log_cap, sizeof *mc->own.next);
  mc->inbox_cap = mc->batch_size < MEM_INBOX_INITIAL ? mc->batch_size : MEM_INBOX_INITIAL;
  mc->inbox = mem_array(NULL, mc->inbox_cap, sizeof *mc->inbox);
  if (mc->in == NULL || mc->own.next == NULL || mc->inbox == NULL)
    goto nomem;

  /* Groups keep positions in RESUMABLE and LOAD_BALANCED modes only. */
  if (args->mode != SEA_MODE_REALTIME && args->group != NULL) {
    mc->group = mem_broker_group(b, args->group);
    if (mc->group == NULL)
      goto nomem;
  }
  mc->reader =
      args->mode == SEA_MODE_LOAD_BALANCED && mc->group != NULL ? &mc->group->reader : &mc->own;
  /* A group's shared positions start where its first member says; later members join them. */
  if (mc->reader->member_count == 0)
    mem_reader_init(b, mc->reader, args, mc->group);
  if (mem_reader_join(mc->reader, mc) != 0)
    goto nomem;

  for (i = 0; i < b->log_count; i++)
    mc->in[i] = (uint8_t)mem_consumer_subscribed(mc, b->logs[i].key);
  mc->next = b->consumers;
  b->consumers = mc;
  *impl = mc;
  return 0;

nomem:
  sea_host->set_error(args->rt, "mem: out of memory");
  if (mc != NULL)
    consumer_free(mc);
  return SEA_ENOMEM;
}

static void consumer_end(mem_consumer_t *mc, int status, const char *msg) {
  mc->ended = 1;
  sea_host->consumer_end(mc->c, status, "%s", msg);
}

/* A batch of the inbox's messages. Each message is the stored struct, with one more reference to
 * its block for the batch to own. */
static sea_batch_t *consumer_take_batch(mem_consumer_t *mc) {
  const mem_broker_t *b = mc->broker;
  sea_batch_t *batch = sea_host->batch_new(mc->inbox_count);
  size_t i;
  if (batch == NULL)
    return NULL;
  for (i = 0; i < mc->inbox_count; i++) {
    const sea_message_t *src = &b->logs[mc->inbox[i].log].msgs[mc->inbox[i].seq];
    sea_message_t *dst = &batch->msgs[batch->count++];
    *dst = *src;
    dst->payload.block = sea_host->block_ref(src->payload.block);
  }
  mc->inbox_count = 0;
  return batch;
}

/* One turn of a consumer: complete its operations, then deliver one batch. Every host call here
 * may run user code that pauses or closes this consumer (or others), so each is followed by a
 * look at mc->closed and mem_consumer_active before going on. */
static void consumer_run(mem_consumer_t *mc) {
  sea_batch_t *batch;

  /* seek, rewind and commit were asked for before this turn's delivery, so they complete first. */
  while (mc->op_count > 0 && !mc->closed) {
    sea_op_t *op = mc->ops[0];
    mc->op_count--;
    memmove(mc->ops, mc->ops + 1, mc->op_count * sizeof *mc->ops);
    sea_host->op_done(op, 0, NULL);
  }
  if (!mem_consumer_active(mc))
    return;

  if (mc->inbox_count == 0)
    mem_reader_deal(mc->broker, mc->reader, mc);
  if (mc->inbox_count > 0) {
    batch = consumer_take_batch(mc);
    if (batch == NULL) {
      mem_consumer_return_inbox(mc);
      consumer_end(mc, SEA_ENOMEM, "mem: out of memory for a batch");
      return;
    }
    sea_host->deliver(mc->c, batch);
    if (!mem_consumer_active(mc))
      return;
  }

  if (mc->inbox_count > 0 || mem_consumer_has_more(mc))
    mem_consumer_arm(mc);
  else if (mc->stop_at_end)
    consumer_end(mc, SEA_EOF, "mem: end of stream");
}

void mem_consumer_tick(sea_timer_t *t, void *data) {
  mem_consumer_t *mc = data;
  mc->busy++;
  consumer_run(mc);
  if (--mc->busy == 0 && mc->closed)
    consumer_free(mc);
}

int mem_consumer_start(void *impl) {
  mem_consumer_t *mc = impl;
  if (mc->started)
    return SEA_ESTATE;
  mc->started = 1;
  mem_consumer_wake(mc);
  return 0;
}

int mem_consumer_pause(void *impl) {
  mem_consumer_t *mc = impl;
  mc->paused = 1;
  mem_consumer_return_inbox(mc);
  return 0;
}

int mem_consumer_resume(void *impl) {
  mem_consumer_t *mc = impl;
  mc->paused = 0;
  mem_consumer_wake(mc);
  return 0;
}

/* Queue an operation to complete on the next turn. */
static int consumer_add_op(mem_consumer_t *mc, sea_op_t *op) {
  if (SEA_GROW(mc->ops, mc->op_cap, mc->op_count + 1, MEM_GROW_FIRST) != 0)
    return SEA_ENOMEM;
  mc->ops[mc->op_count++] = op;
  mem_consumer_arm(mc);
  return 0;
}

/* Move the positions of every log the consumer reads (by_time: to the first message at or after
 * ts; else to pos). In a group this moves the shared positions, as Kafka's seek does. */
static void consumer_reposition(mem_consumer_t *mc, int by_time, int64_t ts, sea_pos_t pos) {
  const mem_broker_t *b = mc->broker;
  mem_reader_t *r = mc->reader;
  size_t i, keep = 0;

  /* What was dealt and not delivered belongs to the old positions. */
  mc->inbox_count = 0;
  for (i = 0; i < r->requeue_count; i++)
    if (!mc->in[r->requeue[i].log])
      r->requeue[keep++] = r->requeue[i];
  r->requeue_count = keep;

  for (i = 0; i < b->log_count; i++) {
    if (!mc->in[i])
      continue;
    if (by_time)
      r->next[i] = mem_log_seek(&b->logs[i], ts);
    else if (pos.kind == SEA_POS_BEGINNING)
      r->next[i] = 0;
    else if (pos.kind == SEA_POS_AT)
      r->next[i] = pos.seq; /* may be past the end: reading resumes when the log gets there */
    else
      r->next[i] = b->logs[i].count;
  }
}

int mem_consumer_seek(void *impl, int64_t timestamp_us, sea_op_t *op) {
  mem_consumer_t *mc = impl;
  sea_pos_t unused = {SEA_POS_BEGINNING, 0};
  int rc = consumer_add_op(mc, op);
  if (rc == 0)
    consumer_reposition(mc, 1, timestamp_us, unused);
  return rc;
}

int mem_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  mem_consumer_t *mc = impl;
  int rc;
  if (pos.kind != SEA_POS_BEGINNING && pos.kind != SEA_POS_END && pos.kind != SEA_POS_AT)
    return SEA_EINVAL;
  rc = consumer_add_op(mc, op);
  if (rc == 0)
    consumer_reposition(mc, 0, 0, pos);
  return rc;
}

int mem_consumer_assign(void *impl, const char *stream_key, uint64_t shard) {
  mem_consumer_t *mc = impl;
  const char *key = mem_key(stream_key);
  size_t L;

  if (key == NULL || !mem_consumer_subscribed(mc, key))
    return SEA_EKEY;
  /* The log may not exist yet; it is made now so that the choice has a row to live in. */
  if (mem_broker_log(mc->broker, key, shard, &L) != 0)
    return SEA_ENOMEM;
  mem_consumer_return_inbox(mc);
  if (!mc->assigned) {
    /* The first assign narrows the consumer from its whole subscription to what it assigns. */
    mc->assigned = 1;
    memset(mc->in, 0, mc->broker->log_count * sizeof *mc->in);
  }
  mc->in[L] = 1;
  mem_consumer_wake(mc);
  return 0;
}

int mem_consumer_unassign(void *impl, const char *stream_key, uint64_t shard) {
  mem_consumer_t *mc = impl;
  const char *key = mem_key(stream_key);
  size_t L;

  if (key == NULL || !mem_consumer_subscribed(mc, key))
    return SEA_EKEY;
  if (mem_broker_find_log(mc->broker, key, shard, &L) != 0) {
    if (mc->assigned)
      return SEA_EINVAL; /* never assigned */
    if (mem_broker_log(mc->broker, key, shard, &L) != 0)
      return SEA_ENOMEM;
  }
  if (mc->assigned && !mc->in[L])
    return SEA_EINVAL;
  mem_consumer_return_inbox(mc);
  mc->in[L] = 0;
  return 0;
}

int mem_consumer_ack(void *impl, const sea_message_t *m) {
  mem_consumer_t *mc = impl;
  const char *key;
  mem_commit_t *cm;
  size_t L;

  if (mc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  if (m == NULL)
    return SEA_EINVAL;
  if ((key = mem_key(m->meta.stream_key)) == NULL)
    return SEA_EKEY;
  if (mem_broker_find_log(mc->broker, key, m->meta.shard_id, &L) != 0 ||
      m->meta.seq >= mc->broker->logs[L].count)
    return SEA_EINVAL; /* not a message of this broker */
  if (mc->group == NULL)
    return 0; /* nowhere to keep it */
  cm = &mc->group->commit[L];
  if (m->meta.seq + 1 > cm->acked)
    cm->acked = m->meta.seq + 1;
  return 0;
}

int mem_consumer_commit(void *impl, sea_op_t *op) {
  mem_consumer_t *mc = impl;
  size_t i;
  int rc;

  if (mc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  if ((rc = consumer_add_op(mc, op)) != 0)
    return rc;
  if (mc->group != NULL)
    for (i = 0; i < mc->broker->log_count; i++)
      mc->group->commit[i].committed = mc->group->commit[i].acked;
  return 0;
}

/* Closing inside one of our own callbacks (busy) leaves the struct for mem_consumer_tick to free;
 * the consumer is out of the broker either way. Outstanding operations are dropped: the host
 * cancels them. */
void mem_consumer_close(void *impl) {
  mem_consumer_t *mc = impl;
  mem_consumer_t **pp;

  sea_host->timer_close(mc->timer);
  mc->timer = NULL;
  if (mc->reader != &mc->own)
    mem_consumer_return_inbox(mc); /* to the rest of the group */
  mc->inbox_count = 0;
  mc->op_count = 0;
  mc->closed = 1;
  mem_reader_leave(mc->reader, mc);
  for (pp = &mc->broker->consumers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == mc) {
      *pp = mc->next;
      break;
    }
  if (mc->busy == 0)
    consumer_free(mc);
}
