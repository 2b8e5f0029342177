// The Hugging Face layouts besides Llama (Qwen2, Qwen3, Dream, LLaDA): small folders written
// as published checkpoints are (the reference script's config.json and tensor names, fp32 or
// bf16, sharded or not) are loaded the way the trainer loads a base_model, and their logits
// compared with tests/model/layout_reference.py's float64 forward passes on every attention
// path; then saved with write_checkpoint and loaded again (names, keys, values), run through the
// key/value cache, and fed bad input. Regenerate the goldens with:
//   /usr/bin/python3 tests/model/layout_reference.py > tests/model/layout_reference_golden.hpp
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <set>

#include "errors.hpp"
#include "io/hf_config.hpp"
#include "io/layout_tensor_names.hpp"
#include "io/safetensors_file.hpp"
#include "io/tensor_io.hpp"
#include "model/layout_folder.hpp"
#include "model/model_handle.hpp"
#include "model/reference_model.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "tokenizer/byte_tokenizer.hpp"
#include "train/checkpoint.hpp"
#include "train/memory_estimate.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace {
namespace fs = std::filesystem;
using namespace layout_golden;
using layout_test::FolderOptions;
using layout_test::write_layout_folder;
using reference::expect_close;
using reference::Inputs;

struct Layout {
  const char* name;
  const std::string& config;
  const std::vector<StoredTensor>& tensors;
  const std::vector<double>& causal_r0p4;
  const std::vector<double>& causal_r1p7;
  const std::vector<double>& causal_rowsums;
  const std::vector<double>& bidir_r0p4;
  const std::vector<double>& bidir_r1p7;
  const std::vector<double>& bidir_rowsums;
};

const Layout kQwen2{"qwen2", kQwen2Config, kQwen2Tensors,
                    kQwen2CausalPacked_r0p4, kQwen2CausalPacked_r1p7, kQwen2CausalPacked_rowsums,
                    kQwen2BidirectionalUnpadded_r0p4, kQwen2BidirectionalUnpadded_r1p7,
                    kQwen2BidirectionalUnpadded_rowsums};
const Layout kQwen3{"qwen3", kQwen3Config, kQwen3Tensors,
                    kQwen3CausalPacked_r0p4, kQwen3CausalPacked_r1p7, kQwen3CausalPacked_rowsums,
                    kQwen3BidirectionalUnpadded_r0p4, kQwen3BidirectionalUnpadded_r1p7,
                    kQwen3BidirectionalUnpadded_rowsums};
const Layout kQwen3Bias{"qwen3", kQwen3BiasConfig, kQwen3BiasTensors,
                        kQwen3BiasCausalPacked_r0p4, kQwen3BiasCausalPacked_r1p7,
                        kQwen3BiasCausalPacked_rowsums, kQwen3BiasBidirectionalUnpadded_r0p4,
                        kQwen3BiasBidirectionalUnpadded_r1p7, kQwen3BiasBidirectionalUnpadded_rowsums};
const Layout kDream{"Dream", kDreamConfig, kDreamTensors,
                    kDreamCausalPacked_r0p4, kDreamCausalPacked_r1p7, kDreamCausalPacked_rowsums,
                    kDreamBidirectionalUnpadded_r0p4, kDreamBidirectionalUnpadded_r1p7,
                    kDreamBidirectionalUnpadded_rowsums};
const Layout kLlada{"llada", kLladaConfig, kLladaTensors,
                    kLladaCausalPacked_r0p4, kLladaCausalPacked_r1p7, kLladaCausalPacked_rowsums,
                    kLladaBidirectionalUnpadded_r0p4, kLladaBidirectionalUnpadded_r1p7,
                    kLladaBidirectionalUnpadded_rowsums};

