// Hugging Face's own ids for Llama 3 and GPT-2 (shared/data/tokenizers/*/golden.jsonl) and
// decode round trips.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer_test_support.hpp"

namespace loom {
namespace {

using tokenizer_test::gpt2;
using tokenizer_test::llama3;
using tokenizer_test::read_golden;

void expect_golden(const Tokenizer& tokenizer, const std::string& name) {
  const auto cases = read_golden(name);
  ASSERT_EQ(cases.size(), 30u);
  for (const auto& golden : cases) {
    EXPECT_EQ(tokenizer.encode(golden.text), golden.ids) << name << ": " << golden.text;
    EXPECT_EQ(tokenizer.decode(golden.ids), golden.text) << name << ": " << golden.text;
  }
}

TEST(HfTokenizerGoldenTest, Llama3MatchesHuggingFace) { expect_golden(llama3(), "llama3"); }

TEST(HfTokenizerGoldenTest, Gpt2MatchesHuggingFace) { expect_golden(gpt2(), "gpt2"); }

TEST(HfTokenizerGoldenTest, RandomUtf8RoundTrips) {
  std::mt19937 rng(20240601);
  for (const Tokenizer* tokenizer : {&llama3(), &gpt2()}) {
    for (int i = 0; i < 1000; ++i) {
      const std::string text = tokenizer_test::random_utf8(rng, 60);
      const auto ids = tokenizer->encode(text);
      ASSERT_EQ(tokenizer->decode(ids), text);
      ASSERT_EQ(tokenizer->decode(ids, /*skip_special=*/true), text);
      for (const auto id : ids) ASSERT_LT(id, tokenizer->vocab_size());
    }
  }
}

}  // namespace
}  // namespace loom
