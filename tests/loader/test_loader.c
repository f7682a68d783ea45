/* test_loader.c: every refusal of the plugin loader, directory scans and the search order. */
/*
 * usage: test_loader BAD_DIR SHADOW_DIR NONE_DIR
 *   BAD_DIR     the plugins of CMakeLists.txt, each wrong in one way, plus good.so and future.so
 *   SHADOW_DIR  good.so again, called good-shadow, to be found after BAD_DIR
 *   NONE_DIR    a directory that does not exist: the plugin dir when a case must see no other
 *               plugin (the installed ones in particular)
 */
#include <seastreamer/seastreamer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static const char *bad_dir, *shadow_dir, *none_dir;

/* One file of BAD_DIR and what the loader must make of it. */
typedef struct plugin_case {
  const char *file;
  const char *scheme; /* what a good build of it would offer; NULL when it offers none */
  const char *reason; /* a part of the refusal message; NULL: it must load */
} plugin_case_t;

static const plugin_case_t cases[] = {
    {"abi-major.so", "abi-major", "ABI major version 2"},
    {"abi-minor.so", "abi-minor", "newer than this host"},
    {"small-struct.so", "small-struct", "smaller than ABI 1.0"},
    {"no-connect.so", "no-connect", "lacks the required operation connect"},
    {"no-send.so", "no-send", "lacks the required operation producer_send"},
    {"no-schemes.so", NULL, "declares no URI scheme"},
    /* it could never be used: a URI's scheme is looked up lower-cased */
    {"upper-scheme.so", "upper-scheme",
     "plugin 'upper-scheme' declares the URI scheme 'Echo': a scheme is a lower-case letter"},
    {"null-entry.so", "null-entry", "returned no descriptor"},
    {"no-entry.so", "no-entry", "exports no 'sea_plugin_entry' symbol"},
    {"data-entry.so", "data-entry", "its 'sea_plugin_entry' is a data object, not a function"},
    {"option-default.so", "option-default",
     "plugin 'option-default': option 'size': default '0': below the minimum 1"},
    {"option-twice.so", "option-twice", "plugin 'option-twice': option 'colour' is declared twice"},
    {"not-elf.so", NULL, "not an ELF shared object"},
    {"empty.so", NULL, "not an ELF shared object"},
    {"good.so", "good", NULL},
    {"future.so", "future", NULL}, /* struct_size larger than this host's sea_plugin_t */
    /* ABI 1.0 (with a list, 1.1's member): its messages have the layout of before 1.4 */
    {"minor-zero.so", "minor-zero", "built for ABI 1.0, older than 1.4, which changed the layout"},
};
#define CASE_COUNT (sizeof cases / sizeof cases[0])

static void join(char *buf, size_t len, const char *dir, const char *file) {
  snprintf(buf, len, "%s/%s", dir, file);
}

/* Only the plugins the case names: none from the installed dir or the caller's environment. */
static void env_only(const char *dir, const char *path) {
  setenv("SEASTREAMER_PLUGIN_DIR", dir, 1);
  if (path)
    setenv("SEASTREAMER_PLUGIN_PATH", path, 1);
  else
    unsetenv("SEASTREAMER_PLUGIN_PATH");
}

static sea_runtime_t *runtime(void) {
  sea_runtime_t *rt = NULL;
  int rc = sea_runtime_new(&rt);
  CHECK_EQ_INT(rc, 0);
  if (rc != 0) {
    fprintf(stderr, "cannot create a runtime: %s\n", sea_strerror(rc));
    exit(1);
  }
  return rt;
}

static void runtime_free(sea_runtime_t *rt) {
  CHECK_EQ_INT(sea_runtime_free(rt), 0);
}

/* The info of the plugin loaded from path, or 0 if it is not listed. */
static int find_info(sea_runtime_t *rt, const char *path, sea_plugin_info_t *info) {
  size_t n = sea_runtime_plugin_count(rt);
  for (size_t i = 0; i < n; i++)
    if (sea_runtime_plugin_info(rt, i, info) == 0 && strcmp(info->path, path) == 0)
      return 1;
  return 0;
}

/* connect to SCHEME:///k fails with SEA_ESCHEME and a message that names the scheme. */
static void check_no_scheme(sea_runtime_t *rt, const char *scheme) {
  char uri[128], quoted[128];
  snprintf(uri, sizeof uri, "%s:///k", scheme);
  snprintf(quoted, sizeof quoted, "'%s'", scheme);
  sea_streamer_t *s = NULL;
  CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), SEA_ESCHEME);
  CHECK(s == NULL);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), quoted);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "unknown scheme");
}

