// The sampler's per-step rules on hand-made inputs; every expected value is worked out by hand
// in the comments.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "reveal_rules.hpp"
#include "test_support.hpp"

namespace loom::diffusion {
namespace {

using testing::to_vector;

at::Tensor conf(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }

TEST(RevealRules, FixedCountRevealsTheMostConfidentFirst) {
  auto c = conf({0.3, 0.9, 0.5});
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::fixed(2))),
            (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::fixed(5))),
            (std::vector<std::int64_t>{1, 2, 0}));
}

TEST(RevealRules, ThresholdRevealsEveryConfidenceAboveItAndAtLeastOne) {
  auto c = conf({0.5, 0.95, 0.91, 0.2, 0.9});
  // >= 0.9: 0.95 (1), 0.91 (2), 0.9 (4) -- the boundary counts.
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::above(0.9))),
            (std::vector<std::int64_t>{1, 2, 4}));
  // Nothing reaches 0.99: still the most confident one.
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::above(0.99))),
            (std::vector<std::int64_t>{1}));
  // threshold 1 (only certainties) on uncertain positions: one per step, LLaDA's 1 token/step.
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::above(1.0))),
            (std::vector<std::int64_t>{1}));
  EXPECT_EQ(to_vector(positions_to_reveal(conf({0.1, 0.05}), RevealRule::above(0.01))),
            (std::vector<std::int64_t>{0, 1}));
}

TEST(RevealRules, FactorRevealsTheTopNWhileTheNthClearsOneMinusFactorOverNPlusOne) {
  // factor 1: the n-th must reach 1 - 1/(n+1): n=2: 0.6667, n=3: 0.75, n=4: 0.8.
  // Sorted: 0.9 (0), 0.76 (2), 0.7 (1), 0.3 (3): 0.76 >= 0.6667 yes, 0.7 >= 0.75 no -> 2.
  auto c = conf({0.9, 0.7, 0.76, 0.3});
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::dynamic(1.0))),
            (std::vector<std::int64_t>{0, 2}));
  // factor 2: n=2: 1 - 2/3 = 0.333, n=3: 0.5, n=4: 0.6: 0.76, 0.7 pass, 0.3 < 0.6 -> 3.
  EXPECT_EQ(to_vector(positions_to_reveal(c, RevealRule::dynamic(2.0))),
            (std::vector<std::int64_t>{0, 2, 1}));
  // The first always goes, however unsure: 0.05 < 0.6667 stops at n = 1.
  EXPECT_EQ(to_vector(positions_to_reveal(conf({0.1, 0.05}), RevealRule::dynamic(1.0))),
            (std::vector<std::int64_t>{0}));
  // factor 0.1: n=2: 0.9667, n=3: 0.975, n=4: 0.98. Sorted 0.99 (0), 0.985 (3), 0.98 (1),
  // 0.97 (2): 0.985 and 0.98 pass, 0.97 < 0.98 -> 3.
  EXPECT_EQ(
      to_vector(positions_to_reveal(conf({0.99, 0.98, 0.97, 0.985}), RevealRule::dynamic(0.1))),
      (std::vector<std::int64_t>{0, 3, 1}));
  // Everything passes: all of them.
  EXPECT_EQ(to_vector(positions_to_reveal(conf({0.999, 0.998}), RevealRule::dynamic(0.1))),
            (std::vector<std::int64_t>{0, 1}));
}

TEST(RevealRules, ConfidencesOfHandMadeDistributions) {
  const double inf = std::numeric_limits<double>::infinity();
  // Row 0: p = (0.5, 0.3, 0.2); row 1: p = (0.5, 0.5, 0), the last token filtered out (-inf).
  auto logits =
      torch::tensor({std::log(0.5), std::log(0.3), std::log(0.2), 0.0, 0.0, -inf}, torch::kDouble)
          .view({2, 3});
  auto x0 = torch::tensor({1, 0}, torch::kLong);
  auto p = prediction_confidence(logits, x0, Remasking::LowConfidence);
  EXPECT_NEAR(p[0].item<double>(), 0.3, 1e-12);
  EXPECT_NEAR(p[1].item<double>(), 0.5, 1e-12);
  auto margin = prediction_confidence(logits, x0, Remasking::Margin);
  EXPECT_NEAR(margin[0].item<double>(), 0.5 - 0.3, 1e-12);
  EXPECT_NEAR(margin[1].item<double>(), 0.0, 1e-12);
  auto entropy = prediction_confidence(logits, x0, Remasking::Entropy);
  EXPECT_NEAR(entropy[0].item<double>(),
              0.5 * std::log(0.5) + 0.3 * std::log(0.3) + 0.2 * std::log(0.2), 1e-12);
  EXPECT_NEAR(entropy[1].item<double>(), std::log(0.5), 1e-12);  // -inf logit: 0, not NaN
  EXPECT_THROW(prediction_confidence(logits, x0, Remasking::Random), std::logic_error);
}

TEST(RevealRules, TopKAndTopPKeepTheHandPickedTokens) {
  const double inf = std::numeric_limits<double>::infinity();
  auto logits = torch::tensor({1.0, 3.0, 2.0, 0.0}, torch::kDouble).view({1, 4});
  auto k2 = filter_top_k_top_p(logits, 2, 1.0);
  EXPECT_TRUE(k2.equal(torch::tensor({-inf, 3.0, 2.0, -inf}, torch::kDouble).view({1, 4})));
  EXPECT_TRUE(filter_top_k_top_p(logits, 0, 1.0).equal(logits));  // both off
  EXPECT_TRUE(filter_top_k_top_p(logits, 9, 1.0).equal(logits));  // k >= V: off

  // p = (0.5, 0.3, 0.15, 0.05). top_p 0.7: mass before each token 0, 0.5, 0.8, 0.95 -> keep
  // the first two. top_p 0.5: the second has 0.5 before it -> only the first.
  auto p =
      torch::tensor({std::log(0.5), std::log(0.3), std::log(0.15), std::log(0.05)}, torch::kDouble)
          .view({1, 4});
  auto kept = [](const at::Tensor& t) { return to_vector(t.isfinite().nonzero().select(1, 1)); };
  EXPECT_EQ(kept(filter_top_k_top_p(p, 0, 0.7)), (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(kept(filter_top_k_top_p(p, 0, 0.5)), (std::vector<std::int64_t>{0}));
  // At temperature 2 the nucleus is that of p^(1/2) normalised: (0.379, 0.294, 0.208, 0.120);
  // mass before: 0, 0.379, 0.673, 0.880 -> top_p 0.7 keeps three.
  auto t2 = torch::full({1, 1}, 2.0, torch::kDouble);
  EXPECT_EQ(kept(filter_top_k_top_p(p, 0, 0.7, t2)), (std::vector<std::int64_t>{0, 1, 2}));
  // top_k then top_p: k = 3 leaves (0.5, 0.3, 0.15)/0.95; mass before: 0, 0.526, 0.842 -> 0.8
  // keeps two.
  EXPECT_EQ(kept(filter_top_k_top_p(p, 3, 0.8)), (std::vector<std::int64_t>{0, 1}));
  // Kept logits are unchanged.
  EXPECT_DOUBLE_EQ(filter_top_k_top_p(p, 0, 0.7)[0][1].item<double>(), std::log(0.3));
}

}  // namespace
}  // namespace loom::diffusion
