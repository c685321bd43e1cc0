#pragma once
// Novelty: how far samples lie from the training set, relative to real data the model never saw.
//   novelty = median over samples of d(sample, nearest training row)
//           / median over held-out rows of d(held-out row, nearest training row)
// ≈ 1 for samples as novel as fresh data, ≈ 0 for copies of training rows (a memoriser), > 1 for samples off the
// data. Sample-quality distances cannot see memorisation (a copy of the training data *is* data); this can.
#include "knn.hpp"

namespace biflow {

inline double novelty(const HostMatrix<double>& samples, const HostMatrix<double>& heldout,
                      const HostMatrix<double>& train) {
  const Eigen::VectorXd s = nearest_distances(samples, train), h = nearest_distances(heldout, train);
  const double hm = median(std::vector<double>(h.data(), h.data() + h.size()));
  if (!(hm > 0)) throw numeric_error("novelty: the held-out rows lie on training rows (median distance 0)");
  return median(std::vector<double>(s.data(), s.data() + s.size())) / hm;
}

}  // namespace biflow