/* ---- one file at a time: sea_runtime_load_plugin_file ---- */

/* Each refusal alone in its runtime: the code, a message with the file and the reason, a listing
 * that says refused, and a scheme nobody serves. */
static void test_refusal(const plugin_case_t *c) {
  char path[4096];
  sea_plugin_info_t info;
  join(path, sizeof path, bad_dir, c->file);
  env_only(none_dir, NULL);
  sea_runtime_t *rt = runtime();
  CHECK_EQ_INT(sea_runtime_load_plugin_file(rt, path), SEA_EPLUGIN);
  const char *msg = sea_runtime_errmsg(rt);
  CHECK_CONTAINS(msg, path);
  CHECK_CONTAINS(msg, "refused");
  CHECK_CONTAINS(msg, c->reason);
  CHECK_EQ_INT(sea_runtime_plugin_count(rt), 1);
  CHECK_EQ_INT(sea_runtime_plugin_info(rt, 0, &info), 0);
  CHECK_STR(info.path, path);
  CHECK_CONTAINS(info.refused, c->reason);
  CHECK(info.name == NULL && info.schemes == NULL && info.version == NULL);
  CHECK(info.shadowed_by == NULL);
  if (c->scheme)
    check_no_scheme(rt, c->scheme);
  runtime_free(rt);
}

/* A file that is not there is refused too, with the system's reason. */
static void test_missing_file(void) {
  char path[4096];
  join(path, sizeof path, bad_dir, "no-such-file.so");
  env_only(none_dir, NULL);
  sea_runtime_t *rt = runtime();
  CHECK_EQ_INT(sea_runtime_load_plugin_file(rt, path), SEA_EPLUGIN);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), path);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "cannot open");
  runtime_free(rt);
}

/* A directory is not a plugin, even one named *.so. */
static void test_directory(void) {
  env_only(none_dir, NULL);
  sea_runtime_t *rt = runtime();
  CHECK_EQ_INT(sea_runtime_load_plugin_file(rt, bad_dir), SEA_EPLUGIN);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), bad_dir);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "not a regular file");
  runtime_free(rt);
}

/* A FIFO named *.so neither blocks a load nor a scan (open would wait for a writer): refused. */
static void test_fifo(void) {
  char dir[2048], path[4096];
  snprintf(dir, sizeof dir, "%s-fifo", none_dir);
  join(path, sizeof path, dir, "x.so");
  mkdir(dir, 0755);
  unlink(path);
  CHECK_EQ_INT(mkfifo(path, 0644), 0);
  env_only(none_dir, NULL);
  sea_runtime_t *rt = runtime();
  CHECK_EQ_INT(sea_runtime_load_plugin_file(rt, path), SEA_EPLUGIN);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), path);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "not a regular file");
  runtime_free(rt);
  env_only(dir, NULL); /* a scan of the directory that holds it */
  rt = runtime();
  check_no_scheme(rt, "x");
  sea_plugin_info_t info;
  CHECK(find_info(rt, path, &info));
  CHECK_CONTAINS(info.refused, "not a regular file");
  runtime_free(rt);
  unlink(path);
  rmdir(dir);
}

typedef struct receipts {
  int count;
  int status[2];
  uint64_t seq[2];
  const char *key[2];
} receipts_t;

static void on_receipt(sea_producer_t *p, void *token, int status, const sea_meta_t *meta) {
  receipts_t *r = sea_producer_get_data(p);
  int i = (int)(intptr_t)token;
  r->count++;
  if (i < 0 || i > 1)
    return;
  r->status[i] = status;
  r->seq[i] = meta ? meta->seq : UINT64_MAX;
  r->key[i] = meta ? meta->stream_key : NULL;
}

