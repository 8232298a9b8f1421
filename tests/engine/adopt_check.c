/*
 * Zero-copy adoption of a trainer's flat buffers (zero_engine_adopt_flat,
 * issue 13), run on every rank through zero-launch at world sizes 1-3.
 *
 * The model is packed as llm.c packs it (tensors back to back, sizes that are
 * not multiples of anything), its buffers from zero_comm_mem_alloc so that
 * both the adopted and the engine's own buffers take the direct path, which
 * sums every element over the ranks in rank order whatever the buckets are.
 * Checks on every rank:
 *  - memory: fp32 AdamW at stages 1-2, the engine holds no weights, gradients
 *    or master (zero_engine_memory: params, grads, master all 0), its moments
 *    are 8 bytes per element of the owned range (the padded length / W), and
 *    everything else it holds is bounded (under 64 KiB): about 8/W bytes per
 *    parameter, against 8 + 12/W with its own buffers (printed);
 *  - numerics (no clipping, so no norm enters the update): adopted weights
 *    after 3 steps equal the engine-owned run's at stages 0-2, fp32 and bf16,
 *    gradient accumulation 1 and 2, bitwise at W <= 2 and within the
 *    tolerance below at W = 3 (order_tol: the summation order of the three
 *    ranks' terms follows the partition); with accumulation, adopted stage 2
 *    reduces once per window as stage 1 does, so it is compared with stage 1
 *    the same way, and with the engine-owned stage 2 within 1e-6 x (|w| +
 *    1) in fp32 and 1.6e-2 x (|w| + 1) in bf16 (the engine-owned stage 2 sums
 *    per-micro-batch averages, a different rounding; bf16 gradients round at
 *    every addition, so its two orders part by about a bf16 ulp: 2^-8);
 *  - resume: 3 steps, save, 3 steps, against a fresh engine on fresh buffers
 *    that loads the checkpoint and runs the same 3 steps: bitwise equal
 *    weights, fp32 stage 2 and bf16 stage 1;
 *  - two dtypes (bf16 matrices and fp32 norms, one adopted buffer pair each)
 *    against the engine's own buffers at stages 0-2, as above;
 *  - refusals: capacity below the padded length (setup fails naming it, the
 *    trainer's weights untouched; on one rank alone, every rank fails at once
 *    naming it and the communicator still works), overlapping offsets, a
 *    parameter without an offset, adoption after a registration, stage 3.
 *
 * Exit status: the number of failed checks (0 = all passed).
 */
#include <zero/zero.h>

#include "rank_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPARAM 7
#define STEPS 3

static const size_t numels[NPARAM] = {10007, 333, 30000, 1, 25000, 77, 24003};

static zero_comm_h comm_g;


static size_t model_numel(void)
{
    size_t n = 0;
    for (int p = 0; p < NPARAM; p++)
        n += numels[p];
    return n;
}

static float init_value(int p, size_t i)
{
    return 0.01f * (float)((i * 31 + (size_t)p * 7) % 97) - 0.45f;
}

/* Different on every rank, never near 0 on average. */
static float grad_value(int step, int micro, int rank, int p, size_t i)
{
    return 0.001f * (float)((i * 7 + (size_t)p * 13 + (size_t)step * 5 + (size_t)micro * 3 + (size_t)rank) % 41) +
           0.003f;
}

/* The trainer's flat buffers (adopted runs only). */
typedef struct flat {
    void *weights, *grads;
    size_t capacity;
} flat_t;

typedef struct run {
    int stage, gas, adopt;
    zero_dtype_t dtype;
    size_t capacity_short;  /* > 0: adopt with this capacity (a refusal test) */
    zero_engine_h eng;
    zero_param_h h[NPARAM];
    flat_t flat;
} run_t;

static void run_destroy(run_t *r)
{
    zero_engine_destroy(r->eng);
    r->eng = NULL;
    zero_comm_mem_free(comm_g, r->flat.weights);
    zero_comm_mem_free(comm_g, r->flat.grads);
    r->flat.weights = r->flat.grads = NULL;
}

