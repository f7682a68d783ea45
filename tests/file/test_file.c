/* test_file.c: the file:// backend through the public API: write, append, replay, follow, seek,
 * rewind, EOS, torn tails, damage, size limit, resumable groups, options and URIs. */
#include <fcntl.h>
#include <seastreamer/seastreamer.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ss_codec.h"
#include "test.h"
#include "test_opts.h"

SEA_PLUGIN_ENTRY_DECL(file);

static char dir[256];
static sea_runtime_t *rt;

typedef struct got {
  int n, ended, end_status, receipts, receipt_errors, done, done_status;
  char keys[4096][16];
  uint64_t seqs[4096], shards[4096];
  int64_t ts[4096];
  char payloads[4096][24];
  uint64_t last_pos;
  int ack;
  int pause_at;  /* pause the consumer from its callback once this many arrived */
  int rewind_at; /* rewind it to seq 1 from its callback once this many arrived (once) */
  char endmsg[512];
} got_t;

static void path_of(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

#define opts(...) TEST_OPTS(__VA_ARGS__)

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  got_t *g = sea_producer_get_data(p);
  if (status == 0)
    g->receipts++;
  else
    g->receipt_errors++;
}

static void on_done(void *data, int status) {
  got_t *g = data;
  g->done++;
  g->done_status = status;
}

static void on_batch(sea_consumer_t *c, const sea_batch_t *b) {
  got_t *g = sea_consumer_get_data(c);
  for (size_t i = 0; i < b->count; i++) {
    const sea_message_t *m = &b->msgs[i];
    if (g->n < 4096) {
      snprintf(g->keys[g->n], 16, "%s", m->meta.stream_key);
      g->seqs[g->n] = m->meta.seq;
      g->shards[g->n] = m->meta.shard_id;
      g->ts[g->n] = m->meta.timestamp_us;
      snprintf(g->payloads[g->n], 24, "%.*s", (int)m->payload.len, (const char *)m->payload.data);
    }
    g->n++;
    if (g->ack)
      sea_consumer_ack(c, m);
  }
  if (g->pause_at && g->n >= g->pause_at)
    sea_consumer_pause(c);
  if (g->rewind_at && g->n >= g->rewind_at) {
    g->rewind_at = 0;
    CHECK_EQ_INT(sea_consumer_rewind(c, (sea_pos_t){.kind = SEA_POS_AT, .seq = 1}, NULL, NULL), 0);
  }
}

static void on_end(sea_consumer_t *c, int status) {
  got_t *g = sea_consumer_get_data(c);
  g->ended = 1;
  g->end_status = status;
  snprintf(g->endmsg, sizeof g->endmsg, "%s", sea_consumer_errmsg(c));
}

static const uint8_t *big_data;
static size_t big_len;
static int big_seen, big_ok;

static void on_big_batch(sea_consumer_t *c, const sea_batch_t *b) {
  for (size_t i = 0; i < b->count; i++) {
    const sea_message_t *m = &b->msgs[i];
    if (big_seen == 0 && m->payload.len == big_len &&
        memcmp(m->payload.data, big_data, big_len) == 0 && strcmp(m->meta.stream_key, "blob") == 0)
      big_ok++;
    if (big_seen == 1 && m->payload.len == 0 && m->meta.seq == 2)
      big_ok++;
    big_seen++;
  }
}

