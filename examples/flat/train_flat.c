/*
 * train_flat: porting a single-process C trainer that keeps its weights in ONE
 * contiguous buffer (the shape of llm.c's CPU trainer: params_memory and
 * grads_memory, each tensor a pointer at an offset) to libzero. The model is a
 * small MLP classifier (D -> H -> K) learning a fixed random "teacher" rule on
 * synthetic points; what matters is the handful of calls marked LIBZERO.
 *
 * The plain trainer did:
 *     params_memory = malloc(...); point tensors into it; init;
 *     grads_memory = calloc(...);
 *     for step: forward; zero grads; backward (writes grads_memory); adamw_update();
 * The port keeps its buffers, forward and backward, and replaces the optimizer
 * and the gradient zeroing with the engine:
 *     zero_engine_create (config) -> zero_param_register with views -> setup
 *     for step: forward; zero_backward_begin; backward * seed; zero_backward_end; zero_step
 * Views (ZERO_PARAM_FIELD_VIEW) work at stages 0-2: the engine reads and writes
 * the trainer's own buffers. fp32 configs only (the buffers are float).
 *
 * Usage (under zero-launch): train_flat --config ds_config.json [--steps N]
 * Rank 0 prints "step=N train_loss=x" per step (the global batch's mean loss).
 */
#include <zero/zero.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 16, H = 64, K = 4, NUM_SAMPLES = 4096, NUM_TENSORS = 4 };

/* The model's tensors, as llm.c lays them out: sizes, then pointers into one block. */
typedef struct params {
    float *w1, *b1, *w2, *b2; /* [H,D] [H] [K,H] [K] */
} params_t;
static const size_t sizes[NUM_TENSORS] = {H * D, H, K * H, K};
static const char *const names[NUM_TENSORS] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
static const int64_t shapes[NUM_TENSORS][2] = {{H, D}, {H, 0}, {K, H}, {K, 0}};

static float *point_tensors(params_t *p, float *memory)
{
    float **ptrs[NUM_TENSORS] = {&p->w1, &p->b1, &p->w2, &p->b2};
    for (int i = 0; i < NUM_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += sizes[i];
    }
    return memory;
}

/* A counter-based uniform in [-1, 1): the data and the init need no stored state. */
static float uniform(uint64_t key)
{
    key += 0x9e3779b97f4a7c15ULL;
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL;
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return (float)((double)(key >> 11) / 4503599627370496.0 - 1.0);
}

static void sample(uint64_t i, float *x, int *label)
{
    float best = -INFINITY;
    for (int d = 0; d < D; d++)
        x[d] = uniform(1000003ULL * i + (uint64_t)d);
    for (int k = 0; k < K; k++) { /* the teacher: argmax of a fixed linear map */
        float s = 0;
        for (int d = 0; d < D; d++)
            s += uniform(7777777ULL + (uint64_t)(k * D + d)) * x[d];
        if (s > best) {
            best = s;
            *label = k;
        }
    }
}

/* Forward and backward of one example; gradients are ADDED into g, scaled by @p seed. */
static float forward_backward(const params_t *p, const params_t *g, const float *x, int label, float seed)
{
    float h[H], logits[K], probs[K], dlogits[K], dh[H], max = -INFINITY, sum = 0;
    for (int j = 0; j < H; j++) {
        float s = p->b1[j];
        for (int d = 0; d < D; d++)
            s += p->w1[j * D + d] * x[d];
        h[j] = s > 0 ? s : 0; /* ReLU */
    }
    for (int k = 0; k < K; k++) {
        float s = p->b2[k];
        for (int j = 0; j < H; j++)
            s += p->w2[k * H + j] * h[j];
        logits[k] = s;
        max = s > max ? s : max;
    }
    for (int k = 0; k < K; k++)
        sum += probs[k] = expf(logits[k] - max);
    for (int k = 0; k < K; k++) {
        probs[k] /= sum;
        dlogits[k] = seed * (probs[k] - (k == label));
    }
    for (int j = 0; j < H; j++)
        dh[j] = 0;
    for (int k = 0; k < K; k++) {
        g->b2[k] += dlogits[k];
        for (int j = 0; j < H; j++) {
            g->w2[k * H + j] += dlogits[k] * h[j];
            dh[j] += dlogits[k] * p->w2[k * H + j];
        }
    }
    for (int j = 0; j < H; j++) {
        if (h[j] <= 0)
            continue;
        g->b1[j] += dh[j];
        for (int d = 0; d < D; d++)
            g->w1[j * D + d] += dh[j] * x[d];
    }
    return -logf(probs[label]);
}

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        zero_status_t s_ = (call);                                                                   \
        if (s_ != ZERO_OK) {                                                                         \
            fprintf(stderr, "train_flat: %s: %s\n", #call, zero_status_string(s_));                  \
            goto out;                                                                                \
        }                                                                                            \
    } while (0)

