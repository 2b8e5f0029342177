// The names a layout stores loom's parameters under. loom's modules carry transformers'
// LlamaForCausalLM names (model.layers.N.self_attn.q_proj.weight, ...), which Qwen2, Qwen3 and
// Dream share; LLaDA's checkpoints use OLMo's names under model.transformer.
#pragma once

#include <string>

namespace loom {

// The stored name of parameter `parameter_name` in a checkpoint of config.json's `model_type`.
// Names with no counterpart in the layout come back unchanged.
std::string stored_tensor_name(const std::string& model_type, const std::string& parameter_name);

}  // namespace loom
