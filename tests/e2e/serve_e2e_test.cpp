// End-to-end: `trainer serve` as a real process on a free local port, driven over HTTP with
// cpp-httplib's client. Answers are checked against `trainer generate --input` (another
// process, the batch CLI path) and against the same server's answers to one request at a
// time; batching, the 503 path, bad requests, a client leaving mid-stream, SIGTERM and the
// web page in a headless browser.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <regex>
#include <sstream>
#include <thread>

#include "e2e/tiny_run.hpp"
#include "support/files.hpp"
#include "support/process.hpp"

extern char** environ;

namespace loom::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::string kPlugin = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";

// One small diffusion checkpoint per test process (CTest runs tests in parallel processes).
const fs::path& checkpoint() {
  static const fs::path ckpt = [] {
    auto d = fresh_dir("serve-" + std::to_string(getpid()));
    write_file(d / "cfg.toml", tiny_config(d / "out", 400, "save_steps = 0\n") +
                                   "\n[diffusion]\ngenerate_samples = false\n");
    auto r = run_trainer({"--config", (d / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d / "out" / "final";
  }();
  return ckpt;
}

// A `trainer serve` child process: started with --port 0, its port read from its first line.
class ServerProcess {
 public:
  // No `ckpt`: the shared diffusion checkpoint; another one names its plugins in its own
  // loom_config.toml.
  explicit ServerProcess(std::vector<std::string> extra, fs::path ckpt = {}) {
    const bool diffusion = ckpt.empty();
    if (diffusion) ckpt = checkpoint();
    log_ = fs::temp_directory_path() /
           ("loom-serve-" + std::to_string(getpid()) + "-" + std::to_string(counter()++) + ".log");
    std::vector<std::string> args = {LOOM_TRAINER_BIN, "serve", "--checkpoint", ckpt.string(), "--port", "0"};
    if (diffusion) args.insert(args.end(), {"--plugin", kPlugin});
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    setenv("OMP_NUM_THREADS", "1", 1);
    const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) pid_ = -1;
    // Up to two minutes for the checkpoint to load on a busy machine.
    const std::regex listening("on http://127\\.0\\.0\\.1:([0-9]+)");
    for (auto end = Clock::now() + std::chrono::seconds(120); pid_ > 0 && Clock::now() < end;) {
      std::smatch m;
      const std::string text = log();
      if (std::regex_search(text, m, listening)) {
        port_ = std::stoi(m[1]);
        break;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }
  std::string log() const { return read_file(log_); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(300, 0);
    c.set_write_timeout(60, 0);
    return c;
  }
  void signal(int sig) const { kill(pid_, sig); }
  // Waits for the process to end; its exit status (-1: killed by a signal, or no process).
  int wait() {
    if (pid_ <= 0) return exit_code_;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return exit_code_;
  }

 private:
  static std::atomic<int>& counter() {
    static std::atomic<int> c{0};
    return c;
  }
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
  fs::path log_;
};

json post(const ServerProcess& s, const json& body, int* status = nullptr) {
  auto c = s.client();
  auto r = c.Post("/v1/completions", body.dump(), "application/json");
  if (!r) {
    ADD_FAILURE() << "no response: " << httplib::to_string(r.error());
    return {};
  }
  if (status) *status = r->status;
  return json::parse(r->body, nullptr, false);
}

// A streamed POST whose body goes to `receive` as it arrives (false: hang up).
httplib::Result post_streaming(const ServerProcess& s, const json& body,
                               std::function<bool(const char*, std::size_t)> receive) {
  auto c = s.client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.set_header("Content-Type", "application/json");
  req.body = body.dump();
  req.content_receiver = [receive](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
    return receive(data, n);
  };
  return c.send(req);
}

std::string completion(const ServerProcess& s, const json& body) {
  int status = 0;
  json j = post(s, body, &status);
  EXPECT_EQ(status, 200) << j.dump();
  if (status != 200) return "<error>";
  return j["choices"][0]["text"].get<std::string>();
}

// What `trainer generate --input` answers for each prompt, with the same seed and settings.
std::vector<std::string> generate_cli(const std::vector<std::string>& prompts, int max_new_tokens,
                                      int steps, std::uint64_t seed, const std::vector<std::string>& flags = {}) {
  ScratchDir d;
  std::string lines;
  for (const auto& p : prompts)
    lines += json{{"prompt", p}, {"max_new_tokens", max_new_tokens}, {"seed", seed}}.dump() + "\n";
  write_file(d / "in.jsonl", lines);
  std::vector<std::string> a = {"generate", "--checkpoint", checkpoint().string(), "--plugin", kPlugin,
                                "--input", (d / "in.jsonl").string(), "--output", (d / "out.jsonl").string(),
                                "--steps", std::to_string(steps)};
  a.insert(a.end(), flags.begin(), flags.end());
  auto r = run_trainer(a);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> out;
  std::istringstream in(read_file(d / "out.jsonl"));
  for (std::string l; std::getline(in, l);) out.push_back(json::parse(l)["completion"].get<std::string>());
  return out;
}

// The server most tests share (small body cap for the oversize test).
ServerProcess& shared_server() {
  static ServerProcess s({"--max-batch", "16", "--max-body-bytes", "4096", "--max-new-tokens", "200",
                          "--batch-wait-ms", "20"});
  return s;
}

// Server-sent events of a streamed completion: the JSON of each `data:` line, and whether the
// stream ended with [DONE].
struct Stream {
  std::vector<json> events;
  bool done = false;
};
Stream parse_events(const std::string& body) {
  Stream s;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      s.done = true;
      continue;
    }
    s.events.push_back(json::parse(data, nullptr, false));
  }
  return s;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

TEST(ServeE2E, CompletionsForStringAndListPromptsEqualTrainerGenerate) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const auto expected = generate_cli({"Once upon", "The cat sat"}, 12, 12, 5, {"--temperature", "0.8"});
  ASSERT_EQ(expected.size(), 2u);

  int status = 0;
  json one = post(s, {{"model", "x"}, {"prompt", "Once upon"}, {"max_tokens", 12}, {"steps", 12}, {"seed", 5},
                      {"temperature", 0.8}}, &status);
  ASSERT_EQ(status, 200) << one.dump();
  EXPECT_EQ(one["object"], "text_completion");
  EXPECT_EQ(one["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  ASSERT_EQ(one["choices"].size(), 1u);
  EXPECT_EQ(one["choices"][0]["text"], expected[0]);
  EXPECT_EQ(one["choices"][0]["index"], 0);
  EXPECT_EQ(one["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(one["usage"]["completion_tokens"], 12);

  json two = post(s, {{"prompt", {"Once upon", "The cat sat"}}, {"max_tokens", 12}, {"steps", 12}, {"seed", 5},
                      {"temperature", 0.8}}, &status);
  ASSERT_EQ(status, 200) << two.dump();
  ASSERT_EQ(two["choices"].size(), 2u);
  EXPECT_EQ(two["choices"][0]["text"], expected[0]);
  EXPECT_EQ(two["choices"][1]["text"], expected[1]);
  EXPECT_EQ(two["choices"][1]["index"], 1);
  // Prompt tokens as `trainer tokenize --add-special` counts them (the byte tokenizer here).
  std::int64_t prompt_tokens = 0;
  for (const char* p : {"Once upon", "The cat sat"}) {
    auto t = run_trainer({"tokenize", "--tokenizer", (checkpoint() / "tokenizer.json").string(), "--text", p,
                          "--add-special"});
    ASSERT_EQ(t.exit_code, 0) << t.output;
    prompt_tokens += std::int64_t(json::parse(t.output.substr(0, t.output.find('\n'))).size());
  }
  EXPECT_EQ(two["usage"]["prompt_tokens"], prompt_tokens);

  // stop: the answer ends before the first occurrence of a stop string.
  const std::string text = expected[0];
  // An ASCII character of the answer after its first two bytes (never half a UTF-8 character).
  std::size_t at = 2;
  while (at < text.size() && static_cast<unsigned char>(text[at]) >= 0x80) ++at;
  ASSERT_LT(at, text.size()) << text;
  const std::string stop = text.substr(at, 1);
  json cut = post(s, {{"prompt", "Once upon"}, {"max_tokens", 12}, {"steps", 12}, {"seed", 5}, {"temperature", 0.8},
                      {"stop", {"\u0001never", stop}}}, &status);
  ASSERT_EQ(status, 200) << cut.dump();
  EXPECT_EQ(cut["choices"][0]["text"], text.substr(0, text.find(stop)));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(two["usage"]["completion_tokens"], 24);
  EXPECT_EQ(two["usage"]["total_tokens"], prompt_tokens + 24);
}

TEST(ServeE2E, SamplerSettingsPerRequestEqualTheSameFlagsOfTrainerGenerate) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const auto fast = generate_cli({"Once upon"}, 16, 16, 9,
                                 {"--threshold", "0.3", "--cache", "dual", "--block-length", "8", "--temperature", "0.8"});
  EXPECT_EQ(completion(s, {{"prompt", "Once upon"}, {"max_tokens", 16}, {"steps", 16}, {"seed", 9}, {"threshold", 0.3},
                           {"cache", "dual"}, {"block_length", 8}, {"temperature", 0.8}}),
            fast.at(0));
  const auto margin = generate_cli({"The cat"}, 10, 5, 2, {"--remasking", "margin", "--top-k", "3", "--temperature", "1.0"});
  EXPECT_EQ(completion(s, {{"prompt", "The cat"}, {"max_tokens", 10}, {"steps", 5}, {"seed", 2}, {"remasking", "margin"},
                           {"top_k", 3}, {"temperature", 1.0}}),
            margin.at(0));
}

TEST(ServeE2E, ModelsAndHealth) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = s.client();
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  json models = json::parse(m->body);
  EXPECT_EQ(models["object"], "list");
  ASSERT_EQ(models["data"].size(), 1u);
  EXPECT_EQ(models["data"][0]["id"], checkpoint().string());
  EXPECT_EQ(models["data"][0]["object"], "model");
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  ASSERT_EQ(h->status, 200);
  json health = json::parse(h->body);
  EXPECT_EQ(health["status"], "ok");
  for (const char* k : {"requests", "batches", "rows_batched", "queue_depth", "largest_batch", "rows_cancelled"})
    EXPECT_TRUE(health.contains(k)) << k;
  auto missing = c.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_TRUE(json::parse(missing->body).contains("error"));
}

TEST(ServeE2E, StreamShowsEachStepAndEndsWithTheAnswer) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const json body = {{"prompt", "Once upon"}, {"max_tokens", 12}, {"steps", 6}, {"seed", 7}, {"temperature", 0.5}};
  const std::string answer = completion(s, body);
  json streamed = body;
  streamed["stream"] = true;
  auto c = s.client();
  auto r = c.Post("/v1/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/event-stream"), std::string::npos);
  Stream st = parse_events(r->body);
  EXPECT_TRUE(st.done);
  // 12 tokens over 6 steps: 6 step events, then the finished text.
  ASSERT_EQ(st.events.size(), 7u) << r->body;
  std::size_t masked_before = 13;
  for (std::size_t i = 0; i + 1 < st.events.size(); ++i) {
    const json& e = st.events[i];
    ASSERT_FALSE(e.is_discarded());
    EXPECT_EQ(e["object"], "text_completion");
    EXPECT_TRUE(e["choices"][0]["finish_reason"].is_null());
    EXPECT_EQ(e["loom"]["step"], int(i + 1));
    const std::string text = e["choices"][0]["text"];
    const std::size_t masked = count_of(text, "\u2591");
    EXPECT_EQ(masked, 12u - 2 * (i + 1)) << text;  // two revealed per step
    EXPECT_LT(masked, masked_before);
    masked_before = masked;
    EXPECT_EQ(e["loom"]["revealed"].size(), 2u);
    EXPECT_EQ(e["loom"]["pieces"].size(), 12u);
  }
  const json& last = st.events.back();
  EXPECT_EQ(last["choices"][0]["text"], answer);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(last["loom"]["final"], true);
}

// Mask and refill (as `trainer generate --mask`): LLaDA's count, round(0.3 * 22) = 7 of the
// prompt's 22 byte tokens masked (BOS is never masked), one revealed per step over 7 steps;
// the other positions show the prompt's own characters, and the last event is the answer.
TEST(ServeE2E, MaskAndRefillStreamsTheRefilledPrompt) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string prompt = "Once upon a time there";
  ASSERT_EQ(prompt.size(), 22u);
  const json body = {{"prompt", prompt}, {"max_tokens", 0}, {"mask", 0.3}, {"steps", 7}, {"seed", 4}, {"temperature", 0.6}};
  const std::string answer = completion(s, body);
  json streamed = body;
  streamed["stream"] = true;
  auto r = s.client().Post("/v1/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  Stream st = parse_events(r->body);
  ASSERT_EQ(st.events.size(), 8u) << r->body;
  for (std::size_t i = 0; i < 7; ++i) {
    const json& pieces = st.events[i]["loom"]["pieces"];
    ASSERT_EQ(pieces.size(), 23u);  // BOS and the prompt's 22 bytes
    std::size_t masked = 0;
    for (std::size_t k = 1; k < 23; ++k) masked += pieces[k].is_null() ? 1 : 0;
    EXPECT_EQ(masked, 6 - i) << i;
    EXPECT_EQ(count_of(st.events[i]["choices"][0]["text"].get<std::string>(), "\u2591"), 6 - i);
  }
  // After the first step, 15 positions were never masked and 1 was refilled: at least the 15
  // show the prompt's own characters.
  const json& first = st.events[0]["loom"]["pieces"];
  std::size_t kept = 0;
  for (std::size_t k = 1; k < 23; ++k)
    if (!first[k].is_null() && first[k] == std::string(1, prompt[k - 1])) ++kept;
  EXPECT_GE(kept, 15u);
  EXPECT_EQ(st.events.back()["choices"][0]["text"], answer);
  // A refill is cut by nothing (no new tokens were asked for).
  EXPECT_EQ(st.events.back()["choices"][0]["finish_reason"], "stop");
  // Without max_tokens, mask only refills: the same answer, nothing appended.
  json no_max = body;
  no_max.erase("max_tokens");
  EXPECT_EQ(completion(s, no_max), answer);
}

TEST(ServeE2E, SixteenConcurrentClientsEachGetTheirSoloAnswer) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  std::vector<json> bodies;
  for (int i = 0; i < 16; ++i) {
    json b = {{"prompt", std::string("Story ") + char('a' + i) + std::string(std::size_t(i % 5), 'x')},
              {"max_tokens", 6 + i % 7}, {"steps", 4 + i % 3}, {"seed", 100 + i}, {"temperature", 0.9}};
    if (i % 4 == 1) b["threshold"] = 0.4;  // settings differ between rows of one batch
    if (i % 4 == 2) b["cache"] = "prefix";
    bodies.push_back(b);
  }
  std::vector<std::string> solo;
  for (const auto& b : bodies) solo.push_back(completion(s, b));  // one at a time
  auto health = [&] { return json::parse(s.client().Get("/health")->body); };
  const json before = health();
  std::vector<std::future<std::string>> answers;
  for (const auto& b : bodies) answers.push_back(std::async(std::launch::async, [&s, b] { return completion(s, b); }));
  for (std::size_t i = 0; i < answers.size(); ++i) EXPECT_EQ(answers[i].get(), solo[i]) << "client " << i;
  const json after = health();
  const auto batches = after["batches"].get<int>() - before["batches"].get<int>();
  const auto rows = after["rows_batched"].get<int>() - before["rows_batched"].get<int>();
  EXPECT_EQ(rows, 16);
  // Concurrent clients shared batches: fewer sampler calls than rows.
  EXPECT_LT(batches, 16) << after.dump();
  EXPECT_GE(after["largest_batch"].get<int>(), 2);
}

TEST(ServeE2E, BadRequestsGet400WithAnErrorObjectAndTheServerKeepsServing) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  auto c = s.client();
  struct Case {
    std::string body, param;
  };
  const std::vector<Case> cases = {
      {"{not json", ""},
      {"[1, 2]", ""},
      {R"({"prompt": 5})", "prompt"},
      {R"({"prompt": ["a", 3]})", "prompt"},
      {R"({"prompt": "a", "max_tokens": "8"})", "max_tokens"},
      {R"({"prompt": "a", "max_tokens": -3})", "max_tokens"},
      {R"({"prompt": "a", "max_tokens": 100000})", "max_tokens"},
      {R"({"prompt": "a", "stream": "yes"})", "stream"},
      {R"({"prompt": "a", "temperature": "hot"})", "temperature"},
      {R"({"prompt": "a", "seed": -1})", "seed"},
      {R"({"prompt": "a", "threshold": 1.5})", "threshold"},
      {R"({"prompt": "a", "threshold": 0.5, "factor": 1.0})", "threshold"},
      {R"({"prompt": "a", "remasking": "sideways"})", "remasking"},
      {R"({"prompt": "a", "noise_schedule": "cosine"})", "noise_schedule"},
      {R"({"prompt": "a", "max_tokens": 100, "steps": 100000})", "steps"},
      {R"({"max_tokens": 4})", "prompt"},
      {"{\"prompt\": \"" + std::string(5000, 'a') + "\"}", ""},  // over --max-body-bytes 4096
      {"{\"prompt\": \"" + std::string(3000, 'a') + "\"}", "prompt"},  // over --max-prompt-tokens 1024
      {"{\"prompt\": \"" + std::string(100, 'a') + "\", \"max_tokens\": 100}", "max_tokens"},  // over the context
  };
  for (const auto& k : cases) {
    auto r = c.Post("/v1/completions", k.body, "application/json");
    ASSERT_TRUE(r) << k.body.substr(0, 80);
    EXPECT_EQ(r->status, 400) << k.body.substr(0, 80) << " -> " << r->body;
    json e = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(e.is_discarded()) << r->body;
    ASSERT_TRUE(e.contains("error")) << r->body;
    for (const char* f : {"message", "type", "param", "code"}) EXPECT_TRUE(e["error"].contains(f)) << f << r->body;
    EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
    if (!k.param.empty()) EXPECT_EQ(e["error"]["param"], k.param) << r->body;
  }
  EXPECT_NE(completion(s, {{"prompt", "ok"}, {"max_tokens", 3}}), "<error>");
}

