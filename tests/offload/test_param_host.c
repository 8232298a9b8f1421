/*
 * The host parameter shards of offload_param "cpu" for device ranks
 * (lib/offload/param_host.c), host side only (device -1; the copies need a
 * GPU and are checked by engine-device-offload):
 *  - the shards: one per group, zeroed, the group's length in its dtype, not
 *    overlapping; the bytes reported are the shards' and the slots';
 *  - the chunk plan: a transfer of n elements is cut into chunks that cover
 *    [0, n) in order, each at most one slot of the group's dtype, through
 *    consecutive slots of the ring, the position carrying over from one
 *    transfer to the next (so any buffer_count consecutive chunks use
 *    distinct slots, and a slot is refilled only buffer_count chunks later);
 *  - pinning refused (pin_limit below one slot): one warning naming
 *    "offload_param transfer slots", pageable slots, the same plan;
 *  - bad options and out-of-range transfers are refused; copies without a
 *    device are ZERO_ERR_UNSUPPORTED.
 */
#include "offload/param_host.h"
#include "test_main.h"

#include <zero/zero.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static zero_param_host_options_t options(unsigned slots, size_t slot_bytes)
{
    zero_param_host_options_t o;
    memset(&o, 0, sizeof(o));
    o.num_groups = 2;
    o.dtype[0] = ZERO_BF16;
    o.length[0] = 1001;
    o.dtype[1] = ZERO_FP32;
    o.length[1] = 37;
    o.slots = slots;
    o.slot_bytes = slot_bytes;
    o.device = -1;
    return o;
}

