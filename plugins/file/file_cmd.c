/* file_cmd.c: the commands the file backend adds to `seastreamer` (plugin ABI 1.3,
 * sea_plugin_t.commands): `decode`, `verify` and `repair` of .ss files, over the codec
 * (ss_codec.c). They belong with the backend that owns the format, so nothing in host/ includes
 * a plugin. They run in the command's process outside any runtime: plain blocking file I/O,
 * stdout and stderr, and the process's exit status; neither the host table nor the user API. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <seastreamer/plugin.h>

#include "file_cmd.h"
#include "ss_codec.h"

/* The exit statuses of the seastreamer command (sea_plugin_command_t). */
enum { EXIT_OK = 0, EXIT_STREAM = 1, EXIT_USAGE = 2 };

/* "seastreamer CMD: message" on stderr, as the command's own errors read. */
static void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void cli_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "seastreamer %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* -h/--help as the only option (getopt_long, as every command): prints help and sets *shown, or
 * reports an unknown option; returns 0 (optind is the first operand) or an exit status. */
static int cli_help_only(const char *cmd, int argc, char **argv, const char *help, int *shown) {
  static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c;
  *shown = 0;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    if (c == 'h') {
      fputs(help, stdout);
      *shown = 1;
      return 0;
    }
    cli_error(cmd, "unknown option '%s' (see --help)", argv[optind - 1]);
    return EXIT_USAGE;
  }
  return 0;
}

