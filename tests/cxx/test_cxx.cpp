/*
 * libzero from C++17 (docs/cpp.md), in a world of one, linked against
 * libzero.so through the public headers only:
 *   - the quick-start trained through the C API from C++ (params structs
 *     value-initialised, fields assigned) and through zero.hpp gives the same
 *     losses and bit-identical weights as the same program compiled as C
 *     (quickstart_c.c), and its loss falls;
 *   - zero.hpp: RAII releases everything (libzero's memory counters return to
 *     where they were), move-only handles hand over ownership once, failures
 *     become zero::error carrying the status and the message (a bad config
 *     path, a bad parameter, a call out of order, a missing checkpoint), a
 *     checkpoint's client_sd comes back through save/load, and zero::comm and
 *     zero::config wrap a world-of-one communicator and a parsed config.
 * Exits non-zero on any failed check.
 */
#include "quickstart_c.h"

#include <zero/zero.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

namespace {

int failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                              \
        }                                                                            \
    } while (0)

constexpr int kWeights = QS_OUT * QS_IN + QS_OUT;

struct run_result {
    std::vector<float> losses = std::vector<float>(QS_STEPS);
    std::vector<float> weights = std::vector<float>(kWeights);
};

/* Live libzero allocations of every kind (the process-wide counters). */
struct live_memory {
    uint64_t bytes = 0, count = 0;
    static live_memory now()
    {
        zero_mem_stats_t s;
        zero_mem_get_stats(&s);
        live_memory m;
        for (int k = 0; k < ZERO_MEM_KIND_COUNT; k++) {
            m.bytes += s.live_bytes[k];
            m.count += s.live_count[k];
        }
        return m;
    }
    bool operator==(const live_memory &o) const { return bytes == o.bytes && count == o.count; }
};

void copy_weights(zero_param_h w, zero_param_h b, std::vector<float> &out)
{
    std::memcpy(out.data(), zero_param_data(w), sizeof(float) * QS_OUT * QS_IN);
    std::memcpy(out.data() + QS_OUT * QS_IN, zero_param_data(b), sizeof(float) * QS_OUT);
}

/* The parameter descriptions, C++17 style: value-initialise, then assign. */
zero_param_desc_t weight_desc()
{
    zero_param_desc_t d{};
    d.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY;
    d.name = "fc.weight";
    d.dtype = ZERO_FP32;
    d.ndim = 2;
    d.shape[0] = QS_OUT;
    d.shape[1] = QS_IN;
    d.weight_decay = 1;
    d.init_fn = qs_init;
    return d;
}

zero_param_desc_t bias_desc()
{
    zero_param_desc_t d{};
    d.field_mask = ZERO_PARAM_FIELD_INIT_FN | ZERO_PARAM_FIELD_WEIGHT_DECAY;
    d.name = "fc.bias";
    d.dtype = ZERO_FP32;
    d.ndim = 1;
    d.shape[0] = QS_OUT;
    d.weight_decay = 0;
    d.init_fn = qs_init;
    return d;
}

zero_engine_params_t engine_params()
{
    zero_engine_params_t ep{};
    ep.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_NUM_THREADS;
    ep.config_json = QS_CONFIG_JSON;
    ep.num_threads = 1;
    return ep;
}

zero_sampler_params_t sampler_params()
{
    zero_sampler_params_t sp{};
    sp.num_samples = QS_SAMPLES;
    sp.batch_size = 4;
    sp.world_size = 1;
    sp.rank = 0;
    sp.seed = 3;
    sp.shuffle = 1;
    return sp;
}

