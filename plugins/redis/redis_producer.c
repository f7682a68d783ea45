/* redis_producer.c: the redis backend's producer: XADD, one line of records per node.
 *
 * Each record waits in its node's line until XADD (and, with wait_replicas, a WAIT) answers, then
 * its receipt goes to the host; a lost connection writes the unconfirmed records again once
 * connected (at-least-once). In a cluster, records move on MOVED/ASK and wait (heal) while their
 * slot has no master up. Its connections are rconn_t (redis_conn.c); options are rcfg_t (redis.c).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"

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
  rpnode_t **nodes;        /* [0]: the URI's node; in a cluster, each at its index in map */
  size_t nnodes, capnodes; /* nodes[0..nnodes) are slots (NULL: not made yet) */
  rcl_map_t map;
  unsigned map_seen;
  /* Cluster: records no node takes now (TRYAGAIN, CLUSTERDOWN, a slot without a master), placed
   * again at each map refresh, in order. */
  prec_t *wait_head, *wait_tail;
  sea_timer_t *heal;       /* cluster: refreshes the map while a record waits or a node is down */
  sea_timer_t *wait_timer; /* wait_replicas: writes a WAIT behind what was written this turn */
  int healing, wait_armed;
  uint64_t heal_since;
  uint64_t count; /* records in all lines */
  uint64_t rr;
  int full;
  int failed;
  int down;  /* every record was failed: the connection could not be made or kept */
  char *cmd; /* the RESP of one XADD, reused */
  size_t cmdcap;
} rprod_t;

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
    if (SEA_GROW(pr->nodes, pr->capnodes, idx + 1, 1) != 0)
      return NULL;
    memset(pr->nodes + pr->nnodes, 0, (idx + 1 - pr->nnodes) * sizeof *pr->nodes);
    pr->nnodes = idx + 1;
  }
  rpnode_t *n = sea_host->calloc(1, sizeof *n);
  if (n == NULL)
    return NULL;
  redis_conn_init(&n->conn, pr->s, pr->rt, pr, pr->timeout_ms, pr->cfg.reconnect_ms);
  if (idx < pr->map.nnodes)
    redis_conn_set_addr(&n->conn, pr->map.nodes[idx].host, pr->map.nodes[idx].port);
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
    redis_conn_begin(&n->conn);
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
      redis_conn_close(&n->conn); /* serves nothing now (a master failed over, or a replica) */
  }
}

/* Fail every record: the connection to a node that holds some could not be made or kept. */
static void prod_fail_all(rprod_t *pr, int status, const char *msg) {
  if (!pr->failed) {
    pr->failed = 1;
    sea_host->producer_fail(pr->p, status, "%s", msg);
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
      sea_host->receipt(pr->p, r->token, status, NULL);
      sea_host->free(r);
      r = next;
    }
  }
  pr->count = 0;
}

/* Whether the producer is whole again: nothing waits and every node holding records is up. */
static int prod_whole(const rprod_t *pr) {
  if (pr->wait_head)
    return 0;
  for (size_t i = 0; i < pr->nnodes; i++)
    if (pr->nodes[i] && pr->nodes[i]->head && !redis_conn_ready(&pr->nodes[i]->conn))
      return 0;
  return 1;
}

static void prod_heal_stop(rprod_t *pr) {
  pr->healing = 0;
  sea_host->timer_stop(pr->heal);
}

