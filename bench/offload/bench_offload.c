/*
 * bench_offload: an AdamW step over one rank's owned state streamed through
 * the optimizer state store, with the state in the NVMe store against the
 * host store (same sizes, same kernel, same run), and the NVMe store's disk
 * traffic against a raw O_DIRECT write plus read of the same bytes with the
 * same request sizes, in the same directory, in the same run.
 *
 * The step: for each sub-group (a range of --range elements) in order,
 * prefetch the next, acquire this one (master, exp_avg, exp_avg_sq), run
 * zero_optim_adam_step on it with gradients held in memory, release it dirty;
 * then flush (every write on disk). The engine's step will drive the store
 * the same way once it reaches its state through the store.
 *
 * Figures per store: median step time over --reps steps (after one warm-up
 * step); for NVMe the bytes read and written per step and their rate.
 * Raw I/O: the bytes the step wrote, written then read back, O_DIRECT, one
 * request of a sub-group's field (--range elements) at a time, sequentially:
 * what one thread gets from the disk with large aligned requests.
 * Last line:
 *   summary: nvme_step_over_raw_io=<x> offload_added_over_slowest_part=na pcie_bytes_over_deepspeed=na
 * where nvme_step_over_raw_io = (bytes the step moved / step time) /
 * (the same bytes / raw write+read time).
 *
 * GPU fields (CPU offload for device ranks, offload/store_cpu.h), measured
 * where a CUDA device is present, else na:
 *   offload_added_over_slowest_part = the offloaded step (bf16 gradients of
 *     --n elements down, the CPU AdamW, bf16 weights up, through 4 pinned
 *     slots of --range elements: step_async per range, then step_wait),
 *     median over --reps, over max(CPU step alone, download alone, upload
 *     alone), each measured the same way in the same run (target <= 1.1);
 *   pcie_bytes_over_deepspeed = the bytes the store moved per step (its own
 *     count) over DeepSpeed's scheme for the same step: fp32 gradients down
 *     (4 bytes an element) and 16-bit weights up (2 bytes): 4/6 with bf16
 *     (the gradients alone: 2/4).
 *
 * The overlap line, printed just before the summary (all four fields na
 * without a CUDA device or a CUDA build):
 *   overlap: offload_overlap_without=<a> offload_exposed_without=<s>
 *            offload_overlap_with=<b> offload_exposed_with=<s>
 * the device engine (ZERO_MEM_DEVICE, a trainer stream of its own, world
 * size 1, stage 2, bf16, AdamW, offload_optimizer "cpu") without and with
 * offload_optimizer.overlap_step, in the same run: 8 parameters of --n / 8
 * elements, one reduce bucket each, a backward emulated on the trainer's
 * stream (parameters marked ready in reverse order, each after device work,
 * memsets of a 64 MB scratch buffer sized so the whole backward takes about
 * the CPU step alone measured above, then its gradient written), --reps
 * steps after one warm-up step. offload_overlap is zero_engine_timers'
 * (accumulated over the engine's steps, the warm-up included); offload_exposed
 * is its exposed offload time in seconds per measured step.
 *
 * Usage: bench_offload --dir DIR [--n ELEMENTS] [--range ELEMENTS] [--reps R]
 *                      [--buffers N] [--block BYTES] [--qd N] [--threads T] [--ahead K] [--posix]
 */
#include "offload/store.h"
#include "offload/store_cpu.h"
#include "offload/store_nvme.h"
#include "util/cuda_module.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "util/thread_pool.h"
#include <zero/zero.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One AdamW step over the whole group through @p store. */
static int ahead = 1;   /* sub-groups prefetched ahead (--ahead; at most buffer_count - 2 keep their reads) */

