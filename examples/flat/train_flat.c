/*
 * train_flat: llm.c's CPU trainer layout ported to libzero with no extra copy
 * of the model.
 *
 * The model is a small GPT-2 kept exactly as llm.c's train_gpt2.c keeps it:
 * ONE contiguous fp32 buffer for all weights (params_memory) and one for all
 * gradients (grads_memory), each of the 16 kinds of tensor stacked across the
 * layers (qkvw is (L, 3C, C), fcw is (L, 4C, C), ...) and reached through a
 * struct of pointers into the buffer. Forward and backward are llm.c's
 * kernels (encoder, layernorm, matmul, attention, GELU, residual, softmax,
 * cross-entropy), written out below. The data is a synthetic token stream
 * with a learnable rule.
 *
 * The plain trainer did:
 *     params_memory = malloc(...); point tensors into it; init;
 *     grads_memory = calloc(...);
 *     for step: forward; zero grads (weights' and activations'); backward; adamw_update();
 * The port (every change marked LIBZERO):
 *     zero_engine_create (config) -> zero_engine_flat_capacity -> allocate the
 *     two buffers with that much room -> zero_engine_adopt_flat (the buffers
 *     become the engine's flat spaces) -> zero_param_register of the 16 tensors
 *     at their offsets -> zero_engine_setup
 *     for step: forward; zero_backward_begin; zero the activation gradients
 *     (the engine zeroes the weights' gradients); backward * seed;
 *     zero_backward_end; zero_step (replaces adamw_update)
 * At stages 1-2 with fp32 the owned 1/W of params_memory is the optimizer's
 * fp32 master: the engine adds only the Adam moments of that 1/W (8/W bytes
 * per parameter) to the trainer's own 8.
 *
 * Stage 3 (the weights themselves sharded) runs on the engine's buffers and
 * goes layer by layer: the tensors that are not stacked (wte, wpe, lnfw,
 * lnfb) are gathered whole around each micro-batch, and each layer's rows of
 * the 12 stacked tensors are gathered as slices for the layer's forward and
 * again for its backward (zero_gather_slices / zero_param_slice_data), its
 * gradients written into gradient slices handed over as soon as the layer's
 * backward is done (zero_param_grad_slice / zero_grad_slice_ready). Once the
 * first micro-batch has recorded the order, the engine prefetches the next
 * layer while this one computes. So a rank holds one or two layers of the
 * stacked tensors at a time, never all L: "LayerAccess" below is the whole
 * difference, and the kernels are untouched.
 *
 * Modes (--buffers):
 *   adopt   (default; stages 0-2) the engine adopts params_memory and grads_memory;
 *   views   each tensor registered as a view into the buffers (the engine keeps
 *           its own flat copies besides: the cost adoption removes);
 *   engine  the engine's own buffers (always at stage 3), reached as
 *           --gather says: "layers" (default) as above, "whole" every tensor
 *           gathered whole around the forward and backward, through
 *           zero_param_data / zero_param_grad. At stages 0-2 the same calls
 *           are windows on the full tensors and nothing is gathered.
 * --layers L (default 2) sets the model's depth.
 * --reference runs no engine: plain llm.c AdamW on one process over the same
 * global batches (every rank's micro-batches of each step, read through the
 * same samplers), the yardstick the test compares the engine's losses with.
 *
 * Usage: train_flat --config ds_config.json [--steps N] [--layers L] [--buffers adopt|views|engine]
 *                   [--gather layers|whole]
 *        train_flat --config ds_config.json --reference --world W [--steps N] [--layers L]
 * (the engine modes under zero-launch; ds_config_stage3.json is a stage-3
 * config). Rank 0 prints "step=N train_loss=x" per step (the global batch's
 * mean loss), then "memory: ..." (zero_engine_memory, with buffers_peak, and
 * gathered_peak: the most working memory seen with a layer gathered in the
 * forward, beside one layer's and the unstacked tensors' bytes) and
 * "timing: step_ms=..." (mean over the steps after the first).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#endif
#include <zero/zero.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the model, as llm.c lays it out ---- */

enum { V = 64, MAX_T = 16, NH = 2, C = 32, T = 16, NUM_SEQUENCES = 2048 };
#define NUM_PARAMETER_TENSORS 16
#define FIRST_STACKED 2   /* tensors 2 .. 13 (ln1w .. fcprojb) are stacked across the layers */
#define NUM_STACKED 12

static int L = 2;   /* layers (--layers): the first dimension of the stacked tensors */

typedef struct {
    float *wte;      /* (V, C) */
    float *wpe;      /* (maxT, C) */
    float *ln1w;     /* (L, C) */
    float *ln1b;     /* (L, C) */
    float *qkvw;     /* (L, 3C, C) */
    float *qkvb;     /* (L, 3C) */
    float *attprojw; /* (L, C, C) */
    float *attprojb; /* (L, C) */
    float *ln2w;     /* (L, C) */
    float *ln2b;     /* (L, C) */
    float *fcw;      /* (L, 4C, C) */
    float *fcb;      /* (L, 4C) */
    float *fcprojw;  /* (L, C, 4C) */
    float *fcprojb;  /* (L, C) */
    float *lnfw;     /* (C) */
    float *lnfb;     /* (C) */
} ParameterTensors;

static const char *const tensor_names[NUM_PARAMETER_TENSORS] = {
    "wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
    "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"};
static int64_t tensor_shapes[NUM_PARAMETER_TENSORS][3];

/* The shapes for L layers (llm.c's fill_in_parameter_sizes). */
static void set_layers(int layers)
{
    const int64_t s[NUM_PARAMETER_TENSORS][3] = {
        {V, C, 0},      {MAX_T, C, 0},      {layers, C, 0},        {layers, C, 0},
        {layers, 3 * C, C}, {layers, 3 * C, 0}, {layers, C, C},    {layers, C, 0},
        {layers, C, 0}, {layers, C, 0},     {layers, 4 * C, C},    {layers, 4 * C, 0},
        {layers, C, 4 * C}, {layers, C, 0}, {C, 0, 0},             {C, 0, 0}};
    L = layers;
    memcpy(tensor_shapes, s, sizeof(s));
}

