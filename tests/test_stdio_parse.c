/* test_stdio_parse.c: tests of the stdio backend's line header parser and timestamp parser. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* The plugin's parser (plugin.h) against the library's timestamp parser (the user API). */
#define SEA_HOST_INTERNAL
#include <seastreamer/seastreamer.h>

#include "stdio_parse.h"

static int passed, failed;

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (cond) {                                                                                    \
      passed++;                                                                                    \
    } else {                                                                                       \
      failed++;                                                                                    \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                  \
      printf(__VA_ARGS__);                                                                         \
      printf("\n");                                                                                \
    }                                                                                              \
  } while (0)

/* 2026-11-26T10:00:00Z in microseconds. */
#define T_2026_11_26_10 INT64_C(1795687200000000)

static int str_is(const char *p, size_t n, const char *want) {
  return n == strlen(want) && (n == 0 || memcmp(p, want, n) == 0);
}

/* Expected result of one line; key NULL = no key; seq/shard -1 = absent. */
typedef struct expect {
  const char *line;
  int has_header;
  int has_ts;
  int64_t ts;
  const char *key;
  int64_t seq;
  int64_t shard;
  const char *payload;
} expect_t;

static void check_ok(const expect_t *e) {
  stdio_line_t l;
  const char *why = NULL;
  int rc = stdio_parse_line_with(e->line, strlen(e->line), sea_parse_timestamp, &l, &why);
  CHECK(rc == 0, "\"%s\": rc %d (%s)", e->line, rc, why ? why : "");
  if (rc != 0)
    return;
  CHECK(l.has_header == e->has_header, "\"%s\": has_header %d", e->line, l.has_header);
  CHECK(l.has_ts == e->has_ts, "\"%s\": has_ts %d", e->line, l.has_ts);
  if (e->has_ts)
    CHECK(l.timestamp_us == e->ts, "\"%s\": ts %" PRId64 " want %" PRId64, e->line, l.timestamp_us,
          e->ts);
  CHECK(l.has_key == (e->key != NULL), "\"%s\": has_key %d", e->line, l.has_key);
  if (e->key && l.has_key)
    CHECK(str_is(l.key, l.key_len, e->key), "\"%s\": key \"%.*s\"", e->line, (int)l.key_len, l.key);
  CHECK(l.has_seq == (e->seq >= 0), "\"%s\": has_seq %d", e->line, l.has_seq);
  if (e->seq >= 0 && l.has_seq)
    CHECK(l.seq == (uint64_t)e->seq, "\"%s\": seq %" PRIu64, e->line, l.seq);
  CHECK(l.has_shard == (e->shard >= 0), "\"%s\": has_shard %d", e->line, l.has_shard);
  if (e->shard >= 0 && l.has_shard)
    CHECK(l.shard == (uint64_t)e->shard, "\"%s\": shard %" PRIu64, e->line, l.shard);
  CHECK(str_is(l.payload, l.payload_len, e->payload), "\"%s\": payload \"%.*s\" want \"%s\"",
        e->line, (int)l.payload_len, l.payload, e->payload);
}

static void check_bad(const char *line, size_t len, const char *want_why) {
  stdio_line_t l;
  const char *why = NULL;
  int rc = stdio_parse_line_with(line, len, sea_parse_timestamp, &l, &why);
  CHECK(rc == SEA_EFORMAT, "\"%.*s\": rc %d, want SEA_EFORMAT", (int)len, line, rc);
  CHECK(why != NULL && (want_why == NULL || strstr(why, want_why) != NULL),
        "\"%.*s\": why \"%s\", want \"%s\"", (int)len, line, why ? why : "(null)",
        want_why ? want_why : "(any)");
}

