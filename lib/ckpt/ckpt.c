/*
 * Collective save and load (ckpt.h). Each step that can fail on some rank is
 * followed by an agreement (ckpt_agree): an allreduce finds the lowest failing
 * rank, which broadcasts its status and message, so every rank returns the
 * same status and logs the cause.
 */
#define ZERO_LOG_MODULE "ckpt"
#include "ckpt/ckpt_internal.h"
#include "util/checks_hdf5.h"

#include "util/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static zero_status_t bcast_bytes(zero_comm_h comm, int root, char *buf, size_t n)
{
    return zero_comm_broadcast(comm, buf, buf, n, ZERO_U8, root, ZERO_MEM_HOST);
}

/* The failing rank's own message in the form every other rank records: "rank R: ...". */
static void agreed_message(ckpt_err_t *err, int rank)
{
    char own[CKPT_ERR_MSG];
    if (err->status == ZERO_OK || err->agreed)
        return;
    snprintf(own, sizeof(own), "%s", err->msg);
    snprintf(err->msg, sizeof(err->msg), "rank %d: %.*s", rank, (int)sizeof(err->msg) - 16, own);
    err->agreed = 1;
}

/*
 * Agreement: returns ZERO_OK only if every rank's @p err is clear; otherwise
 * the status of the lowest failing rank, whose message every other rank logs
 * (and records in its own @p err).
 */
static zero_status_t ckpt_agree(zero_comm_h comm, ckpt_err_t *err, const char *what)
{
    int world = zero_comm_size(comm), rank = zero_comm_rank(comm), root;
    /* world - rank: the maximum over ranks names the lowest failing rank */
    int64_t mine = err->status != ZERO_OK ? (int64_t)(world - rank) : 0, max = 0;
    char buf[16 + CKPT_ERR_MSG];
    zero_status_t status;

    if (world == 1) {
        agreed_message(err, rank);
        return err->status;
    }
    status = zero_comm_allreduce(comm, &mine, &max, 1, ZERO_I64, ZERO_COMM_MAX, ZERO_MEM_HOST);
    if (status != ZERO_OK) {
        ckpt_fail(err, status, "%s: ranks could not agree (communication failed)", what);
        return status;
    }
    if (max == 0)
        return ZERO_OK;
    root = world - (int)max;
    memset(buf, 0, sizeof(buf));
    if (rank == root)
        snprintf(buf, sizeof(buf), "%d %s", (int)err->status, err->msg);
    status = bcast_bytes(comm, root, buf, sizeof(buf));
    if (status != ZERO_OK) {
        ckpt_fail(err, status, "%s: rank %d failed and its error could not be received", what, root);
        return status;
    }
    buf[sizeof(buf) - 1] = '\0';
    if (rank != root) {
        char *msg = NULL;
        long code = strtol(buf, &msg, 10);
        if (code >= 0 || msg == NULL)
            code = ZERO_ERR_INTERNAL;
        while (msg != NULL && *msg == ' ')
            msg++;
        if (err->status == ZERO_OK) {
            ZERO_LOG_ERROR("%s failed on rank %d: %s", what, root, msg ? msg : "");
            err->status = (zero_status_t)code;
            snprintf(err->msg, sizeof(err->msg), "rank %d: %s", root, msg ? msg : "");
            err->agreed = 1;
        }
        return (zero_status_t)code;
    }
    agreed_message(err, rank);
    return err->status;
}

