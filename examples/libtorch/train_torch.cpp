// A LibTorch (PyTorch C++ frontend) trainer on libzero: a small MLP language
// model defined with torch::nn, trained with libzero's ZeRO engine instead of
// a torch::optim optimizer (docs/libtorch.md).
//
//   train_torch --reference [--optimizer adamw|sgd] [--steps N] [--out FILE]
//       one process, torch::optim::AdamW (or SGD with momentum): the curve the
//       engine must match;
//   zero-launch --num_gpus W train_torch --stage S [--optimizer adamw|sgd] [--gas G] [--steps N] [--out FILE]
//       W ranks, ZeRO stage S, the same model, data, initial values and
//       optimizer hyper-parameters through libzero.
//
// What maps to what:
//   - parameters: registered in forward order. Stages 0-2 adopt the tensors'
//     own storage (views: the engine updates weights in place and reduces the
//     gradients where autograd accumulated them: no copies). Stage 3 hands the
//     engine the initial values; from then on the engine owns the sharded
//     weights and the tensors point at the gathered copy while it exists.
//   - gradients: each parameter's AccumulateGrad node gets a post hook that
//     calls zero_grad_ready once autograd has written the parameter's .grad for
//     this micro-batch (a tensor hook would run before .grad is written).
//   - stage-3 gathers: a pre-forward hook per submodule (C++ modules have no
//     hook API: ZeroModule::gather() is called first in each forward).
//   - the optimizer: zero_step() at the accumulation boundary; the loss is
//     multiplied by zero_backward_begin's seed before backward().
//   - parameter groups, as torch's param_groups: the weight matrices decay
//     ("default"), biases do not ("no_decay"), and the embedding trains at
//     half the rate without decay and, for SGD, with less momentum ("embed").
//     The config's optimizer.param_groups names the groups;
//     zero_engine_param_group_index turns a name into the index given at
//     registration.
#include <torch/torch.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <zero/zero.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// ---- the data: a deterministic token stream with structure to learn ----

constexpr int kVocab = 32, kContext = 4, kEmbed = 16, kHidden = 64;
constexpr int kGlobalBatch = 12;   // divisible by every world size 1-3 and by gas 1-2 with them
constexpr double kLr = 1e-2, kBeta1 = 0.9, kBeta2 = 0.999, kEps = 1e-8, kWeightDecay = 0.01;
constexpr double kSgdLr = 0.1, kSgdMomentum = 0.9;
// The embedding group: a fraction of the rate, no decay; SGD: less momentum.
constexpr double kEmbedLrScale = 0.5, kEmbedSgdMomentum = 0.5;

enum class Group { Default, NoDecay, Embed };

// Which group a parameter belongs to, by its name ("tok.weight", "fc1.bias", ...).
Group group_of(const std::string &name)
{
    if (name.rfind("tok.", 0) == 0)
        return Group::Embed;
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0)
        return Group::NoDecay;
    return Group::Default;
}

std::vector<int64_t> make_stream(size_t n)
{
    std::vector<int64_t> s(n);
    uint32_t state = 2024u;
    s[0] = 1;
    s[1] = 2;
    for (size_t i = 2; i < n; i++) {
        state = state * 1664525u + 1013904223u;
        int64_t next = (7 * s[i - 1] + s[i - 2] % 2) % kVocab;          // a rule the model can learn
        s[i] = (state >> 28) == 0 ? (int64_t)((state >> 8) % kVocab) : next;   // and 1/16 noise
    }
    return s;
}

// Samples [first, first + count) of step @p step: contexts and next tokens.
void batch(const std::vector<int64_t> &stream, int step, int first, int count, torch::Tensor &x, torch::Tensor &y)
{
    x = torch::empty({count, kContext}, torch::kLong);
    y = torch::empty({count}, torch::kLong);
    auto xa = x.accessor<int64_t, 2>();
    auto ya = y.accessor<int64_t, 1>();
    size_t span = stream.size() - kContext - 1;
    for (int i = 0; i < count; i++) {
        size_t start = ((size_t)(step * kGlobalBatch + first + i) * 7919u) % span;
        for (int t = 0; t < kContext; t++)
            xa[i][t] = stream[start + t];
        ya[i] = stream[start + kContext];
    }
}

// ---- libzero glue ----

struct ZeroState {
    zero::engine *eng = nullptr;   // null in the reference run
    int stage = 0;
};

