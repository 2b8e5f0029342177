// Random-token micro-batches for `trainer bench`: no files, no tokenisation, deterministic
// from (seed, step). Each row is one document (segment id 1), positions 0..S-1, labels equal
// to the inputs, as a packed row of real data would look to the model and the plugins.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "data/batch_source.hpp"

namespace loom {

class RandomTokenBatches : public BatchSource {
 public:
  // Token ids are drawn uniformly from `allowed` (e.g. every id except special tokens and the
  // mask token). `rows` per micro-batch, `accumulation` micro-batches per window.
  RandomTokenBatches(std::vector<std::int64_t> allowed, std::int64_t rows, std::int64_t seq_len,
                     std::int64_t accumulation, std::uint64_t seed);

  // Random data has no epochs: one "epoch" is as many steps as an int64 holds.
  std::int64_t windows_per_epoch() const override;
  std::vector<sdk::Batch> window(std::int64_t step) const override;

 private:
  torch::Tensor allowed_;  // [A] int64
  std::int64_t rows_, seq_len_, accumulation_;
  std::uint64_t seed_;
  torch::Tensor segments_, positions_;  // [rows, S], shared by every batch (read-only)
};

// Every id in [0, vocab) for which `skip(id)` is false.
template <class Skip>
std::vector<std::int64_t> allowed_token_ids(std::int64_t vocab, Skip skip) {
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(vocab));
  for (std::int64_t id = 0; id < vocab; ++id)
    if (!skip(id)) out.push_back(id);
  return out;
}

}  // namespace loom
