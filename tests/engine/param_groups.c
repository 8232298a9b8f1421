/*
 * Parameter groups, run on every rank through zero-launch (world sizes 1-3).
 *
 * A model of six parameters in three groups, as a trainer splits its model:
 *   "default"  (optimizer.params): the weight matrices, with weight decay;
 *   "no_decay" (weight_decay 0): biases and norm weights;
 *   "embed"    (a quarter of the rate, other betas / momentum, its own decay):
 *              the embedding.
 * Small buckets (reduce_bucket_size 300) make buckets and owned slices mix
 * groups, so the step must split its ranges at group bounds. A linear WarmupLR
 * moves the rate every step, and every group must follow it from its own
 * base rate: lr_g(t) = lr_g * schedule(t) / optimizer.params.lr.
 *
 * For AdamW, SGD with momentum and Lamb at stages 0-3, the engine's weights
 * after STEPS steps are compared with a plain reference: lib/optim's C
 * reference kernels (optim_ref.c, the per-element definitions of
 * optim_elem.h), called once per parameter with that parameter's group
 * settings written out here by hand (not taken from the engine's mapping), on
 * the gradient averaged over ranks in double. Lamb's trust ratio is per
 * parameter in both. Tolerance per element: |engine - reference| <= 1e-6 +
 * 1e-5 |reference| (fp32; the ranks' gradients are summed in another order).
 * The LibTorch example checks AdamW and SGD groups against torch::optim itself
 * (tests/examples/libtorch_curve.sh).
 *
 * Then checkpoints, at every stage: save after STEPS / 2 steps, train on, load
 * into a fresh engine and train on again: the weights must be equal bit for
 * bit. Loading into an engine whose "embed" group has another rate, or where a
 * parameter sits in another group, must fail naming the group or parameter,
 * and succeed with allow_param_group_change.
 *
 * Exit status: the number of failed checks (0 = all passed).
 */
#include <zero/zero.h>

#include "rank_check.h"

#include "optim/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPARAM 6
#define STEPS 6
#define BASE_LR 0.01

static const char *const names[NPARAM] = {"embed.weight", "fc1.weight", "fc1.bias", "conv.weight", "fc2.weight",
                                          "norm.weight"};
static const int64_t shapes[NPARAM][3] = {{24, 8, 0}, {16, 9, 0}, {100, 0, 0}, {3, 3, 3}, {20, 20, 0}, {37, 0, 0}};
static const int ndims[NPARAM] = {2, 2, 1, 3, 2, 1};
/* 0 default, 1 no_decay, 2 embed: the order of optimizer.param_groups below */
static const int group_of[NPARAM] = {2, 0, 1, 0, 0, 1};

typedef enum { OPT_ADAMW, OPT_SGD, OPT_LAMB, OPT_COUNT } opt_t;
static const char *const opt_names[] = {"AdamW", "SGD", "Lamb"};

/* Each group's settings, as the config below gives them. */
typedef struct group_settings {
    double lr, weight_decay, beta1, beta2, momentum;
} group_settings_t;

static group_settings_t settings(opt_t opt, int g)
{
    group_settings_t s = {BASE_LR, 0.1, 0.9, 0.999, 0.9};
    if (opt == OPT_SGD)
        s.weight_decay = 0.01;
    if (g == 1)
        s.weight_decay = 0.0;
    if (g == 2) {
        s.lr = BASE_LR / 4;
        s.weight_decay = 0.05;
        s.beta1 = 0.8;
        s.beta2 = 0.99;
        s.momentum = 0.5;
    }
    return s;
}

static size_t numel_of(int p)
{
    size_t n = 1;
    for (int k = 0; k < ndims[p]; k++)
        n *= (size_t)shapes[p][k];
    return n;
}

static float init_value(int p, size_t i) { return 0.5f * sinf(0.91f * (float)i + 2.3f * (float)p) + 0.05f * (float)p; }

static double grad_value(int step, int rank, int p, size_t i)
{
    double sign = i % 3 == 0 ? -1.0 : 1.0;
    return sign * (0.25 + 0.15 * sin(0.37 * (double)i + 1.3 * p + 0.71 * step) + 0.08 * sin(1.7 * rank + 0.11 * (double)i));
}

