/*
 * bench_onesided: measures, on one host, how a zero-optd-like server and a
 * client move a step's bf16 gradients and weights over the data context's
 * transports (posix,tcp; every message eager), in three ways, alternated in
 * one run (issue #16: "UCX one-sided operations on registered memory or
 * tagged messages, whichever measures faster"):
 *
 *   tag  the zero-optd data connection's way: the client copies the gradient
 *        behind a header into a slot and sends it eagerly (UCX copies it
 *        into the server's FIFO segments, the server copies it out into a
 *        posted receive); the reply carries the weights behind a header, and
 *        the client copies them out of its receive slot;
 *   put  the server allocates a region with ucp_mem_map(UCP_MEM_MAP_ALLOCATE)
 *        on that context (the posix md backs it with shared memory) and hands
 *        the client its packed rkey; the client ucp_put_nbx-es each piece's
 *        gradient into a region slot, flushes, sends a 24-byte header; the
 *        server steps straight from the slot and writes the weights into the
 *        slot; its 24-byte reply tells the client to ucp_get_nbx them into
 *        the caller's buffer;
 *   ptr  the same region reached with ucp_rkey_ptr: the client's memcpy is
 *        the put and the get.
 *
 * Both processes use the same optimizer kernel (AdamW, bf16 gradient and
 * weights, fp32 master and moments) and the same busy-progress loop, so the
 * modes differ only in how the bytes move. `local` is the same kernel in
 * this process with no transfer (the host store's step).
 *
 *   bench_onesided [--n ELEMS] [--reps R] [--rounds K] [--window W]
 *
 * The server validates every header (slot < W, count <= CHUNK, range inside
 * its state) as a real server must; the region's bytes are only numbers.
 *
 * Environment: BENCH_ONESIDED_ONLY=tag|put|ptr runs one mode (put runs only
 * so: waiting for its put and flush hung in 2 of 5 rounds, docs/optd.md);
 * BENCH_ONESIDED_KILL=1 (with ptr) SIGKILLs the server after the timed steps
 * and then writes and reads the whole region (a dead server's region must
 * not fault); BENCH_ONESIDED_NOARM=1 waits by progress and 20 us sleeps,
 * never arming the worker (a cause of the client's CPU, docs/optd.md);
 * BENCH_ONESIDED_INFO=1 prints the client endpoint's UCX lanes.
 * The server child exits after each round; its memory goes with it.
 *
 * Prints per round and mode: median ms per step, client CPU ms per step;
 * last line: result: local_ms=... tag_ms=... put_ms=... ptr_ms=... (medians
 * over all rounds).
 */
#include "offload/optd_ucx.h"
#include "optim/optim.h"
#include "util/alloc.h"
#include "util/clock.h"
#include "optd_bench.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK ((size_t)1 << 18)   /* elements per piece, as store_remote.c */
#define MAXW 32
#define TAG_HDR 1
#define TAG_REPLY 2

enum { MODE_TAG, MODE_PUT, MODE_PTR, MODES };
static const char *const mode_name[MODES] = {"tag", "put", "ptr"};

typedef struct hdr {
    uint64_t begin;   /* first element of the piece */
    uint32_t count;   /* elements; 0 ends the run */
    uint32_t slot;    /* region slot (put/ptr) */
    uint32_t step;
    uint32_t status;  /* reply: 0 ok, 1 refused */
} hdr_t;

static size_t n_elems = (size_t)1 << 22;
static int window = 4;

/* ---- small UCX helpers ---- */

/* The worker's event descriptor (one worker per process). */
static int worker_efd = -1;

/* Waits as the library's store and server do: progress while anything
 * moves; otherwise sleep on the event descriptor (at most 10 ms), or 50 us
 * when the worker is busy (a send waiting for room in the peer's FIFO). */
