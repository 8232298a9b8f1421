/*
 * Communicator: the collectives every ZeRO stage is built from.
 *
 * A communicator joins the processes of one job (its "ranks"). It is created
 * from the environment that zero-launch (or mpirun, or srun) sets, meets the
 * other ranks through a small TCP rendezvous served by rank 0, and then moves
 * data along one of four paths, chosen per call from the world size, the
 * memory kind of the buffers and where they were allocated:
 *
 *   - ucx  (ZERO_MEM_HOST, ZERO_MEM_PINNED, world size > 1): ring
 *          reduce-scatter / allgather over UCP tagged messages, chunked and
 *          pipelined; shared memory on one host, TCP or RDMA across hosts, as
 *          UCX_TLS allows. A progress thread per communicator moves the data,
 *          so non-blocking calls advance while the caller computes.
 *   - nccl (ZERO_MEM_DEVICE; only in builds with the cuda feature): NCCL
 *          collectives on a communication stream owned by the communicator.
 *   - staged (ZERO_MEM_DEVICE; builds with the cuda feature): copies device
 *          data into a ring of pinned host buffers, runs the host collectives
 *          on them and copies the result back, chunk by chunk, pipelined, on
 *          the communicator's own streams. NCCL refuses two ranks on one GPU;
 *          this backend serves that case. With both nccl and staged allowed
 *          (the default), staged is chosen when two ranks share a device
 *          (found at zero_comm_create from each rank's host and PCI bus id;
 *          rank 0 logs it once), else nccl. Allow only one to force it
 *          (zero_comm_params_t::backends; the engine's config key
 *          comm_backend). Details and tuning: docs/comm.md, "Staged".
 *   - self (world size 1): plain copies (on the device, in stream order,
 *          for device memory), except where nccl is allowed and staged is
 *          not: then device collectives run over a one-rank NCCL
 *          communicator, as in a job.
 *   - direct (host memory, every rank on one node, and every rank's buffers
 *          from zero_comm_mem_alloc): each rank reads its peers' buffers in
 *          place through shared memory and reduces or copies straight into its
 *          output, without UCX; otherwise the ucx ring runs (see
 *          zero_comm_mem_alloc).
 *
 * Environment (read by zero_comm_create; full list and defaults in docs/comm.md):
 *   RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE (zero-launch),
 *   or OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} (mpirun),
 *   or SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE /
 *      SLURM_TASKS_PER_NODE, SLURM_NODEID, SLURM_NNODES (srun);
 *   MASTER_ADDR, MASTER_PORT: where rank 0 serves the rendezvous (always needed
 *      when the world has more than one rank, whichever launcher started it);
 *   ZERO_JOB_TOKEN: 32 lowercase hex characters, the same on every rank; every
 *      rendezvous connection must present it. Without it a job of more than one
 *      rank refuses to start unless ZERO_ALLOW_NO_TOKEN=1 is set on every rank;
 *   ZERO_RENDEZVOUS_TIMEOUT, ZERO_COMM_TIMEOUT: seconds (see the params below);
 *   ZERO_COMM_DIRECT: 1 (default) or 0, the intra-node direct path.
 * With none of RANK, OMPI_COMM_WORLD_RANK or SLURM_PROCID set, the process is a
 * world of one.
 *
 * Semantics shared by every collective:
 *   - Collectives are matched by the order in which each rank starts them: every
 *     rank must start the same collectives, with the same count, dtype, op and
 *     root, in the same order. Requests complete in the order they were started.
 *   - Counts are element counts of @p dtype; any count is allowed, including 0.
 *   - Every zero_dtype_t is accepted: the training types and the
 *     collective-only u8, i32, i64 and f64 (flags, byte counts, norms).
 *   - 16-bit data (fp16, bf16) is reduced in fp32: partial sums travel between
 *     ranks as fp32 and each result element is rounded to 16 bits once. Every
 *     other type is reduced in its own type (u8 sums wrap modulo 256).
 *   - ZERO_COMM_AVG divides the sum by the world size before rounding; it is
 *     refused for integer types.
 *   - Failure: when a peer dies, leaves, or sends nothing for timeout_s while a
 *     collective waits on it, the pending collectives and every later call on
 *     this communicator fail with ZERO_ERR_COMM (peer died or misbehaved) or
 *     ZERO_ERR_TIMEOUT (peer silent), and the log names the peer rank. A failed
 *     communicator cannot recover: destroy it.
 *
 * Thread safety: every call may be made from any thread, but the collectives of
 * one communicator must be started in one well-defined order (starting them
 * concurrently from two threads gives an order the other ranks cannot match).
 * Request calls (test/wait/free) on different requests may run concurrently.
 */
