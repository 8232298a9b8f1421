/*
 * Stage-3 parameter shards in host memory for ranks that train in device
 * memory (offload_param.device "cpu" with mem_kind device; docs/offload.md).
 *
 * Each dtype group's shard, in the training dtype, lives in ordinary host
 * memory (never pinned). Device memory then holds only the gathered weights:
 *
 *   - upload (a gather): this rank's part of a parameter goes host -> pinned
 *     slot (a memcpy on the caller's thread) -> device (cudaMemcpyAsync on the
 *     store's copy stream) into its place in the gathered buffer. The copy
 *     stream first waits for an event recorded on the trainer's stream (the
 *     gathered block may be a pool block that earlier work there still
 *     reads); the event recorded after the copies is handed back, and the
 *     in-place allgather waits for it instead of the trainer's stream, so
 *     the trainer's own work never waits for an upload (a prefetched
 *     gather's upload overlaps it).
 *   - download (the step's weights written by device kernels into a device
 *     window): device -> slot on the copy stream after an event of the
 *     trainer's stream, then slot -> host shard; up to every slot in flight,
 *     drained oldest first. Returns when the shard holds the bytes.
 *   - with the CPU optimizer offload (store_cpu.c) the step writes the
 *     shard on the host directly (zero_store_async_step_t.weights_on_host):
 *     no bounce through the device.
 *
 * The slots are a ring of offload_param.buffer_count slots (util/slot_ring.h,
 * pinned in pieces; when pinning fails, one warning naming "offload_param
 * transfer slots" and pageable slots). Consecutive chunks take consecutive
 * slots, and the position carries over from call to call, so a slot is
 * refilled only after its previous copy finished, waited for by its event
 * (a bounded wait: timeout_s).
 *
 * Host-side only without a device (device < 0): the shards, the ring and
 * the chunk plan work (the unit test checks them on the CPU); upload and
 * download return ZERO_ERR_UNSUPPORTED.
 *
 * Thread safety: one caller at a time.
 */
#ifndef ZERO_OFFLOAD_PARAM_HOST_H
#define ZERO_OFFLOAD_PARAM_HOST_H

#include <stddef.h>
#include <stdint.h>

#include <zero/status.h>
#include <zero/types.h>

typedef struct zero_param_host zero_param_host_t;

/* What to create: zero it, then fill it. */
typedef struct zero_param_host_options {
    int num_groups;                          /* 1 .. ZERO_DTYPE_COUNT */
    zero_dtype_t dtype[ZERO_DTYPE_COUNT];    /* each group's training dtype */
    size_t length[ZERO_DTYPE_COUNT];         /* each group's shard length (elements) */
    unsigned slots;                          /* transfer slots, 1 .. 64 (offload_param.buffer_count) */
    size_t slot_bytes;                       /* bytes per slot (>= 8) */
    int pin;                                 /* 0: pageable slots, no attempt to pin */
    size_t pin_limit;                        /* bytes pinned in all at most; 0: no limit */
    int device;                              /* the rank's CUDA device; -1: host-side only (no copies) */
    void *cuda_stream;                       /* the trainer's stream (cudaStream_t; NULL: legacy default) */
    double timeout_s;                        /* a copy not done after this long is an error; 0: 300 s */
} zero_param_host_options_t;

/* One chunk of a transfer: shard elements [offset, offset + count) of the
 * call's range go through slot @c slot. */
typedef struct zero_param_host_chunk {
    unsigned slot;
    size_t offset, count;
} zero_param_host_chunk_t;

/* Creates the shards (populated, zeroed) and the slots; with a device, the
 * copy stream and the events. Errors: ZERO_ERR_INVALID_ARG (bad options),
 * ZERO_ERR_NO_MEMORY, ZERO_ERR_CUDA; all logged. */
zero_status_t zero_param_host_create(const zero_param_host_options_t *opts, zero_param_host_t **ph_p);
/* NULL allowed; waits for the copies in flight first. */
void zero_param_host_destroy(zero_param_host_t *ph);

/* Group @p g's shard in host memory (length[g] elements of its dtype). */
void *zero_param_host_shard(const zero_param_host_t *ph, int g);
/* Elements of @p g's dtype one slot holds. */
size_t zero_param_host_slot_elems(const zero_param_host_t *ph, int g);
/* The next chunk of a transfer of @p n elements of group @p g of which
 * @p *done are moved: the slot is the ring's next one (the position carries
 * over between calls); advances *done. 0 when nothing is left. */
int zero_param_host_next_chunk(zero_param_host_t *ph, int g, size_t n, size_t *done, zero_param_host_chunk_t *chunk);

/* Copies shard elements [so, so + n) of group @p g to @p dev_dst (device
 * memory) as described above. *@p copied_p (a cudaEvent_t; NULL when n is
 * 0): recorded after the copies, which follow the trainer's stream as it
 * stood at the call; work reading @p dev_dst waits for it. The next transfer
 * records it again, so hand it on at once (a collective's wait event, which
 * the communicator takes as it stands when the collective is queued). */
zero_status_t zero_param_host_upload(zero_param_host_t *ph, int g, size_t so, size_t n, void *dev_dst,
                                     void **copied_p);
/* Copies @p n elements at @p dev_src (device memory, written by work queued on
 * the trainer's stream) into shard elements [so, so + n) of group @p g;
 * returns when they are there. */
zero_status_t zero_param_host_download(zero_param_host_t *ph, int g, size_t so, size_t n, const void *dev_src);

/* Bytes of the shards and of the slots (host memory), slots pinned, and
 * bytes moved each way so far. */
typedef struct zero_param_host_stats {
    uint64_t shard_bytes, slot_bytes;
    unsigned slots, pinned_slots;
    uint64_t bytes_up, bytes_down;
} zero_param_host_stats_t;
void zero_param_host_stats(const zero_param_host_t *ph, zero_param_host_stats_t *stats_p);

#endif /* ZERO_OFFLOAD_PARAM_HOST_H */
