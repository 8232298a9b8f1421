/*
 * Exact resume, one rank of a job started by zero-launch (driven by resume_test.sh).
 *
 *   resume_rank DIR STAGE DTYPE STOP
 *
 * Trains a small model on synthetic data: the sample indices come from the
 * distributed sampler, and each sample's gradient is a fixed function of its
 * index, the step and the element -- so a run that lost or repeated data would
 * end elsewhere. With fp16 the loss scale starts too high, so the first steps
 * overflow and the scaler is mid-window at every save. The global batch is 24
 * samples at every world size (accumulation 12 / W micro-batches of 2), and the
 * sampler gives each optimizer step the same 24 samples whatever W is, so runs at
 * different world sizes train on the same data and resharded runs can be
 * compared with uninterrupted ones.
 *
 * On start it resumes from DIR/run/latest if present (zero_load_checkpoint,
 * then the sampler is fast-forwarded from client_sd). It trains until global
 * step STOP, then saves DIR/run/<global_stepN> with client_sd {"micro": M}.
 * resume_compare then compares two runs' final checkpoints bit for bit.
 *
 * RESUME_ZERO_EXTRA (optional): JSON members put first into the
 * zero_optimization block, each followed by a comma (offload_test.sh sets the
 * offload block and sub_group_size there). Rank 0's last line gives an FNV-1a
 * digest of the weights the trainer sees (weights=...), gathered at stage 3,
 * so runs can be compared on those too. RESUME_OPTIMIZER (optional): the
 * optimizer's type in place of AdamW (param_offload_test.sh runs Lamb).
 *
 * RESUME_KILL=RANK:STEP (optional): that rank kills itself with SIGKILL at the
 * end of the first micro-batch of global step STEP (before its backward_end) (offload_test.sh: a killed
 * rank while zero-optd holds the job's state).
 */
#include <zero/zero.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPARAM 5
#define SAMPLES 96   /* a multiple of the global batch: every world size sees the same epochs */
#define MICRO_BATCH 2

static const int64_t sizes[NPARAM] = {300, 77, 1000, 64, 5};

static void init_cb(const char *name, size_t offset, size_t count, float *out, void *user)
{
    int p = (int)(intptr_t)user;
    (void)name;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.3f * sinf(0.7f * (float)(offset + i) + (float)p);
}

static float grad_of(uint64_t sample, uint64_t step, int p, size_t i)
{
    return 0.05f * cosf(0.013f * (float)(sample * 7 + (uint64_t)p) + 0.37f * (float)i) +
           0.01f * sinf((float)step + 0.1f * (float)i);
}

static float from16(uint16_t h, zero_dtype_t d)
{
    if (d == ZERO_BF16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    } else {
        __extension__ _Float16 x;
        memcpy(&x, &h, 2);
        return (float)x;
    }
}

static uint16_t to16(float f, zero_dtype_t d)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if (d == ZERO_BF16) {
        u += 0x7fffu + ((u >> 16) & 1u);
        return (uint16_t)(u >> 16);
    } else {
        __extension__ _Float16 h = (_Float16)f;
        uint16_t r;
        memcpy(&r, &h, 2);
        return r;
    }
}

