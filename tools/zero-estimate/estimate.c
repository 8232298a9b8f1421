/*
 * zero-estimate's arithmetic. Every formula is written out, with its source,
 * in docs/estimate.md; the comments here say only why a term has its shape.
 */
#include "estimate.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    zero_est_optimizer_t value;
} optimizer_names[] = {
    {"adam", ZERO_EST_OPT_ADAM},       {"adamw", ZERO_EST_OPT_ADAMW},
    {"lamb", ZERO_EST_OPT_LAMB},       {"sgd", ZERO_EST_OPT_SGD},
    {"sgd-momentum", ZERO_EST_OPT_SGD_MOMENTUM},
    {"adagrad", ZERO_EST_OPT_ADAGRAD}, {"lion", ZERO_EST_OPT_LION},
};

int zero_est_optimizer_parse(const char *text, zero_est_optimizer_t *out)
{
    if (text == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(optimizer_names) / sizeof(optimizer_names[0]); i++) {
        if (strcasecmp(text, optimizer_names[i].name) == 0) {
            *out = optimizer_names[i].value;
            return 0;
        }
    }
    return -1;
}

const char *zero_est_optimizer_string(zero_est_optimizer_t optimizer)
{
    switch (optimizer) {
    case ZERO_EST_OPT_ADAM:         return "Adam";
    case ZERO_EST_OPT_ADAMW:        return "AdamW";
    case ZERO_EST_OPT_LAMB:         return "Lamb";
    case ZERO_EST_OPT_SGD:          return "SGD";
    case ZERO_EST_OPT_SGD_MOMENTUM: return "SGD-momentum";
    case ZERO_EST_OPT_ADAGRAD:      return "Adagrad";
    case ZERO_EST_OPT_LION:         return "Lion";
    }
    return "unknown";
}

/* fp32 state buffers the optimizer keeps per parameter. */
static int optimizer_moments(zero_est_optimizer_t optimizer)
{
    switch (optimizer) {
    case ZERO_EST_OPT_ADAM:
    case ZERO_EST_OPT_ADAMW:
    case ZERO_EST_OPT_LAMB:
        return 2;
    case ZERO_EST_OPT_SGD:
        return 0;
    case ZERO_EST_OPT_SGD_MOMENTUM:
    case ZERO_EST_OPT_ADAGRAD:
    case ZERO_EST_OPT_LION:
        return 1;
    }
    return 2;
}

static int dtype_bytes(zero_dtype_t dtype)
{
    return dtype == ZERO_FP32 ? 4 : 2;
}

int zero_est_k(zero_est_optimizer_t optimizer, zero_dtype_t dtype)
{
    /* 16-bit training keeps an fp32 master copy beside the moments (the
     * paper's K = 12 for Adam = 4 master + 4 + 4). fp32 training steps the
     * parameters themselves, so only the moments remain. */
    int master = dtype == ZERO_FP32 ? 0 : 4;
    return master + 4 * optimizer_moments(optimizer);
}

int zero_est_count_parse(const char *text, double *out)
{
    char *end;
    double v, scale = 1.0;
    if (text == NULL || !(isdigit((unsigned char)text[0]) || text[0] == '.'))
        return -1;
    if (strpbrk(text, "xXpP") != NULL) /* no hexadecimal floats */
        return -1;
    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || !isfinite(v))
        return -1;
    if (*end != '\0') {
        switch (*end) {
        case 'k': case 'K': scale = 1e3; break;
        case 'm': case 'M': scale = 1e6; break;
        case 'b': case 'B': case 'g': case 'G': scale = 1e9; break;
        case 't': case 'T': scale = 1e12; break;
        default: return -1;
        }
        if (end[1] != '\0')
            return -1;
    }
    v = round(v * scale);
    if (!(v > 0.0) || v > 1e18)
        return -1;
    *out = v;
    return 0;
}

void zero_est_input_defaults(zero_est_input_t *in)
{
    memset(in, 0, sizeof(*in));
    in->world_size = 1;
    in->ranks_per_node = 1;
    in->stage = 0;
    in->offload_optimizer = ZERO_OFFLOAD_NONE;
    in->offload_param = ZERO_OFFLOAD_NONE;
    in->dtype = ZERO_FP16;
    in->optimizer = ZERO_EST_OPT_ADAM;
    in->grad_accum = 1;
    in->reduce_bucket_size = 5e8;
    in->allgather_bucket_size = 5e8;
    in->prefetch_bucket_size = 5e7;
    in->max_live_parameters = 1e9;
    in->overlap_comm = false;
    in->sub_group_size = 1e9;
    in->optimizer_buffer_count = 4;
    in->param_buffer_count = 5;
    in->param_buffer_size = 1e8;
    in->param_max_in_cpu = 1e9;
    in->bandwidth_gbps = 50.0;
}

