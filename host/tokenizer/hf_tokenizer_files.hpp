// Writing the Hugging Face files of a tokenizer folder: tokenizer.json's added_tokens entries,
// and the transformers-side tokenizer_config.json and special_tokens_map.json.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/added_vocabulary.hpp"

namespace loom::hf_files {

// tokenizer.json's "added_tokens" array, sorted by id as Hugging Face writes it.
nlohmann::ordered_json added_tokens_json(std::vector<AddedToken> tokens);

struct SpecialTokenNames {
  std::optional<std::string> bos;
  std::optional<std::string> eos;
  std::optional<std::string> pad;
};

// Writes tokenizer_config.json (starting from `base_config`, the original file's content when
// there was one, so chat templates and other keys survive) and special_tokens_map.json.
void write_transformers_configs(const std::filesystem::path& dir,
                                std::optional<nlohmann::ordered_json> base_config,
                                const std::vector<AddedToken>& added_tokens,
                                const SpecialTokenNames& names);

// `json_text` (a valid JSON object) with the value of its top-level `key` replaced by
// `value`, or the key added first when missing; everything else is kept byte for byte. Much
// faster than a round trip through ordered_json, whose inserts are linear in the key count.
std::string replace_top_level_value(const std::string& json_text, const std::string& key,
                                    const nlohmann::ordered_json& value);

// Pretty-printed, UTF-8 kept as is; throws UserError naming the file if it cannot be written.
void write_json(const std::filesystem::path& file, const nlohmann::ordered_json& value);

void write_text(const std::filesystem::path& file, const std::string& text);

// Creates `dir` if needed; throws UserError naming it on failure.
void create_directory(const std::filesystem::path& dir);

}  // namespace loom::hf_files
