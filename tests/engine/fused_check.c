/*
 * The reduction fused into the step (issue 17; engine_step.c, "the fused
 * step"), run on every rank through zero-launch at world sizes 2 and 3.
 *
 * Each case trains the same model twice from the same start, with the fused
 * step (ZERO_FUSED_STEP=1, the default) and without it (ZERO_FUSED_STEP=0),
 * and compares on every rank the weights after the steps, the reported
 * gradient norms and the skip decisions. Cases: stages 1 and 2, fp32 and
 * bf16, gradient clipping off and on (a max norm below the gradients' norm,
 * so it applies), gradient accumulation 1 and 2; and fp16 with an inf in one
 * rank's gradient at one step (both runs skip that step). Argument "ring":
 * ZERO_COMM_DIRECT=0, so the collectives take the ring (the partial lands in
 * the engine's buffer) instead of the direct path (at two ranks the partial
 * is read in the peer's buffer).
 *
 * Checks:
 *  - the fused path is taken exactly where docs/engine.md says (stage 1,
 *    Adam/AdamW, W >= 2) and only when not turned off;
 *  - tolerances on the weights, |fused - unfused| <= tol x (|w| + 1):
 *      without clipping, fp32 at W = 2 and bf16 at any W: 0 (bit for bit:
 *        the same additions; 1/2 folded into the gradient multiplier is
 *        exact; 16-bit averages are rounded as the unfused hop rounds them);
 *      fp32 at W = 3: 1e-6 (g x (s / 3) and (g / 3) x s differ by a rounding);
 *      with clipping: 1e-6 in fp32, 5e-3 in bf16 (about two bf16 ulps of a
 *        weight): the norm's terms are summed in another grouping, so the
 *        clip coefficient may differ in its last bit;
 *      stage 2 (unfused both times): 0;
 *  - gradient norms: relative 1e-12 (the same terms, other grouping), 1e-6
 *    for fp32 at W = 3 (each term from s / 3 rounded or not); stage 2: equal;
 *  - fp16 overflow (clipping on): the step with the inf is skipped in both
 *    runs, the others are not, and the weights end within 1e-3 (about an fp16
 *    ulp of a weight).
 * Adam's eps is 1e-3, near the gradients' size, so the update depends on the
 * gradient's scale (with the usual 1e-8, Adam's update is nearly invariant
 * to it and a wrong 1/W would hardly show); rank r's gradients differ in
 * sign from the others' on many elements, so a missing partial shows too.
 *
 * Exit status: the number of failed checks (0 = all passed).
 */
#include <zero/zero.h>

#include "rank_check.h"

#include "util/half.h"
#include "zero/engine_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPARAM 5
#define STEPS 4

static const size_t numels[NPARAM] = {10007, 333, 30000, 1, 24003};

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

/* Differs by rank, in sign too, on many elements. */
static float grad_value(int step, int micro, int rank, int p, size_t i)
{
    int k = (int)((i * 7 + (size_t)p * 13 + (size_t)step * 5 + (size_t)micro * 3 + (size_t)rank * 17) % 41);
    return 0.0005f * (float)(k - 20) + 0.0001f * (float)rank;
}

typedef struct run {
    int stage, gas, fused, clip;
    zero_dtype_t dtype;
    int inf_step;        /* >= 0: rank 0 writes an inf into its gradient at this step */
} run_t;

typedef struct result {
    float *w;            /* the weights after the steps, flat, fp32 */
    double norm[STEPS];
    int skipped[STEPS];
    int fused_taken;     /* the engine chose the fused step */
} result_t;

static zero_status_t engine_for(const run_t *r, zero_engine_h *eng_p)
{
    char json[768];
    const char *prec = r->dtype == ZERO_BF16   ? " \"bf16\": {\"enabled\": true},"
                       : r->dtype == ZERO_FP16 ? " \"fp16\": {\"enabled\": true, \"initial_scale_power\": 8},"
                                               : "";
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM,
                               .comm = comm_g};
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d,%s"
             " \"gradient_clipping\": %s,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.05, \"eps\": 1e-2, \"weight_decay\": 0.1}},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 20000}}",
             r->gas, prec, r->clip ? "0.2" : "0.0", r->stage);
    ep.config_json = json;
    return zero_engine_create(&ep, eng_p);
}

