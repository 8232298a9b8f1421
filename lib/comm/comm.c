/*
 * The communicator front: creation from the environment, argument checks,
 * the request queue and the progress thread that runs the backends.
 *
 * Threads: API calls enqueue requests under comm->lock and wake the progress
 * thread through an eventfd. The progress thread is the only thread that
 * touches UCX and the rendezvous sockets while the communicator lives. It runs
 * one host collective at a time, in start order, and between (and during)
 * collectives watches the rendezvous sockets so that a dead rank fails every
 * pending and later call.
 */
#define ZERO_LOG_MODULE "comm"
#include "comm/comm_internal.h"
#include "comm/comm_fail.h"
#include "comm/alltoall.h"
#include "comm/backend.h"
#include "comm/nccl.h"
#include "comm/reduce_range.h"
#include "comm/reduce.h"
#include "comm/reduce_split.h"
#include "comm/shm.h"
#include "comm/staged.h"
#include "comm/staged_plan.h"
#include "comm/ucx.h"
#include "util/alloc.h"
#include "util/byteorder.h"
#include "util/checks.h"
#include "util/clock.h"
#include "util/log.h"
#include "zero_build_config.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define BLOB_MAGIC 0x5a434231u     /* "ZCB1" */
#define BLOB_FLAG_GPU 1u
#define BLOB_HEADER 12
/* A rank's record: header (magic, flags, UCX address length), device key
 * (ZERO_DEVICE_KEY_BYTES), UCX address, shared-memory record. */
#define BLOB_FIXED (BLOB_HEADER + ZERO_DEVICE_KEY_BYTES + ZERO_SHM_RECORD_BYTES)
#define IDLE_SPINS_BEFORE_SLEEP 200
#define HEALTH_CHECK_INTERVAL 0.002

const char *zero_coll_name(zero_coll_kind_t kind)
{
    switch (kind) {
    case ZERO_COLL_ALLREDUCE:      return "allreduce";
    case ZERO_COLL_REDUCE_SCATTER: return "reduce-scatter";
    case ZERO_COLL_ALLGATHER:      return "allgather";
    case ZERO_COLL_BROADCAST:      return "broadcast";
    case ZERO_COLL_BARRIER:        return "barrier";
    case ZERO_COLL_ALLTOALL:       return "all-to-all";
    case ZERO_COLL_REDUCE_SCATTER_RANGE: return "reduce-scatter of a range";
    case ZERO_COLL_REDUCE_SCATTER_SPLIT: return "split reduce-scatter";
    }
    return "collective";
}

const char *zero_comm_op_string(zero_comm_op_t op)
{
    switch (op) {
    case ZERO_COMM_SUM: return "sum";
    case ZERO_COMM_AVG: return "avg";
    case ZERO_COMM_MAX: return "max";
    default:            return "unknown";
    }
}

/* ---- configuration: params > environment > defaults ---- */

static zero_status_t env_size(const char *name, size_t lo, size_t hi, size_t *value_p)
{
    const char *v = getenv(name);
    char *end;
    unsigned long long x;
    if (v == NULL)
        return ZERO_OK;
    errno = 0;
    x = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || x < lo || x > hi) {
        ZERO_LOG_ERROR("environment: %s='%s' is not an integer in [%zu, %zu]", name, v, lo, hi);
        return ZERO_ERR_INVALID_ARG;
    }
    *value_p = (size_t)x;
    return ZERO_OK;
}

static zero_status_t config_resolve(const zero_comm_params_t *p, zero_comm_config_t *cfg)
{
    const char *v;
    size_t inflight = 4;
    uint64_t mask = p ? p->field_mask : 0;

    cfg->rendezvous_timeout_s = 300.0;
    cfg->rendezvous_conn_timeout_s = ZERO_RDV_CONN_TIMEOUT_S;
    cfg->timeout_s = 300.0;
    cfg->backends = ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_UCX |
                    (HAVE_CUDA ? ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED : 0u);
    cfg->chunk_bytes = (size_t)1 << 20;
    cfg->staged_slot_bytes = (size_t)4 << 20;
    cfg->staged_slots = 4;
    cfg->staged_pin = 1;
    cfg->cuda_device = -1;
    cfg->direct = 1;
    if ((v = getenv("ZERO_COMM_DIRECT")) != NULL) {
        if (strcmp(v, "0") == 0) {
            cfg->direct = 0;
        } else if (strcmp(v, "1") != 0) {
            ZERO_LOG_ERROR("environment: ZERO_COMM_DIRECT='%s' is neither 0 nor 1", v);
            return ZERO_ERR_INVALID_ARG;
        }
    }
    if ((v = getenv("ZERO_RENDEZVOUS_TIMEOUT")) != NULL &&
        zero_seconds_parse("ZERO_RENDEZVOUS_TIMEOUT", v, 0.0, 1, 1e6, &cfg->rendezvous_timeout_s) != ZERO_OK)
        return ZERO_ERR_INVALID_ARG;
    if ((v = getenv("ZERO_RENDEZVOUS_CONN_TIMEOUT")) != NULL &&
        zero_seconds_parse("ZERO_RENDEZVOUS_CONN_TIMEOUT", v, 0.0, 1, 1e6, &cfg->rendezvous_conn_timeout_s) != ZERO_OK)
        return ZERO_ERR_INVALID_ARG;
    if ((v = getenv("ZERO_COMM_TIMEOUT")) != NULL &&
        zero_seconds_parse("ZERO_COMM_TIMEOUT", v, 0.0, 1, 1e6, &cfg->timeout_s) != ZERO_OK)
        return ZERO_ERR_INVALID_ARG;
    if (env_size("ZERO_COMM_CHUNK_BYTES", 4096, (size_t)64 << 20, &cfg->chunk_bytes) != ZERO_OK ||
        env_size("ZERO_COMM_CHUNKS_IN_FLIGHT", 1, 16, &inflight) != ZERO_OK)
        return ZERO_ERR_INVALID_ARG;
    cfg->chunks_in_flight = (int)inflight;
    {
        size_t slots = (size_t)cfg->staged_slots, pin = (size_t)cfg->staged_pin;
        if (env_size("ZERO_COMM_STAGED_SLOT_BYTES", (size_t)64 << 10, (size_t)1 << 30, &cfg->staged_slot_bytes) != ZERO_OK ||
            env_size("ZERO_COMM_STAGED_SLOTS", 1, 16, &slots) != ZERO_OK ||
            env_size("ZERO_COMM_STAGED_PIN", 0, 1, &pin) != ZERO_OK)
            return ZERO_ERR_INVALID_ARG;
        cfg->staged_slots = (int)slots;
        cfg->staged_pin = (int)pin;
        cfg->staged_slot_bytes &= ~(size_t)4095;   /* whole pages: pinned and shared memory come in pages */
    }
    if ((v = getenv("ZERO_COMM_NODE_UCX_TLS")) != NULL && v[0] != '\0')
        cfg->node_tls = v;
    if ((v = getenv("ZERO_COMM_UCX_ERR_MODE")) != NULL) {
        if (strcmp(v, "peer") == 0) {
            cfg->ucx_peer_err_mode = 1;
        } else if (strcmp(v, "none") != 0) {
            ZERO_LOG_ERROR("environment: ZERO_COMM_UCX_ERR_MODE='%s' is neither 'none' nor 'peer'", v);
            return ZERO_ERR_INVALID_ARG;
        }
    }

    if (mask & ZERO_COMM_PARAM_FIELD_RENDEZVOUS_TIMEOUT) {
        if (!(p->rendezvous_timeout_s > 0 && p->rendezvous_timeout_s <= 1e6)) {
            ZERO_LOG_ERROR("params: rendezvous_timeout_s=%g is outside (0, 1e6]", p->rendezvous_timeout_s);
            return ZERO_ERR_INVALID_ARG;
        }
        cfg->rendezvous_timeout_s = p->rendezvous_timeout_s;
    }
    if (mask & ZERO_COMM_PARAM_FIELD_TIMEOUT) {
        if (!(p->timeout_s > 0 && p->timeout_s <= 1e6)) {
            ZERO_LOG_ERROR("params: timeout_s=%g is outside (0, 1e6]", p->timeout_s);
            return ZERO_ERR_INVALID_ARG;
        }
        cfg->timeout_s = p->timeout_s;
    }
    if (mask & ZERO_COMM_PARAM_FIELD_BACKENDS) {
        uint32_t all = ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_UCX | ZERO_COMM_BACKEND_NCCL |
                       ZERO_COMM_BACKEND_STAGED;
        if (p->backends & ~all) {
            ZERO_LOG_ERROR("params: backends 0x%x has unknown bits", p->backends);
            return ZERO_ERR_INVALID_ARG;
        }
        if ((p->backends & (ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED)) && !HAVE_CUDA) {
            ZERO_LOG_ERROR("params: the %s backend was requested but libzero was built without CUDA",
                           (p->backends & ZERO_COMM_BACKEND_NCCL) ? "nccl" : "staged");
            return ZERO_ERR_UNSUPPORTED;
        }
        cfg->backends = p->backends;
    }
    if (mask & ZERO_COMM_PARAM_FIELD_CHUNK_BYTES) {
        if (p->chunk_bytes < 4096 || p->chunk_bytes > ((size_t)64 << 20)) {
            ZERO_LOG_ERROR("params: chunk_bytes=%zu is outside [4096, 64 MiB]", p->chunk_bytes);
            return ZERO_ERR_INVALID_ARG;
        }
        cfg->chunk_bytes = p->chunk_bytes;
    }
    if (mask & ZERO_COMM_PARAM_FIELD_CHUNKS_IN_FLIGHT) {
        if (p->chunks_in_flight < 1 || p->chunks_in_flight > 16) {
            ZERO_LOG_ERROR("params: chunks_in_flight=%d is outside [1, 16]", p->chunks_in_flight);
            return ZERO_ERR_INVALID_ARG;
        }
        cfg->chunks_in_flight = p->chunks_in_flight;
    }
    if (mask & ZERO_COMM_PARAM_FIELD_CUDA_DEVICE)
        cfg->cuda_device = p->cuda_device;
    cfg->chunk_bytes &= ~(size_t)15;    /* whole elements of every type */
    return ZERO_OK;
}

/* ---- progress thread ---- */

static void set_failed(zero_comm_t *comm, zero_status_t status, int rank)
{
    /* Only the progress thread fails a live communicator, so the culprit is
     * recorded before the status that publishes it: a thread that reads the
     * failure (zero_comm_failure, zero_comm_health) reads its rank too, never
     * the -1 of a healthy communicator. */
    if (atomic_load(&comm->failed) == 0) {
        atomic_store(&comm->failed_rank, rank);
        atomic_store(&comm->failed, (int)status);
    }
    for (const zero_comm_backend_ops_t *const *b = zero_comm_backends; *b != NULL; b++)
        if ((*b)->fail != NULL)
            (*b)->fail(comm);
}

void zero_comm_open_gate(zero_comm_request_h gated, zero_status_t status)
{
    uint64_t one = 1;
    atomic_store(&gated->gate_state, status == ZERO_OK ? 1 : (int)status);
    (void)!write(gated->comm->wake_fd, &one, sizeof(one));   /* its progress thread may be asleep */
}

