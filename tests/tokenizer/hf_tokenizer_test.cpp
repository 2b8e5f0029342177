// Behaviour of load_tokenizer_json() beyond the golden files. Expected ids come from
// independent sources: the vocabulary file itself, the plain-Python BPE in
// reference/ignore_merges_entries.py, or Hugging Face tokenizers 0.23 (Rust) run outside this
// repository on the same files.
#include "tokenizer/hf_tokenizer.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <thread>

#include "errors.hpp"
#include "tokenizer_test_support.hpp"

namespace loom {
namespace {

using Ids = std::vector<std::int64_t>;
using nlohmann::json;
using tokenizer_test::gpt2;
using tokenizer_test::llama3;
using ScratchDir = test::ScratchDir;
using tokenizer_test::write_text;

json read_json(const std::string& path) { return json::parse(tokenizer_test::read_text(path)); }

// GPT-2's bytes_to_unicode, written out again here so the test does not trust the code under
// test for what a vocabulary string means.
std::map<char32_t, unsigned char> byte_of_character() {
  std::map<char32_t, unsigned char> table;
  int moved = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    table[printable ? b : 256 + moved++] = static_cast<unsigned char>(b);
  }
  return table;
}

std::u32string to_u32(const std::string& s) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    char32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    out += cp;
    i += len;
  }
  return out;
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int len = 0;
    char32_t cp = 0;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if (c >= 0xC2 && c < 0xE0) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c < 0xF0) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c < 0xF5) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

// Writes `root` into a fresh tokenizer.json in `dir` and loads it.
std::unique_ptr<Tokenizer> load_variant(const ScratchDir& dir, const json& root) {
  const auto file = dir.path() / "tokenizer.json";
  write_text(file, root.dump());
  return load_tokenizer_json(file);
}

// Entries that only ignore_merges turns into one id, with what plain BPE makes of them
// (reference/ignore_merges_entries.py lists all 588).
struct IgnoreMergesCase {
  const char* text;
  std::int64_t id;
  Ids plain_bpe;
};
const IgnoreMergesCase kIgnoreMergesCases[] = {
    {" vi\xE1\xBB\x87"
     "c",
     100769,
     {3355, 26298, 66}},  // " việc"
    {" jeho", 101503, {503, 2701, 78}},
    {"ektedir", 101673, {1247, 6702, 404}},
    {"lardan", 103084, {75, 569, 276}},
    {" zdrav", 105299, {1167, 3696, 402}},
    {" \xD8\xA7\xDB\x8C\xD8\xB1\xD8\xA7\xD9\x86", 101848, {13258, 90920, 40523}},  // " ایران"
};

TEST(HfTokenizerTest, IgnoreMergesMapsWholeVocabularyWordsToTheirId) {
  for (const auto& c : kIgnoreMergesCases) EXPECT_EQ(llama3().encode(c.text), Ids{c.id}) << c.text;

  // The same file with ignore_merges off gives plain BPE, so the cases above really depend on it.
  json root = read_json(tokenizer_test::llama3_json());
  ASSERT_EQ(root["model"]["ignore_merges"], true);
  root["model"]["ignore_merges"] = false;
  ScratchDir dir;
  const auto plain = load_variant(dir, root);
  for (const auto& c : kIgnoreMergesCases) EXPECT_EQ(plain->encode(c.text), c.plain_bpe) << c.text;
}

TEST(HfTokenizerTest, EveryLlama3VocabularyEntryEncodesToItsOwnId) {
  const json root = read_json(tokenizer_test::llama3_json());
  const auto table = byte_of_character();
  std::size_t checked = 0;
  for (const auto& [spelling, id] : root["model"]["vocab"].items()) {
    std::string bytes;
    for (const char32_t c : to_u32(spelling)) bytes += static_cast<char>(table.at(c));
    if (!valid_utf8(bytes)) continue;  // a piece of a character cannot be encoded alone
    ASSERT_EQ(llama3().encode(bytes), Ids{id.get<std::int64_t>()}) << spelling;
    ++checked;
  }
  // 128,000 entries, 1,352 of them partial UTF-8 sequences.
  EXPECT_EQ(checked, 126648u);
}

