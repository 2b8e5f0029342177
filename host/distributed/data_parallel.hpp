// What the training loop needs from data parallelism (every rank holds a full replica and
// trains on its own share of each optimizer step's global window):
//   - at the start, every replica takes rank 0's weights;
//   - per step, the window totals (the loss normalisers) are summed over ranks before any
//     loss is computed, so each rank's loss is its share of the global loss, and the gradients
//     are then SUMMED once, after the accumulation window: the sum of the ranks' gradients of
//     their shares is exactly the gradient of the whole global batch;
//   - metrics and evaluation results are summed over ranks before they are logged.
// With one process (no group) every call returns its input unchanged, so the loop reads the
// same for any world size.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "loom/sdk/context.hpp"

namespace loom {

class ProcessGroup;
class GradientBuckets;

class DataParallel {
 public:
  DataParallel();  // one process
  explicit DataParallel(std::shared_ptr<ProcessGroup> group);
  ~DataParallel();
  DataParallel(DataParallel&&) noexcept;
  DataParallel& operator=(DataParallel&&) noexcept;

  bool active() const { return group_ != nullptr; }
  int rank() const;
  int world_size() const;

  // Every replica takes rank 0's values.
  void broadcast_parameters(const std::vector<torch::Tensor>& params);
  // The totals of all ranks' windows at optimizer step `step`.
  void sum_totals(sdk::WindowTotals& totals, std::int64_t step);
  // Each parameter's gradient becomes its sum over ranks; returns the seconds it took.
  double sum_gradients(const std::vector<torch::Tensor>& params, std::int64_t step);
  // Per-key sums over ranks, in rank order (identical on every rank); a key that some rank
  // lacks counts as 0 there (as a metric that a micro-batch lacks does within a window).
  sdk::Metrics sum_metrics(const sdk::Metrics& local, const std::string& what);
  // Rank 0's `value` on every rank; `key` names it, once per run.
  std::string from_rank0(const std::string& key, const std::string& value);

 private:
  std::shared_ptr<ProcessGroup> group_;
  std::unique_ptr<GradientBuckets> buckets_;
};

}  // namespace loom
