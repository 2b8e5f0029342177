// The training loop. One optimizer step reads like the data flow:
//   window of micro-batches -> plugin batch transforms -> attention -> forward -> loss
//   -> backward (per micro-batch) -> clip -> AdamW -> LR schedule -> log / eval / save / callbacks
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "config/train_config.hpp"
#include "data/training_data.hpp"
#include "distributed/data_parallel.hpp"
#include "plugins/plugin_set.hpp"
#include "report/tensorboard_log.hpp"
#include "train/adamw.hpp"
#include "train/checkpoint.hpp"
#include "train/lr_schedule.hpp"
#include "train/metrics_log.hpp"
#include "train/model_bundle.hpp"
#include "train/progress_bar.hpp"

namespace loom {

class ProcessGroup;

struct TrainOptions {
  bool resume = false;
  std::filesystem::path resume_dir;  // empty with resume: the latest complete checkpoint
  int rank = 0;
  int world_size = 1;
  int local_world_size = 1;  // ranks on this machine: they share its cores
  std::shared_ptr<ProcessGroup> group;  // null: one process; else rank/world_size are its
  bool progress = true;
  std::string command = "train";  // what plugins are told (sdk::RunInfo::command)
  // When set, the trainer trains on these batches instead of reading the config's
  // [[datasets]], and does not evaluate (`trainer bench`: random tokens, no files). Called
  // once the model and tokenizer are built, with the model's vocabulary size.
  std::function<std::unique_ptr<BatchSource>(const Tokenizer&, std::int64_t vocab_size)> batch_source;
};

// Wall-clock seconds in each phase of one optimizer step (with CUDA: as far as the host
// waited for the device).
struct StepPhases {
  double data = 0;       // windows read, copied to the device, plugin batch transforms
  double forward = 0;    // attention hook + model forward
  double loss = 0;       // loss hook (or the causal loss), vocabulary projection included
  double backward = 0;
  double optimizer = 0;  // gradient all-reduce, clipping, AdamW, zero_grad
};

// Per-step outcome, averaged over the accumulation window (and summed or averaged over ranks:
// the same on every rank).
struct StepOutcome {
  double loss = 0;
  double grad_norm = 0;
  double lr = 0;
  double seconds = 0;
  std::int64_t tokens = 0;  // over all ranks
  sdk::Metrics metrics;
  double allreduce_seconds = 0;  // summing the gradients over ranks
  bool stop = false;  // some rank got SIGINT/SIGTERM: all ranks stop after this step
  StepPhases phases;
};

class Trainer {
 public:
  Trainer(TrainConfig config, PluginSet& plugins, TrainOptions options);
  // Trains to the end (0) or until interrupted by SIGINT/SIGTERM, after saving a checkpoint
  // to resume from (130).
  int run();

  // Exposed for tests and `trainer bench`.
  StepOutcome train_step(std::int64_t step);
  sdk::Metrics evaluate(std::int64_t step);
  ModelBundle& bundle() { return bundle_; }
  std::int64_t total_steps() const { return total_steps_; }

 private:
  void setup();
  void save(std::int64_t step);
  void write_final(std::int64_t step);
  // Callbacks' training control (sdk::TrainerState::should_*), gathered after a callback
  // event; with several ranks a request on any rank counts for all.
  void take_requests(const sdk::TrainerState& s);
  void agree_on_requests(std::int64_t step);
  sdk::StepContext context(std::int64_t step, bool training) const;
  sdk::TrainerState state(std::int64_t step);
  double epoch_at(std::int64_t step) const;
  // One line of metrics.jsonl, and the same values to TensorBoard when reported to.
  void log_values(std::int64_t step, const sdk::Metrics& values);
  std::int64_t global_batch_rows() const;  // micro batch x accumulation x world size
  std::vector<torch::Tensor> parameters();
  const BatchSource& train_source() const;

  TrainConfig cfg_;
  PluginSet& plugins_;
  TrainOptions opt_;
  std::filesystem::path resume_from_;
  TrainerStateRecord resumed_;
  DataParallel dp_;
  ModelBundle bundle_;
  TrainingData data_;
  std::unique_ptr<BatchSource> custom_source_;  // TrainOptions::batch_source's
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<TensorBoardLog> tensorboard_;  // report_to = ["tensorboard"], rank 0
  std::int64_t start_step_ = 0, total_steps_ = 0;
  sdk::Metrics last_metrics_;
  struct Requests {
    bool stop = false, save = false, evaluate = false;
  } requested_;
};

// Copies every tensor of a batch (transforms may rewrite tensors in place).
sdk::Batch clone_batch(const sdk::Batch& b, const torch::Device& device);

}  // namespace loom