#ifndef ZERO_COMM_H
#define ZERO_COMM_H

#include <stddef.h>
#include <stdint.h>
#include <zero/export.h>
#include <zero/memory.h>
#include <zero/status.h>
#include <zero/types.h>

ZERO_BEGIN_DECLS

/** A communicator (opaque). */
typedef struct zero_comm *zero_comm_h;

/** A started non-blocking collective (opaque). */
typedef struct zero_comm_request *zero_comm_request_h;

/** Reduction operators. */
typedef enum zero_comm_op {
    ZERO_COMM_SUM = 0, /**< element-wise sum */
    ZERO_COMM_AVG = 1, /**< element-wise sum divided by the world size */
    ZERO_COMM_MAX = 2, /**< element-wise maximum */
    ZERO_COMM_OP_COUNT
} zero_comm_op_t;

/** Backends, as bits of zero_comm_params_t::backends. */
typedef enum zero_comm_backend {
    ZERO_COMM_BACKEND_SELF = 1u << 0, /**< world of one: copies */
    ZERO_COMM_BACKEND_UCX  = 1u << 1, /**< host and pinned memory */
    ZERO_COMM_BACKEND_NCCL = 1u << 2, /**< device memory (builds with the cuda feature) */
    /** device memory staged through pinned host memory and the host
     *  collectives (builds with the cuda feature): ranks that share a GPU */
    ZERO_COMM_BACKEND_STAGED = 1u << 3
} zero_comm_backend_t;

/** Bits of zero_comm_order_t::field_mask (never renumbered). */
enum zero_comm_order_field {
    ZERO_COMM_ORDER_FIELD_WAIT_EVENT = 1u << 0,
    ZERO_COMM_ORDER_FIELD_DONE_EVENT = 1u << 1
};

/**
 * How a collective on device memory is ordered against the caller's CUDA work,
 * so that neither side needs a host synchronisation (the *_start_ordered
 * calls). The events are cudaEvent_t handles, passed as void * so that this
 * header needs no CUDA headers; the caller creates and destroys them (any
 * flags; cudaEventDisableTiming is cheapest) on the communicator's device.
 *
 * Host memory (ZERO_MEM_HOST, ZERO_MEM_PINNED) is not ordered by CUDA events:
 * its data must be in place when the call is made, and an order that sets an
 * event for it is refused (ZERO_ERR_INVALID_ARG). Pass NULL there.
 */
typedef struct zero_comm_order {
    uint64_t field_mask;  /**< the fields set, zero_comm_order_field bits */
    /** Recorded by the caller on its stream after the kernels that write the
     *  send buffer (or read the receive buffer): the communication stream waits
     *  for it (cudaStreamWaitEvent) before the collective, so the call may be
     *  made before that work has run. NULL: no wait (the data is in place). */
    void *wait_event;
    /** Recorded by the communicator (cudaEventRecord) on its communication
     *  stream after the collective, when the call returns ZERO_OK: the caller's
     *  stream may wait for it (cudaStreamWaitEvent) before kernels that read
     *  the result, without waiting on the host. NULL: not recorded. */
    void *done_event;
} zero_comm_order_t;

/** Defaults for zero_comm_order_t: no field set (no ordering). */
#define ZERO_COMM_ORDER_INIT {0, NULL, NULL}

