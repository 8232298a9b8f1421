/*
 * The rank file format (docs/checkpoint-format.md): writer and reader.
 *
 * Every dataset is chunked and carries HDF5's fletcher32 filter, so a flipped
 * bit anywhere in the data fails the read of its chunk; the reader reports the
 * file and dataset. The partition map is stored as compound datasets whose
 * in-memory layout is the partition module's own structs.
 */
#define ZERO_LOG_MODULE "ckpt"
#include "ckpt/ckpt_digest.h"

#include "util/alloc.h"
#include "util/byteorder.h"
#include "util/checks_hdf5.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(zero_dtype_t) == sizeof(int), "zero_dtype_t is stored as a native int");
_Static_assert(sizeof(size_t) == 8, "size_t fields are stored as 64-bit");

#define CKPT_MAX_FILES 65536

typedef struct reader_dset {
    hid_t id;
    int checksum;        /* fletcher32 in the pipeline */
    size_t chunk;        /* elements per chunk, 0 = not chunked (read through H5Dread) */
    size_t length;
    uint64_t base;       /* file offset of HDF5 address 0 (the user block's size) */
} reader_dset_t;

struct zero_ckpt_reader {
    char *path;                  /* <dir>/<tag> */
    char *tag;
    int num_files;               /* process ranks of the saving job */
    hid_t *files;                /* [layout.world_size] shard files (others are checked and closed) */
    reader_dset_t *dsets;        /* [world][num_groups][1 + MAX_STATES], opened on first use (id -1 before) */
    /* the last chunk read and verified (segments of one chunk come one after another) */
    float *chunk_buf;
    size_t chunk_buf_elems;
    reader_dset_t *chunk_owner;
    size_t chunk_index;
    zero_layout_t layout;
    zero_ckpt_meta_t meta;
    uint64_t fingerprint;        /* of rank 0's map: every file must carry it */
    int unchecked;               /* format version 1: no metadata digest, no sidecar digest */
    char client_sd_sha256[CKPT_SHA256_HEX + 1];   /* version 2: the sidecar's digest and length */
    uint64_t client_sd_bytes;
    /* read-ahead threads (see prefetch()); joined by zero_ckpt_reader_close */
    pthread_t prefetchers[CKPT_MAX_PREFETCHERS];
    int num_prefetchers;
    ckpt_plan_t *plan;           /* chunked reads are planned here, not read (ckpt_reader_set_plan) */
};

typedef struct prefetch_job {
    char path[4096];
    off_t offset, length;
} prefetch_job_t;

/* ---------------------------------------------------------------- types */

static hid_t param_mem_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(zero_layout_param_t));
    hid_t s = H5Tcopy(H5T_C_S1);
    hsize_t dims[1] = {ZERO_LAYOUT_MAX_NDIM};
    hid_t a = H5Tarray_create2(H5T_NATIVE_INT64, 1, dims);
    H5Tset_size(s, ZERO_LAYOUT_MAX_NAME);
    H5Tset_strpad(s, H5T_STR_NULLTERM);
    H5Tset_cset(s, H5T_CSET_UTF8);
    H5Tinsert(t, "name", HOFFSET(zero_layout_param_t, name), s);
    H5Tinsert(t, "dtype", HOFFSET(zero_layout_param_t, dtype), H5T_NATIVE_INT);
    H5Tinsert(t, "ndim", HOFFSET(zero_layout_param_t, ndim), H5T_NATIVE_INT);
    H5Tinsert(t, "shape", HOFFSET(zero_layout_param_t, shape), a);
    H5Tinsert(t, "numel", HOFFSET(zero_layout_param_t, numel), H5T_NATIVE_UINT64);
    H5Tinsert(t, "group", HOFFSET(zero_layout_param_t, group), H5T_NATIVE_INT);
    H5Tinsert(t, "offset", HOFFSET(zero_layout_param_t, offset), H5T_NATIVE_UINT64);
    H5Tinsert(t, "bucket", HOFFSET(zero_layout_param_t, bucket), H5T_NATIVE_INT);
    H5Tclose(s);
    H5Tclose(a);
    return t;
}

static hid_t bucket_mem_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(zero_layout_bucket_t));
    H5Tinsert(t, "group", HOFFSET(zero_layout_bucket_t, group), H5T_NATIVE_INT);
    H5Tinsert(t, "offset", HOFFSET(zero_layout_bucket_t, offset), H5T_NATIVE_UINT64);
    H5Tinsert(t, "length", HOFFSET(zero_layout_bucket_t, length), H5T_NATIVE_UINT64);
    H5Tinsert(t, "used", HOFFSET(zero_layout_bucket_t, used), H5T_NATIVE_UINT64);
    H5Tinsert(t, "first_param", HOFFSET(zero_layout_bucket_t, first_param), H5T_NATIVE_INT);
    H5Tinsert(t, "num_params", HOFFSET(zero_layout_bucket_t, num_params), H5T_NATIVE_INT);
    return t;
}

static hid_t group_mem_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(zero_layout_group_t));
    H5Tinsert(t, "dtype", HOFFSET(zero_layout_group_t, dtype), H5T_NATIVE_INT);
    H5Tinsert(t, "length", HOFFSET(zero_layout_group_t, length), H5T_NATIVE_UINT64);
    H5Tinsert(t, "shard_length", HOFFSET(zero_layout_group_t, shard_length), H5T_NATIVE_UINT64);
    H5Tinsert(t, "first_bucket", HOFFSET(zero_layout_group_t, first_bucket), H5T_NATIVE_INT);
    H5Tinsert(t, "num_buckets", HOFFSET(zero_layout_group_t, num_buckets), H5T_NATIVE_INT);
    return t;
}

/* ---------------------------------------------------------------- writing */

typedef struct writer {
    const char *path;
    ckpt_err_t *err;
} writer_t;

static int w_attr(writer_t *w, hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR), attr = -1;
    herr_t rc = -1;
    if (space >= 0 && (attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)) >= 0)
        rc = H5Awrite(attr, mem_type, value);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    if (rc < 0) {
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot write attribute %s", w->path, name);
        return -1;
    }
    return 0;
}