static zero_status_t engine_for(int stage, int gas, zero_dtype_t dtype, zero_engine_h *eng_p)
{
    char json[512];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM,
                               .comm = comm_g};
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d,%s"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01, \"weight_decay\": 0.1}},"
             " \"checkpoint\": {\"tag_validation\": \"FAIL\"},"
             " \"zero_optimization\": {\"stage\": %d}}",
             gas, dtype == ZERO_BF16 ? " \"bf16\": {\"enabled\": true}," : "", stage);
    ep.config_json = json;
    return zero_engine_create(&ep, eng_p);
}

/* Creates the engine, adopts (or not), registers and sets up. */
static zero_status_t run_setup(run_t *r)
{
    size_t esz = r->dtype == ZERO_FP32 ? 4 : 2, off = 0, n = model_numel();
    float *init[NPARAM] = {NULL};
    zero_status_t status = engine_for(r->stage, r->gas, r->dtype, &r->eng);
    if (status != ZERO_OK)
        return status;
    if (r->adopt) {
        zero_flat_buffers_t fb = {.field_mask = ZERO_FLAT_BUFFERS_FIELD_CAPACITY, .dtype = r->dtype, .numel = n};
        if ((status = zero_engine_flat_capacity(r->eng, n, &r->flat.capacity)) != ZERO_OK)
            return status;
        if (zero_comm_mem_alloc(comm_g, r->flat.capacity * esz, &r->flat.weights) != ZERO_OK ||
            zero_comm_mem_alloc(comm_g, r->flat.capacity * esz, &r->flat.grads) != ZERO_OK)
            return ZERO_ERR_NO_MEMORY;
        /* slack with garbage: setup must zero it */
        memset(r->flat.weights, 0x7f, r->flat.capacity * esz);
        memset(r->flat.grads, 0x7f, r->flat.capacity * esz);
        for (int p = 0, o = 0; p < NPARAM; o += (int)numels[p], p++)
            for (size_t i = 0; i < numels[p]; i++) {
                /* rank 0's content is the initial value: other ranks hold junk */
                float v = check_rank == 0 ? init_value(p, i) : 1000.0f;
                if (r->dtype == ZERO_FP32)
                    ((float *)r->flat.weights)[(size_t)o + i] = v;
                else
                    ((uint16_t *)r->flat.weights)[(size_t)o + i] = check_to_bf16(v);
            }
        memset(r->flat.grads, 0, n * esz);
        fb.weights = r->flat.weights;
        fb.grads = r->flat.grads;
        fb.capacity = r->capacity_short ? r->capacity_short : r->flat.capacity;
        if ((status = zero_engine_adopt_flat(r->eng, &fb)) != ZERO_OK)
            return status;
    }
    for (int p = 0; p < NPARAM && status == ZERO_OK; p++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = 0, .name = name, .dtype = r->dtype, .ndim = 1,
                               .shape = {(int64_t)numels[p]}};
        snprintf(name, sizeof(name), "p%d", p);
        if (r->adopt) {
            d.field_mask |= ZERO_PARAM_FIELD_FLAT_OFFSET;
            d.flat_offset = off;
        } else {
            /* the same values rank 0 has in its buffer (bf16: rounded as there) */
            init[p] = malloc(numels[p] * sizeof(float));
            if (init[p] == NULL) {
                status = ZERO_ERR_NO_MEMORY;
                break;
            }
            for (size_t i = 0; i < numels[p]; i++)
                init[p][i] = r->dtype == ZERO_FP32 ? init_value(p, i) : check_from_bf16(check_to_bf16(init_value(p, i)));
            d.field_mask |= ZERO_PARAM_FIELD_INIT_VALUES;
            d.init_values = init[p];
        }
        status = zero_param_register(r->eng, &d, &r->h[p]);
        off += numels[p];
    }
    if (status == ZERO_OK)
        status = zero_engine_setup(r->eng);   /* reads init_values */
    for (int p = 0; p < NPARAM; p++)
        free(init[p]);
    return status;
}

