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

/* Encodes @p count elements into a wire slot of @p stride bytes and zeroes
 * the padding behind the code, so no uninitialised byte goes on the wire. */
static zero_status_t encode_slot(zero_quant_bits_t bits, zero_dtype_t dtype, const void *src, size_t count,
                                 size_t stride, char *slot)
{
    size_t used = zero_quant_bytes(bits, count);
    if (zero_quant_encode(bits, dtype, src, count, slot) != 0)
        return ZERO_ERR_INTERNAL;   /* arguments were checked at start */
    memset(slot + used, 0, stride - used);
    return ZERO_OK;
}

/* The kept ranks' blocks (every rank's, this rank's too, unless a part was
 * asked for) decoded from the gathered wire bytes. */
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
    return zero_comm_allgather_quant_part_start(comm, sendbuf, recvbuf, count, dtype, bits, 0,
                                                comm != NULL ? comm->env.size : 0, wire, request_p);
}

zero_status_t zero_comm_allgather_quant_part_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                                   zero_dtype_t dtype, zero_quant_bits_t bits, int first, int nblocks,
                                                   void *wire, zero_comm_request_h *request_p)
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
    if (first < 0 || nblocks < 0 || first > comm->env.size - nblocks) {
        ZERO_LOG_ERROR("%s: blocks %d..%d to decode lie outside the %d ranks", name, first, first + nblocks - 1,
                       comm->env.size);
        return ZERO_ERR_INVALID_ARG;
    }
    stride = zero_comm_quant_stride(bits, count);
    own = wire != NULL ? (char *)wire + (size_t)comm->env.rank * stride : NULL;
    /* Encoded in place in the wire buffer: the backend moves only bytes, and
     * no caller-thread copy of this rank's block races the decoding. */
    if (count > 0 && encode_slot(bits, dtype, sendbuf, count, stride, own) != ZERO_OK)
        return ZERO_ERR_INTERNAL;
    /* the finish decodes nblocks blocks from the first one kept */
    finish = (zero_comm_finish_t){decode_gathered, (int)bits, dtype, count, nblocks, 1, NULL, stride,
                                  wire != NULL ? (char *)wire + (size_t)first * stride : NULL, recvbuf, NULL, 1.0f};
    return zero_comm_allgather_start_finish(comm, own, wire, stride, ZERO_U8, ZERO_MEM_HOST, &finish, request_p);
}

size_t zero_comm_reduce_scatter_quant_wire_bytes(zero_quant_bits_t bits, size_t count, int size)
{
    size_t acc = (count * sizeof(float) + WIRE_ALIGN - 1) / WIRE_ALIGN * WIRE_ALIGN;
    return size > 0 ? 2 * zero_comm_quant_wire_bytes(bits, count, size) + acc : 0;
}

/* The W received blocks summed in fp32 in rank order, divided, rounded once.
 * The first block is decoded into the sum and the last one's decode, the
 * division and the rounding are one pass (quant.h: the same bits as zeroing,
 * adding every block, dividing and rounding in turn). */
static zero_status_t decode_reduced(const zero_comm_finish_t *f)
{
    zero_quant_bits_t bits = (zero_quant_bits_t)f->bits;
    if (f->count == 0)
        return ZERO_OK;   /* nothing moved; the buffers may be NULL */
    const char *last = (const char *)f->wire + (size_t)(f->size - 1) * f->stride;
    if (f->size == 1)
        memset(f->acc, 0, f->count * sizeof(float));
    for (int r = 0; r < f->size - 1; r++) {
        const char *in = (const char *)f->wire + (size_t)r * f->stride;
        if ((r == 0 ? zero_quant_decode_first_f32(bits, in, f->count, f->acc)
                    : zero_quant_decode_add_f32(bits, in, f->count, f->acc)) != 0)
            return ZERO_ERR_INTERNAL;   /* arguments were checked at start */
    }
    /* divided as the unquantized reductions average (divisor 1 for a sum) */
    if (zero_quant_decode_add_finish(bits, last, f->count, f->acc, f->divisor, f->dtype, f->out) != 0)
        return ZERO_ERR_INTERNAL;
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
    for (int k = 0; k < comm->env.size && count > 0; k++)
        if (encode_slot(bits, dtype, (const char *)sendbuf + (size_t)k * count * es, count, stride,
                        sent + (size_t)k * stride) != ZERO_OK)
            return ZERO_ERR_INTERNAL;
    finish = (zero_comm_finish_t){decode_reduced, (int)bits, dtype, count, comm->env.size, 1, NULL, stride, received,
                                  recvbuf, received != NULL ? (float *)(received + all) : NULL,
                                  op == ZERO_COMM_AVG ? (float)comm->env.size : 1.0f};
    return zero_comm_alltoall_start_finish(comm, sent, received, stride, ZERO_U8, &finish, request_p);
}

/* ---- hierarchical: inside the node, then across nodes ---- */