static int w_i32(writer_t *w, hid_t loc, const char *name, int32_t v)
{
    return w_attr(w, loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &v);
}
static int w_i64(writer_t *w, hid_t loc, const char *name, int64_t v)
{
    return w_attr(w, loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
static int w_u64(writer_t *w, hid_t loc, const char *name, uint64_t v)
{
    return w_attr(w, loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
static int w_f64(writer_t *w, hid_t loc, const char *name, double v)
{
    return w_attr(w, loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static hid_t str_type(size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int w_str(writer_t *w, hid_t loc, const char *name, const char *v)
{
    hid_t t = str_type(strlen(v));
    int rc = w_attr(w, loc, name, t, t, v);
    H5Tclose(t);
    return rc;
}

/* Object creation property lists without modification times, so that the
 * same state saved twice gives byte-identical files (reproducible checkpoints). */
static hid_t untimed(hid_t cls)
{
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_obj_track_times(p, 0) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

/* A 1-D chunked, checksummed dataset of @p n elements. */
static int w_dataset(writer_t *w, hid_t loc, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                     size_t chunk, const void *data)
{
    hsize_t dims[1] = {n}, cdims[1] = {chunk < n ? chunk : n};
    hid_t space = H5Screate_simple(1, dims, NULL), dcpl = untimed(H5P_DATASET_CREATE), d = -1;
    herr_t rc = -1;
    if (space < 0 || dcpl < 0)
        goto out;
    if (n > 0 && (H5Pset_chunk(dcpl, 1, cdims) < 0 || H5Pset_fletcher32(dcpl) < 0))
        goto out;
    if ((d = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        goto out;
    rc = n > 0 ? H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
out:
    if (d >= 0 && H5Dclose(d) < 0)   /* closing flushes the dataset: it can fail on a full disk */
        rc = -1;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    if (rc < 0) {
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot write dataset %s", w->path, name);
        return -1;
    }
    return 0;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shard chunks are written as little-endian fp32 straight from memory"
#endif

/*
 * A shard dataset: 1-D fp32, chunked, with the fletcher32 filter in its
 * pipeline; the chunks are written with H5Dwrite_chunk, carrying the checksum
 * the filter would have appended (little-endian, after the chunk's bytes), so
 * any HDF5 reader verifies them as usual. @p staging holds a chunk + 4 bytes.
 */
static int w_shard_dataset(writer_t *w, hid_t loc, const char *name, size_t n, const zero_ckpt_group_data_t *gd,
                           int group, int array, float *staging)
{
    const float *data = gd->stream != NULL ? NULL : array == 0 ? gd->master : gd->state[array - 1];
    int stream_failed = 0;   /* logged by the read: not again as an HDF5 failure */
    size_t chunk = n < CKPT_CHUNK_ELEMS ? n : CKPT_CHUNK_ELEMS, bytes = chunk * sizeof(float);
    hsize_t dims[1] = {n}, cdims[1] = {chunk};
    hid_t space = H5Screate_simple(1, dims, NULL), dcpl = untimed(H5P_DATASET_CREATE), d = -1;
    /* ZERO_CKPT_BENCH_NO_CHECKSUM=1 (benchmark hook, bench/ckpt): leave the
     * checksums out, to measure what they cost. Readers need no hint. */
    int checksum = getenv("ZERO_CKPT_BENCH_NO_CHECKSUM") == NULL;
    herr_t rc = -1;

    if (n == 0)
        return w_dataset(w, loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, 1, staging);
    if (space < 0 || dcpl < 0 || H5Pset_chunk(dcpl, 1, cdims) < 0 || (checksum && H5Pset_fletcher32(dcpl) < 0) ||
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0)
        goto out;
    if ((d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0)
        goto out;
    rc = 0;
    for (size_t off = 0; off < n && rc >= 0; off += chunk) {
        size_t m = n - off < chunk ? n - off : chunk;
        hsize_t coord[1] = {off};
        if (gd->stream != NULL) {
            /* CKPT_CHUNK_ELEMS <= ZERO_CKPT_STREAM_ELEMS: one read per chunk */
            zero_status_t status = gd->stream->read(gd->stream->ctx, group, array, off, m, staging);
            if (status != ZERO_OK) {
                ckpt_fail(w->err, status, "%s: cannot read %s of group %d [%zu, +%zu) from the optimizer state store",
                          w->path, name, group, off, m);
                stream_failed = 1;
                rc = -1;
                break;
            }
        } else {
            memcpy(staging, data + off, m * sizeof(float));
        }
        if (m < chunk)
            memset(staging + m, 0, (chunk - m) * sizeof(float));   /* an edge chunk is stored whole */
        if (checksum)
            zero_put_le32((unsigned char *)staging + bytes, ckpt_fletcher32(staging, bytes));
        rc = H5Dwrite_chunk(d, H5P_DEFAULT, 0, coord, bytes + (checksum ? 4 : 0), staging);
    }
out:
    if (d >= 0 && H5Dclose(d) < 0)
        rc = -1;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    if (rc < 0) {
        if (!stream_failed)
            ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot write dataset %s", w->path, name);
        return -1;
    }
    return 0;
}

static int w_compound(writer_t *w, hid_t loc, const char *name, hid_t mem_type, size_t n, const void *data)
{
    hid_t file_type = H5Tcopy(mem_type);
    int rc;
    H5Tpack(file_type);
    rc = w_dataset(w, loc, name, file_type, mem_type, n, 4096, data);
    H5Tclose(file_type);
    return rc;
}

static int w_string_dataset(writer_t *w, hid_t loc, const char *name, const char *v)
{
    hid_t t = str_type(strlen(v)), space = H5Screate(H5S_SCALAR), dcpl = untimed(H5P_DATASET_CREATE), d = -1;
    herr_t rc = -1;
    if (dcpl >= 0 && (d = H5Dcreate2(loc, name, t, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)) >= 0)
        rc = H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (d >= 0 && H5Dclose(d) < 0)
        rc = -1;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    H5Sclose(space);
    H5Tclose(t);
    if (rc < 0) {
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot write dataset %s", w->path, name);
        return -1;
    }
    return 0;
}

static void join_names(char *buf, size_t size, int n, const char *const *names)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? "," : "", names[i]);
}

/* Rank 0's file records the sidecar's length and SHA-256 (covered by the
 * metadata digest like every attribute), so a damaged client_sd.json is refused. */
static int write_client_sd_digest(writer_t *w, hid_t f, const ckpt_file_desc_t *d)
{
    const char *json = d->client_sd != NULL ? d->client_sd : "null";
    char hex[CKPT_SHA256_HEX + 1];
    ckpt_sha256_hex(json, strlen(json), hex);
    return w_str(w, f, "client_sd_sha256", hex) || w_u64(w, f, "client_sd_bytes", strlen(json));
}

static int write_meta(writer_t *w, hid_t f, const ckpt_file_desc_t *d)
{
    const zero_ckpt_meta_t *m = d->meta;
    const zero_layout_t *l = d->layout;
    char states[ZERO_CKPT_MAX_STATES * ZERO_CKPT_NAME_MAX + 8], dtypes[64];
    const char *sn[ZERO_CKPT_MAX_STATES], *dn[ZERO_DTYPE_COUNT];

    for (int k = 0; k < m->num_states; k++)
        sn[k] = m->state_names[k];
    for (int g = 0; g < l->num_groups; g++)
        dn[g] = zero_dtype_string(l->groups[g].dtype);
    join_names(states, sizeof(states), m->num_states, sn);
    join_names(dtypes, sizeof(dtypes), l->num_groups, dn);

    if (w_str(w, f, "format", CKPT_FORMAT_NAME) || w_i32(w, f, "format_version", ZERO_CKPT_FORMAT_VERSION) ||
        w_str(w, f, "libzero_version", zero_version()) || w_i32(w, f, "world_size", d->world_size) ||
        w_i32(w, f, "rank", d->rank) || w_i32(w, f, "shard", d->shard) || w_i32(w, f, "stage", m->stage) ||
        w_str(w, f, "tag", d->tag) || w_str(w, f, "dtypes", dtypes) ||
        w_str(w, f, "optimizer", m->optimizer) || w_i32(w, f, "num_states", m->num_states) ||
        w_str(w, f, "state_names", states) || w_u64(w, f, "global_steps", m->global_steps) ||
        w_u64(w, f, "micro_steps", m->micro_steps) || w_u64(w, f, "skipped_steps", m->skipped_steps) ||
        w_f64(w, f, "loss_scale", m->loss_scale) || w_i64(w, f, "loss_scaler_cur_iter", m->scaler_cur_iter) ||
        w_i64(w, f, "loss_scaler_last_overflow_iter", m->scaler_last_overflow_iter) ||
        w_i32(w, f, "loss_scaler_cur_hysteresis", m->scaler_cur_hysteresis) ||
        w_i64(w, f, "lr_last_batch_iteration", m->lr_last_batch_iteration) || w_f64(w, f, "lr", m->lr) ||
        w_f64(w, f, "momentum", m->momentum) || w_u64(w, f, "layout_fingerprint", zero_layout_fingerprint(l)) ||
        (d->rank == 0 && write_client_sd_digest(w, f, d)))
        return -1;
    if (m->param_groups != NULL && w_string_dataset(w, f, "param_groups", m->param_groups))
        return -1;
    return w_string_dataset(w, f, "config_json", m->config_json != NULL ? m->config_json : "");
}

static int write_map(writer_t *w, hid_t f, const zero_layout_t *l)
{
    hid_t gcpl = untimed(H5P_GROUP_CREATE);
    hid_t g = H5Gcreate2(f, "partition", H5P_DEFAULT, gcpl, H5P_DEFAULT), pt, bt, gt;
    if (gcpl >= 0)
        H5Pclose(gcpl);
    int rc;
    if (g < 0) {
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot create group /partition", w->path);
        return -1;
    }
    pt = param_mem_type();
    bt = bucket_mem_type();
    gt = group_mem_type();
    rc = w_i32(w, g, "world_size", l->world_size) || w_u64(w, g, "alignment", l->alignment) ||
         w_u64(w, g, "bucket_elems", l->bucket_elems) || w_i32(w, g, "num_params", l->num_params) ||
         w_i32(w, g, "num_buckets", l->num_buckets) || w_i32(w, g, "num_groups", l->num_groups) ||
         w_compound(w, g, "params", pt, (size_t)l->num_params, l->params) ||
         w_compound(w, g, "buckets", bt, (size_t)l->num_buckets, l->buckets) ||
         w_compound(w, g, "groups", gt, (size_t)l->num_groups, l->groups);
    H5Tclose(pt);
    H5Tclose(bt);
    H5Tclose(gt);
    if (H5Gclose(g) < 0 && rc == 0) {
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot close group /partition", w->path);
        rc = -1;
    }
    return rc ? -1 : 0;
}

static int write_shard(writer_t *w, hid_t f, const ckpt_file_desc_t *d)
{
    const zero_layout_t *l = d->layout;
    hid_t top;
    float *staging = NULL;
    int rc = 0;
    if (zero_mem_alloc(ZERO_MEM_HOST, CKPT_CHUNK_ELEMS * sizeof(float) + 64, "ckpt chunk staging",
                       (void **)&staging) != ZERO_OK) {
        ckpt_fail(w->err, ZERO_ERR_NO_MEMORY, "%s: out of memory for a chunk buffer", w->path);
        return -1;
    }
    hid_t gcpl = untimed(H5P_GROUP_CREATE);
    top = H5Gcreate2(f, "shard", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (top < 0) {
        if (gcpl >= 0)
            H5Pclose(gcpl);
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot create group /shard", w->path);
        zero_mem_free(staging);
        return -1;
    }
    for (int gi = 0; gi < l->num_groups && rc == 0; gi++) {
        char name[32];
        size_t n = l->groups[gi].shard_length;
        const zero_ckpt_group_data_t *gd = &d->groups[gi];
        hid_t g;
        snprintf(name, sizeof(name), "group%d", gi);
        if ((g = H5Gcreate2(top, name, H5P_DEFAULT, gcpl, H5P_DEFAULT)) < 0) {
            ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot create group /shard/%s", w->path, name);
            rc = -1;
            break;
        }
        rc = w_str(w, g, "dtype", zero_dtype_string(l->groups[gi].dtype)) ||
             w_u64(w, g, "shard_length", n) ||
             w_shard_dataset(w, g, "master", n, gd, gi, 0, staging);
        for (int k = 0; k < d->meta->num_states && rc == 0; k++)
            rc = w_shard_dataset(w, g, d->meta->state_names[k], n, gd, gi, k + 1, staging);
        if (H5Gclose(g) < 0 && rc == 0) {
            ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot close group /shard/%s", w->path, name);
            rc = -1;
        }
    }
    if (H5Gclose(top) < 0 && rc == 0) {
        ckpt_fail_h5(w->err, ZERO_ERR_HDF5, "%s: cannot close group /shard", w->path);
        rc = -1;
    }
    if (gcpl >= 0)
        H5Pclose(gcpl);
    zero_mem_free(staging);
    return rc;
}

uint64_t ckpt_file_size_estimate(const zero_layout_t *l, int shard, const zero_ckpt_meta_t *m)
{
    uint64_t bytes = 64 * 1024 + (m->config_json ? strlen(m->config_json) : 0) +
                     (m->param_groups ? strlen(m->param_groups) : 0) +
                     (uint64_t)l->num_params * (sizeof(zero_layout_param_t) + 8) +
                     (uint64_t)l->num_buckets * (sizeof(zero_layout_bucket_t) + 8);
    if (shard >= 0)
        for (int g = 0; g < l->num_groups; g++)
            bytes += (uint64_t)l->groups[g].shard_length * sizeof(float) * (uint64_t)(1 + m->num_states) +
                     (l->groups[g].shard_length / CKPT_CHUNK_ELEMS + 1) * 64 * (uint64_t)(1 + m->num_states);
    return bytes + bytes / 64;
}

/*
 * HDF5 writes when it closes a file. When that fails (a full disk, a failing
 * device), HDF5 1.10 keeps a half-destroyed file behind its id, which crashes
 * the next H5Fclose or HDF5's own clean-up at exit. So before closing, the
 * file's descriptor is swapped for an anonymous memory file (dup2 over the sec2
 * driver's fd): the closing writes go to memory, which the close releases.
 * Callers do this after a successful H5Fflush (the file on disk is then
 * complete) or on a file they discard (the caller removes it).
 */
static void divert_writes_to_memory(hid_t f, const char *path)
{
    void *handle = NULL;
    int mem;
    if (H5Fget_vfd_handle(f, H5P_DEFAULT, &handle) < 0 || handle == NULL) {
        ZERO_LOG_WARN("cannot reach the descriptor of checkpoint file %s; HDF5 closes it as it is", path);
        return;
    }
    if ((mem = memfd_create("zero-ckpt-close", MFD_CLOEXEC)) < 0) {
        ZERO_LOG_WARN("cannot divert the closing writes of checkpoint file %s: memfd_create: %s", path, strerror(errno));
        return;
    }
    if (dup2(mem, *(int *)handle) < 0)
        ZERO_LOG_WARN("cannot divert the closing writes of checkpoint file %s: dup2: %s", path, strerror(errno));
    close(mem);
}

/*
 * File access for writing a rank file: the HDF5 1.8 file format (superblock
 * version 2, object header version 2), whose metadata blocks carry checksums
 * of their own, so that HDF5 refuses a damaged object header before decoding
 * it. Version-0 headers have none, and HDF5 1.10 can read out of bounds while
 * decoding a damaged one (seen under AddressSanitizer in tests/ckpt
 * raw_bytes). Readable by HDF5 1.8 and later (h5py, h5dump). -1: defaults.
 */
static hid_t rank_file_access(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

zero_status_t ckpt_write_rank_file(const char *path, const ckpt_file_desc_t *d, ckpt_err_t *err)
{
    writer_t w = {path, err};
    hid_t f, fapl;
    int rc;

    zero_hdf5_quiet();
    if (d->shard >= 0) {
        for (int g = 0; g < d->layout->num_groups; g++) {
            if (d->groups != NULL && d->groups[g].stream != NULL)
                continue;   /* streamed: the callbacks give every element */
            if (d->groups == NULL || d->groups[g].master == NULL) {
                ckpt_fail(err, ZERO_ERR_INVALID_ARG, "%s: group %d has no master weights to save", path, g);
                return ZERO_ERR_INVALID_ARG;
            }
            for (int k = 0; k < d->meta->num_states; k++) {
                if (d->groups[g].state[k] == NULL) {
                    ckpt_fail(err, ZERO_ERR_INVALID_ARG, "%s: group %d has no optimizer state '%s' to save", path,
                              g, d->meta->state_names[k]);
                    return ZERO_ERR_INVALID_ARG;
                }
            }
        }
    }
    /* The HDF5 1.8 file format with an untimed root group (rank_file_access,
     * untimed), and strong close degree: H5Fclose also closes any object an
     * earlier failure left open, so that the file itself is really closed. */
    hid_t fcpl = untimed(H5P_FILE_CREATE);
    fapl = rank_file_access();
    if (fapl < 0 || H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
        ckpt_fail_h5(err, ZERO_ERR_HDF5, "cannot set up the file access of %s", path);
        if (fapl >= 0)
            H5Pclose(fapl);
        if (fcpl >= 0)
            H5Pclose(fcpl);
        return ZERO_ERR_HDF5;
    }
    f = H5Fcreate(path, H5F_ACC_EXCL, fcpl >= 0 ? fcpl : H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (f < 0) {
        ckpt_fail_h5(err, ZERO_ERR_IO, "cannot create checkpoint file %s", path);
        return ZERO_ERR_IO;
    }
    rc = write_meta(&w, f, d) || write_map(&w, f, d->layout) || (d->shard >= 0 && write_shard(&w, f, d)) ||
         ckpt_meta_digest_write(f, path, err);
    /* Flush before closing, so that an I/O error of the last metadata writes is
     * caught while the file can still be discarded cleanly (below). */
    if (rc == 0 && H5Fflush(f, H5F_SCOPE_LOCAL) < 0) {
        ckpt_fail_h5(err, ZERO_ERR_IO, "cannot write checkpoint file %s", path);
        rc = -1;
    }
    /* Flushed, the file on disk is complete; what H5Fclose still writes only
     * gives back space HDF5 had reserved (and shrinks the file). It goes to
     * memory instead (see divert_writes_to_memory): so the close cannot fail on a full
     * disk or an I/O error, which would leave HDF5 in a state that crashes. */
    divert_writes_to_memory(f, path);
    /* After a failed write HDF5 still holds dirty metadata: one more flush,
     * into memory now, lets the close that follows succeed (without it the
     * close fails and leaves the torn-down file behind its id; the flush's own
     * result does not matter, the file is discarded). */
    if (rc != 0)
        (void)H5Fflush(f, H5F_SCOPE_LOCAL);
    if (H5Fclose(f) < 0) {
        /* Never close twice: a failed H5Fclose has already torn the file down
         * in part, and a second call (or HDF5's clean-up at exit) crashes. */
        if (rc == 0)
            ckpt_fail_h5(err, ZERO_ERR_IO, "cannot finish checkpoint file %s", path);
        rc = -1;
    }
    if (rc != 0)
        return err->status;
    return ckpt_fsync_path(path, 0, err);
}

/* ---------------------------------------------------------------- reading */

typedef struct rctx {
    char *path;
    ckpt_err_t *err;
    int unchecked;           /* set by open_rank_file: a version-1 file, no metadata digest */
} rctx_t;

/*
 * Whether dataset @p d stores at least as many bytes as its dataspace holds
 * elements of its file type. Checked before every H5Dread: libhdf5 1.10.8
 * trusts a damaged layout message (a compact dataset whose stored data is
 * shorter than its dataspace) and reads past its own buffer into the caller's
 * (found by tests/fuzz/fuzz_ckpt; docs/testing.md, "Fuzzing"). Every dataset
 * libzero writes passes: chunks and contiguous data are stored in full.
 */
static int dataset_storage_complete(hid_t d)
{
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    hssize_t points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    size_t type_size = type >= 0 ? H5Tget_size(type) : 0;
    hsize_t stored = H5Dget_storage_size(d);
    if (space >= 0)
        H5Sclose(space);
    if (type >= 0)
        H5Tclose(type);
    return points >= 0 && type_size > 0 && stored / type_size >= (hsize_t)points;
}

static int r_attr(rctx_t *r, hid_t loc, const char *name, hid_t mem_type, void *value)
{
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Aread(a, mem_type, value) : -1;
    if (a >= 0)
        H5Aclose(a);
    if (rc < 0) {
        ckpt_fail_h5(r->err, ZERO_ERR_CHECKPOINT, "%s: cannot read attribute %s (not a libzero checkpoint, or "
                     "corrupt)", r->path, name);
        return -1;
    }
    return 0;
}

static int r_i32(rctx_t *r, hid_t loc, const char *name, int32_t *v) { return r_attr(r, loc, name, H5T_NATIVE_INT32, v); }
static int r_i64(rctx_t *r, hid_t loc, const char *name, int64_t *v) { return r_attr(r, loc, name, H5T_NATIVE_INT64, v); }
static int r_u64(rctx_t *r, hid_t loc, const char *name, uint64_t *v) { return r_attr(r, loc, name, H5T_NATIVE_UINT64, v); }
static int r_f64(rctx_t *r, hid_t loc, const char *name, double *v) { return r_attr(r, loc, name, H5T_NATIVE_DOUBLE, v); }

/* A string attribute (or a scalar string dataset when @p dataset) into a zero_malloc'd buffer. */
static int r_str(rctx_t *r, hid_t loc, const char *name, int dataset, char **out)
{
    hid_t obj = dataset ? H5Dopen2(loc, name, H5P_DEFAULT) : H5Aopen(loc, name, H5P_DEFAULT), ft = -1, mt = -1;
    size_t size = 0;
    char *buf = NULL;
    herr_t rc = -1;
    if (obj < 0)
        goto out;
    ft = dataset ? H5Dget_type(obj) : H5Aget_type(obj);
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) || (size = H5Tget_size(ft)) == 0 ||
        size > ((size_t)1 << 30))
        goto out;
    if (dataset && !dataset_storage_complete(obj))
        goto out;
    if ((buf = zero_malloc(size + 1)) == NULL)
        goto out;
    mt = str_type(size - 1);
    rc = dataset ? H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : H5Aread(obj, mt, buf);
    buf[size] = '\0';
out:
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    if (obj >= 0)
        (void)(dataset ? H5Dclose(obj) : H5Aclose(obj));
    if (rc < 0) {
        zero_free(buf);
        ckpt_fail_h5(r->err, ZERO_ERR_CHECKPOINT, "%s: cannot read string %s %s (corrupt file?)", r->path,
                     dataset ? "dataset" : "attribute", name);
        return -1;
    }
    *out = buf;
    return 0;
}

static int r_str_fixed(rctx_t *r, hid_t loc, const char *name, char *dst, size_t size)
{
    char *s = NULL;
    if (r_str(r, loc, name, 0, &s))
        return -1;
    snprintf(dst, size, "%s", s);
    zero_free(s);
    return 0;
}

/* Reads a compound map dataset of exactly @p n records. */
static int r_compound(rctx_t *r, hid_t loc, const char *name, hid_t mem_type, size_t n, void *out)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT), s = -1;
    hsize_t dims[1] = {0};
    herr_t rc = -1;
    if (d < 0 || (s = H5Dget_space(d)) < 0 || H5Sget_simple_extent_ndims(s) != 1)
        goto out;
    H5Sget_simple_extent_dims(s, dims, NULL);
    if (dims[0] != n || !dataset_storage_complete(d))
        goto out;
    rc = n > 0 ? H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : 0;
out:
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    if (rc < 0) {
        ckpt_fail_h5(r->err, ZERO_ERR_CHECKPOINT, "%s: cannot read dataset /partition/%s (%llu records expected)",
                     r->path, name, (unsigned long long)n);
        return -1;
    }
    return 0;
}

static int split_names(const char *s, int n, char names[][ZERO_CKPT_NAME_MAX])
{
    int k = 0;
    while (k < n && *s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len >= ZERO_CKPT_NAME_MAX)
            return -1;
        memcpy(names[k], s, len);
        names[k][len] = '\0';
        k++;
        s += len + (e ? 1 : 0);
    }
    return k == n ? 0 : -1;
}

static int read_meta(rctx_t *r, hid_t f, zero_ckpt_meta_t *m)
{
    char *states = NULL;
    int32_t v32;
    memset(m, 0, sizeof(*m));
    if (r_i32(r, f, "stage", &v32))
        return -1;
    m->stage = v32;
    if (r_i32(r, f, "world_size", &v32))
        return -1;
    m->world_size = v32;
    if (r_str_fixed(r, f, "optimizer", m->optimizer, sizeof(m->optimizer)) || r_i32(r, f, "num_states", &v32))
        return -1;
    if (v32 < 0 || v32 > ZERO_CKPT_MAX_STATES) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: num_states %d is out of range", r->path, (int)v32);
        return -1;
    }
    m->num_states = v32;
    if (r_str(r, f, "state_names", 0, &states))
        return -1;
    if (split_names(states, m->num_states, m->state_names)) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: state_names '%s' does not list %d names", r->path, states,
                  m->num_states);
        zero_free(states);
        return -1;
    }
    zero_free(states);
    if (r_u64(r, f, "global_steps", &m->global_steps) || r_u64(r, f, "micro_steps", &m->micro_steps) ||
        r_u64(r, f, "skipped_steps", &m->skipped_steps) || r_f64(r, f, "loss_scale", &m->loss_scale) ||
        r_i64(r, f, "loss_scaler_cur_iter", &m->scaler_cur_iter) ||
        r_i64(r, f, "loss_scaler_last_overflow_iter", &m->scaler_last_overflow_iter) ||
        r_i32(r, f, "loss_scaler_cur_hysteresis", &m->scaler_cur_hysteresis) ||
        r_i64(r, f, "lr_last_batch_iteration", &m->lr_last_batch_iteration) || r_f64(r, f, "lr", &m->lr) ||
        r_f64(r, f, "momentum", &m->momentum))
        return -1;
    /* absent in checkpoints saved before parameter groups */
    if (H5Lexists(f, "param_groups", H5P_DEFAULT) > 0 && r_str(r, f, "param_groups", 1, &m->param_groups))
        return -1;
    return r_str(r, f, "config_json", 1, &m->config_json);
}

static void layout_clear(zero_layout_t *l)
{
    zero_free(l->params);
    zero_free(l->buckets);
    l->params = NULL;
    l->buckets = NULL;
}

/* Reads the partition map and checks that it is consistent (so that a garbled
 * map cannot send reads out of bounds). */
static int read_map(rctx_t *r, hid_t f, zero_layout_t *l)
{
    hid_t g = H5Gopen2(f, "partition", H5P_DEFAULT), pt = -1, bt = -1, gt = -1;
    int32_t world, np, nb, ng;
    uint64_t align, belems;
    int rc = -1;
    const char *bad = NULL;

    memset(l, 0, sizeof(*l));
    if (g < 0) {
        ckpt_fail_h5(r->err, ZERO_ERR_CHECKPOINT, "%s: no group /partition", r->path);
        return -1;
    }
    if (r_i32(r, g, "world_size", &world) || r_u64(r, g, "alignment", &align) ||
        r_u64(r, g, "bucket_elems", &belems) || r_i32(r, g, "num_params", &np) ||
        r_i32(r, g, "num_buckets", &nb) || r_i32(r, g, "num_groups", &ng))
        goto out;
    if (world < 1 || world > CKPT_MAX_FILES || np < 1 || nb < 1 || ng < 1 || ng > ZERO_DTYPE_COUNT || align < 1) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: /partition attributes out of range", r->path);
        goto out;
    }
    l->world_size = world;
    l->alignment = align;
    l->bucket_elems = belems;
    l->num_params = np;
    l->num_buckets = nb;
    l->num_groups = ng;
    l->params = zero_calloc((size_t)np, sizeof(*l->params));
    l->buckets = zero_calloc((size_t)nb, sizeof(*l->buckets));
    if (l->params == NULL || l->buckets == NULL) {
        ckpt_fail(r->err, ZERO_ERR_NO_MEMORY, "%s: out of memory for the partition map", r->path);
        goto out;
    }
    pt = param_mem_type();
    bt = bucket_mem_type();
    gt = group_mem_type();
    if (r_compound(r, g, "params", pt, (size_t)np, l->params) || r_compound(r, g, "buckets", bt, (size_t)nb, l->buckets) ||
        r_compound(r, g, "groups", gt, (size_t)ng, l->groups))
        goto out;
    for (int i = 0; i < ng && !bad; i++) {
        const zero_layout_group_t *gr = &l->groups[i];
        if ((int)gr->dtype < 0 || gr->dtype >= ZERO_DTYPE_COUNT || gr->first_bucket < 0 || gr->num_buckets < 0 ||
            gr->first_bucket + gr->num_buckets > nb || gr->length % (size_t)world != 0 ||
            gr->shard_length != gr->length / (size_t)world)
            bad = "groups";
    }
    for (int i = 0; i < nb && !bad; i++) {
        const zero_layout_bucket_t *b = &l->buckets[i];
        if (b->group < 0 || b->group >= ng || b->length % (size_t)world != 0 || b->offset % (size_t)world != 0 ||
            b->offset + b->length > l->groups[b->group].length || b->used > b->length)
            bad = "buckets";
    }
    for (int i = 0; i < np && !bad; i++) {
        zero_layout_param_t *p = &l->params[i];
        size_t numel = 1;
        p->name[ZERO_LAYOUT_MAX_NAME - 1] = '\0';
        if (p->ndim < 0 || p->ndim > ZERO_LAYOUT_MAX_NDIM || p->group < 0 || p->group >= ng || p->bucket < 0 ||
            p->bucket >= nb || l->buckets[p->bucket].group != p->group || (int)p->dtype < 0 ||
            p->dtype >= ZERO_DTYPE_COUNT) {
            bad = "params";
            break;
        }
        for (int k = 0; k < p->ndim; k++)
            numel *= p->shape[k] >= 0 ? (size_t)p->shape[k] : (size_t)-1;
        if (numel != p->numel || p->offset < l->buckets[p->bucket].offset ||
            p->offset + p->numel > l->buckets[p->bucket].offset + l->buckets[p->bucket].length)
            bad = "params";
    }
    if (bad) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: dataset /partition/%s is inconsistent (corrupt map)", r->path,
                  bad);
        goto out;
    }
    rc = 0;
out:
    if (pt >= 0)
        H5Tclose(pt);
    if (bt >= 0)
        H5Tclose(bt);
    if (gt >= 0)
        H5Tclose(gt);
    H5Gclose(g);
    if (rc != 0)
        layout_clear(l);
    return rc;
}

/*
 * Checks the metadata digest of a just-opened rank file before anything in it
 * is read: 1 = it has one and it matches, 0 = it has none (a version-1 file,
 * or a damaged name: the caller decides by the format version), -1 = damaged
 * (every damaged object logged, naming the file).
 */
static int check_meta_digest(rctx_t *r, hid_t f)
{
    htri_t has = H5Aexists(f, CKPT_META_DIGEST_ATTR);
    if (has < 0) {
        ckpt_fail_h5(r->err, ZERO_ERR_CHECKPOINT, "%s: cannot list the root attributes (corrupt file)", r->path);
        return -1;
    }
    if (has == 0)
        return 0;
    return ckpt_meta_digest_check(f, r->path, r->err) == 0 ? 1 : -1;
}

/* Opens a rank file, checks its metadata digest (version 2) and its identity
 * (format, version, rank, world). */
static hid_t open_rank_file(rctx_t *r, int rank, int world, uint64_t fingerprint)
{
    int has_digest;
    hid_t f;
    char *format = NULL;
    int32_t version, frank, fworld;
    uint64_t fp;

    if (access(r->path, F_OK) != 0) {
        ckpt_fail(r->err, ZERO_ERR_NOT_FOUND, "checkpoint shard file %s is missing", r->path);
        return -1;
    }
    if ((f = H5Fopen(r->path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        ckpt_fail_h5(r->err, ZERO_ERR_CHECKPOINT, "cannot open checkpoint file %s (truncated or not HDF5)", r->path);
        return -1;
    }
    if ((has_digest = check_meta_digest(r, f)) < 0)
        goto fail;
    if (r_str(r, f, "format", 0, &format))
        goto fail;
    if (strcmp(format, CKPT_FORMAT_NAME) != 0) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: format '%s' is not '%s'", r->path, format, CKPT_FORMAT_NAME);
        goto fail;
    }
    if (r_i32(r, f, "format_version", &version))
        goto fail;
    if (version < ZERO_CKPT_FORMAT_VERSION_MIN || version > ZERO_CKPT_FORMAT_VERSION) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: format version %d, but this libzero reads versions %d to %d",
                  r->path, (int)version, ZERO_CKPT_FORMAT_VERSION_MIN, ZERO_CKPT_FORMAT_VERSION);
        goto fail;
    }
    if (version >= 2 && !has_digest) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: attribute " CKPT_META_DIGEST_ATTR " is missing, but format "
                  "version %d requires it (corrupt file)", r->path, (int)version);
        goto fail;
    }
    r->unchecked = !has_digest;
    if (r_i32(r, f, "rank", &frank) || r_i32(r, f, "world_size", &fworld) || r_u64(r, f, "layout_fingerprint", &fp))
        goto fail;
    if (rank >= 0 && (frank != rank || fworld != world || fp != fingerprint)) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: attributes rank, world_size, layout_fingerprint say rank %d of %d "
                  "(map %016llx), which does not belong with zero_rank_00000.h5 beside it (expected rank %d of %d, "
                  "map %016llx): one of the two files is damaged or from another checkpoint", r->path, (int)frank,
                  (int)fworld, (unsigned long long)fp, rank, world, (unsigned long long)fingerprint);
        goto fail;
    }
    zero_free(format);
    return f;
