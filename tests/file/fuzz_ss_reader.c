/* fuzz_ss_reader.c: libFuzzer target for the .ss reader: the header, every frame and beacon read
 * sequentially from memory, and the random-access paths (rewind to each beacon, seek, live
 * start) over the same bytes in a memfd. No input may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ss_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *re(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ss_header_t h;
  char err[256];
  ss_msg_t m;
  if (ss_header_decode(data, size, &h, err, sizeof err) != SS_OK)
    return 0;
  /* Sequential, as decode does, over every prefix length that ends the data early too. */
  ss_reader_t r;
  ss_reader_init(&r, h.interval, SS_HEADER_SIZE, re);
  r.max_frame = 1u << 20;
  while (ss_reader_next(&r, data, 0, size, &m) == SS_OK)
    ;
  ss_reader_free(&r);

  int fd = memfd_create("fuzz", 0);
  if (fd < 0)
    return 0;
  if (write(fd, data, size) == (ssize_t)size) {
    ss_file_t f;
    if (ss_file_open(&f, fd, re, err, sizeof err) == SS_OK) {
      uint64_t pos, k, beacons = size / f.header.interval;
      f.r.max_frame = 1u << 20;
      for (k = 0; k <= beacons && k < 64; k++)
        if (ss_file_after_beacon(&f, k, &pos, err, sizeof err) == SS_OK) {
          ss_file_goto(&f, pos);
          for (int i = 0; i < 4 && ss_file_next(&f, &m) == SS_OK; i++)
            ;
        }
      ss_file_seek_beacon(&f, (const uint8_t *)"hello", 5, 1, 1, 1691686154800ull, &k);
      ss_file_seek_beacon(&f, (const uint8_t *)"a", 1, 0, 0, 3, &k);
      ss_file_live_start(&f, &pos, err, sizeof err);
    }
    ss_file_close(&f);
  }
  close(fd);
  return 0;
}
