/* redis_consumer.c: the redis backend's consumer: XREAD / XREADGROUP, delivery and positions.
 *
 * Prepares where each stream starts (XREVRANGE, XGROUP CREATE/SETID), reads in rounds, turns
 * entries into messages, pauses and resumes, seeks and rewinds, and in a cluster keeps one
 * connection per master up and down together. Groups' acks, commits, claims and lag are in
 * redis_group.c and finding a key's shards in redis_discover.c; they share rcons_t
 * (redis_internal.h) and call back into redis_cons_pump here when done.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis_internal.h"

/* ------------------------------------------------------------------------------------------- */
/* Consumer                                                                                     */
/* ------------------------------------------------------------------------------------------- */

static void cons_redirected(rcons_t *rc, rconn_t *c, const char *err);

/* The connection that serves stream st: in a cluster, the master of its slot on the map. */
rconn_t *redis_cons_conn(rcons_t *rc, const rstream_t *st) {
  if (!rc->map.cluster)
    return &rc->conn;
  int o = rcl_route(&rc->map, st->name);
  return o >= 0 && (size_t)o < rc->nnc && rc->nc[o] ? rc->nc[o] : &rc->conn;
}

/* Whether every connection the consumer needs is up. */
int redis_cons_up(const rcons_t *rc) {
  return rc->map.cluster ? rc->link_up : redis_conn_ready(&rc->conn);
}

/* A cluster error reply that redirects (MOVED, ASK) or asks to retry (TRYAGAIN, CLUSTERDOWN):
 * 1 if it was one, and the consumer goes down and back up on the new map. */
int redis_cons_cluster_err(rcons_t *rc, rconn_t *c, const redisReply *reply) {
  unsigned slot;
  char host[256];
  int port;
  if (!rc->map.cluster || reply->type != REDIS_REPLY_ERROR ||
      !rcl_redirect(reply->str, &slot, host, &port))
    return 0;
  cons_redirected(rc, c, reply->str);
  return 1;
}

/* Load-balanced consumers claim what dead members left pending (claim_idle_ms=0 turns it off). */
static int cons_claims(const rcons_t *rc) {
  return rc->mode == SEA_MODE_LOAD_BALANCED && rc->cfg.claim_idle_ms > 0;
}

void redis_cons_end(rcons_t *rc, int status, const char *msg) {
  if (rc->ended)
    return;
  rc->ended = 1;
  rc->end_status = status;
  snprintf(rc->end_msg, sizeof rc->end_msg, "%s", msg);
  if (rc->pos_op) {
    sea_host->op_done(rc->pos_op, status, "%s", msg);
    rc->pos_op = NULL;
  }
  /* At the end of the stream the connection stays: XACKs on the wire are answered and their
   * commits complete (failing them here made a commit that did happen look failed). */
  if (status != SEA_EOF)
    waits_fail(&rc->commits, status, msg);
  sea_host->consumer_end(rc->c, status, "%s", msg);
}

