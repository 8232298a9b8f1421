/*
 * The example GPT of gpt.c on a CUDA device, and train_gpt_cuda's backend
 * (gpt_backend.h). Same tensors, layouts and passes as gpt.c; each building
 * block of gpt_ops.h has a twin here (gpt_cuda.h) that keeps the CPU code's
 * loops and their order, one thread per row, channel or (batch, head, time)
 * position where the CPU code has one sequential loop, so that the two can be
 * compared closely. The matrix products are cuBLAS SGEMMs on the same
 * row-major arrays. Nothing here is tuned: the model is small, and the point
 * is the engine on the device (every kernel is queued on the stream the
 * engine is given; the host waits only to read the loss).
 *
 * Row-major arrays as cuBLAS (column-major) sees them: a row-major X[r][c]
 * with leading dimension c is the column-major X^T. So
 *   out[rows,OC] = in[rows,IC] @ W[OC,IC]^T   is  out^T = W^T^T @ in^T:
 *     gemm(T, N, m=OC, n=rows, k=IC, A=W (ld IC), B=in (ld IC), C=out (ld OC));
 *   din[rows,IC] += dout[rows,OC] @ W[OC,IC]   is  din^T += W^T @ dout^T:
 *     gemm(N, N, m=IC, n=rows, k=OC, A=W (ld IC), B=dout (ld OC), C=din (ld IC));
 *   dW[OC,IC] += dout^T @ in                     is  dW^T += in^T @ dout:
 *     gemm(N, T, m=IC, n=OC, k=rows, A=in (ld IC), B=dout (ld OC), C=dW (ld IC)).
 */
#include "gpt_backend.h"
#include "gpt_cuda.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

/* One device per process (the trainer's rank): its stream, cuBLAS handle and first error. */
struct device_state {
    cudaStream_t stream;
    cublasHandle_t blas;
    int device;
    int open;
    int failed; /* an error was printed; later work is not trusted */
};
device_state dev;

void cuda_failed(cudaError_t e, const char *what, int line)
{
    if (!dev.failed)
        fprintf(stderr, "gpt_cuda: %s (gpt_cuda.cu:%d): %s\n", what, line, cudaGetErrorString(e));
    dev.failed = 1;
}

#define CK(call)                                                                                            \
    do {                                                                                                    \
        cudaError_t e_ = (call);                                                                            \
        if (e_ != cudaSuccess)                                                                              \
            cuda_failed(e_, #call, __LINE__);                                                               \
    } while (0)

#define CK_BLAS(call)                                                                                       \
    do {                                                                                                    \
        cublasStatus_t b_ = (call);                                                                         \
        if (b_ != CUBLAS_STATUS_SUCCESS) {                                                                  \
            if (!dev.failed)                                                                                \
                fprintf(stderr, "gpt_cuda: %s (gpt_cuda.cu:%d): cuBLAS status %d\n", #call, __LINE__, \
                        (int)b_);                                                                           \
            dev.failed = 1;                                                                                 \
        }                                                                                                   \
    } while (0)

/* After each launch: a bad configuration shows here, a fault at the next sync. */
#define LAUNCHED() CK(cudaGetLastError())

constexpr unsigned kThreads = 256;

unsigned grid_for(size_t n)
{
    return (unsigned)((n + kThreads - 1) / kThreads);
}

int blas_dim(size_t n)
{
    if (n > (size_t)INT_MAX && !dev.failed) {
        fprintf(stderr, "gpt_cuda: a matrix dimension (%zu) does not fit cuBLAS's int\n", n);
        dev.failed = 1;
    }
    return (int)n;
}

/* ---- kernels: each mirrors the loop of gpt.c named in its comment ---- */

/* gpt_layernorm_forward: one thread per row */
__global__ void layernorm_forward_k(float *out, float *mean, float *rstd, const float *in, const float *w,
                                    const float *b, size_t rows, size_t C)
{
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    const float *x = in + r * C;
    float *o = out + r * C;
    float mu = 0.0f, var = 0.0f, s;
    for (size_t i = 0; i < C; i++)
        mu += x[i];
    mu /= (float)C;
    for (size_t i = 0; i < C; i++)
        var += (x[i] - mu) * (x[i] - mu);
    var /= (float)C;
    s = 1.0f / sqrtf(var + 1e-5f);
    for (size_t i = 0; i < C; i++)
        o[i] = (x[i] - mu) * s * w[i] + b[i];
    mean[r] = mu;
    rstd[r] = s;
}

/* gpt_layernorm_backward, input gradient: one thread per row */
__global__ void layernorm_backward_dx_k(float *dx, const float *dout, const float *in, const float *w,
                                        const float *mean, const float *rstd, size_t rows, size_t C)
{
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    const float *x = in + r * C, *d = dout + r * C;
    float *dxr = dx + r * C;
    float mu = mean[r], s = rstd[r], sum_dn = 0.0f, sum_dn_xhat = 0.0f;
    for (size_t i = 0; i < C; i++) {
        float xhat = (x[i] - mu) * s, dn = d[i] * w[i];
        sum_dn += dn;
        sum_dn_xhat += dn * xhat;
    }
    sum_dn /= (float)C;
    sum_dn_xhat /= (float)C;
    for (size_t i = 0; i < C; i++) {
        float xhat = (x[i] - mu) * s, dn = d[i] * w[i];
        dxr[i] += s * (dn - sum_dn - xhat * sum_dn_xhat);
    }
}

/* gpt_layernorm_backward, parameter gradients: one thread per channel, rows in order */
__global__ void layernorm_backward_dw_k(float *dw, float *db, const float *dout, const float *in, const float *mean,
                                        const float *rstd, size_t rows, size_t C)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= C)
        return;
    float gw = 0.0f, gb = 0.0f;
    for (size_t r = 0; r < rows; r++) {
        float xhat = (in[r * C + i] - mean[r]) * rstd[r];
        gw += dout[r * C + i] * xhat;
        gb += dout[r * C + i];
    }
    dw[i] += gw;
    db[i] += gb;
}

