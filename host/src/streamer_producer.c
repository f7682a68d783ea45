/* streamer_producer.c: producers: the bounds on what is in flight, the send records the host keeps
 * until their receipts, drain, flush, end, transactions and close. */
#include <stdio.h>
#include <string.h>

#include "streamer.h"

#define DEFAULT_MAX_INFLIGHT 100000
#define DEFAULT_MAX_INFLIGHT_BYTES (64u * 1024u * 1024u)

/* ---- producer ---- */

int sea_producer_open(sea_streamer_t *s, const sea_options_t *opts, sea_producer_t **out) {
  if (s == NULL || out == NULL)
    return SEA_EINVAL;
  sea_runtime_t *rt = s->rt;
  const sea_plugin_t *d = &s->plugin->desc;
  *out = NULL;
  rt->errmsg[0] = '\0';
  if (d->producer_open == NULL)
    return sea__rt_err(rt, SEA_ENOTSUP, "%s: this backend has no producer", d->name);
  sea__common_t c;
  int rc = sea__common_init(s, opts, SEA_OPT_PRODUCER, &c);
  if (rc != 0)
    return rc;
  uint64_t max_inflight = DEFAULT_MAX_INFLIGHT, max_bytes = DEFAULT_MAX_INFLIGHT_BYTES,
           max_payload = SEA_PAYLOAD_MAX_DEFAULT, timeout_ms = 0;
  if ((rc = sea__opt_u64(rt, c.all, "max_inflight", &max_inflight)) ||
      (rc = sea__opt_u64(rt, c.all, "max_inflight_bytes", &max_bytes)) ||
      (rc = sea__opt_u64(rt, c.all, "max_payload", &max_payload)) ||
      (rc = sea__opt_u64(rt, c.all, "timeout", &timeout_ms))) {
    sea__common_free(&c);
    return rc;
  }
  if (max_inflight == 0 || max_bytes == 0) {
    sea__common_free(&c);
    return sea__rt_err(rt, SEA_EOPTION, "options max_inflight and max_inflight_bytes must be > 0");
  }
  sea_producer_t *p = sea__calloc(1, sizeof *p);
  if (p == NULL) {
    sea__common_free(&c);
    return SEA_ENOMEM;
  }
  p->s = s;
  p->max_inflight = max_inflight;
  p->max_inflight_bytes = max_bytes;
  p->max_payload = max_payload;
  p->live.next = p->live.prev = &p->live;
  if (s->uri->key_count > 0)
    p->anchor = sea_stream_key(s->uri->keys[0], strlen(s->uri->keys[0]), NULL);
  sea_open_args_t args = {
      .struct_size = sizeof args,
      .rt = rt,
      .uri = s->uri,
      .backend_options = c.backend,
      .anchor = p->anchor,
      .max_payload = max_payload,
      .timeout_ms = timeout_ms, /* timeout= is common: the backend sees it only here */
  };
  rc = d->producer_open(s->impl, p, &args, &p->impl);
  sea__common_free(&c);
  if (rc != 0) {
    if (p->said[0] != '\0')
      sea__rt_err(rt, rc, "%s", p->said);
    else if (rt->errmsg[0] == '\0')
      sea__rt_err(rt, rc, "%s: cannot open a producer: %s", d->name, sea_strerror(rc));
    sea__free(p);
    return rc < 0 ? rc : SEA_EBACKEND;
  }
  p->next = s->producers;
  s->producers = p;
  sea__log(SEA_LOG_DEBUG, d->name, "producer open on %s", s->uri->raw ? s->uri->raw : "?");
  *out = p;
  return 0;
}

void sea_producer_set_callbacks(sea_producer_t *p, sea_receipt_cb on_receipt,
                                sea_drain_cb on_drain) {
  p->on_receipt = on_receipt;
  p->on_drain = on_drain;
}

int sea_producer_anchor(sea_producer_t *p, const char *key) {
  if (p == NULL)
    return SEA_EINVAL;
  if (key == NULL) {
    sea__set_msg(p->errmsg, "anchor: no stream key given (NULL)");
    return SEA_EINVAL;
  }
  int err = SEA_EKEY;
  const char *k = sea_stream_key(key, strlen(key), &err);
  if (k == NULL) {
    sea__set_msg(p->errmsg, "anchor: invalid stream key '%s'", key);
    return err;
  }
  p->anchor = k;
  return 0;
}

