/* kafka.c: the Kafka backend: librdkafka behind the SeaStreamer plugin ABI, driven by io events. */
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

#include "kafka_list.h"

#define KAFKA_NAME "kafka"
/* Connect timeout when the user gives none (the `timeout` option). */
#define KAFKA_DEFAULT_TIMEOUT_MS 10000
#define KAFKA_DEFAULT_BATCH 1024
/* One drain delivers batches for at most this long (or 64 batches) before it lets the loop run
 * its other handles and timers: the output's delivery reports, which become the input's acks,
 * and the commit timer wait meanwhile. */
#define KAFKA_DRAIN_SLICE_US 10000

static const sea_host_t *H;

#define LOGE(...) H->log(SEA_LOG_ERROR, KAFKA_NAME, __VA_ARGS__)
#define LOGW(...) H->log(SEA_LOG_WARN, KAFKA_NAME, __VA_ARGS__)
#define LOGI(...) H->log(SEA_LOG_INFO, KAFKA_NAME, __VA_ARGS__)
#define LOGD(...) H->log(SEA_LOG_DEBUG, KAFKA_NAME, __VA_ARGS__)

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
  int again; /* a byte of ours is in the pipe: drain again on the next turn */
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

/* Our own option keys; everything else is a librdkafka property. */
static int own_option(const char *k) {
  return strcmp(k, "partition") == 0 || strcmp(k, "auto_commit") == 0;
}

static int parse_bool(const char *v, int *out) {
  if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0)
    *out = 1;
  else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0)
    *out = 0;
  else
    return -1;
  return 0;
}

static int conf_set(sea_runtime_t *rt, rd_kafka_conf_t *conf, const char *k, const char *v) {
  char err[512];
  rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, k, v, err, sizeof err);
  if (r == RD_KAFKA_CONF_OK)
    return 0;
  if (r == RD_KAFKA_CONF_UNKNOWN && H->option_unknown != NULL)
    H->option_unknown(rt, KAFKA_NAME, k,
                      "partition, auto_commit (and librdkafka's properties: kcat -X list)");
  else
    H->set_error(rt, "kafka: option '%s=%s': %s", k, v, err);
  return SEA_EOPTION;
}

/* A conf with the brokers and every passthrough property of opts applied. */
static int make_conf(sea_runtime_t *rt, const char *brokers, const sea_options_t *opts,
                     rd_kafka_conf_t **out) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc = conf_set(rt, conf, "bootstrap.servers", brokers);
  size_t n = opts ? H->option_count(opts) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const char *k, *v;
    if (H->option_at(opts, i, &k, &v) == 0 && !own_option(k))
      rc = conf_set(rt, conf, k, v);
  }
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  *out = conf;
  return 0;
}

static int kafka_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                         const sea_options_t *opts, void **impl) {
  (void)s;
  if (uri->node_count == 0) {
    H->set_error(rt, "kafka: URI '%s' names no broker (kafka://host:port/topic)", uri->raw);
    return SEA_EURI;
  }
  size_t len = 1;
  for (size_t i = 0; i < uri->node_count; i++)
    len += strlen(uri->nodes[i]) + 1;
  kstreamer_t *ks = H->calloc(1, sizeof *ks);
  char *b = H->alloc(len);
  if (ks == NULL || b == NULL) {
    H->free(ks);
    H->free(b);
    return SEA_ENOMEM;
  }
  b[0] = '\0';
  for (size_t i = 0; i < uri->node_count; i++) {
    if (i)
      strcat(b, ",");
    strcat(b, uri->nodes[i]);
  }
  ks->rt = rt;
  ks->brokers = b;
  /* Check the streamer's options now, so a typo fails the connect and not a later open. */
  rd_kafka_conf_t *conf;
  int rc = make_conf(rt, b, opts, &conf);
  if (rc) {
    H->free(b);
    H->free(ks);
    return rc;
  }
  ks->conf = conf;
  *impl = ks;
  return 0;
}

static void kafka_disconnect(void *impl) {
  kstreamer_t *ks = impl;
  sea_kafka_list_abandon(&ks->lists);
  rd_kafka_conf_destroy(ks->conf);
  H->free(ks->brokers);
  H->free(ks);
}

/* `seastreamer list`: kafka_list.c, with a client of its own. */
static int kafka_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  kstreamer_t *ks = impl;
  rd_kafka_conf_t *conf = rd_kafka_conf_dup(ks->conf);
  if (conf == NULL)
    return SEA_ENOMEM;
  return sea_kafka_list(H, &ks->lists, ks->brokers, conf, args, op);
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = H->alloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* Drain again on the next loop turn (the io event only fires when a queue becomes non-empty):
 * a byte in our own pipe makes it readable, so the drain comes back through the loop's poll
 * phase, in turn with every other handle. (A 0 ms timer started from a timer callback runs again
 * in the same timer phase with libuv before 1.45, whose loop time does not advance there: a
 * consumer with a backlog kept re-arming one and starved the poll phase, so the output's delivery
 * reports and the commit results waited until the relay paused.) */
static void schedule_again(khandle_t *h) {
  if (h->again || h->closed || h->pipefd[1] < 0)
    return;
  /* One byte at most: a full pipe would make librdkafka's own wakeup writes fail. */
  h->again = 1;
  ssize_t r = write(h->pipefd[1], "a", 1);
  (void)r;
}

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_pipe(sea_watch_t *w, int status, int events, void *data) {
  (void)w;
  (void)status;
  (void)events;
  khandle_t *h = data;
  char buf[256];
  h->again = 0;
  /* Empty the pipe first: an event that arrives while we drain writes a new byte. */
  while (read(h->pipefd[0], buf, sizeof buf) > 0) {
  }
  if (!h->closed)
    h->drain(h);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  khandle_t *h = rd_kafka_opaque(rk);
  /* Called on librdkafka's own threads: host->log may be called from any thread. (Logs are not
   * forwarded to the main queue with log.queue: in librdkafka 2.0.2 that stopped the queue's
   * io-event wakeups after the first log, and the producer then waited forever.) */
  if (h == NULL || __atomic_load_n(&h->closed, __ATOMIC_RELAXED))
    return;
  int l = level <= 3   ? SEA_LOG_ERROR
          : level <= 4 ? SEA_LOG_WARN
          : level <= 6 ? SEA_LOG_INFO
                       : SEA_LOG_DEBUG;
  /* librdkafka logs every failed connection attempt as an error; our own messages say what
   * failed, so these are warnings. */
  if (l == SEA_LOG_ERROR)
    l = SEA_LOG_WARN;
  H->log(l, KAFKA_NAME, "%s: %s", fac, buf);
}

/* librdkafka's statistics (statistics.interval.ms, which only a user sets): one line each on
 * stderr, {"librdkafka": {...}}, where --stats-json writes its lines (a reader tells them apart
 * by the top key). Served with the queue's other events on the loop thread. One write a line. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk, (void)opaque;
  size_t n = len + 16;
  char *line = H->alloc(n);
  if (line == NULL)
    return 0;
  memcpy(line, "{\"librdkafka\":", 14);
  memcpy(line + 14, json, len);
  line[14 + len] = '}';
  line[15 + len] = '\n';
  fwrite(line, 1, len + 16, stderr);
  fflush(stderr);
  H->free(line);
  return 0; /* librdkafka frees json */
}

/* Create the rd_kafka_t and the pipe its queues signal. */
static int handle_init(khandle_t *h, const sea_open_args_t *a, const char *brokers,
                       rd_kafka_conf_t *conf, rd_kafka_type_t type) {
  char err[512];
  h->rt = a->rt;
  h->loop = pthread_self();
  h->pipefd[0] = h->pipefd[1] = -1;
  h->timeout_ms = a->timeout_ms ? a->timeout_ms : KAFKA_DEFAULT_TIMEOUT_MS;
  h->brokers = dup_str(brokers);
  if (h->brokers == NULL) {
    rd_kafka_conf_destroy(conf);
    return SEA_ENOMEM;
  }
  if (pipe2(h->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    rd_kafka_conf_destroy(conf);
    H->set_error(a->rt, "kafka: pipe: %s", strerror(errno));
    return SEA_EIO;
  }
  rd_kafka_conf_set_opaque(conf, h);
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  h->rk = rd_kafka_new(type, conf, err, sizeof err);
  if (h->rk == NULL) {
    rd_kafka_conf_destroy(conf);
    H->set_error(a->rt, "kafka: cannot create the %s: %s",
                 type == RD_KAFKA_PRODUCER ? "producer" : "consumer", err);
    return SEA_EOPTION;
  }
  return 0;
}

static int handle_watch(khandle_t *h) {
  h->watch = H->watch_start(h->rt, h->pipefd[0], SEA_WATCH_READABLE, on_pipe, h);
  return h->watch ? 0 : SEA_ENOMEM;
}

static void close_fds(khandle_t *h) {
  if (h->pipefd[0] >= 0)
    close(h->pipefd[0]);
  if (h->pipefd[1] >= 0)
    close(h->pipefd[1]);
  h->pipefd[0] = h->pipefd[1] = -1;
}

/* rd_kafka_consumer_close and rd_kafka_destroy block (they leave the group and join threads):
 * they run on a pool thread. h->closed keeps every callback they trigger away from the host. */
static void destroy_work(void *data) {
  khandle_t *h = data;
  if (h->rk) {
    if (h->is_consumer) {
      /* What was acked is committed before the consumer leaves (synchronously: this is the
       * pool thread), so a close loses nothing already processed. */
      if (h->commit_on_close)
        rd_kafka_commit(h->rk, NULL, 0);
      rd_kafka_consumer_close(h->rk);
    } else if (h->txn_open) /* closed without a flush: what was sent is not committed */
      rd_kafka_error_destroy(rd_kafka_abort_transaction(h->rk, 5000));
    rd_kafka_destroy(h->rk);
    h->rk = NULL;
  }
  close_fds(h);
}

static void destroy_after(void *data, int status) {
  (void)status;
  khandle_t *h = data;
  if (h->rk) /* the work was canceled */
    destroy_work(h);
  H->free(h->brokers);
  H->free(h);
}

/* The handle is closed and no job holds it: tear down off the loop thread. */
static void handle_release(khandle_t *h) {
  if (!h->closed || h->pending_work > 0)
    return;
  h->pending_work = -1; /* released */
  if (H->queue_work(h->rt, destroy_work, destroy_after, h) != 0) {
    destroy_work(h);
    destroy_after(h, 0);
  }
}

static void handle_close(khandle_t *h) {
  __atomic_store_n(&h->closed, 1, __ATOMIC_RELAXED); /* meta_work reads it on the pool */
  if (h->watch)
    H->watch_stop(h->watch);
  h->watch = NULL;
  handle_release(h);
}

static int err_to_sea(rd_kafka_resp_err_t e) {
  switch (e) {
  case RD_KAFKA_RESP_ERR_NO_ERROR:
    return 0;
  case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
  case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    return SEA_ETOOBIG;
  case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
  case RD_KAFKA_RESP_ERR__TIMED_OUT:
  case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    return SEA_ETIMEDOUT;
  case RD_KAFKA_RESP_ERR__TRANSPORT:
  case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
  case RD_KAFKA_RESP_ERR__RESOLVE:
    return SEA_ECONNECT;
  case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
  case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
  case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
  case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    return SEA_EKEY;
  case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
  case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    return SEA_ECANCELED;
  case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    return SEA_EAGAIN;
  case RD_KAFKA_RESP_ERR__STATE:
    return SEA_ESTATE;
  case RD_KAFKA_RESP_ERR__INVALID_ARG:
    return SEA_EINVAL;
  default:
    return SEA_EBACKEND;
  }
}

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

static void meta_work(void *data) {
  meta_job_t *j = data;
  int tmo = j->h->timeout_ms > INT32_MAX ? INT32_MAX : (int)j->h->timeout_ms;
  rd_kafka_topic_t *rkt = NULL;
  if (j->create && j->topic_count == 1)
    rkt = rd_kafka_topic_new(j->h->rk, j->topics[0], NULL);
  j->err = rd_kafka_metadata(j->h->rk, rkt == NULL, rkt, &j->md, tmo);
  /* A topic the broker creates for this request has no leader yet, and librdkafka would look
   * again only at its next periodic topic scan, a second later: every send waits that long.
   * Asking again every 20 ms until the leaders are known (each answer updates librdkafka's
   * metadata cache) lets the sends go as soon as the topic is ready. Measured here: 1 message to
   * a new topic took 1.01 s before, as it does with kcat. */
  uint64_t waited = 0;
  while (rkt && j->settle && j->err == 0 && waited < (uint64_t)tmo && waited < 5000 &&
         !__atomic_load_n(&j->h->closed, __ATOMIC_RELAXED)) {
    const struct rd_kafka_metadata_topic *mt = j->md->topic_cnt == 1 ? &j->md->topics[0] : NULL;
    int ready = mt && mt->err == 0 && mt->partition_cnt > 0;
    for (int p = 0; ready && p < mt->partition_cnt; p++)
      ready = mt->partitions[p].leader >= 0 && mt->partitions[p].err == 0;
    if (ready || (mt && mt->err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE &&
                  mt->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && mt->err != 0))
      break;
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    waited += 20;
    const struct rd_kafka_metadata *md2 = NULL;
    rd_kafka_resp_err_t e2 = rd_kafka_metadata(j->h->rk, 0, rkt, &md2, tmo);
    if (e2)
      break; /* keep the first answer: librdkafka's own lookup goes on */
    rd_kafka_metadata_destroy(j->md);
    j->md = md2;
  }
  if (rkt)
    rd_kafka_topic_destroy(rkt);
  if (j->err || !j->watermarks)
    return;
  j->lo = rd_kafka_topic_partition_list_new(8);
  j->hi = rd_kafka_topic_partition_list_new(8);
  for (int t = 0; t < j->md->topic_cnt; t++) {
    const struct rd_kafka_metadata_topic *mt = &j->md->topics[t];
    int wanted = 0;
    for (size_t i = 0; i < j->topic_count; i++)
      wanted |= strcmp(j->topics[i], mt->topic) == 0;
    for (int p = 0; wanted && p < mt->partition_cnt; p++) {
      int64_t lo, hi;
      if (rd_kafka_query_watermark_offsets(j->h->rk, mt->topic, mt->partitions[p].id, &lo, &hi,
                                           tmo) != RD_KAFKA_RESP_ERR_NO_ERROR)
        continue; /* librdkafka resolves this partition's start itself */
      rd_kafka_topic_partition_list_add(j->lo, mt->topic, mt->partitions[p].id)->offset = lo;
      rd_kafka_topic_partition_list_add(j->hi, mt->topic, mt->partitions[p].id)->offset = hi;
    }
  }
}

static void meta_job_free(meta_job_t *j) {
  if (j->md)
    rd_kafka_metadata_destroy(j->md);
  if (j->lo)
    rd_kafka_topic_partition_list_destroy(j->lo);
  if (j->hi)
    rd_kafka_topic_partition_list_destroy(j->hi);
  for (size_t i = 0; i < j->topic_count; i++)
    H->free(j->topics[i]);
  H->free(j->topics);
  H->free(j);
}

static void meta_after(void *data, int status) {
  meta_job_t *j = data;
  khandle_t *h = j->h;
  h->pending_work--;
  if (status != 0 && j->err == 0)
    j->err = RD_KAFKA_RESP_ERR__DESTROY;
  if (!h->closed) {
    if (j->err == 0 && !h->connected) {
      h->connected = 1;
      LOGI("connected to %s", h->brokers);
    }
    j->done(h, j);
  }
  meta_job_free(j);
  handle_release(h);
}

/* create: 0 = consumer, 1 = producer (the topic may be auto-created: wait for its leaders),
 * 2 = producer with auto-creation off. */
static int meta_start(khandle_t *h, const char *const *topics, size_t n, int create, int watermarks,
                      void (*done)(khandle_t *, meta_job_t *)) {
  meta_job_t *j = H->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->h = h;
  j->watermarks = watermarks;
  j->done = done;
  j->create = create != 0;
  j->settle = create == 1;
  if (n) {
    j->topics = H->calloc(n, sizeof *j->topics);
    if (j->topics == NULL) {
      H->free(j);
      return SEA_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
      if ((j->topics[i] = dup_str(topics[i])) == NULL) {
        meta_job_free(j);
        return SEA_ENOMEM;
      }
      j->topic_count++;
    }
  }
  h->pending_work++;
  if (H->queue_work(h->rt, meta_work, meta_after, j) != 0) {
    h->pending_work--;
    meta_job_free(j);
    return SEA_EIO;
  }
  return 0;
}

static const struct rd_kafka_metadata_topic *md_topic(const struct rd_kafka_metadata *md,
                                                      const char *name) {
  for (int i = 0; md && i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, name) == 0)
      return &md->topics[i];
  return NULL;
}