json error_of(const httplib::Result& r) {
  if (!r) return {};
  json e = json::parse(r->body, nullptr, false);
  return !e.is_discarded() && e.contains("error") ? e["error"] : json();
}

// Sends `head` (a request line and headers, no body) on a fresh connection and returns what
// the server answers until it closes the connection or 60 s pass.
std::string answer_to_head(int port, const std::string& head) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(std::uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "<no connection>";
  }
  timeval timeout{60, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  (void)send(fd, head.data(), head.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, std::size_t(n));
  close(fd);
  return out;
}

// cpp-httplib caps a body by its Content-Length only: a chunked body (read whole whatever its
// size) and a compressed one (inflated without a cap) are refused from their headers alone,
// before any byte of the body is read (here none is sent), and the connection is closed.
TEST(ServeE2E, ChunkedAndCompressedBodiesAreRefusedBeforeTheBodyIsRead) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const std::string post = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  const std::string chunked = answer_to_head(s.port(), post + "Transfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(chunked.rfind("HTTP/1.1 411", 0), 0u) << chunked;
  EXPECT_NE(chunked.find("\"code\":\"length_required\""), std::string::npos) << chunked;
  for (const std::string encoding : {"gzip", "br", "deflate"}) {
    const std::string r = answer_to_head(
        s.port(), post + "Content-Encoding: " + encoding + "\r\nContent-Length: 400\r\n\r\n");
    EXPECT_EQ(r.rfind("HTTP/1.1 415", 0), 0u) << encoding << ": " << r;
    EXPECT_NE(r.find("\"code\":\"unsupported_content_encoding\""), std::string::npos) << r;
  }
}

