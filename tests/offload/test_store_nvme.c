/*
 * The NVMe optimizer-state store (lib/offload/store_nvme.c) on this machine's
 * disk: random round trips against a reference copy in memory (unaligned and
 * overlapping ranges, prefetch, several ranges held at once, both I/O
 * backends), bounds, an adopted master array, a full disk (a small tmpfs),
 * the fallback when seccomp refuses io_uring, and the config factory.
 * Failures injected into single reads and writes: test_store_nvme_fault.c.
 */
#include "peak_rss.h"
#include "test_main.h"
#include "offload/store.h"
#include "offload/store_nvme.h"
#include "util/alloc.h"
#include "util/log.h"

#include <zero/zero.h>

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char test_dir[64];

static void make_dir(void)
{
    strcpy(test_dir, "/tmp/zero-nvme-test-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) { return zero_test_xorshift(&rng_state); }

static void desc_init(zero_store_desc_t *d, size_t len0, size_t len1, int states)
{
    memset(d, 0, sizeof(*d));
    d->kind = ZERO_MEM_HOST;
    d->num_groups = 2;
    d->length[0] = len0;
    d->length[1] = len1;
    d->num_states = states;
}

static void params_init(zero_store_nvme_params_t *p, zero_store_nvme_io_t io)
{
    zero_store_nvme_params_default(p);
    p->dir = test_dir;
    p->rank = 3;
    p->buffer_count = 3;
    p->max_range = 3000;
    p->block_size = 8192;   /* several requests per field of a range */
    p->queue_depth = 4;
    p->io_threads = 2;
    p->io = io;
}

/* Random acquires (verified against ref), dirty releases (ref follows),
 * prefetches and pairs of disjoint ranges held at once. Returns failures. */
static int random_round_trips(zero_store_t *s, const zero_store_desc_t *d, float *ref[2][3], int iterations,
                              size_t max_range)
{
    int bad = 0;
    unsigned all = zero_store_fields(s);
    for (int it = 0; it < iterations; it++) {
        zero_store_range_t r[2];
        int held = (rng() % 4 == 0) ? 2 : 1;
        int g = (int)(rng() % (uint64_t)d->num_groups);
        size_t len = d->length[g];
        memset(r, 0, sizeof(r));
        for (int k = 0; k < held; k++) {
            r[k].group = g;
            r[k].fields = (unsigned)(rng() % all) + 1u;
            if (held == 2) {   /* two disjoint ranges of one group: halves of it */
                size_t half = len / 2;
                size_t lo = k == 0 ? 0 : half, span = k == 0 ? half : len - half;
                r[k].count = (size_t)(rng() % (uint64_t)(span < max_range ? span : max_range) + 1);
                if (r[k].count > span)
                    r[k].count = span;
                r[k].begin = lo + (size_t)(rng() % (uint64_t)(span - r[k].count + 1));
            } else if (rng() % 2 == 0) {
                /* from a few overlapping ranges, so that buffered copies are found again
                 * after an overlapping range was written */
                static const size_t begins[] = {0, 500, 1000, 1024, 1333};
                static const size_t counts[] = {1000, 1024, 2048, 3000};
                r[k].begin = begins[rng() % 5] % len;
                r[k].count = counts[rng() % 4];
                if (r[k].count > max_range)
                    r[k].count = max_range;
                if (r[k].count > len - r[k].begin)
                    r[k].count = len - r[k].begin;
            } else {
                r[k].count = (size_t)(rng() % (uint64_t)(len < max_range ? len : max_range) + 1);
                r[k].begin = (size_t)(rng() % (uint64_t)(len - r[k].count + 1));
            }
            if (rng() % 3 == 0)   /* prefetch, sometimes exactly the range acquired next */
                CU_ASSERT_EQUAL(zero_store_prefetch(s, g, r[k].begin, r[k].count, r[k].fields), ZERO_OK);
            if (zero_store_acquire(s, &r[k]) != ZERO_OK) {
                bad++;
                return bad;
            }
            for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++) {
                if (!(r[k].fields & ZERO_STORE_FIELD_BIT(f)))
                    continue;
                if (memcmp(r[k].data[f], ref[g][f] + r[k].begin, r[k].count * sizeof(float)) != 0)
                    bad++;
            }
        }
        for (int k = 0; k < held; k++) {
            int dirty = rng() % 2 == 0;
            if (dirty)
                for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++)
                    if (r[k].fields & ZERO_STORE_FIELD_BIT(f))
                        for (size_t i = 0; i < r[k].count; i++)
                            ref[g][f][r[k].begin + i] = r[k].data[f][i] = (float)(rng() % 1000000) + 0.5f;
            if (zero_store_release(s, &r[k], dirty) != ZERO_OK)
                bad++;
        }
    }
    return bad;
}

