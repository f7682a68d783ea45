/* kafka_internal.h: what the rooms of the kafka backend share. Private to plugins/kafka/.
 *
 * The rooms, one file each:
 *   kafka.c           the descriptor and the streamer (connect, disconnect, list)
 *   kafka_handle.c    options -> rd_kafka_conf_t; the khandle every producer and consumer is
 *                     built on (its rd_kafka_t, the queue wake-up pipe, its lifetime), the
 *                     metadata check each handle starts with, log and stats callbacks
 *   kafka_producer.c  sends, delivery reports, flushes
 *   kafka_txn.c       transactions: implicit (a flush commits) and explicit (txn_begin ...)
 *   kafka_consumer.c  assignment, rebalance, delivery of batches, seek and rewind
 *   kafka_commit.c    acks, commits, the group's committed positions, lag
 *   kafka_list.c      `seastreamer list` (kafka_list.h)
 *
 * How they talk: a kproducer_t or kconsumer_t begins with its khandle_t, so the handle room's
 * functions take either; the handle calls back into its owner through khandle_t.drain (the
 * queue had events) and meta_job_t.done (the first metadata request ended). Everything runs on
 * the loop thread except the *_work functions of queued jobs. Functions shared between rooms
 * are declared here with the kafka_ prefix; the rest stay static in their room. sea_host is the
 * host's table of functions, set once by SEA_PLUGIN_INIT (kafka.c). */
#ifndef SEA_KAFKA_INTERNAL_H
#define SEA_KAFKA_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <seastreamer/plugin.h>

#define KAFKA_NAME "kafka"
/* Connect timeout when the user gives none (the `timeout` option). */
#define KAFKA_DEFAULT_TIMEOUT_MS 10000
#define KAFKA_DEFAULT_BATCH 1024
/* One drain delivers batches for at most this long (or 64 batches) before it lets the loop run
 * its other handles and timers: the output's delivery reports, which become the input's acks,
 * and the commit timer wait meanwhile. */
#define KAFKA_DRAIN_SLICE_US 10000

/* The host: sea_host, set by SEA_PLUGIN_INIT (kafka.c). */
SEA_PLUGIN_HOST_DECL;

#define LOGE(...) sea_host->log(SEA_LOG_ERROR, KAFKA_NAME, __VA_ARGS__)
#define LOGW(...) sea_host->log(SEA_LOG_WARN, KAFKA_NAME, __VA_ARGS__)
#define LOGI(...) sea_host->log(SEA_LOG_INFO, KAFKA_NAME, __VA_ARGS__)
#define LOGD(...) sea_host->log(SEA_LOG_DEBUG, KAFKA_NAME, __VA_ARGS__)

/* ---- the streamer ---- */

typedef struct kstreamer {
  sea_runtime_t *rt;
  char *brokers;         /* "a:9092,b:9092" */
  rd_kafka_conf_t *conf; /* the streamer's properties, for listings */
  struct ljob *lists;    /* listings running (kafka_list.c) */
} kstreamer_t;

/* ---- what producers and consumers share: the rd_kafka_t, its io-event pipe and lifetime ---- */

typedef struct khandle khandle_t;
typedef void (*khandle_drain_fn)(khandle_t *h);

struct khandle {
  sea_runtime_t *rt;
  rd_kafka_t *rk;
  int is_consumer;
  int pipefd[2]; /* librdkafka writes a byte to [1] when a watched queue becomes non-empty */
  sea_watch_t *watch;
  sea_timer_t *again; /* drains again on the next turn (kafka_schedule_again) */
  khandle_drain_fn drain;
  int pending_work;    /* queue_work jobs still holding rk */
  int closed;          /* set on the loop thread before any teardown work is queued */
  int connected;       /* the first metadata request succeeded */
  int down;            /* every broker was lost since: say so again once traffic is back */
  int txn_open;        /* a producer's transaction is open: abort it on close */
  int commit_on_close; /* a consumer with a group: commit what was acked when closing */
  pthread_t loop;      /* the loop thread: callbacks run elsewhere only inside blocking calls */
  char *brokers;
  uint64_t timeout_ms;
};

/* ---- the metadata check every handle starts with (blocking, so on a pool thread) ---- */

