// Encodes one protocol-buffer message in the wire format, field by field. Enough for the few
// messages of TensorBoard's event files (report/event_file.hpp): varints, 32/64-bit fixed values,
// length-delimited bytes and nested messages. Fields are written in the order they are added.
#pragma once

#include <cstdint>
#include <string>

namespace loom {

class ProtobufWriter {
 public:
  // int32/int64/uint64/enum/bool fields (wire type 0). Negative int64 values take 10 bytes,
  // as the format says.
  ProtobufWriter& varint(int field, std::uint64_t value);
  ProtobufWriter& int64(int field, std::int64_t value) {
    return varint(field, static_cast<std::uint64_t>(value));
  }
  ProtobufWriter& float32(int field, float value);   // wire type 5, little-endian IEEE 754
  ProtobufWriter& float64(int field, double value);  // wire type 1
  ProtobufWriter& bytes(int field, const std::string& value);  // string/bytes (wire type 2)
  ProtobufWriter& message(int field, const ProtobufWriter& nested) {
    return bytes(field, nested.encoded());
  }

  const std::string& encoded() const { return out_; }

 private:
  void tag(int field, int wire_type);
  void raw_varint(std::uint64_t value);
  void little_endian(std::uint64_t value, int bytes);

  std::string out_;
};

}  // namespace loom
