/* stdio_format.c: how the stdio writer prints a message: the SeaStreamer line format
 * "[timestamp | key | seq | shard] payload", format=json, key_delimiter= (kcat -K) and compiled
 * -f templates (kcat style). The writer (stdio_writer.c) picks the format; the functions here
 * append straight into its buffer and never write to the fd. */
#include <string.h>

#include "stdio_internal.h"

void stdio_tpl_free(stdio_tpl_t *t) {
  if (t == NULL)
    return;
  sea_host->free(t->ops);
  sea_host->free(t->lit);
  sea_host->free(t);
}

/* kcat -f style: %s %k %t %p %o %T %S %R %K %h %% and the escapes \n \t \\. */
int stdio_tpl_compile(sea_runtime_t *rt, const char *src, stdio_tpl_t **out) {
  size_t n = strlen(src);
  stdio_tpl_t *t = sea_host->calloc(1, sizeof *t);
  if (t == NULL)
    return SEA_ENOMEM;
  t->ops = sea_host->calloc(n + 1, sizeof *t->ops);
  t->lit = sea_host->alloc(n + 1);
  if (t->ops == NULL || t->lit == NULL) {
    stdio_tpl_free(t);
    return SEA_ENOMEM;
  }
  size_t lit_len = 0;
  for (size_t i = 0; i < n; i++) {
    char c = src[i];
    char lit_c;
    if (c == '%' || c == '\\') {
      char d = i + 1 < n ? src[i + 1] : '\0';
      if (c == '%' && d != '\0' && strchr("sktpoTShKR", d) != NULL) {
        t->ops[t->count].op = d;
        t->count++;
        t->uses_payload |= d == 's';
        t->uses_key |= d == 'k';
        t->uses_headers |= d == 'h';
        i++;
        continue;
      }
      if (c == '%' && d == '%')
        lit_c = '%';
      else if (c == '\\' && d == 'n')
        lit_c = '\n';
      else if (c == '\\' && d == 't')
        lit_c = '\t';
      else if (c == '\\' && d == '\\')
        lit_c = '\\';
      else {
        sea_host->set_error(rt,
                            "stdio: option template: unknown %s '%c%c' (known: %%s %%k %%t %%p %%o "
                            "%%T %%S %%R %%K %%h %%%% \\n \\t \\\\)",
                            c == '%' ? "directive" : "escape", c, d ? d : ' ');
        stdio_tpl_free(t);
        return SEA_EOPTION;
      }
      i++;
    } else {
      lit_c = c;
    }
    /* Literal bytes: extend the previous literal op or start one. */
    if (t->count == 0 || t->ops[t->count - 1].op != 0) {
      t->ops[t->count].op = 0;
      t->ops[t->count].off = lit_len;
      t->ops[t->count].len = 0;
      t->count++;
    }
    t->lit[lit_len++] = lit_c;
    t->ops[t->count - 1].len++;
  }
  *out = t;
  return 0;
}

/* Room for n more bytes at the end of the buffer; NULL when out of memory. */
static char *out_reserve(stdio_writer_t *w, size_t n) {
  if (w->cap - w->len >= n)
    return w->buf + w->len;
  if (w->head > 0) {
    /* Move the unwritten bytes down before growing: the buffer stays about the limit's size. */
    memmove(w->buf, w->buf + w->head, w->len - w->head);
    w->len -= w->head;
    w->head = 0;
    if (w->cap - w->len >= n)
      return w->buf + w->len;
  }
  if (n > SIZE_MAX - w->len || SEA_GROW(w->buf, w->cap, w->len + n, 256u * 1024u) != 0)
    return NULL;
  return w->buf + w->len;
}

int stdio_out_bytes(stdio_writer_t *w, const void *s, size_t n) {
  if (n == 0)
    return 0; /* nothing to copy (and the buffer may not exist yet) */
  char *d = out_reserve(w, n);
  if (d == NULL)
    return -1;
  memcpy(d, s, n);
  w->len += n;
  return 0;
}

static size_t fmt_u64(char *d, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    d[i] = tmp[n - 1 - i];
  return n;
}

static size_t fmt_i64(char *d, int64_t v) {
  if (v < 0) {
    d[0] = '-';
    return 1 + fmt_u64(d + 1, (uint64_t)0 - (uint64_t)v);
  }
  return fmt_u64(d, (uint64_t)v);
}

