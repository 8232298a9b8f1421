/* lib/util: status strings, counted allocation, logging, thread pool, 16-bit conversions. */
#include "test_main.h"
#include "peak_rss.h"
#include "zero_build_config.h"
#include "util/alloc.h"
#include "util/half.h"
#include "util/log.h"
#include "util/thread_pool.h"
#include "util/checks.h"
#include "util/clock.h"
#include "util/cpu.h"
#include "util/ucx_log.h"
#include "util/ucx_pins.h"

#include <zero/zero.h>

/* GCC on x86-64 rounds _Float16 conversions to nearest even: the reference. */
__extension__ typedef _Float16 zero_f16_t;
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucs/config/global_opts.h>
#include <ucs/debug/log_def.h>

static void test_status_strings(void)
{
    static const zero_status_t all[] = {
        ZERO_OK, ZERO_INPROGRESS, ZERO_ERR_INVALID_ARG, ZERO_ERR_NO_MEMORY, ZERO_ERR_IO,
        ZERO_ERR_CONFIG, ZERO_ERR_UNSUPPORTED, ZERO_ERR_COMM, ZERO_ERR_TIMEOUT, ZERO_ERR_CUDA,
        ZERO_ERR_NCCL, ZERO_ERR_HDF5, ZERO_ERR_STATE, ZERO_ERR_CHECKPOINT, ZERO_ERR_LOSS_SCALE,
        ZERO_ERR_NOT_FOUND, ZERO_ERR_PROTOCOL, ZERO_ERR_ABORTED, ZERO_ERR_OVERFLOW, ZERO_ERR_INTERNAL};
    size_t n = sizeof(all) / sizeof(all[0]);
    for (size_t i = 0; i < n; i++) {
        const char *s = zero_status_string(all[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT_STRING_NOT_EQUAL(s, "unknown status");
        for (size_t j = 0; j < i; j++)
            CU_ASSERT_STRING_NOT_EQUAL(s, zero_status_string(all[j])); /* each one distinct */
        if (all[i] < 0)
            CU_ASSERT(all[i] < 0);
    }
    CU_ASSERT_STRING_EQUAL(zero_status_string(ZERO_OK), "success");
    CU_ASSERT_STRING_EQUAL(zero_status_string((zero_status_t)-999), "unknown status");
    CU_ASSERT_STRING_EQUAL(zero_status_string(ZERO_ERR_UNSUPPORTED), "unsupported feature");
}

static void test_version(void)
{
    char expect[32];
    snprintf(expect, sizeof(expect), "%d.%d.%d", ZERO_VERSION_MAJOR, ZERO_VERSION_MINOR, ZERO_VERSION_PATCH);
    CU_ASSERT_STRING_EQUAL(zero_version(), expect);
    CU_ASSERT_EQUAL(zero_version_code(), ZERO_VERSION_CODE);
}

static void test_small_alloc_accounting(void)
{
    zero_mem_stats_t before, during;
    char *a, *b, *s;
    zero_mem_get_stats(&before);
    a = zero_malloc(1000);
    b = zero_calloc(10, 30);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (int i = 0; i < 300; i++)
        CU_ASSERT_EQUAL(b[i], 0);
    zero_mem_get_stats(&during);
    CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_HOST] - before.live_bytes[ZERO_MEM_HOST], 1300);
    CU_ASSERT_EQUAL(during.live_count[ZERO_MEM_HOST] - before.live_count[ZERO_MEM_HOST], 2);
    a = zero_realloc(a, 5000);
    zero_mem_get_stats(&during);
    CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_HOST] - before.live_bytes[ZERO_MEM_HOST], 5300);
    s = zero_asprintf("%s-%d", "rank", 42);
    CU_ASSERT_STRING_EQUAL(s, "rank-42");
    zero_string_free(s);
    s = zero_strndup("abcdef", 3);
    CU_ASSERT_STRING_EQUAL(s, "abc");
    zero_free(s);
    zero_free(a);
    zero_free(b);
    zero_free(NULL);
    zero_mem_get_stats(&during);
    CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_HOST], before.live_bytes[ZERO_MEM_HOST]);
    CU_ASSERT_EQUAL(during.live_count[ZERO_MEM_HOST], before.live_count[ZERO_MEM_HOST]);
    CU_ASSERT(during.peak_bytes[ZERO_MEM_HOST] >= before.live_bytes[ZERO_MEM_HOST] + 5300);
    /* overflowing requests fail cleanly */
    CU_ASSERT_PTR_NULL(zero_calloc(SIZE_MAX / 2, 4));
    CU_ASSERT_PTR_NULL(zero_malloc(SIZE_MAX));
}

