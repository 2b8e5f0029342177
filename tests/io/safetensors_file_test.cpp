// SafetensorsFile and SafetensorsWriter: hand-assembled files read correctly, the writer's bytes
// match the reference layout, and every dtype round-trips bit-exactly.
#include "io/safetensors_file.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <stdexcept>
#include <vector>

#include "errors.hpp"
#include "io/raw_safetensors.hpp"
#include "io/safetensors_writer.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

using test::raw_safetensors;
using test::ScratchDir;

std::string bytes_of(ByteSpan span) {
  return std::string(reinterpret_cast<const char*>(span.data), span.size);
}

TEST(SafetensorsFile, ReadsHandAssembledFile) {
  ScratchDir dir;
  // Header order differs from data order on purpose; F32 1.0, -2.0 then F16 1.0, 0.5.
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},)"
                             R"("a":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]}})";
  const std::string data =
      std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8) + std::string("\x00\x3c\x00\x38", 4);
  test::write_file(dir / "m.safetensors", raw_safetensors(header, data));

  const SafetensorsFile file = SafetensorsFile::open(dir / "m.safetensors");
  ASSERT_EQ(file.tensors().size(), 2u);
  const TensorEntry& a = file.tensors()[0];  // sorted by offset
  EXPECT_EQ(a.name, "a");
  EXPECT_EQ(a.dtype, SafetensorsDtype::F32);
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(a.numel(), 2u);
  float values[2];
  std::memcpy(values, file.data(a).data, 8);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], -2.0f);
  const TensorEntry* b = file.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->dtype, SafetensorsDtype::F16);
  EXPECT_EQ(bytes_of(file.data(*b)), std::string("\x00\x3c\x00\x38", 4));
  EXPECT_EQ(file.find("c"), nullptr);
  EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
}

TEST(SafetensorsWriter, WritesTheReferenceLayout) {
  ScratchDir dir;
  const float values[2] = {1.0f, 2.0f};
  SafetensorsWriter::write(dir / "x.safetensors",
                           {{"x", SafetensorsDtype::F32, {2}, values, sizeof(values)}},
                           {{"format", "pt"}});
  // What the reference implementation writes: compact JSON, metadata first, each tensor's keys
  // as dtype, shape, data_offsets, spaces up to a multiple of 8, then the data.
  std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(header.size(), 85u);
  header += "   ";  // 85 -> 88
  const std::string expected =
      raw_safetensors(header, std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8));
  EXPECT_EQ(test::read_file(dir / "x.safetensors"), expected);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp"));
}

std::string random_bytes(std::size_t n, std::mt19937& rng, bool boolean) {
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(boolean ? rng() % 2 : rng() % 256);
  return out;
}

