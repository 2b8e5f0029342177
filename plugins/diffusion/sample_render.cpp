#include "sample_render.hpp"

#include <cstdio>
#include <iomanip>
#include <sstream>
#include <stdexcept>

namespace loom::diffusion {

namespace {

constexpr const char* kGreen = "\x1b[32m";
constexpr const char* kRed = "\x1b[31m";
constexpr const char* kDim = "\x1b[2m";
constexpr const char* kReset = "\x1b[0m";
constexpr const char* kMaskText = "[MASK]";

enum class Style { Untouched, Correct, Wrong, Fill };

// Decodes runs of equal style together so that multi-token characters stay whole.
template <class StyleOf, class Emit>
void for_each_span(const std::vector<std::int64_t>& ids, StyleOf style_of, Emit emit) {
  std::size_t start = 0;
  while (start < ids.size()) {
    const auto style = style_of(start);
    std::size_t end = start + 1;
    while (end < ids.size() && style_of(end) == style) ++end;
    emit(style, std::vector<std::int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(start),
                                          ids.begin() + static_cast<std::ptrdiff_t>(end)));
    start = end;
  }
}

std::string percent(double share) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(1) << 100.0 * share << "%";
  return os.str();
}

}  // namespace

SampleReport describe_sample(const sdk::TokenizerHandle& tokenizer, const SampleTokens& tokens,
                             std::int64_t mask_token_id, bool colour) {
  if (tokens.generated.size() != tokens.masked.size())
    throw std::invalid_argument("diffusion: generated and masked sequences differ in length");
  const auto& masked = tokens.masked;
  const auto& gen = tokens.generated;
  const auto& orig = tokens.original;
  SampleReport r;
  r.total_tokens = static_cast<std::int64_t>(masked.size());

  std::int64_t scored = 0, correct = 0;
  auto style_at = [&](std::size_t i) {
    if (masked[i] != mask_token_id) return Style::Untouched;
    if (i >= orig.size()) return Style::Fill;
    return gen[i] == orig[i] ? Style::Correct : Style::Wrong;
  };
  for (std::size_t i = 0; i < masked.size(); ++i) {
    if (masked[i] != mask_token_id) continue;
    ++r.masked_tokens;
    if (i < orig.size()) {
      ++scored;
      if (gen[i] == orig[i]) ++correct;
    }
  }
  r.mask_ratio = r.total_tokens > 0
                     ? static_cast<double>(r.masked_tokens) / static_cast<double>(r.total_tokens)
                     : 0.0;
  if (scored > 0) r.accuracy = static_cast<double>(correct) / static_cast<double>(scored);

  r.original = tokenizer.decode(orig, /*skip_special=*/true);
  r.generated = tokenizer.decode(gen, /*skip_special=*/true);
  for_each_span(
      masked, [&](std::size_t i) { return masked[i] == mask_token_id; },
      [&](bool is_mask, const std::vector<std::int64_t>& span) {
        if (!is_mask) {
          r.masked += tokenizer.decode(span, true);
        } else {
          for (std::size_t k = 0; k < span.size(); ++k) r.masked += kMaskText;
        }
      });

  std::string coloured;
  for_each_span(gen, style_at, [&](Style style, const std::vector<std::int64_t>& span) {
    const std::string text = tokenizer.decode(span, true);
    const char* code = style == Style::Correct     ? kGreen
                       : style == Style::Wrong     ? kRed
                       : style == Style::Untouched ? kDim
                                                   : "";
    if (colour && *code)
      coloured += std::string(code) + text + kReset;
    else
      coloured += text;
  });

  std::ostringstream os;
  const bool completion = orig.size() < masked.size();
  os << (completion ? "Prompt" : "Original") << " (" << orig.size() << " tokens): " << r.original
     << "\n";
  os << "Masked (" << r.masked_tokens << "/" << r.total_tokens << " tokens, "
     << percent(r.mask_ratio) << "): " << r.masked << "\n";
  os << "Generated";
  if (r.accuracy)
    os << " (" << correct << "/" << scored << " fills correct, " << percent(*r.accuracy) << ")";
  os << ": " << coloured;
  r.rendered = os.str();
  return r;
}

std::string json_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 8);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", c);
            out += buf;
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A well-formed multi-byte sequence is copied; anything else becomes U+FFFD.
    std::size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    if (c >= 0xF5) len = 0;
    bool ok = len > 0 && i + len <= n;
    for (std::size_t k = 1; ok && k < len; ++k) ok = (s[i + k] & 0xC0) == 0x80;
    if (ok && len == 3) {
      const unsigned char d = s[i + 1];
      ok = !(c == 0xE0 && d < 0xA0) && !(c == 0xED && d >= 0xA0);  // overlong / surrogate
    }
    if (ok && len == 4) {
      const unsigned char d = s[i + 1];
      ok = !(c == 0xF0 && d < 0x90) && !(c == 0xF4 && d >= 0x90);
    }
    if (ok) {
      out.append(text, i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

std::string sample_json_line(std::int64_t step, const SampleReport& r) {
  std::ostringstream os;
  os << std::setprecision(10);
  os << "{\"step\":" << step << ",\"original\":\"" << json_escape(r.original) << "\",\"masked\":\""
     << json_escape(r.masked) << "\",\"generated\":\"" << json_escape(r.generated)
     << "\",\"mask_ratio\":" << r.mask_ratio << ",\"masked_tokens\":" << r.masked_tokens
     << ",\"total_tokens\":" << r.total_tokens << ",\"accuracy\":";
  if (r.accuracy)
    os << *r.accuracy;
  else
    os << "null";
  os << "}";
  return os.str();
}

}  // namespace loom::diffusion
