/* seastreamer.h: the public API of libseastreamer: runtime, socket (streamer), producer,
 * consumer and the relay pipeline, over the data types of seastreamer/types.h. Nothing here
 * blocks; everything runs on one libuv loop.
 *
 * For programs that use SeaStreamer, never for a backend plugin: a plugin includes
 * seastreamer/plugin.h only and calls the host through its sea_host_t table, so the two headers
 * refuse each other. (libseastreamer itself and the test programs that play a plugin's part
 * in-process define SEA_HOST_INTERNAL to have both.) */
#ifndef SEASTREAMER_H
#define SEASTREAMER_H

#if defined(SEASTREAMER_PLUGIN_H) && !defined(SEA_HOST_INTERNAL)
#error                                                                                             \
    "seastreamer/seastreamer.h included with seastreamer/plugin.h: a plugin must not call the user API; it includes seastreamer/plugin.h only and calls the host through its sea_host_t table (docs/plugins.md)"
#endif

#include <stddef.h>
#include <stdint.h>

#include "types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SEA_VERSION_MAJOR 0
#define SEA_VERSION_MINOR 1
#define SEA_VERSION_PATCH 0
#define SEA_VERSION_STRING "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Errors (the codes are in types.h)
 * ------------------------------------------------------------------------------------------- */
/* Words for a code: "payload too large". Never NULL. */
SEA_EXTERN const char *sea_strerror(int err);
/* The code's name: "SEA_ETOOBIG". Never NULL. */
SEA_EXTERN const char *sea_err_name(int err);
SEA_EXTERN const char *sea_version_string(void);

/* ---------------------------------------------------------------------------------------------
 * Types (sea-streamer-types): blocks, bytes, keys, batches and messages (the structs are in
 * types.h)
 * ------------------------------------------------------------------------------------------- */

SEA_EXTERN sea_block_t *sea_block_new(size_t size);
SEA_EXTERN sea_block_t *sea_block_ref(sea_block_t *b); /* returns b; NULL is allowed */
SEA_EXTERN void sea_block_unref(sea_block_t *b);       /* NULL is allowed */
SEA_EXTERN uint8_t *sea_block_data(sea_block_t *b);
SEA_EXTERN size_t sea_block_size(const sea_block_t *b);

/* A view of [off, off+len) of src that holds its own reference to the block: no copy.
 * Returns SEA_EINVAL if the range is outside src. Release with sea_bytes_release. */
SEA_EXTERN int sea_bytes_slice(const sea_bytes_t *src, size_t off, size_t len, sea_bytes_t *out);
/* A copy of data in a new block. Returns SEA_ENOMEM on failure. */
SEA_EXTERN int sea_bytes_copy(const void *data, size_t len, sea_bytes_t *out);
SEA_EXTERN void sea_bytes_release(sea_bytes_t *b);

/* Stream keys are interned: equal keys have equal pointers, and a key lives until the process
 * ends, so messages carry a plain `const char *`. */
SEA_EXTERN int sea_stream_key_valid(const char *key, size_t len);
/* Returns the interned key, or NULL (and *err = SEA_EKEY) if the key is not valid. */
SEA_EXTERN const char *sea_stream_key(const char *key, size_t len, int *err);

SEA_EXTERN void sea_batch_retain(const sea_batch_t *batch);
SEA_EXTERN void sea_batch_release(const sea_batch_t *batch);
/* A heap copy of the message struct sharing the payload's block; free with sea_message_free. */
SEA_EXTERN sea_message_t *sea_message_dup(const sea_message_t *m);
SEA_EXTERN void sea_message_free(sea_message_t *m);
/* A copy that shares nothing: sea_message_extent(m) bytes hold m's headers (their array, names
 * and values), key and payload; sea_message_copy_to lays them out in buf (that many bytes,
 * aligned for any type) and sets *out to a message that shows them, with payload.block NULL
 * (its owner keeps buf alive). */
SEA_EXTERN size_t sea_message_extent(const sea_message_t *m);
SEA_EXTERN void sea_message_copy_to(const sea_message_t *m, sea_message_t *out, void *buf);

/* Format a timestamp as SeaStreamer's stdio does, with milliseconds: 2026-11-26T10:00:00.123
 * (UTC). buf must hold 32 bytes. Returns the length. */
SEA_EXTERN size_t sea_format_timestamp(int64_t timestamp_us, char *buf);
/* Parse YYYY-MM-DDTHH:MM:SS[.fraction] (UTC). Returns 0 or SEA_EFORMAT. */
SEA_EXTERN int sea_parse_timestamp(const char *s, size_t len, int64_t *timestamp_us);
SEA_EXTERN int64_t sea_now_us(void);

/* ---------------------------------------------------------------------------------------------
 * Options: key=value strings. The host reads the common keys; all others go to the backend
 * untouched, and a backend rejects a key it does not know.
 *   mode=realtime|resumable|load-balanced   group=NAME    timeout=MS (connect/operation timeout)
 *   reset=earliest|latest (where to start without a committed position)
 *   start=beginning|end|SEQ|-N|s@MS (where a consumer starts; -N = N before the end)
 *   stop_at_end=true (a consumer ends with SEA_EOF when caught up)   batch=N (messages per batch)
 *   max_inflight=N  max_inflight_bytes=N  max_payload=N (producer bounds)
 * ------------------------------------------------------------------------------------------- */
