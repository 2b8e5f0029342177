// A byte-level BPE model as Hugging Face's tokenizers runs it (model.type "BPE"): vocabulary,
// ranked merges, ignore_merges, unk/byte_fallback. Works on raw bytes: the vocabulary is
// converted from its byte-level spelling once at load, so encoding never spells characters.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace loom {

class BpeModel {
 public:
  // `model` is the "model" object of tokenizer.json; `file` names it in errors.
  static BpeModel from_json(const nlohmann::json& model, const std::string& file);

  // Appends the ids of one pre-token, given as raw bytes. Safe to call from several threads:
  // the word cache is per thread.
  void encode(std::string_view bytes, std::vector<std::int64_t>& ids) const;

  // By byte-level spelling, as the vocabulary stores it (e.g. "Ġthe").
  std::optional<std::int64_t> token_to_id(const std::string& spelling) const;
  // Byte-level spelling, or nullptr for an id the vocabulary does not have.
  const std::string* spelling(std::int64_t id) const;
  // What Hugging Face's ByteLevel decoder turns the token into: its raw bytes, or the spelling
  // itself when it has characters outside the byte-level alphabet. nullptr if no such id.
  const std::string* decoded(std::int64_t id) const;
  // One past the largest id (0 for an empty vocabulary).
  std::int64_t id_limit() const { return static_cast<std::int64_t>(spellings_.size()); }

 private:
  struct MergeResult {
    std::int32_t rank;
    std::int32_t new_id;
  };
  // Open-addressing table from an id pair to its merge; the hot lookup of BPE.
  class MergeTable {
   public:
    void reserve(std::size_t count);
    void insert(std::int32_t left, std::int32_t right, MergeResult result);
    const MergeResult* find(std::int32_t left, std::int32_t right) const;

   private:
    static std::uint64_t key(std::int32_t left, std::int32_t right) {
      return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
             static_cast<std::uint32_t>(right);
    }
    std::size_t slot(std::uint64_t key) const {
      return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);
    }
    struct Entry {
      std::uint64_t key = kEmpty;
      MergeResult result{};
    };
    static constexpr std::uint64_t kEmpty = ~0ull;
    std::vector<Entry> entries_;
    int shift_ = 64;
    std::size_t size_ = 0;
  };

  BpeModel() = default;
  // Runs the merges on one word (a cache miss), appending the resulting ids.
  void merge_word(std::string_view bytes, std::vector<std::int32_t>& out) const;
  void initial_symbols(std::string_view bytes, std::vector<std::int32_t>& symbols) const;

  std::vector<std::string> spellings_;  // by id; empty where the id is unused
  std::vector<std::string> decoded_;    // by id, see decoded()
  std::vector<bool> has_id_;            // by id
  std::unordered_map<std::string, std::int32_t> id_by_spelling_;
  std::unordered_map<std::string, std::int32_t> id_by_bytes_;  // for ignore_merges
  std::array<std::int32_t, 256> byte_ids_{};                   // -1 if a byte has no token
  MergeTable merges_;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  std::optional<std::string> unk_token_;
  std::int32_t unk_id_ = -1;
  std::string file_;               // for error messages
  std::uint64_t cache_owner_ = 0;  // unique per model, keys the per-thread word cache
};

}  // namespace loom
