// libFuzzer harness: the bytes are a [[datasets]] file handed to read_dataset() with the byte
// tokenizer; read_dataset() documents a UserError naming the file (and line) for a malformed
// line, a missing field or an empty dataset. The first byte picks the file's extension and the
// dataset type, the rest is the file.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/dataset_reader.hpp"
#include "fuzz_support.hpp"
#include "tokenizer/byte_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static const loom::ByteTokenizer tokenizer;
  static const char* const kExtensions[] = {".jsonl", ".json", ".txt", ".md"};
  static const char* const kTypes[] = {"completion", "alpaca", "prompt_response", "chat"};
  const std::uint8_t selector = data[0];

  loom::DatasetConfig dataset;
  dataset.path =
      loom::fuzz::write_file(std::string("data") + kExtensions[selector & 3], data + 1, size - 1)
          .string();
  dataset.type = kTypes[(selector >> 2) & 3];
  if (selector & 0x10) dataset.field = "content";
  if (selector & 0x20) {
    dataset.prompt_field = "question";
    dataset.response_field = "answer";
  }

  loom::fuzz::expect_only_user_errors("read_dataset", [&] {
    const auto documents = loom::read_dataset(dataset, tokenizer);
    for (const auto& doc : documents) {
      if (doc.ids.size() != doc.labels.size()) {
        std::fprintf(stderr, "loom fuzz: document with %zu ids but %zu labels\n", doc.ids.size(),
                     doc.labels.size());
        std::abort();
      }
      for (std::int64_t id : doc.ids) {
        if (id < 0 || id >= tokenizer.vocab_size()) {
          std::fprintf(stderr, "loom fuzz: id %lld outside the vocabulary\n",
                       static_cast<long long>(id));
          std::abort();
        }
      }
    }
  });
  return 0;
}
