#include "distributed/process_group.hpp"

#include <c10/util/Exception.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <deque>

#include "errors.hpp"

namespace loom {
namespace {

// libtorch 2 split the process group into a front (ProcessGroup) and per-device backends; Gloo
// and NCCL are backends there, and the collectives used here have the same signatures on both.
#if TORCH_VERSION_MAJOR >= 2
using C10dGroup = c10d::Backend;
#else
using C10dGroup = c10d::ProcessGroup;
#endif

std::vector<std::uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string text_of(const std::vector<std::uint8_t>& b) { return {b.begin(), b.end()}; }

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// The message without c10's backtrace, on one line.
std::string message_of(const std::exception& e) {
  std::string m = e.what();
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) m = c->what_without_backtrace();
  const auto eol = m.find('\n');
  if (eol != std::string::npos) m.resize(eol);
  return m;
}

std::string seconds_text(std::chrono::milliseconds t) {
  const double s = double(t.count()) / 1000.0;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s);
  return buf;
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out;
}

// libtorch >= 2.4 asks for the libuv store backend by default, and builds without libuv (Debian
// 13's 2.6) refuse it; the classic backend speaks the same protocol, so fall back to it.
c10::intrusive_ptr<c10d::Store> make_tcp_store(const std::string& host, c10d::TCPStoreOptions so) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  try {
    return c10::make_intrusive<c10d::TCPStore>(host, so);
  } catch (const std::exception& e) {
    if (!so.useLibUV || !contains(e.what(), "without libuv")) throw;
    so.useLibUV = false;
  }
#endif
  return c10::make_intrusive<c10d::TCPStore>(host, so);
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

constexpr bool kHasNccl =
#ifdef USE_C10D_NCCL
    true;
#else
    false;
#endif
constexpr bool kHasGloo =
#ifdef USE_C10D_GLOO
    true;
#else
    false;
#endif

std::string choose_backend(const std::string& requested, const torch::Device& device) {
  if (requested == "auto") return device.is_cuda() && kHasNccl ? "nccl" : "gloo";
  if (requested == "nccl") {
    if (!kHasNccl)
      throw UserError(
          "distributed_backend = \"nccl\": this libtorch was built without NCCL (a "
          "CUDA build of libtorch has it); use \"gloo\" or \"auto\"");
    if (!device.is_cuda())
      throw UserError(
          "distributed_backend = \"nccl\" needs a CUDA device (NCCL reduces GPU "
          "tensors); use \"gloo\" on CPU");
  }
  if (requested == "gloo" && !kHasGloo)
    throw UserError("distributed_backend = \"gloo\": this libtorch was built without Gloo");
  return requested;
}

}  // namespace

struct ProcessGroup::Impl {
  LaunchEnvironment env;
  ProcessGroupOptions opt;
  std::string backend;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<C10dGroup> group;
  std::int64_t seq = 0;  // collectives entered by this rank

  std::string who() const { return "rank " + std::to_string(env.rank); }
  static std::string seq_key(int rank) { return "loom/seq/" + std::to_string(rank); }

  // Records that this rank enters its next collective (see fail()).
  void enter(const std::string& what) {
    ++seq;
    try {
      store->set(seq_key(env.rank), bytes_of(std::to_string(seq)));
    } catch (const std::exception& e) {
      throw UserError("distributed: " + who() + " lost the rendezvous store before '" + what +
                      "': rank 0, which hosts it at " + env.endpoint() + ", is gone [" +
                      message_of(e) + "]");
    }
  }

  // Turns a failed collective into an error that names the ranks that never arrived: those
  // whose recorded sequence number is behind this rank's.
  [[noreturn]] void fail(const std::string& what, const std::string& cause) const {
    const bool timed_out = contains(cause, "imed out") || contains(cause, "imeout");
    std::vector<int> behind;
    bool store_alive = true;
    try {
      for (int r = 0; r < env.world_size; ++r) {
        if (r == env.rank || !store->check({seq_key(r)})) continue;
        if (std::stoll(text_of(store->get(seq_key(r)))) < seq) behind.push_back(r);
      }
    } catch (const std::exception&) {
      store_alive = false;
    }
    std::string msg = "distributed: " + who() + " gave up in '" + what + "': ";
    const std::string timeout = seconds_text(opt.timeout) + " s timeout (distributed_timeout_s)";
    if (!behind.empty())
      msg += ranks_text(behind) +
             (timed_out ? " did not arrive within the " + timeout + ": hung or too slow"
                        : " did not arrive: its connection closed (the "
                          "process exited or was killed)");
    else if (!store_alive)
      msg += "rank 0 is gone (the rendezvous store it hosts at " + env.endpoint() +
             " no longer answers)";
    else
      msg += timed_out ? "a peer did not respond within the " + timeout
                       : "a peer's connection closed during the operation";
    throw UserError(msg + " [" + cause + "]");
  }

