/* kafka_handle.c: conf and handle room of the kafka backend. Options become an rd_kafka_conf_t;
 * the khandle (kafka_internal.h) wraps the rd_kafka_t every producer and consumer owns: the pipe
 * librdkafka writes to when a queue has events (its drain is the owner's), the log and stats
 * callbacks, the metadata check each handle starts with, and the teardown that waits for jobs
 * still holding rk. Producers and consumers call in here; it calls back through khandle_t.drain
 * and meta_job_t.done. */
#include "kafka_internal.h"

/* The backend options (ABI 1.4 table): our own two keys, and every other key a librdkafka
 * property, which the host passes through and librdkafka judges (kafka_conf_set). */
/* clang-format off */
const sea_option_spec_t kafka_option_table[] = {
    {.key = "partition", .type = SEA_OPT_U64, .max = INT32_MAX, .flags = SEA_OPT_PRODUCER,
     .help = "every send goes to this partition; consumers use assign"},
    {.key = "auto_commit", .type = SEA_OPT_STR, .flags = SEA_OPT_CONSUMER,
     .help = "at-most-once: librdkafka commits what it delivered"},
    {.key = "*", .type = SEA_OPT_STR, .help = "librdkafka's properties: kcat -X list"},
    {.key = NULL},
};
/* clang-format on */

/* Our own option keys; everything else is a librdkafka property. */
static int own_option(const char *k) {
  return strcmp(k, "partition") == 0 || strcmp(k, "auto_commit") == 0;
}

int kafka_conf_set(sea_runtime_t *rt, rd_kafka_conf_t *conf, const char *k, const char *v) {
  char err[512];
  rd_kafka_conf_res_t r = rd_kafka_conf_set(conf, k, v, err, sizeof err);
  if (r == RD_KAFKA_CONF_OK)
    return 0;
  if (r == RD_KAFKA_CONF_UNKNOWN)
    sea_host->option_unknown(rt, KAFKA_NAME, k, NULL); /* NULL: the keys of kafka_option_table */
  else
    sea_host->set_error(rt, "kafka: option '%s=%s': %s", k, v, err);
  return SEA_EOPTION;
}

/* A conf with the brokers and every passthrough property of opts applied. */
int kafka_make_conf(sea_runtime_t *rt, const char *brokers, const sea_options_t *opts,
                    rd_kafka_conf_t **out) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  int rc = kafka_conf_set(rt, conf, "bootstrap.servers", brokers);
  size_t n = opts ? sea_host->option_count(opts) : 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const char *k, *v;
    if (sea_host->option_at(opts, i, &k, &v) == 0 && !own_option(k))
      rc = kafka_conf_set(rt, conf, k, v);
  }
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  *out = conf;
  return 0;
}

char *kafka_dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = sea_host->alloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* Drain again on the next loop turn (the io event only fires when a queue becomes non-empty):
 * the host's 0 ms timer, which runs once however often it is asked for, and after the loop polled
 * when asked from a drain (a consumer with a backlog asks on every turn: the output's delivery
 * reports and the commit results must not wait until the relay pauses). */
void kafka_schedule_again(khandle_t *h) {
  if (!h->closed)
    sea_host->timer_start(h->again, 0, 0);
}

static void on_again(sea_timer_t *t, void *data) {
  khandle_t *h = data;
  if (!h->closed)
    h->drain(h);
}

int64_t kafka_mono_us(void) {
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
  sea_host->log(l, KAFKA_NAME, "%s: %s", fac, buf);
}

/* librdkafka's statistics (statistics.interval.ms, which only a user sets): one line each on
 * stderr, {"librdkafka": {...}}, where --stats-json writes its lines (a reader tells them apart
 * by the top key). Served with the queue's other events on the loop thread. One write a line. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  (void)rk, (void)opaque;
  size_t n = len + 16;
  char *line = sea_host->alloc(n);
  if (line == NULL)
    return 0;
  memcpy(line, "{\"librdkafka\":", 14);
  memcpy(line + 14, json, len);
  line[14 + len] = '}';
  line[15 + len] = '\n';
  fwrite(line, 1, len + 16, stderr);
  fflush(stderr);
  sea_host->free(line);
  return 0; /* librdkafka frees json */
}