static rstream_t *cons_find(rcons_t *rc, const char *name, size_t len) {
  for (size_t i = 0; i < rc->nst; i++)
    if (strlen(rc->st[i].name) == len && memcmp(rc->st[i].name, name, len) == 0)
      return &rc->st[i];
  return NULL;
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
size_t redis_cons_deliver(rcons_t *rc, rpart_t *parts, size_t nparts) {
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
  sea_batch_t *b = sea_host->batch_new(total);
  sea_block_t *blk = sea_host->block_new(bytes ? bytes : 1);
  if (b == NULL || blk == NULL) {
    if (b)
      sea_host->batch_release(b);
    sea_host->block_unref(blk);
    redis_cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
    return 0;
  }
  uint8_t *base = sea_host->block_data(blk);
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
          redis_idl_add(&st->skips, ms, sq);
        continue;
      }
      if (at_most_once)
        redis_idl_add(&st->acks, ms, sq);
      sea_message_t *m = &b->msgs[b->count++];
      memset(m, 0, sizeof *m);
      size_t len = 0;
      if (p->type == REDIS_REPLY_STRING || p->type == REDIS_REPLY_STATUS) {
        len = p->len;
        memcpy(base + off, p->str, len);
      }
      m->payload.data = base + off;
      m->payload.len = len;
      m->payload.block = sea_host->block_ref(blk);
      off += len;
      m->meta.stream_key = st->key;
      m->meta.shard_id = st->shard;
      m->meta.seq = id_pack(ms, sq);
      m->meta.timestamp_us = (int64_t)(ms * 1000);
      m->backend_pos = m->meta.seq;
    }
  }
  sea_host->block_unref(blk);
  size_t n = b->count;
  if (n == 0) {
    sea_host->batch_release(b);
  } else {
    /* (paused: a read was on the wire when pause came; the host holds it until resume) */
    sea_host->deliver(rc->c, b);
  }
  if (group && !rc->ended)
    for (size_t i = 0; i < nparts; i++) {
      rstream_t *st = parts[i].st;
      redis_cons_send_xack(rc, st, &st->skips);
      if (at_most_once)
        redis_cons_send_xack(rc, st, &st->acks);
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
  if (to == NULL || !redis_conn_ready(to))
    return 0; /* not a master we are connected to: wait the move out (cons_redirected) */
  int before = rc->reading;
  for (size_t i = 0; i < rc->nst; i++)
    if (rcl_slot(rc->st[i].name, strlen(rc->st[i].name)) == slot)
      cons_send_read_one(rc, (long)i, 0, to);
  if (rc->reading == before) /* nothing sent: the round may be over */
    return 0;
  sea_host->log(SEA_LOG_DEBUG, R_NAME, "read: %s; asking %s", reply->str, to->addr);
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
      redis_cons_pump(rc); /* an answer from before a seek or rewind */
    return;
  }
  char msg[1400];
  if (cons_read_ask(rc, reply) || redis_cons_cluster_err(rc, c, reply))
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
    redis_cons_end(rc, SEA_EBACKEND, msg);
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
        n += redis_cons_deliver(rc, parts, np);
        np = 0;
        if (rc->ended)
          return;
      }
    }
    n += redis_cons_deliver(rc, parts, np);
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
      redis_cons_pump(rc);
      return;
    }
    redis_cons_end(rc, SEA_EOF, R_NAME ": end of stream");
    return;
  }
  redis_cons_pump(rc);
}

static void cons_prepared(rcons_t *rc) {
  rc->prepared = 1;
  char names[512];
  size_t off = 0;
  names[0] = '\0';
  for (size_t i = 0; i < rc->nst && off < sizeof names; i++)
    off += (size_t)snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "", rc->st[i].name);
  if (rc->mode == SEA_MODE_REALTIME)
    sea_host->log(SEA_LOG_INFO, R_NAME, "reading %s at %s (realtime)", names, rc->s->addr);
  else
    sea_host->log(SEA_LOG_INFO, R_NAME, "group '%s' at %s: member '%s' (%s) reads %s", rc->group,
                  rc->s->addr, rc->cname,
                  rc->mode == SEA_MODE_LOAD_BALANCED ? "load-balanced" : "resumable", names);
  if (rc->pos_op && !rc->setid_pending) {
    sea_op_t *op = rc->pos_op;
    rc->pos_op = NULL;
    sea_host->op_done(op, 0, NULL);
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
  if (redis_cons_cluster_err(rc, c, reply))
    return;
  if (is_type) {
    /* TYPE name: a key of another type would fail every read; say which key it is */
    if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "stream") != 0 &&
        strcmp(reply->str, "none") != 0) {
      char msg[1400];
      snprintf(msg, sizeof msg, R_NAME ": key '%s' at %s holds a %s, not a stream (WRONGTYPE)",
               st->name, c->addr, reply->str);
      redis_cons_end(rc, SEA_EBACKEND, msg);
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
      redis_cons_end(rc, SEA_EBACKEND, msg);
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
    redis_cons_pump(rc);
  }
}

