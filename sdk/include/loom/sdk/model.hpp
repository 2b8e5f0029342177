// What a plugin sees of the model: an attention specification it may choose, the forward
// output handed to the loss hook, and a handle for hooks that change or run the model.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "loom/sdk/version.hpp"

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

#if LOOM_SDK_TARGET_MINOR >= 3
// SDK 1.3. Every layer's keys and values from one bidirectional forward pass
// (ModelHandle::forward_caching), kept so that later passes recompute only some positions
// (ModelHandle::forward_cached). Made, held and updated by the host; plugins only hold it.
class KeyValueCache {
 public:
  virtual ~KeyValueCache() = default;
  virtual std::int64_t batch_size() const = 0;
  virtual std::int64_t sequence_length() const = 0;
};
#endif

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

#if LOOM_SDK_TARGET_MINOR >= 1
  // SDK 1.1. Per-row cross-entropy of hidden rows [N, H] projected through the output matrix,
  // against targets [N] (int64): [N] fp32 (fp64 for fp64 hidden), differentiable like
  // ModelOutput::project, equal to logsumexp(project(h)) - project(h)[target] but computed
  // without the [N, V] tensors the composite keeps (docs/performance.md). With `argmax`, also
  // each row's most likely id [N]. A handle without such a path returns an undefined tensor;
  // call sdk::cross_entropy_where, which then goes through project().
  virtual at::Tensor cross_entropy(const at::Tensor& /*hidden*/, const at::Tensor& /*targets*/,
                                   at::Tensor* /*argmax*/) {
    return {};
  }
#endif
#if LOOM_SDK_TARGET_MINOR >= 2
  // SDK 1.2. cross_entropy with the ids in `exclude_ids` ([K] int64) left out of the softmax:
  // their logits count as -inf (as MDLM's SUBS parameterisation does for the mask token), so
  // they get no probability, are never the argmax and get no gradient. A target may not be
  // excluded. Undefined tensor when the handle has no fused path.
  virtual at::Tensor cross_entropy_excluding(const at::Tensor& /*hidden*/,
                                             const at::Tensor& /*targets*/,
                                             const at::Tensor& /*exclude_ids*/,
                                             at::Tensor* /*argmax*/) {
    return {};
  }
  // SDK 1.2. The model's parameters under their names in model.safetensors, in that file's
  // order (a tied output matrix appears once, as model.embed_tokens.weight): the live
  // tensors, detached, on the model's device. Read them (copy them for an EMA, say); do not
  // change them in place.
  virtual std::vector<std::pair<std::string, at::Tensor>> named_parameters() { return {}; }
  // SDK 1.2. Writes `tensors` to a safetensors file with the host's writer (CPU copies, the
  // tensors' dtypes kept; the file appears complete or not at all). In on_save, write into the
  // folder the hook is given: the file is then part of that checkpoint.
  virtual void save_tensors(const std::string& /*file*/,
                            const std::vector<std::pair<std::string, at::Tensor>>& /*tensors*/) {
    throw std::logic_error("this model handle cannot write tensor files");
  }
  // SDK 1.2. Reads every tensor of a safetensors file (CPU tensors, stored dtypes), e.g. in
  // on_load what on_save wrote. Throws with the file's name when it is missing or malformed.
  virtual std::map<std::string, at::Tensor> load_tensors(const std::string& /*file*/) {
    throw std::logic_error("this model handle cannot read tensor files");
  }
#endif
#if LOOM_SDK_TARGET_MINOR >= 3
  // SDK 1.3. forward(input_ids, position_ids, segment_ids, AttentionSpec::bidirectional())
  // that also keeps every layer's keys and values, for forward_cached. `*out` receives the
  // forward's output. A handle without a cache returns nullptr (and leaves *out alone): call
  // forward() then. A row's results do not depend on the other rows or on its padding (the
  // host's handle, on the CPU in fp32: nor on the thread count), also in forward_cached.
  virtual std::unique_ptr<KeyValueCache> forward_caching(const at::Tensor& /*input_ids*/,
                                                         const at::Tensor& /*position_ids*/,
                                                         const at::Tensor& /*segment_ids*/,
                                                         ModelOutput* /*out*/) {
    return nullptr;
  }
  // SDK 1.3. Runs only the positions `positions` ([B, Q] int64, indexes into the cached rows;
  // -1 marks an unused slot, for rows with fewer positions) holding the tokens `input_ids`
  // ([B, Q]). In every layer, their keys and values are computed and written into `cache` at
  // those positions, and their queries attend bidirectionally to all of their row's cached
  // keys (segments and padding as in the pass that made the cache). Returns hidden [B, Q, H]
  // (unused slots hold unspecified values) and project.
  // Exact (equal to forward() at those positions, to float tolerance) when no token changed
  // since the cache was made. When tokens changed, the other positions' keys and values in
  // every layer above the embedding are those of the pass that made the cache -- the
  // approximation of Fast-dLLM's prefix and dual caches.
  virtual ModelOutput forward_cached(KeyValueCache& /*cache*/, const at::Tensor& /*input_ids*/,
                                     const at::Tensor& /*positions*/) {
    throw std::logic_error("this model handle has no key/value cache");
  }
