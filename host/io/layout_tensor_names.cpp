#include "io/layout_tensor_names.hpp"

#include <utility>

namespace loom {
namespace {

// LLaDA's block (LLaDALlamaBlock) against Llama's decoder layer, name by name: the norms before
// attention and MLP, the four attention projections, and the MLP's gate (ff_proj, which goes
// through SiLU), up and down (ff_out) projections.
constexpr std::pair<const char*, const char*> kLladaLayerNames[] = {
    {"input_layernorm.", "attn_norm."},
    {"post_attention_layernorm.", "ff_norm."},
    {"self_attn.q_proj.", "q_proj."},
    {"self_attn.k_proj.", "k_proj."},
    {"self_attn.v_proj.", "v_proj."},
    {"self_attn.o_proj.", "attn_out."},
    {"mlp.gate_proj.", "ff_proj."},
    {"mlp.up_proj.", "up_proj."},
    {"mlp.down_proj.", "ff_out."},
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

std::string llada_name(const std::string& name) {
  if (name == "model.embed_tokens.weight") return "model.transformer.wte.weight";
  if (name == "model.norm.weight") return "model.transformer.ln_f.weight";
  if (name == "lm_head.weight") return "model.transformer.ff_out.weight";
  const std::string layers = "model.layers.";
  if (!starts_with(name, layers)) return name;
  const std::size_t dot = name.find('.', layers.size());
  if (dot == std::string::npos) return name;
  const std::string index = name.substr(layers.size(), dot - layers.size());
  const std::string rest = name.substr(dot + 1);
  for (const auto& [llama, llada] : kLladaLayerNames) {
    if (starts_with(rest, llama))
      return "model.transformer.blocks." + index + "." + llada + rest.substr(std::string(llama).size());
  }
  return name;
}

}  // namespace

std::string stored_tensor_name(const std::string& model_type, const std::string& parameter_name) {
  if (model_type == "llada") return llada_name(parameter_name);
  return parameter_name;
}

}  // namespace loom
