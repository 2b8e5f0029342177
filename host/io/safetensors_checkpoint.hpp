// The safetensors files that make up one Hugging Face checkpoint: a single model.safetensors, or
// model.safetensors.index.json and the shards its weight_map names. Untrusted like the files.
#pragma once

#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/safetensors_file.hpp"

namespace loom {

class SafetensorsCheckpoint {
 public:
  struct StoredTensor {
    const SafetensorsFile* file;
    const TensorEntry* entry;
  };

  // `path` is a model folder, a .safetensors file or a *.index.json file. In a folder,
  // model.safetensors wins over model.safetensors.index.json, as in transformers. Throws UserError
  // when there is neither (saying so specifically for a folder of pickle *.bin weights), when a
  // shard is missing or bad, when a tensor is stored twice, or when the index and the shards
  // disagree.
  static SafetensorsCheckpoint open(const std::filesystem::path& path);

  SafetensorsCheckpoint(SafetensorsCheckpoint&&) = default;
  SafetensorsCheckpoint& operator=(SafetensorsCheckpoint&&) = default;

  // The file or index that was opened, for error messages.
  const std::filesystem::path& path() const { return path_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // nullptr when no file holds the name.
  const StoredTensor* find(const std::string& name) const;
  // All tensors, file by file in data order (the order that reads each file forwards).
  const std::vector<StoredTensor>& tensors() const { return tensors_; }

 private:
  SafetensorsCheckpoint() = default;
  void index_tensors();

  std::filesystem::path path_;
  std::vector<SafetensorsFile> files_;
  std::vector<StoredTensor> tensors_;
  std::unordered_map<std::string, std::size_t> by_name_;  // -> position in tensors_
};

}  // namespace loom
