/* redis.c: the redis:// backend: Redis Streams over hiredis' async API, driven by the host's loop.
 *
 * Layout (the Rust SeaStreamer's): a message is one stream entry `XADD key * msg <payload>` (the
 * field name is the option field=). Its seq is the entry id packed as (ms << 16) | id-sequence and
 * its timestamp is the id's milliseconds. Shard n of a key lives at `key:n` when the key is split
 * into shards=N > 1 streams; an unsharded key is the plain `key` and shard 0.
 *
 * Connections. Every producer and consumer has its own connection (a consumer's XREAD BLOCK holds
 * its connection), or one per master of a cluster. hiredis does the protocol; this file is its
 * event adapter: hiredis' ev hooks (addRead, delRead, addWrite, delWrite, cleanup) map onto
 * host->watch_*, so no libuv and no hiredis adapter is linked. Host names are resolved with
 * getaddrinfo on the host's thread pool (host->queue_work), so a slow resolver never blocks the
 * loop; hiredis then connects to the numeric address without blocking. After connecting: AUTH (URI
 * user/password), SELECT (db=N), CONFIG GET proto-max-bulk-len (to refuse an oversize payload
 * before the server drops the connection), PING (a server that does not answer PONG is not Redis).
 *
 * Faults. A first connection that fails is an error at once (wrong password, unknown host, not a
 * Redis server, refused). A connection that worked once and is lost is retried with backoff
 * (100 ms doubling to 2 s) for reconnect_ms; meanwhile the producer keeps every unconfirmed
 * message and writes them again once connected (at-least-once), and the consumer resumes from the
 * last entry it delivered (realtime) or re-reads its group's pending entries (groups).
 *
 * Redis Cluster. Every connection asks CLUSTER SLOTS in its handshake; a cluster node answers
 * the slot map (redis_cluster.c: slots, the map, the node table, MOVED/ASK parsing), a plain
 * server an error. In a cluster a handle has one connection per master, at the node's index in
 * its map. The producer keeps one line of records per master (replies match in order per
 * connection), moves a record on MOVED/ASK, parks it on TRYAGAIN/CLUSTERDOWN, and while a node
 * is down reads the map again from the others every 250 ms (heal) until the slots have a master
 * that is up. The consumer reads each stream on its own (CROSSSLOT) on its slot's master, and
 * treats its connections as one: any of them lost, or a redirection in a reply, takes them all
 * down and up again on a map read again, as a reconnect of one connection does today.
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "redis_cluster.h"
#include "redis_list.h"
#include "seastreamer/plugin.h"

static const sea_host_t *rhost;

#define R_NAME "redis"
#define R_BATCH_DEFAULT 1000
#define R_BLOCK_DEFAULT 500
#define R_PIPELINE_DEFAULT 50000
#define R_TIMEOUT_DEFAULT 5000
#define R_RECONNECT_DEFAULT 60000
#define R_CLAIM_DEFAULT 30000
#define R_BULK_DEFAULT (512ull * 1024 * 1024)
/* A stream name: a key (249 bytes), ':' and a shard number. */
#define R_NAME_MAX 280
/* An entry id as text: two 20-digit numbers and a dash. */
#define R_ID_MAX 48

/* Group acknowledgement. manual (the default): an entry is XACKed once the consumer's user (or
 * the host's pipeline) acked it and committed; a crash costs duplicates, never a message.
 * at-most-once: XACK each batch as soon as it is read. none: XREADGROUP ... NOACK. The last two
 * lose what a crash or a stop interrupts, so they are never a default and only named. */
enum { ACK_MANUAL = 0, ACK_AT_MOST_ONCE = 1, ACK_NONE = 2 };

/* Options, from the streamer's and the handle's backend options. */
typedef struct rcfg {
  int db;
  char field[64];
  uint32_t shards;
  int shards_set; /* shards= was given: a consumer reads those and does not look for others */
  int shard_hash;
  uint64_t maxlen;
  uint64_t minid_age_ms;
  uint64_t block_ms;
  int ack;
  int create;
  char consumer[128];
  uint64_t claim_idle_ms;
  uint64_t reconnect_ms;
  uint64_t pipeline;
  uint64_t wait_replicas; /* producer: a receipt only once WAIT says this many replicas have it */
  uint64_t wait_timeout_ms;
} rcfg_t;

typedef struct rstreamer {
  sea_runtime_t *rt;
  char host[256];
  int port;
  char user[128];
  char pass[256];
  char addr[300]; /* host:port, for messages */
  rcfg_t cfg;
  /* Every node the URI names (the first is host:port above). One is a plain server or any node of
   * a cluster; several must be nodes of one cluster, tried in turn for the first connection. */
  struct rseed {
    char host[256];
    int port;
  } * seeds;
  size_t nseeds;
  struct ljob *lists; /* listings running (redis_list.c) */
} rstreamer_t;

/* ------------------------------------------------------------------------------------------- */
/* Options                                                                                      */
/* ------------------------------------------------------------------------------------------- */

static const char r_known_opts[] = "db, field, shards, sharding, maxlen, minid_age_ms, block_ms, "
                                   "ack, create, consumer, claim_idle_ms, reconnect_ms, pipeline, "
                                   "wait_replicas, wait_timeout_ms";

static void cfg_defaults(rcfg_t *c) {
  memset(c, 0, sizeof *c);
  snprintf(c->field, sizeof c->field, "msg");
  c->shards = 1;
  c->block_ms = R_BLOCK_DEFAULT;
  c->ack = ACK_MANUAL;
  c->create = 1;
  c->claim_idle_ms = R_CLAIM_DEFAULT;
  c->reconnect_ms = R_RECONNECT_DEFAULT;
  c->pipeline = R_PIPELINE_DEFAULT;
  c->wait_timeout_ms = 1000;
}

static int parse_u64(const char *v, uint64_t *out) {
  if (v == NULL || *v < '0' || *v > '9')
    return -1;
  char *end;
  unsigned long long n = strtoull(v, &end, 10);
  if (*end != '\0')
    return -1;
  *out = n;
  return 0;
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

static int cfg_apply(sea_runtime_t *rt, rcfg_t *c, const sea_options_t *o) {
  size_t n = o ? rhost->option_count(o) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    rhost->option_at(o, i, &k, &v);
    uint64_t u = 0;
    int bad = 0;
    if (strcmp(k, "db") == 0) {
      bad = parse_u64(v, &u) || u > 1000000;
      c->db = (int)u;
    } else if (strcmp(k, "field") == 0) {
      bad = v[0] == '\0' || strlen(v) >= sizeof c->field;
      if (!bad)
        snprintf(c->field, sizeof c->field, "%s", v);
    } else if (strcmp(k, "shards") == 0) {
      bad = parse_u64(v, &u) || u < 1 || u > 65536;
      c->shards = (uint32_t)u;
      c->shards_set = 1;
    } else if (strcmp(k, "sharding") == 0) {
      if (strcmp(v, "roundrobin") == 0)
        c->shard_hash = 0;
      else if (strcmp(v, "hash") == 0)
        c->shard_hash = 1;
      else
        bad = 1;
    } else if (strcmp(k, "maxlen") == 0) {
      bad = parse_u64(v, &c->maxlen);
    } else if (strcmp(k, "minid_age_ms") == 0) {
      bad = parse_u64(v, &c->minid_age_ms);
    } else if (strcmp(k, "block_ms") == 0) {
      bad = parse_u64(v, &c->block_ms) || c->block_ms < 1;
    } else if (strcmp(k, "ack") == 0) {
      if (strcmp(v, "manual") == 0) {
        c->ack = ACK_MANUAL;
      } else if (strcmp(v, "at-most-once") == 0) {
        c->ack = ACK_AT_MOST_ONCE;
      } else if (strcmp(v, "none") == 0) {
        c->ack = ACK_NONE;
      } else if (strcmp(v, "auto") == 0) {
        rhost->set_error(rt,
                         R_NAME ": option 'ack=auto' was renamed to 'ack=at-most-once' (it XACKs "
                                "each batch as soon as it is read, so a crash or a stop loses what "
                                "was read and not processed); leave 'ack' out for the default, "
                                "'ack=manual' (XACK only what sea_consumer_ack and commit mark "
                                "done), or write 'ack=at-most-once' to keep the old behaviour");
        return SEA_EOPTION;
      } else {
        rhost->set_error(rt,
                         R_NAME ": invalid value in option 'ack=%s' (known: manual, the default; "
                                "at-most-once; none)",
                         v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "create") == 0) {
      bad = parse_bool(v, &c->create);
    } else if (strcmp(k, "consumer") == 0) {
      bad = v[0] == '\0' || strlen(v) >= sizeof c->consumer;
      if (!bad)
        snprintf(c->consumer, sizeof c->consumer, "%s", v);
    } else if (strcmp(k, "claim_idle_ms") == 0) {
      bad = parse_u64(v, &c->claim_idle_ms);
    } else if (strcmp(k, "reconnect_ms") == 0) {
      bad = parse_u64(v, &c->reconnect_ms);
    } else if (strcmp(k, "wait_replicas") == 0) {
      bad = parse_u64(v, &c->wait_replicas) || c->wait_replicas > 100;
    } else if (strcmp(k, "wait_timeout_ms") == 0) {
      bad = parse_u64(v, &c->wait_timeout_ms) || c->wait_timeout_ms < 1;
    } else if (strcmp(k, "pipeline") == 0) {
      bad = parse_u64(v, &c->pipeline) || c->pipeline < 1;
    } else {
      if (rhost->option_unknown != NULL)
        rhost->option_unknown(rt, R_NAME, k, r_known_opts);
      else
        rhost->set_error(rt, R_NAME ": unknown option '%s=%s' (known: %s)", k, v, r_known_opts);
      return SEA_EOPTION;
    }
    if (bad) {
      rhost->set_error(rt, R_NAME ": invalid value in option '%s=%s'", k, v);
      return SEA_EOPTION;
    }
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Entry ids                                                                                    */
/* ------------------------------------------------------------------------------------------- */

static int id_parse(const char *s, size_t len, uint64_t *ms, uint64_t *sq) {
  char buf[R_ID_MAX];
  if (len == 0 || len >= sizeof buf)
    return -1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  char *end;
  *ms = strtoull(buf, &end, 10);
  if (*end != '-')
    return -1;
  *sq = strtoull(end + 1, &end, 10);
  return *end == '\0' ? 0 : -1;
}

static int id_format(char *buf, uint64_t ms, uint64_t sq) {
  return snprintf(buf, R_ID_MAX, "%llu-%llu", (unsigned long long)ms, (unsigned long long)sq);
}

/* The position just before (ms, sq), for XREAD's exclusive ids. */
static void id_before(uint64_t *ms, uint64_t *sq) {
  if (*sq > 0)
    (*sq)--;
  else if (*ms > 0) {
    (*ms)--;
    *sq = UINT64_MAX;
  }
}

static uint64_t id_pack(uint64_t ms, uint64_t sq) {
  return (ms << 16) | (sq & 0xffff);
}

/* ------------------------------------------------------------------------------------------- */
/* Connection: hiredis async context on the host loop                                          */
/* ------------------------------------------------------------------------------------------- */

enum { C_IDLE, C_RESOLVING, C_CONNECTING, C_HANDSHAKE, C_READY, C_BACKOFF, C_FAILED, C_CLOSED };

typedef struct rconn rconn_t;
typedef struct rjob {
  rconn_t *conn; /* NULL once the connection went away: the job frees itself */
  char host[256];
  char ip[INET6_ADDRSTRLEN];
  char err[160];
  int rc;
} rjob_t;

struct rconn {
  rstreamer_t *s;
  sea_runtime_t *rt;
  char host[256]; /* the node this connection talks to */
  int port;
  char addr[300];
  size_t idx;     /* its index in the handle's node table (cluster), 0 for the first */
  size_t seed;    /* idx 0: which of the URI's nodes it tries */
  rcl_map_t *map; /* not NULL: CLUSTER SLOTS in the handshake, read into this map */
  redisAsyncContext *ac;
  sea_watch_t *watch;
  int events;
  sea_timer_t *timer; /* connect timeout or backoff */
  rjob_t *job;
  int state;
  int ever_ready;
  unsigned attempt;
  uint64_t lost_at;
  uint64_t timeout_ms;
  uint64_t reconnect_ms;
  uint64_t max_bulk;
  char ip[256];
  void *owner;
  void (*on_ready)(rconn_t *c);
  void (*on_lost)(rconn_t *c);
  void (*on_fail)(rconn_t *c, int status, const char *msg);
  void (*on_map)(rconn_t *c); /* a CLUSTER SLOTS asked for by map_ask was read into map */
};

static void conn_begin(rconn_t *c);
static void on_io(sea_watch_t *w, int status, int events, void *data);

static void conn_timer_stop(rconn_t *c) {
  if (c->timer) {
    rhost->timer_stop(c->timer);
    c->timer = NULL;
  }
}

static void conn_set_events(rconn_t *c, int ev) {
  if (c->ac == NULL || ev == c->events)
    return;
  c->events = ev;
  if (c->watch == NULL) {
    if (ev == 0)
      return;
    c->watch = rhost->watch_start(c->rt, c->ac->c.fd, ev, on_io, c);
    return;
  }
  rhost->watch_update(c->watch, ev);
}

static void ad_add_read(void *d) {
  rconn_t *c = d;
  conn_set_events(c, c->events | SEA_WATCH_READABLE);
}
static void ad_del_read(void *d) {
  rconn_t *c = d;
  conn_set_events(c, c->events & ~SEA_WATCH_READABLE);
}
static void ad_add_write(void *d) {
  rconn_t *c = d;
  conn_set_events(c, c->events | SEA_WATCH_WRITABLE);
}
static void ad_del_write(void *d) {
  rconn_t *c = d;
  conn_set_events(c, c->events & ~SEA_WATCH_WRITABLE);
}

static void conn_watch_stop(rconn_t *c) {
  if (c->watch) {
    rhost->watch_stop(c->watch);
    c->watch = NULL;
  }
  c->events = 0;
}

static void ad_cleanup(void *d) {
  conn_watch_stop(d);
}

/* Forget the context: hiredis must not call us again. Safe inside and outside its callbacks (in
 * one, redisAsyncFree only marks the context, and hiredis frees it when the callback returns). */
static void conn_drop(rconn_t *c) {
  redisAsyncContext *ac = c->ac;
  conn_watch_stop(c);
  if (ac == NULL)
    return;
  c->ac = NULL;
  ac->data = NULL;
  ac->ev.data = NULL;
  ac->ev.addRead = ac->ev.delRead = ac->ev.addWrite = ac->ev.delWrite = NULL;
  ac->ev.cleanup = NULL;
  ac->onConnect = NULL;
  ac->onDisconnect = NULL;
  redisAsyncFree(ac);
}

/* hiredis is freeing the context itself (in on_connect failure and on_disconnect). */
static void conn_detach(rconn_t *c, const redisAsyncContext *ac) {
  conn_watch_stop(c);
  redisAsyncContext *m = (redisAsyncContext *)ac;
  m->ev.cleanup = NULL;
  m->ev.addRead = m->ev.delRead = m->ev.addWrite = m->ev.delWrite = NULL;
  m->data = NULL;
  c->ac = NULL;
}

static void on_backoff(sea_timer_t *t, void *data) {
  (void)t;
  rconn_t *c = data;
  conn_timer_stop(c);
  conn_begin(c);
}

static void conn_set_addr(rconn_t *c, const char *host, int port) {
  snprintf(c->host, sizeof c->host, "%s", host);
  c->port = port;
  if (strchr(host, ':'))
    snprintf(c->addr, sizeof c->addr, "[%s]:%d", host, port);
  else
    snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
}

/* The connection is gone. Retry if it had worked and the reconnect window is open, else fail. */
static void conn_lost(rconn_t *c, int status, const char *msg) {
  conn_timer_stop(c);
  if (!c->ever_ready && c->idx == 0 && c->seed + 1 < c->s->nseeds) {
    /* the first connection: the URI names more nodes of the cluster, try the next one */
    size_t skip = strncmp(msg, R_NAME ": ", sizeof R_NAME + 1) == 0 ? sizeof R_NAME + 1 : 0;
    c->seed++;
    rhost->log(SEA_LOG_INFO, R_NAME, "%s; trying %s:%d", msg + skip, c->s->seeds[c->seed].host,
               c->s->seeds[c->seed].port);
    conn_set_addr(c, c->s->seeds[c->seed].host, c->s->seeds[c->seed].port);
    if (c->map && c->map->nnodes > 0) { /* node 0 of the table is where this connection goes */
      rcl_node_t *n = &c->map->nodes[0];
      snprintf(n->host, sizeof n->host, "%s", c->host);
      n->port = c->port;
      snprintf(n->addr, sizeof n->addr, "%s", c->addr);
    }
    c->state = C_BACKOFF;
    c->timer = rhost->timer_start(c->rt, 0, 1000, on_backoff, c);
    return;
  }
  int was_ready = c->state == C_READY;
  uint64_t now = rhost->now_ms(c->rt);
  if (was_ready)
    c->lost_at = now;
  if (!c->ever_ready || now - c->lost_at >= c->reconnect_ms) {
    c->state = C_FAILED;
    char full[1600];
    if (c->ever_ready)
      snprintf(full, sizeof full, "%s (gave up reconnecting after %llu ms)", msg,
               (unsigned long long)c->reconnect_ms);
    else
      snprintf(full, sizeof full, "%s", msg);
    c->on_fail(c, status, full);
    return;
  }
  size_t skip = strncmp(msg, R_NAME ": ", sizeof R_NAME + 1) == 0 ? sizeof R_NAME + 1 : 0;
  rhost->log(SEA_LOG_INFO, R_NAME, "%s; reconnecting", msg + skip); /* log names the plugin */
  c->state = C_BACKOFF;
  uint64_t delay = 100u << (c->attempt < 5 ? c->attempt : 5);
  if (delay > 2000)
    delay = 2000;
  c->attempt++;
  if (was_ready)
    c->on_lost(c);
  c->timer = rhost->timer_start(c->rt, delay, 1000, on_backoff, c);
}

/* A fatal error of the handshake (bad password, not Redis): no retry, whatever happened before. */
static void conn_fatal(rconn_t *c, int status, const char *msg) {
  conn_drop(c);
  conn_timer_stop(c);
  c->state = C_FAILED;
  c->on_fail(c, status, msg);
}

static void on_io(sea_watch_t *w, int status, int events, void *data) {
  (void)w;
  rconn_t *c = data;
  redisAsyncContext *ac = c->ac;
  if (ac == NULL)
    return;
  if (status < 0)
    events = SEA_WATCH_READABLE | SEA_WATCH_WRITABLE;
  if (events & SEA_WATCH_READABLE)
    redisAsyncHandleRead(ac);
  if (c->ac != ac)
    return;
  if (events & SEA_WATCH_WRITABLE)
    redisAsyncHandleWrite(ac);
}

enum { HS_AUTH = 1, HS_SELECT, HS_CONFIG, HS_SLOTS, HS_PING };

static void hs_cb(redisAsyncContext *ac, void *r, void *priv) {
  rconn_t *c = ac->data;
  redisReply *reply = r;
  if (c == NULL || reply == NULL || c->state != C_HANDSHAKE)
    return;
  int step = (int)(intptr_t)priv;
  char msg[1400];
  const char *addr = c->addr;
  if (step == HS_CONFIG) {
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[1]->type == REDIS_REPLY_STRING)
      c->max_bulk = strtoull(reply->element[1]->str, NULL, 10);
    return; /* CONFIG may be renamed or forbidden: then assume Redis' default */
  }
  if (step == HS_SLOTS) {
    /* A cluster node answers its slot map; a plain server (or one that forbids CLUSTER) an
     * error: then it is no cluster. */
    char err[200];
    if (reply->type == REDIS_REPLY_ARRAY && rcl_map_load(c->map, reply, c->idx, err, sizeof err))
      rhost->log(SEA_LOG_WARN, R_NAME, "%s: %s", c->addr, err);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "LOADING", 7) == 0) {
    /* A server that is starting (reading its AOF or RDB) answers LOADING: wait and retry, for
     * up to reconnect_ms, even on a first connection. */
    snprintf(msg, sizeof msg, R_NAME ": %s is loading its data: %s", addr, reply->str);
    int ever = c->ever_ready;
    if (!ever && c->lost_at == 0)
      c->lost_at = rhost->now_ms(c->rt);
    c->ever_ready = 1;
    conn_drop(c);
    conn_lost(c, SEA_ECONNECT, msg);
    c->ever_ready = ever;
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    if (step == HS_AUTH)
      snprintf(msg, sizeof msg, R_NAME ": authentication failed at %s: %s", addr, reply->str);
    else if (step == HS_SELECT)
      snprintf(msg, sizeof msg, R_NAME ": cannot select db=%d at %s: %s", c->s->cfg.db, addr,
               reply->str);
    else if (strncmp(reply->str, "NOAUTH", 6) == 0)
      snprintf(msg, sizeof msg, R_NAME ": %s needs a password (give redis://:PASSWORD@%s/...): %s",
               addr, addr, reply->str);
    else
      snprintf(msg, sizeof msg, R_NAME ": %s refused PING: %s", addr, reply->str);
    conn_fatal(c, SEA_ECONNECT, msg);
    return;
  }
  if (step != HS_PING)
    return;
  if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, "PONG") != 0) {
    snprintf(msg, sizeof msg, R_NAME ": %s is not a Redis server (PING was not answered PONG)",
             addr);
    conn_fatal(c, SEA_ECONNECT, msg);
    return;
  }
  conn_timer_stop(c);
  rhost->log(SEA_LOG_INFO, R_NAME, "%s %s (%s)", c->ever_ready ? "reconnected to" : "connected to",
             c->addr, c->ip);
  c->state = C_READY;
  c->ever_ready = 1;
  c->attempt = 0;
  c->on_ready(c);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  rconn_t *c = ac->data;
  if (c == NULL)
    return;
  if (status != REDIS_OK) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": cannot connect to %s (%s): %s", c->addr, c->ip,
             ac->errstr[0] ? ac->errstr : "connection failed");
    conn_detach(c, ac);
    conn_lost(c, SEA_ECONNECT, msg);
    return;
  }
  redisAsyncContext *m = (redisAsyncContext *)ac;
  c->state = C_HANDSHAKE;
  c->max_bulk = R_BULK_DEFAULT;
  if (c->s->pass[0]) {
    if (c->s->user[0])
      redisAsyncCommand(m, hs_cb, (void *)(intptr_t)HS_AUTH, "AUTH %s %s", c->s->user, c->s->pass);
    else
      redisAsyncCommand(m, hs_cb, (void *)(intptr_t)HS_AUTH, "AUTH %s", c->s->pass);
  }
  if (c->s->cfg.db)
    redisAsyncCommand(m, hs_cb, (void *)(intptr_t)HS_SELECT, "SELECT %d", c->s->cfg.db);
  redisAsyncCommand(m, hs_cb, (void *)(intptr_t)HS_CONFIG, "CONFIG GET proto-max-bulk-len");
  if (c->map)
    redisAsyncCommand(m, hs_cb, (void *)(intptr_t)HS_SLOTS, "CLUSTER SLOTS");
  redisAsyncCommand(m, hs_cb, (void *)(intptr_t)HS_PING, "PING");
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  rconn_t *c = ac->data;
  if (c == NULL)
    return;
  char msg[1400];
  int was = c->state;
  if (status == REDIS_OK)
    snprintf(msg, sizeof msg, R_NAME ": connection to %s closed", c->addr);
  else if (ac->err == REDIS_ERR_PROTOCOL && was == C_HANDSHAKE)
    snprintf(msg, sizeof msg, R_NAME ": %s is not a Redis server: %s", c->addr, ac->errstr);
  else
    snprintf(msg, sizeof msg, R_NAME ": connection to %s lost: %s", c->addr,
             ac->errstr[0] ? ac->errstr : "closed by the server");
  conn_detach(c, ac);
  if (ac->err == REDIS_ERR_PROTOCOL && was == C_HANDSHAKE) {
    conn_timer_stop(c);
    c->state = C_FAILED;
    c->on_fail(c, SEA_ECONNECT, msg);
    return;
  }
  conn_lost(c, SEA_ECONNECT, msg);
}

