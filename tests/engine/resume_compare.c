/*
 * Compares two checkpoints: every parameter's fp32 master weights and every
 * optimizer state, element by element, and the counters, loss-scaler and
 * schedule state (micro-batch counts only bit for bit: they depend on the
 * world size through the accumulation steps).
 *   resume_compare DIR_A DIR_B [RTOL]
 * Without RTOL the comparison is bit for bit (exact resume); with it, each
 * element must satisfy |a - b| <= RTOL * (|b| + 1e-3) (resharded runs, whose
 * reductions sum in another order). Exit 0 when equal, 1 otherwise.
 */
#include "ckpt/ckpt.h"
#include "util/alloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    zero_ckpt_reader_t *a = NULL, *b = NULL;
    const zero_layout_t *la, *lb;
    const zero_ckpt_meta_t *ma, *mb;
    double rtol = argc > 3 ? atof(argv[3]) : 0.0;
    int bad = 0;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: resume_compare DIR_A DIR_B [RTOL]\n");
        return 2;
    }
    if (zero_ckpt_reader_open(argv[1], NULL, &a) != ZERO_OK || zero_ckpt_reader_open(argv[2], NULL, &b) != ZERO_OK)
        return 1;
    la = zero_ckpt_reader_layout(a);
    lb = zero_ckpt_reader_layout(b);
    ma = zero_ckpt_reader_meta(a);
    mb = zero_ckpt_reader_meta(b);
    if (ma->global_steps != mb->global_steps || ma->skipped_steps != mb->skipped_steps ||
        (rtol == 0.0 && ma->micro_steps != mb->micro_steps) || ma->loss_scale != mb->loss_scale ||
        ma->scaler_cur_iter != mb->scaler_cur_iter || ma->scaler_last_overflow_iter != mb->scaler_last_overflow_iter ||
        ma->scaler_cur_hysteresis != mb->scaler_cur_hysteresis ||
        ma->lr_last_batch_iteration != mb->lr_last_batch_iteration || ma->lr != mb->lr ||
        ma->num_states != mb->num_states || la->num_params != lb->num_params) {
        fprintf(stderr, "resume_compare: counters or scaler/schedule state differ: steps %llu/%llu skipped %llu/%llu "
                        "micro %llu/%llu scale %g/%g lr %g/%g\n",
                (unsigned long long)ma->global_steps, (unsigned long long)mb->global_steps,
                (unsigned long long)ma->skipped_steps, (unsigned long long)mb->skipped_steps,
                (unsigned long long)ma->micro_steps, (unsigned long long)mb->micro_steps, ma->loss_scale,
                mb->loss_scale, ma->lr, mb->lr);
        bad = 1;
    }
    for (int p = 0; p < la->num_params && !bad; p++) {
        size_t n = la->params[p].numel;
        float *x = malloc((n ? n : 1) * sizeof(float)), *y = malloc((n ? n : 1) * sizeof(float));
        for (int s = -1; s < ma->num_states && !bad; s++) {
            if (zero_ckpt_reader_read(a, p, s, 0, n, x) != ZERO_OK || zero_ckpt_reader_read(b, p, s, 0, n, y) != ZERO_OK) {
                bad = 1;
                break;
            }
            for (size_t i = 0; i < n; i++) {
                int differ = rtol == 0.0 ? memcmp(&x[i], &y[i], sizeof(float)) != 0
                                         : !(fabs((double)x[i] - y[i]) <= rtol * (fabs((double)y[i]) + 1e-3));
                if (differ) {
                    fprintf(stderr, "resume_compare: %s %s[%zu]: %.9g vs %.9g\n", la->params[p].name,
                            s < 0 ? "master" : ma->state_names[s], i, x[i], y[i]);
                    bad = 1;
                    break;
                }
            }
        }
        free(x);
        free(y);
    }
    zero_ckpt_reader_close(a);
    zero_ckpt_reader_close(b);
    if (!bad)
        printf("resume_compare: %s and %s agree%s\n", argv[1], argv[2], rtol == 0.0 ? " bit for bit" : "");
    return bad;
}
