// `trainer generate`: sampling from a checkpoint with the loss plugin's sampler.
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "errors.hpp"
#include "io/hf_config.hpp"
#include "model/instrumented_model_handle.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

// Loads a checkpoint for inference; a plugin that has to add tokens to a trained checkpoint
// (e.g. a mask token the checkpoint never learned) is refused, since those rows are untrained.
ModelBundle load_checkpoint_for(const std::string& command, const fs::path& ckpt,
                                const TrainConfig& cfg, PluginSet& plugins) {
  if (!fs::is_directory(ckpt)) throw UserError("--checkpoint " + ckpt.string() + ": not a folder");
  plugins.configure(cfg, run_info_for(cfg, command));
  const auto stored_vocab = read_hf_config(ckpt / "config.json").vocab_size;
  ModelBundle b = build_model_bundle(cfg, ckpt, plugins, /*training=*/false);
  if (b.model->vocab_size() != stored_vocab || b.tokenizer->vocab_size() > stored_vocab)
    throw UserError("checkpoint " + ckpt.string() + " lacks tokens the plugins need (they had to add " +
                    std::to_string(b.tokenizer->vocab_size() - stored_vocab) +
                    " new token(s), e.g. a mask token): was it trained with these plugins?");
  b.model->set_training(false);
  // Plugins read back what their on_save wrote into the folder (an EMA, say).
  sdk::TrainerState state;
  {
    std::ifstream in(ckpt / "trainer_state.json");  // checkpoint-<N>/ has one, final/ none
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("step") && j["step"].is_number_integer())
      state.step = j["step"].get<std::int64_t>();
  }
  state.output_dir = cfg.output_dir;
  state.model = b.model.get();
  state.tokenizer = b.tokenizer.get();
  plugins.on_load(state, ckpt.string());
  return b;
}

int run_generate(const GenerateArgs& a) {
  const fs::path ckpt = a.checkpoint;
  TrainConfig cfg = config_for(a.common, ckpt);
  if (cfg.threads > 0) at::set_num_threads(cfg.threads);  // once, as training does
  PluginSet plugins = plugins_for(a.common, cfg);
  ModelBundle b = load_checkpoint_for("generate", ckpt, cfg, plugins);
  LoadedPlugin* sampler = plugins.sampler();
  if (!sampler)
    throw UserError("no loaded plugin provides a sampler (load the objective the checkpoint was "
                    "trained with, e.g. --plugin diffusion)");
  if (a.complete < 0 || !(a.mask >= 0 && a.mask <= 1))
    throw UserError("--complete must be >= 0 and --mask between 0 and 1");
  torch::NoGradGuard no_grad;
  const bool colour = isatty(fileno(stdout)) != 0;
  auto generate = [&](const std::string& prompt, std::int64_t complete, double mask) {
    sdk::GenerateRequest req;
    req.prompt_ids = b.tokenizer->encode_with_special(prompt);
    req.complete_tokens = complete;
    req.mask_ratio = mask;
    if (complete == 0 && mask == 0) req.complete_tokens = 32;
    // Sizes against the model before anything is allocated for them.
    const std::int64_t context = b.model->max_position_embeddings();
    const std::int64_t prompt_len = std::int64_t(req.prompt_ids.size());
    if (!(mask >= 0 && mask <= 1)) throw UserError("--mask must be a number in [0, 1]");
    if (req.complete_tokens < 0 || prompt_len + req.complete_tokens > context)
      throw UserError("--complete " + std::to_string(req.complete_tokens) + ": the prompt (" +
                      std::to_string(prompt_len) + " tokens) and the completion exceed the model's context of " +
                      std::to_string(context) + " tokens (max_position_embeddings); at most " +
                      std::to_string(std::max<std::int64_t>(0, context - prompt_len)));
    if (prompt_len > context)
      throw UserError("the prompt (" + std::to_string(prompt_len) + " tokens) exceeds the model's context of " +
                      std::to_string(context) + " tokens (max_position_embeddings)");
    if (a.steps > context)
      throw UserError("--steps " + std::to_string(a.steps) + ": more reverse steps than the model has positions (" +
                      std::to_string(context) + "); each step reveals at least one token");
    req.steps = a.steps;
    req.temperature = a.temperature;
    req.block_length = a.block_length;
    req.seed = a.seed;
    sdk::GenerateResult r;
    InstrumentedModelHandle timed(*b.model);
    const auto t0 = Clock::now();
    try {
      r = sampler->plugin->generate(a.profile ? static_cast<sdk::ModelHandle&>(timed) : *b.model,
                                    *b.tokenizer, req, colour);
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      throw UserError("plugin '" + sampler->name + "' failed in hook generate: " + e.what());
    }
    const double total = since(t0);
    std::cout << r.rendered << std::endl;
    if (a.profile) {
      // Generated tokens: the completion, or the masked prompt tokens filled back.
      std::int64_t generated = 0;
      for (std::size_t i = 0; i < r.masked.size() && i < r.generated.size(); ++i)
        generated += r.masked[i] != r.generated[i] ? 1 : 0;
      if (req.complete_tokens > 0) generated = req.complete_tokens;
      const double model_s = timed.forward_s + timed.projection_s;
      std::fprintf(stderr,
                   "{\"generated_tokens\": %lld, \"seconds\": %.6f, \"tokens_per_s\": %.3f, "
                   "\"forward_calls\": %lld, \"model_forward_s\": %.6f, \"projection_s\": %.6f, "
                   "\"outside_model_s\": %.6f, \"outside_model_share\": %.4f, \"threads\": %d}\n",
                   static_cast<long long>(generated), total, double(generated) / total,
                   static_cast<long long>(timed.forward_calls), timed.forward_s, timed.projection_s,
                   total - model_s, (total - model_s) / total, at::get_num_threads());
    }
  };
  if (a.prompt) {
    generate(*a.prompt, a.complete, a.mask);
    return 0;
  }
  // Interactive: ":complete N text" or ":mask R text", else the command line's mode.
  std::cerr << "enter a prompt (\":complete N text\", \":mask R text\"); Ctrl-D ends\n";
  for (std::string line; std::cerr << "> ", std::getline(std::cin, line);) {
    if (line.empty()) continue;
    std::int64_t complete = a.complete;
    double mask = a.mask;
    std::istringstream in(line);
    std::string head;
    if (line.rfind(":complete", 0) == 0) {
      in >> head >> complete;
      mask = 0;
      std::getline(in >> std::ws, line);
    } else if (line.rfind(":mask", 0) == 0) {
      in >> head >> mask;
      complete = 0;
      std::getline(in >> std::ws, line);
    }
    generate(line, complete, mask);
  }
  return 0;
}

}  // namespace loom
