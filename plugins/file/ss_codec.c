/* ss_codec.c: the .ss format v1 codec shared by the file plugin, the CLI tools and the tests. */
#include "ss_codec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define SS_READ_CHUNK (1024u * 1024u)
#define SS_READ_MIN (32u * 1024u)

/* CRC-16/CDMA2000 (poly 0xC867, MSB first, init 0xFFFF, no final xor), eight bytes at a time:
 * t[k][b] is the CRC contribution of byte b followed by k zero bytes, so the eight table lookups
 * of a block are independent (slicing-by-8). The tables are built on first use; the bitwise
 * form of the spec gives the same values (the tests check the spec's vectors). */
static uint16_t crc_t[8][256];
static int crc_ready;

static void crc_init(void) {
  for (unsigned i = 0; i < 256; i++) {
    uint16_t c = (uint16_t)(i << 8);
    for (int b = 0; b < 8; b++)
      c = (c & 0x8000) ? (uint16_t)((c << 1) ^ 0xC867) : (uint16_t)(c << 1);
    crc_t[0][i] = c;
  }
  for (int k = 1; k < 8; k++)
    for (unsigned i = 0; i < 256; i++) {
      uint16_t p = crc_t[k - 1][i];
      crc_t[k][i] = (uint16_t)((p << 8) ^ crc_t[0][p >> 8]);
    }
  crc_ready = 1;
}

uint16_t ss_crc16(uint16_t crc, const uint8_t *p, size_t len) {
  if (!crc_ready)
    crc_init();
  while (len >= 8) {
    uint16_t c = (uint16_t)(crc ^ ((uint16_t)p[0] << 8 | p[1]));
    crc = (uint16_t)(crc_t[7][c >> 8] ^ crc_t[6][c & 0xff] ^ crc_t[5][p[2]] ^ crc_t[4][p[3]] ^
                     crc_t[3][p[4]] ^ crc_t[2][p[5]] ^ crc_t[1][p[6]] ^ crc_t[0][p[7]]);
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = (uint16_t)((crc << 8) ^ crc_t[0][((crc >> 8) ^ *p++) & 0xff]);
  return crc;
}

int ss_key_valid(const uint8_t *key, size_t len) {
  if (len > SS_KEY_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

static uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = (v << 8) | p[i];
  return v;
}

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* Strict UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
int ss_utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    size_t k;
    uint32_t cp;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      k = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      k = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      k = 3;
      cp = c & 0x07;
    } else {
      return 0;
    }
    if (n - i <= k)
      return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80)
        return 0;
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += k + 1;
  }
  return 1;
}

/* ------------------------------------------------------------------------------------------------
 * Header
 * ---------------------------------------------------------------------------------------------- */

void ss_header_init(ss_header_t *h, const char *name, uint64_t created_at, uint32_t interval) {
  size_t n = name ? strlen(name) : 0;
  memset(h, 0, sizeof *h);
  if (n > SS_NAME_MAX) {
    n = SS_NAME_MAX;
    while (n > 0 && ((uint8_t)name[n] & 0xC0) == 0x80) /* do not cut a UTF-8 sequence */
      n--;
  }
  if (n > 0)
    memcpy(h->file_name, name, n);
  h->name_len = (uint8_t)n;
  h->created_at = created_at;
  h->interval = interval;
}

void ss_header_encode(const ss_header_t *h, uint8_t out[SS_HEADER_SIZE]) {
  memset(out, 0, SS_HEADER_SIZE);
  out[0] = 'S';
  out[1] = 's';
  out[2] = 1;
  out[3] = h->name_len;
  memcpy(out + 4, h->file_name, h->name_len);
  put64(out + 4 + h->name_len, h->created_at);
  put32(out + 12 + h->name_len, h->interval);
  out[127] = 0x0D;
}

