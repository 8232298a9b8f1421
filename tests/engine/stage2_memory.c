/*
 * Stage 2 needs no more memory than stage 1 (issue 18), run on every rank
 * through zero-launch at world sizes 2 and 3.
 *
 * For a model several reduction buckets large (reduce_bucket_size a fifth of
 * the model) and one a single bucket large (the default 5e8), in fp32 and
 * bf16, it sets up a stage-1 and a stage-2 engine on the same parameters,
 * trains three steps of two micro-batches each, and checks on every rank:
 *  - stage 2's total (model state, pools, buffers) is at most stage 1's, after
 *    setup and after training;
 *  - stage 2's gradient staging is backed at setup (pools == pools_bound), so
 *    the steps fault no pages in, and no step needs memory beyond it: the most
 *    working buffers ever in use (buffers_peak) fit in the pools and total does
 *    not move across steps;
 *  - between steps no staging buffer is in use (buffers == 0);
 *  - for a trainer that marks each gradient ready as its backward produces
 *    it; one that marks none before zero_backward_end holds every bucket's
 *    gradients at once (stage 2 then stages them all, in one-off buffers
 *    beyond the pool), so for it only the buffers between steps and the
 *    weights are checked; mark_ready 2 is 1 with the late-write guard on
 *    (zero_optimization.check_grad_writes), which defers each bucket's
 *    reduction to the trainer's next call and must stay within the same memory;
 *  - stage 2's weights equal stage 1's within rounding after the steps (a
 *    lost or double-counted bucket would be far off).
 *
 * Exit status: the number of failed checks (0 = all passed).
 */
#include <zero/zero.h>

#include "rank_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPARAM 8
#define STEPS 3
#define GAS 2

/* About 1.1e5 elements in parameters of different sizes. */
static const int64_t numels[NPARAM] = {30000, 1000, 20000, 333, 25000, 64, 24000, 10007};

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)user;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.01f * (float)((offset + i + (size_t)name[1]) % 97) - 0.4f;
}

/* Positive and different on every rank. */
static float grad_value(int step, int micro, int rank, int p, size_t i)
{
    return 0.001f * (float)((i * 7 + (size_t)p * 13 + (size_t)step * 5 + (size_t)micro * 3 + (size_t)rank) % 41) +
           0.003f;   /* never near 0 on average: Adam's m / sqrt(v) of a gradient that averages to
                         rounding noise would amplify the noise the two stages' different summation
                         orders leave */
}

typedef struct run_result {
    zero_engine_memory_t after_setup, after_steps;
    float *weights[NPARAM];
} run_result_t;

/* Sets up and trains one engine; 0 on success. */
static int run(zero_comm_h comm, int stage, zero_dtype_t dtype, uint64_t bucket, int mark_ready, run_result_t *r)
{
    char json[512];
    zero_engine_h eng = NULL;
    zero_param_h h[NPARAM];
    int rank = zero_comm_rank(comm), ok = -1;
    uint64_t total_after_first = 0;
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM,
                               .comm = comm};
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d,%s"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01, \"weight_decay\": 0.1}},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": %llu, \"check_grad_writes\": %s}}",
             GAS, dtype == ZERO_BF16 ? " \"bf16\": {\"enabled\": true}," : "", stage, (unsigned long long)bucket,
             mark_ready == 2 ? "true" : "false");
    ep.config_json = json;
    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return -1;
    for (int p = 0; p < NPARAM; p++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = dtype, .ndim = 1,
                               .shape = {numels[p]}, .init_fn = init_fn};
        snprintf(name, sizeof(name), "p%d", p);
        if (zero_param_register(eng, &d, &h[p]) != ZERO_OK)
            goto out;
    }
    if (zero_engine_setup(eng) != ZERO_OK)
        goto out;
    zero_engine_memory(eng, &r->after_setup);
    if (stage == 2)
        EXPECT(r->after_setup.pools == r->after_setup.pools_bound,
               "stage 2: pools %llu after setup, bound %llu: the staging must be backed at setup",
               (unsigned long long)r->after_setup.pools, (unsigned long long)r->after_setup.pools_bound);
    for (int step = 0; step < STEPS; step++) {
        for (int mi = 0; mi < GAS; mi++) {
            float seed;
            zero_engine_memory_t m;
            if (zero_backward_begin(eng, &seed) != ZERO_OK)
                goto out;
            for (int p = NPARAM - 1; p >= 0; p--) {
                void *g = zero_param_grad(h[p]);
                if (g == NULL)
                    goto out;
                for (size_t i = 0; i < (size_t)numels[p]; i++)
                    check_add(g, dtype, i, seed * grad_value(step, mi, rank, p, i));
                if (mark_ready && zero_grad_ready(eng, h[p]) != ZERO_OK)
                    goto out;
            }
            if (zero_backward_end(eng) != ZERO_OK || zero_step(eng, NULL) != ZERO_OK)
                goto out;
            zero_engine_memory(eng, &m);
            EXPECT(m.buffers == 0, "stage %d: %llu bytes of working buffers in use between steps", stage,
                   (unsigned long long)m.buffers);
            if (step == 0 && mi == 0)
                total_after_first = m.total;
            else if (mark_ready)
                EXPECT(m.total == total_after_first, "stage %d: total moved from %llu to %llu between steps",
                       stage, (unsigned long long)total_after_first, (unsigned long long)m.total);
        }
    }
    zero_engine_memory(eng, &r->after_steps);
    if (mark_ready)
        EXPECT(r->after_steps.buffers_peak <= r->after_steps.pools,
           "stage %d: %llu bytes of working buffers were in use at once, beyond the %llu the pools hold", stage,
           (unsigned long long)r->after_steps.buffers_peak, (unsigned long long)r->after_steps.pools);
    for (int p = 0; p < NPARAM; p++) {
        const void *data = zero_param_data(h[p]);
        r->weights[p] = malloc((size_t)numels[p] * sizeof(float));
        if (r->weights[p] == NULL)
            goto out;
        for (size_t i = 0; i < (size_t)numels[p]; i++)
            r->weights[p][i] = check_load(data, dtype, i);
    }
    ok = 0;
