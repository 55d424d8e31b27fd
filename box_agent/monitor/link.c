/* The script's link (lager/protocol/link.py): its pause and resume messages, the banners they
 * carry, which we place on the run's stderr ourselves, and what the agent relays to it. */
#include "monitor.h"

/* the script's current pause, verbatim, for a new agent */
char *pause_body = NULL;
static char *pause_seq = NULL; /* the raw JSON of its "seq", or NULL when it has none */
double paused_at = 0.0;
/* where its banner lies in the run's stderr, [start, end) */
int has_banner_at = 0;
long long banner_start = 0, banner_end = 0;
long long resumed_seq = 0;

/* A resume relayed or a resumed message: the highest number stays (MonitorHello.resumed). */
static void note_resumed(const char *body, const char *body_end) {
    const char *vs, *ve;
    if (json_field(body, body_end, "seq", &vs, &ve)) {
        long long seq = strtoll(vs, NULL, 10); /* a J_INT, checked by fields_ok */
        if (seq > resumed_seq)
            resumed_seq = seq;
    }
}

static char linkbuf[MSG_MAX + 1];
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

/* `,"banner_at":[start,end]` or `,"banner_at":null` */
int banner_at_json(char *out, size_t size, int has, long long start, long long end) {
    return has ? snprintf(out, size, ",\"banner_at\":[%lld,%lld]", start, end)
               : snprintf(out, size, ",\"banner_at\":null");
}

void clear_pause(void) {
    free(pause_body);
    free(pause_seq);
    pause_body = pause_seq = NULL;
    has_banner_at = 0;
}

void to_script(const char *body, const char *body_end, int *fds, int nfds) {
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
    if (spec == RESUME_FIELDS)
        note_resumed(body, body_end);
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

/* Put the script's banner on its stderr, after everything it wrote before sending it
 * (already in its pipes: a pipe write is done when it returns). Bounded: a thread that never
 * stops printing cannot hold us (loop.py's _put_banner). Returns 0 when a full disk lost it. */
static int put_banner(const char *vs, const char *ve, long long *start, long long *end) {
    for (int s = STDOUT_STREAM; s <= STDERR_STREAM; s++)
        for (int i = 0; i < 4 && pipe_fd[s] >= 0; i++) {
            int avail = 0;
            if (ioctl(pipe_fd[s], FIONREAD, &avail) < 0 || avail <= 0)
                break;
            drain(s, 0);
        }
    size_t len = json_string(vs, ve, banner_text);
    *start = stream_total(STDERR_STREAM);
    *end = *start + (long long)len;
    return log_append(STDERR_STREAM, banner_text, len);
}

void from_script(short revents) {
    ssize_t got = recv(script_link, linkbuf, MSG_MAX, 0);
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
    if (!utf8_valid(linkbuf, linkbuf + got) || !json_object(linkbuf, linkbuf + got, &p, &e))
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
    } else {
        note_resumed(p, e);
    }
    if (!is_pause && pause_seq && (size_t)(seq_e - seq_s) == strlen(pause_seq) &&
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

