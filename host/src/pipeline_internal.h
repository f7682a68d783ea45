/* pipeline_internal.h: what the rooms of the pipeline share (pipeline.c's comment describes the
 * pipeline as a whole). Private to the host. The rooms:
 *   pipeline.c          setup (new, inputs, outputs, start), stopping, accessors, free
 *   pipeline_commit.c   acknowledgement in delivery order; commits (timer, last commit, retries)
 *   pipeline_output.c   sends, receipts, the overflow of a full output and its drain
 *   pipeline_process.c  batches in, the processor's calls, the join's feed, inputs paused/resumed
 *   pipeline_policy.c   the error policy (stop, skip, dead-letter) and sea_pipeline_reject
 *   pipeline_eos.c      exactly once: windows as transactions, replays, rebalances, its setup
 * They share the pipeline's structs below and call each other through the sea__pl_ functions;
 * everything else in a room is static. */
#ifndef SEA_PIPELINE_INTERNAL_H
#define SEA_PIPELINE_INTERNAL_H

#include "internal.h"
#include "join.h"

typedef struct pbatch pbatch_t;
typedef struct pl_input pl_input_t;
typedef struct hold hold_t;

/* A message's slot; a send's token. Its batch is found from its index (8 bytes a message). */
typedef struct slot {
  uint32_t i;       /* index in the batch */
  uint32_t pending; /* the processor call and the sends still waiting for receipts */
} slot_t;

struct pbatch {
  const sea_batch_t *batch;
  pl_input_t *in;
  size_t next_proc;     /* next message to hand to the processor */
  size_t next_ack;      /* next message to acknowledge */
  bool dead;            /* exactly once: a rebalance revoked its input: never acknowledged */
  pbatch_t *in_next;    /* the input's FIFO: acknowledgement order */
  pbatch_t *work_next;  /* the pipeline's FIFO of batches with messages still to process */
  sea__jnode_t *jnodes; /* joined: one node a message, after the slots */
  hold_t *hold;         /* a hold's token (batch and in NULL, one slot): that hold */
  slot_t slots[];
};

/* cfg.hold: the messages held since the last release, each the first of a processor call (the
 * in-order acknowledgement holds the rest of its call), with a hold each on its slot. The sends
 * made outside the processor's calls while it is open carry its token, a pbatch of one slot
 * and no batch, as a message's sends carry its slot: the token's pending counts them until their
 * receipts, plus 1 until the release. At 0 the hold lets its messages go. */
struct hold {
  slot_t **held;
  size_t n, cap;
  pbatch_t *token;
  hold_t *next; /* the pipeline's holds not done yet */
};

static inline pbatch_t *slot_batch(slot_t *s) {
  return (pbatch_t *)((char *)(s - s->i) - offsetof(pbatch_t, slots));
}

struct pl_input {
  sea_pipeline_t *pl;
  size_t index;
  sea_consumer_t *c;
  const char *uri;
  pbatch_t *head, *tail;
  bool ack; /* the input keeps positions: acknowledge and commit */
  bool started, ended, paused;
  bool dirty; /* acknowledged since the last commit */
  bool committing;
  uint64_t msgs, bytes; /* handed to the processor (metrics: stats.processed, bytes_in by input) */
  /* Exactly once: the last done position of each stream and shard since the window's start,
   * acknowledged only as the window closes (right before send_offsets), so nothing done in a
   * window that is then aborted is ever acknowledged to the backend. */
  struct eos_mark {
    const char *key;
    uint64_t shard;
    uint64_t pos;
  } * marks;
  size_t nmarks, capmarks;
};

/* A send that met a full output: kept (the message's block retained) until the output drains. */
typedef struct overflow {
  sea_message_t m;
  unsigned flags;
  slot_t *slot;
  struct overflow *next;
} overflow_t;

typedef struct pl_output {
  sea_pipeline_t *pl;
  sea_producer_t *p;
  const char *uri;
  overflow_t *of_head, *of_tail;
  bool stopped;      /* flushed or ended at stop */
  bool stopping;     /* its flush or end is under way */
  int txn_ops;       /* exactly once: its transaction operation out (the callback frees it late) */
  uint64_t inflight; /* sends without a receipt yet */
  uint64_t sent, bytes, receipted; /* metrics: stats.sent, bytes_out, receipted by output */
} pl_output_t;

