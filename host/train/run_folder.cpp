#include "train/run_folder.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "errors.hpp"

namespace loom {
namespace fs = std::filesystem;

RunFolderLock::RunFolderLock(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw UserError("output_dir " + dir.string() + ": cannot create: " + ec.message());
  const fs::path file = dir / ".loom.lock";
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw UserError("output_dir " + dir.string() + ": cannot open " + file.string() + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {0};
    const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    ::close(fd_);
    fd_ = -1;
    std::string holder = n > 0 ? std::string(buf, std::size_t(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK)
      throw UserError("output_dir " + dir.string() + " is in use by another trainer" +
                      (holder.empty() ? std::string() : " (pid " + holder + ")") +
                      "; wait for it to finish, or choose another output_dir");
    throw UserError("output_dir " + dir.string() + ": cannot lock " + file.string() + ": " + std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
}

RunFolderLock::RunFolderLock(RunFolderLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }

RunFolderLock& RunFolderLock::operator=(RunFolderLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

RunFolderLock::~RunFolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing drops the flock
}

void prepare_fresh_run_folder(const fs::path& dir, bool overwrite) {
  static const std::regex run_entry(R"((checkpoint-[0-9]+|final)(\.tmp|\.old)?|metrics\.jsonl|samples\.jsonl|runs)");
  std::vector<fs::path> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!std::regex_match(name, run_entry)) continue;
    if (name == "metrics.jsonl" && fs::file_size(e.path(), ec) == 0) continue;
    found.push_back(e.path());
  }
  if (found.empty()) return;
  std::sort(found.begin(), found.end());
  if (!overwrite) {
    std::string list;
    for (std::size_t i = 0; i < found.size() && i < 4; ++i)
      list += (list.empty() ? "" : ", ") + found[i].filename().string();
    if (found.size() > 4) list += ", ...";
    throw UserError("output_dir " + dir.string() + " already holds a run (" + list +
                    "); continue it with --resume, or start over with --overwrite (removes them)");
  }
  for (const auto& p : found) {
    fs::remove_all(p, ec);
    if (ec) throw UserError("--overwrite: cannot remove " + p.string() + ": " + ec.message());
  }
}

}  // namespace loom
