#include "cli/cli.hpp"

#include <CLI/CLI.hpp>
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <set>

#include "cli/commands.hpp"
#include "errors.hpp"

namespace loom {
namespace {

// A number in [lo, hi]; NaN and infinities refused (CLI::Range lets NaN through: every
// comparison with it is false).
CLI::Validator finite_in(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        double v = 0;
        try {
          std::size_t used = 0;
          v = std::stod(text, &used);
          if (used != text.size()) return "not a number: " + text;
        } catch (const std::exception&) {
          return "not a number: " + text;
        }
        if (!std::isfinite(v) || v < lo || v > hi) {
          std::ostringstream os;
          os << "must be a finite number in [" << lo << ", " << hi << "] (got " << text << ")";
          return os.str();
        }
        return "";
      },
      "", "finite");
}

void add_common(CLI::App* cmd, CommonOptions& o, bool with_config = true) {
  if (with_config)
    cmd->add_option("-c,--config", o.config,
                    "TOML config file, or an Axolotl YAML (.yml/.yaml) (default: the built-in demo)");
  cmd->add_option("-p,--plugin", o.plugins,
                  "plugin to load: a path, or a name looked up on the plugin search path "
                  "(repeatable)");
  cmd->add_option("--set", o.overrides, "override a config key, e.g. --set learning_rate=1e-3 "
                                        "or --set diffusion.eps=1e-3 (repeatable)");
}

