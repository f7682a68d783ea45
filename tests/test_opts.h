/* test_opts.h: options for a test from a few "key=value" strings (NULLs are skipped). */
#ifndef SEA_TEST_OPTS_H
#define SEA_TEST_OPTS_H

#include <seastreamer/seastreamer.h>

#include "test.h"

static inline sea_options_t *test_opts(const char *const *kv, size_t n) {
  sea_options_t *o = sea_options_new();
  for (size_t i = 0; i < n; i++)
    if (kv[i])
      CHECK_EQ_INT(sea_options_parse(o, kv[i]), 0); /* a typo in a test is a failed check */
  return o;
}

#define TEST_OPTS(...)                                                                             \
  test_opts((const char *const[]){__VA_ARGS__},                                                    \
            sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

#endif