// What build_model_bundle does with a base_model folder: config.json, then the weights under
// the layout's names.
LlamaForCausalLM load_folder(const fs::path& dir) {
  const ModelConfig mc = read_hf_config(dir);
  LlamaForCausalLM m(mc);
  LoadOptions opt;
  if (mc.tie_word_embeddings) opt.allow_missing.insert(stored_tensor_name(mc.model_type, "lm_head.weight"));
  load_into(dir, named_weights(m), opt);
  m->eval();
  return m;
}

std::vector<AttentionKernel> kernels() {
  std::vector<AttentionKernel> k = {AttentionKernel::Composite, AttentionKernel::FusedCpu};
  if (sdpa_available()) k.push_back(AttentionKernel::Sdpa);
  return k;
}

// Logits against the reference, causal over packed segments and bidirectional without padding,
// on every attention path this build has.
void expect_matches_reference(LlamaForCausalLM& m, const Layout& layout) {
  Inputs in;
  const auto ones = torch::ones({2, 8}, torch::kLong);
  const auto pos1 = torch::arange(8).expand({2, 8});
  torch::NoGradGuard no_grad;
  for (AttentionKernel kernel : kernels()) {
    SCOPED_TRACE(std::string(layout.name) + " / " + attention_kernel_name(kernel));
    m->set_attention_kernel(kernel);
    auto causal = m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::causal()));
    expect_close(causal[0][4], layout.causal_r0p4, 2e-4);
    expect_close(causal[1][7], layout.causal_r1p7, 2e-4);
    expect_close(causal.slice(1, 0, 6).sum(-1), layout.causal_rowsums, 2e-3);
    auto bidir = m->project(m->forward(in.ids, pos1, ones, sdk::AttentionSpec::bidirectional()));
    expect_close(bidir[0][4], layout.bidir_r0p4, 2e-4);
    expect_close(bidir[1][7], layout.bidir_r1p7, 2e-4);
    expect_close(bidir.slice(1, 0, 6).sum(-1), layout.bidir_rowsums, 2e-3);
  }
  m->set_attention_kernel(AttentionKernel::Auto);
}

std::set<std::string> stored_names(const fs::path& file) {
  std::set<std::string> names;
  for (const auto& [name, t] : load_all(file)) names.insert(name);
  return names;
}

TEST(ModelLayouts, Qwen2BiasesAndTiedEmbeddingsMatchReference) {
  auto dir = test::fresh_dir("layout-qwen2");
  write_layout_folder(dir, kQwen2Config, kQwen2Tensors);
  auto m = load_folder(dir);
  EXPECT_TRUE(m->config().attention_qkv_bias);
  EXPECT_FALSE(m->config().attention_output_bias) << "Qwen2 has no o_proj bias";
  EXPECT_TRUE(m->config().tie_word_embeddings);
  EXPECT_FALSE(m->lm_head);
  EXPECT_EQ(m->config().num_key_value_heads, 2);
  expect_matches_reference(m, kQwen2);
}

TEST(ModelLayouts, Qwen3QkNormsWithOwnHeadDimFromBf16ShardsMatchReference) {
  auto dir = test::fresh_dir("layout-qwen3");
  FolderOptions opt;
  opt.dtype = torch::kBFloat16;
  opt.shards = 3;
  write_layout_folder(dir, kQwen3Config, kQwen3Tensors, opt);
  ASSERT_TRUE(fs::exists(dir / "model.safetensors.index.json"));
  auto m = load_folder(dir);
  EXPECT_EQ(m->config().head_dim(), 8);
  EXPECT_NE(m->config().head_dim(), m->config().hidden_size / m->config().num_attention_heads);
  EXPECT_TRUE(m->config().qk_norm);
  EXPECT_EQ(m->named_parameters()["model.layers.1.self_attn.q_norm.weight"].sizes(),
            (std::vector<std::int64_t>{8}));
  expect_matches_reference(m, kQwen3);
}

TEST(ModelLayouts, Qwen3AttentionBiasAddsQkvAndOutputBiases) {
  auto dir = test::fresh_dir("layout-qwen3-bias");
  write_layout_folder(dir, kQwen3BiasConfig, kQwen3BiasTensors);
  auto m = load_folder(dir);
  EXPECT_TRUE(m->config().attention_qkv_bias);
  EXPECT_TRUE(m->config().attention_output_bias);
  expect_matches_reference(m, kQwen3Bias);
}

