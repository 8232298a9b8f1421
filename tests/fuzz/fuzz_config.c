/*
 * Fuzzes the DeepSpeed-style config: JSON text -> zero_config_parse_string
 * (lib/config/config_json.c tokenizer and tree, config_schema.c validation,
 * the batch triad) and, for a config it accepts, zero_config_to_json
 * (config.c), whose output must parse again to the same rendering.
 *
 * Input: byte 0 picks the world size (0 = unknown, 1..7), the rest is the
 * config text (a NUL inside is the parser's to refuse).
 */
#include "fuzz_common.h"

#include <zero/config.h>
#include <zero/memory.h>

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zero_config_t *config = NULL, *again = NULL;
    char *problems = NULL, *json = NULL, *json_again = NULL, *problems_again = NULL;
    uint32_t world_size;
    zero_status_t status;

    if (size < 1)
        return 0;
    world_size = data[0] % 8;
    status = zero_config_parse_string((const char *)data + 1, size - 1, world_size, &config, &problems);
    if (status != ZERO_OK) {
        /* refused: there must be a reason, and no config */
        if (problems == NULL || config != NULL)
            __builtin_trap();
        zero_string_free(problems);
        return 0;
    }
    zero_string_free(problems);
    /* The rendering of an accepted config parses again, to the same rendering. */
    if (zero_config_to_json(config, &json) != ZERO_OK)
        __builtin_trap();
    if (zero_config_parse_string(json, strlen(json), world_size, &again, &problems_again) != ZERO_OK) {
        fprintf(stderr, "fuzz_config: the rendering of an accepted config is refused:\n%s\n--- problems:\n%s\n",
                json, problems_again ? problems_again : "(none)");
        __builtin_trap();
    }
    if (zero_config_to_json(again, &json_again) != ZERO_OK)
        __builtin_trap();
    if (strcmp(json, json_again) != 0) {
        fprintf(stderr, "fuzz_config: rendering changed on re-parse:\n%s\n--- became:\n%s\n", json, json_again);
        __builtin_trap();
    }
    zero_string_free(problems_again);
    zero_string_free(json_again);
    zero_string_free(json);
    zero_config_destroy(again);
    zero_config_destroy(config);
    return 0;
}
