/* file_consumer.c: the file backend's consumers (a room of the file plugin; the rooms and what
 * they share are in file_internal.h). file.c's plugin table calls the file_consumer_*
 * functions below (ack and commit are in file_group.c, with the cursors groups share and the
 * committed positions); the rest is this room's own.
 *
 * Consumer. One cursor over the file, delivering the messages of the subscribed keys (all keys
 * when the URI names none) in file order. Start: start= (beginning, end, SEQ, s@MS, -N: the
 * last N messages of each stream), else for a
 * group (resumable or load-balanced) its committed position (kept in PATH.GROUP.pos beside the
 * file, written with fsync and rename on a worker thread), else reset=earliest → beginning,
 * else the end (live). At the end of the data it ends with SEA_EOF if stop_at_end, else it
 * follows appends: woken by the host's file-change events (libuv's), with a poll every
 * poll_interval ms as the fallback (default 1 s with file events, 100 ms without); a deleted file,
 * or one cut before the reading position, ends it with SEA_EIO.
 * An end-of-stream message ends it with SEA_EOF. A torn last frame is waited for when following
 * (and read afresh on every poll) and ends a stop_at_end replay cleanly. Damage (bad checksum,
 * impossible length, broken beacon) ends it with SEA_EFORMAT naming the byte offset, unless
 * on_damage=skip, which logs it and goes on from the next beacon. seek(time) and rewind(seq)
 * find, by binary search over the beacons, the last beacon that lies before the target of every
 * stream the consumer reads (the streams it met and those the first and last beacons name),
 * start there and skip each stream's messages before its target: the first message with a
 * timestamp strictly after the time (as SeaStreamer does), or with seq >= the seq.
 * Load-balanced consumers of one group on one file (in this process) share one cursor, so each
 * message goes to one of them, batch by batch; they should subscribe to the same keys. A seek or
 * rewind by one moves the group. ack/commit keep the highest acked position: commit at-least-
 * once after processing in order.
 * Options: poll_interval=MS, on_damage=stop|skip, max_frame=BYTES.
 *
 * Reads and writes of a regular file are done on the loop thread, a bounded amount per turn
 * (page-cache I/O does not wait on the network); the commit's fsync runs on the work queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Consumer
 * ---------------------------------------------------------------------------------------------- */

static void consumer_tick(sea_timer_t *t, void *data);

/* Come back in ms (0: on the next turn), unless already armed (a seek from a delivery wins
 * over the poll the turn would arm after it). */
static void consumer_arm(file_consumer_t *fc, uint64_t ms) {
  if (fc->armed || fc->closed || fc->ended || !fc->started || fc->paused)
    return;
  fc->armed = 1;
  sea_host->timer_start(fc->timer, ms, 0);
}

static void consumer_disarm(file_consumer_t *fc) {
  fc->armed = 0;
  sea_host->timer_stop(fc->timer);
}

static const char *consumer_key(file_consumer_t *fc, const uint8_t *key, uint8_t len) {
  size_t i;
  const char *k;
  for (i = 0; i < fc->cur->nkc; i++)
    if (fc->cur->kc[i].len == len && memcmp(fc->cur->kc[i].buf, key, len) == 0)
      return fc->cur->kc[i].key;
  k = len ? sea_host->stream_key((const char *)key, len) : NULL;
  if (k != NULL && fc->cur->nkc < FILE_KEY_CACHE) {
    memcpy(fc->cur->kc[fc->cur->nkc].buf, key, len);
    fc->cur->kc[fc->cur->nkc].len = len;
    fc->cur->kc[fc->cur->nkc].key = k;
    fc->cur->nkc++;
  }
  return k;
}

static file_stream_t *consumer_stream(file_consumer_t *fc, const char *key, uint64_t shard) {
  for (size_t i = 0; i < fc->cur->nstreams; i++)
    if (fc->cur->streams[i].key == key && fc->cur->streams[i].shard == shard)
      return &fc->cur->streams[i];
  if (SEA_GROW(fc->cur->streams, fc->cur->capstreams, fc->cur->nstreams + 1, 8) != 0)
    return NULL;
  fc->cur->streams[fc->cur->nstreams].key = key;
  fc->cur->streams[fc->cur->nstreams].shard = shard;
  fc->cur->streams[fc->cur->nstreams].reached = 0;
  fc->cur->streams[fc->cur->nstreams].count = 0;
  fc->cur->streams[fc->cur->nstreams].skip = 0;
  return &fc->cur->streams[fc->cur->nstreams++];
}

