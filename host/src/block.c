/* block.c: reference-counted byte blocks, byte slices, batches and kept messages. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

struct sea_block {
  atomic_size_t refs;
  size_t size;
  uint8_t data[]; /* the bytes follow the header in one allocation */
};

/* Large blocks that are let go are kept for the next sea_block_new of the same size, a few of
 * them: readers take a fresh block per chunk (stdio: 256 KiB), and handing each back to malloc
 * made glibc map and unmap memory, or grow and trim its heap, for every chunk: a quarter of a
 * stdio relay's time went to page faults. Blocks may be released on any thread: a mutex. */
#define BLOCK_CACHE_MIN (64u * 1024u)
#define BLOCK_CACHE_SLOTS 8
#if defined(__SANITIZE_ADDRESS__)
/* Under AddressSanitizer every block is freed, so a use after the last unref is still caught. */
#define BLOCK_CACHE_ON 0
#else
#define BLOCK_CACHE_ON 1
#endif
static pthread_mutex_t block_cache_mu = PTHREAD_MUTEX_INITIALIZER;
static sea_block_t *block_cache[BLOCK_CACHE_SLOTS];
static size_t block_cached;

static sea_block_t *cache_take(size_t size) {
  sea_block_t *b = NULL;
  if (!BLOCK_CACHE_ON)
    return NULL;
  pthread_mutex_lock(&block_cache_mu);
  for (size_t i = block_cached; i-- > 0;)
    if (block_cache[i]->size == size) {
      b = block_cache[i];
      block_cache[i] = block_cache[--block_cached];
      break;
    }
  pthread_mutex_unlock(&block_cache_mu);
  return b;
}

static int cache_put(sea_block_t *b) {
  int kept = 0;
  if (!BLOCK_CACHE_ON)
    return 0;
  pthread_mutex_lock(&block_cache_mu);
  if (block_cached < BLOCK_CACHE_SLOTS) {
    block_cache[block_cached++] = b;
    kept = 1;
  }
  pthread_mutex_unlock(&block_cache_mu);
  return kept;
}

/* When the library is unloaded (or the program ends): give the cached blocks back. */
__attribute__((destructor)) static void block_cache_free(void) {
  pthread_mutex_lock(&block_cache_mu);
  while (block_cached > 0)
    sea__free(block_cache[--block_cached]);
  pthread_mutex_unlock(&block_cache_mu);
}

sea_block_t *sea_block_new(size_t size) {
  if (size > SIZE_MAX - sizeof(sea_block_t))
    return NULL;
  sea_block_t *b = size >= BLOCK_CACHE_MIN ? cache_take(size) : NULL;
  if (b == NULL)
    b = sea__malloc(sizeof *b + size);
  if (b == NULL)
    return NULL;
  atomic_init(&b->refs, 1);
  b->size = size;
  return b;
}

sea_block_t *sea_block_ref(sea_block_t *b) {
  if (b != NULL)
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  return b;
}

void sea_block_unref(sea_block_t *b) {
  if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
    if (b->size < BLOCK_CACHE_MIN || !cache_put(b))
      sea__free(b);
  }
}

uint8_t *sea_block_data(sea_block_t *b) {
  return b->data;
}
size_t sea_block_size(const sea_block_t *b) {
  return b->size;
}

int sea_bytes_slice(const sea_bytes_t *src, size_t off, size_t len, sea_bytes_t *out) {
  if (src == NULL || out == NULL || off > src->len || len > src->len - off)
    return SEA_EINVAL;
  out->data = src->data + off;
  out->len = len;
  out->block = sea_block_ref(src->block);
  return 0;
}

int sea_bytes_copy(const void *data, size_t len, sea_bytes_t *out) {
  sea_block_t *b = sea_block_new(len);
  if (b == NULL)
    return SEA_ENOMEM;
  if (len)
    memcpy(b->data, data, len);
  out->data = b->data;
  out->len = len;
  out->block = b;
  return 0;
}

void sea_bytes_release(sea_bytes_t *b) {
  if (b == NULL)
    return;
  sea_block_unref(b->block);
  b->block = NULL;
  b->data = NULL;
  b->len = 0;
}

/* A batch and its message array in one allocation; the public struct comes first so a
 * `const sea_batch_t *` converts back. */
typedef struct batch {
  sea_batch_t pub;
  atomic_size_t refs;
  size_t cap;
  sea_message_t msgs[];
} batch_t;

sea_batch_t *sea__batch_new(size_t cap) {
  if (cap == 0)
    cap = 1;
  if (cap > (SIZE_MAX - sizeof(batch_t)) / sizeof(sea_message_t))
    return NULL;
  batch_t *b = sea__malloc(sizeof *b + cap * sizeof(sea_message_t));
  if (b == NULL)
    return NULL;
  b->pub.msgs = b->msgs;
  b->pub.count = 0;
  b->cap = cap;
  atomic_init(&b->refs, 1);
  return &b->pub;
}

void sea_batch_retain(const sea_batch_t *pub) {
  batch_t *b = (batch_t *)(uintptr_t)pub;
  atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void sea_batch_release(const sea_batch_t *pub) {
  if (pub == NULL)
    return;
  batch_t *b = (batch_t *)(uintptr_t)pub;
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
    return;
  for (size_t i = 0; i < b->pub.count; i++)
    sea_block_unref(b->msgs[i].payload.block);
  sea__free(b);
}

sea_message_t *sea_message_dup(const sea_message_t *m) {
  sea_message_t *d = sea__malloc(sizeof *d);
  if (d == NULL)
    return NULL;
  *d = *m;
  sea_block_ref(d->payload.block);
  return d;
}

size_t sea_message_extent(const sea_message_t *m) {
  size_t need = m->payload.len + m->key_len + m->header_count * sizeof(sea_kv_t);
  for (size_t i = 0; i < m->header_count; i++)
    need += m->headers[i].name_len + (m->headers[i].value ? m->headers[i].value_len : 0);
  return need;
}

void sea_message_copy_to(const sea_message_t *m, sea_message_t *out, void *buf) {
  sea_kv_t *kv = buf;
  uint8_t *w = (uint8_t *)(kv + m->header_count);
  *out = *m;
  for (size_t i = 0; i < m->header_count; i++) {
    kv[i] = m->headers[i];
    if (m->headers[i].name_len)
      memcpy(w, m->headers[i].name, m->headers[i].name_len);
    kv[i].name = (const char *)w;
    w += m->headers[i].name_len;
    if (m->headers[i].value != NULL) {
      if (m->headers[i].value_len)
        memcpy(w, m->headers[i].value, m->headers[i].value_len);
      kv[i].value = w;
      w += m->headers[i].value_len;
    }
  }
  out->headers = m->header_count ? kv : NULL;
  if (m->key != NULL) {
    if (m->key_len)
      memcpy(w, m->key, m->key_len);
    out->key = w;
    w += m->key_len;
  }
  if (m->payload.len)
    memcpy(w, m->payload.data, m->payload.len);
  out->payload.data = w;
  out->payload.block = NULL;
}

void sea_message_free(sea_message_t *m) {
  if (m == NULL)
    return;
  sea_block_unref(m->payload.block);
  sea__free(m);
}
