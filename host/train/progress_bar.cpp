#include "train/progress_bar.hpp"

#include <unistd.h>

#include <cstdio>

namespace loom {

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e7) return "--:--";
  long t = long(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%02ld:%02ld", t / 60, t % 60);
  return buf;
}

ProgressBar::ProgressBar(std::int64_t first_step, std::int64_t total_steps, bool interactive,
                         bool silent)
    : first_(first_step),
      total_(total_steps),
      silent_(silent),
      tty_(interactive && isatty(fileno(stdout)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(std::int64_t step, double loss, double lr, double tokens_per_s,
                         bool log_line) {
  if (silent_ || (!tty_ && !log_line)) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double done = double(step - first_);
  const double eta = done > 0 ? elapsed / done * double(total_ - step) : -1;
  const int width = 24;
  const int filled = total_ > 0 ? int(width * double(step) / double(total_)) : 0;
  std::string bar(std::size_t(filled), '#');
  bar.resize(width, '.');
  char line[256];
  std::snprintf(line, sizeof line,
                "[%s] step %lld/%lld | loss %.4f | lr %.2e | %.0f tok/s | ETA %s", bar.c_str(),
                (long long)step, (long long)total_, loss, lr, tokens_per_s, format_duration(eta).c_str());
  if (tty_) {
    std::printf("\r\033[2K%s", line);
    drawn_ = true;
    if (log_line) std::printf("\n"), drawn_ = false;
  } else {
    std::printf("%s\n", line);
  }
  std::fflush(stdout);
}

void ProgressBar::message(const std::string& text) {
  if (silent_) return;
  if (tty_ && drawn_) std::printf("\r\033[2K");
  std::printf("%s\n", text.c_str());
  drawn_ = false;
  std::fflush(stdout);
}

void ProgressBar::finish() {
  if (tty_ && drawn_) std::printf("\n");
  drawn_ = false;
  std::fflush(stdout);
}

}  // namespace loom
