#include "tokenizer/added_vocabulary.hpp"

#include <algorithm>
#include <cstring>

#include "tokenizer/utf8.hpp"

namespace loom {
namespace {

// Start of the whitespace run that ends `text` (Rust regex \s*$).
std::size_t trailing_space_start(std::string_view text) {
  std::size_t start = text.size();
  while (start > 0) {
    const std::size_t prev = utf8::previous_char_start(text, start);
    char32_t cp = 0;
    if (utf8::decode_at(text, prev, cp) != start - prev || !utf8::is_white_space(cp)) break;
    start = prev;
  }
  return start;
}

// Length of the whitespace run that starts `text` (Rust regex ^\s*).
std::size_t leading_space_length(std::string_view text) {
  std::size_t end = 0;
  while (end < text.size()) {
    char32_t cp = 0;
    const std::size_t len = utf8::decode_at(text, end, cp);
    if (!utf8::is_white_space(cp)) break;
    end += len;
  }
  return end;
}

}  // namespace

AddedVocabulary::AddedVocabulary() = default;

void AddedVocabulary::add(const AddedToken& token) {
  if (token.content.empty()) return;  // Hugging Face ignores empty added tokens too
  const auto existing = index_by_content_.find(token.content);
  if (existing != index_by_content_.end()) {
    index_by_id_.erase(tokens_[existing->second].id);
    tokens_[existing->second] = token;
    index_by_id_[token.id] = existing->second;
  } else {
    index_by_content_.emplace(token.content, tokens_.size());
    index_by_id_[token.id] = tokens_.size();
    tokens_.push_back(token);
  }
  if (token.single_word && !word_char_) {
    // Rust regex's Unicode \w; older PCRE2 lacks binary properties, hence the fallback.
    try {
      word_char_ = std::make_shared<Pcre2Regex>(
          "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", false, "added tokens");
    } catch (const std::exception&) {
      word_char_ =
          std::make_shared<Pcre2Regex>("[\\p{L}\\p{M}\\p{Nd}\\p{Pc}]", false, "added tokens");
    }
  }
  rebuild();
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  const auto it = index_by_content_.find(std::string(content));
  return it == index_by_content_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::find(std::int64_t id) const {
  const auto it = index_by_id_.find(id);
  return it == index_by_id_.end() ? nullptr : &tokens_[it->second];
}

void AddedVocabulary::rebuild() {
  raw_set_ = MatchSet();
  normalized_set_ = MatchSet();
  for (std::uint32_t i = 0; i < tokens_.size(); ++i) {
    MatchSet& set = tokens_[i].normalized ? normalized_set_ : raw_set_;
    set.by_first_byte[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
    set.empty = false;
  }
  for (MatchSet* set : {&raw_set_, &normalized_set_}) {
    for (auto& candidates : set->by_first_byte) {
      std::sort(candidates.begin(), candidates.end(), [&](std::uint32_t a, std::uint32_t b) {
        return tokens_[a].content.size() > tokens_[b].content.size();
      });
    }
  }
}

bool AddedVocabulary::is_single_word(std::string_view text, std::size_t begin,
                                     std::size_t end) const {
  const auto is_word_char_at = [&](std::size_t pos) {
    char32_t cp = 0;
    const std::size_t len = utf8::decode_at(text, pos, cp);
    if (len == 1 && cp >= 0x80) return false;  // an invalid byte is no word character
    return word_char_->matches_at_start(text.substr(pos, len));
  };
  const bool space_before = begin == 0 || !is_word_char_at(utf8::previous_char_start(text, begin));
  const bool space_after = end == text.size() || !is_word_char_at(end);
  return space_before && space_after;
}

const AddedToken* AddedVocabulary::longest_match_at(const MatchSet& set, std::string_view text,
                                                    std::size_t pos) const {
  for (const std::uint32_t index : set.by_first_byte[static_cast<unsigned char>(text[pos])]) {
    const std::string& content = tokens_[index].content;  // candidates are longest first
    if (content.size() <= text.size() - pos &&
        std::memcmp(content.data(), text.data() + pos, content.size()) == 0) {
      return &tokens_[index];
    }
  }
  return nullptr;
}

void AddedVocabulary::split_with(const MatchSet& set, std::string_view text, std::size_t offset,
                                 std::vector<Piece>& pieces) const {
  const auto push_text = [&](std::size_t begin, std::size_t end) {
    if (begin < end) pieces.push_back({offset + begin, offset + end, -1});
  };
  if (set.empty) {
    push_text(0, text.size());
    return;
  }
  std::size_t start_offset = 0;  // end of what has been emitted
  std::size_t pos = 0;           // where the next match search starts
  const std::size_t n = text.size();
  while (pos < n) {
    // Leftmost-longest match at or after `pos`.
    std::size_t match_begin = pos;
    const AddedToken* token = nullptr;
    while (match_begin < n && (token = longest_match_at(set, text, match_begin)) == nullptr) {
      ++match_begin;
    }
    if (token == nullptr) break;
    std::size_t begin = match_begin;
    std::size_t end = match_begin + token->content.size();
    pos = end;
    if (token->single_word && !is_single_word(text, begin, end)) continue;
    if (token->lstrip) begin = std::max(trailing_space_start(text.substr(0, begin)), start_offset);
    if (token->rstrip) end += leading_space_length(text.substr(end));
    // A previous token's rstrip already took this region (Hugging Face would overlap them).
    if (begin < start_offset) continue;
    push_text(start_offset, begin);
    pieces.push_back({offset + begin, offset + end, token->id});
    start_offset = end;
  }
  push_text(start_offset, n);
}

void AddedVocabulary::split(std::string_view text, std::vector<Piece>& pieces) const {
  pieces.clear();
  split_with(raw_set_, text, 0, pieces);
  if (normalized_set_.empty) return;
  std::vector<Piece> first_pass;
  first_pass.swap(pieces);
  for (const Piece& piece : first_pass) {
    if (piece.id >= 0) {
      pieces.push_back(piece);
    } else {
      split_with(normalized_set_, text.substr(piece.begin, piece.end - piece.begin), piece.begin,
                 pieces);
    }
  }
}

}  // namespace loom
