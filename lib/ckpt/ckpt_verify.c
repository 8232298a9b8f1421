/*
 * Offline verification of a checkpoint (zero-ckpt-merge --verify): every
 * rank file's metadata digest, every chunk checksum of every shard dataset,
 * the sidecar against the digest rank 0's file records, and `latest`. Unlike
 * the load, it does not stop at the first damaged object: each one is logged.
 */
#define ZERO_LOG_MODULE "ckpt"
#include "ckpt/ckpt_digest.h"

#include "util/alloc.h"
#include "util/checks_hdf5.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct verify_state {
    const char *dir;             /* <dir>/<tag> */
    ckpt_verify_report_t *rep;
    ckpt_err_t err;              /* first problem; every one is logged */
    int world;                   /* rank 0's world_size, or -1 when rank 0's metadata is damaged */
    uint64_t fingerprint;
    char client_sd_sha256[CKPT_SHA256_HEX + 1];
    uint64_t client_sd_bytes;
    int have_client_sd_digest;
} verify_state_t;

static int read_attr(hid_t f, const char *name, hid_t mem_type, void *value)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Aread(a, mem_type, value) : -1;
    if (a >= 0)
        H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

static int read_attr_str(hid_t f, const char *name, char *buf, size_t size)
{
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), ft = -1, mt = -1;
    herr_t rc = -1;
    if (a >= 0 && (ft = H5Aget_type(a)) >= 0 && H5Tget_class(ft) == H5T_STRING && H5Tget_size(ft) <= size &&
        (mt = H5Tcopy(H5T_C_S1)) >= 0 && H5Tset_size(mt, size) >= 0 && H5Tset_cset(mt, H5Tget_cset(ft)) >= 0)
        rc = H5Aread(a, mt, buf);
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    buf[size - 1] = '\0';
    return rc < 0 ? -1 : 0;
}

/* Every chunk of one chunked, checksummed dataset. */
static void verify_dataset_chunks(verify_state_t *v, const char *path, hid_t f, const char *name)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT), dcpl = -1, space = -1;
    hsize_t dims[1] = {0}, cdims[1] = {0};
    int checksum = 0;
    unsigned char *buf = NULL;

    if (d < 0 || (dcpl = H5Dget_create_plist(d)) < 0 || (space = H5Dget_space(d)) < 0 ||
        H5Sget_simple_extent_ndims(space) != 1 || H5Sget_simple_extent_dims(space, dims, NULL) != 1) {
        ckpt_fail_h5(&v->err, ZERO_ERR_CHECKPOINT, "%s: dataset %s cannot be opened (corrupt file)", path, name);
        v->rep->problems++;
        goto out;
    }
    if (H5Pget_layout(dcpl) != H5D_CHUNKED || H5Pget_chunk(dcpl, 1, cdims) != 1 || cdims[0] == 0)
        goto out;   /* an empty dataset: nothing stored */
    for (int i = 0, nf = H5Pget_nfilters(dcpl); i < nf; i++) {
        unsigned flags = 0;
        size_t nelmts = 0;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &nelmts, NULL, 0, NULL, NULL) == H5Z_FILTER_FLETCHER32)
            checksum = 1;
    }
    if (!checksum) {
        ckpt_fail(&v->err, ZERO_ERR_CHECKPOINT, "%s: dataset %s carries no checksum (written with "
                  "ZERO_CKPT_BENCH_NO_CHECKSUM?): its data cannot be verified", path, name);
        v->rep->problems++;
        goto out;
    }
    {
        size_t chunk_bytes = (size_t)cdims[0] * sizeof(float), want = chunk_bytes + 4;
        size_t nchunks = (size_t)((dims[0] + cdims[0] - 1) / cdims[0]);
        if ((buf = zero_malloc(want)) == NULL) {
            ckpt_fail(&v->err, ZERO_ERR_NO_MEMORY, "%s: out of memory verifying dataset %s", path, name);
            v->rep->problems++;
            goto out;
        }
        for (size_t c = 0; c < nchunks; c++) {
            hsize_t coord[1] = {(hsize_t)c * cdims[0]}, stored = 0;
            haddr_t addr = HADDR_UNDEF;
            unsigned mask = 0;
            uint32_t fmask = 0;
            v->rep->chunks++;
            if (H5Dget_chunk_info_by_coord(d, coord, &mask, &addr, &stored) < 0 || addr == HADDR_UNDEF ||
                stored != want || mask != 0) {
                ckpt_fail(&v->err, ZERO_ERR_CHECKPOINT, "%s: dataset %s chunk %zu is missing or has the wrong size "
                          "(corrupt or truncated file)", path, name, c);
                v->rep->problems++;
            } else if (H5Dread_chunk(d, H5P_DEFAULT, coord, &fmask, buf) < 0) {
                ckpt_fail_h5(&v->err, ZERO_ERR_CHECKPOINT, "%s: dataset %s chunk %zu cannot be read (corrupt or "
                             "truncated file)", path, name, c);
                v->rep->problems++;
            } else if (!ckpt_chunk_checksum_ok(buf, chunk_bytes, buf + chunk_bytes)) {
                ckpt_fail(&v->err, ZERO_ERR_CHECKPOINT, "%s: dataset %s chunk %zu (elements %zu..%zu): checksum "
                          "mismatch", path, name, c, c * (size_t)cdims[0], (c + 1) * (size_t)cdims[0] - 1);
                v->rep->problems++;
            }
        }
    }
