/*
 * Shared by the libFuzzer targets (tests/fuzz/fuzz_*.c): quiet logging, a
 * NUL-terminated copy of the input, and a private temporary directory that is
 * removed at exit (the only place a target writes).
 */
#ifndef ZERO_FUZZ_COMMON_H
#define ZERO_FUZZ_COMMON_H

#include "util/log.h"

#include <zero/log.h>

#include <fcntl.h>
#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static void fuzz_log_discard(zero_log_level_t level, int rank, const char *module, const char *message,
                             void *user_data)
{
    (void)level;
    (void)rank;
    (void)module;
    (void)message;
    (void)user_data;
}

/* Messages are still formatted (so a bad format argument is caught by the
 * sanitizers) but dropped, so the fuzzer's own output stays readable. */
static inline void fuzz_quiet_logs(void)
{
    zero_log_set_level(ZERO_LOG_LEVEL_DEBUG);
    zero_log_set_callback(fuzz_log_discard, NULL);
}

/* The input as a C string (stops at an embedded NUL); free() it. */
static inline char *fuzz_cstring(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort(); /* the harness itself, not the code under test */
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

static char fuzz_tmp_root[512];

static int fuzz_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void fuzz_tmp_cleanup(void)
{
    if (fuzz_tmp_root[0] != '\0')
        nftw(fuzz_tmp_root, fuzz_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory in $TMPDIR when set (run_fuzz.sh points it into the
 * build dir's scratch, emptied before each run, so a crash, which skips the
 * clean-up, leaves nothing behind elsewhere), else /dev/shm, else /tmp;
 * removed with everything in it when the process exits normally. */
static inline const char *fuzz_tmp_dir(const char *name)
{
    const char *bases[] = {getenv("TMPDIR"), "/dev/shm", "/tmp"};
    for (size_t i = 0; i < sizeof(bases) / sizeof(bases[0]); i++) {
        if (bases[i] == NULL || bases[i][0] == '\0' || access(bases[i], W_OK) != 0)
            continue;
        snprintf(fuzz_tmp_root, sizeof(fuzz_tmp_root), "%s/zero-fuzz-%s-XXXXXX", bases[i], name);
        if (mkdtemp(fuzz_tmp_root) != NULL) {
            atexit(fuzz_tmp_cleanup);
            return fuzz_tmp_root;
        }
    }
    fprintf(stderr, "fuzz_%s: cannot create a temporary directory\n", name);
    abort();
}

/* Writes @p size bytes to @p path (created or truncated); aborts on failure,
 * which is the harness's fault, not the library's. */
static inline void fuzz_write_file(const char *path, const void *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const char *p = data;
    if (fd < 0) {
        perror(path);
        abort();
    }
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n <= 0) {
            perror(path);
            abort();
        }
        p += n;
        size -= (size_t)n;
    }
    close(fd);
}

#endif /* ZERO_FUZZ_COMMON_H */
