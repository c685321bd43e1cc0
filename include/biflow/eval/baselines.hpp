#pragma once
// Known-bad reference samples that every quality table should print beside a model's samples, computed by the same
// protocol: a metric that does not rank them as bad is not evidence.
//   copy_rows        — a memoriser: rows of the training data (sample distances cannot tell; novelty can)
//   class_mean_noise — per class, the mean plus independent Gaussian noise of each feature's own spread
//                      (a diagonal Gaussian per class: right marginals, no correlations, blurry strokes)
// and the likelihood baseline for discrete images:
//   categorical_bits_per_dim — independent per-pixel categorical distributions (Laplace-smoothed counts),
//                      unconditional or per class: the bits/dim a model that ignores all pixel correlations reaches
#include <algorithm>
#include <cmath>
#include <vector>

#include "../backend/tensor.hpp"
#include "../core/errors.hpp"
#include "../core/rng.hpp"

namespace biflow {

/// Rows of x picked by index (a memoriser's "samples").
template <class T>
HostMatrix<T> copy_rows(const HostMatrix<T>& x, const std::vector<long>& rows) {
  HostMatrix<T> out(long(rows.size()), x.cols());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= x.rows())
      throw shape_error(detail::cat("copy_rows: row ", rows[i], " outside [0, ", x.rows(), ")"));
    out.row(long(i)) = x.row(rows[i]);
  }
  return out;
}

/// One row per entry of `want` (its class): that class's mean over x plus N(0, σ²) noise per feature, σ the
/// class's own standard deviation of the feature.
template <class T>
HostMatrix<T> class_mean_noise(const HostMatrix<T>& x, const std::vector<int>& labels, long classes,
                               const std::vector<int>& want, Rng& rng) {
  if (long(labels.size()) != x.rows())
    throw shape_error(detail::cat("class_mean_noise: ", labels.size(), " labels for ", x.rows(), " rows"));
  Eigen::MatrixXd sum = Eigen::MatrixXd::Zero(classes, x.cols()), sq = sum;
  std::vector<long> count(std::size_t(classes), 0);
  for (long r = 0; r < x.rows(); ++r) {
    const int c = labels[std::size_t(r)];
    if (c < 0 || c >= classes) throw usage_error(detail::cat("class_mean_noise: label ", c, " outside [0, ", classes, ")"));
    const Eigen::RowVectorXd v = x.row(r).template cast<double>();
    sum.row(c) += v;
    sq.row(c) += v.array().square().matrix();
    ++count[std::size_t(c)];
  }
  HostMatrix<T> out(long(want.size()), x.cols());
  for (std::size_t i = 0; i < want.size(); ++i) {
    const int c = want[i];
    if (c < 0 || c >= classes || count[std::size_t(c)] < 2)
      throw usage_error(detail::cat("class_mean_noise: class ", c, " has fewer than 2 rows"));
    const double n = double(count[std::size_t(c)]);
    for (long j = 0; j < x.cols(); ++j) {
      const double mu = sum(c, j) / n, sd = std::sqrt(std::max(0.0, sq(c, j) / n - mu * mu));
      out(long(i), j) = T(mu + sd * rng.normal());
    }
  }
  return out;
}

/// Test bits per pixel of independent per-pixel categorical distributions over `levels` grey levels fitted to the
/// training pixels (integer levels 0..levels−1) with add-alpha smoothing; per class when `conditional` (then the
/// labels pick each test row's distribution). Comparable with a flow's dequantised bits/dim on the same levels.
template <class T>
double categorical_bits_per_dim(const HostMatrix<T>& train, const std::vector<int>& train_labels,
                                const HostMatrix<T>& test, const std::vector<int>& test_labels, long levels,
                                bool conditional, double alpha = 0.1) {
  if (train.cols() != test.cols())
    throw shape_error(detail::cat("categorical_bits_per_dim: ", train.cols(), " training vs ", test.cols(), " test pixels"));
  if (long(train_labels.size()) != train.rows() || long(test_labels.size()) != test.rows())
    throw shape_error("categorical_bits_per_dim: one label per row is needed");
  long classes = 1;
  if (conditional)
    for (int l : train_labels) classes = std::max<long>(classes, l + 1);
  const long D = train.cols();
  std::vector<double> count(std::size_t(classes * D * levels), 0.0), total(std::size_t(classes), 0.0);
  auto level = [&](T v) {
    const long l = std::lround(double(v));
    if (l < 0 || l >= levels) throw usage_error(detail::cat("categorical_bits_per_dim: pixel value ", double(v),
                                                            " is not a level in [0, ", levels, ")"));
    return l;
  };
  for (long r = 0; r < train.rows(); ++r) {
    const long c = conditional ? train_labels[std::size_t(r)] : 0;
    total[std::size_t(c)] += 1;
    for (long j = 0; j < D; ++j) count[std::size_t((c * D + j) * levels + level(train(r, j)))] += 1;
  }
  double bits = 0;
  for (long r = 0; r < test.rows(); ++r) {
    const long c = conditional ? test_labels[std::size_t(r)] : 0;
    if (c < 0 || c >= classes) throw usage_error(detail::cat("categorical_bits_per_dim: test label ", c, " unseen in training"));
    for (long j = 0; j < D; ++j) {
      const double p = (count[std::size_t((c * D + j) * levels + level(test(r, j)))] + alpha) /
                       (total[std::size_t(c)] + alpha * double(levels));
      bits -= std::log2(p);
    }
  }
  return bits / double(test.rows() * D);
}

}  // namespace biflow