static void conn_connect_ip(rconn_t *c) {
  c->state = C_CONNECTING;
  redisAsyncContext *ac = redisAsyncConnect(c->ip, c->port);
  if (ac == NULL) {
    conn_fatal(c, SEA_ENOMEM, R_NAME ": out of memory");
    return;
  }
  if (ac->err) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": cannot connect to %s (%s): %s", c->addr, c->ip, ac->errstr);
    redisAsyncFree(ac);
    conn_lost(c, SEA_ECONNECT, msg);
    return;
  }
  c->ac = ac;
  ac->data = c;
  ac->ev.data = c;
  ac->ev.addRead = ad_add_read;
  ac->ev.delRead = ad_del_read;
  ac->ev.addWrite = ad_add_write;
  ac->ev.delWrite = ad_del_write;
  ac->ev.cleanup = ad_cleanup;
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  redisAsyncSetConnectCallback(ac, on_connect); /* arms the first write event */
}

static void resolve_work(void *data) {
  rjob_t *j = data;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(j->host, NULL, &hints, &res);
  if (rc != 0 || res == NULL) {
    j->rc = -1;
    snprintf(j->err, sizeof j->err, "%s", rc ? gai_strerror(rc) : "no address");
    if (res)
      freeaddrinfo(res);
    return;
  }
  const void *a = res->ai_family == AF_INET6
                      ? (const void *)&((struct sockaddr_in6 *)(void *)res->ai_addr)->sin6_addr
                      : (const void *)&((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr;
  inet_ntop(res->ai_family, a, j->ip, sizeof j->ip);
  freeaddrinfo(res);
}

static void resolve_after(void *data, int status) {
  rjob_t *j = data;
  rconn_t *c = j->conn;
  if (c == NULL) {
    rhost->free(j);
    return;
  }
  c->job = NULL;
  if (status != 0 || j->rc != 0) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": cannot resolve host '%s' (in %s): %s", c->host, c->addr,
             status ? "lookup canceled" : j->err);
    rhost->free(j);
    conn_lost(c, SEA_ECONNECT, msg);
    return;
  }
  snprintf(c->ip, sizeof c->ip, "%s", j->ip);
  rhost->free(j);
  conn_connect_ip(c);
}

static void on_connect_timeout(sea_timer_t *t, void *data) {
  (void)t;
  rconn_t *c = data;
  conn_timer_stop(c);
  if (c->state == C_READY || c->state == C_FAILED || c->state == C_CLOSED)
    return;
  char msg[1400];
  snprintf(msg, sizeof msg,
           R_NAME ": no answer from %s within %llu ms (is a Redis server listening there?)",
           c->addr, (unsigned long long)c->timeout_ms);
  if (c->job) {
    c->job->conn = NULL;
    c->job = NULL;
  }
  conn_drop(c);
  conn_lost(c, SEA_ETIMEDOUT, msg);
}

static void on_start_numeric(sea_timer_t *t, void *data) {
  (void)t;
  rconn_t *c = data;
  /* the connect timeout replaces this timer */
  conn_timer_stop(c);
  c->timer = rhost->timer_start(c->rt, c->timeout_ms, 0, on_connect_timeout, c);
  conn_connect_ip(c);
}

/* Start one connection attempt: resolve (off the loop) unless numeric, then connect. */
static void conn_begin(rconn_t *c) {
  unsigned char buf[sizeof(struct in6_addr)];
  conn_timer_stop(c);
  if (inet_pton(AF_INET, c->host, buf) == 1 || inet_pton(AF_INET6, c->host, buf) == 1) {
    snprintf(c->ip, sizeof c->ip, "%s", c->host);
    c->state = C_CONNECTING;
    c->timer = rhost->timer_start(c->rt, 0, 1000, on_start_numeric, c);
    return;
  }
  rjob_t *j = rhost->calloc(1, sizeof *j);
  if (j == NULL) {
    c->state = C_FAILED;
    c->on_fail(c, SEA_ENOMEM, R_NAME ": out of memory");
    return;
  }
  j->conn = c;
  snprintf(j->host, sizeof j->host, "%s", c->host);
  c->state = C_RESOLVING;
  c->job = j;
  c->timer = rhost->timer_start(c->rt, c->timeout_ms, 0, on_connect_timeout, c);
  if (rhost->queue_work(c->rt, resolve_work, resolve_after, j) != 0) {
    c->job = NULL;
    rhost->free(j);
    conn_lost(c, SEA_ECONNECT, R_NAME ": cannot queue the host name lookup");
  }
}

static void conn_init(rconn_t *c, rstreamer_t *s, sea_runtime_t *rt, void *owner,
                      uint64_t timeout_ms, uint64_t reconnect_ms) {
  memset(c, 0, sizeof *c);
  c->s = s;
  c->rt = rt;
  conn_set_addr(c, s->host, s->port);
  c->owner = owner;
  c->timeout_ms = timeout_ms ? timeout_ms : R_TIMEOUT_DEFAULT;
  c->reconnect_ms = reconnect_ms;
  c->state = C_IDLE;
}

static void conn_close(rconn_t *c) {
  c->state = C_CLOSED;
  conn_timer_stop(c);
  if (c->job) {
    c->job->conn = NULL;
    c->job = NULL;
  }
  conn_drop(c);
}

static int conn_ready(const rconn_t *c) {
  return c->state == C_READY && c->ac != NULL;
}

/* ------------------------------------------------------------------------------------------- */
/* Producer                                                                                     */
/* ------------------------------------------------------------------------------------------- */

/* One message not yet confirmed. The list is in send order; replies come in the same order, so
 * the head is always the oldest message on the wire. */
typedef struct prec {
  struct prec *next;
  void *token;
  const char *key;
  uint32_t shard;
  uint16_t slot;   /* cluster: the slot of its stream */
  uint8_t asking;  /* cluster: send ASKING first (an ASK redirection) */
  uint64_t ms, sq; /* wait_replicas: the entry id XADD answered, the receipt waits for WAIT */
  size_t len;
  uint8_t data[];
} prec_t;

/* Operations waiting for a counter to reach a target: a producer's flushes (receipts) and a
 * consumer's commits (XACK replies). */
typedef struct rwait {
  sea_op_t *op;
  uint64_t target;
} rwait_t;

typedef struct rwaits {
  rwait_t *v;
  size_t n, cap;
} rwaits_t;

static int waits_add(rwaits_t *w, sea_op_t *op, uint64_t target) {
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 4;
    rwait_t *v = rhost->realloc(w->v, cap * sizeof *v);
    if (v == NULL)
      return SEA_ENOMEM;
    w->v = v;
    w->cap = cap;
  }
  w->v[w->n].op = op;
  w->v[w->n].target = target;
  w->n++;
  return 0;
}

/* Complete, successfully, those whose target the counter has reached. */
static void waits_reached(rwaits_t *w, uint64_t counter) {
  size_t k = 0;
  for (size_t i = 0; i < w->n; i++) {
    if (w->v[i].target > counter)
      w->v[k++] = w->v[i];
    else
      rhost->op_done(w->v[i].op, 0, NULL);
  }
  w->n = k;
}

/* Fail every one with status and msg. */
static void waits_fail(rwaits_t *w, int status, const char *msg) {
  for (size_t i = 0; i < w->n; i++)
    rhost->op_done(w->v[i].op, status, "%s", msg);
  w->n = 0;
}

/* One node's line of records, in send order. Replies come in the same order on its connection,
 * so the head is always the oldest record on the wire there. A plain server is node 0 alone. */
typedef struct rpnode {
  rconn_t conn;
  prec_t *head, *tail;
  prec_t *unsent; /* first record not written on the current connection, NULL = all written */
  /* wait_replicas: records XADD answered, waiting for the answer of the WAIT written after
   * them; and how many XADDs were written since the last WAIT */
  prec_t *done_head, *done_tail;
  uint64_t since_wait;
  uint64_t short_since; /* when WAIT first answered fewer replicas than asked (0: it did not) */
} rpnode_t;

typedef struct rprod {
  rstreamer_t *s;
  sea_producer_t *p;
  sea_runtime_t *rt;
  rcfg_t cfg;
  uint64_t timeout_ms;
  rpnode_t **nodes; /* [0]: the URI's node; in a cluster, each at its index in map */
  size_t nnodes;
  rcl_map_t map;
  unsigned map_seen;
  /* Cluster: records no node takes now (TRYAGAIN, CLUSTERDOWN, a slot without a master), placed
   * again at each map refresh, in order. */
  prec_t *wait_head, *wait_tail;
  sea_timer_t *heal;       /* cluster: refreshes the map while a record waits or a node is down */
  sea_timer_t *wait_timer; /* wait_replicas: writes a WAIT behind what was written this turn */
  uint64_t heal_since;
  uint64_t count; /* records in all lines */
  uint64_t accepted, resolved;
  uint64_t rr;
  int full;
  int failed;
  int down;         /* every record was failed: the connection could not be made or kept */
  rwaits_t flushes; /* waiting for resolved to reach their target */
  char *cmd;        /* the RESP of one XADD, reused */
  size_t cmdcap;
} rprod_t;

static void stream_name(char *buf, const char *key, uint32_t shards, uint32_t shard) {
  if (shards <= 1)
    snprintf(buf, R_NAME_MAX, "%s", key);
  else
    snprintf(buf, R_NAME_MAX, "%s:%u", key, shard);
}

/* Complete the flushes whose messages all have their receipts (or all with an error). */
static void prod_check_flushes(rprod_t *pr, int status, const char *msg) {
  if (status)
    waits_fail(&pr->flushes, status, msg);
  else
    waits_reached(&pr->flushes, pr->resolved);
}

static int prod_write(rprod_t *pr, rpnode_t *n, prec_t *r);
static void prod_write_unsent(rprod_t *pr, rpnode_t *n);
static void prod_on_ready(rconn_t *c);
static void prod_on_lost(rconn_t *c);
static void prod_on_fail(rconn_t *c, int status, const char *msg);
static void prod_on_map(rconn_t *c);
static void prod_heal_start(rprod_t *pr);

/* Node idx of the cluster (created, not connected, the first time). NULL if out of memory. */
static rpnode_t *prod_node(rprod_t *pr, size_t idx) {
  if (idx < pr->nnodes && pr->nodes[idx])
    return pr->nodes[idx];
  if (idx >= pr->nnodes) {
    rpnode_t **v = rhost->realloc(pr->nodes, (idx + 1) * sizeof *v);
    if (v == NULL)
      return NULL;
    memset(v + pr->nnodes, 0, (idx + 1 - pr->nnodes) * sizeof *v);
    pr->nodes = v;
    pr->nnodes = idx + 1;
  }
  rpnode_t *n = rhost->calloc(1, sizeof *n);
  if (n == NULL)
    return NULL;
  conn_init(&n->conn, pr->s, pr->rt, pr, pr->timeout_ms, pr->cfg.reconnect_ms);
  if (idx < pr->map.nnodes)
    conn_set_addr(&n->conn, pr->map.nodes[idx].host, pr->map.nodes[idx].port);
  n->conn.idx = idx;
  n->conn.map = &pr->map;
  n->conn.on_ready = prod_on_ready;
  n->conn.on_lost = prod_on_lost;
  n->conn.on_fail = prod_on_fail;
  n->conn.on_map = prod_on_map;
  pr->nodes[idx] = n;
  return n;
}

