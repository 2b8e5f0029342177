// Shared by the libFuzzer harnesses in this folder (built by scripts/fuzz.sh, not by the main
// build): a private scratch folder for parsers that take a path, and the one rule every harness
// applies -- loom's documented user-facing error (loom::UserError) is a correct answer to bad
// input; any other exception is a finding, reported with its type and message and turned into
// an abort so that libFuzzer saves the input.
#pragma once

#include <cxxabi.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <typeinfo>

#include "errors.hpp"

namespace loom::fuzz {

// A folder under $TMPDIR (scripts/fuzz.sh points it into build-fuzz/), made once per process
// and removed when the fuzzer exits normally. The path lives on the heap and is never freed:
// a function-local static path would be destroyed *before* the atexit handler that removes
// the folder (the handler is registered while the static is still being initialised, so the
// standard runs the static's destructor first), and the handler would read freed memory at
// exit -- a crash outside any input, which libFuzzer saves as an empty crash-* file.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path* const dir = [] {
    std::filesystem::path base = std::filesystem::temp_directory_path();
    std::string pattern = (base / "loom-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("loom fuzz: mkdtemp");
      std::abort();
    }
    return new std::filesystem::path(pattern);
  }();
  static const bool cleanup_registered = [] {
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(*dir, ignored);
    });
    return true;
  }();
  (void)cleanup_registered;
  return *dir;
}

// Writes `size` bytes to <scratch>/<name> (replacing it) and returns the path.
inline std::filesystem::path write_file(const std::string& name, const std::uint8_t* data,
                                        std::size_t size) {
  const std::filesystem::path file = scratch_dir() / name;
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "loom fuzz: cannot write %s\n", file.c_str());
    std::abort();
  }
  return file;
}

// The readable name of an exception's dynamic type.
inline std::string type_name(const std::exception& e) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(typeid(e).name(), nullptr, nullptr, &status);
  std::string name = status == 0 && demangled != nullptr ? demangled : typeid(e).name();
  std::free(demangled);
  return name;
}

// Runs `body`; UserError is fine, anything else aborts (a finding).
template <class Body>
void expect_only_user_errors(const char* what, Body&& body) {
  try {
    body();
    static const bool verbose = std::getenv("LOOM_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "loom fuzz: %s accepted the input\n", what);
  } catch (const loom::UserError& e) {
    // The documented answer to bad input. LOOM_FUZZ_VERBOSE=1 shows it (to check that a seed
    // gets as far as it should: `build-fuzz/fuzz_x tests/fuzz/corpus/x/*`).
    static const bool verbose = std::getenv("LOOM_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "loom fuzz: UserError: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nloom fuzz: %s threw %s (not loom::UserError): %s\n", what,
                 type_name(e).c_str(), e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "\nloom fuzz: %s threw a non-std exception\n", what);
    std::abort();
  }
}

}  // namespace loom::fuzz