const char *sea_producer_anchored(const sea_producer_t *p) {
  return p->anchor;
}
size_t sea_producer_inflight(const sea_producer_t *p) {
  return p->inflight;
}
int sea_producer_error(const sea_producer_t *p) {
  return p->err;
}
const char *sea_producer_errmsg(const sea_producer_t *p) {
  return p->errmsg;
}
void *sea_producer_get_data(const sea_producer_t *p) {
  return p->data;
}
void sea_producer_set_data(sea_producer_t *p, void *data) {
  p->data = data;
}

static bool below_low_water(const sea_producer_t *p) {
  return p->inflight <= p->max_inflight / 2 && p->inflight_bytes <= p->max_inflight_bytes / 2;
}

static void drain_now(void *arg, void *unused) {
  sea_producer_t *p = arg;
  p->drain_deferred = false;
  if (!p->want_drain || p->closing)
    return;
  if (p->err == 0 && (p->plugin_full || !below_low_water(p)))
    return; /* a later receipt will try again */
  p->want_drain = false;
  if (p->on_drain) {
    p->in_callback++;
    p->on_drain(p);
    p->in_callback--;
  }
}

static void maybe_drain(sea_producer_t *p) {
  if (!p->want_drain || p->drain_deferred)
    return;
  if (p->err == 0 && (p->plugin_full || !below_low_water(p)))
    return;
  if (sea__defer(p->s->rt, drain_now, p, NULL) == 0)
    p->drain_deferred = true;
}

typedef struct sea__send_slab {
  struct sea__send_slab *next;
  sea__send_t recs[];
} sea__send_slab_t;

#define SLAB_RECORDS_MIN 64
#define SLAB_RECORDS_MAX 4096

static sea__send_t *rec_get(sea_producer_t *p) {
  sea__send_t *r = p->free_list;
  if (r == NULL) {
    /* Slabs double in size up to a cap, so a producer with few messages in flight stays small
     * and a busy one allocates rarely. */
    size_t n = p->slab_records < SLAB_RECORDS_MIN ? SLAB_RECORDS_MIN : p->slab_records;
    sea__send_slab_t *slab = sea__malloc(sizeof *slab + n * sizeof(sea__send_t));
    if (slab == NULL)
      return NULL;
    slab->next = p->slabs;
    p->slabs = slab;
    p->slab_records = n * 2 > SLAB_RECORDS_MAX ? SLAB_RECORDS_MAX : n * 2;
    for (size_t i = n - 1; i > 0; i--) {
      slab->recs[i].next = p->free_list;
      p->free_list = &slab->recs[i];
    }
    r = &slab->recs[0];
  } else {
    p->free_list = r->next;
  }
  return r;
}

static void rec_put(sea_producer_t *p, sea__send_t *r) {
  r->next = p->free_list;
  p->free_list = r;
}

static const char *intern_cached(sea_producer_t *p, const char *key, int *err) {
  if (key == p->anchor || key == p->last_interned)
    return key;
  if (key == p->last_key)
    return p->last_interned;
  const char *k = sea_stream_key(key, strlen(key), err);
  if (k) {
    p->last_key = key;
    p->last_interned = k;
  }
  return k;
}

