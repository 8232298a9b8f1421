/*
 * train_gpt: a small GPT trained on real text with libzero, following the
 * founding loop (DeepSpeed's quick start) in C:
 *
 *   1. initialise:  zero_engine_create() from a ds_config.json, register every
 *                   tensor, zero_engine_setup(); the distributed sampler.
 *   2. train:       per micro-batch forward, backward through the engine, step.
 *   3. checkpoints: zero_save_checkpoint() every N steps with client_sd holding
 *                   the step and data position; on start, resume from latest.
 *
 * Stage, precision, optimizer, schedule and batch sizes come from the config
 * alone. The model (gpt.c) computes in fp32; with a bf16 or fp16 config the
 * parameters are registered in that dtype and this file converts one layer at
 * a time between the engine's 16-bit buffers and fp32 scratch.
 *
 * Text: the files under --data (default /usr/share/common-licenses, as on
 * Debian; the repository's tests/data/license-texts holds the same files;
 * regular files, sorted by name, concatenated), a byte-level vocabulary of the distinct bytes, the last
 * 10% held out for validation, windows of --context tokens.
 *
 * Usage (under zero-launch, or alone as one rank):
 *   train_gpt --config ds_config.json [--steps N] [--save-dir DIR]
 *             [--save-interval N] [--no-resume] [--eval-interval N]
 *             [--eval-windows N] [--print-interval N] [--seed S]
 *             [--channels C (96)] [--layers L (4)] [--heads H (4)] [--context T (64)]
 *             [--data DIR_OR_FILE] [--stop-after N] [--device N]
 * --device N (train_gpt_cuda only; default: LOCAL_RANK modulo the visible
 * devices) picks the GPU. train_gpt and train_gpt_cuda are this file linked
 * with one backend each (gpt_backend.h): the same model, tensors, names,
 * initialisation, data and command line, on the CPU or on a CUDA device.
 * Rank 0 prints machine-readable lines:
 *   data: ... unigram_entropy=<nats/char>
 *   step=<n> train_loss=<x> lr=<y> grad_norm=<g> ms_per_step=<t> samples_per_s=<s> ...
 *   val_loss=<x> step=<n>
 *   final_train_loss=<x> final_val_loss=<y> unigram_entropy=<z> steps=<n>
 */
#include "gpt_backend.h"

#include <zero/zero.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- options ---- */

typedef struct options {
    const char *config, *save_dir, *data;
    long steps, save_interval, eval_interval, eval_windows, print_interval, stop_after;
    int resume, device;
    unsigned long long seed;
    gpt_config_t model;
} options_t;

static int parse_options(int argc, char **argv, options_t *o)
{
    *o = (options_t){.data = "/usr/share/common-licenses", .steps = 300, .save_interval = 0,
                     .eval_interval = 0, .eval_windows = 64, .print_interval = 0, .stop_after = 0,
                     .resume = 1, .device = -1, .seed = 1234,
                     .model = {.vocab = 0, .context = 64, .channels = 96, .layers = 4, .heads = 4}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--no-resume") == 0) {
            o->resume = 0;
            continue;
        }
        if (v == NULL)
            goto bad;
        if (strcmp(a, "--config") == 0 || strcmp(a, "--deepspeed_config") == 0)
            o->config = v;
        else if (strcmp(a, "--save-dir") == 0)
            o->save_dir = v;
        else if (strcmp(a, "--data") == 0)
            o->data = v;
        else if (strcmp(a, "--steps") == 0)
            o->steps = atol(v);
        else if (strcmp(a, "--save-interval") == 0)
            o->save_interval = atol(v);
        else if (strcmp(a, "--eval-interval") == 0)
            o->eval_interval = atol(v);
        else if (strcmp(a, "--eval-windows") == 0)
            o->eval_windows = atol(v);
        else if (strcmp(a, "--print-interval") == 0)
            o->print_interval = atol(v);
        else if (strcmp(a, "--stop-after") == 0)
            o->stop_after = atol(v);
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--channels") == 0)
            o->model.channels = atoi(v);
        else if (strcmp(a, "--layers") == 0)
            o->model.layers = atoi(v);
        else if (strcmp(a, "--heads") == 0)
            o->model.heads = atoi(v);
        else if (strcmp(a, "--context") == 0)
            o->model.context = atoi(v);
        else if (strcmp(a, "--device") == 0)
            o->device = atoi(v);
        else
            goto bad;
        i += takes;
        continue;
    bad:
        fprintf(stderr, "train_gpt: bad or incomplete option '%s' (see the usage at the top of train_gpt.c)\n", a);
        return -1;
    }
    if (o->config == NULL) {
        fprintf(stderr, "train_gpt: --config ds_config.json is required\n");
        return -1;
    }
    if (o->steps < 1 || o->model.context < 2 || o->eval_windows < 0) {
        fprintf(stderr, "train_gpt: --steps must be >= 1, --context >= 2, --eval-windows >= 0\n");
        return -1;
    }
    return 0;
}

