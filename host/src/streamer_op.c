/* streamer_op.c: the asynchronous operations of streamers, producers and consumers (flush,
 * end, commit, seek, rewind, list, transactions): started, completed once, or canceled by a close.
 */
#include "streamer.h"

void sea__set_msg(char *buf, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(buf, SEA__ERRMSG_MAX, fmt, ap);
  va_end(ap);
}

/* ---- asynchronous operations ---- */

sea_op_t *sea__op_new(sea_runtime_t *rt, const char *what, sea_done_cb cb, void *data) {
  sea_op_t *op = sea__calloc(1, sizeof *op);
  if (op == NULL)
    return NULL;
  op->rt = rt;
  op->what = what;
  op->cb = cb;
  op->data = data;
  return op;
}

/* Appended: operations that complete together (the flushes and the end a receipt satisfies)
 * complete in the order they were asked for, and are canceled in that order. (A handle has a few
 * outstanding at most, so walking to the end costs nothing.) */
static void op_attach(sea_op_t *op, sea_op_t **list, char *owner_errmsg) {
  op->owner_list = list;
  op->owner_errmsg = owner_errmsg;
  op->next = NULL;
  sea_op_t *last = *list;
  while (last && last->next)
    last = last->next;
  op->prev = last;
  if (last)
    last->next = op;
  else
    *list = op;
}

static void op_detach(sea_op_t *op) {
  if (op->owner_list == NULL)
    return;
  if (op->prev)
    op->prev->next = op->next;
  else
    *op->owner_list = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->owner_list = NULL;
  op->prev = op->next = NULL;
}

static void op_finish(void *arg, void *unused) {
  sea_op_t *op = arg;
  if (op->cb)
    op->cb(op->data, op->status);
  sea__free(op);
}

void sea__op_done(sea_op_t *op, int status, const char *fmt, ...) {
  if (op == NULL || op->owner_list == NULL)
    return; /* already completed or canceled by a close */
  op->status = status;
  if (status < 0 && op->owner_errmsg) {
    if (fmt) {
      va_list ap;
      va_start(ap, fmt);
      sea__vfmt(op->owner_errmsg, SEA__ERRMSG_MAX, fmt, ap);
      va_end(ap);
    } else {
      sea__set_msg(op->owner_errmsg, "%s: %s", op->what, sea_strerror(status));
    }
  }
  op_detach(op);
  if (sea__defer(op->rt, op_finish, op, NULL) != 0)
    op_finish(op, NULL);
}

/* Cancel every outstanding operation of a handle that is closing. */
void sea__ops_cancel(sea_op_t **list) {
  while (*list) {
    sea_op_t *op = *list;
    op_detach(op);
    op->status = SEA_ECANCELED;
    if (sea__defer(op->rt, op_finish, op, NULL) != 0)
      op_finish(op, NULL);
  }
}

/* Start an operation: the plugin's op or SEA_ENOTSUP with "<what>: not supported by <name>". */
sea_op_t *sea__op_start(sea_runtime_t *rt, sea_op_t **list, char *errmsg, const char *what,
                        sea_done_cb cb, void *data) {
  sea_op_t *op = sea__op_new(rt, what, cb, data);
  if (op)
    op_attach(op, list, errmsg);
  return op;
}

/* The plugin refused the operation synchronously: no callback will come. */
int sea__op_refused(sea_op_t *op, int rc) {
  op_detach(op);
  sea__free(op);
  return rc;
}
