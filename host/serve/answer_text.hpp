// The text of an answer: finished (what /v1/completions returns) and mid-way (what each
// streamed step shows, masked positions as a placeholder). Completion mode answers with the
// tokens after the prompt; mask mode ("mask and refill") with the whole refilled sequence.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loom/sdk/plugin.hpp"
#include "loom/sdk/tokenizer.hpp"

namespace loom::serve {

// Shown in place of a position that is still masked.
inline constexpr const char* kMaskPlaceholder = "\u2591";

struct FinishedAnswer {
  std::string text;
  std::string finish_reason;  // "stop": EOS or a stop string; "length": max_tokens reached
  std::int64_t completion_tokens = 0;
};

struct StepView {
  std::string text;                         // the answer now, placeholder per masked position
  std::vector<std::optional<std::string>> pieces;  // per answer position; nullopt: masked
  std::vector<std::int64_t> revealed;       // answer positions revealed since `before`
  std::vector<bool> masked;                 // per answer position, for the next step's `revealed`
};

class AnswerText {
 public:
  AnswerText(const sdk::TokenizerHandle& tokenizer, std::size_t prompt_tokens, bool mask_mode)
      : tokenizer_(tokenizer), prompt_tokens_(prompt_tokens), mask_mode_(mask_mode) {}

  // The finished answer; `stop` strings cut it before the first one found.
  FinishedAnswer finish(const sdk::GeneratedSequence& g, std::int64_t max_tokens,
                        const std::vector<std::string>& stop) const;
  // The state after a step; `before` is the previous view's `masked` (empty at the first step).
  StepView step(const std::vector<std::int64_t>& tokens, std::int64_t mask_token_id,
                const std::vector<bool>& before) const;

 private:
  const sdk::TokenizerHandle& tokenizer_;
  std::size_t prompt_tokens_;
  bool mask_mode_;
};

}  // namespace loom::serve