/* ---- text ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int append_file(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "train_gpt: cannot read %s: %s\n", path, strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    unsigned char *nb = realloc(*buf, *len + (size_t)st.st_size + 1);
    if (nb == NULL) {
        fclose(f);
        return -1;
    }
    *buf = nb;
    *len += fread(nb + *len, 1, (size_t)st.st_size, f);
    fclose(f);
    return 0;
}

/* Concatenates the regular files of @p path (sorted by name; symlinks skipped, they
 * duplicate files) or reads @p path itself if it is a file. Returns the file count. */
static int load_text(const char *path, unsigned char **buf, size_t *len)
{
    struct stat st;
    int nfiles = 0;
    *buf = NULL;
    *len = 0;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "train_gpt: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return append_file(path, buf, len) == 0 ? 1 : -1;
    DIR *d = opendir(path);
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        char full[4096];
        struct stat ls;
        snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
        if (lstat(full, &ls) != 0 || !S_ISREG(ls.st_mode))
            continue;
        char **nn = realloc(names, (n + 1) * sizeof(*names));
        if (nn == NULL)
            break;
        names = nn;
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_str);
    for (size_t i = 0; i < n; i++) {
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", path, names[i]);
        if (append_file(full, buf, len) == 0)
            nfiles++;
        free(names[i]);
    }
    free(names);
    return nfiles;
}

/* ---- the model's tensors in the engine ---- */

typedef struct init_ctx {
    const gpt_config_t *cfg;
    int layer, tensor;
    unsigned long long seed;
} init_ctx_t;

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user)
{
    const init_ctx_t *c = user;
    (void)name;
    gpt_init_range(c->cfg, c->layer, c->tensor, c->seed, offset, count, out);
}

typedef struct trainer {
    options_t opt;
    zero_engine_h eng;
    zero_dtype_t dtype;
    int stage, rank, world;
    gpt_config_t cfg;
    void *model;                      /* gpt_backend.create() */
    zero_param_h global[GPT_NUM_GLOBAL];
    zero_param_h *block;              /* [L * GPT_NUM_BLOCK] */
    init_ctx_t *init;                 /* one per tensor */
    /* What the model reads and writes: engine buffers (fp32) or fp32 scratch (16-bit), in the
     * backend's memory. */
    gpt_weights_t w, g;
    /* 16-bit only: scratch for the global tensors and for one block. */
    float *w_glob[GPT_NUM_GLOBAL], *g_glob[GPT_NUM_GLOBAL];
    float *w_blk[GPT_NUM_BLOCK], *g_blk[GPT_NUM_BLOCK];
    double t_fwd, t_bwd;              /* trainer-measured seconds */
    int opened;                       /* gpt_backend.open() succeeded */
} trainer_t;

#define CHECK(call)                                                                                 \
    do {                                                                                            \
        zero_status_t s_ = (call);                                                                  \
        if (s_ != ZERO_OK) {                                                                        \
            fprintf(stderr, "train_gpt: %s failed: %s (%s)\n", #call, zero_status_string(s_),       \
                    tr->eng ? zero_engine_last_error(tr->eng) : "");                                \
            return s_;                                                                              \
        }                                                                                           \
    } while (0)

