#include "mask_token.hpp"

#include <algorithm>
#include <optional>
#include <stdexcept>
#include <string>

namespace loom::diffusion {

namespace {

void check_not_reserved(std::int64_t id, const sdk::TokenizerHandle& tokenizer,
                        const std::string& key) {
  auto clash = [&](const std::optional<std::int64_t>& other, const char* what) {
    if (other && *other == id)
      throw std::invalid_argument("[diffusion] " + key + ": mask token id " + std::to_string(id) +
                                  " is the " + what +
                                  " token id; the mask token must be a token of its own");
  };
  clash(tokenizer.pad_id(), "pad");
  clash(tokenizer.eos_id(), "eos");
  clash(tokenizer.bos_id(), "bos");
}

}  // namespace

MaskToken resolve_mask_token(const DiffusionConfig& config, sdk::ModelHandle& model,
                             sdk::TokenizerHandle& tokenizer, bool allow_add) {
  if (config.mask_token_id) {
    const std::int64_t id = *config.mask_token_id;
    if (id < 0 || id >= model.vocab_size())
      throw std::invalid_argument("[diffusion] mask_token_id = " + std::to_string(id) +
                                  " is outside the vocabulary (the model has " +
                                  std::to_string(model.vocab_size()) + " tokens)");
    check_not_reserved(id, tokenizer, "mask_token_id");
    return {id, false};
  }
  // A checkpoint trained with a mask token of its own (LLaDA, Dream) names it; the model's
  // rows for other tokens would be untrained.
  if (const std::optional<std::int64_t> native = model.native_mask_token_id()) {
    const std::int64_t id = *native;
    if (id < 0 || id >= model.vocab_size())
      throw std::invalid_argument("[diffusion] the checkpoint's mask_token_id = " +
                                  std::to_string(id) + " is outside its vocabulary of " +
                                  std::to_string(model.vocab_size()) +
                                  " tokens; set mask_token_id in [diffusion]");
    check_not_reserved(id, tokenizer, "the checkpoint's mask_token_id");
    return {id, false};
  }

  MaskToken token;
  if (auto known = tokenizer.token_to_id(config.mask_token_str)) {
    token.id = *known;
  } else if (!allow_add) {
    throw std::invalid_argument(
        "[diffusion] mask_token_str: the checkpoint has no mask token ('" + config.mask_token_str +
        "' is not in its tokenizer and mask_token_id is not set): it was not trained with the "
        "diffusion plugin, or set mask_token_id / mask_token_str to the token it was trained with");
  } else {
    token.id = tokenizer.add_special_token(config.mask_token_str);
    token.added = true;
  }
  check_not_reserved(token.id, tokenizer, "mask_token_str");
  if (tokenizer.vocab_size() > model.vocab_size() && token.id >= model.vocab_size())
    model.resize_vocab(tokenizer.vocab_size());
  if (token.id < 0 || token.id >= model.vocab_size())
    throw std::invalid_argument("[diffusion] mask_token_str: token '" + config.mask_token_str +
                                "' has id " + std::to_string(token.id) +
                                ", outside the model's vocabulary of " +
                                std::to_string(model.vocab_size()));
  return token;
}

std::vector<bool> excluded_token_ids(const sdk::TokenizerHandle& tokenizer, std::int64_t vocab_size,
                                     std::int64_t mask_token_id) {
  std::vector<bool> excluded(static_cast<std::size_t>(vocab_size), false);
  const std::int64_t known = std::min(vocab_size, tokenizer.vocab_size());
  for (std::int64_t id = 0; id < known; ++id)
    if (tokenizer.is_special(id)) excluded[static_cast<std::size_t>(id)] = true;
  for (auto id : {tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id(),
                  std::optional<std::int64_t>(mask_token_id)})
    if (id && *id >= 0 && *id < vocab_size) excluded[static_cast<std::size_t>(*id)] = true;
  return excluded;
}

}  // namespace loom::diffusion
