#include "tokenizer/hf_tokenizer_files.hpp"

#include <gtest/gtest.h>

namespace loom {
namespace {

using nlohmann::ordered_json;

TEST(HfTokenizerFilesTest, ReplacesOnlyTheTopLevelValue) {
  const ordered_json value = ordered_json::array({1, 2});
  EXPECT_EQ(hf_files::replace_top_level_value(
                R"({"a": {"added_tokens": 5}, "added_tokens" : [ {"x": "]"} ] , "z": null})",
                "added_tokens", value),
            R"({"a": {"added_tokens": 5}, "added_tokens" : [1,2] , "z": null})");
  EXPECT_EQ(hf_files::replace_top_level_value(R"({"k": "v\"}", "added_tokens": null})",
                                              "added_tokens", value),
            R"({"k": "v\"}", "added_tokens": [1,2]})");
  // Escaped key spelling still counts as the same key.
  EXPECT_EQ(hf_files::replace_top_level_value(R"({"added\u005ftokens": 3})", "added_tokens", value),
            R"({"added\u005ftokens": [1,2]})");
  EXPECT_EQ(hf_files::replace_top_level_value(R"({"a": 1})", "added_tokens", value),
            R"({"added_tokens": [1,2],"a": 1})");
  EXPECT_EQ(hf_files::replace_top_level_value("{ }", "added_tokens", value),
            R"({"added_tokens": [1,2] })");
}

}  // namespace
}  // namespace loom
