// A .safetensors file opened read-only through mmap. The file is untrusted input: open() checks
// the header against the file before any tensor byte is handed out, and every problem is a
// UserError naming the file (and the tensor), never a read outside the mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/safetensors_dtype.hpp"

namespace loom {

// One tensor as described by the header. Offsets are relative to the data section, which starts
// right after the header; data_end - data_begin == numel * dtype size (checked).
struct TensorEntry {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t data_begin = 0;
  std::uint64_t data_end = 0;

  std::uint64_t nbytes() const { return data_end - data_begin; }
  std::uint64_t numel() const;
};

// A read-only view of bytes inside the mapping (C++17 has no std::span).
struct ByteSpan {
  const std::byte* data = nullptr;
  std::size_t size = 0;
};

class SafetensorsFile {
 public:
  // The safetensors reference implementation refuses larger headers too.
  static constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

  static SafetensorsFile open(const std::filesystem::path& path);

  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  const std::filesystem::path& path() const { return path_; }
  // Sorted by data offset, i.e. in file order, so reading them in turn reads the file forwards.
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  // nullptr when the file has no tensor of that name.
  const TensorEntry* find(const std::string& name) const;
  // The `__metadata__` object (string -> string); empty when the file has none.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // The entry's bytes in the mapping. Valid while this object lives. The start is aligned to the
  // dtype size only if the writer padded the header (the reference writer pads to 8 bytes).
  ByteSpan data(const TensorEntry& entry) const;
  // Drops the pages wholly inside entry's bytes [begin, begin+size) from this process's resident
  // set (they stay in the page cache and are read again on the next access), so that copying a
  // model out tensor by tensor does not leave the whole file resident.
  void release_pages(const TensorEntry& entry, std::uint64_t begin, std::uint64_t size) const;

 private:
  SafetensorsFile() = default;
  void unmap() noexcept;

  std::filesystem::path path_;
  const std::byte* mapping_ = nullptr;
  std::size_t mapping_size_ = 0;
  std::size_t data_start_ = 0;  // 8 + header length
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, std::size_t> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

}  // namespace loom
