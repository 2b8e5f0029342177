// The objective on a micro-batch, written once for training, evaluation, `trainer eval` and
// `trainer bench` (which trains):
//   plugin batch transforms -> window totals -> attention (the owner's, else causal) -> forward
//   -> loss (the owner's, else the host's causal LM loss)
// Training transforms the whole accumulation window before any forward pass (the window's
// totals, summed over ranks, normalise every micro-batch's loss), so the phases are two
// functions; evaluation runs both on one batch (evaluate_batch).
#pragma once

#include <functional>
#include <vector>

#include "loom/sdk/batch.hpp"
#include "loom/sdk/context.hpp"
#include "loom/sdk/model.hpp"

namespace loom {

class PluginSet;

// Where and how the forward pass runs: bf16 autocast (on the CPU or CUDA).
struct Precision {
  bool bf16 = false;
  bool cuda = false;
};

// The plugins' batch transforms on every micro-batch of a window (ctx.micro_step set for each);
// then ctx.window holds the window's totals on this process.
void transform_window(PluginSet& plugins, std::vector<sdk::Batch>& window, sdk::StepContext& ctx);

// Attention, forward and loss of one transformed micro-batch under `precision`.
// `after_forward`, if given, runs between the forward pass and the loss (phase timing).
sdk::LossResult forward_and_loss(PluginSet& plugins, sdk::ModelHandle& model, const sdk::Batch& batch,
                                 const sdk::StepContext& ctx, Precision precision,
                                 const std::function<void()>& after_forward = {});

// Evaluation of one batch: transform, its own totals in ctx.window, forward and loss.
sdk::LossResult evaluate_batch(PluginSet& plugins, sdk::ModelHandle& model, sdk::Batch& batch,
                               sdk::StepContext& ctx, Precision precision);

}  // namespace loom
