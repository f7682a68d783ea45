/* mem_broker.c: the brokers of the process and what each keeps: a log per (stream key, shard)
 * holding copies of the messages sent, and the groups with their commits. Every per-log table of
 * a broker's consumers and groups grows with its logs (broker_grow), so a new log is one row.
 */
#include <stdint.h>
#include <string.h>

#include "mem_internal.h"

/* Every broker in the process. */
mem_broker_t *mem_brokers;

/* ------------------------------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------------------------------- */

/* Copy m's payload, key and headers into one new block, and point out's fields into it. The
 * header array lives in the block too: a consumer may keep a message as long as it holds the
 * block, and every pointer in the message must stay valid that long. Layout: the sea_kv_t array
 * (aligned), payload, key, then each header's name (NUL-terminated, for convenience) and value. */
sea_block_t *mem_message_copy(const sea_message_t *m, sea_message_t *out) {
  const size_t align = _Alignof(sea_kv_t);
  size_t size, i;
  sea_block_t *b;
  uint8_t *p;
  sea_kv_t *kv = NULL;

  if (m->header_count > (SIZE_MAX / 2) / sizeof(sea_kv_t))
    return NULL;
  size = align - 1 + m->header_count * sizeof(sea_kv_t);
  size += m->payload.len;
  if (m->key != NULL)
    size += m->key_len;
  for (i = 0; i < m->header_count; i++) {
    size += m->headers[i].name_len + 1;
    if (m->headers[i].value != NULL)
      size += m->headers[i].value_len;
  }

  b = sea_host->block_new(size);
  if (b == NULL)
    return NULL;
  p = sea_host->block_data(b);
  p += (align - (uintptr_t)p % align) % align; /* block data need not be aligned for sea_kv_t */

  if (m->header_count > 0) {
    kv = (sea_kv_t *)(void *)p;
    p += m->header_count * sizeof(sea_kv_t);
  }
  out->payload.data = p;
  out->payload.len = m->payload.len;
  out->payload.block = b;
  if (m->payload.len > 0)
    memcpy(p, m->payload.data, m->payload.len);
  p += m->payload.len;

  out->key = NULL;
  out->key_len = 0;
  if (m->key != NULL) {
    out->key = p;
    out->key_len = m->key_len;
    if (m->key_len > 0)
      memcpy(p, m->key, m->key_len);
    p += m->key_len;
  }

  for (i = 0; i < m->header_count; i++) {
    const sea_kv_t *h = &m->headers[i];
    kv[i].name = (const char *)p;
    kv[i].name_len = h->name_len;
    if (h->name_len > 0)
      memcpy(p, h->name, h->name_len);
    p[h->name_len] = '\0';
    p += h->name_len + 1;
    kv[i].value = NULL;
    kv[i].value_len = 0;
    if (h->value != NULL) {
      kv[i].value = p;
      kv[i].value_len = h->value_len;
      if (h->value_len > 0)
        memcpy(p, h->value, h->value_len);
      p += h->value_len;
    }
  }
  out->headers = kv;
  out->header_count = m->header_count;
  return b;
}

/* The first seq whose timestamp is at or after ts (the log's count if none). A linear scan,
 * since timestamps that senders give need not be in order. */
uint64_t mem_log_seek(const mem_log_t *log, int64_t ts) {
  size_t i;
  for (i = 0; i < log->count; i++)
    if (log->msgs[i].meta.timestamp_us >= ts)
      return i;
  return log->count;
}

/* ------------------------------------------------------------------------------------------------
 * Brokers and their logs
 * ---------------------------------------------------------------------------------------------- */

void mem_reader_free(mem_reader_t *r) {
  sea_host->free(r->next);
  sea_host->free(r->members);
  sea_host->free(r->requeue);
}

void mem_broker_free(mem_broker_t *b) {
  mem_broker_t **pp;
  size_t i, j;
  for (pp = &mem_brokers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == b) {
      *pp = b->next;
      break;
    }
  for (i = 0; i < b->log_count; i++) {
    for (j = 0; j < b->logs[i].count; j++)
      sea_host->block_unref(b->logs[i].msgs[j].payload.block);
    sea_host->free(b->logs[i].msgs);
  }
  while (b->groups != NULL) {
    mem_group_t *g = b->groups;
    b->groups = g->next;
    mem_reader_free(&g->reader);
    sea_host->free(g->commit);
    sea_host->free(g->name);
    sea_host->free(g);
  }
  sea_host->free(b->logs);
  sea_host->free(b->name);
  sea_host->free(b);
}

