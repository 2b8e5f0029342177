// libFuzzer harness: the bytes are an Axolotl YAML config handed to translate_axolotl_yaml(),
// whose TOML then goes through parse_train_config() as `trainer --config x.yml` does. Malformed
// YAML, unsupported keys and wrong types are UserErrors; anything else is a finding -- and so is
// a translation that is not valid TOML (the translator must only ever write TOML that parses).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/axolotl_config.hpp"
#include "config/config_loader.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  loom::fuzz::expect_only_user_errors("translate_axolotl_yaml", [&] {
    const loom::AxolotlTranslation t = loom::translate_axolotl_yaml(yaml, "fuzz.yml");
    try {
      const loom::TrainConfig config = loom::parse_train_config(t.toml, "fuzz.yml");
      volatile std::size_t sink = config.resolved_toml.size();
      (void)sink;
    } catch (const loom::UserError& e) {
      if (std::string(e.what()).find("not valid TOML") != std::string::npos) {
        std::fprintf(stderr, "loom fuzz: the translation is not valid TOML: %s\n%s\n", e.what(),
                     t.toml.c_str());
        std::abort();
      }
      throw;
    }
  });
  return 0;
}
