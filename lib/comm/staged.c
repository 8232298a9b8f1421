/* The staged backend: device collectives through pinned host slots (see staged.h). */
#define ZERO_LOG_MODULE "comm"
#include "comm/staged.h"
#include "comm/backend.h"

#if HAVE_CUDA
/* Every CUDA call goes through the CUDA module's table (util/cuda_module.h). */
#include "comm/nccl.h"
#include "util/alloc.h"
#include "util/checks_cuda.h"
#include "util/cuda_module.h"
#include "util/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct zero_staged {
    int device;
    cudaStream_t order;                /* the gate (see staged.h) */
    cudaStream_t copy_in, copy_out;    /* device to slot, slot to device */
    unsigned char *slots;              /* nslots * slot_bytes of shared memory */
    size_t slot_bytes;
    unsigned nslots;
    int pinned;                        /* cudaHostRegister took the slots */
    cudaEvent_t *in_done, *out_done;   /* per slot: its last copy in / out */
    _Atomic uint32_t *flag;            /* mapped pinned word: the last collective released */
    void *flag_dev;                    /* its device address */
    atomic_uint next_gen;              /* the last gate value handed out (API thread) */
    unsigned ring;                     /* progress thread: the slot where the next collective starts */
};

typedef struct staged_req {
    uint32_t gen;                      /* its gate value */
    uint32_t seq0;                     /* chunk k's host collective has sequence number seq0 + k */
    cudaEvent_t start;                 /* on the order stream, after the caller's wait_event */
    int started;
    double last_moved;
    zero_staged_geom_t geom;
    zero_slot_pipe_t pipe;
    zero_staged_piece_t *pieces;       /* room for one chunk's copies (size pieces) */
    struct zero_comm_request inner;    /* the running host collective */
    int inner_running;
} staged_req_t;

void zero_staged_device_key(int device, int local_rank, unsigned char key[ZERO_DEVICE_KEY_BYTES])
{
    char host[256], bus[32];
    int room;
    memset(key, 0, ZERO_DEVICE_KEY_BYTES);
    if (zero_nccl_device_count() <= 0)
        return;
    device = zero_device_index(device, local_rank, zero_nccl_device_count());
    if (ZERO_CUDA(cudaDeviceGetPCIBusId)(bus, (int)sizeof(bus), device) != cudaSuccess) {
        (void)ZERO_CUDA(cudaGetLastError)();
        ZERO_LOG_DEBUG("communicator: CUDA device %d cannot be asked for its PCI bus id: no device key", device);
        return;
    }
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "?");
    host[sizeof(host) - 1] = '\0';
    room = ZERO_DEVICE_KEY_BYTES - 2 - (int)strlen(bus);
    snprintf((char *)key, ZERO_DEVICE_KEY_BYTES, "%.*s/%s", room > 0 ? room : 0, host, bus);
}

/* The order stream may pass every gate up to @p gen (cyclic: gate values wrap). */
static void release(zero_staged_t *s, uint32_t gen)
{
    uint32_t cur = atomic_load(s->flag);
    while (zero_staged_gate_raise(cur, gen) != cur && !atomic_compare_exchange_weak(s->flag, &cur, gen))
        ;
}

