/* file_writer.c: the file backend's producers and their writer (a room of the file plugin; the
 * rooms and what they share are in file_internal.h). file.c's plugin table calls the
 * file_producer_* functions below; the rest is this room's own.
 *
 * Producer. One writer at a time: the first producer of a file takes its writer lock (an
 * exclusive, non-blocking flock on its own open of the file, see ss_lock_writer); further
 * producers of the same runtime share that writer (one session, frames never interleave), and a
 * writer anywhere else — another process, or another runtime in this one — is refused with
 * SEA_EBUSY naming the holder's pid; closing the last producer, or the death of its process,
 * releases it. Readers never lock. The file's size is
 * read only under the lock, so of two writers creating a file at once one writes the header and
 * the other is refused. Opening an existing file scans it once: it
 * checks every frame, finds each (key, shard)'s largest sequence number so numbering continues
 * (1, 2, 3, ... for a new stream, as SeaStreamer does), and cuts a torn tail or a trailing EOS
 * before appending (spec 9.2). A damaged file is refused (run `seastreamer repair`). A send is
 * encoded at once into the writer's buffer; the buffer goes to the file when it passes 1 MiB,
 * on flush/end (the host's push), and on a short timer (flush_interval), and the receipts of a
 * write are given on the next loop turn after it: a receipt means the bytes are in the file (no
 * fsync), so the host's flush, done once the receipts are in, means that too. end writes the
 * end-of-stream message unless eos=false.
 * Options: create=auto|new|existing, beacon_interval=BYTES (new files), size_limit=BYTES,
 * flush_interval=MS, eos=true|false.
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
 * Writers: one per file per process, shared by its producers
 * ---------------------------------------------------------------------------------------------- */

typedef struct file_producer file_producer_t;

typedef struct file_seq {
  const char *key; /* interned */
  uint64_t shard, next;
} file_seq_t;

typedef struct file_pending {
  file_producer_t *fp; /* NULL once its producer closed */
  void *token;
  sea_meta_t meta;
  uint64_t end; /* file offset the frame ends at (with any beacon after it) */
} file_pending_t;

typedef struct file_writer {
  struct file_writer *next; /* in file_writers */
  char *path;
  dev_t dev;
  ino_t ino;
  int fd;      /* holds the file's writer lock (ss_lock_writer) until it is closed */
  size_t refs; /* its open producers (of one runtime) */
  sea_runtime_t *rt;
  ss_writer_t w;
  ss_buf_t out;     /* encoded, not yet written; out.data[0] goes at offset `flushed` */
  uint64_t flushed; /* bytes of the file that are written */
  uint64_t size_limit;
  uint64_t flush_ms;
  file_seq_t *seqs;
  size_t nseq, capseq;
  file_pending_t *pend;
  size_t npend, cappend;
  file_pending_t *giving; /* the list writer_tick is receipting */
  size_t ngiving;
  sea_timer_t *timer; /* writer_tick: on the next turn, or after flush_interval */
  int armed, armed_now;
  int failed;
  char errmsg[256];
  unsigned busy;
} file_writer_t;

struct file_producer {
  file_writer_t *wr;
  sea_producer_t *p;
  sea_runtime_t *rt;
  int eos;
  struct file_producer *next; /* in the writer's list */
};

static file_producer_t *file_producers;
static file_writer_t *file_writers; /* open writers: producers of one runtime share one */

static file_seq_t *writer_seq(file_writer_t *wr, const char *key, uint64_t shard) {
  for (size_t i = 0; i < wr->nseq; i++)
    if (wr->seqs[i].key == key && wr->seqs[i].shard == shard)
      return &wr->seqs[i];
  if (SEA_GROW(wr->seqs, wr->capseq, wr->nseq + 1, 8) != 0)
    return NULL;
  wr->seqs[wr->nseq].key = key;
  wr->seqs[wr->nseq].shard = shard;
  wr->seqs[wr->nseq].next = 1;
  return &wr->seqs[wr->nseq++];
}

