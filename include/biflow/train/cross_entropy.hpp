#pragma once
// Softmax cross-entropy for classifiers: mean over rows of −log softmax(logits)[label], labels given as
// one-hot (or soft) rows, and its gradient with respect to the logits.
#include <cmath>

#include "../backend/ops.hpp"

namespace biflow {

namespace fn {
struct NegLogClamped {  // −log(max(p, 1e-30))
  template <class T>
  BIFLOW_HOST_DEVICE T operator()(T p) const { return -std::log(p > T(1e-30) ? p : T(1e-30)); }
};
}  // namespace fn

/// Returns the mean cross-entropy; dlogits = (softmax − targets) / N.
template <Backend B>
double softmax_cross_entropy(const Tensor<B>& logits, const Tensor<B>& targets, Tensor<B>& dlogits) {
  require_shape("softmax_cross_entropy: targets", targets, logits.rows(), logits.cols());
  if (logits.rows() == 0) throw shape_error("softmax_cross_entropy: empty batch");
  Tensor<B> p = logits;
  softmax_rows(p, false);
  const double loss = double(sum(zip(fn::Mul{}, targets, zip(fn::NegLogClamped{}, p)))) / double(logits.rows());
  dlogits = zip(fn::Axpby{1.0 / double(logits.rows()), -1.0 / double(logits.rows())}, p, targets);
  return loss;
}

}  // namespace biflow
