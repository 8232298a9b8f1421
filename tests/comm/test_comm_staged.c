/*
 * Device-memory collectives through the staged backend (pinned host slots and
 * the host collectives), through zero-launch. Exits 77 (meson: skipped) where
 * the CUDA runtime reports no device.
 *
 * On a machine with one GPU every rank of a job shares it, so the
 * communicator chooses the staged backend by itself (COMM_RANK_EXPECT_PATH
 * checks that it did); with more GPUs the jobs ask for it explicitly
 * (COMM_RANK_BACKENDS=staged). Each job runs comm_rank's device mode (every
 * collective, dtype and op against a host reference, the all-to-all of
 * device qgZ included: its slot holds each chunk's blocks going out and
 * coming in):
 *   - world sizes 2, 3 and 4, default slots (4 MiB, a ring of 4);
 *   - world size 3 with 64 KiB slots in a ring of 2: the largest collectives
 *     go through dozens of chunks, so the ring wraps many times;
 *   - world size 2 with pageable slots (ZERO_COMM_STAGED_PIN=0): the
 *     fallback taken where pinning fails;
 *   - comm_rank device-split at world sizes 4 and 3: communicators split in
 *     pairs (hpZ's groups; at 3 the last rank alone) carry device memory
 *     through the staged backend too, and the parent still does beside them;
 * then a killed rank: at world size 2, rank 1 dies (SIGKILL) a moment into a
 * 64 MiB collective; rank 0's ordered collective must fail with the rank
 * named within the bound (ZERO_COMM_TIMEOUT=10, plus slack), and its CUDA
 * stream, waiting on the collective's done_event, must not hang;
 * then a real CUDA fault on one rank (comm_rank device-fault: rank 1's own
 * kernel writes through an unmapped address before an ordered collective
 * that waits on it), once when the fault has already happened as rank 1
 * calls (its submit fails on its own thread) and once while the collective
 * waits for it (the progress thread meets it): every rank's collective must
 * fail within the same bound, every rank's log must name rank 1, and rank
 * 1's the CUDA cause (an illegal memory access).
 * Argument: all (default), collectives (the jobs before the killed rank) or
 * failures (the killed rank and the faults), so that scripts/gpu-check
 * reports them as separate steps.
 */
#include <cuda_runtime_api.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JOB_TIMEOUT_S 120
#define KILL_BOUND_S 10

/* Runs the rank program on @p ranks ranks with @p mode (and @p arg); its wait
 * status, or -1 when it ran past @p timeout_s seconds (then it is stopped). */
static int launch(int ranks, const char *mode, const char *arg, const char *arg2, int timeout_s)
{
    char n[16];
    int st = 0;
    time_t start = time(NULL);
    pid_t pid;

    snprintf(n, sizeof(n), "%d", ranks);
    pid = fork();
    if (pid == 0) {
        execl(ZERO_TEST_LAUNCHER, ZERO_TEST_LAUNCHER, "--num_gpus", n, "--master_port", "0", ZERO_TEST_RANK_PROGRAM,
              mode, arg, arg2, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -2;
    for (;;) {
        pid_t got = waitpid(pid, &st, WNOHANG);
        if (got == pid)
            return st;
        if (got < 0)
            return -2;
        if (time(NULL) - start > timeout_s) {
            kill(pid, SIGTERM);   /* zero-launch stops its ranks */
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(100 * 1000);
    }
}

static int passed(const char *what, int st)
{
    int ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (st == -1)
        printf("%s: FAILED (still running after %d s)\n", what, JOB_TIMEOUT_S);
    else
        printf("%s: %s\n", what, ok ? "ok" : "FAILED");
    fflush(stdout);
    return ok;
}

/* The killed-rank job; 1 when rank 0 failed as it must. */
static int killed_rank(void)
{
    char dir[] = "/tmp/zero-staged-kill-XXXXXX", path[300], line[256] = "";
    int st, rank = -1, status = 0, named = 0, ok;
    double elapsed = 1e9;
    FILE *f;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 0;
    }
    setenv("ZERO_TEST_DIR", dir, 1);
    setenv("ZERO_COMM_TIMEOUT", "10", 1);
    st = launch(2, "device-kill", "1", NULL, JOB_TIMEOUT_S);
    unsetenv("ZERO_TEST_DIR");
    setenv("ZERO_COMM_TIMEOUT", "60", 1);
    snprintf(path, sizeof(path), "%s/result.0", dir);
    f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(line, sizeof(line), f) == NULL ||
            sscanf(line, "rank %d status %d elapsed %lf named %d", &rank, &status, &elapsed, &named) != 4)
            rank = -1;
        fclose(f);
        unlink(path);
    }
    rmdir(dir);
    /* the launcher reports the dead rank; rank 0 failed with ZERO_ERR_COMM (-6) or ZERO_ERR_TIMEOUT (-7), naming rank 1 */
    ok = st != -1 && !(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) && rank == 0 &&
         (status == -6 || status == -7) && named == 1 && elapsed < KILL_BOUND_S + 5.0;
    printf("staged, world 2, rank 1 killed: %s (%s; rank 0: %s)\n", ok ? "ok" : "FAILED",
           st == -1 ? "the job hung" : "the job ended", line[0] ? line : "no result line\n");
    if (line[0] == '\0')
        printf("\n");
    fflush(stdout);
    return ok;
}

