/* loader.c: finding, loading and checking backend plugins (dlopen + ABI rules). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Where the plugins are, relative to the directory this library is installed in (set by CMake
 * from the install layout, so it holds for any prefix the tree is installed or moved to). */
#ifndef SEA_PLUGIN_REL_DIR
#define SEA_PLUGIN_REL_DIR "seastreamer/plugins"
#endif
/* Only if the library cannot find itself (dladdr failed): the configured plugin directory. */
#ifndef SEA_PLUGIN_DIR
#define SEA_PLUGIN_DIR "/usr/local/lib/seastreamer/plugins"
#endif

/* In ABI 1.0 the structs are exactly their v1.0 sizes; a change that breaks this moved a member. */
_Static_assert(sizeof(sea_plugin_t) == SEA_PLUGIN_V1_0_SIZE, "sea_plugin_t layout changed");
_Static_assert(sizeof(sea_host_t) == SEA_HOST_V1_0_SIZE, "sea_host_t layout changed");

static pthread_once_t located = PTHREAD_ONCE_INIT;
static char library_dir[PATH_MAX];
static char plugin_dir[PATH_MAX + sizeof SEA_PLUGIN_REL_DIR + 1];

/* Finds the file this code was loaded from (any address inside the library will do), so every
 * installation finds its own parts wherever it was installed, without an environment variable. */
static void locate(void) {
  static const char anchor = 0;
  Dl_info info;
  char real[PATH_MAX];
  if (dladdr(&anchor, &info) != 0 && info.dli_fname && realpath(info.dli_fname, real) != NULL) {
    char *slash = strrchr(real, '/');
    if (slash) {
      *slash = '\0';
      snprintf(library_dir, sizeof library_dir, "%s", real[0] ? real : "/");
      snprintf(plugin_dir, sizeof plugin_dir, "%s/%s", library_dir, SEA_PLUGIN_REL_DIR);
      return;
    }
  }
  library_dir[0] = '\0';
  snprintf(plugin_dir, sizeof plugin_dir, "%s", SEA_PLUGIN_DIR);
}

const char *sea_library_dir(void) {
  pthread_once(&located, locate);
  return library_dir[0] ? library_dir : NULL;
}

const char *sea_plugin_install_dir(void) {
  pthread_once(&located, locate);
  return plugin_dir;
}

static sea__plugin_t *append(sea_runtime_t *rt, const char *origin) {
  sea__plugin_t *a = sea__realloc(rt->plugins, (rt->plugin_count + 1) * sizeof *a);
  if (a == NULL)
    return NULL;
  rt->plugins = a;
  sea__plugin_t *p = &a[rt->plugin_count];
  memset(p, 0, sizeof *p);
  p->path = sea__strdup(origin);
  if (p->path == NULL)
    return NULL;
  rt->plugin_count++;
  return p;
}

static char *join_schemes(const char *const *schemes) {
  size_t n = 1;
  for (size_t i = 0; schemes[i]; i++)
    n += strlen(schemes[i]) + 1;
  char *s = sea__malloc(n);
  if (s == NULL)
    return NULL;
  s[0] = '\0';
  for (size_t i = 0; schemes[i]; i++) {
    if (i)
      strcat(s, ",");
    strcat(s, schemes[i]);
  }
  return s;
}

/* The oldest minor this host loads: the data types of seastreamer/types.h took their present
 * layout in 1.4. */
#define SEA__PLUGIN_ABI_MINOR_OLDEST 4

/* The ABI rules. On refusal writes why and returns SEA_EPLUGIN. */
static int check(const sea_plugin_t *d, char *why, size_t len) {
  if (d == NULL)
    return sea__errf(why, len, SEA_EPLUGIN, "its entry returned no descriptor");
  if (d->abi_major != SEA_PLUGIN_ABI_MAJOR)
    return sea__errf(why, len, SEA_EPLUGIN,
                     "ABI major version %u, but this host speaks ABI %d (rebuild the plugin "
                     "against this host's plugin.h)",
                     d->abi_major, SEA_PLUGIN_ABI_MAJOR);
  if (d->abi_minor > SEA_PLUGIN_ABI_MINOR)
    return sea__errf(why, len, SEA_EPLUGIN,
                     "built for ABI %u.%u, newer than this host's %d.%d (upgrade seastreamer)",
                     d->abi_major, d->abi_minor, SEA_PLUGIN_ABI_MAJOR, SEA_PLUGIN_ABI_MINOR);
  /* 1.4 gave the data types a new layout (seastreamer/types.h): an older plugin would fill
   * messages (in batches) and lag entries with the sizes of before. */
  if (d->abi_minor < SEA__PLUGIN_ABI_MINOR_OLDEST)
    return sea__errf(why, len, SEA_EPLUGIN,
                     "built for ABI %u.%u, older than %d.%d, which changed the layout of messages "
                     "(rebuild the plugin against this host's plugin.h)",
                     d->abi_major, d->abi_minor, SEA_PLUGIN_ABI_MAJOR,
                     SEA__PLUGIN_ABI_MINOR_OLDEST);
  if (d->struct_size < SEA_PLUGIN_V1_0_SIZE)
    return sea__errf(why, len, SEA_EPLUGIN,
                     "descriptor struct_size %u is smaller than ABI 1.0's %zu bytes",
                     d->struct_size, (size_t)SEA_PLUGIN_V1_0_SIZE);
  return 0;
}

