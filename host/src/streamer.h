/* streamer.h: what the parts of the socket layer share, private to the host: streamer.c (connect,
 * listing, close, the options both sides share), streamer_op.c (asynchronous operations),
 * streamer_producer.c and streamer_consumer.c. */
#ifndef SEA_STREAMER_H
#define SEA_STREAMER_H

#include "internal.h"

void sea__set_msg(char *buf, const char *fmt, ...) SEA__PRINTF(2, 3);

static inline const char *sea__backend_name(const sea_streamer_t *s) {
  return s->plugin->desc.name;
}

/* streamer_op.c */
/* Cancel every outstanding operation of a handle that is closing. */
void sea__ops_cancel(sea_op_t **list);
/* Start an operation: the plugin's op or SEA_ENOTSUP with "<what>: not supported by <name>". */
sea_op_t *sea__op_start(sea_runtime_t *rt, sea_op_t **list, char *errmsg, const char *what,
                        sea_done_cb cb, void *data);
/* The plugin refused the operation synchronously: no callback will come. */
int sea__op_refused(sea_op_t *op, int rc);

/* streamer.c: options both sides share */
typedef struct sea__common {
  sea_options_t *all;     /* streamer's options, then the handle's */
  sea_options_t *backend; /* the keys the host does not know */
} sea__common_t;

void sea__common_free(sea__common_t *c);
/* use: SEA_OPT_PRODUCER or SEA_OPT_CONSUMER, for the check against the plugin's option table
 * (an unknown key or a bad value: SEA_EOPTION and rt's error). */
int sea__common_init(sea_streamer_t *s, const sea_options_t *opts, unsigned use, sea__common_t *c);
int sea__opt_u64(sea_runtime_t *rt, const sea_options_t *o, const char *key, uint64_t *out);

#endif