/* Connect a node that is not, or write its line if it is. */
static void prod_kick(rprod_t *pr, rpnode_t *n) {
  if (n->conn.state == C_IDLE || n->conn.state == C_CLOSED) {
    n->conn.state = C_IDLE;
    conn_begin(&n->conn);
  } else {
    prod_write_unsent(pr, n);
  }
}

static void line_append(prec_t **head, prec_t **tail, prec_t *r) {
  r->next = NULL;
  if (*tail)
    (*tail)->next = r;
  else
    *head = r;
  *tail = r;
}

/* The node a record goes to: node 0 until a cluster's map is known, else the master of its slot
 * (-1: none known; it waits). */
static int prod_route(const rprod_t *pr, const prec_t *r) {
  if (!pr->map.cluster)
    return 0;
  uint16_t o = pr->map.owner[r->slot];
  return o == RCL_NONE ? -1 : (int)o;
}

/* Put r at the end of the line of node idx (-1: of the waiting records). */
static void prod_place(rprod_t *pr, prec_t *r, int idx) {
  rpnode_t *n = idx >= 0 ? prod_node(pr, (size_t)idx) : NULL;
  if (n == NULL) {
    line_append(&pr->wait_head, &pr->wait_tail, r);
    prod_heal_start(pr);
    return;
  }
  line_append(&n->head, &n->tail, r);
  if (n->unsent == NULL)
    n->unsent = r;
}

/* The map changed: records not yet written whose slot another node serves now move to it, in
 * order, and so do the waiting ones; nodes that serve nothing and hold nothing are closed. */
static void prod_rehome(rprod_t *pr) {
  if (!pr->map.cluster)
    return;
  prec_t *mh = pr->wait_head, *mt = pr->wait_tail;
  pr->wait_head = pr->wait_tail = NULL;
  for (size_t i = 0; i < pr->nnodes; i++) {
    rpnode_t *n = pr->nodes[i];
    if (n == NULL)
      continue;
    prec_t **pp = &n->head, *last = NULL, *first = NULL;
    while (*pp != n->unsent) {
      last = *pp;
      pp = &(*pp)->next;
    }
    while (*pp) {
      prec_t *r = *pp;
      if (r->asking || prod_route(pr, r) == (int)i) { /* an ASK goes where it was told */
        if (first == NULL)
          first = r;
        last = r;
        pp = &r->next;
      } else {
        *pp = r->next;
        line_append(&mh, &mt, r);
      }
    }
    n->tail = last;
    n->unsent = first;
  }
  while (mh) {
    prec_t *r = mh;
    mh = r->next;
    prod_place(pr, r, prod_route(pr, r));
  }
  for (size_t i = 0; i < pr->nnodes; i++) {
    rpnode_t *n = pr->nodes[i];
    if (n == NULL)
      continue;
    if (n->head)
      prod_kick(pr, n);
    else if (i < pr->map.nnodes && pr->map.nodes[i].slots == 0 && n->conn.state != C_CLOSED)
      conn_close(&n->conn); /* serves nothing now (a master failed over, or a replica) */
  }
}

/* Fail every record: the connection to a node that holds some could not be made or kept. */
static void prod_fail_all(rprod_t *pr, int status, const char *msg) {
  if (!pr->failed) {
    pr->failed = 1;
    rhost->producer_fail(pr->p, status, "%s", msg);
  }
  pr->down = 1;
  for (size_t i = 0; i <= pr->nnodes; i++) {
    prec_t *r;
    if (i < pr->nnodes) {
      rpnode_t *n = pr->nodes[i];
      if (n == NULL)
        continue;
      if (n->done_head) { /* answered, unconfirmed: fail them too, in order */
        n->done_tail->next = n->head;
        n->head = n->done_head;
        n->done_head = n->done_tail = NULL;
      }
      r = n->head;
      n->head = n->tail = n->unsent = NULL;
    } else {
      r = pr->wait_head;
      pr->wait_head = pr->wait_tail = NULL;
    }
    while (r) {
      prec_t *next = r->next;
      pr->resolved++;
      rhost->receipt(pr->p, r->token, status, NULL);
      rhost->free(r);
      r = next;
    }
  }
  pr->count = 0;
  prod_check_flushes(pr, status, msg);
}

/* ---- Cluster: refreshing the map ---- */

static void slots_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL || reply == NULL || c->map == NULL)
    return;
  char err[200];
  if (rcl_map_load(c->map, reply, c->idx, err, sizeof err) != 0) {
    rhost->log(SEA_LOG_DEBUG, R_NAME, "map refresh at %s: %s", c->addr, err);
    return;
  }
  c->on_map(c);
}

/* Ask one node that is up for the slot map; 0 if asked. */
static int map_ask(rconn_t *c) {
  if (!conn_ready(c))
    return -1;
  return redisAsyncCommand(c->ac, slots_cb, NULL, "CLUSTER SLOTS") == REDIS_OK ? 0 : -1;
}

/* Whether the producer is whole again: nothing waits and every node holding records is up. */
static int prod_whole(const rprod_t *pr) {
  if (pr->wait_head)
    return 0;
  for (size_t i = 0; i < pr->nnodes; i++)
    if (pr->nodes[i] && pr->nodes[i]->head && !conn_ready(&pr->nodes[i]->conn))
      return 0;
  return 1;
}

static void prod_heal_stop(rprod_t *pr) {
  if (pr->heal) {
    rhost->timer_stop(pr->heal);
    pr->heal = NULL;
  }
}

static void on_prod_heal(sea_timer_t *t, void *data) {
  (void)t;
  rprod_t *pr = data;
  if (prod_whole(pr)) {
    prod_heal_stop(pr);
    return;
  }
  if (rhost->now_ms(pr->rt) - pr->heal_since > pr->cfg.reconnect_ms) {
    prod_heal_stop(pr);
    char msg[600];
    snprintf(msg, sizeof msg,
             R_NAME ": the cluster at %s did not serve every slot written to within "
                    "reconnect_ms=%llu ms",
             pr->s->addr, (unsigned long long)pr->cfg.reconnect_ms);
    prod_fail_all(pr, SEA_ECONNECT, msg);
    return;
  }
  /* ask every node that is up: the first answer that differs moves the records */
  int asked = 0;
  for (size_t i = 0; i < pr->nnodes; i++)
    if (pr->nodes[i] && map_ask(&pr->nodes[i]->conn) == 0)
      asked = 1;
  if (!asked && pr->nodes[0]->conn.state == C_CLOSED)
    prod_kick(pr, pr->nodes[0]);
}

static void prod_heal_start(rprod_t *pr) {
  if (pr->heal || !pr->map.cluster)
    return;
  pr->heal_since = rhost->now_ms(pr->rt);
  pr->heal = rhost->timer_start(pr->rt, 100, 250, on_prod_heal, pr);
}

static void prod_on_map(rconn_t *c) {
  rprod_t *pr = c->owner;
  pr->map_seen = pr->map.version;
  prod_rehome(pr);
  if (prod_whole(pr))
    prod_heal_stop(pr);
}

/* A reply that is a redirection or asks to retry (cluster): take r off the head of n's line and
 * place it where it goes now. */
static void prod_redirect(rprod_t *pr, rpnode_t *n, prec_t *r, int kind, unsigned slot,
                          const char *host, int port) {
  n->head = r->next;
  if (n->head == NULL)
    n->tail = NULL;
  if (kind == RCL_RETRY) {
    line_append(&pr->wait_head, &pr->wait_tail, r);
    prod_heal_start(pr);
    return;
  }
  int idx = rcl_node_index(&pr->map, host, port);
  if (idx < 0 || prod_node(pr, (size_t)idx) == NULL) {
    line_append(&pr->wait_head, &pr->wait_tail, r);
    prod_heal_start(pr);
    return;
  }
  if (kind == RCL_MOVED) {
    rcl_map_set(&pr->map, slot, (size_t)idx);
    r->asking = 0;
    prod_place(pr, r, idx);
    prod_rehome(pr);     /* the slot's other records not yet written go there too */
    prod_heal_start(pr); /* and the whole map is read again: more may have moved */
  } else {
    r->asking = 1; /* once, with ASKING first: the slot is being moved there */
    prod_place(pr, r, idx);
    prod_kick(pr, pr->nodes[idx]);
  }
}

static void xadd_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL || reply == NULL)
    return; /* closed, or the connection was lost: on_lost puts the record back in line */
  rprod_t *pr = c->owner;
  rpnode_t *n = pr->nodes[c->idx];
  prec_t *r = n->head;
  if (r == NULL || r == n->unsent)
    return; /* cannot happen: a reply for a record that was not written */
  if (pr->map.cluster && reply->type == REDIS_REPLY_ERROR) {
    unsigned slot = 0;
    char host[256];
    int port = 0;
    int kind = rcl_redirect(reply->str, &slot, host, &port);
    if (kind) {
      rhost->log(SEA_LOG_DEBUG, R_NAME, "XADD at %s: %s", c->addr, reply->str);
      prod_redirect(pr, n, r, kind, slot, host, port);
      return;
    }
  }
  n->head = r->next;
  if (n->head == NULL)
    n->tail = NULL;
  uint64_t ms = 0, sq = 0;
  int ok = (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) &&
           id_parse(reply->str, reply->len, &ms, &sq) == 0;
  if (ok && pr->cfg.wait_replicas) {
    /* stored on the master: the receipt waits for the WAIT written after it (wait_cb) */
    r->ms = ms;
    r->sq = sq;
    line_append(&n->done_head, &n->done_tail, r);
    return;
  }
  pr->count--;
  pr->resolved++;
  if (ok) {
    sea_meta_t meta = {.stream_key = r->key,
                       .shard_id = r->shard,
                       .seq = id_pack(ms, sq),
                       .timestamp_us = (int64_t)(ms * 1000)};
    rhost->receipt(pr->p, r->token, 0, &meta);
  } else {
    const char *why = reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply to XADD";
    if (!pr->failed) {
      char name[R_NAME_MAX];
      stream_name(name, r->key, pr->cfg.shards, r->shard);
      pr->failed = 1;
      rhost->producer_fail(pr->p, SEA_EBACKEND, R_NAME ": XADD to '%s' at %s failed: %s", name,
                           c->addr, why);
    }
    rhost->receipt(pr->p, r->token, SEA_EBACKEND, NULL);
  }
  rhost->free(r);
  prod_check_flushes(pr, 0, NULL);
  if (pr->full && pr->count < pr->cfg.pipeline) {
    pr->full = 0;
    rhost->producer_ready(pr->p);
  }
}

/* WAIT wait_replicas wait_timeout_ms, written after XADDs: its answer is how many replicas have
 * everything written before it, so it gives the receipts of the records XADD answered before it
 * (all of the node's done line, as replies come in order). Fewer replicas than asked: those
 * receipts fail (the entries are on the master only, which may lose them in a failover). */
static void on_wait_timer(sea_timer_t *t, void *data);

static void wait_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL || reply == NULL)
    return; /* the connection was lost: on_lost puts the done line back to be written again */
  rprod_t *pr = c->owner;
  rpnode_t *n = pr->nodes[c->idx];
  int ok = reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0 &&
           (uint64_t)reply->integer >= pr->cfg.wait_replicas;
  uint64_t now = rhost->now_ms(pr->rt);
  if (ok) {
    n->short_since = 0;
  } else if (reply->type == REDIS_REPLY_INTEGER && n->done_head) {
    /* Too few replicas now (one is down, or a new master has none yet): ask again a little
     * later, for up to reconnect_ms, before giving up on these records. */
    if (n->short_since == 0) {
      n->short_since = now;
      rhost->log(SEA_LOG_WARN, R_NAME,
                 "WAIT at %s: %lld of wait_replicas=%llu replicas have the entries; waiting for "
                 "more (up to reconnect_ms)",
                 c->addr, reply->integer, (unsigned long long)pr->cfg.wait_replicas);
    }
    if (now - n->short_since < pr->cfg.reconnect_ms) {
      n->since_wait++;
      if (pr->wait_timer == NULL)
        pr->wait_timer = rhost->timer_start(pr->rt, 200, 1000, on_wait_timer, pr);
      return;
    }
  }
  if (!ok && !pr->failed && n->done_head) {
    pr->failed = 1;
    if (reply->type == REDIS_REPLY_INTEGER)
      rhost->producer_fail(pr->p, SEA_EBACKEND,
                           R_NAME ": WAIT at %s: %lld of wait_replicas=%llu replicas had the "
                                  "entries within wait_timeout_ms=%llu ms, still after "
                                  "reconnect_ms=%llu ms",
                           c->addr, reply->integer, (unsigned long long)pr->cfg.wait_replicas,
                           (unsigned long long)pr->cfg.wait_timeout_ms,
                           (unsigned long long)pr->cfg.reconnect_ms);
    else
      rhost->producer_fail(pr->p, SEA_EBACKEND, R_NAME ": WAIT at %s failed: %s", c->addr,
                           reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
  }
  prec_t *r = n->done_head;
  n->done_head = n->done_tail = NULL;
  while (r) {
    prec_t *next = r->next;
    pr->count--;
    pr->resolved++;
    if (ok) {
      sea_meta_t meta = {.stream_key = r->key,
                         .shard_id = r->shard,
                         .seq = id_pack(r->ms, r->sq),
                         .timestamp_us = (int64_t)(r->ms * 1000)};
      rhost->receipt(pr->p, r->token, 0, &meta);
    } else {
      rhost->receipt(pr->p, r->token, SEA_EBACKEND, NULL);
    }
    rhost->free(r);
    r = next;
  }
  prod_check_flushes(pr, 0, NULL);
  if (pr->full && pr->count < pr->cfg.pipeline) {
    pr->full = 0;
    rhost->producer_ready(pr->p);
  }
}

/* A WAIT behind the XADDs each node was written this loop turn (one per turn and node, not one
 * per message: WAIT holds its connection until the replicas answer). */
static void on_wait_timer(sea_timer_t *t, void *data) {
  (void)t;
  rprod_t *pr = data;
  rhost->timer_stop(pr->wait_timer);
  pr->wait_timer = NULL;
  for (size_t i = 0; i < pr->nnodes; i++) {
    rpnode_t *n = pr->nodes[i];
    if (n == NULL || n->since_wait == 0 || !conn_ready(&n->conn))
      continue;
    if (redisAsyncCommand(n->conn.ac, wait_cb, NULL, "WAIT %llu %llu",
                          (unsigned long long)pr->cfg.wait_replicas,
                          (unsigned long long)pr->cfg.wait_timeout_ms) == REDIS_OK)
      n->since_wait = 0;
  }
}

