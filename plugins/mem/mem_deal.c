/* mem_deal.c: dealing messages from a reader's positions to its consumers' inboxes, one log and
 * one member in turn; where a consumer starts in each log; members joining and leaving a reader.
 */
#include <stdint.h>
#include <string.h>

#include "mem_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Dealing: from a reader's positions to its members' inboxes
 * ---------------------------------------------------------------------------------------------- */

int mem_consumer_active(const mem_consumer_t *mc) {
  return mc->started && !mc->paused && !mc->ended && !mc->closed;
}

/* Run mem_consumer_tick on the next loop turn. */
void mem_consumer_arm(mem_consumer_t *mc) {
  if (mc->closed)
    return;
  if (mc->timer == NULL)
    mc->timer = sea_host->timer_init(mc->rt, mem_consumer_tick, mc);
  if (sea_host->timer_start(mc->timer, 0, 0) != 0) /* a pending one stays: it runs once */
    sea_host->log(SEA_LOG_ERROR, "mem", "cannot start a timer: a consumer stalls");
}

void mem_consumer_wake(mem_consumer_t *mc) {
  if (mem_consumer_active(mc))
    mem_consumer_arm(mc);
}

/* Whether the inbox can take one more message (growing it up to the batch size). */
static int consumer_room(mem_consumer_t *mc) {
  size_t need;
  if (mc->inbox_count >= mc->batch_size)
    return 0;
  if (mc->inbox_count < mc->inbox_cap)
    return 1;
  need = mc->inbox_cap * 2;
  if (need > mc->batch_size)
    need = mc->batch_size;
  return SEA_GROW(mc->inbox, mc->inbox_cap, need, MEM_GROW_FIRST) == 0;
}

/* The member to deal a message of log L to: the next in turn that is active, reads L and has room.
 * NULL if none. */
static mem_consumer_t *reader_pick(mem_reader_t *r, size_t L) {
  size_t i;
  for (i = 0; i < r->member_count; i++) {
    size_t k = (r->turn + i) % r->member_count;
    mem_consumer_t *mc = r->members[k];
    if (mem_consumer_active(mc) && mc->in[L] && consumer_room(mc)) {
      r->turn = (k + 1) % r->member_count;
      return mc;
    }
  }
  return NULL;
}

static void consumer_push(mem_consumer_t *mc, size_t L, uint64_t seq) {
  mc->inbox[mc->inbox_count].log = L;
  mc->inbox[mc->inbox_count].seq = seq;
  mc->inbox_count++;
}

/* Deal what is available: given-back messages first, then one message per log in turn (so no log
 * starves the others), each to the next member in turn, until no member can take more. `self` is
 * the member whose turn is running; the others that got messages are woken. */
void mem_reader_deal(mem_broker_t *b, mem_reader_t *r, mem_consumer_t *self) {
  size_t i, keep = 0, idle = 0;
  mem_consumer_t *mc;

  for (i = 0; i < r->requeue_count; i++) {
    mem_entry_t e = r->requeue[i];
    if ((mc = reader_pick(r, e.log)) != NULL)
      consumer_push(mc, e.log, e.seq);
    else
      r->requeue[keep++] = e;
  }
  r->requeue_count = keep;

  /* Stop after a whole round of logs gave nothing. */
  while (b->log_count > 0 && idle < b->log_count) {
    size_t L = r->rr;
    r->rr = (r->rr + 1) % b->log_count;
    if (r->next[L] < b->logs[L].count && (mc = reader_pick(r, L)) != NULL) {
      consumer_push(mc, L, r->next[L]++);
      idle = 0;
    } else {
      idle++;
    }
  }

  for (i = 0; i < r->member_count; i++)
    if (r->members[i] != self && r->members[i]->inbox_count > 0)
      mem_consumer_arm(r->members[i]);
}

