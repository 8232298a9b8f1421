/*
 * The optimizer kernels on the GPU (compiled only with the cuda feature).
 *
 * Same arithmetic as the host: each kernel runs the per-element update of
 * optim_elem.h on its thread, with the scalars zero_optim_*_k() derive on the
 * host, so an element updated here equals the C reference bit for bit
 * (nvcc runs with -fmad=false; division and sqrt are IEEE-rounded by default).
 * Only the sums (norms, Lamb's partial sums) differ from the host, in
 * summation order; they are deterministic run to run (fixed grid, fixed
 * reduction tree, no atomics on values).
 *
 * Nothing here makes the host wait. What depends on the step's gradients
 * (the overflow decision, the clip coefficient) is decided on the device and
 * read by the update kernels from device memory, the zero_cuda_gate_t:
 *
 *   zero_cuda_gate_reset(gate)                     before the first bucket
 *   zero_cuda_grad_stats(g, ..., gate)             per bucket: += non-finite count and sum of squares
 *   (all-reduce gate->nonfinite and gate->sumsq, two doubles, over ranks)
 *   zero_cuda_gate_prepare(gate, loss_scale, max_norm)
 *   zero_cuda_adam(k, gate, ...) ...               skip themselves when gate->skip
 *   copy the gate to the host once, for zero_step_info_t and the loss scaler
 *
 * The learning rate and the step count are the host's (they are known
 * before the step: a skipped step does not advance them), so k is passed by
 * value; k.grad_scale is ignored and gate->grad_scale used instead.
 *
 * Every function enqueues on @p stream (a cudaStream_t; NULL the legacy
 * default stream), takes device pointers, and returns a cudaError_t as int
 * (0 on success). A kernel launcher (all but zero_cuda_gate_reset, a memset)
 * where a CUDA error was already pending on the calling thread returns minus
 * that cudaError_t with nothing launched: the failure is not its kernel's
 * (util/cuda_launch.cuh). n == 0 enqueues nothing and returns 0.
 */
#ifndef ZERO_OPTIM_OPTIM_CUDA_H
#define ZERO_OPTIM_OPTIM_CUDA_H

#include "optim/optim_dsp.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One step's gate, in device memory. The first two fields are adjacent so
 * one all-reduce of 2 doubles (ZERO_F64, sum) combines ranks. */
typedef struct zero_cuda_gate {
    double nonfinite;     /* inf/NaN gradient elements seen */
    double sumsq;         /* sum of squares of the (loss-scaled) gradients */
    double grad_norm;     /* prepare: sqrt(sumsq) / loss_scale, +inf on overflow */
    float grad_scale;     /* prepare: clip coefficient / loss_scale */
    int skip;             /* prepare: 1 on overflow (the update kernels do nothing) */
} zero_cuda_gate_t;

/* Doubles of scratch zero_cuda_grad_stats needs (device memory). */
#define ZERO_CUDA_STATS_SCRATCH 2048

int zero_cuda_gate_reset(zero_cuda_gate_t *gate, void *stream);
/* Adds the non-finite count and the sum of squares of @p n elements of @p g
 * (dtype as zero_dtype_t: fp32, fp16, bf16) into the gate. */
int zero_cuda_grad_stats(const void *g, int dtype, size_t n, zero_cuda_gate_t *gate, double *scratch,
                         void *stream);
/* Decides the step as the host engine does: overflow when any element was
 * non-finite or the sum is not finite; otherwise the norm, DeepSpeed's clip
 * coefficient for @p max_norm (0: no clipping) and grad_scale = clip / loss_scale. */
int zero_cuda_gate_prepare(zero_cuda_gate_t *gate, double loss_scale, double max_norm, void *stream);

/* The updates. w16 may be NULL when w16_type is ZERO_OPTIM_W16_NONE. */
int zero_cuda_adam(const zero_adam_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g,
                   const float *g_add, float *m, float *v, uint16_t *w16, int w16_type, size_t n, void *stream);
int zero_cuda_sgd(const zero_sgd_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g, float *buf,
                  uint16_t *w16, int w16_type, size_t n, void *stream);
int zero_cuda_adagrad(const zero_adagrad_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g,
                      float *sum, uint16_t *w16, int w16_type, size_t n, void *stream);
int zero_cuda_lion(const zero_lion_k_t *k, const zero_cuda_gate_t *gate, float *w, const float *g, float *m,
                   uint16_t *w16, int w16_type, size_t n, void *stream);
/* Lamb phase 1 over one parameter's piece: m, v updated; sums[0] += sum w^2,
 * sums[1] += sum u^2 (device doubles; all-reduce them over ranks next). */
int zero_cuda_lamb1(const zero_lamb_k_t *k, const zero_cuda_gate_t *gate, const float *w, const float *g,
                    float *m, float *v, size_t n, double *sums, double *scratch, void *stream);
/* Lamb phase 2: the trust ratio from sums (device), w -= step_size * ratio * u. */
int zero_cuda_lamb2(const zero_lamb_k_t *k, const zero_cuda_gate_t *gate, double step_size, float max_coeff,
                    float min_coeff, const double *sums, float *w, const float *m, const float *v, uint16_t *w16,
                    int w16_type, size_t n, void *stream);

/* Sets the gate from values the host decided (the engine sums the statistics
 * over ranks on the host, where it reads them once per step): grad_norm,
 * grad_scale and skip by value, so no host memory is read by the device. */
int zero_cuda_gate_set(zero_cuda_gate_t *gate, double grad_norm, float grad_scale, int skip, void *stream);
/* dst[0] = a, dst[1] = b (by value: Lamb's per-parameter sums, summed over ranks on the host). */
int zero_cuda_put2(double *dst, double a, double b, void *stream);
/* dst[i] = value over n floats (Adagrad's initial accumulator). */
int zero_cuda_fill(float *dst, float value, size_t n, void *stream);
/* dst[i] = round16(dst[i] + src[i]) over n 16-bit values (w16_type BF16 or FP16),
 * summed in fp32 and rounded once, as the host engine accumulates. */
int zero_cuda_add16(uint16_t *dst, const uint16_t *src, int w16_type, size_t n, void *stream);
/* dst[i] += src[i] over n floats. */
int zero_cuda_add32(float *dst, const float *src, size_t n, void *stream);

/* acc[i] += g[i] (g of dtype fp32, fp16 or bf16): gradient accumulation in fp32. */
int zero_cuda_accumulate(float *acc, const void *g, int dtype, size_t n, void *stream);
/* fp32 -> bf16/fp16 and back, rounding as util/half.h. */
int zero_cuda_to_16(uint16_t *dst, const float *src, int w16_type, size_t n, void *stream);
int zero_cuda_from_16(float *dst, const uint16_t *src, int w16_type, size_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ZERO_OPTIM_OPTIM_CUDA_H */
