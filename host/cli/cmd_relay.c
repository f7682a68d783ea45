/* cmd_relay.c: `relay`, `consume` and `produce`: each is a relay between two streamers
 * (consume is URI → stdout, produce is stdin → URI), so all three share one C path. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli.h"

typedef struct job {
  const char *cmd;
  const char *in_uri, *out_uri;
  sea_options_t *in_opts, *out_opts;
  sea_relay_config_t cfg;
  sea_runtime_t *rt;
  sea_streamer_t *in_s, *out_s;
  sea_consumer_t *in;
  sea_producer_t *out;
  sea_relay_t *relay;
  int64_t partition;        /* consume -p N: read only shard N of each stream key (-1: all) */
  sea_kv_t *headers;        /* produce -H name=value, added to every message */
  bool empty_null;          /* produce -Z: the output must have NULL payloads */
  uint64_t stats_ms;        /* --stats / --stats-json: the interval (0: no stats) */
  unsigned stats_flags;     /* SEA_STATS_JSON */
  const char *metrics_addr; /* --metrics HOST:PORT */
  sea_metrics_t *metrics;
  uv_signal_t sigs[2];
  int nsigs;
  int status;
  char errmsg[1024];
} job_t;

/* One job per process: the relay's callback finds it here. */
static job_t *the_job;

static void on_done(sea_relay_t *r, int status) {
  job_t *j = the_job;
  j->status = status;
  if (status != 0)
    snprintf(j->errmsg, sizeof j->errmsg, "%s", sea_relay_errmsg(r));
  for (int i = 0; i < j->nsigs; i++)
    uv_close((uv_handle_t *)&j->sigs[i], NULL);
  j->nsigs = 0;
  sea_runtime_stop(j->rt);
}

static void on_signal(uv_signal_t *h, int signum) {
  /* First Ctrl-C: stop consuming, confirm and commit what was sent. */
  sea_relay_stop(the_job->relay);
}

static int connect_one(job_t *j, const char *uri, const sea_options_t *opts, sea_streamer_t **s) {
  int rc = sea_connect(j->rt, uri, opts, s);
  if (rc != 0)
    cli_error(j->cmd, "%s", sea_runtime_errmsg(j->rt));
  return rc;
}

/* What produce's -K, -H and -Z need of the output: a backend that carries them (never dropped
 * without a word). */
static int check_output(job_t *j) {
  uint64_t caps = sea_streamer_caps(j->out_s);
  const char *name = sea_streamer_backend(j->out_s);
  const char *what = NULL;
  if (sea_options_get(j->in_opts, "key_delimiter") && !(caps & SEA_CAP_KEY))
    what = "-K: message keys";
  else if (j->cfg.header_count && !(caps & SEA_CAP_HEADERS))
    what = "-H: headers";
  else if (j->empty_null && strcmp(name, "kafka") != 0)
    what = "-Z: NULL payloads (only kafka has them)";
  size_t nkeys = sea_streamer_uri(j->out_s)->key_count;
  if (what == NULL && nkeys > 1) {
    /* A producer writes to the URI's first key (or the key each message carries): the others
     * would be left out without a word. */
    cli_error(j->cmd,
              "%s: the output URI names %zu stream keys; it writes to one (name one, or none "
              "and let each message's key pick)",
              j->out_uri, nkeys);
    return SEA_EINVAL;
  }
  if (what == NULL)
    return 0;
  cli_error(j->cmd, "%s: %s does not carry %s", j->out_uri, name, what);
  return SEA_EINVAL; /* a usage error: the flag does not fit this URI */
}

/* consume -p N: shard N of each stream key of the URI, assigned before the relay starts it. */
static int assign_partition(job_t *j) {
  const sea_uri_t *u = sea_streamer_uri(j->in_s);
  if (u->key_count == 0) {
    cli_error(j->cmd, "-p %lld: name the stream key(s) in the URI", (long long)j->partition);
    return SEA_EINVAL;
  }
  for (size_t i = 0; i < u->key_count; i++) {
    int rc = sea_consumer_assign(j->in, u->keys[i], (uint64_t)j->partition);
    if (rc != 0) {
      cli_error(j->cmd, "-p %lld: %s cannot read one shard of '%s': %s", (long long)j->partition,
                sea_streamer_backend(j->in_s), u->keys[i],
                rc == SEA_ENOTSUP ? "not supported" : sea_consumer_errmsg(j->in));
      return SEA_EINVAL; /* a usage error: the flag does not fit this URI */
    }
  }
  return 0;
}

