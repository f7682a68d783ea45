/* test_ss_codec.c: the .ss codec against the spec's vectors, the reference sample files
 * (tests/file/data), round trips over many intervals, truncation at every byte, and damage. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "ss_codec.h"
#include "test.h"

static const char *datadir;

static void *re(void *p, size_t n) {
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

static uint8_t *slurp(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", datadir, name);
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(2);
  }
  uint8_t *buf = malloc(1 << 20);
  *len = fread(buf, 1, 1 << 20, fp);
  fclose(fp);
  return buf;
}

static void test_crc(void) {
  CHECK_EQ_INT(ss_crc16(0xFFFF, (const uint8_t *)"123456789", 9), 0x4C06);
  CHECK_EQ_INT(ss_crc16(0xFFFF, (const uint8_t *)"", 0), 0xFFFF);
  CHECK_EQ_INT(ss_crc16(0xFFFF, (const uint8_t *)"hi", 2), 0xD73B);
  CHECK_EQ_INT(ss_crc16(0xFFFF, (const uint8_t *)"EOS", 3), 0xED7C);
  CHECK_EQ_INT(ss_crc16(0xFFFF, (const uint8_t *)"hello, world", 12), 0x8028);
  /* In pieces gives the same. */
  CHECK_EQ_INT(ss_crc16(ss_crc16(0xFFFF, (const uint8_t *)"1234", 4), (const uint8_t *)"56789", 5),
               0x4C06);
}

/* Section 12.1, byte for byte. */
static void test_worked_example(void) {
  /* The hexdump of section 12.1. */
  static const uint8_t want[209] = {
      0x53, 0x73, 0x01, 0x07, 0x64, 0x65, 0x6d, 0x6f, 0x2e, 0x73, 0x73, 0x00, 0x00, 0x01, 0x8b,
      0xcf, 0xe5, 0x68, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0d, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
      0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x01, 0x00, 0x00, 0x00, 0x02, 0x68, 0x69, 0xd7,
      0x3b, 0x0d, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5,
      0x68, 0xfa, 0x00, 0x00, 0x00, 0x05, 0x77, 0x6f, 0x72, 0x6c, 0x64, 0xb4, 0xf6, 0x0d,
  };
  ss_header_t h;
  uint8_t head[128];
  ss_header_init(&h, "demo.ss", 1700000000000ull, 1024);
  ss_header_encode(&h, head);
  ss_buf_t out = {.realloc = re};
  ss_buf_reserve(&out, 128);
  memcpy(out.data, head, 128);
  out.len = 128;
  ss_writer_t w;
  ss_writer_init(&w, 1024, 128, re);
  CHECK_EQ_INT(ss_writer_begin(&w, &out), 0);
  CHECK_EQ_INT(ss_writer_frame(&w, &out, (const uint8_t *)"hello", 5, 0, 1, 1700000000001ull,
                               (const uint8_t *)"hi", 2),
               0);
  CHECK_EQ_INT(ss_writer_frame(&w, &out, (const uint8_t *)"hello", 5, 0, 2, 1700000000250ull,
                               (const uint8_t *)"world", 5),
               0);
  CHECK_EQ_INT(out.len, 209);
  CHECK(out.len == 209 && memcmp(out.data, want, 209) == 0);
  /* Spot checks from the table of 12.1. */
  static const uint8_t first[] = {0x53, 0x73, 0x01, 0x07, 'd',  'e',  'm',  'o',
                                  '.',  's',  's',  0x00, 0x00, 0x01, 0x8b, 0xcf,
                                  0xe5, 0x68, 0x00, 0x00, 0x00, 0x04, 0x00};
  CHECK(memcmp(out.data, first, sizeof first) == 0);
  CHECK_EQ_INT(out.data[0x7f], 0x0d);
  static const uint8_t f1[] = {0x05, 'h',  'e',  'l',  'l', 'o', 0, 0, 0,   0,    0,    0,    0,
                               0,    0,    0,    0,    0,   0,   0, 0, 1,   0x00, 0x00, 0x01, 0x8b,
                               0xcf, 0xe5, 0x68, 0x01, 0,   0,   0, 2, 'h', 'i',  0xd7, 0x3b, 0x0d};
  CHECK(memcmp(out.data + 0x80, f1, sizeof f1) == 0);
  static const uint8_t tail[] = {'w', 'o', 'r', 'l', 'd', 0xb4, 0xf6, 0x0d};
  CHECK(memcmp(out.data + 0xc9, tail, sizeof tail) == 0);

  ss_header_t h2;
  char err[200];
  CHECK_EQ_INT(ss_header_decode(out.data, out.len, &h2, err, sizeof err), SS_OK);
  CHECK_STR(h2.file_name, "demo.ss");
  CHECK_EQ_INT(h2.interval, 1024);
  ss_reader_t r;
  ss_msg_t m;
  ss_reader_init(&r, 1024, 128, re);
  CHECK_EQ_INT(ss_reader_next(&r, out.data, 0, out.len, &m), SS_OK);
  CHECK_EQ_INT(m.seq, 1);
  CHECK_EQ_INT(m.len, 2);
  CHECK(memcmp(m.payload, "hi", 2) == 0);
  CHECK_EQ_INT(ss_reader_next(&r, out.data, 0, out.len, &m), SS_OK);
  CHECK_EQ_INT(m.ts, 1700000000250ll);
  CHECK_EQ_INT(ss_reader_next(&r, out.data, 0, out.len, &m), SS_MORE);
  CHECK_EQ_INT(r.partial, 0);
  ss_reader_free(&r);
  ss_writer_free(&w);
  ss_buf_free(&out);
}

