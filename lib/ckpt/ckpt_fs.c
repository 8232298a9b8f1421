/*
 * Tags, `latest`, and the filesystem half of the commit protocol
 * (docs/checkpoint-format.md, "Commit protocol").
 */
#define ZERO_LOG_MODULE "ckpt"
#include "ckpt/ckpt_internal.h"

#include "util/alloc.h"
#include "util/checks_hdf5.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>


void ckpt_crash_point(const char *phase)
{
    const char *at = getenv("ZERO_CKPT_TEST_CRASH_AT");
    if (at != NULL && strcmp(at, phase) == 0)
        _exit(CKPT_CRASH_EXIT_CODE);
}

__attribute__((format(printf, 4, 0)))
static void ckpt_vfail(ckpt_err_t *err, zero_status_t status, const char *suffix, const char *fmt, va_list ap)
{
    char buf[CKPT_ERR_MSG];
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    if (suffix != NULL && n >= 0 && (size_t)n < sizeof(buf))
        snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", suffix);
    ZERO_LOG_ERROR("%s", buf);
    if (err != NULL && err->status == ZERO_OK) {
        err->status = status;
        snprintf(err->msg, sizeof(err->msg), "%s", buf);
    }
}

void ckpt_fail(ckpt_err_t *err, zero_status_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ckpt_vfail(err, status, NULL, fmt, ap);
    va_end(ap);
}

void ckpt_fail_h5(ckpt_err_t *err, zero_status_t status, const char *fmt, ...)
{
    char h5[384];
    va_list ap;
    zero_hdf5_last_error(h5, sizeof(h5));
    va_start(ap, fmt);
    ckpt_vfail(err, status, h5, fmt, ap);
    va_end(ap);
}

void ckpt_fail_errno(ckpt_err_t *err, const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    va_start(ap, fmt);
    ckpt_vfail(err, zero_status_from_errno(e), strerror(e), fmt, ap);
    va_end(ap);
}

zero_status_t zero_ckpt_tag_check(const char *tag, char *why, size_t why_size)
{
    const char *reason = NULL;
    size_t len;
    char dummy[1];

    if (why == NULL) {
        why = dummy;
        why_size = sizeof(dummy);
    }
    if (tag == NULL) {
        reason = "tag is NULL";
    } else if ((len = strnlen(tag, ZERO_CKPT_TAG_MAX + 1)) == 0) {
        reason = "tag is empty";
    } else if (len > ZERO_CKPT_TAG_MAX) {
        reason = "tag is longer than " ZERO_CKPT_STRINGIFY(ZERO_CKPT_TAG_MAX) " bytes";
    } else if (strcmp(tag, ".") == 0 || strcmp(tag, "..") == 0) {
        reason = "tag may not be '.' or '..'";
    } else if (strncmp(tag, CKPT_TMP_PREFIX, strlen(CKPT_TMP_PREFIX)) == 0) {
        reason = "tags starting with '" CKPT_TMP_PREFIX "' are reserved for saves in progress";
    } else if (strcmp(tag, CKPT_LATEST) == 0) {
        reason = "'latest' names the pointer file";
    } else {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)tag[i];
            if (c == '/') {
                reason = "tag contains '/'";
                break;
            }
            if (c < 0x20 || c == 0x7f) {
                reason = "tag contains a control character";
                break;
            }
        }
    }
    if (reason == NULL)
        return ZERO_OK;
    snprintf(why, why_size, "%s", reason);
    return ZERO_ERR_INVALID_ARG;
}

char *ckpt_path_join(const char *a, const char *b)
{
    return zero_asprintf("%s/%s", a, b);
}

void ckpt_rank_file_name(int rank, char *buf, size_t size)
{
    snprintf(buf, size, "zero_rank_%05d.h5", rank);
}

