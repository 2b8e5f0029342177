#include "model/llama_model.hpp"

#include <torch/version.h>

#include <cmath>
#include <limits>

#include "errors.hpp"
#include "io/rope_frequencies.hpp"
#include "model/fused_attention.hpp"
#include "model/fused_cross_entropy.hpp"
#include "model/fused_layers.hpp"
#include "model/row_invariant_linear.hpp"
#include "train/autocast_guard.hpp"

namespace loom {
namespace F = torch::nn::functional;

// ---- RMSNorm ---------------------------------------------------------------------------
RMSNormImpl::RMSNormImpl(std::int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // One pass on the CPU; statistics in fp32 (as transformers) on other paths.
  return rms_norm(x, weight, eps_);
}

// ---- attention -------------------------------------------------------------------------
namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

torch::Tensor apply_rope(const torch::Tensor& x, const LayerInputs& in) {
  return apply_rotary(x, in.cos, in.sin);
}

// [B, S, KV, D] -> [B, S, H, D] by repeating each key/value head for its query group.
torch::Tensor repeat_kv(const torch::Tensor& x, std::int64_t rep) {
  if (rep == 1) return x;
  auto s = x.sizes();
  return x.unsqueeze(3).expand({s[0], s[1], s[2], rep, s[3]}).reshape({s[0], s[1], s[2] * rep, s[3]});
}

}  // namespace

torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

AttentionImpl::AttentionImpl(const ModelConfig& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim()) {
  auto lin = [](std::int64_t in, std::int64_t out, bool bias) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
  };
  q_proj = register_module("q_proj", lin(c.hidden_size, heads_ * head_dim_, c.attention_qkv_bias));
  k_proj = register_module("k_proj", lin(c.hidden_size, kv_heads_ * head_dim_, c.attention_qkv_bias));
  v_proj = register_module("v_proj", lin(c.hidden_size, kv_heads_ * head_dim_, c.attention_qkv_bias));
  o_proj = register_module("o_proj", lin(heads_ * head_dim_, c.hidden_size, c.attention_output_bias));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", RMSNorm(head_dim_, c.rms_norm_eps));
    k_norm = register_module("k_norm", RMSNorm(head_dim_, c.rms_norm_eps));
  }
}

torch::Tensor AttentionImpl::project_qkv(const torch::Tensor& x, LinearProducts products) {
  const bool bias = q_proj->bias.defined();
  auto b = [&](torch::nn::Linear& l) { return bias ? l->bias : torch::Tensor(); };
  torch::Tensor qkv;
  if (products == LinearProducts::RowInvariant) {
    qkv = row_invariant_linear(x, {q_proj->weight, k_proj->weight, v_proj->weight},
                               {b(q_proj), b(k_proj), b(v_proj)});
  } else if (products == LinearProducts::Separate) {
    qkv = torch::cat({F::linear(x, q_proj->weight, b(q_proj)), F::linear(x, k_proj->weight, b(k_proj)),
                      F::linear(x, v_proj->weight, b(v_proj))},
                     -1);
  } else {
    // One matrix product for q, k and v (the parameters stay separate, as transformers names
    // them; backward splits the gradient of the concatenation).
    qkv = F::linear(x, torch::cat({q_proj->weight, k_proj->weight, v_proj->weight}, 0),
                    bias ? torch::cat({q_proj->bias, k_proj->bias, v_proj->bias}, 0)
                         : torch::Tensor());
  }
  if (!adapters.empty()) {
    // Each adapter's delta in its projection's columns (zeros for projections without one).
    const bool training = is_training();
    auto part = [&](const char* name, std::int64_t width) {
      auto it = adapters.find(name);
      if (it != adapters.end())
        return lora_delta(it->second, x, training, products).to(qkv.scalar_type());
      auto shape = qkv.sizes().vec();
      shape.back() = width;
      return torch::zeros(shape, qkv.options());
    };
    qkv = qkv + torch::cat({part("q_proj", heads_ * head_dim_), part("k_proj", kv_heads_ * head_dim_),
                            part("v_proj", kv_heads_ * head_dim_)},
                           -1);
  }
  if (!q_norm) return qkv;
  // Qwen3: each head's query and key RMS-normalised over head_dim (one weight for all heads),
  // before RoPE, so every attention path below sees normalised q and k.
  auto lead = qkv.sizes().vec();
  lead.pop_back();
  auto per_head = [&](std::int64_t offset, std::int64_t heads, RMSNorm& norm) {
    auto shape = lead;
    shape.push_back(heads);
    shape.push_back(head_dim_);
    auto part = qkv.narrow(-1, offset * head_dim_, heads * head_dim_).reshape(shape);
    auto flat = lead;
    flat.push_back(heads * head_dim_);
    return norm(part).reshape(flat);
  };
  auto q = per_head(0, heads_, q_norm);
  auto k = per_head(heads_, kv_heads_, k_norm);
  auto v = qkv.narrow(-1, (heads_ + kv_heads_) * head_dim_, kv_heads_ * head_dim_);
  return torch::cat({q.to(qkv.scalar_type()), k.to(qkv.scalar_type()), v}, -1);
}

