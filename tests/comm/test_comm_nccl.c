/*
 * Device-memory collectives (nccl backend), through zero-launch. Exits 77
 * (meson: skipped) where the CUDA runtime reports no device (no driver, no GPU).
 * One GPU: a world of one (device copies). Two or more: a world of
 * min(devices, 4) ranks over NCCL, one GPU each.
 */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    int count = 0, n, st;
    cudaError_t err = cudaGetDeviceCount(&count);
    char ranks[16];
    pid_t pid;
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
    snprintf(ranks, sizeof(ranks), "%d", n);
    pid = fork();
    if (pid == 0) {
        execl(ZERO_TEST_LAUNCHER, ZERO_TEST_LAUNCHER, "--num_gpus", ranks, "--master_port", "0",
              ZERO_TEST_RANK_PROGRAM, "device", (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return 1;
    printf("device collectives at world size %d: %s\n", n, WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ok" : "FAILED");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
