// The tokenizer as plugins see it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace loom::sdk {

class TokenizerHandle {
 public:
  virtual ~TokenizerHandle() = default;
  virtual std::int64_t vocab_size() const = 0;  // including added tokens
  virtual std::vector<std::int64_t> encode(const std::string& text) const = 0;  // no BOS/EOS
  virtual std::string decode(const std::vector<std::int64_t>& ids,
                             bool skip_special = false) const = 0;
  virtual std::optional<std::int64_t> token_to_id(const std::string& token) const = 0;
  virtual std::string id_to_token(std::int64_t id) const = 0;
  // Adds a special token (matched before normal tokenization, never split) and returns its
  // id; returns the existing id if the token is already known. Saved with checkpoints.
  virtual std::int64_t add_special_token(const std::string& token) = 0;
  virtual bool is_special(std::int64_t id) const = 0;
  virtual std::optional<std::int64_t> bos_id() const = 0;
  virtual std::optional<std::int64_t> eos_id() const = 0;
  virtual std::optional<std::int64_t> pad_id() const = 0;
};

}  // namespace loom::sdk
