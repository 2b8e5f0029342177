// What the host tells plugins about the run (configure), the current micro-batch (batch
// transform, attention, loss) and the training state (callbacks).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "loom/sdk/model.hpp"
#include "loom/sdk/tokenizer.hpp"
#include "loom/sdk/version.hpp"

namespace loom::sdk {

using Metrics = std::map<std::string, double>;

// RunInfo, StepContext and TrainerState are made by the host and handed to plugins by
// reference: each may grow by fields appended at its end (a minor version).
struct RunInfo {
  std::uint64_t seed = 0;
  std::string output_dir;
  std::string base_model;  // empty when training from scratch
  std::int64_t sequence_len = 0;
  std::int64_t micro_batch_size = 0;
  std::int64_t gradient_accumulation_steps = 1;
  int rank = 0;
  int world_size = 1;
  bool bf16 = false;
  std::string device;  // "cpu" or "cuda"
  std::string command = "train";  // the trainer command: train | generate | eval | check | bench
};

// Totals over the whole optimizer step (all micro-batches of the accumulation window, all
// ranks). The host sums the losses of the window's micro-batches and back-propagates each;
// an objective that divides by these totals (not by its micro-batch's own counts) gets
// exactly the gradient of one big batch.
// Frozen for SDK major 1 (it sits inside StepContext, before other fields): new totals are
// appended to StepContext instead.
struct WindowTotals {
  std::int64_t rows = 0;          // sequences (packed rows)
  std::int64_t documents = 0;     // non-empty segments (a packed row holds several)
  std::int64_t tokens = 0;        // non-padding tokens
  std::int64_t label_tokens = 0;  // tokens whose label is not kIgnoreIndex
  std::int64_t next_token_targets = 0;  // positions i whose label i+1 is in the same segment
};

struct StepContext {
  std::int64_t step = 0;        // optimizer steps completed before this one
  std::int64_t micro_step = 0;  // index of this micro-batch within the window
  std::int64_t accumulation_steps = 1;
  std::uint64_t seed = 0;
  bool training = true;      // false during evaluation
  std::int64_t repeat = 0;   // evaluation: which of Plugin::eval_repeats() passes this is
  int rank = 0;
  int world_size = 1;
  WindowTotals window;
#if LOOM_SDK_TARGET_MINOR >= 1
  // SDK 1.1. The model this step runs, for ModelHandle::cross_entropy /
  // sdk::cross_entropy_where; may be null (then project() is used).
  ModelHandle* model = nullptr;
#endif
};

struct LossResult {
  at::Tensor loss;  // scalar, differentiable; see WindowTotals for how to normalise it
  Metrics metrics;  // per micro-batch values; the host averages them over the window and
                    // ranks and logs them as "train/<name>" (or "eval/<name>")
};

// In evaluation, a loss that is a per-token average may report how many tokens it averaged
// over in LossResult::metrics under this name; the host then weights eval batches by it (so
// padding and batch composition do not change the reported value). Without it the host
// weights by WindowTotals::tokens. A naming convention only: no layout changes (SDK 1.1).
inline constexpr const char* kScoredTokensMetric = "scored_tokens";

struct TrainerState {
  std::int64_t step = 0;  // optimizer steps completed
  std::int64_t max_steps = 0;
  double epoch = 0;
  int rank = 0;
  int world_size = 1;
  std::string output_dir;
  ModelHandle* model = nullptr;
  TokenizerHandle* tokenizer = nullptr;
  Metrics last_metrics;  // the most recent logged metrics (train/... and eval/...)
  bool is_main_process() const { return rank == 0; }
#if LOOM_SDK_TARGET_MINOR >= 2
  // SDK 1.2: training control, as transformers' TrainerControl. A callback sets these in
  // on_step_end or on_evaluate; the host reads them when the callbacks of that event return
  // (with several ranks: a flag set on any rank counts for all).
  //  - should_training_stop: end training after this step as a normal end: evaluation (if
  //    there is eval data), the last checkpoint, final/, on_train_end;
  //  - should_save: write checkpoint-<step> now (besides save_steps);
  //  - should_evaluate: evaluate now (besides eval_steps; ignored without eval data).
  bool should_training_stop = false;
  bool should_save = false;
  bool should_evaluate = false;
#endif
};

}  // namespace loom::sdk