size_t zero_comm_reduce_scatter_quant_hier_wire_bytes(zero_quant_bits_t bits, size_t count, int local_size,
                                                      int nodes)
{
    size_t stride = zero_comm_quant_stride(bits, count), world = (size_t)local_size * (size_t)nodes;
    size_t acc = ((size_t)nodes * count * sizeof(float) + WIRE_ALIGN - 1) / WIRE_ALIGN * WIRE_ALIGN;
    if (local_size < 1 || nodes < 1)
        return 0;
    return 2 * world * stride + 2 * (size_t)nodes * stride + acc;
}

/* The first level's finish: for each node n, the node's partial sum of the
 * block for rank (n, this local rank), summed in fp32 over the node's ranks
 * in rank order from their encoded blocks, then encoded for the second level. */
static zero_status_t reduce_node_level(const zero_comm_finish_t *f)
{
    if (f->count == 0)
        return ZERO_OK;
    for (int n = 0; n < f->blocks; n++) {
        float *acc = f->acc + (size_t)n * f->count;
        char *slot = (char *)f->encoded + (size_t)n * f->stride;
        for (int p = 0; p < f->size; p++) {   /* f->size >= 2: the first decoded into acc, the rest added */
            const char *in = (const char *)f->wire + ((size_t)p * (size_t)f->blocks + (size_t)n) * f->stride;
            if ((p == 0 ? zero_quant_decode_first_f32((zero_quant_bits_t)f->bits, in, f->count, acc)
                        : zero_quant_decode_add_f32((zero_quant_bits_t)f->bits, in, f->count, acc)) != 0)
                return ZERO_ERR_INTERNAL;
        }
        /* a non-finite element made its block NaN; the encoding keeps it NaN */
        if (encode_slot((zero_quant_bits_t)f->bits, ZERO_FP32, acc, f->count, f->stride, slot) != ZERO_OK)
            return ZERO_ERR_INTERNAL;
    }
    return ZERO_OK;
}

zero_status_t zero_comm_reduce_scatter_quant_hier_start(zero_comm_h node, zero_comm_h cross, const void *sendbuf,
                                                        void *recvbuf, size_t count, zero_dtype_t dtype,
                                                        zero_comm_op_t op, zero_quant_bits_t bits, void *wire,
                                                        zero_comm_request_h *request_p)
{
    const char *name = "hierarchical quantized reduce-scatter";
    zero_comm_finish_t first, second;
    zero_comm_request_h gated = NULL, level1 = NULL;
    size_t stride, es = zero_dtype_size(dtype), world_bytes;
    int P, N, l;
    char *s1, *r1, *s2, *r2;
    float *acc;
    zero_status_t status;

    if (node == NULL || cross == NULL || request_p == NULL) {
        ZERO_LOG_ERROR("%s: %s is NULL", name, node == NULL ? "node" : cross == NULL ? "cross" : "request_p");
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
    P = node->env.size;
    N = cross->env.size;
    l = node->env.rank;
    if (P < 2 || N < 2) {
        ZERO_LOG_ERROR("%s: needs nodes of equal size over 2 or more ranks (node communicator: rank %d of %d; across "
                       "nodes: rank %d of %d)", name, l, P, cross->env.rank, N);
        return ZERO_ERR_INVALID_ARG;
    }
    stride = zero_comm_quant_stride(bits, count);
    world_bytes = (size_t)P * (size_t)N * stride;
    s1 = wire;
    r1 = s1 != NULL ? s1 + world_bytes : NULL;
    s2 = r1 != NULL ? r1 + world_bytes : NULL;
    r2 = s2 != NULL ? s2 + (size_t)N * stride : NULL;
    acc = r2 != NULL ? (float *)(r2 + (size_t)N * stride) : NULL;
    /* Level 1's message to node peer p: the blocks of the ranks (n, p) for
     * every node n, in node order; rank (n, p) is n * P + p. */
    for (int p = 0; p < P && count > 0; p++)
        for (int n = 0; n < N; n++)
            if (encode_slot(bits, dtype, (const char *)sendbuf + ((size_t)n * (size_t)P + (size_t)p) * count * es,
                            count, stride, s1 + ((size_t)p * (size_t)N + (size_t)n) * stride) != ZERO_OK)
                return ZERO_ERR_INTERNAL;
    /* Level 2 (across nodes) first, gated on level 1: both are queued now, in
     * the caller's order, so every rank queues them alike on each communicator. */
    second = (zero_comm_finish_t){decode_reduced, (int)bits, dtype, count, N, 1, NULL, stride, r2, recvbuf, acc,
                                  op == ZERO_COMM_AVG ? (float)(P * N) : 1.0f};
    status = zero_comm_alltoall_start_gated(cross, s2, r2, stride, ZERO_U8, &second, &gated);
    if (status != ZERO_OK)
        return status;
    first = (zero_comm_finish_t){reduce_node_level, (int)bits, dtype, count, P, N, s2, stride, r1, NULL, acc, 1.0f};
    status = zero_comm_alltoall_start_signal(node, s1, r1, (size_t)N * stride, ZERO_U8, &first, gated, &level1);
    if (status != ZERO_OK) {
        /* The second level fails too, at once, and with it the job: the
         * other ranks' levels would wait for this rank's (comm.c) */
        zero_comm_open_gate(gated, status);
        zero_comm_request_free(gated);
        return status;
    }
    *request_p = gated;
    return ZERO_OK;
}
