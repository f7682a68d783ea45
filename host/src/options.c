/* options.c: key=value option lists, and the parsing of values the host itself reads. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct opt {
  char *key;
  char *value;
} opt_t;

struct sea_options {
  opt_t *items;
  size_t len, cap;
};

/* Keys the host reads; everything else is the backend's. */
static const char *const common_keys[] = {
    "mode",        "group",        "timeout",
    "reset",       "start",        "stop_at_end",
    "batch",       "max_inflight", "max_inflight_bytes",
    "max_payload",
};

bool sea__option_is_common(const char *key) {
  for (size_t i = 0; i < SEA__ARRAY_LEN(common_keys); i++)
    if (strcmp(key, common_keys[i]) == 0)
      return true;
  return false;
}

sea_options_t *sea_options_new(void) {
  return sea__calloc(1, sizeof(sea_options_t));
}

void sea_options_free(sea_options_t *o) {
  if (o == NULL)
    return;
  for (size_t i = 0; i < o->len; i++) {
    sea__free(o->items[i].key);
    sea__free(o->items[i].value);
  }
  sea__free(o->items);
  sea__free(o);
}

static bool key_ok(const char *k, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = k[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  }
  return true;
}

static int set_n(sea_options_t *o, const char *key, size_t klen, const char *value) {
  if (o == NULL || key == NULL || value == NULL)
    return SEA_EINVAL;
  if (!key_ok(key, klen))
    return SEA_EOPTION;
  char *v = sea__strdup(value);
  if (v == NULL)
    return SEA_ENOMEM;
  for (size_t i = 0; i < o->len; i++) {
    if (strlen(o->items[i].key) == klen && memcmp(o->items[i].key, key, klen) == 0) {
      sea__free(o->items[i].value);
      o->items[i].value = v;
      return 0;
    }
  }
  if (o->len == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 8;
    opt_t *items = sea__realloc(o->items, cap * sizeof *items);
    if (items == NULL) {
      sea__free(v);
      return SEA_ENOMEM;
    }
    o->items = items;
    o->cap = cap;
  }
  char *k = sea__strndup(key, klen);
  if (k == NULL) {
    sea__free(v);
    return SEA_ENOMEM;
  }
  o->items[o->len].key = k;
  o->items[o->len].value = v;
  o->len++;
  return 0;
}

int sea_options_set(sea_options_t *o, const char *key, const char *value) {
  if (key == NULL)
    return SEA_EINVAL;
  return set_n(o, key, strlen(key), value);
}

int sea_options_parse(sea_options_t *o, const char *kv) {
  if (o == NULL || kv == NULL)
    return SEA_EINVAL;
  const char *eq = strchr(kv, '=');
  if (eq == NULL)
    return SEA_EOPTION;
  return set_n(o, kv, (size_t)(eq - kv), eq + 1);
}

const char *sea_options_get(const sea_options_t *o, const char *key) {
  if (o == NULL || key == NULL)
    return NULL;
  for (size_t i = 0; i < o->len; i++)
    if (strcmp(o->items[i].key, key) == 0)
      return o->items[i].value;
  return NULL;
}

size_t sea_options_count(const sea_options_t *o) {
  return o ? o->len : 0;
}

int sea_options_at(const sea_options_t *o, size_t i, const char **key, const char **value) {
  if (o == NULL || i >= o->len)
    return SEA_EINVAL;
  if (key)
    *key = o->items[i].key;
  if (value)
    *value = o->items[i].value;
  return 0;
}

int sea__options_merge(sea_options_t *dst, const sea_options_t *src) {
  for (size_t i = 0; src && i < src->len; i++) {
    int rc = sea_options_set(dst, src->items[i].key, src->items[i].value);
    if (rc)
      return rc;
  }
  return 0;
}

int sea__parse_u64(const char *s, uint64_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return SEA_EOPTION;
  errno = 0;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end != '\0')
    return SEA_EOPTION;
  *out = v;
  return 0;
}

int sea__parse_bool(const char *s, bool *out) {
  if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "yes") == 0) {
    *out = true;
    return 0;
  }
  if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcmp(s, "no") == 0) {
    *out = false;
    return 0;
  }
  return SEA_EOPTION;
}
