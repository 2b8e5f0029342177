// The host's sdk::KeyValueCache: every layer's keys and values from one bidirectional pass
// (LlamaModelHandle::forward_caching), updated in place by forward_cached. Besides the
// tensors it keeps CPU copies of the rows' position and segment ids, so that planning a
// cached pass (RoPE positions, which keys a query may see) needs no device round trip per
// layer.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "loom/sdk/model.hpp"

namespace loom {

// What one row of a forward_cached call attends to: keys [key_begin, key_end) of the row,
// with `bias` masking those a query may not see.
struct CachedRowPlan {
  std::int64_t key_begin = 0, key_end = 0;
  std::vector<std::int64_t> rope_positions;  // each query's position id, for RoPE
  at::Tensor bias;  // [n, key_end - key_begin] float CPU, 0 = may attend, -inf = may not;
                    // undefined when every query may see every key of the range
};

class LlamaKeyValueCache : public sdk::KeyValueCache {
 public:
  // position_ids / segment_ids: [B, S] or undefined (0..S-1; one segment, no padding), any
  // device. `owner` identifies the handle that made the cache (forward_cached refuses others).
  LlamaKeyValueCache(std::uint64_t owner, std::int64_t batch, std::int64_t seq_len,
                     const at::Tensor& position_ids, const at::Tensor& segment_ids);

  std::int64_t batch_size() const override { return batch_; }
  std::int64_t sequence_length() const override { return seq_len_; }
  std::uint64_t owner() const { return owner_; }
  std::int64_t segment(std::int64_t row, std::int64_t pos) const {
    return segments_[std::size_t(row * seq_len_ + pos)];
  }
  std::int64_t position_id(std::int64_t row, std::int64_t pos) const {
    return positions_[std::size_t(row * seq_len_ + pos)];
  }

  // The keys the queries at `positions` (distinct, in [0, S)) of `row` may see, as the
  // forward pass's mask has it: their own segment, never padding; a padding query (segment 0)
  // sees only itself. The range is the smallest that covers them, so a row's plan does not
  // depend on the padding or the other rows around it.
  CachedRowPlan plan_row(std::int64_t row, const std::vector<std::int64_t>& positions) const;

  // Per layer [B, KV, S, D]: keys after RoPE and values, in the pass's dtype, on the model's
  // device. Padding positions hold their own keys and values (nothing else attends to them).
  std::vector<at::Tensor> keys, values;

 private:
  std::uint64_t owner_;
  std::int64_t batch_, seq_len_;
  std::vector<std::int64_t> positions_, segments_;  // [B * S], row-major
};

}  // namespace loom