/** Bits of zero_comm_params_t::field_mask (never renumbered). */
enum zero_comm_params_field {
    ZERO_COMM_PARAM_FIELD_RENDEZVOUS_TIMEOUT = 1u << 0,
    ZERO_COMM_PARAM_FIELD_TIMEOUT            = 1u << 1,
    ZERO_COMM_PARAM_FIELD_BACKENDS           = 1u << 2,
    ZERO_COMM_PARAM_FIELD_CHUNK_BYTES        = 1u << 3,
    ZERO_COMM_PARAM_FIELD_CHUNKS_IN_FLIGHT   = 1u << 4,
    ZERO_COMM_PARAM_FIELD_CUDA_DEVICE        = 1u << 5
};

/**
 * Options of zero_comm_create. Set field_mask to the fields you set; a field
 * left out of the mask takes its environment variable, else its default.
 * A field in the mask wins over the environment.
 */
typedef struct zero_comm_params {
    uint64_t field_mask;
    /** Seconds that rank 0 waits for every rank to join, and that other ranks
     *  keep retrying to reach rank 0. Env ZERO_RENDEZVOUS_TIMEOUT; default 300. */
    double rendezvous_timeout_s;
    /** Seconds a collective may wait without any data arriving from the peer it
     *  waits on before it fails with ZERO_ERR_TIMEOUT naming that peer; also
     *  bounds the shutdown handshake of zero_comm_destroy. A dead peer is
     *  detected within about a second regardless of this bound (its connection
     *  to rank 0 closes). Env ZERO_COMM_TIMEOUT; default 300. */
    double timeout_s;
    /** Bit set of zero_comm_backend_t that may be used; a call that needs a
     *  backend left out fails with ZERO_ERR_UNSUPPORTED. Default: all built.
     *  Device memory goes through nccl or staged, one for the whole job,
     *  chosen at creation (see staged at the top); at world size 1 through
     *  self, or nccl when nccl is allowed and staged is not. */
    uint32_t backends;
    /** Pipeline chunk of the ucx ring, in bytes (4 KiB .. 64 MiB).
     *  Env ZERO_COMM_CHUNK_BYTES; default 1 MiB. */
    size_t chunk_bytes;
    /** Chunks each rank keeps in flight per direction (1 .. 16).
     *  Env ZERO_COMM_CHUNKS_IN_FLIGHT; default 4. */
    int chunks_in_flight;
    /** CUDA device for the nccl backend; default -1: LOCAL_RANK modulo the
     *  number of visible devices. Ignored without the cuda feature. */
    int cuda_device;
} zero_comm_params_t;

/** Defaults for zero_comm_params_t: field_mask 0, every field at its default. */
#define ZERO_COMM_PARAMS_INIT {0, 300.0, 300.0, 0u, (size_t)1 << 20, 4, -1}

/**
 * Creates a communicator from the environment: parses the rank variables,
 * joins the rendezvous (rank 0 serves it on port MASTER_PORT of all its
 * interfaces and drops any connection that does not finish its hello, or its
 * address record, within ZERO_RENDEZVOUS_CONN_TIMEOUT seconds (default 5);
 * the others connect to MASTER_ADDR:MASTER_PORT, retrying a refused, closed,
 * reset or timed-out attempt with exponential back-off and jitter until
 * rendezvous_timeout_s; see docs/comm.md, "Rendezvous"),
 * exchanges UCX worker addresses (and the NCCL unique id where every rank has a
 * GPU), connects to the ring neighbours and starts the progress thread.
 * Collective: every rank of the job must call it. One communicator per job at
 * a time: its rendezvous owns MASTER_PORT until zero_comm_destroy returns.
 *
 * @param params     options, or NULL for all defaults (the caller keeps it).
 * @param comm_p     receives the communicator on success; untouched on failure.
 * @return ZERO_OK; ZERO_ERR_INVALID_ARG (bad environment or params: the log
 *         names the variable), ZERO_ERR_TIMEOUT (the job did not form in time),
 *         ZERO_ERR_PROTOCOL (rank 0 refused this rank, e.g. "token mismatch",
 *         or answered with a malformed or foreign reply),
 *         ZERO_ERR_IO (socket errors), ZERO_ERR_COMM (UCX could not connect),
 *         ZERO_ERR_NO_MEMORY. On failure nothing is left allocated.
 * Thread safety: may run concurrently with other libzero calls; the returned
 * handle follows the rules at the top of this header.
 */