static void init_cb(const char *name, size_t offset, size_t count, float *out, void *user)
{
    int p = (int)(intptr_t)user;
    (void)name;
    for (size_t k = 0; k < count; k++)
        out[k] = init_value(p, offset + k);
}

/* @p embed_lr_scale and @p with_groups vary the groups for the checkpoint checks. */
static char *config_json(opt_t opt, int stage, double embed_lr_scale)
{
    static char buf[2048];
    char base[256], embed[256];
    group_settings_t d = settings(opt, 0), e = settings(opt, 2);
    if (opt == OPT_SGD) {
        snprintf(base, sizeof(base), "\"lr\": %.17g, \"momentum\": %.17g, \"weight_decay\": %.17g", d.lr, d.momentum,
                 d.weight_decay);
        snprintf(embed, sizeof(embed), "\"lr\": %.17g, \"momentum\": %.17g, \"weight_decay\": %.17g",
                 e.lr * embed_lr_scale, e.momentum, e.weight_decay);
    } else {
        snprintf(base, sizeof(base), "\"lr\": %.17g, \"betas\": [%.17g, %.17g], \"weight_decay\": %.17g", d.lr, d.beta1,
                 d.beta2, d.weight_decay);
        snprintf(embed, sizeof(embed), "\"lr\": %.17g, \"betas\": [%.17g, %.17g], \"weight_decay\": %.17g",
                 e.lr * embed_lr_scale, e.beta1, e.beta2, e.weight_decay);
    }
    snprintf(buf, sizeof(buf),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": 1, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"%s\", \"params\": {%s},"
             "   \"param_groups\": {\"no_decay\": {\"weight_decay\": 0}, \"embed\": {%s}}},"
             " \"scheduler\": {\"type\": \"WarmupLR\", \"params\": {\"warmup_min_lr\": 0.002, \"warmup_max_lr\": %.17g,"
             "   \"warmup_num_steps\": 4, \"warmup_type\": \"linear\"}},"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 300, \"allgather_bucket_size\": 300,"
             "   \"stage3_param_persistence_threshold\": 50, \"stage3_prefetch_bucket_size\": 200}}",
             opt_names[opt], base, embed, BASE_LR, stage);
    return buf;
}

typedef struct run {
    zero_engine_h eng;
    zero_param_h h[NPARAM];
    int rank;
} run_t;

/* Creates and sets up an engine; @p moved: fc1.bias joins "default" instead of "no_decay". */
static int open_engine(zero_comm_h comm, opt_t opt, int stage, double embed_lr_scale, int moved, run_t *r)
{
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                                             ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = config_json(opt, stage, embed_lr_scale), .comm = comm, .num_threads = 2};
    static const char *const group_names[] = {"default", "no_decay", "embed"};
    int index[3];
    memset(r, 0, sizeof(*r));
    r->rank = zero_comm_rank(comm);
    if (zero_engine_create(&ep, &r->eng) != ZERO_OK)
        return 1;
    if (zero_engine_num_param_groups(r->eng) != 3) {
        fprintf(stderr, "rank %d: %d parameter groups, expected 3\n", r->rank, zero_engine_num_param_groups(r->eng));
        return 1;
    }
    for (int g = 0; g < 3; g++)
        if (zero_engine_param_group_index(r->eng, group_names[g], &index[g]) != ZERO_OK || index[g] != g ||
            strcmp(zero_engine_param_group_name(r->eng, g), group_names[g]) != 0) {
            fprintf(stderr, "rank %d: group %s is not index %d\n", r->rank, group_names[g], g);
            return 1;
        }
    for (int p = 0; p < NPARAM; p++) {
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_PARAM_GROUP,
                               .name = names[p], .dtype = ZERO_FP32, .ndim = ndims[p], .init_fn = init_cb,
                               .init_user_data = (void *)(intptr_t)p};
        d.param_group = index[moved && p == 2 ? 0 : group_of[p]];
        memcpy(d.shape, shapes[p], sizeof(shapes[p]));
        if (zero_param_register(r->eng, &d, &r->h[p]) != ZERO_OK)
            return 1;
    }
    return zero_engine_setup(r->eng) != ZERO_OK;
}

