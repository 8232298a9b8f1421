/*
 * The parameter file of offload_param "nvme" (lib/offload/param_store.c),
 * without the engine:
 *  - max_in_cpu keeps the first max_in_cpu elements of the shards, group
 *    after group, in memory: written through windows closed dirty (random
 *    starts and lengths, 16-bit windows on odd elements, windows across the
 *    split) and read back through windows and the copying read, every byte
 *    equals a plain array, with max_in_cpu 0, inside the first group, across
 *    the groups' boundary and above the whole shard; the bytes it reports in
 *    memory hold the kept part; with every shard kept there is no file at
 *    all (DeepSpeed's default 1e9 and a small model), and a missing
 *    nvme_path is still an error;
 *  - the buffers: with DeepSpeed's default buffer_size (1e8) and a small
 *    shard, all buffer_count buffers together hold about the shard (before:
 *    buffer_count buffers of the whole shard each), while a buffer_size below
 *    the shard keeps its meaning (a window of about buffer_size elements).
 */
#include "offload/param_store.h"
#include "test_main.h"

#include <zero/zero.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char test_dir[64];

static void make_dir(void)
{
    strcpy(test_dir, "/tmp/zero-param-store-test-XXXXXX");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(test_dir));
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) { return zero_test_xorshift(&rng_state); }

/* A parsed config with this offload_param block (stage 3, posix I/O: the
 * test does not depend on io_uring being allowed). */
static zero_config_t *config_with(const char *offload_param)
{
    char json[1024];
    zero_config_t *config = NULL;
    snprintf(json, sizeof(json),
             "{\"train_batch_size\": 1, \"zero_optimization\": {\"stage\": 3, \"offload_param\": {\"device\": "
             "\"nvme\", \"nvme_path\": \"%s\"%s}}, \"aio\": {\"io_backend\": \"posix\", \"block_size\": 65536}}",
             test_dir, offload_param);
    CU_ASSERT_EQUAL(zero_config_parse_string(json, strlen(json), 1, &config, NULL), ZERO_OK);
    return config;
}

/* Two groups, bf16 then fp32, of odd lengths. */
#define LEN0 2501
#define LEN1 1777

