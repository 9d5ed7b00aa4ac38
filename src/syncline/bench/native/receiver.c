/* Bench subscribers in C: many WebSocket connections on one epoll loop, for `syncline bench
 * fanout --receivers native`.
 *
 * Why it exists: with 1,000 Python receivers the receivers, not the server, saturate the
 * machine, so two server paths that differ by a few microseconds a delivery (JSON vs
 * Protobuf) cannot be told apart. Here a delivery costs the receiver about a microsecond, and
 * the cost is the same for both formats: the row's fields are read off the wire by the same
 * substring scan (a Protobuf publication's `data` is the row's JSON bytes).
 *
 * Driven by syncline.bench.native over stdin/stdout, one line per message:
 *   in:  connect | report RUN EXPECTED | close
 *   out: started | progress SUBSCRIBED DISCONNECTED ERRORS [RUN=COUNT ...]
 *        error TEXT (before `connected`, the first few failures)
 *        connected REQUESTED SUBSCRIBED FAILED SECONDS
 *        report EXPECTED RECEIVED LOST DUPLICATED UNEXPECTED REORDERED SUBSCRIBERS WITH_LOSS
 *               FIRST_US LAST_US CPU_S WIRE_BYTES [VALUE:COUNT,...]   (latency histogram, µs)
 * Arguments: HOST PORT PATH SUBPROTOCOL(- for none) OPCODE(1 text, 2 binary) HANDSHAKE_HEX
 *            COUNT CONCURRENCY DROP_EVERY DUP_EVERY
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RUNS 8          /* runs a subscriber tracks at once (a step and late stragglers) */
#define HIST_SIZE 40960     /* log-linear buckets, 1/1024 precision, up to 2^40 µs */
#define PROGRESS_US 200000
#define HANDSHAKE_TIMEOUT_US 60000000LL
#define MAX_ERRORS_KEPT 5
#define STDIN_TAG ((void *)1)

enum { CONNECTING, UPGRADING, OPEN, READY, DEAD };

typedef struct {
  int run; /* -1: free */
  uint8_t *seen;
  size_t cap;
  long received, duplicated, unexpected, reordered, highest;
} Track;

typedef struct {
  int fd, state, was_ready;
  long long started_us;
  uint8_t *buf;
  size_t len, cap;
  Track tracks[MAX_RUNS];
} Conn;

typedef struct {
  int run; /* -1: free */
  long long received, first_us, last_us;
  uint64_t *hist;
} RunStats;

static const char *host, *path, *subprotocol;
static int port, opcode, count, concurrency, drop_every, dup_every;
static uint8_t *handshake;
static size_t handshake_len;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static int ep;
static Conn *conns;
static int next_to_open, in_flight, subscribed, failed, disconnected, error_count;
static int connecting_all, closing;
static long long connect_started_us, publications;
static char errors_kept[MAX_ERRORS_KEPT][256];
static int errors_kept_n;
static RunStats runs[MAX_RUNS];
static long long wire_bytes;
static double cpu_mark;

static long long now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static void out(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}

