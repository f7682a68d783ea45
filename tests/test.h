/* test.h: a tiny test harness: CHECK records a failure with its line and goes on. */
#ifndef SEA_TEST_H
#define SEA_TEST_H

#include <stdio.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (cond) {                                                                                    \
      test_passed++;                                                                               \
    } else {                                                                                       \
      test_failed++;                                                                               \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
    }                                                                                              \
  } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ == b_) {                                                                                \
      test_passed++;                                                                               \
    } else {                                                                                       \
      test_failed++;                                                                               \
      fprintf(stderr, "%s:%d: %s == %lld, expected %s == %lld\n", __FILE__, __LINE__, #a, a_, #b,  \
              b_);                                                                                 \
    }                                                                                              \
  } while (0)

#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (a_ && b_ && strcmp(a_, b_) == 0) {                                                         \
      test_passed++;                                                                               \
    } else {                                                                                       \
      test_failed++;                                                                               \
      fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a,            \
              a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                             \
    }                                                                                              \
  } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
  do {                                                                                             \
    const char *h_ = (hay), *n_ = (needle);                                                        \
    if (h_ && strstr(h_, n_)) {                                                                    \
      test_passed++;                                                                               \
    } else {                                                                                       \
      test_failed++;                                                                               \
      fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,               \
              h_ ? h_ : "(null)", n_);                                                             \
    }                                                                                              \
  } while (0)

static int test_report(void) {
  printf("%d passed, %d failed\n", test_passed, test_failed);
  return test_failed ? 1 : 0;
}

#endif
