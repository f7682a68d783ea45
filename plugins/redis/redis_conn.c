/* redis_conn.c: one connection of the redis backend: a hiredis async context on the host's loop.
 *
 * hiredis' ev hooks map onto host->watch_*; a host name is resolved on the host's thread pool;
 * the handshake (AUTH, SELECT, CONFIG GET proto-max-bulk-len, PING, CLUSTER SLOTS) runs before
 * the owner hears on_ready; a connection that worked once is retried with backoff for
 * reconnect_ms (on_lost), one that never worked fails (on_fail). The producer
 * (redis_producer.c) and the consumer (redis_consumer.c) embed an rconn_t and own its callbacks;
 * redis_conn_map_ask reads the cluster's slot map again into the connection's map (on_map).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "redis_internal.h"

static void on_io(sea_watch_t *w, int status, int events, void *data);

static void on_conn_timer(sea_timer_t *t, void *data) {
  rconn_t *c = data;
  c->due(c);
}

/* The connection's one timer (made when first needed, closed with the connection) runs due
 * after ms, 0: on the next turn. */
static void conn_arm(rconn_t *c, uint64_t ms, void (*due)(rconn_t *c)) {
  if (c->timer == NULL)
    c->timer = sea_host->timer_init(c->rt, on_conn_timer, c);
  c->due = due;
  sea_host->timer_start(c->timer, ms, 0);
}

static void conn_set_events(rconn_t *c, int ev) {
  if (c->ac == NULL || ev == c->events)
    return;
  c->events = ev;
  if (c->watch == NULL) {
    if (ev == 0)
      return;
    c->watch = sea_host->watch_start(c->rt, c->ac->c.fd, ev, on_io, c);
    return;
  }
  sea_host->watch_update(c->watch, ev);
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
    sea_host->watch_stop(c->watch);
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

void redis_conn_set_addr(rconn_t *c, const char *host, int port) {
  snprintf(c->host, sizeof c->host, "%s", host);
  c->port = port;
  if (strchr(host, ':'))
    snprintf(c->addr, sizeof c->addr, "[%s]:%d", host, port);
  else
    snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
}

/* The connection is gone. Retry if it had worked and the reconnect window is open, else fail. */
static void conn_lost(rconn_t *c, int status, const char *msg) {
  sea_host->timer_stop(c->timer);
  if (!c->ever_ready && c->idx == 0 && c->seed + 1 < c->s->nseeds) {
    /* the first connection: the URI names more nodes of the cluster, try the next one */
    size_t skip = strncmp(msg, R_NAME ": ", sizeof R_NAME + 1) == 0 ? sizeof R_NAME + 1 : 0;
    c->seed++;
    sea_host->log(SEA_LOG_INFO, R_NAME, "%s; trying %s:%d", msg + skip, c->s->seeds[c->seed].host,
                  c->s->seeds[c->seed].port);
    redis_conn_set_addr(c, c->s->seeds[c->seed].host, c->s->seeds[c->seed].port);
    if (c->map && c->map->nnodes > 0) { /* node 0 of the table is where this connection goes */
      rcl_node_t *n = &c->map->nodes[0];
      snprintf(n->host, sizeof n->host, "%s", c->host);
      n->port = c->port;
      snprintf(n->addr, sizeof n->addr, "%s", c->addr);
    }
    c->state = C_BACKOFF;
    conn_arm(c, 0, redis_conn_begin);
    return;
  }
  int was_ready = c->state == C_READY;
  uint64_t now = sea_host->now_ms(c->rt);
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
  sea_host->log(SEA_LOG_INFO, R_NAME, "%s; reconnecting", msg + skip); /* log names the plugin */
  c->state = C_BACKOFF;
  uint64_t delay = 100u << (c->attempt < 5 ? c->attempt : 5);
  if (delay > 2000)
    delay = 2000;
  c->attempt++;
  if (was_ready)
    c->on_lost(c);
  conn_arm(c, delay, redis_conn_begin);
}

/* A fatal error of the handshake (bad password, not Redis): no retry, whatever happened before. */
static void conn_fatal(rconn_t *c, int status, const char *msg) {
  conn_drop(c);
  sea_host->timer_stop(c->timer);
  c->state = C_FAILED;
  c->on_fail(c, status, msg);
}

static void on_io(sea_watch_t *w, int status, int events, void *data) {
  (void)w;
  rconn_t *c = data;
  redisAsyncContext *ac = c->ac;
  if (ac == NULL)
    return;
  if (status < 0) {
    /* libuv stopped the poll handle (EPOLLERR: CLIENT KILL, a reset). A read may still find
     * replies that came before the reset and not the error, and hiredis then only asks to read
     * on, which a stopped watch never does: with nothing else to run, the loop ended and a
     * consumer stopped with status 0 in the middle of its stream. Drop the watch, so that asking
     * to read or write starts a new one, which reports the error again until a read meets it. */
    conn_watch_stop(c);
    events = SEA_WATCH_READABLE | SEA_WATCH_WRITABLE;
  }
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
      sea_host->log(SEA_LOG_WARN, R_NAME, "%s: %s", c->addr, err);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "LOADING", 7) == 0) {
    /* A server that is starting (reading its AOF or RDB) answers LOADING: wait and retry, for
     * up to reconnect_ms, even on a first connection. */
    snprintf(msg, sizeof msg, R_NAME ": %s is loading its data: %s", addr, reply->str);
    int ever = c->ever_ready;
    if (!ever && c->lost_at == 0)
      c->lost_at = sea_host->now_ms(c->rt);
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
  sea_host->timer_stop(c->timer);
  sea_host->log(SEA_LOG_INFO, R_NAME, "%s %s (%s)",
                c->ever_ready ? "reconnected to" : "connected to", c->addr, c->ip);
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
    sea_host->timer_stop(c->timer);
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
    sea_host->free(j);
    return;
  }
  c->job = NULL;
  if (status != 0 || j->rc != 0) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": cannot resolve host '%s' (in %s): %s", c->host, c->addr,
             status ? "lookup canceled" : j->err);
    sea_host->free(j);
    conn_lost(c, SEA_ECONNECT, msg);
    return;
  }
  snprintf(c->ip, sizeof c->ip, "%s", j->ip);
  sea_host->free(j);
  conn_connect_ip(c);
}

