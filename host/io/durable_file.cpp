#include "io/durable_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "errors.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& file, int err) {
  throw UserError("cannot " + what + " " + file.string() + ": " + std::strerror(err));
}

void write_all(int fd, const std::string& bytes, const fs::path& file) {
  const char* p = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write", file, errno);
    }
    p += n;
    left -= std::size_t(n);
  }
}

// LOOM_CRASH_AT (see the header): dies here, as a kill -9 at this moment would.
void crash_point(const char* kind, const fs::path& target) {
  const char* at = std::getenv("LOOM_CRASH_AT");
  if (!at || std::string(at) != std::string(kind) + ":" + target.filename().string()) return;
  std::fprintf(stderr, "LOOM_CRASH_AT=%s: killing this process\n", at);
  std::raise(SIGKILL);
}

bool rename_exchange_allowed() {
  const char* v = std::getenv("LOOM_TEST_NO_RENAME_EXCHANGE");
  return !(v && std::string(v) == "1");
}

}  // namespace

void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("open folder", dir, errno);
  const bool ok = ::fsync(fd) == 0 || errno == EINVAL;  // some filesystems cannot sync a folder
  const int err = errno;
  ::close(fd);
  if (!ok) fail("sync folder", dir, err);
}

void write_file_durably(const fs::path& file, const std::string& bytes) {
  const fs::path tmp = file.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("create", tmp, errno);
  try {
    write_all(fd, bytes, tmp);
    if (::fsync(fd) != 0) fail("write", tmp, errno);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("write", tmp, err);
  }
  crash_point("write", file);
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("rename " + tmp.string() + " to", file, err);
  }
  sync_directory(file.has_parent_path() ? file.parent_path() : fs::path("."));
}

void append_durably(const fs::path& file, const std::string& bytes) {
  const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("open", file, errno);
  struct stat st {};
  const off_t before = ::fstat(fd, &st) == 0 ? st.st_size : -1;
  try {
    write_all(fd, bytes, file);
    if (::fsync(fd) != 0) fail("write", file, errno);
  } catch (...) {
    if (before >= 0 && ::ftruncate(fd, before) == 0) ::fsync(fd);  // no torn line left behind
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void replace_folder(const fs::path& staged, const fs::path& dir) {
  std::error_code ec;
  crash_point("replace", dir);
  if (!fs::exists(dir, ec)) {
    if (::rename(staged.c_str(), dir.c_str()) != 0) fail("rename " + staged.string() + " to", dir, errno);
    sync_directory(dir.parent_path());
    return;
  }
#ifdef SYS_renameat2
  constexpr unsigned kRenameExchange = 2;  // RENAME_EXCHANGE (linux/fs.h)
  if (rename_exchange_allowed() &&
      ::syscall(SYS_renameat2, AT_FDCWD, staged.c_str(), AT_FDCWD, dir.c_str(), kRenameExchange) == 0) {
    sync_directory(dir.parent_path());
    crash_point("replaced", dir);
    fs::remove_all(staged, ec);  // now the old contents
    return;
  }
#endif
  // No atomic exchange here: move the old folder aside first, never delete it before the new
  // one is in place.
  const fs::path old = dir.string() + ".old";
  fs::remove_all(old, ec);
  if (::rename(dir.c_str(), old.c_str()) != 0) fail("rename " + dir.string() + " to", old, errno);
  crash_point("aside", dir);
  if (::rename(staged.c_str(), dir.c_str()) != 0) {
    const int err = errno;
    ::rename(old.c_str(), dir.c_str());
    fail("rename " + staged.string() + " to", dir, err);
  }
  sync_directory(dir.parent_path());
  crash_point("replaced", dir);
  fs::remove_all(old, ec);
}

void recover_replaced_folder(const fs::path& dir) {
  const fs::path old = dir.string() + ".old";
  std::error_code ec;
  if (fs::exists(old, ec) && !fs::exists(dir, ec)) fs::rename(old, dir, ec);
}

}  // namespace loom
