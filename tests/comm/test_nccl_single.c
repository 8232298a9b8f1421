/*
 * The NCCL backend (lib/comm/nccl.c) and the device check kernel
 * (lib/util/device_check.cu) on one GPU, called directly: a communicator of
 * one rank, so NCCL itself runs every collective (the public comm layer
 * short-circuits a world of one to device copies and would never call it).
 *
 * Exits 77 (meson: skipped) where the CUDA runtime reports no device.
 *
 * Expected values: with one rank, sum, avg and max of one contribution, the
 * reduce-scatter block, the gathered block and the broadcast are the input
 * itself. Compared bit for bit (tolerance 0): NCCL's avg over one rank
 * multiplies by 1.0, exact in every dtype. The element after the last one
 * counted holds a sentinel that must survive (no overrun), and count 0 must
 * leave the receive buffer untouched.
 */
#include "test_main.h"
#include "util/clock.h"
#include "comm/nccl.h"
#include "util/alloc.h"
#include "util/device_check.h"
#include "util/half.h"
#include "late_fill.h"

#include <cuda_runtime_api.h>
/* nccl.h declares a few functions as f() (no prototype). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <nccl.h>
#pragma GCC diagnostic pop
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CUDA_OK(expr) CU_ASSERT_EQUAL_FATAL((int)(expr), (int)cudaSuccess)

/* The largest count runs the check kernel's grid-stride loop (over 4096 blocks
 * of 256). ZERO_TEST_QUICK=1 (under compute-sanitizer) swaps it for 65537. */
static size_t counts[] = {0, 1, 7, 1000003};
static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_FP16, ZERO_BF16};
#define N_COUNTS (sizeof(counts) / sizeof(counts[0]))
#define N_DTYPES (sizeof(dtypes) / sizeof(dtypes[0]))
#define SENTINEL_BYTE 0xA5

/* @p n elements of @p dtype: finite, mixed signs, distinct neighbours, plus
 * the extremes (largest finite, smallest subnormal, negative zero) early on. */
static void *make_data(zero_dtype_t dtype, size_t n, unsigned salt)
{
    size_t esize = zero_dtype_size(dtype);
    unsigned char *h = malloc(n * esize + 1);
    if (h == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        float f = (float)((int)(((uint32_t)i * 2654435761u + salt) % 4001u) - 2000) / 64.0f;
        if (dtype == ZERO_FP32) {
            ((float *)h)[i] = f;
        } else if (dtype == ZERO_FP16) {
            ((uint16_t *)h)[i] = zero_f32_to_f16(f);
        } else {
            ((uint16_t *)h)[i] = zero_f32_to_bf16(f);
        }
    }
    /* extremes in the first few elements (only where the buffer is long enough) */
    if (n > 6) {
        if (dtype == ZERO_FP32) {
            uint32_t ext[] = {0x7f7fffffu, 0xff7fffffu, 0x00000001u, 0x80000000u};
            memcpy(h + 2 * esize, ext, sizeof(ext));
        } else if (dtype == ZERO_FP16) {
            uint16_t ext[] = {0x7bff, 0xfbff, 0x0001, 0x8000};
            memcpy(h + 2 * esize, ext, sizeof(ext));
        } else {
            uint16_t ext[] = {0x7f7f, 0xff7f, 0x0001, 0x8000};
            memcpy(h + 2 * esize, ext, sizeof(ext));
        }
    }
    return h;
}

/* Polls zero_nccl_test until it leaves ZERO_INPROGRESS (30 s at most). */
static zero_status_t wait_event(zero_nccl_t *nccl, void *event)
{
    double deadline = zero_clock_now() + 30.0;
    zero_status_t st;
    while ((st = zero_nccl_test(nccl, event)) == ZERO_INPROGRESS) {
        if (zero_clock_now() > deadline)
            return ZERO_ERR_TIMEOUT;
    }
    return st;
}

typedef struct coll_case {
    const char *name;
    zero_coll_kind_t kind;
    zero_comm_op_t op;
} coll_case_t;

