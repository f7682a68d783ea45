/* consumer.c: the consumer object: batches queued in C and handed out one view at a time by
 * next() (yielding inside a coroutine), acks, commits, seek, rewind, pause, lag. */
#include <stdlib.h>
#include <string.h>

#include "module.h"

/* ---------------------------------------------------------------------------------------------
 * Consumer: batches queue up in C; next() hands out one view at a time.
 * ------------------------------------------------------------------------------------------- */

static lconsumer_t *check_consumer(lua_State *L, int i) {
  lconsumer_t *c = luaL_checkudata(L, i, CONSUMER_MT);
  if (c->c == NULL)
    luaL_argerror(L, i, "consumer is closed");
  return c;
}

/* Invalidate the view last handed out and release the batch it pointed into, if done with. */
static void consumer_advance(lconsumer_t *c, lua_State *L) {
  if (c->view_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->view_ref);
    sea_lua_view_t *v = lua_touserdata(L, -1);
    if (v)
      v->msg = NULL; /* expired: a view is never pointed at another message */
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, c->view_ref);
    c->view_ref = LUA_NOREF;
  }
  if (c->cur) {
    sea_batch_release(c->cur->batch);
    free(c->cur);
    c->cur = NULL;
  }
}

/* Push the next queued message as a view (remembered, to invalidate it later). 0 if none. */
static int consumer_pop(lconsumer_t *c, lua_State *L) {
  while (c->head && c->pos >= c->head->batch->count) {
    qbatch_t *q = c->head;
    c->head = q->next;
    if (!c->head)
      c->tail = NULL;
    c->queued--;
    c->pos = 0;
    sea_batch_release(q->batch);
    free(q);
  }
  if (!c->head)
    return 0;
  qbatch_t *q = c->head;
  sea_lua_push_view(L, &q->batch->msgs[c->pos++], NULL);
  lua_pushvalue(L, -1);
  c->view_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (c->pos >= q->batch->count) {
    /* Keep the batch alive for this last view until the next call. */
    c->head = q->next;
    if (!c->head)
      c->tail = NULL;
    c->queued--;
    c->pos = 0;
    q->next = NULL;
    c->cur = q;
  }
  if (c->paused && c->queued < CONSUMER_QUEUE_MAX / 2) {
    c->paused = 0;
    sea_consumer_resume(c->c);
  }
  return 1;
}

static int push_end(lconsumer_t *c, lua_State *L) {
  if (c->ended == SEA_EOF) {
    lua_pushnil(L);
    return 1;
  }
  return sea_lua_fail(L, c->ended, sea_consumer_errmsg(c->c));
}

static void on_batch(sea_consumer_t *sc, const sea_batch_t *batch) {
  lconsumer_t *c = sea_consumer_get_data(sc);
  if (batch->count == 0)
    return;
  qbatch_t *q = malloc(sizeof *q);
  if (q == NULL) {
    c->ended = SEA_ENOMEM;
    return;
  }
  sea_batch_retain(batch);
  q->batch = batch;
  q->next = NULL;
  if (c->tail)
    c->tail->next = q;
  else
    c->head = q;
  c->tail = q;
  c->queued++;
  if (c->queued >= CONSUMER_QUEUE_MAX && !c->paused) {
    c->paused = 1;
    sea_consumer_pause(sc);
  }
  if (c->waiter_ref != LUA_NOREF) {
    lrt_t *rt = c->st->rt;
    int ref = c->waiter_ref;
    c->waiter_ref = LUA_NOREF;
    consumer_pop(c, rt->cbL);
    sea_lua_resume_ref(rt, ref, 1);
  }
}

static void on_end(sea_consumer_t *sc, int status) {
  lconsumer_t *c = sea_consumer_get_data(sc);
  c->ended = status ? status : SEA_EOF;
  if (c->waiter_ref != LUA_NOREF) {
    lrt_t *rt = c->st->rt;
    int ref = c->waiter_ref;
    c->waiter_ref = LUA_NOREF;
    int n = push_end(c, rt->cbL);
    sea_lua_resume_ref(rt, ref, n);
  }
}

int sea_lua_st_consumer(lua_State *L) {
  lstreamer_t *st = sea_lua_check_streamer(L, 1);
  sea_options_t *o = sea_lua_options(L, 2);
  lconsumer_t *c = lua_newuserdata(L, sizeof *c);
  memset(c, 0, sizeof *c);
  c->st_ref = c->view_ref = c->waiter_ref = LUA_NOREF;
  luaL_getmetatable(L, CONSUMER_MT);
  lua_setmetatable(L, -2);
  int rc = sea_consumer_open(st->s, o, &c->c);
  sea_options_free(o);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_runtime_errmsg(st->rt->rt));
  c->st = st;
  lua_pushvalue(L, 1);
  c->st_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->next = st->consumers;
  st->consumers = c;
  sea_consumer_set_data(c->c, c);
  rc = sea_consumer_start(c->c, on_batch, on_end);
  if (rc != 0) {
    const char *em = sea_consumer_errmsg(c->c);
    lua_pushstring(L, em && em[0] ? em : sea_strerror(rc));
    sea_lua_consumer_close(c);
    return sea_lua_fail(L, rc, lua_tostring(L, -1));
  }
  return 1;
}

