// AnswerText::finish: the answer's text and finish_reason as OpenAI defines it ("stop": the
// model ended the answer with EOS, or a stop string cut it; "length": max_tokens cut it), on
// the byte tokenizer (BOS 256, EOS 257), so every id below is a byte or that special token.
#include <gtest/gtest.h>

#include "serve/answer_text.hpp"
#include "tokenizer/byte_tokenizer.hpp"

namespace loom::serve {
namespace {

constexpr std::int64_t kBos = 256, kEos = 257;

sdk::GeneratedSequence sequence(std::vector<std::int64_t> ids, std::int64_t new_tokens) {
  sdk::GeneratedSequence g;
  g.result.generated = std::move(ids);
  g.new_tokens = new_tokens;
  return g;
}

TEST(AnswerText, FinishReasonIsStopForAnEosEvenOnTheLastPositionAndLengthOnlyWhenCut) {
  const ByteTokenizer tok;
  ASSERT_EQ(tok.eos_id(), kEos);
  const AnswerText text(tok, /*prompt_tokens=*/3, /*mask_mode=*/false);  // BOS 'a' 'b'
  // EOS on the last of 3 allowed positions: the model ended the answer.
  auto eos_last = text.finish(sequence({kBos, 'a', 'b', 'x', 'y', kEos}, 3), 3, {});
  EXPECT_EQ(eos_last.text, "xy");
  EXPECT_EQ(eos_last.finish_reason, "stop");
  EXPECT_EQ(eos_last.completion_tokens, 3);
  // EOS before the last position.
  auto eos_early = text.finish(sequence({kBos, 'a', 'b', 'x', kEos, kEos}, 2), 3, {});
  EXPECT_EQ(eos_early.text, "x");
  EXPECT_EQ(eos_early.finish_reason, "stop");
  // No EOS: max_tokens cut it.
  auto cut = text.finish(sequence({kBos, 'a', 'b', 'x', 'y', 'z'}, 3), 3, {});
  EXPECT_EQ(cut.text, "xyz");
  EXPECT_EQ(cut.finish_reason, "length");
  // A stop string cuts the text and the reason is "stop".
  auto stopped = text.finish(sequence({kBos, 'a', 'b', 'x', 'y', 'z'}, 3), 3, {"y"});
  EXPECT_EQ(stopped.text, "x");
  EXPECT_EQ(stopped.finish_reason, "stop");
}

TEST(AnswerText, ARefillWithoutNewTokensIsCutByNothing) {
  const ByteTokenizer tok;
  const AnswerText text(tok, /*prompt_tokens=*/4, /*mask_mode=*/true);
  auto refill = text.finish(sequence({kBos, 'a', 'q', 'c'}, 0), 0, {});
  EXPECT_EQ(refill.text, "aqc");
  EXPECT_EQ(refill.finish_reason, "stop");
  auto longer = text.finish(sequence({kBos, 'a', 'q', 'c', 'd', 'e'}, 2), 2, {});
  EXPECT_EQ(longer.text, "aqcde");
  EXPECT_EQ(longer.finish_reason, "length");
}

}  // namespace
}  // namespace loom::serve
