#pragma once
// Parameters and their PyTorch-style names ("3.net.layers.0.weight"), visited by optimisers, EMA,
// gradient clipping and checkpoint I/O.
#include <string>
#include <utility>

#include "../backend/ops.hpp"

namespace biflow {

/// A trainable tensor and its gradient (same shape; backward accumulates into grad).
template <class B>
struct Parameter {
  Tensor<B> value;
  Tensor<B> grad;
  Parameter() = default;
  explicit Parameter(Tensor<B> v) : value(std::move(v)), grad(value.rows(), value.cols()) {}
};

/// Joins name components with '.' as torch.nn.Module.state_dict() does.
inline std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

namespace detail {
/// A visitor accepting any parameter (used to test for visit_parameters in concepts).
struct AnyVisitor {
  template <class P>
  void operator()(const std::string&, P&) const {}
};
}  // namespace detail

/// Anything with visit_parameters(visitor, prefix).
template <class M>
concept HasParameters = requires(M& m) { m.visit_parameters(detail::AnyVisitor{}, std::string{}); };

/// Sets every gradient of m to zero.
template <HasParameters M>
void zero_grad(M& m) {
  m.visit_parameters([](const std::string&, auto& p) { set_zero(p.grad); }, "");
}

/// Number of scalar parameters in m.
template <HasParameters M>
long parameter_count(M& m) {
  long n = 0;
  m.visit_parameters([&](const std::string&, auto& p) { n += p.value.size(); }, "");
  return n;
}

}  // namespace biflow
