// Counter-based random numbers: a value is a pure function of (key, counter), so a token's
// mask draw depends only on the run seed and where the token lives in the run's row stream
// -- not on the batch it arrived in, the rank, the world size or the libtorch version.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace loom::diffusion {

// Tags that keep independent streams apart when they share the other key parts.
enum class RandomStream : std::uint64_t {
  TrainMask = 1,     // training forward process
  EvalMask = 2,      // evaluation forward process (also keyed by the repeat index)
  StratumOrder = 3,  // stratified t: order of the strata in a micro-batch
  LengthCut = 4,     // random_length_prob
  Generation = 5,    // sample generation during training
};

class KeyedRandom {
 public:
  // The key is a hash of all parts, in order.
  KeyedRandom(std::initializer_list<std::uint64_t> parts);

  std::uint64_t bits(std::uint64_t counter) const;
  // Uniform in [0, 1) with 53 bits of resolution.
  double uniform(std::uint64_t counter) const;
  // Uniform integer in [0, n), n > 0.
  std::uint64_t below(std::uint64_t counter, std::uint64_t n) const;

  std::uint64_t key() const { return key_; }

 private:
  std::uint64_t key_;
};

// SplitMix64's finaliser: a bijective 64-bit mixer with full avalanche.
std::uint64_t mix64(std::uint64_t z);

}  // namespace loom::diffusion
