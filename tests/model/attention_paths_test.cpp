// Every attention kernel the build has (SDPA on libtorch 2.x, the fused CPU kernel, the plain
// composite), on every device present (CPU; CUDA when a GPU is there, else skipped), in fp32
// and under bf16 autocast, against the float64 reference's golden logits
// (tests/model/llama_reference.py) for causal, packed and explicit masks, and against each
// other for gradients. On libtorch 2.x, also which SDPA kernel runs.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR >= 2
#include <ATen/record_function.h>
#endif

#include <mutex>
#include <string>
#include <vector>

#include "errors.hpp"
#include "model/llama_reference_golden.hpp"
#include "model/reference_model.hpp"
#include "train/autocast_guard.hpp"

namespace loom {
namespace {

using namespace golden;
using namespace reference;

struct Scenario {
  const char* name;
  bool packed;  // the reference's packed rows (two documents and padding); else one per row
  sdk::AttentionSpec::Kind kind;
  const std::vector<double>*r0p4, *r1p7, *rowsums;
};

const std::vector<Scenario>& scenarios() {
  using K = sdk::AttentionSpec::Kind;
  static const std::vector<Scenario> all = {
      {"causal packed", true, K::Causal, &kCausalPacked_r0p4, &kCausalPacked_r1p7, &kCausalPacked_rowsums},
      {"bidirectional packed", true, K::Bidirectional, &kBidirectionalPacked_r0p4,
       &kBidirectionalPacked_r1p7, &kBidirectionalPacked_rowsums},
      {"causal unpadded", false, K::Causal, &kCausalUnpadded_r0p4, &kCausalUnpadded_r1p7,
       &kCausalUnpadded_rowsums},
      {"bidirectional unpadded", false, K::Bidirectional, &kBidirectionalUnpadded_r0p4,
       &kBidirectionalUnpadded_r1p7, &kBidirectionalUnpadded_rowsums},
      {"explicit block-causal", false, K::Explicit, &kExplicitBlockCausal_r0p4,
       &kExplicitBlockCausal_r1p7, &kExplicitBlockCausal_rowsums},
  };
  return all;
}

// The mask the reference builds for "explicit block-causal": blocks 0-2, 3-5, 6-7; a query
// sees its own block and the ones before it.
torch::Tensor block_causal_mask() {
  auto blk = torch::arange(8, torch::kLong).div(3, "floor");
  return blk.unsqueeze(0).le(blk.unsqueeze(1)).view({1, 1, 8, 8});
}

sdk::AttentionSpec spec_for(const Scenario& s, const at::Device& device) {
  using K = sdk::AttentionSpec::Kind;
  if (s.kind == K::Explicit) return sdk::AttentionSpec::explicit_mask(block_causal_mask().to(device));
  return s.kind == K::Causal ? sdk::AttentionSpec::causal() : sdk::AttentionSpec::bidirectional();
}

std::vector<AttentionKernel> kernels_for(const at::Device& device) {
  std::vector<AttentionKernel> k = {AttentionKernel::Composite};
  if (device.is_cpu()) k.push_back(AttentionKernel::FusedCpu);
  if (sdpa_available()) k.push_back(AttentionKernel::Sdpa);
  return k;
}

class AttentionPaths : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "cuda" && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }
  at::Device device() const { return GetParam() == "cuda" ? at::Device(at::kCUDA) : at::Device(at::kCPU); }

  // The reference model on the device with the kernel pinned.
  LlamaForCausalLM model(AttentionKernel k) const {
    LlamaForCausalLM m(reference_config());
    set_reference_weights(m);
    m->to(device());
    m->set_attention_kernel(k);
    return m;
  }

  // Logits [2, 8, V] (fp32) for a scenario, under bf16 autocast when asked.
  torch::Tensor logits(LlamaForCausalLM& m, const Scenario& s, bool bf16) const {
    Inputs in;
    auto ids = in.ids.to(device());
    torch::Tensor pos, seg;
    if (s.packed) {
      pos = in.pos.to(device());
      seg = in.seg.to(device());
    } else {
      seg = torch::ones_like(ids);
    }
    AutocastGuard autocast(bf16, device().is_cuda());
    auto l = m->project(m->forward(ids, pos, seg, spec_for(s, device())));
    // Not vacuous: under autocast the output projection really ran in bf16.
    EXPECT_EQ(l.scalar_type(), bf16 ? torch::kBFloat16 : torch::kFloat);
    return l.to(torch::kFloat).cpu();
  }
};

