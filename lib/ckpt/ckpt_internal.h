/*
 * lib/ckpt internals shared by ckpt.c (collective save/load), ckpt_fs.c
 * (tags, latest, the commit protocol) and ckpt_h5.c (the HDF5 file format),
 * and by tests/ckpt (which drive the steps one at a time).
 */
#ifndef ZERO_CKPT_CKPT_INTERNAL_H
#define ZERO_CKPT_CKPT_INTERNAL_H

#include "ckpt/ckpt.h"
#include "util/log.h"

#define ZERO_CKPT_STR_(x) #x
#define ZERO_CKPT_STRINGIFY(x) ZERO_CKPT_STR_(x)

#define CKPT_ERR_MSG ZERO_CKPT_ERROR_MSG_MAX
#define CKPT_TMP_PREFIX ".tmp-"
#define CKPT_CLIENT_SD "client_sd.json"
#define CKPT_LATEST "latest"
#define CKPT_LATEST_DIGEST_PREFIX "sha256:"   /* latest's second line: the tag's SHA-256 */
#define CKPT_LATEST_MAX_BYTES 4096             /* a longer latest is refused unread */
#define CKPT_FORMAT_NAME "libzero-checkpoint"
/* Elements per HDF5 chunk of a shard dataset (1 MiB of fp32): large enough that
 * per-chunk overhead stays in the noise, small enough that the chunk cache a
 * reader keeps per open dataset (CKPT_CHUNK_CACHE_CHUNKS chunks) stays small. */
#define CKPT_CHUNK_ELEMS ((size_t)1 << 18)
/* Read-ahead threads one reader may start (one per multi-chunk range read). */
#define CKPT_MAX_PREFETCHERS 64
#define CKPT_CHUNK_CACHE_CHUNKS 2

/* Test hook: ZERO_CKPT_TEST_CRASH_AT=<phase> makes the process _exit(86) when the
 * save reaches that phase (see docs/checkpoint-format.md). */
#define CKPT_CRASH_EXIT_CODE 86
void ckpt_crash_point(const char *phase);

/* The first error a rank hit: status and message (already logged). */
typedef struct ckpt_err {
    zero_status_t status;
    char msg[CKPT_ERR_MSG];
    int agreed;          /* msg has been agreed on and starts with "rank R: " (the rank that failed) */
} ckpt_err_t;

/* Records (first one wins) and logs an error. */
void ckpt_fail(ckpt_err_t *err, zero_status_t status, const char *fmt, ...) ZERO_PRINTF(3, 4);
/* As ckpt_fail, appending the cause of the last failed HDF5 call as
 * util/checks_hdf5.h captures it (zero_hdf5_last_error: the errno text of a
 * failed system call under HDF5, then the innermost HDF5 message). The
 * checkpoint code calls zero_hdf5_quiet() at each entry point. */
void ckpt_fail_h5(ckpt_err_t *err, zero_status_t status, const char *fmt, ...) ZERO_PRINTF(3, 4);
/* As ckpt_fail, appending strerror(errno), with errno's status (zero_status_from_errno). */
void ckpt_fail_errno(ckpt_err_t *err, const char *fmt, ...) ZERO_PRINTF(2, 3);

/* ---- ckpt_fletcher.c ---- */
/* HDF5's Fletcher-32 checksum of @p len bytes (what the fletcher32 filter
 * stores), bit-identical to libhdf5's H5_checksum_fletcher32, with the fastest
 * kernel this CPU runs (chosen once, thread-safe). */
uint32_t ckpt_fletcher32(const void *data, size_t len);
/* Whether @p tail (the 4 bytes stored after a chunk, little-endian) is the
 * Fletcher-32 of the chunk's @p bytes, as HDF5's filter decides: it also
 * accepts the byte-pair-swapped sum of files written before HDF5 1.6.3. */
int ckpt_chunk_checksum_ok(const void *data, size_t bytes, const unsigned char tail[4]);
typedef uint32_t (*ckpt_fletcher32_fn)(const void *data, size_t len);
/* One kernel by name, for tests and benchmarks: "portable" (plain C, any CPU),
 * "avx2" (NULL unless this is x86-64 and the CPU has AVX2), "avx512" (NULL
 * unless x86-64 with AVX-512F and BW), "auto" (the one ckpt_fletcher32 uses);
 * NULL for other names. Thread-safe. */
ckpt_fletcher32_fn ckpt_fletcher32_kernel(const char *name);
/* The name of the kernel ckpt_fletcher32 uses ("portable", "avx2", "avx512"). */
const char *ckpt_fletcher32_kernel_name(void);
uint32_t ckpt_fletcher32_portable(const void *data, size_t len);
#if defined(__x86_64__) && defined(__GNUC__)
uint32_t ckpt_fletcher32_avx2(const void *data, size_t len);   /* only where the CPU has AVX2 */
uint32_t ckpt_fletcher32_avx512(const void *data, size_t len); /* only with AVX-512F and BW */
#endif

