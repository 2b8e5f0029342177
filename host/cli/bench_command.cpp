// `trainer bench`: full optimizer steps of the configured objective (plugins included) on
// random tokens, timed, as one JSON object on stdout. See docs/performance.md.
//
// Each step is Trainer::train_step, the step `trainer train` runs, fed with random-token
// windows (TrainOptions::batch_source) instead of the dataset: window -> device -> plugin
// batch transforms -> window totals -> per micro-batch attention, forward, loss, backward ->
// clip -> AdamW -> zero_grad, each phase timed by the trainer.
#include <sys/resource.h>

#include <nlohmann/json.hpp>
#include <torch/cuda.h>
#include <torch/torch.h>
#if __has_include(<torch/csrc/autograd/profiler_legacy.h>)
#include <torch/csrc/autograd/profiler_legacy.h>
#define LOOM_HAVE_RECORD_PROFILE 1
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "data/random_batches.hpp"
#include "errors.hpp"
#include "train/model_bundle.hpp"
#include "train/trainer.hpp"

namespace loom {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

// Best GEMM rate of this process for `dtype`, square n x n x n products (what the BLAS or
// oneDNN reaches with the configured threads; cuBLAS on a GPU, with sizes large enough to
// fill it).
double measure_peak_matmul_gflops(torch::ScalarType dtype, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  double best = 0;
  const bool cuda = device.is_cuda();
  const std::int64_t cuda_index = device.has_index() ? device.index() : -1;
  const std::vector<std::int64_t> sizes =
      cuda ? std::vector<std::int64_t>{4096, 8192} : std::vector<std::int64_t>{1024, 2048};
  for (std::int64_t n : sizes) {
    auto opts = torch::TensorOptions().dtype(dtype).device(device);
    auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
    auto c = torch::mm(a, b);  // warm up (and let oneDNN / cuBLAS pick its kernel)
    if (cuda) torch::cuda::synchronize(cuda_index);
    for (int rep = 0; rep < 4; ++rep) {
      const int inner = cuda ? 10 : 1;
      const auto t0 = Clock::now();
      for (int i = 0; i < inner; ++i) torch::mm_out(c, a, b);
      if (cuda) torch::cuda::synchronize(cuda_index);
      const double s = seconds(t0, Clock::now()) / inner;
      best = std::max(best, 2.0 * double(n) * double(n) * double(n) / s / 1e9);
    }
  }
  return best;
}

}  // namespace

