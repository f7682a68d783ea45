/* pipeline_policy.c: what a processor's refusal does (cfg.on_error): stop, skip, or send the
 * messages to the dead-letter output; and an output that failed, which stops the pipeline
 * whatever the policy. */
#include <string.h>

#include "pipeline_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Error policy
 * ------------------------------------------------------------------------------------------- */

static int reject_v(sea_pipeline_t *pl, size_t n, const char *fmt, va_list ap) {
  sea__vfmt(pl->why, sizeof pl->why, fmt, ap);
  pl->reject_n = n;
  return SEA_EINVAL;
}

int sea_pipeline_reject(sea_pipeline_t *pl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = reject_v(pl, 0, fmt, ap);
  va_end(ap);
  return rc;
}

int sea_pipeline_reject_first(sea_pipeline_t *pl, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = reject_v(pl, n, fmt, ap);
  va_end(ap);
  return rc;
}

/* Where a message is, as the stdio line format writes it: "key | seq", and " | shard" when the
 * shard is not 0 (a Kafka partition, a Redis shard): a seq alone is ambiguous across them. */
const char *sea__msg_where(const sea_message_t *m, char *buf, size_t n) {
  if (m->meta.shard_id)
    snprintf(buf, n, "%s | %llu | %llu", m->meta.stream_key ? m->meta.stream_key : "",
             (unsigned long long)m->meta.seq, (unsigned long long)m->meta.shard_id);
  else
    snprintf(buf, n, "%s | %llu", m->meta.stream_key ? m->meta.stream_key : "",
             (unsigned long long)m->meta.seq);
  return buf;
}

/* Apply the error policy to count messages from first. Returns true to go on. */
bool sea__pl_apply_policy(sea_pipeline_t *pl, pbatch_t *pb, size_t first, size_t count, int rc) {
  const sea_message_t *m = &pb->batch->msgs[first];
  const char *why = pl->why[0] ? pl->why : sea_strerror(rc);
  char where[320];
  switch (pl->cfg.on_error) {
  case SEA_ON_ERROR_STOP:
    set_error(pl, rc, "%s\n  at message %s of %s (not committed, nor anything after it)", why,
              sea__msg_where(m, where, sizeof where), pb->in->uri);
    return false;
  case SEA_ON_ERROR_SKIP:
    for (size_t k = first; k < first + count; k++)
      if (pl->cfg.on_skipped)
        pl->cfg.on_skipped(pl, pb->in->index, &pb->batch->msgs[k], why, pl->cfg.data);
    pl->st.skipped += count;
    return true;
  case SEA_ON_ERROR_DEAD_LETTER: {
    pl_output_t *dead = pl->out[pl->cfg.dead_letter];
    for (size_t k = first; k < first + count; k++) {
      sea_message_t dm = pb->batch->msgs[k];
      if (sea_producer_anchored(dead->p) != NULL)
        dm.meta.stream_key = NULL;
      pl->cur = &pb->slots[k];
      int src = sea_pipeline_send(pl, pl->cfg.dead_letter, &dm, 0);
      if (src != 0) {
        set_error(
            pl, src, "%s\n  at message %s of %s, which the dead-letter output %s refused: %s", why,
            sea__msg_where(&pb->batch->msgs[k], where, sizeof where), pb->in->uri, dead->uri,
            sea_producer_errmsg(dead->p)[0] ? sea_producer_errmsg(dead->p) : sea_strerror(src));
        return false;
      }
      if (pl->cfg.on_skipped)
        pl->cfg.on_skipped(pl, pb->in->index, &pb->batch->msgs[k], why, pl->cfg.data);
    }
    pl->st.skipped += count;
    return true;
  }
  }
  return false;
}

/* An output failed (its producer has an error): that stops the pipeline whatever the policy,
 * with the output's error as the cause. */
bool sea__pl_output_failed(sea_pipeline_t *pl) {
  for (size_t i = 0; i < pl->nout; i++) {
    sea_producer_t *p = pl->out[i]->p;
    if (sea_producer_error(p) != 0) {
      set_error(pl, sea_producer_error(p), "output %s: %s", pl->out[i]->uri,
                sea_producer_errmsg(p));
      return true;
    }
  }
  return false;
}
