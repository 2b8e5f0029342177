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

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <string>

#include "errors.hpp"
#include "model/cpu_kernels.hpp"
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

// The queries of one cache row in a cached pass: their slots in the caller's [B, Q] output,
// their positions in the row and their token ids; `in` is filled by plan_queries.
struct CachedQueries {
  std::int64_t row = 0;
  std::vector<std::int64_t> slots, positions, tokens;
  CachedRowInputs in;
  torch::Tensor token_ids, out;
};

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

namespace {

// f(begin, count) for rows [begin, begin + count) of T rows, in chunks of at most kTokenChunk
// rows, results stacked: the per-position parts of a layer-major pass keep their temporaries
// (the MLP's [T, 2 * intermediate] above all) to a chunk's size. Rows are independent in all
// of them, so the chunks change no bit.
constexpr std::int64_t kTokenChunk = 4096;
template <class F>
torch::Tensor by_token_chunks(std::int64_t T, F&& f) {
  if (T <= kTokenChunk) return f(0, T);
  torch::Tensor out;
  for (std::int64_t b = 0; b < T; b += kTokenChunk) {
    auto part = f(b, std::min(kTokenChunk, T - b));
    if (!out.defined()) {
      auto shape = part.sizes().vec();
      shape[0] = T;
      out = torch::empty(shape, part.options());
    }
    out.narrow(0, b, part.size(0)).copy_(part);
  }
  return out;
}

}  // namespace