zero_status_t ckpt_mkdir_p(const char *path, ckpt_err_t *err)
{
    char *copy = zero_strdup(path);
    zero_status_t status = ZERO_OK;
    if (copy == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory for path %s", path);
        return ZERO_ERR_NO_MEMORY;
    }
    for (char *p = copy + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(copy, 0777) != 0 && errno != EEXIST) {
                ckpt_fail_errno(err, "cannot create directory %s", copy);
                status = err->status;
                break;
            }
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    zero_free(copy);
    return status;
}

zero_status_t ckpt_fsync_path(const char *path, int is_dir, ckpt_err_t *err)
{
    int fd = open(path, (is_dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ckpt_fail_errno(err, "cannot open %s to sync it", path);
        return err->status;
    }
    if (fsync(fd) != 0) {
        ckpt_fail_errno(err, "fsync %s", path);
        close(fd);
        return err->status;
    }
    close(fd);
    return ZERO_OK;
}

zero_status_t ckpt_remove_tree(const char *path, ckpt_err_t *err)
{
    DIR *d = opendir(path);
    struct dirent *de;
    zero_status_t status = ZERO_OK;

    if (d == NULL) {
        if (errno == ENOENT)
            return ZERO_OK;
        ckpt_fail_errno(err, "cannot open directory %s to remove it", path);
        return err->status;
    }
    while ((de = readdir(d)) != NULL) {
        char *child;
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        child = ckpt_path_join(path, de->d_name);
        if (child == NULL) {
            ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory removing %s", path);
            status = ZERO_ERR_NO_MEMORY;
            break;
        }
        if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
            status = ckpt_remove_tree(child, err);
        } else if (unlink(child) != 0 && errno != ENOENT) {
            ckpt_fail_errno(err, "cannot remove %s", child);
            status = err->status;
        }
        zero_free(child);
        if (status != ZERO_OK)
            break;
    }
    closedir(d);
    if (status == ZERO_OK && rmdir(path) != 0 && errno != ENOENT) {
        ckpt_fail_errno(err, "cannot remove directory %s", path);
        status = err->status;
    }
    return status;
}

zero_status_t ckpt_write_file(const char *path, const char *data, size_t len, ckpt_err_t *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    size_t done = 0;
    if (fd < 0) {
        ckpt_fail_errno(err, "cannot create %s", path);
        return err->status;
    }
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ckpt_fail_errno(err, "write %s", path);
            goto fail;
        }
        done += (size_t)n;
    }
    if (fsync(fd) != 0) {
        ckpt_fail_errno(err, "fsync %s", path);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        ckpt_fail_errno(err, "close %s", path);
        goto fail;
    }
    return ZERO_OK;
fail:
    if (fd >= 0)
        close(fd);
    return err->status;
}

static const char *file_kind(mode_t mode)
{
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO" : S_ISSOCK(mode) ? "a socket" :
           S_ISCHR(mode) ? "a character device" : S_ISBLK(mode) ? "a block device" : "not a plain file";
}

