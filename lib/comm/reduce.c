#include "comm/reduce.h"
#include "util/half.h"

#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Loads and stores by element type. The fp32 ones compile to plain vector
 * loads; the 16-bit ones go through the scalar conversions of util/half.h. */
#define LD_F32(p, i)  (((const float *)(p))[i])
#define LD_F16(p, i)  zero_f16_to_f32(((const uint16_t *)(p))[i])
#define LD_BF16(p, i) zero_bf16_to_f32(((const uint16_t *)(p))[i])
#define ST_F32(p, i, v)  (((float *)(p))[i] = (v))
#define ST_F16(p, i, v)  (((uint16_t *)(p))[i] = zero_f32_to_f16(v))
#define ST_BF16(p, i, v) (((uint16_t *)(p))[i] = zero_f32_to_bf16(v))

#define MAXF(a, b) ((a) > (b) ? (a) : (b))

/* One kernel per (received type, local type, result type). The in-place form
 * (out == local) gets its own loop: a restrict-free pair of distinct pointers
 * makes the compiler's overlap check fail and fall back to scalar code. */
#define DEFINE_KERNEL(name, LDR, LDL, ST)                                                          \
    static void name(zero_comm_op_t op, const void *restrict recv, const void *local, void *out,   \
                     size_t n, float div)                                                          \
    {                                                                                              \
        if (out == local) {                                                                        \
            void *restrict io = out;                                                               \
            if (op == ZERO_COMM_MAX)                                                               \
                for (size_t i = 0; i < n; i++) ST(io, i, MAXF(LDR(recv, i), LDL(io, i)));          \
            else if (div != 1.0f)                                                                  \
                for (size_t i = 0; i < n; i++) ST(io, i, (LDR(recv, i) + LDL(io, i)) / div);       \
            else                                                                                   \
                for (size_t i = 0; i < n; i++) ST(io, i, LDR(recv, i) + LDL(io, i));               \
        } else {                                                                                   \
            const void *restrict in = local;                                                       \
            void *restrict o = out;                                                                \
            if (op == ZERO_COMM_MAX)                                                               \
                for (size_t i = 0; i < n; i++) ST(o, i, MAXF(LDR(recv, i), LDL(in, i)));           \
            else if (div != 1.0f)                                                                  \
                for (size_t i = 0; i < n; i++) ST(o, i, (LDR(recv, i) + LDL(in, i)) / div);        \
            else                                                                                   \
                for (size_t i = 0; i < n; i++) ST(o, i, LDR(recv, i) + LDL(in, i));                \
        }                                                                                          \
    }

#define LD_U8(p, i)  (((const uint8_t *)(p))[i])
#define LD_I32(p, i) (((const int32_t *)(p))[i])
#define LD_I64(p, i) (((const int64_t *)(p))[i])
#define LD_F64(p, i) (((const double *)(p))[i])
#define ST_U8(p, i, v)  (((uint8_t *)(p))[i] = (uint8_t)(v))
#define ST_I32(p, i, v) (((int32_t *)(p))[i] = (int32_t)(v))
#define ST_I64(p, i, v) (((int64_t *)(p))[i] = (int64_t)(v))
#define ST_F64(p, i, v) (((double *)(p))[i] = (v))

DEFINE_KERNEL(k_f32, LD_F32, LD_F32, ST_F32)
/* Collective-only types: their own partials; integers are never averaged (refused at the start). */
DEFINE_KERNEL(k_u8, LD_U8, LD_U8, ST_U8)
DEFINE_KERNEL(k_i32, LD_I32, LD_I32, ST_I32)
DEFINE_KERNEL(k_i64, LD_I64, LD_I64, ST_I64)
DEFINE_KERNEL(k_f64, LD_F64, LD_F64, ST_F64)
DEFINE_KERNEL(k_f16_f16_to_f32, LD_F16, LD_F16, ST_F32)
DEFINE_KERNEL(k_f32_f16_to_f32, LD_F32, LD_F16, ST_F32)
DEFINE_KERNEL(k_f16_f16_to_f16, LD_F16, LD_F16, ST_F16)
DEFINE_KERNEL(k_f32_f16_to_f16, LD_F32, LD_F16, ST_F16)
DEFINE_KERNEL(k_bf16_bf16_to_f32, LD_BF16, LD_BF16, ST_F32)
DEFINE_KERNEL(k_f32_bf16_to_f32, LD_F32, LD_BF16, ST_F32)
DEFINE_KERNEL(k_bf16_bf16_to_bf16, LD_BF16, LD_BF16, ST_BF16)
DEFINE_KERNEL(k_f32_bf16_to_bf16, LD_F32, LD_BF16, ST_BF16)

