/* The staged backend's host-side logic (see staged_plan.h). */
#define ZERO_LOG_MODULE "comm"
#include "comm/staged_plan.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

/* ---- which backend carries device memory ---- */

int zero_device_index(int configured, int local_rank, int count)
{
    if (configured >= 0)
        return configured;
    return count > 0 ? local_rank % count : 0;
}

static int key_empty(const unsigned char *key)
{
    for (int i = 0; i < ZERO_DEVICE_KEY_BYTES; i++)
        if (key[i] != 0)
            return 0;
    return 1;
}

void zero_device_path_choose(uint32_t backends, int size, const unsigned char *const *keys,
                             zero_device_choice_t *c)
{
    int nccl = (backends & ZERO_COMM_BACKEND_NCCL) != 0, staged = (backends & ZERO_COMM_BACKEND_STAGED) != 0;
    memset(c, 0, sizeof(*c));
    c->path = ZERO_DEVICE_PATH_NONE;
    c->shared_a = c->shared_b = c->missing = -1;
    if (size <= 1) {
        if (size == 1 && nccl && !staged && !key_empty(keys[0])) {
            c->path = ZERO_DEVICE_PATH_NCCL;
            snprintf(c->note, sizeof(c->note), "a world of one over NCCL: only the nccl backend is allowed "
                     "(comm_backend \"nccl\")");
        }
        return;
    }
    for (int r = 0; r < size && c->missing < 0; r++)
        if (key_empty(keys[r]))
            c->missing = r;
    if (c->missing >= 0) {
        snprintf(c->note, sizeof(c->note), "rank %d has no usable CUDA device, so device memory cannot be "
                 "communicated", c->missing);
        return;
    }
    for (int a = 0; a < size && c->shared_a < 0; a++)
        for (int b = a + 1; b < size; b++)
            if (memcmp(keys[a], keys[b], ZERO_DEVICE_KEY_BYTES) == 0) {
                c->shared_a = a;
                c->shared_b = b;
                break;
            }
    if (nccl && staged) {
        c->path = c->shared_a >= 0 ? ZERO_DEVICE_PATH_STAGED : ZERO_DEVICE_PATH_NCCL;
        c->automatic = c->shared_a >= 0;
        if (c->automatic)
            snprintf(c->note, sizeof(c->note), "ranks %d and %d share the CUDA device %.*s, which NCCL refuses: "
                     "device collectives go through pinned host memory (the staged backend)", c->shared_a,
                     c->shared_b, 64, (const char *)keys[c->shared_a]);
    } else if (staged) {
        c->path = ZERO_DEVICE_PATH_STAGED;
    } else if (nccl) {
        if (c->shared_a < 0) {
            c->path = ZERO_DEVICE_PATH_NCCL;
        } else {
            snprintf(c->note, sizeof(c->note), "ranks %d and %d share the CUDA device %.*s and only the nccl "
                     "backend is allowed, which refuses that; allow the staged backend (comm_backend \"staged\" "
                     "or \"auto\")", c->shared_a, c->shared_b, 64, (const char *)keys[c->shared_a]);
        }
    } else {
        snprintf(c->note, sizeof(c->note), "neither the nccl nor the staged backend is allowed");
    }
}

/* ---- geometry ---- */

zero_status_t zero_staged_geom_init(zero_staged_geom_t *g, const zero_coll_desc_t *d, int size, int rank,
                                    size_t slot_bytes)
{
    size_t per_element;
    memset(g, 0, sizeof(*g));
    g->kind = d->kind;
    g->dtype = d->dtype;
    g->op = d->op;
    g->count = d->count;
    g->es = zero_dtype_size(d->dtype);
    g->size = size;
    g->rank = rank;
    g->root = d->root;
    switch (d->kind) {
    case ZERO_COLL_ALLREDUCE:
    case ZERO_COLL_BROADCAST:
        per_element = g->es;
        break;
    case ZERO_COLL_REDUCE_SCATTER:
    case ZERO_COLL_ALLGATHER:
        per_element = g->es * (size_t)size;   /* a chunk holds the same range of every rank's block */
        break;
    case ZERO_COLL_ALLTOALL:
        /* the same range of every rank's block, sent and received: the host
         * all-to-all is never in place */
        per_element = 2 * g->es * (size_t)size;
        break;
    default:
        ZERO_LOG_ERROR("staged: %s is not a device collective", zero_coll_name(d->kind));
        return ZERO_ERR_INVALID_ARG;
    }
    if (g->es == 0 || slot_bytes < per_element) {
        ZERO_LOG_ERROR("staged: a slot of %zu bytes cannot hold one %zu-byte element of %d ranks", slot_bytes,
                       g->es, size);
        return ZERO_ERR_INVALID_ARG;
    }
    g->chunk = slot_bytes / per_element;
    g->chunks = g->count == 0 ? 0 : (g->count - 1) / g->chunk + 1;
    return ZERO_OK;
}

