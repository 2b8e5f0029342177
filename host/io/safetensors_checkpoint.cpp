#include "io/safetensors_checkpoint.hpp"

#include <fstream>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace loom {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_file(const fs::path& path) {
  std::error_code ignored;
  return fs::is_regular_file(path, ignored);
}

[[noreturn]] void refuse_folder(const fs::path& folder) {
  std::error_code error;
  for (fs::directory_iterator it(folder, error), end; !error && it != end; it.increment(error)) {
    const std::string extension = it->path().extension().string();
    if (extension == ".bin" || extension == ".pt" || extension == ".pth") {
      throw UserError(folder.string() + " holds PyTorch pickle weights (" +
                      it->path().filename().string() +
                      ") but no model.safetensors; loom requires safetensors and never unpickles. "
                      "Convert the model first, e.g. in Python: "
                      "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out)");
    }
  }
  throw UserError(folder.string() +
                  ": no model.safetensors or model.safetensors.index.json (is it a Hugging Face "
                  "model folder?)");
}

// The index's weight_map (tensor name -> shard file name).
std::map<std::string, std::string> read_weight_map(const fs::path& index) {
  std::ifstream in(index, std::ios::binary);
  if (!in) throw UserError("cannot read " + index.string());
  std::ostringstream text;
  text << in.rdbuf();
  json root;
  try {
    root = json::parse(text.str());
  } catch (const json::parse_error& e) {
    throw UserError(index.string() + " is not valid JSON: " + e.what());
  }
  const auto weight_map = root.is_object() ? root.find("weight_map") : root.end();
  if (!root.is_object() || weight_map == root.end() || !weight_map->is_object()) {
    throw UserError(index.string() + " has no \"weight_map\" object");
  }
  std::map<std::string, std::string> shards;
  for (const auto& [name, shard] : weight_map->items()) {
    if (!shard.is_string()) {
      throw UserError(index.string() + ": weight_map entry '" + name + "' is not a file name");
    }
    const std::string& file = shard.get_ref<const std::string&>();
    // Shards live beside the index; a path elsewhere is not a checkpoint we wrote or downloaded.
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos) {
      throw UserError(index.string() + ": weight_map puts '" + name + "' in '" + file +
                      "', which is not a file name in the same folder");
    }
    shards.emplace(name, file);
  }
  return shards;
}

}  // namespace

SafetensorsCheckpoint SafetensorsCheckpoint::open(const fs::path& path) {
  SafetensorsCheckpoint checkpoint;
  fs::path index;
  std::error_code ignored;
  if (fs::is_directory(path, ignored)) {
    if (is_file(path / "model.safetensors")) {
      checkpoint.path_ = path / "model.safetensors";
    } else if (is_file(path / "model.safetensors.index.json")) {
      index = path / "model.safetensors.index.json";
    } else {
      refuse_folder(path);
    }
  } else if (is_file(path)) {
    if (ends_with(path.filename().string(), ".json")) {
      index = path;
    } else {
      checkpoint.path_ = path;
    }
  } else {
    throw UserError(path.string() + ": no such checkpoint file or folder");
  }

  if (index.empty()) {
    checkpoint.files_.push_back(SafetensorsFile::open(checkpoint.path_));
    checkpoint.index_tensors();
    return checkpoint;
  }

  checkpoint.path_ = index;
  const std::map<std::string, std::string> weight_map = read_weight_map(index);
  std::map<std::string, std::size_t> shard_files;  // shard file name -> position in files_
  for (const auto& [name, shard] : weight_map) shard_files.emplace(shard, 0);
  for (auto& [shard, position] : shard_files) {
    const fs::path shard_path = index.parent_path() / shard;
    if (!is_file(shard_path)) {
      throw UserError(index.string() + " names shard " + shard + ", which is missing");
    }
    position = checkpoint.files_.size();
    checkpoint.files_.push_back(SafetensorsFile::open(shard_path));
  }
  checkpoint.index_tensors();
  for (const auto& [name, shard] : weight_map) {
    const StoredTensor* stored = checkpoint.find(name);
    if (stored == nullptr || stored->file != &checkpoint.files_[shard_files.at(shard)]) {
      throw UserError(index.string() + ": weight_map puts '" + name + "' in " + shard +
                      ", which does not hold it");
    }
  }
  return checkpoint;
}

void SafetensorsCheckpoint::index_tensors() {
  for (const SafetensorsFile& file : files_) {
    for (const TensorEntry& entry : file.tensors()) {
      const auto [it, added] = by_name_.emplace(entry.name, tensors_.size());
      if (!added) {
        throw UserError("tensor '" + entry.name + "' is stored twice: in " +
                        tensors_[it->second].file->path().string() + " and " +
                        file.path().string());
      }
      tensors_.push_back({&file, &entry});
    }
  }
}

const SafetensorsCheckpoint::StoredTensor* SafetensorsCheckpoint::find(
    const std::string& name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace loom