static void *cli_realloc(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

/* SeaStreamer's timestamp text: milliseconds with trailing zeros dropped, at least one digit. */
static void ts_text(uint64_t ms, char *out, size_t n) {
  time_t secs = (time_t)(ms / 1000);
  unsigned frac = (unsigned)(ms % 1000);
  struct tm tm;
  char f[8];
  gmtime_r(&secs, &tm);
  snprintf(f, sizeof f, "%03u", frac);
  for (int i = 2; i > 0 && f[i] == '0'; i--)
    f[i] = '\0';
  snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%s", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, f);
}

/* A JSON string, escaped as serde_json does: quote, backslash and control characters. */
static void json_str(FILE *o, const uint8_t *s, size_t n) {
  fputc('"', o);
  for (size_t i = 0; i < n; i++) {
    uint8_t c = s[i];
    switch (c) {
    case '"':
      fputs("\\\"", o);
      break;
    case '\\':
      fputs("\\\\", o);
      break;
    case '\n':
      fputs("\\n", o);
      break;
    case '\r':
      fputs("\\r", o);
      break;
    case '\t':
      fputs("\\t", o);
      break;
    case '\b':
      fputs("\\b", o);
      break;
    case '\f':
      fputs("\\f", o);
      break;
    default:
      if (c < 0x20)
        fprintf(o, "\\u%04x", c);
      else
        fputc(c, o);
    }
  }
  fputc('"', o);
}

/* ---- a small JSON reader that writes the value back compactly, object keys sorted ---- */

typedef struct jbuf {
  char *d;
  size_t len, cap;
} jbuf_t;

static int jput(jbuf_t *b, const void *p, size_t n) {
  if (SEA_GROW_WITH(realloc, b->d, b->cap, b->len + n + 1, 256) != 0)
    return -1;
  memcpy(b->d + b->len, p, n);
  b->len += n;
  b->d[b->len] = '\0';
  return 0;
}

typedef struct jp {
  const uint8_t *s;
  size_t n, i;
  int depth;
} jp_t;

static void jws(jp_t *p) {
  while (p->i < p->n &&
         (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r'))
    p->i++;
}

static int jvalue(jp_t *p, jbuf_t *out);

static int hexv(uint8_t c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* A string: its decoded UTF-8 bytes into raw. */
static int jstring(jp_t *p, jbuf_t *raw) {
  if (p->i >= p->n || p->s[p->i] != '"')
    return -1;
  p->i++;
  while (p->i < p->n) {
    uint8_t c = p->s[p->i++];
    if (c == '"')
      return 0;
    if (c < 0x20)
      return -1;
    if (c != '\\') {
      if (jput(raw, &c, 1))
        return -1;
      continue;
    }
    if (p->i >= p->n)
      return -1;
    c = p->s[p->i++];
    const char *m = NULL;
    switch (c) {
    case '"':
      m = "\"";
      break;
    case '\\':
      m = "\\";
      break;
    case '/':
      m = "/";
      break;
    case 'b':
      m = "\b";
      break;
    case 'f':
      m = "\f";
      break;
    case 'n':
      m = "\n";
      break;
    case 'r':
      m = "\r";
      break;
    case 't':
      m = "\t";
      break;
    case 'u': {
      uint32_t cp = 0;
      for (int k = 0; k < 4; k++) {
        int h = p->i < p->n ? hexv(p->s[p->i++]) : -1;
        if (h < 0)
          return -1;
        cp = cp * 16 + (uint32_t)h;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        uint32_t lo = 0;
        if (p->i + 6 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u')
          return -1;
        p->i += 2;
        for (int k = 0; k < 4; k++) {
          int h = hexv(p->s[p->i++]);
          if (h < 0)
            return -1;
          lo = lo * 16 + (uint32_t)h;
        }
        if (lo < 0xDC00 || lo > 0xDFFF)
          return -1;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        return -1;
      }
      uint8_t u[4];
      size_t un;
      if (cp < 0x80)
        u[0] = (uint8_t)cp, un = 1;
      else if (cp < 0x800)
        u[0] = (uint8_t)(0xC0 | cp >> 6), u[1] = (uint8_t)(0x80 | (cp & 0x3F)), un = 2;
      else if (cp < 0x10000)
        u[0] = (uint8_t)(0xE0 | cp >> 12), u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)),
        u[2] = (uint8_t)(0x80 | (cp & 0x3F)), un = 3;
      else
        u[0] = (uint8_t)(0xF0 | cp >> 18), u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (uint8_t)(0x80 | (cp & 0x3F)), un = 4;
      if (jput(raw, u, un))
        return -1;
      continue;
    }
    default:
      return -1;
    }
    if (jput(raw, m, 1))
      return -1;
  }
  return -1;
}

static int jstring_out(jbuf_t *out, const jbuf_t *raw) {
  char *mem = NULL;
  size_t sz = 0;
  FILE *f = open_memstream(&mem, &sz);
  if (f == NULL)
    return -1;
  json_str(f, (const uint8_t *)(raw->d ? raw->d : ""), raw->len);
  fclose(f);
  int rc = jput(out, mem, sz);
  free(mem);
  return rc;
}

/* A double as serde_json prints it (ryu's layout, with "e+" for positive exponents): the
 * shortest digits that read back the same, as an integer with ".0" up to 16 digits, with a
 * point inside up to 16 digits, as 0.000ddd down to 1e-5, else in exponent form. */
static int jput_double(jbuf_t *out, double d) {
  char sci[40], digits[24], txt[64];
  int prec, exp10, n = 0, kk, pos = 0;
  if (!isfinite(d))
    return -1;
  if (d == 0)
    return jput(out, signbit(d) ? "-0.0" : "0.0", signbit(d) ? 4 : 3);
  for (prec = 0; prec < 17; prec++) {
    snprintf(sci, sizeof sci, "%.*e", prec, d);
    if (strtod(sci, NULL) == d)
      break;
  }
  /* sci is [-]D[.DDD]e[+-]XX */
  const char *s = sci;
  if (*s == '-') {
    txt[pos++] = '-';
    s++;
  }
  for (; *s && *s != 'e'; s++)
    if (*s != '.')
      digits[n++] = *s;
  while (n > 1 && digits[n - 1] == '0')
    n--;
  digits[n] = '\0';
  exp10 = atoi(s + 1);
  kk = exp10 + 1; /* 10^(kk-1) <= |d| < 10^kk */
  if (kk - n >= 0 && kk <= 16) {
    pos += snprintf(txt + pos, sizeof txt - (size_t)pos, "%s%0*d.0", digits, kk - n, 0);
    if (kk - n == 0) /* %0*d with width 0 still prints one 0 */
      pos = snprintf(txt, sizeof txt, "%s%s.0", d < 0 ? "-" : "", digits);
  } else if (kk > 0 && kk <= 16) {
    pos += snprintf(txt + pos, sizeof txt - (size_t)pos, "%.*s.%s", kk, digits, digits + kk);
  } else if (kk > -5 && kk <= 0) {
    pos += snprintf(txt + pos, sizeof txt - (size_t)pos, "0.%0*d%s", -kk, 0, digits);
    if (kk == 0)
      pos = snprintf(txt, sizeof txt, "%s0.%s", d < 0 ? "-" : "", digits);
  } else if (n == 1) {
    pos += snprintf(txt + pos, sizeof txt - (size_t)pos, "%se%s%d", digits, kk - 1 > 0 ? "+" : "",
                    kk - 1);
  } else {
    pos += snprintf(txt + pos, sizeof txt - (size_t)pos, "%c.%se%s%d", digits[0], digits + 1,
                    kk - 1 > 0 ? "+" : "", kk - 1);
  }
  return pos > 0 && (size_t)pos < sizeof txt ? jput(out, txt, (size_t)pos) : -1;
}

/* serde_json turns significand * 10^exponent into a double with one multiplication or division
 * by a power of ten (its default, not correctly rounded, parser); doing the same gives the same
 * double, so the same digits. Returns -1 where serde_json reports "number out of range". */
static int serde_from_parts(int positive, uint64_t sig, int32_t exponent, double *out) {
  static double pow10[309];
  static int ready;
  double f = (double)sig;
  if (!ready) {
    for (int i = 0; i < 309; i++) {
      char lit[8];
      snprintf(lit, sizeof lit, "1e%d", i);
      pow10[i] = strtod(lit, NULL); /* the correctly rounded literal, as Rust's 1e{i} */
    }
    ready = 1;
  }
  for (;;) {
    uint32_t a = exponent < 0 ? (uint32_t)0 - (uint32_t)exponent : (uint32_t)exponent;
    if (a < 309) {
      if (exponent >= 0) {
        f *= pow10[a];
        if (isinf(f))
          return -1;
      } else {
        f /= pow10[a];
      }
      break;
    }
    if (f == 0.0)
      break;
    if (exponent >= 0)
      return -1;
    f /= 1e308;
    exponent += 308;
  }
  *out = positive ? f : -f;
  return 0;
}

static int is_digit(const jp_t *p) {
  return p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9';
}

/* would a * 10 + d pass max? */
static int mul_overflows(uint64_t a, unsigned d, uint64_t max) {
  return a >= max / 10 && (a > max / 10 || d > max % 10);
}

/* The exponent part, at 'e' or 'E'. */
static int jexponent(jp_t *p, int positive, uint64_t sig, int32_t start, double *out) {
  int positive_exp = 1;
  int32_t exp;
  p->i++;
  if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
    positive_exp = p->s[p->i++] == '+';
  if (!is_digit(p))
    return -1;
  exp = p->s[p->i++] - '0';
  while (is_digit(p)) {
    unsigned d = (unsigned)(p->s[p->i] - '0');
    if (mul_overflows((uint64_t)exp, d, INT32_MAX)) {
      if (sig != 0 && positive_exp)
        return -1;
      while (is_digit(p))
        p->i++;
      *out = positive ? 0.0 : -0.0;
      return 0;
    }
    p->i++;
    exp = exp * 10 + (int32_t)d;
  }
  int64_t e = positive_exp ? (int64_t)start + exp : (int64_t)start - exp;
  if (e > INT32_MAX)
    e = INT32_MAX;
  if (e < INT32_MIN)
    e = INT32_MIN;
  return serde_from_parts(positive, sig, (int32_t)e, out);
}

/* The fraction, at '.'. */
static int jdecimal(jp_t *p, int positive, uint64_t sig, int32_t before, double *out) {
  int32_t after = 0;
  p->i++;
  while (is_digit(p)) {
    unsigned d = (unsigned)(p->s[p->i] - '0');
    if (mul_overflows(sig, d, UINT64_MAX)) {
      /* Further digits are dropped. */
      while (is_digit(p))
        p->i++;
      if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E'))
        return jexponent(p, positive, sig, before + after, out);
      return serde_from_parts(positive, sig, before + after, out);
    }
    p->i++;
    sig = sig * 10 + d;
    after--;
  }
  if (after == 0)
    return -1;
  if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E'))
    return jexponent(p, positive, sig, before + after, out);
  return serde_from_parts(positive, sig, before + after, out);
}

/* Numbers as serde_json reads them: a u64, a negative i64, or else a double. */
static int jnumber(jp_t *p, jbuf_t *out) {
  int positive = 1;
  uint64_t sig = 0;
  double d;
  char txt[32];
  if (p->i < p->n && p->s[p->i] == '-') {
    positive = 0;
    p->i++;
  }
  if (!is_digit(p))
    return -1;
  if (p->s[p->i] == '0') {
    p->i++;
    if (is_digit(p))
      return -1; /* one leading zero only */
  } else {
    while (is_digit(p)) {
      unsigned dg = (unsigned)(p->s[p->i] - '0');
      if (mul_overflows(sig, dg, UINT64_MAX)) {
        /* Too long for a u64: the remaining integer digits only scale it. */
        int32_t exponent = 0;
        while (is_digit(p)) {
          p->i++;
          exponent++;
        }
        if (p->i < p->n && p->s[p->i] == '.') {
          if (jdecimal(p, positive, sig, exponent, &d) != 0)
            return -1;
        } else if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
          if (jexponent(p, positive, sig, exponent, &d) != 0)
            return -1;
        } else if (serde_from_parts(positive, sig, exponent, &d) != 0) {
          return -1;
        }
        return jput_double(out, d);
      }
      p->i++;
      sig = sig * 10 + dg;
    }
  }
  if (p->i < p->n && p->s[p->i] == '.') {
    if (jdecimal(p, positive, sig, 0, &d) != 0)
      return -1;
    return jput_double(out, d);
  }
  if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
    if (jexponent(p, positive, sig, 0, &d) != 0)
      return -1;
    return jput_double(out, d);
  }
  if (positive)
    return jput(out, txt, (size_t)snprintf(txt, sizeof txt, "%llu", (unsigned long long)sig));
  /* Negative: an i64 when it fits (and is not -0), else a double. */
  if (sig == 0 || sig > (uint64_t)INT64_MAX + 1)
    return jput_double(out, -(double)sig);
  return jput(out, txt, (size_t)snprintf(txt, sizeof txt, "-%llu", (unsigned long long)sig));
}

typedef struct jmember {
  jbuf_t key, val;
} jmember_t;

static int jmember_cmp(const void *a, const void *b) {
  const jmember_t *x = a, *y = b;
  size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
  int c = n ? memcmp(x->key.d, y->key.d, n) : 0;
  if (c != 0)
    return c;
  return x->key.len < y->key.len ? -1 : x->key.len > y->key.len;
}

static int jobject(jp_t *p, jbuf_t *out) {
  jmember_t *ms = NULL;
  size_t n = 0, cap = 0;
  int rc = -1;
  p->i++; /* { */
  jws(p);
  if (p->i < p->n && p->s[p->i] == '}') {
    p->i++;
    return jput(out, "{}", 2);
  }
  for (;;) {
    jws(p);
    if (SEA_GROW_WITH(realloc, ms, cap, n + 1, 8) != 0)
      goto done;
    memset(&ms[n], 0, sizeof ms[n]);
    n++;
    if (jstring(p, &ms[n - 1].key))
      goto done;
    jws(p);
    if (p->i >= p->n || p->s[p->i] != ':')
      goto done;
    p->i++;
    jws(p);
    if (jvalue(p, &ms[n - 1].val))
      goto done;
    jws(p);
    if (p->i < p->n && p->s[p->i] == ',') {
      p->i++;
      continue;
    }
    if (p->i < p->n && p->s[p->i] == '}') {
      p->i++;
      break;
    }
    goto done;
  }
  /* Sorted by key; of equal keys the last one wins (a map keeps the last insert). */
  for (size_t i = 0; i < n; i++)
    ms[i].key.cap = i; /* remember the order for a stable choice */
  qsort(ms, n, sizeof *ms, jmember_cmp);
  if (jput(out, "{", 1))
    goto done;
  int first = 1;
  for (size_t i = 0; i < n; i++) {
    if (i + 1 < n && jmember_cmp(&ms[i], &ms[i + 1]) == 0) {
      /* keep the later one of equal keys */
      if (ms[i].key.cap > ms[i + 1].key.cap) {
        jmember_t t = ms[i];
        ms[i] = ms[i + 1];
        ms[i + 1] = t;
      }
      continue;
    }
    if (!first && jput(out, ",", 1))
      goto done;
    first = 0;
    if (jstring_out(out, &ms[i].key) || jput(out, ":", 1) ||
        jput(out, ms[i].val.d ? ms[i].val.d : "", ms[i].val.len))
      goto done;
  }
  rc = jput(out, "}", 1);
done:
  for (size_t i = 0; i < n; i++) {
    free(ms[i].key.d);
    free(ms[i].val.d);
  }
  free(ms);
  return rc;
}

static int jvalue(jp_t *p, jbuf_t *out) {
  jws(p);
  if (p->i >= p->n)
    return -1;
  uint8_t c = p->s[p->i];
  int rc;
  /* serde_json's recursion limit: 127 nested arrays or objects. */
  if ((c == '[' || c == '{') && ++p->depth >= 128)
    return -1;
  if (c == '{') {
    rc = jobject(p, out);
  } else if (c == '[') {
    p->i++;
    jws(p);
    rc = jput(out, "[", 1);
    if (p->i < p->n && p->s[p->i] == ']') {
      p->i++;
    } else {
      for (int first = 1; rc == 0; first = 0) {
        if (!first && jput(out, ",", 1))
          return -1;
        if (jvalue(p, out))
          return -1;
        jws(p);
        if (p->i < p->n && p->s[p->i] == ',') {
          p->i++;
          continue;
        }
        if (p->i < p->n && p->s[p->i] == ']') {
          p->i++;
          break;
        }
        return -1;
      }
    }
    rc = rc ? rc : jput(out, "]", 1);
  } else if (c == '"') {
    jbuf_t raw = {0};
    rc = jstring(p, &raw);
    if (rc == 0)
      rc = jstring_out(out, &raw);
    free(raw.d);
  } else if (p->n - p->i >= 4 && memcmp(p->s + p->i, "true", 4) == 0) {
    p->i += 4;
    rc = jput(out, "true", 4);
  } else if (p->n - p->i >= 5 && memcmp(p->s + p->i, "false", 5) == 0) {
    p->i += 5;
    rc = jput(out, "false", 5);
  } else if (p->n - p->i >= 4 && memcmp(p->s + p->i, "null", 4) == 0) {
    p->i += 4;
    rc = jput(out, "null", 4);
  } else {
    rc = jnumber(p, out);
  }
  if (c == '[' || c == '{')
    p->depth--;
  return rc;
}

/* The payload as ndjson wants it: a JSON value re-serialised, else a string, else bytes. */
static void print_payload_json(FILE *o, const uint8_t *s, size_t n) {
  if (ss_utf8_valid(s, n)) {
    jp_t p = {s, n, 0, 0};
    jbuf_t out = {0};
    if (jvalue(&p, &out) == 0) {
      jws(&p);
      if (p.i == n) {
        fwrite(out.d, 1, out.len, o);
        free(out.d);
        return;
      }
    }
    free(out.d);
    json_str(o, s, n);
    return;
  }
  fputc('[', o);
  for (size_t i = 0; i < n; i++)
    fprintf(o, i ? ",%u" : "%u", s[i]);
  fputc(']', o);
}

static void print_header_json(FILE *o, const uint8_t *key, size_t klen, uint64_t shard,
                              uint64_t seq, uint64_t ts) {
  char t[64];
  ts_text(ts, t, sizeof t);
  fputs("{\"stream_key\":", o);
  json_str(o, key, klen);
  fprintf(o, ",\"shard_id\":%llu,\"sequence\":%llu,\"timestamp\":\"%s\"}",
          (unsigned long long)shard, (unsigned long long)seq, t);
}

/* Open a .ss file and read its header. Opened for writing (repair), it first takes the file's
 * writer lock, as a producer does, and is refused while a writer holds it; readers never lock. */
static int open_ss(const char *cmd, const char *path, int flags, ss_file_t *f) {
  char err[256];
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) {
    cli_error(cmd, "cannot open %s: %s", path, strerror(errno));
    return -1;
  }
  if ((flags & O_ACCMODE) != O_RDONLY) {
    int lk = ss_lock_writer(fd, err, sizeof err);
    if (lk != 0) {
      if (lk > 0)
        cli_error(cmd, "cannot write %s: another writer holds it (%s); try again once it is closed",
                  path, err[0] ? err : "its pid is not known");
      else
        cli_error(cmd, "cannot lock %s: %s", path, strerror(errno));
      close(fd);
      return -1;
    }
  }
  int rc = ss_file_open(f, fd, cli_realloc, err, sizeof err);
  if (rc != SS_OK) {
    cli_error(cmd, "%s: %s", path, rc == SS_NOMEM ? "out of memory" : err);
    ss_file_close(f);
    close(fd);
    return -1;
  }
  return fd;
}

