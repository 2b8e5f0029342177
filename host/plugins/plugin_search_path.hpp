// Where `--plugin NAME` and `plugins = ["NAME"]` are looked for.
//
// A value containing a '/' is a path and used as is. A bare name ("diffusion") or file name
// ("libdiffusion.so") is looked up, as NAME, libNAME.so and NAME.so, in this order:
//   1. each directory of $LOOM_PLUGIN_PATH (colon-separated), left to right;
//   2. the build's plugin folder (<build>/plugins, next to <build>/bin/trainer);
//   3. the install prefix's plugin folder (<prefix>/lib/loom/plugins).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace loom {

std::vector<std::filesystem::path> plugin_search_dirs();
// Throws UserError listing the directories searched when nothing is found.
std::filesystem::path resolve_plugin(const std::string& name_or_path);
// Every lib*.so in the search directories (first occurrence of each file name wins).
std::vector<std::filesystem::path> discover_plugins();

}  // namespace loom
