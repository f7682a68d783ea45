/* mem.c: the mem:// backend, an in-memory broker for tests and a worked example for plugin authors.
 *
 * mem://NAME/key1,key2 connects to the broker called NAME (the empty name when the URI has no
 * node). Brokers belong to the process: every streamer that names one shares it, and it is freed
 * when the last of them disconnects. For each (stream key, shard) a broker keeps an append-only
 * log, and a message's seq is its index in that log: 0, 1, 2, ...
 *
 * Nothing here calls back into the host from inside a call the host made. Receipts, deliveries
 * and the completion of flush, end, seek, rewind and commit all come from 0 ms timers, so callers
 * meet real asynchronous behaviour, always in the same order.
 *
 * Producer. A send copies the message (payload, key, headers and the header array itself) into
 * one block, appends it to its log and wakes the consumers that read that log. The receipt comes
 * on the next loop turn. SEA_SEND_KEEP_META is not honoured for seq: a seq is always the index in
 * the log, because rewind, ack and commit rely on it. The shard is always m->meta.shard_id, and a
 * timestamp the message carries is always kept (0 means now). Options:
 *   capacity=N    at most N sends wait for their receipt; one more returns SEA_EAGAIN, and
 *                 host->producer_ready follows once the receipts have been given.
 *   fail_after=N  the (N+1)th send (only that one) gets its receipt with SEA_EIO and is not stored.
 *   hold_receipts=true  receipts wait for a flush or an end (a slow output: tests use it to make
 *                 receipts of two producers come back out of order).
 * end is flush: nothing marks a stream as ended.
 *
 * Consumer. It reads the logs of the keys it subscribed to (all of the broker's keys when it names
 * none, including keys that appear later), one message per log in turn, in batches of
 * args->batch_size (default 1000). Where it starts: start= if given, else start=-N, else for a
 * RESUMABLE or LOAD_BALANCED consumer with a group the group's committed position, or without one
 * the beginning if reset=earliest; else the end. A log that appears after the consumer opened is
 * read from its beginning, since all of it is new (or from seq N after start=N). A consumer with
 * stop_at_end ends with SEA_EOF once it has delivered everything there is.
 * Groups are named per broker and outlive their consumers (as long as the broker lives), so a
 * consumer that reopens in the group resumes from its commits. Acks and commits belong to the
 * group: a commit stores, per log, the highest seq acked so far + 1. Without a group, ack and
 * commit succeed and store nothing; in REALTIME mode both return SEA_ESTATE.
 * LOAD_BALANCED consumers of one group share their positions, and messages are dealt to them one
 * at a time in turn, so each message reaches one of them. A member that pauses, changes its
 * assignment or closes gives back what was dealt to it and not yet delivered.
 * assign(key, shard): the first one narrows the consumer to the pairs assigned; unassign removes a
 * pair. Both return SEA_EKEY for a key outside the subscription.
 *
 * Listing (sea_streamer_list): every (key, shard) log with its count, seq range (0 .. count - 1)
 * and time range, and per group its members and, per log of each key it committed on, the
 * committed position and the lag (messages after it). The rows are gathered when asked and sent
 * from a timer on the next turn; a streamer's disconnect drops its listings not yet sent.
 *
 * Threads: the broker registry has no lock, so every streamer that shares a broker must run on
 * one thread (several runtimes on that thread are fine).
 */
#include <stdint.h>
#include <string.h>

#include "../list_rows.h"
#include "seastreamer/plugin.h"

/* The host's table, given to the entry point (whose parameter is called host, hence the name). */
static const sea_host_t *mem_host;

#define MEM_BATCH_DEFAULT 1000
/* The first size of a broker's per-log tables; they double when the broker gains logs. */
#define MEM_LOGS_INITIAL 8
/* The first size of a consumer's inbox; it grows up to the batch size. */
#define MEM_INBOX_INITIAL 64
/* Our timers are "run on the next turn" timers: they start with timeout 0 and are stopped first
 * thing in their callback. They repeat only so that no reading of the host's rules could free them
 * behind our back after they fire: a repeating timer lives until timer_stop. */
#define MEM_TIMER_REPEAT_MS 1

typedef struct mem_consumer mem_consumer_t;

/* The log of one (stream key, shard). */
typedef struct mem_log {
  const char *key; /* interned, so keys compare by pointer */
  uint64_t shard;
  sea_message_t *msgs; /* msgs[seq]; each holds one reference to the block its bytes live in */
  size_t count;
  size_t cap;
} mem_log_t;

/* A message dealt to a consumer but not delivered yet: which log, which seq. */
typedef struct mem_entry {
  size_t log;
  uint64_t seq;
} mem_entry_t;

/* Reading positions and the consumers reading from them. A consumer normally has a reader of its
 * own; the LOAD_BALANCED consumers of a group share the group's, and that is all that makes them
 * load balanced: messages are dealt from the shared positions to the members in turn. */
typedef struct mem_reader {
  uint64_t *next; /* per log: the seq dealt next */
  mem_consumer_t **members;
  size_t member_count;
  size_t member_cap;
  size_t turn; /* the member dealt to next */
  size_t rr;   /* the log dealt from next */
  /* Messages a member gave back (it paused or left): dealt again before anything else. */
  mem_entry_t *requeue;
  size_t requeue_count;
  size_t requeue_cap;
  uint64_t new_log_seq; /* where to start in a log created later */
} mem_reader_t;