TEST(SafetensorsWriter, EveryDtypeRoundTripsBitExactly) {
  ScratchDir dir;
  std::mt19937 rng(7);
  const std::vector<SafetensorsDtype> dtypes = {
      SafetensorsDtype::F64, SafetensorsDtype::F32, SafetensorsDtype::F16, SafetensorsDtype::BF16,
      SafetensorsDtype::I64, SafetensorsDtype::I32, SafetensorsDtype::I16, SafetensorsDtype::I8,
      SafetensorsDtype::U8,  SafetensorsDtype::BOOL};
  std::vector<std::string> payloads;
  std::vector<TensorToWrite> tensors;
  for (SafetensorsDtype dtype : dtypes) {
    const std::string name = "t_" + std::string(safetensors_dtype_name(dtype));
    payloads.push_back(
        random_bytes(15 * safetensors_dtype_size(dtype), rng, dtype == SafetensorsDtype::BOOL));
    if (dtype == SafetensorsDtype::BF16) {
      // NaN with payload, +inf, -0, smallest denormal, a negative NaN: all must survive.
      const std::uint16_t specials[] = {0x7fc1, 0x7f80, 0x8000, 0x0001, 0xff81};
      std::memcpy(payloads.back().data(), specials, sizeof(specials));
    }
    tensors.push_back({name, dtype, {3, 5}, nullptr, payloads.back().size()});
  }
  for (std::size_t i = 0; i < tensors.size(); ++i) tensors[i].data = payloads[i].data();
  // A scalar and an empty tensor too.
  const std::string scalar = "\x01\x02\x03\x04";
  tensors.push_back({"scalar", SafetensorsDtype::I32, {}, scalar.data(), 4});
  tensors.push_back({"empty", SafetensorsDtype::F32, {0, 4}, nullptr, 0});
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "12"}};
  SafetensorsWriter::write(dir / "all.safetensors", tensors, metadata);

  // The data section starts at a multiple of 8, after a space-padded header.
  const std::string raw = test::read_file(dir / "all.safetensors");
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, raw.data(), 8);
  EXPECT_EQ(header_size % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + header_size + 15 * (8 + 4 + 2 + 2 + 8 + 4 + 2 + 1 + 1 + 1) + 4);

  const SafetensorsFile file = SafetensorsFile::open(dir / "all.safetensors");
  EXPECT_EQ(file.metadata(), metadata);
  ASSERT_EQ(file.tensors().size(), tensors.size());
  for (std::size_t i = 0; i < dtypes.size(); ++i) {
    const TensorEntry* entry = file.find(tensors[i].name);
    ASSERT_NE(entry, nullptr) << tensors[i].name;
    EXPECT_EQ(entry->dtype, dtypes[i]);
    EXPECT_EQ(entry->shape, (std::vector<std::int64_t>{3, 5}));
    EXPECT_EQ(bytes_of(file.data(*entry)), payloads[i]) << tensors[i].name;
    // Laid out in the order given, so every tensor is aligned here.
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(file.data(*entry).data) %
                  safetensors_dtype_size(dtypes[i]),
              0u);
  }
  // Laid out in the order given.
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(file.tensors()[i].name, tensors[i].name);
  }
  EXPECT_EQ(file.find("scalar")->numel(), 1u);
  EXPECT_EQ(bytes_of(file.data(*file.find("scalar"))), scalar);
  EXPECT_EQ(file.find("empty")->nbytes(), 0u);
}

TEST(SafetensorsWriter, FileWithNoTensors) {
  ScratchDir dir;
  SafetensorsWriter::write(dir / "e.safetensors", {});
  EXPECT_EQ(test::read_file(dir / "e.safetensors"), raw_safetensors("{}      ", ""));
  EXPECT_TRUE(SafetensorsFile::open(dir / "e.safetensors").tensors().empty());
}

TEST(SafetensorsWriter, LeavesNothingBehindWithoutCommit) {
  ScratchDir dir;
  const float values[2] = {1.0f, 2.0f};
  {
    SafetensorsWriter writer(dir / "x.safetensors", {{"x", SafetensorsDtype::F32, {2}}});
    EXPECT_TRUE(std::filesystem::exists(dir / "x.safetensors.tmp"));
    writer.write_tensor(values, sizeof(values));
    // Destroyed before commit(): as if the process died while writing.
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors.tmp"));
}

TEST(SafetensorsWriter, RejectsInconsistentInput) {
  ScratchDir dir;
  const float values[3] = {1.0f, 2.0f, 3.0f};
  EXPECT_THROW(SafetensorsWriter::write(dir / "x.safetensors",
                                        {{"x", SafetensorsDtype::F32, {2}, values, 12}}),
               std::invalid_argument);
  EXPECT_THROW(SafetensorsWriter::write(dir / "x.safetensors",
                                        {{"x", SafetensorsDtype::F32, {1}, values, 4},
                                         {"x", SafetensorsDtype::F32, {1}, values, 4}}),
               std::invalid_argument);
  SafetensorsWriter writer(dir / "y.safetensors", {{"y", SafetensorsDtype::F32, {3}}});
  EXPECT_THROW(writer.commit(), std::logic_error);  // y not written yet
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

TEST(SafetensorsWriter, UnwritableFolderIsAUserError) {
  EXPECT_THROW(SafetensorsWriter::write("/nonexistent-loom-dir/x.safetensors", {}), UserError);
}

}  // namespace
}  // namespace loom
