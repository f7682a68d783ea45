/* plugin.h: the backend plugin ABI, version 1. A plugin includes this header (which includes
 * seastreamer/types.h for the plain data types, and nothing of the user API) and nothing else of
 * the host: it calls the host only through the sea_host_t table it is given, and never links
 * libuv or libseastreamer. seastreamer.h (the user API) and this header refuse each other.
 *
 * Rules that keep old plugins loading in new hosts and the reverse:
 *  - sea_host_t and sea_plugin_t begin with abi_major, abi_minor, struct_size, and end with
 *    reserved slots. Existing members never move. A member added by a later minor takes the place
 *    of the first reserved slot (so the struct keeps its size while slots last) and says in a
 *    comment which minor added it; a reader knows it is there from abi_minor.
 *  - The loader refuses a different major, a minor newer than its own, a struct_size smaller than
 *    the v1.0 struct, or a missing required operation.
 *  - A plugin checks host->abi_minor (or host->struct_size) before calling a member added later.
 */
#ifndef SEASTREAMER_PLUGIN_H
#define SEASTREAMER_PLUGIN_H

#if defined(SEASTREAMER_H) && !defined(SEA_HOST_INTERNAL)
#error                                                                                             \
    "seastreamer/plugin.h included with seastreamer/seastreamer.h: a plugin must not call the user API; it includes seastreamer/plugin.h only and calls the host through its sea_host_t table (docs/plugins.md)"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "types.h"
#if SEA_TYPES_VERSION_MAJOR != 1
#error "seastreamer/types.h of another major than this plugin.h (ABI 1) was written for"
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SEA_PLUGIN_ABI_MAJOR 1
/* 1.1 added sea_plugin_t.list (in its first reserved slot). 1.2: consumer_rewind may get
 * SEA_POS_COMMITTED_ (sent only to a plugin of 1.2 or later). 1.3 added sea_plugin_t.commands.
 * 1.4 (types): the data types moved to seastreamer/types.h (1.0), where sea_message_t and
 * sea_lag_t got reserved room: a new size, so the host refuses plugins of 1.0 to 1.3.
 * 1.4 (options): sea_plugin_t.options (a declared option table) and the host's typed getters.
 * 1.4 (loop): timer_init/start/stop (1.0's timer_start and timer_stop are timer_new and
 * timer_close), the 0 ms timer as a next-turn defer, va_list twins of the printf members, and
 * streamer_error, producer_error, consumer_error (an error bound to the handle).
 * 1.4 (flush and pause in the host): sea_plugin_t.producer_push; the host completes flush and end
 * from the receipts and holds deliveries while a consumer is paused. */
#define SEA_PLUGIN_ABI_MINOR 4

/* The host's printf-style members are checked as printf calls where the compiler can (GCC, Clang):
 * a format and arguments that do not match are a warning at the plugin's call. */
#if defined(__GNUC__) || defined(__clang__)
#define SEA_PLUGIN_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define SEA_PLUGIN_PRINTF(fmt, args)
#endif

/* The one symbol a plugin exports. */
#define SEA_PLUGIN_ENTRY_SYMBOL "sea_plugin_entry"

/* Define the entry point. In a .so build it is the exported `sea_plugin_entry`; when the backend is
 * linked into a program (SEA_PLUGIN_STATIC defined) it is `sea_plugin_entry_<name>` so that several
 * backends can live in one binary (SQLite's SQLITE_CORE idea). */
#ifdef SEA_PLUGIN_STATIC
#define SEA_PLUGIN_ENTRY(name)                                                                     \
  const sea_plugin_t *sea_plugin_entry_##name(const sea_host_t *host);                             \
  const sea_plugin_t *sea_plugin_entry_##name(const sea_host_t *host)
#else
#define SEA_PLUGIN_ENTRY(name)                                                                     \
  SEA_EXTERN const sea_plugin_t *sea_plugin_entry(const sea_host_t *host);                         \
  SEA_EXTERN const sea_plugin_t *sea_plugin_entry(const sea_host_t *host)
#endif

/* The host table has one name in every plugin: `sea_host`. SEA_PLUGIN_INIT defines it, in the file
 * that holds the entry point; the plugin's other files declare it with SEA_PLUGIN_HOST_DECL. It
 * is hidden (never exported from the .so). When backends are linked into one program
 * (SEA_PLUGIN_STATIC), each one's table is its own symbol, sea_host_<SEA_PLUGIN_NAME>, where the
 * build defines SEA_PLUGIN_NAME (the project's plugins/CMakeLists.txt does); the source still
 * says sea_host. */
