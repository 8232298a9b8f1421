/*
 * What every rank program started by zero-launch shares (tests/engine/..._check.c,
 * tests/engine/stage2_memory.c, tests/comm/split_rank.c): the communicator
 * from the launcher's environment, a count of failed checks with EXPECT to
 * add to it, the exit status made from the count, and 16-bit conversions of
 * the test's own (plain references, so a test does not check the library
 * against the library's lib/util/half.h).
 *
 * Usage:
 *   zero_comm_h comm;
 *   if (rank_check_begin(&comm) != 0)
 *       return 1;
 *   EXPECT(x == y, "x %d, y %d", x, y);   // counts a failure, names rank, file and line
 *   return rank_check_end(comm);          // rank 0 prints "OK|FAIL: N failed checks (W=w)"
 *
 * Not thread safe: checks run on the rank's main thread.
 */
#ifndef ZERO_TEST_RANK_CHECK_H
#define ZERO_TEST_RANK_CHECK_H

#include <zero/zero.h>

#include <stddef.h>
#include <stdint.h>

/* This process's rank and the world size (set by rank_check_begin) and the
 * number of failed checks so far. */
extern int check_rank, check_world, check_failures;

/* Creates the communicator from zero-launch's environment (RANK, WORLD_SIZE,
 * MASTER_ADDR, ...) and sets check_rank and check_world. 0 on success; else
 * the reason is printed and the program should exit non-zero. */
int rank_check_begin(zero_comm_h *comm_p);

/* Describes the job as nodes of @p P ranks each, rank r on node r / P (sets
 * LOCAL_RANK, LOCAL_SIZE, CROSS_RANK, CROSS_SIZE from RANK and WORLD_SIZE,
 * as a launcher on real nodes would): call before rank_check_begin. Does
 * nothing for P < 1 or without RANK and WORLD_SIZE. */
void rank_check_describe_nodes(int P);

/* Destroys @p comm (NULL allowed); rank 0 prints "OK: 0 failed checks (W=2)"
 * or "FAIL: ..."; returns the exit status: the failure count, at most 255. */
int rank_check_end(zero_comm_h comm);

/* Counts one failure and prints "rank R: FILE:LINE: message". */
void check_failed(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define EXPECT(cond, ...)                                      \
    do {                                                       \
        if (!(cond))                                           \
            check_failed(__FILE__, __LINE__, __VA_ARGS__);     \
    } while (0)

/* Seconds on the monotonic clock. */
double check_now_s(void);

/*
 * Markers for tests where one rank's own failure must reach the others while
 * that rank stays alive (so their failure cannot come from its exit): each
 * other rank leaves DIR/NAME.failed.RANK once it saw the failure, and the
 * failing rank waits for them. check_marker_clear removes this rank's (at
 * the start) or, with @p rank -1, every rank's (at the end).
 */
void check_marker_leave(const char *dir, const char *name);
void check_marker_clear(const char *dir, const char *name, int rank);
/* Waits up to @p wait_s s for every other rank's marker; a failed check
 * for each one missing then. */
void check_markers_wait(const char *dir, const char *name, double wait_s);

/* An init_fn (zero_param_desc_t) for weights of no particular meaning:
 * 0.01 x ((offset + i) mod 97), whatever the parameter. */
void check_init_ramp(const char *name, size_t offset, size_t count, float *out, void *user);

/* fp32 -> bf16, rounding to nearest even (finite values); and back. */
uint16_t check_to_bf16(float f);
float check_from_bf16(uint16_t h);
/* Element @p i of @p buf (fp32, bf16 or fp16) as a float; adds @p v to it,
 * rounding once to the buffer's type. */
float check_load(const void *buf, zero_dtype_t dtype, size_t i);
void check_add(void *buf, zero_dtype_t dtype, size_t i, float v);

#endif /* ZERO_TEST_RANK_CHECK_H */
