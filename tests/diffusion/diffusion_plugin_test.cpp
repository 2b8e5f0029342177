// The plugin through its SDK hooks, with a real tiny model and a byte tokenizer.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "config/config_loader.hpp"
#include "diffusion_plugin.hpp"
#include "sample_render.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::ByteTokenizer;
using testing::make_batch;
using testing::TinyModel;
using testing::to_vector;

// As the host hands it over: validated against the schema, defaults filled in.
sdk::ConfigSection section(std::map<std::string, sdk::ConfigValue> values) {
  return validate_plugin_section("diffusion", diffusion_config_schema(), values, "c.toml");
}

std::unique_ptr<DiffusionPlugin> make_plugin(std::map<std::string, sdk::ConfigValue> values = {},
                                             sdk::RunInfo run = {}) {
  auto plugin = std::make_unique<DiffusionPlugin>();
  plugin->configure(section(std::move(values)), run);
  return plugin;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(DiffusionPlugin, DeclaresItsHooks) {
  DiffusionPlugin plugin;
  EXPECT_EQ(plugin.info().name, "diffusion");
  EXPECT_TRUE(plugin.owns_loss());
  EXPECT_TRUE(plugin.owns_attention());
  EXPECT_TRUE(plugin.provides_sampler());
  EXPECT_FALSE(plugin.config_schema().empty());
  auto p = make_plugin({{"eval_mc_samples", std::int64_t{6}}});
  EXPECT_EQ(p->eval_repeats(), 6);
  sdk::Batch batch;
  EXPECT_EQ(p->attention(batch, {}).kind, sdk::AttentionSpec::Kind::Bidirectional);
}

TEST(DiffusionPlugin, AddsTheMaskTokenAndGrowsTheModelWhenMissing) {
  ByteTokenizer tok;
  TinyModel model(259, 8, 32);
  auto plugin = make_plugin();
  plugin->on_model_loaded(model, tok);
  EXPECT_EQ(plugin->mask_token_id(), 259);
  EXPECT_EQ(tok.vocab_size(), 260);
  EXPECT_EQ(model.vocab_size(), 260);
  EXPECT_EQ(model.resize_calls, 1);
  // A second load (e.g. after a checkpoint) finds the token and changes nothing.
  plugin->on_model_loaded(model, tok);
  EXPECT_EQ(plugin->mask_token_id(), 259);
  EXPECT_EQ(model.resize_calls, 1);
}

TEST(DiffusionPlugin, UsesAnExplicitOrKnownMaskToken) {
  ByteTokenizer tok;
  TinyModel model(300, 8, 32);
  auto by_id = make_plugin({{"mask_token_id", std::int64_t{299}}});
  by_id->on_model_loaded(model, tok);
  EXPECT_EQ(by_id->mask_token_id(), 299);
  EXPECT_EQ(tok.vocab_size(), 259);  // nothing added
  auto by_str = make_plugin({{"mask_token_str", std::string("~")}});
  by_str->on_model_loaded(model, tok);
  EXPECT_EQ(by_str->mask_token_id(), '~');
}

// A checkpoint that fixes its mask token and where its logits point (SDK 1.4: LLaDA, Dream).
class NativeModel : public TinyModel {
 public:
  NativeModel(std::int64_t mask, bool next) : TinyModel(300, 8, 32), mask_(mask), next_(next) {}
  std::optional<bool> predicts_next_token() const override { return next_; }
  std::optional<std::int64_t> native_mask_token_id() const override { return mask_; }

 private:
  std::int64_t mask_;
  bool next_;
};

TEST(DiffusionPlugin, TakesMaskTokenAndShiftFromTheModelUnlessSet) {
  ByteTokenizer tok;
  sdk::RunInfo with_base;
  with_base.base_model = "some/folder";  // alone it would mean: shift
  NativeModel llada(290, /*next=*/false);
  auto plugin = make_plugin({}, with_base);
  plugin->on_model_loaded(llada, tok);
  EXPECT_EQ(plugin->mask_token_id(), 290);
  EXPECT_FALSE(plugin->logit_shift());
  EXPECT_EQ(tok.vocab_size(), 259) << "no token added";
  EXPECT_EQ(llada.resize_calls, 0);

  NativeModel dream(291, /*next=*/true);
  auto from_scratch = make_plugin();  // alone it would mean: no shift
  from_scratch->on_model_loaded(dream, tok);
  EXPECT_EQ(from_scratch->mask_token_id(), 291);
  EXPECT_TRUE(from_scratch->logit_shift());

  // The user's keys win.
  auto user = make_plugin({{"mask_token_id", std::int64_t{299}}, {"logit_shift", true}}, with_base);
  user->on_model_loaded(llada, tok);
  EXPECT_EQ(user->mask_token_id(), 299);
  EXPECT_TRUE(user->logit_shift());

  // A native id the model cannot hold, or a reserved one, is refused.
  NativeModel outside(300, false), eos(ByteTokenizer::kEos, false);
  EXPECT_NE(error_of([&] { make_plugin()->on_model_loaded(outside, tok); }).find("mask_token_id = 300"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_plugin()->on_model_loaded(eos, tok); }).find("eos"), std::string::npos);
}