/* Checks on the zeroed copy (so members past the plugin's struct_size read as NULL). */
static int check_ops(const sea_plugin_t *d, char *why, size_t len) {
  if (d->name == NULL || d->name[0] == '\0')
    return sea__errf(why, len, SEA_EPLUGIN, "descriptor has no name");
  if (d->schemes == NULL || d->schemes[0] == NULL)
    return sea__errf(why, len, SEA_EPLUGIN, "plugin '%s' declares no URI scheme", d->name);
  for (size_t i = 0; d->schemes[i]; i++) {
    const char *sc = d->schemes[i];
    if (sc[0] == '\0')
      return sea__errf(why, len, SEA_EPLUGIN, "plugin '%s' declares an empty URI scheme", d->name);
    /* A URI's scheme is looked up lower-cased: any other could never be used (RFC 3986's
     * letters, digits, '+', '-', '.', starting with a letter). */
    bool ok = sc[0] >= 'a' && sc[0] <= 'z';
    for (size_t k = 1; ok && sc[k]; k++)
      ok = (sc[k] >= 'a' && sc[k] <= 'z') || (sc[k] >= '0' && sc[k] <= '9') || sc[k] == '+' ||
           sc[k] == '-' || sc[k] == '.';
    if (!ok)
      return sea__errf(why, len, SEA_EPLUGIN,
                       "plugin '%s' declares the URI scheme '%s': a scheme is a lower-case letter, "
                       "then lower-case letters, digits, '+', '-' or '.'",
                       d->name, sc);
  }
#define REQUIRE(op)                                                                                \
  if (d->op == NULL)                                                                               \
  return sea__errf(why, len, SEA_EPLUGIN, "plugin '%s' lacks the required operation " #op, d->name)
  REQUIRE(connect);
  REQUIRE(disconnect);
  bool prod = d->producer_open || d->producer_send || d->producer_close;
  bool cons = d->consumer_open || d->consumer_start || d->consumer_close;
  if (!prod && !cons)
    return sea__errf(why, len, SEA_EPLUGIN, "plugin '%s' offers neither a producer nor a consumer",
                     d->name);
  if (prod) {
    REQUIRE(producer_open);
    REQUIRE(producer_send);
    REQUIRE(producer_close);
  }
  if (cons) {
    REQUIRE(consumer_open);
    REQUIRE(consumer_start);
    REQUIRE(consumer_close);
  }
#undef REQUIRE
  return sea__option_table_check(d, why, len);
}

int sea__plugin_adopt(sea_runtime_t *rt, const char *origin, void *dl, const sea_plugin_t *d,
                      char *why, size_t whylen) {
  sea_plugin_t copy;
  int rc = check(d, why, whylen);
  if (rc == 0) {
    memset(&copy, 0, sizeof copy);
    memcpy(&copy, d, d->struct_size < sizeof copy ? d->struct_size : sizeof copy);
    rc = check_ops(&copy, why, whylen);
  }
  sea__plugin_t *p = append(rt, origin);
  if (p == NULL)
    return SEA_ENOMEM;
  if (rc != 0) {
    p->refused = sea__strdup(why);
    return rc;
  }
  p->dl = dl;
  p->desc = copy;
  p->schemes = join_schemes(copy.schemes);
  /* A later plugin takes the schemes of an earlier one: mark the earlier as shadowed. */
  for (size_t i = 0; i + 1 < rt->plugin_count; i++) {
    sea__plugin_t *q = &rt->plugins[i];
    if (q->refused || q->shadowed_by)
      continue;
    for (size_t a = 0; q->desc.schemes[a] && !q->shadowed_by; a++)
      for (size_t b = 0; copy.schemes[b]; b++)
        if (strcmp(q->desc.schemes[a], copy.schemes[b]) == 0) {
          q->shadowed_by = sea__strdup(origin);
          break;
        }
  }
  return 0;
}

static int refuse(sea_runtime_t *rt, const char *path, char *why) {
  sea__plugin_t *p = append(rt, path);
  if (p == NULL)
    return SEA_ENOMEM;
  p->refused = sea__strdup(why);
  return SEA_EPLUGIN;
}

static int load_file(sea_runtime_t *rt, const char *path) {
  char why[SEA__ERRMSG_MAX];
  struct stat st;
  /* O_NONBLOCK: a FIFO (or a device) named x.so must not hold up the scan; it is refused below. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    snprintf(why, sizeof why, "cannot open: %s", strerror(errno));
    return refuse(rt, path, why);
  }
  unsigned char magic[4] = {0};
  ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, magic, 4) : -1;
  close(fd);
  if (n != 4 || memcmp(magic,
                       "\x7f"
                       "ELF",
                       4) != 0) {
    snprintf(why, sizeof why, "not an ELF shared object%s", n < 0 ? " (not a regular file)" : "");
    return refuse(rt, path, why);
  }
  dlerror();
  void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (dl == NULL) {
    const char *e = dlerror();
    snprintf(why, sizeof why, "dlopen failed: %s", e ? e : "unknown error");
    return refuse(rt, path, why);
  }
  /* POSIX sanctions converting dlsym's result to a function pointer this way. */
  sea_plugin_entry_fn entry;
  *(void **)(&entry) = dlsym(dl, SEA_PLUGIN_ENTRY_SYMBOL);
  if (entry == NULL) {
    dlclose(dl);
    snprintf(why, sizeof why, "not a SeaStreamer plugin: it exports no '%s' symbol",
             SEA_PLUGIN_ENTRY_SYMBOL);
    return refuse(rt, path, why);
  }
  /* Calling a data symbol of that name would crash: the symbol table says what it is. */
  Dl_info info;
  const ElfW(Sym) *sym = NULL;
  int type = dladdr1(*(void **)&entry, &info, (void **)&sym, RTLD_DL_SYMENT) != 0 && sym != NULL
                 ? ELF64_ST_TYPE(sym->st_info)
                 : -1;
  if (type != STT_FUNC && type != STT_GNU_IFUNC) {
    dlclose(dl);
    snprintf(why, sizeof why, "not a SeaStreamer plugin: its '%s' is %s, not a function",
             SEA_PLUGIN_ENTRY_SYMBOL,
             type == STT_OBJECT ? "a data object" : "not known as a function");
    return refuse(rt, path, why);
  }
  int rc = sea__plugin_adopt(rt, path, dl, entry(&sea__host), why, sizeof why);
  if (rc != 0)
    dlclose(dl);
  return rc;
}

static int ends_with_so(const char *name) {
  size_t n = strlen(name);
  return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static void load_dir(sea_runtime_t *rt, const char *dir) {
  struct dirent **list;
  int n = scandir(dir, &list, NULL, alphasort);
  if (n < 0)
    return; /* a missing directory is not an error: nothing is installed there */
  for (int i = 0; i < n; i++) {
    if (ends_with_so(list[i]->d_name)) {
      size_t len = strlen(dir) + strlen(list[i]->d_name) + 2;
      char *path = sea__malloc(len);
      if (path) {
        snprintf(path, len, "%s/%s", dir, list[i]->d_name);
        load_file(rt, path);
        sea__free(path);
      }
    }
    free(list[i]);
  }
  free(list);
}

int sea__plugins_ensure(sea_runtime_t *rt) {
  if (rt->plugins_loaded)
    return 0;
  rt->plugins_loaded = true;
  const char *dir = getenv("SEASTREAMER_PLUGIN_DIR");
  load_dir(rt, dir && *dir ? dir : sea_plugin_install_dir());
  const char *path = getenv("SEASTREAMER_PLUGIN_PATH");
  if (path && *path) {
    char *copy = sea__strdup(path), *save = NULL;
    for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save))
      load_dir(rt, d);
    sea__free(copy);
  }
  return 0;
}