out:
    zero_free(buf);
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (d >= 0)
        H5Dclose(d);
}

typedef struct chunk_walk {
    verify_state_t *v;
    const char *path;
    hid_t file;
    char prefix[600];
} chunk_walk_t;

static herr_t shard_member_cb(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    chunk_walk_t *cw = data;
    char full[sizeof(cw->prefix)];
    hid_t o;
    int n = snprintf(full, sizeof(full), "%s/%s", cw->prefix, name);
    if (n < 0 || (size_t)n >= sizeof(full) || info->type != H5L_TYPE_HARD ||
        (o = H5Oopen(group, name, H5P_DEFAULT)) < 0)
        return 0;   /* not libzero's: the metadata digest reports it */
    if (H5Iget_type(o) == H5I_GROUP && strchr(cw->prefix + 1, '/') == NULL) {   /* /shard/groupN, no deeper */
        chunk_walk_t inner = *cw;
        hsize_t idx = 0;
        snprintf(inner.prefix, sizeof(inner.prefix), "%s", full);
        H5Literate(o, H5_INDEX_NAME, H5_ITER_INC, &idx, shard_member_cb, &inner);
    } else if (H5Iget_type(o) == H5I_DATASET) {
        verify_dataset_chunks(cw->v, cw->path, cw->file, full);
    }
    H5Oclose(o);
    return 0;
}

/* One rank file: metadata digest, identity, every shard chunk. */
static void verify_rank_file(verify_state_t *v, int rank)
{
    char fname[64], *path;
    hid_t f;
    int32_t version = 0, frank = -1, fworld = -1;
    uint64_t fp = 0;
    int meta_ok = 0, problems_before = v->rep->problems;
    htri_t has_digest;

    ckpt_rank_file_name(rank, fname, sizeof(fname));
    if ((path = zero_asprintf("%s/%s", v->dir, fname)) == NULL) {
        ckpt_fail(&v->err, ZERO_ERR_NO_MEMORY, "out of memory verifying %s", v->dir);
        v->rep->problems++;
        return;
    }
    if (access(path, F_OK) != 0) {
        ckpt_fail(&v->err, ZERO_ERR_NOT_FOUND, "checkpoint shard file %s is missing", path);
        v->rep->problems++;
        zero_free(path);
        return;
    }
    if ((f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        ckpt_fail_h5(&v->err, ZERO_ERR_CHECKPOINT, "cannot open checkpoint file %s (truncated or not HDF5)", path);
        v->rep->problems++;
        zero_free(path);
        return;
    }
    v->rep->files++;
    if ((has_digest = H5Aexists(f, CKPT_META_DIGEST_ATTR)) > 0) {
        int n = ckpt_meta_digest_check(f, path, &v->err);
        v->rep->problems += n;
        meta_ok = n == 0;
    } else if (read_attr(f, "format_version", H5T_NATIVE_INT32, &version) == 0 && version == 1) {
        v->rep->unchecked_files++;
        meta_ok = 1;
    } else {
        ckpt_fail(&v->err, ZERO_ERR_CHECKPOINT, "%s: attribute " CKPT_META_DIGEST_ATTR " is missing (corrupt file, "
                  "or not a libzero checkpoint)", path);
        v->rep->problems++;
    }
    if (meta_ok) {
        if (read_attr(f, "rank", H5T_NATIVE_INT32, &frank) || read_attr(f, "world_size", H5T_NATIVE_INT32, &fworld) ||
            read_attr(f, "layout_fingerprint", H5T_NATIVE_UINT64, &fp)) {
            ckpt_fail_h5(&v->err, ZERO_ERR_CHECKPOINT, "%s: cannot read attributes rank, world_size and "
                         "layout_fingerprint", path);
            v->rep->problems++;
        } else if (rank == 0) {
            v->world = fworld;
            v->fingerprint = fp;
            if (has_digest > 0 && read_attr_str(f, "client_sd_sha256", v->client_sd_sha256,
                                                sizeof(v->client_sd_sha256)) == 0 &&
                read_attr(f, "client_sd_bytes", H5T_NATIVE_UINT64, &v->client_sd_bytes) == 0)
                v->have_client_sd_digest = 1;
        }
        if (frank != rank || (v->world > 0 && (fworld != v->world || fp != v->fingerprint))) {
            ckpt_fail(&v->err, ZERO_ERR_CHECKPOINT, "%s: says rank %d of %d (map %016llx), expected rank %d of %d "
                      "(map %016llx) as in zero_rank_00000.h5", path, (int)frank, (int)fworld, (unsigned long long)fp,
                      rank, v->world, (unsigned long long)v->fingerprint);
            v->rep->problems++;
        }
    }
    if (H5Lexists(f, "shard", H5P_DEFAULT) > 0) {
        chunk_walk_t cw = {v, path, f, "/shard"};
        hsize_t idx = 0;
        H5Literate_by_name(f, "/shard", H5_INDEX_NAME, H5_ITER_INC, &idx, shard_member_cb, &cw, H5P_DEFAULT);
    }
    H5Fclose(f);
    if (v->rep->problems == problems_before)
        ZERO_LOG_DEBUG("%s verified", path);
    zero_free(path);
}

/* The highest N of the zero_rank_<N>.h5 files in @p dir, -1 if none. */
static int highest_rank_file(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int high = -1;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        int r = -1, used = 0;
        if (sscanf(de->d_name, "zero_rank_%d.h5%n", &r, &used) == 1 && de->d_name[used] == '\0' && r > high &&
            r < 1000000)
            high = r;
    }
    closedir(d);
    return high;
}

