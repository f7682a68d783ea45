/* redis_list.c: `seastreamer list redis://HOST:PORT[,HOST:PORT...][/KEYS]`. A one-shot
 * conversation on connections of its own, with hiredis' blocking API on a worker thread
 * (host->queue_work), each call bounded by the timeout: AUTH and SELECT as the backend does (the
 * URI's nodes tried in turn until one answers), then SCAN ... TYPE stream (every stream) or the
 * asked keys and their `key:N` shards, and for each stream XINFO STREAM, XINFO GROUPS and XINFO
 * CONSUMERS. A stream `key:N` (N a number, key a stream key) is shard N of key, as the backend
 * lays out shards; any other stream is shard 0 of its own name.
 *
 * A node that answers CLUSTER SLOTS is a Redis Cluster's: the SCANs then run on every master of
 * its slot map (a replica holds a copy of its master's keys, never keys of its own), and each
 * stream's commands go to the master of its slot, on a connection per node (redis_cluster.c
 * computes the slots and reads the map). A MOVED reads the map again and sends the command once
 * more; an ASK sends ASKING and the command to the named node, once. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "../list_rows.h"
#include "redis_cluster.h"
#include "redis_list.h"

#define RL_TIMEOUT_DEFAULT 5000

typedef struct rl_stream {
  char *name;             /* the Redis key */
  size_t key_len;         /* its stream key is name[0..key_len) */
  int64_t shard;          /* N of key:N, else 0 */
  redisReply *info;       /* XINFO STREAM */
  redisReply *groups;     /* XINFO GROUPS */
  redisReply **consumers; /* XINFO CONSUMERS, per group */
} rl_stream_t;

typedef struct rl_data {
  redis_list_target_t t;
  redis_list_seed_t *seeds; /* t.seeds, our copy */
  uint64_t timeout_ms;
  redisContext *c;   /* where the next command goes: the server, or the cluster node cur */
  char addr[300];    /* its host:port, for messages */
  size_t seed;       /* which of seeds answered */
  rcl_map_t *map;    /* a cluster's slot map; NULL for a plain server */
  redisContext **nc; /* a cluster: a connection per node of map (RCL_NODES_MAX), NULL until used */
  size_t cur;        /* a cluster: the index of c's node */
  rl_stream_t *st;
  size_t n, cap;
} rl_data_t;

static char *rl_dup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* A reply checked: NULL (and the job failed, naming the server) on a lost connection or an
 * error reply (freed). */
static redisReply *rl_checked(ljob_t *j, const char *what, redisReply *r) {
  rl_data_t *d = j->data;
  if (r == NULL) {
    /* hiredis 0.14: a timeout is an I/O error ("Resource temporarily unavailable") */
    ljob_fail(j,
              d->c->err == REDIS_ERR_IO || d->c->err == REDIS_ERR_EOF ? SEA_ECONNECT : SEA_EBACKEND,
              "redis: %s: %s: %s", d->addr, what,
              d->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)
                  ? "no answer within the timeout"
                  : d->c->errstr);
    return NULL;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    ljob_fail(j, SEA_EBACKEND, "redis: %s: %s: %s", d->addr, what, r->str);
    freeReplyObject(r);
    return NULL;
  }
  return r;
}

/* A command, checked. */
static redisReply *rl_cmd(ljob_t *j, const char *what, const char *fmt, ...) {
  rl_data_t *d = j->data;
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(d->c, fmt, ap);
  va_end(ap);
  return rl_checked(j, what, r);
}

/* The value of field name in a reply of field/value pairs (RESP2 array or RESP3 map). */
static const redisReply *rl_field(const redisReply *r, const char *name) {
  if (r == NULL || r->type != REDIS_REPLY_ARRAY)
    return NULL;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply *k = r->element[i];
    if ((k->type == REDIS_REPLY_STRING || k->type == REDIS_REPLY_STATUS) &&
        strcmp(k->str, name) == 0)
      return r->element[i + 1];
  }
  return NULL;
}

