/* The ring of host transfer slots and its pipeline (see slot_ring.h). */
#define ZERO_LOG_MODULE "util"
#include "util/slot_ring.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

void zero_slot_pipe_init(zero_slot_pipe_t *p, size_t chunks, unsigned slots, unsigned base)
{
    memset(p, 0, sizeof(*p));
    p->chunks = chunks;
    p->slots = slots;
    p->base = slots > 0 ? base % slots : 0;
}

unsigned zero_slot_pipe_slot(const zero_slot_pipe_t *p, size_t k)
{
    return (unsigned)((p->base + k) % p->slots);
}

unsigned zero_slot_pipe_ready(const zero_slot_pipe_t *p)
{
    unsigned ready = 0;
    /* chunk d2h_issued takes the slot of chunk d2h_issued - slots, which must be copied back */
    if (p->d2h_issued < p->chunks && p->d2h_issued - p->h2d_done < p->slots)
        ready |= ZERO_SLOT_COPY_IN;
    if (p->work_started == p->work_done && p->work_started < p->d2h_done)
        ready |= ZERO_SLOT_WORK;
    if (p->h2d_issued < p->work_done)
        ready |= ZERO_SLOT_COPY_OUT;
    return ready;
}

unsigned zero_slot_pipe_wait_for(const zero_slot_pipe_t *p)
{
    int in = p->d2h_done < p->d2h_issued, out = p->h2d_done < p->h2d_issued;
    if (in && (p->work_started == p->d2h_done || !out))
        return ZERO_SLOT_COPY_IN;
    return out ? ZERO_SLOT_COPY_OUT : 0;
}

int zero_slot_pipe_finished(const zero_slot_pipe_t *p)
{
    return p->h2d_done == p->chunks;
}

unsigned zero_slot_pipe_next_base(const zero_slot_pipe_t *p)
{
    return (unsigned)((p->base + p->chunks) % p->slots);
}

typedef struct ring_piece {
    void *mem;
    unsigned first, count;   /* the slots it holds */
    int pinned;
} ring_piece_t;

struct zero_slot_ring {
    unsigned slots, npieces;
    size_t slot_bytes, stride;   /* stride: slot_bytes rounded up to 64 */
    ring_piece_t *pieces;
    unsigned *piece_of;          /* [slots] */
};

void zero_slot_ring_destroy(zero_slot_ring_t *ring)
{
    if (ring == NULL)
        return;
    for (unsigned i = 0; ring->pieces != NULL && i < ring->npieces; i++)
        zero_mem_free(ring->pieces[i].mem);
    zero_free(ring->pieces);
    zero_free(ring->piece_of);
    zero_free(ring);
}

zero_status_t zero_slot_ring_create(const zero_slot_ring_params_t *params, zero_slot_ring_t **ring_p)
{
    const char *what = params->what != NULL ? params->what : "transfer slots";
    size_t piece_max = params->piece_max ? params->piece_max : ZERO_SLOT_RING_PIECE_MAX;
    zero_slot_ring_t *ring;
    unsigned per_piece;
    size_t pinned_bytes = 0;
    int pin = params->pin;
    zero_status_t status = ZERO_OK;

    if (params->slots < 1 || params->slot_bytes < 1 || params->slot_bytes > piece_max) {
        ZERO_LOG_ERROR("%s: %u slots of %zu bytes: need at least one slot of 1 to %zu bytes", what, params->slots,
                       params->slot_bytes, piece_max);
        return ZERO_ERR_INVALID_ARG;
    }
    ring = zero_calloc(1, sizeof(*ring));
    if (ring == NULL)
        goto oom;
    ring->slots = params->slots;
    ring->slot_bytes = params->slot_bytes;
    ring->stride = (params->slot_bytes + ZERO_MEM_ALIGNMENT - 1) & ~(size_t)(ZERO_MEM_ALIGNMENT - 1);
    per_piece = ring->stride > piece_max ? 1u : (unsigned)(piece_max / ring->stride < params->slots
                                                               ? piece_max / ring->stride : params->slots);
    if (per_piece < 1)
        per_piece = 1;
    ring->npieces = (params->slots + per_piece - 1) / per_piece;
    ring->pieces = zero_calloc(ring->npieces, sizeof(*ring->pieces));
    ring->piece_of = zero_calloc(ring->slots, sizeof(*ring->piece_of));
    if (ring->pieces == NULL || ring->piece_of == NULL)
        goto oom;
    for (unsigned p = 0; p < ring->npieces; p++) {
        ring_piece_t *piece = &ring->pieces[p];
        size_t bytes;
        piece->first = p * per_piece;
        piece->count = params->slots - piece->first < per_piece ? params->slots - piece->first : per_piece;
        bytes = (size_t)piece->count * ring->stride;
        for (unsigned s = 0; s < piece->count; s++)
            ring->piece_of[piece->first + s] = p;
        if (pin) {
            char why[200];
            if (params->pin_limit > 0 && bytes > params->pin_limit - pinned_bytes)
                snprintf(why, sizeof(why), "the pinned-memory limit of %zu bytes would be passed", params->pin_limit);
            else if (zero_mem_alloc_pinned_try(bytes, what, &piece->mem, why, sizeof(why)) == ZERO_OK) {
                piece->pinned = 1;
                pinned_bytes += bytes;
                continue;
            }
            /* one warning; later pieces would fail alike, and each try costs milliseconds */
            ZERO_LOG_WARN("%s: cannot pin %zu bytes (%s); %s in ordinary pageable memory: copies are slower, "
                          "training is the same", what, bytes, why,
                          p == 0 ? "all slots stay" : "the remaining slots stay");
            pin = 0;
        }
        status = zero_mem_alloc(ZERO_MEM_HOST, bytes, what, &piece->mem);
        if (status != ZERO_OK)
            goto fail;
        zero_mem_populate(ZERO_MEM_HOST, piece->mem, bytes);
    }
    *ring_p = ring;
    return ZERO_OK;
oom:
    ZERO_LOG_ERROR("%s: out of memory", what);
    status = ZERO_ERR_NO_MEMORY;
fail:
    zero_slot_ring_destroy(ring);
    return status;
}

unsigned zero_slot_ring_slots(const zero_slot_ring_t *ring) { return ring->slots; }

size_t zero_slot_ring_slot_bytes(const zero_slot_ring_t *ring) { return ring->slot_bytes; }

void *zero_slot_ring_slot(const zero_slot_ring_t *ring, unsigned i)
{
    const ring_piece_t *piece = &ring->pieces[ring->piece_of[i]];
    return (char *)piece->mem + (size_t)(i - piece->first) * ring->stride;
}

int zero_slot_ring_slot_pinned(const zero_slot_ring_t *ring, unsigned i)
{
    return ring->pieces[ring->piece_of[i]].pinned;
}

unsigned zero_slot_ring_pinned_slots(const zero_slot_ring_t *ring)
{
    unsigned n = 0;
    for (unsigned p = 0; p < ring->npieces; p++)
        n += ring->pieces[p].pinned ? ring->pieces[p].count : 0;
    return n;
}

unsigned zero_slot_ring_pieces(const zero_slot_ring_t *ring) { return ring->npieces; }
