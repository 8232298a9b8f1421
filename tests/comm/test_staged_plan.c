/*
 * The staged backend's host-side logic (lib/comm/staged_plan.c), in every
 * build, without a GPU:
 *   - the choice between nccl and staged from the ranks' device keys (and
 *     NCCL at world size 1 where only it is allowed), and the device index;
 *   - the geometry: a whole collective run chunk by chunk through small slots
 *     (copies in, a reference host collective on the slots, copies out) gives
 *     the result of the whole collective, for every kind, world sizes 1-4,
 *     counts that do not divide, and slot sizes from one element up;
 *   - the pipeline over the ring: slots are refilled only after their copy
 *     back, collectives run one at a time in chunk order, the copy of chunk
 *     k+1 overlaps the collective of chunk k, and the ring rotates on across
 *     collectives.
 */
#include "test_main.h"
#include "comm/staged_plan.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the choice ---- */

static void key(unsigned char k[ZERO_DEVICE_KEY_BYTES], const char *text)
{
    memset(k, 0, ZERO_DEVICE_KEY_BYTES);
    if (text != NULL)
        strcpy((char *)k, text);
}

static void choose(uint32_t backends, int size, const char *const *texts, zero_device_choice_t *c)
{
    unsigned char k[4][ZERO_DEVICE_KEY_BYTES];
    const unsigned char *keys[4];
    for (int r = 0; r < size; r++) {
        key(k[r], texts[r]);
        keys[r] = k[r];
    }
    zero_device_path_choose(backends, size, keys, c);
}

static void test_choice(void)
{
    const uint32_t both = ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_STAGED | ZERO_COMM_BACKEND_UCX;
    const char *distinct[] = {"node1/0000:01:00.0", "node1/0000:02:00.0", "node2/0000:01:00.0", "node2/0000:02:00.0"};
    const char *shared[] = {"node1/0000:01:00.0", "node1/0000:02:00.0", "node1/0000:01:00.0", "node2/0000:01:00.0"};
    const char *missing[] = {"node1/0000:01:00.0", "node1/0000:02:00.0", NULL, "node2/0000:01:00.0"};
    zero_device_choice_t c;

    /* a world of one: the self backend copies by default and with staged
     * allowed; NCCL where only it is allowed (comm_backend "nccl") and the
     * rank has a device */
    choose(both, 1, distinct, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NONE);
    choose(ZERO_COMM_BACKEND_STAGED | ZERO_COMM_BACKEND_UCX, 1, distinct, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NONE);
    choose(ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_UCX, 1, distinct, &c);
    CU_ASSERT(c.path == ZERO_DEVICE_PATH_NCCL && !c.automatic);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.note, "nccl"));
    choose(ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_UCX, 1, missing + 2, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NONE);   /* no device: the self backend (host memory only) */
    choose(ZERO_COMM_BACKEND_SELF | ZERO_COMM_BACKEND_UCX, 1, distinct, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NONE);

    /* auto: one device each -> nccl, nothing to log */
    choose(both, 4, distinct, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NCCL);
    CU_ASSERT(c.shared_a == -1 && c.missing == -1 && !c.automatic && c.note[0] == '\0');

    /* auto: ranks 0 and 2 share a device -> staged, said once, naming them and the device */
    choose(both, 4, shared, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_STAGED);
    CU_ASSERT(c.shared_a == 0 && c.shared_b == 2 && c.automatic);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.note, "ranks 0 and 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.note, "node1/0000:01:00.0"));

    /* explicit staged: staged whether or not a device is shared, nothing to log */
    choose(ZERO_COMM_BACKEND_STAGED | ZERO_COMM_BACKEND_UCX, 4, distinct, &c);
    CU_ASSERT(c.path == ZERO_DEVICE_PATH_STAGED && !c.automatic);
    choose(ZERO_COMM_BACKEND_STAGED | ZERO_COMM_BACKEND_UCX, 4, shared, &c);
    CU_ASSERT(c.path == ZERO_DEVICE_PATH_STAGED && !c.automatic);

    /* explicit nccl: fine apart, refused (with the reason) when a device is shared */
    choose(ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_UCX, 4, distinct, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NCCL);
    choose(ZERO_COMM_BACKEND_NCCL | ZERO_COMM_BACKEND_UCX, 4, shared, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NONE);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.note, "ranks 0 and 2"));
    CU_ASSERT_PTR_NOT_NULL(strstr(c.note, "staged"));

    /* a rank without a device: no device path, whatever is allowed */
    choose(both, 4, missing, &c);
    CU_ASSERT(c.path == ZERO_DEVICE_PATH_NONE && c.missing == 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(c.note, "rank 2"));

    /* neither device backend allowed */
    choose(ZERO_COMM_BACKEND_UCX, 4, distinct, &c);
    CU_ASSERT_EQUAL(c.path, ZERO_DEVICE_PATH_NONE);
}