static void complete(zero_comm_t *comm, zero_comm_request_h req, zero_status_t status)
{
    zero_comm_request_h gated = req->signal;   /* read before the request may be freed */
    if (gated != NULL)   /* the first level of a two-level collective is done */
        zero_comm_open_gate(gated, status);
    pthread_mutex_lock(&comm->lock);
    atomic_store(&req->status, (int)status);
    comm->pending--;
    pthread_cond_broadcast(&comm->cond);
    pthread_mutex_unlock(&comm->lock);
}

/* Sleeps until the API side, a rendezvous socket or a backend has something,
 * or @p ms passed. */
static void wait_events(zero_comm_t *comm, int ms)
{
    struct pollfd fds[8];
    int n = 0;
    fds[n++] = (struct pollfd){comm->wake_fd, POLLIN, 0};
    for (const zero_comm_backend_ops_t *const *b = zero_comm_backends; *b != NULL; b++) {
        int added;
        if ((*b)->pollfds == NULL)
            continue;
        if ((added = (*b)->pollfds(comm, fds + n, 4 - n)) < 0)
            return;     /* the backend has events waiting: do not sleep */
        n += added;
    }
    if (comm->rdv != NULL)
        n += zero_rdv_pollfds(comm->rdv, fds + n, 8 - n);
    if (poll(fds, (nfds_t)n, ms) > 0 && (fds[0].revents & POLLIN)) {
        uint64_t v;
        (void)!read(comm->wake_fd, &v, sizeof(v));
    }
}

/* The communicator whose rendezvous reaches every rank of the job: @p comm,
 * or for a split one the communicator it was split from (up the chain). */
static zero_comm_t *job_comm(zero_comm_t *comm)
{
    while (comm->parent != NULL && comm->rdv == NULL)
        comm = comm->parent;
    return comm;
}

/* Rank @p r of @p comm as a rank of job_comm(comm), the numbering the
 * rendezvous, zero_comm_failure and the logs' "[rank R]" use (a split
 * communicator's own ranks differ). -1 (unknown) stays -1. */
static int job_rank(const zero_comm_t *comm, int r)
{
    if (comm->job_ranks == NULL || r < 0)
        return r;
    return r < comm->env.size ? comm->job_ranks[r] : -1;
}

/* A split communicator's view of the job: the parent's failure (a dead rank
 * fails the parent first, through its rendezvous), naming a rank of the job. */
static zero_status_t parent_health(const zero_comm_t *comm, int *rank_p)
{
    int failed;
    for (const zero_comm_t *p = comm->parent; p != NULL; p = p->parent)
        if ((failed = atomic_load(&p->failed)) != 0) {
            *rank_p = job_rank(p, p->failed_rank);
            return (zero_status_t)failed;
        }
    return ZERO_OK;
}

/* A neighbour's connection failing is often the echo of another rank's death
 * (the neighbour itself gave up and left). Give the rendezvous sockets a moment
 * to tell who died first, so every rank names the same, real culprit. A split
 * communicator has no rendezvous: it gives the parent's the same moment
 * (backend_failed then reads the parent's failure). */
static void root_cause(zero_comm_t *comm, zero_status_t *status_p, int *peer_p)
{
    double until = zero_clock_now() + 1.0;
    if (comm->rdv == NULL) {
        int dead;
        while (comm->parent != NULL && zero_clock_now() < until && parent_health(comm, &dead) == ZERO_OK)
            poll(NULL, 0, 10);
        return;
    }
    while (zero_clock_now() < until) {
        struct pollfd fds[64];
        int dead, n;
        zero_status_t st = zero_rdv_check(comm->rdv, &dead);
        if (st != ZERO_OK) {
            *status_p = st;
            *peer_p = dead;
            return;
        }
        n = zero_rdv_pollfds(comm->rdv, fds, 64);
        poll(fds, (nfds_t)n, 10);
    }
}

zero_status_t zero_comm_health(void *arg, int *rank_p)
{
    zero_comm_t *comm = arg;
    int failed = atomic_load(&comm->failed);
    if (failed != 0) {
        *rank_p = comm->failed_rank;
        return (zero_status_t)failed;
    }
    if (comm->rdv == NULL)
        return parent_health(comm, rank_p);
    return zero_rdv_check(comm->rdv, rank_p);
}

static void fail_from_caller(zero_comm_t *comm, zero_status_t status, const char *cause, int culprit);

/*
 * A split communicator (no rendezvous of its own) failed on this rank with
 * its rank @p peer (-1: unknown, this rank is named) and the job has not
 * failed: the ranks outside it (other nodes, for a node communicator) would
 * wait for this rank in the parent's or a sibling's collectives until
 * ZERO_COMM_TIMEOUT. Fails the job's communicator as zero_comm_fail_local
 * does, naming that rank as a rank of the job; its rendezvous tells every
 * rank, and every communicator split from it fails through parent_health.
 */
static void tell_job(zero_comm_t *comm, zero_status_t st, int peer)
{
    char cause[200];
    int me = comm->env.rank, culprit = peer >= 0 && peer < comm->env.size ? peer : me;
    if (culprit == me)
        snprintf(cause, sizeof(cause), "a collective failed on this rank on a communicator split from the job's "
                 "(its rank %d of %d there)", me, comm->env.size);
    else
        snprintf(cause, sizeof(cause), "a collective failed with it on a communicator split from the job's, seen "
                 "by rank %d (ranks %d and %d of %d there)", job_rank(comm, me), culprit, me, comm->env.size);
    fail_from_caller(job_comm(comm), st, cause, job_rank(comm, culprit));
}

/* A backend failed @p req (@p in_flight: while moving data, not at its
 * start): fail the communicator, tell the other ranks (when the culprit is
 * known; on a split communicator always, through the job's), and complete
 * the request. */
static void backend_failed(zero_comm_t *comm, zero_comm_request_h req, zero_status_t st, int peer, int in_flight)
{
    if (req->backend->abort != NULL)
        req->backend->abort(comm, req);
    if (in_flight && st != ZERO_ERR_TIMEOUT && req->backend->failures_may_echo)
        root_cause(comm, &st, &peer);
    if (comm->rdv == NULL && comm->parent != NULL) {
        int dead;
        zero_status_t job = parent_health(comm, &dead);
        if (job != ZERO_OK) {
            st = job;    /* the job failed first (a backend's peer may be in the parent's numbering: */
            peer = -1;   /* zero_comm_health): the parent names the rank */
        } else {
            tell_job(comm, st, peer);
        }
    }
    set_failed(comm, st, peer);
    if (peer >= 0 && comm->rdv != NULL)
        zero_rdv_report(comm->rdv, peer, st);   /* every other rank stops now too */
    complete(comm, req, st);
}

/* A cause local to this rank (a backend's submit failed on the caller's
 * thread, zero_comm_fail_local, or a split communicator's failure: tell_job).
 * The other ranks would wait for this rank's share until the timeout, so the
 * progress thread fails the communicator and tells them (caller_failed), as
 * for a failure it meets itself; it owns the backends and the rendezvous.
 * @p culprit: the rank named (-1: this one). The first cause wins. */
static void fail_from_caller(zero_comm_t *comm, zero_status_t status, const char *cause, int culprit)
{
    int expected = 0;
    uint64_t one = 1;
    if (!comm->thread_started)
        return;   /* a world of one over the self backend: no other rank waits, and the next call may go on */
    pthread_mutex_lock(&comm->lock);
    if (atomic_compare_exchange_strong(&comm->caller_failure, &expected, (int)status)) {
        snprintf(comm->caller_cause, sizeof(comm->caller_cause), "%s", cause);
        comm->caller_culprit = culprit;
    }
    pthread_mutex_unlock(&comm->lock);
    (void)!write(comm->wake_fd, &one, sizeof(one));
}

void zero_comm_fail_local(zero_comm_h comm, zero_status_t status, const char *cause)
{
    if (comm == NULL || status == ZERO_OK)
        return;
    /* A split communicator has no rendezvous of its own: the communicator it
     * was split from tells every rank, and this one's peers learn it from
     * there (parent_health). */
    fail_from_caller(job_comm(comm), status, cause, -1);
}

zero_status_t zero_comm_failure(zero_comm_h comm, int *rank_p)
{
    zero_status_t first = ZERO_OK;
    *rank_p = -1;
    /* A split communicator that failed with its parent names no rank: the
     * parent does. Ranks are the job's (job_rank). */
    for (; comm != NULL && *rank_p < 0; comm = comm->parent) {
        int failed = atomic_load(&comm->failed);
        if (failed != 0) {
            if (first == ZERO_OK)
                first = (zero_status_t)failed;
            *rank_p = job_rank(comm, atomic_load(&comm->failed_rank));
        }
    }
    return first;
}

/* Progress thread: acts on fail_from_caller. */
static void caller_failed(zero_comm_t *comm)
{
    char cause[sizeof(comm->caller_cause)];
    zero_status_t st;
    int culprit;
    if (atomic_load(&comm->caller_failure) == 0)
        return;
    pthread_mutex_lock(&comm->lock);
    st = (zero_status_t)atomic_exchange(&comm->caller_failure, 0);
    memcpy(cause, comm->caller_cause, sizeof(cause));
    culprit = comm->caller_culprit >= 0 ? comm->caller_culprit : comm->env.rank;
    pthread_mutex_unlock(&comm->lock);
    if (st == ZERO_OK || atomic_load(&comm->failed) != 0)
        return;
    if (comm->rdv == NULL && comm->parent != NULL) {   /* a split communicator: the job's tells the others */
        ZERO_LOG_ERROR("split communicator (rank %d of %d): %s (%s)", comm->env.rank, comm->env.size, cause,
                       zero_status_string(st));
        set_failed(comm, st, culprit);
        tell_job(comm, st, culprit);
        return;
    }
    ZERO_LOG_ERROR("rank %d: %s (%s); the communicator fails and the other ranks are told", culprit, cause,
                   zero_status_string(st));
    set_failed(comm, st, culprit);
    if (comm->rdv != NULL)
        zero_rdv_report(comm->rdv, culprit, st);
}

/* Starts @p req on its backend, passing it down the list while backends
 * decline. Returns ZERO_INPROGRESS when it runs, else its final status
 * (failures already handled). */
static zero_status_t start_on_backend(zero_comm_t *comm, zero_comm_request_h req, double now)
{
    int peer;
    zero_status_t st = zero_comm_backend_start(comm, req, now, &peer);
    if (st == ZERO_OK)
        return ZERO_INPROGRESS;
    if (req->backend == NULL) {   /* no backend took it: this rank's fault */
        set_failed(comm, st, comm->env.rank);
        if (comm->rdv == NULL && comm->parent != NULL && parent_health(comm, &peer) == ZERO_OK)
            tell_job(comm, st, -1);
        complete(comm, req, st);
    } else {
        backend_failed(comm, req, st, peer, 0);
    }
    return st;
}