static size_t tensor_numel(int i)
{
    size_t n = 1;
    for (int k = 0; k < 3 && tensor_shapes[i][k] > 0; k++)
        n *= (size_t)tensor_shapes[i][k];
    return n;
}

static int tensor_ndim(int i)
{
    int k = 0;
    while (k < 3 && tensor_shapes[i][k] > 0)
        k++;
    return k;
}

/* The elements of one layer (one row of the first dimension) of stacked tensor @p i. */
static size_t row_numel(int i)
{
    return tensor_numel(i) / (size_t)tensor_shapes[i][0];
}

/* The 16 pointers of @p p, in tensor order. */
static void tensor_members(ParameterTensors *p, float **ptrs[NUM_PARAMETER_TENSORS])
{
    float **m[NUM_PARAMETER_TENSORS] = {&p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb,
                                        &p->attprojw, &p->attprojb, &p->ln2w, &p->ln2b, &p->fcw, &p->fcb,
                                        &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb};
    memcpy(ptrs, m, sizeof(m));
}

/* llm.c's point_parameters: consecutive tensors in one block. */
static void point_parameters(ParameterTensors *p, float *memory)
{
    float **ptrs[NUM_PARAMETER_TENSORS];
    tensor_members(p, ptrs);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        *ptrs[i] = memory;
        memory += tensor_numel(i);
    }
}

static void point_tensors_at(ParameterTensors *p, float *const *at)
{
    float **ptrs[NUM_PARAMETER_TENSORS];
    tensor_members(p, ptrs);
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++)
        *ptrs[i] = at[i];
}

/* One layer's weights, or gradients: row l of each stacked tensor. */
typedef struct {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} LayerTensors;

static void layer_members(LayerTensors *t, float **ptrs[NUM_STACKED])
{
    float **m[NUM_STACKED] = {&t->ln1w, &t->ln1b, &t->qkvw, &t->qkvb, &t->attprojw, &t->attprojb,
                              &t->ln2w, &t->ln2b, &t->fcw, &t->fcb, &t->fcprojw, &t->fcprojb};
    memcpy(ptrs, m, sizeof(m));
}

/* llm.c's pointer arithmetic: layer l of the stacked tensors of @p p (qkvw + l * 3C * C, ...). */
static void layer_of(const ParameterTensors *p, int l, LayerTensors *out)
{
    ParameterTensors copy = *p;
    float **src[NUM_PARAMETER_TENSORS], **dst[NUM_STACKED];
    tensor_members(&copy, src);
    layer_members(out, dst);
    for (int k = 0; k < NUM_STACKED; k++)
        *dst[k] = *src[FIRST_STACKED + k] + (size_t)l * row_numel(FIRST_STACKED + k);
}

/* Activations (and, with the same layout, their gradients), as llm.c's ActivationTensors. */
typedef struct {
    float *encoded, *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *preatt, *att, *attproj, *residual2, *ln2, *ln2_mean,
        *ln2_rstd, *fch, *fch_gelu, *fcproj, *residual3, *lnf, *lnf_mean, *lnf_rstd, *logits, *probs, *losses;
} ActivationTensors;

/* Points @p a into @p m (NULL: only counts); returns the floats they take. */
static size_t point_activations(ActivationTensors *a, float *m, int B)
{
    size_t bt = (size_t)B * T, total = 0;
    float **ptrs[] = {&a->encoded, &a->ln1, &a->ln1_mean, &a->ln1_rstd, &a->qkv, &a->atty, &a->preatt, &a->att,
                      &a->attproj, &a->residual2, &a->ln2, &a->ln2_mean, &a->ln2_rstd, &a->fch, &a->fch_gelu,
                      &a->fcproj, &a->residual3, &a->lnf, &a->lnf_mean, &a->lnf_rstd, &a->logits, &a->probs,
                      &a->losses};
    size_t sizes[] = {bt * C, L * bt * C, L * bt, L * bt, L * bt * 3 * C, L * bt * C, (size_t)L * B * NH * T * T,
                      (size_t)L * B * NH * T * T, L * bt * C, L * bt * C, L * bt * C, L * bt, L * bt,
                      L * bt * 4 * C, L * bt * 4 * C, L * bt * C, L * bt * C, bt * C, bt, bt, bt * V, bt * V, bt};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (m != NULL)
            *ptrs[i] = m + total;
        total += sizes[i];
    }
    return total;
}

/* ---- llm.c's CPU kernels ---- */

static void encoder_forward(float *out, const int *inp, const float *wte, const float *wpe, int B)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            const float *we = wte + (size_t)inp[b * T + t] * C, *pe = wpe + (size_t)t * C;
            for (int i = 0; i < C; i++)
                o[i] = we[i] + pe[i];
        }
}

static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int *inp, int B)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((size_t)b * T + t) * C;
            float *dwe = dwte + (size_t)inp[b * T + t] * C, *dpe = dwpe + (size_t)t * C;
            for (int i = 0; i < C; i++) {
                dwe[i] += d[i];
                dpe[i] += d[i];
            }
        }
}

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                              const float *bias, int BT)
{
    for (int r = 0; r < BT; r++) {
        const float *x = inp + (size_t)r * C;
        float m = 0, v = 0, s;
        for (int i = 0; i < C; i++)
            m += x[i];
        m /= C;
        for (int i = 0; i < C; i++)
            v += (x[i] - m) * (x[i] - m);
        v /= C;
        s = 1.0f / sqrtf(v + 1e-5f);
        for (int i = 0; i < C; i++)
            out[(size_t)r * C + i] = s * (x[i] - m) * weight[i] + bias[i];
        mean[r] = m;
        rstd[r] = s;
    }
}

