/*
 * Checkpoint integrity (docs/testing.md "Checkpoint integrity"): every value a
 * load uses is checked before it is applied.
 *
 *   attribute_bits   bits of every attribute of both rank files, changed
 *                    through the HDF5 API (the value corrupted, the file still
 *                    well-formed): every one refused, naming the file and the
 *                    attribute, never the other file; every bit of the 8-byte
 *                    scalars of rank 0's file that the load applies (lr,
 *                    steps, ...), a seeded sample of every other attribute
 *   dataset_bits     bits of the partition map and config_json values
 *   raw_bytes        random bytes of the files outside the tensor chunks
 *                    (object headers, heaps, B-trees, superblock): refused
 *                    naming the file, or harmless (the state loaded is
 *                    bit-identical to the pristine load); each in a child
 *                    process, so that a crash is caught and reported
 *   sidecar          every bit of client_sd.json, every truncation, an
 *                    appended byte: refused naming client_sd.json
 *   latest           every bit of latest (one of them turns tag 't' into the
 *                    existing tag 'u'): refused naming <dir>/latest; a FIFO,
 *                    directory or over-long latest fails at once
 *   identity         world_size / layout_fingerprint / rank of one file set to
 *                    another valid value: the error names that file
 *   v1_fixture       a checkpoint written by format version 1 (main before
 *                    this change, tests/ckpt/fixtures/v1) loads, with exactly
 *                    one warning
 *   verify_tool      zero-ckpt-merge --verify on intact and damaged
 *                    checkpoints: exit status, every damaged object named
 *
 * usage: test_integrity PATH/zero-ckpt-merge PATH/fixtures/v1
 * The sampling seed is printed; ZERO_TEST_SEED=<n> repeats a run.
 */
#include "test_main.h"
#include "ckpt/ckpt_digest.h"
#include "ckpt_fixture.h"
#include "util/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Under AddressSanitizer, a malloc too large to serve returns NULL as it does
 * without it, instead of aborting: a damaged size field makes HDF5 ask for
 * exabytes (raw_bytes), and what is tested is that the load then fails cleanly. */
const char *__asan_default_options(void) __attribute__((visibility("default"), used));
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static zero_comm_h comm;
static const char *tool, *v1_fixture;
static uint64_t seed;
static char logbuf[1 << 16];
static int warnings;

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    size_t used = strlen(logbuf);
    (void)rank; (void)module; (void)user;
    if (level == ZERO_LOG_LEVEL_WARN)
        warnings++;
    snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", message);
}

static void log_capture(void)
{
    logbuf[0] = '\0';
    warnings = 0;
    zero_log_set_callback(capture, NULL);
}

static void log_restore(void) { zero_log_set_callback(NULL, NULL); }

/* xorshift64*: a fixed, printed seed makes every sample repeatable */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static char *make_dir(void)
{
    char tmpl[] = "/tmp/zero-integrity-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    return strdup(d);
}

static void rm_dir(char *d)
{
    ckpt_err_t e = {0};
    ckpt_remove_tree(d, &e);
    free(d);
}

/* ------------------------------------------------------------ loaded state */

typedef struct snapshot {
    zero_ckpt_meta_t meta;
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    char *sd, *tag;
} snapshot_t;

static const zero_layout_t *load_layout;   /* world 1: the load reads every shard file */