static int run_job(job_t *j) {
  int rc = sea_runtime_new(&j->rt);
  if (rc != 0) {
    cli_error(j->cmd, "cannot create the runtime: %s", sea_strerror(rc));
    return EXIT_STREAM;
  }
  the_job = j;
  /* --metrics listens before anything connects: a bad address or a port in use is a usage error
   * while nothing has been consumed. */
  if (j->metrics_addr && (rc = sea_metrics_serve(j->rt, j->metrics_addr, &j->metrics)) != 0) {
    cli_error(j->cmd, "--metrics %s: %s", j->metrics_addr, sea_runtime_errmsg(j->rt));
    rc = SEA_EINVAL;
    goto out;
  }
  if ((rc = connect_one(j, j->in_uri, j->in_opts, &j->in_s)) != 0)
    goto out;
  if ((rc = connect_one(j, j->out_uri, j->out_opts, &j->out_s)) != 0)
    goto out;
  if ((rc = check_output(j)) != 0)
    goto out;
  if ((rc = sea_consumer_open(j->in_s, NULL, &j->in)) != 0) {
    cli_error(j->cmd, "input %s: %s", j->in_uri, sea_runtime_errmsg(j->rt));
    goto out;
  }
  if (j->partition >= 0 && (rc = assign_partition(j)) != 0)
    goto out;
  if ((rc = sea_producer_open(j->out_s, NULL, &j->out)) != 0) {
    cli_error(j->cmd, "output %s: %s", j->out_uri, sea_runtime_errmsg(j->rt));
    goto out;
  }
  /* The relay takes both handles: it closes them when freed. */
  rc = sea_relay_start(j->in, j->out, &j->cfg, on_done, &j->relay);
  j->in = NULL;
  j->out = NULL;
  if (rc != 0) {
    cli_error(j->cmd, "%s", sea_relay_errmsg(j->relay));
    goto out;
  }
  if (j->stats_ms)
    sea_pipeline_report_stats(sea_relay_pipeline(j->relay), j->stats_ms, j->stats_flags);
  sea_metrics_set_pipeline(j->metrics, sea_relay_pipeline(j->relay));
  uv_loop_t *loop = sea_runtime_uv_loop(j->rt);
  int signums[2] = {SIGINT, SIGTERM};
  for (int i = 0; i < 2; i++) {
    uv_signal_init(loop, &j->sigs[i]);
    uv_signal_start_oneshot(&j->sigs[i], on_signal, signums[i]);
    uv_unref((uv_handle_t *)&j->sigs[i]);
    j->nsigs++;
  }
  sea_runtime_run(j->rt, SEA_RUN_DEFAULT);
  rc = j->status;
  /* The reader of stdout went away (`| head`): stopping is what it asked for, a quiet success.
   * The pipeline has committed what is done: lines written whole (to the end of the last batch
   * written whole, as the relay holds a batch together); the line that met the closed pipe and
   * those after it are not done, and come again. */
  if (rc == SEA_EPIPE && strncmp(j->out_uri, "stdio:", 6) == 0)
    rc = 0;
  if (rc != 0)
    cli_error(j->cmd, "%s", j->errmsg[0] ? j->errmsg : sea_strerror(rc));
out:
  sea_metrics_close(j->metrics); /* before the pipeline it reads goes */
  /* The relay closes its handles (the output first); these are the ones it never took. */
  sea_relay_free(j->relay);
  if (j->out)
    sea_producer_close(j->out);
  if (j->in)
    sea_consumer_close(j->in);
  if (j->in_s)
    sea_streamer_close(j->in_s);
  if (j->out_s)
    sea_streamer_close(j->out_s);
  for (int i = 0; i < j->nsigs; i++)
    uv_close((uv_handle_t *)&j->sigs[i], NULL);
  sea_runtime_free(j->rt);
  sea_options_free(j->in_opts);
  sea_options_free(j->out_opts);
  free(j->headers);
  return cli_exit_for(rc);
}

