/*
 * Communicator backends: the seam between the front (comm.c: argument checks,
 * the request queue, the progress thread, failure handling) and the code that
 * moves the data.
 *
 * A backend is a table of operations. The front keeps a list of them in order
 * of preference (zero_comm_backends) and knows none by name: for every
 * collective it takes the first backend that accepts it (memory kind, world
 * size, placement) and is enabled by the communicator's backend bits. A
 * backend may still decline a request when the progress thread starts it
 * (the direct path does, collectively, when some rank's buffers are not
 * shareable); the front then hands it to the next backend that accepts it.
 *
 * Threads: accepts, prepare and submit run on the API thread, in the order the
 * caller starts collectives; everything else runs on the communicator's
 * progress thread, one request at a time, in start order.
 *
 * To add a backend: write its table, add it to
 * zero_comm_backends in backend.c, and give it a bit in zero_comm_backend_t if
 * users should be able to turn it off.
 */
#ifndef ZERO_COMM_BACKEND_H
#define ZERO_COMM_BACKEND_H

#include <poll.h>
#include "comm/comm_internal.h"
#include "zero_build_config.h"

struct zero_comm_backend_ops {
    const char *name;
    /* The zero_comm_backend_t bit that enables it (zero_comm_params_t::backends). */
    uint32_t enable_bit;
    /* Whether it can carry @p d on @p comm: memory kind, world size, placement. */
    int (*accepts)(const zero_comm_t *comm, const zero_coll_desc_t *d);
    /* Optional, API thread, before the request exists and takes its sequence
     * number: one-time set-up that may itself run collectives (NCCL agrees over
     * a host allreduce that every rank's device is ready). */
    zero_status_t (*prepare)(zero_comm_t *comm, const zero_coll_desc_t *d);
    /* Optional, API thread, before the request is queued: work that must
     * happen in the caller's order on the caller's thread (NCCL enqueues on its
     * stream here). *done_p = 1 when the collective is complete already (the
     * return value is then its status and the request is not queued). */
    zero_status_t (*submit)(zero_comm_t *comm, zero_comm_request_h req, int *done_p);
    /* Optional (NULL: submit already began it), progress thread: begins the
     * request (never called for requests submit completed). *declined_p = 1 passes it on to the
     * next backend that accepts it (nothing was moved). On failure *peer_p
     * names the rank at fault (-1: unknown). */
    zero_status_t (*start)(zero_comm_t *comm, zero_comm_request_h req, int *declined_p, int *peer_p);
    /* Optional (NULL: start did all the work), progress thread: moves it on;
     * ZERO_INPROGRESS until it is done.
     * *progressed_p is set when anything moved; on failure *peer_p names the
     * rank at fault (-1: unknown). */
    zero_status_t (*advance)(zero_comm_t *comm, zero_comm_request_h req, double now, int *progressed_p, int *peer_p);
    /* Optional, progress thread: the request ends without completing (it
     * failed, or the communicator failed): release what the backend holds. */
    void (*abort)(zero_comm_t *comm, zero_comm_request_h req);
    /* Optional, progress thread: the communicator failed; stop anything that
     * could block a rank for good (NCCL aborts its communicator). */
    void (*fail)(zero_comm_t *comm);
    /* Optional, progress thread, between collectives: moves background
     * traffic (peers still connecting or flushing); returns how much moved. */
    unsigned (*idle)(zero_comm_t *comm);
    /* Optional, progress thread, before it sleeps: adds the descriptors whose
     * readiness means this backend has work, returns how many it added, or -1
     * when work is already waiting (the front must not sleep). */
    int (*pollfds)(zero_comm_t *comm, struct pollfd *fds, int max);
    /* Whether a running request of this backend is woken through its pollfds
     * (so the front may sleep while it waits); otherwise the front yields. */
    int wakes_through_fds;
    /* Whether a failure it reports may be the echo of another rank's death, so
     * the front gives the rendezvous a moment to name the first culprit. */
    int failures_may_echo;
    /* Whether it honours zero_coll_desc_t's wait_event and done_event (orders
     * device work on CUDA streams); the front refuses an ordered collective
     * that would go to a backend without it, so none drops an event. */
    int orders_on_streams;
};

/* Every backend built, in order of preference, NULL-terminated. */
extern const zero_comm_backend_ops_t *const zero_comm_backends[];

extern const zero_comm_backend_ops_t zero_comm_backend_self;
extern const zero_comm_backend_ops_t zero_comm_backend_direct;
extern const zero_comm_backend_ops_t zero_comm_backend_ucx;
#if HAVE_CUDA
extern const zero_comm_backend_ops_t zero_comm_backend_nccl;
extern const zero_comm_backend_ops_t zero_comm_backend_staged;
#endif

/* The first backend after @p after (NULL: from the start of the list) that
 * @p comm's backend bits allow and that accepts @p d; NULL when none does. */
const zero_comm_backend_ops_t *zero_comm_backend_select(const zero_comm_t *comm, const zero_coll_desc_t *d,
                                                        const zero_comm_backend_ops_t *after);

/* Progress thread: starts @p req on req->backend, passing it down the list
 * while backends decline. ZERO_OK: it runs (backend_started and started_at
 * set). Else nothing runs and the caller handles the failure: the start's
 * status with *peer_p the rank at fault (-1: unknown), or ZERO_ERR_INTERNAL
 * with req->backend NULL when no backend takes it (logged). The front's
 * requests and the staged backend's host collectives both start here. */
zero_status_t zero_comm_backend_start(zero_comm_t *comm, zero_comm_request_h req, double now, int *peer_p);

/* The job's health, for backends that wait on peers outside the front (the
 * direct path): ZERO_OK, or the failure with *rank_p set. */
zero_status_t zero_comm_health(void *comm, int *rank_p);

#endif /* ZERO_COMM_BACKEND_H */
