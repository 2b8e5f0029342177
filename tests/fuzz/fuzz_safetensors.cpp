// libFuzzer harness: the bytes are a .safetensors file handed to SafetensorsFile::open(), which
// documents that every problem with the file is a UserError, never a read outside the mapping.
// When the file opens, every tensor's bytes are read (ASan checks they lie in the mapping), looked
// up by name, and released page-wise as the checkpoint loader does.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.hpp"
#include "io/safetensors_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = loom::fuzz::write_file("model.safetensors", data, size);
  loom::fuzz::expect_only_user_errors("SafetensorsFile::open", [&] {
    const loom::SafetensorsFile st = loom::SafetensorsFile::open(file);
    unsigned checksum = 0;
    for (const loom::TensorEntry& entry : st.tensors()) {
      if (st.find(entry.name) == nullptr) {
        std::fprintf(stderr, "loom fuzz: tensor listed but not found by name\n");
        std::abort();
      }
      (void)entry.numel();
      const loom::ByteSpan bytes = st.data(entry);
      if (bytes.size != entry.nbytes()) std::abort();
      for (std::size_t i = 0; i < bytes.size; ++i)
        checksum += std::to_integer<unsigned>(bytes.data[i]);
      st.release_pages(entry, 0, entry.nbytes());
    }
    for (const auto& [key, value] : st.metadata()) checksum += key.size() + value.size();
    volatile unsigned sink = checksum;
    (void)sink;
  });
  return 0;
}