static void writer_free(file_writer_t *wr) {
  for (file_writer_t **pp = &file_writers; *pp; pp = &(*pp)->next)
    if (*pp == wr) {
      *pp = wr->next;
      break;
    }
  sea_host->timer_close(wr->timer);
  if (wr->fd >= 0)
    close(wr->fd);
  ss_writer_free(&wr->w);
  ss_buf_free(&wr->out);
  sea_host->free(wr->seqs);
  sea_host->free(wr->pend);
  sea_host->free(wr->path);
  sea_host->free(wr);
}

/* Write what is buffered. Returns 0 or an error (the writer is then failed). */
static int writer_write(file_writer_t *wr) {
  size_t done = 0;
  if (wr->failed)
    return SEA_EIO;
  while (done < wr->out.len) {
    ssize_t k =
        pwrite(wr->fd, wr->out.data + done, wr->out.len - done, (off_t)(wr->flushed + done));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      snprintf(wr->errmsg, sizeof wr->errmsg, "file: write to %s at offset %llu failed: %s",
               wr->path, (unsigned long long)(wr->flushed + done),
               k < 0 ? strerror(errno) : "no progress");
      wr->failed = 1;
      /* Cut what was half written, so the file ends at the last whole frame we receipted. */
      if (ftruncate(wr->fd, (off_t)wr->flushed) != 0)
        sea_host->log(SEA_LOG_ERROR, FILE_NAME, "cannot cut %s back to %llu bytes: %s", wr->path,
                      (unsigned long long)wr->flushed, strerror(errno));
      return SEA_EIO;
    }
    done += (size_t)k;
  }
  wr->flushed += wr->out.len;
  wr->out.len = 0;
  return 0;
}

static void writer_tick(sea_timer_t *t, void *data);

/* Tick on the next turn (now) or after flush_interval: an armed tick stays, unless now brings a
 * flush_interval one forward. */
static void writer_arm(file_writer_t *wr, int now) {
  if (wr->armed && (wr->armed_now || !now))
    return;
  wr->armed = 1;
  wr->armed_now = now;
  sea_host->timer_start(wr->timer, now ? 0 : wr->flush_ms, 0);
}

/* A failed write fails the writer's producers: the host fails their flushes. */
static void writer_failed(file_writer_t *wr) {
  for (file_producer_t *fp = file_producers; fp; fp = fp->next)
    if (fp->wr == wr)
      sea_host->producer_fail(fp->p, SEA_EIO, "%s", wr->errmsg);
}

/* Write what is buffered, then give the receipts of everything written. Receipt callbacks may
 * send (the pending list is detached first) or close producers. */
static void writer_tick(sea_timer_t *t, void *data) {
  file_writer_t *wr = data;
  file_pending_t *pend;
  size_t n, i;
  wr->armed = 0;
  if (writer_write(wr) != 0) /* the receipts below say which frames made it */
    writer_failed(wr);
  /* Detach the list (sends from the callbacks start a new one), but keep it where a producer
   * closed from a callback can find and forget its entries. */
  pend = wr->pend;
  n = wr->npend;
  wr->pend = NULL;
  wr->npend = wr->cappend = 0;
  wr->giving = pend;
  wr->ngiving = n;
  wr->busy++;
  for (i = 0; i < n; i++) {
    if (pend[i].fp == NULL)
      continue;
    /* A frame is confirmed once its bytes are in the file, even if a later write failed. */
    if (pend[i].end <= wr->flushed)
      sea_host->receipt(pend[i].fp->p, pend[i].token, 0, &pend[i].meta);
    else
      sea_host->receipt(pend[i].fp->p, pend[i].token, SEA_EIO, NULL);
  }
  wr->giving = NULL;
  wr->ngiving = 0;
  sea_host->free(pend);
  wr->busy--;
  if (wr->refs == 0 && wr->busy == 0)
    writer_free(wr);
}