static void test_shards(void)
{
    zero_param_host_options_t o = options(3, 100);
    zero_param_host_t *ph = NULL;
    zero_param_host_stats_t st;
    unsigned char *a, *b;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_param_host_create(&o, &ph), ZERO_OK);
    a = zero_param_host_shard(ph, 0);
    b = zero_param_host_shard(ph, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    for (size_t i = 0; i < 1001 * 2; i++)
        CU_ASSERT_EQUAL_FATAL(a[i], 0);
    for (size_t i = 0; i < 37 * 4; i++)
        CU_ASSERT_EQUAL_FATAL(b[i], 0);
    /* not overlapping: writing one leaves the other */
    memset(a, 0xab, 1001 * 2);
    memset(b, 0xcd, 37 * 4);
    CU_ASSERT_EQUAL(a[1001 * 2 - 1], 0xab);
    CU_ASSERT_EQUAL(b[0], 0xcd);
    CU_ASSERT_EQUAL(zero_param_host_slot_elems(ph, 0), 50);
    CU_ASSERT_EQUAL(zero_param_host_slot_elems(ph, 1), 25);
    zero_param_host_stats(ph, &st);
    CU_ASSERT_EQUAL(st.shard_bytes, 1001 * 2 + 37 * 4);
    CU_ASSERT_EQUAL(st.slots, 3);
    CU_ASSERT_EQUAL(st.slot_bytes, 300);
    CU_ASSERT_EQUAL(st.bytes_up + st.bytes_down, 0);
    zero_param_host_destroy(ph);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Transfers of random lengths of both groups: the chunks and their slots. */
static void check_plan(zero_param_host_t *ph, unsigned slots)
{
    uint64_t state = 0x2545F4914F6CDD1Dull;
    unsigned expect_slot = 0, last_use[64];
    size_t chunk_no = 0;
    for (unsigned i = 0; i < slots; i++)
        last_use[i] = (unsigned)-1;
    for (int t = 0; t < 200; t++) {
        int g = (int)(zero_test_xorshift(&state) % 2);
        size_t n = (size_t)(zero_test_xorshift(&state) % (g == 0 ? 1002 : 38));
        size_t per = zero_param_host_slot_elems(ph, g), done = 0, covered = 0;
        zero_param_host_chunk_t ch;
        while (zero_param_host_next_chunk(ph, g, n, &done, &ch)) {
            CU_ASSERT_EQUAL_FATAL(ch.offset, covered);
            CU_ASSERT_FATAL(ch.count >= 1 && ch.count <= per);
            CU_ASSERT_FATAL(ch.count == per || ch.offset + ch.count == n);   /* only the last is short */
            CU_ASSERT_EQUAL_FATAL(ch.slot, expect_slot);
            /* a slot comes back only after every other slot was used */
            if (last_use[ch.slot] != (unsigned)-1)
                CU_ASSERT_EQUAL_FATAL(chunk_no - last_use[ch.slot], slots);
            last_use[ch.slot] = (unsigned)chunk_no;
            expect_slot = (expect_slot + 1) % slots;
            covered += ch.count;
            chunk_no++;
        }
        CU_ASSERT_EQUAL_FATAL(covered, n);
        CU_ASSERT_EQUAL_FATAL(done, n);
    }
    CU_ASSERT(chunk_no > 1000);
}

static void test_chunk_plan(void)
{
    zero_param_host_options_t o = options(3, 100);
    zero_param_host_t *ph = NULL;
    ZERO_TEST_MEM_MARK();
    CU_ASSERT_EQUAL_FATAL(zero_param_host_create(&o, &ph), ZERO_OK);
    check_plan(ph, 3);
    zero_param_host_destroy(ph);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* pin_limit 1: no slot may be pinned; one warning, the same plan. */
static void test_pinning_refused(void)
{
    zero_param_host_options_t o = options(5, 100);
    zero_param_host_t *ph = NULL;
    zero_param_host_stats_t st;
    FILE *log = tmpfile();
    char line[1024];
    int saved, warnings = 0;
    CU_ASSERT_PTR_NOT_NULL_FATAL(log);
    o.pin = 1;
    o.pin_limit = 1;
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    dup2(fileno(log), STDERR_FILENO);
    CU_ASSERT_EQUAL(zero_param_host_create(&o, &ph), ZERO_OK);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    rewind(log);
    while (fgets(line, sizeof(line), log) != NULL) {
        fputs(line, stderr);
        warnings += strstr(line, "offload_param transfer slots: cannot pin") != NULL;
    }
    fclose(log);
    CU_ASSERT_EQUAL(warnings, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ph);
    zero_param_host_stats(ph, &st);
    CU_ASSERT_EQUAL(st.pinned_slots, 0);
    CU_ASSERT_EQUAL(st.slots, 5);
    check_plan(ph, 5);
    zero_param_host_destroy(ph);
}

static void test_refused(void)
{
    zero_param_host_options_t o = options(3, 100);
    zero_param_host_t *ph = NULL;
    char dev[64];
    void *copied = dev;
    ZERO_TEST_MEM_MARK();
    o.slots = 0;
    CU_ASSERT_EQUAL(zero_param_host_create(&o, &ph), ZERO_ERR_INVALID_ARG);
    o.slots = 65;
    CU_ASSERT_EQUAL(zero_param_host_create(&o, &ph), ZERO_ERR_INVALID_ARG);
    o = options(3, 4);   /* below one fp32 element and the minimum */
    CU_ASSERT_EQUAL(zero_param_host_create(&o, &ph), ZERO_ERR_INVALID_ARG);
    o = options(3, 100);
    o.num_groups = 0;
    CU_ASSERT_EQUAL(zero_param_host_create(&o, &ph), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NULL(ph);
    o = options(3, 100);
    CU_ASSERT_EQUAL_FATAL(zero_param_host_create(&o, &ph), ZERO_OK);
    CU_ASSERT_EQUAL(zero_param_host_upload(ph, 0, 1000, 2, dev, &copied), ZERO_ERR_INVALID_ARG);   /* past the shard */
    CU_ASSERT_PTR_NULL(copied);
    CU_ASSERT_EQUAL(zero_param_host_download(ph, 1, 0, 38, dev), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_param_host_upload(ph, 2, 0, 1, dev, &copied), ZERO_ERR_INVALID_ARG);     /* no such group */
    CU_ASSERT_EQUAL(zero_param_host_upload(ph, 0, 0, 10, dev, &copied), ZERO_ERR_UNSUPPORTED);    /* no device */
    CU_ASSERT_EQUAL(zero_param_host_download(ph, 0, 0, 10, dev), ZERO_ERR_UNSUPPORTED);
    zero_param_host_destroy(ph);
    zero_param_host_destroy(NULL);
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"shards", test_shards},
        {"chunk_plan", test_chunk_plan},
        {"pinning_refused", test_pinning_refused},
        {"refused", test_refused},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {{"offload-param-host", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
    return zero_test_main(argc, argv, suites);
}
