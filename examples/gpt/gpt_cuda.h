/*
 * The CUDA twins of gpt_ops.h's building blocks (gpt_cuda.cu): the same
 * arguments on device pointers (tokens and targets too), the same arithmetic
 * in the same order where the CPU code has one (so results differ only by
 * the device's expf/tanhf/logf and the matrix products' summation order), queued on
 * the stream gpt_cuda_open() made. The matrix products are cuBLAS SGEMMs
 * (no TF32). For train_gpt_cuda (through gpt_backend) and the kernel test
 * (tests/examples/test_gpt_cuda_ops.c).
 */
#ifndef GPT_CUDA_H
#define GPT_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Makes @p device current (-1: LOCAL_RANK modulo the visible devices), creates the stream and
 * the cuBLAS handle. 0; 1 when no CUDA device is visible (message on stderr says so); -1 on
 * another error (message on stderr). *stream_p (cudaStream_t) and *device_p may be NULL. */
int gpt_cuda_open(int device, void **stream_p, int *device_p);
void gpt_cuda_close(void);
/* Waits for the stream. 0, or -1 after printing the first device error since open. */
int gpt_cuda_sync(void);

void gpt_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                                size_t rows, size_t C);
void gpt_cuda_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *in, const float *w,
                                 const float *mean, const float *rstd, size_t rows, size_t C);
void gpt_cuda_matmul_forward(float *out, const float *in, const float *W, const float *bias, size_t rows, size_t IC,
                             size_t OC);
void gpt_cuda_matmul_backward(float *din, float *dW, float *dbias, const float *dout, const float *in, const float *W,
                              size_t rows, size_t IC, size_t OC);
void gpt_cuda_attention_forward(float *y, float *att, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
void gpt_cuda_attention_backward(float *dqkv, float *d_att, const float *dy, const float *att, const float *qkv,
                                 size_t B, size_t T, size_t C, size_t NH);
void gpt_cuda_gelu_forward(float *out, const float *in, size_t n);
void gpt_cuda_gelu_backward(float *din, const float *in, const float *dout, size_t n);
void gpt_cuda_embedding_forward(float *out, const float *wte, const float *wpe, const int *tokens, size_t B, size_t T,
                                size_t C);
void gpt_cuda_embedding_backward(float *dwte, float *dwpe, const float *d, const int *tokens, size_t B, size_t T,
                                 size_t C);
void gpt_cuda_softmax_forward(float *probs, size_t rows, size_t V);
void gpt_cuda_logits_backward(float *d_logits, const float *probs, const int *targets, size_t rows, size_t V,
                              float seed);
/* out[r] = -log((double)probs[r, targets[r]] + 1e-30), the host's per-position loss */
void gpt_cuda_target_losses(double *out, const float *probs, const int *targets, size_t rows, size_t V);
/* out[i] += in[i] (the residual connections) */
void gpt_cuda_residual_add(float *out, const float *in, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* GPT_CUDA_H */