/* @p steps boundary steps from step number @p first, each of r->gas micro-batches. */
static zero_status_t run_steps(run_t *r, int first, int steps)
{
    zero_status_t status;
    for (int step = first; step < first + steps; step++)
        for (int mi = 0; mi < r->gas; mi++) {
            float seed;
            size_t off = 0;
            if ((status = zero_backward_begin(r->eng, &seed)) != ZERO_OK)
                return status;
            for (int p = 0; p < NPARAM; p++) {
                void *g = r->adopt ? (char *)r->flat.grads + off * (r->dtype == ZERO_FP32 ? 4 : 2)
                                   : zero_param_grad(r->h[p]);
                if (g == NULL)
                    return ZERO_ERR_STATE;
                for (size_t i = 0; i < numels[p]; i++)
                    check_add(g, r->dtype, i, seed * grad_value(step, mi, check_rank, p, i));
                off += numels[p];
            }
            if ((status = zero_backward_end(r->eng)) != ZERO_OK || (status = zero_step(r->eng, NULL)) != ZERO_OK)
                return status;
        }
    return ZERO_OK;
}

/* The weights the trainer sees, as fp32, flat (malloc'd). */
static float *weights_of(run_t *r)
{
    float *w = malloc(model_numel() * sizeof(float));
    size_t off = 0;
    if (w == NULL)
        return NULL;
    for (int p = 0; p < NPARAM; p++) {
        const void *data = zero_param_data(r->h[p]);
        if (r->adopt)
            EXPECT(data == (const char *)r->flat.weights + off * (r->dtype == ZERO_FP32 ? 4 : 2),
                   "zero_param_data(p%d) is not the trainer's buffer at its offset", p);
        for (size_t i = 0; i < numels[p]; i++)
            w[off + i] = check_load(data, r->dtype, i);
        off += numels[p];
    }
    return w;
}

/* Count of elements where a and b differ beyond @p rel x |a| + @p rel (0: bitwise); prints the first. */
static size_t compare(const float *a, const float *b, double rel, const char *what)
{
    size_t bad = 0, n = model_numel();
    for (size_t i = 0; i < n; i++) {
        int differ = rel == 0.0 ? memcmp(&a[i], &b[i], sizeof(float)) != 0
                                : !(fabs((double)a[i] - (double)b[i]) <= rel * (fabs((double)a[i]) + 1.0));
        if (differ && bad++ == 0)
            fprintf(stderr, "rank %d: %s: element %zu: %.9g vs %.9g\n", check_rank, what, i, (double)a[i], (double)b[i]);
    }
    return bad;
}

/* Adopted vs engine-owned: bitwise with W <= 2 (a sum of two terms does not
 * depend on their order). With W >= 3 the direct path sums an element
 * starting after the rank that reduces it, and which rank that is follows
 * the partition (the adopted buffer is one bucket of packed tensors, the
 * engine's own layout aligns each tensor), so the terms are added in another
 * order: a last-bit difference in a gradient, which Adam's normalised update
 * passes on at about that size. */
static double order_tol(zero_dtype_t dtype)
{
    return check_world <= 2 ? 0.0 : dtype == ZERO_FP32 ? 1e-6 : 1.6e-2;
}

static float *train(int stage, int gas, zero_dtype_t dtype, int adopt, zero_engine_memory_t *mem_p)
{
    run_t r = {.stage = stage, .gas = gas, .adopt = adopt, .dtype = dtype};
    float *w = NULL;
    zero_status_t status = run_setup(&r);
    if (status == ZERO_OK)
        status = run_steps(&r, 0, STEPS);
    if (status == ZERO_OK) {
        if (mem_p != NULL)
            zero_engine_memory(r.eng, mem_p);
        w = weights_of(&r);
    } else {
        EXPECT(0, "stage %d gas %d %s %s: %s: %s", stage, gas, zero_dtype_string(dtype), adopt ? "adopted" : "own",
               zero_status_string(status), r.eng ? zero_engine_last_error(r.eng) : "");
    }
    run_destroy(&r);
    return w;
}