#define SEA_PLUGIN_CAT_(a, b) a##b
#define SEA_PLUGIN_CAT(a, b) SEA_PLUGIN_CAT_(a, b)
#if defined(SEA_PLUGIN_STATIC) && defined(SEA_PLUGIN_NAME)
#define sea_host SEA_PLUGIN_CAT(sea_host_, SEA_PLUGIN_NAME)
#endif
#if defined(__GNUC__) || defined(__clang__)
#define SEA_PLUGIN_HIDDEN __attribute__((visibility("hidden")))
#else
#define SEA_PLUGIN_HIDDEN
#endif
#define SEA_PLUGIN_HOST_DECL extern SEA_PLUGIN_HIDDEN const struct sea_host *sea_host

/* The usual entry point: keep the host table in sea_host and hand the host `descriptor` (a
 * sea_plugin_t), refusing a host of another major or of a minor older than the one the plugin is
 * built against (the loader then says "its entry returned no descriptor"). A plugin that runs on
 * older hosts of its major (checking host->abi_minor before each later member), or that must do
 * more at load, writes SEA_PLUGIN_ENTRY itself. */
#define SEA_PLUGIN_INIT(name, descriptor)                                                          \
  SEA_PLUGIN_HOST_DECL;                                                                            \
  SEA_PLUGIN_HIDDEN const struct sea_host *sea_host;                                               \
  SEA_PLUGIN_ENTRY(name) {                                                                         \
    if (host == NULL || host->abi_major != SEA_PLUGIN_ABI_MAJOR ||                                 \
        host->abi_minor < SEA_PLUGIN_ABI_MINOR)                                                    \
      return NULL;                                                                                 \
    sea_host = host;                                                                               \
    return &(descriptor);                                                                          \
  }

/* Opaque host objects handed to plugins. */
typedef struct sea_watch sea_watch_t;
typedef struct sea_timer sea_timer_t;
typedef struct sea_wakeup sea_wakeup_t;
typedef struct sea_op sea_op_t; /* an asynchronous operation the plugin completes with op_done */
typedef struct sea_fswatch sea_fswatch_t;

enum { SEA_LOG_ERROR = 0, SEA_LOG_WARN = 1, SEA_LOG_INFO = 2, SEA_LOG_DEBUG = 3 };
enum { SEA_WATCH_READABLE = 1, SEA_WATCH_WRITABLE = 2 };

/* events: SEA_WATCH_* bits that are ready; status < 0 on a poll error (EPOLLERR: a reset
 * socket, a pipe whose reader left). After an error the watch has stopped (libuv stops a poll
 * that errs) and calls back no more: read or write to learn what happened, and watch_stop it;
 * a new watch_start on the fd watches on. */
typedef void (*sea_watch_cb)(sea_watch_t *w, int status, int events, void *data);
typedef void (*sea_timer_cb)(sea_timer_t *t, void *data);
typedef void (*sea_wakeup_cb)(sea_wakeup_t *w, void *data);
typedef void (*sea_fswatch_cb)(sea_fswatch_t *w, int status, void *data);
typedef void (*sea_work_cb)(void *data);                   /* runs on a thread-pool thread */
typedef void (*sea_after_work_cb)(void *data, int status); /* back on the loop thread */

/* Producer send flags. */
enum {
  /* The message's seq/shard came from an input (relay with keep_meta): keep them if the backend
   * can (stdio prints them), else assign as usual. */
  SEA_SEND_KEEP_META = 1u << 0
};

/* ---- Declared options (ABI 1.4) ------------------------------------------------------------
 * A plugin lists every backend option it reads in a table (sea_plugin_t.options), ended by an
 * entry whose key is NULL. The host then checks the options of every connect, producer_open and
 * consumer_open against it before calling the plugin: an unknown key is refused with the key it
 * is likely a typo of and every valid key; a bad value with one line naming the key, the value
 * and what is allowed. The plugin reads the values with the host's typed getters (option_u64,
 * option_bool, option_enum, option_str), which return the value given or the table's default,
 * so it parses nothing itself.
 *
 * Rules for the table (the loader refuses a plugin whose table breaks them, naming the entry):
 *  - key: letters, digits, '.', '_', '-'; each key once. A key ending in '*' is a pattern: "*"
 *    takes every key not declared, "ssl.*" every key with that prefix. The host checks no value
 *    of a pattern's keys and passes them through: the plugin checks them (and refuses an unknown
 *    one with host->option_unknown(rt, name, key, NULL)). Its help is shown after the keys, as
 *    "(and <help>)".
 *  - def: the default as a user would write it, checked like a given value (NULL: no default;
 *    the getters then return 0, 0, 0 and NULL).
 *  - The entry's layout is fixed for ABI 1.x: a later minor gives meaning to a reserved member
 *    (zero until then) and says so here; the host reads it only from plugins of that minor. */
