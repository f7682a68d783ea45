/* main.c: the seastreamer command: dispatch to a subcommand, shared error reporting. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage_head[] =
    "usage: seastreamer <command> [options]\n"
    "\n"
    "Stream processing over Kafka, Redis Streams, stdio and .ss files, one API for all.\n"
    "\n"
    "commands:\n"
    "  relay IN_URI OUT_URI   move messages from one backend to another, entirely in C\n"
    "  consume URI            print messages (stdio line form by default)\n"
    "  produce URI            send one message per line of stdin\n"
    "  list URI               list streams, shards and groups with their counts and lag\n"
    "                         (-L URI is the same; -J for JSON)\n"
    "  plugins                list the plugins found: loaded or refused, and why\n"
    "  clock                  print a tick message at an interval (a source for demos)\n"
    "  run SCRIPT.lua ...     run a Lua stream processor (--input URI --output URI)\n"
    "  version                print the version\n";

/* After the host's commands, those the plugins add (the file backend's decode, verify, repair),
 * then this. */
static const char usage_tail[] =
    "\n"
    "Commands after `version` come from the plugins found (`seastreamer plugins`).\n"
    "URIs: scheme://node1[,node2...]/key1[,key2...]   e.g. stdio:///orders,\n"
    "      kafka://a:9092,b:9092/orders, redis://localhost:6379/orders\n"
    "Run `seastreamer <command> --help` for a command's options.\n"
    "\n"
    "exit status: 0 success; 1 the stream failed (backend error, broken pipe);\n"
    "  2 bad usage or input (arguments, URI, option, stream key, malformed line, oversize\n"
    "  payload); 3 no backend (unknown scheme, plugin refused or missing, cannot connect).\n"
    "\n"
    "files: plugins, runners and the library are found relative to where libseastreamer is\n"
    "  installed (<libdir>/seastreamer/plugins, <libexecdir>/seastreamer); no variable needed.\n"
    "\n"
    "environment: SEASTREAMER_PLUGIN_DIR replaces the installed plugin directory;\n"
    "  SEASTREAMER_PLUGIN_PATH adds directories (':'-separated) searched after it;\n"
    "  SEASTREAMER_LOG=error|warn|info|debug sets what is logged to stderr (default warn;\n"
    "  another value is refused), one line each: time (UTC), level, plugin, message.\n";

void cli_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "seastreamer %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_exit_for(int err) {
  switch (err) {
  case 0:
  case SEA_EOF:
    return EXIT_OK;
  case SEA_EINVAL:
  case SEA_EURI:
  case SEA_EKEY:
  case SEA_EOPTION:
  case SEA_EFORMAT:
  case SEA_ETOOBIG:
    return EXIT_USAGE;
  case SEA_ESCHEME:
  case SEA_EPLUGIN:
  case SEA_ECONNECT:
  case SEA_ENOTSUP:
    return EXIT_BACKEND;
  default:
    return EXIT_STREAM;
  }
}

int cli_help_only(const char *cmd, int argc, char **argv, const char *help, int *shown) {
  static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c;
  *shown = 0;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    if (c == 'h') {
      fputs(help, stdout);
      *shown = 1;
      return 0;
    }
    cli_error(cmd, "unknown option '%s' (see --help)", argv[optind - 1]);
    return EXIT_USAGE;
  }
  return 0;
}

int cli_option(const char *cmd, sea_options_t *opts, const char *kv) {
  int rc = sea_options_parse(opts, kv);
  if (rc == 0)
    return 0;
  cli_error(cmd, "bad option '%s': expected key=value with a key of A-Z a-z 0-9 . _ -", kv);
  return EXIT_USAGE;
}

/* An unknown SEASTREAMER_LOG level is a usage error, whatever the command: a typo there would
 * otherwise silently log at the default level. */
static int check_log_env(void) {
  static const char *const levels[] = {"error", "warn", "info", "debug"};
  const char *v = getenv("SEASTREAMER_LOG");
  if (v == NULL || v[0] == '\0')
    return 0;
  for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
    if (strcmp(v, levels[i]) == 0)
      return 0;
  fprintf(stderr,
          "seastreamer: SEASTREAMER_LOG=%s: unknown log level (valid: error, warn, info, "
          "debug)\n",
          v);
  return EXIT_USAGE;
}

static const struct {
  const char *name;
  int (*fn)(int, char **);
} cmds[] = {{"relay", cmd_relay},     {"consume", cmd_consume},
            {"produce", cmd_produce}, {"plugins", cmd_plugins},
            {"clock", cmd_clock},     {"run", cmd_run},
            {"list", cmd_list},       {"-L", cmd_list},
            {"version", NULL},        {"help", NULL}};

static int builtin(const char *name) {
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (strcmp(name, cmds[i].name) == 0)
      return 1;
  return 0;
}

/* The usage, with the commands of the plugins found (none if no runtime can be made). */
static void print_usage(FILE *out) {
  sea_runtime_t *rt;
  fputs(usage_head, out);
  if (sea_runtime_new(&rt) == 0) {
    const char *name, *args, *summary;
    for (size_t i = 0; sea_runtime_command_info(rt, i, &name, &args, &summary, NULL) == 0; i++) {
      if (builtin(name))
        continue;
      char left[64];
      snprintf(left, sizeof left, "%s%s%s", name, *args ? " " : "", args);
      fprintf(out, "  %-22s %s\n", left, summary);
    }
    sea_runtime_free(rt);
  }
  fputs(usage_tail, out);
}

/* A command a plugin adds (plugin ABI 1.3), or an unknown one. */
static int plugin_command(int argc, char **argv) {
  const char *cmd = argv[0];
  sea_runtime_t *rt;
  int status = EXIT_USAGE;
  if (sea_runtime_new(&rt) != 0) {
    cli_error(cmd, "cannot create the runtime");
    return EXIT_STREAM;
  }
  if (sea_runtime_command_run(rt, cmd, argc, argv, &status) != 0) {
    fprintf(stderr,
            "seastreamer: unknown command '%s': neither the command's own nor one a plugin found "
            "adds (run `seastreamer --help`; `seastreamer plugins` lists the plugins)\n",
            cmd);
    status = EXIT_USAGE;
  }
  sea_runtime_free(rt);
  return status;
}

int main(int argc, char **argv) {
  if (check_log_env() != 0)
    return EXIT_USAGE;
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? EXIT_USAGE : EXIT_OK;
  }
  const char *cmd = argv[1];
  if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
    printf("seastreamer %s\n", sea_version_string());
    return EXIT_OK;
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
    if (cmds[i].fn && strcmp(cmd, cmds[i].name) == 0)
      return cmds[i].fn(argc - 1, argv + 1);
  return plugin_command(argc - 1, argv + 1);
}
