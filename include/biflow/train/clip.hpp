#pragma once
#include <cmath>

#include "../core/parameter.hpp"

namespace biflow {

/// Global L2 norm of all gradients of model.
template <HasParameters M>
double grad_norm(M& model) {
  double s = 0;
  model.visit_parameters([&](const std::string&, auto& p) { s += double(sum_sq(p.grad)); }, "");
  return std::sqrt(s);
}

/// Rescales gradients so their global norm is at most max_norm (as torch.nn.utils.clip_grad_norm_);
/// returns the norm before clipping (NaN/Inf if any gradient is not finite; nothing is scaled then).
template <HasParameters M>
double clip_grad_norm(M& model, double max_norm) {
  const double n = grad_norm(model);
  if (std::isfinite(n) && max_norm > 0 && n > max_norm) {
    const double s = max_norm / (n + 1e-6);
    model.visit_parameters([&](const std::string&, auto& p) { map(p.grad, fn::Scale{s}, p.grad); }, "");
  }
  return n;
}

}  // namespace biflow