// A POST not declared JSON is refused (a web page may send text/plain across origins without a
// CORS preflight); a route asked with another method gets 405 naming the right one.
TEST(ServeE2E, NonJsonBodiesGet415AndWrongMethods405WithAnErrorObject) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  for (const std::string type : {"text/plain", "application/x-www-form-urlencoded", ""}) {
    auto c = s.client();
    auto r = c.Post("/v1/completions", json{{"prompt", "a"}, {"max_tokens", 2}}.dump(), type);
    ASSERT_TRUE(r) << type;
    EXPECT_EQ(r->status, 415) << type << " " << r->body;
    EXPECT_EQ(error_of(r)["code"], "unsupported_media_type") << r->body;
  }
  auto c = s.client();
  auto put = c.Put("/v1/models", "{}", "application/json");
  ASSERT_TRUE(put);
  EXPECT_EQ(put->status, 405) << put->body;
  EXPECT_EQ(put->get_header_value("Allow"), "GET, HEAD");
  EXPECT_EQ(error_of(put)["code"], "method_not_allowed") << put->body;
  auto get = c.Get("/v1/completions");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 405) << get->body;
  EXPECT_EQ(get->get_header_value("Allow"), "POST");
  auto missing = c.Delete("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_EQ(error_of(missing)["code"], "not_found") << missing->body;
  // JSON with a charset is JSON; the server still serves.
  auto ok = c.Post("/v1/completions", json{{"prompt", "a"}, {"max_tokens", 2}}.dump(),
                   "application/json; charset=utf-8");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

// stream_options.include_usage: one more chunk before [DONE], no choices, the usage a
// non-streamed answer to the same request reports.
TEST(ServeE2E, IncludeUsageEndsTheStreamWithTheUsageChunk) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const json body = {{"prompt", {"Once", "A cat"}}, {"max_tokens", 5}, {"steps", 5}, {"seed", 3}};
  int status = 0;
  const json plain = post(s, body, &status);
  ASSERT_EQ(status, 200) << plain.dump();
  json streamed = body;
  streamed["stream"] = true;
  streamed["stream_options"] = {{"include_usage", true}};
  auto r = s.client().Post("/v1/completions", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  Stream st = parse_events(r->body);
  ASSERT_TRUE(st.done);
  ASSERT_FALSE(st.events.empty());
  const json& last = st.events.back();
  EXPECT_TRUE(last["choices"].empty()) << last.dump();
  EXPECT_EQ(last["usage"], plain["usage"]) << last.dump();
  for (std::size_t i = 0; i + 1 < st.events.size(); ++i) EXPECT_FALSE(st.events[i].contains("usage"));
}

TEST(ServeE2E, AClientThatLeavesMidStreamFreesItsRow) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  const auto cancelled = [&] { return json::parse(s.client().Get("/health")->body)["rows_cancelled"].get<int>(); };
  const int before = cancelled();
  int chunks = 0;
  // 100 tokens over 100 steps; hang up after the first event.
  post_streaming(s, {{"prompt", "Once"}, {"max_tokens", 100}, {"steps", 100}, {"stream", true}},
                 [&](const char*, std::size_t) { return ++chunks < 1; });
  EXPECT_GE(chunks, 1);
  // The server notices at its next write, stops the row and counts it.
  for (auto end = Clock::now() + std::chrono::seconds(120); cancelled() == before && Clock::now() < end;)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(cancelled(), before + 1);
  EXPECT_NE(completion(s, {{"prompt", "still here"}, {"max_tokens", 3}}), "<error>");
}

