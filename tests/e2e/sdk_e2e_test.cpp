// The SDK as a third party uses it: install loom, build the example plugin out of tree with
// find_package(loom_sdk), and train with it.
#include <gtest/gtest.h>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

TEST(SdkE2E, ExamplePluginBuiltOutOfTreeAgainstTheInstalledSdkTrains) {
  auto dir = fresh_dir("sdk");
  const std::string cmake = shell_quote(LOOM_CMAKE_COMMAND);
  auto install = run_command(cmake + " --install " + shell_quote(LOOM_BINARY_DIR) + " --prefix " +
                             shell_quote((dir / "prefix").string()));
  ASSERT_EQ(install.exit_code, 0) << install.output;
  ASSERT_TRUE(fs::exists(dir / "prefix" / "include" / "loom" / "sdk.hpp"));
  // A copy of the example, so nothing of the source tree is reachable from it.
  fs::copy(fs::path(LOOM_SOURCE_DIR) / "plugins" / "examples" / "label_smoothing", dir / "src",
           fs::copy_options::recursive);
  auto configure = run_command(cmake + " -S " + shell_quote((dir / "src").string()) + " -B " +
                               shell_quote((dir / "build").string()) + " -DCMAKE_BUILD_TYPE=Release" +
                               " -DCMAKE_PREFIX_PATH=" + shell_quote((dir / "prefix").string()));
  ASSERT_EQ(configure.exit_code, 0) << configure.output;
  auto build = run_command(cmake + " --build " + shell_quote((dir / "build").string()));
  ASSERT_EQ(build.exit_code, 0) << build.output;
  const auto plugin = dir / "build" / "liblabel_smoothing.so";
  ASSERT_TRUE(fs::exists(plugin));

  // The installed trainer lists it with its config key ...
  const std::string trainer = (dir / "prefix" / "bin" / "trainer").string();
  auto listed = run_command(shell_quote(trainer) + " plugins --plugin " + shell_quote(plugin.string()));
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("label_smoothing 1.0"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("epsilon"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("SDK ABI 1."), std::string::npos) << listed.output;

  // ... and trains with it. With epsilon = 0 its loss is exactly the host's causal loss, so
  // the two runs must log the same losses; with epsilon = 0.1 the loss still falls.
  write_file(dir / "causal.toml", tiny_config(dir / "causal", 6));
  write_file(dir / "ls0.toml", tiny_config(dir / "ls0", 6, "") + "\n[label_smoothing]\nepsilon = 0.0\n");
  write_file(dir / "ls.toml", tiny_config(dir / "ls", 40, "") + "\n[label_smoothing]\nepsilon = 0.1\n");
  ASSERT_EQ(run_trainer({"--config", (dir / "causal.toml").string(), "--no-progress"}).exit_code, 0);
  auto r0 = run_command(shell_quote(trainer) + " --config " + shell_quote((dir / "ls0.toml").string()) +
                        " --plugin " + shell_quote(plugin.string()) + " --no-progress");
  ASSERT_EQ(r0.exit_code, 0) << r0.output;
  auto a = train_losses(dir / "causal"), b = train_losses(dir / "ls0");
  ASSERT_EQ(a.size(), 6u);
  for (auto& [step, loss] : a) EXPECT_NEAR(b[step], loss, 1e-5 * loss) << "step " << step;
  auto r = run_command(shell_quote(trainer) + " --config " + shell_quote((dir / "ls.toml").string()) +
                       " --plugin " + shell_quote(plugin.string()) + " --no-progress");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto l = train_losses(dir / "ls");
  EXPECT_LT(l[40], l[1] * 0.7);
  EXPECT_TRUE(read_metrics(dir / "ls").back().contains("train/ce_loss"));
}

}  // namespace
}  // namespace loom::test