int main(int argc, char **argv)
{
    char json[4096], run_dir[512], latest[600];
    const char *zero_extra = getenv("RESUME_ZERO_EXTRA"), *optimizer = getenv("RESUME_OPTIMIZER");
    uint64_t digest = 1469598103934665603ull;
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    zero_engine_h eng = NULL;
    zero_param_h h[NPARAM];
    zero_sampler_h sampler = NULL;
    zero_dtype_t dtype;
    int stage, rank, world, rc = 1;
    uint64_t stop, micro = 0;
    int kill_rank = -1;
    unsigned long long kill_step = 0;

    if (argc != 5) {
        fprintf(stderr, "usage: resume_rank DIR STAGE fp32|bf16|fp16 STOP\n");
        return 2;
    }
    stage = atoi(argv[2]);
    dtype = !strcmp(argv[3], "bf16") ? ZERO_BF16 : !strcmp(argv[3], "fp16") ? ZERO_FP16 : ZERO_FP32;
    stop = strtoull(argv[4], NULL, 10);
    if (getenv("RESUME_KILL") != NULL && sscanf(getenv("RESUME_KILL"), "%d:%llu", &kill_rank, &kill_step) != 2) {
        fprintf(stderr, "resume_rank: RESUME_KILL must be RANK:STEP\n");
        return 2;
    }
    snprintf(run_dir, sizeof(run_dir), "%s", argv[1]);
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": %d, \"train_batch_size\": 24,"
             " \"optimizer\": {\"type\": \"%s\", \"params\": {\"lr\": 0.01, \"weight_decay\": 0.1}},"
             " \"scheduler\": {\"type\": \"WarmupDecayLR\", \"params\": {\"warmup_num_steps\": 3,"
             " \"warmup_max_lr\": 0.01, \"total_num_steps\": 40}},"
             " \"gradient_clipping\": 0.5, \"steps_per_print\": 0, %s"
             " \"zero_optimization\": {%s \"stage\": %d, \"reduce_bucket_size\": 500,"
             " \"stage3_param_persistence_threshold\": 70}}",
             MICRO_BATCH, optimizer != NULL ? optimizer : "AdamW",
             dtype == ZERO_BF16   ? "\"bf16\": {\"enabled\": true},"
             : dtype == ZERO_FP16 ? "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 20,"
                                    " \"loss_scale_window\": 3, \"hysteresis\": 2},"
                                  : "",
             zero_extra != NULL ? zero_extra : "", stage);
    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return 1;
    rank = zero_comm_rank(zero_engine_comm(eng));
    world = zero_comm_size(zero_engine_comm(eng));
    for (int p = 0; p < NPARAM; p++) {
        char name[32];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY, .name = name,
                               .dtype = dtype, .ndim = 1, .shape = {sizes[p]}, .weight_decay = p != 3,
                               .init_fn = init_cb, .init_user_data = (void *)(intptr_t)p};
        snprintf(name, sizeof(name), "p%d", p);
        if (zero_param_register(eng, &d, &h[p]) != ZERO_OK)
            goto out;
    }
    if (zero_engine_setup(eng) != ZERO_OK)
        goto out;
    {
        zero_sampler_params_t sp = {.num_samples = SAMPLES, .batch_size = MICRO_BATCH, .world_size = world,
                                    .rank = rank, .seed = 1234, .shuffle = 1};
        if (zero_sampler_create(&sp, &sampler) != ZERO_OK)
            goto out;
    }
    snprintf(latest, sizeof(latest), "%s/latest", run_dir);
    if (access(latest, F_OK) == 0) {
        char *client_sd = NULL;
        if (zero_load_checkpoint(eng, run_dir, NULL, NULL, &client_sd) != ZERO_OK)
            goto out;
        if (client_sd == NULL || sscanf(client_sd, "{\"micro\": %llu}", (unsigned long long *)&micro) != 1) {
            fprintf(stderr, "rank %d: bad client_sd %s\n", rank, client_sd ? client_sd : "(none)");
            zero_string_free(client_sd);
            goto out;
        }
        zero_string_free(client_sd);
        /* The quick-start's dataloader_to_step: the data position is the optimizer step
         * times this run's accumulation (which changes with the world size). */
        micro = zero_engine_global_steps(eng) * zero_engine_config(eng)->gradient_accumulation_steps;
        zero_sampler_seek(sampler, micro);
    }
    while (zero_engine_global_steps(eng) < stop) {
        uint64_t idx[MICRO_BATCH];
        size_t n;
        float seed;
        uint64_t step = zero_engine_global_steps(eng);
        if (zero_sampler_next(sampler, idx, &n, NULL, NULL) != ZERO_OK)
            goto out;
        micro++;
        for (int p = 0; p < NPARAM; p++)
            if (zero_gather(eng, &h[p], 1) != ZERO_OK || zero_release(eng, &h[p], 1) != ZERO_OK)
                goto out;
        if (zero_backward_begin(eng, &seed) != ZERO_OK)
            goto out;
        for (int p = NPARAM - 1; p >= 0; p--) {
            void *g;
            if (zero_gather(eng, &h[p], 1) != ZERO_OK)
                goto out;
            g = zero_param_grad(h[p]);
            for (size_t i = 0; i < (size_t)sizes[p]; i++) {
                float v = 0.0f;
                for (size_t k = 0; k < n; k++)
                    v += grad_of(idx[k], step, p, i);
                v *= seed;
                if (dtype == ZERO_FP32)
                    ((float *)g)[i] += v;
                else
                    ((uint16_t *)g)[i] = to16(from16(((uint16_t *)g)[i], dtype) + v, dtype);
            }
            if (zero_grad_ready(eng, h[p]) != ZERO_OK || zero_release(eng, &h[p], 1) != ZERO_OK)
                goto out;
        }
        if (rank == kill_rank && step == kill_step)
            raise(SIGKILL);
        if (zero_backward_end(eng) != ZERO_OK || zero_step(eng, NULL) != ZERO_OK)
            goto out;
    }
    for (int p = 0; p < NPARAM; p++) {
        const unsigned char *bytes;
        size_t nbytes = (size_t)sizes[p] * zero_dtype_size(dtype);
        if (zero_gather(eng, &h[p], 1) != ZERO_OK)
            goto out;
        bytes = zero_param_data(h[p]);
        for (size_t i = 0; i < nbytes; i++)
            digest = (digest ^ bytes[i]) * 1099511628211ull;
        if (zero_release(eng, &h[p], 1) != ZERO_OK)
            goto out;
    }
    {
        char client_sd[64];
        snprintf(client_sd, sizeof(client_sd), "{\"micro\": %llu}", (unsigned long long)micro);
        if (zero_save_checkpoint(eng, run_dir, NULL, client_sd) != ZERO_OK)
            goto out;
    }
    if (rank == 0)
        printf("resume_rank: stage %d %s world %d stopped at step %llu (skipped %llu, loss scale %g) weights=%016llx\n",
               stage, argv[3], world, (unsigned long long)zero_engine_global_steps(eng),
               (unsigned long long)zero_engine_skipped_steps(eng), zero_engine_loss_scale(eng),
               (unsigned long long)digest);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "rank %d: %s\n", rank, eng ? zero_engine_last_error(eng) : "no engine");
    zero_sampler_destroy(sampler);
    zero_engine_destroy(eng);
    return rc;
}
