/* redis_cluster.c: key slots, the slot map and redirections of Redis Cluster (see redis_cluster.h),
 * written from the Redis Cluster specification (https://redis.io/docs/reference/cluster-spec/). */
#define _POSIX_C_SOURCE 200809L
#include "redis_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seastreamer/plugin.h> /* SEA_GROW_WITH only: the map is in libc's memory (no host) */

uint16_t rcl_crc16(const void *data, size_t len) {
  const uint8_t *p = data;
  uint16_t crc = 0;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)(p[i] << 8);
    for (int b = 0; b < 8; b++)
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

unsigned rcl_slot(const char *key, size_t len) {
  const char *open = memchr(key, '{', len);
  if (open) {
    size_t rest = len - (size_t)(open - key) - 1;
    const char *close = memchr(open + 1, '}', rest);
    if (close && close > open + 1) /* "{}" is no tag: the whole key is hashed */
      return rcl_crc16(open + 1, (size_t)(close - open - 1)) & (RCL_SLOTS - 1);
  }
  return rcl_crc16(key, len) & (RCL_SLOTS - 1);
}

void rcl_map_init(rcl_map_t *m) {
  memset(m, 0, sizeof *m);
  for (size_t i = 0; i < RCL_SLOTS; i++)
    m->owner[i] = RCL_NONE;
}

void rcl_map_free(rcl_map_t *m) {
  free(m->nodes);
  m->nodes = NULL;
  m->nnodes = m->cap = 0;
}

int rcl_node_index(rcl_map_t *m, const char *host, int port) {
  for (size_t i = 0; i < m->nnodes; i++)
    if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
      return (int)i;
  if (m->nnodes >= RCL_NODES_MAX || strlen(host) >= sizeof m->nodes[0].host)
    return -1;
  if (SEA_GROW_WITH(realloc, m->nodes, m->cap, m->nnodes + 1, 8) != 0)
    return -1;
  rcl_node_t *n = &m->nodes[m->nnodes];
  memset(n, 0, sizeof *n);
  snprintf(n->host, sizeof n->host, "%s", host);
  n->port = port;
  if (strchr(host, ':'))
    snprintf(n->addr, sizeof n->addr, "[%s]:%d", host, port);
  else
    snprintf(n->addr, sizeof n->addr, "%s:%d", host, port);
  return (int)m->nnodes++;
}

static int is_int(const redisReply *r) {
  return r->type == REDIS_REPLY_INTEGER;
}

int rcl_map_load(rcl_map_t *m, const redisReply *r, size_t from, char *err, size_t errlen) {
  if (r->type != REDIS_REPLY_ARRAY) {
    snprintf(err, errlen, "%s", r->type == REDIS_REPLY_ERROR ? r->str : "not a slot map");
    return -1;
  }
  /* Checked whole before anything changes: a bad reply leaves the old map. */
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || !is_int(e->element[0]) ||
        !is_int(e->element[1]) || e->element[0]->integer < 0 ||
        e->element[1]->integer >= RCL_SLOTS || e->element[0]->integer > e->element[1]->integer ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
        e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
        !is_int(e->element[2]->element[1])) {
      snprintf(err, errlen, "CLUSTER SLOTS: range %zu is not [start, end, [host, port, ...]]", i);
      return -1;
    }
  }
  uint16_t owner[RCL_SLOTS];
  for (size_t i = 0; i < RCL_SLOTS; i++)
    owner[i] = RCL_NONE;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i], *node = e->element[2];
    const char *host = node->element[0]->str;
    int idx;
    if (host[0] == '\0' || strcmp(host, "?") == 0) /* "the node you asked" */
      idx = from < m->nnodes ? (int)from : -1;
    else
      idx = rcl_node_index(m, host, (int)node->element[1]->integer);
    if (idx < 0) {
      snprintf(err, errlen, "CLUSTER SLOTS: too many nodes, or out of memory");
      return -1;
    }
    for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++)
      owner[s] = (uint16_t)idx;
  }
  memcpy(m->owner, owner, sizeof owner);
  for (size_t i = 0; i < m->nnodes; i++)
    m->nodes[i].slots = 0;
  for (size_t s = 0; s < RCL_SLOTS; s++)
    if (owner[s] != RCL_NONE)
      m->nodes[owner[s]].slots++;
  m->cluster = 1;
  m->loaded = 1;
  m->version++;
  return 0;
}

void rcl_map_set(rcl_map_t *m, unsigned slot, size_t node) {
  if (slot >= RCL_SLOTS || node >= m->nnodes)
    return;
  if (m->owner[slot] != RCL_NONE)
    m->nodes[m->owner[slot]].slots--;
  m->owner[slot] = (uint16_t)node;
  m->nodes[node].slots++;
  m->version++;
}

int rcl_route(const rcl_map_t *m, const char *name) {
  uint16_t o = m->owner[rcl_slot(name, strlen(name))];
  return o == RCL_NONE ? -1 : (int)o;
}

int rcl_redirect(const char *err, unsigned *slot, char host[256], int *port) {
  int kind;
  if (strncmp(err, "MOVED ", 6) == 0)
    kind = RCL_MOVED;
  else if (strncmp(err, "ASK ", 4) == 0)
    kind = RCL_ASK;
  else if (strncmp(err, "TRYAGAIN", 8) == 0 || strncmp(err, "CLUSTERDOWN", 11) == 0 ||
           strncmp(err, "MASTERDOWN", 10) == 0 || strncmp(err, "LOADING", 7) == 0 ||
           strncmp(err, "UNBLOCKED", 9) == 0)
    return RCL_RETRY;
  else
    return 0;
  const char *p = strchr(err, ' ') + 1;
  char *end;
  unsigned long s = strtoul(p, &end, 10);
  if (end == p || *end != ' ' || s >= RCL_SLOTS)
    return 0;
  p = end + 1;
  const char *colon = strrchr(p, ':');
  if (colon == NULL || colon == p || (size_t)(colon - p) >= 256)
    return 0;
  long pt = strtol(colon + 1, &end, 10);
  if (*end != '\0' || pt <= 0 || pt > 65535)
    return 0;
  size_t hl = (size_t)(colon - p);
  if (p[0] == '[' && hl >= 2 && p[hl - 1] == ']') { /* [v6]:port */
    p++;
    hl -= 2;
  }
  memcpy(host, p, hl);
  host[hl] = '\0';
  *slot = (unsigned)s;
  *port = (int)pt;
  return kind;
}
