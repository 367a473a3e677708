/*
 * lgload: the benchmarks' own load generator, run inside a guest namespace. Every request opens
 * a NEW TCP connection (like cloud-init and the AWS SDKs), sends one HTTP/1.1 request with
 * `Connection: close`, reads the whole response, and closes. Single-threaded, epoll, bounded in
 * count and time. Prints one JSON line with its figures on stdout at the end.
 *
 *   lgload get   [opts] PATH        C concurrent connections, until -n requests or -d seconds;
 *                                   with -r RATE: open loop at RATE requests/s, latency counted
 *                                   from each request's scheduled time (no coordinated omission)
 *   lgload crawl [opts] ROOT...     a cloud-init-style crawl: every ROOT; a ROOT or listing entry
 *                                   ending in '/' is a listing whose lines are walked recursively
 *                                   ("0=name" lines, as in public-keys/, are walked as "0/")
 * options:
 *   -a ADDR   server IPv4 (default 169.254.169.254)     -p PORT (default 80)
 *   -c N      concurrency (get: 16, crawl: 1)          -n N   at most N requests (default 1e6)
 *   -d SEC    at most SEC seconds (default 10)         -r N   open-loop rate, requests/s (get)
 *   -e BODY   expected body: others count as mismatches (get)
 *   -H 'K: V' extra request header (repeatable)        -t MS  per-request timeout (default 5000)
 *   -w        print "ready" and wait for a byte on stdin before starting (simultaneous starts)
 *   -o FILE   write every latency (uint32 µs, little-endian) to FILE, to merge several runs
 * In crawl mode -e checks only the bodies of paths ending in "instance-id" (isolation).
 *
 * Output: {"mode":..., "requests":..., "ok":..., "errors":..., "non200":..., "mismatches":...,
 *          "start_us":..., "end_us":..., "elapsed_s":..., "rps":..., "p50_us":..., "p90_us":...,
 *          "p99_us":..., "max_us":..., "first_error":"..."}  (start_us/end_us: CLOCK_REALTIME)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX (256 * 1024)
#define MAX_HEADERS 16
#define MAX_CONC 4096
#define MAX_PATHS 100000

enum state { IDLE, CONNECTING, WRITING, READING };

struct conn {
  int fd;
  enum state st;
  char *req;
  size_t req_len, req_off;
  char *resp;
  size_t resp_len;
  uint64_t t0;       /* when the request was due (us, monotonic) */
  uint64_t deadline; /* us, monotonic */
  long path_idx;     /* crawl: which path */
};

static struct sockaddr_in server;
static const char *expect_body;
static const char *extra_headers[MAX_HEADERS];
static int n_headers;
static long timeout_ms = 5000;

static uint64_t n_req, n_ok, n_err, n_non200, n_mismatch;
static char first_error[160];

static uint32_t *lat;
static size_t lat_n, lat_cap;

/* crawl: the queue of paths */
static char **paths;
static long n_paths, next_path;

