/* The ring of host transfer slots (util/slot_ring.h): the cut into pinned
 * pieces, the fallback to pageable slots with one warning, and the pipeline's
 * slot rotation, on the CPU (no device needed: the ring itself makes no CUDA
 * call when no device is present, it page-locks with mlock). */
#include "test_main.h"
#include "util/alloc.h"
#include "util/slot_ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- stderr capture, to count the warnings a call logs ---- */

static int saved_fd = -1;
static FILE *captured;

static void capture_begin(void)
{
    fflush(stderr);
    captured = tmpfile();
    CU_ASSERT_FATAL(captured != NULL);
    saved_fd = dup(STDERR_FILENO);
    dup2(fileno(captured), STDERR_FILENO);
}

/* Ends the capture; how many lines contained @p needle. */
static int capture_end(const char *needle)
{
    char line[1024];
    int hits = 0;
    fflush(stderr);
    dup2(saved_fd, STDERR_FILENO);
    close(saved_fd);
    rewind(captured);
    while (fgets(line, sizeof(line), captured) != NULL) {
        fputs(line, stderr);   /* still shown in the test's log */
        hits += strstr(line, needle) != NULL;
    }
    fclose(captured);
    return hits;
}

static uint64_t pinned_live(void)
{
    zero_mem_stats_t st;
    zero_mem_get_stats(&st);
    return st.live_bytes[ZERO_MEM_PINNED];
}

/* Every slot is its own 64-byte-aligned, writable memory, none overlapping. */
static void check_slots(const zero_slot_ring_t *ring)
{
    unsigned n = zero_slot_ring_slots(ring);
    size_t bytes = zero_slot_ring_slot_bytes(ring);
    for (unsigned i = 0; i < n; i++) {
        unsigned char *a = zero_slot_ring_slot(ring, i);
        CU_ASSERT_EQUAL((uintptr_t)a % 64, 0);
        memset(a, (int)(i + 1), bytes);
    }
    for (unsigned i = 0; i < n; i++) {
        unsigned char *a = zero_slot_ring_slot(ring, i);
        CU_ASSERT_EQUAL(a[0], (unsigned char)(i + 1));
        CU_ASSERT_EQUAL(a[bytes - 1], (unsigned char)(i + 1));
    }
}

static void test_pieces_and_limit(void)
{
    zero_slot_ring_params_t p;
    zero_slot_ring_t *ring = NULL;
    uint64_t pinned_before = pinned_live();
    int warnings;

    memset(&p, 0, sizeof(p));
    p.slots = 5;
    p.slot_bytes = 1000;    /* 1024 with the alignment: 2 slots a piece of 2048 */
    p.pin = 1;
    p.piece_max = 2048;
    p.pin_limit = 2048;     /* the first piece pins; the second would pass the limit */
    p.what = "test slots";
    capture_begin();
    CU_ASSERT_EQUAL_FATAL(zero_slot_ring_create(&p, &ring), ZERO_OK);
    warnings = capture_end("test slots: cannot pin");
    CU_ASSERT_EQUAL(zero_slot_ring_pieces(ring), 3);
    CU_ASSERT_EQUAL(zero_slot_ring_slots(ring), 5);
    CU_ASSERT_EQUAL(zero_slot_ring_pinned_slots(ring), 2);
    CU_ASSERT_TRUE(zero_slot_ring_slot_pinned(ring, 0) && zero_slot_ring_slot_pinned(ring, 1));
    CU_ASSERT_FALSE(zero_slot_ring_slot_pinned(ring, 2) || zero_slot_ring_slot_pinned(ring, 4));
    CU_ASSERT_EQUAL(warnings, 1);   /* one warning, not one per piece */
    CU_ASSERT_EQUAL(pinned_live() - pinned_before, 2048);
    check_slots(ring);
    zero_slot_ring_destroy(ring);
    CU_ASSERT_EQUAL(pinned_live(), pinned_before);

    /* pin 0: pageable without a try, and without a warning */
    p.pin = 0;
    p.pin_limit = 0;
    capture_begin();
    CU_ASSERT_EQUAL_FATAL(zero_slot_ring_create(&p, &ring), ZERO_OK);
    CU_ASSERT_EQUAL(capture_end("cannot pin"), 0);
    CU_ASSERT_EQUAL(zero_slot_ring_pinned_slots(ring), 0);
    check_slots(ring);
    zero_slot_ring_destroy(ring);

    /* a slot larger than a piece, no slots: refused */
    p.slot_bytes = 4096;
    CU_ASSERT_EQUAL(zero_slot_ring_create(&p, &ring), ZERO_ERR_INVALID_ARG);
    p.slot_bytes = 64;
    p.slots = 0;
    CU_ASSERT_EQUAL(zero_slot_ring_create(&p, &ring), ZERO_ERR_INVALID_ARG);
}

