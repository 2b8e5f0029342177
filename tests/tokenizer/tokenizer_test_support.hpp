// Shared helpers for the tokenizer tests: data paths, tokenizers loaded once per test binary,
// golden files and random text (scratch folders: support/files.hpp).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "tokenizer/hf_tokenizer.hpp"
#include "tokenizer/utf8.hpp"

namespace loom::tokenizer_test {

inline std::string shared_file(const std::string& relative) {
  return std::string(LOOM_SHARED_DIR) + "/data/" + relative;
}
inline std::string llama3_json() { return shared_file("tokenizers/llama3/tokenizer.json"); }
inline std::string gpt2_json() { return shared_file("tokenizers/gpt2/tokenizer.json"); }

// Loading Llama 3 takes about a second, so read-only tests share one instance.
inline const Tokenizer& llama3() {
  static const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer_json(llama3_json());
  return *tokenizer;
}
inline const Tokenizer& gpt2() {
  static const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer_json(gpt2_json());
  return *tokenizer;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

struct GoldenCase {
  std::string text;
  std::vector<std::int64_t> ids;
};

// {"text", "ids"} per line, ids from Hugging Face's own tokenizer (see data/README.md).
inline std::vector<GoldenCase> read_golden(const std::string& name) {
  std::ifstream in(shared_file("tokenizers/" + name + "/golden.jsonl"));
  std::vector<GoldenCase> cases;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto record = nlohmann::json::parse(line);
    cases.push_back(
        {record["text"].get<std::string>(), record["ids"].get<std::vector<std::int64_t>>()});
  }
  return cases;
}

// Random valid UTF-8 mixing ASCII, whitespace runs, digits, Latin, CJK, emoji and any other
// scalar value, so that every pre-tokenizer branch and multi-byte merge gets exercised.
inline std::string random_utf8(std::mt19937& rng, int max_chars) {
  std::string out;
  const int n = std::uniform_int_distribution<int>(0, max_chars)(rng);
  std::uniform_int_distribution<int> kind(0, 9);
  for (int i = 0; i < n; ++i) {
    char32_t cp = 0;
    switch (kind(rng)) {
      case 0:
      case 1:
      case 2:
        cp = std::uniform_int_distribution<char32_t>(0x20, 0x7E)(rng);
        break;
      case 3:
        cp = U" \t\n\r\u00A0\u3000"[std::uniform_int_distribution<int>(0, 5)(rng)];
        break;
      case 4:
        cp = std::uniform_int_distribution<char32_t>(U'0', U'9')(rng);
        break;
      case 5:
        cp = std::uniform_int_distribution<char32_t>(0xA0, 0x24F)(rng);
        break;
      case 6:
        cp = std::uniform_int_distribution<char32_t>(0x4E00, 0x9FFF)(rng);
        break;
      case 7:
        cp = std::uniform_int_distribution<char32_t>(0x1F300, 0x1F6FF)(rng);
        break;
      default:
        do {
          cp = std::uniform_int_distribution<char32_t>(0, 0x10FFFF)(rng);
        } while (cp >= 0xD800 && cp <= 0xDFFF);
        break;
    }
    utf8::append(out, cp);
  }
  return out;
}

}  // namespace loom::tokenizer_test
