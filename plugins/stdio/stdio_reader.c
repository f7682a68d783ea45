/* stdio_reader.c: the consumer side of the stdio backend. One reader of stdin per process reads
 * big blocks, cuts them into lines (stdio_parse.c parses each line's header) and routes every line
 * to the consumers that want its key: all realtime ones, one per load-balanced group. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stdio_internal.h"
#include "stdio_parse.h"

/* Reads go into blocks of this size, so a read is big and a block holds many payloads. */
#define STDIO_CHUNK (256u * 1024u)
/* Start a new block when the current one has less room than this: small reads cost syscalls. */
#define STDIO_MIN_ROOM (16u * 1024u)
/* Bytes read per loop turn before yielding, so one busy stdin can't starve the loop. */
#define STDIO_READ_BUDGET (4u * 1024u * 1024u)
#define STDIO_BATCH_DEFAULT 4096u

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
  int fed_paused; /* it was given lines while paused (the only member wanting their key) */
  int end_state, end_status;
  char end_msg[STDIO_MSG_MAX];
  sea_batch_t *cur; /* being filled */
  size_t cur_cap;
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
  sea_timer_t *kick; /* the next turn: settles what a start, resume or failed watch left */
  int done;          /* stdin is finished for us (EOF, error, or a line no consumer accepts) */
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
 * consumer stops it (the host would hold its lines without bound), a paused member of a
 * load-balanced group once it was given lines (no running member wanted their key), and a group
 * stops it when all its members are paused. With one consumer this is simply "not paused". */