/* The device a rank uses (NCCL and staged alike). */
static void test_device_index(void)
{
    CU_ASSERT_EQUAL(zero_device_index(3, 0, 8), 3);    /* configured: as given */
    CU_ASSERT_EQUAL(zero_device_index(5, 2, 2), 5);    /* even past the count: CUDA then says why */
    CU_ASSERT_EQUAL(zero_device_index(-1, 0, 4), 0);   /* LOCAL_RANK modulo the visible devices */
    CU_ASSERT_EQUAL(zero_device_index(-1, 5, 4), 1);
    CU_ASSERT_EQUAL(zero_device_index(-1, 3, 1), 0);   /* several ranks on one GPU */
    CU_ASSERT_EQUAL(zero_device_index(-1, 3, 0), 0);   /* none visible */
}

/* ---- geometry: W simulated ranks, int32 sums (exact) ---- */

#define MAXW 4

static int32_t val(int rank, size_t i)
{
    return (int32_t)(rank * 1000003 + (int)(i * 7919 % 100003)) - 50000;
}

/* Runs the host collective of one chunk on the W slots, from their descriptors,
 * checking that each descriptor is the in-place form the host backends take. */
static int run_host(const zero_staged_geom_t *g, size_t k, unsigned char **slot, int W)
{
    zero_coll_desc_t hd[MAXW];
    size_t n;
    for (int r = 0; r < W; r++) {
        zero_staged_geom_t gr = *g;
        gr.rank = r;
        zero_staged_host_desc(&gr, k, slot[r], &hd[r]);
        if (hd[r].kind != g->kind || hd[r].mem_kind != ZERO_MEM_HOST || hd[r].dtype != g->dtype || hd[r].op != g->op)
            return 0;
    }
    n = hd[0].count;
    switch (g->kind) {
    case ZERO_COLL_ALLREDUCE: {
        for (size_t i = 0; i < n; i++) {
            int32_t s = 0;
            for (int r = 0; r < W; r++) {
                if (hd[r].sendbuf != slot[r] || hd[r].recvbuf != slot[r])
                    return 0;
                s += ((int32_t *)slot[r])[i];
            }
            for (int r = 0; r < W; r++)
                ((int32_t *)slot[r])[i] = s;
        }
        return 1;
    }
    case ZERO_COLL_REDUCE_SCATTER: {
        int32_t *out[MAXW];
        for (int r = 0; r < W; r++) {
            if (hd[r].sendbuf != slot[r] || hd[r].recvbuf != slot[r] + (size_t)r * n * 4)
                return 0;
            out[r] = malloc(n * 4 + 1);
            for (size_t i = 0; i < n; i++) {
                int32_t s = 0;
                for (int q = 0; q < W; q++)
                    s += ((int32_t *)slot[q])[(size_t)r * n + i];
                out[r][i] = s;
            }
        }
        for (int r = 0; r < W; r++) {
            memcpy(hd[r].recvbuf, out[r], n * 4);
            free(out[r]);
        }
        return 1;
    }
    case ZERO_COLL_ALLGATHER:
        for (int r = 0; r < W; r++)
            if (hd[r].recvbuf != slot[r] || hd[r].sendbuf != slot[r] + (size_t)r * n * 4)
                return 0;
        for (int r = 0; r < W; r++)
            for (int q = 0; q < W; q++)
                if (q != r)
                    memcpy(slot[r] + (size_t)q * n * 4, slot[q] + (size_t)q * n * 4, n * 4);
        return 1;
    case ZERO_COLL_ALLTOALL:   /* out of place: rank q's block for r into r's receiving half */
        for (int r = 0; r < W; r++)
            if (hd[r].sendbuf != slot[r] || hd[r].recvbuf != slot[r] + (size_t)W * n * 4)
                return 0;
        for (int r = 0; r < W; r++)
            for (int q = 0; q < W; q++)
                memcpy((unsigned char *)hd[r].recvbuf + (size_t)q * n * 4, slot[q] + (size_t)r * n * 4, n * 4);
        return 1;
    case ZERO_COLL_BROADCAST:
        for (int r = 0; r < W; r++)
            if (hd[r].sendbuf != slot[r] || hd[r].recvbuf != slot[r] || hd[r].root != g->root)
                return 0;
        for (int r = 0; r < W; r++)
            if (r != g->root)
                memcpy(slot[r], slot[g->root], n * 4);
        return 1;
    default:
        return 0;
    }
}

