#pragma once
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "config.hpp"

namespace biflow {

/// Counter-based random numbers: element i of a draw is a pure function of (seed, counter + i).
/// This is what makes Cpu and Cuda draw *the same* numbers for the same seed, independent of thread
/// scheduling, and makes a generator's whole state two integers (easy to checkpoint).
namespace rng_detail {
BIFLOW_HOST_DEVICE inline std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
BIFLOW_HOST_DEVICE inline std::uint64_t hash2(std::uint64_t seed, std::uint64_t counter) {
  return splitmix64(seed ^ splitmix64(counter));
}
/// Uniform in (0, 1): 53 random bits, never exactly 0 (safe for log).
BIFLOW_HOST_DEVICE inline double uniform01(std::uint64_t bits) {
  return (static_cast<double>(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
/// lo + (hi - lo) u as one explicitly fused multiply-add in double, rounded once to T: compilers may contract
/// the plain expression into an FMA on one backend and not on the other (nvcc does by default), so writing the FMA
/// makes Cpu and Cuda draws bit-identical.
template <class T>
BIFLOW_HOST_DEVICE inline T uniform_in(T lo, T hi, double u) {
  return static_cast<T>(fma(static_cast<double>(hi) - static_cast<double>(lo), u, static_cast<double>(lo)));
}
/// Standard normal from one 64-bit hash (Box-Muller on two 32-bit halves, cosine branch only).
BIFLOW_HOST_DEVICE inline double normal(std::uint64_t seed, std::uint64_t counter) {
  const std::uint64_t a = hash2(seed, 2 * counter);
  const std::uint64_t b = hash2(seed, 2 * counter + 1);
  const double u1 = uniform01(a), u2 = uniform01(b);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
}  // namespace rng_detail

/// A seeded stream. `take(n)` reserves n counters; backends fill tensors from the reserved range.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0, std::uint64_t counter = 0) : seed_(seed), counter_(counter) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t counter() const { return counter_; }
  /// Reserves n counters and returns the first one.
  std::uint64_t take(std::uint64_t n) {
    const std::uint64_t c = counter_;
    counter_ += n;
    return c;
  }
  double uniform() { return rng_detail::uniform01(rng_detail::hash2(seed_, take(1))); }
  double normal() { return rng_detail::normal(seed_, take(1)); }
  /// Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return rng_detail::hash2(seed_, take(1)) % n; }
  /// An independent stream derived from this one (for per-layer seeds and the like).
  Rng split() { return Rng(rng_detail::hash2(seed_ ^ 0xA5A5A5A5ull, take(1))); }

 private:
  std::uint64_t seed_;
  std::uint64_t counter_;
};

/// k distinct indices of [0, n), uniformly at random (a partial Fisher–Yates shuffle; k = n gives a random
/// permutation). Host only: resampling for evaluation and test probes, not device work.
inline std::vector<long> choose_distinct(long n, long k, Rng& rng) {
  std::vector<long> p(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) p[std::size_t(i)] = i;
  for (long i = 0; i < k; ++i) std::swap(p[std::size_t(i)], p[std::size_t(i + long(rng.below(std::uint64_t(n - i))))]);
  p.resize(static_cast<std::size_t>(k));
  return p;
}

}  // namespace biflow
