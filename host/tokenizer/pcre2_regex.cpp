#include "tokenizer/pcre2_regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <optional>

#include "errors.hpp"
#include "tokenizer/utf8.hpp"

namespace loom {
namespace {

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

std::string pcre2_message(int error_code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(error_code, buffer, sizeof(buffer));
  return n < 0 ? "PCRE2 error " + std::to_string(error_code)
               : std::string(reinterpret_cast<const char*>(buffer), static_cast<std::size_t>(n));
}

// One match-data block per thread: only the whole-match offsets are read, so a single
// ovector pair fits every pattern and no allocation happens per call.
pcre2_match_data* thread_match_data() {
  struct Deleter {
    void operator()(pcre2_match_data* p) const { pcre2_match_data_free(p); }
  };
  thread_local std::unique_ptr<pcre2_match_data, Deleter> data(pcre2_match_data_create(1, nullptr));
  return data.get();
}

// Unicode White_Space, which Oniguruma's \\s matches. PCRE2's \\s also matches U+180E (no
// longer a space since Unicode 6.3), which would split Mongolian text differently from
// Hugging Face.
constexpr char kWhiteSpaceItems[] =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// Rewrites the escapes whose meaning differs between Oniguruma (Ruby syntax, what Hugging
// Face compiles tokenizer.json regexes with) and PCRE2: \\s/\\S (see above) and \\h/\\H (hex
// digit in Ruby, horizontal space in PCRE2). \\S inside a class is left alone: a class cannot
// hold a negated set, and only U+180E would differ.
std::string onig_compatible(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 64);
  bool in_class = false;
  std::size_t class_start = 0;  // index in `pattern` just after '[' or '[^'
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      if (e == 'Q') {  // \\Q...\\E is literal text: copy it untouched
        const std::size_t end = pattern.find("\\E", i + 1);
        const std::size_t stop = end == std::string::npos ? pattern.size() : end + 2;
        out.append(pattern, i - 1, stop - (i - 1));
        i = stop - 1;
      } else if (e == 's') {
        out += in_class ? std::string(kWhiteSpaceItems) : "[" + std::string(kWhiteSpaceItems) + "]";
      } else if (e == 'S' && !in_class) {
        out += "[^" + std::string(kWhiteSpaceItems) + "]";
      } else if (e == 'h') {
        out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
      } else if (e == 'H' && !in_class) {
        out += "[^0-9a-fA-F]";
      } else {
        out += c;
        out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      class_start = i + 1;
      if (class_start < pattern.size() && pattern[class_start] == '^') ++class_start;
    } else if (in_class && c == '[' && i + 1 < pattern.size() && pattern[i + 1] == ':') {
      // POSIX class such as [:alpha:] inside a bracket: copy through its closing ":]".
      const std::size_t end = pattern.find(":]", i + 2);
      if (end != std::string::npos) {
        out.append(pattern, i, end + 2 - i);
        i = end + 1;
        continue;
      }
    } else if (in_class && c == ']' && i != class_start) {
      in_class = false;
    }
    out += c;
  }
  return out;
}

}  // namespace

Pcre2Regex::Pcre2Regex(const std::string& pattern, bool literal, const std::string& context)
    : pattern_(pattern), context_(context) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  // PCRE2 refuses UCP together with LITERAL (it has no classes to apply to anyway).
  const std::uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  const std::string compiled = literal ? pattern : onig_compatible(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled.data()), compiled.size(),
                                   options, &error_code, &error_offset, nullptr);
  if (code == nullptr) {
    throw UserError(context + ": regex '" + pattern + "' does not compile at offset " +
                    std::to_string(error_offset) + ": " + pcre2_message(error_code));
  }
  code_ = code;
  // JIT is an optimisation only: without it (unsupported CPU, SELinux) the interpreter runs.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Pcre2Regex::~Pcre2Regex() {
  if (code_ != nullptr) pcre2_code_free(as_code(code_));
}

Pcre2Regex::Pcre2Regex(Pcre2Regex&& other) noexcept
    : pattern_(std::move(other.pattern_)),
      context_(std::move(other.context_)),
      code_(other.code_),
      jit_(other.jit_) {
  other.code_ = nullptr;
}

Pcre2Regex& Pcre2Regex::operator=(Pcre2Regex&& other) noexcept {
  if (this != &other) {
    if (code_ != nullptr) pcre2_code_free(as_code(code_));
    pattern_ = std::move(other.pattern_);
    context_ = std::move(other.context_);
    code_ = other.code_;
    jit_ = other.jit_;
    other.code_ = nullptr;
  }
  return *this;
}

bool Pcre2Regex::match_from(std::string_view subject, std::size_t offset, std::uint32_t options,
                            Match& match) const {
  pcre2_match_data* data = thread_match_data();
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  int rc = 0;
  if (jit_ && options == 0) {
    rc = pcre2_jit_match(as_code(code_), text, subject.size(), offset, 0, data, nullptr);
    // The JIT stack is small; the interpreter keeps its frames on the heap instead.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(as_code(code_), text, subject.size(), offset,
                       PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
    }
  } else {
    rc = pcre2_match(as_code(code_), text, subject.size(), offset,
                     options | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data, nullptr);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    throw UserError(context_ + ": regex '" + pattern_ +
                    "' failed on the input text: " + pcre2_message(rc));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
  match = {ovector[0], ovector[1]};
  // \K in a lookahead can yield an end before the start; treat it as an empty match.
  if (match.second < match.first) match.second = match.first;
  return true;
}

void Pcre2Regex::find_all(std::string_view subject, std::vector<Match>& matches) const {
  matches.clear();
  std::size_t search_from = 0;
  std::optional<std::size_t> last_match_end;
  while (search_from <= subject.size()) {
    Match match;
    if (!match_from(subject, search_from, 0, match)) break;
    if (match.first == match.second && last_match_end == match.second) {
      if (search_from == subject.size()) break;
      char32_t unused = 0;
      search_from += utf8::decode_at(subject, search_from, unused);
      continue;
    }
    matches.push_back(match);
    search_from = match.second;
    last_match_end = match.second;
  }
}

bool Pcre2Regex::matches_at_start(std::string_view subject) const {
  Match match;
  return match_from(subject, 0, PCRE2_ANCHORED, match);
}

}  // namespace loom
