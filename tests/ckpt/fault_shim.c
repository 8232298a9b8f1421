/*
 * Fault shim for the checkpoint save path (tests only): an LD_PRELOAD library
 * that makes one chosen filesystem call fail, with a chosen errno, for paths
 * under one directory only -- so a test can fail a save at any point without
 * root and without touching the test harness's own files.
 *
 * Configuration: a spec string, from the environment variable ZERO_FAULT when
 * the library loads, or at run time through zero_fault_config() (a test driver
 * finds it with dlsym(RTLD_DEFAULT, ...)):
 *
 *   dir=PATH     calls on PATH or below it, and on fds opened there (required)
 *   op=CLASS     open | write | truncate | fsync | rename | close   (default write)
 *                  open:     open open64 openat openat64 __open_2 __open64_2 creat mkdir
 *                  write:    write pwrite pwrite64 writev pwritev
 *                  truncate: ftruncate truncate
 *                  fsync:    fsync fdatasync
 *                  rename:   rename renameat renameat2 (either path under dir)
 *                  close:    close
 *                  read:     pread pread64 (positioned reads: the NVMe store's fallback I/O)
 *   at=K         fail the K-th call of that class (1-based); 0: never (count only)
 *   err=NAME     ENOSPC | EIO | EDQUOT | SHORT (default ENOSPC). SHORT (write
 *                class only): call K writes half of its bytes and every later
 *                write fails with ENOSPC -- a disk that fills in mid-write.
 *   sticky=1     after call K, every later call of the class fails too (a full
 *                disk stays full); default 0 (only call K fails)
 *   stall_ms=N   read class only: call K does not fail but first sleeps N ms
 *                (a stalled device), then reads
 *   rank=R       only in the process whose RANK environment variable is R
 *
 * Every call of every class on matching paths is counted (from the last
 * configuration on), so a test can count the calls of a clean save (at=0) and
 * then fail each of them in turn. ZERO_FAULT_COUNTS=FILE appends
 * "rank=R open=N write=N ..." to FILE when the process exits.
 *
 * Thread-safe (one mutex); fds are tracked up to FAULT_MAX_FD, through
 * dup/dup2/dup3 too.
 */
/* The shim defines both open and open64 (etc.) itself: no LFS renaming. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FAULT_MAX_FD 65536

/* The project builds with -fvisibility=hidden: the interposed calls must be visible. */
#pragma GCC visibility push(default)

/* The control interface (a test finds it with dlsym). */
__attribute__((visibility("default"))) int zero_fault_config(const char *spec);
__attribute__((visibility("default"))) long zero_fault_calls(const char *op);
__attribute__((visibility("default"))) int zero_fault_fired(char *path, size_t size);
/* glibc's checked open (_FORTIFY_SOURCE); not declared by its headers. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);

enum { OP_OPEN, OP_WRITE, OP_TRUNCATE, OP_FSYNC, OP_RENAME, OP_CLOSE, OP_READ, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"open", "write", "truncate", "fsync", "rename", "close", "read"};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char fault_dir[PATH_MAX];
static size_t fault_dir_len;
static int fault_op = OP_WRITE, fault_errno = ENOSPC, fault_short, fault_sticky, fault_enabled;
static long fault_at, fault_stall_ms;
static long calls[OP_COUNT];
static int fired, disk_full;               /* call K happened; SHORT: later writes fail */
static char fired_path[PATH_MAX];          /* the path (or fd's path) of the failed call */
static unsigned char tracked[FAULT_MAX_FD];
static char *fd_path[FAULT_MAX_FD];