/* As CHECK, for run(): keeps the status and jumps to its clean-up. */
#define TRY(call)                                                                                   \
    do {                                                                                            \
        s = (call);                                                                                 \
        if (s != ZERO_OK) {                                                                         \
            fprintf(stderr, "train_gpt: %s failed: %s (%s)\n", #call, zero_status_string(s),        \
                    tr->eng ? zero_engine_last_error(tr->eng) : "");                                \
            goto out;                                                                               \
        }                                                                                           \
    } while (0)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static zero_status_t register_params(trainer_t *tr)
{
    int L = tr->cfg.layers, k = 0;
    tr->block = calloc((size_t)L * GPT_NUM_BLOCK, sizeof(*tr->block));
    tr->init = calloc((size_t)(L * GPT_NUM_BLOCK + GPT_NUM_GLOBAL), sizeof(*tr->init));
    tr->w.block = calloc((size_t)L * GPT_NUM_BLOCK, sizeof(float *));
    tr->g.block = calloc((size_t)L * GPT_NUM_BLOCK, sizeof(float *));
    if (!tr->block || !tr->init || !tr->w.block || !tr->g.block)
        return ZERO_ERR_NO_MEMORY;
    /* Forward order: embeddings, blocks, final norm. */
    for (int l = -1; l <= L; l++) {
        int n = l >= 0 && l < L ? GPT_NUM_BLOCK : 2;
        for (int t = 0; t < n; t++) {
            int layer = l < L ? l : -1, tensor = l == L ? GPT_LNF_W + t : l < 0 ? GPT_WTE + t : t;
            char name[128];
            long shape[2];
            zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY};
            init_ctx_t *c = &tr->init[k++];
            *c = (init_ctx_t){&tr->cfg, layer, tensor, tr->opt.seed};
            gpt_tensor_info(&tr->cfg, layer, tensor, name, sizeof(name), &d.ndim, shape);
            d.name = name;
            d.dtype = tr->dtype;
            d.shape[0] = shape[0];
            d.shape[1] = shape[1];
            d.weight_decay = d.ndim >= 2; /* no decay for biases and norms */
            d.init_fn = init_fn;
            d.init_user_data = c;
            CHECK(zero_param_register(tr->eng, &d, layer < 0 ? &tr->global[tensor]
                                                              : &tr->block[layer * GPT_NUM_BLOCK + tensor]));
        }
    }
    if (tr->dtype != ZERO_FP32) {
        for (int t = 0; t < GPT_NUM_GLOBAL; t++) {
            size_t n = gpt_tensor_numel(&tr->cfg, -1, t);
            tr->w_glob[t] = gpt_backend.alloc(n);
            tr->g_glob[t] = gpt_backend.alloc(n);
            if (!tr->w_glob[t] || !tr->g_glob[t])
                return ZERO_ERR_NO_MEMORY;
        }
        for (int t = 0; t < GPT_NUM_BLOCK; t++) {
            size_t n = gpt_tensor_numel(&tr->cfg, 0, t);
            tr->w_blk[t] = gpt_backend.alloc(n);
            tr->g_blk[t] = gpt_backend.alloc(n);
            if (!tr->w_blk[t] || !tr->g_blk[t])
                return ZERO_ERR_NO_MEMORY;
        }
    }
    return ZERO_OK;
}

/* Points the model's weights of @p layer (-1: global) at usable fp32 data. */
static void load_weights(trainer_t *tr, int layer)
{
    int n = layer < 0 ? GPT_NUM_GLOBAL : GPT_NUM_BLOCK;
    for (int t = 0; t < n; t++) {
        zero_param_h p = layer < 0 ? tr->global[t] : tr->block[layer * GPT_NUM_BLOCK + t];
        float **slot = layer < 0 ? &tr->w.global[t] : &tr->w.block[layer * GPT_NUM_BLOCK + t];
        if (tr->dtype == ZERO_FP32) {
            *slot = zero_param_data(p);
        } else {
            float *scratch = layer < 0 ? tr->w_glob[t] : tr->w_blk[t];
            gpt_backend.to_f32(tr->dtype, zero_param_data(p), scratch, zero_param_numel(p));
            *slot = scratch;
        }
    }
}