static zero_status_t agree_tag(zero_comm_h comm, const char *tag, zero_tag_validation_t mode, char *tag0,
                               ckpt_err_t *err)
{
    int rank = zero_comm_rank(comm);
    uint8_t mismatch, any = 0;
    zero_status_t status;

    memset(tag0, 0, ZERO_CKPT_TAG_MAX + 1);
    if (rank == 0)
        memcpy(tag0, tag, strlen(tag));
    if (zero_comm_size(comm) == 1)
        return ZERO_OK;
    if ((status = bcast_bytes(comm, 0, tag0, ZERO_CKPT_TAG_MAX + 1)) != ZERO_OK) {
        ckpt_fail(err, status, "checkpoint save: cannot broadcast rank 0's tag");
        return status;
    }
    mismatch = strcmp(tag0, tag) != 0;
    if ((status = zero_comm_allreduce(comm, &mismatch, &any, 1, ZERO_U8, ZERO_COMM_MAX, ZERO_MEM_HOST)) != ZERO_OK) {
        ckpt_fail(err, status, "checkpoint save: cannot compare tags across ranks");
        return status;
    }
    if (any == 0)
        return ZERO_OK;
    if (mode == ZERO_TAG_VALIDATION_FAIL) {
        if (mismatch != 0)
            ckpt_fail(err, ZERO_ERR_INVALID_ARG, "checkpoint tag differs across ranks: rank %d has '%s', rank 0 has "
                      "'%s' (checkpoint.tag_validation is Fail)", rank, tag, tag0);
        return ckpt_agree(comm, err, "checkpoint tag validation");
    }
    if (mode == ZERO_TAG_VALIDATION_WARN && mismatch != 0)
        ZERO_LOG_WARN("checkpoint tag differs across ranks: this rank has '%s', rank 0 has '%s'; saving under "
                      "rank 0's tag", tag, tag0);
    return ZERO_OK;
}

