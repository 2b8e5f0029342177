// Axolotl YAML -> loom's TOML. An Axolotl config is translated key by key into the TOML that
// says the same run, which then goes through the one TOML validation (config_loader.cpp); so
// `trainer --config axolotl.yml` and `trainer --config converted.toml` are the same run.
// yaml-cpp stays inside axolotl_config.cpp.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace loom {

struct AxolotlTranslation {
  std::string toml;  // the equivalent loom TOML (with a comment header), as convert-config prints it
  // Where each line of `toml` came from: line_origins[i] is "file:line:column" of the YAML value
  // that TOML line i + 1 holds, or "" for lines of the translator's own (comments, headers).
  std::vector<std::string> line_origins;
  // One line naming the set keys that were ignored because they only concern Axolotl's Python
  // tooling (wandb, the hub, ...), and notes on values read differently; empty when none.
  std::string warning;
};

// True for a .yml or .yaml file name (the config is Axolotl YAML, not loom TOML).
bool is_axolotl_yaml_path(const std::filesystem::path& file);

// Throws UserError for malformed YAML (file:line:column), and one UserError listing every key
// that would change what is trained and that loom does not support (with where each is), an
// unknown plugin path among them.
AxolotlTranslation translate_axolotl_yaml(const std::string& yaml_text,
                                          const std::string& source_name);

}  // namespace loom