static int reader_can_read(stdio_reader_t *r) {
  int any = 0;
  if (r->done || r->stop_parse)
    return 0;
  for (size_t i = 0; i < r->ncons; i++) {
    stdio_consumer_t *c = r->cons[i];
    if (!consumer_live(c))
      continue;
    any = 1;
    if (c->paused && (c->group == NULL || c->fed_paused))
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
  sea_host->log(status == SEA_EOF ? SEA_LOG_INFO : SEA_LOG_WARN, STDIO_NAME,
                "stdin: %s after %llu line(s)", msg, (unsigned long long)r->line_no);
}

static void reader_update_watch(stdio_reader_t *r) {
  int want = reader_can_read(r);
  if (want && r->watch == NULL) {
    stdio_fd_touch(0); /* libuv makes a polled fd nonblocking */
    r->watch = sea_host->watch_start(r->rt, 0, SEA_WATCH_READABLE, reader_on_readable, r);
    if (r->watch == NULL) {
      reader_set_done(r, SEA_EIO, "stdin: cannot watch fd 0");
      sea_host->timer_start(r->kick, 0, 0);
    }
  } else if (!want && r->watch != NULL) {
    sea_host->watch_stop(r->watch);
    r->watch = NULL;
  }
}

static void reader_kick(stdio_reader_t *r) {
  sea_host->timer_start(r->kick, 0, 0);
}

/* Hand the batch being filled to the host (which holds it while the consumer is paused). */
static void consumer_flush_cur(stdio_consumer_t *c) {
  sea_batch_t *b = c->cur;
  if (b == NULL)
    return;
  c->cur = NULL;
  if (b->count == 0) {
    sea_host->batch_release(b);
    return;
  }
  c->fed_paused |= c->paused;
  if (c->closed)
    sea_host->batch_release(b);
  else
    sea_host->deliver(c->c, b);
}

static void consumer_add(stdio_consumer_t *c, const stdio_scratch_t *s, size_t left) {
  stdio_reader_t *r = c->r;
  if (c->cur == NULL) {
    /* No more than this read can give it, so small reads make small batches. */
    size_t cap = c->batch_cap < left ? c->batch_cap : left;
    c->cur = sea_host->batch_new(cap);
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
  m->payload.block = sea_host->block_ref(r->blk);
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
  uint64_t *next = stdio_map_get(&g->rr, key);
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
  if (SEA_GROW(r->scratch, r->scratch_cap, r->nscratch + 1, 1024) != 0)
    return NULL;
  return &r->scratch[r->nscratch++];
}

static const char *reader_intern(stdio_reader_t *r, const char *key, size_t len) {
  if (r->last_key != NULL && len == r->last_key_len && memcmp(key, r->last_key, len) == 0)
    return r->last_key;
  const char *k = sea_host->stream_key(key, len);
  if (k != NULL) {
    r->last_key = k;
    r->last_key_len = len;
  }
  return k;
}

static int reader_next_seq(stdio_reader_t *r, const char *key, int has_seq, uint64_t seq,
                           uint64_t *out) {
  uint64_t *ctr = stdio_map_get(&r->seqs, key);
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
  int rc = stdio_parse_line_with((const char *)line, len, sea_host->parse_timestamp, &pl, &why);
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
  sea_block_t *b = sea_host->block_new(size);
  if (b == NULL)
    return SEA_ENOMEM;
  uint8_t *base = sea_host->block_data(b);
  if (partial > 0)
    memcpy(base, r->base + r->start, partial);
  sea_host->block_unref(r->blk); /* messages keep their own references */
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
    r->now_us = sea_host->now_us();
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
    consumer_flush_cur(c);
    if (r->done && c->started && c->end_state == END_NONE)
      consumer_end_pending(c, r->done_status, r->done_msg);
    if (c->end_state == END_PENDING && c->cur == NULL && !c->closed) {
      c->end_state = END_DONE;
      sea_host->consumer_end(c->c, c->end_status, "%s", c->end_msg);
    }
  }
  reader_update_watch(r);
}

static void consumer_free(stdio_consumer_t *c) {
  sea_host->batch_release(c->cur);
  sea_host->free(c->keys);
  sea_host->free(c);
}

static void reader_free(stdio_reader_t *r) {
  if (r->watch)
    sea_host->watch_stop(r->watch);
  sea_host->timer_close(r->kick);
  while (r->groups) {
    stdio_group_t *g = r->groups;
    r->groups = g->next;
    stdio_map_free(&g->rr);
    sea_host->free(g->name);
    sea_host->free(g);
  }
  sea_host->block_unref(r->blk);
  stdio_map_free(&r->seqs);
  sea_host->free(r->scratch);
  sea_host->free(r->cons);
  sea_host->free(r);
  if (stdio_reader == r)
    stdio_reader = NULL;
  stdio_fds_release();
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
        stdio_map_free(&g->rr);
        sea_host->free(g->name);
        sea_host->free(g);
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
    sea_host->watch_stop(r->watch);
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
  r->busy++;
  reader_settle(r);
  r->busy--;
  reader_gc(r);
}

static int reader_get(sea_runtime_t *rt, stdio_reader_t **out) {
  stdio_reader_t *r = stdio_reader;
  if (r != NULL) {
    if (r->rt != rt) {
      sea_host->set_error(rt, "stdio: stdin is already read by another runtime in this process");
      return SEA_EBUSY;
    }
    *out = r;
    return 0;
  }
  r = sea_host->calloc(1, sizeof *r);
  if (r == NULL)
    return SEA_ENOMEM;
  r->rt = rt;
  r->bcast = sea_host->stream_key("broadcast", 9);
  r->kick = sea_host->timer_init(rt, reader_on_kick, r);
  if (r->bcast == NULL || r->kick == NULL) {
    sea_host->timer_close(r->kick);
    sea_host->free(r);
    return SEA_ENOMEM;
  }
  stdio_fds_acquire();
  int pollable;
  int rc = stdio_fd_prepare(0, &r->is_regular, &pollable);
  if (rc != 0) {
    sea_host->set_error(rt, "stdio: stdin: %s", strerror(-rc));
    sea_host->timer_close(r->kick);
    sea_host->free(r);
    stdio_fds_release();
    return SEA_EIO;
  }
  stdio_reader = r;
  sea_host->log(SEA_LOG_INFO, STDIO_NAME, "reading stdin (%s)",
                r->is_regular ? "a file"
                : pollable    ? "a pipe or socket"
                              : "a terminal or device");
  *out = r;
  return 0;
}

int stdio_consumer_open(void *streamer_impl, sea_consumer_t *sc, const sea_open_args_t *args,
                        void **impl) {
  stdio_opts_t o;
  int rc = stdio_opts_parse(args->rt, args->backend_options, &o);
  if (rc != 0)
    return rc;
  if (args->mode == SEA_MODE_RESUMABLE) {
    sea_host->set_error(args->rt,
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
    sea_host->set_error(args->rt, "stdio: stdin is already read by a consumer with other "
                                  "delimiter, key_delimiter or empty options");
    return SEA_EOPTION;
  }
  stdio_consumer_t *c = sea_host->calloc(1, sizeof *c);
  if (c == NULL)
    goto nomem;
  c->r = r;
  c->c = sc;
  c->batch_cap = args->batch_size ? args->batch_size : STDIO_BATCH_DEFAULT;
  c->max_line = o.max_line;
  c->pass_malformed = o.pass_malformed;
  if (args->key_count > 0) {
    c->keys = sea_host->alloc(args->key_count * sizeof *c->keys);
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
      g = sea_host->calloc(1, sizeof *g);
      size_t n = strlen(name);
      char *copy = sea_host->alloc(n + 1);
      if (g == NULL || copy == NULL) {
        sea_host->free(g);
        sea_host->free(copy);
        goto nomem;
      }
      memcpy(copy, name, n + 1);
      g->name = copy;
      g->next = r->groups;
      r->groups = g;
    }
    c->group = g;
  }
  if (SEA_GROW(r->cons, r->cons_cap, r->ncons + 1, 4) != 0)
    goto nomem;
  r->cons[r->ncons++] = c;
  reader_limits(r);
  if (c->group != NULL)
    sea_host->log(SEA_LOG_INFO, STDIO_NAME,
                  "consumer joined load-balanced group '%s' of this process (%zu consumer(s) "
                  "read stdin)",
                  c->group->name, r->ncons);
  *impl = c;
  return 0;

nomem:
  if (c != NULL) {
    sea_host->free(c->keys);
    sea_host->free(c);
  }
  r->need_gc = 1; /* drops an unused new group, and the reader if it was made for us */
  reader_gc(r);
  sea_host->set_error(args->rt, "stdio: out of memory");
  return SEA_ENOMEM;
}

int stdio_consumer_start(void *impl) {
  stdio_consumer_t *c = impl;
  stdio_reader_t *r = c->r;
  c->started = 1;
  if (r->done)
    reader_kick(r); /* stdin already finished: the end comes on the next turn, not inside start */
  else
    reader_update_watch(r);
  return 0;
}

int stdio_consumer_pause(void *impl) {
  stdio_consumer_t *c = impl;
  c->paused = 1;
  reader_update_watch(c->r);
  return 0;
}

int stdio_consumer_resume(void *impl) {
  stdio_consumer_t *c = impl;
  c->paused = c->fed_paused = 0;
  if (c->cur != NULL || c->end_state == END_PENDING || c->r->done)
    reader_kick(c->r);
  reader_update_watch(c->r);
  return 0;
}

void stdio_consumer_close(void *impl) {
  stdio_consumer_t *c = impl;
  stdio_reader_t *r = c->r;
  c->closed = 1;
  sea_host->batch_release(c->cur);
  c->cur = NULL;
  r->need_gc = 1;
  reader_limits(r);
  if (r->busy == 0 && !reader_gc(r))
    reader_update_watch(r);
}