fail:
    zero_free(format);
    H5Fclose(f);
    return -1;
}

static int check_shard(rctx_t *r, hid_t f, const zero_layout_t *l, const zero_ckpt_meta_t *m)
{
    for (int g = 0; g < l->num_groups; g++) {
        for (int k = -1; k < m->num_states; k++) {
            char name[128];
            hid_t d, s;
            hsize_t dims[1] = {0};
            int ok = 0;
            snprintf(name, sizeof(name), "/shard/group%d/%s", g, k < 0 ? "master" : m->state_names[k]);
            if ((d = H5Dopen2(f, name, H5P_DEFAULT)) >= 0) {
                if ((s = H5Dget_space(d)) >= 0) {
                    ok = H5Sget_simple_extent_ndims(s) == 1 && H5Sget_simple_extent_dims(s, dims, NULL) == 1 &&
                         dims[0] == l->groups[g].shard_length;
                    H5Sclose(s);
                }
                H5Dclose(d);
            }
            if (!ok) {
                ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: dataset %s is missing or does not hold %llu elements",
                          r->path, name, (unsigned long long)l->groups[g].shard_length);
                return -1;
            }
        }
    }
    return 0;
}

/* Opens and checks rank file @p rank (identity; data sets when it holds a shard). */
static hid_t reader_open_file(zero_ckpt_reader_t *rd, int rank, ckpt_err_t *err)
{
    char fname[64];
    rctx_t r = {NULL, err, 0};
    hid_t f;
    ckpt_rank_file_name(rank, fname, sizeof(fname));
    if ((r.path = zero_asprintf("%s/%s", rd->path, fname)) == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory opening checkpoint %s", rd->path);
        return -1;
    }
    f = open_rank_file(&r, rank, rd->num_files, rd->fingerprint);
    if (f >= 0 && rank < rd->layout.world_size && check_shard(&r, f, &rd->layout, &rd->meta)) {
        H5Fclose(f);
        f = -1;
    }
    zero_free(r.path);
    return f;
}

