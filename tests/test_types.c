/* test_types.c: the plain types: errors, timestamps, stream keys, blocks and slices, options,
 * URIs. */
#include <seastreamer/seastreamer.h>
#include <stdlib.h>

#include "test.h"

static void test_errors(void) {
  CHECK_STR(sea_err_name(SEA_ETOOBIG), "SEA_ETOOBIG");
  CHECK_STR(sea_strerror(SEA_ETOOBIG), "payload too large");
  CHECK_STR(sea_err_name(0), "SEA_OK");
  CHECK_STR(sea_err_name(-9999), "SEA_UNKNOWN");
  CHECK_STR(sea_strerror(-9999), "unknown error");
  CHECK(SEA_EOF < 0 && SEA_EPIPE < 0);
}

static void test_timestamps(void) {
  char buf[32];
  int64_t us = 0;
  CHECK_EQ_INT(sea_format_timestamp(0, buf), 23);
  CHECK_STR(buf, "1970-01-01T00:00:00.000");
  CHECK_EQ_INT(sea_parse_timestamp("2026-11-26T10:00:00.123", 23, &us), 0);
  CHECK_EQ_INT(us, 1795687200123000LL);
  sea_format_timestamp(us, buf);
  CHECK_STR(buf, "2026-11-26T10:00:00.123");
  CHECK_EQ_INT(sea_parse_timestamp("2024-02-29T23:59:59", 19, &us), 0);
  sea_format_timestamp(us, buf);
  CHECK_STR(buf, "2024-02-29T23:59:59.000");
  CHECK_EQ_INT(sea_parse_timestamp("2023-02-29T00:00:00", 19, &us), SEA_EFORMAT);
  CHECK_EQ_INT(sea_parse_timestamp("2023-13-01T00:00:00", 19, &us), SEA_EFORMAT);
  CHECK_EQ_INT(sea_parse_timestamp("2023-01-01 00:00:00", 19, &us), SEA_EFORMAT);
  CHECK_EQ_INT(sea_parse_timestamp("2023-01-01T00:00:00.", 20, &us), SEA_EFORMAT);
  CHECK_EQ_INT(sea_parse_timestamp("2023-01-01T24:00:00", 19, &us), SEA_EFORMAT);
  CHECK_EQ_INT(sea_parse_timestamp("2023-01-01T00:00", 16, &us), SEA_EFORMAT);
  CHECK_EQ_INT(sea_parse_timestamp("2023-01-01T00:00:00.123456789", 29, &us), 0);
  CHECK_EQ_INT(us % 1000000, 123456); /* truncated to microseconds */
  CHECK_EQ_INT(sea_parse_timestamp("9999-12-31T23:59:59.999", 23, &us), 0);
  sea_format_timestamp(us, buf);
  CHECK_STR(buf, "9999-12-31T23:59:59.999");
  int64_t now = sea_now_us();
  CHECK(now > 1700000000000000LL);
}

static void test_keys(void) {
  char long_key[260];
  memset(long_key, 'k', sizeof long_key);
  CHECK(sea_stream_key_valid("orders", 6));
  CHECK(sea_stream_key_valid("a.b_c-D9", 8));
  CHECK(!sea_stream_key_valid("", 0));
  CHECK(!sea_stream_key_valid("a b", 3));
  CHECK(!sea_stream_key_valid("a/b", 3));
  CHECK(sea_stream_key_valid(long_key, 249));
  CHECK(!sea_stream_key_valid(long_key, 250));
  int err = 0;
  const char *a = sea_stream_key("orders", 6, &err);
  char copy[] = "orders-and-more";
  const char *b = sea_stream_key(copy, 6, &err);
  CHECK(a != NULL && a == b);
  CHECK_STR(a, "orders");
  CHECK(sea_stream_key("bad key", 7, &err) == NULL);
  CHECK_EQ_INT(err, SEA_EKEY);
  /* Many keys: the intern table grows and keeps earlier pointers. */
  char name[32];
  for (int i = 0; i < 1000; i++) {
    int n = snprintf(name, sizeof name, "key-%d", i);
    sea_stream_key(name, (size_t)n, NULL);
  }
  CHECK(sea_stream_key("orders", 6, NULL) == a);
}

