/*
 * Shared by the checkpoint tests and the bench: a small mixed-dtype model,
 * shard data that is a function of (parameter name, element, array), and
 * helpers to fill and verify a rank's owned range.
 *
 * Values are integers below 2^24, exact in fp32, so comparisons are bit-exact.
 */
#ifndef ZERO_TESTS_CKPT_FIXTURE_H
#define ZERO_TESTS_CKPT_FIXTURE_H

#include "ckpt/ckpt.h"
#include "partition/layout.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX_NPARAM 7
static const zero_layout_param_desc_t fix_params[FIX_NPARAM] = {
    {"embed.weight", ZERO_BF16, 2, {50, 33}},
    {"fc1.weight", ZERO_BF16, 2, {37, 19}},
    {"fc1.bias", ZERO_FP32, 1, {37}},
    {"ln.gain", ZERO_BF16, 1, {129}},
    {"head.w", ZERO_FP32, 3, {7, 13, 3}},
    {"scale", ZERO_FP32, 0, {0}},
    {"fc2.weight", ZERO_BF16, 2, {11, 300}},
};

static inline uint32_t fix_hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

/* kind 0: master weights, 1.. optimizer states */
static inline float fix_value(const char *name, size_t i, int kind)
{
    uint32_t v = (fix_hash(name) + (uint32_t)i * 7919u + (uint32_t)kind * 104729u) % 1000003u;
    return (float)v + 1.0f;   /* never 0, so padding (0) is told apart */
}

/* Allocates and fills the owned range of @p rank (shard) of @p L. */
static inline void fix_fill(const zero_layout_t *L, int rank, int num_states, zero_ckpt_group_data_t *g)
{
    for (int gi = 0; gi < L->num_groups; gi++) {
        size_t n = L->groups[gi].shard_length, count = 0;
        zero_layout_segment_t *segs;
        memset(&g[gi], 0, sizeof(g[gi]));
        g[gi].master = calloc(n + 1, sizeof(float));
        for (int k = 0; k < num_states; k++)
            g[gi].state[k] = calloc(n + 1, sizeof(float));
        zero_layout_rank_segments(L, gi, rank, NULL, 0, &count);
        segs = calloc(count + 1, sizeof(*segs));
        zero_layout_rank_segments(L, gi, rank, segs, count, &count);
        for (size_t s = 0; s < count; s++) {
            const char *name = L->params[segs[s].param].name;
            for (size_t j = 0; j < segs[s].length; j++) {
                g[gi].master[segs[s].shard_offset + j] = fix_value(name, segs[s].param_offset + j, 0);
                for (int k = 0; k < num_states; k++)
                    g[gi].state[k][segs[s].shard_offset + j] = fix_value(name, segs[s].param_offset + j, k + 1);
            }
        }
        free(segs);
    }
}

/* Allocates buffers of the owned range filled with @p sentinel. */
static inline void fix_alloc(const zero_layout_t *L, int num_states, float sentinel, zero_ckpt_group_data_t *g)
{
    for (int gi = 0; gi < L->num_groups; gi++) {
        size_t n = L->groups[gi].shard_length;
        memset(&g[gi], 0, sizeof(g[gi]));
        g[gi].master = malloc((n + 1) * sizeof(float));
        for (size_t j = 0; j < n; j++)
            g[gi].master[j] = sentinel;
        for (int k = 0; k < num_states; k++) {
            g[gi].state[k] = malloc((n + 1) * sizeof(float));
            for (size_t j = 0; j < n; j++)
                g[gi].state[k][j] = sentinel;
        }
    }
}

static inline void fix_free(const zero_layout_t *L, zero_ckpt_group_data_t *g)
{
    for (int gi = 0; gi < L->num_groups; gi++) {
        free(g[gi].master);
        for (int k = 0; k < ZERO_CKPT_MAX_STATES; k++)
            free(g[gi].state[k]);
        memset(&g[gi], 0, sizeof(g[gi]));
    }
}

/*
 * Number of elements of rank @p rank's range that differ from what the
 * fixture defines (states_expected: 1 = fix_value, 0 = zeros); padding must be 0.
 */
