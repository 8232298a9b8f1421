/*
 * The building blocks of gpt.c's passes, one call per layer kind, on fp32
 * arrays in host memory. The model (gpt.c) is written with them; they are
 * exported so that gpt_cuda.cu's device versions (gpt_cuda.h, same arguments)
 * can be checked against them one by one (tests/examples/test_gpt_cuda_ops.c).
 * Shapes: rows = B*T; C channels; NH heads (C divides by NH); V the vocabulary.
 * "+=" below: the call adds into the output, the caller zeroes it first.
 */
#ifndef GPT_OPS_H
#define GPT_OPS_H

#include <stddef.h>

/* out = (in - mean) * rstd * w + b per row; mean and rstd saved for backward (eps 1e-5). */
void gpt_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                           size_t rows, size_t C);
/* dx += ..., dw += ..., db += ... for out = LN(in) */
void gpt_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *in, const float *w,
                            const float *mean, const float *rstd, size_t rows, size_t C);
/* out[rows, OC] = in[rows, IC] @ W[OC, IC]^T + bias[OC] (bias may be NULL) */
void gpt_matmul_forward(float *out, const float *in, const float *W, const float *bias, size_t rows, size_t IC,
                        size_t OC);
/* din += dout @ W; dW += dout^T @ in; dbias += column sums of dout (dbias may be NULL) */
void gpt_matmul_backward(float *din, float *dW, float *dbias, const float *dout, const float *in, const float *W,
                         size_t rows, size_t IC, size_t OC);
/* Causal attention: qkv [B,T,3C] -> y [B,T,C]; att [B,NH,T,T] keeps the probabilities (0 above the diagonal). */
void gpt_attention_forward(float *y, float *att, const float *qkv, size_t B, size_t T, size_t C, size_t NH);
/* dqkv [B,T,3C] overwritten from dy; d_att [B,NH,T,T] is scratch. */
void gpt_attention_backward(float *dqkv, float *d_att, const float *dy, const float *att, const float *qkv, size_t B,
                            size_t T, size_t C, size_t NH);
/* tanh-approximated GELU; backward overwrites din. */
void gpt_gelu_forward(float *out, const float *in, size_t n);
void gpt_gelu_backward(float *din, const float *in, const float *dout, size_t n);
/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]; backward adds d into the rows it read. */
void gpt_embedding_forward(float *out, const float *wte, const float *wpe, const int *tokens, size_t B, size_t T,
                           size_t C);
void gpt_embedding_backward(float *dwte, float *dwpe, const float *d, const int *tokens, size_t B, size_t T, size_t C);
/* Softmax of each row of [rows, V], in place. */
void gpt_softmax_forward(float *probs, size_t rows, size_t V);
/* d_logits = seed * (probs - onehot(targets)), overwritten. */
void gpt_logits_backward(float *d_logits, const float *probs, const int *targets, size_t rows, size_t V, float seed);

#endif /* GPT_OPS_H */
