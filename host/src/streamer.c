/* streamer.c: the socket layer: connect by URI scheme, and producers and consumers that
 * dispatch to the backend while the host keeps the bounds, the receipts and the errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "streamer.h"

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
    /* A backend with a default port has network nodes: a port there is a number (the URI's
     * parser leaves other ports to the backend; librdkafka took "host:x" for port 0 and waited
     * its whole timeout). */
    const char *port = plugin->desc.default_port ? sea__uri_node_port(u->nodes[i]) : NULL;
    if (port != NULL && (port[0] == '\0' || strspn(port, "0123456789") != strlen(port))) {
      rc = sea__rt_err(rt, SEA_EURI,
                       port[0] ? "invalid URI '%s': the port '%s' of node '%s' is not a number"
                               : "invalid URI '%s': node '%s%s' has ':' and no port after it",
                       uri, port[0] ? port : "", u->nodes[i]);
      sea_uri_free(u);
      return rc;
    }
    char *n = with_port(u->nodes[i], plugin->desc.default_port);
    if (n == NULL) {
      sea_uri_free(u);
      return SEA_ENOMEM;
    }
    sea__free(u->nodes[i]);
    u->nodes[i] = n;
  }
  sea_streamer_t *s = sea__calloc(1, sizeof *s);
  sea_options_t *backend = NULL;
  if (s)
    s->opts = sea_options_new();
  rc = s == NULL || s->opts == NULL || sea__options_merge(s->opts, opts) ? SEA_ENOMEM : 0;
  if (rc == 0)
    rc = sea__options_backend(rt, &plugin->desc, opts, 0, &backend);
  if (rc != 0) {
    if (s)
      sea_options_free(s->opts);
    sea__free(s);
    sea_uri_free(u);
    return rc;
  }
  s->rt = rt;
  s->plugin = plugin;
  s->uri = u;
  rc = plugin->desc.connect(rt, s, u, backend, &s->impl);
  sea_options_free(backend);
  if (rc != 0) {
    if (s->said[0] != '\0')
      sea__rt_err(rt, rc, "%s", s->said);
    else if (rt->errmsg[0] == '\0')
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
  return sea__backend_name(s);
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
    sea__set_msg(s->errmsg, "list is not supported by the %s backend", d->name);
    return SEA_ENOTSUP;
  }
  for (size_t i = 0; i < key_count; i++)
    if (keys[i] == NULL || !sea_stream_key_valid(keys[i], strlen(keys[i]))) {
      char why[SEA__ERRMSG_MAX - 16];
      sea__key_why(why, sizeof why, keys[i] ? keys[i] : "", keys[i] ? strlen(keys[i]) : 0);
      sea__set_msg(s->errmsg, "list: %s", why);
      return SEA_EKEY;
    }
  uint64_t timeout_ms = 0;
  int rc = sea__opt_u64(s->rt, s->opts, "timeout", &timeout_ms);
  if (rc) {
    sea__set_msg(s->errmsg, "%s", s->rt->errmsg);
    return rc;
  }
  list_call_t *lc = sea__calloc(1, sizeof *lc);
  if (lc == NULL)
    return SEA_ENOMEM;
  lc->s = s;
  lc->on_row = on_row;
  lc->on_done = on_done;
  lc->data = data;
  lc->op = sea__op_start(s->rt, &s->ops, s->errmsg, "list", list_done, lc);
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
  sea__said_clear(s->said, s->rt);
  rc = d->list(s->impl, &args, lc->op);
  if (rc != 0) {
    const char *said = sea__said(s->said, s->rt);
    sea__set_msg(s->errmsg, "%s", said ? said : sea_strerror(rc));
    sea_op_t *op = lc->op;
    sea__free(lc);
    return sea__op_refused(op, rc);
  }
  return 0;
}

static void streamer_close_now(void *arg, void *unused) {
  sea_streamer_t *s = arg;
  s->plugin->desc.disconnect(s->impl); /* abandons its listings: no op_done after this */
  sea__ops_cancel(&s->ops);
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

void sea__common_free(sea__common_t *c) {
  sea_options_free(c->all);
  sea_options_free(c->backend);
}

int sea__common_init(sea_streamer_t *s, const sea_options_t *opts, unsigned use, sea__common_t *c) {
  c->backend = NULL;
  c->all = sea_options_new();
  int rc = c->all == NULL || sea__options_merge(c->all, s->opts) || sea__options_merge(c->all, opts)
               ? SEA_ENOMEM
               : sea__options_backend(s->rt, &s->plugin->desc, c->all, use, &c->backend);
  if (rc != 0)
    sea__common_free(c);
  return rc;
}

int sea__opt_u64(sea_runtime_t *rt, const sea_options_t *o, const char *key, uint64_t *out) {
  const char *v = sea_options_get(o, key);
  if (v == NULL)
    return 0;
  if (sea__parse_u64(v, out))
    return sea__rt_err(rt, SEA_EOPTION, "option %s=%s: expected a non-negative integer", key, v);
  return 0;
}
