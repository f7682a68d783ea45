/* types.h: the plain data both sides of SeaStreamer share: messages, batches, headers (meta),
 * URIs, positions, error codes, lag and listing rows, and the opaque handle types. No function
 * is declared here. seastreamer.h (the user API, libseastreamer) and plugin.h (the backend ABI)
 * each include it; a plugin includes plugin.h only, so it sees these types and the sea_host_t
 * table, and no sea_* function of the user API.
 *
 * Versioned on its own (SEA_TYPES_VERSION_*), under the plugin ABI's rules:
 *  - Within a major, a member never moves, changes type or changes meaning, and a struct marked
 *    "fixed" below never changes size: sizes and offsets are pinned by static assertions at the
 *    end of this file (LP64), so an accidental change does not compile.
 *  - Where a plugin fills a struct that a reader of another version indexes with its own stride
 *    (sea_message_t in a batch the host allocated, sea_lag_t in an array the caller allocated),
 *    the struct ends with reserved room. A later minor gives a member the place of the first
 *    reserved slot, says "added in types 1.N (plugin ABI 1.M)" beside it, and bumps
 *    SEA_TYPES_VERSION_MINOR and SEA_PLUGIN_ABI_MINOR together: the size, the stride of a
 *    batch's msgs[] and every offset stay what they were, so old plugins and old user code go on
 *    working untouched and nothing is added to the per-message path. A member that needs more
 *    than the room left is a pointer (in a slot) to an extension struct that begins with its own
 *    struct_size.
 *  - Whoever fills one of these structs starts from zero ({0}, memset or a compound literal), so
 *    the room reads 0, and a member added later gives 0 the meaning "not given". A reader still
 *    trusts such a member only from a writer that knows it: the host reads it only from a plugin
 *    whose abi_minor is at least the one that added it (and clears it before a user sees a
 *    message of an older plugin); a plugin reads one the host fills only if host->abi_minor
 *    says so.
 *  - Structs only the host allocates (sea_batch_t, sea_uri_t) may grow at the end in a minor:
 *    everyone else reads them through a pointer, and the host sets what it appends.
 *  - sea_meta_t (a message's header, a receipt's), sea_kv_t, sea_bytes_t and sea_pos_t are fixed
 *    with no room: changing them is a new major.
 */
#ifndef SEASTREAMER_TYPES_H
#define SEASTREAMER_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1.0: the types as they were split off seastreamer.h, with the reserved room of sea_message_t
 * and sea_lag_t (plugin ABI 1.4). */
#define SEA_TYPES_VERSION_MAJOR 1
#define SEA_TYPES_VERSION_MINOR 0

#if defined(__GNUC__)
#define SEA_EXTERN __attribute__((visibility("default")))
#else
#define SEA_EXTERN
#endif

/* SeaStreamer's limit on a stream key, in bytes (Kafka's topic limit). */
#define SEA_STREAM_KEY_MAX 249
/* Default upper bound on one payload; the `max_payload` option changes it per producer. */
#define SEA_PAYLOAD_MAX_DEFAULT (8u * 1024u * 1024u)

/* ---------------------------------------------------------------------------------------------
 * Errors: 0 is success, every failure is a negative code. Objects that fail asynchronously also
 * keep a message (sea_*_errmsg) that says what and where.
 * ------------------------------------------------------------------------------------------- */
#define SEA_ERRNO_MAP(XX)                                                                          \
  XX(EINVAL, -1, "invalid argument")                                                               \
  XX(ENOMEM, -2, "out of memory")                                                                  \
  XX(EURI, -3, "malformed URI")                                                                    \
  XX(ESCHEME, -4, "no plugin for this URI scheme")                                                 \
  XX(EPLUGIN, -5, "plugin refused")                                                                \
  XX(EKEY, -6, "invalid stream key")                                                               \
  XX(ETOOBIG, -7, "payload too large")                                                             \
  XX(EAGAIN, -8, "producer is full; wait for the drain callback")                                  \
  XX(EIO, -9, "input/output error")                                                                \
  XX(EPIPE, -10, "broken pipe: the reader went away")                                              \
  XX(EFORMAT, -11, "malformed input")                                                              \
  XX(ENOTSUP, -12, "operation not supported by this backend")                                      \
  XX(ECLOSED, -13, "handle is closed")                                                             \
  XX(ETIMEDOUT, -14, "timed out")                                                                  \
  XX(EOF, -15, "end of stream")                                                                    \
  XX(ECONNECT, -16, "connection failed")                                                           \
  XX(EOPTION, -17, "invalid option")                                                               \
  XX(ESTATE, -18, "operation not valid in this state")                                             \
  XX(EBACKEND, -19, "backend error")                                                               \
  XX(ECANCELED, -20, "operation canceled")                                                         \
  XX(EBUSY, -21, "resource busy")

