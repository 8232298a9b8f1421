/*
 * Checkpoints: the engine's side of lib/ckpt. The engine hands lib/ckpt its
 * layout, its owned fp32 masters and optimizer states, and its counters,
 * loss-scaler and schedule state; lib/ckpt does the files, the atomic commit
 * and the resharding. The 16-bit weights the trainer sees are not saved: they
 * are the masters rounded, so loading rebuilds them bit for bit.
 */
#define ZERO_LOG_MODULE "engine"
#include "zero/engine_gather.h"
#include "zero/engine_step.h"

#include "ckpt/ckpt.h"
#include "util/alloc.h"
#include "util/log.h"

#include <stdio.h>
#include <string.h>

/* The optimizer's state arrays, by the names torch gives them. */
static int state_names(const zero_engine_h e, const char *names[ZERO_CKPT_MAX_STATES])
{
    switch (e->config->optimizer.type) {
    case ZERO_OPTIMIZER_ADAM:
    case ZERO_OPTIMIZER_ADAMW:
    case ZERO_OPTIMIZER_LAMB:
        names[0] = "exp_avg";
        names[1] = "exp_avg_sq";
        return 2;
    case ZERO_OPTIMIZER_SGD:
        names[0] = "momentum_buffer";
        return zero_optim_hparams_num_states(&e->hparams);   /* none without momentum */
    case ZERO_OPTIMIZER_ADAGRAD:
        names[0] = "sum";
        return 1;
    case ZERO_OPTIMIZER_LION:
        names[0] = "exp_avg";
        return 1;
    default:
        return 0;
    }
}

static zero_status_t check_state(zero_engine_h e, const char *call)
{
    if (e->state == ENGINE_READY && e->window_micro == 0)
        return ZERO_OK;
    engine_error(e, ZERO_ERR_STATE, "%s: %s", call,
                 e->state == ENGINE_REGISTERING ? "call zero_engine_setup first"
                 : e->state == ENGINE_FAILED    ? "the engine failed earlier; destroy it"
                 : e->state != ENGINE_READY     ? "a backward is open; finish the micro-batch with zero_step first"
                                                : "in the middle of a gradient accumulation window; call it after the "
                                                  "zero_step that ends the window");
    return ZERO_ERR_STATE;
}

/* Host copies of the acquired arrays, for an engine whose memory the host
 * cannot read (device memory): lib/ckpt reads and writes host arrays. NULL
 * entries where the store's own arrays are handed over. */
typedef struct ckpt_mirrors {
    float *field[ZERO_DTYPE_COUNT][ZERO_STORE_NUM_FIELDS];
} ckpt_mirrors_t;

static void free_mirrors(zero_engine_h e, ckpt_mirrors_t *m)
{
    for (int gi = 0; gi < e->layout->num_groups; gi++)
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS; f++) {
            zero_free(m->field[gi][f]);
            m->field[gi][f] = NULL;
        }
}

/* The owned masters (and @p num_states optimizer states) of every group,
 * acquired from the store for lib/ckpt: held over the whole save or load;
 * downloaded into host mirrors where the host cannot read them. */