static int64_t rl_int(const redisReply *v) {
  if (v == NULL)
    return -1;
  if (v->type == REDIS_REPLY_INTEGER)
    return v->integer;
  if (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS) {
    char *end;
    errno = 0;
    long long n = strtoll(v->str, &end, 10);
    return errno || *end || end == v->str ? -1 : n;
  }
  return -1; /* nil: not known (a group's lag after a deletion) */
}

static const char *rl_text(const redisReply *v) {
  return v && (v->type == REDIS_REPLY_STRING || v->type == REDIS_REPLY_STATUS) ? v->str : NULL;
}

/* An entry [id, fields]'s id. */
static const char *rl_entry_id(const redisReply *e) {
  return e && e->type == REDIS_REPLY_ARRAY && e->elements >= 1 ? rl_text(e->element[0]) : NULL;
}

/* An id's milliseconds as microseconds, and its seq as the backend packs it ((ms << 16) | n,
 * when n < 65536), or -1. */
static int64_t rl_id_us(const char *id) {
  if (id == NULL)
    return -1;
  char *end;
  unsigned long long ms = strtoull(id, &end, 10);
  return *end == '-' && ms < (unsigned long long)INT64_MAX / 1000 ? (int64_t)ms * 1000 : -1;
}

static int64_t rl_id_seq(const char *id) {
  if (id == NULL)
    return -1;
  char *end;
  unsigned long long ms = strtoull(id, &end, 10);
  if (*end != '-')
    return -1;
  unsigned long long n = strtoull(end + 1, &end, 10);
  if (*end || n > 0xFFFF || ms >= (1ull << 47))
    return -1;
  return (int64_t)((ms << 16) | n);
}

static int rl_add(rl_data_t *d, const char *name, size_t len) {
  for (size_t i = 0; i < d->n; i++)
    if (strlen(d->st[i].name) == len && memcmp(d->st[i].name, name, len) == 0)
      return 0; /* SCAN may return a key twice */
  /* libc's realloc: the table is built on the worker thread and freed with free */
  if (SEA_GROW_WITH(realloc, d->st, d->cap, d->n + 1, 16) != 0)
    return SEA_ENOMEM;
  rl_stream_t *s = &d->st[d->n];
  memset(s, 0, sizeof *s);
  if ((s->name = rl_dup(name, len)) == NULL)
    return SEA_ENOMEM;
  d->n++;
  /* key:N with a number N and a valid stream key is shard N of key */
  const char *colon = memchr(name, ':', len);
  s->key_len = len;
  if (colon && colon > name && colon + 1 < name + len) {
    const char *p = colon + 1;
    uint64_t v = 0;
    int ok = (size_t)(name + len - p) <= 18 && memchr(p, ':', (size_t)(name + len - p)) == NULL;
    for (; ok && p < name + len; p++) {
      ok = *p >= '0' && *p <= '9';
      v = v * 10 + (uint64_t)(*p - '0');
    }
    if (ok && lrows_key_valid(name, (size_t)(colon - name))) {
      s->key_len = (size_t)(colon - name);
      s->shard = (int64_t)v;
    }
  }
  return 0;
}

static int rl_cmp(const void *a, const void *b) {
  const rl_stream_t *x = a, *y = b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->name, y->name, n);
  if (c == 0 && x->key_len != y->key_len)
    c = x->key_len < y->key_len ? -1 : 1;
  if (c == 0)
    c = x->shard < y->shard ? -1 : x->shard > y->shard;
  return c;
}

/* SCAN cursor MATCH pattern TYPE stream, to the end (TYPE: Redis 6). */
static int rl_scan(ljob_t *j, const char *pattern) {
  rl_data_t *d = j->data;
  char cursor[32] = "0";
  do {
    redisReply *r = rl_cmd(j, "SCAN", "SCAN %s MATCH %s COUNT 1000 TYPE stream", cursor, pattern);
    if (r == NULL)
      return -1;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || rl_text(r->element[0]) == NULL ||
        r->element[1]->type != REDIS_REPLY_ARRAY) {
      ljob_fail(j, SEA_EBACKEND, "redis: %s: SCAN: unexpected reply", d->addr);
      freeReplyObject(r);
      return -1;
    }
    snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
    for (size_t i = 0; i < r->element[1]->elements; i++) {
      const redisReply *k = r->element[1]->element[i];
      if (k->type == REDIS_REPLY_STRING && rl_add(d, k->str, k->len) != 0) {
        ljob_fail(j, SEA_ENOMEM, "redis: out of memory");
        freeReplyObject(r);
        return -1;
      }
    }
    freeReplyObject(r);
  } while (strcmp(cursor, "0") != 0);
  return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Connections: the server, or a cluster's nodes                                                */