/* Points the model's gradients of @p layer at the engine's buffers (fp32) or zeroed scratch. */
static void open_grads(trainer_t *tr, int layer, int first, int count)
{
    for (int t = first; t < first + count; t++) {
        zero_param_h p = layer < 0 ? tr->global[t] : tr->block[layer * GPT_NUM_BLOCK + t];
        float **slot = layer < 0 ? &tr->g.global[t] : &tr->g.block[layer * GPT_NUM_BLOCK + t];
        if (tr->dtype == ZERO_FP32) {
            *slot = zero_param_grad(p);
        } else {
            float *scratch = layer < 0 ? tr->g_glob[t] : tr->g_blk[t];
            gpt_backend.zero(scratch, zero_param_numel(p));
            *slot = scratch;
        }
    }
}

/* The gradients of these tensors are complete: fold 16-bit ones in and tell the engine. */
static zero_status_t grads_ready(trainer_t *tr, int layer, int first, int count)
{
    for (int t = first; t < first + count; t++) {
        zero_param_h p = layer < 0 ? tr->global[t] : tr->block[layer * GPT_NUM_BLOCK + t];
        if (tr->dtype != ZERO_FP32)
            gpt_backend.add_to_16(tr->dtype, zero_param_grad(p), layer < 0 ? tr->g_glob[t] : tr->g_blk[t],
                      zero_param_numel(p));
        CHECK(zero_grad_ready(tr->eng, p));
    }
    return ZERO_OK;
}

/* Forward of one micro-batch (all layers gathered and released in turn); loss in nats. */
static zero_status_t forward(trainer_t *tr, const int *x, const int *y, int B, float *loss_p, int keep_globals)
{
    int T = tr->cfg.context;
    CHECK(zero_gather(tr->eng, tr->global, GPT_NUM_GLOBAL));
    load_weights(tr, -1);
    gpt_backend.forward_begin(tr->model, &tr->w, x, B, T);
    for (int l = 0; l < tr->cfg.layers; l++) {
        zero_param_h *blk = &tr->block[l * GPT_NUM_BLOCK];
        CHECK(zero_gather(tr->eng, blk, GPT_NUM_BLOCK));
        load_weights(tr, l);
        gpt_backend.forward_block(tr->model, &tr->w, l);
        CHECK(zero_release(tr->eng, blk, GPT_NUM_BLOCK));
    }
    *loss_p = gpt_backend.forward_end(tr->model, &tr->w, y);
    if (gpt_backend.check() != 0)
        return ZERO_ERR_CUDA;
    if (!keep_globals)
        CHECK(zero_release(tr->eng, tr->global, GPT_NUM_GLOBAL));
    return ZERO_OK;
}

/* One micro-batch: forward, backward through the engine, step. */
static zero_status_t train_micro(trainer_t *tr, const int *x, const int *y, int B, float *loss_p,
                                 zero_step_info_t *info)
{
    float seed;
    double t0 = now();
    zero_status_t s = forward(tr, x, y, B, loss_p, 1);
    if (s != ZERO_OK)
        return s;
    double t1 = now();
    CHECK(zero_backward_begin(tr->eng, &seed));
    /* Head: dL/dlogits is multiplied by seed (loss scale / gradient accumulation steps). */
    open_grads(tr, -1, 0, GPT_NUM_GLOBAL);
    gpt_backend.backward_end(tr->model, &tr->w, &tr->g, seed);
    s = grads_ready(tr, -1, GPT_LNF_W, 2);
    if (s != ZERO_OK)
        return s;
    for (int l = tr->cfg.layers - 1; l >= 0; l--) {
        zero_param_h *blk = &tr->block[l * GPT_NUM_BLOCK];
        CHECK(zero_gather(tr->eng, blk, GPT_NUM_BLOCK));
        load_weights(tr, l);
        open_grads(tr, l, 0, GPT_NUM_BLOCK);
        gpt_backend.backward_block(tr->model, &tr->w, &tr->g, l);
        s = grads_ready(tr, l, 0, GPT_NUM_BLOCK);
        if (s != ZERO_OK)
            return s;
        CHECK(zero_release(tr->eng, blk, GPT_NUM_BLOCK));
    }
    gpt_backend.backward_begin(tr->model, &tr->w, &tr->g);
    s = grads_ready(tr, -1, GPT_WTE, 2);
    if (s != ZERO_OK)
        return s;
    CHECK(zero_release(tr->eng, tr->global, GPT_NUM_GLOBAL));
    CHECK(zero_backward_end(tr->eng));
    double t2 = now();
    tr->t_fwd += t1 - t0;
    tr->t_bwd += t2 - t1;
    CHECK(zero_step(tr->eng, info));
    return gpt_backend.check() == 0 ? ZERO_OK : ZERO_ERR_CUDA;
}

