#include "data/data_loader.hpp"

#include <torch/torch.h>

#include <numeric>
#include <random>

namespace loom {

DataLoader::DataLoader(PackedRows rows, LoaderShape shape, std::uint64_t seed)
    : rows_(std::move(rows)), shape_(shape), seed_(seed) {}

std::int64_t DataLoader::windows_per_epoch() const {
  const std::int64_t global = shape_.micro_batch_size * shape_.accumulation_steps * shape_.world_size;
  return rows() / global;
}

const std::vector<std::int64_t>& DataLoader::epoch_order(std::int64_t epoch) const {
  if (epoch != cached_epoch_) {
    order_.resize(rows());
    std::iota(order_.begin(), order_.end(), 0);
    // std::mt19937_64 and the Fisher-Yates below are fully specified, so the order is the same
    // with every standard library.
    std::mt19937_64 rng(seed_ * 0x9E3779B97F4A7C15ULL + std::uint64_t(epoch) + 1);
    for (std::int64_t i = rows() - 1; i > 0; --i) {
      std::int64_t j = std::int64_t(rng() % std::uint64_t(i + 1));
      std::swap(order_[i], order_[j]);
    }
    cached_epoch_ = epoch;
  }
  return order_;
}

std::vector<sdk::Batch> DataLoader::window(std::int64_t step) const {
  const std::int64_t per_epoch = windows_per_epoch();
  const std::int64_t epoch = step / per_epoch, w = step % per_epoch;
  const auto& order = epoch_order(epoch);
  const std::int64_t per_rank = shape_.micro_batch_size * shape_.accumulation_steps;
  const std::int64_t global = per_rank * shape_.world_size;
  std::vector<sdk::Batch> out;
  for (std::int64_t m = 0; m < shape_.accumulation_steps; ++m) {
    std::vector<std::int64_t> rows, index;
    for (std::int64_t i = 0; i < shape_.micro_batch_size; ++i) {
      const std::int64_t pos = w * global + shape_.rank * per_rank + m * shape_.micro_batch_size + i;
      rows.push_back(order[pos]);
      index.push_back(epoch * this->rows() + pos);
    }
    out.push_back(gather(rows, index));
  }
  return out;
}

std::vector<sdk::Batch> DataLoader::sequential_batches() const {
  std::vector<sdk::Batch> out;
  std::int64_t b = 0;
  for (std::int64_t start = 0; start < rows(); start += shape_.micro_batch_size, ++b) {
    if (b % shape_.world_size != shape_.rank) continue;
    std::vector<std::int64_t> rows;
    for (std::int64_t r = start; r < std::min(this->rows(), start + shape_.micro_batch_size); ++r)
      rows.push_back(r);
    out.push_back(gather(rows, rows));
  }
  return out;
}

sdk::Batch DataLoader::gather(const std::vector<std::int64_t>& rows,
                              const std::vector<std::int64_t>& sample_index) const {
  const std::int64_t B = std::int64_t(rows.size()), S = rows_.seq_len;
  auto take = [&](const std::vector<std::int64_t>& src) {
    auto t = torch::empty({B, S}, torch::kLong);
    auto* dst = t.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < B; ++i)
      std::copy_n(src.data() + rows[i] * S, S, dst + i * S);
    return t;
  };
  sdk::Batch b;
  b.input_ids = take(rows_.ids);
  b.labels = take(rows_.labels);
  b.segment_ids = take(rows_.segments);
  b.position_ids = take(rows_.positions);
  b.sample_index = torch::tensor(sample_index, torch::kLong);
  return b;
}

}  // namespace loom
