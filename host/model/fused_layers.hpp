// RMSNorm and SwiGLU as single-pass CPU autograd functions (see cpu_kernels.hpp). Each saves
// only its input (and RMSNorm its per-row statistics): the composites keep two or three more
// activation-sized tensors per call and make five to eight passes over them.
#pragma once

#include <torch/torch.h>

namespace loom {

// y = weight * x / sqrt(mean(x^2) + eps) over the last dimension. Fused for CPU tensors whose
// dtype is the weight's (fp32 or fp64); otherwise the composite, statistics in fp32 as
// transformers computes them.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);
torch::Tensor reference_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// gate_up [..., 2F] (gate then up, as one matrix product makes them) -> silu(gate) * up
// [..., F]. Fused for CPU fp32, bf16 and fp64; otherwise the composite.
torch::Tensor swiglu(const torch::Tensor& gate_up);
torch::Tensor reference_swiglu(const torch::Tensor& gate_up);

}  // namespace loom