/* Read the existing file: check it, learn each stream's last seq, and find where to append. */
static int writer_scan(file_writer_t *wr, sea_runtime_t *rt, uint64_t *resume) {
  ss_file_t f;
  ss_msg_t m;
  char err[256];
  int rc;
  uint64_t last_end = SS_HEADER_SIZE;
  rc = ss_file_open(&f, wr->fd, file_realloc, err, sizeof err);
  if (rc != SS_OK) {
    ss_file_close(&f);
    sea_host->set_error(rt, "file: cannot append to %s: %s", wr->path,
                        rc == SS_NOMEM ? "out of memory" : err);
    return rc == SS_NOMEM ? SEA_ENOMEM : SEA_EFORMAT;
  }
  while ((rc = ss_file_next(&f, &m)) == SS_OK) {
    const char *key;
    file_seq_t *sq;
    if (m.eos)
      continue; /* a trailing EOS is overwritten; one in the middle stays where it is */
    last_end = m.end;
    if (m.klen == 0 || (key = sea_host->stream_key((const char *)m.key, m.klen)) == NULL)
      continue;
    if ((sq = writer_seq(wr, key, m.shard)) == NULL) {
      rc = SS_NOMEM;
      break;
    }
    if (m.seq + 1 > sq->next)
      sq->next = m.seq + 1;
  }
  if (rc == SS_ERR) {
    sea_host->set_error(
        rt,
        "file: cannot append to %s: %s (the file is damaged; `seastreamer repair` keeps "
        "what is whole)",
        wr->path, f.r.err);
    ss_file_close(&f);
    return SEA_EFORMAT;
  }
  if (rc == SS_NOMEM) {
    ss_file_close(&f);
    return SEA_ENOMEM;
  }
  if (f.r.partial || f.r.pos > last_end)
    sea_host->log(SEA_LOG_WARN, FILE_NAME,
                  "%s: cutting %llu bytes after the last whole frame at %llu", wr->path,
                  (unsigned long long)(ss_file_size(&f) - last_end), (unsigned long long)last_end);
  wr->w.interval = f.header.interval;
  ss_file_close(&f);
  *resume = last_end;
  return 0;
}

/* Open the file for writing and take its writer lock (ss_lock_writer), or refuse: one writer at a
 * time appends to a .ss file, whether the other is in this process or another. The file is read
 * (its size, the scan) only once the lock is held, so two writers creating a file at the same
 * instant cannot both write a header: both open the one inode, one of them gets the lock. */
static int writer_lock_open(sea_runtime_t *rt, const char *path, const file_opts_t *fo, int *err) {
  int flags = O_RDWR | O_CLOEXEC;
  if (fo->create == 1)
    flags |= O_CREAT | O_EXCL;
  else if (fo->create == 0)
    flags |= O_CREAT;
  /* A few tries, for a file replaced (renamed over or deleted) between the open and the lock. */
  for (int attempt = 0; attempt < 3; attempt++) {
    struct stat st, now;
    char who[128];
    int fd = open(path, flags, 0644), rc;
    if (fd < 0) {
      if (errno == EEXIST && fo->create == 1) {
        sea_host->set_error(rt, "file: %s exists (create=new)", path);
        *err = SEA_EINVAL;
      } else if (errno == ENOENT && fo->create == 2) {
        sea_host->set_error(rt, "file: %s does not exist (create=existing)", path);
        *err = SEA_EINVAL;
      } else {
        sea_host->set_error(rt, "file: cannot open %s: %s", path, strerror(errno));
        /* a missing directory: nothing to reach, as a consumer's missing file is (exit 3) */
        *err = errno == ENOENT ? SEA_ECONNECT : SEA_EIO;
      }
      return -1;
    }
    rc = ss_lock_writer(fd, who, sizeof who);
    if (rc != 0) {
      if (rc > 0) {
        sea_host->set_error(
            rt,
            "file: cannot write %s: another writer holds it (%s); a .ss file takes one "
            "writer at a time",
            path, who[0] ? who : "its pid is not known");
        *err = SEA_EBUSY;
      } else {
        sea_host->set_error(rt, "file: cannot lock %s: %s", path, strerror(errno));
        *err = SEA_EIO;
      }
      close(fd);
      return -1;
    }
    if (fstat(fd, &st) == 0 && stat(path, &now) == 0 && st.st_dev == now.st_dev &&
        st.st_ino == now.st_ino)
      return fd;
    close(fd);
  }
  sea_host->set_error(rt, "file: %s keeps being replaced while it is opened", path);
  *err = SEA_EIO;
  return -1;
}

