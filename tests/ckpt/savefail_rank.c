/*
 * Failed saves, one rank of a job started by zero-launch with the fault shim
 * (tests/ckpt/fault_shim.c) in LD_PRELOAD; driven by savefail.sh.
 *
 *   savefail_rank DIR [STRIDE [CLASS]]
 *
 * Trains a small ZeRO-2 model on every rank, saves DIR/first twice (a new tag,
 * then an overwrite) while the shim counts every filesystem call of the save
 * on each rank, then fails the save at every one of those calls: for each
 * target rank, each call class (open, write, truncate, fsync, rename, close),
 * each errno (ENOSPC, EIO, EDQUOT, a short write that fills the disk) and each
 * call number k (every STRIDE-th, default 1 = all; CLASS: that class only, for
 * debugging). After each failed save,
 * on every rank:
 *   - the status is an error, and zero_engine_last_error names the failing
 *     rank, a file under DIR and the errno text;
 *   - the engine's weights and counters are what they were before the save,
 *     and no HDF5 object is left open;
 *   - (rank 0) latest still says "first", DIR holds only first/ and latest
 *     (no .tmp-* left), and every file of first/ is byte-identical to what
 *     the good save wrote;
 *   - the engine trains one more step.
 * Finally, with the shim disarmed, a new save succeeds, and both it and
 * "first" load back bit for bit.
 *
 * Exit status 0 = every check passed.
 */
#include <zero/zero.h>

#include <hdf5.h>

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NPARAM 3
static const int64_t sizes[NPARAM] = {300, 77, 1000};

typedef int (*fault_config_fn)(const char *spec);
typedef long (*fault_calls_fn)(const char *op);
typedef int (*fault_fired_fn)(char *path, size_t size);
static fault_config_fn fault_config;
static fault_calls_fn fault_calls;
static fault_fired_fn fault_fired;

static int rank = -1, fails;
#define CHECK(cond, ...) \
    do { \
        if (!(cond)) { \
            fprintf(stderr, "[rank %d] FAIL %s:%d: ", rank, __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__); \
            fprintf(stderr, "\n"); \
            fails++; \
        } \
    } while (0)

static zero_engine_h eng;
static zero_param_h h[NPARAM];
static uint64_t train_step_count;

static void init_cb(const char *name, size_t offset, size_t count, float *out, void *user)
{
    int p = (int)(intptr_t)user;
    (void)name;
    for (size_t i = 0; i < count; i++)
        out[i] = 0.3f * sinf(0.7f * (float)(offset + i) + (float)p);
}

static int train_step(void)
{
    float seed;
    uint64_t s = train_step_count++;
    if (zero_backward_begin(eng, &seed) != ZERO_OK)
        return -1;
    for (int p = NPARAM - 1; p >= 0; p--) {
        float *g = zero_param_grad(h[p]);
        for (size_t i = 0; i < (size_t)sizes[p]; i++)
            g[i] += seed * 0.05f * cosf(0.013f * (float)(s * 7 + (uint64_t)p + (uint64_t)rank) + 0.37f * (float)i);
        if (zero_grad_ready(eng, h[p]) != ZERO_OK)
            return -1;
    }
    return zero_backward_end(eng) == ZERO_OK && zero_step(eng, NULL) == ZERO_OK ? 0 : -1;
}

static float *weights_copy(void)
{
    size_t total = 0, at = 0;
    float *w;
    for (int p = 0; p < NPARAM; p++)
        total += (size_t)sizes[p];
    w = malloc(total * sizeof(float));
    for (int p = 0; p < NPARAM; p++) {
        memcpy(w + at, zero_param_data(h[p]), (size_t)sizes[p] * sizeof(float));
        at += (size_t)sizes[p];
    }
    return w;
}

static int weights_equal(const float *w)
{
    size_t at = 0;
    for (int p = 0; p < NPARAM; p++) {
        if (memcmp(w + at, zero_param_data(h[p]), (size_t)sizes[p] * sizeof(float)) != 0)
            return 0;
        at += (size_t)sizes[p];
    }
    return 1;
}

/* ---- a snapshot of a directory's files (names and bytes) ---- */
#define SNAP_MAX 16
typedef struct snapshot {
    int n;
    char name[SNAP_MAX][64];
    char *data[SNAP_MAX];
    long len[SNAP_MAX];
} snapshot_t;

static char *slurp(const char *path, long *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)*len + 1);
    if (fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[*len] = '\0';
    return buf;
}