int main(int argc, char **argv)
{
    const char *config = NULL;
    long steps = 100;
    int rc = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--config") == 0)
            config = argv[i + 1];
        else if (strcmp(argv[i], "--steps") == 0)
            steps = atol(argv[i + 1]);
    }
    if (config == NULL) {
        fprintf(stderr, "usage: train_flat --config ds_config.json [--steps N]\n");
        return 2;
    }

    /* The trainer's own memory, unchanged from the single-process version. */
    size_t total = 0;
    for (int i = 0; i < NUM_TENSORS; i++)
        total += sizes[i];
    float *params_memory = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    float *grads_memory = aligned_alloc(64, (total * sizeof(float) + 63) / 64 * 64);
    params_t p, g;
    zero_engine_h eng = NULL;
    zero_sampler_h sampler = NULL;
    uint64_t *idx = NULL;
    if (params_memory == NULL || grads_memory == NULL)
        goto out;
    point_tensors(&p, params_memory);
    point_tensors(&g, grads_memory);
    memset(grads_memory, 0, total * sizeof(float));
    for (size_t i = 0; i < total; i++) /* every rank computes the same init; rank 0's is used */
        params_memory[i] = 0.25f * uniform(42 + i);

    /* LIBZERO 1: the engine, from the DeepSpeed-style config (optimizer, stage, batch sizes). */
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH, .config_path = config};
    CHECK(zero_engine_create(&ep, &eng));

    /* LIBZERO 2: register each tensor as a view into the two blocks (forward order). */
    size_t off = 0;
    for (int i = 0; i < NUM_TENSORS; i++) {
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_VIEW | ZERO_PARAM_FIELD_WEIGHT_DECAY,
                               .name = names[i], .dtype = ZERO_FP32, .ndim = shapes[i][1] ? 2 : 1,
                               .shape = {shapes[i][0], shapes[i][1]},
                               .weight_decay = i % 2 == 0, /* weights yes, biases no */
                               .view_data = params_memory + off, .view_grad = grads_memory + off};
        zero_param_h h;
        CHECK(zero_param_register(eng, &d, &h));
        off += sizes[i];
    }
    /* LIBZERO 3: partition and allocate optimizer state; rank 0's weights are broadcast. */
    CHECK(zero_engine_setup(eng));

    const zero_config_t *zc = zero_engine_config(eng);
    zero_comm_h comm = zero_engine_comm(eng);
    int rank = zero_comm_rank(comm), world = zero_comm_size(comm);
    uint64_t B = zc->train_micro_batch_size_per_gpu, gas = zc->gradient_accumulation_steps;
    /* The distributed sampler hands each rank its share of every global batch. */
    zero_sampler_params_t sp = {.num_samples = NUM_SAMPLES, .batch_size = B, .world_size = world, .rank = rank,
                                .seed = 1, .shuffle = 1, .drop_last = 1};
    CHECK(zero_sampler_create(&sp, &sampler));
    idx = malloc(B * sizeof(*idx));
    if (idx == NULL)
        goto out;

    for (long step = 1; step <= steps; step++) {
        float loss = 0, global;
        for (uint64_t m = 0; m < gas; m++) {
            size_t n;
            float seed;
            CHECK(zero_sampler_next(sampler, idx, &n, NULL, NULL));
            /* LIBZERO 4: the backward is bracketed; seed = 1 / (micro-batches per step) x loss scale. */
            CHECK(zero_backward_begin(eng, &seed));
            for (size_t b = 0; b < n; b++) {
                float x[D];
                int label = 0;
                sample(idx[b], x, &label);
                loss += forward_backward(&p, &g, x, label, seed / (float)n) / (float)n;
            }
            CHECK(zero_backward_end(eng));
            /* LIBZERO 5: replaces adamw_update() and zeroing the gradients. */
            CHECK(zero_step(eng, NULL));
        }
        CHECK(zero_comm_allreduce(comm, &loss, &global, 1, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST));
        if (rank == 0)
            printf("step=%ld train_loss=%.6f\n", step, global / (float)(gas * (uint64_t)world));
    }
    rc = 0;
out:
    zero_sampler_destroy(sampler);
    zero_engine_destroy(eng); /* LIBZERO 6: collective; the views stay the trainer's */
    free(idx);
    free(params_memory);
    free(grads_memory);
    return rc;
}