static void test_buffer_alloc_accounting(void)
{
    ZERO_TEST_MEM_MARK();
    void *bufs[100];
    zero_mem_stats_t during;
    for (int i = 0; i < 100; i++) {
        CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_HOST, (size_t)(i + 1) * 100, "test", &bufs[i]), ZERO_OK);
        CU_ASSERT_EQUAL((uintptr_t)bufs[i] % ZERO_MEM_ALIGNMENT, 0);
        memset(bufs[i], 0xab, (size_t)(i + 1) * 100);
        CU_ASSERT_EQUAL(zero_mem_kind_of(bufs[i]), ZERO_MEM_HOST);
    }
    zero_mem_get_stats(&during);
    CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_HOST] - zero_test_mark_.live_bytes[ZERO_MEM_HOST], 100 * 101 / 2 * 100);
    for (int i = 0; i < 100; i += 2)
        zero_mem_free(bufs[i]);
    for (int i = 1; i < 100; i += 2)
        zero_mem_free(bufs[i]);
    CU_ASSERT_EQUAL(zero_mem_kind_of(bufs[0]), -1);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* kB of transparent huge pages in the mapping that holds @p ptr (/proc/self/smaps), or -1. */
static long anon_huge_kb_at(const void *ptr)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int inside = 0;
    long kb = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {   /* a mapping's first line; its fields follow */
            if (inside)
                break;
            inside = (uintptr_t)ptr >= lo && (uintptr_t)ptr < hi;
        } else if (inside && sscanf(line, "AnonHugePages: %ld kB", &kb) == 1) {
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Whether this kernel gives huge pages to a region advised MADV_HUGEPAGE. */
static int thp_offered(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (f == NULL)
        return 0;
    if (fgets(mode, sizeof(mode), f) == NULL)
        mode[0] = '\0';
    fclose(f);
    return strstr(mode, "[always]") != NULL || strstr(mode, "[madvise]") != NULL;
}

static void test_large_alloc_huge_pages(void)
{
    ZERO_TEST_MEM_MARK();
    /* not a whole number of huge pages: the tail is mapped and usable too */
    size_t big = ((size_t)8 << 20) + 100, small = ((size_t)2 << 20) - 64;
    unsigned char *p = NULL, *q = NULL;
    long kb;
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_HOST, big, "huge-test", (void **)&p), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_HOST, small, "small-test", (void **)&q), ZERO_OK);
    CU_ASSERT_EQUAL((uintptr_t)p % ((uintptr_t)2 << 20), 0);
    CU_ASSERT_EQUAL((uintptr_t)q % ZERO_MEM_ALIGNMENT, 0);
    zero_mem_populate(ZERO_MEM_HOST, p, big);
    memset(p, 0x5a, big);
    memset(q, 0xa5, small);
    CU_ASSERT_EQUAL(p[big - 1], 0x5a);
    CU_ASSERT_EQUAL(zero_mem_kind_of(p), ZERO_MEM_HOST);
    kb = anon_huge_kb_at(p);
    if (thp_offered()) {
        /* four whole 2 MiB pages lie inside: at least one must be huge (more
         * where the kernel finds free 2 MiB blocks, normally all four) */
        CU_ASSERT(kb >= 2048);
        if (kb < 2048)
            fprintf(stderr, "huge-test: AnonHugePages %ld kB in the buffer's mapping\n", kb);
    }
    zero_mem_free(p);
    zero_mem_free(q);
    CU_ASSERT_EQUAL(zero_mem_kind_of(p), -1);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_pinned_alloc(void)
{
    ZERO_TEST_MEM_MARK();
    void *p = NULL;
    zero_mem_stats_t during;
    /* 1 MiB fits under the 8 MiB memlock limit even for non-root users. */
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_PINNED, 1 << 20, "pinned-test", &p), ZERO_OK);
    memset(p, 1, 1 << 20);
    zero_mem_get_stats(&during);
    CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_PINNED] - zero_test_mark_.live_bytes[ZERO_MEM_PINNED], 1 << 20);
    zero_mem_free(p);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* The quiet pinned allocation: zero_mem_alloc's accounting and status codes. */
