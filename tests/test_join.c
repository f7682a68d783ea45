/* test_join.c: the pipeline's time-order join (sea_pipeline_config_t.join) against the mem
 * backend: order across inputs and keys, ties, batch runs, a silent input, the bounded buffer,
 * late messages, error policies and what is acknowledged when a joined run stops early. Run
 * with the backends as .so plugins and linked in statically (argv[1] = dynamic | static). */
#include <seastreamer/seastreamer.h>
#include <stdlib.h>

#include "test.h"
#include "test_opts.h"

SEA_PLUGIN_ENTRY_DECL(mem);

static int linked_statically;

static sea_runtime_t *new_runtime(void) {
  sea_runtime_t *rt = NULL;
  if (linked_statically) {
    setenv("SEASTREAMER_PLUGIN_DIR", "/nonexistent", 1);
    sea_runtime_new(&rt);
    CHECK_EQ_INT(sea_runtime_register_plugin(rt, sea_plugin_entry_mem, "(static mem)"), 0);
  } else {
    sea_runtime_new(&rt);
  }
  return rt;
}

#define opts(...) TEST_OPTS(__VA_ARGS__)

/* Every loop in here is bounded; a run that would never end fails a check instead. */
static void run_until(sea_runtime_t *rt, int *flag) {
  for (int i = 0; i < 200000 && !*flag; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
}

/* ---- producing with timestamps ---- */

static void on_flushed(void *data, int status) {
  *(int *)data = 1;
}

/* A mem broker lives while a streamer names it: the producers' streamers stay open to the end. */
static sea_streamer_t *keep[64];
static size_t nkeep;

/* Send one message per timestamp to uri (anchored at its key): payload "<ts>". */
static void produce_ts(sea_runtime_t *rt, const char *uri, const int64_t *ts, size_t n) {
  sea_streamer_t *s;
  sea_producer_t *p;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  for (size_t i = 0; i < n; i++) {
    char buf[32];
    sea_message_t m;
    memset(&m, 0, sizeof m);
    int len = snprintf(buf, sizeof buf, "%lld", (long long)ts[i]);
    m.payload.data = (const uint8_t *)buf;
    m.payload.len = (size_t)len;
    m.meta.timestamp_us = ts[i];
    CHECK_EQ_INT(sea_producer_send(p, &m, NULL), 0);
  }
  int done = 0;
  sea_producer_flush(p, on_flushed, &done);
  run_until(rt, &done);
  CHECK(done);
  sea_producer_close(p);
  if (nkeep < sizeof keep / sizeof keep[0])
    keep[nkeep++] = s;
  else
    sea_streamer_close(s);
}

static void produce_range(sea_runtime_t *rt, const char *uri, int64_t from, int64_t step,
                          size_t n) {
  int64_t *ts = malloc(n * sizeof *ts);
  for (size_t i = 0; i < n; i++)
    ts[i] = from + (int64_t)i * step;
  produce_ts(rt, uri, ts, n);
  free(ts);
}

/* ---- a joined pipeline and what its processor saw ---- */

#define MAX_SEEN 1024

typedef struct seen {
  int64_t ts;
  size_t input;
  const char *key; /* interned */
} seen_t;

typedef struct jcase {
  seen_t seen[MAX_SEEN];
  size_t nseen;
  int calls;
  size_t max_call;
  int64_t reject_ts;   /* reject the message with this timestamp (0: none) */
  int64_t stop_ts;     /* call sea_pipeline_stop while processing this timestamp (0: none) */
  const char *out_opt; /* an option of the output (capacity=N: backpressure) */
  int done, status, skipped;
  uint64_t max_buffered; /* the most join_buffered seen between loop turns */
} jcase_t;

static int j_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *b, size_t first,
                     size_t count, void *data) {
  jcase_t *jc = data;
  jc->calls++;
  if (count > jc->max_call)
    jc->max_call = count;
  for (size_t i = first; i < first + count; i++) {
    const sea_message_t *m = &b->msgs[i];
    if (jc->reject_ts && m->meta.timestamp_us == jc->reject_ts)
      return sea_pipeline_reject(pl, "test rejects %lld", (long long)m->meta.timestamp_us);
    if (jc->stop_ts && m->meta.timestamp_us == jc->stop_ts)
      sea_pipeline_stop(pl);
    if (jc->nseen < MAX_SEEN)
      jc->seen[jc->nseen++] = (seen_t){m->meta.timestamp_us, input, m->meta.stream_key};
    sea_message_t out = *m;
    out.meta.stream_key = NULL;
    int rc = sea_pipeline_send(pl, 0, &out, 0);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static void j_done(sea_pipeline_t *pl, int status) {
  jcase_t *jc = sea_pipeline_get_data(pl);
  jc->done = 1;
  jc->status = status;
}

static void j_skipped(sea_pipeline_t *pl, size_t input, const sea_message_t *m, const char *why,
                      void *data) {
  jcase_t *jc = data;
  jc->skipped++;
}

typedef struct jrun {
  sea_runtime_t *rt;
  sea_pipeline_t *pl;
  sea_streamer_t *ss[8];
  size_t nss;
} jrun_t;

/* A pipeline (joined if cfg->join) over inputs uris[0..nin), each with its options in_opts[i]
 * ("key=value;key=value", "" for none), into mem://jout/<out>. Set up, not started. */
static void j_open(jrun_t *jr, sea_runtime_t *rt, sea_pipeline_config_t *cfg, jcase_t *jc,
                   const char *const *uris, const char *const *in_opts, size_t nin,
                   const char *out) {
  memset(jr, 0, sizeof *jr);
  jr->rt = rt;
  cfg->struct_size = sizeof *cfg;
  cfg->process = j_process;
  cfg->on_done = j_done;
  cfg->on_skipped = j_skipped;
  cfg->data = jc;
  if (cfg->commit_interval_ms == 0)
    cfg->commit_interval_ms = 1;
  CHECK_EQ_INT(sea_pipeline_new(rt, cfg, &jr->pl), 0);
  for (size_t i = 0; i < nin; i++) {
    sea_options_t *o = sea_options_new();
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in_opts[i]);
    for (char *kv = strtok(buf, ";"); kv; kv = strtok(NULL, ";"))
      CHECK_EQ_INT(sea_options_parse(o, kv), 0);
    sea_consumer_t *c;
    CHECK_EQ_INT(sea_connect(rt, uris[i], o, &jr->ss[jr->nss]), 0);
    sea_options_free(o);
    CHECK_EQ_INT(sea_consumer_open(jr->ss[jr->nss++], NULL, &c), 0);
    CHECK_EQ_INT(sea_pipeline_add_input(jr->pl, c, NULL), 0);
  }
  char ouri[128];
  snprintf(ouri, sizeof ouri, "mem://jout/%s", out);
  sea_producer_t *p;
  sea_options_t *oo = sea_options_new();
  if (jc->out_opt)
    CHECK_EQ_INT(sea_options_parse(oo, jc->out_opt), 0);
  CHECK_EQ_INT(sea_connect(rt, ouri, NULL, &jr->ss[jr->nss]), 0);
  CHECK_EQ_INT(sea_producer_open(jr->ss[jr->nss++], oo, &p), 0);
  sea_options_free(oo);
  CHECK_EQ_INT(sea_pipeline_add_output(jr->pl, p, NULL), 0);
}

static void j_close(jrun_t *jr) {
  sea_pipeline_free(jr->pl);
  for (size_t i = 0; i < jr->nss; i++)
    sea_streamer_close(jr->ss[i]);
}

/* Run to the end, noting the join's buffer after every loop turn. */
static int j_run(jrun_t *jr, jcase_t *jc) {
  CHECK_EQ_INT(sea_pipeline_start(jr->pl), 0);
  for (int i = 0; i < 200000 && !jc->done; i++) {
    sea_runtime_run(jr->rt, SEA_RUN_ONCE);
    sea_pipeline_stats_t st;
    sea_pipeline_stats(jr->pl, &st);
    if (st.join_buffered > jc->max_buffered)
      jc->max_buffered = st.join_buffered;
  }
  CHECK(jc->done);
  return jc->status;
}

/* The timestamps seen are exactly 1..n in order. */
static void check_one_to_n(const jcase_t *jc, size_t n) {
  CHECK_EQ_INT(jc->nseen, n);
  size_t bad = 0;
  for (size_t i = 0; i < jc->nseen; i++)
    if (jc->seen[i].ts != (int64_t)i + 1 && bad++ == 0)
      fprintf(stderr, "  seen[%zu] has timestamp %lld, expected %zu\n", i,
              (long long)jc->seen[i].ts, i + 1);
  CHECK_EQ_INT(bad, 0);
}

/* How many messages group g of uri still has to deliver (in delivery order: a plain pipeline),
 * and the first one's timestamp. It commits what it reads: one look per group. */
static size_t left_in_group(sea_runtime_t *rt, const char *uri, const char *group,
                            int64_t *first_ts) {
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 0};
  char o[128];
  snprintf(o, sizeof o, "mode=resumable;group=%s;reset=earliest;stop_at_end=true", group);
  const char *uris[] = {uri}, *os[] = {o};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 1, "left");
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  size_t n = jc->nseen;
  *first_ts = n ? jc->seen[0].ts : 0;
  j_close(&jr);
  free(jc);
  return n;
}

