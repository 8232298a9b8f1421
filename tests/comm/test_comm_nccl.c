/*
 * Device-memory collectives (nccl backend), through zero-launch. Exits 77
 * (meson: skipped) where the CUDA runtime reports no device (no driver, no GPU).
 * One GPU: a world of one (device copies). Two or more: a world of
 * min(devices, 4) ranks over NCCL, one GPU each.
 *
 * With exactly one GPU it also starts two ranks on it with only the nccl
 * backend allowed (COMM_RANK_BACKENDS=nccl; by default the communicator takes
 * the staged backend there, tests/comm/test_comm_staged.c): NCCL refuses two
 * ranks on one device, so every rank refuses device collectives, naming the
 * ranks that share it, and the job must end with a non-zero status within
 * 40 s, not hang. And on any number of GPUs, a world of two where
 * rank 1 names a device that does not exist: rank 0's set-up works, rank 1's
 * fails before NCCL, and rank 0 must fail too rather than wait in
 * ncclCommInitRank for a peer that never comes.
 */
#include <cuda_runtime_api.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHARED_GPU_TIMEOUT_S 40   /* well under ZERO_COMM_TIMEOUT (gpu-check: 60 s): failing by a timeout is not clean */

/* Runs the device mode of the rank program on @p ranks ranks; its wait status,
 * or -1 when it ran past @p timeout_s seconds (then it is stopped). */
static int launch(int ranks, int timeout_s)
{
    char arg[16];
    int st = 0;
    time_t start = time(NULL);
    pid_t pid;

    snprintf(arg, sizeof(arg), "%d", ranks);
    pid = fork();
    if (pid == 0) {
        execl(ZERO_TEST_LAUNCHER, ZERO_TEST_LAUNCHER, "--num_gpus", arg, "--master_port", "0",
              ZERO_TEST_RANK_PROGRAM, "device", (char *)NULL);
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
        if (timeout_s > 0 && time(NULL) - start > timeout_s) {
            kill(pid, SIGTERM);   /* zero-launch stops its ranks */
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(100 * 1000);
    }
}

int main(void)
{
    int count = 0, n, st, ok;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        printf("no CUDA device (%s): skipped\n", err != cudaSuccess ? cudaGetErrorString(err) : "count 0");
        return 77;
    }
    {
        struct cudaDeviceProp prop;
        int driver = 0, runtime = 0;
        cudaDriverGetVersion(&driver);
        cudaRuntimeGetVersion(&runtime);
        for (int i = 0; i < count; i++)
            if (cudaGetDeviceProperties(&prop, i) == cudaSuccess)
                printf("device %d of %d: %s (sm_%d%d, %.1f GiB, PCI %04x:%02x:%02x)\n", i, count, prop.name,
                       prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0),
                       prop.pciDomainID, prop.pciBusID, prop.pciDeviceID);
        printf("CUDA driver %d, runtime %d\n", driver, runtime);
    }
    n = count >= 4 ? 4 : count;
    st = launch(n, 0);
    ok = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("device collectives at world size %d: %s\n", n, ok ? "ok" : "FAILED");
    if (count == 1) {
        int clean;
        fflush(stdout);
        setenv("COMM_RANK_BACKENDS", "nccl", 1);
        st = launch(2, SHARED_GPU_TIMEOUT_S);
        unsetenv("COMM_RANK_BACKENDS");
        clean = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0;
        if (st == -1)
            printf("two ranks on one GPU: FAILED (still running after %d s: a hang)\n", SHARED_GPU_TIMEOUT_S);
        else
            printf("two ranks on one GPU: %s (%s %d)\n", clean ? "failed cleanly, as it must" : "FAILED",
                   st >= 0 && WIFEXITED(st) ? "exit status" : "wait status", st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : st);
        ok = ok && clean;
    }
    {
        int clean;
        fflush(stdout);
        setenv("COMM_RANK_BAD_DEVICE_RANK", "1", 1);
        st = launch(2, SHARED_GPU_TIMEOUT_S);
        unsetenv("COMM_RANK_BAD_DEVICE_RANK");
        clean = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) != 0;
        if (st == -1)
            printf("rank 1 on a device that does not exist: FAILED (still running after %d s: a hang)\n",
                   SHARED_GPU_TIMEOUT_S);
        else
            printf("rank 1 on a device that does not exist: %s (%s %d)\n",
                   clean ? "every rank failed cleanly, as it must" : "FAILED",
                   st >= 0 && WIFEXITED(st) ? "exit status" : "wait status",
                   st >= 0 && WIFEXITED(st) ? WEXITSTATUS(st) : st);
        ok = ok && clean;
    }
    return ok ? 0 : 1;
}
