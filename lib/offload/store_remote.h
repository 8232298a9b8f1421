/*
 * The remote store (store_remote.c): the optimizer state store of
 * offload/store.h on zero-optd servers (docs/optd.md). Each group's elements
 * are spread over the servers in contiguous pieces; the store implements the
 * optional step op (the servers run the update and send the weights back;
 * Lamb too, its two phases as LAMB1 and LAMB2 messages),
 * and acquire / release stream ranges from / to the servers (checkpoints).
 * Host memory only (desc->kind ZERO_MEM_HOST); adopt_master is refused (the
 * master lives on the servers). One caller at a time, from any thread (the
 * UCX workers are serialized: CPU offload steps from its offload thread and
 * acquires from the trainer's, cpu_inner.h).
 */
#ifndef ZERO_OFFLOAD_STORE_REMOTE_H
#define ZERO_OFFLOAD_STORE_REMOTE_H

#include "offload/store.h"

typedef struct zero_store_remote_opts {
    const char *const *servers;   /* "host:port" of each zero-optd; borrowed for the call */
    int num_servers;
    unsigned char token[16];      /* the job token (ZERO_JOB_TOKEN); zeros when the job has none */
    int rank;                     /* this rank, told to the servers for their messages */
    double timeout_s;             /* a server silent this long on one request is an error naming it */
    int window;                   /* messages in flight (1..32; 0: 4) */
    /* Optional (Lamb): where the caller's step ranges start and its kernel
     * chunk; each group is then split over the servers only at chunk
     * multiples from a range start, so that no chunk of Lamb's sums straddles
     * two servers (docs/optd.md). Without it (chunk 0) a Lamb range that a
     * split cuts elsewhere is refused at its step. */
    zero_store_split_hint_t split;
} zero_store_remote_opts_t;

/* What the store moved since it was created (and, region_bytes, what it maps now). */
typedef struct zero_store_remote_stats {
    uint64_t bytes_sent, bytes_received;   /* message bytes, headers included, and arrays through a region */
    uint64_t messages, steps;
    uint64_t sleeps;                       /* waits that slept on the worker's event descriptor */
    uint64_t sleep_timeouts;               /* ... and woke with no event (at the 10 ms slice or the deadline) */
    uint64_t same_host_links;              /* servers reached over a same-host data connection (docs/optd.md) */
    /* ... of them, those whose region this process mapped: STEP's arrays go
     * through the server's shared memory, only headers as messages
     * (docs/optd.md, "One-sided on one host"; not with ZERO_OPTD_ONESIDED=0) */
    uint64_t regions_mapped;
    /* Bytes of those regions mapped in this process now (its window's slots
     * of each, every page backed: 8 MiB per server for the default window
     * of 4; 0 once unmapped). zero_store_bytes counts them in staging, with
     * the request slots: working buffers, not state. */
    uint64_t region_bytes;
} zero_store_remote_stats_t;

/*
 * Connects to every server (one after another, each within timeout_s), shows
 * the token and declares the slices it will hold there (zeroed).
 * Errors: ZERO_ERR_INVALID_ARG (bad descriptor, options or address, logged),
 * ZERO_ERR_UNSUPPORTED (adopt_master), ZERO_ERR_COMM / ZERO_ERR_TIMEOUT (a
 * server unreachable or silent, logged naming it), ZERO_ERR_PROTOCOL (a
 * server refused the token), ZERO_ERR_NO_MEMORY (a server's memory limit, its
 * message logged).
 */
zero_status_t zero_store_remote_create(const zero_store_desc_t *desc, const zero_store_remote_opts_t *opts,
                                       zero_store_t **store_p);
/* @p store must be a remote store. */
void zero_store_remote_stats(const zero_store_t *store, zero_store_remote_stats_t *stats_p);

#endif /* ZERO_OFFLOAD_STORE_REMOTE_H */
