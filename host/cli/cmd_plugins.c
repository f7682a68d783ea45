/* cmd_plugins.c: `seastreamer plugins`: every plugin found, loaded or refused, and why. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Where the search went, in order: the plugin directory and why that one, then the path. */
static void print_searched(FILE *out) {
  const char *dir = getenv("SEASTREAMER_PLUGIN_DIR");
  const char *path = getenv("SEASTREAMER_PLUGIN_PATH");
  const char *lib = sea_library_dir();
  if (dir && *dir)
    fprintf(out, "searched %s (SEASTREAMER_PLUGIN_DIR)\n", dir);
  else
    fprintf(out, "searched %s (installed with %s)\n", sea_plugin_install_dir(),
            lib ? lib : "libseastreamer");
  if (path && *path)
    fprintf(out, "searched %s (SEASTREAMER_PLUGIN_PATH)\n", path);
}

/* --options: the backend options plugin i declares, under its line. */
static void print_options(sea_runtime_t *rt, size_t i) {
  int n = sea_runtime_plugin_options(rt, i, NULL, 0);
  char *buf = n > 0 ? malloc((size_t)n + 1) : NULL;
  if (n == SEA_ENOTSUP)
    printf("  (no option table: the plugin checks its options itself)\n");
  else if (n == 0)
    printf("  (no options)\n");
  else if (buf != NULL && sea_runtime_plugin_options(rt, i, buf, (size_t)n + 1) == n)
    fputs(buf, stdout);
  free(buf);
}

int cmd_plugins(int argc, char **argv) {
  static const char help[] =
      "usage: seastreamer plugins [--options]\n\n"
      "Lists each plugin file found, with its schemes, or why it was refused, then where it\n"
      "looked: the plugin directory installed with libseastreamer (found from where the\n"
      "library is, so it follows the installation), or $SEASTREAMER_PLUGIN_DIR instead, then\n"
      "each directory of $SEASTREAMER_PLUGIN_PATH. Exit status 0, or 1 if any plugin was\n"
      "refused.\n\n"
      "  -o, --options   under each loaded plugin, the backend options it takes (-X, -I and -O\n"
      "                  KEY=VALUE; the table the plugin declares): what each does, its range\n"
      "                  and its default\n";
  static const struct option longopts[] = {
      {"help", no_argument, NULL, 'h'}, {"options", no_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
  int c, options = 0;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":ho", longopts, NULL)) != -1) {
    if (c == 'h') {
      fputs(help, stdout);
      return EXIT_OK;
    } else if (c == 'o') {
      options = 1;
    } else {
      cli_error("plugins", "unknown option '%s' (see --help)", argv[optind - 1]);
      return EXIT_USAGE;
    }
  }
  if (optind < argc) {
    cli_error("plugins", "unexpected argument '%s'", argv[optind]);
    return EXIT_USAGE;
  }
  sea_runtime_t *rt;
  if (sea_runtime_new(&rt) != 0) {
    cli_error("plugins", "cannot create the runtime");
    return EXIT_STREAM;
  }
  size_t n = sea_runtime_plugin_count(rt), refused = 0;
  if (n == 0)
    printf("no plugins found\n");
  for (size_t i = 0; i < n; i++) {
    sea_plugin_info_t info;
    sea_runtime_plugin_info(rt, i, &info);
    if (info.refused) {
      refused++;
      printf("refused  %s: %s\n", info.path, info.refused);
    } else {
      printf("loaded   %s %s  schemes: %s  (%s)%s%s\n", info.name, info.version, info.schemes,
             info.path, info.shadowed_by ? "  shadowed by " : "",
             info.shadowed_by ? info.shadowed_by : "");
      if (options)
        print_options(rt, i);
    }
  }
  print_searched(stdout);
  sea_runtime_free(rt);
  return refused ? EXIT_STREAM : EXIT_OK;
}
