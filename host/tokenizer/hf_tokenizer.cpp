#include "tokenizer/hf_tokenizer.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "tokenizer/hf_tokenizer_files.hpp"
#include "tokenizer/utf8.hpp"

namespace loom {
namespace {

using nlohmann::json;

std::optional<std::string> read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return text.str();
}

json parse_json(const std::string& text, const std::string& file) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw UserError(file + ": not valid JSON: " + e.what());
  }
}

bool flag(const json& node, const char* key, bool fallback, const std::string& where) {
  const auto it = node.find(key);
  if (it == node.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw UserError(where + ": '" + key + "' must be true or false");
  return it->get<bool>();
}

void check_normalizer(const json& root, const std::string& file) {
  const auto it = root.find("normalizer");
  if (it == root.end() || it->is_null()) return;
  // An empty Sequence does nothing; anything else changes the text, which is not implemented.
  if (it->is_object() && it->value("type", json()) == json("Sequence") &&
      it->value("normalizers", json::array()) == json::array()) {
    return;
  }
  const json type = it->is_object() ? it->value("type", json()) : json();
  throw UserError(file + ": normalizer " +
                  (type.is_string() ? "'" + type.get<std::string>() + "'" : it->dump()) +
                  " is not supported (only none)");
}

// true: ByteLevel; false: none (Hugging Face then joins tokens with spaces).
bool parse_decoder(const json& root, const std::string& file) {
  const auto it = root.find("decoder");
  if (it == root.end() || it->is_null()) return false;
  if (it->is_object() && it->value("type", json()) == json("ByteLevel")) return true;
  const json type = it->is_object() ? it->value("type", json()) : json();
  throw UserError(file + ": decoder " +
                  (type.is_string() ? "'" + type.get<std::string>() + "'" : it->dump()) +
                  " is not supported (only ByteLevel)");
}

// bos_token etc. in tokenizer_config.json: "<s>" or {"content": "<s>", ...}; null when unset.
std::optional<std::string> config_token(const json& config, const char* key,
                                        const std::string& config_file) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  throw UserError(config_file + ": '" + key + "' must be a string or {\"content\": ...}");
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& file) {
  return HfTokenizer::load(file);
}

HfTokenizer::HfTokenizer(std::string file, BpeModel model, PreTokenizer pre_tokenizer,
                         PostProcessor post_processor)
    : file_(std::move(file)),
      model_(std::move(model)),
      pre_tokenizer_(std::move(pre_tokenizer)),
      post_processor_(std::move(post_processor)) {}

std::unique_ptr<HfTokenizer> HfTokenizer::load(const std::filesystem::path& path) {
  const std::string file = path.string();
  std::optional<std::string> text = read_file(path);
  if (!text) throw UserError("cannot read tokenizer file " + file);
  const json root = parse_json(*text, file);
  std::unique_ptr<HfTokenizer> tokenizer;
  try {
    if (!root.is_object()) throw UserError(file + ": expected a JSON object (tokenizer.json)");
    if (const auto version = root.find("version");
        version != root.end() && *version != json("1.0")) {
      throw UserError(file + ": unknown tokenizer.json version " + version->dump());
    }
    check_normalizer(root, file);
    const auto model = root.find("model");
    if (model == root.end()) throw UserError(file + ": has no 'model'");
    PreTokenizer pre_tokenizer = PreTokenizer::from_json(root.value("pre_tokenizer", json()), file);
    if (!pre_tokenizer.ends_with_byte_level()) {
      throw UserError(file +
                      ": pre_tokenizer must end with ByteLevel (only byte-level BPE is "
                      "supported)");
    }
    tokenizer.reset(
        new HfTokenizer(file, BpeModel::from_json(*model, file), std::move(pre_tokenizer),
                        PostProcessor::from_json(root.value("post_processor", json()), file)));
    tokenizer->byte_level_decoder_ = parse_decoder(root, file);
    tokenizer->vocab_size_ = tokenizer->model_.id_limit();
    tokenizer->load_added_tokens(root.value("added_tokens", json::array()));
    for (const std::int64_t id : tokenizer->post_processor_.prefix()) {
      if (id >= tokenizer->vocab_size_) {
        throw UserError(file + ": post_processor adds id " + std::to_string(id) +
                        ", which is not in the vocabulary");
      }
    }
    for (const std::int64_t id : tokenizer->post_processor_.suffix()) {
      if (id >= tokenizer->vocab_size_) {
        throw UserError(file + ": post_processor adds id " + std::to_string(id) +
                        ", which is not in the vocabulary");
      }
    }
  } catch (const json::exception& e) {
    throw UserError(file + ": malformed tokenizer.json: " + e.what());
  }
  tokenizer->original_json_ = std::move(*text);
  tokenizer->resolve_special_ids(path);
  return tokenizer;
}