int dispatch(int argc, char** argv) {
  CLI::App app{"loom trainer " LOOM_VERSION
               ": train Llama-family language models; objectives are plugins"};
  app.require_subcommand(1, 1);
  app.set_version_flag("--version", LOOM_VERSION);

  TrainArgs train;
  auto* t = app.add_subcommand("train", "train a model (the default command)");
  add_common(t, train.common);
  t->add_option("--resume", train.resume_dir,
                "resume from a checkpoint folder (alone: the latest complete one in output_dir)")
      ->expected(0, 1);
  t->add_flag("--overwrite", train.overwrite,
              "start a fresh run in an output_dir that holds one (its checkpoints and metrics are removed)");
  t->add_flag("!--no-progress", train.progress, "no progress bar");
  t->add_option("--nproc", train.nproc, "spawn N local ranks (data-parallel training)")
      ->check(CLI::Range(1, 1024));

  CheckArgs check;
  auto* c = app.add_subcommand("check", "validate a config (and its plugins) without training");
  add_common(c, check.common);
  c->add_flag("--print-config", check.print_config,
              "after OK, print the resolved config as TOML (what checkpoints store)");

  ConvertConfigArgs convert;
  auto* cv = app.add_subcommand("convert-config",
                                "print an Axolotl YAML config as the equivalent loom TOML");
  cv->add_option("file", convert.file, "the Axolotl config (.yml or .yaml)")->required();

  CommonOptions plugins;
  auto* p = app.add_subcommand("plugins", "list the plugins found, their ABI and config keys");
  add_common(p, plugins, false);

  GenerateArgs gen;
  auto* g = app.add_subcommand("generate", "sample from a checkpoint with the objective's sampler");
  add_common(g, gen.common);
  g->add_option("--checkpoint", gen.checkpoint, "checkpoint folder")->required();
  g->add_option("--adapter", gen.adapter, "LoRA adapter folder to load on --checkpoint (its base)");
  g->add_option("--prompt", gen.prompt, "prompt text (default: read prompts interactively)");
  // Counts are checked against the model's context in run_generate; here only their sign.
  g->add_option("--complete", gen.complete, "generate N tokens after the prompt")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  g->add_option("--mask", gen.mask, "mask this share of the prompt and fill it back")
      ->check(finite_in(0.0, 1.0));
  g->add_option("--steps", gen.steps, "reverse steps (default: the config's)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  g->add_option("--temperature", gen.temperature, "0 = deterministic")->check(finite_in(0.0, 100.0));
  g->add_option("--block-length", gen.block_length, "semi-autoregressive block length")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  g->add_option("--seed", gen.seed, "random seed");
  g->add_flag("--profile", gen.profile, "print timings (model forward vs the rest) as JSON on stderr");
  g->add_option("--max-new-tokens", gen.complete, "the same as --complete")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
  g->add_option("--input", gen.input, "JSONL of prompts: {\"prompt\": ..., \"max_new_tokens\": N, \"seed\": N}");
  g->add_option("--output", gen.output, "JSONL results of --input (default: stdout)");
  g->add_option("--batch-size", gen.batch_size, "prompts sampled together with --input")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  // Keys of the sampler plugin's table, as flags (docs/config-reference.md, [diffusion]).
  for (const char* key : {"threshold", "factor", "cache", "remasking", "top_k", "top_p", "cfg_scale"}) {
    std::string flag = std::string("--") + key;
    for (auto& c : flag) c = c == '_' ? '-' : c;
    g->add_option_function<std::string>(
        flag, [&gen, flag, key](const std::string& v) { gen.sampler_settings.push_back({flag, key, v}); },
        std::string("the sampler's ") + key + " (as --set <plugin>." + key + "=...)");
  }
  for (const char* key : {"stop_at_eos", "suppress_eos"}) {
    std::string flag = std::string("--") + key;
    for (auto& c : flag) c = c == '_' ? '-' : c;
    g->add_flag_callback(flag, [&gen, flag, key]() { gen.sampler_settings.push_back({flag, key, "true"}); },
                         std::string("the sampler's ") + key + " = true");
  }

  ServeArgs serve;
  auto* sv = app.add_subcommand("serve", "serve a checkpoint over HTTP: OpenAI-style completions and a web page");
  add_common(sv, serve.common);
  sv->add_option("--checkpoint", serve.checkpoint, "checkpoint folder")->required();
  sv->add_option("--adapter", serve.adapter, "LoRA adapter folder to load on --checkpoint (its base)");
  sv->add_option("--host", serve.host, "address to listen on (default 127.0.0.1: this machine only)")
      ->capture_default_str();
  sv->add_option("--port", serve.port, "port (0: any free port, printed at start)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  sv->add_option("--model-name", serve.model_name, "the model id /v1/models shows (default: the checkpoint path)");
  sv->add_option("--max-batch", serve.limits.max_batch, "rows sampled together in one batch")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  sv->add_option("--max-queue", serve.limits.max_queue, "rows that may wait beyond a full batch (then 503)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 20));
  sv->add_option("--batch-wait-ms", serve.limits.batch_wait_ms, "how long a batch waits for more rows")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10000}));
  sv->add_option("--max-body-bytes", serve.limits.max_body_bytes, "largest request body")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{64}, std::size_t{1} << 30));
  sv->add_option("--max-new-tokens", serve.limits.max_new_tokens, "largest max_tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30));
  sv->add_option("--max-prompt-tokens", serve.limits.max_prompt_tokens, "longest prompt, in tokens")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30));
  sv->add_option("--max-prompts", serve.limits.max_prompts, "prompts in one request (a list prompt)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  sv->add_option("--max-steps", serve.limits.max_steps, "largest steps a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30));
  sv->add_option("--http-threads", serve.http_threads, "connections served at once (a stream holds one)")
      ->capture_default_str()
      ->check(CLI::Range(2, 4096));

  EvalArgs ev;
  auto* e = app.add_subcommand("eval", "evaluate a checkpoint on a data file (JSON on stdout)");
  add_common(e, ev.common);
  e->add_option("--checkpoint", ev.checkpoint, "checkpoint folder")->required();
  e->add_option("--adapter", ev.adapter, "LoRA adapter folder to load on --checkpoint (its base)");
  e->add_option("--data", ev.data, "JSONL or text file")->required();
  e->add_option("--objective", ev.objective, "causal, or the loss plugin (default: as trained)");
  e->add_option("--max-batches", ev.max_batches, "evaluate at most this many batches")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  e->add_option("--mc-samples", ev.mc_samples, "Monte Carlo draws per batch (diffusion)")
      ->check(CLI::Range(1, 1000000));

  TokenizeArgs tok;
  auto* k = app.add_subcommand("tokenize", "print token ids, one JSON array per input line");
  k->add_option("--tokenizer", tok.tokenizer, "tokenizer.json or a folder holding one")->required();
  k->add_option("--text", tok.text, "text to tokenize (default: JSON lines on stdin)");
  k->add_flag("--add-special", tok.add_special, "apply the post-processor (e.g. add BOS)");

  BenchArgs bench;
  auto* bn = app.add_subcommand("bench", "time full optimizer steps on random tokens (JSON)");
  add_common(bn, bench.common);
  bn->add_option("--steps", bench.steps, "timed steps")->check(CLI::Range(1, 1000000));
  bn->add_option("--warmup", bench.warmup, "untimed steps first")->check(CLI::Range(0, 1000000));
  bn->add_option("--profile", bench.profile, "write a Chrome trace of the timed steps to FILE");
  bn->add_option("--peak-tflops", bench.peak_tflops,
                 "the device's declared peak (TFLOP/s) for mfu_declared, e.g. 989 for H100/H200 bf16")
      ->check(CLI::PositiveNumber);

  ExportArgs exp;
  auto* x = app.add_subcommand("export", "merge a LoRA adapter into its base: a full model folder");
  add_common(x, exp.common);
  x->add_option("--checkpoint", exp.checkpoint, "a LoRA checkpoint folder (or the base, with --adapter)")->required();
  x->add_option("--adapter", exp.adapter, "LoRA adapter folder to merge into --checkpoint");
  x->add_option("--merge", exp.merge, "the model folder to write (must not exist)")->required();

  ReportArgs report;
  auto* rp = app.add_subcommand("report", "write one self-contained HTML page about a run "
                                          "(curves, samples, config, checkpoints)");
  rp->add_option("--run", report.run, "the run's output_dir (may still be training)")->required();
  rp->add_option("--out", report.out, "the HTML file to write (default: <run>/report.html)");

  // `trainer --config X` (no command) means `trainer train --config X`.
  std::vector<std::string> args(argv + 1, argv + argc);
  static const std::set<std::string> commands = {"train", "check", "plugins", "generate",
                                                 "eval", "tokenize", "bench",
                                                 "convert-config", "serve", "report", "export"};
  const bool help = !args.empty() && (args[0] == "-h" || args[0] == "--help" || args[0] == "--version");
  if (!help && (args.empty() || !commands.count(args[0]))) args.insert(args.begin(), "train");
  train.command_line = args;
  std::reverse(args.begin(), args.end());
  try {
    app.parse(args);
  } catch (const CLI::ParseError& err) {
    return app.exit(err);
  }
  train.resume = t->count("--resume") > 0;
  if (*t) return run_train(train);
  if (*c) return run_check(check);
  if (*p) return run_plugins(plugins);
  if (*cv) return run_convert_config(convert);
  if (*g) return run_generate(gen);
  if (*sv) {
#ifdef LOOM_WITH_SERVE
    return run_serve(serve);
#else
    std::cerr << "error: this trainer was built without `trainer serve` (configured with "
                 "-DLOOM_SERVE=OFF; it needs Debian's libcpp-httplib-dev)\n";
    return 1;
#endif
  }
  if (*e) return run_eval(ev);
  if (*rp) return run_report(report);
  if (*x) return run_export(exp);
  if (*k) return run_tokenize(tok);
  if (*bn) return run_bench(bench);
  return 2;
}

}  // namespace

int run_cli(int argc, char** argv) {
  spdlog::set_pattern("[%H:%M:%S] %v");
  // In a data-parallel job every rank reports its own errors; say which one speaks.
  std::string who;
  const char* rank = std::getenv("RANK");
  const char* world = std::getenv("WORLD_SIZE");
  if (rank && world && std::atoi(world) > 1) who = std::string("[rank ") + rank + "] ";
  try {
    return dispatch(argc, argv);
  } catch (const UserError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s%s\n", who.c_str(), e.what());
  } catch (const c10::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s%s\n", who.c_str(), e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "internal error: %s%s\n", who.c_str(), e.what());
  }
  return 1;
}

}  // namespace loom
