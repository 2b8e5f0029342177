#include "plugins/plugin_library.hpp"

#include <boost/dll/shared_library.hpp>
#include <torch/version.h>

#include <mutex>
#include <vector>

#include "errors.hpp"

namespace loom {

struct PluginLibrary::Handle {
  boost::dll::shared_library lib;
  sdk::Plugin* (*create)() = nullptr;
};

namespace {

// Libraries stay loaded until the process ends.
std::vector<std::shared_ptr<void>>& keep_alive() {
  static auto* libs = new std::vector<std::shared_ptr<void>>();
  return *libs;
}

std::string version(unsigned a, unsigned b, unsigned c) {
  return std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c);
}

}  // namespace

std::shared_ptr<PluginLibrary> PluginLibrary::load(const std::filesystem::path& path) {
  const std::string file = path.string();
  if (!std::filesystem::exists(path)) throw UserError("plugin " + file + ": file not found");
  auto handle = std::make_shared<Handle>();
  boost::dll::fs::error_code ec;
  handle->lib.load(boost::dll::fs::path(file), boost::dll::load_mode::rtld_now, ec);
  if (ec)
    throw UserError("plugin " + file + ": cannot be loaded as a shared library (" + ec.message() +
                    ")");
  if (!handle->lib.has("loom_plugin_abi") || !handle->lib.has("loom_plugin_create"))
    throw UserError("plugin " + file +
                    ": not a loom plugin (it does not export loom_plugin_abi and "
                    "loom_plugin_create; did you forget LOOM_PLUGIN(...)?)");
  auto abi_fn = handle->lib.get<const sdk::PluginAbi*()>("loom_plugin_abi");
  handle->create = handle->lib.get<sdk::Plugin*()>("loom_plugin_create");
  const sdk::PluginAbi* abi = abi_fn();
  if (!abi || abi->struct_size < sizeof(sdk::PluginAbi))
    throw UserError("plugin " + file + ": malformed handshake record");

  auto lib = std::shared_ptr<PluginLibrary>(new PluginLibrary());
  lib->info_.path = path;
  lib->info_.name = abi->plugin_name ? abi->plugin_name : "";
  lib->info_.abi_major = int(abi->abi_major);
  lib->info_.abi_minor = int(abi->abi_minor);
  lib->info_.torch_version = version(abi->torch_major, abi->torch_minor, abi->torch_patch);
  const std::string host_abi =
      std::to_string(LOOM_SDK_ABI_MAJOR) + "." + std::to_string(LOOM_SDK_ABI_MINOR);
  const std::string plugin_abi =
      std::to_string(abi->abi_major) + "." + std::to_string(abi->abi_minor);
  if (abi->abi_major != LOOM_SDK_ABI_MAJOR || abi->abi_minor > LOOM_SDK_ABI_MINOR)
    throw UserError("plugin " + file + ": built for loom SDK ABI " + plugin_abi +
                    ", but this trainer provides ABI " + host_abi +
                    "; rebuild the plugin against this trainer's SDK");
  const std::string host_torch = version(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
  if (abi->torch_major != TORCH_VERSION_MAJOR || abi->torch_minor != TORCH_VERSION_MINOR)
    throw UserError("plugin " + file + ": built against libtorch " + lib->info_.torch_version +
                    ", but this trainer uses libtorch " + host_torch +
                    "; rebuild the plugin against the same libtorch");
#ifdef _GLIBCXX_USE_CXX11_ABI
  if (abi->cxx11_abi != _GLIBCXX_USE_CXX11_ABI)
    throw UserError("plugin " + file + ": built with _GLIBCXX_USE_CXX11_ABI=" +
                    std::to_string(abi->cxx11_abi) + ", the trainer with " +
                    std::to_string(_GLIBCXX_USE_CXX11_ABI));
#endif
  lib->handle_ = handle;
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  keep_alive().push_back(handle);
  return lib;
}

std::shared_ptr<sdk::Plugin> PluginLibrary::create() const {
  sdk::Plugin* raw = handle_->create();
  if (!raw) throw UserError("plugin " + info_.path.string() + ": factory returned no object");
  auto handle = handle_;
  return std::shared_ptr<sdk::Plugin>(raw, [handle](sdk::Plugin* p) { delete p; });
}

}  // namespace loom
