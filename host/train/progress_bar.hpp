// One status line while training: step/total, loss, lr, tokens/s, ETA. On a terminal (unless
// disabled with --no-progress) it is redrawn in place; otherwise (logs, CI) a line is printed
// at each logging step.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace loom {

class ProgressBar {
 public:
  // `interactive`: redraw in place on a terminal; `silent`: print nothing (other ranks).
  ProgressBar(std::int64_t first_step, std::int64_t total_steps, bool interactive, bool silent = false);
  void update(std::int64_t step, double loss, double lr, double tokens_per_s, bool log_line);
  void message(const std::string& text);  // prints a line without breaking the bar
  void finish();

 private:
  std::int64_t first_, total_;
  bool silent_, tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

std::string format_duration(double seconds);

}  // namespace loom
