/* options.c: key=value option lists, the parsing of values the host itself reads, and the
 * option tables plugins declare (ABI 1.4): the loader's check of a table, the check of a
 * connect's or an open's options against it, and the typed getters of the host table. */
#include <inttypes.h>
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
  /* Set by sea__options_backend when it has checked these against a plugin's table: what the
   * getters read the defaults and types from. */
  const sea_option_spec_t *spec;
  const char *plugin;
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

static int u64_of(const char *s, uint64_t *out);

/* The host's keys and the plugins' tables share one parse (u64_of, below). */
int sea__parse_u64(const char *s, uint64_t *out) {
  return u64_of(s, out) == 0 ? 0 : SEA_EOPTION;
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

static void spec_known(const sea_option_spec_t *t, char *out, size_t size);

void sea__option_unknown(sea_runtime_t *rt, const char *plugin, const char *key,
                         const char *known) {
  char near[64];
  char common[256];
  size_t o = 0;
  common[0] = '\0';
  for (size_t i = 0; i < SEA__ARRAY_LEN(common_keys) && o < sizeof common; i++)
    o += (size_t)snprintf(common + o, sizeof common - o, "%s%s", i ? ", " : "", common_keys[i]);
  char table[1024];
  if (known == NULL) {
    /* The plugin's declared table (ABI 1.4): kafka refusing a key librdkafka does not know. */
    const sea_option_spec_t *t = NULL;
    for (size_t i = 0; t == NULL && i < rt->plugin_count; i++)
      if (!rt->plugins[i].refused && strcmp(rt->plugins[i].desc.name, plugin) == 0)
        t = sea__plugin_options(&rt->plugins[i].desc);
    if (t != NULL) {
      spec_known(t, table, sizeof table);
      known = table;
    }
  }
  bool has_near = sea__option_nearest(key, known, near, sizeof near);
  sea__rt_err(rt, SEA_EOPTION, "%s: unknown option '%s'%s%s%s (common keys: %s; %s keys: %s)",
              plugin, key, has_near ? ": did you mean '" : "", has_near ? near : "",
              has_near ? "'?" : "", common, plugin, known && *known ? known : "none");
}

/* ---- plugin option tables (ABI 1.4) ---- */

/* A table's entries are laid out by the plugin's header: the entry may not change size in 1.x. */
_Static_assert(sizeof(sea_option_spec_t) == 3 * sizeof(uint64_t) + 8 * sizeof(void *) ||
                   sizeof(void *) != 8,
               "sea_option_spec_t layout changed");

/* The plugin's table, or NULL: only a plugin of ABI 1.4 or later has the member. */
const sea_option_spec_t *sea__plugin_options(const sea_plugin_t *d) {
  return d->abi_minor >= 4 ? d->options : NULL;
}

static bool is_pattern(const sea_option_spec_t *e) {
  size_t n = strlen(e->key);
  return n > 0 && e->key[n - 1] == '*';
}

/* The entry for key: its own, else the first pattern that takes it; NULL if none does. */
static const sea_option_spec_t *spec_find(const sea_option_spec_t *t, const char *key) {
  const sea_option_spec_t *pat = NULL;
  for (; t && t->key; t++) {
    if (!is_pattern(t)) {
      if (strcmp(t->key, key) == 0)
        return t;
    } else if (pat == NULL && strncmp(t->key, key, strlen(t->key) - 1) == 0) {
      pat = t;
    }
  }
  return pat;
}

/* Every key of the table, ", "-separated, then the patterns' help in parentheses: the `known`
 * text of sea__option_unknown. */
static void spec_known(const sea_option_spec_t *t, char *out, size_t size) {
  size_t o = 0;
  out[0] = '\0';
  for (const sea_option_spec_t *e = t; e->key && o < size; e++)
    if (!is_pattern(e))
      o += (size_t)snprintf(out + o, size - o, "%s%s", o ? ", " : "", e->key);
  for (const sea_option_spec_t *e = t; e->key && o < size; e++) {
    if (!is_pattern(e))
      continue;
    bool all = strcmp(e->key, "*") == 0;
    o += (size_t)snprintf(out + o, size - o, "%s(and %s%s%s)", o ? " " : "", all ? "" : e->key,
                          all ? "" : ": ", e->help ? e->help : "other keys");
  }
}

/* 0 and *out, -1 if s is not a decimal number, 1 if it is one above UINT64_MAX. */
static int u64_of(const char *s, uint64_t *out) {
  uint64_t v = 0;
  int over = 0;
  if (s == NULL || *s == '\0')
    return -1;
  for (; *s; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (d > 9)
      return -1;
    if (v > (UINT64_MAX - d) / 10)
      over = 1;
    else
      v = v * 10 + d;
  }
  if (!over)
    *out = v;
  return over;
}

static uint64_t spec_max(const sea_option_spec_t *e) {
  return e->max ? e->max : UINT64_MAX;
}

/* Index of v among e->values ("a|b|c"), or -1. */
static int enum_index(const sea_option_spec_t *e, const char *v) {
  size_t vl = strlen(v);
  int i = 0;
  for (const char *p = e->values; p && *p; i++) {
    size_t n = strcspn(p, "|");
    if (n == vl && memcmp(p, v, n) == 0)
      return i;
    p += n;
    p += *p == '|';
  }
  return -1;
}

/* "a, b or c" from "a|b|c". */
static void enum_words(const char *values, char *out, size_t size) {
  size_t o = 0, words = 0;
  out[0] = '\0';
  for (const char *p = values; *p; p++)
    words += *p == '|';
  size_t w = 0;
  for (const char *p = values; *p && o < size; w++) {
    size_t n = strcspn(p, "|");
    const char *sep = w == 0 ? "" : w == words ? " or " : ", ";
    o += (size_t)snprintf(out + o, size - o, "%s%.*s", sep, (int)n, p);
    p += n;
    p += *p == '|';
  }
}

/* Checks v against e; 0, or SEA_EOPTION with what is wrong in why ("below the minimum 1"). */
static int value_check(const sea_option_spec_t *e, const char *v, char *why, size_t size) {
  uint64_t n = 0, max = spec_max(e);
  bool b;
  switch (e->type) {
  case SEA_OPT_U64:
  case SEA_OPT_MS: {
    const char *unit = e->type == SEA_OPT_MS ? " ms" : "";
    int r = u64_of(v, &n);
    if (r < 0) {
      const char *what = e->type == SEA_OPT_MS ? "a number of milliseconds" : "a whole number";
      if (e->min == 0 && max == UINT64_MAX)
        return sea__errf(why, size, SEA_EOPTION, "expected %s", what);
      if (max == UINT64_MAX)
        return sea__errf(why, size, SEA_EOPTION, "expected %s, at least %" PRIu64, what, e->min);
      return sea__errf(why, size, SEA_EOPTION, "expected %s from %" PRIu64 " to %" PRIu64, what,
                       e->min, max);
    }
    if (r > 0 || n > max)
      return sea__errf(why, size, SEA_EOPTION, "above the maximum %" PRIu64 "%s", max, unit);
    if (n < e->min)
      return sea__errf(why, size, SEA_EOPTION, "below the minimum %" PRIu64 "%s", e->min, unit);
    return 0;
  }
  case SEA_OPT_BOOL:
    if (sea__parse_bool(v, &b) != 0)
      return sea__errf(why, size, SEA_EOPTION, "expected true or false");
    return 0;
  case SEA_OPT_ENUM:
    if (enum_index(e, v) < 0) {
      char words[256];
      enum_words(e->values, words, sizeof words);
      return sea__errf(why, size, SEA_EOPTION, "expected %s", words);
    }
    return 0;
  case SEA_OPT_STR:
    n = strlen(v);
    if (n < e->min || n > max) {
      if (max == UINT64_MAX)
        return sea__errf(why, size, SEA_EOPTION, "expected at least %" PRIu64 " bytes", e->min);
      return sea__errf(why, size, SEA_EOPTION, "expected %" PRIu64 " to %" PRIu64 " bytes", e->min,
                       max);
    }
    return 0;
  default:
    return sea__errf(why, size, SEA_EOPTION, "unknown option type %u", (unsigned)e->type);
  }
}

int sea__option_table_check(const sea_plugin_t *d, char *why, size_t size) {
  enum { MAX_ENTRIES = 256 };
  const sea_option_spec_t *t = sea__plugin_options(d);
  char bad[160];
  for (size_t i = 0; t && t[i].key; i++) {
    const sea_option_spec_t *e = &t[i];
    size_t kl = strlen(e->key);
    if (i == MAX_ENTRIES)
      return sea__errf(why, size, SEA_EPLUGIN,
                       "plugin '%s': its option table has no end (no entry with key NULL in %d)",
                       d->name, MAX_ENTRIES);
    if (!(is_pattern(e) ? kl == 1 || key_ok(e->key, kl - 1) : key_ok(e->key, kl)))
      return sea__errf(why, size, SEA_EPLUGIN, "plugin '%s': option key '%s' is not valid", d->name,
                       e->key);
    for (size_t j = 0; j < i; j++)
      if (strcmp(t[j].key, e->key) == 0)
        return sea__errf(why, size, SEA_EPLUGIN, "plugin '%s': option '%s' is declared twice",
                         d->name, e->key);
    if (e->type < SEA_OPT_U64 || e->type > SEA_OPT_STR ||
        (e->type == SEA_OPT_ENUM && (e->values == NULL || e->values[0] == '\0')) ||
        (e->flags & ~(uint32_t)(SEA_OPT_PRODUCER | SEA_OPT_CONSUMER)) != 0 || e->min > spec_max(e))
      return sea__errf(why, size, SEA_EPLUGIN,
                       "plugin '%s': option '%s' has a bad type, flags, range or values", d->name,
                       e->key);
    if (e->def != NULL && !is_pattern(e) && value_check(e, e->def, bad, sizeof bad) != 0)
      return sea__errf(why, size, SEA_EPLUGIN, "plugin '%s': option '%s': default '%s': %s",
                       d->name, e->key, e->def, bad);
  }
  return 0;
}

/* A value's one-line refusal: "redis: option block_ms=0: below the minimum 1 ms". */
static int refuse_value(sea_runtime_t *rt, const char *plugin, const char *key, const char *v,
                        const char *why) {
  return sea__rt_err(rt, SEA_EOPTION, "%s: option %s=%s: %s", plugin, key, v, why);
}

int sea__options_backend(sea_runtime_t *rt, const sea_plugin_t *d, const sea_options_t *all,
                         unsigned use, sea_options_t **out) {
  const sea_option_spec_t *t = sea__plugin_options(d);
  sea_options_t *b = sea_options_new();
  *out = NULL;
  if (b == NULL)
    return SEA_ENOMEM;
  for (size_t i = 0; all && i < all->len; i++) {
    const char *k = all->items[i].key, *v = all->items[i].value;
    if (sea__option_is_common(k))
      continue;
    const sea_option_spec_t *e = t ? spec_find(t, k) : NULL;
    int rc = 0;
    char why[160];
    if (t != NULL && e == NULL) {
      char known[1024];
      spec_known(t, known, sizeof known);
      sea__option_unknown(rt, d->name, k, known);
      rc = SEA_EOPTION;
    } else if (e != NULL && e->flags != 0 && use != 0 && (e->flags & use) == 0) {
      bool prod = e->flags & SEA_OPT_PRODUCER;
      rc = sea__rt_err(rt, SEA_EOPTION, "%s: option %s is for %s, not %s%s%s%s", d->name, k,
                       prod ? "producers" : "consumers", prod ? "consumers" : "producers",
                       e->help ? " (" : "", e->help ? e->help : "", e->help ? ")" : "");
    } else if (e != NULL && !is_pattern(e) && value_check(e, v, why, sizeof why) != 0) {
      rc = refuse_value(rt, d->name, k, v, why);
    } else {
      rc = sea_options_set(b, k, v);
    }
    if (rc != 0) {
      sea_options_free(b);
      return rc;
    }
  }
  b->spec = t;
  b->plugin = d->name;
  *out = b;
  return 0;
}

/* ---- the host table's getters ---- */

/* The text of key (given, else the default) if the table declares it with one of the types; the
 * entry in *e. A plugin asking for a key it did not declare is a bug: said once per call. */
static const char *opt_text(const sea_options_t *o, const char *key, uint32_t t1, uint32_t t2,
                            const sea_option_spec_t **e) {
  *e = o && o->spec ? spec_find(o->spec, key) : NULL;
  if (*e == NULL || is_pattern(*e) || ((*e)->type != t1 && (*e)->type != t2)) {
    sea__log(SEA_LOG_ERROR, o && o->plugin ? o->plugin : "?",
             "option '%s' is read as a type its option table does not declare it with", key);
    *e = NULL;
    return NULL;
  }
  const char *v = sea_options_get(o, key);
  return v ? v : (*e)->def;
}

uint64_t sea__option_u64(const sea_options_t *o, const char *key) {
  const sea_option_spec_t *e;
  const char *v = opt_text(o, key, SEA_OPT_U64, SEA_OPT_MS, &e);
  uint64_t n = 0;
  if (v != NULL && u64_of(v, &n) != 0 && (e->def == NULL || u64_of(e->def, &n) != 0))
    n = 0;
  return n;
}

int sea__option_bool(const sea_options_t *o, const char *key) {
  const sea_option_spec_t *e;
  const char *v = opt_text(o, key, SEA_OPT_BOOL, SEA_OPT_STR, &e);
  bool b;
  if (v != NULL && sea__parse_bool(v, &b) == 0)
    return b;
  return e != NULL && e->type == SEA_OPT_STR ? -1 : 0;
}

int sea__option_enum(const sea_options_t *o, const char *key) {
  const sea_option_spec_t *e;
  const char *v = opt_text(o, key, SEA_OPT_ENUM, SEA_OPT_ENUM, &e);
  int i = v ? enum_index(e, v) : -1;
  if (i < 0 && e != NULL && e->def != NULL)
    i = enum_index(e, e->def);
  return i < 0 ? 0 : i;
}

const char *sea__option_str(const sea_options_t *o, const char *key) {
  const sea_option_spec_t *e;
  return opt_text(o, key, SEA_OPT_STR, SEA_OPT_ENUM, &e);
}

/* ---- listing a plugin's table (`seastreamer plugins --options`) ---- */

/* Appends to buf as snprintf would, tracking the length wanted in *o. */
static void put(char *buf, size_t size, size_t *o, const char *fmt, ...) SEA__PRINTF(4, 5);
static void put(char *buf, size_t size, size_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(*o < size ? buf + *o : NULL, *o < size ? size - *o : 0, fmt, ap);
  va_end(ap);
  if (n > 0)
    *o += (size_t)n;
}

/* One entry: "  block_ms=MS  consumer: BLOCK of XREAD/XREADGROUP (at least 1; default 500)". */
static void put_entry(char *buf, size_t size, size_t *o, const sea_option_spec_t *e) {
  static const char *const value[] = {"", "N", "MS", "true|false", "", "TEXT"};
  if (is_pattern(e)) {
    put(buf, size, o, "  %s=VALUE  %s (passed through)\n",
        strcmp(e->key, "*") == 0 ? "OTHER" : e->key, e->help ? e->help : "other keys");
    return;
  }
  /* The remarks in parentheses: the range, the default, the side. */
  char notes[160];
  size_t n = 0;
  uint64_t max = spec_max(e);
  const char *unit = e->type == SEA_OPT_STR ? " bytes" : "";
  notes[0] = '\0';
  if (e->type != SEA_OPT_BOOL && e->type != SEA_OPT_ENUM && max < UINT64_MAX)
    put(notes, sizeof notes, &n, "%" PRIu64 " to %" PRIu64 "%s", e->min, max, unit);
  else if (e->type == SEA_OPT_STR && e->min == 1)
    put(notes, sizeof notes, &n, "not empty");
  else if (e->type != SEA_OPT_BOOL && e->type != SEA_OPT_ENUM && e->min > 0)
    put(notes, sizeof notes, &n, "at least %" PRIu64 "%s", e->min, unit);
  if (e->def != NULL)
    put(notes, sizeof notes, &n, "%sdefault %s", n ? "; " : "", e->def[0] ? e->def : "empty");
  if (e->flags == SEA_OPT_PRODUCER || e->flags == SEA_OPT_CONSUMER)
    put(notes, sizeof notes, &n, "%s%s only", n ? "; " : "",
        e->flags == SEA_OPT_PRODUCER ? "producers" : "consumers");
  put(buf, size, o, "  %s=%s  %s%s%s%s\n", e->key,
      e->type == SEA_OPT_ENUM ? e->values : value[e->type], e->help ? e->help : "",
      notes[0] ? " (" : "", notes, notes[0] ? ")" : "");
}

int sea_runtime_plugin_options(sea_runtime_t *rt, size_t i, char *buf, size_t size) {
  sea__plugins_ensure(rt);
  if (i >= rt->plugin_count)
    return SEA_EINVAL;
  const sea__plugin_t *p = &rt->plugins[i];
  const sea_option_spec_t *t = p->refused ? NULL : sea__plugin_options(&p->desc);
  if (t == NULL)
    return SEA_ENOTSUP;
  size_t o = 0;
  if (size > 0)
    buf[0] = '\0';
  for (; t->key; t++)
    put_entry(buf, size, &o, t);
  return o > INT32_MAX ? INT32_MAX : (int)o;
}
