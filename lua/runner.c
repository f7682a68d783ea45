/* runner.c: seastreamer-run-<lua>, the program behind `seastreamer run`: parses the command
 * line, loads the script in a Lua state with a memory limit, and hands it to seastreamer.run. */
#include <getopt.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <lualib.h>

#include "run_limits.h"
#include "seastreamer_lua.h"

#ifdef SEA_LUAJIT
#define RUNNER_LUA "LuaJIT"
#else
#define RUNNER_LUA "Lua 5.4"
#endif

enum { EXIT_OK = 0, EXIT_STREAM = 1, EXIT_USAGE = 2, EXIT_BACKEND = 3 };

static const char help[] =
    "usage: seastreamer run [--lua 5.4|luajit] SCRIPT.lua --input URI [--input URI...]\n"
    "                       --output URI [--output NAME=URI...] [options]\n"
    "\n"
    "Runs a Lua processor over the inputs: the C core consumes, batches, produces,\n"
    "acknowledges and commits; Lua sees only the processor. SCRIPT returns a function\n"
    "f(msg, out) or a table {process = f | batch = f(batch, out), start = f(out),\n"
    "tick = f(out, now_us), tick_ms = N, stop = f(out), linger = true, input_end = f(out),\n"
    "hold = true} (linger: the end of the inputs calls input_end and the script ends the run;\n"
    "hold: output sent later, from tick or stop, as a window does: a message is committed only\n"
    "once what was sent by the tick after its call is confirmed). A processor returns nil (drop),\n"
    "a payload string, the message itself, or a list of them, for the default output;\n"
    "out:send(NAME, payload [, stream_key]) sends to a named output (NAME nil: the default);\n"
    "out:stop() ends the run once the call returns (every output confirmed, inputs committed).\n"
    "An input message is committed only once every output it produced is confirmed.\n"
    "\n"
    "options:\n"
    "  --lua 5.4|luajit         the Lua to run the script on (default 5.4; $SEASTREAMER_LUA)\n"
    "  --input URI              an input (repeatable; none for a source with a tick hook)\n"
    "  --output URI             the default output\n"
    "  --output NAME=URI        a named output (repeatable)\n"
    "  --on-error POLICY        stop (default: print the error and the message's position,\n"
    "                           commit nothing from it on), skip, or dead-letter=URI\n"
    "  --max-instructions N     a processor call may run at most about N VM instructions\n"
    "  --max-ms N               a processor call may run at most N ms (both limits turn\n"
    "                           LuaJIT's compiler off: compiled code never checks them)\n"
    "  --max-memory MB          the Lua heap's limit (default 1024)\n"
    "                           (the three limits also bound loading SCRIPT and running its\n"
    "                           top-level code, as one call)\n"
    "  --tick-ms N              the tick hook's interval (default: the script's tick_ms, 1000)\n"
    "  -c, --count N            stop after N input messages: exactly those are committed\n"
    "  --commit-interval MS     commit the inputs' positions every MS ms (default 1000): what\n"
    "                           a crash can repeat (docs/delivery.md)\n"
    "  -I key=value             an option for every input (mode, group, start, batch, ...;\n"
    "                           -X key=value is the same, as in consume and relay)\n"
    "  -o START                 where the inputs start (beginning, end, a seq, -N: N before\n"
    "                           the end; the same as -I start=START and as in consume)\n"
    "  -G GROUP                 the inputs' group (load-balanced unless --mode says otherwise)\n"
    "  --mode MODE              realtime, resumable or load-balanced (-I mode=MODE)\n"
    "  -O key=value             an option for every output\n"
    "  -e                       stop when the inputs are caught up (stop_at_end=true)\n"
    "  -q / -v, -vv             log errors only / info / debug (SEASTREAMER_LOG=error|info|\n"
    "                           debug), as in consume and produce\n"
    "  --exactly-once           Kafka to Kafka: each commit window is one transaction holding\n"
    "                           the outputs and the inputs' positions (docs/delivery.md)\n"
    "  --transactional-id ID    with --exactly-once: the transactional.id (default: derived\n"
    "                           from the groups and topics, and the host if load-balanced)\n"
    "  --join                   hand the processor the messages of every input (and of every\n"
    "                           stream key and shard of one input) in timestamp order, ties by\n"
    "                           stream key, then input: each (input, key, shard) is a lane, and\n"
    "                           a message waits until every lane that has not ended has one\n"
    "                           buffered (an input that sent nothing yet is waited for too)\n"
    "  --join-wait MS           a lane with nothing buffered is waited for until it has been\n"
    "                           silent MS ms, and no message waits longer than MS ms (default\n"
    "                           1000); what arrives older than what was already processed is\n"
    "                           late: processed at once and counted\n"
    "  --join-max N             at N buffered messages the inputs holding them pause (default\n"
    "                           100000); nothing is dropped. Not with --exactly-once\n"
    "  --stats[=SECONDS]        a progress line on stderr every SECONDS (default 5) and one at\n"
    "                           the end: messages and bytes in and out, rates, in flight, each\n"
    "                           input's lag (out:stats() returns the same numbers)\n"
    "  --stats-json[=SECONDS]   the same as one JSON object per line on stderr\n"
    "  --metrics HOST:PORT      serve the same counters (by input and output, lag, errors by\n"
    "                           kind) at http://HOST:PORT/metrics in Prometheus' text format\n"
    "                           (docs/delivery.md)\n"
    "\n"
    "exit status: 0 done; 1 a stream failed; 2 bad usage, a bad script or a processor\n"
    "error (with the script's name and line); 3 no backend.\n";

