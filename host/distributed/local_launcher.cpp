#include "distributed/local_launcher.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <thread>

#include "errors.hpp"

namespace loom {
namespace {

std::atomic<int> g_forward{0};
extern "C" void on_launcher_signal(int sig) { g_forward = sig; }

// After a rank failed: how long the others may take to notice and report their own error
// before they are killed. (Not SIGTERM first: with a peer gone a rank cannot save anything,
// and a signal arriving while it reports its error could cut the report off.)
constexpr auto kGrace = std::chrono::seconds(5);

std::string self_executable() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw UserError("trainer --nproc: cannot find this program (/proc/self/exe)");
  return std::string(buf, std::size_t(n));
}

class SignalForwarding {
 public:
  SignalForwarding() {
    struct sigaction sa {};
    sa.sa_handler = on_launcher_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalForwarding() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {
  }, old_term_{};
};

}  // namespace

LocalLauncher::LocalLauncher(int nproc, std::vector<std::string> args)
    : nproc_(nproc), args_(without_nproc(args)) {}

std::vector<std::string> LocalLauncher::without_nproc(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

int LocalLauncher::free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw UserError(std::string("trainer --nproc: socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  close(fd);
  if (!ok) throw UserError("trainer --nproc: found no free TCP port on 127.0.0.1");
  return ntohs(addr.sin_port);
}

int LocalLauncher::run() {
  const char* addr_env = std::getenv("MASTER_ADDR");
  const char* port_env = std::getenv("MASTER_PORT");
  const std::string addr = addr_env && *addr_env ? addr_env : "127.0.0.1";
  const std::string port = port_env && *port_env ? port_env : std::to_string(free_port());
  const std::string exe = self_executable();
  spdlog::info("trainer --nproc {}: starting {} ranks (MASTER_ADDR={} MASTER_PORT={})", nproc_,
               nproc_, addr, port);

  std::vector<std::string> argv_text{exe};
  argv_text.insert(argv_text.end(), args_.begin(), args_.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  SignalForwarding forwarding;
  const pid_t parent = getpid();
  std::vector<pid_t> pids;
  pid_t group = 0;  // the ranks' process group (the terminal's Ctrl-C reaches the launcher only)
  for (int r = 0; r < nproc_; ++r) {
    const pid_t pid = fork();
    if (pid < 0) {
      if (group) killpg(group, SIGKILL);
      throw UserError(std::string("trainer --nproc: fork: ") + std::strerror(errno));
    }
    if (pid == 0) {
      setpgid(0, group);
#ifdef __linux__
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the launcher
      if (getppid() != parent) _exit(1);
#endif
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc_).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc_).c_str(), 1);
      setenv("MASTER_ADDR", addr.c_str(), 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      execv(exe.c_str(), argv.data());
      std::fprintf(stderr, "trainer --nproc: cannot run %s: %s\n", exe.c_str(),
                   std::strerror(errno));
      _exit(127);
    }
    if (!group) group = pid;
    setpgid(pid, group);  // also here: whichever runs first
    pids.push_back(pid);
  }

  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> kill_at;
  int first_status = 0;
  std::size_t alive = pids.size();
  while (alive > 0) {
    if (const int sig = g_forward.exchange(0)) killpg(group, sig);
    int status = 0;
    const pid_t p = waitpid(-1, &status, WNOHANG);
    if (p > 0) {
      const auto it = std::find(pids.begin(), pids.end(), p);
      if (it == pids.end()) continue;
      --alive;
      const int rank = int(it - pids.begin());
      const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (code != 0 && first_status == 0) {
        first_status = code;
        // 130: the ranks agreed to stop after a signal and are saving; let them finish.
        if (alive > 0 && code != 130) {
          std::fprintf(stderr, "trainer --nproc: rank %d %s %d; stopping the other ranks\n", rank,
                       WIFEXITED(status) ? "exited with status" : "was killed by signal",
                       WIFEXITED(status) ? code : WTERMSIG(status));
          kill_at = Clock::now() + kGrace;
        }
      }
      continue;
    }
    if (p < 0 && errno == ECHILD) break;
    if (kill_at && Clock::now() >= *kill_at) {
      killpg(group, SIGKILL);
      kill_at.reset();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return first_status;
}

}  // namespace loom