static void idle(ucp_worker_h w)
{
    struct pollfd pfd;
    static int no_arm = -1;
    if (ucp_worker_progress(w) != 0)
        return;
    if (no_arm < 0)
        no_arm = getenv("BENCH_ONESIDED_NOARM") != NULL;
    if (no_arm) {   /* measuring: never arm, sleep 20 us instead */
        zero_clock_sleep(20e-6);
        return;
    }
    int rc = zero_optd_worker_arm(w, worker_efd, &pfd);
    if (rc == 1)
        (void)poll(&pfd, 1, 10);
    else
        zero_clock_sleep(50e-6);
}

static int wait_req(ucp_worker_h w, void *req)
{
    ucs_status_t st;
    if (req == NULL)
        return 0;
    if (UCS_PTR_IS_ERR(req))
        return -1;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS)
        idle(w);
    ucp_request_free(req);
    return st == UCS_OK ? 0 : -1;
}

static void *tag_send(ucp_ep_h ep, const void *buf, size_t len, ucp_tag_t tag)
{
    ucp_request_param_t p;
    memset(&p, 0, sizeof(p));
    return ucp_tag_send_nbx(ep, buf, len, tag, &p);
}

static void *tag_recv(ucp_worker_h w, void *buf, size_t len, ucp_tag_t tag)
{
    ucp_request_param_t p;
    memset(&p, 0, sizeof(p));
    return ucp_tag_recv_nbx(w, buf, len, tag, (ucp_tag_t)-1, &p);
}

static int open_ctx(ucp_context_h *ctx, ucp_worker_h *w, int mode)
{
    const char *settings[ZERO_OPTD_DATA_SETTINGS];
    ucp_config_t *config;
    ucp_params_t params;
    ucp_worker_params_t wp;
    *ctx = NULL;
    *w = NULL;
    zero_optd_data_settings(settings);
    if (ucp_config_read(NULL, NULL, &config) != UCS_OK)
        return -1;
    for (int i = 0; settings[i] != NULL; i += 2)
        ucp_config_modify(config, settings[i], settings[i + 1]);
    memset(&params, 0, sizeof(params));
    params.field_mask = UCP_PARAM_FIELD_FEATURES;
    /* RMA only for put: with it UCX 1.13 adds the context's tcp devices as
     * RMA lanes, whose connections its async thread then serves under the
     * worker's lock. rkey_ptr needs no RMA lane. */
    params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP | (mode == MODE_PUT ? UCP_FEATURE_RMA : 0);
    if (ucp_init(&params, config, ctx) != UCS_OK) {
        ucp_config_release(config);
        *ctx = NULL;
        return -1;
    }
    ucp_config_release(config);
    memset(&wp, 0, sizeof(wp));
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    if (ucp_worker_create(*ctx, &wp, w) != UCS_OK) {
        *w = NULL;
        return -1;
    }
    if (ucp_worker_get_efd(*w, &worker_efd) != UCS_OK)
        worker_efd = -1;
    return 0;
}

static int write_blob(int fd, const void *p, size_t len)
{
    uint64_t l = len;
    return write(fd, &l, sizeof(l)) == (ssize_t)sizeof(l) && write(fd, p, len) == (ssize_t)len ? 0 : -1;
}

static void *read_blob(int fd, size_t *len)
{
    uint64_t l;
    void *p;
    if (read(fd, &l, sizeof(l)) != (ssize_t)sizeof(l) || l > (1u << 20) || (p = malloc(l)) == NULL)
        return NULL;
    for (size_t got = 0; got < l;) {
        ssize_t r = read(fd, (char *)p + got, l - got);
        if (r <= 0) {
            free(p);
            return NULL;
        }
        got += (size_t)r;
    }
    *len = l;
    return p;
}

static void adam_params(zero_optim_adam_params_t *a, int step)
{
    zero_optim_adam_defaults(a);
    a->lr = 1e-4f;
    a->weight_decay = 0.01f;
    a->adam_w_mode = 1;
    a->bias_correction = 1;
    a->step = step;
    a->grad_scale = 1.0f;
}

/* ---- server (child) ---- */

typedef struct state {
    float *w, *m, *v;
    zero_optim_ctx_t ctx;
} state_t;