static void add_at(void *buf, zero_dtype_t dtype, size_t i, float v)
{
    if (dtype == ZERO_FP32)
        ((float *)buf)[i] += v;
    else if (dtype == ZERO_BF16)
        ((uint16_t *)buf)[i] = zero_f32_to_bf16(zero_bf16_to_f32(((uint16_t *)buf)[i]) + v);
    else
        ((uint16_t *)buf)[i] = zero_f32_to_f16(zero_f16_to_f32(((uint16_t *)buf)[i]) + v);
}

static float load_at(const void *buf, zero_dtype_t dtype, size_t i)
{
    return dtype == ZERO_FP32   ? ((const float *)buf)[i]
           : dtype == ZERO_BF16 ? zero_bf16_to_f32(((const uint16_t *)buf)[i])
                                : zero_f16_to_f32(((const uint16_t *)buf)[i]);
}

static int train(const run_t *r, result_t *out)
{
    zero_engine_h eng = NULL;
    zero_param_h h[NPARAM];
    float *init[NPARAM] = {NULL};
    zero_status_t status;
    size_t off = 0;

    memset(out, 0, sizeof(*out));
    setenv("ZERO_FUSED_STEP", r->fused ? "1" : "0", 1);   /* read at setup */
    status = engine_for(r, &eng);
    for (int p = 0; p < NPARAM && status == ZERO_OK; p++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_VALUES, .name = name, .dtype = r->dtype,
                               .ndim = 1, .shape = {(int64_t)numels[p]}};
        snprintf(name, sizeof(name), "p%d", p);
        init[p] = malloc(numels[p] * sizeof(float));
        if (init[p] == NULL) {
            status = ZERO_ERR_NO_MEMORY;
            break;
        }
        for (size_t i = 0; i < numels[p]; i++)
            init[p][i] = init_value(p, i);
        d.init_values = init[p];
        status = zero_param_register(eng, &d, &h[p]);
    }
    if (status == ZERO_OK)
        status = zero_engine_setup(eng);
    for (int p = 0; p < NPARAM; p++)
        free(init[p]);
    if (status == ZERO_OK)
        out->fused_taken = eng->fused_step;
    for (int step = 0; step < STEPS && status == ZERO_OK; step++)
        for (int mi = 0; mi < r->gas && status == ZERO_OK; mi++) {
            float seed;
            zero_step_info_t info;
            if ((status = zero_backward_begin(eng, &seed)) != ZERO_OK)
                break;
            for (int p = 0; p < NPARAM && status == ZERO_OK; p++) {
                void *g = zero_param_grad(h[p]);
                if (g == NULL) {
                    status = ZERO_ERR_STATE;
                    break;
                }
                for (size_t i = 0; i < numels[p]; i++)
                    add_at(g, r->dtype, i, seed * grad_value(step, mi, check_rank, p, i));
                if (step == r->inf_step && check_rank == 0 && p == 2)
                    add_at(g, r->dtype, 123, INFINITY);
                status = zero_grad_ready(eng, h[p]);
            }
            if (status == ZERO_OK)
                status = zero_backward_end(eng);
            if (status == ZERO_OK)
                status = zero_step(eng, &info);
            if (status == ZERO_OK && info.boundary) {
                out->norm[step] = info.grad_norm;
                out->skipped[step] = info.skipped;
            }
        }
    if (status == ZERO_OK) {
        out->w = malloc(model_numel() * sizeof(float));
        if (out->w == NULL)
            status = ZERO_ERR_NO_MEMORY;
        for (int p = 0; p < NPARAM && status == ZERO_OK; p++) {
            const void *data = zero_param_data(h[p]);
            for (size_t i = 0; i < numels[p]; i++)
                out->w[off + i] = load_at(data, r->dtype, i);
            off += numels[p];
        }
    }
    if (status != ZERO_OK)
        EXPECT(0, "stage %d %s gas %d clip %d fused %d: %s: %s", r->stage, zero_dtype_string(r->dtype), r->gas,
               r->clip, r->fused, zero_status_string(status), eng ? zero_engine_last_error(eng) : "");
    zero_engine_destroy(eng);
    return status == ZERO_OK;
}

/* Elements where a and b differ beyond tol x (|a| + 1) (0: bitwise); prints the first and the largest. */
static size_t compare(const float *a, const float *b, double tol, const char *what)
{
    size_t bad = 0, n = model_numel();
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)a[i]) + 1.0);
        int differ = tol == 0.0 ? memcmp(&a[i], &b[i], sizeof(float)) != 0 : !(d <= tol);
        if (d > worst || d != d)
            worst = d;
        if (differ && bad++ == 0)
            fprintf(stderr, "rank %d: %s: element %zu: fused %.9g, unfused %.9g\n", check_rank, what, i, (double)a[i],
                    (double)b[i]);
    }
    if (check_rank == 0)
        printf("%s: largest |fused - unfused| / (|w| + 1) = %.3g (tolerance %.3g)\n", what, worst, tol);
    return bad;
}

