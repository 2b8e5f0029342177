#include "plugins/plugin_search_path.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>
#include <unistd.h>

#include "errors.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

fs::path executable_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

// Whether `path` is `dir` or below it (symbolic links resolved).
bool inside(const fs::path& path, const fs::path& dir) {
  std::error_code ec;  // resolved: the program's path comes resolved from /proc/self/exe
  const auto p = fs::weakly_canonical(path, ec), d = fs::weakly_canonical(dir, ec);
  auto [end, unused] = std::mismatch(d.begin(), d.end(), p.begin(), p.end());
  (void)unused;
  return end == d.end();
}

}  // namespace

std::vector<fs::path> plugin_search_dirs() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("LOOM_PLUGIN_PATH")) {
    std::string s = env;
    for (std::size_t start = 0; start <= s.size();) {
      auto colon = s.find(':', start);
      if (colon == std::string::npos) colon = s.size();
      if (colon > start) dirs.emplace_back(s.substr(start, colon - start));
      start = colon + 1;
    }
  }
  // Relative to the running program first, so a relocated build or install still works.
  auto exe = executable_dir();
  if (!exe.empty()) {
    dirs.push_back(exe / ".." / "plugins");             // build tree: <build>/bin/trainer
    dirs.push_back(exe / ".." / "lib" / "loom" / "plugins");  // install: <prefix>/bin/trainer
  }
  // The build tree's plugin folder only for programs of that build tree (tests, benchmarks):
  // an installed trainer must not pick up plugins from the folder it was compiled in.
  const fs::path build_plugins = fs::path(LOOM_BUILD_PLUGIN_DIR).lexically_normal();
  if (!exe.empty() && inside(exe, build_plugins.parent_path())) dirs.push_back(build_plugins);
  dirs.emplace_back(LOOM_INSTALL_PLUGIN_DIR);
  std::vector<fs::path> unique;
  for (auto& d : dirs) {
    auto n = d.lexically_normal();
    if (std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(n);
  }
  return unique;
}

fs::path resolve_plugin(const std::string& name) {
  if (name.find('/') != std::string::npos) return fs::path(name);
  std::vector<std::string> candidates = {name};
  if (name.find(".so") == std::string::npos) {
    candidates.push_back("lib" + name + ".so");
    candidates.push_back(name + ".so");
  }
  std::string searched;
  for (const auto& dir : plugin_search_dirs()) {
    searched += "\n  " + dir.lexically_normal().string();
    for (const auto& c : candidates) {
      std::error_code ec;
      if (fs::is_regular_file(dir / c, ec)) return (dir / c).lexically_normal();
    }
  }
  throw UserError("plugin '" + name + "' not found; searched (set LOOM_PLUGIN_PATH to add more):" +
                  searched);
}

std::vector<fs::path> discover_plugins() {
  std::vector<fs::path> found;
  std::set<std::string> seen;
  for (const auto& dir : plugin_search_dirs()) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<fs::path> here;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      auto f = e.path().filename().string();
      if (f.rfind("lib", 0) == 0 && f.size() > 3 && f.substr(f.size() - 3) == ".so") here.push_back(e.path());
    }
    std::sort(here.begin(), here.end());
    for (const auto& p : here)
      if (seen.insert(p.filename().string()).second) found.push_back(p.lexically_normal());
  }
  return found;
}

}  // namespace loom
