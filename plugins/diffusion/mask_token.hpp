// Finding (or creating) the mask token, and the ids that are never masked.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "diffusion_config.hpp"
#include "loom/sdk.hpp"

namespace loom::diffusion {

struct MaskToken {
  std::int64_t id = -1;
  bool added = false;  // true: the token was created now (it was in neither model nor tokenizer)
};

// 1. mask_token_id, when set: must be < the model's vocabulary size and differ from the
//    pad/eos/bos ids (std::invalid_argument naming mask_token_id otherwise);
// 2. else the model's own mask token (sdk::ModelHandle::native_mask_token_id: LLaDA, Dream),
//    checked like mask_token_id;
// 3. else mask_token_str, when the tokenizer knows it (the model grows if the tokenizer is
//    larger, e.g. a tokenizer saved with the token next to an older model);
// 4. else, when `allow_add`, mask_token_str is added as a special token and the model's
//    embedding and output matrices grow to the tokenizer's size (new rows: the host's
//    initialisation, the mean row); without `allow_add` (a trained checkpoint loaded for
//    generate/eval) std::invalid_argument naming mask_token_str, nothing changed.
MaskToken resolve_mask_token(const DiffusionConfig& config, sdk::ModelHandle& model,
                             sdk::TokenizerHandle& tokenizer, bool allow_add = true);

// [vocab_size] flags: true for ids that are never masked -- special tokens of the tokenizer,
// BOS/EOS/PAD, and the mask token itself.
std::vector<bool> excluded_token_ids(const sdk::TokenizerHandle& tokenizer, std::int64_t vocab_size,
                                     std::int64_t mask_token_id);

}  // namespace loom::diffusion