/* Version 2: the sidecar's digest and length from rank 0's (already verified) file. */
static int read_client_sd_digest(rctx_t *r, hid_t f0, zero_ckpt_reader_t *rd)
{
    size_t n;
    rd->unchecked = r->unchecked;
    if (r->unchecked)
        return 0;
    if (r_str_fixed(r, f0, "client_sd_sha256", rd->client_sd_sha256, sizeof(rd->client_sd_sha256)) ||
        r_u64(r, f0, "client_sd_bytes", &rd->client_sd_bytes))
        return -1;
    n = strlen(rd->client_sd_sha256);
    if (n != CKPT_SHA256_HEX || strspn(rd->client_sd_sha256, "0123456789abcdef") != n) {
        ckpt_fail(r->err, ZERO_ERR_CHECKPOINT, "%s: attribute client_sd_sha256 is not a SHA-256 digest", r->path);
        return -1;
    }
    return 0;
}

int ckpt_reader_unchecked(const zero_ckpt_reader_t *rd) { return rd->unchecked; }

void ckpt_reader_warn_unchecked(const zero_ckpt_reader_t *rd)
{
    if (rd->unchecked)
        ZERO_LOG_WARN("checkpoint %s has format version 1 (written before libzero checked metadata): its "
                      "attributes, partition map and " CKPT_CLIENT_SD " carry no digest and are used unchecked "
                      "(tensor data is still checksummed); save it again to upgrade it", rd->path);
}

