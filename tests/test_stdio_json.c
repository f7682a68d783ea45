/* test_stdio_json.c: the stdio writer's JSON form (format=json, what `consume -J` prints) is
 * faithful for any bytes: a payload, key or header value that is valid UTF-8 is a JSON string,
 * any other is base64 in a _b64 field; each line is strict JSON, decoded here by the test's own
 * parser and compared byte for byte with what was sent. Covers every byte value alone and all 256
 * together, overlong forms, surrogates, truncated sequences, code points past U+10FFFF, and valid
 * multi-byte UTF-8 (which must stay text). Then the writer's end when the reader of stdout goes
 * away: a line written whole before that is receipted as done before a flush reports the failure,
 * so the pipeline behind `consume | head` commits it. */
#include <fcntl.h>
#include <seastreamer/seastreamer.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "test.h"

/* ---- a strict decoder for the lines the writer prints ---- */

typedef struct buf {
  uint8_t d[4096];
  size_t n;
} buf_t;

static int put(buf_t *b, uint8_t c) {
  if (b->n >= sizeof b->d)
    return -1;
  b->d[b->n++] = c;
  return 0;
}

/* The code point of the valid UTF-8 sequence at s, its length in *len; -1 if not valid (written
 * from the Unicode table of well-formed sequences, independently of the plugin's checker). */
static long utf8_decode(const uint8_t *s, size_t n, size_t *len) {
  uint8_t c = s[0];
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  static const struct {
    uint8_t lo, hi, lo2, hi2;
    int k;
  } t[] = {{0xC2, 0xDF, 0x80, 0xBF, 2}, {0xE0, 0xE0, 0xA0, 0xBF, 3}, {0xE1, 0xEC, 0x80, 0xBF, 3},
           {0xED, 0xED, 0x80, 0x9F, 3}, {0xEE, 0xEF, 0x80, 0xBF, 3}, {0xF0, 0xF0, 0x90, 0xBF, 4},
           {0xF1, 0xF3, 0x80, 0xBF, 4}, {0xF4, 0xF4, 0x80, 0x8F, 4}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    if (c < t[i].lo || c > t[i].hi)
      continue;
    size_t k = (size_t)t[i].k;
    if (n < k || s[1] < t[i].lo2 || s[1] > t[i].hi2)
      return -1;
    long cp = c & (k == 2 ? 0x1F : k == 3 ? 0x0F : 0x07);
    cp = cp << 6 | (s[1] & 0x3F);
    for (size_t j = 2; j < k; j++) {
      if ((s[j] & 0xC0) != 0x80)
        return -1;
      cp = cp << 6 | (s[j] & 0x3F);
    }
    *len = k;
    return cp;
  }
  return -1;
}

static int is_utf8(const uint8_t *s, size_t n) {
  size_t i = 0, k;
  while (i < n) {
    if (utf8_decode(s + i, n - i, &k) < 0)
      return 0;
    i += k;
  }
  return 1;
}

