// save_tensors / load_into / load_all with small random Llama-shaped parameter sets.
#include "io/tensor_io.hpp"

#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "io/raw_safetensors.hpp"
#include "io/safetensors_file.hpp"
#include "support/files.hpp"

namespace loom {
namespace {

struct LlamaShape {
  std::int64_t vocab = 50, hidden = 16, intermediate = 24, layers = 2, heads = 4, kv_heads = 2;
  bool tied = false;
};

// Parameter names and shapes as in transformers' LlamaForCausalLM, filled by `make`.
NamedTensors llama_params(const LlamaShape& s, at::ScalarType dtype,
                          const std::function<at::Tensor(at::IntArrayRef)>& make) {
  const std::int64_t head_dim = s.hidden / s.heads;
  NamedTensors params;
  const auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
    params.emplace_back(name, make(shape).to(dtype));
  };
  add("model.embed_tokens.weight", {s.vocab, s.hidden});
  for (std::int64_t i = 0; i < s.layers; ++i) {
    const std::string layer = "model.layers." + std::to_string(i) + ".";
    add(layer + "self_attn.q_proj.weight", {s.hidden, s.hidden});
    add(layer + "self_attn.k_proj.weight", {s.kv_heads * head_dim, s.hidden});
    add(layer + "self_attn.v_proj.weight", {s.kv_heads * head_dim, s.hidden});
    add(layer + "self_attn.o_proj.weight", {s.hidden, s.hidden});
    add(layer + "mlp.gate_proj.weight", {s.intermediate, s.hidden});
    add(layer + "mlp.up_proj.weight", {s.intermediate, s.hidden});
    add(layer + "mlp.down_proj.weight", {s.hidden, s.intermediate});
    add(layer + "input_layernorm.weight", {s.hidden});
    add(layer + "post_attention_layernorm.weight", {s.hidden});
  }
  add("model.norm.weight", {s.hidden});
  if (!s.tied) add("lm_head.weight", {s.vocab, s.hidden});
  return params;
}

NamedTensors random_params(const LlamaShape& shape, at::ScalarType dtype) {
  return llama_params(shape, dtype, [](at::IntArrayRef size) { return at::randn(size); });
}

NamedTensors zero_params(const LlamaShape& shape, at::ScalarType dtype) {
  return llama_params(shape, dtype, [](at::IntArrayRef size) { return at::zeros(size); });
}

NamedTensors without(NamedTensors tensors, const std::string& name) {
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(),
                               [&](const auto& item) { return item.first == name; }),
                tensors.end());
  return tensors;
}

std::string load_error(const std::filesystem::path& path, const NamedTensors& params,
                       const LoadOptions& options = {}) {
  try {
    load_into(path, params, options);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

class TensorIo : public ::testing::Test {
 protected:
  void SetUp() override { at::manual_seed(3); }
  test::ScratchDir dir_;
};

TEST_F(TensorIo, RoundTripKeepsDtypeAndValues) {
  const NamedTensors stored = random_params({}, at::kFloat);
  save_tensors(dir_ / "model.safetensors", stored, {{"format", "pt"}});
  const NamedTensors params = zero_params({}, at::kFloat);
  for (const auto& [name, param] : params) param.requires_grad_(true);  // as model parameters are
  load_into(dir_.path(), params);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(params[i].second, stored[i].second)) << params[i].first;
    EXPECT_TRUE(params[i].second.requires_grad());
  }
  const std::map<std::string, at::Tensor> all = load_all(dir_ / "model.safetensors");
  ASSERT_EQ(all.size(), stored.size());
  for (const auto& [name, tensor] : stored) {
    EXPECT_EQ(all.at(name).scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(all.at(name), tensor)) << name;
  }
}

