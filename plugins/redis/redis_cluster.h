/* redis_cluster.h: Redis Cluster for the redis:// backend: key slots, the slot map, the node table,
 * and the redirections (MOVED, ASK) a node answers with. No I/O here: the producer and consumer
 * (redis_producer.c, redis_consumer.c) own the connections (redis_conn.c; one per node, at the
 * same index as the node in the table) and ask this file where to send. */
#ifndef SEA_REDIS_CLUSTER_H
#define SEA_REDIS_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define RCL_SLOTS 16384
/* A slot no node serves (yet). */
#define RCL_NONE UINT16_MAX
/* Most nodes one handle talks to (masters and replicas that ever served a slot). */
#define RCL_NODES_MAX 1024

typedef struct rcl_node {
  char host[256];
  int port;
  char addr[300]; /* host:port, for messages */
  uint32_t slots; /* how many slots the current map gives it */
} rcl_node_t;

/* The slot map of one handle. Node indexes never change once given (a node that no longer serves
 * a slot keeps its index), so the producer and consumer can keep arrays beside the table. */
typedef struct rcl_map {
  int cluster;      /* the server said it is a cluster node (CLUSTER SLOTS answered) */
  int loaded;       /* a map was read at least once */
  unsigned version; /* changes with every load and every MOVED */
  rcl_node_t *nodes;
  size_t nnodes, cap;
  uint16_t owner[RCL_SLOTS]; /* slot -> node index, RCL_NONE when unknown */
} rcl_map_t;

/* CRC16/XMODEM (polynomial 0x1021, initial 0), the hash of the Redis Cluster specification. */
uint16_t rcl_crc16(const void *data, size_t len);

/* The slot of a key: CRC16 of the key, or of its hash tag (what lies between the first '{' and
 * the next '}', when that is not empty), modulo 16384. */
unsigned rcl_slot(const char *key, size_t len);

void rcl_map_init(rcl_map_t *m);
void rcl_map_free(rcl_map_t *m);

/* The index of the node HOST:PORT, added if new; -1 when out of memory or the table is full. */
int rcl_node_index(rcl_map_t *m, const char *host, int port);

/* Read a CLUSTER SLOTS reply (asked of the node at index from): each element is
 * [start, end, [host, port, id...], replicas...]; the first node of each range is its master.
 * An empty host (or "?") names the node that answered. Replaces the whole map on success.
 * Returns 0, or -1 with err filled when the reply is not a slot map. */
int rcl_map_load(rcl_map_t *m, const redisReply *r, size_t from, char *err, size_t errlen);

/* Record what a MOVED said: slot now lives at node. */
void rcl_map_set(rcl_map_t *m, unsigned slot, size_t node);

/* The node that serves the slot of stream name, or -1 when no node is known to. */
int rcl_route(const rcl_map_t *m, const char *name);

/* A redirection in an error reply: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>".
 * Returns RCL_MOVED or RCL_ASK with slot, host and port filled; RCL_RETRY for the errors after
 * which the same command succeeds a little later (TRYAGAIN, CLUSTERDOWN, LOADING and MASTERDOWN
 * of a node being failed over to, and UNBLOCKED: a blocked read whose key MIGRATE took away);
 * 0 for any other error. */
enum { RCL_MOVED = 1, RCL_ASK = 2, RCL_RETRY = 3 };
int rcl_redirect(const char *err, unsigned *slot, char host[256], int *port);

#endif