static zero_status_t load_snapshot(const char *dir, const char *tag, snapshot_t *s)
{
    zero_ckpt_load_params_t p = {tag, 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
    zero_status_t st;
    memset(s, 0, sizeof(*s));
    fix_alloc(load_layout, 2, -1.0f, s->g);
    st = zero_ckpt_load(comm, dir, &p, load_layout, 0, s->g, &s->meta, &s->sd, &s->tag);
    return st;
}

static void snapshot_free(snapshot_t *s)
{
    fix_free(load_layout, s->g);
    zero_ckpt_meta_clear(&s->meta);
    zero_free(s->sd);
    zero_free(s->tag);
    memset(s, 0, sizeof(*s));
}

/* Bit-identical loaded state (metadata, every array, sidecar, tag)? */
static int snapshot_equal(const snapshot_t *a, const snapshot_t *b)
{
    zero_ckpt_meta_t ma = a->meta, mb = b->meta;
    if ((a->meta.config_json == NULL) != (b->meta.config_json == NULL) ||
        (a->meta.config_json != NULL && strcmp(a->meta.config_json, b->meta.config_json) != 0))
        return 0;
    ma.config_json = mb.config_json = NULL;
    if (memcmp(&ma, &mb, sizeof(ma)) != 0)
        return 0;
    for (int gi = 0; gi < load_layout->num_groups; gi++) {
        size_t n = load_layout->groups[gi].shard_length * sizeof(float);
        if (memcmp(a->g[gi].master, b->g[gi].master, n) != 0 || memcmp(a->g[gi].state[0], b->g[gi].state[0], n) != 0 ||
            memcmp(a->g[gi].state[1], b->g[gi].state[1], n) != 0)
            return 0;
    }
    return strcmp(a->sd, b->sd) == 0 && strcmp(a->tag, b->tag) == 0;
}

/* ------------------------------------------------------------ the checkpoint under test */

static char *dir;                 /* holds tags "t" (latest) and "u" */
static char rank_path[2][600], sd_path[600], latest_path[600];
static snapshot_t pristine;
static zero_layout_t *save_layout, *full_layout;

static int suite_init(void)
{
    const char *env = getenv("ZERO_TEST_SEED");
    seed = env != NULL ? strtoull(env, NULL, 0) : 20261203;
    rng_state = seed ? seed : 1;
    fprintf(stderr, "test_integrity: sampling seed %llu (set ZERO_TEST_SEED to repeat)\n", (unsigned long long)seed);
    if (zero_comm_create(NULL, &comm) != ZERO_OK)
        return -1;
    if (zero_layout_build(fix_params, FIX_NPARAM, 2, 64, 500, &save_layout) != ZERO_OK ||
        zero_layout_build(fix_params, FIX_NPARAM, 1, 16, 777, &full_layout) != ZERO_OK)
        return -1;
    load_layout = full_layout;
    {
        char tmpl[] = "/tmp/zero-integrity-test-XXXXXX";
        if (mkdtemp(tmpl) == NULL || (dir = strdup(tmpl)) == NULL)
            return -1;
    }
    /* 'u' first, then 't': latest names 't', one bit away from 'u' */
    if (fix_sim_save(dir, "u", save_layout, 2, 3, 40, 2) != ZERO_OK ||
        fix_sim_save(dir, "t", save_layout, 2, 3, 50, 2) != ZERO_OK)
        return -1;
    for (int r = 0; r < 2; r++)
        snprintf(rank_path[r], sizeof(rank_path[r]), "%s/t/zero_rank_%05d.h5", dir, r);
    snprintf(sd_path, sizeof(sd_path), "%s/t/client_sd.json", dir);
    snprintf(latest_path, sizeof(latest_path), "%s/latest", dir);
    if (load_snapshot(dir, NULL, &pristine) != ZERO_OK || strcmp(pristine.tag, "t") != 0 ||
        fix_check(load_layout, 0, 2, 1, pristine.g) != 0 || pristine.meta.global_steps != 50)
        return -1;
    return 0;
}

static int suite_clean(void)
{
    snapshot_free(&pristine);
    if (dir != NULL)
        rm_dir(dir);
    zero_layout_destroy(save_layout);
    zero_layout_destroy(full_layout);
    zero_comm_destroy(comm);
    return 0;
}

/* Loads the checkpoint and expects a refusal whose log names @p must (and not
 * @p must_not, when given); the engine's buffers stay untouched. Returns 1 if so. */
static int expect_refused(const char *must, const char *must2, const char *must_not, const char *what)
{
    snapshot_t s;
    zero_status_t st;
    int ok, untouched = 1;
    log_capture();
    st = load_snapshot(dir, NULL, &s);
    log_restore();
    for (int gi = 0; gi < load_layout->num_groups && st != ZERO_OK; gi++)
        for (size_t j = 0; j < load_layout->groups[gi].shard_length; j++)
            untouched &= s.g[gi].master[j] == -1.0f && s.g[gi].state[0][j] == -1.0f;
    ok = st != ZERO_OK && untouched && strstr(logbuf, must) != NULL && (must2 == NULL || strstr(logbuf, must2)) &&
         (must_not == NULL || strstr(logbuf, must_not) == NULL);
    if (!ok)
        fprintf(stderr, "FAIL %s: status %s, untouched %d, log:\n%s\n", what, zero_status_string(st), untouched,
                logbuf);
    if (st == ZERO_OK)
        snapshot_free(&s);
    else
        fix_free(load_layout, s.g);
    return ok;
}

/* ------------------------------------------------------------ attribute and dataset values */

typedef struct attr_ref {
    char obj[64], name[64];
} attr_ref_t;

typedef struct attr_list {
    attr_ref_t refs[128];
    int count;
    const char *obj;
} attr_list_t;

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    attr_list_t *l = data;
    (void)loc; (void)info;
    if (l->count < 128) {
        snprintf(l->refs[l->count].obj, sizeof(l->refs[0].obj), "%s", l->obj);
        snprintf(l->refs[l->count].name, sizeof(l->refs[0].name), "%s", name);
        l->count++;
    }
    return 0;
}

