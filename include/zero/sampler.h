/*
 * Distributed sampler: which sample indices each rank trains on, batch by
 * batch, as PyTorch's DistributedSampler feeding a DataLoader (the loader
 * DeepSpeed builds), and the fast-forward the seed quick-start's
 * dataloader_to_step() does after a resume.
 *
 * Per epoch the indices 0..num_samples-1 are shuffled by (seed, epoch) (or
 * kept in order without shuffle); then, without drop_last, the list is padded
 * by repeating its start until it divides by the world size, or with
 * drop_last, its tail is dropped so that it does; rank r takes every
 * world_size-th index starting at r. The rank's indices are cut into
 * micro-batches of batch_size; without drop_last the last one may be short,
 * with drop_last it is dropped. The shuffle is the library's own (a
 * counter-based generator), the same on every machine and world size; it is not
 * torch's random stream.
 *
 * A sampler is a small value object: no communication, no threads; one per rank.
 */
#ifndef ZERO_SAMPLER_H
#define ZERO_SAMPLER_H

#include <stddef.h>
#include <stdint.h>
#include <zero/export.h>
#include <zero/status.h>

ZERO_BEGIN_DECLS

typedef struct zero_sampler *zero_sampler_h;

typedef struct zero_sampler_params {
    uint64_t field_mask;   /**< reserved for growth; set 0 */
    uint64_t num_samples;  /**< samples in the dataset (>= 1) */
    uint64_t batch_size;   /**< micro-batch size per rank (train_micro_batch_size_per_gpu, >= 1) */
    int world_size;        /**< ranks (>= 1) */
    int rank;              /**< this rank, in [0, world_size) */
    uint64_t seed;         /**< shuffle seed */
    int shuffle;           /**< 1: shuffle every epoch by (seed, epoch) */
    int drop_last;         /**< 1: drop the tail that does not fill a rank or a batch */
} zero_sampler_params_t;

/**
 * Creates a sampler positioned at epoch 0, batch 0. Errors: ZERO_ERR_INVALID_ARG
 * (a zero count or size, a rank outside the world, drop_last leaving no batch),
 * ZERO_ERR_NO_MEMORY. *sampler_p is written only on success; release with
 * zero_sampler_destroy().
 */
ZERO_API zero_status_t zero_sampler_create(const zero_sampler_params_t *params, zero_sampler_h *sampler_p);
/** Releases a sampler. NULL is allowed. */
ZERO_API void zero_sampler_destroy(zero_sampler_h sampler);

/** Micro-batches per epoch on each rank (the same on every rank). */
ZERO_API uint64_t zero_sampler_batches_per_epoch(zero_sampler_h sampler);

/**
 * Writes the next micro-batch's sample indices into @p indices (room for
 * batch_size entries) and their number into *count_p, then advances; at the end
 * of an epoch it moves to the next epoch (reshuffled). *epoch_p and *batch_p,
 * if not NULL, receive the position of the batch returned.
 */
ZERO_API zero_status_t zero_sampler_next(zero_sampler_h sampler, uint64_t *indices, size_t *count_p,
                                         uint64_t *epoch_p, uint64_t *batch_p);

/**
 * Positions the sampler so that the next batch is the @p step-th micro-batch of
 * training (0-based, counting across epochs): epoch step / batches_per_epoch,
 * batch step % batches_per_epoch. This is the fast-forward after loading a
 * checkpoint: pass the micro-batch count the trainer saved in its client_sd.
 */
ZERO_API zero_status_t zero_sampler_seek(zero_sampler_h sampler, uint64_t step);

/** The position of the next batch: epoch and batch within it. */
ZERO_API void zero_sampler_position(zero_sampler_h sampler, uint64_t *epoch_p, uint64_t *batch_p);

ZERO_END_DECLS

#endif /* ZERO_SAMPLER_H */
