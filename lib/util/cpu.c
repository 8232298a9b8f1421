#define ZERO_LOG_MODULE "util"
#include "util/cpu.h"
#include "util/log.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

zero_cpu_isa_t zero_cpu_isa_detect(void)
{
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    unsigned eax, ebx, ecx, edx;
    int f16c = 0;
    /* __builtin_cpu_supports also checks that the OS saves the vector state. */
    __builtin_cpu_init();
    /* F16C is not among the names every compiler's __builtin_cpu_supports knows. */
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        f16c = (ecx >> 29) & 1;
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c))
        return ZERO_CPU_ISA_C;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        return ZERO_CPU_ISA_AVX512;
    return ZERO_CPU_ISA_AVX2;
#else
    return ZERO_CPU_ISA_C;
#endif
}

static const char *const isa_names[ZERO_CPU_ISA_COUNT] = {"c", "avx2", "avx512"};

const char *zero_cpu_isa_name(zero_cpu_isa_t isa)
{
    return ((int)isa >= 0 && isa < ZERO_CPU_ISA_COUNT) ? isa_names[isa] : "unknown";
}

int zero_cpu_isa_from_name(const char *name, zero_cpu_isa_t *isa_p)
{
    for (int i = 0; name != NULL && i < ZERO_CPU_ISA_COUNT; i++) {
        if (strcmp(name, isa_names[i]) == 0) {
            *isa_p = (zero_cpu_isa_t)i;
            return 0;
        }
    }
    return -1;
}

zero_status_t zero_cpu_isa_check(zero_cpu_isa_t isa, const char *who)
{
    zero_cpu_isa_t best = zero_cpu_isa_detect();
    if ((int)isa < 0 || isa >= ZERO_CPU_ISA_COUNT) {
        ZERO_LOG_ERROR("%s: unknown instruction set level %d", who, (int)isa);
        return ZERO_ERR_INVALID_ARG;
    }
    if (isa > best) {
        ZERO_LOG_ERROR("%s: kernels for %s requested, but this CPU supports at most %s", who,
                       zero_cpu_isa_name(isa), zero_cpu_isa_name(best));
        return ZERO_ERR_UNSUPPORTED;
    }
    return ZERO_OK;
}

zero_status_t zero_cpu_isa_choose(const char *who, zero_cpu_isa_t *isa_p)
{
    const char *env = getenv("ZERO_CPU_ISA");
    zero_cpu_isa_t isa;
    zero_status_t status;
    if (env == NULL || *env == '\0') {
        *isa_p = zero_cpu_isa_detect();
        return ZERO_OK;
    }
    if (zero_cpu_isa_from_name(env, &isa) != 0) {
        ZERO_LOG_ERROR("%s: ZERO_CPU_ISA='%s' is not one of c, avx2, avx512", who, env);
        return ZERO_ERR_INVALID_ARG;
    }
    status = zero_cpu_isa_check(isa, who);
    if (status == ZERO_OK)
        *isa_p = isa;
    return status;
}
