// A ModelHandle that forwards to another and times what goes through it: the forward pass,
// and the vocabulary projection / cross-entropy. `trainer generate --profile` hands it to the
// sampler in place of the model's own handle.
#pragma once

#include <chrono>
#include <cstdint>

#include "loom/sdk/model.hpp"

namespace loom {

class InstrumentedModelHandle : public sdk::ModelHandle {
 public:
  explicit InstrumentedModelHandle(sdk::ModelHandle& inner) : inner_(inner) {}

  std::int64_t vocab_size() const override { return inner_.vocab_size(); }
  std::int64_t hidden_size() const override { return inner_.hidden_size(); }
  std::int64_t max_position_embeddings() const override {
    return inner_.max_position_embeddings();
  }
  void resize_vocab(std::int64_t n) override { inner_.resize_vocab(n); }
  at::Device device() const override { return inner_.device(); }
  void set_training(bool training) override { inner_.set_training(training); }
  bool is_training() const override { return inner_.is_training(); }
  sdk::ModelOutput forward(const at::Tensor& input_ids, const at::Tensor& position_ids,
                           const at::Tensor& segment_ids,
                           const sdk::AttentionSpec& attention) override;
  at::Tensor cross_entropy(const at::Tensor& hidden, const at::Tensor& targets,
                           at::Tensor* argmax) override;
  at::Tensor cross_entropy_excluding(const at::Tensor& hidden, const at::Tensor& targets,
                                     const at::Tensor& exclude_ids, at::Tensor* argmax) override;
  std::vector<std::pair<std::string, at::Tensor>> named_parameters() override {
    return inner_.named_parameters();
  }
  void save_tensors(const std::string& file,
                    const std::vector<std::pair<std::string, at::Tensor>>& tensors) override {
    inner_.save_tensors(file, tensors);
  }
  std::map<std::string, at::Tensor> load_tensors(const std::string& file) override {
    return inner_.load_tensors(file);
  }
  // Both count as forward calls and are timed with forward_s.
  std::unique_ptr<sdk::KeyValueCache> forward_caching(const at::Tensor& input_ids,
                                                      const at::Tensor& position_ids,
                                                      const at::Tensor& segment_ids,
                                                      sdk::ModelOutput* out) override;
  sdk::ModelOutput forward_cached(sdk::KeyValueCache& cache, const at::Tensor& input_ids,
                                  const at::Tensor& positions) override;
  std::string model_type() const override { return inner_.model_type(); }
  std::optional<bool> predicts_next_token() const override { return inner_.predicts_next_token(); }
  std::optional<std::int64_t> native_mask_token_id() const override {
    return inner_.native_mask_token_id();
  }

  // Totals since construction. Wall-clock seconds; with CUDA they include only what the host
  // waited for.
  double forward_s = 0;
  double projection_s = 0;  // project() and cross_entropy()
  std::int64_t forward_calls = 0;

 private:
  // `out` with its project() timed into projection_s.
  sdk::ModelOutput timed_projection(sdk::ModelOutput out);

  sdk::ModelHandle& inner_;
};

}  // namespace loom
