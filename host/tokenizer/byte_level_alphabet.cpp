#include "tokenizer/byte_level_alphabet.hpp"

#include "tokenizer/utf8.hpp"

namespace loom {

const ByteLevelAlphabet& ByteLevelAlphabet::get() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  byte_of_code_point_.fill(-1);
  // Printable Latin-1 bytes stand for themselves; the others are moved to 256 + n in order.
  const auto printable = [](int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  };
  char32_t next_moved = 256;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = printable(b) ? static_cast<char32_t>(b) : next_moved++;
    utf8::append(spelling_[b], cp);
    byte_of_code_point_[cp] = static_cast<std::int16_t>(b);
  }
}

std::string ByteLevelAlphabet::spell(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += spelling_[static_cast<std::uint8_t>(c)];
  return out;
}

std::optional<std::string> ByteLevelAlphabet::unspell(std::string_view spelling) const {
  std::string out;
  out.reserve(spelling.size());
  std::size_t pos = 0;
  while (pos < spelling.size()) {
    char32_t cp = 0;
    const std::size_t len = utf8::decode_at(spelling, pos, cp);
    pos += len;
    if (len == 1 && cp >= 0x80) return std::nullopt;  // invalid UTF-8
    if (cp >= byte_of_code_point_.size() || byte_of_code_point_[cp] < 0) return std::nullopt;
    out += static_cast<char>(byte_of_code_point_[cp]);
  }
  return out;
}

}  // namespace loom
