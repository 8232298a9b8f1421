/* Quantized collectives over the ordinary backends (quant_coll.h). */
#define ZERO_LOG_MODULE "comm"
#include "comm/quant_coll.h"
#include "comm/comm_internal.h"
#include "util/half.h"
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
    if (f->count == 0)
        return ZERO_OK;   /* nothing moved; the buffers may be NULL */
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
    own = wire != NULL ? (char *)wire + (size_t)comm->env.rank * stride : NULL;
    /* Encoded in place in the wire buffer: the backend moves only bytes, and
     * no caller-thread copy of this rank's block races the decoding. */
    if (count > 0) {
        if (zero_quant_encode(bits, dtype, sendbuf, count, own) != 0)
            return ZERO_ERR_INTERNAL;
        memset(own + zero_quant_bytes(bits, count), 0, stride - zero_quant_bytes(bits, count));
    }
    finish = (zero_comm_finish_t){decode_gathered, (int)bits, dtype, count, comm->env.size, stride, wire, recvbuf,
                                  NULL, 1.0f};
    return zero_comm_allgather_start_finish(comm, own, wire, stride, ZERO_U8, ZERO_MEM_HOST, &finish, request_p);
}

size_t zero_comm_reduce_scatter_quant_wire_bytes(zero_quant_bits_t bits, size_t count, int size)
{
    size_t acc = (count * sizeof(float) + WIRE_ALIGN - 1) / WIRE_ALIGN * WIRE_ALIGN;
    return size > 0 ? 2 * zero_comm_quant_wire_bytes(bits, count, size) + acc : 0;
}

/* The W received blocks summed in fp32 in rank order, divided, rounded once. */
static zero_status_t decode_reduced(const zero_comm_finish_t *f)
{
    if (f->count == 0)
        return ZERO_OK;   /* nothing moved; the buffers may be NULL */
    memset(f->acc, 0, f->count * sizeof(float));
    for (int r = 0; r < f->size; r++)
        if (zero_quant_decode_add_f32((zero_quant_bits_t)f->bits, (const char *)f->wire + (size_t)r * f->stride,
                                      f->count, f->acc) != 0)
            return ZERO_ERR_INTERNAL;   /* arguments were checked at start */
    if (f->divisor != 1.0f)
        for (size_t i = 0; i < f->count; i++)
            f->acc[i] /= f->divisor;   /* as the unquantized reductions average */
    if (f->dtype == ZERO_FP32) {
        memcpy(f->out, f->acc, f->count * sizeof(float));
    } else if (f->dtype == ZERO_BF16) {
        for (size_t i = 0; i < f->count; i++)
            ((uint16_t *)f->out)[i] = zero_f32_to_bf16(f->acc[i]);
    } else {
        for (size_t i = 0; i < f->count; i++)
            ((uint16_t *)f->out)[i] = zero_f32_to_f16(f->acc[i]);
    }
    return ZERO_OK;
}

zero_status_t zero_comm_reduce_scatter_quant_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                                   zero_dtype_t dtype, zero_comm_op_t op, zero_quant_bits_t bits,
                                                   void *wire, zero_comm_request_h *request_p)
{
    const char *name = "quantized reduce-scatter";
    zero_comm_finish_t finish;
    size_t stride, es = zero_dtype_size(dtype), all;
    char *sent, *received;
    if (comm == NULL || request_p == NULL) {
        ZERO_LOG_ERROR("%s: %s is NULL", name, comm == NULL ? "comm" : "request_p");
        return ZERO_ERR_INVALID_ARG;
    }
    if (!codec_args(name, dtype, bits))
        return ZERO_ERR_INVALID_ARG;
    if (op != ZERO_COMM_SUM && op != ZERO_COMM_AVG) {
        ZERO_LOG_ERROR("%s: op %s is not offered (sum or avg)", name, zero_comm_op_string(op));
        return ZERO_ERR_INVALID_ARG;
    }
    if (count > 0 && (sendbuf == NULL || recvbuf == NULL || wire == NULL)) {
        ZERO_LOG_ERROR("%s: NULL %s with %zu elements", name,
                       sendbuf == NULL ? "sendbuf" : recvbuf == NULL ? "recvbuf" : "wire", count);
        return ZERO_ERR_INVALID_ARG;
    }
    stride = zero_comm_quant_stride(bits, count);
    all = zero_comm_quant_wire_bytes(bits, count, comm->env.size);
    sent = wire;
    received = wire != NULL ? sent + all : NULL;
    /* every block encoded now: the input may be overwritten by the result */
    for (int k = 0; k < comm->env.size && count > 0; k++) {
        char *slot = sent + (size_t)k * stride;
        if (zero_quant_encode(bits, dtype, (const char *)sendbuf + (size_t)k * count * es, count, slot) != 0)
            return ZERO_ERR_INTERNAL;
        memset(slot + zero_quant_bytes(bits, count), 0, stride - zero_quant_bytes(bits, count));
    }
    finish = (zero_comm_finish_t){decode_reduced, (int)bits, dtype, count, comm->env.size, stride, received, recvbuf,
                                  received != NULL ? (float *)(received + all) : NULL, op == ZERO_COMM_AVG ? (float)comm->env.size : 1.0f};
    return zero_comm_alltoall_start_finish(comm, sent, received, stride, ZERO_U8, &finish, request_p);
}
