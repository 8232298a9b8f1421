#include "gpt.h"
#include "gpt_ops.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Activations of one block, kept from forward for backward. */
typedef struct block_acts {
    float *in;        /* [B,T,C] residual entering the block */
    float *ln1;       /* [B,T,C] */
    float *ln1_mean;  /* [B,T] */
    float *ln1_rstd;  /* [B,T] */
    float *qkv;       /* [B,T,3C] */
    float *att;       /* [B,NH,T,T] softmax probabilities (causal) */
    float *y;         /* [B,T,C] attention output before projection */
    float *res2;      /* [B,T,C] residual after attention */
    float *ln2;
    float *ln2_mean;
    float *ln2_rstd;
    float *fc;        /* [B,T,4C] before GELU */
    float *gelu;      /* [B,T,4C] */
} block_acts_t;

struct gpt_model {
    gpt_config_t cfg;
    int max_b, max_t;   /* allocation limits */
    int b, t;           /* shape of the last forward */
    block_acts_t *blocks;
    float *res_out;     /* [B,T,C] residual after the last block */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *probs;       /* [B,T,V] */
    int *tokens, *targets;
    /* backward scratch */
    float *d_res;       /* [B,T,C] gradient flowing along the residual */
    float *d_a, *d_b;   /* [B,T,4C] general scratch */
    float *d_qkv;       /* [B,T,3C] */
    float *d_att;       /* [B,NH,T,T] */
    float *d_logits;    /* [B,T,V] */
    float *buffer;
};

void gpt_tensor_info(const gpt_config_t *cfg, int layer, int tensor, char *name, size_t name_size,
                     int *ndim_p, long shape[2])
{
    static const char *const global_names[] = {"wte", "wpe", "ln_f.weight", "ln_f.bias"};
    static const char *const block_names[] = {
        "ln_1.weight", "ln_1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "ln_2.weight", "ln_2.bias", "mlp.fc.weight", "mlp.fc.bias",
        "mlp.proj.weight", "mlp.proj.bias"};
    long C = cfg->channels;
    if (layer < 0) {
        long shapes[][2] = {{cfg->vocab, C}, {cfg->context, C}, {C, 0}, {C, 0}};
        snprintf(name, name_size, "%s", global_names[tensor]);
        shape[0] = shapes[tensor][0];
        shape[1] = shapes[tensor][1];
    } else {
        long shapes[][2] = {{C, 0}, {C, 0}, {3 * C, C}, {3 * C, 0}, {C, C}, {C, 0},
                            {C, 0}, {C, 0}, {4 * C, C}, {4 * C, 0}, {C, 4 * C}, {C, 0}};
        snprintf(name, name_size, "h.%d.%s", layer, block_names[tensor]);
        shape[0] = shapes[tensor][0];
        shape[1] = shapes[tensor][1];
    }
    *ndim_p = shape[1] ? 2 : 1;
}

size_t gpt_tensor_numel(const gpt_config_t *cfg, int layer, int tensor)
{
    char name[64];
    int ndim;
    long shape[2];
    gpt_tensor_info(cfg, layer, tensor, name, sizeof(name), &ndim, shape);
    return (size_t)shape[0] * (size_t)(ndim == 2 ? shape[1] : 1);
}

size_t gpt_num_parameters(const gpt_config_t *cfg)
{
    size_t n = 0;
    for (int t = 0; t < GPT_NUM_GLOBAL; t++)
        n += gpt_tensor_numel(cfg, -1, t);
    for (int l = 0; l < cfg->layers; l++)
        for (int t = 0; t < GPT_NUM_BLOCK; t++)
            n += gpt_tensor_numel(cfg, l, t);
    return n;
}

