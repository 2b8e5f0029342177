// Encoding speed of a tokenizer on a JSONL corpus, one core:
//   tokenizer_bench <tokenizer.json or folder> <file.jsonl> [field]
// prints {"tokenizer":..., "bytes":..., "seconds":..., "mb_per_s":..., "tokens":...}.
// The clock covers encode() only: not loading, not reading or parsing the JSONL.
#include <chrono>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "tokenizer/tokenizer_loader.hpp"

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: tokenizer_bench <tokenizer.json or folder> <file.jsonl> [field]\n";
    return 2;
  }
  const std::string field = argc == 4 ? argv[3] : "text";
  try {
    const auto tokenizer = loom::load_tokenizer(argv[1]);
    std::ifstream in(argv[2]);
    if (!in) throw loom::UserError(std::string("cannot read ") + argv[2]);
    std::vector<std::string> texts;
    std::size_t bytes = 0;
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const auto record = nlohmann::json::parse(line);
      texts.push_back(record.at(field).get<std::string>());
      bytes += texts.back().size();
    }
    std::size_t tokens = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& text : texts) tokens += tokenizer->encode(text).size();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const nlohmann::ordered_json result = {{"tokenizer", argv[1]},
                                           {"bytes", bytes},
                                           {"seconds", seconds},
                                           {"mb_per_s", bytes / 1e6 / seconds},
                                           {"tokens", tokens}};
    std::cout << result.dump() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_bench: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
