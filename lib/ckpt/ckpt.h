/*
 * Sharded HDF5 checkpoints (DESIGN.md section 6, docs/checkpoint-format.md).
 *
 * Engine-agnostic: the caller (lib/zero) describes what to save with plain
 * descriptors -- the partition layout it trains with, which of the layout's
 * ranks it is, and per dtype group the fp32 master weights and optimizer state
 * arrays of its owned range -- plus a metadata struct of scalars and strings.
 * Nothing here knows the engine.
 *
 *   <dir>/latest                      text: the tag of the last complete checkpoint
 *   <dir>/<tag>/zero_rank_<RRRRR>.h5  one file per process rank
 *   <dir>/<tag>/client_sd.json        the trainer's client_sd, verbatim
 *
 * Process ranks and layout ranks: the file of process rank r is
 * zero_rank_<r>.h5. When the layout's world size equals the job's (stages 1-3)
 * process rank r owns layout rank r and writes its shard. At stage 0 the
 * layout has world size 1: every process holds the same full copy, process
 * rank 0 writes it as shard 0 and the other ranks write metadata-only files.
 * So shard s of a checkpoint always lives in zero_rank_<s>.h5.
 *
 * Both calls are collective over @p comm (every rank calls them, with the same
 * directory); every failure is agreed on, so all ranks return the same status,
 * and every rank logs the failing rank's message (naming file and dataset).
 * The directory must be on a filesystem every rank sees (a shared filesystem
 * for multi-node jobs), with POSIX rename semantics.
 *
 * Thread safety: calls on different communicators may run concurrently; HDF5
 * (serial build) is not thread-safe, so no other thread of the process may use
 * HDF5 during a call.
 */
#ifndef ZERO_CKPT_CKPT_H
#define ZERO_CKPT_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <zero/comm.h>
#include <zero/config.h>
#include <zero/status.h>

#include "partition/layout.h"

/* Version 2 adds the metadata digest (attribute meta_digest) and the sidecar's
 * digest; version 1 checkpoints still load, their metadata unchecked. */
#define ZERO_CKPT_FORMAT_VERSION 2
#define ZERO_CKPT_FORMAT_VERSION_MIN 1   /* the oldest version this libzero loads */
#define ZERO_CKPT_TAG_MAX 200         /* bytes, without the terminating NUL */
#define ZERO_CKPT_MAX_STATES 2        /* optimizer state arrays per element (Adam: 2) */
#define ZERO_CKPT_NAME_MAX 64         /* optimizer and state names, with the NUL */
#define ZERO_CKPT_ERROR_MSG_MAX 512   /* the longest message zero_ckpt_save reports, with the NUL */

/*
 * Streamed access to a group's arrays, for a caller whose arrays are not in
 * its memory as a whole (optimizer state on NVMe or on servers): lib/ckpt
 * asks for, or hands over, one range of one array at a time, of at most
 * ZERO_CKPT_STREAM_ELEMS elements. @c array is 0 for the master weights and
 * 1 + k for optimizer state k. The callbacks run on the thread that called
 * zero_ckpt_save / zero_ckpt_load; an error they return (logged by them) fails
 * the call on every rank.
 */
#define ZERO_CKPT_STREAM_ELEMS ((size_t)1 << 20)
typedef struct zero_ckpt_stream {
    /* save: copies elements [begin, begin + count) of @p array of @p group into @p out */
    zero_status_t (*read)(void *ctx, int group, int array, size_t begin, size_t count, float *out);
    /* load: stores @p in as elements [begin, begin + count) of @p array of @p group */
    zero_status_t (*write)(void *ctx, int group, int array, size_t begin, size_t count, const float *in);
    void *ctx;
} zero_ckpt_stream_t;

/* One per dtype group of the layout (index = group index). Arrays are fp32,
 * [shard_length] of the group in the layout (the rank's owned range, padding
 * included; padding is saved as given and loaded as zero). With @c stream
 * set, the arrays are not used (leave them NULL): every element goes
 * through the stream. */
typedef struct zero_ckpt_group_data {
    float *master;                           /* fp32 master weights */
    float *state[ZERO_CKPT_MAX_STATES];      /* optimizer states, NULL past num_states */
    const zero_ckpt_stream_t *stream;        /* NULL: the arrays above */
} zero_ckpt_group_data_t;