static int step_piece(state_t *s, const hdr_t *h, const uint16_t *g16, uint16_t *w16)
{
    zero_optim_adam_params_t a;
    zero_optim_slice_t sl;
    adam_params(&a, (int)h->step);
    memset(&sl, 0, sizeof(sl));
    sl.w = s->w + h->begin;
    sl.s1 = s->m + h->begin;
    sl.s2 = s->v + h->begin;
    sl.w16 = w16;
    sl.w16_type = ZERO_OPTIM_W16_BF16;
    sl.n = h->count;
    return zero_optim_adam_step_g16(&s->ctx, &a, &sl, g16, ZERO_OPTIM_W16_BF16) == ZERO_OK ? 0 : -1;
}

/* Whether a header names a piece inside the state and a slot of the region. */
static int header_ok(const hdr_t *h)
{
    return h->count <= CHUNK && h->slot < (uint32_t)window && h->begin <= n_elems &&
           h->count <= n_elems - h->begin && h->step >= 1;
}

static int server(int mode, int to_client, int from_client)
{
    ucp_context_h ctx;
    ucp_worker_h w;
    ucp_address_t *addr;
    size_t addr_len, peer_len, slot_bytes = CHUNK * 2 * 2, rx_bytes = sizeof(hdr_t) + CHUNK * 2;
    void *peer, *rkey_buf = NULL, *rx_req[MAXW], *tx_req[MAXW];
    ucp_ep_h ep;
    ucp_ep_params_t ep_params;
    ucp_mem_h memh = NULL;
    unsigned char *region = NULL, *rx[MAXW], *tx[MAXW];
    state_t s;

    if (open_ctx(&ctx, &w, mode) != 0 || ucp_worker_get_address(w, &addr, &addr_len) != UCS_OK ||
        write_blob(to_client, addr, addr_len) != 0)
        return 1;
    if (mode != MODE_TAG) {
        ucp_mem_map_params_t mp;
        ucp_mem_attr_t ma;
        size_t rk_len;
        memset(&mp, 0, sizeof(mp));
        mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                        UCP_MEM_MAP_PARAM_FIELD_FLAGS;
        mp.address = NULL;
        mp.length = slot_bytes * (size_t)window;
        mp.flags = UCP_MEM_MAP_ALLOCATE;
        if (ucp_mem_map(ctx, &mp, &memh) != UCS_OK) {
            fprintf(stderr, "server: ucp_mem_map(ALLOCATE) failed\n");
            return 1;
        }
        ma.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
        if (ucp_mem_query(memh, &ma) != UCS_OK || ucp_rkey_pack(ctx, memh, &rkey_buf, &rk_len) != UCS_OK)
            return 1;
        region = ma.address;
        uint64_t base = (uint64_t)(uintptr_t)region;
        if (write_blob(to_client, &base, sizeof(base)) != 0 || write_blob(to_client, rkey_buf, rk_len) != 0)
            return 1;
        ucp_rkey_buffer_release(rkey_buf);
    }
    if ((peer = read_blob(from_client, &peer_len)) == NULL)
        return 1;
    memset(&ep_params, 0, sizeof(ep_params));
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep_params.address = peer;
    if (ucp_ep_create(w, &ep_params, &ep) != UCS_OK)
        return 1;

    s.w = zero_malloc(n_elems * 4);
    s.m = zero_malloc(n_elems * 4);
    s.v = zero_malloc(n_elems * 4);
    if (s.w == NULL || s.m == NULL || s.v == NULL || zero_optim_ctx_init(&s.ctx, ZERO_OPTIM_ISA_AUTO, NULL) != ZERO_OK)
        return 1;
    memset(s.w, 0, n_elems * 4);
    memset(s.m, 0, n_elems * 4);
    memset(s.v, 0, n_elems * 4);
    for (int k = 0; k < window; k++) {
        rx[k] = zero_malloc(rx_bytes);
        tx[k] = zero_malloc(rx_bytes);
        tx_req[k] = NULL;
        rx_req[k] = tag_recv(w, rx[k], mode == MODE_TAG ? rx_bytes : sizeof(hdr_t), TAG_HDR);
    }
    for (int k = 0;; k = (k + 1) % window) {
        hdr_t h, reply;
        if (wait_req(w, rx_req[k]) != 0)
            return 1;
        memcpy(&h, rx[k], sizeof(h));
        if (h.count == 0)
            break;
        wait_req(w, tx_req[k]);
        tx_req[k] = NULL;
        reply = h;
        reply.status = 0;
        if (!header_ok(&h) || (mode == MODE_TAG && h.slot != (uint32_t)k)) {
            reply.status = 1;
            tx_req[k] = tag_send(ep, &reply, sizeof(reply), TAG_REPLY);
            wait_req(w, tx_req[k]);
            tx_req[k] = NULL;
        } else if (mode == MODE_TAG) {
            step_piece(&s, &h, (const uint16_t *)(rx[k] + sizeof(hdr_t)), (uint16_t *)(tx[k] + sizeof(hdr_t)));
            memcpy(tx[k], &reply, sizeof(reply));
            tx_req[k] = tag_send(ep, tx[k], sizeof(hdr_t) + (size_t)h.count * 2, TAG_REPLY);
        } else {
            unsigned char *slot = region + slot_bytes * h.slot;
            step_piece(&s, &h, (const uint16_t *)slot, (uint16_t *)(slot + CHUNK * 2));
            memcpy(tx[k], &reply, sizeof(reply));
            tx_req[k] = tag_send(ep, tx[k], sizeof(reply), TAG_REPLY);
        }
        rx_req[k] = tag_recv(w, rx[k], mode == MODE_TAG ? rx_bytes : sizeof(hdr_t), TAG_HDR);
    }
    for (int k = 0; k < window; k++)
        wait_req(w, tx_req[k]);
    /* tell the client we are done with the region, then leave (the run's end) */
    {
        hdr_t bye;
        memset(&bye, 0, sizeof(bye));
        wait_req(w, tag_send(ep, &bye, sizeof(bye), TAG_REPLY));
    }
    for (int i = 0; i < 100; i++)
        ucp_worker_progress(w);
    return 0;
}

