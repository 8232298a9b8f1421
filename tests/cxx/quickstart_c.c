/*
 * The quick-start (docs/getting-started.md) in C, as the reference the C++
 * runs in test_cxx.cpp must match bit for bit: create an engine from a
 * config, register the parameters, set up, train with the sampler, and
 * return each step's loss and the final weights.
 */
#include "quickstart_c.h"

#include <zero/zero.h>

#include <stdio.h>

int qs_run_c(float *losses, float *weights)
{
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = QS_CONFIG_JSON, .num_threads = 1};
    zero_param_desc_t dw = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY,
                            .name = "fc.weight", .dtype = ZERO_FP32, .ndim = 2, .shape = {QS_OUT, QS_IN},
                            .weight_decay = 1, .init_fn = qs_init};
    zero_param_desc_t db = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY,
                            .name = "fc.bias", .dtype = ZERO_FP32, .ndim = 1, .shape = {QS_OUT},
                            .weight_decay = 0, .init_fn = qs_init};
    zero_sampler_params_t sp = {.num_samples = QS_SAMPLES, .batch_size = 4, .world_size = 1, .rank = 0,
                                .seed = 3, .shuffle = 1};
    zero_engine_h eng = NULL;
    zero_sampler_h sampler = NULL;
    zero_param_h w, b;
    int rc = -1;

    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return -1;
    if (zero_param_register(eng, &dw, &w) != ZERO_OK || zero_param_register(eng, &db, &b) != ZERO_OK ||
        zero_engine_setup(eng) != ZERO_OK || zero_sampler_create(&sp, &sampler) != ZERO_OK)
        goto out;
    for (int step = 0; step < QS_STEPS; step++) {
        float loss = 0.0f;
        uint64_t gas = zero_engine_config(eng)->gradient_accumulation_steps;
        for (uint64_t m = 0; m < gas; m++) {
            uint64_t idx[4];
            size_t n = 0;
            float seed;
            if (zero_sampler_next(sampler, idx, &n, NULL, NULL) != ZERO_OK || zero_backward_begin(eng, &seed) != ZERO_OK)
                goto out;
            loss += qs_forward_backward(zero_param_data(w), zero_param_data(b), zero_param_grad(w),
                                        zero_param_grad(b), idx, n, seed) / (float)gas;
            if (zero_grad_ready(eng, b) != ZERO_OK || zero_grad_ready(eng, w) != ZERO_OK ||
                zero_backward_end(eng) != ZERO_OK || zero_step(eng, NULL) != ZERO_OK)
                goto out;
        }
        losses[step] = loss;
    }
    for (int i = 0; i < QS_OUT * QS_IN; i++)
        weights[i] = ((const float *)zero_param_data(w))[i];
    for (int i = 0; i < QS_OUT; i++)
        weights[QS_OUT * QS_IN + i] = ((const float *)zero_param_data(b))[i];
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "quickstart (C): %s\n", zero_engine_last_error(eng));
    zero_sampler_destroy(sampler);
    zero_engine_destroy(eng);
    return rc;
}