static void round_trip(zero_store_nvme_io_t io, const char *expect_io)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_nvme_stats_t st;
    zero_store_bytes_t b;
    zero_store_t *s = NULL;
    float *ref[2][3];
    make_dir();
    desc_init(&d, 10007, 1500, 2);
    params_init(&p, io);
    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    CU_ASSERT(zero_store_is_nvme(s));
    CU_ASSERT_EQUAL(zero_store_max_range(s), 3000);
    zero_store_nvme_stats(s, &st);
    CU_ASSERT_STRING_EQUAL(st.io, expect_io);
    CU_ASSERT_EQUAL(zero_test_dir_entries(test_dir), 0);   /* unlinked at once: nothing left whatever happens */
    zero_store_bytes(s, &b);
    /* regions padded to 4 KiB: group 0 40028 -> 40960, group 1 6000 -> 8192; three fields each */
    CU_ASSERT_EQUAL(b.elsewhere, 3 * (40960 + 8192));
    CU_ASSERT(b.resident >= 3u * 3u * 3000u * sizeof(float));
    for (int g = 0; g < 2; g++)
        for (int f = 0; f < 3; f++)
            ref[g][f] = calloc(d.length[g], sizeof(float));   /* the store starts zeroed */
    CU_ASSERT_EQUAL(random_round_trips(s, &d, ref, 400, 3000), 0);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    zero_store_nvme_stats(s, &st);
    CU_ASSERT(st.bytes_written > 0);
    CU_ASSERT(st.bytes_read > 0);
    CU_ASSERT(st.acquire_hits > 0);
    /* A final sweep of every element in max-size ranges, from the file. */
    for (int g = 0; g < 2; g++) {
        for (size_t begin = 0; begin < d.length[g]; begin += 3000) {
            zero_store_range_t r = {.group = g, .begin = begin, .fields = ZERO_STORE_ALL_FIELDS};
            r.count = d.length[g] - begin < 3000 ? d.length[g] - begin : 3000;
            CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
            for (int f = 0; f < 3; f++)
                CU_ASSERT_EQUAL(memcmp(r.data[f], ref[g][f] + begin, r.count * sizeof(float)), 0);
            CU_ASSERT_EQUAL(zero_store_release(s, &r, 0), ZERO_OK);
        }
    }
    zero_store_destroy(s);
    CU_ASSERT_EQUAL(zero_test_dir_entries(test_dir), 0);
    rmdir(test_dir);
    for (int g = 0; g < 2; g++)
        for (int f = 0; f < 3; f++)
            free(ref[g][f]);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_nvme_round_trip_uring(void) { round_trip(ZERO_STORE_NVME_IO_URING, "io_uring"); }
static void test_nvme_round_trip_threads(void) { round_trip(ZERO_STORE_NVME_IO_THREADS, "threads"); }

/* A prefetched range is read once, before its acquire; a dirty range released
 * and acquired again is served from its buffer; an unaligned dirty range does
 * not clobber its neighbours in the blocks it shares with them. */
