/* ss_codec.h: SeaStreamer's .ss file format, version 1: checksum, header, a frame writer that
 * places beacons, a frame reader that steps over them, and random access to beacons for seeking.
 *
 * Plain C with no dependency on the host, so that the file plugin, the `seastreamer
 * decode|verify|repair` tools, the tests and the fuzz target all compile the same file. The byte
 * layout is /work/shared/docs/ss-format.md (section numbers below refer to it). Allocation goes
 * through a realloc-style function each object is given, so the plugin can use the host's.
 */
#ifndef SS_CODEC_H
#define SS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define SS_HEADER_SIZE 128u
#define SS_KEY_MAX 249u
#define SS_NAME_MAX 111u
#define SS_TS_MAX 253402300799999ull
#define SS_EOS_KEY "SEA_STREAMER_INTERNAL"
#define SS_EOS_KEY_LEN 21u
#define SS_FRAME_OVERHEAD 32u
#define SS_DEFAULT_INTERVAL (1024u * 1024u)
/* The largest beacon: 7 bytes and 255 markers of 282 bytes. */
#define SS_BEACON_MAX (7u + 255u * 282u)

/* Results of the reader. */
enum {
  SS_OK = 0,
  SS_MORE = 1,  /* the bytes end before the frame (or beacon) does: wait, or it is truncated */
  SS_ERR = -1,  /* the bytes are not a valid .ss file: see err_off and err */
  SS_NOMEM = -2 /* an allocation failed */
};

typedef void *(*ss_realloc_fn)(void *p, size_t size);

uint16_t ss_crc16(uint16_t crc, const uint8_t *p, size_t len);
int ss_key_valid(const uint8_t *key, size_t len); /* the frame rules: 0..249 of [A-Za-z0-9._-] */
int ss_utf8_valid(const uint8_t *s, size_t n);    /* strict UTF-8: no overlongs or surrogates */

/* ---- header (section 3) ---- */
typedef struct ss_header {
  char file_name[SS_NAME_MAX + 1]; /* NUL-terminated */
  uint8_t name_len;
  uint64_t created_at; /* ms */
  uint32_t interval;
} ss_header_t;

/* name is cut to its first 111 bytes (at a UTF-8 boundary). */
void ss_header_init(ss_header_t *h, const char *name, uint64_t created_at, uint32_t interval);
void ss_header_encode(const ss_header_t *h, uint8_t out[SS_HEADER_SIZE]);
/* SS_OK, SS_MORE (fewer than 128 bytes) or SS_ERR with a message in err. */
int ss_header_decode(const uint8_t *p, size_t n, ss_header_t *h, char *err, size_t errlen);

/* A growable byte buffer. */
typedef struct ss_buf {
  uint8_t *data;
  size_t len, cap;
  ss_realloc_fn realloc;
} ss_buf_t;

int ss_buf_reserve(ss_buf_t *b, size_t more);
void ss_buf_free(ss_buf_t *b);

/* ---- writer (sections 6 and 9) ---- */
typedef struct ss_record {
  uint8_t key[SS_KEY_MAX + 7];
  uint8_t klen;
  uint64_t shard, seq, ts;
  uint16_t crc;
} ss_record_t;

typedef struct ss_writer {
  uint32_t interval;
  uint64_t pos;      /* physical offset of the next byte written */
  ss_record_t *recs; /* sorted by key bytes, then shard */
  size_t nrec, caprec;
  uint64_t markers_written;
  ss_realloc_fn realloc;
} ss_writer_t;

/* A writer session that resumes at pos (128 for a new file). */
void ss_writer_init(ss_writer_t *w, uint32_t interval, uint64_t pos, ss_realloc_fn rf);
void ss_writer_free(ss_writer_t *w);
/* The empty beacon a session writes first when it starts on a beacon position (6.7). */
int ss_writer_begin(ss_writer_t *w, ss_buf_t *out);
/* Append one frame (and the beacons it meets) to out. The caller checked the key and sizes. */
int ss_writer_frame(ss_writer_t *w, ss_buf_t *out, const uint8_t *key, size_t klen, uint64_t shard,
                    uint64_t seq, uint64_t ts, const uint8_t *payload, size_t plen);
/* Number of markers per beacon for an interval (6.6). */
unsigned ss_num_markers(uint32_t interval);

/* ---- beacons ---- */
typedef struct ss_marker {
  const uint8_t *key; /* points into the bytes parsed */
  uint8_t klen;
  uint64_t shard, seq, ts;
  uint16_t crc;
} ss_marker_t;

typedef struct ss_beacon {
  uint32_t remaining;
  uint32_t size;
  unsigned count;
  ss_marker_t markers[255];
} ss_beacon_t;

/* Parse the beacon at physical offset off from p[0..n). SS_MORE if n is too short. */
int ss_beacon_parse(const uint8_t *p, size_t n, uint64_t off, uint32_t interval, ss_beacon_t *b,
                    char *err, size_t errlen);