/* gpt_matmul_forward's bias (the CPU adds it first, here after the product) */
__global__ void bias_add_k(float *out, const float *bias, size_t rows, size_t OC)
{
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= rows * OC)
        return;
    out[k] += bias[k % OC];
}

/* gpt_matmul_backward's bias gradient: one thread per column, rows in order */
__global__ void bias_backward_k(float *dbias, const float *dout, size_t rows, size_t OC)
{
    size_t c = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (c >= OC)
        return;
    float gb = 0.0f;
    for (size_t r = 0; r < rows; r++)
        gb += dout[r * OC + c];
    dbias[c] += gb;
}

/* gpt_attention_forward: one thread per (b, h, t) */
__global__ void attention_forward_k(float *y, float *att, const float *qkv, size_t B, size_t T, size_t C, size_t NH)
{
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= B * NH * T)
        return;
    size_t t = k % T, h = (k / T) % NH, b = k / (T * NH);
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = qkv + (b * T + t) * 3 * C + h * hs;
    float *a = att + ((b * NH + h) * T + t) * T;
    float *yo = y + (b * T + t) * C + h * hs;
    float maxv = -INFINITY, sum = 0.0f;
    for (size_t s = 0; s <= t; s++) {
        const float *kk = qkv + (b * T + s) * 3 * C + C + h * hs;
        float dot = 0.0f;
        for (size_t i = 0; i < hs; i++)
            dot += q[i] * kk[i];
        a[s] = dot * scale;
        if (a[s] > maxv)
            maxv = a[s];
    }
    for (size_t s = 0; s <= t; s++) {
        a[s] = expf(a[s] - maxv);
        sum += a[s];
    }
    for (size_t s = 0; s <= t; s++)
        a[s] /= sum;
    for (size_t s = t + 1; s < T; s++)
        a[s] = 0.0f;
    for (size_t i = 0; i < hs; i++)
        yo[i] = 0.0f;
    for (size_t s = 0; s <= t; s++) {
        const float *v = qkv + (b * T + s) * 3 * C + 2 * C + h * hs;
        for (size_t i = 0; i < hs; i++)
            yo[i] += a[s] * v[i];
    }
}

/*
 * gpt_attention_backward in two kernels. The CPU loop runs t in order within a
 * (b, h) pair and adds into dv[s], dk[s] for every s <= t; here the query side
 * (da, the softmax backward, dq) is one thread per (b, h, t), and the key and
 * value side one thread per (b, h, s) summing over t = s..T-1 in the same
 * ascending order, so every sum has the CPU's terms in the CPU's order.
 * d_att holds ds = a * (da - sum(da * a)) * scale between the two.
 */