enum {
  SEA_OPT_U64 = 1,  /* a decimal whole number in [min, max] (max 0: up to UINT64_MAX) */
  SEA_OPT_MS = 2,   /* a duration: a whole number of milliseconds in [min, max], as SEA_OPT_U64 */
  SEA_OPT_BOOL = 3, /* true|false (also 1|0 and yes|no) */
  SEA_OPT_ENUM = 4, /* one of the words of values ("auto|new|existing"); option_enum: its index */
  SEA_OPT_STR = 5   /* any text of min to max bytes (max 0: no limit); the plugin checks more */
};

/* Which opens an option is for (flags). 0: all of them. At connect every key is accepted (the
 * streamer's options are shared by its producers and consumers); a producer_open is refused a
 * SEA_OPT_CONSUMER-only key and the reverse. */
enum { SEA_OPT_PRODUCER = 1u << 0, SEA_OPT_CONSUMER = 1u << 1 };

typedef struct sea_option_spec {
  const char *key;    /* NULL ends the table */
  uint32_t type;      /* SEA_OPT_* */
  uint32_t flags;     /* SEA_OPT_PRODUCER, SEA_OPT_CONSUMER, or 0 */
  uint64_t min, max;  /* U64/MS: the range; STR: the length in bytes (max 0: no upper bound) */
  const char *def;    /* the default, as text (or NULL) */
  const char *values; /* ENUM: the words, separated by '|' */
  const char *help;   /* one short line: what it does (the units, what 0 means) */
  void *reserved[4];
} sea_option_spec_t;

/* Everything a producer or consumer gets when it opens. */
typedef struct sea_open_args {
  uint32_t struct_size;
  sea_runtime_t *rt; /* pass to loop hooks */
  const sea_uri_t *uri;
  const sea_options_t *backend_options; /* only keys the host does not know */
  /* producer */
  const char *anchor; /* interned, or NULL */
  size_t max_payload;
  /* consumer */
  sea_mode_t mode;
  const char *group;       /* NULL unless given */
  const char *const *keys; /* interned subscription; key_count 0 = every key */
  size_t key_count;
  int reset_earliest; /* 1 = earliest, 0 = latest */
  int has_start;      /* start=: where to start (start_pos or start_ts_us) */
  int start_is_time;
  sea_pos_t start_pos;
  int64_t start_ts_us;
  int64_t start_from_end; /* start=-N: N messages before the end (0 = unused) */
  int stop_at_end;
  uint32_t batch_size;
  uint64_t timeout_ms; /* timeout=, for producers too (0 = unset) */
} sea_open_args_t;

/* What a listing asks (sea_plugin_t.list, added in ABI 1.1). */
typedef void (*sea_list_emit_fn)(void *ctx, const sea_list_row_t *row);
typedef struct sea_list_args {
  uint32_t struct_size;
  sea_runtime_t *rt;       /* pass to loop hooks */
  const char *const *keys; /* only these stream keys (not interned); key_count 0 = every key */
  size_t key_count;
  uint64_t timeout_ms; /* bound on the round trips (timeout=); 0 = the backend's default */
  sea_list_emit_fn emit;
  void *ctx;
} sea_list_args_t;

