/* stdio_parse.h: the stdio backend's line parser for "[timestamp | key | seq | shard] payload". */
#ifndef SEA_STDIO_PARSE_H
#define SEA_STDIO_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "seastreamer/plugin.h"

/* Same shape as sea_parse_timestamp / host->parse_timestamp: 0 or SEA_EFORMAT. */
typedef int (*stdio_ts_parse_fn)(const char *s, size_t len, int64_t *timestamp_us);

/* One parsed line. Pointers point into the line given to the parser. */
typedef struct stdio_line {
  int has_header; /* the line started with a [...] block */
  int has_ts;
  int has_key;
  int has_seq;
  int has_shard;
  int64_t timestamp_us;
  const char *key; /* valid stream key bytes (not NUL-terminated), when has_key */
  size_t key_len;
  uint64_t seq;
  uint64_t shard;
  const char *payload;
  size_t payload_len;
} stdio_line_t;

/* Parse one line: `line` holds len bytes (one trailing "\n" and then one "\r" are stripped if
 * present). A header block is a '[' at the first byte; without one the payload is the whole line,
 * untrimmed. Timestamps are parsed by parse_ts (the plugin passes host->parse_timestamp, tests
 * sea_parse_timestamp: one parser, so a timestamp means the same thing everywhere). Returns 0, or
 * SEA_EFORMAT with *why (if why is not NULL) set to a static string that says what was wrong. */
int stdio_parse_line_with(const char *line, size_t len, stdio_ts_parse_fn parse_ts,
                          stdio_line_t *out, const char **why);

/* 1..SEA_STREAM_KEY_MAX bytes of [A-Za-z0-9._-]. */
int stdio_key_valid(const char *s, size_t len);

#endif /* SEA_STDIO_PARSE_H */