// The checked-in goldens are what the reference script prints (it needs /usr/bin/python3 with
// torch; CI sets LOOM_REFERENCE_TESTS=1 and has it).
TEST(ModelLayouts, ReferenceScriptReproducesTheCheckedInGoldens) {
  const std::string script = std::string(LOOM_SOURCE_DIR) + "/tests/model/layout_reference.py";
  LOOM_REQUIRE_PYTHON_MODULES("torch");
  auto r = test::run_command("(/usr/bin/python3 " + test::shell_quote(script) + " 2>/dev/null)");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, test::read_file(std::string(LOOM_SOURCE_DIR) + "/tests/model/layout_reference_golden.hpp"))
      << "regenerate: /usr/bin/python3 tests/model/layout_reference.py > tests/model/layout_reference_golden.hpp";
}

TEST(ModelLayouts, DreamIsQwen2WithItsMaskTokenAndNextTokenLogits) {
  auto dir = test::fresh_dir("layout-dream");
  write_layout_folder(dir, kDreamConfig, kDreamTensors);
  auto m = load_folder(dir);
  expect_matches_reference(m, kDream);
  LlamaModelHandle handle(m);
  EXPECT_EQ(handle.model_type(), "Dream");
  EXPECT_EQ(handle.predicts_next_token(), std::optional<bool>(true));
  EXPECT_EQ(handle.native_mask_token_id(), std::optional<std::int64_t>(37));
}

// DreamConfig's default mask_token_id is 151666; a config.json without the key gets it when
// the vocabulary has that row (Dream-7B's 152064 rows), and no mask token otherwise.
TEST(ModelLayouts, DreamWithoutMaskTokenIdKeyGetsDreamConfigsDefaultOnlyWhereItFits) {
  auto cfg = nlohmann::json::parse(kDreamConfig);
  cfg.erase("mask_token_id");
  auto dir = test::fresh_dir("layout-dream-default-mask");
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_EQ(read_hf_config(dir).mask_token_id, std::nullopt);
  cfg["vocab_size"] = 152064;
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_EQ(read_hf_config(dir).mask_token_id, std::optional<std::int64_t>(151666));
}

// A LLaDA or Dream folder carries its modeling code (config.json's auto_map points into it):
// every checkpoint gets the base's *.py files, byte for byte, and passes them on when it is the
// base of the next save (resume, or training on from it).
TEST(ModelLayouts, CheckpointsCarryTheModelsPythonCode) {
  auto dir = test::fresh_dir("layout-model-code");
  write_layout_folder(dir / "base", kLladaConfig, kLladaTensors);
  const std::string configuration = "class LLaDAConfig: pass  # configuration_llada.py\n";
  const std::string modeling = "from .configuration_llada import LLaDAConfig\n";
  test::write_file(dir / "base" / "configuration_llada.py", configuration);
  test::write_file(dir / "base" / "modeling_llada.py", modeling);
  test::write_file(dir / "base" / "README.md", "not code\n");
  ModelBundle bundle;
  bundle.tokenizer = std::make_unique<ByteTokenizer>();
  bundle.model = std::make_unique<LlamaModelHandle>(load_folder(dir / "base"));
  bundle.source_dir = dir / "base";
  write_checkpoint(dir / "checkpoint-1", bundle, nullptr, {}, "", {});
  EXPECT_EQ(test::read_file(dir / "checkpoint-1" / "configuration_llada.py"), configuration);
  EXPECT_EQ(test::read_file(dir / "checkpoint-1" / "modeling_llada.py"), modeling);
  EXPECT_FALSE(fs::exists(dir / "checkpoint-1" / "README.md"));

  ModelBundle next;
  next.tokenizer = std::make_unique<ByteTokenizer>();
  next.model = std::make_unique<LlamaModelHandle>(load_folder(dir / "checkpoint-1"));
  next.source_dir = dir / "checkpoint-1";
  write_checkpoint(dir / "checkpoint-2", next, nullptr, {}, "", {});
  EXPECT_EQ(test::read_file(dir / "checkpoint-2" / "modeling_llada.py"), modeling);
}

