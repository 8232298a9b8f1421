/* The communicator's internal objects, shared by the front (comm.c) and the backends. */
#ifndef ZERO_COMM_INTERNAL_H
#define ZERO_COMM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <zero/comm.h>
#include "comm/bootstrap.h"
#include "comm/rendezvous.h"

typedef enum zero_coll_kind {
    ZERO_COLL_ALLREDUCE,
    ZERO_COLL_REDUCE_SCATTER,
    ZERO_COLL_ALLGATHER,
    ZERO_COLL_BROADCAST,
    ZERO_COLL_BARRIER,
    /* Internal (quant_coll.c): rank r's block k of sendbuf lands as block r
     * of rank k's recvbuf; count is elements per block. Host backends only. */
    ZERO_COLL_ALLTOALL,
    /* Internal (reduce_range.h): the reduce-scatter of a window of
     * range_block x size elements. sendbuf holds the count elements
     * [range_first, range_first + count); rank r receives the reduction of the
     * window's part in its block [r x range_block, (r + 1) x range_block), and
     * nothing when the window misses it. Host backends only. */
    ZERO_COLL_REDUCE_SCATTER_RANGE,
    /* Internal (reduce_split.h): a sum reduce-scatter whose last addition is
     * left to the caller; recvbuf is a zero_comm_split_t. Host backends only. */
    ZERO_COLL_REDUCE_SCATTER_SPLIT
} zero_coll_kind_t;

typedef struct zero_coll_desc {
    zero_coll_kind_t kind;
    const void *sendbuf;
    void *recvbuf;
    size_t count;             /* allreduce/broadcast: total; reduce-scatter: per rank out; allgather: per rank in */
    zero_dtype_t dtype;
    zero_comm_op_t op;
    int root;
    zero_mem_kind_t mem_kind;
    int local_copy_by_caller;  /* the caller copies its own block into recvbuf (see start()) */
    /* Device memory only (zero_comm_order_t; NULL: none): cudaEvent_t the
     * collective's stream waits on first, and records once it is enqueued. */
    void *wait_event;
    void *done_event;
    size_t range_first;        /* ZERO_COLL_REDUCE_SCATTER_RANGE: the window's start, and each rank's block */
    size_t range_block;
} zero_coll_desc_t;

/* The part of a ZERO_COLL_REDUCE_SCATTER_RANGE window (@p d) that rank @p r
 * receives: elements [*lo_p, *hi_p) of the window (relative to its start;
 * lo == hi when it receives nothing). */
void zero_coll_range_part(const zero_coll_desc_t *d, int r, size_t *lo_p, size_t *hi_p);

const char *zero_coll_name(zero_coll_kind_t kind);

typedef struct zero_comm zero_comm_t;
typedef struct zero_ucx zero_ucx_t;
typedef struct zero_nccl zero_nccl_t;
typedef struct zero_shm zero_shm_t;
typedef struct zero_staged zero_staged_t;
typedef struct zero_comm_backend_ops zero_comm_backend_ops_t;   /* comm/backend.h */

/* What the front does with a collective's result after the backend moved it
 * and before the request completes, on the thread that completes it (the
 * progress thread, or the caller's for a backend whose submit finished it).
 * The quantized collectives (quant_coll.c) decode their wire bytes here, so
 * every backend carries them as plain bytes and none knows the codec. */
typedef struct zero_comm_finish {
    /* NULL: nothing to do. Returns the request's final status. */
    zero_status_t (*run)(const struct zero_comm_finish *f);
    int bits;                  /* the codec's width (zero_quant_bits_t) */
    zero_dtype_t dtype;        /* the decoded values' type */
    size_t count;              /* elements per rank */
    int size;                  /* ranks (blocks in the wire buffer) */
    int blocks;                /* hierarchical qgZ's first level: blocks per rank (else 1) */
    void *encoded;             /* hierarchical qgZ's first level: where the partial sums go, encoded */
    size_t stride;             /* bytes between ranks' encoded blocks */
    const void *wire;          /* the gathered encoded blocks */
    void *out;                 /* where the decoded values go */
    float *acc;                /* a reduction's fp32 sum of count elements (NULL: a gather) */
    float divisor;             /* the sum is divided by it (ZERO_COMM_AVG: the world size) */
} zero_comm_finish_t;

struct zero_comm_request {
    zero_coll_desc_t desc;
    struct zero_comm *comm;          /* used only until completion */
    atomic_int status;               /* ZERO_INPROGRESS until the progress thread finishes it */
    uint32_t seq;                    /* the collective's sequence number on this communicator */
    const zero_comm_backend_ops_t *backend;   /* the backend carrying it (comm/backend.h) */
    int backend_started;             /* the backend's start ran and took it */
    double started_at;               /* when the progress thread started it (zero_clock_now) */
    void *backend_data;              /* the backend's own (NCCL: the completion event) */
    zero_comm_finish_t finish;       /* run once the backend completed it (see above) */
    struct zero_comm_request *next;  /* the progress queue */
    /* Two-level collectives (hierarchical qgZ, quant_coll.c): a gated request
     * waits in its queue until gate_state is set (1: go; negative: fail with
     * that status), by the completion of the request whose signal it is, on
     * another communicator; it owns that request (chained) and frees it. */
    int gated;
    atomic_int gate_state;
    double gate_since;
    struct zero_comm_request *signal;
    struct zero_comm_request *chained;
    pthread_mutex_t *lock;           /* the communicator's lock, for wait */
    pthread_cond_t *cond;
};

