#include "tokenizer/hf_tokenizer_files.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <system_error>

#include "errors.hpp"
#include "io/durable_file.hpp"

namespace loom::hf_files {

using nlohmann::ordered_json;

nlohmann::ordered_json added_tokens_json(std::vector<AddedToken> tokens) {
  std::sort(tokens.begin(), tokens.end(),
            [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  ordered_json array = ordered_json::array();
  for (const AddedToken& token : tokens) {
    array.push_back({{"id", token.id},
                     {"content", token.content},
                     {"single_word", token.single_word},
                     {"lstrip", token.lstrip},
                     {"rstrip", token.rstrip},
                     {"normalized", token.normalized},
                     {"special", token.special}});
  }
  return array;
}

void write_transformers_configs(const std::filesystem::path& dir,
                                std::optional<ordered_json> base_config,
                                const std::vector<AddedToken>& added_tokens,
                                const SpecialTokenNames& names) {
  ordered_json config = base_config ? std::move(*base_config) : ordered_json::object();
  if (!base_config) {
    config["tokenizer_class"] = "PreTrainedTokenizerFast";
    // Keep decode() lossless; transformers would otherwise rewrite " ." and the like.
    config["clean_up_tokenization_spaces"] = false;
    config["model_input_names"] = {"input_ids", "attention_mask"};
  }
  ordered_json decoder = ordered_json::object();
  for (const ordered_json& token : added_tokens_json(added_tokens)) {
    decoder[std::to_string(token["id"].get<std::int64_t>())] = {
        {"content", token["content"]},         {"lstrip", token["lstrip"]},
        {"normalized", token["normalized"]},   {"rstrip", token["rstrip"]},
        {"single_word", token["single_word"]}, {"special", token["special"]}};
  }
  config["added_tokens_decoder"] = decoder;

  ordered_json special_map = ordered_json::object();
  const std::pair<const char*, const std::optional<std::string>*> keys[] = {
      {"bos_token", &names.bos}, {"eos_token", &names.eos}, {"pad_token", &names.pad}};
  for (const auto& [key, name] : keys) {
    if (!*name) continue;
    config[key] = **name;
    special_map[key] = **name;
  }
  write_json(dir / "tokenizer_config.json", config);
  write_json(dir / "special_tokens_map.json", special_map);
}

namespace {

// End of the JSON string literal that starts at `pos` (the opening quote): index past the quote.
std::size_t string_end(const std::string& text, std::size_t pos) {
  for (std::size_t i = pos + 1; i < text.size(); ++i) {
    if (text[i] == '\\') {
      ++i;
    } else if (text[i] == '"') {
      return i + 1;
    }
  }
  return text.size();
}

// End of the JSON value that starts at `pos`: index just past it.
std::size_t value_end(const std::string& text, std::size_t pos) {
  if (text[pos] == '"') return string_end(text, pos);
  if (text[pos] != '{' && text[pos] != '[') {  // number, true, false, null
    std::size_t i = pos;
    while (i < text.size() && text[i] != ',' && text[i] != '}' && text[i] != ']' &&
           !std::isspace(static_cast<unsigned char>(text[i]))) {
      ++i;
    }
    return i;
  }
  int depth = 0;
  for (std::size_t i = pos; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '"') {
      i = string_end(text, i) - 1;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (--depth == 0) return i + 1;
    }
  }
  return text.size();
}

std::size_t skip_space(const std::string& text, std::size_t pos) {
  while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
  return pos;
}

}  // namespace

std::string replace_top_level_value(const std::string& json_text, const std::string& key,
                                    const ordered_json& value) {
  std::size_t pos = skip_space(json_text, 0);
  if (pos >= json_text.size() || json_text[pos] != '{') {
    throw std::invalid_argument("replace_top_level_value: not a JSON object");
  }
  const std::size_t object_start = pos;
  pos = skip_space(json_text, pos + 1);
  while (pos < json_text.size() && json_text[pos] == '"') {
    const std::size_t key_end = string_end(json_text, pos);
    // Keys may use escapes; compare decoded.
    const bool match =
        nlohmann::json::parse(json_text.substr(pos, key_end - pos)).get<std::string>() == key;
    pos = skip_space(json_text, key_end);
    pos = skip_space(json_text, pos + 1);  // past ':'
    const std::size_t end = value_end(json_text, pos);
    if (match) {
      return json_text.substr(0, pos) + value.dump() + json_text.substr(end);
    }
    pos = skip_space(json_text, end);
    if (pos < json_text.size() && json_text[pos] == ',') pos = skip_space(json_text, pos + 1);
  }
  const bool empty = json_text[skip_space(json_text, object_start + 1)] == '}';
  return json_text.substr(0, object_start + 1) + ordered_json(key).dump() + ": " + value.dump() +
         (empty ? "" : ",") + json_text.substr(object_start + 1);
}

void write_json(const std::filesystem::path& file, const ordered_json& value) {
  write_text(file, value.dump(2) + '\n');
}

void write_text(const std::filesystem::path& file, const std::string& text) {
  write_file_durably(file, text);  // complete or not at all; a full disk is an error
}

void create_directory(const std::filesystem::path& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) throw UserError("cannot create directory " + dir.string() + ": " + error.message());
}

}  // namespace loom::hf_files
