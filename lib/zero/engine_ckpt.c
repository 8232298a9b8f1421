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

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
        return zero_optim_groups_num_states(e->param_groups, e->num_param_groups);   /* none without momentum */
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

/* ---- parameter groups in checkpoints ----
 *
 * The dataset "param_groups" holds the engine's groups as text: a header
 * line, one line per group ("group <index> <name> <settings>", the settings
 * as zero_optim_group_describe writes them), and one line with each
 * parameter's group index in registration order ("params 0 0 1 2 ..."). A
 * load of the optimizer state compares it with the engine's own: the moments
 * were made under those settings, so loading them into other groups is most
 * likely a mistake, reported naming the group (allow_param_group_change
 * overrides it). */
#define PARAM_GROUPS_HEADER "libzero-param-groups 1"

static char *param_groups_text(zero_engine_h e)
{
    size_t cap = 64 + (size_t)e->num_param_groups * 512 + (size_t)e->num_params * 12, used = 0;
    char *text = zero_malloc(cap);
    if (text == NULL)
        return NULL;
    used += (size_t)snprintf(text + used, cap - used, "%s\n", PARAM_GROUPS_HEADER);
    for (int g = 0; g < e->num_param_groups; g++) {
        char desc[400];
        zero_optim_group_describe(&e->param_groups[g], desc, sizeof(desc));
        used += (size_t)snprintf(text + used, cap - used, "group %d %s %s\n", g, e->param_groups[g].name, desc);
    }
    used += (size_t)snprintf(text + used, cap - used, "params");
    for (int i = 0; i < e->num_params; i++)
        used += (size_t)snprintf(text + used, cap - used, " %d", e->params[i]->param_group);
    snprintf(text + used, cap - used, "\n");
    return text;
}

typedef struct saved_groups {
    int count;
    char names[ZERO_CONFIG_MAX_PARAM_GROUPS][ZERO_CONFIG_PARAM_GROUP_NAME_MAX + 1];
    const char *settings[ZERO_CONFIG_MAX_PARAM_GROUPS];   /* into the text; up to the newline */
    size_t settings_length[ZERO_CONFIG_MAX_PARAM_GROUPS];
    const char *params;                                    /* after "params" */
} saved_groups_t;

/* Reads the "param_groups" text (the checkpoint's digest has vouched for it; a
 * malformed one still fails cleanly). */
static int parse_saved_groups(const char *text, saved_groups_t *sg)
{
    const char *line = text;
    memset(sg, 0, sizeof(*sg));
    if (strncmp(line, PARAM_GROUPS_HEADER "\n", strlen(PARAM_GROUPS_HEADER) + 1) != 0)
        return -1;
    line += strlen(PARAM_GROUPS_HEADER) + 1;
    while (strncmp(line, "group ", 6) == 0) {
        int index, name_end = 0;
        const char *end = strchr(line, '\n');
        if (end == NULL || sg->count == ZERO_CONFIG_MAX_PARAM_GROUPS ||
            sscanf(line, "group %d %63[A-Za-z0-9_.-] %n", &index, sg->names[sg->count], &name_end) != 2 ||
            index != sg->count || name_end == 0 || line + name_end > end)
            return -1;
        sg->settings[sg->count] = line + name_end;
        sg->settings_length[sg->count] = (size_t)(end - (line + name_end));
        sg->count++;
        line = end + 1;
    }
    if (sg->count == 0 || strncmp(line, "params", 6) != 0)
        return -1;
    sg->params = line + 6;
    return 0;
}

/* The "params" line into @p member ([n]: each saved parameter's group
 * index); -1 when it lists fewer than @p n valid indices. */
static int parse_saved_members(const saved_groups_t *sg, int n, int *member)
{
    const char *p = sg->params;
    for (int j = 0; j < n; j++) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= sg->count)
            return -1;
        member[j] = (int)v;
        p = end;
    }
    return 0;
}

static int saved_param_index(const zero_layout_t *saved, const zero_layout_t *now, int i)
{
    if (i < saved->num_params && strcmp(saved->params[i].name, now->params[i].name) == 0)
        return i;
    for (int j = 0; j < saved->num_params; j++)
        if (strcmp(saved->params[j].name, now->params[i].name) == 0)
            return j;
    return -1;
}

