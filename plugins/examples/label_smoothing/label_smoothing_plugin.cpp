// Example objective plugin: causal language modelling with label smoothing.
//
// The loss at each target is (1 - eps) * CE(target) + eps * mean over the vocabulary of
// -log p(v), i.e. cross-entropy against a target distribution that keeps 1 - eps on the true
// token and spreads eps uniformly (Szegedy et al. 2016; transformers' label_smoothing_factor).
// It shows the parts of the SDK most objectives need: a config table, the loss hook with
// logits computed only at the scored positions, window normalisation, and metrics.
#include <loom/sdk.hpp>
#include <torch/torch.h>

namespace {

using namespace loom::sdk;

class LabelSmoothingPlugin : public Plugin {
 public:
  PluginInfo info() const override {
    return {"label_smoothing", "1.0", "causal LM with label-smoothed cross-entropy"};
  }

  std::vector<ConfigKey> config_schema() const override {
    return {key_float("epsilon", 0.1, "share of probability spread over the vocabulary", 0.0, 1.0)};
  }

  void configure(const ConfigSection& section, const RunInfo&) override {
    epsilon_ = section.get_float("epsilon");
  }

  bool owns_loss() const override { return true; }

  LossResult loss(const ModelOutput& out, const Batch& batch, const StepContext& ctx) override {
    // Position i predicts label i+1 when both are in the same packed segment.
    auto seg = batch.segment_ids;
    auto here = seg.slice(1, 0, -1), next = seg.slice(1, 1);
    auto targets_all = batch.labels.slice(1, 1);
    auto where = targets_all.ne(kIgnoreIndex).logical_and(next.eq(here)).logical_and(here.gt(0));
    auto targets = targets_all.masked_select(where);  // [N]
    if (targets.numel() == 0) return {out.hidden.sum() * 0.0, {}};

    auto hidden = out.hidden.slice(1, 0, -1);
    auto rows = where.reshape({-1}).nonzero().squeeze(1);
    auto logits = out.project(hidden.reshape({-1, hidden.size(-1)}).index_select(0, rows)).to(torch::kFloat);
    auto logp = torch::log_softmax(logits, -1);                        // [N, V]
    auto nll = -logp.gather(1, targets.unsqueeze(1)).squeeze(1);        // [N]
    auto uniform = -logp.mean(-1);                                      // [N]
    auto per_token = (1.0 - epsilon_) * nll + epsilon_ * uniform;

    // Divide by the window's target count so gradient accumulation equals one big batch.
    const double denom = double(std::max<std::int64_t>(1, ctx.window.next_token_targets));
    LossResult r{per_token.sum() / denom, {}};
    torch::NoGradGuard no_grad;
    r.metrics["ce_loss"] = nll.mean().item<double>();
    r.metrics["accuracy"] = logits.argmax(-1).eq(targets).to(torch::kFloat).mean().item<double>();
    return r;
  }

 private:
  double epsilon_ = 0.1;
};

}  // namespace

LOOM_PLUGIN(LabelSmoothingPlugin, "label_smoothing")
