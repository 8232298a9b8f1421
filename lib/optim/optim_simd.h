/*
 * SIMD kernel bodies shared by optim_avx2.c and optim_avx512.c. Not a normal
 * header: the including file first defines, for its instruction set,
 *   VW                 lanes per vector
 *   vf                 the float vector type, vacc a double accumulator type
 *   FN(name)           the suffixed function name
 *   vld vst vset vadd vsub vmul vdiv vsqrt vsign      float vector ops
 *   vld_bf16 vld_f16   load VW 16-bit values as floats
 *   vst16(p, x, type)  store VW floats as bf16 or fp16 (round to nearest even)
 *   vacc_zero vacc_sq vacc_sum   sum of squares in double
 *   VPREFETCH4(i, a, b, c, d)     optional software prefetch of Adam's read streams
 * All under the file's target attribute. The operation order is the one of
 * optim_ref.c, with no FMA, so results match the reference bit for bit.
 *
 * Tails (n not a multiple of VW) run the same vector body on a zero-padded
 * copy on the stack, so they too compute exactly what the main loop would.
 */

/* No multiply-add contraction: the levels must round identically. (GCC's
 * default for -std=c11 is -ffp-contract=off; clang needs the pragma.) */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define TAIL_COPY_IN(dst, src, r) memcpy((dst), (src), (r) * sizeof(*(src)))

/* Adam over g, or over g + ga when ga is given (the last hop of a reduction
 * fused into the step: the sum lives only in registers). The two wrappers
 * below call it with ga constant, so each gets its own specialised loop. */
static inline void FN(adam_body)(const zero_adam_k_t *k, float *w, const float *g, const float *ga,
                                 float *m, float *v, uint16_t *w16, int t, size_t n)
{
    const vf gs = vset(k->grad_scale), b1 = vset(k->beta1), omb1 = vset(k->one_minus_beta1);
    const vf b2 = vset(k->beta2), omb2 = vset(k->one_minus_beta2), eps = vset(k->eps);
    const vf bc2r = vset(k->bc2_rsqrt), ss = vset(k->step_size), dmul = vset(k->decay_mul);
    const vf l2wd = vset(k->l2_wd);
    const int l2 = k->l2_wd != 0.0f;
    size_t i = 0;
#define ADAM_BODY(W, G, GA, M, V, W16)                                    \
    do {                                                                  \
        vf gi = vmul(ga ? vadd(vld(G), vld(GA)) : vld(G), gs);            \
        vf wi = vld(W), mi, vi, den;                                      \
        if (l2)                                                           \
            gi = vadd(gi, vmul(l2wd, wi));                                \
        mi = vadd(vmul(b1, vld(M)), vmul(omb1, gi));                      \
        vi = vadd(vmul(b2, vld(V)), vmul(omb2, vmul(gi, gi)));            \
        den = vadd(vmul(vsqrt(vi), bc2r), eps);                           \
        wi = vmul(wi, dmul);                                              \
        wi = vsub(wi, vmul(ss, vdiv(mi, den)));                           \
        vst(M, mi);                                                       \
        vst(V, vi);                                                       \
        vst(W, wi);                                                       \
        if (t)                                                            \
            vst16(W16, wi, t);                                            \
    } while (0)
    for (; i + VW <= n; i += VW) {
        VPREFETCH4(i, g + i, w + i, m + i, v + i);
        ADAM_BODY(w + i, g + i, ga ? ga + i : NULL, m + i, v + i, t ? w16 + i : NULL);
    }
    if (i < n) {
        float tw[VW] = {0}, tg[VW] = {0}, tga[VW] = {0}, tm[VW] = {0}, tv[VW] = {0};
        uint16_t th[VW];
        size_t r = n - i;
        TAIL_COPY_IN(tw, w + i, r);
        TAIL_COPY_IN(tg, g + i, r);
        if (ga)
            TAIL_COPY_IN(tga, ga + i, r);
        TAIL_COPY_IN(tm, m + i, r);
        TAIL_COPY_IN(tv, v + i, r);
        ADAM_BODY(tw, tg, tga, tm, tv, th);
        memcpy(w + i, tw, r * sizeof(float));
        memcpy(m + i, tm, r * sizeof(float));
        memcpy(v + i, tv, r * sizeof(float));
        if (t)
            memcpy(w16 + i, th, r * sizeof(uint16_t));
    }
#undef ADAM_BODY
}

static void FN(adam)(const zero_adam_k_t *k, float *w, const float *g, float *m, float *v,
                     uint16_t *w16, int t, size_t n)
{
    FN(adam_body)(k, w, g, NULL, m, v, w16, t, n);
}

static void FN(adam_add)(const zero_adam_k_t *k, float *w, const float *g, const float *ga, float *m,
                         float *v, uint16_t *w16, int t, size_t n)
{
    FN(adam_body)(k, w, g, ga, m, v, w16, t, n);
}