/* One staged collective of @p kind over W simulated ranks; 1 when every
 * rank's result equals the whole collective's and every copy stays inside
 * its buffers. */
static int staged_matches(zero_coll_kind_t kind, int W, size_t count, size_t slot_bytes, int root)
{
    size_t send_n = kind == ZERO_COLL_REDUCE_SCATTER || kind == ZERO_COLL_ALLTOALL ? count * (size_t)W : count;
    size_t recv_n = kind == ZERO_COLL_ALLGATHER || kind == ZERO_COLL_ALLTOALL ? count * (size_t)W : count;
    int32_t *send[MAXW], *recv[MAXW], *want = malloc(recv_n * 4 * (size_t)W + 4);
    unsigned char *slot[MAXW];
    zero_staged_piece_t pieces[MAXW];
    zero_staged_geom_t g[MAXW];
    zero_coll_desc_t d = {kind, NULL, NULL, count, ZERO_I32, ZERO_COMM_SUM, root, ZERO_MEM_DEVICE, 0, NULL, NULL, 0, 0};
    int ok = 1;

    for (int r = 0; r < W; r++) {
        send[r] = malloc(send_n * 4 + 4);
        recv[r] = malloc(recv_n * 4 + 4);
        slot[r] = malloc(slot_bytes);
        for (size_t i = 0; i < send_n; i++)
            send[r][i] = val(r, i);
        memset(recv[r], 0xee, recv_n * 4);
        if (zero_staged_geom_init(&g[r], &d, W, r, slot_bytes) != ZERO_OK)
            ok = 0;
    }
    /* the whole collective, for rank r at want[r * recv_n] */
    for (int r = 0; r < W; r++)
        for (size_t i = 0; i < recv_n; i++) {
            int32_t s = 0;
            switch (kind) {
            case ZERO_COLL_ALLREDUCE:
                for (int q = 0; q < W; q++)
                    s += send[q][i];
                break;
            case ZERO_COLL_REDUCE_SCATTER:
                for (int q = 0; q < W; q++)
                    s += send[q][(size_t)r * count + i];
                break;
            case ZERO_COLL_ALLGATHER:
                s = send[i / count][i % count];
                break;
            case ZERO_COLL_ALLTOALL:   /* block q of rank r's result: rank q's block r */
                s = send[i / count][(size_t)r * count + i % count];
                break;
            default:
                s = send[root][i];
                break;
            }
            want[(size_t)r * recv_n + i] = s;
        }
    if (ok && g[0].chunks != (count + g[0].chunk - 1) / g[0].chunk)
        ok = 0;
    for (size_t k = 0; ok && k < g[0].chunks; k++) {
        for (int r = 0; r < W; r++) {
            int np = zero_staged_pieces_in(&g[r], k, pieces);
            memset(slot[r], 0xcd, slot_bytes);
            for (int i = 0; i < np; i++) {
                if (pieces[i].slot_off + pieces[i].bytes > slot_bytes || pieces[i].dev_off + pieces[i].bytes > send_n * 4)
                    ok = 0;
                else
                    memcpy(slot[r] + pieces[i].slot_off, (unsigned char *)send[r] + pieces[i].dev_off, pieces[i].bytes);
            }
        }
        if (!ok || !run_host(&g[0], k, slot, W)) {
            ok = 0;
            break;
        }
        for (int r = 0; r < W; r++) {
            int np = zero_staged_pieces_out(&g[r], k, pieces);
            for (int i = 0; i < np; i++) {
                if (pieces[i].slot_off + pieces[i].bytes > slot_bytes || pieces[i].dev_off + pieces[i].bytes > recv_n * 4)
                    ok = 0;
                else
                    memcpy((unsigned char *)recv[r] + pieces[i].dev_off, slot[r] + pieces[i].slot_off, pieces[i].bytes);
            }
        }
    }
    for (int r = 0; r < W; r++) {
        if (ok && memcmp(recv[r], want + (size_t)r * recv_n, recv_n * 4) != 0)
            ok = 0;
        free(send[r]);
        free(recv[r]);
        free(slot[r]);
    }
    free(want);
    return ok;
}

