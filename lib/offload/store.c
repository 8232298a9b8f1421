/* The store front: argument checks shared by every implementation, and the
 * one place a config becomes a store. */
#define ZERO_LOG_MODULE "offload"
#include "offload/store.h"
#include "offload/store_nvme.h"
#include "util/log.h"

#include <string.h>

unsigned zero_store_fields(const zero_store_t *store)
{
    unsigned fields = ZERO_STORE_FIELD_BIT(ZERO_STORE_MASTER);
    for (int k = 0; k < store->desc.num_states; k++)
        fields |= ZERO_STORE_FIELD_BIT(ZERO_STORE_STATE1 + k);
    return fields;
}

static zero_status_t check_range(const zero_store_t *store, const char *what, int group, size_t begin, size_t count,
                                 unsigned fields)
{
    if (group < 0 || group >= store->desc.num_groups) {
        ZERO_LOG_ERROR("%s store: %s of group %d, which does not exist (%d groups)", store->ops->name, what, group,
                       store->desc.num_groups);
        return ZERO_ERR_INVALID_ARG;
    }
    if (begin > store->desc.length[group] || count > store->desc.length[group] - begin) {
        ZERO_LOG_ERROR("%s store: %s of [%zu, +%zu) outside group %d's %zu elements", store->ops->name, what, begin,
                       count, group, store->desc.length[group]);
        return ZERO_ERR_INVALID_ARG;
    }
    if (fields == 0 || (fields & ~zero_store_fields(store)) != 0) {
        ZERO_LOG_ERROR("%s store: %s asks for fields 0x%x, the store has 0x%x", store->ops->name, what, fields,
                       zero_store_fields(store));
        return ZERO_ERR_INVALID_ARG;
    }
    return ZERO_OK;
}

zero_status_t zero_store_acquire(zero_store_t *store, zero_store_range_t *range)
{
    zero_status_t status = check_range(store, "acquire", range->group, range->begin, range->count, range->fields);
    if (status != ZERO_OK)
        return status;
    memset(range->data, 0, sizeof(range->data));
    range->impl = NULL;
    return store->ops->acquire(store, range);
}

zero_status_t zero_store_release(zero_store_t *store, zero_store_range_t *range, int dirty)
{
    zero_status_t status = store->ops->release(store, range, dirty);
    memset(range->data, 0, sizeof(range->data));
    return status;
}

zero_status_t zero_store_prefetch(zero_store_t *store, int group, size_t begin, size_t count, unsigned fields)
{
    zero_status_t status = check_range(store, "prefetch", group, begin, count, fields);
    if (status != ZERO_OK || store->ops->prefetch == NULL)
        return status;
    return store->ops->prefetch(store, group, begin, count, fields);
}

void zero_store_bytes(const zero_store_t *store, zero_store_bytes_t *bytes_p)
{
    memset(bytes_p, 0, sizeof(*bytes_p));
    store->ops->bytes(store, bytes_p);
}

void zero_store_destroy(zero_store_t *store)
{
    if (store != NULL)
        store->ops->destroy(store);
}

zero_status_t zero_store_flush(zero_store_t *store)
{
    return store->ops->flush != NULL ? store->ops->flush(store) : ZERO_OK;
}

size_t zero_store_max_range(const zero_store_t *store) { return store->max_range; }