TEST(ModelLayouts, DreamConvertedWithoutBiasesSaysSo) {
  auto cfg = nlohmann::json::parse(kDreamConfig);
  auto dir = test::fresh_dir("layout-dream-nobias");
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_TRUE(read_hf_config(dir).attention_qkv_bias) << "Dream's own: Qwen2's q/k/v biases";
  cfg["attention_bias"] = false;  // e.g. a Llama converted to Dream's code
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_FALSE(read_hf_config(dir).attention_qkv_bias);
  cfg["model_type"] = "qwen2";  // Qwen2's code ignores the key
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_TRUE(read_hf_config(dir).attention_qkv_bias);
}

TEST(ModelLayouts, LladaNamesPaddedVocabularyAndBf16MatchReference) {
  auto dir = test::fresh_dir("layout-llada");
  FolderOptions opt;
  opt.dtype = torch::kBFloat16;
  write_layout_folder(dir, kLladaConfig, kLladaTensors, opt);
  auto m = load_folder(dir);
  EXPECT_EQ(m->config().vocab_size, 48) << "embedding_size rows, not vocab_size";
  EXPECT_EQ(m->config().num_key_value_heads, 2);
  EXPECT_FALSE(m->config().tie_word_embeddings);
  expect_matches_reference(m, kLlada);
  LlamaModelHandle handle(m);
  EXPECT_EQ(handle.predicts_next_token(), std::optional<bool>(false));
  EXPECT_EQ(handle.native_mask_token_id(), std::optional<std::int64_t>(39));
  // The handle's names (SDK named_parameters) are the checkpoint's.
  std::set<std::string> handle_names;
  for (const auto& [name, t] : handle.named_parameters()) handle_names.insert(name);
  EXPECT_EQ(handle_names, stored_names(dir / "model.safetensors"));
  EXPECT_TRUE(handle_names.count("model.transformer.blocks.1.ff_proj.weight"));
}

TEST(ModelLayouts, LladaQkvBiasesAndTiedHeadUseLladasNames) {
  auto cfg = nlohmann::json::parse(kLladaConfig);
  cfg["include_qkv_bias"] = true;
  cfg["weight_tying"] = true;
  auto dir = test::fresh_dir("layout-llada-bias");
  test::write_file(dir / "config.json", cfg.dump());
  const ModelConfig mc = read_hf_config(dir);
  LlamaForCausalLM m(mc);
  std::set<std::string> names;
  for (const auto& [name, t] : named_weights(m)) names.insert(name);
  for (const char* n : {"model.transformer.blocks.0.q_proj.bias", "model.transformer.blocks.1.k_proj.bias",
                        "model.transformer.blocks.1.v_proj.bias", "model.transformer.wte.weight"})
    EXPECT_TRUE(names.count(n)) << n;
  EXPECT_FALSE(names.count("model.transformer.blocks.0.attn_out.bias")) << "include_qkv_bias is q/k/v only";
  EXPECT_FALSE(names.count("model.transformer.ff_out.weight")) << "tied: the head is wte";
  for (const auto& n : names) EXPECT_EQ(n.rfind("model.transformer.", 0), 0u) << n;
}

TEST(ModelLayouts, LladaWithoutMaskTokenIdKeyGetsLlada8BDefaultOnlyForItsVocabulary) {
  auto cfg = nlohmann::json::parse(kLladaConfig);
  cfg.erase("mask_token_id");
  auto dir = test::fresh_dir("layout-llada-nomask");
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_FALSE(read_hf_config(dir).mask_token_id) << "a 48-row vocabulary is not LLaDA-8B's";
  cfg["vocab_size"] = 126464;
  cfg["embedding_size"] = 126464;
  test::write_file(dir / "config.json", cfg.dump());
  EXPECT_EQ(read_hf_config(dir).mask_token_id, std::optional<std::int64_t>(126336));
}

