/* metrics.c: `--metrics HOST:PORT`, a pipeline's counters over HTTP in Prometheus' text
 * exposition format (version 0.0.4) at GET /metrics.
 *
 * Why libmicrohttpd and not a hand-written responder: HTTP/1.x parsing (request lines, headers,
 * keep-alive, pipelining, slow or hostile clients, timeouts) is exactly what a well-kept library
 * does better, and Debian 12 has it (libmicrohttpd-dev). It runs here without a thread of its own
 * (MHD_USE_EPOLL without MHD_USE_INTERNAL_POLLING_THREAD): its epoll descriptor is polled by the
 * runtime's libuv loop (a uv_poll_t) and its timeouts by a uv_timer_t, and MHD_run then does its
 * work on the loop's thread. So the counters are read on the thread that writes them, with no
 * lock, and the endpoint is one more event source of the one loop. It only reads: nothing here
 * changes what is delivered, acknowledged or committed. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "internal.h"

#define METRICS_CONNECTIONS 32 /* at most this many scrapers at once */
#define METRICS_IDLE_S 10      /* an idle connection is closed after this many seconds */
#define METRICS_LAG_MAX 1024   /* lag entries per input */

struct sea_metrics {
  sea_runtime_t *rt;
  sea_pipeline_t *pl;
  struct MHD_Daemon *d;
  uv_poll_t *poll;   /* MHD's epoll descriptor; freed in its close callback */
  uv_timer_t *timer; /* MHD's next timeout; freed in its close callback */
  int port;
  double start_s; /* process_start_time_seconds */
};

/* ---------------------------------------------------------------------------------------------
 * The text
 * ------------------------------------------------------------------------------------------- */

static void put_char(sea__out_t *o, char c) {
  if (o->used + 1 < o->len) {
    o->buf[o->used] = c;
    o->buf[o->used + 1] = '\0';
  }
  o->used++;
}

/* A label value, escaped as the format asks: backslash, double quote and newline. */
static void put_value(sea__out_t *o, const char *s, size_t n) {
  for (size_t i = 0; i < n && s[i]; i++) {
    if (s[i] == '\\' || s[i] == '"') {
      put_char(o, '\\');
      put_char(o, s[i]);
    } else if (s[i] == '\n') {
      put_char(o, '\\');
      put_char(o, 'n');
    } else {
      put_char(o, s[i]);
    }
  }
}

/* A URI as a label: without user and password (scheme://user:pass@host) and without a query, so
 * that no secret is published to whoever can scrape. */
static void put_uri(sea__out_t *o, const char *uri) {
  if (uri == NULL)
    uri = "";
  const char *q = strchr(uri, '?');
  size_t n = q ? (size_t)(q - uri) : strlen(uri);
  const char *sep = strstr(uri, "://");
  if (sep && (size_t)(sep - uri) < n) {
    const char *auth = sep + 3;
    size_t alen = strcspn(auth, "/");
    const char *at = memchr(auth, '@', alen);
    if (at && at < uri + n) {
      put_value(o, uri, (size_t)(auth - uri));
      put_value(o, at + 1, n - (size_t)(at + 1 - uri));
      return;
    }
  }
  put_value(o, uri, n);
}

