/*
 * Multi-rank checkpoint check, run on every rank through zero-launch
 * (tests/ckpt/multi.sh drives it):
 *
 *   ckpt_check save DIR STAGE   save the fixture model at this world size and
 *                               stage (0: every rank holds all; 3: sharded) as
 *                               tag w<W>s<STAGE>, load it back and compare;
 *                               also checks tag agreement (Fail / Warn) and
 *                               that a missing shard, a damaged attribute in
 *                               the last rank's file and a damaged sidecar
 *                               fail on every rank, naming the file
 *   ckpt_check load DIR TAG STAGE   load TAG (saved at any world size) at this
 *                               world size and stage and compare
 *
 * Comparisons are bit-exact. Exit status 0 = passed.
 */
#include "ckpt/ckpt_internal.h"
#include "ckpt_fixture.h"
#include "rank_check.h"
#include "util/alloc.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char logbuf[4096];
static void capture(zero_log_level_t level, int rank, const char *module, const char *message, void *user)
{
    size_t used = strlen(logbuf);
    (void)level; (void)rank; (void)module; (void)user;
    snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", message);
}

static int fails;
#define CHECK(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "[rank %d] FAIL %s:%d: ", rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fprintf(stderr, "\n"); \
            fails++; \
        } \
    } while (0)