zero_status_t zero_ckpt_save(zero_comm_h comm, const char *dir, const zero_ckpt_save_params_t *params,
                             const zero_layout_t *layout, int own_rank, const zero_ckpt_meta_t *meta,
                             const zero_ckpt_group_data_t *groups)
{
    ckpt_err_t err = {0};
    char why[128], tag[ZERO_CKPT_TAG_MAX + 1], tmp_name[ZERO_CKPT_TAG_MAX + 64], fname[64];
    char *tmp_path = NULL, *file_path = NULL;
    int rank, world, shard = -1, have_tmp = 0;
    int64_t need;   /* bytes the rank files of every rank need together */
    zero_status_t status;

    if (comm == NULL) {
        ZERO_LOG_ERROR("zero_ckpt_save: NULL communicator");
        return ZERO_ERR_INVALID_ARG;
    }
    rank = zero_comm_rank(comm);
    world = zero_comm_size(comm);
    zero_hdf5_quiet();

    /* 1. arguments and tag, checked everywhere (zero_ckpt_save_fail_local
     * joins the first agreement on a rank that cannot save) */
    if (dir == NULL || params == NULL || layout == NULL || meta == NULL || dir[0] == '\0')
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint save: NULL or empty argument");
    else if (zero_ckpt_tag_check(params->tag, why, sizeof(why)) != ZERO_OK)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "invalid checkpoint tag '%s': %s",
                  params->tag ? params->tag : "(null)", why);
    else if (layout->world_size != world && layout->world_size != 1)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint save: layout of %d ranks in a job of %d",
                  layout->world_size, world);
    else if (own_rank < 0 || own_rank >= layout->world_size)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint save: own_rank %d outside the layout's %d ranks",
                  own_rank, layout->world_size);
    else if (meta->num_states < 0 || meta->num_states > ZERO_CKPT_MAX_STATES)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint save: num_states %d out of range", meta->num_states);
    if ((status = ckpt_agree(comm, &err, "checkpoint save")) != ZERO_OK)
        goto cleanup;
    if ((status = agree_tag(comm, params->tag, params->tag_validation, tag, &err)) != ZERO_OK)
        goto cleanup;
    if (world == 1)
        snprintf(tag, sizeof(tag), "%s", params->tag);
    /* Stage 0 (layout of one rank): process rank 0 writes the data. */
    shard = layout->world_size == world ? own_rank : (rank == 0 ? 0 : -1);

    /* 2. rank 0 creates the temporary directory; everyone learns its name */
    need = (int64_t)ckpt_file_size_estimate(layout, shard, meta);
    if ((uint64_t)need > (uint64_t)INT64_MAX / (uint64_t)world)   /* an estimate no disk holds: keep the sum exact */
        need = INT64_MAX / world;
    if (world > 1 && (status = zero_comm_allreduce(comm, &need, &need, 1, ZERO_I64, ZERO_COMM_SUM,
                                                   ZERO_MEM_HOST)) != ZERO_OK) {
        ckpt_fail(&err, status, "checkpoint save: cannot sum the ranks' file sizes");
        goto cleanup;
    }
    memset(tmp_name, 0, sizeof(tmp_name));
    if (rank == 0)
        ckpt_make_tmp(dir, tag, (uint64_t)need, tmp_name, sizeof(tmp_name), &err);
    if ((status = ckpt_agree(comm, &err, "checkpoint save")) != ZERO_OK)
        goto cleanup;
    have_tmp = 1;
    if (world > 1 && (status = bcast_bytes(comm, 0, tmp_name, sizeof(tmp_name))) != ZERO_OK) {
        ckpt_fail(&err, status, "checkpoint save: cannot broadcast the temporary directory name");
        goto cleanup;
    }
    tmp_name[sizeof(tmp_name) - 1] = '\0';

    /* 3. every rank writes and syncs its file; rank 0 the sidecar */
    ckpt_rank_file_name(rank, fname, sizeof(fname));
    tmp_path = ckpt_path_join(dir, tmp_name);
    file_path = tmp_path ? ckpt_path_join(tmp_path, fname) : NULL;
    if (file_path == NULL) {
        ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint save: out of memory");
    } else {
        ckpt_file_desc_t desc = {world, rank, shard, tag, layout, meta, groups,
                                 rank == 0 ? params->client_sd_json : NULL};
        if (ckpt_write_rank_file(file_path, &desc, &err) == ZERO_OK && rank == 0) {
            char *sd = ckpt_path_join(tmp_path, CKPT_CLIENT_SD);
            const char *json = params->client_sd_json ? params->client_sd_json : "null";
            if (sd == NULL)
                ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint save: out of memory");
            else
                ckpt_write_file(sd, json, strlen(json), &err);
            zero_free(sd);
        }
    }
    ckpt_crash_point("files_written");
    if ((status = ckpt_agree(comm, &err, "checkpoint save")) != ZERO_OK)
        goto cleanup;

    /* 4. rank 0 commits; everyone learns the outcome */
    if (rank == 0) {
        have_tmp = 0;   /* the commit owns it now: a failed commit undoes itself and removes it */
        ckpt_commit(dir, tmp_name, tag, params->keep_last, &err);
    }
    have_tmp = 0;
    status = ckpt_agree(comm, &err, "checkpoint commit");
    if (status == ZERO_OK)
        ZERO_LOG_DEBUG("saved checkpoint %s/%s", dir, tag);
cleanup:
    if (status != ZERO_OK && params != NULL && params->error_msg != NULL && params->error_msg_size > 0)
        snprintf(params->error_msg, params->error_msg_size, "%s", err.msg);
    if (have_tmp && rank == 0 && tmp_path != NULL) {
        ckpt_err_t ignore = {0};
        ckpt_remove_tree(tmp_path, &ignore);
    }
    zero_free(file_path);
    zero_free(tmp_path);
    return status;
}

zero_status_t zero_ckpt_save_fail_local(zero_comm_h comm, zero_status_t status, const char *message, char *error_msg,
                                        size_t error_msg_size)
{
    ckpt_err_t err = {0};
    if (comm == NULL || status == ZERO_OK) {
        ZERO_LOG_ERROR("zero_ckpt_save_fail_local: %s", comm == NULL ? "NULL communicator" : "status is ZERO_OK");
        return ZERO_ERR_INVALID_ARG;
    }
    ckpt_fail(&err, status, "%s", message != NULL ? message : "the caller failed before the save");
    status = ckpt_agree(comm, &err, "checkpoint save");   /* zero_ckpt_save's first agreement */
    if (error_msg != NULL && error_msg_size > 0)
        snprintf(error_msg, error_msg_size, "%s", err.msg);
    return status;
}

