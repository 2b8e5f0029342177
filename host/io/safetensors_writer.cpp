#include "io/safetensors_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace loom {
namespace {

constexpr std::size_t kBufferBytes = 1 << 20;
// Linux writes at most this much per write() call.
constexpr std::size_t kMaxWriteBytes = 1 << 30;

std::size_t checked_nbytes(const TensorSpec& spec) {
  std::size_t nbytes = safetensors_dtype_size(spec.dtype);
  for (std::int64_t dim : spec.shape) {
    if (dim < 0) {
      throw std::invalid_argument("safetensors: tensor '" + spec.name + "' has a negative dim");
    }
    if (__builtin_mul_overflow(nbytes, static_cast<std::size_t>(dim), &nbytes)) {
      throw std::invalid_argument("safetensors: tensor '" + spec.name + "' is too large");
    }
  }
  return nbytes;
}

// The header in the reference implementation's form: compact JSON, `__metadata__` first, padded
// with spaces so that the data section starts at a multiple of 8 bytes.
std::string make_header(const std::vector<TensorSpec>& tensors,
                        const std::vector<std::size_t>& nbytes,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorSpec& spec = tensors[i];
    header[spec.name] = {{"dtype", std::string(safetensors_dtype_name(spec.dtype))},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + nbytes[i]}}};
    offset += nbytes[i];
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& e) {  // a name or metadata that is not UTF-8
    throw std::invalid_argument(std::string("safetensors header: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

}  // namespace

void SafetensorsWriter::write(const std::filesystem::path& path,
                              const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const TensorToWrite& tensor : tensors) {
    specs.push_back({tensor.name, tensor.dtype, tensor.shape});
  }
  SafetensorsWriter writer(path, std::move(specs), metadata);
  for (const TensorToWrite& tensor : tensors) writer.write_tensor(tensor.data, tensor.nbytes);
  writer.commit();
}

SafetensorsWriter::SafetensorsWriter(std::filesystem::path path, std::vector<TensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");
  tmp_path_ = path_;
  tmp_path_ += ".tmp";
  std::set<std::string> names;
  for (const TensorSpec& spec : tensors_) {
    if (spec.name == "__metadata__" || !names.insert(spec.name).second) {
      throw std::invalid_argument("safetensors: tensor name '" + spec.name +
                                  "' is reserved or repeated in " + path_.string());
    }
    nbytes_.push_back(checked_nbytes(spec));
  }
  const std::string header = make_header(tensors_, nbytes_, metadata);

  fd_ = ::open(tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw UserError("cannot create " + tmp_path_.string() + ": " + std::strerror(errno));
  }
  buffer_.reserve(kBufferBytes);
  try {
    unsigned char length[8];
    std::uint64_t size = header.size();
    for (unsigned char& byte : length) {
      byte = static_cast<unsigned char>(size & 0xff);
      size >>= 8;
    }
    write_bytes(length, sizeof(length));
    write_bytes(header.data(), header.size());
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    std::error_code ignored;
    std::filesystem::remove(tmp_path_, ignored);
    throw;
  }
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ignored;
    std::filesystem::remove(tmp_path_, ignored);
  }
}

void SafetensorsWriter::write_tensor(const void* data, std::size_t nbytes) {
  if (next_tensor_ >= tensors_.size()) {
    throw std::logic_error("SafetensorsWriter: more tensors written than declared for " +
                           path_.string());
  }
  const TensorSpec& spec = tensors_[next_tensor_];
  if (nbytes != nbytes_[next_tensor_]) {
    throw std::invalid_argument("safetensors: tensor '" + spec.name + "' has " +
                                std::to_string(nbytes) + " bytes, its dtype and shape need " +
                                std::to_string(nbytes_[next_tensor_]));
  }
  if (nbytes > 0 && data == nullptr) {
    throw std::invalid_argument("safetensors: tensor '" + spec.name + "' has no data");
  }
  write_bytes(data, nbytes);
  ++next_tensor_;
}

void SafetensorsWriter::write_bytes(const void* data, std::size_t nbytes) {
  if (fd_ < 0) throw std::logic_error("SafetensorsWriter: already committed " + path_.string());
  const char* bytes = static_cast<const char*>(data);
  if (nbytes < kBufferBytes) {
    if (buffer_.size() + nbytes > kBufferBytes) flush_buffer();
    buffer_.insert(buffer_.end(), bytes, bytes + nbytes);
    return;
  }
  flush_buffer();
  write_to_file(bytes, nbytes);
}

void SafetensorsWriter::flush_buffer() {
  write_to_file(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void SafetensorsWriter::write_to_file(const char* bytes, std::size_t nbytes) {
  while (nbytes > 0) {
    const ssize_t written = ::write(fd_, bytes, std::min(nbytes, kMaxWriteBytes));
    if (written < 0) {
      if (errno == EINTR) continue;
      throw UserError("cannot write " + tmp_path_.string() + ": " + std::strerror(errno));
    }
    bytes += written;
    nbytes -= static_cast<std::size_t>(written);
  }
}

void SafetensorsWriter::commit() {
  if (next_tensor_ != tensors_.size()) {
    throw std::logic_error("SafetensorsWriter: " + std::to_string(next_tensor_) + " of " +
                           std::to_string(tensors_.size()) + " tensors written to " +
                           path_.string());
  }
  flush_buffer();
  const bool synced = ::fsync(fd_) == 0;
  const int sync_errno = errno;
  const bool closed = ::close(fd_) == 0;
  fd_ = -1;
  if (!synced || !closed) {
    throw UserError("cannot write " + tmp_path_.string() + ": " +
                    std::strerror(synced ? errno : sync_errno));
  }
  std::error_code error;
  std::filesystem::rename(tmp_path_, path_, error);
  if (error) {
    throw UserError("cannot rename " + tmp_path_.string() + " to " + path_.string() + ": " +
                    error.message());
  }
  committed_ = true;
}

}  // namespace loom
