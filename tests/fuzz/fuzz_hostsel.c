/*
 * Fuzzes the launcher's host selection (tools/zero-launch/hostsel.c): the
 * --include / --exclude grammar NODE[:SLOT[,SLOT...]][@NODE...] applied to a
 * fixed pool, and the CUDA_VISIBLE_DEVICES list of a hostfile-less job.
 *
 * Input: byte 0 picks the mode (bits 0-1: include, exclude, both,
 * CUDA_VISIBLE_DEVICES; bits 2-3: --num_nodes 0..3; bits 4-5: --num_gpus
 * 0..3), the rest is the spec. A selection it accepts must name only pool
 * hosts and slots, in pool order, slots ascending.
 */
#include "fuzz_common.h"

#include "hostfile.h"
#include "hostsel.h"

static zero_launch_pool_t *pool;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    zero_launch_hostfile_t *hf = NULL;
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    if (zero_launch_hostfile_parse("w0 slots=4\nw1 slots=4\nw2 slots=2\nworker-10.example.org slots=8\n"
                                   "127.0.0.1 slots=1\n", "fuzz-pool", &hf) != ZERO_OK ||
        zero_launch_pool_from_hostfile(hf, &pool) != ZERO_OK)
        abort();
    zero_launch_hostfile_destroy(hf);
    return 0;
}

static void check_selection(const zero_launch_pool_t *sel)
{
    size_t from = 0;
    if (sel->count < 1)
        __builtin_trap();
    for (size_t i = 0; i < sel->count; i++) {
        const zero_launch_node_t *node = &sel->nodes[i];
        size_t p = from;
        while (p < pool->count && strcmp(pool->nodes[p].host, node->host) != 0)
            p++;
        if (p == pool->count || node->n_slots < 1 || node->n_slots > pool->nodes[p].n_slots)
            __builtin_trap(); /* unknown host, out of order, or more slots than it has */
        for (size_t k = 0; k < node->n_slots; k++)
            if (node->slots[k] < 0 || (size_t)node->slots[k] >= pool->nodes[p].n_slots ||
                (k > 0 && node->slots[k] <= node->slots[k - 1]))
                __builtin_trap();
        from = p + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zero_launch_pool_t *sel = NULL;
    char *spec;
    int mode;

    if (size < 1)
        return 0;
    mode = data[0];
    spec = fuzz_cstring(data + 1, size - 1);
    if ((mode & 3) == 3) {
        zero_launch_pool_t *local = NULL;
        if (zero_launch_pool_create_local("localhost", spec, (mode >> 2) & 7, (mode >> 5) & 7, &local) == ZERO_OK) {
            if (local->count != 1 || local->nodes[0].n_slots < 1)
                __builtin_trap();
            zero_launch_pool_destroy(local);
        } else if (local != NULL) {
            __builtin_trap();
        }
    } else {
        zero_launch_select_t s = {
            .include = (mode & 3) != 1 ? spec : NULL,
            .exclude = (mode & 3) != 0 ? spec : NULL,
            .num_nodes = (mode >> 2) & 3,
            .num_gpus = (mode >> 4) & 3,
        };
        if (zero_launch_pool_select(pool, &s, &sel) == ZERO_OK) {
            check_selection(sel);
            zero_launch_pool_destroy(sel);
        } else if (sel != NULL) {
            __builtin_trap();
        }
    }
    free(spec);
    return 0;
}
