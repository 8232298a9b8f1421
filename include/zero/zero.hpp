/*
 * libzero for C++17: an optional, header-only wrapper over the C API.
 *
 * The C API (zero.h) stays the contract: every method here is a thin inline
 * call of the C function it names, with the same arguments, the same
 * semantics and the same thread contract (documented in the C headers). The
 * wrapper adds only three things:
 *
 *   1. Ownership. zero::engine, zero::comm, zero::sampler and zero::config own
 *      their C handle and release it in their destructor (zero_engine_destroy,
 *      zero_comm_destroy, zero_sampler_destroy, zero_config_destroy). They are
 *      move-only: a moved-from object holds nothing and its destructor does
 *      nothing. Strings the library hands over (client_sd, config JSON) are
 *      copied into std::string and released at once (zero_string_free).
 *   2. Exceptions. A call that returns a negative zero_status_t throws
 *      zero::error, which carries the status and a message: the C function's
 *      name, the status text and, for engine calls, the engine's last error
 *      (zero_engine_last_error()). ZERO_INPROGRESS is not an error. The
 *      library still logs every error once where it detects it, as it does for
 *      C callers; the exception is how the failure reaches the caller.
 *   3. Return values instead of output pointers (backward_begin() returns the
 *      seed, step() returns the zero_step_info_t, ...).
 *
 * Nothing else changes: the params structs are the C ones, initialised in C++
 * as value-initialised structs with fields assigned one by one (C++17 has no
 * designated initialisers):
 *
 *     zero_engine_params_t ep{};                       // every field 0
 *     ep.field_mask  = ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH;
 *     ep.config_path = "ds_config.json";
 *     zero::engine eng(ep);                            // throws zero::error on failure
 *     zero_param_desc_t d{};
 *     d.name = "fc1.weight"; d.dtype = ZERO_FP32; d.ndim = 2; d.shape[0] = 512; d.shape[1] = 784;
 *     zero_param_h fc1 = eng.param_register(d);
 *     eng.setup();
 *     for (...) {
 *         float seed = eng.backward_begin();
 *         ... backward adds into zero_param_grad(fc1) ...
 *         eng.backward_end();
 *         zero_step_info_t info = eng.step();
 *     }
 *     eng.save_checkpoint("ckpt", nullptr, client_sd.c_str());
 *     // ~engine(): zero_engine_destroy (collective, as in C)
 *
 * Parameter handles (zero_param_h) are owned by their engine, as in C, and
 * are used with the C accessors (zero_param_data, zero_param_grad, ...).
 *
 * Empty objects: a default-constructed or moved-from object holds no handle.
 * Its methods pass NULL to the C functions: the calls that return a status
 * then throw zero::error (ZERO_ERR_INVALID_ARG), but the plain accessors
 * (engine::lr(), engine::config(), engine::global_steps(), ...) have no
 * status to report and must not be called; test the object with
 * `if (obj)` first where it may be empty.
 *
 * Destruction order: an engine created with a zero::comm of the caller's
 * (zero_engine_params_t::comm = my_comm.get()) must be destroyed before that
 * communicator, so declare the zero::comm first (C++ destroys in reverse
 * order of declaration).
 *
 * Collective destructors: zero_engine_destroy and zero_comm_destroy are
 * collective (every rank calls them). A rank that leaves a scope by an
 * exception while the other ranks go on destroys its engine alone; the others
 * then see ZERO_ERR_COMM or ZERO_ERR_TIMEOUT at their next collective, exactly
 * as when a C trainer returns early. Exceptions never escape a destructor.
 *
 * Threads: as the C API. An engine is used from one thread at a time; a
 * zero::error is an ordinary value and may be passed between threads.
 *
 * Requires C++17 and the C headers of the same libzero; link -lzero
 * (pkg-config zero). docs/cpp.md has the whole guide.
 */
#ifndef ZERO_ZERO_HPP
#define ZERO_ZERO_HPP

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "zero/zero.hpp needs C++17 or later; C programs include zero/zero.h"
#endif

#include <zero/zero.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace zero {

