/* zero_convert (zero/convert.h): the optimizer's conversion kernels, the ones
 * the engine writes 16-bit weights with, on the calling thread. */
#define ZERO_LOG_MODULE "convert"
#include <zero/convert.h>

#include "optim/optim.h"
#include "util/log.h"

#include <pthread.h>
#include <string.h>

/* The kernel table for this CPU, chosen once per process and read-only after. */
static pthread_once_t kernels_once = PTHREAD_ONCE_INIT;
static zero_optim_ctx_t kernels;
static zero_status_t kernels_status;

static void kernels_init(void)
{
    kernels_status = zero_optim_ctx_init(&kernels, ZERO_OPTIM_ISA_AUTO, NULL);   /* no pool: caller's thread */
}

zero_status_t zero_convert(void *dst, zero_dtype_t dst_dtype, const void *src, zero_dtype_t src_dtype,
                           size_t count)
{
    int dst_16 = dst_dtype == ZERO_BF16 || dst_dtype == ZERO_FP16;
    int src_16 = src_dtype == ZERO_BF16 || src_dtype == ZERO_FP16;

    if ((unsigned)dst_dtype >= ZERO_DTYPE_COUNT || (unsigned)src_dtype >= ZERO_DTYPE_COUNT ||
        (dst_dtype != src_dtype && dst_16 == src_16)) {
        ZERO_LOG_ERROR("zero_convert: %s -> %s is not a supported conversion (fp32 <-> bf16/fp16, or a copy)",
                       zero_dtype_string(src_dtype), zero_dtype_string(dst_dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    if (count > 0 && (dst == NULL || src == NULL)) {
        ZERO_LOG_ERROR("zero_convert: %s buffer is NULL with %zu elements", dst == NULL ? "dst" : "src", count);
        return ZERO_ERR_INVALID_ARG;
    }
    if (count == 0)
        return ZERO_OK;
    if (dst_dtype == src_dtype) {
        if (dst != src)
            memmove(dst, src, count * zero_dtype_size(dst_dtype));
        return ZERO_OK;
    }
    pthread_once(&kernels_once, kernels_init);
    if (kernels_status != ZERO_OK)
        return kernels_status;   /* logged by the CPU check */
    if (dst_16)
        return zero_optim_to_16(&kernels, dst_dtype == ZERO_BF16 ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_FP16,
                                dst, src, count);
    return zero_optim_from_16(&kernels, src_dtype == ZERO_BF16 ? ZERO_OPTIM_W16_BF16 : ZERO_OPTIM_W16_FP16, dst,
                              src, count);
}