typedef struct fixture_msg {
  char key[64];
  uint64_t shard, seq, ts;
  uint8_t payload[4096];
  uint32_t len;
} fixture_msg_t;

/* Read a whole fixture from memory; rewrite it with the writer and compare the bytes. */
static void check_fixture(const char *name, size_t want_size, uint32_t want_interval, int want_msgs,
                          int want_beacons, int want_eos, const char *first_key, uint64_t first_seq,
                          uint64_t first_ts, const char *last_key, uint64_t last_seq,
                          uint64_t last_ts) {
  size_t len;
  uint8_t *data = slurp(name, &len);
  ss_header_t h;
  char err[200];
  CHECK_EQ_INT(len, want_size);
  CHECK_EQ_INT(ss_header_decode(data, len, &h, err, sizeof err), SS_OK);
  CHECK_EQ_INT(h.interval, want_interval);

  ss_reader_t r;
  ss_reader_init(&r, h.interval, 128, re);
  ss_msg_t m;
  int n = 0, eos = 0, rc;
  uint64_t last_beacon = 0;
  int beacons = 0;
  fixture_msg_t *msgs = calloc(200, sizeof *msgs);
  while ((rc = ss_reader_next(&r, data, 0, len, &m)) == SS_OK) {
    if (n == 0) {
      CHECK(m.klen == strlen(first_key) && memcmp(m.key, first_key, m.klen) == 0);
      CHECK_EQ_INT(m.seq, first_seq);
      CHECK_EQ_INT(m.ts, first_ts);
    }
    if (r.beacon_off != last_beacon) {
      beacons++;
      last_beacon = r.beacon_off;
    }
    fixture_msg_t *f = &msgs[n];
    memcpy(f->key, m.key, m.klen);
    f->shard = m.shard;
    f->seq = m.seq;
    f->ts = m.ts;
    f->len = m.len;
    memcpy(f->payload, m.payload, m.len);
    eos = m.eos;
    n++;
  }
  CHECK_EQ_INT(rc, SS_MORE);
  CHECK_EQ_INT(r.partial, 0);
  CHECK_EQ_INT(r.pos, len);
  CHECK_EQ_INT(n, want_msgs);
  CHECK_EQ_INT(beacons, want_beacons);
  CHECK_EQ_INT(eos, want_eos);
  CHECK_STR(msgs[n - 1].key, last_key);
  CHECK_EQ_INT(msgs[n - 1].seq, last_seq);
  CHECK_EQ_INT(msgs[n - 1].ts, last_ts);

  /* Byte-identical rewrite: the same header and messages through our writer. */
  ss_buf_t out = {.realloc = re};
  ss_buf_reserve(&out, 128);
  ss_header_encode(&h, out.data);
  out.len = 128;
  ss_writer_t w;
  ss_writer_init(&w, h.interval, 128, re);
  ss_writer_begin(&w, &out);
  for (int i = 0; i < n; i++)
    ss_writer_frame(&w, &out, (const uint8_t *)msgs[i].key, strlen(msgs[i].key), msgs[i].shard,
                    msgs[i].seq, msgs[i].ts, msgs[i].payload, msgs[i].len);
  CHECK_EQ_INT(out.len, len);
  CHECK(out.len == len && memcmp(out.data, data, len) == 0);
  if (out.len == len)
    for (size_t i = 0; i < len; i++)
      if (out.data[i] != data[i]) {
        fprintf(stderr, "%s: first difference at offset %zu\n", name, i);
        break;
      }
  ss_writer_free(&w);
  ss_buf_free(&out);
  ss_reader_free(&r);
  free(msgs);
  free(data);
}

