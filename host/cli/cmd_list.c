/* cmd_list.c: `seastreamer list URI` (and `-L URI`): what a backend holds, through
 * sea_streamer_list: its streams and shards, and the groups reading them, as tables or as one
 * JSON document. The backend finds the rows; this file only keeps and renders them. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char list_help[] =
    "usage: seastreamer list [options] URI      (also: seastreamer -L URI)\n"
    "\n"
    "Lists what the backend holds: its streams and their shards, and the consumer groups\n"
    "reading them. A URI with stream keys lists only those keys (one that is not there is\n"
    "an error, after the others are listed).\n"
    "  kafka://BROKERS[/TOPICS]   topics with each partition's leader and low/high watermarks;\n"
    "                             groups with their state, members, and per partition the\n"
    "                             committed offset and the lag (high watermark - committed)\n"
    "  redis://HOST:PORT[/KEYS]   streams (a sharded key's key:N streams under their key) with\n"
    "                             length and first/last entry id; each group with consumers,\n"
    "                             pending and lag (Redis 7), and its consumers\n"
    "  file://PATH.ss[/KEYS]      the keys and shards of the file with message counts, seq and\n"
    "                             time ranges\n"
    "\n"
    "options:\n"
    "  -J, --json         one JSON document: {\"backend\", \"uri\", \"streams\": [...],\n"
    "                     \"shards\": [...], \"groups\": [...], \"members\": [...]}; a field\n"
    "                     that is not known is left out (see the README)\n"
    "  -X KEY=VALUE       a streamer option (timeout=MS bounds the backend's round trips;\n"
    "                     backend options such as db=N for redis)\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 listed; 1 the backend failed (a server error); 2 bad usage (URI, option)\n"
    "  or a damaged file; 3 no backend (unknown scheme, cannot connect or no answer within\n"
    "  the timeout, no such file, list not supported by the backend).\n";

/* ---- rows kept until the end ---- */

enum {
  F_STREAM,
  F_SHARD,
  F_NAME,
  F_GROUP,
  F_MEMBER,
  F_STATE,
  F_MESSAGES,
  F_SHARDS,
  F_BYTES,
  F_LOW,
  F_HIGH,
  F_FIRST_SEQ,
  F_LAST_SEQ,
  F_FIRST_TS,
  F_LAST_TS,
  F_FIRST_ID,
  F_LAST_ID,
  F_LEADER,
  F_COMMITTED,
  F_LAG,
  F_PENDING,
  F_CONSUMERS,
  F_IDLE,
  F_LAST_DELIVERED,
  F_CLIENT_ID,
  F_HOST,
  F_COUNT
};

/* A field: its JSON name, its table heading, and whether it is text or a number. */
static const struct {
  const char *json, *head;
  bool text;
} fields[F_COUNT] = {
    [F_STREAM] = {"stream", "STREAM", true},
    [F_SHARD] = {"shard", "SHARD", false},
    [F_NAME] = {"name", "NAME", true},
    [F_GROUP] = {"group", "GROUP", true},
    [F_MEMBER] = {"member", "MEMBER", true},
    [F_STATE] = {"state", "STATE", true},
    [F_MESSAGES] = {"messages", "MESSAGES", false},
    [F_SHARDS] = {"shards", "SHARDS", false},
    [F_BYTES] = {"bytes", "BYTES", false},
    [F_LOW] = {"low", "LOW", false},
    [F_HIGH] = {"high", "HIGH", false},
    [F_FIRST_SEQ] = {"first_seq", "FIRST SEQ", false},
    [F_LAST_SEQ] = {"last_seq", "LAST SEQ", false},
    [F_FIRST_TS] = {"first_time", "FIRST TIME", true},
    [F_LAST_TS] = {"last_time", "LAST TIME", true},
    [F_FIRST_ID] = {"first_id", "FIRST ID", true},
    [F_LAST_ID] = {"last_id", "LAST ID", true},
    [F_LEADER] = {"leader", "LEADER", false},
    [F_COMMITTED] = {"committed", "COMMITTED", false},
    [F_LAG] = {"lag", "LAG", false},
    [F_PENDING] = {"pending", "PENDING", false},
    [F_CONSUMERS] = {"consumers", "CONSUMERS", false},
    [F_IDLE] = {"idle_ms", "IDLE MS", false},
    [F_LAST_DELIVERED] = {"last_delivered_id", "LAST DELIVERED", true},
    [F_CLIENT_ID] = {"client_id", "CLIENT ID", true},
    [F_HOST] = {"host", "HOST", true},
};

