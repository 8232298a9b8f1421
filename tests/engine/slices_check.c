/*
 * Slices of stacked parameters (issue 13), run on every rank through
 * zero-launch at world sizes 1-3: `slices_check DIR` (DIR: a scratch
 * directory for the resume check's checkpoints).
 *
 *  1. Bytes: at stage 3 every slice (one row, several rows, the last row,
 *     rows that straddle two ranks' shards, nested gathers, a persistent
 *     parameter's rows), fp32 and bf16, has exactly the bytes of the same
 *     rows of the whole gathered parameter; also with the shards in a file
 *     (offload_param "nvme", small buffers), whose whole weights are those
 *     of the shards in memory.
 *  2. Prefetch: once the order is recorded, gathering slice l has slice l+1
 *     in flight too (the working buffers hold both) with
 *     stage3_prefetch_bucket_size of two rows, and not with 0; the
 *     prefetched slices' bytes are right.
 *  2b. Many slices (world 1): 8400 held at once, past the gather pool's
 *     block limit, get one-off buffers with the right bytes.
 *  3. Errors: rows out of range, a scalar, overlapping gathers (held or in
 *     one call), whole and slice gathers of one parameter at once,
 *     unbalanced and mismatched releases, zero_step with a slice held,
 *     gradient slices outside a backward, declared twice, partly matching an
 *     open slice, mixed with zero_param_grad/zero_grad_ready; each names the
 *     parameter and the rows, and the engine trains on afterwards.
 *  4. Training: a residual MLP whose weights are stacked across layers
 *     ((L, C, C) and (L, C), llm.c's layout) trained 4 steps of 2
 *     micro-batches. Gathering layer by layer gives bit for bit the weights
 *     and losses of gathering whole tensors, at stages 0, 2 and 3; with the
 *     gradients handed over in slices too it is bit for bit the same at
 *     every stage and world size (the slice's reduce-scatter of its range
 *     sums each element in the order of the whole tensor's reduce-scatter;
 *     the direct path and, with ZERO_COMM_DIRECT=0, the ring). Every run is
 *     also within 1e-5 of stage 0.
 *  5. Resume: stage 3 layer by layer with gradient slices, saved after 2
 *     steps and loaded into a new engine, ends bit for bit where the
 *     uninterrupted run ends.
 *  6. Memory: a stage-3 trainer in llm.c's layout (16 tensors, 12 of them
 *     stacked over 6 layers) gathering layer by layer holds at most half the
 *     working memory (zero_engine_memory's buffers_peak) of the same trainer
 *     gathering whole tensors, with prefetch of one layer and no reuse; the
 *     figures, and those with DeepSpeed's defaults, are printed
 *     ("slices-memory: ...").
 *  7. hpZ (SLICES_CHECK_ONLY=hpz, world 4, only this): see check_hpz.
 *
 * Exit status: the number of failed checks (0 = all passed).
 */
#define _XOPEN_SOURCE 700
#include <zero/zero.h>

#include "rank_check.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)user;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.05f * sinf(0.37f * (float)(offset + i) + (float)name[0] + 0.5f * (float)strlen(name));
}

static zero_engine_h make_engine(zero_comm_h comm, const char *json)
{
    zero_engine_params_t ep = {0};
    zero_engine_h eng = NULL;
    ep.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                    ZERO_ENGINE_PARAM_FIELD_NUM_THREADS;
    ep.config_json = json;
    ep.comm = comm;
    ep.num_threads = 1;
    if (zero_engine_create(&ep, &eng) != ZERO_OK) {
        EXPECT(0, "engine create failed for %s", json);
        return NULL;
    }
    return eng;
}

static zero_param_h reg(zero_engine_h eng, const char *name, zero_dtype_t dtype, int ndim, int64_t d0, int64_t d1,
                        int64_t d2, int decay)
{
    zero_param_desc_t d = {0};
    zero_param_h h = NULL;
    d.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY;
    d.name = name;
    d.dtype = dtype;
    d.ndim = ndim;
    d.shape[0] = d0;
    d.shape[1] = d1;
    d.shape[2] = d2;
    d.init_fn = init_fn;
    d.weight_decay = decay;
    if (zero_param_register(eng, &d, &h) != ZERO_OK)
        EXPECT(0, "register %s failed", name);
    return h;
}

static zero_param_slice_t sl(zero_param_h p, int64_t first, int64_t count)
{
    zero_param_slice_t s;
    s.param = p;
    s.first = first;
    s.count = count;
    return s;
}

/* ---- 1 and 2: bytes and prefetch ---- */

/* The whole parameter's bytes, gathered whole (malloc'd). */
static unsigned char *whole_bytes(zero_engine_h eng, zero_param_h p, size_t esz)
{
    size_t bytes = zero_param_numel(p) * esz;
    unsigned char *copy = malloc(bytes);
    if (zero_gather(eng, &p, 1) != ZERO_OK || zero_param_data(p) == NULL) {
        EXPECT(0, "whole gather of %s: %s", zero_param_name(p), zero_engine_last_error(eng));
        free(copy);
        return NULL;
    }
    memcpy(copy, zero_param_data(p), bytes);
    zero_release(eng, &p, 1);
    return copy;
}

static void expect_slice_bytes(zero_engine_h eng, zero_param_h p, const unsigned char *whole, size_t row_bytes,
                               int64_t first, int64_t count, const char *what)
{
    zero_param_slice_t s = sl(p, first, count);
    const unsigned char *data;
    if (zero_gather_slices(eng, &s, 1) != ZERO_OK) {
        EXPECT(0, "%s: gather of %s rows %lld+%lld: %s", what, zero_param_name(p), (long long)first, (long long)count,
               zero_engine_last_error(eng));
        return;
    }
    data = zero_param_slice_data(p, first, count);
    EXPECT(data != NULL && memcmp(data, whole + (size_t)first * row_bytes, (size_t)count * row_bytes) == 0,
           "%s: %s rows %lld+%lld differ from the whole gather's", what, zero_param_name(p), (long long)first,
           (long long)count);
    if (count > 1) {
        const unsigned char *inner = zero_param_slice_data(p, first + 1, 1);
        EXPECT(inner == (data ? data + row_bytes : NULL), "%s: a row inside a gathered slice is not found in it", what);
    }
    EXPECT(zero_release_slices(eng, &s, 1) == ZERO_OK, "%s: release: %s", what, zero_engine_last_error(eng));
    EXPECT(zero_param_slice_data(p, first, count) == NULL, "%s: data stays after release", what);
}

/* The whole weights of check_bytes' in-memory run (bf16: [1]), which its run
 * with the shards on NVMe must see too. */
static unsigned char *bytes_ref[2][3];

