/* The per-run monitor in C: the same process, protocol and files as the Python one in this
 * package (box_agent/monitor/__init__.py documents them), at a fraction of its memory.
 *
 * Why C: a paused run may cost at most 2 MiB more than a script parented by the agent (issue
 * 11). A Python monitor is a whole interpreter with its imports, about 8 MiB of private memory
 * per run; this one is a few hundred KiB, most of it libc shared with every process on the box.
 * It keeps no buffer for output: the script's pipes go to the log with splice(2).
 *
 * Run as `MONITOR CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV...`. One thread, no allocation
 * that grows with the output, every fd close-on-exec but the two the script inherits.
 * Built by box_agent/monitor_build.py (at setup, or at the agent's first start).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WINDOW (4LL << 20)         /* bytes logged ahead of the slowest viewer (loop.py) */
#define PIPE_BYTES (1 << 20)       /* the script's pipes, and the most one record holds */
#define SEGMENT_BYTES (8LL << 20)  /* runlog.py */
#define LOG_LIMIT (64LL << 20)     /* runlog.DEFAULT_LIMIT */
#define SWEEP_GRACE_MS 500
#define SCAN_EVERY_MS 50
#define LINGER_MS 120000
/* When the agent goes, the last window stands this long before the script may log freely: a
 * graceful restart's next agent takes the run back sooner, with a hold for its client. */
#define AGENTLESS_GRACE_MS 5000
#define MSG_MAX 65536
#define MAX_FDS 4
#define STDOUT_STREAM 1
#define STDERR_STREAM 2

static int agent = -1, listener = -1, script_link = -1, wake_r = -1, wake_w = -1;
static int pipe_fd[3] = {-1, -1, -1}; /* indexed by stream */
static int open_pipes = 0;
static int no_splice = 0;

/* the log (runlog.py's layout) */
static long long log_end = 0, seg_start = 0, totals[3] = {0, 0, 0};
static int seg_fd = -1;

/* flow control with the agent */
static long long window_until = WINDOW;
static int window_unlimited = 0;
static int outstanding = 0;
static long long acked_end = 0;
static long long agentless_deadline = -1; /* when the window lapses with no agent */

/* the script's current pause, verbatim, for a new agent */
static char *pause_body = NULL;
static char *pause_seq = NULL; /* the raw JSON of its "seq", or NULL when it has none */
static double paused_at = 0.0;

/* the script */
static pid_t script_pid = -1;
static int script_status = -1; /* N, or 128+N for signal N; -1 while it runs */
static long long sweep_at = -1, next_scan = 0;

static char inbuf[MSG_MAX + 1];

/* ---- time, small helpers ------------------------------------------------------------ */

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0)
        fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
}

/* ---- a JSON scanner: enough to validate a message and find a top-level field ---------- */

static const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_value(const char *p, const char *e, int depth);

static const char *skip_string(const char *p, const char *e) {
    if (p >= e || *p != '"')
        return NULL;
    for (p++; p < e; p++) {
        if (*p == '\\') {
            p++;
            continue;
        }
        if (*p == '"')
            return p + 1;
        if ((unsigned char)*p < 0x20)
            return NULL;
    }
    return NULL;
}

