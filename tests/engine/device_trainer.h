/*
 * The device half of engine-device's trainer: one kernel that adds a
 * micro-batch's gradient of a parameter into its gradient buffer, after
 * spinning for a while, so that an engine which read the buffer without
 * ordering on the trainer's stream would read it before the kernel wrote it.
 * The values are a hash of (key, index), exactly representable, times the
 * backward seed, rounded to the parameter's dtype (round to nearest even) and
 * added in fp32 with one rounding: test_engine_device.c's host twin computes
 * the same bits.
 */
#ifndef ZERO_TEST_DEVICE_TRAINER_H
#define ZERO_TEST_DEVICE_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define ZERO_TEST_HD __host__ __device__
#else
#define ZERO_TEST_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The gradient value of element @p i for @p key, before the seed: in [-1, 1). */
static inline ZERO_TEST_HD float zero_test_grad_value(uint32_t key, uint32_t i)
{
    uint32_t h = (i * 2654435761u) ^ (key * 40503u + 0x9e3779b9u);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return (float)((int32_t)(h & 0xffffu) - 32768) / 32768.0f;
}

/* dst[i] (dtype 0 fp32, 1 fp16, 2 bf16) += round(value(key, i) * seed) for i < n,
 * on @p stream after spinning about @p spin_cycles clock cycles. Returns a cudaError_t. */
int zero_test_grad_add(void *dst, int dtype, size_t n, uint32_t key, float seed, long long spin_cycles, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* ZERO_TEST_DEVICE_TRAINER_H */
