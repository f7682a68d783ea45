/* list_rows.h: what the backends' listings (sea_plugin_t.list) share: rows gathered on a worker
 * thread and sent on the loop thread afterwards, and the list of a streamer's listings still
 * running, which its disconnect abandons. Header-only (static functions): each plugin is its own
 * .so, and several may be linked into one program. Plain malloc: nothing here reaches the host.
 */
#ifndef SEA_PLUGIN_LIST_ROWS_H
#define SEA_PLUGIN_LIST_ROWS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <seastreamer/plugin.h>

#if defined(__GNUC__)
#define LR_UNUSED __attribute__((unused))
#else
#define LR_UNUSED
#endif

/* Rows and the strings they point at. */
typedef struct lrows {
  sea_list_row_t *v;
  size_t n, cap;
  char **strs;
  size_t ns, scap;
  int oom;
} lrows_t;

/* A new row of kind, every field unknown. Valid until the next lrows_add. NULL when out of
 * memory (and rows->oom is set). */
static LR_UNUSED sea_list_row_t *lrows_add(lrows_t *rows, sea_list_kind_t kind) {
  if (rows->n == rows->cap) {
    size_t cap = rows->cap ? rows->cap * 2 : 32;
    sea_list_row_t *v = realloc(rows->v, cap * sizeof *v);
    if (v == NULL) {
      rows->oom = 1;
      return NULL;
    }
    rows->v = v;
    rows->cap = cap;
  }
  sea_list_row_t *r = &rows->v[rows->n++];
  sea_list_row_init(r, kind);
  return r;
}

/* A copy of s[0..len) kept with the rows (NULL when out of memory). */
static LR_UNUSED const char *lrows_strn(lrows_t *rows, const char *s, size_t len) {
  if (s == NULL)
    return NULL;
  if (rows->ns == rows->scap) {
    size_t cap = rows->scap ? rows->scap * 2 : 64;
    char **v = realloc(rows->strs, cap * sizeof *v);
    if (v == NULL) {
      rows->oom = 1;
      return NULL;
    }
    rows->strs = v;
    rows->scap = cap;
  }
  char *d = malloc(len + 1);
  if (d == NULL) {
    rows->oom = 1;
    return NULL;
  }
  memcpy(d, s, len);
  d[len] = '\0';
  rows->strs[rows->ns++] = d;
  return d;
}

static LR_UNUSED const char *lrows_str(lrows_t *rows, const char *s) {
  return s ? lrows_strn(rows, s, strlen(s)) : NULL;
}

static LR_UNUSED void lrows_emit(const lrows_t *rows, const sea_list_args_t *a) {
  for (size_t i = 0; i < rows->n; i++)
    a->emit(a->ctx, &rows->v[i]);
}

static LR_UNUSED void lrows_free(lrows_t *rows) {
  for (size_t i = 0; i < rows->ns; i++)
    free(rows->strs[i]);
  free(rows->strs);
  free(rows->v);
  memset(rows, 0, sizeof *rows);
}

/* A stream key: 1 to SEA_STREAM_KEY_MAX bytes of A-Z a-z 0-9 . _ - (the host's rule; a plugin
 * does not link the host's library). */
static LR_UNUSED int lrows_key_valid(const char *key, size_t len) {
  if (len == 0 || len > SEA_STREAM_KEY_MAX)
    return 0;
  for (size_t i = 0; i < len; i++) {
    char c = key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return 0;
  }
  return 1;
}

/* Is key one of the keys asked for (all when there are none)? */
static LR_UNUSED int lrows_wanted(const sea_list_args_t *a, const char *key, size_t len) {
  if (a->key_count == 0)
    return 1;
  for (size_t i = 0; i < a->key_count; i++)
    if (strlen(a->keys[i]) == len && memcmp(a->keys[i], key, len) == 0)
      return 1;
  return 0;
}

/* A listing running on a worker thread. The streamer keeps the running ones in a list; its
 * disconnect abandons them (op = NULL), and the after-work callback then only frees. The job
 * owns a copy of what it needs (args with its keys), so nothing of the streamer outlives it. */
typedef struct ljob {
  struct ljob *next, **prevp; /* in the streamer's list while attached */
  const sea_host_t *host;
  sea_op_t *op;
  sea_list_args_t args; /* keys point into key_store */
  char **key_store;
  lrows_t rows;
  int status;
  char errmsg[400];
  void *data; /* the backend's own part */
} ljob_t;

static LR_UNUSED ljob_t *ljob_new(const sea_host_t *host, const sea_list_args_t *a, sea_op_t *op,
                                  ljob_t **list) {
  ljob_t *j = calloc(1, sizeof *j);
  if (j == NULL)
    return NULL;
  j->host = host;
  j->op = op;
  j->args = *a;
  j->args.keys = NULL;
  if (a->key_count > 0) {
    j->key_store = calloc(a->key_count, sizeof *j->key_store);
    if (j->key_store == NULL) {
      free(j);
      return NULL;
    }
    for (size_t i = 0; i < a->key_count; i++) {
      size_t n = strlen(a->keys[i]) + 1;
      j->key_store[i] = malloc(n);
      if (j->key_store[i] == NULL) {
        for (size_t k = 0; k < i; k++)
          free(j->key_store[k]);
        free(j->key_store);
        free(j);
        return NULL;
      }
      memcpy(j->key_store[i], a->keys[i], n);
    }
    j->args.keys = (const char *const *)j->key_store;
  }
  j->next = *list;
  if (*list)
    (*list)->prevp = &j->next;
  j->prevp = list;
  *list = j;
  return j;
}

static LR_UNUSED void ljob_fail(ljob_t *j, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static LR_UNUSED void ljob_fail(ljob_t *j, int status, const char *fmt, ...) {
  if (j->status != 0)
    return; /* the first failure says it */
  j->status = status;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(j->errmsg, sizeof j->errmsg, fmt, ap);
  va_end(ap);
}

static LR_UNUSED void ljob_detach(ljob_t *j) {
  if (j->prevp == NULL)
    return;
  *j->prevp = j->next;
  if (j->next)
    j->next->prevp = j->prevp;
  j->prevp = NULL;
  j->next = NULL;
}

/* disconnect: the listings still running complete nothing. */
static LR_UNUSED void ljob_abandon_all(ljob_t **list) {
  while (*list) {
    ljob_t *j = *list;
    j->op = NULL;
    ljob_detach(j);
  }
}

/* On the loop thread, after the work: send the rows and complete (unless abandoned), then free. */
static LR_UNUSED void ljob_finish(ljob_t *j) {
  ljob_detach(j);
  if (j->op != NULL) {
    if (j->status == 0 && j->rows.oom)
      ljob_fail(j, SEA_ENOMEM, "list: out of memory");
    if (j->status == 0) {
      lrows_emit(&j->rows, &j->args);
      j->host->op_done(j->op, 0, NULL);
    } else {
      j->host->op_done(j->op, j->status, "%s", j->errmsg);
    }
  }
  lrows_free(&j->rows);
  for (size_t i = 0; i < j->args.key_count; i++)
    free(j->key_store[i]);
  free(j->key_store);
  free(j);
}

#endif
