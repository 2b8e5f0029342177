// Hugging Face pre-tokenizers that byte-level BPE files use: Split (by regex or string) and
// ByteLevel, alone or in a Sequence. Cuts text into the pieces the BPE model encodes.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/pcre2_regex.hpp"

namespace loom {

class PreTokenizer {
 public:
  // `node` is the "pre_tokenizer" value; `file` names the file in errors. Throws UserError for
  // unsupported types and malformed entries.
  static PreTokenizer from_json(const nlohmann::json& node, const std::string& file);

  // Whether a ByteLevel step ends the chain (byte-level BPE needs it).
  bool ends_with_byte_level() const;

  // Reusable buffers, one per caller, so splitting allocates nothing in steady state.
  struct Scratch {
    std::vector<std::string_view> pieces;
    std::vector<std::string_view> next;
    std::vector<Pcre2Regex::Match> matches;
    struct Span {
      std::size_t begin;
      std::size_t end;
      bool is_match;  // after merging: whether to drop it (Removed behavior)
    };
    std::vector<Span> spans;
    std::deque<std::string> prefixed;  // pieces that got ByteLevel's prefix space
  };
  // Cuts `text` (valid UTF-8) into pre-tokens; the result lives in scratch.pieces and points
  // into `text` or scratch.prefixed.
  void split(std::string_view text, Scratch& scratch) const;

 private:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
  struct Step {
    bool byte_level = false;        // ByteLevel: optional prefix space, then GPT-2's regex
    bool add_prefix_space = false;  // ByteLevel only
    std::shared_ptr<const Pcre2Regex> regex;  // null for ByteLevel with use_regex=false
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
  };
  static void parse(const nlohmann::json& node, const std::string& file, int depth,
                    std::vector<Step>& steps);
  static void split_piece(const Step& step, std::string_view piece, Scratch& scratch);

  std::vector<Step> steps_;
};

}  // namespace loom
