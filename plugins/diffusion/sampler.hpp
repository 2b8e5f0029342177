// LLaDA's reverse process: start from a sequence with mask tokens, and over `steps` steps
// predict every masked position and reveal some of them, until none is left. Several
// sequences (rows) run as one batch, each exactly as it would alone.
//
//  - Schedule: the masked positions (in sequence order) are cut into semi-autoregressive
//    blocks of `block_length` (0: one block). Blocks are filled left to right; a block's
//    n masked tokens are revealed over its steps following LLaDA's get_num_transfer_tokens
//    (n / steps each, the remainder one extra in the first steps), so the block -- and after
//    the last block the whole sequence -- is fully revealed by its last step.
//  - Steps vs blocks: LLaDA requires steps % blocks == 0 and gen_length % block_length == 0.
//    Here the last block may be shorter, and the steps are split as evenly as possible (the
//    first `steps % blocks` blocks get one more); every block gets at least one step, so with
//    fewer steps than blocks there is one step per block. A step that would reveal nothing
//    (more steps than masked tokens) is skipped without a forward pass.
//  - Parallel decoding (Fast-dLLM): with `threshold` a step reveals every masked position of
//    the block whose confidence is >= threshold, with `factor` the top n while the n-th
//    confidence is >= 1 - factor / (n + 1); always at least the most confident one (see
//    reveal_rules.hpp). `steps` is then unused: a block takes steps until it is revealed.
//  - A step: bidirectional forward pass, logits only at the current block's masked positions
//    (with logit shift from the previous position; position 0 then uses its own state), the
//    mask token's logit set to -inf (never predicted; EOS's too with suppress_eos), top-k /
//    top-p filtering if asked, prediction x0 = argmax of the logits (temperature 0:
//    deterministic) or of logits + T * Gumbel noise drawn in float64 from the row's CPU
//    generator seeded with its `seed` (same seed, same output on any device and in any
//    batch). Confidence: softmax probability of x0 (low_confidence), top-1 minus top-2
//    probability (margin), negative entropy (entropy) -- all of the filtered logits, without
//    temperature -- or a uniform draw (random); then the rule's positions are revealed.
//    The LLaDA path (cache none, fixed schedule) computes in float64 as LLaDA does; the
//    parallel and cached paths in float32 (the Gumbel noise stays float64).
//  - Classifier-free guidance (cfg_scale > 0): a second, unconditional row in which every
//    initially visible token (the prompt) is replaced by the mask token;
//    logits = uncond + (cfg_scale + 1) * (cond - uncond). It works with every cache mode (the
//    twin rows are cached like the others).
//  - Key/value cache (Fast-dLLM), via sdk::ModelHandle::forward_caching / forward_cached:
//    at the start of each block one forward_caching pass (whose output is also the block's
//    first step, so that step is exact); the block's later steps run forward_cached on the
//    block's positions (dual) or on everything from the block to the end of the row
//    (prefix), plus, with logit shift, the position before each block position. APPROXIMATED:
//    during a block, the cached keys/values of the other positions are those of the block's
//    first pass -- with prefix, positions before the block (only the block's own reveals
//    change since, and they are recomputed); with dual, positions after it too (all still
//    masks in completion, so only their deeper layers' mixing of the block is stale). A model
//    handle without a cache (forward_caching returns nullptr) gets full forward passes.
//  - Batches: rows are right-padded to the longest (segment id 0 = padding, so no row sees
//    another's padding; positions 0.. per row); every row follows its own blocks, schedule
//    and generator, and rows that are finished leave the batch. Without a cache rows move
//    independently; with one, rows are block-synchronous (a cache serves one block of every
//    row in it): a row whose block is done waits -- without forward passes -- until every
//    row's is, then all start their next block with one forward_caching.
//  - stop_at_eos: a row is finished once its first generated EOS has every generated position
//    before it revealed; every generated position after it becomes EOS, without further
//    forward passes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "diffusion_config.hpp"
#include "loom/sdk.hpp"

namespace loom::diffusion {

struct SamplerOptions {
  std::int64_t steps = 128;
  double temperature = 0.0;
  std::int64_t block_length = 0;  // 0: all masked positions form one block
  Remasking remasking = Remasking::LowConfidence;
  double cfg_scale = 0.0;
  bool logit_shift = false;
  std::int64_t mask_token_id = -1;
  std::uint64_t seed = 0;
  // Parallel decoding (at most one; need remasking low_confidence or margin).
  std::optional<double> threshold;
  std::optional<double> factor;
  CacheMode cache = CacheMode::None;
  std::int64_t top_k = 0;          // 0: off
  double top_p = 1.0;              // 1: off
  std::int64_t eos_token_id = -1;  // needed by stop_at_eos and suppress_eos
  bool stop_at_eos = false;
  bool suppress_eos = false;
};

// The [diffusion] sampling keys as sampler options (steps, temperature, block length and seed
// are the caller's; eos_token_id from the tokenizer, -1 when it has none).
SamplerOptions sampler_options(const DiffusionConfig& config, bool logit_shift,
                               std::int64_t mask_token_id, std::int64_t eos_token_id);

// One sequence of a batch, with the settings that may differ between requests.
struct SamplerRow {
  at::Tensor sequence;  // [S] int64; the mask token marks the positions to generate
  std::int64_t steps = 128;
  double temperature = 0.0;
  std::int64_t block_length = 0;
  std::uint64_t seed = 0;
};

// What each executed step did (for tests and diagnostics).
struct SamplerStep {
  std::int64_t block = 0;
  std::vector<std::int64_t> revealed;  // positions revealed in this step
};
struct SamplerTrace {
  std::vector<SamplerStep> steps;
  std::int64_t forward_passes = 0;  // forward passes this row took part in
  // stop_at_eos: index among the generated (initially masked) positions of the EOS that ended
  // the row; -1 when none did.
  std::int64_t stopped_at = -1;
  bool cancelled = false;  // the step observer stopped the row before it was filled
};

// LLaDA's get_num_transfer_tokens for one block: `steps` counts summing to `masked`.
std::vector<std::int64_t> transfer_schedule(std::int64_t masked, std::int64_t steps);
// Steps given to each of `blocks` blocks (sum = max(steps, blocks), each >= 1).
std::vector<std::int64_t> steps_per_block(std::int64_t steps, std::int64_t blocks);

class ReverseSampler {
 public:
  explicit ReverseSampler(SamplerOptions options);

  // sequence: [S] int64; positions holding the mask token are generated, the others are kept.
  // Returns the filled sequence [S] on the CPU. Runs without gradients in eval mode and
  // restores the model's training flag.
  at::Tensor run(sdk::ModelHandle& model, const at::Tensor& sequence,
                 SamplerTrace* trace = nullptr) const;
  // Every row as run() would alone with its steps, temperature, block length and seed (the
  // options' own are ignored). Returns one filled [S_b] CPU tensor per row; `traces`, when
  // given, receives one trace per row.
  // `observe`, when given, is called after each step of a row with the row's index, its step
  // count (from 1) and its sequence [S] (CPU) as it now stands; returning false stops that row
  // (it takes no more steps; the other rows are unaffected, as when a row stops at EOS).
  using StepObserver = std::function<bool(std::size_t row, std::int64_t step, const at::Tensor& x)>;
  std::vector<at::Tensor> run_batch(sdk::ModelHandle& model, const std::vector<SamplerRow>& rows,
                                    std::vector<SamplerTrace>* traces = nullptr,
                                    const StepObserver& observe = nullptr) const;

  const SamplerOptions& options() const { return options_; }

 private:
  SamplerOptions options_;
};

}  // namespace loom::diffusion