static const char *skip_literal(const char *p, const char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

static const char *skip_value(const char *p, const char *e, int depth) {
    p = ws(p, e);
    if (p >= e || depth > 64)
        return NULL;
    if (*p == '"')
        return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        int object = *p == '{';
        p = ws(p + 1, e);
        if (p < e && *p == close)
            return p + 1;
        for (;;) {
            if (object) {
                p = skip_string(ws(p, e), e);
                if (!p)
                    return NULL;
                p = ws(p, e);
                if (p >= e || *p != ':')
                    return NULL;
                p++;
            }
            p = skip_value(p, e, depth + 1);
            if (!p)
                return NULL;
            p = ws(p, e);
            if (p < e && *p == ',') {
                p++;
                continue;
            }
            return p < e && *p == close ? p + 1 : NULL;
        }
    }
    if (*p == 't')
        return skip_literal(p, e, "true");
    if (*p == 'f')
        return skip_literal(p, e, "false");
    if (*p == 'n')
        return skip_literal(p, e, "null");
    if (*p == 'N')
        return skip_literal(p, e, "NaN");
    if (*p == 'I')
        return skip_literal(p, e, "Infinity");
    if (*p == '-' && e - p > 1 && p[1] == 'I')
        return skip_literal(p, e, "-Infinity");
    const char *start = p;
    while (p < e && (isdigit((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.' ||
                     *p == 'e' || *p == 'E'))
        p++;
    return p > start ? p : NULL;
}

/* A whole message: one JSON object and whitespace. Returns its span without the whitespace. */
static int json_object(const char *p, const char *e, const char **vs, const char **ve) {
    p = ws(p, e);
    if (p >= e || *p != '{')
        return 0;
    const char *end = skip_value(p, e, 0);
    if (!end || ws(end, e) != e)
        return 0;
    *vs = p;
    *ve = end;
    return 1;
}

/* The raw value of a top-level key of a valid object; 0 when it has none. */
static int json_field(const char *p, const char *e, const char *key, const char **vs,
                      const char **ve) {
    size_t klen = strlen(key);
    p = ws(p, e) + 1;
    for (;;) {
        p = ws(p, e);
        if (p >= e || *p != '"')
            return 0;
        const char *kend = skip_string(p, e);
        int match = (size_t)(kend - p) == klen + 2 && memcmp(p + 1, key, klen) == 0;
        p = ws(kend, e) + 1; /* past ':' */
        p = ws(p, e);
        const char *vend = skip_value(p, e, 0);
        if (match) {
            *vs = p;
            *ve = vend;
            return 1;
        }
        p = ws(vend, e);
        if (p >= e || *p != ',')
            return 0;
        p++;
    }
}

static int field_is(const char *p, const char *e, const char *key, const char *raw) {
    const char *vs, *ve;
    size_t n = strlen(raw);
    return json_field(p, e, key, &vs, &ve) && (size_t)(ve - vs) == n && memcmp(vs, raw, n) == 0;
}

static int field_ll(const char *p, const char *e, const char *key, long long *out) {
    const char *vs, *ve;
    char num[32];
    if (!json_field(p, e, key, &vs, &ve) || ve - vs >= (long)sizeof num)
        return 0;
    memcpy(num, vs, ve - vs);
    num[ve - vs] = 0;
    char *stop;
    errno = 0;
    long long v = strtoll(num, &stop, 10);
    if (errno || stop == num || (*stop && *stop != '.' && *stop != 'e' && *stop != 'E'))
        return 0;
    *out = v;
    return 1;
}

static char *dup_span(const char *s, const char *e) {
    char *copy = malloc(e - s + 1);
    if (copy) {
        memcpy(copy, s, e - s);
        copy[e - s] = 0;
    }
    return copy;
}

/* A JSON string literal of text, into out (size at least 6 * len + 3). */
static void json_quote(char *out, const char *text) {
    char *o = out;
    *o++ = '"';
    for (const unsigned char *t = (const unsigned char *)text; *t; t++) {
        if (*t == '"' || *t == '\\') {
            *o++ = '\\';
            *o++ = *t;
        } else if (*t < 0x20) {
            o += sprintf(o, "\\u%04x", *t);
        } else {
            *o++ = *t;
        }
    }
    *o++ = '"';
    *o = 0;
}

/* ---- the agent ------------------------------------------------------------------------ */

static void agent_gone(void) {
    if (agent >= 0)
        close(agent);
    agent = -1;
    /* Nobody to wait for (after the grace): the log's own limit bounds the disk. */
    if (!window_unlimited)
        agentless_deadline = now_ms() + AGENTLESS_GRACE_MS;
}

static void tell_iov(struct iovec *iov, int n) {
    if (agent < 0)
        return;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    if (sendmsg(agent, &msg, MSG_NOSIGNAL) < 0)
        agent_gone();
}

static void tell(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    struct iovec iov = {buf, n < (int)sizeof buf ? (size_t)n : sizeof buf - 1};
    tell_iov(&iov, 1);
}

static void hello(void) {
    outstanding = 0;
    acked_end = log_end;
    char head[160], tail[64];
    int h = snprintf(head, sizeof head, "{\"op\":\"hello\",\"pid\":%d,\"end\":%lld,\"pause\":",
                     (int)script_pid, log_end);
    int t = snprintf(tail, sizeof tail, ",\"paused_at\":%.6f}\n", paused_at);
    struct iovec iov[3] = {{head, (size_t)h},
                           {pause_body ? pause_body : "null", pause_body ? strlen(pause_body) : 4},
                           {tail, (size_t)t}};
    tell_iov(iov, 3);
}

/* ---- the script and what it leaves behind ----------------------------------------------- */

struct proc {
    pid_t pid, ppid;
};

/* Every live process below root, through /proc (setsid does not hide one). Returns a malloc'd
 * array (caller frees) and its length in *count. */
static pid_t *descendants(pid_t root, int *count) {
    struct proc *all = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir("/proc");
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        if (!isdigit((unsigned char)ent->d_name[0]))
            continue;
        char path[300], stat[512];
        snprintf(path, sizeof path, "/proc/%s/stat", ent->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t len = read(fd, stat, sizeof stat - 1);
        close(fd);
        if (len <= 0)
            continue;
        stat[len] = 0;
        /* The command name may hold spaces and parentheses; the fields after its last ')'
         * don't. */
        char *close_paren = strrchr(stat, ')');
        char state;
        int ppid;
        if (!close_paren || sscanf(close_paren + 1, " %c %d", &state, &ppid) != 2 ||
            state == 'Z')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            struct proc *grown = realloc(all, cap * sizeof *all);
            if (!grown)
                break;
            all = grown;
        }
        all[n].pid = atoi(ent->d_name);
        all[n].ppid = ppid;
        n++;
    }
    if (d)
        closedir(d);
    pid_t *found = malloc((n + 1) * sizeof *found);
    int nfound = 0;
    if (found) {
        pid_t todo_root = root;
        int next = -1; /* index into found of the next parent to expand; -1 means root */
        for (;;) {
            pid_t parent = next < 0 ? todo_root : found[next];
            for (int i = 0; i < n; i++)
                if (all[i].ppid == parent)
                    found[nfound++] = all[i].pid;
            if (++next >= nfound)
                break;
        }
    }
    free(all);
    *count = nfound;
    return found;
}

static void signal_all(pid_t *pids, int n, int sig) {
    for (int i = 0; i < n; i++)
        kill(pids[i], sig);
}

static void sweep_start(void) {
    int n;
    pid_t *left = descendants(getpid(), &n);
    if (n) {
        signal_all(left, n, SIGTERM);
        sweep_at = now_ms() + SWEEP_GRACE_MS;
    }
    free(left);
}

static void reap(void) {
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        if (pid == script_pid) {
            script_status = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
            sweep_start();
        }
    }
}

