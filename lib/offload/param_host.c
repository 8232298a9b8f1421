/* Stage-3 parameter shards in host memory for device ranks (param_host.h). */
#define ZERO_LOG_MODULE "offload"
#include "offload/param_host.h"
#include "util/alloc.h"
#include "util/cuda_module.h"
#include "util/log.h"
#include "util/slot_ring.h"

#include <string.h>

#if HAVE_CUDA
#include "util/checks_cuda.h"
#include "util/clock.h"
#include <time.h>
#endif

#define SLOTS_MAX 64u

struct zero_param_host {
    int num_groups;
    size_t esz[ZERO_DTYPE_COUNT];
    size_t length[ZERO_DTYPE_COUNT];
    void *shard[ZERO_DTYPE_COUNT];        /* host memory, never pinned */
    uint64_t shard_bytes;
    zero_slot_ring_t *ring;
    unsigned cursor;                      /* the ring position of the next chunk */
    int device;                           /* -1: host-side only */
    double timeout_s;
    uint64_t bytes_up, bytes_down;
#if HAVE_CUDA
    cudaStream_t trainer;                 /* borrowed */
    cudaStream_t copy;
    cudaEvent_t ready;                    /* on the trainer's stream: the copies start after it */
    cudaEvent_t copied;                   /* on the copy stream after an upload: the allgather waits for it */
    cudaEvent_t *slot_done;               /* per slot: its last copy */
    unsigned char *slot_used;             /* per slot: slot_done was recorded */
#endif
};

zero_status_t zero_param_host_create(const zero_param_host_options_t *opts, zero_param_host_t **ph_p)
{
    zero_slot_ring_params_t rp;
    zero_param_host_t *ph;
    zero_status_t status = ZERO_OK;

    *ph_p = NULL;
    if (opts == NULL || opts->num_groups < 1 || opts->num_groups > ZERO_DTYPE_COUNT || opts->slots < 1 ||
        opts->slots > SLOTS_MAX || opts->slot_bytes < 8) {
        ZERO_LOG_ERROR("offload_param: bad options for the host parameter shards (%d groups, %u slots of %zu bytes; "
                       "1-%u slots of at least 8 bytes)", opts != NULL ? opts->num_groups : 0,
                       opts != NULL ? opts->slots : 0, opts != NULL ? opts->slot_bytes : 0, SLOTS_MAX);
        return ZERO_ERR_INVALID_ARG;
    }
    if (opts->device >= 0 && (status = zero_cuda_require("offload_param \"cpu\" for a device engine")) != ZERO_OK)
        return status;
    ph = zero_calloc(1, sizeof(*ph));
    if (ph == NULL) {
        ZERO_LOG_ERROR("offload_param: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    ph->num_groups = opts->num_groups;
    ph->device = opts->device;
    ph->timeout_s = opts->timeout_s > 0 ? opts->timeout_s : 300.0;
    for (int g = 0; g < opts->num_groups; g++) {
        size_t esz = zero_dtype_size(opts->dtype[g]);
        if (esz == 0 || esz > opts->slot_bytes) {
            ZERO_LOG_ERROR("offload_param: group %d (%s) has no element size or does not fit a slot of %zu bytes", g,
                           zero_dtype_string(opts->dtype[g]), opts->slot_bytes);
            status = ZERO_ERR_INVALID_ARG;
            goto fail;
        }
        ph->esz[g] = esz;
        ph->length[g] = opts->length[g];
        if (opts->length[g] == 0)
            continue;
        status = zero_mem_alloc(ZERO_MEM_HOST, opts->length[g] * esz, "offload_param host shard", &ph->shard[g]);
        if (status != ZERO_OK)
            goto fail;
        memset(ph->shard[g], 0, opts->length[g] * esz);   /* populated now, not in a gather */
        ph->shard_bytes += opts->length[g] * esz;
    }
    memset(&rp, 0, sizeof(rp));
    rp.slots = opts->slots;
    rp.slot_bytes = opts->slot_bytes;
    rp.pin = opts->pin;
    rp.pin_limit = opts->pin_limit;
    rp.what = "offload_param transfer slots";
    if ((status = zero_slot_ring_create(&rp, &ph->ring)) != ZERO_OK)
        goto fail;
#if HAVE_CUDA
    if (ph->device >= 0) {
        ph->trainer = (cudaStream_t)opts->cuda_stream;
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(ph->device), status, fail, "offload_param: cudaSetDevice(%d)",
                             ph->device);
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&ph->copy, cudaStreamNonBlocking), status, fail,
                             "offload_param: %s", "creating the copy stream");
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&ph->ready, cudaEventDisableTiming), status, fail,
                             "offload_param: %s", "creating an event");
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&ph->copied, cudaEventDisableTiming), status, fail,
                             "offload_param: %s", "creating an event");
        ph->slot_done = zero_calloc(opts->slots, sizeof(*ph->slot_done));
        ph->slot_used = zero_calloc(opts->slots, sizeof(*ph->slot_used));
        if (ph->slot_done == NULL || ph->slot_used == NULL) {
            ZERO_LOG_ERROR("offload_param: out of memory");
            status = ZERO_ERR_NO_MEMORY;
            goto fail;
        }
        for (unsigned i = 0; i < opts->slots; i++)
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&ph->slot_done[i], cudaEventDisableTiming),
                                 status, fail, "offload_param: %s", "creating an event");
    }
