/* What the monitor's parts (monitor.c, link.c, json.c, process.c, log.c) share. */
#ifndef LAGER_MONITOR_H
#define LAGER_MONITOR_H
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
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
#define SEGMENT_BYTES (8LL << 20)  /* runlog.py: the most a segment holds */
#define MIN_SEGMENT (64LL << 10)   /* runlog._MIN_SEGMENT */
#define LOG_LIMIT (64LL << 20)     /* runlog.DEFAULT_LIMIT: without --log-limit */
#define MIN_LOG_LIMIT (1LL << 20)  /* runlog.MIN_LIMIT */
#define MAX_LOG_LIMIT (1LL << 40)  /* runlog.MAX_LIMIT */
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


/* monitor.c: the agent and the loop */
extern int agent;
extern int script_link;
long long now_ms(void);
double wall_time(void);
void set_cloexec(int fd, int on);
void tell_iov(struct iovec *iov, int n);
void tell(const char *fmt, ...);
void close_fds(int *fds, int n);

/* link.c: the script's link, its pause and banners */
extern char *pause_body;
extern double paused_at;
extern int has_banner_at;
extern long long banner_start, banner_end;
extern long long resumed_seq; /* the highest pause number resumed, for a new agent's hello */
int banner_at_json(char *out, size_t size, int has, long long start, long long end);
void clear_pause(void);
void to_script(const char *body, const char *body_end, int *fds, int nfds);
void from_script(short revents);

/* json.c */
int json_object(const char *p, const char *e, const char **vs, const char **ve);
int json_field(const char *p, const char *e, const char *key, const char **vs,
               const char **ve);
int field_is(const char *p, const char *e, const char *key, const char *raw);
int field_ll(const char *p, const char *e, const char *key, long long *out);
char *dup_span(const char *s, const char *e);
int utf8_valid(const char *p, const char *e);
size_t json_string(const char *vs, const char *ve, char *out);
enum json_type { J_NULL = 1, J_STR = 2, J_INT = 4, J_NUM = 8, J_BOOL = 16, J_OBJ = 32,
                 J_LIST = 64 };
/* One field of a message as lager/protocol/link.py types it. */
struct field_spec {
    const char *key;
    int type; /* json_type bits */
    int required;
};
int fields_ok(const char *p, const char *e, const struct field_spec *spec);
void json_quote(char *out, const char *text);

/* process.c: the script and what it leaves behind */
struct identity {
    int set;
    uid_t uid;
    gid_t gid;
    gid_t groups[64];
    int ngroups;
};
extern pid_t script_pid;
extern int script_status; /* N, or 128+N for signal N; -1 while it runs */
extern long long sweep_at;
extern const int IGNORED[4];
void reap(void);
void signal_script(int sig);
void tick(void);
int swept(void);
int parse_identity(const char *text, struct identity *id);
int start_script(char **argv, const char *workdir, const struct identity *id, int out_w,
                 int err_w, int pass_a, int pass_b);

/* log.c: the output log, box_agent/runlog.py's format */
extern long long log_end;
extern long long log_limit; /* this run's (--log-limit), kept for its whole life */
int set_log_limit(const char *text);
extern int pipe_fd[3]; /* indexed by stream */
extern int open_pipes;
int drain(int stream, size_t most);
int log_append(int stream, const char *data, size_t len);
long long stream_total(int stream);
void log_close(void);
void write_status(void);

#endif
