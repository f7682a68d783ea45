/* redis_discover.c: the redis backend's shard discovery: which KEY:N streams a consumer reads.
 *
 * When shards= is not given, a consumer SCANs every node for KEY:N before its first read, and
 * reads each shard found, or the plain KEY when none is. Works on the consumer's rcons_t
 * (redis_consumer.c) and resumes its pump (redis_cons_pump) when every SCAN has answered.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"

/* The shard number of NAME if it is KEY:N (N decimal, within 32 bits), else -1. */
static int64_t shard_of(const char *key, const char *name) {
  size_t kl = strlen(key);
  uint64_t n;
  if (strncmp(name, key, kl) != 0 || name[kl] != ':' || redis_parse_u64(name + kl + 1, &n) != 0 ||
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
    redis_cons_end(rc, SEA_EOPTION, msg);
    return;
  }
  rstream_t *st = sea_host->calloc(nst, sizeof *st);
  if (st == NULL) {
    redis_cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
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
    sea_host->free(rc->st[i].acks.buf); /* nothing was read yet: none to keep */
    sea_host->free(rc->st[i].skips.buf);
  }
  sea_host->free(rc->st);
  rc->st = st;
  rc->nst = nst;
  rc->discovered = 1;
  sea_host->free(rc->found);
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
  if (reply && !rc->ended && !rc->discovered && redis_cons_cluster_err(rc, c, reply))
    return;
  if (reply == NULL || rc->ended || rc->discovered)
    return;
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_ARRAY) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": cannot look for the shards of '%s' at %s: %s", rc->keys[k],
             c->addr, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply to SCAN");
    redis_cons_end(rc, SEA_EBACKEND, msg);
    return;
  }
  const redisReply *names = reply->element[1];
  for (size_t i = 0; i < names->elements; i++) {
    const redisReply *e = names->element[i];
    int64_t sh = e->type == REDIS_REPLY_STRING ? shard_of(rc->keys[k], e->str) : -1;
    if (sh < 0)
      continue;
    if (SEA_GROW(rc->found, rc->capfound, rc->nfound + 1, 16) != 0) {
      redis_cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
      return;
    }
    rc->found[rc->nfound].key = k;
    rc->found[rc->nfound++].shard = (uint32_t)sh;
  }
  const char *cursor = reply->element[0]->str;
  if (strcmp(cursor, "0") != 0 && scan_send(rc, c, k, cursor) != 0)
    return; /* the connection is going: discovery starts over once it is back */
  if (rc->discovering == 0) {
    discover_done(rc);
    redis_cons_pump(rc);
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
void redis_cons_discover(rcons_t *rc) {
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
