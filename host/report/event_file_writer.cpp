#include "report/event_file_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "errors.hpp"
#include "report/crc32c.hpp"
#include "report/protobuf_writer.hpp"

namespace loom {
namespace {

// Field numbers of TensorBoard's event.proto / summary.proto / tensor.proto.
namespace event {
constexpr int kWallTime = 1, kStep = 2, kFileVersion = 3, kSummary = 5;
}
namespace summary {
constexpr int kValue = 1;  // Summary.value (repeated)
}
namespace value {
constexpr int kTag = 1, kSimpleValue = 2, kTensor = 8, kMetadata = 9;
}
namespace metadata {
constexpr int kPluginData = 1, kDataClass = 4;  // SummaryMetadata
constexpr int kPluginName = 1;                  // SummaryMetadata.PluginData
constexpr int kDataClassTensor = 2;             // DataClass.DATA_CLASS_TENSOR
}  // namespace metadata
namespace tensor {
constexpr int kDtype = 1, kShape = 2, kStringVal = 8;
constexpr int kDtString = 7;  // DataType.DT_STRING
}  // namespace tensor

void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

std::uint64_t get_le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return v;
}

ProtobufWriter event_header(std::int64_t step, double wall_time) {
  ProtobufWriter e;
  e.float64(event::kWallTime, wall_time);
  if (step != 0) e.int64(event::kStep, step);  // proto3: 0 is the default, left out
  return e;
}

}  // namespace

std::string tfrecord_frame(const std::string& payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  put_le(out, payload.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += payload;
  put_le(out, masked_crc32c(payload.data(), payload.size()), 4);
  return out;
}

std::vector<std::string> read_tfrecords(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(path.string() + ": cannot read");
  std::stringstream s;
  s << in.rdbuf();
  const std::string bytes = s.str();
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::vector<std::string> records;
  std::size_t at = 0;
  while (bytes.size() - at >= 16) {  // the smallest record: an empty payload
    const std::uint64_t length = get_le(p + at, 8);
    if (get_le(p + at + 8, 4) != masked_crc32c(p + at, 8)) break;
    if (length > bytes.size() - at - 16) break;
    const std::size_t body = at + 12;
    if (get_le(p + body + length, 4) != masked_crc32c(p + body, length)) break;
    records.emplace_back(bytes, body, length);
    at = body + length + 4;
  }
  return records;
}

std::int64_t event_step(const std::string& event) {
  const auto* p = reinterpret_cast<const unsigned char*>(event.data());
  const std::size_t n = event.size();
  std::size_t at = 0;
  auto varint = [&](std::uint64_t& v) {
    v = 0;
    for (int shift = 0; at < n && shift < 64; shift += 7) {
      const unsigned char b = p[at++];
      v |= std::uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  };
  while (at < n) {
    std::uint64_t key, v;
    if (!varint(key)) break;
    const int field = int(key >> 3), wire = int(key & 7);
    if (wire == 0) {
      if (!varint(v)) break;
      if (field == event::kStep) return static_cast<std::int64_t>(v);
    } else if (wire == 1) {
      at += 8;
    } else if (wire == 5) {
      at += 4;
    } else if (wire == 2) {
      if (!varint(v) || v > n - at) break;
      at += std::size_t(v);
    } else {
      break;  // groups: not in an Event
    }
  }
  return 0;
}

EventFileWriter::EventFileWriter(const std::filesystem::path& path, double wall_time)
    : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw UserError(path.string() + ": cannot create event file: " + std::strerror(errno));
  // "brain.Event:2": the version TensorBoard's own writers put first in every file.
  add_event(event_header(0, wall_time).bytes(event::kFileVersion, "brain.Event:2").encoded());
  flush();
}

EventFileWriter::~EventFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventFileWriter::add_event(const std::string& event) { pending_ += tfrecord_frame(event); }

void EventFileWriter::add_scalars(std::int64_t step, double wall_time,
                                  const std::vector<std::pair<std::string, double>>& values) {
  ProtobufWriter s;
  for (const auto& [tag, v] : values) {
    ProtobufWriter val;
    val.bytes(value::kTag, tag).float32(value::kSimpleValue, static_cast<float>(v));
    s.message(summary::kValue, val);
  }
  add_event(event_header(step, wall_time).message(event::kSummary, s).encoded());
}

void EventFileWriter::add_text(std::int64_t step, double wall_time, const std::string& tag,
                               const std::string& markdown) {
  ProtobufWriter plugin;
  plugin.bytes(metadata::kPluginName, "text");
  ProtobufWriter meta;
  meta.message(metadata::kPluginData, plugin)
      .varint(metadata::kDataClass, metadata::kDataClassTensor);
  ProtobufWriter t;
  t.varint(tensor::kDtype, tensor::kDtString)
      .message(tensor::kShape, ProtobufWriter())  // no dimensions: a scalar
      .bytes(tensor::kStringVal, markdown);
  ProtobufWriter val;
  val.bytes(value::kTag, tag).message(value::kMetadata, meta).message(value::kTensor, t);
  ProtobufWriter s;
  s.message(summary::kValue, val);
  add_event(event_header(step, wall_time).message(event::kSummary, s).encoded());
}

void EventFileWriter::flush() {
  std::size_t done = 0;
  while (done < pending_.size()) {
    const ssize_t n = ::write(fd_, pending_.data() + done, pending_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? std::strerror(errno) : "nothing written";
      pending_.erase(0, done);
      throw UserError(path_.string() + ": cannot write event file: " + why);
    }
    done += std::size_t(n);
  }
  pending_.clear();
}

}  // namespace loom
