/* commit_watch.c: watches a consumer group's committed offset on one topic and the size of
 * another topic, for test_kafka_commits.sh.
 *
 *   commit_watch query BOOTSTRAP GROUP IN OUT
 *       prints "OUT_END COMMITTED": the end offset of OUT's partition 0 (how many messages it
 *       holds) and GROUP's committed offset on IN's partition 0 (0 when there is none).
 *   commit_watch kill BOOTSTRAP GROUP IN OUT N PID COMMITS
 *       looks every 20 ms; each time the committed offset changes to a new value above 0 while
 *       OUT still holds fewer than N messages (the relay still has a backlog), prints
 *       "commit COMMITTED OUT_END". After COMMITS such changes it kills PID (SIGKILL) and exits 0.
 *       Exits 1 (after killing PID) if OUT reached N first, 2 if PID ended by itself, 3 after
 *       60 s without either.
 * Topics of one partition: the tests create them so. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static rd_kafka_t *rk;

static void die(const char *what, const char *why) {
  fprintf(stderr, "commit_watch: %s: %s\n", what, why);
  exit(4);
}

static void nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Returns 0 and sets *out_end and *committed, or -1 when the broker did not answer. A topic that
 * does not exist yet holds 0 messages. */
static int look(const char *group_topic, const char *out_topic, long long *out_end,
                long long *committed) {
  int64_t lo = 0, hi = 0;
  rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, out_topic, 0, &lo, &hi, 5000);
  if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
      e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
    hi = 0;
  else if (e)
    return -1;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, group_topic, 0);
  e = rd_kafka_committed(rk, l, 5000);
  int64_t c = l->elems[0].offset;
  rd_kafka_topic_partition_list_destroy(l);
  if (e)
    return -1;
  *out_end = hi;
  *committed = c > 0 ? c : 0;
  return 0;
}

int main(int argc, char **argv) {
  int kill_mode = argc == 9 && strcmp(argv[1], "kill") == 0;
  if (!kill_mode && !(argc == 6 && strcmp(argv[1], "query") == 0)) {
    fprintf(stderr, "usage: commit_watch query BOOTSTRAP GROUP IN OUT\n"
                    "       commit_watch kill BOOTSTRAP GROUP IN OUT N PID COMMITS\n");
    return 4;
  }
  char err[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* A group id is needed to ask for the group's offsets; this client never joins it. */
  if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[2], err, sizeof err) ||
      rd_kafka_conf_set(conf, "group.id", argv[3], err, sizeof err) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err))
    die("conf", err);
  rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == NULL)
    die("rd_kafka_new", err);
  long long out_end = 0, committed = 0;
  int rc = 0;
  if (!kill_mode) {
    if (look(argv[4], argv[5], &out_end, &committed) != 0)
      die("query", "the broker did not answer");
    printf("%lld %lld\n", out_end, committed);
  } else {
    long long n = atoll(argv[6]);
    pid_t pid = (pid_t)atol(argv[7]);
    int want = atoi(argv[8]), seen = 0;
    long long last = 0;
    double t0 = now_s();
    rc = 3;
    while (now_s() - t0 < 60) {
      if (kill(pid, 0) != 0) {
        rc = 2;
        break;
      }
      if (look(argv[4], argv[5], &out_end, &committed) == 0) {
        if (out_end >= n) {
          kill(pid, SIGKILL);
          rc = 1;
          break;
        }
        /* The relay commits only what the output confirmed, so the output holds at least the
         * committed count; a smaller end is a stale answer (the topic was not known yet). */
        if (committed > last && out_end >= committed) {
          last = committed;
          printf("commit %lld %lld\n", committed, out_end);
          fflush(stdout);
          if (++seen >= want) {
            kill(pid, SIGKILL);
            rc = 0;
            break;
          }
        }
      }
      nap_ms(20);
    }
    if (rc == 3)
      kill(pid, SIGKILL);
  }
  rd_kafka_destroy(rk);
  return rc;
}