/* ---- client (parent) ---- */

typedef struct client {
    int mode;
    ucp_worker_h w;
    ucp_ep_h ep;
    ucp_rkey_h rkey;
    uint64_t base;
    unsigned char *rptr;   /* ptr mode: the region in this process */
    unsigned char *tx[MAXW], *rx[MAXW];
    void *tx_req[MAXW], *rx_req[MAXW];
    size_t begin[MAXW], count[MAXW];
    unsigned long pieces;   /* pieces sent on this connection: the next one's slot is pieces % window,
                             * as the server counts them (not per step: a step of 2 pieces, window 4) */
} client_t;

#define SLOT_BYTES (CHUNK * 2 * 2)

static int finish_piece(client_t *c, int k, uint16_t *weights)
{
    hdr_t h;
    if (wait_req(c->w, c->rx_req[k]) != 0)
        return -1;
    c->rx_req[k] = NULL;
    memcpy(&h, c->rx[k], sizeof(h));
    if (h.status != 0 || h.count != c->count[k])
        return -1;
    if (c->mode == MODE_TAG) {
        memcpy(weights + c->begin[k], c->rx[k] + sizeof(hdr_t), c->count[k] * 2);
    } else if (c->mode == MODE_PTR) {
        memcpy(weights + c->begin[k], c->rptr + SLOT_BYTES * (size_t)k + CHUNK * 2, c->count[k] * 2);
    } else {
        ucp_request_param_t p;
        memset(&p, 0, sizeof(p));
        if (wait_req(c->w, ucp_get_nbx(c->ep, weights + c->begin[k], c->count[k] * 2,
                                       c->base + SLOT_BYTES * (uint64_t)k + CHUNK * 2, c->rkey, &p)) != 0)
            return -1;
    }
    return 0;
}

