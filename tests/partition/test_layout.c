/* lib/partition: the flat layout covers every element exactly once, with the promised geometry. */
#include "test_main.h"
#include "partition/layout.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void quiet(void) { zero_log_set_level(ZERO_LOG_LEVEL_OFF); }
static void loud(void) { zero_log_set_level(ZERO_LOG_LEVEL_WARN); }

/* Checks every invariant of a layout against its descriptors. */
static void check_layout(const zero_layout_t *L, const zero_layout_param_desc_t *d, int n)
{
    size_t granule = L->alignment * (size_t)L->world_size;
    CU_ASSERT_EQUAL_FATAL(L->num_params, n);
    for (int i = 0; i < n; i++) {
        const zero_layout_param_t *p = &L->params[i];
        const zero_layout_bucket_t *b = &L->buckets[p->bucket];
        CU_ASSERT_STRING_EQUAL(p->name, d[i].name);
        CU_ASSERT_EQUAL(p->offset % L->alignment, 0);
        CU_ASSERT_EQUAL(L->groups[p->group].dtype, d[i].dtype);
        CU_ASSERT_EQUAL(b->group, p->group);
        CU_ASSERT(p->offset >= b->offset);
        CU_ASSERT(p->offset + p->numel <= b->offset + b->length);
        CU_ASSERT_EQUAL(zero_layout_find(L, d[i].name), i);
        /* parameters of a group never overlap and keep registration order */
        for (int j = i + 1; j < n; j++)
            if (L->params[j].group == p->group)
                CU_ASSERT(L->params[j].offset >= p->offset + p->numel);
    }
    for (int g = 0; g < L->num_groups; g++) {
        const zero_layout_group_t *grp = &L->groups[g];
        size_t offset = 0;
        CU_ASSERT_EQUAL(grp->length % granule, 0);
        CU_ASSERT_EQUAL(grp->shard_length * (size_t)L->world_size, grp->length);
        for (int b = grp->first_bucket; b < grp->first_bucket + grp->num_buckets; b++) {
            const zero_layout_bucket_t *bk = &L->buckets[b];
            int params_in = 0;
            CU_ASSERT_EQUAL(bk->offset, offset);
            CU_ASSERT(bk->length > 0);
            CU_ASSERT_EQUAL(bk->length % granule, 0);
            CU_ASSERT(bk->used <= bk->length);
            CU_ASSERT(bk->length - bk->used < granule || bk->used == 0);
            for (int i = bk->first_param; i < bk->first_param + bk->num_params; i++)
                if (L->params[i].group == g && L->params[i].bucket == b)
                    params_in++;
            CU_ASSERT(params_in >= 1);
            /* a bucket over the size holds exactly one parameter */
            if (bk->used > L->bucket_elems)
                CU_ASSERT_EQUAL(params_in, 1);
            offset += bk->length;
        }
        CU_ASSERT_EQUAL(offset, grp->length);

        /* Every element of every parameter of the group is owned by exactly one rank. */
        {
            unsigned char *owned = calloc(grp->length ? grp->length : 1, 1);
            for (int r = 0; r < L->world_size; r++) {
                size_t count = 0, prev_end = 0;
                zero_layout_segment_t *segs;
                zero_layout_rank_segments(L, g, r, NULL, 0, &count);
                segs = calloc(count ? count : 1, sizeof(*segs));
                zero_layout_rank_segments(L, g, r, segs, count, &count);
                for (size_t s = 0; s < count; s++) {
                    const zero_layout_param_t *p = &L->params[segs[s].param];
                    size_t flat = p->offset + segs[s].param_offset;
                    CU_ASSERT(segs[s].length > 0);
                    CU_ASSERT(segs[s].param_offset + segs[s].length <= p->numel);
                    CU_ASSERT(segs[s].shard_offset >= prev_end);          /* in shard order */
                    CU_ASSERT(segs[s].shard_offset + segs[s].length <= grp->shard_length);
                    prev_end = segs[s].shard_offset + segs[s].length;
                    /* shard offset and flat offset agree through the bucket slice */
                    {
                        size_t sb, se;
                        zero_layout_bucket_slice(L, p->bucket, r, &sb, &se);
                        CU_ASSERT(flat >= sb && flat + segs[s].length <= se);
                        CU_ASSERT_EQUAL(segs[s].shard_offset,
                                        zero_layout_bucket_shard_offset(L, p->bucket) + (flat - sb));
                    }
                    for (size_t k = 0; k < segs[s].length; k++)
                        owned[flat + k]++;
                }
                free(segs);
            }
            for (int i = 0; i < n; i++) {
                const zero_layout_param_t *p = &L->params[i];
                if (p->group != g)
                    continue;
                for (size_t k = 0; k < p->numel; k++) {
                    if (owned[p->offset + k] != 1) {
                        CU_FAIL("element not owned exactly once");
                        break;
                    }
                    owned[p->offset + k] = 0;
                }
            }
            for (size_t k = 0; k < grp->length; k++)
                if (owned[k] != 0) {
                    CU_FAIL("padding reported as a parameter segment");
                    break;
                }
            free(owned);
        }
    }
}

