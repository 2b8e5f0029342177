// A few hundred random and mutated files: SafetensorsFile::open either accepts a file (and then
// every byte it hands out lies inside the file) or throws UserError; nothing else, no crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "errors.hpp"
#include "io/raw_safetensors.hpp"
#include "io/safetensors_file.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

// A valid three-tensor file to mutate.
std::string valid_file() {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("model.embed_tokens.weight":{"dtype":"BF16","shape":[4,2],"data_offsets":[0,16]},)"
      R"("model.norm.weight":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},)"
      R"("lm_head.weight":{"dtype":"F16","shape":[4,2],"data_offsets":[24,40]}})";
  std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  std::string data(40, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  return test::raw_safetensors(padded, data);
}

// One random change of the kind that corrupts real files or that a hostile file would make.
std::string mutate(std::string bytes, std::mt19937& rng) {
  const auto pick = [&rng](std::size_t n) { return n == 0 ? 0 : rng() % n; };
  if (bytes.size() < 9) bytes = test::length_prefix(1) + "{";
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  // After an earlier mutation the prefix may lie; mutate within the bytes that are there.
  header_size = std::min<std::uint64_t>(header_size, bytes.size() - 8);
  const std::size_t header_end = 8 + header_size;
  static const std::vector<std::string> tokens = {"0",
                                                  "-1",
                                                  "18446744073709551615",
                                                  "18446744073709551616",
                                                  "1e300",
                                                  "[",
                                                  "]",
                                                  "{",
                                                  "}",
                                                  ",",
                                                  ":",
                                                  "\"",
                                                  "null",
                                                  "true",
                                                  "\"F32\"",
                                                  "\"BF16\"",
                                                  "\"F8_E5M2\"",
                                                  "\\u0000",
                                                  "9.5",
                                                  "[0,0]",
                                                  "[]",
                                                  "\"shape\"",
                                                  "\"data_offsets\"",
                                                  "\"dtype\""};
  switch (rng() % 8) {
    case 0:  // flip a byte in the header
      bytes[8 + pick(header_size)] = static_cast<char>(rng());
      break;
    case 1: {  // replace a digit run in the header with another number
      std::size_t at = 8 + pick(header_size);
      while (at < header_end && !std::isdigit(static_cast<unsigned char>(bytes[at]))) ++at;
      std::size_t end = at;
      while (end < header_end && std::isdigit(static_cast<unsigned char>(bytes[end]))) ++end;
      const std::string number = std::to_string(rng() % 3 == 0 ? rng() : rng() % 64);
      bytes.replace(at, end - at, number);
      bytes.replace(0, 8, test::length_prefix(header_size + number.size() - (end - at)));
      break;
    }
    case 2: {  // insert a JSON token into the header, keeping the length prefix right
      const std::string& token = tokens[pick(tokens.size())];
      bytes.insert(8 + pick(header_size), token);
      bytes.replace(0, 8, test::length_prefix(header_size + token.size()));
      break;
    }
    case 3:  // truncate anywhere
      bytes.resize(pick(bytes.size()));
      break;
    case 4:  // a random header length
      bytes.replace(0, 8,
                    test::length_prefix(rng() % 2 ? rng() % (bytes.size() + 16)
                                                  : (std::uint64_t{rng()} << 32) | rng()));
      break;
    case 5: {  // delete a span of the header, keeping the length prefix right
      const std::size_t at = 8 + pick(header_size);
      const std::size_t count = std::min<std::size_t>(1 + pick(8), header_end - at);
      bytes.erase(at, count);
      bytes.replace(0, 8, test::length_prefix(header_size - count));
      break;
    }
    case 6:  // random bytes
      bytes = std::string(pick(64), '\0');
      for (char& c : bytes) c = static_cast<char>(rng());
      break;
    default:  // random bytes after a plausible length prefix
      bytes = test::length_prefix(pick(48)) + std::string(pick(64), '\0');
      for (std::size_t i = 8; i < bytes.size(); ++i) bytes[i] = static_cast<char>(rng());
      break;
  }
  return bytes;
}

TEST(SafetensorsFuzz, MutatedFilesOpenOrFailCleanly) {
  test::ScratchDir dir;
  const std::filesystem::path path = dir / "fuzz.safetensors";
  std::mt19937 rng(20240611);
  const std::string seed = valid_file();
  int opened = 0;
  int rejected = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 600; ++i) {
    std::string bytes = mutate(seed, rng);
    if (rng() % 3 == 0) bytes = mutate(bytes, rng);  // sometimes two mutations
    test::write_file(path, bytes);
    try {
      const SafetensorsFile file = SafetensorsFile::open(path);
      ++opened;
      for (const TensorEntry& entry : file.tensors()) {
        const ByteSpan span = file.data(entry);
        // Every byte handed out must be part of the file: sum them to touch them.
        unsigned sum = 0;
        for (std::size_t b = 0; b < span.size; ++b) sum += std::to_integer<unsigned>(span.data[b]);
        EXPECT_LE(entry.data_end + 8, bytes.size()) << "mutation " << i;
        (void)sum;
      }
    } catch (const UserError& e) {
      ++rejected;
      EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    }
  }
  // Both outcomes happen, so the mutations neither all break nor all miss the checks.
  EXPECT_GT(opened, 10);
  EXPECT_GT(rejected, 300);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

}  // namespace
}  // namespace loom
