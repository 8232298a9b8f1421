/*
 * Where train_gpt.c's model runs. The trainer (options, text, sampler, the
 * engine, checkpoints, evaluation) is one source; each executable links one
 * backend and names it `gpt_backend`:
 *   train_gpt       gpt_backend_host.c: gpt.c on the CPU, weights in host memory;
 *   train_gpt_cuda  gpt_cuda.cu: the same model in CUDA (cuBLAS for the matrix
 *                   products), weights, gradients and optimizer state in device
 *                   memory (ZERO_MEM_DEVICE), every kernel on one stream that
 *                   the engine is given (the ordering contract in zero/engine.h).
 * Weights and gradients handed to the model are fp32 arrays in the backend's
 * memory; `alloc` gives scratch in that memory for the 16-bit configs.
 * Device errors are sticky: calls after the first one do nothing useful, and
 * `check` reports it (the trainer calls it once per micro-batch).
 */
#ifndef GPT_BACKEND_H
#define GPT_BACKEND_H

#include "gpt.h"

#include <zero/zero.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gpt_backend {
    const char *name; /* "host" or "cuda", printed by the trainer */
    /* Picks the device (@p device: an index, or -1 = LOCAL_RANK modulo the visible devices; the
     * host backend takes -1 only) and sets the engine's mem_kind, cuda_stream and cuda_device
     * (with their field bits) in @p ep. 0, or -1 after a message on stderr. */
    int (*open)(int device, zero_engine_params_t *ep);
    void (*close)(void);
    /* The model's activations for up to @p batch sequences of @p seq_len tokens; NULL on failure. */
    void *(*create)(const gpt_config_t *cfg, int batch, int seq_len);
    void (*destroy)(void *model);
    /* gpt.h's passes, same contracts; tokens and targets are host arrays. */
    void (*forward_begin)(void *model, const gpt_weights_t *w, const int *tokens, int batch, int seq_len);
    void (*forward_block)(void *model, const gpt_weights_t *w, int layer);
    float (*forward_end)(void *model, const gpt_weights_t *w, const int *targets);
    void (*backward_end)(void *model, const gpt_weights_t *w, const gpt_weights_t *g, float loss_scale);
    void (*backward_block)(void *model, const gpt_weights_t *w, const gpt_weights_t *g, int layer);
    void (*backward_begin)(void *model, const gpt_weights_t *w, const gpt_weights_t *g);
    /* gpt_target_loss() of the last forward_end (a host value). */
    double (*target_loss)(void *model, int b, int t);
    /* @p n floats of the backend's memory (NULL on failure), and their release. */
    float *(*alloc)(size_t n);
    void (*free)(float *p);
    /* Memory operations on the backend's memory, in stream order on a device. */
    void (*zero)(float *p, size_t n);
    /* dst = src (bf16 or fp16 -> fp32) */
    void (*to_f32)(zero_dtype_t dtype, const void *src, float *dst, size_t n);
    /* dst (bf16 or fp16) += src (fp32), rounded once to nearest even */
    void (*add_to_16)(zero_dtype_t dtype, void *dst, const float *src, size_t n);
    /* 0, or -1 after printing the first device error since open. */
    int (*check)(void);
} gpt_backend_t;

/* The backend this executable was linked with. */
extern const gpt_backend_t gpt_backend;

#ifdef __cplusplus
}
#endif

#endif /* GPT_BACKEND_H */