TEST(DiffusionPlugin, BadMaskTokenIdIsAnErrorNamingTheKey) {
  ByteTokenizer tok;
  TinyModel model(260, 8, 32);
  for (std::int64_t id : {std::int64_t{260}, ByteTokenizer::kPad, ByteTokenizer::kEos}) {
    auto plugin = make_plugin({{"mask_token_id", id}});
    auto msg = error_of([&] { plugin->on_model_loaded(model, tok); });
    EXPECT_NE(msg.find("[diffusion] mask_token_id"), std::string::npos) << id << ": " << msg;
  }
}

TEST(DiffusionPlugin, TransformThenLossTrainsOnlyMaskedTokens) {
  ByteTokenizer tok;
  TinyModel model(259, 16, 32);
  auto plugin = make_plugin({{"generate_samples", false}});
  plugin->on_model_loaded(model, tok);
  auto batch = make_batch({{ByteTokenizer::kBos, 'h', 'e', 'l', 'l', 'o', ByteTokenizer::kEos},
                           {'w', 'o', 'r', 'l', 'd', '!', ByteTokenizer::kPad}},
                          {}, {}, {10, 11});
  const auto original = batch.input_ids.clone();
  sdk::StepContext ctx;
  ctx.window.rows = 2;
  ctx.window.documents = 2;
  plugin->transform_batch(batch, ctx);
  ASSERT_TRUE(batch.extras.count(kMaskedKey));
  EXPECT_TRUE(batch.extras.at(kTargetsKey).equal(original));
  auto masked = batch.extras.at(kMaskedKey);
  EXPECT_TRUE(batch.input_ids.masked_select(masked).eq(plugin->mask_token_id()).all().item<bool>());
  auto out = model.forward(batch.input_ids, batch.position_ids, batch.segment_ids,
                           plugin->attention(batch, ctx));
  auto result = plugin->loss(out, batch, ctx);
  EXPECT_TRUE(std::isfinite(result.loss.item<double>()));
  EXPECT_DOUBLE_EQ(result.metrics.at("num_masked_tokens"),
                   static_cast<double>(masked.sum().item<std::int64_t>()));
  result.loss.backward();
  EXPECT_TRUE(model.net()->lm_head.grad().defined());
  EXPECT_EQ(model.seen_attention.back(), sdk::AttentionSpec::Kind::Bidirectional);
}

// mask_eos: the EOS at a document's end is eligible (masked and scored like a labelled token)
// only when asked for; BOS, padding and the mask token never are. With min = max mask ratio 1
// every eligible token is masked, so eligibility is read off the masked positions.
TEST(DiffusionPlugin, MaskEosMakesTheEndOfADocumentLearnable) {
  for (const bool mask_eos : {false, true}) {
    SCOPED_TRACE(mask_eos);
    ByteTokenizer tok;
    TinyModel model(259, 16, 32);
    auto plugin = make_plugin({{"generate_samples", false},
                               {"mask_eos", mask_eos},
                               {"min_mask_ratio", 1.0},
                               {"max_mask_ratio", 1.0}});
    plugin->on_model_loaded(model, tok);
    auto batch = make_batch({{ByteTokenizer::kBos, 'h', 'i', ByteTokenizer::kEos, ByteTokenizer::kPad}}, {}, {}, {3});
    sdk::StepContext ctx;
    ctx.window.rows = 1;
    ctx.window.documents = 1;
    plugin->transform_batch(batch, ctx);
    const auto masked = to_vector(batch.extras.at(kMaskedKey).to(torch::kLong)[0]);
    EXPECT_EQ(masked, (std::vector<std::int64_t>{0, 1, 1, mask_eos ? 1 : 0, 0}));
  }
}

