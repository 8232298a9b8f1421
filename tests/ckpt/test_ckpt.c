/*
 * lib/ckpt in one process: tags, latest, round trip, resharding between all
 * world sizes 1-4 and stages 0/3 (multi-rank checkpoints are written rank by
 * rank with the library's internal steps, then loaded for every new rank),
 * bad input, crash atomicity (a child process _exits at each commit phase via
 * the ZERO_CKPT_TEST_CRASH_AT hook) and keep-last clean-up.
 *
 * `test_ckpt --tmpfs` instead checks a save onto a full disk (a 256 KiB tmpfs;
 * exit 77 = skipped when mounting is not allowed).
 *
 * All data comparisons are bit-exact (the fixture's values are exact in fp32).
 */
#include "test_main.h"
#include "ckpt/ckpt_digest.h"
#include "ckpt_fixture.h"
#include "util/alloc.h"
#include "util/checks_hdf5.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static zero_comm_h comm;
static char logbuf[8192];

static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    size_t used = strlen(logbuf);
    (void)level; (void)rank; (void)module; (void)user;
    snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", message);
}

static void log_capture(void)
{
    logbuf[0] = '\0';
    zero_log_set_callback(capture, NULL);
}

static void log_restore(void) { zero_log_set_callback(NULL, NULL); }

static char *make_dir(void)
{
    char tmpl[] = "/tmp/zero-ckpt-test-XXXXXX";
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

static zero_layout_t *build(int world, size_t align, size_t bucket)
{
    zero_layout_t *L = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(fix_params, FIX_NPARAM, world, align, bucket, &L), ZERO_OK);
    return L;
}

static void sim_save(const char *dir, const char *tag, const zero_layout_t *L, int proc_world, int stage, uint64_t step)
{
    CU_ASSERT_EQUAL_FATAL(fix_sim_save(dir, tag, L, proc_world, stage, step, 2), ZERO_OK);
}

static const char *const adam_states[2] = {"exp_avg", "exp_avg_sq"};
static zero_ckpt_load_mode_t load_mode = ZERO_CKPT_LOAD_SCRATCH;   /* what load_all uses */

/* Loads @p tag onto every rank of @p L and returns the total of wrong elements
 * (or -status on a failed load). */
static long load_all(const char *dir, const char *tag, const zero_layout_t *L, int with_states)
{
    long bad = 0;
    for (int r = 0; r < L->world_size; r++) {
        zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
        zero_ckpt_load_params_t p = {tag, with_states, 2, {adam_states[0], adam_states[1]}, load_mode, NULL, NULL};
        zero_status_t st;
        fix_alloc(L, 2, -1.0f, g);
        st = zero_ckpt_load(comm, dir, &p, L, r, g, NULL, NULL, NULL);
        if (st != ZERO_OK) {
            fix_free(L, g);
            return (long)st;
        }
        bad += (long)fix_check(L, r, 2, with_states, g);
        fix_free(L, g);
    }
    return bad;
}

