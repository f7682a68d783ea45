/* stdio.c: the stdio backend: consumers read lines from stdin, producers write lines to stdout. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seastreamer/plugin.h"
#include "stdio_parse.h"

#define STDIO_NAME "stdio"

/* Reads go into blocks of this size, so a read is big and a block holds many payloads. */
#define STDIO_CHUNK (256u * 1024u)
/* Start a new block when the current one has less room than this: small reads cost syscalls. */
#define STDIO_MIN_ROOM (16u * 1024u)
/* Bytes read per loop turn before yielding, so one busy stdin can't starve the loop. */
#define STDIO_READ_BUDGET (4u * 1024u * 1024u)
#define STDIO_BATCH_DEFAULT 4096u
#define STDIO_MAX_LINE_DEFAULT (1024u * 1024u)
/* Output: write once this much is buffered; refuse sends (SEA_EAGAIN) beyond the limit. */
#define STDIO_WRITE_AT (64u * 1024u)
#define STDIO_OUT_LIMIT (4u * 1024u * 1024u)
#define STDIO_MSG_MAX 512
#define STDIO_KNOWN_OPTS                                                                           \
  "max_line, malformed, format, template, delimiter, key_delimiter, empty, null, unbuffered"

static const sea_host_t *stdio_host;

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

static size_t map_hash(const void *p, size_t mask) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & mask;
}

/* The counter for key, created at 0. NULL only when out of memory. */
static uint64_t *map_get(stdio_map_t *m, const void *key) {
  if (m->cap != 0) {
    size_t i = map_hash(key, m->cap - 1);
    while (m->slots[i].key != NULL) {
      if (m->slots[i].key == key)
        return &m->slots[i].val;
      i = (i + 1) & (m->cap - 1);
    }
  }
  if ((m->len + 1) * 2 > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    stdio_slot_t *s = stdio_host->calloc(cap, sizeof *s);
    if (s == NULL)
      return NULL;
    for (size_t j = 0; j < m->cap; j++) {
      if (m->slots[j].key == NULL)
        continue;
      size_t i = map_hash(m->slots[j].key, cap - 1);
      while (s[i].key != NULL)
        i = (i + 1) & (cap - 1);
      s[i] = m->slots[j];
    }
    stdio_host->free(m->slots);
    m->slots = s;
    m->cap = cap;
  }
  size_t i = map_hash(key, m->cap - 1);
  while (m->slots[i].key != NULL)
    i = (i + 1) & (m->cap - 1);
  m->slots[i].key = key;
  m->slots[i].val = 0;
  m->len++;
  return &m->slots[i].val;
}

static void map_free(stdio_map_t *m) {
  stdio_host->free(m->slots);
  m->slots = NULL;
  m->cap = m->len = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Options
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

/* A delimiter option's bytes: a character, or the escapes \n \r \t \\ and \xNN (as kcat's -D
 * and -K take them). Returns the length, or 0 if it is empty, too long or a bad escape. */
static size_t parse_delim(const char *v, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; v[i] != '\0'; i++) {
    char c = v[i];
    if (c == '\\') {
      char d = v[++i];
      if (d == 'n')
        c = '\n';
      else if (d == 'r')
        c = '\r';
      else if (d == 't')
        c = '\t';
      else if (d == '\\')
        c = '\\';
      else if (d == 'x') {
        unsigned x = 0;
        for (int k = 0; k < 2; k++) {
          char h = v[++i];
          if (h >= '0' && h <= '9')
            x = x * 16 + (unsigned)(h - '0');
          else if ((h | 0x20) >= 'a' && (h | 0x20) <= 'f')
            x = x * 16 + (unsigned)((h | 0x20) - 'a' + 10);
          else
            return 0;
        }
        c = (char)x;
      } else
        return 0;
    }
    if (n == cap)
      return 0;
    out[n++] = c;
  }
  return n;
}

static void tpl_free(stdio_tpl_t *t) {
  if (t == NULL)
    return;
  stdio_host->free(t->ops);
  stdio_host->free(t->lit);
  stdio_host->free(t);
}

/* kcat -f style: %s %k %t %p %o %T %S %R %K %h %% and the escapes \n \t \\. */
static int tpl_compile(sea_runtime_t *rt, const char *src, stdio_tpl_t **out) {
  size_t n = strlen(src);
  stdio_tpl_t *t = stdio_host->calloc(1, sizeof *t);
  if (t == NULL)
    return SEA_ENOMEM;
  t->ops = stdio_host->calloc(n + 1, sizeof *t->ops);
  t->lit = stdio_host->alloc(n + 1);
  if (t->ops == NULL || t->lit == NULL) {
    tpl_free(t);
    return SEA_ENOMEM;
  }
  size_t lit_len = 0;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    char lit_c;
    if (c == '%' || c == '\\') {
      char d = i + 1 < n ? src[i + 1] : '\0';
      if (c == '%' && d != '\0' && strchr("sktpoTShKR", d) != NULL) {
        t->ops[t->count].op = d;
        t->count++;
        t->uses_payload |= d == 's';
        t->uses_key |= d == 'k';
        t->uses_headers |= d == 'h';
        i++;
        continue;
      }
      if (c == '%' && d == '%')
        lit_c = '%';
      else if (c == '\\' && d == 'n')
        lit_c = '\n';
      else if (c == '\\' && d == 't')
        lit_c = '\t';
      else if (c == '\\' && d == '\\')
        lit_c = '\\';
      else {
        stdio_host->set_error(
            rt,
            "stdio: option template: unknown %s '%c%c' (known: %%s %%k %%t %%p %%o "
            "%%T %%S %%R %%K %%h %%%% \\n \\t \\\\)",
            c == '%' ? "directive" : "escape", c, d ? d : ' ');
        tpl_free(t);
        return SEA_EOPTION;
      }
      i++;
    } else {
      lit_c = c;
    }
    /* Literal bytes: extend the previous literal op or start one. */
    if (t->count == 0 || t->ops[t->count - 1].op != 0) {
      t->ops[t->count].op = 0;
      t->ops[t->count].off = lit_len;
      t->ops[t->count].len = 0;
      t->count++;
    }
    t->lit[lit_len++] = lit_c;
    t->ops[t->count - 1].len++;
  }
  *out = t;
  return 0;
}

static int parse_size(const char *s, size_t *out) {
  size_t v = 0;
  if (*s == '\0')
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    if (v > (SIZE_MAX / 4 - (size_t)(*s - '0')) / 10)
      return -1;
    v = v * 10 + (size_t)(*s - '0');
  }
  *out = v;
  return 0;
}

/* Reads every backend option; an unknown key or a bad value is an error, since a typo that is
 * ignored silently is worse than one that stops the program. */
