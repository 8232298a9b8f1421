/* Quantized collectives over the ordinary backends (quant_coll.h). */
#define ZERO_LOG_MODULE "comm"
#include "comm/quant_coll.h"
#include "comm/comm_internal.h"
#include "util/log.h"

#include <string.h>

#define WIRE_ALIGN ((size_t)16)

size_t zero_comm_quant_stride(zero_quant_bits_t bits, size_t count)
{
    return (zero_quant_bytes(bits, count) + WIRE_ALIGN - 1) / WIRE_ALIGN * WIRE_ALIGN;
}

size_t zero_comm_quant_wire_bytes(zero_quant_bits_t bits, size_t count, int size)
{
    return size > 0 ? zero_comm_quant_stride(bits, count) * (size_t)size : 0;
}

static int codec_args(const char *name, zero_dtype_t dtype, zero_quant_bits_t bits)
{
    if (dtype != ZERO_FP32 && dtype != ZERO_BF16 && dtype != ZERO_FP16) {
        ZERO_LOG_ERROR("%s: %s cannot be quantized (fp32, bf16 or fp16 only)", name, zero_dtype_string(dtype));
        return 0;
    }
    if (bits != ZERO_QUANT_INT8 && bits != ZERO_QUANT_INT4) {
        ZERO_LOG_ERROR("%s: %d-bit quantization is not offered (8 or 4)", name, (int)bits);
        return 0;
    }
    return 1;
}

/* Every rank's block, this rank's too, decoded from the gathered wire bytes. */
static zero_status_t decode_gathered(const zero_comm_finish_t *f)
{
    size_t out_block = f->count * zero_dtype_size(f->dtype);
    for (int r = 0; r < f->size; r++)
        if (zero_quant_decode((zero_quant_bits_t)f->bits, (const char *)f->wire + (size_t)r * f->stride, f->count,
                              f->dtype, (char *)f->out + (size_t)r * out_block) != 0)
            return ZERO_ERR_INTERNAL;   /* arguments were checked at start */
    return ZERO_OK;
}

zero_status_t zero_comm_allgather_quant_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                              zero_dtype_t dtype, zero_quant_bits_t bits, void *wire,
                                              zero_comm_request_h *request_p)
{
    const char *name = "quantized allgather";
    zero_comm_finish_t finish;
    size_t stride;
    char *own;
    if (comm == NULL || request_p == NULL) {
        ZERO_LOG_ERROR("%s: %s is NULL", name, comm == NULL ? "comm" : "request_p");
        return ZERO_ERR_INVALID_ARG;
    }
    if (!codec_args(name, dtype, bits))
        return ZERO_ERR_INVALID_ARG;
    if (count > 0 && (sendbuf == NULL || recvbuf == NULL || wire == NULL)) {
        ZERO_LOG_ERROR("%s: NULL %s with %zu elements", name,
                       sendbuf == NULL ? "sendbuf" : recvbuf == NULL ? "recvbuf" : "wire", count);
        return ZERO_ERR_INVALID_ARG;
    }
    stride = zero_comm_quant_stride(bits, count);
    own = (char *)wire + (size_t)comm->env.rank * stride;
    /* Encoded in place in the wire buffer: the backend moves only bytes, and
     * no caller-thread copy of this rank's block races the decoding. */
    if (count > 0 && zero_quant_encode(bits, dtype, sendbuf, count, own) != 0)
        return ZERO_ERR_INTERNAL;
    memset(own + zero_quant_bytes(bits, count), 0, stride - zero_quant_bytes(bits, count));
    finish = (zero_comm_finish_t){decode_gathered, (int)bits, dtype, count, comm->env.size, stride, wire, recvbuf};
    return zero_comm_allgather_start_finish(comm, own, wire, stride, ZERO_U8, ZERO_MEM_HOST, &finish, request_p);
}
