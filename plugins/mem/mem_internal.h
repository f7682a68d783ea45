/* mem_internal.h: what the rooms of the mem:// backend share. Private to plugins/mem.
 *
 * The rooms (see mem.c's comment for the backend as a whole):
 *   mem.c           the plugin table and entry point, the option table, the streamer (connect)
 *   mem_broker.c    brokers: the process's registry, each (key, shard) log, groups; message copies
 *   mem_deal.c      dealing: from a reader's positions to its consumers' inboxes, start positions
 *   mem_producer.c  producers: sends, receipts on the next turn (held until a push if asked)
 *   mem_consumer.c  consumers: turns and deliveries, pause, seek/rewind, assign, ack and commit
 *   mem_list.c      sea_streamer_list: the broker's logs and groups
 *
 * The rooms talk only through the types and functions declared here; everything else in a room
 * is static. Names a room exports carry the mem_ prefix. Every room calls the host through
 * sea_host, set once by the plugin entry in mem.c.
 */
#ifndef SEA_MEM_INTERNAL_H
#define SEA_MEM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "seastreamer/plugin.h"

/* The host's table: sea_host, set by SEA_PLUGIN_INIT (mem.c). */
SEA_PLUGIN_HOST_DECL;

#define MEM_BATCH_DEFAULT 1000
/* The first size of a broker's per-log tables; they double when the broker gains logs. */
#define MEM_LOGS_INITIAL 8
/* The first size of a consumer's inbox; it grows up to the batch size. */
#define MEM_INBOX_INITIAL 64
/* The first capacity of every other array that grows one element at a time (SEA_GROW). */
#define MEM_GROW_FIRST 4

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
  size_t last_log; /* the log of the previous send: most sends go to the same one */
  int has_last_log;
  sea_timer_t *timer;
  int blocked; /* a send was refused with SEA_EAGAIN: producer_ready is owed */
  int closed;
  unsigned busy;
} mem_producer_t;

/* Every broker in the process (mem_broker.c). */
extern mem_broker_t *mem_brokers;

/* The streamer's impl: its broker, and its listings waiting for their turn (a streamer of its
 * own, since brokers are shared and a disconnect abandons only its own listings). */
typedef struct mem_streamer {
  mem_broker_t *broker;
  struct mem_listing *lists;
} mem_streamer_t;

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

/* realloc for n elements, with the multiplication checked. */
static inline void *mem_array(void *p, size_t n, size_t size) {
  if (n == 0)
    n = 1;
  if (size != 0 && n > SIZE_MAX / size)
    return NULL;
  return sea_host->realloc(p, n * size);
}

static inline char *mem_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = sea_host->alloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

/* The host gives us interned keys, but interning again is cheap and lets every comparison in this
 * backend be a pointer comparison, whoever built the message. NULL if the key is not valid. */
static inline const char *mem_key(const char *key) {
  return key != NULL ? sea_host->stream_key(key, strlen(key)) : NULL;
}

/* The backend options the host checks (mem.c; ABI 1.4). */
extern const sea_option_spec_t mem_option_table[];

/* ---------------------------------------------------------------------------------------------
 * Brokers and their logs (mem_broker.c)
 * ------------------------------------------------------------------------------------------- */

sea_block_t *mem_message_copy(const sea_message_t *m, sea_message_t *out);
uint64_t mem_log_seek(const mem_log_t *log, int64_t ts);
void mem_reader_free(mem_reader_t *r);
void mem_broker_free(mem_broker_t *b);
mem_broker_t *mem_broker_new(const char *name);
int mem_broker_find_log(const mem_broker_t *b, const char *key, uint64_t shard, size_t *index);
int mem_consumer_subscribed(const mem_consumer_t *mc, const char *key);
int mem_broker_log(mem_broker_t *b, const char *key, uint64_t shard, size_t *index);
mem_group_t *mem_broker_group(mem_broker_t *b, const char *name);

/* ---------------------------------------------------------------------------------------------
 * Dealing (mem_deal.c)
 * ------------------------------------------------------------------------------------------- */

int mem_consumer_active(const mem_consumer_t *mc);
void mem_consumer_arm(mem_consumer_t *mc);
void mem_consumer_wake(mem_consumer_t *mc);
void mem_reader_deal(mem_broker_t *b, mem_reader_t *r, mem_consumer_t *self);
int mem_consumer_has_more(const mem_consumer_t *mc);
void mem_consumer_return_inbox(mem_consumer_t *mc);
void mem_reader_init(const mem_broker_t *b, mem_reader_t *r, const sea_open_args_t *a,
                     const mem_group_t *g);
int mem_reader_join(mem_reader_t *r, mem_consumer_t *mc);
void mem_reader_leave(mem_reader_t *r, mem_consumer_t *mc);

/* ---------------------------------------------------------------------------------------------
 * The plugin's functions, for its table in mem.c
 * ------------------------------------------------------------------------------------------- */

/* mem_producer.c */
int mem_producer_open(void *streamer_impl, sea_producer_t *p, const sea_open_args_t *args,
                      void **impl);
int mem_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token);
void mem_producer_push(void *impl, int end);
void mem_producer_close(void *impl);

/* mem_consumer.c; mem_consumer_tick is the consumer's timer callback (mem_consumer_arm) */
void mem_consumer_tick(sea_timer_t *t, void *data);
int mem_consumer_open(void *streamer_impl, sea_consumer_t *c, const sea_open_args_t *args,
                      void **impl);
int mem_consumer_start(void *impl);
int mem_consumer_pause(void *impl);
int mem_consumer_resume(void *impl);
int mem_consumer_seek(void *impl, int64_t timestamp_us, sea_op_t *op);
int mem_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op);
int mem_consumer_assign(void *impl, const char *stream_key, uint64_t shard);
int mem_consumer_unassign(void *impl, const char *stream_key, uint64_t shard);
int mem_consumer_ack(void *impl, const sea_message_t *m);
int mem_consumer_commit(void *impl, sea_op_t *op);
void mem_consumer_close(void *impl);

/* mem_list.c; mem_list_abandon drops a streamer's listings not yet sent (its disconnect) */
int mem_list(void *impl, const sea_list_args_t *args, sea_op_t *op);
void mem_list_abandon(mem_streamer_t *ms);

#endif
