// Tokens matched in the raw text before the model sees it (Hugging Face's "added tokens":
// special tokens such as <|eot_id|>, and user additions).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pcre2_regex.hpp"

namespace loom {

struct AddedToken {
  std::int64_t id = 0;
  std::string content;
  bool special = true;
  bool single_word = false;  // only when not inside a word
  bool lstrip = false;       // swallows the whitespace on its left
  bool rstrip = false;       // swallows the whitespace on its right
  bool normalized = false;   // matched after the normalizer (there is none here)
};

class AddedVocabulary {
 public:
  AddedVocabulary();

  // Adds or replaces (same content) a token.
  void add(const AddedToken& token);
  const AddedToken* find(std::string_view content) const;
  const AddedToken* find(std::int64_t id) const;
  // In the order they were added.
  const std::vector<AddedToken>& tokens() const { return tokens_; }

  struct Piece {
    std::size_t begin;
    std::size_t end;
    std::int64_t id;  // the added token, or -1 for text the model tokenizes
  };
  // Cuts `text` into added tokens and the text between them, exactly as Hugging Face does:
  // first the tokens with normalized=false over the whole text, then those with
  // normalized=true inside what is left; leftmost-longest, non-overlapping matches, each then
  // filtered by single_word and widened by lstrip/rstrip. Works on any bytes.
  void split(std::string_view text, std::vector<Piece>& pieces) const;

 private:
  // Candidates grouped by first byte, longest first, so that leftmost-longest matching is a
  // byte-table scan plus a few memcmp's.
  struct MatchSet {
    std::array<std::vector<std::uint32_t>, 256> by_first_byte;
    bool empty = true;
  };
  void rebuild();
  const AddedToken* longest_match_at(const MatchSet& set, std::string_view text,
                                     std::size_t pos) const;
  void split_with(const MatchSet& set, std::string_view text, std::size_t offset,
                  std::vector<Piece>& pieces) const;
  bool is_single_word(std::string_view text, std::size_t begin, std::size_t end) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, std::size_t> index_by_content_;
  std::unordered_map<std::int64_t, std::size_t> index_by_id_;
  MatchSet raw_set_;
  MatchSet normalized_set_;
  // Rust regex's \w, for single_word; compiled on first need.
  std::shared_ptr<Pcre2Regex> word_char_;
};

}  // namespace loom