/* The Lua heap's allocator: the Lua's own one, wrapped with a limit. Past the limit an allocation
 * fails and Lua raises "not enough memory", which the runner reports like any processor error. */
/* Small blocks (up to SMALL_MAX bytes, in 16-byte classes) freed by Lua are kept on a free list
 * per class and handed out again: a processor makes a few short-lived objects per message (its
 * view, strings), and malloc and free cost more than the rest of their life. Only where the
 * Lua's own allocator is the C library's (Lua 5.4; LuaJIT has an allocator of its own), and only
 * for blocks the C library says are big enough for their class (blocks made before this
 * allocator took over were sized exactly). */
#define SMALL_MAX 256
#define SMALL_CLASSES (SMALL_MAX / 16)

typedef struct small_block {
  struct small_block *next;
} small_block_t;

typedef struct heap {
  lua_Alloc inner;
  void *inner_ud;
  size_t used, limit;
  int tripped;
  int pooled; /* the free lists are in use */
  small_block_t *small[SMALL_CLASSES];
} heap_t;

static void *small_alloc(heap_t *h, size_t n) {
  size_t c = (n - 1) / 16;
  small_block_t *b = h->small[c];
  if (b != NULL) {
    h->small[c] = b->next;
    return b;
  }
  return malloc((c + 1) * 16);
}

static void small_free(heap_t *h, void *p, size_t n) {
  size_t c = (n - 1) / 16;
  if (malloc_usable_size(p) < (c + 1) * 16) {
    free(p);
    return;
  }
  small_block_t *b = p;
  b->next = h->small[c];
  h->small[c] = b;
}

static void *pooled_realloc(heap_t *h, void *ptr, size_t osize, size_t nsize) {
  bool small_old = ptr != NULL && osize > 0 && osize <= SMALL_MAX;
  if (nsize == 0) {
    if (small_old)
      small_free(h, ptr, osize);
    else
      free(ptr);
    return NULL;
  }
  if (ptr == NULL)
    return nsize <= SMALL_MAX ? small_alloc(h, nsize) : malloc(nsize);
  if (!small_old && nsize > SMALL_MAX)
    return realloc(ptr, nsize);
  if (small_old && nsize <= SMALL_MAX && (osize - 1) / 16 == (nsize - 1) / 16 &&
      malloc_usable_size(ptr) >= nsize)
    return ptr; /* the same class */
  void *p = nsize <= SMALL_MAX ? small_alloc(h, nsize) : malloc(nsize);
  if (p == NULL)
    return NULL;
  memcpy(p, ptr, osize < nsize ? osize : nsize);
  if (small_old)
    small_free(h, ptr, osize);
  else
    free(ptr);
  return p;
}

static void heap_release(heap_t *h) {
  for (size_t c = 0; c < SMALL_CLASSES; c++)
    while (h->small[c] != NULL) {
      small_block_t *b = h->small[c];
      h->small[c] = b->next;
      free(b);
    }
}

