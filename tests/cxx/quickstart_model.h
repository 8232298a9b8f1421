/*
 * The quick-start's model, shared by its C run (quickstart_c.c) and its C++
 * runs (test_cxx.cpp) so that all of them train exactly the same thing:
 * a linear layer y = W x + b (fp32) fitted by least squares to a fixed target
 * layer on fixed inputs. Written in the common subset of C11 and C++17.
 */
#ifndef QUICKSTART_MODEL_H
#define QUICKSTART_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define QS_IN 8
#define QS_OUT 4
#define QS_SAMPLES 32
#define QS_STEPS 40           /* optimizer steps of each run */

/* Batch 4, two micro-batches per step, ZeRO-2, AdamW: a world of one still
 * runs the sharded path (reduce-scatter, owned-slice update, allgather). */
#define QS_CONFIG_JSON                                                                        \
    "{\"train_micro_batch_size_per_gpu\": 4, \"gradient_accumulation_steps\": 2,"            \
    " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.05, \"weight_decay\": 0.01}}," \
    " \"gradient_clipping\": 1.0, \"zero_optimization\": {\"stage\": 2}, \"steps_per_print\": 0}"

/* A deterministic value in [-1, 1) of an index and a salt (same on every compiler). */
static inline float qs_value(uint32_t i, uint32_t salt)
{
    uint32_t h = (i + 1u) * 2654435761u ^ (salt * 40503u);
    h ^= h >> 13;
    h *= 2246822519u;
    h ^= h >> 16;
    return (float)(h % 2001u) / 1000.0f - 1.0f;
}

/* Initial weights (zero_param_init_fn_t): depend on the element index alone. */
static inline void qs_init(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    size_t i;
    uint32_t salt = (name[3] == 'w') ? 1u : 2u;   /* "fc.weight" or "fc.bias" */
    (void)user_data;
    for (i = 0; i < count; i++)
        out[i] = 0.1f * qs_value((uint32_t)(offset + i), salt);
}

static inline float qs_input(uint64_t sample, int k) { return qs_value((uint32_t)(sample * QS_IN + (uint64_t)k), 3u); }

/* The target: a fixed layer the model should learn. */
static inline float qs_target(uint64_t sample, int o)
{
    float y = 0.5f * qs_value((uint32_t)o, 5u);
    int k;
    for (k = 0; k < QS_IN; k++)
        y += qs_value((uint32_t)(o * QS_IN + k), 4u) * qs_input(sample, k);
    return y;
}

/*
 * Forward and backward of one micro-batch: returns the mean over the batch
 * of 0.5 * |W x + b - y|^2 and adds seed * its gradient into gw and gb
 * (the engine's gradient buffers).
 */
static inline float qs_forward_backward(const float *w, const float *b, float *gw, float *gb,
                                        const uint64_t *samples, size_t count, float seed)
{
    double loss = 0.0;
    size_t s;
    int o, k;
    for (s = 0; s < count; s++) {
        for (o = 0; o < QS_OUT; o++) {
            float y = b[o], d;
            for (k = 0; k < QS_IN; k++)
                y += w[o * QS_IN + k] * qs_input(samples[s], k);
            d = y - qs_target(samples[s], o);
            loss += 0.5 * (double)d * (double)d;
            d *= seed / (float)count;
            gb[o] += d;
            for (k = 0; k < QS_IN; k++)
                gw[o * QS_IN + k] += d * qs_input(samples[s], k);
        }
    }
    return (float)(loss / (double)count);
}

#endif /* QUICKSTART_MODEL_H */
