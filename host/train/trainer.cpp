#include "train/trainer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <thread>

#include "distributed/fault_injection.hpp"
#include "distributed/process_group.hpp"
#include "errors.hpp"
#include "io/tensor_io.hpp"
#include "train/autocast_guard.hpp"
#include "train/causal_lm_loss.hpp"
#include "train/objective.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};

extern "C" void on_stop_signal(int sig) {
  g_stop_signal = sig;
  // A second Ctrl-C ends the process at once; the checkpoint on disk is still complete
  // because folders are renamed into place only when fully written.
  std::signal(sig, SIG_DFL);
}

class StopSignalScope {
 public:
  StopSignalScope() {
    g_stop_signal = 0;
    prev_int_ = std::signal(SIGINT, on_stop_signal);
    prev_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignalScope() {
    std::signal(SIGINT, prev_int_);
    std::signal(SIGTERM, prev_term_);
  }

 private:
  void (*prev_int_)(int);
  void (*prev_term_)(int);
};

// Values the ranks sum alongside the metrics (a plugin metric cannot be named like this).
const std::string kLossKey = "loom:loss", kStopKey = "loom:stop", kCountKey = "loom:count",
                  kWeightKey = "loom:weight", kSaveKey = "loom:save", kEvalKey = "loom:evaluate";

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

sdk::Batch clone_batch(const sdk::Batch& b, const torch::Device& device) {
  sdk::Batch c;
  c.input_ids = b.input_ids.to(device, false, true);
  c.labels = b.labels.to(device, false, true);
  c.segment_ids = b.segment_ids.to(device, false, true);
  c.position_ids = b.position_ids.to(device, false, true);
  c.sample_index = b.sample_index.to(device, false, true);
  for (const auto& [k, v] : b.extras) c.extras[k] = v.to(device, false, true);
  return c;
}

Trainer::Trainer(TrainConfig config, PluginSet& plugins, TrainOptions options)
    : cfg_(std::move(config)), plugins_(plugins), opt_(std::move(options)) {
  setup();
}

void Trainer::setup() {
  if (opt_.group) {
    dp_ = DataParallel(opt_.group);
    opt_.rank = dp_.rank();
    opt_.world_size = dp_.world_size();
  }
  // threads = 0: this machine's cores, shared by its ranks.
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int per_rank = std::max(1, cores / std::max(1, opt_.local_world_size));
  at::set_num_threads(cfg_.threads > 0 ? cfg_.threads : per_rank);
  if (opt_.resume) {
    // Rank 0 picks the checkpoint; every rank loads that one (each checks its own copy).
    if (opt_.rank == 0) {
      std::vector<std::string> skipped;
      resume_from_ = opt_.resume_dir.empty() ? find_latest_checkpoint(cfg_.output_dir, &skipped)
                                             : fs::path(opt_.resume_dir);
      for (const auto& s : skipped) spdlog::warn("--resume: skipping {}", s);
    }
    resume_from_ = dp_.from_rank0("resume_checkpoint", resume_from_.string());
    if (resume_from_.empty())
      throw UserError("--resume: no complete checkpoint-<step> folder in " + cfg_.output_dir);
    if (!opt_.resume_dir.empty()) {  // a folder the user named: refused, not skipped
      const std::string problem = checkpoint_problem(resume_from_);
      if (!problem.empty()) throw UserError("--resume " + opt_.resume_dir.string() + ": " + problem);
    }
    resumed_ = read_trainer_state(resume_from_);
  }
  sdk::RunInfo run = run_info_for(cfg_, opt_.command);
  run.rank = opt_.rank;
  run.world_size = opt_.world_size;
  plugins_.configure(cfg_, run);
  bundle_ = build_model_bundle(cfg_, resume_from_, plugins_);
  dp_.broadcast_parameters(parameters());  // replicas start equal (as DDP's constructor does)
  if (opt_.batch_source)
    custom_source_ = opt_.batch_source(*bundle_.tokenizer, bundle_.model->vocab_size());
  else
    data_ = build_training_data(cfg_, *bundle_.tokenizer, opt_.rank, opt_.world_size);

  const std::int64_t per_epoch = train_source().windows_per_epoch();
  total_steps_ = cfg_.max_steps > 0 ? cfg_.max_steps
                                    : std::max<std::int64_t>(1, std::int64_t(std::ceil(cfg_.num_epochs * double(per_epoch))));
  const std::int64_t warmup = cfg_.warmup_steps >= 0
                                  ? cfg_.warmup_steps
                                  : std::int64_t(std::ceil(cfg_.warmup_ratio * double(total_steps_)));
  schedule_ = std::make_unique<LrSchedule>(cfg_.lr_scheduler, cfg_.learning_rate, warmup, total_steps_);
  // With LoRA, only the adapters (and modules_to_save) have optimizer state.
  optimizer_ = std::make_unique<AdamW>(
      bundle_.lora ? bundle_.lora->trainable() : named_weights(bundle_.model->model()),
      AdamWOptions{cfg_.adam_beta1, cfg_.adam_beta2, cfg_.adam_epsilon, cfg_.weight_decay});
  if (opt_.resume) {
    std::map<std::string, torch::Tensor> state = load_all(resume_from_ / "optimizer.safetensors");
    for (auto& [k, v] : state) v = v.to(bundle_.device);
    optimizer_->load_state(state, resumed_.optimizer_steps);
    start_step_ = resumed_.step;
    const std::int64_t global = global_batch_rows();
    if (opt_.rank == 0 && resumed_.global_batch_rows > 0 && resumed_.global_batch_rows != global)
      spdlog::warn("--resume: the global batch changes from {} to {} rows per step; steps after {} "
                   "read the data in windows of the new size (keep micro_batch_size x "
                   "gradient_accumulation_steps x world size equal to continue exactly)",
                   resumed_.global_batch_rows, global, start_step_);
    if (start_step_ > total_steps_)
      throw UserError("--resume: checkpoint " + resume_from_.string() + " is at step " +
                      std::to_string(start_step_) + ", past max_steps " + std::to_string(total_steps_));
    // Plugins read back what their on_save wrote into this checkpoint.
    auto s = Trainer::state(start_step_);  // (`state` above is the optimizer's)
    plugins_.on_load(s, resume_from_.string());
  }
}

std::vector<torch::Tensor> Trainer::parameters() {
  // What trains: with LoRA the frozen base is neither broadcast, summed over ranks nor clipped.
  if (bundle_.lora) return bundle_.lora->parameters();
  return bundle_.model->model()->parameters();
}

const BatchSource& Trainer::train_source() const {
  return custom_source_ ? *custom_source_ : *data_.train;
}

std::int64_t Trainer::global_batch_rows() const {
  return cfg_.micro_batch_size * cfg_.gradient_accumulation_steps * opt_.world_size;
}

double Trainer::epoch_at(std::int64_t step) const {
  return double(step) / double(train_source().windows_per_epoch());
}

void Trainer::log_values(std::int64_t step, const sdk::Metrics& values) {
  const double epoch = MetricsLog::rounded_epoch(epoch_at(step));
  if (log_) log_->write(step, epoch, values);
  if (tensorboard_) tensorboard_->write(step, epoch, values);
}

sdk::StepContext Trainer::context(std::int64_t step, bool training) const {
  sdk::StepContext c;
  c.step = step;
  c.accumulation_steps = training ? cfg_.gradient_accumulation_steps : 1;
  c.seed = cfg_.seed;
  c.training = training;
  c.rank = opt_.rank;
  c.world_size = opt_.world_size;
  c.model = bundle_.model.get();
  return c;
}

void Trainer::take_requests(const sdk::TrainerState& s) {
  requested_.stop |= s.should_training_stop;
  requested_.save |= s.should_save;
  requested_.evaluate |= s.should_evaluate;
}

void Trainer::agree_on_requests(std::int64_t step) {
  // Only plugins built for SDK 1.2 can make requests; the same on every rank.
  if (!dp_.active() || !plugins_.any_supports(sdk::kMinorControlAndLoad)) return;
  sdk::Metrics m{{kStopKey, requested_.stop ? 1.0 : 0.0},
                 {kSaveKey, requested_.save ? 1.0 : 0.0},
                 {kEvalKey, requested_.evaluate ? 1.0 : 0.0}};
  m = dp_.sum_metrics(m, "callback requests at step " + std::to_string(step));
  requested_.stop = m[kStopKey] > 0;
  requested_.save = m[kSaveKey] > 0;
  requested_.evaluate = m[kEvalKey] > 0;
}

sdk::TrainerState Trainer::state(std::int64_t step) {
  sdk::TrainerState s;
  s.step = step;
  s.max_steps = total_steps_;
  s.epoch = epoch_at(step);
  s.rank = opt_.rank;
  s.world_size = opt_.world_size;
  s.output_dir = cfg_.output_dir;
  s.model = bundle_.model.get();
  s.tokenizer = bundle_.tokenizer.get();
  s.last_metrics = last_metrics_;
  return s;
}

StepOutcome Trainer::train_step(std::int64_t step) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  StepOutcome out;
  auto lap = [t = t0](double& phase) mutable {
    const auto now = Clock::now();
    phase += std::chrono::duration<double>(now - t).count();
    t = now;
  };
  auto& model = *bundle_.model;
  model.set_training(true);
  sdk::StepContext ctx = context(step, true);
  // LoRA dropout draws from the global generator: seeded from (seed, step, rank) so a resumed
  // run draws what the uninterrupted one did.
  if (bundle_.lora && bundle_.lora->config().dropout > 0)
    torch::manual_seed(cfg_.seed * 1000003ULL + std::uint64_t(step) * 7919ULL + std::uint64_t(opt_.rank));

