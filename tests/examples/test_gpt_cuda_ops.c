/*
 * gpt_cuda.cu's kernels against gpt.c's building blocks (gpt_ops.h), one by
 * one on small odd shapes (B=2, T=7, C=12, NH=3, V=11: no size is a power of
 * two or a multiple of a warp), then the whole model: one forward and backward
 * of a 2-layer model through gpt_backend (the CUDA one) against gpt.c, loss and
 * every gradient. Outputs that the calls add into start from random values,
 * so the "+=" contracts are checked too. The trainer's bf16 conversions on the
 * device: exact, and the rounded add bit for bit against the host's rule.
 *
 * Tolerance, every element: |gpu - cpu| <= 1e-5 + 1e-4 |cpu|. The kernels keep
 * the CPU loops and their order; what differs is the device's expf, tanhf and
 * log (a few ulp), the SGEMMs' summation order, and the bias added after the
 * product rather than before: differences of order 1e-6 relative, compounded
 * through a few layers in the model check.
 *
 * Exit status: 0 all within tolerance; 1 a mismatch (each printed); 77 no CUDA
 * device.
 */
#include "gpt.h"
#include "gpt_backend.h"
#include "gpt_cuda.h"
#include "gpt_ops.h"

#include <cuda_runtime_api.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static float urand(void) /* [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 4503599627370496.0 - 1.0);
}

static float *host_rand(size_t n, float scale)
{
    float *p = malloc(n * sizeof(float));
    if (p == NULL) {
        fprintf(stderr, "out of host memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = scale * urand();
    return p;
}

static void *dev_copy(const void *src, size_t bytes)
{
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess || cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc/cudaMemcpy of %zu bytes failed\n", bytes);
        exit(1);
    }
    return d;
}

/* Waits for the kernels, downloads @p dev and compares with @p cpu. */
static void compare(const char *what, const float *cpu, const void *dev, size_t n)
{
    float *got = malloc(n * sizeof(float));
    double worst = 0.0;
    size_t bad = 0, at = 0;
    if (got == NULL || gpt_cuda_sync() != 0 || cudaMemcpy(got, dev, n * sizeof(float), cudaMemcpyDeviceToHost) != cudaSuccess) {
        printf("%-28s FAILED: device error\n", what);
        failures++;
        free(got);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - (double)cpu[i]);
        double lim = 1e-5 + 1e-4 * fabs((double)cpu[i]);
        if (!(err <= lim)) {
            if (bad++ == 0)
                at = i;
        }
        if (err > worst || isnan(err))
            worst = isnan(err) ? INFINITY : err;
    }
    if (bad) {
        printf("%-28s FAILED: %zu of %zu elements out of tolerance, first [%zu] gpu %.9g cpu %.9g\n", what, bad, n,
               at, (double)got[at], (double)cpu[at]);
        failures++;
    } else {
        printf("%-28s ok (%zu elements, max abs error %.3g)\n", what, n, worst);
    }
    free(got);
}

enum { B = 2, T = 7, C = 12, NH = 3, V = 11, BT = B * T };

