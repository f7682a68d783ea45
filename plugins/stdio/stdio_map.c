/* stdio_map.c: a small open-addressing map from interned pointers (stream keys) to counters. The
 * reader keeps seq per key and round-robin per group and key in it, the writer seq per key. */
#include "stdio_internal.h"

static size_t map_hash(const void *p, size_t mask) {
  uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
  return (size_t)(h >> 32) & mask;
}

/* The counter for key, created at 0. NULL only when out of memory. */
uint64_t *stdio_map_get(stdio_map_t *m, const void *key) {
  if (m->cap != 0) {
    size_t i = map_hash(key, m->cap - 1);
    while (m->slots[i].key != NULL) {
      if (m->slots[i].key == key)
        return &m->slots[i].val;
      i = (i + 1) & (m->cap - 1);
    }
  }
  if ((m->len + 1) * 2 > m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    stdio_slot_t *s = sea_host->calloc(cap, sizeof *s);
    if (s == NULL)
      return NULL;
    for (size_t j = 0; j < m->cap; j++) {
      if (m->slots[j].key == NULL)
        continue;
      size_t i = map_hash(m->slots[j].key, cap - 1);
      while (s[i].key != NULL)
        i = (i + 1) & (cap - 1);
      s[i] = m->slots[j];
    }
    sea_host->free(m->slots);
    m->slots = s;
    m->cap = cap;
  }
  size_t i = map_hash(key, m->cap - 1);
  while (m->slots[i].key != NULL)
    i = (i + 1) & (m->cap - 1);
  m->slots[i].key = key;
  m->slots[i].val = 0;
  m->len++;
  return &m->slots[i].val;
}

void stdio_map_free(stdio_map_t *m) {
  sea_host->free(m->slots);
  m->slots = NULL;
  m->cap = m->len = 0;
}
