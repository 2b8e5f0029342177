#include "serve/answer_text.hpp"

#include <algorithm>

namespace loom::serve {

FinishedAnswer AnswerText::finish(const sdk::GeneratedSequence& g, std::int64_t max_tokens,
                                  const std::vector<std::string>& stop) const {
  FinishedAnswer a;
  const auto& seq = g.result.generated;
  const std::optional<std::int64_t> eos = tokenizer_.eos_id();
  std::vector<std::int64_t> ids;
  if (mask_mode_) {
    // The refilled prompt (and any completion after it) is the answer.
    ids = seq;
    a.completion_tokens = g.new_tokens;
    // Only a refill (no new tokens asked for) is cut by nothing.
    const bool ended_at_eos = !seq.empty() && eos && seq.back() == *eos;
    a.finish_reason = max_tokens == 0 || ended_at_eos || g.new_tokens < max_tokens ? "stop" : "length";
  } else {
    // As `trainer generate --input` reports it: the new tokens up to and including the EOS
    // that ended the row, special tokens dropped.
    const auto begin = std::min(prompt_tokens_, seq.size());
    const auto end = std::min(seq.size(), begin + std::size_t(std::max<std::int64_t>(0, g.new_tokens)));
    ids.assign(seq.begin() + std::ptrdiff_t(begin), seq.begin() + std::ptrdiff_t(end));
    a.completion_tokens = std::int64_t(ids.size());
    // An EOS ends the answer even on the last allowed position: "length" only for an answer
    // max_tokens cut.
    const bool ended_at_eos = !ids.empty() && eos && ids.back() == *eos;
    a.finish_reason = g.new_tokens < max_tokens || ended_at_eos ? "stop" : "length";
  }
  a.text = tokenizer_.decode(ids, /*skip_special=*/true);
  std::size_t cut = std::string::npos;
  for (const auto& s : stop) cut = std::min(cut, a.text.find(s));
  if (cut != std::string::npos) {
    a.text.resize(cut);
    a.finish_reason = "stop";
  }
  return a;
}

StepView AnswerText::step(const std::vector<std::int64_t>& tokens, std::int64_t mask_token_id,
                          const std::vector<bool>& before) const {
  StepView v;
  const std::size_t begin = mask_mode_ ? 0 : std::min(prompt_tokens_, tokens.size());
  // Runs of revealed tokens are decoded together (a token alone may be part of a character);
  // the per-position pieces, for highlighting, are each token decoded alone.
  std::vector<std::int64_t> run;
  auto flush = [&] {
    if (!run.empty()) v.text += tokenizer_.decode(run, /*skip_special=*/true);
    run.clear();
  };
  for (std::size_t i = begin; i < tokens.size(); ++i) {
    const std::size_t k = i - begin;
    const bool masked = tokens[i] == mask_token_id;
    v.masked.push_back(masked);
    if (masked) {
      flush();
      v.text += kMaskPlaceholder;
      v.pieces.emplace_back(std::nullopt);
      continue;
    }
    run.push_back(tokens[i]);
    v.pieces.emplace_back(tokenizer_.decode({tokens[i]}, /*skip_special=*/true));
    if (k < before.size() && before[k]) v.revealed.push_back(std::int64_t(k));
  }
  flush();
  return v;
}

}  // namespace loom::serve
