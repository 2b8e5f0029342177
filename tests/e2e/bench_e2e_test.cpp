// End-to-end: `trainer bench` runs the trainer's step on random tokens and reports numbers
// that agree with the shape (FLOPs counted by hand below) and with each other.
#include <gtest/gtest.h>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

nlohmann::json bench_json(const std::string& output) {
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '{') return nlohmann::json::parse(line);
  return {};
}

TEST(BenchE2E, CausalReportIsConsistentWithTheShape) {
  auto dir = fresh_dir("bench-causal");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 10));
  auto r = run_trainer({"bench", "--config", (dir / "cfg.toml").string(), "--steps", "2",
                        "--warmup", "1", "--set", "model.vocab_size=300"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = bench_json(r.output);
  ASSERT_FALSE(j.is_null()) << r.output;
  for (const char* k : {"tokens_per_s", "step_s", "flops_per_token", "achieved_gflops",
                        "peak_matmul_gflops", "mfu", "peak_rss_mb", "shapes"})
    EXPECT_TRUE(j.contains(k)) << k << " missing in " << j.dump();
  // Hidden 32, ffn 64, 1 layer, 2 heads of 16 (q: 32 wide), 1 kv head (16 wide), vocab 300,
  // seq 64. Matmul parameters per layer: q 32x32 + k, v 2x32x16 + o 32x32 + gate/up/down
  // 3x32x64 = 9216; LM head 32x300 = 9600; attention 12 x 64 x 32 = 24576 per token.
  // Causal loss on one-document random rows: 63 of every 64 positions are projected.
  EXPECT_DOUBLE_EQ(j["model_flops_per_token"].get<double>(), 6.0 * (9216 + 9600) + 24576);
  EXPECT_DOUBLE_EQ(j["lm_head_rows_per_token"].get<double>(), 63.0 / 64.0);
  EXPECT_NEAR(j["flops_per_token"].get<double>(), 6.0 * (9216 + 9600 * 63.0 / 64.0) + 24576, 1e-6);
  // tokens/s is the step's 4 x 64 tokens over the median step time.
  EXPECT_NEAR(j["tokens_per_s"].get<double>() * j["step_s"].get<double>(), 256.0, 1e-6);
  EXPECT_NEAR(j["achieved_gflops"].get<double>(),
              j["flops_per_token"].get<double>() * j["tokens_per_s"].get<double>() / 1e9, 1e-9);
  EXPECT_NEAR(j["mfu"].get<double>(),
              j["achieved_gflops"].get<double>() / j["peak_matmul_gflops"].get<double>(), 1e-12);
  EXPECT_GT(j["peak_rss_mb"].get<double>(), 0);
  EXPECT_EQ(j["shapes"]["vocab"], 300);
  EXPECT_EQ(j["shapes"]["seq"], 64);
  EXPECT_EQ(j["dtype"], "fp32");
  // Random tokens over 299 ids: the first loss is near log(300) (an untrained model).
  EXPECT_NEAR(j["loss_first"].get<double>(), std::log(300.0), 0.5);
  // No files: the bench reads no dataset and writes no output folder.
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// OpenMP waits are passive unless the user chose a policy (the program restarts itself with
// OMP_WAIT_POLICY=PASSIVE, see host/main.cpp); a policy the user set is kept.
TEST(BenchE2E, OpenMpWaitsArePassiveUnlessTheUserChose) {
  auto dir = fresh_dir("bench-omp");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 10));
  const std::string bench = shell_quote(LOOM_TRAINER_BIN) + " bench --config " + shell_quote((dir / "cfg.toml").string()) +
                            " --steps 1 --warmup 0";
  auto unset = run_command("env -u OMP_WAIT_POLICY OMP_NUM_THREADS=1 " + bench);
  ASSERT_EQ(unset.exit_code, 0) << unset.output;
  EXPECT_EQ(bench_json(unset.output)["omp_wait_policy"], "PASSIVE") << unset.output;
  auto chosen = run_command("OMP_WAIT_POLICY=ACTIVE OMP_NUM_THREADS=1 " + bench);
  ASSERT_EQ(chosen.exit_code, 0) << chosen.output;
  EXPECT_EQ(bench_json(chosen.output)["omp_wait_policy"], "ACTIVE") << chosen.output;
}

TEST(BenchE2E, DiffusionPluginProjectsOnlyMaskedPositions) {
  auto dir = fresh_dir("bench-diffusion");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 10, "plugins = [\"diffusion\"]\nbf16 = true\n"));
  auto r = run_trainer({"bench", "--config", (dir / "cfg.toml").string(), "--steps", "3",
                        "--warmup", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = bench_json(r.output);
  ASSERT_FALSE(j.is_null()) << r.output;
  EXPECT_EQ(j["dtype"], "bf16-autocast");
  // The diffusion loss scores the masked tokens only: t ~ U(0, 1) per row, so about half.
  const double share = j["lm_head_rows_per_token"].get<double>();
  EXPECT_GT(share, 0.05);
  EXPECT_LT(share, 0.95);
  EXPECT_LT(j["flops_per_token"].get<double>(), j["model_flops_per_token"].get<double>());
  EXPECT_TRUE(std::isfinite(j["loss_last"].get<double>()));
}

}  // namespace
}  // namespace loom::test