/* Create the rd_kafka_t and the pipe its queues signal. */
int kafka_handle_init(khandle_t *h, const sea_open_args_t *a, const char *brokers,
                      rd_kafka_conf_t *conf, rd_kafka_type_t type) {
  char err[512];
  h->rt = a->rt;
  h->loop = pthread_self();
  h->pipefd[0] = h->pipefd[1] = -1;
  h->timeout_ms = a->timeout_ms ? a->timeout_ms : KAFKA_DEFAULT_TIMEOUT_MS;
  h->brokers = kafka_dup_str(brokers);
  if (h->brokers == NULL) {
    rd_kafka_conf_destroy(conf);
    return SEA_ENOMEM;
  }
  if (pipe2(h->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
    rd_kafka_conf_destroy(conf);
    sea_host->set_error(a->rt, "kafka: pipe: %s", strerror(errno));
    return SEA_EIO;
  }
  rd_kafka_conf_set_opaque(conf, h);
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_stats_cb(conf, stats_cb);
  h->rk = rd_kafka_new(type, conf, err, sizeof err);
  if (h->rk == NULL) {
    rd_kafka_conf_destroy(conf);
    sea_host->set_error(a->rt, "kafka: cannot create the %s: %s",
                        type == RD_KAFKA_PRODUCER ? "producer" : "consumer", err);
    return SEA_EOPTION;
  }
  return 0;
}

int kafka_handle_watch(khandle_t *h) {
  h->watch = sea_host->watch_start(h->rt, h->pipefd[0], SEA_WATCH_READABLE, on_pipe, h);
  h->again = sea_host->timer_init(h->rt, on_again, h);
  return h->watch && h->again ? 0 : SEA_ENOMEM;
}

void kafka_close_fds(khandle_t *h) {
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
  kafka_close_fds(h);
}

static void destroy_after(void *data, int status) {
  (void)status;
  khandle_t *h = data;
  if (h->rk) /* the work was canceled */
    destroy_work(h);
  sea_host->free(h->brokers);
  sea_host->free(h);
}

/* The handle is closed and no job holds it: tear down off the loop thread. */
void kafka_handle_release(khandle_t *h) {
  if (!h->closed || h->pending_work > 0)
    return;
  h->pending_work = -1; /* released */
  if (sea_host->queue_work(h->rt, destroy_work, destroy_after, h) != 0) {
    destroy_work(h);
    destroy_after(h, 0);
  }
}

void kafka_handle_close(khandle_t *h) {
  __atomic_store_n(&h->closed, 1, __ATOMIC_RELAXED); /* meta_work reads it on the pool */
  if (h->watch)
    sea_host->watch_stop(h->watch);
  h->watch = NULL;
  sea_host->timer_close(h->again);
  h->again = NULL;
  kafka_handle_release(h);
}

int kafka_err_to_sea(rd_kafka_resp_err_t e) {
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
    sea_host->free(j->topics[i]);
  sea_host->free(j->topics);
  sea_host->free(j);
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
  kafka_handle_release(h);
}

/* create: 0 = consumer, 1 = producer (the topic may be auto-created: wait for its leaders),
 * 2 = producer with auto-creation off. */
int kafka_meta_start(khandle_t *h, const char *const *topics, size_t n, int create, int watermarks,
                     void (*done)(khandle_t *, meta_job_t *)) {
  meta_job_t *j = sea_host->calloc(1, sizeof *j);
  if (j == NULL)
    return SEA_ENOMEM;
  j->h = h;
  j->watermarks = watermarks;
  j->done = done;
  j->create = create != 0;
  j->settle = create == 1;
  if (n) {
    j->topics = sea_host->calloc(n, sizeof *j->topics);
    if (j->topics == NULL) {
      sea_host->free(j);
      return SEA_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
      if ((j->topics[i] = kafka_dup_str(topics[i])) == NULL) {
        meta_job_free(j);
        return SEA_ENOMEM;
      }
      j->topic_count++;
    }
  }
  h->pending_work++;
  if (sea_host->queue_work(h->rt, meta_work, meta_after, j) != 0) {
    h->pending_work--;
    meta_job_free(j);
    return SEA_EIO;
  }
  return 0;
}

const struct rd_kafka_metadata_topic *kafka_md_topic(const struct rd_kafka_metadata *md,
                                                     const char *name) {
  for (int i = 0; md && i < md->topic_cnt; i++)
    if (strcmp(md->topics[i].topic, name) == 0)
      return &md->topics[i];
  return NULL;
}

/* Every broker lost after the handle had connected: librdkafka reconnects by itself, so this is
 * a warning, said once per outage; the first message or receipt after it says it is over
 * (kafka_handle_back). librdkafka has no "broker up" event outside its debug logs, so traffic is
 * the sign: an idle consumer says it when the next message arrives. */
int kafka_handle_lost(khandle_t *h, int err, const char *reason) {
  if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || !h->connected)
    return 0;
  if (!h->down)
    LOGW("lost every broker of %s (%s); reconnecting", h->brokers, reason);
  h->down = 1;
  return 1;
}

void kafka_handle_back(khandle_t *h) {
  if (h->down) {
    h->down = 0;
    LOGI("reconnected to %s", h->brokers);
  }
}