enum {
  OPT_MODE = 256,
  OPT_HELP,
  OPT_COMMIT,
  OPT_EOS,
  OPT_TXID,
  OPT_STATS,
  OPT_STATS_JSON,
  OPT_METRICS
};

/* -q and -v, the same for every command that runs a stream. */
#define LOG_HELP                                                                                   \
  "  -q               quiet: log errors only (SEASTREAMER_LOG=error; no notices)\n"                \
  "  -v, -vv          log more: info (connected, groups assigned/revoked, commits), debug\n"

/* The stats options' help, the same for relay, consume and produce. */
#define STATS_HELP                                                                                 \
  "  --stats[=SECONDS]  a progress line on stderr every SECONDS (default 5) and one at the\n"      \
  "                   end: messages and bytes in and out, rates, in flight, each input's lag\n"    \
  "  --stats-json[=SECONDS]  the same as one JSON object per line on stderr (messages_in,\n"       \
  "                   messages_out, bytes_in, bytes_out, inflight, lag: [{stream, shard,\n"        \
  "                   lag}], time; the last has \"final\": true; docs/delivery.md)\n"              \
  "  --metrics HOST:PORT  serve the same counters (by input and output, lag, errors by kind)\n"    \
  "                   at http://HOST:PORT/metrics in Prometheus' text format (docs/delivery.md)\n"

/* --stats[=SECONDS]: seconds, fractions allowed, into ms. */
static int parse_stats(const char *cmd, const char *opt, const char *s, uint64_t *ms) {
  if (s == NULL) {
    *ms = 5000;
    return 0;
  }
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || !(v > 0) || v > 1e6) {
    cli_error(cmd, "%s=%s: expected a positive number of seconds", opt, s);
    return EXIT_USAGE;
  }
  *ms = (uint64_t)(v * 1000 + 0.5);
  if (*ms == 0)
    *ms = 1;
  return 0;
}

static const char relay_help[] =
    "usage: seastreamer relay [options] IN_URI OUT_URI\n"
    "\n"
    "Moves messages from IN_URI to OUT_URI entirely in C: the input pauses while the output is\n"
    "full, and an input message is acknowledged (and its position committed, in resumable or\n"
    "load-balanced mode) only after the output confirmed it. Messages keep their stream key\n"
    "unless OUT_URI names one.\n"
    "\n"
    "options:\n"
    "  -I key=value     an option for the input (common: mode, group, start, reset, batch,\n"
    "                   stop_at_end, timeout; anything else goes to the backend)\n"
    "  -O key=value     an option for the output (max_inflight, max_inflight_bytes,\n"
    "                   max_payload; anything else goes to the backend)\n"
    "  -X key=value     the same as -I (as in run; consume's -X is its input's, produce's its\n"
    "                   output's: the side that talks to the URI's backend)\n"
    "  -o OFFSET        where the input starts: beginning|end|stored|N|-N|s@MS\n"
    "  -c COUNT         stop after COUNT messages (exactly those are committed)\n"
    "  --commit-interval MS  commit the input's position every MS ms (default 1000)\n"
    "  -e               stop when the input is caught up (stop_at_end=true)\n"
    "  -G GROUP         consume in a load-balanced group\n"
    "  --mode MODE      realtime|resumable|load-balanced\n"
    "  --keep-meta      keep the input's sequence numbers where the output can (stdio)\n"
    "  --exactly-once   Kafka to Kafka: each commit window is one transaction holding the\n"
    "                   output and the input's position (read it with\n"
    "                   isolation.level=read_committed; docs/delivery.md)\n"
    "  --transactional-id ID  with --exactly-once: the producer's transactional.id (default:\n"
    "                   derived from the group and topics, and the host if "
    "load-balanced)\n" LOG_HELP STATS_HELP;