TEST_F(TensorIo, ConvertsHalfAndBFloat16StorageToFloatParameters) {
  for (const at::ScalarType storage : {at::kBFloat16, at::kHalf}) {
    const NamedTensors stored = random_params({}, storage);
    save_tensors(dir_ / "model.safetensors", stored);
    EXPECT_EQ(load_all(dir_.path()).at("lm_head.weight").scalar_type(), storage);
    const NamedTensors params = zero_params({}, at::kFloat);
    load_into(dir_.path(), params);
    for (std::size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(at::equal(params[i].second, stored[i].second.to(at::kFloat))) << params[i].first;
    }
  }
}

TEST_F(TensorIo, ConvertsFloatStorageToBFloat16Parameters) {
  const NamedTensors stored = random_params({}, at::kFloat);
  save_tensors(dir_ / "model.safetensors", stored);
  const NamedTensors params = zero_params({}, at::kBFloat16);
  load_into(dir_.path(), params);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(params[i].second, stored[i].second.to(at::kBFloat16)));
  }
}

TEST_F(TensorIo, TiedEmbeddingsNeedAllowMissing) {
  LlamaShape tied;
  tied.tied = true;
  const NamedTensors stored = random_params(tied, at::kBFloat16);
  save_tensors(dir_ / "model.safetensors", stored);
  const NamedTensors params = zero_params({}, at::kFloat);  // still has lm_head.weight
  const std::string message = load_error(dir_.path(), params);
  expect_contains(message, "missing from the checkpoint (1)");
  expect_contains(message, "lm_head.weight");
  LoadOptions options;
  options.allow_missing = {"lm_head.weight"};
  load_into(dir_.path(), params, options);
  EXPECT_TRUE(at::equal(params.back().second, at::zeros({50, 16})));  // left as it was
  EXPECT_TRUE(at::equal(params.front().second, stored.front().second.to(at::kFloat)));
}

TEST_F(TensorIo, UnexpectedTensorsCanBeAllowed) {
  const NamedTensors stored = random_params({}, at::kFloat);  // has lm_head.weight
  save_tensors(dir_ / "model.safetensors", stored);
  LlamaShape tied;
  tied.tied = true;
  const NamedTensors params = zero_params(tied, at::kFloat);
  expect_contains(load_error(dir_.path(), params), "not in the model (1):\n    lm_head.weight");
  LoadOptions options;
  options.allow_unexpected = {"lm_head.weight"};
  load_into(dir_.path(), params, options);
  EXPECT_TRUE(at::equal(params.front().second, stored.front().second));
}

TEST_F(TensorIo, MetadataGetsFormatPt) {
  save_tensors(dir_ / "a.safetensors", {{"w", at::ones({1})}});
  EXPECT_EQ(SafetensorsFile::open(dir_ / "a.safetensors").metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}}));
  save_tensors(dir_ / "b.safetensors", {{"w", at::ones({1})}}, {{"format", "np"}, {"k", "v"}});
  EXPECT_EQ(SafetensorsFile::open(dir_ / "b.safetensors").metadata(),
            (std::map<std::string, std::string>{{"format", "np"}, {"k", "v"}}));
}

TEST_F(TensorIo, GroupedQueryAndMultiHeadShapes) {
  for (const std::int64_t kv_heads : {1, 2, 4}) {
    LlamaShape shape;
    shape.kv_heads = kv_heads;
    save_tensors(dir_ / "model.safetensors", random_params(shape, at::kBFloat16));
    EXPECT_EQ(load_error(dir_.path(), zero_params(shape, at::kFloat)), "");
    LlamaShape other = shape;
    other.kv_heads = kv_heads == 4 ? 2 : 4;
    const std::string message = load_error(dir_.path(), zero_params(other, at::kFloat));
    expect_contains(message, "model.layers.0.self_attn.k_proj.weight: checkpoint shape [" +
                                 std::to_string(kv_heads * 4) + ", 16], model shape [" +
                                 std::to_string(other.kv_heads * 4) + ", 16]");
    expect_contains(message, "model.layers.1.self_attn.v_proj.weight");
  }
}