/* Turn the loop until *flag is set (a bound on turns, not on time). */
static void run_until(int *flag) {
  for (int i = 0; i < 200000 && !*flag; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

static void run_until_n(got_t *g, int n) {
  for (int i = 0; i < 200000 && g->n < n && !g->ended; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

/* Send count messages "<key>-<i>" to the keys in turn, with timestamps ts0 + i ms (ts0 0: now). */
static int produce(const char *uri, const sea_options_t *o, const char *const *keys, int nkeys,
                   int count, int64_t ts0_ms, int end) {
  sea_streamer_t *s;
  sea_producer_t *p;
  got_t g = {0};
  if (sea_connect(rt, uri, NULL, &s) != 0) {
    fprintf(stderr, "connect %s: %s\n", uri, sea_runtime_errmsg(rt));
    return -1;
  }
  if (sea_producer_open(s, o, &p) != 0) {
    fprintf(stderr, "open %s: %s\n", uri, sea_runtime_errmsg(rt));
    sea_streamer_close(s);
    return -1;
  }
  sea_producer_set_data(p, &g);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  for (int i = 0; i < count; i++) {
    char buf[64];
    sea_message_t m;
    memset(&m, 0, sizeof m);
    m.meta.stream_key = keys[i % nkeys];
    m.meta.timestamp_us = ts0_ms ? (ts0_ms + i) * 1000 : 0;
    int n = snprintf(buf, sizeof buf, "%s-%d", keys[i % nkeys], i);
    m.payload.data = (const uint8_t *)buf;
    m.payload.len = (size_t)n;
    int rc = sea_producer_send(p, &m, NULL);
    if (rc != 0) {
      fprintf(stderr, "send: %s\n", sea_producer_errmsg(p));
      break;
    }
  }
  if (end)
    sea_producer_end(p, on_done, &g);
  else
    sea_producer_flush(p, on_done, &g);
  run_until(&g.done);
  CHECK_EQ_INT(g.done_status, 0);
  sea_producer_close(p);
  sea_streamer_close(s);
  return g.receipts;
}

/* Consume uri with options until the consumer ends (a stop_at_end run), into g as the caller set
 * it up (ack, pause_at, rewind_at). */
static void consume_into(const char *uri, const sea_options_t *o, got_t *g) {
  sea_streamer_t *s;
  sea_consumer_t *c;
  if (sea_connect(rt, uri, NULL, &s) != 0) {
    g->end_status = -999;
    return;
  }
  if (sea_consumer_open(s, o, &c) != 0) {
    fprintf(stderr, "consumer %s: %s\n", uri, sea_runtime_errmsg(rt));
    g->end_status = -998;
    sea_streamer_close(s);
    return;
  }
  sea_consumer_set_data(c, g);
  sea_consumer_start(c, on_batch, on_end);
  run_until(&g->ended);
  sea_streamer_close(s);
}

/* The same into a fresh g. */
static void consume_all(const char *uri, const sea_options_t *o, got_t *g) {
  memset(g, 0, sizeof *g);
  consume_into(uri, o, g);
}

static const char *const k3[] = {"alpha", "beta", "gamma"};

static void test_write_replay_append(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "a.ss");
  snprintf(uri, sizeof uri, "file://%s/alpha", path);
  sea_options_t *po = opts("beacon_interval=1024", NULL, NULL);
  CHECK_EQ_INT(produce(uri, po, k3, 3, 300, 1700000000000, 0), 300);

  got_t g;
  sea_options_t *co = opts("start=beginning", "stop_at_end=true", NULL);
  snprintf(uri, sizeof uri, "file://%s.ss", path); /* not a file: a.ss.ss does not exist */
  sea_streamer_t *s;
  sea_consumer_t *c;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK(sea_consumer_open(s, co, &c) != 0);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "cannot open");
  sea_streamer_close(s);

  snprintf(uri, sizeof uri, "file://%s", path); /* keyless: every key */
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(g.n, 300);
  CHECK_STR(g.keys[0], "alpha");
  CHECK_EQ_INT(g.seqs[0], 1);
  CHECK_STR(g.payloads[299], "gamma-299");
  CHECK_EQ_INT(g.seqs[299], 100);
  CHECK_EQ_INT(g.ts[5], (1700000000000 + 5) * 1000);

  snprintf(uri, sizeof uri, "file://%s/beta,gamma", path);
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.n, 200);
  CHECK_STR(g.keys[0], "beta");

  /* Append: seqs continue; end writes EOS. */
  snprintf(uri, sizeof uri, "file://%s/alpha", path);
  CHECK_EQ_INT(produce(uri, NULL, k3, 1, 10, 1700000001000, 1), 10);
  snprintf(uri, sizeof uri, "file://%s/alpha", path);
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.n, 110);
  CHECK_EQ_INT(g.seqs[109], 110);
  CHECK_EQ_INT(g.end_status, SEA_EOF); /* at the EOS */
  /* And appending again overwrites the EOS. */
  CHECK_EQ_INT(produce(uri, NULL, k3, 1, 1, 1700000002000, 0), 1);
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.n, 111);
  sea_options_free(co);
  sea_options_free(po);
}

static void test_seek_rewind(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "seek.ss");
  snprintf(uri, sizeof uri, "file://%s/alpha", path);
  sea_options_t *po = opts("beacon_interval=1024", NULL, NULL);
  CHECK_EQ_INT(produce(uri, po, k3, 3, 3000, 1700000000000, 0), 3000);
  sea_options_free(po);

  /* start=s@MS: strictly after, for every key. Message i has ts 1700000000000 + i. */
  sea_options_t *co = opts("start=s@1700000002000", "stop_at_end=true", NULL);
  snprintf(uri, sizeof uri, "file://%s", path);
  got_t g;
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(g.n, 999);
  CHECK_EQ_INT(g.ts[0], 1700000002001 * 1000);

  /* start=SEQ: at or after, for every key: seq 900 of each of the three keys onwards. */
  co = opts("start=900", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.n, 3 * 101);
  CHECK_EQ_INT(g.seqs[0], 900);
  CHECK_EQ_INT(g.seqs[1], 900);

  /* start=-N: the last N of every stream. */
  co = opts("start=-5", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(g.n, 15);
  CHECK_EQ_INT(g.seqs[0], 996);
  CHECK_EQ_INT(g.seqs[14], 1000);
  co = opts("start=-2000", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.n, 3000);
  snprintf(uri, sizeof uri, "file://%s/beta", path);
  co = opts("start=-400", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.n, 400);
  CHECK_EQ_INT(g.seqs[0], 601);
  snprintf(uri, sizeof uri, "file://%s", path);

  /* seek and rewind on a running consumer. */
  sea_streamer_t *s;
  sea_consumer_t *c;
  co = opts("start=beginning", "stop_at_end=true", "batch=10");
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_consumer_open(s, co, &c), 0);
  sea_options_free(co);
  memset(&g, 0, sizeof g);
  g.pause_at = 10;
  sea_consumer_set_data(c, &g);
  sea_consumer_start(c, on_batch, on_end);
  run_until_n(&g, 10);
  CHECK_EQ_INT(g.n, 10);
  g.pause_at = 0;
  got_t d = {0};
  CHECK_EQ_INT(sea_consumer_seek(c, 1700000000500ll * 1000, on_done, &d), 0);
  run_until(&d.done);
  CHECK_EQ_INT(d.done_status, 0);
  int before = g.n;
  g.pause_at = before + 1;
  sea_consumer_resume(c);
  run_until_n(&g, before + 1);
  CHECK_EQ_INT(g.ts[before], 1700000000501 * 1000);
  d.done = 0;
  sea_pos_t at = {SEA_POS_AT, 990};
  CHECK_EQ_INT(sea_consumer_rewind(c, at, on_done, &d), 0);
  run_until(&d.done);
  before = g.n;
  g.pause_at = before + 3;
  sea_consumer_resume(c);
  run_until_n(&g, before + 3);
  CHECK_EQ_INT(g.seqs[before], 990);
  CHECK_EQ_INT(g.seqs[before + 2], 990);
  d.done = 0;
  sea_pos_t beg = {SEA_POS_BEGINNING, 0};
  CHECK_EQ_INT(sea_consumer_rewind(c, beg, on_done, &d), 0);
  run_until(&d.done);
  before = g.n;
  g.pause_at = 0;
  sea_consumer_resume(c);
  run_until(&g.ended);
  CHECK_EQ_INT(g.seqs[before], 1);
  CHECK_EQ_INT(g.n - before, 3000);
  if (g.n - before != 3000)
    fprintf(stderr, "n=%d before=%d ended=%d status=%d %s\n", g.n, before, g.ended, g.end_status,
            sea_consumer_errmsg(c));
  sea_streamer_close(s);
}