static int state_index(const zero_ckpt_meta_t *m, const char *name)
{
    for (int k = 0; k < m->num_states; k++)
        if (strcmp(m->state_names[k], name) == 0)
            return k;
    return -1;
}

/* Same model: every parameter of @p cur exists in @p old with the same dtype and shape, and vice versa. */
static int check_model(const char *path, const zero_layout_t *old, const zero_layout_t *cur, int *map, ckpt_err_t *err)
{
    for (int i = 0; i < cur->num_params; i++) {
        const zero_layout_param_t *p = &cur->params[i];
        int j = zero_layout_find(old, p->name);
        const zero_layout_param_t *q;
        if (j < 0) {
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "checkpoint %s does not match the model: parameter '%s' is not in it",
                      path, p->name);
            return -1;
        }
        q = &old->params[j];
        if (q->dtype != p->dtype || q->ndim != p->ndim ||
            memcmp(q->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) != 0) {
            char a[128] = "", b[128] = "";
            size_t ua = 0, ub = 0;
            for (int k = 0; k < q->ndim && ua < sizeof(a); k++)
                ua += (size_t)snprintf(a + ua, sizeof(a) - ua, "%s%lld", k ? "x" : "", (long long)q->shape[k]);
            for (int k = 0; k < p->ndim && ub < sizeof(b); k++)
                ub += (size_t)snprintf(b + ub, sizeof(b) - ub, "%s%lld", k ? "x" : "", (long long)p->shape[k]);
            ckpt_fail(err, ZERO_ERR_CHECKPOINT, "checkpoint %s does not match the model: parameter '%s' is %s [%s] "
                      "there but %s [%s] here", path, p->name, zero_dtype_string(q->dtype), a,
                      zero_dtype_string(p->dtype), b);
            return -1;
        }
        map[i] = j;
    }
    if (old->num_params != cur->num_params) {
        for (int j = 0; j < old->num_params; j++) {
            if (zero_layout_find(cur, old->params[j].name) < 0) {
                ckpt_fail(err, ZERO_ERR_CHECKPOINT, "checkpoint %s does not match the model: it has parameter '%s' "
                          "that the model lacks", path, old->params[j].name);
                return -1;
            }
        }
    }
    return 0;
}

static int groups_all_or_none_streamed(const zero_layout_t *layout, const zero_ckpt_group_data_t *groups)
{
    for (int g = 1; g < layout->num_groups; g++)
        if ((groups[g].stream != NULL) != (groups[0].stream != NULL))
            return 0;
    return 1;
}

/*
 * Streamed groups (zero_ckpt_stream_t), after every chunk was verified: this
 * rank's segments a window of ZERO_CKPT_STREAM_ELEMS shard elements at a
 * time, read again into a window buffer (zero where no segment lies: the
 * padding) and handed to the stream's write; states the caller keeps but
 * this load does not read (k >= nstates) are written as zeros.
 */
