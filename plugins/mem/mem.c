/* mem.c: the mem:// backend, an in-memory broker for tests and a worked example for plugin authors.
 *
 * mem://NAME/key1,key2 connects to the broker called NAME (the empty name when the URI has no
 * node). Brokers belong to the process: every streamer that names one shares it, and it is freed
 * when the last of them disconnects. For each (stream key, shard) a broker keeps an append-only
 * log, and a message's seq is its index in that log: 0, 1, 2, ...
 *
 * Nothing here calls back into the host from inside a call the host made. Receipts, deliveries
 * and the completion of seek, rewind and commit all come from 0 ms timers, so callers meet real
 * asynchronous behaviour, always in the same order. The host completes flush and end from the
 * receipts.
 *
 * Producer. A send copies the message (payload, key, headers and the header array itself) into
 * one block, appends it to its log and wakes the consumers that read that log. The receipt comes
 * on the next loop turn. SEA_SEND_KEEP_META is not honoured for seq: a seq is always the index in
 * the log, because rewind, ack and commit rely on it. The shard is always m->meta.shard_id, and a
 * timestamp the message carries is always kept (0 means now). Options:
 *   capacity=N    at most N sends wait for their receipt; one more returns SEA_EAGAIN, and
 *                 host->producer_ready follows once the receipts have been given.
 *   fail_after=N  the (N+1)th send (only that one) gets its receipt with SEA_EIO and is not stored.
 *   hold_receipts=true  receipts wait for a flush or an end (the host's push; a slow output: tests
 *                 use it to make receipts of two producers come back out of order).
 * Nothing marks a stream as ended.
 *
 * Consumer. It reads the logs of the keys it subscribed to (all of the broker's keys when it names
 * none, including keys that appear later), one message per log in turn, in batches of
 * args->batch_size (default 1000). Where it starts: start= if given, else start=-N, else for a
 * RESUMABLE or LOAD_BALANCED consumer with a group the group's committed position, or without one
 * the beginning if reset=earliest; else the end. A log that appears after the consumer opened is
 * read from its beginning, since all of it is new (or from seq N after start=N). A consumer with
 * stop_at_end ends with SEA_EOF once it has delivered everything there is.
 * Groups are named per broker and outlive their consumers (as long as the broker lives), so a
 * consumer that reopens in the group resumes from its commits. Acks and commits belong to the
 * group: a commit stores, per log, the highest seq acked so far + 1. Without a group, ack and
 * commit succeed and store nothing; in REALTIME mode both return SEA_ESTATE.
 * LOAD_BALANCED consumers of one group share their positions, and messages are dealt to them one
 * at a time in turn, so each message reaches one of them. A member that pauses, changes its
 * assignment or closes gives back what was dealt to it and not yet delivered.
 * assign(key, shard): the first one narrows the consumer to the pairs assigned; unassign removes a
 * pair. Both return SEA_EKEY for a key outside the subscription.
 *
 * Listing (sea_streamer_list): every (key, shard) log with its count, seq range (0 .. count - 1)
 * and time range, and per group its members and, per log of each key it committed on, the
 * committed position and the lag (messages after it). The rows are gathered when asked and sent
 * from a timer on the next turn; a streamer's disconnect drops its listings not yet sent.
 *
 * Threads: the broker registry has no lock, so every streamer that shares a broker must run on
 * one thread (several runtimes on that thread are fine).
 */
#include <stdint.h>
#include <string.h>

#include "mem_internal.h"

/* ------------------------------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------------------------------- */

/* The backend options (ABI 1.4 table): the host checks those of every connect and open against
 * it; only producers read them (mem_producer.c). */
/* clang-format off */
const sea_option_spec_t mem_option_table[] = {
    {.key = "capacity", .type = SEA_OPT_U64, .min = 1,
     .help = "sends a producer holds unreceipted before SEA_EAGAIN; none: no limit"},
    {.key = "fail_after", .type = SEA_OPT_U64,
     .help = "a producer fails after this many sends: fault injection"},
    {.key = "hold_receipts", .type = SEA_OPT_BOOL, .def = "false",
     .help = "receipts wait for a flush or end"},
    {.key = NULL},
};
/* clang-format on */

/* ------------------------------------------------------------------------------------------------
 * Streamer
 * ---------------------------------------------------------------------------------------------- */

static int mem_connect(sea_runtime_t *rt, sea_streamer_t *s, const sea_uri_t *uri,
                       const sea_options_t *backend_options, void **impl) {
  const char *name = uri->node_count > 0 ? uri->nodes[0] : "";
  mem_broker_t *b;
  mem_streamer_t *ms;

  (void)backend_options; /* the host checked them; only producers read them */
  if ((ms = sea_host->calloc(1, sizeof *ms)) == NULL) {
    sea_host->set_error(rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  for (b = mem_brokers; b != NULL; b = b->next)
    if (strcmp(b->name, name) == 0)
      break;
  if (b == NULL && (b = mem_broker_new(name)) == NULL) {
    sea_host->free(ms);
    sea_host->set_error(rt, "mem: out of memory");
    return SEA_ENOMEM;
  }
  b->refs++;
  ms->broker = b;
  *impl = ms;
  return 0;
}

/* The host closes a streamer's producers and consumers before it disconnects. */
static void mem_disconnect(void *impl) {
  mem_streamer_t *ms = impl;
  mem_broker_t *b = ms->broker;
  mem_list_abandon(ms);
  sea_host->free(ms);
  if (--b->refs == 0)
    mem_broker_free(b);
}

/* ------------------------------------------------------------------------------------------------
 * Entry point
 * ---------------------------------------------------------------------------------------------- */

static const char *const mem_schemes[] = {"mem", NULL};

static const sea_plugin_t mem_plugin = {
    .abi_major = SEA_PLUGIN_ABI_MAJOR,
    .abi_minor = SEA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(sea_plugin_t),
    .name = "mem",
    .schemes = mem_schemes,
    .version = "0.1.0",
    .description = "in-memory broker, shared within the process (for tests and examples)",
    .caps = SEA_CAP_REALTIME | SEA_CAP_RESUMABLE | SEA_CAP_LOAD_BALANCED | SEA_CAP_SEEK |
            SEA_CAP_REWIND | SEA_CAP_COMMIT | SEA_CAP_KEY | SEA_CAP_HEADERS | SEA_CAP_SHARDS |
            SEA_CAP_BINARY,
    .default_port = 0,
    .connect = mem_connect,
    .disconnect = mem_disconnect,
    .producer_open = mem_producer_open,
    .producer_send = mem_producer_send,
    .producer_close = mem_producer_close,
    .consumer_open = mem_consumer_open,
    .consumer_start = mem_consumer_start,
    .consumer_pause = mem_consumer_pause,
    .consumer_resume = mem_consumer_resume,
    .consumer_seek = mem_consumer_seek,
    .consumer_rewind = mem_consumer_rewind,
    .consumer_assign = mem_consumer_assign,
    .consumer_unassign = mem_consumer_unassign,
    .consumer_ack = mem_consumer_ack,
    .consumer_commit = mem_consumer_commit,
    .consumer_close = mem_consumer_close,
    .list = mem_list,
    .options = mem_option_table,
    .producer_push = mem_producer_push,
};

SEA_PLUGIN_INIT(mem, mem_plugin)
