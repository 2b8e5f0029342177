// Bad tokenizer.json files: every one is a UserError naming the file, never a crash.
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "errors.hpp"
#include "tokenizer/byte_tokenizer.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer_test_support.hpp"

namespace loom {
namespace {

using nlohmann::json;
using ScratchDir = test::ScratchDir;
using tokenizer_test::write_text;

// A small but complete byte-level BPE: 'a','b','c' plus merges, Split + ByteLevel, a template.
json small_tokenizer() {
  json vocab = json::object();
  std::int64_t id = 0;
  for (const char* token : {"a", "b", "c", "\xC4\xA0", "ab", "abc",
                            "\xC4\xA0"
                            "a"}) {
    vocab[token] = id++;
  }
  return {
      {"version", "1.0"},
      {"added_tokens", {{{"id", 7}, {"content", "<s>"}, {"special", true}, {"normalized", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"Regex", " ?\\p{L}+|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {7}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"a b", json::array({"ab", "c"}), "\xC4\xA0 a"}}}}};
}

// Loads `root` written to a temp file; returns the UserError message ("" if it loaded).
std::string load_error(const std::string& text) {
  ScratchDir dir;
  const auto file = dir.path() / "tokenizer.json";
  write_text(file, text);
  try {
    load_tokenizer_json(file);
  } catch (const UserError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(file.string()), std::string::npos) << message;
    return message;
  }
  return "";
}

TEST(TokenizerJsonErrorsTest, SmallTokenizerWorks) {
  ScratchDir dir;
  write_text(dir.path() / "tokenizer.json", small_tokenizer().dump());
  const auto tokenizer = load_tokenizer_json(dir.path() / "tokenizer.json");
  using Ids = std::vector<std::int64_t>;
  // "abc" -> a b c -> ab c -> abc; " a" is one token; " cab" -> Ġ c ab (no "Ġ c" merge).
  EXPECT_EQ(tokenizer->encode("abc a cab<s>"), (Ids{5, 6, 3, 2, 4, 7}));
  EXPECT_EQ(tokenizer->encode_with_special("ab"), (Ids{7, 4}));
  EXPECT_EQ(tokenizer->bos_id(), 7);  // from the template
  EXPECT_EQ(tokenizer->decode({5, 6, 7}, true), "abc a");
  EXPECT_EQ(tokenizer->encode("xyz"), Ids{});  // not in the vocabulary, no unk: dropped
}

TEST(TokenizerJsonErrorsTest, UnsupportedPartsAreNamed) {
  const auto with = [](const char* pointer, json value) {
    json root = small_tokenizer();
    root[json::json_pointer(pointer)] = std::move(value);
    return load_error(root.dump());
  };
  EXPECT_NE(with("/model/type", "WordPiece").find("WordPiece"), std::string::npos);
  EXPECT_NE(with("/model/type", "Unigram").find("Unigram"), std::string::npos);
  EXPECT_NE(with("/model/type", "WordLevel").find("WordLevel"), std::string::npos);
  EXPECT_NE(with("/normalizer", {{"type", "NFC"}}).find("NFC"), std::string::npos);
  EXPECT_NE(with("/pre_tokenizer", {{"type", "Whitespace"}}).find("Whitespace"), std::string::npos);
  EXPECT_NE(with("/pre_tokenizer", {{"type", "Metaspace"}}).find("Metaspace"), std::string::npos);
  EXPECT_NE(with("/pre_tokenizer", nullptr).find("ByteLevel"), std::string::npos);
  EXPECT_NE(with("/decoder", {{"type", "WordPiece"}}).find("WordPiece"), std::string::npos);
  EXPECT_NE(with("/post_processor", {{"type", "Nope"}}).find("Nope"), std::string::npos);
  EXPECT_NE(with("/model/dropout", 0.1).find("dropout"), std::string::npos);
  EXPECT_NE(with("/model/continuing_subword_prefix", "##").find("continuing_subword_prefix"),
            std::string::npos);
}

TEST(TokenizerJsonErrorsTest, MalformedPartsAreUserErrors) {
  const auto with = [](const char* pointer, json value) {
    json root = small_tokenizer();
    root[json::json_pointer(pointer)] = std::move(value);
    return load_error(root.dump());
  };
  EXPECT_NE(load_error("").find("not valid JSON"), std::string::npos);
  EXPECT_NE(load_error("{\"model\": ").find("not valid JSON"), std::string::npos);
  EXPECT_NE(load_error("[1, 2]").find("object"), std::string::npos);
  EXPECT_NE(load_error("{}").find("model"), std::string::npos);
  EXPECT_NE(with("/version", "2.0").find("version"), std::string::npos);
  EXPECT_NE(with("/model/vocab", json::array()).find("vocab"), std::string::npos);
  EXPECT_NE(with("/model/vocab/a", -1).find("vocab"), std::string::npos);
  EXPECT_NE(with("/model/vocab/a", "zero").find("vocab"), std::string::npos);
  EXPECT_NE(with("/model/vocab/a", 1).find("both"), std::string::npos);
  EXPECT_NE(with("/model/vocab/zz", 4000000000LL).find("vocab"), std::string::npos);
  EXPECT_NE(with("/model/vocab/zz", 5000000).find("sparse"), std::string::npos);
  EXPECT_NE(with("/model/merges/0", "a  b").find("merges"), std::string::npos);
  EXPECT_NE(with("/model/merges/0", "a x").find("'x'"), std::string::npos);
  EXPECT_NE(with("/model/merges/0", "b a").find("'ba'"), std::string::npos);  // no "ba" token
  EXPECT_NE(with("/model/merges/0", json::array({"a"})).find("merges"), std::string::npos);
  EXPECT_NE(with("/model/merges", "a b").find("merges"), std::string::npos);
  EXPECT_NE(with("/model/ignore_merges", "yes").find("ignore_merges"), std::string::npos);
  EXPECT_NE(with("/pre_tokenizer/pretokenizers/0/pattern", {{"Regex", "(unclosed"}})
                .find("does not compile"),
            std::string::npos);
  EXPECT_NE(with("/pre_tokenizer/pretokenizers/0/behavior", "Sideways").find("behavior"),
            std::string::npos);
  EXPECT_NE(with("/pre_tokenizer/pretokenizers", "x").find("pretokenizers"), std::string::npos);
  EXPECT_NE(with("/added_tokens", {{{"content", "<x>"}}}).find("id"), std::string::npos);
  EXPECT_NE(with("/added_tokens", {{{"id", 8}}}).find("content"), std::string::npos);
  EXPECT_NE(with("/added_tokens", {{{"id", 0}, {"content", "<x>"}}}).find("already"),
            std::string::npos);
  EXPECT_NE(with("/added_tokens/0/special", "maybe").find("special"), std::string::npos);
  EXPECT_NE(with("/post_processor/single/0/SpecialToken/id", "<missing>").find("<missing>"),
            std::string::npos);
  EXPECT_NE(with("/post_processor/special_tokens/<s>/ids/0", 99).find("99"), std::string::npos);
  EXPECT_EQ(with("/model/type", nullptr), "");  // absent type means BPE (GPT-2 on the Hub)
}

TEST(TokenizerJsonErrorsTest, MissingFileIsAUserError) {
  EXPECT_THROW(load_tokenizer_json("/nonexistent/dir/tokenizer.json"), UserError);
}

// Feeds random bytes and randomly mutated files to the loader: each attempt must either load
// (and then encode without crashing) or throw UserError; anything else fails the test.
TEST(TokenizerJsonErrorsTest, FuzzedFilesNeverCrash) {
  ScratchDir dir;
  ByteTokenizer byte_tokenizer;
  byte_tokenizer.save(dir.path() / "byte");
  const std::vector<std::string> seeds = {
      small_tokenizer().dump(), small_tokenizer().dump(2),
      tokenizer_test::read_text((dir.path() / "byte" / "tokenizer.json").string())};
  const auto file = dir.path() / "tokenizer.json";
  std::mt19937 rng(424242);
  const std::string alphabet = "{}[]\":,0123456789-.eE ntrufalsAbBPE\\\x80\xC4\xFF";
  int loaded = 0;
  int rejected = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 400; ++i) {
    std::string text;
    if (i % 10 == 0) {  // pure noise
      const int n = std::uniform_int_distribution<int>(0, 300)(rng);
      for (int k = 0; k < n; ++k) text += static_cast<char>(rng() & 0xFF);
    } else {
      text = seeds[i % seeds.size()];
      const int edits = std::uniform_int_distribution<int>(1, 6)(rng);
      for (int k = 0; k < edits && !text.empty(); ++k) {
        const std::size_t at = std::uniform_int_distribution<std::size_t>(0, text.size() - 1)(rng);
        const char c = alphabet[rng() % alphabet.size()];
        switch (rng() % 4) {
          case 0:
            text[at] = c;
            break;
          case 1:
            text.insert(at, 1, c);
            break;
          case 2:
            text.erase(at, std::uniform_int_distribution<std::size_t>(1, 8)(rng));
            break;
          default:
            text.resize(at);  // truncated file
            break;
        }
      }
    }
    write_text(file, text);
    try {
      const auto tokenizer = load_tokenizer_json(file);
      const auto ids = tokenizer->encode("abc a <s> \xC3\xA9\xE2\x82\xAC 123");
      tokenizer->decode(ids);
      tokenizer->encode_with_special("x");
      ++loaded;
    } catch (const UserError&) {
      ++rejected;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a UserError: " << e.what() << "\nfile: " << text;
    }
  }
  EXPECT_GT(rejected, 100);
  EXPECT_GT(loaded, 0);  // mutations inside strings can leave a valid file
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
}

}  // namespace
}  // namespace loom