typedef struct row {
  sea_list_kind_t kind;
  char *val[F_COUNT]; /* each field as text, NULL when not known */
} row_t;

typedef struct listing {
  row_t *rows;
  size_t n, cap;
  int status;
  bool done, oom;
  sea_runtime_t *rt;
} listing_t;

static char *dup_text(const char *s) {
  if (s == NULL)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

static char *num_text(int64_t v) {
  if (v < 0)
    return NULL;
  char buf[32];
  snprintf(buf, sizeof buf, "%" PRId64, v);
  return dup_text(buf);
}

static char *time_text(int64_t us) {
  if (us < 0)
    return NULL;
  char buf[40];
  sea_format_timestamp(us, buf);
  return dup_text(buf);
}

static void on_row(void *data, const sea_list_row_t *r) {
  listing_t *l = data;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    row_t *rows = realloc(l->rows, cap * sizeof *rows);
    if (rows == NULL) {
      l->oom = true;
      return;
    }
    l->rows = rows;
    l->cap = cap;
  }
  row_t *w = &l->rows[l->n++];
  memset(w, 0, sizeof *w);
  w->kind = r->kind;
  char **v = w->val;
  v[F_STREAM] = dup_text(r->stream);
  v[F_SHARD] = num_text(r->shard);
  v[F_NAME] = dup_text(r->name);
  v[F_GROUP] = dup_text(r->group);
  v[F_MEMBER] = dup_text(r->member);
  v[F_STATE] = dup_text(r->state);
  v[F_MESSAGES] = num_text(r->messages);
  v[F_SHARDS] = num_text(r->shards);
  v[F_BYTES] = num_text(r->bytes);
  v[F_LOW] = num_text(r->low);
  v[F_HIGH] = num_text(r->high);
  v[F_FIRST_SEQ] = num_text(r->first_seq);
  v[F_LAST_SEQ] = num_text(r->last_seq);
  v[F_FIRST_TS] = time_text(r->first_ts_us);
  v[F_LAST_TS] = time_text(r->last_ts_us);
  v[F_FIRST_ID] = dup_text(r->first_id);
  v[F_LAST_ID] = dup_text(r->last_id);
  v[F_LEADER] = num_text(r->leader);
  v[F_COMMITTED] = num_text(r->committed);
  v[F_LAG] = num_text(r->lag);
  v[F_PENDING] = num_text(r->pending);
  v[F_CONSUMERS] = num_text(r->consumers);
  v[F_IDLE] = num_text(r->idle_ms);
  v[F_LAST_DELIVERED] = dup_text(r->last_delivered_id);
  v[F_CLIENT_ID] = dup_text(r->client_id);
  v[F_HOST] = dup_text(r->host);
}

static void on_done(void *data, int status) {
  listing_t *l = data;
  l->status = status;
  l->done = true;
  sea_runtime_stop(l->rt);
}

static void listing_free(listing_t *l) {
  for (size_t i = 0; i < l->n; i++)
    for (int f = 0; f < F_COUNT; f++)
      free(l->rows[i].val[f]);
  free(l->rows);
}

/* ---- rendering ---- */

static const struct {
  sea_list_kind_t kind;
  const char *json, *title;
} kinds[] = {{SEA_LIST_STREAM, "streams", "streams"},
             {SEA_LIST_SHARD, "shards", "shards"},
             {SEA_LIST_GROUP, "groups", "groups"},
             {SEA_LIST_MEMBER, "members", "group members"}};

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  size_t len = s[0] < 0xC2 ? 0 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : s[0] < 0xF5 ? 4 : 0;
  if (len == 0 || len > n)
    return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
      (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
    return 0;
  return len;
}

