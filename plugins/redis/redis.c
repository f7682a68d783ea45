/* redis.c: the redis:// backend: Redis Streams over hiredis' async API, driven by the host's loop.
 *
 * Layout (the Rust SeaStreamer's): a message is one stream entry `XADD key * msg <payload>` (the
 * field name is the option field=). Its seq is the entry id packed as (ms << 16) | id-sequence and
 * its timestamp is the id's milliseconds. Shard n of a key lives at `key:n` when the key is split
 * into shards=N > 1 streams; an unsharded key is the plain `key` and shard 0.
 *
 * Connections. Every producer and consumer has its own connection (a consumer's XREAD BLOCK holds
 * its connection), or one per master of a cluster. hiredis does the protocol; redis_conn.c is its
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
 *
 * This file: the plugin table, the streamer (the URI's nodes) and the options. The other rooms
 * are listed in redis_internal.h, which says how they talk.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"
#include "redis_list.h"

/* ------------------------------------------------------------------------------------------- */
/* Options                                                                                      */
/* ------------------------------------------------------------------------------------------- */

/* The backend options (ABI 1.4 table): the host checks every connect's and open's options
 * against it, so redis_cfg_apply only reads them. docs/redis.md says more of each. */
/* clang-format off */
static const sea_option_spec_t r_options[] = {
    {.key = "db", .type = SEA_OPT_U64, .max = 1000000, .def = "0", .help = "SELECT this database"},
    {.key = "field", .type = SEA_OPT_STR, .min = 1, .max = 63, .def = "msg",
     .help = "the entry field that holds the payload"},
    {.key = "shards", .type = SEA_OPT_U64, .min = 1, .max = 65536, .def = "1",
     .help = "streams key:0 .. key:N-1 per key; a consumer without it finds them"},
    {.key = "sharding", .type = SEA_OPT_ENUM, .values = "roundrobin|hash", .def = "roundrobin",
     .help = "how a producer picks the shard"},
    {.key = "maxlen", .type = SEA_OPT_U64, .def = "0", .help = "producer: XADD MAXLEN ~ N; 0: off"},
    {.key = "minid_age_ms", .type = SEA_OPT_MS, .def = "0",
     .help = "producer: XADD MINID ~ now - N ms; 0: off"},
    {.key = "block_ms", .type = SEA_OPT_MS, .min = 1, .def = "500",
     .help = "consumer: BLOCK of XREAD/XREADGROUP"},
    {.key = "ack", .type = SEA_OPT_STR, .def = "manual",
     .help = "groups: manual, at-most-once or none"},
    {.key = "create", .type = SEA_OPT_BOOL, .def = "true", .help = "XGROUP CREATE ... MKSTREAM"},
    {.key = "consumer", .type = SEA_OPT_STR, .min = 1, .max = 127,
     .help = "consumer name if resumable, its prefix if load-balanced"},
    {.key = "claim_idle_ms", .type = SEA_OPT_MS, .def = "30000",
     .help = "load-balanced: idle longer is gone, its entries claimed; 0: never"},
    {.key = "reconnect_ms", .type = SEA_OPT_MS, .def = "60000",
     .help = "how long a lost connection is retried"},
    {.key = "pipeline", .type = SEA_OPT_U64, .min = 1, .def = "50000",
     .help = "producer: most XADDs awaiting their reply"},
    {.key = "wait_replicas", .type = SEA_OPT_U64, .max = 100, .def = "0",
     .help = "producer: a receipt once WAIT says N replicas have it; 0: off"},
    {.key = "wait_timeout_ms", .type = SEA_OPT_MS, .min = 1, .def = "1000",
     .help = "producer: the timeout of each WAIT"},
    {.key = NULL},
};
/* clang-format on */
_Static_assert(sizeof(((rcfg_t *)0)->field) == 64 && sizeof(((rcfg_t *)0)->consumer) == 128,
               "r_options: field and consumer are held to their buffers");

int redis_parse_u64(const char *v, uint64_t *out) {
  if (v == NULL || *v < '0' || *v > '9')
    return -1;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (*end != '\0' || errno == ERANGE)
    return -1;
  *out = n;
  return 0;
}

