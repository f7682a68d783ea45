/* stdio_options.c: the stdio backend's options (max_line=, malformed=, format=, template=,
 * delimiter=, key_delimiter=, empty=, null=, unbuffered=) read into a stdio_opts_t. The streamer
 * checks them at connect; the reader and the writer read them again for each consumer/producer. */
#include <string.h>

#include "stdio_internal.h"

#define STDIO_KNOWN_OPTS                                                                           \
  "max_line, malformed, format, template, delimiter, key_delimiter, empty, null, unbuffered"

/* A delimiter option's bytes: a character, or the escapes \n \r \t \\ and \xNN (as kcat's -D
 * and -K take them). Returns the length, or 0 if it is empty, too long or a bad escape. */
static size_t parse_delim(const char *v, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; v[i] != '\0'; i++) {
    char c = v[i];
    if (c == '\\') {
      char d = v[++i];
      if (d == 'n')
        c = '\n';
      else if (d == 'r')
        c = '\r';
      else if (d == 't')
        c = '\t';
      else if (d == '\\')
        c = '\\';
      else if (d == 'x') {
        unsigned x = 0;
        for (int k = 0; k < 2; k++) {
          char h = v[++i];
          if (h >= '0' && h <= '9')
            x = x * 16 + (unsigned)(h - '0');
          else if ((h | 0x20) >= 'a' && (h | 0x20) <= 'f')
            x = x * 16 + (unsigned)((h | 0x20) - 'a' + 10);
          else
            return 0;
        }
        c = (char)x;
      } else
        return 0;
    }
    if (n == cap)
      return 0;
    out[n++] = c;
  }
  return n;
}

static int parse_size(const char *s, size_t *out) {
  size_t v = 0;
  if (*s == '\0')
    return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9')
      return -1;
    if (v > (SIZE_MAX / 4 - (size_t)(*s - '0')) / 10)
      return -1;
    v = v * 10 + (size_t)(*s - '0');
  }
  *out = v;
  return 0;
}

/* Reads every backend option; an unknown key or a bad value is an error, since a typo that is
 * ignored silently is worse than one that stops the program. */
int stdio_opts_parse(sea_runtime_t *rt, const sea_options_t *o, stdio_opts_t *out) {
  out->max_line = STDIO_MAX_LINE_DEFAULT;
  out->pass_malformed = 0;
  out->format = FMT_LINE;
  out->template_src = NULL;
  out->delim = '\n';
  out->key_delim_len = 0;
  out->empty_null = 0;
  out->null_len = 0;
  out->unbuffered = 0;
  size_t n = o ? stdio_host->option_count(o) : 0;
  for (size_t i = 0; i < n; i++) {
    const char *k, *v;
    if (stdio_host->option_at(o, i, &k, &v) != 0)
      continue;
    if (v == NULL)
      v = "";
    if (strcmp(k, "max_line") == 0) {
      if (parse_size(v, &out->max_line) != 0 || out->max_line == 0) {
        stdio_host->set_error(rt, "stdio: option max_line=%s: expected a number of bytes (> 0)", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "malformed") == 0) {
      if (strcmp(v, "error") == 0)
        out->pass_malformed = 0;
      else if (strcmp(v, "pass") == 0)
        out->pass_malformed = 1;
      else {
        stdio_host->set_error(rt, "stdio: option malformed=%s: expected error or pass", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "format") == 0) {
      if (strcmp(v, "line") == 0)
        out->format = FMT_LINE;
      else if (strcmp(v, "json") == 0)
        out->format = FMT_JSON;
      else if (strcmp(v, "payload") == 0)
        out->format = FMT_PAYLOAD;
      else {
        stdio_host->set_error(rt, "stdio: option format=%s: expected line, json or payload", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "template") == 0) {
      out->template_src = v;
    } else if (strcmp(k, "delimiter") == 0) {
      char d[STDIO_DELIM_MAX];
      if (parse_delim(v, d, sizeof d) != 1) {
        stdio_host->set_error(rt,
                              "stdio: option delimiter=%s: expected one byte (a character, \\n, "
                              "\\r, \\t, \\\\ or \\xNN)",
                              v);
        return SEA_EOPTION;
      }
      out->delim = d[0];
    } else if (strcmp(k, "key_delimiter") == 0) {
      out->key_delim_len = parse_delim(v, out->key_delim, sizeof out->key_delim);
      if (out->key_delim_len == 0) {
        stdio_host->set_error(rt,
                              "stdio: option key_delimiter=%s: expected 1 to %d bytes (characters, "
                              "\\n, \\r, \\t, \\\\ or \\xNN)",
                              v, STDIO_DELIM_MAX);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "empty") == 0) {
      if (strcmp(v, "null") == 0 || strcmp(v, "empty") == 0)
        out->empty_null = v[0] == 'n';
      else {
        stdio_host->set_error(rt, "stdio: option empty=%s: expected empty or null", v);
        return SEA_EOPTION;
      }
    } else if (strcmp(k, "null") == 0) {
      out->null_len = strlen(v);
      if (out->null_len >= sizeof out->null_text) {
        stdio_host->set_error(rt, "stdio: option null=%s: at most %d bytes", v, STDIO_NULL_MAX - 1);
        return SEA_EOPTION;
      }
      memcpy(out->null_text, v, out->null_len);
    } else if (strcmp(k, "unbuffered") == 0) {
      if (strcmp(v, "true") == 0 || strcmp(v, "false") == 0)
        out->unbuffered = v[0] == 't';
      else {
        stdio_host->set_error(rt, "stdio: option unbuffered=%s: expected true or false", v);
        return SEA_EOPTION;
      }
    } else {
      if (stdio_host->option_unknown != NULL)
        stdio_host->option_unknown(rt, STDIO_NAME, k, STDIO_KNOWN_OPTS);
      else
        stdio_host->set_error(rt, "stdio: unknown option '%s' (known: %s)", k, STDIO_KNOWN_OPTS);
      return SEA_EOPTION;
    }
  }
  if (out->template_src != NULL) {
    /* Check it now so that a bad template fails at connect/open, not at the first send. */
    stdio_tpl_t *t;
    int rc = stdio_tpl_compile(rt, out->template_src, &t);
    if (rc != 0)
      return rc;
    stdio_tpl_free(t);
  }
  return 0;
}
