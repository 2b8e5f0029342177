#include "tokenizer/utf8.hpp"

namespace loom::utf8 {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid sequence starting at `pos`, or 0 with `invalid_len` set to the length
// of the maximal invalid subpart (Unicode 'substitution of maximal subparts').
std::size_t valid_sequence_length(std::string_view s, std::size_t pos, std::size_t& invalid_len) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = byte(pos);
  invalid_len = 1;
  if (c < 0x80) return 1;
  std::size_t need = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (pos + k >= s.size()) {
      invalid_len = k;
      return 0;
    }
    const unsigned char b = byte(pos + k);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : is_continuation(b);
    if (!ok) {
      invalid_len = k;
      return 0;
    }
  }
  return need + 1;
}

}  // namespace

bool is_valid(std::string_view text) {
  std::size_t pos = 0;
  const std::size_t n = text.size();
  while (pos < n) {
    // ASCII fast path: most training text is ASCII.
    while (pos < n && static_cast<unsigned char>(text[pos]) < 0x80) ++pos;
    if (pos == n) break;
    std::size_t invalid_len = 0;
    const std::size_t len = valid_sequence_length(text, pos, invalid_len);
    if (len == 0) return false;
    pos += len;
  }
  return true;
}

std::string repair(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t invalid_len = 0;
    const std::size_t len = valid_sequence_length(text, pos, invalid_len);
    if (len == 0) {
      out += kReplacement;
      pos += invalid_len;
    } else {
      out.append(text.data() + pos, len);
      pos += len;
    }
  }
  return out;
}

std::size_t decode_at(std::string_view text, std::size_t pos, char32_t& code_point) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t invalid_len = 0;
  const std::size_t len = valid_sequence_length(text, pos, invalid_len);
  if (len == 0) {
    code_point = byte(pos);
    return 1;
  }
  switch (len) {
    case 1:
      code_point = byte(pos);
      break;
    case 2:
      code_point = ((byte(pos) & 0x1Fu) << 6) | (byte(pos + 1) & 0x3Fu);
      break;
    case 3:
      code_point =
          ((byte(pos) & 0x0Fu) << 12) | ((byte(pos + 1) & 0x3Fu) << 6) | (byte(pos + 2) & 0x3Fu);
      break;
    default:
      code_point = ((byte(pos) & 0x07u) << 18) | ((byte(pos + 1) & 0x3Fu) << 12) |
                   ((byte(pos + 2) & 0x3Fu) << 6) | (byte(pos + 3) & 0x3Fu);
      break;
  }
  return len;
}

std::size_t previous_char_start(std::string_view text, std::size_t end) {
  std::size_t start = end - 1;
  // A code point has at most three continuation bytes.
  while (start > 0 && end - start < 4 && is_continuation(static_cast<unsigned char>(text[start]))) {
    --start;
  }
  return start;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_white_space(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
  if (c < 0x85) return false;
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace loom::utf8