static void test_nvme_prefetch_and_neighbours(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_nvme_stats_t st;
    zero_store_t *s = NULL;
    zero_store_range_t a = {.group = 0, .begin = 0, .count = 2048, .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
    zero_store_range_t left = {.group = 0, .begin = 100, .count = 50, .fields = ZERO_STORE_FIELD_BIT(0)};
    zero_store_range_t right = {.group = 0, .begin = 150, .count = 50, .fields = ZERO_STORE_FIELD_BIT(0)};
    make_dir();
    desc_init(&d, 8192, 1, 1);
    params_init(&p, ZERO_STORE_NVME_IO_URING);
    p.buffer_count = 2;
    p.max_range = 8192;
    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, 0, 2048, ZERO_STORE_FIELD_BIT(0)), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &a), ZERO_OK);
    zero_store_nvme_stats(s, &st);
    CU_ASSERT_EQUAL(st.acquire_hits, 1);
    CU_ASSERT_EQUAL(st.bytes_read, 2048 * sizeof(float));   /* exactly the range's blocks, once */
    CU_ASSERT_EQUAL(zero_store_release(s, &a, 0), ZERO_OK);

    /* a copy kept in a buffer is dropped when an overlapping range is written */
    zero_store_range_t mid = {.group = 0, .begin = 1000, .count = 100, .fields = ZERO_STORE_FIELD_BIT(0)};
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &mid), ZERO_OK);
    mid.data[0][99] = 7.0f;
    CU_ASSERT_EQUAL(zero_store_release(s, &mid, 1), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &a), ZERO_OK);
    CU_ASSERT_EQUAL(a.data[0][1099], 7.0f);
    a.data[0][1099] = 0.0f;
    CU_ASSERT_EQUAL(zero_store_release(s, &a, 1), ZERO_OK);

    /* both held at once, in one 4 KiB block, each released dirty */
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &left), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &right), ZERO_OK);
    for (int i = 0; i < 50; i++) {
        left.data[0][i] = 1.0f + (float)i;
        right.data[0][i] = -1.0f - (float)i;
    }
    CU_ASSERT_EQUAL(zero_store_release(s, &left, 1), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_release(s, &right, 1), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    /* re-acquired: served from its buffer, no read */
    zero_store_nvme_stats(s, &st);
    uint64_t read_before = st.bytes_read;
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &right), ZERO_OK);
    zero_store_nvme_stats(s, &st);
    CU_ASSERT_EQUAL(st.bytes_read, read_before);
    CU_ASSERT_EQUAL(zero_store_release(s, &right, 0), ZERO_OK);
    /* a range over both, and beyond, read back from the file */
    a.begin = 64;
    a.count = 4100;
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &a), ZERO_OK);
    for (int i = 0; i < 50; i++) {
        CU_ASSERT_EQUAL(a.data[0][100 - 64 + i], 1.0f + (float)i);
        CU_ASSERT_EQUAL(a.data[0][150 - 64 + i], -1.0f - (float)i);
    }
    CU_ASSERT_EQUAL(a.data[0][99 - 64], 0.0f);
    CU_ASSERT_EQUAL(a.data[0][200 - 64], 0.0f);
    CU_ASSERT_EQUAL(zero_store_release(s, &a, 0), ZERO_OK);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_nvme_bounds(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_t *s = NULL;
    zero_store_range_t r[3];
    uint64_t mark;
    make_dir();
    desc_init(&d, 10000, 100, 2);
    params_init(&p, ZERO_STORE_NVME_IO_URING);
    p.buffer_count = 2;
    p.max_range = 1000;

    /* bad descriptors and parameters */
    d.kind = ZERO_MEM_DEVICE;
    CU_ASSERT_EQUAL(zero_store_nvme_create(&d, &p, &s), ZERO_ERR_UNSUPPORTED);
    d.kind = ZERO_MEM_HOST;
    p.dir = "/nonexistent-zero-nvme-dir";
    mark = zero_log_error_mark();
    CU_ASSERT_EQUAL(zero_store_nvme_create(&d, &p, &s), ZERO_ERR_NOT_FOUND);
    CU_ASSERT_PTR_NOT_NULL(strstr(zero_log_error_since(mark) ? zero_log_error_since(mark) : "",
                                  "/nonexistent-zero-nvme-dir"));
    p.dir = test_dir;
    p.buffer_count = 0;
    CU_ASSERT_EQUAL(zero_store_nvme_create(&d, &p, &s), ZERO_ERR_INVALID_ARG);
    p.buffer_count = 2;
    CU_ASSERT_PTR_NULL(s);

    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    memset(r, 0, sizeof(r));
    r[0].group = 0;
    r[0].begin = 0;
    r[0].count = 1001;   /* over max_range */
    r[0].fields = ZERO_STORE_ALL_FIELDS;
    mark = zero_log_error_mark();
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r[0]), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(zero_log_error_since(mark) ? zero_log_error_since(mark) : "", "max_range"));
    /* names the key that bounds it, with its block (the default names: the optimizer state's) */
    CU_ASSERT_PTR_NOT_NULL(strstr(zero_log_error_since(mark) ? zero_log_error_since(mark) : "",
                                  "offload_optimizer.sub_group_size"));
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, 0, 1001, ZERO_STORE_ALL_FIELDS), ZERO_ERR_INVALID_ARG);
    r[0].begin = 9500;
    r[0].count = 501;    /* past the group's end: the front's check */
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r[0]), ZERO_ERR_INVALID_ARG);
    /* every buffer held: a third acquire is an error, a prefetch a no-op */
    for (int k = 0; k < 3; k++) {
        r[k].group = 0;
        r[k].begin = (size_t)k * 1000;
        r[k].count = 1000;
        r[k].fields = ZERO_STORE_ALL_FIELDS;
    }
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r[0]), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r[1]), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, 2000, 1000, ZERO_STORE_ALL_FIELDS), ZERO_OK);
    mark = zero_log_error_mark();
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r[2]), ZERO_ERR_STATE);
    CU_ASSERT_PTR_NOT_NULL(strstr(zero_log_error_since(mark) ? zero_log_error_since(mark) : "",
                                  "offload_optimizer.buffer_count"));
    CU_ASSERT_EQUAL(zero_store_release(s, &r[0], 1), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r[2]), ZERO_OK);   /* waits for r[0]'s write, reuses its buffer */
    CU_ASSERT_EQUAL(zero_store_release(s, &r[1], 0), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_release(s, &r[2], 0), ZERO_OK);
    /* an empty range */
    r[0].begin = 10000;
    r[0].count = 0;
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r[0]), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL(r[0].data[ZERO_STORE_MASTER]);
    CU_ASSERT_EQUAL(zero_store_release(s, &r[0], 1), ZERO_OK);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* fp32 training: the master is the caller's weights, used in place; only the
 * optimizer states go to the file. */
