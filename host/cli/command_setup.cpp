#include "cli/command_setup.hpp"

#include "config/config_loader.hpp"

namespace loom {
namespace fs = std::filesystem;

TrainConfig config_for(const CommonOptions& o, const fs::path& fallback_dir) {
  if (!o.config.empty()) return load_train_config(o.config, o.overrides);
  if (!fallback_dir.empty() && fs::exists(fallback_dir / "loom_config.toml"))
    return load_train_config(fallback_dir / "loom_config.toml", o.overrides);
  TrainConfig c = parse_train_config(embedded_default_config(), "<built-in default config>", o.overrides);
  for (auto& d : c.datasets) {
    fs::path p(d.path);
    if (p.is_relative() && !fs::exists(p) && fs::exists(fs::path(LOOM_SOURCE_DIR) / p))
      d.path = (fs::path(LOOM_SOURCE_DIR) / p).string();
  }
  return c;
}

PluginSet plugins_for(const CommonOptions& o, const TrainConfig& config) {
  std::vector<std::string> specs = o.plugins;
  specs.insert(specs.end(), config.plugins.begin(), config.plugins.end());
  return PluginSet::load(specs);
}

}  // namespace loom
