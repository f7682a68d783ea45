/* file.c: the file:// backend: SeaStreamer's seekable .ss files (format in ss_codec.c).
 *
 * file://PATH/key1,key2 names the file PATH and the stream keys; file://PATH.ss (a last segment
 * ending in ".ss") names the file with no key. The host splits keys after the last '/', so
 * connect re-reads the URI as written (uri->raw) to tell the two apart.
 *
 * The backend is split into rooms (file_internal.h lists them and what they share): this one
 * holds the plugin table and its entry point, the streamer (connect/disconnect), the backend
 * options and small helpers; the producers are in file_writer.c, the consumers in
 * file_consumer.c.
 *
 * Reads and writes of a regular file are done on the loop thread, a bounded amount per turn
 * (page-cache I/O does not wait on the network); the commit's fsync runs on the work queue.
 */
#include <string.h>

#include "file_cmd.h"
#include "file_internal.h"

const sea_host_t *sea_file_fh;

/* ------------------------------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------------------------------- */

void *file_realloc(void *p, size_t n) {
  if (n == 0) {
    fh->free(p);
    return NULL;
  }
  return fh->realloc(p, n);
}

char *file_strdup(const char *s, size_t n) {
  char *d = fh->alloc(n + 1);
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

int file_parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (s == NULL || *s == '\0')
    return -1;
  for (; *s; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

int file_parse_opts(sea_runtime_t *rt, const sea_options_t *o, file_opts_t *fo) {
  size_t i, n;
  memset(fo, 0, sizeof *fo);
  fo->interval = SS_DEFAULT_INTERVAL;
  fo->size_limit = FILE_SIZE_LIMIT_DEFAULT;
  fo->flush_ms = FILE_FLUSH_MS_DEFAULT;
  fo->poll_ms = FILE_POLL_MS_DEFAULT;
  fo->max_frame = 256ull * 1024 * 1024;
  fo->eos = 1;
  n = o ? fh->option_count(o) : 0;
  for (i = 0; i < n; i++) {
    const char *k, *v;
    uint64_t num = 0;
    if (fh->option_at(o, i, &k, &v) != 0)
      continue;
    if (v == NULL)
      v = "";
    if (strcmp(k, "create") == 0) {
      if (strcmp(v, "auto") == 0)
        fo->create = 0;
      else if (strcmp(v, "new") == 0)
        fo->create = 1;
      else if (strcmp(v, "existing") == 0)
        fo->create = 2;
      else
        goto bad;
    } else if (strcmp(k, "eos") == 0 || strcmp(k, "on_damage") == 0) {
      int *dst = k[0] == 'e' ? &fo->eos : &fo->skip_damage;
      const char *yes = k[0] == 'e' ? "true" : "skip", *no = k[0] == 'e' ? "false" : "stop";
      if (strcmp(v, yes) == 0)
        *dst = 1;
      else if (strcmp(v, no) == 0)
        *dst = 0;
      else
        goto bad;
    } else if (strcmp(k, "beacon_interval") == 0 || strcmp(k, "size_limit") == 0 ||
               strcmp(k, "flush_interval") == 0 || strcmp(k, "poll_interval") == 0 ||
               strcmp(k, "max_frame") == 0) {
      if (file_parse_u64(v, &num) != 0)
        goto bad;
      if (k[0] == 'b') {
        if (num < 128 || num > UINT32_MAX)
          goto bad;
        fo->interval = num;
      } else if (k[0] == 's') {
        if (num < SS_HEADER_SIZE)
          goto bad;
        fo->size_limit = num;
      } else if (k[0] == 'f') {
        fo->flush_ms = num;
      } else if (k[0] == 'p') {
        if (num == 0)
          goto bad;
        fo->poll_ms = num;
        fo->poll_set = 1;
      } else {
        if (num < 64)
          goto bad;
        fo->max_frame = num;
      }
    } else {
      static const char known[] = "create, beacon_interval, size_limit, flush_interval, eos, "
                                  "poll_interval, on_damage, max_frame";
      if (fh->option_unknown != NULL)
        fh->option_unknown(rt, "file", k, known);
      else
        fh->set_error(rt, "file: unknown option '%s' (known: %s)", k, known);
      return SEA_EOPTION;
    }
    continue;
  bad:
    fh->set_error(rt,
                  "file: bad value %s=%s (create=auto|new|existing, eos=true|false, "
                  "on_damage=stop|skip, beacon_interval=128..4294967295, size_limit>=128, "
                  "poll_interval>=1, max_frame>=64, flush_interval=MS)",
                  k, v);
    return SEA_EOPTION;
  }
  return 0;
}

/* ------------------------------------------------------------------------------------------------
 * Streamer: the path, and the keys when the URI names some
 * ---------------------------------------------------------------------------------------------- */

static int file_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                        const sea_options_t *backend_options, void **impl) {
  file_opts_t fo;
  const char *rest, *slash;
  size_t n;
  int rc;
  file_streamer_t *fs;
  (void)s;
  if ((rc = file_parse_opts(rt, backend_options, &fo)) != 0)
    return rc;
  rest = strstr(uri->raw, "://");
  rest = rest ? rest + 3 : uri->raw;
  n = strlen(rest);
  slash = strrchr(rest, '/');
  fs = fh->calloc(1, sizeof *fs);
  if (fs == NULL)
    return SEA_ENOMEM;
  if (n >= 3 && strcmp(rest + n - 3, ".ss") == 0) {
    /* The host took the file name for a stream key: the whole URI is the path, no keys, so a
     * producer is not anchored to it and a consumer reads every key. */
    if ((rc = fh->uri_path_only(uri)) != 0) {
      fh->free(fs);
      return rc;
    }
    fs->keyless = 1;
  } else if (slash != NULL && slash > rest) {
    n = (size_t)(slash - rest);
  } else {
    fh->free(fs);
    fh->set_error(rt,
                  "file: '%s' names no file: expected file://PATH/KEYS or file://PATH.ss "
                  "(e.g. file://./data/feed.ss/orders)",
                  uri->raw);
    return SEA_EURI;
  }
  fs->path = file_strdup(rest, n);
  if (fs->path == NULL) {
    fh->free(fs);
    return SEA_ENOMEM;
  }
  *impl = fs;
  return 0;
}

static void file_disconnect(void *impl) {
  file_streamer_t *fs = impl;
  sea_file_list_abandon(&fs->lists);
  fh->free(fs->path);
  fh->free(fs);
}
/* ------------------------------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------------------------------- */

static const char *const file_schemes[] = {"file", NULL};

static int file_list(void *impl, const sea_list_args_t *args, sea_op_t *op) {
  file_streamer_t *fs = impl;
  return sea_file_list(fh, &fs->lists, fs->path, args, op);
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
    .producer_push = file_producer_push,
};

SEA_PLUGIN_ENTRY(file) {
  if (host == NULL || host->abi_major != SEA_PLUGIN_ABI_MAJOR)
    return NULL;
  fh = host;
  return &file_plugin;
}