static void test_geometry(void)
{
    static const zero_coll_kind_t kinds[] = {ZERO_COLL_ALLREDUCE, ZERO_COLL_REDUCE_SCATTER, ZERO_COLL_ALLGATHER,
                                             ZERO_COLL_BROADCAST, ZERO_COLL_ALLTOALL};
    static const size_t counts[] = {1, 7, 64, 1001};
    int cases = 0, good = 0;
    for (int kk = 0; kk < 5; kk++)
        for (int W = 1; W <= MAXW; W++)
            for (int c = 0; c < 4; c++)
                /* slots of 1, 3 and 16 elements per rank, and one larger than the whole
                 * (the all-to-all's slot holds each element twice: going out, coming in) */
                for (int pi = 0; pi < 4; pi++) {
                    static const size_t pers[] = {1, 3, 16, 2048};
                    size_t slot_bytes = pers[pi] * 4 * (size_t)W * (kinds[kk] == ZERO_COLL_ALLTOALL ? 2 : 1);
                    cases++;
                    if (staged_matches(kinds[kk], W, counts[c], slot_bytes, W - 1))
                        good++;
                    else
                        fprintf(stderr, "staged geometry: %s, W %d, count %zu, slot %zu bytes: wrong\n",
                                zero_coll_name(kinds[kk]), W, counts[c], slot_bytes);
                }
    CU_ASSERT_EQUAL(good, cases);
}

static void test_geometry_limits(void)
{
    zero_staged_geom_t g;
    zero_coll_desc_t d = {ZERO_COLL_REDUCE_SCATTER, NULL, NULL, 10, ZERO_FP32, ZERO_COMM_SUM, 0, ZERO_MEM_DEVICE, 0,
                          NULL, NULL, 0, 0};
    /* one element of every rank must fit a slot */
    CU_ASSERT_EQUAL(zero_staged_geom_init(&g, &d, 4, 0, 15), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_staged_geom_init(&g, &d, 4, 0, 16), ZERO_OK);
    CU_ASSERT(g.chunk == 1 && g.chunks == 10);
    /* nothing to move: no chunk */
    d.count = 0;
    CU_ASSERT(zero_staged_geom_init(&g, &d, 4, 0, 4096) == ZERO_OK && g.chunks == 0);
    /* barriers are not device collectives */
    d.kind = ZERO_COLL_BARRIER;
    CU_ASSERT_EQUAL(zero_staged_geom_init(&g, &d, 2, 0, 4096), ZERO_ERR_INVALID_ARG);
    /* an all-to-all's element of every rank goes out and comes in through the slot */
    d.kind = ZERO_COLL_ALLTOALL;
    d.count = 10;
    CU_ASSERT_EQUAL(zero_staged_geom_init(&g, &d, 4, 0, 31), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_staged_geom_init(&g, &d, 4, 0, 32), ZERO_OK);
    CU_ASSERT(g.chunk == 1 && g.chunks == 10);
}

