/* plugin.c: the plugins test_loader.c loads: a good one, and variants each wrong in one way. */
/*
 * Every variant is this file compiled with LOADER_NAME (the descriptor's name and URI scheme) and
 * at most one LOADER_FAULT_* macro (see CMakeLists.txt). describe() builds the good descriptor
 * first and then breaks exactly one thing, so a refusal can only have the reason under test.
 *
 * The good plugin is a producer that stores nothing: each send gets a receipt, with a seq that
 * counts from 0, on the next loop turn.
 */
#include <stdlib.h>
#include <string.h>

#include "seastreamer/plugin.h"

#ifndef LOADER_NAME
#error "LOADER_NAME (the descriptor's name and URI scheme) must be defined"
#endif
#ifndef LOADER_SCHEME
#define LOADER_SCHEME LOADER_NAME
#endif

static const sea_host_t *plugin_host;

/* A receipt to give on the next turn. */
typedef struct pending {
  void *token;
  sea_meta_t meta;
} pending_t;

typedef struct producer {
  sea_runtime_t *rt;
  sea_producer_t *p;
  sea_timer_t *timer; /* running while pending is not empty */
  pending_t *pending;
  size_t count, cap;
  uint64_t seq;
} producer_t;

static int plugin_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                          const sea_options_t *opts, void **impl) {
  const char *k, *v;
  /* A backend rejects what it does not know; this one knows no option at all. */
  if (plugin_host->option_count(opts) > 0 && plugin_host->option_at(opts, 0, &k, &v) == 0) {
    plugin_host->set_error(rt, "%s: unknown option '%s'", LOADER_NAME, k);
    return SEA_EOPTION;
  }
  *impl = rt; /* the only per-streamer state a producer needs */
  return 0;
}

static void plugin_disconnect(void *impl) {
}

static int producer_open(void *streamer_impl, sea_producer_t *p, const sea_open_args_t *args,
                         void **impl) {
  producer_t *pr = plugin_host->calloc(1, sizeof *pr);
  if (pr == NULL) {
    plugin_host->set_error(args->rt, "%s: out of memory", LOADER_NAME);
    return SEA_ENOMEM;
  }
  pr->rt = streamer_impl;
  pr->p = p;
  *impl = pr;
  return 0;
}

static void on_turn(sea_timer_t *t, void *data) {
  producer_t *pr = data;
  /* Take the list first: a receipt callback may send again, which starts a new list (and timer).
   * It cannot close us under our feet: the host defers a close made inside a receipt. */
  pending_t *list = pr->pending;
  size_t count = pr->count;
  plugin_host->timer_stop(t);
  pr->timer = NULL;
  pr->pending = NULL;
  pr->count = pr->cap = 0;
  for (size_t i = 0; i < count; i++)
    plugin_host->receipt(pr->p, list[i].token, 0, &list[i].meta);
  plugin_host->free(list);
}

static int producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  producer_t *pr = impl;
  if (pr->count == pr->cap) {
    size_t cap = pr->cap ? pr->cap * 2 : 8;
    pending_t *a = plugin_host->realloc(pr->pending, cap * sizeof *a);
    if (a == NULL)
      return SEA_ENOMEM;
    pr->pending = a;
    pr->cap = cap;
  }
  /* The receipt may not come from inside this call: the host links the send in after we return. */
  if (pr->timer == NULL) {
    pr->timer = plugin_host->timer_start(pr->rt, 0, 0, on_turn, pr);
    if (pr->timer == NULL)
      return SEA_ENOMEM;
  }
  pending_t *r = &pr->pending[pr->count++];
  r->token = token;
  r->meta.stream_key = m->meta.stream_key;
  r->meta.shard_id = 0;
  r->meta.seq = pr->seq++;
  r->meta.timestamp_us = m->meta.timestamp_us ? m->meta.timestamp_us : plugin_host->now_us();
  return 0;
}

static void producer_close(void *impl) {
  producer_t *pr = impl;
  /* Sends still pending need no receipt: the host cancels them. */
  if (pr->timer)
    plugin_host->timer_stop(pr->timer);
  plugin_host->free(pr->pending);
  plugin_host->free(pr);
}

#ifdef LOADER_FAULT_FUTURE_SIZE
/* A member of a later 1.x header that this host does not know: it must never be called. */
static void later_op(void) {
  abort();
}
#endif

#ifdef LOADER_FAULT_MINOR_ZERO
/* In the slot ABI 1.1 gave to list: a 1.0 plugin's descriptor is read only up to what 1.0 had,
 * so this must never be called. */
static int minor_zero_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  (void)impl, (void)args, (void)op;
  abort();
}
#endif

