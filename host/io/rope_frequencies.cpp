#include "io/rope_frequencies.hpp"

#include <cmath>
#include <stdexcept>

namespace loom {

std::vector<double> rope_inverse_frequencies(const ModelConfig& config) {
  const std::int64_t head_dim = config.head_dim();
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw std::invalid_argument("RoPE needs an even head_dim, got " + std::to_string(head_dim));
  }
  const RopeScaling& scaling = config.rope_scaling;
  std::vector<double> inv_freq(static_cast<std::size_t>(head_dim / 2));
  for (std::size_t i = 0; i < inv_freq.size(); ++i) {
    inv_freq[i] = 1.0 / std::pow(config.rope_theta,
                                 static_cast<double>(2 * i) / static_cast<double>(head_dim));
  }

  if (scaling.kind == "none") return inv_freq;
  if (scaling.kind == "linear") {
    for (double& f : inv_freq) f /= scaling.factor;
    return inv_freq;
  }
  if (scaling.kind != "llama3") {
    throw std::invalid_argument("unknown RoPE scaling kind '" + scaling.kind + "'");
  }

  // Llama 3.1: wavelengths shorter than original_context / high_freq_factor keep their
  // frequency, those longer than original_context / low_freq_factor are slowed down by factor,
  // and the band in between is interpolated linearly in original_context / wavelength.
  const double old_context = static_cast<double>(scaling.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / scaling.low_freq_factor;
  const double high_freq_wavelen = old_context / scaling.high_freq_factor;
  for (double& f : inv_freq) {
    const double wavelen = 2.0 * M_PI / f;
    if (wavelen < high_freq_wavelen) continue;
    if (wavelen > low_freq_wavelen) {
      f /= scaling.factor;
      continue;
    }
    const double smooth = (old_context / wavelen - scaling.low_freq_factor) /
                          (scaling.high_freq_factor - scaling.low_freq_factor);
    f = (1.0 - smooth) * f / scaling.factor + smooth * f;
  }
  return inv_freq;
}

}  // namespace loom
