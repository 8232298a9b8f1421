// The optimizer kernels on the GPU (optim_cuda.h has the contract). Each
// update kernel runs optim_elem.h's per-element function on a grid-stride
// loop; the sums use a fixed grid and a fixed tree, so they are the same on
// every run.
#include "optim/optim_cuda.h"
#include "optim/optim_elem.h"
#include "util/cuda_launch.cuh"
#include "util/half.h"

#include <cuda_runtime.h>
#include <math.h>

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535;
// Blocks of the sums: fixed for a given n, at most half the scratch (two
// doubles per block).
constexpr unsigned kStatsBlocks = ZERO_CUDA_STATS_SCRATCH / 2;

unsigned blocks_for(size_t n, unsigned cap)
{
    size_t b = (n + kThreads - 1) / kThreads;
    return (unsigned)(b < cap ? b : cap);
}

__device__ __forceinline__ void store16(uint16_t *w16, int t, size_t i, float x)
{
    if (t == ZERO_OPTIM_W16_BF16)
        w16[i] = zero_f32_to_bf16(x);
    else if (t == ZERO_OPTIM_W16_FP16)
        w16[i] = zero_f32_to_f16(x);
}

__device__ __forceinline__ float load_grad(const void *g, int dtype, size_t i)
{
    if (dtype == 0)
        return ((const float *)g)[i];
    if (dtype == 1)
        return zero_f16_to_f32(((const uint16_t *)g)[i]);
    return zero_bf16_to_f32(((const uint16_t *)g)[i]);
}

#define GRID_STRIDE(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

__global__ void adam_kernel(zero_adam_k_t k, const zero_cuda_gate_t *gate, float *w, const float *g,
                            const float *ga, float *m, float *v, uint16_t *w16, int t, size_t n)
{
    if (gate->skip)
        return;
    k.grad_scale = gate->grad_scale;
    GRID_STRIDE(i, n) {
        zero_elem_adam(&k, ga ? g[i] + ga[i] : g[i], &w[i], &m[i], &v[i]);
        store16(w16, t, i, w[i]);
    }
}

__global__ void sgd_kernel(zero_sgd_k_t k, const zero_cuda_gate_t *gate, float *w, const float *g, float *buf,
                           uint16_t *w16, int t, size_t n)
{
    if (gate->skip)
        return;
    k.grad_scale = gate->grad_scale;
    GRID_STRIDE(i, n) {
        zero_elem_sgd(&k, g[i], &w[i], buf ? &buf[i] : nullptr);
        store16(w16, t, i, w[i]);
    }
}

__global__ void adagrad_kernel(zero_adagrad_k_t k, const zero_cuda_gate_t *gate, float *w, const float *g,
                               float *sum, uint16_t *w16, int t, size_t n)
{
    if (gate->skip)
        return;
    k.grad_scale = gate->grad_scale;
    GRID_STRIDE(i, n) {
        zero_elem_adagrad(&k, g[i], &w[i], &sum[i]);
        store16(w16, t, i, w[i]);
    }
}

__global__ void lion_kernel(zero_lion_k_t k, const zero_cuda_gate_t *gate, float *w, const float *g, float *m,
                            uint16_t *w16, int t, size_t n)
{
    if (gate->skip)
        return;
    k.grad_scale = gate->grad_scale;
    GRID_STRIDE(i, n) {
        zero_elem_lion(&k, g[i], &w[i], &m[i]);
        store16(w16, t, i, w[i]);
    }
}

// Sums two doubles over a block in a fixed tree; thread 0 gets the result.
__device__ void block_sum2(double &a, double &b)
{
    __shared__ double sa[kThreads], sb[kThreads];
    sa[threadIdx.x] = a;
    sb[threadIdx.x] = b;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half >>= 1) {
        if ((int)threadIdx.x < half) {
            sa[threadIdx.x] += sa[threadIdx.x + half];
            sb[threadIdx.x] += sb[threadIdx.x + half];
        }
        __syncthreads();
    }
    a = sa[0];
    b = sb[0];
}

// Pass 2 of every sum: one block adds the per-block partials in a fixed
// order into out[0], out[1].
__global__ void finish_sums(const double *partial, unsigned nblocks, double *out)
{
    double a = 0.0, b = 0.0;
    for (unsigned j = threadIdx.x; j < nblocks; j += blockDim.x) {
        a += partial[2 * j];
        b += partial[2 * j + 1];
    }
    block_sum2(a, b);
    if (threadIdx.x == 0) {
        out[0] += a;
        out[1] += b;
    }
}