static int out_u64(stdio_writer_t *w, uint64_t v) {
  char *d = out_reserve(w, 20);
  if (d == NULL)
    return -1;
  w->len += fmt_u64(d, v);
  return 0;
}

/* The millisecond text of a timestamp. Formatting is cached: consecutive messages mostly share
 * the millisecond, or at least the second (then only the three digits change). */
const char *stdio_producer_ts(stdio_producer_t *p, int64_t us, size_t *len) {
  int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
  if (ms != p->ts_ms) {
    if (ms >= 0 && p->ts_ms >= 0 && ms / 1000 == p->ts_ms / 1000 && p->ts_len == 23 &&
        p->ts[19] == '.') {
      unsigned f = (unsigned)(ms % 1000);
      p->ts[20] = (char)('0' + f / 100);
      p->ts[21] = (char)('0' + f / 10 % 10);
      p->ts[22] = (char)('0' + f % 10);
    } else {
      p->ts_len = sea_host->format_timestamp(us, p->ts);
    }
    p->ts_ms = ms;
  }
  *len = p->ts_len;
  return p->ts;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if the byte at p does not start one. */
static size_t utf8_seq(const uint8_t *p, size_t n) {
  uint8_t c = p[0];
  size_t need;
  uint32_t cp;
  if (c < 0xC2)
    return 0; /* continuation byte or overlong 2-byte lead */
  if (c < 0xE0) {
    need = 2;
    cp = c & 0x1F;
  } else if (c < 0xF0) {
    need = 3;
    cp = c & 0x0F;
  } else if (c < 0xF5) {
    need = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (n < need)
    return 0;
  for (size_t i = 1; i < need; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return need;
}

/* Whether [s, s+n) is all valid UTF-8 (no overlong forms, no surrogates, nothing past U+10FFFF,
 * no truncated sequence): only then can a JSON string carry the bytes exactly. */
static int utf8_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = utf8_seq(s + i, n - i);
    if (k == 0)
      return 0;
    i += k;
  }
  return 1;
}

/* Standard base64 (RFC 4648, with padding, no line breaks) of n bytes, straight into the
 * writer's buffer. A dozen lines of our own rather than a library: the stdio plugin depends on
 * nothing but the host, and this is the whole of what it needs (no decoding: nothing here reads
 * JSON). */
static int out_base64(stdio_writer_t *w, const uint8_t *s, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *d = out_reserve(w, (n + 2) / 3 * 4);
  if (d == NULL)
    return -1;
  char *o = d;
  size_t i = 0;
  for (; n - i >= 3; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = tab[v >> 18];
    *o++ = tab[v >> 12 & 63];
    *o++ = tab[v >> 6 & 63];
    *o++ = tab[v & 63];
  }
  if (n - i > 0) {
    uint32_t v = (uint32_t)s[i] << 16 | (n - i == 2 ? (uint32_t)s[i + 1] << 8 : 0);
    *o++ = tab[v >> 18];
    *o++ = tab[v >> 12 & 63];
    *o++ = n - i == 2 ? tab[v >> 6 & 63] : '=';
    *o++ = '=';
  }
  w->len += (size_t)(o - d);
  return 0;
}

/* A JSON string body: escapes as JSON needs (quote, backslash, and every control character below
 * U+0020). Valid UTF-8 is copied as is; a byte that is not part of valid UTF-8 is written as
 * \u00XX, which keeps the output valid JSON but cannot be told from the character U+00XX: fields
 * that must round-trip any bytes (payload, key, header values) check utf8_valid first and go to
 * their _b64 field instead. Only stream keys (ASCII by rule) and header names rely on this. */
static int out_json_str(stdio_writer_t *w, const uint8_t *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char *d = out_reserve(w, n * 6);
  if (d == NULL)
    return -1;
  char *o = d;
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      *o++ = (char)c;
      i++;
      continue;
    }
    if (c >= 0x80) {
      size_t k = utf8_seq(s + i, n - i);
      if (k > 0) {
        memcpy(o, s + i, k);
        o += k;
        i += k;
        continue;
      }
    }
    *o++ = '\\';
    switch (c) {
    case '"':
      *o++ = '"';
      break;
    case '\\':
      *o++ = '\\';
      break;
    case '\n':
      *o++ = 'n';
      break;
    case '\r':
      *o++ = 'r';
      break;
    case '\t':
      *o++ = 't';
      break;
    case '\b':
      *o++ = 'b';
      break;
    case '\f':
      *o++ = 'f';
      break;
    default:
      memcpy(o, "u00", 3);
      o[3] = hex[c >> 4];
      o[4] = hex[c & 15];
      o += 5;
    }
    i++;
  }
  w->len += (size_t)(o - d);
  return 0;
}

