/* file_internal.h: what the rooms of the file backend share. The rooms:
 *   file.c           the plugin table, its entry point, the streamer (connect/disconnect, the
 *                    path and keys of a URI), backend options (file_opts_t) and small helpers
 *   file_writer.c    producers: one writer per file per runtime (lock, scan and resume, appends,
 *                    flushes, receipts), shared by the producers of that runtime
 *   file_consumer.c  consumers: the reading cursor, following a growing file, seek/rewind by
 *                    time or seq, lag
 *   file_group.c     groups: the cursor a load-balanced group shares, the committed position
 *                    (PATH.GROUP.pos: read at open, ack, commit on a worker thread)
 *   file_list.c      `seastreamer list` of a .ss file (file_list.h)
 *   file_cmd.c       the decode, verify and repair commands (file_cmd.h)
 *   ss_codec.c       the .ss format itself (ss_codec.h)
 * The rooms talk only through the types and functions declared here (and the headers above);
 * everything else in a room is static. Every room calls the host through sea_host, set once by
 * SEA_PLUGIN_INIT (file.c). */
#ifndef SEA_FILE_INTERNAL_H
#define SEA_FILE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "seastreamer/plugin.h"
#include "file_list.h"
#include "ss_codec.h"

#define FILE_NAME "file"
#define FILE_WRITE_AT (1024u * 1024u)
#define FILE_BATCH_DEFAULT 4096u
#define FILE_BATCH_MAX 65536u
#define FILE_BLOCK_SIZE (256u * 1024u)
#define FILE_KEY_CACHE 32

/* The host's functions (allocation, errors, logging, the loop): sea_host, set by SEA_PLUGIN_INIT
 * (file.c). */
SEA_PLUGIN_HOST_DECL;

/* ---------------------------------------------------------------------------------------------
 * Helpers and options (file.c)
 * ------------------------------------------------------------------------------------------- */

/* The host's realloc, with realloc(p, 0) freeing p (what ss_codec.c expects of its allocator). */
void *file_realloc(void *p, size_t n);
/* A NUL-terminated copy of s[0..n), or NULL when out of memory. */
char *file_strdup(const char *s, size_t n);
/* Words for the codes the backend returns (a plugin does not call the library's sea_strerror). */
const char *file_strerror(int rc);
typedef struct file_opts {
  int create; /* 0 auto, 1 new only, 2 existing only */
  uint64_t interval, size_limit, flush_ms, poll_ms, max_frame;
  int poll_set; /* poll_interval was given */
  int eos, skip_damage;
} file_opts_t;

/* The backend options the host checks (ABI 1.4), and their values read with its getters. */
extern const sea_option_spec_t file_option_table[];
void file_parse_opts(const sea_options_t *o, file_opts_t *fo);

/* The streamer: the path, and whether the URI named keys. */
typedef struct file_streamer {
  char *path;
  int keyless;        /* the URI's last segment was the file name, not keys */
  struct ljob *lists; /* listings running (file_list.c) */
} file_streamer_t;

/* ---------------------------------------------------------------------------------------------
 * The plugin table's producer members (file_writer.c)
 * ------------------------------------------------------------------------------------------- */
int file_producer_open(void *simpl, sea_producer_t *p, const sea_open_args_t *args, void **impl);
int file_producer_send(void *impl, const sea_message_t *m, unsigned flags, void *token);
void file_producer_push(void *impl, int end);
void file_producer_close(void *impl);

/* ---------------------------------------------------------------------------------------------
 * Consumers (file_consumer.c) and their groups (file_group.c)
 * ------------------------------------------------------------------------------------------- */

typedef struct file_stream {
  const char *key; /* interned */
  uint64_t shard;
  int reached;    /* the seek target of this stream has been passed */
  uint64_t count; /* start=-N: messages from the start position to the end */
  uint64_t skip;  /* start=-N: messages still to skip */
} file_stream_t;