__global__ void attention_backward_q_k(float *dqkv, float *d_att, const float *dy, const float *att, const float *qkv,
                                       size_t B, size_t T, size_t C, size_t NH)
{
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= B * NH * T)
        return;
    size_t t = k % T, h = (k / T) % NH, b = k / (T * NH);
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *a = att + ((b * NH + h) * T + t) * T;
    float *da = d_att + ((b * NH + h) * T + t) * T;
    const float *dyo = dy + (b * T + t) * C + h * hs;
    float *dq = dqkv + (b * T + t) * 3 * C + h * hs;
    float dot_sum = 0.0f;
    for (size_t s = 0; s <= t; s++) {
        const float *v = qkv + (b * T + s) * 3 * C + 2 * C + h * hs;
        float d = 0.0f;
        for (size_t i = 0; i < hs; i++)
            d += dyo[i] * v[i];
        da[s] = d;
        dot_sum += d * a[s];
    }
    for (size_t i = 0; i < hs; i++)
        dq[i] = 0.0f;
    for (size_t s = 0; s <= t; s++) {
        const float *kk = qkv + (b * T + s) * 3 * C + C + h * hs;
        float ds = a[s] * (da[s] - dot_sum) * scale;
        da[s] = ds;
        for (size_t i = 0; i < hs; i++)
            dq[i] += ds * kk[i];
    }
}

__global__ void attention_backward_kv_k(float *dqkv, const float *d_att, const float *dy, const float *att,
                                        const float *qkv, size_t B, size_t T, size_t C, size_t NH)
{
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= B * NH * T)
        return;
    size_t s = k % T, h = (k / T) % NH, b = k / (T * NH);
    size_t hs = C / NH;
    float *dk = dqkv + (b * T + s) * 3 * C + C + h * hs;
    float *dv = dqkv + (b * T + s) * 3 * C + 2 * C + h * hs;
    for (size_t i = 0; i < hs; i++) {
        dk[i] = 0.0f;
        dv[i] = 0.0f;
    }
    for (size_t t = s; t < T; t++) {
        float a_ts = att[((b * NH + h) * T + t) * T + s];
        float ds_ts = d_att[((b * NH + h) * T + t) * T + s];
        const float *dyo = dy + (b * T + t) * C + h * hs;
        const float *q = qkv + (b * T + t) * 3 * C + h * hs;
        for (size_t i = 0; i < hs; i++) {
            dv[i] += a_ts * dyo[i];
            dk[i] += ds_ts * q[i];
        }
    }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi), as gpt.c */

__global__ void gelu_forward_k(float *out, const float *in, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float x = in[i];
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
}

__global__ void gelu_backward_k(float *din, const float *in, const float *dout, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    float x = in[i];
    float u = GELU_K * (x + 0.044715f * x * x * x);
    float th = tanhf(u), sech2 = 1.0f - th * th;
    float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
    din[i] = grad * dout[i];
}

/* gpt_embedding_forward: one thread per (row, channel) */
__global__ void embedding_forward_k(float *out, const float *wte, const float *wpe, const int *tokens, size_t B,
                                    size_t T, size_t C)
{
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= B * T * C)
        return;
    size_t r = k / C, i = k % C, t = r % T;
    out[k] = wte[(size_t)tokens[r] * C + i] + wpe[t * C + i];
}

/* gpt_embedding_backward: one thread per channel, rows in order (tokens repeat: no races) */
__global__ void embedding_backward_k(float *dwte, float *dwpe, const float *d, const int *tokens, size_t B, size_t T,
                                     size_t C)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= C)
        return;
    for (size_t r = 0; r < B * T; r++) {
        float g = d[r * C + i];
        dwte[(size_t)tokens[r] * C + i] += g;
        dwpe[(r % T) * C + i] += g;
    }
}

/* gpt_softmax_forward: one thread per row */
__global__ void softmax_forward_k(float *probs, size_t rows, size_t V)
{
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    float *row = probs + r * V, maxv = -INFINITY, sum = 0.0f;
    for (size_t v = 0; v < V; v++)
        if (row[v] > maxv)
            maxv = row[v];
    for (size_t v = 0; v < V; v++) {
        row[v] = expf(row[v] - maxv);
        sum += row[v];
    }
    for (size_t v = 0; v < V; v++)
        row[v] /= sum;
}

/* gpt_logits_backward: one thread per (row, token) */
__global__ void logits_backward_k(float *d_logits, const float *probs, const int *targets, size_t rows, size_t V,
                                  float seed)
{
    size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (k >= rows * V)
        return;
    size_t r = k / V, v = k % V;
    d_logits[k] = seed * (probs[k] - (v == (size_t)targets[r] ? 1.0f : 0.0f));
}

/* gpt_forward_end's and gpt_target_loss's per-position term */
__global__ void target_losses_k(double *out, const float *probs, const int *targets, size_t rows, size_t V)
{
    size_t r = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (r >= rows)
        return;
    out[r] = -log((double)probs[r * V + (size_t)targets[r]] + 1e-30);
}

__global__ void residual_add_k(float *out, const float *in, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n)
        out[i] += in[i];
}

/* train_gpt.c's 16-bit conversions (round to nearest even), on the device */
__global__ void bf16_to_f32_k(float *dst, const __nv_bfloat16 *src, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __bfloat162float(src[i]);
}