/* A JSON string. Names a server gives (Kafka client ids, hosts) could hold any byte: a byte
 * that is not UTF-8 becomes U+FFFD, so the document stays valid JSON. */
static void json_string(FILE *out, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s);
  fputc('"', out);
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c == '"' || c == '\\') {
      fputc('\\', out);
      fputc(c, out);
      i++;
    } else if (c < 0x20 || c == 0x7F) {
      fprintf(out, "\\u%04x", c);
      i++;
    } else if (c < 0x80) {
      fputc(c, out);
      i++;
    } else {
      size_t len = utf8_len(p + i, n - i);
      if (len == 0) {
        fputs("\\ufffd", out);
        i++;
      } else {
        fwrite(p + i, 1, len, out);
        i += len;
      }
    }
  }
  fputc('"', out);
}

static void render_json(FILE *out, const listing_t *l, const char *backend, const char *uri) {
  fputs("{\"backend\": ", out);
  json_string(out, backend);
  fputs(", \"uri\": ", out);
  json_string(out, uri);
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    fprintf(out, ",\n \"%s\": [", kinds[k].json);
    size_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
      const row_t *r = &l->rows[i];
      if (r->kind != kinds[k].kind)
        continue;
      fputs(count++ ? ",\n  {" : "\n  {", out);
      int nf = 0;
      for (int f = 0; f < F_COUNT; f++) {
        if (r->val[f] == NULL)
          continue;
        fprintf(out, "%s\"%s\": ", nf++ ? ", " : "", fields[f].json);
        if (fields[f].text)
          json_string(out, r->val[f]);
        else
          fputs(r->val[f], out);
      }
      fputc('}', out);
    }
    fputc(']', out);
  }
  fputs("}\n", out);
}

/* One table per kind of row: the columns that some row of the kind knows. */
static void render_tables(FILE *out, const listing_t *l) {
  bool first = true;
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    size_t width[F_COUNT] = {0};
    size_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
      const row_t *r = &l->rows[i];
      if (r->kind != kinds[k].kind)
        continue;
      count++;
      for (int f = 0; f < F_COUNT; f++)
        if (r->val[f] && strlen(r->val[f]) > width[f])
          width[f] = strlen(r->val[f]);
    }
    if (count == 0)
      continue;
    for (int f = 0; f < F_COUNT; f++)
      if (width[f] && strlen(fields[f].head) > width[f])
        width[f] = strlen(fields[f].head);
    fprintf(out, "%s%s:\n", first ? "" : "\n", kinds[k].title);
    first = false;
    const char *sep = "  ";
    int last = 0; /* the last column is not padded: no trailing blanks */
    for (int f = 0; f < F_COUNT; f++)
      if (width[f])
        last = f;
    for (int f = 0; f < F_COUNT; f++)
      if (width[f])
        fprintf(out, "%s%-*s", sep, f == last ? 0 : (int)width[f], fields[f].head);
    fputc('\n', out);
    for (size_t i = 0; i < l->n; i++) {
      const row_t *r = &l->rows[i];
      if (r->kind != kinds[k].kind)
        continue;
      for (int f = 0; f < F_COUNT; f++) {
        if (width[f] == 0)
          continue;
        const char *v = r->val[f] ? r->val[f] : "-";
        if (fields[f].text)
          fprintf(out, "%s%-*s", sep, f == last ? 0 : (int)width[f], v);
        else
          fprintf(out, "%s%*s", sep, (int)width[f], v);
      }
      fputc('\n', out);
    }
  }
  if (first)
    fputs("nothing to list\n", out);
}

/* The number of the URI's keys with no stream row, each reported. */
static int missing_keys(const char *cmd, const listing_t *l, const sea_uri_t *u,
                        const char *backend) {
  int missing = 0;
  for (size_t k = 0; k < u->key_count; k++) {
    bool found = false;
    for (size_t i = 0; i < l->n && !found; i++)
      found = l->rows[i].kind == SEA_LIST_STREAM && l->rows[i].val[F_STREAM] &&
              strcmp(l->rows[i].val[F_STREAM], u->keys[k]) == 0;
    if (!found) {
      cli_error(cmd, "%s: no stream '%s' in %s", backend, u->keys[k], u->raw);
      missing++;
    }
  }
  return missing;
}