/* splitmix64: a counter-based generator, so any element's initial value is independent of
 * how the tensor is split across ranks. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static float normal_at(uint64_t key, size_t i)
{
    uint64_t a = mix64(key ^ (2 * (uint64_t)i)), b = mix64(key ^ (2 * (uint64_t)i + 1));
    double u1 = ((double)(a >> 11) + 1.0) / 9007199254740993.0;   /* (0,1] */
    double u2 = (double)(b >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void gpt_init_range(const gpt_config_t *cfg, int layer, int tensor, unsigned long long seed, size_t offset,
                    size_t count, float *out)
{
    uint64_t key = mix64(seed ^ mix64((uint64_t)(layer + 1) * 131 + (uint64_t)tensor));
    int is_bias = 0, is_ln_w = 0;
    float std = 0.02f;
    if (layer < 0) {
        is_ln_w = tensor == GPT_LNF_W;
        is_bias = tensor == GPT_LNF_B;
    } else {
        is_ln_w = tensor == GPT_LN1_W || tensor == GPT_LN2_W;
        is_bias = tensor == GPT_LN1_B || tensor == GPT_LN2_B || tensor == GPT_QKV_B ||
                  tensor == GPT_PROJ_B || tensor == GPT_FC_B || tensor == GPT_FCPROJ_B;
        if (tensor == GPT_PROJ_W || tensor == GPT_FCPROJ_W)
            std = 0.02f / sqrtf(2.0f * (float)cfg->layers);
    }
    for (size_t i = 0; i < count; i++)
        out[i] = is_ln_w ? 1.0f : is_bias ? 0.0f : std * normal_at(key, offset + i);
}

void gpt_init_tensor(const gpt_config_t *cfg, int layer, int tensor, unsigned long long seed, float *out)
{
    gpt_init_range(cfg, layer, tensor, seed, 0, gpt_tensor_numel(cfg, layer, tensor), out);
}

gpt_model_t *gpt_create(const gpt_config_t *cfg, int batch, int seq_len)
{
    gpt_model_t *m;
    size_t B = (size_t)batch, T = (size_t)seq_len, C = (size_t)cfg->channels, V = (size_t)cfg->vocab;
    size_t NH = (size_t)cfg->heads, L = (size_t)cfg->layers, BT = B * T;
    size_t per_block = BT * C * 6 + BT * 4 + BT * 3 * C + B * NH * T * T + BT * 8 * C;
    size_t total = L * per_block + BT * C * 2 + BT * 2 + BT * V * 2 + BT * C + BT * 4 * C * 2 +
                   BT * 3 * C + B * NH * T * T;
    float *p;

    if (cfg->vocab < 2 || cfg->channels < 1 || cfg->layers < 1 || cfg->heads < 1 ||
        cfg->channels % cfg->heads != 0 || seq_len < 1 || seq_len > cfg->context || batch < 1) {
        fprintf(stderr, "gpt: bad model shape (V=%d T=%d C=%d L=%d NH=%d, batch %d x %d)\n", cfg->vocab,
                cfg->context, cfg->channels, cfg->layers, cfg->heads, batch, seq_len);
        return NULL;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->cfg = *cfg;
    m->max_b = batch;
    m->max_t = seq_len;
    m->blocks = calloc(L, sizeof(*m->blocks));
    m->buffer = malloc(total * sizeof(float));
    m->tokens = malloc(BT * sizeof(int));
    m->targets = malloc(BT * sizeof(int));
    if (m->blocks == NULL || m->buffer == NULL || m->tokens == NULL || m->targets == NULL) {
        fprintf(stderr, "gpt: out of memory for %zu activations\n", total);
        gpt_destroy(m);
        return NULL;
    }
    p = m->buffer;
#define TAKE(n) (p += (n), p - (n))
    for (size_t l = 0; l < L; l++) {
        block_acts_t *a = &m->blocks[l];
        a->in = TAKE(BT * C);
        a->ln1 = TAKE(BT * C);
        a->ln1_mean = TAKE(BT);
        a->ln1_rstd = TAKE(BT);
        a->qkv = TAKE(BT * 3 * C);
        a->att = TAKE(B * NH * T * T);
        a->y = TAKE(BT * C);
        a->res2 = TAKE(BT * C);
        a->ln2 = TAKE(BT * C);
        a->ln2_mean = TAKE(BT);
        a->ln2_rstd = TAKE(BT);
        a->fc = TAKE(BT * 4 * C);
        a->gelu = TAKE(BT * 4 * C);
    }
    m->res_out = TAKE(BT * C);
    m->lnf = TAKE(BT * C);
    m->lnf_mean = TAKE(BT);
    m->lnf_rstd = TAKE(BT);
    m->probs = TAKE(BT * V);
    m->d_logits = TAKE(BT * V);
    m->d_res = TAKE(BT * C);
    m->d_a = TAKE(BT * 4 * C);
    m->d_b = TAKE(BT * 4 * C);
    m->d_qkv = TAKE(BT * 3 * C);
    m->d_att = TAKE(B * NH * T * T);
#undef TAKE
    return m;
}

void gpt_destroy(gpt_model_t *m)
{
    if (m == NULL)
        return;
    free(m->buffer);
    free(m->blocks);
    free(m->tokens);
    free(m->targets);
    free(m);
}

/* ---- building blocks ---- */

void gpt_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
                              const float *w, const float *b, size_t rows, size_t C)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
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
}

