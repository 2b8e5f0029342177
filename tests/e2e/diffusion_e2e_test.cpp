// End-to-end: the diffusion plugin loaded into the real trainer, then generate and eval on the
// checkpoint it wrote.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <sstream>
#include <vector>

#include "e2e/tiny_run.hpp"

namespace loom::test {
namespace {
namespace fs = std::filesystem;

const std::string kPlugin = std::string(LOOM_BINARY_DIR) + "/plugins/libdiffusion.so";

// A learnable task for masked prediction: each document repeats a random 3-letter motif, so a
// masked letter is recoverable from any visible letter of the same phase. Letters are uniform,
// so chance (and the best context-free guess) is about 1/26.
void write_motif_data(const fs::path& file) {
  std::mt19937 rng(7);
  std::string out;
  for (int d = 0; d < 600; ++d) {
    std::string motif;
    for (int i = 0; i < 3; ++i) motif += char('a' + rng() % 26);
    std::string text;
    while (text.size() < 60) text += motif;
    out += "{\"text\": \"" + text + "\"}\n";
  }
  write_file(file, out);
}

std::string diffusion_config(const fs::path& dir, int steps) {
  write_motif_data(dir / "motifs.jsonl");
  auto c = tiny_config(dir / "out", steps, "val_set_size = 0.05\neval_steps = " + std::to_string(steps) +
                                              "\neval_max_batches = 4\nsave_steps = 0\n");
  c.replace(c.find("hidden_size = 32"), 16, "hidden_size = 64");
  c.replace(c.find("intermediate_size = 64"), 22, "intermediate_size = 128");
  c.replace(c.find("num_attention_heads = 2"), 23, "num_attention_heads = 4");
  c = c.substr(0, c.find("[[datasets]]")) + "[[datasets]]\npath = \"" + (dir / "motifs.jsonl").string() + "\"\n";
  return c + "\n[diffusion]\nmin_mask_ratio = 0.0\nmax_mask_ratio = 1.0\ngeneration_interval = " +
         std::to_string(steps) + "\nnum_generation_samples = 1\ngeneration_steps = 8\n"
         "generation_max_length = 16\n";
}

// One trained checkpoint per test process (training is the slow part); CTest runs each test in
// its own process, in parallel, so the folder is per process.
const fs::path& trained() {
  static const fs::path dir = [] {
    auto d = fresh_dir("diffusion-" + std::to_string(getpid()));
    write_file(d / "cfg.toml", diffusion_config(d, 600));
    auto r = run_trainer({"--config", (d / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return d;
  }();
  return dir;
}

TEST(DiffusionE2E, LearnsToFillMasksWellAboveChance) {
  const auto& d = trained();
  auto rows = read_metrics(d / "out");
  ASSERT_FALSE(rows.empty());
  const auto& first = rows.front();
  double eval_acc = -1;
  for (const auto& r : rows)
    if (r.contains("eval/accuracy")) eval_acc = r["eval/accuracy"].get<double>();
  for (const char* k : {"train/accuracy", "train/mask_ratio", "train/num_masked_tokens", "train/avg_p_mask",
                        "train/ce_loss", "train/importance_weight_avg"})
    EXPECT_TRUE(first.contains(k)) << k << " in " << first.dump();
  // Letters are uniform (a context-free guess is right 1/26 of the time; guessing one of the
  // document's three letters, 1/3); the motif's phase gives up to about 0.7. Training must take
  // the model well past the first steps' level.
  double early = 0;
  int n = 0;
  for (const auto& r : rows)
    if (r.contains("train/accuracy") && r["step"].get<int>() <= 20) early += r["train/accuracy"].get<double>(), ++n;
  ASSERT_GT(n, 0);
  early /= n;
  EXPECT_GT(eval_acc, 0.5) << "eval accuracy after 600 steps";
  EXPECT_GT(eval_acc, early + 0.1) << "first 20 steps " << early << ", eval at the end " << eval_acc;
  // Samples were generated and logged, and the mask token was saved with the tokenizer.
  auto samples = read_file(d / "out" / "samples.jsonl");
  for (const char* k : {"\"step\"", "\"original\"", "\"masked\"", "\"generated\"", "\"mask_ratio\"", "\"accuracy\""})
    EXPECT_NE(samples.find(k), std::string::npos) << k;
  EXPECT_NE(read_file(d / "out" / "final" / "tokenizer.json").find("<|diffusion_mask|>"), std::string::npos);
}

TEST(DiffusionE2E, GenerateIsDeterministicForASeed) {
  const auto ckpt = (trained() / "out" / "final").string();
  std::vector<std::string> args = {"generate", "--checkpoint", ckpt, "--plugin", kPlugin,
                                   "--prompt", "qrsqrsqrs", "--complete", "16", "--steps", "8",
                                   "--temperature", "0.7", "--seed", "5"};
  auto a = run_trainer(args), b = run_trainer(args);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_NE(a.output.find("qrsqrsqrs"), std::string::npos) << a.output;
  EXPECT_EQ(a.output.find("[MASK]", a.output.find("Generated")), std::string::npos)
      << "everything is revealed by the last step:\n" << a.output;
}

TEST(DiffusionE2E, EvalReportsTheBoundWithItsStandardError) {
  const auto& d = trained();
  write_file(d / "eval.jsonl", "{\"text\": \"abcabcabcabcabcabcabcabc\"}\n{\"text\": \"xyzxyzxyzxyzxyzxyz\"}\n");
  auto r = run_trainer({"eval", "--checkpoint", (d / "out" / "final").string(), "--plugin", kPlugin,
                        "--data", (d / "eval.jsonl").string(), "--mc-samples", "8"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_GT(j["nll_bound_per_token"].get<double>(), 0.0);
  EXPECT_GT(j["stderr"].get<double>(), 0.0);
  EXPECT_EQ(j["mc_samples"], 8);
}

// The bound is per scored token of whole documents: the same documents evaluated packed, one per
// row (mostly padding), and with other micro-batch sizes agree within their standard errors.
// (Before, padding counted as tokens: one document per row read ~40% lower; and packing cut a
// document that did not fit in the rest of a row, scoring its pieces with less context.)
TEST(DiffusionE2E, EvalBoundDoesNotDependOnPackingOrBatchSize) {
  const auto& d = trained();
  std::mt19937 rng(11);
  std::string data;
  for (int len : {60, 33, 21, 45, 12, 27, 51, 18}) {
    std::string motif;
    for (int i = 0; i < 3; ++i) motif += char('a' + rng() % 26);
    std::string text;
    while (int(text.size()) < len) text += motif;
    data += "{\"text\": \"" + text.substr(0, std::size_t(len)) + "\"}\n";
  }
  write_file(d / "eval-pack.jsonl", data);
  struct Reading {
    std::string name;
    double value, se;
  };
  std::vector<Reading> readings;
  for (auto [name, sets] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"packed, micro batch 4", {"sample_packing=true", "micro_batch_size=4"}},
           {"packed, micro batch 1", {"sample_packing=true", "micro_batch_size=1"}},
           {"one document per row, micro batch 4", {"sample_packing=false", "micro_batch_size=4"}},
           {"one document per row, micro batch 3", {"sample_packing=false", "micro_batch_size=3"}},
           // The training schedule does not change what evaluation estimates (it draws with the
           // linear, unclamped schedule); before, this read 20-35% low.
           {"cosine schedule, mask ratio clamped to 0.1..0.9",
            {"diffusion.noise_schedule=cosine", "diffusion.min_mask_ratio=0.1", "diffusion.max_mask_ratio=0.9"}}}) {
    std::vector<std::string> args = {"eval", "--checkpoint", (d / "out" / "final").string(), "--plugin", kPlugin,
                                     "--data", (d / "eval-pack.jsonl").string(), "--mc-samples", "24"};
    for (const auto& s : sets) args.insert(args.end(), {"--set", s});
    auto r = run_trainer(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
    readings.push_back({name, j["nll_bound_per_token"].get<double>(), j["stderr"].get<double>()});
  }
  for (std::size_t a = 0; a < readings.size(); ++a)
    for (std::size_t b = a + 1; b < readings.size(); ++b) {
      const auto &x = readings[a], &y = readings[b];
      EXPECT_LT(std::abs(x.value - y.value), 3.0 * std::sqrt(x.se * x.se + y.se * y.se) + 1e-9)
          << x.name << ": " << x.value << " +- " << x.se << " vs " << y.name << ": " << y.value
          << " +- " << y.se;
    }
}

// `trainer eval`'s bound against tests/diffusion/llada_likelihood_reference.py: LLaDA's own
// Monte Carlo estimator (exactly l ~ U{1..E} of a document's E scored tokens masked, weight
// E/l), written independently in float64 Python with its own safetensors reader and Llama
// forward pass. Both estimate the negative ELBO per scored token (BOS/EOS visible, never
// scored) of the same documents, each attended bidirectionally as one sequence; loom's mask
// draws (per-token p = (1-eps)t + eps, weight 1/p) differ, so only the means must agree, within
// 3 combined standard errors (eps moves loom's mean by ~1e-3 relative, far inside that).
// Documents shorter than a row, so each is scored whole on both sides.
TEST(DiffusionE2E, EvalBoundMatchesAnIndependentLladaEstimator) {
  LOOM_REQUIRE_PYTHON_MODULES("numpy, torch");  // the reference estimator
  const auto& d = trained();
  const auto ckpt = d / "out" / "final";
  // Held-out documents (motifs from another seed), of several lengths; the longest is 62 letters
  // + BOS + EOS = 64 tokens, one row.
  std::mt19937 rng(23);
  std::string data;
  const std::vector<int> lengths = {62, 45, 33, 57, 24, 51, 39, 60};
  for (int len : lengths) {
    std::string motif;
    for (int i = 0; i < 3; ++i) motif += char('a' + rng() % 26);
    std::string text;
    while (int(text.size()) < len) text += motif;
    data += "{\"text\": \"" + text.substr(0, std::size_t(len)) + "\"}\n";
  }
  write_file(d / "llada-docs.jsonl", data);

  // The documents as loom lays them into rows: BOS + the tokenizer's ids + EOS.
  const auto config = nlohmann::json::parse(read_file(ckpt / "config.json"));
  const std::int64_t bos = config["bos_token_id"].get<std::int64_t>();
  const std::int64_t eos = config["eos_token_id"].get<std::int64_t>();
  auto tok = run_command("OMP_NUM_THREADS=1 " + shell_quote(LOOM_TRAINER_BIN) + " tokenize --tokenizer " +
                         shell_quote(ckpt.string()) + " < " + shell_quote((d / "llada-docs.jsonl").string()));
  ASSERT_EQ(tok.exit_code, 0) << tok.output;
  nlohmann::json docs = nlohmann::json::array();
  std::int64_t sequence_tokens = 0;
  std::istringstream lines(tok.output);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '[') continue;
    auto ids = nlohmann::json::parse(line).get<std::vector<std::int64_t>>();
    ids.insert(ids.begin(), bos);
    ids.push_back(eos);
    sequence_tokens += std::int64_t(ids.size());
    docs.push_back(ids);
  }
  ASSERT_EQ(docs.size(), lengths.size()) << tok.output;
  write_file(d / "llada-docs.json", docs.dump());

  const std::string draws = "1024";
  auto e = run_trainer({"eval", "--checkpoint", ckpt.string(), "--plugin", kPlugin, "--data",
                        (d / "llada-docs.jsonl").string(), "--mc-samples", draws, "--set", "sample_packing=false",
                        "--set", "micro_batch_size=8"});
  ASSERT_EQ(e.exit_code, 0) << e.output;
  auto loom = nlohmann::json::parse(e.output.substr(e.output.find('{')));
  auto p = run_command("OMP_NUM_THREADS=1 /usr/bin/python3 " +
                       shell_quote(LOOM_SOURCE_DIR "/tests/diffusion/llada_likelihood_reference.py") +
                       " --checkpoint " + shell_quote(ckpt.string()) + " --tokens " +
                       shell_quote((d / "llada-docs.json").string()) + " --mc " + draws + " --seed 1");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  auto ref = nlohmann::json::parse(p.output.substr(p.output.find('{')));

  // Both saw the same documents and score the same tokens (all but BOS and EOS).
  EXPECT_EQ(loom["tokens"].get<std::int64_t>(), sequence_tokens) << loom.dump();
  EXPECT_EQ(loom["documents"].get<std::size_t>(), lengths.size()) << loom.dump();
  EXPECT_EQ(ref["sequence_tokens"].get<std::int64_t>(), sequence_tokens) << ref.dump();
  EXPECT_EQ(ref["tokens"].get<std::int64_t>(), sequence_tokens - 2 * std::int64_t(lengths.size())) << ref.dump();

  const double a = loom["nll_bound_per_token"].get<double>(), sa = loom["stderr"].get<double>();
  const double b = ref["nats_per_token"].get<double>(), sb = ref["stderr"].get<double>();
  const double se = std::sqrt(sa * sa + sb * sb);
  // Sane values: positive, and for this trained model far below the 3.26 nats (log 26) of a
  // context-free guess of a letter; errors small enough that the comparison can fail (a 15%
  // disagreement is more than 3 standard errors).
  for (double v : {a, b}) {
    EXPECT_TRUE(std::isfinite(v)) << loom.dump() << "\n" << ref.dump();
    EXPECT_GT(v, 0.0) << loom.dump() << "\n" << ref.dump();
    EXPECT_LT(v, 0.5 * std::log(26.0)) << loom.dump() << "\n" << ref.dump();
  }
  EXPECT_GT(sa, 0.0);
  EXPECT_GT(sb, 0.0);
  EXPECT_LT(3.0 * se, 0.15 * b) << "standard errors too large for a meaningful comparison: " << sa << ", " << sb;
  EXPECT_LT(std::abs(a - b), 3.0 * se) << "loom eval: " << a << " +- " << sa << "; LLaDA estimator (Python): " << b
                                       << " +- " << sb;
}

// Arguments out of range are refused at once, naming the argument, before anything is
// allocated for them (they used to be taken silently, or to end in an out-of-memory kill).
TEST(DiffusionE2E, OutOfRangeArgumentsAreRefusedNamingThem) {
  const auto& d = trained();
  const std::string ckpt = (d / "out" / "final").string();
  const std::vector<std::string> gen = {"generate", "--checkpoint", ckpt, "--plugin", kPlugin, "--prompt", "abc"};
  auto with = [](std::vector<std::string> a, std::vector<std::string> more) {
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  for (auto [args, needle] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {with(gen, {"--temperature", "nan"}), "--temperature"},
           {with(gen, {"--mask", "nan"}), "--mask"},
           {with(gen, {"--complete", "-3"}), "--complete"},
           {with(gen, {"--complete", "1000000000"}), "exceed the model's context of 128 tokens"},
           {with(gen, {"--steps", "1000000000"}), "--steps 1000000000: more reverse steps than the model has positions"},
           {{"eval", "--checkpoint", ckpt, "--plugin", kPlugin, "--data", (d / "motifs.jsonl").string(),
             "--mc-samples", "0"},
            "--mc-samples"}}) {
    auto r = run_trainer(args);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("Killed"), std::string::npos) << r.output;
  }
  // Documents with nothing the objective can score (only special tokens remain: empty texts).
  write_file(d / "empty.jsonl", "{\"text\": \"\"}\n{\"text\": \"\"}\n");
  auto r = run_trainer({"eval", "--checkpoint", ckpt, "--plugin", kPlugin, "--data", (d / "empty.jsonl").string()});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("nothing to score"), std::string::npos) << r.output;
}

// Batch mode end to end: `--input` prompts of different lengths sampled together with the fast
// options given as flags give, line for line, what each prompt gives in a batch of one (other
// processes, the same seeds); bad lines and bad flag values are errors naming the line or key,
// before anything is written.
TEST(DiffusionE2E, BatchGenerationEqualsOnePromptAtATimeAndRefusesBadInput) {
  const auto& d = trained();
  const std::string ckpt = (d / "out" / "final").string();
  write_file(d / "prompts.jsonl",
             "{\"prompt\": \"abcab\"}\n{\"prompt\": \"ab\", \"max_new_tokens\": 5, \"seed\": 4}\n"
             "{\"prompt\": \"abcabcabca\", \"max_new_tokens\": 11}\n");
  const std::vector<std::string> fast = {"--cache", "dual", "--threshold", "0.9", "--block-length", "4",
                                         "--max-new-tokens", "8", "--temperature", "0.7", "--seed", "3"};
  auto run = [&](const std::string& batch, const fs::path& out) {
    std::vector<std::string> a = {"generate", "--checkpoint", ckpt, "--plugin", kPlugin, "--input",
                                  (d / "prompts.jsonl").string(), "--output", out.string(), "--batch-size", batch};
    a.insert(a.end(), fast.begin(), fast.end());
    return run_trainer(a);
  };
  auto lines_of = [](const fs::path& f) {
    std::vector<nlohmann::json> v;
    std::istringstream in(read_file(f));
    for (std::string l; std::getline(in, l);) v.push_back(nlohmann::json::parse(l));
    return v;
  };
  auto together = run("3", d / "batched.jsonl");
  ASSERT_EQ(together.exit_code, 0) << together.output;
  auto alone = run("1", d / "alone.jsonl");
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const auto b = lines_of(d / "batched.jsonl"), a = lines_of(d / "alone.jsonl");
  ASSERT_EQ(b.size(), 3u);
  ASSERT_EQ(a.size(), 3u);
  const std::vector<int> new_tokens = {8, 5, 11};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(b[i]["completion"], a[i]["completion"]) << i;
    EXPECT_EQ(b[i]["forward_passes"], a[i]["forward_passes"]) << i;
    EXPECT_EQ(b[i]["new_tokens"], new_tokens[i]) << i;
    // Threshold decoding: at least one token per pass, at most one pass per token.
    EXPECT_GE(b[i]["forward_passes"].get<int>(), 1);
    EXPECT_LE(b[i]["forward_passes"].get<int>(), new_tokens[i]);
    EXPECT_EQ(b[i]["batch"], 0);
    EXPECT_EQ(a[i]["batch"], int(i));
  }
  for (auto [input, needle] : std::vector<std::pair<std::string, std::string>>{
           {"{\"prompt\": \"ab\"}\nnot json\n", "bad.jsonl:2: not a JSON object"},
           {"{\"text\": \"ab\"}\n", "bad.jsonl:1: no \"prompt\" string"},
           {"{\"prompt\": \"ab\", \"max_new_tokens\": 0}\n", "bad.jsonl:1: max_new_tokens must be an integer >= 1"},
           {"{\"prompt\": \"" + std::string(200, 'a') + "\"}\n", "bad.jsonl:1: the prompt (201 tokens)"}}) {
    write_file(d / "bad.jsonl", input);
    auto r = run_trainer({"generate", "--checkpoint", ckpt, "--plugin", kPlugin, "--input", (d / "bad.jsonl").string(),
                          "--output", (d / "bad-out.jsonl").string()});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "bad-out.jsonl"));
  }
  for (auto [flags, needle] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--threshold", "1.5"}, "diffusion.threshold"},
           {{"--threshold", "0.9", "--factor", "1"}, "factor"},
           {{"--cache", "duel"}, "diffusion.cache must be one of"},
           {{"--remasking", "entropy", "--threshold", "0.5"}, "threshold"}}) {
    std::vector<std::string> a = {"generate", "--checkpoint", ckpt, "--plugin", kPlugin, "--prompt", "ab"};
    a.insert(a.end(), flags.begin(), flags.end());
    auto r = run_trainer(a);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
  }
}

