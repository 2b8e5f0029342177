// LlamaForCausalLM's key/value-cached passes (Fast-dLLM's prefix and dual caches for
// masked-diffusion sampling): forward_caching and forward_cached, and the per-layer pieces
// they use. Kept apart from llama_model.cpp, which is the training path.
//
// Batch invariance: every row attends on its own, over exactly the keys its queries may see
// (model/kv_cache.hpp, plan_row), and on the CPU in fp32 the matrix products of all rows run
// together through row_invariant_linear, whose rows do not depend on each other (elsewhere each
// row runs whole on its own). So a row's results are those of the same row run alone -- the
// sampler relies on this to make each prompt of a batch match its solo run.
#include <ATen/ThreadLocalState.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "model/kv_cache.hpp"
#include "model/llama_model.hpp"
#include "model/parallel_blocks.hpp"
#include "model/row_invariant_linear.hpp"
#include "train/autocast_guard.hpp"

namespace loom {
namespace F = torch::nn::functional;
namespace {

std::string shape(const torch::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : "undefined";
}

[[noreturn]] void fail(const char* where, const std::string& what) {
  throw std::invalid_argument(std::string(where) + ": " + what);
}

// Scores and softmax in fp32 for 16-bit types (also when autocast made them so), as the other
// attention paths do.
torch::Tensor widen(const torch::Tensor& s) {
  const bool narrow_type = s.scalar_type() == torch::kHalf || s.scalar_type() == torch::kBFloat16;
  return narrow_type ? s.to(torch::kFloat) : s;
}

// Key/value head g's query heads of one row (CPU): q [n, H, D] (after RoPE) attending to keys
// and values [KV, L, D] (bias [n, L] additive, or undefined), written into out [n, H * D] at
// the group's columns. Two 2-D products for the group's query heads stacked (batched matmul
// with OpenBLAS threads is pathologically slow on libtorch 1.13: model/fused_attention.hpp),
// through row_invariant_linear: in fp32 their bits do not depend on whether this runs on one
// thread of a parallel region (a batch) or alone with every thread (a solo row), which a BLAS
// does not promise. (Other dtypes: at::linear, as row_invariant_linear falls back.)
void attend_group(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                  const torch::Tensor& bias, std::int64_t g, const torch::Tensor& out) {
  const auto n = q.size(0), H = q.size(1), D = q.size(2), KV = keys.size(0), L = keys.size(1);
  const auto rep = H / KV;
  auto qg = q.view({n, KV, rep, D}).select(1, g).transpose(0, 1).reshape({rep * n, D});
  auto scores = widen(row_invariant_linear(qg, keys[g]));  // [rep n, L]
  scores.mul_(1.0 / std::sqrt(double(D)));
  if (bias.defined()) scores.view({rep, n, L}).add_(bias);
  auto p = torch::softmax(scores, -1).to(values.scalar_type());
  auto pv = row_invariant_linear(p, values[g].t().contiguous());  // [rep n, D]
  out.view({n, KV, rep, D}).select(1, g).copy_(pv.view({rep, n, D}).transpose(0, 1));
}

// One row's queries q [n, H, D] (after RoPE) attending to keys and values [KV, L, D] (bias
// [n, L] additive, or undefined). Returns [n, H * D]. O(n L) per head.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                     const torch::Tensor& bias) {
  const auto n = q.size(0), H = q.size(1), D = q.size(2), KV = keys.size(0), L = keys.size(1);
  const auto rep = H / KV;
  if (keys.device().is_cpu()) {
    auto out = torch::empty({n, H * D}, values.options());
    for (std::int64_t g = 0; g < KV; ++g) attend_group(q, keys, values, bias, g, out);
    return out;
  }
  // Elsewhere (CUDA) one batched product over the key/value heads.
  auto qg = q.view({n, KV, rep, D}).permute({1, 2, 0, 3}).reshape({KV, rep * n, D});
  auto scores = widen(torch::matmul(qg, keys.transpose(1, 2)));  // [KV, rep n, L]
  scores.mul_(1.0 / std::sqrt(double(D)));
  if (bias.defined()) scores.view({KV, rep, n, L}).add_(bias);
  auto p = torch::softmax(scores, -1).to(values.scalar_type());
  return torch::matmul(p, values).view({KV, rep, n, D}).permute({2, 0, 1, 3}).reshape({n, H * D});
}

}  // namespace

