// SafetensorsFile treats files as untrusted: every malformed file is a UserError naming the file
// (and the tensor), never a crash or a read past the mapping.
#include <gtest/gtest.h>

#include <unistd.h>

#include <random>
#include <string>

#include "errors.hpp"
#include "io/raw_safetensors.hpp"
#include "io/safetensors_file.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

using test::raw_safetensors;

// Opens bytes written to a file and returns the UserError message ("" if it opened).
class SafetensorsErrors : public ::testing::Test {
 protected:
  std::string open_error(const std::string& bytes) {
    test::write_file(path(), bytes);
    try {
      SafetensorsFile::open(path());
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  }
  std::filesystem::path path() const { return dir_ / "bad.safetensors"; }

  // Expects an error that names the file and contains every one of `parts`.
  void expect_error(const std::string& bytes, std::initializer_list<std::string> parts) {
    const std::string message = open_error(bytes);
    ASSERT_FALSE(message.empty()) << "opened without error";
    EXPECT_NE(message.find(path().string()), std::string::npos) << message;
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
    }
  }

  test::ScratchDir dir_;
};

const std::string kF32Pair = std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);

std::string one_tensor(const std::string& dtype, const std::string& shape,
                       const std::string& offsets) {
  return R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets +
         "}}";
}

TEST_F(SafetensorsErrors, ValidBaseline) {
  EXPECT_EQ(open_error(raw_safetensors(one_tensor("F32", "[2]", "[0,8]"), kF32Pair)), "");
}

TEST_F(SafetensorsErrors, TruncatedFile) {
  std::string bytes = raw_safetensors(one_tensor("F32", "[2]", "[0,8]"), kF32Pair);
  bytes.resize(bytes.size() - 3);
  expect_error(bytes, {"'w'", "truncated"});
}

TEST_F(SafetensorsErrors, ShorterThanTheLengthPrefix) {
  expect_error("\x05\x00\x00", {"too short"});
  expect_error("", {"too short"});
}

TEST_F(SafetensorsErrors, HeaderLengthBeyondTheFile) {
  const std::string header = one_tensor("F32", "[2]", "[0,8]");
  expect_error(test::length_prefix(header.size() + 100) + header + kF32Pair, {"exceeds the file"});
  expect_error(test::length_prefix(~0ULL) + header, {"exceeds the file"});
}

TEST_F(SafetensorsErrors, HeaderLengthOverTheLimit) {
  // A sparse file just over the limit: cheap to make, and the length does fit the file.
  test::write_file(path(), test::length_prefix(100'000'001) + "{}");
  ASSERT_EQ(::truncate(path().c_str(), 100'000'100), 0);
  try {
    SafetensorsFile::open(path());
    FAIL() << "opened";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("over the limit"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsErrors, HeaderNotJson) {
  expect_error(raw_safetensors("{\"w\": nope}", ""), {"not valid JSON"});
  expect_error(raw_safetensors("", ""), {"not valid JSON"});
  expect_error(raw_safetensors(std::string("{}\0\0\0\0\0\0", 8), ""), {"not valid JSON"});
  expect_error(raw_safetensors("[1,2]", ""), {"not a JSON object"});
  expect_error(raw_safetensors(R"({"w":"F32"})", ""), {"'w'", "not a JSON object"});
}

TEST_F(SafetensorsErrors, HeaderWithInvalidUtf8) {
  expect_error(raw_safetensors("{\"\xff\xfe\":{}}", ""), {"not valid JSON"});
}

TEST_F(SafetensorsErrors, DeeplyNestedHeader) {
  const std::string deep = R"({"w":{"dtype":"F32","shape":)" + std::string(100000, '[') +
                           std::string(100000, ']') + R"(,"data_offsets":[0,0]}})";
  expect_error(raw_safetensors(deep, ""), {"nested deeper"});
}

TEST_F(SafetensorsErrors, DuplicateKeys) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_error(raw_safetensors(header, kF32Pair), {"'w' twice"});
  expect_error(
      raw_safetensors(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})",
                      kF32Pair),
      {"'dtype' twice"});
}

