// Files a run must not lose (io/durable_file, train/metrics_log, train/checkpoint): replaced
// atomically, never deleted before their replacement is complete, checked when written.
#include <gtest/gtest.h>

#include "errors.hpp"
#include "io/durable_file.hpp"
#include "support/files.hpp"
#include "train/checkpoint.hpp"
#include "train/metrics_log.hpp"
#include "train/run_folder.hpp"

namespace loom {
namespace {
namespace fs = std::filesystem;

TEST(DurableFiles, ReplaceFolderPutsTheNewFolderInPlaceAndDropsTheOld) {
  auto dir = test::fresh_dir("replace-folder");
  test::write_file(dir / "checkpoint-3" / "a.txt", "old");
  test::write_file(dir / "checkpoint-3.tmp" / "b.txt", "new");
  replace_folder(dir / "checkpoint-3.tmp", dir / "checkpoint-3");
  EXPECT_EQ(test::read_file(dir / "checkpoint-3" / "b.txt"), "new");
  EXPECT_FALSE(fs::exists(dir / "checkpoint-3" / "a.txt"));
  EXPECT_FALSE(fs::exists(dir / "checkpoint-3.tmp"));
  EXPECT_FALSE(fs::exists(dir / "checkpoint-3.old"));
}

// A crash between "move the old folder aside" and "move the new one in" (the fallback without
// an atomic exchange) leaves checkpoint-N.old: looking for checkpoints puts it back.
TEST(DurableFiles, AFolderLeftAsideByACrashIsPutBack) {
  auto dir = test::fresh_dir("recover-folder");
  test::write_file(dir / "checkpoint-2.old" / "x.txt", "kept");
  recover_replaced_folder(dir / "checkpoint-2");
  EXPECT_EQ(test::read_file(dir / "checkpoint-2" / "x.txt"), "kept");
  EXPECT_FALSE(fs::exists(dir / "checkpoint-2.old"));
}

// A full device: the error names the file and the reason, and nothing is half-written.
TEST(DurableFiles, AFailedWriteIsAnErrorNamingTheFile) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  try {
    append_durably("/dev/full", "{\"step\": 1}\n");
    ADD_FAILURE() << "writing to a full device succeeded";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot write /dev/full: No space left on device"), std::string::npos)
        << e.what();
  }
  auto dir = test::fresh_dir("durable-write");
  write_file_durably(dir / "state.json", "{\"step\": 1}\n");
  write_file_durably(dir / "state.json", "{\"step\": 2}\n");
  EXPECT_EQ(test::read_file(dir / "state.json"), "{\"step\": 2}\n");
  EXPECT_FALSE(fs::exists(dir / "state.json.tmp"));
  // A folder that does not exist: the error names the file.
  try {
    write_file_durably(dir / "missing" / "x.json", "{}");
    ADD_FAILURE();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "missing" / "x.json.tmp").string()), std::string::npos) << e.what();
  }
}

// On resume the history up to the checkpoint is kept (a torn last line and records after the
// step dropped), and new records are appended.
TEST(DurableFiles, MetricsLogKeepsTheHistoryOnResume) {
  auto dir = test::fresh_dir("metrics-resume");
  test::write_file(dir / "metrics.jsonl",
                   "{\"step\":1,\"train/loss\":3.0}\n{\"step\":2,\"train/loss\":2.5}\n"
                   "{\"step\":3,\"train/loss\":2.0}\n{\"step\":4,\"tra");
  MetricsLog log(dir, 2);
  EXPECT_EQ(test::read_file(dir / "metrics.jsonl"),
            "{\"step\":1,\"train/loss\":3.0}\n{\"step\":2,\"train/loss\":2.5}\n");
  log.write(3, 0.5, {{"train/loss", 1.5}});
  EXPECT_EQ(test::read_file(dir / "metrics.jsonl"),
            "{\"step\":1,\"train/loss\":3.0}\n{\"step\":2,\"train/loss\":2.5}\n"
            "{\"epoch\":0.5,\"step\":3,\"train/loss\":1.5}\n");
}

TEST(RunFolder, ASecondLockOnTheFolderIsRefusedNamingTheHolder) {
  auto dir = test::fresh_dir("run-lock");
  {
    RunFolderLock first(dir);
    EXPECT_EQ(test::read_file(dir / ".loom.lock"), std::to_string(::getpid()) + "\n");
    // flock locks belong to the open file: a second open in this process conflicts too.
    try {
      RunFolderLock second(dir);
      ADD_FAILURE() << "the folder was locked twice";
    } catch (const UserError& e) {
      EXPECT_NE(std::string(e.what()).find("is in use by another trainer (pid " + std::to_string(::getpid()) + ")"),
                std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(RunFolderLock again(dir)) << "released when its holder goes";
}

TEST(RunFolder, AFreshRunNeedsOverwriteWhereARunIs) {
  auto dir = test::fresh_dir("fresh-run");
  EXPECT_NO_THROW(prepare_fresh_run_folder(dir, false)) << "an empty folder";
  test::write_file(dir / "notes.txt", "mine");
  test::write_file(dir / "metrics.jsonl", "");
  EXPECT_NO_THROW(prepare_fresh_run_folder(dir, false)) << "other files and an empty log are no run";
  test::write_file(dir / "metrics.jsonl", "{\"step\":1}\n");
  test::write_file(dir / "checkpoint-5" / "model.safetensors", "x");
  test::write_file(dir / "final" / "config.json", "{}");
  try {
    prepare_fresh_run_folder(dir, false);
    ADD_FAILURE() << "a fresh run was allowed over an existing one";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("already holds a run (checkpoint-5, final, metrics.jsonl)"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("--overwrite"), std::string::npos);
  }
  prepare_fresh_run_folder(dir, true);
  EXPECT_FALSE(fs::exists(dir / "checkpoint-5"));
  EXPECT_FALSE(fs::exists(dir / "final"));
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
  EXPECT_EQ(test::read_file(dir / "notes.txt"), "mine") << "only the run's own files go";
}

}  // namespace
}  // namespace loom
