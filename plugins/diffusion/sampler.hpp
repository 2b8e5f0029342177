// LLaDA's reverse process: start from a sequence with mask tokens, and over `steps` steps
// predict every masked position and reveal some of them, until none is left.
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
//  - A step: bidirectional forward pass, logits only at the current block's masked positions
//    (with logit shift from the previous position; position 0 then uses its own state), the
//    mask token's logit set to -inf (never predicted), prediction x0 = argmax of the logits
//    (temperature 0: deterministic) or of logits + T * Gumbel noise drawn in float64 from a
//    CPU generator seeded with `seed` (same seed, same output on any device). Then the `k`
//    scheduled positions with the highest confidence (softmax probability of x0, in float64)
//    -- or `k` random ones for remasking = random -- are revealed.
//  - Classifier-free guidance (cfg_scale > 0): a second, unconditional pass in which every
//    initially visible token (the prompt) is replaced by the mask token;
//    logits = uncond + (cfg_scale + 1) * (cond - uncond).
#pragma once

#include <cstdint>
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
};

// What each executed step did (for tests and diagnostics).
struct SamplerStep {
  std::int64_t block = 0;
  std::vector<std::int64_t> revealed;  // positions revealed in this step
};
struct SamplerTrace {
  std::vector<SamplerStep> steps;
  std::int64_t forward_passes = 0;
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

  const SamplerOptions& options() const { return options_; }

 private:
  SamplerOptions options_;
};

}  // namespace loom::diffusion
