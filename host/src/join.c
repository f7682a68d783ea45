/* join.c: the order of a joined pipeline (sea_pipeline_config_t.join): the messages of every
 * input in timestamp order, ties broken by stream key, then input index, then shard.
 *
 * A lane is what keeps an order of its own: one shard of one stream key of one input. Each lane
 * buffers its messages in delivery order, and the next message is the smallest of the lanes'
 * heads. It may go only once no lane could still deliver a smaller one: every lane that is not
 * ended has something buffered. A lane with nothing buffered is silent; the join waits for it
 * until it has been silent for the wait (since its last message arrived, or since it began to be
 * expected), and no message waits longer than the wait for silent lanes (since it arrived). An
 * input that delivered nothing yet is expected as a lane of its own (one per stream key its URI
 * names), so the start waits for it too. A message that sorts before one already released is
 * late: nothing can put it in its place any more, so it goes as soon as its lane lets it. */
#include <string.h>

#include "join.h"

#define NO_LANE SIZE_MAX

typedef struct lane {
  uint32_t input;
  bool expected; /* a stand-in: nothing of it came yet (key NULL: any key of the input) */
  bool ended;
  const char *key; /* interned */
  uint64_t shard;
  sea__jnode_t *head, *tail;
  uint64_t heard_ns; /* the arrival of its last message, or when it began to be expected */
} lane_t;

/* Where a message sorts. */
typedef struct jkey {
  int64_t ts;
  const char *key;
  uint32_t input;
  uint64_t shard;
} jkey_t;

struct sea__join {
  lane_t *lanes;
  size_t nlanes, cap;
  size_t last;   /* the lane of the last push: the next one is usually of the same lane */
  size_t picked; /* the lane of the last peek that returned a message */
  uint64_t wait_ns;
  size_t buffered;
  size_t *in_buffered; /* per input */
  size_t ninputs;
  bool released_any;
  jkey_t high; /* the greatest released */
};

static inline jkey_t key_of(const sea__jnode_t *n) {
  const sea_meta_t *mt = &n->m->meta;
  return (jkey_t){mt->timestamp_us, mt->stream_key, n->input, mt->shard_id};
}

static int cmp_key(const jkey_t *a, const jkey_t *b) {
  if (a->ts != b->ts)
    return a->ts < b->ts ? -1 : 1;
  if (a->key != b->key) { /* interned: equal keys are equal pointers */
    int c = strcmp(a->key ? a->key : "", b->key ? b->key : "");
    if (c != 0)
      return c;
  }
  if (a->input != b->input)
    return a->input < b->input ? -1 : 1;
  if (a->shard != b->shard)
    return a->shard < b->shard ? -1 : 1;
  return 0;
}

static inline int cmp_nodes(const sea__jnode_t *a, const sea__jnode_t *b) {
  const sea_meta_t *x = &a->m->meta, *y = &b->m->meta;
  if (x->timestamp_us != y->timestamp_us) /* the common case, without building keys */
    return x->timestamp_us < y->timestamp_us ? -1 : 1;
  jkey_t ka = key_of(a), kb = key_of(b);
  return cmp_key(&ka, &kb);
}

static inline bool is_late(const sea__join_t *j, const sea__jnode_t *n) {
  if (!j->released_any)
    return false;
  jkey_t k = key_of(n);
  return cmp_key(&k, &j->high) < 0;
}

sea__join_t *sea__join_new(size_t ninputs, uint64_t wait_ms) {
  sea__join_t *j = sea__calloc(1, sizeof *j);
  if (j == NULL)
    return NULL;
  j->in_buffered = sea__calloc(ninputs ? ninputs : 1, sizeof *j->in_buffered);
  if (j->in_buffered == NULL) {
    sea__free(j);
    return NULL;
  }
  j->ninputs = ninputs;
  j->wait_ns = wait_ms * 1000000u;
  j->last = j->picked = NO_LANE;
  return j;
}

void sea__join_free(sea__join_t *j) {
  if (j == NULL)
    return;
  sea__free(j->lanes);
  sea__free(j->in_buffered);
  sea__free(j);
}

static lane_t *lane_add(sea__join_t *j, uint32_t input, const char *key, uint64_t shard) {
  if (j->nlanes == j->cap) {
    size_t cap = j->cap ? j->cap * 2 : 8;
    lane_t *v = sea__realloc(j->lanes, cap * sizeof *v);
    if (v == NULL)
      return NULL;
    j->lanes = v;
    j->cap = cap;
  }
  lane_t *l = &j->lanes[j->nlanes++];
  memset(l, 0, sizeof *l);
  l->input = input;
  l->key = key;
  l->shard = shard;
  return l;
}

/* Indices move: the caches go. */
static void lane_remove(sea__join_t *j, size_t i) {
  j->lanes[i] = j->lanes[--j->nlanes];
  j->last = j->picked = NO_LANE;
}

int sea__join_expect(sea__join_t *j, uint32_t input, const char *const *keys, size_t nkeys,
                     uint64_t now_ns) {
  for (size_t k = 0; k < (nkeys ? nkeys : 1); k++) {
    lane_t *l = lane_add(j, input, nkeys ? keys[k] : NULL, 0);
    if (l == NULL)
      return SEA_ENOMEM;
    l->expected = true;
    l->heard_ns = now_ns;
  }
  return 0;
}

