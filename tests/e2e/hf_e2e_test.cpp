// The Hugging Face side of the trainer's command line: tokenize and causal eval.
#include <gtest/gtest.h>

#include <cmath>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

TEST(HfE2E, TokenizeGivesHuggingFaceIdsForTheGoldenTexts) {
  const fs::path tok = fs::path(LOOM_SHARED_DIR) / "data" / "tokenizers" / "llama3";
  std::istringstream golden(read_file(tok / "golden.jsonl"));
  std::string stdin_text, expected;
  int n = 0;
  for (std::string line; std::getline(golden, line) && n < 10; ++n) {
    auto j = nlohmann::json::parse(line);
    stdin_text += nlohmann::json(j["text"]).dump() + "\n";
    expected += j["ids"].dump() + "\n";
  }
  auto dir = fresh_dir("tokenize");
  write_file(dir / "in.jsonl", stdin_text);
  auto r = run_command(shell_quote(LOOM_TRAINER_BIN) + " tokenize --tokenizer " + shell_quote(tok.string()) +
                       " < " + shell_quote((dir / "in.jsonl").string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, expected);
}

TEST(HfE2E, CausalEvalReportsNllPerTokenAndPerplexity) {
  auto dir = fresh_dir("eval-causal");
  write_file(dir / "cfg.toml", tiny_config(dir / "out", 30));
  ASSERT_EQ(run_trainer({"--config", (dir / "cfg.toml").string(), "--no-progress"}).exit_code, 0);
  write_file(dir / "data.jsonl", "{\"text\": \"Ada went to the park with three red apples.\"}\n");
  auto r = run_trainer({"eval", "--checkpoint", (dir / "out" / "final").string(), "--data",
                        (dir / "data.jsonl").string(), "--objective", "causal"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const double nll = j["nll_per_token"].get<double>();
  // A trained model beats the uniform guess over 259 byte-level tokens (ln 259 = 5.56).
  EXPECT_GT(nll, 0.0);
  EXPECT_LT(nll, std::log(259.0));
  EXPECT_NEAR(j["perplexity"].get<double>(), std::exp(nll), 1e-9 * std::exp(nll));
  EXPECT_EQ(j["objective"], "causal");
}

}  // namespace
}  // namespace loom::test
