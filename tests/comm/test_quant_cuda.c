/*
 * lib/comm/quant_cuda.cu: the int8 block codec on the GPU against the C codec
 * (quant.c), bit for bit, encoded bytes and decoded values of every dtype:
 * lengths around the block size and odd ones, zeros, constants, subnormals,
 * inf and NaN inside a block, and random bit patterns (every class of float
 * at once). Both compute each element with quant_elem.h.
 * ZERO_TEST_QUICK=1 (gpu-check's racecheck step) leaves out the longest length.
 * Exits 77 (meson: skipped) where the CUDA runtime reports no device.
 */
#include "test_main.h"
#include "comm/quant.h"
#include "comm/quant_cuda.h"
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
