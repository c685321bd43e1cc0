#pragma once
// Class labels as a context for conditional flows: one-hot rows. Fed into a conditioner's first Linear, a one-hot
// context is exactly a learned class embedding (the Linear's weight columns are the embeddings).
#include <string>
#include <vector>

#include "../backend/tensor.hpp"

namespace biflow::data {

/// labels.size() x classes matrix with a 1 in column labels[i] of row i. Throws usage_error naming the first
/// label outside [0, classes).
template <class T = float>
HostMatrix<T> one_hot(const std::vector<int>& labels, long classes) {
  if (classes <= 0) throw usage_error(detail::cat("one_hot: the number of classes must be positive, got ", classes));
  HostMatrix<T> m = HostMatrix<T>::Zero(static_cast<long>(labels.size()), classes);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes)
      throw usage_error(detail::cat("one_hot: label ", labels[i], " at row ", i, " is outside [0, ", classes, ")"));
    m(static_cast<long>(i), labels[i]) = T(1);
  }
  return m;
}

}  // namespace biflow::data
