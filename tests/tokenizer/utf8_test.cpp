#include "tokenizer/utf8.hpp"

#include <gtest/gtest.h>

#include "tokenizer/byte_level_alphabet.hpp"
#include "tokenizer/pcre2_regex.hpp"

namespace loom {
namespace {

TEST(Utf8Test, ValidityAndLossyRepairLikeRust) {
  EXPECT_TRUE(utf8::is_valid("plain \xC3\xA9 \xF0\x9F\x99\x82"));
  EXPECT_FALSE(utf8::is_valid("\xC0\x80"));          // overlong
  EXPECT_FALSE(utf8::is_valid("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(utf8::is_valid("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(utf8::is_valid("\xE2\x82"));          // truncated
  const std::string r = "\xEF\xBF\xBD";
  // String::from_utf8_lossy: one U+FFFD per maximal invalid subpart.
  EXPECT_EQ(utf8::repair("a\xF0\x9F\x99"
                         "b"),
            "a" + r + "b");
  EXPECT_EQ(utf8::repair("\xE0\x80"), r + r);
  EXPECT_EQ(utf8::repair("\xFF\xC3\xA9"), r + "\xC3\xA9");
  EXPECT_EQ(utf8::repair("\xC3"), r);
}

TEST(Utf8Test, ByteLevelAlphabetIsGpt2s) {
  const auto& alphabet = ByteLevelAlphabet::get();
  EXPECT_EQ(alphabet.spell(' '), "\xC4\xA0");   // Ġ = U+0120
  EXPECT_EQ(alphabet.spell('\n'), "\xC4\x8A");  // Ċ = U+010A
  EXPECT_EQ(alphabet.spell('A'), "A");
  EXPECT_EQ(alphabet.spell(std::uint8_t{0xAD}), "\xC5\x83");  // soft hyphen is moved: U+0143
  EXPECT_EQ(alphabet.spell(std::uint8_t{0xE9}), "\xC3\xA9");  // é stands for itself
  for (int b = 0; b < 256; ++b) {
    const std::string raw(1, static_cast<char>(b));
    EXPECT_EQ(alphabet.unspell(alphabet.spell(raw)), raw);
  }
  EXPECT_FALSE(alphabet.unspell(" ").has_value());  // a real space is not in the alphabet
  EXPECT_FALSE(alphabet.unspell("\xE4\xB8\x96").has_value());
}

TEST(Utf8Test, RegexFollowsOnigurumaSemantics) {
  std::vector<Pcre2Regex::Match> matches;
  Pcre2Regex spaces("\\s+", false, "test");
  // U+180E is no White_Space (Oniguruma) although PCRE2's \s would take it.
  spaces.find_all("a \xE1\xA0\x8E b", matches);
  ASSERT_EQ(matches.size(), 2u);
  EXPECT_EQ(matches[0], (Pcre2Regex::Match{1, 2}));
  Pcre2Regex non_space_class("[^\\s]+", false, "test");
  non_space_class.find_all("\xE1\xA0\x8E x", matches);
  ASSERT_EQ(matches.size(), 2u);
  EXPECT_EQ(matches[0], (Pcre2Regex::Match{0, 3}));
  Pcre2Regex hex("\\h+", false, "test");  // Ruby syntax: hex digit
  hex.find_all("xx 1f zz", matches);
  ASSERT_EQ(matches.size(), 1u);
  EXPECT_EQ(matches[0], (Pcre2Regex::Match{3, 5}));
  // Empty matches: not right after the previous match (Rust/Oniguruma find_iter).
  Pcre2Regex maybe_a("a*", false, "test");
  maybe_a.find_all("baab", matches);
  EXPECT_EQ(matches, (std::vector<Pcre2Regex::Match>{{0, 0}, {1, 3}, {4, 4}}));
  Pcre2Regex literal("a.b", true, "test");
  literal.find_all("axb a.b", matches);
  EXPECT_EQ(matches, (std::vector<Pcre2Regex::Match>{{4, 7}}));
}

}  // namespace
}  // namespace loom
