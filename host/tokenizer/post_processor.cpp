#include "tokenizer/post_processor.hpp"

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace loom {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 16;

std::int64_t id_of(const json& value, const std::string& where) {
  if (!value.is_number_integer() || value.get<std::int64_t>() < 0) {
    throw UserError(where + ": token ids must be non-negative integers");
  }
  return value.get<std::int64_t>();
}

// Bert/Roberta's "cls"/"sep": ["[CLS]", 101].
std::int64_t token_pair_id(const json& node, const char* key, const std::string& where) {
  const auto it = node.find(key);
  if (it == node.end() || !it->is_array() || it->size() != 2 || !(*it)[0].is_string()) {
    throw UserError(where + ": '" + key + "' must be [token, id]");
  }
  return id_of((*it)[1], where);
}

}  // namespace

PostProcessor PostProcessor::from_json(const json& node, const std::string& file) {
  PostProcessor processor;
  processor.parse(node, file, 0);
  return processor;
}

void PostProcessor::parse(const json& node, const std::string& file, int depth) {
  const std::string where = file + ": post_processor";
  if (node.is_null()) return;
  if (depth > kMaxDepth) throw UserError(where + ": Sequence nested too deeply");
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string()) {
    throw UserError(where + ": expected an object with a string 'type'");
  }
  const std::string type = node["type"].get<std::string>();
  std::vector<std::int64_t> prefix;
  std::vector<std::int64_t> suffix;
  if (type == "ByteLevel") {
    return;  // only adjusts offsets
  } else if (type == "Sequence") {
    const auto it = node.find("processors");
    if (it == node.end() || !it->is_array()) {
      throw UserError(where + ": Sequence needs a 'processors' array");
    }
    for (const json& child : *it) parse(child, file, depth + 1);
    return;
  } else if (type == "BertProcessing" || type == "RobertaProcessing") {
    prefix.push_back(token_pair_id(node, "cls", where + " " + type));
    suffix.push_back(token_pair_id(node, "sep", where + " " + type));
  } else if (type == "TemplateProcessing") {
    const std::string template_where = where + " TemplateProcessing";
    const json specials = node.value("special_tokens", json::object());
    if (!specials.is_object())
      throw UserError(template_where + ": 'special_tokens' must be an object");
    const auto single = node.find("single");
    if (single == node.end() || !single->is_array()) {
      throw UserError(template_where + ": 'single' must be an array");
    }
    bool seen_sequence = false;
    for (const json& piece : *single) {
      if (piece.is_object() && piece.contains("Sequence")) {
        const json& sequence = piece["Sequence"];
        if (!sequence.is_object() || sequence.value("id", json()) != json("A") || seen_sequence) {
          throw UserError(template_where + ": 'single' must hold sequence A exactly once");
        }
        seen_sequence = true;
      } else if (piece.is_object() && piece.contains("SpecialToken")) {
        const json& special = piece["SpecialToken"];
        const json name = special.is_object() ? special.value("id", json()) : json();
        if (!name.is_string() || !specials.contains(name.get<std::string>())) {
          throw UserError(template_where + ": special token " + name.dump() +
                          " is not in 'special_tokens'");
        }
        const json& entry = specials[name.get<std::string>()];
        const auto ids = entry.is_object() ? entry.find("ids") : entry.end();
        if (!entry.is_object() || ids == entry.end() || !ids->is_array()) {
          throw UserError(template_where + ": special_tokens[" + name.dump() +
                          "] needs an 'ids' array");
        }
        for (const json& id : *ids) {
          (seen_sequence ? suffix : prefix).push_back(id_of(id, template_where));
        }
      } else {
        throw UserError(template_where + ": 'single' entries must be Sequence or SpecialToken");
      }
    }
    if (!seen_sequence) throw UserError(template_where + ": 'single' has no sequence A");
  } else {
    throw UserError(where + ": type '" + type +
                    "' is not supported (supported: TemplateProcessing, ByteLevel, "
                    "BertProcessing, RobertaProcessing, Sequence)");
  }
  // Later processors wrap what earlier ones produced.
  prefix.insert(prefix.end(), prefix_.begin(), prefix_.end());
  prefix_ = std::move(prefix);
  suffix_.insert(suffix_.end(), suffix.begin(), suffix.end());
}

std::vector<std::int64_t> PostProcessor::apply(const std::vector<std::int64_t>& ids) const {
  std::vector<std::int64_t> out;
  out.reserve(prefix_.size() + ids.size() + suffix_.size());
  out.insert(out.end(), prefix_.begin(), prefix_.end());
  out.insert(out.end(), ids.begin(), ids.end());
  out.insert(out.end(), suffix_.begin(), suffix_.end());
  return out;
}

}  // namespace loom