static int opts_parse(sea_runtime_t *rt, const sea_options_t *o, stdio_opts_t *out) {
  out->max_line = STDIO_MAX_LINE_DEFAULT;
  out->pass_malformed = 0;
  out->format = FMT_LINE;
  out->template_src = NULL;
  out->delim = '\n';
  out->key_delim_len = 0;
  out->empty_null = 0;
  out->null_len = 0;
  out->unbuffered = 0;
  size_t n = o ? stdio_host->option_count(o) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    if (stdio_host->option_at(o, i, &k, &v) != 0)
      continue;
    if (v == NULL)
      v = "";
    if (strcmp(k, "max_line") == 0) {
      if (parse_size(v, &out->max_line) != 0 || out->max_line == 0) {
        stdio_host->set_error(rt, "stdio: option max_line=%s: expected a number of bytes (> 0)", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "malformed") == 0) {
      if (strcmp(v, "error") == 0)
        out->pass_malformed = 0;
      else if (strcmp(v, "pass") == 0)
        out->pass_malformed = 1;
      else {
        stdio_host->set_error(rt, "stdio: option malformed=%s: expected error or pass", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "format") == 0) {
      if (strcmp(v, "line") == 0)
        out->format = FMT_LINE;
      else if (strcmp(v, "json") == 0)
        out->format = FMT_JSON;
      else if (strcmp(v, "payload") == 0)
        out->format = FMT_PAYLOAD;
      else {
        stdio_host->set_error(rt, "stdio: option format=%s: expected line, json or payload", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "template") == 0) {
      out->template_src = v;
    } else if (strcmp(k, "delimiter") == 0) {
      char d[STDIO_DELIM_MAX];
      if (parse_delim(v, d, sizeof d) != 1) {
        stdio_host->set_error(rt,
                              "stdio: option delimiter=%s: expected one byte (a character, \\n, "
                              "\\r, \\t, \\\\ or \\xNN)",
                              v);
        return SEA_EOPTION;
      }
      out->delim = d[0];
    } else if (strcmp(k, "key_delimiter") == 0) {
      out->key_delim_len = parse_delim(v, out->key_delim, sizeof out->key_delim);
      if (out->key_delim_len == 0) {
        stdio_host->set_error(rt,
                              "stdio: option key_delimiter=%s: expected 1 to %d bytes (characters, "
                              "\\n, \\r, \\t, \\\\ or \\xNN)",
                              v, STDIO_DELIM_MAX);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "empty") == 0) {
      if (strcmp(v, "null") == 0 || strcmp(v, "empty") == 0)
        out->empty_null = v[0] == 'n';
      else {
        stdio_host->set_error(rt, "stdio: option empty=%s: expected empty or null", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "null") == 0) {
      out->null_len = strlen(v);
      if (out->null_len >= sizeof out->null_text) {
        stdio_host->set_error(rt, "stdio: option null=%s: at most %d bytes", v, STDIO_NULL_MAX - 1);
        return SEA_EOPTION;
      }
      memcpy(out->null_text, v, out->null_len);
    } else if (strcmp(k, "unbuffered") == 0) {
      if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        out->unbuffered = v[0] == 't';
      else {
        stdio_host->set_error(rt, "stdio: option unbuffered=%s: expected true or false", v);
        return SEA_EOPTION;
      }
    } else {
      if (stdio_host->option_unknown != NULL)
        stdio_host->option_unknown(rt, STDIO_NAME, k, STDIO_KNOWN_OPTS);
      else
        stdio_host->set_error(rt, "stdio: unknown option '%s' (known: %s)", k, STDIO_KNOWN_OPTS);
      return SEA_EOPTION;
    }
  }
  if (out->template_src != NULL) {
    /* Check it now so that a bad template fails at connect/open, not at the first send. */
    stdio_tpl_t *t;
    int rc = tpl_compile(rt, out->template_src, &t);
    if (rc != 0)
      return rc;
    tpl_free(t);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * fd 0 and fd 1 flags. O_NONBLOCK lives in the open file description, which a terminal's stdin
 * and stdout often share, and libuv sets it on any fd it polls. So both fds' flags are saved
 * before either side touches anything and restored when the last stdio object goes away.
 * ------------------------------------------------------------------------------------------- */
static struct {
  unsigned refs;
  int flags[2];
  int saved[2];
  int touched[2];
} stdio_fds;

static void fds_acquire(void) {
  if (stdio_fds.refs++ != 0)
    return;
  for (int fd = 0; fd < 2; fd++) {
    stdio_fds.flags[fd] = fcntl(fd, F_GETFL);
    stdio_fds.saved[fd] = stdio_fds.flags[fd] != -1;
    stdio_fds.touched[fd] = 0;
  }
}

static void fds_release(void) {
  if (--stdio_fds.refs != 0)
    return;
  for (int fd = 0; fd < 2; fd++)
    if (stdio_fds.touched[fd] && stdio_fds.saved[fd])
      (void)fcntl(fd, F_SETFL, stdio_fds.flags[fd]);
}

/* Nonblocking only where it means something: pipes and sockets, and a terminal on stdin (a
 * terminal's stdout usually shares its file description with stderr, whose writers don't expect
 * EAGAIN). A regular file is always ready, and the host's watch treats it so. *pollable says
 * whether watching the fd is harmless: libuv makes any fd it polls nonblocking. */
static int fd_prepare(int fd, int *is_regular, int *pollable) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  int fl = fcntl(fd, F_GETFL);
  *is_regular = S_ISREG(st.st_mode);
  *pollable = *is_regular || (fl != -1 && (fl & O_NONBLOCK));
  if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || (fd == 0 && isatty(fd))) {
    stdio_fds.touched[fd] = 1;
    if (fl != -1 && !(fl & O_NONBLOCK))
      (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    *pollable = 1;
  }
  return 0;
}

/* Up to ~60 bytes of a line for an error message, quoted-safe and on one line. */
static void line_snippet(const uint8_t *p, size_t len, char *buf, size_t size) {
  static const char hex[] = "0123456789abcdef";
  size_t limit = len > 60 ? 60 : len, o = 0;
  if (len > 60)
    while (limit > 0 && (p[limit] & 0xC0) == 0x80)
      limit--; /* don't cut a UTF-8 character in half */
  for (size_t i = 0; i < limit && o + 5 < size; i++) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      buf[o++] = '\\';
      buf[o++] = 'x';
      buf[o++] = hex[c >> 4];
      buf[o++] = hex[c & 15];
    } else {
      buf[o++] = (char)c;
    }
  }
  if (limit < len && o + 4 < size) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o < size ? o : size - 1] = '\0';
}

/* ---------------------------------------------------------------------------------------------
 * Streamer: stdio has no connection; connect only checks the URI and the options.
 * ------------------------------------------------------------------------------------------- */
typedef struct stdio_streamer {
  sea_runtime_t *rt;
} stdio_streamer_t;

static int stdio_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                         const sea_options_t *backend_options, void **impl) {
  for (size_t i = 0; uri != NULL && i < uri->node_count; i++) {
    if (uri->nodes[i] != NULL && uri->nodes[i][0] != '\0') {
      stdio_host->set_error(rt, "stdio: URI takes no host, got '%s'", uri->nodes[i]);
      return SEA_EURI;
    }
  }
  stdio_opts_t o;
  int rc = opts_parse(rt, backend_options, &o);
  if (rc != 0)
    return rc;
  stdio_streamer_t *st = stdio_host->calloc(1, sizeof *st);
  if (st == NULL)
    return SEA_ENOMEM;
  st->rt = rt;
  *impl = st;
  return 0;
}

static void stdio_disconnect(void *impl) {
  stdio_host->free(impl);
}

/* ---------------------------------------------------------------------------------------------
 * Consumers: one reader of stdin per process, shared by every stdio consumer.
 * ------------------------------------------------------------------------------------------- */
typedef struct stdio_reader stdio_reader_t;

typedef struct stdio_group {
  char *name;
  stdio_map_t rr; /* next pick per key */
  struct stdio_group *next;
} stdio_group_t;

enum { END_NONE, END_PENDING, END_DONE };

typedef struct stdio_consumer {
  stdio_reader_t *r;
  sea_consumer_t *c;
  const char **keys; /* interned; key_count 0 = every key */
  size_t key_count;
  stdio_group_t *group; /* NULL: realtime */
  size_t batch_cap;
  size_t max_line;
  int pass_malformed;
  int started, paused, closed;
  int end_state, end_status;
  char end_msg[STDIO_MSG_MAX];
  sea_batch_t *cur; /* being filled */
  size_t cur_cap;
  sea_batch_t **held; /* full batches kept while paused, oldest first */
  size_t held_head, held_count, held_cap;
} stdio_consumer_t;

enum { LINE_OK, LINE_MALFORMED, LINE_TOO_LONG };

/* A line parsed from the current read, waiting for dispatch. */
typedef struct stdio_scratch {
  sea_meta_t meta;
  size_t off, len;         /* payload in the current block (the whole line when malformed) */
  size_t key_off, key_len; /* the message key in the current block (key_delimiter=) */
  int has_key;
  size_t line_len; /* bytes without "\r\n", for max_line */
  uint64_t line_no;
  int kind;
  const char *why;
} stdio_scratch_t;

struct stdio_reader {
  sea_runtime_t *rt;
  stdio_consumer_t **cons;
  size_t ncons, cons_cap;
  stdio_group_t *groups;
  /* The current block: [start, fill) is the unparsed tail (a partial line); bytes up to
   * `scanned` are known to hold no '\n'. */
  sea_block_t *blk;
  uint8_t *base;
  size_t cap, fill, start, scanned;
  int is_regular;
  sea_watch_t *watch;
  sea_timer_t *kick;
  int done; /* stdin is finished for us (EOF, error, or a line no consumer accepts) */
  int done_status;
  char done_msg[STDIO_MSG_MAX];
  int stop_parse;
  uint64_t line_no;
  int64_t now_us; /* one clock read per read(), not per line */
  const char *bcast;
  const char *last_key; /* cache of the last interned key, to skip the host's locked table */
  size_t last_key_len;
  stdio_map_t seqs;
  stdio_scratch_t *scratch;
  size_t nscratch, scratch_cap;
  size_t min_max_line, max_max_line;
  int any_pass;
  /* How stdin is cut into messages: one way for every consumer, set by the first. */
  char delim;
  char key_delim[STDIO_DELIM_MAX];
  size_t key_delim_len;
  int empty_null;
  unsigned busy; /* inside one of our callbacks: frees wait until it returns */
  int need_gc;
};

static stdio_reader_t *stdio_reader;

static int consumer_live(const stdio_consumer_t *c) {
  return c->started && !c->closed && c->end_state == END_NONE;
}

static int consumer_wants(const stdio_consumer_t *c, const char *key) {
  if (c->key_count == 0)
    return 1;
  for (size_t i = 0; i < c->key_count; i++)
    if (c->keys[i] == key)
      return 1;
  return 0;
}

static void consumer_end_pending(stdio_consumer_t *c, int status, const char *msg) {
  if (c->end_state != END_NONE)
    return;
  c->end_state = END_PENDING;
  c->end_status = status;
  snprintf(c->end_msg, sizeof c->end_msg, "%s", msg);
}

static void reader_limits(stdio_reader_t *r) {
  r->min_max_line = SIZE_MAX;
  r->max_max_line = 0;
  r->any_pass = 0;
  for (size_t i = 0; i < r->ncons; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (c->closed)
      continue;
    if (c->max_line < r->min_max_line)
      r->min_max_line = c->max_line;
    if (c->max_line > r->max_max_line)
      r->max_max_line = c->max_line;
    r->any_pass |= c->pass_malformed;
  }
  if (r->max_max_line == 0)
    r->max_max_line = r->min_max_line = STDIO_MAX_LINE_DEFAULT;
}

/* Reading goes on only while every live consumer can take what it reads: a paused realtime
 * consumer stops it (it would miss lines or buffer them without bound), a paused member of a
 * load-balanced group only once it holds batches, and a group stops it when all its members are
 * paused. With one consumer this is simply "not paused". */
static int reader_can_read(stdio_reader_t *r) {
  int any = 0;
  if (r->done || r->stop_parse)
    return 0;
  for (size_t i = 0; i < r->ncons; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (!consumer_live(c))
      continue;
    any = 1;
    if (c->paused && (c->group == NULL || c->held_count > 0 || c->cur != NULL))
      return 0;
  }
  if (!any)
    return 0;
  for (stdio_group_t *g = r->groups; g; g = g->next) {
    int members = 0, running = 0;
    for (size_t i = 0; i < r->ncons; i++) {
      stdio_consumer_t *c = r->cons[i];
      if (c->group == g && consumer_live(c)) {
        members++;
        running += !c->paused;
      }
    }
    if (members > 0 && running == 0)
      return 0;
  }
  return 1;
}

static void reader_on_readable(sea_watch_t *w, int status, int events, void *data);
static void reader_on_kick(sea_timer_t *t, void *data);

static void reader_set_done(stdio_reader_t *r, int status, const char *msg) {
  if (r->done)
    return;
  r->done = 1;
  r->done_status = status;
  snprintf(r->done_msg, sizeof r->done_msg, "%s", msg);
  stdio_host->log(status == SEA_EOF ? SEA_LOG_INFO : SEA_LOG_WARN, STDIO_NAME,
                  "stdin: %s after %llu line(s)", msg, (unsigned long long)r->line_no);
}

