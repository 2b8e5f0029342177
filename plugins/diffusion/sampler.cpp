#include "sampler.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <string>

#include "reveal_rules.hpp"

namespace loom::diffusion {

namespace {

// Puts the model in eval mode for the duration of sampling, then restores its flag.
class EvalModeScope {
 public:
  explicit EvalModeScope(sdk::ModelHandle& model) : model_(model), was_(model.is_training()) {
    model_.set_training(false);
  }
  ~EvalModeScope() { model_.set_training(was_); }
  EvalModeScope(const EvalModeScope&) = delete;
  EvalModeScope& operator=(const EvalModeScope&) = delete;

 private:
  sdk::ModelHandle& model_;
  bool was_;
};

}  // namespace

std::vector<std::int64_t> transfer_schedule(std::int64_t masked, std::int64_t steps) {
  if (steps < 1) throw std::invalid_argument("diffusion sampler: steps must be >= 1");
  std::vector<std::int64_t> counts(static_cast<std::size_t>(steps), masked / steps);
  for (std::int64_t i = 0; i < masked % steps; ++i) ++counts[static_cast<std::size_t>(i)];
  return counts;
}

std::vector<std::int64_t> steps_per_block(std::int64_t steps, std::int64_t blocks) {
  if (blocks < 1) return {};
  if (steps <= blocks) return std::vector<std::int64_t>(static_cast<std::size_t>(blocks), 1);
  std::vector<std::int64_t> out(static_cast<std::size_t>(blocks), steps / blocks);
  for (std::int64_t i = 0; i < steps % blocks; ++i) ++out[static_cast<std::size_t>(i)];
  return out;
}

ReverseSampler::ReverseSampler(SamplerOptions options) : options_(options) {
  if (options_.steps < 1)
    throw std::invalid_argument("diffusion sampler: steps = " + std::to_string(options_.steps) +
                                " must be >= 1");
  if (options_.mask_token_id < 0)
    throw std::invalid_argument("diffusion sampler: the mask token id is not resolved");
  if (options_.temperature < 0 || options_.cfg_scale < 0 || options_.block_length < 0)
    throw std::invalid_argument(
        "diffusion sampler: temperature, cfg_scale and block_length must be >= 0");
  if (options_.threshold && !(*options_.threshold > 0 && *options_.threshold <= 1))
    throw std::invalid_argument("diffusion sampler: threshold must be in (0, 1]");
  if (options_.factor && !(*options_.factor > 0))
    throw std::invalid_argument("diffusion sampler: factor must be > 0");
  if (options_.threshold && options_.factor)
    throw std::invalid_argument("diffusion sampler: threshold and factor are both set");
  if ((options_.threshold || options_.factor) &&
      (options_.remasking == Remasking::Random || options_.remasking == Remasking::Entropy))
    throw std::invalid_argument(std::string("diffusion sampler: remasking = ") +
                                to_string(options_.remasking) +
                                " has no probability to compare with threshold/factor");
  if (options_.top_k < 0 || !(options_.top_p > 0 && options_.top_p <= 1))
    throw std::invalid_argument("diffusion sampler: top_k must be >= 0 and top_p in (0, 1]");
  if ((options_.stop_at_eos || options_.suppress_eos) && options_.eos_token_id < 0)
    throw std::invalid_argument(
        "diffusion sampler: stop_at_eos/suppress_eos need an EOS token, and the tokenizer has "
        "none");
}

at::Tensor ReverseSampler::run(sdk::ModelHandle& model, const at::Tensor& sequence,
                               SamplerTrace* trace) const {
  SamplerRow row{sequence, options_.steps, options_.temperature, options_.block_length,
                 options_.seed};
  std::vector<SamplerTrace> traces;
  auto out = run_batch(model, {row}, trace ? &traces : nullptr);
  if (trace) *trace = std::move(traces.at(0));
  return out.at(0);
}

namespace {

// One row's progress through its blocks.
struct RowState {
  at::Tensor x;          // [S] int64, CPU: the current sequence
  at::Tensor prompt;     // [S] bool: initially visible
  at::Tensor generated;  // [M] int64: initially masked positions, ascending
  std::int64_t S = 0, M = 0, block_len = 0, blocks = 0;
  std::vector<std::int64_t> block_steps;
  std::vector<std::int64_t> schedule;  // fixed rule: the current block's counts
  std::size_t next = 0;                // fixed rule: the current block's next step
  std::int64_t k = -1;                 // current block
  at::Tensor block;                    // [n_k] the current block's positions
  double temperature = 0;
  at::Generator gen;
  bool finished = false;
  bool fresh = false;  // at the start of block k: no step of it has run
  SamplerTrace trace;
};

bool block_has_masks(const RowState& r, std::int64_t mask_id) {
  return r.x.index_select(0, r.block).eq(mask_id).any().item<bool>();
}

// Moves `r` to its next step that reveals something (or to finished).
void advance(RowState& r, bool dynamic, std::int64_t mask_id) {
  while (!r.finished) {
    if (r.k >= 0) {
      if (dynamic) {
        if (block_has_masks(r, mask_id)) return;
      } else {
        while (r.next < r.schedule.size() && r.schedule[r.next] == 0) ++r.next;
        if (r.next < r.schedule.size()) return;
      }
    }
    if (++r.k >= r.blocks) {
      r.finished = true;
      return;
    }
    const std::int64_t begin = r.k * r.block_len;
    const std::int64_t len = std::min(r.block_len, r.M - begin);
    r.block = r.generated.narrow(0, begin, len);
    r.schedule = transfer_schedule(len, r.block_steps[static_cast<std::size_t>(r.k)]);
    r.next = 0;
    r.fresh = true;
  }
}

// stop_at_eos: finished when the first generated EOS has nothing masked before it; the
// generated positions after it become EOS.
void finish_at_eos(RowState& r, std::int64_t mask_id, std::int64_t eos_id) {
  at::Tensor tokens = r.x.index_select(0, r.generated);  // [M]
  at::Tensor eos = tokens.eq(eos_id).nonzero();
  if (eos.size(0) == 0) return;
  const std::int64_t first = eos[0][0].item<std::int64_t>();
  if (tokens.narrow(0, 0, first).eq(mask_id).any().item<bool>()) return;
  r.x.index_fill_(0, r.generated.narrow(0, first + 1, r.M - first - 1), eos_id);
  r.trace.stopped_at = first;
  r.finished = true;
}

// Full-length input of `rows` (+ their unconditional twins with guidance), right-padded.
struct FullInput {
  at::Tensor ids, positions, segments;  // [N, S]; positions/segments undefined: no padding
  std::int64_t width = 0;
};

FullInput full_input(const std::vector<RowState*>& rows, bool cfg, std::int64_t mask_id) {
  FullInput in;
  bool padded = false;
  for (auto* r : rows) in.width = std::max(in.width, r->S);
  for (auto* r : rows) padded = padded || r->S != in.width;
  const auto n = static_cast<std::int64_t>(rows.size());
  const std::int64_t N = cfg ? 2 * n : n;
  in.ids = at::full({N, in.width}, mask_id, at::kLong);
  if (padded) in.segments = at::zeros({N, in.width}, at::kLong);
  for (std::int64_t i = 0; i < n; ++i) {
    RowState& r = *rows[static_cast<std::size_t>(i)];
    in.ids[i].narrow(0, 0, r.S).copy_(r.x);
    if (cfg) in.ids[n + i].narrow(0, 0, r.S).copy_(r.x.masked_fill(r.prompt, mask_id));
    if (padded) {
      in.segments[i].narrow(0, 0, r.S).fill_(1);
      if (cfg) in.segments[n + i].narrow(0, 0, r.S).fill_(1);
    }
  }
  if (padded)
    in.positions = at::arange(in.width, at::kLong).unsqueeze(0).expand({N, in.width}).contiguous();
  return in;
}

// A full bidirectional pass over `rows` (+ twins), each row's hidden states those of its solo
// run bit for bit, whatever else is in the batch. On the CPU through the host's caching pass
// where it has one (the cache is dropped at once): its rows do not depend on the other rows or
// their padding (SDK 1.3), and LlamaModelHandle's, in fp32, not on the thread count either.
// Elsewhere (and without a cache) one forward per row on its own tokens, never padded (a
// padded row would go through masked attention over a longer key row, which sums in another
// order) -- on a GPU that keeps the memory of a cache nobody reads. Returns hidden
// [N, width, H], rows laid out as full_input's.
sdk::ModelOutput forward_each_row(sdk::ModelHandle& model, const std::vector<RowState*>& rows,
                                  bool cfg, std::int64_t mask_id, const at::Device& device,
                                  std::int64_t* width) {
  if (device.is_cpu()) {
    FullInput in = full_input(rows, cfg, mask_id);
    sdk::ModelOutput out;
    auto cache = model.forward_caching(
        in.ids.to(device), in.positions.defined() ? in.positions.to(device) : in.positions,
        in.segments.defined() ? in.segments.to(device) : in.segments, &out);
    if (cache) {
      *width = in.width;
      return out;
    }
  }
  *width = 0;
  for (auto* r : rows) *width = std::max(*width, r->S);
  const auto n = static_cast<std::int64_t>(rows.size());
  sdk::ModelOutput out;
  for (std::int64_t i = 0; i < n; ++i) {
    RowState& r = *rows[static_cast<std::size_t>(i)];
    at::Tensor ids = cfg ? at::stack({r.x, r.x.masked_fill(r.prompt, mask_id)}) : r.x.unsqueeze(0);
    sdk::ModelOutput one =
        model.forward(ids.to(device), at::Tensor(), at::Tensor(), sdk::AttentionSpec::bidirectional());
    if (!out.hidden.defined()) {
      out.hidden = at::zeros({cfg ? 2 * n : n, *width, one.hidden.size(-1)}, one.hidden.options());
      out.project = one.project;
    }
    out.hidden[i].narrow(0, 0, r.S).copy_(one.hidden[0]);
    if (cfg) out.hidden[n + i].narrow(0, 0, r.S).copy_(one.hidden[1]);
  }
  return out;
}

}  // namespace

std::vector<at::Tensor> ReverseSampler::run_batch(sdk::ModelHandle& model,
                                                  const std::vector<SamplerRow>& rows,
                                                  std::vector<SamplerTrace>* traces,
                                                  const StepObserver& observe) const {
  at::NoGradGuard no_grad;
  EvalModeScope eval_mode(model);
  const SamplerOptions& o = options_;
  const std::int64_t mask_id = o.mask_token_id;
  const bool dynamic = o.threshold || o.factor;
  const bool cfg = o.cfg_scale > 0;
  const bool cached = o.cache != CacheMode::None;
  // LLaDA's own path keeps LLaDA's float64; the fast paths compute in float32.
  const at::ScalarType dtype = (!dynamic && !cached) ? at::kDouble : at::kFloat;
  const at::Device device = model.device();
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const std::int64_t max_pos = model.max_position_embeddings();

  std::vector<RowState> state(rows.size());
  for (std::size_t b = 0; b < rows.size(); ++b) {
    const SamplerRow& in = rows[b];
    RowState& r = state[b];
    if (!dynamic && in.steps < 1)
      throw std::invalid_argument("diffusion sampler: steps = " + std::to_string(in.steps) +
                                  " must be >= 1");
    if (in.temperature < 0 || in.block_length < 0)
      throw std::invalid_argument("diffusion sampler: temperature and block_length must be >= 0");
    r.x = in.sequence.to(at::kCPU, at::kLong).reshape({-1}).clone();
    r.S = r.x.size(0);
    if (r.S > max_pos && max_pos > 0)
      throw std::invalid_argument("diffusion sampler: sequence of " + std::to_string(r.S) +
                                  " tokens exceeds the model's max_position_embeddings (" +
                                  std::to_string(max_pos) + ")");
    at::Tensor is_mask = r.x.eq(mask_id);
    r.generated = is_mask.nonzero().reshape({-1});
    r.M = r.generated.size(0);
    r.prompt = is_mask.logical_not();
    r.temperature = in.temperature;
    r.gen = at::detail::createCPUGenerator(in.seed);
    if (r.M == 0) {
      r.finished = true;
      continue;
    }
    r.block_len = in.block_length > 0 ? std::min(in.block_length, r.M) : r.M;
    r.blocks = (r.M + r.block_len - 1) / r.block_len;
    r.block_steps = steps_per_block(dynamic ? r.blocks : in.steps, r.blocks);
    advance(r, dynamic, mask_id);
  }

  std::unique_ptr<sdk::KeyValueCache> cache;
  std::vector<RowState*> group;  // the rows of `cache`, in its row order

  for (;;) {
    std::vector<RowState*> active;  // rows that take a step now
    sdk::ModelOutput out;
    std::int64_t width = 0;                        // hidden row length (S or Q)
    std::vector<std::vector<std::int64_t>> slots;  // per group row: cached positions (Q_b)
    bool from_cache = false;
    if (!cached) {
      for (auto& r : state)
        if (!r.finished) active.push_back(&r);
      if (active.empty()) break;
      out = forward_each_row(model, active, cfg, mask_id, device, &width);
    } else {
      std::vector<RowState*> in_block;
      for (auto* r : group)
        if (!r->finished && !r->fresh) in_block.push_back(r);
      if (in_block.empty()) {
        // Every row is at a block start (or finished): one caching pass for all of them.
        group.clear();
        for (auto& r : state)
          if (!r.finished) group.push_back(&r);
        if (group.empty()) break;
        active = group;
        FullInput in = full_input(group, cfg, mask_id);
        width = in.width;
        cache.reset();  // the previous block's cache goes before the next one is made
        cache = model.forward_caching(
            in.ids.to(device), in.positions.defined() ? in.positions.to(device) : in.positions,
            in.segments.defined() ? in.segments.to(device) : in.segments, &out);
        if (!cache) out = forward_each_row(model, group, cfg, mask_id, device, &width);
      } else if (!cache) {
        // The handle has no cache: full passes over the rows still inside their block.
        active = in_block;
        out = forward_each_row(model, active, cfg, mask_id, device, &width);
      } else {
        // Recompute the block (dual) or the block to the end of the row (prefix), plus, with
        // logit shift, the positions the block's logits are read from.
        from_cache = true;
        active = in_block;
        slots.resize(group.size());
        for (std::size_t g = 0; g < group.size(); ++g) {
          RowState* r = group[g];
          if (r->finished || r->fresh) continue;
          auto blk = r->block.contiguous();
          const std::int64_t* p = blk.data_ptr<std::int64_t>();
          std::vector<std::int64_t>& q = slots[g];
          for (std::int64_t i = 0; i < blk.numel(); ++i) {
            if (o.logit_shift) q.push_back(std::max<std::int64_t>(p[i] - 1, 0));
            q.push_back(p[i]);
          }
          std::sort(q.begin(), q.end());
          q.erase(std::unique(q.begin(), q.end()), q.end());
          if (o.cache == CacheMode::Prefix) {
            const std::int64_t start = q.front();
            q.resize(static_cast<std::size_t>(r->S - start));
            std::iota(q.begin(), q.end(), start);
          }
          width = std::max(width, static_cast<std::int64_t>(q.size()));
        }
        const auto n = static_cast<std::int64_t>(group.size());
        const std::int64_t N = cfg ? 2 * n : n;
        at::Tensor ids = at::full({N, width}, mask_id, at::kLong);
        at::Tensor pos = at::full({N, width}, -1, at::kLong);
        for (std::int64_t g = 0; g < n; ++g) {
          const auto& q = slots[static_cast<std::size_t>(g)];
          if (q.empty()) continue;
          RowState* r = group[static_cast<std::size_t>(g)];
          at::Tensor qt = at::tensor(q, at::kLong);
          const auto Q = static_cast<std::int64_t>(q.size());
          pos[g].narrow(0, 0, Q).copy_(qt);
          ids[g].narrow(0, 0, Q).copy_(r->x.index_select(0, qt));
          if (cfg) {
            pos[n + g].narrow(0, 0, Q).copy_(qt);
            ids[n + g].narrow(0, 0, Q).copy_(
                r->x.masked_fill(r->prompt, mask_id).index_select(0, qt));
          }
        }
        out = model.forward_cached(*cache, ids.to(device), pos.to(device));
      }
    }

    // Where each active row's candidates read their hidden states: rows of hidden [N * width, H].
    std::vector<at::Tensor> cands;
    std::vector<std::int64_t> flat;
    std::vector<std::int64_t> offsets{0};
    // The forward's rows: the cache's (some sit this pass out) or exactly the active ones.
    const std::vector<RowState*>& order = from_cache ? group : active;
    const auto n_rows = static_cast<std::int64_t>(order.size());
    for (std::int64_t i = 0; i < n_rows; ++i) {
      RowState* r = order[static_cast<std::size_t>(i)];
      if (std::find(active.begin(), active.end(), r) == active.end()) continue;
      at::Tensor cand = r->block.masked_select(r->x.index_select(0, r->block).eq(mask_id));  // [C]
      at::Tensor src = o.logit_shift ? (cand - 1).clamp_min(0) : cand;
      auto sc = src.contiguous();
      const std::int64_t* sp = sc.data_ptr<std::int64_t>();
      for (std::int64_t c = 0; c < sc.numel(); ++c) {
        std::int64_t slot = sp[c];
        if (from_cache) {
          const auto& q = slots[static_cast<std::size_t>(i)];
          slot = std::lower_bound(q.begin(), q.end(), sp[c]) - q.begin();
        }
        flat.push_back(i * width + slot);
      }
      cands.push_back(cand);
      offsets.push_back(offsets.back() + cand.size(0));
    }
    std::vector<RowState*> stepping;  // the active rows, in the order of `cands`
    for (auto* r : order)
      if (std::find(active.begin(), active.end(), r) != active.end()) stepping.push_back(r);

    at::Tensor index = at::tensor(flat, at::kLong).to(device);
    at::Tensor hidden = out.hidden.reshape({-1, out.hidden.size(-1)});
    // Row by row, from projection to confidence: each row's logits are those of its solo run
    // (a matrix product's rounding may depend on how many rows it has), and one row's
    // vocabulary-wide tensors stay in cache (every row's at once would not, at 128k tokens).
    std::vector<at::Tensor> x0_rows, confidence_rows;
    for (std::size_t i = 0; i < stepping.size(); ++i) {
      const std::int64_t C = offsets[i + 1] - offsets[i];
      if (C == 0) {
        x0_rows.push_back(at::empty({0}, at::kLong));
        confidence_rows.push_back(at::empty({0}, f64));
        continue;
      }
      at::Tensor where = index.narrow(0, offsets[i], C);
      at::Tensor logits = out.project(hidden.index_select(0, where)).to(dtype);  // [C, V]
      if (cfg) {
        at::Tensor un = out.project(hidden.index_select(0, where + n_rows * width)).to(dtype);
        logits = un + (o.cfg_scale + 1.0) * (logits - un);
      }
      const std::int64_t V = logits.size(1);
      if (mask_id >= V)
        throw std::invalid_argument("diffusion sampler: mask token id " + std::to_string(mask_id) +
                                    " is outside the model's vocabulary (" + std::to_string(V) + ")");
      const double neg_inf = -std::numeric_limits<double>::infinity();
      logits.select(1, mask_id).fill_(neg_inf);
      if (o.suppress_eos && o.eos_token_id < V) logits.select(1, o.eos_token_id).fill_(neg_inf);
      const double t = stepping[i]->temperature;
      if (o.top_k > 0 || o.top_p < 1.0) {
        at::Tensor temperature;  // [C, 1]; undefined means 1, as a temperature of 0 does
        if (t > 0) temperature = at::full({C, 1}, t, f64).to(device);
        logits = filter_top_k_top_p(logits, o.top_k, o.top_p, temperature);
      }
      at::Tensor x0 = logits.argmax(-1);  // [C]; at T = 0 this
      if (t > 0) {
        // Gumbel-max in float64: argmax(l + T * g) = argmax(l / T + g), g = -log(-log u), u
        // from the row's own generator, as alone.
        at::Tensor gumbel = -at::log(-at::log(at::rand({C, V}, stepping[i]->gen, f64).to(device)));
        x0 = (logits.to(at::kDouble) + t * gumbel).argmax(-1);
      }
      confidence_rows.push_back(o.remasking == Remasking::Random
                                    ? at::rand({C}, stepping[i]->gen, f64)
                                    : prediction_confidence(logits, x0, o.remasking)
                                          .to(at::kCPU, at::kDouble));
      x0_rows.push_back(x0.to(at::kCPU));
    }
    at::Tensor x0 = at::cat(x0_rows), confidence = at::cat(confidence_rows);

    for (std::size_t i = 0; i < stepping.size(); ++i) {
      RowState& r = *stepping[i];
      const std::int64_t begin = offsets[i], C = offsets[i + 1] - offsets[i];
      RevealRule rule = o.threshold ? RevealRule::above(*o.threshold)
                        : o.factor  ? RevealRule::dynamic(*o.factor)
                                    : RevealRule::fixed(r.schedule[r.next++]);
      at::Tensor pick = positions_to_reveal(confidence.narrow(0, begin, C), rule);
      at::Tensor positions = cands[i].index_select(0, pick);
      r.x.index_copy_(0, positions, x0.narrow(0, begin, C).index_select(0, pick));
      ++r.trace.forward_passes;
      r.fresh = false;
      SamplerStep step;
      step.block = r.k;
      auto p = positions.contiguous();
      step.revealed.assign(p.data_ptr<std::int64_t>(), p.data_ptr<std::int64_t>() + p.numel());
      r.trace.steps.push_back(std::move(step));
      if (o.stop_at_eos) finish_at_eos(r, mask_id, o.eos_token_id);
      if (observe && !observe(static_cast<std::size_t>(&r - state.data()),
                              static_cast<std::int64_t>(r.trace.steps.size()), r.x)) {
        r.trace.cancelled = !r.finished;
        r.finished = true;
      }
      advance(r, dynamic, mask_id);
    }
  }

  std::vector<at::Tensor> result;
  for (auto& r : state) result.push_back(r.x);
  if (traces) {
    traces->clear();
    for (auto& r : state) traces->push_back(std::move(r.trace));
  }
  return result;
}

SamplerOptions sampler_options(const DiffusionConfig& config, bool logit_shift,
                               std::int64_t mask_token_id, std::int64_t eos_token_id) {
  SamplerOptions o;
  o.remasking = config.remasking;
  o.cfg_scale = config.cfg_scale;
  o.logit_shift = logit_shift;
  o.mask_token_id = mask_token_id;
  o.threshold = config.threshold;
  o.factor = config.factor;
  o.cache = config.cache;
  o.top_k = config.top_k;
  o.top_p = config.top_p;
  o.eos_token_id = eos_token_id;
  o.stop_at_eos = config.stop_at_eos;
  o.suppress_eos = config.suppress_eos;
  return o;
}

}  // namespace loom::diffusion