/* dx += ..., dw += ..., db += ... for out = LN(x) */
void gpt_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *in,
                               const float *w, const float *mean, const float *rstd, size_t rows, size_t C)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
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
    /* Parameter gradients: one pass over rows per channel block, no atomics. */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < C; i++) {
        float gw = 0.0f, gb = 0.0f;
        for (size_t r = 0; r < rows; r++) {
            float xhat = (in[r * C + i] - mean[r]) * rstd[r];
            gw += dout[r * C + i] * xhat;
            gb += dout[r * C + i];
        }
        dw[i] += gw;
        db[i] += gb;
    }
}

/* out[rows, OC] = in[rows, IC] @ W[OC, IC]^T + bias[OC] (bias may be NULL) */
void gpt_matmul_forward(float *out, const float *in, const float *W, const float *bias,
                           size_t rows, size_t IC, size_t OC)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *x = in + r * IC;
        float *o = out + r * OC;
        for (size_t c = 0; c < OC; c++) {
            const float *wr = W + c * IC;
            float sum = bias ? bias[c] : 0.0f;
#pragma omp simd reduction(+ : sum)
            for (size_t i = 0; i < IC; i++)
                sum += x[i] * wr[i];
            o[c] = sum;
        }
    }
}

/* din += dout @ W; dW += dout^T @ in; dbias += sum_rows dout */
void gpt_matmul_backward(float *din, float *dW, float *dbias, const float *dout, const float *in,
                            const float *W, size_t rows, size_t IC, size_t OC)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *d = dout + r * OC;
        float *dx = din + r * IC;
        for (size_t c = 0; c < OC; c++) {
            const float *wr = W + c * IC;
            float g = d[c];
#pragma omp simd
            for (size_t i = 0; i < IC; i++)
                dx[i] += g * wr[i];
        }
    }
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < OC; c++) {
        float *dw = dW + c * IC;
        float gb = 0.0f;
        for (size_t r = 0; r < rows; r++) {
            const float *x = in + r * IC;
            float g = dout[r * OC + c];
            gb += g;
#pragma omp simd
            for (size_t i = 0; i < IC; i++)
                dw[i] += g * x[i];
        }
        if (dbias)
            dbias[c] += gb;
    }
}

