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
 * Built by box_agent/monitor_build.py (at setup, or at the agent's first start). Here: the
 * agent, the script's link and the loop; json.c reads messages, process.c starts, signals and
 * sweeps the script, log.c writes its output log.
 */
#include "monitor.h"

int agent = -1;
static int listener = -1, script_link = -1, wake_r = -1, wake_w = -1;

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
/* where its banner lies in the run's stderr, [start, end) */
static int has_banner_at = 0;
static long long banner_start = 0, banner_end = 0;

static char inbuf[MSG_MAX + 1];
static char banner_text[MSG_MAX]; /* a decoded banner: never longer than its JSON */

/* lager/protocol/link.py's messages, field by field (codec.py's rules) */
static const struct field_spec PAUSE_FIELDS[] = {
    {"seq", J_INT, 1}, {"file", J_STR, 1}, {"line", J_INT, 1}, {"timeout", J_NUM, 1},
    {"console", J_BOOL, 1}, {"label", J_STR | J_NULL, 0}, {"on_timeout", J_STR, 0},
    {"kind", J_STR, 0}, {"banner", J_STR | J_NULL, 0}, {NULL, 0, 0}};
static const struct field_spec RESUMED_FIELDS[] = {
    {"seq", J_INT, 1}, {"how", J_STR, 1}, {"by", J_STR | J_NULL, 0},
    {"banner", J_STR | J_NULL, 0}, {NULL, 0, 0}};
static const struct field_spec RESUME_FIELDS[] = {
    {"seq", J_INT, 1}, {"how", J_STR, 1}, {"after", J_NUM, 0}, {"by", J_STR | J_NULL, 0},
    {NULL, 0, 0}};
static const struct field_spec CONSOLE_FIELDS[] = {
    {"seq", J_INT, 1}, {"pty", J_BOOL, 1}, {"cols", J_INT, 1}, {"rows", J_INT, 1},
    {NULL, 0, 0}};
static const struct field_spec PLACED_FIELDS[] = {{"seq", J_INT, 1}, {NULL, 0, 0}};
static const struct field_spec SIGNAL_FIELDS[] = {{"sig", J_INT, 1}, {NULL, 0, 0}};
static const struct field_spec WINDOW_FIELDS[] = {
    {"until", J_INT | J_NULL, 1}, {"seen", J_INT | J_NULL, 0}, {NULL, 0, 0}};
static const struct field_spec TO_SCRIPT_FIELDS[] = {{"body", J_OBJ, 0}, {NULL, 0, 0}};

/* ---- time, small helpers ------------------------------------------------------------ */

long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

void set_cloexec(int fd, int on) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0)
        fcntl(fd, F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
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

/* `,"banner_at":[start,end]` or `,"banner_at":null` */
static int banner_at_json(char *out, size_t size, int has, long long start, long long end) {
    return has ? snprintf(out, size, ",\"banner_at\":[%lld,%lld]", start, end)
               : snprintf(out, size, ",\"banner_at\":null");
}

static void clear_pause(void) {
    free(pause_body);
    free(pause_seq);
    pause_body = pause_seq = NULL;
    has_banner_at = 0;
}

static void hello(void) {
    outstanding = 0;
    acked_end = log_end;
    char head[160], tail[128];
    int h = snprintf(head, sizeof head, "{\"op\":\"hello\",\"pid\":%d,\"end\":%lld,\"pause\":",
                     (int)script_pid, log_end);
    int t = snprintf(tail, sizeof tail, ",\"paused_at\":%.6f", paused_at);
    t += banner_at_json(tail + t, sizeof tail - t, has_banner_at, banner_start, banner_end);
    t += snprintf(tail + t, sizeof tail - t, "}\n");
    struct iovec iov[3] = {{head, (size_t)h},
                           {pause_body ? pause_body : "null", pause_body ? strlen(pause_body) : 4},
                           {tail, (size_t)t}};
    tell_iov(iov, 3);
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
        if (same)
            clear_pause();
    }
    /* Only what the script can read goes on (ToScript.encode_body) */
    const struct field_spec *spec = field_is(body, body_end, "op", "\"resume\"")    ? RESUME_FIELDS
                                    : field_is(body, body_end, "op", "\"console\"") ? CONSOLE_FIELDS
                                    : field_is(body, body_end, "op", "\"placed\"")  ? PLACED_FIELDS
                                                                                   : NULL;
    if (!spec || !fields_ok(body, body_end, spec))
        return;
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
    if (utf8_valid(inbuf, inbuf + got) && json_object(inbuf, inbuf + got, &p, &e)) {
        long long value;
        const char *vs, *ve;
        if (field_is(p, e, "op", "\"signal\"")) {
            if (fields_ok(p, e, SIGNAL_FIELDS) && field_ll(p, e, "sig", &value) && value > 0 &&
                value < NSIG)
                signal_script((int)value);
        } else if (field_is(p, e, "op", "\"window\"")) { /* also the answer to our `output` */
            if (!fields_ok(p, e, WINDOW_FIELDS))
                ; /* a window we cannot read changes nothing */
            else if (field_is(p, e, "until", "null"))
                window_unlimited = 1;
            else if (field_ll(p, e, "until", &value)) {
                window_unlimited = 0;
                window_until = value;
            }
            if (fields_ok(p, e, WINDOW_FIELDS)) {
                if (field_ll(p, e, "seen", &value) && value > acked_end)
                    acked_end = value;
                outstanding = 0;
            }
        } else if (field_is(p, e, "op", "\"to_script\"")) {
            if (fields_ok(p, e, TO_SCRIPT_FIELDS) && json_field(p, e, "body", &vs, &ve))
                to_script(vs, ve, fds, nfds);
        }
        /* only an agent reaches this socket; what we don't know changes nothing */
    }
    close_fds(fds, nfds);
}

