/* cli.h: what the seastreamer command's subcommands share. */
#ifndef SEA_CLI_H
#define SEA_CLI_H

#include <seastreamer/seastreamer.h>

/* Exit statuses (documented in `seastreamer --help` and docs/cli.md). */
enum {
  EXIT_OK = 0,
  EXIT_STREAM = 1, /* the stream failed: backend error, broken pipe */
  EXIT_USAGE = 2,  /* bad arguments or bad input: URI, option, key, malformed line, oversize */
  EXIT_BACKEND = 3 /* no backend: unknown scheme, plugin refused, cannot connect */
};

int cmd_relay(int argc, char **argv);
int cmd_consume(int argc, char **argv);
int cmd_produce(int argc, char **argv);
int cmd_plugins(int argc, char **argv);
int cmd_clock(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_list(int argc, char **argv);

/* Map an error code to an exit status. */
int cli_exit_for(int err);
/* Print "seastreamer <cmd>: message" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* For a command whose only option is -h/--help: parse argv with getopt_long as every command
 * does. Prints help to stdout and sets *help, or reports an unknown option; returns 0 (optind is
 * the first operand) or an exit status. */
int cli_help_only(const char *cmd, int argc, char **argv, const char *help, int *shown);
/* Parse "-X key=value" into opts, reporting a bad one. Returns 0 or an exit status. */
int cli_option(const char *cmd, sea_options_t *opts, const char *kv);

#endif