torch::Tensor lora_delta(const LoraLinear& adapter, const torch::Tensor& x, bool training,
                         LinearProducts products) {
  auto h = adapter.dropout > 0 && training
               ? F::dropout(x, F::DropoutFuncOptions().p(adapter.dropout).training(true))
               : x;
  if (products == LinearProducts::RowInvariant)
    return row_invariant_linear(row_invariant_linear(h, adapter.A), adapter.B) * adapter.scaling;
  return F::linear(F::linear(h, adapter.A), adapter.B) * adapter.scaling;
}

torch::Tensor AttentionImpl::project_output(const torch::Tensor& x, LinearProducts products) {
  auto y = products == LinearProducts::RowInvariant
               ? row_invariant_linear(x, o_proj->weight, o_proj->bias)
               : o_proj(x);
  auto it = adapters.find("o_proj");
  if (it == adapters.end()) return y;
  return y + lora_delta(it->second, x, is_training(), products).to(y.scalar_type());
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const LayerInputs& in, LayerKeyValues* kv) {
  const auto B = x.size(0), S = x.size(1);
  auto qkv = project_qkv(x, LinearProducts::Concatenated);
  if (kv) {
    // For a cache; the fused kernel rotates its keys internally, so they are made again here.
    auto k = qkv.narrow(2, heads_ * head_dim_, kv_heads_ * head_dim_).view({B, S, kv_heads_, head_dim_});
    auto v = qkv.narrow(2, (heads_ + kv_heads_) * head_dim_, kv_heads_ * head_dim_).view({B, S, kv_heads_, head_dim_});
    kv->keys = apply_rope(k, in).to(qkv.scalar_type()).transpose(1, 2).contiguous();  // [B, KV, S, D]
    kv->values = v.transpose(1, 2).contiguous();
  }
  if (in.kernel == AttentionKernel::FusedCpu && qkv.scalar_type() != torch::kHalf) {
    return project_output(fused_rope_attention(qkv, in.cos, in.sin, in.bias, in.causal,
                                               AttentionDims{heads_, kv_heads_, head_dim_}),
                          LinearProducts::Concatenated);
  }
  auto q = apply_rope(qkv.narrow(2, 0, heads_ * head_dim_).view({B, S, heads_, head_dim_}), in);
  auto k = apply_rope(qkv.narrow(2, heads_ * head_dim_, kv_heads_ * head_dim_).view({B, S, kv_heads_, head_dim_}), in);
  auto v = qkv.narrow(2, (heads_ + kv_heads_) * head_dim_, kv_heads_ * head_dim_).view({B, S, kv_heads_, head_dim_});
  k = repeat_kv(k, heads_ / kv_heads_);
  v = repeat_kv(v, heads_ / kv_heads_);
  q = q.transpose(1, 2);  // [B, H, S, D]
  k = k.transpose(1, 2);
  v = v.transpose(1, 2);
  torch::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  if (in.kernel == AttentionKernel::Sdpa) {
    // No mask tensor at all (an undefined one is refused) when attention is plain causal or
    // full: only then may SDPA choose the flash kernel. A packed or explicit mask goes as a
    // boolean [B, 1, S, S] (true = may attend), which the memory-efficient kernel takes.
    c10::optional<at::Tensor> mask;
    if (in.mask.defined()) mask = in.mask;
    out = at::scaled_dot_product_attention(q, k, v, mask, 0.0,
                                           /*is_causal=*/!in.mask.defined() && in.causal);
  }
#endif
  if (!out.defined()) {
    auto scores = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(head_dim_)));
    if (in.mask.defined()) {
      scores = scores.masked_fill(in.mask.logical_not(), -std::numeric_limits<float>::infinity());
    } else if (in.causal) {
      auto future = torch::ones({S, S}, torch::dtype(torch::kBool).device(x.device())).triu(1);
      scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
    }
    out = torch::matmul(torch::softmax(scores, -1).to(v.scalar_type()), v);
  }
  return project_output(out.transpose(1, 2).reshape({B, S, heads_ * head_dim_}),
                        LinearProducts::Concatenated);
}

