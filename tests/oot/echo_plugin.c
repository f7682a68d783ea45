/* echo_plugin.c: the echo:// backend, a plugin built out of tree against an installed host. */
/*
 * It is what docs/plugins.md walks through, and tests/oot/run.sh builds it with nothing but the
 * installed headers:
 *
 *   cc -std=c11 -Wall -Wextra -Werror -Werror=implicit-function-declaration -fPIC -shared \
 *      -Wl,-z,defs $(pkg-config --cflags seastreamer) -o echo.so echo_plugin.c
 *
 * echo:///KEY[,KEY...] takes no host and no option.
 *   Producer: stores nothing. Each send gets a receipt on the next loop turn, with a seq counted
 *   from 0 per stream key (per streamer), and is logged at level info (SEASTREAMER_LOG=info).
 *   flush and end are the host's: it completes them once every earlier send has its receipt
 *   (echo buffers nothing, so it needs no push). SEA_SEND_KEEP_META is not honoured: echo always
 *   assigns the seq.
 *   Consumer: there is nothing to read, so it ends with SEA_EOF as soon as it starts.
 */
#include <seastreamer/plugin.h>
#include <string.h>

/* The host's table, sea_host, kept by the entry point (SEA_PLUGIN_INIT, at the end). Everything
 * echo needs from the host goes through it: the plugin links neither libseastreamer nor libuv. */
SEA_PLUGIN_HOST_DECL;

/* The next seq of one stream key. Keys are interned by the host, so they compare by pointer. */
typedef struct echo_key {
  const char *key;
  uint64_t next_seq;
  struct echo_key *next;
} echo_key_t;

typedef struct echo_streamer {
  sea_runtime_t *rt;
  echo_key_t *keys;
} echo_streamer_t;

/* A send whose receipt is due on the next turn. */
typedef struct echo_receipt {
  void *token;
  sea_meta_t meta;
} echo_receipt_t;

typedef struct echo_producer {
  echo_streamer_t *s;
  sea_producer_t *p;
  sea_timer_t *timer; /* the next turn: gives the receipts (a 0 ms start) */
  echo_receipt_t *receipts;
  size_t receipt_count, receipt_cap;
} echo_producer_t;

typedef struct echo_consumer {
  sea_consumer_t *c;
} echo_consumer_t;

/* items, grown to twice its capacity (*cap, updated) of elements of size bytes; NULL if out of
 * memory, and then items is unchanged. */
static void *echo_grow(void *items, size_t *cap, size_t size) {
  size_t want = *cap ? *cap * 2 : 8;
  void *p = sea_host->realloc(items, want * size);
  if (p != NULL)
    *cap = want;
  return p;
}

/* echo knows no option: an empty table (plugin ABI 1.4), so the host refuses every key, and
 * names it, before echo is called (a typo must not pass). */
static const sea_option_spec_t echo_options[] = {{.key = NULL}};

/* ---- streamer ---- */

static int echo_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                        const sea_options_t *backend_options, void **impl) {
  (void)s;
  (void)backend_options; /* the host refused every key: the table is empty */
  if (uri->node_count > 0) {
    sea_host->set_error(rt, "echo: '%s' names a host, but echo has none (echo:///KEY)", uri->raw);
    return SEA_EURI;
  }
  echo_streamer_t *es = sea_host->calloc(1, sizeof *es);
  if (es == NULL) {
    sea_host->set_error(rt, "echo: out of memory");
    return SEA_ENOMEM;
  }
  es->rt = rt;
  *impl = es;
  return 0;
}

/* The host closes every producer and consumer of the streamer before this. */
static void echo_disconnect(void *impl) {
  echo_streamer_t *es = impl;
  while (es->keys) {
    echo_key_t *k = es->keys;
    es->keys = k->next;
    sea_host->free(k);
  }
  sea_host->free(es);
}

/* ---- producer ---- */

static void echo_turn(sea_timer_t *t, void *data);

static int echo_producer_open(void *streamer_impl, sea_producer_t *p, const sea_open_args_t *args,
                              void **impl) {
  echo_producer_t *ep = sea_host->calloc(1, sizeof *ep);
  if (ep == NULL || (ep->timer = sea_host->timer_init(args->rt, echo_turn, ep)) == NULL) {
    sea_host->free(ep);
    sea_host->set_error(args->rt, "echo: out of memory");
    return SEA_ENOMEM;
  }
  ep->s = streamer_impl;
  ep->p = p;
  *impl = ep;
  return 0;
}