/* Past the limit (kept out of line: limited_alloc runs for every allocation Lua makes, and
 * its fast path is then a few instructions, with nothing to save around its one call). */
static __attribute__((noinline)) void *over_limit(heap_t *h) {
  if (h->tripped)
    return NULL;
  /* The first failure leaves 1 MiB of headroom, so that reporting it (the message, the
   * script's position) does not fail too; the run stops after it. */
  h->tripped = 1;
  h->limit += 1024 * 1024;
  return NULL;
}

/* The Lua's own allocator under the limit (LuaJIT). */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  heap_t *h = ud;
  if (ptr == NULL)
    osize = 0; /* osize then encodes the kind of object */
  if (nsize > osize && h->used + (nsize - osize) > h->limit)
    return over_limit(h);
  /* Counted before the call, taken back if it fails: nothing is live across the call. */
  h->used += nsize - osize;
  void *p = h->inner(h->inner_ud, ptr, osize, nsize);
  if (p == NULL && nsize != 0)
    h->used = h->used - nsize + osize;
  return p;
}

/* The same over the free lists (Lua 5.4), which are inlined here. */
static void *limited_pooled_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  heap_t *h = ud;
  if (ptr == NULL)
    osize = 0;
  if (nsize > osize && h->used + (nsize - osize) > h->limit)
    return over_limit(h);
  void *p = pooled_realloc(h, ptr, osize, nsize);
  if (p != NULL || nsize == 0)
    h->used = h->used - osize + nsize;
  return p;
}

/* The limits while the script loads and its top-level code runs, as one call: the count hook
 * (load_hook) finds them here. seastreamer.run applies them per call afterwards. */
typedef struct load_limits {
  const char *script;
  sea_lua_limits_t l;
  int tripped;   /* the hook raised its error */
  char msg[512]; /* that error */
} load_limits_t;

static load_limits_t *load_limits;

static void load_hook(lua_State *L, lua_Debug *ar) {
  load_limits_t *g = load_limits;
  if (g == NULL)
    return;
  if (g->tripped) {
    /* The script caught the error (pcall) and went on: a Lua error cannot stop it, so end the
     * program here; nothing is open yet but the Lua state. */
    fprintf(stderr, "seastreamer run: %s failed while loading: %s (and went on after it)\n",
            g->script, g->msg);
    fflush(stderr);
    exit(EXIT_USAGE);
  }
  uint64_t limit = 0;
  const char *what = sea_lua_limits_check(&g->l, &limit);
  if (what == NULL)
    return;
  /* Say where the script was when it was stopped. */
  lua_getinfo(L, "Sl", ar);
  snprintf(g->msg, sizeof g->msg, "%s:%d: %s limit exceeded while loading (--max-%s %llu)",
           ar->short_src, ar->currentline, what, what[0] == 'i' ? "instructions" : "ms",
           (unsigned long long)limit);
  g->tripped = 1;
  lua_pushstring(L, g->msg);
  lua_error(L);
}

static int exit_for_code(const char *code) {
  static const char *const usage[] = {"EINVAL", "EURI", "EKEY", "EOPTION", "EFORMAT", "ETOOBIG"};
  static const char *const backend[] = {"ESCHEME", "EPLUGIN", "ECONNECT", "ENOTSUP"};
  for (size_t i = 0; code && i < sizeof usage / sizeof usage[0]; i++)
    if (strcmp(code, usage[i]) == 0)
      return EXIT_USAGE;
  for (size_t i = 0; code && i < sizeof backend / sizeof backend[0]; i++)
    if (strcmp(code, backend[i]) == 0)
      return EXIT_BACKEND;
  return EXIT_STREAM;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "seastreamer run: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (see --help)\n");
  return EXIT_USAGE;
}

/* "name=URI" names an output; a bare URI has "://" before any '='. */
static int is_named(const char *s) {
  const char *eq = strchr(s, '=');
  const char *sep = strstr(s, "://");
  return eq != NULL && (sep == NULL || eq < sep) && eq > s;
}

/* The largest number an option takes: every whole number up to it is exact in a double, and
 * none overflows a limit's arithmetic (--max-ms in ns, --max-memory in bytes, further bounded). */