/* Sends argv (NUL-terminated strings) on the consumer's connection; 1 if it was queued. */
int redis_cons_send_argv(rcons_t *rc, const rstream_t *st, redisCallbackFn *cb, size_t i, int argc,
                         const char **argv) {
  size_t lens[8];
  for (int k = 0; k < argc; k++)
    lens[k] = strlen(argv[k]);
  rconn_t *c = redis_cons_conn(rc, st);
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
    if (redis_cons_conn(rc, &rc->st[i])->ac &&
        redisAsyncCommand(redis_cons_conn(rc, &rc->st[i])->ac, prep_cb,
                          (void *)(((uintptr_t)1 << 24) | i), "TYPE %s",
                          rc->st[i].name) == REDIS_OK)
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
        rc->preparing += redis_cons_send_argv(rc, st, prep_cb, i, 6, argv);
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
      rc->preparing += redis_cons_send_argv(rc, st, prep_cb, i, 6, argv);
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
    rc->preparing += redis_cons_send_argv(rc, st, prep_cb, i, 5, argv);
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
  const char **argv = sea_host->alloc(max * sizeof *argv);
  size_t *lens = sea_host->alloc(max * sizeof *lens);
  char *ids = sea_host->alloc(n * R_ID_MAX);
  if (argv == NULL || lens == NULL || ids == NULL) {
    sea_host->free(argv);
    sea_host->free(lens);
    sea_host->free(ids);
    redis_cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
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
  rconn_t *c = ask ? ask : node < 0 ? &rc->conn : redis_cons_conn(rc, &rc->st[first]);
  /* ASK: the node takes a command on a slot it is importing only right after ASKING */
  if (ask && c->ac && redisAsyncCommand(c->ac, NULL, NULL, "ASKING") != REDIS_OK)
    c = NULL;
  if (c && c->ac &&
      redisAsyncCommandArgv(c->ac, read_cb, (void *)(uintptr_t)rc->gen, argc, argv, lens) ==
          REDIS_OK)
    rc->reading++;
  sea_host->free(argv);
  sea_host->free(lens);
  sea_host->free(ids);
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
  unsigned char *last = idle ? sea_host->calloc(rc->nst, 1) : NULL;
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
  sea_host->free(last);
}

void redis_cons_pump(rcons_t *rc) {
  if (rc->ended || !rc->started || rc->paused || rc->reading || rc->preparing || !redis_cons_up(rc))
    return;
  if (rc->discover && !rc->discovered) {
    if (rc->discovering == 0)
      redis_cons_discover(rc);
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
    if (redis_reap_step(rc))
      return;
  } else if (cons_claims(rc)) {
    /* after our own pending entries (a pass before would deliver what it claims twice), then
     * every claim_idle_ms / 2, and before a stop_at_end consumer reports the end */
    int history = 0;
    for (size_t i = 0; i < rc->nst; i++)
      history |= rc->st[i].history;
    uint64_t now = sea_host->now_ms(rc->conn.rt);
    if (!history && (rc->reap_wanted || now >= rc->next_claim)) {
      uint64_t every = rc->cfg.claim_idle_ms / 2;
      rc->next_claim = now + (every < 100 ? 100 : every);
      rc->reap_wanted = 0;
      redis_reap_begin(rc);
      if (redis_reap_step(rc))
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
    redis_cons_send_xack(rc, &rc->st[i], &rc->st[i].skips);
    if (rc->cfg.ack != ACK_NONE)
      redis_cons_send_xack(rc, &rc->st[i], &rc->st[i].acks);
  }
  redis_cons_pump(rc);
}

/* Everything on the wire is lost (one connection, or the cluster's, which go down together). */
static void cons_went_down(rcons_t *rc) {
  rc->reading = 0;
  rc->discovering = 0; /* unanswered SCANs: discovery starts over once connected */
  rc->lag_asking = 0;
  redis_reap_stop(
      rc); /* a claim pass starts over, and a stop_at_end consumer runs one before its end */
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
    /* A failover, a moved slot, or a server that restarts: the run goes on (reconnecting; a
     * server that stays away fails the consumer after reconnect_ms), and what the commit covered
     * comes back as pending entries, delivered again (duplicates), as after a Kafka group's
     * rebalance. A failed commit would stop a pipeline that recovers by itself. */
    char msg[sizeof rc->s->addr + 160];
    snprintf(msg, sizeof msg,
             R_NAME ": commit not done, %s %s %s before XACK was answered; the entries will be "
                    "delivered again",
             rc->map.cluster ? "the cluster at" : "the connection to", rc->s->addr,
             rc->map.cluster ? "changed" : "was lost");
    sea_host->log(SEA_LOG_WARN, R_NAME, "%s", msg + sizeof R_NAME + 1);
    waits_fail(&rc->commits, SEA_ECANCELED, msg);
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
    if (SEA_GROW(rc->nc, rc->capnc, idx + 1, 1) != 0)
      return NULL;
    memset(rc->nc + rc->nnc, 0, (idx + 1 - rc->nnc) * sizeof *rc->nc);
    rc->nnc = idx + 1;
  }
  rconn_t *c = idx == 0 ? &rc->conn : sea_host->calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  if (idx > 0) {
    redis_conn_init(c, rc->s, rc->conn.rt, rc, rc->conn.timeout_ms, rc->cfg.reconnect_ms);
    redis_conn_set_addr(c, rc->map.nodes[idx].host, rc->map.nodes[idx].port);
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

static void cons_heal_stop(rcons_t *rc) {
  rc->healing = 0;
  sea_host->timer_stop(rc->heal);
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
        redis_conn_close(rc->nc[i]); /* a master that failed over, or a replica */
      continue;
    }
    rconn_t *c = cons_node(rc, i);
    if (c == NULL) {
      redis_cons_end(rc, SEA_ENOMEM, R_NAME ": out of memory");
      return;
    }
    if (c->state == C_IDLE || c->state == C_CLOSED) {
      c->state = C_IDLE;
      redis_conn_begin(c);
    }
    if (!redis_conn_ready(c))
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
  if (sea_host->now_ms(rc->conn.rt) - rc->heal_since > rc->cfg.reconnect_ms) {
    cons_heal_stop(rc);
    char msg[600];
    snprintf(msg, sizeof msg,
             R_NAME ": the cluster at %s did not have a connected master for every stream "
                    "within reconnect_ms=%llu ms",
             rc->s->addr, (unsigned long long)rc->cfg.reconnect_ms);
    redis_cons_end(rc, SEA_ECONNECT, msg);
    return;
  }
  int asked = 0;
  for (size_t i = 0; i < rc->nnc; i++)
    if (rc->nc[i] && redis_conn_map_ask(rc->nc[i]) == 0)
      asked = 1;
  if (!asked && rc->conn.state == C_CLOSED) {
    rc->conn.state = C_IDLE; /* nobody to ask: the URI's node again */
    redis_conn_begin(&rc->conn);
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
        redis_conn_restart(c);
    }
  }
  if (!rc->healing) {
    if (rc->heal == NULL)
      rc->heal = sea_host->timer_init(rc->conn.rt, on_cons_heal, rc);
    rc->healing = 1;
    rc->heal_since = sea_host->now_ms(rc->conn.rt);
    sea_host->timer_start(rc->heal, 100, 250);
  }
}

static void cons_redirected(rcons_t *rc, rconn_t *c, const char *err) {
  unsigned slot;
  char host[256];
  int port;
  int kind = rcl_redirect(err, &slot, host, &port);
  sea_host->log(SEA_LOG_INFO, R_NAME, "%s answered %s; reading the slot map again", c->addr, err);
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
        redis_conn_restart(rc->nc[i]);
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
      redis_conn_close(c);
      redis_cons_end(rc, SEA_EURI, msg);
      return;
    }
    cons_up_again(rc);
    return;
  }
  if (rc->map_seen == 0 && !rc->link_up)
    sea_host->log(SEA_LOG_INFO, R_NAME, "%s is a node of a Redis Cluster: %zu nodes known", c->addr,
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
    sea_host->log(SEA_LOG_DEBUG, R_NAME, "%s (it serves no slot now)", msg);
    return;
  }
  redis_cons_end(rc, status, msg);
}

