// `trainer convert-config axolotl.yml`: the Axolotl YAML as loom TOML, on stdout.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.hpp"
#include "config/axolotl_config.hpp"
#include "config/config_loader.hpp"
#include "errors.hpp"
#include "plugins/plugin_set.hpp"

namespace loom {

int run_convert_config(const ConvertConfigArgs& args) {
  // stdout is the TOML (`convert-config a.yml > loom.toml`): warnings go to stderr.
  auto to_stderr = spdlog::stderr_color_mt("convert-config");
  to_stderr->set_pattern("[%H:%M:%S] %v");
  spdlog::set_default_logger(to_stderr);
  if (!is_axolotl_yaml_path(args.file))
    throw UserError(args.file + ": convert-config reads an Axolotl YAML config (.yml or .yaml)");
  // Validated as `trainer check` validates it (host keys, then the plugins' tables), except
  // that the data and model files need not exist here: nothing half-right is printed.
  const TrainConfig cfg = load_train_config(args.file);
  PluginSet plugins = PluginSet::load(cfg.plugins);
  plugins.configure(cfg, run_info_for(cfg, "check"));

  std::ifstream in(args.file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const AxolotlTranslation translation = translate_axolotl_yaml(text.str(), args.file);
  std::fwrite(translation.toml.data(), 1, translation.toml.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace loom