// Saved by write_checkpoint (the trainer's checkpoint writer) and loaded back: the stored names,
// the config keys and every value survive; the logits are bit-identical.
void round_trip(const Layout& layout, const FolderOptions& opt) {
  SCOPED_TRACE(layout.name);
  auto dir = test::fresh_dir(std::string("layout-roundtrip-") + layout.name);
  write_layout_folder(dir / "base", layout.config, layout.tensors, opt);
  ModelBundle bundle;
  bundle.tokenizer = std::make_unique<ByteTokenizer>();
  bundle.model = std::make_unique<LlamaModelHandle>(load_folder(dir / "base"));
  write_checkpoint(dir / "saved", bundle, nullptr, {}, "", {});

  // Tensor names: those of the published layout (not loom's module names).
  const fs::path base_file = opt.shards > 1 ? dir / "base" / "model.safetensors.index.json"
                                            : dir / "base" / "model.safetensors";
  EXPECT_EQ(stored_names(dir / "saved" / "model.safetensors"), stored_names(base_file));

  // Config keys: every original key, with its value unless loom changes it (dtype: checkpoints
  // are fp32; the tokenizer's special ids).
  auto before = nlohmann::json::parse(layout.config);
  auto after = nlohmann::json::parse(test::read_file(dir / "saved" / "config.json"));
  for (auto it = before.begin(); it != before.end(); ++it) {
    ASSERT_TRUE(after.contains(it.key())) << it.key();
    const std::set<std::string> changed = {"torch_dtype", "bos_token_id", "eos_token_id",
                                           "pad_token_id"};
    if (!changed.count(it.key())) EXPECT_EQ(after[it.key()], it.value()) << it.key();
  }
  EXPECT_EQ(after["model_type"], layout.name);
  if (before.contains("torch_dtype")) EXPECT_EQ(after["torch_dtype"], "float32");

  // Values: bit-exact parameters, so bit-exact logits.
  auto first = load_folder(dir / "base");
  auto second = load_folder(dir / "saved");
  auto p1 = first->named_parameters(), p2 = second->named_parameters();
  ASSERT_EQ(p1.size(), p2.size());
  for (const auto& kv : p1) EXPECT_TRUE(torch::equal(kv.value(), p2[kv.key()])) << kv.key();
  Inputs in;
  torch::NoGradGuard no_grad;
  auto a = first->project(first->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::bidirectional()));
  auto b = second->project(second->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::bidirectional()));
  EXPECT_TRUE(torch::equal(a, b));

  // Saved again from the reloaded model: the same bytes.
  ModelBundle again;
  again.tokenizer = std::make_unique<ByteTokenizer>();
  again.model = std::make_unique<LlamaModelHandle>(second);
  write_checkpoint(dir / "saved2", again, nullptr, {}, "", {});
  EXPECT_EQ(test::read_file(dir / "saved" / "model.safetensors"),
            test::read_file(dir / "saved2" / "model.safetensors"));
  EXPECT_EQ(test::read_file(dir / "saved" / "config.json"),
            test::read_file(dir / "saved2" / "config.json"));
}

TEST(ModelLayouts, SaveAndLoadKeepNamesKeysAndValues) {
  FolderOptions bf16;
  bf16.dtype = torch::kBFloat16;
  FolderOptions sharded;
  sharded.shards = 2;
  round_trip(kQwen2, {});
  round_trip(kQwen3, sharded);
  round_trip(kQwen3Bias, {});
  round_trip(kDream, bf16);
  round_trip(kLlada, bf16);
}