/* The NVMe store from the config's offload_optimizer and aio blocks. */
static zero_status_t create_nvme(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                 zero_store_t **store_p)
{
    const zero_config_t *config = opts->config;
    const zero_config_offload_optimizer_t *oo;
    zero_store_nvme_params_t params;
    size_t longest = 1;

    if (config == NULL) {
        ZERO_LOG_ERROR("rank %d: an NVMe optimizer state store needs the config (its aio block)", opts->rank);
        return ZERO_ERR_INVALID_ARG;
    }
    oo = &config->zero_optimization.offload_optimizer;
    for (int g = 0; g < desc->num_groups; g++)
        if (desc->length[g] > longest)
            longest = desc->length[g];
    zero_store_nvme_params_default(&params);
    params.dir = opts->nvme_path != NULL ? opts->nvme_path : oo->nvme_path;
    params.rank = opts->rank;
    params.buffer_count = oo->buffer_count > (uint32_t)INT32_MAX ? INT32_MAX : (int)oo->buffer_count;
    /* DeepSpeed streams the state sub-group by sub-group: its buffers hold one sub-group. */
    params.max_range = config->zero_optimization.sub_group_size < longest ? (size_t)config->zero_optimization.sub_group_size
                                                                           : longest;
    params.block_size = (size_t)config->aio.block_size;
    /* io_uring refuses rings over 32768 entries; far fewer requests in flight already saturate a device */
    params.queue_depth = config->aio.queue_depth > 4096 ? 4096 : (int)config->aio.queue_depth;
    params.io_threads = config->aio.intra_op_parallelism > 64 ? 64 : (int)config->aio.intra_op_parallelism;
    params.io = config->aio.io_backend == ZERO_AIO_POSIX ? ZERO_STORE_NVME_IO_THREADS : ZERO_STORE_NVME_IO_URING;
    return zero_store_nvme_create(desc, &params, store_p);
}

int zero_store_has_step(const zero_store_t *store)
{
    return store->ops->step != NULL;
}

zero_status_t zero_store_step(zero_store_t *store, const zero_store_step_args_t *args)
{
    zero_status_t status;
    if (store->ops->step == NULL) {
        ZERO_LOG_ERROR("%s store: asked to run an optimizer step, which it does not do", store->ops->name);
        return ZERO_ERR_INVALID_ARG;
    }
    if (args->hparams == NULL || args->hparams->kind == ZERO_OPTIM_KIND_LAMB ||
        (args->count > 0 && args->grads == NULL)) {
        ZERO_LOG_ERROR("%s store: step of group %d at [%zu, +%zu): %s", store->ops->name, args->group, args->begin,
                       args->count,
                       args->hparams == NULL ? "no hyper-parameters"
                       : args->count > 0 && args->grads == NULL ? "no gradients"
                                                                 : "Lamb runs through acquire and release");
        return ZERO_ERR_INVALID_ARG;
    }
    status = check_range(store, "step", args->group, args->begin, args->count, zero_store_fields(store));
    if (status != ZERO_OK)
        return status;
    return store->ops->step(store, args);
}

zero_store_device_t zero_store_device_from_config(zero_offload_device_t device)
{
    switch (device) {
    case ZERO_OFFLOAD_CPU:
        return ZERO_STORE_DEVICE_CPU;
    case ZERO_OFFLOAD_NVME:
        return ZERO_STORE_DEVICE_NVME;
    default:
        return ZERO_STORE_DEVICE_NONE;
    }
}

zero_status_t zero_store_create_for(const zero_store_options_t *opts, const zero_store_desc_t *desc,
                                    zero_store_t **store_p)
{
    switch (opts->device) {
    case ZERO_STORE_DEVICE_NONE:
        return zero_store_host_create(desc, store_p);
    case ZERO_STORE_DEVICE_CPU: {
        /* The state in host memory whatever the engine's kind. */
        zero_store_desc_t host = *desc;
        if (host.kind != ZERO_MEM_HOST)   /* another kind's master cannot be adopted into host memory */
            memset(host.adopt_master, 0, sizeof(host.adopt_master));
        host.kind = ZERO_MEM_HOST;
        return zero_store_host_create(&host, store_p);
    }
    case ZERO_STORE_DEVICE_NVME:
        return create_nvme(opts, desc, store_p);
    case ZERO_STORE_DEVICE_REMOTE:
        ZERO_LOG_ERROR("rank %d: optimizer state on remote servers (%s) is not implemented in this version",
                       opts->rank, opts->servers ? opts->servers : "none given");
        return ZERO_ERR_UNSUPPORTED;
    default:
        ZERO_LOG_ERROR("rank %d: optimizer state device %d is not known", opts->rank, (int)opts->device);
        return ZERO_ERR_UNSUPPORTED;
    }
}
