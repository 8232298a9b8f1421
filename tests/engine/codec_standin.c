/* The engine's codec operations by the C codec, on the CPU (codec_standin.h). */
#include "codec_standin.h"

#include "comm/quant.h"
#include "comm/quant_coll.h"
#include "quant_sum_ref.h"

#include <stdlib.h>
#include <string.h>

codec_standin_counts_t codec_standin;

/* Counts the non-zero padding bytes behind an encoded vector of @p n elements. */
static void check_pad(const void *wire, size_t n)
{
    for (size_t i = zero_quant_bytes(ZERO_QUANT_INT8, n); i < zero_comm_quant_stride(ZERO_QUANT_INT8, n); i++)
        codec_standin.dirty_pads += ((const unsigned char *)wire)[i] != 0;
}

static zero_status_t encode8(void *ctx, zero_dtype_t dtype, const void *src, size_t n, void *wire)
{
    (void)ctx;
    codec_standin.encodes++;
    /* the slot's padding gets garbage, as a kernel leaves it */
    memset((char *)wire + zero_quant_bytes(ZERO_QUANT_INT8, n), 0xab,
           zero_comm_quant_stride(ZERO_QUANT_INT8, n) - zero_quant_bytes(ZERO_QUANT_INT8, n));
    return zero_quant_encode(ZERO_QUANT_INT8, dtype, src, n, wire) == 0 ? ZERO_OK : ZERO_ERR_INTERNAL;
}

static zero_status_t decode8(void *ctx, zero_dtype_t dtype, const void *wire, size_t n, void *dst)
{
    (void)ctx;
    codec_standin.decodes++;
    check_pad(wire, n);
    return zero_quant_decode(ZERO_QUANT_INT8, wire, n, dtype, dst) == 0 ? ZERO_OK : ZERO_ERR_INTERNAL;
}

static zero_status_t reduce8(void *ctx, const void *wire, size_t block_stride, int nblocks, size_t n, float divisor,
                             zero_dtype_t dtype, void *dst)
{
    float *acc = malloc((n > 0 ? n : 1) * sizeof(float));
    int rc;
    (void)ctx;
    codec_standin.reduces++;
    if (acc == NULL)
        return ZERO_ERR_NO_MEMORY;
    for (int k = 0; k < nblocks; k++)
        check_pad((const char *)wire + (size_t)k * block_stride, n);
    rc = quant_sum_ref(wire, block_stride, nblocks, n, divisor, dtype, acc, dst);
    free(acc);
    return rc == 0 ? ZERO_OK : ZERO_ERR_INTERNAL;
}

void codec_standin_install(engine_ops_t *ops)
{
    ops->quant_encode8 = encode8;
    ops->quant_decode8 = decode8;
    ops->quant_reduce8 = reduce8;
}
