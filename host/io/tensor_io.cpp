#include "io/tensor_io.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include <ATen/ATen.h>

#include "errors.hpp"
#include "io/safetensors_checkpoint.hpp"
#include "io/safetensors_writer.hpp"

namespace loom {
namespace {

// Tensors are copied in slices of about this many stored bytes, and each slice's file pages are
// released right after, so that a 500 MB embedding never sits in memory twice.
constexpr std::size_t kSliceBytes = 64 << 20;

std::optional<SafetensorsDtype> safetensors_dtype(at::ScalarType type) {
  switch (type) {
    case at::kDouble:
      return SafetensorsDtype::F64;
    case at::kFloat:
      return SafetensorsDtype::F32;
    case at::kHalf:
      return SafetensorsDtype::F16;
    case at::kBFloat16:
      return SafetensorsDtype::BF16;
    case at::kLong:
      return SafetensorsDtype::I64;
    case at::kInt:
      return SafetensorsDtype::I32;
    case at::kShort:
      return SafetensorsDtype::I16;
    case at::kChar:
      return SafetensorsDtype::I8;
    case at::kByte:
      return SafetensorsDtype::U8;
    case at::kBool:
      return SafetensorsDtype::BOOL;
    default:
      return std::nullopt;
  }
}

at::ScalarType aten_dtype(SafetensorsDtype dtype) {
  switch (dtype) {
    case SafetensorsDtype::F64:
      return at::kDouble;
    case SafetensorsDtype::F32:
      return at::kFloat;
    case SafetensorsDtype::F16:
      return at::kHalf;
    case SafetensorsDtype::BF16:
      return at::kBFloat16;
    case SafetensorsDtype::I64:
      return at::kLong;
    case SafetensorsDtype::I32:
      return at::kInt;
    case SafetensorsDtype::I16:
      return at::kShort;
    case SafetensorsDtype::I8:
      return at::kChar;
    case SafetensorsDtype::U8:
      return at::kByte;
    case SafetensorsDtype::BOOL:
      return at::kBool;
  }
  throw std::logic_error("unknown SafetensorsDtype");
}

std::string shape_string(at::IntArrayRef shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Rotary caches that transformers before 4.31 saved with each layer; loom recomputes them.
bool is_rotary_cache(const std::string& name) {
  const std::string prefix = "model.layers.";
  const std::string suffix = ".self_attn.rotary_emb.inv_freq";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  const std::string layer = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  return std::all_of(layer.begin(), layer.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Stored bytes (a whole tensor or a slice of its rows) as an at::Tensor over the mapping, or over
// a copy when the bytes are not aligned for the dtype (files whose header is not padded).
at::Tensor stored_view(const std::byte* bytes, std::vector<std::int64_t> shape,
                       at::ScalarType dtype, std::size_t nbytes) {
  const auto options = at::TensorOptions().dtype(dtype);
  if (reinterpret_cast<std::uintptr_t>(bytes) % at::elementSize(dtype) != 0) {
    at::Tensor copy = at::empty(shape, options);
    std::memcpy(copy.data_ptr(), bytes, nbytes);
    return copy;
  }
  // from_blob wants a mutable pointer; the mapping is read-only and nothing writes to the view.
  return at::from_blob(const_cast<std::byte*>(bytes), shape, options);
}

// Copies a checked stored tensor into `param`, slice by slice along the first dimension.
void copy_stored(const SafetensorsCheckpoint::StoredTensor& stored, at::Tensor& param) {
  const TensorEntry& entry = *stored.entry;
  const ByteSpan bytes = stored.file->data(entry);
  const at::ScalarType dtype = aten_dtype(entry.dtype);
  if (entry.numel() == 0) return;
  if (entry.shape.empty()) {
    param.copy_(stored_view(bytes.data, {}, dtype, bytes.size));
    return;
  }
  const std::int64_t rows = entry.shape[0];
  const std::size_t row_bytes = bytes.size / static_cast<std::size_t>(rows);
  const std::int64_t rows_per_slice =
      std::max<std::int64_t>(1, static_cast<std::int64_t>(kSliceBytes / row_bytes));
  std::vector<std::int64_t> slice_shape = entry.shape;
  for (std::int64_t row = 0; row < rows; row += rows_per_slice) {
    const std::int64_t count = std::min(rows_per_slice, rows - row);
    const std::size_t offset = static_cast<std::size_t>(row) * row_bytes;
    const std::size_t size = static_cast<std::size_t>(count) * row_bytes;
    slice_shape[0] = count;
    param.narrow(0, row, count).copy_(stored_view(bytes.data + offset, slice_shape, dtype, size));
    stored.file->release_pages(entry, offset, size);
  }
}

void check_named_tensors(const NamedTensors& tensors, const char* what) {
  std::unordered_map<std::string, int> seen;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined())
      throw std::invalid_argument(std::string(what) + ": '" + name + "' is an undefined tensor");
    if (++seen[name] > 1) {
      throw std::invalid_argument(std::string(what) + ": name '" + name + "' is repeated");
    }
  }
}

}  // namespace

void save_tensors(const std::filesystem::path& file, const NamedTensors& tensors,
                  const std::map<std::string, std::string>& metadata) {
  check_named_tensors(tensors, "save_tensors");
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    const std::optional<SafetensorsDtype> dtype = safetensors_dtype(tensor.scalar_type());
    if (!dtype) {
      throw std::invalid_argument("save_tensors: tensor '" + name + "' has dtype " +
                                  std::string(c10::toString(tensor.scalar_type())) +
                                  ", which safetensors files here cannot hold");
    }
    specs.push_back({name, *dtype, tensor.sizes().vec()});
  }
  std::map<std::string, std::string> full_metadata = metadata;
  full_metadata.emplace("format", "pt");  // keeps a caller's own "format"
  SafetensorsWriter writer(file, std::move(specs), full_metadata);
  for (const auto& [name, tensor] : tensors) {
    // At most one tensor copy is alive at a time.
    const at::Tensor bytes =
        tensor.is_cpu() && tensor.is_contiguous() ? tensor : tensor.to(at::kCPU).contiguous();
    writer.write_tensor(bytes.data_ptr(), bytes.nbytes());
  }
  writer.commit();
}

void load_into(const std::filesystem::path& model_dir_or_file, const NamedTensors& params,
               const LoadOptions& options) {
  check_named_tensors(params, "load_into");
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(model_dir_or_file);

  // Check everything before copying anything, and report every problem at once.
  std::vector<std::string> missing;
  std::vector<std::string> mismatched;
  std::unordered_map<const TensorEntry*, at::Tensor> targets;
  for (const auto& [name, param] : params) {
    const SafetensorsCheckpoint::StoredTensor* stored = checkpoint.find(name);
    if (stored == nullptr) {
      if (options.allow_missing.count(name) == 0) missing.push_back(name);
      continue;
    }
    const TensorEntry& entry = *stored->entry;
    const at::ScalarType stored_dtype = aten_dtype(entry.dtype);
    if (param.sizes() != at::IntArrayRef(entry.shape)) {
      mismatched.push_back(name + ": checkpoint shape " + shape_string(entry.shape) +
                           ", model shape " + shape_string(param.sizes()));
    } else if (stored_dtype != param.scalar_type() &&
               !(at::isFloatingType(stored_dtype) && at::isFloatingType(param.scalar_type()))) {
      mismatched.push_back(
          name + ": checkpoint dtype " + std::string(safetensors_dtype_name(entry.dtype)) +
          " cannot be converted to the model's " + std::string(c10::toString(param.scalar_type())));
    } else {
      targets.emplace(stored->entry, param);
    }
  }
  std::vector<std::string> unexpected;
  std::unordered_map<std::string, int> expected;
  for (const auto& [name, param] : params) expected.emplace(name, 0);
  for (const SafetensorsCheckpoint::StoredTensor& stored : checkpoint.tensors()) {
    const std::string& name = stored.entry->name;
    if (expected.count(name) == 0 && options.allow_unexpected.count(name) == 0 &&
        !is_rotary_cache(name)) {
      unexpected.push_back(name);
    }
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string message = checkpoint.path().string() + " does not match the model:";
    const auto list = [&message](const std::string& title, std::vector<std::string> names) {
      if (names.empty()) return;
      std::sort(names.begin(), names.end());
      message += "\n  " + title + " (" + std::to_string(names.size()) + "):";
      for (const std::string& name : names) message += "\n    " + name;
    };
    list("missing from the checkpoint", missing);
    list("in the checkpoint but not in the model", unexpected);
    list("mismatched", mismatched);
    throw UserError(message);
  }

  at::NoGradGuard no_grad;
  // File order, so that each file is read forwards.
  for (const SafetensorsCheckpoint::StoredTensor& stored : checkpoint.tensors()) {
    const auto target = targets.find(stored.entry);
    if (target != targets.end()) copy_stored(stored, target->second);
  }
}

std::map<std::string, at::Tensor> load_all(const std::filesystem::path& model_dir_or_file) {
  const SafetensorsCheckpoint checkpoint = SafetensorsCheckpoint::open(model_dir_or_file);
  std::map<std::string, at::Tensor> tensors;
  for (const SafetensorsCheckpoint::StoredTensor& stored : checkpoint.tensors()) {
    const ByteSpan bytes = stored.file->data(*stored.entry);
    at::Tensor tensor = at::empty(stored.entry->shape, aten_dtype(stored.entry->dtype));
    if (bytes.size > 0) std::memcpy(tensor.data_ptr(), bytes.data, bytes.size);
    tensors.emplace(stored.entry->name, std::move(tensor));
  }
  return tensors;
}

}  // namespace loom
