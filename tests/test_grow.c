/* test_grow.c: sea_grow and SEA_GROW (plugin.h), the array growth the plugins share: the
 * capacities it picks, and that every failure (overflow, a failed realloc) leaves the array and
 * its capacity as they were. Built as a plugin file is: plugin.h only, SEA_PLUGIN_STATIC with
 * SEA_PLUGIN_NAME, so SEA_GROW's sea_host is the renamed table of a static build. */
#include <stdint.h>
#include <stdlib.h>

#include <seastreamer/plugin.h>

#include "test.h"

#ifndef sea_host
#error "build test_grow with SEA_PLUGIN_STATIC and SEA_PLUGIN_NAME (tests/CMakeLists.txt)"
#endif

/* What the realloc given to sea_grow saw, and whether it fails. */
static size_t realloc_calls, last_size;
static int realloc_fails;

static void *test_realloc(void *p, size_t size) {
  realloc_calls++;
  last_size = size;
  if (realloc_fails)
    return NULL;
  return realloc(p, size);
}

/* The table SEA_GROW reaches: sea_host is sea_host_grow here (the build defines SEA_PLUGIN_STATIC
 * and SEA_PLUGIN_NAME=grow), as in a backend linked into a program. */
static sea_host_t table;
static const sea_host_t *sea_host;

static void test_from_zero(void) {
  int *v = NULL;
  size_t cap = 0, i;
  realloc_calls = 0;
  CHECK_EQ_INT(SEA_GROW(v, cap, 1, 8), 0);
  CHECK(v != NULL);
  CHECK_EQ_INT(cap, 8);
  CHECK_EQ_INT(last_size, 8 * sizeof(int));
  CHECK_EQ_INT(realloc_calls, 1);
  for (i = 0; i < 8; i++)
    v[i] = (int)i;
  /* Room already: nothing is allocated. */
  CHECK_EQ_INT(SEA_GROW(v, cap, 8, 8), 0);
  CHECK_EQ_INT(realloc_calls, 1);
  CHECK_EQ_INT(SEA_GROW(v, cap, 0, 8), 0);
  CHECK_EQ_INT(realloc_calls, 1);
  /* One more doubles, and keeps what was there. */
  CHECK_EQ_INT(SEA_GROW(v, cap, 9, 8), 0);
  CHECK_EQ_INT(cap, 16);
  CHECK_EQ_INT(realloc_calls, 2);
  for (i = 0; i < 8; i++)
    CHECK_EQ_INT(v[i], (int)i);
  sea_host->free(v);

  /* first_cap 0 means 1. */
  v = NULL;
  cap = 0;
  CHECK_EQ_INT(SEA_GROW(v, cap, 1, 0), 0);
  CHECK_EQ_INT(cap, 1);
  CHECK_EQ_INT(SEA_GROW(v, cap, 2, 0), 0);
  CHECK_EQ_INT(cap, 2);
  sea_host->free(v);
}

static void test_need_past_double(void) {
  char *b = NULL;
  size_t cap = 0;
  /* From nothing straight to a need above first_cap: first_cap doubled until it holds it. */
  CHECK_EQ_INT(SEA_GROW(b, cap, 1000, 256), 0);
  CHECK_EQ_INT(cap, 1024);
  CHECK_EQ_INT(last_size, 1024);
  /* A need beyond twice the capacity: doubled as often as it takes. */
  CHECK_EQ_INT(SEA_GROW(b, cap, 5000, 256), 0);
  CHECK_EQ_INT(cap, 8192);
  /* An exact power of two is enough as it is. */
  CHECK_EQ_INT(SEA_GROW(b, cap, 16384, 256), 0);
  CHECK_EQ_INT(cap, 16384);
  sea_host->free(b);

  /* A capacity set elsewhere below first_cap grows to first_cap at least. */
  b = sea_host->alloc(3);
  cap = 3;
  CHECK_EQ_INT(SEA_GROW(b, cap, 4, 64), 0);
  CHECK_EQ_INT(cap, 64);
  sea_host->free(b);
}

/* Overflow and a failed realloc: SEA_ENOMEM, and the array and its capacity are untouched. */
static void test_failures(void) {
  uint64_t *v = NULL, *before;
  size_t cap = 0;
  CHECK_EQ_INT(SEA_GROW(v, cap, 4, 4), 0);
  v[0] = 42;
  before = v;

  /* The element count fits, its size in bytes does not. */
  realloc_calls = 0;
  CHECK_EQ_INT(SEA_GROW(v, cap, SIZE_MAX / sizeof *v + 1, 4), SEA_ENOMEM);
  CHECK(v == before);
  CHECK_EQ_INT(cap, 4);
  CHECK_EQ_INT(realloc_calls, 0);

  /* Doubling itself would overflow. */
  {
    char *c = NULL;
    size_t ccap = SIZE_MAX / 2 + 1;
    CHECK_EQ_INT(SEA_GROW(c, ccap, ccap + 1, 4), SEA_ENOMEM);
    CHECK(c == NULL);
    CHECK(ccap == SIZE_MAX / 2 + 1);
    ccap = 4;
    CHECK_EQ_INT(SEA_GROW(c, ccap, SIZE_MAX, 4), SEA_ENOMEM);
    CHECK(c == NULL);
    CHECK_EQ_INT(ccap, 4);
    CHECK_EQ_INT(realloc_calls, 0);
  }

  /* realloc fails: nothing changes, the old array is still the caller's. */
  realloc_fails = 1;
  CHECK_EQ_INT(SEA_GROW(v, cap, 5, 4), SEA_ENOMEM);
  CHECK_EQ_INT(realloc_calls, 1);
  CHECK_EQ_INT(last_size, 8 * sizeof *v);
  CHECK(v == before);
  CHECK_EQ_INT(cap, 4);
  CHECK_EQ_INT(v[0], 42);
  realloc_fails = 0;

  /* And it grows once realloc works again. */
  CHECK_EQ_INT(SEA_GROW(v, cap, 5, 4), 0);
  CHECK_EQ_INT(cap, 8);
  CHECK_EQ_INT(v[0], 42);
  sea_host->free(v);

  /* A zero element size is a bug, not a size. */
  {
    void *p = NULL;
    size_t pcap = 0;
    CHECK_EQ_INT(sea_grow(test_realloc, &p, &pcap, 1, 0, 4), SEA_EINVAL);
    CHECK(p == NULL);
    CHECK_EQ_INT(pcap, 0);
  }
}

/* SEA_GROW_WITH takes another realloc (libc's here) and evaluates cap and need once (items is
 * evaluated once too, but with a side effect there Clang warns about the sizeof). */
static void test_with(void) {
  typedef struct pair {
    int a, b;
  } pair_t;
  pair_t *v[2] = {NULL, NULL};
  size_t caps[2] = {0, 0};
  int grown = 0, needs = 0;
  CHECK_EQ_INT(SEA_GROW_WITH(realloc, v[0], caps[grown++], (needs++, 3), 2), 0);
  CHECK_EQ_INT(grown, 1);
  CHECK_EQ_INT(needs, 1);
  CHECK(v[0] != NULL && v[1] == NULL);
  CHECK_EQ_INT(caps[0], 4);
  CHECK_EQ_INT(caps[1], 0);
  v[0][3].b = 7;
  CHECK_EQ_INT(v[0][3].b, 7);
  free(v[0]);
}

int main(void) {
  table.alloc = malloc;
  table.realloc = test_realloc;
  table.free = free;
  sea_host = &table;
  test_from_zero();
  test_need_past_double();
  test_failures();
  test_with();
  return test_report();
}