/* Append one RESP bulk string to pr->cmd. */
static void resp_bulk(char *buf, size_t *off, const void *data, size_t len) {
  /* "$<len>\r\n" without printf, which showed in the profile */
  char digits[24];
  int nd = 0;
  size_t v = len;
  do {
    digits[nd++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  buf[(*off)++] = '$';
  while (nd)
    buf[(*off)++] = digits[--nd];
  buf[(*off)++] = '\r';
  buf[(*off)++] = '\n';
  memcpy(buf + *off, data, len);
  *off += len;
  memcpy(buf + *off, "\r\n", 2);
  *off += 2;
}

/* XADD name [MAXLEN ~ n | MINID ~ id] * field payload, formatted here as RESP: hiredis' own
 * formatting (sdscatfmt) was the largest cost of a producer. */
static int prod_write(rprod_t *pr, rpnode_t *n, prec_t *r) {
  char name[R_NAME_MAX], trim[R_ID_MAX];
  const char *nm = r->key;
  if (pr->cfg.shards > 1) {
    stream_name(name, r->key, pr->cfg.shards, r->shard);
    nm = name;
  }
  size_t nlen = strlen(nm), flen = strlen(pr->cfg.field), tlen = 0;
  const char *tkind = NULL;
  if (pr->cfg.maxlen) {
    tkind = "MAXLEN";
    tlen = (size_t)snprintf(trim, sizeof trim, "%llu", (unsigned long long)pr->cfg.maxlen);
  } else if (pr->cfg.minid_age_ms) {
    uint64_t now = (uint64_t)(rhost->now_us() / 1000);
    uint64_t t = now > pr->cfg.minid_age_ms ? now - pr->cfg.minid_age_ms : 0;
    tkind = "MINID";
    tlen = (size_t)id_format(trim, t, 0);
  }
  size_t need = 128 + nlen + flen + tlen + r->len;
  if (need > pr->cmdcap) {
    char *b = rhost->realloc(pr->cmd, need);
    if (b == NULL)
      return -1;
    pr->cmd = b;
    pr->cmdcap = need;
  }
  char *b = pr->cmd;
  size_t off = (size_t)sprintf(b, "*%d\r\n", tkind ? 8 : 5);
  resp_bulk(b, &off, "XADD", 4);
  resp_bulk(b, &off, nm, nlen);
  if (tkind) {
    resp_bulk(b, &off, tkind, strlen(tkind));
    resp_bulk(b, &off, "~", 1);
    resp_bulk(b, &off, trim, tlen);
  }
  resp_bulk(b, &off, "*", 1);
  resp_bulk(b, &off, pr->cfg.field, flen);
  resp_bulk(b, &off, r->data, r->len);
  /* ASK: the node takes the command for a slot it is importing only right after ASKING */
  if (r->asking && redisAsyncCommand(n->conn.ac, NULL, NULL, "ASKING") != REDIS_OK)
    return -1;
  if (redisAsyncFormattedCommand(n->conn.ac, xadd_cb, NULL, b, off) != REDIS_OK)
    return -1;
  if (pr->cfg.wait_replicas) {
    n->since_wait++;
    if (pr->wait_timer == NULL)
      pr->wait_timer = rhost->timer_start(pr->rt, 0, 1000, on_wait_timer, pr);
  }
  return 0;
}

/* Write every record of n's line not yet on its connection, in order. */
static void prod_write_unsent(rprod_t *pr, rpnode_t *n) {
  while (n->unsent && conn_ready(&n->conn)) {
    prec_t *r = n->unsent;
    if (r->len > n->conn.max_bulk) {
      /* Queued before the server's limit was known. Every record before it is on the wire, so
       * take it out of the line and refuse it alone; the others go on. */
      prec_t **pp = &n->head, *prev = NULL;
      while (*pp != r) {
        prev = *pp;
        pp = &(*pp)->next;
      }
      *pp = r->next;
      if (n->tail == r)
        n->tail = prev;
      n->unsent = r->next;
      pr->count--;
      pr->resolved++;
      rhost->log(SEA_LOG_ERROR, R_NAME,
                 "send to '%s': payload of %zu bytes is over the server's proto-max-bulk-len "
                 "(%llu bytes) at %s",
                 r->key, r->len, (unsigned long long)n->conn.max_bulk, n->conn.addr);
      rhost->receipt(pr->p, r->token, SEA_ETOOBIG, NULL);
      rhost->free(r);
      prod_check_flushes(pr, 0, NULL);
      continue;
    }
    if (prod_write(pr, n, r) != 0)
      return;
    n->unsent = r->next;
  }
}

static void prod_on_ready(rconn_t *c) {
  rprod_t *pr = c->owner;
  if (c->idx == 0 && !pr->map.cluster && pr->s->nseeds > 1) {
    char msg[600];
    snprintf(msg, sizeof msg,
             R_NAME ": the URI names %zu nodes, but %s is not a Redis Cluster node (a plain "
                    "server takes one node: redis://HOST:PORT/KEYS)",
             pr->s->nseeds, c->addr);
    conn_close(c);
    prod_fail_all(pr, SEA_EURI, msg);
    return;
  }
  if (pr->map.cluster && pr->map.version != pr->map_seen) {
    if (pr->map_seen == 0)
      rhost->log(SEA_LOG_INFO, R_NAME, "%s is a node of a Redis Cluster: %zu nodes known", c->addr,
                 pr->map.nnodes);
    pr->map_seen = pr->map.version;
    prod_rehome(pr);
  }
  prod_write_unsent(pr, pr->nodes[c->idx]);
  if (pr->heal && prod_whole(pr))
    prod_heal_stop(pr);
}

static void prod_on_lost(rconn_t *c) {
  rprod_t *pr = c->owner;
  rpnode_t *n = pr->nodes[c->idx];
  /* everything not confirmed goes back in line, in the order it was sent: first what XADD
   * answered and no WAIT confirmed yet (at least once: it is written again) */
  if (n->done_head) {
    n->done_tail->next = n->head;
    if (n->head == NULL)
      n->tail = n->done_tail;
    n->head = n->done_head;
    n->done_head = n->done_tail = NULL;
  }
  n->since_wait = 0;
  n->unsent = n->head;
  /* a cluster's node may be failing over: learn who serves its slots now */
  prod_heal_start(pr);
}

static void prod_on_fail(rconn_t *c, int status, const char *msg) {
  rprod_t *pr = c->owner;
  rpnode_t *n = pr->nodes[c->idx];
  if (pr->map.cluster && n->head == NULL && c->idx < pr->map.nnodes &&
      pr->map.nodes[c->idx].slots == 0) {
    rhost->log(SEA_LOG_DEBUG, R_NAME, "%s (it serves no slot now)", msg);
    return; /* a node that no longer serves anything: nothing is lost with it */
  }
  prod_fail_all(pr, status, msg);
}

static uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static int prod_open(void *simpl, sea_producer_t *p, const sea_open_args_t *args, void **impl) {
  rstreamer_t *s = simpl;
  rprod_t *pr = rhost->calloc(1, sizeof *pr);
  if (pr == NULL)
    return SEA_ENOMEM;
  pr->cfg = s->cfg;
  int rc = cfg_apply(args->rt, &pr->cfg, args->backend_options);
  if (rc) {
    rhost->free(pr);
    return rc;
  }
  pr->s = s;
  pr->p = p;
  pr->rt = args->rt;
  pr->timeout_ms = args->timeout_ms;
  rcl_map_init(&pr->map);
  /* node 0 is the URI's (first) node */
  if (rcl_node_index(&pr->map, s->host, s->port) != 0 || prod_node(pr, 0) == NULL) {
    rcl_map_free(&pr->map);
    rhost->free(pr->nodes);
    rhost->free(pr);
    return SEA_ENOMEM;
  }
  conn_begin(&pr->nodes[0]->conn);
  *impl = pr;
  return 0;
}

static int prod_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  (void)flags;
  rprod_t *pr = impl;
  rconn_t *c0 = &pr->nodes[0]->conn;
  if (pr->down || (c0->state == C_FAILED && !pr->map.cluster))
    return SEA_ECONNECT;
  if (pr->count >= pr->cfg.pipeline) {
    pr->full = 1;
    return SEA_EAGAIN;
  }
  if (c0->ever_ready && m->payload.len > c0->max_bulk) {
    rhost->log(SEA_LOG_ERROR, R_NAME,
               "send to '%s': payload of %zu bytes is over the server's proto-max-bulk-len "
               "(%llu bytes) at %s",
               m->meta.stream_key, m->payload.len, (unsigned long long)c0->max_bulk, pr->s->addr);
    return SEA_ETOOBIG;
  }
  prec_t *r = rhost->alloc(sizeof *r + m->payload.len);
  if (r == NULL)
    return SEA_ENOMEM;
  r->next = NULL;
  r->token = token;
  r->key = m->meta.stream_key;
  r->len = m->payload.len;
  r->asking = 0;
  if (m->payload.len)
    memcpy(r->data, m->payload.data, m->payload.len);
  r->shard = 0;
  if (pr->cfg.shards > 1) {
    if (pr->cfg.shard_hash && m->key != NULL)
      r->shard = (uint32_t)(hash_bytes(m->key, m->key_len) % pr->cfg.shards);
    else
      r->shard = (uint32_t)(pr->rr++ % pr->cfg.shards);
  }
  char name[R_NAME_MAX];
  stream_name(name, r->key, pr->cfg.shards, r->shard);
  r->slot = (uint16_t)rcl_slot(name, strlen(name));
  pr->count++;
  pr->accepted++;
  if (pr->wait_head) {
    /* records wait for the cluster to serve their slots again: stay behind them */
    line_append(&pr->wait_head, &pr->wait_tail, r);
    return 0;
  }
  int idx = prod_route(pr, r);
  prod_place(pr, r, idx);
  if (idx >= 0) {
    rpnode_t *n = pr->nodes[idx];
    if (n->unsent == r && conn_ready(&n->conn) && prod_write(pr, n, r) == 0)
      n->unsent = NULL;
    else if (n->conn.state == C_IDLE || n->conn.state == C_CLOSED)
      prod_kick(pr, n);
  }
  return 0;
}

static int prod_flush(void *impl, sea_op_t *op) {
  rprod_t *pr = impl;
  if (pr->resolved >= pr->accepted) {
    rhost->op_done(op, 0, NULL);
    return 0;
  }
  return waits_add(&pr->flushes, op, pr->accepted);
}

static void free_line(prec_t *r) {
  while (r) {
    prec_t *next = r->next;
    rhost->free(r);
    r = next;
  }
}

static void prod_close(void *impl) {
  rprod_t *pr = impl;
  prod_heal_stop(pr);
  if (pr->wait_timer)
    rhost->timer_stop(pr->wait_timer);
  for (size_t i = 0; i < pr->nnodes; i++) {
    rpnode_t *n = pr->nodes[i];
    if (n == NULL)
      continue;
    conn_close(&n->conn);
    free_line(n->head);
    free_line(n->done_head);
    rhost->free(n);
  }
  free_line(pr->wait_head);
  rhost->free(pr->nodes);
  rcl_map_free(&pr->map);
  rhost->free(pr->flushes.v);
  rhost->free(pr->cmd);
  rhost->free(pr);
}

/* ------------------------------------------------------------------------------------------- */
/* Consumer                                                                                     */
/* ------------------------------------------------------------------------------------------- */

enum { P_BEGIN, P_END, P_AT, P_TIME, P_FROM_END };

/* Entry ids to XACK, as "id\0id\0...". */
typedef struct idlist {
  char *buf;
  size_t len, cap, n;
} idlist_t;

typedef struct rstream {
  char name[R_NAME_MAX];
  const char *key;
  uint32_t shard;
  uint64_t ms, sq; /* last delivered (XREAD: exclusive) */
  int history;     /* groups: still reading own pending entries */
  idlist_t acks;   /* manual: acked and not committed; at-most-once: read, to XACK now */
  idlist_t skips;  /* groups: entries that are no message (no payload field, or deleted) */
  int lag_known;   /* lag holds what was last learned (consumer_lag) */
  int64_t lag;     /* entries not yet delivered: a read that found nothing, or XINFO GROUPS */
} rstream_t;

/* One pass that claims the entries pending with dead members of a load-balanced group (see
 * reap_step): per stream, XINFO CONSUMERS picks the dead members, then for each of them
 * XPENDING ... COUNT batch MEMBER and XCLAIM of that page, until its pending list is empty. */
enum { RP_INFO, RP_MEMBERS };
typedef struct rreap {
  int active;
  size_t st;   /* the stream looked at */
  int phase;   /* RP_INFO: ask for the members; RP_MEMBERS: claim from dead[cur] */
  char **dead; /* dead members of this stream with pending entries */
  size_t ndead, capdead, cur;
  char start[R_ID_MAX]; /* XPENDING cursor in dead[cur]'s list */
  int last_page;        /* the XPENDING page being claimed was that member's last */
  size_t claimed;       /* entries claimed in this pass */
  size_t member_claimed;
} rreap_t;

typedef struct rcons {
  rstreamer_t *s;
  sea_consumer_t *c;
  rconn_t conn;
  rcfg_t cfg;
  sea_mode_t mode;
  const char *group;
  char cname[320];
  rstream_t *st;
  size_t nst;
  uint32_t batch;
  int stop_at_end;
  int reset_earliest;
  /* where to start or rewind to */
  int pos_kind;
  uint64_t pos_arg;
  int started, paused, ended, prepared;
  int setid_pending;  /* groups: a seek or rewind still has to move the group (XGROUP SETID) */
  int reading;        /* a read or claim is on the wire */
  unsigned preparing; /* replies awaited before reading */
  int prep_failed;
  unsigned gen;
  sea_op_t *pos_op; /* seek or rewind waiting for its positions */
  uint64_t next_claim;
  rreap_t reap;
  int reap_clean;  /* the last claim pass found nothing, and no read delivered since */
  int reap_wanted; /* run a claim pass before the next read (stop_at_end: before the end) */
  int reap_warned;
  struct rcons *live_next; /* in r_live: the load-balanced consumers open in this process */
  uint64_t acks_sent, acks_done;
  rwaits_t commits; /* waiting for acks_done to reach their target */
  /* batches read while paused (a read was on the wire when pause came), delivered on resume */
  sea_batch_t **held;
  size_t nheld, capheld;
  sea_timer_t *resume_timer;
  /* Shard discovery (no shards= option): SCAN for KEY:N before the first read. */
  const char **keys;
  size_t nkeys;
  int discover, discovered;
  unsigned discovering; /* SCAN replies awaited */
  struct rfound {
    size_t key;
    uint32_t shard;
  } * found;
  size_t nfound, capfound;
  unsigned lag_asking; /* XINFO GROUPS replies awaited (consumer_lag) */
  /* Cluster: one connection per master, nc[i] for node i of map (nc[0] is conn). The consumer
   * is up (link_up) only when every master is connected; a node lost or a redirection takes
   * it down as one connection lost (every connection is made again), and it comes back up once
   * the map, read again (heal), has a connected master for every slot. */
  rcl_map_t map;
  unsigned map_seen;
  rconn_t **nc;
  size_t nnc;
  int link_up;
  int hold;          /* a redirection to wait out (ASK, TRYAGAIN): up again at a heal tick */
  sea_timer_t *heal; /* reads the map again while not up */
  uint64_t heal_since;
  size_t round_n; /* entries of the reads of this round (one read per node) */
  int round_hist;
} rcons_t;

static void cons_pump(rcons_t *rc);
static void cons_redirected(rcons_t *rc, rconn_t *c, const char *err);

/* The connection that serves stream st: in a cluster, the master of its slot on the map. */
static rconn_t *cons_conn(rcons_t *rc, const rstream_t *st) {
  if (!rc->map.cluster)
    return &rc->conn;
  int o = rcl_route(&rc->map, st->name);
  return o >= 0 && (size_t)o < rc->nnc && rc->nc[o] ? rc->nc[o] : &rc->conn;
}

/* Whether every connection the consumer needs is up. */
static int cons_up(const rcons_t *rc) {
  return rc->map.cluster ? rc->link_up : conn_ready(&rc->conn);
}

/* A cluster error reply that redirects (MOVED, ASK) or asks to retry (TRYAGAIN, CLUSTERDOWN):
 * 1 if it was one, and the consumer goes down and back up on the new map. */
static int cons_cluster_err(rcons_t *rc, rconn_t *c, const redisReply *reply) {
  unsigned slot;
  char host[256];
  int port;
  if (!rc->map.cluster || reply->type != REDIS_REPLY_ERROR ||
      !rcl_redirect(reply->str, &slot, host, &port))
    return 0;
  cons_redirected(rc, c, reply->str);
  return 1;
}

/* ---- Which members of a load-balanced group are gone ---- */

/* The load-balanced consumers open in this process, by name (a process may run several
 * runtimes on several threads, hence the lock). */
static pthread_mutex_t r_live_mu = PTHREAD_MUTEX_INITIALIZER;
static rcons_t *r_live;

static void live_add(rcons_t *rc) {
  pthread_mutex_lock(&r_live_mu);
  rc->live_next = r_live;
  r_live = rc;
  pthread_mutex_unlock(&r_live_mu);
}

static void live_remove(rcons_t *rc) {
  pthread_mutex_lock(&r_live_mu);
  for (rcons_t **pp = &r_live; *pp; pp = &(*pp)->live_next)
    if (*pp == rc) {
      *pp = rc->live_next;
      break;
    }
  pthread_mutex_unlock(&r_live_mu);
}

static int live_has(const char *name) {
  int found = 0;
  pthread_mutex_lock(&r_live_mu);
  for (rcons_t *p = r_live; p && !found; p = p->live_next)
    found = strcmp(p->cname, name) == 0;
  pthread_mutex_unlock(&r_live_mu);
  return found;
}

/* This host's name as a member name holds it (at most 63 bytes). */
static void host_name(char hn[64]) {
  if (gethostname(hn, 63) != 0)
    snprintf(hn, 64, "host");
  hn[63] = '\0';
}

static int all_digits(const char *s, size_t n, int hex) {
  if (n == 0 || n > 20)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(s[i] >= '0' && s[i] <= '9') &&
        !(hex && ((s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F'))))
      return 0;
  return 1;
}

/* 1 if NAME is a load-balanced member known to be gone: its name is [prefix-]HOST-PID-TIME-N
 * (see cons_open) with HOST this host (hn), and either PID is this process and none of its open
 * consumers has that name (it was closed), or no process PID runs. 0 if it may be alive (it runs,
 * or it is of another host, or the name is not of that form). */
static int member_gone(const char *name, const char *hn) {
  size_t len = strlen(name), dash[3];
  int nd = 0;
  for (size_t i = len; i > 0 && nd < 3; i--)
    if (name[i - 1] == '-')
      dash[nd++] = i - 1;
  if (nd < 3 || !all_digits(name + dash[0] + 1, len - dash[0] - 1, 0) ||
      !all_digits(name + dash[1] + 1, dash[0] - dash[1] - 1, 1) ||
      !all_digits(name + dash[2] + 1, dash[1] - dash[2] - 1, 0))
    return 0;
  size_t hl = strlen(hn), pl = dash[2];
  if (pl < hl || (pl > hl && name[pl - hl - 1] != '-') || memcmp(name + pl - hl, hn, hl) != 0)
    return 0;
  long long pid = strtoll(name + dash[2] + 1, NULL, 10);
  if (pid <= 1 || pid > 0x7fffffff)
    return 0;
  if (pid == (long long)getpid())
    return !live_has(name);
  return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

/* Load-balanced consumers claim what dead members left pending (claim_idle_ms=0 turns it off). */
static int cons_claims(const rcons_t *rc) {
  return rc->mode == SEA_MODE_LOAD_BALANCED && rc->cfg.claim_idle_ms > 0;
}

static void cons_end(rcons_t *rc, int status, const char *msg) {
  if (rc->ended)
    return;
  rc->ended = 1;
  if (rc->pos_op) {
    rhost->op_done(rc->pos_op, status, "%s", msg);
    rc->pos_op = NULL;
  }
  /* At the end of the stream the connection stays: XACKs on the wire are answered and their
   * commits complete (failing them here made a commit that did happen look failed). */
  if (status != SEA_EOF)
    waits_fail(&rc->commits, status, msg);
  rhost->consumer_end(rc->c, status, "%s", msg);
}

static rstream_t *cons_find(rcons_t *rc, const char *name, size_t len) {
  for (size_t i = 0; i < rc->nst; i++)
    if (strlen(rc->st[i].name) == len && memcmp(rc->st[i].name, name, len) == 0)
      return &rc->st[i];
  return NULL;
}

static void cons_check_commits(rcons_t *rc) {
  waits_reached(&rc->commits, rc->acks_done);
}

static void xack_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL || reply == NULL)
    return;
  rcons_t *rc = c->owner;
  rc->acks_done++;
  if (cons_cluster_err(rc, c, reply))
    return; /* the XACK did not happen: its entries are delivered again */
  if (reply->type == REDIS_REPLY_ERROR) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": XACK in group '%s' at %s failed: %s", rc->group,
             rc->s->addr, reply->str);
    waits_fail(&rc->commits, SEA_EBACKEND, msg); /* also after the end (cons_end is then a no-op) */
    cons_end(rc, SEA_EBACKEND, msg);
    return;
  }
  cons_check_commits(rc);
}

/* Most ids in one XACK: a commit after a large backlog is split into commands of this size. */
#define R_XACK_MAX 10000

/* XACK key group id... for every id of l, which is then empty. Keeps l if not connected. */
static void cons_send_xack(rcons_t *rc, rstream_t *st, idlist_t *l) {
  rconn_t *conn = cons_conn(rc, st);
  if (l->n == 0 || !conn_ready(conn))
    return;
  size_t most = l->n < R_XACK_MAX ? l->n : R_XACK_MAX;
  const char **argv = rhost->alloc((most + 3) * sizeof *argv);
  size_t *lens = rhost->alloc((most + 3) * sizeof *lens);
  if (argv == NULL || lens == NULL) {
    rhost->free(argv);
    rhost->free(lens);
    return; /* kept: the next commit tries again */
  }
  argv[0] = "XACK";
  argv[1] = st->name;
  argv[2] = rc->group;
  lens[0] = 4;
  lens[1] = strlen(st->name);
  lens[2] = strlen(rc->group);
  const char *p = l->buf;
  for (size_t left = l->n; left > 0;) {
    size_t k = left < most ? left : most;
    for (size_t i = 0; i < k; i++) {
      argv[3 + i] = p;
      lens[3 + i] = strlen(p);
      p += lens[3 + i] + 1;
    }
    if (redisAsyncCommandArgv(conn->ac, xack_cb, NULL, (int)(k + 3), argv, lens) != REDIS_OK)
      break; /* the connection is going: the entries stay pending and come again */
    rc->acks_sent++;
    left -= k;
  }
  l->len = l->n = 0;
  rhost->free(argv);
  rhost->free(lens);
}

static int idl_add(idlist_t *l, uint64_t ms, uint64_t sq) {
  char id[R_ID_MAX];
  size_t n = (size_t)id_format(id, ms, sq) + 1;
  if (l->len + n > l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 1024;
    while (cap < l->len + n)
      cap *= 2;
    char *a = rhost->realloc(l->buf, cap);
    if (a == NULL)
      return SEA_ENOMEM;
    l->buf = a;
    l->cap = cap;
  }
  memcpy(l->buf + l->len, id, n);
  l->len += n;
  l->n++;
  return 0;
}

/* Turn one reply's entries ([id, [field, value, ...]] ...) of one stream into messages. */
static size_t entries_count(const redisReply *entries) {
  return entries && entries->type == REDIS_REPLY_ARRAY ? entries->elements : 0;
}

static const redisReply *entry_payload(const rcons_t *rc, const redisReply *e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[1]->type != REDIS_REPLY_ARRAY)
    return NULL;
  const redisReply *f = e->element[1];
  for (size_t i = 0; i + 1 < f->elements; i += 2)
    if (f->element[i]->type == REDIS_REPLY_STRING && strcmp(f->element[i]->str, rc->cfg.field) == 0)
      return f->element[i + 1];
  return NULL;
}

