/*
 * Checkpoints: the engine's side of lib/ckpt. (Being wired up: until lib/ckpt
 * lands on this branch both calls report ZERO_ERR_UNSUPPORTED.)
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_internal.h"

zero_status_t zero_save_checkpoint(zero_engine_h e, const char *save_dir, const char *tag, const char *client_sd_json)
{
    (void)save_dir;
    (void)tag;
    (void)client_sd_json;
    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_save_checkpoint: not wired to lib/ckpt yet");
    return ZERO_ERR_UNSUPPORTED;
}

zero_status_t zero_load_checkpoint(zero_engine_h e, const char *load_dir, const char *tag,
                                   const zero_checkpoint_load_options_t *options, char **client_sd_json_p)
{
    (void)load_dir;
    (void)tag;
    (void)options;
    (void)client_sd_json_p;
    if (e == NULL)
        return ZERO_ERR_INVALID_ARG;
    engine_error(e, ZERO_ERR_UNSUPPORTED, "zero_load_checkpoint: not wired to lib/ckpt yet");
    return ZERO_ERR_UNSUPPORTED;
}