SEA_EXTERN sea_options_t *sea_options_new(void);
SEA_EXTERN void sea_options_free(sea_options_t *o);
/* Set (or replace) key. Keys are [A-Za-z0-9._-]+. Returns SEA_EOPTION on a bad key. */
SEA_EXTERN int sea_options_set(sea_options_t *o, const char *key, const char *value);
/* Parse "key=value". Returns SEA_EOPTION if there is no '=' or the key is bad. */
SEA_EXTERN int sea_options_parse(sea_options_t *o, const char *kv);
SEA_EXTERN const char *sea_options_get(const sea_options_t *o, const char *key);
SEA_EXTERN size_t sea_options_count(const sea_options_t *o);
SEA_EXTERN int sea_options_at(const sea_options_t *o, size_t i, const char **key,
                              const char **value);

/* ---------------------------------------------------------------------------------------------
 * URIs (sea_uri_t is in types.h)
 * ------------------------------------------------------------------------------------------- */
/* Parse a URI. On failure returns SEA_EURI or SEA_EKEY and, if errbuf is not NULL, a message that
 * names the offending part and its byte offset. */
SEA_EXTERN int sea_uri_parse(const char *uri, sea_uri_t **out, char *errbuf, size_t errlen);
SEA_EXTERN void sea_uri_free(sea_uri_t *u);

/* ---------------------------------------------------------------------------------------------
 * Runtime (sea-streamer-runtime): one libuv loop and the plugins known to it.
 * ------------------------------------------------------------------------------------------- */
typedef enum { SEA_RUN_DEFAULT = 0, SEA_RUN_ONCE = 1, SEA_RUN_NOWAIT = 2 } sea_run_mode_t;

/* A runtime with a loop of its own. */
SEA_EXTERN int sea_runtime_new(sea_runtime_t **out);
/* A runtime on a uv_loop_t the caller owns (to share it with luv or an application). */
SEA_EXTERN int sea_runtime_new_with_loop(void *uv_loop, sea_runtime_t **out);
SEA_EXTERN void *sea_runtime_uv_loop(sea_runtime_t *rt);
SEA_EXTERN int sea_runtime_run(sea_runtime_t *rt, sea_run_mode_t mode);
SEA_EXTERN void sea_runtime_stop(sea_runtime_t *rt);
/* Frees the runtime; every streamer must be closed first (else SEA_EBUSY). */
SEA_EXTERN int sea_runtime_free(sea_runtime_t *rt);
/* The last error message of a call on this runtime that returned an error (connect, load). */
SEA_EXTERN const char *sea_runtime_errmsg(const sea_runtime_t *rt);

/* Plugins. Search order: the installed plugin dir, sea_plugin_install_dir() (or
 * $SEASTREAMER_PLUGIN_DIR instead, if set), then each
 * directory of $SEASTREAMER_PLUGIN_PATH (':'-separated). A plugin found later takes a scheme from
 * one found earlier, so a build tree can stand in for an installed plugin. Loading is done once,
 * on the first connect or the first call below. */
typedef struct sea_plugin_info {
  const char *path;        /* file, or "(built-in)" */
  const char *name;        /* NULL if refused */
  const char *version;     /* NULL if refused */
  const char *schemes;     /* comma-separated, NULL if refused */
  const char *description; /* NULL if refused */
  const char *refused;     /* NULL if loaded, else why */
  const char *shadowed_by; /* NULL, or the path of the plugin that took its schemes */
} sea_plugin_info_t;

SEA_EXTERN int sea_runtime_load_plugins(sea_runtime_t *rt);
SEA_EXTERN size_t sea_runtime_plugin_count(sea_runtime_t *rt);
SEA_EXTERN int sea_runtime_plugin_info(sea_runtime_t *rt, size_t i, sea_plugin_info_t *info);
/* The backend options plugin i declares (plugin ABI 1.4), one "  KEY=VALUE  what it does (range;
 * default)" line each, into buf as snprintf does (returns the length; SEA_ENOTSUP: no table). */
SEA_EXTERN int sea_runtime_plugin_options(sea_runtime_t *rt, size_t i, char *buf, size_t size);
/* Commands plugins add to the `seastreamer` command (plugin ABI 1.3: the file backend's decode,
 * verify and repair), in load order; a name a plugin found later also has is that one's (as a
 * scheme is: SEASTREAMER_PLUGIN_PATH's plugins come after the plugin directory's). The strings
 * live as long as rt. sea_runtime_command_info returns SEA_EINVAL past the end. */
SEA_EXTERN size_t sea_runtime_command_count(sea_runtime_t *rt);
SEA_EXTERN int sea_runtime_command_info(sea_runtime_t *rt, size_t i, const char **name,
                                        const char **args, const char **summary,
                                        const char **plugin);
