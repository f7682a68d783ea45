/* module.h: what the rooms of the Lua module share (seastreamer.c: the module, runtime and
 * streamer; convert.c; view.c; producer.c; consumer.c). Not installed; seastreamer_lua.h is what
 * the module shares with the runner. */
#ifndef SEA_LUA_MODULE_H
#define SEA_LUA_MODULE_H

#include "seastreamer_lua.h"

#define RT_MT "seastreamer.runtime"
#define STREAMER_MT "seastreamer.streamer"
#define PRODUCER_MT "seastreamer.producer"
#define CONSUMER_MT "seastreamer.consumer"

/* Waiting outside a coroutine runs the loop until done; on luv's loop that could be from inside
 * a luv callback, while uv.run() runs the loop, and libuv's loop must not be run re-entrantly. */
#define LUV_NO_WAIT                                                                                \
  "a runtime on luv's loop does not wait by running the loop (luv may be running it): pass a "     \
  "callback or call from a coroutine"

/* A consumer pauses its backend once this many batches wait to be read from Lua. */
#define CONSUMER_QUEUE_MAX 4

typedef struct lrt lrt_t;
typedef struct lstreamer lstreamer_t;
typedef struct lproducer lproducer_t;
typedef struct lconsumer lconsumer_t;

/* The runtime. Callbacks run on cbL, a thread of its own anchored in the registry, so that they
 * never run on a coroutine that may be suspended or dead. */
struct lrt {
  sea_runtime_t *rt;
  lua_State *cbL;
  int cbL_ref;
  int running; /* inside sea_runtime_run */
  int err_ref; /* the first error raised by a callback, LUA_NOREF if none */
  int luv_ref; /* runtime{luv = true}: the luv module whose loop this runtime runs on */
  lstreamer_t *streamers;
};

struct lstreamer {
  sea_streamer_t *s;
  lrt_t *rt;
  int rt_ref; /* keeps the runtime's userdata alive while this is open */
  lstreamer_t *next;
  lproducer_t *producers;
  lconsumer_t *consumers;
};

struct lproducer {
  sea_producer_t *p;
  lstreamer_t *st;
  int st_ref;
  int in_gc;
  lproducer_t *next;
  int drain_ref; /* function or LUA_NOREF */
};

/* Batches handed to the consumer and not yet read by Lua. */
typedef struct qbatch {
  const sea_batch_t *batch;
  struct qbatch *next;
} qbatch_t;

struct lconsumer {
  sea_consumer_t *c;
  lstreamer_t *st;
  int st_ref;
  lconsumer_t *next;
  qbatch_t *head, *tail;
  size_t queued;
  size_t pos;     /* next message of head */
  qbatch_t *cur;  /* the batch holding the message last returned (kept until the next call) */
  int view_ref;   /* the view last returned, invalidated on the next call */
  int waiter_ref; /* a coroutine waiting in next() */
  int paused;
  int ended; /* 0, or SEA_EOF or an error */
};

#define SEA_LUA_TCDATA 10 /* what LuaJIT's lua_type says for a cdata */

/* Waiting for an asynchronous operation (seastreamer.c): a callback if given, else a yield inside a
 * coroutine, else run the loop until it is done. */
typedef struct waitop {
  lrt_t *rt;
  int fn_ref; /* a callback, or LUA_NOREF */
  int co_ref; /* a waiting coroutine, or LUA_NOREF */
  int done;
  int status;
  char msg[256];
  int blocking; /* a blocking waiter owns the struct and frees it */
} waitop_t;

/* seastreamer.c: helpers, callbacks on cbL, waiting, streamers, classes */
const char *sea_lua_code_name(int err);
void sea_lua_call_cb(lrt_t *rt, int nargs);
void sea_lua_resume_ref(lrt_t *rt, int ref, int nargs);
void sea_lua_waitop_done(void *data, int status);
waitop_t *sea_lua_waitop_new(lua_State *L, lrt_t *rt, int fn_idx);
int sea_lua_waitop_refused(lua_State *L, waitop_t *w, int rc);
int sea_lua_waitop_finish(lua_State *L, waitop_t *w, int rc);
lstreamer_t *sea_lua_check_streamer(lua_State *L, int i);
void sea_lua_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                       lua_CFunction close);
/* convert.c: sequence numbers (and sea_lua_push_u64, seastreamer_lua.h) */
void sea_lua_push_decimal(lua_State *L, uint64_t x);
void sea_lua_push_seq(lua_State *L, uint64_t x);
uint64_t sea_lua_check_seq(lua_State *L, int i, const char *what);
/* producer.c and consumer.c: streamer:producer(), streamer:consumer() and their closing */
int sea_lua_st_producer(lua_State *L);
void sea_lua_producer_close(lproducer_t *p);
int sea_lua_st_consumer(lua_State *L);
void sea_lua_consumer_close(lconsumer_t *c);

/* Each room's classes, registered by luaopen_seastreamer. */
void sea_lua_view_classes(lua_State *L);
void sea_lua_producer_class(lua_State *L);
void sea_lua_consumer_class(lua_State *L);

#endif
