// libFuzzer harness: the bytes are a tokenizer.json handed to load_tokenizer(), which documents a
// UserError naming the file for anything malformed or unsupported. When a marker line
//   --tokenizer_config.json--
// is present, what follows it is written as the tokenizer_config.json beside tokenizer.json (its
// bos/eos/pad are resolved at load). A tokenizer that loads is then used: it encodes a fixed text
// with every pre-tokenizer branch in reach and the input itself (arbitrary bytes, invalid UTF-8
// included), decodes the ids, and maps ids and tokens both ways.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "tokenizer/tokenizer_loader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static constexpr std::string_view kMarker = "\n--tokenizer_config.json--\n";
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find(kMarker);
  const std::string_view tokenizer_json = input.substr(0, split);

  const auto dir = loom::fuzz::scratch_dir();
  const auto file = loom::fuzz::write_file(
      "tokenizer.json", reinterpret_cast<const std::uint8_t*>(tokenizer_json.data()),
      tokenizer_json.size());
  std::error_code ignored;
  std::filesystem::remove(dir / "tokenizer_config.json", ignored);
  if (split != std::string_view::npos) {
    const std::string_view config = input.substr(split + kMarker.size());
    loom::fuzz::write_file("tokenizer_config.json",
                           reinterpret_cast<const std::uint8_t*>(config.data()), config.size());
  }

  loom::fuzz::expect_only_user_errors("load_tokenizer", [&] {
    const auto tokenizer = loom::load_tokenizer(file);
    const std::string texts[] = {
        "Hello, world! It's 2024: abc a cab <s> \t\n  x\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80",
        std::string(input.substr(0, 512)),
    };
    for (const std::string& text : texts) {
      const auto ids = tokenizer->encode(text);
      const auto with_special = tokenizer->encode_with_special(text);
      (void)tokenizer->decode(ids, false);
      (void)tokenizer->decode(with_special, true);
      for (std::int64_t id : ids) {
        if (id < 0 || id >= tokenizer->vocab_size()) {
          std::fprintf(stderr, "loom fuzz: encode gave id %lld outside [0, %lld)\n",
                       static_cast<long long>(id), static_cast<long long>(tokenizer->vocab_size()));
          std::abort();
        }
        const std::string token = tokenizer->id_to_token(id);
        (void)tokenizer->token_to_id(token);
        (void)tokenizer->is_special(id);
      }
    }
    (void)tokenizer->bos_id();
    (void)tokenizer->eos_id();
    (void)tokenizer->pad_id();
  });
  return 0;
}