zero_status_t ckpt_reader_check_sidecar(const zero_ckpt_reader_t *rd, const char *path, const char *data, size_t len,
                                        ckpt_err_t *err)
{
    char hex[CKPT_SHA256_HEX + 1];
    if (rd->unchecked)
        return ZERO_OK;
    if ((uint64_t)len != rd->client_sd_bytes) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s has %zu bytes, but zero_rank_00000.h5 (attribute client_sd_bytes) "
                  "records %llu: the sidecar is truncated or damaged", path, len,
                  (unsigned long long)rd->client_sd_bytes);
        return ZERO_ERR_CHECKPOINT;
    }
    ckpt_sha256_hex(data, len, hex);
    if (strcmp(hex, rd->client_sd_sha256) != 0) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s does not match the SHA-256 recorded in zero_rank_00000.h5 (attribute "
                  "client_sd_sha256): the sidecar is damaged", path);
        return ZERO_ERR_CHECKPOINT;
    }
    return ZERO_OK;
}

zero_status_t ckpt_reader_open_err(const char *dir, const char *tag, int check_all, zero_ckpt_reader_t **reader_p,
                                   ckpt_err_t *err)
{
    zero_ckpt_reader_t *rd;
    char *latest = NULL, fname[64];
    rctx_t r = {NULL, err, 0};
    hid_t f0 = -1;
    uint64_t fingerprint;
    zero_status_t status;
    struct stat st;

    zero_hdf5_quiet();
    if (tag == NULL) {
        if ((status = ckpt_read_latest_err(dir, &latest, err)) != ZERO_OK)
            return status;
        tag = latest;
    } else if (zero_ckpt_tag_check(tag, fname, sizeof(fname)) != ZERO_OK) {
        ckpt_fail(err, ZERO_ERR_INVALID_ARG, "invalid checkpoint tag '%s': %s", tag, fname);
        return ZERO_ERR_INVALID_ARG;
    }
    rd = zero_calloc(1, sizeof(*rd));
    if (rd == NULL || (rd->path = ckpt_path_join(dir, tag)) == NULL || (rd->tag = zero_strdup(tag)) == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory opening checkpoint %s/%s", dir, tag);
        status = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    zero_free(latest);
    latest = NULL;
    if (stat(rd->path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ckpt_fail(err, ZERO_ERR_NOT_FOUND, "no checkpoint %s: the directory does not exist", rd->path);
        status = ZERO_ERR_NOT_FOUND;
        goto fail;
    }
    ckpt_rank_file_name(0, fname, sizeof(fname));
    r.path = zero_asprintf("%s/%s", rd->path, fname);
    if (r.path == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory opening checkpoint %s", rd->path);
        status = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    if ((f0 = open_rank_file(&r, -1, 0, 0)) < 0 || read_meta(&r, f0, &rd->meta) || read_map(&r, f0, &rd->layout) ||
        r_u64(&r, f0, "layout_fingerprint", &fingerprint) || read_client_sd_digest(&r, f0, rd)) {
        status = err->status;
        goto fail;
    }
    rd->num_files = rd->meta.world_size;
    if (rd->num_files < 1 || rd->num_files > CKPT_MAX_FILES || rd->layout.world_size > rd->num_files) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: world_size %d does not fit the map's %d shards", r.path,
                  rd->num_files, rd->layout.world_size);
        status = ZERO_ERR_CHECKPOINT;
        goto fail;
    }
    rd->files = zero_malloc((size_t)rd->layout.world_size * sizeof(hid_t));
    rd->dsets = zero_calloc((size_t)rd->layout.world_size * ZERO_DTYPE_COUNT * (1 + ZERO_CKPT_MAX_STATES),
                            sizeof(*rd->dsets));
    if (rd->files == NULL || rd->dsets == NULL) {
        ckpt_fail(err, ZERO_ERR_NO_MEMORY, "out of memory opening checkpoint %s", rd->path);
        status = ZERO_ERR_NO_MEMORY;
        goto fail;
    }
    for (int i = 0; i < rd->layout.world_size; i++)
        rd->files[i] = -1;
    for (int i = 0; i < rd->layout.world_size * ZERO_DTYPE_COUNT * (1 + ZERO_CKPT_MAX_STATES); i++)
        rd->dsets[i].id = -1;
    rd->files[0] = f0;
    f0 = -1;
    if (check_shard(&r, rd->files[0], &rd->layout, &rd->meta)) {
        status = err->status;
        goto fail;
    }
    rd->fingerprint = fingerprint;
    for (int rank = 1; rank < rd->num_files && check_all; rank++) {
        hid_t f = reader_open_file(rd, rank, err);
        if (f < 0) {
            status = err->status;
            goto fail;
        }
        if (rank < rd->layout.world_size)
            rd->files[rank] = f;
        else
            H5Fclose(f);
    }
    zero_free(r.path);
    *reader_p = rd;
    return ZERO_OK;
fail:
    if (f0 >= 0)
        H5Fclose(f0);
    zero_free(r.path);
    zero_free(latest);
    zero_ckpt_reader_close(rd);
    return status;
}

zero_status_t zero_ckpt_reader_open(const char *dir, const char *tag, zero_ckpt_reader_t **reader_p)
{
    ckpt_err_t err = {0};
    if (dir == NULL || reader_p == NULL) {
        ZERO_LOG_ERROR("zero_ckpt_reader_open: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    if (ckpt_reader_open_err(dir, tag, 1, reader_p, &err) != ZERO_OK)
        return err.status;
    ckpt_reader_warn_unchecked(*reader_p);
    return ZERO_OK;
}

void zero_ckpt_reader_close(zero_ckpt_reader_t *rd)
{
    if (rd == NULL)
        return;
    for (int i = 0; i < rd->num_prefetchers; i++)
        pthread_join(rd->prefetchers[i], NULL);
    if (rd->dsets != NULL)
        for (int i = 0; i < rd->layout.world_size * ZERO_DTYPE_COUNT * (1 + ZERO_CKPT_MAX_STATES); i++)
            if (rd->dsets[i].id >= 0)
                H5Dclose(rd->dsets[i].id);
    zero_mem_free(rd->chunk_buf);
    if (rd->files != NULL)
        for (int i = 0; i < rd->layout.world_size; i++)
            if (rd->files[i] >= 0)
                H5Fclose(rd->files[i]);
    zero_free(rd->dsets);
    zero_free(rd->files);
    layout_clear(&rd->layout);
    zero_ckpt_meta_clear(&rd->meta);
    zero_free(rd->path);
    zero_free(rd->tag);
    zero_free(rd);
}

const zero_layout_t *zero_ckpt_reader_layout(const zero_ckpt_reader_t *rd) { return &rd->layout; }
const zero_ckpt_meta_t *zero_ckpt_reader_meta(const zero_ckpt_reader_t *rd) { return &rd->meta; }
const char *zero_ckpt_reader_tag(const zero_ckpt_reader_t *rd) { return rd->tag; }
const char *ckpt_reader_path(const zero_ckpt_reader_t *rd) { return rd->path; }

void zero_ckpt_meta_clear(zero_ckpt_meta_t *meta)
{
    if (meta == NULL)
        return;
    zero_free(meta->config_json);
    meta->config_json = NULL;
    zero_free(meta->param_groups);
    meta->param_groups = NULL;
}

static reader_dset_t *reader_dataset(zero_ckpt_reader_t *rd, int shard, int group, int state, ckpt_err_t *err)
{
    reader_dset_t *slot = &rd->dsets[((size_t)shard * ZERO_DTYPE_COUNT + (size_t)group) * (1 + ZERO_CKPT_MAX_STATES) +
                                     (size_t)(state + 1)];
    if (slot->id < 0) {
        char name[128];
        hid_t dcpl;
        snprintf(name, sizeof(name), "/shard/group%d/%s", group, state < 0 ? "master" : rd->meta.state_names[state]);
        if (rd->files[shard] < 0 && (rd->files[shard] = reader_open_file(rd, shard, err)) < 0)
            return NULL;
        slot->id = H5Dopen2(rd->files[shard], name, H5P_DEFAULT);
        if (slot->id < 0) {
            char fname[64];
            ckpt_rank_file_name(shard, fname, sizeof(fname));
            ckpt_fail_h5(err, ZERO_ERR_CHECKPOINT, "%s/%s: cannot open dataset %s", rd->path, fname, name);
            return NULL;
        }
        slot->length = rd->layout.groups[group].shard_length;
        slot->chunk = 0;
        slot->checksum = 0;
        slot->base = 0;
        {
            hid_t fcpl = H5Fget_create_plist(rd->files[shard]);
            hsize_t ub = 0;
            if (fcpl >= 0 && H5Pget_userblock(fcpl, &ub) >= 0)
                slot->base = (uint64_t)ub;
            if (fcpl >= 0)
                H5Pclose(fcpl);
        }
        if ((dcpl = H5Dget_create_plist(slot->id)) >= 0) {
            hsize_t cdims[1] = {0};
            if (H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 1, cdims) == 1)
                slot->chunk = (size_t)cdims[0];
            for (int i = 0, nf = H5Pget_nfilters(dcpl); i < nf; i++) {
                unsigned flags = 0;
                size_t nelmts = 0;
                H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelmts, NULL, 0, NULL, NULL);
                if (id == H5Z_FILTER_FLETCHER32)
                    slot->checksum = 1;
                else
                    slot->chunk = 0;   /* another filter: leave decoding to HDF5 */
            }
            H5Pclose(dcpl);
        }
    }
    return slot;
}

/* File offset of chunk @p index's data, after checking its stored size and filters. */
static zero_status_t chunk_location(reader_dset_t *ds, size_t index, const char *what, uint64_t *offset_p,
                                    ckpt_err_t *err)
{
    size_t want = ds->chunk * sizeof(float) + (ds->checksum ? 4 : 0);
    hsize_t coord[1] = {index * ds->chunk}, stored = 0;
    haddr_t addr = HADDR_UNDEF;
    unsigned mask = 0;

    if (H5Dget_chunk_info_by_coord(ds->id, coord, &mask, &addr, &stored) < 0 || addr == HADDR_UNDEF ||
        stored != want) {
        ckpt_fail_h5(err, ZERO_ERR_CHECKPOINT, "%s: chunk %zu is missing or has %llu bytes instead of %zu (corrupt "
                     "or truncated file)", what, index, addr == HADDR_UNDEF ? 0ULL : (unsigned long long)stored, want);
        return ZERO_ERR_CHECKPOINT;
    }
    if (mask != 0) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: chunk %zu was stored unfiltered (filter mask %u)", what, index, mask);
        return ZERO_ERR_CHECKPOINT;
    }
    *offset_p = ds->base + (uint64_t)addr;
    return ZERO_OK;
}