/* A rewind from the callback of the batch that holds the last message (stop_at_end; with and
 * without the end-of-stream message): delivered again, then the end. The end that batch's read
 * met used to win: the rewind said done, and nothing came again. */
static void test_rewind_in_last_batch(void) {
  static const char *const key[] = {"k"};
  for (int eos = 0; eos < 2; eos++) {
    char path[512], uri[600];
    path_of(path, sizeof path, eos ? "rwl-eos.ss" : "rwl.ss");
    snprintf(uri, sizeof uri, "file://%s/k", path);
    CHECK_EQ_INT(produce(uri, NULL, key, 1, 5, 0, eos), 5);
    got_t g;
    memset(&g, 0, sizeof g);
    g.rewind_at = 5;
    sea_options_t *co = opts("start=beginning", "stop_at_end=true", "batch=3");
    consume_into(uri, co, &g);
    sea_options_free(co);
    CHECK_EQ_INT(g.end_status, SEA_EOF);
    CHECK_EQ_INT(g.n, 10);
    CHECK_EQ_INT(g.seqs[5], 1);
    CHECK_EQ_INT(g.seqs[9], 5);
  }
}

/* A stream silent for a long stretch that no beacon names (an interval of 1024 gives beacons one
 * marker, spec 6.6): start=-N, a named key's -N and a time seek still find its message. */
static void test_silent_stream(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "silent.ss");
  snprintf(uri, sizeof uri, "file://%s/busy", path);
  static const char *const busy[] = {"busy"}, *const rare[] = {"rare"};
  sea_options_t *po = opts("beacon_interval=1024", NULL, NULL);
  const int64_t t0 = 1700000000000;
  CHECK_EQ_INT(produce(uri, po, busy, 1, 1000, t0, 0), 1000);         /* ts t0 + 0..999 */
  CHECK_EQ_INT(produce(uri, po, rare, 1, 1, t0 + 10000, 0), 1);       /* ts t0 + 10000 */
  CHECK_EQ_INT(produce(uri, po, busy, 1, 1000, t0 + 1000, 0), 1000);  /* ts t0 + 1000.. */
  CHECK_EQ_INT(produce(uri, po, busy, 1, 1000, t0 + 20000, 0), 1000); /* ts t0 + 20000.. */
  sea_options_free(po);
  got_t g;
  snprintf(uri, sizeof uri, "file://%s", path);
  sea_options_t *co = opts("start=-1", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.n, 2);
  CHECK_STR(g.keys[0], "rare");
  CHECK_STR(g.keys[1], "busy");
  snprintf(uri, sizeof uri, "file://%s/rare", path);
  co = opts("start=-5", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.n, 1);
  CHECK_STR(g.keys[0], "rare");
  /* strictly after t0 + 5000: rare's one message and the last 1000 of busy */
  snprintf(uri, sizeof uri, "file://%s", path);
  char start[64];
  snprintf(start, sizeof start, "start=s@%lld", (long long)(t0 + 5000));
  co = opts(start, "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.n, 1001);
  CHECK_STR(g.keys[0], "rare");
  CHECK_EQ_INT(g.ts[1], (t0 + 20000) * 1000);
}

static void test_follow_and_delete(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "live.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  static const char *const k[] = {"k"};
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 5, 0, 0), 5);

  sea_streamer_t *s;
  sea_consumer_t *c;
  got_t g = {0};
  sea_options_t *co = opts("poll_interval=5", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_consumer_open(s, co, &c), 0); /* live: from the end */
  sea_options_free(co);
  sea_consumer_set_data(c, &g);
  sea_consumer_start(c, on_batch, on_end);
  for (int i = 0; i < 50; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(g.n, 0);
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 7, 0, 0), 7);
  run_until_n(&g, 7);
  CHECK_EQ_INT(g.n, 7);
  CHECK_EQ_INT(g.seqs[0], 6);
  unlink(path);
  run_until(&g.ended);
  CHECK_EQ_INT(g.end_status, SEA_EIO);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "was deleted");
  sea_streamer_close(s);
}

static void copy_file(const char *from, const char *to, long cut, long flip) {
  FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
  int ch;
  long i = 0;
  while ((ch = fgetc(a)) != EOF && (cut < 0 || i < cut)) {
    if (i == flip)
      ch ^= 0x01;
    fputc(ch, b);
    i++;
  }
  fclose(a);
  fclose(b);
}