typedef struct zero_comm_config {
    double rendezvous_timeout_s;
    double rendezvous_conn_timeout_s;  /* ZERO_RENDEZVOUS_CONN_TIMEOUT: each phase of one rendezvous connection */
    double timeout_s;
    uint32_t backends;
    size_t chunk_bytes;
    int chunks_in_flight;
    int cuda_device;
    int ucx_peer_err_mode;     /* ZERO_COMM_UCX_ERR_MODE=peer */
    int direct;                /* ZERO_COMM_DIRECT (default 1): the intra-node direct path */
    size_t staged_slot_bytes;  /* ZERO_COMM_STAGED_SLOT_BYTES: one pinned slot of the staged backend */
    int staged_slots;          /* ZERO_COMM_STAGED_SLOTS: the ring's size */
    int staged_pin;            /* ZERO_COMM_STAGED_PIN (default 1); 0: pageable slots (the fallback, on purpose) */
    const char *node_tls;      /* ZERO_COMM_NODE_UCX_TLS: UCX transports of split communicators on one node (NULL: UCX_TLS) */
} zero_comm_config_t;

struct zero_comm {
    zero_comm_env_t env;
    /* A communicator made by zero_comm_split: the one it was split from. It has
     * no rendezvous of its own; it learns of a dead rank through the parent's
     * failure flag (the parent's progress thread watches the rendezvous). */
    struct zero_comm *parent;
    /* A split communicator: each of its ranks as a rank of the job (the
     * numbering of the communicator at the top, whose rendezvous reaches every
     * rank), in its rank order (env.size entries), so that a failure and the
     * backends' errors name the job's ranks (job_rank). NULL: the job's own. */
    int *job_ranks;
    atomic_int children;               /* live communicators split from this one */
    zero_comm_config_t cfg;
    zero_rdv_t *rdv;
    zero_ucx_t *ucx;
    zero_shm_t *shm;                   /* the allocator and the intra-node direct path */
    int shm_attached;                  /* this rank mapped every peer's control page */
    _Atomic(zero_nccl_t *) nccl;       /* created on the first device call (API thread), read by the
                                          progress thread to abort it */
    unsigned char nccl_id[128];
    int have_nccl_id;
    /* Why the NCCL communicator could not be created (ZERO_OK: not tried, or
     * created). Sticky: the unique id is spent once ncclCommInitRank has run,
     * and a second init with it would wait forever for peers that gave up. */
    zero_status_t nccl_create_status;
    /* Which backend carries device memory (zero_device_path_t, staged_plan.h),
     * decided at creation from every rank's device; device_note says why
     * when it is none (logged with the first refused device collective). */
    int device_path;
    char device_note[320];
    _Atomic(zero_staged_t *) staged;   /* created on the first staged collective (API thread) */
    zero_status_t staged_create_status; /* sticky, as nccl_create_status */

    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    pthread_cond_t cond;               /* broadcast on every completion */
    struct zero_comm_request *queue_head, *queue_tail;
    int pending;                       /* requests started and not completed */
    int stop;
    int wake_fd;                       /* eventfd: the API side wakes the progress thread */

    atomic_int failed;                 /* 0, or the status every call now returns */
    atomic_int failed_rank;            /* set before failed (set_failed): read after it, from any thread */
    atomic_int caller_failure;         /* 0, or a backend's submit failed on the API thread (this rank's
                                        * device error, zero_comm_fail_local): the progress thread
                                        * fails the job with it */
    char caller_cause[200];            /* what caller_failure logs (under lock) */
    int caller_culprit;                /* the rank it names (under lock; -1: this one) */
    uint32_t next_seq;
};

/* zero_comm_allgather_start for the codecs (quant_coll.c): @p finish (NULL:
 * none) runs on the result before the request completes. Host memory only. */
zero_status_t zero_comm_allgather_start_finish(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t sendcount,
                                               zero_dtype_t dtype, zero_mem_kind_t mem_kind,
                                               const zero_comm_finish_t *finish, zero_comm_request_h *request_p);

/* The all-to-all (ZERO_COLL_ALLTOALL) of @p count elements per block, W
 * blocks each way, for the codecs: @p finish as above. Host memory only;
 * sendbuf and recvbuf must not overlap. */
zero_status_t zero_comm_alltoall_start_finish(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                              zero_dtype_t dtype, const zero_comm_finish_t *finish,
                                              zero_comm_request_h *request_p);

/* A two-level collective (hierarchical qgZ): the all-to-all above, queued
 * gated: it waits (bounded by timeout_s) until @p first, started on another
 * communicator with zero_comm_alltoall_start_signal, completes, then runs;
 * it fails with @p first's status if that fails, and then (unless that is a
 * timeout) fails the job as zero_comm_fail_local does, since this rank's share
 * of it will not be sent and the peers would wait for it. The request returned owns
 * @p first (zero_comm_request_free frees both). */
zero_status_t zero_comm_alltoall_start_gated(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                             zero_dtype_t dtype, const zero_comm_finish_t *finish,
                                             zero_comm_request_h *request_p);
/* The first level: the all-to-all above whose completion opens @p gated's gate. */
zero_status_t zero_comm_alltoall_start_signal(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                              zero_dtype_t dtype, const zero_comm_finish_t *finish,
                                              zero_comm_request_h gated, zero_comm_request_h *request_p);
/* Opens @p gated's gate (ZERO_OK: it runs; an error: it fails with that
 * status) and wakes its communicator's progress thread. The first level's
 * completion calls it; so does a caller whose first level failed to start. */
void zero_comm_open_gate(zero_comm_request_h gated, zero_status_t status);

#endif /* ZERO_COMM_INTERNAL_H */
