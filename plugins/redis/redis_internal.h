/* redis_internal.h: what the rooms of the redis:// backend share. Private to plugins/redis.
 *
 * The rooms (see redis.c's comment for the backend as a whole):
 *   redis.c          the plugin table, the streamer (URI nodes, credentials) and the options
 *   redis_conn.c     one connection: hiredis on the host's loop, resolve, handshake, reconnect
 *   redis_producer.c XADD lines (one per node), receipts, cluster redirections, WAIT
 *   redis_consumer.c reading (XREAD / XREADGROUP), delivery, positions, pause, the cluster links
 *   redis_group.c    groups: members alive or gone, acks and commits (XACK), claims, lag
 *   redis_discover.c finding a key's shards (SCAN for KEY:N) when shards= is not given
 *   redis_cluster.c  the slot map and redirections (no I/O); redis_list.c `seastreamer list`
 *
 * How they talk: a producer or consumer embeds rconn_t and gets its on_ready / on_lost /
 * on_fail / on_map callbacks; the consumer's rooms share rcons_t and call each other through
 * the redis_cons_* functions below. Every room reaches the host through sea_host, set once by the
 * plugin entry in redis.c. Functions defined here are static inline: small helpers several rooms
 * use. Names a room exports carry the redis_ prefix.
 */
#ifndef SEA_REDIS_INTERNAL_H
#define SEA_REDIS_INTERNAL_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "redis_cluster.h"
#include "seastreamer/plugin.h"

/* The host's functions: sea_host, set by SEA_PLUGIN_INIT (redis.c). */
SEA_PLUGIN_HOST_DECL;

#define R_NAME "redis"
#define R_BATCH_DEFAULT 1000
#define R_TIMEOUT_DEFAULT 5000
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
/* Entry ids                                                                                    */
/* ------------------------------------------------------------------------------------------- */

static inline int id_parse(const char *s, size_t len, uint64_t *ms, uint64_t *sq) {
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

static inline int id_format(char *buf, uint64_t ms, uint64_t sq) {
  return snprintf(buf, R_ID_MAX, "%llu-%llu", (unsigned long long)ms, (unsigned long long)sq);
}

/* The position just before (ms, sq), for XREAD's exclusive ids. */
static inline void id_before(uint64_t *ms, uint64_t *sq) {
  if (*sq > 0)
    (*sq)--;
  else if (*ms > 0) {
    (*ms)--;
    *sq = UINT64_MAX;
  }
}

static inline uint64_t id_pack(uint64_t ms, uint64_t sq) {
  return (ms << 16) | (sq & 0xffff);
}

/* A stream's name: KEY, or KEY:N for shard N when the key has shards > 1. */
static inline void stream_name(char *buf, const char *key, uint32_t shards, uint32_t shard) {
  if (shards <= 1)
    snprintf(buf, R_NAME_MAX, "%s", key);
  else
    snprintf(buf, R_NAME_MAX, "%s:%u", key, shard);
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
  sea_timer_t *timer; /* runs due: the connect timeout, the backoff's end */
  void (*due)(rconn_t *c);
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
  void (*on_map)(rconn_t *c); /* redis_conn_map_ask's CLUSTER SLOTS was read into map */
};

/* ------------------------------------------------------------------------------------------- */
/* Waits: a consumer's commits                                                                 */
/* ------------------------------------------------------------------------------------------- */

/* Operations waiting for a counter to reach a target: a consumer's commits (XACK replies). A
 * producer's flushes are the host's (it completes them from the receipts). */
typedef struct rwait {
  sea_op_t *op;
  uint64_t target;
} rwait_t;

typedef struct rwaits {
  rwait_t *v;
  size_t n, cap;
} rwaits_t;

static inline int waits_add(rwaits_t *w, sea_op_t *op, uint64_t target) {
  if (SEA_GROW(w->v, w->cap, w->n + 1, 4) != 0)
    return SEA_ENOMEM;
  w->v[w->n].op = op;
  w->v[w->n].target = target;
  w->n++;
  return 0;
}

/* Complete, successfully, those whose target the counter has reached. */
static inline void waits_reached(rwaits_t *w, uint64_t counter) {
  size_t k = 0;
  for (size_t i = 0; i < w->n; i++) {
    if (w->v[i].target > counter)
      w->v[k++] = w->v[i];
    else
      sea_host->op_done(w->v[i].op, 0, NULL);
  }
  w->n = k;
}

/* Fail every one with status and msg. */
static inline void waits_fail(rwaits_t *w, int status, const char *msg) {
  for (size_t i = 0; i < w->n; i++)
    sea_host->op_done(w->v[i].op, status, "%s", msg);
  w->n = 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Consumer (redis_consumer.c, redis_group.c, redis_discover.c)                                 */
/* ------------------------------------------------------------------------------------------- */

/* Where to start or move to (rcons_t's pos_kind). */
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
 * redis_reap_step): per stream, XINFO CONSUMERS picks the dead members, then for each of them
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
  int end_status;     /* with ended: how (SEA_EOF, or the failure that ended it) */
  char end_msg[256];  /* and why */
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
  size_t nnc, capnc; /* nc[0..nnc) are slots (NULL: not made yet); capnc: allocated */
  int link_up;
  int hold;          /* a redirection to wait out (ASK, TRYAGAIN): up again at a heal tick */
  sea_timer_t *heal; /* reads the map again while not up (healing) */
  int healing;
  uint64_t heal_since;
  size_t round_n; /* entries of the reads of this round (one read per node) */
  int round_hist;
} rcons_t;