static zero_status_t step(zero_store_t *store, const zero_optim_ctx_t *ctx, const float *grad, size_t n, size_t range,
                          int64_t t)
{
    zero_optim_adam_params_t p;
    zero_status_t status;
    zero_optim_adam_defaults(&p);
    p.step = t;
    for (size_t begin = 0; begin < n; begin += range) {
        size_t count = n - begin < range ? n - begin : range;
        zero_store_range_t r = {.group = 0, .begin = begin, .count = count, .fields = ZERO_STORE_ALL_FIELDS};
        /* the next `ahead` sub-groups: one buffer is held, one writing, the rest reading */
        for (int k = 1; k <= ahead; k++) {
            size_t at = begin + (size_t)k * range;
            if (at >= n)
                break;
            size_t next = n - at < range ? n - at : range;
            if ((status = zero_store_prefetch(store, 0, at, next, ZERO_STORE_ALL_FIELDS)) != ZERO_OK)
                return status;
        }
        if ((status = zero_store_acquire(store, &r)) != ZERO_OK)
            return status;
        zero_optim_slice_t s = {.w = r.data[0], .g = grad + begin, .s1 = r.data[1], .s2 = r.data[2], .n = count};
        status = zero_optim_adam_step(ctx, &p, &s);
        zero_status_t rs = zero_store_release(store, &r, 1);
        if (status != ZERO_OK)
            return status;
        if (rs != ZERO_OK)
            return rs;
    }
    return zero_store_flush(store);
}

static int run_steps(const char *what, zero_store_t *store, const zero_optim_ctx_t *ctx, const float *grad, size_t n,
                     size_t range, int reps, double *median_p, zero_store_nvme_stats_t *after_warmup)
{
    double *t = calloc((size_t)reps, sizeof(double));
    if (t == NULL)
        return -1;
    if (step(store, ctx, grad, n, range, 1) != ZERO_OK) {   /* warm-up */
        fprintf(stderr, "bench_offload: %s step failed\n", what);
        free(t);
        return -1;
    }
    if (after_warmup != NULL)
        zero_store_nvme_stats(store, after_warmup);
    for (int i = 0; i < reps; i++) {
        double t0 = zero_clock_now();
        if (step(store, ctx, grad, n, range, 2 + i) != ZERO_OK) {
            fprintf(stderr, "bench_offload: %s step failed\n", what);
            free(t);
            return -1;
        }
        t[i] = zero_clock_now() - t0;
    }
    *median_p = median(t, reps);
    free(t);
    return 0;
}

/* Writes then reads @p bytes in requests of @p request bytes, O_DIRECT, in a
 * fresh file under @p dir; returns the median seconds of write+read. */
static int raw_io(const char *dir, uint64_t bytes, size_t request, int reps, double *median_p, double *write_p,
                  double *read_p)
{
    char path[4096];
    char *raw = NULL, *buf;
    int fd, rc = -1;
    double *t = calloc((size_t)reps, sizeof(double)), *tw = calloc((size_t)reps, sizeof(double)),
           *tr = calloc((size_t)reps, sizeof(double));
    snprintf(path, sizeof(path), "%s/bench-offload-raw-%ld.bin", dir, (long)getpid());
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_DIRECT, 0600);
    if (fd < 0) {
        fprintf(stderr, "bench_offload: O_DIRECT open of %s: %s\n", path, strerror(errno));
        goto out;
    }
    unlink(path);
    if (posix_fallocate(fd, 0, (off_t)bytes) != 0 ||
        zero_mem_alloc(ZERO_MEM_HOST, request + 4096, "bench raw buffer", (void **)&raw) != ZERO_OK)
        goto out_close;
    zero_mem_populate(ZERO_MEM_HOST, raw, request + 4096);
    buf = (char *)(((uintptr_t)raw + 4095) & ~(uintptr_t)4095);
    memset(buf, 1, request);
    for (int i = 0; i < reps; i++) {
        double t0 = zero_clock_now(), t1;
        for (uint64_t off = 0; off < bytes; off += request) {
            size_t len = bytes - off < request ? (size_t)(bytes - off) : request;
            if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len)
                goto out_free;
        }
        t1 = zero_clock_now();
        for (uint64_t off = 0; off < bytes; off += request) {
            size_t len = bytes - off < request ? (size_t)(bytes - off) : request;
            if (pread(fd, buf, len, (off_t)off) != (ssize_t)len)
                goto out_free;
        }
        t[i] = zero_clock_now() - t0;
        tw[i] = t1 - t0;
        tr[i] = t[i] - tw[i];
    }
    *median_p = median(t, reps);
    *write_p = median(tw, reps);
    *read_p = median(tr, reps);
    rc = 0;
out_free:
    if (rc != 0)
        fprintf(stderr, "bench_offload: raw I/O on %s failed: %s\n", path, strerror(errno));
    zero_mem_free(raw);
out_close:
    close(fd);
out:
    free(t);
    free(tw);
    free(tr);
    return rc;
}

