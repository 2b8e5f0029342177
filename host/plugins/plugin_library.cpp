#include "plugins/plugin_library.hpp"

#include <boost/dll/shared_library.hpp>
#include <dlfcn.h>
#include <torch/version.h>

#include <cstddef>
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

// The dynamic loader's own explanation of why `file` does not load ("" if it does): boost's
// error code only says "Bad file descriptor".
std::string loader_error(const std::string& file) {
  void* h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (h) {
    dlclose(h);
    return "";
  }
  const char* e = dlerror();
  return e ? e : "unknown loader error";
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

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
  if (ec) {
    std::string why = loader_error(file);
    if (why.empty()) why = ec.message();
    if (contains(why, "invalid ELF header") || contains(why, "file too short"))
      throw UserError("plugin " + file + ": not a shared library (" + why + ")");
    std::string hint;
    if (contains(why, "undefined symbol"))
      hint = contains(why, "_Z")  // a C++ symbol: another libtorch, SDK or C++ ABI
                 ? "; the plugin was probably built against another libtorch or with another "
                   "_GLIBCXX_USE_CXX11_ABI: rebuild it against this trainer's SDK and libtorch"
                 : "; a library it needs is missing or older than the one it was built against";
    throw UserError("plugin " + file + ": cannot be loaded as a shared library: " + why + hint);
  }
  if (!handle->lib.has("loom_plugin_abi") || !handle->lib.has("loom_plugin_create"))
    throw UserError("plugin " + file +
                    ": not a loom plugin (it does not export loom_plugin_abi and "
                    "loom_plugin_create; did you forget LOOM_PLUGIN(...)?)");
  auto abi_fn = handle->lib.get<const sdk::PluginAbi*()>("loom_plugin_abi");
  handle->create = handle->lib.get<sdk::Plugin*()>("loom_plugin_create");
  const sdk::PluginAbi* abi = abi_fn();
  // The record may be older (smaller) than this host's: read only the fields it has.
  constexpr std::size_t kRecord10 = offsetof(sdk::PluginAbi, plugin_name) + sizeof(const char*);
  if (!abi || abi->struct_size < kRecord10)
    throw UserError("plugin " + file + ": malformed handshake record (" +
                    (abi ? std::to_string(abi->struct_size) + " bytes" : std::string("null")) +
                    ", less than the SDK 1.0 record)");
  auto has_field = [&](std::size_t offset, std::size_t size) { return abi->struct_size >= offset + size; };

  auto lib = std::shared_ptr<PluginLibrary>(new PluginLibrary());
  lib->info_.path = path;
  lib->info_.name = abi->plugin_name ? abi->plugin_name : "";
  lib->info_.abi_major = int(abi->abi_major);
  lib->info_.abi_minor = int(abi->abi_minor);
  lib->info_.torch_version = version(abi->torch_major, abi->torch_minor, abi->torch_patch);
  if (has_field(offsetof(sdk::PluginAbi, compiler), sizeof(const char*)) && abi->compiler)
    lib->info_.compiler = abi->compiler;
  const std::string host_abi =
      std::to_string(LOOM_SDK_ABI_MAJOR) + "." + std::to_string(LOOM_SDK_ABI_MINOR);
  const std::string plugin_abi =
      std::to_string(abi->abi_major) + "." + std::to_string(abi->abi_minor);
  if (abi->abi_major != LOOM_SDK_ABI_MAJOR)
    throw UserError("plugin " + file + ": built for loom SDK ABI " + plugin_abi +
                    ", but this trainer provides ABI " + host_abi +
                    " (another major version); rebuild the plugin against this trainer's SDK");
  if (abi->abi_minor > LOOM_SDK_ABI_MINOR)
    throw UserError("plugin " + file + ": built for loom SDK ABI " + plugin_abi +
                    ", newer than this trainer's ABI " + host_abi +
                    "; upgrade the trainer, or rebuild the plugin against this trainer's SDK "
                    "(or with -DLOOM_SDK_TARGET_MINOR=" + std::to_string(LOOM_SDK_ABI_MINOR) + ")");
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
