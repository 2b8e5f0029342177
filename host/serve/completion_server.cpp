#include "serve/completion_server.hpp"

#include <ATen/Parallel.h>
#include <httplib.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <chrono>
#include <deque>
#include <optional>
#include <random>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "serve/answer_text.hpp"
#include "serve/api_error.hpp"
#include "serve/completion_request.hpp"
#include "serve/web_page.hpp"

namespace loom::serve {

namespace {

using nlohmann::json;

std::string dump(const json& j) {
  // Tokens decoded alone can be half a UTF-8 character: replace, never throw.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The methods a route takes; empty for a path that is not a route.
std::string allowed_methods(const std::string& path) {
  if (path == "/v1/completions") return "POST";
  if (path == "/v1/models" || path == "/health" || path == "/") return "GET, HEAD";
  return "";
}

// Why a request is refused before its body is read, if it is.
std::optional<ApiError> refuse_before_reading(const httplib::Request& req, std::size_t max_body_bytes) {
  if (req.has_header("Content-Encoding") && req.get_header_value("Content-Encoding") != "identity")
    return ApiError(415, "Content-Encoding " + req.get_header_value("Content-Encoding") +
                             " is not accepted: send the body uncompressed",
                    "invalid_request_error", "", "unsupported_content_encoding");
  if (req.has_header("Transfer-Encoding"))
    return ApiError(411, "a chunked request body is not accepted: send it with a Content-Length (at most " +
                             std::to_string(max_body_bytes) + " bytes, --max-body-bytes)",
                    "invalid_request_error", "", "length_required");
  return std::nullopt;
}

}  // namespace

// One POST /v1/completions: its rows' results and, when streaming, the events not yet sent.
// Shared by the HTTP thread that answers and the scheduler thread that samples.
struct CompletionServer::Pending {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::optional<FinishedAnswer>> answers;
  std::vector<std::int64_t> prompt_tokens;
  std::vector<AnswerText> texts;
  std::vector<std::vector<bool>> masked_before;  // per row, touched by the scheduler thread only
  std::size_t remaining = 0;
  std::string error;
  bool bad_request = false;
  std::deque<std::string> events;
  std::atomic<bool> client_gone{false};
  bool stream = false;
  bool include_usage = false;
  std::string id;
  std::int64_t created = 0;
  std::string model;