/* ------------------------------------------------------------------------------------------- */

/* A connection to host:port with the timeout on every call, after AUTH (or PING): d->c, named
 * addr in messages from now on. -1 with the job failed; d->c may then hold the failed context,
 * which the caller frees. */
static int rl_open(ljob_t *j, const char *host, int port, const char *addr) {
  rl_data_t *d = j->data;
  snprintf(d->addr, sizeof d->addr, "%s", addr);
  struct timeval tv = {(time_t)(d->timeout_ms / 1000), (suseconds_t)(d->timeout_ms % 1000) * 1000};
  d->c = redisConnectWithTimeout(host, port, tv);
  if (d->c == NULL || d->c->err) {
    ljob_fail(j, SEA_ECONNECT, "redis: cannot connect to %s: %s", d->addr,
              d->c ? d->c->errstr : "out of memory");
    return -1;
  }
  if (redisSetTimeout(d->c, tv) != REDIS_OK) {
    ljob_fail(j, SEA_ECONNECT, "redis: %s: cannot set a timeout: %s", d->addr, d->c->errstr);
    return -1;
  }
  redisReply *r = NULL;
  if (d->t.pass[0] && d->t.user[0])
    r = rl_cmd(j, "AUTH", "AUTH %s %s", d->t.user, d->t.pass);
  else if (d->t.pass[0])
    r = rl_cmd(j, "AUTH", "AUTH %s", d->t.pass);
  else
    r = rl_cmd(j, "PING", "PING");
  if (r == NULL) {
    if (j->status == SEA_EBACKEND)
      j->status = SEA_ECONNECT; /* a wrong password, NOAUTH, not Redis: no usable server */
    return -1;
  }
  freeReplyObject(r);
  return 0;
}

/* The first of the URI's nodes that answers, in turn as the backend's first connection does;
 * the last one's failure when none does. */
static int rl_connect(ljob_t *j) {
  rl_data_t *d = j->data;
  for (size_t i = 0; i < d->t.nseeds; i++) {
    char addr[300];
    if (i == 0)
      snprintf(addr, sizeof addr, "%s", d->t.addr);
    else
      snprintf(addr, sizeof addr, "%s:%d", d->seeds[i].host, d->seeds[i].port);
    j->status = 0; /* only the last node's failure is told */
    j->errmsg[0] = '\0';
    if (rl_open(j, d->seeds[i].host, d->seeds[i].port, addr) == 0) {
      d->seed = i;
      return 0;
    }
    if (d->c)
      redisFree(d->c);
    d->c = NULL;
  }
  if (d->t.nseeds > 1) {
    size_t len = strlen(j->errmsg);
    snprintf(j->errmsg + len, sizeof j->errmsg - len, " (the last of the URI's %zu nodes)",
             d->t.nseeds);
  }
  return -1;
}

/* Is the node a Redis Cluster's? CLUSTER SLOTS answers a node's slot map; a plain server answers
 * an error (cluster support disabled) and is listed alone, as before. */