static void FN(sgd)(const zero_sgd_k_t *k, float *w, const float *g, float *buf,
                    uint16_t *w16, int t, size_t n)
{
    const vf gs = vset(k->grad_scale), lr = vset(k->lr), wd = vset(k->weight_decay);
    const vf mom = vset(k->momentum), omd = vset(k->one_minus_dampening);
    const int use_wd = k->weight_decay != 0.0f, use_mom = k->momentum != 0.0f;
    const int first = k->first_step, nesterov = k->nesterov;
    size_t i = 0;
#define SGD_BODY(W, G, B, W16)                                            \
    do {                                                                  \
        vf d = vmul(vld(G), gs), wi = vld(W);                             \
        if (use_wd)                                                       \
            d = vadd(d, vmul(wd, wi));                                    \
        if (use_mom) {                                                    \
            vf b = first ? d : vadd(vmul(mom, vld(B)), vmul(omd, d));     \
            vst(B, b);                                                    \
            d = nesterov ? vadd(d, vmul(mom, b)) : b;                     \
        }                                                                 \
        wi = vsub(wi, vmul(lr, d));                                       \
        vst(W, wi);                                                       \
        if (t)                                                            \
            vst16(W16, wi, t);                                            \
    } while (0)
    for (; i + VW <= n; i += VW)
        SGD_BODY(w + i, g + i, use_mom ? buf + i : NULL, t ? w16 + i : NULL);
    if (i < n) {
        float tw[VW] = {0}, tg[VW] = {0}, tb[VW] = {0};
        uint16_t th[VW];
        size_t r = n - i;
        TAIL_COPY_IN(tw, w + i, r);
        TAIL_COPY_IN(tg, g + i, r);
        if (use_mom)
            TAIL_COPY_IN(tb, buf + i, r);
        SGD_BODY(tw, tg, tb, th);
        memcpy(w + i, tw, r * sizeof(float));
        if (use_mom)
            memcpy(buf + i, tb, r * sizeof(float));
        if (t)
            memcpy(w16 + i, th, r * sizeof(uint16_t));
    }
#undef SGD_BODY
}

static void FN(adagrad)(const zero_adagrad_k_t *k, float *w, const float *g, float *sum,
                        uint16_t *w16, int t, size_t n)
{
    const vf gs = vset(k->grad_scale), clr = vset(k->clr), wd = vset(k->weight_decay);
    const vf eps = vset(k->eps);
    const int use_wd = k->weight_decay != 0.0f;
    size_t i = 0;
#define ADAGRAD_BODY(W, G, S, W16)                                        \
    do {                                                                  \
        vf d = vmul(vld(G), gs), wi = vld(W), s;                          \
        if (use_wd)                                                       \
            d = vadd(d, vmul(wd, wi));                                    \
        s = vadd(vld(S), vmul(d, d));                                     \
        wi = vsub(wi, vmul(clr, vdiv(d, vadd(vsqrt(s), eps))));           \
        vst(S, s);                                                        \
        vst(W, wi);                                                       \
        if (t)                                                            \
            vst16(W16, wi, t);                                            \
    } while (0)
    for (; i + VW <= n; i += VW)
        ADAGRAD_BODY(w + i, g + i, sum + i, t ? w16 + i : NULL);
    if (i < n) {
        float tw[VW] = {0}, tg[VW] = {0}, ts[VW] = {0};
        uint16_t th[VW];
        size_t r = n - i;
        TAIL_COPY_IN(tw, w + i, r);
        TAIL_COPY_IN(tg, g + i, r);
        TAIL_COPY_IN(ts, sum + i, r);
        ADAGRAD_BODY(tw, tg, ts, th);
        memcpy(w + i, tw, r * sizeof(float));
        memcpy(sum + i, ts, r * sizeof(float));
        if (t)
            memcpy(w16 + i, th, r * sizeof(uint16_t));
    }
#undef ADAGRAD_BODY
}