mem_broker_t *mem_broker_new(const char *name) {
  mem_broker_t *b = sea_host->calloc(1, sizeof *b);
  if (b == NULL)
    return NULL;
  b->name = mem_strdup(name);
  b->log_cap = MEM_LOGS_INITIAL;
  b->logs = mem_array(NULL, b->log_cap, sizeof *b->logs);
  if (b->name == NULL || b->logs == NULL) {
    mem_broker_free(b); /* not linked yet: the unlink finds nothing */
    return NULL;
  }
  b->next = mem_brokers;
  mem_brokers = b;
  return b;
}

/* The index of the log of (key, shard), key interned. */
int mem_broker_find_log(const mem_broker_t *b, const char *key, uint64_t shard, size_t *index) {
  size_t i;
  for (i = 0; i < b->log_count; i++)
    if (b->logs[i].key == key && b->logs[i].shard == shard) {
      *index = i;
      return 0;
    }
  return SEA_EINVAL;
}

int mem_consumer_subscribed(const mem_consumer_t *mc, const char *key) {
  size_t i;
  if (mc->key_count == 0)
    return 1;
  for (i = 0; i < mc->key_count; i++)
    if (mc->keys[i] == key)
      return 1;
  return 0;
}

/* Double every per-log table. If one allocation fails the tables that grew stay bigger, which is
 * harmless, and log_cap keeps its old value. */
static int broker_grow(mem_broker_t *b) {
  size_t cap = b->log_cap * 2;
  mem_consumer_t *mc;
  mem_group_t *g;
  void *q;

  if ((q = mem_array(b->logs, cap, sizeof *b->logs)) == NULL)
    return SEA_ENOMEM;
  b->logs = q;
  for (mc = b->consumers; mc != NULL; mc = mc->next) {
    if ((q = mem_array(mc->in, cap, sizeof *mc->in)) == NULL)
      return SEA_ENOMEM;
    mc->in = q;
    if ((q = mem_array(mc->own.next, cap, sizeof *mc->own.next)) == NULL)
      return SEA_ENOMEM;
    mc->own.next = q;
  }
  for (g = b->groups; g != NULL; g = g->next) {
    if ((q = mem_array(g->commit, cap, sizeof *g->commit)) == NULL)
      return SEA_ENOMEM;
    g->commit = q;
    if ((q = mem_array(g->reader.next, cap, sizeof *g->reader.next)) == NULL)
      return SEA_ENOMEM;
    g->reader.next = q;
  }
  b->log_cap = cap;
  return 0;
}

/* The log of (key, shard), created if need be (key interned). A new log gets its row in every
 * consumer's and group's tables: read by the consumers subscribed to its key (unless they chose
 * their logs with assign), from the start each reader chose for new logs. */
int mem_broker_log(mem_broker_t *b, const char *key, uint64_t shard, size_t *index) {
  mem_consumer_t *mc;
  mem_group_t *g;
  mem_log_t *log;
  size_t i;

  if (mem_broker_find_log(b, key, shard, index) == 0)
    return 0;
  if (b->log_count == b->log_cap && broker_grow(b) != 0)
    return SEA_ENOMEM;
  i = b->log_count++;
  log = &b->logs[i];
  memset(log, 0, sizeof *log);
  log->key = key;
  log->shard = shard;
  for (mc = b->consumers; mc != NULL; mc = mc->next) {
    mc->in[i] = !mc->assigned && mem_consumer_subscribed(mc, key);
    mc->own.next[i] = mc->own.new_log_seq;
  }
  for (g = b->groups; g != NULL; g = g->next) {
    memset(&g->commit[i], 0, sizeof g->commit[i]);
    g->reader.next[i] = g->reader.new_log_seq;
  }
  *index = i;
  return 0;
}

mem_group_t *mem_broker_group(mem_broker_t *b, const char *name) {
  mem_group_t *g;
  for (g = b->groups; g != NULL; g = g->next)
    if (strcmp(g->name, name) == 0)
      return g;
  g = sea_host->calloc(1, sizeof *g);
  if (g == NULL)
    return NULL;
  g->name = mem_strdup(name);
  g->commit = sea_host->calloc(b->log_cap, sizeof *g->commit);
  g->reader.next = sea_host->calloc(b->log_cap, sizeof *g->reader.next);
  if (g->name == NULL || g->commit == NULL || g->reader.next == NULL) {
    mem_reader_free(&g->reader);
    sea_host->free(g->commit);
    sea_host->free(g->name);
    sea_host->free(g);
    return NULL;
  }
  g->next = b->groups;
  b->groups = g;
  return g;
}