static lane_t *lane_find(sea__join_t *j, uint32_t input, const char *key, uint64_t shard) {
  if (j->last < j->nlanes) {
    lane_t *l = &j->lanes[j->last];
    if (l->input == input && l->key == key && l->shard == shard && !l->expected)
      return l;
  }
  for (size_t i = 0; i < j->nlanes; i++) {
    lane_t *l = &j->lanes[i];
    if (l->input == input && l->key == key && l->shard == shard && !l->expected) {
      j->last = i;
      return l;
    }
  }
  return NULL;
}

/* The lane of (input, key, shard); a new one takes the place of the input's stand-ins for it. */
static lane_t *lane_get(sea__join_t *j, uint32_t input, const char *key, uint64_t shard) {
  lane_t *l = lane_find(j, input, key, shard);
  if (l != NULL)
    return l;
  for (size_t i = j->nlanes; i-- > 0;) {
    lane_t *e = &j->lanes[i];
    if (e->expected && e->input == input && (e->key == NULL || e->key == key))
      lane_remove(j, i);
  }
  if ((l = lane_add(j, input, key, shard)) != NULL)
    j->last = (size_t)(l - j->lanes);
  return l;
}

int sea__join_push(sea__join_t *j, sea__jnode_t *n) {
  const sea_meta_t *mt = &n->m->meta;
  lane_t *l = lane_get(j, n->input, mt->stream_key, mt->shard_id);
  if (l == NULL)
    return SEA_ENOMEM;
  n->next = NULL;
  if (l->tail)
    l->tail->next = n;
  else
    l->head = n;
  l->tail = n;
  l->heard_ns = n->arrival_ns;
  j->buffered++;
  j->in_buffered[n->input]++;
  return is_late(j, n) ? 1 : 0;
}

void sea__join_end_input(sea__join_t *j, uint32_t input) {
  for (size_t i = j->nlanes; i-- > 0;) {
    lane_t *l = &j->lanes[i];
    if (l->input != input)
      continue;
    if (l->head == NULL)
      lane_remove(j, i);
    else
      l->ended = true;
  }
}

sea__jnode_t *sea__join_peek(sea__join_t *j, uint64_t now_ns, uint64_t *wake_ns) {
  lane_t *best = NULL;
  uint64_t oldest = UINT64_MAX, heard = 0;
  bool silent = false;
  *wake_ns = 0;
  j->picked = NO_LANE;
  for (size_t i = 0; i < j->nlanes; i++) {
    lane_t *l = &j->lanes[i];
    if (l->head != NULL) {
      if (best == NULL || cmp_nodes(l->head, best->head) < 0)
        best = l;
      if (l->head->arrival_ns < oldest)
        oldest = l->head->arrival_ns;
    } else if (!l->ended) {
      silent = true;
      if (l->heard_ns > heard)
        heard = l->heard_ns;
    }
  }
  if (best == NULL)
    return NULL;
  /* A silent lane could still send something smaller, unless it has been silent for the wait,
   * or the oldest message has waited that long; a late head cannot be put in its place anyway. */
  if (silent && !is_late(j, best->head)) {
    uint64_t due = (oldest < heard ? oldest : heard) + j->wait_ns;
    if (now_ns < due) {
      *wake_ns = due;
      return NULL;
    }
  }
  j->picked = (size_t)(best - j->lanes);
  return best->head;
}

void sea__join_pop(sea__join_t *j) {
  if (j->picked >= j->nlanes)
    return;
  lane_t *l = &j->lanes[j->picked];
  sea__jnode_t *n = l->head;
  l->head = n->next;
  if (l->head == NULL)
    l->tail = NULL;
  n->next = NULL;
  j->buffered--;
  j->in_buffered[n->input]--;
  if (l->head == NULL && l->ended)
    lane_remove(j, j->picked);
  j->picked = NO_LANE;
}

void sea__join_putback(sea__join_t *j, sea__jnode_t *n) {
  const sea_meta_t *mt = &n->m->meta;
  lane_t *l = lane_find(j, n->input, mt->stream_key, mt->shard_id);
  if (l == NULL) {
    /* Its lane ended and went with its last message: it comes back, ended. */
    if ((l = lane_add(j, n->input, mt->stream_key, mt->shard_id)) == NULL)
      return; /* cannot happen: the array only shrank since the pop */
    l->ended = true;
  }
  n->next = l->head;
  l->head = n;
  if (l->tail == NULL)
    l->tail = n;
  j->buffered++;
  j->in_buffered[n->input]++;
  j->picked = NO_LANE;
}

void sea__join_released(sea__join_t *j, const sea__jnode_t *n) {
  jkey_t k = key_of(n);
  if (!j->released_any || cmp_key(&k, &j->high) > 0) {
    j->high = k;
    j->released_any = true;
  }
}

size_t sea__join_buffered(const sea__join_t *j) {
  return j->buffered;
}

size_t sea__join_input_buffered(const sea__join_t *j, uint32_t input) {
  return input < j->ninputs ? j->in_buffered[input] : 0;
}

bool sea__join_input_silent(const sea__join_t *j, uint32_t input) {
  for (size_t i = 0; i < j->nlanes; i++) {
    const lane_t *l = &j->lanes[i];
    if (l->input == input && l->head == NULL && !l->ended)
      return true;
  }
  return false;
}