  void open_store() {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0 && !env.agent_store;
    so.waitWorkers = false;  // the join below waits, and can name who is missing
    so.timeout = opt.timeout;
    try {
      store = make_tcp_store(env.master_addr, so);
      if (env.agent_store)
        store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + env.attempt, store);
    } catch (const std::exception& e) {
      const std::string m = message_of(e);
      if (so.isServer && (contains(m, "already in use") || contains(m, "errno: 98")))
        throw UserError("distributed: MASTER_PORT " + std::to_string(env.master_port) +
                        " is already in use on this machine (another run, or one still "
                        "exiting?); choose a free port with MASTER_PORT=<port>");
      if (so.isServer)
        throw UserError("distributed: rank 0 cannot open the rendezvous store at " +
                        env.endpoint() + " [" + m + "]");
      throw UserError("distributed: " + who() + " cannot reach the rendezvous store at " +
                      env.endpoint() + " within the " + seconds_text(opt.timeout) +
                      " s timeout (is rank 0 running, with the same MASTER_ADDR and "
                      "MASTER_PORT?) [" +
                      m + "]");
    }
  }

  // Every rank announces itself with its WORLD_SIZE; each waits for all, then checks that all
  // agree on the world size.
  void join() {
    const auto key = [](int r) { return "loom/joined/" + std::to_string(r); };
    try {
      store->set(seq_key(env.rank), bytes_of("0"));
      store->set(key(env.rank), bytes_of(std::to_string(env.world_size)));
    } catch (const std::exception& e) {
      throw UserError("distributed: " + who() + " lost the rendezvous store at " + env.endpoint() +
                      " while joining [" + message_of(e) + "]");
    }
    std::vector<std::string> keys;
    for (int r = 0; r < env.world_size; ++r) keys.push_back(key(r));
    try {
      store->wait(keys, opt.timeout);
    } catch (const std::exception& e) {
      std::vector<int> missing;
      try {
        for (int r = 0; r < env.world_size; ++r)
          if (!store->check({key(r)})) missing.push_back(r);
      } catch (const std::exception&) {
        throw UserError("distributed: " + who() + " lost rank 0's rendezvous store at " +
                        env.endpoint() + " while waiting for the other ranks [" + message_of(e) +
                        "]");
      }
      if (missing.empty())
        throw UserError("distributed: rendezvous failed [" + message_of(e) + "]");
      throw UserError("distributed: " + who() + " waited " + seconds_text(opt.timeout) +
                      " s (distributed_timeout_s) at " + env.endpoint() + " for " +
                      ranks_text(missing) + " to join; did " +
                      (missing.size() == 1 ? "it" : "they") +
                      " start, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE?");
    }
    for (int r = 0; r < env.world_size; ++r) {
      const std::string theirs = text_of(store->get(key(r)));
      if (theirs != std::to_string(env.world_size))
        throw UserError("distributed: rank " + std::to_string(r) + " has WORLD_SIZE=" + theirs +
                        " but " + who() + " has WORLD_SIZE=" + std::to_string(env.world_size));
    }
  }

  void connect() {
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("loom/c10d", store);
    try {
      if (backend == "gloo") {
#ifdef USE_C10D_GLOO
        auto o = c10d::ProcessGroupGloo::Options::create(opt.timeout);
        // GLOO_SOCKET_IFNAME picks the interface (as in PyTorch); one machine: loopback.
        if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
          std::string first(ifname);
          first = first.substr(0, first.find(','));
          o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(first));
        } else if (is_loopback(env.master_addr)) {
          o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        } else {
          o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        o->threads = 2;
        group = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, env.rank, env.world_size, o);
#endif
      } else {
#ifdef USE_C10D_NCCL
        auto o = c10d::ProcessGroupNCCL::Options::create();
        o->timeout = opt.timeout;
        group = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, env.rank, env.world_size, o);
#endif
      }
    } catch (const std::exception& e) {
      throw UserError("distributed: " + who() + " could not connect the " + backend +
                      " process group [" + message_of(e) + "]");
    }
    if (!group) throw UserError("distributed: backend " + backend + " is not available");
  }
};

bool gloo_available() { return kHasGloo; }

ProcessGroup::ProcessGroup(const LaunchEnvironment& env, const ProcessGroupOptions& options)
    : impl_(std::make_unique<Impl>()) {
  // A write to the socket of a rank that died must fail with EPIPE (and be reported), not end
  // this process silently; Python, where c10d usually runs, ignores SIGPIPE the same way.
  std::signal(SIGPIPE, SIG_IGN);
  impl_->env = env;
  impl_->opt = options;
  impl_->backend = choose_backend(options.backend, options.device);
  impl_->open_store();
  impl_->join();
  impl_->connect();
}