typedef struct meta_job {
  khandle_t *h;
  char **topics; /* what must exist (consumer) or be created/found (producer anchor) */
  size_t topic_count;
  int create; /* producer: ask for the topic, so the broker may auto-create it */
  int settle; /* producer: ask again until the new topic has its leaders (see meta_work) */
  rd_kafka_resp_err_t err;
  const struct rd_kafka_metadata *md;
  /* Realtime consumers: each partition's low (lo) and high (hi) watermark, in .offset.
   * Starting at a known offset spares librdkafka an offset query that, racing its own leader
   * lookup, can wait half a second. */
  int watermarks;
  rd_kafka_topic_partition_list_t *lo, *hi;
  void (*done)(khandle_t *h, struct meta_job *j); /* on the loop thread, unless h closed */
} meta_job_t;

/* ---- the producer (kafka_producer.c; its transactions: kafka_txn.c) ---- */

typedef struct kop {
  sea_op_t *op;
  uint64_t target; /* complete once this many sends have their receipt */
} kop_t;

typedef struct ktopic {
  const char *key; /* interned */
  rd_kafka_topic_t *rkt;
} ktopic_t;

/* TXN_COMMITTING: an implicit commit (a flush) runs. TXN_IDLE: explicit transactions, none open.
 * TXN_ENDING: an explicit commit or abort waits for the receipts of its sends, then runs. */
enum { TXN_INIT, TXN_OPEN, TXN_COMMITTING, TXN_FAILED, TXN_IDLE, TXN_ENDING };

typedef struct kproducer {
  khandle_t h; /* first: the handle is the producer */
  sea_producer_t *p;
  int32_t partition; /* RD_KAFKA_PARTITION_UA, or the `partition` option */
  ktopic_t *topics;
  size_t ntopics, captopics;
  uint64_t sent, receipted;
  kop_t *ops;
  size_t nops, capops;
  int want_ready;
  int failed;
  int fail_status;
  int no_autocreate; /* allow.auto.create.topics=false */
  /* Transactions (transactional.id set): until txn_begin is called, every flush or end commits
   * the open transaction (implicit mode); after it, only txn_commit and txn_abort end one. */
  int txn;           /* transactional */
  int txn_state;     /* TXN_* */
  int txn_ready_ops; /* ops[0..txn_ready_ops) wait for the commit in flight */
  int txn_explicit;  /* txn_begin was called */
  int begin_pending; /* txn_begin came while transactions were being set up */
  uint64_t txn_base; /* kp->sent when the open transaction began */
  sea_op_t *end_op;  /* the explicit commit or abort in TXN_ENDING */
  int end_abort;     /* end_op is an abort */
  int end_started;   /* its job is queued */
  int offset_jobs;   /* send_offsets jobs in flight: an end waits for them */
  char fail_msg[600];
  char anchor[SEA_STREAM_KEY_MAX + 1];
} kproducer_t;

/* ---- the consumer (kafka_consumer.c; its acks and commits: kafka_commit.c) ---- */

typedef struct kcommit {
  struct kconsumer *kc;
  sea_op_t *op;
} kcommit_t;

/* Next offsets per partition, for a transaction's offsets (txn_send_offsets). */
typedef struct kpos {
  const char *key; /* interned: compared by pointer */
  int32_t partition;
  int64_t next;
  int64_t base; /* the offset the entry began at (delivered: the first message delivered) */
} kpos_t;

typedef struct kposlist {
  kpos_t *v;
  size_t n, cap;
  size_t last; /* the entry found last: consecutive messages mostly share a partition */
} kposlist_t;

typedef struct kconsumer {
  khandle_t h; /* first */
  sea_consumer_t *c;
  rd_kafka_queue_t *cq;      /* the consumer queue (main queue forwarded into it) */
  rd_kafka_queue_t *commitq; /* commit results */
  sea_mode_t mode;
  char **topics;
  size_t ntopics;
  int reset_earliest;
  int has_start, start_is_time;
  sea_pos_t start_pos;
  int64_t start_ts_us, start_from_end;
  int start_applied; /* load-balanced: the start option applies to the first assignment only */
  int stop_at_end;
  uint32_t batch;
  int auto_commit;
  int started, paused, ended, ready;
  rd_kafka_topic_partition_list_t *assigned;  /* what we assigned (offsets unused) */
  rd_kafka_topic_partition_list_t *explicit_; /* assign()/unassign() choices, or NULL */
  int *at_eof;                                /* per assigned partition: at the end now */
  int seeks;                                  /* seek jobs in flight */
  kcommit_t **commits;
  size_t ncommits, capcommits;
  rd_kafka_message_t **pend; /* polled, not yet delivered (batch-size slots) */
  size_t *pend_nh;           /* per pending message: header count, bytes in the block */
  size_t pend_cap;
  rd_kafka_topic_t *last_rkt; /* topic_key's cache */
  const char *last_key;
  int last_eof_idx;            /* kafka_assigned_index's cache */
  kposlist_t delivered, acked; /* next offsets: what was delivered, what was acked */
  kposlist_t ends;        /* rewound to the committed positions after it ended: where it ended */
  int in_txn;             /* its offsets went into a producer's transaction: no commit on close */
  unsigned revokes;       /* rebalances that took partitions away */
  const char *group;      /* interned, or NULL */
  sea_timer_t *keepalive; /* load-balanced: polls an idle consumer (max.poll.interval.ms) */
} kconsumer_t;

