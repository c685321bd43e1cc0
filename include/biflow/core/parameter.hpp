#pragma once
// Parameters and their PyTorch-style names ("3.net.layers.0.weight"), visited by optimisers, EMA,
// gradient clipping and checkpoint I/O.
#include <string>
#include <utility>
#include <vector>

#include "../backend/ops.hpp"

namespace biflow {

/// A trainable tensor and its gradient (same shape; backward accumulates into grad). A frozen parameter gets no
/// gradient: backward skips its weight-gradient work (GEMMs, sums) and leaves grad as it is, while still
/// returning input gradients — what scoring a frozen flow (score denoising) or training G against a frozen F needs.
/// Set it per parameter, or for a whole model with FrozenScope.
template <class B>
struct Parameter {
  Tensor<B> value;
  Tensor<B> grad;
  bool frozen = false;
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

/// Freezes every parameter of a model for the scope's lifetime and restores each one's previous state after.
template <HasParameters M>
class FrozenScope {
 public:
  explicit FrozenScope(M& m) : m_(m) {
    m_.visit_parameters([&](const std::string&, auto& p) {
      was_.push_back(p.frozen);
      p.frozen = true;
    }, "");
  }
  ~FrozenScope() {
    std::size_t i = 0;
    m_.visit_parameters([&](const std::string&, auto& p) { p.frozen = was_[i++]; }, "");
  }
  FrozenScope(const FrozenScope&) = delete;
  FrozenScope& operator=(const FrozenScope&) = delete;

 private:
  M& m_;
  std::vector<bool> was_;
};

/// Number of scalar parameters in m.
template <HasParameters M>
long parameter_count(M& m) {
  long n = 0;
  m.visit_parameters([&](const std::string&, auto& p) { n += p.value.size(); }, "");
  return n;
}

}  // namespace biflow
