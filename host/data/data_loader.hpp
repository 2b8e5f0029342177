// Serves micro-batches of packed rows for each optimizer step, deterministically from the seed:
// the rows of each epoch are shuffled by (seed, epoch); optimizer step s reads the s-th window
// of micro_batch_size x accumulation x world_size rows, and each rank takes its own contiguous
// share. So the data of a step depends only on (seed, step), never on how the run got there,
// which makes resume exact and lets any world size see the same global batches.
#pragma once

#include <cstdint>
#include <vector>

#include "data/batch_source.hpp"
#include "data/packed_rows.hpp"
#include "loom/sdk/batch.hpp"

namespace loom {

struct LoaderShape {
  std::int64_t micro_batch_size = 1;
  std::int64_t accumulation_steps = 1;
  int world_size = 1;
  int rank = 0;
};

class DataLoader : public BatchSource {
 public:
  DataLoader(PackedRows rows, LoaderShape shape, std::uint64_t seed);

  std::int64_t rows() const { return rows_.rows(); }
  std::int64_t windows_per_epoch() const override;
  std::vector<sdk::Batch> window(std::int64_t step) const override;
  // Every row once, in order, as micro-batches; batch i belongs to rank i % world_size.
  std::vector<sdk::Batch> sequential_batches() const;

 private:
  sdk::Batch gather(const std::vector<std::int64_t>& rows,
                    const std::vector<std::int64_t>& sample_index) const;
  const std::vector<std::int64_t>& epoch_order(std::int64_t epoch) const;

  PackedRows rows_;
  LoaderShape shape_;
  std::uint64_t seed_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> order_;
};

}  // namespace loom