static void *progress_main(void *arg)
{
    zero_comm_t *comm = arg;
    zero_comm_request_h active = NULL;
    int idle = 0;
    double last_check = 0;

    for (;;) {
        double now;
        int stop;
        zero_status_t st;
        int peer = -1, progressed = 0;

        pthread_mutex_lock(&comm->lock);
        if (active == NULL && comm->queue_head != NULL) {
            active = comm->queue_head;
            comm->queue_head = active->next;
            if (comm->queue_head == NULL)
                comm->queue_tail = NULL;
        }
        stop = comm->stop && active == NULL;
        pthread_mutex_unlock(&comm->lock);
        if (stop) {
            /* A failure handed over just before zero_comm_destroy (the
             * engine's, or a split communicator's for the job) that this
             * thread has not acted on yet: tell the others now. Else they
             * wait for this rank until the timeout, and this rank's destroy,
             * taking the communicator for healthy, for their goodbye. */
            caller_failed(comm);
            break;
        }

        now = zero_clock_now();
        caller_failed(comm);
        if (comm->rdv != NULL && (active == NULL || now - last_check > HEALTH_CHECK_INTERVAL)) {
            int dead;
            last_check = now;
            zero_status_t st_rdv;
            if (atomic_load(&comm->failed) == 0 && (st_rdv = zero_rdv_check(comm->rdv, &dead)) != ZERO_OK)
                set_failed(comm, st_rdv, dead);
        } else if (comm->parent != NULL && (active == NULL || now - last_check > HEALTH_CHECK_INTERVAL)) {
            int dead;
            zero_status_t st_parent;
            last_check = now;
            if (atomic_load(&comm->failed) == 0 && (st_parent = parent_health(comm, &dead)) != ZERO_OK) {
                ZERO_LOG_ERROR("split communicator (rank %d of %d): the job failed (rank %d of the job: %s)",
                               comm->env.rank, comm->env.size, dead,
                               zero_status_string(st_parent));
                set_failed(comm, st_parent, -1);
            }
        }
        if (atomic_load(&comm->failed) != 0) {
            if (active != NULL) {
                if (active->backend->abort != NULL)
                    active->backend->abort(comm, active);
                ZERO_LOG_DEBUG("%s #%u failed: rank %d is gone", zero_coll_name(active->desc.kind), active->seq,
                               comm->failed_rank);
                complete(comm, active, (zero_status_t)atomic_load(&comm->failed));
                active = NULL;
                continue;
            }
            wait_events(comm, 100);
            continue;
        }
        if (active == NULL) {
            /* Idle, but peers may still be wiring up or flushing towards us. */
            unsigned moved = 0;
            for (const zero_comm_backend_ops_t *const *b = zero_comm_backends; *b != NULL; b++)
                if ((*b)->idle != NULL)
                    moved += (*b)->idle(comm);
            if (moved == 0)
                wait_events(comm, 1000);
            continue;
        }

        if (!active->backend_started && active->gated) {
            int gate = atomic_load(&active->gate_state);
            if (gate == 0 && active->gate_since == 0)
                active->gate_since = now;
            if (gate == 0 && now - active->gate_since > comm->cfg.timeout_s) {
                ZERO_LOG_ERROR("%s #%u: its first level did not complete within %g s", zero_coll_name(active->desc.kind),
                               active->seq, comm->cfg.timeout_s);
                gate = ZERO_ERR_TIMEOUT;
            }
            if (gate == 0) {
                wait_events(comm, 10);   /* the first level's completion writes our wake_fd */
                continue;
            }
            if (gate < 0) {
                /* The first level failed (and said why): so does this one,
                 * without sending this rank's share. Its peers on this
                 * communicator (other nodes, whose first level went well)
                 * would wait for that share until the timeout, so the job
                 * fails now, naming this rank (nothing when it failed
                 * already). Not for a timeout: a silent rank is the cause,
                 * not this one, and every rank waiting on it meets its own. */
                if (gate != ZERO_ERR_TIMEOUT)
                    zero_comm_fail_local(comm, (zero_status_t)gate,
                                         "the first level of a two-level collective failed on this rank");
                complete(comm, active, (zero_status_t)gate);
                active = NULL;
                continue;
            }
            active->gated = 0;
        }
        if (!active->backend_started && start_on_backend(comm, active, now) != ZERO_INPROGRESS) {
            active = NULL;
            idle = 0;
            continue;
        }
        st = active->backend->advance != NULL ? active->backend->advance(comm, active, now, &progressed, &peer)
                                              : ZERO_OK;   /* start did all the work */
        if (st != ZERO_INPROGRESS) {
            if (st != ZERO_OK)
                backend_failed(comm, active, st, peer, 1);
            else
                complete(comm, active, active->finish.run != NULL ? active->finish.run(&active->finish) : st);
            active = NULL;
            idle = 0;
            continue;
        }
        if (progressed) {
            idle = 0;
        } else if (++idle > IDLE_SPINS_BEFORE_SLEEP) {
            /* Nothing moved for a while: let the other ranks sharing this core run. */
            if (active->backend->wakes_through_fds)
                wait_events(comm, 1);
            else
                sched_yield();
        }
    }
    return NULL;
}

/* ---- creation and destruction ---- */

typedef struct extra_ctx {
    zero_comm_t *comm;
} extra_ctx_t;

/* Rank 0, once every blob is in: an NCCL unique id when every rank has a GPU. */
static zero_status_t make_extra(void *arg, int size, const unsigned char *const *blobs, const uint32_t *lens,
                                unsigned char *extra, uint32_t *extra_len_p)
{
    extra_ctx_t *ctx = arg;
    int all_gpu = 1;
    for (int r = 0; r < size; r++) {
        uint32_t flags;
        if (lens[r] < BLOB_HEADER)
            return ZERO_ERR_PROTOCOL;
        flags = (uint32_t)blobs[r][4] << 24 | (uint32_t)blobs[r][5] << 16 | (uint32_t)blobs[r][6] << 8 |
                blobs[r][7];
        if (!(flags & BLOB_FLAG_GPU))
            all_gpu = 0;
    }
    *extra_len_p = 0;
#if HAVE_CUDA
    if (all_gpu && (ctx->comm->cfg.backends & ZERO_COMM_BACKEND_NCCL)) {
        zero_status_t status = zero_nccl_unique_id(extra);
        if (status != ZERO_OK)
            return status;
        *extra_len_p = ZERO_NCCL_ID_BYTES;
    }
#else
    (void)ctx;
    (void)all_gpu;
    (void)extra;
#endif
    return ZERO_OK;
}

/* A peer's UCX address from its blob; NULL (logged) when malformed. */
static const void *blob_address(const zero_comm_t *comm, int rank)
{
    uint32_t len;
    const unsigned char *b = zero_rdv_blob(comm->rdv, rank, &len);
    if (len < BLOB_FIXED || zero_get_be32(b) != BLOB_MAGIC || zero_get_be32(b + 8) != len - BLOB_FIXED) {
        ZERO_LOG_ERROR("rendezvous: the address record of rank %d is malformed", rank);
        return NULL;
    }
    return b + BLOB_HEADER + ZERO_DEVICE_KEY_BYTES;
}

/* Records which backend carries device memory, from the job's device keys
 * (the same choice on every rank: all see the same records). Rank 0 says so
 * once when the choice was automatic (the job shares a device). */
static void apply_device_choice(zero_comm_t *comm, const unsigned char *const *keys)
{
    zero_device_choice_t choice;
    zero_device_path_choose(comm->cfg.backends, comm->env.size, keys, &choice);
    comm->device_path = (int)choice.path;
    snprintf(comm->device_note, sizeof(comm->device_note), "%s", choice.note);
    if (choice.automatic && comm->env.rank == 0)
        ZERO_LOG_INFO("communicator: %s", choice.note);
    ZERO_LOG_DEBUG("communicator: device memory goes through %s%s%s",
                   choice.path == ZERO_DEVICE_PATH_NCCL ? "nccl" : choice.path == ZERO_DEVICE_PATH_STAGED ? "staged" : "no backend",
                   choice.note[0] ? ": " : "", choice.note);
}