static void test_damage(void) {
  char path[512], bad[512], uri[600];
  path_of(path, sizeof path, "a.ss"); /* from test_write_replay_append */
  path_of(bad, sizeof bad, "bad.ss");
  got_t g;
  sea_options_t *co = opts("start=beginning", "stop_at_end=true", NULL);
  /* Torn tail: the replay ends cleanly with the whole messages. */
  struct stat st;
  stat(path, &st);
  copy_file(path, bad, (long)st.st_size - 5, -1);
  snprintf(uri, sizeof uri, "file://%s", bad);
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(g.n, 310);
  /* Appending cuts the torn tail first. */
  static const char *const k[] = {"alpha"};
  snprintf(uri, sizeof uri, "file://%s/alpha", bad);
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 1, 0, 0), 1);
  snprintf(uri, sizeof uri, "file://%s", bad);
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(g.n, 311);
  CHECK_EQ_INT(g.seqs[310], 111); /* the cut alpha 111 is numbered again */

  /* A flipped payload byte in the third frame's payload (frames: 32 + 5 + len). */
  copy_file(path, bad, -1, 214 + 34 + 1); /* alpha-0 44 bytes, beta-1 42, gamma-2 at 214 */
  consume_all(uri, co, &g);
  CHECK_EQ_INT(g.end_status, SEA_EFORMAT);
  CHECK_EQ_INT(g.n, 2);
  /* skip: goes on at the next beacon. */
  sea_options_t *sk = opts("start=beginning", "stop_at_end=true", "on_damage=skip");
  consume_all(uri, sk, &g);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK(g.n > 200 && g.n < 310);
  sea_options_free(sk);

  /* Appending to a damaged file is refused with the offset. */
  sea_streamer_t *s;
  sea_producer_t *p;
  snprintf(uri, sizeof uri, "file://%s/alpha", bad);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), SEA_EFORMAT);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "offset 214: checksum mismatch");
  sea_streamer_close(s);
  sea_options_free(co);

  /* The consumer reports where. */
  snprintf(uri, sizeof uri, "file://%s", bad);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  sea_consumer_t *c;
  co = opts("start=beginning", "stop_at_end=true", NULL);
  CHECK_EQ_INT(sea_consumer_open(s, co, &c), 0);
  sea_options_free(co);
  memset(&g, 0, sizeof g);
  sea_consumer_set_data(c, &g);
  sea_consumer_start(c, on_batch, on_end);
  run_until(&g.ended);
  CHECK_CONTAINS(sea_consumer_errmsg(c), "offset 214: checksum mismatch");
  sea_streamer_close(s);
}

static void *test_realloc(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

/* A file whose second message has an empty stream key (the reference writes and reads one; a
 * SeaStreamer stream key is never empty): the consumer ends there with the offset, not dropping
 * it unseen; on_damage=skip skips it with a warning. */
static void test_empty_key(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "emptykey.ss");
  ss_header_t h;
  ss_header_init(&h, "emptykey.ss", 1700000000000ull, 1024);
  ss_buf_t out = {.realloc = test_realloc};
  CHECK_EQ_INT(ss_buf_reserve(&out, SS_HEADER_SIZE), 0);
  ss_header_encode(&h, out.data);
  out.len = SS_HEADER_SIZE;
  ss_writer_t w;
  ss_writer_init(&w, 1024, SS_HEADER_SIZE, test_realloc);
  static const char *const keys[] = {"a", "", "a"};
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(ss_writer_frame(&w, &out, (const uint8_t *)keys[i], strlen(keys[i]), 0,
                                 (uint64_t)i + 1, 1700000000001ull + (uint64_t)i,
                                 (const uint8_t *)"payload", 7),
                 0);
  ss_writer_free(&w);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL && fwrite(out.data, 1, out.len, f) == out.len && fclose(f) == 0);
  ss_buf_free(&out);

  snprintf(uri, sizeof uri, "file://%s", path);
  got_t g;
  sea_options_t *co = opts("start=beginning", "stop_at_end=true", NULL);
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.end_status, SEA_EFORMAT);
  CHECK_EQ_INT(g.n, 1);
  CHECK_CONTAINS(g.endmsg, "the message at offset 168 has an empty stream key");
  co = opts("start=beginning", "stop_at_end=true", "on_damage=skip");
  consume_all(uri, co, &g);
  sea_options_free(co);
  CHECK_EQ_INT(g.end_status, SEA_EOF);
  CHECK_EQ_INT(g.n, 2);
  CHECK_EQ_INT(g.seqs[1], 3);
}

static void test_size_limit_and_options(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "lim.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  sea_streamer_t *s;
  sea_producer_t *p;
  got_t g = {0};
  sea_options_t *o = opts("size_limit=400", "beacon_interval=128", NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  sea_producer_set_data(p, &g);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  int sent = 0, rc = 0;
  for (int i = 0; i < 100 && rc == 0; i++)
    if ((rc = sea_producer_send_bytes(p, NULL, "0123456789", 10, NULL)) == 0)
      sent++;
  CHECK_EQ_INT(rc, SEA_ETOOBIG);
  CHECK_CONTAINS(sea_producer_errmsg(p), "past its size limit of 400 bytes; it was not written");
  CHECK(sent >= 5); /* 5 frames of 43 bytes fill 343 of the 400 (and their beacons) */
  sea_producer_flush(p, on_done, &g);
  run_until(&g.done);
  CHECK_EQ_INT(g.receipts, sent);
  sea_producer_close(p);
  sea_streamer_close(s);
  got_t r;
  sea_options_t *co = opts("start=beginning", "stop_at_end=true", NULL);
  consume_all(uri, co, &r);
  CHECK_EQ_INT(r.n, sent);
  CHECK_EQ_INT(r.end_status, SEA_EOF);
  struct stat lst;
  CHECK(stat(path, &lst) == 0 && lst.st_size <= 400);

  /* A small limit at the default interval takes a small message: the bound on the beacons it may
   * meet counts the streams there are, not the 127 markers a beacon may hold (35 KB). */
  path_of(path, sizeof path, "lim2.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  o = opts("size_limit=10000", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  memset(&g, 0, sizeof g);
  sea_producer_set_data(p, &g);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "1", 1, NULL), 0);
  sea_producer_flush(p, on_done, &g);
  run_until(&g.done);
  CHECK_EQ_INT(g.receipts, 1);
  sea_producer_close(p);
  sea_streamer_close(s);
  sea_options_free(co);

  /* Options. */
  o = opts("colour=blue", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, o, &s), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "unknown option 'colour'");
  sea_options_free(o);
  o = opts("create=new", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK(sea_producer_open(s, o, &p) != 0);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "exists (create=new)");
  sea_options_free(o);
  sea_streamer_close(s);
  snprintf(uri, sizeof uri, "file://%s/nothere.ss/k", dir);
  o = opts("create=existing", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK(sea_producer_open(s, o, &p) != 0);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "does not exist (create=existing)");
  sea_options_free(o);
  o = opts("beacon_interval=12", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "beacon_interval=12");
  sea_options_free(o);
  sea_streamer_close(s);
  /* Not a .ss file. */
  char junk[512];
  path_of(junk, sizeof junk, "junk.ss");
  FILE *fp = fopen(junk, "wb");
  for (int i = 0; i < 200; i++)
    fputc('x', fp);
  fclose(fp);
  snprintf(uri, sizeof uri, "file://%s", junk);
  co = opts("start=beginning", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  sea_consumer_t *c;
  CHECK_EQ_INT(sea_consumer_open(s, co, &c), SEA_EFORMAT);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "bad magic");
  sea_options_free(co);
  sea_streamer_close(s);
}