void zero_staged_destroy(zero_comm_t *comm, zero_staged_t *s, int failed)
{
    int keep_flag = 0;
    if (s == NULL)
        return;
    if (s->flag != NULL)
        release(s, atomic_load(&s->next_gen));   /* nothing may wait for the host any more */
    (void)ZERO_CUDA(cudaSetDevice)(s->device);
    if (s->order != NULL && !failed)
        (void)ZERO_CUDA(cudaStreamSynchronize)(s->order);
    else if (s->order != NULL)
        keep_flag = ZERO_CUDA(cudaStreamQuery)(s->order) == cudaErrorNotReady;   /* stuck behind a caller's event */
    if (s->copy_in != NULL)
        (void)ZERO_CUDA(cudaStreamSynchronize)(s->copy_in);    /* no copy may still touch a slot */
    if (s->copy_out != NULL)
        (void)ZERO_CUDA(cudaStreamSynchronize)(s->copy_out);
    for (unsigned i = 0; i < s->nslots; i++) {
        if (s->in_done != NULL && s->in_done[i] != NULL)
            ZERO_CUDA(cudaEventDestroy)(s->in_done[i]);
        if (s->out_done != NULL && s->out_done[i] != NULL)
            ZERO_CUDA(cudaEventDestroy)(s->out_done[i]);
    }
    zero_free(s->in_done);
    zero_free(s->out_done);
    if (s->pinned)
        (void)ZERO_CUDA(cudaHostUnregister)(s->slots);
    if (s->slots != NULL)
        (void)zero_comm_mem_free(comm, s->slots);
    if (s->order != NULL)
        ZERO_CUDA(cudaStreamDestroy)(s->order);
    if (s->copy_in != NULL)
        ZERO_CUDA(cudaStreamDestroy)(s->copy_in);
    if (s->copy_out != NULL)
        ZERO_CUDA(cudaStreamDestroy)(s->copy_out);
    if (s->flag != NULL && !keep_flag)
        ZERO_CUDA(cudaFreeHost)((void *)s->flag);
    else if (s->flag != NULL)
        ZERO_LOG_WARN("staged: the communication stream still waits for a caller's event after the failure; "
                      "its %s word stays allocated", "pinned gate");
    (void)ZERO_CUDA(cudaGetLastError)();
    zero_free(s);
}

/* This rank's half of the set-up (API thread). */
static zero_status_t create_local(zero_comm_t *comm, zero_staged_t **s_p)
{
    zero_status_t status = ZERO_OK;
    size_t bytes;
    void *flag = NULL;
    zero_staged_t *s = zero_calloc(1, sizeof(*s));
    ZERO_REQUIRE_GOTO(s != NULL, ZERO_ERR_NO_MEMORY, status, fail, "staged: out of memory");
    s->device = zero_device_index(comm->cfg.cuda_device, comm->env.local_rank, zero_nccl_device_count());
    s->slot_bytes = comm->cfg.staged_slot_bytes;
    s->nslots = (unsigned)comm->cfg.staged_slots;
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(s->device), status, fail, "staged: cudaSetDevice(%d)", s->device);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&s->order, cudaStreamNonBlocking), status, fail,
                         "staged: %s", "creating the order stream");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&s->copy_in, cudaStreamNonBlocking), status, fail,
                         "staged: %s", "creating the copy-in stream");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamCreateWithFlags)(&s->copy_out, cudaStreamNonBlocking), status, fail,
                         "staged: %s", "creating the copy-out stream");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaHostAlloc)(&flag, 64, cudaHostAllocMapped | cudaHostAllocPortable), status,
                         fail, "staged: %s", "allocating the pinned gate word");
    s->flag = flag;
    atomic_store(s->flag, 0u);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaHostGetDevicePointer)(&s->flag_dev, flag, 0), status, fail,
                         "staged: %s", "the device address of the pinned gate word");
    s->in_done = zero_calloc(s->nslots, sizeof(*s->in_done));
    s->out_done = zero_calloc(s->nslots, sizeof(*s->out_done));
    ZERO_REQUIRE_GOTO(s->in_done != NULL && s->out_done != NULL, ZERO_ERR_NO_MEMORY, status, fail,
                      "staged: out of memory");
    for (unsigned i = 0; i < s->nslots; i++) {
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&s->in_done[i], cudaEventDisableTiming), status,
                             fail, "staged: %s", "creating an event");
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&s->out_done[i], cudaEventDisableTiming), status,
                             fail, "staged: %s", "creating an event");
    }
    bytes = s->slot_bytes * s->nslots;
    ZERO_CHECK_GOTO(zero_comm_mem_alloc(comm, bytes, (void **)&s->slots), status, fail);
    if (!comm->cfg.staged_pin) {
        ZERO_LOG_INFO("staged: %u slots of %zu bytes stay pageable (ZERO_COMM_STAGED_PIN=0)", s->nslots,
                      s->slot_bytes);
    } else if (ZERO_CUDA(cudaHostRegister)(s->slots, bytes, cudaHostRegisterPortable) == cudaSuccess) {
        s->pinned = 1;
    } else {
        cudaError_t err = ZERO_CUDA(cudaGetLastError)();
        ZERO_LOG_WARN("staged: cannot pin %zu bytes of staging memory (%s; the locked-memory limit, ulimit -l?): "
                      "copies go through pageable memory, slower", bytes, ZERO_CUDA(cudaGetErrorString)(err));
    }
    *s_p = s;
    return ZERO_OK;