__global__ void fp16_to_f32_k(float *dst, const __half *src, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __half2float(src[i]);
}

__global__ void bf16_add_f32_k(__nv_bfloat16 *dst, const float *src, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __float2bfloat16_rn(__bfloat162float(dst[i]) + src[i]);
}

__global__ void fp16_add_f32_k(__half *dst, const float *src, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __float2half_rn(__half2float(dst[i]) + src[i]);
}

} // namespace

/* ---- the building blocks (gpt_cuda.h) ---- */

extern "C" {

void gpt_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                                size_t rows, size_t C)
{
    layernorm_forward_k<<<grid_for(rows), kThreads, 0, dev.stream>>>(out, mean, rstd, in, w, b, rows, C);
    LAUNCHED();
}

void gpt_cuda_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *in, const float *w,
                                 const float *mean, const float *rstd, size_t rows, size_t C)
{
    layernorm_backward_dx_k<<<grid_for(rows), kThreads, 0, dev.stream>>>(dx, dout, in, w, mean, rstd, rows, C);
    LAUNCHED();
    layernorm_backward_dw_k<<<grid_for(C), kThreads, 0, dev.stream>>>(dw, db, dout, in, mean, rstd, rows, C);
    LAUNCHED();
}

void gpt_cuda_matmul_forward(float *out, const float *in, const float *W, const float *bias, size_t rows, size_t IC,
                             size_t OC)
{
    const float one = 1.0f, zero = 0.0f;
    CK_BLAS(cublasSgemm(dev.blas, CUBLAS_OP_T, CUBLAS_OP_N, blas_dim(OC), blas_dim(rows), blas_dim(IC), &one, W,
                        blas_dim(IC), in, blas_dim(IC), &zero, out, blas_dim(OC)));
    if (bias != NULL) {
        bias_add_k<<<grid_for(rows * OC), kThreads, 0, dev.stream>>>(out, bias, rows, OC);
        LAUNCHED();
    }
}

void gpt_cuda_matmul_backward(float *din, float *dW, float *dbias, const float *dout, const float *in, const float *W,
                              size_t rows, size_t IC, size_t OC)
{
    const float one = 1.0f;
    CK_BLAS(cublasSgemm(dev.blas, CUBLAS_OP_N, CUBLAS_OP_N, blas_dim(IC), blas_dim(rows), blas_dim(OC), &one, W,
                        blas_dim(IC), dout, blas_dim(OC), &one, din, blas_dim(IC)));
    CK_BLAS(cublasSgemm(dev.blas, CUBLAS_OP_N, CUBLAS_OP_T, blas_dim(IC), blas_dim(OC), blas_dim(rows), &one, in,
                        blas_dim(IC), dout, blas_dim(OC), &one, dW, blas_dim(IC)));
    if (dbias != NULL) {
        bias_backward_k<<<grid_for(OC), kThreads, 0, dev.stream>>>(dbias, dout, rows, OC);
        LAUNCHED();
    }
}

void gpt_cuda_attention_forward(float *y, float *att, const float *qkv, size_t B, size_t T, size_t C, size_t NH)
{
    attention_forward_k<<<grid_for(B * NH * T), kThreads, 0, dev.stream>>>(y, att, qkv, B, T, C, NH);
    LAUNCHED();
}

void gpt_cuda_attention_backward(float *dqkv, float *d_att, const float *dy, const float *att, const float *qkv,
                                 size_t B, size_t T, size_t C, size_t NH)
{
    attention_backward_q_k<<<grid_for(B * NH * T), kThreads, 0, dev.stream>>>(dqkv, d_att, dy, att, qkv, B, T, C, NH);
    LAUNCHED();
    attention_backward_kv_k<<<grid_for(B * NH * T), kThreads, 0, dev.stream>>>(dqkv, d_att, dy, att, qkv, B, T, C,
                                                                                NH);
    LAUNCHED();
}

void gpt_cuda_gelu_forward(float *out, const float *in, size_t n)
{
    gelu_forward_k<<<grid_for(n), kThreads, 0, dev.stream>>>(out, in, n);
    LAUNCHED();
}

void gpt_cuda_gelu_backward(float *din, const float *in, const float *dout, size_t n)
{
    gelu_backward_k<<<grid_for(n), kThreads, 0, dev.stream>>>(din, in, dout, n);
    LAUNCHED();
}

void gpt_cuda_embedding_forward(float *out, const float *wte, const float *wpe, const int *tokens, size_t B, size_t T,
                                size_t C)
{
    embedding_forward_k<<<grid_for(B * T * C), kThreads, 0, dev.stream>>>(out, wte, wpe, tokens, B, T, C);
    LAUNCHED();
}