ZERO_API zero_status_t zero_comm_create(const zero_comm_params_t *params, zero_comm_h *comm_p);

/**
 * Destroys a communicator. Collective when the communicator is healthy: every
 * rank shuts down together (so no rank leaves while its data is still in
 * flight), bounded by timeout_s. After a failure it returns at once.
 * Pending requests are waited for first (they end in success or failure);
 * requests not yet freed stay valid for test/wait/free. Memory from
 * zero_comm_mem_alloc still allocated is released (a warning is logged), and
 * every mapping of the peers' memory is unmapped. NULL is allowed.
 * Thread safety: no other call on @p comm may run concurrently or follow.
 */
ZERO_API void zero_comm_destroy(zero_comm_h comm);

/** zero_comm_split's colour for a rank that joins no new communicator. */
#define ZERO_COMM_SPLIT_NONE (-1)

/**
 * Splits a communicator by colour, as MPI_Comm_split and ncclCommSplit do:
 * the ranks that pass the same @p color form a new communicator, ranked by
 * @p key (ties by their rank in @p comm). Collective over @p comm: every rank
 * must call it, in the same order relative to the other collectives of
 * @p comm.
 *
 * The new communicator has every collective, the same semantics and the same
 * failure rules as one made by zero_comm_create (timeouts and chunking as
 * @p comm's). It has its own progress thread and UCX worker, so its
 * collectives run beside @p comm's, and is not ordered with them. Its
 * zero_comm_local_* and zero_comm_cross_* give its members' node structure
 * (nodes as in @p comm: CROSS_RANK). When all its members are on one node
 * and ZERO_COMM_DIRECT allows, it takes the direct path for buffers from its
 * own zero_comm_mem_alloc. It needs no rendezvous: the addresses travel over
 * @p comm, and a dead rank fails @p comm first and then every communicator
 * split from it. Env ZERO_COMM_NODE_UCX_TLS (on every rank) sets the UCX
 * transports of split communicators whose members are all on one node (as
 * UCX_TLS does for the others; e.g. shared memory inside a node while @p comm
 * and the children spanning nodes use TCP). Device memory goes through the
 * new communicator as through @p comm (NCCL or staged, by @p comm's rule over
 * its members' devices; docs/comm.md).
 *
 * A rank's own failure during the split reaches every rank at once: a rank
 * that could not make its part (shared memory, eventfd, UCX worker) or
 * connect it fails every rank's split, @p comm staying usable; a rank
 * without the memory to take part in an exchange over @p comm fails @p comm
 * (every rank's split then returns @p comm's failure, naming that rank).
 *
 * @param comm    the communicator to split (stays usable unless a rank
 *                lacked memory for the split's exchanges, above).
 * @param color   >= 0, or ZERO_COMM_SPLIT_NONE: this rank joins none.
 * @param key     orders the ranks of one colour.
 * @param comm_p  receives the new communicator (NULL for
 *                ZERO_COMM_SPLIT_NONE); untouched on failure.
 * @return ZERO_OK; ZERO_ERR_INVALID_ARG (NULL argument, a colour below
 *         ZERO_COMM_SPLIT_NONE), @p comm's failure status, ZERO_ERR_COMM (a
 *         rank could not make its part or connect its UCX worker),
 *         ZERO_ERR_TIMEOUT, ZERO_ERR_NO_MEMORY, ZERO_ERR_IO (this rank's
 *         eventfd).
 * Ownership: destroy the new communicator with zero_comm_destroy (collective
 * over its members) before @p comm.
 * Thread safety: as a collective of @p comm.
 */