  json chunk(std::size_t row, const std::string& text, const json& finish) const {
    json c = {{"index", row}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}};
    return json{{"id", id}, {"object", "text_completion"}, {"created", created},
                {"model", model}, {"choices", json::array({c})}};
  }
  void push(const json& event) {
    events.push_back("data: " + dump(event) + "\n\n");
    changed.notify_all();
  }
};

CompletionServer::CompletionServer(ServerSetup setup) : setup_(std::move(setup)) {
  LoadedPlugin& p = *setup_.sampler;
  if (p.library->info().supports(sdk::kMinorModelsAndServing)) {
    const auto schema = p.plugin->config_schema();
    for (const auto& name : p.plugin->request_option_keys())
      for (const auto& k : schema)
        if (k.name == name) option_keys_.push_back(k);
  }
  const ServeLimits& l = setup_.limits;
  scheduler_ = std::make_unique<BatchScheduler>(
      [this](const auto& r, const auto& o, auto* obs) { return sample(r, o, obs); }, l.max_batch,
      l.max_queue, l.batch_wait_ms);

  http_ = std::make_unique<httplib::Server>();
  const int threads = std::max(2, setup_.http_threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(std::size_t(threads)); };
  http_->set_payload_max_length(l.max_body_bytes);
  // httplib's own options (SO_REUSEADDR), and the socket kept to lengthen its accept queue.
  http_->set_socket_options([this](socket_t sock) {
    httplib::default_socket_options(sock);
    listen_socket_ = int(sock);
  });
  // Before any body is read: cpp-httplib caps a body only by its Content-Length (a chunked body
  // is read whole, whatever its size) and inflates a compressed body without any cap, so both
  // are refused here. The connection is closed: the body that was not read must not be parsed
  // as a next request.
  http_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    std::optional<ApiError> refusal = refuse_before_reading(req, setup_.limits.max_body_bytes);
    if (!refusal) return httplib::Server::HandlerResponse::Unhandled;
    ++bad_requests_;
    res.set_header("Connection", "close");
    send_json(res, refusal->status(), refusal->body());
    return httplib::Server::HandlerResponse::Handled;
  });
  http_->Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completion(req, res);
  });
  http_->Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json m = {{"id", setup_.model_name}, {"object", "model"}, {"created", unix_seconds()},
              {"owned_by", "loom"}};
    send_json(res, 200, json{{"object", "list"}, {"data", json::array({m})}});
  });
  http_->Get("/health", [this](const httplib::Request&, httplib::Response& res) { handle_health(res); });
  http_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(web_page_html(), "text/html; charset=utf-8");
  });
  // httplib's own refusals (unknown route, body over the cap) in the API's error format.
  http_->set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    // A route asked with another method: httplib answers 404 (GET, HEAD) or a bare 400.
    const std::string allowed = allowed_methods(req.path);
    if ((res.status == 404 || res.status == 400) && !allowed.empty() &&
        (", " + allowed + ",").find(", " + req.method + ",") == std::string::npos) {
      res.set_header("Allow", allowed);
      send_json(res, 405,
                ApiError(405, "method " + req.method + " is not allowed on " + req.path + " (only " +
                                  allowed + ")",
                         "invalid_request_error", "", "method_not_allowed")
                    .body());
      return;
    }
    // Another method on a path that is no route: httplib's bare 400 is a 404 here too.
    if (res.status == 400 && allowed.empty() &&
        (req.method == "PUT" || req.method == "PATCH" || req.method == "DELETE" || req.method == "OPTIONS"))
      res.status = 404;
    if (res.status == 413) {
      ++bad_requests_;
      send_json(res, 400,
                ApiError(400, "the request body is larger than " +
                                  std::to_string(setup_.limits.max_body_bytes) +
                                  " bytes (--max-body-bytes)",
                         "invalid_request_error", "", "body_too_large")
                    .body());
    } else if (res.status == 404) {
      send_json(res, 404, ApiError(404, "no such route", "invalid_request_error", "", "not_found").body());
    } else if (res.status == 405) {
      send_json(res, 405, ApiError(405, "method not allowed", "invalid_request_error").body());
    }
  });
}

CompletionServer::~CompletionServer() {
  if (http_) http_->stop();
  if (scheduler_) scheduler_->stop();
}

int CompletionServer::bind(const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = http_->bind_to_any_port(host);
    if (bound <= 0) throw UserError("--host " + host + ": cannot bind a port");
  } else if (!http_->bind_to_port(host, port)) {
    throw UserError("--host " + host + " --port " + std::to_string(port) +
                    ": cannot bind (in use, or not an address of this machine)");
  }
  // The library listens with a backlog of 5 (compiled into Debian's libcpp-httplib): a burst
  // of clients on a busy machine overflowed it, and the kernel's dropped handshakes reached
  // clients as connections closed without an answer. listen() again sets a longer queue.
  if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
  return bound;
}

void CompletionServer::serve() { http_->listen_after_bind(); }

void CompletionServer::drain() {
  draining_ = true;
  {
    std::unique_lock<std::mutex> lock(in_flight_mutex_);
    in_flight_done_.wait(lock, [&] { return in_flight_ == 0; });
  }
  http_->stop();
  scheduler_->stop();
}

std::vector<sdk::GeneratedSequence> CompletionServer::sample(
    const std::vector<sdk::GenerateRequest>& requests,
    const std::vector<sdk::ConfigSection>& options, sdk::GenerateObserver* observer) {
  // libtorch's thread count is per thread: the sampling thread takes the config's, as
  // `trainer generate` does on its main thread.
  thread_local bool threads_set = false;
  if (!threads_set && setup_.torch_threads > 0) at::set_num_threads(setup_.torch_threads);
  threads_set = true;
  LoadedPlugin& p = *setup_.sampler;
  sdk::ModelHandle& model = *setup_.model;
  sdk::TokenizerHandle& tok = *setup_.tokenizer;
  if (p.library->info().supports(sdk::kMinorModelsAndServing))
    return p.plugin->generate_batch_observed(model, tok, requests, options, observer);
  // Older samplers: no per-request settings (refused at parsing), no steps to observe.
  if (p.library->info().supports(sdk::kMinorCachedSampling))
    return p.plugin->generate_batch(model, tok, requests, false);
  std::vector<sdk::GeneratedSequence> out;
  for (const auto& r : requests) {
    sdk::GeneratedSequence g;
    g.result = p.plugin->generate(model, tok, r, false);
    g.new_tokens = r.complete_tokens;
    out.push_back(std::move(g));
  }
  return out;
}