out:
    if (ok != 0)
        fprintf(stderr, "rank %d: stage %d run failed: %s\n", rank, stage, zero_engine_last_error(eng));
    zero_engine_destroy(eng);
    return ok;
}

static void free_result(run_result_t *r)
{
    for (int p = 0; p < NPARAM; p++)
        free(r->weights[p]);
}

int main(void)
{
    zero_comm_h comm;
    uint64_t model = 0;
    if (rank_check_begin(&comm) != 0)
        return 1;
    for (int p = 0; p < NPARAM; p++)
        model += (uint64_t)numels[p];
    for (int dt = 0; dt < 2; dt++) {
        zero_dtype_t dtype = dt == 0 ? ZERO_FP32 : ZERO_BF16;
        uint64_t buckets[2] = {model / 5, 500000000ull};   /* several buckets; one bucket */
        for (int bi = 0; bi < 2; bi++) {
            for (int mark = 0; mark <= 2; mark++) {
                run_result_t s1 = {0}, s2 = {0};
                const char *what = bi == 0 ? "several buckets" : "one bucket";
                if (run(comm, 1, dtype, buckets[bi], mark, &s1) != 0 || run(comm, 2, dtype, buckets[bi], mark, &s2) != 0) {
                    check_failures++;
                } else {
                    /* A trainer that marks nothing ready holds every bucket's gradients until
                     * zero_backward_end: then stage 2 stages them all (one-off buffers beyond
                     * the pool), which is more than stage 1; only the numbers are checked. */
                    if (mark)
                        EXPECT(s2.after_setup.total <= s1.after_setup.total,
                           "%s, %s: stage 2 holds %llu bytes after setup, stage 1 %llu", zero_dtype_string(dtype),
                           what, (unsigned long long)s2.after_setup.total, (unsigned long long)s1.after_setup.total);
                    if (mark)
                        EXPECT(s2.after_steps.total <= s1.after_steps.total,
                           "%s, %s: stage 2 holds %llu bytes after training, stage 1 %llu", zero_dtype_string(dtype),
                           what, (unsigned long long)s2.after_steps.total, (unsigned long long)s1.after_steps.total);
                    for (int p = 0; p < NPARAM; p++) {
                        int bad = 0;
                        for (size_t i = 0; i < (size_t)numels[p] && !bad; i++) {
                            float a = s1.weights[p][i], b = s2.weights[p][i];
                            float tol = dtype == ZERO_FP32 ? 1e-5f + 1e-5f * fabsf(a) : 2e-3f + 0.016f * fabsf(a);
                            if (!(fabsf(a - b) <= tol)) {
                                EXPECT(0, "%s, %s, mark_ready %d: p%d[%zu]: stage 1 %.8g, stage 2 %.8g",
                                       zero_dtype_string(dtype), what, mark, p, i, (double)a, (double)b);
                                bad = 1;
                            }
                        }
                    }
                    if (check_rank == 0)
                        printf("%s, %s, mark_ready %d: total bytes stage 1 %llu, stage 2 %llu (pools %llu)\n",
                               zero_dtype_string(dtype), what, mark, (unsigned long long)s1.after_steps.total,
                               (unsigned long long)s2.after_steps.total, (unsigned long long)s2.after_steps.pools);
                }
                free_result(&s1);
                free_result(&s2);
            }
        }
    }
    return rank_check_end(comm);
}