static void test_pinned_try(void)
{
    ZERO_TEST_MEM_MARK();
    void *p = NULL;
    char why[160] = "x";
    zero_mem_stats_t during;
    uint64_t calls = zero_mem_alloc_count();
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc_pinned_try(1 << 20, "pinned-try-test", &p, why, sizeof(why)), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(why, "");
    CU_ASSERT_EQUAL(zero_mem_kind_of(p), ZERO_MEM_PINNED);
    CU_ASSERT_EQUAL(zero_mem_alloc_count(), calls + 1);
    zero_mem_get_stats(&during);
    CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_PINNED] - zero_test_mark_.live_bytes[ZERO_MEM_PINNED], 1 << 20);
    CU_ASSERT_EQUAL(during.live_count[ZERO_MEM_PINNED] - zero_test_mark_.live_count[ZERO_MEM_PINNED], 1);
    zero_mem_free(p);
    {
        /* 0 bytes pins a block; freeing it unlocks it (VmLck, peak_rss.h, back where it
         * was; skipped where mlock is refused or a device pins instead) */
        long before = peak_rss_status_kib("VmLck:");
        if (before >= 0 && zero_mem_alloc_pinned_try(0, "pinned-try-test", &p, why, sizeof(why)) == ZERO_OK) {
            long held = peak_rss_status_kib("VmLck:");
            zero_mem_free(p);
            if (held > before)
                CU_ASSERT_EQUAL(peak_rss_status_kib("VmLck:"), before);
        }
    }
    /* a size that overflows: the same code as zero_mem_alloc's, the cause in why */
    p = NULL;
    CU_ASSERT_EQUAL(zero_mem_alloc_pinned_try(SIZE_MAX, "pinned-try-test", &p, why, sizeof(why)), ZERO_ERR_OVERFLOW);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "overflows"));
    CU_ASSERT_PTR_NULL(p);
    {
        zero_log_level_t old = zero_log_get_level();
        zero_log_set_level(ZERO_LOG_LEVEL_OFF);
        CU_ASSERT_EQUAL(zero_mem_alloc(ZERO_MEM_PINNED, SIZE_MAX, "pinned-test", &p), ZERO_ERR_OVERFLOW);
        /* a host size that only the page rounding of a large (mapped) buffer overflows */
        CU_ASSERT_EQUAL(zero_mem_alloc(ZERO_MEM_HOST, SIZE_MAX - 100, "host-test", &p), ZERO_ERR_OVERFLOW);
        CU_ASSERT_PTR_NULL(p);
        zero_log_set_level(old);
    }
    CU_ASSERT_EQUAL(zero_mem_alloc_pinned_try(16, "pinned-try-test", NULL, why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_mem_alloc_pinned_try(16, "pinned-try-test", &p, NULL, 0), ZERO_OK);   /* why optional */
    zero_mem_free(p);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_device_alloc_without_gpu(void)
{
    ZERO_TEST_MEM_MARK();
    void *p = (void *)0x1;
    zero_status_t st;
    zero_log_level_t old = zero_log_get_level();
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    st = zero_mem_alloc(ZERO_MEM_DEVICE, 4096, "device-test", &p);
    zero_log_set_level(old);
#if !HAVE_CUDA
    CU_ASSERT_EQUAL(st, ZERO_ERR_UNSUPPORTED);   /* a build without CUDA says so, never "no memory" */
#endif
    if (st == ZERO_OK) {
        /* A GPU machine: it must be real, counted device memory that holds data. */
        unsigned char in[4096], out[4096];
        zero_mem_stats_t during;
        CU_ASSERT_PTR_NOT_EQUAL(p, (void *)0x1);
        CU_ASSERT_EQUAL(zero_mem_kind_of(p), ZERO_MEM_DEVICE);
        zero_mem_get_stats(&during);
        CU_ASSERT_EQUAL(during.live_bytes[ZERO_MEM_DEVICE] - zero_test_mark_.live_bytes[ZERO_MEM_DEVICE], 4096);
        for (size_t i = 0; i < sizeof(in); i++)
            in[i] = (unsigned char)(i * 7 + 3);
        memset(out, 0, sizeof(out));
        CU_ASSERT_EQUAL(zero_mem_copy(ZERO_MEM_DEVICE, p, ZERO_MEM_HOST, in, sizeof(in)), ZERO_OK);
        CU_ASSERT_EQUAL(zero_mem_copy(ZERO_MEM_HOST, out, ZERO_MEM_DEVICE, p, sizeof(out)), ZERO_OK);
        CU_ASSERT_EQUAL(memcmp(in, out, sizeof(in)), 0);
        CU_ASSERT_EQUAL(zero_mem_set_zero(ZERO_MEM_DEVICE, p, 1024), ZERO_OK);
        CU_ASSERT_EQUAL(zero_mem_copy(ZERO_MEM_HOST, out, ZERO_MEM_DEVICE, p, sizeof(out)), ZERO_OK);
        for (size_t i = 0; i < sizeof(out); i++)
            if (out[i] != (i < 1024 ? 0 : in[i])) {
                CU_FAIL("device memory after zero_mem_set_zero of its first 1 KiB");
                break;
            }
        zero_mem_free(p);
    } else {
        /* No GPU (or no CUDA build): a clear error, output untouched. */
        CU_ASSERT(st == ZERO_ERR_UNSUPPORTED || st == ZERO_ERR_CUDA || st == ZERO_ERR_NO_MEMORY);
        CU_ASSERT_PTR_EQUAL(p, (void *)0x1);
        CU_ASSERT_EQUAL(zero_mem_kind_of(p), -1);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

typedef struct captured {
    int count;
    zero_log_level_t level;
    int rank;
    char module[32];
    char message[256];
} captured_t;

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    captured_t *c = user;
    c->count++;
    c->level = level;
    c->rank = rank;
    snprintf(c->module, sizeof(c->module), "%s", module);
    snprintf(c->message, sizeof(c->message), "%s", message);
}

static void test_log_callback_and_levels(void)
{
    captured_t c = {0};
    zero_log_level_t old = zero_log_get_level(), parsed;
    zero_log_set_callback(capture, &c);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    zero_log_set_rank(3);
    ZERO_LOG_ERROR("bad %s at %d", "thing", 7);
    CU_ASSERT_EQUAL(c.count, 1);
    CU_ASSERT_EQUAL(c.level, ZERO_LOG_LEVEL_ERROR);
    CU_ASSERT_EQUAL(c.rank, 3);
    CU_ASSERT_STRING_EQUAL(c.module, "zero");
    CU_ASSERT_STRING_EQUAL(c.message, "bad thing at 7");
    ZERO_LOG_INFO("dropped");
    CU_ASSERT_EQUAL(c.count, 1);
    zero_log_set_level(ZERO_LOG_LEVEL_DEBUG);
    {
        /* DEBUG lines say where they come from (path from the source root). */
        char expect[128];
        int line = __LINE__ + 1;
        ZERO_LOG_DEBUG("kept");
        snprintf(expect, sizeof(expect), "tests/util/test_util.c:%d: kept", line);
        CU_ASSERT_STRING_EQUAL(c.message, expect);
    }
    CU_ASSERT_EQUAL(c.count, 2);
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    ZERO_LOG_ERROR("dropped too");
    CU_ASSERT_EQUAL(c.count, 2);
    zero_log_set_rank(-1);
    zero_log_set_callback(NULL, NULL);
    zero_log_set_level(old);

    CU_ASSERT_EQUAL(zero_log_level_parse("DEBUG", &parsed), 0);
    CU_ASSERT_EQUAL(parsed, ZERO_LOG_LEVEL_DEBUG);
    CU_ASSERT_EQUAL(zero_log_level_parse("warning", &parsed), 0);
    CU_ASSERT_EQUAL(parsed, ZERO_LOG_LEVEL_WARN);
    CU_ASSERT_EQUAL(zero_log_level_parse("loud", &parsed), -1);
}

/* Each thread keeps the first ERROR after its mark, printed or not. */
static void *log_other_thread(void *arg)
{
    (void)arg;
    ZERO_LOG_ERROR("from another thread");
    return NULL;
}

static void test_log_error_since_mark(void)
{
    zero_log_level_t old = zero_log_get_level();
    uint64_t mark;
    pthread_t t;
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);   /* below the threshold: kept all the same */
    mark = zero_log_error_mark();
    CU_ASSERT_PTR_NULL(zero_log_error_since(mark));
    ZERO_LOG_WARN("not an error");
    CU_ASSERT_PTR_NULL(zero_log_error_since(mark));
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, log_other_thread, NULL), 0);
    pthread_join(t, NULL);
    CU_ASSERT_PTR_NULL(zero_log_error_since(mark));   /* another thread's error is not this one's */
    ZERO_LOG_ERROR("detected: %s", "the cause");
    ZERO_LOG_ERROR("a caller repeating it");
    CU_ASSERT_PTR_NOT_NULL_FATAL(zero_log_error_since(mark));
    CU_ASSERT_STRING_EQUAL(zero_log_error_since(mark), "detected: the cause");
    mark = zero_log_error_mark();
    CU_ASSERT_PTR_NULL(zero_log_error_since(mark));
    ZERO_LOG_ERROR("next");
    CU_ASSERT_STRING_EQUAL(zero_log_error_since(mark), "next");
    zero_log_set_level(old);
}