#ifdef LOADER_FAULT_MINOR_ZERO
/* In the slot ABI 1.3 gave to commands: a 1.0 plugin's command is never listed nor run. */
static int never_run(int argc, char **argv) {
  (void)argc, (void)argv;
  abort();
}
static const sea_plugin_command_t minor_zero_commands[] = {{"never", NULL, "never run", never_run},
                                                           {NULL, NULL, NULL, NULL}};
#else
/* `hello`: its status says whose it is (the length of the plugin's name), so a test can tell
 * which of two plugins offering it ran. */
static int hello_run(int argc, char **argv) {
  (void)argv;
  return argc == 1 ? (int)strlen(LOADER_NAME) : 100;
}
static const sea_plugin_command_t hello_commands[] = {{"hello", NULL, "say whose", hello_run},
                                                      {NULL, NULL, NULL, NULL}};
#endif

/* The descriptor with room behind it, as a plugin built against a future 1.x header (whose
 * sea_plugin_t grew at the end) would have. Only the future variant says it is that big. */
static struct {
  sea_plugin_t v1;
  void (*later[4])(void);
} desc;

static const char *const schemes[] = {LOADER_SCHEME, NULL};

static const sea_plugin_t *describe(void) {
  sea_plugin_t *d = &desc.v1;
  d->abi_major = SEA_PLUGIN_ABI_MAJOR;
  d->abi_minor = SEA_PLUGIN_ABI_MINOR;
  d->struct_size = sizeof(sea_plugin_t);
  d->name = LOADER_NAME;
  d->schemes = schemes;
  d->version = "1.0.0";
  d->description = "a test plugin of tests/loader";
  d->caps = SEA_CAP_REALTIME;
  d->connect = plugin_connect;
  d->disconnect = plugin_disconnect;
  d->producer_open = producer_open;
  d->producer_send = producer_send;
  d->producer_close = producer_close;
#ifndef LOADER_FAULT_MINOR_ZERO
  d->commands = hello_commands;
#endif

#if defined(LOADER_FAULT_ABI_MAJOR)
  d->abi_major = 2;
#elif defined(LOADER_FAULT_ABI_MINOR)
  d->abi_minor = 99;
#elif defined(LOADER_FAULT_SMALL_STRUCT)
  d->struct_size = (uint32_t)(SEA_PLUGIN_V1_0_SIZE - sizeof(void *));
#elif defined(LOADER_FAULT_NO_CONNECT)
  d->connect = NULL;
#elif defined(LOADER_FAULT_NO_SEND)
  d->producer_send = NULL;
#elif defined(LOADER_FAULT_NO_SCHEMES)
  static const char *const no_schemes[] = {NULL}; /* a list, but an empty one */
  d->schemes = no_schemes;
#elif defined(LOADER_FAULT_MINOR_ZERO)
  /* Not a fault: a plugin built for ABI 1.0 with something in the slot 1.1 gave to list. */
  d->abi_minor = 0;
  d->list = minor_zero_list;
  d->commands = minor_zero_commands;
#elif defined(LOADER_FAULT_BAD_OPTION_DEFAULT)
  /* An option table (ABI 1.4) whose default breaks its own range. */
  static const sea_option_spec_t opts[] = {
      {.key = "size", .type = SEA_OPT_U64, .min = 1, .max = 10, .def = "0"}, {.key = NULL}};
  d->options = opts;
#elif defined(LOADER_FAULT_TWICE_OPTION)
  static const sea_option_spec_t opts[] = {{.key = "colour", .type = SEA_OPT_STR},
                                           {.key = "colour", .type = SEA_OPT_BOOL},
                                           {.key = NULL}};
  d->options = opts;
#elif defined(LOADER_FAULT_FUTURE_SIZE)
  /* Not a fault: bigger than this host's struct, still ABI 1.0. The host reads what it knows. */
  d->struct_size = sizeof desc;
  for (size_t i = 0; i < sizeof desc.later / sizeof desc.later[0]; i++)
    desc.later[i] = later_op;
#endif
  return d;
}

#ifdef LOADER_FAULT_DATA_ENTRY
/* Built with SEA_PLUGIN_STATIC too: the entry function has its static-link name, and the name the
 * loader looks up is a data object, which calling would crash. */
__attribute__((visibility("default"))) const int sea_plugin_entry = 42;
#endif

/* LOADER_FAULT_NO_ENTRY is built with SEA_PLUGIN_STATIC: the entry is then the static-link name
 * sea_plugin_entry_loader, which is not exported, the mistake of building the static flavour as a
 * .so. */
SEA_PLUGIN_ENTRY(loader) {
  plugin_host = host;
  const sea_plugin_t *d = describe();
#ifdef LOADER_FAULT_NULL_ENTRY
  d = NULL; /* what an entry returns when it cannot work with this host */
#endif
  return d;
}