static int consumer_wants(const file_consumer_t *fc, const char *key, uint64_t shard) {
  size_t i;
  if (fc->nassigned > 0) {
    for (i = 0; i < fc->nassigned; i++)
      if (fc->assigned[i].key == key && fc->assigned[i].shard == shard)
        return 1;
    return 0;
  }
  if (fc->nkeys == 0)
    return 1;
  for (i = 0; i < fc->nkeys; i++)
    if (fc->keys[i] == key)
      return 1;
  return 0;
}

static void consumer_unwatch(file_consumer_t *fc);

static void consumer_end(file_consumer_t *fc, int status, const char *msg) {
  fc->ended = 1;
  consumer_disarm(fc);
  consumer_unwatch(fc);
  sea_host->consumer_end(fc->c, status, "%s", msg);
}

/* Meet every stream with a frame before offset upto, reading on from where the last call
 * stopped (each frame once per cursor). Beacons name some streams, not all (spec 6.6: none at
 * all below an interval of 571), and a seek or start=-N that knew only those would pass over a
 * stream that has been silent since. 1 if it met a stream not known before, 0 if not, or
 * SEA_ENOMEM. Damage ends the pass: reading there reports it. */
static int consumer_learn(file_consumer_t *fc, uint64_t upto) {
  file_cursor_t *cur = fc->cur;
  size_t before = cur->nstreams;
  const char *last = NULL;
  uint64_t last_shard = 0;
  ss_msg_t m;
  if (cur->learned < SS_HEADER_SIZE)
    cur->learned = SS_HEADER_SIZE;
  if (cur->learned >= upto)
    return 0;
  ss_file_goto(&cur->f, cur->learned);
  while (cur->learned < upto && ss_file_next(&cur->f, &m) == SS_OK) {
    cur->learned = m.end;
    if (m.eos)
      continue;
    const char *key = consumer_key(fc, m.key, m.klen);
    if (key == NULL || (key == last && m.shard == last_shard)) /* (runs of one stream) */
      continue;
    if (consumer_stream(fc, key, m.shard) == NULL)
      return SEA_ENOMEM;
    last = key;
    last_shard = m.shard;
  }
  return cur->nstreams > before;
}

/* Position the cursor for seek/rewind: beacon P for every stream we read and know of, the
 * lowest of them (0 if one cannot be placed), then the filter skips what precedes each target.
 * The streams known are those met, those the first and last beacons name, and every stream with
 * a frame before P (consumer_learn): P is placed again if that met new ones. */
static int consumer_position(file_consumer_t *fc, int kind, uint64_t target, char *err,
                             size_t errlen) {
  uint64_t P, pos, B = ss_file_size(&fc->cur->f) / fc->cur->f.header.interval;
  ss_beacon_t *b = sea_host->alloc(sizeof *b);
  ss_stream_ref_t *refs;
  size_t i, nrefs;
  int rc, pass = 0;
  if (b == NULL)
    return SEA_ENOMEM;
  /* Streams the first and last beacons name join those already met. */
  for (uint64_t k = 1; k <= B; k = k == B ? B + 1 : B) {
    if (ss_file_beacon(&fc->cur->f, k, b, err, errlen) == SS_OK)
      for (i = 0; i < b->count; i++) {
        const char *key = consumer_key(fc, b->markers[i].key, b->markers[i].klen);
        if (key != NULL && consumer_stream(fc, key, b->markers[i].shard) == NULL) {
          sea_host->free(b);
          return SEA_ENOMEM;
        }
      }
  }
  sea_host->free(b);
again:
  P = UINT64_MAX;
  nrefs = 0;
  refs = sea_host->calloc(fc->cur->nstreams + 1, sizeof *refs);
  if (refs == NULL)
    return SEA_ENOMEM;
  for (i = 0; i < fc->cur->nstreams; i++) {
    file_stream_t *st = &fc->cur->streams[i];
    st->reached = 0;
    /* The end-of-stream record is only in beacons after it: it would make every beacon
     * before it undecided. */
    if (!consumer_wants(fc, st->key, st->shard) || strcmp(st->key, SS_EOS_KEY) == 0)
      continue;
    refs[nrefs].key = (const uint8_t *)st->key;
    refs[nrefs].klen = strlen(st->key);
    refs[nrefs].shard = st->shard;
    nrefs++;
  }
  if (nrefs > 0)
    ss_file_seek_streams(&fc->cur->f, refs, nrefs, kind == 1, target, &P);
  sea_host->free(refs);
  if (P == UINT64_MAX)
    P = 0;
  rc = ss_file_after_beacon(&fc->cur->f, P, &pos, err, errlen);
  if (rc == SS_MORE) /* past the end */
    rc = ss_file_after_beacon(&fc->cur->f, 0, &pos, err, errlen);
  if (rc != SS_OK)
    return rc == SS_NOMEM ? SEA_ENOMEM : SEA_EFORMAT;
  if (pass++ == 0) {
    /* (P only moves back, and every stream before the first P is known after one pass) */
    int met = consumer_learn(fc, pos);
    if (met < 0)
      return met;
    if (met)
      goto again;
  }
  ss_file_goto(&fc->cur->f, pos);
  fc->cur->filter = kind;
  fc->cur->target = target;
  return 0;
}