/* Chunk @p k's first element (within the whole, or within each rank's block) and length. */
static void chunk_range(const zero_staged_geom_t *g, size_t k, size_t *off_p, size_t *n_p)
{
    size_t off = k * g->chunk;
    *off_p = off;
    *n_p = g->count - off < g->chunk ? g->count - off : g->chunk;
}

static zero_staged_piece_t piece(size_t dev_off, size_t slot_off, size_t bytes)
{
    zero_staged_piece_t p = {dev_off, slot_off, bytes};
    return p;
}

/* Staged layout of a chunk of n elements: allreduce and broadcast, the n
 * elements; reduce-scatter and allgather, rank q's n elements at q * n;
 * all-to-all, the block for rank q at q * n and the block from rank q at
 * (size + q) * n. */
int zero_staged_pieces_in(const zero_staged_geom_t *g, size_t k, zero_staged_piece_t *pieces)
{
    size_t off, n, es = g->es;
    chunk_range(g, k, &off, &n);
    switch (g->kind) {
    case ZERO_COLL_ALLREDUCE:
        pieces[0] = piece(off * es, 0, n * es);
        return 1;
    case ZERO_COLL_BROADCAST:
        if (g->rank != g->root)
            return 0;   /* the root's data arrives through the host broadcast */
        pieces[0] = piece(off * es, 0, n * es);
        return 1;
    case ZERO_COLL_REDUCE_SCATTER:
    case ZERO_COLL_ALLTOALL:
        for (int q = 0; q < g->size; q++)
            pieces[q] = piece(((size_t)q * g->count + off) * es, (size_t)q * n * es, n * es);
        return g->size;
    case ZERO_COLL_ALLGATHER:
        pieces[0] = piece(off * es, (size_t)g->rank * n * es, n * es);
        return 1;
    default:
        return 0;
    }
}

int zero_staged_pieces_out(const zero_staged_geom_t *g, size_t k, zero_staged_piece_t *pieces)
{
    size_t off, n, es = g->es;
    chunk_range(g, k, &off, &n);
    switch (g->kind) {
    case ZERO_COLL_ALLREDUCE:
    case ZERO_COLL_BROADCAST:
        pieces[0] = piece(off * es, 0, n * es);
        return 1;
    case ZERO_COLL_REDUCE_SCATTER:
        pieces[0] = piece(off * es, (size_t)g->rank * n * es, n * es);
        return 1;
    case ZERO_COLL_ALLGATHER:
        for (int q = 0; q < g->size; q++)
            pieces[q] = piece(((size_t)q * g->count + off) * es, (size_t)q * n * es, n * es);
        return g->size;
    case ZERO_COLL_ALLTOALL:
        for (int q = 0; q < g->size; q++)
            pieces[q] = piece(((size_t)q * g->count + off) * es, ((size_t)g->size + (size_t)q) * n * es, n * es);
        return g->size;
    default:
        return 0;
    }
}

void zero_staged_host_desc(const zero_staged_geom_t *g, size_t k, unsigned char *slot, zero_coll_desc_t *out)
{
    size_t off, n;
    unsigned char *mine;
    chunk_range(g, k, &off, &n);
    mine = slot + (size_t)g->rank * n * g->es;
    memset(out, 0, sizeof(*out));
    out->kind = g->kind;
    out->dtype = g->dtype;
    out->op = g->op;
    out->count = n;
    out->root = g->root;
    out->mem_kind = ZERO_MEM_HOST;
    switch (g->kind) {
    case ZERO_COLL_REDUCE_SCATTER:   /* in place: recvbuf == sendbuf + rank * recvcount */
        out->sendbuf = slot;
        out->recvbuf = mine;
        break;
    case ZERO_COLL_ALLGATHER:        /* in place: sendbuf == recvbuf + rank * sendcount */
        out->sendbuf = mine;
        out->recvbuf = slot;
        break;
    case ZERO_COLL_ALLTOALL:         /* out of place: the slot's second half receives */
        out->sendbuf = slot;
        out->recvbuf = slot + (size_t)g->size * n * g->es;
        break;
    default:
        out->sendbuf = slot;
        out->recvbuf = slot;
        break;
    }
}

/* ---- the gate ---- */

int zero_staged_gate_passes(uint32_t word, uint32_t gen)
{
    return (int32_t)(word - gen) >= 0;
}

uint32_t zero_staged_gate_raise(uint32_t word, uint32_t gen)
{
    return zero_staged_gate_passes(word, gen) ? word : gen;
}
