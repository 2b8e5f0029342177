#include "tokenizer/tokenizer_loader.hpp"

#include <gtest/gtest.h>

#include "errors.hpp"
#include "tokenizer/byte_tokenizer.hpp"
#include "tokenizer_test_support.hpp"

namespace loom {
namespace {

using ScratchDir = test::ScratchDir;

TEST(TokenizerLoaderTest, LoadsFoldersAndFiles) {
  ScratchDir dir;
  ByteTokenizer({"<|bos|>", "<|eos|>"}).save(dir.path());
  const auto from_folder = load_tokenizer(dir.path());
  EXPECT_EQ(from_folder->kind(), "tokenizer.json");
  EXPECT_EQ(from_folder->vocab_size(), 258);
  EXPECT_EQ(from_folder->encode_with_special("hi"), (std::vector<std::int64_t>{256, 'h', 'i'}));
  EXPECT_EQ(load_tokenizer(dir.path() / "tokenizer.json")->vocab_size(), 258);
  EXPECT_EQ(load_tokenizer(tokenizer_test::gpt2_json())->vocab_size(), 50257);
}

TEST(TokenizerLoaderTest, MissingPathsAreUserErrors) {
  ScratchDir dir;
  try {
    load_tokenizer(dir.path());
    FAIL() << "an empty folder loaded";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos);
  }
  try {
    load_tokenizer(dir.path() / "nope");
    FAIL() << "a missing path loaded";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
}

}  // namespace
}  // namespace loom
