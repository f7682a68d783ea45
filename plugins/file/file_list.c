/* file_list.c: `seastreamer list file://PATH.ss`: one pass over the file's frames on a worker
 * thread, counting per (key, shard) the messages, their bytes, and the seq and time ranges. The
 * end-of-stream frame is not a message and is not counted. A torn tail (a frame still being
 * written) ends the pass like the end of the file; a damaged frame fails the listing. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../list_rows.h"
#include "file_list.h"
#include "ss_codec.h"

typedef struct fl_stat {
  char key[SS_KEY_MAX + 1];
  uint64_t shard;
  uint64_t count, bytes;
  uint64_t first_seq, last_seq, first_ts, last_ts;
} fl_stat_t;

typedef struct fl_data {
  char *path;
  fl_stat_t *st;
  size_t n, cap;
} fl_data_t;

static void *fl_realloc(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

static fl_stat_t *fl_find(fl_data_t *d, const uint8_t *key, size_t klen, uint64_t shard) {
  for (size_t i = d->n; i-- > 0;) /* frames of one stream tend to come together */
    if (d->st[i].shard == shard && strlen(d->st[i].key) == klen &&
        memcmp(d->st[i].key, key, klen) == 0)
      return &d->st[i];
  /* libc's realloc: the table is built on the worker thread and freed with free */
  if (SEA_GROW_WITH(realloc, d->st, d->cap, d->n + 1, 16) != 0)
    return NULL;
  fl_stat_t *s = &d->st[d->n++];
  memset(s, 0, sizeof *s);
  memcpy(s->key, key, klen);
  s->shard = shard;
  return s;
}

static int fl_cmp(const void *a, const void *b) {
  const fl_stat_t *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  if (c)
    return c;
  return x->shard < y->shard ? -1 : x->shard > y->shard;
}

static int64_t ts_us(uint64_t ms) {
  return ms > (uint64_t)INT64_MAX / 1000 ? -1 : (int64_t)(ms * 1000);
}

static void fl_rows(ljob_t *j, fl_data_t *d) {
  if (d->n > 1)
    qsort(d->st, d->n, sizeof *d->st, fl_cmp);
  for (size_t i = 0; i < d->n;) {
    size_t e = i;
    uint64_t count = 0, bytes = 0, fts = UINT64_MAX, lts = 0;
    for (; e < d->n && strcmp(d->st[e].key, d->st[i].key) == 0; e++) {
      count += d->st[e].count;
      bytes += d->st[e].bytes;
      fts = d->st[e].first_ts < fts ? d->st[e].first_ts : fts;
      lts = d->st[e].last_ts > lts ? d->st[e].last_ts : lts;
    }
    sea_list_row_t *r = lrows_add(&j->rows, SEA_LIST_STREAM);
    if (r == NULL)
      return;
    r->stream = lrows_str(&j->rows, d->st[i].key);
    r->shards = (int64_t)(e - i);
    r->messages = (int64_t)count;
    r->bytes = (int64_t)bytes;
    r->first_ts_us = ts_us(fts);
    r->last_ts_us = ts_us(lts);
    for (size_t k = i; k < e; k++) {
      const fl_stat_t *s = &d->st[k];
      if ((r = lrows_add(&j->rows, SEA_LIST_SHARD)) == NULL)
        return;
      r->stream = lrows_str(&j->rows, s->key);
      r->shard = s->shard > INT64_MAX ? -1 : (int64_t)s->shard;
      r->messages = (int64_t)s->count;
      r->bytes = (int64_t)s->bytes;
      r->first_seq = s->first_seq > INT64_MAX ? -1 : (int64_t)s->first_seq;
      r->last_seq = s->last_seq > INT64_MAX ? -1 : (int64_t)s->last_seq;
      r->first_ts_us = ts_us(s->first_ts);
      r->last_ts_us = ts_us(s->last_ts);
    }
    i = e;
  }
}

static void fl_work(void *arg) {
  ljob_t *j = arg;
  fl_data_t *d = j->data;
  char err[256];
  int fd = open(d->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ljob_fail(j, errno == ENOENT ? SEA_ECONNECT : SEA_EIO, "file: cannot open %s: %s", d->path,
              strerror(errno));
    return;
  }
  ss_file_t f;
  int rc = ss_file_open(&f, fd, fl_realloc, err, sizeof err);
  if (rc != SS_OK) {
    ljob_fail(j, rc == SS_NOMEM ? SEA_ENOMEM : SEA_EFORMAT, "file: %s: %s", d->path,
              rc == SS_NOMEM  ? "out of memory"
              : rc == SS_MORE ? "shorter than a .ss header (128 bytes)"
                              : err);
    close(fd);
    return;
  }
  ss_msg_t m;
  while ((rc = ss_file_next(&f, &m)) == SS_OK) {
    if (m.eos || !lrows_wanted(&j->args, (const char *)m.key, m.klen))
      continue;
    fl_stat_t *s = fl_find(d, m.key, m.klen, m.shard);
    if (s == NULL) {
      rc = SS_NOMEM;
      break;
    }
    if (s->count == 0) {
      s->first_seq = m.seq;
      s->first_ts = m.ts;
    }
    s->count++;
    s->bytes += m.end - m.start;
    s->last_seq = m.seq;
    s->last_ts = m.ts;
  }
  if (rc == SS_ERR)
    ljob_fail(j, SEA_EFORMAT, "file: %s: damaged at byte %llu: %s (see `seastreamer verify`)",
              d->path, (unsigned long long)f.r.err_off, f.r.err);
  else if (rc == SS_NOMEM)
    ljob_fail(j, SEA_ENOMEM, "file: %s: out of memory", d->path);
  else
    fl_rows(j, d);
  if (rc == SS_MORE && f.r.partial) /* a writer's frame not yet whole, or a torn tail */
    j->host->log(SEA_LOG_WARN, "file",
                 "%s: the last %llu bytes are an incomplete frame, not counted (being written, or "
                 "a torn tail: see `seastreamer verify`)",
                 d->path, (unsigned long long)(ss_file_size(&f) - f.r.pos));
  ss_file_close(&f);
  close(fd);
}

static void fl_after(void *arg, int status) {
  ljob_t *j = arg;
  fl_data_t *d = j->data;
  (void)status;
  free(d->path);
  free(d->st);
  free(d);
  ljob_finish(j);
}

int sea_file_list(const sea_host_t *host, struct ljob **jobs, const char *path,
                  const sea_list_args_t *a, sea_op_t *op) {
  fl_data_t *d = calloc(1, sizeof *d);
  if (d != NULL && (d->path = malloc(strlen(path) + 1)) != NULL)
    memcpy(d->path, path, strlen(path) + 1);
  if (d == NULL || d->path == NULL) {
    free(d);
    return SEA_ENOMEM;
  }
  ljob_t *j = ljob_new(host, a, op, jobs);
  if (j == NULL) {
    free(d->path);
    free(d);
    return SEA_ENOMEM;
  }
  j->data = d;
  int rc = host->queue_work(a->rt, fl_work, fl_after, j);
  if (rc != 0) {
    ljob_detach(j);
    j->op = NULL;
    fl_after(j, rc);
    return rc;
  }
  return 0;
}

void sea_file_list_abandon(struct ljob **jobs) {
  ljob_abandon_all(jobs);
}
