#include "model/kv_cache.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace loom {
namespace {

// A [B, S] integer tensor as a row-major vector (one device-to-host copy).
std::vector<std::int64_t> to_vector(const at::Tensor& t) {
  auto c = t.to(at::kCPU, at::kLong).contiguous();
  const std::int64_t* p = c.data_ptr<std::int64_t>();
  return std::vector<std::int64_t>(p, p + c.numel());
}

}  // namespace

LlamaKeyValueCache::LlamaKeyValueCache(std::uint64_t owner, std::int64_t batch,
                                       std::int64_t seq_len, const at::Tensor& position_ids,
                                       const at::Tensor& segment_ids)
    : owner_(owner), batch_(batch), seq_len_(seq_len) {
  const auto n = std::size_t(batch * seq_len);
  if (position_ids.defined()) {
    positions_ = to_vector(position_ids);
  } else {
    positions_.resize(n);
    for (std::size_t i = 0; i < n; ++i) positions_[i] = std::int64_t(i) % seq_len;
  }
  segments_ = segment_ids.defined() ? to_vector(segment_ids) : std::vector<std::int64_t>(n, 1);
}

CachedRowPlan LlamaKeyValueCache::plan_row(std::int64_t row,
                                           const std::vector<std::int64_t>& positions) const {
  CachedRowPlan plan;
  const std::int64_t* seg = segments_.data() + row * seq_len_;
  // The range: every key of the queries' segments, and a padding query itself.
  std::int64_t lo = seq_len_, hi = 0;
  std::vector<std::int64_t> wanted;  // the queries' segments (few: usually one)
  for (auto p : positions) {
    plan.rope_positions.push_back(position_id(row, p));
    if (seg[p] == 0) {
      lo = std::min(lo, p), hi = std::max(hi, p + 1);
    } else if (std::find(wanted.begin(), wanted.end(), seg[p]) == wanted.end()) {
      wanted.push_back(seg[p]);
    }
  }
  for (std::int64_t j = 0; j < seq_len_; ++j)
    if (seg[j] != 0 && std::find(wanted.begin(), wanted.end(), seg[j]) != wanted.end())
      lo = std::min(lo, j), hi = std::max(hi, j + 1);
  plan.key_begin = lo;
  plan.key_end = hi;

  // The mask over the range; none when it allows everything: every query in one segment that
  // fills the range (checked in O(L) first -- the usual case -- so no [n, L] mask is built).
  const auto n = std::int64_t(positions.size()), L = hi - lo;
  if (wanted.size() == 1 && std::all_of(positions.begin(), positions.end(),
                                        [&](std::int64_t p) { return seg[p] == wanted[0]; })) {
    bool whole = true;
    for (std::int64_t j = lo; j < hi && whole; ++j) whole = seg[j] == wanted[0];
    if (whole) return plan;
  }
  auto bias = at::zeros({n, L}, at::kFloat);
  float* b = bias.data_ptr<float>();
  bool masked = false;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t p = positions[std::size_t(i)];
    for (std::int64_t j = 0; j < L; ++j) {
      const std::int64_t key = lo + j;
      const bool allowed = seg[p] == 0 ? key == p : seg[key] == seg[p];
      if (!allowed) b[i * L + j] = -std::numeric_limits<float>::infinity(), masked = true;
    }
  }
  if (masked) plan.bias = bias;
  return plan;
}

}  // namespace loom