static const coll_case_t cases[] = {
    {"allreduce sum", ZERO_COLL_ALLREDUCE, ZERO_COMM_SUM},
    {"allreduce avg", ZERO_COLL_ALLREDUCE, ZERO_COMM_AVG},
    {"allreduce max", ZERO_COLL_ALLREDUCE, ZERO_COMM_MAX},
    {"reduce-scatter sum", ZERO_COLL_REDUCE_SCATTER, ZERO_COMM_SUM},
    {"reduce-scatter avg", ZERO_COLL_REDUCE_SCATTER, ZERO_COMM_AVG},
    {"reduce-scatter max", ZERO_COLL_REDUCE_SCATTER, ZERO_COMM_MAX},
    {"allgather", ZERO_COLL_ALLGATHER, ZERO_COMM_SUM},
    {"broadcast", ZERO_COLL_BROADCAST, ZERO_COMM_SUM},
};

static int failures;

/* One collective; returns 0 when the result matched. */
static int run_case(zero_nccl_t *nccl, const coll_case_t *c, zero_dtype_t dtype, size_t count, int in_place)
{
    size_t esize = zero_dtype_size(dtype), n = count + 1, bytes = n * esize;
    unsigned char *in = make_data(dtype, n, (unsigned)(c->kind * 31 + c->op * 7 + dtype));
    unsigned char *out = malloc(bytes), *out_send = malloc(bytes), *want = malloc(bytes);
    void *dsend = NULL, *drecv = NULL, *event = NULL;
    zero_coll_desc_t d;
    zero_status_t st;
    int bad = 1;

    CU_ASSERT_FATAL(in != NULL && out != NULL && out_send != NULL && want != NULL);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "test send", &dsend), ZERO_OK);
    CUDA_OK(cudaMemcpy(dsend, in, bytes, cudaMemcpyHostToDevice));
    if (in_place) {
        drecv = dsend;
        memcpy(want, in, bytes);                  /* result in place; the element after stays */
    } else {
        CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "test recv", &drecv), ZERO_OK);
        CUDA_OK(cudaMemset(drecv, SENTINEL_BYTE, bytes));
        memset(want, SENTINEL_BYTE, bytes);
        memcpy(want, in, count * esize);          /* the sentinel after the last element stays */
    }
    memset(&d, 0, sizeof(d));
    d.kind = c->kind;
    d.sendbuf = dsend;
    d.recvbuf = drecv;
    d.count = count;
    d.dtype = dtype;
    d.op = c->op;
    d.root = 0;
    d.mem_kind = ZERO_MEM_DEVICE;
    st = zero_nccl_start(nccl, &d, &event);
    CU_ASSERT_EQUAL(st, ZERO_OK);
    if (st == ZERO_OK) {
        st = wait_event(nccl, event);
        CU_ASSERT_EQUAL(st, ZERO_OK);
        zero_nccl_event_free(event);
    }
    if (st == ZERO_OK) {
        CUDA_OK(cudaMemcpy(out, drecv, bytes, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaMemcpy(out_send, dsend, bytes, cudaMemcpyDeviceToHost));
        bad = memcmp(out, want, bytes) != 0 || (!in_place && memcmp(out_send, in, bytes) != 0);
        if (bad) {
            size_t first = 0;
            while (first < n && memcmp(out + first * esize, want + first * esize, esize) == 0)
                first++;
            fprintf(stderr, "  %s %s count %zu%s: first difference at element %zu of %zu%s\n", c->name,
                    zero_dtype_string(dtype), count, in_place ? " in place" : "", first, n,
                    first == n ? " (the send buffer changed)" : "");
        }
        CU_ASSERT_FALSE(bad);
    } else {
        fprintf(stderr, "  %s %s count %zu%s: %s\n", c->name, zero_dtype_string(dtype), count,
                in_place ? " in place" : "", zero_status_string(st));
    }
    if (!in_place)
        zero_mem_free(drecv);
    zero_mem_free(dsend);
    free(in);
    free(out);
    free(out_send);
    free(want);
    return bad;
}

