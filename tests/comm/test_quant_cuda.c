/*
 * lib/comm/quant_cuda.cu: the int8 block codec on the GPU against the C codec
 * (quant.c), bit for bit, encoded bytes and decoded values of every dtype:
 * lengths around the block size and odd ones, zeros, constants, subnormals,
 * inf and NaN inside a block, and random bit patterns (every class of float
 * at once). Both compute each element with quant_elem.h. And qgZ's
 * decode-and-sum (zero_cuda_quant_reduce8) against the C path's arithmetic
 * (quant_sum_ref.h: zero_quant_decode_add_f32 over the blocks in order, the
 * division, the cast, as quant_coll.c's decode_reduced does): the same bits,
 * a NaN being any NaN.
 * ZERO_TEST_QUICK=1 (gpu-check's racecheck step) leaves out the longest length.
 * Exits 77 (meson: skipped) where the CUDA runtime reports no device.
 */
#include "test_main.h"
#include "comm/quant.h"
#include "comm/quant_coll.h"
#include "comm/quant_cuda.h"
#include "quant_sum_ref.h"
#include "util/half.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const size_t lengths[] = {1, 2, 3, 255, 256, 257, 511, 513, 1000, 4099, 100003};
#define NLEN (sizeof(lengths) / sizeof(lengths[0]))
static const zero_dtype_t dtypes[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};

typedef enum { FILL_RANDOM, FILL_BITS, FILL_ZEROS, FILL_CONSTANT, FILL_SUBNORMAL, FILL_SPECIAL, FILL_KINDS } fill_t;
static const char *fill_names[] = {"random", "bit patterns", "zeros", "constant", "subnormal", "inf/nan"};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

/* n values of @p dtype of one kind into @p x (element size of dtype). */
static void fill(fill_t kind, zero_dtype_t dtype, void *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = zero_test_xorshift(&rng);
        float v;
        switch (kind) {
        case FILL_RANDOM: v = (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0) * 3.5f; break;
        case FILL_BITS: v = zero_bits_f32((uint32_t)r); break;
        case FILL_ZEROS: v = (i & 1) ? -0.0f : 0.0f; break;
        case FILL_CONSTANT: v = -1.25f; break;
        case FILL_SUBNORMAL: v = zero_bits_f32((uint32_t)(r & 0x807fffffu)); break;   /* exponent 0 */
        default:   /* mostly finite, with inf, -inf and NaN in some blocks */
            v = (i % 997 == 5) ? INFINITY : (i % 1499 == 7) ? -INFINITY : (i % 2003 == 11) ? NAN : (float)(i % 13) - 6.0f;
            break;
        }
        if (dtype == ZERO_FP32)
            ((float *)x)[i] = v;
        else if (dtype == ZERO_BF16)
            ((uint16_t *)x)[i] = kind == FILL_BITS ? (uint16_t)r : zero_f32_to_bf16(v);
        else
            ((uint16_t *)x)[i] = kind == FILL_BITS ? (uint16_t)r : zero_f32_to_f16(v);
    }
}

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    CU_ASSERT_FATAL(cudaMalloc(&p, bytes ? bytes : 1) == cudaSuccess);
    return p;
}