/* =============================================================================================
 * Producer
 * =========================================================================================== */

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

static void producer_fail_purge(kproducer_t *kp, int status, const char *msg) {
  if (kp->failed)
    return;
  kp->failed = 1;
  kp->fail_status = status;
  snprintf(kp->fail_msg, sizeof kp->fail_msg, "%s", msg);
  H->producer_fail(kp->p, status, "%s", msg);
  /* Outstanding sends get their (failed) receipts now rather than at message.timeout.ms. */
  rd_kafka_purge(kp->h.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

/* Every broker lost after the handle had connected: librdkafka reconnects by itself, so this is
 * a warning, said once per outage; the first message or receipt after it says it is over
 * (handle_back). librdkafka has no "broker up" event outside its debug logs, so traffic is the
 * sign: an idle consumer says it when the next message arrives. */
static int handle_lost(khandle_t *h, int err, const char *reason) {
  if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || !h->connected)
    return 0;
  if (!h->down)
    LOGW("lost every broker of %s (%s); reconnecting", h->brokers, reason);
  h->down = 1;
  return 1;
}

static void handle_back(khandle_t *h) {
  if (h->down) {
    h->down = 0;
    LOGI("reconnected to %s", h->brokers);
  }
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  kproducer_t *kp = opaque;
  if (kp->h.closed)
    return;
  kp->receipted++;
  sea_meta_t meta = {0};
  int status = err_to_sea(m->err);
  if (status == 0) {
    handle_back(&kp->h);
    /* Our sends name topics by the handles we cache (and hold), so the key is found there. */
    for (size_t i = 0; i < kp->ntopics && meta.stream_key == NULL; i++)
      if (kp->topics[i].rkt == m->rkt)
        meta.stream_key = kp->topics[i].key;
    if (meta.stream_key == NULL) {
      const char *name = rd_kafka_topic_name(m->rkt);
      meta.stream_key = H->stream_key(name, strlen(name));
    }
    meta.shard_id = (uint64_t)m->partition;
    meta.seq = (uint64_t)m->offset;
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    meta.timestamp_us = ts >= 0 ? ts * 1000 : H->now_us();
  } else if (!kp->failed && status != SEA_ECANCELED) {
    /* A send the broker refused fails the producer: later sends would meet the same fate, and
     * the message says what and where. */
    char msg[512];
    snprintf(msg, sizeof msg, "kafka: delivery to topic '%s' (partition %" PRId32 ") failed: %s",
             rd_kafka_topic_name(m->rkt), m->partition, rd_kafka_err2str(m->err));
    LOGE("%s", msg + 7); /* the log adds "kafka: " */
    kp->failed = 1;
    kp->fail_status = status;
    snprintf(kp->fail_msg, sizeof kp->fail_msg, "%s", msg);
    H->producer_fail(kp->p, status, "%s", msg);
  }
  H->receipt(kp->p, m->_private, status, status == 0 ? &meta : NULL);
}

static void producer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kproducer_t *kp = opaque;
  /* Not on the loop thread: served by a blocking call (a transaction commit) on the pool. */
  if (kp->h.closed || !pthread_equal(kp->h.loop, pthread_self()))
    return;
  char msg[600];
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, why, sizeof why);
    snprintf(msg, sizeof msg, "kafka: fatal producer error: %s: %s", rd_kafka_err2name(e), why);
    producer_fail_purge(kp, SEA_EBACKEND, msg);
  } else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !kp->h.connected) {
    snprintf(msg, sizeof msg, "kafka: cannot connect to %s: %s", kp->h.brokers, reason);
    producer_fail_purge(kp, SEA_ECONNECT, msg);
  } else if (!handle_lost(&kp->h, err, reason)) {
    LOGW("%s", reason);
  }
}

static void txn_commit_start(kproducer_t *kp);

static void txn_end_maybe(kproducer_t *kp);

static void producer_complete_ops(kproducer_t *kp) {
  if (kp->txn_state == TXN_ENDING)
    txn_end_maybe(kp);
  if (kp->txn && !kp->txn_explicit && !kp->failed) {
    /* Flushes whose sends are all delivered are completed by committing the transaction. */
    if (kp->txn_state == TXN_OPEN && kp->nops > 0 && kp->receipted >= kp->ops[0].target)
      txn_commit_start(kp);
    return;
  }
  /* Flushes made before txn_begin still wait for the implicit commit in flight. */
  if (kp->txn && kp->txn_state == TXN_COMMITTING && !kp->failed)
    return;
  /* Flushes made while transactions are set up complete once a transaction is open: then
   * init_transactions is done, and with it whatever a predecessor with the same
   * transactional.id left (its commit finished or its open transaction aborted). */
  if (kp->txn && kp->txn_state == TXN_INIT && !kp->failed)
    return;
  size_t w = 0;
  for (size_t i = 0; i < kp->nops; i++) {
    if (kp->receipted >= kp->ops[i].target)
      H->op_done(kp->ops[i].op, kp->fail_status, kp->fail_status ? "flush: %s" : NULL,
                 kp->fail_msg);
    else
      kp->ops[w++] = kp->ops[i];
  }
  kp->nops = w;
}

static void producer_drain(khandle_t *h) {
  kproducer_t *kp = (kproducer_t *)h;
  /* rd_kafka_poll serves delivery reports, errors and logs here, on the loop thread. A bounded
   * number per turn keeps the loop fair to other handles. */
  int served = 0, n;
  while ((n = rd_kafka_poll(h->rk, 0)) > 0 && !h->closed) {
    served += n;
    if (served > 100000) {
      schedule_again(h);
      break;
    }
  }
  if (h->closed)
    return;
  producer_complete_ops(kp);
  if (kp->want_ready && served > 0) {
    kp->want_ready = 0;
    H->producer_ready(kp->p);
  }
  /* Still waiting for room: nothing to do until delivery reports come back. They will (a full
   * queue holds messages, and each gets its report), and the first one into the empty queue
   * writes to the pipe. Draining again at once would spin the loop meanwhile. */
}

static void producer_meta_done(khandle_t *h, meta_job_t *j) {
  kproducer_t *kp = (kproducer_t *)h;
  char msg[700];
  if (j->err) {
    snprintf(msg, sizeof msg, "kafka: cannot connect to %s within %" PRIu64 " ms: %s", h->brokers,
             h->timeout_ms, rd_kafka_err2str(j->err));
    LOGE("%s", msg + 7); /* the log adds "kafka: " */
    producer_fail_purge(kp, err_to_sea(j->err) == SEA_ETIMEDOUT ? SEA_ECONNECT : err_to_sea(j->err),
                        msg);
    return;
  }
  /* A missing topic fails now only when the user turned auto-creation off; otherwise
   * librdkafka's own metadata request lets the broker create it (or the delivery fails). */
  if (j->topic_count == 1 && kp->no_autocreate) {
    const struct rd_kafka_metadata_topic *t = md_topic(j->md, j->topics[0]);
    if (t == NULL || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      snprintf(msg, sizeof msg,
               "kafka: topic '%s' does not exist on %s (and allow.auto.create.topics=false)",
               j->topics[0], h->brokers);
      LOGE("%s", msg + 7); /* the log adds "kafka: " */
      producer_fail_purge(kp, SEA_EKEY, msg);
    }
  }
}

/* ---- transactions: init and commit block on the coordinator, so they run on the pool ---- */

enum { JOB_INIT, JOB_COMMIT_IMPLICIT, JOB_COMMIT, JOB_ABORT, JOB_OFFSETS };

typedef struct txn_job {
  kproducer_t *kp;
  int kind;   /* JOB_* */
  int commit; /* a commit (implicit or explicit) */
  int status;
  int aborted;   /* 1: the failed commit was aborted; -1: fatal, the producer cannot go on */
  int retriable; /* the failed call may be tried again */
  sea_op_t *op;  /* JOB_COMMIT, JOB_ABORT, JOB_OFFSETS */
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_consumer_group_metadata_t *cgmd;
  char msg[512];
} txn_job_t;

static void txn_work(void *data) {
  txn_job_t *j = data;
  rd_kafka_t *rk = j->kp->h.rk;
  int tmo = j->kp->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)j->kp->h.timeout_ms;
  rd_kafka_error_t *e;
  switch (j->kind) {
  case JOB_INIT:
    e = rd_kafka_init_transactions(rk, tmo);
    break;
  case JOB_ABORT:
    e = rd_kafka_abort_transaction(rk, tmo);
    break;
  case JOB_OFFSETS:
    e = rd_kafka_send_offsets_to_transaction(rk, j->offsets, j->cgmd, tmo);
    break;
  default:
    e = rd_kafka_commit_transaction(rk, tmo);
    break;
  }
  if (e == NULL)
    return;
  j->retriable = rd_kafka_error_is_retriable(e);
  snprintf(j->msg, sizeof j->msg, "%s", rd_kafka_error_string(e));
  j->status = rd_kafka_error_is_fatal(e) ? SEA_EBACKEND : err_to_sea(rd_kafka_error_code(e));
  if (j->status == 0)
    j->status = SEA_EBACKEND;
  if (j->commit && rd_kafka_error_txn_requires_abort(e)) {
    rd_kafka_error_t *a = rd_kafka_abort_transaction(rk, tmo);
    j->aborted = a == NULL;
    if (a)
      rd_kafka_error_destroy(a);
  }
  if (rd_kafka_error_is_fatal(e))
    j->aborted = -1; /* the producer cannot go on */
  rd_kafka_error_destroy(e);
}