/* ---- the cases ---- */

/* Two inputs whose timestamps interleave, read in batches of 7: one history, in order. */
static void test_interleaved(sea_runtime_t *rt) {
  produce_range(rt, "mem://ia/k", 1, 2, 50); /* 1, 3, ..., 99 */
  produce_range(rt, "mem://ib/k", 2, 2, 50); /* 2, 4, ..., 100 */
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1};
  const char *uris[] = {"mem://ia/k", "mem://ib/k"};
  const char *os[] = {"start=beginning;stop_at_end=true;batch=7",
                      "start=beginning;stop_at_end=true;batch=7"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 2, "interleaved");
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  check_one_to_n(jc, 100);
  sea_pipeline_stats_t st;
  sea_pipeline_stats(jr.pl, &st);
  CHECK_EQ_INT(st.processed, 100);
  CHECK_EQ_INT(st.done, 100);
  CHECK_EQ_INT(st.late, 0);
  CHECK_EQ_INT(st.join_buffered, 0);
  CHECK_EQ_INT(jc->calls, 100); /* one message a call without per_batch */
  j_close(&jr);
  free(jc);
}

/* Ties: by stream key, then by input index. */
static void test_ties(sea_runtime_t *rt) {
  int64_t ts[] = {5, 5, 6};
  produce_ts(rt, "mem://t1/b", ts, 3);
  produce_ts(rt, "mem://t2/b", ts, 3);
  produce_ts(rt, "mem://t3/a", ts, 3);
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1};
  const char *uris[] = {"mem://t1/b", "mem://t2/b", "mem://t3/a"};
  const char *o = "start=beginning;stop_at_end=true";
  const char *os[] = {o, o, o};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 3, "ties");
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  CHECK_EQ_INT(jc->nseen, 9);
  /* 5: key a (input 2) twice, then key b from input 0 twice, then input 1; then 6 likewise. */
  const size_t want_input[] = {2, 2, 0, 0, 1, 1, 2, 0, 1};
  const int64_t want_ts[] = {5, 5, 5, 5, 5, 5, 6, 6, 6};
  for (size_t i = 0; i < 9 && i < jc->nseen; i++) {
    CHECK_EQ_INT(jc->seen[i].ts, want_ts[i]);
    CHECK_EQ_INT(jc->seen[i].input, want_input[i]);
  }
  j_close(&jr);
  free(jc);
}