/* ---- conf and handle (kafka_handle.c) ---- */

/* The backend options the host checks (ABI 1.4). */
extern const sea_option_spec_t kafka_option_table[];
int kafka_conf_set(sea_runtime_t *rt, rd_kafka_conf_t *conf, const char *k, const char *v);
int kafka_make_conf(sea_runtime_t *rt, const char *brokers, const sea_options_t *opts,
                    rd_kafka_conf_t **out);
char *kafka_dup_str(const char *s);
void kafka_schedule_again(khandle_t *h);
int64_t kafka_mono_us(void);
int kafka_handle_init(khandle_t *h, const sea_open_args_t *a, const char *brokers,
                      rd_kafka_conf_t *conf, rd_kafka_type_t type);
int kafka_handle_watch(khandle_t *h);
void kafka_close_fds(khandle_t *h);
void kafka_handle_release(khandle_t *h);
void kafka_handle_close(khandle_t *h);
int kafka_err_to_sea(rd_kafka_resp_err_t e);
int kafka_meta_start(khandle_t *h, const char *const *topics, size_t n, int create, int watermarks,
                     void (*done)(khandle_t *, meta_job_t *));
const struct rd_kafka_metadata_topic *kafka_md_topic(const struct rd_kafka_metadata *md,
                                                     const char *name);
int kafka_handle_lost(khandle_t *h, int err, const char *reason);
void kafka_handle_back(khandle_t *h);

/* ---- producer (kafka_producer.c) ---- */

void kafka_producer_fail_purge(kproducer_t *kp, int status, const char *msg);
int kafka_producer_open(void *simpl, sea_producer_t *p, const sea_open_args_t *a, void **impl);
int kafka_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token);
int kafka_producer_flush(void *impl, sea_op_t *op);
void kafka_producer_close(void *impl);

/* ---- transactions (kafka_txn.c) ---- */

int kafka_txn_start(kproducer_t *kp, int commit);
void kafka_txn_commit_start(kproducer_t *kp);
int kafka_txn_begin(void *impl);
void kafka_txn_end_maybe(kproducer_t *kp);
int kafka_txn_commit(void *impl, sea_op_t *op);
int kafka_txn_abort(void *impl, sea_op_t *op);
int kafka_txn_send_offsets(void *impl, void *cimpl, sea_op_t *op);

/* ---- consumer (kafka_consumer.c) ---- */

const char *kafka_parts_text(const rd_kafka_topic_partition_list_t *parts, int offsets, char *buf,
                             size_t size);
int kafka_assigned_index(const kconsumer_t *kc, const char *topic, int32_t part);
int kafka_consumer_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *a, void **impl);
int kafka_consumer_start(void *impl);
int kafka_consumer_pause(void *impl);
int kafka_consumer_resume(void *impl);
int kafka_consumer_seek(void *impl, int64_t ts_us, sea_op_t *op);
int kafka_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op);
int kafka_consumer_assign(void *impl, const char *key, uint64_t shard);
int kafka_consumer_unassign(void *impl, const char *key, uint64_t shard);
void kafka_consumer_close(void *impl);

/* ---- acks, commits and lag (kafka_commit.c) ---- */

int kafka_pos_note(kposlist_t *l, const char *key, int32_t part, int64_t next);
kpos_t *kafka_pos_find(kposlist_t *l, const char *topic, int32_t part);
void kafka_commits_serve(kconsumer_t *kc);
int kafka_rewind_committed(kconsumer_t *kc, sea_op_t *op);
int kafka_consumer_ack(void *impl, const sea_message_t *m);
int kafka_consumer_ack_pos(void *impl, const char *key, uint64_t shard, uint64_t seq);
int kafka_consumer_commit(void *impl, sea_op_t *op);
int kafka_consumer_lag(void *impl, sea_lag_t *out, size_t cap);

#endif