static void txn_begin(kproducer_t *kp) {
  if (kp->txn_explicit && !kp->begin_pending) {
    kp->txn_state = TXN_IDLE; /* the next one begins with txn_begin */
    return;
  }
  kp->begin_pending = 0;
  kp->txn_base = kp->sent;
  rd_kafka_error_t *e = rd_kafka_begin_transaction(kp->h.rk);
  if (e) {
    char msg[600];
    snprintf(msg, sizeof msg, "kafka: begin transaction: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    kp->txn_state = TXN_FAILED;
    producer_fail_purge(kp, SEA_EBACKEND, msg);
    return;
  }
  kp->txn_state = TXN_OPEN;
  schedule_again(&kp->h); /* flushes that came while no transaction was open */
  if (kp->want_ready) {
    kp->want_ready = 0;
    H->producer_ready(kp->p);
  }
}

static void txn_explicit_after(kproducer_t *kp, txn_job_t *j);

static void txn_after(void *data, int status) {
  txn_job_t *j = data;
  kproducer_t *kp = j->kp;
  kp->h.pending_work--;
  if (status && j->status == 0) {
    j->status = SEA_ECANCELED;
    snprintf(j->msg, sizeof j->msg, "canceled");
  }
  if (j->offsets)
    rd_kafka_topic_partition_list_destroy(j->offsets);
  if (j->cgmd)
    rd_kafka_consumer_group_metadata_destroy(j->cgmd);
  if (j->kind >= JOB_COMMIT) {
    if (!kp->h.closed)
      txn_explicit_after(kp, j);
  } else if (!kp->h.closed) {
    char msg[700];
    if (!j->commit) {
      if (j->status) {
        snprintf(msg, sizeof msg, "kafka: init transactions on %s: %s", kp->h.brokers, j->msg);
        kp->txn_state = TXN_FAILED;
        producer_fail_purge(kp, j->status, msg);
      } else {
        txn_begin(kp);
      }
    } else {
      /* The ops that waited for this commit; later flushes wait for the next one. */
      size_t n = (size_t)kp->txn_ready_ops;
      kop_t *done = NULL;
      if (n) {
        done = H->alloc(n * sizeof *done);
        if (done)
          memcpy(done, kp->ops, n * sizeof *done);
        memmove(kp->ops, kp->ops + n, (kp->nops - n) * sizeof *kp->ops);
        kp->nops -= n;
      }
      kp->txn_ready_ops = 0;
      if (j->status && j->aborted < 0) {
        snprintf(msg, sizeof msg, "kafka: commit transaction: %s", j->msg);
        kp->txn_state = TXN_FAILED;
        producer_fail_purge(kp, j->status, msg);
      } else if (!kp->failed) {
        txn_begin(kp);
      }
      for (size_t i = 0; done && i < n; i++) {
        if (j->status)
          H->op_done(done[i].op, j->status, "commit transaction%s: %s",
                     j->aborted > 0 ? " (aborted)" : "", j->msg);
        else
          H->op_done(done[i].op, 0, NULL);
      }
      H->free(done);
      if (!kp->h.closed)
        schedule_again(&kp->h);
    }
  }
  H->free(j);
  handle_release(&kp->h);
}

static int txn_queue(kproducer_t *kp, txn_job_t *j) {
  kp->h.pending_work++;
  if (H->queue_work(kp->h.rt, txn_work, txn_after, j) != 0) {
    kp->h.pending_work--;
    return SEA_EIO;
  }
  return 0;
}

static int txn_start(kproducer_t *kp, int commit) {
  txn_job_t *j = H->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kp = kp;
  j->commit = commit;
  j->kind = commit ? JOB_COMMIT_IMPLICIT : JOB_INIT;
  kp->h.pending_work++;
  if (H->queue_work(kp->h.rt, txn_work, txn_after, j) != 0) {
    kp->h.pending_work--;
    H->free(j);
    return SEA_EIO;
  }
  return 0;
}

static void txn_commit_start(kproducer_t *kp) {
  /* Every flush whose sends were all delivered rides on this commit. */
  int n = 0;
  while ((size_t)n < kp->nops && kp->receipted >= kp->ops[n].target)
    n++;
  kp->txn_ready_ops = n;
  kp->txn_state = TXN_COMMITTING;
  if (txn_start(kp, 1) != 0) {
    kp->txn_state = TXN_FAILED;
    producer_fail_purge(kp, SEA_EIO, "kafka: cannot queue the transaction commit");
  }
}

static int kafka_producer_open(void *simpl, sea_producer_t *p, const sea_open_args_t *a,
                               void **impl) {
  kstreamer_t *ks = simpl;
  kproducer_t *kp = H->calloc(1, sizeof *kp);
  if (kp == NULL)
    return SEA_ENOMEM;
  kp->p = p;
  kp->partition = RD_KAFKA_PARTITION_UA;
  const char *v = H->option_get(a->backend_options, "partition");
  if (v) {
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 0 || n > INT32_MAX) {
      H->set_error(a->rt, "kafka: option partition=%s: expected a partition number (0 or more)", v);
      H->free(kp);
      return SEA_EOPTION;
    }
    kp->partition = (int32_t)n;
  }
  const char *ac = H->option_get(a->backend_options, "allow.auto.create.topics");
  kp->no_autocreate = ac && strcmp(ac, "false") == 0;
  kp->txn = H->option_get(a->backend_options, "transactional.id") != NULL;
  if (H->option_get(a->backend_options, "auto_commit")) {
    H->set_error(a->rt, "kafka: option auto_commit is for consumers, not producers");
    H->free(kp);
    return SEA_EOPTION;
  }
  rd_kafka_conf_t *conf;
  int rc = make_conf(a->rt, ks->brokers, a->backend_options, &conf);
  if (rc) {
    H->free(kp);
    return rc;
  }
  /* Unreachable brokers: undelivered messages fail after the timeout instead of 5 minutes,
   * unless the user set message.timeout.ms. */
  if (a->timeout_ms && !H->option_get(a->backend_options, "message.timeout.ms") &&
      !H->option_get(a->backend_options, "delivery.timeout.ms")) {
    char t[32];
    snprintf(t, sizeof t, "%" PRIu64, a->timeout_ms);
    if ((rc = conf_set(a->rt, conf, "message.timeout.ms", t))) {
      rd_kafka_conf_destroy(conf);
      H->free(kp);
      return rc;
    }
  }
  /* Idempotence by default, as Kafka's own clients since 3.0: a retried request can then neither
   * reorder a partition's messages nor store one twice (without it, a first send to a topic
   * still being created was seen to land after the other 99 of its batch). Left alone when the
   * user set it or a property it constrains. */
  static const char *const idem_props[] = {"enable.idempotence", "acks", "request.required.acks",
                                           "max.in.flight",
                                           "max.in.flight.requests.per.connection"};
  int idem_user = 0;
  for (size_t i = 0; i < sizeof idem_props / sizeof idem_props[0]; i++)
    idem_user |= H->option_get(a->backend_options, idem_props[i]) != NULL;
  if (!idem_user && (rc = conf_set(a->rt, conf, "enable.idempotence", "true"))) {
    rd_kafka_conf_destroy(conf);
    H->free(kp);
    return rc;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  rd_kafka_conf_set_error_cb(conf, producer_error_cb);
  kp->h.drain = producer_drain;
  if ((rc = handle_init(&kp->h, a, ks->brokers, conf, RD_KAFKA_PRODUCER))) {
    close_fds(&kp->h);
    H->free(kp->h.brokers);
    H->free(kp);
    return rc;
  }
  rd_kafka_queue_t *mq = rd_kafka_queue_get_main(kp->h.rk);
  rd_kafka_queue_io_event_enable(mq, kp->h.pipefd[1], "1", 1);
  rd_kafka_queue_destroy(mq);
  const char *topics[1];
  size_t nt = 0;
  if (a->anchor) {
    snprintf(kp->anchor, sizeof kp->anchor, "%s", a->anchor);
    topics[nt++] = kp->anchor;
  }
  if ((rc = handle_watch(&kp->h)) ||
      (rc = meta_start(&kp->h, topics, nt, kp->no_autocreate ? 2 : 1, 0, producer_meta_done)) ||
      (kp->txn && (rc = txn_start(kp, 0)))) {
    handle_close(&kp->h);
    return rc;
  }
  *impl = kp;
  return 0;
}

static rd_kafka_topic_t *producer_topic(kproducer_t *kp, const char *key) {
  for (size_t i = 0; i < kp->ntopics; i++)
    if (kp->topics[i].key == key)
      return kp->topics[i].rkt;
  if (kp->ntopics == kp->captopics) {
    size_t cap = kp->captopics ? kp->captopics * 2 : 8;
    ktopic_t *t = H->realloc(kp->topics, cap * sizeof *t);
    if (t == NULL)
      return NULL;
    kp->topics = t;
    kp->captopics = cap;
  }
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(kp->h.rk, key, NULL);
  if (rkt == NULL)
    return NULL;
  kp->topics[kp->ntopics].key = key;
  kp->topics[kp->ntopics++].rkt = rkt;
  return rkt;
}

static int kafka_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  kproducer_t *kp = impl;
  if (kp->failed)
    return SEA_ESTATE;
  if (kp->txn && kp->txn_state != TXN_OPEN) {
    if (kp->txn_state == TXN_IDLE || kp->txn_state == TXN_ENDING) {
      H->set_error(kp->h.rt, "no transaction is open (%s; call sea_producer_txn_begin first)",
                   kp->txn_state == TXN_IDLE ? "the last one ended" : "the open one is ending");
      return SEA_ESTATE;
    }
    /* No transaction is open (initializing or committing): wait for producer_ready. */
    kp->want_ready = 1;
    return SEA_EAGAIN;
  }
  rd_kafka_topic_t *rkt = producer_topic(kp, m->meta.stream_key);
  if (rkt == NULL)
    return SEA_ENOMEM;
  int32_t part = kp->partition;
  if ((flags & SEA_SEND_KEEP_META) && part == RD_KAFKA_PARTITION_UA &&
      m->meta.shard_id <= INT32_MAX)
    part = (int32_t)m->meta.shard_id;
  rd_kafka_headers_t *hdrs = NULL;
  if (m->header_count) {
    hdrs = rd_kafka_headers_new(m->header_count);
    for (size_t i = 0; i < m->header_count; i++) {
      const sea_kv_t *kv = &m->headers[i];
      rd_kafka_header_add(hdrs, kv->name, (ssize_t)kv->name_len, kv->value,
                          kv->value ? (ssize_t)kv->value_len : 0);
    }
  }
  int64_t ts_ms = m->meta.timestamp_us > 0 ? m->meta.timestamp_us / 1000 : 0;
  rd_kafka_resp_err_t e = rd_kafka_producev(
      kp->h.rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(part),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_VALUE((void *)m->payload.data, m->payload.len),
      RD_KAFKA_V_KEY((const void *)m->key, m->key ? m->key_len : 0), RD_KAFKA_V_TIMESTAMP(ts_ms),
      RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(token), RD_KAFKA_V_END);
  if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
    kp->sent++;
    return 0;
  }
  if (hdrs)
    rd_kafka_headers_destroy(hdrs);
  if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
    /* Backpressure: the host waits for producer_ready, which the next delivery reports bring. */
    kp->want_ready = 1;
    schedule_again(&kp->h);
    return SEA_EAGAIN;
  }
  if (e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
    char v[32] = "?";
    size_t vn = sizeof v;
    rd_kafka_conf_get(rd_kafka_conf(kp->h.rk), "message.max.bytes", v, &vn);
    H->set_error(kp->h.rt, "a message of %zu bytes is over message.max.bytes (%s)",
                 m->payload.len + (m->key ? m->key_len : 0), v);
    return SEA_ETOOBIG;
  }
  H->set_error(kp->h.rt, "partition %" PRId32 ": %s", part, rd_kafka_err2str(e));
  return err_to_sea(e);
}

static int producer_add_op(kproducer_t *kp, sea_op_t *op) {
  if (kp->nops == kp->capops) {
    size_t cap = kp->capops ? kp->capops * 2 : 4;
    kop_t *o = H->realloc(kp->ops, cap * sizeof *o);
    if (o == NULL)
      return SEA_ENOMEM;
    kp->ops = o;
    kp->capops = cap;
  }
  kp->ops[kp->nops].op = op;
  kp->ops[kp->nops++].target = kp->sent;
  /* Completes from the drain once the receipts are in (maybe at once, on the next turn). */
  schedule_again(&kp->h);
  return 0;
}