/* A job of several ranks: from every rank's rendezvous record. */
static zero_status_t choose_device_path(zero_comm_t *comm)
{
    int n = comm->env.size;
    const unsigned char **keys = zero_calloc((size_t)n, sizeof(*keys));
    if (keys == NULL) {
        ZERO_LOG_ERROR("communicator: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    for (int q = 0; q < n; q++) {
        uint32_t len;
        const unsigned char *b = zero_rdv_blob(comm->rdv, q, &len);
        if (blob_address(comm, q) == NULL) {
            zero_free(keys);
            return ZERO_ERR_PROTOCOL;
        }
        keys[q] = b + BLOB_HEADER;
    }
    apply_device_choice(comm, keys);
    zero_free(keys);
    return ZERO_OK;
}

/* A world of one: from this rank's own device. The rule gives NCCL only
 * where NCCL alone was allowed (comm_backend "nccl"); the communicator then
 * makes its own NCCL id, as rank 0 does for a job. Else device memory goes
 * through the self backend's ordered copies. */
static zero_status_t choose_device_path_alone(zero_comm_t *comm)
{
#if HAVE_CUDA
    unsigned char key[ZERO_DEVICE_KEY_BYTES] = {0};
    const unsigned char *keys[1] = {key};
    /* Only NCCL alone can be chosen here: otherwise CUDA is not even probed
     * (loading it costs a host job memory and time for nothing). */
    if ((comm->cfg.backends & (ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED)) != ZERO_COMM_BACKEND_NCCL)
        return ZERO_OK;
    zero_staged_device_key(comm->cfg.cuda_device, comm->env.local_rank, key);   /* zeros without a device */
    apply_device_choice(comm, keys);
    if (comm->device_path == ZERO_DEVICE_PATH_NCCL) {
        zero_status_t status = zero_nccl_unique_id(comm->nccl_id);
        if (status != ZERO_OK)
            return status;
        comm->have_nccl_id = 1;
    }
#else
    (void)comm;
#endif
    return ZERO_OK;
}

static zero_status_t join_world(zero_comm_t *comm)
{
    zero_status_t status = ZERO_OK;
    const void *addr, *left, *right;
    size_t addr_len;
    unsigned char *blob = NULL;
    uint32_t flags = 0, extra_len;
    const unsigned char *extra;
    extra_ctx_t ctx = {comm};
    int n = comm->env.size, r = comm->env.rank;

    ZERO_CHECK_GOTO(zero_ucx_create(r, n, comm->cfg.chunk_bytes, comm->cfg.chunks_in_flight,
                                    comm->cfg.ucx_peer_err_mode, NULL, &comm->ucx),
                    status, out);
    zero_ucx_address(comm->ucx, &addr, &addr_len);
    ZERO_REQUIRE_GOTO(addr_len + BLOB_FIXED <= ZERO_RDV_MAX_BLOB, ZERO_ERR_UNSUPPORTED,
                      status, out, "UCX worker address of %zu bytes exceeds the rendezvous bound", addr_len);
#if HAVE_CUDA
    if ((comm->cfg.backends & (ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED)) && zero_nccl_device_count() > 0)
        flags |= BLOB_FLAG_GPU;
#endif
    blob = zero_calloc(1, addr_len + BLOB_FIXED);
    ZERO_REQUIRE_GOTO(blob != NULL, ZERO_ERR_NO_MEMORY, status, out, "out of memory");
    zero_put_be32(blob, BLOB_MAGIC);
    zero_put_be32(blob + 4, flags);
    zero_put_be32(blob + 8, (uint32_t)addr_len);
#if HAVE_CUDA
    if (flags & BLOB_FLAG_GPU)
        zero_staged_device_key(comm->cfg.cuda_device, comm->env.local_rank, blob + BLOB_HEADER);
#endif
    memcpy(blob + BLOB_HEADER + ZERO_DEVICE_KEY_BYTES, addr, addr_len);
    zero_shm_record(comm->shm, blob + BLOB_HEADER + ZERO_DEVICE_KEY_BYTES + addr_len);
    ZERO_CHECK_GOTO(zero_rdv_create(&comm->env, comm->cfg.rendezvous_timeout_s, comm->cfg.rendezvous_conn_timeout_s,
                                    blob, (uint32_t)(addr_len + BLOB_FIXED), make_extra, &ctx, &comm->rdv),
                    status, out);
    ZERO_CHECK_GOTO(choose_device_path(comm), status, out);
    extra = zero_rdv_extra(comm->rdv, &extra_len);
    if (extra_len == 128) {
        memcpy(comm->nccl_id, extra, 128);
        comm->have_nccl_id = 1;
    }
    left = blob_address(comm, (r + n - 1) % n);
    right = blob_address(comm, (r + 1) % n);
    ZERO_REQUIRE_GOTO(left != NULL && right != NULL, ZERO_ERR_PROTOCOL, status, out,
                      "rendezvous: cannot connect the ring");
    ZERO_CHECK_GOTO(zero_ucx_connect(comm->ucx, left, right, comm->cfg.rendezvous_timeout_s), status, out);
    /* The direct path: every rank on this node, and every control page mapped
     * (the ranks agree on the outcome in zero_comm_create). */
    if (comm->cfg.direct && comm->env.local_size == n) {
        const unsigned char **recs = zero_calloc((size_t)n, sizeof(*recs));
        ZERO_REQUIRE_GOTO(recs != NULL, ZERO_ERR_NO_MEMORY, status, out, "out of memory");
        for (int q = 0; q < n; q++) {
            uint32_t len;
            const unsigned char *b = zero_rdv_blob(comm->rdv, q, &len);
            if (blob_address(comm, q) == NULL) {
                zero_free(recs);
                status = ZERO_ERR_PROTOCOL;
                goto out;
            }
            recs[q] = b + len - ZERO_SHM_RECORD_BYTES;
        }
        comm->shm_attached = zero_shm_attach(comm->shm, recs);
        zero_free(recs);
    }
out:
    zero_free(blob);
    return status;
}

/* Every rank learns whether every rank could map every control page (a ring
 * allreduce of one flag, before any user collective); all or none turn the
 * direct path on. */
static zero_status_t agree_direct(zero_comm_t *comm)
{
    uint8_t bad = !comm->shm_attached, any = 1;
    zero_status_t status = zero_comm_allreduce(comm, &bad, &any, 1, ZERO_U8, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (status != ZERO_OK)
        return status;
    if (any == 0)
        zero_shm_enable(comm->shm);
    ZERO_LOG_DEBUG("communicator: intra-node direct path %s", any == 0 ? "on" : "off");
    return ZERO_OK;
}

zero_status_t zero_comm_create(const zero_comm_params_t *params, zero_comm_h *comm_p)
{
    zero_status_t status = ZERO_OK;
    zero_comm_t *comm;
    int lock_init = 0, cond_init = 0;

    if (comm_p == NULL) {
        ZERO_LOG_ERROR("zero_comm_create: comm_p is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    comm = zero_calloc(1, sizeof(*comm));
    if (comm == NULL) {
        ZERO_LOG_ERROR("zero_comm_create: out of memory");
        return ZERO_ERR_NO_MEMORY;
    }
    comm->wake_fd = -1;
    comm->failed_rank = -1;
    ZERO_CHECK_GOTO(zero_comm_env_parse(NULL, NULL, &comm->env), status, fail);
    ZERO_CHECK_GOTO(config_resolve(params, &comm->cfg), status, fail);
    zero_log_set_rank(comm->env.rank);
    ZERO_REQUIRE_GOTO(pthread_mutex_init(&comm->lock, NULL) == 0, ZERO_ERR_NO_MEMORY, status, fail,
                      "zero_comm_create: pthread_mutex_init failed");
    lock_init = 1;
    ZERO_REQUIRE_GOTO(pthread_cond_init(&comm->cond, NULL) == 0, ZERO_ERR_NO_MEMORY, status, fail,
                      "zero_comm_create: pthread_cond_init failed");
    cond_init = 1;
    ZERO_CHECK_GOTO(zero_shm_create(comm->env.rank, comm->env.size, &comm->shm), status, fail);
    if (comm->env.size == 1)
        ZERO_CHECK_GOTO(choose_device_path_alone(comm), status, fail);
    /* The progress thread: every job of several ranks, and a world of one
     * over NCCL (whose requests complete there, as in a job). */
    if (comm->env.size > 1 || comm->device_path == ZERO_DEVICE_PATH_NCCL) {
        comm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        ZERO_ERRNO_CHECK_GOTO(comm->wake_fd >= 0, status, fail, "zero_comm_create: %s", "eventfd");
        if (comm->env.size > 1)
            ZERO_CHECK_GOTO(join_world(comm), status, fail);
        ZERO_REQUIRE_GOTO(pthread_create(&comm->thread, NULL, progress_main, comm) == 0, ZERO_ERR_NO_MEMORY,
                          status, fail, "zero_comm_create: cannot start the progress thread");
        comm->thread_started = 1;
    }
    if (comm->env.size > 1) {
        status = agree_direct(comm);
        if (status != ZERO_OK) {
            zero_comm_destroy(comm);
            return status;
        }
    }
    ZERO_LOG_DEBUG("communicator: rank %d of %d (local %d of %d, node %d of %d), environment from %s",
                   comm->env.rank, comm->env.size, comm->env.local_rank, comm->env.local_size, comm->env.cross_rank,
                   comm->env.cross_size, comm->env.source);
    *comm_p = comm;
    return ZERO_OK;

fail:
    zero_ucx_destroy(comm->ucx, 1, 0);
    zero_shm_destroy(comm->shm);
    zero_rdv_destroy(comm->rdv);
    if (comm->wake_fd >= 0)
        close(comm->wake_fd);
    if (cond_init)
        pthread_cond_destroy(&comm->cond);
    if (lock_init)
        pthread_mutex_destroy(&comm->lock);
    zero_free(comm);
    return status;
}

static void ucx_progress_cb(void *arg)
{
    zero_ucx_progress(arg);
}

void zero_comm_destroy(zero_comm_h comm)
{
    int healthy;
    if (comm == NULL)
        return;
    if (atomic_load(&comm->children) > 0)
        ZERO_LOG_ERROR("zero_comm_destroy: %d communicator(s) split from this one are still alive (destroy them "
                       "first: they read this one's state)", atomic_load(&comm->children));
    /* A split communicator has no rendezvous to leave by: a barrier makes
     * every member done with the others' data before any closes its
     * endpoints (their flush then delivers the barrier's last bytes). */
    if (comm->parent != NULL && comm->thread_started && atomic_load(&comm->failed) == 0)
        (void)zero_comm_barrier(comm);
    if (comm->thread_started) {
        uint64_t one = 1;
        pthread_mutex_lock(&comm->lock);
        while (comm->pending > 0)
            pthread_cond_wait(&comm->cond, &comm->lock);
        comm->stop = 1;
        pthread_mutex_unlock(&comm->lock);
        (void)!write(comm->wake_fd, &one, sizeof(one));
        pthread_join(comm->thread, NULL);
    }
    healthy = atomic_load(&comm->failed) == 0;
    /* Leave together, still moving UCX traffic, so nobody's last data is cut off. */
    if (comm->rdv != NULL && healthy &&
        zero_rdv_shutdown(comm->rdv, comm->cfg.timeout_s, ucx_progress_cb, comm->ucx) != ZERO_OK)
        healthy = 0;
    zero_ucx_destroy(comm->ucx, !healthy, healthy ? comm->cfg.timeout_s : 1.0);
#if HAVE_CUDA
    zero_nccl_destroy(atomic_load(&comm->nccl), !healthy);
    zero_staged_destroy(comm, atomic_load(&comm->staged), !healthy);   /* before the shared memory goes */
#endif
    zero_rdv_destroy(comm->rdv);
    zero_shm_destroy(comm->shm);
    if (comm->wake_fd >= 0)
        close(comm->wake_fd);
    pthread_cond_destroy(&comm->cond);
    pthread_mutex_destroy(&comm->lock);
    if (comm->parent != NULL)
        atomic_fetch_sub(&comm->parent->children, 1);
    zero_free(comm->job_ranks);
    zero_free(comm);
}

/* ---- splitting ---- */

/* Where a rank of the parent stands in the split: its colour, key and node. */
enum { SPLIT_COLOR, SPLIT_KEY, SPLIT_NODE, SPLIT_FIELDS };

/* Whether parent rank @p q comes before parent rank @p r in their new
 * communicator (the same colour): by key, ties by parent rank. */
static int split_before(const int32_t *who, int q, int r)
{
    int32_t kq = who[q * SPLIT_FIELDS + SPLIT_KEY], kr = who[r * SPLIT_FIELDS + SPLIT_KEY];
    return kq < kr || (kq == kr && q < r);
}

/* This rank's place in its new communicator, from every parent rank's
 * colour, key and node: rank, size, and the node counts among the members. */
static void split_place(const zero_comm_t *parent, const int32_t *who, int32_t color, zero_comm_env_t *env,
                        int *members)
{
    int me = parent->env.rank, n = 0;
    int32_t node = who[me * SPLIT_FIELDS + SPLIT_NODE];
    env->rank = env->local_rank = env->cross_rank = 0;
    env->local_size = env->cross_size = 0;
    for (int q = 0; q < parent->env.size; q++) {
        int32_t qnode = who[q * SPLIT_FIELDS + SPLIT_NODE];
        int first_on_node = 1;
        if (who[q * SPLIT_FIELDS + SPLIT_COLOR] != color)
            continue;
        members[n++] = q;
        if (split_before(who, q, me))
            env->rank++;
        if (qnode == node) {
            env->local_size++;
            if (split_before(who, q, me))
                env->local_rank++;
        }
        /* a node counts once, at its first member in parent order */
        for (int p = 0; p < q; p++)
            if (who[p * SPLIT_FIELDS + SPLIT_COLOR] == color && who[p * SPLIT_FIELDS + SPLIT_NODE] == qnode)
                first_on_node = 0;
        if (first_on_node) {
            env->cross_size++;
            if (qnode < node)
                env->cross_rank++;
        }
    }
    env->size = n;
    /* members in the new rank order (insertion sort: a job's ranks are few) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && split_before(who, members[j], members[j - 1]); j--) {
            int t = members[j];
            members[j] = members[j - 1];
            members[j - 1] = t;
        }
}

/*
 * A failure of this rank's own in zero_comm_split where it cannot take part
 * in the next exchange over the parent (no memory for its buffers): the other
 * ranks are in that exchange or about to enter it, and would wait for this
 * rank until ZERO_COMM_TIMEOUT. Fails the parent as the engine does for its
 * own failures (zero_comm_fail_local): every rank's split fails at once,
 * naming this rank, and so does the parent. Logs @p what; returns @p status.
 */
static zero_status_t split_fail_parent(zero_comm_t *parent, zero_status_t status, const char *what)
{
    char cause[128];
    ZERO_LOG_ERROR("zero_comm_split: %s", what);
    snprintf(cause, sizeof(cause), "zero_comm_split failed on this rank: %s", what);
    zero_comm_fail_local(parent, status, cause);
    return status;
}

/* The new communicator's transport: a UCX worker of its own connected to
 * its ring neighbours, the addresses (and shared-memory records) exchanged
 * over the parent; and the direct path when every member is on one node.
 * @p before: this rank's failure so far in zero_comm_split (its shared-memory
 * segment, its eventfd), told to the others in the first exchange like a
 * UCX worker that could not be made. */
static zero_status_t split_connect(zero_comm_t *parent, zero_comm_t *comm, int member, const int *members,
                                   zero_status_t before)
{
    zero_status_t status = ZERO_OK, local = before;
    const void *addr = NULL;
    size_t addr_len = 0;
    /* the record length, and the lowest failed rank r as W - r (0: none) */
    int64_t mine[2] = {0, 0}, most[2] = {0, 0};
    size_t slot;
    unsigned char *blobs = NULL;
    const unsigned char **addrs = NULL, **recs = NULL;
    int n = comm->env.size, r = comm->env.rank, W = parent->env.size;

    if (member && n > 1 && local == ZERO_OK) {
        local = zero_ucx_create(r, n, comm->cfg.chunk_bytes, comm->cfg.chunks_in_flight, comm->cfg.ucx_peer_err_mode,
                                comm->env.cross_size == 1 ? comm->cfg.node_tls : NULL, &comm->ucx);
        if (local == ZERO_OK) {
            zero_ucx_address(comm->ucx, &addr, &addr_len);
            mine[0] = (int64_t)(addr_len + ZERO_SHM_RECORD_BYTES);
        }
    }
    if (local != ZERO_OK)
        mine[1] = W - parent->env.rank;
    /* Every parent rank takes part in the exchange (members of a world of
     * one and ranks outside every new communicator too), and a rank that
     * failed tells the others, so none waits for it to connect. */
    ZERO_CHECK_GOTO(zero_comm_allreduce(parent, mine, most, 2, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST), status, out);
    if (most[1] != 0) {
        if (local == ZERO_OK)
            ZERO_LOG_ERROR("zero_comm_split: rank %d could not set up its part of the new communicator (its shared "
                           "memory, eventfd or UCX worker; see its log)", W - (int)most[1]);
        status = local != ZERO_OK ? local : ZERO_ERR_COMM;
        goto out;
    }
    if (most[0] == 0)
        goto out;   /* no new communicator has more than one rank */
    slot = 4 + (size_t)most[0];   /* be32 length, then the address and the shared-memory record */
    blobs = zero_calloc((size_t)W, slot);
    addrs = zero_calloc((size_t)n, sizeof(*addrs));
    recs = zero_calloc((size_t)n, sizeof(*recs));
    if (blobs == NULL || addrs == NULL || recs == NULL) {   /* the others are off to the allgather below */
        status = split_fail_parent(parent, ZERO_ERR_NO_MEMORY, "out of memory for the address records");
        goto out;
    }
    if (mine[0] > 0) {
        unsigned char *b = blobs + (size_t)parent->env.rank * slot;
        zero_put_be32(b, (uint32_t)mine[0]);
        memcpy(b + 4, addr, addr_len);
        zero_shm_record(comm->shm, b + 4 + addr_len);
    }
    ZERO_CHECK_GOTO(zero_comm_allgather(parent, blobs + (size_t)parent->env.rank * slot, blobs, slot, ZERO_U8,
                                        ZERO_MEM_HOST),
                    status, out);
    if (mine[0] == 0)
        goto out;
    for (int i = 0; i < n; i++) {
        const unsigned char *b = blobs + (size_t)members[i] * slot;
        uint32_t len = zero_get_be32(b);
        ZERO_REQUIRE_GOTO(len > ZERO_SHM_RECORD_BYTES && len <= slot - 4, ZERO_ERR_PROTOCOL, status, out,
                          "zero_comm_split: the address record of rank %d is malformed", members[i]);
        addrs[i] = b + 4;
        recs[i] = b + 4 + len - ZERO_SHM_RECORD_BYTES;
    }
    ZERO_CHECK_GOTO(zero_ucx_connect(comm->ucx, addrs[(r + n - 1) % n], addrs[(r + 1) % n],
                                     comm->cfg.rendezvous_timeout_s),
                    status, out);
    if (comm->cfg.direct && comm->env.local_size == n)
        comm->shm_attached = zero_shm_attach(comm->shm, recs);
out:
    zero_free(recs);
    zero_free(addrs);
    zero_free(blobs);
    return status;
}

/*
 * After split_connect: a rank whose own part failed once the first exchange
 * was past (connecting its endpoints: a peer's address, memory for an
 * endpoint) would leave the others waiting for it in the new communicator's
 * first collective until ZERO_COMM_TIMEOUT. Every parent rank, failed or
 * not, tells its outcome in one more exchange over the parent, each failure
 * as (W - rank) << 8 | -status so the maximum is the lowest failed rank's:
 * all fail or none, naming it, and the parent stays usable. Where the parent
 * itself failed, the exchange returns that at once on every rank.
 */
static zero_status_t split_agree(zero_comm_t *parent, zero_status_t local)
{
    int W = parent->env.size;
    int64_t mine = local != ZERO_OK ? ((int64_t)(W - parent->env.rank) << 8) | (int64_t)(-local & 0xff) : 0, most = 0;
    zero_status_t status = zero_comm_allreduce(parent, &mine, &most, 1, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (local != ZERO_OK)
        return local;   /* its own cause, logged where it happened */
    if (status != ZERO_OK)
        return status;
    if (most != 0) {
        ZERO_LOG_ERROR("zero_comm_split: rank %d could not connect its part of the new communicator (%s; see its "
                       "log)", W - (int)(most >> 8), zero_status_string((zero_status_t)(-(int)(most & 0xff))));
        return ZERO_ERR_COMM;
    }
    return ZERO_OK;
}

/* The new communicator's device path (NCCL or staged, the rule of
 * zero_device_path_choose over its members' devices), so that device memory
 * can go through it as through the parent. Every parent rank sends its device
 * key and, at rank 0 of a new communicator, a fresh NCCL id; the device each
 * rank uses is pinned to the parent's choice (the new local rank may differ). */
static zero_status_t split_device_path(zero_comm_t *parent, zero_comm_t *comm, int member, const int *members)
{
#if HAVE_CUDA
    enum { KEY = ZERO_DEVICE_KEY_BYTES, SLOT = ZERO_DEVICE_KEY_BYTES + ZERO_NCCL_ID_BYTES };
    zero_status_t status = ZERO_OK;
    int count = zero_nccl_device_count(), n = comm->env.size;
    unsigned char *all = NULL;
    const unsigned char **keys = NULL;
    zero_device_choice_t choice;

    if (!(parent->cfg.backends & (ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED)) ||
        parent->device_path == ZERO_DEVICE_PATH_NONE)
        return ZERO_OK;   /* the same on every rank: the parent's path is the job's */
    if (comm->cfg.cuda_device < 0 && count > 0)
        comm->cfg.cuda_device = parent->env.local_rank % count;
    all = zero_calloc((size_t)parent->env.size, SLOT);
    keys = zero_calloc((size_t)n, sizeof(*keys));
    if (all == NULL || keys == NULL) {   /* the others are off to the allgather below */
        status = split_fail_parent(parent, ZERO_ERR_NO_MEMORY, "out of memory for the device keys");
        goto out;
    }
    {
        unsigned char *mine = all + (size_t)parent->env.rank * SLOT;
        zero_staged_device_key(comm->cfg.cuda_device, parent->env.local_rank, mine);
        /* a failed id leaves zeros: that communicator then has no NCCL id, and
         * its device collectives fail with the reason (nccl_prepare) */
        if (member && n > 1 && comm->env.rank == 0 && (comm->cfg.backends & ZERO_COMM_BACKEND_NCCL) && count > 0 &&
            zero_nccl_unique_id(mine + KEY) != ZERO_OK)
            memset(mine + KEY, 0, ZERO_NCCL_ID_BYTES);
    }
    ZERO_CHECK_GOTO(zero_comm_allgather(parent, all + (size_t)parent->env.rank * SLOT, all, SLOT, ZERO_U8,
                                        ZERO_MEM_HOST),
                    status, out);
    if (!member || n < 2)
        goto out;
    for (int i = 0; i < n; i++)
        keys[i] = all + (size_t)members[i] * SLOT;
    zero_device_path_choose(comm->cfg.backends, n, keys, &choice);
    comm->device_path = (int)choice.path;
    snprintf(comm->device_note, sizeof(comm->device_note), "%s", choice.note);
    {
        static const unsigned char none[ZERO_NCCL_ID_BYTES];
        const unsigned char *id = all + (size_t)members[0] * SLOT + KEY;
        if (memcmp(id, none, ZERO_NCCL_ID_BYTES) != 0) {
            memcpy(comm->nccl_id, id, ZERO_NCCL_ID_BYTES);
            comm->have_nccl_id = 1;
        }
    }
out:
    zero_free(keys);
    zero_free(all);
    return status;
#else
    (void)parent;
    (void)comm;
    (void)member;
    (void)members;
    return ZERO_OK;
#endif
}

zero_status_t zero_comm_split(zero_comm_h parent, int color, int key, zero_comm_h *comm_p)
{
    zero_status_t status = ZERO_OK;
    zero_comm_t *comm = NULL;
    int32_t me[SPLIT_FIELDS], *who = NULL;
    int *members = NULL, failed;

    if (parent == NULL || comm_p == NULL || color < ZERO_COMM_SPLIT_NONE) {
        ZERO_LOG_ERROR("zero_comm_split: %s", parent == NULL ? "comm is NULL"
                                              : comm_p == NULL ? "comm_p is NULL"
                                                               : "a colour must be >= 0 or ZERO_COMM_SPLIT_NONE");
        return ZERO_ERR_INVALID_ARG;
    }
    if ((failed = atomic_load(&parent->failed)) != 0)
        return (zero_status_t)failed;
    who = zero_calloc((size_t)parent->env.size, sizeof(int32_t) * SPLIT_FIELDS);
    members = zero_calloc((size_t)parent->env.size, sizeof(int));
    comm = zero_calloc(1, sizeof(*comm));
    if (who == NULL || members == NULL || comm == NULL) {   /* the others are off to the first allgather */
        zero_free(who);
        zero_free(members);
        zero_free(comm);
        return split_fail_parent(parent, ZERO_ERR_NO_MEMORY, "out of memory for its buffers");
    }
    comm->wake_fd = -1;
    comm->failed_rank = -1;
    comm->cfg = parent->cfg;
    comm->parent = parent;
    comm->job_ranks = members;   /* the communicator's from now on (freed with it; see below) */
    atomic_fetch_add(&parent->children, 1);
    pthread_mutex_init(&comm->lock, NULL);
    pthread_cond_init(&comm->cond, NULL);

    me[SPLIT_COLOR] = color;
    me[SPLIT_KEY] = key;
    me[SPLIT_NODE] = parent->env.cross_rank;
    status = zero_comm_allgather(parent, me, who, SPLIT_FIELDS, ZERO_I32, ZERO_MEM_HOST);
    if (status != ZERO_OK)
        goto fail;
    split_place(parent, who, color, &comm->env, members);
    memcpy(comm->env.token, parent->env.token, sizeof(comm->env.token));
    comm->env.has_token = parent->env.has_token;
    comm->env.source = "zero_comm_split";
    /* A failure here is told to the others in split_connect's first exchange. */
    status = zero_shm_create(comm->env.rank, comm->env.size, &comm->shm);
    if (status == ZERO_OK && comm->env.size > 1 && color != ZERO_COMM_SPLIT_NONE) {
        comm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (comm->wake_fd < 0) {
            int err = errno;
            ZERO_LOG_ERROR("zero_comm_split: eventfd: %s", strerror(err));
            status = zero_status_from_errno(err);
        }
    }
    status = split_connect(parent, comm, color != ZERO_COMM_SPLIT_NONE, members, status);
    ZERO_CHECK_GOTO(split_agree(parent, status), status, fail);
    ZERO_CHECK_GOTO(split_device_path(parent, comm, color != ZERO_COMM_SPLIT_NONE, members), status, fail);
    if (color == ZERO_COMM_SPLIT_NONE) {
        zero_comm_destroy(comm);
        *comm_p = NULL;
        zero_free(who);
        return ZERO_OK;
    }
    /* Every use of the members' parent ranks is past: from here on they are
     * the job's, for job_rank (read only once the progress thread runs). */
    for (int i = 0; i < comm->env.size; i++)
        members[i] = job_rank(parent, members[i]);
    zero_ucx_name_ranks(comm->ucx, comm->job_ranks);
    zero_shm_name_ranks(comm->shm, comm->job_ranks);
    if (comm->env.size > 1) {
        if (pthread_create(&comm->thread, NULL, progress_main, comm) != 0) {
            /* The others are off to agree_direct's collective over the new
             * communicator, which this rank cannot join: failing the parent
             * fails theirs at once (parent_health), naming this rank. */
            status = split_fail_parent(parent, ZERO_ERR_NO_MEMORY, "cannot start the progress thread");
            goto fail;
        }
        comm->thread_started = 1;
        status = agree_direct(comm);
        if (status != ZERO_OK)
            goto fail;
    }
    ZERO_LOG_DEBUG("zero_comm_split: colour %d key %d: rank %d of %d (local %d of %d, node %d of %d)", color, key,
                   comm->env.rank, comm->env.size, comm->env.local_rank, comm->env.local_size, comm->env.cross_rank,
                   comm->env.cross_size);
    zero_free(who);
    *comm_p = comm;
    return ZERO_OK;

fail:
    if (atomic_load(&comm->failed) == 0)
        atomic_store(&comm->failed, (int)status);   /* no goodbye barrier: the members did not all get here */
    zero_comm_destroy(comm);
    zero_free(who);
    return status;
}

int zero_comm_rank(zero_comm_h comm)
{
    return comm ? comm->env.rank : -1;
}

int zero_comm_size(zero_comm_h comm)
{
    return comm ? comm->env.size : -1;
}

int zero_comm_local_rank(zero_comm_h comm)
{
    return comm ? comm->env.local_rank : -1;
}

int zero_comm_local_size(zero_comm_h comm)
{
    return comm ? comm->env.local_size : -1;
}

int zero_comm_cross_rank(zero_comm_h comm)
{
    return comm ? comm->env.cross_rank : -1;
}

int zero_comm_cross_size(zero_comm_h comm)
{
    return comm ? comm->env.cross_size : -1;
}

/* ---- starting collectives ---- */

static int overlaps(const void *a, size_t an, const void *b, size_t bn)
{
    const char *x = a, *y = b;
    return an > 0 && bn > 0 && x < y + bn && y < x + an;
}

/* Checks arguments common to every collective; @p elems_send/@p elems_recv:
 * element counts of the two buffers on this rank. */
static zero_status_t check_args(zero_comm_h comm, const zero_coll_desc_t *d, size_t elems_send, size_t elems_recv,
                                int send_used)
{
    const char *name = zero_coll_name(d->kind);
    size_t es;
    if (comm == NULL) {
        ZERO_LOG_ERROR("%s: comm is NULL", name);
        return ZERO_ERR_INVALID_ARG;
    }
    if (zero_dtype_size(d->dtype) == 0) {
        ZERO_LOG_ERROR("%s: unknown dtype %d", name, (int)d->dtype);
        return ZERO_ERR_INVALID_ARG;
    }
    if ((unsigned)d->op >= ZERO_COMM_OP_COUNT) {
        ZERO_LOG_ERROR("%s: unknown reduction op %d", name, (int)d->op);
        return ZERO_ERR_INVALID_ARG;
    }
    if (d->op == ZERO_COMM_AVG && (d->dtype == ZERO_U8 || d->dtype == ZERO_I32 || d->dtype == ZERO_I64) &&
        (d->kind == ZERO_COLL_ALLREDUCE || d->kind == ZERO_COLL_REDUCE_SCATTER)) {
        ZERO_LOG_ERROR("%s: ZERO_COMM_AVG of integers (%s) is not defined; sum them and divide", name,
                       zero_dtype_string(d->dtype));
        return ZERO_ERR_INVALID_ARG;
    }
    if ((unsigned)d->mem_kind >= ZERO_MEM_KIND_COUNT) {
        ZERO_LOG_ERROR("%s: unknown memory kind %d", name, (int)d->mem_kind);
        return ZERO_ERR_INVALID_ARG;
    }
    es = zero_dtype_size(d->dtype);
    if (d->count > SIZE_MAX / es / (size_t)comm->env.size / 4) {
        ZERO_LOG_ERROR("%s: count %zu overflows the buffer size", name, d->count);
        return ZERO_ERR_OVERFLOW;
    }
    if ((send_used && elems_send > 0 && d->sendbuf == NULL) || (elems_recv > 0 && d->recvbuf == NULL)) {
        ZERO_LOG_ERROR("%s: NULL buffer with %zu elements", name, d->count);
        return ZERO_ERR_INVALID_ARG;
    }
    if (zero_comm_backend_select(comm, d, NULL) == NULL) {
        if (d->mem_kind == ZERO_MEM_DEVICE && !HAVE_CUDA)
            ZERO_LOG_ERROR("%s: device memory needs the nccl backend, and libzero was built without CUDA", name);
        else if (d->mem_kind == ZERO_MEM_DEVICE && comm->device_note[0] != '\0')
            ZERO_LOG_ERROR("%s on device memory: %s", name, comm->device_note);
        else
            ZERO_LOG_ERROR("%s: no backend allowed by the params (backends 0x%x) carries %s memory at world size %d",
                           name, comm->cfg.backends, zero_mem_kind_string(d->mem_kind), comm->env.size);
        return ZERO_ERR_UNSUPPORTED;
    }
    (void)elems_send;
    return ZERO_OK;
}

/* Validates @p order (zero_comm_order_t, NULL: none) and copies its events
 * into @p d. Runs after check_args (a backend exists for @p d). */
static zero_status_t check_order(zero_comm_h comm, zero_coll_desc_t *d, const zero_comm_order_t *order)
{
    const uint64_t known = ZERO_COMM_ORDER_FIELD_WAIT_EVENT | ZERO_COMM_ORDER_FIELD_DONE_EVENT;
    const char *name = zero_coll_name(d->kind);
    const zero_comm_backend_ops_t *backend;
    if (order == NULL)
        return ZERO_OK;
    if (order->field_mask & ~known) {
        ZERO_LOG_ERROR("%s: order->field_mask 0x%llx has bits this libzero does not know (0x%llx)", name,
                       (unsigned long long)order->field_mask, (unsigned long long)(order->field_mask & ~known));
        return ZERO_ERR_INVALID_ARG;
    }
    if (order->field_mask & ZERO_COMM_ORDER_FIELD_WAIT_EVENT)
        d->wait_event = order->wait_event;
    if (order->field_mask & ZERO_COMM_ORDER_FIELD_DONE_EVENT)
        d->done_event = order->done_event;
    if (d->wait_event == NULL && d->done_event == NULL)
        return ZERO_OK;
    if (d->mem_kind != ZERO_MEM_DEVICE) {
        /* Host data is read by the CPU (or UCX) as soon as the progress thread
         * starts the request: no CUDA event can hold that back. */
        ZERO_LOG_ERROR("%s: an order with a CUDA event (%s%s%s) on %s memory: host collectives cannot wait on "
                       "CUDA work; make the data ready first and pass order NULL", name,
                       d->wait_event != NULL ? "wait_event" : "", d->wait_event && d->done_event ? ", " : "",
                       d->done_event != NULL ? "done_event" : "", zero_mem_kind_string(d->mem_kind));
        return ZERO_ERR_INVALID_ARG;
    }
    backend = zero_comm_backend_select(comm, d, NULL);
    if (backend == NULL || !backend->orders_on_streams) {
        ZERO_LOG_ERROR("%s: the %s backend that carries this collective cannot order it on CUDA streams", name,
                       backend != NULL ? backend->name : "(none)");
        return ZERO_ERR_UNSUPPORTED;
    }
    return ZERO_OK;
}

/* @p gated: the request waits for its gate (two-level collectives); @p
 * signal: the gated request this one's completion opens. */
static zero_status_t start_linked(zero_comm_h comm, const zero_coll_desc_t *d, const zero_comm_finish_t *finish,
                                  int gated, zero_comm_request_h signal, zero_comm_request_h *request_p)
{
    zero_status_t status = ZERO_OK;
    const zero_comm_backend_ops_t *backend;
    zero_comm_request_h req;
    void *copy_dst = NULL;
    size_t copy_bytes;
    int failed, done = 0;

    if (request_p == NULL) {
        ZERO_LOG_ERROR("%s: request_p is NULL", zero_coll_name(d->kind));
        return ZERO_ERR_INVALID_ARG;
    }
    if ((failed = atomic_load(&comm->failed)) != 0)
        return (zero_status_t)failed;   /* logged once, where the failure was detected */
    backend = zero_comm_backend_select(comm, d, NULL);   /* check_args made sure there is one */
    if (backend->submit != NULL && (gated || signal != NULL)) {
        /* Checked before anything is spent (a set-up, the sequence number):
         * the backends that finish at submit (a world of one, NCCL) would not
         * wait for the gate. */
        ZERO_LOG_ERROR("%s: a two-level collective needs a host backend that runs on the progress thread (%s "
                       "does not)", zero_coll_name(d->kind), backend->name);
        return ZERO_ERR_UNSUPPORTED;
    }
    /* Before this call takes its sequence number: a backend's first-use set-up
     * may run collectives of its own. */
    if (backend->prepare != NULL && (status = backend->prepare(comm, d)) != ZERO_OK)
        return status;
    req = zero_calloc(1, sizeof(*req));
    if (req == NULL) {
        /* The other ranks are in this collective or about to be, and would
         * wait for this rank's share until the timeout: fail them now. */
        ZERO_LOG_ERROR("%s: out of memory for a request", zero_coll_name(d->kind));
        zero_comm_fail_local(comm, ZERO_ERR_NO_MEMORY, "out of memory for a collective's request");
        return ZERO_ERR_NO_MEMORY;
    }
    req->desc = *d;
    req->comm = comm;
    req->backend = backend;
    req->lock = &comm->lock;
    req->cond = &comm->cond;
    req->seq = comm->next_seq++;
    if (finish != NULL)
        req->finish = *finish;
    atomic_store(&req->status, ZERO_INPROGRESS);
    req->gated = gated;
    req->signal = signal;

    if (backend->submit != NULL) {
        status = backend->submit(comm, req, &done);
        if (status != ZERO_OK) {
            zero_free(req);
            fail_from_caller(comm, status, "a device collective failed on this rank (logged above)", -1);
            return status;
        }
        if (done) {
            if (req->finish.run != NULL && (status = req->finish.run(&req->finish)) != ZERO_OK) {
                zero_free(req);
                return status;
            }
            atomic_store(&req->status, ZERO_OK);
            *request_p = req;
            return ZERO_OK;
        }
    }
    /* An out-of-place host allgather (or broadcast root) also copies this
     * rank's own block into the output. The caller's thread does it, after
     * queueing, while the progress thread already moves data: nothing else
     * touches that block (step 0 sends from sendbuf, and no rank sends this
     * block back). */
    copy_bytes = 0;
    if (d->mem_kind != ZERO_MEM_DEVICE) {
        size_t bytes = d->count * zero_dtype_size(d->dtype);
        if (d->kind == ZERO_COLL_ALLGATHER &&
            d->sendbuf != (const char *)d->recvbuf + (size_t)comm->env.rank * bytes) {
            copy_dst = (char *)d->recvbuf + (size_t)comm->env.rank * bytes;
            copy_bytes = bytes;
        } else if (d->kind == ZERO_COLL_BROADCAST && comm->env.rank == d->root && d->sendbuf != d->recvbuf) {
            copy_dst = d->recvbuf;
            copy_bytes = bytes;
        }
        req->desc.local_copy_by_caller = 1;
    }
    pthread_mutex_lock(&comm->lock);
    if (comm->queue_tail != NULL)
        comm->queue_tail->next = req;
    else
        comm->queue_head = req;
    comm->queue_tail = req;
    comm->pending++;
    pthread_mutex_unlock(&comm->lock);
    {
        uint64_t one = 1;
        (void)!write(comm->wake_fd, &one, sizeof(one));
    }
    if (copy_bytes > 0)
        memcpy(copy_dst, d->sendbuf, copy_bytes);
    *request_p = req;
    return ZERO_OK;
}

static zero_status_t start(zero_comm_h comm, const zero_coll_desc_t *d, const zero_comm_finish_t *finish,
                           zero_comm_request_h *request_p)
{
    return start_linked(comm, d, finish, 0, NULL, request_p);
}

zero_status_t zero_comm_allreduce_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                                zero_dtype_t dtype, zero_comm_op_t op, zero_mem_kind_t mem_kind,
                                                const zero_comm_order_t *order, zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_ALLREDUCE, sendbuf, recvbuf, count, dtype, op, 0, mem_kind, 0, NULL, NULL, 0, 0};
    zero_status_t status = check_args(comm, &d, count, count, 1);
    size_t bytes;
    if (status == ZERO_OK)
        status = check_order(comm, &d, order);
    if (status != ZERO_OK)
        return status;
    bytes = count * zero_dtype_size(dtype);
    if (sendbuf != recvbuf && overlaps(sendbuf, bytes, recvbuf, bytes)) {
        ZERO_LOG_ERROR("allreduce: send and receive buffers overlap without being the same (in place)");
        return ZERO_ERR_INVALID_ARG;
    }
    return start(comm, &d, NULL, request_p);
}

zero_status_t zero_comm_reduce_scatter_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf,
                                                     size_t recvcount, zero_dtype_t dtype, zero_comm_op_t op,
                                                     zero_mem_kind_t mem_kind, const zero_comm_order_t *order,
                                                     zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_REDUCE_SCATTER, sendbuf, recvbuf, recvcount, dtype, op, 0, mem_kind, 0, NULL, NULL, 0, 0};
    zero_status_t status;
    size_t es, n;
    if (comm == NULL)
        return check_args(comm, &d, 0, 0, 1);
    n = (size_t)comm->env.size;
    if ((status = check_args(comm, &d, recvcount * n, recvcount, 1)) != ZERO_OK ||
        (status = check_order(comm, &d, order)) != ZERO_OK)
        return status;
    es = zero_dtype_size(dtype);
    if ((const char *)recvbuf != (const char *)sendbuf + (size_t)comm->env.rank * recvcount * es &&
        overlaps(sendbuf, n * recvcount * es, recvbuf, recvcount * es)) {
        ZERO_LOG_ERROR("reduce-scatter: buffers overlap without being in place (recvbuf == sendbuf + rank * "
                       "recvcount)");
        return ZERO_ERR_INVALID_ARG;
    }
    return start(comm, &d, NULL, request_p);
}

static zero_status_t allgather_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t sendcount,
                                     zero_dtype_t dtype, zero_mem_kind_t mem_kind, const zero_comm_order_t *order,
                                     const zero_comm_finish_t *finish, zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_ALLGATHER, sendbuf, recvbuf, sendcount, dtype, ZERO_COMM_SUM, 0, mem_kind, 0, NULL, NULL, 0, 0};
    zero_status_t status;
    size_t es, n;
    if (comm == NULL)
        return check_args(comm, &d, 0, 0, 1);
    n = (size_t)comm->env.size;
    if ((status = check_args(comm, &d, sendcount, sendcount * n, 1)) != ZERO_OK ||
        (status = check_order(comm, &d, order)) != ZERO_OK)
        return status;
    es = zero_dtype_size(dtype);
    if ((const char *)sendbuf != (const char *)recvbuf + (size_t)comm->env.rank * sendcount * es &&
        overlaps(sendbuf, sendcount * es, recvbuf, n * sendcount * es)) {
        ZERO_LOG_ERROR("allgather: buffers overlap without being in place (sendbuf == recvbuf + rank * "
                       "sendcount)");
        return ZERO_ERR_INVALID_ARG;
    }
    return start(comm, &d, finish, request_p);
}