static void conn_timeout(rconn_t *c) {
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
  /* A first connection that never answers could not connect (SEA_ECONNECT, exit status 3, as
   * kafka's and `list`'s); one that worked and went silent timed out. */
  conn_lost(c, c->ever_ready ? SEA_ETIMEDOUT : SEA_ECONNECT, msg);
}

static void conn_start_numeric(rconn_t *c) {
  conn_arm(c, c->timeout_ms, conn_timeout); /* the connect timeout */
  conn_connect_ip(c);
}

/* Start one connection attempt: resolve (off the loop) unless numeric, then connect. */
void redis_conn_begin(rconn_t *c) {
  unsigned char buf[sizeof(struct in6_addr)];
  sea_host->timer_stop(c->timer);
  if (inet_pton(AF_INET, c->host, buf) == 1 || inet_pton(AF_INET6, c->host, buf) == 1) {
    snprintf(c->ip, sizeof c->ip, "%s", c->host);
    c->state = C_CONNECTING;
    conn_arm(c, 0, conn_start_numeric);
    return;
  }
  rjob_t *j = sea_host->calloc(1, sizeof *j);
  if (j == NULL) {
    c->state = C_FAILED;
    c->on_fail(c, SEA_ENOMEM, R_NAME ": out of memory");
    return;
  }
  j->conn = c;
  snprintf(j->host, sizeof j->host, "%s", c->host);
  c->state = C_RESOLVING;
  c->job = j;
  conn_arm(c, c->timeout_ms, conn_timeout);
  if (sea_host->queue_work(c->rt, resolve_work, resolve_after, j) != 0) {
    c->job = NULL;
    sea_host->free(j);
    conn_lost(c, SEA_ECONNECT, R_NAME ": cannot queue the host name lookup");
  }
}

void redis_conn_init(rconn_t *c, rstreamer_t *s, sea_runtime_t *rt, void *owner,
                     uint64_t timeout_ms, uint64_t reconnect_ms) {
  memset(c, 0, sizeof *c);
  c->s = s;
  c->rt = rt;
  redis_conn_set_addr(c, s->host, s->port);
  c->owner = owner;
  c->timeout_ms = timeout_ms ? timeout_ms : R_TIMEOUT_DEFAULT;
  c->reconnect_ms = reconnect_ms;
  c->state = C_IDLE;
}

void redis_conn_close(rconn_t *c) {
  c->state = C_CLOSED;
  sea_host->timer_close(c->timer);
  c->timer = NULL;
  if (c->job) {
    c->job->conn = NULL;
    c->job = NULL;
  }
  conn_drop(c);
}

int redis_conn_ready(const rconn_t *c) {
  return c->state == C_READY && c->ac != NULL;
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
    sea_host->log(SEA_LOG_DEBUG, R_NAME, "map refresh at %s: %s", c->addr, err);
    return;
  }
  c->on_map(c);
}

/* Ask one node that is up for the slot map; 0 if asked. */
int redis_conn_map_ask(rconn_t *c) {
  if (!redis_conn_ready(c))
    return -1;
  return redisAsyncCommand(c->ac, slots_cb, NULL, "CLUSTER SLOTS") == REDIS_OK ? 0 : -1;
}

/* Connect again from scratch (what was on the wire is dropped: no callback comes for it). */
void redis_conn_restart(rconn_t *c) {
  sea_host->timer_stop(c->timer);
  if (c->job) {
    c->job->conn = NULL;
    c->job = NULL;
  }
  conn_drop(c);
  c->state = C_IDLE;
  redis_conn_begin(c);
}