static void check_memory(void)
{
    for (int stage = 1; stage <= 2; stage++) {
        zero_engine_memory_t a, o;
        float *wa = train(stage, 1, ZERO_FP32, 1, &a), *wo = train(stage, 1, ZERO_FP32, 0, &o);
        size_t n = model_numel(), granule = 64 * (size_t)check_world, padded = (n + granule - 1) / granule * granule;
        uint64_t expect_state = 8ull * (padded / (size_t)check_world);
        double per = (double)a.total / (double)n, per_own = (double)o.total / (double)n;
        free(wa);
        free(wo);
        EXPECT(a.params == 0 && a.grads == 0 && a.master == 0,
               "stage %d adopted: the engine holds params %llu, grads %llu, master %llu bytes (expected none)", stage,
               (unsigned long long)a.params, (unsigned long long)a.grads, (unsigned long long)a.master);
        EXPECT(a.optim_state == expect_state, "stage %d adopted: moments %llu bytes, expected 8 x %zu / %d = %llu",
               stage, (unsigned long long)a.optim_state, padded, check_world, (unsigned long long)expect_state);
        EXPECT(a.total - a.optim_state <= 65536, "stage %d adopted: %llu bytes besides the moments (bound 64 KiB)",
               stage, (unsigned long long)(a.total - a.optim_state));
        EXPECT(per <= 8.0 / check_world + 0.05, "stage %d adopted: %.3f bytes per parameter, expected about 8/%d = %.3f",
               stage, per, check_world, 8.0 / check_world);
        if (check_rank == 0)
            printf("memory stage %d W=%d fp32 AdamW: adopted %.3f bytes/param (total %llu), engine-owned %.3f "
                   "(params %llu grads %llu master %llu moments %llu)\n",
                   stage, check_world, per, (unsigned long long)a.total, per_own, (unsigned long long)o.params,
                   (unsigned long long)o.grads, (unsigned long long)o.master, (unsigned long long)o.optim_state);
    }
}

static void check_numerics(void)
{
    for (int dt = 0; dt < 2; dt++) {
        zero_dtype_t dtype = dt == 0 ? ZERO_FP32 : ZERO_BF16;
        for (int gas = 1; gas <= 2; gas++) {
            float *own1 = NULL;
            for (int stage = 0; stage <= 2; stage++) {
                char what[96];
                float *a = train(stage, gas, dtype, 1, NULL), *o = train(stage, gas, dtype, 0, NULL);
                snprintf(what, sizeof(what), "stage %d %s gas %d: adopted vs engine-owned", stage,
                         zero_dtype_string(dtype), gas);
                if (a != NULL && o != NULL && (stage < 2 || gas == 1 || own1 != NULL)) {
                    if (stage == 2 && gas > 1) {
                        /* one reduction per window (adopted) vs one per micro-batch (own) */
                        size_t bad = compare(a, own1, order_tol(dtype), "stage 2 adopted vs stage 1 engine-owned");
                        EXPECT(bad == 0, "%s: %zu elements differ from stage 1", what, bad);
                        bad = compare(a, o, dtype == ZERO_FP32 ? 1e-6 : 1.6e-2, what);
                        EXPECT(bad == 0, "%s: %zu elements beyond the tolerance", what, bad);
                    } else {
                        size_t bad = compare(a, o, order_tol(dtype), what);
                        EXPECT(bad == 0, "%s: %zu elements differ (%s expected)", what, bad,
                               check_world <= 2 ? "bitwise" : "within the W >= 3 tolerance");
                    }
                    if (check_rank == 0)
                        printf("%s: checked\n", what);
                }
                free(a);
                if (stage == 1)
                    own1 = o;
                else
                    free(o);
            }
            free(own1);
        }
    }
}

/* Every rank gets rank 0's temporary directory. */
static int shared_tmpdir(char *dir, size_t size)
{
    memset(dir, 0, size);
    if (check_rank == 0) {
        snprintf(dir, size, "/tmp/zero-adopt-XXXXXX");
        if (mkdtemp(dir) == NULL)
            dir[0] = '\0';
    }
    return zero_comm_broadcast(comm_g, dir, dir, size, ZERO_U8, 0, ZERO_MEM_HOST) == ZERO_OK && dir[0] != '\0' ? 0
                                                                                                               : -1;
}