static void round_trip(uint64_t max_in_cpu, size_t expect_in_cpu_bytes, int expect_file)
{
    char block[160];
    zero_config_t *config;
    zero_param_store_options_t o;
    zero_param_store_t *ps = NULL;
    zero_store_bytes_t b;
    static uint16_t ref0[LEN0], got0[LEN0];
    static float ref1[LEN1], got1[LEN1];
    void *ref[2] = {ref0, ref1}, *got[2] = {got0, got1};
    const size_t esz[2] = {2, 4}, len[2] = {LEN0, LEN1};
    int bad = 0;

    make_dir();
    snprintf(block, sizeof(block), ", \"buffer_size\": 100, \"buffer_count\": 3, \"max_in_cpu\": %llu",
             (unsigned long long)max_in_cpu);
    config = config_with(block);
    CU_ASSERT_PTR_NOT_NULL_FATAL(config);
    memset(&o, 0, sizeof(o));
    o.num_groups = 2;
    o.dtype[0] = ZERO_BF16;
    o.dtype[1] = ZERO_FP32;
    o.length[0] = LEN0;
    o.length[1] = LEN1;
    o.config = config;
    CU_ASSERT_EQUAL_FATAL(zero_param_store_create(&o, &ps), ZERO_OK);
    zero_param_store_bytes(ps, &b);
    CU_ASSERT(b.resident >= expect_in_cpu_bytes);
    CU_ASSERT_EQUAL(b.elsewhere > 0, expect_file);   /* the file (unlinked at once: not in the directory) */
    if (!expect_file)
        CU_ASSERT_EQUAL(b.resident, expect_in_cpu_bytes);   /* no buffers either */
    memset(ref0, 0, sizeof(ref0));
    memset(ref1, 0, sizeof(ref1));
    /* every element written once in order (as the engine's setup does), then
     * random windows rewritten */
    for (int g = 0; g < 2; g++)
        for (size_t at = 0; at < len[g];) {
            size_t n = len[g] - at < 61 ? len[g] - at : 61;
            zero_param_window_t w = {.group = g, .begin = at, .count = n};
            CU_ASSERT_EQUAL_FATAL(zero_param_store_open(ps, &w), ZERO_OK);
            for (size_t i = 0; i < n * esz[g]; i++)
                ((unsigned char *)w.data)[i] = ((unsigned char *)ref[g])[at * esz[g] + i] = (unsigned char)rng();
            CU_ASSERT_EQUAL(zero_param_store_close(ps, &w, 1), ZERO_OK);
            at += n;
        }
    for (int k = 0; k < 400; k++) {
        int g = (int)(rng() % 2);
        size_t max = zero_param_store_max_window(ps) < len[g] ? zero_param_store_max_window(ps) : len[g];
        size_t n = 1 + (size_t)(rng() % max), at = (size_t)(rng() % (len[g] - n + 1));
        int dirty = (int)(rng() % 2);
        zero_param_window_t w = {.group = g, .begin = at, .count = n};
        if (rng() % 3 == 0)
            CU_ASSERT_EQUAL(zero_param_store_prefetch(ps, g, at, n), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_param_store_open(ps, &w), ZERO_OK);
        bad += memcmp(w.data, (char *)ref[g] + at * esz[g], n * esz[g]) != 0;
        if (dirty)
            for (size_t i = 0; i < n * esz[g]; i++)
                ((unsigned char *)w.data)[i] = ((unsigned char *)ref[g])[at * esz[g] + i] = (unsigned char)rng();
        CU_ASSERT_EQUAL(zero_param_store_close(ps, &w, dirty), ZERO_OK);
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(zero_param_store_flush(ps), ZERO_OK);
    for (int g = 0; g < 2; g++) {
        CU_ASSERT_EQUAL(zero_param_store_read(ps, g, 0, len[g], got[g]), ZERO_OK);
        CU_ASSERT_EQUAL(memcmp(got[g], ref[g], len[g] * esz[g]), 0);
    }
    zero_param_store_destroy(ps);
    zero_config_destroy(config);
    CU_ASSERT_EQUAL(zero_test_dir_entries(test_dir), 0);
    rmdir(test_dir);
}

static void test_max_in_cpu(void)
{
    ZERO_TEST_MEM_MARK();
    round_trip(0, 0, 1);
    round_trip(1001, 1000 * 2, 1);                      /* inside the bf16 group: down to a whole word */
    round_trip(LEN0 + 700, LEN0 * 2 + 700 * 4, 1);      /* all of the bf16 group, part of the fp32 one */
    round_trip(1000000000, LEN0 * 2 + LEN1 * 4, 0);     /* DeepSpeed's default: everything, no file */
    {
        /* no file needed, yet a missing nvme_path is still an error */
        zero_param_store_options_t o;
        zero_param_store_t *ps = NULL;
        zero_config_t *config;
        strcpy(test_dir, "/tmp/zero-param-store-test-no-such-dir");
        config = config_with("");
        CU_ASSERT_PTR_NOT_NULL_FATAL(config);
        memset(&o, 0, sizeof(o));
        o.num_groups = 1;
        o.dtype[0] = ZERO_FP32;
        o.length[0] = 10;
        o.config = config;
        CU_ASSERT_EQUAL(zero_param_store_create(&o, &ps), ZERO_ERR_IO);
        CU_ASSERT_PTR_NULL(ps);
        zero_config_destroy(config);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_buffers_capped(void)
{
    ZERO_TEST_MEM_MARK();
    const size_t n = (size_t)1 << 20;   /* a small model's bf16 shard: 2 MiB */
    zero_config_t *config;
    zero_param_store_options_t o;
    zero_param_store_t *ps = NULL;
    zero_store_bytes_t b;

    make_dir();
    memset(&o, 0, sizeof(o));
    o.num_groups = 1;
    o.dtype[0] = ZERO_BF16;
    o.length[0] = n;
    /* DeepSpeed's defaults (buffer_count 5, buffer_size 1e8) but max_in_cpu 0 */
    config = config_with(", \"max_in_cpu\": 0");
    CU_ASSERT_PTR_NOT_NULL_FATAL(config);
    o.config = config;
    CU_ASSERT_EQUAL_FATAL(zero_param_store_create(&o, &ps), ZERO_OK);
    zero_param_store_bytes(ps, &b);
    fprintf(stderr, "default buffers for a %zu-byte shard: %llu bytes\n", n * 2, (unsigned long long)b.resident);
    /* the shard, and per buffer its alignment (a 4 KiB block for a range not
     * starting on one, one for the allocation) and a word */
    CU_ASSERT(b.resident <= n * 2 + 5 * (2 * 4096 + 4096));
    CU_ASSERT(zero_param_store_max_window(ps) >= n / 5);
    zero_param_store_destroy(ps);
    zero_config_destroy(config);

    /* a buffer_size below the shard: windows of about buffer_size elements */
    config = config_with(", \"max_in_cpu\": 0, \"buffer_size\": 1000");
    CU_ASSERT_PTR_NOT_NULL_FATAL(config);
    o.config = config;
    CU_ASSERT_EQUAL_FATAL(zero_param_store_create(&o, &ps), ZERO_OK);
    CU_ASSERT(zero_param_store_max_window(ps) >= 1000 && zero_param_store_max_window(ps) <= 1002);
    zero_param_store_destroy(ps);
    zero_config_destroy(config);
    rmdir(test_dir);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"max_in_cpu", test_max_in_cpu},
        {"buffers_capped", test_buffers_capped},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {{"offload-param-store", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