#endif
#if LOOM_SDK_TARGET_MINOR >= 4
  // SDK 1.4. What the loaded checkpoint says about itself, so that an objective takes from the
  // model what the model fixes (a plugin's own config keys should still win).
  // The layout's model_type as config.json spells it ("llama", "qwen2", "qwen3", "Dream",
  // "llada"; "llama" too for a model built from scratch, which is saved in that layout); empty
  // when the handle does not know.
  virtual std::string model_type() const { return {}; }
  // true when the logits at position i predict the token at i + 1 (Dream), false when they
  // predict the token at i (LLaDA); nullopt when the layout does not fix it (autoregressive
  // checkpoints, which an objective may or may not have converted).
  virtual std::optional<bool> predicts_next_token() const { return std::nullopt; }
  // The mask token id the model was trained with (LLaDA-8B: 126336; Dream's mask_token_id),
  // or nullopt when the layout has none.
  virtual std::optional<std::int64_t> native_mask_token_id() const { return std::nullopt; }
#endif
};

#if LOOM_SDK_TARGET_MINOR >= 1
// SDK 1.1. Cross-entropy of the output logits at the positions where `where` ([B, S] bool) is
// true (row-major order) against `targets` [N]: through model->cross_entropy when `model` (for
// a loss hook: StepContext::model) has a fused path, else log-softmax of out.project's logits.
inline at::Tensor cross_entropy_where(const ModelOutput& out, ModelHandle* model,
                                      const at::Tensor& where, const at::Tensor& targets,
                                      at::Tensor* argmax = nullptr);
#endif
#if LOOM_SDK_TARGET_MINOR >= 2
// SDK 1.2. The same with the ids in `exclude_ids` ([K] int64; undefined = none) left out of the
// softmax (see ModelHandle::cross_entropy_excluding); the fused path is kept.
inline at::Tensor cross_entropy_where(const ModelOutput& out, ModelHandle* model,
                                      const at::Tensor& where, const at::Tensor& targets,
                                      at::Tensor* argmax, const at::Tensor& exclude_ids);
#endif

}  // namespace loom::sdk

// Defined inline here so plugins need no host library.
#include <ATen/ATen.h>
inline at::Tensor loom::sdk::ModelOutput::logits_where(const at::Tensor& where) const {
  auto flat = hidden.reshape({-1, hidden.size(-1)});
  auto idx = where.reshape({-1}).nonzero().squeeze(1);
  return project(flat.index_select(0, idx));
}

#if LOOM_SDK_TARGET_MINOR >= 1
namespace loom::sdk::detail {
// cross_entropy_where's one body; `exclude_ids` undefined = none (and always none for 1.1).
inline at::Tensor cross_entropy_where(const ModelOutput& out, ModelHandle* model, const at::Tensor& where,
                                      const at::Tensor& targets, at::Tensor* argmax,
                                      const at::Tensor& exclude_ids) {
  auto t = targets.to(at::kLong);
  const bool excluding = exclude_ids.defined() && exclude_ids.numel() > 0;
  auto ex = excluding ? exclude_ids.to(out.hidden.device(), at::kLong).reshape({-1}) : at::Tensor();
  if (model) {
    auto flat = out.hidden.reshape({-1, out.hidden.size(-1)});
    auto rows = flat.index_select(0, where.reshape({-1}).nonzero().squeeze(1));
#if LOOM_SDK_TARGET_MINOR >= 2
    auto ce = excluding ? model->cross_entropy_excluding(rows, t, ex, argmax) : model->cross_entropy(rows, t, argmax);
#else
    auto ce = model->cross_entropy(rows, t, argmax);
#endif
    if (ce.defined()) return ce;
  }
  auto logits = out.logits_where(where);
  logits = logits.to(logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  if (excluding) {
    if (t.numel() > 0 && at::isin(t, ex).any().item<bool>())
      throw std::invalid_argument("cross_entropy_where: a target id is among the excluded ids");
    logits = logits.index_fill(1, ex, -std::numeric_limits<double>::infinity());
  }
  if (argmax) *argmax = logits.detach().argmax(-1);
  return (at::logsumexp(logits, -1, true) - logits.gather(1, t.unsqueeze(1))).squeeze(1);
}
}  // namespace loom::sdk::detail

inline at::Tensor loom::sdk::cross_entropy_where(const ModelOutput& out, ModelHandle* model,
                                                const at::Tensor& where, const at::Tensor& targets,
                                                at::Tensor* argmax) {
  return detail::cross_entropy_where(out, model, where, targets, argmax, at::Tensor());
}
#endif

#if LOOM_SDK_TARGET_MINOR >= 2
inline at::Tensor loom::sdk::cross_entropy_where(const ModelOutput& out, ModelHandle* model,
                                                const at::Tensor& where, const at::Tensor& targets,
                                                at::Tensor* argmax, const at::Tensor& exclude_ids) {
  return detail::cross_entropy_where(out, model, where, targets, argmax, exclude_ids);
}
#endif
