#include "tokenizer/tokenizer_loader.hpp"

#include "errors.hpp"
#include "tokenizer/hf_tokenizer.hpp"

namespace loom {

std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    const std::filesystem::path file = path / "tokenizer.json";
    if (!std::filesystem::is_regular_file(file, error)) {
      throw UserError("tokenizer directory " + path.string() + " has no tokenizer.json");
    }
    return load_tokenizer_json(file);
  }
  if (!std::filesystem::exists(path, error)) {
    throw UserError("tokenizer path " + path.string() + " does not exist");
  }
  return load_tokenizer_json(path);
}

}  // namespace loom