static void put_utf8(buf_t *b, long cp) {
  if (cp < 0x80) {
    put(b, (uint8_t)cp);
  } else if (cp < 0x800) {
    put(b, (uint8_t)(0xC0 | cp >> 6));
    put(b, (uint8_t)(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    put(b, (uint8_t)(0xE0 | cp >> 12));
    put(b, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
    put(b, (uint8_t)(0x80 | (cp & 0x3F)));
  } else {
    put(b, (uint8_t)(0xF0 | cp >> 18));
    put(b, (uint8_t)(0x80 | (cp >> 12 & 0x3F)));
    put(b, (uint8_t)(0x80 | (cp >> 6 & 0x3F)));
    put(b, (uint8_t)(0x80 | (cp & 0x3F)));
  }
}

typedef struct parser {
  const uint8_t *p, *end;
  int bad;
} parser_t;

static int hexval(uint8_t c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

static long hex4(parser_t *ps) {
  if (ps->end - ps->p < 4)
    return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(ps->p[i]);
    if (h < 0)
      return -1;
    v = v << 4 | h;
  }
  ps->p += 4;
  return v;
}

/* A JSON string, strictly: no raw control characters, only JSON's escapes, valid UTF-8. */
static int parse_str(parser_t *ps, buf_t *out) {
  out->n = 0;
  if (ps->p >= ps->end || *ps->p != '"')
    return -1;
  ps->p++;
  while (ps->p < ps->end && *ps->p != '"') {
    uint8_t c = *ps->p;
    if (c < 0x20)
      return -1;
    if (c != '\\') {
      size_t k;
      if (utf8_decode(ps->p, (size_t)(ps->end - ps->p), &k) < 0)
        return -1;
      for (size_t i = 0; i < k; i++)
        put(out, ps->p[i]);
      ps->p += k;
      continue;
    }
    if (++ps->p >= ps->end)
      return -1;
    c = *ps->p++;
    const char *esc = strchr("\"\\/bfnrt", c);
    if (esc != NULL && c != '\0') {
      static const char to[] = "\"\\/\b\f\n\r\t";
      put(out, (uint8_t)to[esc - "\"\\/bfnrt"]);
    } else if (c == 'u') {
      long cp = hex4(ps);
      if (cp < 0)
        return -1;
      if (cp >= 0xD800 && cp <= 0xDBFF) { /* a pair */
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
          return -1;
        ps->p += 2;
        long lo = hex4(ps);
        if (lo < 0xDC00 || lo > 0xDFFF)
          return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return -1;
      }
      put_utf8(out, cp);
    } else {
      return -1;
    }
  }
  if (ps->p >= ps->end)
    return -1;
  ps->p++;
  return 0;
}

static int b64val(uint8_t c) {
  return c >= 'A' && c <= 'Z'   ? c - 'A'
         : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52
         : c == '+'             ? 62
         : c == '/'             ? 63
                                : -1;
}

/* Strict base64: groups of four, '=' only to pad the last group. */
static int unbase64(const buf_t *in, buf_t *out) {
  out->n = 0;
  if (in->n % 4 != 0)
    return -1;
  for (size_t i = 0; i < in->n; i += 4) {
    int v[4], pad = 0;
    for (int j = 0; j < 4; j++) {
      uint8_t c = in->d[i + (size_t)j];
      if (c == '=' && i + 4 == in->n && j >= 2) {
        v[j] = 0;
        pad++;
      } else if (pad > 0 || (v[j] = b64val(c)) < 0) {
        return -1;
      }
    }
    uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    put(out, (uint8_t)(w >> 16));
    if (pad < 2)
      put(out, (uint8_t)(w >> 8));
    if (pad < 1)
      put(out, (uint8_t)w);
  }
  return 0;
}

static void skip_number_or_null(parser_t *ps) {
  if (ps->end - ps->p >= 4 && memcmp(ps->p, "null", 4) == 0) {
    ps->p += 4;
    return;
  }
  const uint8_t *s = ps->p;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
    ps->p++;
  if (ps->p == s)
    ps->bad = 1;
}

/* What one line says. */
typedef struct decoded {
  int has_payload, has_payload_b64, has_key, has_key_b64;
  buf_t payload, key;
  char hnames[4][32];
  buf_t hvals[4];
  int hb64[4], hnull[4];
  size_t nh;
} decoded_t;

/* An object of header name → string or null. */
static int parse_headers(parser_t *ps, decoded_t *d, int b64) {
  buf_t name;
  if (ps->p >= ps->end || *ps->p++ != '{')
    return -1;
  if (ps->p < ps->end && *ps->p == '}') {
    ps->p++;
    return -1; /* the writer never prints an empty one */
  }
  for (;;) {
    if (parse_str(ps, &name) != 0 || ps->p >= ps->end || *ps->p++ != ':' || d->nh >= 4 ||
        name.n >= sizeof d->hnames[0])
      return -1;
    size_t i = d->nh++;
    memcpy(d->hnames[i], name.d, name.n);
    d->hnames[i][name.n] = '\0';
    d->hb64[i] = b64;
    if (ps->end - ps->p >= 4 && memcmp(ps->p, "null", 4) == 0) {
      ps->p += 4;
      d->hnull[i] = 1;
    } else {
      buf_t v;
      if (parse_str(ps, &v) != 0)
        return -1;
      if (b64 ? unbase64(&v, &d->hvals[i]) != 0 : (d->hvals[i] = v, 0))
        return -1;
    }
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == '}') {
      ps->p++;
      return 0;
    }
    return -1;
  }
}

static int parse_line(const uint8_t *s, size_t n, decoded_t *d) {
  parser_t ps = {s, s + n, 0};
  buf_t name, v;
  memset(d, 0, sizeof *d);
  if (n == 0 || *ps.p++ != '{')
    return -1;
  for (;;) {
    if (parse_str(&ps, &name) != 0 || ps.p >= ps.end || *ps.p++ != ':')
      return -1;
    name.d[name.n < sizeof name.d ? name.n : sizeof name.d - 1] = '\0';
    const char *k = (const char *)name.d;
    if (strcmp(k, "shard_id") == 0 || strcmp(k, "seq") == 0) {
      skip_number_or_null(&ps);
    } else if (strcmp(k, "headers") == 0 || strcmp(k, "headers_b64") == 0) {
      if (parse_headers(&ps, d, k[7] == '_') != 0)
        return -1;
    } else {
      if (parse_str(&ps, &v) != 0)
        return -1;
      if (strcmp(k, "payload") == 0) {
        d->has_payload++;
        d->payload = v;
      } else if (strcmp(k, "payload_b64") == 0) {
        d->has_payload_b64++;
        if (unbase64(&v, &d->payload) != 0)
          return -1;
      } else if (strcmp(k, "key") == 0) {
        d->has_key++;
        d->key = v;
      } else if (strcmp(k, "key_b64") == 0) {
        d->has_key_b64++;
        if (unbase64(&v, &d->key) != 0)
          return -1;
      } else if (strcmp(k, "stream_key") != 0 && strcmp(k, "timestamp") != 0) {
        return -1; /* a field nobody documented */
      }
    }
    if (ps.bad || ps.p >= ps.end)
      return -1;
    if (*ps.p == ',') {
      ps.p++;
      continue;
    }
    if (*ps.p++ != '}')
      return -1;
    break;
  }
  return ps.p == ps.end ? 0 : -1;
}

/* ---- the cases ---- */

typedef struct tcase {
  const char *what;
  uint8_t bytes[300];
  size_t len;
  int text; /* expected: a JSON string (1) or base64 (0); -1 = the test's own checker decides */
} tcase_t;

#define MAXCASES 600
static tcase_t cases[MAXCASES];
static size_t ncases;

static void add(const char *what, const void *b, size_t n, int text) {
  tcase_t *c = &cases[ncases++];
  c->what = what;
  memcpy(c->bytes, b, n);
  c->len = n;
  c->text = text;
}

static void make_cases(void) {
  uint8_t all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (uint8_t)i;
  add("all 256 byte values", all, 256, 0);
  for (int i = 0; i < 256; i++)
    add("one byte", &all[i], 1, i < 0x80); /* every byte alone: ASCII is text, the rest is not */
  add("empty", "", 0, 1);
  add("quotes, backslash, controls", "\"a\\b\"\n\r\t\b\f\x01\x1f\x7f/", 15, 1);
  add("NUL inside text", "a\0b", 3, 1);
  /* Valid multi-byte UTF-8 stays text, at the edges of each length. */
  add("U+0080", "\xc2\x80", 2, 1);
  add("e acute", "caf\xc3\xa9", 5, 1);
  add("U+07FF", "\xdf\xbf", 2, 1);
  add("U+0800", "\xe0\xa0\x80", 3, 1);
  add("euro sign", "\xe2\x82\xac", 3, 1);
  add("U+D7FF", "\xed\x9f\xbf", 3, 1);
  add("U+E000", "\xee\x80\x80", 3, 1);
  add("U+FFFF", "\xef\xbf\xbf", 3, 1);
  add("U+2028 line separator", "\xe2\x80\xa8", 3, 1);
  add("U+10000", "\xf0\x90\x80\x80", 4, 1);
  add("emoji", "\xf0\x9f\x98\x80", 4, 1);
  add("U+10FFFF", "\xf4\x8f\xbf\xbf", 4, 1);
  add("mixed text", "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", 11, 1);
  /* Not valid UTF-8: base64. */
  add("overlong NUL (C0 80)", "\xc0\x80", 2, 0);
  add("overlong slash (C0 AF)", "\xc0\xaf", 2, 0);
  add("overlong C1 BF", "\xc1\xbf", 2, 0);
  add("overlong 3-byte (E0 80 AF)", "\xe0\x80\xaf", 3, 0);
  add("overlong 3-byte (E0 9F BF)", "\xe0\x9f\xbf", 3, 0);
  add("overlong 4-byte (F0 80 80 AF)", "\xf0\x80\x80\xaf", 4, 0);
  add("overlong 4-byte (F0 8F BF BF)", "\xf0\x8f\xbf\xbf", 4, 0);
  add("high surrogate D800", "\xed\xa0\x80", 3, 0);
  add("low surrogate DFFF", "\xed\xbf\xbf", 3, 0);
  add("surrogate pair as CESU-8", "\xed\xa0\xbd\xed\xb8\x80", 6, 0);
  add("past U+10FFFF (F4 90 80 80)", "\xf4\x90\x80\x80", 4, 0);
  add("F5 lead", "\xf5\x80\x80\x80", 4, 0);
  add("FF", "\xff", 1, 0);
  add("FE FF BOM-like", "\xfe\xff", 2, 0);
  add("truncated 2-byte", "a\xc3", 2, 0);
  add("truncated 3-byte", "\xe2\x82", 2, 0);
  add("truncated 4-byte", "\xf0\x9f\x98", 3, 0);
  add("truncated then ASCII", "\xe2\x82z", 3, 0);
  add("lone continuation", "\x80", 1, 0);
  add("continuation after ASCII", "abc\xbf", 4, 0);
  add("Latin-1 e acute", "caf\xe9", 4, 0);
  add("valid text then one bad byte", "\xe2\x82\xac\xf0\x9f\x98\x80\xff", 8, 0);
  add("newline and invalid", "a\n\xff\nb", 5, 0);
}

/* ---- the run ---- */

static int receipts, receipt_errors;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  receipts++;
  receipt_errors += status != 0;
}

static int flushed;
static void on_flush(void *data, int status) {
  flushed = status == 0 ? 1 : -1;
}

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  size_t cap = 1 << 20, len = 0;
  uint8_t *b = malloc(cap);
  size_t r;
  while (b && (r = fread(b + len, 1, cap - len, f)) > 0) {
    len += r;
    if (len == cap) {
      uint8_t *nb = realloc(b, cap *= 2);
      if (nb == NULL) {
        free(b);
        b = NULL;
      }
      b = nb;
    }
  }
  fclose(f);
  *n = len;
  return b;
}