/* ---- ckpt_fs.c ---- */
char *ckpt_path_join(const char *a, const char *b);            /* zero_malloc'd, NULL on OOM */
zero_status_t ckpt_mkdir_p(const char *path, ckpt_err_t *err);
zero_status_t ckpt_fsync_path(const char *path, int is_dir, ckpt_err_t *err);
zero_status_t ckpt_remove_tree(const char *path, ckpt_err_t *err);
/* Writes a whole file and fsyncs it (not the directory). */
zero_status_t ckpt_write_file(const char *path, const char *data, size_t len, ckpt_err_t *err);
/* Reads a whole file into a NUL-terminated zero_malloc'd buffer. */
zero_status_t ckpt_read_file(const char *path, char **data_p, size_t *len_p, ckpt_err_t *err);
/* Removes stale <dir>/.tmp-* directories of earlier, interrupted saves. */
void ckpt_remove_stale_tmp(const char *dir);
/* Creates <dir> (and parents) and <dir>/.tmp-<tag>-<token>; writes its name (no dir) into tmp_name.
 * Fails with "No space left on device" when <dir>'s filesystem has less than @p need_bytes free. */
zero_status_t ckpt_make_tmp(const char *dir, const char *tag, uint64_t need_bytes, char *tmp_name,
                            size_t tmp_name_size, ckpt_err_t *err);
/* An upper estimate of a rank file's size. */
uint64_t ckpt_file_size_estimate(const zero_layout_t *layout, int shard, const zero_ckpt_meta_t *meta);
/* Rank 0's part of the commit: moves <dir>/<tmp_name> to <dir>/<tag>, replaces latest, keep-last clean-up.
 * On failure it undoes what it did (the tag and latest as before) and removes <dir>/<tmp_name>. */
zero_status_t ckpt_commit(const char *dir, const char *tmp_name, const char *tag, int keep_last, ckpt_err_t *err);
/* Writes <dir>/latest atomically. */
zero_status_t ckpt_write_latest(const char *dir, const char *tag, ckpt_err_t *err);
zero_status_t ckpt_read_latest_err(const char *dir, char **tag_p, ckpt_err_t *err);
/* Removes all but the newest @p keep tags (never @p current). */
void ckpt_keep_last(const char *dir, const char *current, int keep);
/* The file name of process rank @p rank: "zero_rank_00003.h5". */
void ckpt_rank_file_name(int rank, char *buf, size_t size);

/* ---- ckpt_h5.c ---- */
typedef struct ckpt_file_desc {
    int world_size;          /* process ranks of the job that saves */
    int rank;                /* this process rank */
    int shard;               /* layout rank whose data this file holds, or -1 (metadata only) */
    const char *tag;
    const zero_layout_t *layout;
    const zero_ckpt_meta_t *meta;
    const zero_ckpt_group_data_t *groups;   /* layout->num_groups entries when shard >= 0 */
    const char *client_sd;   /* rank 0: the sidecar's text, whose digest and length the file records (NULL: "null") */
} ckpt_file_desc_t;

/* Writes one rank file (exclusive create) and fsyncs it. */
zero_status_t ckpt_write_rank_file(const char *path, const ckpt_file_desc_t *desc, ckpt_err_t *err);

/* zero_ckpt_reader_open with error capture. With @p check_all 0, only rank 0's
 * file is opened now and the others when first read (the collective load lets
 * rank 0 check every file, so that W ranks do not open W files each). */
zero_status_t ckpt_reader_open_err(const char *dir, const char *tag, int check_all, zero_ckpt_reader_t **reader_p,
                                   ckpt_err_t *err);
/* As zero_ckpt_reader_read; @p out NULL reads and verifies the chunks only. */
zero_status_t ckpt_reader_read_err(zero_ckpt_reader_t *reader, int param, int state, size_t begin,
                                   size_t count, float *out, ckpt_err_t *err);
/* The reader's <dir>/<tag> path. */
const char *ckpt_reader_path(const zero_ckpt_reader_t *reader);
/* Whether the checkpoint is of format version 1 (metadata and sidecar carry no digest). */
int ckpt_reader_unchecked(const zero_ckpt_reader_t *reader);
/* Logs (WARN) that a version-1 checkpoint's metadata and sidecar are not checked. */
void ckpt_reader_warn_unchecked(const zero_ckpt_reader_t *reader);
/* Checks @p len bytes read from the sidecar @p path against the length and
 * SHA-256 recorded in rank 0's file (version 2; version 1: nothing to check). */
zero_status_t ckpt_reader_check_sidecar(const zero_ckpt_reader_t *reader, const char *path, const char *data,
                                        size_t len, ckpt_err_t *err);