/* Steps [first, last) of training; @p lrs_p (may be NULL) receives each step's rate per group. */
static int train(run_t *r, opt_t opt, int first, int last, double lrs[][3])
{
    for (int step = first; step < last; step++) {
        float seed;
        zero_step_info_t info;
        double sched = zero_engine_lr(r->eng);
        for (int g = 0; g < 3; g++) {
            double want = g == 0 ? sched : settings(opt, g).lr * (sched / BASE_LR);
            double got = zero_engine_param_group_lr(r->eng, g);
            if (!(fabs(got - want) <= 1e-15 * want)) {
                fprintf(stderr, "rank %d: step %d: group %d's rate is %.17g, expected %.17g\n", r->rank, step, g, got,
                        want);
                return 1;
            }
            if (lrs != NULL)
                lrs[step][g] = got;
        }
        if (zero_backward_begin(r->eng, &seed) != ZERO_OK)
            return 1;
        for (int p = NPARAM - 1; p >= 0; p--) {
            float *gbuf;
            if (zero_gather(r->eng, &r->h[p], 1) != ZERO_OK || (gbuf = zero_param_grad(r->h[p])) == NULL)
                return 1;
            for (size_t i = 0; i < numel_of(p); i++)
                gbuf[i] += (float)(seed * grad_value(step, r->rank, p, i));
            if (zero_grad_ready(r->eng, r->h[p]) != ZERO_OK || zero_release(r->eng, &r->h[p], 1) != ZERO_OK)
                return 1;
        }
        if (zero_backward_end(r->eng) != ZERO_OK || zero_step(r->eng, &info) != ZERO_OK || !info.stepped)
            return 1;
        if (info.lr != sched) {
            fprintf(stderr, "rank %d: step %d: info.lr %.17g is not the default group's %.17g\n", r->rank, step,
                    info.lr, sched);
            return 1;
        }
    }
    return 0;
}

static int read_weights(run_t *r, float *out[NPARAM])
{
    for (int p = 0; p < NPARAM; p++) {
        const float *data;
        if (zero_gather(r->eng, &r->h[p], 1) != ZERO_OK || (data = zero_param_data(r->h[p])) == NULL)
            return 1;
        memcpy(out[p], data, numel_of(p) * sizeof(float));
        if (zero_release(r->eng, &r->h[p], 1) != ZERO_OK)
            return 1;
    }
    return 0;
}

static void close_engine(run_t *r, int failed)
{
    if (failed && r->eng != NULL)
        fprintf(stderr, "rank %d: engine error: %s\n", r->rank, zero_engine_last_error(r->eng));
    zero_engine_destroy(r->eng);
    r->eng = NULL;
}

/* ---- the reference: lib/optim's C kernels per parameter, with its group's settings ---- */

