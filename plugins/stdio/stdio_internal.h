/* stdio_internal.h: what the rooms of the stdio backend share. The rooms:
 *   stdio.c          the plugin table, its entry point and the streamer (connect/disconnect)
 *   stdio_options.c  backend options (max_line=, format=, delimiter=, ...) into stdio_opts_t
 *   stdio_reader.c   consumers: one reader of stdin per process, shared by every consumer
 *   stdio_writer.c   producers: one writer of stdout per process, shared by every producer
 *   stdio_format.c   how a message is printed: the line format, JSON, keyed, -f templates
 *   stdio_map.c      a small map from interned keys to counters (seq and round-robin per key)
 *   stdio_fds.c      the flags of fd 0 and fd 1, saved before and restored after
 *   stdio_parse.c    the "[timestamp | key | seq | shard]" line header parser (stdio_parse.h)
 * The rooms talk only through the types and functions declared here; everything else in a room
 * is static. Every room calls the host through sea_host, set once by the plugin entry. */
#ifndef SEA_STDIO_INTERNAL_H
#define SEA_STDIO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "seastreamer/plugin.h"

#define STDIO_NAME "stdio"
#define STDIO_MAX_LINE_DEFAULT (1024u * 1024u)
#define STDIO_MSG_MAX 512

/* The host's functions (allocation, errors, logging, the loop): sea_host, set by SEA_PLUGIN_INIT
 * (stdio.c). */
SEA_PLUGIN_HOST_DECL;

/* ---------------------------------------------------------------------------------------------
 * A small map from interned pointers (stream keys) to counters: seq per key, round-robin per key.
 * Keys are interned, so the pointer is the identity and hashing it is enough.
 * ------------------------------------------------------------------------------------------- */
typedef struct stdio_slot {
  const void *key;
  uint64_t val;
} stdio_slot_t;

typedef struct stdio_map {
  stdio_slot_t *slots;
  size_t cap; /* power of two, or 0 */
  size_t len;
} stdio_map_t;

/* The counter for key, created at 0. NULL only when out of memory. */
uint64_t *stdio_map_get(stdio_map_t *m, const void *key);
void stdio_map_free(stdio_map_t *m);

/* ---------------------------------------------------------------------------------------------
 * Options (stdio_options.c) and output templates (stdio_format.c)
 * ------------------------------------------------------------------------------------------- */
enum { FMT_LINE, FMT_JSON, FMT_PAYLOAD, FMT_TEMPLATE, FMT_KEYED };

#define STDIO_DELIM_MAX 16
#define STDIO_NULL_MAX 32

/* A compiled output template: ops are directive letters, or 0 for literal text at [off, off+len)
 * of lit (escapes already resolved). */
typedef struct stdio_tpl_op {
  char op;
  size_t off, len;
} stdio_tpl_op_t;

typedef struct stdio_tpl {
  stdio_tpl_op_t *ops;
  size_t count;
  char *lit;
  int uses_payload, uses_key, uses_headers; /* fields whose bytes are printed raw */
} stdio_tpl_t;

typedef struct stdio_opts {
  size_t max_line;
  int pass_malformed;
  int format;
  const char *template_src;        /* points into the options; compile before they go away */
  char delim;                      /* ends a message, in and out (kcat -D); '\n' by default */
  char key_delim[STDIO_DELIM_MAX]; /* key_delimiter= (kcat -K): "key DELIM payload" */
  size_t key_delim_len;            /* 0: no key delimiter */
  int empty_null;                  /* empty=null (kcat -Z): an empty input message is NULL */
  char null_text[STDIO_NULL_MAX];  /* null= (kcat -Z): printed for a NULL key or payload */
  size_t null_len;
  int unbuffered; /* unbuffered=true (kcat -u): write each message out as it is sent */
} stdio_opts_t;

/* The backend options the host checks (ABI 1.4); stdio_opts_parse reads them into *out and
 * checks what the table cannot (delimiters, template). */
extern const sea_option_spec_t stdio_option_table[];
int stdio_opts_parse(sea_runtime_t *rt, const sea_options_t *o, stdio_opts_t *out);
/* kcat -f style: %s %k %t %p %o %T %S %R %K %h %% and the escapes \n \t \\. */
int stdio_tpl_compile(sea_runtime_t *rt, const char *src, stdio_tpl_t **out);
void stdio_tpl_free(stdio_tpl_t *t);

/* ---------------------------------------------------------------------------------------------
 * fd 0 and fd 1 flags (stdio_fds.c): acquire before touching either fd, release when done.
 * ------------------------------------------------------------------------------------------- */