// ---- one row through the layers ----------------------------------------------------------
torch::Tensor AttentionImpl::cache_queries(const torch::Tensor& qkv, const CachedRowInputs& in,
                                           const torch::Tensor& keys, const torch::Tensor& values) {
  const auto n = qkv.size(0);
  auto q = apply_rotary(qkv.narrow(1, 0, heads_ * head_dim_).reshape({n, heads_, head_dim_}),
                        in.cos, in.sin);
  auto k = apply_rotary(
      qkv.narrow(1, heads_ * head_dim_, kv_heads_ * head_dim_).reshape({n, kv_heads_, head_dim_}),
      in.cos, in.sin);
  auto v = qkv.narrow(1, (heads_ + kv_heads_) * head_dim_, kv_heads_ * head_dim_)
               .reshape({n, kv_heads_, head_dim_});
  // First into the cache, so that the queries see their own new keys too (as forward would).
  keys.index_copy_(1, in.slots, k.transpose(0, 1).to(keys.scalar_type()));
  values.index_copy_(1, in.slots, v.transpose(0, 1).to(values.scalar_type()));
  return q.to(keys.scalar_type()).contiguous();
}

torch::Tensor AttentionImpl::attend_cached(const torch::Tensor& qkv, const CachedRowInputs& in,
                                           const torch::Tensor& keys, const torch::Tensor& values) {
  return attend(cache_queries(qkv, in, keys, values), keys.narrow(1, in.key_begin, in.key_count),
                values.narrow(1, in.key_begin, in.key_count), in.bias);
}

torch::Tensor AttentionImpl::forward_cached(const torch::Tensor& x, const CachedRowInputs& in,
                                            const torch::Tensor& keys,
                                            const torch::Tensor& values) {
  // Three products rather than one over concatenated weights: for few rows the copy of the
  // weights would cost more than the products. Biases and q/k norms as in forward().
  auto o = attend_cached(project_qkv(x, LinearProducts::Separate), in, keys, values);
  return project_output(o.to(x.scalar_type()), LinearProducts::Separate);
}

torch::Tensor DecoderLayerImpl::forward_cached(const torch::Tensor& x, const CachedRowInputs& in,
                                               const torch::Tensor& keys,
                                               const torch::Tensor& values) {
  auto h = x + self_attn->forward_cached(input_layernorm(x), in, keys, values);
  return h + mlp->forward_few_rows(post_attention_layernorm(h));
}

torch::Tensor DecoderLayerImpl::forward_cached_rows(const torch::Tensor& x,
                                                    const std::vector<CachedRowSpan>& rows) {
  if (rows.empty()) return x;
  auto qkv = self_attn->project_qkv(input_layernorm(x), LinearProducts::RowInvariant);
  // Each row's keys and values into its cache, then attention for every (row, key/value head)
  // pair in one parallel region (each pair on one thread: a pair's result does not depend on
  // the thread count or on the other rows).
  std::vector<torch::Tensor> q(rows.size()), keys(rows.size()), values(rows.size());
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const CachedRowSpan& span = rows[r];
    q[r] = self_attn->cache_queries(qkv.narrow(0, span.begin, span.count), *span.in, span.keys,
                                    span.values);
    keys[r] = span.keys.narrow(1, span.in->key_begin, span.in->key_count);
    values[r] = span.values.narrow(1, span.in->key_begin, span.in->key_count);
  }
  // Attention output in the cache's dtype.
  auto o = torch::empty({x.size(0), self_attn->query_width()}, rows[0].values.options());
  const std::int64_t groups = rows[0].keys.size(0);
  const auto tasks = std::int64_t(rows.size()) * groups;
  auto attend_pair = [&](std::int64_t i) {
    const auto r = std::size_t(i / groups);
    attend_group(q[r], keys[r], values[r], rows[r].in->bias, i % groups,
                 o.narrow(0, rows[r].begin, rows[r].count));
  };
  if (tasks > 1 && at::get_num_threads() > 1) {
    const at::ThreadLocalState state;  // the workers take this thread's grad mode
    parallel_blocks(tasks, 1, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
      at::ThreadLocalStateGuard guard(state);
      for (auto i = begin; i < end; ++i) attend_pair(i);
    });
  } else {
    for (std::int64_t i = 0; i < tasks; ++i) attend_pair(i);
  }
  auto h = x + self_attn->project_output(o.to(x.scalar_type()), LinearProducts::RowInvariant);
  return h + mlp->forward_rows_invariant(post_attention_layernorm(h));
}