#define REAL(name) real_##name
#define DECLARE_REAL(ret, name, ...) static ret (*real_##name)(__VA_ARGS__)
DECLARE_REAL(int, open, const char *, int, ...);
DECLARE_REAL(int, open64, const char *, int, ...);
DECLARE_REAL(int, openat, int, const char *, int, ...);
DECLARE_REAL(int, openat64, int, const char *, int, ...);
DECLARE_REAL(int, __open_2, const char *, int);
DECLARE_REAL(int, __open64_2, const char *, int);
DECLARE_REAL(int, creat, const char *, mode_t);
DECLARE_REAL(int, mkdir, const char *, mode_t);
DECLARE_REAL(ssize_t, write, int, const void *, size_t);
DECLARE_REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
DECLARE_REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
DECLARE_REAL(ssize_t, writev, int, const struct iovec *, int);
DECLARE_REAL(ssize_t, pwritev, int, const struct iovec *, int, off_t);
DECLARE_REAL(ssize_t, pread, int, void *, size_t, off_t);
DECLARE_REAL(ssize_t, pread64, int, void *, size_t, off_t);
DECLARE_REAL(int, ftruncate, int, off_t);
DECLARE_REAL(int, truncate, const char *, off_t);
DECLARE_REAL(int, fsync, int);
DECLARE_REAL(int, fdatasync, int);
DECLARE_REAL(int, rename, const char *, const char *);
DECLARE_REAL(int, renameat, int, const char *, int, const char *);
DECLARE_REAL(int, renameat2, int, const char *, int, const char *, unsigned int);
DECLARE_REAL(int, close, int);
DECLARE_REAL(int, dup, int);
DECLARE_REAL(int, dup2, int, int);
DECLARE_REAL(int, dup3, int, int, int);

#define RESOLVE(name) \
    do { \
        if (real_##name == NULL) \
            *(void **)&real_##name = dlsym(RTLD_NEXT, #name); \
    } while (0)

static int parse_errno(const char *v)
{
    if (strcmp(v, "ENOSPC") == 0)
        return ENOSPC;
    if (strcmp(v, "EIO") == 0)
        return EIO;
    if (strcmp(v, "EDQUOT") == 0)
        return EDQUOT;
    if (strcmp(v, "SHORT") == 0)
        return -1;
    return 0;
}

/* Applies a spec (see the top of the file); returns 0, or -1 when it is malformed. */
__attribute__((visibility("default"))) int zero_fault_config(const char *spec)
{
    char buf[PATH_MAX + 256], *save = NULL;
    const char *rank_env = getenv("RANK");
    int op = OP_WRITE, err = ENOSPC, shortw = 0, sticky = 0, enabled = 1;
    long at = 0, stall_ms = 0;
    char dir[PATH_MAX] = "";

    if (spec == NULL || strlen(spec) >= sizeof(buf))
        return -1;
    strcpy(buf, spec);
    for (char *kv = strtok_r(buf, ",", &save); kv != NULL; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL)
            return -1;
        *eq++ = '\0';
        if (strcmp(kv, "dir") == 0) {
            snprintf(dir, sizeof(dir), "%s", eq);
        } else if (strcmp(kv, "op") == 0) {
            op = -1;
            for (int i = 0; i < OP_COUNT; i++)
                if (strcmp(eq, op_names[i]) == 0)
                    op = i;
            if (op < 0)
                return -1;
        } else if (strcmp(kv, "at") == 0) {
            at = strtol(eq, NULL, 10);
        } else if (strcmp(kv, "stall_ms") == 0) {
            stall_ms = strtol(eq, NULL, 10);
        } else if (strcmp(kv, "err") == 0) {
            if ((err = parse_errno(eq)) == 0)
                return -1;
            if (err < 0) {
                shortw = 1;
                err = ENOSPC;
            }
        } else if (strcmp(kv, "sticky") == 0) {
            sticky = atoi(eq) != 0;
        } else if (strcmp(kv, "rank") == 0) {
            enabled = rank_env != NULL && strcmp(rank_env, eq) == 0;
        } else {
            return -1;
        }
    }
    if (dir[0] == '\0' || (shortw && op != OP_WRITE))
        return -1;
    while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
        dir[strlen(dir) - 1] = '\0';
    pthread_mutex_lock(&lock);
    memcpy(fault_dir, dir, sizeof(dir));
    fault_dir_len = strlen(fault_dir);
    fault_op = op;
    fault_at = enabled ? at : 0;
    fault_errno = err;
    fault_short = shortw;
    fault_sticky = sticky;
    fault_stall_ms = stall_ms;
    fault_enabled = 1;
    memset(calls, 0, sizeof(calls));
    fired = disk_full = 0;
    fired_path[0] = '\0';
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Calls of class @p op counted since the last configuration; -1 for an unknown class. */
__attribute__((visibility("default"))) long zero_fault_calls(const char *op)
{
    long n = -1;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(op, op_names[i]) == 0)
            n = calls[i];
    pthread_mutex_unlock(&lock);
    return n;
}

/* Whether the configured call has failed since the last configuration; its path into @p path. */
__attribute__((visibility("default"))) int zero_fault_fired(char *path, size_t size)
{
    int f;
    pthread_mutex_lock(&lock);
    f = fired;
    if (path != NULL && size > 0)
        snprintf(path, size, "%s", fired_path);
    pthread_mutex_unlock(&lock);
    return f;
}