/* The GPU fields into @p added and @p bytes (na where there is no device);
 * *cpu_step: the median CPU step alone in seconds (0 where not measured). */
static void gpu_fields(size_t n, size_t range, int threads, int reps, char *added, size_t added_size, char *bytes,
                       size_t bytes_size, double *cpu_step)
{
    *cpu_step = 0.0;
    snprintf(added, added_size, "na");
    snprintf(bytes, bytes_size, "na");
#if HAVE_CUDA
    const zero_cuda_api_t *cu = zero_cuda_probe();
    int count = 0;
    zero_store_desc_t desc;
    zero_store_cpu_params_t cp;
    zero_store_cpu_stats_t st0, st1;
    zero_store_t *store = NULL;
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t ctx;
    void *dgrad = NULL, *dw = NULL, *slot = NULL;
    uint16_t *hg = NULL;
    float *w = NULL, *m = NULL, *v = NULL;
    double *t_pipe = calloc((size_t)reps, sizeof(double)), *t_cpu = calloc((size_t)reps, sizeof(double));
    double *t_down = calloc((size_t)reps, sizeof(double)), *t_up = calloc((size_t)reps, sizeof(double));

    if (cu == NULL || cu->cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
        printf("gpu: no CUDA device: the GPU fields are na\n");
        goto out;
    }
    if (t_pipe == NULL || t_cpu == NULL || t_down == NULL || t_up == NULL || cu->cudaSetDevice(0) != cudaSuccess)
        goto fail;
    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_DEVICE;
    desc.num_groups = 1;
    desc.length[0] = n;
    desc.num_states = 2;
    zero_store_cpu_params_default(&cp);
    cp.slots = 4;
    cp.slot_elems = range;
    cp.threads = threads;
    if (zero_store_cpu_create(&desc, &cp, &store) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_DEVICE, n * 2, "bench device gradients", &dgrad) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_DEVICE, n * 2, "bench device weights", &dw) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_PINNED, range * 2, "bench pinned slot", &slot) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * 2, "bench host gradients", (void **)&hg) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * 4, "bench master", (void **)&w) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * 4, "bench exp_avg", (void **)&m) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * 4, "bench exp_avg_sq", (void **)&v) != ZERO_OK ||
        zero_thread_pool_create(threads, &pool) != ZERO_OK || zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, pool) != ZERO_OK)
        goto fail;
    if (cu->cudaMemset(dgrad, 0x3c, n * 2) != cudaSuccess || cu->cudaDeviceSynchronize() != cudaSuccess)
        goto fail;
    memset(hg, 0x3c, n * 2);   /* bf16 0x3c3c, about 0.0115 */
    memset(w, 0, n * 4);
    memset(m, 0, n * 4);
    memset(v, 0, n * 4);
    zero_store_cpu_stats(store, &st0);
    for (int r = -1; r < reps; r++) {
        zero_store_async_step_t step;
        double t0;
        memset(&step, 0, sizeof(step));
        step.group = 0;
        step.optimizer = ZERO_OPTIMIZER_ADAMW;
        step.lr = 1e-3f;
        step.beta1 = 0.9f;
        step.beta2 = 0.999f;
        step.eps = 1e-8f;
        step.weight_decay = 0.01f;
        step.adam_w_mode = 1;
        step.bias_correction = 1;
        step.step = r + 2;
        step.grad_scale = 1.0f;
        step.grad_dtype = step.weight_dtype = ZERO_BF16;
        step.optim = &ctx;
        if (r == 0)
            zero_store_cpu_stats(store, &st0);   /* the warm-up step not counted */
        /* the offloaded step */
        t0 = zero_clock_now();
        for (size_t b = 0; b < n; b += range) {
            step.begin = b;
            step.count = n - b < range ? n - b : range;
            step.grad = (const char *)dgrad + b * 2;
            step.weights = (char *)dw + b * 2;
            if (zero_store_step_async(store, &step) != ZERO_OK)
                goto fail;
        }
        if (zero_store_step_wait(store) != ZERO_OK)
            goto fail;
        if (r >= 0)
            t_pipe[r] = zero_clock_now() - t0;
        /* its parts alone: the CPU step over host memory, the copies through one pinned slot */
        t0 = zero_clock_now();
        for (size_t b = 0; b < n; b += range) {
            size_t c = n - b < range ? n - b : range;
            step.begin = b;
            step.count = c;
            if (zero_store_run_kernel_g16(&ctx, &step, w + b, hg + b, ZERO_OPTIM_W16_BF16, m + b, v + b, hg + b,
                                          ZERO_OPTIM_W16_BF16, c) != ZERO_OK)
                goto fail;
            memset(hg + b, 0x3c, c * 2);   /* the next step's gradients again */
        }
        if (r >= 0)
            t_cpu[r] = zero_clock_now() - t0;
        t0 = zero_clock_now();
        for (size_t b = 0; b < n; b += range)
            if (cu->cudaMemcpyAsync(slot, (const char *)dgrad + b * 2, (n - b < range ? n - b : range) * 2,
                                    cudaMemcpyDeviceToHost, NULL) != cudaSuccess)
                goto fail;
        if (cu->cudaDeviceSynchronize() != cudaSuccess)
            goto fail;
        if (r >= 0)
            t_down[r] = zero_clock_now() - t0;
        t0 = zero_clock_now();
        for (size_t b = 0; b < n; b += range)
            if (cu->cudaMemcpyAsync((char *)dw + b * 2, slot, (n - b < range ? n - b : range) * 2,
                                    cudaMemcpyHostToDevice, NULL) != cudaSuccess)
                goto fail;
        if (cu->cudaDeviceSynchronize() != cudaSuccess)
            goto fail;
        if (r >= 0)
            t_up[r] = zero_clock_now() - t0;
    }
    zero_store_cpu_stats(store, &st1);
    {
        double pipe = median(t_pipe, reps), cpu = median(t_cpu, reps), down = median(t_down, reps);
        double up = median(t_up, reps), slowest = cpu > down ? cpu : down;
        double moved = (double)((st1.bytes_down - st0.bytes_down) + (st1.bytes_up - st0.bytes_up)) / reps;
        slowest = up > slowest ? up : slowest;
        printf("gpu: offloaded step %.4f s; alone: CPU step %.4f s, download %.4f s (%.2f GB/s), upload %.4f s "
               "(%.2f GB/s); %u of %u slots pinned\n", pipe, cpu, down, 2.0 * (double)n / down / 1e9, up,
               2.0 * (double)n / up / 1e9, st1.pinned_slots, st1.slots);
        printf("gpu: %.1f MB over PCIe per step; DeepSpeed's scheme (fp32 gradients down, 16-bit weights up) %.1f MB\n",
               moved / 1e6, 6.0 * (double)n / 1e6);
        snprintf(added, added_size, "%.2f", pipe / slowest);
        snprintf(bytes, bytes_size, "%.2f", moved / (6.0 * (double)n));
        *cpu_step = cpu;
    }
    goto out;
