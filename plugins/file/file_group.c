/* file_group.c: the file backend's consumer groups (a room of the file plugin; the rooms and
 * what they share are in file_internal.h). file_consumer.c asks this room for the cursor a
 * load-balanced group already reads with and for a group's committed position; file.c's plugin
 * table calls file_consumer_ack and file_consumer_commit below.
 *
 * Load-balanced consumers of one group on one file (in this process) share one cursor, so each
 * message goes to one of them, batch by batch. A resumable or load-balanced group's committed
 * position is kept in PATH.GROUP.pos beside the file: ack keeps the highest acked position, and
 * commit writes it to a temporary file, fsyncs it and renames it over, on a worker thread, so a
 * crash leaves the old position or the new one, never a torn one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file_internal.h"

static file_cursor_t *file_cursors; /* the cursors load-balanced groups share */

file_cursor_t *file_group_find(dev_t dev, ino_t ino, const char *group) {
  for (file_cursor_t *cur = file_cursors; cur; cur = cur->next)
    if (cur->dev == dev && cur->ino == ino && cur->group == group)
      return cur;
  return NULL;
}

void file_group_share(file_cursor_t *cur, const char *group) {
  cur->group = group;
  cur->next = file_cursors;
  file_cursors = cur;
}

void file_group_forget(file_cursor_t *cur) {
  for (file_cursor_t **pp = &file_cursors; *pp; pp = &(*pp)->next)
    if (*pp == cur) {
      *pp = cur->next;
      break;
    }
}

/* The decimal offset a .pos file holds, nothing else: 0, or -1 (empty, not a digit, too big). */
static int pos_parse(const char *s, uint64_t *out) {
  uint64_t v = 0;
  if (*s == '\0')
    return -1;
  for (; *s; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* Read PATH.GROUP.pos: the offset a resumable group continues from. 0 if there is none. */
int file_group_read_committed(file_consumer_t *fc, uint64_t *pos) {
  char buf[64];
  ssize_t n;
  int fd = open(fc->cur->pos_path, O_RDONLY | O_CLOEXEC);
  *pos = 0;
  if (fd < 0)
    return errno == ENOENT ? 0 : SEA_EIO;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0)
    return SEA_EFORMAT;
  buf[n] = '\0';
  if (n > 0 && buf[n - 1] == '\n')
    buf[n - 1] = '\0';
  if (pos_parse(buf, pos) != 0 || *pos < SS_HEADER_SIZE)
    return SEA_EFORMAT;
  return 0;
}

int file_consumer_ack(void *impl, const sea_message_t *m) {
  file_consumer_t *fc = impl;
  if (fc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  if (m->backend_pos > fc->cur->acked)
    fc->cur->acked = m->backend_pos;
  return 0;
}

/* On a worker thread: write the position to a temporary file, fsync it, rename it over. */
static void commit_work(void *data) {
  file_commit_job_t *j = data;
  size_t n = strlen(j->path);
  char tmp[4096], buf[32];
  int fd, len;
  if (n + 5 > sizeof tmp) {
    j->err = SEA_EINVAL;
    snprintf(j->msg, sizeof j->msg, "path too long");
    return;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp", j->path);
  len = snprintf(buf, sizeof buf, "%llu\n", (unsigned long long)j->pos);
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) != 0 || close(fd) != 0 ||
      rename(tmp, j->path) != 0) {
    j->err = SEA_EIO;
    snprintf(j->msg, sizeof j->msg, "commit: cannot write %s: %s", j->path, strerror(errno));
    if (fd >= 0)
      close(fd);
  }
}

static void commit_after(void *data, int status) {
  file_commit_job_t *j = data;
  file_consumer_t *fc = j->fc;
  if (fc != NULL) {
    for (size_t i = 0; i < fc->njobs; i++)
      if (fc->jobs[i] == j) {
        fc->jobs[i] = fc->jobs[--fc->njobs];
        break;
      }
    if (j->err == 0 && status != 0)
      j->err = status;
    if (j->err != 0) {
      sea_host->log(SEA_LOG_WARN, FILE_NAME, "%s", j->msg[0] ? j->msg : file_strerror(j->err));
      sea_host->op_done(j->op, j->err, "%s", j->msg[0] ? j->msg : file_strerror(j->err));
    } else {
      sea_host->log(SEA_LOG_INFO, FILE_NAME, "committed offset %llu to %s",
                    (unsigned long long)j->pos, j->path);
      sea_host->op_done(j->op, 0, NULL);
    }
  }
  sea_host->free(j->path);
  sea_host->free(j);
}

int file_consumer_commit(void *impl, sea_op_t *op) {
  file_consumer_t *fc = impl;
  file_commit_job_t *j;
  if (fc->mode == SEA_MODE_REALTIME)
    return SEA_ESTATE;
  if (fc->cur->pos_path == NULL || fc->cur->acked == 0) {
    sea_host->op_done(op, 0, NULL);
    return 0;
  }
  if (SEA_GROW(fc->jobs, fc->capjobs, fc->njobs + 1, 4) != 0)
    return SEA_ENOMEM;
  j = sea_host->calloc(1, sizeof *j);
  if (j == NULL || (j->path = file_strdup(fc->cur->pos_path, strlen(fc->cur->pos_path))) == NULL) {
    sea_host->free(j);
    return SEA_ENOMEM;
  }
  j->fc = fc;
  j->op = op;
  j->pos = fc->cur->acked;
  if (sea_host->queue_work(fc->rt, commit_work, commit_after, j) != 0) {
    sea_host->free(j->path);
    sea_host->free(j);
    return SEA_EIO;
  }
  fc->jobs[fc->njobs++] = j;
  return 0;
}