zero_status_t ckpt_read_file(const char *path, char **data_p, size_t *len_p, ckpt_err_t *err)
{
    /* O_NONBLOCK: a FIFO or device put in a file's place must not hang the
     * load in open(); the type check below refuses it (no effect on files) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    char *buf = NULL;
    size_t done = 0;

    if (fd < 0) {
        ckpt_fail_errno(err, "cannot open %s", path);
        return err->status;
    }
    if (fstat(fd, &st) != 0) {
        ckpt_fail_errno(err, "stat %s", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s is not a regular file (%s)", path, file_kind(st.st_mode));
        goto fail;
    }
    buf = zero_malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory reading %s (%lld bytes)", path, (long long)st.st_size);
        goto fail;
    }
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ckpt_fail_errno(err, "read %s", path);
            goto fail;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    buf[done] = '\0';
    close(fd);
    *data_p = buf;
    if (len_p != NULL)
        *len_p = done;
    return ZERO_OK;
fail:
    zero_free(buf);
    close(fd);
    return err->status;
}

void ckpt_remove_stale_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, CKPT_TMP_PREFIX, strlen(CKPT_TMP_PREFIX)) == 0) {
            char *p = ckpt_path_join(dir, de->d_name);
            ckpt_err_t ignore = {0};
            struct stat st;
            if (p != NULL && lstat(p, &st) == 0) {
                ZERO_LOG_INFO("removing %s left by an interrupted save", p);
                if (S_ISDIR(st.st_mode))
                    ckpt_remove_tree(p, &ignore);
                else
                    unlink(p);
            }
            zero_free(p);
        }
    }
    closedir(d);
}

zero_status_t ckpt_make_tmp(const char *dir, const char *tag, uint64_t need_bytes, char *tmp_name,
                            size_t tmp_name_size, ckpt_err_t *err)
{
    struct timespec ts;
    struct statvfs vfs;
    char *path;
    zero_status_t status;

    if ((status = ckpt_mkdir_p(dir, err)) != ZERO_OK)
        return status;
    ckpt_remove_stale_tmp(dir);
    /* Refuse up front rather than run out of space inside HDF5 (whose clean-up
     * after a failed flush is fragile): the estimate covers every rank's file. */
    if (need_bytes > 0 && statvfs(dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < need_bytes) {
        ckpt_fail(err, ZERO_ERR_IO, "cannot save a checkpoint in %s: No space left on device (the checkpoint needs "
                  "about %llu bytes, %llu are free)", dir, (unsigned long long)need_bytes,
                  (unsigned long long)vfs.f_bavail * vfs.f_frsize);
        return ZERO_ERR_IO;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(tmp_name, tmp_name_size, CKPT_TMP_PREFIX "%s-%lx%lx", tag, (unsigned long)getpid(),
             (unsigned long)ts.tv_nsec ^ ((unsigned long)ts.tv_sec << 20));
    path = ckpt_path_join(dir, tmp_name);
    if (path == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory for a path in %s", dir);
        return ZERO_ERR_NO_MEMORY;
    }
    if (mkdir(path, 0777) != 0) {
        ckpt_fail_errno(err, "cannot create the temporary checkpoint directory %s", path);
        status = err->status;
    }
    zero_free(path);
    return status;
}

/* As ckpt_write_latest; *@p replaced_p says whether latest was replaced (a
 * failure can come after the rename, at the directory's fsync). */
static zero_status_t ckpt_write_latest_ex(const char *dir, const char *tag, int *replaced_p, ckpt_err_t *err)
{
    char *tmp = zero_asprintf("%s/" CKPT_TMP_PREFIX "latest-%lx", dir, (unsigned long)getpid());
    char *dst = ckpt_path_join(dir, CKPT_LATEST);
    char hex[CKPT_SHA256_HEX + 1], *line;
    zero_status_t status = ZERO_OK;

    ckpt_sha256_hex(tag, strlen(tag), hex);
    line = zero_asprintf("%s\n" CKPT_LATEST_DIGEST_PREFIX "%s\n", tag, hex);   /* see ckpt_parse_latest */

    if (tmp == NULL || dst == NULL || line == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory writing %s/latest", dir);
        status = ZERO_ERR_NO_MEMORY;
        goto out;
    }
    if ((status = ckpt_write_file(tmp, line, strlen(line), err)) != ZERO_OK) {
        unlink(tmp);
        goto out;
    }
    ckpt_crash_point("latest_tmp_written");
    if (rename(tmp, dst) != 0) {
        ckpt_fail_errno(err, "cannot rename %s to %s", tmp, dst);
        status = err->status;
        unlink(tmp);
        goto out;
    }
    *replaced_p = 1;
    ckpt_crash_point("latest_renamed");
    status = ckpt_fsync_path(dir, 1, err);
out:
    zero_free(tmp);
    zero_free(dst);
    zero_free(line);
    return status;
}

zero_status_t ckpt_write_latest(const char *dir, const char *tag, ckpt_err_t *err)
{
    int replaced = 0;
    return ckpt_write_latest_ex(dir, tag, &replaced, err);
}

/* Whether @p s is nothing but whitespace. */
static int blank(const char *s)
{
    return s[strspn(s, " \t\r\n")] == '\0';
}

/*
 * <dir>/latest holds the tag on its first line and, since format version 2,
 * "sha256:<hex of the tag>" on its second, so that a damaged byte that turns
 * the tag into another existing tag is refused, not loaded. A file with the
 * tag alone (older libzero, or written by hand) is accepted: trailing
 * whitespace is dropped. @p data is modified (the tag is cut out in place).
 */
static zero_status_t parse_latest(const char *path, char *data, size_t len, char **tag_p, ckpt_err_t *err)
{
    char why[128], *nl = strchr(data, '\n');

    if (strlen(data) != len) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s does not hold a valid tag (contains a NUL byte)", path);
        return ZERO_ERR_CHECKPOINT;
    }
    if (nl != NULL && !blank(nl + 1)) {
        const char *line2 = nl + 1;
        size_t plen = strlen(CKPT_LATEST_DIGEST_PREFIX);
        char hex[CKPT_SHA256_HEX + 1];
        *nl = '\0';
        if (strncmp(line2, CKPT_LATEST_DIGEST_PREFIX, plen) != 0 ||
            strspn(line2 + plen, "0123456789abcdef") != CKPT_SHA256_HEX ||
            strcmp(line2 + plen + CKPT_SHA256_HEX, "\n") != 0) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s is damaged: its second line is not '" CKPT_LATEST_DIGEST_PREFIX
                      "<SHA-256 of the tag>'", path);
            return ZERO_ERR_CHECKPOINT;
        }
        ckpt_sha256_hex(data, strlen(data), hex);
        if (memcmp(hex, line2 + plen, CKPT_SHA256_HEX) != 0) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s is damaged: its tag does not match the SHA-256 on its second line",
                      path);
            return ZERO_ERR_CHECKPOINT;
        }
    } else {
        while (len > 0 && strchr(" \t\r\n", data[len - 1]) != NULL)
            data[--len] = '\0';
    }
    if (data[0] == '\0') {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s is empty: it names no checkpoint", path);
        return ZERO_ERR_CHECKPOINT;
    }
    if (zero_ckpt_tag_check(data, why, sizeof(why)) != ZERO_OK) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s does not hold a valid tag (%s)", path, why);
        return ZERO_ERR_CHECKPOINT;
    }
    *tag_p = data;
    return ZERO_OK;
}