/* ---- reader (section 8) ---- */
typedef struct ss_msg {
  const uint8_t *key; /* valid until the next call on the reader */
  uint8_t klen;
  uint64_t shard, seq, ts;
  uint32_t len;
  const uint8_t *payload; /* in the window, or in the reader's scratch when beacons split it */
  uint64_t start, end;    /* physical offsets of the frame's first byte and one past its last */
  int eos;
} ss_msg_t;

typedef struct ss_reader {
  uint32_t interval;
  uint64_t pos;        /* the next frame starts here (or a beacon that precedes it) */
  uint64_t beacon_off; /* the latest beacon consumed, 0 = none */
  uint64_t max_frame;  /* a frame longer than this is an impossible length */
  int partial;         /* after SS_MORE: some bytes of an incomplete frame or beacon exist */
  uint64_t need;       /* after SS_MORE: the physical end the frame needs, when known */
  uint8_t hdr[SS_KEY_MAX + 40];
  ss_buf_t scratch;
  uint64_t err_off;
  char err[200];
} ss_reader_t;

void ss_reader_init(ss_reader_t *r, uint32_t interval, uint64_t pos, ss_realloc_fn rf);
void ss_reader_free(ss_reader_t *r);
/* Parse the frame at r->pos from win, the physical bytes [win_off, win_off + win_len) of the file
 * (win_off <= r->pos). SS_OK: m is the frame and r->pos is past it. SS_MORE: the window ends
 * first; r->pos is unchanged apart from complete beacons stepped over (r->partial says whether
 * bytes of the next frame exist). SS_ERR: r->err_off and r->err say what and where. */
int ss_reader_next(ss_reader_t *r, const uint8_t *win, uint64_t win_off, size_t win_len,
                   ss_msg_t *m);

/* ---- a reader over a file descriptor, with its own growing window ---- */
typedef struct ss_file {
  int fd;
  ss_header_t header;
  ss_reader_t r;
  ss_buf_t buf;
  uint64_t buf_off; /* file offset of buf.data[0] */
  int at_eof;       /* the last read returned 0 bytes */
  size_t read_size; /* bytes asked of the next read */
  ss_beacon_t *bscratch;
} ss_file_t;

/* Read and check the header of fd; the reader starts at offset 128. */
int ss_file_open(ss_file_t *f, int fd, ss_realloc_fn rf, char *err, size_t errlen);
void ss_file_close(ss_file_t *f); /* does not close fd */
/* The next frame; SS_MORE at the current end of the file (f->r.partial: inside a frame). */
int ss_file_next(ss_file_t *f, ss_msg_t *m);
/* Move the reader to a physical offset where a frame starts (drops the window). */
void ss_file_goto(ss_file_t *f, uint64_t pos);
uint64_t ss_file_size(const ss_file_t *f);

/* Read the beacon with index k (at k * interval): SS_OK, SS_MORE (not all there), SS_ERR. */
int ss_file_beacon(ss_file_t *f, uint64_t k, ss_beacon_t *b, char *err, size_t errlen);
/* The first frame start after beacon k (8.3); k = 0 is offset 128. SS_MORE if beyond the file. */
int ss_file_after_beacon(ss_file_t *f, uint64_t k, uint64_t *pos, char *err, size_t errlen);
/* Where live reading starts (8.5): the end of the last complete frame. */
int ss_file_live_start(ss_file_t *f, uint64_t *pos, char *err, size_t errlen);

/* Seeking (8.4): the highest beacon index that lies before the target for one stream, by binary
 * search that steps over beacons which do not mention the stream. by_time: the target is a
 * timestamp (left when the marker's ts <= target), else a sequence (left when seq < target). */
int ss_file_seek_beacon(ss_file_t *f, const uint8_t *key, size_t klen, uint64_t shard, int by_time,
                        uint64_t target, uint64_t *beacon);
/* The same for several streams at once: the highest beacon that lies before every stream's
 * target (a beacon that does not mention all of them is stepped over). */
typedef struct ss_stream_ref {
  const uint8_t *key;
  size_t klen;
  uint64_t shard;
} ss_stream_ref_t;
int ss_file_seek_streams(ss_file_t *f, const ss_stream_ref_t *streams, size_t n, int by_time,
                         uint64_t target, uint64_t *beacon);

/* ---- the writer lock ---- */

/* Take the writer lock of a .ss file open for writing: an exclusive flock(2), without waiting.
 * It belongs to the open file description, so a second open of the file in the same process is
 * refused as one in another process is; it lasts until the last descriptor of that open is
 * closed, and the kernel drops it when the process dies. Readers never take it. Returns 0 (the
 * lock is held), 1 when another writer holds it (who: "pid N, NAME" from /proc/locks, or "" when
 * that cannot be found), -1 with errno set on any other failure. */
int ss_lock_writer(int fd, char *who, size_t wholen);

#endif