// Calls zero_grad_ready once autograd has accumulated the parameter's gradient
// (the post hook of its AccumulateGrad node runs after .grad is written).
// Stages 0-2: .grad is the view the engine reads. Stage 3: .grad is autograd's
// own tensor; it is added into the engine's gradient buffer and dropped.
class GradReadyHook : public torch::autograd::FunctionPostHook {
public:
    GradReadyHook(ZeroState *zs, zero_param_h handle, torch::Tensor param)
        : zs_(zs), handle_(handle), param_(std::move(param)) {}

    torch::autograd::variable_list operator()(const torch::autograd::variable_list &outputs,
                                              const torch::autograd::variable_list &/* inputs */) override
    {
        if (zs_->eng != nullptr) {
            if (zs_->stage == 3) {
                torch::Tensor engine_grad = torch::from_blob(zero_param_grad(handle_), param_.sizes(), torch::kFloat);
                engine_grad.add_(param_.grad());
                param_.mutable_grad().reset();
            }
            zs_->eng->grad_ready(handle_);
        }
        return outputs;
    }

private:
    ZeroState *zs_;
    zero_param_h handle_;
    torch::Tensor param_;
};

// A module whose parameters libzero manages. gather() is the forward pre-hook:
// at stage 3 it gathers the module's own parameters and points the tensors at
// the full weights (kept until the trainer releases them after the backward,
// since autograd saved them for it).
struct ZeroParam {
    torch::Tensor tensor;
    zero_param_h handle;
    std::vector<int64_t> shape;   // the tensor's own shape (it is empty between gathers at stage 3)
};

struct ZeroModule {
    ZeroState *zs = nullptr;
    std::vector<ZeroParam> params;

    void gather()
    {
        if (zs == nullptr || zs->eng == nullptr || zs->stage != 3)
            return;
        std::vector<zero_param_h> handles;
        for (auto &p : params)
            handles.push_back(p.handle);
        zs->eng->gather(handles.data(), handles.size());
        torch::NoGradGuard no_grad;
        for (auto &p : params)
            p.tensor.set_data(torch::from_blob(zero_param_data(p.handle), p.shape, torch::kFloat));
    }
};

// ---- the model ----

struct MlpLmImpl : torch::nn::Module {
    torch::nn::Embedding tok{nullptr};
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
    ZeroModule z_tok, z_fc1, z_fc2;

    MlpLmImpl()
    {
        tok = register_module("tok", torch::nn::Embedding(kVocab, kEmbed));
        fc1 = register_module("fc1", torch::nn::Linear(kContext * kEmbed, kHidden));
        fc2 = register_module("fc2", torch::nn::Linear(kHidden, kVocab));
    }

    torch::Tensor forward(const torch::Tensor &x)
    {
        z_tok.gather();
        torch::Tensor h = tok->forward(x).reshape({x.size(0), kContext * kEmbed});
        z_fc1.gather();
        h = torch::tanh(fc1->forward(h));
        z_fc2.gather();
        return fc2->forward(h);
    }
};
TORCH_MODULE(MlpLm);

struct Options {
    bool reference = false;
    bool sgd = false;
    int stage = 0, gas = 1, steps = 30;
    std::string out;
};

Options parse(int argc, char **argv)
{
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&](void) -> const char * {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "train_torch: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--reference")
            o.reference = true;
        else if (a == "--stage")
            o.stage = std::atoi(value());
        else if (a == "--gas")
            o.gas = std::atoi(value());
        else if (a == "--optimizer") {
            std::string v = value();
            if (v != "adamw" && v != "sgd") {
                std::fprintf(stderr, "train_torch: --optimizer adamw or sgd\n");
                std::exit(2);
            }
            o.sgd = v == "sgd";
        }
        else if (a == "--steps")
            o.steps = std::atoi(value());
        else if (a == "--out")
            o.out = value();
        else {
            std::fprintf(stderr, "usage: train_torch [--reference] [--optimizer adamw|sgd] [--stage 0-3] [--gas G] "
                                 "[--steps N] [--out FILE]\n");
            std::exit(2);
        }
    }
    if (o.stage < 0 || o.stage > 3 || o.gas < 1 || o.steps < 1) {
        std::fprintf(stderr, "train_torch: --stage 0-3, --gas >= 1, --steps >= 1\n");
        std::exit(2);
    }
    return o;
}

void report(FILE *out, int step, double loss)
{
    std::printf("step=%d loss=%.9g\n", step, loss);
    if (out != nullptr)
        std::fprintf(out, "%d %.9g\n", step, loss);
}