#define OUT_LIT(w, s) stdio_out_bytes((w), (s), sizeof(s) - 1)

int stdio_format_line(stdio_writer_t *w, const sea_message_t *m, const sea_meta_t *meta,
                      int show_shard, const char *ts, size_t ts_len, char delim) {
  size_t klen = strlen(meta->stream_key);
  char *d = out_reserve(w, 1 + ts_len + 3 + klen + 3 + 20 + 3 + 20 + 2 + m->payload.len + 1);
  if (d == NULL)
    return -1;
  char *o = d;
  *o++ = '[';
  memcpy(o, ts, ts_len);
  o += ts_len;
  memcpy(o, " | ", 3);
  o += 3;
  memcpy(o, meta->stream_key, klen);
  o += klen;
  memcpy(o, " | ", 3);
  o += 3;
  o += fmt_u64(o, meta->seq);
  if (show_shard) {
    memcpy(o, " | ", 3);
    o += 3;
    o += fmt_u64(o, meta->shard_id);
  }
  memcpy(o, "] ", 2);
  o += 2;
  if (m->payload.len)
    memcpy(o, m->payload.data, m->payload.len);
  o += m->payload.len;
  *o++ = delim;
  w->len += (size_t)(o - d);
  return 0;
}

/* ,"name":"text" for valid UTF-8, else ,"name_b64":"base64": any bytes come back exactly. */
static int out_json_bytes(stdio_writer_t *w, const char *name, const uint8_t *s, size_t n) {
  int text = utf8_valid(s, n);
  return OUT_LIT(w, ",\"") || stdio_out_bytes(w, name, strlen(name)) ||
         (text ? OUT_LIT(w, "\":\"") : OUT_LIT(w, "_b64\":\"")) ||
         (text ? out_json_str(w, s, n) : out_base64(w, s, n)) || OUT_LIT(w, "\"");
}

int stdio_format_json(stdio_writer_t *w, const sea_message_t *m, const sea_meta_t *meta,
                      const char *ts, size_t ts_len, char delim) {
  if (OUT_LIT(w, "{\"stream_key\":\"") ||
      stdio_out_bytes(w, meta->stream_key, strlen(meta->stream_key)) ||
      OUT_LIT(w, "\",\"shard_id\":") || out_u64(w, meta->shard_id) || OUT_LIT(w, ",\"seq\":") ||
      out_u64(w, meta->seq) || OUT_LIT(w, ",\"timestamp\":\"") || stdio_out_bytes(w, ts, ts_len) ||
      OUT_LIT(w, "\"") || out_json_bytes(w, "payload", m->payload.data, m->payload.len))
    return -1;
  if (m->key != NULL && out_json_bytes(w, "key", m->key, m->key_len))
    return -1;
  /* Header values: the text ones in "headers", the others (not valid UTF-8) in "headers_b64". */
  for (int pass = 0; pass < 2; pass++) {
    size_t n = 0;
    for (size_t i = 0; i < m->header_count; i++) {
      const sea_kv_t *h = &m->headers[i];
      int bin = h->value != NULL && !utf8_valid(h->value, h->value_len);
      if (bin != pass)
        continue;
      const char *open = n > 0 ? "," : pass ? ",\"headers_b64\":{" : ",\"headers\":{";
      if (stdio_out_bytes(w, open, strlen(open)) || OUT_LIT(w, "\"") ||
          out_json_str(w, (const uint8_t *)h->name, h->name_len) || OUT_LIT(w, "\":"))
        return -1;
      n++;
      if (h->value == NULL) {
        if (OUT_LIT(w, "null"))
          return -1;
      } else if (OUT_LIT(w, "\"") ||
                 (pass ? out_base64(w, h->value, h->value_len)
                       : out_json_str(w, h->value, h->value_len)) ||
                 OUT_LIT(w, "\"")) {
        return -1;
      }
    }
    if (n > 0 && OUT_LIT(w, "}"))
      return -1;
  }
  return OUT_LIT(w, "}") || stdio_out_bytes(w, &delim, 1);
}