fail:
    fprintf(stderr, "bench_offload: the GPU part failed; its fields are na\n");
    snprintf(added, added_size, "na");
    snprintf(bytes, bytes_size, "na");
out:
    zero_store_destroy(store);
    zero_mem_free(dgrad);
    zero_mem_free(dw);
    zero_mem_free(slot);
    zero_mem_free(hg);
    zero_mem_free(w);
    zero_mem_free(m);
    zero_mem_free(v);
    zero_thread_pool_destroy(pool);
    free(t_pipe);
    free(t_cpu);
    free(t_down);
    free(t_up);
#else
    (void)n;
    (void)range;
    (void)threads;
    (void)reps;
    printf("gpu: a build without CUDA: the GPU fields are na\n");
#endif
}

#if HAVE_CUDA
#define OVL_PARAMS 8   /* parameters, one reduce bucket each: the backward hands over 8 buckets */

static void ovl_init(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    (void)name;
    (void)user_data;
    for (size_t i = 0; i < count; i++)
        out[i] = (float)((offset + i) % 1000) * 1e-4f - 0.05f;
}

/* One device engine's run for the overlap line: @p reps steps after one
 * warm-up step, each a backward emulated on @p stream (parameters marked
 * ready in reverse order, @p work memsets of @p scratch before each one's
 * gradient is written). Fills the mean step time and exposed offload time per
 * measured step, and the engine's offload_overlap (over all its steps, the
 * warm-up included: the engine accumulates it). Returns 0 on success. */
