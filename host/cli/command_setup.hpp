// What several commands share: the config they run with and the plugins it names.
#pragma once

#include <filesystem>

#include "cli/commands.hpp"
#include "config/train_config.hpp"
#include "plugins/plugin_set.hpp"

namespace loom {

// --config, else `fallback_dir`/loom_config.toml when given (a checkpoint's), else the
// embedded default; --set overrides applied. Relative dataset paths of the embedded default
// are found in the source tree when they are not in the current directory.
TrainConfig config_for(const CommonOptions& o, const std::filesystem::path& fallback_dir = {});

// --plugin values first, then the config's plugins list.
PluginSet plugins_for(const CommonOptions& o, const TrainConfig& config);

}  // namespace loom
