/* streamer_consumer.c: consumers: their options, delivery to the user, end, pause and resume,
 * acks and commits, seek and rewind, and close. */
#include <string.h>

#include "streamer.h"

/* ---- consumer ---- */

static int parse_mode(sea_runtime_t *rt, const char *v, sea_mode_t *mode) {
  if (strcmp(v, "realtime") == 0)
    *mode = SEA_MODE_REALTIME;
  else if (strcmp(v, "resumable") == 0)
    *mode = SEA_MODE_RESUMABLE;
  else if (strcmp(v, "load-balanced") == 0 || strcmp(v, "load_balanced") == 0)
    *mode = SEA_MODE_LOAD_BALANCED;
  else
    return sea__rt_err(rt, SEA_EOPTION,
                       "option mode=%s: expected realtime, resumable or load-balanced", v);
  return 0;
}

static int parse_start(sea_runtime_t *rt, const char *v, sea_open_args_t *a) {
  uint64_t n;
  a->has_start = 1;
  if (strcmp(v, "beginning") == 0) {
    a->start_pos.kind = SEA_POS_BEGINNING;
  } else if (strcmp(v, "end") == 0) {
    a->start_pos.kind = SEA_POS_END;
  } else if (strcmp(v, "stored") == 0) {
    a->has_start = 0; /* the group's committed position (kcat's -o stored): the default */
  } else if (strncmp(v, "s@", 2) == 0 && sea__parse_u64(v + 2, &n) == 0 && n <= INT64_MAX / 1000) {
    a->start_is_time = 1;
    a->start_ts_us = (int64_t)n * 1000;
  } else if (v[0] == '-' && sea__parse_u64(v + 1, &n) == 0 && n > 0 && n <= INT64_MAX) {
    a->has_start = 0;
    a->start_from_end = (int64_t)n;
  } else if (sea__parse_u64(v, &n) == 0) {
    a->start_pos.kind = SEA_POS_AT;
    a->start_pos.seq = n;
  } else {
    return sea__rt_err(rt, SEA_EOPTION,
                       "option start=%s: expected beginning, end, stored, a sequence number N, "
                       "-N (N before the end) or s@MILLISECONDS",
                       v);
  }
  return 0;
}

static int consumer_args(sea_streamer_t *s, const sea_options_t *all, sea_open_args_t *a) {
  sea_runtime_t *rt = s->rt;
  const sea_plugin_t *d = &s->plugin->desc;
  const char *v;
  int rc;
  a->mode = SEA_MODE_REALTIME;
  a->group = sea_options_get(all, "group");
  if ((v = sea_options_get(all, "mode")) != NULL) {
    if ((rc = parse_mode(rt, v, &a->mode)))
      return rc;
  } else if (a->group) {
    a->mode = SEA_MODE_LOAD_BALANCED; /* a group implies sharing the work, as kcat -G does */
  }
  if (a->group && a->group[0] == '\0')
    return sea__rt_err(rt, SEA_EOPTION, "option group= is empty");
  if (a->mode != SEA_MODE_REALTIME && a->group == NULL)
    return sea__rt_err(rt, SEA_EOPTION, "mode=%s needs a group (option group=NAME, or -G NAME)",
                       a->mode == SEA_MODE_RESUMABLE ? "resumable" : "load-balanced");
  static const uint64_t mode_caps[] = {SEA_CAP_REALTIME, SEA_CAP_RESUMABLE, SEA_CAP_LOAD_BALANCED};
  static const char *const mode_names[] = {"realtime", "resumable", "load-balanced"};
  if (!(d->caps & mode_caps[a->mode]))
    return sea__rt_err(rt, SEA_ENOTSUP, "mode=%s: not supported by %s", mode_names[a->mode],
                       d->name);
  a->reset_earliest = a->mode != SEA_MODE_REALTIME; /* a new group reads what is there */
  if ((v = sea_options_get(all, "reset")) != NULL) {
    if (strcmp(v, "earliest") == 0)
      a->reset_earliest = 1;
    else if (strcmp(v, "latest") == 0)
      a->reset_earliest = 0;
    else
      return sea__rt_err(rt, SEA_EOPTION, "option reset=%s: expected earliest or latest", v);
  }
  if ((v = sea_options_get(all, "start")) != NULL) {
    if ((rc = parse_start(rt, v, a)))
      return rc;
    bool stored = strcmp(v, "stored") == 0;
    if (stored && a->mode == SEA_MODE_REALTIME)
      return sea__rt_err(rt, SEA_EOPTION,
                         "option start=stored: the stored position is a group's (give a group, "
                         "-G NAME, in resumable or load-balanced mode)");
    bool plain_end = a->has_start && !a->start_is_time && a->start_pos.kind == SEA_POS_END;
    bool can = a->start_is_time ? (d->caps & SEA_CAP_SEEK) : (d->caps & SEA_CAP_REWIND);
    if (!stored && !plain_end && !can)
      return sea__rt_err(rt, SEA_ENOTSUP, "option start=%s: %s cannot %s", v, d->name,
                         a->start_is_time ? "seek by time" : "rewind");
  }
  bool b = false;
  if ((v = sea_options_get(all, "stop_at_end")) != NULL) {
    if (sea__parse_bool(v, &b))
      return sea__rt_err(rt, SEA_EOPTION, "option stop_at_end=%s: expected true or false", v);
    a->stop_at_end = b;
  }
  uint64_t n = 0;
  if ((rc = sea__opt_u64(rt, all, "batch", &n)))
    return rc;
  if (n > UINT32_MAX)
    return sea__rt_err(rt, SEA_EOPTION, "option batch=%s: too large",
                       sea_options_get(all, "batch"));
  a->batch_size = (uint32_t)n;
  n = 0;
  if ((rc = sea__opt_u64(rt, all, "timeout", &n)))
    return rc;
  a->timeout_ms = n;
  return 0;
}