zero_status_t zero_comm_allgather_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t sendcount,
                                                zero_dtype_t dtype, zero_mem_kind_t mem_kind,
                                                const zero_comm_order_t *order, zero_comm_request_h *request_p)
{
    return allgather_start(comm, sendbuf, recvbuf, sendcount, dtype, mem_kind, order, NULL, request_p);
}

/* @p gate_mode 0: plain; 1: gated; 2: signals @p signal. */
static zero_status_t alltoall_start(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                    zero_dtype_t dtype, zero_mem_kind_t mem_kind, const zero_comm_order_t *order,
                                    const zero_comm_finish_t *finish, int gate_mode, zero_comm_request_h signal,
                                    zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_ALLTOALL, sendbuf, recvbuf, count, dtype, ZERO_COMM_SUM, 0, mem_kind, 0, NULL, NULL, 0, 0};
    zero_status_t status;
    size_t bytes;
    if (comm == NULL)
        return check_args(comm, &d, 0, 0, 1);
    if ((status = check_args(comm, &d, count * (size_t)comm->env.size, count * (size_t)comm->env.size, 1)) != ZERO_OK ||
        (status = check_order(comm, &d, order)) != ZERO_OK)
        return status;
    bytes = count * zero_dtype_size(dtype) * (size_t)comm->env.size;
    if (overlaps(sendbuf, bytes, recvbuf, bytes)) {
        ZERO_LOG_ERROR("all-to-all: send and receive buffers overlap");
        return ZERO_ERR_INVALID_ARG;
    }
    return start_linked(comm, &d, finish, gate_mode == 1, gate_mode == 2 ? signal : NULL, request_p);
}

