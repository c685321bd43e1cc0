#pragma once
#include <vector>

#include "../core/errors.hpp"

namespace biflow::masks {

/// 1 marks a dimension that is kept (conditions the others); 0 marks one that is transformed.
/// First half kept when parity = 0, second half when parity = 1 (D odd: the kept half is the smaller one).
inline std::vector<int> half(long d, int parity) {
  std::vector<int> m(static_cast<std::size_t>(d), 0);
  const long k = d / 2;
  for (long i = 0; i < d; ++i) m[i] = (parity % 2 == 0) ? (i < k) : (i >= d - k);
  if (d == 1) m[0] = 0;
  return m;
}
/// Even dimensions kept when parity = 0, odd when parity = 1 (checkerboard over features).
inline std::vector<int> alternating(long d, int parity) {
  std::vector<int> m(static_cast<std::size_t>(d));
  for (long i = 0; i < d; ++i) m[i] = ((i + parity) % 2 == 0);
  return m;
}
inline void validate(const std::vector<int>& m, long d) {
  if (static_cast<long>(m.size()) != d)
    throw shape_error(detail::cat("coupling mask: expected ", d, " entries, got ", m.size()));
  for (int v : m)
    if (v != 0 && v != 1) throw usage_error(detail::cat("coupling mask: entries must be 0 or 1, got ", v));
}

}  // namespace biflow::masks