TEST_F(TensorIo, ReportsEveryMissingAndUnexpectedTensorAtOnce) {
  NamedTensors stored = random_params({}, at::kFloat);
  stored = without(without(stored, "model.norm.weight"), "model.layers.1.mlp.up_proj.weight");
  stored.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", at::ones({2}));  // ignored
  stored.emplace_back("model.layers.7.mlp.up_proj.weight", at::ones({2}));
  stored.emplace_back("score.weight", at::ones({2}));
  save_tensors(dir_ / "model.safetensors", stored);
  const NamedTensors params = zero_params({}, at::kFloat);
  const std::string message = load_error(dir_.path(), params);
  expect_contains(message, (dir_ / "model.safetensors").string());
  expect_contains(message, "missing from the checkpoint (2)");
  expect_contains(message, "model.norm.weight");
  expect_contains(message, "model.layers.1.mlp.up_proj.weight");
  expect_contains(message, "in the checkpoint but not in the model (2)");
  expect_contains(message, "model.layers.7.mlp.up_proj.weight");
  expect_contains(message, "score.weight");
  EXPECT_EQ(message.find("inv_freq"), std::string::npos) << message;
  // Nothing was copied.
  EXPECT_TRUE(at::equal(params.front().second, at::zeros({50, 16})));
}

TEST_F(TensorIo, RotaryCachesAreIgnored) {
  NamedTensors stored = random_params({}, at::kFloat);
  stored.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", at::ones({2}));
  stored.emplace_back("model.layers.1.self_attn.rotary_emb.inv_freq", at::ones({2}));
  save_tensors(dir_ / "model.safetensors", stored);
  EXPECT_EQ(load_error(dir_.path(), zero_params({}, at::kFloat)), "");
}

TEST_F(TensorIo, IntegerStorageIsNotConvertedToFloat) {
  save_tensors(dir_ / "x.safetensors", {{"w", at::ones({2, 3}, at::kInt)}});
  const std::string message = load_error(dir_ / "x.safetensors", {{"w", at::zeros({2, 3})}});
  expect_contains(message, "w: checkpoint dtype I32");
}

TEST_F(TensorIo, ShardedCheckpoint) {
  const NamedTensors stored = random_params({}, at::kBFloat16);
  const std::size_t half = stored.size() / 2;
  const NamedTensors first(stored.begin(), stored.begin() + half);
  const NamedTensors second(stored.begin() + half, stored.end());
  save_tensors(dir_ / "model-00001-of-00002.safetensors", first);
  save_tensors(dir_ / "model-00002-of-00002.safetensors", second);
  nlohmann::json index = {{"metadata", {{"total_size", 0}}},
                          {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, tensor] : first) {
    index["weight_map"][name] = "model-00001-of-00002.safetensors";
  }
  for (const auto& [name, tensor] : second) {
    index["weight_map"][name] = "model-00002-of-00002.safetensors";
  }
  test::write_file(dir_ / "model.safetensors.index.json", index.dump(2));

  const NamedTensors params = zero_params({}, at::kFloat);
  load_into(dir_.path(), params);
  for (std::size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(params[i].second, stored[i].second.to(at::kFloat))) << params[i].first;
  }
  EXPECT_EQ(load_all(dir_ / "model.safetensors.index.json").size(), stored.size());

  // An index that puts a tensor in the wrong shard.
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  test::write_file(dir_ / "model.safetensors.index.json", index.dump());
  expect_contains(load_error(dir_.path(), params), "model.norm.weight");
  // A shard that is missing.
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00003.safetensors";
  test::write_file(dir_ / "model.safetensors.index.json", index.dump());
  expect_contains(load_error(dir_.path(), params), "model-00003-of-00003.safetensors");
  // A shard outside the folder.
  index["weight_map"]["model.norm.weight"] = "../model-00001-of-00002.safetensors";
  test::write_file(dir_ / "model.safetensors.index.json", index.dump());
  expect_contains(load_error(dir_.path(), params), "not a file name in the same folder");
  // A tensor in two shards.
  index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors";
  test::write_file(dir_ / "model.safetensors.index.json", index.dump());
  save_tensors(dir_ / "model-00001-of-00002.safetensors",
               {{"model.norm.weight", at::ones({16})}, first[0]});
  expect_contains(load_error(dir_.path(), params), "stored twice");
}