/* Mean validation loss over the first @p windows held-out windows, split over ranks. */
static zero_status_t evaluate(trainer_t *tr, const int *val, size_t nval, int B, int *x, int *y, double *loss_p)
{
    int T = tr->cfg.context;
    size_t nwin = (nval - 1) / (size_t)T, want = (size_t)tr->opt.eval_windows;
    double acc[2] = {0, 0};
    if (want > nwin)
        want = nwin;
    /* Every rank runs the same number of forwards (stage 3 gathers are collective). */
    size_t per_rank = (want + (size_t)tr->world - 1) / (size_t)tr->world;
    for (size_t first = 0; first < per_rank; first += (size_t)B) {
        int nb = 0;
        for (size_t j = first; j < per_rank && nb < B; j++, nb++) {
            size_t w = j * (size_t)tr->world + (size_t)tr->rank;
            if (w >= want)
                w = want - 1; /* padding: computed, not counted */
            for (int t = 0; t < T; t++) {
                x[nb * T + t] = val[w * (size_t)T + (size_t)t];
                y[nb * T + t] = val[w * (size_t)T + (size_t)t + 1];
            }
        }
        float loss;
        zero_status_t s = forward(tr, x, y, nb, &loss, 0);
        if (s != ZERO_OK)
            return s;
        /* Count only real windows: recompute from per-position probabilities. */
        for (int b = 0; b < nb; b++) {
            size_t w = (first + (size_t)b) * (size_t)tr->world + (size_t)tr->rank;
            if (w >= want)
                continue;
            for (int t = 0; t < T; t++)
                acc[0] += gpt_backend.target_loss(tr->model, b, t);
            acc[1] += T;
        }
    }
    /* in double: the token count stays exact and the loss sum keeps its digits */
    double total[2];
    CHECK(zero_comm_allreduce(zero_engine_comm(tr->eng), acc, total, 2, ZERO_F64, ZERO_COMM_SUM, ZERO_MEM_HOST));
    *loss_p = total[1] > 0 ? total[0] / total[1] : 0.0;
    return ZERO_OK;
}

/* Reads "key": <integer> from a small JSON text (our own client_sd). */
static int json_u64(const char *json, const char *key, uint64_t *out)
{
    char pat[64];
    const char *p;
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(json, pat);
    if (p == NULL)
        return -1;
    *out = strtoull(p + strlen(pat), NULL, 10);
    return 0;
}

static void free_trainer(trainer_t *tr)
{
    if (tr->model != NULL)
        gpt_backend.destroy(tr->model);
    for (int t = 0; t < GPT_NUM_GLOBAL; t++) {
        gpt_backend.free(tr->w_glob[t]);
        gpt_backend.free(tr->g_glob[t]);
    }
    for (int t = 0; t < GPT_NUM_BLOCK; t++) {
        gpt_backend.free(tr->w_blk[t]);
        gpt_backend.free(tr->g_blk[t]);
    }
    free(tr->block);
    free(tr->init);
    free(tr->w.block);
    free(tr->g.block);
}

