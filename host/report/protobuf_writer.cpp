#include "report/protobuf_writer.hpp"

#include <cstring>

namespace loom {

void ProtobufWriter::raw_varint(std::uint64_t value) {
  while (value >= 0x80) {
    out_ += static_cast<char>((value & 0x7F) | 0x80);
    value >>= 7;
  }
  out_ += static_cast<char>(value);
}

void ProtobufWriter::little_endian(std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out_ += static_cast<char>((value >> (8 * i)) & 0xFF);
}

void ProtobufWriter::tag(int field, int wire_type) {
  raw_varint((static_cast<std::uint64_t>(field) << 3) | static_cast<std::uint64_t>(wire_type));
}

ProtobufWriter& ProtobufWriter::varint(int field, std::uint64_t value) {
  tag(field, 0);
  raw_varint(value);
  return *this;
}

ProtobufWriter& ProtobufWriter::float32(int field, float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  tag(field, 5);
  little_endian(bits, 4);
  return *this;
}

ProtobufWriter& ProtobufWriter::float64(int field, double value) {
  std::uint64_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  tag(field, 1);
  little_endian(bits, 8);
  return *this;
}

ProtobufWriter& ProtobufWriter::bytes(int field, const std::string& value) {
  tag(field, 2);
  raw_varint(value.size());
  out_ += value;
  return *this;
}

}  // namespace loom