TEST(HfTokenizerTest, WhitespaceRuns) {
  // Llama 3 keeps runs together (\s+(?!\S) leaves the last space to the next word); vocab 58040
  // is 128 spaces, 5351 is 64 and 13137 is 40: 7 * 128 + 64 + 40 = 1000.
  EXPECT_EQ(llama3().encode(std::string(1000, ' ')),
            (Ids{58040, 58040, 58040, 58040, 58040, 58040, 58040, 5351, 13137}));
  EXPECT_EQ(llama3().encode("a" + std::string(100, ' ') + "b"), (Ids{64, 5351, 1961, 293}));
  EXPECT_EQ(llama3().encode(std::string(50, '\n') + "x"), (Ids{80183, 6087, 28452, 87}));
  EXPECT_EQ(llama3().encode("\t \t \n  \r\n   x"), (Ids{3762, 31745, 10636, 256, 865}));
  EXPECT_EQ(llama3().encode("x   \n\n  "), (Ids{87, 35033, 256}));
  // GPT-2 has no multi-space tokens: one 220 per space, the last space goes with 'b' (275).
  Ids expected = {64};
  expected.insert(expected.end(), 99, 220);
  expected.push_back(275);
  EXPECT_EQ(gpt2().encode("a" + std::string(100, ' ') + "b"), expected);
  EXPECT_EQ(gpt2().encode("x   \n\n  "), (Ids{87, 220, 220, 220, 628, 220, 220}));

  // A long run is one pre-token; it must neither overflow the regex engine nor be slow.
  const std::string huge(200000, ' ');
  EXPECT_EQ(llama3().decode(llama3().encode(huge)), huge);
  EXPECT_EQ(gpt2().decode(gpt2().encode(huge + "x")), huge + "x");
  const std::string letters(200000, 'a');
  EXPECT_EQ(llama3().decode(llama3().encode(letters)), letters);
}

TEST(HfTokenizerTest, DigitsGroupInRunsOfAtMostThree) {
  EXPECT_EQ(llama3().encode("12345678"), (Ids{4513, 10961, 2495}));  // 123 456 78
  EXPECT_EQ(llama3().encode("1 22 333 4444 55555"),
            (Ids{16, 220, 1313, 220, 8765, 220, 14870, 19, 220, 14148, 2131}));
  EXPECT_EQ(llama3().encode("x1y22z333"), (Ids{87, 16, 88, 1313, 89, 8765}));
  EXPECT_EQ(llama3().encode("3.14159e-10"), (Ids{18, 13, 9335, 2946, 68, 12, 605}));
  // \p{N} covers other scripts' digits and numeric symbols too.
  EXPECT_EQ(llama3().encode("\xD9\xA3\xD9\xA4\xD9\xA5\xD9\xA6"),  // Arabic-Indic 3456
            (Ids{117413, 124079, 124043, 149, 99}));
  EXPECT_EQ(llama3().encode("\xC2\xBD\xC2\xBE"), (Ids{27154, 68496}));  // ½¾
  EXPECT_EQ(gpt2().encode("12345678"), (Ids{10163, 2231, 30924}));

  // Any run of ASCII digits: every token is 1 to 3 digits, and they add up to the run.
  const json root = read_json(tokenizer_test::llama3_json());
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string digits;
    const int n = std::uniform_int_distribution<int>(1, 40)(rng);
    for (int k = 0; k < n; ++k) digits += static_cast<char>('0' + rng() % 10);
    std::string joined;
    for (const auto id : llama3().encode(digits)) {
      const std::string token = llama3().id_to_token(id);
      ASSERT_GE(token.size(), 1u);
      ASSERT_LE(token.size(), 3u);
      ASSERT_EQ(root["model"]["vocab"][token], id);
      joined += token;
    }
    ASSERT_EQ(joined, digits);
    // Groups start at the beginning of the run: the first token is 3 digits unless n < 3.
    ASSERT_EQ(llama3().id_to_token(llama3().encode(digits)[0]).size(),
              static_cast<std::size_t>(std::min(n, 3)));
  }
}