/* lib/ckpt's check_meta: the checkpoint's groups against the engine's (every rank, before anything is read). */
static zero_status_t check_param_groups(const zero_ckpt_meta_t *meta, const zero_layout_t *saved, void *user,
                                        char *why, size_t why_size)
{
    zero_engine_h e = user;
    const char *fix = "set allow_param_group_change in zero_checkpoint_load_options_t to load the optimizer state "
                      "anyway";
    saved_groups_t *sg;
    int *member = NULL;
    zero_status_t status = ZERO_ERR_CHECKPOINT;

    if (meta->param_groups == NULL) {
        /* saved before parameter groups: every parameter was in "default" */
        for (int i = 0; i < e->num_params; i++)
            if (e->params[i]->param_group != 0) {
                snprintf(why, why_size, "it was saved before parameter groups (every parameter in \"default\"), "
                         "but %s is in parameter group \"%s\" here; %s", e->params[i]->name,
                         e->param_groups[e->params[i]->param_group].name, fix);
                return ZERO_ERR_CHECKPOINT;
            }
        return ZERO_OK;
    }
    sg = zero_malloc(sizeof(*sg));
    member = zero_malloc(sizeof(int) * (size_t)(saved->num_params > 0 ? saved->num_params : 1));
    if (sg == NULL || member == NULL) {
        zero_free(sg);
        zero_free(member);
        snprintf(why, why_size, "out of memory comparing parameter groups");
        return ZERO_ERR_NO_MEMORY;
    }
    if (parse_saved_groups(meta->param_groups, sg) != 0 || parse_saved_members(sg, saved->num_params, member) != 0) {
        snprintf(why, why_size, "its param_groups dataset is malformed");
        goto out;
    }
    for (int g = 0; g < e->num_param_groups; g++) {
        char desc[400];
        int k = 0;
        while (k < sg->count && strcmp(sg->names[k], e->param_groups[g].name) != 0)
            k++;
        if (k == sg->count) {
            snprintf(why, why_size, "parameter group \"%s\" is not in the checkpoint; %s", e->param_groups[g].name,
                     fix);
            goto out;
        }
        zero_optim_group_describe(&e->param_groups[g], desc, sizeof(desc));
        if (strlen(desc) != sg->settings_length[k] || strncmp(desc, sg->settings[k], sg->settings_length[k]) != 0) {
            snprintf(why, why_size, "parameter group \"%s\" was saved with \"%.*s\", this engine has \"%s\"; %s",
                     e->param_groups[g].name, (int)sg->settings_length[k], sg->settings[k], desc, fix);
            goto out;
        }
    }
    for (int k = 0; k < sg->count; k++)
        if (zero_optim_groups_find(e->param_groups, e->num_param_groups, sg->names[k]) < 0) {
            snprintf(why, why_size, "its parameter group \"%s\" is not a group of this engine; %s", sg->names[k], fix);
            goto out;
        }
    for (int i = 0; i < e->num_params; i++) {
        int j = saved_param_index(saved, e->layout, i);
        int k = j >= 0 ? member[j] : -1;
        if (k < 0) {
            snprintf(why, why_size, "its param_groups dataset has no group for %s", e->params[i]->name);
            goto out;
        }
        if (strcmp(sg->names[k], e->param_groups[e->params[i]->param_group].name) != 0) {
            snprintf(why, why_size, "%s was in parameter group \"%s\" and is in \"%s\" here; %s", e->params[i]->name,
                     sg->names[k], e->param_groups[e->params[i]->param_group].name, fix);
            goto out;
        }
    }
    status = ZERO_OK;
out:
    zero_free(sg);
    zero_free(member);
    return status;
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

/*
 * How the state reaches lib/ckpt. A store whose state is all in this process
 * and takes any range (the host store) hands out whole owned arrays, held
 * over the save or load (no copy). Any other (NVMe: ranges of at most
 * max_range; zero-optd: the state on servers) is streamed: lib/ckpt asks for
 * one range of one array at a time, and each is acquired from the store in
 * pieces of at most its bound, copied, and released (clean for a save, dirty
 * for a load). So a checkpoint never needs the whole state in memory.
 */
typedef struct ckpt_stream_ctx {
    zero_engine_h e;
    int written;   /* a load stored something (a failure after that leaves the state part old, part new) */
} ckpt_stream_ctx_t;

static int state_streams(zero_engine_h e)
{
    zero_store_bytes_t bytes;
    if (!e->ops->host_readable)
        return 1;   /* device memory: each range is copied to or from the host (lib/ckpt reads host arrays) */
    zero_store_bytes(e->store, &bytes);
    return zero_store_max_range(e->store) > 0 || bytes.elsewhere > 0;
}

/* Copies between the store's array @p array of group @p gi, [begin, begin + count), and @p buf. */
static zero_status_t stream_copy(ckpt_stream_ctx_t *c, int gi, int array, size_t begin, size_t count, float *buf,
                                 int to_store)
{
    zero_engine_h e = c->e;
    for (size_t off = 0; off < count;) {
        size_t n = engine_range_max(e, count - off);
        zero_store_range_t r = {.group = gi, .begin = begin + off, .count = n,
                                .fields = ZERO_STORE_FIELD_BIT(array)};
        zero_status_t status = zero_store_acquire(e->store, &r), st;
        if (status != ZERO_OK)
            return status;
        /* the kind's copies: memcpy for host memory, complete transfers for device memory */
        if (to_store)
            status = engine_upload(e, r.data[array], buf + off, n * sizeof(float));
        else
            status = engine_download(e, buf + off, r.data[array], n * sizeof(float));
        st = zero_store_release(e->store, &r, to_store);
        if (status != ZERO_OK)
            return status;
        c->written |= to_store;
        if (st != ZERO_OK)
            return st;
        off += n;
    }
    return ZERO_OK;
}

static zero_status_t stream_read(void *ctx, int group, int array, size_t begin, size_t count, float *out)
{
    return stream_copy(ctx, group, array, begin, count, out, 0);
}

static zero_status_t stream_write(void *ctx, int group, int array, size_t begin, size_t count, const float *in)
{
    return stream_copy(ctx, group, array, begin, count, (float *)(uintptr_t)in, 1);
}

/* The owned masters (and @p num_states optimizer states) of every group for
 * lib/ckpt: streamed through @p stream (see above), or acquired from the
 * store whole and held over the save or load. */
static zero_status_t acquire_groups(zero_engine_h e, zero_store_range_t *ranges, zero_ckpt_group_data_t *groups,
                                    int num_states, const zero_ckpt_stream_t *stream, const char *call)
{
    uint64_t mark = zero_log_error_mark();
    memset(groups, 0, sizeof(*groups) * (size_t)e->layout->num_groups);
    memset(ranges, 0, sizeof(*ranges) * (size_t)e->layout->num_groups);
    for (int gi = 0; gi < e->layout->num_groups && stream != NULL; gi++)
        groups[gi].stream = stream;
    for (int gi = 0; gi < e->layout->num_groups && stream == NULL; gi++) {
        zero_status_t status;
        ranges[gi] = (zero_store_range_t){.group = gi, .begin = 0, .count = e->groups[gi].own_length,
                                          .fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER)};
        for (int k = 0; k < num_states; k++)
            ranges[gi].fields |= ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE1 + k);
        status = zero_store_acquire(e->store, &ranges[gi]);
        if (status != ZERO_OK) {
            for (int g = 0; g < gi; g++)
                zero_store_release(e->store, &ranges[g], 0);
            engine_keep_error(e, mark, "%s: cannot reach the optimizer state of the %s group", call,
                              zero_dtype_string(e->groups[gi].dtype));
            return status;
        }
        groups[gi].master = ranges[gi].data[ZERO_STORE_MASTER];
        for (int k = 0; k < num_states; k++)
            groups[gi].state[k] = ranges[gi].data[ZERO_STORE_STATE1 + k];
    }
    return ZERO_OK;
}

