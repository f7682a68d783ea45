/* cmd_run.c: `run`: hands over to the Lua processor runner (seastreamer-run-lua5.4 or
 * seastreamer-run-luajit), which is built with the Lua it embeds; the command itself links no Lua.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifndef SEA_RUNNER_REL_DIR
#define SEA_RUNNER_REL_DIR "../libexec/seastreamer"
#endif

/* The runner for flavour: next to this executable in a build tree (lua/), else the one installed
 * with the library this command runs on (found from the library's own location, so a tree
 * installed anywhere, staged with DESTDIR or in a LuaRocks tree uses its own runner). On failure
 * tried lists where it looked. */
static int find_runner(const char *flavour, char *path, size_t len, char *tried, size_t tlen) {
  char self[PATH_MAX];
  tried[0] = '\0';
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = '\0';
      snprintf(path, len, "%s/lua/seastreamer-run-%s", self, flavour);
      if (access(path, X_OK) == 0)
        return 0;
      snprintf(tried, tlen, "%s", path);
    }
  }
  const char *lib = sea_library_dir();
  if (lib == NULL)
    return -1;
  snprintf(path, len, "%s/%s/seastreamer-run-%s", lib, SEA_RUNNER_REL_DIR, flavour);
  if (access(path, X_OK) == 0)
    return 0;
  size_t used = strlen(tried);
  snprintf(tried + used, tlen - used, "%s%s", used ? ", " : "", path);
  return -1;
}

int cmd_run(int argc, char **argv) {
  /* Without --lua or SEASTREAMER_LUA: 5.4, or LuaJIT where only that runner is installed. */
  const char *lua = getenv("SEASTREAMER_LUA"), *from = "SEASTREAMER_LUA=";
  if (lua == NULL || lua[0] == '\0') {
    char probe[PATH_MAX + 64], tried[2 * PATH_MAX + 200];
    lua = find_runner("lua5.4", probe, sizeof probe, tried, sizeof tried) != 0 &&
                  find_runner("luajit", probe, sizeof probe, tried, sizeof tried) == 0
              ? "luajit"
              : "5.4";
  }
  /* Take --lua out of the arguments; everything else is the runner's. */
  char **args = calloc((size_t)argc + 1, sizeof *args);
  if (args == NULL)
    return EXIT_STREAM;
  int k = 0;
  for (int i = 0; i < argc; i++) {
    if (i > 0 && strcmp(argv[i], "--lua") == 0) {
      if (i + 1 >= argc) {
        cli_error("run", "--lua needs a value: 5.4 or luajit");
        free(args);
        return EXIT_USAGE;
      }
      lua = argv[++i];
      from = "--lua ";
    } else if (i > 0 && strncmp(argv[i], "--lua=", 6) == 0) {
      lua = argv[i] + 6;
      from = "--lua ";
    } else {
      args[k++] = argv[i];
    }
  }
  const char *flavour;
  if (strcmp(lua, "5.4") == 0 || strcmp(lua, "lua5.4") == 0)
    flavour = "lua5.4";
  else if (strcmp(lua, "luajit") == 0 || strcmp(lua, "jit") == 0)
    flavour = "luajit";
  else {
    cli_error("run", "%s'%s': expected 5.4 or luajit", from, lua);
    free(args);
    return EXIT_USAGE;
  }
  char path[PATH_MAX + 64], tried[2 * PATH_MAX + 200];
  if (find_runner(flavour, path, sizeof path, tried, sizeof tried) != 0) {
    cli_error("run", "the %s runner is not installed (looked for %s)", flavour, tried);
    free(args);
    return EXIT_BACKEND;
  }
  args[0] = path;
  execv(path, args);
  cli_error("run", "cannot start %s: %s", path, strerror(errno));
  free(args);
  return EXIT_BACKEND;
}
