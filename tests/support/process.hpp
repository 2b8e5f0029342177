// Runs a real program (the trainer binary) for end-to-end tests.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "support/files.hpp"

namespace loom::test {

struct ProcessResult {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string output;  // stdout and stderr together
};

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

inline ProcessResult run_command(const std::string& command) {
  ProcessResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  int status = pclose(pipe);
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  return r;
}

inline ProcessResult run_trainer(const std::vector<std::string>& args) {
  std::string cmd = "OMP_NUM_THREADS=1 " + shell_quote(LOOM_TRAINER_BIN);
  for (const auto& a : args) cmd += " " + shell_quote(a);
  return run_command(cmd);
}

}  // namespace loom::test

// In a test body: skips the test when /usr/bin/python3 cannot import `modules` (a string
// literal, e.g. "torch" or "numpy, torch"; Debian: python3-torch, python3-numpy), and fails it
// instead where CI installs them for the independent reference scripts (LOOM_REFERENCE_TESTS=1).
#define LOOM_REQUIRE_PYTHON_MODULES(modules)                                                     \
  do {                                                                                           \
    if (::loom::test::run_command("/usr/bin/python3 -c 'import " modules "' 2>&1").exit_code !=  \
        0) {                                                                                     \
      const char* loom_required_ = std::getenv("LOOM_REFERENCE_TESTS");                          \
      if (loom_required_ && std::string(loom_required_) == "1")                                  \
        FAIL() << "LOOM_REFERENCE_TESTS=1 but /usr/bin/python3 cannot import " modules;          \
      GTEST_SKIP() << "/usr/bin/python3 that imports " modules                                   \
                      " (Debian: python3-torch, python3-numpy) is needed";                       \
    }                                                                                            \
  } while (0)
