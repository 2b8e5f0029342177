// A Llama-family decoder (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, optional
// tied embeddings) whose parameter names are those of transformers' LlamaForCausalLM, so its
// state loads into and from Hugging Face checkpoints unchanged.
//
// forward() returns final hidden states only; vocabulary logits are computed by project() for
// the positions an objective asks for (see sdk::ModelOutput).
#pragma once

#include <torch/torch.h>

#include "loom/sdk/model.hpp"
#include "model/model_config.hpp"

namespace loom {

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// Per-forward inputs shared by all layers.
struct LayerInputs {
  torch::Tensor cos, sin;  // [B, S, 1, D] rotary tables gathered at the position ids
  torch::Tensor mask;      // [B, 1, S, S] bool (true = may attend), or undefined
  bool causal = false;     // with an undefined mask: plain causal attention
  // The fused CPU attention's additive form of mask/causal: [B or 1, S, S] (0 or -inf), or
  // undefined for full attention. Built once per forward, shared by all layers.
  torch::Tensor bias;
  bool fused = false;      // use fused_rope_attention (CPU, libtorch without fused SDPA)
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const LayerInputs& in);  // [B, S, H]

 private:
  std::int64_t heads_, kv_heads_, head_dim_;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const LayerInputs& in);

 private:
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

class LlamaBackboneImpl : public torch::nn::Module {
 public:
  explicit LlamaBackboneImpl(const ModelConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  std::vector<DecoderLayer> layers;
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaBackbone);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const ModelConfig& c);

  // input_ids [B, S]; position_ids [B, S] or undefined (0..S-1); segment_ids [B, S] or
  // undefined (one segment, no padding). Returns final hidden states [B, S, H].
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                        const torch::Tensor& segment_ids, const sdk::AttentionSpec& attention);
  // Hidden states [..., H] -> vocabulary logits [..., V].
  torch::Tensor project(const torch::Tensor& hidden) const;
  torch::Tensor output_weight() const;  // lm_head.weight, or the embedding when tied

  // Grows the vocabulary; new rows are the mean of the existing ones.
  void resize_vocab(std::int64_t new_vocab_size);
  // Weight init as transformers does it: normal(0, initializer_range), norms at one.
  void reset_parameters(std::uint64_t seed);

  const ModelConfig& config() const { return config_; }
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }

  LlamaBackbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  void build_rope_tables();

  ModelConfig config_;
  bool checkpointing_ = false;
  torch::Tensor rope_cos_, rope_sin_;  // [max_pos, D], not parameters
};
TORCH_MODULE(LlamaForCausalLM);

// The [B, 1, S, S] boolean attention mask (true = may attend) for a spec, honouring packed
// segments and padding; padding queries attend only to themselves so no row is empty.
// Returns undefined when no mask is needed (one segment per row, no padding); `causal` is set
// when plain causal attention applies then.
torch::Tensor build_attention_mask(const torch::Tensor& segment_ids,
                                   const sdk::AttentionSpec& spec, std::int64_t seq_len,
                                   bool* causal);

}  // namespace loom