int sea_consumer_open(sea_streamer_t *s, const sea_options_t *opts, sea_consumer_t **out) {
  if (s == NULL || out == NULL)
    return SEA_EINVAL;
  sea_runtime_t *rt = s->rt;
  const sea_plugin_t *d = &s->plugin->desc;
  *out = NULL;
  rt->errmsg[0] = '\0';
  if (d->consumer_open == NULL)
    return sea__rt_err(rt, SEA_ENOTSUP, "%s: this backend has no consumer", d->name);
  sea__common_t co;
  int rc = sea__common_init(s, opts, SEA_OPT_CONSUMER, &co);
  if (rc != 0)
    return rc;
  sea_consumer_t *c = sea__calloc(1, sizeof *c);
  if (c == NULL) {
    sea__common_free(&co);
    return SEA_ENOMEM;
  }
  c->s = s;
  c->args.struct_size = sizeof c->args;
  c->args.rt = rt;
  c->args.uri = s->uri;
  c->args.backend_options = co.backend;
  rc = consumer_args(s, co.all, &c->args);
  if (rc == 0 && s->uri->key_count > 0) {
    c->keys = sea__calloc(s->uri->key_count, sizeof *c->keys);
    if (c->keys == NULL)
      rc = SEA_ENOMEM;
    for (size_t i = 0; rc == 0 && i < s->uri->key_count; i++)
      c->keys[i] = sea_stream_key(s->uri->keys[i], strlen(s->uri->keys[i]), &rc);
    c->args.keys = c->keys;
    c->args.key_count = s->uri->key_count;
  }
  if (rc == 0) {
    /* The group name must outlive co.all: keep it interned like a key if it is one. */
    if (c->args.group) {
      const char *g = sea_stream_key(c->args.group, strlen(c->args.group), NULL);
      if (g == NULL)
        rc = sea__rt_err(rt, SEA_EOPTION,
                         "option group=%s: a group name is 1 to %d of A-Z a-z 0-9 . _ -",
                         c->args.group, SEA_STREAM_KEY_MAX);
      c->args.group = g;
    }
  }
  if (rc == 0)
    rc = d->consumer_open(s->impl, c, &c->args, &c->impl);
  c->args.backend_options = NULL;
  sea__common_free(&co);
  if (rc != 0) {
    if (c->said[0] != '\0')
      sea__rt_err(rt, rc, "%s", c->said);
    else if (rt->errmsg[0] == '\0')
      sea__rt_err(rt, rc, "%s: cannot open a consumer: %s", d->name, sea_strerror(rc));
    sea__free(c->keys);
    sea__free(c);
    return rc < 0 ? rc : SEA_EBACKEND;
  }
  c->next = s->consumers;
  s->consumers = c;
  {
    static const char *const modes[] = {"realtime", "resumable", "load-balanced"};
    unsigned m = (unsigned)c->args.mode;
    sea__log(SEA_LOG_DEBUG, d->name, "consumer open on %s: mode %s%s%s",
             s->uri->raw ? s->uri->raw : "?", m < 3 ? modes[m] : "?",
             c->args.group ? ", group " : "", c->args.group ? c->args.group : "");
  }
  *out = c;
  return 0;
}