ZERO_API zero_status_t zero_comm_split(zero_comm_h comm, int color, int key, zero_comm_h *comm_p);

/** This process's rank in [0, size). */
ZERO_API int zero_comm_rank(zero_comm_h comm);
/** The number of ranks in the job. */
ZERO_API int zero_comm_size(zero_comm_h comm);
/** The rank among the ranks on this node, in [0, local size). */
ZERO_API int zero_comm_local_rank(zero_comm_h comm);
/** The number of ranks on this node. */
ZERO_API int zero_comm_local_size(zero_comm_h comm);
/** The index of this node among the job's nodes (CROSS_RANK). */
ZERO_API int zero_comm_cross_rank(zero_comm_h comm);
/** The number of nodes (CROSS_SIZE). */
ZERO_API int zero_comm_cross_size(zero_comm_h comm);

/**
 * Starts an allreduce: @p recvbuf[i] = op over ranks of @p sendbuf[i], for
 * i < @p count. In place when @p sendbuf == @p recvbuf; any other overlap is
 * ZERO_ERR_INVALID_ARG. Both buffers are of @p mem_kind.
 *
 * The buffers must stay valid, and @p sendbuf unchanged, until the request
 * completes. Device buffers must hold their data when the call is made: the
 * communicator's CUDA stream does not wait on the caller's streams (synchronise
 * the kernels that write them first, or use zero_comm_allreduce_start_ordered).
 * On success *@p request_p receives a request the caller must
 * release with zero_comm_request_free. On failure nothing was started and
 * *@p request_p is untouched.
 * @return ZERO_OK; ZERO_ERR_INVALID_ARG (NULL buffer with count > 0, bad dtype,
 *         op or kind, overlap), ZERO_ERR_UNSUPPORTED (the backend for @p mem_kind
 *         is not built or not allowed), ZERO_ERR_OVERFLOW (count too large),
 *         the communicator's failure status (ZERO_ERR_COMM, ZERO_ERR_TIMEOUT),
 *         ZERO_ERR_NO_MEMORY.
 */
ZERO_API zero_status_t zero_comm_allreduce_start(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                 size_t count, zero_dtype_t dtype, zero_comm_op_t op,
                                                 zero_mem_kind_t mem_kind, zero_comm_request_h *request_p);

/**
 * Starts a reduce-scatter (NCCL's semantics): @p sendbuf holds size * @p recvcount
 * elements; rank r receives in @p recvbuf the reduction over ranks of elements
 * [r * recvcount, (r + 1) * recvcount). A caller whose length does not divide
 * by the world size pads it. In place when @p recvbuf == @p sendbuf + rank *
 * recvcount elements; other overlaps are ZERO_ERR_INVALID_ARG. Ownership,
 * lifetime and errors as zero_comm_allreduce_start.
 */
ZERO_API zero_status_t zero_comm_reduce_scatter_start(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                      size_t recvcount, zero_dtype_t dtype, zero_comm_op_t op,
                                                      zero_mem_kind_t mem_kind, zero_comm_request_h *request_p);

/**
 * Starts an allgather (NCCL's semantics): every rank contributes @p sendcount
 * elements and receives size * sendcount elements in @p recvbuf, rank r's at
 * [r * sendcount, (r + 1) * sendcount). In place when @p sendbuf == @p recvbuf +
 * rank * sendcount elements; other overlaps are ZERO_ERR_INVALID_ARG. Out of
 * place on host memory, the calling thread copies its own block into
 * @p recvbuf before this returns (the transfers run meanwhile); in place saves
 * that copy. Ownership, lifetime and errors as zero_comm_allreduce_start.
 */
ZERO_API zero_status_t zero_comm_allgather_start(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                 size_t sendcount, zero_dtype_t dtype,
                                                 zero_mem_kind_t mem_kind, zero_comm_request_h *request_p);