static int rl_cluster(ljob_t *j) {
  rl_data_t *d = j->data;
  redisReply *r = redisCommand(d->c, "CLUSTER SLOTS");
  if (r == NULL) {
    rl_checked(j, "CLUSTER SLOTS", r);
    return -1;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    freeReplyObject(r);
    if (d->t.nseeds > 1) {
      ljob_fail(j, SEA_EURI,
                "redis: the URI names %zu nodes, but %s is not a Redis Cluster node (a plain "
                "server takes one node: redis://HOST:PORT/KEYS)",
                d->t.nseeds, d->addr);
      return -1;
    }
    return 0;
  }
  rcl_map_t *map = malloc(sizeof *map);
  redisContext **nc = calloc(RCL_NODES_MAX, sizeof *nc);
  int from = -1;
  if (map) {
    rcl_map_init(map);
    from = rcl_node_index(map, d->seeds[d->seed].host, d->seeds[d->seed].port);
  }
  if (nc == NULL || from < 0) {
    if (map)
      rcl_map_free(map);
    free(map);
    free(nc);
    freeReplyObject(r);
    ljob_fail(j, SEA_ENOMEM, "redis: out of memory");
    return -1;
  }
  /* from now on the connections are nc's, at their node's index */
  d->map = map;
  d->nc = nc;
  d->cur = (size_t)from;
  nc[from] = d->c;
  char err[200];
  int rc = rcl_map_load(map, r, (size_t)from, err, sizeof err);
  freeReplyObject(r);
  if (rc != 0) {
    ljob_fail(j, SEA_EBACKEND, "redis: %s: %s", d->addr, err);
    return -1;
  }
  for (size_t i = 0; i < map->nnodes; i++)
    if (map->nodes[i].slots > 0)
      return 0;
  ljob_fail(j, SEA_EBACKEND, "redis: %s is a Redis Cluster node, but no master serves a slot yet",
            d->addr);
  return -1;
}

/* Talk to cluster node idx from now on: its connection, opened (AUTH) when first used. */
static int rl_use(ljob_t *j, size_t idx) {
  rl_data_t *d = j->data;
  const rcl_node_t *n = &d->map->nodes[idx];
  d->cur = idx;
  if (d->nc[idx]) {
    d->c = d->nc[idx];
    snprintf(d->addr, sizeof d->addr, "%s", n->addr);
    return 0;
  }
  int rc = rl_open(j, n->host, n->port, n->addr);
  d->nc[idx] = d->c; /* a failed one too: freed with the others */
  return rc;
}

/* The slot map again, from the node talked to now (after it said MOVED). */
static int rl_reload(ljob_t *j) {
  rl_data_t *d = j->data;
  redisReply *r = rl_cmd(j, "CLUSTER SLOTS", "CLUSTER SLOTS");
  if (r == NULL)
    return -1;
  char err[200];
  int rc = rcl_map_load(d->map, r, d->cur, err, sizeof err);
  freeReplyObject(r);
  if (rc != 0)
    ljob_fail(j, SEA_EBACKEND, "redis: %s: %s", d->addr, err);
  return rc;
}

/* A formatted command, and its reply (NULL when the connection failed: rl_checked says why). */
static redisReply *rl_send(redisContext *c, const char *cmd, int len) {
  void *r = NULL;
  if (redisAppendFormattedCommand(c, cmd, (size_t)len) != REDIS_OK ||
      redisGetReply(c, &r) != REDIS_OK)
    return NULL;
  return r;
}

/* A command on key: to the plain server, or to the master of key's slot. A MOVED reads the map
 * again from the node that said it and sends the command once more, to the node it named (the
 * map it read may still lag behind); an ASK sends ASKING and the command to the node it named,
 * for this command only. One redirection is followed; another is an error as any other. The
 * reply is checked as rl_checked does, but when gone is given, an error saying "no such key"
 * (the stream was deleted since SCAN found it) returns NULL with *gone set and the job going on. */
