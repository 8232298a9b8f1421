/*
 * bench/host/host_probe: the state of the host's cores, printed by
 * bench/lib.sh's bench_host_state before each measured phase of a benchmark.
 *
 *   host_probe
 *
 * prints one line, e.g.
 *   host: cross-core copy 46.2 GB/s, same-core 32.1 GB/s, core round trip 90 ns (cpu0 reads what cpu1 wrote)
 *
 * Why: on the 2-vCPU development VM the hypervisor moves the vCPUs, and for
 * stretches of seconds to minutes a copy of data that the other core has just
 * written runs at about half speed (~22 against ~46 GB/s). Everything that
 * hands buffers between threads or processes on different cores (UCX's
 * shared-memory FIFO, zero-optd's loop and workers, the ranks of a
 * multi-process job) then slows down with it while single-threaded work does
 * not, so a benchmark's ratio swings with the host (docs/benchmarks.md,
 * "The host's state"). The probe measures the three things that tell the
 * states apart, in well under a second:
 *
 *  cross-core copy  a thread pinned on the second allowed CPU memsets 512 KiB
 *                   (the size of zero-optd's messages), then this thread,
 *                   pinned on the first, memcpys it out; the median of the
 *                   rounds' copy times. This is the figure that follows the
 *                   slow state.
 *  same-core        the same copy with the memset done by the reading thread
 *                   itself (the buffer is in its own cache): the reference.
 *  core round trip  a cache line bounced between the two threads, the median
 *                   over batches. It changes at other times than the copy
 *                   rate (seen at 90 and at 340-400 ns), so it is reported
 *                   beside it, not instead of it.
 *
 * With fewer than two allowed CPUs, or where a thread cannot be pinned or a
 * measurement still waits for its partner after a second (a starved core),
 * the figure is "n/a", so the probe ends within about 2 s whatever the load.
 * Exits 0 whatever it measures (the benchmark goes on either way); a
 * failure to allocate is exit 1.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COPY_BYTES ((size_t)512 * 1024)
#define COPY_ROUNDS 1000
#define COPY_WARM 20
#define PING_BATCHES 41
#define PING_PER_BATCH 200
/* Where the cores are busy with other work the hand-offs wait for the
 * scheduler: each measurement stops after MEASURE_BUDGET_S with the rounds it
 * has (at least MIN_SAMPLES), so the probe stays well under a second; one
 * still waiting for its partner after MEASURE_LIMIT_S gives up (n/a). The
 * limit is checked in the waits: MIN_SAMPLES batches of round trips, each
 * turn a scheduler slice on a starved core, would take seconds. */
#define MEASURE_BUDGET_S 0.25
#define MEASURE_LIMIT_S 1.0
#define MIN_SAMPLES 10

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0 ? 0 : -1;
}

/* Both measurements hand a counter back and forth: the partner thread acts on
 * odd values, this thread on even ones. `stop` ends the partner when this
 * thread gives up (deadline) or is done. */
typedef struct {
    int cpu;
    unsigned char *buf;
    _Atomic long turn __attribute__((aligned(64)));
    _Atomic int stop __attribute__((aligned(64)));
    _Atomic int pinned;
    long rounds;
    int copy; /* 1: memset buf on each turn; 0: only bounce the counter */
} partner_t;