/* ---- the command ---- */

int cmd_list(int argc, char **argv) {
  static const char cmd[] = "list";
  static const struct option longopts[] = {
      {"json", no_argument, NULL, 'J'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  bool json = false;
  sea_options_t *opts = sea_options_new();
  if (opts == NULL)
    return EXIT_STREAM;
  int c, rc;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":JX:h", longopts, NULL)) != -1) {
    switch (c) {
    case 'J':
      json = true;
      break;
    case 'X':
      if ((rc = cli_option(cmd, opts, optarg)) != 0) {
        sea_options_free(opts);
        return rc;
      }
      break;
    case 'h':
      fputs(list_help, stdout);
      sea_options_free(opts);
      return EXIT_OK;
    case ':':
      cli_error(cmd, "option -%c needs a value (see --help)", optopt);
      sea_options_free(opts);
      return EXIT_USAGE;
    default:
      if (optopt)
        cli_error(cmd, "unknown option -%c (see --help)", optopt);
      else
        cli_error(cmd, "unknown option '%s' (see --help)", argv[optind - 1]);
      sea_options_free(opts);
      return EXIT_USAGE;
    }
  }
  if (optind != argc - 1) {
    if (optind >= argc)
      cli_error(cmd, "expected a URI (run `seastreamer list --help`)");
    else
      cli_error(cmd, "expected one URI, got '%s' after '%s'", argv[optind + 1], argv[optind]);
    sea_options_free(opts);
    return EXIT_USAGE;
  }
  const char *uri = argv[optind];
  listing_t l = {0};
  if ((rc = sea_runtime_new(&l.rt)) != 0) {
    cli_error(cmd, "cannot create the runtime: %s", sea_strerror(rc));
    sea_options_free(opts);
    return EXIT_STREAM;
  }
  sea_streamer_t *s = NULL;
  rc = sea_connect(l.rt, uri, opts, &s);
  sea_options_free(opts);
  if (rc != 0) {
    cli_error(cmd, "%s", sea_runtime_errmsg(l.rt));
    goto out;
  }
  /* The keys the backend left in the URI (a file's path is not a key). */
  const sea_uri_t *u = sea_streamer_uri(s);
  rc = sea_streamer_list(s, (const char *const *)u->keys, u->key_count, on_row, on_done, &l);
  if (rc != 0) {
    cli_error(cmd, "%s", sea_streamer_errmsg(s));
    goto out;
  }
  while (!l.done)
    if (sea_runtime_run(l.rt, SEA_RUN_DEFAULT) == 0 && !l.done) {
      /* The loop ran dry without an answer: a backend that lost its completion. */
      cli_error(cmd, "%s: the listing did not complete", sea_streamer_backend(s));
      rc = SEA_EBACKEND;
      goto out;
    }
  rc = l.status;
  if (rc == 0 && l.oom)
    rc = SEA_ENOMEM;
  if (rc != 0) {
    cli_error(cmd, "%s", rc == SEA_ENOMEM ? sea_strerror(rc) : sea_streamer_errmsg(s));
    goto out;
  }
  errno = 0;
  if (json)
    render_json(stdout, &l, sea_streamer_backend(s), uri);
  else
    render_tables(stdout, &l);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    if (errno == EPIPE) {
      rc = 0; /* the reader went away (`| head`): it read what it wanted, a quiet success */
    } else {
      cli_error(cmd, "stdout: %s", errno ? strerror(errno) : "write failed");
      rc = SEA_EIO;
    }
  }
  /* A key asked for that the backend does not hold: what exists was listed (as `ls` does with
   * the names it found), and each missing one is an error. */
  if (rc == 0 && (rc = missing_keys(cmd, &l, u, sea_streamer_backend(s))) != 0)
    rc = SEA_EKEY;
out:
  if (s)
    sea_streamer_close(s);
  sea_runtime_free(l.rt);
  listing_free(&l);
  return cli_exit_for(rc);
}