/* The quick-start through the C API, compiled as C++. */
bool run_c_api_from_cxx(run_result &r)
{
    zero_engine_params_t ep = engine_params();
    zero_param_desc_t dw = weight_desc(), db = bias_desc();
    zero_sampler_params_t sp = sampler_params();
    zero_engine_h eng = nullptr;
    zero_sampler_h sampler = nullptr;
    zero_param_h w = nullptr, b = nullptr;
    bool ok = false;

    if (zero_engine_create(&ep, &eng) != ZERO_OK)
        return false;
    if (zero_param_register(eng, &dw, &w) != ZERO_OK || zero_param_register(eng, &db, &b) != ZERO_OK ||
        zero_engine_setup(eng) != ZERO_OK || zero_sampler_create(&sp, &sampler) != ZERO_OK)
        goto out;
    for (int step = 0; step < QS_STEPS; step++) {
        float loss = 0.0f;
        uint64_t gas = zero_engine_config(eng)->gradient_accumulation_steps;
        for (uint64_t m = 0; m < gas; m++) {
            uint64_t idx[4];
            size_t n = 0;
            float seed = 0.0f;
            zero_step_info_t info;
            if (zero_sampler_next(sampler, idx, &n, nullptr, nullptr) != ZERO_OK ||
                zero_backward_begin(eng, &seed) != ZERO_OK)
                goto out;
            loss += qs_forward_backward(static_cast<const float *>(zero_param_data(w)),
                                        static_cast<const float *>(zero_param_data(b)),
                                        static_cast<float *>(zero_param_grad(w)),
                                        static_cast<float *>(zero_param_grad(b)), idx, n, seed) /
                    static_cast<float>(gas);
            if (zero_grad_ready(eng, b) != ZERO_OK || zero_grad_ready(eng, w) != ZERO_OK ||
                zero_backward_end(eng) != ZERO_OK || zero_step(eng, &info) != ZERO_OK)
                goto out;
            CHECK(info.boundary == (m + 1 == gas ? 1 : 0));
        }
        r.losses[step] = loss;
    }
    copy_weights(w, b, r.weights);
    ok = true;
out:
    if (!ok)
        std::fprintf(stderr, "quickstart (C API from C++): %s\n", zero_engine_last_error(eng));
    zero_sampler_destroy(sampler);
    zero_engine_destroy(eng);
    return ok;
}

/* The quick-start through zero.hpp. */
void run_wrapper(run_result &r)
{
    zero::engine eng(engine_params());
    zero_param_h w = eng.param_register(weight_desc());
    zero_param_h b = eng.param_register(bias_desc());
    eng.setup();
    zero::sampler sampler(sampler_params());
    const uint64_t gas = eng.config().gradient_accumulation_steps;
    for (int step = 0; step < QS_STEPS; step++) {
        float loss = 0.0f;
        for (uint64_t m = 0; m < gas; m++) {
            uint64_t idx[4];
            size_t n = sampler.next(idx);
            float seed = eng.backward_begin();
            loss += qs_forward_backward(static_cast<const float *>(zero_param_data(w)),
                                        static_cast<const float *>(zero_param_data(b)),
                                        static_cast<float *>(zero_param_grad(w)),
                                        static_cast<float *>(zero_param_grad(b)), idx, n, seed) /
                    static_cast<float>(gas);
            eng.grad_ready(b);
            eng.grad_ready(w);
            eng.backward_end();
            zero_step_info_t info = eng.step();
            CHECK(info.boundary == (m + 1 == gas ? 1 : 0));
        }
        r.losses[step] = loss;
    }
    CHECK(eng.global_steps() == QS_STEPS);
    CHECK(eng.micro_steps() == QS_STEPS * gas);
    copy_weights(w, b, r.weights);
}