int zero_est_check(const zero_est_input_t *in, char *why, size_t why_len)
{
#define BAD(...) do { snprintf(why, why_len, __VA_ARGS__); return -1; } while (0)
    if (!(in->params > 0.0) || !isfinite(in->params))
        BAD("--params: must be a positive parameter count");
    if (in->largest_layer < 0.0 || in->largest_layer > in->params)
        BAD("--largest-layer: %.0f is more than --params %.0f", in->largest_layer, in->params);
    if (in->world_size < 1)
        BAD("--world-size: must be 1 or more");
    if (in->ranks_per_node < 1 || in->ranks_per_node > in->world_size)
        BAD("--ranks-per-node: %u is not in 1..world size (%u)", in->ranks_per_node, in->world_size);
    if (in->stage < 0 || in->stage > 3)
        BAD("--stage: %d is not in 0..3", in->stage);
    if (in->offload_optimizer != ZERO_OFFLOAD_NONE && in->stage == 0)
        BAD("--offload-optimizer: %s needs stage 1, 2 or 3 (stage is 0)",
            zero_offload_device_string(in->offload_optimizer));
    if (in->offload_param != ZERO_OFFLOAD_NONE && in->stage != 3)
        BAD("--offload-param: %s needs stage 3 (stage is %d)",
            zero_offload_device_string(in->offload_param), in->stage);
    if (in->grad_accum < 1)
        BAD("--grad-accum: must be 1 or more");
    if (!(in->param_max_in_cpu >= 0.0) || !isfinite(in->param_max_in_cpu))
        BAD("--max-in-cpu: must be 0 or more elements");
    if (!(in->bandwidth_gbps > 0.0) || !isfinite(in->bandwidth_gbps))
        BAD("--bandwidth: must be a positive number of GB/s");
    return 0;
#undef BAD
}

void zero_est_ds_zero2(double params, uint32_t gpus_per_node, uint32_t nodes, bool cpu_offload,
                       double *cpu_p, double *gpu_p)
{
    const double factor = 1.5; /* additional_buffer_factor */
    double total_gpus = (double)nodes * gpus_per_node;
    double cpu, gpu;
    if (cpu_offload) {
        gpu = 2.0 * params;
        cpu = params * fmax(4.0 * total_gpus, 16.0) * factor;
    } else {
        /* current DeepSpeed: 2 (16-bit params) + 18 / N (16-bit and fp32
         * grads, fp32 params, two fp32 moments); the older 4 + 16 / N gave
         * the docs' 15.93GB row */
        gpu = 2.0 * params + floor(18.0 * params / total_gpus);
        cpu = params * 4.0 * gpus_per_node * factor;
    }
    *cpu_p = floor(cpu);
    *gpu_p = floor(gpu);
}

void zero_est_ds_zero3(double params, double largest_layer, uint32_t gpus_per_node, uint32_t nodes,
                       bool cpu_offload, bool cpu_offload_params, bool zero_init,
                       double *cpu_p, double *gpu_p)
{
    const double factor = 1.5;
    double total_gpus = (double)nodes * gpus_per_node;
    double gpus_factor = 1.0 / nodes;
    double layer_mem = 4.0 * largest_layer; /* 16-bit params + grads of the gathered layer */
    double cpu, gpu;
    if (cpu_offload) {
        double per_param = cpu_offload_params ? 18.0 : 16.0;
        gpu = cpu_offload_params ? layer_mem : layer_mem + floor(2.0 * params / total_gpus);
        if (zero_init)
            cpu = params * per_param * gpus_factor * factor;
        else
            cpu = params * fmax(4.0 * gpus_per_node, per_param * gpus_factor) * factor;
    } else {
        gpu = layer_mem + floor(18.0 * params / total_gpus);
        if (zero_init)
            cpu = largest_layer * 4.0 * gpus_per_node * factor;
        else
            cpu = params * 4.0 * gpus_per_node * factor;
    }
    *cpu_p = floor(cpu);
    *gpu_p = floor(gpu);
}

static void place(double bytes, zero_offload_device_t where, zero_est_result_t *r)
{
    if (where == ZERO_OFFLOAD_CPU)
        r->host_states_bytes += bytes;
    else if (where == ZERO_OFFLOAD_NVME)
        r->nvme_states_bytes += bytes;
    else
        r->device_states_bytes += bytes;
}