static file_writer_t *writer_open(sea_runtime_t *rt, const char *path, const file_opts_t *fo,
                                  int *err) {
  struct stat st;
  file_writer_t *wr;
  int fd;
  uint64_t resume = SS_HEADER_SIZE;

  /* Producers of one runtime share its writer (one lock, one session): their frames never
   * interleave, since one writer encodes them all. */
  if (stat(path, &st) == 0)
    for (wr = file_writers; wr; wr = wr->next)
      if (wr->dev == st.st_dev && wr->ino == st.st_ino && wr->rt == rt) {
        if (fo->create == 1) {
          sea_host->set_error(rt, "file: %s exists (create=new)", path);
          *err = SEA_EINVAL;
          return NULL;
        }
        wr->refs++;
        return wr;
      }
  if ((fd = writer_lock_open(rt, path, fo, err)) < 0)
    return NULL;
  wr = sea_host->calloc(1, sizeof *wr);
  if (wr == NULL || (wr->path = file_strdup(path, strlen(path))) == NULL ||
      (wr->timer = sea_host->timer_init(rt, writer_tick, wr)) == NULL) {
    if (wr != NULL)
      sea_host->free(wr->path);
    sea_host->free(wr);
    close(fd);
    *err = SEA_ENOMEM;
    return NULL;
  }
  wr->fd = fd;
  wr->rt = rt;
  wr->refs = 1;
  wr->size_limit = fo->size_limit;
  wr->flush_ms = fo->flush_ms;
  wr->out.realloc = file_realloc;
  ss_writer_init(&wr->w, (uint32_t)fo->interval, SS_HEADER_SIZE, file_realloc);
  if (fstat(fd, &st) != 0) {
    sea_host->set_error(rt, "file: cannot stat %s: %s", path, strerror(errno));
    writer_free(wr);
    *err = SEA_EIO;
    return NULL;
  }
  wr->dev = st.st_dev;
  wr->ino = st.st_ino;
  if (st.st_size > 0) {
    if ((*err = writer_scan(wr, rt, &resume)) != 0) {
      writer_free(wr);
      return NULL;
    }
    if (ftruncate(fd, (off_t)resume) != 0) {
      sea_host->set_error(rt, "file: cannot cut %s to %llu bytes: %s", path,
                          (unsigned long long)resume, strerror(errno));
      writer_free(wr);
      *err = SEA_EIO;
      return NULL;
    }
  } else {
    /* A new file: the header, named after the file as SeaStreamer does. */
    ss_header_t h;
    const char *base = strrchr(path, '/');
    ss_header_init(&h, base ? base + 1 : path, (uint64_t)(sea_host->now_us() / 1000),
                   (uint32_t)fo->interval);
    if (ss_buf_reserve(&wr->out, SS_HEADER_SIZE) != SS_OK) {
      writer_free(wr);
      *err = SEA_ENOMEM;
      return NULL;
    }
    ss_header_encode(&h, wr->out.data);
    wr->out.len = SS_HEADER_SIZE;
    resume = 0;
  }
  wr->flushed = resume;
  wr->w.pos = resume ? resume : SS_HEADER_SIZE;
  if (ss_writer_begin(&wr->w, &wr->out) != SS_OK || writer_write(wr) != 0) {
    sea_host->set_error(rt, "file: cannot write %s: %s", path,
                        wr->errmsg[0] ? wr->errmsg : "out of memory");
    writer_free(wr);
    *err = SEA_EIO;
    return NULL;
  }
  wr->next = file_writers;
  file_writers = wr;
  if (resume == 0)
    sea_host->log(SEA_LOG_INFO, FILE_NAME, "%s: created (writing; lock held)", path);
  else
    sea_host->log(SEA_LOG_INFO, FILE_NAME,
                  "%s: opened for writing (lock held), appending at offset %llu", path,
                  (unsigned long long)resume);
  return wr;
}