static void reader_update_watch(stdio_reader_t *r) {
  int want = reader_can_read(r);
  if (want && r->watch == NULL) {
    stdio_fds.touched[0] = 1; /* libuv makes a polled fd nonblocking */
    r->watch = stdio_host->watch_start(r->rt, 0, SEA_WATCH_READABLE, reader_on_readable, r);
    if (r->watch == NULL) {
      reader_set_done(r, SEA_EIO, "stdin: cannot watch fd 0");
      if (r->kick == NULL)
        r->kick = stdio_host->timer_start(r->rt, 0, 0, reader_on_kick, r);
    }
  } else if (!want && r->watch != NULL) {
    stdio_host->watch_stop(r->watch);
    r->watch = NULL;
  }
}

static void reader_kick(stdio_reader_t *r) {
  if (r->kick == NULL)
    r->kick = stdio_host->timer_start(r->rt, 0, 0, reader_on_kick, r);
}

static int held_push(stdio_consumer_t *c, sea_batch_t *b) {
  if (c->held_count == c->held_cap) {
    size_t cap = c->held_cap ? c->held_cap * 2 : 4;
    sea_batch_t **h = stdio_host->alloc(cap * sizeof *h);
    if (h == NULL)
      return SEA_ENOMEM;
    for (size_t i = 0; i < c->held_count; i++)
      h[i] = c->held[(c->held_head + i) % c->held_cap];
    stdio_host->free(c->held);
    c->held = h;
    c->held_cap = cap;
    c->held_head = 0;
  }
  c->held[(c->held_head + c->held_count) % c->held_cap] = b;
  c->held_count++;
  return 0;
}

/* Hand the batch being filled to the host, or keep it while the consumer is paused (or has
 * older batches waiting, which must go first). */
static void consumer_flush_cur(stdio_consumer_t *c) {
  sea_batch_t *b = c->cur;
  if (b == NULL)
    return;
  c->cur = NULL;
  if (b->count == 0) {
    stdio_host->batch_release(b);
    return;
  }
  if (c->closed) {
    stdio_host->batch_release(b);
  } else if (c->paused || c->held_count > 0) {
    if (held_push(c, b) != 0) {
      stdio_host->batch_release(b);
      consumer_end_pending(c, SEA_ENOMEM, "stdin: out of memory");
    }
  } else {
    stdio_host->deliver(c->c, b);
  }
}

static void consumer_add(stdio_consumer_t *c, const stdio_scratch_t *s, size_t left) {
  stdio_reader_t *r = c->r;
  if (c->cur == NULL) {
    /* No more than this read can give it, so small reads make small batches. */
    size_t cap = c->batch_cap < left ? c->batch_cap : left;
    c->cur = stdio_host->batch_new(cap);
    if (c->cur == NULL) {
      consumer_end_pending(c, SEA_ENOMEM, "stdin: out of memory");
      return;
    }
    c->cur_cap = cap;
  }
  sea_message_t *m = &c->cur->msgs[c->cur->count++];
  *m = (sea_message_t){0};
  m->meta = s->meta;
  m->payload.data = s->len == 0 && r->empty_null ? NULL : r->base + s->off;
  m->payload.len = s->len;
  m->payload.block = stdio_host->block_ref(r->blk);
  if (s->has_key) {
    m->key = r->base + s->key_off;
    m->key_len = s->key_len;
  }
  m->backend_pos = s->line_no;
  if (c->cur->count == c->cur_cap)
    consumer_flush_cur(c); /* may call back into the user, who may pause or close c */
}

/* One of the group's members that want key, round-robin per key, preferring running ones. */
static stdio_consumer_t *group_pick(stdio_reader_t *r, stdio_group_t *g, const char *key) {
  size_t eligible = 0, running = 0;
  for (size_t i = 0; i < r->ncons; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (c->group == g && consumer_live(c) && consumer_wants(c, key)) {
      eligible++;
      running += !c->paused;
    }
  }
  if (eligible == 0)
    return NULL;
  uint64_t *next = map_get(&g->rr, key);
  uint64_t turn = next ? (*next)++ : 0;
  size_t pick = (size_t)(turn % (running ? running : eligible));
  for (size_t i = 0; i < r->ncons; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (c->group == g && consumer_live(c) && consumer_wants(c, key) && (!running || !c->paused)) {
      if (pick == 0)
        return c;
      pick--;
    }
  }
  return NULL;
}

static void reader_route(stdio_reader_t *r, const stdio_scratch_t *s, size_t left) {
  const char *key = s->meta.stream_key;
  /* Index loops up to the count at the start: a user callback inside consumer_add may open a
   * consumer (which may move the array), and that one starts with the next line. */
  size_t n = r->ncons;
  if (key == r->bcast) {
    for (size_t i = 0; i < n; i++)
      if (consumer_live(r->cons[i]))
        consumer_add(r->cons[i], s, left);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (c->group == NULL && consumer_live(c) && consumer_wants(c, key))
      consumer_add(c, s, left);
  }
  for (stdio_group_t *g = r->groups; g; g = g->next) {
    stdio_consumer_t *c = group_pick(r, g, key);
    if (c != NULL)
      consumer_add(c, s, left);
  }
}

static void too_long_msg(char *buf, size_t size, uint64_t line_no, size_t max_line) {
  snprintf(buf, size, "stdin line %llu: line longer than max_line (%zu bytes)",
           (unsigned long long)line_no, max_line);
}

static void malformed_msg(char *buf, size_t size, uint64_t line_no, const char *why,
                          const uint8_t *line, size_t len) {
  char snip[256];
  line_snippet(line, len, snip, sizeof snip);
  snprintf(buf, size, "stdin line %llu: malformed header block: %s in \"%s\"",
           (unsigned long long)line_no, why, snip);
}

static void reader_dispatch(stdio_reader_t *r) {
  char msg[STDIO_MSG_MAX];
  size_t n = r->nscratch;
  for (size_t i = 0; i < n; i++) {
    const stdio_scratch_t *s = &r->scratch[i];
    size_t left = n - i;
    if (s->kind == LINE_MALFORMED) {
      malformed_msg(msg, sizeof msg, s->line_no, s->why, r->base + s->off, s->len);
      for (size_t j = 0; j < r->ncons; j++) {
        stdio_consumer_t *c = r->cons[j];
        if (consumer_live(c) && !c->pass_malformed)
          consumer_end_pending(c, SEA_EFORMAT, msg);
      }
      for (size_t j = 0; j < r->ncons; j++)
        if (consumer_live(r->cons[j]))
          consumer_add(r->cons[j], s, left); /* only pass consumers are still live */
      continue;
    }
    if (s->line_len > r->min_max_line) {
      for (size_t j = 0; j < r->ncons; j++) {
        stdio_consumer_t *c = r->cons[j];
        if (consumer_live(c) && s->line_len > c->max_line) {
          too_long_msg(msg, sizeof msg, s->line_no, c->max_line);
          consumer_end_pending(c, SEA_ETOOBIG, msg);
        }
      }
      if (s->kind == LINE_TOO_LONG)
        continue;
    }
    reader_route(r, s, left);
  }
  r->nscratch = 0;
}

static stdio_scratch_t *scratch_push(stdio_reader_t *r) {
  if (r->nscratch == r->scratch_cap) {
    size_t cap = r->scratch_cap ? r->scratch_cap * 2 : 1024;
    stdio_scratch_t *s = stdio_host->realloc(r->scratch, cap * sizeof *s);
    if (s == NULL)
      return NULL;
    r->scratch = s;
    r->scratch_cap = cap;
  }
  return &r->scratch[r->nscratch++];
}

static const char *reader_intern(stdio_reader_t *r, const char *key, size_t len) {
  if (r->last_key != NULL && len == r->last_key_len && memcmp(key, r->last_key, len) == 0)
    return r->last_key;
  const char *k = stdio_host->stream_key(key, len);
  if (k != NULL) {
    r->last_key = k;
    r->last_key_len = len;
  }
  return k;
}

static int reader_next_seq(stdio_reader_t *r, const char *key, int has_seq, uint64_t seq,
                           uint64_t *out) {
  uint64_t *ctr = map_get(&r->seqs, key);
  if (ctr == NULL)
    return SEA_ENOMEM;
  if (has_seq) {
    /* A given seq moves the count on, so lines without one continue after it. */
    *ctr = seq == UINT64_MAX ? seq : seq + 1;
    *out = seq;
  } else {
    *out = (*ctr)++;
  }
  return 0;
}

/* key_delimiter= (kcat -K): the payload is "KEY DELIM PAYLOAD", cut at the first DELIM. A line
 * without one is all payload and has no key, as kcat sends it. */
static void split_key(stdio_reader_t *r, stdio_scratch_t *s) {
  const uint8_t *p = r->base + s->off;
  size_t n = s->len, kd = r->key_delim_len;
  for (size_t i = 0; i + kd <= n; i++) {
    const uint8_t *hit = memchr(p + i, r->key_delim[0], n - kd + 1 - i);
    if (hit == NULL)
      return;
    i = (size_t)(hit - p);
    if (memcmp(hit, r->key_delim, kd) == 0) {
      s->has_key = 1;
      s->key_off = s->off;
      s->key_len = i;
      s->off += i + kd;
      s->len -= i + kd;
      return;
    }
  }
}