static int ovl_run(const zero_cuda_api_t *cu, cudaStream_t stream, size_t n, int threads, int reps, int overlap,
                   void *scratch, size_t scratch_bytes, int work, double *step_s, double *exposed_s, double *ratio)
{
    size_t each = n / OVL_PARAMS;
    char json[768];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS |
                                             ZERO_ENGINE_PARAM_FIELD_MEM_KIND | ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM,
                               .num_threads = threads, .mem_kind = ZERO_MEM_DEVICE, .cuda_stream = stream};
    zero_engine_h e = NULL;
    zero_param_h p[OVL_PARAMS];
    zero_engine_timers_t t0, t1;
    double begin = 0.0;
    int rc = -1;

    /* stage 2, one bucket a parameter: each bucket reduced (and, with overlap_step, stepped on the CPU) as
     * soon as its parameter is marked ready, while the device still works on the next ones */
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"optimizer\": {\"type\": \"AdamW\", \"params\": "
             "{\"lr\": 0.001, \"weight_decay\": 0.01}}, \"bf16\": {\"enabled\": true}, \"zero_optimization\": "
             "{\"stage\": 2, \"reduce_bucket_size\": %zu, \"offload_optimizer\": {\"device\": \"cpu\", "
             "\"overlap_step\": %s}}}", each, overlap ? "true" : "false");
    ep.config_json = json;
    if (zero_engine_create(&ep, &e) != ZERO_OK) {
        fprintf(stderr, "bench_offload: overlap run: zero_engine_create failed (logged above)\n");
        goto out;
    }
    for (int i = 0; i < OVL_PARAMS; i++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = ZERO_BF16, .ndim = 1,
                               .init_fn = ovl_init};
        snprintf(name, sizeof(name), "p%d", i);
        d.shape[0] = (int64_t)each;
        if (zero_param_register(e, &d, &p[i]) != ZERO_OK)
            goto fail;
    }
    if (zero_engine_setup(e) != ZERO_OK)
        goto fail;
    for (int r = -1; r < reps; r++) {
        zero_step_info_t info;
        float seed;
        if (r == 0) {
            if (zero_engine_timers(e, &t0) != ZERO_OK)
                goto fail;
            begin = zero_clock_now();
        }
        if (zero_gather(e, p, OVL_PARAMS) != ZERO_OK || zero_backward_begin(e, &seed) != ZERO_OK)
            goto fail;
        for (int i = OVL_PARAMS - 1; i >= 0; i--) {
            void *g = zero_param_grad(p[i]);
            for (int k = 0; k < work; k++)
                if (cu->cudaMemsetAsync(scratch, k & 0xff, scratch_bytes, stream) != cudaSuccess)
                    goto fail;
            /* bf16 0x3c3c (about 0.0115) in every element: the gradient, written on the trainer's stream */
            if (g == NULL || cu->cudaMemsetAsync(g, 0x3c, each * 2, stream) != cudaSuccess ||
                zero_grad_ready(e, p[i]) != ZERO_OK)
                goto fail;
        }
        if (zero_backward_end(e) != ZERO_OK || zero_release(e, p, OVL_PARAMS) != ZERO_OK || zero_step(e, &info) != ZERO_OK)
            goto fail;
    }
    /* the step's last device work (the weights written back) is on the trainer's stream: wait for it */
    if (cu->cudaStreamSynchronize(stream) != cudaSuccess || zero_engine_timers(e, &t1) != ZERO_OK)
        goto fail;
    *step_s = (zero_clock_now() - begin) / reps;
    *exposed_s = (t1.offload_exposed - t0.offload_exposed) / reps;
    *ratio = t1.offload_overlap;
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "bench_offload: overlap run (overlap_step %s): %s\n", overlap ? "true" : "false",
            e != NULL ? zero_engine_last_error(e) : "?");
out:
    zero_engine_destroy(e);
    return rc;
}
#endif

/* The overlap line: the device engine with CPU offload without and with
 * offload_optimizer.overlap_step, same run, same emulated backward, whose
 * device work between two parameters is sized to about @p cpu_step /
 * OVL_PARAMS (the CPU step alone, from gpu_fields): a backward as long as the
 * CPU step, which overlap_step can hide behind it. */
