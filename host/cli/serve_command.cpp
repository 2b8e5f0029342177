// `trainer serve`: a checkpoint behind an OpenAI-style HTTP API (host/serve/), until SIGINT or
// SIGTERM, which drain the requests in flight and end with exit status 0.
#include <pthread.h>
#include <signal.h>
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "errors.hpp"
#include "serve/completion_server.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace fs = std::filesystem;

ModelBundle load_checkpoint_for(const std::string& command, const fs::path& ckpt,
                                const TrainConfig& cfg, PluginSet& plugins);
void use_as_base(TrainConfig& cfg, const std::string& base, const std::string& adapter);

int run_serve(const ServeArgs& a) {
  // SIGINT/SIGTERM are taken by one thread with sigwait; blocked here, before libtorch or
  // httplib start any thread, so every thread inherits the mask and none is killed by them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // A client that hangs up mid-stream must be a failed write, not the end of the server.
  signal(SIGPIPE, SIG_IGN);

  // --adapter: the adapter folder is what loads, on --checkpoint as its base (as generate).
  const fs::path ckpt = a.adapter.empty() ? fs::path(a.checkpoint) : fs::path(a.adapter);
  TrainConfig cfg = config_for(a.common, ckpt);
  if (!a.adapter.empty()) use_as_base(cfg, a.checkpoint, a.adapter);
  PluginSet plugins = plugins_for(a.common, cfg);
  if (cfg.threads > 0) at::set_num_threads(cfg.threads);
  // Plugins are told "generate": serving is sampling, and plugins built before `serve` existed
  // know what that command means (e.g. never add tokens to a trained checkpoint).
  ModelBundle b = load_checkpoint_for("generate", ckpt, cfg, plugins);
  LoadedPlugin* sampler = plugins.sampler();
  if (!sampler)
    throw UserError("--checkpoint " + ckpt.string() +
                    ": no loaded plugin provides a sampler (load the objective the checkpoint was "
                    "trained with, e.g. --plugin diffusion)");
  serve::ServerSetup setup;
  setup.model = b.model.get();
  setup.tokenizer = b.tokenizer.get();
  setup.sampler = sampler;
  setup.model_name = a.model_name.empty() ? ckpt.string() : a.model_name;
  setup.limits = a.limits;
  setup.http_threads = a.http_threads;
  setup.torch_threads = cfg.threads;
  serve::CompletionServer server(setup);
  const int port = server.bind(a.host, a.port);
  std::printf("loom serve: %s on http://%s:%d (max batch %lld, queue %lld, sampler '%s')\n",
              setup.model_name.c_str(), a.host.c_str(), port,
              static_cast<long long>(a.limits.max_batch), static_cast<long long>(a.limits.max_queue),
              sampler->name.c_str());
  std::fflush(stdout);

  // The first SIGINT/SIGTERM drains (new requests get 503, those in flight finish); a second
  // one, for a drain that takes too long, ends the process at once with 128 + the signal.
  std::atomic<bool> served{false};
  std::thread drainer;
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (served) return;  // woken by serve() ending on its own
    const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    spdlog::info("loom serve: {}: finishing the requests in flight, then exiting (again: exit now)", name);
    drainer = std::thread([&] { server.drain(); });
    sigwait(&stop_signals, &sig);
    if (served) return;
    spdlog::warn("loom serve: {} again: exiting without waiting for the requests in flight",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    std::fflush(nullptr);
    std::_Exit(128 + sig);
  });
  server.serve();
  served = true;
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  if (drainer.joinable()) drainer.join();
  spdlog::info("loom serve: stopped");
  return 0;
}

}  // namespace loom