/* The number of streams read that have fewer than n messages counted. */
static size_t from_end_short(file_consumer_t *fc, uint64_t n) {
  size_t short_of = 0;
  for (size_t i = 0; i < fc->cur->nstreams; i++) {
    const file_stream_t *st = &fc->cur->streams[i];
    if (consumer_wants(fc, st->key, st->shard) && strcmp(st->key, SS_EOS_KEY) != 0 && st->count < n)
      short_of++;
  }
  return short_of;
}

/* start=-N: the last N messages of every stream read. Count each stream's messages from a
 * beacon to the end, going back twice as far each time, until every stream has N in the range
 * (or the range is the whole file); then skip count - N of each. Every stream: those met in the
 * range, and those before it (consumer_learn), whose count there is 0. */
static int consumer_from_end(file_consumer_t *fc, uint64_t n, char *err, size_t errlen) {
  file_cursor_t *cur = fc->cur;
  uint64_t B = ss_file_size(&cur->f) / cur->f.header.interval, step = 0, k, pos = SS_HEADER_SIZE;
  ss_msg_t m;
  int rc;
  /* The streams the first and last beacons name join in, as for a seek. */
  if ((rc = consumer_position(fc, 2, 0, err, errlen)) != 0)
    return rc;
  for (;;) {
    size_t i, short_of;
    k = B > step ? B - step : 0;
    rc = ss_file_after_beacon(&cur->f, k, &pos, err, errlen);
    if (rc == SS_MORE && k > 0) {
      step = step ? step * 2 : 1;
      continue;
    }
    if (rc != SS_OK)
      return rc == SS_NOMEM ? SEA_ENOMEM : SEA_EFORMAT;
    for (i = 0; i < cur->nstreams; i++)
      cur->streams[i].count = 0;
    ss_file_goto(&cur->f, pos);
    while ((rc = ss_file_next(&cur->f, &m)) == SS_OK && !m.eos) {
      const char *key = consumer_key(fc, m.key, m.klen);
      file_stream_t *st;
      if (key == NULL || !consumer_wants(fc, key, m.shard))
        continue;
      if ((st = consumer_stream(fc, key, m.shard)) == NULL)
        return SEA_ENOMEM;
      st->count++;
    }
    if (rc == SS_ERR) {
      snprintf(err, errlen, "%s", cur->f.r.err);
      return SEA_EFORMAT;
    }
    if (rc == SS_NOMEM)
      return SEA_ENOMEM;
    short_of = from_end_short(fc, n);
    if (short_of == 0 && k > 0) { /* streams silent since pos are known only by reading */
      int met = consumer_learn(fc, pos);
      if (met < 0)
        return met;
      if (met)
        short_of = from_end_short(fc, n);
    }
    if (k == 0 || short_of == 0)
      break;
    step = step ? step * 2 : 1;
  }
  for (size_t i = 0; i < cur->nstreams; i++)
    cur->streams[i].skip = cur->streams[i].count > n ? cur->streams[i].count - n : 0;
  ss_file_goto(&cur->f, pos);
  cur->filter = 3;
  return 0;
}