ProcessGroup::~ProcessGroup() = default;

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::world_size() const { return impl_->env.world_size; }
const std::string& ProcessGroup::backend() const { return impl_->backend; }
torch::Device ProcessGroup::device() const { return impl_->opt.device; }
double ProcessGroup::timeout_seconds() const { return double(impl_->opt.timeout.count()) / 1000.0; }

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what) {
  auto& I = *impl_;
  I.enter(what);
  try {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};  // shares t's storage: reduced in place
      works.push_back(I.group->allreduce(one, o));
    }
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    I.fail(what, message_of(e));
  }
}

void ProcessGroup::all_reduce_sum_pipelined(
    std::size_t count, const std::function<torch::Tensor(std::size_t)>& fill,
    const std::function<void(std::size_t, const torch::Tensor&)>& drain, const std::string& what,
    std::size_t in_flight) {
  auto& I = *impl_;
  I.enter(what);
  try {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    std::deque<std::pair<std::size_t, std::pair<at::Tensor, c10::intrusive_ptr<c10d::Work>>>>
        pending;
    auto finish_oldest = [&] {
      auto& [i, tw] = pending.front();
      tw.second->wait();
      drain(i, tw.first);
      pending.pop_front();
    };
    for (std::size_t i = 0; i < count; ++i) {
      if (pending.size() >= std::max<std::size_t>(1, in_flight)) finish_oldest();
      at::Tensor t = fill(i);
      std::vector<at::Tensor> one{t};
      pending.emplace_back(i, std::make_pair(t, I.group->allreduce(one, o)));
    }
    while (!pending.empty()) finish_oldest();
  } catch (const std::exception& e) {
    I.fail(what, message_of(e));
  }
}

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors, int root,
                             const std::string& what) {
  auto& I = *impl_;
  I.enter(what);
  try {
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.rootTensor = 0;
    for (auto& t : tensors) {
      std::vector<at::Tensor> one{t};
      works.push_back(I.group->broadcast(one, o));
    }
    for (auto& w : works) w->wait();
  } catch (const std::exception& e) {
    I.fail(what, message_of(e));
  }
}

std::vector<std::string> ProcessGroup::all_gather(const std::string& bytes,
                                                  const std::string& what) {
  auto& I = *impl_;
  const int W = I.env.world_size;
  I.enter(what);
  std::vector<std::string> out(static_cast<std::size_t>(W));
  try {
    const auto dev = I.opt.device;
    // 1. every rank's length, 2. the bytes padded to the longest.
    std::vector<at::Tensor> len{torch::tensor({std::int64_t(bytes.size())}, torch::kLong).to(dev)};
    std::vector<std::vector<at::Tensor>> lens(1);
    for (int r = 0; r < W; ++r) lens[0].push_back(torch::empty({1}, torch::kLong).to(dev));
    I.group->allgather(lens, len)->wait();
    std::int64_t longest = 1;
    std::vector<std::int64_t> n(static_cast<std::size_t>(W));
    for (int r = 0; r < W; ++r) {
      n[std::size_t(r)] = lens[0][std::size_t(r)].cpu().item<std::int64_t>();
      longest = std::max(longest, n[std::size_t(r)]);
    }
    auto mine = torch::zeros({longest}, torch::kByte);
    std::copy(bytes.begin(), bytes.end(), mine.data_ptr<std::uint8_t>());
    std::vector<at::Tensor> in{mine.to(dev)};
    std::vector<std::vector<at::Tensor>> all(1);
    for (int r = 0; r < W; ++r) all[0].push_back(torch::empty({longest}, torch::kByte).to(dev));
    I.group->allgather(all, in)->wait();
    for (int r = 0; r < W; ++r) {
      auto t = all[0][std::size_t(r)].cpu().contiguous();
      const auto* p = t.data_ptr<std::uint8_t>();
      out[std::size_t(r)].assign(reinterpret_cast<const char*>(p), std::size_t(n[std::size_t(r)]));
    }
  } catch (const std::exception& e) {
    I.fail(what, message_of(e));
  }
  return out;
}

std::string ProcessGroup::from_rank0(const std::string& key, const std::string& value) {
  auto& I = *impl_;
  const std::string k = "loom/shared/" + key;
  try {
    if (I.env.rank == 0) {
      I.store->set(k, bytes_of(value));
      return value;
    }
    return text_of(I.store->get(k));
  } catch (const std::exception& e) {
    throw UserError("distributed: " + I.who() + " did not get '" + key + "' from rank 0 within " +
                    seconds_text(I.opt.timeout) + " s [" + message_of(e) + "]");
  }
}

}  // namespace loom
