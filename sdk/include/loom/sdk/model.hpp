// What a plugin sees of the model: an attention specification it may choose, the forward
// output handed to the loss hook, and a handle for hooks that change or run the model.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace loom::sdk {

// How tokens may attend. The host always keeps attention inside a token's own packed
// segment and never onto padding (segment id 0) for Causal and Bidirectional. Explicit
// masks are used as given: [B, 1, S, S] bool, true = may attend. A row with no allowed key
// (a padding query) is handled by the host without producing NaN.
struct AttentionSpec {
  enum class Kind { Causal, Bidirectional, Explicit };
  Kind kind = Kind::Causal;
  at::Tensor mask;  // only for Explicit: [B or 1, 1, S, S] bool, true = may attend (else an error)

  static AttentionSpec causal() { return {Kind::Causal, {}}; }
  static AttentionSpec bidirectional() { return {Kind::Bidirectional, {}}; }
  static AttentionSpec explicit_mask(at::Tensor m) { return {Kind::Explicit, std::move(m)}; }
};

// The model's forward output. Vocabulary logits are not computed by the forward pass: the
// objective asks for them only where it needs them, so a [B, S, V] tensor is never built
// unless a hook wants it.
struct ModelOutput {
  at::Tensor hidden;  // [B, S, H] final hidden states, after the last RMSNorm
  // Projects hidden states [N, H] (any leading shape) to vocabulary logits [N, V] through the
  // output matrix (lm_head, or the embedding when tied). Differentiable.
  std::function<at::Tensor(const at::Tensor&)> project;

  // Logits at the positions where `where` ([B, S] bool) is true, in row-major order: [N, V].
  at::Tensor logits_where(const at::Tensor& where) const;
};

// Host-side model operations that plugins may call (on_model_loaded, sampling).
class ModelHandle {
 public:
  virtual ~ModelHandle() = default;
  virtual std::int64_t vocab_size() const = 0;
  virtual std::int64_t hidden_size() const = 0;
  virtual std::int64_t max_position_embeddings() const = 0;
  // Grows the embedding and output matrices to `new_vocab_size` rows; new rows are initialised
  // to the mean of the existing rows (so new tokens start as an "average" token), and are saved
  // with every checkpoint.
  virtual void resize_vocab(std::int64_t new_vocab_size) = 0;
  // Runs the model. position_ids may be undefined (0..S-1 per row is used then), segment_ids
  // may be undefined (one segment, no padding).
  virtual ModelOutput forward(const at::Tensor& input_ids, const at::Tensor& position_ids,
                              const at::Tensor& segment_ids, const AttentionSpec& attention) = 0;
  virtual at::Device device() const = 0;
  virtual void set_training(bool training) = 0;
  virtual bool is_training() const = 0;

  // SDK 1.1 (appended, so plugins built for 1.0 keep working). Per-row cross-entropy of
  // hidden rows [N, H] projected through the output matrix, against targets [N] (int64):
  // [N] fp32 (fp64 for fp64 hidden), differentiable like ModelOutput::project, equal to
  // logsumexp(project(h)) - project(h)[target] but computed without the [N, V] tensors the
  // composite keeps (docs/performance.md). With `argmax`, also each row's most likely id [N].
  // A handle without such a path returns an undefined tensor; call sdk::cross_entropy_where,
  // which then goes through project().
  virtual at::Tensor cross_entropy(const at::Tensor& /*hidden*/, const at::Tensor& /*targets*/,
                                   at::Tensor* /*argmax*/) {
    return {};
  }
};

// SDK 1.1. Cross-entropy of the output logits at the positions where `where` ([B, S] bool) is
// true (row-major order) against `targets` [N]: through model->cross_entropy when `model` (for
// a loss hook: StepContext::model) has a fused path, else log-softmax of out.project's logits.
inline at::Tensor cross_entropy_where(const ModelOutput& out, ModelHandle* model,
                                      const at::Tensor& where,
                               const at::Tensor& targets, at::Tensor* argmax = nullptr);

}  // namespace loom::sdk

// Defined inline here so plugins need no host library.
#include <ATen/ATen.h>
inline at::Tensor loom::sdk::ModelOutput::logits_where(const at::Tensor& where) const {
  auto flat = hidden.reshape({-1, hidden.size(-1)});
  auto idx = where.reshape({-1}).nonzero().squeeze(1);
  return project(flat.index_select(0, idx));
}

inline at::Tensor loom::sdk::cross_entropy_where(const ModelOutput& out, ModelHandle* model,
                                                const at::Tensor& where, const at::Tensor& targets,
                                                at::Tensor* argmax) {
  auto t = targets.to(at::kLong);
  if (model) {
    auto flat = out.hidden.reshape({-1, out.hidden.size(-1)});
    auto idx = where.reshape({-1}).nonzero().squeeze(1);
    auto ce = model->cross_entropy(flat.index_select(0, idx), t, argmax);
    if (ce.defined()) return ce;
  }
  auto logits = out.logits_where(where);
  logits = logits.to(logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  if (argmax) *argmax = logits.detach().argmax(-1);
  return (at::logsumexp(logits, -1, true) - logits.gather(1, t.unsqueeze(1))).squeeze(1);
}