typedef enum {
#define SEA__ERR_ENUM(name, code, text) SEA_##name = code,
  SEA_ERRNO_MAP(SEA__ERR_ENUM)
#undef SEA__ERR_ENUM
      SEA_OK = 0
} sea_errno_t;

/* ---------------------------------------------------------------------------------------------
 * Handles. Opaque: the user API (seastreamer.h) and the host table (plugin.h) work on them.
 * ------------------------------------------------------------------------------------------- */
typedef struct sea_runtime sea_runtime_t;
typedef struct sea_streamer sea_streamer_t;
typedef struct sea_producer sea_producer_t;
typedef struct sea_consumer sea_consumer_t;
typedef struct sea_options sea_options_t;

/* A reference-counted block of bytes. Payloads, keys and headers of consumed messages are slices
 * of blocks, so a message can be kept or sliced without copying its bytes. */
typedef struct sea_block sea_block_t;

/* ---------------------------------------------------------------------------------------------
 * Messages (sea-streamer-types)
 * ------------------------------------------------------------------------------------------- */

/* A view of bytes. `block` owns them (NULL: static memory, or memory the caller keeps alive).
 * Fixed. */
typedef struct sea_bytes {
  const uint8_t *data;
  size_t len;
  sea_block_t *block;
} sea_bytes_t;

/* What SeaStreamer calls the message header: the four fields of the Rust SeaStreamer's
 * MessageHeader, which the .ss frame, the redis entry and the stdio line carry too. Fixed, with
 * no room: it is copied on every send, receipt and delivery, and what a backend might add to a
 * message (a Kafka timestamp type, a leader epoch) belongs in the message's own room. */
typedef struct sea_meta {
  const char *stream_key; /* interned (sea_stream_key, host->stream_key) */
  uint64_t shard_id;
  uint64_t seq;
  int64_t timestamp_us; /* microseconds since 1970-01-01T00:00:00Z; 0 = unset */
} sea_meta_t;

/* One message header in the Kafka sense: a name and a binary value. Fixed: plugins lay out
 * arrays of them. */
typedef struct sea_kv {
  const char *name;
  size_t name_len;
  const uint8_t *value; /* NULL = null value */
  size_t value_len;
} sea_kv_t;

/* A message. Fixed size (112 bytes on LP64), with reserved room (zero): the stride of a batch's
 * msgs[] never changes within a major, so a plugin fills msgs[i] as it was compiled and the host
 * and users index them the same way. The room is two 8-byte slots: with them a message is seven
 * 16-byte moves to copy or clear, one more than the 96 bytes of before, on each send, delivery
 * and relay of a message; more room cost more per message. A later minor that needs more than
 * the room makes a slot a pointer to an extension struct that begins with its own struct_size. */
typedef struct sea_message {
  sea_meta_t meta;
  sea_bytes_t payload;
  const uint8_t *key; /* message key (Kafka); NULL = none. Lives in payload.block */
  size_t key_len;
  const sea_kv_t *headers; /* lives in payload.block; NULL when header_count == 0 */
  size_t header_count;
  uint64_t backend_pos; /* backend's own position (e.g. an entry id), for ack/commit */
  uint64_t reserved[2]; /* zero; for members of later minors */
} sea_message_t;

/* A batch of consumed messages, valid during the batch callback. Keep it longer with
 * sea_batch_retain/sea_batch_release, or keep one message with sea_message_dup. Only the host
 * allocates one (host->batch_new): a later minor may append members, which batch_new sets. */
typedef struct sea_batch {
  sea_message_t *msgs;
  size_t count;
} sea_batch_t;

/* Where a consumer goes (sea_consumer_rewind, start=). Fixed: passed by value. */
typedef enum { SEA_POS_BEGINNING = 0, SEA_POS_END = 1, SEA_POS_AT = 2 } sea_pos_kind_t;
typedef struct sea_pos {
  sea_pos_kind_t kind;
  uint64_t seq; /* for SEA_POS_AT */
} sea_pos_t;