/* The good plugin works end to end: connect, two sends, their receipts, close. */
static void check_good_works(sea_runtime_t *rt, const char *want_backend) {
  sea_streamer_t *s = NULL;
  sea_producer_t *p = NULL;
  receipts_t r = {0};
  int rc = sea_connect(rt, "good:///k", NULL, &s);
  CHECK_EQ_INT(rc, 0);
  if (rc != 0) {
    fprintf(stderr, "  connect: %s\n", sea_runtime_errmsg(rt));
    return;
  }
  CHECK_STR(sea_streamer_backend(s), want_backend);
  rc = sea_producer_open(s, NULL, &p);
  CHECK_EQ_INT(rc, 0);
  if (rc == 0) {
    sea_producer_set_data(p, &r);
    sea_producer_set_callbacks(p, on_receipt, NULL);
    CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "a", 1, (void *)(intptr_t)0), 0);
    CHECK_EQ_INT(sea_producer_send_bytes(p, NULL, "bc", 2, (void *)(intptr_t)1), 0);
    CHECK_EQ_INT(r.count, 0); /* receipts come on a later turn */
    sea_runtime_run(rt, SEA_RUN_DEFAULT);
    CHECK_EQ_INT(r.count, 2);
    CHECK_EQ_INT(r.status[0], 0);
    CHECK_EQ_INT(r.status[1], 0);
    CHECK_EQ_INT(r.seq[0], 0);
    CHECK_EQ_INT(r.seq[1], 1);
    CHECK_STR(r.key[0], "k");
    CHECK_EQ_INT(sea_producer_inflight(p), 0);
    sea_producer_close(p);
  }
  /* Options a backend does not know are its to reject. */
  sea_options_t *o = sea_options_new();
  sea_streamer_t *s2 = NULL;
  sea_options_set(o, "colour", "blue");
  CHECK_EQ_INT(sea_connect(rt, "good:///k", o, &s2), SEA_EOPTION);
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "colour");
  sea_options_free(o);
  sea_streamer_close(s);
}

/* Plugins that must load: the good one, and one whose descriptor is larger than this host's. */
static void test_load(const plugin_case_t *c) {
  char path[4096];
  sea_plugin_info_t info;
  join(path, sizeof path, bad_dir, c->file);
  env_only(none_dir, NULL);
  sea_runtime_t *rt = runtime();
  int rc = sea_runtime_load_plugin_file(rt, path);
  CHECK_EQ_INT(rc, 0);
  if (rc != 0)
    fprintf(stderr, "  %s: %s\n", c->file, sea_runtime_errmsg(rt));
  CHECK_EQ_INT(sea_runtime_plugin_count(rt), 1);
  CHECK_EQ_INT(sea_runtime_plugin_info(rt, 0, &info), 0);
  CHECK_STR(info.path, path);
  CHECK(info.refused == NULL);
  CHECK_STR(info.name, c->scheme);
  CHECK_STR(info.schemes, c->scheme);
  CHECK_STR(info.version, "1.0.0");
  if (strcmp(c->scheme, "good") == 0) {
    check_good_works(rt, "good");
  } else {
    sea_streamer_t *s = NULL;
    char uri[128];
    snprintf(uri, sizeof uri, "%s:///k", c->scheme);
    CHECK_EQ_INT(sea_connect(rt, uri, NULL, &s), 0);
    if (s) {
      CHECK_STR(sea_streamer_backend(s), c->scheme);
      /* No list: not supported, by name. */
      char want[128];
      snprintf(want, sizeof want, "list is not supported by the %s backend", c->scheme);
      CHECK_EQ_INT(sea_streamer_list(s, NULL, 0, NULL, NULL, NULL), SEA_ENOTSUP);
      CHECK_STR(sea_streamer_errmsg(s), want);
      sea_streamer_close(s);
    }
  }
  runtime_free(rt);
}

/* ---- directory scans: SEASTREAMER_PLUGIN_DIR and SEASTREAMER_PLUGIN_PATH ---- */