fail:
    if (s != NULL)
        zero_staged_destroy(comm, s, 1);
    return status;
}

static int staged_accepts(const zero_comm_t *comm, const zero_coll_desc_t *d)
{
    /* the all-to-all too (device qgZ): each chunk's slot holds its blocks going out and coming in */
    return comm->env.size > 1 && d->mem_kind == ZERO_MEM_DEVICE && d->kind != ZERO_COLL_BARRIER &&
           d->kind != ZERO_COLL_REDUCE_SCATTER_RANGE && d->kind != ZERO_COLL_REDUCE_SCATTER_SPLIT &&
           comm->device_path == ZERO_DEVICE_PATH_STAGED;
}

/* Created on the first device collective; every rank agrees (a host
 * allreduce) that its set-up worked and that all use the same slot size,
 * which fixes how every collective is cut into chunks. */
static zero_status_t staged_prepare(zero_comm_t *comm, const zero_coll_desc_t *d)
{
    zero_staged_t *s = NULL;
    zero_status_t local, status;
    int64_t mine[3], all[3];
    (void)d;
    if (atomic_load(&comm->staged) != NULL)
        return ZERO_OK;
    if (comm->staged_create_status != ZERO_OK) {
        ZERO_LOG_ERROR("device-memory collective: the staged backend could not be set up on an earlier call (%s; "
                       "logged then)", zero_status_string(comm->staged_create_status));
        return comm->staged_create_status;
    }
    if (!(comm->cfg.backends & ZERO_COMM_BACKEND_UCX)) {
        ZERO_LOG_ERROR("device-memory collective: the staged backend runs the host collectives, and the params "
                       "leave the ucx backend out");
        comm->staged_create_status = ZERO_ERR_UNSUPPORTED;
        return ZERO_ERR_UNSUPPORTED;
    }
    local = create_local(comm, &s);
    mine[0] = local != ZERO_OK ? comm->env.rank + 1 : 0;
    mine[1] = (int64_t)comm->cfg.staged_slot_bytes;
    mine[2] = -(int64_t)comm->cfg.staged_slot_bytes;
    status = zero_comm_allreduce(comm, mine, all, 3, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (status != ZERO_OK) {
        ZERO_LOG_ERROR("staged: the ranks could not agree that their set-up worked: %s", zero_status_string(status));
    } else if (all[0] > 0) {
        if (local == ZERO_OK)
            ZERO_LOG_ERROR("staged: rank %d could not set up the staged backend (see its log)", (int)all[0] - 1);
        status = local != ZERO_OK ? local : ZERO_ERR_CUDA;
    } else if (all[1] != -all[2]) {
        ZERO_LOG_ERROR("staged: the ranks' slot sizes differ (ZERO_COMM_STAGED_SLOT_BYTES from %lld to %lld bytes); "
                       "every rank must cut collectives alike", (long long)-all[2], (long long)all[1]);
        status = ZERO_ERR_INVALID_ARG;
    }
    if (status != ZERO_OK) {
        if (s != NULL)
            zero_staged_destroy(comm, s, 1);
        comm->staged_create_status = status;
        return status;
    }
    ZERO_LOG_DEBUG("staged: device %d, %u slots of %zu bytes, %s", s->device, s->nslots, s->slot_bytes,
                   s->pinned ? "pinned" : "pageable");
    atomic_store(&comm->staged, s);
    return ZERO_OK;
}

static void req_free(staged_req_t *sr)
{
    if (sr == NULL)
        return;
    if (sr->start != NULL)
        ZERO_CUDA(cudaEventDestroy)(sr->start);
    zero_free(sr->pieces);
    zero_free(sr);
}

/* Queues the gate on the order stream in the caller's order (API thread). */
static zero_status_t staged_submit(zero_comm_t *comm, zero_comm_request_h req, int *done_p)
{
    zero_staged_t *s = atomic_load(&comm->staged);
    const zero_coll_desc_t *d = &req->desc;
    zero_status_t status = ZERO_OK;
    staged_req_t *sr = zero_calloc(1, sizeof(*sr));
    int gated = 0, r;

    *done_p = 0;
    ZERO_REQUIRE_GOTO(sr != NULL, ZERO_ERR_NO_MEMORY, status, fail, "staged: out of memory");
    ZERO_CHECK_GOTO(zero_staged_geom_init(&sr->geom, d, comm->env.size, comm->env.rank, s->slot_bytes), status, fail);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(s->device), status, fail, "staged: cudaSetDevice(%d)", s->device);
    if (sr->geom.chunks == 0) {
        /* Nothing to move on any rank (the counts match): only the order. */
        if (d->wait_event != NULL)
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(s->order, (cudaEvent_t)d->wait_event, 0), status,
                                 fail, "staged: %s", "the stream cannot wait on the caller's wait_event");
        if (d->done_event != NULL)
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)((cudaEvent_t)d->done_event, s->order), status, fail,
                                 "staged: %s", "cannot record the caller's done_event");
        req_free(sr);
        *done_p = 1;
        return ZERO_OK;
    }
    sr->pieces = zero_calloc((size_t)comm->env.size, sizeof(*sr->pieces));
    ZERO_REQUIRE_GOTO(sr->pieces != NULL, ZERO_ERR_NO_MEMORY, status, fail, "staged: out of memory");
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventCreateWithFlags)(&sr->start, cudaEventDisableTiming), status, fail,
                         "staged: %s", "creating an event");
    if (d->wait_event != NULL)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaStreamWaitEvent)(s->order, (cudaEvent_t)d->wait_event, 0), status, fail,
                             "staged: %s of %zu elements: the stream cannot wait on the caller's wait_event",
                             zero_coll_name(d->kind), d->count);
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(sr->start, s->order), status, fail, "staged: %s",
                         "recording an event");
    sr->gen = atomic_fetch_add(&s->next_gen, 1u) + 1u;
    r = ZERO_CUDA(zero_cuda_stream_wait_geq32)(s->order, s->flag_dev, sr->gen);
    if (r != 0) {
        ZERO_LOG_ERROR("staged: the communication stream cannot wait for the host (cuStreamWaitValue32: driver "
                       "error %d)", r);
        status = ZERO_ERR_CUDA;
        release(s, sr->gen);   /* this gate value is spent */
        goto fail;
    }
    gated = 1;
    if (d->done_event != NULL)
        ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)((cudaEvent_t)d->done_event, s->order), status, fail,
                             "staged: %s of %zu elements: cannot record the caller's done_event",
                             zero_coll_name(d->kind), d->count);
    /* Chunk k's host collective is collective number req->seq + k on every rank. */
    sr->seq0 = req->seq;
    comm->next_seq += (uint32_t)(sr->geom.chunks - 1);
    req->backend_data = sr;
    return ZERO_OK;