void gpt_cuda_embedding_backward(float *dwte, float *dwpe, const float *d, const int *tokens, size_t B, size_t T,
                                 size_t C)
{
    embedding_backward_k<<<grid_for(C), kThreads, 0, dev.stream>>>(dwte, dwpe, d, tokens, B, T, C);
    LAUNCHED();
}

void gpt_cuda_softmax_forward(float *probs, size_t rows, size_t V)
{
    softmax_forward_k<<<grid_for(rows), kThreads, 0, dev.stream>>>(probs, rows, V);
    LAUNCHED();
}

void gpt_cuda_logits_backward(float *d_logits, const float *probs, const int *targets, size_t rows, size_t V,
                              float seed)
{
    logits_backward_k<<<grid_for(rows * V), kThreads, 0, dev.stream>>>(d_logits, probs, targets, rows, V, seed);
    LAUNCHED();
}

void gpt_cuda_target_losses(double *out, const float *probs, const int *targets, size_t rows, size_t V)
{
    target_losses_k<<<grid_for(rows), kThreads, 0, dev.stream>>>(out, probs, targets, rows, V);
    LAUNCHED();
}

void gpt_cuda_residual_add(float *out, const float *in, size_t n)
{
    residual_add_k<<<grid_for(n), kThreads, 0, dev.stream>>>(out, in, n);
    LAUNCHED();
}

int gpt_cuda_open(int device, void **stream_p, int *device_p)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        fprintf(stderr, "gpt_cuda: no CUDA device is visible (%s)\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount: 0");
        return 1;
    }
    if (device < 0) {
        /* as the engine's default: LOCAL_RANK modulo the visible devices */
        const char *lr = getenv("LOCAL_RANK");
        device = (lr != NULL ? atoi(lr) : 0) % count;
    }
    if (device >= count) {
        fprintf(stderr, "gpt_cuda: --device %d: only %d CUDA device(s) are visible\n", device, count);
        return -1;
    }
    dev = device_state{};
    dev.device = device;
    CK(cudaSetDevice(device));
    CK(cudaStreamCreateWithFlags(&dev.stream, cudaStreamNonBlocking));
    CK_BLAS(cublasCreate(&dev.blas));
    CK_BLAS(cublasSetStream(dev.blas, dev.stream));
    /* plain fp32 products (no TF32), to compare with the CPU model */
    CK_BLAS(cublasSetMathMode(dev.blas, CUBLAS_PEDANTIC_MATH));
    if (dev.failed)
        return -1;
    dev.open = 1;
    if (stream_p != NULL)
        *stream_p = dev.stream;
    if (device_p != NULL)
        *device_p = device;
    return 0;
}

void gpt_cuda_close(void)
{
    if (!dev.open)
        return;
    if (dev.blas != NULL)
        cublasDestroy(dev.blas);
    if (dev.stream != NULL)
        cudaStreamDestroy(dev.stream);
    dev = device_state{};
}

int gpt_cuda_sync(void)
{
    CK(cudaStreamSynchronize(dev.stream));
    return dev.failed ? -1 : 0;
}

} // extern "C"

/* ---- the model: gpt.c's passes on the device ---- */