/**
 * Starts a broadcast: @p count elements of @p sendbuf on rank @p root are copied
 * into @p recvbuf on every rank (root included). @p sendbuf is read on the root
 * only (may be NULL elsewhere); in place when sendbuf == recvbuf on the root.
 * @return as zero_comm_allreduce_start, and ZERO_ERR_INVALID_ARG for a root
 *         outside [0, size).
 */
ZERO_API zero_status_t zero_comm_broadcast_start(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                 size_t count, zero_dtype_t dtype, int root,
                                                 zero_mem_kind_t mem_kind, zero_comm_request_h *request_p);

/**
 * The collectives above, ordered against the caller's CUDA work by @p order
 * (see zero_comm_order_t): on device memory the communication stream waits
 * for order->wait_event before the collective and records order->done_event
 * after it, so a trainer can start a gradient reduction right after the
 * backward kernels that write it, and make its next kernels wait for the
 * result, without blocking the host. The request still completes (test/wait)
 * when the collective has finished on the device.
 *
 * @p order NULL, or with no field set, is the plain *_start call. Every other
 * argument, the ownership and the errors are those of the plain call, and:
 * @return ZERO_ERR_INVALID_ARG when @p order sets a field this version does
 *         not know, or sets an event for host or pinned memory (host
 *         collectives cannot wait on CUDA work: make the data ready first and
 *         pass NULL); ZERO_ERR_CUDA (the log names the call) when the stream
 *         cannot wait on or record an event (e.g. an event of another device).
 * Thread safety: as the plain calls. wait_event may be recorded again once
 * this call returns (the wait takes the event as it stands at the call);
 * done_event marks this collective until the caller records it again.
 */
ZERO_API zero_status_t zero_comm_allreduce_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                         size_t count, zero_dtype_t dtype, zero_comm_op_t op,
                                                         zero_mem_kind_t mem_kind, const zero_comm_order_t *order,
                                                         zero_comm_request_h *request_p);
/** zero_comm_reduce_scatter_start ordered by @p order (see zero_comm_allreduce_start_ordered). */
ZERO_API zero_status_t zero_comm_reduce_scatter_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                              size_t recvcount, zero_dtype_t dtype,
                                                              zero_comm_op_t op, zero_mem_kind_t mem_kind,
                                                              const zero_comm_order_t *order,
                                                              zero_comm_request_h *request_p);
/** zero_comm_allgather_start ordered by @p order (see zero_comm_allreduce_start_ordered). */
ZERO_API zero_status_t zero_comm_allgather_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                         size_t sendcount, zero_dtype_t dtype,
                                                         zero_mem_kind_t mem_kind, const zero_comm_order_t *order,
                                                         zero_comm_request_h *request_p);
/** zero_comm_broadcast_start ordered by @p order (see zero_comm_allreduce_start_ordered). */
ZERO_API zero_status_t zero_comm_broadcast_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                         size_t count, zero_dtype_t dtype, int root,
                                                         zero_mem_kind_t mem_kind, const zero_comm_order_t *order,
                                                         zero_comm_request_h *request_p);

/**
 * Starts a barrier: the request completes once every rank has started this
 * barrier. Errors as zero_comm_allreduce_start.
 */
ZERO_API zero_status_t zero_comm_barrier_start(zero_comm_h comm, zero_comm_request_h *request_p);

/**
 * Checks a request without blocking.
 * @return ZERO_INPROGRESS while it runs; ZERO_OK once it completed; otherwise
 *         the error that ended it (ZERO_ERR_COMM, ZERO_ERR_TIMEOUT, ...), logged
 *         once by the progress thread. ZERO_ERR_INVALID_ARG for NULL.
 * Thread safety: any thread; it never touches the communicator once the
 * request has completed.
 */
ZERO_API zero_status_t zero_comm_request_test(zero_comm_request_h request);

/**
 * Blocks until a request completes (successfully or not) and returns its
 * status as zero_comm_request_test would. Bounded: a request always ends,
 * at the latest timeout_s after its peer stops answering.
 */
ZERO_API zero_status_t zero_comm_request_wait(zero_comm_request_h request);

