// `trainer eval`: the objective's loss of a checkpoint on a data file, as JSON.
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <iostream>

#include "cli/command_setup.hpp"
#include "cli/commands.hpp"
#include "data/data_loader.hpp"
#include "data/dataset_reader.hpp"
#include "errors.hpp"
#include "train/autocast_guard.hpp"
#include "train/causal_lm_loss.hpp"
#include "train/objective.hpp"
#include "train/model_bundle.hpp"
#include "train/trainer.hpp"

namespace loom {
namespace fs = std::filesystem;

ModelBundle load_checkpoint_for(const std::string& command, const fs::path& ckpt,
                                const TrainConfig& cfg, PluginSet& plugins);

void use_as_base(TrainConfig& cfg, const std::string& base, const std::string& adapter);

int run_eval(const EvalArgs& a) {
  // --adapter: the adapter folder is what loads, on --checkpoint as its base.
  const fs::path ckpt = a.adapter.empty() ? fs::path(a.checkpoint) : fs::path(a.adapter);
  TrainConfig cfg = config_for(a.common, ckpt);
  if (!a.adapter.empty()) use_as_base(cfg, a.checkpoint, a.adapter);
  const bool causal = a.objective == "causal";
  if (causal) cfg.plugins.clear();
  PluginSet plugins = plugins_for(causal ? CommonOptions{} : a.common, cfg);
  if (causal)
    for (auto it = cfg.plugin_tables.begin(); it != cfg.plugin_tables.end();) it = cfg.plugin_tables.erase(it);
  ModelBundle b = load_checkpoint_for("eval", ckpt, cfg, plugins);  // configures the plugins
  if (!causal && !a.objective.empty()) {  // who owns the loss is known after configure()
    const bool found = plugins.owns_loss() && plugins.loss_owner()->name == a.objective;
    if (!found)
      throw UserError("--objective " + a.objective + ": no loaded plugin of that name provides a loss "
                      "(use causal, or load the plugin with --plugin)");
  }
  at::set_num_threads(cfg.threads > 0 ? cfg.threads : int(std::max(1u, std::thread::hardware_concurrency())));

  DatasetConfig ds;
  ds.path = a.data;
  auto docs = read_dataset(ds, *b.tokenizer);
  const std::int64_t pad = b.tokenizer->pad_id().value_or(b.tokenizer->eos_id().value_or(0));
  PackingStats stats;
  // Whole documents (no row filling), so the value does not depend on the packing.
  auto rows = pack_documents(docs, cfg.sequence_len, cfg.sample_packing, pad, &stats, /*fill_rows=*/false);
  DataLoader loader(std::move(rows), LoaderShape{cfg.micro_batch_size, 1, 1, 0}, cfg.seed);
  auto batches = loader.sequential_batches();
  if (a.max_batches > 0 && std::int64_t(batches.size()) > a.max_batches) batches.resize(std::size_t(a.max_batches));
  const int repeats = a.mc_samples > 0 ? a.mc_samples : plugins.eval_repeats();

  torch::NoGradGuard no_grad;
  // Each (batch, draw) gives a per-token loss and a weight (its scored tokens). The value is the
  // weighted mean over all of them; its standard error is the Monte Carlo error: the spread,
  // between draws, of the whole set's value in that draw (documents differ from one another,
  // but that is not uncertainty about these documents' bound).
  const int draws = plugins.owns_loss() ? repeats : 1;
  std::vector<double> draw_sum(std::size_t(draws), 0.0), draw_weight(std::size_t(draws), 0.0);
  for (const auto& source : batches) {
    for (int r = 0; r < draws; ++r) {
      sdk::Batch batch = clone_batch(source, b.device);
      sdk::StepContext ctx;
      ctx.training = false;
      ctx.repeat = r;
      ctx.seed = cfg.seed;
      ctx.model = b.model.get();
      auto res = evaluate_batch(plugins, *b.model, batch, ctx, {cfg.bf16, b.cuda()});
      const double w = eval_weight(res, ctx, plugins.owns_loss());
      draw_sum[std::size_t(r)] += w * res.loss.item<double>();
      draw_weight[std::size_t(r)] += w;
    }
  }
  double wsum = 0, mean = 0;
  for (int r = 0; r < draws; ++r) wsum += draw_weight[std::size_t(r)], mean += draw_sum[std::size_t(r)];
  if (!(wsum > 0))  // else the "bound" would read 0
    throw UserError("--data " + a.data + ": nothing to score (" + std::to_string(stats.documents) +
                    " documents, " + std::to_string(stats.tokens) +
                    " tokens; every token is special, unlabelled or alone in its document)");
  mean /= std::max(1e-12, wsum);
  double var = 0;
  for (int r = 0; r < draws; ++r) {
    const double v = draw_sum[std::size_t(r)] / std::max(1e-12, draw_weight[std::size_t(r)]);
    var += (v - mean) * (v - mean);
  }
  const double se = draws > 1 ? std::sqrt(var / double(draws - 1) / double(draws)) : 0.0;
  nlohmann::json j;
  j["checkpoint"] = ckpt.string();
  j["data"] = a.data;
  j["objective"] = plugins.owns_loss() ? plugins.loss_owner()->name : "causal";
  j[plugins.owns_loss() ? "nll_bound_per_token" : "nll_per_token"] = mean;
  // One draw of a Monte Carlo objective says nothing about its error (null); a deterministic
  // objective has none (0).
  if (plugins.owns_loss() && draws < 2) j["stderr"] = nullptr;
  else j["stderr"] = se;
  if (!plugins.owns_loss()) j["perplexity"] = std::exp(mean);
  j["tokens"] = stats.tokens;
  j["documents"] = stats.documents;
  j["batches"] = batches.size();
  j["mc_samples"] = plugins.owns_loss() ? repeats : 1;
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace loom
