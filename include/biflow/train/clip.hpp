#pragma once
#include <cmath>
#include <type_traits>

#include "flat_parameters.hpp"

namespace biflow {

/// Global L2 norm of all gradients of model. Per-parameter squared norms are gathered on the backend and read
/// back once (on a GPU: one synchronisation per call, not one per parameter).
template <HasParameters M>
double grad_norm(M& model) {
  long n = 0;
  model.visit_parameters([&](const std::string&, auto&) { ++n; }, "");
  double total = 0;
  bool done = false;
  model.visit_parameters([&](const std::string&, auto& first) {
    if (done) return;  // the work happens once, where the backend type is known
    done = true;
    using B = typename std::remove_cvref_t<decltype(first.value)>::backend;
    Tensor<B> sq(1, n, uninit);
    long i = 0;
    model.visit_parameters([&](const std::string&, auto& p) { sum_sq_into(p.grad, sq, i++); }, "");
    total = double(sum(sq));
  }, "");
  return std::sqrt(total);
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

/// The same over a flat gradient buffer (FlatParameters): one reduction and one scaling pass for the whole model.
template <Backend B>
double clip_grad_norm(FlatParameters<B>& flat, double max_norm) {
  const double n = std::sqrt(double(sum_sq(flat.grads())));
  if (std::isfinite(n) && max_norm > 0 && n > max_norm) {
    const double s = max_norm / (n + 1e-6);
    map(flat.grads(), fn::Scale{s}, flat.grads());
  }
  return n;
}

}  // namespace biflow
