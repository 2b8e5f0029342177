#include "generation_callback.hpp"

#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "keyed_random.hpp"
#include "noise_schedule.hpp"
#include "sampler.hpp"

namespace loom::diffusion {

namespace {

bool excluded_id(const std::vector<bool>& excluded, std::int64_t id) {
  return id < 0 || id >= static_cast<std::int64_t>(excluded.size()) ||
         excluded[static_cast<std::size_t>(id)];
}

}  // namespace

void GenerationCallback::setup(GenerationSetup setup) { setup_ = std::move(setup); }

void GenerationCallback::observe(const sdk::Batch& batch, bool training) {
  if (!setup_.config.generate_samples || !batch.input_ids.defined()) return;
  const auto want = static_cast<std::size_t>(setup_.config.num_generation_samples);
  const std::int64_t max_len = setup_.config.generation_max_length;
  at::Tensor ids = batch.input_ids.to(at::kCPU, at::kLong).contiguous();
  at::Tensor labels =
      batch.labels.defined() ? batch.labels.to(at::kCPU, at::kLong).contiguous() : ids;
  at::Tensor seg = batch.segment_ids.defined()
                       ? batch.segment_ids.to(at::kCPU, at::kLong).contiguous()
                       : at::ones_like(ids);
  auto id_a = ids.accessor<std::int64_t, 2>();
  auto lab_a = labels.accessor<std::int64_t, 2>();
  auto seg_a = seg.accessor<std::int64_t, 2>();
  auto& docs = training ? train_docs_ : eval_docs_;
  std::size_t taken = 0;
  for (std::int64_t b = 0; b < ids.size(0) && taken < want; ++b) {
    // The row's first document.
    std::int64_t start = 0;
    while (start < ids.size(1) && seg_a[b][start] == 0) ++start;
    if (start == ids.size(1)) continue;
    std::int64_t end = start;
    while (end < ids.size(1) && seg_a[b][end] == seg_a[b][start]) ++end;
    end = std::min(end, start + max_len);
    KeptDocument doc;
    std::int64_t learnable = 0;
    for (std::int64_t s = start; s < end; ++s) {
      doc.ids.push_back(id_a[b][s]);
      doc.labels.push_back(lab_a[b][s]);
      if (lab_a[b][s] != sdk::kIgnoreIndex && !excluded_id(setup_.excluded, id_a[b][s]))
        ++learnable;
    }
    if (learnable < 2) continue;  // nothing worth filling (e.g. the answer was cut off)
    docs.push_back(std::move(doc));
    ++taken;
  }
  while (docs.size() > want) docs.pop_front();
}

bool GenerationCallback::due(const sdk::TrainerState& state) const {
  return setup_.config.generate_samples && state.is_main_process() && state.step > 0 &&
         state.step % setup_.config.generation_interval == 0;
}

void GenerationCallback::on_step_end(sdk::TrainerState& state) {
  if (!due(state)) return;
  generate_now(state, isatty(fileno(stdout)) != 0);
}

SampleReport GenerationCallback::generate_one(sdk::ModelHandle& model,
                                              const sdk::TokenizerHandle& tokenizer,
                                              const KeptDocument& doc, std::int64_t step,
                                              std::int64_t index, bool colour) const {
  const auto n = static_cast<std::int64_t>(doc.ids.size());
  std::vector<std::int64_t> candidates;  // positions that may be masked
  bool instruction = false;
  for (std::int64_t s = 0; s < n; ++s) {
    const bool special = excluded_id(setup_.excluded, doc.ids[static_cast<std::size_t>(s)]);
    const bool learnable = doc.labels[static_cast<std::size_t>(s)] != sdk::kIgnoreIndex;
    if (!learnable && !special) instruction = true;
    if (learnable && !special && !(setup_.logit_shift && s == 0)) candidates.push_back(s);
  }
  KeyedRandom rng{setup_.seed, static_cast<std::uint64_t>(RandomStream::Generation),
                  static_cast<std::uint64_t>(step), static_cast<std::uint64_t>(index)};
  std::vector<std::int64_t> chosen;
  if (instruction) {
    chosen = candidates;  // the whole answer
  } else {
    NoiseSchedule schedule(setup_.config);
    const double p = schedule.mask_probability(rng.uniform(0));
    auto count = static_cast<std::size_t>(std::llround(p * static_cast<double>(candidates.size())));
    count = std::clamp<std::size_t>(count, 1, candidates.size());
    for (std::size_t i = 0; i < count; ++i) {  // partial Fisher-Yates
      std::size_t j = i + rng.below(1 + i, candidates.size() - i);
      std::swap(candidates[i], candidates[j]);
    }
    chosen.assign(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(count));
  }
  SampleTokens tokens;
  tokens.original = doc.ids;
  tokens.masked = doc.ids;
  for (auto s : chosen) tokens.masked[static_cast<std::size_t>(s)] = setup_.mask_token_id;

  // The [diffusion] sampling keys apply to training samples too.
  SamplerOptions opt = sampler_options(setup_.config, setup_.logit_shift, setup_.mask_token_id,
                                       tokenizer.eos_id().value_or(-1));
  opt.stop_at_eos = opt.stop_at_eos && opt.eos_token_id >= 0;
  opt.suppress_eos = opt.suppress_eos && opt.eos_token_id >= 0;
  opt.steps = setup_.config.generation_steps;
  opt.temperature = setup_.config.generation_temperature;
  opt.block_length = setup_.config.block_length.value_or(0);
  opt.seed = rng.bits(2);
  at::Tensor start = at::tensor(tokens.masked, at::kLong);
  at::Tensor out = ReverseSampler(opt).run(model, start).contiguous();
  tokens.generated.assign(out.data_ptr<std::int64_t>(), out.data_ptr<std::int64_t>() + out.numel());
  return describe_sample(tokenizer, tokens, setup_.mask_token_id, colour);
}

std::vector<SampleReport> GenerationCallback::generate_now(sdk::TrainerState& state, bool colour) {
  std::vector<SampleReport> reports;
  if (!state.model || !state.tokenizer || setup_.mask_token_id < 0) return reports;
  const auto& docs = eval_docs_.empty() ? train_docs_ : eval_docs_;
  if (docs.empty()) return reports;

  std::vector<std::string> lines;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    reports.push_back(generate_one(*state.model, *state.tokenizer, docs[i], state.step,
                                   static_cast<std::int64_t>(i), colour));
    lines.push_back(sample_json_line(state.step, reports.back()));
  }