/* Every attribute of the objects that carry attributes in a rank file. */
static void list_attrs(const char *path, attr_list_t *l)
{
    static const char *const objs[] = {"/", "/partition", "/shard", "/shard/group0", "/shard/group1"};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT_TRUE_FATAL(f >= 0);
    l->count = 0;
    for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) {
        hsize_t idx = 0;
        hid_t o;
        if (H5Lexists(f, objs[i], H5P_DEFAULT) <= 0 && strcmp(objs[i], "/") != 0)
            continue;
        o = H5Oopen(f, objs[i], H5P_DEFAULT);
        l->obj = objs[i];
        H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, l);
        H5Oclose(o);
    }
    H5Fclose(f);
}

/* XORs one bit of an attribute's (or, with @p attr NULL, a dataset's) stored
 * value, through HDF5 in the stored type: the value changes, nothing else.
 * Returns the value's size in bits (0 on failure). @p bit past the end: size only. */
static size_t flip_value_bit(const char *path, const char *obj, const char *attr, size_t bit)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), o = -1, ft = -1, sp = -1;
    size_t bytes = 0;
    unsigned char *buf = NULL;
    if (f < 0)
        return 0;
    if (attr != NULL) {
        hid_t ob = H5Oopen(f, obj, H5P_DEFAULT);
        o = H5Aopen(ob, attr, H5P_DEFAULT);
        H5Oclose(ob);
        ft = H5Aget_type(o);
        sp = H5Aget_space(o);
    } else {
        o = H5Dopen2(f, obj, H5P_DEFAULT);
        ft = H5Dget_type(o);
        sp = H5Dget_space(o);
    }
    bytes = (size_t)H5Sget_simple_extent_npoints(sp) * H5Tget_size(ft);
    if (bit < bytes * 8 && (buf = malloc(bytes)) != NULL) {
        herr_t rc = attr ? H5Aread(o, ft, buf) : H5Dread(o, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        if (rc < 0 || (attr ? H5Awrite(o, ft, buf) : H5Dwrite(o, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)) < 0)
            bytes = 0;
        free(buf);
    }
    H5Sclose(sp);
    H5Tclose(ft);
    if (attr)
        H5Aclose(o);
    else
        H5Dclose(o);
    H5Fclose(f);
    return bytes * 8;
}

/* The bits to try of a value of @p nbits: all of an 8-byte scalar, a seeded sample of longer ones. */
static int pick_bits(size_t nbits, size_t *bits, int max_sample)
{
    int n = 0;
    if (nbits <= 64) {
        for (size_t b = 0; b < nbits; b++)
            bits[n++] = b;
        return n;
    }
    bits[n++] = 0;
    bits[n++] = nbits - 1;
    while (n < max_sample)
        bits[n++] = (size_t)(rnd() % nbits);
    return n;
}

static int trials_total;

