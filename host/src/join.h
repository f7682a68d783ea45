/* join.h: the time-order join of a pipeline's inputs (join.c), private to the host. */
#ifndef SEA_JOIN_H
#define SEA_JOIN_H

#include <stdint.h>

#include "internal.h"

/* A buffered message. The caller owns the memory (one per message, next to its slot) and keeps
 * it alive until the message was taken out with sea__join_pop. */
typedef struct sea__jnode {
  struct sea__jnode *next;
  const sea_message_t *m;
  void *owner;         /* the caller's (the pipeline's batch) */
  uint64_t arrival_ns; /* uv_hrtime() when it was delivered */
  uint32_t input;
  uint32_t i; /* the caller's (the index in its batch) */
} sea__jnode_t;

typedef struct sea__join sea__join_t;

sea__join_t *sea__join_new(size_t ninputs, uint64_t wait_ms);
void sea__join_free(sea__join_t *j);
/* Wait for an input that has delivered nothing yet: for each of keys (interned; none: for the
 * input as a whole) until a message of it comes, the input ends, or it stayed silent for the
 * join's wait from now_ns. Returns 0 or SEA_ENOMEM. */
int sea__join_expect(sea__join_t *j, uint32_t input, const char *const *keys, size_t nkeys,
                     uint64_t now_ns);
/* Buffer n in its lane (input, stream key, shard). Returns 0, 1 if n is late (it sorts before a
 * message already released: it goes out as soon as its lane lets it), or SEA_ENOMEM. */
int sea__join_push(sea__join_t *j, sea__jnode_t *n);
/* The input ended: its lanes no longer hold the others back (what they buffered still goes). */
void sea__join_end_input(sea__join_t *j, uint32_t input);
/* The message that comes next, if it may be released at now_ns; else NULL, with *wake_ns the
 * time at which the wait rule would release one (0: only new input or an end can). The node
 * stays buffered until sea__join_pop, which takes exactly what the last peek returned. */
sea__jnode_t *sea__join_peek(sea__join_t *j, uint64_t now_ns, uint64_t *wake_ns);
void sea__join_pop(sea__join_t *j);
/* Put a popped node back at the front of its lane (a processor handled fewer than it got):
 * nodes go back in the reverse of the order they were popped in. */
void sea__join_putback(sea__join_t *j, sea__jnode_t *n);
/* n was processed: later arrivals that sort before it are late. */
void sea__join_released(sea__join_t *j, const sea__jnode_t *n);
size_t sea__join_buffered(const sea__join_t *j);
size_t sea__join_input_buffered(const sea__join_t *j, uint32_t input);
/* Whether the input has a lane that is silent (nothing buffered, not ended): one the join may be
 * waiting for. */
bool sea__join_input_silent(const sea__join_t *j, uint32_t input);

#endif