/* Run the command NAME of a plugin: *status gets its exit status. SEA_ENOTSUP if no loaded plugin
 * offers it. */
SEA_EXTERN int sea_runtime_command_run(sea_runtime_t *rt, const char *name, int argc, char **argv,
                                       int *status);
/* Load one plugin file now. Returns SEA_EPLUGIN with the reason in sea_runtime_errmsg. */
SEA_EXTERN int sea_runtime_load_plugin_file(sea_runtime_t *rt, const char *path);
/* Register a statically linked plugin by its entry function (see plugin.h). */
struct sea_host;
struct sea_plugin;
typedef const struct sea_plugin *(*sea_plugin_entry_fn)(const struct sea_host *host);
/* Declare the entry of a backend linked into the program (compiled with SEA_PLUGIN_STATIC, whose
 * SEA_PLUGIN_ENTRY(name) defines sea_plugin_entry_<name>), to register it without plugin.h:
 *   SEA_PLUGIN_ENTRY_DECL(stdio);
 *   sea_runtime_register_plugin(rt, sea_plugin_entry_stdio, "stdio (built-in)"); */
#define SEA_PLUGIN_ENTRY_DECL(name)                                                                \
  const struct sea_plugin *sea_plugin_entry_##name(const struct sea_host *host)
SEA_EXTERN int sea_runtime_register_plugin(sea_runtime_t *rt, sea_plugin_entry_fn entry,
                                           const char *origin);
/* The directory this installation's plugins are in: found from where libseastreamer itself was
 * loaded from (<libdir>/seastreamer/plugins), so it follows the installation wherever it is
 * installed or moved (make install PREFIX=, DESTDIR staging, a LuaRocks tree). */
SEA_EXTERN const char *sea_plugin_install_dir(void);
/* The directory the loaded libseastreamer is in (symbolic links resolved), or NULL if unknown. */
SEA_EXTERN const char *sea_library_dir(void);

/* ---------------------------------------------------------------------------------------------
 * Socket (sea-streamer-socket): a streamer is a connection picked by the URI scheme.
 * ------------------------------------------------------------------------------------------- */
/* Done callback of an asynchronous operation (flush, end, seek, rewind, commit). */
typedef void (*sea_done_cb)(void *data, int status);

/* Connect. opts may be NULL. On failure returns a negative code and sea_runtime_errmsg(rt) says
 * what was wrong ("unknown scheme 'foo' in 'foo://x' (known: file, stdio)"). Backends that
 * connect over the network do so in the background; failures then reach the producer and
 * consumer callbacks. */
SEA_EXTERN int sea_connect(sea_runtime_t *rt, const char *uri, const sea_options_t *opts,
                           sea_streamer_t **out);
/* Close the streamer and every producer and consumer still open on it. */
SEA_EXTERN void sea_streamer_close(sea_streamer_t *s);
SEA_EXTERN const sea_uri_t *sea_streamer_uri(const sea_streamer_t *s);
SEA_EXTERN const char *sea_streamer_backend(const sea_streamer_t *s);
/* What the backend can carry and do: SEA_CAP_* bits (seastreamer/types.h), e.g. whether a
 * message key or headers survive the trip. */
SEA_EXTERN uint64_t sea_streamer_caps(const sea_streamer_t *s);
SEA_EXTERN void *sea_streamer_get_data(const sea_streamer_t *s);
SEA_EXTERN void sea_streamer_set_data(sea_streamer_t *s, void *data);
/* The message of the streamer's last failed operation (sea_streamer_list). */
SEA_EXTERN const char *sea_streamer_errmsg(const sea_streamer_t *s);

/* ---------------------------------------------------------------------------------------------
 * Listing: what a backend holds (`seastreamer list`), as rows (sea_list_row_t, in types.h).
 * ------------------------------------------------------------------------------------------- */

/* A row, valid during the call only (its strings too). */
typedef void (*sea_list_cb)(void *data, const sea_list_row_t *row);

/* List what the backend holds: every stream (key_count 0) or only the stream keys given; rows
 * come to on_row on the loop, in this order: streams each followed by their shards, then groups
 * and their members; then on_done(data, status) once (0, or an error with the message in
 * sea_streamer_errmsg). Returns 0, or an error with no callback (SEA_ENOTSUP "list is not
 * supported by the <name> backend"). The streamer's timeout= option bounds the backend's round
 * trips (0 or unset: the backend's default). Closing the streamer cancels a listing: no row
 * comes after sea_streamer_close, and on_done gets SEA_ECANCELED (or the listing's status, had
 * it just completed). */
SEA_EXTERN int sea_streamer_list(sea_streamer_t *s, const char *const *keys, size_t key_count,
                                 sea_list_cb on_row, sea_done_cb on_done, void *data);
/* ---------------------------------------------------------------------------------------------
 * Producer
 * ------------------------------------------------------------------------------------------- */

/* A receipt: status 0 and the header the backend assigned, or an error (meta may be NULL). */
typedef void (*sea_receipt_cb)(sea_producer_t *p, void *token, int status, const sea_meta_t *meta);
/* The producer can take more after a send returned SEA_EAGAIN. */
typedef void (*sea_drain_cb)(sea_producer_t *p);

