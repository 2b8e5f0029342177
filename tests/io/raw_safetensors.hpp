// Safetensors files assembled by hand, byte by byte, so that reader tests do not depend on the
// writer under test (and can be malformed on purpose).
#pragma once

#include <cstdint>
#include <string>

namespace loom::test {

// The 8-byte little-endian length prefix.
inline std::string length_prefix(std::uint64_t length) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  return out;
}

// prefix + header + data, the header taken as given (no padding added).
inline std::string raw_safetensors(const std::string& header, const std::string& data) {
  return length_prefix(header.size()) + header + data;
}

// Little-endian bytes of an unsigned value of `width` bytes.
inline std::string le_bytes(std::uint64_t value, int width) {
  std::string out(width, '\0');
  for (int i = 0; i < width; ++i) out[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return out;
}

}  // namespace loom::test