__global__ void stats_kernel(const void *g, int dtype, size_t n, double *partial)
{
    double count = 0.0, sq = 0.0;
    GRID_STRIDE(i, n) {
        double x = load_grad(g, dtype, i);
        if (!isfinite(x))
            count += 1.0;
        sq += x * x;
    }
    block_sum2(count, sq);
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = count;
        partial[2 * blockIdx.x + 1] = sq;
    }
}

__global__ void gate_prepare_kernel(zero_cuda_gate_t *gate, double loss_scale, double max_norm)
{
    int overflow = gate->nonfinite != 0.0 || !isfinite(gate->sumsq);
    gate->skip = overflow;
    if (overflow) {
        gate->grad_norm = INFINITY;
        gate->grad_scale = 0.0f;
        return;
    }
    gate->grad_norm = sqrt(gate->sumsq) / loss_scale;
    double clip = zero_elem_clip_coef(gate->grad_norm, max_norm);
    gate->grad_scale = (float)(clip / loss_scale);
}

__global__ void lamb1_kernel(zero_lamb_k_t k, const zero_cuda_gate_t *gate, const float *w, const float *g,
                             float *m, float *v, size_t n, double *partial)
{
    double ws = 0.0, us = 0.0;
    if (!gate->skip) {
        k.grad_scale = gate->grad_scale;
        GRID_STRIDE(i, n) {
            float wi = w[i];
            float u = zero_elem_lamb1(&k, g[i], wi, &m[i], &v[i]);
            ws += (double)wi * wi;
            us += (double)u * u;
        }
    }
    block_sum2(ws, us);   // every thread of the block reaches it, skipped or not
    if (threadIdx.x == 0) {
        partial[2 * blockIdx.x] = ws;
        partial[2 * blockIdx.x + 1] = us;
    }
}

__global__ void lamb2_kernel(zero_lamb_k_t k, const zero_cuda_gate_t *gate, double step_size, float max_coeff,
                             float min_coeff, const double *sums, float *w, const float *m, const float *v,
                             uint16_t *w16, int t, size_t n)
{
    if (gate->skip)
        return;
    // The host's order: (float)step_size * ratio.
    float coef = (float)step_size * zero_elem_lamb_ratio(sums[0], sums[1], max_coeff, min_coeff);
    GRID_STRIDE(i, n) {
        zero_elem_lamb2(&k, coef, &w[i], m[i], v[i]);
        store16(w16, t, i, w[i]);
    }
}

__global__ void accumulate_kernel(float *acc, const void *g, int dtype, size_t n)
{
    GRID_STRIDE(i, n) acc[i] = acc[i] + load_grad(g, dtype, i);
}

__global__ void to16_kernel(uint16_t *dst, const float *src, int t, size_t n)
{
    GRID_STRIDE(i, n) store16(dst, t, i, src[i]);
}

__global__ void from16_kernel(float *dst, const uint16_t *src, int t, size_t n)
{
    GRID_STRIDE(i, n) dst[i] = t == ZERO_OPTIM_W16_BF16 ? zero_bf16_to_f32(src[i]) : zero_f16_to_f32(src[i]);
}

__global__ void gate_set_kernel(zero_cuda_gate_t *gate, double grad_norm, float grad_scale, int skip)
{
    gate->grad_norm = grad_norm;
    gate->grad_scale = grad_scale;
    gate->skip = skip;
}

__global__ void put2_kernel(double *dst, double a, double b)
{
    dst[0] = a;
    dst[1] = b;
}

__global__ void fill_kernel(float *dst, float value, size_t n)
{
    GRID_STRIDE(i, n) dst[i] = value;
}

__global__ void add16_kernel(uint16_t *dst, const uint16_t *src, int t, size_t n)
{
    GRID_STRIDE(i, n) {
        if (t == ZERO_OPTIM_W16_BF16)
            dst[i] = zero_f32_to_bf16(zero_bf16_to_f32(dst[i]) + zero_bf16_to_f32(src[i]));
        else
            dst[i] = zero_f32_to_f16(zero_f16_to_f32(dst[i]) + zero_f16_to_f32(src[i]));
    }
}

__global__ void add32_kernel(float *dst, const float *src, size_t n)
{
    GRID_STRIDE(i, n) dst[i] = dst[i] + src[i];
}

inline cudaStream_t as_stream(void *s)
{
    return (cudaStream_t)s;
}

inline int launched()
{
    return (int)cudaGetLastError();
}

} // namespace

extern "C" int zero_cuda_gate_reset(zero_cuda_gate_t *gate, void *stream)
{
    return (int)cudaMemsetAsync(gate, 0, sizeof(*gate), as_stream(stream));
}