fail:
    if (gated)
        release(s, sr->gen);
    req_free(sr);
    return status;
}

/* Starts chunk @p k's host collective on its slot. *finished_p: it ran whole (the direct path). */
static zero_status_t inner_start(zero_comm_t *comm, zero_staged_t *s, staged_req_t *sr, size_t k, double now,
                                 int *finished_p, int *peer_p)
{
    zero_comm_request_h in = &sr->inner;
    unsigned slot = zero_slot_pipe_slot(&sr->pipe, k);
    zero_status_t st;
    memset(in, 0, sizeof(*in));
    zero_staged_host_desc(&sr->geom, k, s->slots + (size_t)slot * s->slot_bytes, &in->desc);
    in->comm = comm;
    in->seq = sr->seq0 + (uint32_t)k;
    atomic_store(&in->status, ZERO_INPROGRESS);
    in->backend = zero_comm_backend_select(comm, &in->desc, NULL);
    st = zero_comm_backend_start(comm, in, now, peer_p);
    if (st != ZERO_OK) {
        if (in->backend == NULL)   /* no host backend took it: this rank's fault */
            *peer_p = comm->env.rank;
        return st;
    }
    *finished_p = in->backend->advance == NULL;
    return ZERO_OK;
}

static zero_status_t copy_chunk(zero_staged_t *s, staged_req_t *sr, const zero_coll_desc_t *d, size_t k, int in)
{
    zero_status_t status = ZERO_OK;
    unsigned slot = zero_slot_pipe_slot(&sr->pipe, k);
    unsigned char *base = s->slots + (size_t)slot * s->slot_bytes;
    int n = in ? zero_staged_pieces_in(&sr->geom, k, sr->pieces) : zero_staged_pieces_out(&sr->geom, k, sr->pieces);
    cudaStream_t stream = in ? s->copy_in : s->copy_out;
    for (int i = 0; i < n; i++) {
        const zero_staged_piece_t *p = &sr->pieces[i];
        if (in)
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)(base + p->slot_off, (const char *)d->sendbuf + p->dev_off,
                                                            p->bytes, cudaMemcpyDeviceToHost, stream),
                                 status, out, "staged: copying %zu bytes of chunk %zu in", p->bytes, k);
        else
            ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaMemcpyAsync)((char *)d->recvbuf + p->dev_off, base + p->slot_off,
                                                            p->bytes, cudaMemcpyHostToDevice, stream),
                                 status, out, "staged: copying %zu bytes of chunk %zu out", p->bytes, k);
    }
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaEventRecord)(in ? s->in_done[slot] : s->out_done[slot], stream), status, out,
                         "staged: %s", "recording an event");