static int consumer_goto(file_consumer_t *fc, sea_pos_t pos, char *err, size_t errlen) {
  uint64_t off;
  int rc;
  fc->cur->filter = 0;
  if (pos.kind == SEA_POS_BEGINNING) {
    ss_file_goto(&fc->cur->f, SS_HEADER_SIZE);
    return 0;
  }
  if (pos.kind == SEA_POS_END) {
    rc = ss_file_live_start(&fc->cur->f, &off, err, errlen);
    if (rc != SS_OK)
      return rc == SS_NOMEM ? SEA_ENOMEM : SEA_EFORMAT;
    ss_file_goto(&fc->cur->f, off);
    return 0;
  }
  return consumer_position(fc, 2, pos.seq, err, errlen);
}

static void cursor_release(file_cursor_t *cur) {
  if (cur == NULL || --cur->refs > 0)
    return;
  file_group_forget(cur);
  ss_file_close(&cur->f);
  if (cur->fd >= 0)
    close(cur->fd);
  sea_host->free(cur->streams);
  sea_host->free(cur->pos_path);
  sea_host->free(cur);
}

static void consumer_unwatch(file_consumer_t *fc) {
  if (fc->fswatch != NULL)
    sea_host->fswatch_stop(fc->fswatch);
  fc->fswatch = NULL;
}

static void consumer_free(file_consumer_t *fc) {
  sea_host->timer_close(fc->timer);
  consumer_unwatch(fc);
  cursor_release(fc->cur);
  sea_host->free(fc->keys);
  sea_host->free(fc->assigned);
  sea_host->free(fc->jobs);
  sea_host->free(fc);
}