zero_status_t zero_comm_alltoall_start_finish(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                              zero_dtype_t dtype, const zero_comm_finish_t *finish,
                                              zero_comm_request_h *request_p)
{
    return alltoall_start(comm, sendbuf, recvbuf, count, dtype, ZERO_MEM_HOST, NULL, finish, 0, NULL, request_p);
}

zero_status_t zero_comm_alltoall_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                               zero_dtype_t dtype, zero_mem_kind_t mem_kind,
                                               const zero_comm_order_t *order, zero_comm_request_h *request_p)
{
    return alltoall_start(comm, sendbuf, recvbuf, count, dtype, mem_kind, order, NULL, 0, NULL, request_p);
}

zero_status_t zero_comm_alltoall_start_gated(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                             zero_dtype_t dtype, const zero_comm_finish_t *finish,
                                             zero_comm_request_h *request_p)
{
    return alltoall_start(comm, sendbuf, recvbuf, count, dtype, ZERO_MEM_HOST, NULL, finish, 1, NULL, request_p);
}

zero_status_t zero_comm_alltoall_start_signal(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t count,
                                              zero_dtype_t dtype, const zero_comm_finish_t *finish,
                                              zero_comm_request_h gated, zero_comm_request_h *request_p)
{
    zero_status_t status;
    if (gated == NULL || !gated->gated || gated->chained != NULL) {
        ZERO_LOG_ERROR("all-to-all: the second level's request is missing, not gated, or taken");
        return ZERO_ERR_INVALID_ARG;
    }
    status = alltoall_start(comm, sendbuf, recvbuf, count, dtype, ZERO_MEM_HOST, NULL, finish, 2, gated, request_p);
    if (status == ZERO_OK)
        gated->chained = *request_p;
    return status;
}

