/*
 * The optimizer state store: where a rank's fp32 master weights and optimizer
 * states live, and the one way the engine, the step loop and checkpoints reach
 * them (DESIGN.md section 4a).
 *
 * Nothing outside a store keeps a pointer to its data across calls: a caller
 * acquires a range of one dtype group (some fields of it), uses the pointers
 * the range then holds, and releases it, clean (read only) or dirty (written:
 * the store must keep the new values). A caller that knows what it will need
 * next says so with prefetch, so a store whose data lives elsewhere (NVMe
 * files, a remote optimizer server) can fetch it while the caller works.
 *
 * Implementations: the host store (store_host.c) is an identity mapping, its
 * arrays in this process's memory of the descriptor's kind, acquire returns
 * pointers into them and release does nothing; the NVMe store (store_nvme.h)
 * keeps them in a file and stages ranges through a few buffers; further
 * stores (zero-optd servers) implement the same operations.
 * zero_store_create_for() picks the store a config asks for.
 *
 * Ranges: group g holds length[g] elements per field; a range [begin, begin +
 * count) of it must lie inside. Ranges acquired at the same time must not
 * overlap where one of them is dirty. A store with bounded buffers takes at
 * most zero_store_max_range() elements per range. Thread safety: one caller at a time per
 * store, unless an implementation states more.
 */
#ifndef ZERO_OFFLOAD_STORE_H
#define ZERO_OFFLOAD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <zero/config.h>
#include <zero/memory.h>
#include <zero/status.h>
#include <zero/types.h>

/* The arrays of one group, in the order a checkpoint names them. */
typedef enum zero_store_field {
    ZERO_STORE_MASTER = 0,   /* fp32 master weights */
    ZERO_STORE_STATE1 = 1,   /* first optimizer state (Adam: exp_avg; SGD: momentum; Adagrad: sum of squares) */
    ZERO_STORE_STATE2 = 2,   /* second optimizer state (Adam: exp_avg_sq) */
    ZERO_STORE_NUM_FIELDS
} zero_store_field_t;

#define ZERO_STORE_FIELD_BIT(f) (1u << (unsigned)(f))
#define ZERO_STORE_ALL_FIELDS ((1u << ZERO_STORE_NUM_FIELDS) - 1u)

typedef struct zero_store zero_store_t;

/* What a store holds. */
typedef struct zero_store_desc {
    zero_mem_kind_t kind;                /* where the host store's arrays live (host or device) */
    int num_groups;                      /* 1 .. ZERO_DTYPE_COUNT */
    size_t length[ZERO_DTYPE_COUNT];     /* elements per field of each group */
    int num_states;                      /* optimizer states per element: 0, 1 or 2 */
    /* Optional: a group's master weights are the caller's array (fp32
     * training, where the weights the trainer sees are the master): the store
     * uses it in place and never frees it. NULL: the store owns the array. */
    float *adopt_master[ZERO_DTYPE_COUNT];
} zero_store_desc_t;

/* One acquired range. The caller fills group, begin, count and fields;
 * acquire fills data[] (NULL for fields not asked for). */
typedef struct zero_store_range {
    int group;
    size_t begin, count;
    unsigned fields;                              /* ZERO_STORE_FIELD_BIT()s */
    float *data[ZERO_STORE_NUM_FIELDS];           /* [count] fp32 each, valid until release */
    void *impl;                                   /* the store's own */
} zero_store_range_t;

/* Bytes a store holds, by where they live. */
typedef struct zero_store_bytes {
    uint64_t resident;   /* in this process's memory of the store's kind (adopted arrays not counted) */
    uint64_t elsewhere;  /* in files or other processes */
} zero_store_bytes_t;

typedef struct zero_store_ops {
    const char *name;
    zero_status_t (*acquire)(zero_store_t *store, zero_store_range_t *range);
    zero_status_t (*release)(zero_store_t *store, zero_store_range_t *range, int dirty);
    zero_status_t (*prefetch)(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields);
    zero_status_t (*flush)(zero_store_t *store);   /* NULL: nothing is ever in flight */
    void (*bytes)(const zero_store_t *store, zero_store_bytes_t *bytes_p);
    void (*destroy)(zero_store_t *store);
} zero_store_ops_t;

/* The part every store shares; implementations embed it first. */
struct zero_store {
    const zero_store_ops_t *ops;
    zero_store_desc_t desc;
    size_t max_range;   /* elements per range at most; 0: no bound */
};

/* The host store: arrays of desc->kind, populated (no page faults later) and
 * zeroed. Errors: ZERO_ERR_INVALID_ARG (bad descriptor, logged),
 * ZERO_ERR_NO_MEMORY. */
zero_status_t zero_store_host_create(const zero_store_desc_t *desc, zero_store_t **store_p);

/* Checks @p range against the store (group, bounds, fields it has), then
 * acquires it. Errors: ZERO_ERR_INVALID_ARG (logged), or the store's. */
zero_status_t zero_store_acquire(zero_store_t *store, zero_store_range_t *range);
/* Releases @p range (@p dirty: its data was written); clears data[]. */
zero_status_t zero_store_release(zero_store_t *store, zero_store_range_t *range, int dirty);
/* A hint: [begin, begin + count) of @p group will be acquired soon. */
zero_status_t zero_store_prefetch(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields);
/* Waits until every dirty release so far is where the store keeps its data
 * (the file, the server), and returns an error from that not yet returned by
 * another call (stores with asynchronous writes report their errors at the
 * next call; this is the call that leaves none unreported). */
zero_status_t zero_store_flush(zero_store_t *store);
/* The largest range (elements) one acquire or prefetch may name; 0: no bound. */
size_t zero_store_max_range(const zero_store_t *store);
/* The fields the store has: master, and one per optimizer state. */
unsigned zero_store_fields(const zero_store_t *store);
void zero_store_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p);
/* NULL allowed. */
void zero_store_destroy(zero_store_t *store);

/* The store @p config asks for, for rank @p rank:
 * zero_optimization.offload_optimizer.device "none" or "cpu": the host store
 * (on a host rank the state is in host memory already: "cpu" says so with an
 * info line); "nvme": the NVMe store under nvme_path, with buffer_count
 * buffers of min(sub_group_size, the longest group) elements per field and
 * the "aio" block's block_size, queue_depth, intra_op_parallelism and
 * io_backend. @p desc as for the stores' own create calls.
 * Errors: the chosen store's (logged). */
zero_status_t zero_store_create_for(const zero_config_t *config, int rank, const zero_store_desc_t *desc,
                                    zero_store_t **store_p);

#endif /* ZERO_OFFLOAD_STORE_H */