static void check_resume(int stage, zero_dtype_t dtype)
{
    char dir[128], cmd[256];
    run_t a = {.stage = stage, .gas = 2, .adopt = 1, .dtype = dtype};
    run_t b = {.stage = stage, .gas = 2, .adopt = 1, .dtype = dtype};
    float *wa = NULL, *wb = NULL;
    zero_status_t status;
    if (shared_tmpdir(dir, sizeof(dir)) != 0) {
        EXPECT(0, "no temporary directory");
        return;
    }
    status = run_setup(&a);
    if (status == ZERO_OK)
        status = run_steps(&a, 0, STEPS);
    if (status == ZERO_OK)
        status = zero_save_checkpoint(a.eng, dir, NULL, NULL);
    if (status == ZERO_OK)
        status = run_steps(&a, STEPS, STEPS);
    EXPECT(status == ZERO_OK, "resume, first run: %s: %s", zero_status_string(status), zero_engine_last_error(a.eng));
    if (status == ZERO_OK)
        wa = weights_of(&a);
    run_destroy(&a);
    status = run_setup(&b);   /* fresh buffers, the initial values again */
    if (status == ZERO_OK)
        status = zero_load_checkpoint(b.eng, dir, NULL, NULL, NULL);
    if (status == ZERO_OK)
        status = run_steps(&b, STEPS, STEPS);
    EXPECT(status == ZERO_OK, "resume, second run: %s: %s", zero_status_string(status), zero_engine_last_error(b.eng));
    if (status == ZERO_OK)
        wb = weights_of(&b);
    run_destroy(&b);
    if (wa != NULL && wb != NULL) {
        char what[64];
        snprintf(what, sizeof(what), "resume stage %d %s", stage, zero_dtype_string(dtype));
        EXPECT(compare(wa, wb, 0.0, what) == 0, "%s: weights differ after resuming", what);
        if (check_rank == 0)
            printf("%s: checked\n", what);
    }
    free(wa);
    free(wb);
    zero_comm_barrier(comm_g);
    if (check_rank == 0) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
    }
}

/* A model of two dtypes (bf16 matrices, fp32 norms, registered interleaved):
 * one adopted buffer pair per dtype against the engine's own buffers, after
 * 3 steps of 2 micro-batches, at stages 0-2 (adopted stage 2 against the
 * engine's stage 1, as accumulation makes them the same). */
