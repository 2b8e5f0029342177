// The gradients of a model packed into flat buffers ("buckets", at most 25 MB each, as
// DistributedDataParallel's default bucket_cap_mb) so that an optimizer step needs a few large
// all-reduces instead of one per parameter. Buckets are packed, reduced and unpacked as a
// pipeline (packing bucket k+1 while bucket k is on the wire) through two reusable buffers,
// so the extra memory is two buckets, not a second copy of the gradients.
//
// A bucket holds the gradients of consecutive parameters of one dtype and device, and then one
// "has a gradient" flag per parameter: a parameter that no rank touched this step keeps no
// gradient (AdamW skips it, as in one process); one that some rank touched gets the sum.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace loom {

class ProcessGroup;

class GradientBuckets {
 public:
  static constexpr std::int64_t kDefaultBucketBytes = 25 << 20;

  GradientBuckets(std::vector<torch::Tensor> params,
                  std::int64_t bucket_bytes = kDefaultBucketBytes);

  std::size_t size() const { return buckets_.size(); }

  // Replaces every parameter's gradient by its SUM over the ranks of `group`.
  void all_reduce(ProcessGroup& group, const std::string& what);

 private:
  struct Bucket {
    std::vector<std::size_t> params;  // indices into params_
    std::vector<std::int64_t> offsets;
    std::int64_t numel = 0;  // gradient elements; the flags follow
  };
  torch::Tensor pack(std::size_t bucket);
  void unpack(std::size_t bucket, const torch::Tensor& reduced);

  std::vector<torch::Tensor> params_;
  std::vector<Bucket> buckets_;
  std::vector<torch::Tensor> buffers_;  // reused: bucket k packs into buffers_[k % 2]
};

}  // namespace loom