static void snapshot_take(const char *dir, snapshot_t *s)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    memset(s, 0, sizeof(*s));
    while (d != NULL && (de = readdir(d)) != NULL && s->n < SNAP_MAX) {
        char path[4200];
        if (de->d_name[0] == '.')
            continue;
        snprintf(s->name[s->n], sizeof(s->name[0]), "%.63s", de->d_name);
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        s->data[s->n] = slurp(path, &s->len[s->n]);
        s->n++;
    }
    if (d)
        closedir(d);
}

static void snapshot_free(snapshot_t *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->data[i]);
    memset(s, 0, sizeof(*s));
}

/* Whether @p dir holds exactly the files of @p want, byte for byte. */
static int snapshot_same(const char *dir, const snapshot_t *want, char *why, size_t why_size)
{
    snapshot_t now;
    int same = 1;
    snapshot_take(dir, &now);
    if (now.n != want->n) {
        snprintf(why, why_size, "%d files instead of %d", now.n, want->n);
        same = 0;
    }
    for (int i = 0; i < want->n && same; i++) {
        int found = 0;
        for (int j = 0; j < now.n; j++) {
            if (strcmp(now.name[j], want->name[i]) != 0)
                continue;
            found = 1;
            if (now.data[j] == NULL || now.len[j] != want->len[i] || memcmp(now.data[j], want->data[i],
                                                                            (size_t)want->len[i]) != 0) {
                snprintf(why, why_size, "%s changed", want->name[i]);
                same = 0;
            }
        }
        if (!found) {
            snprintf(why, why_size, "%s is gone", want->name[i]);
            same = 0;
        }
    }
    snapshot_free(&now);
    return same;
}

/* Rank 0: DIR holds first/ and latest only, latest says "first", first/ is unchanged. */
static void check_dir(const char *dir, const snapshot_t *first, const char *what)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4200], why[128] = "";
    long len = 0;
    char *latest;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        CHECK(strcmp(de->d_name, "first") == 0 || strcmp(de->d_name, "latest") == 0,
              "%s: %s/%s left behind", what, dir, de->d_name);
    }
    if (d)
        closedir(d);
    snprintf(path, sizeof(path), "%s/latest", dir);
    latest = slurp(path, &len);
    /* the tag on the first line (a second line holds its digest, docs/checkpoint-format.md) */
    CHECK(latest != NULL && strncmp(latest, "first\n", 6) == 0, "%s: latest is '%s'", what, latest ? latest : "(none)");
    free(latest);
    snprintf(path, sizeof(path), "%s/first", dir);
    CHECK(snapshot_same(path, first, why, sizeof(why)), "%s: checkpoint first: %s", what, why);
}

static const char *const classes[] = {"open", "write", "truncate", "fsync", "rename", "close"};
#define NCLASS 6

typedef struct err_case {
    const char *name;
    const char *text;     /* what the error message must contain */
} err_case_t;

