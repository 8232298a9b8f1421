/*
 * The NVMe store when the disk fails: run with tests/ckpt/fault_shim.c in
 * LD_PRELOAD (meson does), which fails one chosen pread/pwrite on the store's
 * file. The store uses its pread/pwrite threads here (io_uring requests do not
 * go through libc; both backends finish every request in the same function).
 * Each case asserts: the error is reported once, as ZERO_ERR_IO, naming the
 * file, the byte offset and the cause; nothing is lost (a failed write's data
 * is served from its buffer and written by the next dirty release); the store
 * keeps working.
 */
#include "test_main.h"
#include "offload/store.h"
#include "offload/store_nvme.h"
#include "util/clock.h"
#include "util/log.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RANGE 2048   /* elements: 8 KiB, one request (block_size 8 KiB) */
#define RANGES 6

static int (*fault_config)(const char *spec);
static char test_dir[64];
static float ref[RANGES * RANGE];
static double store_timeout_s = 300.0;   /* the I/O wait bound of the next create_store */

static void configure(const char *spec_tail)
{
    char spec[256];
    snprintf(spec, sizeof(spec), "dir=%s,%s", test_dir, spec_tail);
    CU_ASSERT_EQUAL_FATAL(fault_config(spec), 0);
}

static zero_store_t *create_store(void)
{
    zero_store_desc_t d;
    zero_store_nvme_params_t p;
    zero_store_t *s = NULL;
    configure("op=write,at=0");   /* the shim follows fds opened under the directory once configured */
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_MEM_HOST;
    d.num_groups = 1;
    d.length[0] = RANGES * RANGE;
    d.num_states = 0;   /* one field: one request per range */
    zero_store_nvme_params_default(&p);
    p.dir = test_dir;
    p.buffer_count = 3;
    p.max_range = RANGE;
    p.block_size = RANGE * sizeof(float);
    p.io = ZERO_STORE_NVME_IO_THREADS;
    p.io_threads = 1;   /* requests run in queue order: "the K-th write" is a known range */
    p.direct = 0;       /* SHORT writes half a request: not a multiple of the O_DIRECT block */
    p.timeout_s = store_timeout_s;
    CU_ASSERT_EQUAL_FATAL(zero_store_nvme_create(&d, &p, &s), ZERO_OK);
    memset(ref, 0, sizeof(ref));
    return s;
}