TEST(ModelLayouts, GrownVocabularyIsWrittenInTheLayoutsOwnKey) {
  for (const Layout* layout : {&kDream, &kLlada}) {
    SCOPED_TRACE(layout->name);
    auto dir = test::fresh_dir(std::string("layout-resize-") + layout->name);
    write_layout_folder(dir / "base", layout->config, layout->tensors);
    ModelBundle bundle;
    bundle.tokenizer = std::make_unique<ByteTokenizer>();
    bundle.model = std::make_unique<LlamaModelHandle>(load_folder(dir / "base"));
    bundle.model->resize_vocab(64);
    write_checkpoint(dir / "saved", bundle, nullptr, {}, "", {});
    auto after = nlohmann::json::parse(test::read_file(dir / "saved" / "config.json"));
    if (std::string(layout->name) == "llada") {
      EXPECT_EQ(after["embedding_size"], 64);
      EXPECT_EQ(after["vocab_size"], 40) << "the tokenizer's count stays";
    } else {
      EXPECT_EQ(after["vocab_size"], 64);
    }
    EXPECT_EQ(read_hf_config(dir / "saved").vocab_size, 64);
    EXPECT_EQ(load_folder(dir / "saved")->config().vocab_size, 64);
  }
}

// The key/value-cached passes (sampling) give forward()'s hidden states on the new layouts:
// q/k/v biases, q/k norms and head_dim != hidden / heads go through the cached path too.
TEST(ModelLayouts, CachedForwardEqualsFullForward) {
  for (const Layout* layout : {&kQwen2, &kQwen3, &kLlada}) {
    SCOPED_TRACE(layout->name);
    auto dir = test::fresh_dir(std::string("layout-cache-") + layout->name);
    write_layout_folder(dir, layout->config, layout->tensors);
    LlamaModelHandle handle(load_folder(dir));
    auto ids = torch::tensor({3, 7, 1, 9, 22, 5, 12, 30, 11, 2, 2, 38, 4, 17, 25, 6}, torch::kLong)
                   .view({2, 8});
    auto seg = torch::tensor({1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}, torch::kLong).view({2, 8});
    torch::NoGradGuard no_grad;
    auto full = handle.forward(ids, torch::Tensor(), seg, sdk::AttentionSpec::bidirectional()).hidden;
    sdk::ModelOutput out;
    auto cache = handle.forward_caching(ids, torch::Tensor(), seg, &out);
    ASSERT_TRUE(cache);
    EXPECT_LT((out.hidden - full).abs().max().item<double>(), 1e-5);
    auto positions = torch::tensor({1, 4, 5, -1, 0, 3, 6, 7}, torch::kLong).view({2, 4});
    auto q_ids = torch::stack({ids[0].index_select(0, torch::tensor({1, 4, 5, 0})),
                               ids[1].index_select(0, torch::tensor({0, 3, 6, 7}))});
    auto cached = handle.forward_cached(*cache, q_ids, positions).hidden;
    for (std::int64_t b = 0; b < 2; ++b)
      for (std::int64_t q = 0; q < 4; ++q) {
        const auto p = positions[b][q].item<std::int64_t>();
        if (p < 0) continue;
        EXPECT_LT((cached[b][q] - full[b][p]).abs().max().item<double>(), 1e-5)
            << "row " << b << " position " << p;
      }
  }
}

TEST(ModelLayouts, GradientsFlowIntoBiasesAndQkNorms) {
  for (const Layout* layout : {&kQwen2, &kQwen3}) {
    SCOPED_TRACE(layout->name);
    auto dir = test::fresh_dir(std::string("layout-grad-") + layout->name);
    write_layout_folder(dir, layout->config, layout->tensors);
    auto m = load_folder(dir);
    m->train();
    m->set_gradient_checkpointing(true);
    Inputs in;
    m->project(m->forward(in.ids, in.pos, in.seg, sdk::AttentionSpec::bidirectional())).pow(2).mean().backward();
    const std::string name = std::string(layout->name) == "qwen3" ? "model.layers.0.self_attn.q_norm.weight"
                                                                  : "model.layers.0.self_attn.k_proj.bias";
    auto p = m->named_parameters()[name];
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0) << name;
  }
}