static void test_nvme_adopted_master(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_bytes_t b;
    zero_store_t *s = NULL;
    float weights[5000];
    zero_store_range_t r = {.group = 0, .begin = 1234, .count = 2000, .fields = ZERO_STORE_ALL_FIELDS};
    make_dir();
    desc_init(&d, 5000, 10, 2);
    d.adopt_master[0] = weights;
    params_init(&p, ZERO_STORE_NVME_IO_URING);
    for (int i = 0; i < 5000; i++)
        weights[i] = (float)i;
    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    zero_store_bytes(s, &b);
    CU_ASSERT_EQUAL(b.elsewhere, 2 * 20480 + 3 * 4096);   /* group 0: two states; group 1: three fields */
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(r.data[ZERO_STORE_MASTER], weights + 1234);
    r.data[ZERO_STORE_STATE2][5] = 42.0f;
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 1), ZERO_OK);
    r.begin = 1000;
    r.count = 300;
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);   /* master only: nothing staged */
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_PTR_EQUAL(r.data[ZERO_STORE_MASTER], weights + 1000);
    CU_ASSERT_PTR_NULL(r.impl);
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 1), ZERO_OK);
    r.begin = 1239;
    r.count = 1;
    r.fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE2);
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    CU_ASSERT_EQUAL(r.data[ZERO_STORE_STATE2][0], 42.0f);
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 0), ZERO_OK);
    zero_store_destroy(s);
    CU_ASSERT_EQUAL(weights[4999], 4999.0f);   /* adopted: not freed, not changed */
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A disk too small for the state: create fails, naming the directory, and
 * leaves nothing behind. A 256 KiB tmpfs (needs root; skipped without). */
