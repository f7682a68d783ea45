/* internal.h: private declarations shared by the host's source files (never installed). */
#ifndef SEA_INTERNAL_H
#define SEA_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <uv.h>

/* The host is both sides: it implements the user API and hosts plugins. */
#define SEA_HOST_INTERNAL
#include "seastreamer/plugin.h"
#include "seastreamer/seastreamer.h"

#define SEA__ERRMSG_MAX 512
#define SEA__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define SEA__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SEA__PRINTF(f, a)
#endif

/* A loaded (or refused) plugin. */
typedef struct sea__plugin {
  char *path;
  void *dl;          /* dlopen handle, NULL for built-in or refused */
  sea_plugin_t desc; /* a zeroed copy of min(struct_size, sizeof) bytes of the plugin's struct */
  char *schemes;     /* comma-separated, for listing */
  char *refused;     /* why, or NULL */
  char *shadowed_by;
} sea__plugin_t;

/* A call to make on the next loop turn, outside any plugin code (see sea__defer). */
typedef struct sea__deferred {
  void (*fn)(void *arg, void *arg2);
  void *arg;
  void *arg2;
  struct sea__deferred *next;
} sea__deferred_t;

struct sea_runtime {
  uv_loop_t *loop;
  uv_idle_t defer_idle; /* runs the deferred queue; active only while it is not empty */
  bool defer_init;
  sea__deferred_t *defer_head, *defer_tail;
  uv_timer_t turn_timer; /* drains the queue of plugins' 0 ms timers (runtime.c) */
  struct sea_timer *turn_head, *turn_tail;
  uint64_t turn;      /* drains so far */
  bool turn_init;     /* turn_timer is initialised */
  bool turn_armed;    /* a drain is coming */
  bool turn_via_idle; /* defer_idle starts it (asked for from inside the timer pass) */
  uv_loop_t own_loop;
  bool owns_loop;
  bool plugins_loaded;
  sea__plugin_t *plugins;
  size_t plugin_count;
  size_t streamer_count;
  char errmsg[SEA__ERRMSG_MAX];
};

struct sea_streamer {
  sea_runtime_t *rt;
  const sea__plugin_t *plugin;
  sea_uri_t *uri;
  sea_options_t *opts;
  void *impl;
  void *data;
  struct sea_producer *producers;
  struct sea_consumer *consumers;
  size_t pending_closes; /* handles whose close is deferred (closed inside a callback) */
  bool closing;
  struct sea_op *ops; /* listings in progress */
  char errmsg[SEA__ERRMSG_MAX];
  char said[SEA__ERRMSG_MAX]; /* host->streamer_error during the plugin call now running */
};

/* The in-flight record the host keeps per send, handed to the plugin as the token. */
typedef struct sea__send {
  void *user_token;
  size_t bytes;
  uint64_t seq; /* the producer's send count when it was made: 1, 2, ... (flushes wait by it) */
  struct sea__send *next; /* free list / live list */
  struct sea__send *prev;
} sea__send_t;

struct sea_producer {
  sea_streamer_t *s;
  void *impl;
  void *data;
  const char *anchor;
  sea_receipt_cb on_receipt;
  sea_drain_cb on_drain;
  size_t inflight;
  size_t inflight_bytes;
  size_t max_inflight;
  size_t max_inflight_bytes;
  size_t max_payload;
  bool want_drain; /* a send was refused with SEA_EAGAIN */
  bool drain_deferred;
  unsigned in_callback;
  const char *last_key; /* the last key a send named, and its interned form */
  const char *last_interned;
  struct sea_op *ops;
  bool plugin_full; /* the plugin itself said SEA_EAGAIN */
  bool ended;
  bool closing;
  int err;
  uint64_t sends;      /* sends accepted so far (the last one's seq) */
  size_t host_flushes; /* flushes and ends in ops that wait for receipts (sea_op_t.target) */
  sea__send_t live;    /* sentinel of the doubly-linked list of outstanding sends, oldest first */
  sea__send_t *free_list;
  /* Send records come in slabs, never one malloc per message: a record allocated between a
   * backend's own per-message allocations would keep those from merging when freed, and the
   * allocator then walks thousands of scattered chunks (measured producing 1,000,000 messages
   * to Kafka: 0.60 s of user CPU with a malloc per record, 0.36 s with slabs). */
  struct sea__send_slab *slabs;
  size_t slab_records; /* records in the next slab */
  struct sea_producer *next;
  char errmsg[SEA__ERRMSG_MAX];
  char said[SEA__ERRMSG_MAX]; /* host->producer_error during the plugin call now running */
};