static int kafka_producer_flush(void *impl, sea_op_t *op) {
  return producer_add_op(impl, op);
}

static void kafka_producer_close(void *impl) {
  kproducer_t *kp = impl;
  kp->h.txn_open =
      kp->txn && (kp->txn_state == TXN_OPEN || (kp->txn_state == TXN_ENDING && !kp->end_started));
  for (size_t i = 0; i < kp->ntopics; i++)
    rd_kafka_topic_destroy(kp->topics[i].rkt);
  H->free(kp->topics);
  H->free(kp->ops);
  kp->topics = NULL;
  kp->ops = NULL;
  kp->ntopics = kp->nops = 0;
  handle_close(&kp->h);
}

/* =============================================================================================
 * Consumer
 * =========================================================================================== */

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

static int pos_note(kposlist_t *l, const char *key, int32_t part, int64_t next) {
  if (l->last < l->n && l->v[l->last].key == key && l->v[l->last].partition == part) {
    if (next > l->v[l->last].next)
      l->v[l->last].next = next;
    return 0;
  }
  for (size_t i = 0; i < l->n; i++) {
    if (l->v[i].key == key && l->v[i].partition == part) {
      if (next > l->v[i].next)
        l->v[i].next = next;
      l->last = i;
      return 0;
    }
  }
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    kpos_t *v = H->realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return SEA_ENOMEM;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n].key = key;
  l->v[l->n].partition = part;
  l->v[l->n].next = next;
  l->v[l->n].base = next - 1;
  l->last = l->n++;
  return 0;
}

static kpos_t *pos_find(kposlist_t *l, const char *topic, int32_t part) {
  for (size_t i = 0; i < l->n; i++)
    if (l->v[i].partition == part && strcmp(l->v[i].key, topic) == 0)
      return &l->v[i];
  return NULL;
}

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
  int last_eof_idx;            /* assigned_index's cache */
  kposlist_t delivered, acked; /* next offsets: what was delivered, what was acked */
  kposlist_t ends;   /* rewound to the committed positions after it ended: where it ended */
  int in_txn;        /* its offsets went into a producer's transaction: no commit on close */
  unsigned revokes;  /* rebalances that took partitions away */
  const char *group; /* interned, or NULL */
} kconsumer_t;

/* "topic[0], topic[1]@42" (@offset where one is set) for the logs, cut to fit buf. */
static const char *parts_text(const rd_kafka_topic_partition_list_t *parts, int offsets, char *buf,
                              size_t size) {
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; parts && i < parts->cnt && o + 1 < size; i++) {
    const rd_kafka_topic_partition_t *p = &parts->elems[i];
    int n = offsets && p->offset >= 0 ? snprintf(buf + o, size - o, "%s%s[%" PRId32 "]@%" PRId64,
                                                 i ? ", " : "", p->topic, p->partition, p->offset)
                                      : snprintf(buf + o, size - o, "%s%s[%" PRId32 "]",
                                                 i ? ", " : "", p->topic, p->partition);
    if (n < 0 || (size_t)n >= size - o) {
      if (size > 4)
        memcpy(buf + size - 4, "...", 4);
      break;
    }
    o += (size_t)n;
  }
  return buf[0] ? buf : "none";
}

static void consumer_fail(kconsumer_t *kc, int status, const char *fmt, ...) {
  if (kc->ended)
    return;
  kc->ended = 1;
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  LOGD("%s", msg);
  H->consumer_end(kc->c, status, "%s", msg);
}

static void consumer_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  kconsumer_t *kc = opaque;
  if (kc->h.closed || !pthread_equal(kc->h.loop, pthread_self()))
    return;
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, why, sizeof why);
    consumer_fail(kc, SEA_EBACKEND, "kafka: fatal consumer error: %s: %s", rd_kafka_err2name(e),
                  why);
  } else if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !kc->h.connected) {
    consumer_fail(kc, SEA_ECONNECT, "kafka: cannot connect to %s: %s", kc->h.brokers, reason);
  } else if (!handle_lost(&kc->h, err, reason)) {
    LOGW("%s", reason);
  }
}

static void set_assigned(kconsumer_t *kc, const rd_kafka_topic_partition_list_t *parts) {
  if (kc->assigned)
    rd_kafka_topic_partition_list_destroy(kc->assigned);
  kc->assigned = parts ? rd_kafka_topic_partition_list_copy(parts) : NULL;
  H->free(kc->at_eof);
  kc->at_eof = NULL;
  if (kc->assigned && kc->assigned->cnt)
    kc->at_eof = H->calloc((size_t)kc->assigned->cnt, sizeof *kc->at_eof);
}

/* The offset a fresh assignment starts at, from the start option or the mode. */
static int64_t start_offset(const kconsumer_t *kc) {
  if (kc->start_from_end > 0)
    return RD_KAFKA_OFFSET_TAIL(kc->start_from_end);
  if (kc->has_start && !kc->start_is_time) {
    if (kc->start_pos.kind == SEA_POS_BEGINNING)
      return RD_KAFKA_OFFSET_BEGINNING;
    if (kc->start_pos.kind == SEA_POS_END)
      return RD_KAFKA_OFFSET_END;
    return (int64_t)kc->start_pos.seq;
  }
  if (kc->mode == SEA_MODE_REALTIME)
    return kc->reset_earliest ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
  return RD_KAFKA_OFFSET_STORED;
}

/* Forgets the positions of partitions this consumer no longer owns: a transaction's offsets
 * must not move the group in partitions another member now reads. */
static void pos_forget(kposlist_t *l, const rd_kafka_topic_partition_list_t *parts) {
  size_t w = 0;
  for (size_t i = 0; i < l->n; i++) {
    int gone = 0;
    for (int j = 0; j < parts->cnt && !gone; j++)
      gone = parts->elems[j].partition == l->v[i].partition &&
             strcmp(parts->elems[j].topic, l->v[i].key) == 0;
    if (!gone)
      l->v[w++] = l->v[i];
  }
  l->n = w;
  l->last = 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  kconsumer_t *kc = opaque;
  int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  if (kc->h.closed) {
    /* Closing on a pool thread: just give the partitions back. */
    if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (coop)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
      else
        rd_kafka_assign(rk, NULL);
    }
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (!kc->start_applied && (kc->has_start || kc->start_from_end) && !kc->start_is_time) {
      for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = start_offset(kc);
    }
    kc->start_applied = 1;
    rd_kafka_error_t *e = NULL;
    if (coop) {
      e = rd_kafka_incremental_assign(rk, parts);
      rd_kafka_topic_partition_list_t *now = NULL;
      if (rd_kafka_assignment(rk, &now) == 0) {
        set_assigned(kc, now);
        rd_kafka_topic_partition_list_destroy(now);
      }
    } else {
      rd_kafka_assign(rk, parts);
      set_assigned(kc, parts);
    }
    if (e) {
      consumer_fail(kc, SEA_EBACKEND, "kafka: rebalance: assign failed: %s",
                    rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
    char list[512];
    LOGI("group '%s' assigned %d partition(s)%s: %s", kc->group ? kc->group : "?", parts->cnt,
         coop ? " (incremental)" : "", parts_text(parts, 0, list, sizeof list));
  } else {
    /* Revoked: commit what was acked before the partitions go to another member, so it is
     * not delivered twice. Asynchronous: the commit is queued before the unassign. A consumer
     * whose offsets go into transactions commits only through them: a commit here would move
     * the group past output that an abort then discards. */
    if (kc->mode != SEA_MODE_REALTIME && !kc->in_txn && !rd_kafka_assignment_lost(rk))
      rd_kafka_commit(rk, NULL, 1);
    pos_forget(&kc->delivered, parts);
    pos_forget(&kc->acked, parts);
    kc->revokes++;
    rd_kafka_topic_partition_list_t *now = NULL;
    if (coop) {
      /* Incremental: the partitions not revoked stay, and so does what is known of them. */
      rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
      if (rd_kafka_assignment(rk, &now) != 0)
        now = NULL;
    } else {
      rd_kafka_assign(rk, NULL);
    }
    set_assigned(kc, now);
    int kept = now != NULL && now->cnt > 0;
    if (now)
      rd_kafka_topic_partition_list_destroy(now);
    char list[512];
    LOGI("group '%s' revoked %d partition(s)%s: %s", kc->group ? kc->group : "?", parts->cnt,
         rd_kafka_assignment_lost(rk) ? " (lost)" : "", parts_text(parts, 0, list, sizeof list));
    if (H->consumer_revoked)
      H->consumer_revoked(kc->c, coop && kept);
  }
}

/* The bytes one message needs in a block: [sea_kv_t headers][header bytes][key][payload],
 * rounded up so the next message's header array stays aligned. */
static size_t message_size(rd_kafka_message_t *rm, size_t *nh_out) {
  rd_kafka_headers_t *hdrs = NULL;
  size_t nh = 0, bytes = 0;
  if (rd_kafka_message_headers(rm, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
    nh = rd_kafka_header_cnt(hdrs);
    for (size_t i = 0; i < nh; i++) {
      const char *name;
      const void *val;
      size_t vlen;
      if (rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) == 0)
        bytes += strlen(name) + 1 + (val ? vlen : 0);
    }
  }
  *nh_out = nh;
  size_t size = nh * sizeof(sea_kv_t) + bytes + rm->key_len + rm->len;
  return (size + 7) & ~(size_t)7;
}

/* The interned stream key of a topic handle (one lookup per run of the same topic). */
static const char *topic_key(kconsumer_t *kc, rd_kafka_topic_t *rkt) {
  const char *name = rd_kafka_topic_name(rkt);
  /* The name is checked too: a handle's address may be reused by another topic. */
  if (rkt != kc->last_rkt || kc->last_key == NULL || strcmp(name, kc->last_key) != 0) {
    kc->last_rkt = rkt;
    kc->last_key = H->stream_key(name, strlen(name));
  }
  return kc->last_key;
}

/* Copy one message to w (message_size bytes) and fill m; b is the block w lies in. */
static void fill_message(kconsumer_t *kc, rd_kafka_message_t *rm, size_t nh, uint8_t *w,
                         sea_block_t *b, sea_message_t *m) {
  rd_kafka_headers_t *hdrs = NULL;
  if (nh)
    rd_kafka_message_headers(rm, &hdrs);
  sea_kv_t *kv = (sea_kv_t *)(void *)w;
  w += nh * sizeof(sea_kv_t);
  for (size_t i = 0; i < nh; i++) {
    const char *name;
    const void *val;
    size_t vlen;
    if (hdrs == NULL || rd_kafka_header_get_all(hdrs, i, &name, &val, &vlen) != 0) {
      memset(&kv[i], 0, sizeof kv[i]);
      continue;
    }
    size_t nl = strlen(name);
    memcpy(w, name, nl + 1);
    kv[i].name = (const char *)w;
    kv[i].name_len = nl;
    w += nl + 1;
    kv[i].value = NULL;
    kv[i].value_len = 0;
    if (val) {
      memcpy(w, val, vlen);
      kv[i].value = w;
      kv[i].value_len = vlen;
      w += vlen;
    }
  }
  memset(m, 0, sizeof *m);
  if (rm->key) {
    memcpy(w, rm->key, rm->key_len);
    m->key = w;
    m->key_len = rm->key_len;
    w += rm->key_len;
  }
  if (rm->len)
    memcpy(w, rm->payload, rm->len);
  m->payload.data = w;
  m->payload.len = rm->len;
  m->payload.block = b;
  m->headers = nh ? kv : NULL;
  m->header_count = nh;
  m->meta.stream_key = topic_key(kc, rm->rkt);
  m->meta.shard_id = (uint64_t)rm->partition;
  m->meta.seq = (uint64_t)rm->offset;
  rd_kafka_timestamp_type_t tt;
  int64_t ts = rd_kafka_message_timestamp(rm, &tt);
  m->meta.timestamp_us = ts >= 0 ? ts * 1000 : 0;
  m->backend_pos = (uint64_t)rm->offset;
}

/* Deliver kc->pend[0..n) as one batch whose messages share one block (one allocation per
 * batch, not per message; each message holds its own reference). Destroys the messages. */
static int deliver_pending(kconsumer_t *kc, size_t n) {
  if (n == 0)
    return 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    kc->pend_nh[2 * i + 1] = message_size(kc->pend[i], &kc->pend_nh[2 * i]);
    total += kc->pend_nh[2 * i + 1];
  }
  sea_batch_t *batch = H->batch_new(n);
  sea_block_t *b = H->block_new(total ? total : 1);
  if (batch == NULL || b == NULL) {
    if (batch)
      H->batch_release(batch);
    H->block_unref(b);
    for (size_t i = 0; i < n; i++)
      rd_kafka_message_destroy(kc->pend[i]);
    return SEA_ENOMEM;
  }
  uint8_t *w = H->block_data(b);
  for (size_t i = 0; i < n; i++) {
    size_t nh = kc->pend_nh[2 * i], sz = kc->pend_nh[2 * i + 1];
    if (i > 0)
      H->block_ref(b);
    sea_message_t *m = &batch->msgs[batch->count++];
    fill_message(kc, kc->pend[i], nh, w, b, m);
    if (kc->mode != SEA_MODE_REALTIME && m->meta.stream_key)
      pos_note(&kc->delivered, m->meta.stream_key, (int32_t)m->meta.shard_id,
               (int64_t)m->backend_pos + 1);
    w += sz;
    rd_kafka_message_destroy(kc->pend[i]);
  }
  H->deliver(kc->c, batch); /* may re-enter: pause, commit, seek, close (deferred) */
  return 0;
}