/* Several keys of one input: the join reorders the input's own messages, and acknowledges only
 * what it and everything delivered before it processed. The mem consumer deals one message per
 * key in turn: x10 y1 x20 y2 x30 y3; in time order y1 y2 y3 x10 x20 x30. */
static void test_keys_of_one_input(sea_runtime_t *rt) {
  int64_t x[] = {10, 20, 30}, y[] = {1, 2, 3};
  produce_ts(rt, "mem://ko/x", x, 3);
  produce_ts(rt, "mem://ko/y", y, 3);
  const char *uris[] = {"mem://ko/x,y"};
  const int64_t order[] = {1, 2, 3, 10, 20, 30};
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    sea_pipeline_config_t cfg = {.join = 1};
    const char *os[] = {"start=beginning;stop_at_end=true"};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, os, 1, "keys");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    CHECK_EQ_INT(jc->nseen, 6);
    for (size_t i = 0; i < 6 && i < jc->nseen; i++)
      CHECK_EQ_INT(jc->seen[i].ts, order[i]);
    j_close(&jr);
    free(jc);
  }
  /* -c 2 processes y1 y2: x10, delivered first, is not processed, so nothing is acknowledged
   * and the group gets all six again. */
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    sea_pipeline_config_t cfg = {.join = 1, .max_count = 2};
    const char *os[] = {"mode=resumable;group=k2;reset=earliest;stop_at_end=true"};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, os, 1, "keys2");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    CHECK_EQ_INT(jc->nseen, 2);
    sea_pipeline_stats_t st;
    sea_pipeline_stats(jr.pl, &st);
    CHECK_EQ_INT(st.processed, 2);
    CHECK_EQ_INT(st.done, 0);
    j_close(&jr);
    free(jc);
    int64_t first = 0;
    CHECK_EQ_INT(left_in_group(rt, "mem://ko/x,y", "k2", &first), 6);
    CHECK_EQ_INT(first, 10);
  }
  /* -c 4 processes y1 y2 y3 x10: x10 and y1 are acknowledged (x20, delivered next, is not
   * processed); x20 x30 y2 y3 come again: y2 and y3 twice, nothing lost. */
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    sea_pipeline_config_t cfg = {.join = 1, .max_count = 4};
    const char *os[] = {"mode=resumable;group=k4;reset=earliest;stop_at_end=true"};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, os, 1, "keys4");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    sea_pipeline_stats_t st;
    sea_pipeline_stats(jr.pl, &st);
    CHECK_EQ_INT(st.processed, 4);
    CHECK_EQ_INT(st.done, 2);
    j_close(&jr);
    free(jc);
    int64_t first = 0;
    CHECK_EQ_INT(left_in_group(rt, "mem://ko/x,y", "k4", &first), 4);
    CHECK_EQ_INT(first, 20);
  }
}