static void check_bytes(zero_comm_h comm, zero_dtype_t dtype, const char *nvme_dir)
{
    char json[1024], offload[600] = "";
    const char *what = nvme_dir != NULL ? (dtype == ZERO_FP32 ? "bytes fp32, shards on nvme" : "bytes bf16, shards on nvme")
                                        : (dtype == ZERO_FP32 ? "bytes fp32" : "bytes bf16");
    size_t esz = dtype == ZERO_FP32 ? 4 : 2;
    int di = dtype == ZERO_FP32 ? 0 : 1;
    zero_engine_h eng;
    zero_param_h w, b, small;
    unsigned char *ww, *wb, *wsmall;
    if (nvme_dir != NULL)
        /* buffers of 29 elements: slices straddle windows, bf16 ones start on odd elements */
        snprintf(offload, sizeof(offload),
                 " \"offload_param\": {\"device\": \"nvme\", \"nvme_path\": \"%s\", \"buffer_size\": 29, \"max_in_cpu\": 0},", nvme_dir);
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"steps_per_print\": 0,%s"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}},"
             " \"zero_optimization\": {%s \"stage\": 3, \"stage3_param_persistence_threshold\": 100}}",
             dtype == ZERO_BF16 ? " \"bf16\": {\"enabled\": true}," : "", offload);
    eng = make_engine(comm, json);
    if (eng == NULL)
        return;
    /* rows of 7 x 9 = 63 elements: slices straddle the shards of 2 and 3 ranks */
    w = reg(eng, "h.w", dtype, 3, 11, 7, 9, 1);
    b = reg(eng, "h.b", dtype, 2, 11, 37, 0, 0);
    small = reg(eng, "ln.w", dtype, 2, 5, 13, 0, 0);   /* 65 elements: persistent */
    if (zero_engine_setup(eng) != ZERO_OK) {
        EXPECT(0, "%s: setup: %s", what, zero_engine_last_error(eng));
        zero_engine_destroy(eng);
        return;
    }
    ww = whole_bytes(eng, w, esz);
    wb = whole_bytes(eng, b, esz);
    wsmall = whole_bytes(eng, small, esz);
    if (ww != NULL && wb != NULL && wsmall != NULL && nvme_dir == NULL) {
        bytes_ref[di][0] = malloc(11 * 63 * esz);
        bytes_ref[di][1] = malloc(11 * 37 * esz);
        bytes_ref[di][2] = malloc(5 * 13 * esz);
        if (bytes_ref[di][0] != NULL && bytes_ref[di][1] != NULL && bytes_ref[di][2] != NULL) {
            memcpy(bytes_ref[di][0], ww, 11 * 63 * esz);
            memcpy(bytes_ref[di][1], wb, 11 * 37 * esz);
            memcpy(bytes_ref[di][2], wsmall, 5 * 13 * esz);
        }
    } else if (ww != NULL && wb != NULL && wsmall != NULL && bytes_ref[di][2] != NULL) {
        EXPECT(memcmp(ww, bytes_ref[di][0], 11 * 63 * esz) == 0 && memcmp(wb, bytes_ref[di][1], 11 * 37 * esz) == 0 &&
                   memcmp(wsmall, bytes_ref[di][2], 5 * 13 * esz) == 0,
               "%s: the whole weights differ from those of the shards in memory", what);
    }
    if (ww != NULL && wb != NULL && wsmall != NULL) {
        for (int64_t l = 0; l < 11; l++) {
            expect_slice_bytes(eng, w, ww, 63 * esz, l, 1, what);
            expect_slice_bytes(eng, b, wb, 37 * esz, l, 1, what);
        }
        expect_slice_bytes(eng, w, ww, 63 * esz, 0, 11, what);
        expect_slice_bytes(eng, w, ww, 63 * esz, 3, 5, what);
        expect_slice_bytes(eng, w, ww, 63 * esz, 10, 1, what);
        for (int64_t l = 0; l < 5; l++)
            expect_slice_bytes(eng, small, wsmall, 13 * esz, l, 1, what);
        {
            /* several at once, one of them twice (nested), released in two calls */
            zero_param_slice_t s[4] = {sl(w, 2, 2), sl(b, 4, 1), sl(w, 2, 2), sl(small, 1, 3)};
            EXPECT(zero_gather_slices(eng, s, 4) == ZERO_OK, "%s: batch gather: %s", what, zero_engine_last_error(eng));
            EXPECT(zero_param_slice_data(w, 2, 2) != NULL &&
                       memcmp(zero_param_slice_data(w, 2, 2), ww + 2 * 63 * esz, 2 * 63 * esz) == 0,
                   "%s: batch gather bytes", what);
            EXPECT(zero_release_slices(eng, s, 2) == ZERO_OK, "%s: release 1: %s", what, zero_engine_last_error(eng));
            EXPECT(zero_param_slice_data(w, 2, 2) != NULL, "%s: a nested slice was released at its first release",
                   what);
            EXPECT(zero_release_slices(eng, s + 2, 2) == ZERO_OK, "%s: release 2: %s", what,
                   zero_engine_last_error(eng));
            EXPECT(zero_param_slice_data(w, 2, 2) == NULL, "%s: nested slice kept after its last release", what);
        }
    }
    {
        zero_engine_memory_t m;
        zero_engine_memory(eng, &m);
        EXPECT(m.buffers == 0, "%s: %llu bytes of working buffers in use after every release", what,
               (unsigned long long)m.buffers);
    }
    free(ww);
    free(wb);
    free(wsmall);
    zero_engine_destroy(eng);
}

/* More slices held at once than the gather pool hands out blocks (one per
 * bucket + 4096): the rest get one-off buffers with the right bytes, and all
 * of it goes back at release, every other row first, so that the pool's
 * free list holds as many holes as it can (world 1: thousands of small
 * collectives). */