static const char decode_usage[] =
    "usage: seastreamer decode [--format log|ndjson] [-J] [--header-only] FILE\n"
    "Print a .ss file as SeaStreamer's ss-decode does: the header, one line per message (with\n"
    "the payload unless --header-only), and the markers of each beacon. Stops at an\n"
    "end-of-stream message or a torn tail (status 0), or at damage (status 1, with the offset).\n"
    "-J is --format ndjson (as consume -J prints JSON).\n";

static int cmd_decode(int argc, char **argv) {
  enum { OPT_FORMAT = 256, OPT_HEADER_ONLY, OPT_FILE };
  static const struct option longopts[] = {{"help", no_argument, NULL, 'h'},
                                           {"format", required_argument, NULL, OPT_FORMAT},
                                           {"header-only", no_argument, NULL, OPT_HEADER_ONLY},
                                           {"file", required_argument, NULL, OPT_FILE},
                                           {NULL, 0, NULL, 0}};
  const char *path = NULL;
  int ndjson = 0, header_only = 0, c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":hJ", longopts, NULL)) != -1) {
    switch (c) {
    case 'h':
      fputs(decode_usage, stdout);
      return EXIT_OK;
    case 'J':
      ndjson = 1;
      break;
    case OPT_FORMAT:
      if (strcmp(optarg, "log") == 0)
        ndjson = 0;
      else if (strcmp(optarg, "ndjson") == 0)
        ndjson = 1;
      else {
        cli_error("decode", "--format %s: expected log or ndjson", optarg);
        return EXIT_USAGE;
      }
      break;
    case OPT_HEADER_ONLY:
      header_only = 1;
      break;
    case OPT_FILE:
      path = optarg;
      break;
    case ':':
      cli_error("decode", "option %s needs a value (see --help)", argv[optind - 1]);
      return EXIT_USAGE;
    default:
      cli_error("decode", "unknown option '%s' (see --help)", argv[optind - 1]);
      fputs(decode_usage, stderr);
      return EXIT_USAGE;
    }
  }
  for (; optind < argc; optind++) {
    if (path != NULL) {
      cli_error("decode", "unexpected argument '%s'", argv[optind]);
      fputs(decode_usage, stderr);
      return EXIT_USAGE;
    }
    path = argv[optind];
  }
  if (path == NULL) {
    fputs(decode_usage, stderr);
    return EXIT_USAGE;
  }
  ss_file_t f;
  int fd = open_ss("decode", path, O_RDONLY, &f);
  if (fd < 0)
    return EXIT_USAGE;
  FILE *o = stdout;
  char t[64];
  ts_text(f.header.created_at, t, sizeof t);
  fputs(ndjson ? "/* " : "# ", o);
  fputs("{\"file_name\":", o);
  json_str(o, (const uint8_t *)f.header.file_name, f.header.name_len);
  fprintf(o, ",\"created_at\":\"%s\",\"beacon_interval\":%u}", t, f.header.interval);
  fputs(ndjson ? " */\n" : "\n", o);

  ss_msg_t m;
  ss_beacon_t *b = malloc(sizeof *b);
  uint64_t printed = 0;
  int rc, status = EXIT_OK, werr = 0;
  while (b != NULL && (rc = ss_file_next(&f, &m)) == SS_OK) {
    if (ndjson) {
      fputs("{\"header\":", o);
      print_header_json(o, m.key, m.klen, m.shard, m.seq, m.ts);
      fputs(",\"payload\":", o);
      if (header_only)
        fputs("null", o);
      else
        print_payload_json(o, m.payload, m.len);
      fputs("}\n", o);
    } else {
      ts_text(m.ts, t, sizeof t);
      fprintf(o, "[%s | %.*s | %llu | %llu]", t, (int)m.klen, (const char *)m.key,
              (unsigned long long)m.seq, (unsigned long long)m.shard);
      if (!header_only) {
        fputc(' ', o);
        if (ss_utf8_valid(m.payload, m.len))
          fwrite(m.payload, 1, m.len, o);
        else
          fputs("<BINARY BLOB>", o);
      }
      fputc('\n', o);
    }
    if (f.r.beacon_off != printed) {
      /* The beacon consumed last, printed once, after the message it split or followed. */
      char err[256];
      uint64_t k = f.r.beacon_off / f.header.interval;
      uint64_t keep_pos = f.r.pos;
      printed = f.r.beacon_off;
      if (ss_file_beacon(&f, k, b, err, sizeof err) == SS_OK) {
        fputs(ndjson ? "/* [" : "# [", o);
        for (unsigned i = 0; i < b->count; i++) {
          const ss_marker_t *mk = &b->markers[i];
          fputs(i ? ",{\"header\":" : "{\"header\":", o);
          print_header_json(o, mk->key, mk->klen, mk->shard, mk->seq, mk->ts);
          fprintf(o, ",\"running_checksum\":%u}", mk->crc);
        }
        fputs(ndjson ? "] */\n" : "]\n", o);
      }
      f.r.pos = keep_pos;
    }
    if (ferror(o)) { /* (a reader that went away: | head) */
      werr = errno;
      break;
    }
    if (m.eos)
      break;
  }
  if (b != NULL && rc == SS_ERR && !ferror(o)) {
    fflush(o);
    cli_error("decode", "%s: %s", path, f.r.err);
    status = EXIT_STREAM;
  } else if (b == NULL || rc == SS_NOMEM) {
    cli_error("decode", "out of memory");
    status = EXIT_STREAM;
  }
  free(b);
  ss_file_close(&f);
  close(fd);
  if (fflush(o) != 0 && werr == 0)
    werr = errno ? errno : EIO;
  /* The reader of stdout went away (| head): what it asked for, a quiet success, as consume
   * does. Any other write error is one. */
  if ((werr != 0 || ferror(o)) && werr != EPIPE) {
    cli_error("decode", "writing stdout: %s", strerror(werr ? werr : EIO));
    status = EXIT_STREAM;
  }
  return status;
}

