/* mem_list.c: sea_streamer_list for mem://. The broker's logs and groups are gathered into rows
 * at the call and sent from a timer on the next turn; a streamer's disconnect drops its listings
 * not yet sent (mem_list_abandon).
 */
#include <stdint.h>
#include <string.h>

#include "../list_rows.h"
#include "mem_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Listing: the broker's logs and groups, gathered at the call and sent on the next turn
 * ---------------------------------------------------------------------------------------------- */

typedef struct mem_listing {
  struct mem_listing *next; /* in its streamer's lists */
  mem_streamer_t *ms;
  sea_op_t *op;
  sea_timer_t *timer;
  sea_list_emit_fn emit;
  void *ctx;
  lrows_t rows;
} mem_listing_t;

static void listing_free(mem_listing_t *l) {
  mem_listing_t **pp;
  for (pp = &l->ms->lists; *pp != NULL; pp = &(*pp)->next)
    if (*pp == l) {
      *pp = l->next;
      break;
    }
  sea_host->timer_close(l->timer); /* from inside its callback too */
  lrows_free(&l->rows);
  sea_host->free(l);
}

void mem_list_abandon(mem_streamer_t *ms) {
  while (ms->lists != NULL)
    listing_free(ms->lists);
}

static void mem_list_tick(sea_timer_t *t, void *data) {
  mem_listing_t *l = data;
  size_t i;
  sea_op_t *op = l->op;
  for (i = 0; i < l->rows.n; i++)
    l->emit(l->ctx, &l->rows.v[i]);
  listing_free(l);
  sea_host->op_done(op, 0, NULL);
}

/* Logs in (key, shard) order, as indexes into b->logs. */
static size_t *sorted_logs(const mem_broker_t *b) {
  size_t *v = mem_array(NULL, b->log_count, sizeof *v), i, k;
  if (v == NULL)
    return NULL;
  for (i = 0; i < b->log_count; i++) {
    const mem_log_t *x = &b->logs[i];
    for (k = i; k > 0; k--) {
      const mem_log_t *y = &b->logs[v[k - 1]];
      int c = strcmp(y->key, x->key);
      if (c < 0 || (c == 0 && y->shard < x->shard))
        break;
      v[k] = v[k - 1];
    }
    v[k] = i;
  }
  return v;
}

static int64_t log_ts(const mem_log_t *log, size_t seq) {
  return log->count > seq ? log->msgs[seq].meta.timestamp_us : -1;
}

static void list_streams(const mem_broker_t *b, const size_t *order, const sea_list_args_t *a,
                         lrows_t *rows) {
  size_t i = 0, e, k;
  while (i < b->log_count) {
    const char *key = b->logs[order[i]].key;
    int64_t messages = 0, first = -1, last = -1;
    for (e = i; e < b->log_count && b->logs[order[e]].key == key; e++) {
      const mem_log_t *log = &b->logs[order[e]];
      messages += (int64_t)log->count;
      if (log->count > 0 && (first < 0 || log_ts(log, 0) < first))
        first = log_ts(log, 0);
      if (log->count > 0 && log_ts(log, log->count - 1) > last)
        last = log_ts(log, log->count - 1);
    }
    if (lrows_wanted(a, key, strlen(key))) {
      sea_list_row_t *r = lrows_add(rows, SEA_LIST_STREAM);
      if (r == NULL)
        return;
      r->stream = key; /* interned: lives as long as the process */
      r->shards = (int64_t)(e - i);
      r->messages = messages;
      r->first_ts_us = first;
      r->last_ts_us = last;
      for (k = i; k < e; k++) {
        const mem_log_t *log = &b->logs[order[k]];
        if ((r = lrows_add(rows, SEA_LIST_SHARD)) == NULL)
          return;
        r->stream = key;
        r->shard = (int64_t)log->shard;
        r->messages = (int64_t)log->count;
        if (log->count > 0) {
          r->first_seq = 0;
          r->last_seq = (int64_t)log->count - 1;
          r->first_ts_us = log_ts(log, 0);
          r->last_ts_us = log_ts(log, log->count - 1);
        }
      }
    }
    i = e;
  }
}

/* Per group: a row of its own (members, lag in all), then one per log of each key it committed
 * on: committed (the next seq to read) and lag (what is after it; all of a log without a
 * commit). */
static void list_groups(const mem_broker_t *b, const size_t *order, const sea_list_args_t *a,
                        lrows_t *rows) {
  const mem_group_t *g;
  const mem_consumer_t *mc;
  size_t i, k;
  for (g = b->groups; g != NULL; g = g->next) {
    int64_t lag = 0, members = 0;
    size_t logs = 0, first = rows->n;
    sea_list_row_t *r = lrows_add(rows, SEA_LIST_GROUP);
    if (r == NULL)
      return;
    r->group = lrows_str(rows, g->name);
    for (mc = b->consumers; mc != NULL; mc = mc->next)
      members += mc->group == g && !mc->closed;
    rows->v[first].consumers = members;
    for (i = 0; i < b->log_count; i++) {
      const mem_log_t *log = &b->logs[order[i]];
      int on_key = 0;
      if (!lrows_wanted(a, log->key, strlen(log->key)))
        continue;
      for (k = 0; k < b->log_count && !on_key; k++)
        on_key = b->logs[k].key == log->key && g->commit[k].committed > 0;
      if (!on_key)
        continue;
      uint64_t next = g->commit[order[i]].committed;
      if ((r = lrows_add(rows, SEA_LIST_GROUP)) == NULL)
        return;
      r->group = lrows_str(rows, g->name);
      r->stream = log->key;
      r->shard = (int64_t)log->shard;
      r->committed = next > 0 ? (int64_t)next : -1;
      r->lag = (int64_t)(log->count - (next < log->count ? next : log->count));
      r->low = 0;
      r->high = (int64_t)log->count;
      lag += r->lag;
      logs++;
    }
    if (logs == 0 && a->key_count > 0)
      rows->n = first; /* nothing on the keys asked for: left out */
    else
      rows->v[first].lag = logs > 0 ? lag : -1;
  }
}

int mem_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  mem_streamer_t *ms = impl;
  const mem_broker_t *b = ms->broker;
  mem_listing_t *l = sea_host->calloc(1, sizeof *l);
  size_t *order = sorted_logs(b);
  if (l == NULL || order == NULL) {
    sea_host->free(l);
    sea_host->free(order);
    sea_host->set_error(args->rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  list_streams(b, order, args, &l->rows);
  list_groups(b, order, args, &l->rows);
  sea_host->free(order);
  l->ms = ms;
  l->op = op;
  l->emit = args->emit;
  l->ctx = args->ctx;
  if (l->rows.oom || (l->timer = sea_host->timer_init(args->rt, mem_list_tick, l)) == NULL) {
    lrows_free(&l->rows);
    sea_host->free(l);
    sea_host->set_error(args->rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  l->next = ms->lists;
  ms->lists = l;
  sea_host->timer_start(l->timer, 0, 0);
  return 0;
}
