// libFuzzer harness: the bytes are a Hugging Face config.json handed to read_hf_config(), which
// documents a UserError naming the file and the key for anything loom cannot use.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "io/hf_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = loom::fuzz::write_file("config.json", data, size);
  loom::fuzz::expect_only_user_errors("read_hf_config", [&] {
    const loom::ModelConfig config = loom::read_hf_config(file);
    volatile auto sink = config.hidden_size;
    (void)sink;
  });
  return 0;
}
