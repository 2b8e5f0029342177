// A Llama-family decoder (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU, optional
// tied embeddings) whose parameter names are those of transformers' LlamaForCausalLM, so its
// state loads into and from Hugging Face checkpoints unchanged.
//
// forward() returns final hidden states only; vocabulary logits are computed by project() for
// the positions an objective asks for (see sdk::ModelOutput).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>

#include "loom/sdk/model.hpp"
#include "model/model_config.hpp"

namespace loom {

class LlamaKeyValueCache;

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(std::int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// How attention is computed. All give the same results to float tolerance
// (tests/model/attention_paths_test.cpp checks each against a float64 reference).
enum class AttentionKernel {
  Auto,       // Sdpa on libtorch 2.x (FusedCpu under CPU autocast); FusedCpu on libtorch 1.13
              // CPU; Composite otherwise
  Sdpa,       // at::scaled_dot_product_attention (libtorch 2.x): flash / memory-efficient kernels
  FusedCpu,   // fused_rope_attention (model/fused_attention.hpp): CPU tensors only
  Composite,  // matmul, masked_fill, softmax, matmul: keeps [B, H, S, S]; the plain reference
};
// The names of the config key attn_implementation: auto, sdpa, fused_cpu, eager (Composite).
const char* attention_kernel_name(AttentionKernel k);
AttentionKernel attention_kernel_from_name(const std::string& name);
// The kernel `requested` means for inputs on `device` (never Auto), `cpu_autocast` telling
// whether bf16 autocast is on for the CPU; a UserError naming attn_implementation when this
// build or the device cannot run it.
AttentionKernel resolve_attention_kernel(AttentionKernel requested, const at::Device& device,
                                         bool cpu_autocast = false);
// Whether this libtorch has at::scaled_dot_product_attention.
bool sdpa_available();

// Per-forward inputs shared by all layers.
struct LayerInputs {
  torch::Tensor cos, sin;  // [B, S, 1, D] rotary tables gathered at the position ids
  torch::Tensor mask;      // [B, 1, S, S] bool (true = may attend), or undefined
  bool causal = false;     // with an undefined mask: plain causal attention
  // The fused CPU attention's additive form of mask/causal: [B or 1, S, S] (0 or -inf), or
  // undefined for full attention. Built once per forward, shared by all layers.
  torch::Tensor bias;
  AttentionKernel kernel = AttentionKernel::Composite;  // resolved: never Auto
};

// A LoRA adapter on one linear layer (made by LoraAdapters, model/lora_adapters.hpp): the
// layer's output gains scaling * B(A(dropout(x))), as PEFT computes it. The tensors are the
// adapter's own (not registered with the module, so the model's state stays the base's).
struct LoraLinear {
  torch::Tensor A;  // [r, in]
  torch::Tensor B;  // [out, r]
  double scaling = 1.0;
  double dropout = 0.0;  // applied only while training
};
// The adapters of one module, by the linear's name in the Llama scheme (q_proj, ..., down_proj).
using LoraLinears = std::map<std::string, LoraLinear>;
// How a layer multiplies by its weights.
enum class LinearProducts {
  Concatenated,  // one product over q/k/v (gate/up) weights concatenated: many rows (training)
  Separate,      // one product per weight: few rows, where copying the weights would cost more
  RowInvariant,  // row_invariant_linear per weight (model/row_invariant_linear.hpp): each row's
                 // result is independent of the other rows in the product (cached sampling)
};

// scaling * B(A(dropout(x))): [..., in] -> [..., out].
torch::Tensor lora_delta(const LoraLinear& adapter, const torch::Tensor& x, bool training,
                         LinearProducts products = LinearProducts::Separate);

// One layer's keys (after RoPE) and values from a forward pass, for a key/value cache:
// [B, KV, S, D] each, contiguous, in the pass's dtype.
struct LayerKeyValues {
  torch::Tensor keys, values;
};

// Inputs of a cached pass over one row's queries (n of them), shared by all layers.
struct CachedRowInputs {
  torch::Tensor cos, sin;  // [n, 1, D] rotary tables at the queries' position ids
  torch::Tensor slots;     // [n] int64: the queries' positions in the cached row
  std::int64_t key_begin = 0, key_count = 0;  // the keys the queries may see
  torch::Tensor bias;  // [n, key_count] additive mask (0 / -inf) in the math dtype, or undefined
  // Padding positions of a full layer-major pass: each query sees only its own key (attention
  // gives its own value; key_begin / key_count / bias unused). O(n), not O(n * range).
  bool self_only = false;
};

struct CachedQueries;  // model/llama_model_cached.cpp

// One row of a layer-major cached pass (DecoderLayerImpl::forward_cached_rows): its queries
// are x's rows [begin, begin + count); keys, values: this layer's cache of the row [KV, S, D].
struct CachedRowSpan {
  std::int64_t begin = 0, count = 0;
  const CachedRowInputs* in = nullptr;
  torch::Tensor keys, values;
};

// x * cos + rotate_half(x) * sin: rotary embedding with tables broadcast against x.
torch::Tensor apply_rotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const ModelConfig& c);
  // [B, S, H]. With `kv`, also this layer's keys and values.
  torch::Tensor forward(const torch::Tensor& x, const LayerInputs& in, LayerKeyValues* kv = nullptr);
  // x [n, H]: one row's queries. Writes their keys and values into the row's cache (keys,
  // values: [KV, S, D]) at in.slots, then attends to the row's cached keys. Returns [n, H].
  torch::Tensor forward_cached(const torch::Tensor& x, const CachedRowInputs& in,
                               const torch::Tensor& keys, const torch::Tensor& values);
  // The pieces of forward_cached, for the layer-major pass over several rows: the q/k/v
  // projection of all rows' queries, one row's attention (qkv [n, ...] of that row: RoPE, its
  // keys and values into the cache, attention to its cached keys; returns [n, heads * D]
  // before o_proj), and o_proj.
  torch::Tensor project_qkv(const torch::Tensor& x, LinearProducts products);
  torch::Tensor attend_cached(const torch::Tensor& qkv, const CachedRowInputs& in,
                              const torch::Tensor& keys, const torch::Tensor& values);
  // attend_cached's first half: RoPE, the row's keys and values into the cache; returns the
  // rotated queries [n, heads, D] in the cache's dtype.
  torch::Tensor cache_queries(const torch::Tensor& qkv, const CachedRowInputs& in,
                              const torch::Tensor& keys, const torch::Tensor& values);
  torch::Tensor project_output(const torch::Tensor& x, LinearProducts products);
  std::int64_t heads() const { return heads_; }
  std::int64_t kv_heads() const { return kv_heads_; }
  std::int64_t head_dim() const { return head_dim_; }