static zero_status_t acquire_groups(zero_engine_h e, zero_store_range_t *ranges, zero_ckpt_group_data_t *groups,
                                    ckpt_mirrors_t *mirrors, int num_states, const char *call)
{
    uint64_t mark = zero_log_error_mark();
    zero_status_t status = ZERO_OK;
    int acquired = 0;
    memset(groups, 0, sizeof(*groups) * (size_t)e->layout->num_groups);
    memset(mirrors, 0, sizeof(*mirrors));
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        size_t n = e->groups[gi].own_length;
        ranges[gi] = (zero_store_range_t){.group = gi, .begin = 0, .count = n,
                                          .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
        for (int k = 0; k < num_states; k++)
            ranges[gi].fields |= ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE1 + k);
        status = zero_store_acquire(e->store, &ranges[gi]);
        if (status != ZERO_OK) {
            engine_keep_error(e, mark, "%s: cannot reach the optimizer state of the %s group", call,
                              zero_dtype_string(e->groups[gi].dtype));
            goto fail;
        }
        acquired = gi + 1;
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS && !e->ops->host_readable; f++) {
            if (ranges[gi].data[f] == NULL)
                continue;
            mirrors->field[gi][f] = zero_malloc((n ? n : 1) * sizeof(float));
            if (mirrors->field[gi][f] == NULL) {
                engine_error(e, ZERO_ERR_NO_MEMORY, "%s: out of memory for a host copy of %zu values", call, n);
                status = ZERO_ERR_NO_MEMORY;
                goto fail;
            }
            status = engine_download(e, mirrors->field[gi][f], ranges[gi].data[f], n * sizeof(float));
            if (status != ZERO_OK) {
                engine_keep_error(e, mark, "%s: cannot copy the optimizer state of the %s group to the host", call,
                                  zero_dtype_string(e->groups[gi].dtype));
                goto fail;
            }
        }
        groups[gi].master = mirrors->field[gi][ZERO_STORE_MASTER] ? mirrors->field[gi][ZERO_STORE_MASTER]
                                                                  : ranges[gi].data[ZERO_STORE_MASTER];
        for (int k = 0; k < num_states; k++)
            groups[gi].state[k] = mirrors->field[gi][ZERO_STORE_STATE1 + k] ? mirrors->field[gi][ZERO_STORE_STATE1 + k]
                                                                            : ranges[gi].data[ZERO_STORE_STATE1 + k];
    }
    return ZERO_OK;
fail:
    for (int g = 0; g < acquired; g++)
        zero_store_release(e->store, &ranges[g], 0);
    free_mirrors(e, mirrors);
    return status;
}

/* Releases what acquire_groups acquired (@p dirty: a load wrote it, and the
 * host mirrors go back to the device first). */
static zero_status_t release_groups(zero_engine_h e, zero_store_range_t *ranges, ckpt_mirrors_t *mirrors, int dirty,
                                    const char *call)
{
    zero_status_t status = ZERO_OK;
    uint64_t mark = zero_log_error_mark();
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        zero_status_t st;
        for (int f = 0; f < ZERO_STORE_NUM_FIELDS && dirty; f++) {
            if (mirrors->field[gi][f] == NULL)
                continue;
            st = engine_upload(e, ranges[gi].data[f], mirrors->field[gi][f], ranges[gi].count * sizeof(float));
            if (status == ZERO_OK && st != ZERO_OK) {
                engine_keep_error(e, mark, "%s: cannot copy the loaded state of the %s group to the device", call,
                                  zero_dtype_string(e->groups[gi].dtype));
                status = st;
            }
        }
        st = zero_store_release(e->store, &ranges[gi], dirty);
        if (status == ZERO_OK && st != ZERO_OK) {
            engine_keep_error(e, mark, "%s: cannot keep the optimizer state of the %s group", call,
                              zero_dtype_string(e->groups[gi].dtype));
            status = st;
        }
    }
    free_mirrors(e, mirrors);
    return status;
}