static zero_status_t run(trainer_t *tr)
{
    options_t *o = &tr->opt;
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH | ZERO_ENGINE_PARAM_FIELD_SEED,
                               .config_path = o->config, .seed = o->seed};
    zero_sampler_h sampler = NULL;
    unsigned char *text = NULL;
    size_t len = 0;
    int *tokens = NULL, *x = NULL, *y = NULL;
    uint64_t *idx = NULL;
    zero_status_t s;

    /* 1. Initialise: the device (train_gpt_cuda), the engine from the config (communicator from the
     * launcher's environment) in the backend's memory. */
    if (gpt_backend.open(o->device, &ep) != 0)
        return ZERO_ERR_UNSUPPORTED;
    tr->opened = 1;
    TRY(zero_engine_create(&ep, &tr->eng));
    const zero_config_t *zc = zero_engine_config(tr->eng);
    zero_comm_h comm = zero_engine_comm(tr->eng);
    tr->rank = zero_comm_rank(comm);
    tr->world = zero_comm_size(comm);
    tr->stage = zc->zero_optimization.stage;
    tr->dtype = zc->precision;
    int B = (int)zc->train_micro_batch_size_per_gpu, gas = (int)zc->gradient_accumulation_steps;
    long print_every = o->print_interval > 0 ? o->print_interval
                       : zc->steps_per_print > 0 ? (long)zc->steps_per_print : 10;
#ifdef _OPENMP
    if (getenv("OMP_NUM_THREADS") == NULL) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        int local = zero_comm_local_size(comm) > 0 ? zero_comm_local_size(comm) : 1;
        omp_set_num_threads(cores / local > 1 ? (int)(cores / local) : 1);
    }