static void signal_script(int sig) {
    if (script_status >= 0)
        return;
    kill(-script_pid, sig);
    int n;
    pid_t *all = descendants(getpid(), &n);
    for (int i = 0; i < n; i++)
        if (getpgid(all[i]) != script_pid)
            kill(all[i], sig);
    free(all);
}

static void tick(void) {
    if (script_status < 0)
        return;
    long long now = now_ms();
    if (sweep_at >= 0 && now >= sweep_at) {
        sweep_at = -1;
        int n;
        pid_t *left = descendants(getpid(), &n);
        signal_all(left, n, SIGKILL);
        free(left);
    } else if (sweep_at < 0 && now >= next_scan) {
        next_scan = now + SCAN_EVERY_MS;
        sweep_start(); /* one appeared after the sweep began (forked by a dying one) */
    }
}

static int swept(void) {
    if (script_status < 0 || sweep_at >= 0)
        return 0;
    int n;
    free(descendants(getpid(), &n));
    return n == 0;
}

/* ---- the log (box_agent/runlog.py's format) --------------------------------------------- */

struct segment {
    long long start;
    char name[80];
};

static int by_start(const void *a, const void *b) {
    long long x = ((const struct segment *)a)->start, y = ((const struct segment *)b)->start;
    return x < y ? -1 : x > y;
}