TEST(ServeE2E, AFullQueueAnswers503WithRetryAfter) {
  ServerProcess s({"--max-batch", "1", "--max-queue", "0"});
  ASSERT_GT(s.port(), 0) << s.log();
  std::promise<void> first_event;
  std::atomic<bool> signalled{false};
  std::string streamed;
  std::thread holder([&] {
    post_streaming(s, {{"prompt", "Once"}, {"max_tokens", 110}, {"steps", 110}, {"stream", true}},
                   [&](const char* data, std::size_t n) {
                     streamed.append(data, n);
                     if (!signalled.exchange(true)) first_event.set_value();
                     return true;
                   });
    if (!signalled.exchange(true)) first_event.set_value();
  });
  first_event.get_future().wait();  // the only slot is taken now
  auto c = s.client();
  auto r = c.Post("/v1/completions", json{{"prompt", "a"}, {"max_tokens", 2}}.dump(), "application/json");
  holder.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_EQ(r->get_header_value_count("Retry-After"), 1u);
  json e = json::parse(r->body, nullptr, false);
  ASSERT_TRUE(!e.is_discarded() && e.contains("error")) << r->body;
  EXPECT_EQ(e["error"]["code"], "queue_full");
  EXPECT_TRUE(parse_events(streamed).done);
  // More prompts than the server can ever hold: the request's fault, 400.
  int too_many = 0;
  post(s, {{"prompt", {"a", "b"}}, {"max_tokens", 2}}, &too_many);
  EXPECT_EQ(too_many, 400);
  // With the slot free again the same request is served.
  EXPECT_NE(completion(s, {{"prompt", "a"}, {"max_tokens", 2}}), "<error>");
  EXPECT_GE(json::parse(c.Get("/health")->body)["requests_rejected"].get<int>(), 1);
}

