/* file_bench.c: the file backend's benchmark (run by bench/file): write N messages of 100 bytes
 * over 8 keys to a .ss file through the public API, read them all back, then seek to random
 * timestamps and time each seek until its first message arrives. Prints what it measured. */
#include <seastreamer/seastreamer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static sea_runtime_t *rt;
static uint64_t receipts, received, bad, want_ts;
static int done, ended, drained, seek_hit, seek_done;
static int64_t first_ts_seen;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  if (status == 0)
    receipts++;
  else
    bad++;
}
static void on_drain(sea_producer_t *p) {
  drained = 1;
}
static void on_done(void *data, int status) {
  *(int *)data = status == 0 ? 1 : -1;
}
static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  received += b->count;
  if (b->count > 0 && b->msgs[0].payload.len != 100)
    bad++;
}
static void on_end(sea_consumer_t *c, int status) {
  ended = status == SEA_EOF ? 1 : -1;
  if (status != SEA_EOF)
    fprintf(stderr, "consumer ended: %s\n", sea_consumer_errmsg(c));
}
static void on_seek_batch(sea_consumer_t *c, const sea_batch_t *b) {
  if (b->count > 0) {
    first_ts_seen = b->msgs[0].meta.timestamp_us;
    seek_hit = 1;
    sea_consumer_pause(c);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: file_bench PATH COUNT [SEEKS]\n");
    return 2;
  }
  const char *path = argv[1];
  uint64_t n = strtoull(argv[2], NULL, 10);
  int seeks = argc > 3 ? atoi(argv[3]) : 1000;
  static const char *const keys[8] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"};
  const int64_t base_ms = 1700000000000;
  char uri[4096];
  sea_streamer_t *s;
  sea_options_t *o = sea_options_new();
  sea_options_set(o, "max_inflight", "1000000");
  sea_options_set(o, "max_inflight_bytes", "1000000000");
  sea_options_set(o, "create", "new");
  sea_runtime_new(&rt);
  snprintf(uri, sizeof uri, "file://%s", path);
  if (sea_connect(rt, uri, NULL, &s) != 0) {
    fprintf(stderr, "%s\n", sea_runtime_errmsg(rt));
    return 1;
  }

  /* 1. Write. Message i has timestamp base + i/16 ms, so time grows through the file. */
  sea_producer_t *p;
  if (sea_producer_open(s, o, &p) != 0) {
    fprintf(stderr, "%s\n", sea_runtime_errmsg(rt));
    return 1;
  }
  sea_producer_set_callbacks(p, on_receipt, on_drain);
  uint8_t payload[100];
  memset(payload, 'x', sizeof payload);
  double t0 = now_s();
  for (uint64_t i = 0; i < n;) {
    sea_message_t m;
    memset(&m, 0, sizeof m);
    m.meta.stream_key = keys[i % 8];
    m.meta.timestamp_us = (base_ms + (int64_t)(i / 16)) * 1000;
    memcpy(payload, &i, sizeof i);
    m.payload.data = payload;
    m.payload.len = sizeof payload;
    int rc = sea_producer_send(p, &m, NULL);
    if (rc == SEA_EAGAIN) {
      drained = 0;
      while (!drained)
        sea_runtime_run(rt, SEA_RUN_ONCE);
      continue;
    }
    if (rc != 0) {
      fprintf(stderr, "send: %s\n", sea_producer_errmsg(p));
      return 1;
    }
    i++;
    if ((i & 0xffff) == 0)
      sea_runtime_run(rt, SEA_RUN_NOWAIT);
  }
  sea_producer_flush(p, on_done, &done);
  while (!done)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  double t1 = now_s();
  sea_producer_close(p);
  struct stat st;
  stat(path, &st);
  if (receipts != n || bad) {
    fprintf(stderr, "write: %llu receipts for %llu messages\n", (unsigned long long)receipts,
            (unsigned long long)n);
    return 1;
  }
  printf("write: %llu messages of 100 bytes over 8 keys in %.2f s: %.0f msgs/s (file %.2f GiB)\n",
         (unsigned long long)n, t1 - t0, (double)n / (t1 - t0),
         (double)st.st_size / (1024.0 * 1024 * 1024));
  fflush(stdout);

  /* 2. Read everything back. */
  sea_options_t *co = sea_options_new();
  sea_options_set(co, "start", "beginning");
  sea_options_set(co, "stop_at_end", "true");
  sea_consumer_t *c;
  if (sea_consumer_open(s, co, &c) != 0) {
    fprintf(stderr, "%s\n", sea_runtime_errmsg(rt));
    return 1;
  }
  t0 = now_s();
  sea_consumer_start(c, on_batch, on_end);
  while (!ended)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  t1 = now_s();
  sea_consumer_close(c);
  if (received != n || ended != 1 || bad) {
    fprintf(stderr, "read: %llu of %llu messages\n", (unsigned long long)received,
            (unsigned long long)n);
    return 1;
  }
  printf("read:  %llu messages in %.2f s: %.0f msgs/s\n", (unsigned long long)n, t1 - t0,
         (double)n / (t1 - t0));
  fflush(stdout);

  /* 3. Random seeks: from the seek call until the first message after the target arrives. */
  sea_options_set(co, "batch", "1");
  sea_options_set(co, "stop_at_end", "false");
  if (sea_consumer_open(s, co, &c) != 0) {
    fprintf(stderr, "%s\n", sea_runtime_errmsg(rt));
    return 1;
  }
  sea_consumer_start(c, on_seek_batch, on_end);
  sea_consumer_pause(c);
  double *lat = calloc((size_t)seeks, sizeof *lat);
  uint64_t span = n / 16;
  srand(42);
  int wrong = 0;
  for (int i = 0; i < seeks; i++) {
    int64_t target = base_ms + (int64_t)((uint64_t)rand() % (span - 1));
    seek_hit = 0;
    seek_done = 0;
    t0 = now_s();
    sea_consumer_seek(c, target * 1000, on_done, &seek_done);
    sea_consumer_resume(c);
    while (!seek_hit && ended == 1)
      sea_runtime_run(rt, SEA_RUN_ONCE);
    lat[i] = now_s() - t0;
    while (!seek_done)
      sea_runtime_run(rt, SEA_RUN_ONCE);
    if (first_ts_seen != (target + 1) * 1000)
      wrong++;
  }
  qsort(lat, (size_t)seeks, sizeof *lat, cmp_double);
  printf("seek:  %d random timestamps: median %.3f ms, worst %.3f ms (%d landed wrong)\n", seeks,
         lat[seeks / 2] * 1e3, lat[seeks - 1] * 1e3, wrong);
  sea_consumer_close(c);
  free(lat);
  sea_options_free(co);
  sea_options_free(o);
  sea_streamer_close(s);
  sea_runtime_free(rt);
  return wrong ? 1 : 0;
}