static void test_valid_lines(void) {
  static const expect_t cases[] = {
      /* the examples of the format */
      {"[orders] hi", 1, 0, 0, "orders", -1, -1, "hi"},
      {"[orders | 7] hi", 1, 0, 0, "orders", 7, -1, "hi"},
      {"[orders | 7 | 2] hi", 1, 0, 0, "orders", 7, 2, "hi"},
      {"[2026-11-26T10:00:00.123 | orders | 7] hi", 1, 1, T_2026_11_26_10 + 123000, "orders", 7, -1,
       "hi"},
      {"[2026-11-26T10:00:00] hi", 1, 1, T_2026_11_26_10, NULL, -1, -1, "hi"},
      {"[2026-11-26T10:00:00 | orders | 7 | 2] hi", 1, 1, T_2026_11_26_10, "orders", 7, 2, "hi"},
      {"[2026-11-26T10:00:00|orders|7|2]hi", 1, 1, T_2026_11_26_10, "orders", 7, 2, "hi"},
      /* no header: the whole line, untouched */
      {"hello world", 0, 0, 0, NULL, -1, -1, "hello world"},
      {"  spaced  ", 0, 0, 0, NULL, -1, -1, "  spaced  "},
      {"", 0, 0, 0, NULL, -1, -1, ""},
      {" [orders] x", 0, 0, 0, NULL, -1, -1, " [orders] x"},
      {"[orders]   trimmed  \r", 1, 0, 0, "orders", -1, -1, "trimmed"},
      {"  [orders] indented", 0, 0, 0, NULL, -1, -1, "  [orders] indented"},
      {"\t[orders | 3] x", 0, 0, 0, NULL, -1, -1, "\t[orders | 3] x"},
      {"x [orders] y", 0, 0, 0, NULL, -1, -1, "x [orders] y"},
      {"   ", 0, 0, 0, NULL, -1, -1, "   "},
      {"{\"a\": [1, 2]}", 0, 0, 0, NULL, -1, -1, "{\"a\": [1, 2]}"},
      /* payload trimming and what may follow the block */
      {"[orders]   hi there  ", 1, 0, 0, "orders", -1, -1, "hi there"},
      {"[orders]", 1, 0, 0, "orders", -1, -1, ""},
      {"[orders] \t ", 1, 0, 0, "orders", -1, -1, ""},
      {"[orders] [nested] ]x", 1, 0, 0, "orders", -1, -1, "[nested] ]x"},
      {"[ \torders\t ] hi", 1, 0, 0, "orders", -1, -1, "hi"},
      /* keys: every allowed character, digits-only keys, the "broadcast" word */
      {"[a.b_c-D9] x", 1, 0, 0, "a.b_c-D9", -1, -1, "x"},
      {"[7] x", 1, 0, 0, "7", -1, -1, "x"},
      {"[7 | 8] x", 1, 0, 0, "7", 8, -1, "x"},
      {"[2026-11-26T10:00:00 | 7] x", 1, 1, T_2026_11_26_10, "7", -1, -1, "x"},
      {"[2026-11] x", 1, 0, 0, "2026-11", -1, -1, "x"},
      {"[2026-11-26T10] x", 1, 0, 0, "2026-11-26T10", -1, -1, "x"},
      {"[broadcast] x", 1, 0, 0, "broadcast", -1, -1, "x"},
      /* seq and shard limits */
      {"[k | 0 | 0] x", 1, 0, 0, "k", 0, 0, "x"},
      {"[k | 18446744073709551615 | 18446744073709551615] x", 1, 0, 0, "k", -1, -1, "x"},
      {"[k | 00042] x", 1, 0, 0, "k", 42, -1, "x"},
      /* timestamps */
      {"[1970-01-01T00:00:00] x", 1, 1, 0, NULL, -1, -1, "x"},
      {"[1969-12-31T23:59:59.5] x", 1, 1, -500000, NULL, -1, -1, "x"},
      {"[2000-02-29T12:00:00] x", 1, 1, INT64_C(951825600000000), NULL, -1, -1, "x"},
      {"[2026-11-26T10:00:00.1] x", 1, 1, T_2026_11_26_10 + 100000, NULL, -1, -1, "x"},
      {"[2026-11-26T10:00:00.123456789] x", 1, 1, T_2026_11_26_10 + 123456, NULL, -1, -1, "x"},
      {"[2026-11-26T10:00:00.000001] x", 1, 1, T_2026_11_26_10 + 1, NULL, -1, -1, "x"},
      {"[9999-12-31T23:59:59.999999] x", 1, 1, INT64_C(253402300799999999), NULL, -1, -1, "x"},
      {"[0000-01-01T00:00:00] x", 1, 1, INT64_C(-62167219200000000), NULL, -1, -1, "x"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    expect_t e = cases[i];
    /* The u64 max case can't be told with int64 "expected" values: check it by hand below. */
    if (strstr(e.line, "18446744073709551615") != NULL)
      continue;
    check_ok(&e);
  }

  stdio_line_t l;
  const char *max = "[k | 18446744073709551615 | 18446744073709551615] x";
  CHECK(stdio_parse_line_with(max, strlen(max), sea_parse_timestamp, &l, NULL) == 0 && l.has_seq &&
            l.has_shard && l.seq == UINT64_MAX && l.shard == UINT64_MAX,
        "u64 max seq and shard");
}

static void test_line_ends(void) {
  static const expect_t crlf[] = {
      {"[orders | 7] hi\r", 1, 0, 0, "orders", 7, -1, "hi"},
      {"plain\r", 0, 0, 0, NULL, -1, -1, "plain"},
      {"plain\r\n", 0, 0, 0, NULL, -1, -1, "plain"},
      {"[orders] hi\n", 1, 0, 0, "orders", -1, -1, "hi"},
      {"\r", 0, 0, 0, NULL, -1, -1, ""},
      {"\r\n", 0, 0, 0, NULL, -1, -1, ""},
      {"[orders]\r\n", 1, 0, 0, "orders", -1, -1, ""},
  };
  for (size_t i = 0; i < sizeof crlf / sizeof crlf[0]; i++)
    check_ok(&crlf[i]);

  /* Only one '\r' goes: the one that belongs to the line end. */
  stdio_line_t l;
  CHECK(stdio_parse_line_with("a\r\r", 3, sea_parse_timestamp, &l, NULL) == 0 &&
            str_is(l.payload, l.payload_len, "a\r"),
        "one \\r stripped");
  /* A '\r' inside the header block is trimmed like a space. */
  CHECK(stdio_parse_line_with("[orders\r] x", 11, sea_parse_timestamp, &l, NULL) == 0 &&
            str_is(l.key, l.key_len, "orders"),
        "\\r in header trimmed");
  /* A length shorter than the string: bytes past len are not looked at. */
  CHECK(stdio_parse_line_with("[orders] hi]", 6, sea_parse_timestamp, &l, NULL) == SEA_EFORMAT,
        "len limits the search");
  /* Embedded NUL in the payload is just a byte. */
  CHECK(stdio_parse_line_with("[k] a\0b", 7, sea_parse_timestamp, &l, NULL) == 0 &&
            l.payload_len == 3,
        "NUL in payload");
}

static void test_malformed(void) {
  check_bad("[", 1, "no closing");
  check_bad("[", 1, "no closing");
  check_bad("[bad key!] x", 12, "stream key");
  check_bad("[orders hi", 10, "no closing");
  check_bad("[orders | 7 hi", 14, "no closing");
  check_bad("[ ]", 3, "empty part");
  check_bad("[]", 2, "empty part");
  check_bad("[] x", 4, "empty part");
  check_bad("[orders | ] x", 13, "empty part");
  check_bad("[ | orders] x", 13, "empty part");
  check_bad("[orders || 7] x", 15, "empty part");
  check_bad("[bad key!] x", 12, "not a timestamp or a stream key");
  check_bad("[orders/eu] x", 13, "stream key");
  check_bad("[ordérs] x", strlen("[ordérs] x"), "stream key");
  check_bad("[orders | x] y", 14, "sequence number is not a number");
  check_bad("[orders | -1] y", 15, "sequence number is not a number");
  check_bad("[orders | +1] y", 15, "sequence number is not a number");
  check_bad("[orders | 1.5] y", 16, "sequence number is not a number");
  check_bad("[orders | 18446744073709551616] y", 33, "sequence number overflows");
  check_bad("[orders | 99999999999999999999999] y", 36, "sequence number overflows");
  check_bad("[orders | 7 | x] y", 18, "shard id is not a number");
  check_bad("[orders | 7 | 18446744073709551616] y", 37, "shard id overflows");
  check_bad("[orders | 7 | 2 | 3] y", 22, "too many parts");
  check_bad("[2026-11-26T10:00:00 | orders | 7 | 2 | 3] y", 44, "too many parts");
  /* order rules: timestamp first only, seq only after a key, shard only after seq */
  check_bad("[orders | 2026-11-26T10:00:00] y", 32, "sequence number is not a number");
  check_bad("[2026-11-26T10:00:00 | 2026-11-26T10:00:00] y", 45, "timestamp may only be the first");
  check_bad("[2026-11-26T10:00:00 | orders | 2026-11-26T10:00:00] y", 54, "sequence");
  /* timestamps that look like one but are not valid */
  check_bad("[2026-13-01T00:00:00] y", 23, "invalid timestamp");
  check_bad("[2026-00-01T00:00:00] y", 23, "invalid timestamp");
  check_bad("[2026-02-29T00:00:00] y", 23, "invalid timestamp");
  check_bad("[1900-02-29T00:00:00] y", 23, "invalid timestamp");
  check_bad("[2026-04-31T00:00:00] y", 23, "invalid timestamp");
  check_bad("[2026-11-26T24:00:00] y", 23, "invalid timestamp");
  check_bad("[2026-11-26T10:60:00] y", 23, "invalid timestamp");
  check_bad("[2026-11-26T10:00:60] y", 23, "invalid timestamp");
  check_bad("[2026-11-26T10:00:00.] y", 24, "invalid timestamp");
  check_bad("[2026-11-26T10:00:00.1234567890] y", 34, "invalid timestamp");
  check_bad("[2026-11-26T10:00:00Z] y", 24, "invalid timestamp");
  check_bad("[2026-11-26 10:00:00] y", 23, "invalid timestamp");
  check_bad("[2026-11-26T10:00] y", 19, "invalid timestamp");
  check_bad("[2026-11-26T10:00:00+01:00] y", 29, "invalid timestamp");
  /* "\r\n" does not rescue a bad header */
  check_bad("[orders | x] y\r\n", 16, "sequence");
}

static void test_key_length(void) {
  char line[300];
  char key[260];
  memset(key, 'k', sizeof key);
  stdio_line_t l;
  const char *why = NULL;

  int n = snprintf(line, sizeof line, "[%.*s | 3] p", SEA_STREAM_KEY_MAX, key);
  CHECK(stdio_parse_line_with(line, (size_t)n, sea_parse_timestamp, &l, &why) == 0 &&
            l.key_len == SEA_STREAM_KEY_MAX && l.has_seq && l.seq == 3,
        "249-byte key accepted");

  n = snprintf(line, sizeof line, "[%.*s | 3] p", SEA_STREAM_KEY_MAX + 1, key);
  check_bad(line, (size_t)n, "longer than 249");

  CHECK(stdio_key_valid(key, SEA_STREAM_KEY_MAX) && !stdio_key_valid(key, SEA_STREAM_KEY_MAX + 1) &&
            !stdio_key_valid(key, 0) && !stdio_key_valid("a b", 3),
        "stdio_key_valid");
}

static void test_timestamp(void) {
  int64_t t = 0;
  CHECK(sea_parse_timestamp("2026-11-26T10:00:00", 19, &t) == 0 && t == T_2026_11_26_10,
        "plain timestamp");
  CHECK(sea_parse_timestamp("2026-11-26T10:00:00.999", 23, &t) == 0 &&
            t == T_2026_11_26_10 + 999000,
        "ms timestamp");
  CHECK(sea_parse_timestamp("2024-02-29T00:00:00", 19, &t) == 0, "leap day 2024");
  CHECK(sea_parse_timestamp("2400-02-29T00:00:00", 19, &t) == 0, "leap day 2400");
  CHECK(sea_parse_timestamp("2100-02-29T00:00:00", 19, &t) == SEA_EFORMAT, "2100 is not leap");
  CHECK(sea_parse_timestamp("2026-11-26T10:00:0", 18, &t) == SEA_EFORMAT, "short");
  CHECK(sea_parse_timestamp("2026-11-26T10:00:00 ", 20, &t) == SEA_EFORMAT, "trailing space");
  CHECK(sea_parse_timestamp("2026-1a-26T10:00:00", 19, &t) == SEA_EFORMAT, "letter");

  /* Every day of a few years round-trips through a day count that steps by one. */
  static const unsigned mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  static const unsigned years[] = {0, 1, 4, 100, 400, 1899, 1900, 1969, 1970, 2000, 2024, 9999};
  int monotone = 1;
  for (size_t yi = 0; yi < sizeof years / sizeof years[0]; yi++) {
    unsigned y = years[yi];
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int64_t prev = 0;
    int first = 1;
    for (unsigned m = 1; m <= 12; m++) {
      unsigned dm = mdays[m - 1] + (m == 2 && leap);
      for (unsigned d = 1; d <= dm; d++) {
        char s[32];
        snprintf(s, sizeof s, "%04u-%02u-%02uT00:00:00", y, m, d);
        int64_t v;
        if (sea_parse_timestamp(s, 19, &v) != 0 || (!first && v - prev != INT64_C(86400000000)))
          monotone = 0;
        prev = v;
        first = 0;
      }
    }
  }
  CHECK(monotone, "days step by 86400 s through every month of sample years");
}

/* The parser given a timestamp function uses it (the plugin passes the host's). */
static int fixed_ts(const char *s, size_t len, int64_t *out) {
  (void)s;
  (void)len;
  *out = 42;
  return 0;
}

static void test_custom_ts(void) {
  stdio_line_t l;
  const char *line = "[2026-11-26T10:00:00 | k] x";
  CHECK(stdio_parse_line_with(line, strlen(line), fixed_ts, &l, NULL) == 0 && l.has_ts &&
            l.timestamp_us == 42,
        "custom timestamp parser used");
}

int main(void) {
  test_valid_lines();
  test_line_ends();
  test_malformed();
  test_key_length();
  test_timestamp();
  test_custom_ts();
  printf("%d passed, %d failed\n", passed, failed);
  return failed != 0;
}