/* Parse one line (without its '\n') into the scratch list. */
static void reader_line(stdio_reader_t *r, const uint8_t *line, size_t len) {
  stdio_scratch_t *s = scratch_push(r);
  if (s == NULL) {
    reader_set_done(r, SEA_ENOMEM, "stdin: out of memory");
    r->stop_parse = 1;
    return;
  }
  size_t bare = len > 0 && line[len - 1] == '\r' && r->delim == '\n' ? len - 1 : len;
  s->line_no = ++r->line_no;
  s->has_key = 0;
  s->line_len = bare;
  s->kind = LINE_OK;
  s->why = NULL;
  s->meta.shard_id = 0;
  s->meta.timestamp_us = r->now_us;
  if (bare > r->max_max_line) {
    /* No consumer takes it; nothing after it can be delivered in order, so stop here. */
    char msg[STDIO_MSG_MAX];
    s->kind = LINE_TOO_LONG;
    s->off = (size_t)(line - r->base);
    s->len = bare;
    s->meta.stream_key = r->bcast;
    s->meta.seq = 0;
    too_long_msg(msg, sizeof msg, s->line_no, r->max_max_line);
    reader_set_done(r, SEA_ETOOBIG, msg);
    r->stop_parse = 1;
    return;
  }
  stdio_line_t pl;
  const char *why = NULL;
  int rc = stdio_parse_line_with((const char *)line, len, stdio_host->parse_timestamp, &pl, &why);
  if (rc != 0) {
    s->kind = LINE_MALFORMED;
    s->why = why ? why : "unrecognised header";
    s->off = (size_t)(line - r->base);
    s->len = bare;
    s->meta.stream_key = r->bcast;
    if (reader_next_seq(r, r->bcast, 0, 0, &s->meta.seq) != 0)
      s->meta.seq = 0;
    if (!r->any_pass) {
      /* Everyone ends at this line (the dispatch ends those already started). */
      char msg[STDIO_MSG_MAX];
      malformed_msg(msg, sizeof msg, s->line_no, s->why, line, bare);
      reader_set_done(r, SEA_EFORMAT, msg);
      r->stop_parse = 1;
    }
    return;
  }
  const char *key = r->bcast;
  if (pl.has_key) {
    key = reader_intern(r, pl.key, pl.key_len);
    if (key == NULL) {
      r->nscratch--;
      reader_set_done(r, SEA_ENOMEM, "stdin: out of memory");
      r->stop_parse = 1;
      return;
    }
  }
  s->meta.stream_key = key;
  if (reader_next_seq(r, key, pl.has_seq, pl.seq, &s->meta.seq) != 0) {
    r->nscratch--;
    reader_set_done(r, SEA_ENOMEM, "stdin: out of memory");
    r->stop_parse = 1;
    return;
  }
  s->meta.shard_id = pl.has_shard ? pl.shard : 0;
  if (pl.has_ts)
    s->meta.timestamp_us = pl.timestamp_us;
  s->off = (size_t)((const uint8_t *)pl.payload - r->base);
  s->len = pl.payload_len;
  if (r->key_delim_len > 0)
    split_key(r, s);
}

/* Split [start, fill) into lines. At EOF the last line needs no '\n'. */
static void reader_parse(stdio_reader_t *r, int eof) {
  size_t scan = r->scanned > r->start ? r->scanned : r->start;
  while (!r->stop_parse && scan < r->fill) {
    uint8_t *nl = memchr(r->base + scan, r->delim, r->fill - scan);
    if (nl == NULL)
      break;
    reader_line(r, r->base + r->start, (size_t)(nl - (r->base + r->start)));
    r->start = scan = (size_t)(nl - r->base) + 1;
  }
  r->scanned = r->fill;
  if (r->stop_parse)
    return;
  size_t partial = r->fill - r->start;
  if (eof && partial > 0) {
    reader_line(r, r->base + r->start, partial);
    r->start = r->fill;
  } else if (partial > r->max_max_line + 1) {
    /* +1: the line may still turn out to end in "\r\n". */
    char msg[STDIO_MSG_MAX];
    too_long_msg(msg, sizeof msg, r->line_no + 1, r->max_max_line);
    reader_set_done(r, SEA_ETOOBIG, msg);
    r->stop_parse = 1;
  }
}

/* Room for the next read: a new block when this one is nearly full, carrying the partial line. */
static int reader_make_room(stdio_reader_t *r) {
  if (r->blk != NULL && r->cap - r->fill >= STDIO_MIN_ROOM)
    return 0;
  size_t partial = r->blk ? r->fill - r->start : 0;
  size_t size = STDIO_CHUNK;
  while (size < partial + STDIO_MIN_ROOM)
    size *= 2; /* geometric, so a long line is copied O(1) times per byte on average */
  sea_block_t *b = stdio_host->block_new(size);
  if (b == NULL)
    return SEA_ENOMEM;
  uint8_t *base = stdio_host->block_data(b);
  if (partial > 0)
    memcpy(base, r->base + r->start, partial);
  stdio_host->block_unref(r->blk); /* messages keep their own references */
  r->blk = b;
  r->base = base;
  r->cap = size;
  r->fill = r->scanned = partial;
  r->start = 0;
  return 0;
}

/* strict: the watch reported an error, so "nothing to read" (EAGAIN) at once is that error. */
static void reader_read(stdio_reader_t *r, int strict) {
  size_t budget = STDIO_READ_BUDGET;
  while (reader_can_read(r)) {
    if (reader_make_room(r) != 0) {
      reader_set_done(r, SEA_ENOMEM, "stdin: out of memory");
      break;
    }
    size_t room = r->cap - r->fill;
    ssize_t n = read(0, r->base + r->fill, room);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      int again = errno == EAGAIN || errno == EWOULDBLOCK;
      if (again && !strict)
        break;
      char msg[STDIO_MSG_MAX];
      snprintf(msg, sizeof msg, "stdin: %s", again ? "poll error" : strerror(errno));
      reader_set_done(r, SEA_EIO, msg);
      break;
    }
    strict = 0;
    r->now_us = stdio_host->now_us();
    r->fill += (size_t)n;
    reader_parse(r, n == 0);
    reader_dispatch(r);
    if (n == 0) {
      reader_set_done(r, SEA_EOF, "end of stdin");
      break;
    }
    if ((size_t)n >= budget)
      break;
    budget -= (size_t)n;
    /* A short read from a pipe or terminal means it is empty: skip the read that would say
     * EAGAIN and let the watch tell us when there is more. */
    if ((size_t)n < room && !r->is_regular)
      break;
  }
}

/* End of a turn: hand over what was built, end the consumers that are finished, and decide
 * whether to keep watching stdin. */
static void reader_settle(stdio_reader_t *r) {
  for (size_t i = 0; i < r->ncons; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (c->closed)
      continue;
    while (c->held_count > 0 && !c->paused && !c->closed) {
      sea_batch_t *b = c->held[c->held_head];
      c->held_head = (c->held_head + 1) % c->held_cap;
      c->held_count--;
      stdio_host->deliver(c->c, b);
    }
    if (!c->closed)
      consumer_flush_cur(c);
    if (r->done && c->started && c->end_state == END_NONE)
      consumer_end_pending(c, r->done_status, r->done_msg);
    if (c->end_state == END_PENDING && c->held_count == 0 && c->cur == NULL && !c->closed) {
      c->end_state = END_DONE;
      stdio_host->consumer_end(c->c, c->end_status, "%s", c->end_msg);
    }
  }
  reader_update_watch(r);
}

static void consumer_free(stdio_consumer_t *c) {
  stdio_host->batch_release(c->cur);
  for (size_t i = 0; i < c->held_count; i++)
    stdio_host->batch_release(c->held[(c->held_head + i) % c->held_cap]);
  stdio_host->free(c->held);
  stdio_host->free(c->keys);
  stdio_host->free(c);
}

static void reader_free(stdio_reader_t *r) {
  if (r->watch)
    stdio_host->watch_stop(r->watch);
  if (r->kick)
    stdio_host->timer_stop(r->kick);
  while (r->groups) {
    stdio_group_t *g = r->groups;
    r->groups = g->next;
    map_free(&g->rr);
    stdio_host->free(g->name);
    stdio_host->free(g);
  }
  stdio_host->block_unref(r->blk);
  map_free(&r->seqs);
  stdio_host->free(r->scratch);
  stdio_host->free(r->cons);
  stdio_host->free(r);
  if (stdio_reader == r)
    stdio_reader = NULL;
  fds_release();
}

/* Free what was closed while we were inside a callback; the reader goes with its last consumer. */
static int reader_gc(stdio_reader_t *r) {
  if (r->busy > 0)
    return 0;
  if (r->need_gc) {
    r->need_gc = 0;
    size_t j = 0;
    for (size_t i = 0; i < r->ncons; i++) {
      if (r->cons[i]->closed)
        consumer_free(r->cons[i]);
      else
        r->cons[j++] = r->cons[i];
    }
    r->ncons = j;
    stdio_group_t **pg = &r->groups;
    while (*pg) {
      stdio_group_t *g = *pg;
      int used = 0;
      for (size_t i = 0; i < r->ncons && !used; i++)
        used = r->cons[i]->group == g;
      if (used) {
        pg = &g->next;
      } else {
        *pg = g->next;
        map_free(&g->rr);
        stdio_host->free(g->name);
        stdio_host->free(g);
      }
    }
  }
  if (r->ncons == 0) {
    reader_free(r);
    return 1;
  }
  return 0;
}

static void reader_on_readable(sea_watch_t *w, int status, int events, void *data) {
  stdio_reader_t *r = data;
  r->busy++;
  if (status < 0) {
    /* libuv has stopped the handle. A read tells what happened (EOF, or the real error); if
     * there is simply nothing to read, the poll error stands (SEA_EIO). */
    stdio_host->watch_stop(r->watch);
    r->watch = NULL;
    reader_read(r, 1);
  } else {
    reader_read(r, 0);
  }
  reader_settle(r);
  r->busy--;
  reader_gc(r);
}

static void reader_on_kick(sea_timer_t *t, void *data) {
  stdio_reader_t *r = data;
  stdio_host->timer_stop(r->kick);
  r->kick = NULL;
  r->busy++;
  reader_settle(r);
  r->busy--;
  reader_gc(r);
}

static int reader_get(sea_runtime_t *rt, stdio_reader_t **out) {
  stdio_reader_t *r = stdio_reader;
  if (r != NULL) {
    if (r->rt != rt) {
      stdio_host->set_error(rt, "stdio: stdin is already read by another runtime in this process");
      return SEA_EBUSY;
    }
    *out = r;
    return 0;
  }
  r = stdio_host->calloc(1, sizeof *r);
  if (r == NULL)
    return SEA_ENOMEM;
  r->rt = rt;
  r->bcast = stdio_host->stream_key("broadcast", 9);
  if (r->bcast == NULL) {
    stdio_host->free(r);
    return SEA_ENOMEM;
  }
  fds_acquire();
  int pollable;
  int rc = fd_prepare(0, &r->is_regular, &pollable);
  if (rc != 0) {
    stdio_host->set_error(rt, "stdio: stdin: %s", strerror(-rc));
    stdio_host->free(r);
    fds_release();
    return SEA_EIO;
  }
  stdio_reader = r;
  stdio_host->log(SEA_LOG_INFO, STDIO_NAME, "reading stdin (%s)",
                  r->is_regular ? "a file"
                  : pollable    ? "a pipe or socket"
                                : "a terminal or device");
  *out = r;
  return 0;
}

