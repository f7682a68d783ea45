/* stdio.c: the stdio backend: consumers read lines from stdin, producers write lines to stdout.
 * This room holds the plugin table, its entry point and the streamer; the other rooms are listed
 * at the top of stdio_internal.h. */
#include "stdio_internal.h"

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
      sea_host->set_error(rt, "stdio: URI takes no host, got '%s'", uri->nodes[i]);
      return SEA_EURI;
    }
  }
  stdio_opts_t o;
  int rc = stdio_opts_parse(rt, backend_options, &o);
  if (rc != 0)
    return rc;
  stdio_streamer_t *st = sea_host->calloc(1, sizeof *st);
  if (st == NULL)
    return SEA_ENOMEM;
  st->rt = rt;
  *impl = st;
  return 0;
}

static void stdio_disconnect(void *impl) {
  sea_host->free(impl);
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
    .producer_close = stdio_producer_close,
    .consumer_open = stdio_consumer_open,
    .consumer_start = stdio_consumer_start,
    .consumer_pause = stdio_consumer_pause,
    .consumer_resume = stdio_consumer_resume,
    .consumer_close = stdio_consumer_close,
    .options = stdio_option_table,
    .producer_push = stdio_producer_push,
};

SEA_PLUGIN_INIT(stdio, stdio_plugin)