zero_status_t zero_save_checkpoint(zero_engine_h e, const char *save_dir, const char *tag, const char *client_sd_json)
{
    zero_status_t status;
    uint64_t mark;
    zero_ckpt_meta_t meta;
    zero_ckpt_save_params_t sp = {0};
    char why[ZERO_CKPT_ERROR_MSG_MAX] = "";
    zero_ckpt_group_data_t groups[ZERO_DTYPE_COUNT];
    zero_store_range_t ranges[ZERO_DTYPE_COUNT];
    ckpt_mirrors_t mirrors;
    zero_loss_scaler_state_t ls;
    zero_lr_schedule_state_t lrs;
    const char *names[ZERO_CKPT_MAX_STATES] = {0};
    char default_tag[64];

    if (e == NULL || save_dir == NULL) {
        if (e)
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_save_checkpoint: save_dir is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    status = check_state(e, "zero_save_checkpoint");
    if (status == ZERO_OK)
        status = engine_sync(e);   /* the last step's update is in place on the device */
    if (status != ZERO_OK)
        return status;
    memset(&meta, 0, sizeof(meta));
    mark = zero_log_error_mark();
    status = zero_config_to_json(e->config, &meta.config_json);
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "zero_save_checkpoint: cannot render the config: %s", zero_status_string(status));
        return status;
    }
    meta.stage = e->stage;
    meta.world_size = e->world;
    snprintf(meta.optimizer, sizeof(meta.optimizer), "%s", zero_optimizer_type_string(e->config->optimizer.type));
    meta.num_states = state_names(e, names);
    for (int k = 0; k < meta.num_states; k++)
        snprintf(meta.state_names[k], sizeof(meta.state_names[k]), "%s", names[k]);
    meta.global_steps = e->global_steps;
    meta.micro_steps = e->micro_steps;
    meta.skipped_steps = e->skipped_steps;
    zero_loss_scaler_get_state(&e->scaler, &ls);
    meta.loss_scale = ls.cur_scale;
    meta.scaler_cur_iter = ls.cur_iter;
    meta.scaler_last_overflow_iter = ls.last_overflow_iter;
    meta.scaler_cur_hysteresis = ls.cur_hysteresis;
    zero_lr_schedule_get_state(&e->schedule, &lrs);
    meta.lr_last_batch_iteration = lrs.last_batch_iteration;
    meta.lr = lrs.lr;
    meta.momentum = lrs.momentum;
    status = acquire_groups(e, ranges, groups, &mirrors, meta.num_states, "zero_save_checkpoint");
    if (status != ZERO_OK) {
        zero_string_free(meta.config_json);
        return status;
    }

    if (tag == NULL) {
        snprintf(default_tag, sizeof(default_tag), "global_step%llu", (unsigned long long)e->global_steps);
        tag = default_tag;
    }
    sp.tag = tag;
    sp.tag_validation = e->config->checkpoint.tag_validation;
    sp.keep_last = e->checkpoint_keep_last;
    sp.client_sd_json = client_sd_json;
    sp.error_msg = why;
    sp.error_msg_size = sizeof(why);
    status = zero_ckpt_save(e->comm, save_dir, &sp, e->layout, e->own_rank, &meta, groups);
    zero_string_free(meta.config_json);
    {
        zero_status_t st = release_groups(e, ranges, &mirrors, 0, "zero_save_checkpoint");
        if (status == ZERO_OK && st != ZERO_OK)
            return st;
    }
    if (status != ZERO_OK) {
        /* The message of the place that detected it, on whichever rank that
         * was, as every rank agreed on it: "rank R: <file>: ...: <errno text>".
         * The engine's state is untouched by a failed save. */
        if (why[0] != '\0')
            snprintf(e->last_error, sizeof(e->last_error), "%s", why);
        else
            snprintf(e->last_error, sizeof(e->last_error), "zero_save_checkpoint(%s) failed (%s); see the log", tag,
                     zero_status_string(status));
        if (status == ZERO_ERR_COMM || status == ZERO_ERR_TIMEOUT)
            e->state = ENGINE_FAILED;
    }
    return status;
}