extern "C" int zero_cuda_grad_stats(const void *g, int dtype, size_t n, zero_cuda_gate_t *gate, double *scratch,
                                    void *stream)
{
    if (n == 0)
        return 0;
    unsigned nb = blocks_for(n, kStatsBlocks);
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    stats_kernel<<<nb, kThreads, 0, as_stream(stream)>>>(g, dtype, n, scratch);
    finish_sums<<<1, kThreads, 0, as_stream(stream)>>>(scratch, nb, &gate->nonfinite);
    return launched();
}

extern "C" int zero_cuda_gate_prepare(zero_cuda_gate_t *gate, double loss_scale, double max_norm, void *stream)
{
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    gate_prepare_kernel<<<1, 1, 0, as_stream(stream)>>>(gate, loss_scale, max_norm);
    return launched();
}

extern "C" int zero_cuda_adam(const zero_adam_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g,
                              const float *g_add, float *m, float *v, uint16_t *w16, int w16_type, size_t n,
                              void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    adam_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(*k, gate, w, g, g_add, m, v, w16,
                                                                              w16_type, n);
    return launched();
}

extern "C" int zero_cuda_sgd(const zero_sgd_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g,
                             float *buf, uint16_t *w16, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    sgd_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(
        *k, gate, w, g, k->momentum != 0.0f ? buf : nullptr, w16, w16_type, n);
    return launched();
}

extern "C" int zero_cuda_adagrad(const zero_adagrad_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g,
                                 float *sum, uint16_t *w16, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    adagrad_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(*k, gate, w, g, sum, w16,
                                                                                 w16_type, n);
    return launched();
}

extern "C" int zero_cuda_lion(const zero_lion_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g,
                              float *m, uint16_t *w16, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    lion_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(*k, gate, w, g, m, w16, w16_type,
                                                                              n);
    return launched();
}

extern "C" int zero_cuda_lamb1(const zero_lamb_k_t *k, const zero_cuda_gate_t *gate, const float *w,
                               const float *g, float *m, float *v, size_t n, double *sums, double *scratch,
                               void *stream)
{
    if (n == 0)
        return 0;
    unsigned nb = blocks_for(n, kStatsBlocks);
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    lamb1_kernel<<<nb, kThreads, 0, as_stream(stream)>>>(*k, gate, w, g, m, v, n, scratch);
    finish_sums<<<1, kThreads, 0, as_stream(stream)>>>(scratch, nb, sums);
    return launched();
}

extern "C" int zero_cuda_lamb2(const zero_lamb_k_t *k, const zero_cuda_gate_t *gate, double step_size,
                               float max_coeff, float min_coeff, const double *sums, float *w, const float *m,
                               const float *v, uint16_t *w16, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    lamb2_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(
        *k, gate, step_size, max_coeff, min_coeff, sums, w, m, v, w16, w16_type, n);
    return launched();
}

extern "C" int zero_cuda_accumulate(float *acc, const void *g, int dtype, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    accumulate_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(acc, g, dtype, n);
    return launched();
}

extern "C" int zero_cuda_to_16(uint16_t *dst, const float *src, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    to16_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(dst, src, w16_type, n);
    return launched();
}

extern "C" int zero_cuda_from_16(float *dst, const uint16_t *src, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    from16_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(dst, src, w16_type, n);
    return launched();
}

extern "C" int zero_cuda_gate_set(zero_cuda_gate_t *gate, double grad_norm, float grad_scale, int skip, void *stream)
{
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    gate_set_kernel<<<1, 1, 0, as_stream(stream)>>>(gate, grad_norm, grad_scale, skip);
    return launched();
}

extern "C" int zero_cuda_put2(double *dst, double a, double b, void *stream)
{
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    put2_kernel<<<1, 1, 0, as_stream(stream)>>>(dst, a, b);
    return launched();
}

extern "C" int zero_cuda_fill(float *dst, float value, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    fill_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(dst, value, n);
    return launched();
}

extern "C" int zero_cuda_add16(uint16_t *dst, const uint16_t *src, int w16_type, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    add16_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(dst, src, w16_type, n);
    return launched();
}

extern "C" int zero_cuda_add32(float *dst, const float *src, size_t n, void *stream)
{
    if (n == 0)
        return 0;
    if (int earlier = zero_cuda_pending())   // optim_cuda.h: not this kernel's
        return earlier;
    add32_kernel<<<blocks_for(n, kMaxBlocks), kThreads, 0, as_stream(stream)>>>(dst, src, n);
    return launched();
}
