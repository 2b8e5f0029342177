// libFuzzer harness: the bytes are a training config handed to parse_train_config(), which
// documents syntax errors, unknown keys, wrong types and out-of-range values as UserErrors
// naming the key and its location. After a line
//   #--set
// each further line is a --set override ("key=value") applied on top of the file.
//
// toml++ 3.3 (Debian 12) has TOML_ASSERT assertions and a TOML_UNREACHABLE path that malformed
// TOML reaches (e.g. the 10 bytes "[[\x0f" + seven NUL bytes; both kept in the corpus as
// regression-tomlpp-* seeds); see tests/fuzz/CMakeLists.txt for how the fuzz build keeps that
// upstream issue from masking findings in loom's own code.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "config/config_loader.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string kMarker = "\n#--set\n";
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find(kMarker);
  const std::string text = input.substr(0, split);
  std::vector<std::string> overrides;
  if (split != std::string::npos) {
    std::size_t start = split + kMarker.size();
    while (start < input.size()) {
      const std::size_t end = std::min(input.find('\n', start), input.size());
      overrides.push_back(input.substr(start, end - start));
      start = end + 1;
    }
  }
  loom::fuzz::expect_only_user_errors("parse_train_config", [&] {
    const loom::TrainConfig config = loom::parse_train_config(text, "fuzz.toml", overrides);
    volatile std::size_t sink = config.resolved_toml.size() + config.datasets.size();
    (void)sink;
  });
  return 0;
}