/* Put the script's banner on its stderr, after everything it wrote before sending it
 * (already in its pipes: a pipe write is done when it returns). Bounded: a thread that never
 * stops printing cannot hold us (loop.py's _put_banner). Returns 0 when a full disk lost it. */
static int put_banner(const char *vs, const char *ve, long long *start, long long *end) {
    for (int s = STDOUT_STREAM; s <= STDERR_STREAM; s++)
        for (int i = 0; i < 4 && pipe_fd[s] >= 0; i++) {
            int avail = 0;
            if (ioctl(pipe_fd[s], FIONREAD, &avail) < 0 || avail <= 0)
                break;
            drain(s);
        }
    size_t len = json_string(vs, ve, banner_text);
    *start = stream_total(STDERR_STREAM);
    *end = *start + (long long)len;
    return log_append(STDERR_STREAM, banner_text, len);
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
        clear_pause();
        tell("{\"op\":\"link_closed\"}\n");
        return;
    }
    /* decode_from_script's checks: UTF-8, one object, a pause or resumed with its fields */
    const char *p, *e, *vs, *ve, *seq_s, *seq_e;
    if (!utf8_valid(inbuf, inbuf + got) || !json_object(inbuf, inbuf + got, &p, &e))
        return;
    int is_pause = field_is(p, e, "op", "\"pause\"");
    int is_resumed = field_is(p, e, "op", "\"resumed\"");
    if (!(is_pause && fields_ok(p, e, PAUSE_FIELDS)) &&
        !(is_resumed && fields_ok(p, e, RESUMED_FIELDS)))
        return;
    json_field(p, e, "seq", &seq_s, &seq_e);
    int has_range = 0;
    long long start = 0, end = 0;
    /* a banner that is not empty text (an empty one is no banner, as in Python) */
    if (json_field(p, e, "banner", &vs, &ve) && *vs == '"' && ve - vs > 2) {
        has_range = put_banner(vs, ve, &start, &end);
        char head[] = "{\"op\":\"placed\",\"seq\":";
        struct iovec iov[3] = {{head, sizeof head - 1}, {(void *)seq_s, (size_t)(seq_e - seq_s)},
                               {"}\n", 2}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 3};
        sendmsg(script_link, &msg, MSG_NOSIGNAL); /* a gone script: its exit is on its way */
    }
    if (is_pause) {
        free(pause_body);
        free(pause_seq);
        pause_body = dup_span(p, e);
        pause_seq = dup_span(seq_s, seq_e);
        paused_at = wall_time();
        has_banner_at = has_range;
        banner_start = start;
        banner_end = end;
    } else if (pause_seq && (size_t)(seq_e - seq_s) == strlen(pause_seq) &&
               memcmp(seq_s, pause_seq, seq_e - seq_s) == 0) {
        clear_pause();
    }
    char head[] = "{\"op\":\"script\",\"body\":";
    char tail[128];
    int t = snprintf(tail, sizeof tail, ",\"at\":%.6f", paused_at);
    t += banner_at_json(tail + t, sizeof tail - t, has_range, start, end);
    t += snprintf(tail + t, sizeof tail - t, "}\n");
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
    log_close();
    write_status();
    tell("{\"op\":\"exit\",\"status\":%d,\"end\":%lld}\n", script_status, log_end);
    linger();
    return script_status & 0xff;
}