static void family(sea__out_t *o, const char *name, const char *type, const char *help) {
  sea__put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one sample: HELP, TYPE and the value. */
static void scalar(sea__out_t *o, const char *name, const char *type, const char *help,
                   uint64_t v) {
  family(o, name, type, help);
  sea__put(o, "%s %" PRIu64 "\n", name, v);
}

/* name{KIND="index",uri="..."} v for input or output i. */
static void flow_sample(sea__out_t *o, const char *name, int output, size_t i, const sea__flow_t *f,
                        uint64_t v) {
  if (f->txn)
    sea__put(o, "%s{output=\"txn\",uri=\"", name);
  else
    sea__put(o, "%s{%s=\"%zu\",uri=\"", name, output ? "output" : "input", i);
  put_uri(o, f->uri);
  sea__put(o, "\"} %" PRIu64 "\n", v);
}

/* Every input's (output 0) or output's flow: the value field picks which number. */
enum { F_MESSAGES, F_BYTES, F_CONFIRMED, F_INFLIGHT };
static void flows(sea__out_t *o, sea_pipeline_t *pl, int output, int field, const char *name,
                  const char *type, const char *help) {
  family(o, name, type, help);
  sea__flow_t f;
  for (size_t i = 0; sea__pipeline_flow(pl, output, i, &f) == 0; i++) {
    uint64_t v = field == F_MESSAGES    ? f.messages
                 : field == F_BYTES     ? f.bytes
                 : field == F_CONFIRMED ? f.confirmed
                                        : f.inflight;
    flow_sample(o, name, output, i, &f, v);
  }
}

/* Each input's lag, as sea_consumer_lag knows it, asked once per scrape (for redis a call also
 * asks the server for the next one): n entries, input index in each entry's slot of inputs. */
typedef struct lags {
  sea_lag_t *lag;
  size_t *input;
  size_t n;
} lags_t;

static void lags_get(sea_pipeline_t *pl, lags_t *ls) {
  memset(ls, 0, sizeof *ls);
  sea_lag_t *buf = sea__malloc(METRICS_LAG_MAX * sizeof *buf);
  size_t cap = 0;
  for (size_t i = 0; buf != NULL; i++) {
    sea_consumer_t *c = sea_pipeline_input(pl, i);
    if (c == NULL)
      break;
    int n = sea_consumer_lag(c, buf, METRICS_LAG_MAX);
    for (int k = 0; k < n && k < METRICS_LAG_MAX; k++) {
      if (ls->n == cap) {
        size_t ncap = cap ? cap * 2 : 16;
        sea_lag_t *l = sea__realloc(ls->lag, ncap * sizeof *l);
        if (l != NULL)
          ls->lag = l;
        size_t *in = l ? sea__realloc(ls->input, ncap * sizeof *in) : NULL;
        if (in == NULL)
          goto out; /* out of memory: the entries so far */
        ls->input = in;
        cap = ncap;
      }
      ls->lag[ls->n] = buf[k];
      ls->input[ls->n++] = i;
    }
  }
out:
  sea__free(buf);
}

/* One lag family; an unknown lag (-1) has no sample. */
static void lags_put(sea__out_t *o, const lags_t *ls, int bytes) {
  const char *name = bytes ? "seastreamer_lag_bytes" : "seastreamer_lag_messages";
  family(o, name, "gauge",
         bytes ? "Bytes of each input stream and shard not delivered yet (where the backend knows)."
               : "Messages of each input stream and shard not delivered yet (where the backend "
                 "knows).");
  for (size_t k = 0; k < ls->n; k++) {
    const sea_lag_t *l = &ls->lag[k];
    int64_t v = bytes ? l->lag_bytes : l->lag;
    if (v < 0)
      continue;
    sea__put(o, "%s{input=\"%zu\",stream=\"", name, ls->input[k]);
    const char *key = l->stream_key ? l->stream_key : "";
    put_value(o, key, strlen(key));
    sea__put(o, "\",shard=\"%" PRIu64 "\"} %" PRId64 "\n", l->shard, v);
  }
}

static void text(const sea_metrics_t *m, sea__out_t *o) {
  if (o->len)
    o->buf[0] = '\0';
  family(o, "process_start_time_seconds", "gauge",
         "Start time of the process since the Unix epoch in seconds.");
  sea__put(o, "process_start_time_seconds %.2f\n", m->start_s);
  sea_pipeline_t *pl = m->pl;
  if (pl == NULL)
    return;
  sea_pipeline_stats_t st;
  memset(&st, 0, sizeof st);
  sea_pipeline_stats(pl, &st);
  /* The same numbers as --stats-json, under the names of its fields. */
  scalar(o, "seastreamer_messages_in_total", "counter",
         "Input messages handed to the processor (--stats-json messages_in).", st.processed);
  scalar(o, "seastreamer_bytes_in_total", "counter",
         "Payload bytes of the input messages handed to the processor (bytes_in).", st.bytes_in);
  scalar(o, "seastreamer_messages_out_total", "counter",
         "Sends accepted by the outputs (messages_out).", st.sent);
  scalar(o, "seastreamer_bytes_out_total", "counter",
         "Payload bytes of the sends accepted by the outputs (bytes_out).", st.bytes_out);
  scalar(o, "seastreamer_messages_confirmed_total", "counter",
         "Sends the outputs confirmed (confirmed).", st.receipted);
  scalar(o, "seastreamer_messages_done_total", "counter",
         "Input messages done: processed and every send of theirs confirmed.", st.done);
  scalar(o, "seastreamer_inflight", "gauge", "Sends not confirmed yet (inflight).",
         st.sent > st.receipted ? st.sent - st.receipted : 0);
  scalar(o, "seastreamer_commits_total", "counter",
         "Commits of the inputs' positions completed (commits).", st.commits);
  scalar(o, "seastreamer_join_late_total", "counter",
         "Joined inputs: messages that arrived after a later one was processed.", st.late);
  scalar(o, "seastreamer_join_buffered", "gauge", "Joined inputs: messages waiting in the join.",
         st.join_buffered);
  /* Errors, as the pipeline tells them apart: a rejection the policy skipped or dead-lettered
   * (skipped; with on_error stop a rejection is the failure instead), an aborted transaction,
   * and the failure that stopped the pipeline (the first one only: it stops there). */
  family(o, "seastreamer_errors_total", "counter",
         "Errors by kind: rejected (skipped or dead-lettered by the error policy), "
         "transaction_aborted, failed (the failure that stopped the pipeline).");
  sea__put(o, "seastreamer_errors_total{kind=\"rejected\"} %" PRIu64 "\n", st.skipped);
  sea__put(o, "seastreamer_errors_total{kind=\"transaction_aborted\"} %" PRIu64 "\n", st.aborts);
  sea__put(o, "seastreamer_errors_total{kind=\"failed\"} %d\n", sea_pipeline_status(pl) != 0);
  flows(o, pl, 0, F_MESSAGES, "seastreamer_input_messages_total", "counter",
        "Messages of each input handed to the processor.");
  flows(o, pl, 0, F_BYTES, "seastreamer_input_bytes_total", "counter",
        "Payload bytes of each input's messages handed to the processor.");
  flows(o, pl, 1, F_MESSAGES, "seastreamer_output_messages_total", "counter",
        "Sends each output accepted.");
  flows(o, pl, 1, F_BYTES, "seastreamer_output_bytes_total", "counter",
        "Payload bytes of the sends each output accepted.");
  flows(o, pl, 1, F_CONFIRMED, "seastreamer_output_confirmed_total", "counter",
        "Sends each output confirmed.");
  flows(o, pl, 1, F_INFLIGHT, "seastreamer_output_inflight", "gauge",
        "Sends of each output not confirmed yet.");
  lags_t ls;
  lags_get(pl, &ls);
  lags_put(o, &ls, 0);
  lags_put(o, &ls, 1);
  sea__free(ls.lag);
  sea__free(ls.input);
}

size_t sea_metrics_text(const sea_metrics_t *m, char *buf, size_t len) {
  sea__out_t o = {buf, len, 0};
  if (m == NULL) {
    if (len)
      buf[0] = '\0';
    return 0;
  }
  text(m, &o);
  return o.used;
}

/* The process's start time (the kernel's: /proc/self/stat's starttime after /proc/stat's btime),
 * or now if that cannot be read. */
static double process_start_s(void) {
  double now = (double)sea_now_us() / 1e6;
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (f == NULL)
    return now;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* the command's name may hold spaces and parentheses */
  unsigned long long start_ticks = 0;
  /* After ") ": state is field 3; starttime is field 22, the 20th from there. */
  for (int field = 2; p && field < 22; field++) {
    p = strchr(p + 1, ' ');
  }
  if (p == NULL || sscanf(p + 1, "%llu", &start_ticks) != 1)
    return now;
  unsigned long long btime = 0;
  f = fopen("/proc/stat", "r");
  if (f == NULL)
    return now;
  char line[256];
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "btime %llu", &btime) == 1)
      break;
  fclose(f);
  long hz = sysconf(_SC_CLK_TCK);
  if (btime == 0 || hz <= 0)
    return now;
  return (double)btime + (double)start_ticks / (double)hz;
}

