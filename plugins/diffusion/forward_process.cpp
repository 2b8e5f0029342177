#include "forward_process.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

#include "keyed_random.hpp"

namespace loom::diffusion {

namespace {

constexpr double kGoldenFraction = 0.6180339887498949;

std::uint64_t stream_of(const DrawKind& kind) {
  return static_cast<std::uint64_t>(kind.training ? RandomStream::TrainMask
                                                  : RandomStream::EvalMask);
}

// [B, S] int64 on the CPU, contiguous; `fallback` when undefined.
at::Tensor cpu_long(const at::Tensor& t, const at::Tensor& fallback) {
  if (!t.defined()) return fallback;
  return t.to(at::kCPU, at::kLong).contiguous();
}

}  // namespace

ForwardProcess::ForwardProcess(ForwardProcessOptions options, std::vector<bool> excluded)
    : options_(std::move(options)), excluded_(std::move(excluded)) {
  if (options_.mask_token_id < 0)
    throw std::invalid_argument("diffusion forward process: the mask token id is not resolved");
}

bool ForwardProcess::is_excluded(std::int64_t id) const {
  if (id < 0 || id >= static_cast<std::int64_t>(excluded_.size()))
    throw std::out_of_range("diffusion: token id " + std::to_string(id) +
                            " is outside the vocabulary (" + std::to_string(excluded_.size()) +
                            " ids)");
  return excluded_[static_cast<std::size_t>(id)];
}

std::vector<double> ForwardProcess::stratified_row_times(const at::Tensor& sample_index,
                                                         const DrawKind& kind) const {
  const auto B = static_cast<std::size_t>(sample_index.size(0));
  auto idx = sample_index.accessor<std::int64_t, 1>();
  // Rows in sample-index order, so the row order inside the batch does not matter.
  std::vector<std::size_t> order(B);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return idx[a] < idx[b]; });
  // Seeded Fisher-Yates permutation of the strata, keyed by the batch's first row.
  const auto first = B > 0 ? static_cast<std::uint64_t>(idx[order[0]]) : 0;
  KeyedRandom shuffle{options_.seed,   static_cast<std::uint64_t>(RandomStream::StratumOrder),
                      stream_of(kind), static_cast<std::uint64_t>(kind.repeat),
                      first,           B};
  std::vector<std::size_t> stratum(B);
  std::iota(stratum.begin(), stratum.end(), 0);
  for (std::size_t i = B; i > 1; --i) std::swap(stratum[i - 1], stratum[shuffle.below(i, i)]);
  std::vector<double> t(B);
  for (std::size_t r = 0; r < B; ++r) {
    const std::size_t row = order[r];
    KeyedRandom jitter{options_.seed, stream_of(kind), static_cast<std::uint64_t>(idx[row]),
                       static_cast<std::uint64_t>(kind.repeat), 0};
    t[row] = (static_cast<double>(stratum[r]) + jitter.uniform(0)) / static_cast<double>(B);
  }
  return t;
}

double ForwardProcess::document_time(std::int64_t sample_index, std::int64_t segment_id,
                                     double row_time, const DrawKind& kind) const {
  if (row_time >= 0) {
    const double t = row_time + static_cast<double>(segment_id - 1) * kGoldenFraction;
    return t - std::floor(t);
  }
  KeyedRandom doc{options_.seed, stream_of(kind), static_cast<std::uint64_t>(sample_index),
                  static_cast<std::uint64_t>(kind.repeat), static_cast<std::uint64_t>(segment_id)};
  return doc.uniform(0);
}

