/* error.c: error codes to words and names, and the helpers that format error messages. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

const char *sea_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define SEA__ERR_TEXT(name, code, text)                                                            \
  case code:                                                                                       \
    return text;
    SEA_ERRNO_MAP(SEA__ERR_TEXT)
#undef SEA__ERR_TEXT
  default:
    return "unknown error";
  }
}

const char *sea_err_name(int err) {
  switch (err) {
  case 0:
    return "SEA_OK";
#define SEA__ERR_NAME(name, code, text)                                                            \
  case code:                                                                                       \
    return "SEA_" #name;
    SEA_ERRNO_MAP(SEA__ERR_NAME)
#undef SEA__ERR_NAME
  default:
    return "SEA_UNKNOWN";
  }
}

const char *sea_version_string(void) {
  return SEA_VERSION_STRING;
}

void sea__vfmt(char *buf, size_t len, const char *fmt, va_list ap) {
  if (len == 0)
    return;
  if (fmt == NULL) {
    buf[0] = '\0';
    return;
  }
  vsnprintf(buf, len, fmt, ap);
}

int sea__errf(char *buf, size_t len, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(buf, len, fmt, ap);
  va_end(ap);
  return code;
}

int sea__rt_err(sea_runtime_t *rt, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sea__vfmt(rt->errmsg, sizeof rt->errmsg, fmt, ap);
  va_end(ap);
  return code;
}