// fp32: within the tolerance the model test has always used against the float64 reference.
TEST_P(AttentionPaths, EveryKernelMatchesTheFloat64ReferenceInFp32) {
  torch::NoGradGuard no_grad;
  for (auto k : kernels_for(device())) {
    auto m = model(k);
    for (const auto& s : scenarios()) {
      SCOPED_TRACE(std::string(attention_kernel_name(k)) + ", " + s.name);
      auto l = logits(m, s, /*bf16=*/false);
      expect_close(l[0][4], *s.r0p4, 2e-4);
      expect_close(l[1][7], *s.r1p7, 2e-4);
      expect_close(l.slice(1, 0, 6).sum(-1), *s.rowsums, 2e-3);
      EXPECT_FALSE(l.isnan().any().item<bool>());
    }
  }
}

// bf16 autocast: matrix products round to 8 significant bits, so each logit (|x| < 2.5 here)
// moves by up to a few hundredths through two layers; 0.08 is about five bf16 ulps at 2, and
// the row sums add 40 such logits. The kernels must also agree with each other.
TEST_P(AttentionPaths, EveryKernelStaysCloseToTheReferenceUnderBf16Autocast) {
  torch::NoGradGuard no_grad;
  for (const auto& s : scenarios()) {
    torch::Tensor first;
    for (auto k : kernels_for(device())) {
      SCOPED_TRACE(std::string(attention_kernel_name(k)) + ", " + s.name);
      auto m = model(k);
      auto l = logits(m, s, /*bf16=*/true);
      expect_close(l[0][4], *s.r0p4, 0.08);
      expect_close(l[1][7], *s.r1p7, 0.08);
      expect_close(l.slice(1, 0, 6).sum(-1), *s.rowsums, 0.5);
      if (!first.defined()) first = l;
      EXPECT_LT((l - first).abs().max().item<double>(), 0.08);
    }
  }
}

// Training goes through backward: every kernel gives the composite's parameter gradients.
TEST_P(AttentionPaths, EveryKernelGivesTheCompositesGradients) {
  for (const auto& s : scenarios()) {
    std::vector<torch::Tensor> ref;
    for (auto k : kernels_for(device())) {
      SCOPED_TRACE(std::string(attention_kernel_name(k)) + ", " + s.name);
      auto m = model(k);
      auto w = torch::sin(torch::arange(2 * 8 * 40, torch::kFloat)).view({2, 8, 40});
      auto l = logits(m, s, /*bf16=*/false);
      (l * w).sum().backward();
      std::vector<torch::Tensor> grads;
      for (const auto& p : m->parameters()) grads.push_back(p.grad().cpu());
      if (ref.empty()) {
        ref = grads;
        continue;
      }
      for (std::size_t i = 0; i < grads.size(); ++i)
        EXPECT_LT((grads[i] - ref[i]).abs().max().item<double>(),
                  1e-4 * std::max(1.0, ref[i].abs().max().item<double>()))
            << "parameter " << i;
    }
  }
}