/* A group's acks and commits for one log. 0 means none; otherwise the value is a seq + 1. */
typedef struct mem_commit {
  uint64_t acked;
  uint64_t committed;
} mem_commit_t;

typedef struct mem_group {
  struct mem_group *next;
  char *name;
  mem_commit_t *commit; /* per log */
  mem_reader_t reader;  /* used by the group's LOAD_BALANCED members */
} mem_group_t;

typedef struct mem_broker {
  struct mem_broker *next;
  char *name;
  size_t refs; /* connected streamers */
  mem_log_t *logs;
  size_t log_count;
  /* The size of logs[] and of every per-log table of the broker's consumers and groups, so that
   * a new log needs no allocation beyond this one growth. */
  size_t log_cap;
  mem_consumer_t *consumers;
  mem_group_t *groups;
} mem_broker_t;

struct mem_consumer {
  mem_consumer_t *next; /* in broker->consumers */
  mem_broker_t *broker;
  sea_consumer_t *c;
  sea_runtime_t *rt;
  sea_mode_t mode;
  mem_group_t *group; /* NULL in REALTIME mode or without a group */
  mem_reader_t own;
  mem_reader_t *reader; /* &own, or &group->reader when load balanced */
  const char **keys;    /* the subscription, interned; key_count 0 = every key */
  size_t key_count;
  uint8_t *in;        /* per log: 1 if this consumer reads it */
  int assigned;       /* assign was called: only the assigned logs are read */
  mem_entry_t *inbox; /* dealt, to deliver on this consumer's next turn */
  size_t inbox_count;
  size_t inbox_cap;
  size_t batch_size;
  sea_op_t **ops; /* seek, rewind, commit: done on the next turn */
  size_t op_count;
  size_t op_cap;
  sea_timer_t *timer;
  int started;
  int paused;
  int ended;
  int stop_at_end;
  int closed;
  unsigned busy; /* inside a host callback: closing then only marks, and the callback frees */
};

/* A receipt waiting for the next turn. */
typedef struct mem_receipt {
  void *token;
  int status;
  sea_meta_t meta;
} mem_receipt_t;

/* A flush (or end) that completes once the first `target` sends have their receipts. */
typedef struct mem_flush {
  sea_op_t *op;
  uint64_t target;
} mem_flush_t;

typedef struct mem_producer {
  mem_broker_t *broker;
  sea_producer_t *p;
  sea_runtime_t *rt;
  const char *anchor;
  size_t max_payload;
  uint64_t capacity; /* 0 = no limit */
  int has_fail_after;
  uint64_t fail_after;
  int hold_receipts;
  uint64_t taken;     /* sends accepted */
  uint64_t receipted; /* receipts given; taken - receipted are in flight */
  mem_receipt_t *pending;
  size_t pending_count;
  size_t pending_cap;
  mem_flush_t *flushes;
  size_t flush_count;
  size_t flush_cap;
  size_t last_log; /* the log of the previous send: most sends go to the same one */
  int has_last_log;
  sea_timer_t *timer;
  int blocked; /* a send was refused with SEA_EAGAIN: producer_ready is owed */
  int ended;
  int closed;
  unsigned busy;
} mem_producer_t;

/* Options the backend understands, from backend_options. */
typedef struct mem_limits {
  uint64_t capacity;
  int has_fail_after;
  uint64_t fail_after;
  int hold_receipts;
} mem_limits_t;

/* Every broker in the process. */
static mem_broker_t *mem_brokers;

static void consumer_tick(sea_timer_t *t, void *data);
static void producer_tick(sea_timer_t *t, void *data);

/* ------------------------------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------------------------------- */

/* realloc for n elements, with the multiplication checked. */
static void *mem_array(void *p, size_t n, size_t size) {
  if (n == 0)
    n = 1;
  if (size != 0 && n > SIZE_MAX / size)
    return NULL;
  return mem_host->realloc(p, n * size);
}

/* Make room for `need` elements in an array of capacity *cap, doubling. Returns the array (p
 * itself if it was big enough), or NULL with p and *cap untouched. */
static void *mem_grow(void *p, size_t *cap, size_t need, size_t size) {
  size_t n = *cap ? *cap : 4;
  void *q;
  if (need <= *cap)
    return p;
  while (n < need)
    n *= 2;
  q = mem_array(p, n, size);
  if (q != NULL)
    *cap = n;
  return q;
}