/* Bytes, or the null= text for NULL ones (a key never set; kcat -Z prints "NULL"). */
static int out_or_null(stdio_writer_t *w, const stdio_producer_t *p, const void *s, size_t n) {
  if (s == NULL)
    return stdio_out_bytes(w, p->null_text, p->null_len);
  return stdio_out_bytes(w, s, n);
}

/* kcat -K: key, the key delimiter, the payload and the delimiter. */
int stdio_format_keyed(stdio_writer_t *w, const stdio_producer_t *p, const sea_message_t *m) {
  return out_or_null(w, p, m->key, m->key_len) ||
         stdio_out_bytes(w, p->key_delim, p->key_delim_len) ||
         out_or_null(w, p, m->payload.data, m->payload.len) || stdio_out_bytes(w, &p->delim, 1);
}

/* A length as 4 bytes, big-endian, signed (kcat's %R); -1 for NULL. */
static int out_be32(stdio_writer_t *w, const void *s, size_t n) {
  int64_t v = s == NULL ? -1 : n > INT32_MAX ? INT32_MAX : (int64_t)n;
  uint32_t u = (uint32_t)(int32_t)v;
  char b[4] = {(char)(u >> 24), (char)(u >> 16), (char)(u >> 8), (char)u};
  return stdio_out_bytes(w, b, 4);
}

int stdio_format_template(stdio_writer_t *w, const stdio_producer_t *p, const sea_message_t *m,
                          const sea_meta_t *meta) {
  const stdio_tpl_t *t = p->tpl;
  for (size_t i = 0; i < t->count; i++) {
    const stdio_tpl_op_t *op = &t->ops[i];
    int rc = 0;
    char num[24];
    switch (op->op) {
    case 0:
      rc = stdio_out_bytes(w, t->lit + op->off, op->len);
      break;
    case 's':
      rc = out_or_null(w, p, m->payload.data, m->payload.len);
      break;
    case 'k':
      rc = out_or_null(w, p, m->key, m->key_len);
      break;
    case 'K': /* kcat: the key's length, -1 for none */
      rc = m->key ? out_u64(w, m->key_len) : OUT_LIT(w, "-1");
      break;
    case 'R':
      rc = out_be32(w, m->payload.data, m->payload.len);
      break;
    case 't':
      rc = stdio_out_bytes(w, meta->stream_key, strlen(meta->stream_key));
      break;
    case 'p':
      rc = out_u64(w, meta->shard_id);
      break;
    case 'o':
      rc = out_u64(w, meta->seq);
      break;
    case 'S':
      rc = out_u64(w, m->payload.len);
      break;
    case 'T': {
      int64_t us = meta->timestamp_us;
      rc = stdio_out_bytes(w, num, fmt_i64(num, us >= 0 ? us / 1000 : -((-us + 999) / 1000)));
      break;
    }
    case 'h':
      for (size_t j = 0; j < m->header_count && rc == 0; j++) {
        const sea_kv_t *h = &m->headers[j];
        rc = (j > 0 ? OUT_LIT(w, ",") : 0) || stdio_out_bytes(w, h->name, h->name_len) ||
             OUT_LIT(w, "=") || (h->value ? stdio_out_bytes(w, h->value, h->value_len) : 0);
      }
      break;
    }
    if (rc != 0)
      return -1;
  }
  return 0;
}

static int has_delim(const void *s, size_t n, char delim) {
  return n > 0 && memchr(s, delim, n) != NULL;
}

/* stdio is line-oriented: a '\n' (or the delimiter= byte) printed raw would split one message
 * into two. */
int stdio_producer_check_lines(const stdio_producer_t *p, const sea_message_t *m) {
  char d = p->delim;
  if (p->format == FMT_JSON)
    return 0;
  if (p->format != FMT_TEMPLATE || p->tpl->uses_payload) {
    if (has_delim(m->payload.data, m->payload.len, d))
      return SEA_EFORMAT;
  }
  int key_shown = p->format == FMT_KEYED || (p->format == FMT_TEMPLATE && p->tpl->uses_key);
  if (key_shown && m->key && has_delim(m->key, m->key_len, d))
    return SEA_EFORMAT;
  if (p->format == FMT_TEMPLATE && p->tpl->uses_headers) {
    for (size_t i = 0; i < m->header_count; i++) {
      const sea_kv_t *h = &m->headers[i];
      if (has_delim(h->name, h->name_len, d) || (h->value && has_delim(h->value, h->value_len, d)))
        return SEA_EFORMAT;
    }
  }
  return 0;
}