static const char consume_help[] =
    "usage: seastreamer consume [options] URI\n"
    "\n"
    "Prints the messages of URI on stdout, one per line, as [timestamp | key | seq] payload\n"
    "(milliseconds, UTC; [timestamp | key | seq | shard] when the shard is not 0). In a group\n"
    "(-G, --mode resumable) a message is acknowledged and its position committed only once its\n"
    "line was written to stdout (docs/delivery.md). A reader that goes away (| head) ends it\n"
    "with status 0 after committing what was written whole.\n"
    "Options follow kcat where they fit.\n"
    "\n"
    "options:\n"
    "  -o OFFSET        beginning|end|stored|N|-N|s@MS  (where to start; default: end;\n"
    "                   stored: the group's committed position, with -G or --mode resumable)\n"
    "  -p N             read only shard (Kafka partition) N of each stream key (not with a\n"
    "                   load-balanced group: its members are given their shards)\n"
    "  -c COUNT         exit after COUNT messages (exactly those are committed)\n"
    "  --commit-interval MS  commit the group's position every MS ms (default 1000)\n"
    "  -e               exit when caught up with the end\n"
    "  -G GROUP         consume in the load-balanced group GROUP\n"
    "  --mode MODE      realtime|resumable|load-balanced\n"
    "  -X key=value     a consumer option (common or backend)\n"
    "  -O key=value     an option of the stdout side (max_payload: the largest payload it\n"
    "                   prints, default 8 MiB; template, format, ...)\n"
    "  -J               one JSON object per message; a payload or key that is not valid\n"
    "                   UTF-8 goes in payload_b64 / key_b64 (base64) instead\n"
    "  -f FORMAT        kcat-style format: %s payload, %k key, %K key length (-1: none),\n"
    "                   %t stream key, %p shard, %o seq, %T timestamp (ms), %S payload size,\n"
    "                   %R payload size as 4 bytes big-endian, %h headers, \\n \\t \\\\\n"
    "                   (-f wins over -K and -D, as in kcat)\n"
    "  -K DELIM         print key DELIM payload, one message per line\n"
    "  -D DELIM         end each message with DELIM instead of a newline (one byte: a\n"
    "                   character, \\n \\r \\t \\\\ or \\xNN; a payload holding it is an error)\n"
    "  -Z               print a key that is not set as NULL (a Kafka NULL payload reads as\n"
    "                   empty: SeaStreamer's messages always have a payload)\n"
    "  -u               unbuffered: write each message out as soon as it is printed\n" LOG_HELP
        STATS_HELP;

static const char produce_help[] =
    "usage: seastreamer produce [options] URI\n"
    "\n"
    "Sends each line of stdin as one message to URI's stream key. A line may start with a\n"
    "stdio header block, [timestamp | key | seq | shard], whose key then picks the stream.\n"
    "Prints nothing but errors; exits when stdin ends and every message is confirmed.\n"
    "\n"
    "options:\n"
    "  -k KEY           the message key (Kafka) of every message\n"
    "  -K DELIM         each line is KEY DELIM PAYLOAD, cut at the first DELIM (a line without\n"
    "                   it has no key); the key wins over -k. Needs a backend with keys (kafka)\n"
    "  -H name=value    a header on every message (repeatable; kafka)\n"
    "  -p N             send every message to partition N (kafka; redis spreads over shards\n"
    "                   with -X shards=N)\n"
    "  -D DELIM         messages end at DELIM instead of a newline (one byte, as consume -D)\n"
    "  -Z               an empty line is a NULL payload (kafka: a tombstone)\n"
    "  -X key=value     a producer option (common or backend)\n"
    "  -I key=value     an option for the stdin reader (e.g. malformed=pass)\n" LOG_HELP STATS_HELP;

typedef enum { KIND_RELAY, KIND_CONSUME, KIND_PRODUCE } kind_t;

/* kcat's flags as given, applied once the command's other options are known. */
typedef struct kcat {
  const char *key_delim, *delim;
  int64_t partition;
  int quiet, verbose;
  bool null, unbuffered;
} kcat_t;