static void test_resumable(void) {
  char path[512], uri[600], pos[600];
  path_of(path, sizeof path, "res.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  static const char *const k[] = {"k"};
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 20, 0, 0), 20);
  for (int round = 0; round < 2; round++) {
    sea_streamer_t *s;
    sea_consumer_t *c;
    got_t g = {0}, d = {0};
    g.ack = 1;
    g.pause_at = 7;
    sea_options_t *co = opts("mode=resumable", "group=g1", "batch=7");
    CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
    CHECK_EQ_INT(sea_consumer_open(s, co, &c), 0);
    sea_options_free(co);
    sea_consumer_set_data(c, &g);
    sea_consumer_start(c, on_batch, on_end);
    run_until_n(&g, 7);
    CHECK_EQ_INT(g.n, 7);
    CHECK_EQ_INT(g.seqs[0], (uint64_t)(1 + round * 7));
    CHECK_EQ_INT(sea_consumer_commit(c, on_done, &d), 0);
    run_until(&d.done);
    CHECK_EQ_INT(d.done_status, 0);
    sea_streamer_close(s);
  }
  snprintf(pos, sizeof pos, "%s.g1.pos", path);
  struct stat st;
  CHECK_EQ_INT(stat(pos, &st), 0);
}

/* Two members of a load-balanced group share the messages: each gets some, none twice. */
static void test_load_balanced(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "lb.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  static const char *const k[] = {"k"};
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 100, 0, 1), 100);
  sea_streamer_t *s;
  sea_consumer_t *c[2];
  got_t g[2];
  memset(g, 0, sizeof g);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  for (int i = 0; i < 2; i++) {
    sea_options_t *co = opts("group=workers", "batch=5", "reset=earliest");
    CHECK_EQ_INT(sea_consumer_open(s, co, &c[i]), 0);
    CHECK_EQ_INT(sea_consumer_mode(c[i]), SEA_MODE_LOAD_BALANCED);
    sea_options_free(co);
    sea_consumer_set_data(c[i], &g[i]);
  }
  for (int i = 0; i < 2; i++)
    sea_consumer_start(c[i], on_batch, on_end);
  for (int i = 0; i < 200000 && !(g[0].ended && g[1].ended); i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK_EQ_INT(g[0].end_status, SEA_EOF); /* the EOS ends both */
  CHECK_EQ_INT(g[1].end_status, SEA_EOF);
  CHECK_EQ_INT(g[0].n + g[1].n, 100);
  CHECK(g[0].n > 0 && g[1].n > 0);
  uint8_t seen[101] = {0};
  int dup = 0;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < g[i].n; j++)
      if (g[i].seqs[j] > 100 || seen[g[i].seqs[j]]++)
        dup++;
  CHECK_EQ_INT(dup, 0);
  sea_streamer_close(s);
}

/* A follower that meets half a frame waits for the rest, then delivers it. */
static void test_follow_torn(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "torn.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  static const char *const k[] = {"k"};
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 3, 0, 0), 3);
  /* The last frame's bytes, to append again in two parts. */
  FILE *fp = fopen(path, "rb");
  fseek(fp, 0, SEEK_END);
  long size = ftell(fp);
  uint8_t frame[64];
  size_t flen = 32 + 1 + 3; /* key "k", payload "k-2" */
  fseek(fp, size - (long)flen, SEEK_SET);
  CHECK_EQ_INT(fread(frame, 1, flen, fp), flen);
  fclose(fp);

  sea_streamer_t *s;
  sea_consumer_t *c;
  got_t g = {0};
  sea_options_t *co = opts("poll_interval=1", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_consumer_open(s, co, &c), 0);
  sea_options_free(co);
  sea_consumer_set_data(c, &g);
  sea_consumer_start(c, on_batch, on_end);
  fp = fopen(path, "ab");
  fwrite(frame, 1, 10, fp);
  fclose(fp);
  for (int i = 0; i < 30; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE); /* each turn waits for the 1 ms poll */
  CHECK_EQ_INT(g.n, 0);
  CHECK_EQ_INT(g.ended, 0);
  fp = fopen(path, "ab");
  fwrite(frame + 10, 1, flen - 10, fp);
  fclose(fp);
  run_until_n(&g, 1);
  CHECK_EQ_INT(g.n, 1);
  CHECK_STR(g.payloads[0], "k-2");
  CHECK_EQ_INT(g.ended, 0);
  sea_streamer_close(s);
}