int sea_consumer_start(sea_consumer_t *c, sea_batch_cb on_batch, sea_end_cb on_end) {
  if (c->closing || c->ended)
    return SEA_ESTATE;
  c->on_batch = on_batch;
  c->on_end = on_end;
  if (c->started)
    return 0;
  c->started = true;
  sea__said_clear(c->said, c->s->rt);
  int rc = c->s->plugin->desc.consumer_start(c->impl);
  const char *said = sea__said(c->said, c->s->rt);
  if (rc)
    sea__set_msg(c->errmsg, "start: %s", said ? said : sea_strerror(rc));
  return rc;
}

static void deliver_now(sea_consumer_t *c, sea_batch_t *batch) {
  if (c->closing || c->on_batch == NULL) {
    sea_batch_release(batch);
    return;
  }
  c->in_callback++;
  c->on_batch(c, batch);
  c->in_callback--;
  sea_batch_release(batch);
}

/* ---- holding deliveries while paused ---- */

/* Keep batch behind the others held. Returns 0 or SEA_ENOMEM. */
static int hold(sea_consumer_t *c, sea_batch_t *batch) {
  if (c->held_count == c->held_cap) {
    size_t cap = c->held_cap ? c->held_cap * 2 : 8;
    sea_batch_t **q = sea__malloc(cap * sizeof *q);
    if (q == NULL)
      return SEA_ENOMEM;
    for (size_t i = 0; i < c->held_count; i++) /* unwrap the ring */
      q[i] = c->held[(c->held_head + i) % c->held_cap];
    sea__free(c->held);
    c->held = q;
    c->held_head = 0;
    c->held_cap = cap;
  }
  c->held[(c->held_head + c->held_count) % c->held_cap] = batch;
  c->held_count++;
  return 0;
}

static sea_batch_t *held_pop(sea_consumer_t *c) {
  sea_batch_t *b = c->held[c->held_head];
  c->held_head = (c->held_head + 1) % c->held_cap;
  c->held_count--;
  return b;
}

static void end_now(void *arg, void *unused);

/* Forget what is held: a seek or rewind moves the consumer, everything was revoked, or it closes
 * (what the plugin reads next comes from the new position; nothing held was acked, so nothing is
 * lost). */
static void held_drop(sea_consumer_t *c) {
  while (c->held_count > 0)
    sea_batch_release(held_pop(c));
  if (c->end_held) { /* the end that waited for them comes now */
    c->end_held = false;
    if (!c->closing)
      sea__defer(c->s->rt, end_now, c, NULL);
  }
}

/* After resume, on a loop turn of its own (never inside sea_consumer_resume): hand on what was
 * held, oldest first, until the consumer pauses again; then the end if it came meanwhile. */
static void release_held(void *arg, void *unused) {
  sea_consumer_t *c = arg;
  c->release_deferred = false;
  while (c->held_count > 0 && !c->paused && !c->closing)
    deliver_now(c, held_pop(c));
  if (c->held_count == 0 && c->end_held) {
    c->end_held = false;
    end_now(c, NULL);
  }
}

void sea__deliver(sea_consumer_t *c, sea_batch_t *batch) {
  if (c->closing || c->ended || c->on_batch == NULL || batch->count == 0) {
    sea_batch_release(batch);
    return;
  }
  /* Paused, or what was held is not all handed on yet: keep the order. (Out of memory, hand it
   * on now rather than lose it.) */
  if ((c->paused || c->held_count > 0) && hold(c, batch) == 0)
    return;
  deliver_now(c, batch);
}

static void end_now(void *arg, void *unused) {
  sea_consumer_t *c = arg;
  if (c->held_count > 0 && !c->closing) {
    c->end_held = true; /* the end comes after what was delivered before it */
    return;
  }
  if (c->on_end && !c->closing && c->ended) { /* (not if it was taken back meanwhile) */
    c->in_callback++;
    c->on_end(c, c->err ? c->err : SEA_EOF);
    c->in_callback--;
  }
}