static redisReply *rl_key_cmd(ljob_t *j, int *gone, const char *what, const char *key,
                              const char *fmt, ...) {
  rl_data_t *d = j->data;
  char *cmd = NULL;
  va_list ap;
  va_start(ap, fmt);
  int len = redisvFormatCommand(&cmd, fmt, ap);
  va_end(ap);
  if (len < 0) {
    ljob_fail(j, SEA_ENOMEM, "redis: out of memory");
    return NULL;
  }
  redisReply *r = NULL;
  int node = d->map ? rcl_route(d->map, key) : -1, asking = 0;
  for (int redirected = 0;; redirected++) {
    if (d->map) {
      if (node < 0) {
        ljob_fail(j, SEA_EBACKEND, "redis: %s: %s %s: no master serves its slot %u", d->addr, what,
                  key, rcl_slot(key, strlen(key)));
        break;
      }
      if (rl_use(j, (size_t)node) != 0)
        break;
      redisReply *a = asking ? rl_cmd(j, "ASKING", "ASKING") : NULL;
      if (asking && a == NULL)
        break;
      if (a)
        freeReplyObject(a);
    }
    r = rl_send(d->c, cmd, len);
    unsigned slot;
    char host[256];
    int port, kind = 0;
    if (d->map && redirected == 0 && r && r->type == REDIS_REPLY_ERROR)
      kind = rcl_redirect(r->str, &slot, host, &port);
    if (kind != RCL_MOVED && kind != RCL_ASK)
      break;
    freeReplyObject(r);
    r = NULL;
    if (kind == RCL_MOVED && rl_reload(j) != 0)
      break;
    int to = rcl_node_index(d->map, host, port);
    if (to < 0) {
      ljob_fail(j, SEA_ENOMEM, "redis: %s: %s %s: too many nodes, or out of memory", d->addr, what,
                key);
      break;
    }
    if (kind == RCL_MOVED)
      rcl_map_set(d->map, slot, (size_t)to);
    node = to;
    asking = kind == RCL_ASK;
  }
  redisFreeCommand(cmd);
  if (j->status != 0) {
    if (r)
      freeReplyObject(r);
    return NULL;
  }
  if (gone && r && r->type == REDIS_REPLY_ERROR && strstr(r->str, "no such key") != NULL) {
    freeReplyObject(r);
    *gone = 1;
    return NULL;
  }
  return rl_checked(j, what, r);
}

/* ------------------------------------------------------------------------------------------- */
/* Streams                                                                                      */
/* ------------------------------------------------------------------------------------------- */

/* SCAN on the server, or on every master of the cluster (not on replicas: their keys are their
 * masters'). */
static int rl_scan_all(ljob_t *j, const char *pattern) {
  rl_data_t *d = j->data;
  if (d->map == NULL)
    return rl_scan(j, pattern);
  for (size_t i = 0; i < d->map->nnodes; i++)
    if (d->map->nodes[i].slots > 0 && (rl_use(j, i) != 0 || rl_scan(j, pattern) != 0))
      return -1;
  return 0;
}

static int rl_find(ljob_t *j) {
  rl_data_t *d = j->data;
  if (j->args.key_count == 0)
    return rl_scan_all(j, "*");
  for (size_t i = 0; i < j->args.key_count; i++) {
    const char *key = j->args.keys[i];
    redisReply *r = rl_key_cmd(j, NULL, "TYPE", key, "TYPE %s", key);
    if (r == NULL)
      return -1;
    int is_stream = rl_text(r) && strcmp(r->str, "stream") == 0;
    freeReplyObject(r);
    if (is_stream && rl_add(d, key, strlen(key)) != 0) {
      ljob_fail(j, SEA_ENOMEM, "redis: out of memory");
      return -1;
    }
    char pattern[300];
    snprintf(pattern, sizeof pattern, "%s:[0-9]*", key);
    if (rl_scan_all(j, pattern) != 0)
      return -1;
  }
  return 0;
}

/* 1 if the stream is gone (deleted since SCAN found it: left out), 0 if described, -1 failed. */
static int rl_describe(ljob_t *j, rl_stream_t *s) {
  int gone = 0;
  s->info = rl_key_cmd(j, &gone, "XINFO STREAM", s->name, "XINFO STREAM %s", s->name);
  if (gone)
    return 1;
  if (s->info == NULL)
    return -1;
  s->groups = rl_key_cmd(j, NULL, "XINFO GROUPS", s->name, "XINFO GROUPS %s", s->name);
  if (s->groups == NULL)
    return -1;
  if (s->groups->elements == 0)
    return 0;
  s->consumers = calloc(s->groups->elements, sizeof *s->consumers);
  if (s->consumers == NULL) {
    ljob_fail(j, SEA_ENOMEM, "redis: out of memory");
    return -1;
  }
  for (size_t g = 0; g < s->groups->elements; g++) {
    const char *name = rl_text(rl_field(s->groups->element[g], "name"));
    if (name && (s->consumers[g] = rl_key_cmd(j, NULL, "XINFO CONSUMERS", s->name,
                                              "XINFO CONSUMERS %s %s", s->name, name)) == NULL)
      return -1;
  }
  return 0;
}