// The config.json files of the released checkpoints (their keys and shape values as published
// on the Hub) read into the shapes the models have.
TEST(ModelLayouts, ReadsThePublishedConfigs) {
  auto dir = test::fresh_dir("layout-published");
  auto read = [&](const std::string& text) {
    test::write_file(dir / "config.json", text);
    return read_hf_config(dir);
  };
  const ModelConfig llada = read(R"({"activation_type": "silu", "alibi": false, "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"], "attention_dropout": 0.0, "attention_layer_norm": false,
    "attention_layer_norm_with_affine": true, "bias_for_layer_norm": false, "block_group_size": 1,
    "block_type": "llama", "d_model": 4096, "embedding_dropout": 0.0, "embedding_size": 126464,
    "eos_token_id": 126081, "flash_attention": false, "include_bias": false, "include_qkv_bias": false,
    "init_cutoff_factor": null, "init_device": "meta", "init_fn": "mitchell", "init_std": 0.02,
    "input_emb_norm": false, "layer_norm_type": "rms", "layer_norm_with_affine": true,
    "mask_token_id": 126336, "max_sequence_length": 4096, "mlp_hidden_size": 12288, "mlp_ratio": 4,
    "model_type": "llada", "multi_query_attention": null, "n_heads": 32, "n_kv_heads": 32,
    "n_layers": 32, "pad_token_id": 126081, "precision": "amp_bf16", "residual_dropout": 0.0,
    "rms_norm_eps": 1e-05, "rope": true, "rope_full_precision": true, "rope_theta": 500000.0,
    "scale_logits": false, "use_cache": false, "vocab_size": 126464, "weight_tying": false})");
  EXPECT_EQ(llada.hidden_size, 4096);
  EXPECT_EQ(llada.intermediate_size, 12288);
  EXPECT_EQ(llada.num_key_value_heads, 32);
  EXPECT_EQ(llada.max_position_embeddings, 4096);
  EXPECT_EQ(llada.mask_token_id, std::optional<std::int64_t>(126336));
  EXPECT_FALSE(llada.tie_word_embeddings);

  const ModelConfig qwen3 = read(R"({"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
  EXPECT_EQ(qwen3.head_dim(), 128) << "not 1024 / 16";
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_FALSE(qwen3.attention_qkv_bias);
  EXPECT_EQ(qwen3.rope_theta, 1e6);

  const ModelConfig dream = read(R"({"architectures": ["DreamModel"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "mask_token_id": 151666,
    "max_position_embeddings": 131072, "max_window_layers": 28, "model_type": "Dream",
    "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "pad_token_id": 151643, "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000.0,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 152064})");
  EXPECT_EQ(dream.head_dim(), 128);
  EXPECT_TRUE(dream.attention_qkv_bias);
  EXPECT_EQ(dream.mask_token_id, std::optional<std::int64_t>(151666));
}

// The pre-allocation memory check counts Qwen3's wider q/k/v (heads x head_dim > hidden).
TEST(ModelLayouts, MemoryEstimateCountsTheLayoutsParameters) {
  auto dir = test::fresh_dir("layout-memory");
  write_layout_folder(dir, kQwen3Config, kQwen3Tensors);
  const ModelConfig mc = read_hf_config(dir);
  LlamaForCausalLM m(mc);
  double actual = 0;
  for (const auto& p : m->parameters()) actual += double(p.numel());
  const double estimated = estimate_memory(mc, TrainConfig{}).parameters;
  EXPECT_NEAR(estimated, actual, 0.02 * actual);
}