static void check_case(int stage, zero_dtype_t dtype, int clip, int gas)
{
    run_t r = {.stage = stage, .gas = gas, .clip = clip, .dtype = dtype, .inf_step = -1};
    result_t f, u;
    char what[128];
    int exact = stage == 2 || (!clip && (dtype != ZERO_FP32 || check_world == 2));
    double tol = exact ? 0.0 : dtype == ZERO_FP32 ? 1e-6 : 5e-3;
    double norm_tol = stage == 2 ? 0.0 : dtype == ZERO_FP32 && check_world > 2 ? 1e-6 : 1e-12;
    snprintf(what, sizeof(what), "W=%d stage %d %s clip %s gas %d", check_world, stage, zero_dtype_string(dtype),
             clip ? "on" : "off", gas);
    r.fused = 1;
    if (!train(&r, &f))
        return;
    r.fused = 0;
    if (!train(&r, &u)) {
        free(f.w);
        return;
    }
    EXPECT(f.fused_taken == (stage == 1), "%s: the fused step was %s", what, f.fused_taken ? "taken" : "not taken");
    EXPECT(!u.fused_taken, "%s: ZERO_FUSED_STEP=0 did not turn the fused step off", what);
    EXPECT(compare(f.w, u.w, tol, what) == 0, "%s: weights differ beyond %g", what, tol);
    for (int s = 0; s < STEPS; s++) {
        double rel = fabs(f.norm[s] - u.norm[s]) / u.norm[s];
        EXPECT(!f.skipped[s] && !u.skipped[s], "%s: step %d skipped", what, s);
        EXPECT(rel <= norm_tol, "%s: step %d: gradient norm fused %.17g, unfused %.17g (relative %.3g > %.3g)", what,
               s, f.norm[s], u.norm[s], rel, norm_tol);
        if (clip)
            EXPECT(u.norm[s] > 0.2, "%s: step %d: norm %g is below the clip 0.2: clipping did not apply", what, s,
                   u.norm[s]);
    }
    free(f.w);
    free(u.w);
}

/* fp16 at stage 1, an inf in rank 0's gradient at step 1: skipped either way. */
static void check_overflow(void)
{
    run_t r = {.stage = 1, .gas = 1, .clip = 1, .dtype = ZERO_FP16, .inf_step = 1};
    result_t f, u;
    r.fused = 1;
    if (!train(&r, &f))
        return;
    r.fused = 0;
    if (!train(&r, &u)) {
        free(f.w);
        return;
    }
    EXPECT(f.fused_taken, "fp16: the fused step was not taken");
    for (int s = 0; s < STEPS; s++) {
        EXPECT(f.skipped[s] == (s == 1), "fp16: fused run: step %d %s", s, f.skipped[s] ? "skipped" : "not skipped");
        EXPECT(u.skipped[s] == (s == 1), "fp16: unfused run: step %d %s", s, u.skipped[s] ? "skipped" : "not skipped");
    }
    EXPECT(compare(f.w, u.w, 1e-3, "fp16 with an inf at step 1") == 0,
           "fp16: the weights differ after a skipped step");
    free(f.w);
    free(u.w);
}

int main(int argc, char **argv)
{
    int ring = argc > 1 && strcmp(argv[1], "ring") == 0;
    if (ring)
        setenv("ZERO_COMM_DIRECT", "0", 1);   /* read by zero_comm_create */
    if (rank_check_begin(&comm_g) != 0)
        return 1;
    if (check_rank == 0)
        printf("fused step vs unfused, W=%d, %s\n", check_world, ring ? "ring (ZERO_COMM_DIRECT=0)" : "direct path");
    for (int clip = 0; clip <= 1; clip++) {
        check_case(1, ZERO_FP32, clip, 1);
        check_case(1, ZERO_BF16, clip, 1);
    }
    check_case(1, ZERO_FP32, 1, 2);
    if (!ring) {
        check_case(2, ZERO_FP32, 1, 1);
        check_case(2, ZERO_BF16, 0, 1);
        check_overflow();
    }
    return rank_check_end(comm_g);
}