static void gpu_overlap(size_t n, int threads, int reps, double cpu_step)
{
    const char *na = "overlap: offload_overlap_without=na offload_exposed_without=na "
                     "offload_overlap_with=na offload_exposed_with=na\n";
#if HAVE_CUDA
    const zero_cuda_api_t *cu = zero_cuda_probe();
    cudaStream_t stream = NULL;
    void *scratch = NULL;
    size_t scratch_bytes = (size_t)64 << 20;
    int count = 0, work = 1, calib = 20;
    double per, t0, step[2], exposed[2], ratio[2];

    if (cu == NULL || cu->cudaGetDeviceCount(&count) != cudaSuccess || count < 1) {
        printf("gpu: no CUDA device: the overlap line is na\n");
        printf("%s", na);
        return;
    }
    if (n < OVL_PARAMS || cu->cudaSetDevice(0) != cudaSuccess ||
        cu->cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess ||
        zero_mem_alloc(ZERO_MEM_DEVICE, scratch_bytes, "bench backward scratch", &scratch) != ZERO_OK)
        goto fail;
    /* the time of one memset of the scratch buffer, after one untimed */
    if (cu->cudaMemsetAsync(scratch, 0, scratch_bytes, stream) != cudaSuccess ||
        cu->cudaStreamSynchronize(stream) != cudaSuccess)
        goto fail;
    t0 = zero_clock_now();
    for (int k = 0; k < calib; k++)
        if (cu->cudaMemsetAsync(scratch, k, scratch_bytes, stream) != cudaSuccess)
            goto fail;
    if (cu->cudaStreamSynchronize(stream) != cudaSuccess)
        goto fail;
    per = (zero_clock_now() - t0) / calib;
    if (cpu_step > 0.0 && per > 0.0) {
        double w = cpu_step / OVL_PARAMS / per + 0.5;
        work = w > 100000.0 ? 100000 : (int)w;   /* a bound against a calibration gone wrong */
    }
    if (work < 1)
        work = 1;
    for (int mode = 0; mode < 2; mode++)
        if (ovl_run(cu, stream, n, threads, reps, mode, scratch, scratch_bytes, work, &step[mode], &exposed[mode],
                    &ratio[mode]) != 0)
            goto fail;
    printf("gpu: device engine, stage 2, bf16 AdamW, %d parameters of %zu elements, CPU offload; emulated backward about "
           "%.4f s (%d memsets of %zu MB a parameter); step (backward + zero_step) %.4f s without overlap_step, "
           "%.4f s with\n", OVL_PARAMS, n / OVL_PARAMS, per * work * OVL_PARAMS, work, scratch_bytes >> 20, step[0],
           step[1]);
    printf("overlap: offload_overlap_without=%.2f offload_exposed_without=%.4f offload_overlap_with=%.2f "
           "offload_exposed_with=%.4f\n", ratio[0], exposed[0], ratio[1], exposed[1]);
    goto out;
fail:
    fprintf(stderr, "bench_offload: the overlap part failed; its line is na\n");
    printf("%s", na);
out:
    zero_mem_free(scratch);
    if (stream != NULL)
        cu->cudaStreamDestroy(stream);
#else
    (void)n;
    (void)threads;
    (void)reps;
    (void)cpu_step;
    printf("gpu: a build without CUDA: the overlap line is na\n");
    printf("%s", na);
#endif
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    size_t n = (size_t)16 << 20, range = (size_t)1 << 20, block = 1048576;
    int reps = 5, buffers = 4, qd = 8, posix = 0, rc = 1, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    zero_store_desc_t desc;
    zero_store_nvme_params_t np;
    zero_store_t *host = NULL, *nvme = NULL;
    zero_thread_pool_t *pool = NULL;
    zero_optim_ctx_t ctx;
    float *grad = NULL;
    double t_host, t_nvme, t_raw, t_raw_w, t_raw_r;
    zero_store_nvme_stats_t s0, s1;
    char gpu_added[32], gpu_bytes[32];
    double cpu_step;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--range") == 0 && i + 1 < argc)
            range = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--buffers") == 0 && i + 1 < argc)
            buffers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--block") == 0 && i + 1 < argc)
            block = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--qd") == 0 && i + 1 < argc)
            qd = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ahead") == 0 && i + 1 < argc)
            ahead = atoi(argv[++i]);
        else if (strcmp(argv[i], "--posix") == 0)
            posix = 1;
        else {
            fprintf(stderr, "usage: bench_offload --dir DIR [--n N] [--range N] [--reps R] [--buffers N] "
                            "[--block BYTES] [--qd N] [--posix]\n");
            return 2;
        }
    }
    if (threads < 1)
        threads = 1;
    if (dir == NULL || n == 0 || range == 0 || reps < 1) {
        fprintf(stderr, "bench_offload: --dir is required; --n, --range, --reps must be positive\n");
        return 2;
    }
    memset(&desc, 0, sizeof(desc));
    desc.kind = ZERO_MEM_HOST;
    desc.num_groups = 1;
    desc.length[0] = n;
    desc.num_states = 2;
    zero_store_nvme_params_default(&np);
    np.dir = dir;
    np.buffer_count = buffers;
    np.max_range = range;
    np.block_size = block;
    np.queue_depth = qd;
    np.io = posix ? ZERO_STORE_NVME_IO_THREADS : ZERO_STORE_NVME_IO_URING;

    if (zero_thread_pool_create(threads, &pool) != ZERO_OK || zero_optim_ctx_init(&ctx, ZERO_OPTIM_ISA_AUTO, pool) != ZERO_OK ||
        zero_mem_alloc(ZERO_MEM_HOST, n * sizeof(float), "bench gradients", (void **)&grad) != ZERO_OK)
        goto out;
    zero_mem_populate(ZERO_MEM_HOST, grad, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        grad[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    if (zero_store_host_create(&desc, &host) != ZERO_OK || zero_store_nvme_create(&desc, &np, &nvme) != ZERO_OK)
        goto out;

    printf("bench_offload: %zu elements (%.1f MB of master + moments), sub-groups of %zu elements, %d buffers, "
           "block %zu B, queue depth %d, %d threads, dir %s\n", n, 12.0 * (double)n / 1e6, range, buffers, block, qd,
           zero_thread_pool_size(pool), dir);
    if (run_steps("host", host, &ctx, grad, n, range, reps, &t_host, NULL) != 0)
        goto out;
    if (run_steps("nvme", nvme, &ctx, grad, n, range, reps, &t_nvme, &s0) != 0)
        goto out;
    zero_store_nvme_stats(nvme, &s1);
    double moved = (double)((s1.bytes_read - s0.bytes_read) + (s1.bytes_written - s0.bytes_written)) / reps;
    double read_step = (double)(s1.bytes_read - s0.bytes_read) / reps;
    double written_step = (double)(s1.bytes_written - s0.bytes_written) / reps;
    if (raw_io(dir, (uint64_t)(written_step > 0 ? written_step : moved / 2), range * sizeof(float), reps, &t_raw,
               &t_raw_w, &t_raw_r) != 0)
        goto out;
    printf("host store   step %.4f s  (%.2f GB/s of optimizer state touched)\n", t_host, 28.0 * (double)n / t_host / 1e9);
    printf("nvme store   step %.4f s  read %.1f MB + written %.1f MB per step = %.2f GB/s (%s, %s), caller waited "
           "%.3f s per step\n", t_nvme, read_step / 1e6, written_step / 1e6, moved / t_nvme / 1e9, s1.io,
           s1.direct ? "O_DIRECT" : "page cache", (s1.wait_seconds - s0.wait_seconds) / reps);
    printf("raw O_DIRECT write+read of %.1f MB in %zu B requests: %.4f s (write %.2f GB/s, read %.2f GB/s, both "
           "%.2f GB/s)\n", written_step / 1e6, range * sizeof(float), t_raw, written_step / t_raw_w / 1e9,
           written_step / t_raw_r / 1e9, 2 * written_step / t_raw / 1e9);
    printf("nvme step over host step: %.2fx the time\n", t_nvme / t_host);
    gpu_fields(n, range, threads, reps, gpu_added, sizeof(gpu_added), gpu_bytes, sizeof(gpu_bytes), &cpu_step);
    gpu_overlap(n, threads, reps, cpu_step);
    printf("summary: nvme_step_over_raw_io=%.2f offload_added_over_slowest_part=%s pcie_bytes_over_deepspeed=%s\n",
           (moved / t_nvme) / (2 * written_step / t_raw), gpu_added, gpu_bytes);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "bench_offload: failed\n");
    zero_store_destroy(nvme);
    zero_store_destroy(host);
    zero_mem_free(grad);
    zero_thread_pool_destroy(pool);
    return rc;
}