static void test_fixtures(void) {
  check_fixture("sample-1.ss", 3481, 1048576, 28, 0, 1, "file", 1, 1694767177912ull,
                "SEA_STREAMER_INTERNAL", 0, 1694767178569ull);
  check_fixture("consumer.ss", 4830, 1024, 101, 4, 1, "hello", 0, 1691686154745ull,
                "SEA_STREAMER_INTERNAL", 0, 1691686154921ull);
  check_fixture("quicksort.ss", 8978, 1048576, 42, 0, 0, "quicksort", 1, 1691735330440ull,
                "quicksort", 42, 1691735330659ull);
}

/* The beacons of consumer.ss (section 14) through the file reader's random access. */
static void test_consumer_beacons(void) {
  char path[512], err[200];
  snprintf(path, sizeof path, "%s/consumer.ss", datadir);
  int fd = open(path, O_RDONLY);
  ss_file_t f;
  CHECK_EQ_INT(ss_file_open(&f, fd, re, err, sizeof err), SS_OK);
  static const struct {
    uint32_t remaining;
    uint64_t seq, ts;
    uint16_t crc;
  } want[4] = {{39, 20, 1691686154773ull, 0x0B47},
               {44, 42, 1691686154814ull, 0xF128},
               {4, 63, 1691686154849ull, 0x59EA},
               {9, 85, 1691686154887ull, 0xF53D}};
  ss_beacon_t *b = malloc(sizeof *b);
  for (int k = 0; k < 4; k++) {
    CHECK_EQ_INT(ss_file_beacon(&f, (uint64_t)k + 1, b, err, sizeof err), SS_OK);
    CHECK_EQ_INT(b->size, 39);
    CHECK_EQ_INT(b->remaining, want[k].remaining);
    CHECK_EQ_INT(b->count, 1);
    CHECK_EQ_INT(b->markers[0].shard, 1);
    CHECK_EQ_INT(b->markers[0].seq, want[k].seq);
    CHECK_EQ_INT(b->markers[0].ts, want[k].ts);
    CHECK_EQ_INT(b->markers[0].crc, want[k].crc);
  }
  /* After beacon 1 the next frame is hello-21 at 1024 + 39 + 39 = 1102. */
  uint64_t pos;
  CHECK_EQ_INT(ss_file_after_beacon(&f, 1, &pos, err, sizeof err), SS_OK);
  CHECK_EQ_INT(pos, 1102);
  ss_msg_t m;
  ss_file_goto(&f, pos);
  CHECK_EQ_INT(ss_file_next(&f, &m), SS_OK);
  CHECK_EQ_INT(m.seq, 21);
  /* Seek: seq >= 50 -> the last beacon with marker seq < 50 is 2 (seq 42). */
  uint64_t k;
  ss_file_seek_beacon(&f, (const uint8_t *)"hello", 5, 1, 0, 50, &k);
  CHECK_EQ_INT(k, 2);
  /* Time: strictly after 1691686154849 -> beacon 3 (ts == target is left). */
  ss_file_seek_beacon(&f, (const uint8_t *)"hello", 5, 1, 1, 1691686154849ull, &k);
  CHECK_EQ_INT(k, 3);
  ss_file_seek_beacon(&f, (const uint8_t *)"hello", 5, 1, 1, 0, &k);
  CHECK_EQ_INT(k, 0);
  ss_file_seek_beacon(&f, (const uint8_t *)"hello", 5, 1, 0, 1000, &k);
  CHECK_EQ_INT(k, 4);
  /* Another shard is never mentioned: 0, which is always correct. */
  ss_file_seek_beacon(&f, (const uint8_t *)"hello", 5, 0, 0, 50, &k);
  CHECK_EQ_INT(k, 0);
  /* Live start: the end of the EOS frame, which is the end of the file. */
  CHECK_EQ_INT(ss_file_live_start(&f, &pos, err, sizeof err), SS_OK);
  CHECK_EQ_INT(pos, 4830);
  free(b);
  ss_file_close(&f);
  close(fd);
}