/* Causal multi-head attention: qkv [B,T,3C] -> y [B,T,C], saving probabilities. */
void gpt_attention_forward(float *y, float *att, const float *qkv, size_t B, size_t T, size_t C, size_t NH)
{
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3) schedule(static)
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++)
            for (size_t t = 0; t < T; t++) {
                const float *q = qkv + (b * T + t) * 3 * C + h * hs;
                float *a = att + ((b * NH + h) * T + t) * T;
                float *yo = y + (b * T + t) * C + h * hs;
                float maxv = -INFINITY, sum = 0.0f;
                for (size_t s = 0; s <= t; s++) {
                    const float *k = qkv + (b * T + s) * 3 * C + C + h * hs;
                    float dot = 0.0f;
                    for (size_t i = 0; i < hs; i++)
                        dot += q[i] * k[i];
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
}

/* dqkv (overwritten) from dy; d_att is scratch. */
void gpt_attention_backward(float *dqkv, float *d_att, const float *dy, const float *att, const float *qkv,
                               size_t B, size_t T, size_t C, size_t NH)
{
    size_t hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
    memset(dqkv, 0, B * T * 3 * C * sizeof(float));
    /* Parallel over (b, h): each pair writes only its own head's slice of dqkv. */
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < NH; h++)
            for (size_t t = 0; t < T; t++) {
                const float *a = att + ((b * NH + h) * T + t) * T;
                float *da = d_att + ((b * NH + h) * T + t) * T;
                const float *dyo = dy + (b * T + t) * C + h * hs;
                const float *q = qkv + (b * T + t) * 3 * C + h * hs;
                float *dq = dqkv + (b * T + t) * 3 * C + h * hs;
                float dot_sum = 0.0f;
                /* y = sum_s a[s] v[s]: da[s] = dy . v[s], dv[s] += a[s] dy */
                for (size_t s = 0; s <= t; s++) {
                    const float *v = qkv + (b * T + s) * 3 * C + 2 * C + h * hs;
                    float *dv = dqkv + (b * T + s) * 3 * C + 2 * C + h * hs;
                    float d = 0.0f;
                    for (size_t i = 0; i < hs; i++) {
                        d += dyo[i] * v[i];
                        dv[i] += a[s] * dyo[i];
                    }
                    da[s] = d;
                    dot_sum += d * a[s];
                }
                /* softmax backward, then scores = scale * q.k */
                for (size_t s = 0; s <= t; s++) {
                    const float *k = qkv + (b * T + s) * 3 * C + C + h * hs;
                    float *dk = dqkv + (b * T + s) * 3 * C + C + h * hs;
                    float ds = a[s] * (da[s] - dot_sum) * scale;
                    for (size_t i = 0; i < hs; i++) {
                        dq[i] += ds * k[i];
                        dk[i] += ds * q[i];
                    }
                }
            }
}

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

void gpt_gelu_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_K * (x + 0.044715f * x * x * x)));
    }
}

void gpt_gelu_backward(float *din, const float *in, const float *dout, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = in[i];
        float u = GELU_K * (x + 0.044715f * x * x * x);
        float th = tanhf(u), sech2 = 1.0f - th * th;
        float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        din[i] = grad * dout[i];
    }
}

/* out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] */
void gpt_embedding_forward(float *out, const float *wte, const float *wpe, const int *tokens, size_t B, size_t T,
                           size_t C)
{
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            const float *te = wte + (size_t)tokens[b * T + t] * C;
            const float *pe = wpe + t * C;
            float *o = out + (b * T + t) * C;
            for (size_t i = 0; i < C; i++)
                o[i] = te[i] + pe[i];
        }
}

/* dwte[tokens[r],:] += d[r,:], dwpe[t,:] += d[r,:], rows in order (a token may repeat) */
void gpt_embedding_backward(float *dwte, float *dwpe, const float *d, const int *tokens, size_t B, size_t T, size_t C)
{
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++) {
            size_t r = b * T + t;
            const float *dr = d + r * C;
            float *dte = dwte + (size_t)tokens[r] * C;
            float *dpe = dwpe + t * C;
            for (size_t i = 0; i < C; i++) {
                dte[i] += dr[i];
                dpe[i] += dr[i];
            }
        }
}

/* Each row of logits [rows, V] replaced by its softmax, in place. */
void gpt_softmax_forward(float *probs, size_t rows, size_t V)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
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
}

/* d[r,v] = seed * (probs[r,v] - [v == targets[r]]): softmax with cross-entropy, backward */
void gpt_logits_backward(float *d_logits, const float *probs, const int *targets, size_t rows, size_t V, float seed)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < rows; r++) {
        const float *p = probs + r * V;
        float *d = d_logits + r * V;
        for (size_t v = 0; v < V; v++)
            d[v] = seed * (p[v] - (v == (size_t)targets[r] ? 1.0f : 0.0f));
    }
}

