/* streamer.c: the socket layer: connect by URI scheme, and producers and consumers that
 * dispatch to the backend while the host keeps the bounds, the receipts and the errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_MAX_INFLIGHT 100000
#define DEFAULT_MAX_INFLIGHT_BYTES (64u * 1024u * 1024u)

static void set_msg(char *buf, const char *fmt, ...) SEA__PRINTF(2, 3);
static void set_msg(char *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(buf, SEA__ERRMSG_MAX, fmt, ap);
  va_end(ap);
}

static const char *backend_name(const sea_streamer_t *s) {
  return s->plugin->desc.name;
}

/* ---- asynchronous operations ---- */

sea_op_t *sea__op_new(sea_runtime_t *rt, const char *what, sea_done_cb cb, void *data) {
  sea_op_t *op = sea__calloc(1, sizeof *op);
  if (op == NULL)
    return NULL;
  op->rt = rt;
  op->what = what;
  op->cb = cb;
  op->data = data;
  return op;
}

static void op_attach(sea_op_t *op, sea_op_t **list, char *owner_errmsg) {
  op->owner_list = list;
  op->owner_errmsg = owner_errmsg;
  op->next = *list;
  if (*list)
    (*list)->prev = op;
  *list = op;
}

static void op_detach(sea_op_t *op) {
  if (op->owner_list == NULL)
    return;
  if (op->prev)
    op->prev->next = op->next;
  else
    *op->owner_list = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->owner_list = NULL;
  op->prev = op->next = NULL;
}

static void op_finish(void *arg, void *unused) {
  sea_op_t *op = arg;
  if (op->cb)
    op->cb(op->data, op->status);
  sea__free(op);
}

void sea__op_done(sea_op_t *op, int status, const char *fmt, ...) {
  if (op == NULL || op->owner_list == NULL)
    return; /* already completed or canceled by a close */
  op->status = status;
  if (status < 0 && op->owner_errmsg) {
    if (fmt) {
      va_list ap;
      va_start(ap, fmt);
      sea__vfmt(op->owner_errmsg, SEA__ERRMSG_MAX, fmt, ap);
      va_end(ap);
    } else {
      set_msg(op->owner_errmsg, "%s: %s", op->what, sea_strerror(status));
    }
  }
  op_detach(op);
  if (sea__defer(op->rt, op_finish, op, NULL) != 0)
    op_finish(op, NULL);
}

/* Cancel every outstanding operation of a handle that is closing. */
static void ops_cancel(sea_op_t **list) {
  while (*list) {
    sea_op_t *op = *list;
    op_detach(op);
    op->status = SEA_ECANCELED;
    if (sea__defer(op->rt, op_finish, op, NULL) != 0)
      op_finish(op, NULL);
  }
}

/* Start an operation: the plugin's op or SEA_ENOTSUP with "<what>: not supported by <name>". */
static sea_op_t *op_start(sea_runtime_t *rt, sea_op_t **list, char *errmsg, const char *what,
                          sea_done_cb cb, void *data) {
  sea_op_t *op = sea__op_new(rt, what, cb, data);
  if (op)
    op_attach(op, list, errmsg);
  return op;
}

/* The plugin refused the operation synchronously: no callback will come. */
static int op_refused(sea_op_t *op, int rc) {
  op_detach(op);
  sea__free(op);
  return rc;
}

/* ---- connect ---- */

static char *with_port(const char *node, unsigned port) {
  const char *host = strrchr(node, '@');
  host = host ? host + 1 : node;
  const char *colon;
  if (host[0] == '[') {
    const char *end = strchr(host, ']');
    colon = end ? strchr(end, ':') : NULL;
  } else {
    colon = strchr(host, ':');
  }
  if (colon || port == 0 || host[0] == '\0')
    return sea__strdup(node);
  size_t n = strlen(node) + 8;
  char *s = sea__malloc(n);
  if (s)
    snprintf(s, n, "%s:%u", node, port);
  return s;
}

static void known_schemes(sea_runtime_t *rt, char *buf, size_t len) {
  buf[0] = '\0';
  size_t used = 0;
  for (size_t i = 0; i < rt->plugin_count && used + 1 < len; i++) {
    const sea__plugin_t *p = &rt->plugins[i];
    if (p->refused || p->shadowed_by)
      continue;
    used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", p->schemes);
  }
  if (used == 0)
    snprintf(buf, len, "none");
}