static void stream_groups(zero_ckpt_reader_t *rd, ckpt_plan_t *plan, const zero_layout_t *layout, int own_rank,
                          const int *map, const int *state_src, int nstates, int num_states,
                          zero_ckpt_group_data_t *out_groups, ckpt_err_t *err)
{
    const size_t window = ZERO_CKPT_STREAM_ELEMS;
    float *win = NULL;
    zero_layout_segment_t *segs = NULL;
    if (zero_mem_alloc(ZERO_MEM_HOST, (size_t)(1 + nstates) * window * sizeof(float), "ckpt load window",
                       (void **)&win) != ZERO_OK) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory for a window of %zu elements", window);
        return;
    }
    for (int g = 0; g < layout->num_groups && err->status == ZERO_OK; g++) {
        const zero_ckpt_stream_t *st = out_groups[g].stream;
        size_t n = layout->groups[g].shard_length, count = 0;
        zero_layout_rank_segments(layout, g, own_rank, NULL, 0, &count);
        zero_free(segs);
        if ((segs = zero_malloc((count > 0 ? count : 1) * sizeof(*segs))) == NULL) {
            ckpt_fail(err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
            break;
        }
        zero_layout_rank_segments(layout, g, own_rank, segs, count, &count);
        for (size_t w0 = 0; w0 < n && err->status == ZERO_OK; w0 += window) {
            size_t wn = n - w0 < window ? n - w0 : window;
            for (int k = -1; k < nstates && err->status == ZERO_OK; k++) {
                float *buf = win + (size_t)(k + 1) * window;
                memset(buf, 0, wn * sizeof(float));
                for (size_t s = 0; s < count && err->status == ZERO_OK; s++) {
                    size_t lo = segs[s].shard_offset > w0 ? segs[s].shard_offset : w0;
                    size_t hi = segs[s].shard_offset + segs[s].length < w0 + wn ? segs[s].shard_offset + segs[s].length
                                                                                : w0 + wn;
                    if (lo < hi)
                        ckpt_reader_read_err(rd, map[segs[s].param], k < 0 ? -1 : state_src[k],
                                             segs[s].param_offset + (lo - segs[s].shard_offset), hi - lo,
                                             buf + (lo - w0), err);
                }
            }
            if (err->status == ZERO_OK)
                ckpt_plan_run(plan, CKPT_LOAD_READ_THREADS, err);
            ckpt_plan_clear(plan);
            for (int a = 0; a <= num_states && err->status == ZERO_OK; a++) {
                zero_status_t status;
                if (a == nstates + 1)
                    memset(win, 0, wn * sizeof(float));   /* not loaded: zeros (window 0 is written already) */
                status = st->write(st->ctx, g, a, w0, wn, a <= nstates ? win + (size_t)a * window : win);
                if (status != ZERO_OK)
                    ckpt_fail(err, status, "checkpoint load: cannot store %s of group %d [%zu, +%zu) in the "
                              "optimizer state store (its earlier ranges are already replaced)",
                              a == 0 ? "the master weights" : "an optimizer state", g, w0, wn);
            }
        }
    }
    zero_free(segs);
    zero_mem_free(win);
}

/* Zeroes the padding of @p arr (1 + nstates arrays of group @p g): what no
 * segment of this rank covers (segments come in flat order). */
static void zero_padding(const zero_layout_segment_t *segs, size_t count, size_t n, float *const *arr, int nstates)
{
    for (int k = 0; k <= nstates; k++) {
        size_t at = 0;
        for (size_t s = 0; s <= count && arr[k] != NULL; s++) {
            size_t next = s < count ? segs[s].shard_offset : n;
            if (next > at)
                memset(arr[k] + at, 0, (next - at) * sizeof(float));
            if (s < count && segs[s].shard_offset + segs[s].length > at)
                at = segs[s].shard_offset + segs[s].length;
        }
    }
}