static inline size_t fix_check(const zero_layout_t *L, int rank, int num_states, int states_expected,
                               const zero_ckpt_group_data_t *g)
{
    size_t bad = 0;
    for (int gi = 0; gi < L->num_groups; gi++) {
        size_t n = L->groups[gi].shard_length, count = 0;
        zero_layout_segment_t *segs;
        char *covered = calloc(n + 1, 1);
        zero_layout_rank_segments(L, gi, rank, NULL, 0, &count);
        segs = calloc(count + 1, sizeof(*segs));
        zero_layout_rank_segments(L, gi, rank, segs, count, &count);
        for (size_t s = 0; s < count; s++) {
            const char *name = L->params[segs[s].param].name;
            for (size_t j = 0; j < segs[s].length; j++) {
                size_t at = segs[s].shard_offset + j;
                covered[at] = 1;
                if (g[gi].master[at] != fix_value(name, segs[s].param_offset + j, 0))
                    bad++;
                for (int k = 0; k < num_states; k++)
                    if (g[gi].state[k][at] != (states_expected ? fix_value(name, segs[s].param_offset + j, k + 1) : 0.0f))
                        bad++;
            }
        }
        for (size_t j = 0; j < n; j++) {
            if (covered[j])
                continue;
            if (g[gi].master[j] != 0.0f)
                bad++;
            for (int k = 0; k < num_states; k++)
                if (g[gi].state[k][j] != 0.0f)
                    bad++;
        }
        free(covered);
        free(segs);
    }
    return bad;
}

static inline void fix_meta(zero_ckpt_meta_t *m, int stage, uint64_t step)
{
    memset(m, 0, sizeof(*m));
    m->stage = stage;
    m->config_json = (char *)"{\"train_batch_size\": 8, \"optimizer\": {\"type\": \"AdamW\"}}";
    strcpy(m->optimizer, "AdamW");
    m->num_states = 2;
    strcpy(m->state_names[0], "exp_avg");
    strcpy(m->state_names[1], "exp_avg_sq");
    m->global_steps = step;
    m->micro_steps = step * 3;
    m->skipped_steps = 2;
    m->loss_scale = 32768.0;
    m->scaler_cur_iter = (int64_t)step;
    m->scaler_last_overflow_iter = 5;
    m->scaler_cur_hysteresis = 1;
    m->lr_last_batch_iteration = (int64_t)step - 2;
    m->lr = 1.25e-4;
    m->momentum = 0.9;
}

#ifdef ZERO_CKPT_CKPT_INTERNAL_H
/* The client_sd every fix_sim_save checkpoint carries. */
#define FIX_CLIENT_SD "{\"step\": 7}"

/* Writes a checkpoint of layout @p L saved by @p proc_world processes, exactly
 * as the collective save would (same files, same commit), one rank after the
 * other, with @p num_states optimizer states. */
static inline zero_status_t fix_sim_save(const char *dir, const char *tag, const zero_layout_t *L, int proc_world,
                                         int stage, uint64_t step, int num_states)
{
    ckpt_err_t err = {0};
    char tmp[512], path[2048];
    zero_ckpt_meta_t meta;
    zero_status_t st;
    fix_meta(&meta, stage, step);
    meta.world_size = proc_world;
    meta.num_states = num_states;
    if ((st = ckpt_make_tmp(dir, tag, 0, tmp, sizeof(tmp), &err)) != ZERO_OK)
        return st;
    for (int r = 0; r < proc_world; r++) {
        zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
        int shard = L->world_size == proc_world ? r : (r == 0 ? 0 : -1);
        char fname[64];
        ckpt_file_desc_t d = {proc_world, r, shard, tag, L, &meta, g, r == 0 ? FIX_CLIENT_SD : NULL};
        memset(g, 0, sizeof(g));
        if (shard >= 0)
            fix_fill(L, shard, num_states, g);
        ckpt_rank_file_name(r, fname, sizeof(fname));
        snprintf(path, sizeof(path), "%s/%s/%s", dir, tmp, fname);
        st = ckpt_write_rank_file(path, &d, &err);
        fix_free(L, g);
        if (st != ZERO_OK)
            return st;
    }
    snprintf(path, sizeof(path), "%s/%s/client_sd.json", dir, tmp);
    if ((st = ckpt_write_file(path, FIX_CLIENT_SD, strlen(FIX_CLIENT_SD), &err)) != ZERO_OK)
        return st;
    return ckpt_commit(dir, tmp, tag, 0, &err);
}
#endif

#endif /* ZERO_TESTS_CKPT_FIXTURE_H */
