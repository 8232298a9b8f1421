/*
 * Fuzzes the sidecar path of zero_ckpt_load (lib/ckpt): the trainer's
 * client_sd.json, returned verbatim, and <dir>/latest, which names the tag to
 * load (zero_ckpt_read_latest, zero_ckpt_tag_check). A valid one-rank
 * checkpoint of the fuzz model is written once; each input replaces one file:
 *   byte 0 even: the rest is client_sd.json (latest stays valid). A load that
 *                succeeds must return exactly those bytes;
 *   byte 0 odd:  the rest is latest (client_sd.json stays valid). A load that
 *                succeeds must have loaded tag "t", the only one there is.
 */
#include "fuzz_common.h"
#include "fuzz_ckpt_model.h"

#include "ckpt/ckpt_internal.h"
#include "ckpt/ckpt.h"
#include "ckpt_fixture.h"
#include "util/alloc.h"

#include <hdf5.h>
#include <zero/comm.h>

static zero_comm_h comm;
static zero_layout_t *model;
static char dir[600], sd_path[700], latest_path[700];
static const char valid_sd[] = "{\"step\": 7}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    setenv("UCX_ERROR_SIGNALS", "", 0); /* leave SIGSEGV, SIGILL, ... to the sanitizers and libFuzzer */
    snprintf(dir, sizeof(dir), "%s", fuzz_tmp_dir("client-sd"));
    snprintf(sd_path, sizeof(sd_path), "%s/%s/client_sd.json", dir, FUZZ_CKPT_TAG);
    snprintf(latest_path, sizeof(latest_path), "%s/latest", dir);
    if (zero_comm_create(NULL, &comm) != ZERO_OK ||
        zero_layout_build(fuzz_ckpt_params, FUZZ_CKPT_NPARAM, 1, FUZZ_CKPT_ALIGN, FUZZ_CKPT_BUCKET, &model) !=
            ZERO_OK ||
        fix_sim_save(dir, FUZZ_CKPT_TAG, model, 1, 1, 3, 2) != ZERO_OK)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zero_ckpt_group_data_t groups[ZERO_DTYPE_COUNT];
    zero_ckpt_load_params_t lp = {.tag = NULL, .load_optimizer_states = 1, .num_states = 2,
                                  .state_names = {"exp_avg", "exp_avg_sq"}};
    char *client_sd = NULL, *tag = NULL, *latest = NULL;
    int sidecar;
    zero_status_t status;

    if (size < 1)
        return 0;
    sidecar = (data[0] & 1) == 0;
    fuzz_write_file(sidecar ? sd_path : latest_path, data + 1, size - 1);
    if (sidecar)
        fuzz_write_file(latest_path, FUZZ_CKPT_TAG "\n", strlen(FUZZ_CKPT_TAG) + 1);
    else
        fuzz_write_file(sd_path, valid_sd, strlen(valid_sd));

    if (zero_ckpt_read_latest(dir, &latest) == ZERO_OK) {
        if (strcmp(latest, FUZZ_CKPT_TAG) != 0)
            __builtin_trap();
        zero_free(latest);
    }

    memset(groups, 0, sizeof(groups));
    for (int g = 0; g < model->num_groups; g++) {
        size_t n = model->groups[g].shard_length;
        groups[g].master = calloc(n, sizeof(float));
        groups[g].state[0] = calloc(n, sizeof(float));
        groups[g].state[1] = calloc(n, sizeof(float));
    }
    status = zero_ckpt_load(comm, dir, &lp, model, 0, groups, NULL, &client_sd, &tag);
    if (status == ZERO_OK) {
        if (tag == NULL || strcmp(tag, FUZZ_CKPT_TAG) != 0 || client_sd == NULL)
            __builtin_trap();
        if (sidecar ? (strlen(client_sd) != size - 1 || memcmp(client_sd, data + 1, size - 1) != 0)
                    : strcmp(client_sd, valid_sd) != 0) {
            fprintf(stderr, "fuzz_client_sd: the loaded client_sd (%zu bytes) is not the file's %zu bytes\n",
                    strlen(client_sd), sidecar ? size - 1 : strlen(valid_sd));
            __builtin_trap();
        }
        zero_free(client_sd);
        zero_free(tag);
    } else if (client_sd != NULL || tag != NULL) {
        __builtin_trap();
    }
    for (int g = 0; g < model->num_groups; g++) {
        free(groups[g].master);
        free(groups[g].state[0]);
        free(groups[g].state[1]);
    }
    /* every HDF5 handle the reader opened is closed again, whatever the input */
    if (H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) != 0)
        __builtin_trap();
    return 0;
}
