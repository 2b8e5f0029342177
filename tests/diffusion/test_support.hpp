// Small real stand-ins for the host side, for the diffusion plugin's tests:
//  - ByteTokenizer: one id per byte, then <s>, </s>, <pad>, then added special tokens;
//  - TinyModel: a real libtorch model (token + position embeddings, one attention layer that
//    honours AttentionSpec and segment ids, an MLP, LayerNorm, an untied output matrix), with
//    the SDK 1.3 key/value cache (forward_caching / forward_cached) of that layer;
//  - PositionalModel: hidden state = one-hot position, so the logits at position s are a
//    fixed row chosen by the test (predictable predictions and confidences);
//  - batch builders.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "loom/sdk.hpp"
#include "sampler.hpp"

namespace loom::diffusion::testing {

class ByteTokenizer : public sdk::TokenizerHandle {
 public:
  static constexpr std::int64_t kBos = 256, kEos = 257, kPad = 258;
  std::int64_t vocab_size() const override;
  std::vector<std::int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special) const override;
  std::optional<std::int64_t> token_to_id(const std::string& token) const override;
  std::string id_to_token(std::int64_t id) const override;
  std::int64_t add_special_token(const std::string& token) override;
  bool is_special(std::int64_t id) const override;
  std::optional<std::int64_t> bos_id() const override { return kBos; }
  std::optional<std::int64_t> eos_id() const override { return kEos; }
  std::optional<std::int64_t> pad_id() const override { return kPad; }

 private:
  std::vector<std::string> added_;
};

struct TinyNetImpl : torch::nn::Module {
  TinyNetImpl(std::int64_t vocab, std::int64_t hidden, std::int64_t max_positions);
  torch::Tensor embed, pos_embed, lm_head;  // [V, H], [P, H], [V, H]
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, o{nullptr}, up{nullptr}, down{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TinyNet);

class TinyModel : public sdk::ModelHandle {
 public:
  TinyModel(std::int64_t vocab, std::int64_t hidden, std::int64_t max_positions,
            std::uint64_t seed = 0);
  std::int64_t vocab_size() const override { return net_->embed.size(0); }
  std::int64_t hidden_size() const override { return net_->embed.size(1); }
  std::int64_t max_position_embeddings() const override { return net_->pos_embed.size(0); }
  void resize_vocab(std::int64_t new_vocab_size) override;
  sdk::ModelOutput forward(const at::Tensor& input_ids, const at::Tensor& position_ids,
                           const at::Tensor& segment_ids,
                           const sdk::AttentionSpec& attention) override;
  at::Device device() const override { return at::kCPU; }
  void set_training(bool training) override { net_->train(training); }
  bool is_training() const override { return net_->is_training(); }

  // SDK 1.3: the attention layer's keys and values (one layer: they depend only on each
  // position's token, so a cached pass is exact when the tokens outside `positions` did not
  // change since the cache was made). Returns nullptr when `with_cache` is false.
  std::unique_ptr<sdk::KeyValueCache> forward_caching(const at::Tensor& input_ids,
                                                      const at::Tensor& position_ids,
                                                      const at::Tensor& segment_ids,
                                                      sdk::ModelOutput* out) override;
  sdk::ModelOutput forward_cached(sdk::KeyValueCache& cache, const at::Tensor& input_ids,
                                  const at::Tensor& positions) override;

  TinyNet& net() { return net_; }
  int resize_calls = 0;
  std::vector<sdk::AttentionSpec::Kind> seen_attention;
  bool with_cache = true;
  int forward_calls = 0, caching_calls = 0, cached_calls = 0;
  std::vector<at::Tensor> forward_inputs;    // every forward()'s input_ids (caching included)
  std::vector<at::Tensor> cached_positions;  // every forward_cached()'s positions

 private:
  TinyNet net_;
};

// hidden[b, s] = one-hot(s) (H = max positions); logits at s = table[:, s] (test's choice).
class PositionalModel : public sdk::ModelHandle {
 public:
  explicit PositionalModel(at::Tensor table);  // [V, P]
  std::int64_t vocab_size() const override { return table_.size(0); }
  std::int64_t hidden_size() const override { return table_.size(1); }
  std::int64_t max_position_embeddings() const override { return table_.size(1); }
  void resize_vocab(std::int64_t) override {}
  sdk::ModelOutput forward(const at::Tensor& input_ids, const at::Tensor& position_ids,
                           const at::Tensor& segment_ids,
                           const sdk::AttentionSpec& attention) override;
  at::Device device() const override { return at::kCPU; }
  void set_training(bool training) override { training_ = training; }
  bool is_training() const override { return training_; }

  std::vector<at::Tensor> inputs;  // every forward's input_ids
  bool training_ = true;
  bool training_during_forward = true;

 private:
  at::Tensor table_;
};

// A batch from rows of ids; segments default to one document per row with 0 where the id is
// the pad id; labels default to the ids (kIgnoreIndex on padding); sample indices 0..B-1.
sdk::Batch make_batch(const std::vector<std::vector<std::int64_t>>& ids,
                      std::vector<std::vector<std::int64_t>> segments = {},
                      std::vector<std::vector<std::int64_t>> labels = {},
                      std::vector<std::int64_t> sample_index = {});

at::Tensor to_tensor(const std::vector<std::vector<std::int64_t>>& rows);

// A prompt 1..`prompt` followed by `masks` mask tokens (the sampler tests' starting sequence).
at::Tensor start_sequence(std::int64_t prompt, std::int64_t masks, std::int64_t mask_id);
// Sampler options with `steps`, `block_length` and the mask token, the rest default.
diffusion::SamplerOptions sampler_options(std::int64_t steps, std::int64_t block_length, std::int64_t mask_id);
std::vector<std::int64_t> to_vector(const at::Tensor& t);

}  // namespace loom::diffusion::testing
