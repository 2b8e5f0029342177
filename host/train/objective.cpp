#include "train/objective.hpp"

#include "plugins/plugin_set.hpp"
#include "train/autocast_guard.hpp"
#include "train/causal_lm_loss.hpp"

namespace loom {

void transform_window(PluginSet& plugins, std::vector<sdk::Batch>& window, sdk::StepContext& ctx) {
  for (std::size_t i = 0; i < window.size(); ++i) {
    ctx.micro_step = std::int64_t(i);
    plugins.transform_batch(window[i], ctx);
  }
  ctx.window = window_totals(window);
}

sdk::LossResult forward_and_loss(PluginSet& plugins, sdk::ModelHandle& model, const sdk::Batch& batch,
                                 const sdk::StepContext& ctx, Precision precision,
                                 const std::function<void()>& after_forward) {
  AutocastGuard autocast(precision.bf16, precision.cuda);
  const sdk::AttentionSpec attention = plugins.attention(batch, ctx);
  const sdk::ModelOutput out = model.forward(batch.input_ids, batch.position_ids, batch.segment_ids, attention);
  if (after_forward) after_forward();
  return plugins.owns_loss() ? plugins.loss(out, batch, ctx) : causal_lm_loss(out, batch, ctx);
}

sdk::LossResult evaluate_batch(PluginSet& plugins, sdk::ModelHandle& model, sdk::Batch& batch,
                               sdk::StepContext& ctx, Precision precision) {
  plugins.transform_batch(batch, ctx);
  ctx.window = window_totals({batch});
  return forward_and_loss(plugins, model, batch, ctx, precision);
}

}  // namespace loom
