/*
 * zero-ckpt-merge: consolidates a sharded libzero checkpoint into one file of
 * full, named tensors (the fp32 master weights, optionally converted to bf16
 * or fp16), as HDF5 or safetensors; or lists a checkpoint directory.
 *
 * It streams one tensor at a time: each tensor is read from the shards that
 * hold its pieces into one buffer, converted in place and written, so peak
 * memory stays near the largest tensor. The output is a function of the
 * weights only (no tag, world size or time in it), so merging checkpoints of
 * the same model saved at different world sizes gives byte-identical files.
 * See docs/checkpoint-format.md.
 *
 * Exit status: 0 success, 1 failure writing the output, 2 bad arguments or a
 * missing/corrupt checkpoint.
 */
#define ZERO_LOG_MODULE "ckpt-merge"
#include "ckpt/ckpt.h"
#include "ckpt/ckpt_internal.h"
#include "util/alloc.h"
#include "util/checks_hdf5.h"
#include "util/clock.h"
#include "util/half.h"
#include "util/log.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef enum { OUT_H5, OUT_SAFETENSORS } out_format_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: zero-ckpt-merge DIR [--tag TAG] -o OUT.h5|OUT.safetensors [--dtype fp32|bf16|fp16] [--stats]\n"
            "       zero-ckpt-merge --list DIR [--tag TAG]\n"
            "       zero-ckpt-merge --verify DIR [--tag TAG]\n"
            "\n"
            "Writes the full, named tensors (consolidated fp32 master weights) of the libzero\n"
            "checkpoint DIR/TAG (default: the tag in DIR/latest) into one HDF5 file (one dataset per\n"
            "parameter, named by it) or safetensors file, one tensor at a time.\n"
            "\n"
            "  --tag TAG        checkpoint tag (default: DIR/latest)\n"
            "  -o, --output F   output file; its extension (.h5/.hdf5 or .safetensors) picks the format\n"
            "  --dtype D        fp32 (default), bf16 or fp16 (round to nearest even)\n"
            "  --list           print the tags in DIR and, for one tag, its world size, stage,\n"
            "                   steps, dtypes and tensors\n"
            "  --verify         check the checkpoint without loading it: DIR/latest, every rank\n"
            "                   file's metadata digest, every chunk checksum, client_sd.json;\n"
            "                   names every damaged object, exits 0 only when all is intact\n"
            "  --stats          print peak_rss_bytes, largest_tensor_bytes, total_bytes and seconds\n"
            "                   to stderr when done\n"
            "  -h, --help       this help\n"
            "\n"
            "A progress bar is drawn when stderr is a terminal. Exit status: 0 done, 1 writing the\n"
            "output failed, 2 bad arguments or a missing or corrupt checkpoint (--verify: 0 intact,\n"
            "2 damaged).\n");
}

static long peak_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (f != NULL) {
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb * 1024;
}

static void progress(int done, int total, double bytes)
{
    int width = 30, fill = total > 0 ? done * width / total : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %d/%d tensors, %.1f MiB", done, total, bytes / 1048576.0);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

static const char *st_dtype(zero_dtype_t d)
{
    return d == ZERO_BF16 ? "BF16" : d == ZERO_FP16 ? "F16" : "F32";
}

static void shape_string(const zero_layout_param_t *p, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int k = 0; k < p->ndim && used < size; k++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", k ? ", " : "", (long long)p->shape[k]);
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* Appends @p s to the JSON buffer as a string literal. */
static int json_string(char **buf, size_t *len, size_t *cap, const char *s)
{
    for (;;) {
        size_t need = *len + 6 * strlen(s) + 3;
        if (need > *cap) {
            size_t ncap = need * 2;
            char *nb = realloc(*buf, ncap);
            if (nb == NULL)
                return -1;
            *buf = nb;
            *cap = ncap;
        }
        break;
    }
    (*buf)[(*len)++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            (*buf)[(*len)++] = '\\';
            (*buf)[(*len)++] = (char)*c;
        } else if (*c < 0x20) {
            *len += (size_t)sprintf(*buf + *len, "\\u%04x", *c);
        } else {
            (*buf)[(*len)++] = (char)*c;
        }
    }
    (*buf)[(*len)++] = '"';
    (*buf)[*len] = '\0';
    return 0;
}

static int json_append(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > *cap) {
        size_t ncap = (*len + n + 1) * 2;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, s, n + 1);
    *len += n;
    return 0;
}

