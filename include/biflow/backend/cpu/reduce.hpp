#pragma once
// Row reductions on 16 independent lanes. A float sum written as one running total cannot vectorise (each add
// waits for the previous one, and reassociating it is what -ffast-math would allow); 16 partial sums combined
// pairwise in a fixed order vectorise, are more accurate, and give the same bits on every call and thread count.
// LayerNorm's row statistics were 9% of a TARFlow training step in the serial form (perf, issue 19). For rows
// shorter than 16 (attention scores at T = 16) the serial form measured faster, so softmax keeps it.
#include <algorithm>

#if defined(__clang__) || defined(__CUDACC__)  // nvcc's front end reads host code too: it knows "unroll"
#define BIFLOW_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define BIFLOW_UNROLL _Pragma("GCC unroll 16")
#else
#define BIFLOW_UNROLL
#endif

namespace biflow::cpu::detail {

inline constexpr int kLanes = 16;

/// Σ_{i < n} f(i): the first 16·⌊n/16⌋ terms go to lane i % 16, combined pairwise, then the rest are added.
template <class F>
[[gnu::always_inline]] inline auto lane_sum(long n, F&& f) -> decltype(f(0L)) {
  using T = decltype(f(0L));
  T acc[kLanes] = {};
  long i = 0;
  for (; i + kLanes <= n; i += kLanes)
    BIFLOW_UNROLL for (int l = 0; l < kLanes; ++l) acc[l] += f(i + l);
  T tail = T(0);
  for (; i < n; ++i) tail += f(i);
  BIFLOW_UNROLL for (int w = kLanes / 2; w > 0; w /= 2)
    BIFLOW_UNROLL for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0] + tail;
}

}  // namespace biflow::cpu::detail