torch::Tensor DecoderLayerImpl::forward_cached_rows(const torch::Tensor& x,
                                                    const std::vector<CachedRowSpan>& rows) {
  if (rows.empty()) return x;
  auto qkv = by_token_chunks(x.size(0), [&](std::int64_t begin, std::int64_t count) {
               return self_attn->project_qkv(input_layernorm(x.narrow(0, begin, count)),
                                             LinearProducts::RowInvariant);
             }).contiguous();
  const std::int64_t H = self_attn->heads(), KV = self_attn->kv_heads(), D = self_attn->head_dim();
  const std::int64_t rep = H / KV, C = qkv.size(1);
  const int threads = at::get_num_threads();
  const auto pairs = std::int64_t(rows.size()) * KV;
  const float scale = float(1.0 / std::sqrt(double(D)));
  if (qkv.scalar_type() != torch::kFloat || rows[0].keys.scalar_type() != torch::kFloat)
    throw std::logic_error("forward_cached_rows: fp32 only");

  // Parallel regions whose tasks each run on one thread (so a task's result does not depend on
  // the thread count or on the other tasks; ATen ops inside run on that thread), RoPE and the
  // copies in loom's own loops rather than ATen element-wise ops, each of which would open a
  // region of its own and wake the threads again:
  // 1. per (row, key/value head): the head's new keys (RoPE) and values into the row's cache,
  //    and its query heads with RoPE and 1/sqrt(D) into a head-major buffer [H, n, D] (as the
  //    fused attention kernel does); also its values over the key range, transposed for p @ V
  //    -- in a region of their own when two items share a cache row (several segments, or
  //    padding, in one row of a full pass), since one item's range may cover slots another
  //    item writes (masked, but they must hold what that item wrote, not unset memory);
  // 2. per (row, key/value head, range of queries): attention.
  bool shared_rows = false;
  for (std::size_t r = 0; r < rows.size() && !shared_rows; ++r)
    for (std::size_t t = r + 1; t < rows.size() && !shared_rows; ++t)
      shared_rows = rows[r].keys.data_ptr() == rows[t].keys.data_ptr();
  std::vector<torch::Tensor> q(rows.size()), values_t(static_cast<std::size_t>(pairs));
  for (std::size_t r = 0; r < rows.size(); ++r)
    if (!rows[r].in->self_only) q[r] = torch::empty({H, rows[r].count, D}, qkv.options());
  const float* qkv_p = qkv.data_ptr<float>();
  auto transpose_values = [&](std::int64_t i) {
    const CachedRowSpan& span = rows[std::size_t(i / KV)];
    if (span.in->self_only) return;
    values_t[std::size_t(i)] =
        span.values[i % KV].narrow(0, span.in->key_begin, span.in->key_count).t().contiguous();
  };
  auto prepare_pair = [&](std::int64_t i) {
    const CachedRowSpan& span = rows[std::size_t(i / KV)];
    const std::int64_t g = i % KV, n = span.count;
    const float* src = qkv_p + span.begin * C;
    const float* cos = span.in->cos.data_ptr<float>();
    const float* sin = span.in->sin.data_ptr<float>();
    auto k = torch::empty({n, D}, qkv.options());
    kernels::rope_rows(src + (H + g) * D, C, cos, sin, k.data_ptr<float>(), n, D, 1.0f);
    span.keys[g].index_copy_(0, span.in->slots, k);
    span.values[g].index_copy_(0, span.in->slots,
                               qkv.narrow(0, span.begin, n).narrow(1, (H + KV + g) * D, D));
    if (span.in->self_only) return;
    if (!shared_rows) transpose_values(i);
    float* qh = q[std::size_t(i / KV)].data_ptr<float>();
    for (std::int64_t h = g * rep; h < (g + 1) * rep; ++h)
      kernels::rope_rows(src + h * D, C, cos, sin, qh + h * n * D, n, D, scale);
  };

  // Each pair's queries in ranges: few enough rows that a range's scores stay small (a full
  // pass has as many queries as keys), and enough ranges to give every thread work when there
  // are fewer pairs than threads. The split changes no bit.
  struct Task {
    std::int64_t pair, q_begin, q_end;
  };
  std::vector<Task> tasks;
  for (std::int64_t i = 0; i < pairs; ++i) {
    const auto& span = rows[std::size_t(i / KV)];
    const auto n = span.count, L = std::max<std::int64_t>(1, span.in->key_count);
    std::int64_t chunk =
        span.in->self_only ? n : std::max<std::int64_t>(16, (std::int64_t(1) << 20) / (rep * L));
    if (pairs < threads) {
      const std::int64_t per_pair = (threads + pairs - 1) / pairs;
      chunk = std::min(chunk, std::max<std::int64_t>(16, (n + per_pair - 1) / per_pair));
    }
    for (std::int64_t b = 0; b < n; b += chunk) tasks.push_back({i, b, std::min(n, b + chunk)});
  }
  auto o = torch::empty({x.size(0), H * D}, qkv.options());
  auto attend_task = [&](std::int64_t t) {
    const Task& task = tasks[std::size_t(t)];
    const CachedRowSpan& span = rows[std::size_t(task.pair / KV)];
    const std::int64_t g = task.pair % KV, m = task.q_end - task.q_begin;
    auto out = o.narrow(0, span.begin + task.q_begin, m).view({m, H, D}).narrow(1, g * rep, rep);
    if (span.in->self_only) {
      // One key: softmax gives it weight 1, and the output is its value.
      auto v = qkv.narrow(0, span.begin + task.q_begin, m).narrow(1, (H + KV + g) * D, D);
      out.copy_(v.unsqueeze(1).expand({m, rep, D}));
      return;
    }
    const auto L = span.in->key_count;
    // The group's query heads for queries [q_begin, q_end): [rep, m, D] -> [rep m, D].
    auto qg = q[std::size_t(task.pair / KV)]
                  .narrow(0, g * rep, rep)
                  .narrow(1, task.q_begin, m)
                  .reshape({rep * m, D});
    auto scores = row_invariant_linear(qg, span.keys[g].narrow(0, span.in->key_begin, L));
    if (span.in->bias.defined())
      scores.view({rep, m, L}).add_(span.in->bias.narrow(0, task.q_begin, m));
    auto p = torch::softmax(scores, -1);
    auto pv = row_invariant_linear(p, values_t[std::size_t(task.pair)]);  // [rep m, D]
    out.copy_(pv.view({rep, m, D}).transpose(0, 1));
  };
  auto run = [&](std::int64_t count, const std::function<void(std::int64_t)>& fn) {
    if (count > 1 && threads > 1) {
      const at::ThreadLocalState state;  // the workers take this thread's grad mode
      parallel_blocks(count, 1, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
        at::ThreadLocalStateGuard guard(state);
        for (auto i = begin; i < end; ++i) fn(i);
      });
    } else {
      for (std::int64_t i = 0; i < count; ++i) fn(i);
    }
  };
  if (!shared_rows && std::int64_t(tasks.size()) == pairs) {
    // One range per pair (the usual case): a pair's attention needs only what its own
    // preparation wrote, so both run in one task -- one region, one wake-up of the threads.
    run(pairs, [&](std::int64_t i) {
      prepare_pair(i);
      attend_task(i);
    });
  } else {
    run(pairs, prepare_pair);
    if (shared_rows) run(pairs, transpose_values);
    run(std::int64_t(tasks.size()), attend_task);
  }
  return by_token_chunks(x.size(0), [&](std::int64_t begin, std::int64_t count) {
    auto h = x.narrow(0, begin, count) +
             self_attn->project_output(o.narrow(0, begin, count), LinearProducts::RowInvariant);
    return h + mlp->forward_rows_invariant(post_attention_layernorm(h));
  });
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
  if (runs_layer_major(device, torch::kFloat))  // (also checks that the weights are fp32)
    return forward_caching_layer_major(input_ids, cache);
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
  std::vector<CachedQueries> work;
  for (std::int64_t b = 0; b < B; ++b) {
    CachedQueries w;
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
  plan_queries(cache, work, device, math);
  const auto H = config_.hidden_size;
  if (runs_layer_major(device, math) && !work.empty()) return forward_layer_major(cache, work, Q);

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

// ---- shared by both passes ------------------------------------------------------------------
bool LlamaForCausalLMImpl::runs_layer_major(const at::Device& device, at::ScalarType math) const {
  const auto& weight = model->embed_tokens->weight;
  return device.is_cpu() && weight.device().is_cpu() && math == torch::kFloat &&
         !autocast_enabled(/*cuda=*/false) && weight.scalar_type() == torch::kFloat;
}

void LlamaForCausalLMImpl::plan_queries(const LlamaKeyValueCache& cache,
                                        std::vector<CachedQueries>& work, const at::Device& device,
                                        at::ScalarType math) {
  move_rope_tables(device);
  for (auto& w : work) {
    CachedRowPlan plan;
    if (w.in.self_only) {
      for (auto p : w.positions) plan.rope_positions.push_back(cache.position_id(w.row, p));
    } else {
      plan = cache.plan_row(w.row, w.positions);
    }
    for (auto p : plan.rope_positions)
      if (p < 0 || p >= config_.max_position_embeddings)
        throw UserError("position id " + std::to_string(p) + " of row " + std::to_string(w.row) +
                        " is outside max_position_embeddings (" +
                        std::to_string(config_.max_position_embeddings) + ")");
    auto rope = torch::tensor(plan.rope_positions).to(device);
    w.in.cos = rope_cos_.index_select(0, rope).unsqueeze(1);  // [n, 1, D]
    w.in.sin = rope_sin_.index_select(0, rope).unsqueeze(1);
    w.in.slots = torch::tensor(w.positions).to(device);
    w.in.key_begin = plan.key_begin;
    w.in.key_count = plan.key_end - plan.key_begin;
    if (plan.bias.defined()) w.in.bias = plan.bias.to(device, math);
    w.token_ids = torch::tensor(w.tokens).to(device);
  }
}

torch::Tensor LlamaForCausalLMImpl::forward_layer_major(LlamaKeyValueCache& cache,
                                                        const std::vector<CachedQueries>& work,
                                                        std::int64_t width) {
  // Every row's queries through each product at once (row_invariant_linear: a row's results
  // do not depend on the others), attention row by row. One product per weight for the whole
  // batch instead of one per row.
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
  // Each item's rows to its slots of [B, width, H].
  auto out = torch::zeros({cache.batch_size(), width, h.size(1)}, h.options());
  for (std::size_t i = 0; i < work.size(); ++i)
    out[work[i].row].index_copy_(0, torch::tensor(work[i].slots),
                                 h.narrow(0, spans[i].begin, spans[i].count));
  return out;
}

torch::Tensor LlamaForCausalLMImpl::forward_caching_layer_major(const torch::Tensor& input_ids,
                                                                LlamaKeyValueCache& cache) {
  // The cache's layers as zeros, then one cached pass whose queries are every position: each
  // segment of a row attends over exactly its own keys, written by the same pass (a query sees
  // its own new keys), and a row's padding positions each see only themselves. So this is
  // forward(bidirectional) per segment, with the cached pass's products -- the same bits for
  // a row alone or in a batch, with any thread count. (All of a row's padding is one item whose
  // queries see only themselves: CachedRowInputs::self_only.)
  const auto B = input_ids.size(0), S = input_ids.size(1);
  const auto KV = config_.num_key_value_heads, D = config_.head_dim();
  const auto layers = model->layers.size();
  const auto opts = torch::dtype(torch::kFloat);
  // Not zeroed: every position belongs to exactly one item below, which writes its keys and
  // values in every layer.
  for (std::size_t l = 0; l < layers; ++l) {
    cache.keys[l] = torch::empty({B, KV, S, D}, opts);
    cache.values[l] = torch::empty({B, KV, S, D}, opts);
  }
  if (!c10::isIntegralType(input_ids.scalar_type(), /*includeBool=*/false))
    fail("forward_caching",
         std::string("input_ids must be integer, got ") + c10::toString(input_ids.scalar_type()));
  auto ids_cpu = input_ids.to(torch::kLong).contiguous();
  const std::int64_t* ip = ids_cpu.data_ptr<std::int64_t>();
  const auto V = config_.vocab_size;
  std::vector<CachedQueries> work;
  for (std::int64_t b = 0; b < B; ++b) {
    std::vector<std::int64_t> segments;  // in order of first appearance; 0 (padding) last
    bool padding = false;
    for (std::int64_t j = 0; j < S; ++j) {
      const auto s = cache.segment(b, j);
      if (s == 0)
        padding = true;
      else if (std::find(segments.begin(), segments.end(), s) == segments.end())
        segments.push_back(s);
    }
    if (padding) segments.push_back(0);
    for (auto s : segments) {
      CachedQueries w;
      w.row = b;
      w.in.self_only = s == 0;
      for (std::int64_t j = 0; j < S; ++j) {
        if (cache.segment(b, j) != s) continue;
        const auto id = ip[b * S + j];
        if (id < 0 || id >= V)
          throw UserError("token id " + std::to_string(id) + " (row " + std::to_string(b) +
                          ", position " + std::to_string(j) + ") is outside the vocabulary of " +
                          std::to_string(V));
        w.slots.push_back(j), w.positions.push_back(j), w.tokens.push_back(id);
      }
      work.push_back(std::move(w));
    }
  }
  plan_queries(cache, work, torch::kCPU, torch::kFloat);
  return forward_layer_major(cache, work, S);
}

}  // namespace loom