#if defined(__SSE2__)
/* fp32 into a final output that nobody reads soon: non-temporal stores skip
 * the read-for-ownership of every output line (a quarter of the traffic). */
#define STREAM_MIN_ELEMS 65536

static void k_f32_stream(zero_comm_op_t op, const float *recv, const float *local, float *out, size_t n, float div)
{
    size_t i = 0;
    __m128 d = _mm_set1_ps(div);
    for (; i < n && ((uintptr_t)(out + i) & 15u) != 0; i++) {
        float x = recv[i], y = local[i];
        out[i] = op == ZERO_COMM_MAX ? MAXF(x, y) : div != 1.0f ? (x + y) / div : x + y;
    }
    if (op == ZERO_COMM_MAX) {
        for (; i + 8 <= n; i += 8) {
            _mm_stream_ps(out + i, _mm_max_ps(_mm_loadu_ps(recv + i), _mm_loadu_ps(local + i)));
            _mm_stream_ps(out + i + 4, _mm_max_ps(_mm_loadu_ps(recv + i + 4), _mm_loadu_ps(local + i + 4)));
        }
    } else if (div != 1.0f) {
        for (; i + 8 <= n; i += 8) {
            _mm_stream_ps(out + i, _mm_div_ps(_mm_add_ps(_mm_loadu_ps(recv + i), _mm_loadu_ps(local + i)), d));
            _mm_stream_ps(out + i + 4,
                          _mm_div_ps(_mm_add_ps(_mm_loadu_ps(recv + i + 4), _mm_loadu_ps(local + i + 4)), d));
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            _mm_stream_ps(out + i, _mm_add_ps(_mm_loadu_ps(recv + i), _mm_loadu_ps(local + i)));
            _mm_stream_ps(out + i + 4, _mm_add_ps(_mm_loadu_ps(recv + i + 4), _mm_loadu_ps(local + i + 4)));
        }
    }
    for (; i < n; i++) {
        float x = recv[i], y = local[i];
        out[i] = op == ZERO_COMM_MAX ? MAXF(x, y) : div != 1.0f ? (x + y) / div : x + y;
    }
    _mm_sfence();
}
#endif

size_t zero_comm_partial_size(zero_dtype_t dtype)
{
    return dtype == ZERO_FP16 || dtype == ZERO_BF16 ? sizeof(float) : zero_dtype_size(dtype);
}

void zero_comm_reduce(zero_comm_op_t op, zero_dtype_t dtype, int recv_is_f32, const void *recv, const void *local,
                      int out_is_f32, void *out, size_t n, float final_div)
{
    if (op == ZERO_COMM_MAX || out_is_f32)
        final_div = 1.0f;
    switch (dtype) {
    case ZERO_FP32:
#if defined(__SSE2__)
        if (!out_is_f32 && n >= STREAM_MIN_ELEMS) {
            k_f32_stream(op, recv, local, out, n, final_div);
            break;
        }
#endif
        k_f32(op, recv, local, out, n, final_div);
        break;
    case ZERO_FP16:
        if (out_is_f32)
            (recv_is_f32 ? k_f32_f16_to_f32 : k_f16_f16_to_f32)(op, recv, local, out, n, final_div);
        else
            (recv_is_f32 ? k_f32_f16_to_f16 : k_f16_f16_to_f16)(op, recv, local, out, n, final_div);
        break;
    case ZERO_BF16:
        if (out_is_f32)
            (recv_is_f32 ? k_f32_bf16_to_f32 : k_bf16_bf16_to_f32)(op, recv, local, out, n, final_div);
        else
            (recv_is_f32 ? k_f32_bf16_to_bf16 : k_bf16_bf16_to_bf16)(op, recv, local, out, n, final_div);
        break;
    case ZERO_U8:
        k_u8(op, recv, local, out, n, 1.0f);
        break;
    case ZERO_I32:
        k_i32(op, recv, local, out, n, 1.0f);
        break;
    case ZERO_I64:
        k_i64(op, recv, local, out, n, 1.0f);
        break;
    case ZERO_F64:
        k_f64(op, recv, local, out, n, final_div);
        break;
    default:
        break;
    }
}
