// What Hugging Face's post-processor adds around one sequence when add_special_tokens=true:
// TemplateProcessing's "single" template, Bert/Roberta's cls/sep, nothing for ByteLevel.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace loom {

class PostProcessor {
 public:
  // `node` is the "post_processor" value (null allowed); `file` names it in errors.
  static PostProcessor from_json(const nlohmann::json& node, const std::string& file);

  // prefix + ids + suffix
  std::vector<std::int64_t> apply(const std::vector<std::int64_t>& ids) const;
  const std::vector<std::int64_t>& prefix() const { return prefix_; }
  const std::vector<std::int64_t>& suffix() const { return suffix_; }

 private:
  void parse(const nlohmann::json& node, const std::string& file, int depth);

  std::vector<std::int64_t> prefix_;
  std::vector<std::int64_t> suffix_;
};

}  // namespace loom
