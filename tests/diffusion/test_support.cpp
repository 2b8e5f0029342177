#include "test_support.hpp"

#include <cmath>
#include <stdexcept>

namespace loom::diffusion::testing {

// --- ByteTokenizer ---------------------------------------------------------------------------

std::int64_t ByteTokenizer::vocab_size() const {
  return 259 + static_cast<std::int64_t>(added_.size());
}

std::vector<std::int64_t> ByteTokenizer::encode(const std::string& text) const {
  std::vector<std::int64_t> ids;
  std::size_t i = 0;
  while (i < text.size()) {
    bool matched = false;
    for (std::size_t k = 0; k < added_.size() && !matched; ++k) {
      if (text.compare(i, added_[k].size(), added_[k]) == 0) {
        ids.push_back(259 + static_cast<std::int64_t>(k));
        i += added_[k].size();
        matched = true;
      }
    }
    if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
  }
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<std::int64_t>& ids, bool skip_special) const {
  std::string out;
  for (auto id : ids) {
    if (id >= 0 && id < 256)
      out += static_cast<char>(id);
    else if (!skip_special)
      out += id_to_token(id);
  }
  return out;
}

std::optional<std::int64_t> ByteTokenizer::token_to_id(const std::string& token) const {
  if (token == "<s>") return kBos;
  if (token == "</s>") return kEos;
  if (token == "<pad>") return kPad;
  for (std::size_t k = 0; k < added_.size(); ++k)
    if (added_[k] == token) return 259 + static_cast<std::int64_t>(k);
  if (token.size() == 1) return static_cast<unsigned char>(token[0]);
  return std::nullopt;
}

std::string ByteTokenizer::id_to_token(std::int64_t id) const {
  if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
  if (id == kBos) return "<s>";
  if (id == kEos) return "</s>";
  if (id == kPad) return "<pad>";
  if (id >= 259 && id < vocab_size()) return added_[static_cast<std::size_t>(id - 259)];
  return "<unk>";
}

std::int64_t ByteTokenizer::add_special_token(const std::string& token) {
  if (auto id = token_to_id(token); id && token.size() > 1) return *id;
  added_.push_back(token);
  return vocab_size() - 1;
}

bool ByteTokenizer::is_special(std::int64_t id) const { return id >= 256; }

// --- TinyModel -------------------------------------------------------------------------------

TinyNetImpl::TinyNetImpl(std::int64_t vocab, std::int64_t hidden, std::int64_t max_positions) {
  embed = register_parameter("embed", torch::randn({vocab, hidden}) * 0.1);
  pos_embed = register_parameter("pos_embed", torch::randn({max_positions, hidden}) * 0.1);
  lm_head = register_parameter("lm_head", torch::randn({vocab, hidden}) * 0.1);
  q = register_module("q", torch::nn::Linear(hidden, hidden));
  k = register_module("k", torch::nn::Linear(hidden, hidden));
  v = register_module("v", torch::nn::Linear(hidden, hidden));
  o = register_module("o", torch::nn::Linear(hidden, hidden));
  up = register_module("up", torch::nn::Linear(hidden, 2 * hidden));
  down = register_module("down", torch::nn::Linear(2 * hidden, hidden));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({hidden})));
}

TinyModel::TinyModel(std::int64_t vocab, std::int64_t hidden, std::int64_t max_positions,
                     std::uint64_t seed)
    : net_(nullptr) {
  torch::manual_seed(seed);
  net_ = TinyNet(vocab, hidden, max_positions);
}

void TinyModel::resize_vocab(std::int64_t new_vocab_size) {
  ++resize_calls;
  torch::NoGradGuard no_grad;
  for (torch::Tensor* w : {&net_->embed, &net_->lm_head}) {
    const auto old = w->size(0);
    if (new_vocab_size <= old) continue;
    auto mean = w->mean(0, /*keepdim=*/true);
    w->set_data(torch::cat({*w, mean.expand({new_vocab_size - old, w->size(1)})}).contiguous());
  }
}