static int start_piece(client_t *c, int k, size_t at, size_t cnt, int step, const uint16_t *grad)
{
    hdr_t h = {.begin = at, .count = (uint32_t)cnt, .slot = (uint32_t)k, .step = (uint32_t)step, .status = 0};
    size_t rx_len = c->mode == MODE_TAG ? sizeof(hdr_t) + CHUNK * 2 : sizeof(hdr_t);
    wait_req(c->w, c->tx_req[k]);
    c->tx_req[k] = NULL;
    c->begin[k] = at;
    c->count[k] = cnt;
    c->rx_req[k] = tag_recv(c->w, c->rx[k], rx_len, TAG_REPLY);
    memcpy(c->tx[k], &h, sizeof(h));
    if (c->mode == MODE_TAG) {
        memcpy(c->tx[k] + sizeof(h), grad + at, cnt * 2);
        c->tx_req[k] = tag_send(c->ep, c->tx[k], sizeof(h) + cnt * 2, TAG_HDR);
        return 0;
    }
    if (c->mode == MODE_PTR) {
        memcpy(c->rptr + SLOT_BYTES * (size_t)k, grad + at, cnt * 2);
    } else {
        ucp_request_param_t p;
        memset(&p, 0, sizeof(p));
        if (wait_req(c->w, ucp_put_nbx(c->ep, grad + at, cnt * 2, c->base + SLOT_BYTES * (uint64_t)k, c->rkey,
                                       &p)) != 0)
            return -1;
        /* the put must be complete in the region before the header says so */
        if (wait_req(c->w, ucp_ep_flush_nbx(c->ep, &p)) != 0)
            return -1;
    }
    c->tx_req[k] = tag_send(c->ep, c->tx[k], sizeof(h), TAG_HDR);
    return 0;
}

static int client_step(client_t *c, int step, const uint16_t *grad, uint16_t *weights)
{
    unsigned long p = c->pieces;
    int inflight = 0;
    for (size_t at = 0; at < n_elems; at += CHUNK, p++) {
        int k = (int)(p % (unsigned long)window);
        if (inflight == window) {
            if (finish_piece(c, k, weights) != 0)
                return -1;
            inflight--;
        }
        if (start_piece(c, k, at, n_elems - at < CHUNK ? n_elems - at : CHUNK, step, grad) != 0)
            return -1;
        inflight++;
    }
    c->pieces = p;
    for (unsigned long q = p - (unsigned long)inflight; q < p; q++)
        if (finish_piece(c, (int)(q % (unsigned long)window), weights) != 0)
            return -1;
    return 0;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec * 1e-6;
}

/* One round of @p mode: a fresh server, a warm-up step and @p reps timed steps.
 * Writes the median wall ms and the client's CPU ms per step. */