void zero_est_compute(const zero_est_input_t *in, zero_est_result_t *r)
{
    const double psi = in->params, n = in->world_size, b = dtype_bytes(in->dtype);
    const int stage = in->stage;
    const int k = zero_est_k(in->optimizer, in->dtype);

    memset(r, 0, sizeof(*r));
    r->nodes = (in->world_size + in->ranks_per_node - 1) / in->ranks_per_node;
    r->bytes_per_elem = (int)b;
    r->k = k;

    /* Paper, section 5.1: P_os divides K*Psi by N_d, P_os+g also the
     * gradients, P_os+g+p also the parameters. */
    r->params_bytes = stage >= 3 ? b * psi / n : b * psi;
    r->grads_bytes = stage >= 2 ? b * psi / n : b * psi;
    r->optim_bytes = stage >= 1 ? k * psi / n : k * psi;
    r->model_states_bytes = r->params_bytes + r->grads_bytes + r->optim_bytes;
    r->baseline_bytes = (2.0 * b + k) * psi;

    if (in->offload_param == ZERO_OFFLOAD_NVME) {
        /* DeepSpeed's offload_param.max_in_cpu (as libzero): the first
         * max_in_cpu elements of the rank's partition stay in host memory for
         * the whole run, only the rest goes to NVMe */
        double kept = fmin(in->param_max_in_cpu, psi / n);
        place(kept * b, ZERO_OFFLOAD_CPU, r);
        place(r->params_bytes - kept * b, ZERO_OFFLOAD_NVME, r);
    } else {
        place(r->params_bytes, in->offload_param, r);
    }
    r->device_states_bytes += r->grads_bytes;
    place(r->optim_bytes, in->offload_optimizer, r);

    /* Buffers. A bucket never holds more than the whole model. */
    r->reduce_bucket_bytes = fmin(in->reduce_bucket_size, psi) * b * (in->overlap_comm ? 2.0 : 1.0);
    if (stage == 1 || stage == 2)
        r->allgather_bucket_bytes = fmin(in->allgather_bucket_size, psi) * b;
    if (stage == 3) {
        /* stage3_max_live_parameters bounds what is gathered at once, but the
         * largest layer must fit whatever the bound says. */
        r->gathered_params_bytes = fmin(psi, fmax(in->largest_layer, in->max_live_parameters)) * b;
        r->layer_grads_bytes = in->largest_layer * b;
        r->prefetch_bucket_bytes = fmin(in->prefetch_bucket_size, psi) * b;
    }
    if (in->offload_optimizer != ZERO_OFFLOAD_NONE) {
        /* the owned gradient slice crosses to the host optimizer in fp32 */
        r->host_staging_bytes += 4.0 * psi / n;
        if (in->offload_optimizer == ZERO_OFFLOAD_NVME) /* fp32 sub-group swap buffers */
            r->host_staging_bytes += in->optimizer_buffer_count * fmin(in->sub_group_size, psi / n) * 4.0;
    }
    if (in->offload_param == ZERO_OFFLOAD_NVME && in->param_max_in_cpu < psi / n)
        /* no staging when max_in_cpu keeps the whole partition (libzero then has no parameter file) */
        r->host_staging_bytes += in->param_buffer_count * fmin(in->param_buffer_size, psi) * b;

    r->device_total_bytes = r->device_states_bytes + r->reduce_bucket_bytes + r->allgather_bucket_bytes
                            + r->gathered_params_bytes + r->layer_grads_bytes;
    r->host_total_bytes = r->host_states_bytes + r->host_staging_bytes;
    r->host_total_node_bytes = r->host_total_bytes * in->ranks_per_node;

    /* DeepSpeed's estimators exist for stages 2 (used for 1 too) and 3. */
    if (stage == 1 || stage == 2) {
        zero_est_ds_zero2(psi, in->ranks_per_node, r->nodes, in->offload_optimizer != ZERO_OFFLOAD_NONE,
                          &r->ds_cpu_bytes, &r->ds_gpu_bytes);
        r->ds_cpu_no_init_bytes = r->ds_cpu_bytes;
        r->ds_valid = true;
    } else if (stage == 3 && !(in->offload_param != ZERO_OFFLOAD_NONE
                               && in->offload_optimizer == ZERO_OFFLOAD_NONE)) {
        bool opt = in->offload_optimizer != ZERO_OFFLOAD_NONE, par = in->offload_param != ZERO_OFFLOAD_NONE;
        double gpu_again;
        zero_est_ds_zero3(psi, in->largest_layer, in->ranks_per_node, r->nodes, opt, par, true,
                          &r->ds_cpu_bytes, &r->ds_gpu_bytes);
        zero_est_ds_zero3(psi, in->largest_layer, in->ranks_per_node, r->nodes, opt, par, false,
                          &r->ds_cpu_no_init_bytes, &gpu_again);
        r->ds_largest_layer_bytes = 4.0 * in->largest_layer;
        r->ds_valid = true;
    }

    /* Communication. The paper counts, per step, 2*Psi elements for stages
     * 0-2 (reduce-scatter + allgather, i.e. one allreduce) and 3*Psi for
     * stage 3 (allgather in forward and in backward, reduce-scatter). */
    if (in->world_size > 1) {
        double a = (double)in->grad_accum;
        r->comm_paper_elements = (stage == 3 ? 3.0 : 2.0) * psi;
        switch (stage) {
        case 0: case 1: r->comm_elements_per_step = 2.0 * psi; break;       /* once, at the boundary */
        case 2: r->comm_elements_per_step = (a + 1.0) * psi; break;         /* reduce-scatter per micro-batch */
        default: r->comm_elements_per_step = 3.0 * a * psi; break;          /* all three per micro-batch */
        }
        r->comm_bytes_per_rank = r->comm_elements_per_step * (n - 1.0) / n * b;
        r->comm_time_s = r->comm_bytes_per_rank / (in->bandwidth_gbps * 1e9);
    }
}