  // 1. data for the whole window, through the plugins' batch transforms
  std::vector<sdk::Batch> window = train_source().window(step);
  for (auto& batch : window) batch = clone_batch(batch, bundle_.device);
  transform_window(plugins_, window, ctx);
  dp_.sum_totals(ctx.window, step);  // losses are normalised by the global window
  lap(out.phases.data);

  // 2. attention, forward, loss and backward per micro-batch; gradients accumulate
  const Precision precision{cfg_.bf16, bundle_.cuda()};
  for (std::size_t i = 0; i < window.size(); ++i) {
    ctx.micro_step = std::int64_t(i);
    sdk::LossResult r = forward_and_loss(plugins_, model, window[i], ctx, precision,
                                         [&] { lap(out.phases.forward); });
    lap(out.phases.loss);
    r.loss.backward();
    out.loss += r.loss.item<double>();
    for (const auto& [k, v] : r.metrics) out.metrics[k] += v / double(window.size());
    lap(out.phases.backward);
  }

  // 3. gradients summed over ranks (once per step), then clip, update, schedule
  out.allreduce_seconds = dp_.sum_gradients(parameters(), step);
  out.grad_norm = clip_grad_norm(parameters(), cfg_.max_grad_norm);
  out.lr = schedule_->at(step);
  optimizer_->step(out.lr);
  optimizer_->zero_grad();
  lap(out.phases.optimizer);
  out.tokens = ctx.window.tokens;
  // 4. the step's loss is the sum of the ranks' shares; metrics are averaged over ranks; a stop
  // request on any rank stops all of them after this step.
  out.stop = g_stop_signal != 0;
  if (dp_.active()) {
    sdk::Metrics mine = out.metrics;
    mine[kLossKey] = out.loss;
    mine[kStopKey] = out.stop ? 1.0 : 0.0;
    sdk::Metrics all = dp_.sum_metrics(mine, "metrics of step " + std::to_string(step + 1));
    out.loss = all[kLossKey];
    out.stop = all[kStopKey] > 0;
    all.erase(kLossKey);
    all.erase(kStopKey);
    for (auto& [k, v] : all) v /= double(opt_.world_size);
    out.metrics = std::move(all);
  }
  out.seconds = seconds_since(t0);
  return out;
}