struct sea_consumer {
  sea_streamer_t *s;
  void *impl;
  void *data;
  sea_open_args_t args;
  const char **keys;
  sea_batch_cb on_batch;
  sea_end_cb on_end;
  sea_revoke_cb on_revoke;
  bool started;
  bool ended;
  bool closing;
  unsigned in_callback; /* nesting depth of host→user callbacks */
  bool close_pending;   /* sea_consumer_close called inside a callback */
  /* Paused: what the plugin delivers is held here (a ring of batches, oldest at held_head) and
   * handed on, in order, on a loop turn after resume. */
  bool paused;
  bool release_deferred; /* release_held is queued */
  bool end_held;         /* the end came while batches were held: it follows them */
  sea_batch_t **held;
  size_t held_head, held_count, held_cap;
  struct sea_op *ops;
  int err;
  struct sea_consumer *next;
  char errmsg[SEA__ERRMSG_MAX];
  char said[SEA__ERRMSG_MAX]; /* host->consumer_error during the plugin call now running */
};

struct sea_op {
  struct sea_op *prev, *next; /* in the owner's list of outstanding operations */
  struct sea_op **owner_list;
  char *owner_errmsg;
  int status;
  bool host_wait;  /* a flush or end the host completes once the sends before it have receipts */
  uint64_t target; /* host_wait: the seq of the last send it waits for */
  sea_done_cb cb;
  void *data;
  const char *what; /* for messages: "flush" */
  sea_runtime_t *rt;
  char errmsg[SEA__ERRMSG_MAX]; /* message passed to op_done */
};

/* error.c */
int sea__errf(char *buf, size_t len, int code, const char *fmt, ...) SEA__PRINTF(4, 5);
void sea__vfmt(char *buf, size_t len, const char *fmt, va_list ap);
int sea__rt_err(sea_runtime_t *rt, int code, const char *fmt, ...) SEA__PRINTF(3, 4);
/* Why key (len bytes) is not a stream key, for an error message: its length or its characters. */
void sea__key_why(char *buf, size_t n, const char *key, size_t len);

/* memory.c */
void *sea__malloc(size_t n);
void *sea__calloc(size_t n, size_t size);
void *sea__realloc(void *p, size_t n);
void sea__free(void *p);
char *sea__strdup(const char *s);
char *sea__strndup(const char *s, size_t n);

/* block.c */
sea_batch_t *sea__batch_new(size_t cap);

/* runtime.c */
int sea__defer(sea_runtime_t *rt, void (*fn)(void *, void *), void *arg, void *arg2);
void sea__defer_cancel(sea_runtime_t *rt, void *arg);
extern const sea_host_t sea__host;
/* A bounded text appender, for the stats lines and the metrics text (stats.c): sea__put writes
 * what fits into buf (NUL-terminated) and counts in used what was needed, so a caller sees a
 * short buffer from used >= len and can ask again with room for used + 1. */
typedef struct sea__out {
  char *buf;
  size_t len, used;
} sea__out_t;
void sea__put(sea__out_t *o, const char *fmt, ...) SEA__PRINTF(2, 3);

/* Stats lines of a pipeline (stats.c). */
typedef struct sea__stats sea__stats_t;
sea__stats_t **sea__pipeline_stats_ref(sea_pipeline_t *pl);
sea_runtime_t *sea__pipeline_runtime(sea_pipeline_t *pl);
void sea__stats_final(sea__stats_t *s); /* the last line, once; stops the timer */
void sea__stats_free(sea__stats_t *s);
/* One input's or output's share of a pipeline's counters (metrics.c): messages and payload bytes
 * handed to the processor (an input) or accepted by the output, confirmed and in flight (an
 * output). sea__pipeline_flow fills it for input or output index (output: index nout is the
 * exactly-once transactional producer, txn set), or returns SEA_EINVAL past the last. */