TEST(ServeE2E, SigtermDrainsTheRequestInFlightThenExitsZero) {
  ServerProcess s({});
  ASSERT_GT(s.port(), 0) << s.log();
  auto answer = std::async(std::launch::async, [&] {
    int status = 0;
    json j = post(s, {{"prompt", "Once"}, {"max_tokens", 100}, {"steps", 100}}, &status);
    return std::make_pair(status, j);
  });
  // Wait until the request is being sampled, then ask the server to stop.
  auto c = s.client();
  for (auto end = Clock::now() + std::chrono::seconds(120); Clock::now() < end;) {
    auto h = c.Get("/health");
    if (h && json::parse(h->body)["rows_running"].get<int>() > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  s.signal(SIGTERM);
  auto [status, j] = answer.get();
  EXPECT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["usage"]["completion_tokens"], 100) << j.dump();
  EXPECT_EQ(s.wait(), 0) << s.log();
  EXPECT_NE(s.log().find("finishing the requests in flight"), std::string::npos) << s.log();
}

// A second SIGTERM during the drain ends the server at once (128 + 15), without waiting for
// the rows still to sample: 12 prompts of 100 tokens, one row per batch.
TEST(ServeE2E, ASecondSigtermEndsTheDrainAtOnce) {
  ServerProcess s({"--max-batch", "1", "--max-prompts", "12", "--max-queue", "16"});
  ASSERT_GT(s.port(), 0) << s.log();
  std::vector<std::string> prompts(12, "Once");
  auto answer = std::async(std::launch::async, [&] {
    auto c = s.client();
    return c.Post("/v1/completions", json{{"prompt", prompts}, {"max_tokens", 100}, {"steps", 100}}.dump(),
                  "application/json");
  });
  auto c = s.client();
  auto health = [&] {
    auto h = c.Get("/health");
    return h ? json::parse(h->body) : json();
  };
  for (auto end = Clock::now() + std::chrono::seconds(120); Clock::now() < end;) {
    if (health().value("rows_running", 0) > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  s.signal(SIGTERM);
  for (auto end = Clock::now() + std::chrono::seconds(120); Clock::now() < end;) {
    if (health().value("status", "") == "draining") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const json during = health();
  EXPECT_EQ(during.value("status", ""), "draining") << during.dump();
  EXPECT_GT(during.value("queue_depth", 0) + during.value("rows_running", 0), 0) << during.dump();
  s.signal(SIGTERM);
  EXPECT_EQ(s.wait(), 128 + SIGTERM) << s.log();
  EXPECT_NE(s.log().find("SIGTERM again"), std::string::npos) << s.log();
  auto r = answer.get();
  EXPECT_TRUE(!r || r->status != 200);  // the client did not get a (partial) answer
}

TEST(ServeE2E, ACheckpointThatCannotBeLoadedStopsServeBeforeItBinds) {
  ScratchDir d;
  auto r = run_trainer({"serve", "--checkpoint", (d / "missing").string(), "--plugin", kPlugin, "--port", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("not a folder"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("http://"), std::string::npos) << r.output;
  fs::create_directories(d / "broken");
  fs::copy(checkpoint(), d / "broken", fs::copy_options::recursive);
  write_file(d / "broken" / "config.json", "{ nope");
  r = run_trainer({"serve", "--checkpoint", (d / "broken").string(), "--plugin", kPlugin, "--port", "0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("config.json"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("http://"), std::string::npos) << r.output;
}

// Samplers built for older SDK minors keep working behind the server, which calls the 1.4
// hooks only on plugins built for 1.4: the test fixture built for SDK 1.0 (generate only), the
// one built for SDK 1.3 (generate_batch, no observer) and the one built for this SDK (whose
// generate_batch_observed is the default: generate_batch).
// Neither lets a request set sampler keys, and a stream then carries only the finished text.
TEST(ServeE2E, SamplersBuiltForOlderSdkMinorsAreServedWithoutTheNewHooks) {
  for (const std::string kind : {"v1_0", "v1_3", "plain"}) {
    SCOPED_TRACE(kind);
    const std::string plugin = (fs::path(LOOM_FIXTURE_DIR) / ("libfixture_" + kind + ".so")).string();
    auto dir = fresh_dir("serve-fixture-" + kind + "-" + std::to_string(getpid()));
    write_file(dir / "c.toml", tiny_config(dir / "out", 2) + "\n[" + kind + "]\nown_loss = true\n");
    auto r = run_trainer({"--config", (dir / "c.toml").string(), "--no-progress", "--plugin", plugin});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ServerProcess s({}, dir / "out" / "final");
    ASSERT_GT(s.port(), 0) << s.log();
    int status = 0;
    json j = post(s, {{"prompt", {"Once upon", "A cat"}}, {"max_tokens", 3}}, &status);
    ASSERT_EQ(status, 200) << j.dump() << s.log();
    EXPECT_EQ(j["usage"]["completion_tokens"], 6);
    post(s, {{"prompt", "Once upon"}, {"threshold", 0.5}}, &status);
    EXPECT_EQ(status, 400);
    auto streamed = s.client().Post("/v1/completions",
                                    json{{"prompt", "Once upon"}, {"max_tokens", 3}, {"stream", true}}.dump(),
                                    "application/json");
    ASSERT_TRUE(streamed);
    Stream st = parse_events(streamed->body);
    EXPECT_TRUE(st.done);
    ASSERT_EQ(st.events.size(), 1u) << streamed->body;
    EXPECT_EQ(st.events[0]["loom"]["final"], true);
    if (kind != "v1_0")  // 1.3: served through generate_batch; 1.4: its default observed one
      EXPECT_NE(read_file(dir / "out" / ("fixture_" + kind + "_generate_batch.txt")).find("requests"),
                std::string::npos);
    else
      EXPECT_FALSE(fs::exists(dir / "out" / "fixture_v1_0_generate_batch.txt"));
  }
}

// A LoRA adapter trained on the shared checkpoint is served as `trainer generate` samples it:
// the adapter folder alone (it names its base) and --checkpoint BASE --adapter FOLDER.
TEST(ServeE2E, ALoraAdapterIsServedAsTrainerGenerateSamplesIt) {
  const fs::path base = checkpoint();
  auto dir = fresh_dir("serve-lora-" + std::to_string(getpid()));
  write_file(dir / "lora.toml",
             "base_model = \"" + base.string() + "\"\noutput_dir = \"" + (dir / "out").string() +
                 "\"\nseed = 3\nsequence_len = 32\nmicro_batch_size = 4\nlearning_rate = 2e-2\n"
                 "max_steps = 6\nlogging_steps = 1\nthreads = 1\nsave_steps = 0\n"
                 "adapter = \"lora\"\nlora_r = 4\nlora_alpha = 8\nlora_target_modules = \"all-linear\"\n"
                 "\n[[datasets]]\npath = \"" LOOM_SOURCE_DIR "/configs/data/tiny_stories.jsonl\"\n"
                 "\n[diffusion]\ngenerate_samples = false\n");
  auto r = run_trainer({"--config", (dir / "lora.toml").string(), "--plugin", kPlugin, "--no-progress"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path adapter = dir / "out" / "final";
  ASSERT_TRUE(fs::exists(adapter / "adapter_config.json"));
  write_file(dir / "in.jsonl", json{{"prompt", "Once upon"}, {"max_new_tokens", 10}, {"seed", 8}}.dump() + "\n");
  auto g = run_trainer({"generate", "--checkpoint", adapter.string(), "--plugin", kPlugin, "--input",
                        (dir / "in.jsonl").string(), "--output", (dir / "out.jsonl").string(), "--steps", "10",
                        "--temperature", "0.8"});
  ASSERT_EQ(g.exit_code, 0) << g.output;
  const std::string expected = json::parse(read_file(dir / "out.jsonl"))["completion"];
  const json body = {{"prompt", "Once upon"}, {"max_tokens", 10}, {"steps", 10}, {"seed", 8}, {"temperature", 0.8}};
  {
    ServerProcess s({}, adapter);
    ASSERT_GT(s.port(), 0) << s.log();
    EXPECT_EQ(completion(s, body), expected);
  }
  ServerProcess s({"--plugin", kPlugin, "--adapter", adapter.string()}, base);
  ASSERT_GT(s.port(), 0) << s.log();
  EXPECT_EQ(completion(s, body), expected);
  // And the base alone answers otherwise (the adapter changed the model).
  ServerProcess plain({});
  ASSERT_GT(plain.port(), 0) << plain.log();
  EXPECT_NE(completion(plain, body), expected);
}

std::string find_chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (fs::exists(p)) return p;
  return "";
}

std::string unescape_html(std::string s) {
  const std::vector<std::pair<std::string, std::string>> entities = {
      {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&nbsp;", "\u00a0"}, {"&amp;", "&"}};
  for (const auto& [from, to] : entities)
    for (auto p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

TEST(ServeE2E, TheWebPageIsSelfContainedAndShowsTheStreamedAnswerInABrowser) {
  auto& s = shared_server();
  ASSERT_GT(s.port(), 0) << s.log();
  auto page = s.client().Get("/");
  ASSERT_TRUE(page);
  ASSERT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<script>"), std::string::npos);
  // Nothing loaded from elsewhere.
  for (const char* external : {"src=\"http", "href=\"http", "src=\"//", "href=\"//", "@import"})
    EXPECT_EQ(page->body.find(external), std::string::npos) << external;

  const std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (apt-get install chromium)";
  const std::string answer =
      completion(s, {{"prompt", "Once upon a time"}, {"max_tokens", 24}, {"steps", 12}, {"seed", 11}, {"temperature", 0.7}});
  const std::string url = "http://127.0.0.1:" + std::to_string(s.port()) +
                          "/?prompt=Once%20upon%20a%20time&max_tokens=24&steps=12&seed=11&temperature=0.7&autorun=1";
  const std::string flags = " --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run"
                            " --user-data-dir=" + (fs::temp_directory_path() / ("loom-chromium-" + std::to_string(getpid()))).string() +
                            " --virtual-time-budget=60000 ";
  // Chromium's virtual time waits while a request is pending: the page streams with an
  // XMLHttpRequest, pending until the last event, so the DOM is dumped when the answer is done.
  auto dom = run_command(shell_quote(chromium) + flags + "--dump-dom " + shell_quote(url) + " 2>/dev/null");
  ASSERT_EQ(dom.exit_code, 0) << dom.output;
  EXPECT_NE(dom.output.find("data-state=\"done\""), std::string::npos) << dom.output;
  std::smatch m;
  const std::regex answer_div("<div id=\"answer\">([\\s\\S]*?)</div>");
  ASSERT_TRUE(std::regex_search(dom.output, m, answer_div)) << dom.output;
  const std::string shown = unescape_html(std::regex_replace(std::string(m[1]), std::regex("<[^>]*>"), ""));
  EXPECT_EQ(shown, answer);
  // A screenshot of the finished page, kept in the build folder.
  const fs::path shots = fs::path(LOOM_BINARY_DIR) / "test-artifacts";
  fs::create_directories(shots);
  const fs::path png = shots / "serve-page.png";
  fs::remove(png);
  auto shot = run_command(shell_quote(chromium) + flags + "--window-size=900,620 --screenshot=" +
                          shell_quote(png.string()) + " " + shell_quote(url));
  EXPECT_EQ(shot.exit_code, 0) << shot.output;
  EXPECT_TRUE(fs::exists(png) && fs::file_size(png) > 1000) << shot.output;
}

}  // namespace
}  // namespace loom::test