void zero_coll_range_part(const zero_coll_desc_t *d, int r, size_t *lo_p, size_t *hi_p)
{
    size_t block_lo = (size_t)r * d->range_block, block_hi = block_lo + d->range_block;
    size_t lo = d->range_first > block_lo ? d->range_first : block_lo;
    size_t hi = d->range_first + d->count < block_hi ? d->range_first + d->count : block_hi;
    if (hi <= lo)
        lo = hi = d->range_first;   /* nothing for rank r */
    *lo_p = lo - d->range_first;
    *hi_p = hi - d->range_first;
}

zero_status_t zero_comm_reduce_scatter_range_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t first,
                                                   size_t count, size_t block, zero_dtype_t dtype, zero_comm_op_t op,
                                                   zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_REDUCE_SCATTER_RANGE, sendbuf, recvbuf, count, dtype, op, 0, ZERO_MEM_HOST, 0,
                          NULL, NULL, first, block};
    zero_status_t status;
    size_t es, lo, hi;
    if (comm == NULL)
        return check_args(comm, &d, 0, 0, 1);
    if (block == 0 || first > block * (size_t)comm->env.size || count > block * (size_t)comm->env.size - first) {
        ZERO_LOG_ERROR("reduce-scatter of a range: elements [%zu, %zu) are not inside %d blocks of %zu", first,
                       first + count, comm->env.size, block);
        return ZERO_ERR_INVALID_ARG;
    }
    zero_coll_range_part(&d, comm->env.rank, &lo, &hi);
    if ((status = check_args(comm, &d, count, hi - lo, 1)) != ZERO_OK)
        return status;
    es = zero_dtype_size(dtype);
    if ((const char *)recvbuf != (const char *)sendbuf + lo * es &&
        overlaps(sendbuf, count * es, recvbuf, (hi - lo) * es)) {
        ZERO_LOG_ERROR("reduce-scatter of a range: buffers overlap without being in place (recvbuf == sendbuf + "
                       "this rank's part)");
        return ZERO_ERR_INVALID_ARG;
    }
    return start(comm, &d, NULL, request_p);
}