int sea_connect(sea_runtime_t *rt, const char *uri, const sea_options_t *opts,
                sea_streamer_t **out) {
  char why[SEA__ERRMSG_MAX];
  if (rt == NULL || uri == NULL || out == NULL)
    return SEA_EINVAL;
  *out = NULL;
  rt->errmsg[0] = '\0';
  sea_uri_t *u;
  int rc = sea_uri_parse(uri, &u, why, sizeof why);
  if (rc)
    return sea__rt_err(rt, rc, "%s", why);
  sea__plugins_ensure(rt);
  const sea__plugin_t *plugin = sea__plugin_for_scheme(rt, u->scheme);
  if (plugin == NULL) {
    char known[256];
    known_schemes(rt, known, sizeof known);
    size_t refused = 0;
    for (size_t i = 0; i < rt->plugin_count; i++)
      refused += rt->plugins[i].refused != NULL;
    rc = sea__rt_err(rt, SEA_ESCHEME,
                     "unknown scheme '%s' in URI '%s': no plugin offers it (known: %s%s; plugin "
                     "dirs: %s%s%s)%s",
                     u->scheme, uri, known, "",
                     getenv("SEASTREAMER_PLUGIN_DIR") ? getenv("SEASTREAMER_PLUGIN_DIR")
                                                      : sea_plugin_install_dir(),
                     getenv("SEASTREAMER_PLUGIN_PATH") ? ":" : "",
                     getenv("SEASTREAMER_PLUGIN_PATH") ? getenv("SEASTREAMER_PLUGIN_PATH") : "",
                     refused ? "; some plugins were refused, see `seastreamer plugins`" : "");
    sea_uri_free(u);
    return rc;
  }
  for (size_t i = 0; i < u->node_count; i++) {
    char *n = with_port(u->nodes[i], plugin->desc.default_port);
    if (n == NULL) {
      sea_uri_free(u);
      return SEA_ENOMEM;
    }
    sea__free(u->nodes[i]);
    u->nodes[i] = n;
  }
  sea_streamer_t *s = sea__calloc(1, sizeof *s);
  sea_options_t *backend = sea_options_new();
  if (s)
    s->opts = sea_options_new();
  if (s == NULL || s->opts == NULL || backend == NULL || sea__options_merge(s->opts, opts)) {
    sea_options_free(backend);
    if (s)
      sea_options_free(s->opts);
    sea__free(s);
    sea_uri_free(u);
    return SEA_ENOMEM;
  }
  for (size_t i = 0; i < sea_options_count(opts); i++) {
    const char *k, *v;
    sea_options_at(opts, i, &k, &v);
    if (!sea__option_is_common(k))
      sea_options_set(backend, k, v);
  }
  s->rt = rt;
  s->plugin = plugin;
  s->uri = u;
  rc = plugin->desc.connect(rt, s, u, backend, &s->impl);
  sea_options_free(backend);
  if (rc != 0) {
    if (rt->errmsg[0] == '\0')
      sea__rt_err(rt, rc, "%s: cannot connect to '%s': %s", plugin->desc.name, uri,
                  sea_strerror(rc));
    sea_options_free(s->opts);
    sea_uri_free(u);
    sea__free(s);
    return rc < 0 ? rc : SEA_EBACKEND;
  }
  rt->streamer_count++;
  sea__log(SEA_LOG_DEBUG, plugin->desc.name, "streamer for %s (plugin %s %s)", uri,
           plugin->desc.name, plugin->desc.version ? plugin->desc.version : "");
  *out = s;
  return 0;
}

const sea_uri_t *sea_streamer_uri(const sea_streamer_t *s) {
  return s->uri;
}
const char *sea_streamer_backend(const sea_streamer_t *s) {
  return backend_name(s);
}
uint64_t sea_streamer_caps(const sea_streamer_t *s) {
  return s->plugin->desc.caps;
}
void *sea_streamer_get_data(const sea_streamer_t *s) {
  return s->data;
}
void sea_streamer_set_data(sea_streamer_t *s, void *data) {
  s->data = data;
}

const char *sea_streamer_errmsg(const sea_streamer_t *s) {
  return s->errmsg;
}

/* ---- listing ---- */

static int opt_u64(sea_runtime_t *rt, const sea_options_t *o, const char *key, uint64_t *out);

/* The caller's callbacks, between the plugin's rows and the user. */
typedef struct list_call {
  sea_streamer_t *s; /* alive while the plugin may emit: it abandons the listing in disconnect */
  sea_list_cb on_row;
  sea_done_cb on_done;
  void *data;
  sea_op_t *op;
} list_call_t;

static void list_emit(void *ctx, const sea_list_row_t *row) {
  list_call_t *lc = ctx;
  /* A row of an older sender (a smaller struct) reads as unknown in the fields it lacks. */
  sea_list_row_t r;
  sea_list_row_init(&r, row->kind);
  size_t n = row->struct_size < sizeof r ? row->struct_size : sizeof r;
  memcpy(&r, row, n);
  r.struct_size = sizeof r;
  /* No row after the caller closed the streamer (its close may be deferred a turn). */
  if (lc->on_row && lc->op->owner_list != NULL && !lc->s->closing)
    lc->on_row(lc->data, &r);
}

static void list_done(void *data, int status) {
  list_call_t *lc = data;
  if (lc->on_done)
    lc->on_done(lc->data, status);
  sea__free(lc);
}

int sea_streamer_list(sea_streamer_t *s, const char *const *keys, size_t key_count,
                      sea_list_cb on_row, sea_done_cb on_done, void *data) {
  if (s == NULL || (keys == NULL && key_count > 0))
    return SEA_EINVAL;
  if (s->closing)
    return SEA_ECLOSED;
  const sea_plugin_t *d = &s->plugin->desc;
  s->errmsg[0] = '\0';
  /* list came in ABI 1.1: a 1.0 plugin's slot is reserved (zero), but read it only from 1.1 on. */
  if (d->abi_minor < 1 || d->list == NULL) {
    set_msg(s->errmsg, "list is not supported by the %s backend", d->name);
    return SEA_ENOTSUP;
  }
  for (size_t i = 0; i < key_count; i++)
    if (keys[i] == NULL || !sea_stream_key_valid(keys[i], strlen(keys[i]))) {
      char why[SEA__ERRMSG_MAX - 16];
      sea__key_why(why, sizeof why, keys[i] ? keys[i] : "", keys[i] ? strlen(keys[i]) : 0);
      set_msg(s->errmsg, "list: %s", why);
      return SEA_EKEY;
    }
  uint64_t timeout_ms = 0;
  int rc = opt_u64(s->rt, s->opts, "timeout", &timeout_ms);
  if (rc) {
    set_msg(s->errmsg, "%s", s->rt->errmsg);
    return rc;
  }
  list_call_t *lc = sea__calloc(1, sizeof *lc);
  if (lc == NULL)
    return SEA_ENOMEM;
  lc->s = s;
  lc->on_row = on_row;
  lc->on_done = on_done;
  lc->data = data;
  lc->op = op_start(s->rt, &s->ops, s->errmsg, "list", list_done, lc);
  if (lc->op == NULL) {
    sea__free(lc);
    return SEA_ENOMEM;
  }
  sea_list_args_t args = {.struct_size = sizeof args,
                          .rt = s->rt,
                          .keys = keys,
                          .key_count = key_count,
                          .timeout_ms = timeout_ms,
                          .emit = list_emit,
                          .ctx = lc};
  s->rt->errmsg[0] = '\0';
  rc = d->list(s->impl, &args, lc->op);
  if (rc != 0) {
    set_msg(s->errmsg, "%s", s->rt->errmsg[0] ? s->rt->errmsg : sea_strerror(rc));
    sea_op_t *op = lc->op;
    sea__free(lc);
    return op_refused(op, rc);
  }
  return 0;
}

