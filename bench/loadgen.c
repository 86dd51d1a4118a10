/*
 * loadgen: the open-loop HTTP/1.1 load generator of bench/openloop.py (built and run by it).
 *
 * Why not k6: on a 2-core machine the generator shares the cores with the server it measures, and
 * k6's JavaScript costs about as much CPU per request as the server (the do-nothing floor answered
 * only 7,454 of 22,000 requests per second offered). This program costs a few microseconds per
 * request, so the server under test gets the cores and the storm is the one asked for.
 *
 * Two modes, one target (IPv4 host and port), GET only, keep-alive connections:
 *
 *   open:   requests start on a fixed schedule whatever the answers: each --step RATE:SECONDS in
 *           turn, request i of a step at start + i / RATE; beside them --probe-rate requests per
 *           second to --probe-path. A request takes an idle connection or opens a new one; when
 *           --max-conns are all waiting it is not sent and is recorded as "unsent" (k6 calls these
 *           dropped iterations). Latency is counted from when the request was DUE, not from when it
 *           went out (or from when it went out, if that was later: one due within EARLY_NS is sent
 *           at once), so a generator that falls behind shows as latency (no coordinated omission).
 *   closed: --conns connections, each sending its next request when the last is answered, for
 *           --warmup then --seconds; requests started during the warm-up are step 0, the rest
 *           step 1, and the requests still waiting when the time is up are not recorded.
 *
 * Every request ends in one record (closed mode: see above), written to --out as little-endian binary, 24 bytes:
 *   int64 due_ns (since the run began), int64 latency_ns, uint16 status, uint8 outcome
 *   (0 answered, 1 timeout, 2 error, 3 unsent), uint8 probe (0/1), uint32 step.
 * A request not answered within --timeout seconds is a timeout (its connection is closed).
 * A request whose reused keep-alive connection turns out closed by the server before any byte of
 * the answer is sent again once on a new connection, as HTTP clients do (an idempotent GET).
 *
 * Prints "loadgen: steps begin" on stderr when the schedule starts.
 * Build: cc -O2 -o loadgen loadgen.c (Linux: epoll, timerfd).
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 32
#define MAX_HEADERS 16
#define BUF 16384

enum { IDLE, CONNECTING, SENDING, READING, DEAD };
enum { ANSWERED, TIMEOUT, FAILED, UNSENT };

typedef struct conn {
    int fd;
    int state;
    int reused;           /* has answered a request before: a retry is allowed on a clean close */
    int probe;            /* the request in flight is a probe */
    uint32_t step;
    int64_t due;          /* ns since start */
    int64_t deadline;     /* ns since start */
    size_t sent;
    int64_t sent_at;      /* ns since start: when the request went out (latency counts from the later of due and this) */
    size_t got;
    size_t answered;      /* bytes of the answer received so far */
    long body_left;       /* -1: headers not complete yet */
    int chunked, close_after, until_close;
    int status;
    struct conn *next_idle;
    struct conn *next_dead; /* closed during this batch of events: freed after it */
    char buf[BUF];
} conn;

typedef struct {
    int64_t due, latency;
    uint16_t status;
    uint8_t outcome, probe;
    uint32_t step;
} record;

static struct sockaddr_in target;
static char *request_main, *request_probe;
static size_t request_main_len, request_probe_len;
static int epfd;
static int64_t t0;
static FILE *out;
static conn **all_conns;
static int n_conns, max_conns;
static conn *idle_main;   /* one idle pool for both kinds: a connection carries either */
static int64_t timeout_ns;
/* A request due within this many ns is sent now: one wake-up serves several at high rates. */
#define EARLY_NS 20000
static long records_written;
static long in_flight;     /* requests started and not yet recorded */
static conn *dead;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void emit(int64_t due, int64_t latency, int status, int outcome, int probe, uint32_t step) {
    record r = {due, latency, (uint16_t)status, (uint8_t)outcome, (uint8_t)probe, step};
    unsigned char b[24];
    memcpy(b, &r.due, 8);
    memcpy(b + 8, &r.latency, 8);
    memcpy(b + 16, &r.status, 2);
    b[18] = r.outcome;
    b[19] = r.probe;
    memcpy(b + 20, &r.step, 4);
    if (fwrite(b, 1, 24, out) != 24) die("write");
    records_written++;
}

static void forget(conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    for (int i = 0; i < n_conns; i++) {
        if (all_conns[i] == c) {
            all_conns[i] = all_conns[--n_conns];
            break;
        }
    }
    /* unlink from the idle list if it is there */
    conn **p = &idle_main;
    while (*p) {
        if (*p == c) {
            *p = c->next_idle;
            break;
        }
        p = &(*p)->next_idle;
    }
    c->state = DEAD; /* a later event of the same batch may still name it */
    c->next_dead = dead;
    dead = c;
}

