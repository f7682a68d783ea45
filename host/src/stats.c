/* stats.c: a pipeline's progress on stderr (`--stats`, `--stats-json`): a line every interval and
 * one at the end, from the pipeline's counters and each input's lag. It only reads: nothing here
 * changes what is delivered, acknowledged or committed. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define STATS_EVERY_MS_DEFAULT 5000
#define LAG_MAX 256 /* entries per input in one line */

struct sea__stats {
  sea_pipeline_t *pl;
  uv_timer_t *timer; /* freed in its close callback */
  unsigned flags;
  uint64_t start_ns, prev_ns;
  sea_pipeline_stats_t prev;
  int final_written;
};

void sea__put(sea__out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = o->used < o->len ? o->len - o->used : 0;
  int n = vsnprintf(room ? o->buf + o->used : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0)
    o->used += (size_t)n;
}

static double rate(uint64_t now, uint64_t before, double secs) {
  return secs > 0 ? (double)(now - before) / secs : 0.0;
}

/* A count for JSON: the number, or null when unknown. */
static void put_count(sea__out_t *o, int64_t v) {
  if (v < 0)
    sea__put(o, "null");
  else
    sea__put(o, "%" PRId64, v);
}

static void put_lag(sea__out_t *o, sea_pipeline_t *pl, bool json) {
  sea_lag_t lag[LAG_MAX];
  bool any = false;
  if (json)
    sea__put(o, "\"lag\":[");
  for (size_t i = 0;; i++) {
    sea_consumer_t *c = sea_pipeline_input(pl, i);
    if (c == NULL)
      break;
    int n = sea_consumer_lag(c, lag, LAG_MAX);
    for (int k = 0; k < n && k < LAG_MAX; k++) {
      const sea_lag_t *l = &lag[k];
      if (json) {
        sea__put(o, "%s{\"input\":%zu,\"stream\":\"%s\",\"shard\":%" PRIu64 ",\"lag\":",
                 any ? "," : "", i, l->stream_key ? l->stream_key : "", l->shard);
        put_count(o, l->lag);
        sea__put(o, ",\"lag_bytes\":");
        put_count(o, l->lag_bytes);
        sea__put(o, "}");
      } else {
        sea__put(o, "%s%s:%" PRIu64 " ", any ? ", " : "; lag ", l->stream_key ? l->stream_key : "?",
                 l->shard);
        if (l->lag >= 0)
          sea__put(o, "%" PRId64, l->lag);
        else
          sea__put(o, "?");
        if (l->lag_bytes >= 0)
          sea__put(o, " (%" PRId64 " B)", l->lag_bytes);
      }
      any = true;
    }
  }
  if (json)
    sea__put(o, "],");
}

static size_t stats_line(sea__stats_t *s, sea_pipeline_t *pl, unsigned flags, int final, char *buf,
                         size_t len) {
  sea__out_t o = {buf, len, 0};
  if (len)
    buf[0] = '\0';
  sea_pipeline_stats_t st;
  memset(&st, 0, sizeof st);
  sea_pipeline_stats(pl, &st);
  uint64_t now = uv_hrtime();
  sea_pipeline_stats_t prev;
  memset(&prev, 0, sizeof prev);
  uint64_t since = now, start = now;
  if (s) {
    start = s->start_ns;
    since = final ? s->start_ns : s->prev_ns;
    if (!final)
      prev = s->prev;
  }
  double secs = (double)(now - since) / 1e9;
  double elapsed = (double)(now - start) / 1e9;
  uint64_t inflight = st.sent > st.receipted ? st.sent - st.receipted : 0;
  char ts[40];
  size_t tl = sea_format_timestamp(sea_now_us(), ts);
  ts[tl] = '\0';
  bool json = flags & SEA_STATS_JSON;
  if (json) {
    sea__put(&o,
             "{\"time\":\"%sZ\",\"elapsed_s\":%.3f,\"messages_in\":%" PRIu64
             ",\"messages_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
             ",\"confirmed\":%" PRIu64 ",\"inflight\":%" PRIu64 ",\"skipped\":%" PRIu64
             ",\"commits\":%" PRIu64
             ",\"rate_in\":%.1f,\"rate_out\":%.1f,\"bytes_rate_in\":%.1f,\"bytes_rate_out\":%.1f,",
             ts, elapsed, st.processed, st.sent, st.bytes_in, st.bytes_out, st.receipted, inflight,
             st.skipped, st.commits, rate(st.processed, prev.processed, secs),
             rate(st.sent, prev.sent, secs), rate(st.bytes_in, prev.bytes_in, secs),
             rate(st.bytes_out, prev.bytes_out, secs));
    put_lag(&o, pl, true);
    sea__put(&o, "\"final\":%s}", final ? "true" : "false");
  } else {
    sea__put(&o,
             "%sZ seastreamer: stats%s: in %" PRIu64 " msgs %" PRIu64
             " B (%.1f msgs/s, %.1f B/s); out %" PRIu64 " msgs %" PRIu64
             " B (%.1f msgs/s, %.1f B/s); inflight %" PRIu64,
             ts, final ? " (final)" : "", st.processed, st.bytes_in,
             rate(st.processed, prev.processed, secs), rate(st.bytes_in, prev.bytes_in, secs),
             st.sent, st.bytes_out, rate(st.sent, prev.sent, secs),
             rate(st.bytes_out, prev.bytes_out, secs), inflight);
    put_lag(&o, pl, false);
  }
  if (s && !final) {
    s->prev = st;
    s->prev_ns = now;
  }
  return o.used;
}