// Rows repeat a random three-letter motif ("kqdkqdkqd..."): a masked letter equals the
// visible letters three positions away, so a bidirectional model can learn to fill it
// (chance: 1/26).
sdk::Batch motif_batch(std::int64_t rows, std::int64_t len, std::int64_t first_index,
                       torch::Generator& gen) {
  std::vector<std::vector<std::int64_t>> ids(rows);
  std::vector<std::int64_t> index;
  auto motifs = torch::randint(0, 26, {rows, 3}, gen);
  for (std::int64_t b = 0; b < rows; ++b) {
    for (std::int64_t s = 0; s < len; ++s)
      ids[b].push_back('a' + motifs[b][s % 3].item<std::int64_t>());
    index.push_back(first_index + b);
  }
  return make_batch(ids, {}, {}, index);
}

double eval_accuracy(DiffusionPlugin& plugin, TinyModel& model, torch::Generator& gen) {
  torch::NoGradGuard no_grad;
  model.set_training(false);
  double acc = 0;
  const int repeats = 4;
  for (int r = 0; r < repeats; ++r) {
    auto batch = motif_batch(32, 16, 0, gen);
    sdk::StepContext ctx;
    ctx.training = false;
    ctx.repeat = r;
    plugin.transform_batch(batch, ctx);
    auto out = model.forward(batch.input_ids, batch.position_ids, batch.segment_ids,
                             plugin.attention(batch, ctx));
    acc += plugin.loss(out, batch, ctx).metrics.at("accuracy") / repeats;
  }
  model.set_training(true);
  return acc;
}

TEST(DiffusionPlugin, TinyModelLearnsToFillMasksWellAboveChance) {
  ByteTokenizer tok;
  TinyModel model(259, 32, 32, /*seed=*/5);
  sdk::RunInfo run;
  run.seed = 17;
  run.micro_batch_size = 16;
  auto plugin =
      make_plugin({{"generate_samples", false}, {"t_sampling", std::string("stratified")}}, run);
  plugin->on_model_loaded(model, tok);
  torch::optim::Adam opt(model.net()->parameters(), torch::optim::AdamOptions(1e-2));
  torch::Generator eval_gen = at::detail::createCPUGenerator(1);
  const double before = eval_accuracy(*plugin, model, eval_gen);
  torch::Generator gen = at::detail::createCPUGenerator(2);
  const std::int64_t kSteps = 300;
  for (std::int64_t step = 0; step < kSteps; ++step) {
    auto batch = motif_batch(16, 16, step * 16, gen);
    sdk::StepContext ctx;
    ctx.step = step;
    ctx.window.rows = 16;
    ctx.window.documents = 16;
    plugin->transform_batch(batch, ctx);
    auto out = model.forward(batch.input_ids, batch.position_ids, batch.segment_ids,
                             plugin->attention(batch, ctx));
    opt.zero_grad();
    plugin->loss(out, batch, ctx).loss.backward();
    opt.step();
  }
  eval_gen = at::detail::createCPUGenerator(1);
  const double after = eval_accuracy(*plugin, model, eval_gen);
  std::cout << "masked-token accuracy: " << before << " at step 0 -> " << after << " after "
            << kSteps << " steps (chance 1/26 = 0.038)\n";
  EXPECT_LT(before, 0.15);
  // A masked letter is recoverable only if one of its ~5 same-phase letters is visible:
  // E[p (1 - p^5)] / E[p] = 0.71 of masked tokens for p ~ U[0, 1], the ceiling here.
  EXPECT_GT(after, 0.5);

  // And the sampler fills a masked motif mostly right (reloading as from a checkpoint: the
  // mask token now exists, so generate accepts the model).
  plugin->on_model_loaded(model, tok);
  sdk::GenerateRequest req;
  req.prompt_ids = tok.encode("catcatcatcatcatc");
  req.mask_ratio = 0.5;
  req.steps = 8;
  auto result = plugin->generate(model, tok, req, false);
  std::int64_t masked = 0, right = 0;
  for (std::size_t i = 0; i < result.masked.size(); ++i)
    if (result.masked[i] == plugin->mask_token_id()) {
      ++masked;
      right += result.generated[i] == result.original[i];
    }
  std::cout << result.rendered << "\n";
  EXPECT_EQ(masked, 8);
  EXPECT_GE(right, 5);
}