/* A 3 MiB binary payload across thousands of beacons, and the wildcard key. */
static void test_big_binary(void) {
  char path[512], uri[600];
  path_of(path, sizeof path, "big.ss");
  snprintf(uri, sizeof uri, "file://%s/blob", path);
  size_t n = 3u << 20;
  uint8_t *data = malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (uint8_t)(i * 7 + (i >> 13));
  sea_streamer_t *s;
  sea_producer_t *p;
  got_t g = {0};
  sea_options_t *o = opts("beacon_interval=1024", "max_payload=4000000", NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  sea_producer_set_data(p, &g);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, data, n, NULL), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "", 0, NULL), 0);
  sea_producer_end(p, on_done, &g);
  run_until(&g.done);
  CHECK_EQ_INT(g.receipts, 2);
  sea_producer_close(p);
  sea_streamer_close(s);

  snprintf(uri, sizeof uri, "file://%s/SEA_STREAMER_WILDCARD", path);
  sea_consumer_t *c;
  o = opts("start=beginning", "stop_at_end=true", NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_consumer_open(s, o, &c), 0);
  sea_options_free(o);
  big_seen = 0;
  big_ok = 0;
  big_data = data;
  big_len = n;
  got_t r = {0};
  sea_consumer_set_data(c, &r);
  sea_consumer_start(c, on_big_batch, on_end);
  run_until(&r.ended);
  CHECK_EQ_INT(r.end_status, SEA_EOF);
  CHECK_EQ_INT(big_seen, 2);
  CHECK_EQ_INT(big_ok, 2);
  sea_streamer_close(s);
  free(data);
}

/* Send n messages "tag-i" to key k and wait for the flush; returns the receipts. */
static int send_some(sea_producer_t *p, const char *tag, int n) {
  got_t g = {0};
  sea_producer_set_data(p, &g);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  for (int i = 0; i < n; i++) {
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%s-%d", tag, i);
    CHECK_EQ_INT(sea_producer_send_bytes(p, "k", buf, (size_t)len, NULL), 0);
  }
  sea_producer_flush(p, on_done, &g);
  run_until(&g.done);
  CHECK_EQ_INT(g.done_status, 0);
  return g.receipts;
}

/* The refusal of a second writer names the file and the holder (this process). */
static void check_refusal(sea_runtime_t *in, const char *path) {
  const char *msg = sea_runtime_errmsg(in);
  char who[64];
  CHECK_CONTAINS(msg, path);
  CHECK_CONTAINS(msg, "another writer holds it");
  if (access("/proc/locks", R_OK) == 0) {
    snprintf(who, sizeof who, "pid %ld, this process", (long)getpid());
    CHECK_CONTAINS(msg, who);
  }
}

/* A second runtime of this process, with the same plugins: a writer elsewhere. */
static sea_runtime_t *other_runtime(int linked) {
  sea_runtime_t *r2;
  CHECK_EQ_INT(sea_runtime_new(&r2), 0);
  if (linked)
    CHECK_EQ_INT(sea_runtime_register_plugin(r2, sea_plugin_entry_file, "(static file)"), 0);
  return r2;
}

/* One writer per file: producers of one runtime share it (their frames never interleave); a
 * writer anywhere else (here: another runtime of this process) is refused at open with SEA_EBUSY
 * while the first is open; readers go on reading meanwhile (a replay and a follower); once the
 * first is closed a new producer opens and its sequence numbers continue. Of two writers
 * creating a new file, one writes the header and the other is refused. */
