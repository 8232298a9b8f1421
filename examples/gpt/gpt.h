/*
 * A small GPT-style language model in plain C: token and position embeddings,
 * pre-norm transformer blocks (layer norm, causal self-attention, GELU MLP),
 * a final layer norm and an output projection tied to the token embedding.
 * Forward and backward are written by hand; OpenMP spreads rows over cores.
 *
 * The model owns only its activations. Weights and gradients are fp32 arrays
 * the caller provides per tensor (the trainer gets them from libzero), and the
 * passes run block by block so a ZeRO-3 trainer can gather one block's weights
 * just before it is used and release them just after.
 */
#ifndef GPT_H
#define GPT_H

#include <stddef.h>

typedef struct gpt_config {
    int vocab;      /* V: tokens (bytes or characters) */
    int context;    /* T: maximum sequence length */
    int channels;   /* C */
    int layers;     /* L */
    int heads;      /* NH; C must divide by it */
} gpt_config_t;

/* Tensors of the embedding/head part ("global") and of each block. */
enum { GPT_WTE, GPT_WPE, GPT_LNF_W, GPT_LNF_B, GPT_NUM_GLOBAL };
enum {
    GPT_LN1_W, GPT_LN1_B, GPT_QKV_W, GPT_QKV_B, GPT_PROJ_W, GPT_PROJ_B,
    GPT_LN2_W, GPT_LN2_B, GPT_FC_W, GPT_FC_B, GPT_FCPROJ_W, GPT_FCPROJ_B,
    GPT_NUM_BLOCK
};

/* Name ("wte", "h.3.attn.qkv.weight", ...) and shape of a tensor; layer -1 = global. */
void gpt_tensor_info(const gpt_config_t *cfg, int layer, int tensor, char *name, size_t name_size,
                     int *ndim_p, long shape[2]);
size_t gpt_tensor_numel(const gpt_config_t *cfg, int layer, int tensor);
size_t gpt_num_parameters(const gpt_config_t *cfg);

/* Pointers to one block's (or the global) tensors, in the enum order above. */
typedef struct gpt_weights {
    float *global[GPT_NUM_GLOBAL];
    float **block;               /* [layers][GPT_NUM_BLOCK], flattened: block[l * GPT_NUM_BLOCK + t] */
} gpt_weights_t;

typedef struct gpt_model gpt_model_t;

/* Allocates activations for batches of up to @p batch sequences of @p seq_len tokens. Returns NULL
 * (with a message on stderr) on a bad config or no memory. */
gpt_model_t *gpt_create(const gpt_config_t *cfg, int batch, int seq_len);
void gpt_destroy(gpt_model_t *model);

/* Initial value of a tensor (GPT-2 style: N(0, 0.02), residual projections scaled by
 * 1/sqrt(2L), layer-norm weights 1, biases 0), deterministic in (seed, layer, tensor, index). */
void gpt_init_tensor(const gpt_config_t *cfg, int layer, int tensor, unsigned long long seed, float *out);
/* Elements [offset, offset + count) of the same values (each depends on its index alone), for
 * libzero's init callback, which asks only for the ranges a rank holds. */
void gpt_init_range(const gpt_config_t *cfg, int layer, int tensor, unsigned long long seed, size_t offset,
                    size_t count, float *out);

/*
 * Forward in three parts so a caller can bracket each block's weights:
 *   gpt_forward_begin (embeddings; needs global weights WTE, WPE)
 *   gpt_forward_block for l = 0..L-1 (needs block l)
 *   gpt_forward_end (final norm, logits, loss; needs WTE, LNF); returns the mean loss in nats.
 * @p targets may be NULL (then the loss is not computed and 0 is returned).
 */
void gpt_forward_begin(gpt_model_t *m, const gpt_weights_t *w, const int *tokens, int batch, int seq_len);
void gpt_forward_block(gpt_model_t *m, const gpt_weights_t *w, int layer);
float gpt_forward_end(gpt_model_t *m, const gpt_weights_t *w, const int *targets);

/*
 * Backward of the last forward, scaled by @p loss_scale (the seed of dL/dlogits, e.g. the
 * loss scale divided by accumulation steps). Gradients are ADDED into @p g (same layout as
 * the weights), so accumulation over micro-batches needs no extra buffer:
 *   gpt_backward_end (head; needs WTE, LNF; writes dWTE, dLNF)
 *   gpt_backward_block for l = L-1..0
 *   gpt_backward_begin (embeddings; writes dWTE, dWPE)
 */
void gpt_backward_end(gpt_model_t *m, const gpt_weights_t *w, const gpt_weights_t *g, float loss_scale);
void gpt_backward_block(gpt_model_t *m, const gpt_weights_t *w, const gpt_weights_t *g, int layer);
void gpt_backward_begin(gpt_model_t *m, const gpt_weights_t *w, const gpt_weights_t *g);

/* Probabilities of the next token after the last forward (position t of sequence b), for sampling. */
const float *gpt_probs(const gpt_model_t *m, int b, int t);
/* -log(p(target) + 1e-30) at position t of sequence b, for the targets of the last forward_end. */
double gpt_target_loss(const gpt_model_t *m, int b, int t);

#endif /* GPT_H */
