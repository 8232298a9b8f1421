/*
 * Fuzzes the checkpoint reader (lib/ckpt): the input is the HDF5 file of
 * rank 0 of a one-rank checkpoint <tmp>/ck/t/zero_rank_00000.h5. Each input
 * goes through
 *   1. zero_ckpt_reader_open + zero_ckpt_reader_read of every parameter's
 *      master weights and optimizer states (the tools' path: the map and
 *      metadata as the file states them), then
 *   2. zero_ckpt_load onto the fixed small model of fuzz_ckpt_model.h (the
 *      engine's path: map comparison, the read plan, chunk checksums), in
 *      one of the three load modes (picked by the input's size).
 * The seeds (corpus/ckpt) are real rank files of that model written by
 * fuzz_make_ckpt_seeds. A file the reader accepts must give numbers, not
 * crashes; a refused one must be an error status.
 */
#include "fuzz_common.h"
#include "fuzz_ckpt_model.h"

#include "ckpt/ckpt.h"
#include "util/alloc.h"

#include <sys/stat.h>
#include <hdf5.h>
#include <zero/comm.h>

#define READ_CHUNK 64            /* elements per reader call */
#define READ_MAX_PER_PARAM 4096  /* the file may claim huge tensors: read a bounded prefix */

static zero_comm_h comm;
static zero_layout_t *model;
static char dir[600], file[700];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[700];
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    setenv("UCX_ERROR_SIGNALS", "", 0); /* leave SIGSEGV, SIGILL, ... to the sanitizers and libFuzzer */
    snprintf(dir, sizeof(dir), "%s/ck", fuzz_tmp_dir("ckpt"));
    snprintf(path, sizeof(path), "%s/%s", dir, FUZZ_CKPT_TAG);
    if (mkdir(dir, 0700) != 0 || mkdir(path, 0700) != 0)
        abort();
    snprintf(path, sizeof(path), "%s/latest", dir);
    fuzz_write_file(path, FUZZ_CKPT_TAG "\n", strlen(FUZZ_CKPT_TAG) + 1);
    snprintf(path, sizeof(path), "%s/%s/client_sd.json", dir, FUZZ_CKPT_TAG);
    fuzz_write_file(path, "{\"step\": 7}", 11);
    snprintf(file, sizeof(file), "%s/%s/zero_rank_00000.h5", dir, FUZZ_CKPT_TAG);
    if (zero_comm_create(NULL, &comm) != ZERO_OK ||
        zero_layout_build(fuzz_ckpt_params, FUZZ_CKPT_NPARAM, 1, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, &model) !=
            ZERO_OK)
        abort();
    return 0;
}

static void read_through_reader(void)
{
    zero_ckpt_reader_t *rd = NULL;
    const zero_layout_t *L;
    const zero_ckpt_meta_t *meta;
    float out[READ_CHUNK];

    if (zero_ckpt_reader_open(dir, FUZZ_CKPT_TAG, &rd) != ZERO_OK)
        return;
    L = zero_ckpt_reader_layout(rd);
    meta = zero_ckpt_reader_meta(rd);
    if (L == NULL || meta == NULL || zero_ckpt_reader_tag(rd) == NULL)
        __builtin_trap();
    for (int p = 0; p < L->num_params && p < 64; p++) {
        size_t numel = L->params[p].numel < READ_MAX_PER_PARAM ? L->params[p].numel : READ_MAX_PER_PARAM;
        for (int state = -1; state < meta->num_states; state++)
            for (size_t begin = 0; begin < numel; begin += READ_CHUNK) {
                size_t count = numel - begin < READ_CHUNK ? numel - begin : READ_CHUNK;
                if (zero_ckpt_reader_read(rd, p, state, begin, count, out) != ZERO_OK)
                    break;
            }
    }
    /* out-of-range requests are refused, not read */
    if (zero_ckpt_reader_read(rd, L->num_params, -1, 0, 1, out) == ZERO_OK ||
        zero_ckpt_reader_read(rd, 0, meta->num_states, 0, 1, out) == ZERO_OK)
        __builtin_trap();
    zero_ckpt_reader_close(rd);
}

static void load_into_model(zero_ckpt_load_mode_t mode)
{
    zero_ckpt_group_data_t groups[ZERO_DTYPE_COUNT];
    zero_ckpt_load_params_t lp = {.tag = NULL, .load_optimizer_states = 1, .num_states = 2,
                                  .state_names = {"exp_avg", "exp_avg_sq"}, .mode = mode};
    zero_ckpt_meta_t meta;
    char *client_sd = NULL, *tag = NULL;

    memset(groups, 0, sizeof(groups));
    for (int g = 0; g < model->num_groups; g++) {
        size_t n = model->groups[g].shard_length;
        groups[g].master = calloc(n, sizeof(float));
        groups[g].state[0] = calloc(n, sizeof(float));
        groups[g].state[1] = calloc(n, sizeof(float));
    }
    memset(&meta, 0, sizeof(meta));
    if (zero_ckpt_load(comm, dir, &lp, model, 0, groups, &meta, &client_sd, &tag) == ZERO_OK) {
        if (client_sd == NULL || tag == NULL || strcmp(tag, FUZZ_CKPT_TAG) != 0)
            __builtin_trap();
        zero_ckpt_meta_clear(&meta);
        zero_free(client_sd);
        zero_free(tag);
    } else if (client_sd != NULL || tag != NULL) {
        __builtin_trap(); /* outputs are written only on success */
    }
    for (int g = 0; g < model->num_groups; g++) {
        free(groups[g].master);
        free(groups[g].state[0]);
        free(groups[g].state[1]);
    }
    /* every HDF5 handle the reader opened is closed again, whatever the input */
    if (H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) != 0)
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(file, data, size);
    read_through_reader();
    load_into_model((zero_ckpt_load_mode_t)(size % 3));
    return 0;
}