/* Write many messages over several streams with interval I, read them back, and read every
 * prefix: each must give the whole messages before the cut and SS_MORE at the cut frame. */
static void round_trip(uint32_t I, int nmsg, size_t maxpay, int prefixes) {
  ss_header_t h;
  ss_buf_t out = {.realloc = re};
  ss_header_init(&h, "round", 1, I);
  ss_buf_reserve(&out, 128);
  ss_header_encode(&h, out.data);
  out.len = 128;
  ss_writer_t w;
  ss_writer_init(&w, I, 128, re);
  ss_writer_begin(&w, &out);
  static const char *keys[] = {"a", "bb", "c-c", "d.d", "e_e", "ffffff"};
  uint64_t *ends = calloc((size_t)nmsg, sizeof *ends);
  uint8_t *pay = malloc(maxpay + 1);
  unsigned seed = 7;
  for (int i = 0; i < nmsg; i++) {
    const char *k = keys[i % 6];
    size_t plen = (seed = seed * 1103515245u + 12345u) % (maxpay + 1);
    for (size_t j = 0; j < plen; j++)
      pay[j] = (uint8_t)(i + j);
    CHECK_EQ_INT(ss_writer_frame(&w, &out, (const uint8_t *)k, strlen(k), (uint64_t)(i % 2),
                                 (uint64_t)i, 1000 + (uint64_t)i, pay, plen),
                 0);
    ends[i] = w.pos;
  }
  CHECK_EQ_INT(w.pos, out.len);
  /* Beacons sit at every multiple of I, complete. */
  for (uint64_t off = I; off < out.len; off += I) {
    ss_beacon_t *b = malloc(sizeof *b);
    char err[200];
    int rc = ss_beacon_parse(out.data + off, out.len - off, off, I, b, err, sizeof err);
    CHECK_EQ_INT(rc, SS_OK);
    CHECK(b->count == (ss_num_markers(I) < 6 ? ss_num_markers(I) : 6) || off < 3 * I);
    free(b);
  }
  ss_reader_t r;
  ss_msg_t m;
  int n = 0, rc, bad = 0;
  ss_reader_init(&r, I, 128, re);
  while ((rc = ss_reader_next(&r, out.data, 0, out.len, &m)) == SS_OK) {
    if (m.seq != (uint64_t)n || m.ts != 1000 + (uint64_t)n || m.end > ends[n])
      bad++;
    ends[n] = m.end; /* without a beacon that follows the frame at once */
    for (size_t j = 0; j < m.len; j++)
      if (m.payload[j] != (uint8_t)(n + (int)j)) {
        bad++;
        break;
      }
    n++;
  }
  CHECK_EQ_INT(rc, SS_MORE);
  if (rc == SS_ERR)
    fprintf(stderr, "I=%u: %s\n", I, r.err);
  CHECK_EQ_INT(n, nmsg);
  CHECK_EQ_INT(bad, 0);
  ss_reader_free(&r);

  /* Every cut: the messages before it, then SS_MORE with partial set unless the cut is clean. */
  int wrong = 0;
  for (size_t cut = 128; prefixes && cut <= out.len; cut += (cut < 4096 ? 1 : 7)) {
    int got = 0;
    ss_reader_init(&r, I, 128, re);
    while ((rc = ss_reader_next(&r, out.data, 0, cut, &m)) == SS_OK)
      got++;
    int whole = 0;
    while (whole < nmsg && ends[whole] <= cut)
      whole++;
    if (rc != SS_MORE || got != whole)
      wrong++;
    ss_reader_free(&r);
  }
  CHECK_EQ_INT(wrong, 0);
  free(ends);
  free(pay);
  ss_writer_free(&w);
  ss_buf_free(&out);
}

static void test_round_trips(void) {
  round_trip(128, 300, 300, 1);
  round_trip(300, 300, 700, 1);
  round_trip(571, 300, 100, 1);
  round_trip(640, 200, 2000, 1);
  round_trip(1024, 500, 50, 1);
  round_trip(1135, 300, 5000, 0);
  round_trip(4096, 1000, 200, 0);
}