static int run_mode(int mode, int reps, const uint16_t *grad, uint16_t *weights, double *ms, double *cpu_ms)
{
    int to_client[2], from_client[2], rc = -1;
    pid_t pid;
    client_t c;
    ucp_context_h ctx = NULL;
    ucp_address_t *addr = NULL;
    size_t addr_len, len;
    void *peer = NULL, *rk = NULL, *b = NULL;
    ucp_ep_params_t ep_params;
    double t[64], cpu0;

    if (pipe(to_client) != 0 || pipe(from_client) != 0)
        return -1;
    if ((pid = fork()) == 0) {
        close(to_client[0]);
        close(from_client[1]);
        _exit(server(mode, to_client[1], from_client[0]));
    }
    close(to_client[1]);
    close(from_client[0]);
    memset(&c, 0, sizeof(c));
    c.mode = mode;
    if (open_ctx(&ctx, &c.w, mode) != 0 || (peer = read_blob(to_client[0], &len)) == NULL)
        goto out;
    memset(&ep_params, 0, sizeof(ep_params));
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep_params.address = peer;
    if (ucp_ep_create(c.w, &ep_params, &c.ep) != UCS_OK)
        goto out;
    if (getenv("BENCH_ONESIDED_INFO") != NULL)
        ucp_ep_print_info(c.ep, stdout);
    if (mode != MODE_TAG) {
        if ((b = read_blob(to_client[0], &len)) == NULL || len != 8 || (rk = read_blob(to_client[0], &len)) == NULL)
            goto out;
        memcpy(&c.base, b, 8);
        if (ucp_ep_rkey_unpack(c.ep, rk, &c.rkey) != UCS_OK) {
            fprintf(stderr, "client: ucp_ep_rkey_unpack failed\n");
            goto out;
        }
        if (mode == MODE_PTR) {
            void *lp;
            if (ucp_rkey_ptr(c.rkey, c.base, &lp) != UCS_OK) {
                fprintf(stderr, "client: ucp_rkey_ptr failed\n");
                goto out;
            }
            c.rptr = lp;
        }
    }
    if (ucp_worker_get_address(c.w, &addr, &addr_len) != UCS_OK || write_blob(from_client[1], addr, addr_len) != 0)
        goto out;
    for (int k = 0; k < window; k++) {
        c.tx[k] = zero_malloc(sizeof(hdr_t) + CHUNK * 2);
        c.rx[k] = zero_malloc(sizeof(hdr_t) + CHUNK * 2);
    }
    if (client_step(&c, 1, grad, weights) != 0)
        goto out;
    cpu0 = cpu_seconds();
    for (int r = 0; r < reps; r++) {
        double t0 = zero_clock_now();
        if (client_step(&c, 2 + r, grad, weights) != 0)
            goto out;
        t[r] = zero_clock_now() - t0;
    }
    *cpu_ms = (cpu_seconds() - cpu0) / reps * 1e3;
    if (mode == MODE_PTR && getenv("BENCH_ONESIDED_KILL") != NULL) {
        /* The server dies: the region stays mapped here (the posix md's
         * segment is a file the mapping keeps alive), so the client's copies
         * cannot fault; only the missing replies tell it the server is gone. */
        size_t bytes = SLOT_BYTES * (size_t)window;
        unsigned sum = 0;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        pid = -1;
        memset(c.rptr, 0x5a, bytes);
        for (size_t i = 0; i < bytes; i += 4096)
            sum += c.rptr[i];
        printf("[server killed: %zu bytes of its region written and read here, sum %u; mapped as: ", bytes, sum);
        {
            char line[512];
            FILE *f = fopen("/proc/self/maps", "r");
            unsigned long lo, hi;
            while (f != NULL && fgets(line, sizeof(line), f) != NULL)
                if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)c.rptr >= lo && (uintptr_t)c.rptr < hi)
                    printf("%.*s", (int)strcspn(line, "\n"), line);
            if (f != NULL)
                fclose(f);
        }
        printf("] ");
    }
    *ms = optd_bench_median(t, reps) * 1e3;
    if (pid > 0) {
        hdr_t end;
        memset(&end, 0, sizeof(end));
        wait_req(c.w, tag_send(c.ep, &end, sizeof(end), TAG_HDR));
        wait_req(c.w, tag_recv(c.w, &end, sizeof(end), TAG_REPLY));
    }
    rc = 0;
