#pragma once
// Energy distance between two samples (Székely & Rizzo): D² = 2·E‖X − Y‖ − E‖X − X′‖ − E‖Y − Y′‖, ≥ 0, and 0 exactly
// when the distributions agree. The unbiased form (U-statistics within each sample) is used, so two samples of one
// distribution give values scattered around 0 (possibly slightly negative). Host evaluation math in double.
#include "knn.hpp"

namespace biflow {

inline double energy_distance(const HostMatrix<double>& a, const HostMatrix<double>& b) {
  if (a.rows() < 2 || b.rows() < 2)
    throw shape_error(detail::cat("energy_distance: needs at least 2 rows per sample, got ", a.rows(), " and ", b.rows()));
  const double ab = squared_distances(a, b).cwiseSqrt().mean();
  const double n = double(a.rows()), m = double(b.rows());
  const double aa = squared_distances(a, a).cwiseSqrt().sum() / (n * (n - 1));  // the zero diagonal drops out
  const double bb = squared_distances(b, b).cwiseSqrt().sum() / (m * (m - 1));
  return 2 * ab - aa - bb;
}

}  // namespace biflow