bool same_bits(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

void test_quickstart_matches_c()
{
    run_result c_run, capi_run, wrapper_run;
    const live_memory before = live_memory::now();
    CHECK(qs_run_c(c_run.losses.data(), c_run.weights.data()) == 0);
    CHECK(run_c_api_from_cxx(capi_run));
    try {
        run_wrapper(wrapper_run);
    } catch (const zero::error &e) {
        std::fprintf(stderr, "quickstart (zero.hpp): %s\n", e.what());
        failures++;
    }
    CHECK(live_memory::now() == before);   /* every engine and sampler released */

    /* It learns: the last step's loss is far below the first's. */
    std::printf("quickstart: loss %.6f at step 1, %.6f at step %d\n", static_cast<double>(c_run.losses[0]),
                static_cast<double>(c_run.losses[QS_STEPS - 1]), QS_STEPS);
    CHECK(c_run.losses[0] > 0.1f);
    CHECK(c_run.losses[QS_STEPS - 1] < 0.25f * c_run.losses[0]);
    /* C, the C API from C++, and the wrapper train exactly the same model. */
    CHECK(same_bits(c_run.losses, capi_run.losses));
    CHECK(same_bits(c_run.weights, capi_run.weights));
    CHECK(same_bits(c_run.losses, wrapper_run.losses));
    CHECK(same_bits(c_run.weights, wrapper_run.weights));
}

void test_errors_become_exceptions()
{
    const live_memory before = live_memory::now();
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);   /* the failures below are expected */

    /* A config file that does not exist: no engine, the status and path in the exception. */
    zero_engine_params_t bad{};
    bad.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH;
    bad.config_path = "no-such-dir/ds_config.json";
    bool thrown = false;
    try {
        zero::engine eng(bad);
    } catch (const zero::error &e) {
        thrown = true;
        CHECK(e.status() == ZERO_ERR_IO);
        CHECK(std::string(e.what()).find("zero_engine_create") != std::string::npos);
        CHECK(std::string(e.what()).find("no-such-dir/ds_config.json") != std::string::npos);
        CHECK(std::string(e.what()).find(zero_status_string(ZERO_ERR_IO)) != std::string::npos);
    }
    CHECK(thrown);

    /* zero::config: the same file, the same status. */
    thrown = false;
    try {
        zero::config cfg("no-such-dir/ds_config.json");
    } catch (const zero::error &e) {
        thrown = e.status() == ZERO_ERR_IO;
    }
    CHECK(thrown);

    /* An engine call that fails carries the engine's last error, and changes nothing. */
    {
        zero::engine eng(engine_params());
        zero_param_desc_t both = bias_desc();
        both.field_mask |= ZERO_PARAM_FIELD_INIT_VALUES;
        const float values[QS_OUT] = {0};
        both.init_values = values;
        thrown = false;
        try {
            eng.param_register(both);
        } catch (const zero::error &e) {
            thrown = true;
            CHECK(e.status() == ZERO_ERR_INVALID_ARG);
            CHECK(std::string(e.what()) == std::string("zero_param_register: ") +
                                               zero_status_string(ZERO_ERR_INVALID_ARG) + ": " +
                                               eng.last_error());
            CHECK(std::string(e.what()).find("set init_values or init_fn, not both") != std::string::npos);
        }
        CHECK(thrown);
        eng.param_register(bias_desc());   /* the failed call registered nothing */
        eng.setup();

        /* Out of order: a step without a backward. */
        thrown = false;
        try {
            eng.step();
        } catch (const zero::error &e) {
            thrown = e.status() == ZERO_ERR_STATE;
        }
        CHECK(thrown);

        /* A checkpoint directory with nothing in it. */
        thrown = false;
        try {
            eng.load_checkpoint("cxx-no-checkpoint-here");
        } catch (const zero::error &e) {
            thrown = true;
            CHECK(e.status() == ZERO_ERR_NOT_FOUND);
            CHECK(std::string(e.what()).find("zero_load_checkpoint") != std::string::npos);
        }
        CHECK(thrown);
    }
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    CHECK(live_memory::now() == before);   /* the engines built before each throw were released */
}

void test_move_only_ownership()
{
    static_assert(!std::is_copy_constructible_v<zero::engine> && !std::is_copy_assignable_v<zero::engine>);
    static_assert(std::is_nothrow_move_constructible_v<zero::engine>);
    static_assert(!std::is_copy_constructible_v<zero::sampler> && !std::is_copy_constructible_v<zero::comm>);
    static_assert(!std::is_copy_constructible_v<zero::config>);

    const live_memory before = live_memory::now();
    {
        zero::engine a(engine_params());
        zero_engine_h handle = a.get();
        zero::engine b(std::move(a));
        CHECK(!a && a.get() == nullptr);
        CHECK(b.get() == handle);
        zero::engine c;
        c = std::move(b);                   /* c held nothing: nothing destroyed */
        CHECK(!b && c.get() == handle);
        c = zero::engine(engine_params());  /* the first engine is destroyed here */
        CHECK(c && c.get() != nullptr);
        zero_engine_h adopted = c.release();
        CHECK(!c);
        zero::engine again = zero::engine::adopt(adopted);   /* ownership back to RAII */
        CHECK(again.get() == adopted);
    }                                       /* one destroy per engine */
    CHECK(live_memory::now() == before);
}

void test_checkpoint_round_trip()
{
    const char *dir = "cxx-ckpt";
    std::filesystem::remove_all(dir);   /* a previous run's */
    const std::string client_sd = "{\"step\": 7, \"note\": \"from C++\"}";
    const live_memory before = live_memory::now();
    std::vector<float> saved(kWeights), loaded(kWeights);
    try {
        zero_param_h w, b;
        {
            zero::engine eng(engine_params());
            w = eng.param_register(weight_desc());
            b = eng.param_register(bias_desc());
            eng.setup();
            for (int m = 0; m < 2; m++) {   /* one update, so the weights differ from their init */
                float seed = eng.backward_begin();
                const uint64_t idx[4] = {0, 1, 2, 3};
                qs_forward_backward(static_cast<const float *>(zero_param_data(w)),
                                    static_cast<const float *>(zero_param_data(b)),
                                    static_cast<float *>(zero_param_grad(w)),
                                    static_cast<float *>(zero_param_grad(b)), idx, 4, seed);
                eng.backward_end();
                eng.step();
            }
            eng.save_checkpoint(dir, "cxx", client_sd.c_str());
            copy_weights(w, b, saved);
        }
        zero::engine eng(engine_params());
        w = eng.param_register(weight_desc());
        b = eng.param_register(bias_desc());
        eng.setup();
        std::optional<std::string> sd = eng.load_checkpoint(dir);   /* latest */
        CHECK(sd.has_value() && *sd == client_sd);
        CHECK(eng.global_steps() == 1);
        copy_weights(w, b, loaded);
        CHECK(same_bits(saved, loaded));
    } catch (const zero::error &e) {
        std::fprintf(stderr, "checkpoint round trip: %s\n", e.what());
        failures++;
    }
    CHECK(live_memory::now() == before);
    std::filesystem::remove_all(dir);
}