TEST(HfTokenizerTest, MixedScripts) {
  const std::string mixed =
      "Hello\xE4\xB8\x96\xE7\x95\x8C\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "
      "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 "
      "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87 "
      "\xF0\x9F\x99\x82ok";  // Hello世界Привет مرحبا नमस्ते 🙂ok
  EXPECT_EQ(llama3().encode(mixed), (Ids{9906, 102616, 54745, 28089, 8341, 111895, 103645, 100282,
                                         88344, 79468, 100365, 35470, 28584, 564}));
  EXPECT_EQ(llama3().decode(llama3().encode(mixed)), mixed);
  // 日本語とEnglishの混在
  const std::string japanese =
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xA8"
      "English"
      "\xE3\x81\xAE\xE6\xB7\xB7\xE5\x9C\xA8";
  EXPECT_EQ(llama3().encode(japanese), (Ids{102433, 102158, 19732, 23392, 16144, 107960, 19000}));
  EXPECT_EQ(gpt2().encode(japanese),
            (Ids{33768, 98, 17312, 105, 45739, 252, 30201, 15823, 27032, 115, 115, 28839, 101}));
  // U+180E MONGOLIAN VOWEL SEPARATOR is not White_Space for Oniguruma (Hugging Face) but is
  // for PCRE2's \s: the pattern rewrite keeps Hugging Face's split ("\u180e'S" below).
  EXPECT_EQ(llama3().encode("Q\xE1\xA0\x8E'S"), (Ids{48, 157, 254, 236, 6, 50}));
}

TEST(HfTokenizerTest, SpecialTokensInsideText) {
  EXPECT_EQ(llama3().encode("a<|eot_id|>b"), (Ids{64, 128009, 65}));
  EXPECT_EQ(llama3().encode("<|eot_id|><|eot_id|>"), (Ids{128009, 128009}));
  EXPECT_EQ(llama3().encode("x <|begin_of_text|> y"), (Ids{87, 220, 128000, 379}));
  EXPECT_EQ(llama3().encode("<<|eot_id|>>"), (Ids{27, 128009, 29}));
  EXPECT_EQ(llama3().encode("<|end_of_text|\n"), (Ids{27, 91, 408, 3659, 4424, 7511}));
  EXPECT_EQ(llama3().encode("<|endoftext|>"), (Ids{27, 91, 8862, 728, 428, 91, 29}));
  EXPECT_EQ(gpt2().encode("a <|endoftext|>b"), (Ids{64, 220, 50256, 65}));
  EXPECT_EQ(gpt2().encode("<|endoftext|><|endoftext|>"), (Ids{50256, 50256}));
  EXPECT_EQ(gpt2().encode("<|eot_id|>"), (Ids{27, 91, 68, 313, 62, 312, 91, 29}));

  EXPECT_TRUE(llama3().is_special(128009));
  EXPECT_FALSE(llama3().is_special(9906));
  EXPECT_EQ(llama3().decode({9906, 128009, 1917}), "Hello<|eot_id|> world");
  EXPECT_EQ(llama3().decode({9906, 128009, 1917}, /*skip_special=*/true), "Hello world");
}

