// The element types a safetensors file may hold that loom reads and writes, with their header
// names ("F32", "BF16", ...) and sizes.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace loom {

enum class SafetensorsDtype { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

// Bytes per element.
std::size_t safetensors_dtype_size(SafetensorsDtype dtype);

// The name used in the header, e.g. "BF16".
std::string_view safetensors_dtype_name(SafetensorsDtype dtype);

// The dtype a header name stands for; nullopt for names loom does not handle (F8_E4M3, U16, ...).
std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name);

}  // namespace loom