static void test_writer_lock(int linked) {
  sea_runtime_t *rt2 = other_runtime(linked);
  sea_streamer_t *o1, *o2;
  char path[512], uri[600], all[600];
  path_of(path, sizeof path, "lock.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  snprintf(all, sizeof all, "file://%s", path);
  sea_streamer_t *s, *s2;
  sea_producer_t *p, *p2 = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s2), 0);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  CHECK_EQ_INT(send_some(p, "a", 3), 3);

  /* Another producer of this runtime shares the writer: numbering goes on across both. */
  CHECK_EQ_INT(sea_producer_open(s2, NULL, &p2), 0);
  CHECK_EQ_INT(send_some(p2, "s", 1), 1);
  sea_producer_close(p2);
  CHECK_EQ_INT(sea_connect(rt2, uri, NULL, &o1), 0);
  CHECK_EQ_INT(sea_producer_open(o1, NULL, &p2), SEA_EBUSY);
  check_refusal(rt2, path);
  sea_options_t *o = opts("create=existing", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(o1, o, &p2), SEA_EBUSY);
  sea_options_free(o);

  /* Readers while the lock is held: a replay, and a follower that sees the holder's appends. */
  got_t r, f = {0};
  sea_options_t *co = opts("start=beginning", "stop_at_end=true", NULL);
  consume_all(all, co, &r);
  CHECK_EQ_INT(r.end_status, SEA_EOF);
  CHECK_EQ_INT(r.n, 4);
  sea_streamer_t *fs;
  sea_consumer_t *fc;
  sea_options_t *fo = opts("start=beginning", "poll_interval=5", NULL);
  CHECK_EQ_INT(sea_connect(rt, all, NULL, &fs), 0);
  CHECK_EQ_INT(sea_consumer_open(fs, fo, &fc), 0);
  sea_options_free(fo);
  sea_consumer_set_data(fc, &f);
  sea_consumer_start(fc, on_batch, on_end);
  run_until_n(&f, 4);
  CHECK_EQ_INT(f.n, 4);
  CHECK_EQ_INT(send_some(p, "b", 2), 2);
  run_until_n(&f, 6);
  CHECK_EQ_INT(f.n, 6);
  CHECK_STR(f.payloads[5], "b-1");

  /* Closed, the lock is free: a producer of the other runtime appends after seq 6. */
  sea_producer_close(p);
  CHECK_EQ_INT(sea_producer_open(o1, NULL, &p2), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p2, NULL, "c-0", 3, NULL), 0);
  CHECK_EQ_INT(sea_producer_send_bytes(p2, NULL, "c-1", 3, NULL), 0);
  got_t g2 = {0};
  CHECK_EQ_INT(sea_producer_flush(p2, on_done, &g2), 0);
  for (int i = 0; i < 200000 && !g2.done; i++)
    sea_runtime_run(rt2, SEA_RUN_ONCE);
  CHECK_EQ_INT(g2.done_status, 0);
  sea_producer_close(p2);
  run_until_n(&f, 8);
  CHECK_EQ_INT(f.n, 8);
  CHECK_EQ_INT(f.seqs[7], 8);
  sea_streamer_close(fs);
  consume_all(all, co, &r);
  CHECK_EQ_INT(r.n, 8);
  for (int i = 0; i < r.n && i < 8; i++)
    CHECK_EQ_INT(r.seqs[i], i + 1);
  CHECK_STR(r.payloads[0], "a-0");
  CHECK_STR(r.payloads[3], "s-0");
  CHECK_STR(r.payloads[7], "c-1");
  sea_streamer_close(s);
  sea_streamer_close(s2);
  sea_streamer_close(o1);

  /* A new file: the first producer creates it and holds it; the second is refused and writes
   * nothing (one header, the first's messages). create=new: the second finds the file. */
  path_of(path, sizeof path, "lock-new.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  snprintf(all, sizeof all, "file://%s", path);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  CHECK_EQ_INT(sea_connect(rt2, uri, NULL, &o2), 0);
  CHECK_EQ_INT(sea_producer_open(o2, NULL, &p2), SEA_EBUSY);
  check_refusal(rt2, path);
  sea_streamer_close(o2);
  CHECK_EQ_INT(send_some(p, "n", 4), 4);
  sea_producer_close(p);
  o = opts("create=new", NULL, NULL);
  CHECK_EQ_INT(sea_producer_open(s, o, &p2), SEA_EINVAL);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "exists (create=new)");
  sea_options_free(o);
  sea_streamer_close(s);
  consume_all(all, co, &r);
  CHECK_EQ_INT(r.end_status, SEA_EOF);
  CHECK_EQ_INT(r.n, 4);
  sea_options_free(co);
  struct stat st;
  CHECK_EQ_INT(stat(path, &st), 0);
  /* 128 header bytes and four frames of 32 + 1 + 3 bytes: no second header anywhere. */
  CHECK_EQ_INT(st.st_size, 128 + 4 * 36);
  CHECK_EQ_INT(sea_runtime_free(rt2), 0);
}

/* A follower wakes on file-change events: with a 10-minute poll, only those events can bring the
 * appended messages (the test would time out otherwise). Skipped where inotify is missing. */
static void test_follow_events(void) {
  int probe = inotify_init1(IN_CLOEXEC);
  if (probe < 0) {
    printf("test_follow_events: no inotify here, skipped\n");
    return;
  }
  close(probe);
  char path[512], uri[600];
  path_of(path, sizeof path, "events.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  static const char *const k[] = {"k"};
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 2, 0, 0), 2);
  sea_streamer_t *s;
  sea_consumer_t *c;
  got_t g = {0};
  sea_options_t *co = opts("poll_interval=600000", NULL, NULL);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_consumer_open(s, co, &c), 0);
  sea_options_free(co);
  sea_consumer_set_data(c, &g);
  sea_consumer_start(c, on_batch, on_end);
  for (int i = 0; i < 20; i++)
    sea_runtime_run(rt, SEA_RUN_NOWAIT);
  CHECK_EQ_INT(produce(uri, NULL, k, 1, 3, 0, 0), 3);
  run_until_n(&g, 3);
  CHECK_EQ_INT(g.n, 3);
  CHECK_EQ_INT(g.seqs[0], 3);
  sea_streamer_close(s);
}

/* sea_streamer_list through the C API: rows in order (streams, then their shards), a key filter,
 * and a streamer closed while its listing runs (canceled: no row, no crash, the job abandoned). */
typedef struct listed {
  int streams, shards, done, status;
  int64_t messages[8];
  char keys[8][16];
  int order_ok;
} listed_t;

static void on_list_row(void *data, const sea_list_row_t *r) {
  listed_t *l = data;
  CHECK(r->struct_size == sizeof *r);
  /* a shard row follows the row of its stream */
  if (r->kind == SEA_LIST_SHARD &&
      (l->streams == 0 || strcmp(r->stream, l->keys[l->streams - 1]) != 0))
    l->order_ok = 0;
  if (r->kind == SEA_LIST_STREAM && l->streams < 8) {
    snprintf(l->keys[l->streams], sizeof l->keys[0], "%s", r->stream);
    l->messages[l->streams++] = r->messages;
  } else if (r->kind == SEA_LIST_SHARD) {
    l->shards++;
    CHECK(r->first_seq >= 1 && r->last_seq >= r->first_seq && r->first_ts_us > 0);
  }
}

static void on_list_done(void *data, int status) {
  listed_t *l = data;
  l->done = 1;
  l->status = status;
}