/* ---------------------------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned code, const char *type,
                               const char *body, size_t len) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (r == NULL)
    return MHD_NO;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ok = MHD_queue_response(c, code, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_len, void **req) {
  sea_metrics_t *m = cls;
  static const char plain[] = "text/plain; charset=utf-8";
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    static const char msg[] = "method not allowed: GET /metrics\n";
    return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, plain, msg, sizeof msg - 1);
  }
  if (strcmp(url, "/metrics") != 0) {
    static const char msg[] = "not found: the metrics are at /metrics\n";
    return respond(c, MHD_HTTP_NOT_FOUND, plain, msg, sizeof msg - 1);
  }
  char small[16384];
  sea__out_t o = {small, sizeof small, 0};
  text(m, &o);
  char *body = small;
  if (o.used >= sizeof small) {  /* many inputs, outputs or lag entries: once more with room */
    size_t room = o.used + 4096; /* and more, for lag entries the backend learned meanwhile */
    body = sea__malloc(room);
    if (body == NULL) {
      static const char msg[] = "out of memory\n";
      return respond(c, MHD_HTTP_INTERNAL_SERVER_ERROR, plain, msg, sizeof msg - 1);
    }
    o = (sea__out_t){body, room, 0};
    text(m, &o);
  }
  enum MHD_Result ok = respond(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                               o.used < o.len ? o.used : o.len - 1);
  if (body != small)
    sea__free(body);
  return ok;
}