/* ---- the pipeline ---- */

typedef struct sim {
    zero_slot_pipe_t p;
    long occupant[16];      /* the chunk in each slot, -1: free */
    int coll_running;
    int bad;                /* invariant violations */
    size_t in_before_coll_end;   /* collectives that ended with the next chunk's copy-in already issued */
    size_t colls_ended;
} sim_t;

static void sim_init(sim_t *s, size_t chunks, unsigned slots, unsigned base)
{
    memset(s, 0, sizeof(*s));
    zero_slot_pipe_init(&s->p, chunks, slots, base);
    for (int i = 0; i < 16; i++)
        s->occupant[i] = -1;
}

/* Issues everything the pipeline allows, as the backend does. */
static void sim_issue(sim_t *s)
{
    for (;;) {
        unsigned ready = zero_slot_pipe_ready(&s->p);
        zero_slot_pipe_t *p = &s->p;
        if (ready == 0)
            return;
        if (ready & ZERO_SLOT_COPY_IN) {
            unsigned slot = zero_slot_pipe_slot(p, p->d2h_issued);
            if (s->occupant[slot] != -1)
                s->bad++;   /* refilled before its copy back finished */
            s->occupant[slot] = (long)p->d2h_issued;
            p->d2h_issued++;
        }
        if (ready & ZERO_SLOT_WORK) {
            if (s->coll_running || p->work_started >= p->d2h_done)
                s->bad++;
            s->coll_running = 1;
            p->work_started++;
        }
        if (ready & ZERO_SLOT_COPY_OUT) {
            if (p->h2d_issued >= p->work_done)
                s->bad++;
            p->h2d_issued++;
        }
    }
}

/* Finishes one outstanding operation: 0 copy in, 1 the collective, 2 copy out. Returns 0 if none was outstanding. */
static int sim_finish(sim_t *s, int which)
{
    zero_slot_pipe_t *p = &s->p;
    if (which == 0 && p->d2h_done < p->d2h_issued) {
        p->d2h_done++;
        return 1;
    }
    if (which == 1 && s->coll_running) {
        s->colls_ended++;
        if (p->d2h_issued > p->work_done + 1 || p->work_done + 1 == p->chunks)
            s->in_before_coll_end++;
        s->coll_running = 0;
        p->work_done++;
        return 1;
    }
    if (which == 2 && p->h2d_done < p->h2d_issued) {
        unsigned slot = zero_slot_pipe_slot(p, p->h2d_done);
        if (s->occupant[slot] != (long)p->h2d_done)
            s->bad++;
        s->occupant[slot] = -1;
        p->h2d_done++;
        return 1;
    }
    return 0;
}

/* Runs a pipeline to the end, finishing operations in an order given by @p pick. */
static void sim_run(sim_t *s, unsigned seed, int copies_first)
{
    size_t steps = 0;
    sim_issue(s);
    while (!zero_slot_pipe_finished(&s->p) && steps++ < 100000) {
        int done = 0;
        if (copies_first) {
            /* copies are quick, collectives slow: the overlap case */
            done = sim_finish(s, 0) || sim_finish(s, 2) || sim_finish(s, 1);
        } else {
            seed = seed * 1103515245u + 12345u;
            for (int t = 0; t < 3 && !done; t++)
                done = sim_finish(s, (int)((seed >> 16) + (unsigned)t) % 3);
        }
        if (!done)
            s->bad++;   /* stuck: nothing outstanding and not finished */
        if (s->p.d2h_issued - s->p.h2d_done > s->p.slots)
            s->bad++;
        sim_issue(s);
    }
    if (!zero_slot_pipe_finished(&s->p))
        s->bad++;
}