static void FN(lion)(const zero_lion_k_t *k, float *w, const float *g, float *m,
                     uint16_t *w16, int t, size_t n)
{
    const vf gs = vset(k->grad_scale), lr = vset(k->lr), dmul = vset(k->decay_mul);
    const vf b1 = vset(k->beta1), omb1 = vset(k->one_minus_beta1);
    const vf b2 = vset(k->beta2), omb2 = vset(k->one_minus_beta2);
    size_t i = 0;
#define LION_BODY(W, G, M, W16)                                           \
    do {                                                                  \
        vf d = vmul(vld(G), gs), mi = vld(M), c, wi;                      \
        c = vadd(vmul(b1, mi), vmul(omb1, d));                            \
        wi = vmul(vld(W), dmul);                                          \
        wi = vsub(wi, vmul(lr, vsign(c)));                                \
        vst(M, vadd(vmul(b2, mi), vmul(omb2, d)));                        \
        vst(W, wi);                                                       \
        if (t)                                                            \
            vst16(W16, wi, t);                                            \
    } while (0)
    for (; i + VW <= n; i += VW)
        LION_BODY(w + i, g + i, m + i, t ? w16 + i : NULL);
    if (i < n) {
        float tw[VW] = {0}, tg[VW] = {0}, tm[VW] = {0};
        uint16_t th[VW];
        size_t r = n - i;
        TAIL_COPY_IN(tw, w + i, r);
        TAIL_COPY_IN(tg, g + i, r);
        TAIL_COPY_IN(tm, m + i, r);
        LION_BODY(tw, tg, tm, th);
        memcpy(w + i, tw, r * sizeof(float));
        memcpy(m + i, tm, r * sizeof(float));
        if (t)
            memcpy(w16 + i, th, r * sizeof(uint16_t));
    }
#undef LION_BODY
}

#define LAMB_DENOM(V) (inside ? vsqrt(vadd((V), eps)) : vadd(vsqrt(V), eps))

static void FN(lamb1)(const zero_lamb_k_t *k, const float *w, const float *g, float *m, float *v,
                      size_t n, double *w_sq, double *u_sq)
{
    const vf gs = vset(k->grad_scale), b1 = vset(k->beta1), omb1 = vset(k->one_minus_beta1);
    const vf b2 = vset(k->beta2), omb2 = vset(k->one_minus_beta2), eps = vset(k->eps);
    const vf wd = vset(k->weight_decay);
    const int inside = k->eps_inside_sqrt;
    vacc wa = vacc_zero(), ua = vacc_zero();
    size_t i = 0;
#define LAMB1_BODY(W, G, M, V)                                            \
    do {                                                                  \
        vf d = vmul(vld(G), gs), wi = vld(W), mi, vi, u;                  \
        mi = vadd(vmul(b1, vld(M)), vmul(omb1, d));                       \
        vi = vadd(vmul(b2, vld(V)), vmul(omb2, vmul(d, d)));              \
        u = vadd(vdiv(mi, LAMB_DENOM(vi)), vmul(wd, wi));                 \
        vst(M, mi);                                                       \
        vst(V, vi);                                                       \
        wa = vacc_sq(wa, wi);                                             \
        ua = vacc_sq(ua, u);                                              \
    } while (0)
    for (; i + VW <= n; i += VW)
        LAMB1_BODY(w + i, g + i, m + i, v + i);
    if (i < n) {
        /* Padding lanes: w = g = m = 0 and v = 1 give u = 0 for any eps. */
        float tw[VW] = {0}, tg[VW] = {0}, tm[VW] = {0}, tv[VW];
        size_t r = n - i;
        for (int j = 0; j < VW; j++)
            tv[j] = 1.0f;
        TAIL_COPY_IN(tw, w + i, r);
        TAIL_COPY_IN(tg, g + i, r);
        TAIL_COPY_IN(tm, m + i, r);
        TAIL_COPY_IN(tv, v + i, r);
        LAMB1_BODY(tw, tg, tm, tv);
        memcpy(m + i, tm, r * sizeof(float));
        memcpy(v + i, tv, r * sizeof(float));
    }
#undef LAMB1_BODY
    *w_sq += vacc_sum(wa);
    *u_sq += vacc_sum(ua);
}

static void FN(lamb2)(const zero_lamb_k_t *k, float coef, float *w, const float *m, const float *v,
                      uint16_t *w16, int t, size_t n)
{
    const vf eps = vset(k->eps), wd = vset(k->weight_decay), c = vset(coef);
    const int inside = k->eps_inside_sqrt;
    size_t i = 0;
#define LAMB2_BODY(W, M, V, W16)                                          \
    do {                                                                  \
        vf wi = vld(W), u;                                                \
        u = vadd(vdiv(vld(M), LAMB_DENOM(vld(V))), vmul(wd, wi));         \
        wi = vsub(wi, vmul(c, u));                                        \
        vst(W, wi);                                                       \
        if (t)                                                            \
            vst16(W16, wi, t);                                            \
    } while (0)
    for (; i + VW <= n; i += VW)
        LAMB2_BODY(w + i, m + i, v + i, t ? w16 + i : NULL);
    if (i < n) {
        float tw[VW] = {0}, tm[VW] = {0}, tv[VW];
        uint16_t th[VW];
        size_t r = n - i;
        for (int j = 0; j < VW; j++)
            tv[j] = 1.0f;
        TAIL_COPY_IN(tw, w + i, r);
        TAIL_COPY_IN(tm, m + i, r);
        TAIL_COPY_IN(tv, v + i, r);
        LAMB2_BODY(tw, tm, tv, th);
        memcpy(w + i, tw, r * sizeof(float));
        if (t)
            memcpy(w16 + i, th, r * sizeof(uint16_t));
    }
#undef LAMB2_BODY
}
#undef LAMB_DENOM