sdk::Metrics Trainer::evaluate(std::int64_t step) {
  sdk::Metrics result;
  if (!data_.eval) return result;
  auto& model = *bundle_.model;
  model.set_training(false);
  torch::NoGradGuard no_grad;
  const int repeats = plugins_.eval_repeats();
  auto batches = data_.eval->sequential_batches();  // this rank's: global batch k*world+rank
  if (cfg_.eval_max_batches > 0) {
    const std::int64_t W = opt_.world_size;
    const std::int64_t keep = (cfg_.eval_max_batches - opt_.rank + W - 1) / W;  // k*W+rank < max
    if (std::int64_t(batches.size()) > keep) batches.resize(std::size_t(keep));
  }
  // The loss: per-token average over the eval set (batches weighted by eval_weight); the other
  // metrics: plain means over the evaluated batches.
  double loss = 0, weight = 0;
  std::int64_t n = 0;
  sdk::Metrics sums;
  for (const auto& source : batches) {
    for (int r = 0; r < repeats; ++r) {
      sdk::StepContext ctx = context(step, false);
      ctx.repeat = r;
      sdk::Batch batch = clone_batch(source, bundle_.device);
      auto lr = evaluate_batch(plugins_, model, batch, ctx, {cfg_.bf16, bundle_.cuda()});
      const double w = eval_weight(lr, ctx, plugins_.owns_loss());
      loss += w * lr.loss.item<double>();
      weight += w;
      for (const auto& [k, v] : lr.metrics)
        if (k != sdk::kScoredTokensMetric) sums[k] += v;
      ++n;
    }
  }
  model.set_training(true);
  if (dp_.active()) {  // every rank evaluated its share of the batches
    sums[kLossKey] = loss;
    sums[kWeightKey] = weight;
    sums[kCountKey] = double(n);
    sums = dp_.sum_metrics(sums, "evaluation at step " + std::to_string(step));
    loss = sums[kLossKey];
    weight = sums[kWeightKey];
    n = std::int64_t(sums[kCountKey]);
    sums.erase(kLossKey);
    sums.erase(kWeightKey);
    sums.erase(kCountKey);
  }
  if (n == 0) return result;
  result["eval/loss"] = weight > 0 ? loss / weight : 0.0;
  for (const auto& [k, v] : sums)
    if (k != "loss") result["eval/" + k] = v / double(n);
  auto s = state(step);
  plugins_.on_evaluate(s, result);
  take_requests(s);
  return result;
}

