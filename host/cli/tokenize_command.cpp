// `trainer tokenize`: ids as Hugging Face's tokenizers would give them, to check data prep.
#include <nlohmann/json.hpp>

#include <iostream>

#include "cli/commands.hpp"
#include "errors.hpp"
#include "tokenizer/tokenizer_loader.hpp"

namespace loom {

int run_tokenize(const TokenizeArgs& args) {
  auto tok = load_tokenizer(args.tokenizer);
  auto emit = [&](const std::string& text) {
    auto ids = args.add_special ? tok->encode_with_special(text) : tok->encode(text);
    std::cout << nlohmann::json(ids).dump() << "\n";
  };
  if (args.text) {
    emit(*args.text);
    return 0;
  }
  std::string line;
  for (std::size_t n = 1; std::getline(std::cin, line); ++n) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_string()) emit(j.get<std::string>());
    else if (j.is_object() && j.contains("text") && j["text"].is_string()) emit(j["text"].get<std::string>());
    else throw UserError("stdin line " + std::to_string(n) + ": expected a JSON string or {\"text\": ...}");
  }
  return 0;
}

}  // namespace loom