/* ---- ckpt_verify.c: offline verification (zero-ckpt-merge --verify) ---- */
typedef struct ckpt_verify_report {
    char tag[ZERO_CKPT_TAG_MAX + 1];   /* the tag verified ("" when latest named none) */
    int problems;                      /* damaged or missing objects, each logged (ERROR) */
    int files;                         /* rank files opened */
    int unchecked_files;               /* of them, format version 1 (no metadata digest) */
    size_t chunks;                     /* shard chunks whose checksum was verified */
    int sidecar_checked;               /* client_sd.json matched rank 0's recorded digest */
    int latest_checked;                /* <dir>/latest was read and matched its digest line */
} ckpt_verify_report_t;
/* Checks <dir>/<tag> (tag NULL: the one latest names) without loading it:
 * latest, every rank file's metadata digest and identity, every shard chunk's
 * checksum, the sidecar, then the load's own checks. Logs every damaged
 * object naming file and object; returns the count (0: intact). Not collective. */
int ckpt_verify(const char *dir, const char *tag, ckpt_verify_report_t *report);

/* ---- ckpt_plan.c: batched, threaded chunk reads for zero_ckpt_load ---- */
#define CKPT_PLAN_MAX_THREADS 8
/* Threads zero_ckpt_load reads with (the calling thread included). */
#define CKPT_LOAD_READ_THREADS 3
typedef struct ckpt_plan ckpt_plan_t;
/* One chunk as stored: file and dataset as registered with the plan. */
typedef struct ckpt_plan_chunk_desc {
    int file, dataset;
    size_t index;          /* chunk number in the dataset */
    uint64_t offset;       /* file offset of its data */
    size_t bytes;          /* data bytes */
    int checksum;          /* a little-endian fletcher32 follows the data */
} ckpt_plan_chunk_desc_t;

ckpt_plan_t *ckpt_plan_create(void);                 /* NULL on OOM */
void ckpt_plan_destroy(ckpt_plan_t *plan);
/* Forgets the chunks and frees what hold mode held (files and dataset names stay registered). */
void ckpt_plan_clear(ckpt_plan_t *plan);
/* Registers (opens) a file; its index, or -1 with @p err set. */
int ckpt_plan_file(ckpt_plan_t *plan, const char *path, ckpt_err_t *err);
/* Registers a dataset's message prefix; its index, or -1 with @p err set. */
int ckpt_plan_dataset(ckpt_plan_t *plan, const char *what, ckpt_err_t *err);
/* Plans bytes [within, within + bytes) of a chunk into @p dst (NULL: verify only).
 * Fails at once when the chunk lies beyond the end of its file. */
zero_status_t ckpt_plan_add(ckpt_plan_t *plan, const ckpt_plan_chunk_desc_t *chunk, void *dst, size_t within,
                            size_t bytes, ckpt_err_t *err);
/* Reads and verifies every planned chunk on @p threads threads (the caller's
 * included); reports the first failure in plan order. On failure some
 * destinations may hold new data. */
zero_status_t ckpt_plan_run(ckpt_plan_t *plan, int threads, ckpt_err_t *err);
/* Hold mode (the safe load): ckpt_plan_run reads and verifies every chunk but
 * writes no destination; it keeps the chunks as read (in one buffer, read
 * into with O_DIRECT where the file takes it: no bounce copy) until
 * ckpt_plan_commit copies them into place, or ckpt_plan_clear drops them. */
void ckpt_plan_set_hold(ckpt_plan_t *plan, int hold);
int ckpt_plan_holding(const ckpt_plan_t *plan);
/* Hold mode, bytes read outside the plan (a dataset that is not chunked): a
 * buffer of @p bytes to read them into, copied to @p dst on commit; NULL with
 * @p err set when out of memory. */
void *ckpt_plan_hold_extra(ckpt_plan_t *plan, void *dst, size_t bytes, ckpt_err_t *err);
/* Copies every held chunk (and extra) to its destinations on @p threads
 * threads, then forgets the chunks as ckpt_plan_clear does. Cannot fail. */
void ckpt_plan_commit(ckpt_plan_t *plan, int threads);

/* Makes the reader's chunked reads only plan into @p plan (NULL: read at once
 * again); datasets that are not chunked are still read at once. */
void ckpt_reader_set_plan(zero_ckpt_reader_t *reader, ckpt_plan_t *plan);

/* ---- ckpt_sha256.c: SHA-256 (FIPS 180-4) for the metadata, sidecar and latest digests ---- */
#define CKPT_SHA256_BYTES 32
#define CKPT_SHA256_HEX 64                 /* hex digits, without the NUL */
typedef struct ckpt_sha256 {
    uint32_t h[8];
    uint64_t bytes;                        /* hashed so far */
    unsigned char buf[64];
} ckpt_sha256_t;
void ckpt_sha256_init(ckpt_sha256_t *s);
void ckpt_sha256_update(ckpt_sha256_t *s, const void *data, size_t len);
void ckpt_sha256_final(ckpt_sha256_t *s, unsigned char out[CKPT_SHA256_BYTES]);
void ckpt_sha256_to_hex(const unsigned char digest[CKPT_SHA256_BYTES], char hex[CKPT_SHA256_HEX + 1]);
/* The lowercase hex SHA-256 of @p len bytes (what sha256sum prints). */
void ckpt_sha256_hex(const void *data, size_t len, char hex[CKPT_SHA256_HEX + 1]);

#endif /* ZERO_CKPT_CKPT_INTERNAL_H */
