// LoRA adapters (model/lora_adapters.hpp) on small checkpoints of the LLaDA and Qwen2 layouts:
// logits with adapters against tests/model/lora_reference.py's float64 W x + (alpha / r) B A x
// on every attention path, the cached and checkpointed paths, PEFT's tensor names and shapes,
// gradients and optimizer state only for what trains, save/load, merge, and bad input.
// Regenerate the goldens with:
//   /usr/bin/python3 tests/model/lora_reference.py > tests/model/lora_reference_golden.hpp
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <set>

#include "config/config_loader.hpp"
#include "errors.hpp"
#include "io/hf_config.hpp"
#include "io/layout_tensor_names.hpp"
#include "io/tensor_io.hpp"
#include "model/kv_cache.hpp"
#include "model/layout_folder.hpp"
#include "model/lora_adapters.hpp"
#include "model/lora_reference_golden.hpp"
#include "model/reference_model.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "tokenizer/byte_tokenizer.hpp"
#include "train/adamw.hpp"
#include "train/autocast_guard.hpp"
#include "train/memory_estimate.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace {
namespace fs = std::filesystem;
using layout_test::write_layout_folder;
using lora_golden::AdapterTensor;
using reference::expect_close;
using reference::Inputs;

LlamaForCausalLM load_folder(const fs::path& dir) {
  const ModelConfig mc = read_hf_config(dir);
  LlamaForCausalLM m(mc);
  LoadOptions opt;
  if (mc.tie_word_embeddings) opt.allow_missing.insert(stored_tensor_name(mc.model_type, "lm_head.weight"));
  load_into(dir, named_weights(m), opt);
  m->eval();
  return m;
}

LoraConfig lora_config(std::vector<std::string> targets, std::int64_t r, double alpha) {
  LoraConfig c;
  c.enabled = true;
  c.target_modules = std::move(targets);
  c.r = r;
  c.alpha = alpha;
  return c;
}

// The reference script's adapter values: weight 100 + j (A) or 200 + j (B), j the place of the
// name in the sorted golden list. Also checks the names and shapes are PEFT's.
void set_reference_values(const LoraAdapters& lora, const std::vector<AdapterTensor>& golden) {
  std::map<std::string, std::pair<std::size_t, std::vector<std::int64_t>>> want;
  for (std::size_t j = 0; j < golden.size(); ++j) want[golden[j].name] = {j, golden[j].shape};
  std::vector<std::pair<std::string, torch::Tensor>> have;
  for (auto& [name, t] : lora.trainable())  // the adapters (not the modules_to_save)
    if (name.find(".lora_") != std::string::npos) have.emplace_back(name, t);
  ASSERT_EQ(have.size(), golden.size());
  torch::NoGradGuard no_grad;
  for (auto& [name, t] : have) {
    auto it = want.find(name);
    ASSERT_NE(it, want.end()) << "not a PEFT name of the reference: " << name;
    ASSERT_EQ(t.sizes().vec(), it->second.second) << name;
    const bool is_a = name.size() > 13 && name.compare(name.size() - 13, 13, "lora_A.weight") == 0;
    const std::size_t index = (is_a ? 100 : 200) + it->second.first;
    t.copy_(layout_test::reference_weight(index, it->second.second, false));
  }
}

struct Golden {
  const std::vector<double>&c0, &c1, &cs, &b0, &b1, &bs;
};

void expect_reference_logits(LlamaForCausalLM& m, const Golden& g, const char* what) {
  Inputs in;
  const auto ones = torch::ones({2, 8}, torch::kLong);
  const auto pos1 = torch::arange(8).expand({2, 8});
  torch::NoGradGuard no_grad;
  std::vector<AttentionKernel> kernels = {AttentionKernel::Composite, AttentionKernel::FusedCpu};
  if (sdpa_available()) kernels.push_back(AttentionKernel::Sdpa);
  for (AttentionKernel kernel : kernels) {
    SCOPED_TRACE(std::string(what) + " / " + attention_kernel_name(kernel));
    m->set_attention_kernel(kernel);
    auto causal = m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::causal()));
    expect_close(causal[0][4], g.c0, 2e-4);
    expect_close(causal[1][7], g.c1, 2e-4);
    expect_close(causal.slice(1, 0, 6).sum(-1), g.cs, 2e-3);
    auto bidir = m->project(m->forward(in.ids, pos1, ones, sdk::AttentionSpec::bidirectional()));
    expect_close(bidir[0][4], g.b0, 2e-4);
    expect_close(bidir[1][7], g.b1, 2e-4);
    expect_close(bidir.slice(1, 0, 6).sum(-1), g.bs, 2e-3);
  }
  m->set_attention_kernel(AttentionKernel::Auto);
}