typedef enum {
  SEA_MODE_REALTIME = 0,
  SEA_MODE_RESUMABLE = 1,
  SEA_MODE_LOAD_BALANCED = 2
} sea_mode_t;

/* What a backend can carry and do (sea_streamer_caps; sea_plugin_t.caps). */
enum {
  SEA_CAP_REALTIME = 1u << 0,
  SEA_CAP_RESUMABLE = 1u << 1,
  SEA_CAP_LOAD_BALANCED = 1u << 2,
  SEA_CAP_SEEK = 1u << 3,
  SEA_CAP_REWIND = 1u << 4,
  SEA_CAP_COMMIT = 1u << 5,
  SEA_CAP_KEY = 1u << 6,     /* carries message keys */
  SEA_CAP_HEADERS = 1u << 7, /* carries message headers */
  SEA_CAP_SHARDS = 1u << 8,
  SEA_CAP_TRANSACTIONS = 1u << 9,
  SEA_CAP_BINARY = 1u << 10 /* payloads may hold any byte (stdio: not '\n') */
};

/* ---------------------------------------------------------------------------------------------
 * URIs: scheme://node1[,node2...]/key1[,key2...]. The key list is the part after the last '/',
 * so a file path can be a node (file://./data/feed.ss/orders). Nodes without a port get the
 * plugin's default port at connect time. Only the host allocates one (sea_uri_parse).
 * ------------------------------------------------------------------------------------------- */
typedef struct sea_uri {
  char *scheme;
  char **nodes;
  size_t node_count;
  char **keys; /* validated stream keys (not interned) */
  size_t key_count;
  char *raw; /* the URI as given */
} sea_uri_t;

/* ---------------------------------------------------------------------------------------------
 * Lag: how far a consumer is behind the end of one stream, shard or partition
 * (sea_consumer_lag; sea_plugin_t.consumer_lag fills an array of them). Fixed size, with
 * reserved room (zero): the caller allocates the array, and the host clears it before the
 * plugin fills it.
 * ------------------------------------------------------------------------------------------- */
typedef struct sea_lag {
  const char *stream_key; /* interned; "*" where one position serves every key (a file) */
  uint64_t shard;         /* shard, or Kafka partition */
  int64_t lag;            /* messages not yet delivered; -1 = not known */
  int64_t lag_bytes;      /* bytes not yet delivered (file); -1 = not known */
  uint64_t reserved[2];   /* zero; for members of later minors */
} sea_lag_t;

/* ---------------------------------------------------------------------------------------------
 * Listing: what a backend holds (`seastreamer list`). The backend sends rows, each of one kind:
 *   SEA_LIST_STREAM  a stream key: a Kafka topic, a Redis stream (or a sharded key's `key:N`
 *                    streams together), the frames of one key in a .ss file
 *   SEA_LIST_SHARD   one shard of a stream: a Kafka partition, a Redis `key:N` stream (or the
 *                    plain key: shard 0), one (key, shard) of a .ss file
 *   SEA_LIST_GROUP   a consumer group's position on a stream: Kafka, one row per group with
 *                    shard -1 and stream NULL (its state, members and total lag), then one per
 *                    partition it has committed on; Redis, one per stream (shard) it reads
 *   SEA_LIST_MEMBER  a member of a group: a Redis consumer (per stream), a Kafka group member
 * A number that is not known (or means nothing for the row) is -1, a string NULL. Rows are
 * passed by pointer and carry struct_size: later members are appended.
 * ------------------------------------------------------------------------------------------- */
typedef enum {
  SEA_LIST_STREAM = 1,
  SEA_LIST_SHARD = 2,
  SEA_LIST_GROUP = 3,
  SEA_LIST_MEMBER = 4
} sea_list_kind_t;

