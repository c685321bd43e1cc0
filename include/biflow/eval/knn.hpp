#pragma once
// Nearest-neighbour geometry of point sets (rows), shared by the k-NN precision/recall and the novelty statistic.
// Host-side evaluation math on Eigen in double precision, like frechet.hpp.
#include "../core/config.hpp"  // before Eigen (threading settings)

#include <Eigen/Dense>
#include <algorithm>
#include <vector>

#include "../backend/tensor.hpp"
#include "../core/errors.hpp"

namespace biflow {

/// Squared Euclidean distances between the rows of a (m x d) and of b (n x d): an m x n matrix.
inline Eigen::MatrixXd squared_distances(const HostMatrix<double>& a, const HostMatrix<double>& b) {
  if (a.cols() != b.cols())
    throw shape_error(detail::cat("squared_distances: rows of ", a.cols(), " and ", b.cols(), " features"));
  // |a|² + |b|² − 2 a·b; the clamp removes the rounding below 0 that a row compared with itself can produce.
  Eigen::MatrixXd d = -2.0 * (a * b.transpose());
  d.colwise() += a.rowwise().squaredNorm();
  d.rowwise() += b.rowwise().squaredNorm().transpose();
  return d.cwiseMax(0.0);
}

/// Distance from each row of x to its nearest row of set (x and set distinct point sets).
inline Eigen::VectorXd nearest_distances(const HostMatrix<double>& x, const HostMatrix<double>& set) {
  if (set.rows() < 1) throw shape_error("nearest_distances: the reference set is empty");
  return squared_distances(x, set).rowwise().minCoeff().cwiseSqrt();
}

/// Radius of each row's k-nearest-neighbour ball within x itself (the row is not its own neighbour).
inline Eigen::VectorXd knn_radii(const HostMatrix<double>& x, long k) {
  if (k < 1 || k >= x.rows())
    throw shape_error(detail::cat("knn_radii: k = ", k, " needs 1 <= k < rows, got ", x.rows(), " rows"));
  const Eigen::MatrixXd d = squared_distances(x, x);
  Eigen::VectorXd r(x.rows());
  std::vector<double> row(std::size_t(x.rows()));
  for (long i = 0; i < x.rows(); ++i) {
    for (long j = 0; j < x.rows(); ++j) row[std::size_t(j)] = j == i ? -1.0 : d(i, j);  // self sorts first
    std::nth_element(row.begin(), row.begin() + k, row.end());
    r(i) = std::sqrt(row[std::size_t(k)]);
  }
  return r;
}

/// Median of the values (the mean of the middle two for an even count).
inline double median(std::vector<double> v) {
  if (v.empty()) throw shape_error("median: no values");
  const std::size_t h = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + long(h), v.end());
  const double hi = v[h];
  if (v.size() % 2) return hi;
  return 0.5 * (hi + *std::max_element(v.begin(), v.begin() + long(h)));
}

}  // namespace biflow