/* The one monotonic clock and the one seconds parser. */
static void test_clock_and_seconds(void)
{
    double t0 = zero_clock_now(), t1, s = -1.0;
    zero_log_level_t old = zero_log_get_level();
    zero_clock_sleep(0.02);
    t1 = zero_clock_now();
    CU_ASSERT(t1 - t0 >= 0.019);
    CU_ASSERT(t1 - t0 < 5.0);
    zero_clock_sleep(-1.0);   /* nothing */

    CU_ASSERT_EQUAL(zero_seconds_from_text("2.5", 0.0, 1, 1e6, &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(s, 2.5, 0);
    CU_ASSERT_EQUAL(zero_seconds_from_text("1e3", 0.0, 1, 1e6, &s), 0);
    CU_ASSERT_DOUBLE_EQUAL(s, 1000.0, 0);
    CU_ASSERT_EQUAL(zero_seconds_from_text("0", 0.0, 0, 3600, &s), 0);    /* [0, ...] takes 0 */
    CU_ASSERT_DOUBLE_EQUAL(s, 0.0, 0);
    s = 7.0;
    {
        static const char *const bad[] = {"0", "-1", "", " 5", "5 ", "5s", "nan", "inf", "infinity", "0x10",
                                          "1e400", "3600.5", "abc", NULL};
        for (int i = 0; bad[i] != NULL; i++) {
            int rc = zero_seconds_from_text(bad[i], 0.0, 1, 3600.0, &s);
            CU_ASSERT_EQUAL(rc, -1);
            if (rc != -1)
                fprintf(stderr, "\n  '%s' was accepted as %g seconds\n", bad[i], s);
        }
    }
    CU_ASSERT_DOUBLE_EQUAL(s, 7.0, 0);   /* untouched on failure */
    CU_ASSERT_EQUAL(zero_seconds_from_text(NULL, 0.0, 1, 1.0, &s), -1);

    {
        captured_t c = {0};
        zero_log_set_callback(capture, &c);
        zero_log_set_level(ZERO_LOG_LEVEL_WARN);
        CU_ASSERT_EQUAL(zero_seconds_parse("ZERO_COMM_TIMEOUT", "soon", 0.0, 1, 1e6, &s), ZERO_ERR_INVALID_ARG);
        CU_ASSERT_EQUAL(c.count, 1);
        CU_ASSERT_STRING_EQUAL(c.message, "ZERO_COMM_TIMEOUT='soon' is not a number of seconds in (0, 1e+06]");
        CU_ASSERT_EQUAL(zero_seconds_parse("X", "4", 0.0, 1, 1e6, &s), ZERO_OK);
        CU_ASSERT_EQUAL(c.count, 1);
        CU_ASSERT_DOUBLE_EQUAL(s, 4.0, 0);
        zero_log_set_callback(NULL, NULL);
        zero_log_set_level(old);
    }
}

/* One CPU-feature decision: ZERO_CPU_ISA picks a level, a bad name is an error. */
static void test_cpu_isa(void)
{
    const char *saved = getenv("ZERO_CPU_ISA");
    char keep[32] = "";
    zero_cpu_isa_t best = zero_cpu_isa_detect(), isa;
    zero_log_level_t old = zero_log_get_level();
    if (saved)
        snprintf(keep, sizeof(keep), "%s", saved);
    CU_ASSERT((int)best >= 0 && best < ZERO_CPU_ISA_COUNT);
    CU_ASSERT_STRING_EQUAL(zero_cpu_isa_name(ZERO_CPU_ISA_AVX2), "avx2");
    CU_ASSERT_EQUAL(zero_cpu_isa_from_name("avx512", &isa), 0);
    CU_ASSERT_EQUAL(isa, ZERO_CPU_ISA_AVX512);
    CU_ASSERT_EQUAL(zero_cpu_isa_from_name("AVX2", &isa), -1);

    unsetenv("ZERO_CPU_ISA");
    CU_ASSERT_EQUAL(zero_cpu_isa_choose("test", &isa), ZERO_OK);
    CU_ASSERT_EQUAL(isa, best);
    setenv("ZERO_CPU_ISA", "c", 1);
    CU_ASSERT_EQUAL(zero_cpu_isa_choose("test", &isa), ZERO_OK);
    CU_ASSERT_EQUAL(isa, ZERO_CPU_ISA_C);
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    isa = ZERO_CPU_ISA_AVX2;
    setenv("ZERO_CPU_ISA", "sse9", 1);
    CU_ASSERT_EQUAL(zero_cpu_isa_choose("test", &isa), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(isa, ZERO_CPU_ISA_AVX2);   /* untouched */
    if (best < ZERO_CPU_ISA_AVX512) {
        setenv("ZERO_CPU_ISA", "avx512", 1);   /* above this CPU: refused, not lowered */
        CU_ASSERT_EQUAL(zero_cpu_isa_choose("test", &isa), ZERO_ERR_UNSUPPORTED);
    }
    CU_ASSERT_EQUAL(zero_cpu_isa_check(ZERO_CPU_ISA_COUNT, "test"), ZERO_ERR_INVALID_ARG);
    zero_log_set_level(old);
    if (saved)
        setenv("ZERO_CPU_ISA", keep, 1);
    else
        unsetenv("ZERO_CPU_ISA");
}

static void test_errno_check_macro(void)
{
    zero_status_t status = ZERO_OK;
    captured_t c = {0};
    zero_log_level_t old = zero_log_get_level();
    zero_log_set_callback(capture, &c);
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    errno = ENOENT;
    ZERO_ERRNO_CHECK_GOTO(0, status, out, "open %s", "/nonexistent");
    CU_FAIL("check macro did not jump");
out:
    zero_log_set_callback(NULL, NULL);
    zero_log_set_level(old);
    CU_ASSERT_EQUAL(status, ZERO_ERR_NOT_FOUND);
    CU_ASSERT_EQUAL(c.count, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, "open /nonexistent: "));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, strerror(ENOENT)));
}