static void check_ops(void)
{
    int tokens[BT], targets[BT];
    for (int i = 0; i < BT; i++) {
        tokens[i] = (i * 7 + 3) % V;
        targets[i] = (i * 5 + 1) % V;
    }
    tokens[3] = tokens[0]; /* a repeated token: the embedding backward adds twice into one row */
    int *d_tokens = dev_copy(tokens, sizeof(tokens)), *d_targets = dev_copy(targets, sizeof(targets));

    /* layer norm */
    {
        float *in = host_rand(BT * C, 2.0f), *w = host_rand(C, 1.0f), *b = host_rand(C, 1.0f);
        float *out = calloc(BT * C, 4), *mean = calloc(BT, 4), *rstd = calloc(BT, 4);
        float *d_in = dev_copy(in, BT * C * 4), *d_w = dev_copy(w, C * 4), *d_b = dev_copy(b, C * 4);
        float *d_out = dev_copy(out, BT * C * 4), *d_mean = dev_copy(mean, BT * 4), *d_rstd = dev_copy(rstd, BT * 4);
        gpt_layernorm_forward(out, mean, rstd, in, w, b, BT, C);
        gpt_cuda_layernorm_forward(d_out, d_mean, d_rstd, d_in, d_w, d_b, BT, C);
        compare("layernorm_forward out", out, d_out, BT * C);
        compare("layernorm_forward mean", mean, d_mean, BT);
        compare("layernorm_forward rstd", rstd, d_rstd, BT);
        float *dout = host_rand(BT * C, 1.0f), *dx = host_rand(BT * C, 1.0f), *dw = host_rand(C, 1.0f),
              *db = host_rand(C, 1.0f);
        float *d_dout = dev_copy(dout, BT * C * 4), *d_dx = dev_copy(dx, BT * C * 4), *d_dw = dev_copy(dw, C * 4),
              *d_db = dev_copy(db, C * 4);
        gpt_layernorm_backward(dx, dw, db, dout, in, w, mean, rstd, BT, C);
        gpt_cuda_layernorm_backward(d_dx, d_dw, d_db, d_dout, d_in, d_w, d_mean, d_rstd, BT, C);
        compare("layernorm_backward dx", dx, d_dx, BT * C);
        compare("layernorm_backward dw", dw, d_dw, C);
        compare("layernorm_backward db", db, d_db, C);
        void *all[] = {in, w, b, out, mean, rstd, dout, dx, dw, db};
        void *dall[] = {d_in, d_w, d_b, d_out, d_mean, d_rstd, d_dout, d_dx, d_dw, d_db};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            free(all[i]);
            cudaFree(dall[i]);
        }
    }
    /* matmul, with and without bias: rows=BT, IC=C, OC=3C+1 (odd) */
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        size_t IC = C, OC = 3 * C + 1;
        float *in = host_rand(BT * IC, 1.0f), *W = host_rand(OC * IC, 0.5f), *bias = host_rand(OC, 1.0f);
        float *out = calloc(BT * OC, 4);
        float *d_in = dev_copy(in, BT * IC * 4), *d_W = dev_copy(W, OC * IC * 4), *d_bias = dev_copy(bias, OC * 4);
        float *d_out = dev_copy(out, BT * OC * 4);
        gpt_matmul_forward(out, in, W, with_bias ? bias : NULL, BT, IC, OC);
        gpt_cuda_matmul_forward(d_out, d_in, d_W, with_bias ? d_bias : NULL, BT, IC, OC);
        compare(with_bias ? "matmul_forward (bias)" : "matmul_forward", out, d_out, BT * OC);
        float *dout = host_rand(BT * OC, 1.0f), *din = host_rand(BT * IC, 1.0f), *dW = host_rand(OC * IC, 1.0f),
              *dbias = host_rand(OC, 1.0f);
        float *d_dout = dev_copy(dout, BT * OC * 4), *d_din = dev_copy(din, BT * IC * 4),
              *d_dW = dev_copy(dW, OC * IC * 4), *d_dbias = dev_copy(dbias, OC * 4);
        gpt_matmul_backward(din, dW, with_bias ? dbias : NULL, dout, in, W, BT, IC, OC);
        gpt_cuda_matmul_backward(d_din, d_dW, with_bias ? d_dbias : NULL, d_dout, d_in, d_W, BT, IC, OC);
        compare("matmul_backward din", din, d_din, BT * IC);
        compare("matmul_backward dW", dW, d_dW, OC * IC);
        if (with_bias)
            compare("matmul_backward dbias", dbias, d_dbias, OC);
        void *all[] = {in, W, bias, out, dout, din, dW, dbias};
        void *dall[] = {d_in, d_W, d_bias, d_out, d_dout, d_din, d_dW, d_dbias};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            free(all[i]);
            cudaFree(dall[i]);
        }
    }
    /* attention */
    {
        size_t natt = (size_t)B * NH * T * T;
        float *qkv = host_rand(BT * 3 * C, 1.5f), *y = calloc(BT * C, 4), *att = calloc(natt, 4);
        float *d_qkv = dev_copy(qkv, BT * 3 * C * 4), *d_y = dev_copy(y, BT * C * 4), *d_att = dev_copy(att, natt * 4);
        gpt_attention_forward(y, att, qkv, B, T, C, NH);
        gpt_cuda_attention_forward(d_y, d_att, d_qkv, B, T, C, NH);
        compare("attention_forward y", y, d_y, BT * C);
        compare("attention_forward att", att, d_att, natt);
        float *dy = host_rand(BT * C, 1.0f), *dqkv = host_rand(BT * 3 * C, 1.0f), *scratch = calloc(natt, 4);
        float *d_dy = dev_copy(dy, BT * C * 4), *d_dqkv = dev_copy(dqkv, BT * 3 * C * 4),
              *d_scratch = dev_copy(scratch, natt * 4);
        gpt_attention_backward(dqkv, scratch, dy, att, qkv, B, T, C, NH);
        gpt_cuda_attention_backward(d_dqkv, d_scratch, d_dy, d_att, d_qkv, B, T, C, NH);
        compare("attention_backward dqkv", dqkv, d_dqkv, BT * 3 * C);
        void *all[] = {qkv, y, att, dy, dqkv, scratch};
        void *dall[] = {d_qkv, d_y, d_att, d_dy, d_dqkv, d_scratch};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            free(all[i]);
            cudaFree(dall[i]);
        }
    }
    /* gelu and the residual add */
    {
        size_t n = BT * 4 * C;
        float *in = host_rand(n, 4.0f), *out = calloc(n, 4), *dout = host_rand(n, 1.0f), *din = host_rand(n, 1.0f);
        float *d_in = dev_copy(in, n * 4), *d_out = dev_copy(out, n * 4), *d_dout = dev_copy(dout, n * 4),
              *d_din = dev_copy(din, n * 4);
        gpt_gelu_forward(out, in, n);
        gpt_cuda_gelu_forward(d_out, d_in, n);
        compare("gelu_forward", out, d_out, n);
        gpt_gelu_backward(din, in, dout, n);
        gpt_cuda_gelu_backward(d_din, d_in, d_dout, n);
        compare("gelu_backward", din, d_din, n);
        for (size_t i = 0; i < n; i++)
            out[i] += in[i];
        gpt_cuda_residual_add(d_out, d_in, n);
        compare("residual_add", out, d_out, n);
        void *all[] = {in, out, dout, din};
        void *dall[] = {d_in, d_out, d_dout, d_din};
        for (size_t i = 0; i < 4; i++) {
            free(all[i]);
            cudaFree(dall[i]);
        }
    }
    /* embeddings */
    {
        float *wte = host_rand(V * C, 1.0f), *wpe = host_rand(T * C, 1.0f), *out = calloc(BT * C, 4);
        float *d_wte = dev_copy(wte, V * C * 4), *d_wpe = dev_copy(wpe, T * C * 4), *d_out = dev_copy(out, BT * C * 4);
        gpt_embedding_forward(out, wte, wpe, tokens, B, T, C);
        gpt_cuda_embedding_forward(d_out, d_wte, d_wpe, d_tokens, B, T, C);
        compare("embedding_forward", out, d_out, BT * C);
        float *d = host_rand(BT * C, 1.0f), *dwte = host_rand(V * C, 1.0f), *dwpe = host_rand(T * C, 1.0f);
        float *d_d = dev_copy(d, BT * C * 4), *d_dwte = dev_copy(dwte, V * C * 4), *d_dwpe = dev_copy(dwpe, T * C * 4);
        gpt_embedding_backward(dwte, dwpe, d, tokens, B, T, C);
        gpt_cuda_embedding_backward(d_dwte, d_dwpe, d_d, d_tokens, B, T, C);
        compare("embedding_backward dwte", dwte, d_dwte, V * C);
        compare("embedding_backward dwpe", dwpe, d_dwpe, T * C);
        void *all[] = {wte, wpe, out, d, dwte, dwpe};
        void *dall[] = {d_wte, d_wpe, d_out, d_d, d_dwte, d_dwpe};
        for (size_t i = 0; i < 6; i++) {
            free(all[i]);
            cudaFree(dall[i]);
        }
    }
    /* softmax, cross-entropy backward, per-position losses */
    {
        float *probs = host_rand(BT * V, 6.0f), *dl = calloc(BT * V, 4);
        float *d_probs = dev_copy(probs, BT * V * 4), *d_dl = dev_copy(dl, BT * V * 4);
        gpt_softmax_forward(probs, BT, V);
        gpt_cuda_softmax_forward(d_probs, BT, V);
        compare("softmax_forward", probs, d_probs, BT * V);
        gpt_logits_backward(dl, probs, targets, BT, V, 0.37f);
        gpt_cuda_logits_backward(d_dl, d_probs, d_targets, BT, V, 0.37f);
        compare("logits_backward", dl, d_dl, BT * V);
        double losses[BT], *d_losses = NULL;
        float want[BT], got[BT];
        if (cudaMalloc((void **)&d_losses, sizeof(losses)) != cudaSuccess)
            exit(1);
        gpt_cuda_target_losses(d_losses, d_probs, d_targets, BT, V);
        if (gpt_cuda_sync() != 0 || cudaMemcpy(losses, d_losses, sizeof(losses), cudaMemcpyDeviceToHost) != cudaSuccess)
            exit(1);
        for (int r = 0; r < BT; r++) {
            want[r] = (float)-log((double)probs[r * V + targets[r]] + 1e-30);
            got[r] = (float)losses[r];
        }
        float *d_got = dev_copy(got, sizeof(got));
        compare("target_losses", want, d_got, BT);
        cudaFree(d_got);
        cudaFree(d_losses);
        free(probs);
        free(dl);
        cudaFree(d_probs);
        cudaFree(d_dl);
    }
    cudaFree(d_tokens);
    cudaFree(d_targets);
}

