/* The per-run monitor in C: the same process, protocol and files as the Python one in this
 * package (box_agent/monitor/__init__.py documents them), at a fraction of its memory.
 *
 * Why C: a paused run may cost at most 2 MiB more than a script parented by the agent (issue
 * 11). A Python monitor is a whole interpreter with its imports, about 8 MiB of private memory
 * per run; this one is a few hundred KiB, most of it libc shared with every process on the box.
 * It keeps no buffer for output: the script's pipes go to the log with splice(2).
 *
 * Run as `MONITOR [--log-limit=BYTES] CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV...` (the
 * run's log limit, runlog.py; 64 MiB without it). One thread, no allocation
 * that grows with the output, every fd close-on-exec but the two the script inherits.
 * Built by box_agent/monitor_build.py (at setup, or at the agent's first start). Here: the
 * agent and the loop; link.c the script's link and the banners it sends, json.c reads
 * messages, process.c starts, signals and sweeps the script, log.c writes its output log.
 */
#include "monitor.h"

int agent = -1;
int script_link = -1;
static int listener = -1, wake_r = -1, wake_w = -1;

/* flow control with the agent */
static long long window_until = WINDOW;
static int window_unlimited = 0;
static int outstanding = 0;
static long long acked_end = 0;
static long long agentless_deadline = -1; /* when the window lapses with no agent */

static char inbuf[MSG_MAX + 1];

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

void tell_iov(struct iovec *iov, int n) {
    if (agent < 0)
        return;
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
    if (sendmsg(agent, &msg, MSG_NOSIGNAL) < 0)
        agent_gone();
}

void tell(const char *fmt, ...) {
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
    char head[160], tail[192];
    int h = snprintf(head, sizeof head, "{\"op\":\"hello\",\"pid\":%d,\"end\":%lld,\"pause\":",
                     (int)script_pid, log_end);
    int t = snprintf(tail, sizeof tail, ",\"paused_at\":%.6f,\"resumed\":%lld", paused_at,
                     resumed_seq);
    t += banner_at_json(tail + t, sizeof tail - t, has_banner_at, banner_start, banner_end);
    t += snprintf(tail + t, sizeof tail - t, "}\n");
    struct iovec iov[3] = {{head, (size_t)h},
                           {pause_body ? pause_body : "null", pause_body ? strlen(pause_body) : 4},
                           {tail, (size_t)t}};
    tell_iov(iov, 3);
}

/* ---- messages --------------------------------------------------------------------------- */

void close_fds(int *fds, int n) {
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

/* Both pipes, so that what the script wrote to stdout before a stderr line is logged before
 * that line. stderr's bytes are counted first and only those are taken, after all of stdout:
 * stdout written before any of them is in its pipe by then. Draining each pipe whole, one
 * after the other, logged the stderr lines the script wrote while stdout was being taken
 * ahead of the rest of a big stdout write (issue 13's test: tests/test_stream_exact.py). */
static void drain_in_order(int out_ready, int err_ready) {
    int err_avail = 0;
    if (err_ready && ioctl(pipe_fd[STDERR_STREAM], FIONREAD, &err_avail) < 0)
        err_avail = 0;
    if (pipe_fd[STDOUT_STREAM] >= 0 && (out_ready || err_avail > 0))
        drain(STDOUT_STREAM, 0);
    if (err_ready)
        drain(STDERR_STREAM, err_avail > 0 ? (size_t)err_avail : 0);
}

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
    drain_in_order(i_pipe[STDOUT_STREAM] >= 0 && fds[i_pipe[STDOUT_STREAM]].revents,
                   i_pipe[STDERR_STREAM] >= 0 && fds[i_pipe[STDERR_STREAM]].revents);
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
    if (argc > 1 && strncmp(argv[1], "--log-limit=", 12) == 0) {
        if (!set_log_limit(argv[1] + 12)) {
            fprintf(stderr, "monitor: bad log limit '%.40s' (bytes, %lld to %lld)\n",
                    argv[1] + 12, MIN_LOG_LIMIT, MAX_LOG_LIMIT);
            return 2;
        }
        argv[1] = argv[0]; /* the rest as if it had not been given */
        argv++;
        argc--;
    }
    /* What a viewer has not taken yet must never be what the limit drops (loop.window_for). */
    window_until = WINDOW < log_limit / 2 ? WINDOW : log_limit / 2;
    if (argc < 7 || strcmp(argv[5], "--") != 0) {
        fprintf(stderr,
                "usage: %s [--log-limit=BYTES] CTL_FD MONITOR_DIR WORKDIR IDENTITY -- ARGV\n",
                argv[0]);
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