/* ------------------------------------------------------------------------------------------------
 * Producer
 * ---------------------------------------------------------------------------------------------- */

int file_producer_open(void *simpl, sea_producer_t *p, const sea_open_args_t *args, void **impl) {
  file_streamer_t *fs = simpl;
  file_opts_t fo;
  file_producer_t *fp;
  int rc = 0;
  file_parse_opts(args->backend_options, &fo);
  fp = sea_host->calloc(1, sizeof *fp);
  if (fp == NULL)
    return SEA_ENOMEM;
  fp->wr = writer_open(args->rt, fs->path, &fo, &rc);
  if (fp->wr == NULL) {
    sea_host->free(fp);
    return rc;
  }
  fp->p = p;
  fp->rt = args->rt;
  fp->eos = fo.eos;
  fp->next = file_producers;
  file_producers = fp;
  *impl = fp;
  return 0;
}

/* The most a frame of this size can add to the file, beacons included. */
/* At most the bytes a frame of fsize takes with the beacons it may meet. A beacon holds a marker
 * for each record (stream) of the session, up to the interval's budget (spec 6.6), each at most
 * 27 + 249 bytes: bounding by the records there are, and not by the budget alone (127 markers at
 * the default interval: 35 KB a beacon), lets a small size_limit take small messages. */
static uint64_t frame_bound(const file_writer_t *wr, uint64_t fsize) {
  uint64_t I = wr->w.interval;
  uint64_t markers = ss_num_markers(wr->w.interval);
  if (markers > wr->w.nrec + 1) /* (+1: this message may start a new record) */
    markers = wr->w.nrec + 1;
  uint64_t beacon = 7 + markers * (27 + SS_KEY_MAX);
  return fsize + (fsize / (I - beacon) + 2) * beacon;
}

