// `trainer serve`: a checkpoint behind an OpenAI-style HTTP API (host/serve/), until SIGINT or
// SIGTERM, which drain the requests in flight and end with exit status 0.
#include <pthread.h>
#include <signal.h>
#include <torch/torch.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
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

  const fs::path ckpt = a.checkpoint;
  TrainConfig cfg = config_for(a.common, ckpt);
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

  std::atomic<bool> stopping{false};
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (stopping.exchange(true)) return;  // woken by serve() ending on its own
    spdlog::info("loom serve: {}: finishing the requests in flight, then exiting",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.drain();
  });
  server.serve();
  if (!stopping.exchange(true)) pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  spdlog::info("loom serve: stopped");
  return 0;
}

}  // namespace loom
