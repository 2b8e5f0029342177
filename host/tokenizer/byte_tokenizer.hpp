// The simplest tokenizer: ids 0..255 are raw bytes, special tokens follow. Needs no files, and
// saves as a real Hugging Face tokenizer.json (byte-level BPE without merges).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/added_vocabulary.hpp"
#include "tokenizer/tokenizer.hpp"

namespace loom {

class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr std::int64_t kByteCount = 256;

  // Special tokens get ids 256, 257, ... in this order. Throws UserError for an empty or
  // repeated token.
  explicit ByteTokenizer(std::vector<std::string> special_tokens = {"<|bos|>", "<|eos|>",
                                                                    "<|pad|>"});

  std::int64_t vocab_size() const override;
  // Special-token text is matched first (leftmost, longest); everything else is its bytes,
  // valid UTF-8 or not.
  std::vector<std::int64_t> encode(const std::string& text) const override;
  // BOS (if there is one) + encode(text).
  std::vector<std::int64_t> encode_with_special(const std::string& text) const override;
  // Invalid UTF-8 in the result is replaced by U+FFFD, as Hugging Face's decoder does.
  std::string decode(const std::vector<std::int64_t>& ids,
                     bool skip_special = false) const override;
  // Special tokens by content; bytes by their byte-level spelling ("Ġ" for ' ', as in the
  // saved tokenizer.json) or as the single raw byte.
  std::optional<std::int64_t> token_to_id(const std::string& token) const override;
  // Bytes come back in their byte-level spelling; throws UserError for an unknown id.
  std::string id_to_token(std::int64_t id) const override;
  std::int64_t add_special_token(const std::string& token) override;
  bool is_special(std::int64_t id) const override { return id >= kByteCount && id < vocab_size(); }
  std::optional<std::int64_t> bos_id() const override { return find_special("<|bos|>"); }
  std::optional<std::int64_t> eos_id() const override { return find_special("<|eos|>"); }
  std::optional<std::int64_t> pad_id() const override { return find_special("<|pad|>"); }
  void save(const std::filesystem::path& dir) const override;
  std::string kind() const override { return "byte"; }

 private:
  std::optional<std::int64_t> find_special(const std::string& token) const;

  std::vector<std::string> special_tokens_;  // id 256 + index
  AddedVocabulary added_;
};

}  // namespace loom