int file_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token) {
  file_producer_t *fp = impl;
  file_writer_t *wr = fp->wr;
  const char *key = m->meta.stream_key;
  size_t klen = strlen(key);
  uint64_t shard = m->meta.shard_id, seq, ts;
  file_seq_t *sq;
  file_pending_t *pe;
  int rc;

  if (wr->failed) {
    sea_host->producer_fail(fp->p, SEA_EIO, "%s", wr->errmsg);
    return SEA_EIO;
  }
  if (klen == SS_EOS_KEY_LEN && memcmp(key, SS_EOS_KEY, klen) == 0) {
    sea_host->log(SEA_LOG_WARN, FILE_NAME, "the stream key %s is reserved", SS_EOS_KEY);
    return SEA_EKEY;
  }
  if (m->payload.len > UINT32_MAX - SS_FRAME_OVERHEAD - SS_KEY_MAX)
    return SEA_ETOOBIG;
  uint64_t need = frame_bound(wr, SS_FRAME_OVERHEAD + klen + m->payload.len);
  if (wr->w.pos + need > wr->size_limit) {
    sea_host->producer_fail(
        fp->p, SEA_ETOOBIG,
        "file: %s: the message to '%s' (%llu bytes as a frame, up to %llu with the beacons it "
        "may meet) would take the file, %llu bytes now, past its size limit of %llu bytes; it "
        "was not written",
        wr->path, key, (unsigned long long)(SS_FRAME_OVERHEAD + klen + m->payload.len),
        (unsigned long long)need, (unsigned long long)wr->w.pos,
        (unsigned long long)wr->size_limit);
    return SEA_ETOOBIG;
  }
  if (SEA_GROW(wr->pend, wr->cappend, wr->npend + 1, 256) != 0)
    return SEA_ENOMEM;
  if ((sq = writer_seq(wr, key, shard)) == NULL)
    return SEA_ENOMEM;
  seq = (flags & SEA_SEND_KEEP_META) ? m->meta.seq : sq->next;
  ts = (uint64_t)((m->meta.timestamp_us != 0 ? m->meta.timestamp_us : sea_host->now_us()) / 1000);
  if (m->meta.timestamp_us < 0 || ts > SS_TS_MAX)
    return SEA_EINVAL;
  rc = ss_writer_frame(&wr->w, &wr->out, (const uint8_t *)key, klen, shard, seq, ts,
                       m->payload.data, m->payload.len);
  if (rc != SS_OK) {
    snprintf(wr->errmsg, sizeof wr->errmsg, "file: %s: out of memory while encoding", wr->path);
    wr->failed = 1; /* the session's beacon state may be half updated */
    sea_host->producer_fail(fp->p, SEA_ENOMEM, "%s", wr->errmsg);
    return SEA_ENOMEM;
  }
  if (seq + 1 > sq->next)
    sq->next = seq + 1;
  pe = &wr->pend[wr->npend++];
  pe->fp = fp;
  pe->token = token;
  pe->meta.stream_key = key;
  pe->meta.shard_id = shard;
  pe->meta.seq = seq;
  pe->meta.timestamp_us = (int64_t)ts * 1000;
  pe->end = wr->w.pos;
  if (wr->out.len >= FILE_WRITE_AT) {
    /* Hand a full buffer to the file now; its receipts come on the next turn. */
    writer_write(wr);
    writer_arm(wr, 1);
  } else {
    writer_arm(wr, wr->flush_ms == 0);
  }
  return 0;
}

/* A flush or end waits for receipts (the host completes it from them): write out the buffer
 * now and give the receipts on the next turn. The end first encodes the end-of-stream message
 * (spec 7: a plain frame, receipted by nobody), and is written here and now, so the end is in the
 * file even when no receipt was outstanding. */
void file_producer_push(void *impl, int end) {
  file_producer_t *fp = impl;
  file_writer_t *wr = fp->wr;
  if (end && fp->eos && !wr->failed) {
    uint64_t ts = (uint64_t)(sea_host->now_us() / 1000);
    if (ss_writer_frame(&wr->w, &wr->out, (const uint8_t *)SS_EOS_KEY, SS_EOS_KEY_LEN, 0, 0, ts,
                        (const uint8_t *)"EOS", 3) != SS_OK) {
      sea_host->producer_fail(fp->p, SEA_ENOMEM, "file: %s: out of memory writing the end",
                              wr->path);
      return;
    }
    if (writer_write(wr) != 0)
      writer_failed(wr);
  }
  writer_arm(wr, 1);
}

void file_producer_close(void *impl) {
  file_producer_t *fp = impl;
  file_writer_t *wr = fp->wr;
  file_producer_t **pp;
  for (size_t i = 0; i < wr->npend; i++)
    if (wr->pend[i].fp == fp)
      wr->pend[i].fp = NULL;
  for (size_t i = 0; i < wr->ngiving; i++)
    if (wr->giving[i].fp == fp)
      wr->giving[i].fp = NULL;
  for (pp = &file_producers; *pp; pp = &(*pp)->next)
    if (*pp == fp) {
      *pp = fp->next;
      break;
    }
  sea_host->free(fp);
  /* What was sent is written even though nobody waits for its receipt. */
  if (--wr->refs == 0) {
    if (writer_write(wr) != 0)
      sea_host->log(SEA_LOG_ERROR, FILE_NAME, "%s", wr->errmsg);
    if (wr->busy == 0)
      writer_free(wr);
  }
}