TEST_F(TensorIo, PickleOnlyFolderIsRefused) {
  test::write_file(dir_ / "pytorch_model.bin", "PK\x03\x04 not really");
  test::write_file(dir_ / "config.json", "{}");
  const std::string message = load_error(dir_.path(), zero_params({}, at::kFloat));
  expect_contains(message, "pytorch_model.bin");
  expect_contains(message, "requires safetensors");
}

TEST_F(TensorIo, EmptyFolderAndMissingPath) {
  expect_contains(load_error(dir_.path(), {}), "no model.safetensors");
  expect_contains(load_error(dir_ / "nope", {}), "no such checkpoint");
}

TEST_F(TensorIo, UnalignedDataIsCopiedCorrectly) {
  // A hand-made file whose header is not padded: the F32 data starts at byte 8 + 61.
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}       )";
  ASSERT_EQ(header.size(), 61u);
  // 1.5 = 0x3fc00000, -2.25 = 0xc0100000
  test::write_file(
      dir_ / "u.safetensors",
      test::raw_safetensors(header, test::le_bytes(0x3fc00000, 4) + test::le_bytes(0xc0100000, 4)));
  const at::Tensor w = at::zeros({2}, at::kDouble);
  load_into(dir_ / "u.safetensors", {{"w", w}});
  EXPECT_EQ(w[0].item<double>(), 1.5);
  EXPECT_EQ(w[1].item<double>(), -2.25);
}

TEST_F(TensorIo, SavesNonContiguousAndScalarTensors) {
  const at::Tensor base = at::arange(12, at::kFloat).reshape({3, 4});
  save_tensors(dir_ / "x.safetensors",
               {{"t", base.t()}, {"s", at::scalar_tensor(2.5)}, {"e", at::zeros({0, 3})}});
  const auto all = load_all(dir_ / "x.safetensors");
  EXPECT_TRUE(at::equal(all.at("t"), base.t().contiguous()));
  EXPECT_EQ(all.at("s").dim(), 0);
  EXPECT_EQ(all.at("s").item<double>(), 2.5);
  EXPECT_EQ(all.at("e").sizes(), at::IntArrayRef({0, 3}));
  // load_into a transposed view writes through it.
  const at::Tensor target = at::zeros({3, 4});
  load_into(dir_ / "x.safetensors",
            {{"t", target.t()}, {"s", at::zeros({}, at::kDouble)}, {"e", at::zeros({0, 3})}});
  EXPECT_TRUE(at::equal(target, base));
}

TEST_F(TensorIo, LargeTensorIsCopiedInSlices) {
  // Over the 64 MiB slice size, so the copy goes in two slices.
  const at::Tensor big = at::rand({4100, 4100});
  save_tensors(dir_ / "big.safetensors", {{"big", big}});
  const at::Tensor param = at::empty({4100, 4100});
  load_into(dir_ / "big.safetensors", {{"big", param}});
  EXPECT_TRUE(at::equal(param, big));
}

TEST_F(TensorIo, RejectsBadArguments) {
  EXPECT_THROW(save_tensors(dir_ / "x.safetensors", {{"a", at::ones({1})}, {"a", at::ones({1})}}),
               std::invalid_argument);
  EXPECT_THROW(save_tensors(dir_ / "x.safetensors", {{"a", at::Tensor()}}), std::invalid_argument);
  EXPECT_THROW(save_tensors(dir_ / "x.safetensors", {{"c", at::ones({1}, at::kComplexFloat)}}),
               std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.safetensors"));
}

}  // namespace
}  // namespace loom