static void rl_rows(ljob_t *j) {
  rl_data_t *d = j->data;
  lrows_t *rows = &j->rows;
  for (size_t i = 0; i < d->n;) {
    size_t e = i;
    int64_t messages = 0, first = -1, last = -1;
    for (; e < d->n && d->st[e].key_len == d->st[i].key_len &&
           memcmp(d->st[e].name, d->st[i].name, d->st[i].key_len) == 0;
         e++) {
      int64_t len = rl_int(rl_field(d->st[e].info, "length"));
      messages = messages < 0 || len < 0 ? -1 : messages + len;
      int64_t f = rl_id_us(rl_entry_id(rl_field(d->st[e].info, "first-entry")));
      int64_t l = rl_id_us(rl_entry_id(rl_field(d->st[e].info, "last-entry")));
      if (f >= 0 && (first < 0 || f < first))
        first = f;
      if (l > last)
        last = l;
    }
    sea_list_row_t *r = lrows_add(rows, SEA_LIST_STREAM);
    if (r == NULL)
      return;
    r->stream = lrows_strn(rows, d->st[i].name, d->st[i].key_len);
    r->shards = (int64_t)(e - i);
    r->messages = messages;
    r->first_ts_us = first;
    r->last_ts_us = last;
    for (size_t k = i; k < e; k++) {
      const rl_stream_t *s = &d->st[k];
      const char *fid = rl_entry_id(rl_field(s->info, "first-entry"));
      const char *lid = rl_entry_id(rl_field(s->info, "last-entry"));
      if ((r = lrows_add(rows, SEA_LIST_SHARD)) == NULL)
        return;
      r->stream = lrows_strn(rows, s->name, s->key_len);
      r->shard = s->shard;
      r->name = lrows_str(rows, s->name);
      r->messages = rl_int(rl_field(s->info, "length"));
      r->first_id = lrows_str(rows, fid);
      r->last_id = lrows_str(rows, lid);
      r->first_seq = rl_id_seq(fid);
      r->last_seq = rl_id_seq(lid);
      r->first_ts_us = rl_id_us(fid);
      r->last_ts_us = rl_id_us(lid);
    }
    i = e;
  }
  for (size_t i = 0; i < d->n; i++) {
    const rl_stream_t *s = &d->st[i];
    for (size_t g = 0; s->groups && g < s->groups->elements; g++) {
      const redisReply *gr = s->groups->element[g];
      const char *gname = rl_text(rl_field(gr, "name"));
      sea_list_row_t *r = lrows_add(rows, SEA_LIST_GROUP);
      if (r == NULL)
        return;
      r->stream = lrows_strn(rows, s->name, s->key_len);
      r->shard = s->shard;
      r->name = lrows_str(rows, s->name);
      r->group = lrows_str(rows, gname);
      r->consumers = rl_int(rl_field(gr, "consumers"));
      r->pending = rl_int(rl_field(gr, "pending"));
      r->lag = rl_int(rl_field(gr, "lag")); /* Redis 7; absent before, nil when unknown */
      r->last_delivered_id = lrows_str(rows, rl_text(rl_field(gr, "last-delivered-id")));
      const redisReply *cs = s->consumers ? s->consumers[g] : NULL;
      for (size_t c = 0; cs && cs->type == REDIS_REPLY_ARRAY && c < cs->elements; c++) {
        const redisReply *cr = cs->element[c];
        if ((r = lrows_add(rows, SEA_LIST_MEMBER)) == NULL)
          return;
        r->stream = lrows_strn(rows, s->name, s->key_len);
        r->shard = s->shard;
        r->name = lrows_str(rows, s->name);
        r->group = lrows_str(rows, gname);
        r->member = lrows_str(rows, rl_text(rl_field(cr, "name")));
        r->pending = rl_int(rl_field(cr, "pending"));
        r->idle_ms = rl_int(rl_field(cr, "idle"));
      }
    }
  }
}