static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                               const float *weight, const float *mean, const float *rstd, int BT)
{
    for (int r = 0; r < BT; r++) {
        const float *d = dout + (size_t)r * C, *x = inp + (size_t)r * C;
        float *dx = dinp + (size_t)r * C, dnorm_mean = 0, dnorm_norm_mean = 0;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mean[r]) * rstd[r], dnorm = weight[i] * d[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - mean[r]) * rstd[r], dnorm = weight[i] * d[i];
            dbias[i] += d[i];
            dweight[i] += norm * d[i];
            dx[i] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * rstd[r];
        }
    }
}

/* out (BT, OC) = inp (BT, IC) x weight (OC, IC)^T + bias (OC) */
static void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int BT, int IC,
                           int OC)
{
    for (int r = 0; r < BT; r++)
        for (int o = 0; o < OC; o++) {
            const float *x = inp + (size_t)r * IC, *w = weight + (size_t)o * IC;
            float s = bias != NULL ? bias[o] : 0.0f;
            for (int i = 0; i < IC; i++)
                s += x[i] * w[i];
            out[(size_t)r * OC + o] = s;
        }
}

static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, int BT, int IC, int OC)
{
    for (int r = 0; r < BT; r++)
        for (int o = 0; o < OC; o++) {
            const float *w = weight + (size_t)o * IC;
            float d = dout[(size_t)r * OC + o];
            for (int i = 0; i < IC; i++)
                dinp[(size_t)r * IC + i] += w[i] * d;
        }
    for (int o = 0; o < OC; o++)
        for (int r = 0; r < BT; r++) {
            const float *x = inp + (size_t)r * IC;
            float d = dout[(size_t)r * OC + o], *dw = dweight + (size_t)o * IC;
            if (dbias != NULL)
                dbias[o] += d;
            for (int i = 0; i < IC; i++)
                dw[i] += x[i] * d;
        }
}

/* inp (B, T, 3C) holds q, k, v; causal softmax attention per head into out (B, T, C). */
static void attention_forward(float *out, float *preatt, float *att, const float *inp, int B)
{
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                const float *q = inp + ((size_t)b * T + t) * 3 * C + h * hs;
                float *pre = preatt + (((size_t)b * NH + h) * T + t) * T, *a = att + (((size_t)b * NH + h) * T + t) * T;
                float *o = out + ((size_t)b * T + t) * C + h * hs, max = -INFINITY, sum = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *k = inp + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    float v = 0;
                    for (int i = 0; i < hs; i++)
                        v += q[i] * k[i];
                    v *= scale;
                    pre[t2] = v;
                    max = v > max ? v : max;
                }
                for (int t2 = 0; t2 <= t; t2++) {
                    a[t2] = expf(pre[t2] - max);
                    sum += a[t2];
                }
                for (int t2 = 0; t2 < T; t2++)
                    a[t2] = t2 <= t ? a[t2] / sum : 0.0f;
                for (int i = 0; i < hs; i++)
                    o[i] = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = inp + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++)
                        o[i] += a[t2] * v[i];
                }
            }
}

static void attention_backward(float *dinp, float *dpreatt, float *datt, const float *dout, const float *inp,
                               const float *att, int B)
{
    int hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                float *da = datt + (((size_t)b * NH + h) * T + t) * T;
                float *dpre = dpreatt + (((size_t)b * NH + h) * T + t) * T;
                const float *q = inp + ((size_t)b * T + t) * 3 * C + h * hs;
                float *dq = dinp + ((size_t)b * T + t) * 3 * C + h * hs;
                const float *d = dout + ((size_t)b * T + t) * C + h * hs;
                for (int t2 = 0; t2 <= t; t2++) {   /* through out = att . v */
                    const float *v = inp + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    float *dv = dinp + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        da[t2] += v[i] * d[i];
                        dv[i] += a[t2] * d[i];
                    }
                }
                for (int t2 = 0; t2 <= t; t2++)    /* through the softmax */
                    for (int t3 = 0; t3 <= t; t3++)
                        dpre[t3] += a[t2] * ((t2 == t3 ? 1.0f : 0.0f) - a[t3]) * da[t2];
                for (int t2 = 0; t2 <= t; t2++) {  /* through q . k */
                    const float *k = inp + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    float *dk = dinp + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += k[i] * dpre[t2] * scale;
                        dk[i] += q[i] * dpre[t2] * scale;
                    }
                }
            }
}

#define GELU_SCALING_FACTOR 0.7978845608f /* sqrt(2 / pi) */

static void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i], u = GELU_SCALING_FACTOR * (x + 0.044715f * x * x * x);
        float th = tanhf(u), sech2 = 1.0f - th * th;
        float local = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALING_FACTOR * (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += local * dout[i];
    }
}

static void residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

static void residual_backward(float *da, float *db, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        da[i] += dout[i];
        db[i] += dout[i];
    }
}

static void softmax_forward(float *probs, const float *logits, int BT)
{
    for (int r = 0; r < BT; r++) {
        const float *x = logits + (size_t)r * V;
        float *p = probs + (size_t)r * V, max = -INFINITY, sum = 0;
        for (int i = 0; i < V; i++)
            max = x[i] > max ? x[i] : max;
        for (int i = 0; i < V; i++) {
            p[i] = expf(x[i] - max);
            sum += p[i];
        }
        for (int i = 0; i < V; i++)
            p[i] /= sum;
    }
}

/* ---- how forward and backward reach one layer ---- */