const Golden kLladaGolden{lora_golden::kLoraLladaCausalPacked_r0p4,
                          lora_golden::kLoraLladaCausalPacked_r1p7,
                          lora_golden::kLoraLladaCausalPacked_rowsums,
                          lora_golden::kLoraLladaBidirectionalUnpadded_r0p4,
                          lora_golden::kLoraLladaBidirectionalUnpadded_r1p7,
                          lora_golden::kLoraLladaBidirectionalUnpadded_rowsums};
const Golden kQwen2Golden{lora_golden::kLoraQwen2CausalPacked_r0p4,
                          lora_golden::kLoraQwen2CausalPacked_r1p7,
                          lora_golden::kLoraQwen2CausalPacked_rowsums,
                          lora_golden::kLoraQwen2BidirectionalUnpadded_r0p4,
                          lora_golden::kLoraQwen2BidirectionalUnpadded_r1p7,
                          lora_golden::kLoraQwen2BidirectionalUnpadded_rowsums};

fs::path llada_folder(const std::string& name) {
  auto dir = test::fresh_dir(name);
  write_layout_folder(dir, layout_golden::kLladaConfig, layout_golden::kLladaTensors);
  return dir;
}

fs::path qwen2_folder(const std::string& name) {
  auto dir = test::fresh_dir(name);
  write_layout_folder(dir, layout_golden::kQwen2Config, layout_golden::kQwen2Tensors);
  return dir;
}

TEST(LoraAdapters, LladaAllLinearMatchesReferenceOnEveryAttentionPath) {
  auto m = load_folder(llada_folder("lora-llada"));
  LoraAdapters lora(m, lora_config({"all-linear"}, 4, 8.0), "test.toml", 1);
  EXPECT_EQ(lora.target_modules(), (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "attn_out",
                                                             "ff_proj", "up_proj", "ff_out"}));
  set_reference_values(lora, lora_golden::kLoraLladaTensors);
  expect_reference_logits(m, kLladaGolden, "llada all-linear");
}

TEST(LoraAdapters, Qwen2SomeModulesWithBiasesMatchReference) {
  auto m = load_folder(qwen2_folder("lora-qwen2"));
  LoraAdapters lora(m, lora_config({"q_proj", "v_proj", "down_proj"}, 2, 3.0), "test.toml", 1);
  set_reference_values(lora, lora_golden::kLoraQwen2Tensors);
  expect_reference_logits(m, kQwen2Golden, "qwen2 q/v/down");
}

// The key/value-cached sampling path and gradient checkpointing see the adapters too.
TEST(LoraAdapters, CachedAndCheckpointedPathsApplyTheAdapters) {
  auto m = load_folder(llada_folder("lora-llada-cached"));
  LoraAdapters lora(m, lora_config({"all-linear"}, 4, 8.0), "test.toml", 1);
  set_reference_values(lora, lora_golden::kLoraLladaTensors);
  Inputs in;
  const auto ones = torch::ones({2, 8}, torch::kLong);
  const auto pos1 = torch::arange(8).expand({2, 8});
  {
    torch::NoGradGuard no_grad;
    LlamaKeyValueCache cache(0, 2, 8, pos1, ones);
    auto hidden = m->forward_caching(in.ids, pos1, ones, cache);
    auto logits = m->project(hidden);
    expect_close(logits[0][4], lora_golden::kLoraLladaBidirectionalUnpadded_r0p4, 2e-4);
    expect_close(logits[1][7], lora_golden::kLoraLladaBidirectionalUnpadded_r1p7, 2e-4);
  }
  m->train();
  m->set_gradient_checkpointing(true);
  auto out = m->project(m->forward(in.ids, pos1, ones, sdk::AttentionSpec::bidirectional()));
  expect_close(out[0][4].detach(), lora_golden::kLoraLladaBidirectionalUnpadded_r0p4, 2e-4);
}