/* Plans elements [start, start + n) of a chunked dataset (see ckpt_plan.c). */
static zero_status_t plan_range(zero_ckpt_reader_t *rd, reader_dset_t *ds, const char *path, const char *what,
                                size_t start, size_t n, float *out, ckpt_err_t *err)
{
    ckpt_plan_chunk_desc_t cd;
    size_t done = 0;
    zero_status_t status = ZERO_OK;

    if ((cd.file = ckpt_plan_file(rd->plan, path, err)) < 0 || (cd.dataset = ckpt_plan_dataset(rd->plan, what, err)) < 0)
        return err->status;
    cd.bytes = ds->chunk * sizeof(float);
    cd.checksum = ds->checksum;
    while (done < n && status == ZERO_OK) {
        size_t at = start + done, within = at % ds->chunk;
        size_t m = ds->chunk - within < n - done ? ds->chunk - within : n - done;
        cd.index = at / ds->chunk;
        if ((status = chunk_location(ds, cd.index, what, &cd.offset, err)) == ZERO_OK)
            status = ckpt_plan_add(rd->plan, &cd, out != NULL ? out + done : NULL, within * sizeof(float),
                                   m * sizeof(float), err);
        done += m;
    }
    return status;
}

void ckpt_reader_set_plan(zero_ckpt_reader_t *rd, ckpt_plan_t *plan) { rd->plan = plan; }