static void test_nvme_full_disk(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_t *s = NULL;
    uint64_t mark;
    make_dir();
    if (mount("tmpfs", test_dir, "tmpfs", 0, "size=256k") != 0) {
        fprintf(stderr, "cannot mount a tmpfs (%s): full-disk check skipped\n", strerror(errno));
        rmdir(test_dir);
        return;
    }
    desc_init(&d, 100000, 10, 2);   /* 1.2 MB of state */
    params_init(&p, ZERO_STORE_NVME_IO_URING);
    mark = zero_log_error_mark();
    CU_ASSERT_EQUAL(zero_store_nvme_create(&d, &p, &s), ZERO_ERR_IO);
    CU_ASSERT_PTR_NULL(s);
    const char *msg = zero_log_error_since(mark);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, test_dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "No space left on device"));
    CU_ASSERT_EQUAL(zero_test_dir_entries(test_dir), 0);
    /* a small state fits, and works (O_DIRECT or the page-cache fallback) */
    desc_init(&d, 4000, 10, 2);
    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    zero_store_range_t r = {.group = 0, .begin = 7, .count = 3000, .fields = ZERO_STORE_ALL_FIELDS};
    CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
    r.data[2][2999] = 9.0f;
    CU_ASSERT_EQUAL(zero_store_release(s, &r, 1), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    zero_store_destroy(s);
    umount(test_dir);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Where seccomp refuses io_uring (as container runtimes do), the store falls
 * back to pread/pwrite threads and still works. In a child: the filter stays. */
static void test_nvme_seccomp_fallback(void)
{
    pid_t pid;
    int wstatus = 0;
    make_dir();
    pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct sock_filter filter[] = {
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        };
        struct sock_fprog prog = {.len = (unsigned short)(sizeof(filter) / sizeof(filter[0])), .filter = filter};
        zero_store_desc_t d;
        zero_store_nvme_params_t p;
        zero_store_nvme_stats_t st;
        zero_store_t *s = NULL;
        float *ref[2][3];
        int bad;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            _exit(2);
        desc_init(&d, 7000, 3000, 2);
        params_init(&p, ZERO_STORE_NVME_IO_URING);
        if (zero_store_nvme_create(&d, &p, &s) != ZERO_OK)
            _exit(3);
        zero_store_nvme_stats(s, &st);
        if (strcmp(st.io, "threads") != 0)
            _exit(4);
        for (int g = 0; g < 2; g++)
            for (int f = 0; f < 3; f++)
                ref[g][f] = calloc(d.length[g], sizeof(float));
        bad = random_round_trips(s, &d, ref, 200, 3000);
        if (zero_store_flush(s) != ZERO_OK)
            bad++;
        zero_store_destroy(s);
        _exit(bad == 0 ? 0 : 5);
    }
    CU_ASSERT_EQUAL(waitpid(pid, &wstatus, 0), pid);
    CU_ASSERT(WIFEXITED(wstatus));
    CU_ASSERT_EQUAL(WEXITSTATUS(wstatus), 0);
    rmdir(test_dir);
}

/* The factory's options as the engine fills them from @p config. */
static const zero_store_options_t *options_for(const zero_config_t *config, int rank, zero_store_options_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->device = zero_store_device_from_config(config->zero_optimization.offload_optimizer.device);
    opts->nvme_path = config->zero_optimization.offload_optimizer.nvme_path;
    opts->rank = rank;
    opts->config = config;
    return opts;
}

/* The factory: device none/cpu give the host store, nvme the NVMe store
 * with the config's buffer_count, sub_group_size and aio block. */