TEST(LoraAdapters, FreshAdaptersStartAsPeftDoesAndChangeNothing) {
  auto m = load_folder(qwen2_folder("lora-fresh"));
  Inputs in;
  torch::NoGradGuard no_grad;
  auto before = m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::causal()));
  LoraAdapters lora(m, lora_config({"all-linear"}, 8, 16.0), "test.toml", 7);
  for (const auto& [name, t] : lora.trainable()) {
    if (name.find("lora_B") != std::string::npos) {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << name;
    } else {  // kaiming-uniform, a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in))
      const double bound = 1.0 / std::sqrt(double(t.size(1)));
      EXPECT_LE(t.abs().max().item<double>(), bound) << name;
      EXPECT_GT(t.abs().max().item<double>(), 0.5 * bound) << name;
    }
  }
  auto after = m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::causal()));
  EXPECT_TRUE(torch::equal(before, after));
}

// Only the adapters and modules_to_save get gradients and AdamW state; the base is frozen.
// With dropout, the checkpointed recomputation draws the same masks: equal gradients.
TEST(LoraAdapters, OnlyAdaptersAndSavedModulesTrain) {
  auto m = load_folder(qwen2_folder("lora-grads"));
  auto cfg = lora_config({"q_proj", "v_proj", "down_proj"}, 2, 3.0);
  cfg.modules_to_save = {"embed_tokens"};
  cfg.dropout = 0.25;
  LoraAdapters lora(m, cfg, "test.toml", 1);
  set_reference_values(lora, lora_golden::kLoraQwen2Tensors);
  m->train();
  Inputs in;
  auto grads = [&](bool checkpointing) {
    m->set_gradient_checkpointing(checkpointing);
    for (auto& t : lora.parameters()) t.mutable_grad() = torch::Tensor();
    torch::manual_seed(5);
    auto logits = m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::causal()));
    (logits * logits).mean().backward();
    std::vector<torch::Tensor> g;
    for (auto& t : lora.parameters()) g.push_back(t.grad().clone());
    return g;
  };
  auto plain = grads(false);
  auto checkpointed = grads(true);
  ASSERT_EQ(plain.size(), checkpointed.size());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    EXPECT_GT(plain[i].abs().sum().item<double>(), 0.0) << i;
    EXPECT_TRUE(torch::allclose(plain[i], checkpointed[i], 1e-5, 1e-6)) << i;
  }
  for (const auto& kv : m->named_parameters()) {
    const bool embed = kv.key() == "model.embed_tokens.weight";
    EXPECT_EQ(kv.value().requires_grad(), embed) << kv.key();
    if (!embed) EXPECT_FALSE(kv.value().grad().defined()) << kv.key();
  }
  AdamW opt(lora.trainable(), AdamWOptions{});
  opt.step(1e-3);
  std::set<std::string> state;
  for (const auto& [name, t] : opt.state()) state.insert(name);
  std::set<std::string> want;
  for (const auto& t : lora_golden::kLoraQwen2Tensors) {
    want.insert(std::string(t.name) + ".exp_avg");
    want.insert(std::string(t.name) + ".exp_avg_sq");
  }
  want.insert("base_model.model.model.embed_tokens.weight.exp_avg");
  want.insert("base_model.model.model.embed_tokens.weight.exp_avg_sq");
  EXPECT_EQ(state, want);
}

TEST(LoraAdapters, MergedWeightsGiveTheAdaptedLogits) {
  auto m = load_folder(llada_folder("lora-merge"));
  LoraAdapters lora(m, lora_config({"all-linear"}, 4, 8.0), "test.toml", 1);
  set_reference_values(lora, lora_golden::kLoraLladaTensors);
  lora.merge();
  expect_reference_logits(m, kLladaGolden, "llada merged");
}