torch::Tensor LlamaForCausalLMImpl::forward_cached_row(LlamaKeyValueCache& cache, std::int64_t row,
                                                       const torch::Tensor& tokens,
                                                       const CachedRowInputs& in) {
  auto h = model->embed_tokens(tokens);  // [n, H]
  for (std::size_t l = 0; l < model->layers.size(); ++l)
    h = model->layers[l]->forward_cached(h, in, cache.keys[l][row], cache.values[l][row]);
  return model->norm(h);
}

// ---- making the cache --------------------------------------------------------------------
torch::Tensor LlamaForCausalLMImpl::forward_caching(const torch::Tensor& input_ids,
                                                    const torch::Tensor& position_ids,
                                                    const torch::Tensor& segment_ids,
                                                    LlamaKeyValueCache& cache) {
  // bf16 frozen matrices: under bf16 autocast (the rows' threads inherit it).
  const bool cuda = input_ids.is_cuda();
  AutocastGuard autocast(bf16_matrices_ && !autocast_enabled(cuda), cuda);
  constexpr const char* where = "forward_caching";
  if (input_ids.dim() != 2 || input_ids.size(0) < 1 || input_ids.size(1) < 1)
    fail(where, "input_ids must be [B, S] with B, S >= 1, got " + shape(input_ids));
  if ((position_ids.defined() && position_ids.sizes() != input_ids.sizes()) ||
      (segment_ids.defined() && segment_ids.sizes() != input_ids.sizes()))
    fail(where, "position_ids " + shape(position_ids) + " and segment_ids " + shape(segment_ids) +
                    " must be undefined or input_ids' shape " + shape(input_ids));
  if (cache.batch_size() != input_ids.size(0) || cache.sequence_length() != input_ids.size(1))
    throw std::logic_error("forward_caching: the cache was made for other inputs");
  torch::NoGradGuard no_grad;
  const auto B = input_ids.size(0), S = input_ids.size(1);
  const auto device = input_ids.device();
  auto pos =
      position_ids.defined()
          ? position_ids.to(device)
          : torch::arange(S, torch::dtype(torch::kLong).device(device)).unsqueeze(0).expand({B, S});
  auto seg = segment_ids.defined() ? segment_ids.to(device) : torch::Tensor();
  const auto layers = model->layers.size();
  cache.keys.assign(layers, {});
  cache.values.assign(layers, {});
  torch::Tensor hidden;  // [B, S, H], in the dtype the first pass returns
  auto allocate = [&](const torch::Tensor& h, const std::vector<LayerKeyValues>& kv) {
    if (hidden.defined()) return;
    hidden = torch::zeros({B, S, h.size(-1)}, h.options());
    for (std::size_t l = 0; l < layers; ++l) {
      auto dims = kv[l].keys.sizes().vec();  // [b, KV, s, D]
      dims[0] = B, dims[2] = S;
      cache.keys[l] = torch::zeros(dims, kv[l].keys.options());
      cache.values[l] = torch::zeros(dims, kv[l].values.options());
    }
  };

  std::vector<std::int64_t> loose;  // b * S + j: padding outside row b's span
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t lo = S, hi = 0;
    for (std::int64_t j = 0; j < S; ++j)
      if (cache.segment(b, j) != 0) lo = std::min(lo, j), hi = std::max(hi, j + 1);
    for (std::int64_t j = 0; j < S; ++j)
      if (j < lo || j >= hi) loose.push_back(b * S + j);
    if (lo >= hi) continue;
    const std::int64_t L = hi - lo;
    // One segment in the span: no mask at all (as a solo run without padding has it).
    bool one_segment = true;
    for (std::int64_t j = lo; j < hi; ++j)
      one_segment = one_segment && cache.segment(b, j) == cache.segment(b, lo);
    auto span = [&](const torch::Tensor& t) { return t.narrow(0, b, 1).narrow(1, lo, L); };
    std::vector<LayerKeyValues> kv;
    auto h = forward(span(input_ids), span(pos), one_segment ? torch::Tensor() : span(seg),
                     sdk::AttentionSpec::bidirectional(), &kv);
    allocate(h, kv);
    hidden[b].narrow(0, lo, L).copy_(h[0]);
    for (std::size_t l = 0; l < layers; ++l) {
      cache.keys[l][b].narrow(1, lo, L).copy_(kv[l].keys[0]);
      cache.values[l][b].narrow(1, lo, L).copy_(kv[l].values[0]);
    }
  }
  if (!loose.empty()) {
    // Padding outside the spans sees only itself: a one-token sequence each, all at once.
    auto idx = torch::tensor(loose).to(device);
    std::vector<LayerKeyValues> kv;
    auto h = forward(input_ids.reshape({-1}).index_select(0, idx).unsqueeze(1),
                     pos.reshape({-1}).index_select(0, idx).unsqueeze(1), torch::Tensor(),
                     sdk::AttentionSpec::bidirectional(), &kv);  // [P, 1, H]
    allocate(h, kv);
    hidden.view({B * S, -1}).index_copy_(0, idx, h.squeeze(1));
    auto rows = idx.div(S, "floor"), cols = idx.remainder(S);
    using torch::indexing::Slice;
    for (std::size_t l = 0; l < layers; ++l) {
      cache.keys[l].index_put_({rows, Slice(), cols}, kv[l].keys.squeeze(2));  // [P, KV, D]
      cache.values[l].index_put_({rows, Slice(), cols}, kv[l].values.squeeze(2));
    }
  }
  return hidden;
}

