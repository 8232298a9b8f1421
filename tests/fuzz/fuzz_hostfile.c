/*
 * Fuzzes the launcher's hostfile parser (tools/zero-launch/hostfile.c) and
 * the pool built from an accepted hostfile (hostsel.c). Input: the hostfile
 * text. An accepted hostfile must hold 1.. hosts with 1..ZERO_LAUNCH_MAX_SLOTS
 * slots each and no duplicate name.
 */
#include "fuzz_common.h"

#include "hostfile.h"
#include "hostsel.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring(data, size);
    zero_launch_hostfile_t *hf = NULL;
    zero_launch_pool_t *pool = NULL;

    if (zero_launch_hostfile_parse(text, "fuzz-hostfile", &hf) == ZERO_OK) {
        if (hf->count < 1)
            __builtin_trap();
        for (size_t i = 0; i < hf->count; i++) {
            if (hf->hosts[i].slots < 1 || hf->hosts[i].slots > ZERO_LAUNCH_MAX_SLOTS || hf->hosts[i].name[0] == '\0')
                __builtin_trap();
            for (size_t j = 0; j < i; j++)
                if (strcmp(hf->hosts[i].name, hf->hosts[j].name) == 0)
                    __builtin_trap();
        }
        if (zero_launch_pool_from_hostfile(hf, &pool) == ZERO_OK)
            zero_launch_pool_destroy(pool);
        zero_launch_hostfile_destroy(hf);
    } else if (hf != NULL) {
        __builtin_trap(); /* failure must leave nothing allocated */
    }
    free(text);
    return 0;
}