static void test_blocks(void) {
  sea_bytes_t whole, part, bad;
  CHECK_EQ_INT(sea_bytes_copy("hello world", 11, &whole), 0);
  CHECK_EQ_INT(sea_bytes_slice(&whole, 6, 5, &part), 0);
  CHECK(part.len == 5 && memcmp(part.data, "world", 5) == 0);
  CHECK(part.block == whole.block);
  CHECK_EQ_INT(sea_bytes_slice(&whole, 6, 6, &bad), SEA_EINVAL);
  CHECK_EQ_INT(sea_bytes_slice(&whole, 12, 0, &bad), SEA_EINVAL);
  sea_bytes_release(&whole);
  /* The slice keeps the block alive (ASan would catch a use after free here). */
  CHECK(memcmp(part.data, "world", 5) == 0);
  sea_bytes_release(&part);
  CHECK(part.block == NULL && part.len == 0);

  sea_block_t *b = sea_block_new(4);
  memcpy(sea_block_data(b), "abcd", 4);
  CHECK_EQ_INT(sea_block_size(b), 4);
  sea_message_t m;
  memset(&m, 0, sizeof m);
  m.payload.data = sea_block_data(b);
  m.payload.len = 4;
  m.payload.block = b;
  sea_message_t *kept = sea_message_dup(&m);
  sea_block_unref(b);
  CHECK(kept && memcmp(kept->payload.data, "abcd", 4) == 0);
  sea_message_free(kept);

  /* A large block let go is reused by the next one of its size (readers take one per chunk);
   * one still referenced is not. Under AddressSanitizer every block is freed instead. */
  sea_block_t *big = sea_block_new(256 * 1024);
  sea_block_t *held = sea_block_new(256 * 1024);
  CHECK(big != NULL && held != NULL && big != held);
  sea_block_unref(big);
  sea_block_t *again = sea_block_new(256 * 1024);
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(again == big);
#endif
  CHECK(again != held);
  CHECK_EQ_INT(sea_block_size(again), 256 * 1024);
  sea_block_unref(again);
  sea_block_unref(held);
}

static void test_options(void) {
  sea_options_t *o = sea_options_new();
  CHECK_EQ_INT(sea_options_parse(o, "mode=resumable"), 0);
  CHECK_EQ_INT(sea_options_parse(o, "compression.type=zstd"), 0);
  CHECK_EQ_INT(sea_options_parse(o, "empty="), 0);
  CHECK_EQ_INT(sea_options_parse(o, "novalue"), SEA_EOPTION);
  CHECK_EQ_INT(sea_options_parse(o, "=x"), SEA_EOPTION);
  CHECK_EQ_INT(sea_options_parse(o, "bad key=x"), SEA_EOPTION);
  CHECK_EQ_INT(sea_options_parse(o, "eq=a=b"), 0);
  CHECK_STR(sea_options_get(o, "eq"), "a=b");
  CHECK_EQ_INT(sea_options_set(o, "mode", "realtime"), 0);
  CHECK_STR(sea_options_get(o, "mode"), "realtime");
  CHECK_STR(sea_options_get(o, "empty"), "");
  CHECK(sea_options_get(o, "missing") == NULL);
  CHECK_EQ_INT(sea_options_count(o), 4);
  const char *k, *v;
  CHECK_EQ_INT(sea_options_at(o, 1, &k, &v), 0);
  CHECK_STR(k, "compression.type");
  CHECK_EQ_INT(sea_options_at(o, 4, &k, &v), SEA_EINVAL);
  sea_options_free(o);
}