/*
 * Without an engine (eng NULL) layer l is llm.c's pointer arithmetic into the
 * full stacked tensors p and g: the reference, and stages 0-2 where those are
 * the trainer's own (adopted) buffers. With one (LIBZERO, stage 3, --gather
 * layers) layer l is row l of each of the 12 stacked tensors, gathered as
 * slices for the layer's forward and again for its backward and released
 * after each, and the backward writes the layer's gradients into gradient
 * slices that are handed over as soon as the layer is done. Only one layer
 * of a stacked tensor is then held at a time (two while the engine
 * prefetches the next one), instead of all L.
 */
typedef struct {
    const ParameterTensors *p, *g;   /* eng NULL: the full stacked tensors */
    zero_engine_h eng;
    const zero_param_h *stacked;     /* the handles of the 12 stacked tensors, in tensor order */
    uint64_t gathered_peak;          /* the most working memory seen with a layer gathered in the forward */
} LayerAccess;

static void layer_slices(const LayerAccess *a, int l, zero_param_slice_t s[NUM_STACKED])
{
    for (int k = 0; k < NUM_STACKED; k++) {
        s[k].param = a->stacked[k];
        s[k].first = l;
        s[k].count = 1;
    }
}

/* Layer l's weights into *w and, in the backward (g != NULL), where its gradients go into *g. */
static zero_status_t layer_open(LayerAccess *a, int l, LayerTensors *w, LayerTensors *g)
{
    zero_param_slice_t s[NUM_STACKED];
    float **wm[NUM_STACKED], **gm[NUM_STACKED];
    zero_status_t status;
    if (a->eng == NULL) {
        layer_of(a->p, l, w);
        if (g != NULL)
            layer_of(a->g, l, g);
        return ZERO_OK;
    }
    /* LIBZERO (stage 3): the layer's 12 slices in one call, so their transfers run together.
     * After the first micro-batch the engine has this order and prefetches the next layer
     * while this one computes (stage3_prefetch_bucket_size: one layer's elements). */
    layer_slices(a, l, s);
    status = zero_gather_slices(a->eng, s, NUM_STACKED);
    if (status != ZERO_OK)
        return status;
    layer_members(w, wm);
    if (g != NULL)
        layer_members(g, gm);
    for (int k = 0; k < NUM_STACKED; k++) {
        *wm[k] = zero_param_slice_data(a->stacked[k], l, 1);   /* was params.qkvw + l * 3C * C, ... */
        if (g != NULL && (*gm[k] = zero_param_grad_slice(a->stacked[k], l, 1)) == NULL)
            return ZERO_ERR_STATE;   /* the reason is in zero_engine_last_error() */
    }
    if (g == NULL) {
        zero_engine_memory_t mem;
        status = zero_engine_memory(a->eng, &mem);
        if (status == ZERO_OK && mem.buffers > a->gathered_peak)
            a->gathered_peak = mem.buffers;
    }
    return status;
}

/* The layer's forward (backward) is done with its weights (and gradients). */
static zero_status_t layer_close(LayerAccess *a, int l, int backward)
{
    zero_param_slice_t s[NUM_STACKED];
    if (a->eng == NULL)
        return ZERO_OK;
    layer_slices(a, l, s);
    /* LIBZERO (stage 3): the layer's gradients are complete; each slice is reduced into its
     * owners' shards while the backward goes on to the layer below. */
    for (int k = NUM_STACKED - 1; backward && k >= 0; k--) {
        zero_status_t status = zero_grad_slice_ready(a->eng, a->stacked[k], l, 1);
        if (status != ZERO_OK)
            return status;
    }
    return zero_release_slices(a->eng, s, NUM_STACKED);
}

/* ---- forward and backward of a micro-batch (llm.c's gpt2_forward / gpt2_backward) ---- */

/* The mean loss over the B x T tokens into *loss_p. p holds the tensors that are not
 * stacked (wte, wpe, lnfw, lnfb); the layers come through @p acc. */
static zero_status_t forward(const ParameterTensors *p, LayerAccess *acc, ActivationTensors *a, const int *inputs,
                             const int *targets, int B, float *loss_p)
{
    int BT = B * T;
    size_t btc = (size_t)BT * C;
    float loss = 0;
    encoder_forward(a->encoded, inputs, p->wte, p->wpe, B);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * btc;
        float *ln1 = a->ln1 + l * btc, *qkv = a->qkv + l * btc * 3, *atty = a->atty + l * btc;
        float *preatt = a->preatt + (size_t)l * B * NH * T * T, *att = a->att + (size_t)l * B * NH * T * T;
        float *attproj = a->attproj + l * btc, *residual2 = a->residual2 + l * btc, *ln2 = a->ln2 + l * btc;
        float *fch = a->fch + l * btc * 4, *fch_gelu = a->fch_gelu + l * btc * 4, *fcproj = a->fcproj + l * btc;
        LayerTensors w;
        zero_status_t status = layer_open(acc, l, &w, NULL);
        if (status != ZERO_OK)
            return status;
        layernorm_forward(ln1, a->ln1_mean + l * BT, a->ln1_rstd + l * BT, residual, w.ln1w, w.ln1b, BT);
        matmul_forward(qkv, ln1, w.qkvw, w.qkvb, BT, C, 3 * C);
        attention_forward(atty, preatt, att, qkv, B);
        matmul_forward(attproj, atty, w.attprojw, w.attprojb, BT, C, C);
        residual_forward(residual2, residual, attproj, btc);
        layernorm_forward(ln2, a->ln2_mean + l * BT, a->ln2_rstd + l * BT, residual2, w.ln2w, w.ln2b, BT);
        matmul_forward(fch, ln2, w.fcw, w.fcb, BT, C, 4 * C);
        gelu_forward(fch_gelu, fch, btc * 4);
        matmul_forward(fcproj, fch_gelu, w.fcprojw, w.fcprojb, BT, 4 * C, C);
        residual_forward(a->residual3 + l * btc, residual2, fcproj, btc);
        status = layer_close(acc, l, 0);
        if (status != ZERO_OK)
            return status;
    }
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->residual3 + (size_t)(L - 1) * btc, p->lnfw, p->lnfb, BT);
    matmul_forward(a->logits, a->lnf, p->wte, NULL, BT, C, V);   /* the output layer shares wte */
    softmax_forward(a->probs, a->logits, BT);
    for (int r = 0; r < BT; r++) {
        a->losses[r] = -logf(a->probs[(size_t)r * V + targets[r]]);
        loss += a->losses[r];
    }
    *loss_p = loss / (float)BT;
    return ZERO_OK;
}