const char* attention_kernel_name(AttentionKernel k) {
  switch (k) {
    case AttentionKernel::Auto: return "auto";
    case AttentionKernel::Sdpa: return "sdpa";
    case AttentionKernel::FusedCpu: return "fused_cpu";
    case AttentionKernel::Composite: return "eager";
  }
  return "?";
}

AttentionKernel attention_kernel_from_name(const std::string& name) {
  for (auto k : {AttentionKernel::Auto, AttentionKernel::Sdpa, AttentionKernel::FusedCpu,
                 AttentionKernel::Composite})
    if (name == attention_kernel_name(k)) return k;
  throw UserError("attn_implementation = \"" + name + "\": expected auto, sdpa, fused_cpu or eager");
}

bool sdpa_available() { return TORCH_VERSION_MAJOR >= 2; }

// ---- MLP and layer ---------------------------------------------------------------------
MlpImpl::MlpImpl(const ModelConfig& c) {
  auto lin = [](std::int64_t in, std::int64_t out) {
    return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
  };
  gate_proj = register_module("gate_proj", lin(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", lin(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", lin(c.intermediate_size, c.hidden_size));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  // One matrix product for gate and up, then silu(gate) * up in one pass.
  return gate_up_down(x, F::linear(x, torch::cat({gate_proj->weight, up_proj->weight}, 0)),
                      LinearProducts::Concatenated);
}

torch::Tensor MlpImpl::forward_few_rows(const torch::Tensor& x) {
  return gate_up_down(
      x, torch::cat({F::linear(x, gate_proj->weight), F::linear(x, up_proj->weight)}, -1),
      LinearProducts::Separate);
}

torch::Tensor MlpImpl::forward_rows_invariant(const torch::Tensor& x) {
  return gate_up_down(x, row_invariant_linear(x, {gate_proj->weight, up_proj->weight}),
                      LinearProducts::RowInvariant);
}

torch::Tensor MlpImpl::gate_up_down(const torch::Tensor& x, torch::Tensor gate_up,
                                    LinearProducts products) {
  const bool invariant = products == LinearProducts::RowInvariant;
  auto down = [&](const torch::Tensor& h) {
    return invariant ? row_invariant_linear(h, down_proj->weight) : down_proj(h);
  };
  if (adapters.empty()) return down(swiglu(gate_up));
  const bool training = is_training();
  auto part = [&](const char* name) {
    auto it = adapters.find(name);
    if (it != adapters.end())
      return lora_delta(it->second, x, training, products).to(gate_up.scalar_type());
    auto shape = gate_up.sizes().vec();
    shape.back() /= 2;
    return torch::zeros(shape, gate_up.options());
  };
  gate_up = gate_up + torch::cat({part("gate_proj"), part("up_proj")}, -1);
  auto h = swiglu(gate_up);
  auto y = down(h);
  auto it = adapters.find("down_proj");
  if (it == adapters.end()) return y;
  return y + lora_delta(it->second, h, training, products).to(y.scalar_type());
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", Attention(c));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", Mlp(c));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const LayerInputs& in, LayerKeyValues* kv) {
  auto h = x + self_attn->forward(input_layernorm(x), in, kv);
  return h + mlp(post_attention_layernorm(h));
}