static void producer_free(sea_producer_t *p);
static void consumer_free(sea_consumer_t *c);

static void streamer_close_now(void *arg, void *unused) {
  sea_streamer_t *s = arg;
  s->plugin->desc.disconnect(s->impl); /* abandons its listings: no op_done after this */
  ops_cancel(&s->ops);
  s->rt->streamer_count--;
  sea_uri_free(s->uri);
  sea_options_free(s->opts);
  sea__free(s);
}

void sea_streamer_close(sea_streamer_t *s) {
  if (s == NULL || s->closing)
    return;
  s->closing = true;
  bool in_callback = false;
  for (sea_producer_t *p = s->producers; p; p = p->next)
    in_callback |= p->in_callback > 0;
  for (sea_consumer_t *c = s->consumers; c; c = c->next)
    in_callback |= c->in_callback > 0;
  while (s->producers)
    sea_producer_close(s->producers);
  while (s->consumers)
    sea_consumer_close(s->consumers);
  /* Closed from a handle's callback, or a handle's close is still deferred: so is this one (it
   * runs after them: the deferred queue keeps order). */
  if ((in_callback || s->pending_closes > 0) && sea__defer(s->rt, streamer_close_now, s, NULL) == 0)
    return;
  streamer_close_now(s, NULL);
}

/* ---- options both sides share ---- */

typedef struct common {
  sea_options_t *all;     /* streamer's options, then the handle's */
  sea_options_t *backend; /* the keys the host does not know */
} common_t;

static void common_free(common_t *c) {
  sea_options_free(c->all);
  sea_options_free(c->backend);
}

static int common_init(sea_streamer_t *s, const sea_options_t *opts, common_t *c) {
  c->all = sea_options_new();
  c->backend = sea_options_new();
  if (c->all == NULL || c->backend == NULL || sea__options_merge(c->all, s->opts) ||
      sea__options_merge(c->all, opts)) {
    common_free(c);
    return SEA_ENOMEM;
  }
  for (size_t i = 0; i < sea_options_count(c->all); i++) {
    const char *k, *v;
    sea_options_at(c->all, i, &k, &v);
    if (!sea__option_is_common(k) && sea_options_set(c->backend, k, v)) {
      common_free(c);
      return SEA_ENOMEM;
    }
  }
  return 0;
}

static int opt_u64(sea_runtime_t *rt, const sea_options_t *o, const char *key, uint64_t *out) {
  const char *v = sea_options_get(o, key);
  if (v == NULL)
    return 0;
  if (sea__parse_u64(v, out))
    return sea__rt_err(rt, SEA_EOPTION, "option %s=%s: expected a non-negative integer", key, v);
  return 0;
}

/* ---- producer ---- */

