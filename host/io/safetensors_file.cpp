#include "io/safetensors_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace loom {
namespace {

using nlohmann::json;

// Names come from an untrusted header; keep error messages readable however long they are.
std::string quoted(const std::string& name) {
  constexpr std::size_t kMaxShown = 200;
  if (name.size() <= kMaxShown) return "'" + name + "'";
  return "'" + name.substr(0, kMaxShown) + "...' (" + std::to_string(name.size()) + " chars)";
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Reports a bad file; the message always starts with the file so the user knows which to fix.
class HeaderError {
 public:
  explicit HeaderError(const std::filesystem::path& path) : path_(path) {}
  [[noreturn]] void file(const std::string& what) const {
    throw UserError(path_.string() + ": " + what);
  }
  [[noreturn]] void tensor(const std::string& name, const std::string& what) const {
    file("tensor " + quoted(name) + ": " + what);
  }

 private:
  const std::filesystem::path& path_;
};

// A valid header nests three levels (root -> tensor -> shape values). The guard stops the parse at
// anything deeper before it is built, and rejects duplicate keys, which nlohmann::json would
// otherwise resolve silently to the last one.
class HeaderParseGuard {
 public:
  explicit HeaderParseGuard(const HeaderError& error) : error_(error) {}

  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    if (depth > 3) error_.file("header JSON is nested deeper than a safetensors header can be");
    if (event == json::parse_event_t::object_start && depth == 1) state_->inner_keys.clear();
    if (event == json::parse_event_t::key && (depth == 1 || depth == 2)) {
      std::set<std::string>& seen = depth == 1 ? state_->top_keys : state_->inner_keys;
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) error_.file("header has the key " + quoted(key) + " twice");
    }
    return true;
  }

 private:
  struct SeenKeys {
    std::set<std::string> top_keys;
    std::set<std::string> inner_keys;  // of the object being parsed at depth 1
  };
  const HeaderError& error_;
  // Shared because nlohmann copies the callback into a std::function.
  std::shared_ptr<SeenKeys> state_ = std::make_shared<SeenKeys>();
};

std::uint64_t as_unsigned(const json& value, const HeaderError& error, const std::string& name,
                          const char* what) {
  if (!value.is_number_unsigned()) {
    error.tensor(name, std::string(what) + " must be non-negative integers, got " +
                           value.dump().substr(0, 40));
  }
  return value.get<std::uint64_t>();
}

TensorEntry parse_entry(const std::string& name, const json& value, std::uint64_t data_size,
                        const HeaderError& error) {
  if (!value.is_object()) error.tensor(name, "header entry is not a JSON object");
  TensorEntry entry;
  entry.name = name;

  const auto dtype = value.find("dtype");
  if (dtype == value.end() || !dtype->is_string()) error.tensor(name, "no \"dtype\" string");
  const auto parsed_dtype = parse_safetensors_dtype(dtype->get_ref<const std::string&>());
  if (!parsed_dtype) {
    error.tensor(name, "unsupported dtype " + quoted(dtype->get<std::string>()) +
                           " (loom reads F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
  }
  entry.dtype = *parsed_dtype;

  const auto shape = value.find("shape");
  if (shape == value.end() || !shape->is_array()) error.tensor(name, "no \"shape\" array");
  bool has_zero_dim = false;
  for (const json& dim : *shape) {
    const std::uint64_t size = as_unsigned(dim, error, name, "shape dimensions");
    if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      error.tensor(name, "shape dimension " + std::to_string(size) + " is too large");
    }
    has_zero_dim = has_zero_dim || size == 0;
    entry.shape.push_back(static_cast<std::int64_t>(size));
  }
  std::uint64_t nbytes = safetensors_dtype_size(entry.dtype);
  if (has_zero_dim) nbytes = 0;
  for (std::int64_t dim : entry.shape) {
    if (__builtin_mul_overflow(nbytes, static_cast<std::uint64_t>(dim), &nbytes)) {
      error.tensor(name, "shape " + shape_string(entry.shape) + " overflows its byte size");
    }
  }

  const auto offsets = value.find("data_offsets");
  if (offsets == value.end() || !offsets->is_array() || offsets->size() != 2) {
    error.tensor(name, "no \"data_offsets\" pair [begin, end]");
  }
  entry.data_begin = as_unsigned((*offsets)[0], error, name, "data_offsets");
  entry.data_end = as_unsigned((*offsets)[1], error, name, "data_offsets");
  const std::string range =
      "[" + std::to_string(entry.data_begin) + ", " + std::to_string(entry.data_end) + "]";
  if (entry.data_begin > entry.data_end)
    error.tensor(name, "data_offsets " + range + " are reversed");
  if (entry.data_end > data_size) {
    error.tensor(name, "data_offsets " + range + " go past the end of the data section (" +
                           std::to_string(data_size) + " bytes); is the file truncated?");
  }
  if (entry.nbytes() != nbytes) {
    error.tensor(name, "data_offsets " + range + " hold " + std::to_string(entry.nbytes()) +
                           " bytes, but dtype " + std::string(safetensors_dtype_name(entry.dtype)) +
                           " and shape " + shape_string(entry.shape) + " need " +
                           std::to_string(nbytes));
  }
  return entry;
}