typedef struct sum_job {
    atomic_ullong sum;
    atomic_int per_thread[8];
} sum_job_t;

static void add_task(void *arg, size_t task, int thread)
{
    sum_job_t *job = arg;
    atomic_fetch_add(&job->sum, task + 1);
    atomic_fetch_add(&job->per_thread[thread], 1);
}

static void test_thread_pool(void)
{
    ZERO_TEST_MEM_MARK();
    for (int threads = 1; threads <= 4; threads++) {
        zero_thread_pool_t *pool = NULL;
        CU_ASSERT_EQUAL_FATAL(zero_thread_pool_create(threads, &pool), ZERO_OK);
        CU_ASSERT_EQUAL(zero_thread_pool_size(pool), threads);
        for (int round = 0; round < 50; round++) {
            sum_job_t job;
            size_t n = (size_t)(round * 37 + 1);
            int total = 0;
            atomic_init(&job.sum, 0);
            for (int t = 0; t < 8; t++)
                atomic_init(&job.per_thread[t], 0);
            zero_thread_pool_parallel_for(pool, n, add_task, &job);
            CU_ASSERT_EQUAL(atomic_load(&job.sum), (unsigned long long)(n * (n + 1) / 2));
            for (int t = 0; t < 8; t++) {
                total += atomic_load(&job.per_thread[t]);
                if (t >= threads)
                    CU_ASSERT_EQUAL(atomic_load(&job.per_thread[t]), 0);
            }
            CU_ASSERT_EQUAL(total, (int)n);
        }
        zero_thread_pool_destroy(pool);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
    {
        zero_thread_pool_t *pool = (void *)0x1;
        zero_log_level_t old = zero_log_get_level();
        zero_log_set_level(ZERO_LOG_LEVEL_OFF);
        CU_ASSERT_EQUAL(zero_thread_pool_create(0, &pool), ZERO_ERR_INVALID_ARG);
        zero_log_set_level(old);
        CU_ASSERT_PTR_EQUAL(pool, (void *)0x1);
    }
}

static void test_split_range(void)
{
    size_t counts[] = {0, 1, 7, 64, 1000, 1000003};
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        for (size_t parts = 1; parts <= 5; parts++) {
            size_t expect_begin = 0;
            for (size_t p = 0; p < parts; p++) {
                size_t b, e;
                zero_split_range(counts[c], parts, p, 16, &b, &e);
                CU_ASSERT_EQUAL(b, expect_begin);
                CU_ASSERT(e >= b);
                if (e < counts[c])
                    CU_ASSERT_EQUAL(e % 16, 0);
                expect_begin = e;
            }
            CU_ASSERT_EQUAL(expect_begin, counts[c]);
        }
    }
}