namespace {

struct block_acts {
    float *in, *ln1, *ln1_mean, *ln1_rstd, *qkv, *att, *y, *res2, *ln2, *ln2_mean, *ln2_rstd, *fc, *gelu;
};

/* gpt.c's struct gpt_model, in device memory (same buffers, same sizes) */
struct cuda_model {
    gpt_config_t cfg;
    int max_b, max_t, b, t;
    block_acts *blocks; /* host array of device pointers */
    float *res_out, *lnf, *lnf_mean, *lnf_rstd, *probs;
    int *tokens, *targets;
    float *d_res, *d_a, *d_b, *d_qkv, *d_att, *d_logits;
    double *row_loss;      /* [B*T] device */
    double *row_loss_host; /* [B*T] its copy after forward_end */
    float *buffer;
};

void model_destroy(void *p)
{
    cuda_model *m = (cuda_model *)p;
    if (m == NULL)
        return;
    cudaStreamSynchronize(dev.stream); /* queued kernels may still use the buffers */
    cudaFree(m->buffer);
    cudaFree(m->tokens);
    cudaFree(m->targets);
    cudaFree(m->row_loss);
    free(m->row_loss_host);
    free(m->blocks);
    free(m);
}

void *model_create(const gpt_config_t *cfg, int batch, int seq_len)
{
    size_t B = (size_t)batch, T = (size_t)seq_len, C = (size_t)cfg->channels, V = (size_t)cfg->vocab;
    size_t NH = (size_t)cfg->heads, L = (size_t)cfg->layers, BT = B * T;
    size_t per_block = BT * C * 6 + BT * 4 + BT * 3 * C + B * NH * T * T + BT * 8 * C;
    size_t total = L * per_block + BT * C * 2 + BT * 2 + BT * V * 2 + BT * C + BT * 4 * C * 2 + BT * 3 * C +
                   B * NH * T * T;
    if (cfg->vocab < 2 || cfg->channels < 1 || cfg->layers < 1 || cfg->heads < 1 ||
        cfg->channels % cfg->heads != 0 || seq_len < 1 || seq_len > cfg->context || batch < 1) {
        fprintf(stderr, "gpt_cuda: bad model shape (V=%d T=%d C=%d L=%d NH=%d, batch %d x %d)\n", cfg->vocab,
                cfg->context, cfg->channels, cfg->layers, cfg->heads, batch, seq_len);
        return NULL;
    }
    cuda_model *m = (cuda_model *)calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->cfg = *cfg;
    m->max_b = batch;
    m->max_t = seq_len;
    m->blocks = (block_acts *)calloc(L, sizeof(*m->blocks));
    m->row_loss_host = (double *)malloc(BT * sizeof(double));
    if (m->blocks == NULL || m->row_loss_host == NULL ||
        cudaMalloc(&m->buffer, total * sizeof(float)) != cudaSuccess ||
        cudaMalloc(&m->tokens, BT * sizeof(int)) != cudaSuccess ||
        cudaMalloc(&m->targets, BT * sizeof(int)) != cudaSuccess ||
        cudaMalloc(&m->row_loss, BT * sizeof(double)) != cudaSuccess) {
        fprintf(stderr, "gpt_cuda: out of memory for %zu activations\n", total);
        model_destroy(m);
        return NULL;
    }
    float *p = m->buffer;
    auto take = [&p](size_t n) {
        float *q = p;
        p += n;
        return q;
    };
    for (size_t l = 0; l < L; l++) {
        block_acts *a = &m->blocks[l];
        a->in = take(BT * C);
        a->ln1 = take(BT * C);
        a->ln1_mean = take(BT);
        a->ln1_rstd = take(BT);
        a->qkv = take(BT * 3 * C);
        a->att = take(B * NH * T * T);
        a->y = take(BT * C);
        a->res2 = take(BT * C);
        a->ln2 = take(BT * C);
        a->ln2_mean = take(BT);
        a->ln2_rstd = take(BT);
        a->fc = take(BT * 4 * C);
        a->gelu = take(BT * 4 * C);
    }
    m->res_out = take(BT * C);
    m->lnf = take(BT * C);
    m->lnf_mean = take(BT);
    m->lnf_rstd = take(BT);
    m->probs = take(BT * V);
    m->d_logits = take(BT * V);
    m->d_res = take(BT * C);
    m->d_a = take(BT * 4 * C);
    m->d_b = take(BT * 4 * C);
    m->d_qkv = take(BT * 3 * C);
    m->d_att = take(B * NH * T * T);
    return m;
}

void zero_f32(float *p, size_t n)
{
    CK(cudaMemsetAsync(p, 0, n * sizeof(float), dev.stream));
}

void model_forward_begin(void *p, const gpt_weights_t *w, const int *tokens, int batch, int seq_len)
{
    cuda_model *m = (cuda_model *)p;
    size_t C = (size_t)m->cfg.channels;
    m->b = batch;
    m->t = seq_len;
    CK(cudaMemcpyAsync(m->tokens, tokens, (size_t)batch * (size_t)seq_len * sizeof(int), cudaMemcpyHostToDevice,
                       dev.stream));
    gpt_cuda_embedding_forward(m->blocks[0].in, w->global[GPT_WTE], w->global[GPT_WPE], m->tokens, (size_t)batch,
                               (size_t)seq_len, C);
}

void model_forward_block(void *p, const gpt_weights_t *w, int layer)
{
    cuda_model *m = (cuda_model *)p;
    size_t B = (size_t)m->b, T = (size_t)m->t, C = (size_t)m->cfg.channels, NH = (size_t)m->cfg.heads;
    size_t BT = B * T;
    block_acts *a = &m->blocks[layer];
    float *const *q = w->block + (size_t)layer * GPT_NUM_BLOCK;
    float *out = layer + 1 < m->cfg.layers ? m->blocks[layer + 1].in : m->res_out;

    gpt_cuda_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, a->in, q[GPT_LN1_W], q[GPT_LN1_B], BT, C);
    gpt_cuda_matmul_forward(a->qkv, a->ln1, q[GPT_QKV_W], q[GPT_QKV_B], BT, C, 3 * C);
    gpt_cuda_attention_forward(a->y, a->att, a->qkv, B, T, C, NH);
    gpt_cuda_matmul_forward(a->res2, a->y, q[GPT_PROJ_W], q[GPT_PROJ_B], BT, C, C);
    gpt_cuda_residual_add(a->res2, a->in, BT * C);
    gpt_cuda_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, q[GPT_LN2_W], q[GPT_LN2_B], BT, C);
    gpt_cuda_matmul_forward(a->fc, a->ln2, q[GPT_FC_W], q[GPT_FC_B], BT, C, 4 * C);
    gpt_cuda_gelu_forward(a->gelu, a->fc, BT * 4 * C);
    gpt_cuda_matmul_forward(out, a->gelu, q[GPT_FCPROJ_W], q[GPT_FCPROJ_B], BT, 4 * C, C);
    gpt_cuda_residual_add(out, a->res2, BT * C);
}