/**
 * A libzero call failed. status() is the zero_status_t the C call returned
 * (always negative); what() reads "CALL: STATUS TEXT[: DETAIL]", DETAIL being
 * the engine's last error for engine calls, or what the call was given (a
 * path) where the library keeps no message.
 */
class error : public std::runtime_error {
public:
    error(zero_status_t status, const std::string &message) : std::runtime_error(message), status_(status) {}

    /** The status the C call returned (negative). */
    zero_status_t status() const noexcept { return status_; }

private:
    zero_status_t status_;
};

/**
 * Throws zero::error when @p status is an error (negative); returns it
 * otherwise (ZERO_OK, or ZERO_INPROGRESS from a request test). @p call names
 * the C function; @p detail (may be NULL or empty) is appended to the message.
 * For wrapping C calls the wrapper does not cover.
 */
inline zero_status_t check(zero_status_t status, const char *call, const char *detail = nullptr)
{
    if (status >= 0)
        return status;
    std::string message = call;
    message += ": ";
    message += zero_status_string(status);
    if (detail != nullptr && detail[0] != '\0') {
        message += ": ";
        message += detail;
    }
    throw error(status, message);
}

namespace detail {

/** Copies a library-allocated string and releases it; NULL gives no value. */
inline std::optional<std::string> take_string(char *text)
{
    if (text == nullptr)
        return std::nullopt;
    std::string copy;
    try {
        copy = text;
    } catch (...) {
        zero_string_free(text);
        throw;
    }
    zero_string_free(text);
    return copy;
}

/** Message detail naming a path the caller passed ("" when none). */
inline std::string quoted(const char *what, const char *value)
{
    std::string s = what;
    s += " \"";
    s += value != nullptr ? value : "(null)";
    s += "\" (the cause is in libzero's log)";
    return s;
}

} // namespace detail

/**
 * A communicator (zero_comm_h), destroyed with zero_comm_destroy (collective
 * while healthy). Move-only. Blocking collectives only; the non-blocking
 * *_start calls and requests are used through the C API with get().
 */
class comm {
public:
    /** Holds nothing. */
    comm() noexcept = default;
    /** zero_comm_create(params, ...): joins the job from the environment. @p params nullptr: all defaults. */
    explicit comm(const zero_comm_params_t *params)
    {
        check(zero_comm_create(params, &handle_), "zero_comm_create",
              "rank variables, rendezvous or UCX set-up (the cause is in libzero's log)");
    }
    /** Takes ownership of a handle created through the C API. */
    static comm adopt(zero_comm_h handle) noexcept
    {
        comm c;
        c.handle_ = handle;
        return c;
    }
    ~comm() { zero_comm_destroy(handle_); }