out:
    if (c.rkey != NULL)
        ucp_rkey_destroy(c.rkey);
    for (int k = 0; k < window; k++) {
        /* UCX completes and releases a freed send; a receive is cancelled first */
        if (c.tx_req[k] != NULL && !UCS_PTR_IS_ERR(c.tx_req[k]))
            ucp_request_free(c.tx_req[k]);
        if (c.rx_req[k] != NULL && !UCS_PTR_IS_ERR(c.rx_req[k])) {
            ucp_request_cancel(c.w, c.rx_req[k]);
            ucp_request_free(c.rx_req[k]);
        }
    }
    if (c.ep != NULL) {
        ucp_request_param_t p;
        memset(&p, 0, sizeof(p));
        p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        p.flags = UCP_EP_CLOSE_FLAG_FORCE;
        (void)wait_req(c.w, ucp_ep_close_nbx(c.ep, &p));
    }
    if (addr != NULL)
        ucp_worker_release_address(c.w, addr);
    if (c.w != NULL)
        ucp_worker_destroy(c.w);
    if (ctx != NULL)
        ucp_cleanup(ctx);
    for (int k = 0; k < window; k++) {
        zero_free(c.tx[k]);
        zero_free(c.rx[k]);
    }
    if (rc != 0 && pid > 0)
        kill(pid, SIGKILL);
    if (pid > 0)
        waitpid(pid, NULL, 0);
    close(to_client[0]);
    close(from_client[1]);
    free(peer);
    free(rk);
    free(b);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = 9, rounds = 3;
    const char *only = getenv("BENCH_ONESIDED_ONLY");   /* one mode, for profiling */
    double ms[MODES][16], cpu[MODES][16], loc[16];
    uint16_t *grad, *weights;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n_elems = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--reps") == 0)
            reps = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--window") == 0)
            window = atoi(argv[i + 1]);
    }
    if (n_elems == 0 || reps < 1 || reps > 64 || rounds < 1 || rounds > 16 || window < 1 || window > MAXW) {
        fprintf(stderr, "usage: bench_onesided [--n ELEMS] [--reps R<=64] [--rounds K<=16] [--window W<=32]\n");
        return 2;
    }
    grad = zero_malloc(n_elems * 2);
    weights = zero_malloc(n_elems * 2);
    optd_bench_fill_grad(grad, n_elems);
    memset(weights, 0, n_elems * 2);
    printf("%zu elements in pieces of %zu, window %d, %d reps per round, AdamW bf16 (medians)\n", n_elems,
           (size_t)CHUNK, window, reps);
    for (int r = 0; r < rounds; r++) {
        /* local: the same kernel in this process, no transfer */
        state_t s;
        double t[64];
        s.w = zero_malloc(n_elems * 4);
        s.m = zero_malloc(n_elems * 4);
        s.v = zero_malloc(n_elems * 4);
        memset(s.w, 0, n_elems * 4);
        memset(s.m, 0, n_elems * 4);
        memset(s.v, 0, n_elems * 4);
        zero_optim_ctx_init(&s.ctx, ZERO_OPTIM_ISA_AUTO, NULL);
        for (int k = 0; k <= reps; k++) {
            double t0 = zero_clock_now();
            for (size_t at = 0; at < n_elems; at += CHUNK) {
                hdr_t h = {.begin = at, .count = (uint32_t)(n_elems - at < CHUNK ? n_elems - at : CHUNK),
                           .step = (uint32_t)(1 + k)};
                step_piece(&s, &h, grad + at, weights + at);
            }
            if (k > 0)
                t[k - 1] = zero_clock_now() - t0;
        }
        loc[r] = optd_bench_median(t, reps) * 1e3;
        zero_free(s.w);
        zero_free(s.m);
        zero_free(s.v);
        printf("round %d: local %.2f ms", r, loc[r]);
        for (int m = 0; m < MODES; m++) {
            if (only != NULL ? strcmp(only, mode_name[m]) != 0 : m == MODE_PUT) {
                ms[m][r] = cpu[m][r] = 0.0;
                continue;
            }
            if (run_mode(m, reps, grad, weights, &ms[m][r], &cpu[m][r]) != 0) {
                printf("\n%s failed\n", mode_name[m]);
                return 1;
            }
            printf("  %s %.2f ms (client CPU %.2f)", mode_name[m], ms[m][r], cpu[m][r]);
        }
        printf("\n");
        fflush(stdout);
    }
    printf("result: local_ms=%.3f", optd_bench_median(loc, rounds));
    for (int m = 0; m < MODES; m++)
        printf(" %s_ms=%.3f %s_client_cpu_ms=%.3f", mode_name[m], optd_bench_median(ms[m], rounds), mode_name[m],
               optd_bench_median(cpu[m], rounds));
    printf("\n");
    zero_free(grad);
    zero_free(weights);
    return 0;
}
