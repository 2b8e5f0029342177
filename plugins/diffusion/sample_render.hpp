// Turning one generated sample into text: the Original / Masked / Generated lines printed
// during training and by `trainer generate`, and the JSON record for samples.jsonl.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "loom/sdk.hpp"

namespace loom::diffusion {

struct SampleTokens {
  std::vector<std::int64_t> original;   // reference tokens; may be shorter than `masked`
                                        // (completion: the generated tail has no reference)
  std::vector<std::int64_t> masked;     // what the sampler started from
  std::vector<std::int64_t> generated;  // what it produced (same length as `masked`)
};

struct SampleReport {
  std::string original;   // decoded reference, special tokens skipped
  std::string masked;     // decoded start sequence, each mask shown as [MASK]
  std::string generated;  // decoded result, special tokens skipped
  std::string rendered;   // Original / Masked / Generated lines; fills coloured if asked
  std::int64_t masked_tokens = 0;
  std::int64_t total_tokens = 0;
  double mask_ratio = 0.0;
  std::optional<double> accuracy;  // share of fills equal to the reference, when there is one
};

// `colour`: ANSI colours (correct fill green, wrong fill red, untouched tokens dim).
SampleReport describe_sample(const sdk::TokenizerHandle& tokenizer, const SampleTokens& tokens,
                             std::int64_t mask_token_id, bool colour);

// One line of samples.jsonl (no trailing newline).
std::string sample_json_line(std::int64_t step, const SampleReport& report);

// JSON string literal body; invalid UTF-8 (a token cut through a character) becomes U+FFFD.
std::string json_escape(const std::string& text);

}  // namespace loom::diffusion