/* opts (may be NULL) add to and override the streamer's options. The producer is anchored to the
 * URI's first key, if it has one. */
SEA_EXTERN int sea_producer_open(sea_streamer_t *s, const sea_options_t *opts,
                                 sea_producer_t **out);
SEA_EXTERN void sea_producer_set_callbacks(sea_producer_t *p, sea_receipt_cb on_receipt,
                                           sea_drain_cb on_drain);
SEA_EXTERN int sea_producer_anchor(sea_producer_t *p, const char *stream_key);
SEA_EXTERN const char *sea_producer_anchored(const sea_producer_t *p);
/* Send a message. m->meta.stream_key NULL means the anchored key; m->meta.timestamp_us 0 means
 * now; the backend assigns shard and sequence where it owns them. The bytes are copied or
 * referenced (payload.block) before this returns. Returns 0 (the receipt follows), SEA_EAGAIN
 * (nothing was taken: wait for the drain callback), or an error (nothing was taken). */
SEA_EXTERN int sea_producer_send(sea_producer_t *p, const sea_message_t *m, void *token);
/* Shorthand: send len bytes to key (NULL = anchored). */
SEA_EXTERN int sea_producer_send_bytes(sea_producer_t *p, const char *key, const void *data,
                                       size_t len, void *token);
/* Completes when everything sent before has its receipt. */
SEA_EXTERN int sea_producer_flush(sea_producer_t *p, sea_done_cb cb, void *data);
/* Flush, then end the stream (a backend may write an end marker). No send after this. */
SEA_EXTERN int sea_producer_end(sea_producer_t *p, sea_done_cb cb, void *data);
/* Close now. Receipts still outstanding are reported with SEA_ECANCELED first. From one of the
 * producer's own callbacks the close completes once the callback returns, and the receipts still
 * outstanding are reported with SEA_ECANCELED then: every send gets exactly one receipt. */
SEA_EXTERN void sea_producer_close(sea_producer_t *p);
/* Transactions, on a backend with SEA_CAP_TRANSACTIONS (Kafka, with transactional.id set);
 * others answer SEA_ENOTSUP. begin opens a transaction: the sends that follow are in it. commit
 * waits for their receipts and makes them visible to read_committed readers, all or nothing;
 * abort discards them (sends not yet written are canceled). send_offsets puts the consumer's
 * positions (what it acked, or everything it delivered if it acked nothing) into the open
 * transaction with its group, so they are committed with it (consume-transform-produce, exactly
 * once); both handles must be of the same backend (else SEA_EINVAL). Once txn_begin was called,
 * flush no longer commits (see the backend's documentation). */
SEA_EXTERN int sea_producer_txn_begin(sea_producer_t *p);
SEA_EXTERN int sea_producer_txn_commit(sea_producer_t *p, sea_done_cb cb, void *data);
SEA_EXTERN int sea_producer_txn_abort(sea_producer_t *p, sea_done_cb cb, void *data);
SEA_EXTERN int sea_producer_txn_send_offsets(sea_producer_t *p, sea_consumer_t *c, sea_done_cb cb,
                                             void *data);
SEA_EXTERN size_t sea_producer_inflight(const sea_producer_t *p);
SEA_EXTERN int sea_producer_error(const sea_producer_t *p);
SEA_EXTERN const char *sea_producer_errmsg(const sea_producer_t *p);
SEA_EXTERN void *sea_producer_get_data(const sea_producer_t *p);
SEA_EXTERN void sea_producer_set_data(sea_producer_t *p, void *data);

/* ---------------------------------------------------------------------------------------------
 * Consumer
 * ------------------------------------------------------------------------------------------- */

typedef void (*sea_batch_cb)(sea_consumer_t *c, const sea_batch_t *batch);
/* The consumer stopped: SEA_EOF at a clean end, or an error (see sea_consumer_errmsg). Every
 * message before the failure point was delivered first. */
typedef void (*sea_end_cb)(sea_consumer_t *c, int status);
/* A rebalance took partitions from this group member (Kafka, load-balanced), before anything of
 * the new assignment is delivered. incremental: 1 if the consumer keeps its other partitions
 * and positions (cooperative), 0 if it resumes everything from the group's committed positions.
 * Messages of revoked partitions that are delivered but not yet acked go to their new owner;
 * acks for them are refused. */
typedef void (*sea_revoke_cb)(sea_consumer_t *c, int incremental);

/* Subscribes to the URI's keys (all keys if it names none). opts may be NULL. */
SEA_EXTERN int sea_consumer_open(sea_streamer_t *s, const sea_options_t *opts,
                                 sea_consumer_t **out);
SEA_EXTERN int sea_consumer_start(sea_consumer_t *c, sea_batch_cb on_batch, sea_end_cb on_end);
SEA_EXTERN int sea_consumer_pause(sea_consumer_t *c);
SEA_EXTERN int sea_consumer_resume(sea_consumer_t *c);
SEA_EXTERN int sea_consumer_seek(sea_consumer_t *c, int64_t timestamp_us, sea_done_cb cb,
                                 void *data);