/* The safetensors header: tensors in registration order, data packed back to back. */
static char *safetensors_header(const zero_layout_t *l, zero_dtype_t out, size_t *len_p)
{
    size_t len = 0, cap = 4096, offset = 0, esize = zero_dtype_size(out);
    char *buf = malloc(cap), tmp[512];
    int err = 0;
    if (buf == NULL)
        return NULL;
    buf[0] = '\0';
    err |= json_append(&buf, &len, &cap, "{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"zero-ckpt-merge\"}");
    for (int i = 0; i < l->num_params && !err; i++) {
        const zero_layout_param_t *p = &l->params[i];
        char shape[256];
        shape_string(p, shape, sizeof(shape));
        err |= json_append(&buf, &len, &cap, ",");
        err |= json_string(&buf, &len, &cap, p->name);
        snprintf(tmp, sizeof(tmp), ":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}", st_dtype(out), shape,
                 offset, offset + p->numel * esize);
        err |= json_append(&buf, &len, &cap, tmp);
        offset += p->numel * esize;
    }
    err |= json_append(&buf, &len, &cap, "}");
    /* pad with spaces so the data starts 8-byte aligned */
    while (!err && (len % 8) != 0)
        err |= json_append(&buf, &len, &cap, " ");
    if (err) {
        free(buf);
        return NULL;
    }
    *len_p = len;
    return buf;
}

/* Converts @p n floats in place to the output dtype (16-bit results packed at the front). */
static void convert(float *data, size_t n, zero_dtype_t out)
{
    uint16_t *h = (uint16_t *)(void *)data;
    if (out == ZERO_BF16)
        for (size_t i = 0; i < n; i++)
            h[i] = zero_f32_to_bf16(data[i]);
    else if (out == ZERO_FP16)
        for (size_t i = 0; i < n; i++)
            h[i] = zero_f32_to_f16(data[i]);
}

/* HDF5 types for 16-bit floats: IEEE half (h5py reads it as float16) and bfloat16
 * (a custom float; HDF5 converts it exactly to float32, e.g. h5py's d.astype('f4')). */
static hid_t h5_type(zero_dtype_t out)
{
    hid_t t;
    if (out == ZERO_FP32)
        return H5Tcopy(H5T_IEEE_F32LE);
    t = H5Tcopy(H5T_IEEE_F32LE);
    if (out == ZERO_FP16) {
        H5Tset_fields(t, 15, 10, 5, 0, 10);
        H5Tset_size(t, 2);
        H5Tset_ebias(t, 15);
    } else {
        H5Tset_fields(t, 15, 7, 8, 0, 7);
        H5Tset_size(t, 2);
        H5Tset_ebias(t, 127);
    }
    return t;
}

static int write_all(FILE *f, const void *data, size_t bytes)
{
    return fwrite(data, 1, bytes, f) == bytes ? 0 : -1;
}

