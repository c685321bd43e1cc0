#pragma once
// Branch-free float exp and erf that the compiler vectorises inside biflow's elementwise loops (libm's expf/erff
// are scalar calls and made GELU a third of a TARFlow training step on CPU). Accuracy: exp ~2 ulp over
// [-87, 88]; erf absolute error < 6e-7 (Abramowitz & Stegun 7.1.26 evaluated in float), at float resolution of the
// results they feed. Double precision and device code keep the exact library functions. Always inlined: a call
// in a loop stops it vectorising (GCC stopped inlining exp once more functors used it: GELU took 3x longer).
#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "config.hpp"

namespace biflow::fastmath {

[[gnu::always_inline]] inline float exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln2) by the 1.5·2^23 trick (round-to-nearest, no libm call, so the loop vectorises)
#if defined(__FAST_MATH__)  // -ffast-math may fold (a + c) - c to a; it also vectorises nearbyint
  const float n = std::nearbyint(x * 1.44269504f);
#else
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
#endif
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>(static_cast<std::int32_t>(n + 127.0f) << 23);
}

/// erf(x) given e = exp(-x²) (GELU's derivative needs that exponential too and computes it once).
[[gnu::always_inline]] inline float erf_with_exp(float x, float e) {
  const float a = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float p = 1.061405429f;
  p = p * t - 1.453152027f;
  p = p * t + 1.421413741f;
  p = p * t - 0.284496736f;
  p = p * t + 0.254829592f;
  const float y = 1.0f - p * t * e;
  return x < 0.0f ? -y : y;
}

[[gnu::always_inline]] inline float erf(float x) { return erf_with_exp(x, fastmath::exp(-x * x)); }

/// exp inside elementwise functors shared by both backends: the vectorisable float exp above on the host, the
/// library function for double and in device code (where expf is already a fast intrinsic).
template <class T>
BIFLOW_HOST_DEVICE inline T vexp(T x) {
#if !BIFLOW_DEVICE_COMPILE
  if constexpr (std::is_same_v<T, float>) return fastmath::exp(x);
#endif
  return std::exp(x);
}

}  // namespace biflow::fastmath