zero_status_t zero_ckpt_load(zero_comm_h comm, const char *dir, const zero_ckpt_load_params_t *params,
                             const zero_layout_t *layout, int own_rank, zero_ckpt_group_data_t *out_groups,
                             zero_ckpt_meta_t *meta_p, char **client_sd_json_p, char **tag_p)
{
    ckpt_err_t err = {0};
    char tag[ZERO_CKPT_TAG_MAX + 1];
    zero_ckpt_reader_t *rd = NULL;
    const zero_layout_t *old;
    int *map = NULL, rank, nstates = 0, state_src[ZERO_CKPT_MAX_STATES];
    zero_layout_segment_t *segs = NULL, *group_segs[ZERO_DTYPE_COUNT] = {0};
    size_t group_count[ZERO_DTYPE_COUNT] = {0};
    ckpt_plan_t *plan = NULL;
    char *client_sd = NULL, *tag_out = NULL, *sd_path = NULL, *cfg_copy = NULL;
    int streamed = 0;
    zero_status_t status;

    if (comm == NULL) {
        ZERO_LOG_ERROR("zero_ckpt_load: NULL communicator");
        return ZERO_ERR_INVALID_ARG;
    }
    if (layout != NULL && out_groups != NULL && layout->num_groups > 0)
        streamed = out_groups[0].stream != NULL;
    rank = zero_comm_rank(comm);
    zero_hdf5_quiet();

    /* 1. arguments; rank 0 resolves the tag and every rank uses it */
    memset(tag, 0, sizeof(tag));
    if (dir == NULL || params == NULL || layout == NULL || out_groups == NULL)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint load: NULL argument");
    else if (own_rank < 0 || own_rank >= layout->world_size)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint load: own_rank %d outside the layout's %d ranks", own_rank,
                  layout->world_size);
    else if (params->num_states < 0 || params->num_states > ZERO_CKPT_MAX_STATES)
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint load: num_states %d out of range", params->num_states);
    else if (!groups_all_or_none_streamed(layout, out_groups))
        ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "checkpoint load: some groups are streamed and some are not");
    else if (rank == 0 && params->tag == NULL) {
        char *latest = NULL;
        if (ckpt_read_latest_err(dir, &latest, &err) == ZERO_OK)
            snprintf(tag, sizeof(tag), "%s", latest);
        zero_free(latest);
    } else if (rank == 0) {
        char why[128];
        if (zero_ckpt_tag_check(params->tag, why, sizeof(why)) != ZERO_OK)
            ckpt_fail(&err, ZERO_ERR_INVALID_ARG, "invalid checkpoint tag '%s': %s", params->tag, why);
        else
            snprintf(tag, sizeof(tag), "%s", params->tag);
    }
    if ((status = ckpt_agree(comm, &err, "checkpoint load")) != ZERO_OK)
        return status;
    if (zero_comm_size(comm) > 1 && (status = bcast_bytes(comm, 0, tag, sizeof(tag))) != ZERO_OK) {
        ZERO_LOG_ERROR("checkpoint load: cannot broadcast the tag");
        return status;
    }
    tag[ZERO_CKPT_TAG_MAX] = '\0';

    /* 2. open every shard, check format, model and optimizer */
    nstates = params->load_optimizer_states ? params->num_states : 0;
    /* rank 0 checks every rank file; the others open the files they read */
    if (ckpt_reader_open_err(dir, tag, rank == 0, &rd, &err) == ZERO_OK) {
        if (rank == 0)
            ckpt_reader_warn_unchecked(rd);   /* once per load, not once per rank */
        old = zero_ckpt_reader_layout(rd);
        map = zero_malloc(sizeof(int) * (size_t)(layout->num_params > 0 ? layout->num_params : 1));
        if (map == NULL)
            ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
        else if (check_model(ckpt_reader_path(rd), old, layout, map, &err) == 0) {
            const zero_ckpt_meta_t *m = zero_ckpt_reader_meta(rd);
            for (int k = 0; k < nstates; k++) {
                if (params->state_names[k] == NULL || (state_src[k] = state_index(m, params->state_names[k])) < 0) {
                    ckpt_fail(&err, ZERO_ERR_CHECKPOINT, "checkpoint %s has no optimizer state '%s' (saved with %s; "
                              "load without optimizer states to use its weights)", ckpt_reader_path(rd),
                              params->state_names[k] ? params->state_names[k] : "(null)", m->optimizer);
                    break;
                }
            }
            if (err.status == ZERO_OK && params->check_meta != NULL) {
                char why[ZERO_CKPT_ERROR_MSG_MAX] = "";
                zero_status_t st = params->check_meta(m, old, params->check_meta_user, why, sizeof(why));
                if (st != ZERO_OK)
                    ckpt_fail(&err, st, "checkpoint %s: %s", ckpt_reader_path(rd), why);
            }
        }
    }
    if (err.status == ZERO_OK) {
        /* the shard data is read in one batch per pass, on several threads (ckpt_plan.c) */
        if ((plan = ckpt_plan_create()) == NULL)
            ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
        else
            ckpt_reader_set_plan(rd, plan);
    }
    if ((status = ckpt_agree(comm, &err, "checkpoint load")) != ZERO_OK)
        goto out;

    /* 2b. verify-first (and streamed groups): read and check every chunk this rank needs, writing nothing */
    if (params->mode == ZERO_CKPT_LOAD_VERIFY_FIRST || streamed) {
        for (int g = 0; g < layout->num_groups && err.status == ZERO_OK; g++) {
            size_t count = 0;
            zero_layout_rank_segments(layout, g, own_rank, NULL, 0, &count);
            zero_free(segs);
            if ((segs = zero_malloc((count > 0 ? count : 1) * sizeof(*segs))) == NULL) {
                ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
                break;
            }
            zero_layout_rank_segments(layout, g, own_rank, segs, count, &count);
            for (int k = -1; k < nstates && err.status == ZERO_OK; k++)
                for (size_t s = 0; s < count && err.status == ZERO_OK; s++)
                    ckpt_reader_read_err(rd, map[segs[s].param], k < 0 ? -1 : state_src[k], segs[s].param_offset,
                                         segs[s].length, NULL, &err);
        }
        if (err.status == ZERO_OK)
            ckpt_plan_run(plan, CKPT_LOAD_READ_THREADS, &err);
        ckpt_plan_clear(plan);
        if ((status = ckpt_agree(comm, &err, "checkpoint load")) != ZERO_OK)
            goto out;
    }

    /* 3. read this rank's segments and the sidecar. The safe (scratch) mode
     * reads and verifies into the plan's keeping and writes the caller's
     * arrays only after every rank agreed (step 4); the others write them now.
     * Streamed groups are read in step 4. */
    if (plan != NULL)
        ckpt_plan_set_hold(plan, params->mode == ZERO_CKPT_LOAD_SCRATCH && !streamed);
    for (int g = 0; g < layout->num_groups && err.status == ZERO_OK && !streamed; g++) {
        size_t n = layout->groups[g].shard_length, count = 0;
        float *arr[1 + ZERO_CKPT_MAX_STATES] = {0};
        arr[0] = out_groups[g].master;
        for (int k = 0; k < nstates; k++)
            arr[k + 1] = out_groups[g].state[k];
        zero_layout_segment_t *gs;
        zero_layout_rank_segments(layout, g, own_rank, NULL, 0, &count);
        /* kept per group: the safe mode zeroes the padding after the commit */
        gs = group_segs[g] = zero_malloc((count > 0 ? count : 1) * sizeof(*gs));
        if (gs == NULL) {
            ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
            break;
        }
        zero_layout_rank_segments(layout, g, own_rank, gs, count, &count);
        group_count[g] = count;
        if (params->mode != ZERO_CKPT_LOAD_SCRATCH)
            zero_padding(gs, count, n, arr, nstates);
        /* one array at a time, so that each dataset is read front to back (sequential I/O) */
        for (int k = -1; k < nstates && err.status == ZERO_OK; k++) {
            for (size_t s = 0; s < count && err.status == ZERO_OK && arr[k + 1] != NULL; s++) {
                const zero_layout_segment_t *sg = &gs[s];
                ckpt_reader_read_err(rd, map[sg->param], k < 0 ? -1 : state_src[k], sg->param_offset, sg->length,
                                     arr[k + 1] + sg->shard_offset, &err);
            }
        }
    }
    if (err.status == ZERO_OK && !streamed)
        ckpt_plan_run(plan, CKPT_LOAD_READ_THREADS, &err);
    if (err.status == ZERO_OK) {
        size_t sd_len = 0;
        sd_path = zero_asprintf("%s/%s", ckpt_reader_path(rd), CKPT_CLIENT_SD);
        if (sd_path == NULL)
            ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
        else if (ckpt_read_file(sd_path, &client_sd, &sd_len, &err) == ZERO_OK &&
                 ckpt_reader_check_sidecar(rd, sd_path, client_sd, sd_len, &err) == ZERO_OK) {
            if (strlen(client_sd) != sd_len)   /* returned as a C string: a NUL would silently cut it short */
                ckpt_fail(&err, ZERO_ERR_CHECKPOINT, "%s holds a NUL byte at offset %zu (a client_sd is JSON "
                          "text; the file is corrupt)", sd_path, strlen(client_sd));
            else if ((tag_out = zero_strdup(tag)) == NULL)
                ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
        }
    }
    if (meta_p != NULL && err.status == ZERO_OK) {
        const char *cfg = zero_ckpt_reader_meta(rd)->config_json;
        if (cfg != NULL && (cfg_copy = zero_strdup(cfg)) == NULL)
            ckpt_fail(&err, ZERO_ERR_NO_MEMORY, "checkpoint load: out of memory");
    }
    if ((status = ckpt_agree(comm, &err, "checkpoint load")) != ZERO_OK)
        goto out;

    /* 4. everyone succeeded: commit to the caller's buffers (streamed groups
     * now; a failure here is agreed on again) */
    if (streamed) {
        stream_groups(rd, plan, layout, own_rank, map, state_src, nstates, params->num_states, out_groups, &err);
        if ((status = ckpt_agree(comm, &err, "checkpoint load")) != ZERO_OK)
            goto out;
    }
    if (meta_p != NULL) {
        zero_ckpt_meta_t m = *zero_ckpt_reader_meta(rd);
        m.param_groups = NULL;   /* the reader's; check_meta has seen it */
        m.config_json = cfg_copy;
        cfg_copy = NULL;
        *meta_p = m;
    }
    if (params->mode == ZERO_CKPT_LOAD_SCRATCH && !streamed)
        ckpt_plan_commit(plan, CKPT_LOAD_READ_THREADS);   /* held chunks into the caller's arrays */
    for (int g = 0; g < layout->num_groups && !streamed; g++) {
        size_t n = layout->groups[g].shard_length;
        if (params->mode == ZERO_CKPT_LOAD_SCRATCH) {
            float *arr[1 + ZERO_CKPT_MAX_STATES] = {0};
            arr[0] = out_groups[g].master;
            for (int k = 0; k < nstates; k++)
                arr[k + 1] = out_groups[g].state[k];
            zero_padding(group_segs[g], group_count[g], n, arr, nstates);
        }
        for (int k = 0; k < params->num_states; k++) {
            if (out_groups[g].state[k] == NULL)
                continue;
            if (k >= nstates)
                memset(out_groups[g].state[k], 0, n * sizeof(float));
        }
    }
    if (client_sd_json_p != NULL) {
        *client_sd_json_p = client_sd;
        client_sd = NULL;
    }
    if (tag_p != NULL) {
        *tag_p = tag_out;
        tag_out = NULL;
    }
out:
    for (int g = 0; g < ZERO_DTYPE_COUNT; g++)
        zero_free(group_segs[g]);
    zero_free(segs);
    zero_free(map);
    zero_free(sd_path);
    zero_free(client_sd);
    zero_free(tag_out);
    zero_free(cfg_copy);
    zero_ckpt_reader_close(rd);
    ckpt_plan_destroy(plan);
    return status;
}
