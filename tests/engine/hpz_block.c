/*
 * Under hpZ with qwZ, only a bucket's refreshing gather (over all ranks,
 * quantized) takes a block with room for the wire bytes; the gathers inside
 * the group copy decoded weights and take a block of the weights alone
 * (engine_gather.c, block_bytes). Run on 4 ranks through zero-launch
 * (zero_hpz_partition_size 2).
 *
 * Two fp32 parameters A and B, one bucket each, stage 3, no persistent
 * parameters, stage3_max_live_parameters one bucket and no prefetch, so each
 * gather evicts the other's kept block:
 *   gather A (refreshes A's part of the copy: quantized), release;
 *   gather B (refreshes B's part), release;
 *   gather A again (inside the group, from the copy).
 * Checks: the first gather of A uses more working memory than A's weights
 * (its wire bytes); the second uses exactly A's weights
 * (zero_engine_memory's buffers); and both give the same bits.
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "rank_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUMEL 8192

static void init_cb(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)user;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.001f * (float)((offset + i) % 1013) - 0.3f + (name[0] == 'B' ? 0.1f : 0.0f);
}

/* Gathers @p h, returns the working memory in use then (and a copy of its weights in @p copy, if given). */
static uint64_t gather_buffers(zero_engine_h eng, zero_param_h h, float *copy)
{
    zero_engine_memory_t m;
    uint64_t used = 0;
    zero_status_t st = zero_gather(eng, &h, 1);
    EXPECT(st == ZERO_OK, "zero_gather: %s", zero_engine_last_error(eng));
    if (st != ZERO_OK)
        return 0;
    EXPECT(zero_engine_memory(eng, &m) == ZERO_OK, "zero_engine_memory failed");
    used = m.buffers;
    if (copy != NULL)
        memcpy(copy, zero_param_data(h), NUMEL * sizeof(float));
    EXPECT(zero_release(eng, &h, 1) == ZERO_OK, "zero_release: %s", zero_engine_last_error(eng));
    return used;
}

int main(void)
{
    char json[768];
    zero_comm_h comm;
    zero_engine_h eng = NULL;
    zero_param_h a = NULL, b = NULL;
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                                             ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    zero_param_desc_t da = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = "A", .dtype = ZERO_FP32, .ndim = 1,
                            .shape = {NUMEL}, .init_fn = init_cb};
    zero_param_desc_t db = da;
    static float first[NUMEL], again[NUMEL];
    uint64_t refresh, inside;

    db.name = "B";
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (check_world != 4) {
        fprintf(stderr, "hpz_block: needs 4 ranks\n");
        return 2;
    }
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"train_batch_size\": 4, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.001}},"
             " \"zero_optimization\": {\"stage\": 3, \"reduce_bucket_size\": %d,"
             " \"stage3_param_persistence_threshold\": 0, \"stage3_max_live_parameters\": %d,"
             " \"stage3_prefetch_bucket_size\": 0,"
             " \"zero_hpz_partition_size\": 2, \"zero_quantized_weights\": true}}",
             NUMEL, NUMEL);
    ep.comm = comm;
    if (zero_engine_create(&ep, &eng) != ZERO_OK || zero_param_register(eng, &da, &a) != ZERO_OK ||
        zero_param_register(eng, &db, &b) != ZERO_OK || zero_engine_setup(eng) != ZERO_OK) {
        check_failed(__FILE__, __LINE__, "setting up the engine failed: %s", eng ? zero_engine_last_error(eng) : "");
        goto out;
    }
    refresh = gather_buffers(eng, a, first);
    (void)gather_buffers(eng, b, NULL);
    inside = gather_buffers(eng, a, again);
    fprintf(stderr, "rank %d: working memory of A's gathers: %llu bytes refreshing, %llu inside the group "
            "(A's weights: %zu)\n", check_rank, (unsigned long long)refresh, (unsigned long long)inside,
            NUMEL * sizeof(float));
    EXPECT(refresh > NUMEL * sizeof(float), "the refreshing gather took %llu bytes: no room for its wire bytes",
           (unsigned long long)refresh);
    EXPECT(inside == NUMEL * sizeof(float), "the gather inside the group took %llu bytes, not A's weights (%zu)",
           (unsigned long long)inside, NUMEL * sizeof(float));
    EXPECT(memcmp(first, again, sizeof(first)) == 0, "the two gathers of A differ");
out:
    zero_engine_destroy(eng);
    return rank_check_end(comm);
}
