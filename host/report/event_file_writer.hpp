// One TensorBoard event file (events.out.tfevents.*): a TFRecord file of tensorflow.Event
// messages. Each record is framed as TFRecord documents it:
//   uint64 length | uint32 masked CRC-32C of the length | payload | uint32 masked CRC-32C of it
// (all little-endian). The messages are encoded by hand (report/protobuf_writer.hpp) with the
// field numbers of TensorBoard's event.proto and summary.proto; docs/observability.md says why.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace loom {

class EventFileWriter {
 public:
  // Creates `path` (refusing one that exists) and writes the file_version event TensorBoard
  // expects first. Throws UserError naming the file when it cannot.
  EventFileWriter(const std::filesystem::path& path, double wall_time);
  EventFileWriter(const EventFileWriter&) = delete;
  EventFileWriter& operator=(const EventFileWriter&) = delete;
  ~EventFileWriter();

  // One event holding several scalars (Summary.Value.simple_value, a float32 as TensorBoard
  // stores it).
  void add_scalars(std::int64_t step, double wall_time,
                   const std::vector<std::pair<std::string, double>>& values);
  // A text summary (the text plugin's form: a scalar DT_STRING tensor with plugin_data "text");
  // TensorBoard renders it as Markdown.
  void add_text(std::int64_t step, double wall_time, const std::string& tag,
                const std::string& markdown);
  // Hands what was added to the kernel (no fsync): a crashed trainer loses nothing flushed.
  // Throws UserError naming the file on a failed write.
  void flush();

  const std::filesystem::path& path() const { return path_; }

 private:
  void add_event(const std::string& event);

  std::filesystem::path path_;
  int fd_ = -1;
  std::string pending_;
};

// A payload framed as one TFRecord record.
std::string tfrecord_frame(const std::string& payload);

// The payloads of the records of a TFRecord file, in order, up to the first record that is
// incomplete or fails a CRC check (a write cut short by a crash).
std::vector<std::string> read_tfrecords(const std::filesystem::path& path);

// Event.step (field 2) of an encoded Event; 0 when absent, as proto3 reads it.
std::int64_t event_step(const std::string& event);

}  // namespace loom