int file_consumer_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *args, void **impl) {
  file_streamer_t *fs = simpl;
  file_opts_t fo;
  file_consumer_t *fc;
  file_cursor_t *cur;
  struct stat st;
  char err[256];
  int rc;
  file_parse_opts(args->backend_options, &fo);
  fc = sea_host->calloc(1, sizeof *fc);
  if (fc == NULL)
    return SEA_ENOMEM;
  if ((fc->timer = sea_host->timer_init(args->rt, consumer_tick, fc)) == NULL) {
    sea_host->free(fc);
    return SEA_ENOMEM;
  }
  fc->c = c;
  fc->rt = args->rt;
  fc->fs = fs;
  fc->mode = args->mode;
  fc->group = args->group;
  fc->stop_at_end = args->stop_at_end;
  fc->skip_damage = fo.skip_damage;
  fc->poll_ms = fo.poll_ms;
  fc->poll_set = fo.poll_set;
  fc->batch_size = args->batch_size ? args->batch_size : FILE_BATCH_DEFAULT;
  if (fc->batch_size > FILE_BATCH_MAX)
    fc->batch_size = FILE_BATCH_MAX;
  if (!fs->keyless && args->key_count > 0) {
    fc->keys = sea_host->calloc(args->key_count, sizeof *fc->keys);
    if (fc->keys == NULL) {
      consumer_free(fc);
      return SEA_ENOMEM;
    }
    memcpy(fc->keys, args->keys, args->key_count * sizeof *fc->keys);
    fc->nkeys = args->key_count;
    /* SeaStreamer's name for "every stream". */
    for (size_t i = 0; i < args->key_count; i++)
      if (strcmp(args->keys[i], "SEA_STREAMER_WILDCARD") == 0)
        fc->nkeys = 0;
  }
  if (stat(fs->path, &st) != 0) {
    sea_host->set_error(args->rt, "file: cannot open %s: %s", fs->path, strerror(errno));
    rc = errno == ENOENT ? SEA_ECONNECT : SEA_EIO;
    consumer_free(fc);
    return rc;
  }
  /* A load-balanced member joins its group's position if the group is already reading. */
  if (args->mode == SEA_MODE_LOAD_BALANCED && args->group != NULL &&
      (cur = file_group_find(st.st_dev, st.st_ino, args->group)) != NULL) {
    cur->refs++;
    fc->cur = cur;
    *impl = fc;
    sea_host->log(SEA_LOG_INFO, FILE_NAME, "%s: joined group %s (member %zu of this process)",
                  fs->path, args->group, cur->refs);
    return 0;
  }
  cur = fc->cur = sea_host->calloc(1, sizeof *cur);
  if (cur == NULL) {
    consumer_free(fc);
    return SEA_ENOMEM;
  }
  cur->refs = 1;
  cur->fd = open(fs->path, O_RDONLY | O_CLOEXEC);
  if (cur->fd < 0) {
    sea_host->set_error(args->rt, "file: cannot open %s: %s", fs->path, strerror(errno));
    rc = errno == ENOENT ? SEA_ECONNECT : SEA_EIO;
    consumer_free(fc);
    return rc;
  }
  rc = ss_file_open(&cur->f, cur->fd, file_realloc, err, sizeof err);
  if (rc != SS_OK) {
    sea_host->set_error(args->rt, "file: %s: %s", fs->path, rc == SS_NOMEM ? "out of memory" : err);
    consumer_free(fc);
    return rc == SS_NOMEM ? SEA_ENOMEM : SEA_EFORMAT;
  }
  cur->f.r.max_frame = fo.max_frame;
  fstat(cur->fd, &st);
  cur->dev = st.st_dev;
  cur->ino = st.st_ino;
  if (fc->mode != SEA_MODE_REALTIME && fc->group != NULL) {
    size_t n = strlen(fs->path) + strlen(fc->group) + 8;
    cur->pos_path = sea_host->alloc(n);
    if (cur->pos_path == NULL) {
      consumer_free(fc);
      return SEA_ENOMEM;
    }
    snprintf(cur->pos_path, n, "%s.%s.pos", fs->path, fc->group);
  }

  err[0] = '\0';
  if (args->has_start && args->start_is_time) {
    rc = consumer_position(fc, 1, (uint64_t)(args->start_ts_us / 1000), err, sizeof err);
  } else if (args->start_from_end > 0) {
    rc = consumer_from_end(fc, (uint64_t)args->start_from_end, err, sizeof err);
  } else if (args->has_start) {
    rc = consumer_goto(fc, args->start_pos, err, sizeof err);
  } else {
    uint64_t committed = 0;
    if (fc->cur->pos_path != NULL && (rc = file_group_read_committed(fc, &committed)) != 0) {
      sea_host->set_error(args->rt, "file: cannot read the committed position in %s: %s",
                          fc->cur->pos_path, file_strerror(rc));
      consumer_free(fc);
      return rc;
    }
    if (committed > 0) {
      ss_file_goto(&fc->cur->f, committed);
      fc->cur->acked = committed;
      rc = 0;
    } else {
      sea_pos_t p = {args->reset_earliest ? SEA_POS_BEGINNING : SEA_POS_END, 0};
      rc = consumer_goto(fc, p, err, sizeof err);
    }
  }
  if (rc != 0) {
    sea_host->set_error(args->rt, "file: %s: %s", fs->path, err[0] ? err : file_strerror(rc));
    consumer_free(fc);
    return rc;
  }
  if (args->mode == SEA_MODE_LOAD_BALANCED && args->group != NULL)
    file_group_share(cur, args->group);
  if (fc->group != NULL && cur->pos_path != NULL)
    sea_host->log(SEA_LOG_INFO, FILE_NAME, "%s: opened for reading, group %s (%s), %s offset %llu",
                  fs->path, fc->group,
                  fc->mode == SEA_MODE_LOAD_BALANCED ? "load-balanced" : "resumable",
                  cur->acked > 0 ? "resuming at its committed" : "starting at",
                  (unsigned long long)cur->f.r.pos);
  else
    sea_host->log(SEA_LOG_INFO, FILE_NAME,
                  "%s: opened for reading (realtime), starting at offset %llu", fs->path,
                  (unsigned long long)cur->f.r.pos);
  *impl = fc;
  return 0;
}

/* The file changed (the host's file events): look at once. */
static void consumer_on_change(sea_fswatch_t *w, int status, void *data) {
  file_consumer_t *fc = data;
  (void)w;
  if (status < 0) {
    consumer_unwatch(fc); /* the timer alone goes on */
    return;
  }
  consumer_disarm(fc);
  consumer_arm(fc, 0);
}

/* Wait for the file to grow: the host's file-change events (libuv's, inotify on Linux), plus a
 * poll every poll_interval ms as the fallback (default 100 ms without events, 1 s with them).
 * Never a busy loop. */
static void consumer_follow(file_consumer_t *fc) {
  uint64_t ms = fc->poll_ms;
  if (fc->fswatch == NULL && !fc->fswatch_tried) {
    fc->fswatch_tried = 1;
    fc->fswatch = sea_host->fswatch_start(fc->rt, fc->fs->path, consumer_on_change, fc);
    if (fc->fswatch == NULL)
      sea_host->log(SEA_LOG_INFO, FILE_NAME, "%s: no file-change events; polling every %llu ms",
                    fc->fs->path, (unsigned long long)ms);
  }
  if (fc->fswatch != NULL && !fc->poll_set && ms < 1000)
    ms = 1000;
  consumer_arm(fc, ms);
}