/* The scalars of rank 0's file whose every bit is flipped (the rest: a sample). */
static int every_bit(const char *name)
{
    static const char *const names[] = {"lr", "global_steps", "micro_steps", "skipped_steps",
                                        "lr_last_batch_iteration", "momentum", "loss_scale", "layout_fingerprint",
                                        "world_size", "rank", "stage", "format_version"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return 1;
    return 0;
}

static void test_attribute_bits(void)
{
    int trials = 0, refused = 0, verify_runs = 0, verify_named = 0;
    for (int r = 0; r < 2; r++) {
        attr_list_t l;
        char fname[64], other[64];
        snprintf(fname, sizeof(fname), "zero_rank_%05d.h5", r);
        snprintf(other, sizeof(other), "zero_rank_%05d.h5", 1 - r);
        list_attrs(rank_path[r], &l);
        CU_ASSERT_TRUE(l.count >= (r == 0 ? 30 : 28));
        for (int i = 0; i < l.count; i++) {
            const attr_ref_t *a = &l.refs[i];
            int is_digest = strcmp(a->name, CKPT_META_DIGEST_ATTR) == 0;
            size_t nbits = flip_value_bit(rank_path[r], a->obj, a->name, (size_t)-1), bits[160];
            char must[160], what[256];
            /* rank 1's file: a sample of every attribute; rank 0's: all bits of the scalars */
            int n = pick_bits(nbits, bits, is_digest ? 96 : 16);
            if (r == 0 && nbits <= 64 && !every_bit(a->name) && n > 16) {   /* 16 bits of the other scalars */
                for (int k = 0; k < 16; k++)
                    bits[k] = (size_t)(rnd() % nbits);
                n = 16;
            }
            if (r == 1 && n > 12) {   /* rank 1's attributes: 12 of their bits */
                for (int k = 0; k < 12; k++)
                    bits[k] = (size_t)(rnd() % nbits);
                n = 12;
            }
            CU_ASSERT_TRUE(nbits > 0);
            snprintf(must, sizeof(must), is_digest ? "attribute %s" : "attribute '%s'", a->name);
            for (int k = 0; k < n; k++) {
                snprintf(what, sizeof(what), "%s %s@%s bit %zu", fname, a->obj, a->name, bits[k]);
                CU_ASSERT_EQUAL_FATAL(flip_value_bit(rank_path[r], a->obj, a->name, bits[k]), nbits);
                trials++;
                if (expect_refused(fname, must, other, what))
                    refused++;
                if (k == 0) {
                    /* the offline check names the same object */
                    ckpt_verify_report_t rep;
                    log_capture();
                    int problems = ckpt_verify(dir, NULL, &rep);
                    log_restore();
                    verify_runs++;
                    if (problems > 0 && strstr(logbuf, fname) && strstr(logbuf, must))
                        verify_named++;
                    else
                        fprintf(stderr, "FAIL verify %s: %d problems, log:\n%s\n", what, problems, logbuf);
                }
                flip_value_bit(rank_path[r], a->obj, a->name, bits[k]);   /* back */
            }
        }
    }
    fprintf(stderr, "attribute_bits: %d flips, %d refused naming file and attribute; verify named %d of %d\n",
            trials, refused, verify_named, verify_runs);
    CU_ASSERT_EQUAL(refused, trials);
    CU_ASSERT_EQUAL(verify_named, verify_runs);
    trials_total += trials;
    /* every flip was undone: the checkpoint loads as before */
    {
        snapshot_t s;
        CU_ASSERT_EQUAL_FATAL(load_snapshot(dir, NULL, &s), ZERO_OK);
        CU_ASSERT_TRUE(snapshot_equal(&s, &pristine));
        snapshot_free(&s);
    }
}

static void test_dataset_bits(void)
{
    static const char *const dsets[] = {"/config_json", "/partition/params", "/partition/buckets", "/partition/groups"};
    int trials = 0, refused = 0;
    for (int r = 0; r < 2; r++) {
        char fname[64];
        snprintf(fname, sizeof(fname), "zero_rank_%05d.h5", r);
        for (size_t i = 0; i < sizeof(dsets) / sizeof(dsets[0]); i++) {
            size_t nbits = flip_value_bit(rank_path[r], dsets[i], NULL, (size_t)-1), bits[64];
            int n = pick_bits(nbits, bits, r == 0 ? 24 : 8);
            char must[128], what[256];
            CU_ASSERT_TRUE_FATAL(nbits > 0);
            snprintf(must, sizeof(must), "dataset %s", dsets[i]);
            for (int k = 0; k < n; k++) {
                snprintf(what, sizeof(what), "%s %s bit %zu", fname, dsets[i], bits[k]);
                CU_ASSERT_EQUAL_FATAL(flip_value_bit(rank_path[r], dsets[i], NULL, bits[k]), nbits);
                trials++;
                refused += expect_refused(fname, must, NULL, what);
                flip_value_bit(rank_path[r], dsets[i], NULL, bits[k]);
            }
        }
    }
    fprintf(stderr, "dataset_bits: %d flips, %d refused naming file and dataset\n", trials, refused);
    CU_ASSERT_EQUAL(refused, trials);
    trials_total += trials;
}

/* ------------------------------------------------------------ raw bytes */

typedef struct range {
    uint64_t begin, end;
} range_t;

/* The byte ranges of the shard tensor chunks (covered by their own checksums). */
static int chunk_ranges(const char *path, range_t *out, int max)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int n = 0;
    for (int g = 0; g < 2; g++) {
        static const char *const arrays[] = {"master", "exp_avg", "exp_avg_sq"};
        for (int k = 0; k < 3; k++) {
            char name[64];
            hid_t d, s;
            hsize_t nchunks = 0;
            snprintf(name, sizeof(name), "/shard/group%d/%s", g, arrays[k]);
            if ((d = H5Dopen2(f, name, H5P_DEFAULT)) < 0)
                continue;
            s = H5Dget_space(d);
            H5Dget_num_chunks(d, s, &nchunks);
            for (hsize_t c = 0; c < nchunks && n < max; c++) {
                hsize_t coord[1], size = 0;
                haddr_t addr = 0;
                unsigned mask = 0;
                if (H5Dget_chunk_info(d, s, c, coord, &mask, &addr, &size) >= 0) {
                    out[n].begin = addr;
                    out[n].end = addr + size;
                    n++;
                }
            }
            H5Sclose(s);
            H5Dclose(d);
        }
    }
    H5Fclose(f);
    return n;
}