#define OPT_MAX 9007199254740992.0        /* 2^53 */
#define MAX_MB ((double)(SIZE_MAX >> 20)) /* --max-memory: its bytes fit in a size_t */

static int positive(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (*s == '\0' || *end != '\0' || !(v > 0) || v > OPT_MAX)
    return 0;
  *out = v;
  return 1;
}

/* Set t[key] = value in the table field `table` of the config table on top of L. */
static void set_in(lua_State *L, const char *table, const char *key, const char *value) {
  lua_getfield(L, -1, table);
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
  lua_pop(L, 1);
}

enum {
  OPT_HELP = 256,
  OPT_INPUT,
  OPT_OUTPUT,
  OPT_ON_ERROR,
  OPT_NUMBER, /* the numeric options: which one is in numeric_field */
  OPT_TXID,
  OPT_MAX_MEMORY,
  OPT_EOS,
  OPT_JOIN,
  OPT_STATS,
  OPT_STATS_JSON,
  OPT_MODE,
  OPT_METRICS,
};

/* Parse argv into the config table on top of L (getopt_long, as every other command: --opt=value
 * or --opt value, options before or after the script). Returns 0 or an exit status. */
static int parse_args(lua_State *L, int argc, char **argv, const char **script, double *max_mb) {
  static const struct option longopts[] = {
      {"help", no_argument, NULL, OPT_HELP},
      {"input", required_argument, NULL, OPT_INPUT},
      {"output", required_argument, NULL, OPT_OUTPUT},
      {"on-error", required_argument, NULL, OPT_ON_ERROR},
      {"max-instructions", required_argument, NULL, OPT_NUMBER},
      {"max-ms", required_argument, NULL, OPT_NUMBER},
      {"tick-ms", required_argument, NULL, OPT_NUMBER},
      {"commit-interval", required_argument, NULL, OPT_NUMBER},
      {"count", required_argument, NULL, OPT_NUMBER},
      {"join-wait", required_argument, NULL, OPT_NUMBER},
      {"join-max", required_argument, NULL, OPT_NUMBER},
      {"transactional-id", required_argument, NULL, OPT_TXID},
      {"max-memory", required_argument, NULL, OPT_MAX_MEMORY},
      {"exactly-once", no_argument, NULL, OPT_EOS},
      {"join", no_argument, NULL, OPT_JOIN},
      {"stats", optional_argument, NULL, OPT_STATS},
      {"stats-json", optional_argument, NULL, OPT_STATS_JSON},
      {"mode", required_argument, NULL, OPT_MODE},
      {"metrics", required_argument, NULL, OPT_METRICS},
      {NULL, 0, NULL, 0}};
  /* The config field of each numeric option, by its long name ("count" is -c too). */
  static const char *const numeric[][2] = {{"max-instructions", "max_instructions"},
                                           {"max-ms", "max_ms"},
                                           {"tick-ms", "tick_ms"},
                                           {"commit-interval", "commit_interval_ms"},
                                           {"count", "max_count"},
                                           {"join-wait", "join_wait_ms"},
                                           {"join-max", "join_max"}};
  int nin = 0, ndef = 0;
  lua_newtable(L); /* config */
  static const char *const tables[] = {"inputs", "outputs", "input_options", "output_options"};
  for (size_t k = 0; k < sizeof tables / sizeof tables[0]; k++) {
    lua_newtable(L);
    lua_setfield(L, -2, tables[k]);
  }
  int c, li = -1;
  optind = 1;
  opterr = 0;
  int quiet = 0, verbose = 0;
  while ((c = getopt_long(argc, argv, ":hI:O:X:o:G:c:eqv", longopts, &li)) != -1) {
    const char *name = li >= 0 ? longopts[li].name : NULL;
    li = -1;
    double num;
    switch (c) {
    case 'h':
    case OPT_HELP:
      fputs(help, stdout);
      return -1;
    case OPT_EOS:
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "exactly_once");
      break;
    case OPT_JOIN:
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "join");
      break;
    case 'e':
      set_in(L, "input_options", "stop_at_end", "true");
      break;
    case 'q':
      quiet = 1;
      break;
    case 'v':
      verbose++;
      break;
    case 'o': /* where the inputs start, as in consume and relay */
      set_in(L, "input_options", "start", optarg);
      break;
    case 'G': /* a group, as in consume and relay: load-balanced unless --mode says otherwise */
      set_in(L, "input_options", "group", optarg);
      lua_getfield(L, -1, "input_options");
      lua_getfield(L, -1, "mode");
      if (lua_isnil(L, -1)) {
        lua_pushstring(L, "load-balanced");
        lua_setfield(L, -3, "mode");
      }
      lua_pop(L, 2);
      break;
    case OPT_MODE:
      set_in(L, "input_options", "mode", optarg);
      break;
    case OPT_METRICS: /* checked when it listens, before anything connects */
      lua_pushstring(L, optarg);
      lua_setfield(L, -2, "metrics");
      break;
    case OPT_STATS:
    case OPT_STATS_JSON: {
      double secs = 5;
      if (optarg && !positive(optarg, &secs))
        return usage_error("--%s=%s: expected a positive number of seconds", name, optarg);
      lua_pushnumber(L, secs * 1000 < 1 ? 1 : secs * 1000);
      lua_setfield(L, -2, "stats_interval_ms");
      lua_pushboolean(L, c == OPT_STATS_JSON);
      lua_setfield(L, -2, "stats_json");
      break;
    }
    case OPT_INPUT:
      lua_getfield(L, -1, "inputs");
      lua_pushstring(L, optarg);
      lua_rawseti(L, -2, ++nin);
      lua_pop(L, 1);
      break;
    case OPT_OUTPUT:
      lua_getfield(L, -1, "outputs");
      if (is_named(optarg)) {
        const char *eq = strchr(optarg, '=');
        if (eq[1] == '\0')
          return usage_error("--output %s: no URI after '='", optarg);
        lua_pushlstring(L, optarg, (size_t)(eq - optarg));
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (!lua_isnil(L, -1))
          return usage_error("output '%s' is named twice", lua_tostring(L, -2));
        lua_pop(L, 1);
        lua_pushstring(L, eq + 1);
        lua_rawset(L, -3);
      } else {
        if (ndef++)
          return usage_error("a second default output '%s': name it (--output NAME=URI)", optarg);
        lua_pushstring(L, optarg);
        lua_rawseti(L, -2, 1);
      }
      lua_pop(L, 1);
      break;
    case OPT_ON_ERROR:
      if (strcmp(optarg, "stop") == 0 || strcmp(optarg, "skip") == 0) {
        lua_pushstring(L, optarg);
      } else if (strncmp(optarg, "dead-letter=", 12) == 0 && optarg[12]) {
        lua_pushstring(L, optarg + 12);
        lua_setfield(L, -2, "dead_letter");
        lua_pushstring(L, "dead-letter");
      } else {
        return usage_error("--on-error '%s': expected stop, skip or dead-letter=URI", optarg);
      }
      lua_setfield(L, -2, "on_error");
      break;
    case 'c':
      name = "count";
      /* fall through */
    case OPT_NUMBER: {
      if (!positive(optarg, &num))
        return usage_error("%s%s needs a positive number (at most 2^53), not '%s'",
                           c == 'c' ? "-" : "--", c == 'c' ? "c" : name, optarg);
      const char *field = "max_count";
      for (size_t k = 0; k < sizeof numeric / sizeof numeric[0]; k++)
        if (strcmp(numeric[k][0], name) == 0)
          field = numeric[k][1];
      lua_pushnumber(L, num);
      lua_setfield(L, -2, field);
      break;
    }
    case OPT_TXID:
      lua_pushstring(L, optarg);
      lua_setfield(L, -2, "transactional_id");
      break;
    case OPT_MAX_MEMORY:
      if (!positive(optarg, &num) || num > MAX_MB)
        return usage_error("--max-memory needs a positive number of MB (at most %.0f), not '%s'",
                           MAX_MB, optarg);
      *max_mb = num;
      break;
    case 'I':
    case 'X': /* as in consume and relay: an option of the consuming side */
    case 'O': {
      const char *eq = strchr(optarg, '=');
      if (eq == NULL || eq == optarg)
        return usage_error("bad option '%s': expected key=value", optarg);
      lua_getfield(L, -1, c == 'O' ? "output_options" : "input_options");
      lua_pushlstring(L, optarg, (size_t)(eq - optarg));
      lua_pushstring(L, eq + 1);
      lua_rawset(L, -3);
      lua_pop(L, 1);
      break;
    }
    case ':':
      return usage_error("option %s needs a value", argv[optind - 1]);
    default:
      return usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (quiet && verbose)
    return usage_error("-q and -v contradict each other");
  /* Before any runtime exists, so the level holds from the first line (as consume's -q/-v). */
  if (quiet)
    setenv("SEASTREAMER_LOG", "error", 1);
  else if (verbose)
    setenv("SEASTREAMER_LOG", verbose > 1 ? "debug" : "info", 1);
  for (int i = optind; i < argc; i++) {
    if (*script)
      return usage_error("unexpected argument '%s': one script only", argv[i]);
    *script = argv[i];
  }
  lua_getfield(L, -1, "join");
  int joined = lua_toboolean(L, -1);
  lua_getfield(L, -2, "exactly_once");
  int eos = lua_toboolean(L, -1);
  lua_getfield(L, -3, "join_wait_ms");
  lua_getfield(L, -4, "join_max");
  int join_opts = !lua_isnil(L, -1) || !lua_isnil(L, -2);
  lua_getfield(L, -5, "transactional_id");
  int txid = !lua_isnil(L, -1);
  lua_pop(L, 5);
  if (txid && !eos)
    return usage_error("%s", "--transactional-id goes with --exactly-once");
  if (joined && eos)
    return usage_error("%s", "--join with --exactly-once is not supported");
  if (join_opts && !joined)
    return usage_error("%s", "--join-wait and --join-max go with --join");
  if (*script == NULL)
    return usage_error("%s", "expected a script");
  if (ndef == 0)
    return usage_error("%s", "expected a default --output URI");
  return 0;
}