// torch's own optimizer over the same three groups, each with its options.
std::unique_ptr<torch::optim::Optimizer> reference_optimizer(const Options &o, MlpLm &model)
{
    std::vector<torch::Tensor> members[3];
    for (auto &named : model->named_parameters())
        members[(int)group_of(named.key())].push_back(named.value());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    for (int g = 0; g < 3; g++) {
        double lr_scale = g == (int)Group::Embed ? kEmbedLrScale : 1.0;
        double decay = g == (int)Group::Default ? kWeightDecay : 0.0;
        if (o.sgd) {
            double momentum = g == (int)Group::Embed ? kEmbedSgdMomentum : kSgdMomentum;
            groups.emplace_back(members[g], std::make_unique<torch::optim::SGDOptions>(
                                                torch::optim::SGDOptions(kSgdLr * lr_scale).momentum(momentum)
                                                    .weight_decay(decay)));
        } else {
            groups.emplace_back(members[g], std::make_unique<torch::optim::AdamWOptions>(
                                                torch::optim::AdamWOptions(kLr * lr_scale).betas({kBeta1, kBeta2})
                                                    .eps(kEps).weight_decay(decay)));
        }
    }
    if (o.sgd)
        return std::make_unique<torch::optim::SGD>(std::move(groups), torch::optim::SGDOptions(kSgdLr));
    return std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(kLr));
}

int train_reference(const Options &o, MlpLm &model, const std::vector<int64_t> &stream, FILE *out)
{
    std::unique_ptr<torch::optim::Optimizer> optimizer = reference_optimizer(o, model);
    torch::optim::Optimizer &opt = *optimizer;
    for (int step = 0; step < o.steps; step++) {
        torch::Tensor x, y;
        batch(stream, step, 0, kGlobalBatch, x, y);
        opt.zero_grad();
        torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
        loss.backward();
        opt.step();
        report(out, step + 1, loss.item<double>());
    }
    return 0;
}

