// `trainer plugins`: what can be loaded, from where, and which config keys each plugin takes.
#include <cstdio>
#include <sstream>

#include "cli/commands.hpp"
#include "errors.hpp"
#include "plugins/plugin_library.hpp"
#include "plugins/plugin_search_path.hpp"

namespace loom {
namespace {

std::string value_text(const std::optional<sdk::ConfigValue>& v) {
  if (!v) return "unset";
  std::ostringstream s;
  std::visit([&](const auto& x) {
    using T = std::decay_t<decltype(x)>;
    if constexpr (std::is_same_v<T, bool>) s << (x ? "true" : "false");
    else if constexpr (std::is_same_v<T, std::string>) s << '"' << x << '"';
    else s << x;
  }, *v);
  return s.str();
}

}  // namespace

int run_plugins(const CommonOptions& args) {
  std::vector<std::filesystem::path> paths;
  for (const auto& spec : args.plugins) paths.push_back(resolve_plugin(spec));
  for (const auto& p : discover_plugins())
    if (std::find(paths.begin(), paths.end(), p) == paths.end()) paths.push_back(p);
  std::printf("plugin search path (first match wins):\n");
  for (const auto& d : plugin_search_dirs()) std::printf("  %s\n", d.lexically_normal().c_str());
  std::printf("host SDK ABI %d.%d\n\n", LOOM_SDK_ABI_MAJOR, LOOM_SDK_ABI_MINOR);
  int failures = 0;
  for (const auto& path : paths) {
    try {
      auto lib = PluginLibrary::load(path);
      auto plugin = lib->create();
      auto info = plugin->info();
      const auto& li = lib->info();
      std::printf("%s %s  (%s)\n  %s\n  SDK ABI %d.%d, libtorch %s%s%s\n", info.name.c_str(),
                  info.version.c_str(), path.c_str(), info.description.c_str(), li.abi_major,
                  li.abi_minor, li.torch_version.c_str(), li.compiler.empty() ? "" : ", built with ",
                  li.compiler.c_str());
      if (li.abi_minor < LOOM_SDK_ABI_MINOR)
        std::printf("  (built for an older SDK minor: hooks added after %d.%d are not called)\n",
                    li.abi_major, li.abi_minor);
      auto schema = plugin->config_schema();
      if (!schema.empty()) std::printf("  config keys ([%s] table):\n", info.name.c_str());
      for (const auto& k : schema) {
        std::string range;
        if (k.min || k.max) {
          std::ostringstream r;
          r << " [";
          if (k.min) r << *k.min;
          r << "..";
          if (k.max) r << *k.max;
          r << "]";
          range = r.str();
        }
        std::string choices;
        for (const auto& c : k.choices) choices += (choices.empty() ? " {" : "|") + c;
        if (!choices.empty()) choices += "}";
        std::printf("    %-24s %-6s default %-14s %s%s%s\n", k.name.c_str(), sdk::to_string(k.type),
                    value_text(k.default_value).c_str(), k.help.c_str(), choices.c_str(), range.c_str());
      }
      std::printf("\n");
    } catch (const UserError& e) {
      ++failures;
      std::printf("%s\n  cannot be used: %s\n\n", path.c_str(), e.what());
    }
  }
  if (paths.empty()) std::printf("no plugins found\n");
  return 0;
}

}  // namespace loom