static void test_uris(void) {
  sea_uri_t *u;
  char err[512];
  CHECK_EQ_INT(sea_uri_parse("kafka://a:9092,b:9092/orders,payments", &u, err, sizeof err), 0);
  CHECK_STR(u->scheme, "kafka");
  CHECK_EQ_INT(u->node_count, 2);
  CHECK_STR(u->nodes[1], "b:9092");
  CHECK_EQ_INT(u->key_count, 2);
  CHECK_STR(u->keys[1], "payments");
  sea_uri_free(u);

  CHECK_EQ_INT(sea_uri_parse("stdio:///orders", &u, err, sizeof err), 0);
  CHECK_EQ_INT(u->node_count, 0);
  CHECK_EQ_INT(u->key_count, 1);
  sea_uri_free(u);

  CHECK_EQ_INT(sea_uri_parse("stdio://", &u, err, sizeof err), 0);
  CHECK(u->node_count == 0 && u->key_count == 0);
  sea_uri_free(u);

  CHECK_EQ_INT(sea_uri_parse("file://./data/feed.ss/orders", &u, err, sizeof err), 0);
  CHECK_STR(u->nodes[0], "./data/feed.ss");
  CHECK_STR(u->keys[0], "orders");
  sea_uri_free(u);

  CHECK_EQ_INT(sea_uri_parse("redis://user:pw@localhost:6379/orders", &u, err, sizeof err), 0);
  CHECK_STR(u->nodes[0], "user:pw@localhost:6379");
  sea_uri_free(u);

  CHECK_EQ_INT(sea_uri_parse("REDIS://localhost", &u, err, sizeof err), 0);
  CHECK_STR(u->scheme, "redis");
  CHECK_EQ_INT(u->key_count, 0);
  sea_uri_free(u);

  /* Ports: a number out of range is refused, naming it and where; what is not a number is the
   * backend's to judge (a file path may hold a colon). */
  CHECK_EQ_INT(sea_uri_parse("kafka://h:65536/t", &u, err, sizeof err), SEA_EURI);
  CHECK_CONTAINS(err, "port 65536 of node 'h:65536' is out of range (1 to 65535)");
  CHECK_CONTAINS(err, "at offset 10 in URI");
  CHECK_EQ_INT(sea_uri_parse("redis://a:6379,u:pw@b:0/k", &u, err, sizeof err), SEA_EURI);
  CHECK_CONTAINS(err, "port 0 of node 'u:pw@b:0'");
  CHECK_EQ_INT(sea_uri_parse("kafka://[::1]:99999999999999999999/t", &u, err, sizeof err),
               SEA_EURI);
  CHECK_EQ_INT(sea_uri_parse("kafka://[::1]:9092,h:65535/t", &u, err, sizeof err), 0);
  sea_uri_free(u);
  CHECK_EQ_INT(sea_uri_parse("file://my:file.ss/k", &u, err, sizeof err), 0);
  sea_uri_free(u);

  /* Bad URIs name what and where. */
  CHECK_EQ_INT(sea_uri_parse("orders", &u, err, sizeof err), SEA_EURI);
  CHECK_CONTAINS(err, "expected scheme://");
  CHECK_EQ_INT(sea_uri_parse("kafka:/a/b", &u, err, sizeof err), SEA_EURI);
  CHECK_EQ_INT(sea_uri_parse("://a/b", &u, err, sizeof err), SEA_EURI);
  CHECK_EQ_INT(sea_uri_parse("kafka://a,,b/x", &u, err, sizeof err), SEA_EURI);
  CHECK_CONTAINS(err, "empty node");
  CHECK_CONTAINS(err, "offset 10");
  CHECK_EQ_INT(sea_uri_parse("kafka://a/x,", &u, err, sizeof err), SEA_EURI);
  CHECK_CONTAINS(err, "empty stream key");
  CHECK_EQ_INT(sea_uri_parse("kafka://a/bad!key", &u, err, sizeof err), SEA_EKEY);
  CHECK_CONTAINS(err, "invalid stream key 'bad!key'");
  CHECK_CONTAINS(err, "offset 10");
  CHECK_EQ_INT(sea_uri_parse("kafka://a /x", &u, err, sizeof err), SEA_EURI);
  CHECK_CONTAINS(err, "whitespace");
  char long_uri[400] = "stdio:///";
  memset(long_uri + 9, 'k', 250);
  long_uri[259] = '\0';
  CHECK_EQ_INT(sea_uri_parse(long_uri, &u, err, sizeof err), SEA_EKEY);
  CHECK_CONTAINS(err, "250 bytes (the limit is 249)");
  long_uri[258] = '\0';
  CHECK_EQ_INT(sea_uri_parse(long_uri, &u, err, sizeof err), 0);
  sea_uri_free(u);
}

int main(void) {
  test_errors();
  test_timestamps();
  test_keys();
  test_blocks();
  test_options();
  test_uris();
  return test_report();
}