static void check_two_dtypes(void)
{
    enum { NT = 4 };
    static const size_t n2[NT] = {5000, 77, 333, 1000};
    static const zero_dtype_t dt[NT] = {ZERO_BF16, ZERO_FP32, ZERO_BF16, ZERO_FP32};
    for (int stage = 0; stage <= 2; stage++) {
        float *result[2] = {NULL, NULL};
        for (int adopt = 0; adopt <= 1; adopt++) {
            zero_engine_h eng = NULL;
            zero_param_h h[NT];
            void *w[2] = {NULL, NULL}, *g[2] = {NULL, NULL};   /* [0] bf16, [1] fp32 */
            size_t off[NT], numel[2] = {0, 0}, cap[2] = {0, 0}, total = 0;
            float *init[NT] = {NULL};
            /* with accumulation, adopted stage 2 reduces once per window: stage 1's bits */
            zero_status_t status = engine_for(adopt || stage < 2 ? stage : 1, 2, ZERO_BF16, &eng);
            for (int t = 0; t < NT; t++) {
                int k = dt[t] == ZERO_FP32;
                off[t] = numel[k];
                numel[k] += n2[t];
                total += n2[t];
            }
            for (int k = 0; k < 2 && adopt && status == ZERO_OK; k++) {
                size_t esz = k ? 4 : 2;
                zero_flat_buffers_t fb = {.field_mask = ZERO_FLAT_BUFFERS_FIELD_CAPACITY,
                                          .dtype = k ? ZERO_FP32 : ZERO_BF16, .numel = numel[k]};
                status = zero_engine_flat_capacity(eng, numel[k], &cap[k]);
                if (status == ZERO_OK && (zero_comm_mem_alloc(comm_g, cap[k] * esz, &w[k]) != ZERO_OK ||
                                          zero_comm_mem_alloc(comm_g, cap[k] * esz, &g[k]) != ZERO_OK))
                    status = ZERO_ERR_NO_MEMORY;
                if (status != ZERO_OK)
                    break;
                memset(g[k], 0, cap[k] * esz);
                for (int t = 0; t < NT; t++)
                    if ((dt[t] == ZERO_FP32) == k)
                        for (size_t i = 0; i < n2[t]; i++) {
                            if (k)
                                ((float *)w[k])[off[t] + i] = init_value(t, i);
                            else
                                ((uint16_t *)w[k])[off[t] + i] = check_to_bf16(init_value(t, i));
                        }
                fb.weights = w[k];
                fb.grads = g[k];
                fb.capacity = cap[k];
                status = zero_engine_adopt_flat(eng, &fb);
            }
            for (int t = 0; t < NT && status == ZERO_OK; t++) {
                char name[16];
                zero_param_desc_t d = {.name = name, .dtype = dt[t], .ndim = 1, .shape = {(int64_t)n2[t]}};
                snprintf(name, sizeof(name), "t%d", t);
                if (adopt) {
                    d.field_mask = ZERO_PARAM_FIELD_FLAT_OFFSET;
                    d.flat_offset = off[t];
                } else {
                    init[t] = malloc(n2[t] * sizeof(float));
                    if (init[t] == NULL) {
                        status = ZERO_ERR_NO_MEMORY;
                        break;
                    }
                    for (size_t i = 0; i < n2[t]; i++)
                        init[t][i] = dt[t] == ZERO_FP32 ? init_value(t, i) : check_from_bf16(check_to_bf16(init_value(t, i)));
                    d.field_mask = ZERO_PARAM_FIELD_INIT_VALUES;
                    d.init_values = init[t];
                }
                status = zero_param_register(eng, &d, &h[t]);
            }
            if (status == ZERO_OK)
                status = zero_engine_setup(eng);
            for (int step = 0; step < STEPS && status == ZERO_OK; step++)
                for (int mi = 0; mi < 2 && status == ZERO_OK; mi++) {
                    float seed;
                    status = zero_backward_begin(eng, &seed);
                    for (int t = 0; t < NT && status == ZERO_OK; t++) {
                        void *gr = zero_param_grad(h[t]);
                        if (gr == NULL) {
                            status = ZERO_ERR_STATE;
                            break;
                        }
                        for (size_t i = 0; i < n2[t]; i++)
                            check_add(gr, dt[t], i, seed * grad_value(step, mi, check_rank, t, i));
                    }
                    if (status == ZERO_OK)
                        status = zero_backward_end(eng);
                    if (status == ZERO_OK)
                        status = zero_step(eng, NULL);
                }
            if (status == ZERO_OK && (result[adopt] = malloc(total * sizeof(float))) != NULL) {
                size_t at = 0;
                for (int t = 0; t < NT; t++) {
                    const void *data = zero_param_data(h[t]);
                    if (adopt)
                        EXPECT(data == (const char *)w[dt[t] == ZERO_FP32] + off[t] * (dt[t] == ZERO_FP32 ? 4 : 2),
                               "two dtypes: zero_param_data(t%d) is not the trainer's buffer", t);
                    for (size_t i = 0; i < n2[t]; i++)
                        result[adopt][at++] = check_load(data, dt[t], i);
                }
            }
            EXPECT(status == ZERO_OK, "two dtypes, stage %d, %s: %s: %s", stage, adopt ? "adopted" : "own",
                   zero_status_string(status), eng ? zero_engine_last_error(eng) : "");
            zero_engine_destroy(eng);
            for (int k = 0; k < 2; k++) {
                zero_comm_mem_free(comm_g, w[k]);
                zero_comm_mem_free(comm_g, g[k]);
            }
            for (int t = 0; t < NT; t++)
                free(init[t]);
        }
        if (result[0] != NULL && result[1] != NULL) {
            size_t bad = 0, total = 0;
            double tol = order_tol(ZERO_BF16);
            for (int t = 0; t < NT; t++)
                total += n2[t];
            for (size_t i = 0; i < total; i++)
                if (tol == 0.0 ? memcmp(&result[0][i], &result[1][i], sizeof(float)) != 0
                               : !(fabs((double)result[0][i] - (double)result[1][i]) <=
                                   tol * (fabs((double)result[0][i]) + 1.0)))
                    bad++;
            EXPECT(bad == 0, "two dtypes, stage %d: %zu elements differ between adopted and own buffers", stage, bad);
            if (check_rank == 0)
                printf("two dtypes (bf16 + fp32 buffer pairs) stage %d: checked\n", stage);
        }
        free(result[0]);
        free(result[1]);
    }
}