void Trainer::save(std::int64_t step) {
  if (opt_.rank != 0) return;
  TrainerStateRecord rec{step,      epoch_at(step),  optimizer_->steps_taken(),
                         cfg_.seed, opt_.world_size, global_batch_rows()};
  const fs::path dir = fs::path(cfg_.output_dir) / ("checkpoint-" + std::to_string(step));
  auto s = state(step);
  write_checkpoint(dir, bundle_, optimizer_.get(), rec, cfg_.resolved_toml,
                   [&](const fs::path& tmp) { plugins_.on_save(s, tmp.string()); });
  prune_checkpoints(cfg_.output_dir, cfg_.save_total_limit);
}

void Trainer::write_final(std::int64_t step) {
  if (opt_.rank != 0) return;
  TrainerStateRecord rec{step,      epoch_at(step),  optimizer_->steps_taken(),
                         cfg_.seed, opt_.world_size, global_batch_rows()};
  // Plugins save what they keep (an EMA of the weights, say) into final/ as into checkpoints.
  auto s = state(step);
  write_checkpoint(fs::path(cfg_.output_dir) / "final", bundle_, nullptr, rec, cfg_.resolved_toml,
                   [&](const fs::path& tmp) { plugins_.on_save(s, tmp.string()); });
}

int Trainer::run() {
  const bool main_process = opt_.rank == 0;
  fs::create_directories(cfg_.output_dir);
  if (main_process) {
    // The event file first: a runs/ folder that cannot be written stops the run before
    // metrics.jsonl is touched.
    const bool tensorboard = std::find(cfg_.report_to.begin(), cfg_.report_to.end(),
                                       "tensorboard") != cfg_.report_to.end();
    if (tensorboard)
      tensorboard_ = std::make_unique<TensorBoardLog>(cfg_.output_dir, opt_.resume ? start_step_ : -1,
                                                      cfg_.resolved_toml);
    log_ = std::make_unique<MetricsLog>(cfg_.output_dir, opt_.resume ? start_step_ : -1);
  }
  std::int64_t params = 0;
  for (const auto& p : bundle_.model->model()->parameters()) params += p.numel();
  if (main_process && bundle_.lora) {
    std::int64_t trainable = 0;
    for (const auto& p : parameters()) trainable += p.numel();
    std::string targets;
    for (const auto& t : bundle_.lora->target_modules()) targets += (targets.empty() ? "" : " ") + t;
    spdlog::info("LoRA r {} alpha {} on {}: {:.3f}M trainable parameters ({:.3f}% of {:.2f}M)",
                 bundle_.lora->config().r, bundle_.lora->config().alpha, targets,
                 double(trainable) / 1e6, 100.0 * double(trainable) / double(std::max<std::int64_t>(1, params)),
                 double(params) / 1e6);
  }
  if (main_process) {
    spdlog::info("model: {} layers, hidden {}, {} heads ({} kv), vocab {}, {:.2f}M parameters, on {}",
                 bundle_.model->model()->config().num_hidden_layers, bundle_.model->hidden_size(),
                 bundle_.model->model()->config().num_attention_heads,
                 bundle_.model->model()->config().num_key_value_heads, bundle_.model->vocab_size(),
                 double(params) / 1e6, bundle_.cuda() ? "cuda" : "cpu");
    if (!custom_source_) spdlog::info("{}", data_.summary());
    spdlog::info("training {} steps ({} per epoch), global batch {} rows x {} tokens{}",
                 total_steps_, train_source().windows_per_epoch(),
                 cfg_.micro_batch_size * cfg_.gradient_accumulation_steps * opt_.world_size,
                 cfg_.sequence_len,
                 opt_.resume ? ", resuming from " + resume_from_.string() : std::string());
  }
  StopSignalScope signals;
  ProgressBar bar(start_step_, total_steps_, opt_.progress, !main_process);
  {
    auto s = state(start_step_);
    plugins_.on_train_begin(s);
  }
  // Averages over the steps since the last log line.
  double acc_loss = 0, acc_norm = 0, acc_secs = 0, acc_comm = 0;
  const FaultInjection faults = FaultInjection::from_environment();
  std::int64_t acc_tokens = 0, acc_n = 0;
  sdk::Metrics acc_metrics;
  bool evaluated_last = false;
  std::int64_t last_step = start_step_;
  for (std::int64_t step = start_step_; step < total_steps_; ++step) {
    StepOutcome o = train_step(step);
    const std::int64_t done = step + 1;
    acc_loss += o.loss, acc_norm += o.grad_norm, acc_secs += o.seconds, acc_tokens += o.tokens, ++acc_n;
    acc_comm += o.allreduce_seconds;
    for (const auto& [k, v] : o.metrics) acc_metrics[k] += v;
    const bool log_now = done % cfg_.logging_steps == 0 || done == total_steps_;
    const double tps = double(acc_tokens) / std::max(1e-9, acc_secs);
    bar.update(done, acc_loss / double(acc_n), o.lr, tps, log_now);
    // The train line of metrics.jsonl: averages over the steps since the last one.
    auto write_train_log = [&, lr = o.lr, tps, done] {
      sdk::Metrics m;
      m["train/loss"] = acc_loss / double(acc_n);
      m["train/lr"] = lr;
      m["train/grad_norm"] = acc_norm / double(acc_n);
      m["train/tokens_per_s"] = tps;
      if (dp_.active()) m["train/allreduce_s"] = acc_comm / double(acc_n);  // this rank's
      for (const auto& [k, v] : acc_metrics)
        if (k != "loss") m["train/" + k] = v / double(acc_n);
      log_values(done, m);
      for (const auto& [k, v] : m) last_metrics_[k] = v;
      acc_loss = acc_norm = acc_secs = acc_comm = 0, acc_tokens = acc_n = 0;
      acc_metrics.clear();
    };
    if (log_now) write_train_log();
    {
      auto s = state(done);
      plugins_.on_step_end(s);
      take_requests(s);
    }
    if (tensorboard_) tensorboard_->add_new_samples();  // what on_step_end wrote (diffusion)
    agree_on_requests(done);
    evaluated_last = false;
    const bool eval_due = cfg_.eval_steps > 0 && done % cfg_.eval_steps == 0;
    if (data_.eval && (eval_due || requested_.evaluate)) {
      auto m = evaluate(done);  // its on_evaluate may ask to stop (early stopping) or save
      agree_on_requests(done);
      log_values(done, m);
      for (const auto& [k, v] : m) last_metrics_[k] = v;
      if (main_process) bar.message("eval at step " + std::to_string(done) + ": loss " + std::to_string(m["eval/loss"]));
      evaluated_last = true;
    }
    requested_.evaluate = false;
    faults.after_step(opt_.rank, done);
    if (o.stop) {
      save(done);
      bar.finish();
      if (main_process)
        spdlog::warn("interrupted: saved {}/checkpoint-{}; continue with --resume", cfg_.output_dir, done);
      return 130;
    }
    last_step = done;
    if (requested_.stop) {
      if (main_process) spdlog::info("a plugin callback stopped training at step {} of {}", done, total_steps_);
      if (acc_n > 0) write_train_log();  // the last step is logged however the run ends
      break;
    }
    const bool save_due = cfg_.save_steps > 0 && done % cfg_.save_steps == 0;
    if ((save_due || requested_.save) && done != total_steps_) save(done);
    requested_.save = false;
  }
  bar.finish();
  // The end, reached or asked for by a callback: evaluation, the last checkpoint, final/.
  if (data_.eval && !evaluated_last) {
    auto m = evaluate(last_step);
    log_values(last_step, m);
    for (const auto& [k, v] : m) last_metrics_[k] = v;
    if (main_process) spdlog::info("eval at step {}: loss {:.4f}", last_step, m["eval/loss"]);
  }
  save(last_step);
  write_final(last_step);
  {
    auto s = state(last_step);
    plugins_.on_train_end(s);
  }
  if (tensorboard_) tensorboard_->add_new_samples();
  if (main_process)
    spdlog::info("done: {}/final (Hugging Face folder), metrics in {}/metrics.jsonl", cfg_.output_dir,
                 cfg_.output_dir);
  return 0;
}

}  // namespace loom