/* Acquires range k, fills it with new values (ref follows), releases it dirty. */
static zero_status_t write_range(zero_store_t *s, int k, float base)
{
    zero_store_range_t r = {.group = 0, .begin = (size_t)k * RANGE, .count = RANGE,
                            .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
    zero_status_t status = zero_store_acquire(s, &r);
    if (status != ZERO_OK)
        return status;
    for (int i = 0; i < RANGE; i++)
        ref[k * RANGE + i] = r.data[0][i] = base + (float)i;
    return zero_store_release(s, &r, 1);
}

/* Acquires range k and compares it with ref; returns mismatches (or -1 on an error). */
static int check_range(zero_store_t *s, int k)
{
    zero_store_range_t r = {.group = 0, .begin = (size_t)k * RANGE, .count = RANGE,
                            .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
    int bad = 0;
    if (zero_store_acquire(s, &r) != ZERO_OK)
        return -1;
    for (int i = 0; i < RANGE; i++)
        bad += r.data[0][i] != ref[k * RANGE + i];
    if (zero_store_release(s, &r, 0) != ZERO_OK)
        bad++;
    return bad;
}

/* Reads every range back from the file: the three buffers are cycled out first. */
static int check_all_from_file(zero_store_t *s)
{
    int bad = 0;
    for (int k = RANGES - 1; k >= 0; k--)
        bad += check_range(s, k) != 0;
    for (int k = 0; k < RANGES; k++)
        bad += check_range(s, k) != 0;
    return bad;
}

/* Writes ranges 0..3; returns the ranges whose write failed, and the first failure's status and message. */
static int write_four(zero_store_t *s, zero_status_t *first_p, char *message, size_t size)
{
    int failed = 0;
    uint64_t mark = zero_log_error_mark();
    for (int k = 0; k < 4; k++) {
        /* flushed after each range: every write's error is reported by its own flush */
        zero_status_t st = write_range(s, k, 1000.0f * (float)(k + 1));
        if (st == ZERO_OK)
            st = zero_store_flush(s);
        if (st != ZERO_OK && failed++ == 0)
            *first_p = st;
    }
    const char *msg = zero_log_error_since(mark);
    snprintf(message, size, "%s", msg ? msg : "");
    return failed;
}

static void test_write_eio(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_t *s;
    zero_status_t first = ZERO_OK;
    zero_store_nvme_stats_t st;
    char msg[512];
    strcpy(test_dir, "/tmp/zero-nvme-fault-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
    s = create_store();
    configure("op=write,at=3,err=EIO");   /* the third write: range 2, at byte 16384 */
    CU_ASSERT_EQUAL(write_four(s, &first, msg, sizeof(msg)), 1);   /* reported once */
    CU_ASSERT_EQUAL(first, ZERO_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "zero-optstate-rank"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "at offset 16384 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "Input/output error"));
    /* nothing lost: range 2 comes from its buffer, not the file, even after
     * other ranges went through the other buffers */
    CU_ASSERT_EQUAL(check_range(s, 4), 0);
    CU_ASSERT_EQUAL(check_range(s, 5), 0);
    CU_ASSERT_EQUAL(check_range(s, 0), 0);
    zero_store_nvme_stats(s, &st);
    uint64_t read_before = st.bytes_read;
    CU_ASSERT_EQUAL(check_range(s, 2), 0);
    zero_store_nvme_stats(s, &st);
    CU_ASSERT_EQUAL(st.bytes_read, read_before);
    /* a dirty release writes it again (the fault was one call) */
    CU_ASSERT_EQUAL(write_range(s, 2, 77.0f), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    CU_ASSERT_EQUAL(check_all_from_file(s), 0);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The disk fills in mid-write: write 2 writes half, every later write fails. */
static void test_write_short_then_full(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_t *s;
    zero_status_t first = ZERO_OK;
    char msg[512];
    strcpy(test_dir, "/tmp/zero-nvme-fault-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
    s = create_store();
    configure("op=write,at=2,err=SHORT");
    CU_ASSERT_EQUAL(write_four(s, &first, msg, sizeof(msg)), 3);
    CU_ASSERT_EQUAL(first, ZERO_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "short write: 4096 of 8192 bytes at offset 8192 "));
    /* ranges 1..3 failed: each is still served, with its new values, from memory */
    for (int k = 1; k < 4; k++)
        CU_ASSERT_EQUAL(check_range(s, k), 0);
    /* space again: the data held in memory is written by the next dirty release */
    configure("op=write,at=0");
    for (int k = 1; k < 4; k++)
        CU_ASSERT_EQUAL(write_range(s, k, 500.0f * (float)k), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    CU_ASSERT_EQUAL(check_all_from_file(s), 0);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_read_eio(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_t *s;
    uint64_t mark;
    strcpy(test_dir, "/tmp/zero-nvme-fault-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
    s = create_store();
    CU_ASSERT_EQUAL(write_range(s, 4, 3.0f), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    configure("op=read,at=1,err=EIO");
    mark = zero_log_error_mark();
    CU_ASSERT_EQUAL(check_range(s, 1), -1);
    const char *msg = zero_log_error_since(mark);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "read of 8192 bytes at offset 8192 "));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "Input/output error"));
    /* the next read works, and range 4 was never disturbed */
    CU_ASSERT_EQUAL(check_range(s, 1), 0);
    CU_ASSERT_EQUAL(check_all_from_file(s), 0);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A stalled device (a read that answers after 1.5 s) with a 0.2 s bound: the
 * acquire fails with ZERO_ERR_TIMEOUT, within about the bound, naming the
 * file; every later call is refused the same way (the read may still land in
 * its buffer); destroy waits for the read and leaks nothing. */
static void test_read_stall_times_out(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_t *s;
    zero_store_range_t r = {.group = 0, .begin = RANGE, .count = RANGE,
                            .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
    uint64_t mark;
    double t0, waited;
    const char *msg;
    strcpy(test_dir, "/tmp/zero-nvme-fault-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
    store_timeout_s = 0.2;
    s = create_store();
    store_timeout_s = 300.0;
    configure("op=read,at=1,stall_ms=1500");
    mark = zero_log_error_mark();
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    t0 = zero_clock_now();
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r), ZERO_ERR_TIMEOUT);
    waited = zero_clock_now() - t0;
    CU_ASSERT(waited >= 0.2 && waited < 1.4);   /* the bound, not the stall */
    msg = zero_log_error_since(mark);
    CU_ASSERT_PTR_NOT_NULL_FATAL(msg);
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, "did not complete within 0.2 s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(msg, test_dir));   /* names the file */
    CU_ASSERT_EQUAL(zero_store_acquire(s, &r), ZERO_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, 0, RANGE, ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)), ZERO_ERR_TIMEOUT);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_ERR_TIMEOUT);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    zero_store_destroy(s);   /* waits for the stalled read */
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A prefetch whose read fails leaves nothing behind: the range's acquire
 * reads it again instead of handing out what the buffer held before. */
static void test_prefetch_read_eio(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_t *s;
    strcpy(test_dir, "/tmp/zero-nvme-fault-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
    s = create_store();
    for (int k = 0; k < 4; k++)
        CU_ASSERT_EQUAL(write_range(s, k, 100.0f * (float)(k + 1)), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    for (int k = 4; k < RANGES; k++)   /* range 1 out of every buffer; the buffers hold other ranges' values */
        CU_ASSERT_EQUAL(check_range(s, k), 0);
    CU_ASSERT_EQUAL(check_range(s, 0), 0);
    configure("op=read,at=1,err=EIO");
    CU_ASSERT_EQUAL(zero_store_prefetch(s, 0, 1 * RANGE, RANGE, ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)), ZERO_OK);
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_ERR_IO);   /* waits for the read too, and reports it */
    CU_ASSERT_EQUAL(check_range(s, 1), 0);
    CU_ASSERT_EQUAL(check_all_from_file(s), 0);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Acquires [begin, begin + RANGE), compares with ref, optionally writes new values; returns mismatches or -1. */
static int visit(zero_store_t *s, size_t begin, int dirty, float base)
{
    zero_store_range_t r = {.group = 0, .begin = begin, .count = RANGE,
                            .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
    int bad = 0;
    if (zero_store_acquire(s, &r) != ZERO_OK)
        return -1;
    for (int i = 0; i < RANGE; i++) {
        bad += r.data[0][i] != ref[begin + (size_t)i];
        if (dirty)
            ref[begin + (size_t)i] = r.data[0][i] = base + (float)i;
    }
    if (zero_store_release(s, &r, dirty) != ZERO_OK)
        bad++;
    return bad;
}

/* A failed write's buffer is the newest copy of its elements: a range
 * overlapping it reads them from it, and writing such a range updates it. */
static void test_failed_write_overlaps(void)
{
    ZERO_TEST_MEM_MARK();
    zero_store_t *s;
    strcpy(test_dir, "/tmp/zero-nvme-fault-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
    s = create_store();
    configure("op=write,at=1,err=EIO");
    CU_ASSERT_EQUAL(visit(s, 0, 1, 10.0f), 0);                 /* A = [0, 2048): its write fails */
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_ERR_IO);
    CU_ASSERT_EQUAL(visit(s, RANGE / 2, 1, 5000.0f), 0);       /* B = [1024, 3072): A's half from A's buffer */
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    CU_ASSERT_EQUAL(visit(s, 0, 1, 20.0f), 0);                 /* A again: B's half updated in it; rewritten */
    CU_ASSERT_EQUAL(zero_store_flush(s), ZERO_OK);
    CU_ASSERT_EQUAL(check_all_from_file(s), 0);
    zero_store_destroy(s);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"nvme_write_eio", test_write_eio},
        {"nvme_write_short_then_full", test_write_short_then_full},
        {"nvme_read_eio", test_read_eio},
        {"nvme_prefetch_read_eio", test_prefetch_read_eio},
        {"nvme_failed_write_overlaps", test_failed_write_overlaps},
        {"nvme_read_stall_times_out", test_read_stall_times_out},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {{"offload-nvme-fault", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    *(void **)&fault_config = dlsym(RTLD_DEFAULT, "zero_fault_config");
    if (fault_config == NULL) {
        fprintf(stderr, "test_store_nvme_fault: run it with the fault shim in LD_PRELOAD (meson test does)\n");
        return 1;
    }
    return zero_test_main(argc, argv, suites);
}