/* consumer_run's "more is there: come back at once". */
#define SS_RESUME 2

/* After damage with on_damage=skip: go to the first frame after beacon cur->resync. If that
 * beacon is not there yet, wait for it (SS_MORE); if it is broken too, try the next one. */
static int consumer_resync(file_consumer_t *fc) {
  file_cursor_t *cur = fc->cur;
  char err[256];
  uint64_t pos;
  for (;;) {
    int rc = ss_file_after_beacon(&cur->f, cur->resync, &pos, err, sizeof err);
    if (rc == SS_OK) {
      cur->resync = 0;
      ss_file_goto(&cur->f, pos);
      return SS_OK;
    }
    if (rc != SS_ERR) {
      cur->f.r.partial = 0;
      return rc;
    }
    sea_host->log(SEA_LOG_WARN, FILE_NAME, "%s: %s; skipping to beacon %llu", fc->fs->path, err,
                  (unsigned long long)(cur->resync + 1));
    cur->resync++;
  }
}

/* Deliver up to batch_size messages. Payloads are copied into blocks of FILE_BLOCK_SIZE (or
 * one block for a bigger payload) that the batch's messages share. */
static void consumer_run(file_consumer_t *fc) {
  sea_batch_t *batch = NULL;
  sea_block_t *blk = NULL;
  size_t used = 0, cap = 0;
  ss_msg_t m;
  int rc, end_status = 0;
  const char *end_fmt = NULL;
  char endmsg[320];

  batch = sea_host->batch_new(fc->batch_size);
  if (batch == NULL) {
    consumer_end(fc, SEA_ENOMEM, "file: out of memory for a batch");
    return;
  }
  rc = fc->cur->resync ? consumer_resync(fc) : SS_OK;
  for (; rc == SS_OK;) {
    const char *key;
    sea_message_t *sm;
    if (batch->count == fc->batch_size) {
      rc = SS_RESUME;
      break;
    }
    rc = ss_file_next(&fc->cur->f, &m);
    if (rc != SS_OK)
      break;
    if (m.eos) {
      fc->cur->eos = 1;
      end_status = SEA_EOF;
      snprintf(endmsg, sizeof endmsg, "file: %s: end-of-stream message at offset %llu",
               fc->fs->path, (unsigned long long)m.start);
      end_fmt = endmsg;
      break;
    }
    key = consumer_key(fc, m.key, m.klen);
    if (key == NULL && m.klen == 0) {
      /* The reference takes an empty stream key (spec 4); a SeaStreamer stream key is never
       * empty, so this message cannot be delivered: say so, rather than drop it unseen. */
      if (fc->skip_damage) {
        sea_host->log(SEA_LOG_WARN, FILE_NAME,
                      "%s: skipping the message at offset %llu: its stream key is empty",
                      fc->fs->path, (unsigned long long)m.start);
        continue;
      }
      snprintf(endmsg, sizeof endmsg,
               "file: %s: the message at offset %llu has an empty stream key, which a consumer "
               "cannot deliver (on_damage=skip skips it)",
               fc->fs->path, (unsigned long long)m.start);
      end_status = SEA_EFORMAT;
      end_fmt = endmsg;
      break;
    }
    if (key == NULL) {
      rc = SS_NOMEM;
      break;
    }
    if (!consumer_wants(fc, key, m.shard))
      continue;
    if (fc->cur->filter) {
      file_stream_t *st = consumer_stream(fc, key, m.shard);
      if (st != NULL && fc->cur->filter == 3) {
        if (st->skip > 0) {
          st->skip--;
          continue;
        }
      } else if (st != NULL && !st->reached) {
        if (fc->cur->filter == 1 ? m.ts <= fc->cur->target : m.seq < fc->cur->target)
          continue;
        st->reached = 1;
      }
    }
    if (blk == NULL || cap - used < m.len) {
      if (blk != NULL)
        sea_host->block_unref(blk);
      cap = m.len > FILE_BLOCK_SIZE ? m.len : FILE_BLOCK_SIZE;
      blk = sea_host->block_new(cap);
      used = 0;
      if (blk == NULL) {
        rc = SS_NOMEM;
        break;
      }
    }
    sm = &batch->msgs[batch->count++];
    memset(sm, 0, sizeof *sm);
    memcpy(sea_host->block_data(blk) + used, m.payload, m.len);
    sm->payload.data = sea_host->block_data(blk) + used;
    sm->payload.len = m.len;
    sm->payload.block = sea_host->block_ref(blk);
    used += m.len;
    sm->meta.stream_key = key;
    sm->meta.shard_id = m.shard;
    sm->meta.seq = m.seq;
    sm->meta.timestamp_us = (int64_t)m.ts * 1000;
    sm->backend_pos = m.end;
  }
  if (blk != NULL)
    sea_host->block_unref(blk);
  if (rc == SS_ERR && fc->skip_damage) {
    /* Go on from the next beacon after the damage (spec 8.6). */
    fc->cur->resync = fc->cur->f.r.err_off / fc->cur->f.header.interval + 1;
    sea_host->log(SEA_LOG_WARN, FILE_NAME, "%s: %s; skipping to beacon %llu", fc->fs->path,
                  fc->cur->f.r.err, (unsigned long long)fc->cur->resync);
    rc = consumer_resync(fc);
    if (rc == SS_OK)
      rc = SS_RESUME;
  }
  if (rc == SS_ERR) {
    snprintf(endmsg, sizeof endmsg, "file: %s: %s", fc->fs->path, fc->cur->f.r.err);
    end_status = SEA_EFORMAT;
    end_fmt = endmsg;
  } else if (rc == SS_NOMEM) {
    snprintf(endmsg, sizeof endmsg, "file: %s: out of memory", fc->fs->path);
    end_status = SEA_ENOMEM;
    end_fmt = endmsg;
  } else if (rc == SS_MORE && fc->stop_at_end && end_fmt == NULL) {
    if (fc->cur->f.r.partial)
      sea_host->log(SEA_LOG_INFO, FILE_NAME, "%s: the last frame, at offset %llu, is incomplete",
                    fc->fs->path, (unsigned long long)fc->cur->f.r.pos);
    snprintf(endmsg, sizeof endmsg, "file: %s: end of file", fc->fs->path);
    end_status = SEA_EOF;
    end_fmt = endmsg;
  }

  fc->waited = rc == SS_MORE;
  fc->busy++;
  unsigned moves = fc->moves;
  if (batch->count > 0)
    sea_host->deliver(fc->c, batch);
  else
    sea_host->batch_release(batch);
  fc->busy--;
  if (fc->closed || fc->ended)
    return;
  if (fc->moves != moves) {
    /* Seeked or rewound from the delivery's callback: the end this pass met (of the file, or
     * its end-of-stream message) is not the end from the new position, which the turn the move
     * armed reads from. */
    fc->waited = 0;
    return;
  }
  if (end_fmt != NULL) {
    consumer_end(fc, end_status, end_fmt);
    return;
  }
  if (rc == SS_RESUME) {
    consumer_arm(fc, 0); /* the next turn: the loop polls in between */
  } else {
    consumer_follow(fc);
  }
}