#endif
    *ph_p = ph;
    return ZERO_OK;
fail:
    zero_param_host_destroy(ph);
    return status;
}

void zero_param_host_destroy(zero_param_host_t *ph)
{
    if (ph == NULL)
        return;
#if HAVE_CUDA
    if (ph->copy != NULL)
        (void)ZERO_CUDA(cudaStreamSynchronize)(ph->copy);   /* no copy may still touch a slot */
    for (unsigned i = 0; ph->slot_done != NULL && i < zero_slot_ring_slots(ph->ring); i++)
        if (ph->slot_done[i] != NULL)
            ZERO_CUDA(cudaEventDestroy)(ph->slot_done[i]);
    if (ph->ready != NULL)
        ZERO_CUDA(cudaEventDestroy)(ph->ready);
    if (ph->copied != NULL)
        ZERO_CUDA(cudaEventDestroy)(ph->copied);
    if (ph->copy != NULL)
        ZERO_CUDA(cudaStreamDestroy)(ph->copy);
    zero_free(ph->slot_done);
    zero_free(ph->slot_used);
#endif
    zero_slot_ring_destroy(ph->ring);
    for (int g = 0; g < ph->num_groups; g++)
        zero_mem_free(ph->shard[g]);
    zero_free(ph);
}

void *zero_param_host_shard(const zero_param_host_t *ph, int g) { return ph->shard[g]; }

size_t zero_param_host_slot_elems(const zero_param_host_t *ph, int g)
{
    return zero_slot_ring_slot_bytes(ph->ring) / ph->esz[g];
}

int zero_param_host_next_chunk(zero_param_host_t *ph, int g, size_t n, size_t *done, zero_param_host_chunk_t *chunk)
{
    size_t per = zero_param_host_slot_elems(ph, g);
    if (*done >= n)
        return 0;
    chunk->slot = ph->cursor;
    chunk->offset = *done;
    chunk->count = n - *done < per ? n - *done : per;
    ph->cursor = (ph->cursor + 1) % zero_slot_ring_slots(ph->ring);
    *done += chunk->count;
    return 1;
}

void zero_param_host_stats(const zero_param_host_t *ph, zero_param_host_stats_t *stats_p)
{
    memset(stats_p, 0, sizeof(*stats_p));
    stats_p->shard_bytes = ph->shard_bytes;
    stats_p->slots = zero_slot_ring_slots(ph->ring);
    stats_p->slot_bytes = (uint64_t)stats_p->slots * zero_slot_ring_slot_bytes(ph->ring);
    stats_p->pinned_slots = zero_slot_ring_pinned_slots(ph->ring);
    stats_p->bytes_up = ph->bytes_up;
    stats_p->bytes_down = ph->bytes_down;
}