// ---- gradient checkpointing --------------------------------------------------------------
namespace {

// Runs a layer without keeping its activations; backward recomputes them (PyTorch's
// "reentrant" checkpoint). Only `x` is an autograd input: libtorch 1.13 cannot take undefined
// tensors (no mask) as inputs, so the per-forward tables travel through saved_data, and the
// layer and the LayerInputs by address (autograd functions only carry IValues). Backward runs
// under the autocast state the forward pass had, so the recomputation matches it.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x,
                               std::int64_t inputs_address, std::int64_t layer_address) {
    const auto& in = *reinterpret_cast<const LayerInputs*>(inputs_address);
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = in.cos;
    ctx->saved_data["sin"] = in.sin;
    ctx->saved_data["has_mask"] = in.mask.defined();
    if (in.mask.defined()) ctx->saved_data["mask"] = in.mask;
    ctx->saved_data["has_bias"] = in.bias.defined();
    if (in.bias.defined()) ctx->saved_data["bias"] = in.bias;
    ctx->saved_data["causal"] = in.causal;
    ctx->saved_data["kernel"] = static_cast<std::int64_t>(in.kernel);
    ctx->saved_data["layer"] = layer_address;
    ctx->saved_data["autocast"] = autocast_enabled(x.device().is_cuda());
    // LoRA dropout draws random numbers: the recomputation must draw the same ones.
    auto generator = at::globalContext().defaultGenerator(x.device());
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      ctx->saved_data["rng"] = generator.get_state();
    }
    return reinterpret_cast<DecoderLayerImpl*>(layer_address)->forward(x, in);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    LayerInputs in;
    in.cos = ctx->saved_data["cos"].toTensor();
    in.sin = ctx->saved_data["sin"].toTensor();
    if (ctx->saved_data["has_mask"].toBool()) in.mask = ctx->saved_data["mask"].toTensor();
    if (ctx->saved_data["has_bias"].toBool()) in.bias = ctx->saved_data["bias"].toTensor();
    in.causal = ctx->saved_data["causal"].toBool();
    in.kernel = static_cast<AttentionKernel>(ctx->saved_data["kernel"].toInt());
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    torch::Tensor y;
    {
      torch::AutoGradMode grad_on(true);
      AutocastGuard autocast(ctx->saved_data["autocast"].toBool(), x.device().is_cuda());
      auto generator = at::globalContext().defaultGenerator(x.device());
      at::Tensor now;
      {
        std::lock_guard<std::mutex> lock(generator.mutex());
        now = generator.get_state();
        generator.set_state(ctx->saved_data["rng"].toTensor());
      }
      y = layer->forward(x, in);
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(now);
    }
    torch::autograd::backward({y}, {grad_out[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

// ---- the model -------------------------------------------------------------------------
LlamaBackboneImpl::LlamaBackboneImpl(const ModelConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  auto list = torch::nn::ModuleList();
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers.push_back(DecoderLayer(c));
    list->push_back(layers.back());
  }
  register_module("layers", list);
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& c) : config_(c) {
  if (c.vocab_size <= 0) throw UserError("model.vocab_size must be set (> 0)");
  model = register_module("model", LlamaBackbone(c));
  if (!c.tie_word_embeddings) {
    lm_head = register_module(
        "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
  }
  build_rope_tables();
}

void LlamaForCausalLMImpl::build_rope_tables() {
  auto inv = rope_inverse_frequencies(config_);
  auto inv_freq = torch::tensor(inv, torch::kDouble);
  auto pos = torch::arange(config_.max_position_embeddings, torch::kDouble);
  auto freqs = torch::outer(pos, inv_freq);
  auto emb = torch::cat({freqs, freqs}, -1);  // [max_pos, D]
  rope_cos_ = emb.cos().to(torch::kFloat);
  rope_sin_ = emb.sin().to(torch::kFloat);
}

void LlamaForCausalLMImpl::move_rope_tables(const at::Device& device) {
  if (rope_cos_.device() != device) {
    rope_cos_ = rope_cos_.to(device);
    rope_sin_ = rope_sin_.to(device);
  }
}

void LlamaForCausalLMImpl::reset_parameters(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& kv : named_parameters()) {
    auto& p = kv.value();
    const std::string& name = kv.key();
    if (name.find("norm") != std::string::npos) {
      p.fill_(1.0);
    } else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      p.zero_();  // q/k/v and o biases start at zero, as transformers initialises them
    } else {
      auto init = at::normal(0.0, config_.initializer_range, p.sizes(), gen);
      p.copy_(init);
    }
  }
}

torch::Tensor LlamaForCausalLMImpl::output_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

torch::Tensor LlamaForCausalLMImpl::project(const torch::Tensor& hidden, bool row_invariant) const {
  const bool cuda = hidden.is_cuda();
  AutocastGuard autocast(bf16_matrices_ && !autocast_enabled(cuda), cuda);
  if (row_invariant) {
    torch::NoGradGuard no_grad;  // as the cached passes it serves; row_invariant_linear has no backward
    return row_invariant_linear(hidden, output_weight());
  }
  return F::linear(hidden, output_weight());
}

void LlamaForCausalLMImpl::resize_vocab(std::int64_t n) {
  const auto old = config_.vocab_size;
  if (n <= old) return;
  torch::NoGradGuard no_grad;
  auto grow = [&](const torch::Tensor& w) {
    auto extra = w.mean(0, true).expand({n - old, w.size(1)});
    return torch::cat({w, extra}, 0).contiguous();
  };
  auto& emb = model->embed_tokens->weight;
  emb.set_data(grow(emb));
  model->embed_tokens->options.num_embeddings(n);
  if (lm_head) {
    lm_head->weight.set_data(grow(lm_head->weight));
    lm_head->options.out_features(n);
  }
  config_.vocab_size = n;
}

std::string explicit_mask_problem(const torch::Tensor& mask, std::int64_t rows, std::int64_t seq_len) {
  if (!mask.defined()) return "an explicit mask, but no mask tensor";
  const std::string S = std::to_string(seq_len);
  if (mask.dim() != 4 || (mask.size(0) != 1 && rows >= 0 && mask.size(0) != rows) ||
      mask.size(1) != 1 || mask.size(2) != seq_len || mask.size(3) != seq_len)
    return "the explicit mask must be [" + (rows >= 0 ? std::to_string(rows) : std::string("B")) +
           " or 1, 1, " + S + ", " + S + "], got " + c10::str(mask.sizes());
  if (mask.scalar_type() != torch::kBool)
    return std::string("the explicit mask must be bool (true = may attend), got ") +
           c10::toString(mask.scalar_type());
  return "";
}

torch::Tensor build_attention_mask(const torch::Tensor& segment_ids,
                                   const sdk::AttentionSpec& spec, std::int64_t seq_len,
                                   bool* causal) {
  *causal = spec.kind == sdk::AttentionSpec::Kind::Causal;
  if (spec.kind == sdk::AttentionSpec::Kind::Explicit) {
    const auto& m = spec.mask;
    const std::string problem =
        explicit_mask_problem(m, segment_ids.defined() ? segment_ids.size(0) : -1, seq_len);
    if (!problem.empty()) throw std::invalid_argument("attention hook: " + problem);
    // A query with no allowed key would give NaN: let it see itself.
    auto empty = m.any(-1, /*keepdim=*/true).logical_not();
    auto eye = torch::eye(seq_len, torch::dtype(torch::kBool).device(m.device()));
    return m.logical_or(empty.logical_and(eye));
  }
  if (!segment_ids.defined() || segment_ids.eq(1).all().item<bool>()) return {};
  auto q = segment_ids.unsqueeze(2);  // [B, S, 1]
  auto k = segment_ids.unsqueeze(1);  // [B, 1, S]
  auto allowed = q.eq(k).logical_and(k.gt(0));
  auto eye = torch::eye(seq_len, torch::dtype(torch::kBool).device(segment_ids.device()));
  if (*causal) allowed = allowed.logical_and(eye.logical_or(torch::ones_like(eye).tril()));
  allowed = allowed.logical_or(q.eq(0).logical_and(eye));  // padding queries see themselves
  return allowed.unsqueeze(1);  // [B, 1, S, S]
}

AttentionKernel LlamaForCausalLMImpl::resolved_attention_kernel(const at::Device& device) const {
  return resolve_attention_kernel(attention_kernel_, device,
                                  device.is_cpu() && autocast_enabled(/*cuda=*/false));
}

AttentionKernel resolve_attention_kernel(AttentionKernel requested, const at::Device& device,
                                         bool cpu_autocast) {
  switch (requested) {
    case AttentionKernel::Auto:
      // Under CPU bf16 autocast, libtorch 2.6's SDPA runs the bench's bf16 shape 1.46x slower
      // than the fused kernel (docs/performance.md, "libtorch 2.x on the CPU"); in fp32 it is
      // the faster of the two.
      if (sdpa_available() && !(device.is_cpu() && cpu_autocast)) return AttentionKernel::Sdpa;
      return device.is_cpu() ? AttentionKernel::FusedCpu : AttentionKernel::Composite;
    case AttentionKernel::Sdpa:
      if (!sdpa_available())
        throw UserError("attn_implementation = \"sdpa\" needs libtorch 2.x (this is " TORCH_VERSION ")");
      break;
    case AttentionKernel::FusedCpu:
      if (!device.is_cpu())
        throw UserError("attn_implementation = \"fused_cpu\" runs on the CPU only, not on " + device.str());
      break;
    case AttentionKernel::Composite: break;
  }
  return requested;
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& input_ids,
                                            const torch::Tensor& position_ids,
                                            const torch::Tensor& segment_ids,
                                            const sdk::AttentionSpec& attention,
                                            std::vector<LayerKeyValues>* kv) {
  const bool cuda = input_ids.is_cuda();
  AutocastGuard autocast(bf16_matrices_ && !autocast_enabled(cuda), cuda);
  const auto B = input_ids.size(0), S = input_ids.size(1);
  auto pos = position_ids.defined()
                 ? position_ids
                 : torch::arange(S, torch::dtype(torch::kLong).device(input_ids.device()))
                       .unsqueeze(0)
                       .expand({B, S});
  if (S > config_.max_position_embeddings || pos.max().item<std::int64_t>() >= config_.max_position_embeddings)
    throw UserError("sequence of " + std::to_string(S) + " tokens exceeds max_position_embeddings (" +
                    std::to_string(config_.max_position_embeddings) + ")");
  move_rope_tables(input_ids.device());
  LayerInputs in;
  auto flat = pos.reshape({-1});
  in.cos = rope_cos_.index_select(0, flat).view({B, S, 1, -1});
  in.sin = rope_sin_.index_select(0, flat).view({B, S, 1, -1});
  in.mask = build_attention_mask(segment_ids, attention, S, &in.causal);
  in.kernel = resolved_attention_kernel(input_ids.device());
  if (in.kernel == AttentionKernel::FusedCpu) {
    const auto opts = torch::dtype(torch::kFloat).device(input_ids.device());
    const double inf = std::numeric_limits<double>::infinity();
    if (in.mask.defined())
      in.bias = torch::zeros({B, S, S}, opts).masked_fill_(in.mask.squeeze(1).logical_not(), -inf);
    else if (in.causal)
      in.bias = torch::full({1, S, S}, -inf, opts).triu(1);
  }

  auto h = model->embed_tokens(input_ids);
  // The reentrant checkpoint only has a backward when its input requires grad. With a frozen
  // embedding (LoRA) the embedded tokens are made to require it, as PEFT's
  // enable_input_require_grads does, so the layers' adapters still get their gradients.
  const bool checkpoint =
      checkpointing_ && is_training() && torch::GradMode::is_enabled() && !kv;
  if (checkpoint && !h.requires_grad()) h = h.detach().requires_grad_(true);
  if (kv) kv->assign(model->layers.size(), {});
  for (std::size_t l = 0; l < model->layers.size(); ++l) {
    auto& layer = model->layers[l];
    if (kv) {
      h = layer->forward(h, in, &(*kv)[l]);
    } else if (checkpoint) {
      h = CheckpointedLayer::apply(h, reinterpret_cast<std::int64_t>(&in),
                                   reinterpret_cast<std::int64_t>(layer.get()));
    } else {
      h = layer(h, in);
    }
  }
  return model->norm(h);
}

}  // namespace loom