static int assigned_index(const kconsumer_t *kc, const char *topic, int32_t part) {
  for (int i = 0; kc->assigned && i < kc->assigned->cnt; i++)
    if (kc->assigned->elems[i].partition == part &&
        strcmp(kc->assigned->elems[i].topic, topic) == 0)
      return i;
  return -1;
}

static int all_at_eof(const kconsumer_t *kc) {
  if (kc->assigned == NULL || kc->assigned->cnt == 0 || kc->at_eof == NULL)
    return 0;
  for (int i = 0; i < kc->assigned->cnt; i++)
    if (!kc->at_eof[i])
      return 0;
  return 1;
}

/* A commit refused because the group's coordinator is moving (it died, or moved, or its
 * connection dropped with the commit in flight, or it timed out): this member still owns its
 * partitions, and the same commit may succeed once a coordinator answers again. */
static int commit_coordinator_moving(rd_kafka_resp_err_t e) {
  switch (e) {
  case RD_KAFKA_RESP_ERR__WAIT_COORD:
  case RD_KAFKA_RESP_ERR__TRANSPORT:
  case RD_KAFKA_RESP_ERR__TIMED_OUT:
  case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
  case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
  case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
  case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    return 1;
  default:
    return 0;
  }
}

/* A commit refused because the group changed under it (a rebalance, a member the coordinator
 * dropped): its partitions are, or will be, another member's; trying again cannot help. */
static int commit_overtaken(rd_kafka_resp_err_t e) {
  switch (e) {
  case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST: /* the session timed out during the failover */
  case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
  case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
  case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
  case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    return 1;
  default:
    return 0;
  }
}

static void commits_serve(kconsumer_t *kc) {
  rd_kafka_event_t *ev;
  while (!kc->h.closed && (ev = rd_kafka_queue_poll(kc->commitq, 0)) != NULL) {
    if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_OFFSET_COMMIT) {
      kcommit_t *k = rd_kafka_event_opaque(ev);
      rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
      for (size_t i = 0; k && i < kc->ncommits; i++) {
        if (kc->commits[i] != k)
          continue;
        kc->commits[i] = kc->commits[--kc->ncommits];
        /* Nothing to commit is not a failure. */
        if (e == 0) {
          char list[512];
          LOGI("group '%s' committed %s", kc->group ? kc->group : "?",
               parts_text(rd_kafka_event_topic_partition_list(ev), 1, list, sizeof list));
        }
        if (e == 0 || e == RD_KAFKA_RESP_ERR__NO_OFFSET)
          H->op_done(k->op, 0, NULL);
        else if (commit_coordinator_moving(e) && !kc->h.closed)
          /* Not done, nothing lost: the caller may commit again (the pipeline does, with a
           * bounded backoff, at its last commit; a later timer commit covers the others). */
          H->op_done(k->op, SEA_EBUSY,
                     "commit: %s (the group's coordinator is moving: commit again later)",
                     rd_kafka_err2str(e));
        else if (commit_overtaken(e)) {
          /* The group moved under the commit: this member was dropped from the generation (a
           * broker failover outlasting the session, a rebalance). (Seen on a three-broker
           * cluster whose group coordinator was killed: "Broker: Unknown member", "Local:
           * Group partition assignment lost"; tests/kafka/test_cluster.sh.)
           * Nothing is lost: these positions stay uncommitted, and whoever holds the
           * partitions after the rebalance delivers again from the last commit. Not a failure
           * of the stream (a pipeline goes on; it used to end with status 1 at its stop). */
          LOGW("commit not done, the group moved under it (%s): whoever holds the partitions "
               "next delivers again from the last commit (duplicates, nothing lost)",
               rd_kafka_err2str(e));
          H->op_done(k->op, SEA_ECANCELED, "commit: %s (the group moved under it)",
                     rd_kafka_err2str(e));
        } else
          H->op_done(k->op, err_to_sea(e), "commit: %s", rd_kafka_err2str(e));
        H->free(k);
        break;
      }
    }
    rd_kafka_event_destroy(ev);
  }
}

/* Marks (topic, partition) as at its end or not; the last index found is tried first. */
static void mark_eof(kconsumer_t *kc, rd_kafka_message_t *rm, int at_end) {
  if (kc->at_eof == NULL || kc->assigned == NULL)
    return;
  int i = kc->last_eof_idx;
  if (i < 0 || i >= kc->assigned->cnt || kc->assigned->elems[i].partition != rm->partition ||
      strcmp(kc->assigned->elems[i].topic, rd_kafka_topic_name(rm->rkt)) != 0)
    i = assigned_index(kc, rd_kafka_topic_name(rm->rkt), rm->partition);
  if (i >= 0) {
    kc->at_eof[i] = at_end;
    kc->last_eof_idx = i;
  }
}

/* Drops the messages of kc->pend[0..n) whose partitions are no longer assigned; returns how
 * many are left. */
static size_t pend_drop_unassigned(kconsumer_t *kc, size_t n) {
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    rd_kafka_message_t *rm = kc->pend[i];
    if (assigned_index(kc, rd_kafka_topic_name(rm->rkt), rm->partition) >= 0)
      kc->pend[w++] = rm;
    else
      rd_kafka_message_destroy(rm);
  }
  if (w < n)
    LOGD("rebalance: %zu polled message(s) of revoked partitions dropped", n - w);
  return w;
}

/* Rewound after it ended (stop_at_end): a partition is at its end again once it delivered the
 * message it had ended after (librdkafka need not report the end of a partition twice). */
static void end_reached(kconsumer_t *kc, rd_kafka_message_t *rm) {
  kpos_t *e = pos_find(&kc->ends, rd_kafka_topic_name(rm->rkt), rm->partition);
  if (e == NULL || rm->offset + 1 < e->next)
    return;
  mark_eof(kc, rm, 1);
  *e = kc->ends.v[--kc->ends.n];
  kc->ends.last = 0;
}

static void consumer_drain(khandle_t *h) {
  kconsumer_t *kc = (kconsumer_t *)h;
  commits_serve(kc);
  if (h->closed || !kc->started || kc->ended || !kc->ready)
    return;
  size_t cap = kc->batch ? kc->batch : KAFKA_DEFAULT_BATCH;
  if (kc->pend_cap < cap) {
    rd_kafka_message_t **p = H->realloc(kc->pend, cap * sizeof *p);
    if (p)
      kc->pend = p;
    size_t *q = p ? H->realloc(kc->pend_nh, 2 * cap * sizeof *q) : NULL;
    if (q)
      kc->pend_nh = q;
    if (p == NULL || q == NULL) {
      consumer_fail(kc, SEA_ENOMEM, "kafka: out of memory");
      return;
    }
    kc->pend_cap = cap;
  }
  int rounds = 0;
  int64_t t0 = mono_us();
  while (!h->closed && !kc->paused && !kc->ended) {
    size_t n = 0;
    int more = 0, empty_polls = 0, failed = 0;
    rd_kafka_resp_err_t fail_err = 0;
    char detail[400];
    unsigned revokes = kc->revokes;
    while (1) {
      /* Serves rebalances, errors and logs too, all here on the loop thread. */
      rd_kafka_message_t *rm = rd_kafka_consumer_poll(h->rk, 0);
      if (h->closed) {
        if (rm)
          rd_kafka_message_destroy(rm);
        break;
      }
      if (kc->revokes != revokes) {
        /* A rebalance took partitions away while this batch was being gathered: what came
         * from them is now another member's to deliver. */
        revokes = kc->revokes;
        n = pend_drop_unassigned(kc, n);
      }
      if (rm == NULL) {
        /* With a zero timeout the poll returns NULL after serving one op that is not a message
         * (a log line, a rebalance) even when messages follow; the io event only fires when
         * the queue goes from empty to non-empty, so keep going until it is really empty. */
        if (rd_kafka_queue_length(kc->cq) > 0 && ++empty_polls < 1000)
          continue;
        break;
      }
      if (rm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        mark_eof(kc, rm, 1);
        rd_kafka_message_destroy(rm);
        if (kc->stop_at_end && all_at_eof(kc))
          break;
        continue;
      }
      if (rm->err) {
        const char *topic = rm->rkt ? rd_kafka_topic_name(rm->rkt) : "?";
        rd_kafka_resp_err_t e = rm->err;
        snprintf(detail, sizeof detail, "topic '%s' on %s: %s", topic, h->brokers,
                 rd_kafka_message_errstr(rm));
        rd_kafka_message_destroy(rm);
        if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
            e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
          failed = 1; /* after delivering what came before it */
          fail_err = e;
          break;
        }
        LOGW("consume from %s", detail);
        continue;
      }
      handle_back(h);
      mark_eof(kc, rm, 0);
      if (kc->ends.n)
        end_reached(kc, rm);
      kc->pend[n++] = rm;
      if (n == cap) {
        more = 1;
        break;
      }
    }
    if (h->closed) {
      for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(kc->pend[i]);
      return;
    }
    if (deliver_pending(kc, n)) {
      consumer_fail(kc, SEA_ENOMEM, "kafka: out of memory");
      return;
    }
    if (h->closed)
      return;
    if (failed) {
      consumer_fail(kc, err_to_sea(fail_err), "kafka: %s", detail);
      return;
    }
    if (kc->stop_at_end && !kc->ended && all_at_eof(kc)) {
      kc->ended = 1;
      H->consumer_end(kc->c, SEA_EOF, NULL);
      return;
    }
    if (!more)
      return;
    if (++rounds >= 64 || mono_us() - t0 >= KAFKA_DRAIN_SLICE_US) { /* fair to the loop */
      schedule_again(h);
      return;
    }
  }
}

/* Realtime and resumable: assign every partition of the topics (or the explicit choices). */
/* A logical start offset made absolute with the partition's watermarks, when they are known. */
static int64_t resolve_offset(const meta_job_t *j, const char *topic, int32_t part, int64_t off) {
  if (j->lo == NULL || off >= 0)
    return off;
  rd_kafka_topic_partition_t *lo = rd_kafka_topic_partition_list_find(j->lo, topic, part);
  rd_kafka_topic_partition_t *hi = rd_kafka_topic_partition_list_find(j->hi, topic, part);
  if (lo == NULL || hi == NULL)
    return off;
  if (off == RD_KAFKA_OFFSET_BEGINNING)
    return lo->offset;
  if (off == RD_KAFKA_OFFSET_END)
    return hi->offset;
  if (off <= RD_KAFKA_OFFSET_TAIL(0)) {
    int64_t n = RD_KAFKA_OFFSET_TAIL(0) - off;
    return hi->offset - n > lo->offset ? hi->offset - n : lo->offset;
  }
  return off;
}

static int consumer_assign_all(kconsumer_t *kc, const meta_job_t *j) {
  const struct rd_kafka_metadata *md = j->md;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
  if (kc->explicit_) {
    for (int i = 0; i < kc->explicit_->cnt; i++)
      rd_kafka_topic_partition_list_add(l, kc->explicit_->elems[i].topic,
                                        kc->explicit_->elems[i].partition)
          ->offset = start_offset(kc);
  } else {
    for (size_t t = 0; t < kc->ntopics; t++) {
      const struct rd_kafka_metadata_topic *mt = md_topic(md, kc->topics[t]);
      for (int p = 0; mt && p < mt->partition_cnt; p++)
        rd_kafka_topic_partition_list_add(l, kc->topics[t], mt->partitions[p].id)->offset =
            start_offset(kc);
    }
  }
  for (int i = 0; i < l->cnt; i++)
    l->elems[i].offset =
        resolve_offset(j, l->elems[i].topic, l->elems[i].partition, l->elems[i].offset);
  rd_kafka_resp_err_t e = rd_kafka_assign(kc->h.rk, l);
  if (e == 0)
    set_assigned(kc, l);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    consumer_fail(kc, err_to_sea(e), "kafka: assign: %s", rd_kafka_err2str(e));
    return -1;
  }
  return 0;
}

