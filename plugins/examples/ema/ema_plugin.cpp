// Example callback plugin: an exponential moving average (EMA) of the model's weights, kept
// beside training and saved with every checkpoint.
//
// After every `every`-th optimizer step from `start_step` on:
//     ema <- decay * ema + (1 - decay) * weights
// Before start_step (and when training begins) the average is a copy of the weights. Each checkpoint folder and
// final/ get ema.safetensors, with the same tensor names as model.safetensors, so it can stand in
// for the model's weights (copy it over model.safetensors to sample or evaluate with the EMA).
// On --resume the average is read back from the checkpoint (on_load), so a resumed run keeps
// the same average as one that was never stopped.
//
// It shows the SDK 1.2 callback parts: reading the parameters by name, writing and reading
// extra tensor files in checkpoints, the load hook, and stopping training from a callback
// (`stop_below`: stop once the logged train/loss falls below a value).
#include <loom/sdk.hpp>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace loom::sdk;

class EmaPlugin : public Plugin {
 public:
  PluginInfo info() const override {
    return {"ema", "1.0", "exponential moving average of the weights, saved as ema.safetensors"};
  }

  std::vector<ConfigKey> config_schema() const override {
    return {key_float("decay", 0.999, "weight of the old average in each update", 0.0, 1.0),
            key_int("every", 1, "update the average every this many optimizer steps", 1),
            key_int("start_step", 0, "first optimizer step that updates the average", 0),
            key_float("stop_below", 0.0, "stop training once the logged train/loss is below this "
                                         "(0: never)", 0.0)};
  }

  void configure(const ConfigSection& s, const RunInfo& run) override {
    decay_ = s.get_float("decay");
    every_ = s.get_int("every");
    start_step_ = s.get_int("start_step");
    stop_below_ = s.get_float("stop_below");
    training_ = run.command == "train";
  }

  void on_train_begin(TrainerState& state) override {
    if (ema_.empty()) copy_weights(state);  // else resumed: on_load read the average back
  }

  void on_step_end(TrainerState& state) override {
    torch::NoGradGuard no_grad;
    if (state.step < start_step_) {
      copy_weights(state);  // before start_step the average is the weights themselves
    } else if (state.step % every_ == 0) {
      auto params = state.model->named_parameters();
      TORCH_CHECK(params.size() == ema_.size(), "ema: the model's parameters changed");
      for (std::size_t i = 0; i < params.size(); ++i)
        ema_[i].second.mul_(decay_).add_(params[i].second.to(torch::kFloat), 1.0 - decay_);
    }
    auto loss = state.last_metrics.find("train/loss");
    if (stop_below_ > 0 && loss != state.last_metrics.end() && loss->second < stop_below_)
      state.should_training_stop = true;
  }

  // Every rank keeps the same average (the weights are the same on all ranks); the host calls
  // on_save on the main process only, which writes it.
  void on_save(TrainerState& state, const std::string& dir) override {
    state.model->save_tensors(dir + "/ema.safetensors", ema_);
  }

  void on_load(TrainerState& state, const std::string& dir) override {
    if (!training_) return;  // generate / eval run the model's own weights
    const std::string file = dir + "/ema.safetensors";
    if (!std::ifstream(file)) {
      // A run that adds the EMA on --resume: it starts from the weights, as a new run does.
      std::fprintf(stderr, "ema: %s not found; the average starts from the current weights\n", file.c_str());
      copy_weights(state);
      return;
    }
    auto stored = state.model->load_tensors(file);
    ema_.clear();
    for (auto& [name, w] : state.model->named_parameters()) {
      auto it = stored.find(name);
      TORCH_CHECK(it != stored.end(), "ema: ", dir, "/ema.safetensors has no tensor ", name);
      ema_.emplace_back(name, it->second.to(w.device(), torch::kFloat));
    }
  }

 private:
  void copy_weights(TrainerState& state) {
    ema_.clear();
    for (auto& [name, w] : state.model->named_parameters())
      ema_.emplace_back(name, w.to(torch::kFloat, /*non_blocking=*/false, /*copy=*/true));
  }

  double decay_ = 0.999, stop_below_ = 0;
  bool training_ = true;
  std::int64_t every_ = 1, start_step_ = 0;
  std::vector<std::pair<std::string, torch::Tensor>> ema_;
};

}  // namespace

LOOM_PLUGIN(EmaPlugin, "ema")