TEST(HfTokenizerTest, AddedTokenFlagsFollowHuggingFace) {
  json root = read_json(tokenizer_test::gpt2_json());
  std::int64_t next_id = 50257;
  const auto add = [&](const char* content, json flags) {
    json token = {{"id", next_id++}, {"content", content}, {"single_word", false},
                  {"lstrip", false}, {"rstrip", false},    {"normalized", false},
                  {"special", true}};
    token.update(flags);
    root["added_tokens"].push_back(token);
  };
  add("<mask>", {{"lstrip", true}});                                                 // 50257
  add("[R]", {{"rstrip", true}});                                                    // 50258
  add("[LR]", {{"lstrip", true}, {"rstrip", true}});                                 // 50259
  add("wordy", {{"special", false}, {"normalized", true}});                          // 50260
  add("ordy", json::object());                                                       // 50261
  add("\xC3\xA9\xC3\xA9", {{"single_word", true}});                                  // 50262 "éé"
  add(" sp", {{"special", false}});                                                  // 50263
  add("qqword", {{"single_word", true}, {"special", false}, {"normalized", true}});  // 50264
  ScratchDir dir;
  const auto tokenizer = load_variant(dir, root);
  const std::pair<const char*, Ids> cases[] = {
      {"a <mask> b", {64, 50257, 275}},
      {"a    <mask>", {64, 50257}},
      {"xx<mask>", {5324, 50257}},
      {"x[R]   y", {87, 50258, 88}},
      {"[R] [R]", {50258, 50258}},
      {" [LR] ", {50259}},
      // normalized=false tokens are found first, so "ordy" beats the longer "wordy".
      {"wordy", {86, 50261}},
      {"swordy", {2032, 50261}},
      {"\xC3\xA9\xC3\xA9", {50262}},
      {"a\xC3\xA9\xC3\xA9", {64, 2634, 2634}},  // inside a word: not matched
      {"\xC3\xA9 \xC3\xA9\xC3\xA9 \xC3\xA9", {2634, 220, 50262, 38251}},
      {"a sp b", {64, 50263, 275}},
      {"  sp  ", {220, 50263, 220, 220}},
      {"a qqword b", {64, 220, 50264, 275}},
      {"aqqword", {30188, 80, 4775}},
      {"qqword_", {38227, 4775, 62}},  // '_' is a word character
      {"qqword.", {50264, 13}},
  };
  for (const auto& [text, ids] : cases) EXPECT_EQ(tokenizer->encode(text), ids) << text;
  EXPECT_TRUE(tokenizer->is_special(50257));
  EXPECT_FALSE(tokenizer->is_special(50263));
  EXPECT_EQ(tokenizer->decode({64, 50263, 50257}, /*skip_special=*/true), "a sp");
}

TEST(HfTokenizerTest, SplitBehaviorsFollowHuggingFace) {
  // GPT-2 with Sequence[Split(" ", behavior, invert), ByteLevel(use_regex=false)].
  const struct {
    const char* behavior;
    bool invert;
    Ids ids;
  } cases[] = {
      {"Isolated", false, {31373, 220, 6894, 220, 220, 17776, 220, 482}},
      {"Removed", false, {31373, 6894, 17776, 482}},
      {"Removed", true, {220, 220, 220, 220}},
      {"MergedWithPrevious", false, {31373, 220, 6894, 220, 220, 17776, 220, 482}},
      {"MergedWithPrevious", true, {31373, 995, 220, 757, 12876}},
      {"MergedWithNext", false, {31373, 995, 220, 757, 12876}},
      {"MergedWithNext", true, {31373, 220, 6894, 220, 220, 17776, 220, 482}},
      {"Contiguous", false, {31373, 220, 6894, 220, 220, 17776, 220, 482}},
  };
  json root = read_json(tokenizer_test::gpt2_json());
  ScratchDir dir;
  for (const auto& c : cases) {
    root["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern", {{"String", " "}}},
           {"behavior", c.behavior},
           {"invert", c.invert}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
    EXPECT_EQ(load_variant(dir, root)->encode("hello world  again ok"), c.ids)
        << c.behavior << " invert=" << c.invert;
  }
}

TEST(HfTokenizerTest, ByteLevelPrefixSpace) {
  json root = read_json(tokenizer_test::gpt2_json());
  root["pre_tokenizer"]["add_prefix_space"] = true;
  ScratchDir dir;
  const auto tokenizer = load_variant(dir, root);
  EXPECT_EQ(tokenizer->encode("Hello world"), (Ids{18435, 995}));  // " Hello", " world"
  // Each piece between added tokens gets its own prefix space.
  EXPECT_EQ(tokenizer->encode("Hi<|endoftext|>there"), (Ids{15902, 50256, 612}));
  EXPECT_EQ(tokenizer->encode(" x"), (Ids{2124}));  // already starts with a space
}

