/*
 * CPU features: the one place that decides which SIMD kernels libzero runs
 * (the optimizer's in lib/optim, the checkpoint checksums in lib/ckpt, the
 * quantization codec in lib/comm).
 *
 * Levels, each including the one before:
 *   c       the plain C reference (any CPU)
 *   avx2    AVX2 + FMA + F16C
 *   avx512  AVX-512 F, BW, VL and DQ (with the OS saving the ZMM state)
 * The environment variable ZERO_CPU_ISA=c|avx2|avx512 chooses a level instead
 * of the best one (for tests and benchmarks). Asking for a level this CPU does
 * not have, or for a name that is not a level, is an error: never silently
 * lowered, never ignored.
 */
#ifndef ZERO_UTIL_CPU_H
#define ZERO_UTIL_CPU_H

#include <zero/status.h>

typedef enum zero_cpu_isa {
    ZERO_CPU_ISA_C = 0,
    ZERO_CPU_ISA_AVX2 = 1,
    ZERO_CPU_ISA_AVX512 = 2,
    ZERO_CPU_ISA_COUNT
} zero_cpu_isa_t;

/* The best level this CPU (and OS) supports. */
zero_cpu_isa_t zero_cpu_isa_detect(void);

/* "c", "avx2", "avx512" ("unknown" otherwise). */
const char *zero_cpu_isa_name(zero_cpu_isa_t isa);

/* Parses a level name (exact, lower case). Returns 0, or -1 and logs nothing. */
int zero_cpu_isa_from_name(const char *name, zero_cpu_isa_t *isa_p);

/*
 * Checks @p isa against this CPU: ZERO_OK, or ZERO_ERR_UNSUPPORTED (logged,
 * naming @p who and the best level there is) for a level above it, or
 * ZERO_ERR_INVALID_ARG (logged) for a value that is no level.
 */
zero_status_t zero_cpu_isa_check(zero_cpu_isa_t isa, const char *who);

/*
 * The level to run: ZERO_CPU_ISA's when set (checked as zero_cpu_isa_check
 * does), else the best the CPU has. A ZERO_CPU_ISA that is not c, avx2 or
 * avx512 is ZERO_ERR_INVALID_ARG (logged, naming @p who).
 */
zero_status_t zero_cpu_isa_choose(const char *who, zero_cpu_isa_t *isa_p);

#endif /* ZERO_UTIL_CPU_H */