static void check_many_slices(zero_comm_h comm)
{
    enum { ROWS = 8400, ROW = 16 };
    zero_engine_h eng = make_engine(comm, "{\"train_micro_batch_size_per_gpu\": 1, \"steps_per_print\": 0,"
                                          " \"optimizer\": {\"type\": \"SGD\", \"params\": {\"lr\": 0.1}},"
                                          " \"zero_optimization\": {\"stage\": 3,"
                                          " \"stage3_param_persistence_threshold\": 0}}");
    zero_param_h w;
    zero_param_slice_t *s = calloc(ROWS, sizeof(*s));
    unsigned char *whole;
    int bad = 0;
    if (eng == NULL || s == NULL) {
        free(s);
        zero_engine_destroy(eng);
        return;
    }
    w = reg(eng, "many.w", ZERO_FP32, 2, ROWS, ROW, 0, 1);
    if (zero_engine_setup(eng) != ZERO_OK || (whole = whole_bytes(eng, w, 4)) == NULL) {
        free(s);
        zero_engine_destroy(eng);
        return;
    }
    for (int r = 0; r < ROWS; r++)
        s[r] = sl(w, r, 1);
    EXPECT(zero_gather_slices(eng, s, ROWS) == ZERO_OK, "many slices: %s", zero_engine_last_error(eng));
    for (int r = 0; r < ROWS; r++) {
        const void *d = zero_param_slice_data(w, r, 1);
        bad += d == NULL || memcmp(d, whole + (size_t)r * ROW * 4, ROW * 4) != 0;
    }
    EXPECT(bad == 0, "many slices: %d of %d rows differ from the whole gather's", bad, ROWS);
    for (int r = 0; r < ROWS; r++)   /* odd rows first, then even ones */
        s[r] = sl(w, r < ROWS / 2 ? 2 * r + 1 : 2 * (r - ROWS / 2), 1);
    EXPECT(zero_release_slices(eng, s, ROWS / 2) == ZERO_OK && zero_release_slices(eng, s + ROWS / 2, ROWS / 2) == ZERO_OK,
           "many slices: release: %s", zero_engine_last_error(eng));
    {
        zero_engine_memory_t m;
        zero_engine_memory(eng, &m);
        EXPECT(m.buffers == 0, "many slices: %llu bytes in use after release", (unsigned long long)m.buffers);
    }
    free(whole);
    free(s);
    zero_engine_destroy(eng);
}

/* One micro-batch (and step) of a trainer that gathers w's rows one by one
 * forward and backward; with @p probe, the working buffers right after
 * gathering row 0 in the backward-order pass are returned. */
static uint64_t layer_pass(zero_engine_h eng, zero_param_h w, const unsigned char *want, size_t row_bytes, int rows,
                           const char *what)
{
    uint64_t after_first = 0;
    float seed;
    for (int l = 0; l < rows; l++) {
        zero_param_slice_t s = sl(w, l, 1);
        zero_engine_memory_t m;
        if (zero_gather_slices(eng, &s, 1) != ZERO_OK) {
            EXPECT(0, "%s: gather row %d: %s", what, l, zero_engine_last_error(eng));
            return 0;
        }
        zero_engine_memory(eng, &m);
        if (l == 0)
            after_first = m.buffers;
        if (want != NULL)
            EXPECT(memcmp(zero_param_slice_data(w, l, 1), want + (size_t)l * row_bytes, row_bytes) == 0,
                   "%s: row %d's bytes differ from the whole gather's", what, l);
        zero_release_slices(eng, &s, 1);
    }
    if (zero_backward_begin(eng, &seed) != ZERO_OK || zero_backward_end(eng) != ZERO_OK ||
        zero_step(eng, NULL) != ZERO_OK)
        EXPECT(0, "%s: backward/step: %s", what, zero_engine_last_error(eng));
    return after_first;
}

static void check_prefetch(zero_comm_h comm, int prefetch_rows)
{
    char json[640];
    const int rows = 6, row = 1024;   /* 4 KiB rows: pool blocks are 64-byte multiples */
    const size_t row_bytes = (size_t)row * 4;
    zero_engine_h eng;
    zero_param_h w;
    unsigned char *before;
    uint64_t first_pass, second_pass;
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"SGD\", \"params\": {\"lr\": 0.0}},"
             " \"zero_optimization\": {\"stage\": 3, \"stage3_param_persistence_threshold\": 0,"
             " \"stage3_prefetch_bucket_size\": %d, \"stage3_max_reuse_distance\": 0}}",
             prefetch_rows * row);
    eng = make_engine(comm, json);
    if (eng == NULL)
        return;
    w = reg(eng, "stack.w", ZERO_FP32, 2, rows, row, 0, 1);
    if (zero_engine_setup(eng) != ZERO_OK) {
        zero_engine_destroy(eng);
        return;
    }
    before = whole_bytes(eng, w, 4);
    first_pass = layer_pass(eng, w, before, row_bytes, rows, "prefetch pass 1");   /* records the order */
    second_pass = layer_pass(eng, w, before, row_bytes, rows, "prefetch pass 2");  /* prefetches */
    if (prefetch_rows > 0) {
        EXPECT(first_pass == row_bytes, "prefetch: %llu bytes in use gathering row 0 before the order is known",
               (unsigned long long)first_pass);
        EXPECT(second_pass >= 2 * row_bytes,
               "prefetch: gathering row 0 with the order known holds %llu bytes: row 1 was not prefetched",
               (unsigned long long)second_pass);
    } else {
        EXPECT(second_pass == row_bytes, "prefetch off: %llu bytes in use gathering row 0",
               (unsigned long long)second_pass);
    }
    free(before);
    zero_engine_destroy(eng);
}

/* ---- 3: errors ---- */

static void expect_error(zero_engine_h eng, zero_status_t got, zero_status_t want, const char *name,
                         const char *rows, int line)
{
    const char *msg = zero_engine_last_error(eng);
    if (got != want || strstr(msg, name) == NULL || (rows != NULL && strstr(msg, rows) == NULL)) {
        fprintf(stderr, "rank %d: %s:%d: got %s (want %s), message \"%s\" (must name %s%s%s)\n", check_rank, __FILE__,
                line, zero_status_string(got), zero_status_string(want), msg, name, rows ? " and " : "",
                rows ? rows : "");
        check_failures++;
    }
}
#define EXPECT_ERROR(eng, call, want, name, rows) expect_error(eng, call, want, name, rows, __LINE__)