TEST(HfTokenizerTest, SpecialIdsAndPostProcessor) {
  // Llama 3: from tokenizer_config.json; its post-processor is ByteLevel, which adds nothing.
  EXPECT_EQ(llama3().bos_id(), 128000);
  EXPECT_EQ(llama3().eos_id(), 128001);
  EXPECT_FALSE(llama3().pad_id().has_value());
  EXPECT_EQ(llama3().encode_with_special("Hi"), llama3().encode("Hi"));
  EXPECT_EQ(llama3().vocab_size(), 128256);
  EXPECT_EQ(llama3().kind(), "tokenizer.json");
  // GPT-2: no config beside it, so by name.
  EXPECT_EQ(gpt2().bos_id(), 50256);
  EXPECT_EQ(gpt2().eos_id(), 50256);
  EXPECT_EQ(gpt2().vocab_size(), 50257);

  // The newer Llama 3 layout: Sequence[ByteLevel, TemplateProcessing]; with no config beside
  // the file, BOS/EOS come from the template.
  json root = read_json(tokenizer_test::llama3_json());
  const json bos = {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}};
  const json eos = {{"SpecialToken", {{"id", "<|end_of_text|>"}, {"type_id", 0}}}};
  const json a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  root["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       {{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}},
        {{"type", "TemplateProcessing"},
         {"single", {bos, a, eos}},
         {"pair", {bos, a, bos, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
         {"special_tokens",
          {{"<|begin_of_text|>",
            {{"id", "<|begin_of_text|>"}, {"ids", {128000}}, {"tokens", {"<|begin_of_text|>"}}}},
           {"<|end_of_text|>",
            {{"id", "<|end_of_text|>"}, {"ids", {128001}}, {"tokens", {"<|end_of_text|>"}}}}}}}}}};
  ScratchDir dir;
  const auto tokenizer = load_variant(dir, root);
  EXPECT_EQ(tokenizer->encode_with_special("Hello world!"), (Ids{128000, 9906, 1917, 0, 128001}));
  EXPECT_EQ(tokenizer->bos_id(), 128000);
  EXPECT_EQ(tokenizer->eos_id(), 128001);

  // tokenizer_config.json wins, in either form.
  write_text(dir.path() / "tokenizer_config.json",
             R"({"bos_token": {"content": "<|eot_id|>"}, "eos_token": "<|eot_id|>",
                 "pad_token": "<|reserved_special_token_0|>"})");
  const auto configured = load_tokenizer_json(dir.path() / "tokenizer.json");
  EXPECT_EQ(configured->bos_id(), 128009);
  EXPECT_EQ(configured->eos_id(), 128009);
  EXPECT_EQ(configured->pad_id(), 128002);
  write_text(dir.path() / "tokenizer_config.json", R"({"pad_token": "<|no such token|>"})");
  EXPECT_THROW(load_tokenizer_json(dir.path() / "tokenizer.json"), UserError);
}

TEST(HfTokenizerTest, TokenLookups) {
  EXPECT_EQ(llama3().token_to_id("\xC4\xA0the"), 279);  // "Ġthe"
  EXPECT_EQ(llama3().token_to_id("<|eot_id|>"), 128009);
  EXPECT_FALSE(llama3().token_to_id("no such token at all").has_value());
  EXPECT_EQ(llama3().id_to_token(279), "\xC4\xA0the");
  EXPECT_EQ(llama3().id_to_token(128001), "<|end_of_text|>");
  EXPECT_THROW(llama3().id_to_token(128256), UserError);
  EXPECT_THROW(llama3().id_to_token(-1), UserError);
  EXPECT_EQ(llama3().decode({9906, 999999, -3, 1917}), "Hello world");  // unknown ids skipped
}

