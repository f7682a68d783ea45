/* file.c: the file:// backend: SeaStreamer's seekable .ss files (format in ss_codec.c).
 *
 * file://PATH/key1,key2 names the file PATH and the stream keys; file://PATH.ss (a last segment
 * ending in ".ss") names the file with no key. The host splits keys after the last '/', so
 * connect re-reads the URI as written (uri->raw) to tell the two apart.
 *
 * The backend is split into rooms (file_internal.h lists them and what they share): this one
 * holds the plugin table and its entry point, the streamer (connect/disconnect), the backend
 * option table and small helpers; the producers are in file_writer.c, the consumers in
 * file_consumer.c.
 *
 * Reads and writes of a regular file are done on the loop thread, a bounded amount per turn
 * (page-cache I/O does not wait on the network); the commit's fsync runs on the work queue.
 */
#include <string.h>

#include "file_cmd.h"
#include "file_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------------- */

void *file_realloc(void *p, size_t n) {
  if (n == 0) {
    sea_host->free(p);
    return NULL;
  }
  return sea_host->realloc(p, n);
}

char *file_strdup(const char *s, size_t n) {
  char *d = sea_host->alloc(n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* Words for the codes this backend returns (a plugin does not call the library's sea_strerror). */
const char *file_strerror(int rc) {
  switch (rc) {
  case SEA_ENOMEM:
    return "out of memory";
  case SEA_EIO:
    return "input/output error";
  case SEA_EFORMAT:
    return "malformed file";
  default:
    return "error";
  }
}

/* The backend options (ABI 1.4 table): the host checks every connect's and open's options
 * against it, so file_parse_opts only reads them. */
/* clang-format off */
const sea_option_spec_t file_option_table[] = {
    {.key = "create", .type = SEA_OPT_ENUM, .values = "auto|new|existing", .def = "auto",
     .help = "new: fail if the file exists; existing: if it does not"},
    {.key = "beacon_interval", .type = SEA_OPT_U64, .min = 128, .max = UINT32_MAX, .def = "1048576",
     .help = "bytes between beacons in a new file"},
    {.key = "size_limit", .type = SEA_OPT_U64, .min = SS_HEADER_SIZE, .def = "17179869184",
     .help = "the largest the file may grow, in bytes"},
    {.key = "flush_interval", .type = SEA_OPT_MS, .def = "10",
     .help = "ms before buffered sends are written"},
    {.key = "eos", .type = SEA_OPT_BOOL, .def = "true", .help = "end writes an end-of-stream"},
    {.key = "poll_interval", .type = SEA_OPT_MS, .min = 1, .def = "100",
     .help = "ms between looks at a followed file: 100, or 1000 where file events tell of "
             "changes, unless given"},
    {.key = "on_damage", .type = SEA_OPT_ENUM, .values = "stop|skip", .def = "stop",
     .help = "skip: log damage and go on from the next beacon"},
    {.key = "max_frame", .type = SEA_OPT_U64, .min = 64, .def = "268435456",
     .help = "the longest frame accepted, in bytes"},
    {.key = NULL},
};
/* clang-format on */

void file_parse_opts(const sea_options_t *o, file_opts_t *fo) {
  fo->create =
      sea_host->option_enum(o, "create"); /* 0 auto, 1 new, 2 existing: the table's order */
  fo->interval = sea_host->option_u64(o, "beacon_interval");
  fo->size_limit = sea_host->option_u64(o, "size_limit");
  fo->flush_ms = sea_host->option_u64(o, "flush_interval");
  fo->eos = sea_host->option_bool(o, "eos");
  fo->poll_ms = sea_host->option_u64(o, "poll_interval");
  fo->poll_set = sea_host->option_get(o, "poll_interval") != NULL;
  fo->skip_damage = sea_host->option_enum(o, "on_damage");
  fo->max_frame = sea_host->option_u64(o, "max_frame");
}

/* ------------------------------------------------------------------------------------------------
 * Streamer: the path, and the keys when the URI names some
 * ---------------------------------------------------------------------------------------------- */

static int file_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                        const sea_options_t *backend_options, void **impl) {
  const char *rest, *slash;
  size_t n;
  int rc;
  file_streamer_t *fs;
  (void)s;
  (void)backend_options; /* the host checked them; the streamer keeps none */
  rest = strstr(uri->raw, "://");
  rest = rest ? rest + 3 : uri->raw;
  n = strlen(rest);
  slash = strrchr(rest, '/');
  fs = sea_host->calloc(1, sizeof *fs);
  if (fs == NULL)
    return SEA_ENOMEM;
  if (n >= 3 && strcmp(rest + n - 3, ".ss") == 0) {
    /* The host took the file name for a stream key: the whole URI is the path, no keys, so a
     * producer is not anchored to it and a consumer reads every key. */
    if ((rc = sea_host->uri_path_only(uri)) != 0) {
      sea_host->free(fs);
      return rc;
    }
    fs->keyless = 1;
  } else if (slash != NULL && slash > rest) {
    n = (size_t)(slash - rest);
  } else {
    sea_host->free(fs);
    sea_host->set_error(rt,
                        "file: '%s' names no file: expected file://PATH/KEYS or file://PATH.ss "
                        "(e.g. file://./data/feed.ss/orders)",
                        uri->raw);
    return SEA_EURI;
  }
  fs->path = file_strdup(rest, n);
  if (fs->path == NULL) {
    sea_host->free(fs);
    return SEA_ENOMEM;
  }
  *impl = fs;
  return 0;
}

static void file_disconnect(void *impl) {
  file_streamer_t *fs = impl;
  sea_file_list_abandon(&fs->lists);
  sea_host->free(fs->path);
  sea_host->free(fs);
}
/* ------------------------------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------------------------------- */

static const char *const file_schemes[] = {"file", NULL};

static int file_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  file_streamer_t *fs = impl;
  return sea_file_list(sea_host, &fs->lists, fs->path, args, op);
}

static const sea_plugin_t file_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = FILE_NAME,
    .schemes = file_schemes,
    .version = "0.1.0",
    .description = "seekable .ss files, byte-compatible with SeaStreamer",
    .caps = SEA_CAP_REALTIME | SEA_CAP_RESUMABLE | SEA_CAP_LOAD_BALANCED | SEA_CAP_SEEK |
            SEA_CAP_REWIND | SEA_CAP_COMMIT | SEA_CAP_SHARDS | SEA_CAP_BINARY,
    .default_port = 0,
    .connect = file_connect,
    .disconnect = file_disconnect,
    .producer_open = file_producer_open,
    .producer_send = file_producer_send,
    .producer_close = file_producer_close,
    .consumer_open = file_consumer_open,
    .consumer_start = file_consumer_start,
    .consumer_pause = file_consumer_pause,
    .consumer_resume = file_consumer_resume,
    .consumer_seek = file_consumer_seek,
    .consumer_rewind = file_consumer_rewind,
    .consumer_assign = file_consumer_assign,
    .consumer_unassign = file_consumer_unassign,
    .consumer_ack = file_consumer_ack,
    .consumer_commit = file_consumer_commit,
    .consumer_close = file_consumer_close,
    .consumer_lag = file_consumer_lag,
    .list = file_list,
    .commands = file_commands,
    .options = file_option_table,
    .producer_push = file_producer_push,
};

SEA_PLUGIN_INIT(file, file_plugin)