static zero_nccl_t *create_single(void)
{
    unsigned char id[ZERO_NCCL_ID_BYTES];
    zero_nccl_t *nccl = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_nccl_unique_id(id), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_nccl_create(id, 0, 1, 0, NULL, NULL, 60.0, NULL, NULL, &nccl), ZERO_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(nccl);
    return nccl;
}

static void run_all(int in_place)
{
    ZERO_TEST_MEM_MARK();
    zero_nccl_t *nccl = create_single();
    int bad = 0, total = 0;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        for (size_t t = 0; t < N_DTYPES; t++)
            for (size_t k = 0; k < N_COUNTS; k++) {
                bad += run_case(nccl, &cases[c], dtypes[t], counts[k], in_place);
                total++;
            }
    printf("\n  %d of %d collectives%s matched bit for bit\n", total - bad, total, in_place ? " (in place)" : "");
    failures += bad;
    zero_nccl_destroy(nccl, 0);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_collectives(void)
{
    run_all(0);
}

static void test_collectives_in_place(void)
{
    run_all(1);
}

/* zero_nccl_self_copy: device to device, same pointer and zero bytes are no-ops. */
static void test_self_copy(void)
{
    ZERO_TEST_MEM_MARK();
    size_t n = counts[N_COUNTS - 1], bytes = n * sizeof(float);
    float *in = make_data(ZERO_FP32, n, 5), *out = malloc(bytes);
    void *a = NULL, *b = NULL;
    CU_ASSERT_FATAL(in != NULL && out != NULL);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "copy src", &a), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "copy dst", &b), ZERO_OK);
    CUDA_OK(cudaMemcpy(a, in, bytes, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMemset(b, SENTINEL_BYTE, bytes));
    /* all but the last element: the last keeps the sentinel */
    CU_ASSERT_EQUAL(zero_nccl_self_copy(b, a, bytes - sizeof(float), NULL, NULL), ZERO_OK);
    CUDA_OK(cudaMemcpy(out, b, bytes, cudaMemcpyDeviceToHost));
    CU_ASSERT_EQUAL(memcmp(out, in, bytes - sizeof(float)), 0);
    {
        uint32_t last;
        memcpy(&last, &out[n - 1], sizeof(last));
        CU_ASSERT_EQUAL(last, 0xA5A5A5A5u);
    }
    /* zero bytes and dst == src change nothing */
    CUDA_OK(cudaMemset(b, 0, bytes));
    CU_ASSERT_EQUAL(zero_nccl_self_copy(b, a, 0, NULL, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(zero_nccl_self_copy(a, a, bytes, NULL, NULL), ZERO_OK);
    CUDA_OK(cudaMemcpy(out, b, sizeof(float), cudaMemcpyDeviceToHost));
    CU_ASSERT_EQUAL(out[0], 0.0f);
    CUDA_OK(cudaMemcpy(out, a, bytes, cudaMemcpyDeviceToHost));
    CU_ASSERT_EQUAL(memcmp(out, in, bytes), 0);
    zero_mem_free(a);
    zero_mem_free(b);
    free(in);
    free(out);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* An agreement as the communicator runs it between ranks, here the answer of
 * "the other ranks" is given (ctx): records what this rank reported. */
static int agree_calls;
static zero_status_t agree_local;
static zero_status_t record_agree(void *ctx, zero_status_t local)
{
    agree_calls++;
    agree_local = local;
    return local != ZERO_OK ? local : *(const zero_status_t *)ctx;
}

/* Abort: right after create, and after a completed collective; then the
 * abort-mode destroy (which must not abort twice). Nothing leaks. Also the
 * failure paths of create. */
static void test_abort_and_create_errors(void)
{
    ZERO_TEST_MEM_MARK();
    unsigned char id[ZERO_NCCL_ID_BYTES];
    zero_nccl_t *nccl = NULL;
    int devices = zero_nccl_device_count();

    nccl = create_single();
    zero_nccl_abort(nccl);
    zero_nccl_abort(nccl);            /* a second abort is a no-op */
    zero_nccl_destroy(nccl, 1);

    nccl = create_single();
    CU_ASSERT_EQUAL(run_case(nccl, &cases[0], ZERO_FP32, counts[N_COUNTS - 1], 0), 0);
    zero_nccl_abort(nccl);
    zero_nccl_destroy(nccl, 0);       /* aborted before: destroy takes the abort path */

    nccl = create_single();
    zero_nccl_destroy(nccl, 1);       /* abort-mode destroy without an abort first */
    zero_nccl_destroy(NULL, 1);

    /* a device that does not exist, and a rank outside the world: errors, no leak */
    nccl = NULL;
    CU_ASSERT_EQUAL(zero_nccl_unique_id(id), ZERO_OK);
    CU_ASSERT_EQUAL(zero_nccl_create(id, 0, 1, devices, NULL, NULL, 60.0, NULL, NULL, &nccl), ZERO_ERR_CUDA);
    CU_ASSERT_PTR_NULL(nccl);
    CU_ASSERT_EQUAL(zero_nccl_unique_id(id), ZERO_OK);
    CU_ASSERT_EQUAL(zero_nccl_create(id, 1, 1, 0, NULL, NULL, 60.0, NULL, NULL, &nccl), ZERO_ERR_NCCL);
    CU_ASSERT_PTR_NULL(nccl);
    /* the agreement: a rank whose set-up failed still takes part (and reports
     * its failure); a rank whose set-up worked stops when another's failed */
    {
        zero_status_t others = ZERO_OK;
        agree_calls = 0;
        CU_ASSERT_EQUAL(zero_nccl_unique_id(id), ZERO_OK);
        CU_ASSERT_EQUAL(zero_nccl_create(id, 0, 1, devices, record_agree, &others, 60.0, NULL, NULL, &nccl), ZERO_ERR_CUDA);
        CU_ASSERT_EQUAL(agree_calls, 1);
        CU_ASSERT_EQUAL(agree_local, ZERO_ERR_CUDA);
        CU_ASSERT_PTR_NULL(nccl);
        (void)cudaGetLastError();
        others = ZERO_ERR_CUDA;
        CU_ASSERT_EQUAL(zero_nccl_create(id, 0, 1, 0, record_agree, &others, 60.0, NULL, NULL, &nccl), ZERO_ERR_CUDA);
        CU_ASSERT_EQUAL(agree_calls, 2);
        CU_ASSERT_EQUAL(agree_local, ZERO_OK);
        CU_ASSERT_PTR_NULL(nccl);
        /* the id was not spent: the same id still makes a communicator */
        others = ZERO_OK;
        CU_ASSERT_EQUAL(zero_nccl_create(id, 0, 1, 0, record_agree, &others, 60.0, NULL, NULL, &nccl), ZERO_OK);
        CU_ASSERT_PTR_NOT_NULL(nccl);
        zero_nccl_destroy(nccl, 0);
        nccl = NULL;
    }
    /* the failed cudaSetDevice stays in the runtime's last-error slot: clear it,
     * or the next kernel launch check (cudaGetLastError) would report it */
    (void)cudaGetLastError();
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* ---- zero_cuda_flag_nonfinite ---- */

/* which: 0 +inf, 1 -inf, 2 quiet NaN, 3 a NaN with the sign and a low mantissa bit */
static const void *bits_of(zero_dtype_t dtype, int which)
{
    static const uint32_t f32[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xff800001u};
    static const uint16_t f16[] = {0x7c00, 0xfc00, 0x7e00, 0xfc01};
    static const uint16_t b16[] = {0x7f80, 0xff80, 0x7fc0, 0xff81};
    if (dtype == ZERO_FP32)
        return &f32[which];
    return dtype == ZERO_FP16 ? &f16[which] : &b16[which];
}

static unsigned run_flag(const void *d, size_t count, zero_dtype_t dtype, unsigned *dflag, unsigned preset)
{
    unsigned flag = 0xdeadu;
    CUDA_OK(cudaMemcpy(dflag, &preset, sizeof(preset), cudaMemcpyHostToDevice));
    CU_ASSERT_EQUAL(zero_cuda_flag_nonfinite(d, count, (int)dtype, dflag, NULL), (int)cudaSuccess);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(&flag, dflag, sizeof(flag), cudaMemcpyDeviceToHost));
    return flag;
}

static void test_flag_nonfinite(void)
{
    ZERO_TEST_MEM_MARK();
    void *dflag = NULL;
    int checks = 0, wrong = 0;
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, sizeof(unsigned), "flag", &dflag), ZERO_OK);
    for (size_t t = 0; t < N_DTYPES; t++) {
        zero_dtype_t dt = dtypes[t];
        size_t esize = zero_dtype_size(dt);
        for (size_t k = 0; k < N_COUNTS; k++) {
            size_t count = counts[k], n = count + 1, bytes = n * esize;
            unsigned char *h = make_data(dt, n, 11);
            unsigned char *d = NULL;
            size_t pos[3];
            CU_ASSERT_FATAL(h != NULL);
            /* an inf just past the counted elements must not be seen */
            memcpy(h + count * esize, bits_of(dt, 0), esize);
            CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "flag data", (void **)&d), ZERO_OK);
            CUDA_OK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
            /* finite data (including the largest finite values): the flag stays; bits are ORed in */
            wrong += run_flag(d, count, dt, dflag, 0) != 0;
            wrong += run_flag(d, count, dt, dflag, 2) != 2;
            checks += 2;
            if (count > 0) {
                pos[0] = 0;
                pos[1] = count / 2;
                pos[2] = count - 1;
                for (int p = 0; p < 3; p++) {
                    for (int w = 0; w < 4; w++) {
                        unsigned got;
                        CUDA_OK(cudaMemcpy(d + pos[p] * esize, bits_of(dt, w), esize, cudaMemcpyHostToDevice));
                        got = run_flag(d, count, dt, dflag, 0);
                        if (got != 1)
                            fprintf(stderr, "  nonfinite %s count %zu value %d at %zu: flag %u, want 1\n",
                                    zero_dtype_string(dt), count, w, pos[p], got);
                        wrong += got != 1;
                        wrong += run_flag(d, count, dt, dflag, 2) != 3;
                        checks += 2;
                        /* restore the finite element */
                        CUDA_OK(cudaMemcpy(d + pos[p] * esize, h + pos[p] * esize, esize, cudaMemcpyHostToDevice));
                    }
                }
                /* restored: clean again */
                wrong += run_flag(d, count, dt, dflag, 0) != 0;
                checks++;
            } else {
                /* count 0 with an inf in the first element: nothing is read */
                wrong += run_flag(d, 0, dt, dflag, 0) != 0;
                checks++;
            }
            zero_mem_free(d);
            free(h);
        }
    }
    printf("\n  %d of %d non-finite checks right\n", checks - wrong, checks);
    CU_ASSERT_EQUAL(wrong, 0);
    zero_mem_free(dflag);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* A CUDA error pending before the call is not the check's: returned negated
 * (device_check.h), nothing launched, the error left in place. A non-sticky
 * one here (cudaSetDevice(-1)); before, the kernel ran and the call returned
 * that error as its own launch's. */
