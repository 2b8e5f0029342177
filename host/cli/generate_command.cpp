// `trainer generate`: sampling from a checkpoint with the loss plugin's sampler.
#include <torch/torch.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "errors.hpp"
#include "io/durable_file.hpp"
#include "io/hf_config.hpp"
#include "model/instrumented_model_handle.hpp"
#include "train/model_bundle.hpp"

namespace loom {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The sampler flags (--threshold 0.9, --cache dual, ...) as --set overrides of the table of
// the plugin that samples; a key that plugin does not declare is an error naming the flag.
std::vector<std::string> sampler_overrides(const GenerateArgs& a, const PluginSet& plugins) {
  std::vector<std::string> out;
  if (a.sampler_settings.empty()) return out;
  const LoadedPlugin* sampler = nullptr;
  for (const auto& p : plugins.plugins())
    if (p.plugin->provides_sampler()) {
      if (sampler)
        throw UserError(a.sampler_settings.front().flag + ": plugins '" + sampler->name + "' and '" + p.name +
                        "' both sample; set the key with --set <plugin>.<key>=<value>");
      sampler = &p;
    }
  if (!sampler)
    throw UserError(a.sampler_settings.front().flag +
                    ": no loaded plugin provides a sampler (load the objective the checkpoint was trained "
                    "with, e.g. --plugin diffusion)");
  const auto schema = sampler->plugin->config_schema();
  for (const auto& s : a.sampler_settings) {
    const bool declared =
        std::any_of(schema.begin(), schema.end(), [&](const sdk::ConfigKey& k) { return k.name == s.key; });
    if (!declared)
      throw UserError(s.flag + ": the sampler plugin '" + sampler->name + "' has no key '" + s.key + "'");
    out.push_back(sampler->name + "." + s.key + "=" + s.value);
  }
  return out;
}

// One line of --input: the request and the prompt's text.
struct BatchLine {
  std::int64_t line = 0;
  std::string prompt;
  sdk::GenerateRequest request;
};

std::vector<BatchLine> read_batch_input(const GenerateArgs& a, const Tokenizer& tok,
                                        std::int64_t context) {
  std::ifstream in(a.input);
  if (!in) throw UserError("--input " + a.input + ": cannot open");
  std::vector<BatchLine> lines;
  std::int64_t n = 0;
  for (std::string text; std::getline(in, text);) {
    ++n;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = a.input + ":" + std::to_string(n);
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw UserError(where + ": not a JSON object");
    if (!j.contains("prompt") || !j["prompt"].is_string())
      throw UserError(where + ": no \"prompt\" string");
    BatchLine b;
    b.line = n;
    b.prompt = j["prompt"].get<std::string>();
    b.request.prompt_ids = tok.encode_with_special(b.prompt);
    b.request.complete_tokens = a.complete > 0 ? a.complete : 32;
    if (j.contains("max_new_tokens")) {
      const auto& m = j["max_new_tokens"];
      if (!m.is_number_integer() || m.get<std::int64_t>() < 1)
        throw UserError(where + ": max_new_tokens must be an integer >= 1");
      b.request.complete_tokens = m.get<std::int64_t>();
    }
    b.request.seed = a.seed;
    if (j.contains("seed")) {
      const auto& sd = j["seed"];
      if (!sd.is_number_unsigned() && !(sd.is_number_integer() && sd.get<std::int64_t>() >= 0))
        throw UserError(where + ": seed must be an integer >= 0");
      b.request.seed = sd.get<std::uint64_t>();
    }
    const auto prompt_len = std::int64_t(b.request.prompt_ids.size());
    if (prompt_len + b.request.complete_tokens > context)
      throw UserError(where + ": the prompt (" + std::to_string(prompt_len) + " tokens) and " +
                      std::to_string(b.request.complete_tokens) + " new tokens exceed the model's context of " +
                      std::to_string(context) + " tokens (max_position_embeddings)");
    b.request.steps = a.steps;
    b.request.temperature = a.temperature;
    b.request.block_length = a.block_length;
    lines.push_back(std::move(b));
  }
  if (lines.empty()) throw UserError("--input " + a.input + ": no prompts");
  return lines;
}

// `--input`: the prompts in batches of --batch-size, each batch's results appended (durably)
// to --output as it ends, so what was written stays valid JSONL whatever happens later.
int run_generate_batches(const GenerateArgs& a, ModelBundle& b, LoadedPlugin& sampler) {
  const std::int64_t context = b.model->max_position_embeddings();
  if (a.steps > context)
    throw UserError("--steps " + std::to_string(a.steps) + ": more reverse steps than the model has positions (" +
                    std::to_string(context) + "); each step reveals at least one token");
  if (a.profile) throw UserError("--profile times one prompt; batch mode (--input) reports seconds per batch");
  const auto lines = read_batch_input(a, *b.tokenizer, context);
  if (!a.output.empty()) write_file_durably(a.output, "");
  const bool batched = sampler.library->info().supports(sdk::kMinorCachedSampling);
  for (std::size_t first = 0; first < lines.size(); first += std::size_t(a.batch_size)) {
    const std::size_t end = std::min(lines.size(), first + std::size_t(a.batch_size));
    std::vector<sdk::GenerateRequest> requests;
    for (std::size_t i = first; i < end; ++i) requests.push_back(lines[i].request);
    std::vector<sdk::GeneratedSequence> results;
    const auto t0 = Clock::now();
    try {
      if (batched) {
        results = sampler.plugin->generate_batch(*b.model, *b.tokenizer, requests, false);
      } else {  // a plugin built before SDK 1.3: one request at a time, forwards counted here
        for (const auto& r : requests) {
          InstrumentedModelHandle counted(*b.model);
          sdk::GeneratedSequence g;
          g.result = sampler.plugin->generate(counted, *b.tokenizer, r, false);
          g.new_tokens = r.complete_tokens;
          g.forward_passes = counted.forward_calls;
          results.push_back(std::move(g));
        }
      }
    } catch (const UserError&) {
      throw;
    } catch (const std::exception& e) {
      throw UserError("plugin '" + sampler.name + "' failed in hook " + (batched ? "generate_batch" : "generate") +
                      ": " + e.what());
    }
    const double seconds = since(t0);
    if (results.size() != requests.size())
      throw UserError("plugin '" + sampler.name + "' returned " + std::to_string(results.size()) + " results for " +
                      std::to_string(requests.size()) + " prompts");
    std::string out;
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& line = lines[first + i];
      const auto& g = results[i];
      const auto begin = std::min(line.request.prompt_ids.size(), g.result.generated.size());
      const auto stop = std::min(g.result.generated.size(), begin + std::size_t(std::max<std::int64_t>(0, g.new_tokens)));
      const std::vector<std::int64_t> completion(g.result.generated.begin() + std::ptrdiff_t(begin),
                                                 g.result.generated.begin() + std::ptrdiff_t(stop));
      nlohmann::json j;
      j["line"] = line.line;
      j["prompt"] = line.prompt;
      j["completion"] = b.tokenizer->decode(completion, /*skip_special=*/true);
      j["new_tokens"] = g.new_tokens;
      j["forward_passes"] = g.forward_passes;
      j["seconds"] = seconds;  // the batch's: its rows are sampled together
      j["batch"] = first / std::size_t(a.batch_size);
      out += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    }
    if (a.output.empty()) {
      std::cout << out << std::flush;
    } else {
      append_durably(a.output, out);
    }
  }
  return 0;
}

}  // namespace