/* Everything besides tensors. On save the caller fills it (strings are read
 * only); on load zero_ckpt_load fills it and config_json is allocated (free it
 * with zero_ckpt_meta_clear). */
typedef struct zero_ckpt_meta {
    int stage;                                         /* ZeRO stage 0-3 */
    int world_size;                                    /* load: process ranks that saved it; ignored on save */
    char *config_json;                                 /* effective config as JSON, or NULL */
    char optimizer[ZERO_CKPT_NAME_MAX];                /* "AdamW", "SGD", ... */
    int num_states;                                    /* 0 .. ZERO_CKPT_MAX_STATES */
    char state_names[ZERO_CKPT_MAX_STATES][ZERO_CKPT_NAME_MAX]; /* "exp_avg", "exp_avg_sq" */
    uint64_t global_steps, micro_steps, skipped_steps;
    /* loss scaler (DeepSpeed's DynamicLossScaler state) */
    double loss_scale;
    int64_t scaler_cur_iter, scaler_last_overflow_iter;
    int32_t scaler_cur_hysteresis;
    /* LR schedule */
    int64_t lr_last_batch_iteration;
    double lr, momentum;
    /* The caller's optimizer parameter groups as text (the engine's format:
     * docs/checkpoint.md), stored as the dataset "param_groups"; NULL on save
     * writes none, and on load means the checkpoint has none (saved before
     * parameter groups existed). The reader owns it; zero_ckpt_load does not
     * hand it out (see check_meta). */
    char *param_groups;
} zero_ckpt_meta_t;

/* Frees what zero_ckpt_load allocated in @p meta (config_json); NULL-safe. */
void zero_ckpt_meta_clear(zero_ckpt_meta_t *meta);

typedef struct zero_ckpt_save_params {
    const char *tag;                          /* required; the engine passes "global_step<N>" by default */
    zero_tag_validation_t tag_validation;     /* what differing tags across ranks do */
    int keep_last;                            /* > 0: keep only the newest N tags (never the latest); 0: keep all */
    const char *client_sd_json;               /* written verbatim as client_sd.json; NULL writes "null" */
    /* Optional (NULL: none): on failure after the arguments were agreed on,
     * receives the failing rank's message, the same on every rank:
     * "rank R: <file>: <what>: <errno text>" (truncated to error_msg_size). */
    char *error_msg;
    size_t error_msg_size;
} zero_ckpt_save_params_t;

/*
 * Saves a checkpoint (collective). @p layout is the caller's layout, @p
 * own_rank its index in it (at stage 0: layout of world 1, own_rank 0 on every
 * process; only process rank 0 writes data). @p groups has layout->num_groups
 * entries (ignored on ranks that write no data).
 *
 * Tags: validated by zero_ckpt_tag_check on every rank; rank 0's tag is
 * compared with every rank's: a difference fails everywhere with
 * ZERO_TAG_VALIDATION_FAIL, is logged (WARN) or silently accepted (IGNORE);
 * rank 0's tag is used in every case.
 *
 * Commit protocol: files go into <dir>/.tmp-<tag>-<token>/ and are fsynced;
 * all ranks agree that every write succeeded; rank 0 then renames the
 * directory into place (an existing <dir>/<tag> is swapped out atomically
 * with renameat2(RENAME_EXCHANGE) and removed only afterwards), fsyncs <dir>,
 * and replaces <dir>/latest atomically (temp file, fsync, rename, fsync dir).
 * On failure the temporary directory is removed and nothing else changes.
 *
 * Errors: ZERO_ERR_INVALID_ARG (bad tag, tag mismatch under FAIL, bad args),
 * ZERO_ERR_IO (filesystem: errno text and path logged), ZERO_ERR_HDF5,
 * ZERO_ERR_COMM / ZERO_ERR_TIMEOUT (agreement failed), ZERO_ERR_NO_MEMORY.
 */
zero_status_t zero_ckpt_save(zero_comm_h comm, const char *dir, const zero_ckpt_save_params_t *params,
                             const zero_layout_t *layout, int own_rank, const zero_ckpt_meta_t *meta,
                             const zero_ckpt_group_data_t *groups);