static void xor_byte(const char *path, uint64_t offset, unsigned char mask)
{
    int fd = open(path, O_RDWR);
    unsigned char c = 0;
    CU_ASSERT_TRUE_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(pread(fd, &c, 1, (off_t)offset), 1);
    c ^= mask;
    CU_ASSERT_EQUAL(pwrite(fd, &c, 1, (off_t)offset), 1);
    close(fd);
}

static void test_raw_bytes(void)
{
    int trials = 0, refused = 0, harmless = 0, wrong = 0, crashed = 0;
    const int per_file = 150;
    for (int r = 0; r < 2; r++) {
        range_t chunks[64];
        int nchunks = chunk_ranges(rank_path[r], chunks, 64);
        struct stat st;
        char fname[64];
        snprintf(fname, sizeof(fname), "zero_rank_%05d.h5", r);
        CU_ASSERT_TRUE_FATAL(stat(rank_path[r], &st) == 0 && nchunks >= 6);
        for (int t = 0; t < per_file; t++) {
            uint64_t off;
            unsigned char mask = (unsigned char)(1u << (rnd() % 8));
            int in_chunk, status = 0;
            pid_t pid;
            do {   /* a byte outside every tensor chunk */
                off = rnd() % (uint64_t)st.st_size;
                in_chunk = 0;
                for (int c = 0; c < nchunks; c++)
                    in_chunk |= off >= chunks[c].begin && off < chunks[c].end;
            } while (in_chunk);
            xor_byte(rank_path[r], off, mask);
            fflush(stderr);
            if ((pid = fork()) == 0) {
                /* 10 refused naming the file, 11 harmless, 12 loaded something else, 13 refused naming
                 * nothing (not 1: a sanitizer's exit status) */
                snapshot_t s;
                zero_status_t lst;
                alarm(20);
                log_capture();
                lst = load_snapshot(dir, NULL, &s);
                log_restore();
                if (lst != ZERO_OK)
                    _exit(strstr(logbuf, fname) != NULL ? 10 : 13);
                _exit(snapshot_equal(&s, &pristine) ? 11 : 12);
            }
            CU_ASSERT_TRUE_FATAL(pid > 0);
            waitpid(pid, &status, 0);
            trials++;
            if (WIFEXITED(status) && WEXITSTATUS(status) == 10) {
                refused++;
            } else if (WIFEXITED(status) && WEXITSTATUS(status) == 11) {
                harmless++;
            } else {
                if (WIFEXITED(status))
                    wrong++;
                else
                    crashed++;
                fprintf(stderr, "FAIL raw byte %s offset %llu mask 0x%02x: %s %d\n", fname, (unsigned long long)off,
                        mask, WIFEXITED(status) ? "exit" : "signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            }
            xor_byte(rank_path[r], off, mask);
        }
    }
    fprintf(stderr, "raw_bytes: %d flips outside the tensor chunks: %d refused naming the file, %d harmless "
            "(bit-identical load), %d wrong, %d crashed\n", trials, refused, harmless, wrong, crashed);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(crashed, 0);
    CU_ASSERT_EQUAL(refused + harmless, trials);
    trials_total += trials;
}

/* ------------------------------------------------------------ sidecar, latest */

/* Replaces a file's contents (no fsync: thousands of these run). */
static void write_bytes(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    CU_ASSERT_EQUAL(fwrite(data, 1, len, f), len);
    CU_ASSERT_EQUAL(fclose(f), 0);
}

static void test_sidecar(void)
{
    const char *sd = FIX_CLIENT_SD;
    size_t len = strlen(sd);
    char buf[64], what[128];
    int trials = 0, refused = 0;
    for (size_t bit = 0; bit < len * 8; bit++) {
        memcpy(buf, sd, len);
        buf[bit / 8] ^= (char)(1u << (bit % 8));
        write_bytes(sd_path, buf, len);
        snprintf(what, sizeof(what), "client_sd.json bit %zu", bit);
        trials++;
        refused += expect_refused(sd_path, "SHA-256", NULL, what);
    }
    for (size_t n = 0; n < len; n++) {
        write_bytes(sd_path, sd, n);
        snprintf(what, sizeof(what), "client_sd.json truncated to %zu bytes", n);
        trials++;
        refused += expect_refused(sd_path, "truncated", NULL, what);
    }
    snprintf(buf, sizeof(buf), "%s\n", sd);
    write_bytes(sd_path, buf, len + 1);
    trials++;
    refused += expect_refused(sd_path, "client_sd_bytes", NULL, "client_sd.json with a byte appended");
    /* a FIFO in its place: refused at once, not waited on */
    unlink(sd_path);
    CU_ASSERT_EQUAL_FATAL(mkfifo(sd_path, 0600), 0);
    trials++;
    refused += expect_refused(sd_path, "FIFO", NULL, "client_sd.json a FIFO");
    unlink(sd_path);
    write_bytes(sd_path, sd, len);
    fprintf(stderr, "sidecar: %d damaged versions, %d refused naming %s\n", trials, refused, sd_path);
    CU_ASSERT_EQUAL(refused, trials);
    trials_total += trials;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void test_latest(void)
{
    char *text = NULL, *tag = NULL;
    size_t len = 0;
    ckpt_err_t err = {0};
    int trials = 0, refused = 0;
    double t0;

    CU_ASSERT_EQUAL_FATAL(ckpt_read_file(latest_path, &text, &len, &err), ZERO_OK);
    CU_ASSERT_EQUAL(len, 2 + strlen(CKPT_LATEST_DIGEST_PREFIX) + CKPT_SHA256_HEX + 1);   /* "t\nsha256:<hex>\n" */
    for (size_t bit = 0; bit < len * 8; bit++) {
        char *buf = malloc(len);
        memcpy(buf, text, len);
        buf[bit / 8] ^= (char)(1u << (bit % 8));
        write_bytes(latest_path, buf, len);
        free(buf);
        trials++;
        log_capture();
        zero_status_t st = zero_ckpt_read_latest(dir, &tag);
        log_restore();
        if (st != ZERO_OK && strstr(logbuf, latest_path) != NULL) {
            refused++;
        } else {
            fprintf(stderr, "FAIL latest bit %zu: %s, tag '%s', log: %s\n", bit, zero_status_string(st),
                    st == ZERO_OK ? tag : "", logbuf);
            zero_free(tag);
            tag = NULL;
        }
    }
    /* the flip that names the other real checkpoint, through a full load */
    {
        char *buf = malloc(len);
        memcpy(buf, text, len);
        buf[0] ^= 1;   /* 't' -> 'u' */
        CU_ASSERT_EQUAL(buf[0], 'u');
        write_bytes(latest_path, buf, len);
        free(buf);
        trials++;
        refused += expect_refused(latest_path, "does not match the SHA-256", NULL, "latest naming 'u'");
    }
    /* a FIFO, a directory and an over-long file: refused at once, naming the path */
    unlink(latest_path);
    CU_ASSERT_EQUAL_FATAL(mkfifo(latest_path, 0600), 0);
    alarm(30);   /* a load that waited on the FIFO would end the test here */
    t0 = now();
    trials++;
    refused += expect_refused(latest_path, "FIFO", NULL, "latest a FIFO");
    CU_ASSERT_TRUE(now() - t0 < 1.0);
    alarm(0);
    fprintf(stderr, "latest as a FIFO: refused after %.3f s\n", now() - t0);
    unlink(latest_path);
    CU_ASSERT_EQUAL_FATAL(mkdir(latest_path, 0700), 0);
    trials++;
    refused += expect_refused(latest_path, "a directory", NULL, "latest a directory");
    rmdir(latest_path);
    {
        char big[CKPT_LATEST_MAX_BYTES + 2];
        memset(big, 'a', sizeof(big));
        write_bytes(latest_path, big, sizeof(big));
        trials++;
        refused += expect_refused(latest_path, "too large", NULL, "latest too large");
    }
    /* a latest with the tag alone (older libzero, or by hand) still names it */
    write_bytes(latest_path, "t\n", 2);
    CU_ASSERT_EQUAL(zero_ckpt_read_latest(dir, &tag), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(tag ? tag : "", "t");
    zero_free(tag);
    write_bytes(latest_path, text, len);
    zero_free(text);
    fprintf(stderr, "latest: %d damaged versions, %d refused naming %s\n", trials, refused, latest_path);
    CU_ASSERT_EQUAL(refused, trials);
    trials_total += trials;
}

/* ------------------------------------------------------------ identity (finding 3) */

static void set_attr(const char *path, const char *name, hid_t mem_type, const void *value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a = H5Aopen(f, name, H5P_DEFAULT);
    CU_ASSERT_TRUE_FATAL(a >= 0);
    CU_ASSERT_TRUE(H5Awrite(a, mem_type, value) >= 0);
    H5Aclose(a);
    H5Fclose(f);
}

static void test_identity(void)
{
    for (int r = 0; r < 2; r++) {
        char fname[64], other[64], what[128], backup[sizeof(rank_path) + 8], cmd[2 * sizeof(backup) + 16];
        snprintf(fname, sizeof(fname), "zero_rank_%05d.h5", r);
        snprintf(other, sizeof(other), "zero_rank_%05d.h5", 1 - r);
        snprintf(backup, sizeof(backup), "%s.orig", rank_path[r]);
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", rank_path[r], backup);
        CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
        for (int which = 0; which < 3; which++) {
            int32_t v32 = which == 0 ? 3 : 1 - r;   /* world_size 3 / the other file's rank */
            uint64_t fp = 0x0123456789abcdefULL;
            if (which == 2)
                set_attr(rank_path[r], "layout_fingerprint", H5T_NATIVE_UINT64, &fp);
            else
                set_attr(rank_path[r], which == 0 ? "world_size" : "rank", H5T_NATIVE_INT32, &v32);
            snprintf(what, sizeof(what), "%s with another %s", fname,
                     which == 0 ? "world_size" : which == 1 ? "rank" : "layout_fingerprint");
            CU_ASSERT_TRUE(expect_refused(fname, which == 0 ? "'world_size'" : which == 1 ? "'rank'" :
                                          "'layout_fingerprint'", other, what));
            CU_ASSERT_EQUAL(rename(backup, rank_path[r]), 0);
            CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
        }
        unlink(backup);
    }
}

/* ------------------------------------------------------------ format version 1 */

static void test_v1_fixture(void)
{
    const zero_layout_param_desc_t d[3] = {fix_params[2], fix_params[3], fix_params[5]};
    zero_layout_t *L = NULL;
    snapshot_t s;
    zero_status_t st;
    char cmd[1200], out[4096];
    FILE *p;
    size_t n;

    /* the fixture's model: three of the fixture's parameters (see fixtures/v1/README.md) */
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, 3, 1, 16, 100, &L), ZERO_OK);
    load_layout = L;
    log_capture();
    st = load_snapshot(v1_fixture, NULL, &s);
    log_restore();
    load_layout = full_layout;
    CU_ASSERT_EQUAL(st, ZERO_OK);
    if (st == ZERO_OK) {
        CU_ASSERT_EQUAL(fix_check(L, 0, 2, 1, s.g), 0);
        CU_ASSERT_EQUAL(s.meta.global_steps, 12);
        CU_ASSERT_EQUAL(s.meta.lr, 1.25e-4);
        CU_ASSERT_STRING_EQUAL(s.sd, FIX_CLIENT_SD);
        CU_ASSERT_STRING_EQUAL(s.tag, "v1step");
        load_layout = L;
        snapshot_free(&s);
        load_layout = full_layout;
    } else {
        fix_free(L, s.g);
    }
    CU_ASSERT_EQUAL(warnings, 1);
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "format version 1"));
    /* the offline check accepts it and says what it could not check */
    snprintf(cmd, sizeof(cmd), "%s --verify %s 2>&1", tool, v1_fixture);
    p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    CU_ASSERT_EQUAL(pclose(p), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "2 of format version 1"));
    zero_layout_destroy(L);
}