TEST(LoraAdapters, SavesPeftFilesAndLoadsThemBack) {
  auto m = load_folder(llada_folder("lora-save"));
  auto cfg = lora_config({"q_proj", "attn_out", "ff_out"}, 4, 8.0);
  cfg.modules_to_save = {"wte"};
  cfg.dropout = 0.05;
  LoraAdapters lora(m, cfg, "test.toml", 1);
  auto dir = test::fresh_dir("lora-save-out");
  lora.save(dir, "/models/tiny-llada");
  std::ifstream f(dir / "adapter_config.json");
  auto j = nlohmann::json::parse(f);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"], 8);
  EXPECT_DOUBLE_EQ(j["lora_dropout"].get<double>(), 0.05);
  EXPECT_EQ(j["target_modules"], nlohmann::json({"q_proj", "attn_out", "ff_out"}));
  EXPECT_EQ(j["modules_to_save"], nlohmann::json({"wte"}));
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["base_model_name_or_path"], "/models/tiny-llada");
  auto stored = load_all(dir / "adapter_model.safetensors");
  EXPECT_EQ(stored.size(), 2u * 3u * 2u + 1u);  // A and B x 3 modules x 2 blocks, and wte
  ASSERT_TRUE(stored.count("base_model.model.model.transformer.blocks.1.ff_out.lora_A.weight"));
  EXPECT_EQ(stored["base_model.model.model.transformer.blocks.1.ff_out.lora_A.weight"].sizes(),
            (std::vector<std::int64_t>{4, 24}));
  EXPECT_EQ(stored["base_model.model.model.transformer.blocks.1.ff_out.lora_B.weight"].sizes(),
            (std::vector<std::int64_t>{16, 4}));
  EXPECT_EQ(stored["base_model.model.model.transformer.wte.weight"].sizes(),
            (std::vector<std::int64_t>{48, 16}));
  AdapterFolderConfig read = read_adapter_config(dir);
  EXPECT_EQ(read.base_model, "/models/tiny-llada");
  EXPECT_EQ(read.lora.target_modules, cfg.target_modules);
  EXPECT_EQ(read.lora.r, 4);

  auto m2 = load_folder(llada_folder("lora-save-2"));
  LoraAdapters other(m2, read.lora, "adapter_config.json", 99);
  other.load(dir);
  auto a = lora.trainable(), b = other.trainable();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(torch::equal(a[i].second, b[i].second)) << a[i].first;
  }
}

// An adapter of another shape (here r 4 saved, r 2 expected): one error naming the file and the
// tensor; nothing loaded.
TEST(LoraAdapters, AdapterForAnotherShapeIsRefusedNamingFileAndTensor) {
  auto m = load_folder(llada_folder("lora-mismatch"));
  LoraAdapters saved(m, lora_config({"q_proj"}, 4, 8.0), "test.toml", 1);
  auto dir = test::fresh_dir("lora-mismatch-out");
  saved.save(dir, "base");
  auto m2 = load_folder(llada_folder("lora-mismatch-2"));
  LoraAdapters other(m2, lora_config({"q_proj"}, 2, 8.0), "test.toml", 1);
  auto before = other.trainable()[0].second.clone();
  try {
    other.load(dir);
    FAIL() << "loaded an adapter of another shape";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("adapter_model.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("blocks.0.q_proj.lora_A.weight"), std::string::npos) << msg;
  }
  EXPECT_TRUE(torch::equal(before, other.trainable()[0].second));
}

// d1#6: Llama's o_proj on a LLaDA model is not skipped: the error lists LLaDA's names.
TEST(LoraAdapters, TargetModuleTheLayoutLacksListsItsModules) {
  auto m = load_folder(llada_folder("lora-bad-target"));
  try {
    LoraAdapters lora(m, lora_config({"q_proj", "o_proj"}, 4, 8.0), "run.toml", 1);
    FAIL() << "o_proj accepted on a LLaDA model";
  } catch (const UserError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("run.toml"), std::string::npos) << msg;
    EXPECT_NE(msg.find("\"o_proj\""), std::string::npos) << msg;
    EXPECT_NE(msg.find("q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out"), std::string::npos) << msg;
  }
  auto q = load_folder(qwen2_folder("lora-tied-head"));
  auto cfg = lora_config({"q_proj"}, 4, 8.0);
  cfg.modules_to_save = {"lm_head"};
  EXPECT_THROW(LoraAdapters(q, cfg, "run.toml", 1), UserError);  // tied to embed_tokens
}