/* The next turn: give the receipts (the host completes the flushes that waited for them). */
static void echo_turn(sea_timer_t *t, void *data) {
  (void)t;
  echo_producer_t *ep = data;
  echo_receipt_t *receipts = ep->receipts;
  size_t receipt_count = ep->receipt_count;
  /* Detach the list first: a receipt callback may send again (the host allows it), and those
   * belong to the next turn. A close made in a callback waits until we return. */
  ep->receipts = NULL;
  ep->receipt_count = ep->receipt_cap = 0;
  for (size_t i = 0; i < receipt_count; i++)
    sea_host->receipt(ep->p, receipts[i].token, 0, &receipts[i].meta);
  sea_host->free(receipts);
}

/* Give them on the next turn (started again before its turn, the timer still runs once). */
static int echo_arm(echo_producer_t *ep) {
  return sea_host->timer_start(ep->timer, 0, 0) == 0 ? 0 : SEA_ENOMEM;
}

static echo_key_t *echo_key(echo_streamer_t *es, const char *key) {
  for (echo_key_t *k = es->keys; k; k = k->next)
    if (k->key == key)
      return k;
  echo_key_t *k = sea_host->calloc(1, sizeof *k);
  if (k == NULL)
    return NULL;
  k->key = key;
  k->next = es->keys;
  es->keys = k;
  return k;
}

/* The host has already checked the key (interned, never NULL here) and the payload size. echo
 * keeps no byte of the message, so it has nothing to copy and no block to ref. */
static int echo_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  echo_producer_t *ep = impl;
  (void)flags;
  echo_key_t *k = echo_key(ep->s, m->meta.stream_key);
  if (k == NULL)
    return SEA_ENOMEM; /* nothing was taken */
  if (ep->receipt_count == ep->receipt_cap) {
    echo_receipt_t *a = echo_grow(ep->receipts, &ep->receipt_cap, sizeof *a);
    if (a == NULL)
      return SEA_ENOMEM;
    ep->receipts = a;
  }
  if (echo_arm(ep) != 0)
    return SEA_ENOMEM;
  /* Never call host->receipt from here: the receipt of a send comes after the send returned. */
  echo_receipt_t *r = &ep->receipts[ep->receipt_count++];
  r->token = token;
  r->meta.stream_key = m->meta.stream_key;
  r->meta.shard_id = 0;
  r->meta.seq = k->next_seq++;
  r->meta.timestamp_us = m->meta.timestamp_us != 0 ? m->meta.timestamp_us : sea_host->now_us();
  sea_host->log(SEA_LOG_INFO, "echo", "%s seq %llu: %zu bytes", r->meta.stream_key,
                (unsigned long long)r->meta.seq, m->payload.len);
  return 0;
}

/* Close now. Receipts still due are not given: the host cancels them (and the flushes). */
static void echo_producer_close(void *impl) {
  echo_producer_t *ep = impl;
  sea_host->timer_close(ep->timer);
  sea_host->free(ep->receipts);
  sea_host->free(ep);
}

/* ---- consumer ---- */

static int echo_consumer_open(void *streamer_impl, sea_consumer_t *c, const sea_open_args_t *args,
                              void **impl) {
  (void)streamer_impl;
  echo_consumer_t *ec = sea_host->calloc(1, sizeof *ec);
  if (ec == NULL) {
    sea_host->set_error(args->rt, "echo: out of memory");
    return SEA_ENOMEM;
  }
  ec->c = c;
  *impl = ec;
  return 0;
}

static int echo_consumer_start(void *impl) {
  echo_consumer_t *ec = impl;
  /* Nothing to deliver. The host reports the end to the user on a later turn, so ending from
   * inside start is fine. */
  sea_host->consumer_end(ec->c, SEA_EOF, "echo: nothing to read");
  return 0;
}

static void echo_consumer_close(void *impl) {
  sea_host->free(impl);
}

static const char *const echo_schemes[] = {"echo", NULL};

static const sea_plugin_t echo_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = "echo",
    .schemes = echo_schemes,
    .version = "1.0.0",
    .description = "receipts every send, stores nothing (an out-of-tree example)",
    .caps = SEA_CAP_REALTIME | SEA_CAP_BINARY,
    .default_port = 0,
    .connect = echo_connect,
    .disconnect = echo_disconnect,
    .producer_open = echo_producer_open,
    .producer_send = echo_producer_send,
    .producer_close = echo_producer_close,
    .consumer_open = echo_consumer_open,
    .consumer_start = echo_consumer_start,
    .consumer_close = echo_consumer_close,
    /* Every other operation is NULL: the host answers SEA_ENOTSUP for it. */
    .options = echo_options,
};

/* The entry: keeps the host in sea_host and hands it echo_plugin, or refuses a host of another
 * major or an older minor (echo uses 1.4's members without checking). */
SEA_PLUGIN_INIT(echo, echo_plugin)