static void reference(opt_t opt, int world, double lrs[][3], float *w[NPARAM])
{
    zero_optim_ctx_t ctx;
    float *s1[NPARAM], *s2[NPARAM], *g[NPARAM];
    zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_C, NULL);
    for (int p = 0; p < NPARAM; p++) {
        size_t n = numel_of(p);
        s1[p] = calloc(n, sizeof(float));
        s2[p] = calloc(n, sizeof(float));
        g[p] = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++)
            w[p][i] = init_value(p, i);
    }
    for (int step = 0; step < STEPS; step++) {
        for (int p = 0; p < NPARAM; p++) {
            group_settings_t gs = settings(opt, group_of[p]);
            zero_optim_slice_t s = {.w = w[p], .g = g[p], .s1 = s1[p], .s2 = s2[p], .n = numel_of(p)};
            float lr = (float)lrs[step][group_of[p]];
            for (size_t i = 0; i < numel_of(p); i++) {
                double sum = 0.0;
                for (int r = 0; r < world; r++)
                    sum += grad_value(step, r, p, i);
                g[p][i] = (float)(sum / world);
            }
            if (opt == OPT_ADAMW) {
                zero_optim_adam_params_t a;
                zero_optim_adam_defaults(&a);
                a.lr = lr;
                a.beta1 = (float)gs.beta1;
                a.beta2 = (float)gs.beta2;
                a.weight_decay = (float)gs.weight_decay;
                a.adam_w_mode = 1;
                a.bias_correction = 1;
                a.step = step + 1;
                a.grad_scale = 1.0f;
                zero_optim_adam_step(&ctx, &a, &s);
            } else if (opt == OPT_SGD) {
                zero_optim_sgd_params_t sg;
                zero_optim_sgd_defaults(&sg);
                sg.lr = lr;
                sg.momentum = (float)gs.momentum;
                sg.weight_decay = (float)gs.weight_decay;
                sg.step = step + 1;
                sg.grad_scale = 1.0f;
                zero_optim_sgd_step(&ctx, &sg, &s);
            } else {
                zero_optim_lamb_params_t l;
                zero_optim_segment_t seg = {0, numel_of(p)};
                double wsq = 0.0, usq = 0.0;
                float ratio;
                zero_optim_lamb_defaults(&l);
                l.lr = lr;
                l.beta1 = (float)gs.beta1;
                l.beta2 = (float)gs.beta2;
                l.weight_decay = (float)gs.weight_decay;
                l.bias_correction = 1;
                l.step = step + 1;
                l.grad_scale = 1.0f;
                zero_optim_lamb_phase1(&ctx, &l, &s, &seg, 1, &wsq, &usq);
                zero_optim_lamb_phase2(&ctx, &l, &s, &seg, 1, &wsq, &usq, &ratio);
            }
        }
    }
    for (int p = 0; p < NPARAM; p++) {
        free(s1[p]);
        free(s2[p]);
        free(g[p]);
    }
}

static int compare(const char *what, int rank, opt_t opt, int stage, float *got[NPARAM], float *want[NPARAM],
                   int bitwise)
{
    for (int p = 0; p < NPARAM; p++)
        for (size_t i = 0; i < numel_of(p); i++) {
            double d = fabs((double)got[p][i] - (double)want[p][i]);
            int bad = bitwise ? memcmp(&got[p][i], &want[p][i], sizeof(float)) != 0
                              : !(d <= 1e-6 + 1e-5 * fabs((double)want[p][i]));
            if (bad) {
                fprintf(stderr, "rank %d: %s: %s stage %d: %s[%zu] = %.9g, expected %.9g\n", rank, what,
                        opt_names[opt], stage, names[p], i, got[p][i], want[p][i]);
                return 1;
            }
        }
    return 0;
}