/* Exactly once: the state of the transaction of the current commit window. */
enum {
  TXN_OFF = 0,    /* not exactly once, or not begun */
  TXN_OPEN,       /* sends go into it; the processor runs */
  TXN_DRAINING,   /* window closing: no processor call; the overflow goes in, receipts come */
  TXN_COMMITTING, /* offsets and commit (or abort) out: sends wait in the overflow */
  TXN_ENDED       /* the last one committed or aborted: the pipeline is finishing */
};

struct sea_pipeline {
  sea_runtime_t *rt;
  sea_pipeline_config_t cfg;
  pl_input_t **in;
  size_t nin, capin;
  pl_output_t **out;
  size_t nout, capout;
  pbatch_t *work_head, *work_tail;
  slot_t *cur; /* sends made now belong to this message (NULL: to none) */
  bool in_call;
  size_t blocked; /* outputs holding an overflow */
  bool started, stopping, stop_requested, flushed, finishing, done;
  bool stop_asked;            /* sea_pipeline_stop was called (a signal, out:stop(), the user) */
  unsigned processing;        /* nesting guard of sea__pl_process_work */
  int flushing;               /* outputs still flushing or ending */
  int commits_out;            /* commits in flight (a last commit waiting to be tried again too) */
  unsigned last_commit_tries; /* the last commit: refusals in a row while the coordinator moved */
  bool commit_backoff;        /* the last commit waits on the timer to be tried again */
  int status;
  uv_timer_t *timer; /* the commit timer, freed in its close callback */
  uint64_t commit_every_ms;
  uint64_t commit_due_ns; /* when the commit timer is due (uv_hrtime), 0 = no timer */
  uv_idle_t *resume;      /* sea__pl_process_work goes on once the loop ran a due commit */
  uint32_t ncalls;        /* processor calls, for the commit-due check every 64 */
  bool yielded;
  pl_output_t *txo;   /* exactly once: the transactional producer every output's sends go through */
  int txn;            /* TXN_* */
  int offsets_out;    /* send_offsets in flight */
  bool txn_aborting;  /* the transaction operation out is an abort */
  bool txn_rebalance; /* that abort is for a rebalance: the pipeline goes on */
  bool txn_replay;    /* that abort is for an abortable error: the inputs go back, it goes on */
  unsigned eos_retries;    /* windows aborted for abortable errors in a row (EOS_RETRIES_MAX) */
  int rewinds_out;         /* inputs going back to their committed positions */
  uint64_t counted;        /* messages processed toward -c (cfg.max_count), less what came again */
  uint64_t window_counted; /* counted when the open transaction began */
  uint64_t window_sends;   /* sends into the open transaction */
  char txn_id[256];
  hold_t *hold;       /* cfg.hold: the open hold (NULL until a message is held after a release) */
  hold_t *holds;      /* cfg.hold: every hold not done yet, the open one too */
  sea__join_t *join;  /* joined: the messages waiting for their turn */
  uv_timer_t *jtimer; /* joined: the wait rule's wake-up, freed in its close callback */
  /* joined: the wait rule's clock is not the time now but the time the loop began its last
   * poll for I/O whose callbacks have all run (jprep notes the time just before each poll, jcheck
   * makes it the clock just after): a lane is silent for the wait only if the loop has polled
   * and read what it found since the wait fell due, so data that came in the kernel during a
   * stall (SIGSTOP, a suspended machine, a long callback) is read before the join gives up on
   * its lane. jidle keeps the poll from blocking while a wait that fell due waits for that. */
  uv_prepare_t *jprep;
  uv_check_t *jcheck;
  uv_idle_t *jidle;
  uint64_t jpoll_ns;   /* when the poll under way began */
  uint64_t jpolled_ns; /* the clock: when the last poll whose callbacks have run began */
  size_t join_max;     /* joined: at this many buffered, the inputs that hold some pause */
  sea_pipeline_stats_t st;
  sea__stats_t *stats; /* sea_pipeline_report_stats: its lines (stats.c) */
  char errmsg[SEA__ERRMSG_MAX];
  char why[SEA__ERRMSG_MAX]; /* the processor's reason for its last rejection */
  size_t reject_n;           /* sea_pipeline_reject_first: how many it rejects (0: all) */
};

