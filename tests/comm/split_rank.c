/*
 * The split reduce-scatter (comm/reduce_split.h), run on every rank through
 * zero-launch at world sizes 1-4.
 *
 * For fp32, bf16 and fp16, counts from 1 to several ring chunks, with buffers
 * from zero_comm_mem_alloc (the direct path) and from malloc (the ring): the
 * own block plus the partial, added as the reduction adds them (in fp32,
 * rounded once to the data's type), must equal a plain sum reduce-scatter of
 * the same buffers bit for bit; the send buffer must be unchanged; the
 * partial must lie in the peer's buffer on the direct path at two ranks (zero
 * copy) and in the caller's buffer otherwise. At one rank the call is
 * refused (ZERO_ERR_UNSUPPORTED).
 *
 * Exit status: the number of failed checks.
 */
#include <zero/zero.h>

#include "rank_check.h"

#include "comm/reduce_split.h"
#include "util/half.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float value(int rank, size_t i)
{
    /* signs and magnitudes vary, so the order of additions matters in the last bits */
    return (float)((int)((i * 2654435761u + (size_t)rank * 40503u) % 2001u) - 1000) * 1.37e-3f +
           (float)rank * 0.1f;
}

static float load(zero_dtype_t dt, const void *buf, size_t i)
{
    if (dt == ZERO_FP32)
        return ((const float *)buf)[i];
    if (dt == ZERO_BF16)
        return zero_bf16_to_f32(((const uint16_t *)buf)[i]);
    return zero_f16_to_f32(((const uint16_t *)buf)[i]);
}

static void store(zero_dtype_t dt, void *buf, size_t i, float v)
{
    if (dt == ZERO_FP32)
        ((float *)buf)[i] = v;
    else if (dt == ZERO_BF16)
        ((uint16_t *)buf)[i] = zero_f32_to_bf16(v);
    else
        ((uint16_t *)buf)[i] = zero_f32_to_f16(v);
}

static void *alloc(zero_comm_h comm, int shared, size_t bytes)
{
    void *p = NULL;
    if (shared)
        return zero_comm_mem_alloc(comm, bytes ? bytes : 1, &p) == ZERO_OK ? p : NULL;
    return malloc(bytes ? bytes : 1);
}

static void release(zero_comm_h comm, int shared, void *p)
{
    if (shared)
        zero_comm_mem_free(comm, p);
    else
        free(p);
}

static void check_one(zero_comm_h comm, zero_dtype_t dt, size_t count, int shared)
{
    size_t es = zero_dtype_size(dt), W = (size_t)check_world;
    zero_dtype_t pdt = zero_comm_split_partial_dtype(comm, dt);
    void *send = alloc(comm, shared, W * count * es), *copy = malloc(W * count * es + 1);
    void *plain = alloc(comm, shared, count * es), *buf = malloc(count * zero_dtype_size(pdt) + 1);
    zero_comm_split_t split = {.buf = buf, .partial = NULL};
    zero_comm_request_h req = NULL;
    zero_status_t st;
    size_t bad = 0;
    if (send == NULL || copy == NULL || plain == NULL || buf == NULL) {
        EXPECT(0, "out of memory");
        goto out;
    }
    EXPECT(pdt == (W == 2 ? dt : ZERO_FP32), "partial dtype %s for %s at W=%zu", zero_dtype_string(pdt),
           zero_dtype_string(dt), W);
    for (size_t i = 0; i < W * count; i++)
        store(dt, send, i, value(check_rank, i));
    memcpy(copy, send, W * count * es);
    st = zero_comm_reduce_scatter(comm, send, plain, count, dt, ZERO_COMM_SUM, ZERO_MEM_HOST);
    EXPECT(st == ZERO_OK, "plain reduce-scatter: %s", zero_status_string(st));
    st = zero_comm_reduce_scatter_split_start(comm, send, count, dt, &split, &req);
    EXPECT(st == ZERO_OK, "split reduce-scatter: %s", zero_status_string(st));
    if (st == ZERO_OK) {
        st = zero_comm_request_wait(req);
        zero_comm_request_free(req);
        EXPECT(st == ZERO_OK, "split reduce-scatter: %s", zero_status_string(st));
    }
    if (st != ZERO_OK)
        goto out;
    EXPECT(memcmp(copy, send, W * count * es) == 0, "%s count %zu: the send buffer changed", zero_dtype_string(dt),
           count);
    if (shared && W == 2)
        EXPECT(split.partial != buf, "%s count %zu: direct path at two ranks: the partial was copied",
               zero_dtype_string(dt), count);
    else
        EXPECT(split.partial == buf, "%s count %zu: the partial is not in the caller's buffer",
               zero_dtype_string(dt), count);
    for (size_t i = 0; i < count; i++) {
        float own = load(dt, send, (size_t)check_rank * count + i), peer = load(pdt, split.partial, i);
        float want = load(dt, plain, i), got;
        void *tmp = &(uint32_t){0};
        store(dt, tmp, 0, peer + own);
        got = load(dt, tmp, 0);
        if (memcmp(&got, &want, sizeof(float)) != 0 && bad++ == 0)
            fprintf(stderr, "rank %d: %s count %zu %s: element %zu: own + partial = %.9g, reduce-scatter %.9g\n",
                    check_rank, zero_dtype_string(dt), count, shared ? "shared" : "malloc", i, (double)got, (double)want);
    }
    EXPECT(bad == 0, "%s count %zu %s: %zu elements differ from the plain reduce-scatter", zero_dtype_string(dt),
           count, shared ? "direct" : "ring", bad);
out:
    release(comm, shared, send);
    release(comm, shared, plain);
    free(copy);
    free(buf);
}

int main(void)
{
    static const zero_dtype_t dts[] = {ZERO_FP32, ZERO_BF16, ZERO_FP16};
    static const size_t counts[] = {1, 1000, 70001, 300007};
    zero_comm_h comm;
    if (rank_check_begin(&comm) != 0)
        return 1;
    if (check_world == 1) {
        zero_comm_split_t split = {.buf = &(float){0}, .partial = NULL};
        zero_comm_request_h req = NULL;
        float x = 1.0f;
        EXPECT(zero_comm_reduce_scatter_split_start(comm, &x, 1, ZERO_FP32, &split, &req) == ZERO_ERR_UNSUPPORTED,
               "a world of one: not refused");
    } else {
        for (int shared = 1; shared >= 0; shared--)
            for (size_t d = 0; d < sizeof(dts) / sizeof(dts[0]); d++)
                for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++)
                    check_one(comm, dts[d], counts[c], shared);
    }
    return rank_check_end(comm);
}
