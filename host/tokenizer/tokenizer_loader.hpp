// Opens a tokenizer from disk: a folder (as save() writes it) or a tokenizer.json file.
#pragma once

#include <filesystem>
#include <memory>

#include "tokenizer/tokenizer.hpp"

namespace loom {

// A directory loads its tokenizer.json, a file loads as tokenizer.json; throws UserError when
// the path does not exist or the directory has no tokenizer.json.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

}  // namespace loom