/* The checkpoint checks at one stage (AdamW): resume bit for bit, and group mismatches refused. */
static int check_checkpoints(zero_comm_h comm, const char *dir, int stage, float *a[NPARAM], float *b[NPARAM])
{
    run_t r;
    int failures = 0, rank = zero_comm_rank(comm);
    char tag[32];
    zero_checkpoint_load_options_t allow = {.field_mask = ZERO_CHECKPOINT_LOAD_FIELD_ALLOW_PARAM_GROUP_CHANGE,
                                            .allow_param_group_change = 1};
    snprintf(tag, sizeof(tag), "stage%d", stage);

    /* straight through, saving half-way */
    if (open_engine(comm, OPT_ADAMW, stage, 1.0, 0, &r) || train(&r, OPT_ADAMW, 0, STEPS / 2, NULL) ||
        zero_save_checkpoint(r.eng, dir, tag, NULL) != ZERO_OK || train(&r, OPT_ADAMW, STEPS / 2, STEPS, NULL) ||
        read_weights(&r, a)) {
        close_engine(&r, 1);
        return 1;
    }
    close_engine(&r, 0);
    /* resumed */
    if (open_engine(comm, OPT_ADAMW, stage, 1.0, 0, &r) || zero_load_checkpoint(r.eng, dir, tag, NULL, NULL) != ZERO_OK ||
        train(&r, OPT_ADAMW, STEPS / 2, STEPS, NULL) || read_weights(&r, b)) {
        close_engine(&r, 1);
        return 1;
    }
    close_engine(&r, 0);
    failures += compare("resumed from a checkpoint", rank, OPT_ADAMW, stage, b, a, 1);

    /* another rate for "embed": refused naming the group, loaded with the override */
    if (open_engine(comm, OPT_ADAMW, stage, 2.0, 0, &r)) {
        close_engine(&r, 1);
        return failures + 1;
    }
    if (zero_load_checkpoint(r.eng, dir, tag, NULL, NULL) != ZERO_ERR_CHECKPOINT ||
        strstr(zero_engine_last_error(r.eng), "parameter group \"embed\"") == NULL ||
        strstr(zero_engine_last_error(r.eng), "allow_param_group_change") == NULL) {
        fprintf(stderr, "rank %d: stage %d: a changed group rate was not refused by name: %s\n", rank, stage,
                zero_engine_last_error(r.eng));
        failures++;
    } else if (zero_load_checkpoint(r.eng, dir, tag, &allow, NULL) != ZERO_OK) {
        fprintf(stderr, "rank %d: stage %d: allow_param_group_change did not load: %s\n", rank, stage,
                zero_engine_last_error(r.eng));
        failures++;
    }
    close_engine(&r, 0);

    /* fc1.bias in "default" instead of "no_decay": refused naming the parameter */
    if (open_engine(comm, OPT_ADAMW, stage, 1.0, 1, &r)) {
        close_engine(&r, 1);
        return failures + 1;
    }
    if (zero_load_checkpoint(r.eng, dir, tag, NULL, NULL) != ZERO_ERR_CHECKPOINT ||
        strstr(zero_engine_last_error(r.eng), "fc1.bias was in parameter group \"no_decay\"") == NULL) {
        fprintf(stderr, "rank %d: stage %d: a parameter moved to another group was not refused by name: %s\n", rank,
                stage, zero_engine_last_error(r.eng));
        failures++;
    }
    close_engine(&r, 0);
    return failures;
}

int main(void)
{
    zero_comm_h comm;
    int failures = 0, checks = 0, world, rank;
    float *got[NPARAM], *want[NPARAM];
    double lrs[STEPS][3];
    char dir[256] = "";

    if (rank_check_begin(&comm) != 0)
        return 100;
    world = check_world;
    rank = check_rank;
    for (int p = 0; p < NPARAM; p++) {
        got[p] = calloc(numel_of(p), sizeof(float));
        want[p] = calloc(numel_of(p), sizeof(float));
    }
    for (int stage = 0; stage <= 3; stage++)
        for (int o = 0; o < OPT_COUNT; o++) {
            run_t r;
            int failed;
            checks++;
            failed = open_engine(comm, (opt_t)o, stage, 1.0, 0, &r) || train(&r, (opt_t)o, 0, STEPS, lrs) ||
                     read_weights(&r, got);
            close_engine(&r, failed);
            if (failed) {
                failures++;
                continue;
            }
            reference((opt_t)o, world, lrs, want);
            failures += compare("against the reference", rank, (opt_t)o, stage, got, want, 0);
        }

    /* checkpoints: one directory for the job, made by rank 0 */
    if (rank == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/param-groups-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (mkdtemp(dir) == NULL)
            dir[0] = '\0';
    }
    if (zero_comm_broadcast(comm, dir, dir, sizeof(dir), ZERO_U8, 0, ZERO_MEM_HOST) != ZERO_OK || dir[0] == '\0') {
        fprintf(stderr, "rank %d: no checkpoint directory\n", rank);
        failures++;
    } else {
        for (int stage = 0; stage <= 3; stage++) {
            checks++;
            failures += check_checkpoints(comm, dir, stage, got, want);
        }
        zero_comm_barrier(comm);
        if (rank == 0) {
            char cmd[300];
            snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
            if (system(cmd) != 0)
                fprintf(stderr, "rank 0: could not remove %s\n", dir);
        }
    }
    for (int p = 0; p < NPARAM; p++) {
        free(got[p]);
        free(want[p]);
    }
    zero_comm_destroy(comm);
    printf("param_groups rank %d of %d: %d failure(s) in %d runs\n", rank, world, failures, checks);
    return failures > 99 ? 99 : failures;
}
