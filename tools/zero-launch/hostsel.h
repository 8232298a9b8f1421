/*
 * The resource pool (hosts and their slots) and its selection by
 * --include / --exclude / --num_nodes / --num_gpus, with DeepSpeed's rules:
 *
 *   grammar   NODE[:SLOT[,SLOT...]][@NODE[:SLOT[,SLOT...]]...]
 *   include   only the named hosts (all their slots, or the listed ones)
 *   exclude   everything but the named hosts / the listed slots
 *   num_nodes the first N hosts (pool order), num_gpus the first N slots of each
 *
 * --include and --exclude are mutually exclusive and neither combines with
 * --num_nodes / --num_gpus. A host or slot not in the pool is an error that
 * names it ("unknown slot worker-1:7"). Hosts keep pool (hostfile) order and
 * slots are ascending, so ranks are assigned host by host, slot by slot.
 */
#ifndef ZERO_LAUNCH_HOSTSEL_H
#define ZERO_LAUNCH_HOSTSEL_H

#include <stddef.h>
#include <zero/status.h>

#include "hostfile.h"

typedef struct zero_launch_node {
    char *host;       /* owned */
    int *slots;       /* owned, ascending, no duplicates */
    size_t n_slots;   /* >= 1 */
} zero_launch_node_t;

typedef struct zero_launch_pool {
    zero_launch_node_t *nodes;
    size_t count;     /* >= 1 */
} zero_launch_pool_t;

/* Pool of a hostfile: host i gets slots 0..slots-1. */
zero_status_t zero_launch_pool_from_hostfile(const zero_launch_hostfile_t *hostfile,
                                             zero_launch_pool_t **pool_p);

/*
 * Pool of a job without a hostfile: one node named @p host. The visible
 * devices are
 *  - the indices in @p cuda_visible_devices when that is non-NULL (the
 *    variable is set): comma-separated non-negative integers, sorted
 *    ascending; an empty string lists none; a negative entry ends the list
 *    (as in CUDA); anything else (a GPU UUID) or a duplicate is an error;
 *  - else 0..device_count-1.
 * Slots: with num_gpus > 0, the first num_gpus visible devices if there are
 * that many, else 0..num_gpus-1 (a CPU-only host, or more ranks than GPUs)
 * -- except that fewer devices than num_gpus listed in a set
 * CUDA_VISIBLE_DEVICES is an error. Without num_gpus: the visible devices,
 * or the single slot 0 when there are none.
 */
zero_status_t zero_launch_pool_create_local(const char *host, const char *cuda_visible_devices,
                                            int device_count, int num_gpus, zero_launch_pool_t **pool_p);

typedef struct zero_launch_select {
    const char *include;   /* NULL when not given; "" is an error */
    const char *exclude;   /* NULL when not given; "" is an error */
    int num_nodes;         /* 0 when not given, else >= 1 */
    int num_gpus;          /* 0 when not given, else >= 1 */
} zero_launch_select_t;

/*
 * Applies @p sel to @p pool and writes the selected pool (a new object) to
 * *selected_p. Errors (ZERO_ERR_CONFIG, logged once with the option and the
 * host or host:slot at fault): include with exclude; either with num_nodes or
 * num_gpus; an empty or malformed spec; an unknown host or slot; num_nodes above the
 * host count; num_gpus above a host's slot count; nothing left to run.
 */
zero_status_t zero_launch_pool_select(const zero_launch_pool_t *pool, const zero_launch_select_t *sel,
                                      zero_launch_pool_t **selected_p);

/* Total slots over all nodes. */
size_t zero_launch_pool_slots(const zero_launch_pool_t *pool);

/* NULL is allowed. */
void zero_launch_pool_destroy(zero_launch_pool_t *pool);

/* Number of /dev/nvidia<N> device files: the CUDA devices this host has. */
int zero_launch_count_cuda_devices(void);

#endif /* ZERO_LAUNCH_HOSTSEL_H */
