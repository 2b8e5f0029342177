// RoPE inverse frequencies against values from rope_frequencies_reference.py (plain Python floats)
// and against anchors worked out by hand.
#include "io/rope_frequencies.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace loom {
namespace {

// Printed by `python3 tests/io/rope_frequencies_reference.py`.
const std::vector<double> kLlama32Golden = {1.0,
                                            0.6636012376960885,
                                            0.44036660267178046,
                                            0.2922278225730151,
                                            0.19392274474868576,
                                            0.12868737343265052,
                                            0.08539710028576561,
                                            0.05666962144529105,
                                            0.03760603093086393,
                                            0.024955408670558694,
                                            0.016560440080994446,
                                            0.010989528534539826,
                                            0.007292664737217109,
                                            0.004839421345719893,
                                            0.003211445994752591,
                                            0.001290547928209264,
                                            0.00042955679655936815,
                                            9.70828780262767e-05,
                                            1.9461638184831125e-05,
                                            1.291476718704739e-05,
                                            8.570255489881478e-06,
                                            5.687232150457046e-06,
                                            3.7740542941082826e-06,
                                            2.5044671007024935e-06,
                                            1.6619674677953088e-06,
                                            1.102883668639601e-06,
                                            7.318749675440419e-07,
                                            4.856731343010108e-07,
                                            3.2229329303788936e-07,
                                            2.1387422816109149e-07,
                                            1.4192720251899592e-07,
                                            9.41830672543491e-08};

void expect_close(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(actual[i], expected[i], 1e-12 * expected[i]) << "index " << i;
  }
}

ModelConfig llama32_1b() {
  ModelConfig config;
  config.hidden_size = 2048;
  config.num_attention_heads = 32;  // head_dim 64
  config.rope_theta = 500000.0;
  config.rope_scaling = {"llama3", 32.0, 1.0, 4.0, 8192};
  return config;
}

TEST(RopeFrequencies, Llama32OneBMatchesReferenceScript) {
  expect_close(rope_inverse_frequencies(llama32_1b()), kLlama32Golden);
}

TEST(RopeFrequencies, Llama32OneBBandsByHand) {
  const std::vector<double> f = rope_inverse_frequencies(llama32_1b());
  // Wavelength 2*pi*500000^(2i/64): below 8192/4 = 2048 for i <= 14 (unchanged), above
  // 8192/1 for i >= 18 (divided by 32), interpolated for i = 15..17.
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_DOUBLE_EQ(f[14], std::pow(500000.0, -28.0 / 64));
  EXPECT_DOUBLE_EQ(f[18], std::pow(500000.0, -36.0 / 64) / 32);
  EXPECT_DOUBLE_EQ(f[31], std::pow(500000.0, -62.0 / 64) / 32);
  // i = 15: base 500000^(-30/64) = 0.0021309..., wavelength 2948.6..., smooth factor
  // s = (8192 / 2948.6 - 1) / 3 = 0.59277..., result (1 - s) * base / 32 + s * base.
  const double base = std::pow(500000.0, -30.0 / 64);
  const double s = (8192.0 * base / (2 * M_PI) - 1.0) / 3.0;
  EXPECT_NEAR(s, 0.59277, 1e-4);
  EXPECT_DOUBLE_EQ(f[15], (1 - s) * base / 32 + s * base);
}

TEST(RopeFrequencies, PlainAndLinear) {
  ModelConfig config;
  config.hidden_size = 16;
  config.num_attention_heads = 2;  // head_dim 8
  config.rope_theta = 10000.0;
  expect_close(rope_inverse_frequencies(config), {1.0, 0.1, 0.01, 0.001});
  config.rope_scaling.kind = "linear";
  config.rope_scaling.factor = 4.0;
  expect_close(rope_inverse_frequencies(config), {0.25, 0.025, 0.0025, 0.00025});
}

TEST(RopeFrequencies, RejectsOddHeadDimAndUnknownKind) {
  ModelConfig config;
  config.hidden_size = 6;
  config.num_attention_heads = 2;  // head_dim 3
  EXPECT_THROW(rope_inverse_frequencies(config), std::invalid_argument);
  config.hidden_size = 8;
  config.rope_scaling.kind = "yarn";
  EXPECT_THROW(rope_inverse_frequencies(config), std::invalid_argument);
}

}  // namespace
}  // namespace loom