#endif

    /* The text, its byte vocabulary, the split. Every rank reads the same files. */
    int nfiles = load_text(o->data, &text, &len);
    if (nfiles < 1 || len < (size_t)(4 * o->model.context + 16)) {
        fprintf(stderr, "train_gpt: no usable text under %s\n", o->data);
        s = ZERO_ERR_INVALID_ARG;
        goto out;
    }
    int map[256];
    size_t counts[256] = {0};
    int V = 0;
    for (size_t i = 0; i < len; i++)
        counts[text[i]]++;
    double entropy = 0;
    for (int c = 0; c < 256; c++) {
        map[c] = counts[c] ? V++ : -1;
        if (counts[c]) {
            double p = (double)counts[c] / (double)len;
            entropy -= p * log(p);
        }
    }
    tokens = malloc(len * sizeof(int));
    if (tokens == NULL) {
        s = ZERO_ERR_NO_MEMORY;
        goto out;
    }
    for (size_t i = 0; i < len; i++)
        tokens[i] = map[text[i]];
    size_t ntrain = len - len / 10, nval = len - ntrain;
    int T = o->model.context;
    tr->cfg = o->model;
    tr->cfg.vocab = V;
    uint64_t nsamples = (ntrain - 1) / (uint64_t)T;

    /* Every tensor, in forward order, then setup (partition, allocate, initialise). */
    s = register_params(tr);
    if (s != ZERO_OK)
        goto out;
    TRY(zero_engine_setup(tr->eng));
    tr->model = gpt_backend.create(&tr->cfg, B, T);
    x = malloc((size_t)B * (size_t)T * sizeof(int));
    y = malloc((size_t)B * (size_t)T * sizeof(int));
    idx = malloc((size_t)B * sizeof(uint64_t));
    if (tr->model == NULL || !x || !y || !idx) {
        s = ZERO_ERR_NO_MEMORY;
        goto out;
    }

    /* The distributed sampler: this rank's share of the training windows. */
    zero_sampler_params_t sp = {.num_samples = nsamples, .batch_size = (uint64_t)B, .world_size = tr->world,
                                .rank = tr->rank, .seed = o->seed, .shuffle = 1, .drop_last = 1};
    TRY(zero_sampler_create(&sp, &sampler));

    if (tr->rank == 0) {
        printf("data: path=%s files=%d bytes=%zu vocab=%d train_tokens=%zu val_tokens=%zu windows=%llu "
               "unigram_entropy=%.4f\n",
               o->data, nfiles, len, V, ntrain, nval, (unsigned long long)nsamples, entropy);
        printf("model: params=%zu vocab=%d context=%d channels=%d layers=%d heads=%d\n",
               gpt_num_parameters(&tr->cfg), V, T, tr->cfg.channels, tr->cfg.layers, tr->cfg.heads);
        if (ep.mem_kind == ZERO_MEM_DEVICE)
            printf("backend: %s device=%d\n", gpt_backend.name, ep.cuda_device);
        else
            printf("backend: %s\n", gpt_backend.name);
        printf("config: %s stage=%d precision=%s world=%d micro_batch=%d gas=%d global_batch=%llu\n", o->config,
               tr->stage, zero_dtype_string(tr->dtype), tr->world, B, gas,
               (unsigned long long)zc->train_batch_size);
        fflush(stdout);
    }

    /* 3. Resume from <save_dir>/latest if there is one. */
    long start = 0;
    uint64_t micro_done = 0; /* micro-batches this rank has consumed since the start of training */
    char latest[4096];
    if (o->save_dir != NULL && o->resume) {
        snprintf(latest, sizeof(latest), "%s/latest", o->save_dir);
        if (access(latest, F_OK) == 0) {
            char *csd = NULL;
            uint64_t step = 0, micro = 0;
            TRY(zero_load_checkpoint(tr->eng, o->save_dir, NULL, NULL, &csd));
            if (csd == NULL || json_u64(csd, "step", &step) != 0 || json_u64(csd, "micro_steps", &micro) != 0) {
                fprintf(stderr, "train_gpt: %s: client_sd lacks step/micro_steps\n", latest);
                zero_string_free(csd);
                s = ZERO_ERR_INVALID_ARG;
                goto out;
            }
            /* At another world size or micro-batch (a resharded resume) the same data position is a
             * different micro-batch count: convert through the global sample count. */
            uint64_t seen = 0;
            if (json_u64(csd, "samples", &seen) == 0)
                micro = seen / ((uint64_t)B * (uint64_t)tr->world);
            zero_string_free(csd);
            /* dataloader_to_step(): the sampler resumes at the next micro-batch. */
            TRY(zero_sampler_seek(sampler, micro));
            start = (long)step;
            micro_done = micro;
            if (tr->rank == 0)
                printf("resume: from=%s step=%ld micro_steps=%llu\n", o->save_dir, start,
                       (unsigned long long)micro);
        }
    }

    /* 2. Train: per micro-batch forward, backward, step. */
    double win_loss = 0, last_train = NAN, last_val = NAN, t_win = now();
    long win_steps = 0, stop = o->stop_after > 0 && o->stop_after < o->steps ? o->stop_after : o->steps;
    zero_step_info_t info = {0};
    /* Timing excludes the first two steps of a launch (warm-up: first touches, prefetch order). */
    zero_engine_timers_t et0 = {0};
    double f0 = 0, b0 = 0, wall0 = now();
    long timed_from = start;
    for (long step = start + 1; step <= stop; step++) {
        if (step == start + 3) {
            TRY(zero_engine_timers(tr->eng, &et0));
            f0 = tr->t_fwd;
            b0 = tr->t_bwd;
            wall0 = now();
            timed_from = start + 2;
        }
        float step_loss = 0, loss;
        for (int m = 0; m < gas; m++) {
            size_t cnt;
            TRY(zero_sampler_next(sampler, idx, &cnt, NULL, NULL));
            for (size_t b = 0; b < cnt; b++)
                for (int t = 0; t < T; t++) {
                    size_t at = (size_t)idx[b] * (size_t)T + (size_t)t;
                    x[b * (size_t)T + (size_t)t] = tokens[at];
                    y[b * (size_t)T + (size_t)t] = tokens[at + 1];
                }
            s = train_micro(tr, x, y, (int)cnt, &loss, &info);
            if (s != ZERO_OK)
                goto out;
            micro_done++;
            step_loss += loss;
        }
        /* The step's loss over the global batch: every rank's micro-batches. */
        float global_loss;
        TRY(zero_comm_allreduce(comm, &step_loss, &global_loss, 1, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST));
        global_loss /= (float)(gas * tr->world);
        win_loss += global_loss;
        win_steps++;
        if (step % print_every == 0 || step == stop) {
            double dt = now() - t_win;
            last_train = win_loss / (double)win_steps;
            if (tr->rank == 0) {
                printf("step=%ld train_loss=%.6f lr=%.6g grad_norm=%.4f loss_scale=%g ms_per_step=%.1f "
                       "samples_per_s=%.1f\n",
                       step, last_train, info.lr, info.grad_norm, info.loss_scale, 1e3 * dt / (double)win_steps,
                       (double)win_steps * (double)zc->train_batch_size / dt);
                fflush(stdout);
            }
            win_loss = 0;
            win_steps = 0;
            t_win = now();
        }
        if (o->eval_interval > 0 && step % o->eval_interval == 0 && step != stop) {
            s = evaluate(tr, tokens + ntrain, nval, B, x, y, &last_val);
            if (s != ZERO_OK)
                goto out;
            if (tr->rank == 0)
                printf("val_loss=%.6f step=%ld\n", last_val, step);
            t_win = now();
        }
        if (o->save_dir != NULL && o->save_interval > 0 && (step % o->save_interval == 0 || step == stop)) {
            char csd[256];
            uint64_t epoch, batch;
            zero_sampler_position(sampler, &epoch, &batch);
            snprintf(csd, sizeof(csd),
                     "{\"step\":%ld,\"micro_steps\":%llu,\"samples\":%llu,\"epoch\":%llu,\"batch\":%llu,"
                     "\"seed\":%llu}",
                     step, (unsigned long long)micro_done,
                     (unsigned long long)(micro_done * (uint64_t)B * (uint64_t)tr->world), (unsigned long long)epoch,
                     (unsigned long long)batch, o->seed);
            TRY(zero_save_checkpoint(tr->eng, o->save_dir, NULL, csd));
            if (tr->rank == 0)
                printf("checkpoint: dir=%s step=%ld\n", o->save_dir, step);
            t_win = now();
        }
    }
    double wall_end = now();
    s = evaluate(tr, tokens + ntrain, nval, B, x, y, &last_val);
    if (s != ZERO_OK)
        goto out;
    zero_engine_timers_t et;
    zero_engine_memory_t mem;
    TRY(zero_engine_timers(tr->eng, &et));
    TRY(zero_engine_memory(tr->eng, &mem));
    if (tr->rank == 0) {
        /* Per step, rank 0, after warm-up. forward/backward are this trainer's own timers (at stage 3
         * they include waiting in zero_gather); the rest are the engine's. */
        double n = (double)(stop - timed_from > 0 ? stop - timed_from : 1), wall = wall_end - wall0;
        printf("timing: steps=%ld step_ms=%.2f samples_per_s=%.1f forward_ms=%.2f backward_ms=%.2f "
               "backward_wait_ms=%.2f reduce_ms=%.2f optimizer_ms=%.2f gather_ms=%.2f\n",
               stop - timed_from, 1e3 * wall / n, n * (double)zc->train_batch_size / wall,
               1e3 * (tr->t_fwd - f0) / n, 1e3 * (tr->t_bwd - b0) / n,
               1e3 * (et.backward_wait - et0.backward_wait) / n, 1e3 * (et.reduce - et0.reduce) / n,
               1e3 * (et.step - et0.step) / n, 1e3 * (et.gather - et0.gather) / n);
        printf("memory: num_params=%llu params=%llu grads=%llu master=%llu optim_state=%llu buffers_peak=%llu "
               "total=%llu\n",
               (unsigned long long)mem.num_params, (unsigned long long)mem.params, (unsigned long long)mem.grads,
               (unsigned long long)mem.master, (unsigned long long)mem.optim_state,
               (unsigned long long)mem.buffers_peak, (unsigned long long)mem.total);
        printf("val_loss=%.6f step=%ld\n", last_val, stop);
        printf("final_train_loss=%.6f final_val_loss=%.6f unigram_entropy=%.6f steps=%ld\n", last_train, last_val,
               entropy, stop);
        fflush(stdout);
    }
    s = ZERO_OK;
out:
    zero_sampler_destroy(sampler);
    free(idx);
    free(x);
    free(y);
    free(tokens);
    free(text);
    return s;
}

int main(int argc, char **argv)
{
    trainer_t tr = {0};
    zero_status_t s;
    if (parse_options(argc, argv, &tr.opt) != 0)
        return 2;
    s = run(&tr);
    zero_engine_destroy(tr.eng);
    free_trainer(&tr);
    if (tr.opened)
        gpt_backend.close();
    return s == ZERO_OK ? 0 : 1;
}