/* Load the script and run its top-level code within the limits in the config table at cfg (and
 * the heap's), as one call. Leaves what it returned on the stack and returns 0, or prints the
 * error and returns an exit status. */
static int load_script(lua_State *L, int cfg, const char *script, heap_t *heap, double max_mb) {
  load_limits_t lim;
  memset(&lim, 0, sizeof lim);
  lim.script = script;
  lua_getfield(L, cfg, "max_instructions");
  lim.l.max_instructions = (uint64_t)lua_tonumber(L, -1); /* parse_args made it positive or nil */
  lua_getfield(L, cfg, "max_ms");
  lim.l.max_ms = (uint64_t)lua_tonumber(L, -1);
  lua_pop(L, 2);
  int limited = lim.l.max_instructions || lim.l.max_ms;
  if (limited) {
#ifdef SEA_LUAJIT
    /* Compiled code never calls hooks: the limits need the interpreter. */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
#endif
    sea_lua_limits_arm(&lim.l);
    load_limits = &lim;
    lua_sethook(L, load_hook, LUA_MASKCOUNT, 1000);
  }
  lua_pushcfunction(L, sea_lua_error_handler);
  int msgh = lua_gettop(L);
  int loaded = luaL_loadfile(L, script) == 0;
  int rc = loaded ? lua_pcall(L, 0, 1, msgh) : LUA_ERRFILE;
  lua_remove(L, msgh);
  if (limited) {
    lua_sethook(L, NULL, 0, 0);
    load_limits = NULL;
#ifdef SEA_LUAJIT
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_ON);
#endif
  }
  /* A limit hit fails the load even if the script caught the error and returned a processor. */
  const char *err = NULL;
  if (rc != 0)
    err = lua_tostring(L, -1) ? lua_tostring(L, -1) : "(error object is not a string)";
  if (lim.tripped)
    err = lim.msg; /* the cause, whatever the script raised after it */
  char over[128] = "";
  if (heap->tripped)
    snprintf(over, sizeof over, "memory limit exceeded while loading (--max-memory %g MB)", max_mb);
  else if (!lim.tripped && lim.l.max_ms && uv_hrtime() > lim.l.deadline_ns)
    snprintf(over, sizeof over, "time limit exceeded while loading (--max-ms %llu)",
             (unsigned long long)lim.l.max_ms);
  if (err == NULL && over[0] == '\0')
    return 0;
  if (!loaded)
    fprintf(stderr, "seastreamer run: %s%s%s%s%s\n",
            strncmp(err, "cannot ", 7) ? "cannot load " : "", err, over[0] ? " (" : "", over,
            over[0] ? ")" : "");
  else if (err && over[0])
    fprintf(stderr, "seastreamer run: %s failed while loading: %s (%s)\n", script, err, over);
  else
    fprintf(stderr, "seastreamer run: %s failed while loading: %s\n", script, err ? err : over);
  return EXIT_USAGE;
}