/* Gradients of (dloss x the sum of the token losses) are ADDED into g (the tensors
 * that are not stacked; the layers' through @p acc); da must be zero. */
static zero_status_t backward(const ParameterTensors *p, const ParameterTensors *g, LayerAccess *acc,
                              const ActivationTensors *a, ActivationTensors *da, const int *inputs,
                              const int *targets, int B, float dloss)
{
    int BT = B * T;
    size_t btc = (size_t)BT * C;
    for (int r = 0; r < BT; r++)   /* cross-entropy through the softmax */
        for (int i = 0; i < V; i++)
            da->logits[(size_t)r * V + i] += (a->probs[(size_t)r * V + i] - (i == targets[r] ? 1.0f : 0.0f)) * dloss;
    matmul_backward(da->lnf, g->wte, NULL, da->logits, a->lnf, p->wte, BT, C, V);
    layernorm_backward(da->residual3 + (size_t)(L - 1) * btc, g->lnfw, g->lnfb, da->lnf,
                       a->residual3 + (size_t)(L - 1) * btc, p->lnfw, a->lnf_mean, a->lnf_rstd, BT);
    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * btc;
        float *dresidual = l == 0 ? da->encoded : da->residual3 + (size_t)(l - 1) * btc;
        size_t att_off = (size_t)l * B * NH * T * T;
        LayerTensors w, dw;
        zero_status_t status = layer_open(acc, l, &w, &dw);
        if (status != ZERO_OK)
            return status;
        residual_backward(da->residual2 + l * btc, da->fcproj + l * btc, da->residual3 + l * btc, btc);
        matmul_backward(da->fch_gelu + l * btc * 4, dw.fcprojw, dw.fcprojb, da->fcproj + l * btc,
                        a->fch_gelu + l * btc * 4, w.fcprojw, BT, 4 * C, C);
        gelu_backward(da->fch + l * btc * 4, a->fch + l * btc * 4, da->fch_gelu + l * btc * 4, btc * 4);
        matmul_backward(da->ln2 + l * btc, dw.fcw, dw.fcb, da->fch + l * btc * 4, a->ln2 + l * btc, w.fcw, BT, C,
                        4 * C);
        layernorm_backward(da->residual2 + l * btc, dw.ln2w, dw.ln2b, da->ln2 + l * btc, a->residual2 + l * btc,
                           w.ln2w, a->ln2_mean + l * BT, a->ln2_rstd + l * BT, BT);
        residual_backward(dresidual, da->attproj + l * btc, da->residual2 + l * btc, btc);
        matmul_backward(da->atty + l * btc, dw.attprojw, dw.attprojb, da->attproj + l * btc, a->atty + l * btc,
                        w.attprojw, BT, C, C);
        attention_backward(da->qkv + l * btc * 3, da->preatt + att_off, da->att + att_off, da->atty + l * btc,
                           a->qkv + l * btc * 3, a->att + att_off, B);
        matmul_backward(da->ln1 + l * btc, dw.qkvw, dw.qkvb, da->qkv + l * btc * 3, a->ln1 + l * btc, w.qkvw, BT,
                        C, 3 * C);
        layernorm_backward(dresidual, dw.ln1w, dw.ln1b, da->ln1 + l * btc, residual, w.ln1w,
                           a->ln1_mean + l * BT, a->ln1_rstd + l * BT, BT);
        status = layer_close(acc, l, 1);
        if (status != ZERO_OK)
            return status;
    }
    encoder_backward(g->wte, g->wpe, da->encoded, inputs, B);
    return ZERO_OK;
}

/* ---- data and initial values ---- */

static uint64_t mix(uint64_t key)
{
    key += 0x9e3779b97f4a7c15ULL;
    key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL;
    key = (key ^ (key >> 27)) * 0x94d049bb133111ebULL;
    return key ^ (key >> 31);
}

/* Sequence @p i: T + 1 tokens where each follows the one before by a fixed
 * rule three times in four (learnable), else is random. */
static void sequence(uint64_t i, int *tokens)
{
    tokens[0] = (int)(mix(i) % V);
    for (int t = 1; t <= T; t++) {
        uint64_t r = mix(i * 1000003ULL + (uint64_t)t);
        tokens[t] = r % 4 != 0 ? (tokens[t - 1] * 5 + 3) % V : (int)((r >> 8) % V);
    }
}