static void test_half_conversions(void)
{
    /* Every fp16 and bf16 bit pattern: decode, re-encode, compare with the
     * compiler's own conversion (GCC's _Float16 on x86-64 rounds to nearest even). */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = zero_f16_to_f32((uint16_t)h);
        zero_f16_t ref; memcpy(&ref, &(uint16_t){(uint16_t)h}, 2);
        if (isnan((float)ref)) {
            CU_ASSERT(isnan(f));
            continue;
        }
        CU_ASSERT_EQUAL(f, (float)ref);
        CU_ASSERT_EQUAL(zero_f32_to_f16(f), (uint16_t)h);
        CU_ASSERT(zero_f32_to_bf16(zero_bf16_to_f32((uint16_t)h)) == (uint16_t)h ||
                  isnan(zero_bf16_to_f32((uint16_t)h)));
    }
    /* Random floats (including subnormal-range and overflow) against _Float16. */
    srand(1234);
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = ((uint32_t)rand() << 16) ^ (uint32_t)rand();
        float f = zero_bits_f32(bits);
        zero_f16_t ref = (zero_f16_t)f;
        uint16_t ref_bits;
        memcpy(&ref_bits, &ref, 2);
        if (isnan(f)) {
            CU_ASSERT(isnan(zero_f16_to_f32(zero_f32_to_f16(f))));
            CU_ASSERT(isnan(zero_bf16_to_f32(zero_f32_to_bf16(f))));
        } else if (zero_f32_to_f16(f) != ref_bits) {
            CU_FAIL("fp32 -> fp16 differs from _Float16");
            break;
        }
    }
    CU_ASSERT_EQUAL(zero_f32_to_bf16(1.0f), 0x3f80);
    CU_ASSERT_EQUAL(zero_f32_to_bf16(zero_bits_f32(0x3f808000u)), 0x3f80); /* tie to even: down */
    CU_ASSERT_EQUAL(zero_f32_to_bf16(zero_bits_f32(0x3f818000u)), 0x3f82); /* tie to even: up */
    CU_ASSERT_EQUAL(zero_f32_to_f16(65504.0f), 0x7bff);
    CU_ASSERT_EQUAL(zero_f32_to_f16(65520.0f), 0x7c00);
    CU_ASSERT_EQUAL(zero_f32_to_f16(-INFINITY), 0xfc00);
}