typedef struct seek_job {
  kconsumer_t *kc;
  sea_op_t *op; /* NULL: the start=s@MS of a fresh assignment */
  rd_kafka_topic_partition_list_t *parts;
  rd_kafka_resp_err_t err;
} seek_job_t;

static void seek_work(void *data) {
  seek_job_t *j = data;
  int tmo = j->kc->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)j->kc->h.timeout_ms;
  j->err = rd_kafka_offsets_for_times(j->kc->h.rk, j->parts, tmo);
}

static void seek_apply(kconsumer_t *kc, seek_job_t *j) {
  if (j->err) {
    if (j->op)
      H->op_done(j->op, err_to_sea(j->err), "seek: offsets for times: %s",
                 rd_kafka_err2str(j->err));
    else
      consumer_fail(kc, err_to_sea(j->err), "kafka: start=s@MS: offsets for times: %s",
                    rd_kafka_err2str(j->err));
    return;
  }
  /* A partition without a message at or after the time starts at its end. */
  for (int i = 0; i < j->parts->cnt; i++)
    if (j->parts->elems[i].offset < 0)
      j->parts->elems[i].offset = RD_KAFKA_OFFSET_END;
  if (j->op == NULL) {
    rd_kafka_resp_err_t e = rd_kafka_assign(kc->h.rk, j->parts);
    if (e)
      consumer_fail(kc, err_to_sea(e), "kafka: assign: %s", rd_kafka_err2str(e));
    else
      set_assigned(kc, j->parts);
    return;
  }
  rd_kafka_error_t *e = rd_kafka_seek_partitions(kc->h.rk, j->parts, 0);
  if (e) {
    H->op_done(j->op, SEA_EBACKEND, "seek: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  } else {
    if (kc->at_eof && kc->assigned)
      memset(kc->at_eof, 0, (size_t)kc->assigned->cnt * sizeof *kc->at_eof);
    H->op_done(j->op, 0, NULL);
  }
}

static void seek_after(void *data, int status) {
  seek_job_t *j = data;
  kconsumer_t *kc = j->kc;
  kc->h.pending_work--;
  kc->seeks--;
  if (status && j->err == 0)
    j->err = RD_KAFKA_RESP_ERR__DESTROY;
  if (!kc->h.closed) {
    seek_apply(kc, j);
    if (!kc->h.closed)
      schedule_again(&kc->h);
  }
  rd_kafka_topic_partition_list_destroy(j->parts);
  H->free(j);
  handle_release(&kc->h);
}

static int seek_start(kconsumer_t *kc, const rd_kafka_topic_partition_list_t *parts, int64_t ts_us,
                      sea_op_t *op) {
  seek_job_t *j = H->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kc = kc;
  j->op = op;
  j->parts = rd_kafka_topic_partition_list_copy(parts);
  for (int i = 0; i < j->parts->cnt; i++)
    j->parts->elems[i].offset = ts_us / 1000;
  kc->h.pending_work++;
  kc->seeks++;
  if (H->queue_work(kc->h.rt, seek_work, seek_after, j) != 0) {
    kc->h.pending_work--;
    kc->seeks--;
    rd_kafka_topic_partition_list_destroy(j->parts);
    H->free(j);
    return SEA_EIO;
  }
  return 0;
}

static void consumer_meta_done(khandle_t *h, meta_job_t *j) {
  kconsumer_t *kc = (kconsumer_t *)h;
  if (j->err) {
    consumer_fail(kc, SEA_ECONNECT, "kafka: cannot connect to %s within %" PRIu64 " ms: %s",
                  h->brokers, h->timeout_ms, rd_kafka_err2str(j->err));
    return;
  }
  for (size_t i = 0; i < kc->ntopics; i++) {
    const struct rd_kafka_metadata_topic *t = md_topic(j->md, kc->topics[i]);
    if (t == NULL || t->err) {
      consumer_fail(kc, SEA_EKEY, "kafka: topic '%s' does not exist on %s%s%s", kc->topics[i],
                    h->brokers, t && t->err ? ": " : "",
                    t && t->err ? rd_kafka_err2str(t->err) : "");
      return;
    }
  }
  if (kc->ntopics == 0) {
    consumer_fail(kc, SEA_EKEY,
                  "kafka: the URI names no topic to consume (kafka://host:port/topic[,topic])");
    return;
  }
  if (kc->mode == SEA_MODE_LOAD_BALANCED) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)kc->ntopics);
    for (size_t i = 0; i < kc->ntopics; i++)
      rd_kafka_topic_partition_list_add(l, kc->topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(h->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
      consumer_fail(kc, err_to_sea(e), "kafka: subscribe: %s", rd_kafka_err2str(e));
      return;
    }
  } else if (kc->start_is_time) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    for (size_t t = 0; t < kc->ntopics; t++) {
      const struct rd_kafka_metadata_topic *mt = md_topic(j->md, kc->topics[t]);
      for (int p = 0; mt && p < mt->partition_cnt; p++)
        rd_kafka_topic_partition_list_add(l, kc->topics[t], mt->partitions[p].id);
    }
    int rc = seek_start(kc, l, kc->start_ts_us, NULL);
    rd_kafka_topic_partition_list_destroy(l);
    if (rc)
      consumer_fail(kc, rc, "kafka: start=s@MS: %s", "cannot queue the lookup");
  } else if (consumer_assign_all(kc, j)) {
    return;
  }
  kc->ready = 1;
  schedule_again(h);
}

static int kafka_consumer_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *a,
                               void **impl) {
  kstreamer_t *ks = simpl;
  const sea_uri_t *uri = a->uri;
  kconsumer_t *kc = H->calloc(1, sizeof *kc);
  if (kc == NULL)
    return SEA_ENOMEM;
  kc->c = c;
  kc->mode = a->mode;
  kc->group = a->group;
  kc->reset_earliest = a->reset_earliest;
  kc->has_start = a->has_start;
  kc->start_is_time = a->start_is_time;
  kc->start_pos = a->start_pos;
  kc->start_ts_us = a->start_ts_us;
  kc->start_from_end = a->start_from_end;
  kc->stop_at_end = a->stop_at_end;
  kc->batch = a->batch_size;
  int rc = 0;
  const char *v;
  int b = 0;
  if (H->option_get(a->backend_options, "partition")) {
    H->set_error(a->rt, "kafka: option partition is for producers (consumers use assign)");
    rc = SEA_EOPTION;
  } else if ((v = H->option_get(a->backend_options, "auto_commit")) != NULL &&
             strcmp(v, "at-most-once") != 0 && (parse_bool(v, &b) != 0 || b)) {
    /* librdkafka's auto commit stores every delivered offset, processed or not: a crash loses
     * what was in flight. At most once exists only by name (docs/delivery.md). */
    if (parse_bool(v, &b) == 0)
      H->set_error(a->rt,
                   "kafka: option auto_commit=%s commits what was delivered, processed or not (at "
                   "most once): say auto_commit=at-most-once to ask for that, or leave it out "
                   "(ack, then commit: at least once)",
                   v);
    else
      H->set_error(a->rt, "kafka: option auto_commit=%s: expected at-most-once or false", v);
    rc = SEA_EOPTION;
  } else if (v != NULL && strcmp(v, "at-most-once") == 0 && a->mode == SEA_MODE_REALTIME) {
    H->set_error(a->rt, "kafka: option auto_commit=at-most-once: a realtime consumer has no "
                        "position to commit (use mode=resumable or load-balanced with a group)");
    rc = SEA_EOPTION;
  } else {
    kc->auto_commit = v != NULL && strcmp(v, "at-most-once") == 0;
  }
  /* The subscription: the consumer's keys, else the URI's. */
  size_t nk = a->key_count ? a->key_count : uri->key_count;
  if (rc == 0 && nk) {
    kc->topics = H->calloc(nk, sizeof *kc->topics);
    for (size_t i = 0; kc->topics && i < nk; i++) {
      kc->topics[i] = dup_str(a->key_count ? a->keys[i] : uri->keys[i]);
      if (kc->topics[i])
        kc->ntopics++;
    }
    if (kc->topics == NULL || kc->ntopics != nk)
      rc = SEA_ENOMEM;
  }
  rd_kafka_conf_t *conf = NULL;
  if (rc == 0)
    rc = make_conf(a->rt, ks->brokers, a->backend_options, &conf);
  char gid[96];
  const char *group = a->group;
  if (rc == 0 && group == NULL) {
    /* librdkafka wants a group id even for assign(); realtime never commits to it. */
    snprintf(gid, sizeof gid, "seastreamer-realtime-%ld-%" PRIx64, (long)getpid(),
             (uint64_t)H->now_us());
    group = gid;
  }
  if (rc == 0)
    rc = conf_set(a->rt, conf, "group.id", group);
  if (rc == 0)
    rc = conf_set(a->rt, conf, "enable.partition.eof", "true");
  if (rc == 0)
    rc = conf_set(a->rt, conf, "auto.offset.reset", a->reset_earliest ? "earliest" : "latest");
  if (rc == 0)
    rc = conf_set(a->rt, conf, "enable.auto.commit", kc->auto_commit ? "true" : "false");
  /* Without auto-commit only acked messages are stored, so a commit covers what was processed. */
  if (rc == 0)
    rc = conf_set(a->rt, conf, "enable.auto.offset.store", kc->auto_commit ? "true" : "false");
  /* When its queue holds queued.min.messages (default 100000) librdkafka 2.0 stops fetching
   * and looks again only after a backoff of up to a second, so a reader that keeps up still
   * stalls every 100000 messages. Memory stays bounded by queued.max.messages.kbytes. */
  if (rc == 0 && !H->option_get(a->backend_options, "queued.min.messages"))
    rc = conf_set(a->rt, conf, "queued.min.messages", "1000000");
  if (rc) {
    if (conf)
      rd_kafka_conf_destroy(conf);
    for (size_t i = 0; i < kc->ntopics; i++)
      H->free(kc->topics[i]);
    H->free(kc->topics);
    H->free(kc);
    return rc;
  }
  rd_kafka_conf_set_error_cb(conf, consumer_error_cb);
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  kc->h.is_consumer = 1;
  kc->h.drain = consumer_drain;
  if ((rc = handle_init(&kc->h, a, ks->brokers, conf, RD_KAFKA_CONSUMER))) {
    close_fds(&kc->h);
    for (size_t i = 0; i < kc->ntopics; i++)
      H->free(kc->topics[i]);
    H->free(kc->topics);
    H->free(kc->h.brokers);
    H->free(kc);
    return rc;
  }
  rd_kafka_poll_set_consumer(kc->h.rk);
  kc->cq = rd_kafka_queue_get_consumer(kc->h.rk);
  rd_kafka_queue_io_event_enable(kc->cq, kc->h.pipefd[1], "1", 1);
  kc->commitq = rd_kafka_queue_new(kc->h.rk);
  rd_kafka_queue_io_event_enable(kc->commitq, kc->h.pipefd[1], "c", 1);
  *impl = kc;
  return 0;
}

static int kafka_consumer_start(void *impl) {
  kconsumer_t *kc = impl;
  kc->started = 1;
  int rc = handle_watch(&kc->h);
  if (rc == 0)
    rc = meta_start(&kc->h, (const char *const *)kc->topics, kc->ntopics, 0,
                    kc->mode == SEA_MODE_REALTIME && !kc->start_is_time, consumer_meta_done);
  return rc;
}

/* Pausing only stops our polling: librdkafka stops fetching by itself once its queue holds
 * queued.max.messages.kbytes. rd_kafka_pause_partitions would drop what it prefetched and fetch
 * it again on resume, which a relay (that pauses whenever its output is full) pays for each
 * time. */
static int kafka_consumer_pause(void *impl) {
  kconsumer_t *kc = impl;
  kc->paused = 1;
  return 0;
}

static int kafka_consumer_resume(void *impl) {
  kconsumer_t *kc = impl;
  kc->paused = 0;
  schedule_again(&kc->h);
  return 0;
}

static int kafka_consumer_seek(void *impl, int64_t ts_us, sea_op_t *op) {
  kconsumer_t *kc = impl;
  if (!kc->ready || kc->assigned == NULL || kc->assigned->cnt == 0) {
    H->op_done(op, SEA_ESTATE, "seek: no partition is assigned yet (wait for the first batch)");
    return 0;
  }
  return seek_start(kc, kc->assigned, ts_us, op);
}

/* ---- back to the group's committed positions (the host's exactly once, after an abort) ---- */

typedef struct committed_job {
  kconsumer_t *kc;
  sea_op_t *op;
  rd_kafka_topic_partition_list_t *parts;
  unsigned revokes; /* kc->revokes when it began */
  rd_kafka_resp_err_t err;
} committed_job_t;