SEA_EXTERN int sea_consumer_rewind(sea_consumer_t *c, sea_pos_t pos, sea_done_cb cb, void *data);
SEA_EXTERN int sea_consumer_assign(sea_consumer_t *c, const char *stream_key, uint64_t shard);
SEA_EXTERN int sea_consumer_unassign(sea_consumer_t *c, const char *stream_key, uint64_t shard);
/* Mark a message processed. */
SEA_EXTERN int sea_consumer_ack(sea_consumer_t *c, const sea_message_t *m);
/* Mark a position processed without its message: everything up to and including seq in
 * (stream_key, shard); the next commit commits after it. Backends whose seq numbers are
 * positions offer it (kafka: the offset); the others answer SEA_ENOTSUP. */
SEA_EXTERN int sea_consumer_ack_pos(sea_consumer_t *c, const char *stream_key, uint64_t shard,
                                    uint64_t seq);
/* Durably commit everything acked so far. */
SEA_EXTERN int sea_consumer_commit(sea_consumer_t *c, sea_done_cb cb, void *data);
SEA_EXTERN void sea_consumer_close(sea_consumer_t *c);
SEA_EXTERN sea_mode_t sea_consumer_mode(const sea_consumer_t *c);
SEA_EXTERN int sea_consumer_error(const sea_consumer_t *c);
SEA_EXTERN const char *sea_consumer_errmsg(const sea_consumer_t *c);
SEA_EXTERN void *sea_consumer_get_data(const sea_consumer_t *c);
/* Be told of rebalances that take partitions away (NULL: not told). */
SEA_EXTERN void sea_consumer_on_revoke(sea_consumer_t *c, sea_revoke_cb cb);
SEA_EXTERN void sea_consumer_set_data(sea_consumer_t *c, void *data);

/* What the consumer's backend knows now of its lag, per stream and shard it reads: fills
 * out[0 .. min(n, cap)) and returns n, the number of entries (call again with more room if n >
 * cap), or SEA_ENOTSUP for a backend that cannot know (stdio, mem). Never blocks: it is a
 * snapshot of what the backend last learned, which a call also refreshes in the background where
 * that takes a round trip. kafka: high watermark minus position per assigned partition, from
 * librdkafka's cached watermarks (updated by fetches, and by statistics.interval.ms); -1 until a
 * partition has both. redis: a group's `lag` (XINFO GROUPS, Redis 7, asked on the consumer's
 * connection at each call and answered for the next), and 0 for every stream once a read found
 * nothing new (caught up); a realtime reader knows only the latter (-1 before). file: one entry
 * per key read ("*" for every key): lag_bytes is the file's size minus the read position, lag is
 * 0 at the end and -1 (unknown) before it (counting messages would mean reading them). The lag
 * is what the backend has not delivered yet: messages delivered and not yet processed (a
 * pipeline's read-ahead, a paused input's batch) are not in it. */