/* UCX list values are compared entry by entry, whole, as UCX does
 * (optd_ucx.c adds tcp to a UCX_SOCKADDR_TLS_PRIORITY without that entry;
 * ucx_pins.c reads UCX_TLS, whose entries may carry ":aux"). */
static void test_ucx_list_has(void)
{
    CU_ASSERT_TRUE(zero_ucx_list_has("tcp", "tcp", 0));
    CU_ASSERT_TRUE(zero_ucx_list_has("rdmacm,tcp", "tcp", 0));
    CU_ASSERT_TRUE(zero_ucx_list_has("tcp,rdmacm", "tcp", 0));
    CU_ASSERT_FALSE(zero_ucx_list_has("rdmacm, tcp", "tcp", 0));   /* " tcp" is no entry */
    CU_ASSERT_FALSE(zero_ucx_list_has("tcpx,rdmacm", "tcp", 0));
    CU_ASSERT_FALSE(zero_ucx_list_has("", "tcp", 0));
    CU_ASSERT_FALSE(zero_ucx_list_has("rdmacm,", "tcp", 0));
    CU_ASSERT_FALSE(zero_ucx_list_has("tcp:aux", "tcp", 0));
    CU_ASSERT_TRUE(zero_ucx_list_has("tcp:aux", "tcp", 1));
    CU_ASSERT_TRUE(zero_ucx_list_has("posix,tcp:aux", "tcp", 1));
    CU_ASSERT_FALSE(zero_ucx_list_has("tcpx:aux", "tcp", 1));
}

/* What UCX's printer would have printed after the limit: a handler pushed
 * before the limit is called after it (UCX calls the last pushed first). */
static atomic_int ucx_passed;
static ucs_log_func_rc_t count_passed(const char *file, unsigned line, const char *function, ucs_log_level_t level,
                                      const ucs_log_component_config_t *comp_conf, const char *message, va_list ap)
{
    (void)file, (void)line, (void)function, (void)level, (void)comp_conf, (void)message, (void)ap;
    atomic_fetch_add(&ucx_passed, 1);
    return UCS_LOG_FUNC_RC_STOP;   /* nothing printed by UCX */
}

/* UCX's log lines bounded per source line (util/ucx_log.h): of 12
 * warnings from one line, 5 reach UCX's printer and one WARN of ours
 * counts the other 7 with the last one's text at the flush; another line
 * has its own 5; fatal messages always pass. */