int sea_runtime_load_plugins(sea_runtime_t *rt) {
  return sea__plugins_ensure(rt);
}

int sea_runtime_load_plugin_file(sea_runtime_t *rt, const char *path) {
  sea__plugins_ensure(rt); /* scan first, so what is loaded by name is not shadowed by the scan */
  size_t before = rt->plugin_count;
  int rc = load_file(rt, path);
  if (rc == SEA_EPLUGIN && rt->plugin_count > before)
    sea__rt_err(rt, rc, "plugin %s refused: %s", path, rt->plugins[rt->plugin_count - 1].refused);
  return rc;
}

int sea_runtime_register_plugin(sea_runtime_t *rt, sea_plugin_entry_fn entry, const char *origin) {
  char why[SEA__ERRMSG_MAX];
  const char *name = origin ? origin : "(built-in)";
  sea__plugins_ensure(rt);
  int rc = sea__plugin_adopt(rt, name, NULL, entry(&sea__host), why, sizeof why);
  if (rc == SEA_EPLUGIN)
    sea__rt_err(rt, rc, "plugin %s refused: %s", name, why);
  return rc;
}

size_t sea_runtime_plugin_count(sea_runtime_t *rt) {
  sea__plugins_ensure(rt);
  return rt->plugin_count;
}