/* per_batch: a call gets a run of consecutive messages of one batch released one after the
 * other: a[1 2 3], b[4 5 6], a[10 11 12]. */
static void test_batch_runs(sea_runtime_t *rt) {
  int64_t a[] = {1, 2, 3, 10, 11, 12}, b[] = {4, 5, 6};
  produce_ts(rt, "mem://ra/k", a, 6);
  produce_ts(rt, "mem://rb/k", b, 3);
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1, .per_batch = 1};
  const char *uris[] = {"mem://ra/k", "mem://rb/k"};
  const char *os[] = {"start=beginning;stop_at_end=true", "start=beginning;stop_at_end=true"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 2, "runs");
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  const int64_t order[] = {1, 2, 3, 4, 5, 6, 10, 11, 12};
  CHECK_EQ_INT(jc->nseen, 9);
  for (size_t i = 0; i < 9 && i < jc->nseen; i++)
    CHECK_EQ_INT(jc->seen[i].ts, order[i]);
  CHECK_EQ_INT(jc->calls, 3);
  CHECK_EQ_INT(jc->max_call, 3);
  j_close(&jr);
  free(jc);
}

/* An input that never delivers anything (and never ends): the join waits for it join_wait_ms,
 * then goes on without it. */
static void test_silent_input(sea_runtime_t *rt) {
  produce_range(rt, "mem://sa/k", 1, 1, 20);
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1, .join_wait_ms = 30, .max_count = 20};
  const char *uris[] = {"mem://sa/k", "mem://sb/k"};
  const char *os[] = {"start=beginning;stop_at_end=true", "start=beginning"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 2, "silent");
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  check_one_to_n(jc, 20);
  j_close(&jr);
  free(jc);
}

/* The bound: 200 messages in batches of 5, a silent second input, at most 10 buffered: the
 * input pauses at the bound (one batch more at most), the wait releases, all 200 come in order. */
static void test_bounded(sea_runtime_t *rt) {
  produce_range(rt, "mem://ba/k", 1, 1, 200);
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {
      .join = 1, .join_wait_ms = 30, .join_max_buffered = 10, .max_count = 200};
  const char *uris[] = {"mem://ba/k", "mem://bb/k"};
  const char *os[] = {"start=beginning;stop_at_end=true;batch=5", "start=beginning"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 2, "bounded");
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  check_one_to_n(jc, 200);
  CHECK(jc->max_buffered >= 10); /* it did fill up */
  CHECK(jc->max_buffered < 15);
  if (jc->max_buffered >= 15)
    fprintf(stderr, "  %llu buffered at most\n", (unsigned long long)jc->max_buffered);
  j_close(&jr);
  free(jc);
}