/* GPT-2's initial values (N(0, 0.02)-like, layer norms 1, biases 0), a function of the element alone. */
static void init_params(float *memory)
{
    size_t at = 0;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        int is_ln_weight = i == 2 || i == 8 || i == 14, is_bias = i == 3 || i == 5 || i == 7 || i == 9 ||
                                                                 i == 11 || i == 13 || i == 15;
        for (size_t k = 0; k < tensor_numel(i); k++, at++)
            memory[at] = is_ln_weight ? 1.0f
                         : is_bias    ? 0.0f
                                      : 0.02f * 1.7320508f * (float)((double)(mix(42 + at) >> 11) / 4503599627370496.0 - 1.0);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The micro-batch @p n indices' inputs and targets. */
static void load_batch(const uint64_t *idx, size_t n, int *inputs, int *targets)
{
    for (size_t b = 0; b < n; b++) {
        int tok[T + 1];
        sequence(idx[b], tok);
        memcpy(inputs + b * T, tok, T * sizeof(int));
        memcpy(targets + b * T, tok + 1, T * sizeof(int));
    }
}

/* ---- the reference: llm.c's AdamW on one process over the same global batches ---- */

static int run_reference(const char *config, int world, long steps)
{
    zero_config_t *cfg = NULL;
    zero_sampler_h *samplers = NULL;
    size_t num_parameters = 0, act_size;
    float *params = NULL, *grads = NULL, *m = NULL, *v = NULL, *acts_memory = NULL, *dacts_memory = NULL;
    int *inputs = NULL, *targets = NULL, rc = 1;
    uint64_t *idx = NULL, B, gas;
    ParameterTensors p, g;
    ActivationTensors a, da;

    if (zero_config_parse_file(config, (uint32_t)world, &cfg, NULL) != ZERO_OK)
        return 1;
    B = cfg->train_micro_batch_size_per_gpu;
    gas = cfg->gradient_accumulation_steps;
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++)
        num_parameters += tensor_numel(i);
    act_size = point_activations(&a, NULL, (int)B);
    params = calloc(num_parameters, sizeof(float));
    grads = calloc(num_parameters, sizeof(float));
    m = calloc(num_parameters, sizeof(float));
    v = calloc(num_parameters, sizeof(float));
    acts_memory = calloc(act_size, sizeof(float));
    dacts_memory = calloc(act_size, sizeof(float));
    inputs = malloc(B * T * sizeof(int));
    targets = malloc(B * T * sizeof(int));
    idx = malloc(B * sizeof(*idx));
    samplers = calloc((size_t)world, sizeof(*samplers));
    if (!params || !grads || !m || !v || !acts_memory || !dacts_memory || !inputs || !targets || !idx || !samplers)
        goto out;
    point_parameters(&p, params);
    point_parameters(&g, grads);
    point_activations(&a, acts_memory, (int)B);
    point_activations(&da, dacts_memory, (int)B);
    init_params(params);
    for (int r = 0; r < world; r++) {
        zero_sampler_params_t sp = {.num_samples = NUM_SEQUENCES, .batch_size = B, .world_size = world, .rank = r,
                                    .seed = 1, .shuffle = 1, .drop_last = 1};
        if (zero_sampler_create(&sp, &samplers[r]) != ZERO_OK)
            goto out;
    }
    for (long step = 1; step <= steps; step++) {
        const zero_config_optimizer_t *o = &cfg->optimizer;
        float loss = 0, beta1 = (float)o->betas[0], beta2 = (float)o->betas[1], lr = (float)o->lr;
        memset(grads, 0, num_parameters * sizeof(float));
        for (uint64_t mi = 0; mi < gas; mi++)
            for (int r = 0; r < world; r++) {
                size_t n;
                if (zero_sampler_next(samplers[r], idx, &n, NULL, NULL) != ZERO_OK)
                    goto out;
                load_batch(idx, n, inputs, targets);
                LayerAccess acc = {.p = &p, .g = &g};
                float mb_loss;
                (void)forward(&p, &acc, &a, inputs, targets, (int)n, &mb_loss);   /* no engine: cannot fail */
                loss += mb_loss;
                memset(dacts_memory, 0, act_size * sizeof(float));
                backward(&p, &g, &acc, &a, &da, inputs, targets, (int)n,
                         1.0f / ((float)(n * T) * (float)(gas * world)));
            }
        for (size_t i = 0; i < num_parameters; i++) {   /* llm.c's gpt2_update */
            float gi = grads[i];
            float mi = beta1 * m[i] + (1.0f - beta1) * gi;
            float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
            float m_hat = mi / (1.0f - powf(beta1, (float)step));
            float v_hat = vi / (1.0f - powf(beta2, (float)step));
            m[i] = mi;
            v[i] = vi;
            params[i] -= lr * (m_hat / (sqrtf(v_hat) + (float)o->eps) + (float)o->weight_decay * params[i]);
        }
        printf("step=%ld train_loss=%.8f\n", step, loss / (float)(gas * (uint64_t)world));
    }
    rc = 0;
out:
    for (int r = 0; samplers != NULL && r < world; r++)
        zero_sampler_destroy(samplers[r]);
    free(samplers);
    free(idx);
    free(inputs);
    free(targets);
    free(acts_memory);
    free(dacts_memory);
    free(params);
    free(grads);
    free(m);
    free(v);
    zero_config_destroy(cfg);
    return rc;
}

/* ---- the port ---- */

#define CHECK(call)                                                                                  \
    do {                                                                                             \
        zero_status_t s_ = (call);                                                                   \
        if (s_ != ZERO_OK) {                                                                         \
            fprintf(stderr, "train_flat: %s: %s (%s)\n", #call, zero_status_string(s_),              \
                    eng ? zero_engine_last_error(eng) : "");                                         \
            goto out;                                                                                \
        }                                                                                            \
    } while (0)

enum buffers_mode { BUFFERS_ADOPT, BUFFERS_VIEWS, BUFFERS_ENGINE };