/* ---------------------------------------------------------------------------------------------
 * The loop: MHD's epoll descriptor is readable when one of its sockets has something; MHD_run
 * then does what is ready without blocking. MHD_get_timeout says when it must run anyway (idle
 * connections to close, work it left pending).
 * ------------------------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void run_mhd(sea_metrics_t *m) {
  MHD_run(m->d);
  MHD_UNSIGNED_LONG_LONG ms;
  if (MHD_get_timeout(m->d, &ms) == MHD_YES)
    uv_timer_start(m->timer, on_timer, (uint64_t)ms, 0);
  else
    uv_timer_stop(m->timer);
}

static void on_timer(uv_timer_t *t) {
  if (t->data)
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  if (h->data)
    run_mhd(h->data);
}

static void free_handle(uv_handle_t *h) {
  sea__free(h);
}

/* ---------------------------------------------------------------------------------------------
 * Listening
 * ------------------------------------------------------------------------------------------- */

/* Split "HOST:PORT", "[V6]:PORT" or ":PORT" into host (empty: every IPv4 interface) and port. */
static int split_addr(sea_runtime_t *rt, const char *s, char *host, size_t hlen, char *port,
                      size_t plen) {
  const char *h = s, *colon;
  size_t hn;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':')
      return sea__rt_err(rt, SEA_EINVAL, "expected [IPV6]:PORT");
    h = s + 1;
    hn = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (colon == NULL)
      return sea__rt_err(rt, SEA_EINVAL, "expected HOST:PORT (e.g. 127.0.0.1:9100)");
    hn = (size_t)(colon - s);
    if (memchr(s, ':', hn))
      return sea__rt_err(rt, SEA_EINVAL, "an IPv6 address goes in brackets: [ADDRESS]:PORT");
  }
  const char *p = colon + 1;
  size_t pn = strlen(p);
  unsigned long v = pn && pn <= 5 && strspn(p, "0123456789") == pn ? strtoul(p, NULL, 10) : 99999;
  if (v > 65535)
    return sea__rt_err(rt, SEA_EINVAL, "the port '%s' is not a number from 0 to 65535", p);
  if (hn >= hlen)
    return sea__rt_err(rt, SEA_EINVAL, "the host is too long");
  memcpy(host, h, hn);
  host[hn] = '\0';
  snprintf(port, plen, "%lu", v);
  return 0;
}

