// The pieces of TensorBoard event files: CRC-32C, the protobuf encoding, TFRecord framing, the
// reader used on --resume. Golden bytes computed by hand in plain Python (the definitions, as
// in tests/report/tensorboard_reader.py), not by the code under test.
#include <gtest/gtest.h>

#include <fstream>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "report/crc32c.hpp"
#include "report/event_file_writer.hpp"
#include "report/protobuf_writer.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

std::string hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) out += std::string{digits[c >> 4], digits[c & 15]};
  return out;
}

TEST(EventFile, Crc32cMatchesTheCastagnoliCheckValue) {
  // "123456789" -> 0xE3069283 is the catalogued check value of CRC-32C (iSCSI).
  EXPECT_EQ(crc32c(std::string("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string()), 0u);
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

TEST(EventFile, EncodesAnEventAsTheWireFormatSays) {
  ProtobufWriter value;
  value.bytes(1, "a").float32(2, 0.25f);
  ProtobufWriter summary;
  summary.message(1, value);
  ProtobufWriter event;
  event.float64(1, 1.5).int64(2, 300).message(5, summary);
  EXPECT_EQ(hex(event.encoded()), "09000000000000f83f10ac022a0a0a080a0161150000803e");
  ProtobufWriter negative;  // int64 -2: ten bytes of two's complement varint
  negative.float64(1, 1.5).int64(2, -2);
  EXPECT_EQ(hex(negative.encoded()), "09000000000000f83f10feffffffffffffffff01");
  EXPECT_EQ(event_step(event.encoded()), 300);
  EXPECT_EQ(event_step(negative.encoded()), -2);
  EXPECT_EQ(event_step(ProtobufWriter().float64(1, 2.0).bytes(3, "brain.Event:2").encoded()), 0);
}

TEST(EventFile, FramesRecordsWithBothMaskedCrcs) {
  EXPECT_EQ(hex(tfrecord_frame("ab")), "020000000000000078270b3461621cb0f0f4");
}

TEST(EventFile, ReaderStopsAtATornOrDamagedRecord) {
  test::ScratchDir dir;
  const auto file = dir / "events";
  const std::string whole = tfrecord_frame("first") + tfrecord_frame("second");
  test::write_file(file, whole + tfrecord_frame("third").substr(0, 9));  // cut mid-header
  auto records = read_tfrecords(file);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1], "second");
  std::string damaged = whole;
  damaged[damaged.size() - 6] ^= 1;  // a payload byte of "second": its CRC no longer matches
  test::write_file(file, damaged);
  EXPECT_EQ(read_tfrecords(file).size(), 1u);
}

TEST(EventFile, WriterStartsWithTheFileVersionAndRefusesAnExistingFile) {
  test::ScratchDir dir;
  const auto file = dir / "events.out.tfevents.1.host";
  {
    EventFileWriter w(file, 1.5);
    w.add_scalars(7, 2.0, {{"train/loss", 0.5}});
    w.add_text(7, 2.0, "samples/1", "hello");
    w.flush();
  }
  auto records = read_tfrecords(file);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_NE(records[0].find("brain.Event:2"), std::string::npos);
  EXPECT_EQ(event_step(records[1]), 7);
  EXPECT_NE(records[2].find("hello"), std::string::npos);
  EXPECT_THROW(EventFileWriter(file, 1.0), UserError);
}

std::string report_to_error(const std::string& toml) {
  try {
    parse_train_config(toml, "cfg.toml", {});
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(ReportTo, TakesTensorboardAndNoneAndRefusesOthersNamingTheKey) {
  auto c = parse_train_config("report_to = [\"tensorboard\", \"none\", \"tensorboard\"]\n", "cfg.toml", {});
  EXPECT_EQ(c.report_to, std::vector<std::string>{"tensorboard"});
  EXPECT_TRUE(parse_train_config("report_to = [\"none\"]\n", "cfg.toml", {}).report_to.empty());
  EXPECT_TRUE(parse_train_config("", "cfg.toml", {}).report_to.empty());
  const std::string e = report_to_error("report_to = [\"wandb\"]\n");
  EXPECT_NE(e.find("cfg.toml:1:"), std::string::npos) << e;
  EXPECT_NE(e.find("report_to"), std::string::npos) << e;
  EXPECT_NE(e.find("wandb"), std::string::npos) << e;
  EXPECT_NE(report_to_error("report_to = \"tensorboard\"\n").find("report_to must be an array"),
            std::string::npos);
}

}  // namespace
}  // namespace loom
