/* fuzz_stdio_parse.c: libFuzzer target for the stdio line parser (clang -fsanitize=fuzzer). */
#include <stdlib.h>
#include <string.h>

/* The plugin's parser (plugin.h) against the library's timestamp parser (the user API). */
#define SEA_HOST_INTERNAL
#include <seastreamer/seastreamer.h>

#include "stdio_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Beyond "no crash": whatever the parser returns must point inside the input and obey the
 * format's rules, so a violation aborts and the fuzzer keeps the input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* A private copy with no slack, so ASan sees any read past len. */
  char *line = malloc(size ? size : 1);
  if (line == NULL)
    return 0;
  if (size)
    memcpy(line, data, size);
  const char *end = line + size;

  stdio_line_t l;
  const char *why = NULL;
  int rc = stdio_parse_line_with(line, size, sea_parse_timestamp, &l, &why);
  if (rc != 0) {
    if (rc != SEA_EFORMAT || why == NULL || why[0] == '\0')
      abort();
    /* Only a line whose first byte is '[' can be malformed. */
    if (size == 0 || line[0] != '[')
      abort();
  } else {
    if (l.payload < line || l.payload + l.payload_len > end)
      abort();
    if (!l.has_header && (l.payload != line || (size > 0 && line[0] == '[')))
      abort();
    if (l.has_header && memchr(line, '[', size) == NULL)
      abort();
    if (l.has_key &&
        (l.key < line || l.key + l.key_len > end || !stdio_key_valid(l.key, l.key_len)))
      abort();
    if ((l.has_seq && !l.has_key) || (l.has_shard && !l.has_seq))
      abort();
    if (!l.has_header && (l.has_ts || l.has_key || l.has_seq || l.has_shard))
      abort();
    if (l.has_ts) {
      /* The timestamp is the first part, and the built-in parser agrees with itself. */
      int64_t t;
      const char *p = (const char *)memchr(line, '[', size) + 1;
      while (p < end &&
             (*p == ' ' || *p == '\t' || *p == '\v' || *p == '\f' || *p == '\r' || *p == '\n'))
        p++;
      size_t n = 0;
      while (p + n < end && p[n] != '|' && p[n] != ']' && p[n] != ' ' && p[n] != '\t' &&
             p[n] != '\r' && p[n] != '\n' && p[n] != '\v' && p[n] != '\f')
        n++;
      if (sea_parse_timestamp(p, n, &t) != 0 || t != l.timestamp_us)
        abort();
    }
    /* Header payloads are trimmed. */
    if (l.has_header && l.payload_len > 0 &&
        (l.payload[0] == ' ' || l.payload[l.payload_len - 1] == ' '))
      abort();
  }

  /* The timestamp parser on the raw bytes: any answer is fine, but it must not read past size. */
  int64_t t;
  (void)sea_parse_timestamp(line, size, &t);
  free(line);
  return 0;
}
