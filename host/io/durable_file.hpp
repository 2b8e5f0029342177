// Files a run must not lose: written completely or not at all, and checked. Every write goes to
// a temporary name, is fsync'ed, renamed into place, and the folder is fsync'ed; any failure
// (a full disk, say) throws UserError naming the file and the reason, so the run stops instead
// of going on with a half-written file.
#pragma once

#include <filesystem>
#include <string>

namespace loom {

// Replaces `file` with `bytes` atomically (a reader sees the old or the new file, never part).
void write_file_durably(const std::filesystem::path& file, const std::string& bytes);

// Appends `bytes` (whole lines) to `file` and fsyncs it; on a failed or short write the file is
// cut back to its previous length, so it never ends in a torn line.
void append_durably(const std::filesystem::path& file, const std::string& bytes);

// fsync of a folder: makes the renames and creations inside it durable.
void sync_directory(const std::filesystem::path& dir);

// Puts the complete folder `staged` in the place of `dir`. An existing `dir` is not deleted
// before `staged` is in place: the two are exchanged atomically (renameat2 RENAME_EXCHANGE),
// or, where the filesystem cannot, `dir` is first renamed to `<dir>.old` (which
// recover_replaced_folder puts back if the process dies in between). The old contents are then
// deleted.
void replace_folder(const std::filesystem::path& staged, const std::filesystem::path& dir);

// Test hooks (environment variables), to check that nothing is lost whatever moment a run dies
// at:
//  - LOOM_CRASH_AT=<point> kills the process with SIGKILL (as `kill -9` would) at one point:
//      write:<file name>     write_file_durably: the temporary file is complete and synced,
//                            before it is renamed over the file
//      replace:<folder name> replace_folder: the new folder is complete, before it takes the
//                            old one's place
//      aside:<folder name>   replace_folder's fallback: the old folder renamed to <name>.old,
//                            the new one not yet in place
//      replaced:<folder name> replace_folder: the new folder in place, the old contents not yet
//                            deleted
//  - LOOM_TEST_NO_RENAME_EXCHANGE=1 makes replace_folder take its fallback, as on filesystems
//    without RENAME_EXCHANGE.
// Unset, they do nothing.

// After a crash inside replace_folder's fallback: `<dir>.old` without `dir` is renamed back.
void recover_replaced_folder(const std::filesystem::path& dir);

}  // namespace loom
