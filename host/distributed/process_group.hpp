// One process's membership in a data-parallel job, over PyTorch's c10d: a TCPStore at
// MASTER_ADDR:MASTER_PORT (hosted by rank 0) for the rendezvous, and a c10d process group
// (Gloo for CPU tensors; NCCL when this libtorch has it and the tensors are on a GPU) for the
// collectives.
//
// Every collective is named by its caller ("gradients of step 12"), and before entering one a
// rank records its sequence number in the store. When a collective fails -- a peer's
// connection closed, or nothing arrived within distributed_timeout_s -- the ranks whose number
// is behind are the ones that never arrived, and the UserError names them:
//   distributed: rank 0 gave up in 'gradients of step 12': rank 1 did not arrive within
//   the 30 s timeout (...)
// The c10d headers stay in the .cpp (they are heavy and need libgloo-dev).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "distributed/launch_environment.hpp"

namespace loom {

struct ProcessGroupOptions {
  std::string backend = "auto";  // auto | gloo | nccl (auto: nccl for a CUDA device, if built)
  std::chrono::milliseconds timeout{std::chrono::minutes(30)};
  torch::Device device = torch::kCPU;  // where the tensors of the collectives live
};

class ProcessGroup {
 public:
  // Rendezvous: rank 0 opens the store (a port in use is a UserError), every rank announces
  // itself and waits for all others (naming the missing ones after the timeout), then the
  // c10d group connects.
  ProcessGroup(const LaunchEnvironment& env, const ProcessGroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int world_size() const;
  const std::string& backend() const;  // "gloo" or "nccl"
  torch::Device device() const;        // where collective tensors must live
  double timeout_seconds() const;

  // In-place SUM over all ranks; the tensors are reduced as separate, concurrent operations
  // and this returns when all are done.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what);
  // SUM over all ranks of `count` tensors made one at a time by `fill(i)` and handed back,
  // reduced, to `drain(i, tensor)`, with at most `in_flight` reductions under way: filling the
  // next overlaps reducing the previous, and memory stays at `in_flight` tensors.
  void all_reduce_sum_pipelined(std::size_t count,
                                const std::function<torch::Tensor(std::size_t)>& fill,
                                const std::function<void(std::size_t, const torch::Tensor&)>& drain,
                                const std::string& what, std::size_t in_flight = 2);
  // In-place: every rank gets root's values.
  void broadcast(std::vector<torch::Tensor>& tensors, int root, const std::string& what);
  // Every rank's bytes, in rank order.
  std::vector<std::string> all_gather(const std::string& bytes, const std::string& what);
  // Rank 0's `value` on every rank (through the store); `key` must be unique in the run.
  std::string from_rank0(const std::string& key, const std::string& value);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether this build has the Gloo backend (the CPU's; libtorch built with Gloo and its headers
// present when loom was compiled).
bool gloo_available();

}  // namespace loom