out:
    return status;
}

/* 1: the event is reached, 0: not yet, -1: a CUDA error (logged, naming
 * this rank: the other ranks are told, and name it too). */
static int reached(cudaEvent_t ev, const char *what, int rank)
{
    cudaError_t err = ZERO_CUDA(cudaEventQuery)(ev);
    if (err == cudaSuccess)
        return 1;
    if (err == cudaErrorNotReady)
        return 0;
    ZERO_LOG_ERROR("staged: rank %d: %s: %s (CUDA error %d)", rank, what, ZERO_CUDA(cudaGetErrorString)(err),
                   (int)err);
    return -1;
}

/* Moves @p req's pipeline on (progress thread). */
static zero_status_t staged_advance(zero_comm_t *comm, zero_comm_request_h req, double now, int *progressed_p,
                                    int *peer_p)
{
    zero_staged_t *s = atomic_load(&comm->staged);
    staged_req_t *sr = req->backend_data;
    zero_slot_pipe_t *p = &sr->pipe;
    zero_status_t status = ZERO_OK;
    const char *name = zero_coll_name(req->desc.kind);

    *peer_p = comm->env.rank;   /* a failure here is this rank's, unless a host collective names a peer */
    ZERO_CUDA_CHECK_GOTO(ZERO_CUDA(cudaSetDevice)(s->device), status, fail, "staged: cudaSetDevice(%d)", s->device);
    if (!sr->started) {
        int at = reached(sr->start, "waiting for the caller's work before the collective", comm->env.rank);
        if (at < 0) {
            status = ZERO_ERR_CUDA;
            goto fail;
        }
        if (at == 0) {
            if (now - req->started_at > comm->cfg.timeout_s) {
                ZERO_LOG_ERROR("staged: %s #%u waited more than %.1f s for the caller's device work before it "
                               "(its wait_event)", name, req->seq, comm->cfg.timeout_s);
                status = ZERO_ERR_TIMEOUT;
                goto fail;
            }
            return ZERO_INPROGRESS;
        }
        sr->started = 1;
        sr->last_moved = now;
        zero_slot_pipe_init(p, sr->geom.chunks, s->nslots, s->ring);
        s->ring = zero_slot_pipe_next_base(p);
    }
    for (;;) {
        int moved = 0, at;
        unsigned ready;
        /* completions, in chunk order on each copy stream */
        while (p->d2h_done < p->d2h_issued &&
               (at = reached(s->in_done[zero_slot_pipe_slot(p, p->d2h_done)], "copying a chunk in",
                             comm->env.rank)) != 0) {
            if (at < 0) {
                status = ZERO_ERR_CUDA;
                goto fail;
            }
            p->d2h_done++;
            moved = 1;
        }
        while (p->h2d_done < p->h2d_issued &&
               (at = reached(s->out_done[zero_slot_pipe_slot(p, p->h2d_done)], "copying a chunk out",
                             comm->env.rank)) != 0) {
            if (at < 0) {
                status = ZERO_ERR_CUDA;
                goto fail;
            }
            p->h2d_done++;
            moved = 1;
        }
        if (sr->inner_running) {
            int prog = 0;
            zero_status_t st = sr->inner.backend->advance(comm, &sr->inner, now, &prog, peer_p);
            moved |= prog;
            if (st != ZERO_INPROGRESS) {
                sr->inner_running = 0;
                if (st != ZERO_OK) {
                    status = st;
                    goto fail;
                }
                p->work_done++;
                moved = 1;
            }
        }
        ready = zero_slot_pipe_ready(p);
        if (ready & ZERO_SLOT_COPY_IN) {
            ZERO_CHECK_GOTO(copy_chunk(s, sr, &req->desc, p->d2h_issued, 1), status, fail);
            p->d2h_issued++;
            moved = 1;
        }
        if (ready & ZERO_SLOT_WORK) {
            int finished = 0;
            *peer_p = -1;
            ZERO_CHECK_GOTO(inner_start(comm, s, sr, p->work_started, now, &finished, peer_p), status, fail);
            *peer_p = comm->env.rank;
            p->work_started++;
            if (finished)
                p->work_done++;
            else
                sr->inner_running = 1;
            moved = 1;
        }
        if (ready & ZERO_SLOT_COPY_OUT) {
            ZERO_CHECK_GOTO(copy_chunk(s, sr, &req->desc, p->h2d_issued, 0), status, fail);
            p->h2d_issued++;
            moved = 1;
        }
        if (!moved)
            break;
        *progressed_p = 1;
        sr->last_moved = now;
    }
    if (zero_slot_pipe_finished(p)) {
        release(s, sr->gen);   /* the order stream, and the caller's stream after done_event, go on */
        req_free(sr);
        req->backend_data = NULL;
        return ZERO_OK;
    }
    if (!sr->inner_running && now - sr->last_moved > comm->cfg.timeout_s) {
        ZERO_LOG_ERROR("staged: %s #%u: no copy between device and host finished within %.1f s", name, req->seq,
                       comm->cfg.timeout_s);
        status = ZERO_ERR_TIMEOUT;
        goto fail;
    }
    return ZERO_INPROGRESS;
fail:
    return status;
}