static void check_errors(zero_comm_h comm, int stage)
{
    char json[512];
    zero_engine_h eng;
    zero_param_h w, head, scalar;
    float seed;
    zero_param_slice_t s;
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"SGD\", \"params\": {\"lr\": 0.1}},"
             " \"zero_optimization\": {\"stage\": %d, \"stage3_param_persistence_threshold\": 0}}",
             stage);
    eng = make_engine(comm, json);
    if (eng == NULL)
        return;
    w = reg(eng, "blocks.w", ZERO_FP32, 3, 4, 8, 8, 1);
    head = reg(eng, "head.w", ZERO_FP32, 1, 16, 0, 0, 0);
    scalar = reg(eng, "temperature", ZERO_FP32, 0, 0, 0, 0, 0);
    s = sl(w, 0, 1);
    EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_STATE, "blocks.w", "[0, 1)");   /* before setup */
    if (zero_engine_setup(eng) != ZERO_OK) {
        zero_engine_destroy(eng);
        return;
    }
    /* out of range */
    s = sl(w, 3, 2);
    EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_INVALID_ARG, "blocks.w", "[3, 5)");
    s = sl(w, -1, 1);
    EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_INVALID_ARG, "blocks.w", "[-1, 0)");
    s = sl(w, 1, 0);
    EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_INVALID_ARG, "blocks.w", "[1, 1)");
    s = sl(scalar, 0, 1);
    EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_INVALID_ARG, "temperature", NULL);
    EXPECT(zero_param_slice_data(w, 0, 1) == NULL, "slice data before any gather");
    /* overlapping */
    s = sl(w, 0, 2);
    EXPECT(zero_gather_slices(eng, &s, 1) == ZERO_OK, "gather [0, 2): %s", zero_engine_last_error(eng));
    s = sl(w, 1, 2);
    EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_STATE, "blocks.w", "[1, 3)");
    EXPECT(zero_param_slice_data(w, 1, 2) == NULL, "a refused overlapping gather left rows [1, 3) gathered");
    {
        zero_param_slice_t two[2] = {sl(w, 2, 1), sl(w, 2, 2)};
        EXPECT_ERROR(eng, zero_gather_slices(eng, two, 2), ZERO_ERR_STATE, "blocks.w", "[2, 4)");
        EXPECT(zero_param_slice_data(w, 2, 1) == NULL, "a refused call left rows [2, 3) gathered");
    }
    if (stage == 3)
        EXPECT_ERROR(eng, zero_gather(eng, &w, 1), ZERO_ERR_STATE, "blocks.w", NULL);
    /* unbalanced and mismatched releases */
    s = sl(w, 0, 1);
    EXPECT_ERROR(eng, zero_release_slices(eng, &s, 1), ZERO_ERR_STATE, "blocks.w", "[0, 1)");
    s = sl(w, 3, 1);
    EXPECT_ERROR(eng, zero_release_slices(eng, &s, 1), ZERO_ERR_STATE, "blocks.w", "[3, 4)");
    {
        zero_param_slice_t twice[2] = {sl(w, 0, 2), sl(w, 0, 2)};
        EXPECT_ERROR(eng, zero_release_slices(eng, twice, 2), ZERO_ERR_STATE, "blocks.w", "[0, 2)");
        EXPECT(zero_param_slice_data(w, 0, 2) != NULL, "a refused release released rows [0, 2)");
    }
    /* zero_step with a slice held */
    EXPECT(zero_backward_begin(eng, &seed) == ZERO_OK && zero_backward_end(eng) == ZERO_OK, "backward: %s",
           zero_engine_last_error(eng));
    EXPECT_ERROR(eng, zero_step(eng, NULL), ZERO_ERR_STATE, "blocks.w", "[0, 2)");
    s = sl(w, 0, 2);
    EXPECT(zero_release_slices(eng, &s, 1) == ZERO_OK, "release [0, 2): %s", zero_engine_last_error(eng));
    EXPECT(zero_step(eng, NULL) == ZERO_OK, "step after the release: %s", zero_engine_last_error(eng));
    /* a whole gather held, then a slice (stage 3 only: zero_gather is a no-op below) */
    if (stage == 3) {
        EXPECT(zero_gather(eng, &w, 1) == ZERO_OK, "whole gather: %s", zero_engine_last_error(eng));
        s = sl(w, 1, 1);
        EXPECT_ERROR(eng, zero_gather_slices(eng, &s, 1), ZERO_ERR_STATE, "blocks.w", "[1, 2)");
        EXPECT(zero_release(eng, &w, 1) == ZERO_OK, "whole release: %s", zero_engine_last_error(eng));
    }
    /* gradient slices */
    EXPECT(zero_param_grad_slice(w, 0, 1) == NULL, "a gradient slice outside a backward");
    EXPECT_ERROR(eng, zero_grad_slice_ready(eng, w, 0, 1), ZERO_ERR_STATE, "blocks.w", "[0, 1)");
    EXPECT(zero_backward_begin(eng, &seed) == ZERO_OK, "backward: %s", zero_engine_last_error(eng));
    EXPECT(zero_param_grad_slice(w, 0, 5) == NULL, "a gradient slice out of range");
    EXPECT_ERROR(eng, zero_grad_slice_ready(eng, w, 2, 3), ZERO_ERR_INVALID_ARG, "blocks.w", "[2, 5)");
    EXPECT(zero_param_grad_slice(w, 0, 2) != NULL, "gradient slice [0, 2): %s", zero_engine_last_error(eng));
    if (stage == 3) {   /* below stage 3 slices are windows on the whole gradient: none is "open" */
        EXPECT(zero_param_grad_slice(w, 1, 1) == NULL, "a gradient slice overlapping an open one");
        EXPECT_ERROR(eng, zero_grad_slice_ready(eng, w, 1, 1), ZERO_ERR_STATE, "blocks.w", "[1, 2)");
    }
    EXPECT(zero_grad_slice_ready(eng, w, 0, 2) == ZERO_OK, "ready [0, 2): %s", zero_engine_last_error(eng));
    EXPECT_ERROR(eng, zero_grad_slice_ready(eng, w, 1, 2), ZERO_ERR_STATE, "blocks.w", "[1, 3)");
    EXPECT(zero_param_grad_slice(w, 1, 1) == NULL, "a gradient slice of rows declared ready");
    /* mixing whole and slices */
    EXPECT(zero_grad_ready(eng, head) == ZERO_OK, "ready head: %s", zero_engine_last_error(eng));
    EXPECT_ERROR(eng, zero_grad_slice_ready(eng, head, 0, 4), ZERO_ERR_STATE, "head.w", "[0, 4)");
    if (stage == 3)
        EXPECT(zero_grad_ready(eng, w) != ZERO_OK, "zero_grad_ready of a parameter handed over in slices");
    EXPECT(zero_backward_end(eng) == ZERO_OK && zero_step(eng, NULL) == ZERO_OK, "step: %s",
           zero_engine_last_error(eng));
    if (stage == 3) {
        EXPECT(zero_backward_begin(eng, &seed) == ZERO_OK, "backward: %s", zero_engine_last_error(eng));
        EXPECT(zero_param_grad(w) != NULL, "whole gradient: %s", zero_engine_last_error(eng));
        EXPECT(zero_param_grad_slice(w, 0, 1) == NULL, "a gradient slice after zero_param_grad");
        EXPECT_ERROR(eng, zero_grad_slice_ready(eng, w, 0, 1), ZERO_ERR_STATE, "blocks.w", "[0, 1)");
        EXPECT(zero_backward_end(eng) == ZERO_OK && zero_step(eng, NULL) == ZERO_OK, "step: %s",
               zero_engine_last_error(eng));
    }
    /* the engine goes on: a layer-by-layer micro-batch */
    EXPECT(zero_backward_begin(eng, &seed) == ZERO_OK, "backward: %s", zero_engine_last_error(eng));
    for (int l = 3; l >= 0; l--) {
        float *g;
        s = sl(w, l, 1);
        EXPECT(zero_gather_slices(eng, &s, 1) == ZERO_OK, "gather: %s", zero_engine_last_error(eng));
        g = zero_param_grad_slice(w, l, 1);
        EXPECT(g != NULL, "grad slice %d: %s", l, zero_engine_last_error(eng));
        if (g != NULL)
            g[0] += 1.0f;
        EXPECT(zero_grad_slice_ready(eng, w, l, 1) == ZERO_OK, "ready %d: %s", l, zero_engine_last_error(eng));
        EXPECT(zero_release_slices(eng, &s, 1) == ZERO_OK, "release: %s", zero_engine_last_error(eng));
    }
    EXPECT(zero_backward_end(eng) == ZERO_OK && zero_step(eng, NULL) == ZERO_OK, "step: %s",
           zero_engine_last_error(eng));
    zero_engine_destroy(eng);
}

