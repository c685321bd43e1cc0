#pragma once
// Class labels as a context for conditional flows: one-hot rows. Fed into a conditioner's first Linear, a one-hot
// context is exactly a learned class embedding (the Linear's weight columns are the embeddings).
#include <string>
#include <vector>

#include "../backend/tensor.hpp"
#include "../core/rng.hpp"

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

namespace biflow::data {

/// Class-conditioning context for models with a learned "unconditional" (null) label: labels.size() x
/// (classes + 1) one-hot rows, column `classes` being the null label. Each row is replaced by the null label
/// with probability drop_prob (label dropout, which trains the unconditional model classifier-free guidance
/// needs), drawn from rng.
template <class T = float>
HostMatrix<T> class_condition(const std::vector<int>& labels, long classes, double drop_prob, Rng& rng) {
  if (drop_prob < 0 || drop_prob > 1)
    throw usage_error(detail::cat("class_condition: drop probability must be in [0, 1], got ", drop_prob));
  std::vector<int> l = labels;
  for (int v : l)
    if (v < 0 || v >= classes)
      throw usage_error(detail::cat("class_condition: label ", v, " is outside [0, ", classes, ")"));
  if (drop_prob > 0)
    for (int& v : l)
      if (rng.uniform() < drop_prob) v = int(classes);
  return one_hot<T>(l, classes + 1);
}
/// n rows of the null label (the unconditional context) for a model with `classes` classes.
template <class T = float>
HostMatrix<T> null_condition(long n, long classes) {
  return one_hot<T>(std::vector<int>(std::size_t(n), int(classes)), classes + 1);
}

}  // namespace biflow::data
