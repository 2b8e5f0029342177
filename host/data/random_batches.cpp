#include "data/random_batches.hpp"

#include <limits>

#include "errors.hpp"

namespace loom {

RandomTokenBatches::RandomTokenBatches(std::vector<std::int64_t> allowed, std::int64_t rows,
                                       std::int64_t seq_len, std::int64_t accumulation,
                                       std::uint64_t seed)
    : rows_(rows), seq_len_(seq_len), accumulation_(accumulation), seed_(seed) {
  if (allowed.empty()) throw UserError("random batches: no token id to draw from");
  if (rows < 1 || seq_len < 1 || accumulation < 1)
    throw UserError("random batches: rows, sequence length and accumulation must be >= 1");
  allowed_ = torch::tensor(allowed, torch::kLong);
  segments_ = torch::ones({rows, seq_len}, torch::kLong);
  positions_ = torch::arange(seq_len, torch::kLong).unsqueeze(0).expand({rows, seq_len}).contiguous();
}

std::int64_t RandomTokenBatches::windows_per_epoch() const {
  return std::numeric_limits<std::int64_t>::max();
}

std::vector<sdk::Batch> RandomTokenBatches::window(std::int64_t step) const {
  std::vector<sdk::Batch> out;
  out.reserve(static_cast<std::size_t>(accumulation_));
  for (std::int64_t m = 0; m < accumulation_; ++m) {
    auto gen = at::detail::createCPUGenerator(seed_ * 1000003ULL + std::uint64_t(step * accumulation_ + m));
    auto pick = torch::randint(allowed_.size(0), {rows_, seq_len_}, gen, torch::kLong);
    sdk::Batch b;
    b.input_ids = allowed_.index_select(0, pick.reshape({-1})).view({rows_, seq_len_});
    b.labels = b.input_ids;
    b.segment_ids = segments_;
    b.position_ids = positions_;
    b.sample_index = torch::arange((step * accumulation_ + m) * rows_,
                                   (step * accumulation_ + m + 1) * rows_, torch::kLong);
    out.push_back(std::move(b));
  }
  return out;
}

}  // namespace loom