/* Deliver the entries of a reply: pairs of (stream, entries). Returns the number of entries in
 * the reply, delivered or not (an entry that is no message is skipped). In a group, a skipped
 * entry is XACKed at once (there is nothing to process), and so is every entry read with
 * ack=at-most-once; with ack=manual the others wait for sea_consumer_ack and commit. */
typedef struct rpart {
  rstream_t *st;
  const redisReply *entries;
} rpart_t;

static size_t cons_deliver(rcons_t *rc, rpart_t *parts, size_t nparts) {
  size_t total = 0, bytes = 0;
  for (size_t i = 0; i < nparts; i++) {
    const redisReply *en = parts[i].entries;
    for (size_t j = 0; j < entries_count(en); j++) {
      const redisReply *p = entry_payload(rc, en->element[j]);
      if (p && (p->type == REDIS_REPLY_STRING || p->type == REDIS_REPLY_STATUS))
        bytes += p->len;
      total++;
    }
  }
  if (total == 0)
    return 0;
  int group = rc->mode != SEA_MODE_REALTIME && rc->cfg.ack != ACK_NONE;
  int at_most_once = group && rc->cfg.ack == ACK_AT_MOST_ONCE;
  sea_batch_t *b = rhost->batch_new(total);
  sea_block_t *blk = rhost->block_new(bytes ? bytes : 1);
  if (b == NULL || blk == NULL) {
    if (b)
      rhost->batch_release(b);
    rhost->block_unref(blk);
    cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
    return 0;
  }
  uint8_t *base = rhost->block_data(blk);
  size_t off = 0;
  for (size_t i = 0; i < nparts; i++) {
    rstream_t *st = parts[i].st;
    const redisReply *en = parts[i].entries;
    for (size_t j = 0; j < entries_count(en); j++) {
      const redisReply *e = en->element[j];
      uint64_t ms, sq;
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
          e->element[0]->type != REDIS_REPLY_STRING ||
          id_parse(e->element[0]->str, e->element[0]->len, &ms, &sq) != 0)
        continue;
      st->ms = ms;
      st->sq = sq;
      const redisReply *p = entry_payload(rc, e);
      if (p == NULL) {
        /* no payload field (as the Rust SeaStreamer, skip it), or a pending entry that was
         * deleted by trimming: no message, nothing to wait for */
        if (group)
          idl_add(&st->skips, ms, sq);
        continue;
      }
      if (at_most_once)
        idl_add(&st->acks, ms, sq);
      sea_message_t *m = &b->msgs[b->count++];
      memset(m, 0, sizeof *m);
      size_t len = 0;
      if (p->type == REDIS_REPLY_STRING || p->type == REDIS_REPLY_STATUS) {
        len = p->len;
        memcpy(base + off, p->str, len);
      }
      m->payload.data = base + off;
      m->payload.len = len;
      m->payload.block = rhost->block_ref(blk);
      off += len;
      m->meta.stream_key = st->key;
      m->meta.shard_id = st->shard;
      m->meta.seq = id_pack(ms, sq);
      m->meta.timestamp_us = (int64_t)(ms * 1000);
      m->backend_pos = m->meta.seq;
    }
  }
  rhost->block_unref(blk);
  size_t n = b->count;
  if (n == 0) {
    rhost->batch_release(b);
  } else if (rc->paused || rc->nheld) {
    if (rc->nheld == rc->capheld) {
      size_t cap = rc->capheld ? rc->capheld * 2 : 4;
      sea_batch_t **h = rhost->realloc(rc->held, cap * sizeof *h);
      if (h == NULL) {
        rhost->batch_release(b);
        cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
        return 0;
      }
      rc->held = h;
      rc->capheld = cap;
    }
    rc->held[rc->nheld++] = b;
  } else {
    rhost->deliver(rc->c, b);
  }
  if (group && !rc->ended)
    for (size_t i = 0; i < nparts; i++) {
      rstream_t *st = parts[i].st;
      cons_send_xack(rc, st, &st->skips);
      if (at_most_once)
        cons_send_xack(rc, st, &st->acks);
    }
  return total;
}

static void cons_send_read_one(rcons_t *rc, long node, int may_block, rconn_t *ask);
static rconn_t *cons_node(rcons_t *rc, size_t idx);

/* A read answered ASK (its stream's slot is being moved, and the stream is already at the
 * target): the same read once more, at the target after ASKING, in the same round. 1 if so. */
static int cons_read_ask(rcons_t *rc, const redisReply *reply) {
  unsigned slot;
  char host[256];
  int port;
  if (!rc->map.cluster || reply->type != REDIS_REPLY_ERROR ||
      rcl_redirect(reply->str, &slot, host, &port) != RCL_ASK)
    return 0;
  int idx = rcl_node_index(&rc->map, host, port);
  rconn_t *to = idx >= 0 ? cons_node(rc, (size_t)idx) : NULL;
  if (to == NULL || !conn_ready(to))
    return 0; /* not a master we are connected to: wait the move out (cons_redirected) */
  int before = rc->reading;
  for (size_t i = 0; i < rc->nst; i++)
    if (rcl_slot(rc->st[i].name, strlen(rc->st[i].name)) == slot)
      cons_send_read_one(rc, (long)i, 0, to);
  if (rc->reading == before) /* nothing sent: the round may be over */
    return 0;
  rhost->log(SEA_LOG_DEBUG, R_NAME, "read: %s; asking %s", reply->str, to->addr);
  return 1;
}

static void read_cb(redisAsyncContext *ac, void *rep, void *priv) {
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL)
    return;
  rcons_t *rc = c->owner;
  if (rc->reading)
    rc->reading--;
  if (reply == NULL || rc->ended)
    return;
  if ((unsigned)(uintptr_t)priv != rc->gen) {
    if (rc->reading == 0)
      cons_pump(rc); /* an answer from before a seek or rewind */
    return;
  }
  char msg[1400];
  if (cons_read_ask(rc, reply) || cons_cluster_err(rc, c, reply))
    return;
  if (reply->type == REDIS_REPLY_ERROR) {
    /* a cluster reads each stream on its own: name the key, whose stream is on that node */
    snprintf(msg, sizeof msg, R_NAME ": %s of '%s'%s at %s failed: %s",
             rc->mode == SEA_MODE_REALTIME ? "XREAD" : "XREADGROUP",
             rc->map.cluster ? rc->st[0].key : rc->st[0].name,
             rc->map.cluster ? " (a stream of it)"
             : rc->nst > 1   ? " and other keys"
                             : "",
             c->addr, reply->str);
    cons_end(rc, SEA_EBACKEND, msg);
    return;
  }
  size_t n = 0;
  int any_history = 0;
  if (reply->type == REDIS_REPLY_ARRAY) {
    rpart_t parts[64];
    size_t np = 0;
    for (size_t i = 0; i < reply->elements; i++) {
      const redisReply *s = reply->element[i];
      if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
          s->element[0]->type != REDIS_REPLY_STRING)
        continue;
      rstream_t *st = cons_find(rc, s->element[0]->str, s->element[0]->len);
      if (st == NULL)
        continue;
      if (st->history && entries_count(s->element[1]) == 0) {
        st->history = 0; /* own pending entries all read: now new ones */
        any_history = 1; /* and read them before saying this is the end */
      }
      parts[np].st = st;
      parts[np].entries = s->element[1];
      if (++np == sizeof parts / sizeof parts[0]) {
        n += cons_deliver(rc, parts, np);
        np = 0;
        if (rc->ended)
          return;
      }
    }
    n += cons_deliver(rc, parts, np);
  }
  if (rc->ended)
    return;
  /* a cluster reads each node on its own: the round ends with the last answer */
  rc->round_n += n;
  rc->round_hist |= any_history;
  if (rc->reading > 0)
    return;
  n = rc->round_n;
  any_history = rc->round_hist;
  for (size_t i = 0; i < rc->nst; i++)
    any_history |= rc->st[i].history;
  if (n > 0)
    rc->reap_clean = 0;
  if (n == 0 && !any_history)
    for (size_t i = 0; i < rc->nst; i++) { /* caught up: nothing is left to deliver */
      rc->st[i].lag_known = 1;
      rc->st[i].lag = 0;
    }
  if (n == 0 && !any_history && rc->stop_at_end) {
    if (cons_claims(rc) && !rc->reap_clean) {
      /* the end only once a claim pass found nothing pending with dead members and a read
       * after it found nothing new */
      rc->reap_wanted = 1;
      cons_pump(rc);
      return;
    }
    cons_end(rc, SEA_EOF, R_NAME ": end of stream");
    return;
  }
  cons_pump(rc);
}

static void cons_prepared(rcons_t *rc) {
  rc->prepared = 1;
  char names[512];
  size_t off = 0;
  names[0] = '\0';
  for (size_t i = 0; i < rc->nst && off < sizeof names; i++)
    off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "", rc->st[i].name);
  if (rc->mode == SEA_MODE_REALTIME)
    rhost->log(SEA_LOG_INFO, R_NAME, "reading %s at %s (realtime)", names, rc->s->addr);
  else
    rhost->log(SEA_LOG_INFO, R_NAME, "group '%s' at %s: member '%s' (%s) reads %s", rc->group,
               rc->s->addr, rc->cname,
               rc->mode == SEA_MODE_LOAD_BALANCED ? "load-balanced" : "resumable", names);
  if (rc->pos_op && !rc->setid_pending) {
    sea_op_t *op = rc->pos_op;
    rc->pos_op = NULL;
    rhost->op_done(op, 0, NULL);
  }
}

static void prep_cb(redisAsyncContext *ac, void *rep, void *priv) {
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL)
    return;
  rcons_t *rc = c->owner;
  size_t i = (size_t)(uintptr_t)priv & 0xffffff;
  int is_type = ((uintptr_t)priv >> 24) != 0;
  if (rc->preparing)
    rc->preparing--;
  if (reply == NULL || rc->ended)
    return;
  rstream_t *st = &rc->st[i];
  if (cons_cluster_err(rc, c, reply))
    return;
  if (is_type) {
    /* TYPE name: a key of another type would fail every read; say which key it is */
    if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "stream") != 0 &&
        strcmp(reply->str, "none") != 0) {
      char msg[1400];
      snprintf(msg, sizeof msg, R_NAME ": key '%s' at %s holds a %s, not a stream (WRONGTYPE)",
               st->name, c->addr, reply->str);
      cons_end(rc, SEA_EBACKEND, msg);
      return;
    }
  } else if (reply->type == REDIS_REPLY_ERROR) {
    if (rc->mode != SEA_MODE_REALTIME && strncmp(reply->str, "BUSYGROUP", 9) == 0) {
      /* the group exists: keep its position */
    } else {
      char msg[1400];
      snprintf(msg, sizeof msg, R_NAME ": cannot %s '%s' at %s: %s",
               rc->mode == SEA_MODE_REALTIME ? "read the end of" : "set up the group on", st->name,
               rc->s->addr, reply->str);
      cons_end(rc, SEA_EBACKEND, msg);
      return;
    }
  } else if (rc->mode == SEA_MODE_REALTIME) {
    /* XREVRANGE name + - COUNT n: the last element is where to start */
    uint64_t ms = 0, sq = 0;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
      const redisReply *e = reply->element[reply->elements - 1];
      if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
          e->element[0]->type == REDIS_REPLY_STRING &&
          id_parse(e->element[0]->str, e->element[0]->len, &ms, &sq) == 0 &&
          rc->pos_kind == P_FROM_END)
        id_before(&ms, &sq);
    }
    st->ms = ms;
    st->sq = sq;
  }
  if (rc->preparing == 0) {
    cons_prepared(rc);
    cons_pump(rc);
  }
}

/* Sends argv (NUL-terminated strings) on the consumer's connection; 1 if it was queued. */
static int cons_send_argv(rcons_t *rc, const rstream_t *st, redisCallbackFn *cb, size_t i, int argc,
                          const char **argv) {
  size_t lens[8];
  for (int k = 0; k < argc; k++)
    lens[k] = strlen(argv[k]);
  rconn_t *c = cons_conn(rc, st);
  if (c->ac == NULL)
    return 0;
  return redisAsyncCommandArgv(c->ac, cb, (void *)(uintptr_t)i, argc, argv, lens) == REDIS_OK;
}

/* The id a group starts after for the position to start at or move to: just before the
 * position's entry (P_AT, P_TIME), "0" (P_BEGIN) or "$" (the end). */
static void group_pos_id(const rcons_t *rc, char id[R_ID_MAX]) {
  if (rc->pos_kind == P_AT || rc->pos_kind == P_TIME) {
    uint64_t ms = rc->pos_kind == P_AT ? rc->pos_arg >> 16 : rc->pos_arg;
    uint64_t sq = rc->pos_kind == P_AT ? rc->pos_arg & 0xffff : 0;
    id_before(&ms, &sq);
    id_format(id, ms, sq);
  } else {
    snprintf(id, R_ID_MAX, "%s", rc->pos_kind == P_BEGIN ? "0" : "$");
  }
}

/* Work out where each stream starts: a query per stream where the position needs the server. */
static void cons_prepare(rcons_t *rc) {
  rc->preparing = 0;
  for (size_t i = 0; i < rc->nst; i++)
    if (cons_conn(rc, &rc->st[i])->ac && redisAsyncCommand(cons_conn(rc, &rc->st[i])->ac, prep_cb,
                                                           (void *)(((uintptr_t)1 << 24) | i),
                                                           "TYPE %s", rc->st[i].name) == REDIS_OK)
      rc->preparing++;
  if (rc->mode == SEA_MODE_REALTIME) {
    for (size_t i = 0; i < rc->nst; i++) {
      rstream_t *st = &rc->st[i];
      st->history = 0;
      switch (rc->pos_kind) {
      case P_BEGIN:
        st->ms = st->sq = 0;
        break;
      case P_AT:
        st->ms = rc->pos_arg >> 16;
        st->sq = rc->pos_arg & 0xffff;
        id_before(&st->ms, &st->sq);
        break;
      case P_TIME:
        st->ms = rc->pos_arg;
        st->sq = 0;
        id_before(&st->ms, &st->sq);
        break;
      default: {
        char count[24];
        snprintf(count, sizeof count, "%llu",
                 (unsigned long long)(rc->pos_kind == P_FROM_END ? rc->pos_arg : 1));
        const char *argv[] = {"XREVRANGE", st->name, "+", "-", "COUNT", count};
        rc->preparing += cons_send_argv(rc, st, prep_cb, i, 6, argv);
      }
      }
    }
  } else {
    for (size_t i = 0; i < rc->nst; i++) {
      rstream_t *st = &rc->st[i];
      st->history = 1;
      st->ms = st->sq = 0;
      if (!rc->cfg.create)
        continue;
      char id[R_ID_MAX];
      group_pos_id(rc, id);
      const char *argv[] = {"XGROUP", "CREATE", st->name, rc->group, id, "MKSTREAM"};
      rc->preparing += cons_send_argv(rc, st, prep_cb, i, 6, argv);
    }
  }
  if (rc->preparing == 0)
    cons_prepared(rc);
}