int ckpt_verify(const char *dir, const char *tag, ckpt_verify_report_t *rep)
{
    verify_state_t v;
    char *latest = NULL, *ckpt_dir = NULL, *sd_path = NULL, *sd = NULL, *lpath = NULL;
    struct stat st;
    size_t sd_len = 0;
    int files;

    memset(rep, 0, sizeof(*rep));
    memset(&v, 0, sizeof(v));
    v.rep = rep;
    v.world = -1;
    zero_hdf5_quiet();

    /* latest: checked whenever it exists; it names the tag when none is given */
    if ((lpath = ckpt_path_join(dir, CKPT_LATEST)) == NULL) {
        ckpt_fail(&v.err, ZERO_ERR_NO_MEMORY, "out of memory verifying %s", dir);
        rep->problems++;
        goto out;
    }
    if (lstat(lpath, &st) == 0 || tag == NULL) {
        ckpt_err_t lerr = {0};
        if (ckpt_read_latest_err(dir, &latest, &lerr) == ZERO_OK) {
            rep->latest_checked = 1;
        } else {
            rep->problems++;
            if (tag == NULL)
                goto out;   /* nothing to verify: no tag */
        }
    }
    if (tag == NULL)
        tag = latest;
    snprintf(rep->tag, sizeof(rep->tag), "%s", tag);
    if (zero_ckpt_tag_check(tag, NULL, 0) != ZERO_OK || (ckpt_dir = ckpt_path_join(dir, tag)) == NULL) {
        ckpt_fail(&v.err, ZERO_ERR_INVALID_ARG, "invalid checkpoint tag '%s'", tag);
        rep->problems++;
        goto out;
    }
    if (stat(ckpt_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ckpt_fail(&v.err, ZERO_ERR_NOT_FOUND, "no checkpoint %s: the directory does not exist", ckpt_dir);
        rep->problems++;
        goto out;
    }
    v.dir = ckpt_dir;

    /* rank files: as many as rank 0 says, and any more that lie there */
    verify_rank_file(&v, 0);
    files = highest_rank_file(ckpt_dir) + 1;
    if (v.world > files)
        files = v.world;
    if (v.world > 0 && files > v.world) {
        ckpt_fail(&v.err, ZERO_ERR_CHECKPOINT, "%s holds zero_rank files up to rank %d, but zero_rank_00000.h5 says "
                  "world_size %d", ckpt_dir, files - 1, v.world);
        rep->problems++;
    }
    for (int r = 1; r < files && r < 65536; r++)
        verify_rank_file(&v, r);

    /* the sidecar */
    if ((sd_path = ckpt_path_join(ckpt_dir, CKPT_CLIENT_SD)) == NULL) {
        ckpt_fail(&v.err, ZERO_ERR_NO_MEMORY, "out of memory verifying %s", ckpt_dir);
        rep->problems++;
        goto out;
    }
    {
        ckpt_err_t serr = {0};
        if (ckpt_read_file(sd_path, &sd, &sd_len, &serr) != ZERO_OK) {
            rep->problems++;
        } else if (v.have_client_sd_digest) {
            char hex[CKPT_SHA256_HEX + 1];
            ckpt_sha256_hex(sd, sd_len, hex);
            if (sd_len != v.client_sd_bytes || strcmp(hex, v.client_sd_sha256) != 0) {
                ckpt_fail(&v.err, ZERO_ERR_CHECKPOINT, "%s (%zu bytes) does not match the length (%llu) and SHA-256 "
                          "recorded in zero_rank_00000.h5: the sidecar is damaged or truncated", sd_path, sd_len,
                          (unsigned long long)v.client_sd_bytes);
                rep->problems++;
            } else {
                rep->sidecar_checked = 1;
            }
        }
    }

    /* last, what the load itself checks beyond digests (map consistency, shapes) */
    if (rep->problems == 0) {
        zero_ckpt_reader_t *rd = NULL;
        ckpt_err_t rerr = {0};
        if (ckpt_reader_open_err(dir, tag, 1, &rd, &rerr) != ZERO_OK)
            rep->problems++;
        zero_ckpt_reader_close(rd);
    }
out:
    zero_free(sd);
    zero_free(sd_path);
    zero_free(ckpt_dir);
    zero_free(lpath);
    zero_free(latest);
    return rep->problems;
}