static void test_store_create_for(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_options_t opts;
    char json[512];
    zero_config_t *config = NULL;
    zero_store_desc_t d;
    zero_store_t *s = NULL;
    zero_store_nvme_stats_t st;
    make_dir();
    desc_init(&d, 10000, 100, 2);
    static const char *const devices[] = {"none", "cpu"};
    for (int i = 0; i < 2; i++) {
        snprintf(json, sizeof(json),
                 "{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 1, \"offload_optimizer\": "
                 "{\"device\": \"%s\"}}}", devices[i]);
        CU_ASSERT_EQUAL_FATAL(zero_config_parse_string(json, strlen(json), 1, &config, NULL), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_store_create_for(options_for(config, 0, &opts), &d, &s), ZERO_OK);
        CU_ASSERT_STRING_EQUAL(s->ops->name, "host");
        zero_store_destroy(s);
        zero_config_destroy(config);
    }
    snprintf(json, sizeof(json),
             "{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 1, \"sub_group_size\": 4096, "
             "\"offload_optimizer\": {\"device\": \"nvme\", \"nvme_path\": \"%s\", \"buffer_count\": 2}}, "
             "\"aio\": {\"io_backend\": \"posix\", \"block_size\": 65536}}", test_dir);
    CU_ASSERT_EQUAL_FATAL(zero_config_parse_string(json, strlen(json), 1, &config, NULL), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_store_create_for(options_for(config, 1, &opts), &d, &s), ZERO_OK);
    CU_ASSERT(zero_store_is_nvme(s));
    CU_ASSERT_EQUAL(zero_store_max_range(s), 4096);
    zero_store_nvme_stats(s, &st);
    CU_ASSERT_STRING_EQUAL(st.io, "threads");
    zero_store_destroy(s);
    zero_config_destroy(config);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The point of the store: a rank's peak resident memory grows by its buffers,
 * not by its optimizer state. 96 MB of state (about 10x the buffers) written
 * and read back in full, range by range with prefetch; the peak (VmHWM, reset
 * first through clear_refs) may exceed the start by the buffers and 4 MiB. */
static void test_nvme_peak_rss(void)
{
    ZERO_TEST_MEM_MARK();
    const size_t n = (size_t)8 << 20, range = (size_t)1 << 18;
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_bytes_t b;
    zero_store_t *s = NULL;
    long base, peak;
    int bad = 0;
    if (!peak_rss_reset()) {
        fprintf(stderr, "cannot reset VmHWM: peak-RSS check skipped\n");
        return;
    }
    make_dir();
    desc_init(&d, n, 1, 2);
    params_init(&p, ZERO_STORE_NVME_IO_URING);
    p.max_range = range;
    p.block_size = 1 << 20;
    base = peak_rss_status_kib("VmHWM:");
    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    zero_store_bytes(s, &b);
    CU_ASSERT(b.elsewhere >= 3 * n * sizeof(float));
    CU_ASSERT(b.elsewhere >= 9 * b.resident);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t begin = 0; begin < n; begin += range) {
            zero_store_range_t r = {.group = 0, .begin = begin, .count = range, .fields = ZERO_STORE_ALL_FIELDS};
            if (begin + range < n)
                CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, begin + range, range, ZERO_STORE_ALL_FIELDS), ZERO_OK);
            CU_ASSERT_EQUAL_FATAL(zero_store_acquire(s, &r), ZERO_OK);
            for (int f = 0; f < 3; f++)
                for (size_t i = 0; i < range; i++) {
                    float want = (float)((begin + i) % 65521) + (float)f;
                    if (pass == 0)
                        r.data[f][i] = want;
                    else
                        bad += r.data[f][i] != want;
                }
            CU_ASSERT_EQUAL(zero_store_release(s, &r, pass == 0), ZERO_OK);
        }
        CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    }
    CU_ASSERT_EQUAL(bad, 0);
    peak = peak_rss_status_kib("VmHWM:");
    fprintf(stderr, "peak RSS grew by %ld KiB for %llu bytes of state and %llu bytes of buffers\n", peak - base,
            (unsigned long long)b.elsewhere, (unsigned long long)b.resident);
    CU_ASSERT(base > 0 && peak > 0);
    CU_ASSERT((uint64_t)(peak - base) * 1024 <= b.resident + ((uint64_t)4 << 20));
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"nvme_round_trip_uring", test_nvme_round_trip_uring},
        {"nvme_round_trip_threads", test_nvme_round_trip_threads},
        {"nvme_prefetch_and_neighbours", test_nvme_prefetch_and_neighbours},
        {"nvme_bounds", test_nvme_bounds},
        {"nvme_adopted_master", test_nvme_adopted_master},
        {"nvme_full_disk", test_nvme_full_disk},
        {"nvme_seccomp_fallback", test_nvme_seccomp_fallback},
        {"store_create_for", test_store_create_for},
        {"nvme_peak_rss", test_nvme_peak_rss},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {{"offload-nvme", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
