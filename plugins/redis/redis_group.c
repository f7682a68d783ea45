/* redis_group.c: the redis backend's consumer groups: who is gone, acks and commits, claims, lag.
 *
 * Which members of a load-balanced group are gone (alive in this process, or a dead process on
 * this host); XACK of what the user acked, once committed (nothing is acked before its consumer
 * is done with it); claiming the entries dead members left pending (XPENDING, XCLAIM); and the
 * group's lag (XINFO GROUPS). Works on the consumer's rcons_t (redis_consumer.c) and goes back
 * to its pump (redis_cons_pump) after each step.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis_internal.h"

/* ---- Which members of a load-balanced group are gone ---- */

/* The load-balanced consumers open in this process, by name (a process may run several
 * runtimes on several threads, hence the lock). */
static pthread_mutex_t r_live_mu = PTHREAD_MUTEX_INITIALIZER;
static rcons_t *r_live;

void redis_live_add(rcons_t *rc) {
  pthread_mutex_lock(&r_live_mu);
  rc->live_next = r_live;
  r_live = rc;
  pthread_mutex_unlock(&r_live_mu);
}

void redis_live_remove(rcons_t *rc) {
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
void redis_host_name(char hn[64]) {
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
 * (see redis_cons_open) with HOST this host (hn), and either PID is this process and none of its
 * open consumers has that name (it was closed), or no process PID runs. 0 if it may be alive (it
 * runs, or it is of another host, or the name is not of that form). */
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
  if (redis_cons_cluster_err(rc, c, reply))
    return; /* the XACK did not happen: its entries are delivered again */
  if (reply->type == REDIS_REPLY_ERROR) {
    char msg[1400];
    snprintf(msg, sizeof msg, R_NAME ": XACK in group '%s' at %s failed: %s", rc->group,
             rc->s->addr, reply->str);
    /* also after the end (redis_cons_end is then a no-op) */
    waits_fail(&rc->commits, SEA_EBACKEND, msg);
    redis_cons_end(rc, SEA_EBACKEND, msg);
    return;
  }
  cons_check_commits(rc);
}

/* Most ids in one XACK: a commit after a large backlog is split into commands of this size. */
#define R_XACK_MAX 10000

/* XACK key group id... for every id of l, which is then empty. Keeps l if not connected. */
void redis_cons_send_xack(rcons_t *rc, rstream_t *st, idlist_t *l) {
  rconn_t *conn = redis_cons_conn(rc, st);
  if (l->n == 0 || !redis_conn_ready(conn))
    return;
  size_t most = l->n < R_XACK_MAX ? l->n : R_XACK_MAX;
  const char **argv = sea_host->alloc((most + 3) * sizeof *argv);
  size_t *lens = sea_host->alloc((most + 3) * sizeof *lens);
  if (argv == NULL || lens == NULL) {
    sea_host->free(argv);
    sea_host->free(lens);
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
  sea_host->free(argv);
  sea_host->free(lens);
}

int redis_idl_add(idlist_t *l, uint64_t ms, uint64_t sq) {
  char id[R_ID_MAX];
  size_t n = (size_t)id_format(id, ms, sq) + 1;
  if (SEA_GROW(l->buf, l->cap, l->len + n, 1024) != 0)
    return SEA_ENOMEM;
  memcpy(l->buf + l->len, id, n);
  l->len += n;
  l->n++;
  return 0;
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
    sea_host->log(SEA_LOG_DEBUG, R_NAME, "removing a gone member: %s", reply->str);
}

void redis_reap_forget(rreap_t *R) {
  for (size_t i = 0; i < R->ndead; i++)
    sea_host->free(R->dead[i]);
  R->ndead = R->cur = 0;
  R->member_claimed = 0;
  snprintf(R->start, sizeof R->start, "-");
}

void redis_reap_stop(rcons_t *rc) {
  redis_reap_forget(&rc->reap);
  rc->reap.active = 0;
}

static void reap_member_done(rcons_t *rc) {
  rreap_t *R = &rc->reap;
  if (R->member_claimed)
    sea_host->log(SEA_LOG_INFO, R_NAME,
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
    redis_cons_pump(rc);
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
    redis_host_name(hn);
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
          redis_cons_send_argv(rc, st, forget_cb, 0, 6, argv);
        }
        continue;
      }
      if (!gone && (idle < 0 || (uint64_t)idle <= rc->cfg.claim_idle_ms))
        continue; /* alive, or may be: its entries stay its own */
      if (SEA_GROW(R->dead, R->capdead, R->ndead + 1, 8) != 0)
        break; /* the next pass tries again */
      size_t nl = strlen(name) + 1;
      char *copy = sea_host->alloc(nl);
      if (copy == NULL)
        break;
      memcpy(copy, name, nl);
      R->dead[R->ndead++] = copy;
    }
  } else if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOGROUP", 7) != 0 &&
             !rc->reap_warned) {
    rc->reap_warned = 1;
    sea_host->log(SEA_LOG_WARN, R_NAME,
                  "cannot list the members of group '%s' on '%s' at %s (entries left by gone "
                  "members are not claimed): %s",
                  rc->group, st->name, rc->s->addr, reply->str);
  }
  R->phase = RP_MEMBERS;
  R->cur = 0;
  snprintf(R->start, sizeof R->start, "-");
  redis_cons_pump(rc);
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
    size_t n = redis_cons_deliver(rc, &part, 1);
    st->ms = kms;
    st->sq = ksq;
    R->claimed += n;
    R->member_claimed += n;
    if (rc->ended)
      return;
  } else {
    sea_host->log(SEA_LOG_WARN, R_NAME, "XCLAIM on '%s' in group '%s' at %s: %s", st->name,
                  rc->group, rc->s->addr,
                  reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    R->last_page = 1; /* leave this member to the next pass */
  }
  if (R->last_page)
    reap_member_done(rc);
  redis_cons_pump(rc);
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
    sea_host->log(SEA_LOG_WARN, R_NAME, "XPENDING on '%s' in group '%s' at %s: %s", st->name,
                  rc->group, rc->s->addr, reply->str);
  const char **argv = k ? sea_host->alloc((k + 5) * sizeof *argv) : NULL;
  size_t *lens = k ? sea_host->alloc((k + 5) * sizeof *lens) : NULL;
  if (k == 0 || argv == NULL || lens == NULL) {
    sea_host->free(argv);
    sea_host->free(lens);
    reap_member_done(rc); /* nothing (more) pending with it, or out of memory: the next pass */
    redis_cons_pump(rc);
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
  int sent = argc > 5 && redis_cons_conn(rc, st)->ac &&
             redisAsyncCommandArgv(redis_cons_conn(rc, st)->ac, reap_claim_cb, NULL, argc, argv,
                                   lens) == REDIS_OK;
  sea_host->free(argv);
  sea_host->free(lens);
  if (sent) {
    rc->reading = 1;
    return;
  }
  if (argc == 5)
    reap_member_done(rc);
  redis_cons_pump(rc);
}

/* Send the pass's next command; 1 if one is on the wire (its answer pumps again), 0 once the
 * pass is over. */
int redis_reap_step(rcons_t *rc) {
  rreap_t *R = &rc->reap;
  while (R->st < rc->nst) {
    rstream_t *st = &rc->st[R->st];
    if (R->phase == RP_INFO) {
      const char *argv[] = {"XINFO", "CONSUMERS", st->name, rc->group};
      if (redis_cons_send_argv(rc, st, reap_info_cb, 0, 4, argv))
        rc->reading = 1;
      return 1; /* or the connection is going: cons_on_lost starts over */
    }
    if (R->cur < R->ndead) {
      char count[24];
      snprintf(count, sizeof count, "%u", rc->batch);
      const char *argv[] = {"XPENDING", st->name, rc->group, R->start, "+", count, R->dead[R->cur]};
      if (redis_cons_send_argv(rc, st, reap_pending_cb, 0, 7, argv))
        rc->reading = 1;
      return 1;
    }
    redis_reap_forget(R);
    R->st++;
    R->phase = RP_INFO;
  }
  R->active = 0;
  rc->reap_clean = R->claimed == 0;
  return 0;
}

void redis_reap_begin(rcons_t *rc) {
  rreap_t *R = &rc->reap;
  redis_reap_forget(R);
  R->active = 1;
  R->st = 0;
  R->phase = RP_INFO;
  R->claimed = 0;
}
int redis_cons_ack(void *impl, const sea_message_t *m) {
  rcons_t *rc = impl;
  if (rc->cfg.ack != ACK_MANUAL)
    return 0; /* at-most-once: acked when read; none: NOACK */
  for (size_t i = 0; i < rc->nst; i++) {
    rstream_t *st = &rc->st[i];
    if (st->key == m->meta.stream_key && st->shard == m->meta.shard_id)
      return redis_idl_add(&st->acks, m->backend_pos >> 16, m->backend_pos & 0xffff);
  }
  return SEA_EKEY;
}

int redis_cons_commit(void *impl, sea_op_t *op) {
  rcons_t *rc = impl;
  if (rc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  int unsent = 0;
  size_t n = 0;
  for (size_t i = 0; i < rc->nst; i++)
    n += rc->st[i].acks.n + rc->st[i].skips.n;
  if (n > 0)
    sea_host->log(SEA_LOG_INFO, R_NAME, "commit: acknowledging %zu entr%s of group '%s' (XACK)", n,
                  n == 1 ? "y" : "ies", rc->group);
  for (size_t i = 0; i < rc->nst; i++) {
    rstream_t *st = &rc->st[i];
    redis_cons_send_xack(rc, st, &st->skips);
    redis_cons_send_xack(rc, st, &st->acks);
    unsent |= st->acks.n > 0 || st->skips.n > 0;
  }
  if (unsent && rc->ended && rc->end_status != SEA_EOF) {
    /* The consumer failed (it gave up reconnecting): these acks can never go; their entries stay
     * pending, delivered again to the group. (Answering SEA_EBUSY here had the pipeline try its
     * last commit again for 25 s, then spin.) */
    sea_host->op_done(op, rc->end_status,
                      R_NAME ": commit not done: the consumer ended (%s); the entries it did not "
                             "acknowledge stay pending and are delivered again",
                      rc->end_msg);
    return 0;
  }
  if (unsent) {
    /* Reconnecting (one server), or a cluster failing over or moving a slot: the acks stay and
     * go out once it is back (cons_up_again). SEA_EBUSY: the pipeline commits again, by its next
     * tick or, for its last commit, after a backoff; a server or cluster that stays away fails
     * the consumer after reconnect_ms. (SEA_ECONNECT here failed a run that recovered, and its
     * last commit, with exit status 3; a cluster's SEA_ECANCELED gave its last commit up, so a
     * run ending during a failover left its last entries pending, to be delivered again.) */
    if (rc->map.cluster)
      sea_host->op_done(op, SEA_EBUSY,
                        R_NAME ": commit: the cluster at %s is not reachable on every master now "
                               "(failing over or moving a slot); the acks go out once it is",
                        rc->s->addr);
    else
      sea_host->op_done(op, SEA_EBUSY,
                        R_NAME ": commit: not connected to %s now (reconnecting); the acks go "
                               "out once it is back",
                        rc->s->addr);
    return 0;
  }
  if (rc->acks_done >= rc->acks_sent) {
    sea_host->op_done(op, 0, NULL);
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
int redis_cons_lag(void *impl, sea_lag_t *out, size_t cap) {
  rcons_t *rc = impl;
  for (size_t i = 0; i < rc->nst && i < cap; i++) {
    out[i].stream_key = rc->st[i].key;
    out[i].shard = rc->st[i].shard;
    out[i].lag = rc->st[i].lag_known ? rc->st[i].lag : -1;
    out[i].lag_bytes = -1;
  }
  if (rc->group != NULL && rc->mode != SEA_MODE_REALTIME && rc->prepared && !rc->ended &&
      rc->lag_asking == 0 && redis_cons_up(rc)) {
    for (size_t i = 0; i < rc->nst; i++) {
      const char *argv[] = {"XINFO", "GROUPS", rc->st[i].name};
      size_t lens[] = {5, 6, strlen(rc->st[i].name)};
      if (redis_cons_conn(rc, &rc->st[i])->ac &&
          redisAsyncCommandArgv(redis_cons_conn(rc, &rc->st[i])->ac, lag_cb, (void *)(uintptr_t)i,
                                3, argv, lens) == REDIS_OK)
        rc->lag_asking++;
    }
  }
  return (int)rc->nst;
}