sdk::ModelOutput TinyModel::forward(const at::Tensor& input_ids, const at::Tensor& position_ids,
                                    const at::Tensor& segment_ids,
                                    const sdk::AttentionSpec& attention) {
  seen_attention.push_back(attention.kind);
  ++forward_calls;
  forward_inputs.push_back(input_ids.clone());
  const auto B = input_ids.size(0), S = input_ids.size(1);
  auto pos = position_ids.defined() ? position_ids
                                    : torch::arange(S, torch::kLong).unsqueeze(0).expand({B, S});
  auto seg = segment_ids.defined() ? segment_ids : torch::ones({B, S}, torch::kLong);
  auto x = net_->embed.index_select(0, input_ids.reshape({-1})).view({B, S, -1}) +
           net_->pos_embed.index_select(0, pos.reshape({-1})).view({B, S, -1});  // [B, S, H]
  // May query i attend key j: same segment, key not padding, (causal: j <= i).
  auto allowed = seg.unsqueeze(2).eq(seg.unsqueeze(1)) & seg.unsqueeze(1).ne(0);  // [B, S, S]
  if (attention.kind == sdk::AttentionSpec::Kind::Causal)
    allowed = allowed & torch::ones({S, S}, torch::kBool).tril().unsqueeze(0);
  if (attention.kind == sdk::AttentionSpec::Kind::Explicit) allowed = attention.mask.squeeze(1);
  allowed = allowed | torch::eye(S, torch::kBool).unsqueeze(0);  // padding queries: no NaN
  const double scale = 1.0 / std::sqrt(static_cast<double>(x.size(2)));
  auto scores = torch::matmul(net_->q(x), net_->k(x).transpose(1, 2)) * scale;  // [B, S, S]
  scores = scores.masked_fill(allowed.logical_not(), -1e9);
  x = x + net_->o(torch::matmul(torch::softmax(scores, -1), net_->v(x)));
  x = x + net_->down(torch::gelu(net_->up(x)));
  sdk::ModelOutput out;
  out.hidden = net_->norm(x);
  auto head = net_->lm_head;
  out.project = [head](const at::Tensor& h) { return torch::matmul(h, head.t()); };
  return out;
}

namespace {

struct TinyCache : sdk::KeyValueCache {
  at::Tensor k, v;                 // [B, S, H] the layer's keys and values
  at::Tensor segments, positions;  // [B, S]
  std::int64_t batch_size() const override { return k.size(0); }
  std::int64_t sequence_length() const override { return k.size(1); }
};

}  // namespace

std::unique_ptr<sdk::KeyValueCache> TinyModel::forward_caching(const at::Tensor& input_ids,
                                                               const at::Tensor& position_ids,
                                                               const at::Tensor& segment_ids,
                                                               sdk::ModelOutput* out) {
  if (!with_cache) return nullptr;
  ++caching_calls;
  *out = forward(input_ids, position_ids, segment_ids, sdk::AttentionSpec::bidirectional());
  const auto B = input_ids.size(0), S = input_ids.size(1);
  auto cache = std::make_unique<TinyCache>();
  cache->positions = position_ids.defined()
                         ? position_ids.clone()
                         : torch::arange(S, torch::kLong).unsqueeze(0).expand({B, S}).clone();
  cache->segments = segment_ids.defined() ? segment_ids.clone() : torch::ones({B, S}, torch::kLong);
  auto x = net_->embed.index_select(0, input_ids.reshape({-1})).view({B, S, -1}) +
           net_->pos_embed.index_select(0, cache->positions.reshape({-1})).view({B, S, -1});
  cache->k = net_->k(x);
  cache->v = net_->v(x);
  return cache;
}

sdk::ModelOutput TinyModel::forward_cached(sdk::KeyValueCache& base, const at::Tensor& input_ids,
                                           const at::Tensor& positions) {
  ++cached_calls;
  cached_positions.push_back(positions.clone());
  auto& cache = dynamic_cast<TinyCache&>(base);
  const auto B = input_ids.size(0), Q = input_ids.size(1), S = cache.k.size(1);
  auto valid = positions.ge(0);
  auto p = positions.clamp_min(0);
  auto pos = cache.positions.gather(1, p);
  auto x = net_->embed.index_select(0, input_ids.reshape({-1})).view({B, Q, -1}) +
           net_->pos_embed.index_select(0, pos.reshape({-1})).view({B, Q, -1});  // [B, Q, H]
  auto rows = torch::arange(B, torch::kLong).unsqueeze(1).expand({B, Q});
  cache.k.index_put_({rows.masked_select(valid), p.masked_select(valid)},
                     net_->k(x).index({valid}));
  cache.v.index_put_({rows.masked_select(valid), p.masked_select(valid)},
                     net_->v(x).index({valid}));
  auto seg_q = cache.segments.gather(1, p);  // [B, Q]
  auto allowed = seg_q.unsqueeze(2).eq(cache.segments.unsqueeze(1)) &
                 cache.segments.unsqueeze(1).ne(0);  // [B, Q, S]
  allowed = allowed | torch::arange(S, torch::kLong).view({1, 1, S}).eq(p.unsqueeze(2));
  const double scale = 1.0 / std::sqrt(static_cast<double>(x.size(2)));
  auto scores = torch::matmul(net_->q(x), cache.k.transpose(1, 2)) * scale;  // [B, Q, S]
  scores = scores.masked_fill(allowed.logical_not(), -1e9);
  x = x + net_->o(torch::matmul(torch::softmax(scores, -1), cache.v));
  x = x + net_->down(torch::gelu(net_->up(x)));
  sdk::ModelOutput out;
  out.hidden = net_->norm(x);
  auto head = net_->lm_head;
  out.project = [head](const at::Tensor& h) { return torch::matmul(h, head.t()); };
  return out;
}

