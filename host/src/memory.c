/* memory.c: the allocator the host uses and lends to plugins. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void *sea__malloc(size_t n) {
  return malloc(n ? n : 1);
}
void *sea__calloc(size_t n, size_t size) {
  return calloc(n ? n : 1, size ? size : 1);
}
void *sea__realloc(void *p, size_t n) {
  return realloc(p, n ? n : 1);
}
void sea__free(void *p) {
  free(p);
}

char *sea__strndup(const char *s, size_t n) {
  char *d = sea__malloc(n + 1);
  if (d == NULL)
    return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *sea__strdup(const char *s) {
  return s ? sea__strndup(s, strlen(s)) : NULL;
}