int redis_cons_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *args, void **impl) {
  rstreamer_t *s = simpl;
  sea_runtime_t *rt = args->rt;
  rcons_t *rc = sea_host->calloc(1, sizeof *rc);
  if (rc == NULL)
    return SEA_ENOMEM;
  rc->cfg = s->cfg;
  int err = redis_cfg_apply(rt, &rc->cfg, args->backend_options);
  if (err) {
    sea_host->free(rc);
    return err;
  }
  if (args->key_count == 0) {
    sea_host->set_error(rt, R_NAME
                        ": a consumer needs stream keys in the URI (redis://HOST/KEY1,KEY2)");
    sea_host->free(rc);
    return SEA_EKEY;
  }
  rc->s = s;
  rc->c = c;
  rc->mode = args->mode;
  rc->group = args->group;
  if (rc->mode != SEA_MODE_REALTIME && rc->group == NULL)
    rc->group = sea_host->stream_key("seastreamer", 11);
  if (rc->cfg.consumer[0] && rc->mode == SEA_MODE_RESUMABLE)
    snprintf(rc->cname, sizeof rc->cname, "%s", rc->cfg.consumer);
  else if (rc->mode == SEA_MODE_RESUMABLE)
    snprintf(rc->cname, sizeof rc->cname, "%s", rc->group);
  else {
    /* load-balanced: unique per process and per consumer */
    static unsigned counter;
    char hn[64];
    redis_host_name(hn);
    snprintf(rc->cname, sizeof rc->cname, "%s%s%s-%ld-%llx-%u", rc->cfg.consumer,
             rc->cfg.consumer[0] ? "-" : "", hn, (long)getpid(),
             (unsigned long long)sea_host->now_us(), ++counter);
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
    sea_host->set_error(rt, R_NAME ": too many streams (%zu keys x %u shards)", args->key_count,
                        shards);
    sea_host->free(rc);
    return SEA_EOPTION;
  }
  rc->st = sea_host->calloc(rc->nst, sizeof *rc->st);
  if (rc->st == NULL) {
    sea_host->free(rc);
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
  rc->keys = sea_host->calloc(args->key_count, sizeof *rc->keys);
  if (rc->keys == NULL) {
    sea_host->free(rc->st);
    sea_host->free(rc);
    return SEA_ENOMEM;
  }
  memcpy(rc->keys, args->keys, args->key_count * sizeof *rc->keys);
  rc->nkeys = args->key_count;
  rc->discover = !rc->cfg.shards_set;
  redis_conn_init(&rc->conn, s, rt, rc, args->timeout_ms, rc->cfg.reconnect_ms);
  rc->conn.on_ready = cons_on_ready;
  rc->conn.on_lost = cons_on_lost;
  rc->conn.on_fail = cons_on_fail;
  rc->conn.on_map = cons_on_map;
  rc->conn.map = &rc->map;
  rcl_map_init(&rc->map);
  if (rcl_node_index(&rc->map, s->host, s->port) != 0 || cons_node(rc, 0) == NULL) {
    rcl_map_free(&rc->map);
    sea_host->free(rc->nc);
    sea_host->free(rc->keys);
    sea_host->free(rc->st);
    sea_host->free(rc);
    return SEA_ENOMEM;
  }
  if (rc->mode == SEA_MODE_LOAD_BALANCED)
    redis_live_add(rc);
  *impl = rc;
  return 0;
}

int redis_cons_start(void *impl) {
  rcons_t *rc = impl;
  rc->started = 1;
  redis_conn_begin(&rc->conn);
  return 0;
}

int redis_cons_pause(void *impl) {
  rcons_t *rc = impl;
  rc->paused = 1;
  return 0;
}

int redis_cons_resume(void *impl) {
  rcons_t *rc = impl;
  rc->paused = 0;
  redis_cons_pump(rc);
  return 0;
}

static int cons_reposition(rcons_t *rc, int kind, uint64_t arg, sea_op_t *op) {
  if (rc->pos_op)
    return SEA_EBUSY;
  rc->pos_kind = kind;
  rc->pos_arg = arg;
  rc->gen++;
  redis_reap_stop(rc); /* our pending entries are read first again; a new pass follows them */
  if (rc->mode == SEA_MODE_REALTIME)
    rc->prepared = 0;
  else
    rc->setid_pending = 1; /* a group's position belongs to the group: move it */
  rc->pos_op = op;
  redis_cons_pump(rc);
  return 0;
}

int redis_cons_seek(void *impl, int64_t ts_us, sea_op_t *op) {
  return cons_reposition(impl, P_TIME, (uint64_t)(ts_us / 1000), op);
}

int redis_cons_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  int kind = pos.kind == SEA_POS_BEGINNING ? P_BEGIN : pos.kind == SEA_POS_END ? P_END : P_AT;
  return cons_reposition(impl, kind, pos.seq, op);
}

void redis_cons_close(void *impl) {
  rcons_t *rc = impl;
  sea_host->timer_close(rc->heal);
  for (size_t i = 1; i < rc->nnc; i++)
    if (rc->nc[i]) {
      redis_conn_close(rc->nc[i]);
      sea_host->free(rc->nc[i]);
    }
  sea_host->free(rc->nc);
  rcl_map_free(&rc->map);
  redis_conn_close(&rc->conn);
  redis_live_remove(rc);
  redis_reap_forget(&rc->reap);
  sea_host->free(rc->reap.dead);
  for (size_t i = 0; i < rc->nst; i++) {
    sea_host->free(rc->st[i].acks.buf);
    sea_host->free(rc->st[i].skips.buf);
  }
  sea_host->free(rc->st);
  sea_host->free(rc->found);
  sea_host->free(rc->keys);
  sea_host->free(rc->commits.v);
  sea_host->free(rc);
}