/*
 * In place of zero_ckpt_save on a rank whose caller failed before it could
 * save (@p status, not ZERO_OK, and @p message: its own cause): joins the
 * save's first agreement, which the other ranks' zero_ckpt_save runs before
 * anything is written, so every rank's save fails at once with this status
 * and "rank R: <message>" (the lowest failing rank's) rather than waiting
 * for this rank until ZERO_COMM_TIMEOUT. @p error_msg (may be NULL) receives
 * that message here too. Returns the agreed status. Collective, matching
 * zero_ckpt_save's step 1 (ckpt.c): keep the two in step.
 */
zero_status_t zero_ckpt_save_fail_local(zero_comm_h comm, zero_status_t status, const char *message, char *error_msg,
                                        size_t error_msg_size);

/* How zero_ckpt_load puts the data into the caller's arrays. */
typedef enum zero_ckpt_load_mode {
    /* Read into library scratch (about the size of the outputs, held for the
     * call), copy out after every rank succeeded: a failed load leaves the
     * outputs untouched. */
    ZERO_CKPT_LOAD_SCRATCH = 0,
    /* Two passes, no scratch: first read and verify every needed chunk (nothing
     * written), agree, then read them again (normally from the page cache)
     * straight into the outputs. A failure in the first pass -- a missing,
     * truncated or corrupt file -- leaves the outputs untouched; only an I/O
     * error between the passes can leave them partly written (reported as
     * such). Re-reads from disk when the shard does not fit the page cache. */
    ZERO_CKPT_LOAD_VERIFY_FIRST = 1,
    /* One pass straight into the outputs, after every check that needs no data
     * passed on every rank: least memory and CPU; a corrupt chunk leaves the
     * outputs partly overwritten. */
    ZERO_CKPT_LOAD_DIRECT = 2
} zero_ckpt_load_mode_t;

typedef struct zero_ckpt_load_params {
    const char *tag;                 /* NULL: the tag named by <dir>/latest */
    int load_optimizer_states;       /* 0: states are returned as zeros (not read) */
    int num_states;                  /* the caller's optimizer: state arrays wanted in out_groups */
    const char *state_names[ZERO_CKPT_MAX_STATES];   /* their names; must match the checkpoint's when loading states */
    zero_ckpt_load_mode_t mode;      /* how the data reaches out_groups (see the enum) */
    /* Optional: called on every rank with the checkpoint's metadata once the
     * model and state names are checked, before any data is read or written;
     * a status other than ZERO_OK fails the load (agreed on by every rank, the
     * outputs untouched) with the message it wrote into @p why. */
    zero_status_t (*check_meta)(const zero_ckpt_meta_t *meta, const zero_layout_t *saved_layout, void *user,
                                char *why, size_t why_size);
    void *check_meta_user;
} zero_ckpt_load_params_t;

/*
 * Loads a checkpoint (collective), resharding it onto @p layout (any world
 * size, stage, bucket size or alignment; the model -- names, dtypes, shapes --
 * must match: a difference fails naming the parameter). For each segment this
 * rank owns in @p layout, exactly the chunks of the old shard files that hold
 * it are read, by a few threads of this call, each chunk's checksum verified.
 *
 * @p out_groups: layout->num_groups caller-allocated descriptors whose arrays
 * hold [shard_length] floats (state[k] for k < params->num_states), or
 * streams. A streamed group is loaded as ZERO_CKPT_LOAD_VERIFY_FIRST loads,
 * whatever the mode: every chunk is read and verified first (nothing
 * written), then read again a window of ZERO_CKPT_STREAM_ELEMS elements at a
 * time and handed to the stream's write, so the memory used stays a few
 * windows whatever the shard's size. With
 * the default mode (ZERO_CKPT_LOAD_SCRATCH) arrays are written only on success:
 * the data is read into library scratch and copied out only after every rank
 * has succeeded; the other modes trade that for memory and speed (see
 * zero_ckpt_load_mode_t). Padding elements are set to zero. @p meta_p, @p
 * client_sd_json_p (the sidecar verbatim, NUL-terminated; release with
 * zero_free) and @p tag_p (the tag loaded; zero_free) are likewise written only
 * on success; each may be NULL.
 *
 * Integrity (docs/checkpoint-format.md "Integrity"): every rank file's
 * metadata is checked against its digest (meta_digest) as the file is opened,
 * and the sidecar against the digest in rank 0's file, before anything is
 * returned or written; version-1 checkpoints, which have no digests, load with
 * one warning (rank 0).
 *
 * Errors (logged on every rank, naming file and dataset or attribute):
 * ZERO_ERR_NOT_FOUND (no latest, dangling latest, missing tag or shard file),
 * ZERO_ERR_CHECKPOINT (truncated or corrupt file, checksum or metadata digest
 * mismatch, damaged client_sd.json or latest, latest not a regular file, wrong
 * format version, different model, optimizer state mismatch), ZERO_ERR_INVALID_ARG,
 * ZERO_ERR_HDF5, ZERO_ERR_IO, ZERO_ERR_NO_MEMORY, ZERO_ERR_COMM.
 */
