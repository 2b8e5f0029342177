#include "io/safetensors_dtype.hpp"

#include <array>
#include <utility>

namespace loom {
namespace {

struct DtypeInfo {
  SafetensorsDtype dtype;
  std::string_view name;
  std::size_t size;
};

constexpr std::array<DtypeInfo, 10> kDtypes = {{
    {SafetensorsDtype::F64, "F64", 8},
    {SafetensorsDtype::F32, "F32", 4},
    {SafetensorsDtype::F16, "F16", 2},
    {SafetensorsDtype::BF16, "BF16", 2},
    {SafetensorsDtype::I64, "I64", 8},
    {SafetensorsDtype::I32, "I32", 4},
    {SafetensorsDtype::I16, "I16", 2},
    {SafetensorsDtype::I8, "I8", 1},
    {SafetensorsDtype::U8, "U8", 1},
    {SafetensorsDtype::BOOL, "BOOL", 1},
}};

const DtypeInfo& info(SafetensorsDtype dtype) {
  // The enum's order is the table's order.
  return kDtypes[static_cast<std::size_t>(dtype)];
}

}  // namespace

std::size_t safetensors_dtype_size(SafetensorsDtype dtype) { return info(dtype).size; }

std::string_view safetensors_dtype_name(SafetensorsDtype dtype) { return info(dtype).name; }

std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name) {
  for (const DtypeInfo& entry : kDtypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

}  // namespace loom
