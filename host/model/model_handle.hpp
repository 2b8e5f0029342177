// The model as plugins see it (sdk::ModelHandle) over the host's LlamaForCausalLM.
#pragma once

#include "loom/sdk/model.hpp"
#include "model/llama_model.hpp"

namespace loom {

class LlamaModelHandle : public sdk::ModelHandle {
 public:
  explicit LlamaModelHandle(LlamaForCausalLM model);

  std::int64_t vocab_size() const override { return model_->config().vocab_size; }
  std::int64_t hidden_size() const override { return model_->config().hidden_size; }
  std::int64_t max_position_embeddings() const override {
    return model_->config().max_position_embeddings;
  }
  void resize_vocab(std::int64_t new_vocab_size) override { model_->resize_vocab(new_vocab_size); }
  sdk::ModelOutput forward(const at::Tensor& input_ids, const at::Tensor& position_ids,
                           const at::Tensor& segment_ids,
                           const sdk::AttentionSpec& attention) override;
  at::Device device() const override;
  void set_training(bool training) override { model_->train(training); }
  bool is_training() const override { return model_->is_training(); }
  // The fused projection + cross-entropy (linear_cross_entropy) on the output matrix.
  at::Tensor cross_entropy(const at::Tensor& hidden, const at::Tensor& targets,
                           at::Tensor* argmax) override;
  at::Tensor cross_entropy_excluding(const at::Tensor& hidden, const at::Tensor& targets,
                                     const at::Tensor& exclude_ids, at::Tensor* argmax) override;
  // SDK 1.2: the checkpoint's names (named_weights: the layout's stored names), the host's
  // safetensors reader and writer.
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() override;
  void save_tensors(const std::string& file,
                    const std::vector<std::pair<std::string, at::Tensor>>& tensors) override;
  std::map<std::string, at::Tensor> load_tensors(const std::string& file) override;
  // SDK 1.3: LlamaForCausalLM::forward_caching / forward_cached over a LlamaKeyValueCache
  // (model/kv_cache.hpp); no autograd graph is built. forward_cached refuses a cache another
  // handle made.
  std::unique_ptr<sdk::KeyValueCache> forward_caching(const at::Tensor& input_ids,
                                                      const at::Tensor& position_ids,
                                                      const at::Tensor& segment_ids,
                                                      sdk::ModelOutput* out) override;
  sdk::ModelOutput forward_cached(sdk::KeyValueCache& cache, const at::Tensor& input_ids,
                                  const at::Tensor& positions) override;
  // SDK 1.4: from the checkpoint's layout (ModelConfig::model_type, mask_token_id): Dream
  // predicts the next token, LLaDA the token at the same position; other layouts do not say.
  std::string model_type() const override { return model_->config().model_type; }
  std::optional<bool> predicts_next_token() const override;
  std::optional<std::int64_t> native_mask_token_id() const override {
    return model_->config().mask_token_id;
  }

  LlamaForCausalLM& model() { return model_; }
  // Hidden rows sent through the output matrix so far (project() and cross_entropy()):
  // `trainer bench` counts the LM head's FLOPs with it.
  std::int64_t projected_rows() const { return projected_rows_; }

 private:
  // Hidden states with this handle's project() (row_invariant: LlamaForCausalLMImpl::project).
  sdk::ModelOutput output(at::Tensor hidden, bool row_invariant = false);

  LlamaForCausalLM model_;
  std::int64_t projected_rows_ = 0;
  // Tells this handle's caches from others' (an address could be reused by a later handle).
  std::uint64_t id_;
};

}  // namespace loom
