// The output folder belongs to one run at a time.
//  - A lock file (<output_dir>/.loom.lock, flock'ed, holding the owner's pid) refuses a second
//    trainer on the same folder, naming the holder. The kernel drops the lock when its process
//    ends, however it ends, so a lock left by a dead process never blocks.
//  - A fresh run (no --resume) in a folder that already holds a run -- checkpoints, final/,
//    metrics -- is refused unless the user says --overwrite (transformers'
//    overwrite_output_dir), which removes that run's files first.
#pragma once

#include <filesystem>

namespace loom {

class RunFolderLock {
 public:
  RunFolderLock() = default;
  // Creates the folder if needed and takes its lock; throws UserError naming the pid of the
  // process that holds it.
  explicit RunFolderLock(const std::filesystem::path& dir);
  RunFolderLock(RunFolderLock&& other) noexcept;
  RunFolderLock& operator=(RunFolderLock&& other) noexcept;
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  ~RunFolderLock();

 private:
  int fd_ = -1;
};

// What a fresh run checks: throws UserError listing what the folder holds, unless `overwrite`,
// in which case those files and folders are removed.
void prepare_fresh_run_folder(const std::filesystem::path& dir, bool overwrite);

}  // namespace loom
