// `trainer serve`'s HTTP side: the OpenAI-style routes over cpp-httplib, feeding one
// BatchScheduler that samples with the checkpoint's sampler plugin.
//
//   POST /v1/completions  completions, JSON or (stream: true) server-sent events, one per
//                         denoising step with the answer as it stands
//   GET  /v1/models       the served model
//   GET  /health          status and counters (requests, batches, rows batched, queue depth)
//   GET  /                the web page that shows the answer unmasking
//
// Shutdown: drain() refuses new completions (503), waits for those in flight (streams
// included) to end, then stops the listener and the scheduler.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "loom/sdk/model.hpp"
#include "loom/sdk/tokenizer.hpp"
#include "plugins/plugin_set.hpp"
#include "serve/batch_scheduler.hpp"
#include "serve/serve_limits.hpp"
#include "tokenizer/tokenizer.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace loom::serve {

struct ServerSetup {
  sdk::ModelHandle* model = nullptr;
  Tokenizer* tokenizer = nullptr;  // the host's: prompts are encoded with BOS as generate does
  LoadedPlugin* sampler = nullptr;
  std::string model_name;
  ServeLimits limits;
  int http_threads = 64;  // each streaming client holds one while it streams
  int torch_threads = 0;  // > 0: the sampling thread's libtorch threads (config `threads`)
};

class CompletionServer {
 public:
  explicit CompletionServer(ServerSetup setup);
  ~CompletionServer();
  CompletionServer(const CompletionServer&) = delete;
  CompletionServer& operator=(const CompletionServer&) = delete;

  // Binds (port 0: any free port); returns the port. Throws UserError when it cannot.
  int bind(const std::string& host, int port);
  // Serves until drain() has run (from another thread).
  void serve();
  void drain();

 private:
  struct Pending;
  void handle_completion(const httplib::Request& req, httplib::Response& res);
  void handle_health(httplib::Response& res);
  std::vector<sdk::GeneratedSequence> sample(const std::vector<sdk::GenerateRequest>& requests,
                                             const std::vector<sdk::ConfigSection>& options,
                                             sdk::GenerateObserver* observer);

  ServerSetup setup_;
  std::vector<sdk::ConfigKey> option_keys_;  // the sampler's per-request keys (SDK 1.4)
  std::unique_ptr<httplib::Server> http_;
  int listen_socket_ = -1;  // the bound socket, whose accept queue bind() lengthens
  std::unique_ptr<BatchScheduler> scheduler_;
  std::atomic<bool> draining_{false};
  std::atomic<std::int64_t> requests_{0}, bad_requests_{0}, rejected_{0}, next_id_{0};
  std::mutex in_flight_mutex_;
  std::condition_variable in_flight_done_;
  std::int64_t in_flight_ = 0;
};

}  // namespace loom::serve