void use_as_base(TrainConfig& cfg, const std::string& base, const std::string& adapter) {
  if (!is_adapter_folder(adapter))
    throw UserError("--adapter " + adapter + ": no adapter_config.json (a PEFT LoRA adapter folder)");
  if (!fs::is_directory(base)) throw UserError("--checkpoint " + base + ": not a folder");
  cfg.base_model = base;
}

// Loads a checkpoint for inference; a plugin that has to add tokens to a trained checkpoint
// (e.g. a mask token the checkpoint never learned) is refused, since those rows are untrained.
ModelBundle load_checkpoint_for(const std::string& command, const fs::path& ckpt,
                                const TrainConfig& cfg, PluginSet& plugins) {
  if (!fs::is_directory(ckpt)) throw UserError("--checkpoint " + ckpt.string() + ": not a folder");
  plugins.configure(cfg, run_info_for(cfg, command));
  // A LoRA adapter folder: the base it names (or base_model) with the adapter on it. Its
  // vocabulary grew at training as it grows now (same plugins, same rows), so no check.
  const bool adapter = is_adapter_folder(ckpt);
  const auto stored_vocab = adapter ? 0 : read_hf_config(ckpt / "config.json").vocab_size;
  ModelBundle b = build_model_bundle(cfg, ckpt, plugins, /*training=*/false);
  if (!adapter && (b.model->vocab_size() != stored_vocab || b.tokenizer->vocab_size() > stored_vocab))
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
  // --adapter: the adapter folder is what loads, on --checkpoint as its base.
  const fs::path ckpt = a.adapter.empty() ? fs::path(a.checkpoint) : fs::path(a.adapter);
  TrainConfig cfg = config_for(a.common, ckpt);
  if (!a.adapter.empty()) use_as_base(cfg, a.checkpoint, a.adapter);
  PluginSet plugins = plugins_for(a.common, cfg);
  if (!a.sampler_settings.empty()) {  // the sampler flags, as --set of the sampler's table
    CommonOptions with_flags = a.common;
    for (auto& o : sampler_overrides(a, plugins)) with_flags.overrides.push_back(std::move(o));
    cfg = config_for(with_flags, ckpt);
    if (!a.adapter.empty()) use_as_base(cfg, a.checkpoint, a.adapter);
  }
  if (cfg.threads > 0) at::set_num_threads(cfg.threads);  // once, as training does
  ModelBundle b = load_checkpoint_for("generate", ckpt, cfg, plugins);
  LoadedPlugin* sampler = plugins.sampler();
  if (!sampler)
    throw UserError("no loaded plugin provides a sampler (load the objective the checkpoint was "
                    "trained with, e.g. --plugin diffusion)");
  if (!a.input.empty()) {
    if (a.prompt) throw UserError("give --prompt or --input, not both");
    if (a.mask > 0) throw UserError("--mask: batch mode (--input) completes prompts; use --max-new-tokens");
    torch::NoGradGuard no_grad;
    return run_generate_batches(a, b, *sampler);
  }
  if (!a.output.empty()) throw UserError("--output needs --input (the prompts to sample)");
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