  // LoRA adapters on q_proj, k_proj, v_proj, o_proj (empty: none). Every path (composite,
  // fused CPU, SDPA, cached, checkpointed) goes through project_qkv and project_output.
  LoraLinears adapters;

 private:
  // project_qkv: x [..., H] -> q, k, v side by side [..., (heads + 2 kv_heads) * D]: the
  // projections with their biases (Qwen2, Dream) and q and k normalised per head (Qwen3),
  // before RoPE. project_output: o_proj, with its adapter.

  std::int64_t heads_, kv_heads_, head_dim_;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 only: over head_dim, shared by the heads
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  // The same for few rows: two products instead of concatenating the weights first (whose
  // copy would cost more than the products).
  torch::Tensor forward_few_rows(const torch::Tensor& x);
  // The same with row_invariant_linear products (LinearProducts::RowInvariant).
  torch::Tensor forward_rows_invariant(const torch::Tensor& x);

  // LoRA adapters on gate_proj, up_proj, down_proj (empty: none).
  LoraLinears adapters;

 private:
  // gate_up [..., 2F] -> the down projection of swiglu(gate_up), with the adapters' deltas.
  torch::Tensor gate_up_down(const torch::Tensor& x, torch::Tensor gate_up,
                             LinearProducts products);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(Mlp);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DecoderLayerImpl(const ModelConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const LayerInputs& in, LayerKeyValues* kv = nullptr);
  // One row's queries x [n, H] over the row's cached keys and values (AttentionImpl).
  torch::Tensor forward_cached(const torch::Tensor& x, const CachedRowInputs& in,
                               const torch::Tensor& keys, const torch::Tensor& values);
  // Several rows' queries at once, x [T, H]: rows[r] holds rows[r].count of them from
  // rows[r].begin on. The products run over all T with row_invariant_linear, attention row by
  // row (rows in parallel on the CPU), so each row gets the bits it gets alone. Returns [T, H].
  torch::Tensor forward_cached_rows(const torch::Tensor& x, const std::vector<CachedRowSpan>& rows);
  // Where LoRA adapters attach.
  AttentionImpl& attention() { return *self_attn; }
  MlpImpl& feed_forward() { return *mlp; }

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
  // With `kv`, also every layer's keys and values (one entry per layer).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                        const torch::Tensor& segment_ids, const sdk::AttentionSpec& attention,
                        std::vector<LayerKeyValues>* kv = nullptr);

  // Key/value caching for masked-diffusion sampling (sdk::ModelHandle::forward_caching and
  // forward_cached; model/llama_model_cached.cpp). Both run without autograd.
  //
  // forward(..., bidirectional) that fills `cache` (made for these inputs' B, S, position and
  // segment ids). A row's hidden states and cache do not depend on the other rows or on its
  // padding: on the CPU in fp32 every position is a query of one layer-major cached pass
  // (each segment attends over exactly its own keys, each padding position over itself; the
  // products through row_invariant_linear, so also the same bits with any thread count);
  // elsewhere each row runs alone through forward(), on the span from its first to its last
  // non-padding token (padding outside it as one-token sequences, as forward's mask has it).
  torch::Tensor forward_caching(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                                const torch::Tensor& segment_ids, LlamaKeyValueCache& cache);
  // input_ids, positions: [B, Q] (positions index the cached rows, -1 = unused slot).
  // Returns hidden [B, Q, H], zeros at unused slots. Each row attends over only the keys its
  // queries may see; on the CPU in fp32 all rows go through each layer's products together
  // (row_invariant_linear), elsewhere each row runs whole on its own. Either way a row's
  // result is that of the row run alone. std::invalid_argument on bad input.
  torch::Tensor forward_cached(LlamaKeyValueCache& cache, const torch::Tensor& input_ids,
                               const torch::Tensor& positions);
  // Hidden states [..., H] -> vocabulary logits [..., V]. With `row_invariant`, through
  // row_invariant_linear (CPU fp32) and without autograd: each row's logits independent of
  // the other rows and of the thread count.
  torch::Tensor project(const torch::Tensor& hidden, bool row_invariant = false) const;
  torch::Tensor output_weight() const;  // lm_head.weight, or the embedding when tied

  // Grows the vocabulary; new rows are the mean of the existing ones.
  void resize_vocab(std::int64_t new_vocab_size);
  // Weight init as transformers does it: normal(0, initializer_range), norms at one.
  void reset_parameters(std::uint64_t seed);

  const ModelConfig& config() const { return config_; }
  void set_gradient_checkpointing(bool on) { checkpointing_ = on; }
  // Auto unless a test or benchmark pins one; forward() refuses a kernel this build or the
  // input's device cannot run.
  void set_attention_kernel(AttentionKernel k) { attention_kernel_ = k; }
  // The kernel forward() uses for inputs on `device`.
  AttentionKernel resolved_attention_kernel(const at::Device& device) const;
  // The frozen matrices are bf16 (LoRA on a bf16 checkpoint, model/lora_adapters.hpp): every
  // pass (forward, cached, project) then runs under bf16 autocast, also when its caller (a
  // sampler) did not ask for it.
  void set_bf16_matrices(bool on) { bf16_matrices_ = on; }

  LlamaBackbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  void build_rope_tables();
  void move_rope_tables(const at::Device& device);
  // One row of forward_cached: tokens [n] at in.slots of cache row `row`. Returns [n, H].
  torch::Tensor forward_cached_row(LlamaKeyValueCache& cache, std::int64_t row,
                                   const torch::Tensor& tokens, const CachedRowInputs& in);
  // The layer-major cached pass (CPU fp32, no autocast; runs_layer_major): every row's queries
  // through each product together (row_invariant_linear), attention per (row, key/value head).
  bool runs_layer_major(const at::Device& device, at::ScalarType math) const;
  // Fills each item's `in` (RoPE tables, key range, mask) from the cache's row plan.
  void plan_queries(const LlamaKeyValueCache& cache, std::vector<CachedQueries>& work,
                    const at::Device& device, at::ScalarType math);
  // Final hidden states [B, width, H]: each item's at its slots of its row, zeros elsewhere.
  torch::Tensor forward_layer_major(LlamaKeyValueCache& cache,
                                    const std::vector<CachedQueries>& work, std::int64_t width);
  // forward_caching on the layer-major path: every position of every row is a query.
  torch::Tensor forward_caching_layer_major(const torch::Tensor& input_ids,
                                            LlamaKeyValueCache& cache);

  ModelConfig config_;
  bool checkpointing_ = false;
  bool bf16_matrices_ = false;
  AttentionKernel attention_kernel_ = AttentionKernel::Auto;
  torch::Tensor rope_cos_, rope_sin_;  // [max_pos, D], not parameters
};
TORCH_MODULE(LlamaForCausalLM);

// What is wrong with an attention hook's explicit mask for `rows` x `seq_len` inputs ("" if
// nothing): it must be [rows or 1, 1, S, S] and bool (true = may attend). rows < 0: any.
std::string explicit_mask_problem(const torch::Tensor& mask, std::int64_t rows, std::int64_t seq_len);

// The [B, 1, S, S] boolean attention mask (true = may attend) for a spec, honouring packed
// segments and padding; padding queries attend only to themselves so no row is empty.
// Returns undefined when no mask is needed (one segment per row, no padding); `causal` is set
// when plain causal attention applies then.
torch::Tensor build_attention_mask(const torch::Tensor& segment_ids,
                                   const sdk::AttentionSpec& spec, std::int64_t seq_len,
                                   bool* causal);

}  // namespace loom
