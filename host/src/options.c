/* options.c: key=value option lists, and the parsing of values the host itself reads. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
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

/* Optimal string alignment distance: Levenshtein plus the swap of two neighbours, the commonest
 * typo ("strat"), as one edit. Keys are short; a longer one is simply "far". */
static size_t edit_distance(const char *a, const char *b) {
  enum { MAX = 64 };
  size_t n = strlen(a), m = strlen(b);
  if (n >= MAX || m >= MAX)
    return SIZE_MAX;
  size_t d[MAX + 1][MAX + 1];
  for (size_t i = 0; i <= n; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= m; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= n; i++) {
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v)
        v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v)
        v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[n][m];
}

/* Keep cand in best if it is nearer to key than *best_d and near enough to be a likely typo: at
 * most two edits, and about a third of the key's letters at most (3 * edits <= length + 1), so a
 * two-letter key is one edit from its match and "zz" does not "mean" "db". */
static void consider(const char *key, const char *cand, size_t cand_len, char *best,
                     size_t best_size, size_t *best_d) {
  char buf[64];
  if (cand_len == 0 || cand_len >= sizeof buf)
    return;
  memcpy(buf, cand, cand_len);
  buf[cand_len] = '\0';
  if (!key_ok(buf, cand_len))
    return; /* words of a free-text list ("any librdkafka property") */
  size_t d = edit_distance(key, buf);
  if (d == 0 || d > 2 || 3 * d > strlen(key) + 1 || d >= *best_d)
    return;
  *best_d = d;
  snprintf(best, best_size, "%s", buf);
}

int sea__option_nearest(const char *key, const char *known, char *out, size_t size) {
  size_t best_d = SIZE_MAX;
  out[0] = '\0';
  for (size_t i = 0; i < SEA__ARRAY_LEN(common_keys); i++)
    consider(key, common_keys[i], strlen(common_keys[i]), out, size, &best_d);
  /* known: the backend's keys, separated by commas and/or spaces; a remark in parentheses may
   * follow them. */
  for (const char *p = known; p && *p && *p != '(';) {
    size_t skip = strspn(p, ", ");
    p += skip;
    size_t len = strcspn(p, ", (");
    consider(key, p, len, out, size, &best_d);
    p += len;
  }
  return out[0] != '\0';
}

void sea__option_unknown(sea_runtime_t *rt, const char *plugin, const char *key,
                         const char *known) {
  char near[64];
  char common[256];
  size_t o = 0;
  common[0] = '\0';
  for (size_t i = 0; i < SEA__ARRAY_LEN(common_keys) && o < sizeof common; i++)
    o += (size_t)snprintf(common + o, sizeof common - o, "%s%s", i ? ", " : "", common_keys[i]);
  bool has_near = sea__option_nearest(key, known, near, sizeof near);
  sea__rt_err(rt, SEA_EOPTION, "%s: unknown option '%s'%s%s%s (common keys: %s; %s keys: %s)",
              plugin, key, has_near ? ": did you mean '" : "", has_near ? near : "",
              has_near ? "'?" : "", common, plugin, known && *known ? known : "none");
}