int sea__producer_send_flags(sea_producer_t *p, const sea_message_t *m, unsigned flags,
                             void *token) {
  if (p->closing || p->ended) {
    sea__set_msg(p->errmsg, "send: the producer has %s", p->closing ? "been closed" : "ended");
    return SEA_ESTATE;
  }
  if (p->err)
    return p->err;
  sea_message_t msg = *m;
  if (msg.meta.stream_key == NULL) {
    if (p->anchor == NULL) {
      sea__set_msg(p->errmsg,
                   "send: no stream key given and the producer is not anchored (put a key "
                   "in the URI or call sea_producer_anchor)");
      return SEA_EKEY;
    }
    msg.meta.stream_key = p->anchor;
  } else {
    int err = SEA_EKEY;
    const char *k = intern_cached(p, msg.meta.stream_key, &err);
    if (k == NULL) {
      char why[SEA__ERRMSG_MAX - 16];
      sea__key_why(why, sizeof why, msg.meta.stream_key, strlen(msg.meta.stream_key));
      sea__set_msg(p->errmsg, "send: %s", why);
      return err;
    }
    msg.meta.stream_key = k;
  }
  if (msg.payload.len > p->max_payload) {
    sea__set_msg(p->errmsg,
                 "send to '%s': payload of %zu bytes exceeds max_payload (%zu bytes; the producer "
                 "option max_payload raises it, -O max_payload=BYTES on the command line)",
                 msg.meta.stream_key, msg.payload.len, p->max_payload);
    return SEA_ETOOBIG;
  }
  if (p->plugin_full || p->inflight >= p->max_inflight ||
      (p->inflight > 0 && p->inflight_bytes + msg.payload.len > p->max_inflight_bytes)) {
    p->want_drain = true;
    return SEA_EAGAIN;
  }
  sea__send_t *r = rec_get(p);
  if (r == NULL)
    return SEA_ENOMEM;
  r->user_token = token;
  r->bytes = msg.payload.len;
  r->seq = ++p->sends;
  /* Count it in before the call, so that the records survive a backend that resolves the
   * receipt inside producer_send (which docs/plugins.md forbids: user code would run inside
   * sea_producer_send). */
  r->prev = p->live.prev;
  r->next = &p->live;
  p->live.prev->next = r;
  p->live.prev = r;
  p->inflight++;
  p->inflight_bytes += r->bytes;
  sea_runtime_t *rt = p->s->rt;
  sea__said_clear(p->said, rt); /* a backend may say more with host->producer_error */
  int rc = p->s->plugin->desc.producer_send(p->impl, &msg, flags, r);
  if (rc != 0) {
    r->prev->next = r->next;
    r->next->prev = r->prev;
    p->inflight--;
    p->inflight_bytes -= r->bytes;
    p->sends--;
    rec_put(p, r);
    if (rc == SEA_EAGAIN) {
      p->plugin_full = true;
      p->want_drain = true;
    } else if (sea__said(p->said, rt) != NULL) {
      sea__set_msg(p->errmsg, "send to '%s': %s", msg.meta.stream_key, sea__said(p->said, rt));
    } else if (p->errmsg[0] == '\0' || rc != p->err) {
      sea__set_msg(p->errmsg, "send to '%s': %s", msg.meta.stream_key, sea_strerror(rc));
    }
    return rc;
  }
  return 0;
}

int sea_producer_send(sea_producer_t *p, const sea_message_t *m, void *token) {
  if (p == NULL || m == NULL || (m->payload.data == NULL && m->payload.len > 0))
    return SEA_EINVAL;
  return sea__producer_send_flags(p, m, 0, token);
}

int sea_producer_send_bytes(sea_producer_t *p, const char *key, const void *data, size_t len,
                            void *token) {
  sea_message_t m;
  memset(&m, 0, sizeof m);
  m.meta.stream_key = key;
  m.payload.data = data;
  m.payload.len = len;
  return sea_producer_send(p, &m, token);
}

/* Complete the flushes and ends the host waits for (op->host_wait): done once no send up to
 * their target is outstanding (the live list is in send order, so its head is the oldest);
 * failed at once if the producer failed, or once done if a receipt they waited for failed. */
static void complete_host_flushes(sea_producer_t *p) {
  uint64_t oldest = p->live.next != &p->live ? p->live.next->seq : UINT64_MAX;
  char why[SEA__ERRMSG_MAX];
  why[0] = '\0';
  for (sea_op_t *op = p->ops, *next; op && p->host_flushes > 0; op = next) {
    next = op->next;
    if (!op->host_wait || (p->err == 0 && op->target >= oldest))
      continue;
    p->host_flushes--;
    if (p->err) {
      if (why[0] == '\0') /* (op_done words the error into p->errmsg: copy it first) */
        snprintf(why, sizeof why, "%s", p->errmsg);
      sea__op_done(op, p->err, "%s: %s", op->what, why);
    } else if (op->status) {
      sea__op_done(op, op->status, "%s: a message sent before it failed: %s", op->what,
                   sea_strerror(op->status));
    } else {
      sea__op_done(op, 0, NULL);
    }
  }
}

/* A receipt failed: so does every waiting flush or end made after that send. */
static void fail_host_flushes(sea_producer_t *p, uint64_t seq, int status) {
  for (sea_op_t *op = p->ops; op; op = op->next)
    if (op->host_wait && op->target >= seq && op->status == 0)
      op->status = status;
}

