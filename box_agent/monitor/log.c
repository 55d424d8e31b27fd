/* The output log: box_agent/runlog.py's format, written by splice(2) from the pipes.
 *
 * Measured with bench/monitor_cpu.py (200 MiB in 1 MiB writes; nearly all of it is kernel):
 * - splice, not read(2) into a buffer and pwritev(2): that copies every byte twice, and cost
 *   more here at every read size tried (64 KiB to 1 MiB). A smaller pipe (64 or 256 KiB) only
 *   adds wakeups, and cost more too.
 * - The dropped segment's file reused for the next segment (renamed to its name, written over
 *   from its start): its blocks are allocated and its pages mostly cached, so splice copies
 *   into them instead of allocating both: 72 -> 57 ms a run (11 rounds), 97 -> 77 ms (15
 *   rounds, a busier machine), about -21%, less CPU in every round.
 *   Not truncated first: that gives back the blocks and the pages, and the gain with them
 *   (68 ms). Its old bytes past the new records stay until the segment closes (then cut):
 *   - only a file no one has open is reused: a write lease (F_SETLEASE), which the kernel
 *     refuses while any other descriptor of it exists, held across the rename and still
 *     unbroken after it; otherwise a new file, as before (reuse_file);
 *   - a reader that looked the old name up before the rename and opens the file after it
 *     finds the name no longer leads there, and takes the segment as dropped (runlog's
 *     _open_segment); readers read up to the end they are told, never by a file's size;
 *   - each record's header carries the segment's mark (runlog.segment_mark) and is written
 *     after its payload, so a log end taken from disk (a monitor gone without its status)
 *     stops where this segment's records do, not in the old ones after them.
 *   tests/test_monitor_log_space.py: readers holding and opening reused segments, the end. */
#include "monitor.h"
#include <linux/magic.h>
#include <sys/vfs.h>

long long log_end = 0;
long long log_limit = LOG_LIMIT;
static long long segment_bytes = SEGMENT_BYTES;
int pipe_fd[3] = {-1, -1, -1};
int open_pipes = 0;
static long long seg_start = 0, totals[3] = {0, 0, 0};
static int seg_fd = -1;
/* The current segment's mark, in each of its records' headers (runlog.segment_mark): a
 * reused file's old records carry the mark of the segment they were, so a log end computed
 * from the file (a monitor gone without its status) stops where the new records do. */
static unsigned long seg_mark = 1;
/* The size the current segment's file had before it was reused (0: a new file): its bytes
 * past what the segment holds are an older segment's, given back when the segment closes. */
static long long stale = 0;
static int no_splice = 0;

/* A segment's blocks are reserved ahead of its writes (fallocate, KEEP_SIZE) on ext4: its
 * delayed allocation otherwise reserves and maps them a 4 KiB block at a time as the pipe's
 * pages are copied in (about a tenth of the monitor's CPU; bench/monitor_cpu.py). KEEP_SIZE:
 * a segment's size stays what it holds, so readers see nothing new. The reserve doubles as
 * the segment fills, up to its full size, so a quiet run (a paused one) holds little disk it
 * does not use, and a closing segment gives back what it did not fill. A reused file has its
 * blocks up to its old size: the reserve starts past them (most often, none is needed). Not
 * on tmpfs and the like, where a reserve would be memory (issue 11), nor where it was not
 * measured. */
#define RESERVE_FIRST (256LL << 10)
static int reserving = -1; /* 1: the log's filesystem is ext4; -1: not known yet */
static long long reserved = 0; /* bytes of the current segment reserved, from its start */


/* The run's limit from `--log-limit=BYTES`; 0 when it is not a number in range. Segments are
 * an eighth of it, as runlog.segment_bytes has them. */
int set_log_limit(const char *text) {
    char *end;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (!isdigit((unsigned char)*text) || *end || errno || value < MIN_LOG_LIMIT ||
        value > MAX_LOG_LIMIT)
        return 0;
    log_limit = value;
    segment_bytes = value / 8 < SEGMENT_BYTES ? value / 8 : SEGMENT_BYTES;
    if (segment_bytes < MIN_SEGMENT)
        segment_bytes = MIN_SEGMENT;
    return 1;
}