/* ---- helpers ---- */

static double FN(sum_squares_f32)(const void *x, size_t n)
{
    const float *p = x;
    vacc a = vacc_zero();
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        a = vacc_sq(a, vld(p + i));
    if (i < n) {
        float tp[VW] = {0};
        TAIL_COPY_IN(tp, p + i, n - i);
        a = vacc_sq(a, vld(tp));
    }
    return vacc_sum(a);
}

static double FN(sum_squares_f16)(const void *x, size_t n)
{
    const uint16_t *p = x;
    vacc a = vacc_zero();
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        a = vacc_sq(a, vld_f16(p + i));
    if (i < n) {
        uint16_t tp[VW] = {0};
        TAIL_COPY_IN(tp, p + i, n - i);
        a = vacc_sq(a, vld_f16(tp));
    }
    return vacc_sum(a);
}

static double FN(sum_squares_bf16)(const void *x, size_t n)
{
    const uint16_t *p = x;
    vacc a = vacc_zero();
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        a = vacc_sq(a, vld_bf16(p + i));
    if (i < n) {
        uint16_t tp[VW] = {0};
        TAIL_COPY_IN(tp, p + i, n - i);
        a = vacc_sq(a, vld_bf16(tp));
    }
    return vacc_sum(a);
}

static void FN(scale_f32)(float *x, float s, size_t n)
{
    const vf sv = vset(s);
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        vst(x + i, vmul(vld(x + i), sv));
    if (i < n) {
        float tp[VW] = {0};
        TAIL_COPY_IN(tp, x + i, n - i);
        vst(tp, vmul(vld(tp), sv));
        memcpy(x + i, tp, (n - i) * sizeof(float));
    }
}

static void FN(to_bf16)(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        vst16(dst + i, vld(src + i), ZERO_OPTIM_W16_BF16);
    if (i < n) {
        float tp[VW] = {0};
        uint16_t th[VW];
        TAIL_COPY_IN(tp, src + i, n - i);
        vst16(th, vld(tp), ZERO_OPTIM_W16_BF16);
        memcpy(dst + i, th, (n - i) * sizeof(uint16_t));
    }
}

static void FN(to_f16)(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        vst16(dst + i, vld(src + i), ZERO_OPTIM_W16_FP16);
    if (i < n) {
        float tp[VW] = {0};
        uint16_t th[VW];
        TAIL_COPY_IN(tp, src + i, n - i);
        vst16(th, vld(tp), ZERO_OPTIM_W16_FP16);
        memcpy(dst + i, th, (n - i) * sizeof(uint16_t));
    }
}

static void FN(from_bf16)(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        vst(dst + i, vld_bf16(src + i));
    if (i < n) {
        uint16_t th[VW] = {0};
        float tp[VW];
        TAIL_COPY_IN(th, src + i, n - i);
        vst(tp, vld_bf16(th));
        memcpy(dst + i, tp, (n - i) * sizeof(float));
    }
}

static void FN(from_f16)(float *dst, const uint16_t *src, size_t n)
{
    size_t i = 0;
    for (; i + VW <= n; i += VW)
        vst(dst + i, vld_f16(src + i));
    if (i < n) {
        uint16_t th[VW] = {0};
        float tp[VW];
        TAIL_COPY_IN(th, src + i, n - i);
        vst(tp, vld_f16(th));
        memcpy(dst + i, tp, (n - i) * sizeof(float));
    }
}

static void FN(init_common)(zero_optim_dsp_t *dsp)
{
    dsp->adam = FN(adam);
    dsp->adam_add = FN(adam_add);
    dsp->sgd = FN(sgd);
    dsp->adagrad = FN(adagrad);
    dsp->lion = FN(lion);
    dsp->lamb1 = FN(lamb1);
    dsp->lamb2 = FN(lamb2);
    dsp->sum_squares[ZERO_FP32] = FN(sum_squares_f32);
    dsp->sum_squares[ZERO_FP16] = FN(sum_squares_f16);
    dsp->sum_squares[ZERO_BF16] = FN(sum_squares_bf16);
    dsp->scale_f32 = FN(scale_f32);
    dsp->to_16[ZERO_OPTIM_W16_BF16] = FN(to_bf16);
    dsp->to_16[ZERO_OPTIM_W16_FP16] = FN(to_f16);
    dsp->from_16[ZERO_OPTIM_W16_BF16] = FN(from_bf16);
    dsp->from_16[ZERO_OPTIM_W16_FP16] = FN(from_f16);
}