typedef struct sea__flow {
  const char *uri;
  uint64_t messages, bytes, confirmed, inflight;
  int txn;
} sea__flow_t;
int sea__pipeline_flow(const sea_pipeline_t *pl, int output, size_t index, sea__flow_t *out);

void sea__log(int level, const char *plugin, const char *fmt, ...) SEA__PRINTF(3, 4);

/* loader.c */
int sea__plugins_ensure(sea_runtime_t *rt);
const sea__plugin_t *sea__plugin_for_scheme(sea_runtime_t *rt, const char *scheme);
void sea__plugins_free(sea_runtime_t *rt);
int sea__plugin_adopt(sea_runtime_t *rt, const char *origin, void *dl, const sea_plugin_t *p,
                      char *why, size_t whylen);

/* uri.c */
int sea__uri_path_only(const sea_uri_t *uri);
/* The port of a node ("host:port", "user:pw@host:port", "[v6]:port"), or NULL if it names none
 * (a bare host, or an IPv6 address without brackets). */
const char *sea__uri_node_port(const char *node);

/* options.c */
int sea__options_merge(sea_options_t *dst, const sea_options_t *src);
bool sea__option_is_common(const char *key);
int sea__parse_u64(const char *s, uint64_t *out);
int sea__parse_bool(const char *s, bool *out);
/* The common key or one of known (a backend's keys, comma/space separated) nearest to key, a
 * likely typo of it: 1 and out set, or 0. */
int sea__option_nearest(const char *key, const char *known, char *out, size_t size);
/* The host table's option_unknown: set rt's error to one line naming key, the nearest known key
 * and every common and backend key. */
void sea__option_unknown(sea_runtime_t *rt, const char *plugin, const char *key, const char *known);
/* A plugin's option table (ABI 1.4), or NULL (none, or an older plugin). */
const sea_option_spec_t *sea__plugin_options(const sea_plugin_t *d);
/* The loader's check of a plugin's option table: 0, or SEA_EPLUGIN and why (naming the entry). */
int sea__option_table_check(const sea_plugin_t *d, char *why, size_t size);
/* The backend options of a connect (use 0) or an open (use SEA_OPT_PRODUCER/CONSUMER): the keys
 * of all that are not common, checked against the plugin's table when it has one (an unknown key
 * or a bad value sets rt's error and returns SEA_EOPTION). *out is for the getters. */
int sea__options_backend(sea_runtime_t *rt, const sea_plugin_t *d, const sea_options_t *all,
                         unsigned use, sea_options_t **out);
/* The host table's typed getters (see sea_host_t.option_u64). */
uint64_t sea__option_u64(const sea_options_t *o, const char *key);
int sea__option_bool(const sea_options_t *o, const char *key);
int sea__option_enum(const sea_options_t *o, const char *key);
const char *sea__option_str(const sea_options_t *o, const char *key);

/* streamer.c: what the host table's "back to the host" members call */
sea_op_t *sea__op_new(sea_runtime_t *rt, const char *what, sea_done_cb cb, void *data);
/* sea_producer_send with SEA_SEND_* flags for the plugin (the relay keeps input headers). */
int sea__producer_send_flags(sea_producer_t *p, const sea_message_t *m, unsigned flags,
                             void *token);
void sea__deliver(sea_consumer_t *c, sea_batch_t *batch);
void sea__consumer_end(sea_consumer_t *c, int status, const char *fmt, ...) SEA__PRINTF(3, 4);
void sea__consumer_revoked(sea_consumer_t *c, int incremental);
int sea__consumer_rewind_committed(sea_consumer_t *c, sea_done_cb cb, void *data);
void sea__receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta);
void sea__producer_ready(sea_producer_t *p);
void sea__producer_fail(sea_producer_t *p, int status, const char *fmt, ...) SEA__PRINTF(3, 4);
void sea__op_done(sea_op_t *op, int status, const char *fmt, ...) SEA__PRINTF(3, 4);

#endif