int sea_runtime_plugin_info(sea_runtime_t *rt, size_t i, sea_plugin_info_t *info) {
  sea__plugins_ensure(rt);
  if (i >= rt->plugin_count || info == NULL)
    return SEA_EINVAL;
  const sea__plugin_t *p = &rt->plugins[i];
  memset(info, 0, sizeof *info);
  info->path = p->path;
  info->refused = p->refused;
  info->shadowed_by = p->shadowed_by;
  if (!p->refused) {
    info->name = p->desc.name;
    info->version = p->desc.version ? p->desc.version : "?";
    info->schemes = p->schemes;
    info->description = p->desc.description ? p->desc.description : "";
  }
  return 0;
}

/* The i-th command of the loaded plugins (ABI 1.3), in load order; a name a plugin found later
 * also has is left to that one, as a scheme is. */
static const sea_plugin_command_t *command_at(sea_runtime_t *rt, size_t i,
                                              const sea__plugin_t **of) {
  sea__plugins_ensure(rt);
  size_t n = 0;
  for (size_t k = 0; k < rt->plugin_count; k++) {
    const sea__plugin_t *p = &rt->plugins[k];
    if (p->refused || p->desc.abi_minor < 3 || p->desc.commands == NULL)
      continue;
    for (const sea_plugin_command_t *c = p->desc.commands; c->name; c++) {
      if (c->run == NULL)
        continue;
      int seen = 0;
      for (size_t j = k + 1; j < rt->plugin_count && !seen; j++) {
        const sea__plugin_t *q = &rt->plugins[j];
        if (q->refused || q->desc.abi_minor < 3 || q->desc.commands == NULL)
          continue;
        for (const sea_plugin_command_t *d = q->desc.commands; d->name && !seen; d++)
          seen = d->run && strcmp(d->name, c->name) == 0;
      }
      if (seen)
        continue;
      if (n++ == i) {
        if (of)
          *of = p;
        return c;
      }
    }
  }
  return NULL;
}

size_t sea_runtime_command_count(sea_runtime_t *rt) {
  size_t n = 0;
  while (command_at(rt, n, NULL))
    n++;
  return n;
}

int sea_runtime_command_info(sea_runtime_t *rt, size_t i, const char **name, const char **args,
                             const char **summary, const char **plugin) {
  const sea__plugin_t *p = NULL;
  const sea_plugin_command_t *c = command_at(rt, i, &p);
  if (c == NULL)
    return SEA_EINVAL;
  if (name)
    *name = c->name;
  if (args)
    *args = c->args ? c->args : "";
  if (summary)
    *summary = c->summary ? c->summary : "";
  if (plugin)
    *plugin = p->desc.name;
  return 0;
}

int sea_runtime_command_run(sea_runtime_t *rt, const char *name, int argc, char **argv,
                            int *status) {
  const sea_plugin_command_t *c;
  if (name == NULL || status == NULL)
    return SEA_EINVAL;
  for (size_t i = 0; (c = command_at(rt, i, NULL)) != NULL; i++)
    if (strcmp(c->name, name) == 0) {
      *status = c->run(argc, argv);
      return 0;
    }
  return SEA_ENOTSUP;
}

const sea__plugin_t *sea__plugin_for_scheme(sea_runtime_t *rt, const char *scheme) {
  sea__plugins_ensure(rt);
  for (size_t i = rt->plugin_count; i-- > 0;) {
    const sea__plugin_t *p = &rt->plugins[i];
    if (p->refused)
      continue;
    for (size_t k = 0; p->desc.schemes[k]; k++)
      if (strcmp(p->desc.schemes[k], scheme) == 0)
        return p;
  }
  return NULL;
}

void sea__plugins_free(sea_runtime_t *rt) {
  for (size_t i = 0; i < rt->plugin_count; i++) {
    sea__plugin_t *p = &rt->plugins[i];
    if (p->dl)
      dlclose(p->dl);
    sea__free(p->path);
    sea__free(p->schemes);
    sea__free(p->refused);
    sea__free(p->shadowed_by);
  }
  sea__free(rt->plugins);
  rt->plugins = NULL;
  rt->plugin_count = 0;
}