static int load_and_check(zero_comm_h comm, const char *dir, const char *tag, int stage, int rank, int world,
                          uint64_t want_steps)
{
    zero_layout_t *L = NULL;
    zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
    zero_ckpt_load_params_t lp = {tag, 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
    zero_ckpt_meta_t m;
    char *sd = NULL, *got_tag = NULL;
    int lw = stage == 0 ? 1 : world, own = stage == 0 ? 0 : rank;
    zero_status_t st;

    /* a different bucket size and alignment than the save used */
    zero_layout_build(fix_params, FIX_NPARAM, lw, 16, 777, &L);
    fix_alloc(L, 2, -1.0f, g);
    st = zero_ckpt_load(comm, dir, &lp, L, own, g, &m, &sd, &got_tag);
    CHECK(st == ZERO_OK, "load %s: %s", tag ? tag : "latest", zero_status_string(st));
    if (st == ZERO_OK) {
        size_t bad = fix_check(L, own, 2, 1, g);
        CHECK(bad == 0, "load %s: %zu wrong elements", got_tag, bad);
        CHECK(want_steps == 0 || m.global_steps == want_steps, "global_steps %llu", (unsigned long long)m.global_steps);
        CHECK(m.lr == 1.25e-4 && m.scaler_last_overflow_iter == 5, "metadata differs");
        CHECK(strcmp(sd, "{\"client\": 42}") == 0, "client_sd '%s'", sd);
        zero_ckpt_meta_clear(&m);
    }
    zero_free(sd);
    zero_free(got_tag);
    fix_free(L, g);
    zero_layout_destroy(L);
    return st == ZERO_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    zero_comm_h comm;
    int rank, world;
    if (argc < 4) {
        fprintf(stderr, "usage: ckpt_check save DIR STAGE | load DIR TAG STAGE (under zero-launch)\n");
        return 2;
    }
    if (rank_check_begin(&comm) != 0)
        return 1;
    rank = check_rank;
    world = check_world;

    if (strcmp(argv[1], "save") == 0) {
        const char *dir = argv[2];
        int stage = atoi(argv[3]), lw = stage == 0 ? 1 : world, own = stage == 0 ? 0 : rank;
        zero_layout_t *L = NULL;
        zero_ckpt_group_data_t g[ZERO_DTYPE_COUNT];
        zero_ckpt_meta_t meta;
        char tag[64], mine[96];
        zero_ckpt_save_params_t sp = {tag, ZERO_TAG_VALIDATION_FAIL, 0, "{\"client\": 42}", NULL, 0};
        zero_status_t st;

        snprintf(tag, sizeof(tag), "w%ds%d", world, stage);
        zero_layout_build(fix_params, FIX_NPARAM, lw, 64, 500, &L);
        fix_meta(&meta, stage, 100u + (uint64_t)world);
        fix_fill(L, own, 2, g);
        st = zero_ckpt_save(comm, dir, &sp, L, own, &meta, g);
        CHECK(st == ZERO_OK, "save %s: %s", tag, zero_status_string(st));
        load_and_check(comm, dir, NULL, stage, rank, world, 100u + (uint64_t)world);

        if (world > 1) {
            /* differing tags: Fail fails on every rank and leaves nothing behind */
            snprintf(mine, sizeof(mine), "%s-r%d", tag, rank == world - 1 ? 1 : 0);
            sp.tag = mine;
            logbuf[0] = '\0';
            zero_log_set_callback(capture, NULL);
            st = zero_ckpt_save(comm, dir, &sp, L, own, &meta, g);
            zero_log_set_callback(NULL, NULL);
            CHECK(st == ZERO_ERR_INVALID_ARG, "tag mismatch under Fail gave %s", zero_status_string(st));
            CHECK(strstr(logbuf, "differs across ranks") != NULL, "mismatch message: %s", logbuf);
            /* Warn: saved under rank 0's tag */
            sp.tag_validation = ZERO_TAG_VALIDATION_WARN;
            zero_log_set_level(ZERO_LOG_LEVEL_ERROR);
            st = zero_ckpt_save(comm, dir, &sp, L, own, &meta, g);
            zero_log_set_level(ZERO_LOG_LEVEL_WARN);
            CHECK(st == ZERO_OK, "tag mismatch under Warn gave %s", zero_status_string(st));
            snprintf(mine, sizeof(mine), "%s-r0", tag);
            load_and_check(comm, dir, mine, stage, rank, world, 0);
            if (rank == 0) {
                char path[1024];
                snprintf(path, sizeof(path), "%s/%s-r1", dir, tag);
                CHECK(access(path, F_OK) != 0, "%s exists after a failed save", path);
            }

            /* damaged metadata that only rank 0 reads (the last rank's lr; the
             * sidecar): every rank fails, naming the file, buffers untouched */
            if (stage == 3) {
                for (int damage = 0; damage < 2; damage++) {
                    char path[1024], want[128];
                    zero_ckpt_load_params_t lp = {mine, 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
                    zero_ckpt_group_data_t out[ZERO_DTYPE_COUNT];
                    double lr = 0.0;
                    if (damage == 0)
                        snprintf(path, sizeof(path), "%s/%s/zero_rank_%05d.h5", dir, mine, world - 1);
                    else
                        snprintf(path, sizeof(path), "%s/%s/client_sd.json", dir, mine);
                    zero_comm_barrier(comm);
                    if (rank == 0 && damage == 0) {
                        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a = H5Aopen(f, "lr", H5P_DEFAULT);
                        H5Aread(a, H5T_NATIVE_DOUBLE, &lr);
                        lr = -lr;   /* the sign bit */
                        CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, &lr) >= 0, "cannot damage %s", path);
                        H5Aclose(a);
                        H5Fclose(f);
                    } else if (rank == 0) {
                        FILE *f = fopen(path, "r+b");
                        CHECK(f != NULL && fputc('[', f) != EOF && fclose(f) == 0, "cannot damage %s", path);
                    }
                    zero_comm_barrier(comm);
                    fix_alloc(L, 2, -1.0f, out);
                    logbuf[0] = '\0';
                    zero_log_set_callback(capture, NULL);
                    st = zero_ckpt_load(comm, dir, &lp, L, own, out, NULL, NULL, NULL);
                    zero_log_set_callback(NULL, NULL);
                    CHECK(st == ZERO_ERR_CHECKPOINT, "damage %d gave %s", damage, zero_status_string(st));
                    if (damage == 0)
                        snprintf(want, sizeof(want), "zero_rank_%05d.h5: attribute 'lr' of /", world - 1);
                    else
                        snprintf(want, sizeof(want), "client_sd.json does not match the SHA-256");
                    CHECK(strstr(logbuf, want) != NULL, "damage %d message: %s", damage, logbuf);
                    CHECK(out[0].master[0] == -1.0f, "a failed load wrote into the buffers");
                    fix_free(L, out);
                    zero_comm_barrier(comm);
                    if (rank == 0 && damage == 0) {   /* undo */
                        hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), a = H5Aopen(f, "lr", H5P_DEFAULT);
                        lr = -lr;
                        H5Awrite(a, H5T_NATIVE_DOUBLE, &lr);
                        H5Aclose(a);
                        H5Fclose(f);
                    }
                }
            }
            /* a missing shard: every rank fails, naming the file */
            if (stage == 3) {
                char path[1024];
                zero_ckpt_load_params_t lp = {mine, 1, 2, {"exp_avg", "exp_avg_sq"}, ZERO_CKPT_LOAD_SCRATCH, NULL, NULL};
                zero_ckpt_group_data_t out[ZERO_DTYPE_COUNT];
                zero_comm_barrier(comm);
                if (rank == 0) {
                    snprintf(path, sizeof(path), "%s/%s/zero_rank_%05d.h5", dir, mine, world - 1);
                    unlink(path);
                }
                zero_comm_barrier(comm);
                fix_alloc(L, 2, -1.0f, out);
                logbuf[0] = '\0';
                zero_log_set_callback(capture, NULL);
                st = zero_ckpt_load(comm, dir, &lp, L, own, out, NULL, NULL, NULL);
                zero_log_set_callback(NULL, NULL);
                CHECK(st == ZERO_ERR_NOT_FOUND, "missing shard gave %s", zero_status_string(st));
                snprintf(path, sizeof(path), "zero_rank_%05d.h5 is missing", world - 1);
                CHECK(strstr(logbuf, path) != NULL, "missing-shard message: %s", logbuf);
                CHECK(out[0].master[0] == -1.0f, "a failed load wrote into the buffers");
                fix_free(L, out);
            }
        }
        fix_free(L, g);
        zero_layout_destroy(L);
    } else if (strcmp(argv[1], "load") == 0 && argc >= 5) {
        load_and_check(comm, argv[2], argv[3], atoi(argv[4]), rank, world, 0);
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        fails++;
    }
    zero_comm_destroy(comm);
    if (fails == 0 && rank == 0)
        printf("ckpt_check %s %s: passed at world size %d\n", argv[1], argc >= 5 ? argv[3] : argv[3], world);
    return fails ? 1 : 0;
}