/* Whether [so, so + n) lies in group @p g's shard (logged when not). */
static int in_shard(const zero_param_host_t *ph, int g, size_t so, size_t n, const char *call)
{
    if (g >= 0 && g < ph->num_groups && so <= ph->length[g] && n <= ph->length[g] - so)
        return 1;
    ZERO_LOG_ERROR("offload_param: %s of [%zu, +%zu) of group %d: outside its shard (%zu elements)", call, so, n, g,
                   g >= 0 && g < ph->num_groups ? ph->length[g] : 0);
    return 0;
}

#if HAVE_CUDA

/* Waits, bounded by timeout_s, for @p ev (an event has no host wake-up:
 * polled with short sleeps; a copy of one slot takes about that long). */
static zero_status_t wait_event(const zero_param_host_t *ph, cudaEvent_t ev, const char *what)
{
    double until = zero_clock_now() + ph->timeout_s;
    for (;;) {
        cudaError_t err = ZERO_CUDA(cudaEventQuery)(ev);
        struct timespec nap = {0, 20000};
        if (err == cudaSuccess)
            return ZERO_OK;
        if (err != cudaErrorNotReady) {
            ZERO_LOG_ERROR("offload_param: %s failed: %s", what, ZERO_CUDA(cudaGetErrorString)(err));
            return ZERO_ERR_CUDA;
        }
        if (zero_clock_now() > until) {
            ZERO_LOG_ERROR("offload_param: %s did not finish within %g s", what, ph->timeout_s);
            return ZERO_ERR_TIMEOUT;
        }
        nanosleep(&nap, NULL);
    }
}

/* The slot's previous copy (either way) is done: it may be refilled. */
static zero_status_t slot_free(zero_param_host_t *ph, unsigned slot)
{
    if (!ph->slot_used[slot])
        return ZERO_OK;
    return wait_event(ph, ph->slot_done[slot], "a copy through an offload_param transfer slot");
}

/* The copy stream starts after everything the trainer's stream holds now. */
static zero_status_t after_trainer(zero_param_host_t *ph)
{
    zero_status_t status = ZERO_OK;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(ph->device), status, out, "offload_param: cudaSetDevice(%d)",
                         ph->device);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(ph->ready, ph->trainer), status, out, "offload_param: %s",
                         "recording the trainer's event");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(ph->copy, ph->ready, 0), status, out, "offload_param: %s",
                         "ordering the copies after the trainer's stream");
out:
    return status;
}

/* What every transfer starts with: the checks, then the copy stream ordered
 * after the trainer's stream. 1: go on; 0: nothing to move or failed
 * (*status_p says which). */
static int transfer_begin(zero_param_host_t *ph, int g, size_t so, size_t n, const char *call, zero_status_t *status_p)
{
    *status_p = ZERO_OK;
    if (!in_shard(ph, g, so, n, call)) {
        *status_p = ZERO_ERR_INVALID_ARG;
        return 0;
    }
    if (ph->device < 0) {
        ZERO_LOG_ERROR("offload_param: %s without a device (host-side only)", call);
        *status_p = ZERO_ERR_UNSUPPORTED;
        return 0;
    }
    if (n == 0)
        return 0;
    *status_p = after_trainer(ph);
    return *status_p == ZERO_OK;
}

zero_status_t zero_param_host_upload(zero_param_host_t *ph, int g, size_t so, size_t n, void *dev_dst,
                                     void **copied_p)
{
    size_t esz, done = 0;
    zero_param_host_chunk_t ch;
    zero_status_t status;
    *copied_p = NULL;
    if (!transfer_begin(ph, g, so, n, "upload", &status))
        return status;
    esz = ph->esz[g];
    while (zero_param_host_next_chunk(ph, g, n, &done, &ch)) {
        void *slot = zero_slot_ring_slot(ph->ring, ch.slot);
        size_t bytes = ch.count * esz;
        if ((status = slot_free(ph, ch.slot)) != ZERO_OK)
            goto out;
        memcpy(slot, (const char *)ph->shard[g] + (so + ch.offset) * esz, bytes);
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)((char *)dev_dst + ch.offset * esz, slot, bytes,
                                                        cudaMemcpyHostToDevice, ph->copy),
                             status, out, "offload_param: uploading %zu bytes of the shard at [%zu, +%zu)", bytes,
                             so + ch.offset, ch.count);
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(ph->slot_done[ch.slot], ph->copy), status, out,
                             "offload_param: %s", "recording a slot's event");
        ph->slot_used[ch.slot] = 1;
        ph->bytes_up += bytes;
    }
    /* what waits for this event (the allgather) sees the shard */
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(ph->copied, ph->copy), status, out, "offload_param: %s",
                         "recording the upload's event");
    *copied_p = ph->copied;
