// AdamW (decoupled weight decay), the same update as torch.optim.AdamW, with state kept by
// parameter name so it can be written to and read from checkpoints.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace loom {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

class AdamW {
 public:
  // Parameters with fewer than two dimensions (norm weights, biases) get no weight decay, as
  // in transformers' Trainer.
  AdamW(std::vector<std::pair<std::string, torch::Tensor>> params, AdamWOptions options);

  void step(double lr);  // uses each parameter's .grad(); parameters without one are skipped
  // Contiguous fp32 CPU parameters are updated in one fused pass (adamw_update.hpp) unless
  // this is turned off (tests compare both).
  void set_fused(bool fused) { fused_ = fused; }
  void zero_grad();
  std::int64_t steps_taken() const { return steps_; }

  // "<param>.exp_avg" and "<param>.exp_avg_sq" for each parameter.
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, std::int64_t steps);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, exp_avg, exp_avg_sq;
    bool decay;
  };
  std::vector<Slot> slots_;
  AdamWOptions opt_;
  std::int64_t steps_ = 0;
  bool fused_ = true;
};

// Scales all gradients so their global L2 norm is at most max_norm (0: no clipping); returns
// the norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace loom
