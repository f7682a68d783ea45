/* uri.c: parsing of streamer URIs, scheme://node1[,node2...]/key1[,key2...]. */
#include <stdio.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

static int fail(char *errbuf, size_t errlen, int code, const char *uri, size_t off,
                const char *what) {
  if (errbuf && errlen)
    snprintf(errbuf, errlen, "%s at offset %zu in URI '%s'", what, off, uri);
  return code;
}

void sea_uri_free(sea_uri_t *u) {
  if (u == NULL)
    return;
  for (size_t i = 0; i < u->node_count; i++)
    sea__free(u->nodes[i]);
  for (size_t i = 0; i < u->key_count; i++)
    sea__free(u->keys[i]);
  sea__free(u->nodes);
  sea__free(u->keys);
  sea__free(u->scheme);
  sea__free(u->raw);
  sea__free(u);
}

/* Split s[0..n) by ',' into a fresh array; empty parts are an error at their offset. */
/* The port of a node ("host:port", "user:pw@host:port", "[v6]:port"), or NULL if it names none
 * (a bare host, or an IPv6 address without brackets). */
const char *sea__uri_node_port(const char *node) {
  const char *host = strrchr(node, '@');
  host = host ? host + 1 : node;
  if (host[0] == '[') {
    const char *end = strchr(host, ']');
    return end && end[1] == ':' ? end + 2 : NULL;
  }
  const char *colon = strchr(host, ':');
  return colon && strchr(colon + 1, ':') == NULL ? colon + 1 : NULL;
}

/* A port that is a number must be one a socket can have (a backend would otherwise wrap 65536 to
 * 0); what is not a number is left to the backend (a file path may hold a colon). */
static bool port_valid(const char *p) {
  unsigned long v = 0;
  size_t n = 0;
  for (; p[n] >= '0' && p[n] <= '9'; n++)
    if (v <= 65535)
      v = v * 10 + (unsigned long)(p[n] - '0');
  return n == 0 || p[n] != '\0' || (v >= 1 && v <= 65535);
}

static int split(const char *s, size_t n, size_t base, char ***out, size_t *count, size_t *bad) {
  size_t parts = 1;
  for (size_t i = 0; i < n; i++)
    parts += s[i] == ',';
  char **a = sea__calloc(parts, sizeof *a);
  if (a == NULL)
    return SEA_ENOMEM;
  size_t k = 0, start = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && s[i] != ',')
      continue;
    if (i == start) {
      *bad = base + start;
      for (size_t j = 0; j < k; j++)
        sea__free(a[j]);
      sea__free(a);
      return SEA_EURI;
    }
    a[k] = sea__strndup(s + start, i - start);
    if (a[k] == NULL) {
      for (size_t j = 0; j < k; j++)
        sea__free(a[j]);
      sea__free(a);
      return SEA_ENOMEM;
    }
    k++;
    start = i + 1;
  }
  *out = a;
  *count = k;
  return 0;
}

int sea_uri_parse(const char *uri, sea_uri_t **out, char *errbuf, size_t errlen) {
  if (uri == NULL || out == NULL)
    return SEA_EINVAL;
  *out = NULL;
  size_t n = strlen(uri);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)uri[i];
    if (c <= ' ' || c == 0x7f)
      return fail(errbuf, errlen, SEA_EURI, uri, i, "whitespace or control character");
  }
  size_t i = 0;
  while (i < n && ((uri[i] >= 'a' && uri[i] <= 'z') || (uri[i] >= 'A' && uri[i] <= 'Z') ||
                   (i > 0 && ((uri[i] >= '0' && uri[i] <= '9') || uri[i] == '+' || uri[i] == '-' ||
                              uri[i] == '.'))))
    i++;
  if (i == 0 || n - i < 3 || memcmp(uri + i, "://", 3) != 0)
    return fail(errbuf, errlen, SEA_EURI, uri, i,
                "expected scheme://nodes/keys (a scheme such as stdio, file, redis or kafka, "
                "then '://')");
  sea_uri_t *u = sea__calloc(1, sizeof *u);
  if (u == NULL)
    return SEA_ENOMEM;
  u->raw = sea__strdup(uri);
  u->scheme = sea__strndup(uri, i);
  if (u->raw == NULL || u->scheme == NULL)
    goto nomem;
  for (char *p = u->scheme; *p; p++)
    if (*p >= 'A' && *p <= 'Z')
      *p = (char)(*p - 'A' + 'a');

  size_t rest = i + 3;
  const char *slash = strrchr(uri + rest, '/');
  size_t auth_end = slash ? (size_t)(slash - uri) : n;
  size_t bad = 0;
  int rc;
  if (auth_end > rest) {
    rc = split(uri + rest, auth_end - rest, rest, &u->nodes, &u->node_count, &bad);
    if (rc == SEA_EURI) {
      sea_uri_free(u);
      return fail(errbuf, errlen, SEA_EURI, uri, bad, "empty node (host) in the node list");
    }
    if (rc)
      goto nomem;
    size_t off = rest;
    for (size_t k = 0; k < u->node_count; k++) {
      const char *port = sea__uri_node_port(u->nodes[k]);
      if (port != NULL && !port_valid(port)) {
        char what[SEA__ERRMSG_MAX];
        snprintf(what, sizeof what, "port %s of node '%s' is out of range (1 to 65535)", port,
                 u->nodes[k]);
        size_t at = off + (size_t)(port - u->nodes[k]);
        sea_uri_free(u);
        return fail(errbuf, errlen, SEA_EURI, uri, at, what);
      }
      off += strlen(u->nodes[k]) + 1;
    }
  }
  if (slash && auth_end + 1 < n) {
    size_t kstart = auth_end + 1;
    rc = split(uri + kstart, n - kstart, kstart, &u->keys, &u->key_count, &bad);
    if (rc == SEA_EURI) {
      sea_uri_free(u);
      return fail(errbuf, errlen, SEA_EURI, uri, bad, "empty stream key in the key list");
    }
    if (rc)
      goto nomem;
    size_t off = kstart;
    for (size_t k = 0; k < u->key_count; k++) {
      size_t kl = strlen(u->keys[k]);
      if (!sea_stream_key_valid(u->keys[k], kl)) {
        char what[SEA__ERRMSG_MAX];
        sea__key_why(what, sizeof what, u->keys[k], kl);
        sea_uri_free(u);
        return fail(errbuf, errlen, SEA_EKEY, uri, off, what);
      }
      off += kl + 1;
    }
  }
  *out = u;
  return 0;
nomem:
  sea_uri_free(u);
  return SEA_ENOMEM;
}

/* The host-table member behind uri_path_only: the URI belongs to the streamer being connected,
 * which is the host's, so the host may rewrite it. */
int sea__uri_path_only(const sea_uri_t *cu) {
  sea_uri_t *u = (sea_uri_t *)(uintptr_t)cu;
  const char *rest = strstr(u->raw, "://");
  char *node = sea__strdup(rest ? rest + 3 : u->raw);
  char **nodes = sea__calloc(1, sizeof *nodes);
  if (node == NULL || nodes == NULL) {
    sea__free(node);
    sea__free(nodes);
    return SEA_ENOMEM;
  }
  for (size_t i = 0; i < u->node_count; i++)
    sea__free(u->nodes[i]);
  for (size_t i = 0; i < u->key_count; i++)
    sea__free(u->keys[i]);
  sea__free(u->nodes);
  sea__free(u->keys);
  nodes[0] = node;
  u->nodes = nodes;
  u->node_count = 1;
  u->keys = NULL;
  u->key_count = 0;
  return 0;
}
