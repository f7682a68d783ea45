/* stdio_writer.c: the producer side of the stdio backend. One writer of stdout per process
 * buffers what every producer sends (stdio_format.c prints each message into the buffer), writes
 * it out without blocking the loop, and gives each send its receipt once its line is written. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stdio_internal.h"

/* Output: write once this much is buffered; refuse sends (SEA_EAGAIN) beyond the limit. */
#define STDIO_WRITE_AT (64u * 1024u)
#define STDIO_OUT_LIMIT (4u * 1024u * 1024u)

static stdio_writer_t *stdio_writer;

static size_t writer_pending(const stdio_writer_t *w) {
  return w->len - w->head;
}

static void writer_on_writable(sea_watch_t *wt, int status, int events, void *data);
static void writer_on_kick(sea_timer_t *t, void *data);

/* Make sure a loop callback comes to write and report: the next turn (the host's 0 ms timer,
 * which comes after the loop polled even when asked from its own callback), or the watch on
 * fd 1 while a write waits for room. */
static void writer_schedule(stdio_writer_t *w) {
  if (!w->closing && w->watch == NULL)
    sea_host->timer_start(w->kick, 0, 0);
}

static void writer_fail(stdio_writer_t *w, int status, const char *msg) {
  if (w->err != 0)
    return;
  w->err = status;
  snprintf(w->errmsg, sizeof w->errmsg, "%s", msg);
  sea_host->log(status == SEA_EPIPE ? SEA_LOG_INFO : SEA_LOG_WARN, STDIO_NAME,
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
        stdio_fd_touch(1);
        w->watch = sea_host->watch_start(w->rt, 1, SEA_WATCH_WRITABLE, writer_on_writable, w);
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

/* Everything the loop owes the users: a failure, receipts for written lines (the host completes
 * the flushes from them), and producers that may send again. Called from loop callbacks only. */
static void writer_progress(stdio_writer_t *w) {
  if (w->err != 0 && !w->err_reported) {
    w->err_reported = 1;
    for (size_t i = 0; i < w->nprods; i++) {
      stdio_producer_t *p = w->prods[i];
      if (!p->closed && !p->failed) {
        p->failed = 1;
        sea_host->producer_fail(p->p, w->err, "%s", w->errmsg);
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
      sea_host->receipt(e.p->p, e.token, 0, &e.meta);
    else
      sea_host->receipt(e.p->p, e.token, w->err, NULL);
  }
  if (w->err == 0 && writer_pending(w) <= STDIO_OUT_LIMIT / 2) {
    for (size_t i = 0; i < w->nprods; i++) {
      stdio_producer_t *p = w->prods[i];
      if (p->want_ready && !p->closed) {
        p->want_ready = 0;
        sea_host->producer_ready(p->p);
      }
    }
  }
}

static int writer_has_work(const stdio_writer_t *w) {
  if (writer_pending(w) > 0 || w->qcount > 0 || (w->err != 0 && !w->err_reported))
    return 1;
  for (size_t i = 0; i < w->nprods; i++) {
    const stdio_producer_t *p = w->prods[i];
    if (p->want_ready && !p->closed && w->err == 0)
      return 1;
  }
  return 0;
}

static void producer_free(stdio_producer_t *p) {
  stdio_tpl_free(p->tpl);
  sea_host->free(p);
}

static void writer_free(stdio_writer_t *w) {
  /* Best effort for bytes already accepted: one try, no waiting (close means now). */
  w->closing = 1;
  writer_write(w);
  if (w->watch)
    sea_host->watch_stop(w->watch);
  sea_host->timer_close(w->kick);
  sea_host->free(w->buf);
  sea_host->free(w->q);
  stdio_map_free(&w->seqs);
  sea_host->free(w->prods);
  sea_host->free(w);
  if (stdio_writer == w)
    stdio_writer = NULL;
  stdio_fds_release();
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
  writer_turn(w);
  if (writer_has_work(w))
    writer_schedule(w);
  writer_gc(w);
}

static void writer_on_writable(sea_watch_t *wt, int status, int events, void *data) {
  stdio_writer_t *w = data;
  if (status < 0 && w->err == 0) {
    /* libuv stops a poll handle that reports an error (a pipe whose reader left shows as
     * EPOLLERR). The write says what really happened (EPIPE); if it can't even say that, the
     * poll error stands. */
    uint64_t before = w->written;
    sea_host->watch_stop(w->watch);
    w->watch = NULL;
    w->closing = 1; /* write without starting a new watch */
    writer_write(w);
    w->closing = 0;
    if (w->err == 0 && w->written == before && writer_pending(w) > 0)
      writer_fail(w, SEA_EIO, "stdout: poll error");
  }
  writer_turn(w);
  /* The watch waits for room; once what was buffered is out, the rest is the next turn's. */
  if (writer_pending(w) == 0 && w->watch != NULL) {
    sea_host->watch_stop(w->watch);
    w->watch = NULL;
  }
  if (writer_has_work(w))
    writer_schedule(w);
  writer_gc(w);
}

static int writer_get(sea_runtime_t *rt, stdio_writer_t **out) {
  stdio_writer_t *w = stdio_writer;
  if (w != NULL) {
    if (w->rt != rt) {
      sea_host->set_error(rt,
                          "stdio: stdout is already written by another runtime in this process");
      return SEA_EBUSY;
    }
    if (w->err != 0) {
      sea_host->set_error(rt, "stdio: %s", w->errmsg);
      return w->err;
    }
    *out = w;
    return 0;
  }
  w = sea_host->calloc(1, sizeof *w);
  if (w == NULL)
    return SEA_ENOMEM;
  w->rt = rt;
  w->kick = sea_host->timer_init(rt, writer_on_kick, w);
  if (w->kick == NULL) {
    sea_host->free(w);
    return SEA_ENOMEM;
  }
  stdio_fds_acquire();
  int is_regular, pollable;
  int rc = stdio_fd_prepare(1, &is_regular, &pollable);
  if (rc != 0) {
    sea_host->set_error(rt, "stdio: stdout: %s", strerror(-rc));
    sea_host->timer_close(w->kick);
    sea_host->free(w);
    stdio_fds_release();
    return SEA_EIO;
  }
  stdio_writer = w;
  sea_host->log(SEA_LOG_INFO, STDIO_NAME, "writing stdout (%s)",
                is_regular ? "a file"
                : pollable ? "a pipe or socket"
                           : "a terminal or device");
  *out = w;
  return 0;
}

int stdio_producer_open(void *streamer_impl, sea_producer_t *sp, const sea_open_args_t *args,
                        void **impl) {
  stdio_opts_t o;
  int rc = stdio_opts_parse(args->rt, args->backend_options, &o);
  if (rc != 0)
    return rc;
  stdio_producer_t *p = sea_host->calloc(1, sizeof *p);
  if (p == NULL)
    return SEA_ENOMEM;
  p->p = sp;
  p->ts_ms = INT64_MIN;
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
    rc = stdio_tpl_compile(args->rt, o.template_src, &p->tpl);
    if (rc != 0) {
      sea_host->free(p);
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
  if (SEA_GROW(w->prods, w->prods_cap, w->nprods + 1, 4) != 0) {
    producer_free(p);
    writer_gc(w);
    return SEA_ENOMEM;
  }
  p->w = w;
  w->prods[w->nprods++] = p;
  *impl = p;
  return 0;
}

static int writer_queue_room(stdio_writer_t *w) {
  size_t old = w->qcap;
  if (w->qcount < old)
    return 0; /* room, and a ring that wraps stays as it is */
  if (SEA_GROW(w->q, w->qcap, w->qcount + 1, 1024) != 0)
    return SEA_ENOMEM;
  /* The ring wrapped at the old end: move the wrapped front part after it (the ring doubled, so
   * the part fits). */
  if (w->qhead + w->qcount > old)
    memcpy(w->q + old, w->q, (w->qhead + w->qcount - old) * sizeof *w->q);
  return 0;
}

int stdio_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  stdio_producer_t *p = impl;
  stdio_writer_t *w = p->w;
  if (w->err != 0)
    return w->err;
  if (m->payload.len > p->max_payload)
    return SEA_ETOOBIG;
  if (m->payload.len > 0 && m->payload.data == NULL)
    return SEA_EINVAL;
  int rc = stdio_producer_check_lines(p, m);
  if (rc != 0) {
    char shown[16];
    if (p->delim == '\n')
      snprintf(shown, sizeof shown, "a newline");
    else if ((unsigned char)p->delim >= 0x20 && (unsigned char)p->delim < 0x7f)
      snprintf(shown, sizeof shown, "delimiter='%c'", p->delim);
    else
      snprintf(shown, sizeof shown, "delimiter=0x%02x", (unsigned char)p->delim);
    sea_host->producer_error(p->p,
                             "stdio: a printed field holds the message delimiter (%s): it would "
                             "split the message in two (print it with -J, or pick another -D)",
                             shown);
    return rc;
  }

  const char *key = m->meta.stream_key ? m->meta.stream_key : p->anchor;
  if (key == NULL)
    return SEA_EKEY;
  if (key != p->key_in) {
    /* Keys arrive interned already; interning again makes sure the seq map's pointer identity
     * holds, and the cache makes that free for a run of the same key. */
    const char *k = sea_host->stream_key(key, strlen(key));
    if (k == NULL)
      return SEA_EKEY;
    p->key_in = key;
    p->key_out = k;
  }
  key = p->key_out;

  size_t pending = writer_pending(w);
  if (pending > 0 && pending + m->payload.len + 128 > STDIO_OUT_LIMIT) {
    p->want_ready = 1;
    return SEA_EAGAIN;
  }
  if (writer_queue_room(w) != 0)
    return SEA_ENOMEM;

  sea_meta_t meta;
  meta.stream_key = key;
  meta.timestamp_us = m->meta.timestamp_us ? m->meta.timestamp_us : sea_host->now_us();
  int keep = (flags & SEA_SEND_KEEP_META) != 0;
  uint64_t *ctr = NULL;
  if (keep) {
    meta.seq = m->meta.seq;
    meta.shard_id = m->meta.shard_id;
  } else {
    ctr = stdio_map_get(&w->seqs, key);
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
    ts = stdio_producer_ts(p, meta.timestamp_us, &ts_len);
    rc = stdio_format_line(w, m, &meta, keep && meta.shard_id != 0, ts, ts_len, p->delim);
    break;
  case FMT_JSON:
    ts = stdio_producer_ts(p, meta.timestamp_us, &ts_len);
    rc = stdio_format_json(w, m, &meta, ts, ts_len, p->delim);
    break;
  case FMT_PAYLOAD:
    rc = stdio_out_bytes(w, m->payload.data, m->payload.len) || stdio_out_bytes(w, &p->delim, 1);
    break;
  case FMT_KEYED:
    rc = stdio_format_keyed(w, p, m);
    break;
  default:
    rc = stdio_format_template(w, p, m, &meta);
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
  /* The first receipt owed asks for a turn; each turn asks for the next while there is work. */
  if (w->qcount == 1)
    writer_schedule(w);
  return 0;
}

/* A flush or end waits (the host completes it from the receipts): write now, receipts on the next
 * turn. stdio has no end marker; the host refuses sends after the end. */
void stdio_producer_push(void *impl, int end) {
  stdio_writer_t *w = ((stdio_producer_t *)impl)->w;
  (void)end;
  if (w->watch == NULL && w->err == 0)
    writer_write(w);
  writer_schedule(w);
}

void stdio_producer_close(void *impl) {
  stdio_producer_t *p = impl;
  stdio_writer_t *w = p->w;
  p->closed = 1;
  for (size_t i = 0; i < w->qcount; i++) {
    stdio_pending_t *e = &w->q[(w->qhead + i) & (w->qcap - 1)];
    if (e->p == p)
      e->p = NULL;
  }
  w->need_gc = 1;
  writer_gc(w);
}
