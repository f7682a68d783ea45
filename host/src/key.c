/* key.c: stream key rules and the process-wide table that interns keys. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static bool key_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

int sea_stream_key_valid(const char *key, size_t len) {
  if (key == NULL || len == 0 || len > SEA_STREAM_KEY_MAX)
    return 0;
  for (size_t i = 0; i < len; i++)
    if (!key_char((unsigned char)key[i]))
      return 0;
  return 1;
}

void sea__key_why(char *buf, size_t n, const char *key, size_t len) {
  if (len > SEA_STREAM_KEY_MAX)
    snprintf(buf, n, "stream key of %zu bytes (the limit is %d)", len, SEA_STREAM_KEY_MAX);
  else
    snprintf(buf, n, "invalid stream key '%.*s' (keys are 1 to %d of A-Z a-z 0-9 . _ -)", (int)len,
             key, SEA_STREAM_KEY_MAX);
}

/* Keys are few (topics, not messages) and live for the whole process, so an open-addressing
 * table that only grows is enough. A mutex guards it because plugins with threads of their own
 * (librdkafka) may intern from those threads; the hot path caches the returned pointer. */
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static char **table;
static size_t table_cap, table_len;

static uint64_t hash_key(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static int grow(void) {
  size_t cap = table_cap ? table_cap * 2 : 64;
  char **t = sea__calloc(cap, sizeof *t);
  if (t == NULL)
    return SEA_ENOMEM;
  for (size_t i = 0; i < table_cap; i++) {
    if (table[i] == NULL)
      continue;
    size_t j = hash_key(table[i], strlen(table[i])) & (cap - 1);
    while (t[j] != NULL)
      j = (j + 1) & (cap - 1);
    t[j] = table[i];
  }
  sea__free(table);
  table = t;
  table_cap = cap;
  return 0;
}

const char *sea_stream_key(const char *key, size_t len, int *err) {
  if (!sea_stream_key_valid(key, len)) {
    if (err)
      *err = SEA_EKEY;
    return NULL;
  }
  const char *found = NULL;
  pthread_mutex_lock(&table_lock);
  if ((table_len + 1) * 2 > table_cap && grow() != 0)
    goto out;
  size_t j = hash_key(key, len) & (table_cap - 1);
  while (table[j] != NULL) {
    if (strncmp(table[j], key, len) == 0 && table[j][len] == '\0') {
      found = table[j];
      goto out;
    }
    j = (j + 1) & (table_cap - 1);
  }
  table[j] = sea__strndup(key, len);
  if (table[j] != NULL) {
    table_len++;
    found = table[j];
  }
out:
  pthread_mutex_unlock(&table_lock);
  if (found == NULL && err)
    *err = SEA_ENOMEM;
  return found;
}
