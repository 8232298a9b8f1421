/*
 * The launch plan: which rank runs on which host and slot, and the
 * environment each rank gets.
 *
 * Ranks are numbered host by host in pool (hostfile) order and, within a host,
 * slot by slot ascending. Per rank the launcher sets
 *   RANK LOCAL_RANK WORLD_SIZE LOCAL_SIZE CROSS_RANK CROSS_SIZE
 *   MASTER_ADDR MASTER_PORT CUDA_VISIBLE_DEVICES ZERO_JOB_TOKEN
 * where CROSS_RANK is the index of the rank's host among the selected hosts,
 * CROSS_SIZE their number, and CUDA_VISIBLE_DEVICES the host's selected slots
 * ("0,1,3"), so LOCAL_RANK indexes the devices a rank sees.
 */
#ifndef ZERO_LAUNCH_PLAN_H
#define ZERO_LAUNCH_PLAN_H

#include <stddef.h>
#include <zero/status.h>

#include "envfile.h"
#include "hostsel.h"

#define ZERO_LAUNCH_DEFAULT_PORT 29500
#define ZERO_LAUNCH_TOKEN_CHARS 32

typedef struct zero_launch_rank {
    int rank;
    int local_rank;
    int node;         /* index into plan->pool->nodes, = CROSS_RANK */
    int slot;
} zero_launch_rank_t;

typedef struct zero_launch_plan {
    zero_launch_pool_t *pool;    /* owned: the selected hosts and slots */
    zero_launch_rank_t *ranks;   /* owned, world_size entries, in rank order */
    size_t world_size;
    char **node_devices;         /* owned, per node: its slots as "0,1,3" */
    char *master_addr;           /* owned */
    int master_port;             /* 0..65535 (0: still to be chosen) */
} zero_launch_plan_t;

/*
 * Builds the plan over @p pool, which it takes over (also on failure).
 * @p master_addr NULL or "" picks the default: "127.0.0.1" when
 * @p local_only (no hostfile), else the first host of the pool.
 */
zero_status_t zero_launch_plan_create(zero_launch_pool_t *pool, int local_only, const char *master_addr,
                                      int master_port, zero_launch_plan_t **plan_p);

/* NULL is allowed. */
void zero_launch_plan_destroy(zero_launch_plan_t *plan);

/* Sets the per-rank variables of rank @p rank (listed above) in @p env. */
zero_status_t zero_launch_plan_rank_env(const zero_launch_plan_t *plan, size_t rank, const char *token,
                                        zero_launch_env_t *env);

/*
 * The --dry-run line of rank @p rank (counted string, zero_free):
 * "rank=R local_rank=L host=H slot=S local_size=.. world_size=.. cross_rank=..
 *  cross_size=.. master_addr=.. master_port=.. cuda_visible_devices=.. via=V"
 * where V is @p via (local, ssh, pdsh). NULL when out of memory.
 */
char *zero_launch_plan_format_rank(const zero_launch_plan_t *plan, size_t rank, const char *via);

/*
 * 1 if @p host names this machine: "localhost", "localhost.localdomain",
 * "::1", any 127.x.y.z address, or @p hostname (this machine's name, as
 * gethostname() gives it) or its first component. Other names and addresses,
 * including this machine's own non-loopback addresses, are 0: they are
 * reached over ssh (or pdsh).
 */
int zero_launch_host_is_local(const char *host, const char *hostname);

/* Fills @p token (ZERO_LAUNCH_TOKEN_CHARS + 1 bytes) with 32 lowercase hex
 * characters from /dev/urandom. */
zero_status_t zero_launch_token_generate(char *token);

#endif /* ZERO_LAUNCH_PLAN_H */
