#include "keyed_random.hpp"

namespace loom::diffusion {

namespace {
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
}

std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

KeyedRandom::KeyedRandom(std::initializer_list<std::uint64_t> parts) {
  std::uint64_t h = 0x6C6F6F6D64696666ULL;  // "loomdiff"
  std::uint64_t i = 0;
  for (std::uint64_t p : parts) h = mix64(h ^ mix64(p + kGolden * ++i));
  key_ = h;
}

std::uint64_t KeyedRandom::bits(std::uint64_t counter) const {
  // Two rounds: the counter walks a Weyl sequence inside the keyed state.
  return mix64(mix64(key_ + kGolden * (counter + 1)) ^ key_);
}

double KeyedRandom::uniform(std::uint64_t counter) const {
  return static_cast<double>(bits(counter) >> 11) * 0x1.0p-53;
}

std::uint64_t KeyedRandom::below(std::uint64_t counter, std::uint64_t n) const {
  return static_cast<std::uint64_t>(uniform(counter) * static_cast<double>(n)) % n;
}

}  // namespace loom::diffusion