/* runlog.segment_mark: 24 bits of the start's Fibonacci hash, never 0 (0 is a log written
 * before marks, whose segments were never reused). */
static unsigned long segment_mark(long long start) {
    unsigned long mark = (unsigned long)(((unsigned long long)start * 0x9E3779B97F4A7C15ULL) >> 40);
    return mark ? mark : 1;
}

struct segment {
    long long start;
    char name[80];
};

static int by_start(const void *a, const void *b) {
    long long x = ((const struct segment *)a)->start, y = ((const struct segment *)b)->start;
    return x < y ? -1 : x > y;
}

/* Blocks for the current segment up to `upto` bytes from its start, and as many again. */
static void reserve_for(long long upto) {
    if (reserving == 0 || seg_fd < 0 || upto <= reserved || reserved >= segment_bytes)
        return;
    if (reserving < 0) {
        struct statfs fs;
        reserving = fstatfs(seg_fd, &fs) == 0 && fs.f_type == EXT4_SUPER_MAGIC;
        if (!reserving)
            return;
    }
    long long want = upto * 2 < RESERVE_FIRST ? RESERVE_FIRST : upto * 2;
    if (want > segment_bytes)
        want = segment_bytes;
    /* A failure (a full disk) leaves these blocks to delayed allocation, as without it; the
     * next doubling tries again. */
    if (fallocate(seg_fd, FALLOC_FL_KEEP_SIZE, reserved, want - reserved) < 0 &&
        errno == EOPNOTSUPP)
        reserving = 0;
    reserved = want;
}

/* Close the segment being written, first giving back the blocks reserved past what it holds
 * (a segment that filled used them all). */
static void close_segment(void) {
    if (seg_fd < 0)
        return;
    long long held = log_end - seg_start;
    if ((reserved > held || stale > held) && ftruncate(seg_fd, held) < 0) {
        /* the blocks stay reserved until the run's dir goes; its records are whole */
    }
    close(seg_fd);
    seg_fd = -1;
    reserved = 0;
    stale = 0;
}

/* A lease break (a reader opening the file we hold a lease on) is told with SIGIO, whose
 * default is to end the process: it only needs to not kill us. A handler, not SIG_IGN, so the
 * script (exec resets handlers, not ignores) starts with SIGIO as it would anyway. */
static void on_lease_break(int sig) {
    (void)sig;
}

/* The file of segment `name` (one the limit drops now), reopened for writing as the segment
 * `to`, or -1 when it may not be. Only when no one has it open: a write lease (F_SETLEASE) is
 * refused while any other descriptor of it exists, so a reader that holds it keeps reading its
 * own bytes; and while we hold the lease, an open of it waits. The rename happens under the
 * lease, so a reader that looked the old name up before and opens it after holds the renamed
 * file: runlog.LogReader sees that (the name no longer leads to what it opened) and takes it
 * as dropped. No lease (another filesystem, leases off): no reuse, a new file as before. */
static int reuse_file(const char *name, const char *to) {
    static int handling = 0;
    if (!handling) {
        struct sigaction sa = {0};
        sa.sa_handler = on_lease_break;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGIO, &sa, NULL);
        handling = 1;
    }
    int fd = open(name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
        close(fd);
        return -1;
    }
    int renamed = rename(name, to) == 0;
    /* Still ours, unbroken: no one opened it since the lease was given (an open waits for
     * us). Broken (an open under way, or the lease taken back after lease-break-time, were
     * we stopped that long): someone may hold it, so it is not written, only dropped. */
    int kept = fcntl(fd, F_GETLEASE) == F_WRLCK;
    if (fcntl(fd, F_SETLEASE, F_UNLCK) < 0) {
        /* gone already: the kernel took it back */
    }
    if (!renamed || !kept) {
        if (renamed)
            unlink(to);
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, 0); /* O_NONBLOCK was only for the open (a lease break never waits) */
    stale = st.st_size;
    return fd;
}