static char *mem_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = mem_host->alloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* A decimal number without sign, spaces or overflow. */
static int mem_parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (s == NULL || *s == '\0')
    return SEA_EOPTION;
  for (; *s; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return SEA_EOPTION;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* The host gives us interned keys, but interning again is cheap and lets every comparison in this
 * file be a pointer comparison, whoever built the message. NULL if the key is not valid. */
static const char *mem_key(const char *key) {
  return key != NULL ? mem_host->stream_key(key, strlen(key)) : NULL;
}

/* Read backend_options. Connect, producer_open and consumer_open all check them, so that a typo
 * fails as early as possible; only producers use the values. */
static int mem_parse_options(sea_runtime_t *rt, const sea_options_t *o, mem_limits_t *lim) {
  size_t i, n;
  memset(lim, 0, sizeof *lim);
  if (o == NULL)
    return 0;
  n = mem_host->option_count(o);
  for (i = 0; i < n; i++) {
    const char *k, *v;
    uint64_t num;
    if (mem_host->option_at(o, i, &k, &v) != 0)
      continue;
    if (v == NULL)
      v = "";
    if (strcmp(k, "capacity") == 0) {
      if (mem_parse_u64(v, &num) != 0 || num == 0) {
        mem_host->set_error(rt, "mem: capacity=%s: expected a number of sends, at least 1", v);
        return SEA_EOPTION;
      }
      lim->capacity = num;
    } else if (strcmp(k, "fail_after") == 0) {
      if (mem_parse_u64(v, &num) != 0) {
        mem_host->set_error(rt, "mem: fail_after=%s: expected a number of sends", v);
        return SEA_EOPTION;
      }
      lim->has_fail_after = 1;
      lim->fail_after = num;
    } else if (strcmp(k, "hold_receipts") == 0) {
      if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        mem_host->set_error(rt, "mem: hold_receipts=%s: expected true or false", v);
        return SEA_EOPTION;
      }
      lim->hold_receipts = strcmp(v, "true") == 0;
    } else {
      if (mem_host->option_unknown != NULL)
        mem_host->option_unknown(rt, "mem", k, "capacity, fail_after, hold_receipts");
      else
        mem_host->set_error(
            rt, "mem: unknown option '%s' (known: capacity, fail_after, hold_receipts)", k);
      return SEA_EOPTION;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------------------------------- */

/* Copy m's payload, key and headers into one new block, and point out's fields into it. The
 * header array lives in the block too: a consumer may keep a message as long as it holds the
 * block, and every pointer in the message must stay valid that long. Layout: the sea_kv_t array
 * (aligned), payload, key, then each header's name (NUL-terminated, for convenience) and value. */
static sea_block_t *message_copy(const sea_message_t *m, sea_message_t *out) {
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

  b = mem_host->block_new(size);
  if (b == NULL)
    return NULL;
  p = mem_host->block_data(b);
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
static uint64_t log_seek(const mem_log_t *log, int64_t ts) {
  size_t i;
  for (i = 0; i < log->count; i++)
    if (log->msgs[i].meta.timestamp_us >= ts)
      return i;
  return log->count;
}

/* ------------------------------------------------------------------------------------------------
 * Brokers and their logs
 * ---------------------------------------------------------------------------------------------- */

static void reader_free(mem_reader_t *r) {
  mem_host->free(r->next);
  mem_host->free(r->members);
  mem_host->free(r->requeue);
}

static void broker_free(mem_broker_t *b) {
  mem_broker_t **pp;
  size_t i, j;
  for (pp = &mem_brokers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == b) {
      *pp = b->next;
      break;
    }
  for (i = 0; i < b->log_count; i++) {
    for (j = 0; j < b->logs[i].count; j++)
      mem_host->block_unref(b->logs[i].msgs[j].payload.block);
    mem_host->free(b->logs[i].msgs);
  }
  while (b->groups != NULL) {
    mem_group_t *g = b->groups;
    b->groups = g->next;
    reader_free(&g->reader);
    mem_host->free(g->commit);
    mem_host->free(g->name);
    mem_host->free(g);
  }
  mem_host->free(b->logs);
  mem_host->free(b->name);
  mem_host->free(b);
}

static mem_broker_t *broker_new(const char *name) {
  mem_broker_t *b = mem_host->calloc(1, sizeof *b);
  if (b == NULL)
    return NULL;
  b->name = mem_strdup(name);
  b->log_cap = MEM_LOGS_INITIAL;
  b->logs = mem_array(NULL, b->log_cap, sizeof *b->logs);
  if (b->name == NULL || b->logs == NULL) {
    broker_free(b); /* not linked yet: the unlink finds nothing */
    return NULL;
  }
  b->next = mem_brokers;
  mem_brokers = b;
  return b;
}

/* The index of the log of (key, shard), key interned. */
static int broker_find_log(const mem_broker_t *b, const char *key, uint64_t shard, size_t *index) {
  size_t i;
  for (i = 0; i < b->log_count; i++)
    if (b->logs[i].key == key && b->logs[i].shard == shard) {
      *index = i;
      return 0;
    }
  return SEA_EINVAL;
}

static int consumer_subscribed(const mem_consumer_t *mc, const char *key) {
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
static int broker_log(mem_broker_t *b, const char *key, uint64_t shard, size_t *index) {
  mem_consumer_t *mc;
  mem_group_t *g;
  mem_log_t *log;
  size_t i;

  if (broker_find_log(b, key, shard, index) == 0)
    return 0;
  if (b->log_count == b->log_cap && broker_grow(b) != 0)
    return SEA_ENOMEM;
  i = b->log_count++;
  log = &b->logs[i];
  memset(log, 0, sizeof *log);
  log->key = key;
  log->shard = shard;
  for (mc = b->consumers; mc != NULL; mc = mc->next) {
    mc->in[i] = !mc->assigned && consumer_subscribed(mc, key);
    mc->own.next[i] = mc->own.new_log_seq;
  }
  for (g = b->groups; g != NULL; g = g->next) {
    memset(&g->commit[i], 0, sizeof g->commit[i]);
    g->reader.next[i] = g->reader.new_log_seq;
  }
  *index = i;
  return 0;
}

static mem_group_t *broker_group(mem_broker_t *b, const char *name) {
  mem_group_t *g;
  for (g = b->groups; g != NULL; g = g->next)
    if (strcmp(g->name, name) == 0)
      return g;
  g = mem_host->calloc(1, sizeof *g);
  if (g == NULL)
    return NULL;
  g->name = mem_strdup(name);
  g->commit = mem_host->calloc(b->log_cap, sizeof *g->commit);
  g->reader.next = mem_host->calloc(b->log_cap, sizeof *g->reader.next);
  if (g->name == NULL || g->commit == NULL || g->reader.next == NULL) {
    reader_free(&g->reader);
    mem_host->free(g->commit);
    mem_host->free(g->name);
    mem_host->free(g);
    return NULL;
  }
  g->next = b->groups;
  b->groups = g;
  return g;
}

/* ------------------------------------------------------------------------------------------------
 * Dealing: from a reader's positions to its members' inboxes
 * ---------------------------------------------------------------------------------------------- */

static int consumer_active(const mem_consumer_t *mc) {
  return mc->started && !mc->paused && !mc->ended && !mc->closed;
}

/* Run consumer_tick on the next loop turn. */
static void consumer_arm(mem_consumer_t *mc) {
  if (mc->timer != NULL || mc->closed)
    return;
  mc->timer = mem_host->timer_start(mc->rt, 0, MEM_TIMER_REPEAT_MS, consumer_tick, mc);
  if (mc->timer == NULL)
    mem_host->log(SEA_LOG_ERROR, "mem", "cannot start a timer: a consumer stalls");
}

static void consumer_wake(mem_consumer_t *mc) {
  if (consumer_active(mc))
    consumer_arm(mc);
}

/* Whether the inbox can take one more message (growing it up to the batch size). */
static int consumer_room(mem_consumer_t *mc) {
  size_t need;
  void *q;
  if (mc->inbox_count >= mc->batch_size)
    return 0;
  if (mc->inbox_count < mc->inbox_cap)
    return 1;
  need = mc->inbox_cap * 2;
  if (need > mc->batch_size)
    need = mc->batch_size;
  q = mem_grow(mc->inbox, &mc->inbox_cap, need, sizeof *mc->inbox);
  if (q == NULL)
    return 0;
  mc->inbox = q;
  return 1;
}

/* The member to deal a message of log L to: the next in turn that is active, reads L and has room.
 * NULL if none. */
static mem_consumer_t *reader_pick(mem_reader_t *r, size_t L) {
  size_t i;
  for (i = 0; i < r->member_count; i++) {
    size_t k = (r->turn + i) % r->member_count;
    mem_consumer_t *mc = r->members[k];
    if (consumer_active(mc) && mc->in[L] && consumer_room(mc)) {
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
static void reader_deal(mem_broker_t *b, mem_reader_t *r, mem_consumer_t *self) {
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
      consumer_arm(r->members[i]);
}

/* Whether the consumer's reader has something for it. */
static int consumer_has_more(const mem_consumer_t *mc) {
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
static void consumer_return_inbox(mem_consumer_t *mc) {
  mem_reader_t *r = mc->reader;
  size_t i;
  void *q;

  if (mc->inbox_count == 0)
    return;
  if (r == &mc->own) {
    for (i = 0; i < mc->inbox_count; i++)
      if (r->next[mc->inbox[i].log] > mc->inbox[i].seq)
        r->next[mc->inbox[i].log] = mc->inbox[i].seq;
  } else {
    q = mem_grow(r->requeue, &r->requeue_cap, r->requeue_count + mc->inbox_count,
                 sizeof *r->requeue);
    if (q != NULL) {
      r->requeue = q;
      memcpy(r->requeue + r->requeue_count, mc->inbox, mc->inbox_count * sizeof *mc->inbox);
      r->requeue_count += mc->inbox_count;
    } else {
      mem_host->log(SEA_LOG_ERROR, "mem", "out of memory: %zu messages of group '%s' are lost",
                    mc->inbox_count, mc->group->name);
    }
    for (i = 0; i < r->member_count; i++)
      if (r->members[i] != mc)
        consumer_wake(r->members[i]);
  }
  mc->inbox_count = 0;
}

/* Where a consumer opened with args a starts in log L (g: its group, if it keeps positions). */
static uint64_t start_seq(const mem_log_t *log, const sea_open_args_t *a, const mem_group_t *g,
                          size_t L) {
  if (a->has_start) {
    if (a->start_is_time)
      return log_seek(log, a->start_ts_us);
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

static void reader_init(const mem_broker_t *b, mem_reader_t *r, const sea_open_args_t *a,
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

static int reader_join(mem_reader_t *r, mem_consumer_t *mc) {
  void *q = mem_grow(r->members, &r->member_cap, r->member_count + 1, sizeof *r->members);
  if (q == NULL)
    return SEA_ENOMEM;
  r->members = q;
  r->members[r->member_count++] = mc;
  return 0;
}

static void reader_leave(mem_reader_t *r, mem_consumer_t *mc) {
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

/* ------------------------------------------------------------------------------------------------
 * Streamer
 * ---------------------------------------------------------------------------------------------- */

/* The streamer's impl: its broker, and its listings waiting for their turn (a streamer of its
 * own, since brokers are shared and a disconnect abandons only its own listings). */
typedef struct mem_streamer {
  mem_broker_t *broker;
  struct mem_listing *lists;
} mem_streamer_t;

static int mem_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                       const sea_options_t *backend_options, void **impl) {
  const char *name = uri->node_count > 0 ? uri->nodes[0] : "";
  mem_limits_t lim;
  mem_broker_t *b;
  mem_streamer_t *ms;
  int rc;

  if ((rc = mem_parse_options(rt, backend_options, &lim)) != 0)
    return rc;
  if ((ms = mem_host->calloc(1, sizeof *ms)) == NULL) {
    mem_host->set_error(rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  for (b = mem_brokers; b != NULL; b = b->next)
    if (strcmp(b->name, name) == 0)
      break;
  if (b == NULL && (b = broker_new(name)) == NULL) {
    mem_host->free(ms);
    mem_host->set_error(rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  b->refs++;
  ms->broker = b;
  *impl = ms;
  return 0;
}

static void mem_list_abandon(mem_streamer_t *ms);

/* The host closes a streamer's producers and consumers before it disconnects. */
static void mem_disconnect(void *impl) {
  mem_streamer_t *ms = impl;
  mem_broker_t *b = ms->broker;
  mem_list_abandon(ms);
  mem_host->free(ms);
  if (--b->refs == 0)
    broker_free(b);
}

/* ------------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------------- */

static void producer_arm(mem_producer_t *mp) {
  if (mp->timer != NULL || mp->closed)
    return;
  mp->timer = mem_host->timer_start(mp->rt, 0, MEM_TIMER_REPEAT_MS, producer_tick, mp);
  if (mp->timer == NULL)
    mem_host->log(SEA_LOG_ERROR, "mem", "cannot start a timer: receipts stall");
}

static int producer_has_room(const mem_producer_t *mp) {
  return mp->capacity == 0 || mp->taken - mp->receipted < mp->capacity;
}

static void producer_free(mem_producer_t *mp) {
  mem_host->free(mp->pending);
  mem_host->free(mp->flushes);
  mem_host->free(mp);
}

static int mem_producer_open(void *streamer_impl, sea_producer_t *p, const sea_open_args_t *args,
                             void **impl) {
  mem_producer_t *mp;
  mem_limits_t lim;
  int rc;

  if ((rc = mem_parse_options(args->rt, args->backend_options, &lim)) != 0)
    return rc;
  mp = mem_host->calloc(1, sizeof *mp);
  if (mp == NULL) {
    mem_host->set_error(args->rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  mp->broker = ((mem_streamer_t *)streamer_impl)->broker;
  mp->p = p;
  mp->rt = args->rt;
  mp->anchor = args->anchor;
  mp->max_payload = args->max_payload;
  mp->capacity = lim.capacity;
  mp->has_fail_after = lim.has_fail_after;
  mp->fail_after = lim.fail_after;
  mp->hold_receipts = lim.hold_receipts;
  *impl = mp;
  return 0;
}

static int mem_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  mem_producer_t *mp = impl;
  mem_broker_t *b = mp->broker;
  mem_receipt_t *rec;
  const char *key;
  size_t L = 0;
  int stored = 0;
  void *q;

  if (mp->ended)
    return SEA_ESTATE;
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
  q = mem_grow(mp->pending, &mp->pending_cap, mp->pending_count + 1, sizeof *mp->pending);
  if (q == NULL)
    return SEA_ENOMEM;
  mp->pending = q;
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
    else if (broker_log(b, key, m->meta.shard_id, &L) != 0)
      return SEA_ENOMEM;
    mp->last_log = L;
    mp->has_last_log = 1;
    log = &b->logs[L];
    q = mem_grow(log->msgs, &log->cap, log->count + 1, sizeof *log->msgs);
    if (q == NULL)
      return SEA_ENOMEM;
    log->msgs = q;
    slot = &log->msgs[log->count];
    memset(slot, 0, sizeof *slot);
    if (message_copy(m, slot) == NULL)
      return SEA_ENOMEM;
    slot->meta.stream_key = key;
    slot->meta.shard_id = m->meta.shard_id;
    slot->meta.seq = log->count;
    slot->meta.timestamp_us = m->meta.timestamp_us != 0 ? m->meta.timestamp_us : mem_host->now_us();
    slot->backend_pos = slot->meta.seq;
    log->count++;
    rec->meta = slot->meta;
    stored = 1;
  }
  mp->pending_count++;
  mp->taken++;
  if (!mp->hold_receipts || mp->flush_count > 0)
    producer_arm(mp);
  if (stored) {
    mem_consumer_t *mc;
    for (mc = b->consumers; mc != NULL; mc = mc->next)
      if (mc->in[L])
        consumer_wake(mc);
  }
  return 0;
}

/* Give the receipts collected since the last turn, then producer_ready if a send was refused, then
 * complete the flushes whose sends are all receipted. Any callback may close the producer. */
static void producer_tick(sea_timer_t *t, void *data) {
  mem_producer_t *mp = data;
  mem_receipt_t *recs = mp->pending;
  size_t n = mp->pending_count, i;

  mem_host->timer_stop(t);
  mp->timer = NULL;
  /* Take the list: sends made from inside the callbacks start a new one, for the next turn. */
  mp->pending = NULL;
  mp->pending_count = 0;
  mp->pending_cap = 0;
  mp->busy++;

  for (i = 0; i < n && !mp->closed; i++) {
    mp->receipted++;
    mem_host->receipt(mp->p, recs[i].token, recs[i].status,
                      recs[i].status == 0 ? &recs[i].meta : NULL);
  }
  mem_host->free(recs);

  if (!mp->closed && mp->blocked && producer_has_room(mp)) {
    mp->blocked = 0;
    mem_host->producer_ready(mp->p);
  }
  while (!mp->closed && mp->flush_count > 0 && mp->flushes[0].target <= mp->receipted) {
    sea_op_t *op = mp->flushes[0].op;
    mp->flush_count--;
    memmove(mp->flushes, mp->flushes + 1, mp->flush_count * sizeof *mp->flushes);
    mem_host->op_done(op, 0, NULL);
  }

  if (--mp->busy == 0 && mp->closed)
    producer_free(mp);
}

static int mem_producer_flush(void *impl, sea_op_t *op) {
  mem_producer_t *mp = impl;
  void *q = mem_grow(mp->flushes, &mp->flush_cap, mp->flush_count + 1, sizeof *mp->flushes);
  if (q == NULL)
    return SEA_ENOMEM;
  mp->flushes = q;
  mp->flushes[mp->flush_count].op = op;
  mp->flushes[mp->flush_count].target = mp->taken;
  mp->flush_count++;
  producer_arm(mp); /* even with nothing in flight: the op completes on the next turn */
  return 0;
}

static int mem_producer_end(void *impl, sea_op_t *op) {
  mem_producer_t *mp = impl;
  int rc = mem_producer_flush(impl, op);
  if (rc == 0)
    mp->ended = 1;
  return rc;
}

/* Outstanding receipts and flushes are dropped: the host cancels them. */
static void mem_producer_close(void *impl) {
  mem_producer_t *mp = impl;
  if (mp->timer != NULL) {
    mem_host->timer_stop(mp->timer);
    mp->timer = NULL;
  }
  mp->closed = 1;
  if (mp->busy == 0)
    producer_free(mp);
}

/* ------------------------------------------------------------------------------------------------
 * Consumer
 * ---------------------------------------------------------------------------------------------- */

static void consumer_free(mem_consumer_t *mc) {
  reader_free(&mc->own);
  mem_host->free(mc->keys);
  mem_host->free(mc->in);
  mem_host->free(mc->inbox);
  mem_host->free(mc->ops);
  mem_host->free(mc);
}

static int mem_consumer_open(void *streamer_impl, sea_consumer_t *c, const sea_open_args_t *args,
                             void **impl) {
  mem_broker_t *b = ((mem_streamer_t *)streamer_impl)->broker;
  mem_consumer_t *mc;
  mem_limits_t lim;
  size_t i;
  int rc;

  if ((rc = mem_parse_options(args->rt, args->backend_options, &lim)) != 0)
    return rc;
  mc = mem_host->calloc(1, sizeof *mc);
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
        mem_host->set_error(args->rt, "mem: invalid stream key '%s'",
                            args->keys[i] ? args->keys[i] : "(null)");
        consumer_free(mc);
        return SEA_EKEY;
      }
    }
    mc->key_count = args->key_count;
  }

  mc->in = mem_host->calloc(b->log_cap, sizeof *mc->in);
  mc->own.next = mem_host->calloc(b->log_cap, sizeof *mc->own.next);
  mc->inbox_cap = mc->batch_size < MEM_INBOX_INITIAL ? mc->batch_size : MEM_INBOX_INITIAL;
  mc->inbox = mem_array(NULL, mc->inbox_cap, sizeof *mc->inbox);
  if (mc->in == NULL || mc->own.next == NULL || mc->inbox == NULL)
    goto nomem;

  /* Groups keep positions in RESUMABLE and LOAD_BALANCED modes only. */
  if (args->mode != SEA_MODE_REALTIME && args->group != NULL) {
    mc->group = broker_group(b, args->group);
    if (mc->group == NULL)
      goto nomem;
  }
  mc->reader =
      args->mode == SEA_MODE_LOAD_BALANCED && mc->group != NULL ? &mc->group->reader : &mc->own;
  /* A group's shared positions start where its first member says; later members join them. */
  if (mc->reader->member_count == 0)
    reader_init(b, mc->reader, args, mc->group);
  if (reader_join(mc->reader, mc) != 0)
    goto nomem;

  for (i = 0; i < b->log_count; i++)
    mc->in[i] = (uint8_t)consumer_subscribed(mc, b->logs[i].key);
  mc->next = b->consumers;
  b->consumers = mc;
  *impl = mc;
  return 0;

nomem:
  mem_host->set_error(args->rt, "mem: out of memory");
  if (mc != NULL)
    consumer_free(mc);
  return SEA_ENOMEM;
}

static void consumer_end(mem_consumer_t *mc, int status, const char *msg) {
  mc->ended = 1;
  mem_host->consumer_end(mc->c, status, "%s", msg);
}

/* A batch of the inbox's messages. Each message is the stored struct, with one more reference to
 * its block for the batch to own. */
static sea_batch_t *consumer_take_batch(mem_consumer_t *mc) {
  const mem_broker_t *b = mc->broker;
  sea_batch_t *batch = mem_host->batch_new(mc->inbox_count);
  size_t i;
  if (batch == NULL)
    return NULL;
  for (i = 0; i < mc->inbox_count; i++) {
    const sea_message_t *src = &b->logs[mc->inbox[i].log].msgs[mc->inbox[i].seq];
    sea_message_t *dst = &batch->msgs[batch->count++];
    *dst = *src;
    dst->payload.block = mem_host->block_ref(src->payload.block);
  }
  mc->inbox_count = 0;
  return batch;
}

/* One turn of a consumer: complete its operations, then deliver one batch. Every host call here
 * may run user code that pauses or closes this consumer (or others), so each is followed by a
 * look at mc->closed and consumer_active before going on. */
static void consumer_run(mem_consumer_t *mc) {
  sea_batch_t *batch;

  /* seek, rewind and commit were asked for before this turn's delivery, so they complete first. */
  while (mc->op_count > 0 && !mc->closed) {
    sea_op_t *op = mc->ops[0];
    mc->op_count--;
    memmove(mc->ops, mc->ops + 1, mc->op_count * sizeof *mc->ops);
    mem_host->op_done(op, 0, NULL);
  }
  if (!consumer_active(mc))
    return;

  if (mc->inbox_count == 0)
    reader_deal(mc->broker, mc->reader, mc);
  if (mc->inbox_count > 0) {
    batch = consumer_take_batch(mc);
    if (batch == NULL) {
      consumer_return_inbox(mc);
      consumer_end(mc, SEA_ENOMEM, "mem: out of memory for a batch");
      return;
    }
    mem_host->deliver(mc->c, batch);
    if (!consumer_active(mc))
      return;
  }

  if (mc->inbox_count > 0 || consumer_has_more(mc))
    consumer_arm(mc);
  else if (mc->stop_at_end)
    consumer_end(mc, SEA_EOF, "mem: end of stream");
}

static void consumer_tick(sea_timer_t *t, void *data) {
  mem_consumer_t *mc = data;
  mem_host->timer_stop(t);
  mc->timer = NULL;
  mc->busy++;
  consumer_run(mc);
  if (--mc->busy == 0 && mc->closed)
    consumer_free(mc);
}

static int mem_consumer_start(void *impl) {
  mem_consumer_t *mc = impl;
  if (mc->started)
    return SEA_ESTATE;
  mc->started = 1;
  consumer_wake(mc);
  return 0;
}

static int mem_consumer_pause(void *impl) {
  mem_consumer_t *mc = impl;
  mc->paused = 1;
  consumer_return_inbox(mc);
  return 0;
}

static int mem_consumer_resume(void *impl) {
  mem_consumer_t *mc = impl;
  mc->paused = 0;
  consumer_wake(mc);
  return 0;
}

/* Queue an operation to complete on the next turn. */
static int consumer_add_op(mem_consumer_t *mc, sea_op_t *op) {
  void *q = mem_grow(mc->ops, &mc->op_cap, mc->op_count + 1, sizeof *mc->ops);
  if (q == NULL)
    return SEA_ENOMEM;
  mc->ops = q;
  mc->ops[mc->op_count++] = op;
  consumer_arm(mc);
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
      r->next[i] = log_seek(&b->logs[i], ts);
    else if (pos.kind == SEA_POS_BEGINNING)
      r->next[i] = 0;
    else if (pos.kind == SEA_POS_AT)
      r->next[i] = pos.seq; /* may be past the end: reading resumes when the log gets there */
    else
      r->next[i] = b->logs[i].count;
  }
}

static int mem_consumer_seek(void *impl, int64_t timestamp_us, sea_op_t *op) {
  mem_consumer_t *mc = impl;
  sea_pos_t unused = {SEA_POS_BEGINNING, 0};
  int rc = consumer_add_op(mc, op);
  if (rc == 0)
    consumer_reposition(mc, 1, timestamp_us, unused);
  return rc;
}

static int mem_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  mem_consumer_t *mc = impl;
  int rc;
  if (pos.kind != SEA_POS_BEGINNING && pos.kind != SEA_POS_END && pos.kind != SEA_POS_AT)
    return SEA_EINVAL;
  rc = consumer_add_op(mc, op);
  if (rc == 0)
    consumer_reposition(mc, 0, 0, pos);
  return rc;
}

static int mem_consumer_assign(void *impl, const char *stream_key, uint64_t shard) {
  mem_consumer_t *mc = impl;
  const char *key = mem_key(stream_key);
  size_t L;

  if (key == NULL || !consumer_subscribed(mc, key))
    return SEA_EKEY;
  /* The log may not exist yet; it is made now so that the choice has a row to live in. */
  if (broker_log(mc->broker, key, shard, &L) != 0)
    return SEA_ENOMEM;
  consumer_return_inbox(mc);
  if (!mc->assigned) {
    /* The first assign narrows the consumer from its whole subscription to what it assigns. */
    mc->assigned = 1;
    memset(mc->in, 0, mc->broker->log_count * sizeof *mc->in);
  }
  mc->in[L] = 1;
  consumer_wake(mc);
  return 0;
}

static int mem_consumer_unassign(void *impl, const char *stream_key, uint64_t shard) {
  mem_consumer_t *mc = impl;
  const char *key = mem_key(stream_key);
  size_t L;

  if (key == NULL || !consumer_subscribed(mc, key))
    return SEA_EKEY;
  if (broker_find_log(mc->broker, key, shard, &L) != 0) {
    if (mc->assigned)
      return SEA_EINVAL; /* never assigned */
    if (broker_log(mc->broker, key, shard, &L) != 0)
      return SEA_ENOMEM;
  }
  if (mc->assigned && !mc->in[L])
    return SEA_EINVAL;
  consumer_return_inbox(mc);
  mc->in[L] = 0;
  return 0;
}

static int mem_consumer_ack(void *impl, const sea_message_t *m) {
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
  if (broker_find_log(mc->broker, key, m->meta.shard_id, &L) != 0 ||
      m->meta.seq >= mc->broker->logs[L].count)
    return SEA_EINVAL; /* not a message of this broker */
  if (mc->group == NULL)
    return 0; /* nowhere to keep it */
  cm = &mc->group->commit[L];
  if (m->meta.seq + 1 > cm->acked)
    cm->acked = m->meta.seq + 1;
  return 0;
}

static int mem_consumer_commit(void *impl, sea_op_t *op) {
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

/* Closing inside one of our own callbacks (busy) leaves the struct for consumer_tick to free; the
 * consumer is out of the broker either way. Outstanding operations are dropped: the host cancels
 * them. */
static void mem_consumer_close(void *impl) {
  mem_consumer_t *mc = impl;
  mem_consumer_t **pp;

  if (mc->timer != NULL) {
    mem_host->timer_stop(mc->timer);
    mc->timer = NULL;
  }
  if (mc->reader != &mc->own)
    consumer_return_inbox(mc); /* to the rest of the group */
  mc->inbox_count = 0;
  mc->op_count = 0;
  mc->closed = 1;
  reader_leave(mc->reader, mc);
  for (pp = &mc->broker->consumers; *pp != NULL; pp = &(*pp)->next)
    if (*pp == mc) {
      *pp = mc->next;
      break;
    }
  if (mc->busy == 0)
    consumer_free(mc);
}

/* ------------------------------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------------------------------- */

static const char *const mem_schemes[] = {"mem", NULL};

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
  if (l->timer != NULL)
    mem_host->timer_stop(l->timer);
  lrows_free(&l->rows);
  mem_host->free(l);
}

static void mem_list_abandon(mem_streamer_t *ms) {
  while (ms->lists != NULL)
    listing_free(ms->lists);
}

static void mem_list_tick(sea_timer_t *t, void *data) {
  mem_listing_t *l = data;
  size_t i;
  sea_op_t *op = l->op;
  mem_host->timer_stop(t);
  l->timer = NULL;
  for (i = 0; i < l->rows.n; i++)
    l->emit(l->ctx, &l->rows.v[i]);
  listing_free(l);
  mem_host->op_done(op, 0, NULL);
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

static int mem_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  mem_streamer_t *ms = impl;
  const mem_broker_t *b = ms->broker;
  mem_listing_t *l = mem_host->calloc(1, sizeof *l);
  size_t *order = sorted_logs(b);
  if (l == NULL || order == NULL) {
    mem_host->free(l);
    mem_host->free(order);
    mem_host->set_error(args->rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  list_streams(b, order, args, &l->rows);
  list_groups(b, order, args, &l->rows);
  mem_host->free(order);
  l->ms = ms;
  l->op = op;
  l->emit = args->emit;
  l->ctx = args->ctx;
  if (l->rows.oom || (l->timer = mem_host->timer_start(args->rt, 0, MEM_TIMER_REPEAT_MS,
                                                       mem_list_tick, l)) == NULL) {
    lrows_free(&l->rows);
    mem_host->free(l);
    mem_host->set_error(args->rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  l->next = ms->lists;
  ms->lists = l;
  return 0;
}

static const sea_plugin_t mem_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = "mem",
    .schemes = mem_schemes,
    .version = "0.1.0",
    .description = "in-memory broker, shared within the process (for tests and examples)",
    .caps = SEA_CAP_REALTIME | SEA_CAP_RESUMABLE | SEA_CAP_LOAD_BALANCED | SEA_CAP_SEEK |
            SEA_CAP_REWIND | SEA_CAP_COMMIT | SEA_CAP_KEY | SEA_CAP_HEADERS | SEA_CAP_SHARDS |
            SEA_CAP_BINARY,
    .default_port = 0,
    .connect = mem_connect,
    .disconnect = mem_disconnect,
    .producer_open = mem_producer_open,
    .producer_send = mem_producer_send,
    .producer_flush = mem_producer_flush,
    .producer_end = mem_producer_end,
    .producer_close = mem_producer_close,
    .consumer_open = mem_consumer_open,
    .consumer_start = mem_consumer_start,
    .consumer_pause = mem_consumer_pause,
    .consumer_resume = mem_consumer_resume,
    .consumer_seek = mem_consumer_seek,
    .consumer_rewind = mem_consumer_rewind,
    .consumer_assign = mem_consumer_assign,
    .consumer_unassign = mem_consumer_unassign,
    .consumer_ack = mem_consumer_ack,
    .consumer_commit = mem_consumer_commit,
    .consumer_close = mem_consumer_close,
    .list = mem_list,
};

SEA_PLUGIN_ENTRY(mem) {
  if (host == NULL || host->abi_major != SEA_PLUGIN_ABI_MAJOR)
    return NULL;
  mem_host = host;
  return &mem_plugin;
}