TEST_F(SafetensorsErrors, OverlappingOffsets) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_error(raw_safetensors(header, kF32Pair), {"'b'", "overlaps tensor 'a'"});
  // The same range twice.
  const std::string same = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  expect_error(raw_safetensors(same, kF32Pair), {"overlaps"});
  // A small range inside a bigger one.
  const std::string inside = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                             R"("b":{"dtype":"I8","shape":[1],"data_offsets":[5,6]}})";
  expect_error(raw_safetensors(inside, kF32Pair + kF32Pair), {"overlaps"});
}

TEST_F(SafetensorsErrors, OffsetsOutOfRange) {
  expect_error(raw_safetensors(one_tensor("F32", "[2]", "[8,16]"), kF32Pair),
               {"'w'", "past the end of the data section"});
  expect_error(raw_safetensors(one_tensor("F32", "[2]", "[18446744073709551615,7]"), kF32Pair),
               {"'w'", "reversed"});
  expect_error(raw_safetensors(one_tensor("F32", "[2]", "[0,-8]"), kF32Pair),
               {"'w'", "non-negative integers"});
  expect_error(raw_safetensors(one_tensor("F32", "[2]", "[0,8.5]"), kF32Pair),
               {"'w'", "non-negative integers"});
  expect_error(raw_safetensors(one_tensor("F32", "[2]", "[0]"), kF32Pair), {"'w'", "data_offsets"});
  expect_error(raw_safetensors(one_tensor("F32", "[2]", "[0,8,16]"), kF32Pair),
               {"'w'", "data_offsets"});
}

TEST_F(SafetensorsErrors, WrongByteCountForDtypeAndShape) {
  expect_error(raw_safetensors(one_tensor("F16", "[2]", "[0,8]"), kF32Pair),
               {"'w'", "hold 8 bytes", "F16", "[2]", "need 4"});
  expect_error(raw_safetensors(one_tensor("F32", "[3]", "[0,8]"), kF32Pair), {"'w'", "need 12"});
  // Dimensions whose product overflows 64 bits.
  expect_error(raw_safetensors(one_tensor("F32", "[4294967296,4294967296]", "[0,8]"), kF32Pair),
               {"'w'", "overflows"});
  expect_error(raw_safetensors(one_tensor("F32", "[-2]", "[0,8]"), kF32Pair),
               {"'w'", "non-negative integers"});
  expect_error(raw_safetensors(one_tensor("F32", "[9223372036854775808,0]", "[0,0]"), kF32Pair),
               {"'w'", "too large"});
}

TEST_F(SafetensorsErrors, UnknownDtype) {
  expect_error(raw_safetensors(one_tensor("F8_E4M3", "[8]", "[0,8]"), kF32Pair),
               {"'w'", "unsupported dtype 'F8_E4M3'"});
  expect_error(raw_safetensors(one_tensor("f32", "[2]", "[0,8]"), kF32Pair), {"'f32'"});
}

TEST_F(SafetensorsErrors, MissingFields) {
  expect_error(raw_safetensors(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", kF32Pair),
               {"'w'", "dtype"});
  expect_error(raw_safetensors(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", kF32Pair),
               {"'w'", "shape"});
  expect_error(raw_safetensors(R"({"w":{"dtype":"F32","shape":[2]}})", kF32Pair),
               {"'w'", "data_offsets"});
}

TEST_F(SafetensorsErrors, BadMetadata) {
  expect_error(raw_safetensors(R"({"__metadata__":{"step":12}})", ""), {"'step'", "not a string"});
  expect_error(raw_safetensors(R"({"__metadata__":[1]})", ""), {"__metadata__"});
}

TEST_F(SafetensorsErrors, NotAFile) {
  EXPECT_THROW(SafetensorsFile::open(dir_ / "does-not-exist.safetensors"), UserError);
  EXPECT_THROW(SafetensorsFile::open(dir_.path()), UserError);
}

TEST_F(SafetensorsErrors, LongNamesAreShortenedInMessages) {
  const std::string name(5000, 'n');
  const std::string header =
      "{\"" + name + R"(":{"dtype":"F32","shape":[2],"data_offsets":[0,9]}})";
  const std::string message = open_error(raw_safetensors(header, kF32Pair + "x"));
  EXPECT_NE(message.find("(5000 chars)"), std::string::npos);
  EXPECT_LT(message.size(), 1000u);
}

}  // namespace
}  // namespace loom
