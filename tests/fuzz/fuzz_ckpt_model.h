/*
 * The small model of the checkpoint fuzz targets and their seed generator
 * (fuzz_make_ckpt_seeds.c): mixed dtypes, a scalar, a 3-D tensor, small
 * buckets, so a rank file of a few KiB still has several groups, buckets,
 * datasets and chunks.
 */
#ifndef ZERO_FUZZ_CKPT_MODEL_H
#define ZERO_FUZZ_CKPT_MODEL_H

#include "partition/layout.h"

#define FUZZ_CKPT_NPARAM 5
#define FUZZ_CKPT_ALIGN 8
#define FUZZ_CKPT_BUCKET 24
#define FUZZ_CKPT_TAG "t"

static const zero_layout_param_desc_t fuzz_ckpt_params[FUZZ_CKPT_NPARAM] = {
    {"embed.weight", ZERO_BF16, 2, {6, 5}},
    {"fc.bias", ZERO_FP32, 1, {7}},
    {"ln.gain", ZERO_BF16, 1, {9}},
    {"head.w", ZERO_FP32, 3, {2, 3, 2}},
    {"scale", ZERO_FP32, 0, {0}},
};

#endif /* ZERO_FUZZ_CKPT_MODEL_H */
