// One plugin shared library, loaded with Boost.DLL and checked by the ABI handshake.
//
// Lifetime: the library is never unloaded once loaded (libtorch code in a plugin may leave
// registrations behind; see pytorch#46171), and every Plugin object also holds a reference to
// its library, so no object can outlive the code it was made by.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "loom/sdk/plugin.hpp"

namespace loom {

struct PluginLibraryInfo {
  std::filesystem::path path;
  std::string name;  // from the handshake record
  int abi_major = 0, abi_minor = 0;
  std::string torch_version;  // the libtorch the plugin was built against
  std::string compiler;       // SDK 1.2 records: the compiler that built it ("" before)
  // Whether the plugin was built for SDK minor `minor` or later (same major: load checks it),
  // so the host may call the hooks that minor added.
  bool supports(int minor) const { return abi_minor >= minor; }
};

class PluginLibrary {
 public:
  // Loads `path` and checks the handshake; throws UserError naming the file if it cannot be
  // loaded, is not a loom plugin, or was built for another SDK ABI or libtorch.
  static std::shared_ptr<PluginLibrary> load(const std::filesystem::path& path);

  const PluginLibraryInfo& info() const { return info_; }
  // A new plugin object; it keeps this library alive.
  std::shared_ptr<sdk::Plugin> create() const;

 private:
  struct Handle;
  PluginLibraryInfo info_;
  std::shared_ptr<Handle> handle_;
};

}  // namespace loom