static void test_flag_nonfinite_earlier_error(void)
{
    ZERO_TEST_MEM_MARK();
    void *dflag = NULL, *d = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, sizeof(unsigned), "flag", &dflag), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, sizeof(uint32_t), "flag data", &d), ZERO_OK);
    CUDA_OK(cudaMemcpy(d, bits_of(ZERO_FP32, 0), sizeof(uint32_t), cudaMemcpyHostToDevice));   /* +inf */
    CUDA_OK(cudaMemset(dflag, 0, sizeof(unsigned)));
    CUDA_OK(cudaDeviceSynchronize());
    CU_ASSERT_EQUAL(cudaSetDevice(-1), cudaErrorInvalidDevice);   /* pending on this thread, not sticky */
    CU_ASSERT_EQUAL(zero_cuda_flag_nonfinite(d, 1, (int)ZERO_FP32, dflag, NULL), -(int)cudaErrorInvalidDevice);
    CU_ASSERT_EQUAL(cudaGetLastError(), cudaErrorInvalidDevice);   /* still there for its owner; now read */
    CU_ASSERT_EQUAL(run_flag(d, 1, ZERO_FP32, dflag, 0), 1);   /* read: launches again (run_flag presets 0) */
    zero_mem_free(d);
    zero_mem_free(dflag);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/*
 * Collectives ordered after a kernel on the caller's stream (zero_comm_order_t):
 * a kernel that spins for a while and then writes the send buffer runs on a
 * user stream; the collective is started at once with wait_event recorded
 * after that kernel, and the user stream waits on done_event before copying
 * the result back. Without the ordering the collective would read the send
 * buffer's old contents (zeros). Both paths: the NCCL backend (a 1-rank NCCL
 * communicator, called directly) and the public API in a world of one (the
 * self backend's ordered device copy).
 */
