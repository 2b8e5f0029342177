// LLaDA's forward process on a packed micro-batch: every document of a row draws its own
// diffusion time t, gets p = schedule(t), and each of its eligible tokens is replaced by the
// mask token with probability p.
//
// Eligible tokens: inside a document (segment id != 0), with a label (not kIgnoreIndex: never
// a prompt token of instruction data), not a special token (BOS/EOS/PAD, the mask token, any
// id the tokenizer calls special) and, with logit shift, not the first token of its document
// (nothing inside the document precedes it, so it can never be predicted; it stays visible).
//
// Randomness is counter-based (see keyed_random.hpp), keyed by
//   (run seed, train|eval, Batch::sample_index, eval repeat, segment id) and the position,
// so a row's mask depends on nothing but the seed and the row itself: not on the other rows of
// the micro-batch, the micro-batch size, the rank, the world size or the optimizer step.
// sample_index is unique over the whole run, so a second epoch draws new masks; resuming from
// a checkpoint redraws exactly the masks of the uninterrupted run.
//
// t sampling:
//  - uniform: t ~ U[0, 1) per document.
//  - stratified: the rows of the micro-batch, ordered by sample_index, take the strata
//    0..B-1 in a seeded random order (keyed by the batch's smallest sample index), and
//    t_row = (k + u) / B with u ~ U[0, 1) drawn from the row's own key. The j-th document of
//    a row (segment id j+1) uses t = frac(t_row + j * 0.618...), a fixed rotation, so for
//    every j the micro-batch still holds one t per (rotated) stratum. Marginally every t is
//    U[0, 1), so the loss stays unbiased, and the variance across micro-batches drops (MDLM's
//    low-discrepancy sampler). Unlike uniform t, the draw depends on which rows share the
//    micro-batch -- that is the point -- but not on their order, the rank or the world size:
//    loom's loader cuts micro-batches as aligned blocks of the run's row stream, the same
//    blocks for any world size and accumulation.
//
// random_length_prob (training only): a row is cut, with this probability, to a length
// uniform in [1, S]; the tail becomes padding (segment id 0, label kIgnoreIndex). This is
// decided per row (not per batch) to keep draws independent of the batch composition, and
// keeps the tensor shapes (the host's window totals and the loss normaliser stay as counted).
#pragma once

#include <cstdint>
#include <vector>

#include "loom/sdk.hpp"
#include "noise_schedule.hpp"

namespace loom::diffusion {

// Keys the plugin stores in Batch::extras (all [B, S], on the batch's device).
inline constexpr const char* kTargetsKey = "diffusion.targets";       // int64: original ids
inline constexpr const char* kMaskedKey = "diffusion.masked";         // bool: replaced by mask
inline constexpr const char* kPMaskKey = "diffusion.p_mask";          // float: p of the document
inline constexpr const char* kEligibleKey = "diffusion.eligible";     // bool: could be masked
inline constexpr const char* kAnswerLenKey = "diffusion.answer_len";  // float: eligible answer
                                                                      // tokens of the token's
                                                                      // instruction document,
                                                                      // 0 for pretraining docs

// The smallest eps evaluation draws with (DiffusionPlugin: max(eps, this)).
inline constexpr double kEvalMinEps = 1e-3;

struct ForwardProcessOptions {
  NoiseSchedule schedule;  // training draws
  // Evaluation draws: the linear schedule p = (1 - eps) t + eps, never clamped. With weights
  // 1/p it estimates the continuous-time bound (negative ELBO), which does not depend on the
  // schedule training used; a clamped or cosine p with weights 1/p would not (it is a training
  // weighting, not the bound).
  NoiseSchedule eval_schedule{NoiseScheduleKind::Linear, 1e-3, 0.0, 1.0};
  TSampling t_sampling = TSampling::Uniform;
  double random_length_prob = 0.0;
  bool logit_shift = false;
  std::int64_t mask_token_id = -1;
  std::uint64_t seed = 0;
};

// Which draw: the training draw, or evaluation pass `repeat` (fixed seeds, so evaluations are
// comparable across steps).
struct DrawKind {
  bool training = true;
  std::int64_t repeat = 0;
};

class ForwardProcess {
 public:
  ForwardProcess() = default;
  // `excluded[id]` is true for token ids that are never masked (special tokens).
  ForwardProcess(ForwardProcessOptions options, std::vector<bool> excluded);

  // Masks `batch` in place: rewrites input_ids (and, for a length cut, segment_ids/labels)
  // and stores the tensors listed above in batch.extras.
  void apply(sdk::Batch& batch, const DrawKind& kind) const;

  const ForwardProcessOptions& options() const { return options_; }
  bool is_excluded(std::int64_t id) const;

 private:
  // Stratified: the base time of each row of the batch ([B] sample indices, CPU int64).
  std::vector<double> stratified_row_times(const at::Tensor& sample_index,
                                           const DrawKind& kind) const;
  // `row_time`: the row's stratified base time, or negative for uniform sampling.
  double document_time(std::int64_t sample_index, std::int64_t segment_id, double row_time,
                       const DrawKind& kind) const;

  ForwardProcessOptions options_;
  std::vector<bool> excluded_;
};

}  // namespace loom::diffusion
