/* stdio_parse.c: parses the optional "[timestamp | key | seq | shard]" block that starts a line. */
#include <string.h>

#include "stdio_parse.h"

/* ASCII whitespace only: the payload is bytes, and trimming must not depend on the locale. */
static int is_space(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static int is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

static int is_key_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '.' || c == '_' ||
         c == '-';
}

int stdio_key_valid(const char *s, size_t len) {
  if (len == 0 || len > SEA_STREAM_KEY_MAX)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!is_key_char((unsigned char)s[i]))
      return 0;
  return 1;
}

static void trim(const char **s, size_t *len) {
  const char *p = *s;
  size_t n = *len;
  while (n > 0 && is_space((unsigned char)p[0])) {
    p++;
    n--;
  }
  while (n > 0 && is_space((unsigned char)p[n - 1]))
    n--;
  *s = p;
  *len = n;
}

/* Returns 0, 1 if s is not all digits (or empty), 2 if it overflows 64 bits. No sign: a
 * sequence number is written by a program, and "+7" in a header is more likely a mistake. */
static int parse_u64(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  int overflow = 0;
  if (len == 0)
    return 1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!is_digit(c))
      return 1;
    unsigned d = c - '0';
    if (v > (UINT64_MAX - d) / 10)
      overflow = 1; /* keep going: "99999999999999999999x" is "not a number", not "overflow" */
    else
      v = v * 10 + d;
  }
  if (overflow)
    return 2;
  *out = v;
  return 0;
}

/* "DDDD-" at the start and not a stream key: written as a timestamp, so a failure to parse it
 * is reported as a bad timestamp rather than as a bad key. */
static int looks_like_timestamp(const char *s, size_t len) {
  return len >= 5 && is_digit((unsigned char)s[0]) && is_digit((unsigned char)s[1]) &&
         is_digit((unsigned char)s[2]) && is_digit((unsigned char)s[3]) && s[4] == '-' &&
         !stdio_key_valid(s, len);
}

static const char *bad_key_reason(const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    if (!is_key_char((unsigned char)s[i]))
      break;
  if (i == len && len > SEA_STREAM_KEY_MAX)
    return "stream key longer than 249 bytes";
  return "not a timestamp or a stream key";
}

enum { AT_START, AFTER_TS, AFTER_KEY, AFTER_SEQ, AFTER_SHARD };

/* One trimmed part of the header, checked against what may come at this point. The order rules
 * are SeaStreamer's: a timestamp only first, a key once, seq only after the key, shard only
 * after seq. */
static const char *header_part(const char *p, size_t n, int *state, stdio_ts_parse_fn parse_ts,
                               stdio_line_t *out) {
  int rc;
  if (n == 0)
    return "empty part";
  if (*state == AT_START && looks_like_timestamp(p, n)) {
    if (parse_ts(p, n, &out->timestamp_us) != 0)
      return "invalid timestamp";
    out->has_ts = 1;
    *state = AFTER_TS;
    return NULL;
  }
  if (*state == AT_START || *state == AFTER_TS) {
    if (!stdio_key_valid(p, n)) {
      if (looks_like_timestamp(p, n))
        return "a timestamp may only be the first part";
      return bad_key_reason(p, n);
    }
    out->has_key = 1;
    out->key = p;
    out->key_len = n;
    *state = AFTER_KEY;
    return NULL;
  }
  if (*state == AFTER_KEY) {
    rc = parse_u64(p, n, &out->seq);
    if (rc == 1)
      return "sequence number is not a number";
    if (rc == 2)
      return "sequence number overflows 64 bits";
    out->has_seq = 1;
    *state = AFTER_SEQ;
    return NULL;
  }
  if (*state == AFTER_SEQ) {
    rc = parse_u64(p, n, &out->shard);
    if (rc == 1)
      return "shard id is not a number";
    if (rc == 2)
      return "shard id overflows 64 bits";
    out->has_shard = 1;
    *state = AFTER_SHARD;
    return NULL;
  }
  return "too many parts (at most timestamp | key | seq | shard)";
}

int stdio_parse_line_with(const char *line, size_t len, stdio_ts_parse_fn parse_ts,
                          stdio_line_t *out, const char **why) {
  memset(out, 0, sizeof *out);
  if (len > 0 && line[len - 1] == '\n')
    len--;
  if (len > 0 && line[len - 1] == '\r')
    len--;
  /* As in SeaStreamer, a header block starts at the first byte; any other line, indented ones
   * included, is a payload and keeps every byte. */
  if (len == 0 || line[0] != '[') {
    out->payload = line;
    out->payload_len = len;
    return 0;
  }
  const char *open = line;
  const char *end = memchr(open + 1, ']', len - 1);
  const char *reason = NULL;
  if (end == NULL) {
    reason = "no closing ']'";
    goto fail;
  }
  out->has_header = 1;
  int state = AT_START;
  const char *p = open + 1;
  for (;;) {
    const char *bar = memchr(p, '|', (size_t)(end - p));
    const char *part_end = bar ? bar : end;
    const char *part = p;
    size_t n = (size_t)(part_end - p);
    trim(&part, &n);
    reason = header_part(part, n, &state, parse_ts, out);
    if (reason != NULL)
      goto fail;
    if (bar == NULL)
      break;
    p = bar + 1;
  }
  out->payload = end + 1;
  out->payload_len = (size_t)(line + len - (end + 1));
  trim(&out->payload, &out->payload_len);
  return 0;

fail:
  if (why != NULL)
    *why = reason;
  return SEA_EFORMAT;
}