void sea__receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  sea__send_t *r = token;
  r->prev->next = r->next;
  r->next->prev = r->prev;
  p->inflight--;
  p->inflight_bytes -= r->bytes;
  void *user = r->user_token;
  if (status < 0 && p->host_flushes > 0)
    fail_host_flushes(p, r->seq, status);
  rec_put(p, r);
  /* Also while a close from a callback waits for the stack to unwind: every send gets its one
   * receipt, and one that comes after the close was asked is reported as the close promises
   * for what was outstanding then (SEA_ECANCELED), not as a success the caller gave up on. */
  if (p->on_receipt) {
    p->in_callback++;
    if (p->closing)
      p->on_receipt(p, user, SEA_ECANCELED, NULL);
    else
      p->on_receipt(p, user, status, status == 0 ? meta : NULL);
    p->in_callback--;
  }
  if (p->closing)
    return; /* closed: no flush or drain to tell */
  if (p->host_flushes > 0)
    complete_host_flushes(p);
  maybe_drain(p);
}

void sea__producer_ready(sea_producer_t *p) {
  p->plugin_full = false;
  maybe_drain(p);
}

void sea__producer_fail(sea_producer_t *p, int status, const char *fmt, ...) {
  if (p->err == 0) {
    p->err = status < 0 ? status : SEA_EBACKEND;
    va_list ap;
    va_start(ap, fmt);
    sea__vfmt(p->errmsg, sizeof p->errmsg, fmt, ap);
    va_end(ap);
  }
  if (p->host_flushes > 0)
    complete_host_flushes(p); /* their receipts may never come */
  maybe_drain(p);             /* a sender waiting to drain must learn of the failure */
}

static int producer_op(sea_producer_t *p, const char *what, int (*fn)(void *, sea_op_t *), int end,
                       sea_done_cb cb, void *data) {
  if (p->closing) {
    sea__set_msg(p->errmsg, "%s: the producer has been closed", what);
    return SEA_ESTATE;
  }
  sea_op_t *op = sea__op_start(p->s->rt, &p->ops, p->errmsg, what, cb, data);
  if (op == NULL)
    return SEA_ENOMEM;
  if (fn == NULL) {
    /* The backend's receipts mean "written": the flush is done once every send made before it
     * has its receipt (sea__receipt completes it). The backend is told to write out what it
     * buffers, so that they come. */
    const sea_plugin_t *d = &p->s->plugin->desc;
    op->host_wait = true;
    op->target = p->sends;
    p->host_flushes++;
    if (d->abi_minor >= 4 && d->producer_push)
      d->producer_push(p->impl, end);
    complete_host_flushes(p);
    return 0;
  }
  sea__said_clear(p->said, p->s->rt);
  int rc = fn(p->impl, op);
  if (rc != 0) {
    const char *said = sea__said(p->said, p->s->rt);
    sea__set_msg(p->errmsg, "%s: %s", what, said ? said : sea_strerror(rc));
    return sea__op_refused(op, rc);
  }
  return 0;
}

int sea_producer_flush(sea_producer_t *p, sea_done_cb cb, void *data) {
  return producer_op(p, "flush", p->s->plugin->desc.producer_flush, 0, cb, data);
}

int sea_producer_end(sea_producer_t *p, sea_done_cb cb, void *data) {
  if (p != NULL && p->ended && !p->closing) { /* (a backend would write its end marker twice) */
    sea__set_msg(p->errmsg, "end: the producer has ended already");
    return SEA_ESTATE;
  }
  int rc = producer_op(p, "end", p->s->plugin->desc.producer_flush, 1, cb, data);
  if (rc == 0)
    p->ended = true;
  return rc;
}

/* ---- transactions: optional operations, SEA_ENOTSUP "<op>: not supported by <name>" ---- */

static int txn_unsupported(sea_producer_t *p, const char *what, bool present) {
  if (p->closing) {
    sea__set_msg(p->errmsg, "%s: the producer has been closed", what);
    return SEA_ESTATE;
  }
  if (present)
    return 0;
  sea__set_msg(p->errmsg, "%s: not supported by %s", what, sea__backend_name(p->s));
  return SEA_ENOTSUP;
}

/* The plugin's answer to a synchronous call: keep the message it set (host->set_error) if any. */
static int txn_rc(sea_producer_t *p, const char *what, int rc) {
  if (rc == 0)
    return 0;
  if (rc == SEA_ENOTSUP)
    sea__set_msg(p->errmsg, "%s: not supported by %s", what, sea__backend_name(p->s));
  else if (sea__said(p->said, p->s->rt))
    sea__set_msg(p->errmsg, "%s: %s", what, sea__said(p->said, p->s->rt));
  else
    sea__set_msg(p->errmsg, "%s: %s", what, sea_strerror(rc));
  return rc;
}