static int stdio_consumer_open(void *streamer_impl, sea_consumer_t *sc, const sea_open_args_t *args,
                               void **impl) {
  stdio_opts_t o;
  int rc = opts_parse(args->rt, args->backend_options, &o);
  if (rc != 0)
    return rc;
  if (args->mode == SEA_MODE_RESUMABLE) {
    stdio_host->set_error(args->rt,
                          "stdio: resumable consumers are not supported (stdin can't replay)");
    return SEA_ENOTSUP;
  }
  stdio_reader_t *r = NULL;
  rc = reader_get(args->rt, &r);
  if (rc != 0)
    return rc;
  if (r->ncons == 0) {
    r->delim = o.delim;
    memcpy(r->key_delim, o.key_delim, o.key_delim_len);
    r->key_delim_len = o.key_delim_len;
    r->empty_null = o.empty_null;
  } else if (r->delim != o.delim || r->key_delim_len != o.key_delim_len ||
             memcmp(r->key_delim, o.key_delim, o.key_delim_len) != 0 ||
             r->empty_null != o.empty_null) {
    stdio_host->set_error(args->rt, "stdio: stdin is already read by a consumer with other "
                                    "delimiter, key_delimiter or empty options");
    return SEA_EOPTION;
  }
  stdio_consumer_t *c = stdio_host->calloc(1, sizeof *c);
  if (c == NULL)
    goto nomem;
  c->r = r;
  c->c = sc;
  c->batch_cap = args->batch_size ? args->batch_size : STDIO_BATCH_DEFAULT;
  c->max_line = o.max_line;
  c->pass_malformed = o.pass_malformed;
  if (args->key_count > 0) {
    c->keys = stdio_host->alloc(args->key_count * sizeof *c->keys);
    if (c->keys == NULL)
      goto nomem;
    for (size_t i = 0; i < args->key_count; i++)
      c->keys[i] = args->keys[i];
    c->key_count = args->key_count;
  }
  if (args->mode == SEA_MODE_LOAD_BALANCED) {
    /* No group name: every such consumer of the process shares the unnamed group. */
    const char *name = args->group ? args->group : "";
    stdio_group_t *g;
    for (g = r->groups; g; g = g->next)
      if (strcmp(g->name, name) == 0)
        break;
    if (g == NULL) {
      g = stdio_host->calloc(1, sizeof *g);
      size_t n = strlen(name);
      char *copy = stdio_host->alloc(n + 1);
      if (g == NULL || copy == NULL) {
        stdio_host->free(g);
        stdio_host->free(copy);
        goto nomem;
      }
      memcpy(copy, name, n + 1);
      g->name = copy;
      g->next = r->groups;
      r->groups = g;
    }
    c->group = g;
  }
  if (r->ncons == r->cons_cap) {
    size_t cap = r->cons_cap ? r->cons_cap * 2 : 4;
    stdio_consumer_t **a = stdio_host->realloc(r->cons, cap * sizeof *a);
    if (a == NULL)
      goto nomem;
    r->cons = a;
    r->cons_cap = cap;
  }
  r->cons[r->ncons++] = c;
  reader_limits(r);
  if (c->group != NULL)
    stdio_host->log(SEA_LOG_INFO, STDIO_NAME,
                    "consumer joined load-balanced group '%s' of this process (%zu consumer(s) "
                    "read stdin)",
                    c->group->name, r->ncons);
  *impl = c;
  return 0;

nomem:
  if (c != NULL) {
    stdio_host->free(c->keys);
    stdio_host->free(c);
  }
  r->need_gc = 1; /* drops an unused new group, and the reader if it was made for us */
  reader_gc(r);
  stdio_host->set_error(args->rt, "stdio: out of memory");
  return SEA_ENOMEM;
}

static int stdio_consumer_start(void *impl) {
  stdio_consumer_t *c = impl;
  stdio_reader_t *r = c->r;
  c->started = 1;
  if (r->done)
    reader_kick(r); /* stdin already finished: the end comes on the next turn, not inside start */
  else
    reader_update_watch(r);
  return 0;
}

static int stdio_consumer_pause(void *impl) {
  stdio_consumer_t *c = impl;
  c->paused = 1;
  reader_update_watch(c->r);
  return 0;
}

static int stdio_consumer_resume(void *impl) {
  stdio_consumer_t *c = impl;
  c->paused = 0;
  if (c->held_count > 0 || c->cur != NULL || c->end_state == END_PENDING || c->r->done)
    reader_kick(c->r);
  reader_update_watch(c->r);
  return 0;
}

static void stdio_consumer_close(void *impl) {
  stdio_consumer_t *c = impl;
  stdio_reader_t *r = c->r;
  c->closed = 1;
  stdio_host->batch_release(c->cur);
  c->cur = NULL;
  while (c->held_count > 0) {
    stdio_host->batch_release(c->held[c->held_head]);
    c->held_head = (c->held_head + 1) % c->held_cap;
    c->held_count--;
  }
  r->need_gc = 1;
  reader_limits(r);
  if (r->busy == 0 && !reader_gc(r))
    reader_update_watch(r);
}

/* ---------------------------------------------------------------------------------------------
 * Producers: one writer of stdout per process, shared by every stdio producer, so lines from
 * different producers never interleave mid-line and seq counts per key across all of them.
 * ------------------------------------------------------------------------------------------- */
typedef struct stdio_writer stdio_writer_t;

typedef struct stdio_op_wait {
  sea_op_t *op;
  uint64_t target; /* done once this many bytes have been written */
} stdio_op_wait_t;

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
  int want_ready, ended, closed, failed;
  stdio_op_wait_t *ops;
  size_t nops, ops_cap;
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
  sea_watch_t *watch; /* fd 1 writable: waiting after EAGAIN, or for the next turn */
  sea_timer_t *kick;
  int in_kick;
  int pollable; /* a watch on fd 1 changes nothing: use it to ask for the next turn */
  int err;
  char errmsg[STDIO_MSG_MAX];
  int err_reported;
  stdio_map_t seqs;
  const char *key_in, *key_out; /* last interned key */
  int64_t ts_ms;
  char ts[32];
  size_t ts_len;
  unsigned busy;
  int need_gc;
  int closing; /* being freed: write what we can, start nothing */
};

static stdio_writer_t *stdio_writer;

static size_t writer_pending(const stdio_writer_t *w) {
  return w->len - w->head;
}

static void writer_on_writable(sea_watch_t *wt, int status, int events, void *data);
static void writer_on_kick(sea_timer_t *t, void *data);

/* Make sure a loop callback comes to write and report. Inside our own timer callback a new 0 ms
 * timer would run in the same timer pass (libuv runs due timers until none is due), so ask the
 * poll phase instead: fd 1 is almost always writable, and regular files are always ready. Where
 * polling would make fd 1 nonblocking behind our back (a terminal), a 1 ms timer does. */
static void writer_schedule(stdio_writer_t *w) {
  if (w->closing || w->watch != NULL || (w->kick != NULL && !w->in_kick))
    return;
  if (w->in_kick && w->pollable) {
    stdio_fds.touched[1] = 1;
    w->watch = stdio_host->watch_start(w->rt, 1, SEA_WATCH_WRITABLE, writer_on_writable, w);
    if (w->watch != NULL)
      return;
  }
  if (w->kick == NULL)
    w->kick = stdio_host->timer_start(w->rt, w->in_kick ? 1 : 0, 0, writer_on_kick, w);
}

static void writer_fail(stdio_writer_t *w, int status, const char *msg) {
  if (w->err != 0)
    return;
  w->err = status;
  snprintf(w->errmsg, sizeof w->errmsg, "%s", msg);
  stdio_host->log(status == SEA_EPIPE ? SEA_LOG_INFO : SEA_LOG_WARN, STDIO_NAME,
                  "%s, after %llu byte(s) written", msg, (unsigned long long)w->written);
  w->head = w->len = 0; /* nothing more will be written */
  writer_schedule(w);   /* the callbacks come from the loop, not from inside a send */
}

/* Write what is buffered until done or EAGAIN. Never calls back into the host's users. */
static void writer_write(stdio_writer_t *w) {
  while (w->err == 0 && writer_pending(w) > 0) {
    ssize_t n = write(1, w->buf + w->head, writer_pending(w));
    if (n >= 0) {
      w->head += (size_t)n;
      w->written += (uint64_t)n;
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (w->watch == NULL && !w->closing) {
        stdio_fds.touched[1] = 1;
        w->watch = stdio_host->watch_start(w->rt, 1, SEA_WATCH_WRITABLE, writer_on_writable, w);
        if (w->watch == NULL)
          writer_fail(w, SEA_EIO, "stdout: cannot watch fd 1");
      }
      return;
    }
    if (errno == EPIPE) {
      writer_fail(w, SEA_EPIPE, "stdout: broken pipe (the reader went away)");
    } else {
      char msg[STDIO_MSG_MAX];
      snprintf(msg, sizeof msg, "stdout: %s", strerror(errno));
      writer_fail(w, SEA_EIO, msg);
    }
    return;
  }
  if (writer_pending(w) == 0)
    w->head = w->len = 0;
}

static void producer_ops_done(stdio_producer_t *p, uint64_t written, int err, const char *msg) {
  size_t i = 0;
  while (i < p->nops && !p->closed) {
    if (err == 0 && p->ops[i].target > written) {
      i++;
      continue;
    }
    sea_op_t *op = p->ops[i].op;
    memmove(&p->ops[i], &p->ops[i + 1], (p->nops - i - 1) * sizeof *p->ops);
    p->nops--;
    if (err != 0)
      stdio_host->op_done(op, err, "%s", msg);
    else
      stdio_host->op_done(op, 0, NULL);
  }
}