int sea_producer_open(sea_streamer_t *s, const sea_options_t *opts, sea_producer_t **out) {
  sea_runtime_t *rt = s->rt;
  const sea_plugin_t *d = &s->plugin->desc;
  *out = NULL;
  rt->errmsg[0] = '\0';
  if (d->producer_open == NULL)
    return sea__rt_err(rt, SEA_ENOTSUP, "%s: this backend has no producer", d->name);
  common_t c;
  if (common_init(s, opts, &c))
    return SEA_ENOMEM;
  uint64_t max_inflight = DEFAULT_MAX_INFLIGHT, max_bytes = DEFAULT_MAX_INFLIGHT_BYTES,
           max_payload = SEA_PAYLOAD_MAX_DEFAULT, timeout_ms = 0;
  int rc;
  if ((rc = opt_u64(rt, c.all, "max_inflight", &max_inflight)) ||
      (rc = opt_u64(rt, c.all, "max_inflight_bytes", &max_bytes)) ||
      (rc = opt_u64(rt, c.all, "max_payload", &max_payload)) ||
      (rc = opt_u64(rt, c.all, "timeout", &timeout_ms))) {
    common_free(&c);
    return rc;
  }
  if (max_inflight == 0 || max_bytes == 0) {
    common_free(&c);
    return sea__rt_err(rt, SEA_EOPTION, "options max_inflight and max_inflight_bytes must be > 0");
  }
  sea_producer_t *p = sea__calloc(1, sizeof *p);
  if (p == NULL) {
    common_free(&c);
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
  common_free(&c);
  if (rc != 0) {
    if (rt->errmsg[0] == '\0')
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
  int err = SEA_EKEY;
  const char *k = key ? sea_stream_key(key, strlen(key), &err) : NULL;
  if (k == NULL) {
    set_msg(p->errmsg, "anchor: invalid stream key '%s'", key ? key : "(null)");
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
    set_msg(p->errmsg, "send: the producer has %s", p->closing ? "been closed" : "ended");
    return SEA_ESTATE;
  }
  if (p->err)
    return p->err;
  sea_message_t msg = *m;
  if (msg.meta.stream_key == NULL) {
    if (p->anchor == NULL) {
      set_msg(p->errmsg, "send: no stream key given and the producer is not anchored (put a key "
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
      set_msg(p->errmsg, "send: %s", why);
      return err;
    }
    msg.meta.stream_key = k;
  }
  if (msg.payload.len > p->max_payload) {
    set_msg(p->errmsg, "send to '%s': payload of %zu bytes exceeds max_payload (%zu bytes)",
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
  rt->errmsg[0] = '\0'; /* a backend may say more with host->set_error */
  int rc = p->s->plugin->desc.producer_send(p->impl, &msg, flags, r);
  if (rc != 0) {
    r->prev->next = r->next;
    r->next->prev = r->prev;
    p->inflight--;
    p->inflight_bytes -= r->bytes;
    rec_put(p, r);
    if (rc == SEA_EAGAIN) {
      p->plugin_full = true;
      p->want_drain = true;
    } else if (rt->errmsg[0] != '\0') {
      set_msg(p->errmsg, "send to '%s': %s", msg.meta.stream_key, rt->errmsg);
    } else if (p->errmsg[0] == '\0' || rc != p->err) {
      set_msg(p->errmsg, "send to '%s': %s", msg.meta.stream_key, sea_strerror(rc));
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

static void complete_host_flushes(sea_producer_t *p) {
  for (sea_op_t *op = p->ops, *next; op; op = next) {
    next = op->next;
    if (op->host_wait)
      sea__op_done(op, p->err, NULL);
  }
}

void sea__receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  sea__send_t *r = token;
  r->prev->next = r->next;
  r->next->prev = r->prev;
  p->inflight--;
  p->inflight_bytes -= r->bytes;
  void *user = r->user_token;
  rec_put(p, r);
  if (p->on_receipt && !p->closing) {
    p->in_callback++;
    p->on_receipt(p, user, status, status == 0 ? meta : NULL);
    p->in_callback--;
  }
  if (p->closing)
    return; /* closed from its receipt callback: nothing more to tell */
  if (p->inflight == 0)
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
  maybe_drain(p); /* a sender waiting to drain must learn of the failure */
}

static int producer_op(sea_producer_t *p, const char *what, int (*fn)(void *, sea_op_t *),
                       sea_done_cb cb, void *data) {
  if (p->closing) {
    set_msg(p->errmsg, "%s: the producer has been closed", what);
    return SEA_ESTATE;
  }
  sea_op_t *op = op_start(p->s->rt, &p->ops, p->errmsg, what, cb, data);
  if (op == NULL)
    return SEA_ENOMEM;
  if (fn == NULL) {
    /* A backend without flush: its receipts mean "written", so the flush is done when none is
     * outstanding (sea__receipt completes it). */
    op->host_wait = true;
    if (p->inflight == 0)
      sea__op_done(op, 0, NULL);
    return 0;
  }
  int rc = fn(p->impl, op);
  if (rc != 0) {
    set_msg(p->errmsg, "%s: %s", what, sea_strerror(rc));
    return op_refused(op, rc);
  }
  return 0;
}

int sea_producer_flush(sea_producer_t *p, sea_done_cb cb, void *data) {
  return producer_op(p, "flush", p->s->plugin->desc.producer_flush, cb, data);
}

int sea_producer_end(sea_producer_t *p, sea_done_cb cb, void *data) {
  const sea_plugin_t *d = &p->s->plugin->desc;
  int rc = producer_op(p, "end", d->producer_end ? d->producer_end : d->producer_flush, cb, data);
  if (rc == 0)
    p->ended = true;
  return rc;
}

/* ---- transactions: optional operations, SEA_ENOTSUP "<op>: not supported by <name>" ---- */

static int txn_unsupported(sea_producer_t *p, const char *what, bool present) {
  if (p->closing) {
    set_msg(p->errmsg, "%s: the producer has been closed", what);
    return SEA_ESTATE;
  }
  if (present)
    return 0;
  set_msg(p->errmsg, "%s: not supported by %s", what, backend_name(p->s));
  return SEA_ENOTSUP;
}

/* The plugin's answer to a synchronous call: keep the message it set (host->set_error) if any. */
static int txn_rc(sea_producer_t *p, const char *what, int rc) {
  if (rc == 0)
    return 0;
  if (rc == SEA_ENOTSUP)
    set_msg(p->errmsg, "%s: not supported by %s", what, backend_name(p->s));
  else if (p->s->rt->errmsg[0])
    set_msg(p->errmsg, "%s: %s", what, p->s->rt->errmsg);
  else
    set_msg(p->errmsg, "%s: %s", what, sea_strerror(rc));
  return rc;
}

int sea_producer_txn_begin(sea_producer_t *p) {
  const sea_plugin_t *d = &p->s->plugin->desc;
  int rc = txn_unsupported(p, "txn_begin", d->producer_txn_begin != NULL);
  if (rc)
    return rc;
  p->s->rt->errmsg[0] = '\0';
  return txn_rc(p, "txn_begin", d->producer_txn_begin(p->impl));
}

static int txn_op(sea_producer_t *p, const char *what, int (*fn)(void *, sea_op_t *),
                  sea_done_cb cb, void *data) {
  int rc = txn_unsupported(p, what, fn != NULL);
  if (rc)
    return rc;
  sea_op_t *op = op_start(p->s->rt, &p->ops, p->errmsg, what, cb, data);
  if (op == NULL)
    return SEA_ENOMEM;
  p->s->rt->errmsg[0] = '\0';
  rc = fn(p->impl, op);
  if (rc != 0)
    return op_refused(op, txn_rc(p, what, rc));
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
    set_msg(p->errmsg, "%s: no consumer given", what);
    return SEA_EINVAL;
  }
  if (c->s->plugin != p->s->plugin) {
    set_msg(p->errmsg,
            "%s: the consumer is of backend %s and the producer of %s (both must be of the same "
            "backend)",
            what, backend_name(c->s), backend_name(p->s));
    return SEA_EINVAL;
  }
  if (c->closing) {
    set_msg(p->errmsg, "%s: the consumer has been closed", what);
    return SEA_ECLOSED;
  }
  sea_op_t *op = op_start(p->s->rt, &p->ops, p->errmsg, what, cb, data);
  if (op == NULL)
    return SEA_ENOMEM;
  p->s->rt->errmsg[0] = '\0';
  rc = d->producer_txn_send_offsets(p->impl, c->impl, op);
  if (rc != 0)
    return op_refused(op, txn_rc(p, what, rc));
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
  ops_cancel(&p->ops);
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

/* ---- consumer ---- */

static int parse_mode(sea_runtime_t *rt, const char *v, sea_mode_t *mode) {
  if (strcmp(v, "realtime") == 0)
    *mode = SEA_MODE_REALTIME;
  else if (strcmp(v, "resumable") == 0)
    *mode = SEA_MODE_RESUMABLE;
  else if (strcmp(v, "load-balanced") == 0 || strcmp(v, "load_balanced") == 0)
    *mode = SEA_MODE_LOAD_BALANCED;
  else
    return sea__rt_err(rt, SEA_EOPTION,
                       "option mode=%s: expected realtime, resumable or load-balanced", v);
  return 0;
}

static int parse_start(sea_runtime_t *rt, const char *v, sea_open_args_t *a) {
  uint64_t n;
  a->has_start = 1;
  if (strcmp(v, "beginning") == 0) {
    a->start_pos.kind = SEA_POS_BEGINNING;
  } else if (strcmp(v, "end") == 0) {
    a->start_pos.kind = SEA_POS_END;
  } else if (strcmp(v, "stored") == 0) {
    a->has_start = 0; /* the group's committed position (kcat's -o stored): the default */
  } else if (strncmp(v, "s@", 2) == 0 && sea__parse_u64(v + 2, &n) == 0 && n <= INT64_MAX / 1000) {
    a->start_is_time = 1;
    a->start_ts_us = (int64_t)n * 1000;
  } else if (v[0] == '-' && sea__parse_u64(v + 1, &n) == 0 && n > 0 && n <= INT64_MAX) {
    a->has_start = 0;
    a->start_from_end = (int64_t)n;
  } else if (sea__parse_u64(v, &n) == 0) {
    a->start_pos.kind = SEA_POS_AT;
    a->start_pos.seq = n;
  } else {
    return sea__rt_err(rt, SEA_EOPTION,
                       "option start=%s: expected beginning, end, stored, a sequence number N, "
                       "-N (N before the end) or s@MILLISECONDS",
                       v);
  }
  return 0;
}

static int consumer_args(sea_streamer_t *s, const sea_options_t *all, sea_open_args_t *a) {
  sea_runtime_t *rt = s->rt;
  const sea_plugin_t *d = &s->plugin->desc;
  const char *v;
  int rc;
  a->mode = SEA_MODE_REALTIME;
  a->group = sea_options_get(all, "group");
  if ((v = sea_options_get(all, "mode")) != NULL) {
    if ((rc = parse_mode(rt, v, &a->mode)))
      return rc;
  } else if (a->group) {
    a->mode = SEA_MODE_LOAD_BALANCED; /* a group implies sharing the work, as kcat -G does */
  }
  if (a->group && a->group[0] == '\0')
    return sea__rt_err(rt, SEA_EOPTION, "option group= is empty");
  if (a->mode != SEA_MODE_REALTIME && a->group == NULL)
    return sea__rt_err(rt, SEA_EOPTION, "mode=%s needs a group (option group=NAME, or -G NAME)",
                       a->mode == SEA_MODE_RESUMABLE ? "resumable" : "load-balanced");
  static const uint64_t mode_caps[] = {SEA_CAP_REALTIME, SEA_CAP_RESUMABLE, SEA_CAP_LOAD_BALANCED};
  static const char *const mode_names[] = {"realtime", "resumable", "load-balanced"};
  if (!(d->caps & mode_caps[a->mode]))
    return sea__rt_err(rt, SEA_ENOTSUP, "mode=%s: not supported by %s", mode_names[a->mode],
                       d->name);
  a->reset_earliest = a->mode != SEA_MODE_REALTIME; /* a new group reads what is there */
  if ((v = sea_options_get(all, "reset")) != NULL) {
    if (strcmp(v, "earliest") == 0)
      a->reset_earliest = 1;
    else if (strcmp(v, "latest") == 0)
      a->reset_earliest = 0;
    else
      return sea__rt_err(rt, SEA_EOPTION, "option reset=%s: expected earliest or latest", v);
  }
  if ((v = sea_options_get(all, "start")) != NULL) {
    if ((rc = parse_start(rt, v, a)))
      return rc;
    bool stored = strcmp(v, "stored") == 0;
    if (stored && a->mode == SEA_MODE_REALTIME)
      return sea__rt_err(rt, SEA_EOPTION,
                         "option start=stored: the stored position is a group's (give a group, "
                         "-G NAME, in resumable or load-balanced mode)");
    bool plain_end = a->has_start && !a->start_is_time && a->start_pos.kind == SEA_POS_END;
    bool can = a->start_is_time ? (d->caps & SEA_CAP_SEEK) : (d->caps & SEA_CAP_REWIND);
    if (!stored && !plain_end && !can)
      return sea__rt_err(rt, SEA_ENOTSUP, "option start=%s: %s cannot %s", v, d->name,
                         a->start_is_time ? "seek by time" : "rewind");
  }
  bool b = false;
  if ((v = sea_options_get(all, "stop_at_end")) != NULL) {
    if (sea__parse_bool(v, &b))
      return sea__rt_err(rt, SEA_EOPTION, "option stop_at_end=%s: expected true or false", v);
    a->stop_at_end = b;
  }
  uint64_t n = 0;
  if ((rc = opt_u64(rt, all, "batch", &n)))
    return rc;
  if (n > UINT32_MAX)
    return sea__rt_err(rt, SEA_EOPTION, "option batch=%s: too large",
                       sea_options_get(all, "batch"));
  a->batch_size = (uint32_t)n;
  n = 0;
  if ((rc = opt_u64(rt, all, "timeout", &n)))
    return rc;
  a->timeout_ms = n;
  return 0;
}

int sea_consumer_open(sea_streamer_t *s, const sea_options_t *opts, sea_consumer_t **out) {
  sea_runtime_t *rt = s->rt;
  const sea_plugin_t *d = &s->plugin->desc;
  *out = NULL;
  rt->errmsg[0] = '\0';
  if (d->consumer_open == NULL)
    return sea__rt_err(rt, SEA_ENOTSUP, "%s: this backend has no consumer", d->name);
  common_t co;
  if (common_init(s, opts, &co))
    return SEA_ENOMEM;
  sea_consumer_t *c = sea__calloc(1, sizeof *c);
  if (c == NULL) {
    common_free(&co);
    return SEA_ENOMEM;
  }
  c->s = s;
  c->args.struct_size = sizeof c->args;
  c->args.rt = rt;
  c->args.uri = s->uri;
  c->args.backend_options = co.backend;
  int rc = consumer_args(s, co.all, &c->args);
  if (rc == 0 && s->uri->key_count > 0) {
    c->keys = sea__calloc(s->uri->key_count, sizeof *c->keys);
    if (c->keys == NULL)
      rc = SEA_ENOMEM;
    for (size_t i = 0; rc == 0 && i < s->uri->key_count; i++)
      c->keys[i] = sea_stream_key(s->uri->keys[i], strlen(s->uri->keys[i]), &rc);
    c->args.keys = c->keys;
    c->args.key_count = s->uri->key_count;
  }
  if (rc == 0) {
    /* The group name must outlive co.all: keep it interned like a key if it is one. */
    if (c->args.group) {
      const char *g = sea_stream_key(c->args.group, strlen(c->args.group), NULL);
      if (g == NULL)
        rc = sea__rt_err(rt, SEA_EOPTION,
                         "option group=%s: a group name is 1 to %d of A-Z a-z 0-9 . _ -",
                         c->args.group, SEA_STREAM_KEY_MAX);
      c->args.group = g;
    }
  }
  if (rc == 0)
    rc = d->consumer_open(s->impl, c, &c->args, &c->impl);
  c->args.backend_options = NULL;
  common_free(&co);
  if (rc != 0) {
    if (rt->errmsg[0] == '\0')
      sea__rt_err(rt, rc, "%s: cannot open a consumer: %s", d->name, sea_strerror(rc));
    sea__free(c->keys);
    sea__free(c);
    return rc < 0 ? rc : SEA_EBACKEND;
  }
  c->next = s->consumers;
  s->consumers = c;
  {
    static const char *const modes[] = {"realtime", "resumable", "load-balanced"};
    unsigned m = (unsigned)c->args.mode;
    sea__log(SEA_LOG_DEBUG, d->name, "consumer open on %s: mode %s%s%s",
             s->uri->raw ? s->uri->raw : "?", m < 3 ? modes[m] : "?",
             c->args.group ? ", group " : "", c->args.group ? c->args.group : "");
  }
  *out = c;
  return 0;
}

int sea_consumer_start(sea_consumer_t *c, sea_batch_cb on_batch, sea_end_cb on_end) {
  if (c->closing || c->ended)
    return SEA_ESTATE;
  c->on_batch = on_batch;
  c->on_end = on_end;
  if (c->started)
    return 0;
  c->started = true;
  int rc = c->s->plugin->desc.consumer_start(c->impl);
  if (rc)
    set_msg(c->errmsg, "start: %s", sea_strerror(rc));
  return rc;
}

void sea__deliver(sea_consumer_t *c, sea_batch_t *batch) {
  if (c->closing || c->ended || c->on_batch == NULL || batch->count == 0) {
    sea_batch_release(batch);
    return;
  }
  c->in_callback++;
  c->on_batch(c, batch);
  c->in_callback--;
  sea_batch_release(batch);
}

static void end_now(void *arg, void *unused) {
  sea_consumer_t *c = arg;
  if (c->on_end && !c->closing && c->ended) { /* (not if it was taken back meanwhile) */
    c->in_callback++;
    c->on_end(c, c->err ? c->err : SEA_EOF);
    c->in_callback--;
  }
}

void sea__consumer_end(sea_consumer_t *c, int status, const char *fmt, ...) {
  if (c->ended)
    return;
  c->ended = true;
  c->err = status == SEA_EOF ? 0 : status;
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(c->errmsg, sizeof c->errmsg, fmt, ap);
  va_end(ap);
  sea__defer(c->s->rt, end_now, c, NULL);
}

void sea__consumer_revoked(sea_consumer_t *c, int incremental) {
  if (c->on_revoke && !c->closing) {
    c->in_callback++;
    c->on_revoke(c, incremental);
    c->in_callback--;
  }
}

void sea_consumer_on_revoke(sea_consumer_t *c, sea_revoke_cb cb) {
  if (c)
    c->on_revoke = cb;
}

#define CONSUMER_CALL(c, op, what, ...)                                                            \
  do {                                                                                             \
    if ((c)->closing)                                                                              \
      return SEA_ECLOSED;                                                                          \
    if ((c)->s->plugin->desc.op == NULL) {                                                         \
      set_msg((c)->errmsg, "%s: not supported by %s", what, backend_name((c)->s));                 \
      return SEA_ENOTSUP;                                                                          \
    }                                                                                              \
    (c)->s->rt->errmsg[0] = '\0'; /* a backend may say more with host->set_error */                \
    int rc_ = (c)->s->plugin->desc.op((c)->impl, ##__VA_ARGS__);                                   \
    if (rc_ != 0 && rc_ != SEA_ENOTSUP)                                                            \
      set_msg((c)->errmsg, "%s: %s", what,                                                         \
              (c)->s->rt->errmsg[0] ? (c)->s->rt->errmsg : sea_strerror(rc_));                     \
    else if (rc_ == SEA_ENOTSUP)                                                                   \
      set_msg((c)->errmsg, "%s: not supported by %s", what, backend_name((c)->s));                 \
    return rc_;                                                                                    \
  } while (0)

int sea_consumer_pause(sea_consumer_t *c) {
  CONSUMER_CALL(c, consumer_pause, "pause");
}
int sea_consumer_resume(sea_consumer_t *c) {
  CONSUMER_CALL(c, consumer_resume, "resume");
}

int sea_consumer_assign(sea_consumer_t *c, const char *key, uint64_t shard) {
  int err = SEA_EKEY;
  const char *k = key ? sea_stream_key(key, strlen(key), &err) : NULL;
  if (k == NULL) {
    set_msg(c->errmsg, "assign: invalid stream key '%s'", key ? key : "(null)");
    return err;
  }
  CONSUMER_CALL(c, consumer_assign, "assign", k, shard);
}

int sea_consumer_unassign(sea_consumer_t *c, const char *key, uint64_t shard) {
  int err = SEA_EKEY;
  const char *k = key ? sea_stream_key(key, strlen(key), &err) : NULL;
  if (k == NULL) {
    set_msg(c->errmsg, "unassign: invalid stream key '%s'", key ? key : "(null)");
    return err;
  }
  CONSUMER_CALL(c, consumer_unassign, "unassign", k, shard);
}

static int realtime_refuses(sea_consumer_t *c, const char *what) {
  if (c->args.mode != SEA_MODE_REALTIME)
    return 0;
  set_msg(c->errmsg,
          "%s: a realtime consumer has no position to commit (use mode=resumable or "
          "load-balanced with a group)",
          what);
  return SEA_ESTATE;
}

int sea_consumer_ack(sea_consumer_t *c, const sea_message_t *m) {
  int rc = realtime_refuses(c, "ack");
  if (rc)
    return rc;
  CONSUMER_CALL(c, consumer_ack, "ack", m);
}

int sea_consumer_ack_pos(sea_consumer_t *c, const char *stream_key, uint64_t shard, uint64_t seq) {
  if (c == NULL || stream_key == NULL)
    return SEA_EINVAL;
  int rc = realtime_refuses(c, "ack_pos");
  if (rc)
    return rc;
  int err = SEA_EKEY;
  const char *k = sea_stream_key(stream_key, strlen(stream_key), &err);
  if (k == NULL) {
    char why[SEA__ERRMSG_MAX - 16];
    sea__key_why(why, sizeof why, stream_key, strlen(stream_key));
    set_msg(c->errmsg, "ack_pos: %s", why);
    return err;
  }
  CONSUMER_CALL(c, consumer_ack_pos, "ack_pos", k, shard, seq);
}

int sea_consumer_lag(sea_consumer_t *c, sea_lag_t *out, size_t cap) {
  if (c == NULL || (out == NULL && cap > 0))
    return SEA_EINVAL;
  if (c->closing)
    return SEA_ECLOSED;
  if (c->s->plugin->desc.consumer_lag == NULL)
    return SEA_ENOTSUP; /* not an error of the consumer: its errmsg stays */
  return c->s->plugin->desc.consumer_lag(c->impl, out, cap);
}

typedef int (*op_fn)(void *, sea_op_t *);

static int consumer_op(sea_consumer_t *c, const char *what, bool present, sea_done_cb cb,
                       void *data, sea_op_t **op) {
  if (c->closing)
    return SEA_ECLOSED;
  if (!present) {
    set_msg(c->errmsg, "%s: not supported by %s", what, backend_name(c->s));
    return SEA_ENOTSUP;
  }
  *op = op_start(c->s->rt, &c->ops, c->errmsg, what, cb, data);
  return *op ? 0 : SEA_ENOMEM;
}

static int consumer_op_rc(sea_consumer_t *c, sea_op_t *op, const char *what, int rc) {
  if (rc == 0)
    return 0;
  if (rc == SEA_ENOTSUP)
    set_msg(c->errmsg, "%s: not supported by %s", what, backend_name(c->s));
  else
    set_msg(c->errmsg, "%s: %s", what, sea_strerror(rc));
  return op_refused(op, rc);
}

int sea_consumer_commit(sea_consumer_t *c, sea_done_cb cb, void *data) {
  sea_op_t *op;
  int rc = realtime_refuses(c, "commit");
  if (rc == 0)
    rc = consumer_op(c, "commit", c->s->plugin->desc.consumer_commit != NULL, cb, data, &op);
  if (rc)
    return rc;
  return consumer_op_rc(c, op, "commit", c->s->plugin->desc.consumer_commit(c->impl, op));
}

/* A consumer that ended (stop_at_end reached the end, or it failed) delivers nothing more: moving
 * it would succeed and then deliver nothing, without a word. */
static int ended_refuses(sea_consumer_t *c, const char *what) {
  if (!c->ended || c->closing)
    return 0;
  set_msg(c->errmsg,
          "%s: the consumer has ended (%s); open a new consumer to read the stream again", what,
          c->err ? "it failed" : "stop_at_end reached the end");
  return SEA_EINVAL;
}

int sea_consumer_seek(sea_consumer_t *c, int64_t ts, sea_done_cb cb, void *data) {
  sea_op_t *op;
  int rc = ended_refuses(c, "seek");
  if (rc)
    return rc;
  rc = consumer_op(c, "seek", c->s->plugin->desc.consumer_seek != NULL, cb, data, &op);
  if (rc)
    return rc;
  return consumer_op_rc(c, op, "seek", c->s->plugin->desc.consumer_seek(c->impl, ts, op));
}

int sea_consumer_rewind(sea_consumer_t *c, sea_pos_t pos, sea_done_cb cb, void *data) {
  sea_op_t *op;
  if (pos.kind != SEA_POS_BEGINNING && pos.kind != SEA_POS_END && pos.kind != SEA_POS_AT)
    return SEA_EINVAL;
  int rc = ended_refuses(c, "rewind");
  if (rc)
    return rc;
  rc = consumer_op(c, "rewind", c->s->plugin->desc.consumer_rewind != NULL, cb, data, &op);
  if (rc)
    return rc;
  return consumer_op_rc(c, op, "rewind", c->s->plugin->desc.consumer_rewind(c->impl, pos, op));
}

/* The pipeline's exactly once, after an aborted window: back to the group's committed positions
 * (SEA_POS_COMMITTED_, plugin.h). A consumer that ended at its end (not one that failed) is
 * taken back: it delivers again, and ends again once it is back at its end. */
int sea__consumer_rewind_committed(sea_consumer_t *c, sea_done_cb cb, void *data) {
  sea_op_t *op;
  if (c->ended && c->err != 0)
    return ended_refuses(c, "rewind");
  if (!(c->s->plugin->desc.caps & SEA_CAP_TRANSACTIONS) || c->s->plugin->desc.abi_minor < 2) {
    /* (a plugin older than ABI 1.2 would take the kind for a position) */
    set_msg(c->errmsg, "rewind to the committed positions: not supported by %s%s",
            backend_name(c->s),
            c->s->plugin->desc.abi_minor < 2 ? " (a plugin older than ABI 1.2)" : "");
    return SEA_ENOTSUP;
  }
  int rc = consumer_op(c, "rewind", c->s->plugin->desc.consumer_rewind != NULL, cb, data, &op);
  if (rc)
    return rc;
  sea_pos_t pos = {SEA_POS_COMMITTED_, 0};
  rc = consumer_op_rc(c, op, "rewind", c->s->plugin->desc.consumer_rewind(c->impl, pos, op));
  if (rc == 0)
    c->ended = false;
  return rc;
}

sea_mode_t sea_consumer_mode(const sea_consumer_t *c) {
  return c->args.mode;
}
int sea_consumer_error(const sea_consumer_t *c) {
  return c->err;
}
const char *sea_consumer_errmsg(const sea_consumer_t *c) {
  return c->errmsg;
}
void *sea_consumer_get_data(const sea_consumer_t *c) {
  return c->data;
}
void sea_consumer_set_data(sea_consumer_t *c, void *data) {
  c->data = data;
}

static void consumer_free(sea_consumer_t *c) {
  sea__free(c->keys);
  sea__free(c);
}

static void consumer_close_now(void *arg, void *deferred) {
  sea_consumer_t *c = arg;
  sea_streamer_t *s = c->s;
  if (deferred)
    s->pending_closes--;
  sea__defer_cancel(s->rt, c);
  s->plugin->desc.consumer_close(c->impl);
  ops_cancel(&c->ops);
  for (sea_consumer_t **pp = &s->consumers; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  consumer_free(c);
}

void sea_consumer_close(sea_consumer_t *c) {
  if (c == NULL || c->closing)
    return;
  c->closing = true;
  if (c->in_callback) {
    /* Closed from its own callback, maybe inside the plugin's delivery loop: finish later. */
    for (sea_consumer_t **pp = &c->s->consumers; *pp; pp = &(*pp)->next)
      if (*pp == c) {
        *pp = c->next;
        break;
      }
    c->next = NULL;
    c->s->pending_closes++;
    sea__defer(c->s->rt, consumer_close_now, c, c);
    return;
  }
  consumer_close_now(c, NULL);
}