// --- PositionalModel -------------------------------------------------------------------------

PositionalModel::PositionalModel(at::Tensor table) : table_(std::move(table)) {}

sdk::ModelOutput PositionalModel::forward(const at::Tensor& input_ids, const at::Tensor&,
                                          const at::Tensor&, const sdk::AttentionSpec&) {
  inputs.push_back(input_ids.clone());
  training_during_forward = training_;
  const auto B = input_ids.size(0), S = input_ids.size(1);
  sdk::ModelOutput out;
  out.hidden = torch::eye(table_.size(1)).narrow(0, 0, S).unsqueeze(0).expand({B, S, -1});
  auto table = table_;
  out.project = [table](const at::Tensor& h) { return torch::matmul(h, table.t()); };
  return out;
}

// --- batches ---------------------------------------------------------------------------------

at::Tensor to_tensor(const std::vector<std::vector<std::int64_t>>& rows) {
  const auto B = static_cast<std::int64_t>(rows.size());
  const auto S = static_cast<std::int64_t>(rows.at(0).size());
  auto t = torch::empty({B, S}, torch::kLong);
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t s = 0; s < S; ++s) t[b][s] = rows[b][s];
  return t;
}

at::Tensor start_sequence(std::int64_t prompt, std::int64_t masks, std::int64_t mask_id) {
  auto x = torch::full({prompt + masks}, mask_id, torch::kLong);
  for (std::int64_t i = 0; i < prompt; ++i) x[i] = 1 + i;
  return x;
}

diffusion::SamplerOptions sampler_options(std::int64_t steps, std::int64_t block_length, std::int64_t mask_id) {
  diffusion::SamplerOptions o;
  o.steps = steps;
  o.block_length = block_length;
  o.mask_token_id = mask_id;
  return o;
}

std::vector<std::int64_t> to_vector(const at::Tensor& t) {
  auto c = t.to(torch::kLong).contiguous().reshape({-1});
  return {c.data_ptr<std::int64_t>(), c.data_ptr<std::int64_t>() + c.numel()};
}

sdk::Batch make_batch(const std::vector<std::vector<std::int64_t>>& ids,
                      std::vector<std::vector<std::int64_t>> segments,
                      std::vector<std::vector<std::int64_t>> labels,
                      std::vector<std::int64_t> sample_index) {
  if (segments.empty()) {
    segments = ids;
    for (auto& row : segments)
      for (auto& v : row) v = v == ByteTokenizer::kPad ? 0 : 1;
  }
  if (labels.empty()) {
    labels = ids;
    for (std::size_t b = 0; b < ids.size(); ++b)
      for (std::size_t s = 0; s < ids[b].size(); ++s)
        if (segments[b][s] == 0) labels[b][s] = sdk::kIgnoreIndex;
  }
  if (sample_index.empty())
    for (std::size_t b = 0; b < ids.size(); ++b)
      sample_index.push_back(static_cast<std::int64_t>(b));
  sdk::Batch batch;
  batch.input_ids = to_tensor(ids);
  batch.labels = to_tensor(labels);
  batch.segment_ids = to_tensor(segments);
  // Positions restart in every segment.
  auto pos = torch::zeros_like(batch.segment_ids);
  for (std::size_t b = 0; b < ids.size(); ++b) {
    std::int64_t p = 0;
    for (std::size_t s = 0; s < ids[b].size(); ++s) {
      if (s > 0 && segments[b][s] != segments[b][s - 1]) p = 0;
      pos[b][s] = p++;
    }
  }
  batch.position_ids = pos;
  batch.sample_index = torch::tensor(sample_index, torch::kLong);
  return batch;
}

}  // namespace loom::diffusion::testing