int ss_header_decode(const uint8_t *p, size_t n, ss_header_t *h, char *err, size_t errlen) {
  if (n < SS_HEADER_SIZE) {
    snprintf(err, errlen, "the file is %zu bytes, shorter than the 128-byte header", n);
    return SS_MORE;
  }
  if (p[0] != 'S' || p[1] != 's') {
    snprintf(err, errlen, "offset 0: bad magic %02x %02x (expected 53 73, \"Ss\"): not a .ss file",
             p[0], p[1]);
    return SS_ERR;
  }
  if (p[2] != 1) {
    snprintf(err, errlen, "offset 2: unsupported .ss version %u (expected 1)", p[2]);
    return SS_ERR;
  }
  if (p[3] > SS_NAME_MAX) {
    snprintf(err, errlen, "offset 3: file name length %u is longer than 111", p[3]);
    return SS_ERR;
  }
  memset(h, 0, sizeof *h);
  h->name_len = p[3];
  if (!ss_utf8_valid(p + 4, h->name_len)) {
    snprintf(err, errlen, "offset 4: the file name is not valid UTF-8");
    return SS_ERR;
  }
  memcpy(h->file_name, p + 4, h->name_len);
  h->created_at = be64(p + 4 + h->name_len);
  h->interval = be32(p + 12 + h->name_len);
  if (h->created_at > SS_TS_MAX) {
    snprintf(err, errlen, "offset %u: created_at %llu is past the year 9999", 4 + h->name_len,
             (unsigned long long)h->created_at);
    return SS_ERR;
  }
  if (h->interval < 128) {
    snprintf(err, errlen, "offset %u: beacon interval %u is less than 128", 12 + h->name_len,
             h->interval);
    return SS_ERR;
  }
  if (p[127] != 0x0D) {
    snprintf(err, errlen, "offset 127: header terminator is 0x%02x, expected 0x0d", p[127]);
    return SS_ERR;
  }
  return SS_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Buffers
 * ---------------------------------------------------------------------------------------------- */

int ss_buf_reserve(ss_buf_t *b, size_t more) {
  size_t need, cap;
  uint8_t *q;
  if (more > SIZE_MAX - b->len)
    return SS_NOMEM;
  need = b->len + more;
  if (need <= b->cap)
    return SS_OK;
  cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  q = b->realloc(b->data, cap);
  if (q == NULL)
    return SS_NOMEM;
  b->data = q;
  b->cap = cap;
  return SS_OK;
}

void ss_buf_free(ss_buf_t *b) {
  if (b->data != NULL)
    b->realloc(b->data, 0);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* realloc(p, 0) is how every object here frees: the plugin's realloc frees on size 0. */
static void ss_free(ss_realloc_fn rf, void *p) {
  if (p != NULL)
    rf(p, 0);
}

/* ------------------------------------------------------------------------------------------------
 * Writer
 * ---------------------------------------------------------------------------------------------- */

unsigned ss_num_markers(uint32_t interval) {
  uint32_t max;
  if (interval < 7)
    return 0;
  max = (interval - 7) / 282;
  if (max > 255)
    max = 255;
  return max / 2;
}

void ss_writer_init(ss_writer_t *w, uint32_t interval, uint64_t pos, ss_realloc_fn rf) {
  memset(w, 0, sizeof *w);
  w->interval = interval;
  w->pos = pos;
  w->realloc = rf;
}

void ss_writer_free(ss_writer_t *w) {
  ss_free(w->realloc, w->recs);
  w->recs = NULL;
  w->nrec = w->caprec = 0;
}

/* Records are ordered by key bytes (a prefix first), then shard (6.6). */
static int rec_cmp(const ss_record_t *r, const uint8_t *key, size_t klen, uint64_t shard) {
  size_t n = r->klen < klen ? r->klen : klen;
  int c = n ? memcmp(r->key, key, n) : 0;
  if (c != 0)
    return c;
  if (r->klen != klen)
    return r->klen < klen ? -1 : 1;
  return r->shard < shard ? -1 : r->shard > shard ? 1 : 0;
}

static ss_record_t *writer_record(ss_writer_t *w, const uint8_t *key, size_t klen, uint64_t shard,
                                  int *created) {
  size_t lo = 0, hi = w->nrec;
  *created = 0;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = rec_cmp(&w->recs[mid], key, klen, shard);
    if (c == 0)
      return &w->recs[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (w->nrec == w->caprec) {
    size_t cap = w->caprec ? w->caprec * 2 : 8;
    ss_record_t *q = w->realloc(w->recs, cap * sizeof *q);
    if (q == NULL)
      return NULL;
    w->recs = q;
    w->caprec = cap;
  }
  memmove(w->recs + lo + 1, w->recs + lo, (w->nrec - lo) * sizeof *w->recs);
  w->nrec++;
  memset(&w->recs[lo], 0, sizeof w->recs[lo]);
  memcpy(w->recs[lo].key, key, klen);
  w->recs[lo].klen = (uint8_t)klen;
  w->recs[lo].shard = shard;
  *created = 1;
  return &w->recs[lo];
}

static int write_beacon(ss_writer_t *w, ss_buf_t *out, uint32_t remaining, int empty) {
  size_t n = empty ? 0 : ss_num_markers(w->interval), size = 7, start = 0, i;
  uint8_t *p;
  if (n > w->nrec)
    n = w->nrec;
  if (n > 0)
    start = (size_t)(w->markers_written % w->nrec);
  for (i = 0; i < n; i++)
    size += 27u + w->recs[(start + i) % w->nrec].klen;
  if (ss_buf_reserve(out, size) != SS_OK)
    return SS_NOMEM;
  p = out->data + out->len;
  *p++ = 0x0D;
  put32(p, remaining);
  p += 4;
  *p++ = (uint8_t)n;
  for (i = 0; i < n; i++) {
    const ss_record_t *r = &w->recs[(start + i) % w->nrec];
    *p++ = r->klen;
    memcpy(p, r->key, r->klen);
    p += r->klen;
    put64(p, r->shard);
    put64(p + 8, r->seq);
    put64(p + 16, r->ts);
    p[24] = (uint8_t)(r->crc >> 8);
    p[25] = (uint8_t)r->crc;
    p += 26;
  }
  *p++ = 0x0D;
  out->len += size;
  w->pos += size;
  w->markers_written += n;
  return SS_OK;
}

int ss_writer_begin(ss_writer_t *w, ss_buf_t *out) {
  if (w->pos > 0 && w->pos % w->interval == 0)
    return write_beacon(w, out, 0, 1);
  return SS_OK;
}

/* Copy n logical bytes of a frame of fsize bytes, of which *done are written, cutting at every
 * beacon position and writing the beacon there (6.3). */
static int emit(ss_writer_t *w, ss_buf_t *out, const uint8_t *src, size_t n, uint64_t *done,
                uint64_t fsize) {
  while (n > 0) {
    uint64_t room = w->interval - w->pos % w->interval;
    size_t c = n < room ? n : (size_t)room;
    if (ss_buf_reserve(out, c) != SS_OK)
      return SS_NOMEM;
    memcpy(out->data + out->len, src, c);
    out->len += c;
    w->pos += c;
    *done += c;
    src += c;
    n -= c;
    if (w->pos % w->interval == 0 && write_beacon(w, out, (uint32_t)(fsize - *done), 0) != SS_OK)
      return SS_NOMEM;
  }
  return SS_OK;
}

int ss_writer_frame(ss_writer_t *w, ss_buf_t *out, const uint8_t *key, size_t klen, uint64_t shard,
                    uint64_t seq, uint64_t ts, const uint8_t *payload, size_t plen) {
  uint8_t hdr[SS_KEY_MAX + 29], tail[3];
  uint64_t fsize = SS_FRAME_OVERHEAD + klen + (uint64_t)plen, done = 0;
  uint16_t crc = ss_crc16(0xFFFF, payload, plen);
  int created;
  ss_record_t *r = writer_record(w, key, klen, shard, &created);
  size_t save_len = out->len;
  int rc;

  if (r == NULL)
    return SS_NOMEM;
  /* The record is updated before any byte of the frame, so a beacon that cuts the frame already
   * counts it (6.5). */
  if (created) {
    r->seq = seq;
    r->ts = ts;
    r->crc = 0xFFFF;
  }
  if (seq > r->seq)
    r->seq = seq;
  if (ts > r->ts)
    r->ts = ts;
  tail[0] = (uint8_t)(crc >> 8);
  tail[1] = (uint8_t)crc;
  tail[2] = 0x0D;
  r->crc = ss_crc16(r->crc, tail, 2);

  hdr[0] = (uint8_t)klen;
  memcpy(hdr + 1, key, klen);
  put64(hdr + 1 + klen, shard);
  put64(hdr + 9 + klen, seq);
  put64(hdr + 17 + klen, ts);
  put32(hdr + 25 + klen, (uint32_t)plen);
  if ((rc = emit(w, out, hdr, 29 + klen, &done, fsize)) == SS_OK &&
      (rc = emit(w, out, payload, plen, &done, fsize)) == SS_OK)
    rc = emit(w, out, tail, 3, &done, fsize);
  if (rc != SS_OK)
    out->len = save_len; /* the caller fails the writer: its position is no longer known */
  return rc;
}

/* ------------------------------------------------------------------------------------------------
 * Beacons
 * ---------------------------------------------------------------------------------------------- */

int ss_beacon_parse(const uint8_t *p, size_t n, uint64_t off, uint32_t interval, ss_beacon_t *b,
                    char *err, size_t errlen) {
  size_t q = 6;
  if (n < 1)
    return SS_MORE;
  if (p[0] != 0x0D) {
    snprintf(err, errlen, "offset %llu: broken beacon: starts with 0x%02x, expected 0x0d",
             (unsigned long long)off, p[0]);
    return SS_ERR;
  }
  if (n < 6)
    return SS_MORE;
  b->remaining = be32(p + 1);
  b->count = p[5];
  for (unsigned i = 0; i < b->count; i++) {
    ss_marker_t *m = &b->markers[i];
    uint8_t k;
    if (q + 1 > n)
      return SS_MORE;
    k = p[q];
    if (k > SS_KEY_MAX) {
      snprintf(err, errlen, "offset %llu: broken beacon: marker %u has key length %u (> 249)",
               (unsigned long long)(off + q), i, k);
      return SS_ERR;
    }
    if (q + 27u + k >= interval) {
      snprintf(err, errlen,
               "offset %llu: broken beacon: its markers reach the next beacon position",
               (unsigned long long)off);
      return SS_ERR;
    }
    if (q + 27u + k > n)
      return SS_MORE;
    if (!ss_key_valid(p + q + 1, k)) {
      snprintf(err, errlen, "offset %llu: broken beacon: marker %u has an invalid stream key",
               (unsigned long long)(off + q), i);
      return SS_ERR;
    }
    m->klen = k;
    m->key = p + q + 1;
    m->shard = be64(p + q + 1 + k);
    m->seq = be64(p + q + 9 + k);
    m->ts = be64(p + q + 17 + k);
    m->crc = (uint16_t)((p[q + 25 + k] << 8) | p[q + 26 + k]);
    q += 27u + k;
  }
  if (q + 1 >= interval) {
    snprintf(err, errlen, "offset %llu: broken beacon: it reaches the next beacon position",
             (unsigned long long)off);
    return SS_ERR;
  }
  if (q + 1 > n)
    return SS_MORE;
  if (p[q] != 0x0D) {
    snprintf(err, errlen, "offset %llu: broken beacon: ends with 0x%02x, expected 0x0d",
             (unsigned long long)(off + q), p[q]);
    return SS_ERR;
  }
  b->size = (uint32_t)(q + 1);
  return SS_OK;
}

/* ------------------------------------------------------------------------------------------------
 * Reader
 * ---------------------------------------------------------------------------------------------- */

void ss_reader_init(ss_reader_t *r, uint32_t interval, uint64_t pos, ss_realloc_fn rf) {
  memset(r, 0, sizeof *r);
  r->interval = interval;
  r->pos = pos;
  r->max_frame = 256ull * 1024 * 1024;
  r->scratch.realloc = rf;
}

void ss_reader_free(ss_reader_t *r) {
  ss_buf_free(&r->scratch);
}

/* The state of one frame parse: nothing is written to the reader until the frame is whole. */
typedef struct cur {
  const uint8_t *win;
  uint64_t woff, wend, pos;
  uint64_t done;      /* logical bytes of the frame read */
  int have_b1;        /* a beacon was met inside the frame */
  uint32_t r1;        /* its remaining_msg_bytes */
  uint64_t c1, b1off; /* frame bytes read before it, and its offset */
  uint64_t beacon_off;
  uint64_t start, fsize; /* the frame's offset, and its size once its header is read */
  ss_beacon_t b;
} cur_t;

static int fail(ss_reader_t *r, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ss_reader_t *r, uint64_t off, const char *fmt, ...) {
  va_list ap;
  int n = snprintf(r->err, sizeof r->err, "offset %llu: ", (unsigned long long)off);
  va_start(ap, fmt);
  if (n > 0 && (size_t)n < sizeof r->err)
    vsnprintf(r->err + n, sizeof r->err - (size_t)n, fmt, ap);
  va_end(ap);
  r->err_off = off;
  return SS_ERR;
}

/* A beacon inside a frame disagrees with the frame's length: one of the two is damaged. The frame
 * is named first, since its length is what a reader would follow. */
static int frame_vs_beacon(ss_reader_t *r, const cur_t *c, uint64_t boff, uint32_t remaining,
                           uint64_t done) {
  return fail(r, c->start,
              "impossible length or broken beacon: the frame is %llu bytes, but the beacon at "
              "offset %llu says %u of them follow it (expected %llu)",
              (unsigned long long)c->fsize, (unsigned long long)boff, remaining,
              (unsigned long long)(c->fsize - done));
}

/* Step over the beacon at c->pos (a beacon position). */
static int step_beacon(ss_reader_t *r, cur_t *c) {
  int rc;
  if (c->pos >= c->wend)
    return SS_MORE;
  rc = ss_beacon_parse(c->win + (c->pos - c->woff), (size_t)(c->wend - c->pos), c->pos, r->interval,
                       &c->b, r->err, sizeof r->err);
  if (rc == SS_ERR) {
    r->err_off = c->pos;
    return rc;
  }
  if (rc != SS_OK)
    return rc;
  if (c->done == 0) {
    if (c->b.remaining != 0)
      return fail(r, c->pos, "broken beacon: remaining_msg_bytes is %u between frames, expected 0",
                  c->b.remaining);
  } else if (c->fsize != 0 && (uint64_t)c->b.remaining + c->done != c->fsize) {
    return frame_vs_beacon(r, c, c->pos, c->b.remaining, c->done);
  } else if (!c->have_b1) {
    c->have_b1 = 1;
    c->r1 = c->b.remaining;
    c->c1 = c->done;
    c->b1off = c->pos;
  } else if ((uint64_t)c->b.remaining + (c->done - c->c1) != c->r1) {
    return fail(r, c->pos,
                "broken beacon: remaining_msg_bytes is %u, the beacon before it says %llu",
                c->b.remaining, (unsigned long long)c->r1);
  }
  c->beacon_off = c->pos;
  c->pos += c->b.size;
  return SS_OK;
}

static int at_beacon(const ss_reader_t *r, uint64_t pos) {
  return pos > 0 && pos % r->interval == 0;
}

/* n logical bytes of the frame into dst (NULL: skip), stepping over beacons. */
static int lread(ss_reader_t *r, cur_t *c, uint8_t *dst, size_t n) {
  while (n > 0) {
    uint64_t room, avail;
    size_t k;
    int rc;
    if (at_beacon(r, c->pos) && (rc = step_beacon(r, c)) != SS_OK)
      return rc;
    room = r->interval - c->pos % r->interval;
    avail = c->wend > c->pos ? c->wend - c->pos : 0;
    if (avail == 0)
      return SS_MORE;
    k = n;
    if (k > room)
      k = (size_t)room;
    if (k > avail)
      k = (size_t)avail;
    if (dst) {
      memcpy(dst, c->win + (c->pos - c->woff), k);
      dst += k;
    }
    c->pos += k;
    c->done += k;
    n -= k;
  }
  return SS_OK;
}

int ss_reader_next(ss_reader_t *r, const uint8_t *win, uint64_t win_off, size_t win_len,
                   ss_msg_t *m) {
  cur_t c;
  uint8_t *h = r->hdr, tail[3];
  uint64_t start, fsize;
  uint32_t len;
  uint16_t crc, want;
  int rc;

  c.win = win;
  c.woff = win_off;
  c.wend = win_off + win_len;
  c.pos = r->pos;
  c.done = 0;
  c.have_b1 = 0;
  c.beacon_off = r->beacon_off;
  c.start = c.fsize = 0;
  r->partial = 0;
  r->need = 0;

  /* Beacons before the frame belong to the gap: step over them for good. */
  while (at_beacon(r, c.pos)) {
    if ((rc = step_beacon(r, &c)) != SS_OK) {
      r->partial = rc == SS_MORE && c.wend > c.pos;
      return rc;
    }
    r->pos = c.pos;
    r->beacon_off = c.beacon_off;
  }
  start = c.pos;
  if (c.pos >= c.wend)
    return SS_MORE;
  r->partial = 1;

  if ((rc = lread(r, &c, h, 1)) != SS_OK)
    return rc;
  if (h[0] > SS_KEY_MAX)
    return fail(r, start, "impossible length: stream key of %u bytes (the limit is 249)", h[0]);
  if ((rc = lread(r, &c, h + 1, h[0] + 28u)) != SS_OK)
    return rc;
  if (!ss_key_valid(h + 1, h[0])) {
    /* Shown escaped: a NUL or a control byte would cut or garble the message. */
    char shown[SS_KEY_MAX * 4 + 1];
    size_t o = 0;
    for (unsigned i = 0; i < h[0]; i++) {
      uint8_t b = h[1 + i];
      if (b >= 0x20 && b < 0x7f && b != '\\' && b != '\'')
        shown[o++] = (char)b;
      else
        o += (size_t)snprintf(shown + o, sizeof shown - o, "\\x%02x", b);
    }
    shown[o] = '\0';
    return fail(r, start, "invalid stream key '%s' (A-Z a-z 0-9 . _ - only)", shown);
  }
  m->key = h + 1;
  m->klen = h[0];
  m->shard = be64(h + 1 + h[0]);
  m->seq = be64(h + 9 + h[0]);
  m->ts = be64(h + 17 + h[0]);
  len = be32(h + 25 + h[0]);
  m->len = len;
  fsize = SS_FRAME_OVERHEAD + (uint64_t)h[0] + len;
  if (m->ts > SS_TS_MAX)
    return fail(r, start, "timestamp %llu is past the year 9999", (unsigned long long)m->ts);
  if (fsize > r->max_frame || fsize > UINT32_MAX)
    return fail(r, start, "impossible length: payload of %u bytes (frames are limited to %llu)",
                len, (unsigned long long)r->max_frame);
  r->need = start + fsize;
  c.start = start;
  c.fsize = fsize;
  if (c.have_b1 && (uint64_t)c.r1 + c.c1 != fsize)
    return frame_vs_beacon(r, &c, c.b1off, c.r1, c.c1);

  /* The payload: a pointer into the window when no beacon cuts it, else a copy. */
  if (len > 0 && at_beacon(r, c.pos) && (rc = step_beacon(r, &c)) != SS_OK)
    return rc;
  if (len <= r->interval - c.pos % r->interval) {
    if (c.wend - c.pos < len)
      return SS_MORE;
    m->payload = c.win + (c.pos - c.woff);
    c.pos += len;
    c.done += len;
  } else {
    r->scratch.len = 0;
    if (ss_buf_reserve(&r->scratch, len) != SS_OK)
      return SS_NOMEM;
    if ((rc = lread(r, &c, r->scratch.data, len)) != SS_OK)
      return rc;
    m->payload = r->scratch.data;
  }
  if ((rc = lread(r, &c, tail, 3)) != SS_OK)
    return rc;
  crc = (uint16_t)((tail[0] << 8) | tail[1]);
  want = ss_crc16(0xFFFF, m->payload, len);
  if (crc != want)
    return fail(r, start, "checksum mismatch: stored 0x%04x, payload gives 0x%04x", crc, want);
  if (tail[2] != 0x0D)
    return fail(r, start, "frame terminator is 0x%02x, expected 0x0d", tail[2]);
  m->start = start;
  m->end = c.pos;
  m->eos = m->klen == SS_EOS_KEY_LEN && memcmp(m->key, SS_EOS_KEY, SS_EOS_KEY_LEN) == 0 &&
           len == 3 && memcmp(m->payload, "EOS", 3) == 0;
  r->pos = c.pos;
  r->beacon_off = c.beacon_off;
  r->partial = 0;
  return SS_OK;
}

/* ------------------------------------------------------------------------------------------------
 * A reader over a file descriptor
 * ---------------------------------------------------------------------------------------------- */

static ssize_t pread_full(int fd, void *buf, size_t n, uint64_t off) {
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR)
      continue;
    if (k < 0)
      return -1;
    if (k == 0)
      break;
    got += (size_t)k;
  }
  return (ssize_t)got;
}

int ss_file_open(ss_file_t *f, int fd, ss_realloc_fn rf, char *err, size_t errlen) {
  uint8_t h[SS_HEADER_SIZE];
  ssize_t n;
  int rc;
  memset(f, 0, sizeof *f);
  f->fd = fd;
  f->buf.realloc = rf;
  n = pread_full(fd, h, sizeof h, 0);
  if (n < 0) {
    snprintf(err, errlen, "cannot read the header: %s", strerror(errno));
    return SS_ERR;
  }
  if ((rc = ss_header_decode(h, (size_t)n, &f->header, err, errlen)) != SS_OK)
    return rc;
  ss_reader_init(&f->r, f->header.interval, SS_HEADER_SIZE, rf);
  f->buf_off = SS_HEADER_SIZE;
  f->bscratch = rf(NULL, sizeof *f->bscratch);
  if (f->bscratch == NULL)
    return SS_NOMEM;
  return SS_OK;
}

void ss_file_close(ss_file_t *f) {
  ss_reader_free(&f->r);
  ss_buf_free(&f->buf);
  if (f->bscratch != NULL && f->buf.realloc != NULL)
    f->buf.realloc(f->bscratch, 0);
  f->bscratch = NULL;
}

uint64_t ss_file_size(const ss_file_t *f) {
  struct stat st;
  if (fstat(f->fd, &st) != 0)
    return 0;
  return (uint64_t)st.st_size;
}

void ss_file_goto(ss_file_t *f, uint64_t pos) {
  f->read_size = 0;
  f->r.pos = pos;
  f->buf_off = pos;
  f->buf.len = 0;
  f->at_eof = 0;
}

int ss_file_next(ss_file_t *f, ss_msg_t *m) {
  int read_once = 0;
  for (;;) {
    int rc;
    ssize_t k;
    size_t keep;
    if (f->r.pos < f->buf_off || f->r.pos > f->buf_off + f->buf.len) {
      f->buf_off = f->r.pos;
      f->buf.len = 0;
    }
    rc = ss_reader_next(&f->r, f->buf.data, f->buf_off, f->buf.len, m);
    if (rc != SS_MORE || read_once)
      return rc;
    /* Keep the bytes from the frame start on, and read more after them. */
    keep = (size_t)(f->buf_off + f->buf.len - f->r.pos);
    if (keep > 0 && f->r.pos > f->buf_off)
      memmove(f->buf.data, f->buf.data + (f->r.pos - f->buf_off), keep);
    f->buf.len = keep;
    f->buf_off = f->r.pos;
    /* Reads start small after a jump (a seek reads little) and double up to SS_READ_CHUNK. */
    if (f->read_size < SS_READ_MIN)
      f->read_size = SS_READ_MIN;
    if (f->buf.cap - f->buf.len < f->read_size && ss_buf_reserve(&f->buf, f->read_size) != SS_OK)
      return SS_NOMEM;
    k = pread(f->fd, f->buf.data + f->buf.len, f->read_size, (off_t)(f->buf_off + f->buf.len));
    if (f->read_size < SS_READ_CHUNK)
      f->read_size *= 2;
    if (k < 0) {
      if (errno == EINTR)
        continue;
      snprintf(f->r.err, sizeof f->r.err, "offset %llu: read failed: %s",
               (unsigned long long)(f->buf_off + f->buf.len), strerror(errno));
      f->r.err_off = f->buf_off + f->buf.len;
      return SS_ERR;
    }
    f->at_eof = k == 0;
    if (k == 0)
      read_once = 1; /* parse once more (a beacon may have been stepped), then report */
    f->buf.len += (size_t)k;
  }
}

int ss_file_beacon(ss_file_t *f, uint64_t k, ss_beacon_t *b, char *err, size_t errlen) {
  uint64_t off = k * f->header.interval;
  size_t want = 4096;
  for (;;) {
    ssize_t n;
    int rc;
    if (want > f->header.interval)
      want = f->header.interval;
    f->r.scratch.len = 0;
    if (ss_buf_reserve(&f->r.scratch, want) != SS_OK)
      return SS_NOMEM;
    n = pread_full(f->fd, f->r.scratch.data, want, off);
    if (n < 0) {
      snprintf(err, errlen, "offset %llu: read failed: %s", (unsigned long long)off,
               strerror(errno));
      return SS_ERR;
    }
    rc = ss_beacon_parse(f->r.scratch.data, (size_t)n, off, f->header.interval, b, err, errlen);
    if (rc != SS_MORE || (size_t)n < want || want >= SS_BEACON_MAX)
      return rc;
    want = SS_BEACON_MAX;
  }
}

int ss_file_after_beacon(ss_file_t *f, uint64_t k, uint64_t *pos, char *err, size_t errlen) {
  uint64_t I = f->header.interval, size = ss_file_size(f);
  if (k == 0) {
    *pos = SS_HEADER_SIZE;
    return SS_OK;
  }
  for (;;) {
    int rc;
    if (k * I >= size)
      return SS_MORE;
    rc = ss_file_beacon(f, k, f->bscratch, err, errlen);
    if (rc != SS_OK)
      return rc;
    *pos = k * I + f->bscratch->size;
    *pos += f->bscratch->remaining < I - f->bscratch->size ? f->bscratch->remaining
                                                           : I - f->bscratch->size;
    if (*pos % I != 0)
      return SS_OK;
    k = *pos / I;
  }
}

int ss_file_live_start(ss_file_t *f, uint64_t *pos, char *err, size_t errlen) {
  uint64_t I = f->header.interval, size = ss_file_size(f), k = size / I;
  ss_msg_t m;
  int rc;
  for (;;) {
    rc = ss_file_after_beacon(f, k, pos, err, errlen);
    if (rc == SS_OK)
      break;
    if (rc != SS_MORE || k == 0)
      return rc;
    k--; /* the last beacon is not whole yet: start one earlier */
  }
  ss_file_goto(f, *pos);
  while ((rc = ss_file_next(f, &m)) == SS_OK)
    ;
  if (rc != SS_MORE) {
    snprintf(err, errlen, "%s", f->r.err);
    return rc;
  }
  *pos = f->r.pos;
  return SS_OK;
}

/* -1 left, +1 right, 0 undecided. A beacon is left only when it mentions every stream and all
 * of them are left: then each stream's target lies after it. It is right when it mentions one
 * stream that is right. Otherwise it says nothing for sure. */
static int classify(ss_file_t *f, uint64_t j, const ss_stream_ref_t *st, size_t n, int by_time,
                    uint64_t target) {
  char err[200];
  ss_beacon_t *b = f->bscratch;
  size_t found = 0;
  if (ss_file_beacon(f, j, b, err, sizeof err) != SS_OK)
    return 0;
  for (size_t s = 0; s < n; s++) {
    for (unsigned i = 0; i < b->count; i++) {
      const ss_marker_t *mk = &b->markers[i];
      if (mk->klen == st[s].klen && mk->shard == st[s].shard &&
          memcmp(mk->key, st[s].key, st[s].klen) == 0) {
        int left = by_time ? mk->ts <= target : mk->seq < target;
        if (!left)
          return 1;
        found++;
        break;
      }
    }
  }
  return found == n && n > 0 ? -1 : 0;
}

int ss_file_seek_streams(ss_file_t *f, const ss_stream_ref_t *streams, size_t n, int by_time,
                         uint64_t target, uint64_t *beacon) {
  uint64_t lo = 0, hi = ss_file_size(f) / f->header.interval + 1;
  /* Invariant: lo is left (or 0), hi is right (or past the last beacon). */
  while (hi - lo > 1) {
    uint64_t mid = lo + (hi - lo) / 2, d;
    int c = classify(f, mid, streams, n, by_time, target);
    /* An undecided beacon says nothing: try its neighbours, nearest first. */
    for (d = 1; c == 0; d++) {
      int tried = 0;
      if (mid + d < hi) {
        tried = 1;
        if ((c = classify(f, mid + d, streams, n, by_time, target)) != 0) {
          mid += d;
          break;
        }
      }
      if (mid >= d && mid - d > lo) {
        tried = 1;
        if ((c = classify(f, mid - d, streams, n, by_time, target)) != 0) {
          mid -= d;
          break;
        }
      }
      if (!tried)
        break;
    }
    if (c == 0)
      break; /* nothing between lo and hi is decided: lo is as far as we can go */
    if (c < 0)
      lo = mid;
    else
      hi = mid;
  }
  *beacon = lo;
  return SS_OK;
}

int ss_file_seek_beacon(ss_file_t *f, const uint8_t *key, size_t klen, uint64_t shard, int by_time,
                        uint64_t target, uint64_t *beacon) {
  ss_stream_ref_t one = {key, klen, shard};
  return ss_file_seek_streams(f, &one, 1, by_time, target, beacon);
}

/* ------------------------------------------------------------------------------------------------
 * The writer lock
 * ---------------------------------------------------------------------------------------------- */

/* The process holding a flock on the file st names, from /proc/locks: a line such as
 * "3: FLOCK  ADVISORY  WRITE 4242 fe:00:9978386 0 EOF" (pid, then the device's major and minor
 * in hex and the inode). Lines of waiters ("3: -> FLOCK ...") are not holders. Best effort: a
 * holder in another pid namespace shows as pid 0, and then nothing is found. */
static void lock_holder(const struct stat *st, char *who, size_t wholen) {
  FILE *pl = fopen("/proc/locks", "re");
  char line[256], kind[16], how[16];
  long pid = 0;
  if (pl == NULL)
    return;
  while (fgets(line, sizeof line, pl) != NULL) {
    unsigned maj, min;
    unsigned long long ino;
    long p;
    if (sscanf(line, "%*d: %15s %*s %15s %ld %x:%x:%llu", kind, how, &p, &maj, &min, &ino) == 6 &&
        strcmp(kind, "FLOCK") == 0 && p > 0 && ino == (unsigned long long)st->st_ino &&
        maj == major(st->st_dev) && min == minor(st->st_dev)) {
      pid = p;
      break;
    }
  }
  fclose(pl);
  if (pid <= 0)
    return;
  if (pid == (long)getpid()) {
    snprintf(who, wholen, "pid %ld, this process", pid);
    return;
  }
  /* Its command name, when it can be read. */
  char path[64], name[64] = "";
  snprintf(path, sizeof path, "/proc/%ld/comm", pid);
  FILE *cf = fopen(path, "re");
  if (cf != NULL) {
    if (fgets(name, sizeof name, cf) == NULL)
      name[0] = '\0';
    fclose(cf);
    name[strcspn(name, "\n")] = '\0';
  }
  if (name[0])
    snprintf(who, wholen, "pid %ld, %s", pid, name);
  else
    snprintf(who, wholen, "pid %ld", pid);
}

int ss_lock_writer(int fd, char *who, size_t wholen) {
  struct stat st;
  if (wholen > 0)
    who[0] = '\0';
  for (;;) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
      return 0;
    if (errno != EINTR)
      break;
  }
  if (errno != EWOULDBLOCK)
    return -1;
  if (wholen > 0 && fstat(fd, &st) == 0)
    lock_holder(&st, who, wholen);
  return 1;
}
