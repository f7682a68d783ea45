/* relay.c: a pipeline with one input, one output and the identity processor: what `relay`,
 * `consume` and `produce` run. Every delivery rule is the pipeline's (pipeline.c). */
#include <string.h>

#include "internal.h"

struct sea_relay {
  sea_pipeline_t *pl;
  sea_relay_config_t cfg;
  sea_relay_done_cb on_done;
  const char *broadcast; /* the key stdio gives a line without one */
  size_t message_key_len;
  sea_kv_t *hdrs; /* a message's own headers and cfg.headers, for one send */
  size_t hdrs_cap;
};

/* m's headers followed by the configured ones, in r->hdrs. The copy of the message that carries
 * them has no block, so a send the pipeline must hold (output full) copies all its bytes. */
static int add_headers(sea_relay_t *r, sea_message_t *out) {
  size_t n = out->header_count + r->cfg.header_count;
  if (n > r->hdrs_cap) {
    sea_kv_t *h = sea__realloc(r->hdrs, n * sizeof *h);
    if (h == NULL)
      return SEA_ENOMEM;
    r->hdrs = h;
    r->hdrs_cap = n;
  }
  if (out->header_count)
    memcpy(r->hdrs, out->headers, out->header_count * sizeof *r->hdrs);
  memcpy(r->hdrs + out->header_count, r->cfg.headers, r->cfg.header_count * sizeof *r->hdrs);
  out->headers = r->hdrs;
  out->header_count = n;
  out->payload.block = NULL;
  return 0;
}

/* The identity processor, a batch at a time: sends each message until the output is full, then
 * says how many it handled (the pipeline hands the rest again once the output drains). */
static int relay_process(sea_pipeline_t *pl, size_t input, const sea_batch_t *batch, size_t first,
                         size_t count, void *data) {
  sea_relay_t *r = data;
  sea_producer_t *p = sea_pipeline_output(pl, 0);
  bool anchored = sea_producer_anchored(p) != NULL;
  unsigned flags = r->cfg.keep_meta ? SEA_PIPELINE_KEEP_META : 0;
  for (size_t i = first; i < first + count; i++) {
    const sea_message_t *m = &batch->msgs[i];
    sea_message_t out;
    bool set_key = r->cfg.message_key && m->key == NULL;
    if ((anchored && (!r->cfg.keep_stream_key || m->meta.stream_key == r->broadcast)) || set_key ||
        r->cfg.header_count) {
      out = *m; /* changed on its way: a copy of the header, never of the bytes */
      if (anchored && (!r->cfg.keep_stream_key || m->meta.stream_key == r->broadcast))
        out.meta.stream_key = NULL;
      if (set_key) {
        out.key = (const uint8_t *)r->cfg.message_key;
        out.key_len = r->message_key_len;
      }
      if (r->cfg.header_count && add_headers(r, &out) != 0) {
        if (i > first)
          return (int)(i - first);
        return sea_pipeline_reject(pl, "out of memory adding the headers");
      }
      m = &out;
    }
    int rc = sea_pipeline_send(pl, 0, m, flags);
    if (rc != 0) {
      if (i > first)
        return (int)(i - first); /* the next call starts at this message and says why */
      sea_pipeline_reject(pl, "the output %s refused it: %s", p->s->uri->raw,
                          p->errmsg[0] ? p->errmsg : sea_strerror(rc));
      return rc; /* the status of the stop */
    }
    if (sea_pipeline_full(pl) && i + 1 < first + count)
      return (int)(i + 1 - first);
  }
  return 0;
}

static void relay_done(sea_pipeline_t *pl, int status) {
  sea_relay_t *r = sea_pipeline_get_data(pl);
  if (r->on_done)
    r->on_done(r, status);
}

int sea_relay_start(sea_consumer_t *in, sea_producer_t *out, const sea_relay_config_t *cfg,
                    sea_relay_done_cb on_done, sea_relay_t **out_relay) {
  if (in == NULL || out == NULL || out_relay == NULL)
    return SEA_EINVAL;
  sea_relay_t *r = sea__calloc(1, sizeof *r);
  if (r == NULL)
    return SEA_ENOMEM;
  if (cfg)
    r->cfg = *cfg;
  r->on_done = on_done;
  r->broadcast = sea_stream_key("broadcast", 9, NULL);
  r->message_key_len = r->cfg.message_key ? strlen(r->cfg.message_key) : 0;
  sea_pipeline_config_t pc = {
      .struct_size = sizeof pc,
      .max_count = r->cfg.max_count,
      .commit_interval_ms = r->cfg.commit_interval_ms,
      .on_error = SEA_ON_ERROR_STOP,
      .per_batch = 1,
      .process = relay_process,
      .data = r,
      .on_done = relay_done,
      .exactly_once = r->cfg.exactly_once,
      .transactional_id = r->cfg.transactional_id,
  };
  int rc = sea_pipeline_new(in->s->rt, &pc, &r->pl);
  if (rc == 0)
    rc = sea_pipeline_add_input(r->pl, in, NULL);
  if (rc == 0)
    rc = sea_pipeline_add_output(r->pl, out, NULL);
  if (rc == 0)
    rc = sea_pipeline_start(r->pl);
  *out_relay = r; /* even on failure: sea_relay_errmsg says why, sea_relay_free cleans up */
  return rc;
}

void sea_relay_stop(sea_relay_t *r) {
  if (r != NULL)
    sea_pipeline_stop(r->pl);
}

uint64_t sea_relay_count(const sea_relay_t *r) {
  sea_pipeline_stats_t st;
  sea_pipeline_stats(r->pl, &st);
  return st.processed;
}

const char *sea_relay_errmsg(const sea_relay_t *r) {
  return r->pl ? sea_pipeline_errmsg(r->pl) : "out of memory";
}

sea_pipeline_t *sea_relay_pipeline(sea_relay_t *r) {
  return r ? r->pl : NULL;
}

void sea_relay_free(sea_relay_t *r) {
  if (r == NULL)
    return;
  sea_pipeline_free(r->pl);
  sea__free(r->hdrs);
  sea__free(r);
}