static void check_refusals(void)
{
    zero_status_t status;
    size_t n = model_numel();
    /* capacity below the padded length (every world pads: 7 tensors of odd sizes) */
    {
        run_t r = {.stage = 1, .gas = 1, .adopt = 1, .dtype = ZERO_FP32, .capacity_short = n};
        status = run_setup(&r);
        EXPECT(status == ZERO_ERR_INVALID_ARG, "capacity == numel: setup gave %s", zero_status_string(status));
        EXPECT(r.eng != NULL && strstr(zero_engine_last_error(r.eng), "zero_engine_flat_capacity") != NULL,
               "capacity: the error does not say what to pass: %s", r.eng ? zero_engine_last_error(r.eng) : "");
        EXPECT(r.flat.weights != NULL && ((float *)r.flat.weights)[n - 1] ==
                                             (check_rank == 0 ? init_value(NPARAM - 1, numels[NPARAM - 1] - 1) : 1000.0f),
               "a refused setup changed the trainer's weights");
        run_destroy(&r);
    }
    /* The same on the last rank alone: every rank's setup fails at once (the
     * refusal is part of the ranks' agreement), the others naming that rank,
     * and the communicator is still usable. Without the agreement the others
     * would wait for it in set-up's collectives until ZERO_COMM_TIMEOUT (300
     * s here; the bound below is 30 s), or fail with some other cause. */
    if (check_world > 1) {
        int refuser = check_world - 1;
        char want[32];
        double t0 = check_now_s(), took;
        run_t r = {.stage = 1, .gas = 1, .adopt = 1, .dtype = ZERO_FP32,
                   .capacity_short = check_rank == refuser ? n : 0};
        status = run_setup(&r);
        took = check_now_s() - t0;
        snprintf(want, sizeof(want), "rank %d", refuser);
        EXPECT(status == ZERO_ERR_INVALID_ARG, "capacity short on rank %d alone: setup gave %s (%s)", refuser,
               zero_status_string(status), r.eng ? zero_engine_last_error(r.eng) : "");
        EXPECT(took < 30.0, "capacity short on rank %d alone: setup took %.1f s to fail", refuser, took);
        if (r.eng != NULL && check_rank == refuser)
            EXPECT(strstr(zero_engine_last_error(r.eng), "zero_engine_flat_capacity") != NULL,
                   "capacity short here: the error does not say what to pass: %s", zero_engine_last_error(r.eng));
        else if (r.eng != NULL)
            EXPECT(strstr(zero_engine_last_error(r.eng), want) != NULL && strstr(zero_engine_last_error(r.eng),
                                                                                  "invalid") != NULL,
                   "capacity short on rank %d: the error does not name it and its cause: %s", refuser,
                   zero_engine_last_error(r.eng));
        EXPECT(r.flat.weights != NULL && ((float *)r.flat.weights)[n - 1] ==
                                             (check_rank == 0 ? init_value(NPARAM - 1, numels[NPARAM - 1] - 1) : 1000.0f),
               "a refused setup (rank %d alone) changed the trainer's weights", refuser);
        EXPECT(zero_comm_barrier(comm_g) == ZERO_OK, "the communicator failed after rank %d's refusal", refuser);
        run_destroy(&r);
        if (check_rank == 0)
            printf("capacity short on rank %d alone: every rank refused in %.2f s\n", refuser, took);
    }
    /* Rank 0 registers one parameter fewer than the others: every rank still
     * runs the same collectives in the agreement (rank 0's hashes go to
     * every rank whatever its own count), so every rank refuses at once and
     * the communicator stays usable, rather than a rank skipping the
     * broadcast of the hashes and meeting the others in the wrong collective. */
    if (check_world > 1) {
        zero_engine_h eng = NULL;
        zero_param_h h;
        zero_param_desc_t d = {.name = "count", .dtype = ZERO_FP32, .ndim = 1, .shape = {100}};
        double t0 = check_now_s(), took;
        status = engine_for(1, 1, ZERO_FP32, &eng);
        if (status == ZERO_OK)
            status = zero_param_register(eng, &d, &h);
        d.name = "count2";
        if (status == ZERO_OK && check_rank != 0)
            status = zero_param_register(eng, &d, &h);
        EXPECT(status == ZERO_OK, "count mismatch: registering: %s", eng ? zero_engine_last_error(eng) : "");
        if (status == ZERO_OK) {
            status = zero_engine_setup(eng);
            took = check_now_s() - t0;
            EXPECT(status == ZERO_ERR_INVALID_ARG && took < 30.0, "count mismatch: setup gave %s after %.1f s (%s)",
                   zero_status_string(status), took, zero_engine_last_error(eng));
            EXPECT(strstr(zero_engine_last_error(eng), check_rank == 0 ? "another rank registered different"
                                                                       : "registered 2 parameters, rank 0 registered 1"),
                   "count mismatch: the error does not say so: %s", zero_engine_last_error(eng));
        }
        zero_engine_destroy(eng);
        EXPECT(zero_comm_barrier(comm_g) == ZERO_OK, "the communicator failed after a count mismatch");
    }
    /* overlap, missing offset, adoption after a registration, stage 3 */
    {
        zero_engine_h eng = NULL;
        float w[256], g[256];
        zero_param_h h;
        zero_flat_buffers_t fb = {.dtype = ZERO_FP32, .weights = w, .grads = g, .numel = 256};
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_FLAT_OFFSET, .name = "a", .dtype = ZERO_FP32,
                               .ndim = 1, .shape = {100}, .flat_offset = 0};
        if (engine_for(1, 1, ZERO_FP32, &eng) == ZERO_OK) {
            EXPECT(zero_engine_adopt_flat(eng, &fb) == ZERO_OK, "adopt: %s", zero_engine_last_error(eng));
            EXPECT(zero_param_register(eng, &d, &h) == ZERO_OK, "register a: %s", zero_engine_last_error(eng));
            d.name = "b";
            d.flat_offset = 99;
            EXPECT(zero_param_register(eng, &d, &h) == ZERO_ERR_INVALID_ARG, "an overlapping offset was accepted");
            d.flat_offset = 200;
            EXPECT(zero_param_register(eng, &d, &h) == ZERO_ERR_INVALID_ARG, "a tensor past numel was accepted");
            d.field_mask = 0;
            d.flat_offset = 100;
            EXPECT(zero_param_register(eng, &d, &h) == ZERO_ERR_INVALID_ARG, "a tensor without offset was accepted");
            EXPECT(zero_engine_adopt_flat(eng, &fb) == ZERO_ERR_STATE, "adoption after a registration was accepted");
        }
        zero_engine_destroy(eng);
        eng = NULL;
        if (engine_for(3, 1, ZERO_FP32, &eng) == ZERO_OK)
            EXPECT(zero_engine_adopt_flat(eng, &fb) == ZERO_ERR_UNSUPPORTED, "stage 3 adoption was accepted");
        zero_engine_destroy(eng);
    }
}

int main(void)
{
    if (rank_check_begin(&comm_g) != 0)
        return 1;
    check_memory();
    check_numerics();
    check_resume(2, ZERO_FP32);
    check_resume(1, ZERO_BF16);
    check_two_dtypes();
    check_refusals();
    return rank_check_end(comm_g);
}