static void consumer_tick(sea_timer_t *t, void *data) {
  file_consumer_t *fc = data;
  struct stat st;
  fc->armed = 0;
  if (fc->paused || fc->ended)
    return;
  if (fc->cur->eos) {
    /* Another member of the group read the end-of-stream message. */
    char msg[300];
    snprintf(msg, sizeof msg, "file: %s: end-of-stream message", fc->fs->path);
    consumer_end(fc, SEA_EOF, msg);
    return;
  }
  if (fc->waited) {
    char msg[300];
    msg[0] = '\0';
    if (fstat(fc->cur->fd, &st) == 0 && st.st_nlink == 0)
      snprintf(msg, sizeof msg, "file: %s was deleted", fc->fs->path);
    else if ((uint64_t)st.st_size < fc->cur->f.r.pos)
      snprintf(msg, sizeof msg, "file: %s was cut to %llu bytes, before the reading position %llu",
               fc->fs->path, (unsigned long long)st.st_size, (unsigned long long)fc->cur->f.r.pos);
    if (msg[0] != '\0') {
      consumer_end(fc, SEA_EIO, msg);
      return;
    }
    /* Read the incomplete frame afresh: a writer that resumed may have rewritten a torn tail. */
    ss_file_goto(&fc->cur->f, fc->cur->f.r.pos);
  }
  fc->busy++;
  consumer_run(fc);
  if (--fc->busy == 0 && fc->closed)
    consumer_free(fc);
}