static void test_pipeline(void)
{
    sim_t s;
    for (unsigned slots = 1; slots <= 5; slots++)
        for (size_t chunks = 0; chunks <= 13; chunks++)
            for (unsigned seed = 1; seed <= 20; seed++) {
                sim_init(&s, chunks, slots, seed % slots);
                sim_run(&s, seed, 0);
                CU_ASSERT_EQUAL(s.bad, 0);
                CU_ASSERT_EQUAL(s.colls_ended, chunks);
            }
    /* with two slots or more, the copy of chunk k+1 is under way before the collective of chunk k ends */
    for (unsigned slots = 2; slots <= 4; slots++) {
        sim_init(&s, 9, slots, 0);
        sim_run(&s, 0, 1);
        CU_ASSERT_EQUAL(s.bad, 0);
        CU_ASSERT_EQUAL(s.in_before_coll_end, 9);
    }
    /* one slot: strictly one chunk at a time */
    sim_init(&s, 5, 1, 0);
    sim_run(&s, 0, 1);
    CU_ASSERT_EQUAL(s.bad, 0);
    CU_ASSERT_EQUAL(s.in_before_coll_end, 1);   /* only the last, which has no next chunk */
}

static void test_ring_rotation(void)
{
    zero_slot_pipe_t a, b;
    zero_slot_pipe_init(&a, 6, 4, 3);
    CU_ASSERT_EQUAL(zero_slot_pipe_slot(&a, 0), 3);
    CU_ASSERT_EQUAL(zero_slot_pipe_slot(&a, 1), 0);
    CU_ASSERT_EQUAL(zero_slot_pipe_slot(&a, 5), 0);
    CU_ASSERT_EQUAL(zero_slot_pipe_next_base(&a), 1);
    zero_slot_pipe_init(&b, 2, 4, zero_slot_pipe_next_base(&a));
    CU_ASSERT_EQUAL(zero_slot_pipe_slot(&b, 0), 1);   /* the next collective goes on round the ring */
    CU_ASSERT_EQUAL(zero_slot_pipe_slot(&b, 1), 2);
    /* a fresh pipeline may copy in up to the ring's size, and nothing else yet */
    CU_ASSERT_EQUAL(zero_slot_pipe_ready(&b), ZERO_SLOT_COPY_IN);
    zero_slot_pipe_init(&b, 0, 4, 0);
    CU_ASSERT(zero_slot_pipe_finished(&b) && zero_slot_pipe_ready(&b) == 0);
}

/* The gate word: releases only move it forward, across the 32-bit wrap, and a
 * failure's release of the last number handed out lets every waiting
 * collective's stream pass. */
static void test_gate(void)
{
    uint32_t word = 0xfffffff0u;   /* close to the wrap */
    uint32_t first = word + 1;
    CU_ASSERT(zero_staged_gate_passes(word, word));
    CU_ASSERT(!zero_staged_gate_passes(word, first));
    for (uint32_t k = 0; k < 40; k++)
        CU_ASSERT(!zero_staged_gate_passes(word, first + k));   /* 40 collectives waiting, numbers wrapping */
    word = zero_staged_gate_raise(word, first);                 /* the first finished */
    CU_ASSERT(zero_staged_gate_passes(word, first) && !zero_staged_gate_passes(word, first + 1));
    CU_ASSERT_EQUAL(zero_staged_gate_raise(word, first - 5), word);   /* an old release takes nothing back */
    word = zero_staged_gate_raise(word, first + 39);            /* the communicator failed: release all */
    for (uint32_t k = 0; k < 40; k++)
        CU_ASSERT(zero_staged_gate_passes(word, first + k));
    CU_ASSERT_EQUAL(word, 0x18u);                               /* 0xfffffff0 + 40, wrapped */
    CU_ASSERT_EQUAL(zero_staged_gate_raise(word, first + 10), word);
}

int main(int argc, char **argv)
{
    CU_TestInfo tests[] = {
        {"device path choice", test_choice},
        {"device index", test_device_index},
        {"geometry: chunked equals whole", test_geometry},
        {"geometry: limits", test_geometry_limits},
        {"pipeline over the ring", test_pipeline},
        {"ring rotation", test_ring_rotation},
        {"the gate across the wrap", test_gate},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"staged plan", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    return zero_test_main(argc, argv, suites);
}