/* Walk the whole file; report every problem with its offset, going on from the next beacon. */
static int walk(const char *cmd, const char *path, ss_file_t *f, int quiet, uint64_t *cut,
                int *problems) {
  ss_msg_t m;
  int rc;
  uint64_t msgs = 0, eos_at = 0;
  *problems = 0;
  *cut = 0;
  for (;;) {
    rc = ss_file_next(f, &m);
    if (rc == SS_OK) {
      msgs++;
      if (m.eos && eos_at == 0)
        eos_at = m.start;
      continue;
    }
    if (rc == SS_MORE) {
      if (f->r.partial) {
        uint64_t size = ss_file_size(f);
        if (!quiet)
          printf("%s: offset %llu: torn tail: the last %llu bytes are an incomplete frame\n", path,
                 (unsigned long long)f->r.pos, (unsigned long long)(size - f->r.pos));
        *cut = f->r.pos;
        (*problems)++;
      }
      break;
    }
    if (rc == SS_NOMEM) {
      cli_error(cmd, "out of memory");
      return -1;
    }
    (*problems)++;
    if (!quiet)
      printf("%s: %s\n", path, f->r.err);
    /* Resynchronise at the next beacon (spec 8.6). */
    char err[256];
    uint64_t k = f->r.err_off / f->header.interval + 1, pos;
    rc = ss_file_after_beacon(f, k, &pos, err, sizeof err);
    if (rc != SS_OK) {
      if (rc == SS_ERR && !quiet) {
        printf("%s: %s\n", path, err);
        (*problems)++;
      }
      break;
    }
    ss_file_goto(f, pos);
  }
  if (!quiet)
    printf("%s: %llu messages, beacon interval %u, %s%s\n", path, (unsigned long long)msgs,
           f->header.interval, eos_at ? "ends with EOS, " : "", *problems ? "NOT sound" : "sound");
  return 0;
}