zero_status_t zero_load_checkpoint(zero_engine_h e, const char *load_dir, const char *tag,
                                   const zero_checkpoint_load_options_t *options, char **client_sd_json_p)
{
    zero_status_t status;
    uint64_t mark;
    zero_ckpt_load_params_t lp = {0};
    zero_ckpt_group_data_t groups[ZERO_DTYPE_COUNT];
    zero_store_range_t ranges[ZERO_DTYPE_COUNT];
    ckpt_mirrors_t mirrors;
    zero_ckpt_meta_t meta;
    const char *names[ZERO_CKPT_MAX_STATES] = {0};
    char *client_sd = NULL, *loaded_tag = NULL;
    int load_states = 1, load_schedule = 1, module_only = 0, num_states;

    if (e == NULL || load_dir == NULL) {
        if (e)
            engine_error(e, ZERO_ERR_INVALID_ARG, "zero_load_checkpoint: load_dir is NULL");
        return ZERO_ERR_INVALID_ARG;
    }
    if (e->state != ENGINE_READY) {
        status = check_state(e, "zero_load_checkpoint");
        if (status != ZERO_OK)
            return status;
    }
    if (options != NULL) {
        if (options->field_mask & ZERO_CHECKPOINT_LOAD_FIELD_OPTIMIZER_STATES)
            load_states = options->load_optimizer_states != 0;
        if (options->field_mask & ZERO_CHECKPOINT_LOAD_FIELD_LR_SCHEDULER)
            load_schedule = options->load_lr_scheduler_states != 0;
        if (options->field_mask & ZERO_CHECKPOINT_LOAD_FIELD_MODULE_ONLY)
            module_only = options->load_module_only != 0;
    }
    if (module_only)
        load_states = load_schedule = 0;
    num_states = state_names(e, names);
    /* Without the states, none are asked for: the engine's own stay as they are. */
    lp.tag = tag;
    lp.load_optimizer_states = load_states;
    lp.num_states = load_states ? num_states : 0;
    for (int k = 0; k < lp.num_states; k++)
        lp.state_names[k] = names[k];
    memset(&meta, 0, sizeof(meta));
    if (e->stage == 3)
        engine_gather_drop_all(e);   /* gathered copies would predate the loaded weights */
    status = engine_sync(e);   /* nothing queued still writes the state the load replaces */
    if (status != ZERO_OK)
        return status;
    status = acquire_groups(e, ranges, groups, &mirrors, lp.num_states, "zero_load_checkpoint");
    if (status != ZERO_OK)
        return status;
    mark = zero_log_error_mark();
    status = zero_ckpt_load(e->comm, load_dir, &lp, e->layout, e->own_rank, groups, &meta, &client_sd, &loaded_tag);
    {
        /* Dirty either way: a load that failed late may have written part of it. */
        zero_status_t st = release_groups(e, ranges, &mirrors, 1, "zero_load_checkpoint");
        if (status == ZERO_OK && st != ZERO_OK) {
            zero_ckpt_meta_clear(&meta);
            zero_free(client_sd);
            zero_free(loaded_tag);
            e->state = ENGINE_FAILED;
            return st;
        }
    }
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "zero_load_checkpoint(%s, %s) failed: %s", load_dir, tag ? tag : "latest",
                          zero_status_string(status));
        if (status == ZERO_ERR_COMM || status == ZERO_ERR_TIMEOUT)
            e->state = ENGINE_FAILED;
        return status;
    }
    if (!module_only) {
        zero_loss_scaler_state_t ls = {meta.loss_scale, meta.scaler_cur_iter, meta.scaler_last_overflow_iter,
                                       meta.scaler_cur_hysteresis};
        e->global_steps = meta.global_steps;
        e->micro_steps = meta.micro_steps;
        e->skipped_steps = meta.skipped_steps;
        if (e->config->fp16.enabled && meta.loss_scale > 0.0 && zero_loss_scaler_set_state(&e->scaler, &ls) != ZERO_OK)
            ZERO_LOG_WARN("checkpoint %s: its loss-scaler state does not fit this config; keeping the current one",
                          loaded_tag);
        if (load_schedule) {
            zero_lr_schedule_state_t lrs = {meta.lr_last_batch_iteration, meta.lr, meta.momentum};
            if (zero_lr_schedule_set_state(&e->schedule, &lrs) != ZERO_OK)
                ZERO_LOG_WARN("checkpoint %s: its LR-schedule state does not fit this config; keeping the current one",
                              loaded_tag);
        }
    }
    zero_ckpt_meta_clear(&meta);
    /* The weights the trainer sees, from the loaded masters. */
    status = engine_write_back(e);
    if (status == ZERO_OK)
        status = engine_sync(e);
    if (status != ZERO_OK) {
        zero_free(client_sd);
        zero_free(loaded_tag);
        e->state = ENGINE_FAILED;
        return status;
    }
    ZERO_LOG_DEBUG("loaded checkpoint %s/%s at global step %llu", load_dir, loaded_tag,
                   (unsigned long long)e->global_steps);
    zero_free(loaded_tag);
    if (client_sd_json_p != NULL)
        *client_sd_json_p = client_sd;
    else
        zero_free(client_sd);
    return ZERO_OK;
}