/* ---- the model ---- */

void gpt_forward_begin(gpt_model_t *m, const gpt_weights_t *w, const int *tokens, int batch, int seq_len)
{
    size_t C = (size_t)m->cfg.channels;
    float *x = m->blocks[0].in;
    m->b = batch;
    m->t = seq_len;
    memcpy(m->tokens, tokens, (size_t)batch * (size_t)seq_len * sizeof(int));
    gpt_embedding_forward(x, w->global[GPT_WTE], w->global[GPT_WPE], tokens, (size_t)batch, (size_t)seq_len, C);
}

void gpt_forward_block(gpt_model_t *m, const gpt_weights_t *w, int layer)
{
    size_t B = (size_t)m->b, T = (size_t)m->t, C = (size_t)m->cfg.channels, NH = (size_t)m->cfg.heads;
    size_t BT = B * T;
    block_acts_t *a = &m->blocks[layer];
    float *const *p = w->block + (size_t)layer * GPT_NUM_BLOCK;
    float *out = layer + 1 < m->cfg.layers ? m->blocks[layer + 1].in : m->res_out;

    gpt_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, a->in, p[GPT_LN1_W], p[GPT_LN1_B], BT, C);
    gpt_matmul_forward(a->qkv, a->ln1, p[GPT_QKV_W], p[GPT_QKV_B], BT, C, 3 * C);
    gpt_attention_forward(a->y, a->att, a->qkv, B, T, C, NH);
    gpt_matmul_forward(a->res2, a->y, p[GPT_PROJ_W], p[GPT_PROJ_B], BT, C, C);
    for (size_t i = 0; i < BT * C; i++)
        a->res2[i] += a->in[i];
    gpt_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, p[GPT_LN2_W], p[GPT_LN2_B], BT, C);
    gpt_matmul_forward(a->fc, a->ln2, p[GPT_FC_W], p[GPT_FC_B], BT, C, 4 * C);
    gpt_gelu_forward(a->gelu, a->fc, BT * 4 * C);
    gpt_matmul_forward(out, a->gelu, p[GPT_FCPROJ_W], p[GPT_FCPROJ_B], BT, 4 * C, C);
    for (size_t i = 0; i < BT * C; i++)
        out[i] += a->res2[i];
}

float gpt_forward_end(gpt_model_t *m, const gpt_weights_t *w, const int *targets)
{
    size_t BT = (size_t)m->b * (size_t)m->t, C = (size_t)m->cfg.channels, V = (size_t)m->cfg.vocab;
    double loss = 0.0;
    gpt_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, m->res_out, w->global[GPT_LNF_W],
                      w->global[GPT_LNF_B], BT, C);
    gpt_matmul_forward(m->probs, m->lnf, w->global[GPT_WTE], NULL, BT, C, V);
    gpt_softmax_forward(m->probs, BT, V);
    if (targets == NULL)
        return 0.0f;
    memcpy(m->targets, targets, BT * sizeof(int));
    for (size_t r = 0; r < BT; r++)
        loss -= log((double)m->probs[r * V + (size_t)targets[r]] + 1e-30);
    return (float)(loss / (double)BT);
}

void gpt_backward_end(gpt_model_t *m, const gpt_weights_t *w, const gpt_weights_t *g, float loss_scale)
{
    size_t BT = (size_t)m->b * (size_t)m->t, C = (size_t)m->cfg.channels, V = (size_t)m->cfg.vocab;
    float *d_lnf = m->d_a;
    float seed = loss_scale / (float)BT;   /* d(mean loss)/d(logit) = (p - onehot) / BT */
    gpt_logits_backward(m->d_logits, m->probs, m->targets, BT, V, seed);
    memset(d_lnf, 0, BT * C * sizeof(float));
    gpt_matmul_backward(d_lnf, g->global[GPT_WTE], NULL, m->d_logits, m->lnf, w->global[GPT_WTE], BT, C, V);
    memset(m->d_res, 0, BT * C * sizeof(float));
    gpt_layernorm_backward(m->d_res, g->global[GPT_LNF_W], g->global[GPT_LNF_B], d_lnf, m->res_out,
                       w->global[GPT_LNF_W], m->lnf_mean, m->lnf_rstd, BT, C);
}

