#include "train/memory_estimate.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "errors.hpp"

namespace loom {

MemoryEstimate estimate_memory(const ModelConfig& m, const TrainConfig& cfg) {
  const double H = double(m.hidden_size), I = double(m.intermediate_size), L = double(m.num_hidden_layers);
  const double V = double(m.vocab_size);
  // Query and key/value widths: heads x head_dim, which Qwen3 sets apart from hidden_size.
  const double q = m.num_attention_heads > 0 ? double(m.num_attention_heads * m.head_dim()) : H;
  const double kv = m.num_attention_heads > 0 ? double(m.num_key_value_heads * m.head_dim()) : H;
  const double per_layer = 2 * H * q + 2 * H * kv + 3 * H * I + 2 * H;  // q, o; k, v; MLP; norms
  MemoryEstimate e;
  e.parameters = L * per_layer + V * H * (m.tie_word_embeddings ? 1 : 2) + H;
  e.weights_bytes = 4 * e.parameters;
  // Activations kept for backward, per token and layer: about a dozen hidden-wide tensors and
  // three intermediate-wide ones (fp32); one layer's worth with gradient checkpointing.
  const double tokens = double(cfg.micro_batch_size) * double(cfg.sequence_len);
  const double layers_kept = cfg.gradient_checkpointing ? 1.0 : L;
  const double activations = 4 * tokens * layers_kept * (12 * H + 3 * I);
  e.training_bytes = 16 * e.parameters + activations;
  if (cfg.lora.enabled) {
    // LoRA: the frozen base (built in fp32 before any bf16 copy) plus gradients and AdamW
    // moments of the adapters alone -- r x (in + out) per linear, counted as if every linear
    // were targeted -- and of the modules saved whole (counted as embedding-sized).
    const double adapters =
        L * double(cfg.lora.r) * ((H + q) * 2 + (H + kv) * 2 + (H + I) * 3);
    const double saved = double(cfg.lora.modules_to_save.size()) * V * H;
    e.training_bytes = e.weights_bytes + 16 * (adapters + saved) + activations;
  }
  return e;
}

double available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    std::istringstream f(line.substr(13));
    double kb = 0;
    f >> kb;
    return kb * 1024.0;
  }
  return 0;
}

namespace {

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g GB", bytes / 1e9);
  return buf;
}

}  // namespace

void check_memory(const ModelConfig& m, const TrainConfig& cfg, bool training, bool cuda) {
  const MemoryEstimate e = estimate_memory(m, cfg);
  const double need = training ? e.training_bytes : e.weights_bytes;
  const double have = available_memory_bytes();
  // On a GPU the weights are still built on the CPU first, so they must fit here too.
  const double need_here = cuda ? e.weights_bytes : need;
  if (have <= 0 || need_here <= have) return;
  char params[32];
  std::snprintf(params, sizeof params, "%.3g", e.parameters);
  throw UserError("the model (hidden_size " + std::to_string(m.hidden_size) + ", intermediate_size " +
                  std::to_string(m.intermediate_size) + ", num_hidden_layers " + std::to_string(m.num_hidden_layers) +
                  ", vocab " + std::to_string(m.vocab_size) + ": " + params + " parameters) needs about " +
                  gb(need_here) + (training && !cuda ? " to train (weights, gradients, AdamW state, activations)" : " for its weights") +
                  ", but this machine has " + gb(have) + " available");
}

}  // namespace loom