static void on_prod_heal(sea_timer_t *t, void *data) {
  (void)t;
  rprod_t *pr = data;
  if (prod_whole(pr)) {
    prod_heal_stop(pr);
    return;
  }
  if (sea_host->now_ms(pr->rt) - pr->heal_since > pr->cfg.reconnect_ms) {
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
    if (pr->nodes[i] && redis_conn_map_ask(&pr->nodes[i]->conn) == 0)
      asked = 1;
  if (!asked && pr->nodes[0]->conn.state == C_CLOSED)
    prod_kick(pr, pr->nodes[0]);
}

static void prod_heal_start(rprod_t *pr) {
  if (pr->healing || !pr->map.cluster)
    return;
  if (pr->heal == NULL)
    pr->heal = sea_host->timer_init(pr->rt, on_prod_heal, pr);
  pr->healing = 1;
  pr->heal_since = sea_host->now_ms(pr->rt);
  sea_host->timer_start(pr->heal, 100, 250);
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
      sea_host->log(SEA_LOG_DEBUG, R_NAME, "XADD at %s: %s", c->addr, reply->str);
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
  if (ok) {
    sea_meta_t meta = {.stream_key = r->key,
                       .shard_id = r->shard,
                       .seq = id_pack(ms, sq),
                       .timestamp_us = (int64_t)(ms * 1000)};
    sea_host->receipt(pr->p, r->token, 0, &meta);
  } else {
    const char *why = reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply to XADD";
    if (!pr->failed) {
      char name[R_NAME_MAX];
      stream_name(name, r->key, pr->cfg.shards, r->shard);
      pr->failed = 1;
      sea_host->producer_fail(pr->p, SEA_EBACKEND, R_NAME ": XADD to '%s' at %s failed: %s", name,
                              c->addr, why);
    }
    sea_host->receipt(pr->p, r->token, SEA_EBACKEND, NULL);
  }
  sea_host->free(r);
  if (pr->full && pr->count < pr->cfg.pipeline) {
    pr->full = 0;
    sea_host->producer_ready(pr->p);
  }
}

/* WAIT wait_replicas wait_timeout_ms, written after XADDs: its answer is how many replicas have
 * everything written before it, so it gives the receipts of the records XADD answered before it
 * (all of the node's done line, as replies come in order). Fewer replicas than asked: those
 * receipts fail (the entries are on the master only, which may lose them in a failover). */
static void on_wait_timer(sea_timer_t *t, void *data);

/* A WAIT after ms (0: on the next turn), unless one is already coming. */
static void prod_wait_arm(rprod_t *pr, uint64_t ms) {
  if (pr->wait_armed)
    return;
  if (pr->wait_timer == NULL)
    pr->wait_timer = sea_host->timer_init(pr->rt, on_wait_timer, pr);
  pr->wait_armed = 1;
  sea_host->timer_start(pr->wait_timer, ms, 0);
}

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
  uint64_t now = sea_host->now_ms(pr->rt);
  if (ok) {
    n->short_since = 0;
  } else if (reply->type == REDIS_REPLY_INTEGER && n->done_head) {
    /* Too few replicas now (one is down, or a new master has none yet): ask again a little
     * later, for up to reconnect_ms, before giving up on these records. */
    if (n->short_since == 0) {
      n->short_since = now;
      sea_host->log(SEA_LOG_WARN, R_NAME,
                    "WAIT at %s: %lld of wait_replicas=%llu replicas have the entries; waiting for "
                    "more (up to reconnect_ms)",
                    c->addr, reply->integer, (unsigned long long)pr->cfg.wait_replicas);
    }
    if (now - n->short_since < pr->cfg.reconnect_ms) {
      n->since_wait++;
      prod_wait_arm(pr, 200);
      return;
    }
  }
  if (!ok && !pr->failed && n->done_head) {
    pr->failed = 1;
    if (reply->type == REDIS_REPLY_INTEGER)
      sea_host->producer_fail(pr->p, SEA_EBACKEND,
                              R_NAME ": WAIT at %s: %lld of wait_replicas=%llu replicas had the "
                                     "entries within wait_timeout_ms=%llu ms, still after "
                                     "reconnect_ms=%llu ms",
                              c->addr, reply->integer, (unsigned long long)pr->cfg.wait_replicas,
                              (unsigned long long)pr->cfg.wait_timeout_ms,
                              (unsigned long long)pr->cfg.reconnect_ms);
    else
      sea_host->producer_fail(pr->p, SEA_EBACKEND, R_NAME ": WAIT at %s failed: %s", c->addr,
                              reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
  }
  prec_t *r = n->done_head;
  n->done_head = n->done_tail = NULL;
  while (r) {
    prec_t *next = r->next;
    pr->count--;
    if (ok) {
      sea_meta_t meta = {.stream_key = r->key,
                         .shard_id = r->shard,
                         .seq = id_pack(r->ms, r->sq),
                         .timestamp_us = (int64_t)(r->ms * 1000)};
      sea_host->receipt(pr->p, r->token, 0, &meta);
    } else {
      sea_host->receipt(pr->p, r->token, SEA_EBACKEND, NULL);
    }
    sea_host->free(r);
    r = next;
  }
  if (pr->full && pr->count < pr->cfg.pipeline) {
    pr->full = 0;
    sea_host->producer_ready(pr->p);
  }
}

/* A WAIT behind the XADDs each node was written this loop turn (one per turn and node, not one
 * per message: WAIT holds its connection until the replicas answer). */
static void on_wait_timer(sea_timer_t *t, void *data) {
  (void)t;
  rprod_t *pr = data;
  pr->wait_armed = 0;
  for (size_t i = 0; i < pr->nnodes; i++) {
    rpnode_t *n = pr->nodes[i];
    if (n == NULL || n->since_wait == 0 || !redis_conn_ready(&n->conn))
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
    uint64_t now = (uint64_t)(sea_host->now_us() / 1000);
    uint64_t t = now > pr->cfg.minid_age_ms ? now - pr->cfg.minid_age_ms : 0;
    tkind = "MINID";
    tlen = (size_t)id_format(trim, t, 0);
  }
  size_t need = 128 + nlen + flen + tlen + r->len;
  if (need > pr->cmdcap) {
    char *b = sea_host->realloc(pr->cmd, need);
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
    prod_wait_arm(pr, 0);
  }
  return 0;
}

/* Write every record of n's line not yet on its connection, in order. */
static void prod_write_unsent(rprod_t *pr, rpnode_t *n) {
  while (n->unsent && redis_conn_ready(&n->conn)) {
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
      sea_host->log(SEA_LOG_ERROR, R_NAME,
                    "send to '%s': payload of %zu bytes is over the server's proto-max-bulk-len "
                    "(%llu bytes) at %s",
                    r->key, r->len, (unsigned long long)n->conn.max_bulk, n->conn.addr);
      sea_host->receipt(pr->p, r->token, SEA_ETOOBIG, NULL);
      sea_host->free(r);
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
    redis_conn_close(c);
    prod_fail_all(pr, SEA_EURI, msg);
    return;
  }
  if (pr->map.cluster && pr->map.version != pr->map_seen) {
    if (pr->map_seen == 0)
      sea_host->log(SEA_LOG_INFO, R_NAME, "%s is a node of a Redis Cluster: %zu nodes known",
                    c->addr, pr->map.nnodes);
    pr->map_seen = pr->map.version;
    prod_rehome(pr);
  }
  prod_write_unsent(pr, pr->nodes[c->idx]);
  if (pr->healing && prod_whole(pr))
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
    sea_host->log(SEA_LOG_DEBUG, R_NAME, "%s (it serves no slot now)", msg);
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

int redis_prod_open(void *simpl, sea_producer_t *p, const sea_open_args_t *args, void **impl) {
  rstreamer_t *s = simpl;
  rprod_t *pr = sea_host->calloc(1, sizeof *pr);
  if (pr == NULL)
    return SEA_ENOMEM;
  pr->cfg = s->cfg;
  int rc = redis_cfg_apply(args->rt, &pr->cfg, args->backend_options);
  if (rc) {
    sea_host->free(pr);
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
    sea_host->free(pr->nodes);
    sea_host->free(pr);
    return SEA_ENOMEM;
  }
  redis_conn_begin(&pr->nodes[0]->conn);
  *impl = pr;
  return 0;
}

int redis_prod_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
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
    sea_host->log(SEA_LOG_ERROR, R_NAME,
                  "send to '%s': payload of %zu bytes is over the server's proto-max-bulk-len "
                  "(%llu bytes) at %s",
                  m->meta.stream_key, m->payload.len, (unsigned long long)c0->max_bulk,
                  pr->s->addr);
    return SEA_ETOOBIG;
  }
  prec_t *r = sea_host->alloc(sizeof *r + m->payload.len);
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
  if (pr->wait_head) {
    /* records wait for the cluster to serve their slots again: stay behind them */
    line_append(&pr->wait_head, &pr->wait_tail, r);
    return 0;
  }
  int idx = prod_route(pr, r);
  prod_place(pr, r, idx);
  if (idx >= 0) {
    rpnode_t *n = pr->nodes[idx];
    if (n->unsent == r && redis_conn_ready(&n->conn) && prod_write(pr, n, r) == 0)
      n->unsent = NULL;
    else if (n->conn.state == C_IDLE || n->conn.state == C_CLOSED)
      prod_kick(pr, n);
  }
  return 0;
}

static void free_line(prec_t *r) {
  while (r) {
    prec_t *next = r->next;
    sea_host->free(r);
    r = next;
  }
}

void redis_prod_close(void *impl) {
  rprod_t *pr = impl;
  sea_host->timer_close(pr->heal);
  sea_host->timer_close(pr->wait_timer);
  for (size_t i = 0; i < pr->nnodes; i++) {
    rpnode_t *n = pr->nodes[i];
    if (n == NULL)
      continue;
    redis_conn_close(&n->conn);
    free_line(n->head);
    free_line(n->done_head);
    sea_host->free(n);
  }
  free_line(pr->wait_head);
  sea_host->free(pr->nodes);
  rcl_map_free(&pr->map);
  sea_host->free(pr->cmd);
  sea_host->free(pr);
}