SEA_EXTERN int sea_consumer_lag(sea_consumer_t *c, sea_lag_t *out, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * Pipeline: consume → process → produce → acknowledge → commit, with the delivery contract of
 * docs/delivery.md. Inputs are consumers, outputs are producers; a processor (a C callback) turns
 * input messages into output sends. An input message is done once the processor returned for it
 * and every send it made (dead-letters included) has its receipt; it is acknowledged to its
 * backend only once it and every message its input delivered before it are done, and positions
 * are committed on a timer (commit_interval_ms) and when the pipeline stops. A crash therefore
 * costs duplicates (what was done but not yet committed), never a message. `consume`, `relay`
 * and `seastreamer run` are configurations of it.
 * ------------------------------------------------------------------------------------------- */
typedef struct sea_pipeline sea_pipeline_t;

/* What happens to messages the processor rejects (see sea_pipeline_reject). */
typedef enum {
  SEA_ON_ERROR_STOP = 0,       /* the pipeline stops; the message and all after it stay
                                  uncommitted (a rerun gets them again) */
  SEA_ON_ERROR_SKIP = 1,       /* the message counts as done, nothing is sent for it */
  SEA_ON_ERROR_DEAD_LETTER = 2 /* the message is sent as it is to the dead-letter output; it is
                                  done once that send has its receipt */
} sea_on_error_t;

/* The processor: handles input messages batch->msgs[first .. first+count) of input `input` (the
 * index sea_pipeline_add_input returned). count is 1 unless the pipeline was configured with
 * per_batch. It sends what it produces with sea_pipeline_send; those sends belong to the messages
 * it was handed. Returns 0 (every message handled), a number n from 1 to count - 1 (the first n
 * were handled; the rest are handed again later, e.g. once sea_pipeline_full says the outputs
 * have room), or a negative code, usually the one sea_pipeline_reject returns (the error policy
 * applies to all count messages; the code is the pipeline's status if the policy stops it). When
 * an output has failed, the pipeline stops whatever the policy: no policy skips what an output
 * could not take; nor when the processor failed the pipeline in the call (sea_pipeline_fail):
 * the rejected messages then stay undone, as under SEA_ON_ERROR_STOP. */
typedef int (*sea_pipeline_process_cb)(sea_pipeline_t *pl, size_t input, const sea_batch_t *batch,
                                       size_t first, size_t count, void *data);
/* The pipeline finished: every input stopped or the pipeline was stopped, the outputs confirmed
 * (or failed), and what was done is committed. status 0 or the first failure
 * (sea_pipeline_errmsg). */
typedef void (*sea_pipeline_done_cb)(sea_pipeline_t *pl, int status);
/* Optional notifications: the pipeline starts stopping (outputs still take sends: last words of a
 * processor); every input ended (with linger set, the pipeline waits for sea_pipeline_stop);
 * a message was skipped or dead-lettered, with the reason. */
typedef void (*sea_pipeline_event_cb)(sea_pipeline_t *pl, void *data);
typedef void (*sea_pipeline_skip_cb)(sea_pipeline_t *pl, size_t input, const sea_message_t *m,
                                     const char *why, void *data);

typedef struct sea_pipeline_config {
  size_t struct_size;          /* sizeof(sea_pipeline_config_t); 0 is taken as this size */
  uint64_t max_count;          /* stop after this many input messages were handed to the
                                  processor (0 = no limit): exactly those are committed */
  uint64_t commit_interval_ms; /* 0 = 1000 */
  sea_on_error_t on_error;
  size_t dead_letter; /* with SEA_ON_ERROR_DEAD_LETTER: the output index */
  int per_batch;      /* hand the processor a batch's messages in one call */
  int linger;         /* the end of every input does not stop the pipeline */
  int end_outputs;    /* on stop, end the outputs (sea_producer_end) instead of flushing them */
  sea_pipeline_process_cb process;
  void *data; /* handed to every callback */
  sea_pipeline_event_cb on_stopping;
  sea_pipeline_event_cb on_inputs_ended;
  sea_pipeline_skip_cb on_skipped;
  sea_pipeline_done_cb on_done;
  /* Exactly once (Kafka → Kafka): every commit window is one transaction holding every send of
   * the window (dead-letters included) and the inputs' positions (send_offsets); a stop commits
   * it, a failure aborts it. Every input must keep positions in a group and every output must be
   * on the transactions-capable backend and cluster of output 0: the pipeline opens one
   * transactional producer there and every output's sends go through it (to that output's
   * stream key), so sea_pipeline_start refuses anything else, naming it. transactional_id: NULL
   * derives one from the inputs' groups and stream keys (and, for a load-balanced input, this
   * host's name): a restart with the same inputs fences and aborts its dead predecessor's
   * transaction. Instances sharing a group on one host need ids of their own. */
  int exactly_once;
  const char *transactional_id;
  /* Join (appended after transactional_id: a struct_size that ends before join leaves it off).
   * Hand the processor the messages of every input in timestamp order (as the Rust
   * SeaStreamer's StreamJoin), ties broken by stream key, then input index, then shard. A lane is
   * one shard of one stream key of one input: it keeps its own delivery order, and its messages
   * are buffered until the next one in time order is known: every lane that has not ended has a
   * message buffered. A lane with nothing buffered is silent; the join waits for it until it has
   * been silent for join_wait_ms (since its last message arrived), and no message waits longer
   * than join_wait_ms for silent lanes (since it arrived). An input that has delivered nothing yet
   * is expected as a lane of its own (one for each stream key its URI names) from the start. An
   * ended input (stop_at_end) never holds the join back. A message that arrives after one that
   * sorts after it was processed is late: it is processed as soon as its lane allows and
   * counted (stats.late). At join_max_buffered buffered messages, the inputs that hold some are
   * paused (the others are what the join waits for) until the join released some: nothing is
   * dropped. With per_batch, a call gets a run of consecutive messages of one consumed batch
   * that the join releases one after the other (often just one). An input's messages may be
   * processed out of its delivery order; each is still acknowledged only once it and every
   * message its input delivered before it are done. Not with exactly_once (refused at start). */
  int join;
  uint64_t join_wait_ms;    /* 0 = 1000 */
  size_t join_max_buffered; /* 0 = 100000 */
  /* Hold (appended after join_max_buffered), for a processor whose output for a message comes
   * later, from a timer or on_stopping (a window's aggregate): every message handed to the
   * processor is held past its call, until sea_pipeline_release. A message held is done only
   * once it is released and every send made outside the processor's calls between its hold and
   * that release (the timer's aggregate) has its receipt, besides its own sends. A stop does not
   * release: on_stopping may send the last window, then release. Messages never released are
   * never acknowledged, so a crash, a failure or a stop before a release costs duplicates, never
   * a message. Their batches stay in memory until then. Not with exactly_once (refused at
   * start). */
  int hold;
} sea_pipeline_config_t;

typedef struct sea_pipeline_stats {
  uint64_t processed;     /* input messages handed to the processor */
  uint64_t done;          /* input messages done (acknowledged where the input keeps positions) */
  uint64_t sent;          /* sends accepted by the outputs */
  uint64_t receipted;     /* sends confirmed */
  uint64_t skipped;       /* rejected and skipped or dead-lettered */
  uint64_t commits;       /* commits completed (exactly once: transactions committed) */
  uint64_t aborts;        /* exactly once: transactions aborted (a failure, a rebalance) */
  uint64_t late;          /* joined: messages that arrived after a later one was processed */
  uint64_t join_buffered; /* joined: messages waiting in the join now */
  uint64_t bytes_in;      /* payload bytes of the input messages handed to the processor */
  uint64_t bytes_out;     /* payload bytes of the sends accepted by the outputs */
  uint64_t reserved[3];
} sea_pipeline_stats_t;

SEA_EXTERN int sea_pipeline_new(sea_runtime_t *rt, const sea_pipeline_config_t *cfg,
                                sea_pipeline_t **out);
/* Hand a consumer (not started) to the pipeline, which starts it, takes its callbacks and data,
 * and closes it when freed. *index (may be NULL) is its input index. */
SEA_EXTERN int sea_pipeline_add_input(sea_pipeline_t *pl, sea_consumer_t *c, size_t *index);
/* Hand a producer to the pipeline (it takes its callbacks and data and closes it when freed). */
SEA_EXTERN int sea_pipeline_add_output(sea_pipeline_t *pl, sea_producer_t *p, size_t *index);
/* Start every input. On failure the pipeline is stopping (its done callback still comes) and
 * sea_pipeline_errmsg says why. */
SEA_EXTERN int sea_pipeline_start(sea_pipeline_t *pl);
/* Let go every message held so far (cfg.hold): each is done once the sends made outside the
 * processor's calls since it was held have their receipts. Call it outside the processor's calls
 * (after a timer's sends, in on_stopping). 0, or SEA_EINVAL (no pipeline, or inside a call). */
SEA_EXTERN int sea_pipeline_release(sea_pipeline_t *pl);
/* Send m to an output. Inside the processor the send belongs to the messages it was handed;
 * elsewhere (a timer, on_stopping) to the messages held (cfg.hold), or to none. A full output keeps
 * the message (its block is retained, bytes without a block are copied) and the pipeline pauses its
 * inputs until the output drains, so this returns 0, or an error for a message the output refuses
 * (nothing was taken). flags: SEA_PIPELINE_KEEP_META passes seq, shard and timestamp to backends
 * that can keep them. */
#define SEA_PIPELINE_KEEP_META 1u
SEA_EXTERN int sea_pipeline_send(sea_pipeline_t *pl, size_t output, const sea_message_t *m,
                                 unsigned flags);
/* Nonzero while an output holds a send it could not take yet (the inputs are paused): a batch
 * processor may return how many messages it handled and get the rest later. */
SEA_EXTERN int sea_pipeline_full(const sea_pipeline_t *pl);
/* The processor rejects the messages it was handed: records why and returns SEA_EINVAL, to be
 * returned by the processor. */
SEA_EXTERN int sea_pipeline_reject(sea_pipeline_t *pl, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* The same for only the first n (>= 1) of the messages handed: the policy applies to them, the
 * rest are handed again later (a per-message processor running over a batch stops at a failing
 * message this way). Sends made in the call belong to the first message handed. */
SEA_EXTERN int sea_pipeline_reject_first(sea_pipeline_t *pl, size_t n, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Fail the pipeline: keep status and the message (the first failure wins), then stop. What was
 * done before is still committed. */
SEA_EXTERN void sea_pipeline_fail(sea_pipeline_t *pl, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Stop: no more input; inside the processor, once the current call returns (the messages it was
 * handed count as processed). The outputs confirm, what is done is committed, then on_done. */
SEA_EXTERN void sea_pipeline_stop(sea_pipeline_t *pl);
SEA_EXTERN const char *sea_pipeline_errmsg(const sea_pipeline_t *pl);
SEA_EXTERN int sea_pipeline_status(const sea_pipeline_t *pl);
SEA_EXTERN void sea_pipeline_stats(const sea_pipeline_t *pl, sea_pipeline_stats_t *out);
/* Progress on stderr (`--stats`, `--stats-json`): every interval_ms (0 = 5000) one line, and one
 * last line once the pipeline is done (before on_done): messages and payload bytes in
 * (stats.processed, bytes_in) and out (stats.sent, bytes_out), their rates per second over the
 * interval (the last line: over the whole run), in flight (sent minus receipted) and each input's
 * lag (sea_consumer_lag). flags: SEA_STATS_JSON writes each as one JSON object per line instead:
 * {"time", "elapsed_s", "messages_in", "messages_out", "bytes_in", "bytes_out", "confirmed",
 * "inflight", "skipped", "commits", "rate_in", "rate_out", "bytes_rate_in", "bytes_rate_out",
 * "lag": [{"input", "stream", "shard", "lag", "lag_bytes"}], "final"} (an unknown lag is null).
 * Reading the counters changes nothing in delivery. Call it before or after sea_pipeline_start;
 * again to change the interval. */
#define SEA_STATS_JSON 1u
SEA_EXTERN int sea_pipeline_report_stats(sea_pipeline_t *pl, uint64_t interval_ms, unsigned flags);
/* One stats line as sea_pipeline_report_stats writes it (final: the last line's form), into buf
 * (always NUL-terminated). Returns the length it needed, as snprintf. */
SEA_EXTERN size_t sea_pipeline_stats_line(sea_pipeline_t *pl, unsigned flags, int final, char *buf,
                                          size_t len);

/* Metrics (`--metrics HOST:PORT`): an HTTP endpoint serving GET /metrics in Prometheus' text
 * exposition format 0.0.4, from the runtime's own loop (libmicrohttpd without a thread of its
 * own: its sockets are polled by the loop, and the counters are read on the loop's thread, as
 * sea_pipeline_stats reads them). The numbers are a pipeline's stats (the same as
 * sea_pipeline_report_stats prints) by input and output, each input's lag, errors by kind and
 * process_start_time_seconds; docs/delivery.md names them. Other paths answer 404, other
 * methods 405. */
typedef struct sea_metrics sea_metrics_t;
/* Listen on host_port, "HOST:PORT", "[IPV6]:PORT" or ":PORT" (every IPv4 interface); HOST may
 * be a name (resolved now). Port 0 takes a free port (sea_metrics_port). Binds and listens
 * before it returns: SEA_EINVAL for an address that does not parse, resolve or bind (in use,
 * not local), with the reason in sea_runtime_errmsg. The endpoint does not keep the loop alive.
 * Close it (sea_metrics_close) before freeing the runtime. */
SEA_EXTERN int sea_metrics_serve(sea_runtime_t *rt, const char *host_port, sea_metrics_t **out);
/* What the endpoint reports: pl (NULL: only the process's start time). pl must outlive it or be
 * replaced (NULL) before it is freed. */
SEA_EXTERN void sea_metrics_set_pipeline(sea_metrics_t *m, sea_pipeline_t *pl);
/* The port it listens on. */
SEA_EXTERN int sea_metrics_port(const sea_metrics_t *m);
/* The body GET /metrics answers now, into buf (NUL-terminated); returns the length it needed,
 * as snprintf. */
SEA_EXTERN size_t sea_metrics_text(const sea_metrics_t *m, char *buf, size_t len);
/* Stop listening, drop open connections and free it. NULL is allowed. */
SEA_EXTERN void sea_metrics_close(sea_metrics_t *m);
SEA_EXTERN sea_producer_t *sea_pipeline_output(const sea_pipeline_t *pl, size_t index);
SEA_EXTERN sea_consumer_t *sea_pipeline_input(const sea_pipeline_t *pl, size_t index);
/* The config's data pointer. */
SEA_EXTERN void *sea_pipeline_get_data(const sea_pipeline_t *pl);
/* Close the outputs (receipts not yet in are canceled: their messages stay uncommitted), then the
 * inputs, and free the pipeline. Safe at any time, including before on_done; not inside one of
 * its own callbacks. */
SEA_EXTERN void sea_pipeline_free(sea_pipeline_t *pl);

/* ---------------------------------------------------------------------------------------------
 * Relay: a pipeline with one input, one output and the identity processor (what `relay`,
 * `consume` and `produce` run).
 * ------------------------------------------------------------------------------------------- */
typedef struct sea_relay sea_relay_t;
typedef void (*sea_relay_done_cb)(sea_relay_t *r, int status);

typedef struct sea_relay_config {
  uint64_t max_count;           /* stop after this many messages (0 = no limit); exactly these
                                   are committed */
  int keep_stream_key;          /* send to each message's own key even if the output is anchored (a
                                   message without a key of its own, "broadcast", still goes to the
                                   anchored key) */
  const char *message_key;      /* set this message key (Kafka key) on every message without a
                                   key of its own (as kcat -k with -K), or NULL */
  int keep_meta;                /* pass the input header (seq, shard, timestamp) to the output */
  uint64_t commit_interval_ms;  /* 0 = default (1000) */
  int exactly_once;             /* Kafka → Kafka in transactions (sea_pipeline_config_t) */
  const char *transactional_id; /* with exactly_once: NULL = derived */
  const sea_kv_t *headers;      /* add these headers to every message, after its own (kcat -H); */
  size_t header_count;          /* they must outlive the relay */
} sea_relay_config_t;

/* Takes both handles (the relay closes them when freed). */
SEA_EXTERN int sea_relay_start(sea_consumer_t *in, sea_producer_t *out,
                               const sea_relay_config_t *cfg, sea_relay_done_cb on_done,
                               sea_relay_t **out_relay);
/* Stop consuming, let the output confirm what was sent, commit, then call on_done. */
SEA_EXTERN void sea_relay_stop(sea_relay_t *r);
SEA_EXTERN uint64_t sea_relay_count(const sea_relay_t *r);
SEA_EXTERN const char *sea_relay_errmsg(const sea_relay_t *r);
SEA_EXTERN sea_pipeline_t *sea_relay_pipeline(sea_relay_t *r);
/* Close both handles (the producer first, canceling receipts not yet in) and free the relay. */
SEA_EXTERN void sea_relay_free(sea_relay_t *r);

#ifdef __cplusplus
}
#endif
#endif /* SEASTREAMER_H */