int sea_producer_txn_begin(sea_producer_t *p) {
  const sea_plugin_t *d = &p->s->plugin->desc;
  int rc = txn_unsupported(p, "txn_begin", d->producer_txn_begin != NULL);
  if (rc)
    return rc;
  sea__said_clear(p->said, p->s->rt);
  return txn_rc(p, "txn_begin", d->producer_txn_begin(p->impl));
}

static int txn_op(sea_producer_t *p, const char *what, int (*fn)(void *, sea_op_t *),
                  sea_done_cb cb, void *data) {
  int rc = txn_unsupported(p, what, fn != NULL);
  if (rc)
    return rc;
  sea_op_t *op = sea__op_start(p->s->rt, &p->ops, p->errmsg, what, cb, data);
  if (op == NULL)
    return SEA_ENOMEM;
  sea__said_clear(p->said, p->s->rt);
  rc = fn(p->impl, op);
  if (rc != 0)
    return sea__op_refused(op, txn_rc(p, what, rc));
  return 0;
}

int sea_producer_txn_commit(sea_producer_t *p, sea_done_cb cb, void *data) {
  return txn_op(p, "txn_commit", p->s->plugin->desc.producer_txn_commit, cb, data);
}

int sea_producer_txn_abort(sea_producer_t *p, sea_done_cb cb, void *data) {
  return txn_op(p, "txn_abort", p->s->plugin->desc.producer_txn_abort, cb, data);
}

int sea_producer_txn_send_offsets(sea_producer_t *p, sea_consumer_t *c, sea_done_cb cb,
                                  void *data) {
  const char *what = "txn_send_offsets";
  const sea_plugin_t *d = &p->s->plugin->desc;
  int rc = txn_unsupported(p, what, d->producer_txn_send_offsets != NULL);
  if (rc)
    return rc;
  if (c == NULL) {
    sea__set_msg(p->errmsg, "%s: no consumer given", what);
    return SEA_EINVAL;
  }
  if (c->s->plugin != p->s->plugin) {
    sea__set_msg(
        p->errmsg,
        "%s: the consumer is of backend %s and the producer of %s (both must be of the same "
        "backend)",
        what, sea__backend_name(c->s), sea__backend_name(p->s));
    return SEA_EINVAL;
  }
  if (c->closing) {
    sea__set_msg(p->errmsg, "%s: the consumer has been closed", what);
    return SEA_ECLOSED;
  }
  sea_op_t *op = sea__op_start(p->s->rt, &p->ops, p->errmsg, what, cb, data);
  if (op == NULL)
    return SEA_ENOMEM;
  sea__said_clear(p->said, p->s->rt);
  rc = d->producer_txn_send_offsets(p->impl, c->impl, op);
  if (rc != 0)
    return sea__op_refused(op, txn_rc(p, what, rc));
  return 0;
}

static void producer_free(sea_producer_t *p) {
  while (p->slabs) {
    sea__send_slab_t *slab = p->slabs;
    p->slabs = slab->next;
    sea__free(slab);
  }
  sea__free(p);
}

static void producer_close_now(void *arg, void *deferred) {
  sea_producer_t *p = arg;
  sea_streamer_t *s = p->s;
  if (deferred)
    s->pending_closes--;
  sea__defer_cancel(s->rt, p);
  s->plugin->desc.producer_close(p->impl);
  sea__ops_cancel(&p->ops);
  /* What the backend never confirmed is canceled, so the caller can account for it. */
  while (p->live.next != &p->live) {
    sea__send_t *r = p->live.next;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    p->inflight--;
    if (p->on_receipt)
      p->on_receipt(p, r->user_token, SEA_ECANCELED, NULL);
  }
  for (sea_producer_t **pp = &s->producers; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      break;
    }
  producer_free(p);
}

void sea_producer_close(sea_producer_t *p) {
  if (p == NULL || p->closing)
    return;
  p->closing = true;
  if (p->in_callback) {
    /* Closed from its own callback: finish once the stack has unwound. Unlink now so the
     * streamer no longer sees it. */
    for (sea_producer_t **pp = &p->s->producers; *pp; pp = &(*pp)->next)
      if (*pp == p) {
        *pp = p->next;
        break;
      }
    p->next = NULL;
    p->s->pending_closes++;
    sea__defer(p->s->rt, producer_close_now, p, p);
    return;
  }
  producer_close_now(p, NULL);
}
