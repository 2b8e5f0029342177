// TOML -> TrainConfig, once: syntax errors with line:column, unknown keys with "did you mean",
// wrong types and out-of-range values with the key's name and location.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "config/train_config.hpp"
#include "loom/sdk/config.hpp"

namespace loom {

// `overrides` are "key=value" strings from --set; dotted keys reach into tables
// ("model.hidden_size=128", "diffusion.eps=1e-3"); the value is TOML (a bare word is a string).
TrainConfig load_train_config(const std::filesystem::path& file,
                              const std::vector<std::string>& overrides = {});
TrainConfig parse_train_config(const std::string& toml_text, const std::string& source_name,
                               const std::vector<std::string>& overrides = {});

// Adds the plugins given on the command line (--plugin) to the config's `plugins` list, in
// `config.plugins` and in the TOML written into checkpoints, so that generate, eval and resume
// on those checkpoints load them again. A path (a spec with a '/') is recorded as its absolute
// path; a name (diffusion, libdiffusion.so) stays a name, found on the plugin search path.
void record_command_line_plugins(TrainConfig& config, const std::vector<std::string>& specs);

// The built-in default (a tiny model on a small corpus shipped in configs/data).
const char* embedded_default_config();

// Checks one plugin's table against the schema the plugin declared and fills in defaults: the
// one validation of plugin tables (plugins receive the typed, complete section and only check
// rules between keys). Messages start with where the key was given (`key_sources`, else
// `source_name`). Throws UserError naming `<plugin>.<key>`.
sdk::ConfigSection validate_plugin_section(
    const std::string& plugin_name, const std::vector<sdk::ConfigKey>& schema,
    const std::map<std::string, sdk::ConfigValue>& given, const std::string& source_name,
    const std::map<std::string, std::string>& key_sources = {});

}  // namespace loom