TEST(DiffusionPlugin, GenerateCompletesOrFillsAndRepeatsWithTheSameSeed) {
  ByteTokenizer tok;
  TinyModel model(259, 16, 64, /*seed=*/9);
  auto plugin = make_plugin({{"num_diffusion_steps", std::int64_t{4}}});
  plugin->on_model_loaded(model, tok);
  // Pretend the checkpoint was trained with the token: load again, now it is known.
  plugin->on_model_loaded(model, tok);

  sdk::GenerateRequest complete;
  complete.prompt_ids = tok.encode("abc");
  complete.complete_tokens = 5;
  complete.temperature = 1.0;
  complete.seed = 4;
  auto a = plugin->generate(model, tok, complete, false);
  EXPECT_EQ(a.masked.size(), 8u);
  EXPECT_EQ(std::vector<std::int64_t>(a.generated.begin(), a.generated.begin() + 3),
            complete.prompt_ids);
  for (auto id : a.generated) EXPECT_NE(id, plugin->mask_token_id());
  EXPECT_EQ(a.generated, plugin->generate(model, tok, complete, false).generated);
  EXPECT_NE(a.rendered.find("Masked (5/8 tokens"), std::string::npos) << a.rendered;

  sdk::GenerateRequest fill;
  fill.prompt_ids = tok.encode("hello world");
  fill.mask_ratio = 0.3;
  auto b = plugin->generate(model, tok, fill, false);
  std::int64_t holes = 0;
  for (std::size_t i = 0; i < b.masked.size(); ++i) {
    if (b.masked[i] == plugin->mask_token_id())
      ++holes;
    else
      EXPECT_EQ(b.generated[i], fill.prompt_ids[i]);
  }
  EXPECT_EQ(holes, 3);  // round(0.3 * 11)

  sdk::GenerateRequest nothing;
  nothing.prompt_ids = tok.encode("x");
  EXPECT_THROW(plugin->generate(model, tok, nothing, false), std::invalid_argument);
}

TEST(DiffusionPlugin, GenerateRefusesACheckpointWithoutMaskToken) {
  // Loaded for `trainer generate`: refused at load, nothing added.
  ByteTokenizer tok;
  TinyModel model(259, 8, 32);
  sdk::RunInfo run;
  run.command = "generate";
  auto loading = make_plugin({}, run);
  auto msg = error_of([&] { loading->on_model_loaded(model, tok); });
  EXPECT_NE(msg.find("[diffusion] mask_token_str"), std::string::npos) << msg;
  EXPECT_EQ(tok.vocab_size(), 259);
  EXPECT_EQ(model.resize_calls, 0);

  // A token added in this very process (training run) is still no trained mask token.
  auto plugin = make_plugin();
  plugin->on_model_loaded(model, tok);
  sdk::GenerateRequest req;
  req.prompt_ids = tok.encode("abc");
  req.complete_tokens = 2;
  msg = error_of([&] { plugin->generate(model, tok, req, false); });
  EXPECT_NE(msg.find("[diffusion] mask_token_str"), std::string::npos) << msg;
}

