#include "distributed/data_parallel.hpp"

#include <chrono>
#include <cstring>

#include "distributed/gradient_buckets.hpp"
#include "distributed/process_group.hpp"
#include "errors.hpp"

namespace loom {
namespace {

// Metrics as bytes: per entry a 4-byte key length, the key, an 8-byte double.
std::string encode(const sdk::Metrics& m) {
  std::string out;
  for (const auto& [k, v] : m) {
    const auto n = static_cast<std::uint32_t>(k.size());
    out.append(reinterpret_cast<const char*>(&n), sizeof n);
    out += k;
    out.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  return out;
}

void add_decoded(const std::string& bytes, sdk::Metrics& sums) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    std::uint32_t n = 0;
    double v = 0;
    if (at + sizeof n > bytes.size()) throw std::runtime_error("distributed: corrupt metrics");
    std::memcpy(&n, bytes.data() + at, sizeof n);
    at += sizeof n;
    if (at + n + sizeof v > bytes.size()) throw std::runtime_error("distributed: corrupt metrics");
    std::string key = bytes.substr(at, n);
    at += n;
    std::memcpy(&v, bytes.data() + at, sizeof v);
    at += sizeof v;
    sums[key] += v;
  }
}

}  // namespace

DataParallel::DataParallel() = default;
DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}
DataParallel::~DataParallel() = default;
DataParallel::DataParallel(DataParallel&&) noexcept = default;
DataParallel& DataParallel::operator=(DataParallel&&) noexcept = default;

int DataParallel::rank() const { return group_ ? group_->rank() : 0; }
int DataParallel::world_size() const { return group_ ? group_->world_size() : 1; }

void DataParallel::broadcast_parameters(const std::vector<torch::Tensor>& params) {
  if (!group_) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> data;
  for (const auto& p : params) data.push_back(p.detach());
  group_->broadcast(data, 0, "broadcast of rank 0's weights");
}

void DataParallel::sum_totals(sdk::WindowTotals& t, std::int64_t step) {
  if (!group_) return;
  std::vector<torch::Tensor> v{
      torch::tensor({t.rows, t.documents, t.tokens, t.label_tokens, t.next_token_targets},
                    torch::kLong)
          .to(group_->device())};
  group_->all_reduce_sum(v, "window totals of step " + std::to_string(step + 1));
  auto s = v[0].cpu();
  const auto* p = s.data_ptr<std::int64_t>();
  t.rows = p[0], t.documents = p[1], t.tokens = p[2], t.label_tokens = p[3];
  t.next_token_targets = p[4];
}

double DataParallel::sum_gradients(const std::vector<torch::Tensor>& params, std::int64_t step) {
  if (!group_) return 0.0;
  const auto t0 = std::chrono::steady_clock::now();
  if (!buckets_) buckets_ = std::make_unique<GradientBuckets>(params);
  buckets_->all_reduce(*group_, "gradients of step " + std::to_string(step + 1));
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

sdk::Metrics DataParallel::sum_metrics(const sdk::Metrics& local, const std::string& what) {
  if (!group_) return local;
  sdk::Metrics sums;
  for (const auto& bytes : group_->all_gather(encode(local), what)) add_decoded(bytes, sums);
  return sums;
}

std::string DataParallel::from_rank0(const std::string& key, const std::string& value) {
  return group_ ? group_->from_rank0(key, value) : value;
}

}  // namespace loom
