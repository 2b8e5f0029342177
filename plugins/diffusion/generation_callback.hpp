// Sample generation during training (Axolotl's DiffusionGenerationCallback): every
// generation_interval optimizer steps, on rank 0, a few documents seen by transform_batch
// (before masking; eval batches preferred when there are any) are masked -- instruction
// documents: their whole answer; others: a share p = schedule(t), t ~ U[0, 1) -- and filled
// back by the reverse sampler. Each sample is printed as Original / Masked / Generated
// (colours only when stdout is a terminal) and appended to <output_dir>/samples.jsonl.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "diffusion_config.hpp"
#include "loom/sdk.hpp"
#include "sample_render.hpp"

namespace loom::diffusion {

struct GenerationSetup {
  DiffusionConfig config;
  bool logit_shift = false;
  std::int64_t mask_token_id = -1;
  std::vector<bool> excluded;  // ids never masked
  std::uint64_t seed = 0;
  std::string output_dir;  // samples.jsonl goes here; empty: not written
};

class GenerationCallback {
 public:
  void setup(GenerationSetup setup);

  // Keeps the first documents of the batch's rows (call before masking).
  void observe(const sdk::Batch& batch, bool training);

  // Whether `step` is a generation step for this process.
  bool due(const sdk::TrainerState& state) const;

  // Generates, prints and records the samples (whatever the step); returns them.
  std::vector<SampleReport> generate_now(sdk::TrainerState& state, bool colour);

  // on_step_end: generate_now when due, with colours when stdout is a terminal.
  void on_step_end(sdk::TrainerState& state);

  // --resume (rank 0): samples.jsonl keeps its lines up to state.step (the checkpoint's); later
  // ones, and a torn last line, are dropped by replacing the file atomically.
  void forget_samples_after(const sdk::TrainerState& state) const;

  std::size_t kept() const { return train_docs_.size() + eval_docs_.size(); }

 private:
  struct KeptDocument {
    std::vector<std::int64_t> ids;
    std::vector<std::int64_t> labels;
  };

  SampleReport generate_one(sdk::ModelHandle& model, const sdk::TokenizerHandle& tokenizer,
                            const KeptDocument& doc, std::int64_t step, std::int64_t index,
                            bool colour) const;

  GenerationSetup setup_;
  std::deque<KeptDocument> train_docs_;
  std::deque<KeptDocument> eval_docs_;
};

}  // namespace loom::diffusion