static void bury(void) {
    while (dead) {
        conn *c = dead;
        dead = c->next_dead;
        free(c);
    }
}

static void watch(conn *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static conn *open_conn(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    c->state = CONNECTING;
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        close(fd);
        free(c);
        return NULL;
    }
    all_conns[n_conns++] = c;
    watch(c, EPOLLOUT | EPOLLIN | EPOLLRDHUP, EPOLL_CTL_ADD);
    return c;
}

static void try_send(conn *c);

/* Give a due request a connection: an idle one, or a new one; none free: unsent. */
static void start_request(int64_t due, int probe, uint32_t step) {
    conn *c = idle_main;
    if (c) {
        idle_main = c->next_idle;
        c->next_idle = NULL;
        c->state = SENDING;
    } else if (n_conns >= max_conns) {
        emit(due, 0, 0, UNSENT, probe, step); /* every connection allowed is waiting */
        return;
    } else if (!(c = open_conn())) {
        emit(due, 0, 0, FAILED, probe, step); /* no socket, or the connection refused at once */
        return;
    }
    in_flight++;
    c->probe = probe;
    c->step = step;
    c->due = due;
    c->deadline = due + timeout_ns;
    c->sent = c->got = c->answered = 0;
    c->sent_at = 0;
    c->body_left = -1;
    c->status = 0;
    c->chunked = c->close_after = c->until_close = 0;
    if (c->state == SENDING) try_send(c); /* an idle connection is watched for reading already */
}

static void finish(conn *c, int outcome, int64_t at) {
    in_flight--;
    /* From when it was due, or went out if that was later (a request may go out up to EARLY_NS early). */
    int64_t from = c->sent_at > c->due ? c->sent_at : c->due;
    emit(c->due, at - from, c->status, outcome, c->probe, c->step);
}

static void fail(conn *c, int64_t at) {
    /* A reused connection closed before any byte of the answer: send again on a new one. */
    if (c->reused && c->answered == 0 && c->state != CONNECTING) {
        int64_t due = c->due;
        int probe = c->probe;
        uint32_t step = c->step;
        forget(c);
        conn *fresh = n_conns < max_conns ? open_conn() : NULL;
        if (!fresh) {
            in_flight--;
            emit(due, at - due, 0, FAILED, probe, step);
            return;
        }
        fresh->probe = probe;
        fresh->step = step;
        fresh->due = due;
        fresh->deadline = due + timeout_ns;
        fresh->body_left = -1;
        return;
    }
    finish(c, FAILED, at);
    forget(c);
}

static void try_send(conn *c) {
    const char *req = c->probe ? request_probe : request_main;
    size_t len = c->probe ? request_probe_len : request_main_len;
    if (c->sent == 0) { /* it goes out now: the client's timeout counts from here (from due while connecting) */
        c->sent_at = now_ns() - t0;
        if (c->sent_at > c->due) c->deadline = c->sent_at + timeout_ns;
    }
    while (c->sent < len) {
        ssize_t n = send(c->fd, req + c->sent, len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                watch(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP, EPOLL_CTL_MOD);
                return;
            }
            fail(c, now_ns() - t0);
            return;
        }
        c->sent += (size_t)n;
    }
    c->state = READING;
}

static long header_value(const char *head, size_t len, const char *name) {
    size_t nl = strlen(name);
    for (size_t i = 0; i + nl + 2 < len; i++) {
        if (head[i] == '\n' && strncasecmp(head + i + 1, name, nl) == 0 && head[i + 1 + nl] == ':') {
            return (long)(i + 2 + nl);
        }
    }
    return -1;
}