// ---- bad input ----------------------------------------------------------------------------
std::string config_error(const nlohmann::json& cfg) {
  // Per test: ctest runs the tests that call this in parallel processes.
  auto dir = test::fresh_dir(std::string("layout-bad-config-") +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
  test::write_file(dir / "config.json", cfg.dump());
  try {
    read_hf_config(dir);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

TEST(ModelLayouts, UnknownModelTypeListsTheSupportedOnes) {
  auto cfg = nlohmann::json::parse(kQwen2Config);
  cfg["model_type"] = "mistral";
  const std::string e = config_error(cfg);
  EXPECT_NE(e.find("model_type 'mistral'"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  for (const char* t : {"llama", "qwen2", "qwen3", "Dream", "llada"})
    EXPECT_NE(e.find(t), std::string::npos) << t << ": " << e;
}

TEST(ModelLayouts, MissingOrUnsupportedKeysAreNamedWithTheFile) {
  struct Case {
    const std::string& config;
    std::function<void(nlohmann::json&)> edit;
    const char* key;
  };
  const std::vector<Case> cases = {
      {kQwen3Config, [](nlohmann::json& c) { c.erase("num_attention_heads"); }, "'num_attention_heads'"},
      {kQwen2Config, [](nlohmann::json& c) { c["use_sliding_window"] = true; }, "'use_sliding_window'"},
      {kQwen3Config, [](nlohmann::json& c) { c["head_dim"] = 7; }, "'head_dim'"},
      {kQwen3Config,
       [](nlohmann::json& c) { c["layer_types"] = {"full_attention", "sliding_attention"}; },
       "'layer_types'"},
      {kDreamConfig, [](nlohmann::json& c) { c["hidden_act"] = "gelu"; }, "'hidden_act'"},
      {kLladaConfig, [](nlohmann::json& c) { c.erase("d_model"); }, "'d_model'"},
      {kLladaConfig, [](nlohmann::json& c) { c.erase("block_type"); }, "'block_type'"},
      {kLladaConfig, [](nlohmann::json& c) { c["block_type"] = "sequential"; }, "'block_type'"},
      {kLladaConfig, [](nlohmann::json& c) { c["include_bias"] = true; }, "'include_bias'"},
      {kLladaConfig, [](nlohmann::json& c) { c["embedding_size"] = 32; }, "'embedding_size'"},
      {kLladaConfig, [](nlohmann::json& c) { c["n_kv_heads"] = 3; }, "'n_kv_heads'"},
      {kLladaConfig, [](nlohmann::json& c) { c["attention_layer_norm"] = true; }, "'attention_layer_norm'"},
      // LLaDA's effective_n_kv_heads: multi-query means 1 key/value head, not n_kv_heads = 2.
      {kLladaConfig, [](nlohmann::json& c) { c["multi_query_attention"] = true; }, "'multi_query_attention'"},
      {kLladaConfig, [](nlohmann::json& c) { c["block_group_size"] = 2; }, "'block_group_size'"},
  };
  for (const Case& c : cases) {
    auto cfg = nlohmann::json::parse(c.config);
    c.edit(cfg);
    const std::string e = config_error(cfg);
    EXPECT_NE(e.find(c.key), std::string::npos) << c.key << ": " << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  }
}

TEST(ModelLayouts, TensorShapeThatDisagreesWithTheConfigIsNamedAndNothingIsLoaded) {
  auto dir = test::fresh_dir("layout-bad-shape");
  FolderOptions opt;
  opt.edit_config = [](nlohmann::json& c) { c["mlp_hidden_size"] = 20; };  // tensors have 24
  write_layout_folder(dir, kLladaConfig, kLladaTensors, opt);
  const ModelConfig mc = read_hf_config(dir);
  LlamaForCausalLM m(mc);
  auto before = m->named_parameters()["model.layers.0.self_attn.q_proj.weight"].clone();
  try {
    load_into(dir, named_weights(m));
    FAIL() << "a shape mismatch must be refused";
  } catch (const UserError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.safetensors"), std::string::npos) << what;
    EXPECT_NE(what.find("model.transformer.blocks.0.ff_proj.weight"), std::string::npos) << what;
  }
  EXPECT_TRUE(torch::equal(before, m->named_parameters()["model.layers.0.self_attn.q_proj.weight"]))
      << "nothing is copied from a checkpoint that does not match";
}

}  // namespace
}  // namespace loom