/* ------------------------------------------------------------ zero-ckpt-merge --verify */

static int run_verify(const char *args, char *out, size_t size)
{
    char cmd[2048];
    FILE *p;
    size_t n;
    int st;
    snprintf(cmd, sizeof(cmd), "%s --verify %s 2>&1", tool, args);
    p = popen(cmd, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long chunk_start(const char *path, const char *dataset, int index)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, dataset, H5P_DEFAULT);
    hid_t s = H5Dget_space(d);
    hsize_t coord[1], size = 0;
    haddr_t addr = 0;
    unsigned mask = 0;
    CU_ASSERT_TRUE(H5Dget_chunk_info(d, s, (hsize_t)index, coord, &mask, &addr, &size) >= 0);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    return (long)addr;
}

static void test_verify_tool(void)
{
    char out[16384], args[1400], *work = make_dir(), cmd[1600], wpath[2][200], wsd[200];
    snprintf(args, sizeof(args), "%s", dir);
    CU_ASSERT_EQUAL(run_verify(args, out, sizeof(out)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "OK "));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "client_sd.json matches its digest"));
    snprintf(args, sizeof(args), "%s --tag u", dir);
    CU_ASSERT_EQUAL(run_verify(args, out, sizeof(out)), 0);

    /* four damaged objects in a copy: all named, exit status 2 */
    snprintf(cmd, sizeof(cmd), "cp -r '%s/t' '%s/latest' '%s/'", dir, dir, work);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    for (int r = 0; r < 2; r++)
        snprintf(wpath[r], sizeof(wpath[r]), "%s/t/zero_rank_%05d.h5", work, r);
    snprintf(wsd, sizeof(wsd), "%s/t/client_sd.json", work);
    CU_ASSERT_EQUAL(flip_value_bit(wpath[1], "/", "lr", 3), 64);
    xor_byte(wpath[0], (uint64_t)chunk_start(wpath[0], "/shard/group0/master", 0) + 5, 0x04);
    xor_byte(wpath[1], (uint64_t)chunk_start(wpath[1], "/shard/group1/exp_avg_sq", 0) + 1, 0x80);
    write_bytes(wsd, "{\"step\": 8}", 11);
    snprintf(args, sizeof(args), "%s", work);
    CU_ASSERT_EQUAL(run_verify(args, out, sizeof(out)), 2);
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "zero_rank_00001.h5: attribute 'lr' of / does not match"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "zero_rank_00000.h5: dataset /shard/group0/master chunk 0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "zero_rank_00001.h5: dataset /shard/group1/exp_avg_sq chunk 0"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "client_sd.json (11 bytes) does not match"));
    CU_ASSERT_PTR_NOT_NULL(strstr(out, "4 damaged or missing objects"));
    /* a damaged latest, and a missing rank file */
    {
        char lp[800];
        snprintf(lp, sizeof(lp), "%s/latest", work);
        write_bytes(lp, "t\nsha256:0000\n", 14);
        unlink(wpath[1]);
        CU_ASSERT_EQUAL(run_verify(args, out, sizeof(out)), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, lp));
        snprintf(args, sizeof(args), "%s --tag t", work);
        CU_ASSERT_EQUAL(run_verify(args, out, sizeof(out)), 2);
        CU_ASSERT_PTR_NOT_NULL(strstr(out, "zero_rank_00001.h5 is missing"));
        CU_ASSERT_PTR_NOT_NULL(strstr(out, lp));
    }
    if (CU_get_number_of_failures() > 0)
        fprintf(stderr, "verify output:\n%s\n", out);
    rm_dir(work);
}