/* Everything the loop owes the users: receipts for written lines, flushes that completed, a
 * failure, and producers that may send again. Called from loop callbacks only. */
static void writer_progress(stdio_writer_t *w) {
  if (w->err != 0 && !w->err_reported) {
    w->err_reported = 1;
    for (size_t i = 0; i < w->nprods; i++) {
      stdio_producer_t *p = w->prods[i];
      if (!p->closed && !p->failed) {
        p->failed = 1;
        stdio_host->producer_fail(p->p, w->err, "%s", w->errmsg);
      }
    }
  }
  while (w->qcount > 0) {
    stdio_pending_t e = w->q[w->qhead];
    int ok = e.end <= w->written; /* lines written before a failure still succeeded */
    if (!ok && w->err == 0)
      break;
    w->qhead = (w->qhead + 1) & (w->qcap - 1);
    w->qcount--;
    if (e.p == NULL || e.p->closed)
      continue;
    if (ok)
      stdio_host->receipt(e.p->p, e.token, 0, &e.meta);
    else
      stdio_host->receipt(e.p->p, e.token, w->err, NULL);
  }
  for (size_t i = 0; i < w->nprods; i++)
    producer_ops_done(w->prods[i], w->written, w->err, w->errmsg);
  if (w->err == 0 && writer_pending(w) <= STDIO_OUT_LIMIT / 2) {
    for (size_t i = 0; i < w->nprods; i++) {
      stdio_producer_t *p = w->prods[i];
      if (p->want_ready && !p->closed) {
        p->want_ready = 0;
        stdio_host->producer_ready(p->p);
      }
    }
  }
}

static int writer_has_work(const stdio_writer_t *w) {
  if (writer_pending(w) > 0 || w->qcount > 0 || (w->err != 0 && !w->err_reported))
    return 1;
  for (size_t i = 0; i < w->nprods; i++) {
    const stdio_producer_t *p = w->prods[i];
    if (p->nops > 0 || (p->want_ready && !p->closed && w->err == 0))
      return 1;
  }
  return 0;
}

static void producer_free(stdio_producer_t *p) {
  tpl_free(p->tpl);
  stdio_host->free(p->ops);
  stdio_host->free(p);
}

static void writer_free(stdio_writer_t *w) {
  /* Best effort for bytes already accepted: one try, no waiting (close means now). */
  w->closing = 1;
  writer_write(w);
  if (w->watch)
    stdio_host->watch_stop(w->watch);
  if (w->kick)
    stdio_host->timer_stop(w->kick);
  stdio_host->free(w->buf);
  stdio_host->free(w->q);
  map_free(&w->seqs);
  stdio_host->free(w->prods);
  stdio_host->free(w);
  if (stdio_writer == w)
    stdio_writer = NULL;
  fds_release();
}

static void writer_gc(stdio_writer_t *w) {
  if (w->busy > 0)
    return;
  if (w->need_gc) {
    w->need_gc = 0;
    size_t j = 0;
    for (size_t i = 0; i < w->nprods; i++) {
      if (w->prods[i]->closed)
        producer_free(w->prods[i]);
      else
        w->prods[j++] = w->prods[i];
    }
    w->nprods = j;
  }
  if (w->nprods == 0)
    writer_free(w);
}

/* One loop turn of output work. */
static void writer_turn(stdio_writer_t *w) {
  w->busy++;
  writer_write(w);
  writer_progress(w);
  /* Sends made from the callbacks above: start writing them, report them next turn. */
  if (w->err == 0 && writer_pending(w) >= STDIO_WRITE_AT && w->watch == NULL)
    writer_write(w);
  w->busy--;
}

static void writer_on_kick(sea_timer_t *t, void *data) {
  stdio_writer_t *w = data;
  stdio_host->timer_stop(w->kick);
  w->kick = NULL;
  w->in_kick = 1;
  writer_turn(w);
  if (writer_has_work(w))
    writer_schedule(w);
  w->in_kick = 0;
  writer_gc(w);
}

static void writer_on_writable(sea_watch_t *wt, int status, int events, void *data) {
  stdio_writer_t *w = data;
  w->in_kick = 1; /* as in the timer: ask for the next turn, not for a re-run of this one */
  if (status < 0 && w->err == 0) {
    /* libuv stops a poll handle that reports an error (a pipe whose reader left shows as
     * EPOLLERR). The write says what really happened (EPIPE); if it can't even say that, the
     * poll error stands. */
    uint64_t before = w->written;
    stdio_host->watch_stop(w->watch);
    w->watch = NULL;
    w->closing = 1; /* write without starting a new watch */
    writer_write(w);
    w->closing = 0;
    if (w->err == 0 && w->written == before && writer_pending(w) > 0)
      writer_fail(w, SEA_EIO, "stdout: poll error");
  }
  writer_turn(w);
  /* Keep the watch while there is work (it is the next turn); drop it when idle, or it would
   * wake the loop on every turn for nothing. */
  if (!writer_has_work(w) && w->watch != NULL) {
    stdio_host->watch_stop(w->watch);
    w->watch = NULL;
  }
  w->in_kick = 0;
  writer_gc(w);
}

static int writer_get(sea_runtime_t *rt, stdio_writer_t **out) {
  stdio_writer_t *w = stdio_writer;
  if (w != NULL) {
    if (w->rt != rt) {
      stdio_host->set_error(rt,
                            "stdio: stdout is already written by another runtime in this process");
      return SEA_EBUSY;
    }
    if (w->err != 0) {
      stdio_host->set_error(rt, "stdio: %s", w->errmsg);
      return w->err;
    }
    *out = w;
    return 0;
  }
  w = stdio_host->calloc(1, sizeof *w);
  if (w == NULL)
    return SEA_ENOMEM;
  w->rt = rt;
  w->ts_ms = INT64_MIN;
  fds_acquire();
  int is_regular;
  int rc = fd_prepare(1, &is_regular, &w->pollable);
  if (rc != 0) {
    stdio_host->set_error(rt, "stdio: stdout: %s", strerror(-rc));
    stdio_host->free(w);
    fds_release();
    return SEA_EIO;
  }
  stdio_writer = w;
  stdio_host->log(SEA_LOG_INFO, STDIO_NAME, "writing stdout (%s)",
                  is_regular    ? "a file"
                  : w->pollable ? "a pipe or socket"
                                : "a terminal or device");
  *out = w;
  return 0;
}

static int stdio_producer_open(void *streamer_impl, sea_producer_t *sp, const sea_open_args_t *args,
                               void **impl) {
  stdio_opts_t o;
  int rc = opts_parse(args->rt, args->backend_options, &o);
  if (rc != 0)
    return rc;
  stdio_producer_t *p = stdio_host->calloc(1, sizeof *p);
  if (p == NULL)
    return SEA_ENOMEM;
  p->p = sp;
  p->format = o.format;
  p->delim = o.delim;
  memcpy(p->key_delim, o.key_delim, o.key_delim_len);
  p->key_delim_len = o.key_delim_len;
  memcpy(p->null_text, o.null_text, o.null_len);
  p->null_len = o.null_len;
  p->unbuffered = o.unbuffered;
  if (o.key_delim_len > 0 && o.format == FMT_LINE)
    p->format = FMT_KEYED; /* kcat -K: key DELIM payload; format=json (-J), payload and a
                              template (-f) win over it */
  p->anchor = args->anchor;
  p->max_payload = args->max_payload ? args->max_payload : SEA_PAYLOAD_MAX_DEFAULT;
  if (o.template_src != NULL) {
    rc = tpl_compile(args->rt, o.template_src, &p->tpl);
    if (rc != 0) {
      stdio_host->free(p);
      return rc;
    }
    p->format = FMT_TEMPLATE;
  }
  stdio_writer_t *w = NULL;
  rc = writer_get(args->rt, &w);
  if (rc != 0) {
    producer_free(p);
    return rc;
  }
  if (w->nprods == w->prods_cap) {
    size_t cap = w->prods_cap ? w->prods_cap * 2 : 4;
    stdio_producer_t **a = stdio_host->realloc(w->prods, cap * sizeof *a);
    if (a == NULL) {
      producer_free(p);
      writer_gc(w);
      return SEA_ENOMEM;
    }
    w->prods = a;
    w->prods_cap = cap;
  }
  p->w = w;
  w->prods[w->nprods++] = p;
  *impl = p;
  return 0;
}

/* ---- output formatting: straight into the writer's buffer ---- */

/* Room for n more bytes at the end of the buffer; NULL when out of memory. */
static char *out_reserve(stdio_writer_t *w, size_t n) {
  if (w->cap - w->len >= n)
    return w->buf + w->len;
  if (w->head > 0) {
    /* Move the unwritten bytes down before growing: the buffer stays about the limit's size. */
    memmove(w->buf, w->buf + w->head, w->len - w->head);
    w->len -= w->head;
    w->head = 0;
    if (w->cap - w->len >= n)
      return w->buf + w->len;
  }
  size_t cap = w->cap ? w->cap : 256u * 1024u;
  while (cap - w->len < n) {
    if (cap > SIZE_MAX / 2)
      return NULL;
    cap *= 2;
  }
  char *b = stdio_host->realloc(w->buf, cap);
  if (b == NULL)
    return NULL;
  w->buf = b;
  w->cap = cap;
  return w->buf + w->len;
}

static int out_bytes(stdio_writer_t *w, const void *s, size_t n) {
  if (n == 0)
    return 0; /* nothing to copy (and the buffer may not exist yet) */
  char *d = out_reserve(w, n);
  if (d == NULL)
    return -1;
  memcpy(d, s, n);
  w->len += n;
  return 0;
}

static size_t fmt_u64(char *d, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    d[i] = tmp[n - 1 - i];
  return n;
}

static size_t fmt_i64(char *d, int64_t v) {
  if (v < 0) {
    d[0] = '-';
    return 1 + fmt_u64(d + 1, (uint64_t)0 - (uint64_t)v);
  }
  return fmt_u64(d, (uint64_t)v);
}

static int out_u64(stdio_writer_t *w, uint64_t v) {
  char *d = out_reserve(w, 20);
  if (d == NULL)
    return -1;
  w->len += fmt_u64(d, v);
  return 0;
}