/* The one FILE operand of verify and repair, after -h/--help (getopt_long, as every command). */
static int file_operand(const char *cmd, int argc, char **argv, const char *help,
                        const char **path) {
  int shown, rc = cli_help_only(cmd, argc, argv, help, &shown);
  if (rc != 0 || shown)
    return shown ? -1 : rc;
  if (argc - optind != 1) {
    fputs(help, stderr);
    return EXIT_USAGE;
  }
  *path = argv[optind];
  return 0;
}

static int cmd_verify(int argc, char **argv) {
  static const char help[] =
      "usage: seastreamer verify FILE\n"
      "Read every frame and beacon of a .ss file and check every checksum and length. Each\n"
      "problem is printed with its byte offset. Status: 0 sound, 1 damaged or torn, 2 not a\n"
      ".ss file or cannot be read.\n";
  const char *path;
  int st = file_operand("verify", argc, argv, help, &path);
  if (st != 0)
    return st < 0 ? EXIT_OK : st;
  ss_file_t f;
  int problems;
  uint64_t cut;
  int fd = open_ss("verify", path, O_RDONLY, &f);
  if (fd < 0)
    return EXIT_USAGE;
  int rc = walk("verify", path, &f, 0, &cut, &problems);
  ss_file_close(&f);
  close(fd);
  if (rc != 0)
    return EXIT_STREAM;
  return problems ? EXIT_STREAM : EXIT_OK;
}