/* Slices of the weight's first dimension through the wrapper: the rows read
 * as the whole weights' rows, and an unbalanced release throws. */
void test_slices()
{
    const live_memory before = live_memory::now();
    try {
        zero::engine eng(engine_params());
        zero_param_h w = eng.param_register(weight_desc());
        eng.setup();
        const zero_param_slice_t rows = {w, 1, 2};
        eng.gather_slices(&rows, 1);
        CHECK(zero_param_slice_data(w, 1, 2) ==
              static_cast<const char *>(zero_param_data(w)) + QS_IN * sizeof(float));
        eng.release_slices(&rows, 1);
        try {
            eng.release_slices(&rows, 1);
            CHECK(false);
        } catch (const zero::error &e) {
            CHECK(e.status() == ZERO_ERR_STATE);
        }
        eng.backward_begin();
        float *g = static_cast<float *>(zero_param_grad_slice(w, 0, QS_OUT));
        CHECK(g == zero_param_grad(w));
        eng.grad_slice_ready(w, 0, QS_OUT);
        eng.backward_end();
        eng.step();
    } catch (const zero::error &e) {
        std::fprintf(stderr, "slices: %s\n", e.what());
        failures++;
    }
    CHECK(live_memory::now() == before);
}

/* zero::comm and zero::config, in a world of one. */
void test_comm_and_config()
{
    const live_memory before = live_memory::now();
    zero_log_set_level(ZERO_LOG_LEVEL_OFF);   /* the bad dtype below is expected to fail */
    try {
        zero::comm comm(nullptr);           /* all defaults: a world of one here */
        CHECK(comm.size() == 1 && comm.rank() == 0);
        const float in[3] = {1.0f, -2.0f, 0.5f};
        float out[3] = {0, 0, 0};
        comm.allreduce(in, out, 3, ZERO_FP32, ZERO_COMM_SUM);
        CHECK(std::memcmp(in, out, sizeof in) == 0);
        comm.barrier();
        bool thrown = false;
        try {
            comm.allreduce(in, out, 3, static_cast<zero_dtype_t>(99), ZERO_COMM_SUM);
        } catch (const zero::error &e) {
            thrown = e.status() == ZERO_ERR_INVALID_ARG &&
                     std::string(e.what()).find("zero_comm_allreduce") != std::string::npos;
        }
        CHECK(thrown);

        const char *path = "cxx-config.json";
        FILE *f = std::fopen(path, "w");
        CHECK(f != nullptr);
        if (f != nullptr) {
            std::fputs(QS_CONFIG_JSON, f);
            std::fclose(f);
            zero::config cfg(path, 1);
            CHECK(cfg && cfg->zero_optimization.stage == 2);
            CHECK(cfg->gradient_accumulation_steps == 2 && cfg->train_batch_size == 8);
            zero::config moved(std::move(cfg));
            CHECK(!cfg && moved);
            CHECK(moved.to_json().find("\"stage\": 2") != std::string::npos);
            std::remove(path);
        }
    } catch (const zero::error &e) {
        std::fprintf(stderr, "comm and config: %s\n", e.what());
        failures++;
    }
    zero_log_set_level(ZERO_LOG_LEVEL_WARN);
    CHECK(live_memory::now() == before);
}

} // namespace

int main()
{
    /* Scratch files go into the working directory (the build directory under meson test). */
    test_quickstart_matches_c();
    test_errors_become_exceptions();
    test_move_only_ownership();
    test_checkpoint_round_trip();
    test_slices();
    test_comm_and_config();
    if (failures != 0) {
        std::fprintf(stderr, "test_cxx: %d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_cxx: all checks passed\n");
    return 0;
}