zero_status_t zero_ckpt_load(zero_comm_h comm, const char *dir, const zero_ckpt_load_params_t *params,
                             const zero_layout_t *layout, int own_rank, zero_ckpt_group_data_t *out_groups,
                             zero_ckpt_meta_t *meta_p, char **client_sd_json_p, char **tag_p);

/*
 * Checks that @p tag is a safe single path component: 1..ZERO_CKPT_TAG_MAX
 * bytes, not "." or "..", no '/', no control characters (bytes < 0x20, 0x7f),
 * not starting with ".tmp-" (reserved for commits in progress). On failure
 * writes the reason into @p why (may be NULL) and returns ZERO_ERR_INVALID_ARG
 * without logging. Thread-safe.
 */
zero_status_t zero_ckpt_tag_check(const char *tag, char *why, size_t why_size);

/*
 * Reads <dir>/latest into a new string (zero_free). latest must be a regular
 * file of at most 4 KiB (a FIFO is refused without opening it); its first line
 * is the tag, its second, when present, "sha256:<hex>" of the tag, which must
 * match (a latest with the tag alone is accepted, trailing whitespace
 * dropped). The tag must pass zero_ckpt_tag_check and <dir>/<tag> must exist.
 * Errors (logged, naming <dir>/latest): ZERO_ERR_NOT_FOUND (no latest, or
 * dangling), ZERO_ERR_CHECKPOINT (empty, invalid, damaged, not a regular
 * file), ZERO_ERR_IO, ZERO_ERR_NO_MEMORY.
 * Not collective.
 */
zero_status_t zero_ckpt_read_latest(const char *dir, char **tag_p);

/* ---- read-only access for tools (zero-ckpt-merge): not collective ---- */

typedef struct zero_ckpt_reader zero_ckpt_reader_t;

/*
 * Opens checkpoint <dir>/<tag> (tag NULL: latest) for reading: checks that
 * every shard file exists, has intact metadata (its digest), a format version
 * this libzero reads and the same map, and reads the map and metadata; warns
 * once for a version-1 checkpoint. Errors as zero_ckpt_load, logged.
 */
zero_status_t zero_ckpt_reader_open(const char *dir, const char *tag, zero_ckpt_reader_t **reader_p);
void zero_ckpt_reader_close(zero_ckpt_reader_t *reader);
/* The checkpoint's partition map (owned by the reader). */
const zero_layout_t *zero_ckpt_reader_layout(const zero_ckpt_reader_t *reader);
/* Its metadata (owned by the reader). */
const zero_ckpt_meta_t *zero_ckpt_reader_meta(const zero_ckpt_reader_t *reader);
/* The tag (owned by the reader). */
const char *zero_ckpt_reader_tag(const zero_ckpt_reader_t *reader);
/*
 * Reads elements [begin, begin + count) of parameter @p param's fp32 master
 * weights (state < 0) or of optimizer state @p state into @p out, from the
 * shard files that hold them. Errors: ZERO_ERR_CHECKPOINT (checksum, short
 * file; logged naming file and dataset), ZERO_ERR_INVALID_ARG.
 */
zero_status_t zero_ckpt_reader_read(zero_ckpt_reader_t *reader, int param, int state, size_t begin,
                                    size_t count, float *out);

#endif /* ZERO_CKPT_CKPT_H */