int train_zero(const Options &o, MlpLm &model, const std::vector<int64_t> &stream, FILE *out)
{
    zero::comm comm(nullptr);
    int world = comm.size(), rank = comm.rank();
    if (kGlobalBatch % (world * o.gas) != 0) {
        std::fprintf(stderr, "train_torch: a global batch of %d does not split over %d ranks x %d micro-batches\n",
                     kGlobalBatch, world, o.gas);
        return 1;
    }
    int micro = kGlobalBatch / (world * o.gas);
    // The groups as a libzero extension of the optimizer block: each entry
    // overrides keys of "params" for the parameters registered into it.
    char optimizer[640], json[1024];
    if (o.sgd)
        std::snprintf(optimizer, sizeof(optimizer),
                      "{\"type\": \"SGD\", \"params\": {\"lr\": %.17g, \"momentum\": %.17g, \"weight_decay\": %.17g},"
                      " \"param_groups\": {\"no_decay\": {\"weight_decay\": 0},"
                      " \"embed\": {\"lr\": %.17g, \"momentum\": %.17g, \"weight_decay\": 0}}}",
                      kSgdLr, kSgdMomentum, kWeightDecay, kSgdLr * kEmbedLrScale, kEmbedSgdMomentum);
    else
        std::snprintf(optimizer, sizeof(optimizer),
                      "{\"type\": \"AdamW\", \"params\": {\"lr\": %.17g, \"betas\": [%.17g, %.17g], \"eps\": %.17g,"
                      " \"weight_decay\": %.17g}, \"param_groups\": {\"no_decay\": {\"weight_decay\": 0},"
                      " \"embed\": {\"lr\": %.17g, \"weight_decay\": 0}}}",
                      kLr, kBeta1, kBeta2, kEps, kWeightDecay, kLr * kEmbedLrScale);
    std::snprintf(json, sizeof(json),
                  "{\"train_batch_size\": %d, \"gradient_accumulation_steps\": %d, \"gradient_clipping\": 0.0,"
                  " \"optimizer\": %s, \"zero_optimization\": {\"stage\": %d}}",
                  kGlobalBatch, o.gas, optimizer, o.stage);
    zero_engine_params_t ep{};
    ep.field_mask = ZERO_ENGINE_PARAM_FIELD_CONFIG_JSON | ZERO_ENGINE_PARAM_FIELD_COMM |
                    ZERO_ENGINE_PARAM_FIELD_NUM_THREADS;
    ep.config_json = json;
    ep.comm = comm.get();
    ep.num_threads = 1;
    zero::engine eng(ep);
    ZeroState zs;
    zs.eng = &eng;
    zs.stage = o.stage;
    int group_index[3];
    const char *group_names[3] = {"default", "no_decay", "embed"};
    for (int g = 0; g < 3; g++)
        if (zero_engine_param_group_index(eng.get(), group_names[g], &group_index[g]) != ZERO_OK)
            throw std::runtime_error(zero_engine_last_error(eng.get()));

    // Register in forward order; keep each AccumulateGrad node alive (the hook lives on it).
    std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
    std::vector<ZeroParam> all;
    struct Owned {
        ZeroModule *z;
        torch::nn::Module *m;
        const char *prefix;
    } modules[] = {{&model->z_tok, model->tok.ptr().get(), "tok"},
                   {&model->z_fc1, model->fc1.ptr().get(), "fc1"},
                   {&model->z_fc2, model->fc2.ptr().get(), "fc2"}};
    for (auto &om : modules) {
        om.z->zs = &zs;
        for (auto &named : om.m->named_parameters()) {
            torch::Tensor p = named.value();
            std::string name = std::string(om.prefix) + "." + named.key();
            zero_param_desc_t d{};
            d.field_mask = ZERO_PARAM_FIELD_PARAM_GROUP;
            d.param_group = group_index[(int)group_of(name)];
            d.name = name.c_str();
            d.dtype = ZERO_FP32;
            d.ndim = (int)p.dim();
            for (int k = 0; k < d.ndim; k++)
                d.shape[k] = p.size(k);
            if (o.stage < 3) {
                // Adopt the tensors' storage: the engine updates the weights in
                // place and reads the gradients autograd accumulates into .grad.
                p.mutable_grad() = torch::zeros_like(p);
                d.field_mask |= ZERO_PARAM_FIELD_VIEW;
                d.view_data = p.data_ptr<float>();
                d.view_grad = p.mutable_grad().data_ptr<float>();
            } else {
                d.field_mask |= ZERO_PARAM_FIELD_INIT_VALUES;   // read during setup
                d.init_values = p.data_ptr<float>();
            }
            zero_param_h h = eng.param_register(d);
            ZeroParam zp{p, h, p.sizes().vec()};
            om.z->params.push_back(zp);
            all.push_back(zp);
            auto acc = torch::autograd::impl::grad_accumulator(p);
            acc->add_post_hook(std::make_unique<GradReadyHook>(&zs, h, p));
            accumulators.push_back(acc);
        }
    }
    eng.setup();
    if (o.stage == 3) {
        // The engine owns the (sharded) weights now: drop torch's full copies.
        torch::NoGradGuard no_grad;
        for (auto &p : all)
            p.tensor.set_data(torch::empty({0}));
    }

    for (int step = 0; step < o.steps; step++) {
        double loss_sum = 0.0;   // this rank's micro-batch means, summed
        for (int m = 0; m < o.gas; m++) {
            torch::Tensor x, y;
            batch(stream, step, (rank * o.gas + m) * micro, micro, x, y);
            torch::Tensor loss = torch::nn::functional::cross_entropy(model->forward(x), y);
            float seed = eng.backward_begin();   // 1/gas here (fp32): the engine averages over ranks
            (loss * seed).backward();
            eng.backward_end();
            if (o.stage == 3) {
                std::vector<zero_param_h> handles;
                for (auto &p : all)
                    handles.push_back(p.handle);
                eng.release_params(handles.data(), handles.size());
                torch::NoGradGuard no_grad;
                for (auto &p : all)
                    p.tensor.set_data(torch::empty({0}));
            }
            eng.step();
            loss_sum += loss.item<double>();
        }
        // The global loss: the mean over every rank's micro-batches.
        double local = loss_sum / o.gas, global = 0.0;
        comm.allreduce(&local, &global, 1, ZERO_F64, ZERO_COMM_SUM, ZERO_MEM_HOST);
        if (rank == 0)
            report(out, step + 1, global / world);
    }
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    Options o = parse(argc, argv);
    torch::set_num_threads(1);
    torch::manual_seed(1234);   // the same initial values in every process
    MlpLm model;
    std::vector<int64_t> stream = make_stream(4096);
    FILE *out = nullptr;
    if (!o.out.empty() && (out = std::fopen(o.out.c_str(), "w")) == nullptr) {
        std::perror(o.out.c_str());
        return 1;
    }
    int rc;
    try {
        rc = o.reference ? train_reference(o, model, stream, out) : train_zero(o, model, stream, out);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "train_torch: %s\n", e.what());
        rc = 1;
    }
    if (out != nullptr && std::fclose(out) != 0)
        rc = 1;
    return rc;
}