static void check_bytes(const char *what, const char *field, const buf_t *got, const uint8_t *want,
                        size_t n) {
  if (got->n == n && memcmp(got->d, want, n) == 0) {
    test_passed++;
    return;
  }
  test_failed++;
  fprintf(stderr, "%s: %s: %zu bytes came back, %zu were sent, or they differ\n", what, field,
          got->n, n);
}

/* ---- the reader goes away ---- */

static int epipe_receipts[2], epipe_status[2], epipe_flush_status, epipe_flush_seen_receipts;

static void on_epipe_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  int i = (int)(intptr_t)token;
  epipe_receipts[i]++;
  epipe_status[i] = status;
}

static void on_epipe_flush(void *data, int status) {
  epipe_flush_status = status;
  epipe_flush_seen_receipts = epipe_receipts[0] + epipe_receipts[1];
}

static void test_reader_gone(void) {
  static uint8_t big[70000];
  memset(big, 'a', sizeof big);
  int fds[2];
  CHECK_EQ_INT(pipe(fds), 0);
  /* A pipe that holds exactly the first line (65535 bytes and its newline). */
  if (fcntl(fds[1], F_SETPIPE_SZ, 65536) != 65536) {
    fprintf(stderr, "reader gone: cannot size the pipe; skipped\n");
    close(fds[0]);
    close(fds[1]);
    return;
  }
  fflush(stdout);
  int saved = dup(1);
  CHECK(dup2(fds[1], 1) == 1);
  close(fds[1]);

  sea_runtime_t *rt;
  sea_streamer_t *s;
  sea_producer_t *p;
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  sea_options_t *o = sea_options_new();
  sea_options_set(o, "format", "payload");
  CHECK_EQ_INT(sea_connect(rt, "stdio:///k", o, &s), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  sea_producer_set_callbacks(p, on_epipe_receipt, NULL);
  /* The first line fills the pipe: written whole inside the send (it is past the write mark),
   * its receipt still to come from the loop. */
  CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, big, 65535, (void *)(intptr_t)0), 0);
  char buf[16];
  CHECK(read(fds[0], buf, 1) == 1); /* it is there */
  close(fds[0]);                    /* the reader goes away */
  /* The second meets the closed pipe inside its send; the flush then must not fail before the
   * first one's receipt says it was written. */
  sea_producer_send_bytes(p, NULL, big, sizeof big, (void *)(intptr_t)1);
  epipe_flush_status = 1;
  CHECK_EQ_INT(sea_producer_flush(p, on_epipe_flush, NULL), 0);
  for (int spins = 0; epipe_flush_status == 1 && spins < 100000; spins++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK_EQ_INT(epipe_flush_status, SEA_EPIPE);
  CHECK_EQ_INT(epipe_flush_seen_receipts, 2);
  CHECK_EQ_INT(epipe_receipts[0], 1);
  CHECK_EQ_INT(epipe_status[0], 0);
  CHECK_EQ_INT(epipe_receipts[1], 1);
  CHECK_EQ_INT(epipe_status[1], SEA_EPIPE);
  CHECK_EQ_INT(sea_producer_error(p), SEA_EPIPE);
  sea_producer_close(p);
  sea_streamer_close(s);
  sea_runtime_free(rt);
  dup2(saved, 1);
  close(saved);
}

