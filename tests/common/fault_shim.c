/* The allocation fault shim from a rank program (fault_shim.h). */
#include "fault_shim.h"

#include "rank_check.h"

#include <dlfcn.h>
#include <stdio.h>

/* The shim's function @p name, or NULL where it is not loaded. */
static void *shim(const char *name)
{
    return dlsym(RTLD_DEFAULT, name);
}

/* The shim's arming function @p arm, once the shim counts only calls from
 * the code of the object holding @p fn; NULL, with a failed check, where the
 * shim is not loaded or no object holds @p fn. */
static void *shim_aimed(void (*fn)(void), const char *arm)
{
    int (*fail_from)(void (*)(void));
    void *found = shim(arm);
    *(void **)&fail_from = shim("zero_test_malloc_fail_from");
    if (fail_from == NULL || found == NULL) {
        check_failed(__FILE__, __LINE__, "the fault shim (malloc_fail_shim.c) is not loaded (LD_PRELOAD)");
        return NULL;
    }
    if (!fail_from(fn)) {
        check_failed(__FILE__, __LINE__, "the fault shim finds no loaded object holding libzero");
        return NULL;
    }
    return found;
}

int fault_shim_arm(void (*fn)(void), size_t size, long k)
{
    void (*fail_size)(size_t, long);
    *(void **)&fail_size = shim_aimed(fn, "zero_test_malloc_fail_size");
    if (fail_size == NULL)
        return 0;
    fail_size(size, k);
    return 1;
}

int fault_shim_arm_thread(void (*fn)(void), long k)
{
    void (*fail_at)(long);
    *(void **)&fail_at = shim_aimed(fn, "zero_test_thread_fail_at");
    if (fail_at == NULL)
        return 0;
    fail_at(k);
    return 1;
}

int fault_shim_fired(void)
{
    int (*failed)(void);
    void (*fail_at)(long);
    int fired;
    *(void **)&failed = shim("zero_test_malloc_failed");
    *(void **)&fail_at = shim("zero_test_malloc_fail_at");
    fired = failed != NULL && failed();
    if (fail_at != NULL)
        fail_at(0);   /* clears the fired flag too */
    return fired;
}

void fault_scan_end(const char *dir, const char *name)
{
    char path[4096];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s.end", dir, name);
    if ((f = fopen(path, "w")) != NULL)
        fclose(f);
}