/* Move the group to the seek or rewind position: XGROUP SETID on every stream. */
static void cons_send_setid(rcons_t *rc) {
  rc->setid_pending = 0;
  rc->preparing = 0;
  char id[R_ID_MAX];
  group_pos_id(rc, id); /* seek and rewind give P_TIME, P_AT, P_BEGIN or P_END */
  for (size_t i = 0; i < rc->nst; i++) {
    rstream_t *st = &rc->st[i];
    st->history = 1; /* our pending entries first, then from the new position */
    st->ms = st->sq = 0;
    const char *argv[] = {"XGROUP", "SETID", st->name, rc->group, id};
    rc->preparing += cons_send_argv(rc, st, prep_cb, i, 5, argv);
  }
  if (rc->preparing == 0)
    cons_prepared(rc);
}

/* One XREAD or XREADGROUP over the streams node serves (-1: over every stream, a plain server).
 * A cluster refuses one command over keys of several slots (CROSSSLOT), even of one node, so
 * there each read names one stream: node is then the stream's index. */
static void cons_send_read_one(rcons_t *rc, long node, int may_block, rconn_t *ask) {
  size_t n = node < 0 ? rc->nst : 1;
  size_t first = node < 0 ? 0 : (size_t)node;
  size_t max = 12 + 2 * n;
  const char **argv = rhost->alloc(max * sizeof *argv);
  size_t *lens = rhost->alloc(max * sizeof *lens);
  char *ids = rhost->alloc(n * R_ID_MAX);
  if (argv == NULL || lens == NULL || ids == NULL) {
    rhost->free(argv);
    rhost->free(lens);
    rhost->free(ids);
    cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
    return;
  }
  char count[24], block[24];
  snprintf(count, sizeof count, "%u", rc->batch);
  snprintf(block, sizeof block, "%llu", (unsigned long long)rc->cfg.block_ms);
  int history = 0;
  for (size_t i = 0; i < rc->nst; i++)
    history |= rc->st[i].history;
  int argc = 0;
  if (rc->mode == SEA_MODE_REALTIME) {
    argv[argc++] = "XREAD";
  } else {
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = rc->group;
    argv[argc++] = rc->cname;
  }
  argv[argc++] = "COUNT";
  argv[argc++] = count;
  if (!rc->stop_at_end && !history && may_block) {
    argv[argc++] = "BLOCK";
    argv[argc++] = block;
  }
  if (rc->mode != SEA_MODE_REALTIME && rc->cfg.ack == ACK_NONE)
    argv[argc++] = "NOACK";
  argv[argc++] = "STREAMS";
  for (size_t i = first; i < first + n; i++)
    argv[argc++] = rc->st[i].name;
  for (size_t i = first; i < first + n; i++) {
    rstream_t *st = &rc->st[i];
    char *id = ids + (i - first) * R_ID_MAX;
    if (rc->mode != SEA_MODE_REALTIME && !st->history)
      snprintf(id, R_ID_MAX, ">");
    else
      id_format(id, st->ms, st->sq);
    argv[argc++] = id;
  }
  for (int i = 0; i < argc; i++)
    lens[i] = strlen(argv[i]);
  rconn_t *c = ask ? ask : node < 0 ? &rc->conn : cons_conn(rc, &rc->st[first]);
  /* ASK: the node takes a command on a slot it is importing only right after ASKING */
  if (ask && c->ac && redisAsyncCommand(c->ac, NULL, NULL, "ASKING") != REDIS_OK)
    c = NULL;
  if (c && c->ac &&
      redisAsyncCommandArgv(c->ac, read_cb, (void *)(uintptr_t)rc->gen, argc, argv, lens) ==
          REDIS_OK)
    rc->reading++;
  rhost->free(argv);
  rhost->free(lens);
  rhost->free(ids);
}

/* In a cluster, one read per stream. A read with BLOCK holds its connection, and the reads
 * behind it on that connection wait for it, so only the last read of each master blocks, and
 * only when the round before found nothing: while entries come, no read waits. */
static void cons_send_read(rcons_t *rc) {
  int idle = rc->round_n == 0;
  rc->round_n = 0;
  rc->round_hist = 0;
  if (!rc->map.cluster) {
    cons_send_read_one(rc, -1, 1, NULL);
    return;
  }
  /* the last stream of each master, found from the end: its master's first sighting */
  unsigned char seen[RCL_NODES_MAX];
  unsigned char *last = idle ? rhost->calloc(rc->nst, 1) : NULL;
  if (last) {
    memset(seen, 0, sizeof seen);
    for (size_t i = rc->nst; i-- > 0;) {
      int o = rcl_route(&rc->map, rc->st[i].name);
      size_t k = o < 0 ? 0 : (size_t)o;
      last[i] = !seen[k];
      seen[k] = 1;
    }
  }
  for (size_t i = 0; i < rc->nst && !rc->ended; i++)
    cons_send_read_one(rc, (long)i, last && last[i], NULL);
  rhost->free(last);
}

/* The shard number of NAME if it is KEY:N (N decimal, within 32 bits), else -1. */
static int64_t shard_of(const char *key, const char *name) {
  size_t kl = strlen(key);
  uint64_t n;
  if (strncmp(name, key, kl) != 0 || name[kl] != ':' || parse_u64(name + kl + 1, &n) != 0 ||
      n > UINT32_MAX)
    return -1;
  return (int64_t)n;
}

static int found_cmp(const void *a, const void *b) {
  const struct rfound *x = a, *y = b;
  if (x->key != y->key)
    return x->key < y->key ? -1 : 1;
  return x->shard < y->shard ? -1 : x->shard > y->shard;
}

/* Every SCAN is answered: the streams to read are KEY:N for each N found, or KEY itself when
 * none was (as the Rust SeaStreamer's consumer decides). */
static void discover_done(rcons_t *rc) {
  if (rc->nfound > 1)
    qsort(rc->found, rc->nfound, sizeof *rc->found, found_cmp);
  size_t w = 0;
  for (size_t i = 0; i < rc->nfound; i++) /* SCAN may return a key twice */
    if (w == 0 || found_cmp(&rc->found[w - 1], &rc->found[i]) != 0)
      rc->found[w++] = rc->found[i];
  rc->nfound = w;
  size_t nst = 0;
  for (size_t k = 0, i = 0; k < rc->nkeys; k++) {
    size_t n = 0;
    while (i < rc->nfound && rc->found[i].key == k)
      i++, n++;
    nst += n ? n : 1;
  }
  if (nst > 64 * 64) {
    char msg[200];
    snprintf(msg, sizeof msg, R_NAME ": too many streams to read (%zu shards found)", nst);
    cons_end(rc, SEA_EOPTION, msg);
    return;
  }
  rstream_t *st = rhost->calloc(nst, sizeof *st);
  if (st == NULL) {
    cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
    return;
  }
  size_t j = 0;
  for (size_t k = 0, i = 0; k < rc->nkeys; k++) {
    size_t first = j;
    for (; i < rc->nfound && rc->found[i].key == k; i++, j++) {
      st[j].key = rc->keys[k];
      st[j].shard = rc->found[i].shard;
      snprintf(st[j].name, sizeof st[j].name, "%s:%u", rc->keys[k], rc->found[i].shard);
    }
    if (j == first) {
      st[j].key = rc->keys[k];
      st[j].shard = 0;
      snprintf(st[j].name, sizeof st[j].name, "%s", rc->keys[k]);
      j++;
    }
  }
  for (size_t i = 0; i < rc->nst; i++) {
    rhost->free(rc->st[i].acks.buf); /* nothing was read yet: none to keep */
    rhost->free(rc->st[i].skips.buf);
  }
  rhost->free(rc->st);
  rc->st = st;
  rc->nst = nst;
  rc->discovered = 1;
  rhost->free(rc->found);
  rc->found = NULL;
  rc->nfound = rc->capfound = 0;
}

static int scan_send(rcons_t *rc, rconn_t *c, size_t k, const char *cursor);

static void scan_cb(redisAsyncContext *ac, void *rep, void *priv) {
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL)
    return;
  rcons_t *rc = c->owner;
  size_t k = (size_t)(uintptr_t)priv;
  if (rc->discovering)
    rc->discovering--;
  if (reply && !rc->ended && !rc->discovered && cons_cluster_err(rc, c, reply))
    return;
  if (reply == NULL || rc->ended || rc->discovered)
    return;
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_ARRAY) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": cannot look for the shards of '%s' at %s: %s", rc->keys[k],
             c->addr, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply to SCAN");
    cons_end(rc, SEA_EBACKEND, msg);
    return;
  }
  const redisReply *names = reply->element[1];
  for (size_t i = 0; i < names->elements; i++) {
    const redisReply *e = names->element[i];
    int64_t sh = e->type == REDIS_REPLY_STRING ? shard_of(rc->keys[k], e->str) : -1;
    if (sh < 0)
      continue;
    if (rc->nfound == rc->capfound) {
      size_t cap = rc->capfound ? rc->capfound * 2 : 16;
      struct rfound *f = rhost->realloc(rc->found, cap * sizeof *f);
      if (f == NULL) {
        cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
        return;
      }
      rc->found = f;
      rc->capfound = cap;
    }
    rc->found[rc->nfound].key = k;
    rc->found[rc->nfound++].shard = (uint32_t)sh;
  }
  const char *cursor = reply->element[0]->str;
  if (strcmp(cursor, "0") != 0 && scan_send(rc, c, k, cursor) != 0)
    return; /* the connection is going: discovery starts over once it is back */
  if (rc->discovering == 0) {
    discover_done(rc);
    cons_pump(rc);
  }
}

static int scan_send(rcons_t *rc, rconn_t *c, size_t k, const char *cursor) {
  char pattern[R_NAME_MAX];
  snprintf(pattern, sizeof pattern, "%s:*", rc->keys[k]);
  if (c->ac == NULL)
    return -1;
  if (redisAsyncCommand(c->ac, scan_cb, (void *)(uintptr_t)k, "SCAN %s MATCH %s COUNT 1000", cursor,
                        pattern) != REDIS_OK)
    return -1;
  rc->discovering++;
  return 0;
}

/* Look for each key's shards, KEY:N, with SCAN (never KEYS, which blocks the server); in a
 * cluster on every master, each of which holds its own slots' keys. */
static void cons_discover(rcons_t *rc) {
  rc->nfound = 0;
  rc->discovering = 0;
  for (size_t i = 0; i < (rc->map.cluster ? rc->nnc : 1); i++) {
    rconn_t *c = rc->map.cluster ? rc->nc[i] : &rc->conn;
    if (rc->map.cluster && (c == NULL || i >= rc->map.nnodes || rc->map.nodes[i].slots == 0))
      continue;
    for (size_t k = 0; k < rc->nkeys; k++)
      if (scan_send(rc, c, k, "0") != 0)
        return;
  }
}

/* ---- Claiming what dead members left pending (load-balanced) ---- */

/* XGROUP DELCONSUMER of a member only if it has no pending entry, checked in the same atomic
 * step (deleting a member drops its pending entries; never those). */
static const char r_forget_lua[] =
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do "
    "local name, pending; "
    "for i = 1, #c, 2 do "
    "if c[i] == 'name' then name = c[i + 1] elseif c[i] == 'pending' then pending = c[i + 1] end "
    "end; "
    "if name == ARGV[2] then "
    "if pending == 0 then return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) "
    "end; "
    "return -1 end "
    "end; "
    "return -2";

static void forget_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)ac;
  (void)priv;
  redisReply *reply = rep;
  if (reply && reply->type == REDIS_REPLY_ERROR)
    rhost->log(SEA_LOG_DEBUG, R_NAME, "removing a gone member: %s", reply->str);
}

static void reap_forget(rreap_t *R) {
  for (size_t i = 0; i < R->ndead; i++)
    rhost->free(R->dead[i]);
  R->ndead = R->cur = 0;
  R->member_claimed = 0;
  snprintf(R->start, sizeof R->start, "-");
}

static void reap_stop(rcons_t *rc) {
  reap_forget(&rc->reap);
  rc->reap.active = 0;
}

static void reap_member_done(rcons_t *rc) {
  rreap_t *R = &rc->reap;
  if (R->member_claimed)
    rhost->log(SEA_LOG_INFO, R_NAME,
               "claimed %zu entries of '%s' left pending by member '%s' of group '%s', which is "
               "gone",
               R->member_claimed, rc->st[R->st].name, R->dead[R->cur], rc->group);
  R->member_claimed = 0;
  R->cur++;
  snprintf(R->start, sizeof R->start, "-");
}

/* The start of every claim pass reply: the consumer it is for, or NULL when there is nothing
 * to do (closed, the connection lost: cons_on_lost starts over; ended; or the pass was called
 * off by a seek or rewind, and what it claimed is read again as our own pending entries). */
static rcons_t *reap_reply(redisAsyncContext *ac, redisReply *reply) {
  rconn_t *c = ac->data;
  if (c == NULL || reply == NULL)
    return NULL;
  rcons_t *rc = c->owner;
  rc->reading = 0;
  if (rc->ended)
    return NULL;
  if (!rc->reap.active) {
    cons_pump(rc);
    return NULL;
  }
  return rc;
}

static void reap_info_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  redisReply *reply = rep;
  rcons_t *rc = reap_reply(ac, reply);
  if (rc == NULL)
    return;
  rreap_t *R = &rc->reap;
  rstream_t *st = &rc->st[R->st];
  if (reply->type == REDIS_REPLY_ARRAY) {
    char hn[64];
    host_name(hn);
    for (size_t i = 0; i < reply->elements; i++) {
      const redisReply *m = reply->element[i];
      const char *name = NULL;
      long long pending = 0, idle = 0;
      for (size_t j = 0; m->type == REDIS_REPLY_ARRAY && j + 1 < m->elements; j += 2) {
        const redisReply *k = m->element[j], *v = m->element[j + 1];
        if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS)
          continue;
        if (strcmp(k->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
          name = v->str;
        else if (strcmp(k->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
          pending = v->integer;
        else if (strcmp(k->str, "idle") == 0 && v->type == REDIS_REPLY_INTEGER)
          idle = v->integer;
      }
      if (name == NULL || strcmp(name, rc->cname) == 0)
        continue;
      int gone = member_gone(name, hn);
      if (pending == 0) {
        if (gone) {
          const char *argv[] = {"EVAL", r_forget_lua, "1", st->name, rc->group, name};
          cons_send_argv(rc, st, forget_cb, 0, 6, argv);
        }
        continue;
      }
      if (!gone && (idle < 0 || (uint64_t)idle <= rc->cfg.claim_idle_ms))
        continue; /* alive, or may be: its entries stay its own */
      if (R->ndead == R->capdead) {
        size_t cap = R->capdead ? R->capdead * 2 : 8;
        char **d = rhost->realloc(R->dead, cap * sizeof *d);
        if (d == NULL)
          break; /* the next pass tries again */
        R->dead = d;
        R->capdead = cap;
      }
      size_t nl = strlen(name) + 1;
      char *copy = rhost->alloc(nl);
      if (copy == NULL)
        break;
      memcpy(copy, name, nl);
      R->dead[R->ndead++] = copy;
    }
  } else if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOGROUP", 7) != 0 &&
             !rc->reap_warned) {
    rc->reap_warned = 1;
    rhost->log(SEA_LOG_WARN, R_NAME,
               "cannot list the members of group '%s' on '%s' at %s (entries left by gone "
               "members are not claimed): %s",
               rc->group, st->name, rc->s->addr, reply->str);
  }
  R->phase = RP_MEMBERS;
  R->cur = 0;
  snprintf(R->start, sizeof R->start, "-");
  cons_pump(rc);
}

static void reap_claim_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  redisReply *reply = rep;
  rcons_t *rc = reap_reply(ac, reply);
  if (rc == NULL)
    return;
  rreap_t *R = &rc->reap;
  rstream_t *st = &rc->st[R->st];
  if (reply->type == REDIS_REPLY_ARRAY) {
    /* The claimed entries are pending entries of ours now; the last-delivered id stays what
     * XREADGROUP gave, so keep it. */
    rpart_t part = {st, reply};
    uint64_t kms = st->ms, ksq = st->sq;
    size_t n = cons_deliver(rc, &part, 1);
    st->ms = kms;
    st->sq = ksq;
    R->claimed += n;
    R->member_claimed += n;
    if (rc->ended)
      return;
  } else {
    rhost->log(SEA_LOG_WARN, R_NAME, "XCLAIM on '%s' in group '%s' at %s: %s", st->name, rc->group,
               rc->s->addr, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    R->last_page = 1; /* leave this member to the next pass */
  }
  if (R->last_page)
    reap_member_done(rc);
  cons_pump(rc);
}

/* The position just after (ms, sq): XPENDING's next page starts there. */
static void id_after(uint64_t *ms, uint64_t *sq) {
  if (*sq < UINT64_MAX)
    (*sq)++;
  else {
    (*ms)++;
    *sq = 0;
  }
}

static void reap_pending_cb(redisAsyncContext *ac, void *rep, void *priv) {
  (void)priv;
  redisReply *reply = rep;
  rcons_t *rc = reap_reply(ac, reply);
  if (rc == NULL)
    return;
  rreap_t *R = &rc->reap;
  rstream_t *st = &rc->st[R->st];
  size_t k = reply->type == REDIS_REPLY_ARRAY ? reply->elements : 0;
  if (reply->type == REDIS_REPLY_ERROR)
    rhost->log(SEA_LOG_WARN, R_NAME, "XPENDING on '%s' in group '%s' at %s: %s", st->name,
               rc->group, rc->s->addr, reply->str);
  const char **argv = k ? rhost->alloc((k + 5) * sizeof *argv) : NULL;
  size_t *lens = k ? rhost->alloc((k + 5) * sizeof *lens) : NULL;
  if (k == 0 || argv == NULL || lens == NULL) {
    rhost->free(argv);
    rhost->free(lens);
    reap_member_done(rc); /* nothing (more) pending with it, or out of memory: the next pass */
    cons_pump(rc);
    return;
  }
  /* XCLAIM with the smallest idle time of the page: an entry that another member claimed in
   * the meantime has been idle for less, and stays with that member. */
  char minidle[24];
  long long least = -1;
  int argc = 5, last_ok = 0;
  uint64_t lms = 0, lsq = 0;
  for (size_t i = 0; i < k; i++) {
    const redisReply *e = reply->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        id_parse(e->element[0]->str, e->element[0]->len, &lms, &lsq) != 0)
      continue;
    last_ok = 1;
    if (e->element[2]->type == REDIS_REPLY_INTEGER && (least < 0 || e->element[2]->integer < least))
      least = e->element[2]->integer;
    argv[argc] = e->element[0]->str;
    lens[argc++] = e->element[0]->len;
  }
  if (last_ok) {
    id_after(&lms, &lsq);
    id_format(R->start, lms, lsq);
  }
  R->last_page = k < rc->batch || !last_ok;
  snprintf(minidle, sizeof minidle, "%lld", least > 0 ? least : 0);
  argv[0] = "XCLAIM";
  argv[1] = st->name;
  argv[2] = rc->group;
  argv[3] = rc->cname;
  argv[4] = minidle;
  for (int i = 0; i < 5; i++)
    lens[i] = strlen(argv[i]);
  int sent = argc > 5 && cons_conn(rc, st)->ac &&
             redisAsyncCommandArgv(cons_conn(rc, st)->ac, reap_claim_cb, NULL, argc, argv, lens) ==
                 REDIS_OK;
  rhost->free(argv);
  rhost->free(lens);
  if (sent) {
    rc->reading = 1;
    return;
  }
  if (argc == 5)
    reap_member_done(rc);
  cons_pump(rc);
}