/* One of -K -H -p -q -v -Z -D -u: checked here, applied by kcat_apply. */
static int kcat_option(job_t *j, kcat_t *k, int c, const char *arg) {
  char *end;
  switch (c) {
  case 'K':
  case 'D':
    if (arg[0] == '\0') {
      cli_error(j->cmd, "-%c '': the %sdelimiter is empty", c, c == 'K' ? "key " : "");
      return EXIT_USAGE;
    }
    *(c == 'K' ? &k->key_delim : &k->delim) = arg;
    return 0;
  case 'H': {
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg) {
      cli_error(j->cmd, "-H %s: expected name=value (a header's name, '=', its value)", arg);
      return EXIT_USAGE;
    }
    sea_kv_t *h = &j->headers[j->cfg.header_count++];
    h->name = arg;
    h->name_len = (size_t)(eq - arg);
    h->value = (const uint8_t *)eq + 1;
    h->value_len = strlen(eq + 1);
    return 0;
  }
  case 'p': {
    long long v = strtoll(arg, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || v > INT32_MAX) {
      cli_error(j->cmd, "-p %s: expected a partition (shard) number, 0 or more", arg);
      return EXIT_USAGE;
    }
    k->partition = v;
    return 0;
  }
  case 'q':
    k->quiet = 1;
    return 0;
  case 'v':
    k->verbose++;
    return 0;
  case 'Z':
    k->null = true;
    return 0;
  case 'u':
    k->unbuffered = true;
    return 0;
  }
  return 0;
}

/* Put kcat's flags where they act: the stdio side's options (key_delimiter, delimiter, empty,
 * null, unbuffered), the relay (headers), the log level, the shard. */
static int kcat_apply(job_t *j, kcat_t *k, kind_t kind, const char *uri) {
  const char *only = NULL;
  if (kind == KIND_RELAY && (k->key_delim || k->delim || k->partition >= 0 || k->null ||
                             k->unbuffered || j->cfg.header_count))
    only = "-K, -D, -H, -p, -Z and -u are for consume and produce (relay has no stdin/stdout)";
  else if (kind == KIND_CONSUME && j->cfg.header_count)
    only = "-H adds headers to produced messages; consume does not produce";
  else if (kind == KIND_PRODUCE && k->unbuffered)
    only = "-u makes consume's output unbuffered; produce writes nothing to stdout";
  else if (k->quiet && k->verbose)
    only = "-q and -v contradict each other";
  if (only) {
    cli_error(j->cmd, "%s", only);
    return EXIT_USAGE;
  }
  /* -q: errors only (no end-of-stream or progress notices); -v info, -vv debug. Before the
   * runtime exists, so the level holds from the first line. */
  if (k->quiet)
    setenv("SEASTREAMER_LOG", "error", 1);
  else if (k->verbose)
    setenv("SEASTREAMER_LOG", k->verbose > 1 ? "debug" : "info", 1);
  /* consume prints with a stdio producer; produce reads with a stdio consumer. */
  sea_options_t *stdio_side = kind == KIND_CONSUME ? j->out_opts : j->in_opts;
  if (k->key_delim)
    sea_options_set(stdio_side, "key_delimiter", k->key_delim);
  if (k->delim)
    sea_options_set(stdio_side, "delimiter", k->delim);
  if (k->null)
    sea_options_set(stdio_side, kind == KIND_CONSUME ? "null" : "empty",
                    kind == KIND_CONSUME ? "NULL" : "null");
  if (k->unbuffered)
    sea_options_set(stdio_side, "unbuffered", "true");
  j->empty_null = kind == KIND_PRODUCE && k->null;
  j->cfg.headers = j->headers;
  if (k->partition < 0)
    return 0;
  if (kind == KIND_PRODUCE) {
    if (strncmp(uri, "kafka://", 8) != 0) {
      cli_error(j->cmd,
                "-p %lld: only kafka sends to a chosen partition (redis spreads messages over "
                "shards with -X shards=N; file takes a line's shard from its header block, "
                "[timestamp | key | seq | shard])",
                (long long)k->partition);
      return EXIT_USAGE;
    }
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)k->partition);
    sea_options_set(j->out_opts, "partition", num);
    return 0;
  }
  const char *mode = sea_options_get(j->in_opts, "mode");
  if (mode && strcmp(mode, "load-balanced") == 0) {
    cli_error(j->cmd,
              "-p %lld: a load-balanced group (-G) is given its shards; read one shard "
              "with --mode resumable or without a group",
              (long long)k->partition);
    return EXIT_USAGE;
  }
  j->partition = k->partition;
  return 0;
}

