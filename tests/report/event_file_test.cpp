// The pieces of TensorBoard event files: CRC-32C, the protobuf encoding, TFRecord framing, the
// reader used on --resume. Golden bytes computed by hand in plain Python (the definitions, as
// in tests/report/tensorboard_reader.py), not by the code under test.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "report/crc32c.hpp"
#include "report/event_file_writer.hpp"
#include "report/protobuf_writer.hpp"
#include "report/tensorboard_log.hpp"
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
  auto c = parse_train_config("report_to = [\"tensorboard\", \"none\", \"tensorboard\"]\n",
                              "cfg.toml", {});
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

namespace loom {
namespace {

// Every record of every event file in `runs`, as (step, payload).
std::vector<std::pair<std::int64_t, std::string>> all_events(const std::filesystem::path& runs) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(runs)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::pair<std::int64_t, std::string>> out;
  for (const auto& f : files)
    for (const auto& r : read_tfrecords(f)) out.emplace_back(event_step(r), r);
  return out;
}

int count_with(const std::vector<std::pair<std::int64_t, std::string>>& events,
               const std::string& text) {
  int n = 0;
  for (const auto& [step, e] : events) n += e.find(text) != std::string::npos;
  return n;
}

TEST(TensorBoardLog, EpochOncePerStepAndTheConfigOnce) {
  test::ScratchDir dir;
  {
    TensorBoardLog log(dir.path(), -1, "seed = 1");
    log.write(1, 0.5, {{"train/loss", 2.0}});
    log.write(1, 0.5, {{"eval/loss", 3.0}});  // the same step's evaluation: no second epoch
    log.write(2, 1.0, {{"train/loss", 1.5}});
  }
  const auto events = all_events(dir / "runs");
  ASSERT_EQ(events.size(), 5u);  // version, config, 3 x scalars
  EXPECT_EQ(count_with(events, "train/epoch"), 2);
  EXPECT_EQ(count_with(events, "seed = 1"), 1);
}

TEST(TensorBoardLog, ResumeCutsLaterEventsAndWritesTheConfigOnlyWhereMissing) {
  test::ScratchDir dir;
  {
    TensorBoardLog first(dir.path(), -1, "seed = 1");
    for (int step = 1; step <= 4; ++step)
      first.write(step, 0.1 * step, {{"train/loss", 1.0 * step}});
  }
  { TensorBoardLog resumed(dir.path(), 2, "seed = 1"); }
  auto events = all_events(dir / "runs");
  std::int64_t last = 0;
  for (const auto& [step, e] : events) last = std::max(last, step);
  EXPECT_EQ(last, 2);  // steps 3 and 4 cut
  EXPECT_EQ(count_with(events, "seed = 1"), 1);
  // Reported to TensorBoard only from the resume on: the config comes with the new file.
  test::ScratchDir other;
  { TensorBoardLog resumed(other.path(), 2, "seed = 2"); }
  EXPECT_EQ(count_with(all_events(other / "runs"), "seed = 2"), 1);
}

TEST(TensorBoardLog, SamplesAreReadAsWholeLinesOnly) {
  test::ScratchDir dir;
  test::write_file(dir / "samples.jsonl", "{\"step\":1,\"original\":\"old\"}\n");  // before the run
  TensorBoardLog log(dir.path(), -1, "");
  const std::string line =
      "{\"step\":6,\"original\":\"abc\",\"masked\":\"a[MASK]c\",\"generated\":\"abc\"}\n";
  {
    std::ofstream out(dir / "samples.jsonl", std::ios::app);
    out << line << line.substr(0, 20);  // the second line still being written
  }
  log.add_new_samples();
  auto events = all_events(dir / "runs");
  EXPECT_EQ(count_with(events, "samples/1"), 1);
  EXPECT_EQ(count_with(events, "samples/2"), 0);
  EXPECT_EQ(count_with(events, "old"), 0);
  {
    std::ofstream out(dir / "samples.jsonl", std::ios::app);
    out << line.substr(20);
  }
  log.add_new_samples();
  events = all_events(dir / "runs");
  EXPECT_EQ(count_with(events, "samples/2"), 1);
  EXPECT_EQ(count_with(events, "    a[MASK]c"), 2);
}

}  // namespace
}  // namespace loom