/* The plugin dir alone: every *.so listed, loaded or refused with its reason, nothing else. */
static void test_dir_scan(void) {
  char path[4096];
  sea_plugin_info_t info;
  env_only(bad_dir, NULL);
  sea_runtime_t *rt = runtime();
  CHECK_EQ_INT(sea_runtime_plugin_count(rt), CASE_COUNT); /* README.txt is not a *.so */
  for (size_t i = 0; i < CASE_COUNT; i++) {
    const plugin_case_t *c = &cases[i];
    join(path, sizeof path, bad_dir, c->file);
    if (!find_info(rt, path, &info)) {
      CHECK(!"listed");
      fprintf(stderr, "  %s is not listed\n", path);
      continue;
    }
    if (c->reason) {
      CHECK_CONTAINS(info.refused, c->reason);
      CHECK(info.name == NULL);
    } else {
      CHECK(info.refused == NULL);
      CHECK_STR(info.name, c->scheme);
      CHECK(info.shadowed_by == NULL);
    }
  }
  join(path, sizeof path, bad_dir, "README.txt");
  CHECK(!find_info(rt, path, &info));
  check_good_works(rt, "good");
  check_no_scheme(rt, "nosuch");
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "nosuch:///k");
  CHECK_CONTAINS(sea_runtime_errmsg(rt), "some plugins were refused");
  /* Refused plugins serve nothing, even when found by a scan. */
  check_no_scheme(rt, "abi-major");
  check_no_scheme(rt, "no-send");
  /* Commands (ABI 1.3): good and future both offer `hello`, good is found later and has it;
   * minor-zero's (ABI 1.0, refused) is never read. */
  const char *name = NULL, *args = NULL, *summary = NULL, *plugin = NULL;
  char hello[] = "hello", never[] = "never", *argv_hello[] = {hello, NULL},
       *argv_never[] = {never, NULL};
  int status = -1;
  CHECK_EQ_INT(sea_runtime_command_count(rt), 1);
  CHECK_EQ_INT(sea_runtime_command_info(rt, 0, &name, &args, &summary, &plugin), 0);
  CHECK_STR(name, "hello");
  CHECK_STR(args, "");
  CHECK_STR(summary, "say whose");
  CHECK_STR(plugin, "good");
  CHECK_EQ_INT(sea_runtime_command_info(rt, 1, &name, &args, &summary, &plugin), SEA_EINVAL);
  CHECK_EQ_INT(sea_runtime_command_run(rt, "hello", 1, argv_hello, &status), 0);
  CHECK_EQ_INT(status, 4); /* strlen("good") */
  CHECK_EQ_INT(sea_runtime_command_run(rt, "never", 1, argv_never, &status), SEA_ENOTSUP);
  runtime_free(rt);
}

/* A plugin found later (SEASTREAMER_PLUGIN_PATH) takes the scheme of one found earlier. */
static void test_path_precedence(void) {
  char first[4096], later[4096], path_env[8192];
  sea_plugin_info_t info;
  join(first, sizeof first, bad_dir, "good.so");
  join(later, sizeof later, shadow_dir, "good.so");
  /* A missing directory and an empty entry in the list are skipped. */
  snprintf(path_env, sizeof path_env, "%s::%s", none_dir, shadow_dir);
  env_only(bad_dir, path_env);
  sea_runtime_t *rt = runtime();
  CHECK_EQ_INT(sea_runtime_plugin_count(rt), CASE_COUNT + 1);
  if (find_info(rt, first, &info)) {
    CHECK(info.refused == NULL);
    CHECK_STR(info.name, "good");
    CHECK_STR(info.shadowed_by, later);
  } else {
    CHECK(!"bad/good.so listed");
  }
  if (find_info(rt, later, &info)) {
    CHECK(info.refused == NULL);
    CHECK_STR(info.name, "good-shadow");
    CHECK_STR(info.schemes, "good");
    CHECK(info.shadowed_by == NULL);
  } else {
    CHECK(!"shadow/good.so listed");
  }
  check_good_works(rt, "good-shadow");
  /* A command a plugin found later also offers is that one's, as a scheme is. */
  char hello[] = "hello", *argv_hello[] = {hello, NULL};
  int status = -1;
  CHECK_EQ_INT(sea_runtime_command_count(rt), 1);
  CHECK_EQ_INT(sea_runtime_command_run(rt, "hello", 1, argv_hello, &status), 0);
  CHECK_EQ_INT(status, 11); /* strlen("good-shadow") */
  /* The other schemes of the plugin dir are still served from there. */
  sea_streamer_t *s = NULL;
  CHECK_EQ_INT(sea_connect(rt, "future:///k", NULL, &s), 0);
  if (s) {
    CHECK_STR(sea_streamer_backend(s), "future");
    sea_streamer_close(s);
  }
  runtime_free(rt);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s BAD_DIR SHADOW_DIR NONE_DIR\n", argv[0]);
    return 2;
  }
  bad_dir = argv[1];
  shadow_dir = argv[2];
  none_dir = argv[3];
  for (size_t i = 0; i < CASE_COUNT; i++) {
    if (cases[i].reason)
      test_refusal(&cases[i]);
    else
      test_load(&cases[i]);
  }
  test_missing_file();
  test_directory();
  test_fifo();
  test_dir_scan();
  test_path_precedence();
  unsetenv("SEASTREAMER_PLUGIN_DIR");
  unsetenv("SEASTREAMER_PLUGIN_PATH");
  return test_report();
}
