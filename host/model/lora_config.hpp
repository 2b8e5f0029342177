// LoRA adapters as the config asks for them (keys named as Axolotl names them: adapter,
// lora_r, lora_alpha, lora_dropout, lora_target_modules, lora_modules_to_save). Plain values,
// validated once by the config loader; the module names are checked against the loaded model
// by LoraAdapters (model/lora_adapters.hpp), which knows the layout's names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace loom {

struct LoraConfig {
  bool enabled = false;  // adapter = "lora"
  std::int64_t r = 8;
  double alpha = 8.0;  // PEFT's defaults: r 8, alpha 8
  double dropout = 0.0;  // on the adapter's input only, as PEFT applies it
  // Module names of the loaded model's layout (q_proj, o_proj / attn_out, ...), or the single
  // entry "all-linear": every linear of the blocks, not the output head (as PEFT has it).
  std::vector<std::string> target_modules;
  // Whole modules trained alongside (embed_tokens / lm_head, LLaDA's wte / ff_out).
  std::vector<std::string> modules_to_save;
  double scaling() const { return alpha / double(r); }
};

}  // namespace loom