typedef struct sea_host {
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t struct_size;
  uint32_t reserved0;

  /* Logging. SEASTREAMER_LOG=error|warn|info|debug picks what is printed (to stderr). */
  void (*log)(int level, const char *plugin, const char *fmt, ...) SEA_PLUGIN_PRINTF(3, 4);

  /* Memory: the host's allocator; what a plugin hands the host (batches) is freed with it. */
  void *(*alloc)(size_t size);
  void *(*calloc)(size_t n, size_t size);
  void *(*realloc)(void *p, size_t size);
  void (*free)(void *p);

  /* Loop: watch an fd (regular files are reported ready at once and on every turn while watched,
   * since epoll cannot watch them), timers, a cross-thread wakeup, and blocking work on a thread.
   * Timers: see timer_init (ABI 1.4) for their lifecycle.
   */
  sea_watch_t *(*watch_start)(sea_runtime_t *rt, int fd, int events, sea_watch_cb cb, void *data);
  int (*watch_update)(sea_watch_t *w, int events);
  void (*watch_stop)(sea_watch_t *w); /* frees w; no callback after this */
  /* ABI 1.0's one call for a timer (it was named timer_start until 1.3): timer_init then
   * timer_start; NULL if out of memory. */
  sea_timer_t *(*timer_new)(sea_runtime_t *rt, uint64_t timeout_ms, uint64_t repeat_ms,
                            sea_timer_cb cb, void *data);
  /* Stop t and free it: no callback after this, and it may be called from t's own callback. NULL
   * is ignored. (Named timer_stop until ABI 1.3, which did the same.) */
  void (*timer_close)(sea_timer_t *t);
  sea_wakeup_t *(*wakeup_new)(sea_runtime_t *rt, sea_wakeup_cb cb, void *data);
  void (*wakeup_send)(sea_wakeup_t *w); /* any thread; several sends may merge into one callback */
  void (*wakeup_close)(sea_wakeup_t *w);
  int (*queue_work)(sea_runtime_t *rt, sea_work_cb work, sea_after_work_cb after, void *data);
  uint64_t (*now_ms)(sea_runtime_t *rt); /* the loop's monotonic clock */

  /* Blocks, batches and keys. */
  sea_block_t *(*block_new)(size_t size);
  sea_block_t *(*block_ref)(sea_block_t *b);
  void (*block_unref)(sea_block_t *b);
  uint8_t *(*block_data)(sea_block_t *b);
  /* A batch with room for cap messages (count starts at 0). Each message's payload.block
   * reference belongs to the batch, which unrefs it when the batch is released. */
  sea_batch_t *(*batch_new)(size_t cap);
  void (*batch_release)(const sea_batch_t *b);
  /* Intern a stream key; NULL if not valid. */
  const char *(*stream_key)(const char *key, size_t len);
  size_t (*format_timestamp)(int64_t timestamp_us, char *buf);
  int (*parse_timestamp)(const char *s, size_t len, int64_t *timestamp_us);
  int64_t (*now_us)(void);

  /* Options. */
  const char *(*option_get)(const sea_options_t *o, const char *key);
  size_t (*option_count)(const sea_options_t *o);
  int (*option_at)(const sea_options_t *o, size_t i, const char **key, const char **value);

  /* Back to the host: consumers. deliver takes ownership of the batch. end reports that the
   * consumer stopped (SEA_EOF or an error, message printf-style) after its last delivery. */
  void (*deliver)(sea_consumer_t *c, sea_batch_t *batch);
  void (*consumer_end)(sea_consumer_t *c, int status, const char *fmt, ...) SEA_PLUGIN_PRINTF(3, 4);
  /* Producers. receipt resolves one send with its token. ready says the plugin can take sends
   * again after its send returned SEA_EAGAIN. fail puts the producer in error with a message. */
  void (*receipt)(sea_producer_t *p, void *token, int status, const sea_meta_t *meta);
  void (*producer_ready)(sea_producer_t *p);
  void (*producer_fail)(sea_producer_t *p, int status, const char *fmt, ...)
      SEA_PLUGIN_PRINTF(3, 4);
  /* Complete an asynchronous operation (flush, end, seek, rewind, commit). */
  void (*op_done)(sea_op_t *op, int status, const char *fmt, ...) SEA_PLUGIN_PRINTF(3, 4);
  /* Set the message of the error the current operation is about to return (connect, open,
   * producer_send: the host words the refusal "send to '<key>': <message>", and the txn
   * operations: "txn_commit: <message>"). */
  void (*set_error)(sea_runtime_t *rt, const char *fmt, ...) SEA_PLUGIN_PRINTF(2, 3);

  /* For backends whose node is a path (file://./feed.ss): the host split the URI's last segment
   * off as stream keys; make everything after "scheme://" one node again, with no keys. Only
   * during connect, on the uri it was given. */
  int (*uri_path_only)(const sea_uri_t *uri);

  /* Watch a file for changes (libuv's file events: inotify on Linux). cb gets status 0 on a
   * change of the file (written, truncated, renamed, deleted), or SEA_EIO if the watch failed;
   * the callback says only "look again". NULL if the path cannot be watched (use a timer). */
  sea_fswatch_t *(*fswatch_start)(sea_runtime_t *rt, const char *path, sea_fswatch_cb cb,
                                  void *data);
  void (*fswatch_stop)(sea_fswatch_t *w); /* frees w; no callback after this */

  /* Consumers in a group: a rebalance took partitions away (on the loop thread, before anything
   * of the new assignment is delivered). incremental: 1 if the consumer keeps its other
   * partitions and their positions (a cooperative protocol), 0 if everything was revoked and
   * resumes from the group's committed positions. Added in ABI 1.0 (pre-release): a plugin
   * checks it is not NULL. */
  void (*consumer_revoked)(sea_consumer_t *c, int incremental);

  /* Refuse an option key the backend does not know: sets the error of the current connect/open
   * (as set_error) to one line naming key, the key it is likely a typo of ("did you mean
   * 'start'?") and the host's common keys and known (the backend's own, comma-separated).
   * Return SEA_EOPTION after it. Added in ABI 1.0 (pre-release): a plugin checks it is not NULL
   * (and words the error itself on an older host). Since ABI 1.4, known may be NULL: the keys of
   * the plugin's option table (for a key a pattern entry passed through, e.g. kafka's). */
  void (*option_unknown)(sea_runtime_t *rt, const char *plugin, const char *key, const char *known);

  /* Added in ABI 1.4 (options): typed getters over the plugin's option table (see
   * sea_option_spec_t). o is backend_options or args->backend_options of a plugin with a table,
   * which the host has checked: each returns the value given, else the table's default. They
   * may be called during connect/open only (the options live that long). A key the table does not
   * declare (or of another type) is a bug in the plugin: logged as an error, answered 0 or NULL.
   *  - option_u64: SEA_OPT_U64 and SEA_OPT_MS.
   *  - option_bool: SEA_OPT_BOOL: 1 or 0. Also reads the value of a SEA_OPT_STR key as a boolean
   *    (true|1|yes, false|0|no): 1, 0, or -1 if it is not one (or not given and no default).
   *  - option_enum: SEA_OPT_ENUM: the index of the word in values.
   *  - option_str: SEA_OPT_STR and SEA_OPT_ENUM: the text (valid as long as o). */
  uint64_t (*option_u64)(const sea_options_t *o, const char *key);
  int (*option_bool)(const sea_options_t *o, const char *key);
  int (*option_enum)(const sea_options_t *o, const char *key);
  const char *(*option_str)(const sea_options_t *o, const char *key);

  /* Added in ABI 1.4 (loop): timers with libuv's lifecycle, va_list twins of the printf-style
   * members, and errors bound to the handle. A plugin checks host->abi_minor >= 4 before calling
   * them.
   *
   * A timer is made once with timer_init (allocated, not running) and lives until timer_close
   * (ABI 1.0's member above). timer_start arms it, again and again: a running or pending timer
   * starts over with the new timeout. timer_stop disarms it and keeps it for a later start.
   * After timeout_ms the callback runs, then every repeat_ms (0: once; it stays made).
   *
   * timeout_ms 0 is the next-turn defer: the callback runs once, from the loop, after whatever
   * is running now has returned (never inside the call that started it), before the timers that
   * fall due later. One started from a timer callback (its own included) runs only after the
   * loop has polled its file descriptors, so a plugin that keeps "coming back next turn" cannot
   * starve I/O. Starting a pending 0 ms timer again changes nothing (it still runs once). This
   * is the way to give receipts, deliveries or op completions outside the call that caused them.
   *
   * timer_stop and timer_close may be called from any callback, the timer's own included; they
   * and timer_start take effect at once (a stopped or closed timer's callback does not run). */
  sea_timer_t *(*timer_init)(sea_runtime_t *rt, sea_timer_cb cb, void *data);  /* NULL: no memory */
  int (*timer_start)(sea_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms); /* 0, SEA_EINVAL */
  void (*timer_stop)(sea_timer_t *t);
  void (*logv)(int level, const char *plugin, const char *fmt, va_list ap) SEA_PLUGIN_PRINTF(3, 0);
  void (*consumer_endv)(sea_consumer_t *c, int status, const char *fmt, va_list ap)
      SEA_PLUGIN_PRINTF(3, 0);
  void (*producer_failv)(sea_producer_t *p, int status, const char *fmt, va_list ap)
      SEA_PLUGIN_PRINTF(3, 0);
  void (*op_donev)(sea_op_t *op, int status, const char *fmt, va_list ap) SEA_PLUGIN_PRINTF(3, 0);
  void (*set_errorv)(sea_runtime_t *rt, const char *fmt, va_list ap) SEA_PLUGIN_PRINTF(2, 0);
  /* The message of the error that the call on s, p or c now running is about to return, bound to
   * that handle: connect and list (s); producer_open, producer_send, producer_txn_* (p);
   * consumer_open and the consumer's calls (c). The host words it as it words set_error's
   * ("send to '<key>': <message>", "txn_commit: <message>"). set_error still works; a message
   * bound to the handle wins over it, and cannot be overwritten by a call on another handle
   * (set_error's buffer is the runtime's: a send made from inside another plugin call shares it).
   * Only during the call on that handle, on the loop thread. */
  void (*streamer_error)(sea_streamer_t *s, const char *fmt, ...) SEA_PLUGIN_PRINTF(2, 3);
  void (*streamer_errorv)(sea_streamer_t *s, const char *fmt, va_list ap) SEA_PLUGIN_PRINTF(2, 0);
  void (*producer_error)(sea_producer_t *p, const char *fmt, ...) SEA_PLUGIN_PRINTF(2, 3);
  void (*producer_errorv)(sea_producer_t *p, const char *fmt, va_list ap) SEA_PLUGIN_PRINTF(2, 0);
  void (*consumer_error)(sea_consumer_t *c, const char *fmt, ...) SEA_PLUGIN_PRINTF(2, 3);
  void (*consumer_errorv)(sea_consumer_t *c, const char *fmt, va_list ap) SEA_PLUGIN_PRINTF(2, 0);

  void *reserved[1];
} sea_host_t;

