#pragma once
// Improved precision and recall of a generative model (Kynkäänniemi et al. 2019): each point set stands for a
// manifold, the union of balls around its points with the radius of the point's k-th nearest neighbour.
//   precision = share of generated rows inside the real manifold (are samples realistic?)
//   recall    = share of real rows inside the generated manifold (is the data covered?)
// Mean + noise scores low on both; a copy of the training data scores high on both (novelty.hpp tells copies).
#include <algorithm>

#include "knn.hpp"

namespace biflow {

struct PrecisionRecall {
  double precision = 0, recall = 0;
};

namespace detail {
/// Share of rows of `probe` inside at least one ball (centre row of `set`, radius radii(j)).
inline double share_inside(const HostMatrix<double>& probe, const HostMatrix<double>& set,
                           const Eigen::VectorXd& radii) {
  const Eigen::MatrixXd d = squared_distances(probe, set);
  const Eigen::RowVectorXd r2 = radii.array().square().matrix().transpose();
  long in = 0;
  for (long i = 0; i < probe.rows(); ++i) in += ((d.row(i).array() <= r2.array()).any() ? 1 : 0);
  return probe.rows() ? double(in) / double(probe.rows()) : 0.0;
}
}  // namespace detail

/// Precision and recall of `generated` against `real` (rows are feature vectors), k-NN radii with k (3 as in the
/// paper). Both sets need more than k rows; compare sets of equal size (the radii shrink as n grows).
inline PrecisionRecall precision_recall(const HostMatrix<double>& real, const HostMatrix<double>& generated,
                                        long k = 3) {
  if (real.cols() != generated.cols())
    throw shape_error(detail::cat("precision_recall: real rows have ", real.cols(), " features, generated ",
                                  generated.cols()));
  return {detail::share_inside(generated, real, knn_radii(real, k)),
          detail::share_inside(real, generated, knn_radii(generated, k))};
}

}  // namespace biflow