float model_forward_end(void *p, const gpt_weights_t *w, const int *targets)
{
    cuda_model *m = (cuda_model *)p;
    size_t BT = (size_t)m->b * (size_t)m->t, C = (size_t)m->cfg.channels, V = (size_t)m->cfg.vocab;
    double loss = 0.0;
    gpt_cuda_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, m->res_out, w->global[GPT_LNF_W],
                               w->global[GPT_LNF_B], BT, C);
    gpt_cuda_matmul_forward(m->probs, m->lnf, w->global[GPT_WTE], NULL, BT, C, V);
    gpt_cuda_softmax_forward(m->probs, BT, V);
    if (targets == NULL)
        return 0.0f;
    CK(cudaMemcpyAsync(m->targets, targets, BT * sizeof(int), cudaMemcpyHostToDevice, dev.stream));
    gpt_cuda_target_losses(m->row_loss, m->probs, m->targets, BT, V);
    CK(cudaMemcpyAsync(m->row_loss_host, m->row_loss, BT * sizeof(double), cudaMemcpyDeviceToHost, dev.stream));
    /* the trainer's one host wait per micro-batch: it prints the loss */
    CK(cudaStreamSynchronize(dev.stream));
    if (dev.failed)
        return NAN;
    for (size_t r = 0; r < BT; r++)
        loss += m->row_loss_host[r]; /* gpt.c subtracts log(p): the same sum */
    return (float)(loss / (double)BT);
}

void model_backward_end(void *p, const gpt_weights_t *w, const gpt_weights_t *g, float loss_scale)
{
    cuda_model *m = (cuda_model *)p;
    size_t BT = (size_t)m->b * (size_t)m->t, C = (size_t)m->cfg.channels, V = (size_t)m->cfg.vocab;
    float *d_lnf = m->d_a;
    float seed = loss_scale / (float)BT;
    gpt_cuda_logits_backward(m->d_logits, m->probs, m->targets, BT, V, seed);
    zero_f32(d_lnf, BT * C);
    gpt_cuda_matmul_backward(d_lnf, g->global[GPT_WTE], NULL, m->d_logits, m->lnf, w->global[GPT_WTE], BT, C, V);
    zero_f32(m->d_res, BT * C);
    gpt_cuda_layernorm_backward(m->d_res, g->global[GPT_LNF_W], g->global[GPT_LNF_B], d_lnf, m->res_out,
                                w->global[GPT_LNF_W], m->lnf_mean, m->lnf_rstd, BT, C);
}

void model_backward_block(void *p, const gpt_weights_t *w, const gpt_weights_t *g, int layer)
{
    cuda_model *m = (cuda_model *)p;
    size_t B = (size_t)m->b, T = (size_t)m->t, C = (size_t)m->cfg.channels, NH = (size_t)m->cfg.heads;
    size_t BT = B * T;
    block_acts *a = &m->blocks[layer];
    float *const *q = w->block + (size_t)layer * GPT_NUM_BLOCK;
    float *const *dq = g->block + (size_t)layer * GPT_NUM_BLOCK;
    float *d_res = m->d_res;
    float *d_gelu = m->d_a, *d_fc = m->d_b;

    zero_f32(d_gelu, BT * 4 * C);
    gpt_cuda_matmul_backward(d_gelu, dq[GPT_FCPROJ_W], dq[GPT_FCPROJ_B], d_res, a->gelu, q[GPT_FCPROJ_W], BT, 4 * C,
                             C);
    gpt_cuda_gelu_backward(d_fc, a->fc, d_gelu, BT * 4 * C);
    float *d_ln2 = d_gelu;
    zero_f32(d_ln2, BT * C);
    gpt_cuda_matmul_backward(d_ln2, dq[GPT_FC_W], dq[GPT_FC_B], d_fc, a->ln2, q[GPT_FC_W], BT, C, 4 * C);
    gpt_cuda_layernorm_backward(d_res, dq[GPT_LN2_W], dq[GPT_LN2_B], d_ln2, a->res2, q[GPT_LN2_W], a->ln2_mean,
                                a->ln2_rstd, BT, C);
    float *d_y = m->d_a, *d_ln1 = m->d_b;
    zero_f32(d_y, BT * C);
    gpt_cuda_matmul_backward(d_y, dq[GPT_PROJ_W], dq[GPT_PROJ_B], d_res, a->y, q[GPT_PROJ_W], BT, C, C);
    gpt_cuda_attention_backward(m->d_qkv, m->d_att, d_y, a->att, a->qkv, B, T, C, NH);
    zero_f32(d_ln1, BT * C);
    gpt_cuda_matmul_backward(d_ln1, dq[GPT_QKV_W], dq[GPT_QKV_B], m->d_qkv, a->ln1, q[GPT_QKV_W], BT, C, 3 * C);
    gpt_cuda_layernorm_backward(d_res, dq[GPT_LN1_W], dq[GPT_LN1_B], d_ln1, a->in, q[GPT_LN1_W], a->ln1_mean,
                                a->ln1_rstd, BT, C);
}