/* Capability bits (sea_plugin_t.caps): SEA_CAP_* in types.h. */

/* The host's own rewind kind (see consumer_rewind). Added in 1.2. */
#define SEA_POS_COMMITTED_ ((sea_pos_kind_t)3)

/* A command a plugin adds to the `seastreamer` command (sea_plugin_t.commands, ABI 1.3): the
 * tools that belong with a backend (the file backend's decode, verify and repair). run gets the
 * command's arguments (argv[0] is its name), parses them itself (getopt_long, -h/--help as every
 * command does) and returns the process's exit status: 0 success, 1 the stream or file failed,
 * 2 bad usage or input, 3 no backend. It runs in the command's process, outside any runtime
 * (no loop): it may block, and it calls neither the host table nor the user API. */
typedef struct sea_plugin_command {
  const char *name;    /* a word of a-z, e.g. "decode"; a name the host has already is ignored */
  const char *args;    /* its operands for `seastreamer --help`, e.g. "FILE" (or NULL) */
  const char *summary; /* what it does, one short line, e.g. "print a .ss file" */
  int (*run)(int argc, char **argv);
} sea_plugin_command_t;

/* A backend. Required operations: connect, disconnect, and producer_open/send/close or
 * consumer_open/start/close or both (a backend may be input-only or output-only). Optional
 * operations are NULL, and the host answers SEA_ENOTSUP "<op>: not supported by <name>". */
