/* fuzz_uri.c: libFuzzer target for the URI parser: any bytes, no crash, and what it accepts obeys
 * the URI rules (valid keys, non-empty nodes, a lower-case scheme). */
#include <seastreamer/seastreamer.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *s = malloc(size + 1);
  if (s == NULL)
    return 0;
  memcpy(s, data, size);
  s[size] = '\0';
  sea_uri_t *u = NULL;
  char err[256];
  int rc = sea_uri_parse(s, &u, err, sizeof err);
  if (rc == 0) {
    for (const char *p = u->scheme; *p; p++)
      if (*p >= 'A' && *p <= 'Z')
        abort();
    for (size_t i = 0; i < u->node_count; i++)
      if (u->nodes[i][0] == '\0')
        abort();
    for (size_t i = 0; i < u->key_count; i++)
      if (!sea_stream_key_valid(u->keys[i], strlen(u->keys[i])))
        abort();
    sea_uri_free(u);
  } else if (rc != SEA_EURI && rc != SEA_EKEY && rc != SEA_ENOMEM) {
    abort();
  } else if (err[0] == '\0') {
    abort(); /* every refusal says why */
  }
  free(s);
  return 0;
}