int main(void) {
  test_reader_gone();
  make_cases();
  /* The writer of stdout writes fd 1: point it at a file for the run. */
  char path[] = "/tmp/sea_stdio_json_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  fflush(stdout);
  int saved = dup(1);
  CHECK(dup2(fd, 1) == 1);
  close(fd);

  sea_runtime_t *rt;
  sea_streamer_t *s;
  sea_producer_t *p;
  CHECK_EQ_INT(sea_runtime_new(&rt), 0);
  sea_options_t *o = sea_options_new();
  sea_options_set(o, "format", "json");
  CHECK_EQ_INT(sea_connect(rt, "stdio:///k", o, &s), 0);
  sea_options_free(o);
  CHECK_EQ_INT(sea_producer_open(s, NULL, &p), 0);
  sea_producer_set_callbacks(p, on_receipt, NULL);

  /* Each case goes out three times: as the payload, as the key (with an ASCII payload), and as
   * a header value (beside a text header and a null one). */
  int sent = 0;
  for (size_t i = 0; i < ncases; i++) {
    for (int as = 0; as < 3; as++) {
      sea_message_t m;
      memset(&m, 0, sizeof m);
      sea_kv_t h[3] = {{"text", 4, (const uint8_t *)"plain", 5},
                       {"case", 4, cases[i].bytes, cases[i].len},
                       {"nothing", 7, NULL, 0}};
      m.payload.data = as == 0 ? cases[i].bytes : (const uint8_t *)"x";
      m.payload.len = as == 0 ? cases[i].len : 1;
      if (as == 1) {
        m.key = cases[i].bytes;
        m.key_len = cases[i].len;
      }
      if (as == 2) {
        m.headers = h;
        m.header_count = 3;
      }
      int rc = sea_producer_send(p, &m, NULL);
      CHECK_EQ_INT(rc, 0);
      sent += rc == 0;
      for (int spins = 0; rc == 0 && receipts < sent - 64 && spins < 100000; spins++)
        sea_runtime_run(rt, SEA_RUN_NOWAIT);
    }
  }
  CHECK_EQ_INT(sea_producer_flush(p, on_flush, NULL), 0);
  for (int spins = 0; flushed == 0 && spins < 1000000; spins++)
    sea_runtime_run(rt, SEA_RUN_ONCE);
  CHECK_EQ_INT(flushed, 1);
  CHECK_EQ_INT(receipts, sent);
  CHECK_EQ_INT(receipt_errors, 0);
  sea_producer_close(p);
  sea_streamer_close(s);
  sea_runtime_free(rt);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);

  size_t n;
  uint8_t *out = slurp(path, &n);
  unlink(path);
  CHECK(out != NULL);
  size_t off = 0, line = 0;
  while (out && off < n) {
    uint8_t *nl = memchr(out + off, '\n', n - off);
    if (nl == NULL) {
      CHECK(!"the last line has no newline");
      break;
    }
    size_t len = (size_t)(nl - (out + off));
    if (line >= ncases * 3) {
      CHECK(!"more lines than messages");
      break;
    }
    const tcase_t *c = &cases[line / 3];
    int as = (int)(line % 3);
    int text = c->text >= 0 ? c->text : is_utf8(c->bytes, c->len);
    CHECK_EQ_INT(is_utf8(c->bytes, c->len), text); /* the test's own checker agrees */
    decoded_t d;
    if (parse_line(out + off, len, &d) != 0) {
      test_failed++;
      fprintf(stderr, "line %zu (%s): not the strict JSON expected: %.*s\n", line + 1, c->what,
              (int)(len > 300 ? 300 : len), out + off);
    } else if (as == 0) {
      if (d.has_payload + d.has_payload_b64 != 1 || d.has_payload != text) {
        test_failed++;
        fprintf(stderr, "line %zu (%s): payload as %s, expected %s\n", line + 1, c->what,
                d.has_payload ? "text" : "base64", text ? "text" : "base64");
      }
      check_bytes(c->what, "payload", &d.payload, c->bytes, c->len);
      CHECK_EQ_INT(d.has_key + d.has_key_b64, 0);
    } else if (as == 1) {
      if (d.has_key + d.has_key_b64 != 1 || d.has_key != text) {
        test_failed++;
        fprintf(stderr, "line %zu (%s): key as %s, expected %s\n", line + 1, c->what,
                d.has_key ? "text" : "base64", text ? "text" : "base64");
      }
      check_bytes(c->what, "key", &d.key, c->bytes, c->len);
      check_bytes(c->what, "payload beside the key", &d.payload, (const uint8_t *)"x", 1);
    } else {
      CHECK_EQ_INT(d.nh, 3);
      int seen = 0;
      for (size_t i = 0; i < d.nh; i++) {
        if (strcmp(d.hnames[i], "text") == 0) {
          CHECK(!d.hb64[i]);
          check_bytes(c->what, "header text", &d.hvals[i], (const uint8_t *)"plain", 5);
          seen |= 1;
        } else if (strcmp(d.hnames[i], "case") == 0) {
          if (d.hb64[i] == text) {
            test_failed++;
            fprintf(stderr, "line %zu (%s): header value as %s, expected %s\n", line + 1, c->what,
                    d.hb64[i] ? "base64" : "text", text ? "text" : "base64");
          }
          check_bytes(c->what, "header value", &d.hvals[i], c->bytes, c->len);
          seen |= 2;
        } else if (strcmp(d.hnames[i], "nothing") == 0) {
          CHECK(d.hnull[i] && !d.hb64[i]);
          seen |= 4;
        }
      }
      CHECK_EQ_INT(seen, 7);
    }
    off += len + 1;
    line++;
  }
  CHECK_EQ_INT(line, ncases * 3);
  free(out);
  return test_report();
}