/* Releases what acquire_groups acquired (@p dirty: a load wrote it). */
static zero_status_t release_groups(zero_engine_h e, zero_store_range_t *ranges, int dirty, const char *call)
{
    zero_status_t status = ZERO_OK;
    uint64_t mark = zero_log_error_mark();
    for (int gi = 0; gi < e->layout->num_groups; gi++) {
        zero_status_t st;
        if (ranges[gi].fields == 0)
            continue;   /* streamed: nothing held */
        st = zero_store_release(e->store, &ranges[gi], dirty);
        if (status == ZERO_OK && st != ZERO_OK) {
            engine_keep_error(e, mark, "%s: cannot keep the optimizer state of the %s group", call,
                              zero_dtype_string(e->groups[gi].dtype));
            status = st;
        }
    }
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
    ckpt_stream_ctx_t stream_ctx = {e, 0};
    zero_ckpt_stream_t stream = {stream_read, stream_write, &stream_ctx};
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
    /* A failure of this rank's own from here on goes into the save's first
     * agreement (zero_ckpt_save_fail_local), so no rank waits for this one in the
     * save's collectives; a failed save leaves the engine as it was. */
    status = zero_config_to_json(e->config, &meta.config_json);
    if (status != ZERO_OK)
        engine_keep_error(e, mark, "zero_save_checkpoint: cannot render the config: %s", zero_status_string(status));
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
    if (status == ZERO_OK && (meta.param_groups = param_groups_text(e)) == NULL) {
        engine_error(e, ZERO_ERR_NO_MEMORY, "zero_save_checkpoint: out of memory");
        status = ZERO_ERR_NO_MEMORY;
    }
    if (status == ZERO_OK)
        status = acquire_groups(e, ranges, groups, meta.num_states, state_streams(e) ? &stream : NULL,
                                "zero_save_checkpoint");

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
    if (status == ZERO_OK) {
        status = zero_ckpt_save(e->comm, save_dir, &sp, e->layout, e->own_rank, &meta, groups);
    } else {
        memset(ranges, 0, sizeof(ranges));   /* nothing held (a failed acquire_groups released its own) */
        status = zero_ckpt_save_fail_local(e->comm, status, e->last_error, why, sizeof(why));
    }
    zero_string_free(meta.config_json);
    zero_free(meta.param_groups);
    {
        zero_status_t st = release_groups(e, ranges, 0, "zero_save_checkpoint");
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
        if (status == ZERO_ERR_COMM || status == ZERO_ERR_TIMEOUT)   /* the save's status is agreed by every rank */
            engine_fail(e, ENGINE_FAIL_SHARED, status, zero_log_error_mark(), "%s", e->last_error);
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
    ckpt_stream_ctx_t stream_ctx = {e, 0};
    zero_ckpt_stream_t stream = {stream_read, stream_write, &stream_ctx};
    zero_ckpt_meta_t meta;
    const char *names[ZERO_CKPT_MAX_STATES] = {0};
    char *client_sd = NULL, *loaded_tag = NULL;
    int load_states = 1, load_schedule = 1, module_only = 0, allow_group_change = 0, num_states;

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
        if (options->field_mask & ZERO_CHECKPOINT_LOAD_FIELD_ALLOW_PARAM_GROUP_CHANGE)
            allow_group_change = options->allow_param_group_change != 0;
    }
    if (module_only)
        load_states = load_schedule = 0;
    num_states = state_names(e, names);
    /* Without the states, none are asked for: the engine's own stay as they are. */
    lp.tag = tag;
    lp.load_optimizer_states = load_states;
    if (load_states && !allow_group_change) {
        lp.check_meta = check_param_groups;
        lp.check_meta_user = e;
    }
    lp.num_states = load_states ? num_states : 0;
    for (int k = 0; k < lp.num_states; k++)
        lp.state_names[k] = names[k];
    memset(&meta, 0, sizeof(meta));
    if (e->stage == 3)
        engine_gather_drop_all(e);   /* gathered copies would predate the loaded weights */
    status = engine_sync(e);   /* nothing queued still writes the state the load replaces */
    if (status != ZERO_OK)
        return status;
    status = acquire_groups(e, ranges, groups, lp.num_states, state_streams(e) ? &stream : NULL,
                            "zero_load_checkpoint");
    if (status != ZERO_OK)
        return status;
    mark = zero_log_error_mark();
    status = zero_ckpt_load(e->comm, load_dir, &lp, e->layout, e->own_rank, groups, &meta, &client_sd, &loaded_tag);
    {
        /* Dirty either way: a load that failed late may have written part of
         * it. A streamed load's writes are in the store; flush them, so a
         * failed write is this load's error, not the next call's. */
        zero_status_t st = release_groups(e, ranges, 1, "zero_load_checkpoint");
        if (st == ZERO_OK && stream_ctx.written) {
            uint64_t flush_mark = zero_log_error_mark();
            st = zero_store_flush(e->store);
            if (st != ZERO_OK)
                engine_keep_error(e, flush_mark, "zero_load_checkpoint: writing the loaded optimizer state failed");
        }
        if (status == ZERO_OK && st != ZERO_OK) {   /* this rank's store (its message is kept above) */
            zero_ckpt_meta_clear(&meta);
            zero_free(client_sd);
            zero_free(loaded_tag);
            return engine_fail(e, ENGINE_FAIL_LOCAL, st, zero_log_error_mark(), "%s", e->last_error);
        }
    }
    if (status != ZERO_OK) {
        engine_keep_error(e, mark, "zero_load_checkpoint(%s, %s) failed: %s", load_dir, tag ? tag : "latest",
                          zero_status_string(status));
        /* a streamed load that failed after storing part of the state leaves it part old, part new */
        if (status == ZERO_ERR_COMM || status == ZERO_ERR_TIMEOUT || stream_ctx.written)   /* agreed by every rank */
            engine_fail(e, ENGINE_FAIL_SHARED, status, zero_log_error_mark(), "%s", e->last_error);
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
    if (status != ZERO_OK) {   /* this rank's device work (engine_write_back, engine_sync recorded it) */
        zero_free(client_sd);
        zero_free(loaded_tag);
        return engine_fail(e, ENGINE_FAIL_LOCAL, status, zero_log_error_mark(), "%s", e->last_error);
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