size_t sea_pipeline_stats_line(sea_pipeline_t *pl, unsigned flags, int final, char *buf,
                               size_t len) {
  if (pl == NULL) {
    if (len)
      buf[0] = '\0';
    return 0;
  }
  return stats_line(*sea__pipeline_stats_ref(pl), pl, flags, final, buf, len);
}

static void write_line(sea__stats_t *s, int final) {
  char small[4096];
  size_t n = stats_line(s, s->pl, s->flags, final, small, sizeof small);
  char *buf = small;
  if (n >= sizeof small) { /* many lag entries: one more pass with room for them */
    buf = sea__malloc(n + 1);
    if (buf == NULL)
      return;
    n = stats_line(s, s->pl, s->flags, final, buf, n + 1);
  }
  buf[n] = '\n';
  fwrite(buf, 1, n + 1, stderr); /* one write: lines of other writers do not cut into it */
  fflush(stderr);
  if (buf != small)
    sea__free(buf);
}

static void on_stats_timer(uv_timer_t *t) {
  sea__stats_t *s = t->data;
  if (s != NULL && !s->final_written)
    write_line(s, 0);
}

static void free_handle(uv_handle_t *h) {
  sea__free(h);
}

int sea_pipeline_report_stats(sea_pipeline_t *pl, uint64_t interval_ms, unsigned flags) {
  if (pl == NULL)
    return SEA_EINVAL;
  sea__stats_t **ref = sea__pipeline_stats_ref(pl);
  sea__stats_t *s = *ref;
  if (s == NULL) {
    s = sea__calloc(1, sizeof *s);
    uv_timer_t *t = sea__calloc(1, sizeof *t);
    if (s == NULL || t == NULL) {
      sea__free(s);
      sea__free(t);
      return SEA_ENOMEM;
    }
    s->pl = pl;
    s->timer = t;
    s->start_ns = s->prev_ns = uv_hrtime();
    uv_timer_init(sea_runtime_uv_loop(sea__pipeline_runtime(pl)), t);
    t->data = s;
    *ref = s;
  }
  s->flags = flags;
  uint64_t every = interval_ms ? interval_ms : STATS_EVERY_MS_DEFAULT;
  uv_timer_start(s->timer, on_stats_timer, every, every);
  uv_unref((uv_handle_t *)s->timer); /* the pipeline's inputs and outputs keep the loop alive */
  return 0;
}

void sea__stats_final(sea__stats_t *s) {
  if (s == NULL || s->final_written)
    return;
  uv_timer_stop(s->timer);
  write_line(s, 1);
  s->final_written = 1;
}

void sea__stats_free(sea__stats_t *s) {
  if (s == NULL)
    return;
  s->timer->data = NULL;
  uv_close((uv_handle_t *)s->timer, free_handle);
  sea__free(s);
}