void CompletionServer::handle_health(httplib::Response& res) {
  const SchedulerCounters c = scheduler_->counters();
  std::int64_t in_flight = 0;
  {
    std::lock_guard<std::mutex> lock(in_flight_mutex_);
    in_flight = in_flight_;
  }
  send_json(res, 200,
            json{{"status", draining_ ? "draining" : "ok"},
                 {"model", setup_.model_name},
                 {"requests", requests_.load()},
                 {"requests_in_flight", in_flight},
                 {"requests_rejected", rejected_.load()},
                 {"bad_requests", bad_requests_.load()},
                 {"rows_submitted", c.rows_submitted},
                 {"batches", c.batches},
                 {"rows_batched", c.rows_batched},
                 {"largest_batch", c.largest_batch},
                 {"queue_depth", c.queue_depth},
                 {"rows_running", c.running},
                 {"rows_cancelled", c.rows_cancelled},
                 {"rows_failed", c.rows_failed},
                 {"max_batch", setup_.limits.max_batch},
                 {"max_queue", setup_.limits.max_queue}});
}

void CompletionServer::handle_completion(const httplib::Request& req, httplib::Response& res) {
  ++requests_;
  // Counts this request as in flight until its last byte is sent (for a stream: until the
  // content provider that holds it is released).
  struct InFlight {
    CompletionServer* server;
    explicit InFlight(CompletionServer* s) : server(s) {
      std::lock_guard<std::mutex> lock(s->in_flight_mutex_);
      ++s->in_flight_;
    }
    ~InFlight() {
      std::lock_guard<std::mutex> lock(server->in_flight_mutex_);
      if (--server->in_flight_ == 0) server->in_flight_done_.notify_all();
    }
  };
  auto in_flight = std::make_shared<InFlight>(this);
  auto pending = std::make_shared<Pending>();
  std::vector<RowJob> rows;
  CompletionRequest cr;
  try {
    if (draining_)
      throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    // A web page the user visits may POST text/plain to 127.0.0.1 without a CORS preflight,
    // never application/json: only a request declared JSON can be from a client that meant it.
    std::string type = req.get_header_value("Content-Type");
    type = type.substr(0, type.find(';'));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    for (auto& c : type) c = char(std::tolower(static_cast<unsigned char>(c)));
    if (type != "application/json")
      throw ApiError(415, "Content-Type must be application/json" +
                              (type.empty() ? std::string() : " (got " + type + ")"),
                     "invalid_request_error", "", "unsupported_media_type");
    const ServeLimits& l = setup_.limits;
    cr = parse_completion_request(req.body, l, option_keys_);

    // Sampler settings: typed and range-checked against the plugin's schema, then the
    // plugin's own rules between keys (both before anything is queued).
    sdk::ConfigSection options;
    if (!cr.options.empty()) {
      std::vector<sdk::ConfigKey> given;
      for (const auto& k : option_keys_)
        if (cr.options.count(k.name)) given.push_back(k);
      try {
        options = validate_plugin_section(setup_.sampler->name, given, cr.options, "request");
        setup_.sampler->plugin->check_request_options(options);
      } catch (const std::exception& e) {
        // The key the message names first is the one to blame.
        const std::string message = e.what();
        std::string param;
        std::size_t first = std::string::npos;
        for (const auto& [k, v] : cr.options) {
          const auto at = message.find(k);
          if (at < first) first = at, param = k;
        }
        throw ApiError(400, e.what(), "invalid_request_error", param, "invalid_value");
      }
    }
    // A request the server could never hold is the request's fault (400), not a busy server's.
    if (std::int64_t(cr.prompts.size()) > l.max_batch + l.max_queue)
      throw ApiError(400, "prompt has " + std::to_string(cr.prompts.size()) +
                              " prompts; this server holds at most " +
                              std::to_string(l.max_batch + l.max_queue) +
                              " at once (--max-batch + --max-queue)",
                     "invalid_request_error", "prompt", "too_many_prompts");
    const std::int64_t context = setup_.model->max_position_embeddings();
    const std::uint64_t seed = cr.seed_given ? cr.seed : std::random_device{}();
    pending->stream = cr.stream;
    pending->include_usage = cr.include_usage;
    pending->id = "cmpl-" + std::to_string(unix_seconds()) + "-" + std::to_string(next_id_++);
    pending->created = unix_seconds();
    pending->model = setup_.model_name;
    pending->remaining = cr.prompts.size();
    pending->answers.resize(cr.prompts.size());
    pending->masked_before.resize(cr.prompts.size());
    for (std::size_t i = 0; i < cr.prompts.size(); ++i) {
      RowJob job;
      sdk::GenerateRequest& g = job.request;
      g.prompt_ids = setup_.tokenizer->encode_with_special(cr.prompts[i]);
      const auto n = std::int64_t(g.prompt_ids.size());
      const std::string which = cr.prompt_was_list ? "prompt[" + std::to_string(i) + "]" : "prompt";
      if (n > l.max_prompt_tokens)
        throw ApiError(400, which + " has " + std::to_string(n) + " tokens; at most " +
                                std::to_string(l.max_prompt_tokens) + " (--max-prompt-tokens)",
                       "invalid_request_error", "prompt", "prompt_too_long");
      if (n + cr.max_tokens > context)
        throw ApiError(400, which + " (" + std::to_string(n) + " tokens) and max_tokens (" +
                                std::to_string(cr.max_tokens) +
                                ") exceed the model's context of " + std::to_string(context) +
                                " tokens",
                       "invalid_request_error", "max_tokens", "context_length_exceeded");
      g.complete_tokens = cr.max_tokens;
      g.mask_ratio = cr.mask;
      g.steps = cr.steps;
      g.temperature = cr.temperature;
      g.block_length = cr.block_length;
      g.seed = seed;
      job.options = options;
      pending->prompt_tokens.push_back(n);
      // Completion: every answer position starts masked, so the first step's reveals show too.
      if (cr.mask == 0) pending->masked_before[i].assign(std::size_t(cr.max_tokens), true);
      pending->texts.emplace_back(*setup_.tokenizer, std::size_t(n), cr.mask > 0);
      std::weak_ptr<Pending> weak = pending;
      const std::int64_t max_tokens = cr.max_tokens;
      const std::vector<std::string> stop = cr.stop;
      if (cr.stream)
        job.on_step = [weak, i](std::int64_t step, const std::vector<std::int64_t>& tokens,
                                std::int64_t mask_id) {
          auto p = weak.lock();
          if (!p || p->client_gone) return false;
          StepView v = p->texts[i].step(tokens, mask_id, p->masked_before[i]);
          p->masked_before[i] = v.masked;
          json event = p->chunk(i, v.text, nullptr);
          json pieces = json::array();
          for (const auto& piece : v.pieces) pieces.push_back(piece ? json(*piece) : json(nullptr));
          event["loom"] = {{"step", step}, {"pieces", pieces}, {"revealed", v.revealed}};
          std::lock_guard<std::mutex> lock(p->mutex);
          p->push(event);
          return true;
        };
      job.on_done = [weak, i, max_tokens, stop](const sdk::GeneratedSequence* g, const std::string& error,
                                                bool bad) {
        auto p = weak.lock();
        if (!p) return;
        std::optional<FinishedAnswer> answer;
        std::string failure = error;
        try {
          if (g) answer = p->texts[i].finish(*g, max_tokens, stop);
        } catch (const std::exception& e) {
          failure = e.what();  // the row must still count as done, or its client waits forever
        }
        std::lock_guard<std::mutex> lock(p->mutex);
        if (answer) {
          p->answers[i] = *answer;
          if (p->stream) {
            json event = p->chunk(i, answer->text, answer->finish_reason);
            event["loom"] = {{"final", true}, {"completion_tokens", answer->completion_tokens}};
            p->push(event);
          }
        } else if (p->error.empty()) {
          p->error = failure;
          p->bad_request = bad && g == nullptr;
        }
        --p->remaining;
        p->changed.notify_all();
      };
      rows.push_back(std::move(job));
    }
    if (!scheduler_->submit(std::move(rows))) {
      ++rejected_;
      throw ApiError(503, "the server is busy: its queue is full; retry later", "server_error", "",
                     "queue_full");
    }
  } catch (const ApiError& e) {
    if (e.status() == 400 || e.status() == 415) ++bad_requests_;
    if (e.status() == 503) res.set_header("Retry-After", "1");
    send_json(res, e.status(), e.body());
    return;
  } catch (const std::exception& e) {
    send_json(res, 500, ApiError(500, e.what(), "server_error").body());
    return;
  }

  if (!cr.stream) {
    std::unique_lock<std::mutex> lock(pending->mutex);
    pending->changed.wait(lock, [&] { return pending->remaining == 0; });
    if (!pending->error.empty()) {
      const int status = pending->bad_request ? 400 : 500;
      if (status == 400) ++bad_requests_;
      send_json(res, status,
                ApiError(status, pending->error,
                         status == 400 ? "invalid_request_error" : "server_error")
                    .body());
      return;
    }
    json choices = json::array();
    std::int64_t prompt_tokens = 0, completion_tokens = 0;
    for (std::size_t i = 0; i < pending->answers.size(); ++i) {
      const FinishedAnswer& a = *pending->answers[i];
      choices.push_back({{"index", i}, {"text", a.text}, {"logprobs", nullptr},
                         {"finish_reason", a.finish_reason}});
      prompt_tokens += pending->prompt_tokens[i];
      completion_tokens += a.completion_tokens;
    }
    send_json(res, 200,
              json{{"id", pending->id}, {"object", "text_completion"}, {"created", pending->created},
                   {"model", pending->model}, {"choices", choices},
                   {"usage", {{"prompt_tokens", prompt_tokens},
                              {"completion_tokens", completion_tokens},
                              {"total_tokens", prompt_tokens + completion_tokens}}}});
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [pending, in_flight](std::size_t, httplib::DataSink& sink) {
        std::unique_lock<std::mutex> lock(pending->mutex);
        for (;;) {
          pending->changed.wait(lock, [&] { return !pending->events.empty() || pending->remaining == 0; });
          while (!pending->events.empty()) {
            std::string e = std::move(pending->events.front());
            pending->events.pop_front();
            lock.unlock();
            const bool ok = sink.write(e.data(), e.size());
            lock.lock();
            if (!ok) {
              // The client left: its rows stop at their next step.
              pending->client_gone = true;
              return false;
            }
          }
          if (pending->remaining == 0 && pending->events.empty()) break;
        }
        std::string tail;
        if (!pending->error.empty())
          tail += "data: " +
                  dump(ApiError(pending->bad_request ? 400 : 500, pending->error,
                                pending->bad_request ? "invalid_request_error" : "server_error")
                           .body()) +
                  "\n\n";
        else if (pending->include_usage) {
          // As OpenAI's stream_options.include_usage: one more chunk, no choices, the usage.
          std::int64_t prompt_tokens = 0, completion_tokens = 0;
          for (std::size_t i = 0; i < pending->answers.size(); ++i) {
            prompt_tokens += pending->prompt_tokens[i];
            if (pending->answers[i]) completion_tokens += pending->answers[i]->completion_tokens;
          }
          json last = {{"id", pending->id}, {"object", "text_completion"}, {"created", pending->created},
                       {"model", pending->model}, {"choices", json::array()},
                       {"usage", {{"prompt_tokens", prompt_tokens},
                                  {"completion_tokens", completion_tokens},
                                  {"total_tokens", prompt_tokens + completion_tokens}}}};
          tail += "data: " + dump(last) + "\n\n";
        }
        tail += "data: [DONE]\n\n";
        lock.unlock();
        sink.write(tail.data(), tail.size());
        sink.done();
        return true;
      });
}

}  // namespace loom::serve