zero_status_t ckpt_read_latest_err(const char *dir, char **tag_p, ckpt_err_t *err)
{
    char *path = ckpt_path_join(dir, CKPT_LATEST), *data = NULL, *target = NULL, *tag = NULL;
    size_t len = 0;
    struct stat st;
    zero_status_t status;

    if (path == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory for %s/latest", dir);
        return ZERO_ERR_NO_MEMORY;
    }
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            ckpt_fail(err, ZERO_ERR_NOT_FOUND, "no checkpoint in %s: %s does not exist (pass a tag, or save first)",
                      dir, path);
        else
            ckpt_fail_errno(err, "cannot stat %s", path);
        status = err->status;
        goto out;
    }
    /* checked before opening: opening a FIFO would wait for a writer forever */
    if (!S_ISREG(st.st_mode) || st.st_size > CKPT_LATEST_MAX_BYTES) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s is %s, not the small text file that names the latest checkpoint",
                  path, S_ISREG(st.st_mode) ? "too large" : file_kind(st.st_mode));
        status = ZERO_ERR_CHECKPOINT;
        goto out;
    }
    if ((status = ckpt_read_file(path, &data, &len, err)) != ZERO_OK)
        goto out;
    if ((status = parse_latest(path, data, len, &tag, err)) != ZERO_OK)
        goto out;
    target = ckpt_path_join(dir, tag);
    if (target == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory for a path in %s", dir);
        status = ZERO_ERR_NO_MEMORY;
        goto out;
    }
    if (stat(target, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ckpt_fail(err, ZERO_ERR_NOT_FOUND, "%s names tag '%s' but %s does not exist (dangling latest)", path,
                  tag, target);
        status = ZERO_ERR_NOT_FOUND;
        goto out;
    }
    *tag_p = data;   /* parse_latest cut the tag out at its start */
    data = NULL;
out:
    zero_free(target);
    zero_free(data);
    zero_free(path);
    return status;
}