typedef struct file_commit_job {
  struct file_consumer *fc; /* NULL once the consumer closed */
  sea_op_t *op;
  char *path;
  uint64_t pos;
  int err;
  char msg[256];
} file_commit_job_t;

/* The reading position. A consumer has its own; the load-balanced consumers of one group on
 * one file share theirs, and that is what splits the messages between them: each member's turn
 * reads the next batch from the shared position. */
typedef struct file_cursor {
  struct file_cursor *next; /* in file_group.c's list, when shared */
  size_t refs;
  dev_t dev;
  ino_t ino;
  const char *group; /* interned; NULL when not shared */
  int fd;
  ss_file_t f;
  /* Seek filter: skip a stream's messages until one passes its target. */
  int filter; /* 0 none, 1 time (ts > target), 2 seq (seq >= target), 3 start=-N (skip) */
  uint64_t target;
  file_stream_t *streams; /* every (key, shard) met, with its reached flag */
  size_t nstreams, capstreams;
  struct {
    uint8_t len;
    const char *key;
    uint8_t buf[SS_KEY_MAX];
  } kc[FILE_KEY_CACHE];
  size_t nkc;
  char *pos_path; /* PATH.GROUP.pos for a group's committed position */
  uint64_t acked;
  int eos;          /* an end-of-stream message was read: every member ends */
  uint64_t resync;  /* on_damage=skip: the beacon to go on from, 0 = none */
  uint64_t learned; /* every stream with a frame before this offset is in streams (0: none) */
} file_cursor_t;

typedef struct file_consumer {
  sea_consumer_t *c;
  sea_runtime_t *rt;
  file_streamer_t *fs;
  file_cursor_t *cur;
  const char **keys;
  size_t nkeys;
  file_stream_t *assigned;
  size_t nassigned;
  sea_mode_t mode;
  const char *group;
  int stop_at_end, skip_damage;
  uint64_t poll_ms;
  int poll_set;
  int fswatch_tried;
  sea_fswatch_t *fswatch; /* the host's file-change events while following, or NULL */
  uint32_t batch_size;
  sea_timer_t *timer; /* the next turn, or the poll while following */
  int armed;
  int waited; /* the last turn found no more data */
  int started, paused, ended, closed;
  unsigned busy;
  unsigned moves; /* seeks and rewinds done: one during a delivery voids the end that pass met */
  file_commit_job_t **jobs;
  size_t njobs, capjobs;
} file_consumer_t;

/* The cursor the load-balanced group `group` (interned) reads file (dev, ino) with in this
 * process, or NULL when it has none yet. The caller takes a reference. */
file_cursor_t *file_group_find(dev_t dev, ino_t ino, const char *group);
/* Make cur the cursor of the load-balanced group `group` (interned), for later members. */
void file_group_share(file_cursor_t *cur, const char *group);
/* cur is going away (its last reference): no longer shared. */
void file_group_forget(file_cursor_t *cur);
/* Read PATH.GROUP.pos (fc->cur->pos_path): the offset a group continues from, 0 if none. */
int file_group_read_committed(file_consumer_t *fc, uint64_t *pos);

/* ---------------------------------------------------------------------------------------------
 * The plugin table's consumer members (file_consumer.c; ack and commit in file_group.c)
 * ------------------------------------------------------------------------------------------- */
int file_consumer_open(void *simpl, sea_consumer_t *c, const sea_open_args_t *args, void **impl);
int file_consumer_start(void *impl);
int file_consumer_pause(void *impl);
int file_consumer_resume(void *impl);
int file_consumer_seek(void *impl, int64_t ts_us, sea_op_t *op);
int file_consumer_rewind(void *impl, sea_pos_t pos, sea_op_t *op);
int file_consumer_assign(void *impl, const char *key, uint64_t shard);
int file_consumer_unassign(void *impl, const char *key, uint64_t shard);
int file_consumer_ack(void *impl, const sea_message_t *m);
int file_consumer_commit(void *impl, sea_op_t *op);
int file_consumer_lag(void *impl, sea_lag_t *out, size_t cap);
void file_consumer_close(void *impl);

#endif
