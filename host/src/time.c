/* time.c: UTC timestamps in SeaStreamer's text form, without the C library's locale or TZ. */
#include <string.h>
#include <time.h>

#include "internal.h"

/* Days since 1970-01-01 for a proleptic Gregorian date (the civil-from-days identity, in
 * eras of 400 years so it is exact for every year 0..9999 and needs no tables). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
}

size_t sea_format_timestamp(int64_t us, char *buf) {
  int64_t ms = us >= 0 ? us / 1000 : -((-us + 999) / 1000);
  int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
  unsigned msec = (unsigned)(ms - secs * 1000);
  int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
  unsigned sod = (unsigned)(secs - days * 86400);
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  if (y < 0 || y > 9999)
    y = y < 0 ? 0 : 9999; /* outside what the text form can say; clamp rather than overflow */
  put_digits(buf, (unsigned)y, 4);
  buf[4] = '-';
  put_digits(buf + 5, m, 2);
  buf[7] = '-';
  put_digits(buf + 8, d, 2);
  buf[10] = 'T';
  put_digits(buf + 11, sod / 3600, 2);
  buf[13] = ':';
  put_digits(buf + 14, sod / 60 % 60, 2);
  buf[16] = ':';
  put_digits(buf + 17, sod % 60, 2);
  buf[19] = '.';
  put_digits(buf + 20, msec, 3);
  buf[23] = '\0';
  return 23;
}

static int digits(const char *s, int n, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  *out = v;
  return 0;
}

int sea_parse_timestamp(const char *s, size_t len, int64_t *out) {
  static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  unsigned y, mo, d, h, mi, sec;
  if (len < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
    return SEA_EFORMAT;
  if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
      digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
    return SEA_EFORMAT;
  if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 59)
    return SEA_EFORMAT;
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap)
    return SEA_EFORMAT;
  int64_t frac_us = 0;
  if (len > 19) {
    if (s[19] != '.' || len == 20)
      return SEA_EFORMAT;
    int64_t scale = 100000;
    for (size_t i = 20; i < len; i++) {
      if (s[i] < '0' || s[i] > '9')
        return SEA_EFORMAT;
      if (i - 20 >= 9)
        return SEA_EFORMAT; /* nanoseconds are the finest SeaStreamer writes */
      frac_us += (s[i] - '0') * scale;
      scale /= 10;
    }
  }
  int64_t days = days_from_civil(y, mo, d);
  *out = ((days * 86400 + h * 3600 + mi * 60 + sec) * 1000000) + frac_us;
  return 0;
}

int64_t sea_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