/* ---- 4 and 5: a stacked-tensor trainer ---- */

#define L 5
#define C 24
#define B 3
#define STEPS 4
#define GAS 2

enum mode { WHOLE, SLICE_GATHER, SLICE_ALL };
static const char *mode_names[] = {"whole", "slice gathers", "slice gathers and gradients"};

typedef struct trained {
    float w[L * C * C], b[L * C], head[C];
    double loss[STEPS];
} trained_t;

static void sample(long idx, float *x, float *t)
{
    for (int j = 0; j < C; j++)
        x[j] = sinf(0.37f * (float)idx + 0.11f * (float)j) + 0.3f * cosf(0.05f * (float)(idx * j));
    *t = 0.5f * cosf(0.5f * (float)idx);
}

static const float *rows_of(zero_param_h p, int mode, int l)
{
    return mode == WHOLE ? (const float *)zero_param_data(p) + (size_t)l * zero_param_numel(p) / L
                         : zero_param_slice_data(p, l, 1);
}

/* One micro-batch of the trainer; returns its local loss or NAN. */
static double micro_batch(zero_engine_h eng, zero_param_h hw, zero_param_h hb, zero_param_h head, int mode,
                          long base)
{
    static float h[B][L + 1][C], act[B][L][C];
    float x[C], t[B], y[B], seed, dw[C * C], db[C], dh[B][C];
    double loss = 0;
    zero_param_h stacked[2] = {hw, hb};
    for (int i = 0; i < B; i++)
        sample(base + i, h[i][0], &t[i]);
    (void)x;
    /* forward */
    if (zero_gather(eng, &head, 1) != ZERO_OK || (mode == WHOLE && zero_gather(eng, stacked, 2) != ZERO_OK))
        return NAN;
    for (int l = 0; l < L; l++) {
        zero_param_slice_t s[2] = {sl(hw, l, 1), sl(hb, l, 1)};
        const float *W, *bb;
        if (mode != WHOLE && zero_gather_slices(eng, s, 2) != ZERO_OK)
            return NAN;
        W = rows_of(hw, mode, l);
        bb = rows_of(hb, mode, l);
        for (int i = 0; i < B; i++)
            for (int r = 0; r < C; r++) {
                float a = bb[r];
                for (int c = 0; c < C; c++)
                    a += W[r * C + c] * h[i][l][c];
                act[i][l][r] = tanhf(a);
                h[i][l + 1][r] = h[i][l][r] + act[i][l][r];
            }
        if (mode != WHOLE && zero_release_slices(eng, s, 2) != ZERO_OK)
            return NAN;
    }
    for (int i = 0; i < B; i++) {
        const float *v = zero_param_data(head);
        y[i] = 0;
        for (int c = 0; c < C; c++)
            y[i] += v[c] * h[i][L][c];
        loss += 0.5 * (double)(y[i] - t[i]) * (double)(y[i] - t[i]);
    }
    if (mode == WHOLE && zero_release(eng, stacked, 2) != ZERO_OK)
        return NAN;
    /* backward */
    if (zero_backward_begin(eng, &seed) != ZERO_OK)
        return NAN;
    {
        float *gv = zero_param_grad(head);
        const float *v = zero_param_data(head);
        if (gv == NULL)
            return NAN;
        for (int i = 0; i < B; i++) {
            float dy = seed * (y[i] - t[i]);
            for (int c = 0; c < C; c++) {
                gv[c] += dy * h[i][L][c];
                dh[i][c] = dy * v[c];
            }
        }
        if (zero_grad_ready(eng, head) != ZERO_OK || zero_release(eng, &head, 1) != ZERO_OK)
            return NAN;
    }
    if (mode == WHOLE && zero_gather(eng, stacked, 2) != ZERO_OK)
        return NAN;
    for (int l = L - 1; l >= 0; l--) {
        zero_param_slice_t s[2] = {sl(hw, l, 1), sl(hb, l, 1)};
        const float *W;
        float *gw, *gb;
        if (mode != WHOLE && zero_gather_slices(eng, s, 2) != ZERO_OK)
            return NAN;
        W = rows_of(hw, mode, l);
        memset(dw, 0, sizeof(dw));
        memset(db, 0, sizeof(db));
        for (int i = 0; i < B; i++) {
            float da[C], next[C];
            for (int r = 0; r < C; r++)
                da[r] = dh[i][r] * (1.0f - act[i][l][r] * act[i][l][r]);
            for (int r = 0; r < C; r++) {
                db[r] += da[r];
                for (int c = 0; c < C; c++)
                    dw[r * C + c] += da[r] * h[i][l][c];
            }
            for (int c = 0; c < C; c++) {
                next[c] = dh[i][c];
                for (int r = 0; r < C; r++)
                    next[c] += W[r * C + c] * da[r];
            }
            memcpy(dh[i], next, sizeof(next));
        }
        if (mode == SLICE_ALL) {
            gw = zero_param_grad_slice(hw, l, 1);
            gb = zero_param_grad_slice(hb, l, 1);
        } else {
            gw = zero_param_grad(hw);
            gb = zero_param_grad(hb);
            gw = gw ? gw + (size_t)l * C * C : NULL;
            gb = gb ? gb + (size_t)l * C : NULL;
        }
        if (gw == NULL || gb == NULL)
            return NAN;
        for (int k = 0; k < C * C; k++)
            gw[k] += dw[k];
        for (int k = 0; k < C; k++)
            gb[k] += db[k];
        if (mode == SLICE_ALL &&
            (zero_grad_slice_ready(eng, hw, l, 1) != ZERO_OK || zero_grad_slice_ready(eng, hb, l, 1) != ZERO_OK))
            return NAN;
        if (mode != WHOLE && zero_release_slices(eng, s, 2) != ZERO_OK)
            return NAN;
    }
    if (mode != SLICE_ALL && (zero_grad_ready(eng, hw) != ZERO_OK || zero_grad_ready(eng, hb) != ZERO_OK))
        return NAN;
    if (mode == WHOLE && zero_release(eng, stacked, 2) != ZERO_OK)
        return NAN;
    if (zero_backward_end(eng) != ZERO_OK)
        return NAN;
    return loss;
}