    comm(comm &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    comm &operator=(comm &&other) noexcept
    {
        if (this != &other) {
            zero_comm_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    comm(const comm &) = delete;
    comm &operator=(const comm &) = delete;

    /** The C handle (still owned by this object). */
    zero_comm_h get() const noexcept { return handle_; }
    /** Gives up ownership: the caller destroys the handle. */
    zero_comm_h release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    int rank() const noexcept { return zero_comm_rank(handle_); }
    int size() const noexcept { return zero_comm_size(handle_); }
    int local_rank() const noexcept { return zero_comm_local_rank(handle_); }
    int local_size() const noexcept { return zero_comm_local_size(handle_); }

    /** zero_comm_allreduce. */
    void allreduce(const void *sendbuf, void *recvbuf, size_t count, zero_dtype_t dtype, zero_comm_op_t op,
                   zero_mem_kind_t mem_kind = ZERO_MEM_HOST)
    {
        check(zero_comm_allreduce(handle_, sendbuf, recvbuf, count, dtype, op, mem_kind), "zero_comm_allreduce");
    }
    /** zero_comm_reduce_scatter. */
    void reduce_scatter(const void *sendbuf, void *recvbuf, size_t recvcount, zero_dtype_t dtype,
                        zero_comm_op_t op, zero_mem_kind_t mem_kind = ZERO_MEM_HOST)
    {
        check(zero_comm_reduce_scatter(handle_, sendbuf, recvbuf, recvcount, dtype, op, mem_kind),
              "zero_comm_reduce_scatter");
    }
    /** zero_comm_allgather. */
    void allgather(const void *sendbuf, void *recvbuf, size_t sendcount, zero_dtype_t dtype,
                   zero_mem_kind_t mem_kind = ZERO_MEM_HOST)
    {
        check(zero_comm_allgather(handle_, sendbuf, recvbuf, sendcount, dtype, mem_kind), "zero_comm_allgather");
    }
    /** zero_comm_broadcast. */
    void broadcast(const void *sendbuf, void *recvbuf, size_t count, zero_dtype_t dtype, int root,
                   zero_mem_kind_t mem_kind = ZERO_MEM_HOST)
    {
        check(zero_comm_broadcast(handle_, sendbuf, recvbuf, count, dtype, root, mem_kind), "zero_comm_broadcast");
    }
    /** zero_comm_barrier. */
    void barrier() { check(zero_comm_barrier(handle_), "zero_comm_barrier"); }

private:
    zero_comm_h handle_ = nullptr;
};

/**
 * A parsed configuration (const zero_config_t), destroyed with
 * zero_config_destroy. Move-only. The engine keeps its own; this is for
 * programs that read a config without training (a tool, a planner).
 */
class config {
public:
    /** Holds nothing. */
    config() noexcept = default;
    /**
     * zero_config_parse_file(path, world_size, ...). Every problem is logged
     * by the parser (as zero_engine_create does); a config that does not parse
     * throws with the path in the message.
     */
    explicit config(const char *path, uint32_t world_size = 0)
    {
        check(zero_config_parse_file(path, world_size, &config_, nullptr), "zero_config_parse_file",
              detail::quoted("config", path).c_str());
    }
    ~config() { zero_config_destroy(config_); }

    config(config &&other) noexcept : config_(std::exchange(other.config_, nullptr)) {}
    config &operator=(config &&other) noexcept
    {
        if (this != &other) {
            zero_config_destroy(config_);
            config_ = std::exchange(other.config_, nullptr);
        }
        return *this;
    }
    config(const config &) = delete;
    config &operator=(const config &) = delete;

    /** The C structure (owned by this object; read it, never change it). */
    const zero_config_t *get() const noexcept { return config_; }
    const zero_config_t *operator->() const noexcept { return config_; }
    const zero_config_t &operator*() const noexcept { return *config_; }
    explicit operator bool() const noexcept { return config_ != nullptr; }

    /** zero_config_to_json: the effective configuration as DeepSpeed-format JSON. */
    std::string to_json() const
    {
        char *json = nullptr;
        check(zero_config_to_json(config_, &json), "zero_config_to_json");
        return detail::take_string(json).value_or(std::string());
    }

private:
    zero_config_t *config_ = nullptr;
};

/** A distributed sampler (zero_sampler_h), destroyed with zero_sampler_destroy. Move-only. */
class sampler {
public:
    /** Holds nothing. */
    sampler() noexcept = default;
    /** zero_sampler_create. */
    explicit sampler(const zero_sampler_params_t &params)
    {
        check(zero_sampler_create(&params, &handle_), "zero_sampler_create");
    }
    ~sampler() { zero_sampler_destroy(handle_); }

    sampler(sampler &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    sampler &operator=(sampler &&other) noexcept
    {
        if (this != &other) {
            zero_sampler_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    sampler(const sampler &) = delete;
    sampler &operator=(const sampler &) = delete;

    zero_sampler_h get() const noexcept { return handle_; }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /** zero_sampler_batches_per_epoch. */
    uint64_t batches_per_epoch() const noexcept { return zero_sampler_batches_per_epoch(handle_); }
    /**
     * zero_sampler_next: writes the next micro-batch's indices into @p indices
     * (room for batch_size entries) and returns how many it wrote.
     */
    size_t next(uint64_t *indices, uint64_t *epoch_p = nullptr, uint64_t *batch_p = nullptr)
    {
        size_t count = 0;
        check(zero_sampler_next(handle_, indices, &count, epoch_p, batch_p), "zero_sampler_next");
        return count;
    }
    /** zero_sampler_seek: the next batch is the @p step-th micro-batch of training. */
    void seek(uint64_t step) { check(zero_sampler_seek(handle_, step), "zero_sampler_seek"); }
    /** zero_sampler_position. */
    void position(uint64_t *epoch_p, uint64_t *batch_p) const noexcept
    {
        zero_sampler_position(handle_, epoch_p, batch_p);
    }

private:
    zero_sampler_h handle_ = nullptr;
};

/**
 * An engine (zero_engine_h), destroyed with zero_engine_destroy (collective).
 * Move-only. Each method calls the C function of the same name
 * (zero_engine_ / zero_ prefix dropped) and throws zero::error carrying the
 * engine's last error when it fails. Checkpoint calls are collective, as in C.
 */
class engine {
public:
    /** Holds nothing. */
    engine() noexcept = default;
    /**
     * zero_engine_create. On failure there is no engine to hold a last error:
     * the message names the config (path, or "string") and the cause is in
     * libzero's log.
     */
    explicit engine(const zero_engine_params_t &params)
    {
        zero_status_t status = zero_engine_create(&params, &handle_);
        if (status < 0) {
            const bool by_path = (params.field_mask & ZERO_ENGINE_PARAM_FIELD_CONFIG_PATH) != 0;
            check(status, "zero_engine_create",
                  by_path ? detail::quoted("config_path", params.config_path).c_str()
                          : "config_json (the cause is in libzero's log)");
        }
    }
    /** Takes ownership of a handle created through the C API. */
    static engine adopt(zero_engine_h handle) noexcept
    {
        engine e;
        e.handle_ = handle;
        return e;
    }
    ~engine() { zero_engine_destroy(handle_); }

    engine(engine &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    engine &operator=(engine &&other) noexcept
    {
        if (this != &other) {
            zero_engine_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }
    engine(const engine &) = delete;
    engine &operator=(const engine &) = delete;

    /** The C handle (still owned by this object), for C calls the wrapper does not cover. */
    zero_engine_h get() const noexcept { return handle_; }
    /** Gives up ownership: the caller calls zero_engine_destroy. */
    zero_engine_h release() noexcept { return std::exchange(handle_, nullptr); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /** zero_engine_adopt_flat: the trainer's weight and gradient buffers of one dtype become the
     *  engine's flat spaces (before any param_register; the buffers stay the caller's). */
    void adopt_flat(const zero_flat_buffers_t &buffers)
    {
        checked(zero_engine_adopt_flat(handle_, &buffers), "zero_engine_adopt_flat");
    }
    /** zero_engine_flat_capacity: elements adopted buffers holding @p numel must have room for. */
    size_t flat_capacity(size_t numel) const
    {
        size_t capacity = 0;
        checked(zero_engine_flat_capacity(handle_, numel, &capacity), "zero_engine_flat_capacity");
        return capacity;
    }

    /** zero_param_register: returns the parameter's handle (owned by the engine). */
    zero_param_h param_register(const zero_param_desc_t &desc)
    {
        zero_param_h param = nullptr;
        checked(zero_param_register(handle_, &desc, &param), "zero_param_register");
        return param;
    }
    /** zero_engine_setup (collective). */
    void setup() { checked(zero_engine_setup(handle_), "zero_engine_setup"); }

    /** zero_gather of @p count parameters (stage 3; a no-op below). */
    void gather(const zero_param_h *params, size_t count) { checked(zero_gather(handle_, params, count), "zero_gather"); }
    void gather(zero_param_h param) { gather(&param, 1); }
    /** zero_release of @p count parameters. */
    void release_params(const zero_param_h *params, size_t count)
    {
        checked(zero_release(handle_, params, count), "zero_release");
    }
    void release_params(zero_param_h param) { release_params(&param, 1); }
    /** zero_gather_slices: rows of stacked parameters (stage 3; windows below). */
    void gather_slices(const zero_param_slice_t *slices, size_t count)
    {
        checked(zero_gather_slices(handle_, slices, count), "zero_gather_slices");
    }
    /** zero_release_slices. */
    void release_slices(const zero_param_slice_t *slices, size_t count)
    {
        checked(zero_release_slices(handle_, slices, count), "zero_release_slices");
    }

    /** zero_backward_begin: returns the seed the trainer multiplies dL/d(output) by. */
    float backward_begin()
    {
        float seed = 0.0f;
        checked(zero_backward_begin(handle_, &seed), "zero_backward_begin");
        return seed;
    }
    /** zero_grad_ready. */
    void grad_ready(zero_param_h param) { checked(zero_grad_ready(handle_, param), "zero_grad_ready"); }
    /** zero_grad_slice_ready: rows [first, first + count) of @p param's gradient are complete. */
    void grad_slice_ready(zero_param_h param, int64_t first, int64_t count)
    {
        checked(zero_grad_slice_ready(handle_, param, first, count), "zero_grad_slice_ready");
    }
    /** zero_backward_end. */
    void backward_end() { checked(zero_backward_end(handle_), "zero_backward_end"); }
    /** zero_step: returns what it did. */
    zero_step_info_t step()
    {
        zero_step_info_t info{};
        checked(zero_step(handle_, &info), "zero_step");
        return info;
    }

    double lr() const noexcept { return zero_engine_lr(handle_); }
    void set_lr(double lr) { checked(zero_engine_set_lr(handle_, lr), "zero_engine_set_lr"); }
    void lr_schedule_step() { checked(zero_engine_lr_schedule_step(handle_), "zero_engine_lr_schedule_step"); }
    double loss_scale() const noexcept { return zero_engine_loss_scale(handle_); }
    uint64_t global_steps() const noexcept { return zero_engine_global_steps(handle_); }
    uint64_t micro_steps() const noexcept { return zero_engine_micro_steps(handle_); }
    uint64_t skipped_steps() const noexcept { return zero_engine_skipped_steps(handle_); }
    double grad_norm() const noexcept { return zero_engine_grad_norm(handle_); }
    /** The effective configuration (owned by the engine). */
    const zero_config_t &config() const noexcept { return *zero_engine_config(handle_); }
    /** The engine's communicator (owned by the engine unless it was given one). */
    zero_comm_h comm() const noexcept { return zero_engine_comm(handle_); }
    /** zero_engine_last_error ("" if none). */
    const char *last_error() const noexcept { return zero_engine_last_error(handle_); }

    /** zero_engine_memory. */
    zero_engine_memory_t memory() const
    {
        zero_engine_memory_t m{};
        checked(zero_engine_memory(handle_, &m), "zero_engine_memory");
        return m;
    }
    /** zero_engine_timers. */
    zero_engine_timers_t timers() const
    {
        zero_engine_timers_t t{};
        checked(zero_engine_timers(handle_, &t), "zero_engine_timers");
        return t;
    }

    /**
     * zero_save_checkpoint (collective). @p tag nullptr: "global_step<N>";
     * @p client_sd_json nullptr: no client_sd.
     */
    void save_checkpoint(const char *save_dir, const char *tag = nullptr, const char *client_sd_json = nullptr)
    {
        checked(zero_save_checkpoint(handle_, save_dir, tag, client_sd_json), "zero_save_checkpoint");
    }
    /**
     * zero_load_checkpoint (collective). @p tag nullptr reads <load_dir>/latest;
     * @p options nullptr restores everything. Returns the saved client_sd
     * text, or no value when the checkpoint has none.
     */
    std::optional<std::string> load_checkpoint(const char *load_dir, const char *tag = nullptr,
                                               const zero_checkpoint_load_options_t *options = nullptr)
    {
        char *client_sd = nullptr;
        checked(zero_load_checkpoint(handle_, load_dir, tag, options, &client_sd), "zero_load_checkpoint");
        return detail::take_string(client_sd);
    }

private:
    /* Throws with the engine's last error as detail. */
    void checked(zero_status_t status, const char *call) const
    {
        if (status < 0)
            check(status, call, zero_engine_last_error(handle_));
    }

    zero_engine_h handle_ = nullptr;
};

} // namespace zero

#endif /* ZERO_ZERO_HPP */