/* Read what the server sent; returns when the answer is complete or more must be awaited. */
static void on_readable(conn *c) {
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->got, BUF - c->got, 0);
        int64_t at = now_ns() - t0;
        if (n == 0) {
            if (c->state == IDLE) {
                forget(c); /* the server closed an idle keep-alive connection */
                return;
            }
            if (c->until_close && c->body_left >= 0) {
                finish(c, ANSWERED, at);
                forget(c);
                return;
            }
            fail(c, at);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN) return;
            if (c->state == IDLE) {
                forget(c);
                return;
            }
            fail(c, at);
            return;
        }
        if (c->state != READING && c->state != SENDING) {
            forget(c); /* bytes nobody asked for */
            return;
        }
        c->got += (size_t)n;
        c->answered += (size_t)n;
        if (c->body_left < 0) {
            char *end = memmem(c->buf, c->got, "\r\n\r\n", 4);
            if (!end) {
                if (c->got == BUF) {
                    fail(c, at);
                    return;
                }
                continue;
            }
            size_t head = (size_t)(end - c->buf) + 4;
            if (c->got < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) {
                fail(c, at);
                return;
            }
            c->status = atoi(c->buf + 9);
            long v = header_value(c->buf, head, "content-length");
            long te = header_value(c->buf, head, "transfer-encoding");
            long cn = header_value(c->buf, head, "connection");
            if (cn >= 0) {
                const char *p = c->buf + cn;
                while (*p == ' ') p++;
                c->close_after = strncasecmp(p, "close", 5) == 0;
            }
            if (te >= 0) {
                c->chunked = 1;
                c->body_left = 0;
            } else if (v >= 0) {
                c->body_left = atol(c->buf + v);
            } else {
                c->until_close = 1;
                c->body_left = 0;
            }
            size_t extra = c->got - head;
            memmove(c->buf, c->buf + head, extra);
            c->got = extra;
            n = (ssize_t)extra;
        }
        if (c->chunked) {
            /* The last chunk: "0\r\n\r\n" at the end of what came so far. */
            if (c->got >= 5 && memcmp(c->buf + c->got - 5, "0\r\n\r\n", 5) == 0) goto complete;
            if (c->got > BUF - 64) { /* keep the tail only */
                memmove(c->buf, c->buf + c->got - 8, 8);
                c->got = 8;
            }
            continue;
        }
        if (c->until_close) {
            c->got = 0;
            continue;
        }
        c->body_left -= n;
        c->got = 0;
        if (c->body_left <= 0) goto complete;
        continue;
    complete:
        finish(c, ANSWERED, at);
        if (c->close_after) {
            forget(c);
            return;
        }
        if (c->state == SENDING) watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD); /* answered before sent whole */
        c->state = IDLE;
        c->reused = 1;
        c->got = 0;
        c->next_idle = idle_main;
        idle_main = c;
        return;
    }
}

/* Requests past their deadline (all that are waiting, with ``everything``) are timeouts. */
static void expire(int64_t at, int everything) {
    for (int i = 0; i < n_conns;) {
        conn *c = all_conns[i];
        if (c->state != IDLE && (everything || c->deadline <= at)) {
            finish(c, TIMEOUT, at);
            forget(c); /* swaps the last one into i */
            continue;
        }
        i++;
    }
}

static void on_event(conn *c, uint32_t events) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            fail(c, now_ns() - t0);
            return;
        }
        if (events & EPOLLOUT) {
            c->state = SENDING;
            watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
            try_send(c);
        }
        return;
    }
    if (c->state == SENDING && (events & EPOLLOUT)) {
        watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
        try_send(c);
        if (c->state != READING) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
}

