// The host's tokenizer interface: what plugins see (sdk::TokenizerHandle) plus what the host
// needs for data preparation and checkpoints.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "loom/sdk/tokenizer.hpp"

namespace loom {

class Tokenizer : public sdk::TokenizerHandle {
 public:
  // encode() plus the special tokens the tokenizer's post-processor adds (e.g. BOS), i.e.
  // Hugging Face's add_special_tokens=true.
  virtual std::vector<std::int64_t> encode_with_special(const std::string& text) const = 0;
  // Writes tokenizer.json, tokenizer_config.json and special_tokens_map.json into `dir`, so
  // that the folder loads with transformers' AutoTokenizer and with load_tokenizer_json().
  virtual void save(const std::filesystem::path& dir) const = 0;
  // "byte" or "tokenizer.json"
  virtual std::string kind() const = 0;
};

}  // namespace loom