int file_consumer_start(void *impl) {
  file_consumer_t *fc = impl;
  fc->started = 1;
  consumer_arm(fc, 0);
  return 0;
}

int file_consumer_pause(void *impl) {
  file_consumer_t *fc = impl;
  fc->paused = 1;
  consumer_disarm(fc);
  return 0;
}

int file_consumer_resume(void *impl) {
  file_consumer_t *fc = impl;
  fc->paused = 0;
  consumer_arm(fc, 0);
  return 0;
}

/* After a seek or rewind: the next turn reads from the new position, and an end-of-stream message
 * met before it no longer ends the cursor. */
static void consumer_moved(file_consumer_t *fc) {
  fc->moves++;
  fc->cur->eos = 0;
  consumer_disarm(fc);
  consumer_arm(fc, 0);
}

int file_consumer_seek(void *impl, int64_t ts_us, sea_op_t *op) {
  file_consumer_t *fc = impl;
  char err[256] = "";
  int rc = consumer_position(fc, 1, ts_us < 0 ? 0 : (uint64_t)(ts_us / 1000), err, sizeof err);
  if (rc != 0)
    return rc;
  sea_host->op_done(op, 0, NULL);
  consumer_moved(fc);
  return 0;
}

int file_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op) {
  file_consumer_t *fc = impl;
  char err[256] = "";
  int rc = consumer_goto(fc, pos, err, sizeof err);
  if (rc != 0) {
    sea_host->op_done(op, rc, "rewind: %s", err[0] ? err : file_strerror(rc));
    return 0;
  }
  sea_host->op_done(op, 0, NULL);
  consumer_moved(fc);
  return 0;
}

int file_consumer_assign(void *impl, const char *key, uint64_t shard) {
  file_consumer_t *fc = impl;
  file_stream_t *q;
  size_t i;
  if (fc->nkeys > 0) {
    for (i = 0; i < fc->nkeys && fc->keys[i] != key; i++)
      ;
    if (i == fc->nkeys)
      return SEA_EKEY;
  }
  q = sea_host->realloc(fc->assigned, (fc->nassigned + 1) * sizeof *q);
  if (q == NULL)
    return SEA_ENOMEM;
  fc->assigned = q;
  q[fc->nassigned].key = key;
  q[fc->nassigned].shard = shard;
  fc->nassigned++;
  return 0;
}

int file_consumer_unassign(void *impl, const char *key, uint64_t shard) {
  file_consumer_t *fc = impl;
  for (size_t i = 0; i < fc->nassigned; i++)
    if (fc->assigned[i].key == key && fc->assigned[i].shard == shard) {
      fc->assigned[i] = fc->assigned[--fc->nassigned];
      return 0;
    }
  return SEA_EINVAL;
}

/* The lag: one reading position serves every key of the file, so each key read (or "*" when
 * the consumer reads every key) gets the same entry: lag_bytes is the file's size minus the
 * position, and lag (messages) is 0 at the end and unknown before it: counting the messages
 * behind would mean reading them. An fstat, no read. */
int file_consumer_lag(void *impl, sea_lag_t *out, size_t cap) {
  file_consumer_t *fc = impl;
  struct stat st;
  if (fc->cur == NULL || fstat(fc->cur->fd, &st) != 0)
    return SEA_EIO;
  uint64_t pos = fc->cur->f.r.pos;
  int64_t behind = (uint64_t)st.st_size > pos ? (int64_t)((uint64_t)st.st_size - pos) : 0;
  size_t n = fc->nkeys ? fc->nkeys : 1;
  for (size_t i = 0; i < n && i < cap; i++) {
    out[i].stream_key = fc->nkeys ? fc->keys[i] : "*";
    out[i].shard = 0;
    out[i].lag = behind == 0 ? 0 : -1;
    out[i].lag_bytes = behind;
  }
  return (int)n;
}

void file_consumer_close(void *impl) {
  file_consumer_t *fc = impl;
  consumer_disarm(fc);
  consumer_unwatch(fc);
  for (size_t i = 0; i < fc->njobs; i++)
    fc->jobs[i]->fc = NULL; /* the host cancels their ops */
  fc->njobs = 0;
  fc->closed = 1;
  if (fc->busy == 0)
    consumer_free(fc);
}
