#include "distributed/fault_injection.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>

#include "errors.hpp"

namespace loom {

FaultInjection FaultInjection::from_environment() {
  FaultInjection f;
  const char* v = std::getenv("LOOM_FAULT_INJECTION");
  if (!v || !*v) return f;
  std::istringstream in(v);
  for (std::string item; std::getline(in, item, ',');) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq),
                      value = eq == std::string::npos ? "" : item.substr(eq + 1);
    try {
      if (key == "rank")
        f.rank_ = std::stoi(value);
      else if (key == "step")
        f.step_ = std::stoll(value);
      else if (key == "mode" && (value == "exit" || value == "hang"))
        f.mode_ = value;
      else
        throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UserError(std::string("LOOM_FAULT_INJECTION=") + v +
                      ": expected rank=<r>,step=<s>[,mode=exit|hang]");
    }
  }
  f.armed_ = f.rank_ >= 0 && f.step_ >= 0;
  return f;
}

void FaultInjection::after_step(int rank, std::int64_t step) const {
  if (!armed_ || rank != rank_ || step != step_) return;
  spdlog::warn("LOOM_FAULT_INJECTION: rank {} {} after step {}", rank,
               mode_ == "hang" ? "hangs" : "exits", step);
  if (mode_ == "exit") std::_Exit(3);
  for (;;) pause();  // until killed
}

}  // namespace loom