static int do_merge(const char *dir, const char *tag, const char *out_path, out_format_t fmt, zero_dtype_t out,
                    int stats)
{
    zero_ckpt_reader_t *rd = NULL;
    const zero_layout_t *l;
    char *tmp_path = NULL, *header = NULL;
    float *buf = NULL;
    size_t largest = 0, total = 0, header_len = 0;
    FILE *f = NULL;
    hid_t h5 = -1, t = -1, lcpl = -1, dcpl = -1;
    int rc = 1, tty = isatty(2);
    double t0 = zero_clock_now();

    if (zero_ckpt_reader_open(dir, tag, &rd) != ZERO_OK)
        return 2;
    l = zero_ckpt_reader_layout(rd);
    for (int i = 0; i < l->num_params; i++) {
        largest = l->params[i].numel > largest ? l->params[i].numel : largest;
        total += l->params[i].numel * zero_dtype_size(out);
    }
    if ((buf = malloc((largest > 0 ? largest : 1) * sizeof(float))) == NULL) {
        fprintf(stderr, "zero-ckpt-merge: out of memory for a tensor of %zu elements\n", largest);
        goto out;
    }
    if ((tmp_path = malloc(strlen(out_path) + 32)) == NULL)
        goto out;
    sprintf(tmp_path, "%s.tmp-%ld", out_path, (long)getpid());
    if (fmt == OUT_SAFETENSORS) {
        uint64_t n;
        unsigned char le[8];
        if ((header = safetensors_header(l, out, &header_len)) == NULL) {
            fprintf(stderr, "zero-ckpt-merge: out of memory building the header\n");
            goto out;
        }
        if ((f = fopen(tmp_path, "wb")) == NULL) {
            fprintf(stderr, "zero-ckpt-merge: cannot create %s: %s\n", tmp_path, strerror(errno));
            goto out;
        }
        n = header_len;
        for (int k = 0; k < 8; k++)
            le[k] = (unsigned char)(n >> (8 * k));
        if (write_all(f, le, 8) || write_all(f, header, header_len))
            goto write_failed;
    } else {
        char why[384];
        zero_hdf5_quiet();
        if ((h5 = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            zero_hdf5_last_error(why, sizeof(why));
            fprintf(stderr, "zero-ckpt-merge: cannot create %s: %s\n", tmp_path, why);
            goto out;
        }
        t = h5_type(out);
        lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        /* no modification times: the same weights give byte-identical files */
        dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_obj_track_times(dcpl, 0);
    }
    for (int i = 0; i < l->num_params; i++) {
        const zero_layout_param_t *p = &l->params[i];
        if (zero_ckpt_reader_read(rd, i, -1, 0, p->numel, buf) != ZERO_OK) {
            rc = 2;
            goto out;
        }
        if (fmt == OUT_SAFETENSORS) {
            convert(buf, p->numel, out);
            if (write_all(f, buf, p->numel * zero_dtype_size(out)))
                goto write_failed;
        } else {
            hsize_t dims[ZERO_LAYOUT_MAX_NDIM];
            hid_t space, d;
            herr_t w = -1;
            for (int k = 0; k < p->ndim; k++)
                dims[k] = (hsize_t)p->shape[k];
            space = p->ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(p->ndim, dims, NULL);
            d = H5Dcreate2(h5, p->name, t, space, lcpl, dcpl, H5P_DEFAULT);
            if (d >= 0)
                w = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            if (d >= 0)
                H5Dclose(d);
            H5Sclose(space);
            if (w < 0) {
                char why[384];
                zero_hdf5_last_error(why, sizeof(why));
                fprintf(stderr, "zero-ckpt-merge: cannot write dataset '%s' to %s: %s\n", p->name, tmp_path, why);
                goto out;
            }
        }
        if (tty)
            progress(i + 1, l->num_params, (double)total * (i + 1) / l->num_params);
    }
    if (fmt == OUT_SAFETENSORS) {
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
            goto write_failed;
        if (fclose(f) != 0) {
            f = NULL;
            goto write_failed;
        }
        f = NULL;
    } else {
        herr_t c = H5Fclose(h5);
        h5 = -1;
        if (c < 0) {
            char why[384];
            zero_hdf5_last_error(why, sizeof(why));
            fprintf(stderr, "zero-ckpt-merge: cannot finish %s: %s\n", tmp_path, why);
            goto out;
        }
    }
    if (rename(tmp_path, out_path) != 0) {
        fprintf(stderr, "zero-ckpt-merge: cannot rename %s to %s: %s\n", tmp_path, out_path, strerror(errno));
        goto out;
    }
    if (stats)
        fprintf(stderr, "peak_rss_bytes=%ld largest_tensor_bytes=%zu total_bytes=%zu seconds=%.3f\n",
                peak_rss_bytes(), largest * sizeof(float), total, zero_clock_now() - t0);
    rc = 0;
    goto out;
write_failed:
    fprintf(stderr, "zero-ckpt-merge: writing %s failed: %s\n", tmp_path, strerror(errno));
out:
    if (f != NULL)
        fclose(f);
    if (h5 >= 0)
        H5Fclose(h5);
    if (t >= 0)
        H5Tclose(t);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (rc != 0 && tmp_path != NULL)
        unlink(tmp_path);
    free(tmp_path);
    free(header);
    free(buf);
    zero_ckpt_reader_close(rd);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int do_list(const char *dir, const char *tag)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **tags = NULL, *latest = NULL;
    size_t n = 0;
    zero_ckpt_reader_t *rd = NULL;
    int rc = 2;

    if (d == NULL) {
        fprintf(stderr, "zero-ckpt-merge: cannot open %s: %s\n", dir, strerror(errno));
        return 2;
    }
    while ((de = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/zero_rank_00000.h5", dir, de->d_name);
        if (stat(path, &st) == 0) {
            char **nt = realloc(tags, (n + 1) * sizeof(*tags));
            if (nt == NULL)
                break;
            tags = nt;
            tags[n++] = strdup(de->d_name);
        }
    }
    closedir(d);
    if (n > 0)
        qsort(tags, n, sizeof(*tags), cmp_str);
    {
        zero_log_level_t lv = zero_log_get_level();
        zero_log_set_level(ZERO_LOG_LEVEL_OFF);
        if (zero_ckpt_read_latest(dir, &latest) != ZERO_OK)
            latest = NULL;
        zero_log_set_level(lv);
    }
    printf("checkpoints in %s:\n", dir);
    for (size_t i = 0; i < n; i++)
        printf("  %s%s\n", tags[i], latest && strcmp(latest, tags[i]) == 0 ? "  (latest)" : "");
    if (n == 0)
        printf("  (none)\n");
    if (tag != NULL || latest != NULL) {
        if (zero_ckpt_reader_open(dir, tag ? tag : latest, &rd) == ZERO_OK) {
            const zero_layout_t *l = zero_ckpt_reader_layout(rd);
            const zero_ckpt_meta_t *m = zero_ckpt_reader_meta(rd);
            size_t total = 0;
            printf("\ntag: %s\n", zero_ckpt_reader_tag(rd));
            printf("world_size: %d\nstage: %d\nshards: %d\n", m->world_size, m->stage, l->world_size);
            printf("global_steps: %llu\nmicro_steps: %llu\nskipped_steps: %llu\n",
                   (unsigned long long)m->global_steps, (unsigned long long)m->micro_steps,
                   (unsigned long long)m->skipped_steps);
            printf("dtypes:");
            for (int g = 0; g < l->num_groups; g++)
                printf(" %s", zero_dtype_string(l->groups[g].dtype));
            printf("\noptimizer: %s (states:", m->optimizer[0] ? m->optimizer : "none");
            for (int k = 0; k < m->num_states; k++)
                printf(" %s", m->state_names[k]);
            printf(")\nloss_scale: %g\nlr: %g\n\n", m->loss_scale, m->lr);
            printf("%-40s %-6s %-24s %12s\n", "tensor", "dtype", "shape", "numel");
            for (int i = 0; i < l->num_params; i++) {
                char shape[256];
                shape_string(&l->params[i], shape, sizeof(shape));
                printf("%-40s %-6s %-24s %12zu\n", l->params[i].name, zero_dtype_string(l->params[i].dtype), shape,
                       l->params[i].numel);
                total += l->params[i].numel;
            }
            printf("%d tensors, %zu elements\n", l->num_params, total);
            rc = 0;
        }
    } else {
        rc = n > 0 ? 0 : 2;
        if (n == 0)
            fprintf(stderr, "zero-ckpt-merge: no checkpoints in %s\n", dir);
    }
    for (size_t i = 0; i < n; i++)
        free(tags[i]);
    free(tags);
    zero_free(latest);
    zero_ckpt_reader_close(rd);
    return rc;
}

/* --verify: every damaged object is logged by lib/ckpt as it is found; a summary ends the output. */
static int do_verify(const char *dir, const char *tag)
{
    ckpt_verify_report_t rep;
    int problems = ckpt_verify(dir, tag, &rep);
    if (problems > 0) {
        fprintf(stderr, "zero-ckpt-merge: verify %s%s%s: %d damaged or missing object%s (listed above)\n", dir,
                rep.tag[0] ? "/" : "", rep.tag, problems, problems == 1 ? "" : "s");
        return 2;
    }
    printf("OK %s/%s: %d rank file%s (%d of format version 1, metadata unchecked), %zu chunk checksums, "
           "client_sd.json %s, latest %s\n", dir, rep.tag, rep.files, rep.files == 1 ? "" : "s", rep.unchecked_files,
           rep.chunks, rep.sidecar_checked ? "matches its digest" : "not checked (format version 1)",
           rep.latest_checked ? "names a valid tag" : "absent");
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *tag = NULL, *out = NULL, *dtype = "fp32";
    int list = 0, stats = 0, verify = 0;
    zero_dtype_t out_dtype;
    out_format_t fmt;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--list") == 0) {
            list = 1;
        } else if (strcmp(a, "--verify") == 0) {
            verify = 1;
        } else if (strcmp(a, "--stats") == 0) {
            stats = 1;
        } else if ((strcmp(a, "--tag") == 0 || strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 ||
                    strcmp(a, "--dtype") == 0)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "zero-ckpt-merge: %s needs a value\n", a);
                return 2;
            }
            if (strcmp(a, "--tag") == 0)
                tag = argv[++i];
            else if (strcmp(a, "--dtype") == 0)
                dtype = argv[++i];
            else
                out = argv[++i];
        } else if (a[0] == '-') {
            fprintf(stderr, "zero-ckpt-merge: unknown option %s (try --help)\n", a);
            return 2;
        } else if (dir == NULL) {
            dir = a;
        } else {
            fprintf(stderr, "zero-ckpt-merge: unexpected argument %s (try --help)\n", a);
            return 2;
        }
    }
    if (dir == NULL) {
        fprintf(stderr, "zero-ckpt-merge: no checkpoint directory given (try --help)\n");
        return 2;
    }
    if (verify)
        return do_verify(dir, tag);
    if (list) {
        int rc = do_list(dir, tag);
        if (stats)
            fprintf(stderr, "peak_rss_bytes=%ld\n", peak_rss_bytes());
        return rc;
    }
    if (out == NULL) {
        fprintf(stderr, "zero-ckpt-merge: no output file given (-o OUT.h5 or -o OUT.safetensors)\n");
        return 2;
    }
    if (ends_with(out, ".safetensors")) {
        fmt = OUT_SAFETENSORS;
    } else if (ends_with(out, ".h5") || ends_with(out, ".hdf5")) {
        fmt = OUT_H5;
    } else {
        fprintf(stderr, "zero-ckpt-merge: cannot tell the format of %s: name it *.h5, *.hdf5 or *.safetensors\n", out);
        return 2;
    }
    if (strcmp(dtype, "fp32") == 0) {
        out_dtype = ZERO_FP32;
    } else if (strcmp(dtype, "bf16") == 0) {
        out_dtype = ZERO_BF16;
    } else if (strcmp(dtype, "fp16") == 0) {
        out_dtype = ZERO_FP16;
    } else {
        fprintf(stderr, "zero-ckpt-merge: --dtype must be fp32, bf16 or fp16, not '%s'\n", dtype);
        return 2;
    }
    return do_merge(dir, tag, out, fmt, out_dtype, stats);
}