void HfTokenizer::load_added_tokens(const json& array) {
  const std::string where = file_ + ": added_tokens";
  if (!array.is_array()) throw UserError(where + " must be an array");
  for (const json& entry : array) {
    if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string()) {
      throw UserError(where + ": each entry needs a string 'content'");
    }
    AddedToken token;
    token.content = entry["content"].get<std::string>();
    if (token.content.empty()) continue;  // Hugging Face skips these
    const json id = entry.value("id", json());
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 ||
        id.get<std::int64_t>() >= 2 * vocab_size_ + 65536) {
      throw UserError(where + ": '" + token.content + "' has no valid 'id'");
    }
    token.id = id.get<std::int64_t>();
    token.special = flag(entry, "special", false, where);
    token.single_word = flag(entry, "single_word", false, where);
    token.lstrip = flag(entry, "lstrip", false, where);
    token.rstrip = flag(entry, "rstrip", false, where);
    token.normalized = flag(entry, "normalized", !token.special, where);
    // Like Hugging Face, a token the model already has keeps the model's id.
    if (const auto model_id = model_.token_to_id(token.content)) {
      token.id = *model_id;
    } else if (model_.spelling(token.id) != nullptr) {
      throw UserError(where + ": '" + token.content + "' has id " + std::to_string(token.id) +
                      ", which is already the vocabulary's '" + *model_.spelling(token.id) + "'");
    }
    if (const AddedToken* other = added_.find(token.id);
        other != nullptr && other->content != token.content) {
      throw UserError(where + ": '" + token.content + "' and '" + other->content +
                      "' both have id " + std::to_string(token.id));
    }
    added_.add(token);
    vocab_size_ = std::max(vocab_size_, token.id + 1);
  }
}

void HfTokenizer::resolve_special_ids(const std::filesystem::path& file) {
  const std::filesystem::path config_path = file.parent_path() / "tokenizer_config.json";
  json config = json::object();
  if (std::filesystem::is_regular_file(config_path)) {
    original_config_ = read_file(config_path);
    if (!original_config_) throw UserError("cannot read " + config_path.string());
    config = parse_json(*original_config_, config_path.string());
    if (!config.is_object()) throw UserError(config_path.string() + ": expected a JSON object");
  }
  const auto resolve = [&](const char* key, std::optional<std::int64_t> from_template,
                           std::initializer_list<const char*> common_names) {
    if (const auto name = config_token(config, key, config_path.string())) {
      const auto id = token_to_id(*name);
      if (!id) {
        throw UserError(config_path.string() + ": " + key + " '" + *name + "' is not a token of " +
                        file_);
      }
      return id;
    }
    if (from_template) return from_template;
    for (const char* name : common_names) {
      if (const auto id = token_to_id(name)) return id;
    }
    return std::optional<std::int64_t>();
  };
  const auto& prefix = post_processor_.prefix();
  const auto& suffix = post_processor_.suffix();
  bos_ = resolve("bos_token",
                 prefix.empty() ? std::nullopt : std::optional<std::int64_t>(prefix.front()),
                 {"<|begin_of_text|>", "<s>", "<|endoftext|>"});
  eos_ = resolve("eos_token",
                 suffix.empty() ? std::nullopt : std::optional<std::int64_t>(suffix.back()),
                 {"<|end_of_text|>", "</s>", "<|endoftext|>"});
  pad_ = resolve("pad_token", std::nullopt, {"<|pad|>", "<pad>"});
}