zero_status_t zero_ckpt_read_latest(const char *dir, char **tag_p)
{
    ckpt_err_t err = {0};
    if (dir == NULL || tag_p == NULL) {
        ZERO_LOG_ERROR("zero_ckpt_read_latest: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    return ckpt_read_latest_err(dir, tag_p, &err);
}

typedef struct tag_entry {
    char *name;
    struct timespec mtime;
} tag_entry_t;

static int tag_entry_cmp(const void *a, const void *b)
{
    const tag_entry_t *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

void ckpt_keep_last(const char *dir, const char *current, int keep)
{
    DIR *d;
    struct dirent *de;
    tag_entry_t *list = NULL;
    size_t n = 0, cap = 0;

    if (keep <= 0 || (d = opendir(dir)) == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *marker;
        struct stat st;
        if (de->d_name[0] == '.' || zero_ckpt_tag_check(de->d_name, NULL, 0) != ZERO_OK)
            continue;
        marker = zero_asprintf("%s/%s/zero_rank_00000.h5", dir, de->d_name);
        if (marker != NULL && stat(marker, &st) == 0) {
            if (n == cap) {
                size_t ncap = cap ? 2 * cap : 16;
                tag_entry_t *nl = zero_realloc(list, ncap * sizeof(*nl));
                if (nl == NULL) {
                    zero_free(marker);
                    break;
                }
                list = nl;
                cap = ncap;
            }
            list[n].name = zero_strdup(de->d_name);
            list[n].mtime = st.st_mtim;
            if (list[n].name != NULL)
                n++;
        }
        zero_free(marker);
    }
    closedir(d);
    qsort(list, n, sizeof(*list), tag_entry_cmp);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        if (strcmp(list[i].name, current) != 0) {
            char *p = ckpt_path_join(dir, list[i].name);
            ckpt_err_t ignore = {0};
            if (p != NULL) {
                ZERO_LOG_INFO("keep_last %d: removing old checkpoint %s", keep, p);
                ckpt_remove_tree(p, &ignore);
            }
            zero_free(p);
        }
    }
    for (size_t i = 0; i < n; i++)
        zero_free(list[i].name);
    zero_free(list);
}

/* The tag <dir>/latest names now into *@p tag_p (NULL when there is no latest,
 * or it holds no valid tag): what a failed commit puts back. A latest that
 * exists but cannot be read fails (the commit then must not touch it). */
static zero_status_t latest_before(const char *dir, char **tag_p, ckpt_err_t *err)
{
    char *path = ckpt_path_join(dir, CKPT_LATEST), *data = NULL;
    size_t len = 0;
    zero_status_t status = ZERO_OK;
    *tag_p = NULL;
    if (path == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory for %s/latest", dir);
        return ZERO_ERR_NO_MEMORY;
    }
    if (access(path, F_OK) == 0 && (status = ckpt_read_file(path, &data, &len, err)) == ZERO_OK) {
        /* the same reading as a load's (a tag, then its digest line); a latest
         * that is not valid is not put back by an undo */
        ckpt_err_t ignore = {0};
        char *tag = NULL;
        if (parse_latest(path, data, len, &tag, &ignore) != ZERO_OK) {
            zero_free(data);
            data = NULL;
        }
        *tag_p = data;   /* parse_latest cut the tag out in place: tag == data */
    }
    zero_free(path);
    return status;
}

/*
 * Undoes a commit that failed after <tmp> was moved into place: the new
 * checkpoint goes back to <tmp> (returns 1: <tmp> holds only new data) and an overwritten
 * one back to <dst>; latest is restored if it was already replaced. Each undo
 * step is logged when it fails itself; nothing is deleted that may be the only
 * copy of a checkpoint.
 */
static int commit_undo(const char *dir, const char *tmp, const char *dst, int exchanged, const char *old_latest,
                       int latest_replaced)
{
    ckpt_err_t ignore = {0};
    int moved_back = exchanged ? renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) == 0
                               : rename(dst, tmp) == 0;
    if (!moved_back)
        ZERO_LOG_WARN("after a failed commit, %s could not be moved back to %s (%s): %s", dst, tmp, strerror(errno),
                      exchanged ? "the new checkpoint stays under the tag, the replaced one under the temporary "
                                  "name" : "the new checkpoint stays, latest does not name it");
    if (latest_replaced && moved_back) {
        if (old_latest != NULL) {
            if (ckpt_write_latest(dir, old_latest, &ignore) != ZERO_OK)
                ZERO_LOG_WARN("after a failed commit, %s/latest could not be put back to '%s'", dir, old_latest);
        } else {
            char *latest = ckpt_path_join(dir, CKPT_LATEST);
            if (latest == NULL || unlink(latest) != 0)
                ZERO_LOG_WARN("after a failed commit, %s/latest could not be removed", dir);
            zero_free(latest);
        }
    }
    (void)ckpt_fsync_path(dir, 1, &ignore);
    return moved_back;
}

zero_status_t ckpt_commit(const char *dir, const char *tmp_name, const char *tag, int keep_last, ckpt_err_t *err)
{
    char *tmp = ckpt_path_join(dir, tmp_name), *dst = ckpt_path_join(dir, tag), *old_latest = NULL;
    zero_status_t status = ZERO_OK;
    struct stat st;
    int exchanged = 0, latest_replaced = 0;

    if (tmp == NULL || dst == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory committing %s", dir);
        status = ZERO_ERR_NO_MEMORY;
        goto out;
    }
    if ((status = ckpt_fsync_path(tmp, 1, err)) != ZERO_OK)
        goto discard;
    if ((status = latest_before(dir, &old_latest, err)) != ZERO_OK)
        goto discard;
    ckpt_crash_point("before_rename");
    if (lstat(dst, &st) == 0) {
        /* Overwrite: swap atomically so that <tag> is at every instant either the
         * complete old checkpoint or the complete new one; the old one ends up
         * under the temporary name and is removed once latest is durable. */
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) != 0) {
            ckpt_fail_errno(err, "cannot swap %s into place of %s (renameat2 RENAME_EXCHANGE)", tmp, dst);
            status = err->status;
            goto discard;
        }
        exchanged = 1;
    } else if (rename(tmp, dst) != 0) {
        ckpt_fail_errno(err, "cannot rename %s to %s", tmp, dst);
        status = err->status;
        goto discard;
    }
    if ((status = ckpt_fsync_path(dir, 1, err)) != ZERO_OK)
        goto undo;
    ckpt_crash_point("after_rename");
    if ((status = ckpt_write_latest_ex(dir, tag, &latest_replaced, err)) != ZERO_OK)
        goto undo;
    if (exchanged) {
        ckpt_err_t ignore = {0};
        if (ckpt_remove_tree(tmp, &ignore) != ZERO_OK)
            ZERO_LOG_WARN("the replaced checkpoint could not be removed fully from %s", tmp);
    }
    ckpt_keep_last(dir, tag, keep_last);
    goto out;
undo:
    if (!commit_undo(dir, tmp, dst, exchanged, old_latest, latest_replaced))
        goto out;   /* <tmp> may hold the replaced checkpoint: keep it */
    /* fall through: <tmp> holds the new checkpoint only */
discard:
    {
        ckpt_err_t ignore = {0};
        if (ckpt_remove_tree(tmp, &ignore) != ZERO_OK)
            ZERO_LOG_WARN("the failed checkpoint could not be removed fully from %s", tmp);
    }
out:
    zero_free(old_latest);
    zero_free(tmp);
    zero_free(dst);
    return status;
}