/* A message older than what was processed already is late: processed at once, counted. */
static void test_late(sea_runtime_t *rt) {
  produce_range(rt, "mem://la/k", 10, 10, 3); /* 10 20 30 */
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1, .join_wait_ms = 20, .max_count = 4};
  const char *uris[] = {"mem://la/k", "mem://lb/k"};
  const char *os[] = {"start=beginning", "start=beginning"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 2, "late");
  CHECK_EQ_INT(sea_pipeline_start(jr.pl), 0);
  for (int i = 0; i < 200000 && jc->nseen < 3; i++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK_EQ_INT(jc->nseen, 3);
  int64_t five = 5;
  produce_ts(rt, "mem://lb/k", &five, 1);
  run_until(rt, &jc->done);
  CHECK(jc->done);
  CHECK_EQ_INT(jc->status, 0);
  CHECK_EQ_INT(jc->nseen, 4);
  if (jc->nseen == 4) {
    CHECK_EQ_INT(jc->seen[3].ts, 5);
    CHECK_EQ_INT(jc->seen[3].input, 1);
  }
  sea_pipeline_stats_t st;
  sea_pipeline_stats(jr.pl, &st);
  CHECK_EQ_INT(st.late, 1);
  j_close(&jr);
  free(jc);
}

/* Error policies: skip goes on; stop keeps the failed message and what follows it in its input
 * uncommitted, while the other input's processed messages are committed. */
static void test_policies(sea_runtime_t *rt) {
  produce_range(rt, "mem://pa/k", 1, 2, 10); /* 1 3 ... 19 */
  produce_range(rt, "mem://pb/k", 2, 2, 10); /* 2 4 ... 20 */
  const char *uris[] = {"mem://pa/k", "mem://pb/k"};
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    jc->reject_ts = 4;
    sea_pipeline_config_t cfg = {.join = 1, .on_error = SEA_ON_ERROR_SKIP};
    const char *os[] = {"start=beginning;stop_at_end=true", "start=beginning;stop_at_end=true"};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, os, 2, "skip");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    CHECK_EQ_INT(jc->skipped, 1);
    CHECK_EQ_INT(jc->nseen, 19);
    j_close(&jr);
    free(jc);
  }
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    jc->reject_ts = 4;
    sea_pipeline_config_t cfg = {.join = 1};
    const char *o = "mode=resumable;group=ps;reset=earliest;stop_at_end=true";
    const char *os[] = {o, o};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, os, 2, "stop");
    CHECK_EQ_INT(j_run(&jr, jc), SEA_EINVAL);
    CHECK_CONTAINS(sea_pipeline_errmsg(jr.pl), "test rejects 4");
    CHECK_EQ_INT(jc->nseen, 3); /* 1 2 3 */
    j_close(&jr);
    free(jc);
    int64_t first = 0;
    CHECK_EQ_INT(left_in_group(rt, "mem://pb/k", "ps", &first), 9);
    CHECK_EQ_INT(first, 4);
    CHECK_EQ_INT(left_in_group(rt, "mem://pa/k", "ps", &first), 8);
    CHECK_EQ_INT(first, 5);
  }
}

/* Dead-letters, a stop from inside the processor and a full output, joined. */
static void test_more_policies(sea_runtime_t *rt) {
  produce_range(rt, "mem://qa/k", 1, 2, 10); /* 1 3 ... 19 */
  produce_range(rt, "mem://qb/k", 2, 2, 10); /* 2 4 ... 20 */
  const char *uris[] = {"mem://qa/k", "mem://qb/k"};
  const char *o = "mode=resumable;group=qs;reset=earliest;stop_at_end=true";
  const char *os[] = {o, o};
  /* The dead-letter output is output 0: the rejected message is there as it was, in its place. */
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    jc->reject_ts = 4;
    sea_pipeline_config_t cfg = {.join = 1, .on_error = SEA_ON_ERROR_DEAD_LETTER, .dead_letter = 0};
    const char *e = "start=beginning;stop_at_end=true";
    const char *eos[] = {e, e};
    sea_streamer_t *hold; /* the output's broker outlives the run */
    CHECK_EQ_INT(sea_connect(rt, "mem://jout/dead", NULL, &hold), 0);
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, eos, 2, "dead");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    CHECK_EQ_INT(jc->skipped, 1);
    CHECK_EQ_INT(jc->nseen, 19);
    j_close(&jr);
    free(jc);
    jc = calloc(1, sizeof *jc);
    const char *outs[] = {"mem://jout/dead"}, *oos[] = {"start=beginning;stop_at_end=true"};
    sea_pipeline_config_t plain = {.join = 0};
    j_open(&jr, rt, &plain, jc, outs, oos, 1, "dead-read");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    check_one_to_n(jc, 20);
    j_close(&jr);
    sea_streamer_close(hold);
    free(jc);
  }
  /* sea_pipeline_stop while processing 7: 1..7 are processed; each input is committed up to
   * what it had done (a: 1 3 5 7, b: 2 4 6). */
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    jc->stop_ts = 7;
    sea_pipeline_config_t cfg = {.join = 1};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, os, 2, "inner-stop");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    check_one_to_n(jc, 7);
    j_close(&jr);
    free(jc);
    int64_t first = 0;
    CHECK_EQ_INT(left_in_group(rt, "mem://qa/k", "qs", &first), 6);
    CHECK_EQ_INT(first, 9);
    CHECK_EQ_INT(left_in_group(rt, "mem://qb/k", "qs", &first), 7);
    CHECK_EQ_INT(first, 8);
  }
  /* An output that takes one send at a time: the inputs pause and resume, the order holds. */
  {
    jcase_t *jc = calloc(1, sizeof *jc);
    jc->out_opt = "capacity=1";
    sea_pipeline_config_t cfg = {.join = 1};
    const char *e = "start=beginning;stop_at_end=true;batch=3";
    const char *eos[] = {e, e};
    jrun_t jr;
    j_open(&jr, rt, &cfg, jc, uris, eos, 2, "full");
    CHECK_EQ_INT(j_run(&jr, jc), 0);
    check_one_to_n(jc, 20);
    sea_pipeline_stats_t st;
    sea_pipeline_stats(jr.pl, &st);
    CHECK_EQ_INT(st.receipted, 20);
    j_close(&jr);
    free(jc);
  }
}

