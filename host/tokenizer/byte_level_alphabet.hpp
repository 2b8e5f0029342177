// GPT-2's reversible byte <-> character table ("bytes_to_unicode"): byte-level BPE vocabularies
// spell every raw byte as one printable character, e.g. ' ' as 'Ġ' and '\n' as 'Ċ'.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace loom {

class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& get();

  // The UTF-8 of the character that stands for `byte`.
  const std::string& spell(std::uint8_t byte) const { return spelling_[byte]; }
  // The byte-level spelling of raw bytes (what a byte-level vocabulary stores).
  std::string spell(std::string_view bytes) const;
  // The raw bytes behind a byte-level spelling; nullopt if a character is not in the alphabet.
  std::optional<std::string> unspell(std::string_view spelling) const;

 private:
  ByteLevelAlphabet();

  std::array<std::string, 256> spelling_;
  // Code point -> byte, -1 where the code point is not in the alphabet (all are below 324).
  std::array<std::int16_t, 324> byte_of_code_point_{};
};

}  // namespace loom