// ---- using it ----------------------------------------------------------------------------
torch::Tensor LlamaForCausalLMImpl::forward_cached(LlamaKeyValueCache& cache,
                                                   const torch::Tensor& input_ids,
                                                   const torch::Tensor& positions) {
  // bf16 frozen matrices: under bf16 autocast (the rows' threads inherit it).
  const bool cuda = input_ids.is_cuda();
  AutocastGuard autocast(bf16_matrices_ && !autocast_enabled(cuda), cuda);
  constexpr const char* where = "forward_cached";
  if (input_ids.dim() != 2 || positions.dim() != 2 || input_ids.sizes() != positions.sizes())
    fail(where, "input_ids and positions must both be [B, Q], got " + shape(input_ids) + " and " +
                    shape(positions));
  if (positions.scalar_type() != torch::kLong)
    fail(where,
         std::string("positions must be int64, got ") + c10::toString(positions.scalar_type()));
  if (!c10::isIntegralType(input_ids.scalar_type(), /*includeBool=*/false))
    fail(where,
         std::string("input_ids must be integer, got ") + c10::toString(input_ids.scalar_type()));
  const auto B = input_ids.size(0), Q = input_ids.size(1);
  const auto S = cache.sequence_length(), V = config_.vocab_size;
  if (B != cache.batch_size())
    fail(where, "a batch of " + std::to_string(B) + " rows, but the cache holds " +
                    std::to_string(cache.batch_size()));
  if (cache.keys.empty() || cache.keys.size() != model->layers.size() || !cache.keys[0].defined())
    fail(where, "the cache does not belong to this model");

  // Plan each row on the CPU (one copy of the small index tensors; nothing per layer).
  auto pos_cpu = positions.to(torch::kCPU).contiguous();
  auto ids_cpu = input_ids.to(torch::kCPU, torch::kLong).contiguous();
  const std::int64_t* pp = pos_cpu.data_ptr<std::int64_t>();
  const std::int64_t* ip = ids_cpu.data_ptr<std::int64_t>();
  struct RowWork {
    std::int64_t row = 0;
    std::vector<std::int64_t> slots, positions, tokens;
    CachedRowInputs in;
    torch::Tensor token_ids, out;
  };
  std::vector<RowWork> work;
  for (std::int64_t b = 0; b < B; ++b) {
    RowWork w;
    w.row = b;
    std::vector<char> seen(std::size_t(S), 0);
    for (std::int64_t q = 0; q < Q; ++q) {
      const std::int64_t p = pp[b * Q + q], id = ip[b * Q + q];
      const std::string at = " (row " + std::to_string(b) + ", slot " + std::to_string(q) + ")";
      if (p == -1) continue;
      if (p < -1 || p >= S)
        fail(where, "position " + std::to_string(p) + at + " is out of range: -1 (unused) or 0.." +
                        std::to_string(S - 1) + " expected");
      if (seen[std::size_t(p)])
        fail(where, "position " + std::to_string(p) + at + " appears twice in its row");
      if (id < 0 || id >= V)
        fail(where, "token id " + std::to_string(id) + at + " is outside the vocabulary of " +
                        std::to_string(V));
      seen[std::size_t(p)] = 1;
      w.slots.push_back(q), w.positions.push_back(p), w.tokens.push_back(id);
    }
    if (!w.slots.empty()) work.push_back(std::move(w));
  }

  torch::NoGradGuard no_grad;
  const auto device = cache.keys[0].device();
  const auto math = cache.keys[0].scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
  move_rope_tables(device);
  for (auto& w : work) {
    const auto plan = cache.plan_row(w.row, w.positions);
    auto rope = torch::tensor(plan.rope_positions).to(device);
    w.in.cos = rope_cos_.index_select(0, rope).unsqueeze(1);  // [n, 1, D]
    w.in.sin = rope_sin_.index_select(0, rope).unsqueeze(1);
    w.in.slots = torch::tensor(w.positions).to(device);
    w.in.key_begin = plan.key_begin;
    w.in.key_count = plan.key_end - plan.key_begin;
    if (plan.bias.defined()) w.in.bias = plan.bias.to(device, math);
    w.token_ids = torch::tensor(w.tokens).to(device);
  }
  const auto H = config_.hidden_size;
  if (device.is_cpu() && math == torch::kFloat && !autocast_enabled(/*cuda=*/false) &&
      model->embed_tokens->weight.scalar_type() == torch::kFloat && !work.empty()) {
    // Layer-major: every row's queries through each product at once (row_invariant_linear:
    // a row's results do not depend on the others), attention row by row. One product per
    // weight for the whole batch instead of one per row.
    std::vector<std::int64_t> all_tokens;
    std::vector<CachedRowSpan> spans(work.size());
    for (std::size_t i = 0; i < work.size(); ++i) {
      spans[i].begin = std::int64_t(all_tokens.size());
      spans[i].count = std::int64_t(work[i].tokens.size());
      spans[i].in = &work[i].in;
      all_tokens.insert(all_tokens.end(), work[i].tokens.begin(), work[i].tokens.end());
    }
    auto h = model->embed_tokens(torch::tensor(all_tokens));  // [T, H]
    for (std::size_t l = 0; l < model->layers.size(); ++l) {
      for (std::size_t i = 0; i < work.size(); ++i) {
        spans[i].keys = cache.keys[l][work[i].row];
        spans[i].values = cache.values[l][work[i].row];
      }
      h = model->layers[l]->forward_cached_rows(h, spans);
    }
    h = model->norm(h);
    auto out = torch::zeros({B, Q, H}, h.options());
    for (std::size_t i = 0; i < work.size(); ++i)
      out[work[i].row].index_copy_(0, torch::tensor(work[i].slots),
                                   h.narrow(0, spans[i].begin, spans[i].count));
    return out;
  }

  // Elsewhere (CUDA, fp64, bf16 autocast) each row whole on its own, one after another, with
  // every thread inside its operations: running rows in parallel would give a batched row
  // single-threaded products where its solo run has threaded ones, which a BLAS does not
  // promise to round alike.
  for (auto& w : work) w.out = forward_cached_row(cache, w.row, w.token_ids, w.in);
  auto out =
      torch::zeros({B, Q, H}, work.empty() ? model->norm->weight.options() : work[0].out.options());
  for (auto& w : work) out[w.row].index_copy_(0, torch::tensor(w.slots).to(device), w.out);
  return out;
}

}  // namespace loom