/* Round to nearest even, NaN aside (train_gpt's host conversion, gpt_backend_host.c). */
static uint16_t bf16_rne(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_value(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The backend's 16-bit conversions (bf16; fp16 goes through the same kernels' other branch):
 * to_f32 exactly, add_to_16 rounded once as the host does, bit for bit. */
static void check_bf16(void)
{
    enum { N = 1003 };
    uint16_t w[N], acc[N], got16[N];
    float add[N], want[N];
    for (int i = 0; i < N; i++) {
        w[i] = bf16_rne(8.0f * urand());
        acc[i] = bf16_rne(urand());
        add[i] = 1e-2f * urand();
        want[i] = bf16_value(w[i]);
    }
    uint16_t *d_w = dev_copy(w, sizeof(w)), *d_acc = dev_copy(acc, sizeof(acc));
    float *d_add = dev_copy(add, sizeof(add)), *d_out = dev_copy(add, sizeof(add));
    gpt_backend.to_f32(ZERO_BF16, d_w, d_out, N);
    compare("to_f32 (bf16)", want, d_out, N);
    gpt_backend.add_to_16(ZERO_BF16, d_acc, d_add, N);
    int bad = 0;
    if (gpt_cuda_sync() != 0 || cudaMemcpy(got16, d_acc, sizeof(got16), cudaMemcpyDeviceToHost) != cudaSuccess)
        bad = N;
    for (int i = 0; i < N && !bad; i++)
        if (got16[i] != bf16_rne(bf16_value(acc[i]) + add[i])) {
            printf("add_to_16 (bf16)             FAILED at [%d]: 0x%04x, want 0x%04x\n", i, got16[i],
                   bf16_rne(bf16_value(acc[i]) + add[i]));
            bad = 1;
        }
    if (bad)
        failures++;
    else
        printf("%-28s ok (%d elements, bit for bit)\n", "add_to_16 (bf16)", N);
    cudaFree(d_w);
    cudaFree(d_acc);
    cudaFree(d_add);
    cudaFree(d_out);
}

/* One forward and backward of the whole model on both, from the same weights and gradients. */
static void check_model(void)
{
    gpt_config_t cfg = {.vocab = V, .context = T + 2, .channels = C, .layers = 2, .heads = NH};
    int L = cfg.layers, tokens[BT], targets[BT];
    float *hw[GPT_NUM_GLOBAL + 2 * GPT_NUM_BLOCK], *hg[GPT_NUM_GLOBAL + 2 * GPT_NUM_BLOCK];
    float *dw[GPT_NUM_GLOBAL + 2 * GPT_NUM_BLOCK], *dg[GPT_NUM_GLOBAL + 2 * GPT_NUM_BLOCK];
    size_t numel[GPT_NUM_GLOBAL + 2 * GPT_NUM_BLOCK];
    float *hblock_w[2 * GPT_NUM_BLOCK], *hblock_g[2 * GPT_NUM_BLOCK], *dblock_w[2 * GPT_NUM_BLOCK],
        *dblock_g[2 * GPT_NUM_BLOCK];
    gpt_weights_t W = {.block = hblock_w}, G = {.block = hblock_g}, DW = {.block = dblock_w}, DG = {.block = dblock_g};
    int k = 0;
    for (int i = 0; i < BT; i++) {
        tokens[i] = (i * 3 + 2) % V;
        targets[i] = (i * 4 + 5) % V;
    }
    for (int l = -1; l < L; l++)
        for (int t = 0; t < (l < 0 ? GPT_NUM_GLOBAL : GPT_NUM_BLOCK); t++, k++) {
            numel[k] = gpt_tensor_numel(&cfg, l, t);
            hw[k] = malloc(numel[k] * 4);
            gpt_init_tensor(&cfg, l, t, 99, hw[k]);
            /* norms and biases at 1 and 0 would hide index mistakes: perturb them */
            for (size_t i = 0; i < numel[k]; i++)
                hw[k][i] += 0.05f * urand();
            hg[k] = host_rand(numel[k], 0.01f);
            dw[k] = dev_copy(hw[k], numel[k] * 4);
            dg[k] = dev_copy(hg[k], numel[k] * 4);
            if (l < 0) {
                W.global[t] = hw[k];
                G.global[t] = hg[k];
                DW.global[t] = dw[k];
                DG.global[t] = dg[k];
            } else {
                W.block[l * GPT_NUM_BLOCK + t] = hw[k];
                G.block[l * GPT_NUM_BLOCK + t] = hg[k];
                DW.block[l * GPT_NUM_BLOCK + t] = dw[k];
                DG.block[l * GPT_NUM_BLOCK + t] = dg[k];
            }
        }
    gpt_model_t *hm = gpt_create(&cfg, B, T);
    void *dm = gpt_backend.create(&cfg, B, T);
    if (hm == NULL || dm == NULL) {
        printf("model: FAILED to create\n");
        failures++;
        return;
    }
    gpt_forward_begin(hm, &W, tokens, B, T);
    gpt_backend.forward_begin(dm, &DW, tokens, B, T);
    for (int l = 0; l < L; l++) {
        gpt_forward_block(hm, &W, l);
        gpt_backend.forward_block(dm, &DW, l);
    }
    float hloss = gpt_forward_end(hm, &W, targets), dloss = gpt_backend.forward_end(dm, &DW, targets);
    float hl1[1] = {hloss}, *d_dl1 = dev_copy(&dloss, 4);
    compare("model loss", hl1, d_dl1, 1);
    cudaFree(d_dl1);
    float pos_want = (float)gpt_target_loss(hm, 1, T - 1), pos_got = (float)gpt_backend.target_loss(dm, 1, T - 1);
    float *d_pos = dev_copy(&pos_got, 4);
    compare("model target_loss(1, T-1)", &pos_want, d_pos, 1);
    cudaFree(d_pos);
    gpt_backward_end(hm, &W, &G, 3.0f);
    gpt_backend.backward_end(dm, &DW, &DG, 3.0f);
    for (int l = L - 1; l >= 0; l--) {
        gpt_backward_block(hm, &W, &G, l);
        gpt_backend.backward_block(dm, &DW, &DG, l);
    }
    gpt_backward_begin(hm, &W, &G);
    gpt_backend.backward_begin(dm, &DW, &DG);
    k = 0;
    for (int l = -1; l < L; l++)
        for (int t = 0; t < (l < 0 ? GPT_NUM_GLOBAL : GPT_NUM_BLOCK); t++, k++) {
            char name[64], what[96];
            int nd;
            long shape[2];
            gpt_tensor_info(&cfg, l, t, name, sizeof(name), &nd, shape);
            snprintf(what, sizeof(what), "model grad %s", name);
            compare(what, hg[k], dg[k], numel[k]);
            free(hw[k]);
            free(hg[k]);
            cudaFree(dw[k]);
            cudaFree(dg[k]);
        }
    if (gpt_backend.check() != 0)
        failures++;
    gpt_destroy(hm);
    gpt_backend.destroy(dm);
}

int main(void)
{
    int rc = gpt_cuda_open(-1, NULL, NULL);
    if (rc == 1)
        return 77;
    if (rc != 0)
        return 1;
    check_ops();
    check_bf16();
    check_model();
    gpt_cuda_close();
    printf("gpt-cuda-ops: %s (tolerance 1e-5 + 1e-4 |cpu| per element)\n", failures ? "FAILED" : "all within tolerance");
    return failures ? 1 : 0;
}