static void *partner_main(void *arg)
{
    partner_t *p = arg;
    atomic_store(&p->pinned, pin(p->cpu) == 0 ? 1 : -1);
    for (long i = 0; i < p->rounds; i++) {
        while (atomic_load_explicit(&p->turn, memory_order_acquire) != 2 * i + 1)
            if (atomic_load_explicit(&p->stop, memory_order_relaxed))
                return NULL;
        if (p->copy)
            memset(p->buf, (int)(i & 0xff), COPY_BYTES);
        atomic_store_explicit(&p->turn, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

/* Waits until p->turn == want; -1 once the clock passes @p give_up (looked
 * at every 4096 spins only, so a quick turn is not slowed by the clock). */
static int wait_turn(partner_t *p, long want, double give_up)
{
    for (unsigned spins = 1;; spins++) {
        if (atomic_load_explicit(&p->turn, memory_order_acquire) == want)
            return 0;
        if ((spins & 4095) == 0 && now_s() > give_up)
            return -1;
    }
}

/* Runs the partner on cpu `other` and this thread on `self`; fills *out with
 * the copy rate in GB/s (copy != 0) or the round trip in ns. Returns -1
 * where the figure is not available. The partner stops at `stop` when this
 * thread ends early. */
static int measure(int self, int other, int copy, unsigned char *buf, unsigned char *dst, double *out)
{
    static double samples[COPY_ROUNDS > PING_BATCHES ? COPY_ROUNDS : PING_BATCHES];
    partner_t *p = aligned_alloc(64, sizeof(*p));
    pthread_t thread;
    int rc = -1, n = 0;
    if (p == NULL)
        return -1;
    memset(p, 0, sizeof(*p));
    p->cpu = other;
    p->buf = buf;
    p->copy = copy;
    p->rounds = copy ? COPY_ROUNDS + COPY_WARM : (long)PING_BATCHES * PING_PER_BATCH;
    if (pin(self) != 0 || pthread_create(&thread, NULL, partner_main, p) != 0) {
        free(p);
        return -1;
    }
    double start = now_s(), give_up = start + MEASURE_LIMIT_S;
    if (copy) {
        for (long i = 0; i < COPY_ROUNDS + COPY_WARM && (n < MIN_SAMPLES || now_s() - start < MEASURE_BUDGET_S); i++) {
            atomic_store_explicit(&p->turn, 2 * i + 1, memory_order_release);
            if (wait_turn(p, 2 * i + 2, give_up) != 0)
                goto out;
            double t0 = now_s();
            memcpy(dst, buf, COPY_BYTES);
            double t1 = now_s();
            if (i >= COPY_WARM)
                samples[n++] = t1 - t0;
        }
        *out = (double)COPY_BYTES / median(samples, n) / 1e9;
    } else {
        for (int b = 0; b < PING_BATCHES && (n < MIN_SAMPLES || now_s() - start < MEASURE_BUDGET_S); b++) {
            double t0 = now_s();
            for (long i = (long)b * PING_PER_BATCH; i < (long)(b + 1) * PING_PER_BATCH; i++) {
                atomic_store_explicit(&p->turn, 2 * i + 1, memory_order_release);
                if (wait_turn(p, 2 * i + 2, give_up) != 0)
                    goto out;
            }
            samples[n++] = (now_s() - t0) / PING_PER_BATCH;
        }
        *out = median(samples, n) * 1e9;
    }
    rc = atomic_load(&p->pinned) == 1 ? 0 : -1; /* an unpinned partner may have shared our core */
out:
    atomic_store(&p->stop, 1);
    pthread_join(thread, NULL);
    free(p);
    return rc;
}

/* The copy with writer and reader on one core (one thread). */
static int same_core(int self, unsigned char *buf, unsigned char *dst, double *gbs)
{
    static double samples[COPY_ROUNDS];
    if (pin(self) != 0)
        return -1;
    for (int i = 0; i < COPY_ROUNDS + COPY_WARM; i++) {
        memset(buf, i & 0xff, COPY_BYTES);
        double t0 = now_s();
        memcpy(dst, buf, COPY_BYTES);
        double t1 = now_s();
        if (i >= COPY_WARM)
            samples[i - COPY_WARM] = t1 - t0;
    }
    *gbs = (double)COPY_BYTES / median(samples, COPY_ROUNDS) / 1e9;
    return 0;
}

static void figure(char *s, size_t size, int ok, int decimals, double v, const char *unit)
{
    if (ok)
        snprintf(s, size, "%.*f %s", decimals, v, unit);
    else
        snprintf(s, size, "n/a");
}

int main(void)
{
    cpu_set_t allowed;
    int cpus[2], ncpu = 0;
    unsigned char *buf = aligned_alloc(4096, COPY_BYTES), *dst = aligned_alloc(4096, COPY_BYTES);
    if (buf == NULL || dst == NULL) {
        fprintf(stderr, "host_probe: cannot allocate 2 x %zu bytes\n", COPY_BYTES);
        return 1;
    }
    memset(buf, 1, COPY_BYTES);
    memset(dst, 1, COPY_BYTES);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0)
        for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
            if (CPU_ISSET(c, &allowed))
                cpus[ncpu++] = c;
    double cross = 0, same = 0, rtt = 0;
    int cross_ok = 0, same_ok = 0, rtt_ok = 0;
    if (ncpu >= 1)
        same_ok = same_core(cpus[0], buf, dst, &same) == 0;
    if (ncpu >= 2) {
        cross_ok = measure(cpus[0], cpus[1], 1, buf, dst, &cross) == 0;
        rtt_ok = measure(cpus[0], cpus[1], 0, buf, dst, &rtt) == 0;
    }
    char a[32], b[32], c[32], where[64];
    figure(a, sizeof(a), cross_ok, 1, cross, "GB/s");
    figure(b, sizeof(b), same_ok, 1, same, "GB/s");
    figure(c, sizeof(c), rtt_ok, 0, rtt, "ns");
    if (ncpu >= 2)
        snprintf(where, sizeof(where), "cpu%d reads what cpu%d wrote", cpus[0], cpus[1]);
    else
        snprintf(where, sizeof(where), ncpu == 1 ? "one CPU allowed" : "the allowed CPUs unknown");
    printf("host: cross-core copy %s, same-core %s, core round trip %s (%s)\n", a, b, c, where);
    free(buf);
    free(dst);
    return 0;
}
