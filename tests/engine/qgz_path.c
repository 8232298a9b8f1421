/*
 * qgZ's device path (engine_step.c, qgz_device_start/finish) on the CPU, run
 * on every rank through zero-launch: the engine on host memory with the
 * int8 codec operations done by the C codec (codec_standin.h) put into its
 * operations table, so the reduction takes the device path's steps (encode
 * every block into the wire, an ordered all-to-all of the bytes, decode and
 * sum after the wait; in two levels, the node's partial sums decoded, summed
 * and encoded again between the two all-to-alls). Each case trains the same
 * model with host qgZ (comm/quant_coll.h) and with the device path; the
 * weights must be the same bits on every rank, and differ from the
 * unquantized run's (qgZ took effect).
 *
 * Cases: fp32, bf16, fp16 (loss scaling) x gradient accumulation 1 and 2,
 * SGD with momentum (its update scales with the gradient, so a wrong
 * average shows), and AdamW with qwZ too (both device paths at once).
 * Arguments (the first, the world size, is for meson's list and ignored):
 * "nodes": the job is described as nodes of 2 ranks (LOCAL_* and
 * CROSS_* set here, as a launcher on real nodes would), which makes qgZ
 * hierarchical at 4 ranks: that path must be the one taken. Argument
 * "hpz": also zero_hpz_partition_size 2 (qgZ's node is then hpZ's group).
 *
 * Exit status: the number of failed checks (0 = all passed).
 */
#include <zero/zero.h>

#include "codec_standin.h"
#include "rank_check.h"
#include "zero/engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPARAM 4
#define STEPS 3

static const size_t numels[NPARAM] = {1000, 37, 513, 300};
static engine_ops_t standin_ops;

typedef struct qcase {
    zero_dtype_t dtype;
    int gas;
    int adamw_qwz;   /* AdamW with qwZ; else SGD with momentum */
    int hpz;
} qcase_t;

static float init_value(int p, size_t i)
{
    return 0.3f * (float)((i * 7 + (size_t)p * 3) % 23) / 23.0f - 0.1f;
}

static void init_cb(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)name;
    for (size_t k = 0; k < count; k++)
        out[k] = init_value((int)(intptr_t)user, offset + k);
}

/* Different on every rank, step and micro-batch, with blocks of very
 * different magnitudes, so each block's scale matters. */
static float grad_value(int step, int micro, int rank, int p, size_t i)
{
    float scale = (i / 256) % 2 ? 0.01f : 1.0f;
    return scale * ((float)((int)((i * 13 + (size_t)step * 5 + (size_t)micro * 3 + (size_t)rank * 11 + (size_t)p) %
                                  29) - 14) / 14.0f);
}

/* Trains; @p out gets every parameter's final weights (fp32). @p path: 0
 * unquantized, 1 host qgZ, 2 the device path on the CPU. */
static int train(zero_comm_h comm, const qcase_t *c, int path, float *out, int *hier_p)
{
    char json[1024];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                                             ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .comm = comm, .num_threads = 1};
    zero_engine_h e = NULL;
    zero_param_h h[NPARAM];
    size_t at = 0, es = zero_dtype_size(c->dtype);
    int rc = 1;
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": %d, %s"
             " \"optimizer\": %s,"
             " \"zero_optimization\": {\"stage\": 3, \"reduce_bucket_size\": 700, \"allgather_bucket_size\": 700,"
             " \"stage3_param_persistence_threshold\": 40, \"zero_hpz_partition_size\": %d,"
             " \"zero_quantized_weights\": %s, \"zero_quantized_gradients\": %s}}",
             c->gas,
             c->dtype == ZERO_BF16   ? "\"bf16\": {\"enabled\": true},"
             : c->dtype == ZERO_FP16 ? "\"fp16\": {\"enabled\": true, \"initial_scale_power\": 8},"
                                     : "",
             c->adamw_qwz ? "{\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}}"
                          : "{\"type\": \"SGD\", \"params\": {\"lr\": 0.05, \"momentum\": 0.9}}",
             c->hpz, c->adamw_qwz ? "true" : "false", path > 0 ? "true" : "false");
    if (zero_engine_create(&ep, &e) != ZERO_OK)
        goto out;
    if (path == 2) {
        standin_ops = *e->ops;
        standin_ops.name = "host, with the device path's codec operations";
        codec_standin_install(&standin_ops);
        e->ops = &standin_ops;   /* same context: the host table's */
    }
    *hier_p = e->qgz_cross != NULL;
    for (int p = 0; p < NPARAM; p++) {
        char name[16];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = c->dtype, .ndim = 1,
                               .shape = {(int64_t)numels[p]}, .init_fn = init_cb, .init_user_data = (void *)(intptr_t)p};
        snprintf(name, sizeof(name), "p%d", p);
        if (zero_param_register(e, &d, &h[p]) != ZERO_OK)
            goto out;
    }
    if (zero_engine_setup(e) != ZERO_OK)
        goto out;
    for (int step = 0; step < STEPS; step++)
        for (int mi = 0; mi < c->gas; mi++) {
            float seed;
            if (zero_gather(e, h, NPARAM) != ZERO_OK || zero_backward_begin(e, &seed) != ZERO_OK)
                goto out;
            for (int p = NPARAM - 1; p >= 0; p--) {
                void *g = zero_param_grad(h[p]);
                if (g == NULL)
                    goto out;
                for (size_t i = 0; i < numels[p]; i++)
                    check_add(g, c->dtype, i, seed * grad_value(step, mi, check_rank, p, i));
                if (zero_grad_ready(e, h[p]) != ZERO_OK)
                    goto out;
            }
            if (zero_backward_end(e) != ZERO_OK || zero_release(e, h, NPARAM) != ZERO_OK ||
                zero_step(e, NULL) != ZERO_OK)
                goto out;
        }
    if (zero_gather(e, h, NPARAM) != ZERO_OK)
        goto out;
    for (int p = 0; p < NPARAM; p++) {
        for (size_t i = 0; i < numels[p]; i++)
            out[at + i] = check_load(zero_param_data(h[p]), c->dtype, i);
        at += numels[p];
    }
    (void)es;
    rc = zero_release(e, h, NPARAM) != ZERO_OK;
