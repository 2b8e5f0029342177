// A Hugging Face fast tokenizer (tokenizer.json) with a byte-level BPE model, as Llama 3 and
// GPT-2 ship it; gives the same ids as Hugging Face's tokenizers library.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_vocabulary.hpp"
#include "tokenizer/bpe_model.hpp"
#include "tokenizer/post_processor.hpp"
#include "tokenizer/pre_tokenizer.hpp"
#include "tokenizer/tokenizer.hpp"

namespace loom {

// Loads tokenizer.json; bos/eos/pad come from a tokenizer_config.json beside it when there is
// one. Throws UserError naming the file for anything malformed or unsupported.
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& file);

class HfTokenizer final : public Tokenizer {
 public:
  static std::unique_ptr<HfTokenizer> load(const std::filesystem::path& file);

  std::int64_t vocab_size() const override { return vocab_size_; }
  // Text that is not valid UTF-8 is first repaired (U+FFFD per bad sequence).
  std::vector<std::int64_t> encode(const std::string& text) const override;
  std::vector<std::int64_t> encode_with_special(const std::string& text) const override;
  std::string decode(const std::vector<std::int64_t>& ids,
                     bool skip_special = false) const override;
  // Added tokens by content, model tokens by byte-level spelling ("Ġthe").
  std::optional<std::int64_t> token_to_id(const std::string& token) const override;
  // Throws UserError for an id the tokenizer does not have.
  std::string id_to_token(std::int64_t id) const override;
  std::int64_t add_special_token(const std::string& token) override;
  bool is_special(std::int64_t id) const override;
  std::optional<std::int64_t> bos_id() const override { return bos_; }
  std::optional<std::int64_t> eos_id() const override { return eos_; }
  std::optional<std::int64_t> pad_id() const override { return pad_; }
  void save(const std::filesystem::path& dir) const override;
  std::string kind() const override { return "tokenizer.json"; }

 private:
  HfTokenizer(std::string file, BpeModel model, PreTokenizer pre_tokenizer,
              PostProcessor post_processor);
  void load_added_tokens(const nlohmann::json& array);
  void resolve_special_ids(const std::filesystem::path& file);
  std::optional<std::string> name_of(std::optional<std::int64_t> id) const;

  std::string file_;           // for error messages
  std::string original_json_;  // the file as loaded; save() rewrites only added_tokens
  std::optional<std::string> original_config_;  // tokenizer_config.json beside it
  BpeModel model_;
  PreTokenizer pre_tokenizer_;
  PostProcessor post_processor_;
  AddedVocabulary added_;
  bool byte_level_decoder_ = true;  // false: no decoder, tokens joined by spaces as in HF
  std::int64_t vocab_size_ = 0;
  std::optional<std::int64_t> bos_;
  std::optional<std::int64_t> eos_;
  std::optional<std::int64_t> pad_;
};

}  // namespace loom