int main(int argc, char **argv)
{
    const char *config = NULL, *mode_name = "adopt", *gather_name = "layers";
    long steps = 100;
    int rc = 1, reference = 0, ref_world = 1, layers = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reference") == 0)
            reference = 1;
        else if (i + 1 < argc && strcmp(argv[i], "--config") == 0)
            config = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--steps") == 0)
            steps = atol(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--buffers") == 0)
            mode_name = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--gather") == 0)
            gather_name = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--world") == 0)
            ref_world = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--layers") == 0)
            layers = atoi(argv[++i]);
    }
    enum buffers_mode mode = strcmp(mode_name, "views") == 0    ? BUFFERS_VIEWS
                             : strcmp(mode_name, "engine") == 0 ? BUFFERS_ENGINE
                                                                : BUFFERS_ADOPT;
    int by_layer = strcmp(gather_name, "layers") == 0;
    if (config == NULL || steps < 1 || ref_world < 1 || layers < 1 || layers > 64 ||
        (strcmp(mode_name, "adopt") != 0 && mode != BUFFERS_VIEWS && mode != BUFFERS_ENGINE) ||
        (!by_layer && strcmp(gather_name, "whole") != 0)) {
        fprintf(stderr, "usage: train_flat --config ds_config.json [--steps N] [--layers L] "
                        "[--buffers adopt|views|engine] [--gather layers|whole]\n"
                        "       train_flat --config ds_config.json --reference --world W [--steps N] [--layers L]\n");
        return 2;
    }
    set_layers(layers);
    if (reference)
        return run_reference(config, ref_world, steps);

    zero_comm_h comm = NULL;
    zero_engine_h eng = NULL;
    zero_sampler_h sampler = NULL;
    zero_param_h handles[NUM_PARAMETER_TENSORS], whole[NUM_PARAMETER_TENSORS];
    size_t num_parameters = 0, capacity = 0, act_size, offsets[NUM_PARAMETER_TENSORS], num_whole = 0;
    size_t layer_elems = 0, unstacked_elems = 0;
    float *params_memory = NULL, *grads_memory = NULL, *acts_memory = NULL, *dacts_memory = NULL;
    int *inputs = NULL, *targets = NULL, shared = 0;
    uint64_t *idx = NULL;
    double t_steps = 0;
    ParameterTensors p, g;
    ActivationTensors a, da;
    LayerAccess acc = {.p = &p, .g = &g};
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        offsets[i] = num_parameters;
        num_parameters += tensor_numel(i);
        if (i >= FIRST_STACKED && i < FIRST_STACKED + NUM_STACKED)
            layer_elems += row_numel(i);
        else
            unstacked_elems += tensor_numel(i);
    }

    /* LIBZERO 1: a communicator (its memory lets collectives read peers' buffers in
     * place on one node) and the engine, from the DeepSpeed-style config. */
    CHECK(zero_comm_create(NULL, &comm));
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH | ZERO_ENGINE_PARAM_FIELD_COMM,
                               .config_path = config, .comm = comm};
    CHECK(zero_engine_create(&ep, &eng));
    const zero_config_t *zc = zero_engine_config(eng);
    int rank = zero_comm_rank(comm), world = zero_comm_size(comm), stage = (int)zc->zero_optimization.stage;
    uint64_t B = zc->train_micro_batch_size_per_gpu, gas = zc->gradient_accumulation_steps;
    if (stage == 3 && mode != BUFFERS_ENGINE) {
        /* stage 3 shards the weights themselves: the engine holds them, gathered around their use */
        mode = BUFFERS_ENGINE;
        mode_name = "engine";
    }
    if (mode != BUFFERS_ENGINE)
        gather_name = "none";   /* the trainer's own buffers hold every weight */

    /* The trainer's memory. LIBZERO 2: room for the partition's padding (at most 64 x W - 1
     * elements) and, with several ranks, from the communicator. */
    if (mode != BUFFERS_ENGINE) {
        CHECK(zero_engine_flat_capacity(eng, num_parameters, &capacity));
        shared = world > 1;
        if (shared) {
            CHECK(zero_comm_mem_alloc(comm, capacity * sizeof(float), (void **)&params_memory));
            CHECK(zero_comm_mem_alloc(comm, capacity * sizeof(float), (void **)&grads_memory));
        } else {
            params_memory = aligned_alloc(64, (capacity * sizeof(float) + 63) / 64 * 64);
            grads_memory = aligned_alloc(64, (capacity * sizeof(float) + 63) / 64 * 64);
        }
        if (params_memory == NULL || grads_memory == NULL)
            goto out;
        point_parameters(&p, params_memory);
        point_parameters(&g, grads_memory);
        memset(grads_memory, 0, capacity * sizeof(float));
        init_params(params_memory); /* every rank computes the same; rank 0's is used */
    } else {
        params_memory = malloc(num_parameters * sizeof(float));   /* the initial values, until setup */
        if (params_memory == NULL)
            goto out;
        init_params(params_memory);
    }

    /* LIBZERO 3: the engine takes the two buffers as its own flat spaces (no copy) ... */
    if (mode == BUFFERS_ADOPT) {
        zero_flat_buffers_t fb = {.field_mask = ZERO_FLAT_BUFFERS_FIELD_CAPACITY, .dtype = ZERO_FP32,
                                  .weights = params_memory, .grads = grads_memory, .numel = num_parameters,
                                  .capacity = capacity};
        CHECK(zero_engine_adopt_flat(eng, &fb));
    }
    /* ... and each stacked tensor is registered at its offset (views and engine buffers: its own way) */
    for (int i = 0; i < NUM_PARAMETER_TENSORS; i++) {
        zero_param_desc_t d = {.field_mask = 0, .name = tensor_names[i], .dtype = ZERO_FP32, .ndim = tensor_ndim(i),
                               .shape = {tensor_shapes[i][0], tensor_shapes[i][1], tensor_shapes[i][2]}};
        if (mode == BUFFERS_ADOPT) {
            d.field_mask = ZERO_PARAM_FIELD_FLAT_OFFSET;
            d.flat_offset = offsets[i];
        } else if (mode == BUFFERS_VIEWS) {
            d.field_mask = ZERO_PARAM_FIELD_VIEW;
            d.view_data = params_memory + offsets[i];
            d.view_grad = grads_memory + offsets[i];
        } else {
            d.field_mask = ZERO_PARAM_FIELD_INIT_VALUES;
            d.init_values = params_memory + offsets[i];
        }
        CHECK(zero_param_register(eng, &d, &handles[i]));
    }
    /* LIBZERO 4: partition, optimizer state; rank 0's weights are broadcast. */
    CHECK(zero_engine_setup(eng));
    if (mode == BUFFERS_ENGINE) {
        free(params_memory);   /* the engine holds the weights now */
        params_memory = NULL;
        /* Gathered whole: every tensor (--gather whole), or only those not stacked
         * (wte, wpe, lnfw, lnfb); the layers then come one at a time as slices. */
        for (int i = 0; i < NUM_PARAMETER_TENSORS; i++)
            if (!by_layer || i < FIRST_STACKED || i >= FIRST_STACKED + NUM_STACKED)
                whole[num_whole++] = handles[i];
        if (by_layer) {
            acc.eng = eng;
            acc.stacked = handles + FIRST_STACKED;
        }
    }

    act_size = point_activations(&a, NULL, (int)B);
    acts_memory = calloc(act_size, sizeof(float));
    dacts_memory = calloc(act_size, sizeof(float));
    inputs = malloc(B * T * sizeof(int));
    targets = malloc(B * T * sizeof(int));
    idx = malloc(B * sizeof(*idx));
    if (acts_memory == NULL || dacts_memory == NULL || inputs == NULL || targets == NULL || idx == NULL)
        goto out;
    point_activations(&a, acts_memory, (int)B);
    point_activations(&da, dacts_memory, (int)B);
    /* The distributed sampler hands each rank its share of every global batch. */
    zero_sampler_params_t sp = {.num_samples = NUM_SEQUENCES, .batch_size = B, .world_size = world, .rank = rank,
                                .seed = 1, .shuffle = 1, .drop_last = 1};
    CHECK(zero_sampler_create(&sp, &sampler));

    for (long step = 1; step <= steps; step++) {
        float loss = 0, global;
        double t0 = now_s();
        for (uint64_t mi = 0; mi < gas; mi++) {
            size_t n;
            float seed, mb_loss;
            CHECK(zero_sampler_next(sampler, idx, &n, NULL, NULL));
            load_batch(idx, n, inputs, targets);
            if (mode == BUFFERS_ENGINE) {   /* stage 3: the weights used whole are gathered (a no-op at stages 0-2) */
                float *at[NUM_PARAMETER_TENSORS] = {NULL};
                CHECK(zero_gather(eng, whole, num_whole));
                for (int i = 0; i < NUM_PARAMETER_TENSORS; i++)
                    if (!by_layer || i < FIRST_STACKED || i >= FIRST_STACKED + NUM_STACKED)
                        at[i] = zero_param_data(handles[i]);
                point_tensors_at(&p, at);
            }
            CHECK(forward(&p, &acc, &a, inputs, targets, (int)n, &mb_loss));
            loss += mb_loss;
            /* LIBZERO 5: the backward is bracketed; seed = 1 / (micro-batches per step)
             * x loss scale. The engine zeroes the weights' gradients after each step;
             * the activations' gradients are the trainer's to clear. */
            CHECK(zero_backward_begin(eng, &seed));
            if (mode == BUFFERS_ENGINE) {
                float *at[NUM_PARAMETER_TENSORS] = {NULL};
                for (int i = 0; i < NUM_PARAMETER_TENSORS; i++)
                    if (!by_layer || i < FIRST_STACKED || i >= FIRST_STACKED + NUM_STACKED)
                        at[i] = zero_param_grad(handles[i]);
                point_tensors_at(&g, at);
            }
            memset(dacts_memory, 0, act_size * sizeof(float));
            CHECK(backward(&p, &g, &acc, &a, &da, inputs, targets, (int)n, seed / (float)(n * T)));
            CHECK(zero_backward_end(eng));
            if (mode == BUFFERS_ENGINE)
                CHECK(zero_release(eng, whole, num_whole));
            /* LIBZERO 6: replaces gpt2_update() and gpt2_zero_grad(). */
            CHECK(zero_step(eng, NULL));
        }
        if (step > 1)
            t_steps += now_s() - t0;
        CHECK(zero_comm_allreduce(comm, &loss, &global, 1, ZERO_FP32, ZERO_COMM_SUM, ZERO_MEM_HOST));
        if (rank == 0)
            printf("step=%ld train_loss=%.8f\n", step, global / (float)(gas * (uint64_t)world));
    }
    {
        zero_engine_memory_t mem;
        double trainer = mode == BUFFERS_ENGINE ? 0.0 : 2.0 * (double)capacity * sizeof(float);
        CHECK(zero_engine_memory(eng, &mem));
        if (rank == 0) {
            printf("memory: buffers=%s gather=%s stage=%d world=%d layers=%d parameters=%zu engine_bytes=%llu "
                   "engine_bytes_per_param=%.3f trainer_bytes_per_param=%.3f buffers_peak=%llu gathered_peak=%llu "
                   "layer_bytes=%zu unstacked_bytes=%zu\n",
                   mode_name, gather_name, stage, world, L, num_parameters, (unsigned long long)mem.total,
                   (double)mem.total / (double)num_parameters, trainer / (double)num_parameters,
                   (unsigned long long)mem.buffers_peak, (unsigned long long)acc.gathered_peak,
                   layer_elems * sizeof(float), unstacked_elems * sizeof(float));
            if (steps > 1)
                printf("timing: buffers=%s gather=%s step_ms=%.3f\n", mode_name, gather_name,
                       1e3 * t_steps / (double)(steps - 1));
        }
    }
    rc = 0;
out:
    zero_sampler_destroy(sampler);
    zero_engine_destroy(eng); /* LIBZERO 7: collective; the buffers stay the trainer's */
    if (shared) {
        zero_comm_mem_free(comm, params_memory);
        zero_comm_mem_free(comm, grads_memory);
    } else {
        free(params_memory);
        free(grads_memory);
    }
    zero_comm_destroy(comm);
    free(idx);
    free(inputs);
    free(targets);
    free(acts_memory);
    free(dacts_memory);
    return rc;
}