int main(int argc, char **argv)
{
    char json[1024], spec[4400], disarm[4200], sd[64];
    const char *dir;
    zero_engine_params_t ep = {.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS,
                               .config_json = json, .num_threads = 1};
    int world, stride, cases = 0, benign = 0;
    const char *only_class;
    float counts[2][8][NCLASS];   /* [overwrite][rank][class] */
    snapshot_t first_snap;
    float *w_first = NULL, *w_now = NULL;

    if (argc < 2) {
        fprintf(stderr, "usage: savefail_rank DIR [STRIDE] (under zero-launch, with fault_shim in LD_PRELOAD)\n");
        return 2;
    }
    dir = argv[1];
    stride = argc > 2 ? atoi(argv[2]) : 1;
    only_class = argc > 3 ? argv[3] : NULL;
    if (stride < 1)
        stride = 1;
    fault_config = (fault_config_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "zero_fault_config");
    fault_calls = (fault_calls_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "zero_fault_calls");
    fault_fired = (fault_fired_fn)(uintptr_t)dlsym(RTLD_DEFAULT, "zero_fault_fired");
    if (!fault_config || !fault_calls || !fault_fired) {
        fprintf(stderr, "savefail_rank: the fault shim is not loaded (LD_PRELOAD)\n");
        return 2;
    }
    snprintf(disarm, sizeof(disarm), "dir=%s,at=0", dir);
    snprintf(json, sizeof(json),
             "{\"train_micro_batch_size_per_gpu\": 1, \"gradient_accumulation_steps\": 1,"
             " \"optimizer\": {\"type\": \"AdamW\", \"params\": {\"lr\": 0.01}}, \"steps_per_print\": 0,"
             " \"zero_optimization\": {\"stage\": 2, \"reduce_bucket_size\": 500}}");
    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return 1;
    rank = zero_comm_rank(zero_engine_comm(eng));
    world = zero_comm_size(zero_engine_comm(eng));
    if (world > 8) {
        fprintf(stderr, "savefail_rank: at most 8 ranks\n");
        return 2;
    }
    for (int p = 0; p < NPARAM; p++) {
        char name[32];
        zero_param_desc_t d = {.field_mask = ZERO_PARAM_FIELD_INIT_FN, .name = name, .dtype = ZERO_FP32, .ndim = 1,
                               .shape = {sizes[p]}, .init_fn = init_cb, .init_user_data = (void *)(intptr_t)p};
        snprintf(name, sizeof(name), "p%d", p);
        if (zero_param_register(eng, &d, &h[p]) != ZERO_OK)
            return 1;
    }
    if (zero_engine_setup(eng) != ZERO_OK || train_step() != 0 || train_step() != 0)
        return 1;

    /* 1. two good saves of "first" (new tag, then overwrite), counting the calls */
    memset(counts, 0, sizeof(counts));
    for (int over = 0; over < 2; over++) {
        float mine[8][NCLASS];
        memset(mine, 0, sizeof(mine));
        fault_config(disarm);
        CHECK(zero_save_checkpoint(eng, dir, "first", "{\"step\": 2}") == ZERO_OK, "good save %d: %s", over,
              zero_engine_last_error(eng));
        for (int c = 0; c < NCLASS; c++)
            mine[rank][c] = (float)fault_calls(classes[c]);
        zero_comm_allreduce(zero_engine_comm(eng), mine, counts[over], 8 * NCLASS, ZERO_FP32, ZERO_COMM_SUM,
                            ZERO_MEM_HOST);
    }
    if (fails)
        return 1;
    if (rank == 0) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/first", dir);
        snapshot_take(path, &first_snap);
        for (int over = 0; over < 2; over++)
            for (int r = 0; r < world; r++) {
                printf("calls of a clean save (%s), rank %d:", over ? "overwrite" : "new tag", r);
                for (int c = 0; c < NCLASS; c++)
                    printf(" %s=%d", classes[c], (int)counts[over][r][c]);
                printf("\n");
            }
        fflush(stdout);
    }
    w_first = weights_copy();

    /* 2. fail every call */
    for (int over = 0; over < 2; over++) {
        const char *tag = over ? "first" : "second";
        for (int target = 0; target < world; target++) {
            for (int c = 0; c < NCLASS; c++) {
                static const err_case_t write_errs[] = {{"ENOSPC", "No space left on device"},
                                                        {"EDQUOT", "Disk quota exceeded"},
                                                        {"EIO", "Input/output error"},
                                                        {"SHORT", "No space left on device"}};
                static const err_case_t other_errs[] = {{"EIO", "Input/output error"},
                                                        {"ENOSPC", "No space left on device"}};
                const err_case_t *errs = c == 1 ? write_errs : other_errs;
                int nerrs = c == 1 ? 4 : c == 0 ? 2 : 1;   /* open: also ENOSPC; others EIO */
                int ncalls = (int)counts[over][target][c];
                /* an overwrite differs from a new tag only in rank 0's commit */
                if (over && (target != 0 || c == 1 || c == 2))
                    continue;
                if (only_class != NULL && strcmp(only_class, classes[c]) != 0)
                    continue;
                for (int e = 0; e < nerrs; e++) {
                    for (int k = 1; k <= ncalls; k += (k == ncalls - 1 || stride == 1 ? 1 : stride)) {
                        char fired_path[4200] = "", what[256];
                        float fired = 0.0f, any = 0.0f;
                        uint64_t steps = zero_engine_global_steps(eng);
                        const char *msg;
                        zero_status_t st;
                        int sticky = strcmp(errs[e].name, "EIO") != 0;   /* a full disk stays full */
                        snprintf(what, sizeof(what), "%s save, rank %d, %s call %d of %d, %s", tag, target,
                                 classes[c], k, ncalls, errs[e].name);
                        free(w_now);
                        w_now = weights_copy();
                        if (rank == target)
                            snprintf(spec, sizeof(spec), "dir=%s,op=%s,at=%d,err=%s,sticky=%d", dir, classes[c], k,
                                     errs[e].name, sticky);
                        CHECK(fault_config(rank == target ? spec : disarm) == 0, "%s: bad spec", what);
                        snprintf(sd, sizeof(sd), "{\"case\": %d}", cases);
                        st = zero_save_checkpoint(eng, dir, tag, sd);
                        fired = (float)fault_fired(fired_path, sizeof(fired_path));
                        fault_config(disarm);
                        zero_comm_allreduce(zero_engine_comm(eng), &fired, &any, 1, ZERO_FP32, ZERO_COMM_MAX,
                                            ZERO_MEM_HOST);
                        cases++;
                        if (any == 0.0f) {
                            CHECK(0, "%s: the call was never made (the save's calls are not deterministic)", what);
                            continue;
                        }
                        msg = zero_engine_last_error(eng);
                        if (st == ZERO_OK) {
                            /* A call whose failure does not matter (HDF5 probes whether the file
                             * exists before it creates it): the save must then be complete and
                             * right. Put the directory back as it was for the next case. */
                            char path[4200];
                            CHECK(zero_load_checkpoint(eng, dir, NULL, NULL, NULL) == ZERO_OK && weights_equal(w_now),
                                  "%s: the save succeeded but does not load back bit for bit", what);
                            zero_comm_barrier(zero_engine_comm(eng));
                            if (rank == 0) {
                                snprintf(path, sizeof(path), "rm -rf '%s/second' && printf 'first\\n' > '%s/latest'",
                                         dir, dir);
                                CHECK(system(path) == 0, "cannot reset %s", dir);
                                if (over) {
                                    snprintf(path, sizeof(path), "%s/first", dir);
                                    snapshot_free(&first_snap);
                                    snapshot_take(path, &first_snap);
                                }
                            }
                            if (over)
                                memcpy(w_first, w_now, sizeof(float) * (size_t)(sizes[0] + sizes[1] + sizes[2]));
                            benign++;
                        }
                        if (st != ZERO_OK) {
                            char who[32];
                            snprintf(who, sizeof(who), "rank %d", target);
                            CHECK(strstr(msg, who) != NULL, "%s: the error does not name %s: %s", what, who, msg);
                            CHECK(strstr(msg, errs[e].text) != NULL, "%s: the error does not say '%s': %s", what,
                                  errs[e].text, msg);
                            CHECK(strstr(msg, dir) != NULL, "%s: the error names no file under %s: %s", what, dir,
                                  msg);
                            if (rank == target && fired_path[0]) {
                                const char *base = strrchr(fired_path, '/');
                                base = base ? base + 1 : fired_path;
                                if (strncmp(base, ".tmp-", 5) == 0)
                                    base = ".tmp-";   /* the random part may be cut from a long message */
                                CHECK(strstr(msg, base) != NULL, "%s: the error does not name %s: %s", what,
                                      fired_path, msg);
                            }
                        }
                        /* a file HDF5 could not close crashes it at exit */
                        CHECK(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0,
                              "%s: %ld HDF5 objects left open", what,
                              (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL));
                        CHECK(weights_equal(w_now) && zero_engine_global_steps(eng) == steps,
                              "%s: the failed save changed the engine's state", what);
                        zero_comm_barrier(zero_engine_comm(eng));
                        if (rank == 0)
                            check_dir(dir, &first_snap, what);
                        zero_comm_barrier(zero_engine_comm(eng));
                        CHECK(train_step() == 0, "%s: the engine does not train after the failed save: %s", what,
                              zero_engine_last_error(eng));
                        {
                            float mine = (float)fails, most = 0.0f;
                            zero_comm_allreduce(zero_engine_comm(eng), &mine, &most, 1, ZERO_FP32, ZERO_COMM_MAX,
                                                ZERO_MEM_HOST);
                            if (most > 20.0f) {
                                fprintf(stderr, "[rank %d] too many failures; stopping\n", rank);
                                goto done;
                            }
                        }
                    }
                }
            }
        }
    }

    /* 3. space is back: a later save succeeds; it and the first load back bit for bit */
    free(w_now);
    w_now = weights_copy();
    fault_config(disarm);
    CHECK(zero_save_checkpoint(eng, dir, "second", "{\"step\": 3}") == ZERO_OK, "save after the failures: %s",
          zero_engine_last_error(eng));
    train_step();
    CHECK(zero_load_checkpoint(eng, dir, NULL, NULL, NULL) == ZERO_OK, "load latest: %s", zero_engine_last_error(eng));
    CHECK(weights_equal(w_now), "the later save does not load back bit for bit");
    CHECK(zero_load_checkpoint(eng, dir, "first", NULL, NULL) == ZERO_OK, "load first: %s",
          zero_engine_last_error(eng));
    CHECK(weights_equal(w_first), "the first checkpoint does not load back bit for bit");
done:
    if (rank == 0) {
        snapshot_free(&first_snap);
        printf("savefail_rank: %d faults injected on %d ranks (%d of them harmless: the save succeeded and was "
               "checked), %d failure(s)\n", cases, world, benign, fails);
        fflush(stdout);   /* LeakSanitizer ends the process without flushing stdio */
    }
    free(w_first);
    free(w_now);
    zero_engine_destroy(eng);
    return fails ? 1 : 0;
}
