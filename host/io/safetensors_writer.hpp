// Writes .safetensors files. Tensor bytes are streamed to disk in the order given, never gathered
// in memory, into `<path>.tmp`, which is renamed to `<path>` only once complete, so a crash never
// leaves a half-written file under the final name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors_dtype.hpp"

namespace loom {

// What the header says about one tensor.
struct TensorSpec {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<std::int64_t> shape;
};

// A tensor whose bytes are already in memory (row-major, little-endian, nbytes long).
struct TensorToWrite {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<std::int64_t> shape;
  const void* data = nullptr;
  std::size_t nbytes = 0;
};

class SafetensorsWriter {
 public:
  // Writes every tensor and commits. Throws std::invalid_argument when a tensor's nbytes does not
  // match its dtype and shape, or names repeat, and UserError when the file cannot be written.
  static void write(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                    const std::map<std::string, std::string>& metadata = {});

  // Streaming use: the header is written now; then call write_tensor() once per spec, in order,
  // and commit(). Useful when each tensor's bytes must first be produced (e.g. copied off a GPU).
  SafetensorsWriter(std::filesystem::path path, std::vector<TensorSpec> tensors,
                    const std::map<std::string, std::string>& metadata = {});
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  // Removes `<path>.tmp` unless commit() succeeded.
  ~SafetensorsWriter();

  // The next tensor's bytes; nbytes must equal its dtype size times its element count.
  void write_tensor(const void* data, std::size_t nbytes);
  // Flushes, fsyncs and renames `<path>.tmp` to `<path>`. All tensors must have been written.
  void commit();

 private:
  void write_bytes(const void* data, std::size_t nbytes);
  void flush_buffer();
  void write_to_file(const char* bytes, std::size_t nbytes);

  std::filesystem::path path_;
  std::filesystem::path tmp_path_;
  std::vector<TensorSpec> tensors_;
  std::vector<std::size_t> nbytes_;  // expected byte size of each tensor
  std::size_t next_tensor_ = 0;
  int fd_ = -1;
  bool committed_ = false;
  // Small tensors (norm weights) are gathered into one write; large ones go straight to disk.
  std::vector<char> buffer_;
};

}  // namespace loom