static int under_dir(const char *path)
{
    char abs[PATH_MAX];
    if (!fault_enabled || path == NULL)
        return 0;
    if (path[0] != '/') {
        if (getcwd(abs, sizeof(abs)) == NULL)
            return 0;
        size_t n = strlen(abs);
        snprintf(abs + n, sizeof(abs) - n, "/%s", path);
        path = abs;
    }
    return strncmp(path, fault_dir, fault_dir_len) == 0 &&
           (path[fault_dir_len] == '/' || path[fault_dir_len] == '\0');
}

/* Counts a call of @p op on a matching path; returns the errno to fail it with
 * (0: let it through, -1: SHORT write). Called with the lock held. */
static int decide(int op, const char *path)
{
    calls[op]++;
    if (op != fault_op || fault_at <= 0)
        return 0;
    if (op == OP_WRITE && disk_full)
        return ENOSPC;
    if (calls[op] == fault_at || (fault_sticky && fired)) {
        if (!fired)
            snprintf(fired_path, sizeof(fired_path), "%s", path ? path : "?");
        fired = 1;
        if (fault_stall_ms > 0 && op == OP_READ)
            return -2;   /* the caller sleeps, then does the call */
        if (fault_short) {
            disk_full = 1;
            return -1;
        }
        return fault_errno;
    }
    return 0;
}