/* A listening socket for host_port, non-blocking; its port in *port. */
static int listen_on(sea_runtime_t *rt, const char *host_port, int *fd_out, int *port) {
  char host[256], portstr[8];
  int rc = split_addr(rt, host_port, host, sizeof host, portstr, sizeof portstr);
  if (rc != 0)
    return rc;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  hints.ai_family = host[0] ? AF_UNSPEC : AF_INET;
  int gai = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
  if (gai != 0)
    return sea__rt_err(rt, SEA_EINVAL, "cannot resolve '%s': %s", host, gai_strerror(gai));
  int err = 0, fd = -1;
  for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    /* A restart may bind while connections of the last run linger in TIME_WAIT; a listener
     * still there is refused all the same (Linux). */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    return sea__rt_err(rt, SEA_EINVAL, "cannot listen there: %s", strerror(err));
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  *port = 0;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
    *port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  *fd_out = fd;
  return 0;
}

int sea_metrics_serve(sea_runtime_t *rt, const char *host_port, sea_metrics_t **out) {
  if (out)
    *out = NULL;
  if (rt == NULL || host_port == NULL || out == NULL)
    return SEA_EINVAL;
  sea_metrics_t *m = sea__calloc(1, sizeof *m);
  if (m == NULL)
    return sea__rt_err(rt, SEA_ENOMEM, "out of memory");
  m->rt = rt;
  m->start_s = process_start_s();
  int fd = -1;
  int rc = listen_on(rt, host_port, &fd, &m->port);
  if (rc != 0) {
    sea__free(m);
    return rc;
  }
  m->d = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, on_request, m, MHD_OPTION_LISTEN_SOCKET, fd,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_IDLE_S, MHD_OPTION_END);
  const union MHD_DaemonInfo *info =
      m->d ? MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
  m->poll = sea__calloc(1, sizeof *m->poll);
  m->timer = sea__calloc(1, sizeof *m->timer);
  if (info == NULL || m->poll == NULL || m->timer == NULL) {
    if (m->d)
      MHD_stop_daemon(m->d); /* closes fd */
    else
      close(fd);
    sea__free(m->poll);
    sea__free(m->timer);
    sea__free(m);
    return sea__rt_err(rt, SEA_EIO, "cannot start the HTTP server (libmicrohttpd)");
  }
  uv_loop_t *loop = sea_runtime_uv_loop(rt);
  uv_poll_init(loop, m->poll, info->epoll_fd);
  uv_timer_init(loop, m->timer);
  m->poll->data = m;
  m->timer->data = m;
  uv_poll_start(m->poll, UV_READABLE, on_poll);
  /* The endpoint serves while the pipeline runs; it is no reason for the loop to go on. */
  uv_unref((uv_handle_t *)m->poll);
  uv_unref((uv_handle_t *)m->timer);
  *out = m;
  return 0;
}

void sea_metrics_set_pipeline(sea_metrics_t *m, sea_pipeline_t *pl) {
  if (m)
    m->pl = pl;
}

int sea_metrics_port(const sea_metrics_t *m) {
  return m ? m->port : 0;
}

void sea_metrics_close(sea_metrics_t *m) {
  if (m == NULL)
    return;
  /* The poll handle leaves libuv's epoll before MHD closes the descriptor it watches. */
  m->poll->data = NULL;
  m->timer->data = NULL;
  uv_close((uv_handle_t *)m->poll, free_handle);
  uv_close((uv_handle_t *)m->timer, free_handle);
  MHD_stop_daemon(m->d);
  sea__free(m);
}