static void note_error(const char *fmt, ...) {
  char text[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  for (char *c = text; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  error_count++;
  if (errors_kept_n < MAX_ERRORS_KEPT) strcpy(errors_kept[errors_kept_n++], text);
}

/* --- latency histogram: exact below 2048 µs, then 1024 buckets per power of two ------------ */

static int hist_index(long long v) {
  if (v < 0) v = 0;
  if (v < 2048) return (int)v;
  int shift = 63 - __builtin_clzll((unsigned long long)v) - 10;
  int index = 2048 + (shift - 1) * 1024 + (int)((v >> shift) - 1024);
  return index < HIST_SIZE ? index : HIST_SIZE - 1;
}

static long long hist_value(int index) {
  if (index < 2048) return index;
  int shift = (index - 2048) / 1024 + 1;
  return (long long)(1024 + (index - 2048) % 1024) << shift;
}

static RunStats *run_stats(int run, int create) {
  RunStats *free_slot = NULL;
  for (int i = 0; i < MAX_RUNS; i++) {
    if (runs[i].run == run) return &runs[i];
    if (runs[i].run == -1 && !free_slot) free_slot = &runs[i];
  }
  if (!create || !free_slot) return NULL;
  free_slot->run = run;
  free_slot->received = free_slot->first_us = free_slot->last_us = 0;
  free_slot->hist = calloc(HIST_SIZE, sizeof(uint64_t));
  return free_slot;
}

/* --- one subscriber's accounting of a run (as syncline.bench.accounting.SeqTracker) ---------- */

static Track *track(Conn *c, int run, int create) {
  Track *free_slot = NULL;
  for (int i = 0; i < MAX_RUNS; i++) {
    if (c->tracks[i].run == run) return &c->tracks[i];
    if (c->tracks[i].run == -1 && !free_slot) free_slot = &c->tracks[i];
  }
  if (!create || !free_slot) return NULL;
  memset(free_slot, 0, sizeof *free_slot);
  free_slot->run = run;
  free_slot->highest = -1;
  return free_slot;
}

/* False for a duplicate or a number that is no sequence number. */
static int track_record(Track *t, long seq) {
  t->received++;
  if (seq < 0) {
    t->unexpected++;
    return 0;
  }
  if ((size_t)seq >= t->cap) {
    size_t cap = t->cap ? t->cap : 64;
    while (cap <= (size_t)seq) cap *= 2;
    t->seen = realloc(t->seen, cap);
    memset(t->seen + t->cap, 0, cap - t->cap);
    t->cap = cap;
  }
  if (t->seen[seq]) {
    t->duplicated++;
    return 0;
  }
  t->seen[seq] = 1;
  if (seq < t->highest)
    t->reordered++;
  else
    t->highest = seq;
  return 1;
}

/* --- sending -------------------------------------------------------------------------------- */

static int send_all(int fd, const uint8_t *data, size_t len) {
  while (len) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1; /* EAGAIN included: our few small frames never fill an empty socket buffer */
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_frame(Conn *c, int op, const uint8_t *payload, size_t len) {
  uint8_t frame[14 + 4096];
  if (len > 4096) return -1;
  size_t h = 0;
  frame[h++] = (uint8_t)(0x80 | op);
  if (len < 126) {
    frame[h++] = (uint8_t)(0x80 | len);
  } else {
    frame[h++] = 0x80 | 126;
    frame[h++] = (uint8_t)(len >> 8);
    frame[h++] = (uint8_t)len;
  }
  uint32_t key = (uint32_t)random();
  uint8_t mask[4] = {(uint8_t)key, (uint8_t)(key >> 8), (uint8_t)(key >> 16), (uint8_t)(key >> 24)};
  memcpy(frame + h, mask, 4);
  h += 4;
  for (size_t i = 0; i < len; i++) frame[h + i] = payload[i] ^ mask[i & 3];
  return send_all(c->fd, frame, h + len);
}

/* --- connection life ------------------------------------------------------------------------ */

static void open_next(void);

static void conn_close(Conn *c) {
  if (c->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
}

static void conn_fail(Conn *c, const char *fmt, ...) {
  char text[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  int was = c->state;
  c->state = DEAD;
  conn_close(c);
  if (was == READY) {
    disconnected++;
    if (!closing) note_error("%s", text);
  } else if (was != DEAD) {
    failed++;
    in_flight--;
    note_error("%s", text);
    open_next();
  }
}

static void conn_ready(Conn *c) {
  c->state = READY;
  c->was_ready = 1;
  subscribed++;
  in_flight--;
  open_next();
}

static void open_next(void) {
  while (connecting_all && in_flight < concurrency && next_to_open < count) {
    Conn *c = &conns[next_to_open++];
    in_flight++;
    c->started_us = now_us();
    c->state = CONNECTING;
    c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
      conn_fail(c, "socket: %s", strerror(errno));
      continue;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
      conn_fail(c, "connect: %s", strerror(errno));
      continue;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  }
  if (connecting_all && subscribed + failed == count) {
    connecting_all = 0;
    for (int i = 0; i < errors_kept_n; i++) out("error %s\n", errors_kept[i]);
    out("connected %d %d %d %.6f\n", count, subscribed, failed,
        (now_us() - connect_started_us) / 1e6);
    cpu_mark = cpu_seconds();
    wire_bytes = 0;
  }
}

static void on_writable(Conn *c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    conn_fail(c, "connect: %s", strerror(err));
    return;
  }
  char request[1024];
  int n = snprintf(request, sizeof request,
                   "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: c3luY2xpbmUtYmVuY2gtMQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                   path, host, port, subprotocol ? "Sec-WebSocket-Protocol: " : "",
                   subprotocol ? subprotocol : "", subprotocol ? "\r\n" : "");
  if (send_all(c->fd, (uint8_t *)request, (size_t)n) < 0) {
    conn_fail(c, "send: %s", strerror(errno));
    return;
  }
  c->state = UPGRADING;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* --- what arrives ---------------------------------------------------------------------------- */

static long field_int(const uint8_t *data, size_t len, const char *key, int *found) {
  size_t key_len = strlen(key);
  const uint8_t *at = memmem(data, len, key, key_len);
  *found = at != NULL;
  if (!at) return -1;
  const uint8_t *p = at + key_len, *end = data + len;
  int negative = 0;
  if (p < end && *p == '-') {
    negative = 1;
    p++;
  }
  long value = 0;
  while (p < end && *p >= '0' && *p <= '9') value = value * 10 + (*p++ - '0');
  return negative ? -value : value;
}

static void on_publication(Conn *c, const uint8_t *data, size_t len, long long now) {
  int has_run, has_seq, has_sent;
  long run = field_int(data, len, "\"run\":", &has_run);
  long seq = field_int(data, len, "\"seq\":", &has_seq);
  long long sent = field_int(data, len, "\"sent_at_us\":", &has_sent);
  if (!has_run || !has_seq || !has_sent) {
    note_error("a publication without run, seq and sent_at_us");
    return;
  }
  publications++;
  if (drop_every && publications % drop_every == 0) return;
  Track *t = track(c, (int)run, 1);
  if (!t) {
    note_error("more than %d runs at once", MAX_RUNS);
    return;
  }
  if (dup_every && publications % dup_every == 0) track_record(t, seq);
  if (!track_record(t, seq)) return;
  RunStats *r = run_stats((int)run, 1);
  if (!r) return;
  if (!r->received) r->first_us = now;
  r->hist[hist_index(now - sent)]++;
  r->received++;
  r->last_us = now;
}

static const char SENT_KEY[] = "\"sent_at_us\":";

/* One JSON reply (a line of a text frame). */
static void on_json(Conn *c, const uint8_t *line, size_t len, long long now) {
  if (len == 2 && line[0] == '{' && line[1] == '}') { /* the server's ping */
    if (send_frame(c, 1, (const uint8_t *)"{}", 2) < 0) conn_fail(c, "send pong: %s", strerror(errno));
    return;
  }
  if (memmem(line, len, SENT_KEY, sizeof SENT_KEY - 1)) {
    on_publication(c, line, len, now);
    return;
  }
  if (memmem(line, len, "\"error\":", 8)) {
    conn_fail(c, "reply: %.*s", (int)(len < 150 ? len : 150), line);
    return;
  }
  if (memmem(line, len, "\"unsubscribe\":", 14) || memmem(line, len, "\"disconnect\":", 13)) {
    conn_fail(c, "server push: %.*s", (int)(len < 150 ? len : 150), line);
    return;
  }
  if (c->state == OPEN && (memmem(line, len, "\"id\":2,", 7) || memmem(line, len, "\"id\":2}", 7)))
    conn_ready(c);
}

static int read_varint(const uint8_t *p, const uint8_t *end, uint64_t *value, const uint8_t **next) {
  uint64_t v = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    uint8_t b = *p++;
    v |= (uint64_t)(b & 0x7F) << shift;
    if (b < 0x80) {
      *value = v;
      *next = p;
      return 0;
    }
  }
  return -1;
}

/* An Error's code (field 1) and message (field 2), as far as they parse. */
static void pb_error(const uint8_t *p, const uint8_t *end, uint64_t *code, const uint8_t **text,
                     size_t *len) {
  uint64_t tag, value;
  while (p < end && read_varint(p, end, &tag, &p) == 0) {
    if ((tag & 7) == 0) {
      if (read_varint(p, end, &value, &p) < 0) return;
      if (tag >> 3 == 1) *code = value;
    } else if ((tag & 7) == 2) {
      if (read_varint(p, end, &value, &p) < 0 || value > (uint64_t)(end - p)) return;
      if (tag >> 3 == 2) {
        *text = p;
        *len = (size_t)value;
      }
      p += value;
    } else {
      return;
    }
  }
}

/* One Protobuf Reply: its id, whether it holds an error or a push. */
static void on_pb(Conn *c, const uint8_t *msg, size_t len, long long now) {
  if (memmem(msg, len, SENT_KEY, sizeof SENT_KEY - 1)) {
    on_publication(c, msg, len, now);
    return;
  }
  const uint8_t *p = msg, *end = msg + len;
  uint64_t id = 0, tag, value, error_code = 0;
  int has_error = 0, has_push = 0;
  const uint8_t *error_text = NULL;
  size_t error_len = 0;
  while (p < end) {
    if (read_varint(p, end, &tag, &p) < 0) goto bad;
    switch (tag & 7) {
      case 0:
        if (read_varint(p, end, &value, &p) < 0) goto bad;
        if (tag >> 3 == 1) id = value;
        break;
      case 1: p += 8; break;
      case 5: p += 4; break;
      case 2:
        if (read_varint(p, end, &value, &p) < 0 || value > (uint64_t)(end - p)) goto bad;
        if (tag >> 3 == 2) {
          has_error = 1;
          pb_error(p, p + value, &error_code, &error_text, &error_len);
        }
        if (tag >> 3 == 4) has_push = 1;
        p += value;
        break;
      default: goto bad;
    }
  }
  if (p != end) goto bad;
  if (has_error) {
    conn_fail(c, "reply %llu: %llu %.*s", (unsigned long long)id,
              (unsigned long long)error_code, (int)(error_len < 150 ? error_len : 150),
              error_text ? (const char *)error_text : "");
  } else if (has_push) {
    conn_fail(c, "server push that is no publication");
  } else if (id == 2 && c->state == OPEN) {
    conn_ready(c);
  }
  return;
bad:
  conn_fail(c, "a Protobuf reply that does not parse");
}

static void on_message(Conn *c, int op, const uint8_t *payload, size_t len, long long now) {
  if (op == 1) {
    const uint8_t *p = payload, *end = payload + len;
    while (p < end && c->state != DEAD) {
      const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
      const uint8_t *stop = nl ? nl : end;
      if (stop > p) on_json(c, p, (size_t)(stop - p), now);
      p = nl ? nl + 1 : end;
    }
  } else if (op == 2) {
    const uint8_t *p = payload, *end = payload + len;
    while (p < end && c->state != DEAD) {
      uint64_t size;
      if (read_varint(p, end, &size, &p) < 0 || size > (uint64_t)(end - p)) {
        conn_fail(c, "a Protobuf frame that does not parse");
        return;
      }
      if (size == 0) { /* the server's ping: an empty Reply; the pong, an empty Command */
        static const uint8_t pong = 0;
        if (send_frame(c, 2, &pong, 1) < 0) conn_fail(c, "send pong: %s", strerror(errno));
        continue;
      }
      on_pb(c, p, (size_t)size, now);
      p += size;
    }
  }
}

/* Whole frames at the start of the buffer; returns the bytes used. */
static size_t on_frames(Conn *c) {
  size_t used = 0;
  while (c->state == OPEN || c->state == READY) {
    const uint8_t *b = c->buf + used;
    size_t avail = c->len - used;
    if (avail < 2) break;
    int fin = b[0] & 0x80, op = b[0] & 0x0F;
    if (b[1] & 0x80) {
      conn_fail(c, "a masked frame from the server");
      break;
    }
    uint64_t len = b[1] & 0x7F;
    size_t h = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = ((uint64_t)b[2] << 8) | b[3];
      h = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; i++) len = (len << 8) | b[2 + i];
      h = 10;
    }
    if (avail < h + len) break;
    if (!fin) {
      conn_fail(c, "a fragmented frame (the server sends whole ones)");
      break;
    }
    wire_bytes += (long long)(h + len);
    const uint8_t *payload = b + h;
    used += h + (size_t)len;
    if (op == 8) {
      int code = len >= 2 ? (payload[0] << 8) | payload[1] : 1005;
      conn_fail(c, "closed by the server: %d", code);
      break;
    }
    if (op == 9) {
      if (send_frame(c, 10, payload, (size_t)len) < 0) conn_fail(c, "send pong: %s", strerror(errno));
      continue;
    }
    if (op == 1 || op == 2) on_message(c, op, payload, (size_t)len, now_us());
  }
  return used;
}

static void on_upgrade_reply(Conn *c) {
  const uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (!end) {
    if (c->len > 16384) conn_fail(c, "an upgrade reply without end");
    return;
  }
  if (c->len < 12 || memcmp(c->buf, "HTTP/1.1 101", 12) != 0) {
    int n = 0;
    while (n < (int)c->len && n < 80 && c->buf[n] != '\r') n++;
    conn_fail(c, "upgrade refused: %.*s", n, c->buf);
    return;
  }
  size_t header = (size_t)(end + 4 - c->buf);
  memmove(c->buf, c->buf + header, c->len - header);
  c->len -= header;
  c->state = OPEN;
  if (send_frame(c, opcode, handshake, handshake_len) < 0)
    conn_fail(c, "send connect: %s", strerror(errno));
}

static void on_readable(Conn *c) {
  for (;;) {
    if (c->cap - c->len < 16384) {
      c->cap = c->cap ? c->cap * 2 : 65536;
      c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) conn_fail(c, "recv: %s", strerror(errno));
      return;
    }
    if (n == 0) {
      conn_fail(c, "disconnected");
      return;
    }
    c->len += (size_t)n;
    if (c->state == UPGRADING) on_upgrade_reply(c);
    if (c->state == OPEN || c->state == READY) {
      size_t used = on_frames(c);
      if (c->state == DEAD) return;
      memmove(c->buf, c->buf + used, c->len - used);
      c->len -= used;
    }
    if ((size_t)n < 16384) return; /* drained, most likely: epoll says if not */
  }
}

/* --- the bench's commands -------------------------------------------------------------------- */

static void report(int run, long expected) {
  long long received = 0, lost = 0, duplicated = 0, unexpected = 0, reordered = 0;
  long long subscribers = 0, with_loss = 0;
  for (int i = 0; i < count; i++) {
    Conn *c = &conns[i];
    if (!c->was_ready) continue; /* never subscribed: not a subscriber to account for */
    Track *t = track(c, run, 0);
    long got = 0, beyond = 0;
    if (t) {
      for (size_t s = 0; s < t->cap; s++) {
        if (!t->seen[s]) continue;
        if ((long)s < expected)
          got++;
        else
          beyond++;
      }
      received += t->received;
      duplicated += t->duplicated;
      unexpected += t->unexpected + beyond;
      reordered += t->reordered;
    }
    long missing = expected - got;
    lost += missing;
    subscribers++;
    if (missing) with_loss++;
    if (t) {
      free(t->seen);
      t->seen = NULL;
      t->cap = 0;
      t->run = -1;
    }
  }
  RunStats *r = run_stats(run, 0);
  double cpu = cpu_seconds();
  /* Sums over the subscribers, as syncline.bench.accounting.total adds their tallies. */
  printf("report %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %.6f %lld ",
         (long long)expected * subscribers, received,
         lost, duplicated, unexpected, reordered, subscribers, with_loss, r ? r->first_us : 0,
         r ? r->last_us : 0, cpu - cpu_mark, wire_bytes);
  cpu_mark = cpu;
  wire_bytes = 0;
  if (r) {
    int first = 1;
    for (int i = 0; i < HIST_SIZE; i++) {
      if (!r->hist[i]) continue;
      printf(first ? "%lld:%llu" : ",%lld:%llu", hist_value(i), (unsigned long long)r->hist[i]);
      first = 0;
    }
    free(r->hist);
    r->hist = NULL;
    r->run = -1;
  }
  out("\n");
}

static void progress(void) {
  printf("progress %d %d %d", subscribed, disconnected, error_count);
  for (int i = 0; i < MAX_RUNS; i++)
    if (runs[i].run != -1) printf(" %d=%lld", runs[i].run, runs[i].received);
  out("\n");
}

static char command[256];
static size_t command_len;

/* Returns 0 on `close` or end of input. */
static int on_stdin(void) {
  char chunk[256];
  ssize_t n = read(0, chunk, sizeof chunk);
  if (n <= 0) return n < 0 && errno == EAGAIN;
  for (ssize_t i = 0; i < n; i++) {
    if (chunk[i] != '\n') {
      if (command_len < sizeof command - 1) command[command_len++] = chunk[i];
      continue;
    }
    command[command_len] = 0;
    command_len = 0;
    int run;
    long expected;
    if (strcmp(command, "connect") == 0) {
      connecting_all = 1;
      connect_started_us = now_us();
      open_next();
    } else if (sscanf(command, "report %d %ld", &run, &expected) == 2) {
      report(run, expected);
    } else if (strcmp(command, "close") == 0) {
      return 0;
    }
  }
  return 1;
}

static void check_timeouts(long long now) {
  for (int i = 0; i < next_to_open; i++) {
    Conn *c = &conns[i];
    if (c->state != READY && c->state != DEAD && now - c->started_us > HANDSHAKE_TIMEOUT_US)
      conn_fail(c, "TimeoutError: no subscribe reply within 60 s");
  }
}

static uint8_t *from_hex(const char *hex, size_t *len) {
  size_t n = strlen(hex) / 2;
  uint8_t *bytes = malloc(n ? n : 1);
  for (size_t i = 0; i < n; i++) {
    unsigned value;
    sscanf(hex + 2 * i, "%2x", &value);
    bytes[i] = (uint8_t)value;
  }
  *len = n;
  return bytes;
}

int main(int argc, char **argv) {
  if (argc != 11) {
    fprintf(stderr,
            "usage: receiver HOST PORT PATH SUBPROTOCOL OPCODE HANDSHAKE_HEX COUNT CONCURRENCY"
            " DROP_EVERY DUP_EVERY\n");
    return 2;
  }
  host = argv[1];
  port = atoi(argv[2]);
  path = argv[3];
  subprotocol = strcmp(argv[4], "-") == 0 ? NULL : argv[4];
  opcode = atoi(argv[5]);
  handshake = from_hex(argv[6], &handshake_len);
  count = atoi(argv[7]);
  concurrency = atoi(argv[8]);
  drop_every = atoi(argv[9]);
  dup_every = atoi(argv[10]);
  if (concurrency < 1) concurrency = 1;
  srandom((unsigned)now_us());

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
  char port_text[16];
  snprintf(port_text, sizeof port_text, "%d", port);
  if (getaddrinfo(host, port_text, &hints, &found) != 0) {
    fprintf(stderr, "cannot resolve %s\n", host);
    return 1;
  }
  memcpy(&addr, found->ai_addr, found->ai_addrlen);
  addr_len = found->ai_addrlen;
  freeaddrinfo(found);

  conns = calloc((size_t)count, sizeof(Conn));
  for (int i = 0; i < count; i++) {
    conns[i].fd = -1;
    conns[i].state = DEAD;
    for (int r = 0; r < MAX_RUNS; r++) conns[i].tracks[r].run = -1;
  }
  for (int i = 0; i < MAX_RUNS; i++) runs[i].run = -1;

  ep = epoll_create1(0);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = STDIN_TAG};
  epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
  out("started\n");
  cpu_mark = cpu_seconds();

  struct epoll_event events[256];
  long long next_progress = now_us() + PROGRESS_US;
  for (;;) {
    int wait_ms = (int)((next_progress - now_us()) / 1000);
    int n = epoll_wait(ep, events, 256, wait_ms > 0 ? wait_ms : 0);
    for (int i = 0; i < n; i++) {
      if (events[i].data.ptr == STDIN_TAG) {
        if (!on_stdin()) goto done;
        continue;
      }
      Conn *c = events[i].data.ptr;
      if (c->state == DEAD) continue;
      if (c->state == CONNECTING) {
        if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(c);
        continue;
      }
      if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
    }
    long long now = now_us();
    if (now >= next_progress) {
      progress();
      if (connecting_all) check_timeouts(now);
      next_progress = now + PROGRESS_US;
    }
  }
done:
  closing = 1;
  for (int i = 0; i < count; i++) conn_close(&conns[i]);
  return 0;
}
