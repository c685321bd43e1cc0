#pragma once
// Kernel distance (KID, Bińkowski et al. 2018): the unbiased estimate of the squared maximum mean discrepancy with
// the cubic polynomial kernel k(a, b) = (a·b / d + 1)³. Unlike the Fréchet distance it has no bias that depends
// on the number of rows, so it can compare small sets (e.g. 297 test digits) and is ≈ 0 (it can be slightly
// negative) for two samples of one distribution.
#include "knn.hpp"

namespace biflow {

inline double kernel_distance(const HostMatrix<double>& x, const HostMatrix<double>& y) {
  if (x.cols() != y.cols())
    throw shape_error(detail::cat("kernel_distance: rows of ", x.cols(), " and ", y.cols(), " features"));
  if (x.rows() < 2 || y.rows() < 2)
    throw shape_error(detail::cat("kernel_distance: need at least 2 rows on each side, got ", x.rows(), " and ",
                                  y.rows()));
  const double d = double(x.cols()), m = double(x.rows()), n = double(y.rows());
  auto k = [d](const HostMatrix<double>& a, const HostMatrix<double>& b) {
    return Eigen::MatrixXd(((a * b.transpose()).array() / d + 1.0).cube());
  };
  const Eigen::MatrixXd kxx = k(x, x), kyy = k(y, y), kxy = k(x, y);
  // Unbiased: the diagonals k(x_i, x_i) are left out of the within-set means.
  const double sxx = (kxx.sum() - kxx.trace()) / (m * (m - 1)), syy = (kyy.sum() - kyy.trace()) / (n * (n - 1));
  return sxx + syy - 2.0 * kxy.sum() / (m * n);
}

}  // namespace biflow