static void drop_old_segments(void) {
    struct segment *found = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(".");
    struct dirent *ent;
    while (d && (ent = readdir(d))) {
        unsigned long long start, out, err;
        if (strncmp(ent->d_name, "log.", 4) != 0 ||
            sscanf(ent->d_name + 4, "%llx.%llx.%llx", &start, &out, &err) != 3 ||
            strlen(ent->d_name) >= sizeof found->name)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            struct segment *grown = realloc(found, cap * sizeof *found);
            if (!grown)
                break;
            found = grown;
        }
        found[n].start = (long long)start;
        strcpy(found[n].name, ent->d_name);
        n++;
    }
    if (d)
        closedir(d);
    qsort(found, n, sizeof *found, by_start);
    for (int i = 0; n - i > 1 && log_end - found[i].start > LOG_LIMIT; i++)
        unlink(found[i].name);
    free(found);
}

static void rotate(void) {
    if (seg_fd >= 0)
        close(seg_fd);
    seg_start = log_end;
    char name[96];
    snprintf(name, sizeof name, "log.%llx.%llx.%llx", log_end, totals[STDOUT_STREAM],
             totals[STDERR_STREAM]);
    /* Not O_APPEND: splice(2) refuses such a file. We are its only writer and keep the
     * offset ourselves. */
    seg_fd = open(name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    drop_old_segments();
}

static void put_header(unsigned char *h, int stream, size_t length) {
    h[0] = (unsigned char)stream;
    h[1] = h[2] = h[3] = 0;
    h[4] = length >> 24;
    h[5] = length >> 16;
    h[6] = length >> 8;
    h[7] = length;
}

/* Read and forget n bytes of a pipe (a full disk loses this output, never the run). */
static void discard(int fd, size_t n) {
    char buf[16384];
    while (n > 0) {
        ssize_t got = read(fd, buf, n < sizeof buf ? n : sizeof buf);
        if (got <= 0)
            return;
        n -= got;
    }
}

/* One record of these bytes, written at the log's end. */
static void append_bytes(int stream, const char *data, size_t len) {
    unsigned char head[8];
    put_header(head, stream, len);
    struct iovec iov[2] = {{head, 8}, {(void *)data, len}};
    if (seg_fd < 0 || log_end - seg_start >= SEGMENT_BYTES)
        rotate();
    if (seg_fd < 0 || pwritev(seg_fd, iov, 2, log_end - seg_start) != (ssize_t)(8 + len)) {
        if (seg_fd >= 0 && ftruncate(seg_fd, log_end - seg_start) < 0)
            return;
        return; /* lost to a full disk; the next may fit */
    }
    log_end += 8 + len;
    totals[stream] += len;
}

/* n bytes of the pipe, copied through a small buffer (where splice is not supported). */
static void append_by_read(int stream, int fd, size_t n) {
    char buf[65536];
    while (n > 0) {
        ssize_t got = read(fd, buf, n < sizeof buf ? n : sizeof buf);
        if (got <= 0)
            return;
        n -= got;
        append_bytes(stream, buf, got);
    }
}

/* Everything the pipe holds, as one record. Returns 0 at the pipe's end. */
static int drain(int stream) {
    int fd = pipe_fd[stream], avail = 0;
    if (ioctl(fd, FIONREAD, &avail) < 0 || avail <= 0) {
        char byte;
        ssize_t got = read(fd, &byte, 1); /* 0: the script and its children closed it */
        if (got > 0) {
            append_bytes(stream, &byte, 1);
            return 1;
        }
        if (got < 0 && errno == EAGAIN)
            return 1;
        close(fd);
        pipe_fd[stream] = -1;
        open_pipes--;
        return 0;
    }
    size_t n = avail > PIPE_BYTES ? PIPE_BYTES : (size_t)avail;
    if (no_splice) {
        append_by_read(stream, fd, n);
        return 1;
    }
    if (seg_fd < 0 || log_end - seg_start >= SEGMENT_BYTES)
        rotate();
    long long pos = log_end - seg_start;
    unsigned char head[8];
    put_header(head, stream, n);
    if (seg_fd < 0 || pwrite(seg_fd, head, 8, pos) != 8) {
        discard(fd, n);
        return 1;
    }
    loff_t off = pos + 8;
    size_t moved = 0;
    while (moved < n) {
        ssize_t got = splice(fd, NULL, seg_fd, &off, n - moved, SPLICE_F_MOVE);
        if (got <= 0)
            break;
        moved += got;
    }
    if (moved == 0) {
        int why = errno;
        if (ftruncate(seg_fd, pos) < 0)
            why = errno;
        if (why == EINVAL || why == ENOSYS) {
            no_splice = 1;
            append_by_read(stream, fd, n);
        } else {
            discard(fd, n);
        }
        return 1;
    }
    if (moved < n) { /* the record says what it holds; the rest stays in the pipe */
        put_header(head, stream, moved);
        if (pwrite(seg_fd, head, 8, pos) != 8 || ftruncate(seg_fd, pos + 8 + moved) < 0)
            moved = 0; /* the next record starts over this one */
        if (moved == 0)
            return 1;
    }
    log_end += 8 + moved;
    totals[stream] += moved;
    return 1;
}

static void write_status(void) {
    char text[160];
    int n = snprintf(text, sizeof text, "{\"status\": %d, \"ended_at\": %.6f, \"end\": %lld}",
                     script_status, wall_time(), log_end);
    int fd = open("status.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t wrote = write(fd, text, n);
    close(fd);
    if (wrote == n)
        rename("status.tmp", "status.json");
}

/* ---- messages --------------------------------------------------------------------------- */

static void close_fds(int *fds, int n) {
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* Receive one message and its fds (at most MAX_FDS); returns its length, 0 at the end. */
static ssize_t receive(int sock, int *fds, int *nfds) {
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } control;
    struct iovec iov = {inbuf, MSG_MAX};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    *nfds = 0;
    ssize_t got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (got < 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (int i = 0; i < count && *nfds < MAX_FDS; i++)
                memcpy(&fds[(*nfds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
    }
    return got;
}

static void to_script(const char *body, const char *body_end, int *fds, int nfds) {
    if (script_link < 0)
        return;
    if (pause_body && field_is(body, body_end, "op", "\"resume\"")) {
        const char *vs, *ve;
        int has = json_field(body, body_end, "seq", &vs, &ve);
        int same = has ? pause_seq && (size_t)(ve - vs) == strlen(pause_seq) &&
                             memcmp(vs, pause_seq, ve - vs) == 0
                       : pause_seq == NULL;
        if (same) {
            free(pause_body);
            free(pause_seq);
            pause_body = pause_seq = NULL;
        }
    }
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } control;
    struct iovec iov[2] = {{(void *)body, (size_t)(body_end - body)}, {"\n", 1}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
    if (nfds) {
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    sendmsg(script_link, &msg, MSG_NOSIGNAL); /* a gone script: its exit is on its way */
}

static void from_agent(void) {
    int fds[MAX_FDS], nfds;
    ssize_t got = receive(agent, fds, &nfds);
    if (got <= 0) {
        close_fds(fds, nfds);
        agent_gone();
        return;
    }
    const char *p, *e;
    if (json_object(inbuf, inbuf + got, &p, &e)) {
        long long value;
        const char *vs, *ve;
        if (field_is(p, e, "op", "\"signal\"")) {
            if (field_ll(p, e, "sig", &value) && value > 0 && value < NSIG)
                signal_script((int)value);
        } else if (field_is(p, e, "op", "\"window\"")) { /* also the answer to our `output` */
            if (field_is(p, e, "until", "null") || !json_field(p, e, "until", &vs, &ve))
                window_unlimited = 1;
            else if (field_ll(p, e, "until", &value)) {
                window_unlimited = 0;
                window_until = value;
            }
            if (field_ll(p, e, "seen", &value) && value > acked_end)
                acked_end = value;
            outstanding = 0;
        } else if (field_is(p, e, "op", "\"to_script\"")) {
            if (json_field(p, e, "body", &vs, &ve) && *vs == '{')
                to_script(vs, ve, fds, nfds);
        }
        /* only an agent reaches this socket; what we don't know changes nothing */
    }
    close_fds(fds, nfds);
}

static void from_script(short revents) {
    ssize_t got = recv(script_link, inbuf, MSG_MAX, 0);
    if (got == 0 && !(revents & (POLLHUP | POLLERR)))
        return; /* an empty datagram, not the end of the link */
    if (got < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (got <= 0) {
        close(script_link);
        script_link = -1;
        free(pause_body);
        free(pause_seq);
        pause_body = pause_seq = NULL;
        tell("{\"op\":\"link_closed\"}\n");
        return;
    }
    const char *p, *e;
    if (!json_object(inbuf, inbuf + got, &p, &e))
        return;
    if (field_is(p, e, "op", "\"pause\"")) {
        const char *vs, *ve;
        free(pause_body);
        free(pause_seq);
        pause_body = dup_span(p, e);
        pause_seq = json_field(p, e, "seq", &vs, &ve) ? dup_span(vs, ve) : NULL;
        paused_at = wall_time();
    }
    char head[] = "{\"op\":\"script\",\"body\":";
    char tail[64];
    int t = snprintf(tail, sizeof tail, ",\"at\":%.6f}\n", paused_at);
    struct iovec iov[3] = {{head, sizeof head - 1}, {(void *)p, (size_t)(e - p)},
                           {tail, (size_t)t}};
    tell_iov(iov, 3);
}

static void accept_agent(void) {
    int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return;
    if (agent >= 0)
        close(agent); /* a new agent (a restart, or --replace) takes over */
    agent = conn;
    agentless_deadline = -1;
    hello();
}

static void notify(void) {
    /* At most one `output` is outstanding: the agent's window answers it. */
    if (agent >= 0 && !outstanding && log_end > acked_end) {
        outstanding = 1;
        tell("{\"op\":\"output\",\"end\":%lld}\n", log_end);
    }
}

/* ---- the loop --------------------------------------------------------------------------- */

static void poll_once(void) {
    struct pollfd fds[6];
    int n = 0, i_listener = -1, i_agent = -1, i_link = -1, i_pipe[3] = {-1, -1, -1};
    fds[n++] = (struct pollfd){wake_r, POLLIN, 0};
    if (listener >= 0) {
        i_listener = n;
        fds[n++] = (struct pollfd){listener, POLLIN, 0};
    }
    if (agent >= 0) {
        i_agent = n;
        fds[n++] = (struct pollfd){agent, POLLIN, 0};
    }
    if (script_link >= 0) {
        i_link = n;
        fds[n++] = (struct pollfd){script_link, POLLIN, 0};
    }
    if (agent < 0 && agentless_deadline >= 0 && now_ms() >= agentless_deadline) {
        window_unlimited = 1;
        agentless_deadline = -1;
    }
    if (window_unlimited || log_end < window_until) {
        for (int s = STDOUT_STREAM; s <= STDERR_STREAM; s++)
            if (pipe_fd[s] >= 0) {
                i_pipe[s] = n;
                fds[n++] = (struct pollfd){pipe_fd[s], POLLIN, 0};
            }
    }
    int timeout = -1;
    if (script_status >= 0) {
        long long deadline = sweep_at >= 0 ? sweep_at : now_ms() + SCAN_EVERY_MS;
        long long left = deadline - now_ms();
        timeout = left < 0 ? 0 : (int)left;
    }
    if (agentless_deadline >= 0) {
        long long left = agentless_deadline - now_ms();
        if (timeout < 0 || left < timeout)
            timeout = left < 0 ? 0 : (int)left;
    }
    if (poll(fds, n, timeout) < 0 && errno != EINTR)
        return;
    if (fds[0].revents) {
        char buf[256];
        while (read(wake_r, buf, sizeof buf) > 0) {
        }
    }
    reap();
    if (i_listener >= 0 && fds[i_listener].revents)
        accept_agent();
    if (i_agent >= 0 && agent >= 0 && fds[i_agent].revents)
        from_agent();
    if (i_link >= 0 && script_link >= 0 && fds[i_link].revents)
        from_script(fds[i_link].revents);
    for (int s = STDOUT_STREAM; s <= STDERR_STREAM; s++)
        if (i_pipe[s] >= 0 && fds[i_pipe[s]].revents)
            drain(s);
    notify();
    tick();
}

/* Stay until the agent has read our last messages and closed its end (loop.py's _linger says
 * why: closing with unread messages resets the agent's end and loses our last words). */
static void linger(void) {
    close(listener);
    listener = -1;
    if (agent < 0 || shutdown(agent, SHUT_WR) < 0)
        return;
    long long until = now_ms() + LINGER_MS;
    for (;;) {
        long long left = until - now_ms();
        if (left <= 0)
            return;
        struct pollfd p = {agent, POLLIN, 0};
        int ready = poll(&p, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return;
        int fds[MAX_FDS], nfds;
        ssize_t got = receive(agent, fds, &nfds);
        close_fds(fds, nfds);
        if (got <= 0)
            return;
    }
}

/* ---- starting the script ---------------------------------------------------------------- */

static const int IGNORED[] = {SIGINT, SIGHUP, SIGPIPE, SIGTERM};

struct identity {
    int set;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int ngroups;
};

static int parse_identity(const char *text, struct identity *id) {
    memset(id, 0, sizeof *id);
    if (strcmp(text, "-") == 0)
        return 1;
    char *rest;
    unsigned long uid = strtoul(text, &rest, 10);
    if (*rest != ':')
        return 0;
    unsigned long gid = strtoul(rest + 1, &rest, 10);
    if (*rest != ':')
        return 0;
    rest++;
    while (*rest && id->ngroups < 64) {
        id->groups[id->ngroups++] = (gid_t)strtoul(rest, &rest, 10);
        if (*rest == ',')
            rest++;
        else if (*rest)
            return 0;
    }
    id->set = 1;
    id->uid = (uid_t)uid;
    id->gid = (gid_t)gid;
    return 1;
}

static void child_fail(int errpipe, const char *what) {
    int err[2] = {errno, 0};
    (void)what;
    ssize_t wrote = write(errpipe, err, sizeof err);
    (void)wrote;
    _exit(127);
}

static void exec_search(char **argv) {
    if (strchr(argv[0], '/')) {
        execv(argv[0], argv);
        return;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    int saved = ENOENT;
    while (*path) {
        const char *colon = strchrnul(path, ':');
        char full[PATH_MAX];
        snprintf(full, sizeof full, "%.*s/%s", (int)(colon - path), path, argv[0]);
        execv(full, argv);
        if (errno != ENOENT)
            saved = errno;
        path = *colon ? colon + 1 : colon;
    }
    errno = saved;
}

/* Fork and exec the script; returns 0, or an errno when it could not start. */
static int start_script(char **argv, const char *workdir, const struct identity *id,
                        int out_w, int err_w, int pass_a, int pass_b) {
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) < 0)
        return errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(errpipe[0]);
        close(errpipe[1]);
        return err;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0)
            child_fail(errpipe[1], "dup2");
        set_cloexec(pass_a, 0);
        set_cloexec(pass_b, 0);
        if (chdir(workdir) < 0)
            child_fail(errpipe[1], "chdir");
        if (id->set)
            umask(077);
        for (size_t i = 0; i < sizeof IGNORED / sizeof IGNORED[0]; i++)
            signal(IGNORED[i], SIG_DFL);
        signal(SIGXFSZ, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (setsid() < 0)
            child_fail(errpipe[1], "setsid");
        if (id->set) {
            /* Always set, so root's own supplementary groups never follow the script. */
            if (setgroups(id->ngroups, id->groups) < 0 || setregid(id->gid, id->gid) < 0 ||
                setreuid(id->uid, id->uid) < 0)
                child_fail(errpipe[1], "setuid");
        }
        /* After the uid change (which clears it). We have one thread, so this fires once,
         * and only if the monitor itself dies. */
        prctl(PR_SET_PDEATHSIG, SIGINT);
        exec_search(argv);
        child_fail(errpipe[1], "exec");
    }
    close(errpipe[1]);
    int err[2] = {0, 0};
    ssize_t got;
    do
        got = read(errpipe[0], err, sizeof err);
    while (got < 0 && errno == EINTR);
    close(errpipe[0]);
    if (got > 0) {
        waitpid(pid, NULL, 0);
        return err[0] ? err[0] : EIO;
    }
    script_pid = pid;
    return 0;
}

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    ssize_t wrote = write(wake_w, "c", 1); /* wakes poll() */
    (void)wrote;
    errno = saved;
}

int main(int argc, char **argv) {
    if (argc < 7 || strcmp(argv[5], "--") != 0) {
        fprintf(stderr, "usage: %s CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV\n", argv[0]);
        return 2;
    }
    struct identity id;
    if (!parse_identity(argv[4], &id)) {
        fprintf(stderr, "monitor: bad identity %s\n", argv[4]);
        return 2;
    }
    agent = atoi(argv[1]);
    set_cloexec(agent, 1);
    const char *workdir = argv[3];

    prctl(PR_SET_CHILD_SUBREAPER, 1);
    for (size_t i = 0; i < sizeof IGNORED / sizeof IGNORED[0]; i++)
        signal(IGNORED[i], SIG_IGN);
    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return 1;
    wake_r = wake[0];
    wake_w = wake[1];
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);

    /* Relative to our cwd: a socket path must fit in 108 bytes, the monitor dir may not. */
    if (chdir(argv[2]) < 0) {
        perror("monitor: chdir");
        return 1;
    }
    listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = "sock"};
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(listener, 4) < 0) {
        perror("monitor: sock");
        return 1;
    }
    int pair[2], out[2], err[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0 ||
        pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        perror("monitor: pipes");
        return 1;
    }
    script_link = pair[0];
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETPIPE_SZ, PIPE_BYTES); /* over the pipe quota: the default works */
    fcntl(err[0], F_SETPIPE_SZ, PIPE_BYTES);
    /* A second fd on the script's stderr: pytest's capture takes fd 2 over, and a banner
     * written there would wait in its capture file, unseen, while the script pauses. */
    int err_copy = fcntl(err[1], F_DUPFD_CLOEXEC, 3);
    char number[32];
    snprintf(number, sizeof number, "%d", (int)getpid());
    setenv("LAGER_AGENT_PID", number, 1); /* the script's parent is us */
    snprintf(number, sizeof number, "%d", pair[1]);
    setenv("LAGER_AGENT_FD", number, 1);
    snprintf(number, sizeof number, "%d", err_copy);
    setenv("LAGER_STDERR_FD", number, 1);

    int failed = start_script(argv + 6, workdir, &id, out[1], err[1], pair[1], err_copy);
    close(out[1]);
    close(err[1]);
    close(err_copy);
    close(pair[1]);
    if (failed) {
        char reason[600], quoted[sizeof reason * 6 + 3];
        snprintf(reason, sizeof reason, "cannot start the script: [Errno %d] %s: '%.400s'",
                 failed, strerror(failed), argv[6]);
        json_quote(quoted, reason);
        char *msg = malloc(strlen(quoted) + 64);
        if (msg) {
            int n = sprintf(msg, "{\"op\":\"failed\",\"error\":%s}\n", quoted);
            struct iovec iov = {msg, (size_t)n};
            tell_iov(&iov, 1);
        }
        return 127;
    }
    pipe_fd[STDOUT_STREAM] = out[0];
    pipe_fd[STDERR_STREAM] = err[0];
    open_pipes = 2;
    hello();

    while (open_pipes > 0 || !swept())
        poll_once();
    if (seg_fd >= 0)
        close(seg_fd);
    write_status();
    tell("{\"op\":\"exit\",\"status\":%d,\"end\":%lld}\n", script_status, log_end);
    linger();
    return script_status & 0xff;
}
