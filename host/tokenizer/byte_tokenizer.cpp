#include "tokenizer/byte_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "tokenizer/byte_level_alphabet.hpp"
#include "tokenizer/hf_tokenizer_files.hpp"
#include "tokenizer/utf8.hpp"

namespace loom {

using nlohmann::ordered_json;

ByteTokenizer::ByteTokenizer(std::vector<std::string> special_tokens) {
  for (const std::string& token : special_tokens) {
    if (find_special(token)) {
      throw UserError("byte tokenizer: special token '" + token + "' is listed twice");
    }
    add_special_token(token);
  }
}

std::int64_t ByteTokenizer::vocab_size() const {
  return kByteCount + static_cast<std::int64_t>(special_tokens_.size());
}

std::optional<std::int64_t> ByteTokenizer::find_special(const std::string& token) const {
  const AddedToken* added = added_.find(token);
  if (added == nullptr) return std::nullopt;
  return added->id;
}

std::vector<std::int64_t> ByteTokenizer::encode(const std::string& text) const {
  thread_local std::vector<AddedVocabulary::Piece> pieces;
  added_.split(text, pieces);
  std::vector<std::int64_t> ids;
  ids.reserve(text.size());
  for (const AddedVocabulary::Piece& piece : pieces) {
    if (piece.id >= 0) {
      ids.push_back(piece.id);
      continue;
    }
    for (std::size_t i = piece.begin; i < piece.end; ++i) {
      ids.push_back(static_cast<std::uint8_t>(text[i]));
    }
  }
  return ids;
}

std::vector<std::int64_t> ByteTokenizer::encode_with_special(const std::string& text) const {
  std::vector<std::int64_t> ids;
  if (const auto bos = bos_id()) ids.push_back(*bos);
  const std::vector<std::int64_t> body = encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<std::int64_t>& ids, bool skip_special) const {
  std::string out;
  out.reserve(ids.size());
  for (const std::int64_t id : ids) {
    if (id >= 0 && id < kByteCount) {
      out += static_cast<char>(id);
    } else if (id >= kByteCount && id < vocab_size()) {
      if (!skip_special) out += special_tokens_[id - kByteCount];
    }  // unknown ids are skipped, as in Hugging Face
  }
  return utf8::is_valid(out) ? out : utf8::repair(out);
}

std::optional<std::int64_t> ByteTokenizer::token_to_id(const std::string& token) const {
  if (const auto special = find_special(token)) return special;
  if (const auto bytes = ByteLevelAlphabet::get().unspell(token); bytes && bytes->size() == 1) {
    return static_cast<std::uint8_t>((*bytes)[0]);
  }
  if (token.size() == 1) return static_cast<std::uint8_t>(token[0]);
  return std::nullopt;
}

std::string ByteTokenizer::id_to_token(std::int64_t id) const {
  if (id >= 0 && id < kByteCount) {
    return ByteLevelAlphabet::get().spell(static_cast<std::uint8_t>(id));
  }
  if (id >= kByteCount && id < vocab_size()) return special_tokens_[id - kByteCount];
  throw UserError("byte tokenizer: no token has id " + std::to_string(id) + " (vocabulary size " +
                  std::to_string(vocab_size()) + ")");
}

std::int64_t ByteTokenizer::add_special_token(const std::string& token) {
  if (token.empty()) throw UserError("byte tokenizer: a special token cannot be empty");
  if (const auto existing = find_special(token)) return *existing;
  AddedToken added;
  added.id = vocab_size();
  added.content = token;
  added.special = true;
  added_.add(added);
  special_tokens_.push_back(token);
  return added.id;
}

// A byte-level BPE with no merges encodes every byte to the id of its character, so with
// vocab[spell(b)] = b Hugging Face's pipeline reproduces encode() for any valid UTF-8 text.
void ByteTokenizer::save(const std::filesystem::path& dir) const {
  hf_files::create_directory(dir);
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::get();
  ordered_json vocab = ordered_json::object();
  for (int b = 0; b < kByteCount; ++b) vocab[alphabet.spell(static_cast<std::uint8_t>(b))] = b;

  ordered_json post_processor = nullptr;
  const auto bos = bos_id();
  if (bos) {
    const std::string& name = special_tokens_[*bos - kByteCount];
    const ordered_json bos_piece = {{"SpecialToken", {{"id", name}, {"type_id", 0}}}};
    post_processor = {
        {"type", "TemplateProcessing"},
        {"single", {bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {bos_piece,
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", name}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{name, {{"id", name}, {"ids", {*bos}}, {"tokens", {name}}}}}}};
  }
  const ordered_json byte_level = {{"type", "ByteLevel"},
                                   {"add_prefix_space", false},
                                   {"trim_offsets", true},
                                   {"use_regex", false}};
  ordered_json root = {{"version", "1.0"},
                       {"truncation", nullptr},
                       {"padding", nullptr},
                       {"added_tokens", hf_files::added_tokens_json(added_.tokens())},
                       {"normalizer", nullptr},
                       {"pre_tokenizer", byte_level},
                       {"post_processor", post_processor},
                       {"decoder", byte_level},
                       {"model",
                        {{"type", "BPE"},
                         {"dropout", nullptr},
                         {"unk_token", nullptr},
                         {"continuing_subword_prefix", nullptr},
                         {"end_of_word_suffix", nullptr},
                         {"fuse_unk", false},
                         {"byte_fallback", false},
                         {"ignore_merges", false},
                         {"vocab", vocab},
                         {"merges", ordered_json::array()}}}};
  hf_files::write_json(dir / "tokenizer.json", root);

  const auto name = [&](std::optional<std::int64_t> id) -> std::optional<std::string> {
    if (!id) return std::nullopt;
    return special_tokens_[*id - kByteCount];
  };
  hf_files::write_transformers_configs(dir, std::nullopt, added_.tokens(),
                                       {name(bos), name(eos_id()), name(pad_id())});
}

}  // namespace loom
