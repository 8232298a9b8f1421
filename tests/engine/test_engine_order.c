/*
 * The engine's bookkeeping for collectives ordered on a stream (device
 * kinds), on the CPU: the host operations table with an order_begin and
 * order_end of the test's own, put in place of the engine's table after
 * create. order_begin lends a numbered token as the completion event (no
 * CUDA field is set in the order, so the host collectives run as plain calls,
 * completing at once at world size 1), order_end takes it back, result_read
 * looks at the engine's state. That runs the device path's host side for
 * real: every collective through engine_*_start, engine_wait handing the
 * wait to the "stream" and deferring the request, engine_settle freeing
 * them where the host waits, destroy returning what is left.
 *
 * Checked, at stages 0-3 with gradient accumulation:
 *  - every token lent is taken back exactly once (none twice, none lost),
 *    by destroy at the latest;
 *  - when the step reads its results (the one wait on the device), every
 *    collective started so far has been waited for on the stream: nothing
 *    the step reads can still be in flight;
 *  - the deferred requests are freed (the test's memory marks see no leak);
 *  - training equals the plain host engine bit for bit.
 *
 * And qwZ's and qgZ's device paths (engine_gather.c quant_gather_start/decode,
 * engine_step.c qgz_device_start/finish) on the CPU: the table also gets the
 * codec operations done by the C codec (codec_standin.h; the kernels' bytes,
 * comm-quant-cuda), so the engine encodes into the wire, moves the bytes in
 * an ordered allgather or all-to-all and decodes (qgZ: decodes and sums)
 * after the wait, as on a GPU; it must give the host engine's qwZ and qgZ
 * weights bit for bit, with every slot's padding zeroed. World size 1 here;
 * qgz_path runs the qgZ path at 2-4 ranks, in one and two levels.
 */
#include "test_main.h"
#include "codec_standin.h"
#include "zero/engine_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zero/zero.h>

#define NP 3
#define MAX_TOKENS 4096

static const int64_t sizes[NP] = {300, 7, 129};

static struct {
    zero_engine_h engine;        /* the engine whose table is the test's */
    unsigned char lent[MAX_TOKENS];
    int next, begins, ends, double_ends, unknown_ends;
    int reads, reads_with_fences, syncs;
} order;

static zero_status_t test_order_begin(void *ctx, zero_comm_order_t *o)
{
    (void)ctx;
    *o = (zero_comm_order_t)ZERO_COMM_ORDER_INIT;   /* host collectives: no CUDA events */
    if (order.next + 1 >= MAX_TOKENS)
        return ZERO_ERR_NO_MEMORY;
    order.next++;
    order.lent[order.next] = 1;
    order.begins++;
    o->done_event = (void *)(uintptr_t)order.next;
    return ZERO_OK;
}

static zero_status_t test_order_end(void *ctx, void *done_event)
{
    uintptr_t t = (uintptr_t)done_event;
    (void)ctx;
    if (t == 0 || t >= MAX_TOKENS) {
        order.unknown_ends++;
    } else if (!order.lent[t]) {
        order.double_ends++;
    } else {
        order.lent[t] = 0;
        order.ends++;
    }
    return ZERO_OK;
}

static zero_status_t test_result_read(void *ctx, const double *record, size_t first, size_t count, double *host)
{
    order.reads++;
    if (order.engine->num_fences != 0)
        order.reads_with_fences++;
    return engine_ops_host.result_read(ctx, record, first, count, host);
}

static zero_status_t test_sync(void *ctx)
{
    (void)ctx;
    order.syncs++;
    return ZERO_OK;
}

static engine_ops_t test_ops;
/* The optimizer block: AdamW; the qgZ case takes SGD, whose update scales with
 * the gradient (AdamW's hardly does, so a wrong average would not show). */
static const char *optimizer = "{\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}}";

static void init_fn(const char *name, size_t offset, size_t count, float *out, void *user_data)
{
    (void)user_data;
    for (size_t i = 0; i < count; i++)
        out[i] = (float)((offset + i) % 13) * 0.01f - 0.05f + (float)name[0] * 1e-4f;
}

/* ordered 2: also the codec in the table (the device paths of qwZ and qgZ);
 * @p qwz, @p qgz: zero_quantized_weights, zero_quantized_gradients. */