static int trainer_hpz = 1;   /* zero_hpz_partition_size of trainer_engine (check_hpz) */

static zero_engine_h trainer_engine(zero_comm_h comm, int stage, zero_param_h *hw, zero_param_h *hb,
                                    zero_param_h *head)
{
    char json[720];
    zero_engine_h eng;
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": %d, \"gradient_accumulation_steps\": %d, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01, \"weight_decay\": 0.1}},"
             " \"zero_optimization\": {\"stage\": %d, \"stage3_param_persistence_threshold\": 0,"
             " \"stage3_prefetch_bucket_size\": %d, \"stage3_max_reuse_distance\": %d,"
             " \"zero_hpz_partition_size\": %d}}",
             B, GAS, stage, 2 * C * C, C * C, trainer_hpz);
    eng = make_engine(comm, json);
    if (eng == NULL)
        return NULL;
    *hw = reg(eng, "h.w", ZERO_FP32, 3, L, C, C, 1);
    *hb = reg(eng, "h.b", ZERO_FP32, 2, L, C, 0, 0);
    *head = reg(eng, "head", ZERO_FP32, 1, C, 0, 0, 0);
    if (zero_engine_setup(eng) != ZERO_OK) {
        EXPECT(0, "trainer setup: %s", zero_engine_last_error(eng));
        zero_engine_destroy(eng);
        return NULL;
    }
    return eng;
}

/* Trains steps [from, to) (losses summed over micro-batches and ranks). */
static int train_steps(zero_engine_h eng, zero_comm_h comm, zero_param_h hw, zero_param_h hb, zero_param_h head,
                       int mode, int from, int to, trained_t *out)
{
    for (int step = from; step < to; step++) {
        double loss = 0;
        for (int mi = 0; mi < GAS; mi++) {
            long base = ((long)(step * GAS + mi) * check_world + check_rank) * B;
            double l = micro_batch(eng, hw, hb, head, mode, base);
            if (isnan(l) || zero_step(eng, NULL) != ZERO_OK) {
                EXPECT(0, "%s: step %d micro %d: %s", mode_names[mode], step, mi, zero_engine_last_error(eng));
                return -1;
            }
            loss += l;
        }
        zero_comm_allreduce(comm, &loss, &loss, 1, ZERO_F64, ZERO_COMM_SUM, ZERO_MEM_HOST);
        out->loss[step] = loss;
    }
    return 0;
}

static void read_weights(zero_engine_h eng, zero_param_h hw, zero_param_h hb, zero_param_h head, trained_t *out)
{
    zero_param_h all[3] = {hw, hb, head};
    if (zero_gather(eng, all, 3) != ZERO_OK) {
        EXPECT(0, "final gather: %s", zero_engine_last_error(eng));
        return;
    }
    memcpy(out->w, zero_param_data(hw), sizeof(out->w));
    memcpy(out->b, zero_param_data(hb), sizeof(out->b));
    memcpy(out->head, zero_param_data(head), sizeof(out->head));
    zero_release(eng, all, 3);
}

static int train(zero_comm_h comm, int stage, int mode, trained_t *out)
{
    zero_param_h hw, hb, head;
    zero_engine_h eng = trainer_engine(comm, stage, &hw, &hb, &head);
    int rc;
    if (eng == NULL)
        return -1;
    rc = train_steps(eng, comm, hw, hb, head, mode, 0, STEPS, out);
    if (rc == 0)
        read_weights(eng, hw, hb, head, out);
    zero_engine_destroy(eng);
    return rc;
}

/* Largest difference of the weights beyond rtol * |want| + atol (0: within). */
static double compare(const trained_t *got, const trained_t *want, double rtol, double atol, int *bitwise_p)
{
    const float *g[3] = {got->w, got->b, got->head}, *w[3] = {want->w, want->b, want->head};
    const size_t n[3] = {L * C * C, L * C, C};
    double worst = 0;
    *bitwise_p = memcmp(got, want, sizeof(*got)) == 0;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < n[k]; i++) {
            double d = fabs((double)g[k][i] - (double)w[k][i]) - rtol * fabs((double)w[k][i]) - atol;
            if (d > worst)
                worst = d;
        }
    for (int s = 0; s < STEPS; s++) {
        double d = fabs(got->loss[s] - want->loss[s]) - rtol * fabs(want->loss[s]) - atol;
        if (d > worst)
            worst = d;
    }
    return worst;
}

static void check_training(zero_comm_h comm, const trained_t *reference, trained_t *stage3_slices)
{
    static const int stages[3] = {0, 2, 3};
    static trained_t runs[3];
    for (int k = 0; k < 3; k++) {
        int stage = stages[k], bitwise;
        for (int mode = WHOLE; mode <= SLICE_ALL; mode++)
            if (train(comm, stage, mode, &runs[mode]) != 0)
                return;
        for (int mode = WHOLE; mode <= SLICE_ALL; mode++) {
            double off = compare(&runs[mode], reference, 1e-5, 1e-7, &bitwise);
            EXPECT(off == 0, "stage %d %s: %g beyond 1e-5 of stage 0", stage, mode_names[mode], off);
        }
        compare(&runs[SLICE_GATHER], &runs[WHOLE], 0, 0, &bitwise);
        EXPECT(bitwise, "stage %d: gathering layer by layer is not bit for bit gathering whole tensors", stage);
        {
            /* the slice's reduce-scatter sums each element in the whole bucket's order */
            compare(&runs[SLICE_ALL], &runs[WHOLE], 0, 0, &bitwise);
            EXPECT(bitwise, "stage %d, world %d: gradient slices are not bit for bit whole gradients", stage, check_world);
            if (check_rank == 0) {
                int ignored;
                printf("slices-train: stage %d world %d: layer gathers bitwise=yes; gradient slices bitwise=%s "
                       "(largest difference %.3g)\n",
                       stage, check_world, bitwise ? "yes" : "no", compare(&runs[SLICE_ALL], &runs[WHOLE], 0, 0, &ignored));
            }
        }
        if (stage == 3)
            *stage3_slices = runs[SLICE_ALL];
    }
}

/* SLICES_CHECK_ONLY=hpz (engine-slices-hpz-world4): the trainer at stage 3
 * with zero_hpz_partition_size 2, gathering whole tensors, layer by layer,
 * and layer by layer with gradient slices, is bit for bit the trainer
 * without hpZ gathering whole tensors (hpZ alone is exact). Layer by layer
 * the slices read the secondary copy, refreshed for them after each step
 * (the first slice gathered refreshes every bucket's part); whole, each
 * bucket's first gather after a step refreshes its part. */