void stdio_fds_acquire(void);
void stdio_fds_release(void);
/* Restore this fd's flags at the last release (say so before libuv polls it). */
void stdio_fd_touch(int fd);
/* Makes fd nonblocking where that means something; see stdio_fds.c. Returns 0 or -errno. */
int stdio_fd_prepare(int fd, int *is_regular, int *pollable);

/* ---------------------------------------------------------------------------------------------
 * Producers (stdio_writer.c): one writer of stdout per process, shared by every stdio producer,
 * so lines from different producers never interleave mid-line and seq counts per key across all
 * of them. The formatting room (stdio_format.c) appends to the writer's buffer directly.
 * ------------------------------------------------------------------------------------------- */
typedef struct stdio_writer stdio_writer_t;

typedef struct stdio_producer {
  stdio_writer_t *w;
  sea_producer_t *p;
  int format;
  stdio_tpl_t *tpl;
  char delim;
  char key_delim[STDIO_DELIM_MAX];
  size_t key_delim_len;
  char null_text[STDIO_NULL_MAX];
  size_t null_len;
  int unbuffered;
  size_t max_payload;
  const char *anchor;
  /* The last key this producer sent under, and the same interned by the host: one per producer,
   * so that producers taking turns on stdout (a processor routing to two outputs) each keep
   * theirs instead of interning again on every message. */
  const char *key_in, *key_out;
  /* The millisecond text of the last timestamp printed, per producer for the same reason: a
   * forwarded message keeps its input's time, a new payload gets the time of sending. */
  int64_t ts_ms;
  char ts[32];
  size_t ts_len;
  int want_ready, closed, failed;
} stdio_producer_t;

/* One send waiting for its receipt: its line ends at byte `end` of the output. */
typedef struct stdio_pending {
  stdio_producer_t *p; /* NULL once the producer closed */
  void *token;
  uint64_t end;
  sea_meta_t meta;
} stdio_pending_t;

struct stdio_writer {
  sea_runtime_t *rt;
  stdio_producer_t **prods;
  size_t nprods, prods_cap;
  char *buf; /* bytes [head, len) are not written yet */
  size_t head, len, cap;
  uint64_t written;   /* bytes written to fd 1 so far */
  stdio_pending_t *q; /* ring of receipts, oldest at qhead */
  size_t qcap, qhead, qcount;
  sea_watch_t *watch; /* fd 1 writable: waiting for room after EAGAIN */
  sea_timer_t *kick;  /* the next turn: write, then receipts, flushes and readiness */
  int err;
  char errmsg[STDIO_MSG_MAX];
  int err_reported;
  stdio_map_t seqs;
  unsigned busy;
  int need_gc;
  int closing; /* being freed: write what we can, start nothing */
};

/* ---------------------------------------------------------------------------------------------
 * Formatting (stdio_format.c): each appends one message to the writer's buffer. 0, or -1 when
 * out of memory (the caller then cuts the buffer back to where the message began).
 * ------------------------------------------------------------------------------------------- */
int stdio_out_bytes(stdio_writer_t *w, const void *s, size_t n);
/* The millisecond text of a timestamp, cached in the producer. */
const char *stdio_producer_ts(stdio_producer_t *p, int64_t us, size_t *len);
int stdio_format_line(stdio_writer_t *w, const sea_message_t *m, const sea_meta_t *meta,
                      int show_shard, const char *ts, size_t ts_len, char delim);
int stdio_format_json(stdio_writer_t *w, const sea_message_t *m, const sea_meta_t *meta,
                      const char *ts, size_t ts_len, char delim);
int stdio_format_keyed(stdio_writer_t *w, const stdio_producer_t *p, const sea_message_t *m);
int stdio_format_template(stdio_writer_t *w, const stdio_producer_t *p, const sea_message_t *m,
                          const sea_meta_t *meta);
/* SEA_EFORMAT if a field the producer's format prints raw holds the message delimiter. */
int stdio_producer_check_lines(const stdio_producer_t *p, const sea_message_t *m);

/* ---------------------------------------------------------------------------------------------
 * The plugin's consumer functions (stdio_reader.c) and producer functions (stdio_writer.c).
 * ------------------------------------------------------------------------------------------- */
int stdio_consumer_open(void *streamer_impl, sea_consumer_t *sc, const sea_open_args_t *args,
                        void **impl);
int stdio_consumer_start(void *impl);
int stdio_consumer_pause(void *impl);
int stdio_consumer_resume(void *impl);
void stdio_consumer_close(void *impl);
int stdio_producer_open(void *streamer_impl, sea_producer_t *sp, const sea_open_args_t *args,
                        void **impl);
int stdio_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token);
void stdio_producer_push(void *impl, int end);
void stdio_producer_close(void *impl);

#endif