void model_backward_begin(void *p, const gpt_weights_t *w, const gpt_weights_t *g)
{
    cuda_model *m = (cuda_model *)p;
    (void)w;
    gpt_cuda_embedding_backward(g->global[GPT_WTE], g->global[GPT_WPE], m->d_res, m->tokens, (size_t)m->b,
                                (size_t)m->t, (size_t)m->cfg.channels);
}

double model_target_loss(void *p, int b, int t)
{
    cuda_model *m = (cuda_model *)p;
    return m->row_loss_host[(size_t)b * (size_t)m->t + (size_t)t];
}

/* ---- the backend ---- */

int backend_open(int device, zero_engine_params_t *ep)
{
    void *stream = NULL;
    int chosen = -1;
    if (gpt_cuda_open(device, &stream, &chosen) != 0)
        return -1;
    ep->field_mask |= ZERO_ENGINE_PARAM_FIELD_MEM_KIND | ZERO_ENGINE_PARAM_FIELD_CUDA_STREAM |
                      ZERO_ENGINE_PARAM_FIELD_CUDA_DEVICE;
    ep->mem_kind = ZERO_MEM_DEVICE;
    ep->cuda_stream = stream;
    ep->cuda_device = chosen;
    return 0;
}

float *backend_alloc(size_t n)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, n * sizeof(float));
    if (e != cudaSuccess) {
        fprintf(stderr, "gpt_cuda: cudaMalloc of %zu floats: %s\n", n, cudaGetErrorString(e));
        return NULL;
    }
    return (float *)p;
}

void backend_free(float *p)
{
    if (p != NULL) {
        cudaStreamSynchronize(dev.stream);
        cudaFree(p);
    }
}

void backend_to_f32(zero_dtype_t dtype, const void *src, float *dst, size_t n)
{
    if (dtype == ZERO_BF16)
        bf16_to_f32_k<<<grid_for(n), kThreads, 0, dev.stream>>>(dst, (const __nv_bfloat16 *)src, n);
    else
        fp16_to_f32_k<<<grid_for(n), kThreads, 0, dev.stream>>>(dst, (const __half *)src, n);
    LAUNCHED();
}

void backend_add_to_16(zero_dtype_t dtype, void *dst, const float *src, size_t n)
{
    if (dtype == ZERO_BF16)
        bf16_add_f32_k<<<grid_for(n), kThreads, 0, dev.stream>>>((__nv_bfloat16 *)dst, src, n);
    else
        fp16_add_f32_k<<<grid_for(n), kThreads, 0, dev.stream>>>((__half *)dst, src, n);
    LAUNCHED();
}

int backend_check(void)
{
    LAUNCHED();
    return dev.failed ? -1 : 0;
}

} // namespace

extern "C" const gpt_backend_t gpt_backend = {
    .name = "cuda",
    .open = backend_open,
    .close = gpt_cuda_close,
    .create = model_create,
    .destroy = model_destroy,
    .forward_begin = model_forward_begin,
    .forward_block = model_forward_block,
    .forward_end = model_forward_end,
    .backward_end = model_backward_end,
    .backward_block = model_backward_block,
    .backward_begin = model_backward_begin,
    .target_loss = model_target_loss,
    .alloc = backend_alloc,
    .free = backend_free,
    .zero = zero_f32,
    .to_f32 = backend_to_f32,
    .add_to_16 = backend_add_to_16,
    .check = backend_check,
};