static void test_small_known_layout(void)
{
    ZERO_TEST_MEM_MARK();
    zero_layout_param_desc_t d[3] = {
        {"wte", ZERO_BF16, 2, {10, 7}},     /* 70 */
        {"ln.bias", ZERO_BF16, 1, {5}},     /* 5 */
        {"head", ZERO_BF16, 2, {100, 3}},   /* 300: larger than the bucket */
    };
    zero_layout_t *L = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, 3, 2, 8, 100, &L), ZERO_OK);
    /* wte at 0..70, ln.bias aligned to 72..77 (bucket 0: used 77 -> 80), head alone at 80..380 -> 384 */
    CU_ASSERT_EQUAL(L->num_groups, 1);
    CU_ASSERT_EQUAL(L->num_buckets, 2);
    CU_ASSERT_EQUAL(L->params[0].offset, 0);
    CU_ASSERT_EQUAL(L->params[1].offset, 72);
    CU_ASSERT_EQUAL(L->params[2].offset, 80);
    CU_ASSERT_EQUAL(L->buckets[0].length, 80);
    CU_ASSERT_EQUAL(L->buckets[1].length, 304);
    CU_ASSERT_EQUAL(L->groups[0].length, 384);
    CU_ASSERT_EQUAL(L->groups[0].shard_length, 192);
    {
        size_t b, e;
        zero_layout_bucket_slice(L, 1, 1, &b, &e);
        CU_ASSERT_EQUAL(b, 80 + 152);
        CU_ASSERT_EQUAL(e, 384);
    }
    check_layout(L, d, 3);
    zero_layout_destroy(L);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_random_layouts(void)
{
    ZERO_TEST_MEM_MARK();
    srand(7);
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + rand() % 12;
        zero_layout_param_desc_t d[12];
        char names[12][16];
        int world = 1 + rand() % 5;
        size_t align = (size_t)1 << (rand() % 7);
        size_t bucket = 1 + (size_t)(rand() % 3000);
        zero_layout_t *L = NULL;
        for (int i = 0; i < n; i++) {
            snprintf(names[i], sizeof(names[i]), "p%d", i);
            d[i].name = names[i];
            d[i].dtype = (zero_dtype_t)(rand() % 10 < 8 ? ZERO_BF16 : rand() % ZERO_DTYPE_COUNT);
            d[i].ndim = rand() % 4;
            for (int k = 0; k < d[i].ndim; k++)
                d[i].shape[k] = rand() % 9 == 0 ? 0 : 1 + rand() % 40;
        }
        CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, n, world, align, bucket, &L), ZERO_OK);
        check_layout(L, d, n);
        zero_layout_destroy(L);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_fingerprint_and_model_compare(void)
{
    ZERO_TEST_MEM_MARK();
    zero_layout_param_desc_t d[2] = {{"a", ZERO_FP32, 1, {100}}, {"b", ZERO_FP32, 2, {3, 4}}};
    zero_layout_param_desc_t e[2] = {{"a", ZERO_FP32, 1, {100}}, {"b", ZERO_FP32, 2, {4, 3}}};
    zero_layout_t *L1, *L2, *L3, *L4;
    char why[256];
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, 2, 2, 4, 64, &L1), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, 2, 2, 4, 64, &L2), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, 2, 3, 4, 64, &L3), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(e, 2, 2, 4, 64, &L4), ZERO_OK);
    CU_ASSERT_EQUAL(zero_layout_fingerprint(L1), zero_layout_fingerprint(L2));
    CU_ASSERT_NOT_EQUAL(zero_layout_fingerprint(L1), zero_layout_fingerprint(L3));
    CU_ASSERT_NOT_EQUAL(zero_layout_fingerprint(L1), zero_layout_fingerprint(L4));
    CU_ASSERT_TRUE(zero_layout_same_model(L1, L3, why, sizeof(why)));
    CU_ASSERT_FALSE(zero_layout_same_model(L1, L4, why, sizeof(why)));
    CU_ASSERT_STRING_EQUAL(why, "parameter b: shapes differ");
    zero_layout_destroy(L1);
    zero_layout_destroy(L2);
    zero_layout_destroy(L3);
    zero_layout_destroy(L4);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_bad_requests(void)
{
    ZERO_TEST_MEM_MARK();
    zero_layout_t *L = (zero_layout_t *)0x1;
    zero_layout_param_desc_t dup[2] = {{"w", ZERO_FP32, 1, {4}}, {"w", ZERO_FP32, 1, {4}}};
    zero_layout_param_desc_t neg[1] = {{"w", ZERO_FP32, 1, {-4}}};
    zero_layout_param_desc_t noname[1] = {{"", ZERO_FP32, 1, {4}}};
    zero_layout_param_desc_t baddt[1] = {{"w", (zero_dtype_t)7, 1, {4}}};
    zero_layout_param_desc_t huge[1] = {{"w", ZERO_FP32, 3, {INT64_MAX, INT64_MAX, 4}}};
    zero_layout_param_desc_t ndim[1] = {{"w", ZERO_FP32, 9, {1}}};
    quiet();
    CU_ASSERT_EQUAL(zero_layout_build(dup, 2, 2, 4, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(neg, 1, 2, 4, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(noname, 1, 2, 4, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(baddt, 1, 2, 4, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(huge, 1, 2, 4, 64, &L), ZERO_ERR_OVERFLOW);
    CU_ASSERT_EQUAL(zero_layout_build(ndim, 1, 2, 4, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(dup, 1, 0, 4, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(dup, 1, 2, 0, 64, &L), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_layout_build(dup, 1, 2, 4, 0, &L), ZERO_ERR_INVALID_ARG);
    loud();
    CU_ASSERT_PTR_EQUAL(L, (zero_layout_t *)0x1);   /* output untouched on failure */
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* Fixed offsets (a trainer's own buffer, adopted): the offsets as given, one
 * bucket per fixed group padded at its end to world x alignment, each rank's
 * slice one contiguous range; the other dtype's group is laid out as usual;
 * mixing, overlapping or decreasing offsets are errors. */
static void test_fixed_offsets(void)
{
    zero_layout_param_desc_t d[5] = {{"wte", ZERO_FP32, 2, {7, 5}}, {"n", ZERO_BF16, 1, {100}},
                                     {"qkvw", ZERO_FP32, 3, {2, 3, 5}}, {"m", ZERO_BF16, 1, {10}},
                                     {"lnf", ZERO_FP32, 1, {3}}};
    size_t offsets[5] = {0, ZERO_LAYOUT_NO_OFFSET, 35, ZERO_LAYOUT_NO_OFFSET, 70};   /* a gap at 65..69 */
    zero_layout_t *L = NULL;
    size_t count = 0;
    zero_layout_segment_t seg[8];
    CU_ASSERT_EQUAL_FATAL(zero_layout_build_at(d, offsets, 5, 3, 16, 1000, &L), ZERO_OK);
    CU_ASSERT_EQUAL(L->groups[0].fixed, 1);
    CU_ASSERT_EQUAL(L->groups[1].fixed, 0);
    CU_ASSERT_EQUAL(L->groups[0].num_buckets, 1);
    CU_ASSERT_EQUAL(L->groups[0].length, 96);   /* 73 rounded up to 3 x 16 */
    CU_ASSERT_EQUAL(L->groups[0].shard_length, 32);
    CU_ASSERT_EQUAL(L->params[0].offset, 0);
    CU_ASSERT_EQUAL(L->params[2].offset, 35);
    CU_ASSERT_EQUAL(L->params[4].offset, 70);
    CU_ASSERT_EQUAL(L->params[1].offset % 16, 0);   /* the other group: aligned as always */
    CU_ASSERT_EQUAL(L->params[3].offset % 16, 0);
    /* rank 1 owns [32, 64): wte's last 3 elements, then qkvw's first 29 */
    zero_layout_rank_segments(L, 0, 1, seg, 8, &count);
    CU_ASSERT_EQUAL_FATAL(count, 2);
    CU_ASSERT_EQUAL(seg[0].param, 0);
    CU_ASSERT_EQUAL(seg[0].param_offset, 32);
    CU_ASSERT_EQUAL(seg[0].length, 3);
    CU_ASSERT_EQUAL(seg[1].param, 2);
    CU_ASSERT_EQUAL(seg[1].param_offset, 0);
    CU_ASSERT_EQUAL(seg[1].shard_offset, 3);
    CU_ASSERT_EQUAL(seg[1].length, 29);
    zero_layout_rank_segments(L, 0, 2, seg, 8, &count);   /* [64, 96): qkvw's last, then lnf after the gap */
    CU_ASSERT_EQUAL_FATAL(count, 2);
    CU_ASSERT_EQUAL(seg[0].length, 1);
    CU_ASSERT_EQUAL(seg[1].param, 4);
    CU_ASSERT_EQUAL(seg[1].shard_offset, 6);
    {
        size_t moved[5] = {0, ZERO_LAYOUT_NO_OFFSET, 36, ZERO_LAYOUT_NO_OFFSET, 70};
        zero_layout_t *M = NULL;
        CU_ASSERT_EQUAL_FATAL(zero_layout_build_at(d, moved, 5, 3, 16, 1000, &M), ZERO_OK);
        CU_ASSERT_NOT_EQUAL(zero_layout_fingerprint(L), zero_layout_fingerprint(M));   /* offsets decide too */
        zero_layout_destroy(M);
    }
    zero_layout_destroy(L);
    quiet();
    {
        size_t mixed[5] = {0, ZERO_LAYOUT_NO_OFFSET, ZERO_LAYOUT_NO_OFFSET, ZERO_LAYOUT_NO_OFFSET, 70};
        size_t overlap[5] = {0, ZERO_LAYOUT_NO_OFFSET, 34, ZERO_LAYOUT_NO_OFFSET, 70};
        size_t decreasing[5] = {40, ZERO_LAYOUT_NO_OFFSET, 0, ZERO_LAYOUT_NO_OFFSET, 70};
        L = NULL;
        CU_ASSERT_EQUAL(zero_layout_build_at(d, mixed, 5, 3, 16, 1000, &L), ZERO_ERR_INVALID_ARG);
        CU_ASSERT_EQUAL(zero_layout_build_at(d, overlap, 5, 3, 16, 1000, &L), ZERO_ERR_INVALID_ARG);
        CU_ASSERT_EQUAL(zero_layout_build_at(d, decreasing, 5, 3, 16, 1000, &L), ZERO_ERR_INVALID_ARG);
        CU_ASSERT_PTR_NULL(L);
    }
    loud();
}

static CU_TestInfo layout_tests[] = {
    {"fixed offsets: the caller's packed buffer, one bucket", test_fixed_offsets},
    {"small layout with known offsets", test_small_known_layout},
    {"random layouts keep every invariant", test_random_layouts},
    {"fingerprint and model comparison", test_fingerprint_and_model_compare},
    {"bad requests are errors", test_bad_requests},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"partition", NULL, NULL, NULL, NULL, layout_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