typedef struct sea_plugin {
  uint32_t abi_major;   /* SEA_PLUGIN_ABI_MAJOR */
  uint32_t abi_minor;   /* SEA_PLUGIN_ABI_MINOR */
  uint32_t struct_size; /* sizeof(sea_plugin_t) */
  uint32_t reserved0;

  const char *name;           /* "stdio" */
  const char *const *schemes; /* NULL-terminated: {"stdio", NULL} */
  const char *version;        /* "1.0.0" */
  const char *description;
  uint64_t caps;         /* SEA_CAP_* */
  uint16_t default_port; /* 0 = nodes need no port */
  uint16_t reserved1[3];

  /* Streamer. uri->nodes have their default port. Return 0 and *impl, or an error (after
   * host->set_error). */
  int (*connect)(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                 const sea_options_t *backend_options, void **impl);
  void (*disconnect)(void *streamer_impl);

  /* Producer. send copies the bytes it needs (or refs payload.block) before returning; it
   * returns 0, SEA_EAGAIN (not taken: call host->producer_ready later), or an error. */
  int (*producer_open)(void *streamer_impl, sea_producer_t *p, const sea_open_args_t *args,
                       void **impl);
  int (*producer_send)(void *producer_impl, const sea_message_t *m, unsigned flags, void *token);
  /* Flush and end: the host completes them itself once every send made before has its receipt
   * (a flush fails if one of those receipts failed or the producer failed), and tells the plugin
   * to write out what it buffers with producer_push (ABI 1.4; end: with end = 1, after which the
   * host refuses sends). Set producer_flush only where a flush means more than those receipts
   * (kafka: a transactional producer's flush commits): the host then calls it instead, for end
   * too, and the plugin completes op. ABI 1.0-1.3 had a producer_end here; every backend's end
   * was "flush, then refuse sends" or "an end marker, then flush", which the host and
   * producer_push now do, so from 1.4 the slot is unused (NULL) and never read. */
  int (*producer_flush)(void *producer_impl, sea_op_t *op);
  void *producer_end_unused;
  /* Close now; outstanding sends need no receipt (the host cancels them). */
  void (*producer_close)(void *producer_impl);

  /* Consumer. Deliveries start after consumer_start. */
  int (*consumer_open)(void *streamer_impl, sea_consumer_t *c, const sea_open_args_t *args,
                       void **impl);
  int (*consumer_start)(void *consumer_impl);
  /* Pause and resume are hints (ABI 1.4): stop reading, start again (backpressure). The host
   * holds whatever is delivered while the consumer is paused and hands it on, in order, after
   * resume, so a plugin keeps no queue of its own for them. */
  int (*consumer_pause)(void *consumer_impl);
  int (*consumer_resume)(void *consumer_impl);
  int (*consumer_seek)(void *consumer_impl, int64_t timestamp_us, sea_op_t *op);
  int (*consumer_rewind)(void *consumer_impl, sea_pos_t pos, sea_op_t *op);
  /* consumer_rewind also gets pos.kind == SEA_POS_COMMITTED_ from the host itself (never from
   * a user): back to the group's committed positions, for the partitions that delivered
   * something past them (exactly once: the window's transaction was aborted, so what it
   * processed must come again). Sent only to a backend with SEA_CAP_TRANSACTIONS, and also to
   * a consumer that ended at its end (stop_at_end): it then goes on, and ends again once it is
   * back where it ended. Only to a plugin of ABI 1.2 or later; one that does not do it answers
   * SEA_ENOTSUP. */
  int (*consumer_assign)(void *consumer_impl, const char *stream_key, uint64_t shard);
  int (*consumer_unassign)(void *consumer_impl, const char *stream_key, uint64_t shard);
  int (*consumer_ack)(void *consumer_impl, const sea_message_t *m);
  int (*consumer_commit)(void *consumer_impl, sea_op_t *op);
  void (*consumer_close)(void *consumer_impl);

  /* Transactions (optional; see sea_producer_txn_begin). begin opens a transaction now (or once
   * the backend is ready: sends may meet SEA_EAGAIN until then). commit and abort complete op
   * when the transaction is committed or aborted; send_offsets puts the consumer's positions
   * into the open transaction: consumer_impl is the impl a consumer of this same plugin got
   * from consumer_open (the host checks that the backends match). */
  int (*producer_txn_begin)(void *producer_impl);                /* added in 1.0 (pre-release) */
  int (*producer_txn_commit)(void *producer_impl, sea_op_t *op); /* added in 1.0 (pre-release) */
  int (*producer_txn_abort)(void *producer_impl, sea_op_t *op);  /* added in 1.0 (pre-release) */
  int (*producer_txn_send_offsets)(void *producer_impl, void *consumer_impl,
                                   sea_op_t *op); /* added in 1.0 (pre-release) */

  /* Optional: mark everything up to and including seq of (stream_key, shard) processed, as
   * consumer_ack does for a message (stream_key is interned). Backends whose seq numbers are
   * positions (Kafka offsets) offer it; the host answers SEA_ENOTSUP for the others. */
  int (*consumer_ack_pos)(void *consumer_impl, const char *stream_key, uint64_t shard,
                          uint64_t seq); /* added in 1.0 (pre-release) */

  /* Optional: the consumer's lag now, per stream and shard it reads (sea_consumer_lag): fill
   * out[0 .. min(n, cap)) and return n (the host calls again with room for n when n > cap), or
   * SEA_ENOTSUP. Called on the loop, often (each --stats line): never block; report what is
   * known and refresh in the background (the next call reports it). Unknown counts are -1.
   * Added in 1.0 (pre-release). */
  int (*consumer_lag)(void *consumer_impl, sea_lag_t *out, size_t cap);

  /* Optional, added in ABI 1.1 (the first reserved slot of 1.0; read only from a plugin whose
   * abi_minor >= 1): list what the backend holds (sea_streamer_list, `seastreamer list`). Send
   * each row with args->emit(args->ctx, row) on the loop thread (from a queue_work's after
   * callback, a watch or timer callback: never from another thread nor from inside list), in
   * the order sea_streamer_list documents, then complete op with host->op_done (0, or an error
   * and a message that names the server or file). Return 0 once started, or an error with
   * nothing sent and op not completed (host->set_error says why). args and its keys live only
   * during the call; a row's strings only during emit. disconnect abandons a listing still
   * running: no emit and no op_done after it (the host cancels op). NULL: the host answers
   * SEA_ENOTSUP "list is not supported by the <name> backend". */
  int (*list)(void *streamer_impl, const sea_list_args_t *args, sea_op_t *op);

  /* Optional, added in ABI 1.3 (read only from a plugin whose abi_minor >= 3): the commands the
   * plugin adds to `seastreamer`, ended by an entry whose name is NULL (see
   * sea_plugin_command_t). The array lives as long as the plugin is loaded. */
  const sea_plugin_command_t *commands;

  /* Added in ABI 1.4 (options): the backend options this plugin reads, ended by an entry whose
   * key is NULL (see sea_option_spec_t), or NULL to check them all itself as before. The host
   * checks every connect's and open's options against it first, refusing what it does not
   * declare. The array lives as long as the plugin is loaded. */
  const sea_option_spec_t *options;

  /* Added in ABI 1.4 (flush and pause in the host): read only from a plugin whose abi_minor >= 4.
   * producer_push (optional): a flush or end is waiting for the receipts of what was sent: write
   * out what is buffered now (a batching timer's work, a pipeline, a linger), so those receipts
   * come. end is 1 for the producer's end: no send comes after it (write the backend's end marker,
   * if it has one, before pushing). Never give a receipt inside it (give them as usual, on a later
   * loop turn); a failure goes through host->producer_fail or the receipts. */
  void (*producer_push)(void *producer_impl, int end);

  void *reserved[14];
} sea_plugin_t;