/* Damage: each kind is reported with the offset of what is wrong, after the good frames. */
static void test_damage(void) {
  size_t len;
  uint8_t *data = slurp("consumer.ss", &len);
  ss_reader_t r;
  ss_msg_t m;
  int n, rc;

  /* A payload byte of hello-1 (the second frame, at 128 + 44). */
  data[128 + 44 + 34] ^= 1;
  ss_reader_init(&r, 1024, 128, re);
  n = 0;
  while ((rc = ss_reader_next(&r, data, 0, len, &m)) == SS_OK)
    n++;
  CHECK_EQ_INT(rc, SS_ERR);
  CHECK_EQ_INT(n, 1);
  CHECK_EQ_INT(r.err_off, 172);
  CHECK_CONTAINS(r.err, "offset 172: checksum mismatch");
  ss_reader_free(&r);
  data[128 + 44 + 34] ^= 1;

  /* An impossible key length. */
  data[128] = 250;
  ss_reader_init(&r, 1024, 128, re);
  CHECK_EQ_INT(ss_reader_next(&r, data, 0, len, &m), SS_ERR);
  CHECK_CONTAINS(r.err, "offset 128: impossible length");
  ss_reader_free(&r);
  data[128] = 5;

  /* An invalid key, shown escaped: a NUL in it does not cut the message short. */
  data[129] = 0;
  data[131] = '\n';
  ss_reader_init(&r, 1024, 128, re);
  CHECK_EQ_INT(ss_reader_next(&r, data, 0, len, &m), SS_ERR);
  CHECK_CONTAINS(r.err, "offset 128: invalid stream key '\\x00e\\x0alo' (A-Z a-z 0-9 . _ - only)");
  ss_reader_free(&r);
  data[129] = 'h';
  data[131] = 'l';

  /* A payload length beyond the limit. */
  ss_reader_init(&r, 1024, 128, re);
  r.max_frame = 40;
  CHECK_EQ_INT(ss_reader_next(&r, data, 0, len, &m), SS_ERR);
  CHECK_CONTAINS(r.err, "impossible length");
  ss_reader_free(&r);

  /* A broken beacon: its start byte, then its remaining count. */
  data[1024] = 0;
  ss_reader_init(&r, 1024, 128, re);
  n = 0;
  while ((rc = ss_reader_next(&r, data, 0, len, &m)) == SS_OK)
    n++;
  CHECK_EQ_INT(rc, SS_ERR);
  CHECK_EQ_INT(n, 20);
  CHECK_CONTAINS(r.err, "offset 1024: broken beacon");
  ss_reader_free(&r);
  data[1024] = 0x0d;
  data[1024 + 4] = 40;
  ss_reader_init(&r, 1024, 128, re);
  while ((rc = ss_reader_next(&r, data, 0, len, &m)) == SS_OK)
    ;
  CHECK_EQ_INT(rc, SS_ERR);
  CHECK_CONTAINS(r.err, "offset 1018: impossible length or broken beacon: the frame is 45 bytes, "
                        "but the beacon at offset 1024 says 40");
  ss_reader_free(&r);
  data[1024 + 4] = 39;

  /* A bad terminator. */
  data[128 + 43] = 0x0a;
  ss_reader_init(&r, 1024, 128, re);
  CHECK_EQ_INT(ss_reader_next(&r, data, 0, len, &m), SS_ERR);
  CHECK_CONTAINS(r.err, "offset 128: frame terminator");
  ss_reader_free(&r);
  data[128 + 43] = 0x0d;

  /* Headers. */
  ss_header_t h;
  char err[200];
  data[0] = 'X';
  CHECK_EQ_INT(ss_header_decode(data, len, &h, err, sizeof err), SS_ERR);
  CHECK_CONTAINS(err, "bad magic");
  data[0] = 'S';
  data[2] = 2;
  CHECK_EQ_INT(ss_header_decode(data, len, &h, err, sizeof err), SS_ERR);
  CHECK_CONTAINS(err, "unsupported .ss version 2");
  data[2] = 1;
  CHECK_EQ_INT(ss_header_decode(data, 100, &h, err, sizeof err), SS_MORE);
  free(data);
}

int main(int argc, char **argv) {
  datadir = argc > 1 ? argv[1] : "data";
  test_crc();
  test_worked_example();
  test_fixtures();
  test_consumer_beacons();
  test_round_trips();
  test_damage();
  return test_report();
}