/* Reads chunk @p index of a chunked dataset into @p dst (room for the chunk and
 * its 4-byte checksum) and verifies the checksum. */
static zero_status_t read_chunk_into(reader_dset_t *ds, size_t index, const char *what, float *dst, ckpt_err_t *err)
{
    size_t bytes = ds->chunk * sizeof(float);
    hsize_t coord[1] = {index * ds->chunk};
    uint64_t offset;
    uint32_t mask = 0;
    zero_status_t status;

    if ((status = chunk_location(ds, index, what, &offset, err)) != ZERO_OK)   /* stored size and filters */
        return status;
    if (H5Dread_chunk(ds->id, H5P_DEFAULT, coord, &mask, dst) < 0) {
        ckpt_fail_h5(err, ZERO_ERR_CHECKPOINT, "%s: cannot read chunk %zu (corrupt or truncated file)", what, index);
        return ZERO_ERR_CHECKPOINT;
    }
    if (ds->checksum && !ckpt_chunk_checksum_ok(dst, bytes, (const unsigned char *)dst + bytes)) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: checksum mismatch in chunk %zu (elements %zu..%zu): the file is "
                  "corrupt", what, index, index * ds->chunk, (index + 1) * ds->chunk - 1);
        return ZERO_ERR_CHECKPOINT;
    }
    return ZERO_OK;
}

/* Chunk @p index into rd->chunk_buf (kept: the next segment often needs it too). */
static zero_status_t read_chunk(zero_ckpt_reader_t *rd, reader_dset_t *ds, size_t index, const char *what,
                                ckpt_err_t *err)
{
    zero_status_t status;
    if (rd->chunk_owner == ds && rd->chunk_index == index)
        return ZERO_OK;
    rd->chunk_owner = NULL;
    if (rd->chunk_buf_elems < ds->chunk + 1) {
        zero_mem_free(rd->chunk_buf);
        rd->chunk_buf = NULL;
        rd->chunk_buf_elems = 0;
        if (zero_mem_alloc(ZERO_MEM_HOST, (ds->chunk + 1) * sizeof(float), "ckpt chunk", (void **)&rd->chunk_buf) !=
            ZERO_OK) {
            ckpt_fail(err, ZERO_ERR_NO_MEMORY, "%s: out of memory for a chunk of %zu elements", what, ds->chunk);
            return ZERO_ERR_NO_MEMORY;
        }
        rd->chunk_buf_elems = ds->chunk + 1;
    }
    if ((status = read_chunk_into(ds, index, what, rd->chunk_buf, err)) != ZERO_OK)
        return status;
    rd->chunk_owner = ds;
    rd->chunk_index = index;
    return ZERO_OK;
}