/* Send the pass's next command; 1 if one is on the wire (its answer pumps again), 0 once the
 * pass is over. */
static int reap_step(rcons_t *rc) {
  rreap_t *R = &rc->reap;
  while (R->st < rc->nst) {
    rstream_t *st = &rc->st[R->st];
    if (R->phase == RP_INFO) {
      const char *argv[] = {"XINFO", "CONSUMERS", st->name, rc->group};
      if (cons_send_argv(rc, st, reap_info_cb, 0, 4, argv))
        rc->reading = 1;
      return 1; /* or the connection is going: cons_on_lost starts over */
    }
    if (R->cur < R->ndead) {
      char count[24];
      snprintf(count, sizeof count, "%u", rc->batch);
      const char *argv[] = {"XPENDING", st->name, rc->group, R->start, "+", count, R->dead[R->cur]};
      if (cons_send_argv(rc, st, reap_pending_cb, 0, 7, argv))
        rc->reading = 1;
      return 1;
    }
    reap_forget(R);
    R->st++;
    R->phase = RP_INFO;
  }
  R->active = 0;
  rc->reap_clean = R->claimed == 0;
  return 0;
}

static void reap_begin(rcons_t *rc) {
  rreap_t *R = &rc->reap;
  reap_forget(R);
  R->active = 1;
  R->st = 0;
  R->phase = RP_INFO;
  R->claimed = 0;
}

static void cons_pump(rcons_t *rc) {
  if (rc->ended || !rc->started || rc->paused || rc->reading || rc->preparing || rc->nheld ||
      !cons_up(rc))
    return;
  if (rc->discover && !rc->discovered) {
    if (rc->discovering == 0)
      cons_discover(rc);
    return; /* the last SCAN reply pumps again */
  }
  if (!rc->prepared) {
    cons_prepare(rc);
    if (rc->preparing || rc->ended)
      return;
  }
  if (rc->setid_pending) {
    cons_send_setid(rc);
    if (rc->preparing || rc->ended)
      return;
  }
  if (rc->reap.active) {
    if (reap_step(rc))
      return;
  } else if (cons_claims(rc)) {
    /* after our own pending entries (a pass before would deliver what it claims twice), then
     * every claim_idle_ms / 2, and before a stop_at_end consumer reports the end */
    int history = 0;
    for (size_t i = 0; i < rc->nst; i++)
      history |= rc->st[i].history;
    uint64_t now = rhost->now_ms(rc->conn.rt);
    if (!history && (rc->reap_wanted || now >= rc->next_claim)) {
      uint64_t every = rc->cfg.claim_idle_ms / 2;
      rc->next_claim = now + (every < 100 ? 100 : every);
      rc->reap_wanted = 0;
      reap_begin(rc);
      if (reap_step(rc))
        return;
    }
  }
  cons_send_read(rc);
}

/* Every connection of the consumer is up (one, or every master of a cluster). */
static void cons_up_again(rcons_t *rc) {
  if (rc->mode != SEA_MODE_REALTIME) {
    /* after a reconnect: our pending entries again first (at-least-once) */
    for (size_t i = 0; i < rc->nst; i++) {
      rc->st[i].history = 1;
      rc->st[i].ms = rc->st[i].sq = 0;
    }
  }
  /* acks that were not sent yet go out now, before the pending entries are read again */
  for (size_t i = 0; i < rc->nst; i++) {
    cons_send_xack(rc, &rc->st[i], &rc->st[i].skips);
    if (rc->cfg.ack != ACK_NONE)
      cons_send_xack(rc, &rc->st[i], &rc->st[i].acks);
  }
  cons_pump(rc);
}

/* Everything on the wire is lost (one connection, or the cluster's, which go down together). */
static void cons_went_down(rcons_t *rc) {
  rc->reading = 0;
  rc->discovering = 0; /* unanswered SCANs: discovery starts over once connected */
  rc->lag_asking = 0;
  reap_stop(rc); /* a claim pass starts over, and a stop_at_end consumer runs one before its end */
  rc->reap_clean = 0;
  if (rc->preparing) {
    rc->preparing = 0;
    rc->prepared = 0;
  }
  if (rc->pos_op) {
    /* a seek or rewind was under way: do it again once connected */
    if (rc->mode == SEA_MODE_REALTIME)
      rc->prepared = 0;
    else
      rc->setid_pending = 1;
  }
  /* XACKs on the wire are lost; their entries come back as pending entries, so a commit that
   * waited for them did not happen */
  rc->acks_done = rc->acks_sent;
  if (rc->commits.n > 0) {
    char msg[sizeof rc->s->addr + 160];
    if (rc->map.cluster) {
      /* a failover or a moved slot: the run goes on, and what the commit covered is delivered
       * again (duplicates), as after a Kafka group's rebalance */
      snprintf(msg, sizeof msg,
               R_NAME ": commit not done, the cluster at %s changed before XACK was answered; "
                      "the entries will be delivered again",
               rc->s->addr);
      rhost->log(SEA_LOG_WARN, R_NAME, "%s", msg + sizeof R_NAME + 1);
      waits_fail(&rc->commits, SEA_ECANCELED, msg);
    } else {
      snprintf(msg, sizeof msg,
               R_NAME ": commit: the connection to %s was lost before XACK was answered; the "
                      "entries will be delivered again",
               rc->s->addr);
      waits_fail(&rc->commits, SEA_ECONNECT, msg);
    }
  }
}

/* ---- Cluster: one connection per master, up and down together ---- */

static void cons_on_ready(rconn_t *c);
static void cons_on_lost(rconn_t *c);
static void cons_on_fail(rconn_t *c, int status, const char *msg);
static void cons_on_map(rconn_t *c);

static rconn_t *cons_node(rcons_t *rc, size_t idx) {
  if (idx < rc->nnc && rc->nc[idx])
    return rc->nc[idx];
  if (idx >= rc->nnc) {
    rconn_t **v = rhost->realloc(rc->nc, (idx + 1) * sizeof *v);
    if (v == NULL)
      return NULL;
    memset(v + rc->nnc, 0, (idx + 1 - rc->nnc) * sizeof *v);
    rc->nc = v;
    rc->nnc = idx + 1;
  }
  rconn_t *c = idx == 0 ? &rc->conn : rhost->calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  if (idx > 0) {
    conn_init(c, rc->s, rc->conn.rt, rc, rc->conn.timeout_ms, rc->cfg.reconnect_ms);
    conn_set_addr(c, rc->map.nodes[idx].host, rc->map.nodes[idx].port);
    c->idx = idx;
    c->map = &rc->map;
    c->on_ready = cons_on_ready;
    c->on_lost = cons_on_lost;
    c->on_fail = cons_on_fail;
    c->on_map = cons_on_map;
  }
  rc->nc[idx] = c;
  return c;
}

/* Connect again from scratch (what was on the wire is dropped: no callback comes for it). */
static void conn_restart(rconn_t *c) {
  conn_timer_stop(c);
  if (c->job) {
    c->job->conn = NULL;
    c->job = NULL;
  }
  conn_drop(c);
  c->state = C_IDLE;
  conn_begin(c);
}

static void cons_heal_stop(rcons_t *rc) {
  if (rc->heal) {
    rhost->timer_stop(rc->heal);
    rc->heal = NULL;
  }
}

/* Up when the map has a master for every stream's slot and every master is connected; connects
 * the masters that are not, closes the nodes that serve nothing. */
static void cons_link_check(rcons_t *rc) {
  if (!rc->map.cluster || rc->ended)
    return;
  int all = !rc->hold;
  for (size_t i = 0; i < rc->nst; i++)
    if (rcl_route(&rc->map, rc->st[i].name) < 0)
      all = 0;
  for (size_t i = 0; i < rc->map.nnodes; i++) {
    if (rc->map.nodes[i].slots == 0) {
      if (i < rc->nnc && rc->nc[i] && rc->nc[i]->state != C_CLOSED && rc->nc[i]->state != C_IDLE)
        conn_close(rc->nc[i]); /* a master that failed over, or a replica */
      continue;
    }
    rconn_t *c = cons_node(rc, i);
    if (c == NULL) {
      cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
      return;
    }
    if (c->state == C_IDLE || c->state == C_CLOSED) {
      c->state = C_IDLE;
      conn_begin(c);
    }
    if (!conn_ready(c))
      all = 0;
  }
  if (!all || rc->link_up)
    return;
  rc->map_seen = rc->map.version;
  rc->link_up = 1;
  cons_heal_stop(rc);
  cons_up_again(rc);
}

static void on_cons_heal(sea_timer_t *t, void *data) {
  (void)t;
  rcons_t *rc = data;
  rc->hold = 0;
  if (rc->link_up || rc->ended) {
    cons_heal_stop(rc);
    return;
  }
  if (rhost->now_ms(rc->conn.rt) - rc->heal_since > rc->cfg.reconnect_ms) {
    cons_heal_stop(rc);
    char msg[600];
    snprintf(msg, sizeof msg,
             R_NAME ": the cluster at %s did not have a connected master for every stream "
                    "within reconnect_ms=%llu ms",
             rc->s->addr, (unsigned long long)rc->cfg.reconnect_ms);
    cons_end(rc, SEA_ECONNECT, msg);
    return;
  }
  int asked = 0;
  for (size_t i = 0; i < rc->nnc; i++)
    if (rc->nc[i] && map_ask(rc->nc[i]) == 0)
      asked = 1;
  if (!asked && rc->conn.state == C_CLOSED) {
    rc->conn.state = C_IDLE; /* nobody to ask: the URI's node again */
    conn_begin(&rc->conn);
  }
  cons_link_check(rc);
}

/* The cluster consumer goes down: everything on the wire is dropped on every connection, and it
 * comes up again once every master is connected on a map read again. */
static void cons_link_down(rcons_t *rc, rconn_t *except) {
  if (rc->link_up) {
    rc->link_up = 0;
    cons_went_down(rc);
    for (size_t i = 0; i < rc->nnc; i++) {
      rconn_t *c = rc->nc[i];
      if (c && c != except && (c->state == C_READY || c->state == C_HANDSHAKE))
        conn_restart(c);
    }
  }
  if (rc->heal == NULL) {
    rc->heal_since = rhost->now_ms(rc->conn.rt);
    rc->heal = rhost->timer_start(rc->conn.rt, 100, 250, on_cons_heal, rc);
  }
}

static void cons_redirected(rcons_t *rc, rconn_t *c, const char *err) {
  unsigned slot;
  char host[256];
  int port;
  int kind = rcl_redirect(err, &slot, host, &port);
  rhost->log(SEA_LOG_INFO, R_NAME, "%s answered %s; reading the slot map again", c->addr, err);
  if (kind == RCL_MOVED) {
    int idx = rcl_node_index(&rc->map, host, port);
    if (idx >= 0)
      rcl_map_set(&rc->map, slot, (size_t)idx);
  } else {
    rc->hold = 1; /* a slot being moved (ASK) or a cluster failing over: wait a moment */
  }
  cons_link_down(rc, NULL);
  if (!rc->link_up)
    for (size_t i = 0; i < rc->nnc; i++) /* including the one that answered */
      if (rc->nc[i] && rc->nc[i]->state == C_READY)
        conn_restart(rc->nc[i]);
}

static void cons_on_map(rconn_t *c) {
  cons_link_check(c->owner);
}

static void cons_on_ready(rconn_t *c) {
  rcons_t *rc = c->owner;
  if (!rc->map.cluster) {
    if (rc->s->nseeds > 1) {
      char msg[600];
      snprintf(msg, sizeof msg,
               R_NAME ": the URI names %zu nodes, but %s is not a Redis Cluster node (a plain "
                      "server takes one node: redis://HOST:PORT/KEYS)",
               rc->s->nseeds, c->addr);
      conn_close(c);
      cons_end(rc, SEA_EURI, msg);
      return;
    }
    cons_up_again(rc);
    return;
  }
  if (rc->map_seen == 0 && !rc->link_up)
    rhost->log(SEA_LOG_INFO, R_NAME, "%s is a node of a Redis Cluster: %zu nodes known", c->addr,
               rc->map.nnodes);
  if (rc->link_up && rc->map.version != rc->map_seen) {
    /* a node came back with a map that moved slots: read each stream where it is now */
    cons_link_down(rc, c);
    return;
  }
  cons_link_check(rc);
}

static void cons_on_lost(rconn_t *c) {
  rcons_t *rc = c->owner;
  if (!rc->map.cluster) {
    cons_went_down(rc);
    return;
  }
  cons_link_down(rc, c);
}

static void cons_on_fail(rconn_t *c, int status, const char *msg) {
  rcons_t *rc = c->owner;
  if (rc->map.cluster && c->idx < rc->map.nnodes && rc->map.nodes[c->idx].slots == 0) {
    rhost->log(SEA_LOG_DEBUG, R_NAME, "%s (it serves no slot now)", msg);
    return;
  }
  cons_end(rc, status, msg);
}