typedef struct sea_list_row {
  size_t struct_size; /* sizeof(sea_list_row_t) of the sender: later fields are appended */
  sea_list_kind_t kind;
  const char *stream; /* stream key (topic) */
  int64_t shard;      /* shard or partition; -1 on a row of a whole stream or group */
  const char *name;   /* the backend's own name when it differs (the Redis stream "orders:1") */
  const char *group;  /* GROUP, MEMBER */
  const char *member; /* MEMBER: the Redis consumer name, the Kafka member id */
  const char *state;  /* GROUP: the Kafka group state ("Stable", "Empty") */
  int64_t messages;   /* messages held (Redis XLEN, Kafka high - low, frames in a file) */
  int64_t shards;     /* STREAM: number of shards or partitions */
  int64_t low, high;  /* Kafka: low and high watermark (high = the next offset written) */
  int64_t first_seq, last_seq;     /* the seq range held (file; Kafka: low, high - 1) */
  int64_t first_ts_us, last_ts_us; /* the time range held (file, Redis ids' milliseconds) */
  const char *first_id, *last_id;  /* Redis: first and last entry id */
  int64_t leader;                  /* Kafka: the partition leader's broker id */
  int64_t committed;               /* GROUP, Kafka: the committed offset (the next to read) */
  int64_t lag;       /* GROUP: messages the group has not read yet (Redis 7's `lag`, Kafka
                        high - committed) */
  int64_t pending;   /* GROUP, MEMBER (Redis): read and not yet acknowledged */
  int64_t consumers; /* GROUP: members */
  int64_t idle_ms;   /* MEMBER (Redis): since its last read */
  const char *last_delivered_id; /* GROUP (Redis) */
  const char *client_id, *host;  /* MEMBER (Kafka) */
  int64_t bytes;                 /* STREAM, SHARD (file): bytes of its frames */
} sea_list_row_t;

/* Set every number of row to -1 and every string to NULL (what a sender starts from). Inline:
 * plugins use it too, and they do not link libseastreamer. */
static inline void sea_list_row_init(sea_list_row_t *row, sea_list_kind_t kind) {
  static const sea_list_row_t unknown = {.struct_size = sizeof(sea_list_row_t),
                                         .shard = -1,
                                         .messages = -1,
                                         .shards = -1,
                                         .low = -1,
                                         .high = -1,
                                         .first_seq = -1,
                                         .last_seq = -1,
                                         .first_ts_us = -1,
                                         .last_ts_us = -1,
                                         .leader = -1,
                                         .committed = -1,
                                         .lag = -1,
                                         .pending = -1,
                                         .consumers = -1,
                                         .idle_ms = -1,
                                         .bytes = -1};
  *row = unknown;
  row->kind = kind;
}

/* ---------------------------------------------------------------------------------------------
 * What the ABI fixes, checked where it is compiled (LP64: Linux on x86-64 and arm64). A change
 * that trips one of these is a new major of the types and of the plugin ABI.
 * ------------------------------------------------------------------------------------------- */
#if defined(__cplusplus) && __cplusplus >= 201103L
#define SEA__TYPES_ASSERT(cond, what) static_assert(cond, what)
#elif !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define SEA__TYPES_ASSERT(cond, what) _Static_assert(cond, what)
#endif
#if defined(SEA__TYPES_ASSERT) && UINTPTR_MAX == UINT64_MAX && SIZE_MAX == UINT64_MAX
SEA__TYPES_ASSERT(sizeof(sea_bytes_t) == 24, "sea_bytes_t is fixed");
SEA__TYPES_ASSERT(sizeof(sea_kv_t) == 32, "sea_kv_t is fixed");
SEA__TYPES_ASSERT(sizeof(sea_meta_t) == 32, "sea_meta_t is fixed");
SEA__TYPES_ASSERT(offsetof(sea_meta_t, timestamp_us) == 24, "sea_meta_t members never move");
SEA__TYPES_ASSERT(sizeof(sea_message_t) == 112, "sea_message_t is fixed: a batch's stride");
SEA__TYPES_ASSERT(offsetof(sea_message_t, payload) == 32, "sea_message_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_message_t, key) == 56, "sea_message_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_message_t, headers) == 72, "sea_message_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_message_t, backend_pos) == 88, "sea_message_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_message_t, reserved) == 96, "sea_message_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_batch_t, msgs) == 0 && offsetof(sea_batch_t, count) == 8,
                  "sea_batch_t members never move");
SEA__TYPES_ASSERT(sizeof(sea_pos_t) == 16, "sea_pos_t is fixed: passed by value");
SEA__TYPES_ASSERT(sizeof(sea_lag_t) == 48, "sea_lag_t is fixed (reserved room included)");
SEA__TYPES_ASSERT(offsetof(sea_lag_t, reserved) == 32, "sea_lag_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_uri_t, raw) == 40, "sea_uri_t members never move");
SEA__TYPES_ASSERT(offsetof(sea_list_row_t, bytes) == 216, "sea_list_row_t members never move");
#endif
#undef SEA__TYPES_ASSERT

#ifdef __cplusplus
}
#endif
#endif /* SEASTREAMER_TYPES_H */