static uint64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t real_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what) {
  fprintf(stderr, "lgload: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void note_error(const char *fmt, const char *detail) {
  n_err++;
  if (first_error[0] == '\0') snprintf(first_error, sizeof first_error, fmt, detail);
}

static void add_latency(uint64_t us) {
  if (lat_n == lat_cap) {
    lat_cap = lat_cap ? lat_cap * 2 : 65536;
    lat = realloc(lat, lat_cap * sizeof *lat);
    if (!lat) die("realloc");
  }
  lat[lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static uint32_t pct(double p) {
  if (lat_n == 0) return 0;
  size_t i = (size_t)(p * (double)(lat_n - 1) + 0.5);
  return lat[i];
}

static char *build_request(const char *path) {
  size_t cap = strlen(path) + 256;
  for (int i = 0; i < n_headers; i++) cap += strlen(extra_headers[i]) + 2;
  char *r = malloc(cap);
  if (!r) die("malloc");
  int len = snprintf(r, cap, "GET %s HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: lgload\r\nAccept: */*\r\nConnection: close\r\n", path);
  for (int i = 0; i < n_headers; i++) len += snprintf(r + len, cap - (size_t)len, "%s\r\n", extra_headers[i]);
  len += snprintf(r + len, cap - (size_t)len, "\r\n");
  return r;
}

static void add_path(const char *p) {
  if (n_paths >= MAX_PATHS) return;
  if (!paths) {
    paths = calloc(MAX_PATHS, sizeof *paths);
    if (!paths) die("calloc");
  }
  paths[n_paths] = strdup(p);
  if (!paths[n_paths]) die("strdup");
  n_paths++;
}

static void close_conn(int ep, struct conn *c) {
  if (c->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->st = IDLE;
  free(c->req);
  c->req = NULL;
  c->resp_len = 0;
}

/* Starts a request on an idle slot; returns 0, or -1 when the connect failed at once. */
static int start_conn(int ep, struct conn *c, const char *path, uint64_t due) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->req = build_request(path);
  c->req_len = strlen(c->req);
  c->req_off = 0;
  c->resp_len = 0;
  c->t0 = due;
  c->deadline = mono_us() + (uint64_t)timeout_ms * 1000u;
  n_req++;
  int r = connect(c->fd, (struct sockaddr *)&server, sizeof server);
  if (r < 0 && errno != EINPROGRESS) {
    note_error("connect: %s", strerror(errno));
    close_conn(ep, c);
    return -1;
  }
  c->st = CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  return 0;
}

/* The response in c->resp is complete? 1 yes, 0 not yet, -1 malformed; sets body and blen when complete. */
static int response_complete(struct conn *c, int eof, int *status, const char **body, size_t *blen) {
  char *buf = c->resp;
  buf[c->resp_len] = '\0';
  char *end = strstr(buf, "\r\n\r\n");
  if (!end) return eof ? -1 : 0;
  if (strncmp(buf, "HTTP/1.", 7) != 0 || c->resp_len < 12) return -1;
  *status = atoi(buf + 9);
  size_t head = (size_t)(end - buf) + 4;
  long clen = -1;
  for (char *line = strstr(buf, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "content-length:", 15) == 0) clen = strtol(line + 2 + 15, NULL, 10);
  }
  if (clen >= 0) {
    if (c->resp_len - head < (size_t)clen) return eof ? -1 : 0;
    *body = buf + head;
    *blen = (size_t)clen;
    return 1;
  }
  if (!eof) return 0;
  *body = buf + head;
  *blen = c->resp_len - head;
  return 1;
}

static int is_id_path(const char *p) {
  size_t n = strlen(p), k = strlen("instance-id");
  return n >= k && strcmp(p + n - k, "instance-id") == 0;
}

static void on_response(struct conn *c, int status, const char *body, size_t blen, int crawl) {
  add_latency(mono_us() - c->t0);
  if (status != 200) {
    n_non200++;
    char s[16];
    snprintf(s, sizeof s, "%d", status);
    if (first_error[0] == '\0') snprintf(first_error, sizeof first_error, "HTTP %s", s);
    return;
  }
  if (expect_body && (!crawl || is_id_path(paths[c->path_idx])) && (strlen(expect_body) != blen || memcmp(expect_body, body, blen) != 0)) {
    n_mismatch++;
    if (first_error[0] == '\0') snprintf(first_error, sizeof first_error, "unexpected body (%zu bytes)", blen);
    return;
  }
  n_ok++;
  if (!crawl) return;
  const char *base = paths[c->path_idx];
  size_t bl = strlen(base);
  if (bl == 0 || base[bl - 1] != '/') return;
  /* a listing: one entry a line */
  const char *p = body, *stop = body + blen;
  while (p < stop) {
    const char *nl = memchr(p, '\n', (size_t)(stop - p));
    const char *le = nl ? nl : stop;
    size_t n = (size_t)(le - p);
    if (n > 0 && p[n - 1] == '\r') n--;
    if (n > 0 && n < 512) {
      char name[520];
      memcpy(name, p, n);
      name[n] = '\0';
      char *eq = strchr(name, '=');
      if (eq) strcpy(eq, "/");
      char full[2048];
      snprintf(full, sizeof full, "%s%s", base, name);
      add_path(full);
    }
    p = le + 1;
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: lgload get|crawl [options] PATH...\n");
    return 2;
  }
  int crawl = strcmp(argv[1], "crawl") == 0;
  if (!crawl && strcmp(argv[1], "get") != 0) {
    fprintf(stderr, "lgload: unknown mode %s\n", argv[1]);
    return 2;
  }
  const char *addr = "169.254.169.254";
  int port = 80, conc = crawl ? 1 : 16, wait_start = 0;
  const char *lat_file = NULL;
  long max_req = 1000000;
  double dur = 10, rate = 0;
  int opt;
  optind = 2;
  while ((opt = getopt(argc, argv, "a:p:c:n:d:r:e:H:t:wo:")) != -1) {
    switch (opt) {
      case 'a': addr = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'c': conc = atoi(optarg); break;
      case 'n': max_req = atol(optarg); break;
      case 'd': dur = atof(optarg); break;
      case 'r': rate = atof(optarg); break;
      case 'e': expect_body = optarg; break;
      case 'H':
        if (n_headers < MAX_HEADERS) extra_headers[n_headers++] = optarg;
        break;
      case 't': timeout_ms = atol(optarg); break;
      case 'w': wait_start = 1; break;
      case 'o': lat_file = optarg; break;
      default: return 2;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "lgload: no path\n");
    return 2;
  }
  if (conc < 1) conc = 1;
  if (conc > MAX_CONC) conc = MAX_CONC;
  const char *get_path = argv[optind];
  if (crawl)
    for (int i = optind; i < argc; i++) add_path(argv[i]);

  memset(&server, 0, sizeof server);
  server.sin_family = AF_INET;
  server.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, addr, &server.sin_addr) != 1) {
    fprintf(stderr, "lgload: bad address %s\n", addr);
    return 2;
  }

  struct conn *conns = calloc((size_t)conc, sizeof *conns);
  if (!conns) die("calloc");
  for (int i = 0; i < conc; i++) {
    conns[i].fd = -1;
    conns[i].resp = malloc(RESP_MAX + 1);
    if (!conns[i].resp) die("malloc");
  }
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");

  if (wait_start) {
    printf("ready\n");
    fflush(stdout);
    char b;
    if (read(0, &b, 1) != 1) return 3; /* the orchestrator went away: do nothing */
  }

  uint64_t start_real = real_us();
  uint64_t start = mono_us();
  uint64_t stop_at = start + (uint64_t)(dur * 1e6);
  uint64_t scheduled = 0; /* open loop: requests scheduled so far */
  int active = 0;
  struct epoll_event evs[256];

  for (;;) {
    uint64_t now = mono_us();
    int time_left = now < stop_at;
    /* start what may start */
    for (int i = 0; i < conc && time_left; i++) {
      struct conn *c = &conns[i];
      if (c->st != IDLE) continue;
      if ((long)n_req >= max_req) break;
      if (crawl) {
        if (next_path >= n_paths) break;
        c->path_idx = next_path++;
        if (start_conn(ep, c, paths[c->path_idx], now) == 0) active++;
      } else if (rate > 0) {
        uint64_t due = start + (uint64_t)((double)scheduled * 1e6 / rate);
        if (due > now) break;
        scheduled++;
        if (start_conn(ep, c, get_path, due) == 0) active++;
      } else {
        if (start_conn(ep, c, get_path, now) == 0) active++;
      }
    }
    if (active == 0) {
      int more = time_left && (long)n_req < max_req && (crawl ? next_path < n_paths : 1);
      if (!more) break;
    }
    int wait_ms = 50;
    if (rate > 0 && time_left) {
      uint64_t due = start + (uint64_t)((double)scheduled * 1e6 / rate);
      wait_ms = due > now ? (int)((due - now) / 1000) : 0;
      if (wait_ms > 50) wait_ms = 50;
    }
    int n = epoll_wait(ep, evs, 256, wait_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int k = 0; k < n; k++) {
      struct conn *c = evs[k].data.ptr;
      if (c->st == IDLE) continue;
      if (c->st == CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
          note_error("connect: %s", strerror(err));
          close_conn(ep, c);
          active--;
          continue;
        }
        c->st = WRITING;
      }
      if (c->st == WRITING) {
        ssize_t w = send(c->fd, c->req + c->req_off, c->req_len - c->req_off, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) {
          note_error("send: %s", strerror(errno));
          close_conn(ep, c);
          active--;
          continue;
        }
        if (w > 0) c->req_off += (size_t)w;
        if (c->req_off == c->req_len) {
          c->st = READING;
          struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        continue;
      }
      /* READING */
      int eof = 0, failed = 0;
      for (;;) {
        if (c->resp_len >= RESP_MAX) {
          failed = 1;
          break;
        }
        ssize_t r = recv(c->fd, c->resp + c->resp_len, RESP_MAX - c->resp_len, 0);
        if (r > 0) {
          c->resp_len += (size_t)r;
          continue;
        }
        if (r == 0) eof = 1;
        else if (errno != EAGAIN) failed = 1;
        break;
      }
      int status = 0;
      const char *body = NULL;
      size_t blen = 0;
      int done = failed ? -1 : response_complete(c, eof, &status, &body, &blen);
      if (done == 0) continue;
      if (done < 0) note_error("%s", failed ? "recv failed or response too large" : "connection closed before a full response");
      else on_response(c, status, body, blen, crawl);
      close_conn(ep, c);
      active--;
    }
    /* timeouts */
    now = mono_us();
    for (int i = 0; i < conc; i++) {
      struct conn *c = &conns[i];
      if (c->st != IDLE && now > c->deadline) {
        note_error("%s", "request timed out");
        close_conn(ep, c);
        active--;
      }
    }
  }
  /* whatever is still open when time ran out is abandoned, not counted */
  for (int i = 0; i < conc; i++)
    if (conns[i].st != IDLE) {
      n_req--;
      close_conn(ep, &conns[i]);
    }
  uint64_t end = mono_us();
  uint64_t end_real = start_real + (end - start);
  double el = (double)(end - start) / 1e6;
  qsort(lat, lat_n, sizeof *lat, cmp_u32);
  if (lat_file) {
    FILE *f = fopen(lat_file, "wb");
    if (!f || fwrite(lat, sizeof *lat, lat_n, f) != lat_n || fclose(f) != 0) die(lat_file);
  }
  for (char *q = first_error; *q; q++)
    if (*q == '"' || *q == '\\') *q = '\'';
  printf(
      "{\"mode\":\"%s\",\"requests\":%llu,\"ok\":%llu,\"errors\":%llu,\"non200\":%llu,\"mismatches\":%llu,"
      "\"start_us\":%llu,\"end_us\":%llu,\"elapsed_s\":%.6f,\"rps\":%.1f,"
      "\"p50_us\":%u,\"p90_us\":%u,\"p99_us\":%u,\"max_us\":%u,\"first_error\":\"%s\"}\n",
      crawl ? "crawl" : "get", (unsigned long long)n_req, (unsigned long long)n_ok, (unsigned long long)n_err,
      (unsigned long long)n_non200, (unsigned long long)n_mismatch, (unsigned long long)start_real,
      (unsigned long long)end_real, el, el > 0 ? (double)n_req / el : 0.0, pct(0.5), pct(0.9), pct(0.99),
      lat_n ? lat[lat_n - 1] : 0, first_error);
  return 0;
}