// attn_implementation = "auto": SDPA on libtorch 2.x except under CPU bf16 autocast (where the
// fused kernel measured faster); the fused kernel on 1.13's CPU; eager elsewhere on 1.13.
TEST(AttentionKernelChoice, AutoFollowsTheBuildTheDeviceAndCpuAutocast) {
  const at::Device cpu(at::kCPU), cuda(at::kCUDA);
  const auto a = AttentionKernel::Auto;
  if (sdpa_available()) {
    EXPECT_EQ(resolve_attention_kernel(a, cpu, false), AttentionKernel::Sdpa);
    EXPECT_EQ(resolve_attention_kernel(a, cpu, true), AttentionKernel::FusedCpu);
    EXPECT_EQ(resolve_attention_kernel(a, cuda, false), AttentionKernel::Sdpa);
    EXPECT_EQ(resolve_attention_kernel(AttentionKernel::Sdpa, cpu, true), AttentionKernel::Sdpa);
  } else {
    EXPECT_EQ(resolve_attention_kernel(a, cpu, false), AttentionKernel::FusedCpu);
    EXPECT_EQ(resolve_attention_kernel(a, cuda, false), AttentionKernel::Composite);
    EXPECT_THROW(resolve_attention_kernel(AttentionKernel::Sdpa, cpu), UserError);
  }
  EXPECT_THROW(resolve_attention_kernel(AttentionKernel::FusedCpu, cuda), UserError);
  // The model itself asks the autocast state at forward time.
  LlamaForCausalLM m(reference_config());
  EXPECT_EQ(m->resolved_attention_kernel(cpu), sdpa_available() ? AttentionKernel::Sdpa : AttentionKernel::FusedCpu);
  AutocastGuard autocast(true, /*cuda=*/false);
  EXPECT_EQ(m->resolved_attention_kernel(cpu), AttentionKernel::FusedCpu);
}

#if TORCH_VERSION_MAJOR >= 2
// The aten operators run by `f` (names as the profiler records them), on any thread: the
// callback is copied to autograd's device threads, so CUDA backward operators count too.
std::vector<std::string> operators_run(const std::function<void()>& f) {
  static std::mutex mu;
  static std::vector<std::string>* sink = nullptr;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu);
    sink = &names;
  }
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& fn) -> std::unique_ptr<at::ObserverContext> {
        std::lock_guard<std::mutex> lock(mu);
        if (sink) sink->emplace_back(fn.name());
        return nullptr;
      }).scopes({at::RecordScope::FUNCTION}));
  struct Stop {  // also when f throws
    at::CallbackHandle h;
    ~Stop() {
      at::removeCallback(h);
      std::lock_guard<std::mutex> lock(mu);
      sink = nullptr;
    }
  } stop{handle};
  f();
  return names;
}

bool ran(const std::vector<std::string>& ops, const std::string& part) {
  for (const auto& o : ops)
    if (o.find(part) != std::string::npos) return true;
  return false;
}

// Bidirectional attention over unpadded rows (diffusion training's usual batch) passes no mask
// to SDPA, so SDPA runs a fused kernel (flash on the CPU; flash, cuDNN or memory-efficient on
// CUDA), forward and backward, and never the math fallback that keeps [B, H, S, S].
TEST_P(AttentionPaths, BidirectionalUnpaddedAttentionRunsAFusedSdpaKernel) {
  ModelConfig c = reference_config();
  c.hidden_size = 64;  // head_dim 16: a size every fused kernel takes
  c.intermediate_size = 96;
  LlamaForCausalLM m(c);
  m->to(device());
  auto ids = torch::randint(c.vocab_size, {2, 32}, torch::kLong).to(device());
  const bool bf16 = device().is_cuda();  // CUDA's flash kernel wants half precision
  auto ops = operators_run([&] {
    AutocastGuard autocast(bf16, device().is_cuda());
    auto h = m->forward(ids, {}, {}, sdk::AttentionSpec::bidirectional());
    h.to(torch::kFloat).pow(2).sum().backward();
  });
  ASSERT_TRUE(ran(ops, "scaled_dot_product_attention")) << "the model did not call SDPA";
  EXPECT_FALSE(ran(ops, "_scaled_dot_product_attention_math")) << "SDPA fell back to its math path";
  if (device().is_cpu()) {
    EXPECT_TRUE(ran(ops, "_scaled_dot_product_flash_attention_for_cpu"));
    EXPECT_TRUE(ran(ops, "_scaled_dot_product_flash_attention_for_cpu_backward"));
  } else {
    EXPECT_TRUE(ran(ops, "_scaled_dot_product_flash_attention") ||
                ran(ops, "_scaled_dot_product_cudnn_attention") ||
                ran(ops, "_scaled_dot_product_efficient_attention"));
  }
}
#endif

INSTANTIATE_TEST_SUITE_P(Devices, AttentionPaths, ::testing::Values("cpu", "cuda"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace loom
