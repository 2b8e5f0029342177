#include "tokenizer/pre_tokenizer.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace loom {
namespace {

using nlohmann::json;

// What ByteLevel splits by when use_regex is true (Hugging Face's built-in GPT-2 pattern).
constexpr char kGpt2Pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// Nesting limit for Sequence, so a hostile file cannot exhaust the stack.
constexpr int kMaxDepth = 16;

std::shared_ptr<const Pcre2Regex> gpt2_regex() {
  static const auto regex = std::make_shared<const Pcre2Regex>(kGpt2Pattern, false, "ByteLevel");
  return regex;
}

bool bool_field(const json& node, const char* key, bool fallback, const std::string& where) {
  const auto it = node.find(key);
  if (it == node.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw UserError(where + ": '" + key + "' must be true or false");
  return it->get<bool>();
}

}  // namespace

PreTokenizer PreTokenizer::from_json(const json& node, const std::string& file) {
  PreTokenizer pre_tokenizer;
  if (!node.is_null()) parse(node, file, 0, pre_tokenizer.steps_);
  return pre_tokenizer;
}

void PreTokenizer::parse(const json& node, const std::string& file, int depth,
                         std::vector<Step>& steps) {
  const std::string where = file + ": pre_tokenizer";
  if (depth > kMaxDepth) throw UserError(where + ": Sequence nested too deeply");
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string()) {
    throw UserError(where + ": expected an object with a string 'type'");
  }
  const std::string type = node["type"].get<std::string>();
  if (type == "Sequence") {
    const auto it = node.find("pretokenizers");
    if (it == node.end() || !it->is_array()) {
      throw UserError(where + ": Sequence needs a 'pretokenizers' array");
    }
    for (const json& child : *it) parse(child, file, depth + 1, steps);
  } else if (type == "ByteLevel") {
    Step step;
    step.byte_level = true;
    step.add_prefix_space = bool_field(node, "add_prefix_space", true, where + " ByteLevel");
    if (bool_field(node, "use_regex", true, where + " ByteLevel")) step.regex = gpt2_regex();
    steps.push_back(std::move(step));
  } else if (type == "Split") {
    const std::string split_where = where + " Split";
    const auto pattern = node.find("pattern");
    if (pattern == node.end() || !pattern->is_object() || pattern->size() != 1) {
      throw UserError(split_where + ": 'pattern' must be {\"Regex\": ...} or {\"String\": ...}");
    }
    const bool literal = pattern->contains("String");
    const json& text = literal ? (*pattern)["String"] : pattern->value("Regex", json());
    if (!text.is_string()) {
      throw UserError(split_where + ": 'pattern' must be {\"Regex\": ...} or {\"String\": ...}");
    }
    Step step;
    step.regex = std::make_shared<const Pcre2Regex>(text.get<std::string>(), literal, split_where);
    const json behavior = node.value("behavior", json("Isolated"));
    const std::string name = behavior.is_string() ? behavior.get<std::string>() : "";
    if (name == "Isolated") {
      step.behavior = Behavior::kIsolated;
    } else if (name == "Removed") {
      step.behavior = Behavior::kRemoved;
    } else if (name == "MergedWithPrevious") {
      step.behavior = Behavior::kMergedWithPrevious;
    } else if (name == "MergedWithNext") {
      step.behavior = Behavior::kMergedWithNext;
    } else if (name == "Contiguous") {
      step.behavior = Behavior::kContiguous;
    } else {
      throw UserError(split_where + ": unknown behavior " + behavior.dump());
    }
    step.invert = bool_field(node, "invert", false, split_where);
    steps.push_back(std::move(step));
  } else {
    throw UserError(where + ": type '" + type +
                    "' is not supported (supported: Sequence, Split, ByteLevel)");
  }
}

bool PreTokenizer::ends_with_byte_level() const {
  return !steps_.empty() && steps_.back().byte_level;
}

void PreTokenizer::split(std::string_view text, Scratch& scratch) const {
  scratch.pieces.clear();
  scratch.prefixed.clear();
  if (!text.empty()) scratch.pieces.push_back(text);
  for (const Step& step : steps_) {
    scratch.next.clear();
    for (std::string_view piece : scratch.pieces) {
      if (step.add_prefix_space && piece[0] != ' ') {
        scratch.prefixed.push_back(" ");
        scratch.prefixed.back().append(piece);
        piece = scratch.prefixed.back();
      }
      if (step.regex) {
        split_piece(step, piece, scratch);
      } else {
        scratch.next.push_back(piece);
      }
    }
    scratch.pieces.swap(scratch.next);
  }
}

// Mirrors NormalizedString::split in Hugging Face tokenizers: matches and the gaps between
// them, merged according to the behavior, empty pieces dropped.
void PreTokenizer::split_piece(const Step& step, std::string_view piece, Scratch& scratch) {
  step.regex->find_all(piece, scratch.matches);
  if (step.behavior == Behavior::kIsolated) {  // the hot path: no merging
    std::size_t prev = 0;
    for (const auto& [begin, end] : scratch.matches) {
      if (prev < begin) scratch.next.push_back(piece.substr(prev, begin - prev));
      if (begin < end) scratch.next.push_back(piece.substr(begin, end - begin));
      prev = end;
    }
    if (prev < piece.size()) scratch.next.push_back(piece.substr(prev));
    return;
  }
  // (begin, end, is_match) for matches and gaps, as Pattern::find_matches returns them.
  auto& spans = scratch.spans;
  spans.clear();
  std::size_t prev = 0;
  for (const auto& [begin, end] : scratch.matches) {
    if (prev != begin) spans.push_back({prev, begin, step.invert});
    spans.push_back({begin, end, !step.invert});
    prev = end;
  }
  if (prev != piece.size()) spans.push_back({prev, piece.size(), step.invert});

  std::vector<Scratch::Span> merged;
  merged.reserve(spans.size());
  bool previous_match = false;
  switch (step.behavior) {
    case Behavior::kIsolated:
      break;
    case Behavior::kRemoved:
      merged = spans;  // matches keep is_match=true and are dropped below
      break;
    case Behavior::kContiguous:
      for (const auto& span : spans) {
        if (span.is_match == previous_match && !merged.empty()) {
          merged.back().end = span.end;
        } else {
          merged.push_back({span.begin, span.end, false});
        }
        previous_match = span.is_match;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& span : spans) {
        if (span.is_match && !previous_match && !merged.empty()) {
          merged.back().end = span.end;
        } else {
          merged.push_back({span.begin, span.end, false});
        }
        previous_match = span.is_match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
  }
  for (const auto& span : merged) {
    if (!span.is_match && span.begin < span.end) {
      scratch.next.push_back(piece.substr(span.begin, span.end - span.begin));
    }
  }
}

}  // namespace loom