static void check_hpz(zero_comm_h comm)
{
    static trained_t plain, runs[3];
    int bitwise;
    trainer_hpz = 1;
    if (train(comm, 3, WHOLE, &plain) != 0)
        return;
    trainer_hpz = 2;
    for (int mode = WHOLE; mode <= SLICE_ALL; mode++) {
        if (train(comm, 3, mode, &runs[mode]) != 0)
            break;
        compare(&runs[mode], &plain, 0, 0, &bitwise);
        EXPECT(bitwise, "hpZ 2, %s: not bit for bit the trainer without hpZ", mode_names[mode]);
        if (check_rank == 0)
            printf("slices-hpz: world %d, %s: bitwise=%s\n", check_world, mode_names[mode], bitwise ? "yes" : "no");
    }
    trainer_hpz = 1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void check_resume(zero_comm_h comm, const char *dir, const trained_t *uninterrupted)
{
    static trained_t resumed;
    char run_dir[512];
    zero_param_h hw, hb, head;
    zero_engine_h eng;
    char *client_sd = NULL;
    int bitwise;
    snprintf(run_dir, sizeof(run_dir), "%s/slices-resume-w%d", dir, check_world);
    if (check_rank == 0)
        nftw(run_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    zero_comm_barrier(comm);
    eng = trainer_engine(comm, 3, &hw, &hb, &head);
    if (eng == NULL)
        return;
    if (train_steps(eng, comm, hw, hb, head, SLICE_ALL, 0, STEPS / 2, &resumed) != 0 ||
        zero_save_checkpoint(eng, run_dir, NULL, "{\"step\": 2}") != ZERO_OK) {
        EXPECT(0, "resume: first half: %s", zero_engine_last_error(eng));
        zero_engine_destroy(eng);
        return;
    }
    zero_engine_destroy(eng);
    eng = trainer_engine(comm, 3, &hw, &hb, &head);
    if (eng == NULL)
        return;
    if (zero_load_checkpoint(eng, run_dir, NULL, NULL, &client_sd) != ZERO_OK ||
        client_sd == NULL || strstr(client_sd, "\"step\": 2") == NULL) {
        EXPECT(0, "resume: load: %s", zero_engine_last_error(eng));
    } else if (train_steps(eng, comm, hw, hb, head, SLICE_ALL, STEPS / 2, STEPS, &resumed) == 0) {
        read_weights(eng, hw, hb, head, &resumed);
        compare(&resumed, uninterrupted, 0, 0, &bitwise);
        EXPECT(bitwise, "resume: the resumed stage-3 slice trainer differs from the uninterrupted run");
        if (check_rank == 0)
            printf("slices-resume: world %d bitwise=%s\n", check_world, bitwise ? "yes" : "no");
    }
    zero_string_free(client_sd);
    zero_engine_destroy(eng);
    zero_comm_barrier(comm);
    if (check_rank == 0)
        nftw(run_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- 6: memory of a trainer in llm.c's layout ---- */

enum { WTE, WPE, LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB, LNFW, LNFB,
       NUM_TENSORS };

typedef struct llmc_shape {
    int64_t v, t, l, c;
} llmc_shape_t;

static void llmc_shapes(const llmc_shape_t *m, int64_t shapes[NUM_TENSORS][3], int ndims[NUM_TENSORS])
{
    const int64_t c = m->c, l = m->l;
    const int64_t s[NUM_TENSORS][3] = {{m->v, c, 0},  {m->t, c, 0}, {l, c, 0},     {l, c, 0},
                                       {l, 3 * c, c}, {l, 3 * c, 0}, {l, c, c},    {l, c, 0},
                                       {l, c, 0},     {l, c, 0},    {l, 4 * c, c}, {l, 4 * c, 0},
                                       {l, c, 4 * c}, {l, c, 0},    {c, 0, 0},     {c, 0, 0}};
    memcpy(shapes, s, sizeof(s));
    for (int k = 0; k < NUM_TENSORS; k++)
        ndims[k] = s[k][2] ? 3 : s[k][1] ? 2 : 1;
}

static int stacked(int k)
{
    return k >= LN1W && k <= FCPROJB;
}

/* A stage-3 trainer in llm.c's layout: the forward gathers the non-stacked
 * tensors whole and the stacked ones layer by layer (@p layerwise) or whole;
 * the backward the same in reverse, handing gradients over in slices or
 * whole. Returns the engine's memory after @p steps steps. */
static int llmc_run(zero_comm_h comm, const llmc_shape_t *m, const char *zero_block, int layerwise, int steps,
                    zero_engine_memory_t *mem_p)
{
    static const char *names[NUM_TENSORS] = {"wte",      "wpe",      "ln1w", "ln1b", "qkvw",    "qkvb",
                                             "attprojw", "attprojb", "ln2w", "ln2b", "fcw",     "fcb",
                                             "fcprojw",  "fcprojb",  "lnfw", "lnfb"};
    char json[768];
    int64_t shapes[NUM_TENSORS][3];
    int ndims[NUM_TENSORS];
    zero_param_h h[NUM_TENSORS], st[NUM_TENSORS], flat[NUM_TENSORS];
    int nst = 0, nflat = 0, rc = -1;
    zero_engine_h eng;
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"steps_per_print\": 0,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.0001}},"
             " \"zero_optimization\": {\"stage\": 3%s}}",
             zero_block);
    llmc_shapes(m, shapes, ndims);
    eng = make_engine(comm, json);
    if (eng == NULL)
        return -1;
    for (int k = 0; k < NUM_TENSORS; k++) {
        h[k] = reg(eng, names[k], ZERO_FP32, ndims[k], shapes[k][0], shapes[k][1], shapes[k][2],
                   k == WTE || k == QKVW || k == ATTPROJW || k == FCW || k == FCPROJW);
        if (stacked(k))
            st[nst++] = h[k];
        else
            flat[nflat++] = h[k];
    }
    if (zero_engine_setup(eng) != ZERO_OK)
        goto out;
    for (int step = 0; step < steps; step++) {
        float seed;
        zero_param_slice_t s[NUM_TENSORS];
        /* forward */
        if (zero_gather(eng, flat, 2) != ZERO_OK || (!layerwise && zero_gather(eng, st, (size_t)nst) != ZERO_OK))
            goto out;
        for (int64_t l = 0; l < m->l && layerwise; l++) {
            for (int k = 0; k < nst; k++)
                s[k] = sl(st[k], l, 1);
            if (zero_gather_slices(eng, s, (size_t)nst) != ZERO_OK || zero_release_slices(eng, s, (size_t)nst) != ZERO_OK)
                goto out;
        }
        if (zero_gather(eng, flat + 2, 2) != ZERO_OK || zero_release(eng, flat + 2, 2) != ZERO_OK ||
            (!layerwise && zero_release(eng, st, (size_t)nst) != ZERO_OK) || zero_release(eng, flat, 2) != ZERO_OK)
            goto out;
        /* backward */
        if (zero_backward_begin(eng, &seed) != ZERO_OK || zero_gather(eng, flat + 2, 2) != ZERO_OK)
            goto out;
        for (int k = 3; k >= 2; k--) {
            float *g = zero_param_grad(flat[k]);
            if (g == NULL)
                goto out;
            g[0] += 1e-3f * seed;
            if (zero_grad_ready(eng, flat[k]) != ZERO_OK)
                goto out;
        }
        if (zero_release(eng, flat + 2, 2) != ZERO_OK || (!layerwise && zero_gather(eng, st, (size_t)nst) != ZERO_OK))
            goto out;
        for (int64_t l = m->l - 1; l >= 0; l--) {
            if (layerwise) {
                for (int k = 0; k < nst; k++)
                    s[k] = sl(st[k], l, 1);
                if (zero_gather_slices(eng, s, (size_t)nst) != ZERO_OK)
                    goto out;
            }
            for (int k = nst - 1; k >= 0; k--) {
                float *g = layerwise ? zero_param_grad_slice(st[k], l, 1) : zero_param_grad(st[k]);
                if (g == NULL)
                    goto out;
                g[layerwise ? 0 : (size_t)l * zero_param_numel(st[k]) / (size_t)m->l] += 1e-3f * seed;
                if (layerwise && zero_grad_slice_ready(eng, st[k], l, 1) != ZERO_OK)
                    goto out;
            }
            if (layerwise && zero_release_slices(eng, s, (size_t)nst) != ZERO_OK)
                goto out;
        }
        for (int k = 0; k < nst && !layerwise; k++)
            if (zero_grad_ready(eng, st[k]) != ZERO_OK)
                goto out;
        if ((!layerwise && zero_release(eng, st, (size_t)nst) != ZERO_OK) || zero_gather(eng, flat, 2) != ZERO_OK)
            goto out;
        for (int k = 1; k >= 0; k--) {
            float *g = zero_param_grad(flat[k]);
            if (g == NULL)
                goto out;
            g[0] += 1e-3f * seed;
            if (zero_grad_ready(eng, flat[k]) != ZERO_OK)
                goto out;
        }
        if (zero_release(eng, flat, 2) != ZERO_OK || zero_backward_end(eng) != ZERO_OK ||
            zero_step(eng, NULL) != ZERO_OK)
            goto out;
    }
    zero_engine_memory(eng, mem_p);
    rc = 0;
out:
    if (rc != 0)
        EXPECT(0, "llm.c-layout trainer (%s): %s", layerwise ? "layer by layer" : "whole", zero_engine_last_error(eng));
    zero_engine_destroy(eng);
    return rc;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Runs both trainers (layer by layer first: peak RSS only grows) and prints
 * the figures; returns layer / whole buffers_peak. */
static double measure(zero_comm_h comm, const llmc_shape_t *m, const char *label, const char *zero_block, int steps)
{
    zero_engine_memory_t layer, whole;
    long rss0 = peak_rss_kib(), rss_layer, rss_whole;
    double ratio;
    if (llmc_run(comm, m, zero_block, 1, steps, &layer) != 0)
        return -1;
    rss_layer = peak_rss_kib();
    if (llmc_run(comm, m, zero_block, 0, steps, &whole) != 0)
        return -1;
    rss_whole = peak_rss_kib();
    ratio = (double)layer.buffers_peak / (double)whole.buffers_peak;
    if (check_rank == 0)
        printf("slices-memory: config=%s world=%d L=%lld C=%lld params=%llu: buffers_peak layer=%.3f MiB whole=%.3f "
               "MiB layer_over_whole=%.3f; pools layer=%.3f whole=%.3f MiB; model state %.3f MiB; total layer=%.3f "
               "whole=%.3f MiB; peak RSS (rank 0) before=%ld after layer=%ld after whole=%ld KiB\n",
               label, check_world, (long long)m->l, (long long)m->c, (unsigned long long)layer.num_params,
               layer.buffers_peak / 1048576.0, whole.buffers_peak / 1048576.0, ratio, layer.pools / 1048576.0,
               whole.pools / 1048576.0, (layer.params + layer.grads + layer.master + layer.optim_state) / 1048576.0,
               layer.total / 1048576.0, whole.total / 1048576.0, rss0, rss_layer, rss_whole);
    return ratio;
}

int main(int argc, char **argv)
{
    static trained_t reference, stage3_slices;
    /* "memory": only the measurement (bench/run slices); "hpz": only check_hpz */
    const char *only = getenv("SLICES_CHECK_ONLY");
    zero_comm_h comm;
    if (argc < 2) {
        fprintf(stderr, "usage: slices_check DIR\n");
        return 2;
    }
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (only != NULL && strcmp(only, "hpz") == 0) {
        check_hpz(comm);
        return rank_check_end(comm);
    }
    if (only == NULL || strcmp(only, "memory") != 0) {
        check_bytes(comm, ZERO_FP32, NULL);
        check_bytes(comm, ZERO_BF16, NULL);
        /* stage-3 shards in a file (offload_param "nvme"): the same bytes */
        check_bytes(comm, ZERO_FP32, argv[1]);
        check_bytes(comm, ZERO_BF16, argv[1]);
        for (int d = 0; d < 2; d++)
            for (int k = 0; k < 3; k++)
                free(bytes_ref[d][k]);
        if (check_world == 1)
            check_many_slices(comm);
        check_prefetch(comm, 2);
        check_prefetch(comm, 0);
        check_errors(comm, 3);
        check_errors(comm, 0);
        if (train(comm, 0, WHOLE, &reference) == 0) {
            check_training(comm, &reference, &stage3_slices);
            check_resume(comm, argv[1], &stage3_slices);
        }
    }
    {
        /* llm.c's layout: L layers of width C, vocabulary V, context T */
        llmc_shape_t m = {256, 32, 6, 96};
        double ratio;
        const char *size = getenv("SLICES_MEMORY_SIZE");   /* "L C V T" */
        if (size != NULL) {
            long long l, c, v, t;
            if (sscanf(size, "%lld %lld %lld %lld", &l, &c, &v, &t) == 4)
                m = (llmc_shape_t){v, t, l, c};
        }
        char bounded[160];
        /* prefetch one layer ahead (its 12 stacked slices), keep nothing for reuse */
        snprintf(bounded, sizeof(bounded), ", \"stage3_prefetch_bucket_size\": %lld, \"stage3_max_reuse_distance\": 0",
                 12 * (long long)m.c * m.c + 13 * (long long)m.c);
        ratio = measure(comm, &m, "bounded", bounded, 2);
        EXPECT(ratio > 0 && ratio <= 0.5, "layer by layer holds %.3f of the whole-tensor trainer's working memory",
               ratio);
        measure(comm, &m, "deepspeed-defaults", "", 2);
    }
    return rank_check_end(comm);
}