out:
    if (rc != 0)
        fprintf(stderr, "rank %d: engine error: %s\n", check_rank, zero_engine_last_error(e));
    zero_engine_destroy(e);
    return rc;
}

int main(int argc, char **argv)
{
    static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    size_t total = 0;
    int nodes = 0, hpz = 1;
    zero_comm_h comm;
    float *host, *device, *plain;
    for (int a = 1; a < argc; a++) {
        nodes |= strcmp(argv[a], "nodes") == 0;
        hpz = strcmp(argv[a], "hpz") == 0 ? 2 : hpz;
    }
    if (nodes)
        rank_check_describe_nodes(2);
    if (rank_check_begin(&comm) != 0)
        return 100;
    for (int p = 0; p < NPARAM; p++)
        total += numels[p];
    host = calloc(total, sizeof(float));
    device = calloc(total, sizeof(float));
    plain = calloc(total, sizeof(float));
    for (int di = 0; di < 3; di++)
        for (int gas = 1; gas <= 2; gas++)
            for (int q = 0; q < 2; q++) {
                qcase_t c = {dtypes[di], gas, q, hpz};
                int hier_host = 0, hier_device = 0, unused;
                const char *what = q ? "AdamW, qwZ too" : "SGD";
                memset(&codec_standin, 0, sizeof(codec_standin));
                EXPECT(train(comm, &c, 1, host, &hier_host) == 0, "%s host qgZ failed", zero_dtype_string(c.dtype));
                EXPECT(train(comm, &c, 2, device, &hier_device) == 0, "%s device path failed",
                       zero_dtype_string(c.dtype));
                EXPECT(train(comm, &c, 0, plain, &unused) == 0, "%s unquantized failed", zero_dtype_string(c.dtype));
                EXPECT(hier_host == hier_device && hier_host == (nodes && check_world >= 4),
                       "two levels: host %d, device path %d, expected %d", hier_host, hier_device,
                       nodes && check_world >= 4);
                EXPECT(codec_standin.reduces > 0 && codec_standin.encodes > 0, "%s %s gas %d: the device path's "
                       "codec ran %d encodes, %d decode-and-sums", zero_dtype_string(c.dtype), what, gas,
                       codec_standin.encodes, codec_standin.reduces);
                EXPECT(codec_standin.dirty_pads == 0, "%d padding bytes went out unzeroed", codec_standin.dirty_pads);
                for (size_t i = 0; i < total; i++)
                    if (memcmp(&host[i], &device[i], sizeof(float)) != 0) {
                        EXPECT(0, "%s %s gas %d: weight %zu = %.9g on the device path, %.9g with host qgZ (bit for "
                               "bit)", zero_dtype_string(c.dtype), what, gas, i, device[i], host[i]);
                        break;
                    }
                EXPECT(memcmp(host, plain, total * sizeof(float)) != 0, "%s %s gas %d: qgZ changed no weight",
                       zero_dtype_string(c.dtype), what, gas);
            }
    free(host);
    free(device);
    free(plain);
    return rank_check_end(comm);
}