// --resume from checkpoint-4: the samples of steps after 4 (the run goes over them again) and a
// line torn by the kill are dropped; generate/eval loading a checkpoint leave the file alone.
TEST(DiffusionPlugin, ResumeKeepsTheSamplesUpToTheCheckpointsStep) {
  const auto dir = std::filesystem::temp_directory_path() / "loom_diffusion_samples_resume_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string kept = "{\"step\":2,\"original\":\"a\"}\n{\"step\":4,\"original\":\"b\"}\n";
  const std::string written =
      kept + "{\"step\":6,\"original\":\"c\"}\n{\"step\":40,\"original\":\"d\"}\n{\"step\":8,\"orig";
  auto write = [&] { std::ofstream(dir / "samples.jsonl", std::ios::binary) << written; };
  auto read = [&] {
    std::ifstream in(dir / "samples.jsonl", std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  sdk::TrainerState state;
  state.output_dir = dir.string();
  state.step = 4;

  sdk::RunInfo eval_run;
  eval_run.output_dir = dir.string();
  eval_run.command = "eval";
  write();
  make_plugin({}, eval_run)->on_load(state, (dir / "checkpoint-4").string());
  EXPECT_EQ(read(), written);

  sdk::RunInfo train_run;
  train_run.output_dir = dir.string();
  write();
  state.rank = 1;  // only rank 0 writes samples
  make_plugin({}, train_run)->on_load(state, (dir / "checkpoint-4").string());
  EXPECT_EQ(read(), written);
  state.rank = 0;
  make_plugin({}, train_run)->on_load(state, (dir / "checkpoint-4").string());
  EXPECT_EQ(read(), kept);
  EXPECT_FALSE(std::filesystem::exists(dir / "samples.jsonl.tmp"));
}

TEST(DiffusionPlugin, StepEndGeneratesSamplesIntoSamplesJsonl) {
  const auto dir = std::filesystem::temp_directory_path() / "loom_diffusion_samples_test";
  std::filesystem::remove_all(dir);
  ByteTokenizer tok;
  TinyModel model(259, 16, 64);
  sdk::RunInfo run;
  run.output_dir = dir.string();
  auto plugin = make_plugin({{"generation_interval", std::int64_t{5}},
                             {"num_generation_samples", std::int64_t{2}},
                             {"generation_steps", std::int64_t{4}},
                             {"generation_max_length", std::int64_t{12}}},
                            run);
  plugin->on_model_loaded(model, tok);
  // Row 0: an instruction document (prompt "Q:", answer); row 1 pretraining text.
  const std::int64_t E = ByteTokenizer::kEos;
  auto rows = [&] {
    return make_batch(
        {{'Q', ':', 'h', 'i', ' ', 't', 'h', 'e', 'r', 'e', '!', E, 'x', 'y'},
         {'t', 'h', 'e', ' ', 'q', 'u', 'i', 'c', 'k', ' ', 'f', 'o', 'x', '.'}},
        {{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
        {{-100, -100, 'h', 'i', ' ', 't', 'h', 'e', 'r', 'e', '!', E, 'x', 'y'},
         {'t', 'h', 'e', ' ', 'q', 'u', 'i', 'c', 'k', ' ', 'f', 'o', 'x', '.'}},
        {0, 1});
  };
  auto batch = rows();
  sdk::StepContext ctx;
  ctx.step = 3;  // not the step before a generation: nothing kept
  plugin->transform_batch(batch, ctx);
  EXPECT_EQ(plugin->generation().kept(), 0u);
  ctx.step = 4;  // on_step_end(step 5) generates
  batch = rows();
  plugin->transform_batch(batch, ctx);
  EXPECT_EQ(plugin->generation().kept(), 2u);

  sdk::TrainerState state;
  state.model = &model;
  state.tokenizer = &tok;
  state.output_dir = dir.string();
  state.step = 4;
  plugin->on_step_end(state);  // not due
  EXPECT_FALSE(std::filesystem::exists(dir / "samples.jsonl"));
  state.step = 5;
  ::testing::internal::CaptureStdout();
  plugin->on_step_end(state);
  const std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(printed.find("Original"), std::string::npos);
  EXPECT_NE(printed.find("[MASK]"), std::string::npos);
  EXPECT_EQ(printed.find("\x1b["), std::string::npos);  // not a terminal: no colours

  std::ifstream file(dir / "samples.jsonl");
  std::vector<std::string> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u);
  for (const char* field :
       {"\"step\":5", "\"original\":", "\"masked\":", "\"generated\":", "\"mask_ratio\":",
        "\"masked_tokens\":", "\"total_tokens\":", "\"accuracy\":"})
    EXPECT_NE(lines[0].find(field), std::string::npos) << field << " in " << lines[0];
  // The instruction sample masks its whole answer (9 tokens; "</s>" is special), keeps the
  // prompt; the first document of the row is kept (12 tokens).
  EXPECT_NE(lines[0].find("\"masked\":\"Q:[MASK][MASK][MASK][MASK][MASK][MASK][MASK][MASK][MASK]"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("\"masked_tokens\":9,\"total_tokens\":12"), std::string::npos)
      << lines[0];

  // Rank 1 never generates.
  state.rank = 1;
  state.step = 10;
  plugin->on_step_end(state);
  std::ifstream again(dir / "samples.jsonl");
  std::size_t count = 0;
  for (std::string line; std::getline(again, line);) ++count;
  EXPECT_EQ(count, 2u);
  std::filesystem::remove_all(dir);
}

TEST(SampleRender, ColoursFillsAndEscapesJson) {
  ByteTokenizer tok;
  SampleTokens t;
  t.original = tok.encode("abcd");
  t.masked = {'a', 300, 300, 'd'};
  t.generated = {'a', 'b', 'x', 'd'};
  auto r = describe_sample(tok, t, 300, /*colour=*/true);
  EXPECT_EQ(r.masked, "a[MASK][MASK]d");
  EXPECT_EQ(r.masked_tokens, 2);
  EXPECT_DOUBLE_EQ(r.accuracy.value(), 0.5);
  EXPECT_NE(r.rendered.find("\x1b[32mb\x1b[0m"), std::string::npos);  // right fill green
  EXPECT_NE(r.rendered.find("\x1b[31mx\x1b[0m"), std::string::npos);  // wrong fill red
  EXPECT_NE(r.rendered.find("\x1b[2ma\x1b[0m"), std::string::npos);   // untouched dim
  EXPECT_EQ(json_escape("a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
  EXPECT_EQ(json_escape("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(json_escape("bad\xC3"), "bad\xEF\xBF\xBD");
}

}  // namespace
}  // namespace loom::diffusion

namespace loom::diffusion {
namespace {

using testing::ByteTokenizer;
using testing::PositionalModel;
using testing::TinyModel;

std::unique_ptr<DiffusionPlugin> sampler_plugin(std::map<std::string, sdk::ConfigValue> values) {
  auto plugin = std::make_unique<DiffusionPlugin>();
  plugin->configure(
      validate_plugin_section("diffusion", diffusion_config_schema(), values, "c.toml"),
      sdk::RunInfo{});
  return plugin;
}

// generate_batch: 8 requests (completion and infilling, different prompts, lengths, steps,
// block lengths, seeds, temperatures) give what each gives alone, with the same forward counts.
TEST(DiffusionPluginBatch, GenerateBatchEqualsEachRequestAlone) {
  for (bool fast : {false, true}) {
    ByteTokenizer tok;
    TinyModel model(259, 16, 64, /*seed=*/9);
    std::map<std::string, sdk::ConfigValue> values{{"num_diffusion_steps", std::int64_t{6}}};
    if (fast) {
      values["cache"] = std::string("dual");
      values["threshold"] = 0.0055;
    }
    auto plugin = sampler_plugin(values);
    plugin->on_model_loaded(model, tok);
    plugin->on_model_loaded(model, tok);  // as from a checkpoint: the mask token is known
    std::vector<sdk::GenerateRequest> requests;
    const char* prompts[] = {"a", "hello", "xy", "the cat sat", "q", "abcdefg", "zz", "mnop"};
    for (int i = 0; i < 8; ++i) {
      sdk::GenerateRequest r;
      r.prompt_ids = tok.encode(prompts[i]);
      if (i == 3 || i == 5)
        r.mask_ratio = 0.4;
      else
        r.complete_tokens = 2 + 3 * i;
      r.steps = i % 2 ? 4 + i : 0;
      r.block_length = i % 3 ? 3 : 0;
      r.temperature = i % 2 ? 0.8 : 0.0;
      r.seed = 40 + static_cast<std::uint64_t>(i);
      requests.push_back(r);
    }
    auto batch = plugin->generate_batch(model, tok, requests, false);
    ASSERT_EQ(batch.size(), requests.size());
    std::int64_t passes = 0, tokens = 0;
    for (const auto& b : batch) passes += b.forward_passes, tokens += b.new_tokens;
    if (fast) EXPECT_LT(passes, tokens);  // the threshold reveals several tokens per pass
    for (std::size_t i = 0; i < requests.size(); ++i) {
      auto solo = plugin->generate_batch(model, tok, {requests[i]}, false).at(0);
      EXPECT_EQ(batch[i].result.generated, solo.result.generated) << fast << " " << i;
      EXPECT_EQ(batch[i].result.generated,
                plugin->generate(model, tok, requests[i], false).generated);
      EXPECT_EQ(batch[i].result.masked, solo.result.masked);
      EXPECT_EQ(batch[i].result.original, requests[i].prompt_ids);
      EXPECT_EQ(batch[i].forward_passes, solo.forward_passes) << fast << " " << i;
      EXPECT_GT(batch[i].forward_passes, 0);
      const auto holes = std::count(batch[i].result.masked.begin(), batch[i].result.masked.end(),
                                    plugin->mask_token_id());
      EXPECT_EQ(batch[i].new_tokens, holes);
      if (requests[i].complete_tokens > 0) EXPECT_EQ(holes, requests[i].complete_tokens);
      EXPECT_FALSE(batch[i].result.rendered.empty());
    }
  }
}

// The positional model predicts byte 'a' + s % 20 at position s with confidence growing with s,
// except at position 9 where the test makes EOS (257) the prediction (logit 2.9: revealed after
// position 10, before 8). Mask token: id 259 (mask_token_id).
at::Tensor eos_positional_table(double eos_logit) {
  auto table = torch::zeros({260, 32});
  for (std::int64_t s = 0; s < 32; ++s) table['a' + s % 20][s] = 1.0 + 0.2 * s;
  table['a' + 9][9] = 1.0;
  table[ByteTokenizer::kEos][9] = eos_logit;
  return table;
}

TEST(DiffusionPluginBatch, StopAtEosCutsTheRowSavesItsForwardsAndCountsItsTokens) {
  ByteTokenizer tok;
  PositionalModel model(eos_positional_table(2.9));
  auto plugin = sampler_plugin({{"mask_token_id", std::int64_t{259}},
                                {"stop_at_eos", true},
                                {"block_length", std::int64_t{4}},
                                {"num_diffusion_steps", std::int64_t{16}}});
  plugin->on_model_loaded(model, tok);
  sdk::GenerateRequest stops, runs;
  stops.prompt_ids = tok.encode("abcd");  // generates 4..19: meets the EOS at 9
  stops.complete_tokens = 16;
  runs.prompt_ids = tok.encode("abcdefghijkl");  // generates 12..23: never does
  runs.complete_tokens = 12;
  runs.steps = 12;
  auto out = plugin->generate_batch(model, tok, {stops, runs}, false);
  // One token per step in blocks of 4: block 0 takes 4 passes, block 1 reveals 11, 10, 9 (EOS,
  // 8 still masked), 8 -> done after 8 of 16 passes; 6 new tokens up to and including the EOS.
  EXPECT_EQ(out[0].forward_passes, 8);
  EXPECT_EQ(out[0].new_tokens, 6);
  const auto& g = out[0].result.generated;
  for (std::size_t s = 4; s < 9; ++s) EXPECT_EQ(g[s], 'a' + static_cast<std::int64_t>(s)) << s;
  for (std::size_t s = 9; s < 20; ++s) EXPECT_EQ(g[s], ByteTokenizer::kEos) << s;
  EXPECT_EQ(out[1].forward_passes, 12);
  EXPECT_EQ(out[1].new_tokens, 12);

  auto suppress = sampler_plugin({{"mask_token_id", std::int64_t{259}},
                                  {"suppress_eos", true},
                                  {"num_diffusion_steps", std::int64_t{4}}});
  PositionalModel eager(eos_positional_table(10.0));  // EOS the clear argmax at 9
  suppress->on_model_loaded(eager, tok);
  auto s = suppress->generate_batch(eager, tok, {stops}, false).at(0);
  EXPECT_EQ(std::count(s.result.generated.begin(), s.result.generated.end(), ByteTokenizer::kEos),
            0);
  EXPECT_EQ(s.result.generated[9], 'a' + 9);
  EXPECT_EQ(s.new_tokens, 16);
}

}  // namespace
}  // namespace loom::diffusion