/* Join and exactly once together are refused at start, by name. */
static void test_refused_with_exactly_once(sea_runtime_t *rt) {
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1, .exactly_once = 1};
  const char *uris[] = {"mem://ea/k"};
  const char *os[] = {"start=beginning;stop_at_end=true"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 1, "eos");
  CHECK_EQ_INT(sea_pipeline_start(jr.pl), SEA_EINVAL);
  CHECK_CONTAINS(sea_pipeline_errmsg(jr.pl), "join with exactly-once is not supported");
  run_until(rt, &jc->done);
  CHECK(jc->done);
  j_close(&jr);
  free(jc);
}

/* A config of the size before join (what an older program passes): not joined. */
static void test_old_struct_size(sea_runtime_t *rt) {
  produce_range(rt, "mem://oa/k", 2, 2, 3); /* 2 4 6 */
  produce_range(rt, "mem://ob/k", 1, 2, 3); /* 1 3 5 */
  jcase_t *jc = calloc(1, sizeof *jc);
  sea_pipeline_config_t cfg = {.join = 1};
  const char *uris[] = {"mem://oa/k", "mem://ob/k"};
  const char *os[] = {"start=beginning;stop_at_end=true;batch=3",
                      "start=beginning;stop_at_end=true;batch=3"};
  jrun_t jr;
  j_open(&jr, rt, &cfg, jc, uris, os, 2, "old");
  sea_pipeline_free(jr.pl); /* again, with the older size */
  cfg.struct_size = offsetof(sea_pipeline_config_t, join);
  CHECK_EQ_INT(sea_pipeline_new(rt, &cfg, &jr.pl), 0);
  for (size_t i = 0; i < 2; i++) {
    sea_consumer_t *c;
    CHECK_EQ_INT(sea_consumer_open(jr.ss[i], NULL, &c), 0);
    CHECK_EQ_INT(sea_pipeline_add_input(jr.pl, c, NULL), 0);
  }
  sea_producer_t *p;
  CHECK_EQ_INT(sea_producer_open(jr.ss[2], NULL, &p), 0);
  CHECK_EQ_INT(sea_pipeline_add_output(jr.pl, p, NULL), 0);
  CHECK_EQ_INT(j_run(&jr, jc), 0);
  CHECK_EQ_INT(jc->nseen, 6);
  CHECK(jc->nseen == 6 && jc->seen[0].ts == 2); /* delivery order: the first input first */
  j_close(&jr);
  free(jc);
}

int main(int argc, char **argv) {
  linked_statically = argc > 1 && strcmp(argv[1], "static") == 0;
  sea_runtime_t *rt = new_runtime();
  test_interleaved(rt);
  test_ties(rt);
  test_keys_of_one_input(rt);
  test_batch_runs(rt);
  test_silent_input(rt);
  test_bounded(rt);
  test_late(rt);
  test_policies(rt);
  test_more_policies(rt);
  test_refused_with_exactly_once(rt);
  test_old_struct_size(rt);
  for (size_t i = 0; i < nkeep; i++)
    sea_streamer_close(keep[i]);
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
  return test_report();
}
