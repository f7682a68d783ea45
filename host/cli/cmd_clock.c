/* cmd_clock.c: `seastreamer clock`: a message source for demos and tests, a tick at an interval
 * sent through any producer URI (stdout by default). */
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli.h"

typedef struct clock_job {
  sea_runtime_t *rt;
  sea_producer_t *p;
  uv_timer_t timer;
  uv_signal_t sigs[2];
  uint64_t count, sent, confirmed;
  int status;
  char errmsg[1024];
  bool ending;
} clock_job_t;

static const char clock_help[] =
    "usage: seastreamer clock [options] [URI]\n"
    "\n"
    "Sends \"tick N\" to URI (default stdio:///clock, i.e. stdout) every interval.\n"
    "\n"
    "options:\n"
    "  -i MS            interval in milliseconds (default 1000; 0 = as fast as possible)\n"
    "  -c, --count COUNT  stop after COUNT ticks (default: never; -n is the same)\n"
    "  -X key=value     a producer option\n";

/* The end: the clock's own handles close, and the loop stops, for a backend may keep handles of
 * its own open (redis: its connection) until the producer and streamer are closed. */
static void close_handles(clock_job_t *j) {
  uv_close((uv_handle_t *)&j->timer, NULL);
  for (int i = 0; i < 2; i++)
    uv_close((uv_handle_t *)&j->sigs[i], NULL);
  sea_runtime_stop(j->rt);
}

static void on_end(void *data, int status) {
  clock_job_t *j = data;
  if (status != 0 && j->status == 0) {
    j->status = status;
    snprintf(j->errmsg, sizeof j->errmsg, "%s", sea_producer_errmsg(j->p));
  }
  close_handles(j);
}

static void finish(clock_job_t *j) {
  if (j->ending)
    return;
  j->ending = true;
  uv_timer_stop(&j->timer);
  if (sea_producer_end(j->p, on_end, j) != 0) {
    if (j->status == 0) {
      j->status = sea_producer_error(j->p) ? sea_producer_error(j->p) : SEA_EIO;
      snprintf(j->errmsg, sizeof j->errmsg, "%s", sea_producer_errmsg(j->p));
    }
    close_handles(j);
  }
}

/* SIGINT or SIGTERM: stop ticking and end the stream cleanly (every tick written whole). */
static void on_signal(uv_signal_t *h, int signum) {
  finish(h->data);
}

static void tick(uv_timer_t *t) {
  clock_job_t *j = t->data;
  char buf[64];
  if (j->count && j->sent >= j->count) {
    finish(j);
    return;
  }
  int n = snprintf(buf, sizeof buf, "tick %llu", (unsigned long long)j->sent);
  int rc = sea_producer_send_bytes(j->p, NULL, buf, (size_t)n, NULL);
  if (rc == SEA_EAGAIN) {
    uv_timer_stop(t); /* the drain callback restarts the clock */
    return;
  }
  if (rc != 0) {
    j->status = rc;
    snprintf(j->errmsg, sizeof j->errmsg, "%s", sea_producer_errmsg(j->p));
    finish(j);
    return;
  }
  j->sent++;
  if (j->count && j->sent >= j->count)
    finish(j);
}

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  clock_job_t *j = sea_producer_get_data(p);
  if (status == 0) {
    j->confirmed++;
  } else if (j->status == 0 && status != SEA_ECANCELED) {
    j->status = status;
    snprintf(j->errmsg, sizeof j->errmsg, "%s", sea_producer_errmsg(p));
    finish(j);
  }
}

static void on_drain(sea_producer_t *p) {
  clock_job_t *j = sea_producer_get_data(p);
  if (!j->ending)
    uv_timer_again(&j->timer);
}

int cmd_clock(int argc, char **argv) {
  static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                           {"count", required_argument, NULL, 'c'},
                                           {NULL, 0, NULL, 0}};
  clock_job_t j;
  memset(&j, 0, sizeof j);
  uint64_t interval = 1000;
  sea_options_t *opts = sea_options_new();
  int c, rc = 0;
  optind = 1;
  opterr = 0;
  while (rc == 0 && (c = getopt_long(argc, argv, ":i:n:c:X:h", longopts, NULL)) != -1) {
    char *end = NULL;
    switch (c) {
    case 'i':
      interval = strtoull(optarg, &end, 10);
      if (*optarg == '\0' || *optarg == '-' || *end != '\0') {
        cli_error("clock", "-i %s: expected milliseconds", optarg);
        rc = EXIT_USAGE;
      }
      break;
    case 'n': /* the older name of -c (count, as in consume and run) */
    case 'c':
      j.count = strtoull(optarg, &end, 10);
      if (*optarg == '\0' || *optarg == '-' || *end != '\0') {
        cli_error("clock", "-%c %s: expected a count", c, optarg);
        rc = EXIT_USAGE;
      }
      break;
    case 'X':
      rc = cli_option("clock", opts, optarg);
      break;
    case 'h':
      fputs(clock_help, stdout);
      sea_options_free(opts);
      return EXIT_OK;
    case ':':
      cli_error("clock", "option -%c needs a value", optopt);
      rc = EXIT_USAGE;
      break;
    default:
      cli_error("clock", "unknown option '%s' (see --help)", argv[optind - 1]);
      rc = EXIT_USAGE;
    }
  }
  if (rc == 0 && argc - optind > 1) {
    cli_error("clock", "expected at most one URI");
    rc = EXIT_USAGE;
  }
  if (rc != 0) {
    sea_options_free(opts);
    return rc;
  }
  const char *uri = optind < argc ? argv[optind] : "stdio:///clock";
  sea_streamer_t *s = NULL;
  if ((rc = sea_runtime_new(&j.rt)) != 0) {
    sea_options_free(opts);
    return EXIT_STREAM;
  }
  if ((rc = sea_connect(j.rt, uri, opts, &s)) != 0 ||
      (rc = sea_producer_open(s, NULL, &j.p)) != 0) {
    cli_error("clock", "%s", sea_runtime_errmsg(j.rt));
  } else if (sea_producer_anchored(j.p) == NULL) {
    cli_error("clock", "URI '%s' names no stream key to tick on", uri);
    rc = SEA_EKEY;
  } else {
    sea_producer_set_data(j.p, &j);
    sea_producer_set_callbacks(j.p, on_receipt, on_drain);
    uv_timer_init(sea_runtime_uv_loop(j.rt), &j.timer);
    j.timer.data = &j;
    uv_timer_start(&j.timer, tick, 0, interval ? interval : 0);
    int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
      uv_signal_init(sea_runtime_uv_loop(j.rt), &j.sigs[i]);
      j.sigs[i].data = &j;
      uv_signal_start_oneshot(&j.sigs[i], on_signal, signums[i]);
    }
    if (interval == 0)
      uv_timer_set_repeat(&j.timer, 1); /* libuv's floor: a tick per millisecond at most */
    sea_runtime_run(j.rt, SEA_RUN_DEFAULT);
    rc = j.status;
    if (rc == SEA_EPIPE && strncmp(uri, "stdio:", 6) == 0)
      rc = 0; /* the reader of stdout went away (`| head`): stopping is what it asked for */
    if (rc != 0)
      cli_error("clock", "%s", j.errmsg[0] ? j.errmsg : sea_strerror(rc));
  }
  if (j.p)
    sea_producer_close(j.p);
  if (s)
    sea_streamer_close(s);
  sea_runtime_free(j.rt);
  sea_options_free(opts);
  return cli_exit_for(rc);
}