TEST(HfTokenizerTest, AddSpecialTokenThenSaveAndReload) {
  auto tokenizer = load_tokenizer_json(tokenizer_test::gpt2_json());
  EXPECT_EQ(tokenizer->add_special_token("<|im_start|>"), 50257);
  EXPECT_EQ(tokenizer->add_special_token("<|im_start|>"), 50257);
  EXPECT_EQ(tokenizer->add_special_token("<|endoftext|>"), 50256);
  // A token the model already has keeps its id and is now matched whole (as Hugging Face).
  EXPECT_EQ(tokenizer->add_special_token("hello"), 31373);
  EXPECT_EQ(tokenizer->vocab_size(), 50258);
  EXPECT_TRUE(tokenizer->is_special(50257));
  EXPECT_TRUE(tokenizer->is_special(31373));
  EXPECT_EQ(tokenizer->encode("a<|im_start|>b"), (Ids{64, 50257, 65}));
  EXPECT_EQ(tokenizer->encode("say hello world"), (Ids{16706, 220, 31373, 995}));
  EXPECT_EQ(tokenizer->decode({31373, 50257, 220}, /*skip_special=*/true), " ");

  ScratchDir dir;
  tokenizer->save(dir.path());
  const auto reloaded = load_tokenizer_json(dir.path() / "tokenizer.json");
  EXPECT_EQ(reloaded->vocab_size(), 50258);
  EXPECT_EQ(reloaded->token_to_id("<|im_start|>"), 50257);
  EXPECT_TRUE(reloaded->is_special(50257));
  EXPECT_EQ(reloaded->bos_id(), 50256);
  std::mt19937 rng(5);
  for (int i = 0; i < 200; ++i) {
    const std::string text = tokenizer_test::random_utf8(rng, 40) + "<|im_start|>hello";
    ASSERT_EQ(reloaded->encode(text), tokenizer->encode(text));
  }
  const json saved = read_json((dir.path() / "tokenizer.json").string());
  EXPECT_EQ(saved["added_tokens"].back()["content"], "<|im_start|>");
  EXPECT_EQ(saved["model"]["merges"].size(), 50000u);
  const json config = read_json((dir.path() / "tokenizer_config.json").string());
  EXPECT_EQ(config["added_tokens_decoder"]["50257"]["content"], "<|im_start|>");
  EXPECT_EQ(config["eos_token"], "<|endoftext|>");
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "special_tokens_map.json"));
}

TEST(HfTokenizerTest, SaveKeepsTheOriginalTokenizerConfig) {
  auto tokenizer = load_tokenizer_json(tokenizer_test::llama3_json());
  EXPECT_EQ(tokenizer->add_special_token("<|pad|>"), 128256);
  ScratchDir dir;
  tokenizer->save(dir.path());
  const json config = read_json((dir.path() / "tokenizer_config.json").string());
  const json original =
      read_json(tokenizer_test::shared_file("tokenizers/llama3/tokenizer_config.json"));
  EXPECT_EQ(config["chat_template"], original["chat_template"]);
  EXPECT_EQ(config["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(config["added_tokens_decoder"]["128256"]["content"], "<|pad|>");
  EXPECT_EQ(config["added_tokens_decoder"]["128009"]["content"], "<|eot_id|>");
  const auto reloaded = load_tokenizer_json(dir.path() / "tokenizer.json");
  EXPECT_EQ(reloaded->pad_id(), 128256);  // by name: <|pad|>
  EXPECT_EQ(reloaded->vocab_size(), 128257);
  EXPECT_EQ(reloaded->encode("x<|pad|>"), (Ids{87, 128256}));
}

TEST(HfTokenizerTest, ConcurrentEncodingGivesTheSameIds) {
  // Data preparation encodes from several threads; caches and regex scratch are per thread.
  std::mt19937 rng(11);
  std::vector<std::string> texts;
  for (int i = 0; i < 400; ++i) texts.push_back(tokenizer_test::random_utf8(rng, 80));
  std::vector<Ids> expected;
  for (const auto& text : texts) expected.push_back(llama3().encode(text));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::size_t i = 0; i < texts.size(); ++i) {
        const std::size_t k = (i * 7 + t * 101) % texts.size();
        // Alternate tokenizers so each thread juggles two word caches.
        if (llama3().encode(texts[k]) != expected[k]) ++mismatches[t];
        gpt2().encode(texts[k]);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace loom