  std::ostringstream os;
  os << "==== diffusion samples at step " << state.step << " ("
     << (eval_docs_.empty() ? "train" : "eval") << " data, " << setup_.config.generation_steps
     << " steps) ====\n";
  for (std::size_t i = 0; i < reports.size(); ++i) {
    os << "Sample " << (i + 1) << ":\n";
    std::istringstream body(reports[i].rendered);
    for (std::string line; std::getline(body, line);) os << "  " << line << "\n";
  }
  std::cout << os.str() << std::flush;

  const std::string dir = !state.output_dir.empty() ? state.output_dir : setup_.output_dir;
  if (!dir.empty()) {
    std::filesystem::create_directories(dir);
    const auto path = std::filesystem::path(dir) / "samples.jsonl";
    std::ofstream file(path, std::ios::app);
    if (!file) throw std::runtime_error("diffusion: cannot append to " + path.string());
    for (const auto& line : lines) file << line << "\n";
  }
  return reports;
}

void GenerationCallback::forget_samples_after(const sdk::TrainerState& state) const {
  const std::string dir = !state.output_dir.empty() ? state.output_dir : setup_.output_dir;
  if (!state.is_main_process() || dir.empty()) return;
  const auto path = std::filesystem::path(dir) / "samples.jsonl";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return;
  std::string keep;
  {
    std::ifstream in(path, std::ios::binary);
    for (std::string line; std::getline(in, line);) {
      if (in.eof()) break;  // no newline after it: torn by a kill mid-write
      // Lines are sample_json_line's: {"step":N,...}.
      static const std::string head = "{\"step\":";
      if (line.compare(0, head.size(), head) != 0) continue;
      char* end = nullptr;
      const long long step = std::strtoll(line.c_str() + head.size(), &end, 10);
      if (end != line.c_str() + head.size() && *end == ',' && step <= state.step) keep += line + "\n";
    }
  }
  const auto tmp = std::filesystem::path(path.string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << keep;
    out.flush();
    if (!out) throw std::runtime_error("diffusion: cannot write " + tmp.string());
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("diffusion: cannot replace " + path.string() + ": " + ec.message());
}

}  // namespace loom::diffusion
