// One function per `trainer` subcommand; each receives already-parsed options.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "serve/serve_limits.hpp"

namespace loom {

struct CommonOptions {
  std::string config;  // empty: the embedded default (or the checkpoint's, where one is given)
  std::vector<std::string> plugins;  // --plugin, in order
  std::vector<std::string> overrides;  // --set key=value
};

struct TrainArgs {
  CommonOptions common;
  bool resume = false;
  std::string resume_dir;
  bool overwrite = false;  // a fresh run may replace the run already in output_dir
  bool progress = true;
  int nproc = 1;  // > 1: spawn this many local ranks (see distributed/local_launcher.hpp)
  std::vector<std::string> command_line;  // the arguments as given, for the ranks to re-run
};
int run_train(const TrainArgs& args);

struct CheckArgs {
  CommonOptions common;
  bool print_config = false;  // print the resolved TOML (what checkpoints store) after "OK"
};
int run_check(const CheckArgs& args);

// `trainer convert-config axolotl.yml`: the equivalent loom TOML on stdout.
struct ConvertConfigArgs {
  std::string file;
};
int run_convert_config(const ConvertConfigArgs& args);

int run_plugins(const CommonOptions& args);

struct GenerateArgs {
  CommonOptions common;
  std::string checkpoint;
  std::string adapter;  // a LoRA adapter folder to load on `checkpoint` (then the base)
  std::optional<std::string> prompt;
  std::int64_t complete = 0;
  double mask = 0;
  std::int64_t steps = 0;
  double temperature = 0;
  std::int64_t block_length = 0;
  std::uint64_t seed = 0;
  bool profile = false;  // print timings (model forward vs the rest) as JSON on stderr
  // Sampler settings given as flags (--threshold 0.9, --cache dual, ...): keys of the sampler
  // plugin's table, applied like --set <plugin>.<key>=<value>. (flag, key, value)
  struct SamplerSetting {
    std::string flag, key, value;
  };
  std::vector<SamplerSetting> sampler_settings;
  // Batch mode: one {"prompt": ..., "max_new_tokens"?: N, "seed"?: N} per line of `input`,
  // one result per line of `output` (appended as each batch ends).
  std::string input;
  std::string output;
  std::int64_t batch_size = 8;
};
int run_generate(const GenerateArgs& args);

struct ServeArgs {
  CommonOptions common;
  std::string checkpoint;
  std::string adapter;  // a LoRA adapter folder to load on `checkpoint` (then the base)
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (printed at start)
  std::string model_name;          // empty: the checkpoint path
  int http_threads = 64;
  serve::ServeLimits limits;
};
int run_serve(const ServeArgs& args);

struct EvalArgs {
  CommonOptions common;
  std::string checkpoint;
  std::string adapter;  // a LoRA adapter folder to load on `checkpoint` (then the base)
  std::string data;
  std::string objective;  // causal | the loss-owning plugin's name; empty: the checkpoint's
  std::int64_t max_batches = 0;
  int mc_samples = 0;  // 0: the objective's default
};
int run_eval(const EvalArgs& args);

struct TokenizeArgs {
  std::string tokenizer;
  std::optional<std::string> text;
  bool add_special = false;
};
int run_tokenize(const TokenizeArgs& args);

struct BenchArgs {
  CommonOptions common;
  std::int64_t steps = 10;
  std::int64_t warmup = 2;
  std::string profile;  // write a Chrome trace of the timed steps (libtorch's profiler) here
  double peak_tflops = 0;  // a declared peak (e.g. 989 for H100/H200 dense bf16): adds mfu_declared
};
int run_bench(const BenchArgs& args);

// `trainer export --checkpoint DIR --merge OUT`: a LoRA checkpoint (or --adapter on a base)
// merged into a full model folder in the base's layout.
struct ExportArgs {
  CommonOptions common;
  std::string checkpoint;
  std::string adapter;
  std::string merge;  // the folder to write
};
int run_export(const ExportArgs& args);

// `trainer report --run OUTPUT_DIR [--out FILE]`: a self-contained HTML page about a run.
struct ReportArgs {
  std::string run;
  std::string out;  // empty: <run>/report.html
};
int run_report(const ReportArgs& args);

}  // namespace loom