/* stall_ms: a device that answers late (outside the lock: other calls go on) */
static void stall(void)
{
    struct timespec ts = {fault_stall_ms / 1000, (fault_stall_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int decide_path(int op, const char *path)
{
    int e = 0;
    pthread_mutex_lock(&lock);
    if (under_dir(path))
        e = decide(op, path);
    pthread_mutex_unlock(&lock);
    return e;
}

static int decide_fd(int op, int fd)
{
    int e = 0;
    pthread_mutex_lock(&lock);
    if (fd >= 0 && fd < FAULT_MAX_FD && tracked[fd])
        e = decide(op, fd_path[fd]);
    pthread_mutex_unlock(&lock);
    return e;
}

static void track(int fd, int dirfd, const char *path)
{
    char abs[PATH_MAX];
    if (fd < 0 || fd >= FAULT_MAX_FD)
        return;
    pthread_mutex_lock(&lock);
    if (path != NULL && path[0] != '/' && dirfd != AT_FDCWD && dirfd >= 0 && dirfd < FAULT_MAX_FD &&
        tracked[dirfd] && fd_path[dirfd] != NULL) {
        snprintf(abs, sizeof(abs), "%s/%s", fd_path[dirfd], path);
        path = abs;
    }
    free(fd_path[fd]);
    fd_path[fd] = NULL;
    tracked[fd] = 0;
    if (under_dir(path)) {
        tracked[fd] = 1;
        fd_path[fd] = strdup(path);
    }
    pthread_mutex_unlock(&lock);
}

static void untrack(int fd)
{
    if (fd < 0 || fd >= FAULT_MAX_FD)
        return;
    pthread_mutex_lock(&lock);
    tracked[fd] = 0;
    free(fd_path[fd]);
    fd_path[fd] = NULL;
    pthread_mutex_unlock(&lock);
}

#define FAIL_WITH(e, failval) \
    do { \
        errno = (e); \
        return (failval); \
    } while (0)

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

#define OPEN_LIKE(name) \
    int name(const char *path, int flags, ...) \
    { \
        va_list ap; \
        mode_t mode; \
        int e, fd; \
        va_start(ap, flags); \
        mode = mode_arg(flags, ap); \
        va_end(ap); \
        RESOLVE(name); \
        if ((e = decide_path(OP_OPEN, path)) != 0) \
            FAIL_WITH(e, -1); \
        fd = REAL(name)(path, flags, mode); \
        track(fd, AT_FDCWD, path); \
        return fd; \
    }
OPEN_LIKE(open)
OPEN_LIKE(open64)

#define OPENAT_LIKE(name) \
    int name(int dirfd, const char *path, int flags, ...) \
    { \
        va_list ap; \
        mode_t mode; \
        int e, fd; \
        va_start(ap, flags); \
        mode = mode_arg(flags, ap); \
        va_end(ap); \
        RESOLVE(name); \
        if ((dirfd == AT_FDCWD || path[0] == '/') && (e = decide_path(OP_OPEN, path)) != 0) \
            FAIL_WITH(e, -1); \
        fd = REAL(name)(dirfd, path, flags, mode); \
        track(fd, dirfd, path); \
        return fd; \
    }
OPENAT_LIKE(openat)
OPENAT_LIKE(openat64)

#define OPEN2_LIKE(name) \
    int name(const char *path, int flags) \
    { \
        int e, fd; \
        RESOLVE(name); \
        if ((e = decide_path(OP_OPEN, path)) != 0) \
            FAIL_WITH(e, -1); \
        fd = REAL(name)(path, flags); \
        track(fd, AT_FDCWD, path); \
        return fd; \
    }
OPEN2_LIKE(__open_2)
OPEN2_LIKE(__open64_2)

int creat(const char *path, mode_t mode)
{
    int e, fd;
    RESOLVE(creat);
    if ((e = decide_path(OP_OPEN, path)) != 0)
        FAIL_WITH(e, -1);
    fd = REAL(creat)(path, mode);
    track(fd, AT_FDCWD, path);
    return fd;
}

int mkdir(const char *path, mode_t mode)
{
    int e;
    RESOLVE(mkdir);
    if ((e = decide_path(OP_OPEN, path)) != 0)
        FAIL_WITH(e, -1);
    return REAL(mkdir)(path, mode);
}

/* A write of @p count bytes: the errno to fail with, or for SHORT the bytes to write. */
#define WRITE_GATE(fd, count) \
    int e = decide_fd(OP_WRITE, fd); \
    if (e > 0) \
        FAIL_WITH(e, -1); \
    if (e < 0 && (count) <= 1) \
        FAIL_WITH(ENOSPC, -1); \
    size_t allowed = e < 0 ? (count) / 2 : (count)

ssize_t write(int fd, const void *buf, size_t count)
{
    RESOLVE(write);
    WRITE_GATE(fd, count);
    return REAL(write)(fd, buf, allowed);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)
{
    RESOLVE(pwrite);
    WRITE_GATE(fd, count);
    return REAL(pwrite)(fd, buf, allowed, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset)
{
    RESOLVE(pwrite64);
    WRITE_GATE(fd, count);
    return REAL(pwrite64)(fd, buf, allowed, offset);
}

static size_t iov_bytes(const struct iovec *iov, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += iov[i].iov_len;
    return total;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    RESOLVE(writev);
    RESOLVE(write);
    WRITE_GATE(fd, iov_bytes(iov, iovcnt));
    if (e < 0)   /* SHORT: the first half of the first buffer only */
        return REAL(write)(fd, iov[0].iov_base, iov[0].iov_len / 2 > 0 ? iov[0].iov_len / 2 : allowed);
    return REAL(writev)(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    RESOLVE(pwritev);
    RESOLVE(pwrite);
    WRITE_GATE(fd, iov_bytes(iov, iovcnt));
    if (e < 0)
        return REAL(pwrite)(fd, iov[0].iov_base, iov[0].iov_len / 2 > 0 ? iov[0].iov_len / 2 : allowed, offset);
    return REAL(pwritev)(fd, iov, iovcnt, offset);
}

ssize_t pread(int fd, void *buf, size_t count, off_t offset)
{
    int e;
    RESOLVE(pread);
    if ((e = decide_fd(OP_READ, fd)) == -2)
        stall();
    else if (e != 0)
        FAIL_WITH(e, -1);
    return REAL(pread)(fd, buf, count, offset);
}

ssize_t pread64(int fd, void *buf, size_t count, off_t offset)
{
    int e;
    RESOLVE(pread64);
    if ((e = decide_fd(OP_READ, fd)) == -2)
        stall();
    else if (e != 0)
        FAIL_WITH(e, -1);
    return REAL(pread64)(fd, buf, count, offset);
}

int ftruncate(int fd, off_t length)
{
    int e;
    RESOLVE(ftruncate);
    if ((e = decide_fd(OP_TRUNCATE, fd)) != 0)
        FAIL_WITH(e, -1);
    return REAL(ftruncate)(fd, length);
}

int truncate(const char *path, off_t length)
{
    int e;
    RESOLVE(truncate);
    if ((e = decide_path(OP_TRUNCATE, path)) != 0)
        FAIL_WITH(e, -1);
    return REAL(truncate)(path, length);
}

int fsync(int fd)
{
    int e;
    RESOLVE(fsync);
    if ((e = decide_fd(OP_FSYNC, fd)) != 0)
        FAIL_WITH(e, -1);
    return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
    int e;
    RESOLVE(fdatasync);
    if ((e = decide_fd(OP_FSYNC, fd)) != 0)
        FAIL_WITH(e, -1);
    return REAL(fdatasync)(fd);
}

static int decide_rename(const char *from, const char *to)
{
    int e = 0;
    pthread_mutex_lock(&lock);
    if (under_dir(from) || under_dir(to))
        e = decide(OP_RENAME, under_dir(to) ? to : from);
    pthread_mutex_unlock(&lock);
    return e;
}

int rename(const char *from, const char *to)
{
    int e;
    RESOLVE(rename);
    if ((e = decide_rename(from, to)) != 0)
        FAIL_WITH(e, -1);
    return REAL(rename)(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    int e;
    RESOLVE(renameat);
    if (fromfd == AT_FDCWD && tofd == AT_FDCWD && (e = decide_rename(from, to)) != 0)
        FAIL_WITH(e, -1);
    return REAL(renameat)(fromfd, from, tofd, to);
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags)
{
    int e;
    RESOLVE(renameat2);
    if (fromfd == AT_FDCWD && tofd == AT_FDCWD && (e = decide_rename(from, to)) != 0)
        FAIL_WITH(e, -1);
    return REAL(renameat2)(fromfd, from, tofd, to, flags);
}

int close(int fd)
{
    int e = decide_fd(OP_CLOSE, fd);
    RESOLVE(close);
    untrack(fd);
    /* A failed close still closes the descriptor (Linux semantics). */
    if (e != 0) {
        REAL(close)(fd);
        FAIL_WITH(e, -1);
    }
    return REAL(close)(fd);
}

/* A duplicated descriptor refers to what the old one did (tracked or not). */
static void track_dup(int oldfd, int newfd)
{
    if (newfd < 0 || newfd >= FAULT_MAX_FD || oldfd < 0 || oldfd >= FAULT_MAX_FD || oldfd == newfd)
        return;
    pthread_mutex_lock(&lock);
    free(fd_path[newfd]);
    fd_path[newfd] = NULL;
    tracked[newfd] = tracked[oldfd];
    if (tracked[oldfd] && fd_path[oldfd] != NULL)
        fd_path[newfd] = strdup(fd_path[oldfd]);
    pthread_mutex_unlock(&lock);
}

int dup(int oldfd)
{
    int fd;
    RESOLVE(dup);
    fd = REAL(dup)(oldfd);
    track_dup(oldfd, fd);
    return fd;
}

int dup2(int oldfd, int newfd)
{
    int fd;
    RESOLVE(dup2);
    fd = REAL(dup2)(oldfd, newfd);
    track_dup(oldfd, fd);
    return fd;
}

int dup3(int oldfd, int newfd, int flags)
{
    int fd;
    RESOLVE(dup3);
    fd = REAL(dup3)(oldfd, newfd, flags);
    track_dup(oldfd, fd);
    return fd;
}

__attribute__((constructor)) static void fault_init(void)
{
    const char *spec = getenv("ZERO_FAULT");
    if (spec != NULL && zero_fault_config(spec) != 0) {
        static const char msg[] = "fault_shim: malformed ZERO_FAULT spec (see tests/ckpt/fault_shim.c)\n";
        RESOLVE(write);
        if (REAL(write)(2, msg, sizeof(msg) - 1) < 0)
            return;
    }
}

__attribute__((destructor)) static void fault_fini(void)
{
    const char *path = getenv("ZERO_FAULT_COUNTS");
    char line[256];
    int fd, n;
    if (path == NULL || !fault_enabled)
        return;
    RESOLVE(open);
    RESOLVE(write);
    RESOLVE(close);
    n = snprintf(line, sizeof(line), "rank=%s", getenv("RANK") ? getenv("RANK") : "-");
    for (int i = 0; i < OP_COUNT && n > 0 && (size_t)n < sizeof(line); i++)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " %s=%ld", op_names[i], calls[i]);
    if (n > 0 && (size_t)n < sizeof(line) - 1)
        line[n++] = '\n';
    fd = REAL(open)(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd >= 0) {
        if (REAL(write)(fd, line, (size_t)n) < 0)
            n = 0;
        REAL(close)(fd);
    }
}