/* Whether the consumer's reader has something for it. */
int mem_consumer_has_more(const mem_consumer_t *mc) {
  const mem_broker_t *b = mc->broker;
  const mem_reader_t *r = mc->reader;
  size_t i;
  for (i = 0; i < b->log_count; i++)
    if (mc->in[i] && r->next[i] < b->logs[i].count)
      return 1;
  for (i = 0; i < r->requeue_count; i++)
    if (mc->in[r->requeue[i].log])
      return 1;
  return 0;
}

/* Give back what was dealt to this consumer and not delivered. Alone on its positions it simply
 * steps back, so the messages come again in order; in a group the shared positions have moved on
 * for everyone, so the messages go to the group's requeue and the other members are woken. */
void mem_consumer_return_inbox(mem_consumer_t *mc) {
  mem_reader_t *r = mc->reader;
  size_t i;

  if (mc->inbox_count == 0)
    return;
  if (r == &mc->own) {
    for (i = 0; i < mc->inbox_count; i++)
      if (r->next[mc->inbox[i].log] > mc->inbox[i].seq)
        r->next[mc->inbox[i].log] = mc->inbox[i].seq;
  } else {
    size_t all = r->requeue_count + mc->inbox_count;
    if (SEA_GROW(r->requeue, r->requeue_cap, all, MEM_GROW_FIRST) == 0) {
      memcpy(r->requeue + r->requeue_count, mc->inbox, mc->inbox_count * sizeof *mc->inbox);
      r->requeue_count += mc->inbox_count;
    } else {
      sea_host->log(SEA_LOG_ERROR, "mem", "out of memory: %zu messages of group '%s' are lost",
                    mc->inbox_count, mc->group->name);
    }
    for (i = 0; i < r->member_count; i++)
      if (r->members[i] != mc)
        mem_consumer_wake(r->members[i]);
  }
  mc->inbox_count = 0;
}

/* Where a consumer opened with args a starts in log L (g: its group, if it keeps positions). */
static uint64_t start_seq(const mem_log_t *log, const sea_open_args_t *a, const mem_group_t *g,
                          size_t L) {
  if (a->has_start) {
    if (a->start_is_time)
      return mem_log_seek(log, a->start_ts_us);
    switch (a->start_pos.kind) {
    case SEA_POS_BEGINNING:
      return 0;
    case SEA_POS_AT:
      return a->start_pos.seq;
    case SEA_POS_END:
    default:
      return log->count;
    }
  }
  if (a->start_from_end > 0) {
    uint64_t n = (uint64_t)a->start_from_end;
    return log->count > n ? log->count - n : 0;
  }
  if (g != NULL) {
    if (g->commit[L].committed > 0)
      return g->commit[L].committed;
    return a->reset_earliest ? 0 : log->count;
  }
  return log->count;
}

void mem_reader_init(const mem_broker_t *b, mem_reader_t *r, const sea_open_args_t *a,
                     const mem_group_t *g) {
  size_t i;
  for (i = 0; i < b->log_count; i++)
    r->next[i] = start_seq(&b->logs[i], a, g, i);
  r->new_log_seq =
      a->has_start && !a->start_is_time && a->start_pos.kind == SEA_POS_AT ? a->start_pos.seq : 0;
  r->turn = 0;
  r->rr = 0;
  r->requeue_count = 0;
}

int mem_reader_join(mem_reader_t *r, mem_consumer_t *mc) {
  if (SEA_GROW(r->members, r->member_cap, r->member_count + 1, MEM_GROW_FIRST) != 0)
    return SEA_ENOMEM;
  r->members[r->member_count++] = mc;
  return 0;
}

void mem_reader_leave(mem_reader_t *r, mem_consumer_t *mc) {
  size_t i;
  for (i = 0; i < r->member_count; i++)
    if (r->members[i] == mc)
      break;
  if (i == r->member_count)
    return;
  memmove(r->members + i, r->members + i + 1, (r->member_count - i - 1) * sizeof *r->members);
  r->member_count--;
  if (i < r->turn)
    r->turn--;
  if (r->turn >= r->member_count)
    r->turn = 0;
  if (r->member_count == 0)
    r->requeue_count = 0; /* the next member to join starts the positions afresh */
}