std::string config_error(const std::string& toml) {
  try {
    parse_train_config(toml, "lora.toml", {});
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(LoraConfigKeys, ReadAndValidatedNamingTheKey) {
  auto c = parse_train_config(
      "base_model = \"m\"\nadapter = \"lora\"\nlora_r = 16\nlora_alpha = 32\nlora_dropout = 0.05\n"
      "lora_target_modules = [\"q_proj\", \"v_proj\"]\nlora_modules_to_save = [\"embed_tokens\"]\n",
      "lora.toml", {});
  EXPECT_TRUE(c.lora.enabled);
  EXPECT_EQ(c.lora.r, 16);
  EXPECT_DOUBLE_EQ(c.lora.scaling(), 2.0);
  EXPECT_DOUBLE_EQ(c.lora.dropout, 0.05);
  EXPECT_EQ(c.lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(c.lora.modules_to_save, (std::vector<std::string>{"embed_tokens"}));
  auto all = parse_train_config("base_model = \"m\"\nadapter = \"lora\"\nlora_target_modules = \"all-linear\"\n", "l.toml", {});
  EXPECT_EQ(all.lora.target_modules, (std::vector<std::string>{"all-linear"}));
  EXPECT_FALSE(parse_train_config("", "l.toml", {}).lora.enabled);

  EXPECT_NE(config_error("lora_r = 8\n").find("lora.toml:1:10: lora_r is a LoRA key: set adapter"), std::string::npos)
      << config_error("lora_r = 8\n");
  EXPECT_NE(config_error("adapter = \"lora\"\nlora_target_modules = [\"q_proj\"]\nlora_r = 0\n").find("lora_r must be"),
            std::string::npos);
  EXPECT_NE(config_error("adapter = \"lora\"\nlora_target_modules = [\"q_proj\"]\nlora_dropout = 1.0\n")
                .find("lora_dropout must be >= 0 and < 1"),
            std::string::npos);
  EXPECT_NE(config_error("adapter = \"lora\"\nlora_target_modules = [\"q_proj\"]\nlora_dropout = -0.1\n")
                .find("lora_dropout must be"),
            std::string::npos);
  EXPECT_NE(config_error("adapter = \"qlora\"\n").find("adapter must be \"lora\""), std::string::npos);
  EXPECT_NE(config_error("adapter = \"lora\"\n").find("needs lora_target_modules"), std::string::npos);
  EXPECT_NE(config_error("adapter = \"lora\"\nlora_target_modules = \"all-linear\"\n")
                .find("lora.toml:1:11: adapter = \"lora\" needs base_model"),
            std::string::npos)
      << config_error("adapter = \"lora\"\nlora_target_modules = \"all-linear\"\n");
  EXPECT_NE(config_error("adapter = \"lora\"\nlora_target_modules = [\"all-linear\", \"q_proj\"]\n")
                .find("stands alone"),
            std::string::npos);
}

// A bf16 checkpoint trained with bf16 = true keeps its frozen matrices in bf16 (made so, not
// copied from fp32); norms, adapters and modules_to_save are fp32, and a step runs under autocast.
TEST(LoraAdapters, FrozenBaseOfABf16CheckpointStaysBf16) {
  auto dir = test::fresh_dir("lora-bf16");
  layout_test::FolderOptions opt;
  opt.dtype = torch::kBFloat16;
  opt.vocab_rows = 259;
  opt.listed_vocab_rows = 40;
  opt.edit_config = [](nlohmann::json& c) { c["vocab_size"] = 259; };
  auto stored = write_layout_folder(dir, layout_golden::kQwen2Config, layout_golden::kQwen2Tensors, opt);
  ByteTokenizer({"<|eos|>", "<|pad|>", "<|mdm_mask|>"}).save(dir);
  TrainConfig cfg;
  cfg.base_model = dir.string();
  cfg.device = "cpu";
  cfg.sequence_len = 16;
  cfg.bf16 = true;
  cfg.lora = lora_config({"all-linear"}, 4, 8.0);
  cfg.lora.modules_to_save = {"embed_tokens"};
  PluginSet plugins;
  ModelBundle b = build_model_bundle(cfg, {}, plugins);
  ASSERT_TRUE(b.lora);
  auto& m = b.model->model();
  auto params = m->named_parameters();
  const auto& q = params["model.layers.1.self_attn.q_proj.weight"];
  EXPECT_EQ(q.scalar_type(), torch::kBFloat16);
  EXPECT_FALSE(q.requires_grad());
  for (const auto& [name, t] : stored)
    if (name == "model.layers.1.self_attn.q_proj.weight") EXPECT_TRUE(torch::equal(q.to(torch::kFloat), t));
  EXPECT_EQ(params["model.layers.0.input_layernorm.weight"].scalar_type(), torch::kFloat);
  EXPECT_EQ(params["model.embed_tokens.weight"].scalar_type(), torch::kFloat);
  EXPECT_TRUE(params["model.embed_tokens.weight"].requires_grad());
  for (const auto& [name, t] : b.lora->trainable()) EXPECT_EQ(t.scalar_type(), torch::kFloat) << name;
  EXPECT_EQ(c10::get_default_dtype(), caffe2::TypeMeta::Make<float>());  // put back
  m->train();
  Inputs in;
  torch::Tensor loss;
  {
    AutocastGuard autocast(true, false);
    loss = m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::causal())).to(torch::kFloat).pow(2).mean();
  }
  loss.backward();
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  for (const auto& [name, t] : b.lora->trainable()) EXPECT_TRUE(t.grad().defined()) << name;
  EXPECT_FALSE(q.grad().defined());
  // A sampler calls the model without autocast: the model turns it on for its bf16 matrices,
  // on the full, cached and projection paths.
  m->eval();
  torch::NoGradGuard no_grad;
  const auto ones = torch::ones({2, 8}, torch::kLong);
  const auto pos1 = torch::arange(8).expand({2, 8});
  auto logits = m->project(m->forward(in.ids, pos1, ones, sdk::AttentionSpec::bidirectional()));
  EXPECT_TRUE(torch::isfinite(logits).all().item<bool>());
  LlamaKeyValueCache cache(0, 2, 8, pos1, ones);
  auto cached = m->project(m->forward_caching(in.ids, pos1, ones, cache));
  EXPECT_TRUE(torch::allclose(cached.to(torch::kFloat), logits.to(torch::kFloat), 0.05, 0.05));
  auto again = m->forward_cached(cache, in.ids.slice(1, 0, 2), torch::arange(2).expand({2, 2}));
  EXPECT_TRUE(torch::isfinite(m->project(again)).all().item<bool>());
  EXPECT_FALSE(autocast_enabled(false));
}

// The memory check before allocating counts only the adapters as trainable: for Llama-3.2-1B
// with r = 16 on every linear, PEFT's print_trainable_parameters says 11,272,192.
TEST(LoraConfigKeys, MemoryEstimateTrainsOnlyTheAdapters) {
  ModelConfig m;
  m.vocab_size = 128256, m.hidden_size = 2048, m.intermediate_size = 8192, m.num_hidden_layers = 16;
  m.num_attention_heads = 32, m.num_key_value_heads = 8, m.tie_word_embeddings = true;
  TrainConfig c;
  c.sequence_len = 512, c.micro_batch_size = 1, c.gradient_checkpointing = true;
  const MemoryEstimate full = estimate_memory(m, c);
  c.lora.enabled = true, c.lora.r = 16, c.lora.target_modules = {"all-linear"};
  const MemoryEstimate lora = estimate_memory(m, c);
  const double activations = full.training_bytes - 16 * full.parameters;
  EXPECT_DOUBLE_EQ(lora.training_bytes, full.weights_bytes + 16 * 11272192.0 + activations);
  EXPECT_LT(lora.training_bytes, 0.3 * full.training_bytes);
}

// The checked-in goldens are what the reference script prints (skipped without python3-torch
// unless LOOM_REFERENCE_TESTS=1).
TEST(LoraAdapters, ReferenceScriptReproducesTheCheckedInGoldens) {
  const std::string script = std::string(LOOM_SOURCE_DIR) + "/tests/model/lora_reference.py";
  LOOM_REQUIRE_PYTHON_MODULES("torch");
  auto r = test::run_command("(/usr/bin/python3 " + test::shell_quote(script) + " 2>/dev/null)");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, test::read_file(std::string(LOOM_SOURCE_DIR) + "/tests/model/lora_reference_golden.hpp"))
      << "regenerate: /usr/bin/python3 tests/model/lora_reference.py > tests/model/lora_reference_golden.hpp";
}

}  // namespace
}  // namespace loom