/* The locked-memory limit refusing the pin (as `ulimit -l` does): one
 * warning, pageable slots, the ring works. */
static void test_mlock_refused(void)
{
    struct rlimit old, low;
    zero_slot_ring_params_t p;
    zero_slot_ring_t *ring = NULL;
    int warnings;

    CU_ASSERT_EQUAL_FATAL(getrlimit(RLIMIT_MEMLOCK, &old), 0);
    low = old;
    low.rlim_cur = 64 * 1024;
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < low.rlim_cur)
        low.rlim_cur = old.rlim_cur;
    CU_ASSERT_EQUAL_FATAL(setrlimit(RLIMIT_MEMLOCK, &low), 0);
    memset(&p, 0, sizeof(p));
    p.slots = 4;
    p.slot_bytes = 256 * 1024;   /* each piece (one slot at this piece_max) over the limit */
    p.pin = 1;
    p.piece_max = 256 * 1024;
    p.what = "mlock slots";
    capture_begin();
    CU_ASSERT_EQUAL(zero_slot_ring_create(&p, &ring), ZERO_OK);
    warnings = capture_end("mlock slots: cannot pin");
    setrlimit(RLIMIT_MEMLOCK, &old);
    if (ring == NULL)
        return;
    if (zero_slot_ring_pinned_slots(ring) > 0 && geteuid() == 0) {
        /* CAP_IPC_LOCK ignores the limit: nothing to refuse here */
        fprintf(stderr, "note: running as root, mlock ignores RLIMIT_MEMLOCK; the refusal is not exercised\n");
    } else {
        CU_ASSERT_EQUAL(zero_slot_ring_pinned_slots(ring), 0);
        CU_ASSERT_EQUAL(warnings, 1);
    }
    check_slots(ring);
    zero_slot_ring_destroy(ring);
}

/* The pipeline: chunk k in slot (base + k) % slots; a slot refilled only after
 * its copy back; one chunk in the host work at a time; the ring rotates on
 * across runs. Driven to the end in the order a busy offload thread would. */
static void test_pipe(void)
{
    zero_slot_pipe_t p;
    unsigned base = 3, order_ok = 1, max_in_flight = 0;
    for (int run = 0; run < 3; run++) {
        size_t chunks = 7 + (size_t)run;
        zero_slot_pipe_init(&p, chunks, 4, base);
        CU_ASSERT_EQUAL(zero_slot_pipe_slot(&p, 0), base % 4);
        CU_ASSERT_EQUAL(zero_slot_pipe_ready(&p), ZERO_SLOT_COPY_IN);
        while (!zero_slot_pipe_finished(&p)) {
            unsigned ready = zero_slot_pipe_ready(&p);
            unsigned in_flight;
            CU_ASSERT_FATAL(ready != 0 || p.d2h_done < p.d2h_issued || p.h2d_done < p.h2d_issued);
            if (ready & ZERO_SLOT_COPY_IN)
                p.d2h_issued++;
            else if (p.d2h_done < p.d2h_issued)
                p.d2h_done++;
            else if (ready & ZERO_SLOT_WORK) {
                CU_ASSERT_EQUAL(p.work_started, p.work_done);
                p.work_started++;
                p.work_done++;
            } else if (ready & ZERO_SLOT_COPY_OUT)
                p.h2d_issued++;
            else
                p.h2d_done++;
            in_flight = (unsigned)(p.d2h_issued - p.h2d_done);
            if (in_flight > max_in_flight)
                max_in_flight = in_flight;
            order_ok &= p.h2d_done <= p.h2d_issued && p.h2d_issued <= p.work_done && p.work_done <= p.d2h_done &&
                        p.d2h_done <= p.d2h_issued;
        }
        CU_ASSERT_EQUAL(p.h2d_done, chunks);
        CU_ASSERT_EQUAL(zero_slot_pipe_ready(&p), 0);
        base = zero_slot_pipe_next_base(&p);
        CU_ASSERT_EQUAL(base, (zero_slot_pipe_slot(&p, chunks - 1) + 1) % 4);
    }
    CU_ASSERT_TRUE(order_ok);
    CU_ASSERT_EQUAL(max_in_flight, 4);   /* the whole ring used, never more */

    /* a full ring: no fifth copy in until chunk 0 is back on the device */
    zero_slot_pipe_init(&p, 6, 4, 0);
    p.d2h_issued = p.d2h_done = 4;
    p.work_started = p.work_done = 4;
    p.h2d_issued = 4;
    CU_ASSERT_FALSE(zero_slot_pipe_ready(&p) & ZERO_SLOT_COPY_IN);
    p.h2d_done = 1;
    CU_ASSERT_TRUE(zero_slot_pipe_ready(&p) & ZERO_SLOT_COPY_IN);
    CU_ASSERT_EQUAL(zero_slot_pipe_slot(&p, 4), 0);
}

