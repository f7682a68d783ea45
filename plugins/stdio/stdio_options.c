/* stdio_options.c: the stdio backend's option table and its options (max_line=, malformed=,
 * format=, template=, delimiter=, key_delimiter=, empty=, null=, unbuffered=) read into a
 * stdio_opts_t. The host checks them against the table at connect and at each open; the streamer,
 * the reader and the writer read them with the host's getters. */
#include <string.h>

#include "stdio_internal.h"

#define STDIO_STR_(x) #x
#define STDIO_STR(x) STDIO_STR_(x)

/* clang-format off */
const sea_option_spec_t stdio_option_table[] = {
    {.key = "max_line", .type = SEA_OPT_U64, .min = 1, .max = SIZE_MAX / 4, .def = "1048576",
     .help = "input: the longest line, in bytes"},
    {.key = "malformed", .type = SEA_OPT_ENUM, .values = "error|pass", .def = "error",
     .help = "input: a bad header block ends the input, or is passed as payload"},
    {.key = "format", .type = SEA_OPT_ENUM, .values = "line|json|payload", .def = "line",
     .help = "output: what each message is printed as"},
    {.key = "template", .type = SEA_OPT_STR, .help = "output: a kcat -f style format"},
    {.key = "delimiter", .type = SEA_OPT_STR, .min = 1, .def = "\\n",
     .help = "the byte that ends a message: a character, \\n \\r \\t \\\\ or \\xNN"},
    {.key = "key_delimiter", .type = SEA_OPT_STR, .min = 1,
     .help = "\"key DELIM payload\" lines, DELIM of 1 to " STDIO_STR(STDIO_DELIM_MAX) " bytes"},
    {.key = "empty", .type = SEA_OPT_ENUM, .values = "empty|null", .def = "empty",
     .help = "input: an empty message is empty, or has a NULL payload"},
    {.key = "null", .type = SEA_OPT_STR, .max = STDIO_NULL_MAX - 1, .def = "",
     .help = "output: printed for an unset key"},
    {.key = "unbuffered", .type = SEA_OPT_BOOL, .def = "false",
     .help = "output: write each message in its send"},
    {.key = NULL},
};
/* clang-format on */

/* A delimiter option's bytes: a character, or the escapes \n \r \t \\ and \xNN (as kcat's -D
 * and -K take them). Returns the length, or 0 if it is empty, too long or a bad escape. */
static size_t parse_delim(const char *v, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; v[i] != '\0'; i++) {
    char c = v[i];
    if (c == '\\') {
      char d = v[++i];
      if (d == 'n')
        c = '\n';
      else if (d == 'r')
        c = '\r';
      else if (d == 't')
        c = '\t';
      else if (d == '\\')
        c = '\\';
      else if (d == 'x') {
        unsigned x = 0;
        for (int k = 0; k < 2; k++) {
          char h = v[++i];
          if (h >= '0' && h <= '9')
            x = x * 16 + (unsigned)(h - '0');
          else if ((h | 0x20) >= 'a' && (h | 0x20) <= 'f')
            x = x * 16 + (unsigned)((h | 0x20) - 'a' + 10);
          else
            return 0;
        }
        c = (char)x;
      } else
        return 0;
    }
    if (n == cap)
      return 0;
    out[n++] = c;
  }
  return n;
}

/* Reads every backend option, which the host checked against the table; the delimiters and
 * the template, which the table cannot describe, are checked here. */
int stdio_opts_parse(sea_runtime_t *rt, const sea_options_t *o, stdio_opts_t *out) {
  const sea_host_t *h = sea_host;
  out->max_line = (size_t)h->option_u64(o, "max_line");
  out->pass_malformed = h->option_enum(o, "malformed");
  out->format = h->option_enum(o, "format"); /* FMT_LINE, FMT_JSON, FMT_PAYLOAD: its order */
  out->template_src = h->option_str(o, "template");
  out->empty_null = h->option_enum(o, "empty");
  out->unbuffered = h->option_bool(o, "unbuffered");
  const char *v = h->option_str(o, "null");
  out->null_len = strlen(v);
  memcpy(out->null_text, v, out->null_len); /* the table holds it to STDIO_NULL_MAX - 1 */
  char d[STDIO_DELIM_MAX];
  v = h->option_str(o, "delimiter");
  if (parse_delim(v, d, sizeof d) != 1) {
    h->set_error(rt,
                 "stdio: option delimiter=%s: expected one byte (a character, \\n, \\r, \\t, "
                 "\\\\ or \\xNN)",
                 v);
    return SEA_EOPTION;
  }
  out->delim = d[0];
  v = h->option_str(o, "key_delimiter");
  out->key_delim_len = v ? parse_delim(v, out->key_delim, sizeof out->key_delim) : 0;
  if (v && out->key_delim_len == 0) {
    h->set_error(rt,
                 "stdio: option key_delimiter=%s: expected 1 to %d bytes (characters, \\n, "
                 "\\r, \\t, \\\\ or \\xNN)",
                 v, STDIO_DELIM_MAX);
    return SEA_EOPTION;
  }
  if (out->template_src != NULL) {
    /* Check it now so that a bad template fails at connect/open, not at the first send. */
    stdio_tpl_t *t;
    int rc = stdio_tpl_compile(rt, out->template_src, &t);
    if (rc != 0)
      return rc;
    stdio_tpl_free(t);
  }
  return 0;
}