out:
    /* the caller hands dev_dst back: no queued copy may write it after this
     * returns (except after a timeout: that copy is stuck behind the
     * trainer's stream, and waiting for it would not be bounded) */
    if (status != ZERO_OK && status != ZERO_ERR_TIMEOUT)
        (void)ZERO_CUDA(cudaStreamSynchronize)(ph->copy);
    return status;
}

zero_status_t zero_param_host_download(zero_param_host_t *ph, int g, size_t so, size_t n, const void *dev_src)
{
    unsigned slots = zero_slot_ring_slots(ph->ring), head = 0, count = 0;
    zero_param_host_chunk_t fifo[SLOTS_MAX], ch;
    size_t esz, done = 0;
    zero_status_t status;
    if (!transfer_begin(ph, g, so, n, "download", &status))
        return status;
    esz = ph->esz[g];
    for (;;) {
        int more = count < slots && zero_param_host_next_chunk(ph, g, n, &done, &ch);
        if (more) {   /* start one more copy down: consecutive chunks, distinct slots */
            size_t bytes = ch.count * esz;
            if ((status = slot_free(ph, ch.slot)) != ZERO_OK)
                break;
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)(zero_slot_ring_slot(ph->ring, ch.slot),
                                                            (const char *)dev_src + ch.offset * esz, bytes,
                                                            cudaMemcpyDeviceToHost, ph->copy),
                                 status, out, "offload_param: downloading %zu bytes of the shard at [%zu, +%zu)",
                                 bytes, so + ch.offset, ch.count);
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(ph->slot_done[ch.slot], ph->copy), status, out,
                                 "offload_param: %s", "recording a slot's event");
            ph->slot_used[ch.slot] = 1;
            fifo[(head + count) % slots] = ch;
            count++;
            continue;
        }
        if (count == 0)
            break;
        /* the oldest copy down: wait for it, then into the shard */
        ch = fifo[head];
        head = (head + 1) % slots;
        count--;
        if ((status = wait_event(ph, ph->slot_done[ch.slot], "downloading the step's weights")) != ZERO_OK)
            break;
        memcpy((char *)ph->shard[g] + (so + ch.offset) * esz, zero_slot_ring_slot(ph->ring, ch.slot),
               ch.count * esz);
        ph->bytes_down += ch.count * esz;
    }
out:
    if (status != ZERO_OK && status != ZERO_ERR_TIMEOUT)   /* no copy may write a slot after this returns (as upload) */
        (void)ZERO_CUDA(cudaStreamSynchronize)(ph->copy);
    return status;
}

#else /* !HAVE_CUDA */

zero_status_t zero_param_host_upload(zero_param_host_t *ph, int g, size_t so, size_t n, void *dev_dst,
                                     void **copied_p)
{
    (void)dev_dst;
    *copied_p = NULL;
    if (!in_shard(ph, g, so, n, "upload"))
        return ZERO_ERR_INVALID_ARG;
    return zero_cuda_require("offload_param \"cpu\" for a device engine");
}

zero_status_t zero_param_host_download(zero_param_host_t *ph, int g, size_t so, size_t n, const void *dev_src)
{
    (void)dev_src;
    if (!in_shard(ph, g, so, n, "download"))
        return ZERO_ERR_INVALID_ARG;
    return zero_cuda_require("offload_param \"cpu\" for a device engine");
}
#endif