/* A driver that issues and works whatever is ready and, only when nothing
 * is, completes the one copy zero_slot_pipe_wait_for names (as CPU
 * offload's thread sleeps on that copy's event): every run finishes, each
 * wait is for a copy in flight and lets something start or finish, and the
 * host work never waits on a copy back while its own gradients are in
 * flight. */
static void test_pipe_waits(void)
{
    zero_slot_pipe_t p;
    for (unsigned slots = 1; slots <= 4; slots++)
        for (size_t chunks = 0; chunks <= 9; chunks++) {
            size_t steps = 0, waits = 0;
            int stuck = 0, bad_choice = 0;
            zero_slot_pipe_init(&p, chunks, slots, 1);
            while (!zero_slot_pipe_finished(&p) && steps++ < 1000) {
                unsigned ready = zero_slot_pipe_ready(&p), which;
                if (ready & ZERO_SLOT_COPY_IN) {
                    p.d2h_issued++;
                    continue;
                }
                if (ready & ZERO_SLOT_WORK) {
                    p.work_started++;
                    p.work_done++;
                    continue;
                }
                if (ready & ZERO_SLOT_COPY_OUT) {
                    p.h2d_issued++;
                    continue;
                }
                which = zero_slot_pipe_wait_for(&p);
                waits++;
                if (which == ZERO_SLOT_COPY_IN && p.d2h_done < p.d2h_issued) {
                    bad_choice |= p.work_started != p.d2h_done && p.h2d_done < p.h2d_issued;
                    p.d2h_done++;
                } else if (which == ZERO_SLOT_COPY_OUT && p.h2d_done < p.h2d_issued) {
                    bad_choice |= p.d2h_done < p.d2h_issued && p.work_started == p.d2h_done;
                    p.h2d_done++;
                } else {
                    stuck = 1;   /* nothing ready and no copy named: a waiter would sleep forever */
                    break;
                }
            }
            CU_ASSERT_FALSE(stuck);
            CU_ASSERT_FALSE(bad_choice);
            CU_ASSERT(zero_slot_pipe_finished(&p));
            CU_ASSERT_EQUAL(zero_slot_pipe_wait_for(&p), 0);   /* nothing in flight at the end */
            CU_ASSERT(chunks == 0 || waits >= 2 * chunks);      /* every copy was waited for once */
        }
}

static CU_TestInfo slot_ring_tests[] = {
    {"pinned pieces, the pin limit, one warning", test_pieces_and_limit},
    {"mlock refused by RLIMIT_MEMLOCK: pageable slots", test_mlock_refused},
    {"pipeline over the ring", test_pipe},
    {"pipeline: the copy to sleep on when nothing is ready", test_pipe_waits},
    CU_TEST_INFO_NULL,
};

static CU_SuiteInfo suites[] = {
    {"slot_ring", NULL, NULL, NULL, NULL, slot_ring_tests},
    CU_SUITE_INFO_NULL,
};

int main(int argc, char **argv)
{
    return zero_test_main(argc, argv, suites);
}