static zero_engine_h make(int stage, int ordered, int qwz, int qgz)
{
    char json[512];
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    zero_engine_h e = NULL;
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": 2, \"bf16\": {\"enabled\": true},"
             " \"optimizer\": %s,"
             " \"zero_optimization\": {\"stage\": %d, \"reduce_bucket_size\": 200,"
             " \"stage3_param_persistence_threshold\": 10, \"zero_quantized_weights\": %s,"
             " \"zero_quantized_gradients\": %s}}", optimizer, stage, qwz ? "true" : "false", qgz ? "true" : "false");
    CU_ASSERT_EQUAL_FATAL(zero_engine_create(&ep, &e), ZERO_OK);
    if (ordered) {
        test_ops = engine_ops_host;
        test_ops.name = "host, ordered by the test";
        test_ops.order_begin = test_order_begin;
        test_ops.order_end = test_order_end;
        test_ops.result_read = test_result_read;
        test_ops.sync = test_sync;
        if (ordered == 2)
            codec_standin_install(&test_ops);
        e->ops = &test_ops;   /* same context: the host table's */
        order.engine = e;
    }
    return e;
}

/* Trains 3 steps; returns the weights (bf16 bits) of every parameter, concatenated. */
static void train(int stage, int ordered, int qwz, int qgz, uint16_t *out)
{
    zero_engine_h e = make(stage, ordered, qwz, qgz);
    zero_param_h p[NP];
    size_t at = 0;
    for (int i = 0; i < NP; i++) {
        char name[8];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = ZERO_BF16, .ndim = 1,
                               .shape = {sizes[i]}, .init_fn = init_fn};
        snprintf(name, sizeof(name), "p%d", i);
        CU_ASSERT_EQUAL_FATAL(zero_param_register(e, &d, &p[i]), ZERO_OK);
    }
    CU_ASSERT_EQUAL_FATAL(zero_engine_setup(e), ZERO_OK);
    for (int step = 0; step < 6; step++) {
        float seed;
        CU_ASSERT_EQUAL_FATAL(zero_gather(e, p, NP), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_backward_begin(e, &seed), ZERO_OK);
        for (int i = NP - 1; i >= 0; i--) {
            uint16_t *g = zero_param_grad(p[i]);
            CU_ASSERT_PTR_NOT_NULL_FATAL(g);
            for (int64_t k = 0; k < sizes[i]; k++) {
                float v = ((float)((k * 7 + step * 3 + i) % 17) - 8.0f) * 0.125f * seed, old;
                zero_convert(&old, ZERO_FP32, &g[k], ZERO_BF16, 1);
                old += v;
                zero_convert(&g[k], ZERO_BF16, &old, ZERO_FP32, 1);
            }
            CU_ASSERT_EQUAL_FATAL(zero_grad_ready(e, p[i]), ZERO_OK);
        }
        CU_ASSERT_EQUAL_FATAL(zero_backward_end(e), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_release(e, p, NP), ZERO_OK);
        CU_ASSERT_EQUAL_FATAL(zero_step(e, NULL), ZERO_OK);
    }
    CU_ASSERT_EQUAL_FATAL(zero_gather(e, p, NP), ZERO_OK);
    for (int i = 0; i < NP; i++) {
        memcpy(out + at, zero_param_data(p[i]), (size_t)sizes[i] * sizeof(uint16_t));
        at += (size_t)sizes[i];
    }
    CU_ASSERT_EQUAL_FATAL(zero_release(e, p, NP), ZERO_OK);
    zero_engine_destroy(e);
}

