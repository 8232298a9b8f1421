/* Shared set-up of the zero-launch rank programs (rank_check.h). */
#include "rank_check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int check_rank, check_world, check_failures;

int rank_check_begin(zero_comm_h *comm_p)
{
    zero_status_t status = zero_comm_create(NULL, comm_p);
    if (status != ZERO_OK) {
        fprintf(stderr, "rank program: no communicator from the launcher's environment: %s\n",
                zero_status_string(status));
        return 1;
    }
    check_rank = zero_comm_rank(*comm_p);
    check_world = zero_comm_size(*comm_p);
    return 0;
}

int rank_check_end(zero_comm_h comm)
{
    zero_comm_destroy(comm);
    if (check_rank == 0)
        printf("%s: %d failed checks (W=%d)\n", check_failures ? "FAIL" : "OK", check_failures, check_world);
    return check_failures > 255 ? 255 : check_failures;
}

double check_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void marker_path(char *out, size_t size, const char *dir, const char *name, int rank)
{
    snprintf(out, size, "%s/%s.failed.%d", dir, name, rank);
}

void check_marker_leave(const char *dir, const char *name)
{
    char path[4096];
    FILE *f;
    marker_path(path, sizeof(path), dir, name, check_rank);
    if ((f = fopen(path, "w")) != NULL)
        fclose(f);
}

void check_marker_clear(const char *dir, const char *name, int rank)
{
    char path[4096];
    for (int r = rank < 0 ? 0 : rank; r < (rank < 0 ? check_world : rank + 1); r++) {
        marker_path(path, sizeof(path), dir, name, r);
        unlink(path);
    }
}

void check_markers_wait(const char *dir, const char *name, double wait_s)
{
    char path[4096];
    double until = check_now_s() + wait_s;
    for (int r = 0; r < check_world; r++) {
        if (r == check_rank)
            continue;
        marker_path(path, sizeof(path), dir, name, r);
        while (access(path, F_OK) != 0 && check_now_s() < until)
            usleep(20000);
        if (access(path, F_OK) != 0)
            check_failed(__FILE__, __LINE__, "rank %d had not failed %.0f s after rank %d's failure", r, wait_s,
                         check_rank);
    }
}

void check_failed(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "rank %d: %s:%d: ", check_rank, file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    check_failures++;
}

uint16_t check_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float check_from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

__extension__ typedef _Float16 check_f16_t;

void check_init_ramp(const char *name, size_t offset, size_t count, float *out, void *user)
{
    (void)name;
    (void)user;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.01f * (float)((offset + i) % 97);
}

float check_load(const void *buf, zero_dtype_t dtype, size_t i)
{
    if (dtype == ZERO_FP32)
        return ((const float *)buf)[i];
    if (dtype == ZERO_BF16)
        return check_from_bf16(((const uint16_t *)buf)[i]);
    return (float)((const check_f16_t *)buf)[i];
}

void check_add(void *buf, zero_dtype_t dtype, size_t i, float v)
{
    if (dtype == ZERO_FP32)
        ((float *)buf)[i] += v;
    else if (dtype == ZERO_BF16)
        ((uint16_t *)buf)[i] = check_to_bf16(check_from_bf16(((uint16_t *)buf)[i]) + v);
    else
        ((check_f16_t *)buf)[i] = (check_f16_t)((float)((check_f16_t *)buf)[i] + v);
}

void rank_check_describe_nodes(int P)
{
    const char *r = getenv("RANK"), *w = getenv("WORLD_SIZE");
    char v[16];
    if (P < 1 || r == NULL || w == NULL)
        return;
    snprintf(v, sizeof(v), "%d", atoi(r) % P);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof(v), "%d", P);
    setenv("LOCAL_SIZE", v, 1);
    snprintf(v, sizeof(v), "%d", atoi(r) / P);
    setenv("CROSS_RANK", v, 1);
    snprintf(v, sizeof(v), "%d", (atoi(w) + P - 1) / P);
    setenv("CROSS_SIZE", v, 1);
}