static void test_ucx_log_limit(void)
{
    captured_t c = {0};
    zero_log_level_t old = zero_log_get_level();
    ucs_log_push_handler(count_passed);
    zero_ucx_log_limit_install();
    zero_ucx_log_limit_install();   /* once per process */
    zero_log_set_callback(capture, &c);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    for (int i = 0; i < 12; i++)
        ucs_log_dispatch("uct/tcp/tcp_cm.c", 797, "f", UCS_LOG_LEVEL_WARN, &ucs_global_opts.log_component,
                         "attempt %d", i);
    CU_ASSERT_EQUAL(atomic_load(&ucx_passed), 5);
    CU_ASSERT_EQUAL(c.count, 0);   /* counted, not logged before the window ends */
    for (int i = 0; i < 6; i++)
        ucs_log_dispatch("uct/tcp/tcp_cm.c", 140, "f", UCS_LOG_LEVEL_ERROR, &ucs_global_opts.log_component, "e");
    CU_ASSERT_EQUAL(atomic_load(&ucx_passed), 10);
    ucs_log_dispatch("uct/tcp/tcp_cm.c", 797, "f", UCS_LOG_LEVEL_FATAL, &ucs_global_opts.log_component, "fatal");
    CU_ASSERT_EQUAL(atomic_load(&ucx_passed), 11);
    zero_ucx_log_limit_flush();
    CU_ASSERT_EQUAL(c.count, 2);   /* one per line with a count */
    zero_log_set_callback(NULL, NULL);
    zero_log_set_level(old);
    /* the last one logged: tcp_cm.c:140's one counted message */
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, "1 more UCX messages from tcp_cm.c:140"));
    zero_log_set_callback(capture, &c);
    c.count = 0;
    zero_ucx_log_limit_flush();     /* nothing left */
    CU_ASSERT_EQUAL(c.count, 0);
    zero_log_set_callback(NULL, NULL);
    /* the first line's count, checked through a fresh window's flush */
    for (int i = 0; i < 7; i++)
        ucs_log_dispatch("uct/tcp/tcp_cm.c", 797, "f", UCS_LOG_LEVEL_WARN, &ucs_global_opts.log_component,
                         "again %d", i);
    zero_log_set_callback(capture, &c);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    zero_ucx_log_limit_flush();
    CU_ASSERT_EQUAL(c.count, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, "2 more UCX messages from tcp_cm.c:797"));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.message, "the last: again 6"));
    zero_log_set_callback(NULL, NULL);
    zero_log_set_level(old);
}

static void test_dtypes(void)
{
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_FP32), 4);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_FP16), 2);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_BF16), 2);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_U8), 1);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_I32), 4);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_I64), 8);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_F64), 8);
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_DTYPE_COUNT), 0);   /* a count, not a type */
    CU_ASSERT_EQUAL(zero_dtype_size(ZERO_DTYPE_END), 0);
    CU_ASSERT_EQUAL(zero_dtype_size((zero_dtype_t)99), 0);
    CU_ASSERT_STRING_EQUAL(zero_dtype_string(ZERO_BF16), "bf16");
    CU_ASSERT_STRING_EQUAL(zero_dtype_string(ZERO_I64), "i64");
    CU_ASSERT_STRING_EQUAL(zero_dtype_string(ZERO_DTYPE_COUNT), "unknown");
    CU_ASSERT_STRING_EQUAL(zero_mem_kind_string(ZERO_MEM_PINNED), "pinned");
}

static CU_TestInfo util_tests[] = {
    {"status strings are distinct and named", test_status_strings},
    {"version", test_version},
    {"small allocations are counted", test_small_alloc_accounting},
    {"buffers are counted and aligned", test_buffer_alloc_accounting},
    {"large host buffers on huge pages", test_large_alloc_huge_pages},
    {"pinned buffers", test_pinned_alloc},
    {"pinned buffers, quietly (zero_mem_alloc_pinned_try)", test_pinned_try},
    {"device buffers without a GPU fail cleanly", test_device_alloc_without_gpu},
    {"log callback, levels and rank", test_log_callback_and_levels},
    {"first error since a mark, per thread", test_log_error_since_mark},
    {"monotonic clock and the seconds parser", test_clock_and_seconds},
    {"CPU level from ZERO_CPU_ISA or the CPU", test_cpu_isa},
    {"errno check macro", test_errno_check_macro},
    {"thread pool runs every task once", test_thread_pool},
    {"range splitting", test_split_range},
    {"fp16/bf16 conversions", test_half_conversions},
    {"dtypes", test_dtypes},
    {"UCX list entries compared whole", test_ucx_list_has},
    {"UCX's log lines bounded per source line", test_ucx_log_limit},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"util", NULL, NULL, NULL, NULL, util_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