/* c:next(): the next message (a view valid until the next call), nil at the end, or nil, msg,
 * code on failure. Inside a coroutine it yields until a message arrives; outside one it runs the
 * loop. */
static int co_next(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  lrt_t *rt = c->st->rt;
  consumer_advance(c, L);
  if (consumer_pop(c, L))
    return 1;
  if (c->ended)
    return push_end(c, L);
  if (c->waiter_ref != LUA_NOREF)
    return luaL_error(L, "another coroutine is already waiting on this consumer");
  if (sea_lua_isyieldable(L)) {
    lua_pushthread(L);
    c->waiter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return lua_yield(L, 0); /* on_batch / on_end resume us with the result */
  }
  if (rt->running)
    return luaL_error(L, "consumer:next() would wait inside a loop callback; call it from a "
                         "coroutine");
  if (rt->luv_ref != LUA_NOREF)
    return luaL_error(L, "%s", LUV_NO_WAIT);
  rt->running = 1;
  int more = 1;
  while (more && c->c && !c->head && !c->ended && rt->err_ref == LUA_NOREF)
    more = sea_runtime_run(rt->rt, SEA_RUN_ONCE);
  rt->running = 0;
  if (rt->err_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->err_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->err_ref);
    rt->err_ref = LUA_NOREF;
    return lua_error(L);
  }
  if (c->c == NULL)
    return sea_lua_fail(L, SEA_ECLOSED, "consumer closed while waiting");
  if (consumer_pop(c, L))
    return 1;
  if (!c->ended)
    return sea_lua_fail(L, SEA_ESTATE,
                        "nothing left to wait for: the consumer's backend has no "
                        "work pending");
  return push_end(c, L);
}

/* for msg in c:messages() do ... end */
static int co_iter(lua_State *L) {
  lua_settop(L, 1);
  int n = co_next(L);
  if (n == 3) /* an error ends the loop by raising it: a for loop cannot see a second value */
    return luaL_error(L, "%s (%s)", lua_tostring(L, -2), lua_tostring(L, -1));
  return n;
}

static int co_messages(lua_State *L) {
  check_consumer(L, 1);
  lua_pushcfunction(L, co_iter);
  lua_pushvalue(L, 1);
  return 2;
}

static int co_ack(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  sea_lua_view_t *v = sea_lua_check_view(L, 2);
  int rc = sea_consumer_ack(c->c, v->msg);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_consumer_errmsg(c->c));
  lua_pushboolean(L, 1);
  return 1;
}

/* ack_pos(stream_key, shard, seq): a position processed without its message (kafka). */
static int co_ack_pos(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  const char *key = luaL_checkstring(L, 2);
  uint64_t shard = sea_lua_check_seq(L, 3, "shard"), seq = sea_lua_check_seq(L, 4, "seq");
  int rc = sea_consumer_ack_pos(c->c, key, shard, seq);
  if (rc != 0)
    return sea_lua_fail(L, rc, sea_consumer_errmsg(c->c));
  lua_pushboolean(L, 1);
  return 1;
}

static int co_commit(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  waitop_t *w = sea_lua_waitop_new(L, c->st->rt, 2);
  int rc = sea_consumer_commit(c->c, sea_lua_waitop_done, w);
  return sea_lua_waitop_finish(L, w, rc);
}

/* Drop what is queued: after a seek or rewind, messages come from the new position. */
static void consumer_drop_queue(lconsumer_t *c, lua_State *L) {
  consumer_advance(c, L);
  while (c->head) {
    qbatch_t *q = c->head;
    c->head = q->next;
    sea_batch_release(q->batch);
    free(q);
  }
  c->tail = NULL;
  c->queued = 0;
  c->pos = 0;
  if (c->ended == SEA_EOF)
    c->ended = 0; /* a consumer caught up may be moved back */
  if (c->paused) {
    c->paused = 0;
    sea_consumer_resume(c->c);
  }
}

/* c:seek(timestamp_us [, fn]) */
static int co_seek(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  int64_t ts = (int64_t)luaL_checknumber(L, 2);
  waitop_t *w = sea_lua_waitop_new(L, c->st->rt, 3);
  int rc = sea_consumer_seek(c->c, ts, sea_lua_waitop_done, w);
  if (rc != 0) /* refused at once: the consumer says why, and what is queued still comes */
    lua_pushstring(L, sea_consumer_errmsg(c->c));
  else /* (what the new position brings comes on a later turn of the loop) */
    consumer_drop_queue(c, L);
  return rc != 0 ? sea_lua_waitop_refused(L, w, rc) : sea_lua_waitop_finish(L, w, rc);
}