#define ORDER_N ((size_t)1 << 20)
#define ORDER_SPIN_CYCLES 200000000LL   /* about 0.1 s at 2 GHz */

static int order_result_ok(const float *h, size_t n, float want)
{
    for (size_t i = 0; i < n; i++)
        if (h[i] != want) {
            fprintf(stderr, "  element %zu is %g, want %g (the collective ran before the kernel)\n", i,
                    (double)h[i], (double)want);
            return 0;
        }
    return 1;
}

static void test_ordered_after_kernel(void)
{
    ZERO_TEST_MEM_MARK();
    size_t bytes = ORDER_N * sizeof(float);
    float *h = malloc(bytes);
    void *dsend = NULL, *drecv = NULL, *event = NULL;
    cudaStream_t stream;
    cudaEvent_t ready, done;
    zero_nccl_t *nccl = create_single();
    zero_coll_desc_t d;
    zero_comm_h comm = NULL;
    zero_comm_request_h req = NULL;
    zero_comm_order_t order = ZERO_COMM_ORDER_INIT;

    CU_ASSERT_PTR_NOT_NULL_FATAL(h);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "order send", &dsend), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_mem_alloc(ZERO_MEM_DEVICE, bytes, "order recv", &drecv), ZERO_OK);
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUDA_OK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
    CUDA_OK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));

    /* 1. the NCCL backend */
    CUDA_OK(cudaMemset(dsend, 0, bytes));
    CUDA_OK(cudaMemset(drecv, 0, bytes));
    CUDA_OK(zero_test_late_fill(dsend, ORDER_N, 3.0f, ORDER_SPIN_CYCLES, stream));
    CUDA_OK(cudaEventRecord(ready, stream));
    memset(&d, 0, sizeof(d));
    d.kind = ZERO_COLL_ALLREDUCE;
    d.sendbuf = dsend;
    d.recvbuf = drecv;
    d.count = ORDER_N;
    d.dtype = ZERO_FP32;
    d.op = ZERO_COMM_SUM;
    d.mem_kind = ZERO_MEM_DEVICE;
    d.wait_event = ready;
    d.done_event = done;
    CU_ASSERT_EQUAL_FATAL(zero_nccl_start(nccl, &d, &event), ZERO_OK);
    CUDA_OK(cudaStreamWaitEvent(stream, done, 0));
    CUDA_OK(cudaMemcpyAsync(h, drecv, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CU_ASSERT(order_result_ok(h, ORDER_N, 3.0f));
    CU_ASSERT_EQUAL(wait_event(nccl, event), ZERO_OK);
    zero_nccl_event_free(event);

    /* 2. the public API, world of one (self backend) */
    CU_ASSERT_EQUAL_FATAL(zero_comm_create(NULL, &comm), ZERO_OK);
    CUDA_OK(cudaMemset(dsend, 0, bytes));
    CUDA_OK(cudaMemset(drecv, 0, bytes));
    CUDA_OK(zero_test_late_fill(dsend, ORDER_N, 5.0f, ORDER_SPIN_CYCLES, stream));
    CUDA_OK(cudaEventRecord(ready, stream));
    order.field_mask = ZERO_COMM_ORDER_FIELD_WAIT_EVENT | ZERO_COMM_ORDER_FIELD_DONE_EVENT;
    order.wait_event = ready;
    order.done_event = done;
    CU_ASSERT_EQUAL(zero_comm_allreduce_start_ordered(comm, dsend, drecv, ORDER_N, ZERO_FP32, ZERO_COMM_SUM,
                                                      ZERO_MEM_DEVICE, &order, &req), ZERO_OK);
    CUDA_OK(cudaStreamWaitEvent(stream, done, 0));
    CUDA_OK(cudaMemcpyAsync(h, drecv, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CU_ASSERT(order_result_ok(h, ORDER_N, 5.0f));
    CU_ASSERT_EQUAL(zero_comm_request_wait(req), ZERO_OK);
    zero_comm_request_free(req);

    /* 3. in place, world of one: nothing moves and the host does not wait;
     * done_event still comes after the kernel (the device engine's reductions) */
    CUDA_OK(zero_test_late_fill(dsend, ORDER_N, 7.0f, ORDER_SPIN_CYCLES, stream));
    CUDA_OK(cudaEventRecord(ready, stream));
    req = NULL;
    CU_ASSERT_EQUAL(zero_comm_allreduce_start_ordered(comm, dsend, dsend, ORDER_N, ZERO_FP32, ZERO_COMM_AVG,
                                                      ZERO_MEM_DEVICE, &order, &req), ZERO_OK);
    /* The kernel spins ~0.1 s: had the call waited for it on the host, its
     * event would be complete (not under compute-sanitizer, which may slow
     * the call itself that much). */
    if (getenv("ZERO_TEST_QUICK") == NULL)
        CU_ASSERT_EQUAL(cudaEventQuery(ready), cudaErrorNotReady);
    CUDA_OK(cudaStreamWaitEvent(stream, done, 0));
    CUDA_OK(cudaMemcpyAsync(h, dsend, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    CU_ASSERT(order_result_ok(h, ORDER_N, 7.0f));
    CU_ASSERT_EQUAL(zero_comm_request_wait(req), ZERO_OK);
    zero_comm_request_free(req);
    zero_comm_destroy(comm);

    cudaEventDestroy(ready);
    cudaEventDestroy(done);
    cudaStreamDestroy(stream);
    zero_nccl_destroy(nccl, 0);
    zero_mem_free(dsend);
    zero_mem_free(drecv);
    free(h);
    ZERO_TEST_ASSERT_NO_LEAK();
}

static CU_TestInfo nccl_tests[] = {
    {"every collective, dtype and count on a 1-rank NCCL communicator", test_collectives},
    {"the same in place", test_collectives_in_place},
    {"self copy", test_self_copy},
    {"collectives ordered after a kernel on a user stream", test_ordered_after_kernel},
    {"abort, abort-mode destroy and create errors leave no leak", test_abort_and_create_errors},
    {"device non-finite flag", test_flag_nonfinite},
    {"device non-finite flag: an earlier CUDA error is not the check's", test_flag_nonfinite_earlier_error},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"nccl-single", NULL, NULL, NULL, NULL, nccl_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    int count = 0, driver = 0, runtime = 0, nccl_version = 0;
    struct cudaDeviceProp prop;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("no CUDA device (%s): skipped\n", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return 77;
    }
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    ncclGetVersion(&nccl_version);
    if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess)
        printf("device 0 of %d: %s (sm_%d%d, %.1f GiB); CUDA driver %d, runtime %d; NCCL %d\n", count, prop.name,
               prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), driver, runtime,
               nccl_version);
    if (getenv("ZERO_TEST_QUICK") != NULL && strcmp(getenv("ZERO_TEST_QUICK"), "1") == 0) {
        counts[N_COUNTS - 1] = 65537;
        printf("ZERO_TEST_QUICK=1: largest count %zu\n", counts[N_COUNTS - 1]);
    }
    count = zero_test_main(argc, argv, suites);
    if (failures != 0)
        printf("%d collectives did not match\n", failures);
    return count;
}