/* Sizes of the v1.0 structs, the smallest the loader accepts: fixed numbers (a header, then
 * pointers), so they stay what ABI 1.0 was when the structs change later. */
#define SEA_HOST_V1_0_SIZE (16 + 59 * sizeof(void *))
#define SEA_PLUGIN_V1_0_SIZE (32 + 46 * sizeof(void *))

/* ---- Growing an array (header only) ---------------------------------------------------------
 * Every backend keeps arrays that grow one element at a time (positions to commit, waiting ops,
 * per-stream counters), and each used to write the same "double the capacity and realloc" lines,
 * some without the overflow checks. sea_grow is those lines once. It lives here, inline, rather
 * than in the host table: it needs nothing of the host but realloc, so it adds no member and no
 * ABI minor, and a plugin built against this header carries its own copy.
 *
 * Make room for need elements of elem_size bytes in the array at *(T **)items_ptr, whose
 * capacity is *cap. Returns 0 when *cap >= need already (nothing is allocated). Otherwise the new
 * capacity is the larger of first_cap (1 if 0) and twice *cap, doubled again until it holds
 * need, and realloc_fn resizes the array to it. SEA_ENOMEM if that count or its size in bytes
 * would overflow size_t, or realloc_fn fails; the array and *cap are then as they were (the
 * caller's error path still owns the old array). SEA_EINVAL if elem_size is 0.
 *
 * items_ptr is the address of the array's pointer variable (any T *): the pointer is read and
 * written with memcpy, not through a void ** (which would be another type than T * and break
 * strict aliasing). Doubling keeps n appends O(n) copies in all. Use the macros below, which take
 * the element size from the pointer's type and check that cap is a size_t. */