/* A real CUDA fault on rank 1 (comm_rank device-fault 1 WHEN), world 2: 1
 * when both ranks' collectives failed within the bound, both naming rank 1,
 * rank 1's naming the CUDA cause too. */
static int faulted_rank(const char *when)
{
    char dir[] = "/tmp/zero-staged-fault-XXXXXX", path[300], lines[2][256] = {"", ""};
    int st, ok = 1;
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 0;
    }
    setenv("ZERO_TEST_DIR", dir, 1);
    setenv("ZERO_COMM_TIMEOUT", "10", 1);
    st = launch(2, "device-fault", "1", when, JOB_TIMEOUT_S);
    unsetenv("ZERO_TEST_DIR");
    setenv("ZERO_COMM_TIMEOUT", "60", 1);
    for (int r = 0; r < 2; r++) {
        int rank = -1, status = 0, named = 0, cause = 0;
        double elapsed = 1e9;
        FILE *f;
        snprintf(path, sizeof(path), "%s/result.%d", dir, r);
        f = fopen(path, "r");
        if (f != NULL) {
            if (fgets(lines[r], sizeof(lines[r]), f) == NULL)
                lines[r][0] = '\0';
            fclose(f);
            unlink(path);
        }
        if (sscanf(lines[r], "rank %d status %d elapsed %lf named %d cause %d", &rank, &status, &elapsed, &named,
                   &cause) != 5)
            rank = -1;
        /* every rank failed (status < 0), named rank 1, within the bound; rank 1 also named the CUDA cause */
        ok &= rank == r && status < 0 && named == 1 && elapsed < KILL_BOUND_S + 5.0 && (r != 1 || cause == 1);
    }
    rmdir(dir);
    ok &= st != -1;
    printf("staged, world 2, a CUDA fault on rank 1 (%s): %s (%s)\n  rank 0: %s  rank 1: %s", when,
           ok ? "ok" : "FAILED", st == -1 ? "the job hung" : "the job ended", lines[0][0] ? lines[0] : "no result\n",
           lines[1][0] ? lines[1] : "no result\n");
    fflush(stdout);
    return ok;
}

int main(int argc, char **argv)
{
    int count = 0, ok = 1;
    const char *part = argc > 1 ? argv[1] : "all";
    int collectives = strcmp(part, "all") == 0 || strcmp(part, "collectives") == 0;
    int failures = strcmp(part, "all") == 0 || strcmp(part, "failures") == 0;
    char what[128];
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("no CUDA device (%s): skipped\n", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return 77;
    }
    if (count == 1) {
        setenv("COMM_RANK_EXPECT_PATH", "staged", 1);   /* chosen by the communicator: the ranks share the GPU */
    } else {
        setenv("COMM_RANK_BACKENDS", "staged", 1);
        setenv("COMM_RANK_EXPECT_PATH", "staged", 1);
    }
    printf("%d CUDA device(s): %s\n", count, count == 1 ? "every rank shares it (staged chosen automatically)"
                                                         : "the staged backend asked for explicitly");
    fflush(stdout);
    if (!collectives && !failures) {
        printf("usage: test_comm_staged [all|collectives|failures]\n");
        return 2;
    }
    for (int n = 2; n <= 4 && collectives; n++) {
        snprintf(what, sizeof(what), "staged, world %d", n);
        ok &= passed(what, launch(n, "device", NULL, NULL, JOB_TIMEOUT_S));
    }
    if (collectives) {
        setenv("ZERO_COMM_STAGED_SLOT_BYTES", "65536", 1);
        setenv("ZERO_COMM_STAGED_SLOTS", "2", 1);
        ok &= passed("staged, world 3, 64 KiB slots in a ring of 2", launch(3, "device", NULL, NULL, JOB_TIMEOUT_S));
        unsetenv("ZERO_COMM_STAGED_SLOT_BYTES");
        unsetenv("ZERO_COMM_STAGED_SLOTS");
        setenv("ZERO_COMM_STAGED_PIN", "0", 1);
        ok &= passed("staged, world 2, pageable slots", launch(2, "device", NULL, NULL, JOB_TIMEOUT_S));
        unsetenv("ZERO_COMM_STAGED_PIN");
        /* hpZ's group communicators: split in pairs, the children staged too */
        ok &= passed("staged, world 4 split in pairs", launch(4, "device-split", NULL, NULL, JOB_TIMEOUT_S));
        ok &= passed("staged, world 3 split in a pair and one", launch(3, "device-split", NULL, NULL, JOB_TIMEOUT_S));
    }
    if (failures) {
        ok &= killed_rank();
        ok &= faulted_rank("early");
        ok &= faulted_rank("late");
    }
    return ok ? 0 : 1;
}