static void committed_work(void *data) {
  committed_job_t *j = data;
  int tmo = j->kc->h.timeout_ms > INT32_MAX ? INT32_MAX : (int)j->kc->h.timeout_ms;
  /* Asks the group's coordinator (OffsetFetch): blocks until it answers, a new one included;
   * three times the timeout at most while it is moving (a failover may outlast one). */
  for (int t = 0; t < 3; t++) {
    j->err = rd_kafka_committed(j->kc->h.rk, j->parts, tmo);
    for (int i = 0; j->err == 0 && i < j->parts->cnt; i++)
      j->err = j->parts->elems[i].err;
    if (!commit_coordinator_moving(j->err))
      break;
  }
}

/* Seeks every partition that delivered something past its committed offset back to it (a
 * partition never committed: back to the first message this assignment delivered). What was
 * acked is forgotten: it went into the aborted transaction. Messages fetched before the seek
 * are never delivered (librdkafka's seek drops them). */
static void committed_apply(kconsumer_t *kc, committed_job_t *j) {
  if (j->err) {
    H->op_done(j->op, err_to_sea(j->err), "rewind to the committed positions: %s",
               rd_kafka_err2str(j->err));
    return;
  }
  kc->acked.n = 0;
  kc->acked.last = 0;
  if (kc->revokes != j->revokes) {
    /* A rebalance came meanwhile: the new assignment starts from the committed positions. */
    H->op_done(j->op, 0, NULL);
    return;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(j->parts->cnt);
  for (int i = 0; i < j->parts->cnt; i++) {
    const rd_kafka_topic_partition_t *tp = &j->parts->elems[i];
    kpos_t *d = pos_find(&kc->delivered, tp->topic, tp->partition);
    if (d == NULL)
      continue; /* nothing delivered: where it is now is where it was */
    int64_t to = tp->offset >= 0 ? tp->offset : d->base;
    if (to >= d->next)
      continue;
    int idx = assigned_index(kc, tp->topic, tp->partition);
    if (idx >= 0 && kc->at_eof && kc->at_eof[idx]) {
      /* At its end: with stop_at_end it is there again once it delivered d->next - 1. */
      if (kc->stop_at_end) {
        const char *key = H->stream_key(tp->topic, strlen(tp->topic));
        if (key && pos_note(&kc->ends, key, tp->partition, d->next) != 0) {
          rd_kafka_topic_partition_list_destroy(l);
          H->op_done(j->op, SEA_ENOMEM, "rewind to the committed positions: out of memory");
          return;
        }
      }
      kc->at_eof[idx] = 0;
    }
    rd_kafka_topic_partition_list_add(l, tp->topic, tp->partition)->offset = to;
    d->next = d->base = to;
  }
  rd_kafka_error_t *e = l->cnt ? rd_kafka_seek_partitions(kc->h.rk, l, 0) : NULL;
  LOGD("rewound %d partition(s) to the committed positions", l->cnt);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    H->op_done(j->op, SEA_EBACKEND, "rewind to the committed positions: %s",
               rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return;
  }
  if (kc->ended && kc->stop_at_end) {
    kc->ended = 0; /* the host took its end back: it ends again at the drain, once at the end */
  }
  H->op_done(j->op, 0, NULL);
}

static void committed_after(void *data, int status) {
  committed_job_t *j = data;
  kconsumer_t *kc = j->kc;
  kc->h.pending_work--;
  if (status && j->err == 0)
    j->err = RD_KAFKA_RESP_ERR__DESTROY;
  if (!kc->h.closed) {
    committed_apply(kc, j);
    if (!kc->h.closed)
      schedule_again(&kc->h);
  }
  rd_kafka_topic_partition_list_destroy(j->parts);
  H->free(j);
  handle_release(&kc->h);
}

static int rewind_committed(kconsumer_t *kc, sea_op_t *op) {
  if (kc->mode == SEA_MODE_REALTIME) {
    H->op_done(op, SEA_ESTATE, "rewind: a realtime consumer has no committed position");
    return 0;
  }
  if (kc->assigned == NULL || kc->assigned->cnt == 0) {
    kc->acked.n = 0;
    H->op_done(op, 0, NULL); /* nothing assigned: nothing delivered to take back */
    return 0;
  }
  committed_job_t *j = H->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kc = kc;
  j->op = op;
  j->revokes = kc->revokes;
  j->parts = rd_kafka_topic_partition_list_copy(kc->assigned);
  kc->h.pending_work++;
  if (H->queue_work(kc->h.rt, committed_work, committed_after, j) != 0) {
    kc->h.pending_work--;
    rd_kafka_topic_partition_list_destroy(j->parts);
    H->free(j);
    return SEA_EIO;
  }
  return 0;
}

static int kafka_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  kconsumer_t *kc = impl;
  if (pos.kind == SEA_POS_COMMITTED_)
    return rewind_committed(kc, op);
  if (!kc->ready || kc->assigned == NULL || kc->assigned->cnt == 0) {
    H->op_done(op, SEA_ESTATE, "rewind: no partition is assigned yet (wait for the first batch)");
    return 0;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(kc->assigned);
  for (int i = 0; i < l->cnt; i++)
    l->elems[i].offset = pos.kind == SEA_POS_BEGINNING ? RD_KAFKA_OFFSET_BEGINNING
                         : pos.kind == SEA_POS_END     ? RD_KAFKA_OFFSET_END
                                                       : (int64_t)pos.seq;
  rd_kafka_error_t *e = rd_kafka_seek_partitions(kc->h.rk, l, 0);
  rd_kafka_topic_partition_list_destroy(l);
  if (e) {
    H->op_done(op, SEA_EBACKEND, "rewind: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
    return 0;
  }
  if (kc->at_eof)
    memset(kc->at_eof, 0, (size_t)kc->assigned->cnt * sizeof *kc->at_eof);
  H->op_done(op, 0, NULL);
  return 0;
}

static int explicit_change(kconsumer_t *kc, const char *key, uint64_t shard, int add) {
  if (kc->mode == SEA_MODE_LOAD_BALANCED) {
    LOGE("%s: a load-balanced consumer's partitions are assigned by its group",
         add ? "assign" : "unassign");
    return SEA_ESTATE;
  }
  if (shard > INT32_MAX)
    return SEA_EINVAL;
  if (kc->explicit_ == NULL)
    kc->explicit_ = rd_kafka_topic_partition_list_new(4);
  int32_t part = (int32_t)shard;
  rd_kafka_topic_partition_t *have = rd_kafka_topic_partition_list_find(kc->explicit_, key, part);
  if (add && have == NULL)
    rd_kafka_topic_partition_list_add(kc->explicit_, key, part);
  else if (!add && have != NULL)
    rd_kafka_topic_partition_list_del(kc->explicit_, key, part);
  else if (!add) {
    LOGE("unassign: partition %s/%" PRId32 " is not assigned", key, part);
    return SEA_EINVAL;
  }
  if (kc->ready) { /* already consuming: apply now (the start point for new partitions) */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(kc->explicit_->cnt);
    for (int i = 0; i < kc->explicit_->cnt; i++) {
      const rd_kafka_topic_partition_t *e = &kc->explicit_->elems[i];
      int idx = assigned_index(kc, e->topic, e->partition);
      int64_t off = start_offset(kc);
      if (idx >= 0) { /* keep its position */
        rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(pos, e->topic, e->partition);
        if (rd_kafka_position(kc->h.rk, pos) == 0 && pos->elems[0].offset >= 0)
          off = pos->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(pos);
      }
      rd_kafka_topic_partition_list_add(l, e->topic, e->partition)->offset = off;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(kc->h.rk, l);
    if (err == 0)
      set_assigned(kc, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
      LOGE("%s: %s", add ? "assign" : "unassign", rd_kafka_err2str(err));
      return err_to_sea(err);
    }
  }
  return 0;
}

static int kafka_consumer_assign(void *impl, const char *key, uint64_t shard) {
  return explicit_change(impl, key, shard, 1);
}

static int kafka_consumer_unassign(void *impl, const char *key, uint64_t shard) {
  return explicit_change(impl, key, shard, 0);
}

/* Stores offset next (the one after the processed message) for (topic, partition): what the
 * next commit commits. */
static int ack_store(kconsumer_t *kc, const char *topic, uint64_t shard, uint64_t seq) {
  if (kc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  if (shard > INT32_MAX || seq >= INT64_MAX) {
    H->set_error(kc->h.rt, "%s partition %" PRIu64 " seq %" PRIu64 ": not a Kafka position", topic,
                 shard, seq);
    return SEA_EINVAL;
  }
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  /* The committed offset is the next one to read. */
  rd_kafka_topic_partition_list_add(l, topic, (int32_t)shard)->offset = (int64_t)seq + 1;
  rd_kafka_resp_err_t e = rd_kafka_offsets_store(kc->h.rk, l);
  if (e == 0 && l->elems[0].err)
    e = l->elems[0].err;
  rd_kafka_topic_partition_list_destroy(l);
  if (e == RD_KAFKA_RESP_ERR__STATE && assigned_index(kc, topic, (int32_t)shard) < 0) {
    /* In a group this is normal: a rebalance gave the partition to another member. */
    H->set_error(kc->h.rt,
                 "%s partition %" PRIu64 " (seq %" PRIu64 ") is not assigned to this consumer%s",
                 topic, shard, seq,
                 kc->mode == SEA_MODE_LOAD_BALANCED
                     ? " (a rebalance gave it to another member, which delivers it again)"
                     : "");
    return SEA_ESTATE;
  }
  if (e) {
    LOGE("ack of %s/%" PRIu64 " seq %" PRIu64 ": %s", topic, shard, seq, rd_kafka_err2str(e));
    H->set_error(kc->h.rt, "%s partition %" PRIu64 " seq %" PRIu64 ": %s", topic, shard, seq,
                 rd_kafka_err2str(e));
    return err_to_sea(e);
  }
  const char *key = H->stream_key(topic, strlen(topic));
  if (key)
    return pos_note(&kc->acked, key, (int32_t)shard, (int64_t)seq + 1);
  return 0;
}

static int kafka_consumer_ack(void *impl, const sea_message_t *m) {
  kconsumer_t *kc = impl;
  if (m == NULL || m->meta.stream_key == NULL)
    return SEA_EINVAL;
  return ack_store(kc, m->meta.stream_key, m->meta.shard_id, m->backend_pos);
}

static int kafka_consumer_ack_pos(void *impl, const char *key, uint64_t shard, uint64_t seq) {
  return ack_store(impl, key, shard, seq);
}

static int kafka_consumer_commit(void *impl, sea_op_t *op) {
  kconsumer_t *kc = impl;
  if (kc->mode == SEA_MODE_REALTIME) {
    H->op_done(op, SEA_ESTATE,
               "commit: a realtime consumer has no position to commit (use mode=resumable or "
               "load-balanced with a group)");
    return 0;
  }
  kcommit_t *k = H->calloc(1, sizeof *k);
  if (k == NULL)
    return SEA_ENOMEM;
  if (kc->ncommits == kc->capcommits) {
    size_t cap = kc->capcommits ? kc->capcommits * 2 : 4;
    kcommit_t **n = H->realloc(kc->commits, cap * sizeof *n);
    if (n == NULL) {
      H->free(k);
      return SEA_ENOMEM;
    }
    kc->commits = n;
    kc->capcommits = cap;
  }
  k->kc = kc;
  k->op = op;
  /* The result comes back as an event on commitq, whose io event wakes the loop. */
  rd_kafka_resp_err_t e = rd_kafka_commit_queue(kc->h.rk, NULL, kc->commitq, NULL, k);
  if (e == RD_KAFKA_RESP_ERR__NO_OFFSET) {
    H->free(k);
    H->op_done(op, 0, NULL);
    return 0;
  }
  if (e) {
    H->free(k);
    H->op_done(op, err_to_sea(e), "commit: %s", rd_kafka_err2str(e));
    return 0;
  }
  kc->commits[kc->ncommits++] = k;
  return 0;
}

/* The lag of each assigned partition: the high watermark librdkafka last learned (fetch
 * responses carry it; statistics.interval.ms refreshes it too) minus the position (the offset
 * after the last message polled). Both are cached, so nothing blocks; -1 until both are known. */
static int kafka_consumer_lag(void *impl, sea_lag_t *out, size_t cap) {
  kconsumer_t *kc = impl;
  if (kc->assigned == NULL || kc->assigned->cnt == 0)
    return 0;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(kc->assigned);
  if (l == NULL)
    return SEA_ENOMEM;
  rd_kafka_position(kc->h.rk, l);
  int n = l->cnt;
  for (int i = 0; i < n && (size_t)i < cap; i++) {
    const rd_kafka_topic_partition_t *tp = &l->elems[i];
    int64_t lo = -1, hi = -1;
    out[i].stream_key = H->stream_key(tp->topic, strlen(tp->topic));
    out[i].shard = (uint64_t)tp->partition;
    out[i].lag_bytes = -1;
    out[i].lag = -1;
    if (rd_kafka_get_watermark_offsets(kc->h.rk, tp->topic, tp->partition, &lo, &hi) == 0 &&
        hi >= 0 && tp->err == 0 && tp->offset >= 0)
      out[i].lag = hi > tp->offset ? hi - tp->offset : 0;
  }
  rd_kafka_topic_partition_list_destroy(l);
  return n;
}

static void kafka_consumer_close(void *impl) {
  kconsumer_t *kc = impl;
  /* A consumer whose offsets went into a transaction leaves committing to the transaction: a
   * commit here would move the group past what an aborted transaction produced. */
  kc->h.commit_on_close = kc->mode != SEA_MODE_REALTIME && kc->ready && !kc->in_txn;
  H->free(kc->delivered.v);
  H->free(kc->acked.v);
  H->free(kc->ends.v);
  memset(&kc->delivered, 0, sizeof kc->delivered);
  memset(&kc->ends, 0, sizeof kc->ends);
  memset(&kc->acked, 0, sizeof kc->acked);
  for (size_t i = 0; i < kc->ncommits; i++)
    H->free(kc->commits[i]); /* the host cancels their ops */
  H->free(kc->commits);
  kc->commits = NULL;
  kc->ncommits = 0;
  for (size_t i = 0; i < kc->ntopics; i++)
    H->free(kc->topics[i]);
  H->free(kc->topics);
  kc->topics = NULL;
  kc->ntopics = 0;
  if (kc->assigned)
    rd_kafka_topic_partition_list_destroy(kc->assigned);
  if (kc->explicit_)
    rd_kafka_topic_partition_list_destroy(kc->explicit_);
  kc->assigned = kc->explicit_ = NULL;
  H->free(kc->at_eof);
  kc->at_eof = NULL;
  H->free(kc->pend);
  H->free(kc->pend_nh);
  kc->pend = NULL;
  kc->pend_nh = NULL;
  if (kc->cq)
    rd_kafka_queue_destroy(kc->cq);
  if (kc->commitq)
    rd_kafka_queue_destroy(kc->commitq);
  kc->cq = kc->commitq = NULL;
  handle_close(&kc->h);
}

/* =============================================================================================
 * Explicit transactions (txn_begin/commit/abort/send_offsets). The blocking librdkafka calls
 * run on the pool; a commit or abort first waits for the receipts of its sends, so the flush
 * librdkafka does inside them finds no delivery report to serve off the loop thread.
 * =========================================================================================== */

static int txn_refuse(kproducer_t *kp, const char *what) {
  if (!kp->txn) {
    H->set_error(kp->h.rt, "this producer is not transactional (set the option "
                           "transactional.id=ID)");
    return SEA_ESTATE;
  }
  if (kp->failed) {
    H->set_error(kp->h.rt, "%s", kp->fail_msg);
    return kp->fail_status ? kp->fail_status : SEA_ESTATE;
  }
  if (kp->txn_state == TXN_FAILED) {
    H->set_error(kp->h.rt, "transactions failed on this producer");
    return SEA_ESTATE;
  }
  (void)what;
  return 0;
}

static int kafka_txn_begin(void *impl) {
  kproducer_t *kp = impl;
  int rc = txn_refuse(kp, "txn_begin");
  if (rc)
    return rc;
  switch (kp->txn_state) {
  case TXN_INIT:
  case TXN_COMMITTING: /* begins once transactions are set up / the implicit commit is done */
    if (kp->txn_explicit && kp->begin_pending) {
      H->set_error(kp->h.rt, "a transaction is already begun");
      return SEA_ESTATE;
    }
    kp->txn_explicit = 1;
    kp->begin_pending = 1;
    return 0;
  case TXN_OPEN:
    if (kp->txn_explicit) {
      H->set_error(kp->h.rt, "a transaction is already open");
      return SEA_ESTATE;
    }
    /* The implicit transaction opened after setup becomes this one, if nothing is in it. */
    if (kp->sent > kp->txn_base) {
      H->set_error(kp->h.rt,
                   "%" PRIu64 " message(s) were sent before txn_begin and are in an implicit "
                   "transaction: flush (which commits them) before txn_begin",
                   kp->sent - kp->txn_base);
      return SEA_ESTATE;
    }
    kp->txn_explicit = 1;
    return 0;
  case TXN_ENDING:
    H->set_error(kp->h.rt, "the last transaction is still ending (begin from its callback)");
    return SEA_ESTATE;
  default: /* TXN_IDLE */
    kp->begin_pending = 1;
    txn_begin(kp);
    if (kp->txn_state == TXN_OPEN)
      return 0;
    H->set_error(kp->h.rt, "%s", kp->fail_msg);
    return SEA_EBACKEND;
  }
}

/* A commit or abort in TXN_ENDING starts once every send has its receipt and no send_offsets
 * runs; a failure of the producer meanwhile fails it. */
static void txn_end_maybe(kproducer_t *kp) {
  if (kp->end_started || kp->end_op == NULL)
    return;
  const char *what = kp->end_abort ? "txn_abort" : "txn_commit";
  if (kp->failed) {
    sea_op_t *op = kp->end_op;
    kp->end_op = NULL;
    kp->txn_state = TXN_FAILED;
    H->op_done(op, kp->fail_status ? kp->fail_status : SEA_EBACKEND, "%s: %s", what, kp->fail_msg);
    return;
  }
  if (kp->receipted < kp->sent || kp->offset_jobs > 0)
    return;
  txn_job_t *j = H->calloc(1, sizeof *j);
  if (j) {
    j->kp = kp;
    j->kind = kp->end_abort ? JOB_ABORT : JOB_COMMIT;
    j->commit = !kp->end_abort;
    j->op = kp->end_op;
  }
  if (j == NULL || txn_queue(kp, j) != 0) {
    H->free(j);
    sea_op_t *op = kp->end_op;
    kp->end_op = NULL;
    kp->txn_state = TXN_OPEN; /* nothing happened: it may be tried again */
    H->op_done(op, SEA_ENOMEM, "%s: cannot queue the call", what);
    return;
  }
  kp->end_started = 1;
}

static void txn_explicit_after(kproducer_t *kp, txn_job_t *j) {
  char msg[700];
  if (j->kind == JOB_OFFSETS) {
    kp->offset_jobs--;
    /* Fatal: the producer fails first, so that the op's callback can tell (sea_producer_error)
     * a producer that cannot go on from a transaction to abort and try again. */
    if (j->aborted < 0) {
      snprintf(msg, sizeof msg, "kafka: send offsets to the transaction: %s", j->msg);
      kp->txn_state = TXN_FAILED;
      producer_fail_purge(kp, j->status, msg);
    }
    if (j->status)
      H->op_done(j->op, j->status, "txn_send_offsets: %s%s", j->msg,
                 j->aborted < 0 ? " (fatal)" : " (abort the transaction)");
    else
      H->op_done(j->op, 0, NULL);
    schedule_again(&kp->h); /* an end may have waited for this */
    return;
  }
  const char *what = j->kind == JOB_ABORT ? "txn_abort" : "txn_commit";
  kp->end_op = NULL;
  kp->end_started = 0;
  if (j->status == 0) {
    kp->txn_state = TXN_IDLE;
    H->op_done(j->op, 0, NULL);
  } else if (j->aborted < 0) {
    snprintf(msg, sizeof msg, "kafka: %s: %s", what, j->msg);
    kp->txn_state = TXN_FAILED;
    producer_fail_purge(kp, j->status, msg); /* first: the op's callback sees it failed */
    H->op_done(j->op, j->status, "%s: %s (fatal)", what, j->msg);
  } else {
    /* A commit that needed an abort was aborted (txn_work); a retriable failure leaves the
     * transaction open to try again. */
    kp->txn_state = j->aborted > 0 || !j->retriable ? TXN_IDLE : TXN_OPEN;
    H->op_done(j->op, j->status, "%s%s: %s", what, j->aborted > 0 ? " (aborted)" : "", j->msg);
  }
  if (kp->want_ready) {
    kp->want_ready = 0;
    H->producer_ready(kp->p); /* a sender waiting gets its answer (a transaction or none) */
  }
}

static int txn_end(kproducer_t *kp, sea_op_t *op, int abort_) {
  const char *what = abort_ ? "txn_abort" : "txn_commit";
  int rc = txn_refuse(kp, what);
  if (rc)
    return rc;
  if (kp->txn_state != TXN_OPEN || !kp->txn_explicit) {
    H->set_error(kp->h.rt, "no transaction is open (call sea_producer_txn_begin first)");
    return SEA_ESTATE;
  }
  kp->txn_state = TXN_ENDING;
  kp->end_op = op;
  kp->end_abort = abort_;
  kp->end_started = 0;
  schedule_again(&kp->h); /* the drain starts it once the receipts are in */
  return 0;
}

static int kafka_txn_commit(void *impl, sea_op_t *op) {
  return txn_end(impl, op, 0);
}

static int kafka_txn_abort(void *impl, sea_op_t *op) {
  return txn_end(impl, op, 1);
}

static int kafka_txn_send_offsets(void *impl, void *cimpl, sea_op_t *op) {
  kproducer_t *kp = impl;
  kconsumer_t *kc = cimpl;
  int rc = txn_refuse(kp, "txn_send_offsets");
  if (rc)
    return rc;
  if (kp->txn_state != TXN_OPEN || !kp->txn_explicit) {
    H->set_error(kp->h.rt, "no transaction is open (call sea_producer_txn_begin first)");
    return SEA_ESTATE;
  }
  if (kc->mode == SEA_MODE_REALTIME) {
    H->set_error(kp->h.rt, "a realtime consumer has no group to commit for (use mode=resumable "
                           "or load-balanced with a group)");
    return SEA_ESTATE;
  }
  /* What the consumer acked, or, if it acked nothing, everything it delivered. */
  const kposlist_t *pl = kc->acked.n ? &kc->acked : &kc->delivered;
  if (pl->n == 0) {
    H->op_done(op, 0, NULL); /* nothing consumed yet: nothing to commit */
    return 0;
  }
  txn_job_t *j = H->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->kp = kp;
  j->kind = JOB_OFFSETS;
  j->op = op;
  j->offsets = rd_kafka_topic_partition_list_new((int)pl->n);
  for (size_t i = 0; i < pl->n; i++)
    rd_kafka_topic_partition_list_add(j->offsets, pl->v[i].key, pl->v[i].partition)->offset =
        pl->v[i].next;
  j->cgmd = rd_kafka_consumer_group_metadata(kc->h.rk);
  if (j->cgmd == NULL || txn_queue(kp, j) != 0) {
    rd_kafka_topic_partition_list_destroy(j->offsets);
    if (j->cgmd)
      rd_kafka_consumer_group_metadata_destroy(j->cgmd);
    H->free(j);
    H->set_error(kp->h.rt, "cannot get the consumer's group metadata");
    return SEA_EBACKEND;
  }
  kp->offset_jobs++;
  kc->in_txn = 1;
  return 0;
}

/* ---- the descriptor ---- */

static const char *const kafka_schemes[] = {"kafka", NULL};

static const sea_plugin_t kafka_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = KAFKA_NAME,
    .schemes = kafka_schemes,
    .version = "0.1.0",
    .description = "Apache Kafka (and Redpanda) through librdkafka",
    .caps = SEA_CAP_REALTIME | SEA_CAP_RESUMABLE | SEA_CAP_LOAD_BALANCED | SEA_CAP_SEEK |
            SEA_CAP_REWIND | SEA_CAP_COMMIT | SEA_CAP_KEY | SEA_CAP_HEADERS | SEA_CAP_SHARDS |
            SEA_CAP_TRANSACTIONS | SEA_CAP_BINARY,
    .default_port = 9092,
    .connect = kafka_connect,
    .disconnect = kafka_disconnect,
    .producer_open = kafka_producer_open,
    .producer_send = kafka_producer_send,
    .producer_flush = kafka_producer_flush,
    .producer_close = kafka_producer_close,
    .consumer_open = kafka_consumer_open,
    .consumer_start = kafka_consumer_start,
    .consumer_pause = kafka_consumer_pause,
    .consumer_resume = kafka_consumer_resume,
    .consumer_seek = kafka_consumer_seek,
    .consumer_rewind = kafka_consumer_rewind,
    .consumer_assign = kafka_consumer_assign,
    .consumer_unassign = kafka_consumer_unassign,
    .consumer_ack = kafka_consumer_ack,
    .consumer_ack_pos = kafka_consumer_ack_pos,
    .consumer_commit = kafka_consumer_commit,
    .consumer_close = kafka_consumer_close,
    .consumer_lag = kafka_consumer_lag,
    .producer_txn_begin = kafka_txn_begin,
    .producer_txn_commit = kafka_txn_commit,
    .producer_txn_abort = kafka_txn_abort,
    .producer_txn_send_offsets = kafka_txn_send_offsets,
    .list = kafka_list,
};

SEA_PLUGIN_ENTRY(kafka) {
  if (host == NULL || host->abi_major != SEA_PLUGIN_ABI_MAJOR)
    return NULL;
  H = host;
  return &kafka_plugin;
}