void gpt_backward_block(gpt_model_t *m, const gpt_weights_t *w, const gpt_weights_t *g, int layer)
{
    size_t B = (size_t)m->b, T = (size_t)m->t, C = (size_t)m->cfg.channels, NH = (size_t)m->cfg.heads;
    size_t BT = B * T;
    block_acts_t *a = &m->blocks[layer];
    float *const *p = w->block + (size_t)layer * GPT_NUM_BLOCK;
    float *const *dp = g->block + (size_t)layer * GPT_NUM_BLOCK;
    float *d_res = m->d_res;           /* d(out): gradient w.r.t. the block's output residual */
    float *d_gelu = m->d_a, *d_fc = m->d_b;

    /* out = res2 + fcproj(gelu(fc(ln2(res2)))) : d_res flows to res2 unchanged, plus the MLP path */
    memset(d_gelu, 0, BT * 4 * C * sizeof(float));
    gpt_matmul_backward(d_gelu, dp[GPT_FCPROJ_W], dp[GPT_FCPROJ_B], d_res, a->gelu, p[GPT_FCPROJ_W], BT, 4 * C, C);
    gpt_gelu_backward(d_fc, a->fc, d_gelu, BT * 4 * C);
    {
        float *d_ln2 = d_gelu;   /* reuse: [BT, C] fits in [BT, 4C] */
        memset(d_ln2, 0, BT * C * sizeof(float));
        gpt_matmul_backward(d_ln2, dp[GPT_FC_W], dp[GPT_FC_B], d_fc, a->ln2, p[GPT_FC_W], BT, C, 4 * C);
        gpt_layernorm_backward(d_res, dp[GPT_LN2_W], dp[GPT_LN2_B], d_ln2, a->res2, p[GPT_LN2_W],
                           a->ln2_mean, a->ln2_rstd, BT, C);
    }
    /* res2 = in + proj(attn(qkv(ln1(in)))) */
    {
        float *d_y = m->d_a, *d_ln1 = m->d_b;
        memset(d_y, 0, BT * C * sizeof(float));
        gpt_matmul_backward(d_y, dp[GPT_PROJ_W], dp[GPT_PROJ_B], d_res, a->y, p[GPT_PROJ_W], BT, C, C);
        gpt_attention_backward(m->d_qkv, m->d_att, d_y, a->att, a->qkv, B, T, C, NH);
        memset(d_ln1, 0, BT * C * sizeof(float));
        gpt_matmul_backward(d_ln1, dp[GPT_QKV_W], dp[GPT_QKV_B], m->d_qkv, a->ln1, p[GPT_QKV_W], BT, C, 3 * C);
        gpt_layernorm_backward(d_res, dp[GPT_LN1_W], dp[GPT_LN1_B], d_ln1, a->in, p[GPT_LN1_W],
                           a->ln1_mean, a->ln1_rstd, BT, C);
    }
}

void gpt_backward_begin(gpt_model_t *m, const gpt_weights_t *w, const gpt_weights_t *g)
{
    size_t C = (size_t)m->cfg.channels;
    (void)w;
    gpt_embedding_backward(g->global[GPT_WTE], g->global[GPT_WPE], m->d_res, m->tokens, (size_t)m->b, (size_t)m->t,
                           C);
}

const float *gpt_probs(const gpt_model_t *m, int b, int t)
{
    return m->probs + ((size_t)b * (size_t)m->t + (size_t)t) * (size_t)m->cfg.vocab;
}

double gpt_target_loss(const gpt_model_t *m, int b, int t)
{
    size_t r = (size_t)b * (size_t)m->t + (size_t)t, V = (size_t)m->cfg.vocab;
    return -log((double)m->probs[r * V + (size_t)m->targets[r]] + 1e-30);
}