/* The millisecond text of a timestamp. Formatting is cached: consecutive messages mostly share
 * the millisecond, or at least the second (then only the three digits change). */
static const char *writer_ts(stdio_writer_t *w, int64_t us, size_t *len) {
  int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
  if (ms != w->ts_ms) {
    if (ms >= 0 && w->ts_ms >= 0 && ms / 1000 == w->ts_ms / 1000 && w->ts_len == 23 &&
        w->ts[19] == '.') {
      unsigned f = (unsigned)(ms % 1000);
      w->ts[20] = (char)('0' + f / 100);
      w->ts[21] = (char)('0' + f / 10 % 10);
      w->ts[22] = (char)('0' + f % 10);
    } else {
      w->ts_len = stdio_host->format_timestamp(us, w->ts);
    }
    w->ts_ms = ms;
  }
  *len = w->ts_len;
  return w->ts;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the byte at p does not start one. */
static size_t utf8_seq(const uint8_t *p, size_t n) {
  uint8_t c = p[0];
  size_t need;
  uint32_t cp;
  if (c < 0xC2)
    return 0; /* continuation byte or overlong 2-byte lead */
  if (c < 0xE0) {
    need = 2;
    cp = c & 0x1F;
  } else if (c < 0xF0) {
    need = 3;
    cp = c & 0x0F;
  } else if (c < 0xF5) {
    need = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < need)
    return 0;
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return need;
}

/* Whether [s, s+n) is all valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF,
 * no truncated sequence): only then can a JSON string carry the bytes exactly. */
static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = utf8_seq(s + i, n - i);
    if (k == 0)
      return 0;
    i += k;
  }
  return 1;
}

/* Standard base64 (RFC 4648, with padding, no line breaks) of n bytes, straight into the
 * writer's buffer. A dozen lines of our own rather than a library: the stdio plugin depends on
 * nothing but the host, and this is the whole of what it needs (no decoding: nothing here reads
 * JSON). */
static int out_base64(stdio_writer_t *w, const uint8_t *s, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *d = out_reserve(w, (n + 2) / 3 * 4);
  if (d == NULL)
    return -1;
  char *o = d;
  size_t i = 0;
  for (; n - i >= 3; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = tab[v >> 18];
    *o++ = tab[v >> 12 & 63];
    *o++ = tab[v >> 6 & 63];
    *o++ = tab[v & 63];
  }
  if (n - i > 0) {
    uint32_t v = (uint32_t)s[i] << 16 | (n - i == 2 ? (uint32_t)s[i + 1] << 8 : 0);
    *o++ = tab[v >> 18];
    *o++ = tab[v >> 12 & 63];
    *o++ = n - i == 2 ? tab[v >> 6 & 63] : '=';
    *o++ = '=';
  }
  w->len += (size_t)(o - d);
  return 0;
}

/* A JSON string body: escapes as JSON needs (quote, backslash, and every control character below
 * U+0020). Valid UTF-8 is copied as is; a byte that is not part of valid UTF-8 is written as
 * \u00XX, which keeps the output valid JSON but cannot be told from the character U+00XX: fields
 * that must round-trip any bytes (payload, key, header values) check utf8_valid first and go to
 * their _b64 field instead. Only stream keys (ASCII by rule) and header names rely on this. */
static int out_json_str(stdio_writer_t *w, const uint8_t *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char *d = out_reserve(w, n * 6);
  if (d == NULL)
    return -1;
  char *o = d;
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      *o++ = (char)c;
      i++;
      continue;
    }
    if (c >= 0x80) {
      size_t k = utf8_seq(s + i, n - i);
      if (k > 0) {
        memcpy(o, s + i, k);
        o += k;
        i += k;
        continue;
      }
    }
    *o++ = '\\';
    switch (c) {
    case '"':
      *o++ = '"';
      break;
    case '\\':
      *o++ = '\\';
      break;
    case '\n':
      *o++ = 'n';
      break;
    case '\r':
      *o++ = 'r';
      break;
    case '\t':
      *o++ = 't';
      break;
    case '\b':
      *o++ = 'b';
      break;
    case '\f':
      *o++ = 'f';
      break;
    default:
      memcpy(o, "u00", 3);
      o[3] = hex[c >> 4];
      o[4] = hex[c & 15];
      o += 5;
    }
    i++;
  }
  w->len += (size_t)(o - d);
  return 0;
}

#define OUT_LIT(w, s) out_bytes((w), (s), sizeof(s) - 1)

static int format_line(stdio_writer_t *w, const sea_message_t *m, const sea_meta_t *meta,
                       int show_shard, const char *ts, size_t ts_len, char delim) {
  size_t klen = strlen(meta->stream_key);
  char *d = out_reserve(w, 1 + ts_len + 3 + klen + 3 + 20 + 3 + 20 + 2 + m->payload.len + 1);
  if (d == NULL)
    return -1;
  char *o = d;
  *o++ = '[';
  memcpy(o, ts, ts_len);
  o += ts_len;
  memcpy(o, " | ", 3);
  o += 3;
  memcpy(o, meta->stream_key, klen);
  o += klen;
  memcpy(o, " | ", 3);
  o += 3;
  o += fmt_u64(o, meta->seq);
  if (show_shard) {
    memcpy(o, " | ", 3);
    o += 3;
    o += fmt_u64(o, meta->shard_id);
  }
  memcpy(o, "] ", 2);
  o += 2;
  if (m->payload.len)
    memcpy(o, m->payload.data, m->payload.len);
  o += m->payload.len;
  *o++ = delim;
  w->len += (size_t)(o - d);
  return 0;
}

/* ,"name":"text" for valid UTF-8, else ,"name_b64":"base64": any bytes come back exactly. */
static int out_json_bytes(stdio_writer_t *w, const char *name, const uint8_t *s, size_t n) {
  int text = utf8_valid(s, n);
  return OUT_LIT(w, ",\"") || out_bytes(w, name, strlen(name)) ||
         (text ? OUT_LIT(w, "\":\"") : OUT_LIT(w, "_b64\":\"")) ||
         (text ? out_json_str(w, s, n) : out_base64(w, s, n)) || OUT_LIT(w, "\"");
}

static int format_json(stdio_writer_t *w, const sea_message_t *m, const sea_meta_t *meta,
                       const char *ts, size_t ts_len, char delim) {
  if (OUT_LIT(w, "{\"stream_key\":\"") ||
      out_bytes(w, meta->stream_key, strlen(meta->stream_key)) || OUT_LIT(w, "\",\"shard_id\":") ||
      out_u64(w, meta->shard_id) || OUT_LIT(w, ",\"seq\":") || out_u64(w, meta->seq) ||
      OUT_LIT(w, ",\"timestamp\":\"") || out_bytes(w, ts, ts_len) || OUT_LIT(w, "\"") ||
      out_json_bytes(w, "payload", m->payload.data, m->payload.len))
    return -1;
  if (m->key != NULL && out_json_bytes(w, "key", m->key, m->key_len))
    return -1;
  /* Header values: the text ones in "headers", the others (not valid UTF-8) in "headers_b64". */
  for (int pass = 0; pass < 2; pass++) {
    size_t n = 0;
    for (size_t i = 0; i < m->header_count; i++) {
      const sea_kv_t *h = &m->headers[i];
      int bin = h->value != NULL && !utf8_valid(h->value, h->value_len);
      if (bin != pass)
        continue;
      const char *open = n > 0 ? "," : pass ? ",\"headers_b64\":{" : ",\"headers\":{";
      if (out_bytes(w, open, strlen(open)) || OUT_LIT(w, "\"") ||
          out_json_str(w, (const uint8_t *)h->name, h->name_len) || OUT_LIT(w, "\":"))
        return -1;
      n++;
      if (h->value == NULL) {
        if (OUT_LIT(w, "null"))
          return -1;
      } else if (OUT_LIT(w, "\"") ||
                 (pass ? out_base64(w, h->value, h->value_len)
                       : out_json_str(w, h->value, h->value_len)) ||
                 OUT_LIT(w, "\"")) {
        return -1;
      }
    }
    if (n > 0 && OUT_LIT(w, "}"))
      return -1;
  }
  return OUT_LIT(w, "}") || out_bytes(w, &delim, 1);
}

/* Bytes, or the null= text for NULL ones (a key never set; kcat -Z prints "NULL"). */
static int out_or_null(stdio_writer_t *w, const stdio_producer_t *p, const void *s, size_t n) {
  if (s == NULL)
    return out_bytes(w, p->null_text, p->null_len);
  return out_bytes(w, s, n);
}

/* kcat -K: key, the key delimiter, the payload and the delimiter. */
static int format_keyed(stdio_writer_t *w, const stdio_producer_t *p, const sea_message_t *m) {
  return out_or_null(w, p, m->key, m->key_len) || out_bytes(w, p->key_delim, p->key_delim_len) ||
         out_or_null(w, p, m->payload.data, m->payload.len) || out_bytes(w, &p->delim, 1);
}

/* A length as 4 bytes, big-endian, signed (kcat's %R); -1 for NULL. */
static int out_be32(stdio_writer_t *w, const void *s, size_t n) {
  int64_t v = s == NULL ? -1 : n > INT32_MAX ? INT32_MAX : (int64_t)n;
  uint32_t u = (uint32_t)(int32_t)v;
  char b[4] = {(char)(u >> 24), (char)(u >> 16), (char)(u >> 8), (char)u};
  return out_bytes(w, b, 4);
}

