// The host's own objective when no plugin owns the loss: next-token cross-entropy within each
// packed segment, normalised by the window's target count so accumulation equals one batch.
#pragma once

#include <torch/torch.h>

#include "loom/sdk/batch.hpp"
#include "loom/sdk/context.hpp"

namespace loom {

// [B, S-1] bool: position i predicts label i+1 (a real label in the same segment).
torch::Tensor next_token_targets(const torch::Tensor& labels, const torch::Tensor& segment_ids);

sdk::LossResult causal_lm_loss(const sdk::ModelOutput& out, const sdk::Batch& batch,
                               const sdk::StepContext& ctx);

// How much an evaluated micro-batch's loss counts in the eval average: the tokens the loss
// averaged over (sdk::kScoredTokensMetric, when the loss reports it), else the micro-batch's
// non-padding tokens for a plugin's loss and its next-token targets for the causal loss. The
// eval value is then the per-token average over the whole eval set, however it is batched.
double eval_weight(const sdk::LossResult& result, const sdk::StepContext& ctx, bool plugin_loss);

// The window totals of a set of micro-batches (after batch transforms).
sdk::WindowTotals window_totals(const std::vector<sdk::Batch>& batches);

}  // namespace loom
