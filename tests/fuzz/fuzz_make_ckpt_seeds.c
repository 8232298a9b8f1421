/*
 * Writes the seed rank files of fuzz_ckpt (tests/fuzz/corpus/ckpt): real
 * one-rank checkpoints of the fuzz model (fuzz_ckpt_model.h) and of a few
 * other models, written by the library's own writer exactly as a save does.
 *
 *   fuzz_make_ckpt_seeds OUTDIR      (scripts/fuzz --seeds runs it)
 */
#include "fuzz_common.h"
#include "fuzz_ckpt_model.h"

#include "ckpt/ckpt_internal.h"
#include "ckpt/ckpt.h"
#include "ckpt_fixture.h"

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    if (in == NULL || out == NULL) {
        fprintf(stderr, "cannot copy %s to %s\n", from, to);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out);
}

static int seed(const char *outdir, const char *name, const zero_layout_param_desc_t *params, int nparams,
                size_t align, size_t bucket, int stage, int num_states)
{
    char work[600], from[800], to[800], tag[32];
    static int serial;
    zero_layout_t *L = NULL;
    int rc;
    snprintf(work, sizeof(work), "%s", fuzz_tmp_dir("seeds"));
    snprintf(tag, sizeof(tag), "s%d", serial++);
    if (zero_layout_build(params, nparams, 1, align, bucket, &L) != ZERO_OK ||
        fix_sim_save(work, tag, L, 1, stage, 11, num_states) != ZERO_OK) {
        fprintf(stderr, "cannot write seed %s\n", name);
        return -1;
    }
    zero_layout_destroy(L);
    snprintf(from, sizeof(from), "%s/%s/zero_rank_00000.h5", work, tag);
    snprintf(to, sizeof(to), "%s/%s", outdir, name);
    rc = copy_file(from, to);
    fuzz_tmp_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    static const zero_layout_param_desc_t one[] = {{"w", ZERO_FP32, 1, {3}}};
    static const zero_layout_param_desc_t bf16_only[] = {{"a", ZERO_BF16, 2, {4, 4}}, {"b", ZERO_BF16, 1, {5}}};
    int rc = 0;
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    fuzz_quiet_logs();
    rc |= seed(argv[1], "model-stage1-adam", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, 1, 2);
    rc |= seed(argv[1], "model-stage0-adam", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, 0, 2);
    rc |= seed(argv[1], "model-stage3-adam", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, 3, 2);
    rc |= seed(argv[1], "model-stage2-one-state", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, 2, 1);
    rc |= seed(argv[1], "model-stage1-no-states", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, 1, 0);
    rc |= seed(argv[1], "model-align4-one-bucket", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, 4, 100000, 1, 2);
    rc |= seed(argv[1], "model-align64", fuzz_ckpt_params, FUZZ_CKPT_NPARAM, 64, 64, 2, 2);
    rc |= seed(argv[1], "other-one-param", one, 1, 1, 8, 1, 2);
    rc |= seed(argv[1], "other-bf16-only", bf16_only, 2, 4, 8, 1, 2);
    rc |= seed(argv[1], "other-fixture-model", fix_params, FIX_NPARAM, 64, 1000, 1, 2);
    return rc ? 1 : 0;
}