/* Reads a byte range of a file into the page cache, a few MiB at a time
 * (readahead(2) waits for each piece, which is why it runs on its own thread). */
static void *prefetch_main(void *arg)
{
    prefetch_job_t *job = arg;
    int fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        const off_t step = (off_t)8 << 20;
        for (off_t off = job->offset; off < job->offset + job->length; off += step) {
            off_t n = job->offset + job->length - off < step ? job->offset + job->length - off : step;
            if (readahead(fd, off, (size_t)n) != 0)
                break;
        }
        close(fd);
    }
    zero_free(job);
    return NULL;
}

/*
 * Starts reading chunks [first, last] of a dataset into the page cache now, on
 * a thread of its own (the chunks of one dataset lie one after another in the
 * file), so the chunk reads that follow find their data cached while this
 * thread checks checksums: disk and CPU work overlap. A plain
 * POSIX_FADV_WILLNEED does not give that overlap: it waits until the whole
 * range is submitted. Best effort: nothing is reported when it cannot start.
 */
static void prefetch(zero_ckpt_reader_t *rd, int shard, reader_dset_t *ds, size_t first, size_t last)
{
    hsize_t c0[1] = {first * ds->chunk}, c1[1] = {last * ds->chunk}, s0 = 0, s1 = 0;
    haddr_t a0 = 0, a1 = 0;
    unsigned m0 = 0, m1 = 0;
    void *handle = NULL;
    hid_t fapl;
    int sec2 = 0;

    if (last <= first)
        return;   /* one chunk: no look-ahead to gain */
    if ((fapl = H5Fget_access_plist(rd->files[shard])) >= 0) {
        sec2 = H5Pget_driver(fapl) == H5FD_SEC2;
        H5Pclose(fapl);
    }
    if (!sec2 || H5Fget_vfd_handle(rd->files[shard], H5P_DEFAULT, &handle) < 0 || handle == NULL)
        return;
    if (H5Dget_chunk_info_by_coord(ds->id, c0, &m0, &a0, &s0) < 0 ||
        H5Dget_chunk_info_by_coord(ds->id, c1, &m1, &a1, &s1) < 0 || a0 == HADDR_UNDEF || a1 == HADDR_UNDEF)
        return;
    if (a1 >= a0 && rd->num_prefetchers < CKPT_MAX_PREFETCHERS) {
        char fname[64];
        prefetch_job_t *job = zero_malloc(sizeof(*job));
        (void)handle;
        if (job == NULL)
            return;
        ckpt_rank_file_name(shard, fname, sizeof(fname));
        snprintf(job->path, sizeof(job->path), "%s/%s", rd->path, fname);
        job->offset = (off_t)a0;
        job->length = (off_t)(a1 + s1 - a0);
        if (pthread_create(&rd->prefetchers[rd->num_prefetchers], NULL, prefetch_main, job) == 0)
            rd->num_prefetchers++;
        else
            zero_free(job);
    }
}

/* Elements [start, start + n) of one shard dataset into @p out. */
static zero_status_t read_range(zero_ckpt_reader_t *rd, int shard, int group, int state, size_t start, size_t n,
                                float *out, ckpt_err_t *err)
{
    reader_dset_t *ds = reader_dataset(rd, shard, group, state, err);
    char what[512], fname[64];
    zero_status_t status = ZERO_OK;

    if (ds == NULL)
        return err->status;
    ckpt_rank_file_name(shard, fname, sizeof(fname));
    snprintf(what, sizeof(what), "%s/%s: dataset /shard/group%d/%s", rd->path, fname, group,
             state < 0 ? "master" : rd->meta.state_names[state]);
    if (start > ds->length || n > ds->length - start) {
        ckpt_fail(err, ZERO_ERR_CHECKPOINT, "%s: elements [%zu, +%zu) are out of its range", what, start, n);
        return ZERO_ERR_CHECKPOINT;
    }
    if (ds->chunk > 0 && rd->plan != NULL) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", rd->path, fname);
        return plan_range(rd, ds, path, what, start, n, out, err);
    } else if (ds->chunk > 0) {
        size_t done = 0;
        prefetch(rd, shard, ds, start / ds->chunk, (start + n - 1) / ds->chunk);
        while (done < n && status == ZERO_OK) {
            size_t at = start + done, index = at / ds->chunk, within = at % ds->chunk;
            size_t m = ds->chunk - within < n - done ? ds->chunk - within : n - done;
            if (out == NULL) {
                status = read_chunk(rd, ds, index, what, err);   /* verify only */
            } else if (within == 0 && m == ds->chunk && done + m + 1 <= n) {
                /* a whole chunk with more of the range after it: straight into
                 * place (its checksum lands on the next element, which the next
                 * chunk overwrites) */
                status = read_chunk_into(ds, index, what, out + done, err);
            } else if ((status = read_chunk(rd, ds, index, what, err)) == ZERO_OK) {
                memcpy(out + done, rd->chunk_buf + within, m * sizeof(float));
            }
            done += m;
        }
        return status;
    } else if (out == NULL) {
        return ZERO_OK;   /* not chunked: nothing to verify ahead (no checksums) */
    } else {
        hsize_t s[1] = {start}, c[1] = {n};
        hid_t fs, ms;
        herr_t rc = -1;
        if (rd->plan != NULL && ckpt_plan_holding(rd->plan) &&
            (out = ckpt_plan_hold_extra(rd->plan, out, n * sizeof(float), err)) == NULL)
            return err->status;   /* the safe load: into the plan's keeping, copied out on commit */
        fs = H5Dget_space(ds->id);
        ms = H5Screate_simple(1, c, NULL);
        if (fs >= 0 && ms >= 0 && dataset_storage_complete(ds->id) &&
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, s, NULL, c, NULL) >= 0)
            rc = H5Dread(ds->id, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out);
        if (ms >= 0)
            H5Sclose(ms);
        if (fs >= 0)
            H5Sclose(fs);
        if (rc < 0) {
            ckpt_fail_h5(err, ZERO_ERR_CHECKPOINT, "%s: read failed (corrupt data: checksum mismatch or truncated "
                         "file)", what);
            return ZERO_ERR_CHECKPOINT;
        }
    }
    return ZERO_OK;
}

zero_status_t ckpt_reader_read_err(zero_ckpt_reader_t *rd, int param, int state, size_t begin, size_t count,
                                   float *out, ckpt_err_t *err)
{
    const zero_layout_t *l = &rd->layout;
    const zero_layout_param_t *p;
    const zero_layout_bucket_t *b;
    size_t slice, flat, done = 0;

    if (param < 0 || param >= l->num_params || state < -1 || state >= rd->meta.num_states ||
        begin > l->params[param].numel || count > l->params[param].numel - begin) {
        ckpt_fail(err, ZERO_ERR_INVALID_ARG, "checkpoint read out of range (param %d, state %d, [%zu, +%zu))", param,
                  state, begin, count);
        return ZERO_ERR_INVALID_ARG;
    }
    p = &l->params[param];
    b = &l->buckets[p->bucket];
    slice = b->length / (size_t)l->world_size;
    flat = p->offset + begin - b->offset;    /* within the bucket */
    while (done < count) {
        size_t owner = (flat + done) / slice, within = (flat + done) % slice;
        size_t n = slice - within < count - done ? slice - within : count - done;
        zero_status_t st = read_range(rd, (int)owner, p->group, state, b->offset / (size_t)l->world_size + within, n,
                                      out != NULL ? out + done : NULL, err);
        if (st != ZERO_OK)
            return st;
        done += n;
    }
    return ZERO_OK;
}

zero_status_t zero_ckpt_reader_read(zero_ckpt_reader_t *rd, int param, int state, size_t begin, size_t count,
                                    float *out)
{
    ckpt_err_t err = {0};
    if (rd == NULL || out == NULL) {
        ZERO_LOG_ERROR("zero_ckpt_reader_read: NULL argument");
        return ZERO_ERR_INVALID_ARG;
    }
    return ckpt_reader_read_err(rd, param, state, begin, count, out, &err);
}