zero_dtype_t zero_comm_split_partial_dtype(zero_comm_h comm, zero_dtype_t dtype)
{
    if (comm != NULL && comm->env.size == 2)
        return dtype;   /* the peer's block, as it is */
    return zero_comm_partial_size(dtype) != zero_dtype_size(dtype) ? ZERO_FP32 : dtype;
}

zero_status_t zero_comm_reduce_scatter_split_start(zero_comm_h comm, const void *sendbuf, size_t count,
                                                   zero_dtype_t dtype, zero_comm_split_t *split,
                                                   zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_REDUCE_SCATTER_SPLIT, sendbuf, split, count, dtype, ZERO_COMM_SUM, 0,
                          ZERO_MEM_HOST, 0, NULL, NULL, 0, 0};
    zero_status_t status;
    size_t n;
    if (comm == NULL)
        return check_args(comm, &d, 0, 0, 1);
    n = (size_t)comm->env.size;
    if (n < 2) {
        ZERO_LOG_ERROR("split reduce-scatter: a world of one has no peer whose partial to hand over");
        return ZERO_ERR_UNSUPPORTED;
    }
    if ((status = check_args(comm, &d, count * n, count, 1)) != ZERO_OK)
        return status;
    if (count > 0 && split->buf == NULL) {
        ZERO_LOG_ERROR("split reduce-scatter: split->buf is NULL with %zu elements", count);
        return ZERO_ERR_INVALID_ARG;
    }
    if (overlaps(sendbuf, n * count * zero_dtype_size(dtype), split->buf,
                 count * zero_dtype_size(zero_comm_split_partial_dtype(comm, dtype)))) {
        ZERO_LOG_ERROR("split reduce-scatter: the partial's buffer overlaps sendbuf");
        return ZERO_ERR_INVALID_ARG;
    }
    split->partial = split->buf;   /* the direct path at two ranks points it at the peer's block instead */
    return start(comm, &d, NULL, request_p);
}

zero_status_t zero_comm_allgather_start_finish(zero_comm_t *comm, const void *sendbuf, void *recvbuf, size_t sendcount,
                                               zero_dtype_t dtype, zero_mem_kind_t mem_kind,
                                               const zero_comm_finish_t *finish, zero_comm_request_h *request_p)
{
    if (mem_kind != ZERO_MEM_HOST) {
        ZERO_LOG_ERROR("allgather: a finishing step (a quantized collective) needs host memory, not %s",
                       zero_mem_kind_string(mem_kind));
        return ZERO_ERR_UNSUPPORTED;
    }
    return allgather_start(comm, sendbuf, recvbuf, sendcount, dtype, mem_kind, NULL, finish, request_p);
}

zero_status_t zero_comm_broadcast_start_ordered(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                                zero_dtype_t dtype, int root, zero_mem_kind_t mem_kind,
                                                const zero_comm_order_t *order, zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_BROADCAST, sendbuf, recvbuf, count, dtype, ZERO_COMM_SUM, root, mem_kind, 0, NULL, NULL, 0, 0};
    zero_status_t status;
    size_t bytes;
    int is_root;
    if (comm == NULL)
        return check_args(comm, &d, 0, 0, 1);
    if (root < 0 || root >= comm->env.size) {
        ZERO_LOG_ERROR("broadcast: root %d is outside [0, %d)", root, comm->env.size);
        return ZERO_ERR_INVALID_ARG;
    }
    is_root = comm->env.rank == root;
    if ((status = check_args(comm, &d, count, count, is_root)) != ZERO_OK ||
        (status = check_order(comm, &d, order)) != ZERO_OK)
        return status;
    bytes = count * zero_dtype_size(dtype);
    if (!is_root)
        d.sendbuf = recvbuf;    /* not read: the self path sees an in-place copy */
    else if (sendbuf != recvbuf && overlaps(sendbuf, bytes, recvbuf, bytes)) {
        ZERO_LOG_ERROR("broadcast: send and receive buffers overlap without being the same");
        return ZERO_ERR_INVALID_ARG;
    }
    return start(comm, &d, NULL, request_p);
}

zero_status_t zero_comm_allreduce_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                        zero_dtype_t dtype, zero_comm_op_t op, zero_mem_kind_t mem_kind,
                                        zero_comm_request_h *request_p)
{
    return zero_comm_allreduce_start_ordered(comm, sendbuf, recvbuf, count, dtype, op, mem_kind, NULL, request_p);
}

zero_status_t zero_comm_reduce_scatter_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t recvcount,
                                             zero_dtype_t dtype, zero_comm_op_t op, zero_mem_kind_t mem_kind,
                                             zero_comm_request_h *request_p)
{
    return zero_comm_reduce_scatter_start_ordered(comm, sendbuf, recvbuf, recvcount, dtype, op, mem_kind, NULL,
                                                  request_p);
}

zero_status_t zero_comm_allgather_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t sendcount,
                                        zero_dtype_t dtype, zero_mem_kind_t mem_kind, zero_comm_request_h *request_p)
{
    return zero_comm_allgather_start_ordered(comm, sendbuf, recvbuf, sendcount, dtype, mem_kind, NULL, request_p);
}

zero_status_t zero_comm_broadcast_start(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                        zero_dtype_t dtype, int root, zero_mem_kind_t mem_kind,
                                        zero_comm_request_h *request_p)
{
    return zero_comm_broadcast_start_ordered(comm, sendbuf, recvbuf, count, dtype, root, mem_kind, NULL, request_p);
}

zero_status_t zero_comm_barrier_start(zero_comm_h comm, zero_comm_request_h *request_p)
{
    zero_coll_desc_t d = {ZERO_COLL_BARRIER, NULL, NULL, 0, ZERO_FP32, ZERO_COMM_SUM, 0, ZERO_MEM_HOST, 0, NULL, NULL, 0, 0};
    zero_status_t status = check_args(comm, &d, 0, 0, 0);
    if (status != ZERO_OK)
        return status;
    return start(comm, &d, NULL, request_p);
}

/* ---- requests ---- */

zero_status_t zero_comm_request_test(zero_comm_request_h request)
{
    if (request == NULL)
        return ZERO_ERR_INVALID_ARG;
    return (zero_status_t)atomic_load(&request->status);
}

zero_status_t zero_comm_request_wait(zero_comm_request_h request)
{
    int st;
    if (request == NULL)
        return ZERO_ERR_INVALID_ARG;
    st = atomic_load(&request->status);
    if (st != ZERO_INPROGRESS)
        return (zero_status_t)st;
    pthread_mutex_lock(request->lock);
    while ((st = atomic_load(&request->status)) == ZERO_INPROGRESS)
        pthread_cond_wait(request->cond, request->lock);
    pthread_mutex_unlock(request->lock);
    return (zero_status_t)st;
}

void zero_comm_request_free(zero_comm_request_h request)
{
    if (request == NULL)
        return;
    zero_comm_request_wait(request);
    zero_comm_request_free(request->chained);   /* the first level of a two-level collective */
    zero_free(request);
}

/* @p req_p is read only after the start call ran (argument order is unspecified). */
static zero_status_t run_blocking(zero_status_t started, zero_comm_request_h *req_p)
{
    zero_status_t status;
    if (started != ZERO_OK)
        return started;
    status = zero_comm_request_wait(*req_p);
    zero_comm_request_free(*req_p);
    return status;
}

zero_status_t zero_comm_allreduce(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                  zero_dtype_t dtype, zero_comm_op_t op, zero_mem_kind_t mem_kind)
{
    zero_comm_request_h req = NULL;
    return run_blocking(zero_comm_allreduce_start(comm, sendbuf, recvbuf, count, dtype, op, mem_kind, &req), &req);
}

zero_status_t zero_comm_reduce_scatter(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t recvcount,
                                       zero_dtype_t dtype, zero_comm_op_t op, zero_mem_kind_t mem_kind)
{
    zero_comm_request_h req = NULL;
    return run_blocking(zero_comm_reduce_scatter_start(comm, sendbuf, recvbuf, recvcount, dtype, op, mem_kind, &req),
                        &req);
}

zero_status_t zero_comm_allgather(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t sendcount,
                                  zero_dtype_t dtype, zero_mem_kind_t mem_kind)
{
    zero_comm_request_h req = NULL;
    return run_blocking(zero_comm_allgather_start(comm, sendbuf, recvbuf, sendcount, dtype, mem_kind, &req), &req);
}

zero_status_t zero_comm_broadcast(zero_comm_h comm, const void *sendbuf, void *recvbuf, size_t count,
                                  zero_dtype_t dtype, int root, zero_mem_kind_t mem_kind)
{
    zero_comm_request_h req = NULL;
    return run_blocking(zero_comm_broadcast_start(comm, sendbuf, recvbuf, count, dtype, root, mem_kind, &req), &req);
}

zero_status_t zero_comm_barrier(zero_comm_h comm)
{
    zero_comm_request_h req = NULL;
    return run_blocking(zero_comm_barrier_start(comm, &req), &req);
}

/* ---- shareable host memory ---- */

zero_status_t zero_comm_mem_alloc(zero_comm_h comm, size_t bytes, void **ptr_p)
{
    if (comm == NULL || ptr_p == NULL) {
        ZERO_LOG_ERROR("zero_comm_mem_alloc: %s is NULL", comm == NULL ? "comm" : "ptr_p");
        return ZERO_ERR_INVALID_ARG;
    }
    if (bytes == 0) {
        ZERO_LOG_ERROR("zero_comm_mem_alloc: 0 bytes requested");
        return ZERO_ERR_INVALID_ARG;
    }
    return zero_shm_alloc(comm->shm, bytes, ptr_p);
}

zero_status_t zero_comm_mem_free(zero_comm_h comm, void *ptr)
{
    if (comm == NULL) {
        ZERO_LOG_ERROR("zero_comm_mem_free: comm is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    if (ptr == NULL)
        return ZERO_OK;
    return zero_shm_free(comm->shm, ptr);
}