static int run_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  double *max_mb = lua_touserdata(L, 3);
  heap_t *heap = lua_touserdata(L, 4);
  lua_settop(L, 0);
  const char *script = NULL;
  int rc = parse_args(L, argc, argv, &script, max_mb);
  if (rc != 0) {
    lua_pushinteger(L, rc < 0 ? EXIT_OK : rc);
    return 1;
  }
  int cfg = lua_gettop(L);
  lua_pushstring(L, script);
  lua_setfield(L, cfg, "name");
  char limit[64]; /* said with a memory error of a processor call (run_call.c) */
  snprintf(limit, sizeof limit, "memory limit reached: --max-memory %g MB", *max_mb);
  lua_pushlightuserdata(L, (void *)&sea_lua_memory_limit_key);
  lua_pushstring(L, limit);
  lua_rawset(L, LUA_REGISTRYINDEX);
  /* No max_memory_kb: the heap's allocator is the limit (failing the allocation that passes it,
   * in whatever call makes it), so a per-message processor can still run driven (run.c). */
  lua_pushboolean(L, 1);
  lua_setfield(L, cfg, "signals");
  rc = load_script(L, cfg, script, heap, *max_mb);
  if (rc != 0) {
    lua_pushinteger(L, rc);
    return 1;
  }
  lua_setfield(L, cfg, "processor");
  lua_pushcfunction(L, sea_lua_run);
  lua_pushvalue(L, cfg);
  if (lua_pcall(L, 1, 3, 0) != 0) {
    fprintf(stderr, "seastreamer run: %s\n", lua_tostring(L, -1));
    lua_pushinteger(L, EXIT_USAGE);
    return 1;
  }
  if (lua_isnil(L, -3)) {
    fprintf(stderr, "seastreamer run: %s\n", lua_tostring(L, -2));
    lua_pushinteger(L, exit_for_code(lua_tostring(L, -1)));
    return 1;
  }
  lua_getfield(L, -3, "late");
  if (lua_tonumber(L, -1) > 0)
    fprintf(stderr,
            "seastreamer run: --join: %.0f message(s) arrived older than messages already "
            "processed (late: processed out of time order; a longer --join-wait waits more)\n",
            (double)lua_tonumber(L, -1));
  lua_pushinteger(L, EXIT_OK);
  return 1;
}