/* c:rewind("beginning" | "end" | seq [, fn]): seq as sea_lua_check_seq takes it */
static int co_rewind(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  sea_pos_t pos = {SEA_POS_AT, 0};
  const char *s = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : NULL;
  if (s && strcmp(s, "beginning") == 0)
    pos.kind = SEA_POS_BEGINNING;
  else if (s && strcmp(s, "end") == 0)
    pos.kind = SEA_POS_END;
  else if (s && (s[0] < '0' || s[0] > '9'))
    return luaL_argerror(
        L, 2,
        lua_pushfstring(L, "position '%s': expected \"beginning\", \"end\" or a sequence number",
                        s));
  else
    pos.seq = sea_lua_check_seq(L, 2, "seq");
  waitop_t *w = sea_lua_waitop_new(L, c->st->rt, 3);
  int rc = sea_consumer_rewind(c->c, pos, sea_lua_waitop_done, w);
  if (rc != 0)
    lua_pushstring(L, sea_consumer_errmsg(c->c));
  else
    consumer_drop_queue(c, L);
  return rc != 0 ? sea_lua_waitop_refused(L, w, rc) : sea_lua_waitop_finish(L, w, rc);
}

static int co_pause(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  if (!c->paused) {
    c->paused = 1;
    sea_consumer_pause(c->c);
  }
  return 0;
}

static int co_resume(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  if (c->paused) {
    c->paused = 0;
    sea_consumer_resume(c->c);
  }
  return 0;
}

/* c:lag(): what the backend knows now of how far behind the consumer is, per stream and shard
 * (sea_consumer_lag): a list of {stream, shard, lag, lag_bytes}, an unknown count nil; nil and
 * the error for a backend that cannot tell (stdio, mem). */
static int co_lag(lua_State *L) {
  lconsumer_t *c = check_consumer(L, 1);
  sea_lag_t lag[64];
  int n = sea_consumer_lag(c->c, lag, 64);
  if (n < 0)
    return sea_lua_fail(L, n, n == SEA_ENOTSUP ? "lag: not known by this backend" : NULL);
  lua_createtable(L, n < 64 ? n : 64, 0);
  for (int i = 0; i < n && i < 64; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, lag[i].stream_key);
    lua_setfield(L, -2, "stream");
    sea_lua_push_u64(L, lag[i].shard);
    lua_setfield(L, -2, "shard");
    if (lag[i].lag >= 0) {
      sea_lua_push_u64(L, (uint64_t)lag[i].lag);
      lua_setfield(L, -2, "lag");
    }
    if (lag[i].lag_bytes >= 0) {
      sea_lua_push_u64(L, (uint64_t)lag[i].lag_bytes);
      lua_setfield(L, -2, "lag_bytes");
    }
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

void sea_lua_consumer_close(lconsumer_t *c) {
  if (c->c == NULL)
    return;
  lstreamer_t *st = c->st;
  lua_State *L = st->rt->cbL;
  consumer_drop_queue(c, L);
  sea_consumer_close(c->c);
  c->c = NULL;
  for (lconsumer_t **pp = &st->consumers; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  if (c->waiter_ref != LUA_NOREF)
    luaL_unref(L, LUA_REGISTRYINDEX, c->waiter_ref); /* the coroutine stays suspended */
  c->waiter_ref = LUA_NOREF;
  luaL_unref(L, LUA_REGISTRYINDEX, c->st_ref);
  c->st_ref = LUA_NOREF;
}

static int co_close(lua_State *L) {
  sea_lua_consumer_close(luaL_checkudata(L, 1, CONSUMER_MT));
  return 0;
}

static int co_error(lua_State *L) {
  lconsumer_t *c = luaL_checkudata(L, 1, CONSUMER_MT);
  if (c->ended == 0 || c->ended == SEA_EOF)
    return 0;
  lua_pushstring(L, sea_consumer_errmsg(c->c));
  lua_pushstring(L, sea_lua_code_name(c->ended));
  return 2;
}

/* The consumer's class (from luaopen_seastreamer). */
void sea_lua_consumer_class(lua_State *L) {
  static const luaL_Reg co_m[] = {{"next", co_next},     {"messages", co_messages},
                                  {"ack", co_ack},       {"ack_pos", co_ack_pos},
                                  {"commit", co_commit}, {"seek", co_seek},
                                  {"rewind", co_rewind}, {"pause", co_pause},
                                  {"resume", co_resume}, {"error", co_error},
                                  {"close", co_close},   {"lag", co_lag},
                                  {NULL, NULL}};
  sea_lua_new_class(L, CONSUMER_MT, co_m, co_close, co_close);
}