/**
 * Releases a request; waits for it first if it is still running (its buffers
 * are in use until then). NULL is allowed.
 */
ZERO_API void zero_comm_request_free(zero_comm_request_h request);

/** Blocking allreduce: start, wait, free. Arguments as zero_comm_allreduce_start. */
ZERO_API zero_status_t zero_comm_allreduce(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                           zero_dtype_t dtype, zero_comm_op_t op, zero_mem_kind_t mem_kind);

/** Blocking reduce-scatter. Arguments as zero_comm_reduce_scatter_start. */
ZERO_API zero_status_t zero_comm_reduce_scatter(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                size_t recvcount, zero_dtype_t dtype, zero_comm_op_t op,
                                                zero_mem_kind_t mem_kind);

/** Blocking allgather. Arguments as zero_comm_allgather_start. */
ZERO_API zero_status_t zero_comm_allgather(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                           size_t sendcount, zero_dtype_t dtype, zero_mem_kind_t mem_kind);

/** Blocking broadcast. Arguments as zero_comm_broadcast_start. */
ZERO_API zero_status_t zero_comm_broadcast(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                           zero_dtype_t dtype, int root, zero_mem_kind_t mem_kind);

/** Blocking barrier. */
ZERO_API zero_status_t zero_comm_barrier(zero_comm_h comm);

/**
 * Allocates @p bytes of host memory that the other ranks on this node can map
 * (a memfd segment, page-aligned, zero-filled), for use as collective buffers.
 *
 * When every rank of the job runs on one node and every rank's send and
 * receive buffers of an allreduce, reduce-scatter or allgather lie inside
 * memory from this call (any offset, the whole buffer inside one allocation),
 * the collective takes the intra-node direct path: each rank reads its peers'
 * buffers in place and reduces (or copies) straight into its output, with no
 * UCX transfer. Otherwise the ucx ring runs; the ranks agree on the path for
 * every collective (one rank's ordinary buffer sends every rank to the ring),
 * and both give the same results (fp32 accumulation, one rounding for 16-bit
 * types). Use the memory as ZERO_MEM_HOST. Env ZERO_COMM_DIRECT=0 (on every
 * rank) turns the direct path off. In a world of one, or across nodes, this is
 * ordinary host memory.
 *
 * @param comm   the communicator; the memory belongs to it.
 * @param bytes  > 0.
 * @param ptr_p  receives the address on success; untouched on failure.
 * @return ZERO_OK; ZERO_ERR_INVALID_ARG (NULL comm or ptr_p, 0 bytes),
 *         ZERO_ERR_OVERFLOW (size), ZERO_ERR_NO_MEMORY, ZERO_ERR_IO (out of
 *         file descriptors: each allocation holds one).
 * Ownership: release with zero_comm_mem_free on the same communicator;
 * zero_comm_destroy releases whatever is left (and warns). Peers keep a
 * mapping of a freed buffer's pages (at most 32 per peer, least recently used
 * first out) until they map others or destroy their communicator, so prefer
 * few, long-lived allocations. Thread safety: any thread, concurrently with
 * other calls; a buffer must not be freed while a collective uses it.
 */
ZERO_API zero_status_t zero_comm_mem_alloc(zero_comm_h comm, size_t bytes, void **ptr_p);

/**
 * Releases memory from zero_comm_mem_alloc. NULL is allowed (ZERO_OK).
 * @return ZERO_OK; ZERO_ERR_INVALID_ARG (NULL comm, or @p ptr is not the start
 *         of a live allocation of this communicator, e.g. freed twice).
 * Thread safety: as zero_comm_mem_alloc.
 */
ZERO_API zero_status_t zero_comm_mem_free(zero_comm_h comm, void *ptr);

/** A static name of an operator: "sum", "avg", "max" ("unknown" otherwise). */
ZERO_API const char *zero_comm_op_string(zero_comm_op_t op);

ZERO_END_DECLS

#endif /* ZERO_COMM_H */