void sea__consumer_end(sea_consumer_t *c, int status, const char *fmt, ...) {
  if (c->ended)
    return;
  c->ended = true;
  c->err = status == SEA_EOF ? 0 : status;
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(c->errmsg, sizeof c->errmsg, fmt, ap);
  va_end(ap);
  sea__defer(c->s->rt, end_now, c, NULL);
}

void sea__consumer_revoked(sea_consumer_t *c, int incremental) {
  /* Everything was revoked and resumes from the group's committed positions: what is held will
   * come again (to this consumer or another), and must not come after the revoke. */
  if (!incremental)
    held_drop(c);
  if (c->on_revoke && !c->closing) {
    c->in_callback++;
    c->on_revoke(c, incremental);
    c->in_callback--;
  }
}

void sea_consumer_on_revoke(sea_consumer_t *c, sea_revoke_cb cb) {
  if (c)
    c->on_revoke = cb;
}

#define CONSUMER_CALL(c, op, what, ...)                                                            \
  do {                                                                                             \
    if ((c)->closing)                                                                              \
      return SEA_ECLOSED;                                                                          \
    if ((c)->s->plugin->desc.op == NULL) {                                                         \
      sea__set_msg((c)->errmsg, "%s: not supported by %s", what, sea__backend_name((c)->s));       \
      return SEA_ENOTSUP;                                                                          \
    }                                                                                              \
    sea__said_clear((c)->said, (c)->s->rt); /* a backend may say more: host->consumer_error */     \
    int rc_ = (c)->s->plugin->desc.op((c)->impl, ##__VA_ARGS__);                                   \
    const char *said_ = sea__said((c)->said, (c)->s->rt);                                          \
    if (rc_ != 0 && rc_ != SEA_ENOTSUP)                                                            \
      sea__set_msg((c)->errmsg, "%s: %s", what, said_ ? said_ : sea_strerror(rc_));                \
    else if (rc_ == SEA_ENOTSUP)                                                                   \
      sea__set_msg((c)->errmsg, "%s: not supported by %s", what, sea__backend_name((c)->s));       \
    return rc_;                                                                                    \
  } while (0)

/* Pause and resume are the host's: it holds deliveries while paused (sea__deliver). The plugin's
 * consumer_pause and consumer_resume, if it has them, are hints to stop and start reading. */
int sea_consumer_pause(sea_consumer_t *c) {
  if (c->closing)
    return SEA_ECLOSED;
  if (c->paused)
    return 0;
  c->paused = true;
  if (c->s->plugin->desc.consumer_pause == NULL)
    return 0;
  CONSUMER_CALL(c, consumer_pause, "pause");
}

int sea_consumer_resume(sea_consumer_t *c) {
  if (c->closing)
    return SEA_ECLOSED;
  if (!c->paused)
    return 0;
  c->paused = false;
  if (c->held_count > 0 && !c->release_deferred && sea__defer(c->s->rt, release_held, c, NULL) == 0)
    c->release_deferred = true;
  if (c->s->plugin->desc.consumer_resume == NULL)
    return 0;
  CONSUMER_CALL(c, consumer_resume, "resume");
}

int sea_consumer_assign(sea_consumer_t *c, const char *key, uint64_t shard) {
  int err = SEA_EKEY;
  const char *k = key ? sea_stream_key(key, strlen(key), &err) : NULL;
  if (k == NULL) {
    sea__set_msg(c->errmsg, "assign: invalid stream key '%s'", key ? key : "(null)");
    return err;
  }
  CONSUMER_CALL(c, consumer_assign, "assign", k, shard);
}

int sea_consumer_unassign(sea_consumer_t *c, const char *key, uint64_t shard) {
  int err = SEA_EKEY;
  const char *k = key ? sea_stream_key(key, strlen(key), &err) : NULL;
  if (k == NULL) {
    sea__set_msg(c->errmsg, "unassign: invalid stream key '%s'", key ? key : "(null)");
    return err;
  }
  CONSUMER_CALL(c, consumer_unassign, "unassign", k, shard);
}

static int realtime_refuses(sea_consumer_t *c, const char *what) {
  if (c->args.mode != SEA_MODE_REALTIME)
    return 0;
  sea__set_msg(c->errmsg,
               "%s: a realtime consumer has no position to commit (use mode=resumable or "
               "load-balanced with a group)",
               what);
  return SEA_ESTATE;
}

int sea_consumer_ack(sea_consumer_t *c, const sea_message_t *m) {
  int rc = realtime_refuses(c, "ack");
  if (rc)
    return rc;
  CONSUMER_CALL(c, consumer_ack, "ack", m);
}

int sea_consumer_ack_pos(sea_consumer_t *c, const char *stream_key, uint64_t shard, uint64_t seq) {
  if (c == NULL || stream_key == NULL)
    return SEA_EINVAL;
  int rc = realtime_refuses(c, "ack_pos");
  if (rc)
    return rc;
  int err = SEA_EKEY;
  const char *k = sea_stream_key(stream_key, strlen(stream_key), &err);
  if (k == NULL) {
    char why[SEA__ERRMSG_MAX - 16];
    sea__key_why(why, sizeof why, stream_key, strlen(stream_key));
    sea__set_msg(c->errmsg, "ack_pos: %s", why);
    return err;
  }
  CONSUMER_CALL(c, consumer_ack_pos, "ack_pos", k, shard, seq);
}

int sea_consumer_lag(sea_consumer_t *c, sea_lag_t *out, size_t cap) {
  if (c == NULL || (out == NULL && cap > 0))
    return SEA_EINVAL;
  if (c->closing)
    return SEA_ECLOSED;
  if (c->s->plugin->desc.consumer_lag == NULL)
    return SEA_ENOTSUP; /* not an error of the consumer: its errmsg stays */
  if (cap > 0) /* the entries' reserved room reads 0 (seastreamer/types.h), whatever fills them */
    memset(out, 0, cap * sizeof *out);
  return c->s->plugin->desc.consumer_lag(c->impl, out, cap);
}

typedef int (*op_fn)(void *, sea_op_t *);

static int consumer_op(sea_consumer_t *c, const char *what, bool present, sea_done_cb cb,
                       void *data, sea_op_t **op) {
  if (c->closing)
    return SEA_ECLOSED;
  if (!present) {
    sea__set_msg(c->errmsg, "%s: not supported by %s", what, sea__backend_name(c->s));
    return SEA_ENOTSUP;
  }
  *op = sea__op_start(c->s->rt, &c->ops, c->errmsg, what, cb, data);
  sea__said_clear(c->said, c->s->rt); /* the plugin's call comes next (consumer_op_rc) */
  return *op ? 0 : SEA_ENOMEM;
}

static int consumer_op_rc(sea_consumer_t *c, sea_op_t *op, const char *what, int rc) {
  if (rc == 0)
    return 0;
  const char *said = sea__said(c->said, c->s->rt);
  if (rc == SEA_ENOTSUP)
    sea__set_msg(c->errmsg, "%s: not supported by %s", what, sea__backend_name(c->s));
  else
    sea__set_msg(c->errmsg, "%s: %s", what, said ? said : sea_strerror(rc));
  return sea__op_refused(op, rc);
}

int sea_consumer_commit(sea_consumer_t *c, sea_done_cb cb, void *data) {
  sea_op_t *op;
  int rc = realtime_refuses(c, "commit");
  if (rc == 0)
    rc = consumer_op(c, "commit", c->s->plugin->desc.consumer_commit != NULL, cb, data, &op);
  if (rc)
    return rc;
  return consumer_op_rc(c, op, "commit", c->s->plugin->desc.consumer_commit(c->impl, op));
}

/* A consumer that ended (stop_at_end reached the end, or it failed) delivers nothing more: moving
 * it would succeed and then deliver nothing, without a word. Its backend reads ahead, so it may
 * have reached the end well before its user took the last message: what it read still comes. */
static int ended_refuses(sea_consumer_t *c, const char *what) {
  if (!c->ended || c->closing)
    return 0;
  sea__set_msg(c->errmsg,
               "%s: the consumer has ended (%s); what it read before still comes; open a new "
               "consumer to read the stream again",
               what, c->err ? "it failed" : "stop_at_end: its backend read to the end");
  return SEA_EINVAL;
}

int sea_consumer_seek(sea_consumer_t *c, int64_t ts, sea_done_cb cb, void *data) {
  sea_op_t *op;
  int rc = ended_refuses(c, "seek");
  if (rc)
    return rc;
  rc = consumer_op(c, "seek", c->s->plugin->desc.consumer_seek != NULL, cb, data, &op);
  if (rc)
    return rc;
  rc = consumer_op_rc(c, op, "seek", c->s->plugin->desc.consumer_seek(c->impl, ts, op));
  if (rc == 0)
    held_drop(c);
  return rc;
}

int sea_consumer_rewind(sea_consumer_t *c, sea_pos_t pos, sea_done_cb cb, void *data) {
  sea_op_t *op;
  if (pos.kind != SEA_POS_BEGINNING && pos.kind != SEA_POS_END && pos.kind != SEA_POS_AT)
    return SEA_EINVAL;
  int rc = ended_refuses(c, "rewind");
  if (rc)
    return rc;
  rc = consumer_op(c, "rewind", c->s->plugin->desc.consumer_rewind != NULL, cb, data, &op);
  if (rc)
    return rc;
  rc = consumer_op_rc(c, op, "rewind", c->s->plugin->desc.consumer_rewind(c->impl, pos, op));
  if (rc == 0)
    held_drop(c);
  return rc;
}

/* The pipeline's exactly once, after an aborted window: back to the group's committed positions
 * (SEA_POS_COMMITTED_, plugin.h). A consumer that ended at its end (not one that failed) is
 * taken back: it delivers again, and ends again once it is back at its end. */
int sea__consumer_rewind_committed(sea_consumer_t *c, sea_done_cb cb, void *data) {
  sea_op_t *op;
  if (c->ended && c->err != 0)
    return ended_refuses(c, "rewind");
  if (!(c->s->plugin->desc.caps & SEA_CAP_TRANSACTIONS) || c->s->plugin->desc.abi_minor < 2) {
    /* (a plugin older than ABI 1.2 would take the kind for a position) */
    sea__set_msg(c->errmsg, "rewind to the committed positions: not supported by %s%s",
                 sea__backend_name(c->s),
                 c->s->plugin->desc.abi_minor < 2 ? " (a plugin older than ABI 1.2)" : "");
    return SEA_ENOTSUP;
  }
  int rc = consumer_op(c, "rewind", c->s->plugin->desc.consumer_rewind != NULL, cb, data, &op);
  if (rc)
    return rc;
  sea_pos_t pos = {SEA_POS_COMMITTED_, 0};
  rc = consumer_op_rc(c, op, "rewind", c->s->plugin->desc.consumer_rewind(c->impl, pos, op));
  if (rc == 0) {
    c->ended = false;
    held_drop(c);
  }
  return rc;
}

sea_mode_t sea_consumer_mode(const sea_consumer_t *c) {
  return c->args.mode;
}
int sea_consumer_error(const sea_consumer_t *c) {
  return c->err;
}
const char *sea_consumer_errmsg(const sea_consumer_t *c) {
  return c->errmsg;
}
void *sea_consumer_get_data(const sea_consumer_t *c) {
  return c->data;
}
void sea_consumer_set_data(sea_consumer_t *c, void *data) {
  c->data = data;
}

static void consumer_free(sea_consumer_t *c) {
  held_drop(c);
  sea__free(c->held);
  sea__free(c->keys);
  sea__free(c);
}

static void consumer_close_now(void *arg, void *deferred) {
  sea_consumer_t *c = arg;
  sea_streamer_t *s = c->s;
  if (deferred)
    s->pending_closes--;
  sea__defer_cancel(s->rt, c);
  s->plugin->desc.consumer_close(c->impl);
  sea__ops_cancel(&c->ops);
  for (sea_consumer_t **pp = &s->consumers; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  consumer_free(c);
}

void sea_consumer_close(sea_consumer_t *c) {
  if (c == NULL || c->closing)
    return;
  c->closing = true;
  if (c->in_callback) {
    /* Closed from its own callback, maybe inside the plugin's delivery loop: finish later. */
    for (sea_consumer_t **pp = &c->s->consumers; *pp; pp = &(*pp)->next)
      if (*pp == c) {
        *pp = c->next;
        break;
      }
    c->next = NULL;
    c->s->pending_closes++;
    sea__defer(c->s->rt, consumer_close_now, c, c);
    return;
  }
  consumer_close_now(c, NULL);
}
