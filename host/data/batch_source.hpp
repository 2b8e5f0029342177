// Where the trainer's optimizer steps get their micro-batches: the packed dataset rows
// (DataLoader) or, for `trainer bench`, random tokens (RandomTokenBatches).
#pragma once

#include <cstdint>
#include <vector>

#include "loom/sdk/batch.hpp"

namespace loom {

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Optimizer steps per pass over the data (for the epoch count and num_epochs).
  virtual std::int64_t windows_per_epoch() const = 0;
  // The micro-batches this rank trains on at optimizer step `step` (0-based), on the CPU;
  // a function of (seed, step) only, so that resume is exact.
  virtual std::vector<sdk::Batch> window(std::int64_t step) const = 0;
};

}  // namespace loom