/* The request ends unfinished: its host collective stops, its gate opens. */
static void staged_abort(zero_comm_t *comm, zero_comm_request_h req)
{
    zero_staged_t *s = atomic_load(&comm->staged);
    staged_req_t *sr = req->backend_data;
    if (sr == NULL)
        return;
    if (sr->inner_running && sr->inner.backend->abort != NULL)
        sr->inner.backend->abort(comm, &sr->inner);
    sr->inner_running = 0;
    release(s, sr->gen);
    req_free(sr);
    req->backend_data = NULL;
}

/* The communicator failed: no stream may stay blocked behind a gate. */
static void staged_fail(zero_comm_t *comm)
{
    zero_staged_t *s = atomic_load(&comm->staged);
    if (s != NULL)
        release(s, atomic_load(&s->next_gen));
}

const zero_comm_backend_ops_t zero_comm_backend_staged = {
    .name = "staged",
    .enable_bit = ZERO_COMM_BACKEND_STAGED,
    .accepts = staged_accepts,
    .prepare = staged_prepare,
    .submit = staged_submit,   /* the gate, in the caller's order; the copies start on the progress thread */
    .advance = staged_advance,
    .abort = staged_abort,
    .fail = staged_fail,
    .failures_may_echo = 1,    /* a host collective's failure may be the echo of another rank's death */
    .orders_on_streams = 1,    /* waits on wait_event, records done_event (staged.h) */
};
#endif /* HAVE_CUDA */