static int parse_count(const char *cmd, const char *opt, const char *s, uint64_t *out) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*s == '\0' || *s == '-' || *end != '\0') {
    cli_error(cmd, "%s %s: expected a number", opt, s);
    return EXIT_USAGE;
  }
  *out = v;
  return 0;
}

static int run(kind_t kind, int argc, char **argv) {
  static const char *const names[] = {"relay", "consume", "produce"};
  static const char *const helps[] = {relay_help, consume_help, produce_help};
  static const struct option longopts[] = {{"mode", required_argument, NULL, OPT_MODE},
                                           {"keep-meta", no_argument, NULL, 'M'},
                                           {"commit-interval", required_argument, NULL, OPT_COMMIT},
                                           {"exactly-once", no_argument, NULL, OPT_EOS},
                                           {"transactional-id", required_argument, NULL, OPT_TXID},
                                           {"stats", optional_argument, NULL, OPT_STATS},
                                           {"stats-json", optional_argument, NULL, OPT_STATS_JSON},
                                           {"metrics", required_argument, NULL, OPT_METRICS},
                                           {"help", no_argument, NULL, OPT_HELP},
                                           {NULL, 0, NULL, 0}};
  job_t j;
  memset(&j, 0, sizeof j);
  j.cmd = names[kind];
  j.in_opts = sea_options_new();
  j.out_opts = sea_options_new();
  if (j.in_opts == NULL || j.out_opts == NULL)
    return EXIT_STREAM;
  /* The options a consumer takes land on the consuming side, the producer's on the other. */
  sea_options_t *consumer_side = j.in_opts;
  sea_options_t *producer_side = j.out_opts;
  sea_options_t *x_side = kind == KIND_PRODUCE ? producer_side : consumer_side;
  bool json = false;
  const char *format = NULL;
  kcat_t kc = {.partition = -1};
  j.partition = -1;
  j.headers = calloc((size_t)argc, sizeof *j.headers);
  if (j.headers == NULL)
    return EXIT_STREAM;
  int c, rc = 0;
  optind = 1;
  opterr = 0;
  while (rc == 0 &&
         (c = getopt_long(argc, argv, ":I:O:X:o:c:eG:k:Jf:MhK:H:p:qvZD:u", longopts, NULL)) != -1) {
    if (c > 0 && c < 128 && strchr("KHpqvZDu", c) != NULL) { /* not the long options' codes */
      rc = kcat_option(&j, &kc, c, optarg);
      continue;
    }
    switch (c) {
    case 'I':
      rc = cli_option(j.cmd, consumer_side, optarg);
      break;
    case 'O':
      rc = cli_option(j.cmd, producer_side, optarg);
      break;
    case 'X':
      rc = cli_option(j.cmd, x_side, optarg);
      break;
    case 'o':
      sea_options_set(consumer_side, "start", optarg);
      break;
    case 'c':
      rc = parse_count(j.cmd, "-c", optarg, &j.cfg.max_count);
      break;
    case 'e':
      sea_options_set(consumer_side, "stop_at_end", "true");
      break;
    case 'G':
      sea_options_set(consumer_side, "group", optarg);
      if (sea_options_get(consumer_side, "mode") == NULL)
        sea_options_set(consumer_side, "mode", "load-balanced");
      break;
    case OPT_MODE:
      sea_options_set(consumer_side, "mode", optarg);
      break;
    case 'k':
      j.cfg.message_key = optarg;
      break;
    case 'J':
      json = true;
      break;
    case 'f':
      format = optarg;
      break;
    case 'M':
      j.cfg.keep_meta = 1;
      break;
    case OPT_COMMIT:
      rc = parse_count(j.cmd, "--commit-interval", optarg, &j.cfg.commit_interval_ms);
      if (rc == 0 && j.cfg.commit_interval_ms == 0) {
        cli_error(j.cmd, "--commit-interval 0: expected a positive number of milliseconds");
        rc = EXIT_USAGE;
      }
      break;
    case OPT_EOS:
    case OPT_TXID:
      if (kind != KIND_RELAY) {
        cli_error(j.cmd, "--%s is for relay and run (Kafka to Kafka)",
                  c == OPT_EOS ? "exactly-once" : "transactional-id");
        rc = EXIT_USAGE;
        break;
      }
      if (c == OPT_EOS)
        j.cfg.exactly_once = 1;
      else
        j.cfg.transactional_id = optarg;
      break;
    case OPT_STATS:
    case OPT_STATS_JSON:
      rc = parse_stats(j.cmd, c == OPT_STATS ? "--stats" : "--stats-json", optarg, &j.stats_ms);
      j.stats_flags = c == OPT_STATS_JSON ? SEA_STATS_JSON : 0;
      break;
    case OPT_METRICS:
      j.metrics_addr = optarg;
      break;
    case 'h':
    case OPT_HELP:
      fputs(helps[kind], stdout);
      sea_options_free(j.in_opts);
      sea_options_free(j.out_opts);
      free(j.headers);
      return EXIT_OK;
    case ':':
      cli_error(j.cmd, "option -%c needs a value (see --help)", optopt);
      rc = EXIT_USAGE;
      break;
    default:
      if (optopt)
        cli_error(j.cmd, "unknown option -%c (see --help)", optopt);
      else
        cli_error(j.cmd, "unknown option '%s' (see --help)", argv[optind - 1]);
      rc = EXIT_USAGE;
    }
  }
  int want = kind == KIND_RELAY ? 2 : 1;
  if (rc == 0 && argc - optind > want) {
    cli_error(j.cmd, "unexpected argument '%s' after %s (see --help)", argv[optind + want],
              kind == KIND_RELAY ? "IN_URI OUT_URI" : "the URI");
    rc = EXIT_USAGE;
  } else if (rc == 0 && argc - optind != want) {
    cli_error(j.cmd, "expected %s (see --help)", kind == KIND_RELAY ? "IN_URI OUT_URI" : "URI");
    rc = EXIT_USAGE;
  }
  if (rc == 0 && j.cfg.transactional_id && !j.cfg.exactly_once) {
    cli_error(j.cmd, "--transactional-id is for --exactly-once");
    rc = EXIT_USAGE;
  }
  if (rc == 0 && kind != KIND_PRODUCE && j.cfg.message_key) {
    cli_error(j.cmd, "-k sets the message key of produced messages; %s does not produce", j.cmd);
    rc = EXIT_USAGE;
  }
  if (rc == 0)
    rc = kcat_apply(&j, &kc, kind, argv[optind]);
  if (rc != 0) {
    sea_options_free(j.in_opts);
    sea_options_free(j.out_opts);
    free(j.headers);
    return rc;
  }
  switch (kind) {
  case KIND_RELAY:
    j.in_uri = argv[optind];
    j.out_uri = argv[optind + 1];
    break;
  case KIND_CONSUME:
    j.in_uri = argv[optind];
    j.out_uri = "stdio://";
    j.cfg.keep_meta = 1; /* print the input's own sequence numbers */
    j.cfg.keep_stream_key = 1;
    if (format)
      sea_options_set(producer_side, "template", format);
    else if (json)
      sea_options_set(producer_side, "format", "json");
    break;
  case KIND_PRODUCE:
    j.in_uri = "stdio://";
    j.out_uri = argv[optind];
    j.cfg.keep_stream_key = 1; /* a header block's key picks the stream */
    break;
  }
  if (kind != KIND_CONSUME && (json || format)) {
    cli_error(j.cmd, "-J and -f format what consume prints");
    sea_options_free(j.in_opts);
    sea_options_free(j.out_opts);
    free(j.headers);
    return EXIT_USAGE;
  }
  return run_job(&j);
}

int cmd_relay(int argc, char **argv) {
  return run(KIND_RELAY, argc, argv);
}
int cmd_consume(int argc, char **argv) {
  return run(KIND_CONSUME, argc, argv);
}
int cmd_produce(int argc, char **argv) {
  return run(KIND_PRODUCE, argc, argv);
}
