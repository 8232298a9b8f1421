/*
 * Fuzzes the launcher's environment-file parser (tools/zero-launch/envfile.c,
 * the .deepspeed_env format). Input: the file text. Every key it accepts must
 * be a valid variable name, and no value may hold a newline (values become
 * environment entries and, for remote ranks, part of a command line).
 */
#include "fuzz_common.h"

#include "envfile.h"

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
    zero_launch_env_t env = {0};

    (void)zero_launch_envfile_parse(text, "fuzz-envfile", &env);
    /* entries before a bad line are set even on failure: check them either way */
    for (size_t i = 0; i < env.count; i++) {
        if (!zero_launch_env_key_valid(env.keys[i], strlen(env.keys[i])))
            __builtin_trap();
        if (strchr(env.values[i], '\n') != NULL)
            __builtin_trap();
        if (zero_launch_env_get(&env, env.keys[i]) != env.values[i])
            __builtin_trap(); /* keys are unique: the lookup finds this entry */
    }
    zero_launch_env_clear(&env);
    if (env.count != 0)
        __builtin_trap();
    free(text);
    return 0;
}