static int cmd_repair(int argc, char **argv) {
  static const char help[] =
      "usage: seastreamer repair FILE\n"
      "Cut a torn tail (an incomplete last frame, as a crashed writer leaves) so the file ends\n"
      "at its last whole frame. Damage inside the file is reported and left alone. It takes\n"
      "the file's writer lock, so it is refused while a producer writes the file. Status: 0\n"
      "the file is sound now, 1 damage remains, 2 not a .ss file, cannot be read, or locked.\n";
  const char *path;
  int st = file_operand("repair", argc, argv, help, &path);
  if (st != 0)
    return st < 0 ? EXIT_OK : st;
  ss_file_t f;
  int problems;
  uint64_t cut;
  int fd = open_ss("repair", path, O_RDWR, &f);
  if (fd < 0)
    return EXIT_USAGE;
  int rc = walk("repair", path, &f, 1, &cut, &problems);
  int status = EXIT_OK;
  if (rc != 0) {
    status = EXIT_STREAM;
  } else if (cut > 0) {
    uint64_t size = ss_file_size(&f);
    if (ftruncate(fd, (off_t)cut) != 0 || fsync(fd) != 0) {
      cli_error("repair", "cannot cut %s to %llu bytes: %s", path, (unsigned long long)cut,
                strerror(errno));
      status = EXIT_STREAM;
    } else {
      printf("%s: cut %llu bytes of a torn tail at offset %llu\n", path,
             (unsigned long long)(size - cut), (unsigned long long)cut);
      problems--;
    }
  } else if (problems == 0) {
    printf("%s: sound, nothing to repair\n", path);
  }
  if (status == EXIT_OK && problems > 0) {
    cli_error("repair", "%s: %d problem(s) inside the file remain (see `seastreamer verify`)", path,
              problems);
    status = EXIT_STREAM;
  }
  ss_file_close(&f);
  close(fd);
  return status;
}

const sea_plugin_command_t file_commands[] = {
    {"decode", "FILE", "print a .ss file (--format log|ndjson, --header-only)", cmd_decode},
    {"verify", "FILE", "check every frame, checksum and beacon of a .ss file", cmd_verify},
    {"repair", "FILE", "cut the torn tail of a .ss file", cmd_repair},
    {NULL, NULL, NULL, NULL}};
