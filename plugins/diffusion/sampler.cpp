#include "sampler.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

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
}

at::Tensor ReverseSampler::run(sdk::ModelHandle& model, const at::Tensor& sequence,
                               SamplerTrace* trace) const {
  at::NoGradGuard no_grad;
  EvalModeScope eval_mode(model);
  const std::int64_t mask_id = options_.mask_token_id;
  at::Tensor x = sequence.to(at::kCPU, at::kLong).reshape({-1}).clone();  // [S]
  const std::int64_t S = x.size(0);
  if (S > model.max_position_embeddings() && model.max_position_embeddings() > 0)
    throw std::invalid_argument("diffusion sampler: sequence of " + std::to_string(S) +
                                " tokens exceeds the model's max_position_embeddings (" +
                                std::to_string(model.max_position_embeddings()) + ")");

  at::Tensor is_mask = x.eq(mask_id);
  at::Tensor masked_positions = is_mask.nonzero().reshape({-1});  // [M], ascending
  const std::int64_t M = masked_positions.size(0);
  if (M == 0) return x;
  const at::Tensor prompt = is_mask.logical_not();  // [S] initially visible tokens

  const std::int64_t block_len = options_.block_length > 0 ? std::min(options_.block_length, M) : M;
  const std::int64_t blocks = (M + block_len - 1) / block_len;
  const std::vector<std::int64_t> block_steps = steps_per_block(options_.steps, blocks);
  at::Generator gen = at::detail::createCPUGenerator(options_.seed);
  const at::Device device = model.device();
  const auto f64 = at::TensorOptions().dtype(at::kDouble);

  for (std::int64_t k = 0; k < blocks; ++k) {
    const std::int64_t begin = k * block_len;
    const std::int64_t len = std::min(block_len, M - begin);
    at::Tensor block = masked_positions.narrow(0, begin, len);  // [n_k]
    const auto schedule = transfer_schedule(len, block_steps[static_cast<std::size_t>(k)]);

    for (std::int64_t count : schedule) {
      if (count == 0) continue;
      at::Tensor cand = block.masked_select(x.index_select(0, block).eq(mask_id));  // [C]
      const std::int64_t C = cand.size(0);

      // Forward: conditional row, and the unconditional row (prompt masked) for guidance.
      at::Tensor input = x.unsqueeze(0);  // [1, S]
      if (options_.cfg_scale > 0) {
        at::Tensor uncond = x.masked_fill(prompt, mask_id);
        input = at::stack({x, uncond});  // [2, S]
      }
      sdk::ModelOutput out = model.forward(input.to(device), at::Tensor(), at::Tensor(),
                                           sdk::AttentionSpec::bidirectional());
      if (trace) ++trace->forward_passes;
      at::Tensor src = options_.logit_shift ? (cand - 1).clamp_min(0) : cand;  // [C]
      src = src.to(device);
      at::Tensor logits =
          out.project(out.hidden[0].index_select(0, src)).to(at::kDouble);  // [C, V]
      if (options_.cfg_scale > 0) {
        at::Tensor un = out.project(out.hidden[1].index_select(0, src)).to(at::kDouble);
        logits = un + (options_.cfg_scale + 1.0) * (logits - un);
      }
      const std::int64_t V = logits.size(1);
      if (mask_id >= V)
        throw std::invalid_argument("diffusion sampler: mask token id " + std::to_string(mask_id) +
                                    " is outside the model's vocabulary (" + std::to_string(V) +
                                    ")");
      logits.select(1, mask_id).fill_(-std::numeric_limits<double>::infinity());

      at::Tensor x0;  // [C]
      if (options_.temperature > 0) {
        // Gumbel-max in float64: argmax(l + T * g) = argmax(l / T + g), g = -log(-log u).
        at::Tensor u = at::rand({C, V}, gen, f64).to(device);
        at::Tensor gumbel = -at::log(-at::log(u));
        x0 = (logits + options_.temperature * gumbel).argmax(-1);
      } else {
        x0 = logits.argmax(-1);
      }
      at::Tensor confidence;  // [C] float64
      if (options_.remasking == Remasking::Random)
        confidence = at::rand({C}, gen, f64);
      else
        confidence = at::softmax(logits, -1).gather(1, x0.unsqueeze(1)).squeeze(1).to(at::kCPU);

      at::Tensor pick = std::get<1>(at::topk(confidence, std::min(count, C)));  // [count]
      at::Tensor positions = cand.index_select(0, pick);
      x.index_copy_(0, positions, x0.to(at::kCPU).index_select(0, pick));
      if (trace) {
        SamplerStep step;
        step.block = k;
        auto p = positions.contiguous();
        step.revealed.assign(p.data_ptr<std::int64_t>(), p.data_ptr<std::int64_t>() + p.numel());
        trace->steps.push_back(std::move(step));
      }
    }
  }
  return x;
}

}  // namespace loom::diffusion