std::map<std::string, std::string> parse_metadata(const json& value, const HeaderError& error) {
  std::map<std::string, std::string> metadata;
  if (value.is_null()) return metadata;
  if (!value.is_object()) error.file("__metadata__ is not a JSON object");
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      error.file("__metadata__ value for " + quoted(key) + " is not a string");
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// Tensors are sorted by offset; two non-empty ranges may not share a byte.
void check_no_overlap(const std::vector<TensorEntry>& tensors, const HeaderError& error) {
  const TensorEntry* furthest = nullptr;  // the entry reaching furthest so far
  for (const TensorEntry& entry : tensors) {
    if (entry.nbytes() == 0) continue;
    if (furthest != nullptr && entry.data_begin < furthest->data_end) {
      error.tensor(entry.name, "data overlaps tensor " + quoted(furthest->name));
    }
    if (furthest == nullptr || entry.data_end > furthest->data_end) furthest = &entry;
  }
}

}  // namespace

std::uint64_t TensorEntry::numel() const {
  std::uint64_t count = 1;
  for (std::int64_t dim : shape) count *= static_cast<std::uint64_t>(dim);
  return count;
}

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");
  const HeaderError error(path);
  SafetensorsFile file;
  file.path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) error.file(std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    error.file("not a regular file");
  }
  const auto file_size = static_cast<std::uint64_t>(info.st_size);
  if (file_size < 8) {
    ::close(fd);
    error.file("too short to be a safetensors file (" + std::to_string(file_size) + " bytes)");
  }
  void* mapping = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (mapping == MAP_FAILED) error.file(std::string("cannot mmap: ") + std::strerror(map_errno));
  file.mapping_ = static_cast<const std::byte*>(mapping);
  file.mapping_size_ = file_size;

  // From here on `file` owns the mapping, so an error below unmaps it.
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) {
    header_size = (header_size << 8) | std::to_integer<std::uint64_t>(file.mapping_[i]);
  }
  if (header_size > file_size - 8) {
    error.file("header length " + std::to_string(header_size) + " exceeds the file (" +
               std::to_string(file_size) + " bytes); truncated or not a safetensors file?");
  }
  if (header_size > kMaxHeaderBytes) {
    error.file("header length " + std::to_string(header_size) + " is over the limit of " +
               std::to_string(kMaxHeaderBytes) + " bytes");
  }
  file.data_start_ = 8 + header_size;
  const std::uint64_t data_size = file_size - file.data_start_;

  const auto* header_begin = reinterpret_cast<const char*>(file.mapping_ + 8);
  // nlohmann::json stops at a NUL byte as if the input ended there; valid JSON has none.
  if (std::memchr(header_begin, '\0', header_size) != nullptr) {
    error.file("header is not valid JSON: it contains a NUL byte");
  }
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_size, HeaderParseGuard(error));
  } catch (const json::exception& e) {
    error.file(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) error.file("header is not a JSON object");

  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      file.metadata_ = parse_metadata(value, error);
    } else {
      file.tensors_.push_back(parse_entry(key, value, data_size, error));
    }
  }
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return std::tie(a.data_begin, a.data_end) < std::tie(b.data_begin, b.data_end);
            });
  check_no_overlap(file.tensors_, error);
  for (std::size_t i = 0; i < file.tensors_.size(); ++i) {
    file.index_.emplace(file.tensors_[i].name, i);
  }
  return file;
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& other) noexcept { *this = std::move(other); }

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& other) noexcept {
  if (this != &other) {
    unmap();
    path_ = std::move(other.path_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    mapping_size_ = std::exchange(other.mapping_size_, 0);
    data_start_ = std::exchange(other.data_start_, 0);
    tensors_ = std::move(other.tensors_);
    index_ = std::move(other.index_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (mapping_ != nullptr) {
    ::munmap(const_cast<std::byte*>(mapping_), mapping_size_);
    mapping_ = nullptr;
    mapping_size_ = 0;
  }
}

const TensorEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

ByteSpan SafetensorsFile::data(const TensorEntry& entry) const {
  // open() checked this for its own entries; this guards against an entry of another file.
  if (entry.data_begin > entry.data_end || entry.data_end > mapping_size_ - data_start_) {
    throw std::out_of_range("SafetensorsFile::data: tensor '" + entry.name + "' is not in " +
                            path_.string());
  }
  return {mapping_ + data_start_ + entry.data_begin, static_cast<std::size_t>(entry.nbytes())};
}

void SafetensorsFile::release_pages(const TensorEntry& entry, std::uint64_t begin,
                                    std::uint64_t size) const {
  const ByteSpan bytes = data(entry);
  if (begin > bytes.size || size > bytes.size - begin) {
    throw std::out_of_range("SafetensorsFile::release_pages: range outside tensor '" + entry.name +
                            "'");
  }
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto start = reinterpret_cast<std::uintptr_t>(bytes.data) + begin;
  const std::uintptr_t first = (start + page - 1) / page * page;
  const std::uintptr_t last = (start + size) / page * page;
  // Only whole pages: a page shared with a neighbouring tensor may still be in use.
  if (last > first) {
    // Advisory: on failure the pages simply stay resident.
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  }
}

}  // namespace loom