std::vector<std::int64_t> HfTokenizer::encode(const std::string& text) const {
  thread_local std::vector<AddedVocabulary::Piece> pieces;
  thread_local PreTokenizer::Scratch scratch;
  std::string repaired;
  std::string_view input = text;
  if (!utf8::is_valid(input)) {  // the regexes need valid UTF-8
    repaired = utf8::repair(input);
    input = repaired;
  }
  std::vector<std::int64_t> ids;
  ids.reserve(input.size() / 3 + 4);
  added_.split(input, pieces);
  for (const AddedVocabulary::Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    pre_tokenizer_.split(input.substr(piece.begin, piece.end - piece.begin), scratch);
    for (const std::string_view word : scratch.pieces) model_.encode(word, ids);
  }
  return ids;
}

std::vector<std::int64_t> HfTokenizer::encode_with_special(const std::string& text) const {
  return post_processor_.apply(encode(text));
}

std::string HfTokenizer::decode(const std::vector<std::int64_t>& ids, bool skip_special) const {
  std::string out;
  bool first = true;
  for (const std::int64_t id : ids) {
    const std::string* piece = nullptr;
    if (const AddedToken* added = added_.find(id)) {
      if (skip_special && added->special) continue;
      // Added tokens are emitted as written (HF's ByteLevel decoder would mangle non-ASCII
      // ones into Latin-1 bytes).
      piece = &added->content;
    } else {
      piece = byte_level_decoder_ ? model_.decoded(id) : model_.spelling(id);
    }
    if (piece == nullptr) continue;  // unknown ids are skipped, as in Hugging Face
    if (!byte_level_decoder_ && !first) out += ' ';
    out += *piece;
    first = false;
  }
  return utf8::is_valid(out) ? out : utf8::repair(out);
}

std::optional<std::int64_t> HfTokenizer::token_to_id(const std::string& token) const {
  if (const AddedToken* added = added_.find(token)) return added->id;
  return model_.token_to_id(token);
}

std::string HfTokenizer::id_to_token(std::int64_t id) const {
  if (const AddedToken* added = added_.find(id)) return added->content;
  if (const std::string* spelling = model_.spelling(id)) return *spelling;
  throw UserError(file_ + ": no token has id " + std::to_string(id) + " (vocabulary size " +
                  std::to_string(vocab_size_) + ")");
}

std::int64_t HfTokenizer::add_special_token(const std::string& token) {
  if (token.empty()) throw UserError("cannot add an empty special token");
  if (const AddedToken* existing = added_.find(token)) {
    if (!existing->special) {
      AddedToken updated = *existing;
      updated.special = true;
      added_.add(updated);
    }
    return existing->id;
  }
  AddedToken added;
  added.content = token;
  added.id = model_.token_to_id(token).value_or(vocab_size_);
  added.special = true;
  added_.add(added);
  vocab_size_ = std::max(vocab_size_, added.id + 1);
  return added.id;
}

bool HfTokenizer::is_special(std::int64_t id) const {
  const AddedToken* added = added_.find(id);
  return added != nullptr && added->special;
}

std::optional<std::string> HfTokenizer::name_of(std::optional<std::int64_t> id) const {
  if (!id) return std::nullopt;
  return id_to_token(*id);
}

void HfTokenizer::save(const std::filesystem::path& dir) const {
  hf_files::create_directory(dir);
  hf_files::write_text(dir / "tokenizer.json", hf_files::replace_top_level_value(
                                                   original_json_, "added_tokens",
                                                   hf_files::added_tokens_json(added_.tokens())));
  std::optional<nlohmann::ordered_json> config;
  if (original_config_) config = nlohmann::ordered_json::parse(*original_config_);
  hf_files::write_transformers_configs(dir, std::move(config), added_.tokens(),
                                       {name_of(bos_), name_of(eos_), name_of(pad_)});
}

}  // namespace loom