static int cons_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *args, void **impl) {
  rstreamer_t *s = simpl;
  sea_runtime_t *rt = args->rt;
  rcons_t *rc = rhost->calloc(1, sizeof *rc);
  if (rc == NULL)
    return SEA_ENOMEM;
  rc->cfg = s->cfg;
  int err = cfg_apply(rt, &rc->cfg, args->backend_options);
  if (err) {
    rhost->free(rc);
    return err;
  }
  if (args->key_count == 0) {
    rhost->set_error(rt,
                     R_NAME ": a consumer needs stream keys in the URI (redis://HOST/KEY1,KEY2)");
    rhost->free(rc);
    return SEA_EKEY;
  }
  rc->s = s;
  rc->c = c;
  rc->mode = args->mode;
  rc->group = args->group;
  if (rc->mode != SEA_MODE_REALTIME && rc->group == NULL)
    rc->group = rhost->stream_key("seastreamer", 11);
  if (rc->cfg.consumer[0] && rc->mode == SEA_MODE_RESUMABLE)
    snprintf(rc->cname, sizeof rc->cname, "%s", rc->cfg.consumer);
  else if (rc->mode == SEA_MODE_RESUMABLE)
    snprintf(rc->cname, sizeof rc->cname, "%s", rc->group);
  else {
    /* load-balanced: unique per process and per consumer */
    static unsigned counter;
    char hn[64];
    host_name(hn);
    snprintf(rc->cname, sizeof rc->cname, "%s%s%s-%ld-%llx-%u", rc->cfg.consumer,
             rc->cfg.consumer[0] ? "-" : "", hn, (long)getpid(),
             (unsigned long long)rhost->now_us(), ++counter);
  }
  rc->batch = args->batch_size ? args->batch_size : R_BATCH_DEFAULT;
  rc->stop_at_end = args->stop_at_end;
  rc->reset_earliest = args->reset_earliest;
  if (args->has_start && args->start_is_time) {
    rc->pos_kind = P_TIME;
    rc->pos_arg = (uint64_t)(args->start_ts_us / 1000);
  } else if (args->has_start && args->start_pos.kind == SEA_POS_AT) {
    rc->pos_kind = P_AT;
    rc->pos_arg = args->start_pos.seq;
  } else if (args->has_start) {
    rc->pos_kind = args->start_pos.kind == SEA_POS_BEGINNING ? P_BEGIN : P_END;
  } else if (args->start_from_end > 0) {
    rc->pos_kind = P_FROM_END;
    rc->pos_arg = (uint64_t)args->start_from_end;
  } else {
    rc->pos_kind = args->reset_earliest ? P_BEGIN : P_END;
  }
  uint32_t shards = rc->cfg.shards;
  rc->nst = args->key_count * shards;
  if (rc->nst > 64 * 64) {
    rhost->set_error(rt, R_NAME ": too many streams (%zu keys x %u shards)", args->key_count,
                     shards);
    rhost->free(rc);
    return SEA_EOPTION;
  }
  rc->st = rhost->calloc(rc->nst, sizeof *rc->st);
  if (rc->st == NULL) {
    rhost->free(rc);
    return SEA_ENOMEM;
  }
  for (size_t k = 0; k < args->key_count; k++)
    for (uint32_t sh = 0; sh < shards; sh++) {
      rstream_t *st = &rc->st[k * shards + sh];
      st->key = args->keys[k];
      st->shard = sh;
      stream_name(st->name, st->key, shards, sh);
    }
  /* The keys are interned (they live as long as the process); the array is copied. */
  rc->keys = rhost->calloc(args->key_count, sizeof *rc->keys);
  if (rc->keys == NULL) {
    rhost->free(rc->st);
    rhost->free(rc);
    return SEA_ENOMEM;
  }
  memcpy(rc->keys, args->keys, args->key_count * sizeof *rc->keys);
  rc->nkeys = args->key_count;
  rc->discover = !rc->cfg.shards_set;
  conn_init(&rc->conn, s, rt, rc, args->timeout_ms, rc->cfg.reconnect_ms);
  rc->conn.on_ready = cons_on_ready;
  rc->conn.on_lost = cons_on_lost;
  rc->conn.on_fail = cons_on_fail;
  rc->conn.on_map = cons_on_map;
  rc->conn.map = &rc->map;
  rcl_map_init(&rc->map);
  if (rcl_node_index(&rc->map, s->host, s->port) != 0 || cons_node(rc, 0) == NULL) {
    rcl_map_free(&rc->map);
    rhost->free(rc->nc);
    rhost->free(rc->keys);
    rhost->free(rc->st);
    rhost->free(rc);
    return SEA_ENOMEM;
  }
  if (rc->mode == SEA_MODE_LOAD_BALANCED)
    live_add(rc);
  *impl = rc;
  return 0;
}

static int cons_start(void *impl) {
  rcons_t *rc = impl;
  rc->started = 1;
  conn_begin(&rc->conn);
  return 0;
}

static int cons_pause(void *impl) {
  rcons_t *rc = impl;
  rc->paused = 1;
  return 0;
}

/* Deliver what was read while paused, in order, on a loop turn of its own (never from inside
 * consumer_resume), then read on. */
static void on_resume_timer(sea_timer_t *t, void *data) {
  (void)t;
  rcons_t *rc = data;
  rhost->timer_stop(rc->resume_timer);
  rc->resume_timer = NULL;
  size_t i = 0;
  while (i < rc->nheld && !rc->paused && !rc->ended)
    rhost->deliver(rc->c, rc->held[i++]);
  memmove(rc->held, rc->held + i, (rc->nheld - i) * sizeof *rc->held);
  rc->nheld -= i;
  if (rc->nheld == 0)
    cons_pump(rc);
}

static int cons_resume(void *impl) {
  rcons_t *rc = impl;
  rc->paused = 0;
  if (rc->nheld) {
    if (rc->resume_timer == NULL)
      rc->resume_timer = rhost->timer_start(rc->conn.rt, 0, 1000, on_resume_timer, rc);
    return rc->resume_timer ? 0 : SEA_ENOMEM;
  }
  cons_pump(rc);
  return 0;
}

static int cons_reposition(rcons_t *rc, int kind, uint64_t arg, sea_op_t *op) {
  if (rc->pos_op)
    return SEA_EBUSY;
  rc->pos_kind = kind;
  rc->pos_arg = arg;
  rc->gen++;
  reap_stop(rc); /* our pending entries are read first again; a new pass follows them */
  if (rc->mode == SEA_MODE_REALTIME)
    rc->prepared = 0;
  else
    rc->setid_pending = 1; /* a group's position belongs to the group: move it */
  rc->pos_op = op;
  cons_pump(rc);
  return 0;
}

static int cons_seek(void *impl, int64_t ts_us, sea_op_t *op) {
  return cons_reposition(impl, P_TIME, (uint64_t)(ts_us / 1000), op);
}

static int cons_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  int kind = pos.kind == SEA_POS_BEGINNING ? P_BEGIN : pos.kind == SEA_POS_END ? P_END : P_AT;
  return cons_reposition(impl, kind, pos.seq, op);
}

static int cons_ack(void *impl, const sea_message_t *m) {
  rcons_t *rc = impl;
  if (rc->cfg.ack != ACK_MANUAL)
    return 0; /* at-most-once: acked when read; none: NOACK */
  for (size_t i = 0; i < rc->nst; i++) {
    rstream_t *st = &rc->st[i];
    if (st->key == m->meta.stream_key && st->shard == m->meta.shard_id)
      return idl_add(&st->acks, m->backend_pos >> 16, m->backend_pos & 0xffff);
  }
  return SEA_EKEY;
}

static int cons_commit(void *impl, sea_op_t *op) {
  rcons_t *rc = impl;
  if (rc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  int unsent = 0;
  size_t n = 0;
  for (size_t i = 0; i < rc->nst; i++)
    n += rc->st[i].acks.n + rc->st[i].skips.n;
  if (n > 0)
    rhost->log(SEA_LOG_INFO, R_NAME, "commit: acknowledging %zu entr%s of group '%s' (XACK)", n,
               n == 1 ? "y" : "ies", rc->group);
  for (size_t i = 0; i < rc->nst; i++) {
    rstream_t *st = &rc->st[i];
    cons_send_xack(rc, st, &st->skips);
    cons_send_xack(rc, st, &st->acks);
    unsent |= st->acks.n > 0 || st->skips.n > 0;
  }
  if (unsent && rc->map.cluster) {
    /* the cluster is failing over or moving a slot: the acks stay and go out once it is up
     * again; until then the entries may be delivered again */
    rhost->log(SEA_LOG_WARN, R_NAME,
               "commit not done, the cluster at %s is not reachable on every master now; the "
               "acks are sent once it is",
               rc->s->addr);
    rhost->op_done(op, SEA_ECANCELED,
                   R_NAME ": commit not done: the cluster at %s is changing (the acks are sent "
                          "once it is up again)",
                   rc->s->addr);
    return 0;
  }
  if (unsent) {
    rhost->op_done(op, SEA_ECONNECT,
                   R_NAME ": commit: not connected to %s; acked entries stay pending and are "
                          "delivered again",
                   rc->s->addr);
    return 0;
  }
  if (rc->acks_done >= rc->acks_sent) {
    rhost->op_done(op, 0, NULL);
    return 0;
  }
  return waits_add(&rc->commits, op, rc->acks_sent);
}

/* XINFO GROUPS of stream i: the group's lag (Redis 7; nil when Redis cannot tell). */
static void lag_cb(redisAsyncContext *ac, void *rep, void *priv) {
  rconn_t *c = ac->data;
  redisReply *reply = rep;
  if (c == NULL)
    return;
  rcons_t *rc = c->owner;
  if (rc->lag_asking > 0)
    rc->lag_asking--;
  size_t i = (size_t)(uintptr_t)priv;
  if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || i >= rc->nst)
    return;
  for (size_t g = 0; g < reply->elements; g++) {
    const redisReply *m = reply->element[g]; /* RESP2: name value name value ... */
    if (m->type != REDIS_REPLY_ARRAY)
      continue;
    const redisReply *name = NULL, *lag = NULL;
    for (size_t k = 0; k + 1 < m->elements; k += 2) {
      const redisReply *f = m->element[k];
      if (f->type != REDIS_REPLY_STRING && f->type != REDIS_REPLY_STATUS)
        continue;
      if (strcmp(f->str, "name") == 0)
        name = m->element[k + 1];
      else if (strcmp(f->str, "lag") == 0)
        lag = m->element[k + 1];
    }
    if (name == NULL || name->type != REDIS_REPLY_STRING || strcmp(name->str, rc->group) != 0)
      continue;
    if (lag != NULL && lag->type == REDIS_REPLY_INTEGER && lag->integer >= 0) {
      rc->st[i].lag_known = 1;
      rc->st[i].lag = lag->integer;
    } else {
      rc->st[i].lag_known = 0; /* Redis cannot tell (entries deleted within the range) */
    }
  }
}

/* What was last learned, per stream; a group asks again (XINFO GROUPS, on the consumer's own
 * connection, behind its read: the answer is for the next call). A realtime reader knows only
 * that it caught up (0) once a read found nothing: before that its lag is unknown. */
static int cons_lag(void *impl, sea_lag_t *out, size_t cap) {
  rcons_t *rc = impl;
  for (size_t i = 0; i < rc->nst && i < cap; i++) {
    out[i].stream_key = rc->st[i].key;
    out[i].shard = rc->st[i].shard;
    out[i].lag = rc->st[i].lag_known ? rc->st[i].lag : -1;
    out[i].lag_bytes = -1;
  }
  if (rc->group != NULL && rc->mode != SEA_MODE_REALTIME && rc->prepared && !rc->ended &&
      rc->lag_asking == 0 && cons_up(rc)) {
    for (size_t i = 0; i < rc->nst; i++) {
      const char *argv[] = {"XINFO", "GROUPS", rc->st[i].name};
      size_t lens[] = {5, 6, strlen(rc->st[i].name)};
      if (cons_conn(rc, &rc->st[i])->ac &&
          redisAsyncCommandArgv(cons_conn(rc, &rc->st[i])->ac, lag_cb, (void *)(uintptr_t)i, 3,
                                argv, lens) == REDIS_OK)
        rc->lag_asking++;
    }
  }
  return (int)rc->nst;
}

static void cons_close(void *impl) {
  rcons_t *rc = impl;
  cons_heal_stop(rc);
  for (size_t i = 1; i < rc->nnc; i++)
    if (rc->nc[i]) {
      conn_close(rc->nc[i]);
      rhost->free(rc->nc[i]);
    }
  rhost->free(rc->nc);
  rcl_map_free(&rc->map);
  conn_close(&rc->conn);
  if (rc->resume_timer)
    rhost->timer_stop(rc->resume_timer);
  for (size_t i = 0; i < rc->nheld; i++)
    rhost->batch_release(rc->held[i]);
  rhost->free(rc->held);
  live_remove(rc);
  reap_forget(&rc->reap);
  rhost->free(rc->reap.dead);
  for (size_t i = 0; i < rc->nst; i++) {
    rhost->free(rc->st[i].acks.buf);
    rhost->free(rc->st[i].skips.buf);
  }
  rhost->free(rc->st);
  rhost->free(rc->found);
  rhost->free(rc->keys);
  rhost->free(rc->commits.v);
  rhost->free(rc);
}

/* ------------------------------------------------------------------------------------------- */
/* Streamer and descriptor                                                                      */
/* ------------------------------------------------------------------------------------------- */

/* One node of the URI, [user[:password]@]host:port, into host/port (and the credentials, which
 * the first node carries). */
static int parse_node(sea_runtime_t *rt, rstreamer_t *s, const char *raw, const char *node,
                      char host[256], int *port) {
  const char *at = strrchr(node, '@');
  const char *hp = node;
  if (at) {
    const char *colon = memchr(node, ':', (size_t)(at - node));
    size_t ul = colon ? (size_t)(colon - node) : (size_t)(at - node);
    if (ul >= sizeof s->user || (colon && (size_t)(at - colon - 1) >= sizeof s->pass)) {
      rhost->set_error(rt, R_NAME ": user or password too long in '%s'", raw);
      return SEA_EURI;
    }
    memset(s->user, 0, sizeof s->user);
    memset(s->pass, 0, sizeof s->pass);
    if (colon) {
      memcpy(s->user, node, ul);
      memcpy(s->pass, colon + 1, (size_t)(at - colon - 1));
    } else {
      /* redis://PASSWORD@host: a lone userinfo is the password, as redis-cli -u reads it */
      memcpy(s->pass, node, ul);
    }
    hp = at + 1;
  }
  const char *pc;
  size_t hl;
  if (hp[0] == '[') {
    const char *end = strchr(hp, ']');
    pc = end ? strchr(end, ':') : NULL;
    hl = end ? (size_t)(end - hp - 1) : 0;
    hp++;
  } else {
    pc = strrchr(hp, ':');
    hl = pc ? (size_t)(pc - hp) : strlen(hp);
  }
  uint64_t pn = 0;
  if (pc == NULL || hl == 0 || hl >= 256 || parse_u64(pc + 1, &pn) || pn == 0 || pn > 65535) {
    rhost->set_error(rt, R_NAME ": bad host:port '%s' in '%s'", at ? at + 1 : node, raw);
    return SEA_EURI;
  }
  memcpy(host, hp, hl);
  host[hl] = '\0';
  *port = (int)pn;
  return 0;
}

static void r_disconnect(void *impl) {
  rstreamer_t *s = impl;
  sea_redis_list_abandon(&s->lists);
  rhost->free(s->seeds);
  rhost->free(s);
}

static int r_connect(sea_runtime_t *rt, sea_streamer_t *ss, const sea_uri_t *uri,
                     const sea_options_t *opts, void **impl) {
  (void)ss;
  if (uri->node_count < 1 || uri->node_count > 64) {
    rhost->set_error(rt,
                     R_NAME ": '%s' names %zu nodes; give one, or up to 64 nodes of one Redis "
                            "Cluster (redis://HOST:PORT[,HOST:PORT...]/KEYS)",
                     uri->raw, uri->node_count);
    return SEA_EURI;
  }
  rstreamer_t *s = rhost->calloc(1, sizeof *s);
  if (s == NULL)
    return SEA_ENOMEM;
  s->rt = rt;
  cfg_defaults(&s->cfg);
  int rc = cfg_apply(rt, &s->cfg, opts);
  if (rc) {
    rhost->free(s);
    return rc;
  }
  s->seeds = rhost->calloc(uri->node_count, sizeof *s->seeds);
  if (s->seeds == NULL) {
    rhost->free(s);
    return SEA_ENOMEM;
  }
  s->nseeds = uri->node_count;
  /* the credentials are the first node's (later nodes parse theirs into a scratch copy) */
  rstreamer_t scratch;
  for (size_t i = uri->node_count; i-- > 0;) {
    rc = parse_node(rt, i ? &scratch : s, uri->raw, uri->nodes[i], s->seeds[i].host,
                    &s->seeds[i].port);
    if (rc) {
      r_disconnect(s);
      return rc;
    }
  }
  snprintf(s->host, sizeof s->host, "%s", s->seeds[0].host);
  s->port = s->seeds[0].port;
  snprintf(s->addr, sizeof s->addr, "%s:%d", s->host, s->port);
  *impl = s;
  return 0;
}

/* `seastreamer list`: redis_list.c, on a connection of its own. */
static int r_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  rstreamer_t *s = impl;
  redis_list_target_t t;
  memset(&t, 0, sizeof t);
  snprintf(t.host, sizeof t.host, "%s", s->host);
  t.port = s->port;
  snprintf(t.user, sizeof t.user, "%s", s->user);
  snprintf(t.pass, sizeof t.pass, "%s", s->pass);
  snprintf(t.addr, sizeof t.addr, "%s", s->addr);
  t.db = s->cfg.db;
  redis_list_seed_t seeds[64]; /* r_connect takes at most 64 nodes */
  for (size_t i = 0; i < s->nseeds && i < 64; i++, t.nseeds++) {
    memcpy(seeds[i].host, s->seeds[i].host, sizeof seeds[i].host);
    seeds[i].port = s->seeds[i].port;
  }
  t.seeds = seeds;
  return sea_redis_list(rhost, &s->lists, &t, args, op);
}

static const char *const r_schemes[] = {"redis", NULL};

static const sea_plugin_t r_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = R_NAME,
    .schemes = r_schemes,
    .version = "0.1.0",
    .description = "Redis Streams (hiredis), SeaStreamer layout",
    .caps = SEA_CAP_REALTIME | SEA_CAP_RESUMABLE | SEA_CAP_LOAD_BALANCED | SEA_CAP_SEEK |
            SEA_CAP_REWIND | SEA_CAP_COMMIT | SEA_CAP_SHARDS | SEA_CAP_BINARY,
    .default_port = 6379,
    .connect = r_connect,
    .disconnect = r_disconnect,
    .producer_open = prod_open,
    .producer_send = prod_send,
    .producer_flush = prod_flush,
    .producer_close = prod_close,
    .consumer_open = cons_open,
    .consumer_start = cons_start,
    .consumer_pause = cons_pause,
    .consumer_resume = cons_resume,
    .consumer_seek = cons_seek,
    .consumer_rewind = cons_rewind,
    .consumer_ack = cons_ack,
    .consumer_commit = cons_commit,
    .consumer_close = cons_close,
    .consumer_lag = cons_lag,
    .list = r_list,
};

SEA_PLUGIN_ENTRY(redis) {
  if (host == NULL || host->abi_major != SEA_PLUGIN_ABI_MAJOR)
    return NULL;
  rhost = host;
  return &r_plugin;
}