static void test_sha256(void)
{
    char hex[CKPT_SHA256_HEX + 1];
    char *million = malloc(1000000);
    ckpt_sha256_hex("", 0, hex);
    CU_ASSERT_STRING_EQUAL(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    ckpt_sha256_hex("abc", 3, hex);
    CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ckpt_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
    CU_ASSERT_STRING_EQUAL(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    memset(million, 'a', 1000000);
    ckpt_sha256_hex(million, 1000000, hex);
    CU_ASSERT_STRING_EQUAL(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

static void test_summary(void)
{
    fprintf(stderr, "integrity: %d damaged versions tried in all (seed %llu)\n", trials_total,
            (unsigned long long)seed);
    CU_ASSERT_TRUE(trials_total >= 2000);
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"sha256", test_sha256},
        {"attribute_bits", test_attribute_bits},
        {"dataset_bits", test_dataset_bits},
        {"raw_bytes", test_raw_bytes},
        {"sidecar", test_sidecar},
        {"latest", test_latest},
        {"identity", test_identity},
        {"v1_fixture", test_v1_fixture},
        {"verify_tool", test_verify_tool},
        {"summary", test_summary},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"ckpt-integrity", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    if (argc < 3) {
        fprintf(stderr, "usage: test_integrity PATH/zero-ckpt-merge PATH/fixtures/v1\n");
        return 2;
    }
    tool = argv[1];
    v1_fixture = argv[2];
    return zero_test_main(argc, argv, suites);
}