void ForwardProcess::apply(sdk::Batch& batch, const DrawKind& kind) const {
  if (!batch.input_ids.defined() || batch.input_ids.dim() != 2)
    throw std::invalid_argument("diffusion: batch.input_ids must be [B, S]");
  const at::Device device = batch.input_ids.device();
  at::Tensor ids = batch.input_ids.to(at::kCPU, at::kLong).contiguous();  // [B, S]
  const std::int64_t B = ids.size(0), S = ids.size(1);
  at::Tensor labels = cpu_long(batch.labels, ids).clone();                        // [B, S]
  at::Tensor segments = cpu_long(batch.segment_ids, at::ones_like(ids)).clone();  // [B, S]
  // Without sample indices (hosts must set them) rows fall back to their batch position.
  at::Tensor index = batch.sample_index.defined()
                         ? batch.sample_index.to(at::kCPU, at::kLong).contiguous()
                         : at::arange(B, at::kLong);  // [B]

  at::Tensor noisy = ids.clone();
  at::Tensor masked = at::zeros({B, S}, at::kBool);
  at::Tensor eligible = at::zeros({B, S}, at::kBool);
  at::Tensor p_mask = at::zeros({B, S}, at::kFloat);
  at::Tensor answer_len = at::zeros({B, S}, at::kFloat);

  auto id_a = ids.accessor<std::int64_t, 2>();
  auto lab_a = labels.accessor<std::int64_t, 2>();
  auto seg_a = segments.accessor<std::int64_t, 2>();
  auto idx_a = index.accessor<std::int64_t, 1>();
  auto noisy_a = noisy.accessor<std::int64_t, 2>();
  auto masked_a = masked.accessor<bool, 2>();
  auto elig_a = eligible.accessor<bool, 2>();
  auto p_a = p_mask.accessor<float, 2>();
  auto ans_a = answer_len.accessor<float, 2>();
  bool cut_any = false;
  const std::vector<double> row_time = options_.t_sampling == TSampling::Stratified
                                           ? stratified_row_times(index, kind)
                                           : std::vector<double>(static_cast<std::size_t>(B), -1.0);

  for (std::int64_t b = 0; b < B; ++b) {
    const std::int64_t si = idx_a[b];
    if (si < 0) throw std::invalid_argument("diffusion: negative sample_index");

    // LLaDA's random length: the tail of the row becomes padding.
    if (kind.training && options_.random_length_prob > 0.0) {
      KeyedRandom cut{options_.seed, static_cast<std::uint64_t>(RandomStream::LengthCut),
                      static_cast<std::uint64_t>(si)};
      if (cut.uniform(0) < options_.random_length_prob) {
        const std::int64_t keep = 1 + static_cast<std::int64_t>(cut.below(1, S));
        for (std::int64_t s = keep; s < S; ++s) {
          seg_a[b][s] = 0;
          lab_a[b][s] = sdk::kIgnoreIndex;
        }
        cut_any = true;
      }
    }

    // Walk the row's documents: maximal runs of one non-zero segment id.
    std::int64_t start = 0;
    while (start < S) {
      const std::int64_t sid = seg_a[b][start];
      std::int64_t end = start + 1;
      while (end < S && seg_a[b][end] == sid) ++end;
      if (sid != 0) {
        const double p = (kind.training ? options_.schedule : options_.eval_schedule).mask_probability(
            document_time(si, sid, row_time[static_cast<std::size_t>(b)], kind));
        KeyedRandom draw{options_.seed, stream_of(kind), static_cast<std::uint64_t>(si),
                         static_cast<std::uint64_t>(kind.repeat), static_cast<std::uint64_t>(sid)};
        bool instruction = false;
        std::int64_t eligible_count = 0;
        for (std::int64_t s = start; s < end; ++s) {
          const bool special = is_excluded(id_a[b][s]);
          const bool has_label = lab_a[b][s] != sdk::kIgnoreIndex;
          if (!has_label && !special) instruction = true;
          const bool ok = has_label && !special && !(options_.logit_shift && s == start);
          p_a[b][s] = static_cast<float>(p);
          if (!ok) continue;
          elig_a[b][s] = true;
          ++eligible_count;
          if (draw.uniform(1 + static_cast<std::uint64_t>(s)) < p) {
            masked_a[b][s] = true;
            noisy_a[b][s] = options_.mask_token_id;
          }
        }
        if (instruction)
          for (std::int64_t s = start; s < end; ++s)
            ans_a[b][s] = static_cast<float>(eligible_count);
      }
      start = end;
    }
  }

  batch.extras[kTargetsKey] = batch.input_ids.to(at::kLong).clone();
  batch.input_ids = noisy.to(device);
  batch.extras[kMaskedKey] = masked.to(device);
  batch.extras[kEligibleKey] = eligible.to(device);
  batch.extras[kPMaskKey] = p_mask.to(device);
  batch.extras[kAnswerLenKey] = answer_len.to(device);
  if (cut_any) {
    batch.segment_ids = segments.to(device);
    batch.labels = labels.to(device);
  }
}

}  // namespace loom::diffusion
