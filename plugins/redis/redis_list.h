/* redis_list.h: the redis backend's listing (redis_list.c), called from redis.c's descriptor. */
#ifndef SEA_REDIS_LIST_H
#define SEA_REDIS_LIST_H

#include <seastreamer/plugin.h>

struct ljob;

/* One node the URI names. */
typedef struct redis_list_seed {
  char host[256];
  int port;
} redis_list_seed_t;

/* Where to list: what redis.c's streamer parsed from the URI and its options. */
typedef struct redis_list_target {
  char host[256]; /* the URI's first node */
  int port;
  char user[128];
  char pass[256];
  char addr[300]; /* host:port, for messages */
  int db;
  /* Every node the URI names, the first being host:port (nseeds 0: that one only). Several must
   * be nodes of one Redis Cluster, tried in turn until one answers. Copied by sea_redis_list. */
  const redis_list_seed_t *seeds;
  size_t nseeds;
} redis_list_target_t;

/* List the server's streams (a cluster's: every master's) on a worker thread
 * (sea_plugin_t.list); jobs is the streamer's list of listings still running. */
int sea_redis_list(const sea_host_t *host, struct ljob **jobs, const redis_list_target_t *t,
                   const sea_list_args_t *a, sea_op_t *op);
/* From disconnect: the listings still running complete nothing. */
void sea_redis_list_abandon(struct ljob **jobs);

#endif