static void test_list(void) {
  char path[512], uri[600];
  snprintf(path, sizeof path, "%s/list.ss", dir);
  snprintf(uri, sizeof uri, "file://%s/alpha", path);
  CHECK_EQ_INT(produce(uri, NULL, k3, 3, 30, 0, 1), 30);

  snprintf(uri, sizeof uri, "file://%s", path);
  sea_streamer_t *s;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  listed_t l = {.order_ok = 1};
  CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, on_list_row, on_list_done, &l), 0);
  run_until(&l.done);
  CHECK_EQ_INT(l.status, 0);
  CHECK_EQ_INT(l.streams, 3);
  CHECK_EQ_INT(l.shards, 3);
  CHECK(l.order_ok);
  CHECK_STR(l.keys[0], "alpha");
  CHECK_STR(l.keys[2], "gamma");
  CHECK(l.messages[0] == 10 && l.messages[1] == 10 && l.messages[2] == 10);

  /* only the keys asked for */
  const char *const beta[] = {"beta"};
  memset(&l, 0, sizeof l);
  l.order_ok = 1;
  CHECK_EQ_INT(sea_streamer_list(s, beta, 1, on_list_row, on_list_done, &l), 0);
  run_until(&l.done);
  CHECK_EQ_INT(l.status, 0);
  CHECK_EQ_INT(l.streams, 1);
  CHECK_STR(l.keys[0], "beta");

  /* a bad key is refused at once, naming it */
  const char *const bad[] = {"no/slash"};
  CHECK_EQ_INT(sea_streamer_list(s, bad, 1, on_list_row, on_list_done, &l), SEA_EKEY);
  CHECK_CONTAINS(sea_streamer_errmsg(s), "no/slash");

  /* closed while the listing runs: on_done with SEA_ECANCELED, no row after the close */
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, on_list_row, on_list_done, &l), 0);
  sea_streamer_close(s);
  run_until(&l.done);
  CHECK_EQ_INT(l.status, SEA_ECANCELED);
  CHECK_EQ_INT(l.streams + l.shards, 0);
  /* the abandoned job's work finishes on its own; the loop then has nothing left of it */
  for (int i = 0; i < 1000 && sea_runtime_run(rt, SEA_RUN_NOWAIT) != 0; i++)
    ;

  /* a file that is not there: the error names it */
  snprintf(uri, sizeof uri, "file://%s/missing.ss", dir);
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, on_list_row, on_list_done, &l), 0);
  run_until(&l.done);
  CHECK_EQ_INT(l.status, SEA_ECONNECT);
  CHECK_CONTAINS(sea_streamer_errmsg(s), "missing.ss");
  sea_streamer_close(s);
}

/* flush and end are the host's (plugin ABI 1.4): a flush is done once its sends' receipts are in,
 * which for the file backend means their bytes are in the file; an end writes the end-of-stream
 * frame through the push, so it is in the file when the end completes even with nothing in
 * flight (looked at before the producer closes, since a close writes what is buffered too). */
static void test_flush_and_end_write(void) {
  char path[512], uri[600];
  struct stat st;
  path_of(path, sizeof path, "end.ss");
  snprintf(uri, sizeof uri, "file://%s/k", path);
  sea_streamer_t *s;
  sea_producer_t *p;
  got_t *g = calloc(1, sizeof *g);
  sea_options_t *o = opts("flush_interval=60000", NULL, NULL); /* only a push writes soon */
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, o, &p), 0);
  sea_options_free(o);
  sea_producer_set_data(p, g);
  sea_producer_set_callbacks(p, on_receipt, NULL);
  CHECK_EQ_INT(stat(path, &st), 0);
  off_t header = st.st_size;
  for (int i = 0; i < 3; i++)
    CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "abc", 3, NULL), 0);
  CHECK_EQ_INT(sea_producer_flush(p, on_done, g), 0);
  run_until(&g->done);
  CHECK_EQ_INT(g->done_status, 0);
  CHECK_EQ_INT(g->receipts, 3);
  CHECK_EQ_INT(stat(path, &st), 0);
  off_t flushed = st.st_size;
  CHECK(flushed > header);
  g->done = 0;
  CHECK_EQ_INT(sea_producer_end(p, on_done, g), 0);
  run_until(&g->done);
  CHECK_EQ_INT(g->done_status, 0);
  CHECK_EQ_INT(stat(path, &st), 0);
  CHECK(st.st_size > flushed); /* the end-of-stream frame */
  sea_producer_close(p);
  sea_streamer_close(s);
  /* What was written reads back whole (stop_at_end bounds the read whether or not the frame is
   * the end-of-stream one: the size above is the check). */
  o = opts("start=beginning", "stop_at_end=true", NULL);
  consume_all(uri, o, g);
  sea_options_free(o);
  CHECK_EQ_INT(g->n, 3);
  CHECK_EQ_INT(g->end_status, SEA_EOF);
  free(g);
}

int main(int argc, char **argv) {
  /* "static": the backend linked in (no plugin directory), else loaded as file.so. */
  int linked = argc > 1 && strcmp(argv[1], "static") == 0;
  snprintf(dir, sizeof dir, "/tmp/sea-file-test-XXXXXX");
  if (mkdtemp(dir) == NULL)
    return 2;
  if (linked)
    setenv("SEASTREAMER_PLUGIN_DIR", "/nonexistent", 1);
  sea_runtime_new(&rt);
  if (linked)
    CHECK_EQ_INT(sea_runtime_register_plugin(rt, sea_plugin_entry_file, "(static file)"), 0);
  test_write_replay_append();
  test_seek_rewind();
  test_silent_stream();
  test_rewind_in_last_batch();
  test_follow_and_delete();
  test_damage();
  test_empty_key();
  test_size_limit_and_options();
  test_resumable();
  test_load_balanced();
  test_follow_torn();
  test_big_binary();
  test_writer_lock(linked);
  test_follow_events();
  test_list();
  test_flush_and_end_write();
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
  return test_report();
}