static void test_tags(void)
{
    ZERO_TEST_MEM_MARK();
    char why[128], long_tag[ZERO_CKPT_TAG_MAX + 2];
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("global_step100", why, sizeof(why)), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("2.3141", why, sizeof(why)), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("run 1 (final)", why, sizeof(why)), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("...", why, sizeof(why)), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check(NULL, why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check(".", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("..", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("a/b", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "/"));
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("../x", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("a\nb", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("a\x7f", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check("latest", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_EQUAL(zero_ckpt_tag_check(".tmp-x", why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    memset(long_tag, 'a', sizeof(long_tag));
    long_tag[ZERO_CKPT_TAG_MAX] = '\0';
    CU_ASSERT_EQUAL(zero_ckpt_tag_check(long_tag, why, sizeof(why)), ZERO_OK);
    long_tag[ZERO_CKPT_TAG_MAX] = 'a';
    long_tag[ZERO_CKPT_TAG_MAX + 1] = '\0';
    CU_ASSERT_EQUAL(zero_ckpt_tag_check(long_tag, why, sizeof(why)), ZERO_ERR_INVALID_ARG);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "longer"));
    ZERO_TEST_ASSERT_NO_LEAK();
}

static void test_latest(void)
{
    ZERO_TEST_MEM_MARK();
    char *dir = make_dir(), path[512], *tag = NULL;
    ckpt_err_t err = {0};
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);
    CU_ASSERT_EQUAL(zero_ckpt_read_latest(dir, &tag), ZERO_ERR_NOT_FOUND);          /* no latest */
    snprintf(path, sizeof(path), "%s/latest", dir);
    CU_ASSERT_EQUAL(ckpt_write_file(path, "\n", 1, &err), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_read_latest(dir, &tag), ZERO_ERR_CHECKPOINT);         /* empty */
    CU_ASSERT_EQUAL(ckpt_write_latest(dir, "gone", &err), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_read_latest(dir, &tag), ZERO_ERR_NOT_FOUND);          /* dangling */
    CU_ASSERT_EQUAL(ckpt_write_file(path, "../etc\n", 7, &err), ZERO_OK);
    CU_ASSERT_EQUAL(zero_ckpt_read_latest(dir, &tag), ZERO_ERR_CHECKPOINT);         /* unsafe */
    CU_ASSERT_PTR_NULL(tag);
    snprintf(path, sizeof(path), "%s/2.3141", dir);
    CU_ASSERT_EQUAL(mkdir(path, 0777), 0);
    CU_ASSERT_EQUAL(ckpt_write_latest(dir, "2.3141", &err), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(zero_ckpt_read_latest(dir, &tag), ZERO_OK);
    CU_ASSERT_STRING_EQUAL(tag, "2.3141");
    zero_free(tag);
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* The collective save at world size 1, load with tag NULL: data, metadata, client_sd. */
static void test_round_trip(void)
{
    ZERO_TEST_MEM_MARK();
    char *dir = make_dir(), *sd = NULL, *tag = NULL;
    zero_layout_t *L = build(1, 64, 500);
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT], out[ZERO_DTYPE_COUNT];
    zero_ckpt_meta_t meta, got;
    zero_ckpt_save_params_t sp = {"2.3141", ZERO_TAG_VALIDATION_FAIL, 0, "{\"step\": 12, \"pos\": [1, 2]}", NULL, 0};
    zero_ckpt_load_params_t lp = {NULL, 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
    fix_meta(&meta, 3, 12);
    fix_fill(L, 0, 2, g);
    CU_ASSERT_EQUAL_FATAL(zero_ckpt_save(comm, dir, &sp, L, 0, &meta, g), ZERO_OK);
    fix_alloc(L, 2, -1.0f, out);
    CU_ASSERT_EQUAL_FATAL(zero_ckpt_load(comm, dir, &lp, L, 0, out, &got, &sd, &tag), ZERO_OK);
    CU_ASSERT_EQUAL(fix_check(L, 0, 2, 1, out), 0);
    CU_ASSERT_STRING_EQUAL(tag, "2.3141");
    CU_ASSERT_STRING_EQUAL(sd, "{\"step\": 12, \"pos\": [1, 2]}");
    CU_ASSERT_EQUAL(got.stage, 3);
    CU_ASSERT_EQUAL(got.world_size, 1);
    CU_ASSERT_STRING_EQUAL(got.optimizer, "AdamW");
    CU_ASSERT_EQUAL(got.num_states, 2);
    CU_ASSERT_STRING_EQUAL(got.state_names[1], "exp_avg_sq");
    CU_ASSERT_EQUAL(got.global_steps, 12);
    CU_ASSERT_EQUAL(got.micro_steps, 36);
    CU_ASSERT_EQUAL(got.skipped_steps, 2);
    CU_ASSERT_EQUAL(got.loss_scale, 32768.0);
    CU_ASSERT_EQUAL(got.scaler_cur_iter, 12);
    CU_ASSERT_EQUAL(got.scaler_last_overflow_iter, 5);
    CU_ASSERT_EQUAL(got.scaler_cur_hysteresis, 1);
    CU_ASSERT_EQUAL(got.lr_last_batch_iteration, 10);
    CU_ASSERT_EQUAL(got.lr, 1.25e-4);
    CU_ASSERT_EQUAL(got.momentum, 0.9);
    CU_ASSERT_STRING_EQUAL(got.config_json, meta.config_json);
    zero_ckpt_meta_clear(&got);
    zero_free(sd);
    zero_free(tag);
    /* weights only: moments come back as zeros, and a missing moment dataset is not even read */
    lp.load_optimizer_states = 0;
    CU_ASSERT_EQUAL_FATAL(zero_ckpt_load(comm, dir, &lp, L, 0, out, NULL, NULL, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(fix_check(L, 0, 2, 0, out), 0);
    /* overwriting the same tag keeps exactly one copy and the new content */
    meta.global_steps = 13;
    CU_ASSERT_EQUAL_FATAL(zero_ckpt_save(comm, dir, &sp, L, 0, &meta, g), ZERO_OK);
    lp.tag = "2.3141";
    CU_ASSERT_EQUAL_FATAL(zero_ckpt_load(comm, dir, &lp, L, 0, out, &got, NULL, NULL), ZERO_OK);
    CU_ASSERT_EQUAL(got.global_steps, 13);
    zero_ckpt_meta_clear(&got);
    fix_free(L, g);
    fix_free(L, out);
    zero_layout_destroy(L);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* Every pair of (world size 1-4 at stage 3, stage 0 saved by 2 or 3 processes):
 * save with one bucket size and alignment, load with another. */
static void test_reshard(void)
{
    ZERO_TEST_MEM_MARK();
    char *dir = make_dir(), tag[64];
    for (int from = 0; from < 6; from++) {
        /* 1-4: stage 3 at that world; 0: stage 0 saved by 3 processes; 5: stage 0 by 1 */
        int w = from >= 1 && from <= 4 ? from : 1;
        int procs = from == 0 ? 3 : w;
        zero_layout_t *old = build(w, 64, 500);
        snprintf(tag, sizeof(tag), "from%d", from);
        sim_save(dir, tag, old, procs, from >= 1 && from <= 4 ? 3 : 0, 100 + (uint64_t)from);
        for (int to = 1; to <= 4; to++) {
            zero_layout_t *cur = build(to, 8, 2000);
            long bad = load_all(dir, tag, cur, 1);
            if (bad != 0)
                fprintf(stderr, "reshard %s -> world %d: %ld\n", tag, to, bad);
            CU_ASSERT_EQUAL(bad, 0);
            CU_ASSERT_EQUAL(load_all(dir, tag, cur, 0), 0);
            zero_layout_destroy(cur);
        }
        zero_layout_destroy(old);
    }
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* Reads through O_DIRECT where the file system has it (pass 0), and buffered
 * (pass 1: ZERO_CKPT_BUFFERED_READS, as on a file system without O_DIRECT). */
static void set_read_path(int buffered)
{
    if (buffered)
        setenv("ZERO_CKPT_BUFFERED_READS", "1", 1);
    else
        unsetenv("ZERO_CKPT_BUFFERED_READS");
}

/* Parameters spanning several 1 MiB chunks: whole chunks are read straight
 * into place, partial ones through the chunk buffer; all must land right,
 * through either read path. */
static void test_multi_chunk(void)
{
    ZERO_TEST_MEM_MARK();
    static const zero_layout_param_desc_t big[3] = {
        {"big.a", ZERO_FP32, 2, {1000, 700}}, {"small", ZERO_FP32, 1, {7}}, {"big.b", ZERO_BF16, 1, {600001}}};
    char *dir = make_dir();
    zero_layout_t *old = NULL;
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(big, 3, 2, 64, 1 << 20, &old), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(fix_sim_save(dir, "t", old, 2, 3, 1, 2), ZERO_OK);
    for (int buffered = 0; buffered < 2; buffered++) {
        set_read_path(buffered);
        for (int mode = 0; mode < 3; mode++) {
            load_mode = (zero_ckpt_load_mode_t)mode;
            for (int w = 1; w <= 3; w++) {
                zero_layout_t *cur = NULL;
                CU_ASSERT_EQUAL_FATAL(zero_layout_build(big, 3, w, 32, 100000, &cur), ZERO_OK);
                CU_ASSERT_EQUAL(load_all(dir, "t", cur, 1), 0);
                CU_ASSERT_EQUAL(load_all(dir, "t", cur, 0), 0);
                zero_layout_destroy(cur);
            }
        }
    }
    set_read_path(0);
    load_mode = ZERO_CKPT_LOAD_SCRATCH;
    zero_layout_destroy(old);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

static void flip_byte(const char *path, long offset)
{
    FILE *f = fopen(path, "r+b");
    int c;
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fseek(f, offset, SEEK_SET);
    c = fgetc(f);
    fseek(f, offset, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

/* File offset of chunk @p index of a dataset. */
static long chunk_offset_n(const char *path, const char *dataset, int index)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, dataset, H5P_DEFAULT);
    hid_t s = H5Dget_space(d);
    hsize_t coord[1], size = 0;
    haddr_t addr = 0;
    unsigned mask = 0;
    CU_ASSERT_TRUE(d >= 0);
    CU_ASSERT_TRUE(H5Dget_chunk_info(d, s, (hsize_t)index, coord, &mask, &addr, &size) >= 0);
    CU_ASSERT_TRUE(addr > 0 && size > 16);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
    return (long)addr;
}

static long chunk_offset(const char *path, const char *dataset) { return chunk_offset_n(path, dataset, 0); }

static void copy_tree(const char *from, const char *to)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
}

/* A flipped bit is found however its chunk is read: whole and in place (chunk
 * 0 of a shard) or in part through staging (chunk 1, the shard's last), in
 * every load mode, at the saving world size and resharded, through O_DIRECT
 * and buffered reads. */
static void test_multi_chunk_corrupt(void)
{
    ZERO_TEST_MEM_MARK();
    static const zero_layout_param_desc_t big[2] = {{"big.a", ZERO_FP32, 2, {1000, 700}},
                                                    {"big.b", ZERO_BF16, 1, {600001}}};
    char *dir = make_dir(), good[600], work[600], path[700], needle[64];
    zero_layout_t *old = NULL;
    snprintf(good, sizeof(good), "%s/good", dir);
    snprintf(work, sizeof(work), "%s/work", dir);
    snprintf(path, sizeof(path), "%s/t/zero_rank_00000.h5", work);
    CU_ASSERT_EQUAL_FATAL(zero_layout_build(big, 2, 2, 64, 1 << 20, &old), ZERO_OK);
    CU_ASSERT_EQUAL_FATAL(fix_sim_save(good, "t", old, 2, 3, 1, 2), ZERO_OK);
    for (int chunk = 0; chunk < 2; chunk++) {
        copy_tree(good, work);
        flip_byte(path, chunk_offset_n(path, "/shard/group0/master", chunk) + 5000);
        snprintf(needle, sizeof(needle), "master: checksum mismatch in chunk %d", chunk);
        for (int mode = 0; mode < 6; mode++) {
            set_read_path(mode >= 3);
            load_mode = (zero_ckpt_load_mode_t)(mode % 3);
            for (int w = 1; w <= 2; w++) {
                zero_layout_t *cur = NULL;
                CU_ASSERT_EQUAL_FATAL(zero_layout_build(big, 2, w, 64, w == 2 ? 1 << 20 : 100000, &cur), ZERO_OK);
                log_capture();
                CU_ASSERT_EQUAL(load_all(work, "t", cur, 1), (long)ZERO_ERR_CHECKPOINT);
                log_restore();
                if (strstr(logbuf, needle) == NULL) {
                    fprintf(stderr, "mode %d, world %d: expected '%s', got: %s\n", mode, w, needle, logbuf);
                    CU_FAIL("the corrupt chunk is not named");
                }
                zero_layout_destroy(cur);
            }
        }
    }
    set_read_path(0);
    load_mode = ZERO_CKPT_LOAD_SCRATCH;
    zero_layout_destroy(old);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* A failing load must leave the caller's buffers exactly as they were. */
static void expect_load_error(const char *dir, const char *tag, const zero_layout_t *L, zero_status_t want,
                              const char *needle, int states)
{
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_load_params_t p = {tag, states, 2, {adam_states[0], adam_states[1]}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
    char *sd = (char *)"untouched";
    log_capture();
    fix_alloc(L, 2, -1.0f, g);
    CU_ASSERT_EQUAL(zero_ckpt_load(comm, dir, &p, L, L->world_size - 1, g, NULL, &sd, NULL), want);
    log_restore();
    CU_ASSERT_STRING_EQUAL(sd, "untouched");
    for (int gi = 0; gi < L->num_groups; gi++)
        for (size_t j = 0; j < L->groups[gi].shard_length; j++)
            if (g[gi].master[j] != -1.0f || g[gi].state[0][j] != -1.0f) {
                CU_FAIL("a failed load wrote into the caller's buffers");
                gi = L->num_groups;
                break;
            }
    if (strstr(logbuf, needle) == NULL) {
        fprintf(stderr, "expected '%s' in the error, got: %s\n", needle, logbuf);
        CU_FAIL("error message does not name the cause");
    }
    fix_free(L, g);
}

static void test_bad_input(void)
{
    ZERO_TEST_MEM_MARK();
    char *dir = make_dir(), good[600], work[600], path[700];
    zero_layout_t *L3 = build(3, 64, 500), *L2 = build(2, 64, 500), *L1 = build(1, 64, 500);
    snprintf(good, sizeof(good), "%s/good", dir);
    snprintf(work, sizeof(work), "%s/work", dir);
    sim_save(good, "t", L3, 3, 3, 5);

    /* missing shard */
    copy_tree(good, work);
    snprintf(path, sizeof(path), "%s/t/zero_rank_00002.h5", work);
    unlink(path);
    expect_load_error(work, "t", L2, ZERO_ERR_NOT_FOUND, "zero_rank_00002.h5 is missing", 1);

    /* truncated file */
    copy_tree(good, work);
    snprintf(path, sizeof(path), "%s/t/zero_rank_00001.h5", work);
    CU_ASSERT_EQUAL(truncate(path, 3000), 0);
    expect_load_error(work, "t", L2, ZERO_ERR_CHECKPOINT, "zero_rank_00001.h5", 1);

    /* a flipped bit in the master weights, then in a moment */
    copy_tree(good, work);
    snprintf(path, sizeof(path), "%s/t/zero_rank_00000.h5", work);
    flip_byte(path, chunk_offset(path, "/shard/group0/master") + 40);
    expect_load_error(work, "t", L1, ZERO_ERR_CHECKPOINT, "zero_rank_00000.h5: dataset /shard/group0/master: checksum mismatch in chunk 0", 1);
    copy_tree(good, work);
    flip_byte(path, chunk_offset(path, "/shard/group1/exp_avg_sq") + 8);
    expect_load_error(work, "t", L1, ZERO_ERR_CHECKPOINT, "/shard/group1/exp_avg_sq", 1);
    /* ... which a weights-only load never reads */
    CU_ASSERT_EQUAL(load_all(work, "t", L1, 0), 0);

    /* the other load modes: verify-first also leaves the buffers untouched; direct reports the error */
    copy_tree(good, work);
    flip_byte(path, chunk_offset(path, "/shard/group0/master") + 40);
    {
        zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
        zero_ckpt_load_params_t p = {"t", 1, 2, {adam_states[0], adam_states[1]}, ZERO_CKPT_LOAD_VERIFY_FIRST, NULL, NULL};
        int touched = 0;
        fix_alloc(L1, 2, -1.0f, g);
        log_capture();
        CU_ASSERT_EQUAL(zero_ckpt_load(comm, work, &p, L1, 0, g, NULL, NULL, NULL), ZERO_ERR_CHECKPOINT);
        for (int gi = 0; gi < L1->num_groups; gi++)
            for (size_t j = 0; j < L1->groups[gi].shard_length; j++)
                touched |= g[gi].master[j] != -1.0f || g[gi].state[1][j] != -1.0f;
        CU_ASSERT_FALSE(touched);
        p.mode = ZERO_CKPT_LOAD_DIRECT;
        CU_ASSERT_EQUAL(zero_ckpt_load(comm, work, &p, L1, 0, g, NULL, NULL, NULL), ZERO_ERR_CHECKPOINT);
        log_restore();
        CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "checksum mismatch"));
        fix_free(L1, g);
    }

    /* a flipped byte in the partition map */
    copy_tree(good, work);
    flip_byte(path, chunk_offset(path, "/partition/params") + 3);
    expect_load_error(work, "t", L1, ZERO_ERR_CHECKPOINT, "/partition/params", 1);

    /* wrong format version */
    copy_tree(good, work);
    {
        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a = H5Aopen(f, "format_version", H5P_DEFAULT);
        int v = 99;
        ckpt_err_t err = {0};
        CU_ASSERT_TRUE(H5Awrite(a, H5T_NATIVE_INT, &v) >= 0);
        H5Aclose(a);
        /* sealed again, as a newer libzero would write it: the version check, not the digest, refuses it */
        CU_ASSERT_TRUE(H5Adelete(f, CKPT_META_DIGEST_ATTR) >= 0);
        CU_ASSERT_EQUAL(ckpt_meta_digest_write(f, path, &err), 0);
        H5Fclose(f);
    }
    expect_load_error(work, "t", L1, ZERO_ERR_CHECKPOINT, "format version 99", 1);

    /* a client_sd.json holding a NUL byte (found by tests/fuzz/fuzz_client_sd):
     * refused, not returned cut short at the NUL */
    copy_tree(good, work);
    {
        char sd_path[700];
        FILE *f;
        snprintf(sd_path, sizeof(sd_path), "%s/t/client_sd.json", work);
        f = fopen(sd_path, "wb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(f);
        fwrite("{\"a\": 1}\0{}", 1, 11, f);
        fclose(f);
    }
    /* the sidecar's SHA-256 in the rank file refuses it first (format 2); the
     * NUL check still guards files without one (format 1) */
    expect_load_error(work, "t", L1, ZERO_ERR_CHECKPOINT, "client_sd.json does not match the SHA-256", 1);

    /* different model: a shape, a name, an extra parameter */
    {
        zero_layout_param_desc_t d[FIX_NPARAM];
        zero_layout_t *M = NULL;
        memcpy(d, fix_params, sizeof(d));
        d[2].shape[0] = 38;
        CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, FIX_NPARAM, 2, 64, 500, &M), ZERO_OK);
        expect_load_error(good, "t", M, ZERO_ERR_CHECKPOINT, "'fc1.bias' is fp32 [37] there but fp32 [38] here", 1);
        zero_layout_destroy(M);
        memcpy(d, fix_params, sizeof(d));
        d[3].name = "ln.weight";
        CU_ASSERT_EQUAL_FATAL(zero_layout_build(d, FIX_NPARAM, 2, 64, 500, &M), ZERO_OK);
        expect_load_error(good, "t", M, ZERO_ERR_CHECKPOINT, "parameter 'ln.weight' is not in it", 1);
        zero_layout_destroy(M);
        CU_ASSERT_EQUAL_FATAL(zero_layout_build(fix_params, FIX_NPARAM - 1, 2, 64, 500, &M), ZERO_OK);
        expect_load_error(good, "t", M, ZERO_ERR_CHECKPOINT, "parameter 'fc2.weight' that the model lacks", 1);
        zero_layout_destroy(M);
    }

    /* another optimizer's states */
    {
        zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
        zero_ckpt_load_params_t p = {"t", 1, 1, {"momentum_buffer", NULL}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
        fix_alloc(L1, 2, -1.0f, g);
        log_capture();
        CU_ASSERT_EQUAL(zero_ckpt_load(comm, good, &p, L1, 0, g, NULL, NULL, NULL), ZERO_ERR_CHECKPOINT);
        log_restore();
        CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "no optimizer state 'momentum_buffer'"));
        fix_free(L1, g);
    }

    /* missing tag, empty and dangling latest */
    expect_load_error(good, "nope", L1, ZERO_ERR_NOT_FOUND, "does not exist", 1);
    copy_tree(good, work);
    snprintf(path, sizeof(path), "%s/latest", work);
    {
        ckpt_err_t err = {0};
        CU_ASSERT_EQUAL(ckpt_write_file(path, "", 0, &err), ZERO_OK);
        expect_load_error(work, NULL, L1, ZERO_ERR_CHECKPOINT, "is empty", 1);
        CU_ASSERT_EQUAL(ckpt_write_file(path, "u\n", 2, &err), ZERO_OK);
        expect_load_error(work, NULL, L1, ZERO_ERR_NOT_FOUND, "dangling", 1);
    }
    /* after all of that, the good checkpoint still loads */
    CU_ASSERT_EQUAL(load_all(good, NULL, L2, 1), 0);
    zero_layout_destroy(L1);
    zero_layout_destroy(L2);
    zero_layout_destroy(L3);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* Saves with the crash hook at @p phase in a child; returns its exit code. */
static int crashing_save(const char *dir, const char *tag, const char *phase, const zero_layout_t *L, uint64_t step)
{
    pid_t pid = fork();
    int st = 0;
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
        zero_ckpt_meta_t m;
        zero_ckpt_save_params_t sp = {tag, ZERO_TAG_VALIDATION_WARN, 0, "{}", NULL, 0};
        zero_log_set_level(ZERO_LOG_LEVEL_OFF);
        setenv("ZERO_CKPT_TEST_CRASH_AT", phase, 1);
        fix_meta(&m, 3, step);
        fix_fill(L, 0, 2, g);
        _exit(zero_ckpt_save(comm, dir, &sp, L, 0, &m, g) == ZERO_OK ? 0 : 1);
    }
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static uint64_t loaded_steps(const char *dir, const char *tag, const zero_layout_t *L)
{
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_load_params_t p = {tag, 1, 2, {adam_states[0], adam_states[1]}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
    zero_ckpt_meta_t m;
    uint64_t steps = 0;
    fix_alloc(L, 2, -1.0f, g);
    if (zero_ckpt_load(comm, dir, &p, L, 0, g, &m, NULL, NULL) == ZERO_OK) {
        if (fix_check(L, 0, 2, 1, g) == 0)
            steps = m.global_steps;
        zero_ckpt_meta_clear(&m);
    }
    fix_free(L, g);
    return steps;
}

static void test_crash_atomicity(void)
{
    ZERO_TEST_MEM_MARK();
    static const char *const phases[] = {"files_written", "before_rename", "after_rename", "latest_tmp_written",
                                         "latest_renamed"};
    zero_layout_t *L = build(1, 64, 500), *Lb = build(1, 64, 3000);
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
        char *dir = make_dir(), *tag = NULL;
        int after_rename = i >= 2, after_latest = i >= 4;
        CU_ASSERT_EQUAL_FATAL(crashing_save(dir, "a", "none", L, 1), 0);
        /* a new tag */
        CU_ASSERT_EQUAL(crashing_save(dir, "b", phases[i], L, 2), CKPT_CRASH_EXIT_CODE);
        CU_ASSERT_EQUAL_FATAL(zero_ckpt_read_latest(dir, &tag), ZERO_OK);
        CU_ASSERT_STRING_EQUAL(tag, after_latest ? "b" : "a");
        zero_free(tag);
        CU_ASSERT_EQUAL(loaded_steps(dir, NULL, L), after_latest ? 2u : 1u);
        if (after_rename)
            CU_ASSERT_EQUAL(loaded_steps(dir, "b", L), 2u);
        /* overwriting tag "a" (saved with another bucket size: the load reshards) */
        CU_ASSERT_EQUAL(crashing_save(dir, "a", phases[i], Lb, 3), CKPT_CRASH_EXIT_CODE);
        CU_ASSERT_EQUAL(loaded_steps(dir, "a", L), after_rename ? 3u : 1u);
        /* the next save cleans up whatever the crash left behind */
        CU_ASSERT_EQUAL(crashing_save(dir, "c", "none", L, 4), 0);
        {
            char cmd[600];
            snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A '%s' | grep '^\\.')\"", dir);
            CU_ASSERT_EQUAL(system(cmd), 0);
        }
        CU_ASSERT_EQUAL(loaded_steps(dir, NULL, L), 4u);
        rm_dir(dir);
    }
    zero_layout_destroy(L);
    zero_layout_destroy(Lb);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* libhdf5's own Fletcher-32 (exported, not in its public headers): the reference. */
uint32_t H5_checksum_fletcher32(const void *data, size_t len);

/* Our checksum equals HDF5's on random and saturated data of every length
 * class, and HDF5's own filter accepts the chunks we write directly. */
static void test_fletcher32(void)
{
    ZERO_TEST_MEM_MARK();
    size_t n = 1 << 16;
    unsigned char *buf = malloc(n + 8);
    char *dir = make_dir(), path[600];
    zero_layout_t *L = build(1, 64, 500);
    srand(7);
    for (size_t i = 0; i < n + 8; i++)
        buf[i] = (unsigned char)rand();
    for (int k = 0; k < 3000; k++) {
        size_t len = (size_t)rand() % (k < 1500 ? 2000 : n), off = (size_t)rand() % 8;
        if (k % 4 == 0)
            memset(buf + off, 0xff, len);
        if (ckpt_fletcher32(buf + off, len) != H5_checksum_fletcher32(buf + off, len)) {
            fprintf(stderr, "fletcher32 differs at length %zu\n", len);
            CU_FAIL("fletcher32 differs from libhdf5's");
            break;
        }
    }
    free(buf);
    /* HDF5's own filter verifies what we wrote (as h5py or h5dump would read it) */
    sim_save(dir, "t", L, 1, 3, 1);
    snprintf(path, sizeof(path), "%s/t/zero_rank_00000.h5", dir);
    {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "/shard/group0/master", H5P_DEFAULT);
        float *v = malloc(L->groups[0].shard_length * sizeof(float));
        CU_ASSERT(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
        CU_ASSERT_EQUAL(v[0], fix_value(L->params[0].name, 0, 0));
        H5Dclose(d);
        H5Fclose(f);
        flip_byte(path, chunk_offset(path, "/shard/group0/master") + 4);
        f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        d = H5Dopen2(f, "/shard/group0/master", H5P_DEFAULT);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        CU_ASSERT(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0);
        H5Dclose(d);
        H5Fclose(f);
        free(v);
    }
    zero_layout_destroy(L);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* Every Fletcher-32 kernel this CPU runs ("portable" always; "avx2" and
 * "avx512" on x86-64 CPUs with them; "auto", the one ckpt_fletcher32 picks;
 * and ckpt_fletcher32 itself, which takes the portable one for short data)
 * equals libhdf5's on random data of every length 0..5000 and 1 MiB at start addresses 0..63, and on the
 * edge cases of the mod-65535 arithmetic: all-zero data (sums 0), all 0xff and
 * a lone 0xffff word (sums multiples of 65535), 0x8000 words (0 after the
 * SIMD kernels' sign flip), odd lengths, lengths around HDF5's 360-word blocks
 * and the kernels' 64- and 128-word iterations and 4096-word reductions. */
static int fl_differs(ckpt_fletcher32_fn f, const char *name, const unsigned char *p, size_t len, const char *what)
{
    uint32_t want = H5_checksum_fletcher32(p, len), got = f(p, len);
    if (got == want)
        return 0;
    fprintf(stderr, "fletcher32 kernel %s: %s, length %zu, address %% 64 = %u: 0x%08x, libhdf5 0x%08x\n", name, what,
            len, (unsigned)((uintptr_t)p % 64), got, want);
    return 1;
}

static void test_fletcher32_kernels(void)
{
    ZERO_TEST_MEM_MARK();
    static const char *names[] = {"portable", "avx2", "avx512", "auto", "ckpt_fletcher32"};
    static const size_t edge_len[] = {0,    1,    2,    3,     4,     5,     31,    32,    33,     63,
                                      64,   65,   127,  128,   129,   130,   255,   256,   257,    511,
                                      512,  513,  718,  719,   720,   721,   722,   723,   1440,   1441,
                                      8190, 8191, 8192, 8193,  8194,  16384, 16385, 100001, 1 << 20, (1 << 20) + 1};
    size_t big = (size_t)1 << 20, cap = big + 128;
    unsigned char *buf = malloc(cap), *rnd = malloc(cap);
    int tested = 0;
    CU_ASSERT_FATAL(buf != NULL && rnd != NULL);
    srand(11);
    for (size_t i = 0; i < cap; i++)
        rnd[i] = (unsigned char)rand();
    CU_ASSERT_PTR_NULL(ckpt_fletcher32_kernel("no-such-kernel"));
    CU_ASSERT_PTR_NOT_NULL(ckpt_fletcher32_kernel("portable"));
    CU_ASSERT_PTR_NOT_NULL(ckpt_fletcher32_kernel("auto"));
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        ckpt_fletcher32_fn f =
            strcmp(names[k], "ckpt_fletcher32") == 0 ? ckpt_fletcher32 : ckpt_fletcher32_kernel(names[k]);
        int bad = 0;
        if (f == NULL) {
            fprintf(stderr, "fletcher32 kernel %s: not on this CPU, not tested\n", names[k]);
            continue;
        }
        tested++;
        /* random data, every length up to 5000, start addresses cycling 0..63 */
        for (size_t len = 0; len <= 5000 && !bad; len++)
            bad |= fl_differs(f, names[k], rnd + len % 64, len, "random");
        /* 1 MiB (and 1 MiB + 1) at every start address 0..63 */
        for (size_t off = 0; off < 64 && !bad; off++) {
            bad |= fl_differs(f, names[k], rnd + off, big, "random 1 MiB");
            bad |= fl_differs(f, names[k], rnd + off, big + 1, "random 1 MiB + 1");
        }
        /* edge cases, at two start addresses (37 bytes apart) */
        for (size_t e = 0; e < sizeof(edge_len) / sizeof(edge_len[0]) && !bad; e++) {
            size_t len = edge_len[e];
            for (size_t off = 0; off < 64 && !bad; off += 37) {
                unsigned char *p = buf + off;
                memset(p, 0, len);
                bad |= fl_differs(f, names[k], p, len, "all zero");
                memset(p, 0xff, len);
                bad |= fl_differs(f, names[k], p, len, "all 0xff");
                memset(p, 0, len);
                if (len >= 2) {
                    p[0] = p[1] = 0xff;
                    bad |= fl_differs(f, names[k], p, len, "0xffff then zeros");
                    p[0] = p[1] = 0;
                    p[len - 2 - (len % 2)] = p[len - 1 - (len % 2)] = 0xff;
                    bad |= fl_differs(f, names[k], p, len, "zeros then 0xffff");
                }
                if (len % 2) {
                    memset(p, 0, len);
                    p[len - 1] = 0xff;
                    bad |= fl_differs(f, names[k], p, len, "zeros then an odd 0xff byte");
                }
                for (size_t i = 0; i < len; i++)
                    p[i] = i % 2 ? 0x00 : 0x80;
                bad |= fl_differs(f, names[k], p, len, "0x8000 words");
                for (size_t i = 0; i < len; i++)
                    p[i] = (i / 2) % 2 ? 0xff : 0x00;
                bad |= fl_differs(f, names[k], p, len, "alternating 0xffff, 0x0000");
            }
        }
        if (bad)
            CU_FAIL("a fletcher32 kernel differs from libhdf5's");
    }
    CU_ASSERT(tested >= 3);
    free(buf);
    free(rnd);
    ZERO_TEST_ASSERT_NO_LEAK();
}

/* An unusable directory (a path through a regular file: root ignores permission
 * bits, so this is how a test gets a directory that cannot be created). */
static void test_unwritable(void)
{
    ZERO_TEST_MEM_MARK();
    char *dir = make_dir(), file[600], bad[700];
    zero_layout_t *L = build(1, 64, 500);
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_meta_t m;
    zero_ckpt_save_params_t sp = {"t", ZERO_TAG_VALIDATION_FAIL, 0, NULL, NULL, 0};
    ckpt_err_t err = {0};
    fix_meta(&m, 3, 1);
    fix_fill(L, 0, 2, g);
    snprintf(file, sizeof(file), "%s/plainfile", dir);
    CU_ASSERT_EQUAL(ckpt_write_file(file, "x", 1, &err), ZERO_OK);
    snprintf(bad, sizeof(bad), "%s/ckpt", file);
    log_capture();
    CU_ASSERT_EQUAL(zero_ckpt_save(comm, bad, &sp, L, 0, &m, g), ZERO_ERR_IO);
    /* and a bad tag fails before anything is touched */
    sp.tag = "../escape";
    CU_ASSERT_EQUAL(zero_ckpt_save(comm, dir, &sp, L, 0, &m, g), ZERO_ERR_INVALID_ARG);
    log_restore();
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "cannot create directory"));
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "Not a directory"));
    CU_ASSERT_PTR_NOT_NULL(strstr(logbuf, "invalid checkpoint tag '../escape'"));
    fix_free(L, g);
    zero_layout_destroy(L);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

/* util/checks_hdf5.h, the one reader of HDF5's error stack: the cause is the
 * innermost (most specific) message, captured as the call fails, so calls
 * that succeed afterwards (a clean-up) do not erase it; a failed system call
 * under HDF5 leads with its errno text. */
static void test_hdf5_cause(void)
{
    char *dir = make_dir(), path[600], why[384];
    hid_t f;
    snprintf(path, sizeof(path), "%s/not-hdf5", dir);
    FILE *text = fopen(path, "w");
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    fputs("plain text, no HDF5 signature\n", text);
    fclose(text);
    zero_hdf5_quiet();
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT(f < 0);
    H5Pclose(H5Pcreate(H5P_FILE_ACCESS));   /* a later call that succeeds */
    zero_hdf5_last_error(why, sizeof(why));
    /* the innermost message names the cause; the outermost would say "unable to open file" */
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "signature"));
    CU_ASSERT_PTR_NULL(strchr(why, '\n'));
    snprintf(path, sizeof(path), "%s/missing/none.h5", dir);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CU_ASSERT(f < 0);
    zero_hdf5_last_error(why, sizeof(why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "No such file or directory"));
    rm_dir(dir);
}

static void test_keep_last(void)
{
    ZERO_TEST_MEM_MARK();
    char *dir = make_dir(), tag[32], path[600];
    zero_layout_t *L = build(1, 64, 500);
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_meta_t m;
    struct stat st;
    fix_meta(&m, 3, 1);
    fix_fill(L, 0, 2, g);
    for (int s = 1; s <= 4; s++) {
        zero_ckpt_save_params_t sp = {tag, ZERO_TAG_VALIDATION_WARN, 2, NULL, NULL, 0};
        snprintf(tag, sizeof(tag), "global_step%d", s);
        CU_ASSERT_EQUAL_FATAL(zero_ckpt_save(comm, dir, &sp, L, 0, &m, g), ZERO_OK);
    }
    for (int s = 1; s <= 4; s++) {
        snprintf(path, sizeof(path), "%s/global_step%d", dir, s);
        CU_ASSERT_EQUAL(stat(path, &st) == 0, s >= 3);
    }
    fix_free(L, g);
    zero_layout_destroy(L);
    ZERO_TEST_ASSERT_NO_LEAK();
    rm_dir(dir);
}

static int full_disk_check(void)
{
    char tmpl[] = "/tmp/zero-ckpt-tmpfs-XXXXXX", *dir = mkdtemp(tmpl), cmd[256];
    static const zero_layout_param_desc_t big[2] = {{"w1", ZERO_FP32, 2, {100, 120}}, {"b1", ZERO_FP32, 1, {100}}};
    zero_layout_t *L = NULL;
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_meta_t m;
    zero_ckpt_save_params_t sp = {"first", ZERO_TAG_VALIDATION_WARN, 0, "{}", NULL, 0};
    char *tag = NULL;
    int fails = 0;

    if (dir == NULL || mount("tmpfs", dir, "tmpfs", 0, "size=256k") != 0) {
        fprintf(stderr, "cannot mount a tmpfs (%s): skipped\n", strerror(errno));
        if (dir)
            rmdir(dir);
        return 77;
    }
    if (zero_comm_create(NULL, &comm) != ZERO_OK)
        return 1;
    zero_layout_build(big, 2, 1, 64, 1 << 20, &L);
    fix_meta(&m, 3, 1);
    memset(g, 0, sizeof(g));
    g[0].master = calloc(L->groups[0].shard_length, 4);
    g[0].state[0] = calloc(L->groups[0].shard_length, 4);
    g[0].state[1] = calloc(L->groups[0].shard_length, 4);
    if (zero_ckpt_save(comm, dir, &sp, L, 0, &m, g) != ZERO_OK) {
        fprintf(stderr, "FAIL: first save onto the tmpfs failed\n");
        fails++;
    }
    sp.tag = "second";
    m.global_steps = 2;
    log_capture();
    if (zero_ckpt_save(comm, dir, &sp, L, 0, &m, g) == ZERO_OK) {
        fprintf(stderr, "FAIL: a save onto a full disk succeeded\n");
        fails++;
    }
    log_restore();
    fprintf(stderr, "full-disk error: %s", logbuf);
    if (strstr(logbuf, "No space left") == NULL && strstr(logbuf, "disk full") == NULL) {
        fprintf(stderr, "FAIL: the error does not say the disk is full\n");
        fails++;
    }
    snprintf(cmd, sizeof(cmd), "test \"$(ls -A '%s')\" = \"$(printf 'first\\nlatest')\"", dir);
    if (system(cmd) != 0 || zero_ckpt_read_latest(dir, &tag) != ZERO_OK || strcmp(tag, "first") != 0) {
        fprintf(stderr, "FAIL: the full-disk save left something behind or moved latest\n");
        fails++;
    }
    zero_free(tag);
    {
        zero_ckpt_load_params_t lp = {NULL, 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
        zero_ckpt_meta_t got;
        if (zero_ckpt_load(comm, dir, &lp, L, 0, g, &got, NULL, NULL) != ZERO_OK || got.global_steps != 1) {
            fprintf(stderr, "FAIL: the previous checkpoint does not load after the full-disk save\n");
            fails++;
        } else {
            zero_ckpt_meta_clear(&got);
        }
    }
    /* The disk filling up inside HDF5 (past the up-front check, e.g. another
     * writer): a clear error, the file discarded, and no crash at exit. */
    {
        ckpt_err_t err = {0};
        ckpt_file_desc_t d = {1, 0, 0, "x", L, &m, g, NULL};
        char path[256];
        snprintf(path, sizeof(path), "%s/direct.h5", dir);
        log_capture();
        if (ckpt_write_rank_file(path, &d, &err) == ZERO_OK || strstr(err.msg, "No space left") == NULL) {
            fprintf(stderr, "FAIL: a write onto a full disk inside HDF5 gave '%s'\n", err.msg);
            fails++;
        }
        log_restore();
        unlink(path);
    }
    free(g[0].master);
    free(g[0].state[0]);
    free(g[0].state[1]);
    zero_layout_destroy(L);
    zero_comm_destroy(comm);
    umount(dir);
    rmdir(dir);
    fprintf(stderr, "%s\n", fails ? "full-disk check FAILED" : "full-disk check passed");
    return fails ? 1 : 0;
}

static int suite_init(void) { return zero_comm_create(NULL, &comm) == ZERO_OK ? 0 : -1; }
static int suite_clean(void)
{
    zero_comm_destroy(comm);
    return 0;
}

int main(int argc, char **argv)
{
    static CU_TestInfo tests[] = {
        {"tags", test_tags},
        {"latest", test_latest},
        {"round_trip", test_round_trip},
        {"reshard_all_pairs", test_reshard},
        {"multi_chunk", test_multi_chunk},
        {"multi_chunk_corrupt", test_multi_chunk_corrupt},
        {"bad_input", test_bad_input},
        {"crash_atomicity", test_crash_atomicity},
        {"keep_last", test_keep_last},
        {"unwritable", test_unwritable},
        {"hdf5_cause", test_hdf5_cause},
        {"fletcher32", test_fletcher32},
        {"fletcher32-kernels", test_fletcher32_kernels},
        CU_TEST_INFO_NULL,
    };
    static CU_SuiteInfo suites[] = {
        {"ckpt", suite_init, suite_clean, NULL, NULL, tests},
        CU_SUITE_INFO_NULL,
    };
    if (argc > 1 && strcmp(argv[1], "--tmpfs") == 0)
        return full_disk_check();
    return zero_test_main(argc, argv, suites);
}