int main(int argc, char **argv) {
  heap_t heap = {.limit = (size_t)1024 * 1024 * 1024};
  double max_mb = 1024;
  for (int i = 1; i + 1 < argc; i++) /* the limit applies from the first allocation */
    if (strcmp(argv[i], "--max-memory") == 0) {
      double v = strtod(argv[i + 1], NULL);
      if (v > 0 && v <= MAX_MB) /* (parse_args refuses the others) */
        heap.limit = (size_t)(v * 1024 * 1024);
    }
  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "seastreamer run: cannot create a Lua state\n");
    return EXIT_STREAM;
  }
  heap.inner = lua_getallocf(L, &heap.inner_ud);
  heap.used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
#if LUA_VERSION_NUM >= 504
  heap.pooled = 1; /* 5.4's own allocator is realloc and free (luaL_newstate) */
#endif
  lua_setallocf(L, heap.pooled ? limited_pooled_alloc : limited_alloc, &heap);
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_seastreamer);
  lua_setfield(L, -2, "seastreamer");
  lua_pop(L, 2);
  lua_pushcfunction(L, run_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushlightuserdata(L, &max_mb);
  lua_pushlightuserdata(L, &heap);
  int status;
  if (lua_pcall(L, 4, 1, 0) != 0) {
    fprintf(stderr, "seastreamer run: %s\n", lua_tostring(L, -1));
    status = EXIT_USAGE;
  } else {
    status = (int)lua_tointeger(L, -1);
  }
  lua_close(L);
  heap_release(&heap);
  return status;
}