static int format_template(stdio_writer_t *w, const stdio_producer_t *p, const sea_message_t *m,
                           const sea_meta_t *meta) {
  const stdio_tpl_t *t = p->tpl;
  for (size_t i = 0; i < t->count; i++) {
    const stdio_tpl_op_t *op = &t->ops[i];
    int rc = 0;
    char num[24];
    switch (op->op) {
    case 0:
      rc = out_bytes(w, t->lit + op->off, op->len);
      break;
    case 's':
      rc = out_or_null(w, p, m->payload.data, m->payload.len);
      break;
    case 'k':
      rc = out_or_null(w, p, m->key, m->key_len);
      break;
    case 'K': /* kcat: the key's length, -1 for none */
      rc = m->key ? out_u64(w, m->key_len) : OUT_LIT(w, "-1");
      break;
    case 'R':
      rc = out_be32(w, m->payload.data, m->payload.len);
      break;
    case 't':
      rc = out_bytes(w, meta->stream_key, strlen(meta->stream_key));
      break;
    case 'p':
      rc = out_u64(w, meta->shard_id);
      break;
    case 'o':
      rc = out_u64(w, meta->seq);
      break;
    case 'S':
      rc = out_u64(w, m->payload.len);
      break;
    case 'T': {
      int64_t us = meta->timestamp_us;
      rc = out_bytes(w, num, fmt_i64(num, us >= 0 ? us / 1000 : -((-us + 999) / 1000)));
      break;
    }
    case 'h':
      for (size_t j = 0; j < m->header_count && rc == 0; j++) {
        const sea_kv_t *h = &m->headers[j];
        rc = (j > 0 ? OUT_LIT(w, ",") : 0) || out_bytes(w, h->name, h->name_len) ||
             OUT_LIT(w, "=") || (h->value ? out_bytes(w, h->value, h->value_len) : 0);
      }
      break;
    }
    if (rc != 0)
      return -1;
  }
  return 0;
}

static int has_delim(const void *s, size_t n, char delim) {
  return n > 0 && memchr(s, delim, n) != NULL;
}

/* stdio is line-oriented: a '\n' (or the delimiter= byte) printed raw would split one message
 * into two. */
static int producer_check_lines(const stdio_producer_t *p, const sea_message_t *m) {
  char d = p->delim;
  if (p->format == FMT_JSON)
    return 0;
  if (p->format != FMT_TEMPLATE || p->tpl->uses_payload) {
    if (has_delim(m->payload.data, m->payload.len, d))
      return SEA_EFORMAT;
  }
  int key_shown = p->format == FMT_KEYED || (p->format == FMT_TEMPLATE && p->tpl->uses_key);
  if (key_shown && m->key && has_delim(m->key, m->key_len, d))
    return SEA_EFORMAT;
  if (p->format == FMT_TEMPLATE && p->tpl->uses_headers) {
    for (size_t i = 0; i < m->header_count; i++) {
      const sea_kv_t *h = &m->headers[i];
      if (has_delim(h->name, h->name_len, d) || (h->value && has_delim(h->value, h->value_len, d)))
        return SEA_EFORMAT;
    }
  }
  return 0;
}

static int writer_queue_room(stdio_writer_t *w) {
  if (w->qcount < w->qcap)
    return 0;
  size_t cap = w->qcap ? w->qcap * 2 : 1024;
  stdio_pending_t *q = stdio_host->realloc(w->q, cap * sizeof *q);
  if (q == NULL)
    return SEA_ENOMEM;
  /* The ring wrapped at the old end: move the wrapped front part after it. */
  if (w->qhead + w->qcount > w->qcap)
    memcpy(q + w->qcap, q, (w->qhead + w->qcount - w->qcap) * sizeof *q);
  w->q = q;
  w->qcap = cap;
  return 0;
}

static int stdio_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  stdio_producer_t *p = impl;
  stdio_writer_t *w = p->w;
  if (w->err != 0)
    return w->err;
  if (p->ended)
    return SEA_ESTATE;
  if (m->payload.len > p->max_payload)
    return SEA_ETOOBIG;
  if (m->payload.len > 0 && m->payload.data == NULL)
    return SEA_EINVAL;
  int rc = producer_check_lines(p, m);
  if (rc != 0) {
    stdio_host->set_error(w->rt,
                          "stdio: a printed field holds the message delimiter (%s): it would "
                          "split the message in two (print it with -J, or pick another -D)",
                          p->delim == '\n' ? "a newline" : "delimiter=");
    return rc;
  }

  const char *key = m->meta.stream_key ? m->meta.stream_key : p->anchor;
  if (key == NULL)
    return SEA_EKEY;
  if (key != w->key_in) {
    /* Keys arrive interned already; interning again makes sure the seq map's pointer identity
     * holds, and the cache makes that free for a run of the same key. */
    const char *k = stdio_host->stream_key(key, strlen(key));
    if (k == NULL)
      return SEA_EKEY;
    w->key_in = key;
    w->key_out = k;
  }
  key = w->key_out;

  size_t pending = writer_pending(w);
  if (pending > 0 && pending + m->payload.len + 128 > STDIO_OUT_LIMIT) {
    p->want_ready = 1;
    return SEA_EAGAIN;
  }
  if (writer_queue_room(w) != 0)
    return SEA_ENOMEM;

  sea_meta_t meta;
  meta.stream_key = key;
  meta.timestamp_us = m->meta.timestamp_us ? m->meta.timestamp_us : stdio_host->now_us();
  int keep = (flags & SEA_SEND_KEEP_META) != 0;
  uint64_t *ctr = NULL;
  if (keep) {
    meta.seq = m->meta.seq;
    meta.shard_id = m->meta.shard_id;
  } else {
    ctr = map_get(&w->seqs, key);
    if (ctr == NULL)
      return SEA_ENOMEM;
    meta.seq = *ctr;
    meta.shard_id = 0;
  }

  size_t mark = writer_pending(w); /* out_reserve may slide the bytes down, so keep a length */
  size_t ts_len;
  const char *ts;
  switch (p->format) {
  case FMT_LINE:
    ts = writer_ts(w, meta.timestamp_us, &ts_len);
    rc = format_line(w, m, &meta, keep && meta.shard_id != 0, ts, ts_len, p->delim);
    break;
  case FMT_JSON:
    ts = writer_ts(w, meta.timestamp_us, &ts_len);
    rc = format_json(w, m, &meta, ts, ts_len, p->delim);
    break;
  case FMT_PAYLOAD:
    rc = out_bytes(w, m->payload.data, m->payload.len) || out_bytes(w, &p->delim, 1);
    break;
  case FMT_KEYED:
    rc = format_keyed(w, p, m);
    break;
  default:
    rc = format_template(w, p, m, &meta);
    break;
  }
  if (rc != 0) {
    w->len = w->head + mark;
    return SEA_ENOMEM;
  }
  if (ctr != NULL)
    (*ctr)++;

  stdio_pending_t *e = &w->q[(w->qhead + w->qcount) & (w->qcap - 1)];
  e->p = p;
  e->token = token;
  e->end = w->written + writer_pending(w);
  e->meta = meta;
  w->qcount++;

  if ((p->unbuffered || writer_pending(w) >= STDIO_WRITE_AT) && w->watch == NULL)
    writer_write(w);
  writer_schedule(w);
  return 0;
}

static int producer_add_op(stdio_producer_t *p, sea_op_t *op) {
  stdio_writer_t *w = p->w;
  /* After a failure (the reader of stdout went away) the op is still taken: it fails on the loop
   * once the receipts are out, so a flush still tells its caller which lines were written whole
   * (those succeed and may be committed) before it reports the failure. */
  if (p->nops == p->ops_cap) {
    size_t cap = p->ops_cap ? p->ops_cap * 2 : 2;
    stdio_op_wait_t *a = stdio_host->realloc(p->ops, cap * sizeof *a);
    if (a == NULL)
      return SEA_ENOMEM;
    p->ops = a;
    p->ops_cap = cap;
  }
  p->ops[p->nops].op = op;
  p->ops[p->nops].target = w->written + writer_pending(w);
  p->nops++;
  if (w->watch == NULL && w->err == 0)
    writer_write(w);
  writer_schedule(w); /* done on the next turn, never inside this call */
  return 0;
}

static int stdio_producer_flush(void *impl, sea_op_t *op) {
  return producer_add_op(impl, op);
}

static int stdio_producer_end(void *impl, sea_op_t *op) {
  stdio_producer_t *p = impl;
  int rc = producer_add_op(p, op);
  if (rc == 0)
    p->ended = 1; /* stdio has no end marker: ending is flushing and refusing further sends */
  return rc;
}

static void stdio_producer_close(void *impl) {
  stdio_producer_t *p = impl;
  stdio_writer_t *w = p->w;
  p->closed = 1;
  for (size_t i = 0; i < w->qcount; i++) {
    stdio_pending_t *e = &w->q[(w->qhead + i) & (w->qcap - 1)];
    if (e->p == p)
      e->p = NULL;
  }
  /* Pending flush/end ops are the host's to cancel, like the receipts. */
  p->nops = 0;
  w->need_gc = 1;
  writer_gc(w);
}

/* ---------------------------------------------------------------------------------------------
 * The plugin
 * ------------------------------------------------------------------------------------------- */
static const char *const stdio_schemes[] = {"stdio", NULL};

static const sea_plugin_t stdio_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = STDIO_NAME,
    .schemes = stdio_schemes,
    .version = "1.0.0",
    .description = "lines on stdin and stdout, in SeaStreamer's [timestamp | key | seq] format",
    /* Keys: read with key_delimiter=, printed by it, by format=json and by templates. */
    .caps = SEA_CAP_REALTIME | SEA_CAP_LOAD_BALANCED | SEA_CAP_KEY,
    .default_port = 0,
    .connect = stdio_connect,
    .disconnect = stdio_disconnect,
    .producer_open = stdio_producer_open,
    .producer_send = stdio_producer_send,
    .producer_flush = stdio_producer_flush,
    .producer_end = stdio_producer_end,
    .producer_close = stdio_producer_close,
    .consumer_open = stdio_consumer_open,
    .consumer_start = stdio_consumer_start,
    .consumer_pause = stdio_consumer_pause,
    .consumer_resume = stdio_consumer_resume,
    .consumer_close = stdio_consumer_close,
};

/* The macro gives no prototype, and -Wmissing-prototypes wants one: the macro itself makes it. */
SEA_PLUGIN_ENTRY(stdio) {
  if (host == NULL || host->abi_major != SEA_PLUGIN_ABI_MAJOR ||
      host->struct_size < SEA_HOST_V1_0_SIZE)
    return NULL;
  stdio_host = host;
  return &stdio_plugin;
}