int redis_cfg_apply(sea_runtime_t *rt, rcfg_t *c, const sea_options_t *o) {
  const sea_host_t *h = sea_host;
  memset(c, 0, sizeof *c);
  c->db = (int)h->option_u64(o, "db");
  snprintf(c->field, sizeof c->field, "%s", h->option_str(o, "field"));
  c->shards = (uint32_t)h->option_u64(o, "shards");
  c->shards_set = h->option_get(o, "shards") != NULL;
  c->shard_hash = h->option_enum(o, "sharding"); /* roundrobin 0, hash 1 */
  c->maxlen = h->option_u64(o, "maxlen");
  c->minid_age_ms = h->option_u64(o, "minid_age_ms");
  c->block_ms = h->option_u64(o, "block_ms");
  c->create = h->option_bool(o, "create");
  const char *v = h->option_str(o, "consumer");
  snprintf(c->consumer, sizeof c->consumer, "%s", v ? v : "");
  c->claim_idle_ms = h->option_u64(o, "claim_idle_ms");
  c->reconnect_ms = h->option_u64(o, "reconnect_ms");
  c->pipeline = h->option_u64(o, "pipeline");
  c->wait_replicas = h->option_u64(o, "wait_replicas");
  c->wait_timeout_ms = h->option_u64(o, "wait_timeout_ms");
  /* ack is words the table cannot judge alone: the old `auto` gets its own refusal. */
  v = h->option_str(o, "ack");
  if (strcmp(v, "manual") == 0) {
    c->ack = ACK_MANUAL;
  } else if (strcmp(v, "at-most-once") == 0) {
    c->ack = ACK_AT_MOST_ONCE;
  } else if (strcmp(v, "none") == 0) {
    c->ack = ACK_NONE;
  } else if (strcmp(v, "auto") == 0) {
    h->set_error(rt, R_NAME ": option 'ack=auto' was renamed to 'ack=at-most-once' (it XACKs "
                            "each batch as soon as it is read, so a crash or a stop loses what "
                            "was read and not processed); leave 'ack' out for the default, "
                            "'ack=manual' (XACK only what sea_consumer_ack and commit mark "
                            "done), or write 'ack=at-most-once' to keep the old behaviour");
    return SEA_EOPTION;
  } else {
    h->set_error(rt,
                 R_NAME ": invalid value in option 'ack=%s' (known: manual, the default; "
                        "at-most-once; none)",
                 v);
    return SEA_EOPTION;
  }
  return 0;
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
      sea_host->set_error(rt, R_NAME ": user or password too long in '%s'", raw);
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
  if (pc == NULL || hl == 0 || hl >= 256 || redis_parse_u64(pc + 1, &pn) || pn == 0 || pn > 65535) {
    sea_host->set_error(rt, R_NAME ": bad host:port '%s' in '%s'", at ? at + 1 : node, raw);
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
  sea_host->free(s->seeds);
  sea_host->free(s);
}

static int r_connect(sea_runtime_t *rt, sea_streamer_t *ss, const sea_uri_t *uri,
                     const sea_options_t *opts, void **impl) {
  (void)ss;
  if (uri->node_count < 1 || uri->node_count > 64) {
    sea_host->set_error(rt,
                        R_NAME ": '%s' names %zu nodes; give one, or up to 64 nodes of one Redis "
                               "Cluster (redis://HOST:PORT[,HOST:PORT...]/KEYS)",
                        uri->raw, uri->node_count);
    return SEA_EURI;
  }
  rstreamer_t *s = sea_host->calloc(1, sizeof *s);
  if (s == NULL)
    return SEA_ENOMEM;
  s->rt = rt;
  int rc = redis_cfg_apply(rt, &s->cfg, opts);
  if (rc) {
    sea_host->free(s);
    return rc;
  }
  s->seeds = sea_host->calloc(uri->node_count, sizeof *s->seeds);
  if (s->seeds == NULL) {
    sea_host->free(s);
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
  return sea_redis_list(sea_host, &s->lists, &t, args, op);
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
    .producer_open = redis_prod_open,
    .producer_send = redis_prod_send,
    .producer_close = redis_prod_close,
    .consumer_open = redis_cons_open,
    .consumer_start = redis_cons_start,
    .consumer_pause = redis_cons_pause,
    .consumer_resume = redis_cons_resume,
    .consumer_seek = redis_cons_seek,
    .consumer_rewind = redis_cons_rewind,
    .consumer_ack = redis_cons_ack,
    .consumer_commit = redis_cons_commit,
    .consumer_close = redis_cons_close,
    .consumer_lag = redis_cons_lag,
    .list = r_list,
    .options = r_options,
};

SEA_PLUGIN_INIT(redis, r_plugin)