static inline int sea_grow(void *(*realloc_fn)(void *, size_t), void *items_ptr, size_t *cap,
                           size_t need, size_t elem_size, size_t first_cap) {
  void *old, *grown;
  size_t n;
  if (*cap >= need)
    return 0;
  if (elem_size == 0)
    return SEA_EINVAL;
  if (*cap > SIZE_MAX / 2)
    return SEA_ENOMEM;
  n = *cap * 2;
  if (n < first_cap)
    n = first_cap;
  if (n == 0)
    n = 1;
  while (n < need) {
    if (n > SIZE_MAX / 2)
      return SEA_ENOMEM;
    n *= 2;
  }
  if (n > SIZE_MAX / elem_size)
    return SEA_ENOMEM;
  memcpy(&old, items_ptr, sizeof old);
  grown = realloc_fn(old, n * elem_size);
  if (grown == NULL)
    return SEA_ENOMEM;
  memcpy(items_ptr, &grown, sizeof grown);
  *cap = n;
  return 0;
}

/* sea_grow through the host's allocator, for an array a plugin frees with sea_host->free:
 *   if (SEA_GROW(l->v, l->cap, l->n + 1, 8) != 0)
 *     return SEA_ENOMEM;
 *   l->v[l->n++] = x;
 * items is the array (an lvalue of pointer type), cap its size_t capacity (an lvalue), need the
 * count it must hold. Each argument is evaluated once. It names sea_host at the place it is
 * used, so it also works where a static build renames the table (SEA_PLUGIN_NAME). */
#define SEA_GROW(items, cap, need, first_cap)                                                      \
  SEA_GROW_WITH(sea_host->realloc, items, cap, need, first_cap)
/* The same with another realloc: libc's for what lives outside the host (a command's buffers,
 * a listing's table built on a worker thread and freed with free). */
#define SEA_GROW_WITH(realloc_fn, items, cap, need, first_cap)                                     \
  sea_grow((realloc_fn), &(items), &(cap), (need), sizeof(*(items)), (first_cap))

#ifdef __cplusplus
}
#endif
#endif /* SEASTREAMER_PLUGIN_H */