int run_bench(const BenchArgs& a) {
  TrainConfig cfg = config_for(a.common);
  PluginSet plugins = plugins_for(a.common, cfg);
  const std::int64_t total = a.warmup + a.steps;
  cfg.max_steps = total;  // the LR schedule spans the bench's steps

  // Ids 0..V-2 without special tokens: the reference draws from [0, V-1) and uses V-1 as the
  // mask token, as the bench configs do.
  TrainOptions opt;
  opt.progress = false;
  opt.command = "bench";
  opt.batch_source = [&cfg](const Tokenizer& tok, std::int64_t V) -> std::unique_ptr<BatchSource> {
    return std::make_unique<RandomTokenBatches>(
        allowed_token_ids(V - 1, [&](std::int64_t id) { return id < tok.vocab_size() && tok.is_special(id); }),
        cfg.micro_batch_size, cfg.sequence_len, cfg.gradient_accumulation_steps, cfg.seed);
  };
  Trainer trainer(cfg, plugins, opt);
  auto& handle = *trainer.bundle().model;
  auto& model = handle.model();
  const ModelConfig& mc = model->config();
  const std::int64_t V = mc.vocab_size;
  const int threads = at::get_num_threads();
  std::vector<torch::Tensor> params = model->parameters();
  // Weights and optimizer state are in memory now; gradients and activations come with the
  // first step.
  const double setup_rss_mb = peak_rss_mb();

  std::int64_t projected_rows = 0, step_tokens = 0;
  std::vector<double> step_s, losses;
  std::vector<StepPhases> phases;
#ifdef LOOM_HAVE_RECORD_PROFILE
  std::unique_ptr<torch::autograd::profiler::RecordProfile> trace;
#else
  std::unique_ptr<int> trace;
  if (!a.profile.empty()) throw UserError("--profile: this libtorch has no legacy profiler");
#endif
  for (std::int64_t step = 0; step < total; ++step) {
#ifdef LOOM_HAVE_RECORD_PROFILE
    if (step == a.warmup && !a.profile.empty())
      trace = std::make_unique<torch::autograd::profiler::RecordProfile>(a.profile);
#endif
    const std::int64_t rows_before = handle.projected_rows();
    // The trainer's own step: the same code path as `trainer train`.
    StepOutcome o = trainer.train_step(step);
    losses.push_back(o.loss);
    if (step >= a.warmup) {
      step_s.push_back(o.seconds);
      phases.push_back(o.phases);
      projected_rows += handle.projected_rows() - rows_before;
      step_tokens = o.tokens;
    }
  }
  trace.reset();
  const double rss_mb = peak_rss_mb();

  // FLOPs per token, analytic: 6 x (matmul parameters) for forward and backward, the output
  // matrix counted at the rows the loss projected, plus attention (QK^T and AV over the full
  // S x S, as computed: 2 x 2 x S x heads x head_dim per layer forward).
  const double H = double(mc.hidden_size), F = double(mc.intermediate_size);
  const double Dq = double(mc.num_attention_heads * mc.head_dim());
  const double Dkv = double(mc.num_key_value_heads * mc.head_dim());
  const double L = double(mc.num_hidden_layers), S = double(cfg.sequence_len);
  const double layer_params = L * (H * Dq + 2 * H * Dkv + Dq * H + 3 * H * F);
  const double head_params = H * double(V);
  const double tokens = double(step_tokens) * double(a.steps);
  const double head_share = tokens > 0 ? double(projected_rows) / tokens : 0;
  const double attention = L * 12.0 * S * Dq;
  const double flops_per_token = 6.0 * (layer_params + head_params * head_share) + attention;
  const double model_flops_per_token = 6.0 * (layer_params + head_params) + attention;

  const double step_med = median(step_s);
  const double tokens_per_s = double(step_tokens) / step_med;
  const double achieved = flops_per_token * tokens_per_s / 1e9;
  const auto dtype = cfg.bf16 ? torch::kBFloat16 : torch::kFloat;
  const double peak = measure_peak_matmul_gflops(dtype, trainer.bundle().device);

  std::int64_t n_params = 0;
  double grad_mb = 0;
  for (const auto& p : params) {
    n_params += p.numel();
    grad_mb += double(p.numel() * p.element_size()) / (1024.0 * 1024.0);
  }
  auto phase_median = [&](double StepPhases::*field) {
    std::vector<double> v;
    for (const auto& p : phases) v.push_back(p.*field);
    return median(v);
  };
  auto mean_tail = [&](std::size_t n) {
    n = std::min(n, losses.size());
    double s = 0;
    for (std::size_t i = losses.size() - n; i < losses.size(); ++i) s += losses[i];
    return n ? s / double(n) : 0.0;
  };

  nlohmann::json j;
  j["tokens_per_s"] = tokens_per_s;
  j["step_s"] = step_med;
  j["flops_per_token"] = flops_per_token;
  j["model_flops_per_token"] = model_flops_per_token;
  j["achieved_gflops"] = achieved;
  j["peak_matmul_gflops"] = peak;
  j["mfu"] = peak > 0 ? achieved / peak : 0.0;
  if (a.peak_tflops > 0) {
    j["declared_peak_tflops"] = a.peak_tflops;
    j["mfu_declared"] = achieved / (a.peak_tflops * 1e3);
  }
  j["peak_rss_mb"] = rss_mb;
  // What a step adds beyond weights, optimizer state and gradients: activations kept for
  // backward and transient buffers (peak RSS - RSS after setup - gradient bytes).
  j["activation_mb"] = std::max(0.0, rss_mb - setup_rss_mb - grad_mb);
  j["lm_head_rows_per_token"] = head_share;
  j["phases_s"] = {{"data", phase_median(&StepPhases::data)},
                   {"forward", phase_median(&StepPhases::forward)},
                   {"loss", phase_median(&StepPhases::loss)},
                   {"backward", phase_median(&StepPhases::backward)},
                   {"optimizer", phase_median(&StepPhases::optimizer)}};
  j["loss_first"] = losses.empty() ? 0.0 : losses.front();
  j["loss_last"] = losses.empty() ? 0.0 : losses.back();
  j["loss_last10_mean"] = mean_tail(10);
  j["shapes"] = {{"hidden", mc.hidden_size},
                 {"layers", mc.num_hidden_layers},
                 {"heads", mc.num_attention_heads},
                 {"kv_heads", mc.num_key_value_heads},
                 {"ffn", mc.intermediate_size},
                 {"vocab", V},
                 {"seq", cfg.sequence_len},
                 {"batch", cfg.micro_batch_size},
                 {"accumulation", cfg.gradient_accumulation_steps},
                 {"params", n_params},
                 {"tied_embeddings", mc.tie_word_embeddings}};
  j["dtype"] = cfg.bf16 ? "bf16-autocast" : "fp32";
  j["threads"] = threads;
  // The OpenMP wait policy this process runs with (main() makes it PASSIVE unless the user set it).
  const char* wait_policy = std::getenv("OMP_WAIT_POLICY");
  j["omp_wait_policy"] = wait_policy ? wait_policy : "";
  j["gradient_checkpointing"] = cfg.gradient_checkpointing;
  j["device"] = trainer.bundle().cuda() ? "cuda" : "cpu";
  j["steps"] = a.steps;
  j["warmup"] = a.warmup;
  std::fflush(stdout);
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace loom
