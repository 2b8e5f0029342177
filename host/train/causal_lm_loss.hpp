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

// The window totals of a set of micro-batches (after batch transforms).
sdk::WindowTotals window_totals(const std::vector<sdk::Batch>& batches);

}  // namespace loom