static void test_against_c_codec(void)
{
    size_t nlen = getenv("ZERO_TEST_QUICK") != NULL ? NLEN - 1 : NLEN;
    size_t most = lengths[NLEN - 1];
    size_t wire = zero_quant_bytes(ZERO_QUANT_INT8, most);
    void *x = malloc(most * 4), *enc_c = malloc(wire), *enc_g = malloc(wire), *y_c = malloc(most * 4),
         *y_g = malloc(most * 4);
    void *dx = dev_alloc(most * 4), *denc = dev_alloc(wire), *dy = dev_alloc(most * 4);
    CU_ASSERT_FATAL(x && enc_c && enc_g && y_c && y_g);
    for (int k = 0; k < FILL_KINDS; k++)
        for (size_t d = 0; d < 3; d++)
            for (size_t l = 0; l < nlen; l++) {
                zero_dtype_t dt = dtypes[d];
                size_t n = lengths[l], es = zero_dtype_size(dt), bytes = zero_quant_bytes(ZERO_QUANT_INT8, n);
                fill((fill_t)k, dt, x, n);
                CU_ASSERT_FATAL(zero_quant_encode(ZERO_QUANT_INT8, dt, x, n, enc_c) == 0);
                CU_ASSERT_FATAL(cudaMemcpy(dx, x, n * es, cudaMemcpyHostToDevice) == cudaSuccess);
                CU_ASSERT_FATAL(zero_cuda_quant_encode8(dx, (int)dt, n, denc, NULL) == 0);
                CU_ASSERT_FATAL(cudaMemcpy(enc_g, denc, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
                if (memcmp(enc_c, enc_g, bytes) != 0) {
                    fprintf(stderr, "encode: %s %s n=%zu differs from the C codec\n", fill_names[k],
                            zero_dtype_string(dt), n);
                    CU_FAIL("encoded bytes differ");
                }
                /* decoded from the C codec's bytes into every dtype */
                CU_ASSERT_FATAL(cudaMemcpy(denc, enc_c, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
                for (size_t o = 0; o < 3; o++) {
                    size_t os = zero_dtype_size(dtypes[o]);
                    CU_ASSERT_FATAL(zero_quant_decode(ZERO_QUANT_INT8, enc_c, n, dtypes[o], y_c) == 0);
                    CU_ASSERT_FATAL(zero_cuda_quant_decode8(denc, n, (int)dtypes[o], dy, NULL) == 0);
                    CU_ASSERT_FATAL(cudaMemcpy(y_g, dy, n * os, cudaMemcpyDeviceToHost) == cudaSuccess);
                    if (memcmp(y_c, y_g, n * os) != 0) {
                        fprintf(stderr, "decode: %s %s n=%zu into %s differs from the C codec\n", fill_names[k],
                                zero_dtype_string(dt), n, zero_dtype_string(dtypes[o]));
                        CU_FAIL("decoded values differ");
                    }
                }
            }
    CU_ASSERT(zero_cuda_quant_encode8(dx, (int)ZERO_U8, 10, denc, NULL) != 0);   /* refused, nothing enqueued */
    CU_ASSERT(zero_cuda_quant_decode8(denc, 10, (int)ZERO_U8, dy, NULL) != 0);
    CU_ASSERT(zero_cuda_quant_encode8(NULL, (int)ZERO_FP32, 0, NULL, NULL) == 0);   /* nothing to do */
    CU_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    cudaFree(dx);
    cudaFree(denc);
    cudaFree(dy);
    free(x);
    free(enc_c);
    free(enc_g);
    free(y_c);
    free(y_g);
}

/* Equal bits, or both NaN (the kernel writes one quiet NaN: quant_cuda.h). */
static int same_value(zero_dtype_t dtype, const void *a, const void *b, size_t i)
{
    if (dtype == ZERO_FP32) {
        float x = ((const float *)a)[i], y = ((const float *)b)[i];
        return memcmp(&x, &y, 4) == 0 || (isnan(x) && isnan(y));
    }
    uint16_t x = ((const uint16_t *)a)[i], y = ((const uint16_t *)b)[i];
    uint16_t inf = dtype == ZERO_BF16 ? 0x7f80 : 0x7c00;
    return x == y || ((x & 0x7fff) > inf && (y & 0x7fff) > inf);
}

/* qgZ's decode-and-sum: W blocks of every fill (one rank's block may hold
 * inf/nan while the others do not), into every dtype, averaged (divisor W)
 * and summed (divisor 1, fp32: the two-level form's partial sums). */
static void test_reduce_against_c(void)
{
    static const int worlds[] = {1, 2, 3, 5};
    static const size_t rlen[] = {1, 255, 257, 1000, 4099};
    size_t most = 4099, stride = zero_comm_quant_stride(ZERO_QUANT_INT8, most);
    unsigned char *enc = malloc(5 * stride);
    void *x = malloc(most * 4), *y_c = malloc(most * 4), *y_g = malloc(most * 4);
    float *acc = malloc(most * sizeof(float));
    void *denc = dev_alloc(5 * stride), *dy = dev_alloc(most * 4);
    int cases = 0, bad = 0;
    CU_ASSERT_FATAL(enc && x && y_c && y_g && acc);
    for (size_t wi = 0; wi < sizeof(worlds) / sizeof(worlds[0]); wi++)
        for (size_t l = 0; l < sizeof(rlen) / sizeof(rlen[0]); l++)
            for (int k = 0; k < FILL_KINDS; k++)
                for (size_t o = 0; o < 3; o++)
                    for (int avg = 0; avg < 2; avg++) {
                        int w = worlds[wi];
                        size_t n = rlen[l], st = zero_comm_quant_stride(ZERO_QUANT_INT8, n);
                        zero_dtype_t out = avg ? dtypes[o] : ZERO_FP32;
                        float divisor = avg ? (float)w : 1.0f;
                        if (!avg && o > 0)
                            continue;   /* the sums are fp32 only */
                        memset(enc, 0, 5 * stride);
                        for (int r = 0; r < w; r++) {   /* rank r's block: the fill, or random for r > 0 */
                            fill(r == 0 ? (fill_t)k : FILL_RANDOM, ZERO_FP32, x, n);
                            CU_ASSERT_FATAL(zero_quant_encode(ZERO_QUANT_INT8, ZERO_FP32, x, n, enc + (size_t)r * st) == 0);
                        }
                        CU_ASSERT_FATAL(quant_sum_ref(enc, st, w, n, divisor, out, acc, y_c) == 0);
                        CU_ASSERT_FATAL(cudaMemcpy(denc, enc, (size_t)w * st, cudaMemcpyHostToDevice) == cudaSuccess);
                        CU_ASSERT_FATAL(zero_cuda_quant_reduce8(denc, st, w, n, divisor, (int)out, dy, NULL) == 0);
                        CU_ASSERT_FATAL(cudaMemcpy(y_g, dy, n * zero_dtype_size(out), cudaMemcpyDeviceToHost) ==
                                        cudaSuccess);
                        cases++;
                        for (size_t i = 0; i < n; i++)
                            if (!same_value(out, y_c, y_g, i)) {
                                fprintf(stderr, "reduce: W %d %s n=%zu into %s%s: element %zu differs from the C "
                                        "path\n", w, fill_names[k], n, zero_dtype_string(out), avg ? " (average)" : "",
                                        i);
                                bad++;
                                break;
                            }
                    }
    printf("\n    %d decode-and-sum cases, %d differ", cases, bad);
    CU_ASSERT_EQUAL(bad, 0);
    /* refused, nothing enqueued: a bad dtype, no block, a stride that is not a multiple of 4 or too short */
    CU_ASSERT(zero_cuda_quant_reduce8(denc, stride, 2, 10, 2.0f, (int)ZERO_U8, dy, NULL) != 0);
    CU_ASSERT(zero_cuda_quant_reduce8(denc, stride, 0, 10, 2.0f, (int)ZERO_FP32, dy, NULL) != 0);
    CU_ASSERT(zero_cuda_quant_reduce8(denc, 18, 2, 10, 2.0f, (int)ZERO_FP32, dy, NULL) != 0);
    CU_ASSERT(zero_cuda_quant_reduce8(denc, 12, 2, 10, 2.0f, (int)ZERO_FP32, dy, NULL) != 0);
    CU_ASSERT(zero_cuda_quant_reduce8(NULL, 16, 2, 0, 2.0f, (int)ZERO_FP32, NULL, NULL) == 0);   /* nothing to do */
    CU_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    cudaFree(denc);
    cudaFree(dy);
    free(enc);
    free(x);
    free(y_c);
    free(y_g);
    free(acc);
}

/* More codec blocks than the kernels' grid (65535 CUDA blocks): the blocks
 * past it are the grid-stride loops' second round, and every index is past
 * 2^24 elements. fp32 only (the dtypes' paths are the test above's). */
static void test_beyond_grid(void)
{
    const size_t n = (size_t)65535 * ZERO_QUANT_BLOCK + 2 * ZERO_QUANT_BLOCK + 77;   /* 65538 blocks, short tail */
    const fill_t kinds[] = {FILL_RANDOM, FILL_SPECIAL};
    size_t bytes = zero_quant_bytes(ZERO_QUANT_INT8, n);
    const size_t host_bytes[5] = {n * 4, bytes, bytes, n * 4, n * 4}, dev_bytes[3] = {n * 4, bytes, n * 4};
    void *host[5], *dev[3];
    for (int i = 0; i < 5; i++)
        CU_ASSERT_FATAL((host[i] = malloc(host_bytes[i])) != NULL);
    for (int i = 0; i < 3; i++)
        dev[i] = dev_alloc(dev_bytes[i]);
    void *x = host[0], *enc_c = host[1], *enc_g = host[2], *y_c = host[3], *y_g = host[4];
    void *dx = dev[0], *denc = dev[1], *dy = dev[2];
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        fill(kinds[k], ZERO_FP32, x, n);
        CU_ASSERT_FATAL(zero_quant_encode(ZERO_QUANT_INT8, ZERO_FP32, x, n, enc_c) == 0);
        CU_ASSERT_FATAL(cudaMemcpy(dx, x, n * 4, cudaMemcpyHostToDevice) == cudaSuccess);
        CU_ASSERT_FATAL(zero_cuda_quant_encode8(dx, (int)ZERO_FP32, n, denc, NULL) == 0);
        CU_ASSERT_FATAL(cudaMemcpy(enc_g, denc, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
        CU_ASSERT_EQUAL(memcmp(enc_c, enc_g, bytes), 0);
        CU_ASSERT_FATAL(zero_quant_decode(ZERO_QUANT_INT8, enc_c, n, ZERO_FP32, y_c) == 0);
        CU_ASSERT_FATAL(zero_cuda_quant_decode8(denc, n, (int)ZERO_FP32, dy, NULL) == 0);
        CU_ASSERT_FATAL(cudaMemcpy(y_g, dy, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
        CU_ASSERT_EQUAL(memcmp(y_c, y_g, n * 4), 0);
    }
    {
        /* qgZ's decode-and-sum of two ranks' blocks past one grid, averaged */
        size_t stride = zero_comm_quant_stride(ZERO_QUANT_INT8, n);
        unsigned char *denc2 = dev_alloc(2 * stride);
        float *acc = malloc(n * sizeof(float));
        CU_ASSERT_FATAL(acc != NULL);
        CU_ASSERT_FATAL(cudaMemcpy(denc2, enc_c, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
        CU_ASSERT_FATAL(cudaMemcpy(denc2 + stride, enc_c, bytes, cudaMemcpyHostToDevice) == cudaSuccess);
        CU_ASSERT_FATAL(quant_sum_ref(enc_c, 0, 2, n, 2.0f, ZERO_FP32, acc, y_c) == 0);   /* the same block twice */
        CU_ASSERT_FATAL(zero_cuda_quant_reduce8(denc2, stride, 2, n, 2.0f, (int)ZERO_FP32, dy, NULL) == 0);
        CU_ASSERT_FATAL(cudaMemcpy(y_g, dy, n * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
        for (size_t i = 0; i < n; i++)
            if (!same_value(ZERO_FP32, y_c, y_g, i)) {
                fprintf(stderr, "reduce beyond one grid: element %zu differs from the C path\n", i);
                CU_FAIL("decode-and-sum differs");
                break;
            }
        cudaFree(denc2);
        free(acc);
    }
    for (int i = 0; i < 3; i++)
        cudaFree(dev[i]);
    for (int i = 0; i < 5; i++)
        free(host[i]);
}

/* A CUDA error pending before the call is not the codec's: returned negated
 * (quant_cuda.h), nothing launched, the error left in place. A non-sticky one
 * here (cudaSetDevice(-1)); before, the kernel ran and the call returned that
 * error as its own launch's. */
static void test_earlier_error(void)
{
    const size_t n = 3 * ZERO_QUANT_BLOCK + 5, bytes = zero_quant_bytes(ZERO_QUANT_INT8, n);
    unsigned char *enc = malloc(bytes);
    void *dx = dev_alloc(n * 4), *denc = dev_alloc(bytes);
    CU_ASSERT_FATAL(enc != NULL);
    CU_ASSERT_FATAL(cudaMemset(dx, 0, n * 4) == cudaSuccess);
    CU_ASSERT_FATAL(cudaMemset(denc, 0x5a, bytes) == cudaSuccess);
    CU_ASSERT_FATAL(cudaDeviceSynchronize() == cudaSuccess);
    CU_ASSERT(cudaSetDevice(-1) == cudaErrorInvalidDevice);   /* pending on this thread, not sticky */
    CU_ASSERT_EQUAL(zero_cuda_quant_encode8(dx, (int)ZERO_FP32, n, denc, NULL), -(int)cudaErrorInvalidDevice);
    CU_ASSERT_EQUAL(zero_cuda_quant_decode8(denc, n, (int)ZERO_FP32, dx, NULL), -(int)cudaErrorInvalidDevice);
    CU_ASSERT_EQUAL(cudaGetLastError(), cudaErrorInvalidDevice);   /* still there for its owner; now read */
    CU_ASSERT_FATAL(cudaMemcpy(enc, denc, bytes, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (size_t i = 0; i < bytes; i++)
        if (enc[i] != 0x5a) {
            CU_FAIL("the encoder ran with an error pending");
            break;
        }
    CU_ASSERT(zero_cuda_quant_encode8(dx, (int)ZERO_FP32, n, denc, NULL) == 0);   /* read: launches again */
    CU_ASSERT(cudaDeviceSynchronize() == cudaSuccess);
    cudaFree(dx);
    cudaFree(denc);
    free(enc);
}

static CU_TestInfo tests[] = {
    {"int8 kernels against the C codec", test_against_c_codec},
    {"int8 decode-and-sum (qgZ) against the C path", test_reduce_against_c},
    {"int8 kernels beyond one grid of blocks", test_beyond_grid},
    {"an earlier CUDA error is not the codec's", test_earlier_error},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"quant_cuda", NULL, NULL, NULL, NULL, tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        fprintf(stderr, "test_quant_cuda: no CUDA device, skipped\n");
        return 77;
    }
    return zero_test_main(argc, argv, suites);
}