// Trained with --plugin (a path), the checkpoint records the plugin: generate and eval find it
// without being told again; told again (the same file), it is loaded once.
TEST(DiffusionE2E, CheckpointRemembersPluginsGivenOnTheCommandLine) {
  const auto& d = trained();
  const auto final_dir = d / "out" / "final";
  EXPECT_NE(read_file(final_dir / "loom_config.toml").find(fs::path(kPlugin).lexically_normal().string()),
            std::string::npos);
  auto g = run_trainer({"generate", "--checkpoint", final_dir.string(), "--prompt", "abc", "--complete", "4",
                        "--steps", "4"});
  EXPECT_EQ(g.exit_code, 0) << g.output;
  write_file(d / "eval-small.jsonl", "{\"text\": \"abcabcabcabc\"}\n");
  auto e = run_trainer({"eval", "--checkpoint", final_dir.string(), "--data", (d / "eval-small.jsonl").string(),
                        "--mc-samples", "2"});
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NE(e.output.find("\"objective\":\"diffusion\""), std::string::npos) << e.output;
}

TEST(DiffusionE2E, GenerateRefusesACheckpointWithoutAMaskToken) {
  auto d = fresh_dir("diffusion-causal-ckpt");
  write_file(d / "cfg.toml", tiny_config(d / "out", 2));
  ASSERT_EQ(run_trainer({"--config", (d / "cfg.toml").string(), "--no-progress"}).exit_code, 0);
  auto r = run_trainer({"generate", "--checkpoint", (d / "out" / "final").string(), "--plugin", kPlugin,
                        "--prompt", "x", "--complete", "4"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("mask"), std::string::npos) << r.output;
}

TEST(DiffusionE2E, BadDiffusionKeysNameTheKey) {
  auto d = fresh_dir("diffusion-bad");
  for (auto [table, needle] : std::vector<std::pair<std::string, std::string>>{
           {"min_mask_ratio = 0.8\nmax_mask_ratio = 0.2\n", "min_mask_ratio"},
           {"eps = 2.0\n", "eps"},
           {"generation_steps = 0\n", "generation_steps"},
           {"mask_token_id = 100000\n", "mask_token_id"}}) {
    write_file(d / "cfg.toml", tiny_config(d / "out", 2) + "\n[diffusion]\n" + table);
    auto r = run_trainer({"--config", (d / "cfg.toml").string(), "--plugin", kPlugin, "--no-progress"});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(d / "out" / "final"));
  }
}

}  // namespace
}  // namespace loom::test
