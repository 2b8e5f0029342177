#include <gtest/gtest.h>

#include <cstdlib>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "plugins/plugin_library.hpp"
#include "plugins/plugin_search_path.hpp"
#include "plugins/plugin_set.hpp"
#include "support/process.hpp"

namespace loom {
namespace {
namespace fs = std::filesystem;

fs::path fixture(const std::string& kind) {
  return fs::path(LOOM_FIXTURE_DIR) / ("libfixture_" + kind + ".so");
}

template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(PluginLibrary, LoadsAPluginAndReadsItsHandshake) {
  auto lib = PluginLibrary::load(fixture("plain"));
  EXPECT_EQ(lib->info().name, "plain");
  EXPECT_EQ(lib->info().abi_major, LOOM_SDK_ABI_MAJOR);
  auto plugin = lib->create();
  lib.reset();  // the object keeps its library alive
  EXPECT_EQ(plugin->info().name, "plain");
  EXPECT_EQ(plugin->config_schema().size(), 6u);  // scale, own_loss, stop_at, save_at, evaluate_at, stop_on_rank
}

TEST(PluginLibrary, RefusesOtherAbiNamingFileAndBothVersions) {
  auto msg = error_of([] { PluginLibrary::load(fixture("bad_abi")); });
  EXPECT_NE(msg.find(fixture("bad_abi").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("ABI 99." + std::to_string(LOOM_SDK_ABI_MINOR)), std::string::npos) << msg;
  EXPECT_NE(msg.find("ABI " + std::to_string(LOOM_SDK_ABI_MAJOR) + "." + std::to_string(LOOM_SDK_ABI_MINOR)),
            std::string::npos)
      << msg;
}

std::string abi(int major, int minor) { return std::to_string(major) + "." + std::to_string(minor); }

// Versioning (docs/writing-a-plugin.md): a plugin built for an older minor loads, and the host
// reads only the record fields that minor had; a newer minor is refused, saying what to do.
TEST(PluginLibrary, LoadsAPluginBuiltForSdk10) {
  auto old = PluginLibrary::load(fixture("v1_0"));
  EXPECT_EQ(old->info().abi_major, 1);
  EXPECT_EQ(old->info().abi_minor, 0);
  EXPECT_EQ(old->info().compiler, "") << "a 1.0 record has no compiler field";
  EXPECT_FALSE(old->info().supports(sdk::kMinorControlAndLoad));
  auto current = PluginLibrary::load(fixture("plain"));
  EXPECT_EQ(current->info().abi_minor, LOOM_SDK_ABI_MINOR);
  EXPECT_EQ(current->info().compiler, __VERSION__);
  EXPECT_TRUE(current->info().supports(sdk::kMinorControlAndLoad));
}

TEST(PluginLibrary, RefusesANewerMinorSayingWhatToDo) {
  auto msg = error_of([] { PluginLibrary::load(fixture("newer")); });
  EXPECT_NE(msg.find("built for loom SDK ABI " + abi(LOOM_SDK_ABI_MAJOR, LOOM_SDK_ABI_MINOR + 1) +
                     ", newer than this trainer's ABI " + abi(LOOM_SDK_ABI_MAJOR, LOOM_SDK_ABI_MINOR)),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("upgrade the trainer"), std::string::npos) << msg;
}

TEST(PluginLibrary, RefusesARecordSmallerThanSdk10s) {
  auto msg = error_of([] { PluginLibrary::load(fixture("small_record")); });
  EXPECT_NE(msg.find("malformed handshake record"), std::string::npos) << msg;
  EXPECT_NE(msg.find("less than the SDK 1.0 record"), std::string::npos) << msg;
}

TEST(PluginLibrary, RefusesFilesThatAreNotLoomPlugins) {
  auto dir = test::fresh_dir("not-plugins");
  EXPECT_NE(error_of([&] { PluginLibrary::load(dir / "missing.so"); }).find("file not found"), std::string::npos);
  // (Longer than an ELF header, else the loader says "file too short".)
  test::write_file(dir / "libtext.so", std::string(4, '\n') + std::string(200, 'x') + "\n");
  // Says so, in the loader's own words.
  const std::string text_error = error_of([&] { PluginLibrary::load(dir / "libtext.so"); });
  EXPECT_NE(text_error.find("libtext.so: not a shared library ("), std::string::npos) << text_error;
  EXPECT_NE(text_error.find("invalid ELF header"), std::string::npos) << text_error;
  // A real shared library without the loom entry points: the trainer's own dependency.
  fs::path libz;
  for (const char* p : {"/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib64/libz.so.1"})
    if (fs::exists(p)) libz = p;
  if (!libz.empty())
    EXPECT_NE(error_of([&] { PluginLibrary::load(libz); }).find("not a loom plugin"), std::string::npos);
}

TEST(PluginSearchPath, ResolvesNamesThroughLoomPluginPath) {
  setenv("LOOM_PLUGIN_PATH", ("/nonexistent:" + std::string(LOOM_FIXTURE_DIR)).c_str(), 1);
  EXPECT_EQ(resolve_plugin("fixture_plain"), fixture("plain").lexically_normal());
  EXPECT_EQ(resolve_plugin("libfixture_plain.so"), fixture("plain").lexically_normal());
  auto msg = error_of([] { resolve_plugin("no_such_plugin"); });
  EXPECT_NE(msg.find("plugin 'no_such_plugin' not found"), std::string::npos) << msg;
  EXPECT_NE(msg.find(LOOM_FIXTURE_DIR), std::string::npos) << msg;
  unsetenv("LOOM_PLUGIN_PATH");
}

TEST(PluginSet, TwoLossOwnersAreAConfigError) {
  auto set = PluginSet::load({fixture("loss_a").string(), fixture("loss_b").string()});
  EXPECT_FALSE(set.owns_loss()) << "owners are known only after configure()";
  auto msg = error_of([&] { set.configure(parse_train_config("", "c.toml"), {}); });
  EXPECT_NE(msg.find("'loss_a' and 'loss_b' both provide the loss"), std::string::npos) << msg;
}

// The handshake's name and PluginInfo::name must agree; a plugin asked for by name must carry
// that name (a library file named like another plugin does not stand in for it).
TEST(PluginSet, NamesMustAgree) {
  auto msg = error_of([] { PluginSet::load({fixture("name_mismatch").string()}); });
  EXPECT_NE(msg.find("its handshake names it 'name_mismatch' but its info() says 'another_name'"),
            std::string::npos) << msg;
  auto dir = test::fresh_dir("shadow");
  fs::copy_file(fixture("plain"), dir / "libhello.so");
  setenv("LOOM_PLUGIN_PATH", dir.c_str(), 1);
  msg = error_of([] { PluginSet::load({"hello"}); });
  unsetenv("LOOM_PLUGIN_PATH");
  EXPECT_NE(msg.find("plugin 'hello': " + (dir / "libhello.so").string() + " holds plugin 'fixture', not 'hello'"),
            std::string::npos) << msg;
  // By path, the same file loads under the name it carries.
  auto set = PluginSet::load({(dir / "libhello.so").string()});
  EXPECT_EQ(set.plugins().at(0).name, "fixture");
  // By name, a plugin found under its own name loads (the build's plugin folder).
  EXPECT_EQ(PluginSet::load({"diffusion"}).plugins().at(0).name, "diffusion");
  EXPECT_EQ(PluginSet::load({"libdiffusion.so"}).plugins().at(0).name, "diffusion");
}

// A plugin may decide from its config whether it owns the loss: the host asks after configure().
TEST(PluginSet, OwnershipIsAskedAfterConfigure) {
  auto set = PluginSet::load({fixture("plain").string()});
  set.configure(parse_train_config("", "c.toml"), {});
  EXPECT_FALSE(set.owns_loss());
  set.configure(parse_train_config("[plain]\nown_loss = true\n", "c.toml"), {});
  ASSERT_TRUE(set.owns_loss());
  EXPECT_EQ(set.loss_owner()->name, "plain");
}

// A hook added in 1.2 (on_load) is called on the 1.2 plugin and not on the 1.0 one, which has
// no vtable slot for it (calling it would jump through whatever follows its vtable).
TEST(PluginSet, HooksOfANewerMinorAreCalledOnlyOnPluginsBuiltForIt) {
  auto dir = test::fresh_dir("minor-gating");
  auto set = PluginSet::load({fixture("plain").string(), fixture("v1_0").string()});
  sdk::RunInfo run;
  run.output_dir = dir.string();
  set.configure(parse_train_config("", "c.toml"), run);
  sdk::TrainerState state;
  state.step = 7;
  set.on_load(state, "/some/checkpoint-7");
  EXPECT_EQ(test::read_file(dir / "fixture_plain_load.txt"), "step 7 /some/checkpoint-7\n");
  EXPECT_FALSE(fs::exists(dir / "fixture_v1_0_load.txt"));
  // The hooks both minors have reach both.
  set.on_train_end(state);
  EXPECT_EQ(test::read_file(dir / "fixture_plain_train_end.txt"), "step 7\n");
  EXPECT_EQ(test::read_file(dir / "fixture_v1_0_train_end.txt"), "step 7\n");
}

// A plugin's attention that shows later tokens, with the host's causal loss, is warned about;
// with a plugin loss (which may well want bidirectional attention) it is not.
TEST(PluginSet, WarnsWhenTheCausalLossSeesLaterTokens) {
  sdk::Batch b;
  b.input_ids = torch::zeros({1, 4}, torch::kLong);
  auto alone = PluginSet::load({fixture("bidirectional").string()});
  alone.configure(parse_train_config("", "c.toml"), {});
  EXPECT_TRUE(alone.warnings().empty()) << "nothing is known before the first batch";
  alone.attention(b, {});
  ASSERT_EQ(alone.warnings().size(), 1u);
  EXPECT_NE(alone.warnings()[0].find("plugin 'bidirectional' lets positions attend to later tokens"),
            std::string::npos) << alone.warnings()[0];
  alone.attention(b, {});
  EXPECT_EQ(alone.warnings().size(), 1u) << "said once";
  auto with_loss = PluginSet::load({fixture("bidirectional").string(), fixture("loss_a").string()});
  with_loss.configure(parse_train_config("", "c.toml"), {});
  with_loss.attention(b, {});
  EXPECT_TRUE(with_loss.warnings().empty());
}

TEST(PluginSet, HookExceptionsNameThePluginAndTheHook) {
  auto set = PluginSet::load({fixture("thrower").string()});
  sdk::Batch b;
  auto msg = error_of([&] { set.transform_batch(b, {}); });
  EXPECT_EQ(msg, "plugin 'thrower' failed in hook transform_batch: boom");
}

TEST(PluginSet, ValidatesPluginTablesAndRejectsOrphanTables) {
  auto set = PluginSet::load({fixture("plain").string()});
  auto cfg = parse_train_config("[plain]\nscale = -1.0\n", "c.toml");
  // Where the value was given: line 2, column 9 (after "scale = ").
  EXPECT_NE(error_of([&] { set.configure(cfg, {}); }).find("c.toml:2:9: plain.scale = -1 is out of range"),
            std::string::npos) << error_of([&] { set.configure(cfg, {}); });
  cfg = parse_train_config("[plian]\nscale = 2.0\n", "c.toml");
  auto msg = error_of([&] { set.configure(cfg, {}); });
  EXPECT_NE(msg.find("table [plian] belongs to no loaded plugin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean [plain]"), std::string::npos) << msg;
  cfg = parse_train_config("[plain]\nscale = 2.0\n", "c.toml");
  EXPECT_NO_THROW(set.configure(cfg, {}));
}

}  // namespace
}  // namespace loom
