#include "tokenizer/byte_tokenizer.hpp"

#include <gtest/gtest.h>

#include <random>

#include "errors.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer_test_support.hpp"

namespace loom {
namespace {

using ScratchDir = test::ScratchDir;

TEST(ByteTokenizerTest, BytesThenSpecialTokensInOrder) {
  const ByteTokenizer tokenizer;
  EXPECT_EQ(tokenizer.kind(), "byte");
  EXPECT_EQ(tokenizer.vocab_size(), 259);
  EXPECT_EQ(tokenizer.bos_id(), 256);
  EXPECT_EQ(tokenizer.eos_id(), 257);
  EXPECT_EQ(tokenizer.pad_id(), 258);
  EXPECT_EQ(tokenizer.encode("Hi\n"), (std::vector<std::int64_t>{'H', 'i', '\n'}));
  // "é" is C3 A9 in UTF-8.
  EXPECT_EQ(tokenizer.encode("\xC3\xA9"), (std::vector<std::int64_t>{0xC3, 0xA9}));
  EXPECT_EQ(tokenizer.encode_with_special("a"), (std::vector<std::int64_t>{256, 'a'}));
  EXPECT_TRUE(tokenizer.is_special(256));
  EXPECT_FALSE(tokenizer.is_special(255));
  EXPECT_FALSE(tokenizer.is_special(259));
}

TEST(ByteTokenizerTest, CustomSpecialTokensAndAdding) {
  ByteTokenizer tokenizer({"<s>", "</s>"});
  EXPECT_EQ(tokenizer.vocab_size(), 258);
  EXPECT_FALSE(tokenizer.bos_id().has_value());  // only <|bos|> is BOS
  EXPECT_EQ(tokenizer.encode_with_special("a"), (std::vector<std::int64_t>{'a'}));
  EXPECT_EQ(tokenizer.add_special_token("<|bos|>"), 258);
  EXPECT_EQ(tokenizer.add_special_token("<|bos|>"), 258);  // already known
  EXPECT_EQ(tokenizer.add_special_token("<s>"), 256);
  EXPECT_EQ(tokenizer.bos_id(), 258);
  EXPECT_EQ(tokenizer.vocab_size(), 259);
  EXPECT_THROW(tokenizer.add_special_token(""), UserError);
  EXPECT_THROW(ByteTokenizer({"<a>", "<a>"}), UserError);
}

TEST(ByteTokenizerTest, SpecialTokensInTextMatchLongestFirst) {
  ByteTokenizer tokenizer({"<|eos|>", "<|e"});
  // At the same position the longer token wins; the shorter one still matches alone.
  EXPECT_EQ(tokenizer.encode("x<|eos|>y<|e"), (std::vector<std::int64_t>{'x', 256, 'y', 257}));
  // Unfinished special text is plain bytes.
  EXPECT_EQ(tokenizer.encode("<|eo"), (std::vector<std::int64_t>{257, 'o'}));
  EXPECT_EQ(tokenizer.encode("<|"), (std::vector<std::int64_t>{'<', '|'}));
}

TEST(ByteTokenizerTest, TokenNamesUseTheByteLevelSpelling) {
  const ByteTokenizer tokenizer;
  EXPECT_EQ(tokenizer.id_to_token(' '), "\xC4\xA0");  // Ġ, as in the saved vocabulary
  EXPECT_EQ(tokenizer.id_to_token('a'), "a");
  EXPECT_EQ(tokenizer.id_to_token(257), "<|eos|>");
  EXPECT_EQ(tokenizer.token_to_id("\xC4\xA0"), ' ');
  EXPECT_EQ(tokenizer.token_to_id(" "), ' ');  // the raw byte works too
  EXPECT_EQ(tokenizer.token_to_id("<|pad|>"), 258);
  EXPECT_FALSE(tokenizer.token_to_id("ab").has_value());
  EXPECT_THROW(tokenizer.id_to_token(259), UserError);
  EXPECT_THROW(tokenizer.id_to_token(-1), UserError);
}

TEST(ByteTokenizerTest, DecodeRoundTripsAndSurvivesInvalidBytes) {
  const ByteTokenizer tokenizer;
  std::mt19937 rng(1234);
  for (int i = 0; i < 500; ++i) {
    const std::string text = tokenizer_test::random_utf8(rng, 40);
    ASSERT_EQ(tokenizer.decode(tokenizer.encode(text)), text);
  }
  const std::vector<std::int64_t> ids = {256, 'a', 257};
  EXPECT_EQ(tokenizer.decode(ids), "<|bos|>a<|eos|>");
  EXPECT_EQ(tokenizer.decode(ids, /*skip_special=*/true), "a");
  // A lone continuation byte and a truncated sequence each become U+FFFD.
  EXPECT_EQ(tokenizer.decode({'a', 0x80, 0xE6, 0x97, 'b'}),
            "a\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(tokenizer.decode({-5, 1000, 'z'}), "z");  // unknown ids are skipped
  // Invalid UTF-8 input still encodes byte by byte.
  EXPECT_EQ(tokenizer.encode("\xFF\xFE"), (std::vector<std::int64_t>{0xFF, 0xFE}));
}

TEST(ByteTokenizerTest, SavedTokenizerJsonGivesTheSameIds) {
  ByteTokenizer tokenizer;
  tokenizer.add_special_token("<|im_start|>");
  ScratchDir dir;
  tokenizer.save(dir.path());
  ASSERT_TRUE(std::filesystem::exists(dir.path() / "tokenizer_config.json"));
  ASSERT_TRUE(std::filesystem::exists(dir.path() / "special_tokens_map.json"));
  const auto loaded = load_tokenizer_json(dir.path() / "tokenizer.json");
  EXPECT_EQ(loaded->vocab_size(), tokenizer.vocab_size());
  EXPECT_EQ(loaded->bos_id(), tokenizer.bos_id());
  EXPECT_EQ(loaded->eos_id(), tokenizer.eos_id());
  EXPECT_EQ(loaded->pad_id(), tokenizer.pad_id());
  EXPECT_EQ(loaded->token_to_id("<|im_start|>"), 259);
  EXPECT_TRUE(loaded->is_special(259));
  std::mt19937 rng(99);
  const std::vector<std::string> specials = {"<|bos|>",      "<|eos|>", "<|pad|>",
                                             "<|im_start|>", "<|",      "|>"};
  for (int i = 0; i < 300; ++i) {
    std::string text = tokenizer_test::random_utf8(rng, 30);
    if (i % 2 == 0) {  // splice special tokens (and near misses) into the text
      const std::size_t at = std::uniform_int_distribution<std::size_t>(0, text.size())(rng);
      std::size_t safe = at;
      while (safe < text.size() && (static_cast<unsigned char>(text[safe]) & 0xC0) == 0x80) ++safe;
      text.insert(safe, specials[i / 2 % specials.size()]);
    }
    ASSERT_EQ(loaded->encode(text), tokenizer.encode(text)) << text;
    ASSERT_EQ(loaded->encode_with_special(text), tokenizer.encode_with_special(text)) << text;
    const auto ids = tokenizer.encode(text);
    ASSERT_EQ(loaded->decode(ids), tokenizer.decode(ids));
    ASSERT_EQ(loaded->decode(ids, true), tokenizer.decode(ids, true));
  }
}

TEST(ByteTokenizerTest, SavedFilesHaveTheHuggingFaceLayout) {
  const ByteTokenizer tokenizer;
  ScratchDir dir;
  tokenizer.save(dir.path());
  const auto root = nlohmann::json::parse(tokenizer_test::read_text(dir.path() / "tokenizer.json"));
  EXPECT_EQ(root["version"], "1.0");
  EXPECT_EQ(root["model"]["type"], "BPE");
  EXPECT_EQ(root["model"]["vocab"].size(), 256u);
  EXPECT_EQ(root["model"]["vocab"]["\xC4\xA0"], 32);  // Ġ
  EXPECT_EQ(root["model"]["vocab"]["\xC4\x8A"], 10);  // Ċ
  EXPECT_EQ(root["model"]["merges"], nlohmann::json::array());
  EXPECT_EQ(root["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(root["pre_tokenizer"]["add_prefix_space"], false);
  EXPECT_EQ(root["pre_tokenizer"]["use_regex"], false);
  EXPECT_EQ(root["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(root["post_processor"]["type"], "TemplateProcessing");
  EXPECT_EQ(root["post_processor"]["single"][0]["SpecialToken"]["id"], "<|bos|>");
  EXPECT_EQ(root["post_processor"]["special_tokens"]["<|bos|>"]["ids"],
            nlohmann::json::array({256}));
  ASSERT_EQ(root["added_tokens"].size(), 3u);
  EXPECT_EQ(root["added_tokens"][1]["content"], "<|eos|>");
  EXPECT_EQ(root["added_tokens"][1]["id"], 257);
  EXPECT_EQ(root["added_tokens"][1]["special"], true);
  const auto config =
      nlohmann::json::parse(tokenizer_test::read_text(dir.path() / "tokenizer_config.json"));
  EXPECT_EQ(config["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_EQ(config["bos_token"], "<|bos|>");
  EXPECT_EQ(config["pad_token"], "<|pad|>");
  EXPECT_EQ(config["added_tokens_decoder"]["258"]["content"], "<|pad|>");
  const auto map =
      nlohmann::json::parse(tokenizer_test::read_text(dir.path() / "special_tokens_map.json"));
  EXPECT_EQ(map["eos_token"], "<|eos|>");
}

}  // namespace
}  // namespace loom