/* One stream's entries in a reply, for redis_cons_deliver. */
typedef struct rpart {
  rstream_t *st;
  const redisReply *entries;
} rpart_t;

/* ------------------------------------------------------------------------------------------- */
/* What the rooms export                                                                        */
/* ------------------------------------------------------------------------------------------- */

/* redis.c */
int redis_parse_u64(const char *v, uint64_t *out);
int redis_cfg_apply(sea_runtime_t *rt, rcfg_t *c, const sea_options_t *o);

/* redis_conn.c */
void redis_conn_set_addr(rconn_t *c, const char *host, int port);
void redis_conn_begin(rconn_t *c);
void redis_conn_init(rconn_t *c, rstreamer_t *s, sea_runtime_t *rt, void *owner,
                     uint64_t timeout_ms, uint64_t reconnect_ms);
void redis_conn_close(rconn_t *c);
int redis_conn_ready(const rconn_t *c);
int redis_conn_map_ask(rconn_t *c);
void redis_conn_restart(rconn_t *c);

/* redis_producer.c */
int redis_prod_open(void *simpl, sea_producer_t *p, const sea_open_args_t *args, void **impl);
int redis_prod_send(void *impl, const sea_message_t *m, unsigned flags, void *token);
void redis_prod_close(void *impl);

/* redis_consumer.c */
rconn_t *redis_cons_conn(rcons_t *rc, const rstream_t *st);
int redis_cons_up(const rcons_t *rc);
int redis_cons_cluster_err(rcons_t *rc, rconn_t *c, const redisReply *reply);
void redis_cons_end(rcons_t *rc, int status, const char *msg);
size_t redis_cons_deliver(rcons_t *rc, rpart_t *parts, size_t nparts);
int redis_cons_send_argv(rcons_t *rc, const rstream_t *st, redisCallbackFn *cb, size_t i, int argc,
                         const char **argv);
void redis_cons_pump(rcons_t *rc);
int redis_cons_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *args, void **impl);
int redis_cons_start(void *impl);
int redis_cons_pause(void *impl);
int redis_cons_resume(void *impl);
int redis_cons_seek(void *impl, int64_t ts_us, sea_op_t *op);
int redis_cons_rewind(void *impl, sea_pos_t pos, sea_op_t *op);
void redis_cons_close(void *impl);

/* redis_group.c */
void redis_live_add(rcons_t *rc);
void redis_live_remove(rcons_t *rc);
void redis_host_name(char hn[64]);
void redis_cons_send_xack(rcons_t *rc, rstream_t *st, idlist_t *l);
int redis_idl_add(idlist_t *l, uint64_t ms, uint64_t sq);
void redis_reap_forget(rreap_t *R);
void redis_reap_stop(rcons_t *rc);
int redis_reap_step(rcons_t *rc);
void redis_reap_begin(rcons_t *rc);
int redis_cons_ack(void *impl, const sea_message_t *m);
int redis_cons_commit(void *impl, sea_op_t *op);
int redis_cons_lag(void *impl, sea_lag_t *out, size_t cap);

/* redis_discover.c */
void redis_cons_discover(rcons_t *rc);

#endif