static void test_ordered_bookkeeping(void)
{
    enum { TOTAL = 300 + 7 + 129 };
    for (int stage = 0; stage <= 3; stage++) {
        ZERO_TEST_MEM_MARK();
        uint16_t plain[TOTAL], ordered[TOTAL];
        memset(&order, 0, sizeof(order));
        train(stage, 0, 0, 0, plain);
        train(stage, 1, 0, 0, ordered);
        printf("\n    stage %d: %d collectives ordered, %d step reads (%d with collectives unwaited), %d syncs, "
               "%d tokens returned twice, %d unknown", stage, order.begins, order.reads, order.reads_with_fences,
               order.syncs, order.double_ends, order.unknown_ends);
        CU_ASSERT(order.begins > 0);
        CU_ASSERT_EQUAL(order.ends, order.begins);
        CU_ASSERT_EQUAL(order.double_ends, 0);
        CU_ASSERT_EQUAL(order.unknown_ends, 0);
        CU_ASSERT_EQUAL(order.reads, 3);   /* once per optimizer step: 6 micro-batches, 2 per step */
        CU_ASSERT_EQUAL(order.reads_with_fences, 0);
        CU_ASSERT(order.syncs >= 2);       /* set-up: before and after */
        CU_ASSERT_EQUAL(memcmp(plain, ordered, sizeof(plain)), 0);
        ZERO_TEST_ASSERT_NO_LEAK();
    }
}

static void test_qwz_device_path(void)
{
    enum { TOTAL = 300 + 7 + 129 };
    ZERO_TEST_MEM_MARK();
    uint16_t host_qwz[TOTAL], device_path[TOTAL], unquantized[TOTAL];
    memset(&order, 0, sizeof(order));
    memset(&codec_standin, 0, sizeof(codec_standin));
    train(3, 0, 1, 0, host_qwz);
    train(3, 0, 0, 0, unquantized);
    train(3, 2, 1, 0, device_path);
    printf("\n    %d encodes, %d decodes, %d collectives ordered", codec_standin.encodes, codec_standin.decodes,
           order.begins);
    CU_ASSERT(codec_standin.encodes > 0);
    CU_ASSERT_EQUAL(codec_standin.decodes, codec_standin.encodes);   /* world size 1: one block a gather */
    CU_ASSERT_EQUAL(codec_standin.reduces, 0);
    CU_ASSERT_EQUAL(codec_standin.dirty_pads, 0);   /* every slot's padding zeroed before the allgather */
    CU_ASSERT_EQUAL(order.ends, order.begins);
    CU_ASSERT_EQUAL(order.double_ends, 0);
    CU_ASSERT_EQUAL(memcmp(host_qwz, device_path, sizeof(host_qwz)), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(host_qwz, unquantized, sizeof(host_qwz)), 0);   /* qwZ took effect */
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_qgz_device_path(void)
{
    enum { TOTAL = 300 + 7 + 129 };
    ZERO_TEST_MEM_MARK();
    uint16_t host_qgz[TOTAL], device_path[TOTAL], unquantized[TOTAL];
    memset(&order, 0, sizeof(order));
    memset(&codec_standin, 0, sizeof(codec_standin));
    optimizer = "{\"type\": \"SGD\", \"params\": {\"lr\": 0.05, \"momentum\": 0.9}}";
    train(3, 0, 0, 1, host_qgz);
    train(3, 0, 0, 0, unquantized);
    train(3, 2, 0, 1, device_path);
    optimizer = "{\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}}";
    printf("\n    %d encodes, %d decode-and-sums, %d collectives ordered", codec_standin.encodes,
           codec_standin.reduces, order.begins);
    CU_ASSERT(codec_standin.reduces > 0);
    CU_ASSERT_EQUAL(codec_standin.encodes, codec_standin.reduces);   /* world size 1: one block a reduction */
    CU_ASSERT_EQUAL(codec_standin.decodes, 0);
    CU_ASSERT_EQUAL(codec_standin.dirty_pads, 0);
    CU_ASSERT_EQUAL(order.ends, order.begins);
    CU_ASSERT_EQUAL(order.double_ends, 0);
    CU_ASSERT_EQUAL(order.reads_with_fences, 0);
    CU_ASSERT_EQUAL(memcmp(host_qgz, device_path, sizeof(host_qgz)), 0);
    CU_ASSERT_NOT_EQUAL(memcmp(host_qgz, unquantized, sizeof(host_qgz)), 0);   /* qgZ took effect */
    ZERO_TEST_ASSERT_NO_LEAK();
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"collectives ordered on a stream: every wait matched, none open at the step's read", test_ordered_bookkeeping},
        {"qwZ's device path (encode, ordered byte allgather, decode) equals the host's qwZ", test_qwz_device_path},
        {"qgZ's device path (encode, ordered all-to-all, decode and sum) equals the host's qgZ",
         test_qgz_device_path},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"engine-order", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