static char *build_request(const char *host, int port, const char *path, char **headers, int n_headers, size_t *len) {
    size_t size = 256 + strlen(path) + strlen(host);
    for (int i = 0; i < n_headers; i++) size += strlen(headers[i]) + 2;
    char *r = malloc(size);
    if (!r) die("malloc");
    int k = snprintf(r, size, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n", path, host, port);
    for (int i = 0; i < n_headers; i++) k += snprintf(r + k, size - (size_t)k, "%s\r\n", headers[i]);
    k += snprintf(r + k, size - (size_t)k, "\r\n");
    *len = (size_t)k;
    return r;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --host IP --port N --path P [--header 'Name: value']... --out FILE\n"
            "               [--timeout S] [--max-conns N]\n"
            "               open:   --step RATE:SECONDS... [--probe-path P --probe-rate R]\n"
            "               closed: --conns N --seconds S [--warmup S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = NULL, *probe_path = NULL, *out_path = NULL;
    int port = 0, n_headers = 0, n_steps = 0, closed_conns = 0;
    double probe_rate = 0, timeout = 10, seconds = 0, warmup = 0;
    char *headers[MAX_HEADERS];
    double rates[MAX_STEPS], lengths[MAX_STEPS];
    max_conns = 2000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(a, "--host")) host = v;
        else if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--path")) path = v;
        else if (!strcmp(a, "--header") && n_headers < MAX_HEADERS) headers[n_headers++] = (char *)v;
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--timeout")) timeout = atof(v);
        else if (!strcmp(a, "--max-conns")) max_conns = atoi(v);
        else if (!strcmp(a, "--probe-path")) probe_path = v;
        else if (!strcmp(a, "--probe-rate")) probe_rate = atof(v);
        else if (!strcmp(a, "--conns")) closed_conns = atoi(v);
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--warmup")) warmup = atof(v);
        else if (!strcmp(a, "--step") && n_steps < MAX_STEPS) {
            if (sscanf(v, "%lf:%lf", &rates[n_steps], &lengths[n_steps]) != 2 || rates[n_steps] <= 0) usage();
            n_steps++;
        } else usage();
    }
    if (!path || !out_path || port <= 0 || (n_steps == 0) == (closed_conns == 0)) usage();
    if (closed_conns) max_conns = closed_conns;
    /* Room for every connection allowed: the soft descriptor limit raised to the hard one if need be. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < (rlim_t)max_conns + 64) {
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
        getrlimit(RLIMIT_NOFILE, &nofile);
        if (nofile.rlim_cur < (rlim_t)max_conns + 64) {
            fprintf(stderr, "loadgen: only %ld descriptors: --max-conns %d cannot all open\n", (long)nofile.rlim_cur, max_conns);
            return 2;
        }
    }
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &target.sin_addr) != 1) usage();
    request_main = build_request(host, port, path, headers, n_headers, &request_main_len);
    request_probe = build_request(host, port, probe_path ? probe_path : path, NULL, 0, &request_probe_len);
    timeout_ns = (int64_t)(timeout * 1e9);
    out = fopen(out_path, "wb");
    if (!out) die(out_path);
    setvbuf(out, NULL, _IOFBF, 1 << 20);
    all_conns = calloc((size_t)max_conns + 1, sizeof *all_conns);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd < 0 || tfd < 0 || !all_conns) die("setup");
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);

    int64_t end_ns;
    int64_t step_start[MAX_STEPS + 1];
    if (closed_conns) {
        end_ns = (int64_t)((warmup + seconds) * 1e9);
    } else {
        step_start[0] = 0;
        for (int s = 0; s < n_steps; s++) step_start[s + 1] = step_start[s] + (int64_t)(lengths[s] * 1e9);
        end_ns = step_start[n_steps];
    }
    fprintf(stderr, "loadgen: steps begin\n");
    t0 = now_ns();
    int step = 0;
    int64_t issued = 0;          /* requests of the current step started so far */
    int64_t probes = 0;
    int64_t last_expiry = 0;
    int64_t armed = -1;
    if (closed_conns) {
        for (int i = 0; i < closed_conns; i++) start_request(0, 0, 0);
    }
    struct epoll_event events[256];
    for (;;) {
        int64_t at = now_ns() - t0;
        if (!closed_conns) {
            /* Start every request that is due. */
            while (step < n_steps) {
                int64_t due = step_start[step] + (int64_t)((double)issued * 1e9 / rates[step]);
                if (due >= step_start[step + 1]) {
                    step++;
                    issued = 0;
                    continue;
                }
                if (due > at + EARLY_NS) break;
                start_request(due, 0, (uint32_t)step);
                issued++;
            }
            while (probe_rate > 0) {
                int64_t due = (int64_t)((double)probes * 1e9 / probe_rate);
                if (due >= end_ns || due > at + EARLY_NS) break;
                int s = 0;
                while (s + 1 < n_steps && due >= step_start[s + 1]) s++;
                start_request(due, 1, (uint32_t)s);
                probes++;
            }
        }
        if (at - last_expiry > 10000000) { /* every 10 ms */
            expire(at, 0);
            last_expiry = at;
        }
        if (at >= end_ns && (closed_conns || in_flight == 0)) break;
        if (at >= end_ns + timeout_ns + 1000000000LL) break;
        /* Sleep until the next due request (timerfd: nanoseconds), an event, or 10 ms. */
        int64_t next = at + 10000000;
        if (!closed_conns && step < n_steps) {
            int64_t due = step_start[step] + (int64_t)((double)issued * 1e9 / rates[step]);
            if (due < next) next = due;
        }
        if (!closed_conns && probe_rate > 0) {
            int64_t due = (int64_t)((double)probes * 1e9 / probe_rate);
            if (due < end_ns && due < next) next = due;
        }
        if (next <= at) next = at + 1;
        if (next != armed) { /* the timer is re-armed only when the next wake-up moved */
            struct itimerspec its = {0};
            int64_t abs_ns = t0 + next;
            its.it_value.tv_sec = abs_ns / 1000000000LL;
            its.it_value.tv_nsec = abs_ns % 1000000000LL;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            armed = next;
        }
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (!c) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN) die("timerfd");
                armed = -1;
                continue;
            }
            if (c->state != DEAD) on_event(c, events[i].events); /* an earlier event may have closed it */
        }
        bury();
        if (closed_conns) {
            /* every connection that is idle again sends its next request; the warm-up is step 0 */
            int64_t now = now_ns() - t0;
            if (now < end_ns) {
                uint32_t s = now < (int64_t)(warmup * 1e9) ? 0 : 1;
                while (idle_main) start_request(now, 0, s);
                while (n_conns < closed_conns) {
                    int before = n_conns;
                    start_request(now, 0, s);
                    if (n_conns == before) break;
                }
            }
        }
    }
    if (!closed_conns) expire(now_ns() - t0, 1); /* waited the timeout past the end: what is left timed out */
    if (fflush(out) != 0 || fclose(out) != 0) die("close");
    fprintf(stderr, "loadgen: %ld records\n", records_written);
    return 0;
}
