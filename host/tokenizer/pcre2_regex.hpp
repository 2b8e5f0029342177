// A PCRE2 regular expression in UTF + Unicode-property mode, JIT-compiled when the platform
// allows, that lists matches the way Hugging Face's Oniguruma-based splitting does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom {

class Pcre2Regex {
 public:
  // Throws UserError naming `context` (e.g. "tokenizer.json: pre_tokenizer Split") when the
  // pattern does not compile. `literal` matches the pattern text as a plain string.
  Pcre2Regex(const std::string& pattern, bool literal, const std::string& context);
  ~Pcre2Regex();
  Pcre2Regex(Pcre2Regex&& other) noexcept;
  Pcre2Regex& operator=(Pcre2Regex&& other) noexcept;
  Pcre2Regex(const Pcre2Regex&) = delete;
  Pcre2Regex& operator=(const Pcre2Regex&) = delete;

  using Match = std::pair<std::size_t, std::size_t>;  // [begin, end) byte offsets
  // Replaces `matches` with the successive non-overlapping matches in `subject`, which must be
  // valid UTF-8. An empty match right where the previous match ended is skipped (Rust's and
  // Oniguruma's find_iter rule). Safe to call from several threads at once.
  void find_all(std::string_view subject, std::vector<Match>& matches) const;

  // Whether the pattern matches at the very start of `subject` (valid UTF-8).
  bool matches_at_start(std::string_view subject) const;

  const std::string& pattern() const { return pattern_; }

 private:
  // Runs one match from `offset`; returns false when there is none.
  bool match_from(std::string_view subject, std::size_t offset, std::uint32_t options,
                  Match& match) const;

  std::string pattern_;
  std::string context_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque so pcre2.h stays out of headers
  bool jit_ = false;
};

}  // namespace loom
