// CRC-32C (Castagnoli), the checksum of TFRecord files (TensorBoard's event files), and the
// "masked" form TFRecord stores: a CRC of data that itself holds CRCs is easy to get wrong by
// accident, so the stored value is rotated and offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace loom {

std::uint32_t crc32c(const void* data, std::size_t size);
inline std::uint32_t crc32c(const std::string& bytes) { return crc32c(bytes.data(), bytes.size()); }

// TFRecord's masking: rotate right by 15 bits, add 0xa282ead8.
std::uint32_t masked_crc32c(const void* data, std::size_t size);

}  // namespace loom
