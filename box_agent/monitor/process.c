/* The script under its monitor: start it, signal it and its tree, reap, sweep. */
#include "monitor.h"

pid_t script_pid = -1;
int script_status = -1;
long long sweep_at = -1;
static long long next_scan = 0;


struct proc {
    pid_t pid, ppid;
};

/* Whether we have a child, live or not yet reaped. We are a subreaper: whatever the script
 * left behind is our child as soon as its parent dies, so with none, nothing is below us. */
static int has_children(void) {
    siginfo_t info = {0};
    return waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 || errno != ECHILD;
}

/* Every live process below root, through /proc (setsid does not hide one). Returns a malloc'd
 * array (caller frees) and its length in *count. */
static pid_t *descendants(pid_t root, int *count) {
    struct proc *all = NULL;
    int n = 0, cap = 0;
    if (root == getpid() && !has_children()) {
        /* The common end of a run: the scan of every process on the box (milliseconds, twice
         * per run) would find nothing. */
        *count = 0;
        return malloc(sizeof(pid_t));
    }
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

void reap(void) {
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

void signal_script(int sig) {
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

void tick(void) {
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

int swept(void) {
    if (script_status < 0 || sweep_at >= 0)
        return 0;
    int n;
    free(descendants(getpid(), &n));
    return n == 0;
}


/* The monitor outlives terminal hang-ups and Ctrl-C; the agent's requests stop a run. */
const int IGNORED[4] = {SIGINT, SIGHUP, SIGPIPE, SIGTERM};

int parse_identity(const char *text, struct identity *id) {
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
int start_script(char **argv, const char *workdir, const struct identity *id,
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