/* Exactly once: no processor call while a window closes (its sends would miss the commit). */
static inline bool txn_holds(const sea_pipeline_t *pl) {
  return pl->txn == TXN_DRAINING || pl->txn == TXN_COMMITTING;
}

static inline void set_error_v(sea_pipeline_t *pl, int status, const char *fmt, va_list ap) {
  if (pl->status != 0)
    return; /* the first failure is the cause */
  /* A failure is never the end of a stream: SEA_EOF here would read as a clean exit. */
  pl->status = status < 0 && status != SEA_EOF ? status : SEA_EIO;
  sea__vfmt(pl->errmsg, sizeof pl->errmsg, fmt, ap);
}

static inline void set_error(sea_pipeline_t *pl, int status, const char *fmt, ...)
    SEA__PRINTF(3, 4);
static inline void set_error(sea_pipeline_t *pl, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  set_error_v(pl, status, fmt, ap);
  va_end(ap);
}

/* ---------------------------------------------------------------------------------------------
 * Stopping and starting (pipeline.c)
 * ------------------------------------------------------------------------------------------- */

void sea__pl_maybe_finish(sea_pipeline_t *pl);
void sea__pl_begin_stop(sea_pipeline_t *pl);
int sea__pl_start_inputs(sea_pipeline_t *pl);

/* ---------------------------------------------------------------------------------------------
 * Acknowledgement and commits (pipeline_commit.c)
 * ------------------------------------------------------------------------------------------- */

void sea__pl_pbatch_free(pbatch_t *pb);
void sea__pl_advance_acks(pl_input_t *in);
void sea__pl_slot_done(sea_pipeline_t *pl, slot_t *s);
int sea__pl_hold(sea_pipeline_t *pl, slot_t *s);
void sea__pl_holds_free(sea_pipeline_t *pl);
void sea__pl_commit_all(sea_pipeline_t *pl);
void sea__pl_on_commit_timer(uv_timer_t *t);
sea_pipeline_t *sea__pl_input_op_back(pl_input_t *in);

/* ---------------------------------------------------------------------------------------------
 * Outputs (pipeline_output.c)
 * ------------------------------------------------------------------------------------------- */

void sea__pl_on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta);
void sea__pl_overflow_free(overflow_t *ov);
void sea__pl_on_drain(sea_producer_t *p);

/* ---------------------------------------------------------------------------------------------
 * Error policy (pipeline_policy.c)
 * ------------------------------------------------------------------------------------------- */

bool sea__pl_apply_policy(sea_pipeline_t *pl, pbatch_t *pb, size_t first, size_t count, int rc);
bool sea__pl_output_failed(sea_pipeline_t *pl);

/* ---------------------------------------------------------------------------------------------
 * Processing (pipeline_process.c)
 * ------------------------------------------------------------------------------------------- */

void sea__pl_process_work(sea_pipeline_t *pl);
void sea__pl_on_batch(sea_consumer_t *c, const sea_batch_t *batch);
void sea__pl_on_end(sea_consumer_t *c, int status);

/* ---------------------------------------------------------------------------------------------
 * Exactly once (pipeline_eos.c)
 * ------------------------------------------------------------------------------------------- */

int sea__pl_eos_mark(pl_input_t *in, const sea_message_t *m);
void sea__pl_eos_progress(sea_pipeline_t *pl);
bool sea__pl_eos_stop_after_window(sea_pipeline_t *pl);
void sea__pl_eos_close(sea_pipeline_t *pl);
bool sea__pl_eos_finish(sea_pipeline_t *pl);
void sea__pl_on_revoke(sea_consumer_t *c, int incremental);
int sea__pl_eos_setup(sea_pipeline_t *pl);

/* pipeline_policy.c: "key | seq" of a message, and " | shard" when it is not 0. */
const char *sea__msg_where(const sea_message_t *m, char *buf, size_t n);

#endif