static void rl_work(void *arg) {
  ljob_t *j = arg;
  rl_data_t *d = j->data;
  if (rl_connect(j) != 0)
    return;
  if (d->t.db != 0) { /* a cluster refuses it, and says so */
    redisReply *r = rl_cmd(j, "SELECT", "SELECT %d", d->t.db);
    if (r == NULL)
      return;
    freeReplyObject(r);
  }
  if (rl_cluster(j) != 0 || rl_find(j) != 0)
    return;
  if (d->n > 1)
    qsort(d->st, d->n, sizeof *d->st, rl_cmp);
  size_t kept = 0;
  for (size_t i = 0; i < d->n; i++) {
    int rc = rl_describe(j, &d->st[i]);
    if (rc < 0) { /* keep what rl_after must free: the described ones and this one */
      d->st[kept++] = d->st[i];
      for (size_t k = i + 1; k < d->n; k++)
        free(d->st[k].name);
      d->n = kept;
      return;
    }
    if (rc == 0)
      d->st[kept++] = d->st[i];
    else
      free(d->st[i].name);
  }
  d->n = kept;
  rl_rows(j);
}

static void rl_after(void *arg, int status) {
  ljob_t *j = arg;
  rl_data_t *d = j->data;
  (void)status;
  for (size_t i = 0; i < d->n; i++) {
    rl_stream_t *s = &d->st[i];
    for (size_t g = 0; s->consumers && g < s->groups->elements; g++)
      if (s->consumers[g])
        freeReplyObject(s->consumers[g]);
    free(s->consumers);
    if (s->groups)
      freeReplyObject(s->groups);
    if (s->info)
      freeReplyObject(s->info);
    free(s->name);
  }
  free(d->st);
  if (d->map) { /* d->c is one of the cluster's connections */
    for (size_t i = 0; i < d->map->nnodes; i++)
      if (d->nc[i])
        redisFree(d->nc[i]);
    rcl_map_free(d->map);
    free(d->map);
    free(d->nc);
  } else if (d->c) {
    redisFree(d->c);
  }
  free(d->seeds);
  free(d);
  ljob_finish(j);
}

int sea_redis_list(const sea_host_t *host, struct ljob **jobs, const redis_list_target_t *t,
                   const sea_list_args_t *a, sea_op_t *op) {
  rl_data_t *d = calloc(1, sizeof *d);
  size_t ns = t->nseeds ? t->nseeds : 1;
  if (d == NULL || (d->seeds = calloc(ns, sizeof *d->seeds)) == NULL) {
    free(d);
    return SEA_ENOMEM;
  }
  d->t = *t;
  if (t->nseeds) {
    memcpy(d->seeds, t->seeds, ns * sizeof *d->seeds);
  } else {
    snprintf(d->seeds[0].host, sizeof d->seeds[0].host, "%s", t->host);
    d->seeds[0].port = t->port;
  }
  d->t.seeds = d->seeds;
  d->t.nseeds = ns;
  d->timeout_ms = a->timeout_ms ? a->timeout_ms : RL_TIMEOUT_DEFAULT;
  ljob_t *j = ljob_new(host, a, op, jobs);
  if (j == NULL) {
    free(d->seeds);
    free(d);
    return SEA_ENOMEM;
  }
  j->data = d;
  int rc = host->queue_work(a->rt, rl_work, rl_after, j);
  if (rc != 0) {
    ljob_detach(j);
    j->op = NULL;
    rl_after(j, rc);
    return rc;
  }
  return 0;
}

void sea_redis_list_abandon(struct ljob **jobs) {
  ljob_abandon_all(jobs);
}