/* The segments the limit drops now, but one: its name is put in `reuse` (empty when none). */
static void drop_old_segments(char *reuse, size_t size) {
    struct segment *found = NULL;
    int n = 0, cap = 0;
    reuse[0] = 0;
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
    /* A segment goes once those after it hold the limit (runlog.droppable). The newest of
     * them is kept for reuse (its pages are the likelier to be cached). */
    int last = -1;
    for (int i = 0; i + 1 < n && log_end - found[i + 1].start >= log_limit; i++)
        last = i;
    for (int i = 0; i < last; i++)
        unlink(found[i].name);
    if (last >= 0 && strlen(found[last].name) < size)
        strcpy(reuse, found[last].name);
    else if (last >= 0)
        unlink(found[last].name);
    free(found);
}

static void rotate(void) {
    close_segment();
    seg_start = log_end;
    seg_mark = segment_mark(seg_start);
    char name[96], old[80];
    snprintf(name, sizeof name, "log.%llx.%llx.%llx", log_end, totals[STDOUT_STREAM],
             totals[STDERR_STREAM]);
    drop_old_segments(old, sizeof old);
    stale = 0;
    seg_fd = old[0] ? reuse_file(old, name) : -1;
    if (seg_fd >= 0) {
        /* Its blocks are there up to its old size: the reserve starts past them. */
        reserved = stale;
        return;
    }
    if (old[0])
        unlink(old);
    /* Not O_APPEND: splice(2) refuses such a file. We are its only writer and keep the
     * offset ourselves. */
    seg_fd = open(name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
}

static void put_header(unsigned char *h, int stream, size_t length) {
    h[0] = (unsigned char)stream;
    h[1] = (unsigned char)(seg_mark >> 16);
    h[2] = (unsigned char)(seg_mark >> 8);
    h[3] = (unsigned char)seg_mark;
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

/* One record of these bytes, written at the log's end; 0 when a full disk lost it. The
 * payload goes first and the header after it (here and in drain): in a reused file, a record
 * cut short (the monitor killed mid-write) then has no header of this segment's, and a log end
 * computed from the file stops before it, where a header first would vouch for old bytes. */
static int append_bytes(int stream, const char *data, size_t len) {
    unsigned char head[8];
    if (seg_fd < 0 || log_end - seg_start >= segment_bytes)
        rotate();
    put_header(head, stream, len);
    long long pos = log_end - seg_start;
    reserve_for(pos + 8 + (long long)len);
    if (seg_fd < 0 || pwrite(seg_fd, data, len, pos + 8) != (ssize_t)len ||
        pwrite(seg_fd, head, 8, pos) != 8) {
        if (seg_fd >= 0 && !stale && ftruncate(seg_fd, pos) < 0)
            return 0;
        return 0; /* lost to a full disk; the next may fit */
    }
    log_end += 8 + len;
    totals[stream] += len;
    return 1;
}

int log_append(int stream, const char *data, size_t len) {
    return append_bytes(stream, data, len);
}

long long stream_total(int stream) {
    return totals[stream];
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

/* Everything the pipe holds (at most `most` bytes, unless 0), as one record. Returns 0 at the
 * pipe's end. */
int drain(int stream, size_t most) {
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
    if (most > 0 && n > most)
        n = most;
    if (no_splice) {
        append_by_read(stream, fd, n);
        return 1;
    }
    if (seg_fd < 0 || log_end - seg_start >= segment_bytes)
        rotate();
    long long pos = log_end - seg_start;
    reserve_for(pos + 8 + (long long)n);
    unsigned char head[8];
    if (seg_fd < 0) {
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
        if (!stale && ftruncate(seg_fd, pos) < 0)
            why = errno;
        if (why == EINVAL || why == ENOSYS) {
            no_splice = 1;
            append_by_read(stream, fd, n);
        } else {
            discard(fd, n);
        }
        return 1;
    }
    /* The header last, saying what the record holds (what did not move stays in the pipe). */
    put_header(head, stream, moved);
    if (pwrite(seg_fd, head, 8, pos) != 8) {
        if (!stale && ftruncate(seg_fd, pos) < 0) {
            /* the next record starts over this one all the same */
        }
        return 1;
    }
    log_end += 8 + moved;
    totals[stream] += moved;
    return 1;
}

void write_status(void) {
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

void log_close(void) {
    close_segment();
}
